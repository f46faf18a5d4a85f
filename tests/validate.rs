//! `aftercare validate` as a marketer meets it (issue 11, part 7): one run
//! reports every error of every file, each at `file:line:col`, in plain
//! words; what a real event may leave out is found too.

use std::path::Path;
use std::process::{Command, Output};

fn aftercare(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aftercare"))
        .args(args)
        .env_remove("AFTERCARE_SEQUENCES")
        .env_remove("AFTERCARE_TEMPLATES")
        .env_remove("AFTERCARE_OUTBOX_DIR")
        .output()
        .expect("run aftercare")
}

fn write(dir: &Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// `validate --sequences d/seq --templates d/tpl`: (exit code, stderr, stdout).
fn validate(d: &Path) -> (Option<i32>, String, String) {
    let o = aftercare(&[
        "validate",
        "--sequences",
        d.join("seq").to_str().unwrap(),
        "--templates",
        d.join("tpl").to_str().unwrap(),
    ]);
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
    )
}

fn assert_lines(out: &str, d: &Path, want: &[(&str, &str)]) {
    for (file, rest) in want {
        let line = format!("{}:{rest}", d.join(file).display());
        assert!(
            out.lines().any(|l| l.starts_with(&line)),
            "missing {line:?} in:\n{out}"
        );
    }
}

/// A template that is fine, for sequences to send.
const OK: &str = "---\nsubject: Hello\n---\n<p>Hello</p>\n<p><a href=\"{{unsubscribe_url}}\">Unsubscribe</a></p>\n";

