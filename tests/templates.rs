//! Golden tests of the shipped templates, and the rules of rendering:
//! locale fallback, strict variables, front matter, layouts and text parts.

use std::path::Path;

use aftercare::send::{Envelope, build_message, mailbox};
use aftercare::sequence::model::Policies;
use aftercare::template::data::sample_data;
use aftercare::template::{MAX_SUBJECT_CHARS, RenderError, Templates};

fn shipped() -> Templates {
    let (t, d) = Templates::load(Path::new("templates"), "en");
    assert!(!d.has_errors(), "{d}");
    t
}

/// Compares with `tests/golden/<name>`; `UPDATE_GOLDEN=1` rewrites the file.
fn golden(name: &str, actual: &str) {
    let path = Path::new("tests/golden").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{} missing: run with UPDATE_GOLDEN=1", path.display()));
    assert_eq!(
        actual,
        expected,
        "{} differs (UPDATE_GOLDEN=1 to accept)",
        path.display()
    );
}

#[test]
fn fulfilment_templates_in_every_shipped_locale() {
    let t = shipped();
    let p = Policies::default();
    for id in [
        "order-confirmation",
        "order-shipped",
        "shipping-delayed",
        "delivery-delayed",
        "order-delivered",
    ] {
        for locale in ["en", "hu-HU", "th-TH", "bg-BG", "zh-CN"] {
            let data = sample_data(&p, id, None);
            let r = t.render(id, Some(locale), &data).unwrap();
            let lang = locale.split('-').next().unwrap();
            assert_eq!(r.locale, lang);
            assert!(
                r.html.contains("<html") && r.html.contains("</html>"),
                "layout wraps the body"
            );
            let doc = format!(
                "Subject: {}\nPreheader: {}\n\n{}",
                r.subject,
                r.preheader.unwrap_or_default(),
                r.text
            );
            golden(&format!("{id}.{lang}.txt"), &doc);
        }
    }
}

#[test]
fn money_and_dates_follow_the_customer() {
    let t = shipped();
    let data = sample_data(&Policies::default(), "order-confirmation", None);
    let hu = t
        .render("order-confirmation", Some("hu-HU"), &data)
        .unwrap();
    assert!(hu.html.contains("129,90\u{a0}€"), "{}", hu.html);
    let en = t.render("order-confirmation", Some("en"), &data).unwrap();
    assert!(en.html.contains("€129.90"));
}

fn write(dir: &Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

#[test]
fn locale_fallback_goes_region_language_default() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "hello/en.hbs",
        "---\nsubject: Hello\n---\n<p>en</p>\n",
    );
    write(
        dir.path(),
        "hello/hu.hbs",
        "---\nsubject: Szia\n---\n<p>hu</p>\n",
    );
    write(
        dir.path(),
        "hello/pt-BR.hbs",
        "---\nsubject: Olá\n---\n<p>br</p>\n",
    );
    let (t, d) = Templates::load(dir.path(), "en");
    assert!(d.0.is_empty(), "{d}");
    let data = sample_data(&Policies::default(), "hello", None);
    let locale = |w: Option<&str>| t.render("hello", w, &data).unwrap().locale;
    assert_eq!(locale(Some("hu-HU")), "hu");
    assert_eq!(locale(Some("hu")), "hu");
    assert_eq!(locale(Some("pt-BR")), "pt-BR");
    assert_eq!(locale(Some("pt_br")), "pt-BR");
    assert_eq!(locale(Some("pt-PT")), "en");
    assert_eq!(locale(None), "en");
    assert_eq!(
        t.render("hello", Some("hu"), &data).unwrap().text.trim(),
        "hu"
    );
}

#[test]
fn a_missing_variable_is_an_error_with_its_place() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "t/en.hbs",
        "---\nsubject: Hi {{customer.first_name}}\n---\n<p>line one</p>\n<p>{{order.nubmer}}</p>\n",
    );
    let (t, d) = Templates::load(dir.path(), "en");
    assert!(d.0.is_empty(), "{d}");
    let data = sample_data(&Policies::default(), "t", None);
    match t.render("t", None, &data) {
        Err(RenderError::Render {
            file,
            line,
            message,
            ..
        }) => {
            assert!(file.ends_with("t/en.hbs"), "{file}");
            assert_eq!(line, 5, "the line in the file");
            assert!(message.contains("order.nubmer"), "{message}");
        }
        other => panic!("expected a render error, got {other:?}"),
    }
}

