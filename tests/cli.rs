//! The `aftercare` binary as a marketer uses it: validate, preview, simulate
//! and demo, on the shipped content and on broken files.

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

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn validate_accepts_the_shipped_content() {
    let o = aftercare(&["validate"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with("ok: 4 sequence(s)"),
        "{}",
        stdout(&o)
    );
}

fn write(dir: &Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

#[test]
fn validate_lists_every_error_in_every_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "seq/_policies.yaml",
        "quiet_hours: {start: \"21:00\", end: \"8am\"}\n",
    );
    write(
        d,
        "seq/a.yaml",
        "id: a\ncategory: value\ntrigger: {event: order.placed, when: 'order.total >'}\nsteps:\n  - email: missing-template\n  - wait: 3days\n  - start: nowhere\n",
    );
    write(
        d,
        "seq/b.yaml",
        "id: b\ncategory: sometimes\nsteps:\n  - email: hello\n    id: x\n  - email: hello\n    id: x\n",
    );
    write(d, "seq/c.yaml", "id: c\n  bad: [indent\n");
    write(
        d,
        "tpl/hello/en.hbs",
        "---\nsubject: Hi {{customer.first_name}}\n---\n<p>{{order.totl}}</p>\n",
    );
    let seq = d.join("seq");
    let tpl = d.join("tpl");
    let o = aftercare(&[
        "validate",
        "--sequences",
        seq.to_str().unwrap(),
        "--templates",
        tpl.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    let p = |f: &str| d.join(f).display().to_string();
    for want in [
        format!("{}:1:36: quiet_hours.end", p("seq/_policies.yaml")),
        format!("{}:3:38: trigger.when: invalid condition", p("seq/a.yaml")),
        format!(
            "{}:5:12: unknown template `missing-template`",
            p("seq/a.yaml")
        ),
        format!("{}:6:11: wait:", p("seq/a.yaml")),
        format!(
            "{}:7:12: `start: nowhere` names no sequence",
            p("seq/a.yaml")
        ),
        format!("{}:2:11: category: `sometimes`", p("seq/b.yaml")),
        format!("{}:7:9: duplicate step id `x`", p("seq/b.yaml")),
        format!("{}:2:", p("seq/c.yaml")),
        format!(
            "{}:4:4: with the sample data: unknown variable `order.totl`",
            p("tpl/hello/en.hbs")
        ),
    ] {
        assert!(err.contains(&want), "missing {want:?} in:\n{err}");
    }
    assert!(err.contains("order.totl"), "{err}");
    // Other commands refuse to start on the same files, listing the errors.
    let o = aftercare(&[
        "simulate",
        "--events",
        "examples/events.jsonl",
        "--sequences",
        seq.to_str().unwrap(),
        "--templates",
        tpl.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("unknown template `missing-template`"));
}

const KEYS: [&str; 9] = [
    "at",
    "customer_id",
    "to",
    "sequence",
    "step",
    "template",
    "locale",
    "subject",
    "category",
];

#[test]
fn simulate_prints_the_documented_lines_deterministically() {
    let a = aftercare(&["simulate", "--events", "examples/events.jsonl"]);
    assert!(a.status.success(), "{}", stderr(&a));
    let b = aftercare(&["simulate", "--events", "examples/events.jsonl"]);
    assert_eq!(stdout(&a), stdout(&b));
    let lines: Vec<serde_json::Value> = stdout(&a)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.len() > 20);
    let mut prev = String::new();
    for l in &lines {
        let obj = l.as_object().unwrap();
        let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        assert_eq!(keys, KEYS, "field order");
        let at = l["at"].as_str().unwrap();
        assert!(at.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(at).is_ok());
        assert!(*at >= *prev, "time order");
        prev = at.to_string();
    }
    let who = |c: &str, t: &str| {
        lines
            .iter()
            .any(|l| l["customer_id"] == c && l["template"] == t)
    };
    // The paths the sample events exercise.
    assert!(
        who("c_anna", "camera-tripod-offer"),
        "camera education with the promo"
    );
    assert!(who("c_ploy", "shipping-delayed"), "late shipment");
    assert!(
        !lines
            .iter()
            .any(|l| l["customer_id"] == "c_maria" && l["category"] != "transactional"),
        "no consent"
    );
    assert!(!who("c_lina", "order-shipped"), "cancelled order");
    assert!(who("c_emma", "reorder-reminder"));
    assert!(
        lines
            .iter()
            .any(|l| l["customer_id"] == "c_anna" && l["locale"] == "hu")
    );
    let summary = stderr(&a);
    assert!(summary.contains("1 duplicate"), "{summary}");
}

#[test]
fn simulate_until_stops_the_clock() {
    let all = aftercare(&["simulate", "--events", "examples/events.jsonl"]);
    let cut = aftercare(&[
        "simulate",
        "--events",
        "examples/events.jsonl",
        "--until",
        "2026-11-10T00:00:00Z",
    ]);
    assert!(cut.status.success());
    let n_all = stdout(&all).lines().count();
    let cut_lines: Vec<String> = stdout(&cut).lines().map(str::to_string).collect();
    assert!(!cut_lines.is_empty() && cut_lines.len() < n_all);
    assert!(cut_lines.iter().all(|l| l.contains("\"at\":\"2026-11-0")));
    let bad = aftercare(&[
        "simulate",
        "--events",
        "examples/events.jsonl",
        "--until",
        "soon",
    ]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("--until"));
}

#[test]
fn simulate_skips_bad_event_lines_and_goes_on() {
    let o = aftercare(&["simulate", "--events", "examples/bad-events.jsonl"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("examples/bad-events.jsonl:"), "{err}");
    assert!(
        err.contains("customer.email") || err.contains("missing field `email`"),
        "{err}"
    );
    assert!(
        err.contains("order.total: money must be a decimal string"),
        "{err}"
    );
    assert!(err.contains("2 invalid"), "{err}");
    assert!(!stdout(&o).is_empty(), "the good events still ran");
}

#[test]
fn demo_writes_real_eml_files() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = dir.path().join("outbox");
    let o = aftercare(&["demo", "--outbox", outbox.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let files: Vec<_> = std::fs::read_dir(&outbox)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let sent = aftercare(&["simulate", "--events", "examples/events.jsonl"]);
    assert_eq!(
        files.len(),
        stdout(&sent).lines().count(),
        "one file per email sent"
    );
    let mut hungarian = false;
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let id_line = text
            .lines()
            .find(|l| l.starts_with("Message-ID: <"))
            .expect("Message-ID");
        let stem = f.file_stem().unwrap().to_str().unwrap();
        assert!(id_line.contains(stem), "file named by Message-ID");
        assert!(text.contains("X-Aftercare-Sequence: "));
        assert!(text.contains("X-Aftercare-Template: "));
        assert!(text.contains("multipart/alternative"));
        assert!(
            text.contains("Content-Type: text/plain") && text.contains("Content-Type: text/html")
        );
        hungarian |= text.contains("Content-Language: hu");
    }
    assert!(hungarian);
    // Running again overwrites instead of duplicating.
    let again = aftercare(&["demo", "--outbox", outbox.to_str().unwrap()]);
    assert!(again.status.success());
    assert_eq!(std::fs::read_dir(&outbox).unwrap().count(), files.len());
    assert!(stdout(&o).contains("order-confirmation") || stdout(&o).contains("fulfilment"));
}

#[test]
fn preview_renders_a_locale_with_an_event() {
    let dir = tempfile::tempdir().unwrap();
    let first = std::fs::read_to_string("examples/events.jsonl").unwrap();
    let anna = first
        .lines()
        .find(|l| l.contains("c_anna") && l.contains("order.placed"))
        .unwrap();
    let f = dir.path().join("anna.json");
    std::fs::write(&f, anna).unwrap();
    let o = aftercare(&[
        "preview",
        "order-confirmation",
        "--locale",
        "hu-HU",
        "--data",
        f.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.starts_with("Locale: hu\nSubject: Rendelését visszaigazoltuk"),
        "{out}"
    );
    assert!(!out.contains("<html"));
    let o = aftercare(&["preview", "order-confirmation", "--locale", "th", "--html"]);
    assert!(stdout(&o).contains("<html"), "--html prints the HTML part");
    let o = aftercare(&["preview", "no-such-template"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("unknown template `no-such-template`"));
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"oops\": ").unwrap();
    let o = aftercare(&[
        "preview",
        "order-confirmation",
        "--data",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("bad.json:1:"), "{}", stderr(&o));
}

/// Runs `validate` on `seq/` and the shipped templates; returns (code, stderr).
fn validate_dir(d: &Path) -> (Option<i32>, String, String) {
    let seq = d.join("seq");
    let o = aftercare(&[
        "validate",
        "--sequences",
        seq.to_str().unwrap(),
        "--templates",
        "templates",
    ]);
    (o.status.code(), stderr(&o), stdout(&o))
}

/// Issue 7, reproduction 4: durations and windows that crashed the service
/// (and a `wait_until` that crashed `validate` itself) are errors with their
/// place, not panics.
#[test]
fn validate_rejects_durations_past_ten_years_with_their_place() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "seq/_policies.yaml",
        "frequency_cap: {max: 1, per: 15000000w}\npromo_share: {max_percent: 20, window: 15000000w}\n",
    );
    write(
        d,
        "seq/a.yaml",
        "id: a\ncategory: transactional\ntrigger: {event: order.placed}\nsteps:\n  - email: order-confirmation\n  - wait: 15000000w\n  - wait_for: shipment.shipped\n    within: 15000000w\n  - wait_until: 'now + days(200000000000)'\n  - wait_until: 'now + days(100000000)'\n  - email: order-shipped\n",
    );
    let (code, err, _) = validate_dir(d);
    assert_eq!(code, Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let p = |f: &str| d.join(f).display().to_string();
    for want in [
        format!(
            "{}:1:30: frequency_cap.per: \"15000000w\" is longer than 3650d (about 10 years)",
            p("seq/_policies.yaml")
        ),
        format!(
            "{}:2:40: promo_share.window: \"15000000w\" is longer than 3650d",
            p("seq/_policies.yaml")
        ),
        format!(
            "{}:6:11: wait: \"15000000w\" is longer than 3650d",
            p("seq/a.yaml")
        ),
        format!(
            "{}:8:13: within: \"15000000w\" is longer than 3650d",
            p("seq/a.yaml")
        ),
        format!(
            "{}:9:17: `now + days(200000000000)` fails on the sample event",
            p("seq/a.yaml")
        ),
        format!(
            "{}:10:17: `now + days(100000000)` fails on the sample event",
            p("seq/a.yaml")
        ),
    ] {
        assert!(err.contains(&want), "missing {want:?} in:\n{err}");
    }
}

/// Issue 7, reproduction 1, as a user runs it: `simulate` on a file with
/// that order exits 0 (it exited 101), and the events after it still run.
#[test]
fn simulate_survives_a_huge_replenish_interval() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.jsonl");
    let e = r#""occurred_at":"2026-05-01T10:00:00Z","customer":{"id":"c","email":"a@b.co"}"#;
    std::fs::write(
        &events,
        format!(
            "{{\"id\":\"p\",\"type\":\"order.placed\",{e},\"order\":{{\"id\":\"o\",\"placed_at\":\"2026-05-01T10:00:00Z\",\"items\":[{{\"sku\":\"x\",\"replenish_every_days\":100000000}}]}}}}\n\
             {{\"id\":\"q\",\"type\":\"order.placed\",\"occurred_at\":\"2026-05-01T11:00:00Z\",\"customer\":{{\"id\":\"d\",\"email\":\"d@b.co\"}},\"order\":{{\"id\":\"o2\",\"placed_at\":\"2026-05-01T11:00:00Z\",\"items\":[{{\"sku\":\"x\"}}]}}}}\n"
        ),
    )
    .unwrap();
    let o = aftercare(&["simulate", "--events", events.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(r#""customer_id":"d""#),
        "the next order still ran:\n{}",
        stdout(&o)
    );
}

const LOOP_A: &str = "id: a\ncategory: value\ntrigger: {event: order.placed}\nenroll: every_event\nsteps:\n  - email: order-confirmation\n  - wait: 1s\n  - start: b\n";
const LOOP_B: &str = "id: b\ncategory: value\nenroll: every_event\nsteps:\n  - email: order-shipped\n  - if: 'has(order.total)'\n    then: [{start: a}]\n";

/// Issue 7, item 4: a start cycle that can go round without a day of
/// waiting is refused, with its path and the file of each hop; one that
/// cannot repeat, or waits, is a warning with its path.
#[test]
fn validate_finds_start_loops_before_they_run() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let p = |f: &str| d.join(f).display().to_string();
    // The issue's example: every_event, an email, 1s, start itself.
    write(
        d,
        "seq/self.yaml",
        "id: self\ncategory: value\ntrigger: {event: order.placed}\nenroll: every_event\nsteps:\n  - email: order-confirmation\n  - wait: 1s\n  - start: self\n",
    );
    write(d, "seq/a.yaml", LOOP_A);
    write(d, "seq/b.yaml", LOOP_B);
    let (code, err, _) = validate_dir(d);
    assert_eq!(code, Some(1), "{err}");
    for want in [
        format!(
            "{}:8:12: start cycle `self` ({}) → `self` goes round again after only 1s of waiting",
            p("seq/self.yaml"),
            p("seq/self.yaml")
        ),
        format!(
            "{}:8:12: start cycle `a` ({}) → `b` ({}) → `a` goes round again after only 1s of waiting",
            p("seq/a.yaml"),
            p("seq/a.yaml"),
            p("seq/b.yaml")
        ),
        "a cycle of every_event sequences must wait at least 1d per round".to_string(),
    ] {
        assert!(err.contains(&want), "missing {want:?} in:\n{err}");
    }

    // The same loops, each round waiting a week, or through a sequence that
    // enrolls once per order: warnings, and validate passes.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let p = |f: &str| d.join(f).display().to_string();
    write(d, "seq/a.yaml", &LOOP_A.replace("wait: 1s", "wait: 7d"));
    write(
        d,
        "seq/b.yaml",
        &LOOP_B.replace("enroll: every_event", "enroll: once_per_order"),
    );
    let (code, err, out) = validate_dir(d);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("1 warning(s)") || out.contains("warning(s)"),
        "{out}"
    );
    let want = format!(
        "{}:8:12: warning: start cycle `a` ({}) → `b` ({}) → `a` (a once_per_order or once_per_customer sequence in it stops the second round)",
        p("seq/a.yaml"),
        p("seq/a.yaml"),
        p("seq/b.yaml")
    );
    assert!(err.contains(&want), "missing {want:?} in:\n{err}");
}

/// A condition whose tree is deep (a long chain of `+`) overflowed the
/// stack when evaluated (an abort: `validate` runs each condition on a
/// sample, the service on small-stacked threads). It is refused with its
/// place; so is a deeply bracketed one.
#[test]
fn validate_refuses_a_deep_condition_without_crashing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let seq = |when: &str| {
        format!(
            "id: a\ncategory: transactional\ntrigger: {{event: order.placed, when: '{when}'}}\nsteps:\n  - email: order-confirmation\n"
        )
    };
    let chain = format!("order.total{} > 1.0", " + 1.0".repeat(600));
    write(d, "seq/a.yaml", &seq(&chain));
    let (code, err, _) = validate_dir(d);
    assert_eq!(code, Some(1), "{err}");
    let want = format!(
        "{}:3:38: trigger.when: the condition nests more than 32 levels deep",
        d.join("seq/a.yaml").display()
    );
    assert!(err.contains(&want), "missing {want:?} in:\n{err}");
    let brackets = format!("{}order.total{} > 1.0", "(".repeat(1000), ")".repeat(1000));
    write(d, "seq/a.yaml", &seq(&brackets));
    let (code, err, _) = validate_dir(d);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("3:38: trigger.when: invalid condition"),
        "{err}"
    );
}

/// Issue 8: the schema shops validate against is the one the code
/// generates, printed by `aftercare schema`.
#[test]
fn schema_prints_the_checked_in_json_schema() {
    let o = aftercare(&["schema"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let checked_in = std::fs::read_to_string("docs/event.schema.json").unwrap();
    assert_eq!(
        stdout(&o),
        checked_in,
        "docs/event.schema.json is stale: cargo run -- schema > docs/event.schema.json"
    );
}