/// Independent errors of every stage, in several files: each used to be
/// found only once the one before it was fixed (or not at all while another
/// file had an error). One run lists them all, with their places, and
/// nothing that only follows from another error.
#[test]
fn one_run_reports_every_stage() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A bad policies value.
    write(
        d,
        "seq/_policies.yaml",
        "default_locale: en\nfrequency_cap: {max: 1, per: 16 hours}\n",
    );
    // A YAML syntax error: the file says nothing more, and what names it
    // (`start: broken`, its template) is not reported because of it.
    write(
        d,
        "seq/broken.yaml",
        "id: broken\ncategory: value\nsteps: [oops\n  - email: only-in-broken\n",
    );
    // An unknown key, and (independent of it) a missing template.
    write(
        d,
        "seq/keys.yaml",
        "id: keys\ncategory: value\nenrol: once_per_order\nsteps:\n  - email: fine\n  - email: missing-template\n  - start: broken\n",
    );
    // A condition that fails on the sample, and a syntax error in another
    // whose `then` names a missing template.
    write(
        d,
        "seq/conds.yaml",
        "id: conds\ncategory: value\ntrigger: {event: order.placed, when: 'order.totl > 0.0'}\nsteps:\n  - if: 'order.total >'\n    then: [{email: missing-in-then}]\n  - email: fine\n",
    );
    // The sequence's skeleton is wrong (no category): its steps are still checked.
    write(
        d,
        "seq/nocat.yaml",
        "id: nocat\nsteps:\n  - wait_for: shipment.shipped\n    on_timeout: [{email: missing-in-timeout}]\n",
    );
    write(d, "tpl/fine/en.hbs", OK);
    write(d, "tpl/only-in-broken/en.hbs", OK);
    // Three unknown variables: a render stops at the first.
    write(
        d,
        "tpl/vars/en.hbs",
        "---\nsubject: Hi {{customer.frist_name}}\n---\n<p>{{order.totl}}</p>\n{{#each order.items}}<p>{{nmae}}</p>{{/each}}\n<a href=\"{{unsubscribe_url}}\">u</a>\n",
    );
    // A subject that does not compile does not hide the body's variable.
    write(
        d,
        "tpl/syntax/en.hbs",
        "---\nsubject: \"Hi {{customer.first_name}\"\n---\n<p>{{order.nubmer}}</p>\n",
    );
    // Nor does a missing layout.
    write(
        d,
        "tpl/layout/en.hbs",
        "---\nsubject: Hi\nlayout: nope\n---\n<p>{{shipment.carier}}</p>\n",
    );
    write(
        d,
        "seq/uses.yaml",
        "id: uses\ncategory: transactional\nsteps:\n  - email: vars\n  - email: syntax\n  - email: layout\n",
    );

    let (code, err, _) = validate(d);
    assert_eq!(code, Some(1), "{err}");
    assert_lines(
        &err,
        d,
        &[
            (
                "seq/_policies.yaml",
                "2:30: frequency_cap.per: \"16 hours\"",
            ),
            ("seq/broken.yaml", "4:10: invalid YAML"),
            (
                "seq/keys.yaml",
                "3:1: unknown key `enrol` in sequence (did you mean `enroll`?)",
            ),
            ("seq/keys.yaml", "6:12: unknown template `missing-template`"),
            (
                "seq/conds.yaml",
                "3:38: `order.totl > 0.0` fails on the sample event",
            ),
            ("seq/conds.yaml", "5:9: if: invalid condition"),
            ("seq/conds.yaml", "6:20: unknown template `missing-in-then`"),
            ("seq/nocat.yaml", "1:1: sequence: missing `category`"),
            ("seq/nocat.yaml", "3:5: wait_for: missing `within`"),
            (
                "seq/nocat.yaml",
                "4:26: unknown template `missing-in-timeout`",
            ),
            (
                "tpl/vars/en.hbs",
                "2:13: with the sample data: unknown variable `customer.frist_name`",
            ),
            (
                "tpl/vars/en.hbs",
                "4:4: with the sample data: unknown variable `order.totl`",
            ),
            (
                "tpl/vars/en.hbs",
                "5:25: with the sample data: unknown variable `order.items[].nmae`",
            ),
            (
                "tpl/syntax/en.hbs",
                "2:14: template syntax: `{{customer.first_name}` is not closed",
            ),
            (
                "tpl/syntax/en.hbs",
                "4:4: with the sample data: unknown variable `order.nubmer`",
            ),
            ("tpl/layout/en.hbs", "3:9: layout `nope` not found"),
            (
                "tpl/layout/en.hbs",
                "5:4: with the sample data: unknown variable `shipment.carier`",
            ),
        ],
    );
    // Nothing that only follows from the errors above.
    for not in [
        "names no sequence",
        "syntax/ folder",
        "layout/ folder",
        "`only-in-broken` is not used",
        "needs at least one step",
    ] {
        assert!(!err.contains(not), "{not:?} in:\n{err}");
    }
    assert!(err.ends_with("17 error(s), 0 warning(s)\n"), "{err}");
}