#[test]
fn bad_templates_are_reported_with_file_line_col() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "no-front/en.hbs", "<p>hi</p>\n");
    write(
        dir.path(),
        "bad-front/en.hbs",
        "---\nsubjet: Hi\n---\n<p>x</p>\n",
    );
    write(
        dir.path(),
        "bad-syntax/en.hbs",
        "---\nsubject: Hi\n---\n<p>ok</p>\n<p>{{#if x}}unclosed</p>\n",
    );
    write(
        dir.path(),
        "bad-layout/en.hbs",
        "---\nsubject: Hi\nlayout: nope\n---\n<p>x</p>\n",
    );
    let (_, d) = Templates::load(dir.path(), "en");
    let text = d.to_string();
    for want in [
        "no-front/en.hbs:1:1: a template starts with front matter",
        "bad-front/en.hbs:2:1: unknown key `subjet`",
        "bad-front/en.hbs:2:1: front matter: missing `subject`",
        // Where the unclosed block opens, not the end of the file.
        "bad-syntax/en.hbs:5:4: template syntax: `{{#if …}}` is never closed: add `{{/if}}`",
        "bad-layout/en.hbs:3:9: layout `nope` not found",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
}

#[test]
fn a_text_part_overrides_the_derived_one() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "t/en.hbs",
        "---\nsubject: Hi\npreheader: Pre {{order.number}}\n---\n<p>Hello <b>{{customer.first_name}}</b></p>\n",
    );
    let (t, _) = Templates::load(dir.path(), "en");
    let data = sample_data(&Policies::default(), "t", None);
    let r = t.render("t", None, &data).unwrap();
    assert_eq!(r.preheader.as_deref(), Some("Pre 1001"));
    assert!(
        r.text.contains("Hello") && r.text.contains("Sam"),
        "{}",
        r.text
    );
    write(
        dir.path(),
        "t/en.txt.hbs",
        "Plain hello {{customer.first_name}}\n",
    );
    let (t, _) = Templates::load(dir.path(), "en");
    assert_eq!(
        t.render("t", None, &data).unwrap().text,
        "Plain hello Sam\n"
    );
}

/// A template with the shipped layout, in a folder of its own.
fn with_layout(dir: &Path, front: &str, body: &str) -> Templates {
    write(
        dir,
        "_layouts/base.hbs",
        &std::fs::read_to_string("templates/_layouts/base.hbs").unwrap(),
    );
    write(
        dir,
        "t/en.hbs",
        &format!("---\n{front}layout: base\n---\n{body}"),
    );
    let (t, d) = Templates::load(dir, "en");
    assert!(!d.has_errors(), "{d}");
    t
}

fn message(content: &aftercare::template::Rendered, to: &str) -> String {
    let env = Envelope {
        to,
        idempotency_key: "k1",
        sequence: "s",
        template: "t",
        date: "2026-05-01T10:00:00Z".parse().unwrap(),
        list_unsubscribe: None,
    };
    let msg = build_message(&Policies::default(), &env, content).expect("builds");
    String::from_utf8(msg.formatted()).unwrap()
}

/// The message's header block, each line as written (folded lines apart).
fn header_lines(msg: &str) -> Vec<&str> {
    msg.split("\r\n\r\n")
        .next()
        .unwrap()
        .split("\r\n")
        .collect()
}

#[test]
fn subjects_preheaders_and_text_parts_are_not_html_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let t = with_layout(
        dir.path(),
        "subject: \"Order {{order.number}}\"\npreheader: \"Pre {{order.number}}\"\n",
        "<p>Number {{order.number}}</p>\n",
    );
    let mut data = sample_data(&Policies::default(), "t", None);
    data["order"]["number"] = "A&B-O'Neil=1".into();
    let r = t.render("t", None, &data).unwrap();
    assert_eq!(r.subject, "Order A&B-O'Neil=1");
    assert_eq!(r.preheader.as_deref(), Some("Pre A&B-O'Neil=1"));
    assert_eq!(r.text, "Number A&B-O'Neil=1\n");
    // The HTML part escapes once, in the title, the preheader and the body.
    let once = "A&amp;B-O&#x27;Neil&#x3D;1";
    assert!(
        r.html.contains(&format!("<title>Order {once}</title>")),
        "{}",
        r.html
    );
    assert!(r.html.contains(&format!(">Pre {once}&#847;")), "{}", r.html);
    assert!(r.html.contains(&format!("<p>Number {once}</p>")));
    assert!(!r.html.contains("&amp;amp;"));
    let msg = message(&r, "a@b.co");
    assert!(
        header_lines(&msg).contains(&"Subject: Order A&B-O'Neil=1"),
        "{msg}"
    );
}

