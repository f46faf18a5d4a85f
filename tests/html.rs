//! The HTML part as mail clients and spam filters get it: every shipped
//! template, sent as the worker builds it, passes SpamAssassin's local rules;
//! CSS is inlined; MJML templates become HTML tables; `preview --html` prints
//! exactly the HTML part that is sent.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use aftercare::send::{Envelope, build_message};
use aftercare::template::Templates;

/// The whole message the worker builds for template `id` in `locale`, with
/// the template's sample data, as the shipped sequences send it: a value or
/// promo email with its unsubscribe link, List-Unsubscribe, the open pixel
/// and click redirects (the shipped policies track both); a transactional
/// one without.
fn sent(templates: &Templates, id: &str, locale: &str) -> Vec<u8> {
    let catalog = support::catalog();
    let marketing = aftercare::send::links::marketing_templates(catalog).contains(id);
    let links = aftercare::send::links::Links::ephemeral("https://mail.shop.example").unwrap();
    let key = format!("{id}:{locale}");
    let unsubscribe = links.unsubscribe_url("anna");
    let mut data =
        aftercare::template::data::sample_data(&catalog.policies, id, templates.sample(id));
    if marketing {
        data["unsubscribe_url"] = unsubscribe.as_str().into();
    }
    let mut content = templates.render(id, Some(locale), &data).unwrap();
    let tracked = aftercare::send::tracking::Tracked {
        links: &links,
        customer_id: "anna",
        idempotency_key: &key,
        opens: marketing,
        clicks: marketing,
    };
    content.html = aftercare::send::tracking::rewrite(&content.html, &tracked).unwrap();
    let list_unsubscribe = links.list_unsubscribe(&unsubscribe);
    let list_unsubscribe = marketing.then_some(list_unsubscribe.as_str());
    let env = Envelope {
        to: "Anna Kovács <anna@example.com>",
        idempotency_key: &key,
        sequence: "education",
        template: id,
        date: chrono::Utc::now(),
        list_unsubscribe,
    };
    build_message(&catalog.policies, &env, &content)
        .unwrap()
        .formatted()
}

/// SpamAssassin's verdict: (score, rules hit).
fn spamassassin(file: &Path) -> (f64, String) {
    let o = Command::new("spamassassin")
        .args(["-L", "-t"])
        .stdin(std::fs::File::open(file).unwrap())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "spamassassin does not run ({e}): run scripts/test, which installs it \
                 (apt-get install spamassassin)"
            )
        });
    let out = String::from_utf8_lossy(&o.stdout);
    // `X-Spam-Status: No, score=0.7 required=5.0 tests=A,B\n\tC autolearn=...`
    let status = out
        .find("X-Spam-Status:")
        .map(|i| {
            let rest = &out[i..];
            let mut end = rest.find('\n').unwrap_or(rest.len());
            while rest[end + 1..].starts_with([' ', '\t']) {
                end += 1 + rest[end + 1..].find('\n').unwrap_or(rest.len() - end - 1);
            }
            rest[..end].split_whitespace().collect::<Vec<_>>().join(" ")
        })
        .unwrap_or_else(|| {
            panic!(
                "no X-Spam-Status in spamassassin's output: {out}{}",
                String::from_utf8_lossy(&o.stderr)
            )
        });
    let score = status
        .split_once("score=")
        .and_then(|(_, r)| r.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no score in {status}"));
    let tests = status
        .split_once("tests=")
        .map(|(_, r)| r.split(" autolearn").next().unwrap_or(r).to_string())
        .unwrap_or_default();
    (score, tests)
}