/// Templates are also rendered with the least a real event carries (ids,
/// email, type, time; no optional field, no customer facts): a failure there
/// is an error that names the field, an empty value in a subject a warning
/// at its place; warnings do not fail `validate`.
#[test]
fn the_minimal_sample_finds_what_real_events_may_lack() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "seq/s.yaml",
        "id: s\ncategory: transactional\ntrigger: {event: order.placed}\nsteps:\n  - email: winter\n  - email: guarded\n  - email: facts\n",
    );
    write(
        d,
        "tpl/winter/en.hbs",
        "---\nsubject: \"Winter is coming, {{customer.first_name}}: our warmest coats\"\n---\n<p>Coats.</p>\n",
    );
    write(
        d,
        "tpl/guarded/en.hbs",
        "---\nsubject: \"Winter is coming{{#if customer.first_name}}, {{customer.first_name}}{{/if}}\"\n---\n<p>Coats.</p>\n",
    );
    // Counts are 0 for a customer the store does not know; the rest is empty.
    write(
        d,
        "tpl/facts/en.hbs",
        "---\nsubject: \"Order {{customer.orders_count}} since {{customer.last_order_at}}\"\n---\n<p>x</p>\n",
    );
    let (code, err, out) = validate(d);
    assert_eq!(code, Some(0), "{err}");
    assert_lines(
        &err,
        d,
        &[
            (
                "tpl/winter/en.hbs",
                "2:29: warning: the subject shows `{{customer.first_name}}`, and a real event may \
                 not have `customer.first_name`: then the subject reads \"Winter is coming, : our \
                 warmest coats\"; wrap it in `{{#if customer.first_name}}…{{/if}}` or give a \
                 default with `{{else}}`",
            ),
            (
                "tpl/facts/en.hbs",
                "2:49: warning: the subject shows `{{customer.last_order_at}}`, and a customer \
                 with no history yet has no `customer.last_order_at`: then the subject reads \
                 \"Order 0 since\"",
            ),
        ],
    );
    assert!(!err.contains("guarded/"), "{err}");
    assert!(!err.contains("customer.orders_count"), "{err}");
    assert!(out.contains("2 warning(s)"), "{out}");

    // What fails on the minimal sample is an error that says so: every
    // such place at once, and the subject is still looked at.
    write(
        d,
        "tpl/guarded/en.hbs",
        "---\nsubject: Hi {{customer.first_name}}\n---\n<p>Born {{customer.attributes.birthday}}</p>\n{{#with shipment.tracking_url}}<a href=\"{{this}}\">track</a>{{/with}}\n{{#if shipment.carrier}}{{#with shipment.tracking_number}}{{this}}{{/with}}{{/if}}\n",
    );
    let (code, err, _) = validate(d);
    assert_eq!(code, Some(1), "{err}");
    assert_lines(
        &err,
        d,
        &[
            (
                "tpl/guarded/en.hbs",
                "4:9: `customer.attributes.birthday` may be missing in real events (the minimal \
                 sample, with only the fields every event has, lacks it) and then rendering \
                 fails: guard it with `{{#if …}}…{{/if}}`",
            ),
            (
                "tpl/guarded/en.hbs",
                "5:1: `shipment.tracking_url` may be missing in real events",
            ),
            (
                "tpl/guarded/en.hbs",
                "2:13: warning: the subject shows `{{customer.first_name}}`",
            ),
        ],
    );
    // Inside a guard that a real event may not pass, nothing fails.
    assert!(!err.contains("tracking_number"), "{err}");
    assert!(err.contains("2 error(s)"), "{err}");
}