#[test]
fn a_huge_subject_is_cut_and_no_header_line_passes_998() {
    let dir = tempfile::tempdir().unwrap();
    let t = with_layout(
        dir.path(),
        "subject: \"Hi {{customer.first_name}}\"\n",
        "<p>x</p>\n",
    );
    let mut data = sample_data(&Policies::default(), "t", None);
    for name in [
        "x".repeat(100_003),
        "word ".repeat(20_000),
        "é".repeat(100_003),
    ] {
        data["customer"]["first_name"] = name.clone().into();
        let r = t.render("t", None, &data).unwrap();
        assert_eq!(r.subject.chars().count(), MAX_SUBJECT_CHARS, "{name:.20}");
        assert!(r.subject.starts_with("Hi ") && r.subject.ends_with('\u{2026}'));
        let msg = message(&r, "a@b.co");
        for line in header_lines(&msg) {
            assert!(line.len() <= 998, "{} bytes: {line:.60}", line.len());
        }
    }
    // Short subjects are left alone.
    data["customer"]["first_name"] = "Sam".into();
    assert_eq!(t.render("t", None, &data).unwrap().subject, "Hi Sam");
}

#[test]
fn customer_data_cannot_add_a_header() {
    let dir = tempfile::tempdir().unwrap();
    let t = with_layout(
        dir.path(),
        "subject: \"Hi {{customer.first_name}}\"\npreheader: \"{{customer.first_name}}\"\n",
        "<p>x</p>\n",
    );
    let mut data = sample_data(&Policies::default(), "t", None);
    data["customer"]["first_name"] = "Sam\r\nBcc: evil@attacker.example\nX-Evil: 1".into();
    let r = t.render("t", None, &data).unwrap();
    let msg = message(&r, "a@b.co");
    for line in header_lines(&msg) {
        assert!(
            !line.starts_with("Bcc:") && !line.starts_with("X-Evil:"),
            "{msg}"
        );
    }
    // An address cannot carry a header either.
    assert!(mailbox("a@b.co\r\nBcc: evil@attacker.example").is_err());
    assert!(mailbox("a@b.co\nBcc: evil@attacker.example").is_err());
}

#[test]
fn non_ascii_addresses_are_encoded_or_refused_with_the_reason() {
    // A domain with non-ASCII labels is written in its IDNA form.
    let m = mailbox("kunde@bücher.example").unwrap();
    assert_eq!(m.email.to_string(), "kunde@xn--bcher-kva.example");
    // A display name is RFC 2047-encoded; the header is ASCII.
    let dir = tempfile::tempdir().unwrap();
    let t = with_layout(dir.path(), "subject: Hi\n", "<p>x</p>\n");
    let data = sample_data(&Policies::default(), "t", None);
    let r = t.render("t", None, &data).unwrap();
    let msg = message(&r, "kunde@bücher.example");
    let to: Vec<&str> = header_lines(&msg)
        .into_iter()
        .filter(|l| l.starts_with("To:"))
        .collect();
    assert_eq!(to, ["To: kunde@xn--bcher-kva.example"], "{msg}");
    assert!(header_lines(&msg).iter().all(|l| l.is_ascii()), "{msg}");
    // A non-ASCII local part has no ASCII form: refused, saying why.
    let err = mailbox("jörg@example.com").unwrap_err().to_string();
    assert!(err.contains("SMTPUTF8"), "{err}");
    let env = Envelope {
        to: "jörg@example.com",
        idempotency_key: "k",
        sequence: "s",
        template: "t",
        date: "2026-05-01T10:00:00Z".parse().unwrap(),
        list_unsubscribe: None,
    };
    assert!(build_message(&Policies::default(), &env, &r).is_err());
}

