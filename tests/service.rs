//! `aftercare run` as an operator starts it: the release of the same binary
//! users run, as a child process.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn run(db: &Path, out: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_aftercare"))
        .args(["run", "--http-addr", "127.0.0.1:0", "--roles", "http"])
        .arg("--database-url")
        .arg(format!("sqlite://{}", db.display()))
        .arg("--outbox-dir")
        .arg(out)
        .env_remove("AFTERCARE_DATABASE_URL")
        .env_remove("AFTERCARE_KAFKA_BROKERS")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start aftercare run")
}

/// Waits for `child` to exit, at most `within`.
fn exited(child: &mut Child, within: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < within {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// A second `run` on the same SQLite file used to start and fight the first
/// with thousands of "database is locked" errors. It now refuses at once and
/// says what to do.
#[test]
fn a_second_instance_on_one_sqlite_file_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("a.db");
    let out = dir.path().join("outbox");
    let mut first = run(&db, &out);
    let lock = dir.path().join("a.db.lock");
    let start = Instant::now();
    while !(lock.exists() && db.exists()) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "first did not start"
        );
        assert!(first.try_wait().unwrap().is_none(), "first exited");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut second = run(&db, &out);
    let status = exited(&mut second, Duration::from_secs(30));
    let _ = second.kill();
    let status = status.expect("the second instance kept running");
    assert!(!status.success());
    let mut err = String::new();
    std::io::Read::read_to_string(&mut second.stderr.take().unwrap(), &mut err).unwrap();
    assert!(
        err.contains("another aftercare instance is running on") && err.contains("PostgreSQL"),
        "{err}"
    );
    assert!(first.try_wait().unwrap().is_none(), "the first runs on");
    first.kill().unwrap();
    first.wait().unwrap();
    // The lock dies with its process: a new instance starts.
    let mut third = run(&db, &out);
    assert!(
        exited(&mut third, Duration::from_secs(2)).is_none(),
        "third refused"
    );
    third.kill().unwrap();
    third.wait().unwrap();
}