/// `preview --data` says, on stderr and without failing, which keys of the
/// file the template never reads and which fields it reads that the file
/// lacks: filled from the sample for data, empty for an event.
#[test]
fn preview_says_how_the_data_fits_the_template() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data.json");
    std::fs::write(
        &data,
        "{\n  \"customer\": {\"first_name\": \"Anna\", \"frist_name\": \"typo\"},\n  \"order\": {\"number\": \"77\", \"coupon\": \"WINTER\"}\n}\n",
    )
    .unwrap();
    let o = aftercare(&["preview", "order-shipped", "--data", data.to_str().unwrap()]);
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(o.status.success(), "{err}");
    assert!(
        out.contains("Subject: Your order #77 is on its way"),
        "{out}"
    );
    let f = data.display();
    for want in [
        format!(
            "{f}:2:38: warning: `customer.frist_name` in the data is not read by template \
             `order-shipped` (en) (did you mean `customer.first_name`?)"
        ),
        format!("{f}:3:29: warning: `order.coupon` in the data is not read by template"),
        "templates/order-shipped/en.hbs:9:1: warning: the template reads `shipment.carrier`, \
         which is not in the data: the sample's value is used (\"DHL\")"
            .to_string(),
    ] {
        assert!(err.contains(&want), "missing {want:?} in:\n{err}");
    }
    // What the file gives and the template reads is not mentioned.
    assert!(!err.contains("`customer.first_name`,"), "{err}");
    assert!(!err.contains("`order.number`"), "{err}");

    // An event: what it lacks renders empty, as in a real email.
    let event = dir.path().join("event.json");
    std::fs::write(
        &event,
        r#"{"id": "e1", "type": "shipment.shipped", "occurred_at": "2026-11-20T10:00:00Z",
 "customer": {"id": "c1", "email": "a@example.com", "first_name": "Anna", "tags": ["vip"]},
 "order": {"id": "o1", "number": "1001"},
 "shipment": {"id": "s1", "carrier": "DHL", "tracking_url": "https://t.example/1"}}"#,
    )
    .unwrap();
    let o = aftercare(&[
        "preview",
        "order-shipped",
        "--data",
        event.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let f = event.display();
    for want in [
        format!(
            "{f}:2:75: warning: `customer.tags[]` in the event is not read by template \
             `order-shipped` (en)"
        ),
        "templates/order-shipped/en.hbs:15:1: warning: the template reads \
         `shipment.tracking_number`, which is not in the event: it renders empty, as for a \
         real event without it"
            .to_string(),
    ] {
        assert!(err.contains(&want), "missing {want:?} in:\n{err}");
    }
    assert_eq!(err.matches("warning:").count(), 2, "{err}");
}

fn run(args: &[&str], dir: &Path) -> (Option<i32>, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_aftercare"))
        .args(args)
        .env(
            "AFTERCARE_DATABASE_URL",
            format!("sqlite://{}", dir.join("a.db").display()),
        )
        .env_remove("AFTERCARE_SEQUENCES")
        .env_remove("AFTERCARE_TEMPLATES")
        .env_remove("RUST_LOG")
        .output()
        .expect("run aftercare");
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

const EVENT: &str = r#"{"id": "e1", "type": "order.placed", "occurred_at": "2026-11-20T10:00:00Z", "customer": {"id": "c1", "email": "a@example.com"}, "order": {"id": "o1", "total": "129.90", "items": [{"sku": "A", "quantity": 1}]}}"#;

/// A bad timestamp says RFC 3339 with an example, a wrong type which field
/// and what was expected: in events (simulate, ingest, preview --data) and
/// in a template's sample.json.
#[test]
fn events_and_samples_say_what_was_expected() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let lines = [
        EVENT.replace("2026-11-20T10:00:00Z", "2026-11-20 10:00"),
        EVENT.replace("\"129.90\"", "129.9"),
        EVENT.replace("\"quantity\": 1", "\"quantity\": \"1\""),
        EVENT.replace(
            "\"id\": \"c1\",",
            "\"id\": \"c1\", \"marketing_consent\": \"yes\",",
        ),
    ];
    let file = d.join("events.jsonl");
    std::fs::write(&file, lines.join("\n")).unwrap();
    let f = file.display();
    let want = [
        format!(
            "{f}:1: skipped: occurred_at: expected an RFC 3339 timestamp such as \
             \"2026-11-20T10:00:00Z\" (date, `T`, time, and `Z` or an offset such as +01:00), \
             got the string \"2026-11-20 10:00\""
        ),
        format!(
            "{f}:2: skipped: order.total: expected money as a string like \"129.90\", got the \
             number 129.9"
        ),
        format!(
            "{f}:3: skipped: order.items[0].quantity: expected a whole number, 0 or more, got \
             the string \"1\""
        ),
        format!(
            "{f}:4: skipped: customer.marketing_consent: expected true or false, got the string \
             \"yes\""
        ),
    ];
    let (code, err) = run(&["simulate", "--events", &file.to_string_lossy()], d);
    assert_eq!(code, Some(0), "{err}");
    for w in &want {
        assert!(
            err.contains(w.as_str()),
            "simulate: missing {w:?} in:\n{err}"
        );
    }
    let (_, err) = run(&["ingest", &file.to_string_lossy()], d);
    for w in &want {
        assert!(err.contains(w.as_str()), "ingest: missing {w:?} in:\n{err}");
    }

    // preview --data: the field's place in the file.
    let event = d.join("event.json");
    std::fs::write(
        &event,
        EVENT
            .replace("2026-11-20T10:00:00Z", "20/11/2026")
            .replace(", \"customer\"", ",\n \"customer\""),
    )
    .unwrap();
    let (code, err) = run(
        &[
            "preview",
            "order-confirmation",
            "--data",
            &event.to_string_lossy(),
        ],
        d,
    );
    assert_ne!(code, Some(0));
    assert!(
        err.contains(&format!(
            "{}:1:38: occurred_at: expected an RFC 3339 timestamp such as \"2026-11-20T10:00:00Z\"",
            event.display()
        )),
        "{err}"
    );
    // Template data merged over the sample is held to the same types.
    let data = d.join("data.json");
    std::fs::write(&data, "{\"order\": {\"placed_at\": \"yesterday\"}}").unwrap();
    let (code, err) = run(
        &[
            "preview",
            "order-confirmation",
            "--data",
            &data.to_string_lossy(),
        ],
        d,
    );
    assert_ne!(code, Some(0));
    assert!(
        err.contains(&format!(
            "{}:1:12: order.placed_at: expected an RFC 3339 timestamp such as \
             \"2026-11-20T10:00:00Z\", got the string \"yesterday\"",
            data.display()
        )),
        "{err}"
    );

    // sample.json.
    write(
        d,
        "seq/s.yaml",
        "id: s\ncategory: transactional\nsteps:\n  - email: t\n",
    );
    write(
        d,
        "tpl/t/en.hbs",
        "---\nsubject: Hi\n---\n<p>{{order.number}}</p>\n",
    );
    write(
        d,
        "tpl/t/sample.json",
        "{\n  \"order\": {\"placed_at\": \"2026-11-20\",\n    \"total\": 129.9}\n}\n",
    );
    let (code, err, _) = validate(d);
    assert_eq!(code, Some(1), "{err}");
    assert_lines(
        &err,
        d,
        &[
            (
                "tpl/t/sample.json",
                "2:13: order.placed_at: expected an RFC 3339 timestamp such as \
                 \"2026-11-20T10:00:00Z\", got the string \"2026-11-20\"",
            ),
            (
                "tpl/t/sample.json",
                "3:5: order.total: expected money as a string like \"129.90\", got the number 129.9",
            ),
        ],
    );
}

/// CEL's messages, translated: `has()` needs a field, which object lacks
/// which field, what cannot be compared with what; every missing field of a
/// condition at once.
#[test]
fn conditions_say_what_is_wrong_in_plain_words() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "tpl/t/en.hbs", OK);
    let conditions = [
        "has(review)",
        "order.placed_at > \"2026-01-01\"",
        "customer.tags.contains(\"vip\")",
        "order.total >= 50.0 and order.total < 100.0",
        "order.totl > 0.0 && customer.nmae == \"x\"",
        "has(customer.attributes.vip) && customer.attributes.vip == true",
    ];
    for (i, c) in conditions.iter().enumerate() {
        write(
            d,
            &format!("seq/s{i}.yaml"),
            &format!(
                "id: s{i}\ncategory: transactional\ntrigger:\n  event: order.placed\n  when: '{c}'\nsteps:\n  - email: t\n"
            ),
        );
    }
    let (code, err, _) = validate(d);
    assert_eq!(code, Some(1), "{err}");
    assert_lines(
        &err,
        d,
        &[
            (
                "seq/s0.yaml",
                "5:9: trigger.when: invalid condition: `has()` needs a field, e.g. \
                 `has(review.rating)`",
            ),
            (
                "seq/s1.yaml",
                "5:9: `order.placed_at > \"2026-01-01\"` fails on the sample event: `>` does not \
                 work on a timestamp and a string: write the time as \
                 timestamp(\"2026-11-20T10:00:00Z\")",
            ),
            (
                "seq/s2.yaml",
                "5:9: `customer.tags.contains(\"vip\")` fails on the sample event: `contains()` \
                 does not work on a list with a string: for a list, write `\"vip\" in \
                 customer.tags`",
            ),
            (
                "seq/s3.yaml",
                "5:9: trigger.when: invalid condition: unexpected `and`: CEL writes `&&` for and \
                 (at column 22 of the expression)",
            ),
            (
                "seq/s4.yaml",
                "5:9: `order.totl > 0.0 && customer.nmae == \"x\"` fails on the sample event: \
                 `order` has no field `totl` (did you mean `total`?)",
            ),
            (
                "seq/s4.yaml",
                "5:9: `order.totl > 0.0 && customer.nmae == \"x\"` fails on the sample event: \
                 `customer` has no field `nmae`",
            ),
        ],
    );
    assert!(
        !err.contains("s5.yaml"),
        "a tested attribute is fine:\n{err}"
    );
    assert!(err.contains("6 error(s)"), "{err}");
}

