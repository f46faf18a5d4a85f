//! "Did customer X get the shipping email, and if not, why?" answered by
//! the real service (`GET /v1/admin/customers/{id}/journey`, on PostgreSQL
//! and on SQLite) and by `aftercare explain` (the binary, on a SQLite file):
//! an order that got the shipping email, a customer whose trigger condition
//! was false and who still waits for their shipment, a duplicate event, a
//! dead-lettered event, and a value email skipped for want of consent.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use aftercare::config::Role;
use aftercare::service::Loaded;
use aftercare::store::{SqliteStore, Store};
use chrono::Utc;
use reqwest::StatusCode;
use serde_json::Value;
use support::app::{self, App};
use support::event_json;

const TOKEN: &str = "admin-token-for-tests-0123456789";

/// A value email right after each order: skipped for a customer without
/// marketing consent.
const TIPS: &str = "id: tips
name: Tips right away
category: value
trigger:
  event: order.placed
steps:
  - email: product-tips
";

/// The shipped sequences and `TIPS`, in a folder of their own.
fn sequences(dir: &Path) -> PathBuf {
    let out = dir.join("sequences");
    std::fs::create_dir_all(&out).unwrap();
    for f in std::fs::read_dir("sequences").unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, out.join(f.file_name().unwrap())).unwrap();
    }
    std::fs::write(out.join("tips.yaml"), TIPS).unwrap();
    out
}

fn loaded(sequences: &Path) -> Loaded {
    let l = aftercare::validate::load(sequences, Path::new("templates"));
    assert!(!l.diagnostics.has_errors(), "{}", l.diagnostics);
    Loaded {
        catalog: l.catalog,
        templates: l.templates,
    }
}

async fn journey(app: &App, path: &str) -> (StatusCode, Value) {
    let r = reqwest::Client::new()
        .get(format!("http://{}/v1/admin/customers/{path}", app.addr))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap())
}

/// Posts `body` to the webhook as is, whatever the answer.
async fn post_raw(app: &App, body: &str) -> StatusCode {
    reqwest::Client::new()
        .post(app.url())
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .status()
}

