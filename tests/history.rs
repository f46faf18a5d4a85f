//! History imports, the way a shop makes them: `aftercare ingest --backfill
//! FILE` over months of past events (out of order in the file), and history
//! events on Kafka marked with the `aftercare-history: true` header. Customers
//! end at the step they would be at now; emails that were due before now are
//! recorded as skipped (`backfill`), never sent; waits that end in the future
//! stay.

mod support;

use std::process::{Command, Output};

use aftercare::engine::outbox::{OutboxStatus, Outcome};
use aftercare::engine::state::{Status, Waiting};
use aftercare::store::Store;
use chrono::{DateTime, Duration, Timelike, Utc};

const ANNA: &str = r#"{"id":"CUST","email":"CUST@example.com","first_name":"Anna","locale":"hu-HU","timezone":"Europe/Budapest","marketing_consent":true}"#;

fn ev(id: &str, kind: &str, customer: &str, order: &str, at: DateTime<Utc>) -> String {
    support::shop_event(id, kind, &ANNA.replace("CUST", customer), order, at)
}

fn aftercare(args: &[&str], database_url: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aftercare"))
        .args(args)
        .env_remove("AFTERCARE_SEQUENCES")
        .env_remove("AFTERCARE_TEMPLATES")
        .env("AFTERCARE_DATABASE_URL", database_url)
        .output()
        .expect("run aftercare")
}

/// Days before the test began (one instant for the whole test, so that
/// times written to the file and times expected agree).
fn days_ago(d: i64) -> DateTime<Utc> {
    static START: std::sync::LazyLock<DateTime<Utc>> =
        std::sync::LazyLock::new(|| Utc::now().with_nanosecond(0).unwrap());
    *START - Duration::days(d)
}

async fn active<S: Store>(store: &S, customer: &str, sequence: &str) -> Vec<Waiting> {
    store
        .enrollments_of(customer)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.sequence == sequence && e.status == Status::Active)
        .map(|e| {
            assert!(e.history.is_none(), "caught up: {e:?}");
            e.waiting
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_replays_history_on_its_own_time_and_sends_nothing() {
    let db = support::PgDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("history.jsonl");
    // Out of order in the file, as exports often are.
    let lines = [
        // Done long ago: delivered 57 days ago, education and review since.
        ev("a3", "shipment.delivered", "done", "o1", days_ago(57)),
        ev("a1", "order.placed", "done", "o1", days_ago(60)),
        ev("a2", "shipment.shipped", "done", "o1", days_ago(59)),
        // Shipped yesterday: waits for the delivery, 20 days from now.
        ev("b2", "shipment.shipped", "shipped", "o2", days_ago(1)),
        ev("b1", "order.placed", "shipped", "o2", days_ago(2)),
        // Placed 10 days ago, never shipped: the 3-day wait timed out (its
        // "delayed" email is history), the 14-day one still runs.
        ev("c1", "order.placed", "late", "o3", days_ago(10)),
    ];
    std::fs::write(&file, lines.join("\n")).unwrap();
    let path = file.to_str().unwrap();
    let out = aftercare(&["ingest", "--backfill", path], &db.url);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("6 events replayed as history"), "{said}");
    assert!(said.contains("3 customers caught up"), "{said}");

    let s = &db.store;
    let outbox = s.outbox().await.unwrap();
    assert!(!outbox.is_empty());
    for row in &outbox {
        assert_eq!(row.status, OutboxStatus::Skipped, "{row:?}");
        let why = row.last_error.as_deref().unwrap_or_default();
        assert!(why.starts_with("backfill"), "{why}");
    }
    let log = s.deliveries().await.unwrap();
    assert_eq!(log.len(), outbox.len());
    assert!(log.iter().all(|d| d.outcome == Outcome::Skipped));
    let templates = |c: &str| {
        let mut rows: Vec<_> = outbox.iter().filter(|o| o.customer_id == c).collect();
        rows.sort_by_key(|o| o.id);
        rows.iter().map(|o| o.template.clone()).collect::<Vec<_>>()
    };
    // Every step up to now happened, in order, on its own time.
    let done = templates("done");
    assert_eq!(
        done[..4],
        [
            "order-confirmation",
            "order-shipped",
            "order-delivered",
            "camera-care-auto-mode"
        ]
    );
    assert!(
        done.contains(&"camera-tripod-offer".to_string()),
        "{done:?}"
    );
    assert!(active(s, "done", "fulfilment").await.is_empty());
    assert!(active(s, "done", "education").await.is_empty());
    assert_eq!(
        templates("shipped"),
        ["order-confirmation", "order-shipped"]
    );
    match &active(s, "shipped", "fulfilment").await[..] {
        [Waiting::Event { event, until }] => {
            assert_eq!(event, "shipment.delivered");
            assert_eq!(*until, days_ago(1) + Duration::days(21));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        templates("late"),
        ["order-confirmation", "shipping-delayed"]
    );
    match &active(s, "late", "fulfilment").await[..] {
        [Waiting::Event { event, until }] => {
            assert_eq!(event, "shipment.shipped");
            assert_eq!(*until, days_ago(10) + Duration::days(17));
        }
        other => panic!("{other:?}"),
    }

    // The same file again changes nothing.
    let out = aftercare(&["ingest", "--backfill", path], &db.url);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("0 events replayed as history, 6 duplicate"),
        "{said}"
    );
    assert_eq!(s.outbox().await.unwrap().len(), outbox.len());
    db.drop().await;
}

/// Without `--backfill` the same old events enqueue their emails to go out
/// now: the defect the flag exists for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_backfill_old_events_are_live() {
    let db = support::PgDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("old.jsonl");
    std::fs::write(&file, ev("c1", "order.placed", "late", "o3", days_ago(10))).unwrap();
    let out = aftercare(&["ingest", file.to_str().unwrap()], &db.url);
    assert!(out.status.success());
    let outbox = db.store.outbox().await.unwrap();
    assert_eq!(outbox.len(), 1);
    assert_eq!(outbox[0].status, OutboxStatus::Pending);
    db.drop().await;
}