/// The usual slips, found by running `validate` on broken copies of the
/// shipped files: each says what is wrong and what to write.
#[test]
fn the_usual_slips_are_said_plainly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "seq/a.yaml",
        "id: a\ncategory: transactional\nsteps:\n  - email: y\n  - email:\n  - wait_for: shipment.shipped\n    within: 3d\n    timeout: [{email: t}]\n  - email: no-front\n  - email: t\n",
    );
    write(
        d,
        "seq/b.yaml",
        "id: b\ncategory: value\nsteps:\n  - email: t\n   - wait: 1d\n",
    );
    write(d, "tpl/no-front/en.hbs", "<p>Hello</p>\n");
    write(
        d,
        "tpl/t/en.hbs",
        "---\nsubject: Hi\n---\n{{#each order.item}}<p>{{name}}</p>{{/each}}\n<p>{{money order.total}}</p>\n{{> footer}}\n",
    );
    let (code, err, _) = validate(d);
    assert_eq!(code, Some(1), "{err}");
    assert_lines(
        &err,
        d,
        &[
            (
                "seq/a.yaml",
                "4:12: email: expected a string, found true: YAML reads a bare yes, no, y, n, \
                 on or off as true or false; put the value in quotes",
            ),
            (
                "seq/a.yaml",
                "5:10: email: has no value: write it after the colon",
            ),
            (
                "seq/a.yaml",
                "8:5: unknown key `timeout` in a wait_for step (did you mean `on_timeout`?)",
            ),
            (
                "seq/b.yaml",
                "5:4: invalid YAML: while parsing a block collection, did not find expected '-' \
                 indicator; the indentation is off here",
            ),
            (
                "tpl/no-front/en.hbs",
                "1:1: a template starts with front matter",
            ),
            (
                "tpl/t/en.hbs",
                "4:1: with the sample data: unknown variable `order.item` (did you mean \
                 `order.items`?)",
            ),
        ],
    );
    // A template folder whose file has errors is not unknown; what is read
    // inside an #each over a misspelt list follows from it.
    assert!(!err.contains("unknown template `no-front`"), "{err}");
    assert!(!err.contains("order.item[].name"), "{err}");

    // One at a time, as the render meets them: a helper short of an
    // argument, a partial that does not exist.
    write(
        d,
        "tpl/t/en.hbs",
        "---\nsubject: Hi\n---\n<p>{{money order.total}}</p>\n",
    );
    let (_, err, _) = validate(d);
    assert_lines(
        &err,
        d,
        &[(
            "tpl/t/en.hbs",
            "4:4: with the sample data: `money` needs more arguments: argument 2 is missing \
             (write `{{money amount currency}}`, e.g. `{{money order.total order.currency}}`)",
        )],
    );
    write(d, "tpl/t/en.hbs", "---\nsubject: Hi\n---\n{{> footer}}\n");
    let (_, err, _) = validate(d);
    assert_lines(
        &err,
        d,
        &[(
            "tpl/t/en.hbs",
            "4:1: with the sample data: no partial `footer`: `{{> footer}}` includes \
             _partials/footer.hbs, which does not exist",
        )],
    );
}

/// `validate --events`: a key the schema does not have is dropped by
/// ingest without a word; it is a warning, with the nearest field.
#[test]
fn validate_events_warns_about_keys_the_schema_does_not_have() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.jsonl");
    std::fs::write(
        &file,
        EVENT.replace("\"email\"", "\"first_nam\": \"Anna\", \"email\""),
    )
    .unwrap();
    let o = aftercare(&["validate", "--events", file.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "{}:1: warning: `customer.first_nam` is not a field of the event schema (did you \
             mean `first_name`?): it is ignored",
            file.display()
        )),
        "{err}"
    );
}