/// Sequences that send template `t`, and templates whose partials include
/// each other: `a` -> `b` -> `a`, `self` -> `self` (inside an `#if`), and an
/// inline partial that includes itself.
fn include_loops(dir: &Path) {
    write(
        dir,
        "seq/s.yaml",
        "id: s\ncategory: transactional\ntrigger: {event: order.placed}\nsteps:\n  - email: t\n  - email: u\n  - email: v\n  - email: ok\n",
    );
    write(dir, "tpl/_partials/a.hbs", "{{> b}}\n");
    write(dir, "tpl/_partials/b.hbs", "x\n{{> a}}\n");
    write(
        dir,
        "tpl/_partials/self.hbs",
        "{{#if customer.id}}{{> self}}{{/if}}\n",
    );
    write(
        dir,
        "tpl/_partials/fine.hbs",
        "<b>{{customer.first_name}}</b>\n",
    );
    write(
        dir,
        "tpl/t/en.hbs",
        "---\nsubject: Hi\n---\n<p>{{> a}}</p>\n",
    );
    write(
        dir,
        "tpl/u/en.hbs",
        "---\nsubject: Hi\n---\n<p>{{> self}}</p>\n",
    );
    write(
        dir,
        "tpl/v/en.hbs",
        "---\nsubject: Hi\n---\n{{#*inline \"x\"}}<i>{{> x}}</i>{{/inline}}\n<p>{{> x}}</p>\n",
    );
    write(
        dir,
        "tpl/ok/en.hbs",
        "---\nsubject: Hi\n---\n<p>{{> fine}}</p>\n",
    );
    write(
        dir,
        "tpl/w/en.hbs",
        "---\nsubject: Hi\n---\n<p>{{> (lookup customer \"id\")}}</p>\n",
    );
}

#[test]
fn partials_that_include_each_other_are_validate_errors() {
    let dir = tempfile::tempdir().unwrap();
    include_loops(dir.path());
    let loaded = aftercare::validate::load(&dir.path().join("seq"), &dir.path().join("tpl"));
    let text = loaded.diagnostics.to_string();
    let p = |f: &str| dir.path().join("tpl").join(f).display().to_string();
    for want in [
        format!(
            "{}:1:1: partials include each other without end: {}:1:1 (`a`) includes `b` -> {}:2:1 (`b`) includes `a` -> back to `a`",
            p("_partials/a.hbs"),
            p("_partials/a.hbs"),
            p("_partials/b.hbs")
        ),
        format!(
            "{}:1:20: partials include each other without end: {}:1:20 (`self`) includes `self` -> back to `self`",
            p("_partials/self.hbs"),
            p("_partials/self.hbs")
        ),
        format!(
            "{}:4:20: partials include each other without end: {}:4:20 (inline partial `x`) includes `x` -> back to inline partial `x`",
            p("v/en.hbs"),
            p("v/en.hbs")
        ),
        format!(
            "{}:4:4: a partial's name must be written out",
            p("w/en.hbs")
        ),
        format!(
            "{}:4:4: left out: it includes `a`, which cannot be rendered",
            p("t/en.hbs")
        ),
        format!(
            "{}:4:4: left out: it includes `self`, which cannot be rendered",
            p("u/en.hbs")
        ),
    ] {
        assert!(text.contains(&want), "missing {want:?} in:\n{text}");
    }
    // The templates that reach a loop are left out; the others render.
    let t = &loaded.templates;
    for id in ["t", "u", "v", "w"] {
        assert!(!t.contains(id), "{id} is left out");
    }
    let data = sample_data(&Policies::default(), "ok", None);
    assert!(
        t.render("ok", None, &data)
            .unwrap()
            .html
            .contains("<b>Sam</b>")
    );
}

#[test]
fn validate_and_preview_report_include_loops_instead_of_crashing() {
    let dir = tempfile::tempdir().unwrap();
    include_loops(dir.path());
    let seq = dir.path().join("seq");
    let tpl = dir.path().join("tpl");
    for args in [
        vec!["validate"],
        vec!["preview", "t"],
        vec!["simulate", "--events", "examples/events.jsonl"],
        vec!["run"],
    ] {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_aftercare"));
        cmd.args(&args)
            .env_remove("AFTERCARE_SEQUENCES")
            .env_remove("AFTERCARE_TEMPLATES")
            .arg("--sequences")
            .arg(&seq)
            .arg("--templates")
            .arg(&tpl);
        let o = cmd.output().expect("runs");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains("partials include each other without end")
                && err.contains(&tpl.join("_partials/b.hbs").display().to_string()),
            "{args:?}: {err}"
        );
    }
}