/// A history event on the webhook (`"history": true`), then a live event of
/// the same customer: the live one catches the history up first, so the
/// email that was due during the history is skipped and the live one is
/// queued to send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_event_catches_the_history_up_first() {
    use aftercare::config::Role;
    let db = support::PgDb::new().await;
    let app = support::app::spawn(db.store.clone(), &[Role::Http]).await;
    let placed = ev("h1", "order.placed", "anna", "o1", days_ago(10)).replacen(
        '{',
        r#"{"history":true,"#,
        1,
    );
    app.post(&[placed]).await;
    let rows = db.store.outbox().await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].status, OutboxStatus::Skipped);
    // Until caught up, the enrollment is history, due to the scheduler once
    // the import settles.
    let e = &db.store.enrollments_of("anna").await.unwrap()[0];
    assert!(e.history.is_some());
    app.post(&[ev("l1", "shipment.shipped", "anna", "o1", days_ago(0))])
        .await;
    let mut rows = db.store.outbox().await.unwrap();
    rows.sort_by_key(|o| o.id);
    let got: Vec<_> = rows
        .iter()
        .map(|o| (o.template.as_str(), o.status))
        .collect();
    assert_eq!(
        got,
        [
            ("order-confirmation", OutboxStatus::Skipped),
            ("shipping-delayed", OutboxStatus::Skipped),
            ("order-shipped", OutboxStatus::Pending),
        ]
    );
    app.shutdown().await;
    db.drop().await;
}

/// History sent over the webhook, then a live event: the catch-up wakes the
/// enrollments at their own, earlier times, and looks back from there, not
/// from now. The review the customer wrote two days after delivery (18 days
/// ago) stops the review request that education starts 16 days after
/// delivery; looking back only from now, it was missed, and the customer
/// would have been reminded to review, live, three days from now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catch_up_looks_back_from_the_history_not_from_now() {
    use aftercare::config::Role;
    let db = support::PgDb::new().await;
    let app = support::app::spawn(db.store.clone(), &[Role::Http]).await;
    let delivered = days_ago(20);
    let history = |id: &str, kind: &str, at: DateTime<Utc>| {
        ev(id, kind, "rev", "o1", at).replacen('{', r#"{"history":true,"#, 1)
    };
    app.post(&[
        history("p", "order.placed", delivered - Duration::days(2)),
        history("s", "shipment.shipped", delivered - Duration::days(1)),
        history("d", "shipment.delivered", delivered),
        history("r", "review.submitted", delivered + Duration::days(2)),
    ])
    .await;
    app.post(&[ev("u", "customer.updated", "rev", "o1", days_ago(0))])
        .await;
    let all = db.store.enrollments_of("rev").await.unwrap();
    assert!(
        all.iter().all(|e| e.history.is_none()),
        "caught up: {all:?}"
    );
    assert!(
        !all.iter().any(|e| e.sequence == "review-request"),
        "no review request for a customer who reviewed: {all:?}"
    );
    assert!(
        all.iter()
            .any(|e| e.sequence == "education" && e.status == Status::Completed)
    );
    let outbox = db.store.outbox().await.unwrap();
    assert!(outbox.iter().all(|o| o.status == OutboxStatus::Skipped));
    app.shutdown().await;
    db.drop().await;
}