#[test]
fn every_shipped_template_passes_spamassassin() {
    let templates = support::templates();
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for id in templates.ids() {
        for locale in templates.locales(id) {
            let f = dir.path().join(format!("{id}.{locale}.eml"));
            std::fs::write(&f, sent(templates, id, &locale)).unwrap();
            files.push((format!("{id} ({locale})"), f));
        }
    }
    assert!(files.len() >= 30, "{}", files.len());
    // Two at a time: SpamAssassin takes a second or two to start.
    let results: Vec<(String, f64, String)> = files
        .chunks(files.len().div_ceil(2))
        .map(|chunk| {
            let chunk = chunk.to_vec();
            std::thread::spawn(move || {
                chunk
                    .into_iter()
                    .map(|(name, f)| {
                        let (score, tests) = spamassassin(&f);
                        (name, score, tests)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let bad: Vec<String> = results
        .iter()
        .filter(|(_, score, _)| *score > 0.0)
        .map(|(name, score, tests)| format!("{name}: score {score}, rules {tests}"))
        .collect();
    assert!(
        bad.is_empty(),
        "scored above 0 with spamassassin -L -t:\n{}",
        bad.join("\n")
    );
}

/// The parts of a message as Python's `email` package (an independent MIME
/// parser) decodes them: content type and text.
fn mime_parts(eml: &Path) -> Vec<(String, String)> {
    const SCRIPT: &str = r#"
import sys, email, json
from email import policy
m = email.message_from_bytes(open(sys.argv[1], 'rb').read(), policy=policy.default)
print(json.dumps([[p.get_content_type(), p.get_content()] for p in m.walk() if not p.is_multipart()]))
"#;
    let o = Command::new("/usr/bin/python3")
        .args(["-c", SCRIPT])
        .arg(eml)
        .stdin(Stdio::null())
        .output()
        .expect("/usr/bin/python3 runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// The HTML part, with the CRLF line ends MIME gives text parts in transit
/// made LF again, as the template wrote them.
fn html_part(eml: &Path) -> String {
    mime_parts(eml)
        .into_iter()
        .find(|(t, _)| t == "text/html")
        .expect("an HTML part")
        .1
        .replace("\r\n", "\n")
}

fn write(dir: &Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// A templates folder with what the shipped ones have, plus `extra`.
fn templates_with(dir: &Path, extra: &[(&str, &str)]) -> PathBuf {
    let tpl = dir.join("templates");
    let copy = |rel: &str| {
        write(
            &tpl,
            rel,
            &std::fs::read_to_string(Path::new("templates").join(rel)).unwrap(),
        )
    };
    copy("_layouts/base.hbs");
    copy("_layouts/responsive.mjml.hbs");
    for (rel, text) in extra {
        write(&tpl, rel, text);
    }
    tpl
}

#[test]
fn css_in_style_blocks_is_inlined_in_the_sent_html() {
    let dir = tempfile::tempdir().unwrap();
    let tpl = templates_with(
        dir.path(),
        &[(
            "styled/en.hbs",
            "---\nsubject: Hi\n---\n<html><head><style>\n.note { color: #1f4e5f; font-weight: bold }\n\
             p { margin: 0 0 16px 0 }\n@media only screen and (max-width: 480px) { .note { font-size: 18px } }\n\
             </style></head><body><p class=\"note\">Hello {{customer.first_name}}</p><p>Bye</p></body></html>\n",
        )],
    );
    let (templates, diags) = Templates::load(&tpl, "en");
    assert!(!diags.has_errors(), "{diags}");
    let f = dir.path().join("styled.eml");
    std::fs::write(&f, sent(&templates, "styled", "en")).unwrap();
    let html = html_part(&f);
    assert!(
        html.contains(
            r#"<p class="note" style="margin: 0 0 16px 0;color: #1f4e5f;font-weight: bold;">Hello "#
        ),
        "{html}"
    );
    assert!(
        html.contains(r#"<p style="margin: 0 0 16px 0;">Bye</p>"#),
        "{html}"
    );
    // The media query stays for the clients that read it; the rest went inline.
    assert!(
        html.contains("@media only screen and (max-width: 480px)"),
        "{html}"
    );
    assert!(!html.contains(".note { color"), "{html}");
}

#[test]
fn mjml_templates_are_sent_as_html_tables() {
    let templates = support::templates();
    assert!(
        templates
            .file("camera-tripod-offer", "en")
            .unwrap()
            .ends_with("en.mjml.hbs")
    );
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("mjml.eml");
    std::fs::write(&f, sent(templates, "camera-tripod-offer", "en")).unwrap();
    let parts = mime_parts(&f);
    let html = &parts.iter().find(|(t, _)| t == "text/html").unwrap().1;
    assert!(html.contains("<table"), "{html}");
    assert!(!html.contains("<mj-"), "{html}");
    assert!(html.contains("See tripods for your camera"), "{html}");
    // The button's link goes through the click redirect (a promo email).
    assert!(
        html.contains(r#"href="https://mail.shop.example/t/c/"#),
        "{html}"
    );
    // Responsive: the column widths' media query is kept in a <style>.
    assert!(html.contains("@media"), "{html}");
    // The preheader is hidden as clients expect, without a colour trick.
    assert!(
        html.contains("display:none") && html.contains("Night scenes, landscapes"),
        "{html}"
    );
    // The text part is the body as text: no MJML, no layout chrome.
    let text = &parts.iter().find(|(t, _)| t == "text/plain").unwrap().1;
    assert!(text.contains("Hi ") && text.contains("tripod"), "{text}");
    assert!(
        !text.contains("mj-") && !text.contains("Night scenes"),
        "{text}"
    );
    // Paragraph by paragraph (CRLF in the message), the button a link.
    let text = text.replace("\r\n", "\n");
    assert!(
        text.contains("next step is a tripod.") && text.contains("\n\nChoose one"),
        "{text}"
    );
    assert!(text.contains("https://shop.example/c/tripods"), "{text}");
}

fn aftercare(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aftercare"))
        .args(args)
        .env_remove("AFTERCARE_SEQUENCES")
        .env_remove("AFTERCARE_TEMPLATES")
        .output()
        .expect("run aftercare")
}

#[test]
fn bad_mjml_is_a_validate_error_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let tpl = templates_with(
        dir.path(),
        &[
            (
                "typo/en.mjml.hbs",
                "---\nsubject: Hi\nlayout: responsive\n---\n<mj-text>Hi {{customer.first_name}}</mj-text>\n\
                 <mj-buton href=\"https://shop.example\">Shop</mj-buton>\n",
            ),
            (
                "unclosed/en.mjml.hbs",
                "---\nsubject: Hi\n---\n<mjml><mj-body><mj-section><mj-column><mj-text>Hi</mj-text>\n",
            ),
            (
                "mixed/en.mjml.hbs",
                "---\nsubject: Hi\nlayout: base\n---\n<mj-text>Hi</mj-text>\n",
            ),
            ("twice/en.hbs", "---\nsubject: Hi\n---\n<p>Hi</p>\n"),
            (
                "twice/en.mjml.hbs",
                "---\nsubject: Hi\nlayout: responsive\n---\n<mj-text>Hi</mj-text>\n",
            ),
        ],
    );
    let seq = dir.path().join("sequences");
    write(&seq, "_policies.yaml", "default_locale: en\n");
    let o = aftercare(&[
        "validate",
        "--sequences",
        &seq.display().to_string(),
        "--templates",
        &tpl.display().to_string(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let typo = tpl.join("typo/en.mjml.hbs").display().to_string();
    assert!(
        err.contains(&format!("{typo}:6:1: ")) && err.contains("MJML") && err.contains("<mj-buton"),
        "{err}"
    );
    let unclosed = tpl.join("unclosed/en.mjml.hbs").display().to_string();
    assert!(
        err.lines()
            .any(|l| l.starts_with(&unclosed) && l.contains("MJML")),
        "{err}"
    );
    let twice = tpl.join("twice/en.mjml.hbs").display().to_string();
    assert!(
        err.contains(&format!("{twice}:1:1: ")) && err.contains("two HTML parts for locale en"),
        "{err}"
    );
    let mixed = tpl.join("mixed/en.mjml.hbs").display().to_string();
    assert!(
        err.contains(&format!("{mixed}:3:"))
            && err.contains("an MJML template cannot use an HTML layout"),
        "{err}"
    );
}

/// `preview --html` prints the HTML part byte for byte as the worker sends
/// it: inlined, and for MJML the final HTML.
#[tokio::test]
async fn preview_html_is_the_sent_html_part() {
    use aftercare::clock::ManualClock;
    use aftercare::send::transport::EmlDir;
    use aftercare::send::worker::{Compose, DEFAULT_RETRY, Done, Worker};
    use aftercare::store::MemStore;

    let dir = tempfile::tempdir().unwrap();
    let event = r#"{"id":"e1","type":"order.placed","occurred_at":"2026-05-01T10:00:00Z","customer":{"id":"c1","email":"maria@example.bg","first_name":"Мария","locale":"bg-BG","marketing_consent":true},"order":{"id":"o1","number":"1001","placed_at":"2026-05-01T10:00:00Z","currency":"EUR","total":"10","items":[{"sku":"CAM-1","name":"Камера","category":"camera","quantity":1,"unit_price":"10"}]}}"#;
    let event_file = dir.path().join("event.json");
    std::fs::write(&event_file, event).unwrap();
    let now: chrono::DateTime<chrono::Utc> = "2026-05-01T10:00:00Z".parse().unwrap();
    let store = MemStore::new();
    aftercare::ingest::ingest_batch(
        &store,
        support::catalog(),
        &[aftercare::event::Event::parse(event).unwrap()],
        "test",
        now,
    )
    .await
    .unwrap();
    let outbox = dir.path().join("outbox");
    let worker = Worker {
        store: store.clone(),
        catalog: Arc::new(support::catalog().clone()),
        templates: Arc::new(Templates::load(Path::new("templates"), "en").0),
        transport: EmlDir {
            dir: outbox.clone(),
        },
        clock: Arc::new(ManualClock::new(now + chrono::Duration::minutes(1))),
        retry: DEFAULT_RETRY.to_vec(),
        compose: Compose::Message,
        max_email_bytes: aftercare::send::worker::DEFAULT_MAX_EMAIL_BYTES,
        dkim: None,
        concurrency: 1,
        bounces: None,
        paused: Default::default(),
        links: std::sync::Arc::new(
            aftercare::send::links::Links::ephemeral("http://127.0.0.1:8080").unwrap(),
        ),
        instance: aftercare::instance::Instance::solo(),
    };
    let handled = worker.tick().await.unwrap();
    let sent: Vec<_> = handled.iter().filter(|h| h.done == Done::Sent).collect();
    assert_eq!(sent.len(), 1, "{handled:?}");
    let template = sent[0].row.template.clone();
    let eml = std::fs::read_dir(&outbox)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let o = aftercare(&[
        "preview",
        &template,
        "--data",
        &event_file.display().to_string(),
        "--html",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8(o.stdout).unwrap();
    let (_, printed) = out
        .split_once("\n----- HTML -----\n")
        .expect("an HTML section");
    assert_eq!(printed.trim_end(), html_part(&eml).trim_end());

    // The MJML template: preview against the message the worker builds.
    let o = aftercare(&["preview", "camera-tripod-offer", "--html"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8(o.stdout).unwrap();
    let (_, printed) = out.split_once("\n----- HTML -----\n").unwrap();
    let f = dir.path().join("mjml.eml");
    std::fs::write(&f, sent_for_preview("camera-tripod-offer")).unwrap();
    assert_eq!(printed.trim_end(), html_part(&f).trim_end());
}

/// What the worker builds with preview's data (the sample, origin `preview`).
fn sent_for_preview(id: &str) -> Vec<u8> {
    let catalog = support::catalog();
    let templates = support::templates();
    let data = aftercare::template::data::sample_data(&catalog.policies, id, templates.sample(id));
    let locale = data["customer"]["locale"].as_str().map(str::to_string);
    let content = templates.render(id, locale.as_deref(), &data).unwrap();
    let env = Envelope {
        to: "anna@example.com",
        idempotency_key: id,
        sequence: "preview",
        template: id,
        date: chrono::Utc::now(),
        list_unsubscribe: None,
    };
    build_message(&catalog.policies, &env, &content)
        .unwrap()
        .formatted()
}
