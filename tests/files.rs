//! Event files as an operator feeds them: `aftercare ingest FILE` (SQLite and
//! PostgreSQL) and `aftercare simulate --events FILE`, with lines that are not
//! UTF-8, not JSON, past a limit or longer than an event may be. Each bad
//! line costs only itself (issue 7, reproductions 10 and 12).

mod support;

use std::path::Path;
use std::process::{Command, Output};

use aftercare::event::limits;
use aftercare::store::{SqliteStore, Store};

fn aftercare(args: &[&str], database_url: Option<&str>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_aftercare"));
    c.args(args)
        .env_remove("AFTERCARE_SEQUENCES")
        .env_remove("AFTERCARE_TEMPLATES")
        .env_remove("AFTERCARE_OUTBOX_DIR")
        .env_remove("AFTERCARE_DATABASE_URL");
    if let Some(url) = database_url {
        c.env("AFTERCARE_DATABASE_URL", url);
    }
    c.output().expect("run aftercare")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const AT: &str = "2026-11-20T10:00:00Z";

fn good(id: &str) -> Vec<u8> {
    support::event_json(
        id,
        "order.placed",
        &format!("c-{id}"),
        &format!("o-{id}"),
        AT,
        true,
    )
    .into_bytes()
}

/// A file of three good events and, between them, one bad line of each kind.
/// Returns the file and, by line number, what stderr says of each bad line.
fn mixed_file(dir: &Path) -> (std::path::PathBuf, Vec<(usize, String)>) {
    let mut not_utf8 = good("latin1");
    let at = not_utf8.windows(4).position(|w| w == b"Anna").unwrap();
    not_utf8[at] = 0xc1; // "Ánna" in Latin-1
    let limit = String::from_utf8(good("limit"))
        .unwrap()
        .replace(
            r#""quantity":1"#,
            r#""quantity":1,"replenish_every_days":100000000"#,
        )
        .into_bytes();
    let huge = format!(
        "{{\"id\":\"huge\",\"pad\":\"{}\"}}",
        "x".repeat(limits::EVENT_BYTES)
    )
    .into_bytes();
    let lines: Vec<Vec<u8>> = vec![
        good("f1"),
        not_utf8,
        b"{oops".to_vec(),
        b"".to_vec(),
        b"# a comment".to_vec(),
        good("f2"),
        limit,
        huge,
        good("f3"),
    ];
    let path = dir.join("events.jsonl");
    std::fs::write(&path, lines.join(&b"\n"[..])).unwrap();
    let shown = path.display().to_string();
    let expect = vec![
        (
            2,
            format!("{shown}:2: skipped: the line is not UTF-8 text (an invalid byte at column"),
        ),
        (
            3,
            format!("{shown}:3: skipped: invalid JSON at column 2: key must be a string"),
        ),
        (
            7,
            format!(
                "{shown}:7: skipped: order.items[0].replenish_every_days: 100000000 is not between 1 and 3650 days"
            ),
        ),
        (
            8,
            format!(
                "{shown}:8: skipped: the line is longer than the limit of {} bytes for an event",
                limits::EVENT_BYTES
            ),
        ),
    ];
    (path, expect)
}

async fn ingest_dead_letters_bad_lines_and_takes_the_rest<S: Store>(store: S, url: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (path, expect) = mixed_file(dir.path());
    let file = path.to_str().unwrap();
    let o = aftercare(&["ingest", file], Some(url));
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    for (_, line) in &expect {
        assert!(err.contains(line.as_str()), "expected {line:?} in\n{err}");
    }
    assert!(
        err.contains("3 events applied, 0 duplicate, 4 invalid (dead-lettered)"),
        "{err}"
    );
    assert_eq!(store.event_count().await.unwrap(), 3);
    let dead = store.dead_letters().await.unwrap();
    let origins: Vec<String> = dead
        .iter()
        .map(|d| d.letter.origin.clone().unwrap())
        .collect();
    let want: Vec<String> = expect.iter().map(|(n, _)| format!("{file}:{n}")).collect();
    assert_eq!(origins, want);
    assert!(
        dead.iter()
            .all(|d| d.letter.source == "file" && d.count == 1)
    );
    assert!(
        dead[0].letter.payload.contains("\u{fffd}nna"),
        "kept, as far as it is text"
    );
    assert_eq!(
        dead[3].letter.payload.len(),
        limits::EVENT_BYTES,
        "cut at the limit"
    );
    // The same file again: duplicates, and the same dead letters counted.
    let o = aftercare(&["ingest", file], Some(url));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("0 events applied, 3 duplicate, 4 invalid"),
        "{}",
        stderr(&o)
    );
    let again = store.dead_letters().await.unwrap();
    assert_eq!(again.len(), 4);
    assert!(again.iter().all(|d| d.count == 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_on_sqlite() {
    let (store, dir) = support::sqlite().await;
    let url = format!("sqlite://{}", dir.path().join("test.db").display());
    ingest_dead_letters_bad_lines_and_takes_the_rest(store, &url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_on_postgres() {
    let db = support::PgDb::new().await;
    ingest_dead_letters_bad_lines_and_takes_the_rest(db.store.clone(), &db.url).await;
    db.drop().await;
}

/// 1,000 identical invalid lines make one dead letter counted 1,000 times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_bad_lines_are_counted_not_multiplied() {
    let (store, dir): (SqliteStore, _) = support::sqlite().await;
    let url = format!("sqlite://{}", dir.path().join("test.db").display());
    let bad = String::from_utf8(good("same"))
        .unwrap()
        .replace("c-same@example.com", "a..b@c.d");
    let path = dir.path().join("same.jsonl");
    std::fs::write(&path, vec![bad.as_str(); 1000].join("\n")).unwrap();
    let o = aftercare(&["ingest", path.to_str().unwrap()], Some(&url));
    assert!(o.status.success(), "{}", stderr(&o));
    let dead = store.dead_letters().await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].count, 1000);
    assert!(
        dead[0]
            .letter
            .reason
            .starts_with("customer.email: \"a..b@c.d\" is not an email address")
    );
    assert_eq!(
        dead[0].letter.origin.as_deref(),
        Some(format!("{}:1000", path.display()).as_str())
    );
}

/// `simulate` reads the two halves of a file side by side: a bad line in
/// either is named by its number in the whole file, and reported in order.
#[test]
fn simulate_numbers_bad_lines_in_both_halves_of_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines: Vec<Vec<u8>> = (1..=40).map(|i| good(&format!("n{i}"))).collect();
    lines[2] = b"{oops".to_vec();
    lines[3] = b"".to_vec();
    lines[36] = b"{oops again".to_vec();
    let path = dir.path().join("events.jsonl");
    std::fs::write(&path, lines.join(&b"\n"[..])).unwrap();
    let o = aftercare(&["simulate", "--events", path.to_str().unwrap()], None);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    let shown = path.display().to_string();
    let first = format!("{shown}:3: skipped: invalid JSON");
    let last = format!("{shown}:37: skipped: invalid JSON");
    let (Some(a), Some(b)) = (err.find(&first), err.find(&last)) else {
        panic!("expected lines 3 and 37 named in\n{err}");
    };
    assert!(a < b, "in order:\n{err}");
    assert!(err.contains("37 events applied, 2 invalid"), "{err}");
    let out = String::from_utf8(o.stdout).unwrap();
    for i in [1, 2, 5, 36, 38, 40] {
        assert!(
            out.contains(&format!("\"customer_id\":\"c-n{i}\"")),
            "c-n{i} is mailed:\n{out}"
        );
    }
}

#[test]
fn simulate_reports_bad_lines_and_runs_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let (path, expect) = mixed_file(dir.path());
    let o = aftercare(&["simulate", "--events", path.to_str().unwrap()], None);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    for (_, line) in &expect {
        assert!(err.contains(line.as_str()), "expected {line:?} in\n{err}");
    }
    let out = String::from_utf8(o.stdout).unwrap();
    for c in ["c-f1", "c-f2", "c-f3"] {
        assert!(
            out.contains(&format!("\"customer_id\":\"{c}\"")),
            "{c} is mailed:\n{out}"
        );
    }
    for c in ["c-latin1", "c-limit", "huge"] {
        assert!(!out.contains(c), "{c} is not:\n{out}");
    }
}