/// Runs the story on `store` and checks the journeys the API gives.
async fn story<S: Store>(store: S, sequences: &Path) {
    let app = app::spawn_loaded(
        store,
        loaded(sequences),
        &["--admin-token", TOKEN],
        &[Role::Http, Role::Send, Role::Schedule],
    )
    .await;
    let at = Utc::now().to_rfc3339();
    let placed = event_json("x1", "order.placed", "c1", "o1", &at, false);
    app.post(&[
        placed.clone(),
        event_json("x2", "shipment.shipped", "c1", "o1", &at, false),
        // A camera, no replenish_every_days: reorder's trigger is false.
        event_json("x3", "order.placed", "c2", "o2", &at, false),
    ])
    .await;
    // The shop sends c1's order again: a duplicate.
    let answer = app.post(&[placed]).await;
    assert_eq!(answer["duplicates"], 1, "{answer}");
    // An event of c1 that cannot be used: dead-lettered.
    let bad = format!(
        r#"{{"id":"x4","type":"order.cancelled","occurred_at":"{at}","customer":{{"id":"c1","email":"c1@example.com"}},"order":{{"id":"o1","total":129.9}}}}"#
    );
    assert_eq!(post_raw(&app, &bad).await, StatusCode::BAD_REQUEST);

    // The sender sends the transactional emails (to .eml files).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let c1 = loop {
        let (status, j) = journey(&app, "c1/journey?template=order-shipped").await;
        assert_eq!(status, StatusCode::OK, "{j}");
        if j["answer"]["sent"] == true {
            break j;
        }
        assert!(std::time::Instant::now() < deadline, "never sent: {j:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let answer = &c1["answer"];
    assert!(
        answer["summary"]
            .as_str()
            .unwrap()
            .starts_with("yes: sent at "),
        "{answer:#}"
    );
    assert_eq!(answer["reasons"][0]["kind"], "sent");
    assert_eq!(answer["reasons"][0]["enrollment"], "fulfilment/c1/o1");
    let kinds = |j: &Value| -> Vec<String> {
        j["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["kind"].as_str().unwrap().to_string())
            .collect()
    };
    // With the template: fulfilment's lines and the events it listens to.
    let k = kinds(&c1);
    for want in [
        "event",
        "enrolled",
        "awaiting_event",
        "received",
        "email_enqueued",
        "email_sent",
    ] {
        assert!(k.iter().any(|k| k == want), "no {want} in {k:?}");
    }
    assert!(
        !c1["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["sequence"] == "tips"),
        "another sequence's lines under ?template=order-shipped: {c1:#}"
    );

    // The whole timeline: the duplicate, the dead letter, the skipped tips.
    let (_, all) = journey(&app, "c1/journey").await;
    let entries = all["entries"].as_array().unwrap();
    let find = |kind: &str| {
        entries
            .iter()
            .find(|e| e["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} in {all:#}"))
    };
    assert_eq!(find("duplicate")["event_id"], "x1");
    let dead = find("dead_letter");
    assert_eq!(dead["event_id"], "x4");
    assert_eq!(dead["order_id"], "o1");
    assert!(
        dead["summary"].as_str().unwrap().contains("order.total"),
        "{dead}"
    );
    let times: Vec<&str> = entries.iter().map(|e| e["at"].as_str().unwrap()).collect();
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted, "oldest first");
    // tips' value email: skipped, c1 has no marketing consent.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, j) = journey(&app, "c1/journey?template=product-tips").await;
        if j["answer"]["reasons"][0]["kind"] == "skipped" {
            assert_eq!(j["answer"]["sent"], false);
            let msg = j["answer"]["reasons"][0]["message"].as_str().unwrap();
            assert_eq!(msg, "skipped: no marketing consent");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never skipped: {j:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // c2 did not get the shipping email: fulfilment still waits for the
    // shipment, and says until when.
    let (_, c2) = journey(&app, "c2/journey?template=order-shipped&order=o2").await;
    let r = &c2["answer"]["reasons"][0];
    assert_eq!(c2["answer"]["sent"], false, "{c2:#}");
    assert_eq!(r["kind"], "waiting", "{c2:#}");
    assert_eq!(r["step"], "await-shipment");
    assert!(r["until"].as_str().is_some(), "{r}");
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .contains("waits at step `await-shipment` for shipment.shipped until"),
        "{r}"
    );
    // ... and was never enrolled in reorder: its trigger condition was false.
    let (_, re) = journey(&app, "c2/journey?template=reorder-reminder").await;
    let r = &re["answer"]["reasons"][0];
    assert_eq!(r["kind"], "not_enrolled", "{re:#}");
    let msg = r["message"].as_str().unwrap();
    assert!(
        msg.starts_with("not enrolled in reorder (order.placed x3): trigger condition `has("),
        "{msg}"
    );
    assert!(msg.ends_with("` was false"), "{msg}");
    // Another order's lines are left out.
    let (_, o) = journey(&app, "c1/journey?order=o9").await;
    assert!(
        o["entries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["order_id"].is_null()),
        "{o:#}"
    );

    // Nobody: 404; without the token: 401.
    let (status, _) = journey(&app, "nobody/journey").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let r = reqwest::Client::new()
        .get(format!("http://{}/v1/admin/customers/c1/journey", app.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    app.shutdown().await;
}

async fn the_journey_answers_why<S: Store>(store: S) {
    let dir = tempfile::tempdir().unwrap();
    story(store, &sequences(dir.path())).await;
}

support::on_both_stores!(the_journey_answers_why);

fn explain(db: &str, sequences: &Path, args: &[&str]) -> (bool, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_aftercare"))
        .arg("--sequences")
        .arg(sequences)
        .arg("explain")
        .args(args)
        .env("AFTERCARE_DATABASE_URL", db)
        .env_remove("AFTERCARE_TEMPLATES")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The same story, then `aftercare explain` on the SQLite file: a readable
/// timeline and the answer, and the same as JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_answers_on_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let seqs = sequences(dir.path());
    let db = format!("sqlite://{}", dir.path().join("a.db").display());
    let store = SqliteStore::connect(&db).await.unwrap();
    store.migrate().await.unwrap();
    story(store.clone(), &seqs).await;
    store.pool.close().await;

    let (ok, out, err) = explain(&db, &seqs, &["c1", "--template", "order-shipped"]);
    assert!(ok, "{err}");
    assert!(
        out.starts_with("customer c1, template order-shipped: "),
        "{out}"
    );
    assert!(
        out.contains("\ndid c1 get order-shipped? yes: sent at "),
        "{out}"
    );
    // One line per entry: an ISO time in UTC, the kind, what happened.
    let line = out
        .lines()
        .find(|l| l.contains("email order-shipped sent: written to "))
        .unwrap_or_else(|| panic!("{out}"));
    let (time, rest) = line.split_once("  ").unwrap();
    assert!(
        time.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(time).is_ok(),
        "{line}"
    );
    assert!(rest.starts_with("email_sent "), "{line}");

    let (ok, out, _) = explain(&db, &seqs, &["c2", "--template", "order-shipped"]);
    assert!(ok);
    assert!(
        out.contains("did c2 get order-shipped? no: fulfilment/c2/o2 has not reached"),
        "{out}"
    );
    let (ok, out, _) = explain(&db, &seqs, &["c2", "--template", "reorder-reminder"]);
    assert!(ok);
    assert!(
        out.contains("? no: not enrolled in reorder (order.placed x3): trigger condition `"),
        "{out}"
    );
    let (ok, out, _) = explain(&db, &seqs, &["c1"]);
    assert!(ok);
    assert!(out.contains("duplicate"), "{out}");
    assert!(out.contains("dead_letter"), "{out}");
    assert!(
        out.contains("email product-tips skipped: no marketing consent"),
        "{out}"
    );

    let (ok, out, _) = explain(&db, &seqs, &["c1", "--template", "order-shipped", "--json"]);
    assert!(ok);
    let j: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["customer_id"], "c1");
    assert_eq!(j["answer"]["sent"], true);

    let (ok, _, err) = explain(&db, &seqs, &["nobody"]);
    assert!(!ok);
    assert!(
        err.contains("nothing is stored about customer \"nobody\""),
        "{err}"
    );
}
