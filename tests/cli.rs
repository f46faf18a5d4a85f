//! The `aftercare` binary as a marketer uses it: validate, preview, simulate
//! and demo, on the shipped content and on broken files.

mod support;

use std::io::{BufRead, Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::event_json;

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
        stdout(&o).starts_with("ok: 9 sequence(s)"),
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

/// Issue 8, item 1, as `simulate` shows it: the shipped education waits end
/// `at: "10:00"` in each customer's own time zone, known from their first
/// event, although the delivery events that start education carry none.
/// (`tests/streams.rs` checks the same of `run` through the webhook.)
#[test]
fn simulate_waits_until_ten_in_each_customers_own_time_zone() {
    let o = aftercare(&["simulate", "--events", "examples/events.jsonl"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let zones = [
        ("c_anna", chrono_tz::Europe::Budapest),
        ("c_ploy", chrono_tz::Asia::Bangkok),
        ("c_wei", chrono_tz::Asia::Shanghai),
    ];
    let mut seen = 0;
    for line in stdout(&o).lines() {
        let l: serde_json::Value = serde_json::from_str(line).unwrap();
        if l["sequence"] != "education" {
            continue;
        }
        let Some((_, tz)) = zones.iter().find(|(c, _)| l["customer_id"] == *c) else {
            continue;
        };
        let at: chrono::DateTime<chrono::Utc> = l["at"].as_str().unwrap().parse().unwrap();
        let local = at.with_timezone(tz);
        assert_eq!(
            local.format("%H:%M").to_string(),
            "10:00",
            "{} {} at {at}",
            l["customer_id"],
            l["template"]
        );
        seen += 1;
    }
    assert!(seen >= 5, "education emails of the three customers: {seen}");
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
        err.contains(
            "order.total: expected money as a string like \"129.90\", got the number 12.5"
        ),
        "{err}"
    );
    assert!(err.contains("2 invalid"), "{err}");
    assert!(!stdout(&o).is_empty(), "the good events still ran");
}

/// Issue 11: the default demo takes the retention examples too, and every
/// shipped sequence sends in it (the time-driven ones included).
#[test]
fn the_demo_runs_every_shipped_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = dir.path().join("outbox");
    let o = aftercare(&["demo", "--outbox", outbox.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for seq in std::fs::read_dir("sequences").unwrap() {
        let name = seq.unwrap().file_name().to_string_lossy().into_owned();
        let Some(id) = name.strip_suffix(".yaml").filter(|n| !n.starts_with('_')) else {
            continue;
        };
        // The demo's sequence column is 14 wide.
        let shown: String = id.chars().take(14).collect();
        assert!(
            out.lines()
                .any(|l| l.contains(&format!(" {shown}")) && !l.contains("skipped")),
            "no email of {id} in the demo:\n{out}"
        );
    }
}

#[test]
fn demo_writes_real_eml_files() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = dir.path().join("outbox");
    let o = aftercare(&[
        "demo",
        "--events",
        "examples/events.jsonl",
        "--outbox",
        outbox.to_str().unwrap(),
    ]);
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
    let again = aftercare(&[
        "demo",
        "--events",
        "examples/events.jsonl",
        "--outbox",
        outbox.to_str().unwrap(),
    ]);
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

/// Issue 11: each bad calendar value (a span, a weekday, a time, a policy
/// window in months, `months(n)` out of range) is an error at its place.
#[test]
fn validate_reports_bad_calendar_values_with_their_place() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "seq/_policies.yaml",
        "promo_share: {max_percent: 20, window: 1mo}\n",
    );
    write(
        d,
        "seq/a.yaml",
        "id: a\ncategory: transactional\ntrigger: {event: order.placed}\nsteps:\n  - email: order-confirmation\n  - wait: 11y\n  - wait: 1mo\n    on: [mon, tues]\n  - wait_until: 'now - months(200000)'\n    at: \"25:00\"\n  - wait_for: shipment.shipped\n    within: 1mo\n    on: []\n  - email: order-shipped\n",
    );
    let (code, err, _) = validate_dir(d);
    assert_eq!(code, Some(1), "{err}");
    let p = |f: &str| d.join(f).display().to_string();
    for want in [
        format!(
            "{}:1:40: promo_share.window: `1mo` counts calendar months or years",
            p("seq/_policies.yaml")
        ),
        format!(
            "{}:6:11: wait: \"11y\" is longer than 3650d (about 10 years)",
            p("seq/a.yaml")
        ),
        format!(
            "{}:8:15: on: `tues` is not a day of the week; did you mean `tue`?",
            p("seq/a.yaml")
        ),
        format!(
            "{}:9:17: `now - months(200000)` fails on the sample event: Error executing \
             function 'months': 200000 months is out of range (at most 120000 either way)",
            p("seq/a.yaml")
        ),
        format!("{}:10:9: at: `25:00` is not a time of day", p("seq/a.yaml")),
        format!("{}:13:9: on: the list of days is empty", p("seq/a.yaml")),
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

/// Issue 8: an events file checked before it is sent. Every line that is not
/// an event is an error at FILE:LINE; types nothing listens to are warnings
/// with a suggestion; exit 1 only for the errors.
#[test]
fn validate_checks_an_events_file_line_by_line() {
    let dir = tempfile::tempdir().unwrap();
    let at = "2026-11-20T10:00:00Z";
    let good = event_json("v1", "order.placed", "c1", "o1", at, true);
    let typo = |id: &str| event_json(id, "shipment.shiped", "c1", "o1", at, true);
    let lines = [
        good.clone(),
        good.replace("\"129.90\"", "129.9")
            .replace("\"v1\"", "\"v2\""),
        typo("v3"),
        String::new(),
        good.replace("c1@example.com", "a..b@c.d")
            .replace("\"v1\"", "\"v5\""),
        typo("v6"),
        event_json("v7", "shop.loyalty_points", "c1", "o1", at, true),
        event_json("v8", "shipment.delayed", "c1", "o1", at, true),
        "{not json".to_string(),
    ];
    let file = dir.path().join("events.jsonl");
    std::fs::write(&file, lines.join("\n")).unwrap();
    let f = file.display().to_string();
    let o = aftercare(&["validate", "--events", &f]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    for want in [
        format!("{f}:2: order.total: expected money as a string like \"129.90\", got the number"),
        format!("{f}:5: customer.email: "),
        format!("{f}:9: "),
        format!(
            "{f}:3: warning: event type \"shipment.shiped\" is not listened to by any sequence \
             and is not a documented type: 2 events, the first on this line (did you mean \
             shipment.shipped?)"
        ),
        format!(
            "{f}:7: warning: event type \"shop.loyalty_points\" is not listened to by any \
             sequence and is not a documented type: 1 event, the first on this line\n"
        ),
        format!(
            "{f}:8: warning: event type \"shipment.delayed\" is documented, but no sequence \
             listens to it: 1 event, the first on this line"
        ),
        "3 error(s), 3 warning(s)".to_string(),
    ] {
        assert!(err.contains(&want), "missing {want:?} in:\n{err}");
    }
    // Warnings alone pass.
    std::fs::write(&file, [good, typo("v3")].join("\n")).unwrap();
    let o = aftercare(&["validate", "--events", &f]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with("ok: 9 sequence(s), ")
            && stdout(&o).contains(", 2 event(s), 1 warning(s)"),
        "{}",
        stdout(&o)
    );
    // The shipped examples are clean but for the one type nothing uses.
    let o = aftercare(&["validate", "--events", "examples/events.jsonl"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        !stderr(&o).contains("not a documented type"),
        "{}",
        stderr(&o)
    );
}

/// Issue 8: `- exit` alone is an exit step, as `- exit: true` is.
#[test]
fn a_bare_exit_ends_the_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "seq/a.yaml",
        "id: a\ncategory: transactional\ntrigger: {event: order.placed}\nsteps:\n  \
         - email: order-confirmation\n  - exit\n  - email: order-shipped\n",
    );
    let (code, err, out) = validate_dir(d);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("ok: 1 sequence(s)"), "{out}");
    let events = d.join("events.jsonl");
    std::fs::write(
        &events,
        event_json(
            "x1",
            "order.placed",
            "c1",
            "o1",
            "2026-11-20T10:00:00Z",
            true,
        ),
    )
    .unwrap();
    let o = aftercare(&[
        "simulate",
        "--events",
        events.to_str().unwrap(),
        "--sequences",
        d.join("seq").to_str().unwrap(),
        "--templates",
        "templates",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let sent: Vec<&str> = out.lines().collect();
    assert_eq!(sent.len(), 1, "only the email before the exit: {out}");
    assert!(out.contains("\"template\":\"order-confirmation\""), "{out}");
    // A key beside `exit` is named in an exit step (not "a exit step").
    write(
        d,
        "seq/a.yaml",
        "id: a\ncategory: transactional\nsteps:\n  - exit: true\n    after: 1d\n  - exti\n",
    );
    let (code, err, _) = validate_dir(d);
    assert_eq!(code, Some(1));
    assert!(
        err.contains(":5:5: unknown key `after` in an exit step;"),
        "{err}"
    );
    assert!(
        err.contains(":6:5: step: `exti` is not a step (did you mean `exit`?)"),
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

/// Issue 8: a backfill names the event types nothing listens to, once each
/// with its count, in logs without colour codes when stderr is no terminal.
#[test]
fn ingest_warns_of_unheard_types_in_plain_logs() {
    let dir = tempfile::tempdir().unwrap();
    let at = "2026-11-20T10:00:00Z";
    let lines: Vec<String> = (0..3)
        .map(|i| event_json(&format!("i{i}"), "shipment.shiped", "c1", "o1", at, true))
        .chain([event_json("i9", "order.placed", "c1", "o1", at, true)])
        .collect();
    let file = dir.path().join("events.jsonl");
    std::fs::write(&file, lines.join("\n")).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_aftercare"))
        .args(["ingest", file.to_str().unwrap()])
        .env(
            "AFTERCARE_DATABASE_URL",
            format!("sqlite://{}", dir.path().join("a.db").display()),
        )
        .env_remove("AFTERCARE_SEQUENCES")
        .env_remove("AFTERCARE_TEMPLATES")
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert_eq!(
        err.matches(
            "event type \"shipment.shiped\" is not listened to by any sequence and is \
                     not a documented type: 3 events in the last hour (did you mean \
                     shipment.shipped?)"
        )
        .count(),
        1,
        "{err}"
    );
    assert!(err.contains("4 events applied"), "{err}");
    assert!(
        err.contains("3 events of types no sequence listens to"),
        "{err}"
    );
    assert!(!err.contains('\x1b'), "colour codes in piped logs: {err:?}");
}

/// A child `aftercare run` with its stderr read line by line.
struct Service {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    seen: String,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Service {
    fn start(dir: &Path) -> Service {
        let mut child = Command::new(env!("CARGO_BIN_EXE_aftercare"))
            .arg("run")
            .env(
                "AFTERCARE_DATABASE_URL",
                format!("sqlite://{}", dir.join("a.db").display()),
            )
            .env("AFTERCARE_HTTP_ADDR", "127.0.0.1:0")
            .env("AFTERCARE_OUTBOX_DIR", dir.join("outbox"))
            .env_remove("AFTERCARE_KAFKA_BROKERS")
            .env_remove("AFTERCARE_SEQUENCES")
            .env_remove("AFTERCARE_TEMPLATES")
            .env_remove("AFTERCARE_LOG_FORMAT")
            .env_remove("RUST_LOG")
            .env_remove("NO_COLOR")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start aftercare run");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Service {
            child,
            lines,
            seen: String::new(),
        }
    }

    /// Waits for a log line containing `what`; returns it.
    fn wait_for(&mut self, what: &str) -> String {
        let end = Instant::now() + Duration::from_secs(30);
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push_str(&line);
                    self.seen.push('\n');
                    if line.contains(what) {
                        return line;
                    }
                }
                Err(_) => break,
            }
        }
        panic!("no log line with {what:?} in:\n{}", self.seen);
    }
}

/// One HTTP/1.1 POST over a plain socket; returns the whole answer.
fn post(addr: &str, body: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST /v1/events HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    answer
}

/// Issue 8: the service, as run, answers and logs a type nobody listens to,
/// and its logs carry no colour codes when stderr is a pipe.
#[test]
fn the_service_names_unheard_types_in_answers_and_plain_logs() {
    let dir = tempfile::tempdir().unwrap();
    let mut svc = Service::start(dir.path());
    let line = svc.wait_for("http listening");
    let addr = line
        .split("addr=")
        .nth(1)
        .and_then(|a| a.split_whitespace().next())
        .expect("the address in the log line")
        .to_string();
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let body = format!(
        "[{}]",
        event_json("s1", "shipment.shiped", "c1", "o1", &now, true)
    );
    let answer = post(&addr, &body);
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    assert!(
        answer.contains(
            r#""unknown_types":[{"type":"shipment.shiped","events":1,"did_you_mean":"shipment.shipped"}]"#
        ),
        "{answer}"
    );
    svc.wait_for(
        "event type \"shipment.shiped\" is not listened to by any sequence and is not a \
         documented type: 1 event in the last hour (did you mean shipment.shipped?)",
    );
    assert!(!svc.seen.contains('\x1b'), "colour codes: {:?}", svc.seen);
}