/// The sender, as the service runs it, over the memory store: one order
/// confirmation, sent with a size limit of `max` bytes.
async fn send_one_confirmation(
    max: usize,
) -> (
    Vec<aftercare::send::worker::Handled>,
    aftercare::store::MemStore,
    tempfile::TempDir,
) {
    use aftercare::clock::ManualClock;
    use aftercare::send::transport::EmlDir;
    use aftercare::send::worker::{Compose, DEFAULT_RETRY, Worker};
    use aftercare::store::MemStore;
    use std::sync::Arc;

    let loaded = aftercare::validate::load(Path::new("sequences"), Path::new("templates"));
    assert!(!loaded.diagnostics.has_errors(), "{}", loaded.diagnostics);
    let event = aftercare::event::Event::parse(
        r#"{"id":"e1","type":"order.placed","occurred_at":"2026-05-01T10:00:00Z",
            "customer":{"id":"c1","email":"a@b.co","locale":"en"},
            "order":{"id":"o1","number":"1001","placed_at":"2026-05-01T10:00:00Z",
                     "currency":"EUR","total":"10",
                     "items":[{"sku":"CAM-1","name":"Camera","category":"camera",
                               "quantity":1,"unit_price":"10"}]}}"#,
    )
    .unwrap();
    let now: chrono::DateTime<chrono::Utc> = "2026-05-01T10:00:00Z".parse().unwrap();
    let store = MemStore::new();
    aftercare::ingest::ingest_batch(&store, &loaded.catalog, &[event], "test", now)
        .await
        .unwrap();
    let outbox = tempfile::tempdir().unwrap();
    let worker = Worker {
        store: store.clone(),
        catalog: loaded.catalog.clone(),
        templates: loaded.templates.clone(),
        transport: EmlDir {
            dir: outbox.path().to_path_buf(),
        },
        clock: Arc::new(ManualClock::new(now + chrono::Duration::minutes(1))),
        retry: DEFAULT_RETRY.to_vec(),
        compose: Compose::Message,
        max_email_bytes: max,
        concurrency: 1,
        bounces: None,
        paused: Default::default(),
        dkim: None,
        links: std::sync::Arc::new(
            aftercare::send::links::Links::ephemeral("http://127.0.0.1:8080").unwrap(),
        ),
        instance: aftercare::instance::Instance::solo(),
    };
    let mut handled = worker.tick().await.unwrap();
    // Nothing comes back for another try.
    handled.extend(worker.tick().await.unwrap());
    (handled, store, outbox)
}

#[tokio::test]
async fn an_email_over_the_size_limit_is_skipped_with_the_reason() {
    use aftercare::engine::outbox::{OutboxStatus, Outcome, SendPlan};
    use aftercare::send::worker::Done;
    use aftercare::store::Store;

    let (handled, store, outbox) = send_one_confirmation(2_000).await;
    let confirmation: Vec<_> = handled
        .iter()
        .filter(|h| h.row.template == "order-confirmation")
        .collect();
    assert_eq!(confirmation.len(), 1, "{handled:?}");
    let Done::Planned(SendPlan::Skip { reason }) = &confirmation[0].done else {
        panic!("expected a skip, got {:?}", confirmation[0].done);
    };
    assert!(
        reason.starts_with("email too large: ")
            && reason.contains("more than the limit of 2000 (AFTERCARE_MAX_EMAIL_BYTES)"),
        "{reason}"
    );
    assert_eq!(std::fs::read_dir(outbox.path()).unwrap().count(), 0);
    let row = store
        .outbox()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.template == "order-confirmation")
        .unwrap();
    assert_eq!(row.status, OutboxStatus::Skipped);
    assert_eq!(row.last_error.as_deref(), Some(reason.as_str()));
    let logged: Vec<_> = store
        .deliveries()
        .await
        .unwrap()
        .into_iter()
        .filter(|d| d.outbox_id == row.id)
        .map(|d| (d.outcome, d.detail))
        .collect();
    assert_eq!(logged, [(Outcome::Skipped, reason.clone())]);

    // Under the default limit the same email is sent.
    let (handled, _, outbox) =
        send_one_confirmation(aftercare::send::worker::DEFAULT_MAX_EMAIL_BYTES).await;
    assert!(
        handled
            .iter()
            .any(|h| h.row.template == "order-confirmation" && h.done == Done::Sent),
        "{handled:?}"
    );
    assert_eq!(std::fs::read_dir(outbox.path()).unwrap().count(), 1);
}
