//! The store conformance suite: the same tests against SQLite, memory, and
//! the real PostgreSQL on 127.0.0.1:5432 (a fresh database per test).

mod support;

use std::collections::HashSet;
use std::ops::Bound;

use aftercare::engine::facts::{FactRange, TimeFact};
use aftercare::engine::outbox::{OutboxStatus, Outcome, Queued, SendOutcome, SendPlan};
use aftercare::engine::state::Status;
use aftercare::ingest::ingest_batch;
use aftercare::instance::Instance;
use aftercare::schedule;
use aftercare::send::worker;
use aftercare::sequence::model::Category;
use aftercare::store::{
    Claimer, DeadLetter, DeliveryFilter, DueClaim, LookBack, Store, SuppressionAction,
    SuppressionFilter, Transition, Tx,
};
use chrono::{DateTime, Duration, Utc};
use support::{catalog, event, t};

const T0: &str = "2026-11-20T10:00:00Z";

fn solo() -> Claimer {
    Instance::solo().claimer
}

async fn events_are_applied_once<S: Store>(s: S) {
    let cat = catalog();
    let batch = vec![
        event("e1", "order.placed", "c1", "o1", T0, true),
        event("e2", "order.placed", "c2", "o2", T0, true),
    ];
    let r = ingest_batch(&s, cat, &batch, "test", t(T0)).await.unwrap();
    assert_eq!((r.applied, r.duplicates, r.emails), (2, 0, 2));
    let again = ingest_batch(&s, cat, &batch, "test", t(T0)).await.unwrap();
    assert_eq!((again.applied, again.duplicates, again.emails), (0, 2, 0));
    assert_eq!(s.event_count().await.unwrap(), 2);
    let outbox = s.outbox().await.unwrap();
    assert_eq!(outbox.len(), 2);
    assert_eq!(
        outbox[0].idempotency_key,
        "fulfilment/c1/o1#order-confirmation"
    );
    let e = s.enrollments_of("c1").await.unwrap();
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].step.as_deref(), Some("await-shipment"));
    // The same event in one batch twice is also applied once.
    let dup = vec![event("e3", "order.placed", "c3", "o3", T0, true); 2];
    let r = ingest_batch(&s, cat, &dup, "test", t(T0)).await.unwrap();
    assert_eq!((r.applied, r.duplicates), (1, 1));
}

async fn events_advance_stored_enrollments<S: Store>(s: S) {
    let cat = catalog();
    ingest_batch(
        &s,
        cat,
        &[event("e1", "order.placed", "c1", "o1", T0, true)],
        "test",
        t(T0),
    )
    .await
    .unwrap();
    let later = "2026-11-21T10:00:00Z";
    let ship = event("e2", "shipment.shipped", "c1", "o1", later, true);
    let r = ingest_batch(&s, cat, &[ship], "test", t(later))
        .await
        .unwrap();
    assert_eq!(r.emails, 1);
    let keys: Vec<String> = s
        .outbox()
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.step)
        .collect();
    assert_eq!(keys, ["order-confirmation", "order-shipped"]);
    let e = &s.enrollments_of("c1").await.unwrap()[0];
    assert_eq!(e.context.shipment.as_ref().unwrap().id, "s-o1");
}

async fn due_enrollments_are_claimed_once_and_woken<S: Store>(s: S) {
    let cat = catalog();
    ingest_batch(
        &s,
        cat,
        &[event("e1", "order.placed", "c1", "o1", T0, true)],
        "test",
        t(T0),
    )
    .await
    .unwrap();
    {
        let mut tx = s.begin().await.unwrap();
        let due = tx
            .claim_due(t(T0) + Duration::days(1), 10, &LookBack::none())
            .await
            .unwrap();
        assert!(due.claims.is_empty(), "nothing due after one day");
    }
    assert_eq!(
        s.next_wake().await.unwrap(),
        Some(t(T0) + Duration::days(3))
    );
    let due = t(T0) + Duration::days(3);
    {
        // Claimed by a transaction that dies before it commits (a crash).
        let mut tx = s.begin().await.unwrap();
        let taken = tx.claim_due(due, 10, &LookBack::none()).await.unwrap();
        assert_eq!(
            taken.claims,
            [DueClaim {
                customer_id: "c1".into(),
                key: "fulfilment/c1/o1".into()
            }]
        );
        let c1 = &taken.customers["c1"];
        assert_eq!(c1.enrollments.len(), 1, "the customer comes loaded");
        assert!(c1.profile.is_some());
    }
    // No lease to wait out: the work is due again as soon as the rollback
    // reaches the database (sqlx sends it as the dropped transaction's
    // connection goes back to the pool, a moment later), and woken once.
    let mut ran = 0;
    for _ in 0..200 {
        ran = schedule::tick(&s, cat, due).await.unwrap().ran;
        if ran > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(ran, 1);
    let steps: Vec<String> = s
        .outbox()
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.step)
        .collect();
    assert_eq!(
        steps,
        [
            "order-confirmation",
            "await-shipment/timeout/shipping-delayed"
        ]
    );
    // Woken once: nothing more is due now.
    assert_eq!(schedule::tick(&s, cat, due).await.unwrap().ran, 0);
    let e = &s.enrollments_of("c1").await.unwrap()[0];
    assert_eq!(e.status, Status::Active);
    assert_eq!(e.step.as_deref(), Some("await-late-shipment"));
}

async fn concurrent_wakes_never_overlap<S: Store>(s: S) {
    let cat = catalog();
    let batch: Vec<_> = (0..60)
        .map(|i| {
            event(
                &format!("e{i}"),
                "order.placed",
                &format!("c{i}"),
                "o1",
                T0,
                true,
            )
        })
        .collect();
    ingest_batch(&s, cat, &batch, "test", t(T0)).await.unwrap();
    let due = t(T0) + Duration::days(3);
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut ran = 0;
            loop {
                match schedule::wake(&s, catalog(), due, 7).await.unwrap().ran {
                    0 => break ran,
                    n => ran += n,
                }
            }
        }));
    }
    let mut ran = 0;
    for task in tasks {
        ran += task.await.unwrap();
    }
    assert_eq!(ran, 60, "every due enrollment woken exactly once");
    assert_eq!(s.active_enrollments().await.unwrap(), 60);
    assert_eq!(s.next_wake().await.unwrap(), Some(due + Duration::days(14)));
}

async fn outbox_rows_go_through_the_policy<S: Store>(s: S) {
    let cat = catalog();
    // c1 consents, c2 does not; both get a transactional confirmation.
    let batch = [
        event("e1", "order.placed", "c1", "o1", T0, true),
        event("e2", "order.placed", "c2", "o2", T0, false),
    ];
    ingest_batch(&s, cat, &batch, "test", t(T0)).await.unwrap();
    let now = t(T0);
    let rows = s
        .claim_outbox(now, Duration::seconds(60), 10, &solo())
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    assert!(
        s.claim_outbox(now, Duration::seconds(60), 10, &solo())
            .await
            .unwrap()
            .is_empty(),
        "leased"
    );
    for row in &rows {
        let (plan, profile) = worker::plan(&s, cat, row, now, worker::SENDING_LEASE)
            .await
            .unwrap();
        assert_eq!(plan, SendPlan::Send, "transactional goes without consent");
        assert!(profile.is_some());
        let outcome = SendOutcome::Sent {
            message_id: format!("<{}@x>", row.id),
            detail: "250 ok".into(),
        };
        worker::finish(&s, row, now, &outcome).await.unwrap();
    }
    let out = s.outbox().await.unwrap();
    assert!(
        out.iter()
            .all(|o| o.status == OutboxStatus::Sent && o.sent_at == Some(now))
    );
    let d = s.deliveries().await.unwrap();
    assert_eq!(d.len(), 2);
    assert!(
        d.iter()
            .all(|d| d.outcome == Outcome::Sent && d.detail == "250 ok")
    );
}

/// The delivery log, newest first, filtered and paged by its cursor.
async fn the_delivery_log_is_searched_and_paged<S: Store>(s: S) {
    let cat = catalog();
    let batch = [
        event("e1", "order.placed", "c1", "o1", T0, true),
        event("e2", "order.placed", "c2", "o2", T0, true),
        event("e3", "order.placed", "c3", "o3", T0, true),
    ];
    ingest_batch(&s, cat, &batch, "test", t(T0)).await.unwrap();
    let now = t(T0);
    let rows = s
        .claim_outbox(now, Duration::seconds(60), 10, &solo())
        .await
        .unwrap();
    assert_eq!(rows.len(), 3);
    for (i, row) in rows.iter().enumerate() {
        worker::plan(&s, cat, row, now, worker::SENDING_LEASE)
            .await
            .unwrap();
        let outcome = if row.customer_id == "c2" {
            SendOutcome::Failed {
                error: "550 5.7.1 relay refused".into(),
            }
        } else {
            SendOutcome::Sent {
                message_id: format!("<{}@x>", row.id),
                detail: "250 ok".into(),
            }
        };
        let at = now + Duration::seconds(i as i64);
        worker::finish(&s, row, at, &outcome).await.unwrap();
    }
    let all = |f: DeliveryFilter| {
        let s = s.clone();
        async move { s.delivery_log(&f).await.unwrap() }
    };
    let everything = all(DeliveryFilter {
        limit: 100,
        ..Default::default()
    })
    .await;
    assert_eq!(everything.len(), 3);
    assert!(
        everything.windows(2).all(|w| w[0].id > w[1].id),
        "newest first"
    );
    let c1 = everything.iter().find(|e| e.customer_id == "c1").unwrap();
    assert_eq!(c1.address, "c1@example.com");
    assert_eq!(c1.sequence, "fulfilment");
    assert_eq!(c1.template, "order-confirmation");
    assert_eq!(c1.outcome, Outcome::Sent);
    assert_eq!(c1.detail, "250 ok");
    assert!(c1.message_id.as_deref().unwrap().starts_with('<'));

    // By address, whatever its case; by outcome; by customer and template.
    let by_address = all(DeliveryFilter {
        address: Some("C2@Example.COM".into()),
        limit: 10,
        ..Default::default()
    })
    .await;
    assert_eq!(by_address.len(), 1);
    assert_eq!(by_address[0].outcome, Outcome::Failed);
    let failed = all(DeliveryFilter {
        outcome: Some(Outcome::Failed),
        limit: 10,
        ..Default::default()
    })
    .await;
    assert_eq!(failed, by_address);
    let none = all(DeliveryFilter {
        customer_id: Some("c1".into()),
        template: Some("order-shipped".into()),
        limit: 10,
        ..Default::default()
    })
    .await;
    assert!(none.is_empty());
    let late = all(DeliveryFilter {
        since: Some(now + Duration::seconds(1)),
        until: Some(now + Duration::seconds(2)),
        limit: 10,
        ..Default::default()
    })
    .await;
    assert_eq!(late.len(), 1);

    // Pages of two, then the rest: together the whole log, once.
    let first = all(DeliveryFilter {
        limit: 2,
        ..Default::default()
    })
    .await;
    assert_eq!(first.len(), 2);
    let rest = all(DeliveryFilter {
        limit: 2,
        before: Some(first[1].id),
        ..Default::default()
    })
    .await;
    assert_eq!(rest.len(), 1);
    let paged: Vec<i64> = first.iter().chain(&rest).map(|e| e.id).collect();
    let whole: Vec<i64> = everything.iter().map(|e| e.id).collect();
    assert_eq!(paged, whole);
}

/// What the admin API reads of a customer: the row, the emails by status,
/// the unsent ones; and a failed email put back by an operator, its
/// attempts and delivery log kept.
async fn a_failed_email_is_requeued_by_an_operator<S: Store>(s: S) {
    let cat = catalog();
    assert_eq!(s.customer("c1").await.unwrap(), None);
    let batch = [
        event("e1", "order.placed", "c1", "o1", T0, true),
        event("e2", "order.placed", "c2", "o2", T0, true),
    ];
    ingest_batch(&s, cat, &batch, "test", t(T0)).await.unwrap();
    let c = s.customer("c1").await.unwrap().unwrap();
    assert_eq!((c.id.as_str(), c.email.as_str()), ("c1", "c1@example.com"));
    assert_eq!(c.profile.unwrap().customer.id, "c1");
    assert_eq!(
        s.email_counts("c1").await.unwrap(),
        [(OutboxStatus::Pending, 1)]
    );
    let mut tx = s.begin().await.unwrap();
    let unsent = tx.unsent_emails("c1").await.unwrap();
    assert_eq!(who_what(&unsent), [("c1", "order-confirmation")]);
    drop(tx);

    // c1's email fails for good.
    let now = t(T0);
    let rows = s
        .claim_outbox(now, Duration::seconds(60), 10, &solo())
        .await
        .unwrap();
    let row = rows.iter().find(|r| r.customer_id == "c1").unwrap();
    worker::plan(&s, cat, row, now, worker::SENDING_LEASE)
        .await
        .unwrap();
    let failed = SendOutcome::Failed {
        error: "554 5.7.1 rejected".into(),
    };
    worker::finish(&s, row, now, &failed).await.unwrap();
    assert_eq!(
        s.email_counts("c1").await.unwrap(),
        [(OutboxStatus::Failed, 1)]
    );
    let mut tx = s.begin().await.unwrap();
    assert!(tx.unsent_emails("c1").await.unwrap().is_empty());
    drop(tx);

    // Put back, due at the retry: pending, its attempt counted, its
    // failure and the retry in the log.
    let later = now + Duration::days(3);
    let mut tx = s.begin().await.unwrap();
    assert!(
        tx.requeue_failed(row.id, "retried by an operator", later)
            .await
            .unwrap()
    );
    tx.commit().await.unwrap();
    let view = s
        .outbox()
        .await
        .unwrap()
        .into_iter()
        .find(|o| o.id == row.id)
        .unwrap();
    assert_eq!(view.status, OutboxStatus::Pending);
    assert_eq!(
        (view.attempts, view.not_before, view.due_at),
        (1, later, later)
    );
    let log: Vec<(Outcome, String)> = s
        .deliveries()
        .await
        .unwrap()
        .into_iter()
        .filter(|d| d.outbox_id == row.id)
        .map(|d| (d.outcome, d.detail))
        .collect();
    assert_eq!(
        log,
        [
            (Outcome::Failed, "554 5.7.1 rejected".to_string()),
            (Outcome::Retry, "retried by an operator".to_string())
        ]
    );
    // Pending now: not failed, so not put back again; nor a row that is not.
    let mut tx = s.begin().await.unwrap();
    assert!(!tx.requeue_failed(row.id, "again", later).await.unwrap());
    assert!(!tx.requeue_failed(9999, "none", later).await.unwrap());
    drop(tx);
    // It is claimed and sent like any due email, not skipped as stale.
    let rows = s
        .claim_outbox(later, Duration::seconds(60), 10, &solo())
        .await
        .unwrap();
    let again = rows.iter().find(|r| r.id == row.id).unwrap();
    send(&s, again, later).await;
    assert_eq!(
        s.email_counts("c1").await.unwrap(),
        [(OutboxStatus::Sent, 1)]
    );
}

/// Operators add to and remove from the suppression list, each change
/// logged with its reason; the list reads a page at a time by address.
async fn operators_change_the_suppression_list<S: Store>(s: S) {
    let at = t(T0);
    assert!(
        s.add_suppression("Anna@Example.com", "asked by phone", at)
            .await
            .unwrap()
    );
    assert!(
        !s.add_suppression("anna@example.com", "again", at)
            .await
            .unwrap(),
        "there already"
    );
    s.suppress_address("bob@example.com", "hard bounce (email.bounced b1)", at)
        .await
        .unwrap();
    s.add_suppression("carol@example.com", "legal hold", at)
        .await
        .unwrap();
    let all = s
        .suppressions(&SuppressionFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let listed: Vec<(&str, &str)> = all
        .iter()
        .map(|e| (e.email.as_str(), e.reason.as_str()))
        .collect();
    assert_eq!(
        listed,
        [
            ("anna@example.com", "asked by phone"),
            ("bob@example.com", "hard bounce (email.bounced b1)"),
            ("carol@example.com", "legal hold"),
        ]
    );
    assert_eq!(all[0].created_at, at);
    let page = |after: Option<&str>| SuppressionFilter {
        after: after.map(str::to_string),
        limit: 2,
        ..Default::default()
    };
    let first = s.suppressions(&page(None)).await.unwrap();
    let rest = s.suppressions(&page(Some(&first[1].email))).await.unwrap();
    assert_eq!((first.len(), rest.len()), (2, 1));
    assert_eq!(rest[0].email, "carol@example.com");
    let one = s
        .suppressions(&SuppressionFilter {
            email: Some("bob@example.com".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(one.len(), 1);

    let later = at + Duration::hours(1);
    let mut tx = s.begin().await.unwrap();
    assert_eq!(
        tx.remove_suppression("BOB@example.com", "the mailbox works again", later)
            .await
            .unwrap()
            .as_deref(),
        Some("hard bounce (email.bounced b1)")
    );
    assert_eq!(
        tx.remove_suppression("nobody@example.com", "x", later)
            .await
            .unwrap(),
        None
    );
    tx.commit().await.unwrap();
    let mut tx = s.begin().await.unwrap();
    assert!(!tx.is_suppressed("bob@example.com").await.unwrap());
    assert!(tx.is_suppressed("anna@example.com").await.unwrap());
    drop(tx);

    // Newest first; the service's own entries (bob's bounce) are not
    // operators' changes, their removal is.
    let log = s.suppression_log(None, 10).await.unwrap();
    let seen: Vec<(&str, SuppressionAction, &str, Option<&str>)> = log
        .iter()
        .map(|c| {
            (
                c.email.as_str(),
                c.action,
                c.reason.as_str(),
                c.previous_reason.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (
                "bob@example.com",
                SuppressionAction::Removed,
                "the mailbox works again",
                Some("hard bounce (email.bounced b1)")
            ),
            (
                "carol@example.com",
                SuppressionAction::Added,
                "legal hold",
                None
            ),
            (
                "anna@example.com",
                SuppressionAction::Added,
                "asked by phone",
                None
            ),
        ]
    );
    assert_eq!(log[0].at, later);
    assert!(log.windows(2).all(|w| w[0].id > w[1].id));
    let bobs = s
        .suppression_log(Some("bob@example.com"), 10)
        .await
        .unwrap();
    assert_eq!(bobs.len(), 1);
    assert_eq!(s.suppression_log(None, 1).await.unwrap().len(), 1);
}

/// A replayed dead letter leaves the list, or stays with its new reason
/// (counted into an identical letter when one is kept).
async fn replayed_dead_letters_are_revised<S: Store>(s: S) {
    let letter = |reason: &str, payload: &str| DeadLetter {
        source: "http".into(),
        reason: reason.into(),
        payload: payload.into(),
        origin: Some("http request r1 item 0".into()),
    };
    let a = letter("the store refused this event: poisoned", "{\"id\":\"a\"}");
    let b = letter("the store refused this event: poisoned", "{\"id\":\"b\"}");
    let c = letter("id: must not be empty", "{\"id\":\"c\"}");
    let c2 = letter("later: another reason", "{\"id\":\"c\"}");
    s.keep_dead_letters(
        &[a.clone(), b.clone(), b.clone(), c.clone(), c2.clone()],
        t(T0),
    )
    .await
    .unwrap();
    // a went through: gone.
    assert!(s.revise_dead_letter(&a, None).await.unwrap());
    assert!(
        !s.revise_dead_letter(&a, None).await.unwrap(),
        "not kept any more"
    );
    // b fails again for another reason: kept with it, counted as before.
    assert!(
        s.revise_dead_letter(&b, Some("order.total: must be a decimal string"))
            .await
            .unwrap()
    );
    // The same reason again changes nothing.
    assert!(s.revise_dead_letter(&c2, Some(&c2.reason)).await.unwrap());
    // c now fails as c2 did: one letter, counted together.
    assert!(s.revise_dead_letter(&c, Some(&c2.reason)).await.unwrap());
    let kept = s.dead_letters().await.unwrap();
    let seen: Vec<(&str, &str, i64)> = kept
        .iter()
        .map(|k| (k.letter.payload.as_str(), k.letter.reason.as_str(), k.count))
        .collect();
    assert_eq!(
        seen,
        [
            ("{\"id\":\"b\"}", "order.total: must be a decimal string", 2),
            ("{\"id\":\"c\"}", "later: another reason", 2),
        ]
    );
    assert_eq!(kept[0].first_seen_at, t(T0));
    // Found again by its new identity.
    let b2 = DeadLetter {
        reason: "order.total: must be a decimal string".into(),
        ..b.clone()
    };
    assert!(s.revise_dead_letter(&b2, None).await.unwrap());
    assert_eq!(s.dead_letters().await.unwrap().len(), 1);
}

/// A sequence's enrollments counted by step and status, and listed at a
/// step by key, a page at a time.
async fn a_sequences_enrollments_by_step<S: Store>(s: S) {
    let cat = catalog();
    let batch: Vec<_> = ["c1", "c2", "c3"]
        .iter()
        .enumerate()
        .map(|(i, c)| event(&format!("e{i}"), "order.placed", c, "o1", T0, true))
        .collect();
    ingest_batch(&s, cat, &batch, "test", t(T0)).await.unwrap();
    let counts = s.enrollment_counts("fulfilment").await.unwrap();
    assert_eq!(counts.len(), 1, "{counts:?}");
    assert_eq!(counts[0].step.as_deref(), Some("await-shipment"));
    assert_eq!((counts[0].status, counts[0].count), (Status::Active, 3));
    assert!(s.enrollment_counts("nothing").await.unwrap().is_empty());
    let first = s
        .enrollments_at("fulfilment", "await-shipment", None, 2)
        .await
        .unwrap();
    let keys: Vec<&str> = first.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["fulfilment/c1/o1", "fulfilment/c2/o1"]);
    let rest = s
        .enrollments_at("fulfilment", "await-shipment", Some(&first[1].key), 2)
        .await
        .unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].customer_id, "c3");
    assert!(
        s.enrollments_at("fulfilment", "order-confirmation", None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// The dashboard's reads: counts by bucket and outcome, bounces over time,
/// the outbox by status, each step's emails with their opens and clicks (a
/// person's only), the orders and touches attribution looks at, and the
/// customers who ordered.
async fn reports_count_in_the_database<S: Store>(s: S) {
    use aftercare::store::{Activity, ActivityKind, Bucket, PeriodCustomers, Span};
    let cat = catalog();
    let d0 = "2026-11-20T10:00:00Z";
    let d1 = "2026-11-21T10:30:00Z";
    let batch = [
        event("e1", "order.placed", "c1", "o1", d0, true),
        event("e2", "order.placed", "c2", "o2", d0, true),
        // c1 orders again the next day, and once more with the same order id
        // (a shop sending one order twice under two event ids).
        event("e3", "order.placed", "c1", "o3", d1, true),
        event("e4", "order.placed", "c1", "o3", d1, true),
        event("e5", "email.bounced", "c2", "o2", d1, true),
    ];
    ingest_batch(&s, cat, &batch[..2], "test", t(d0))
        .await
        .unwrap();
    let now = t(d0);
    let rows = s
        .claim_outbox(now, Duration::seconds(60), 10, &solo())
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    for row in &rows {
        worker::plan(&s, cat, row, now, worker::SENDING_LEASE)
            .await
            .unwrap();
        let outcome = if row.customer_id == "c2" {
            SendOutcome::Failed {
                error: "550 5.7.1 refused".into(),
            }
        } else {
            SendOutcome::Sent {
                message_id: format!("<{}@x>", row.id),
                detail: "250 ok".into(),
            }
        };
        worker::finish(&s, row, now + Duration::minutes(5), &outcome)
            .await
            .unwrap();
    }
    let key = |c: &str| format!("fulfilment/{c}/o{}#order-confirmation", &c[1..]);
    for (kind, machine, at) in [
        (ActivityKind::Open, true, "2026-11-20T10:05:01Z"),
        (ActivityKind::Open, false, "2026-11-20T12:00:00Z"),
        (ActivityKind::Click, false, "2026-11-20T12:01:00Z"),
    ] {
        s.record_activity(&Activity {
            idempotency_key: key("c1"),
            customer_id: "c1".into(),
            kind,
            url: None,
            at: t(at),
            machine,
        })
        .await
        .unwrap();
    }
    // c2's email only had a machine's open.
    s.record_activity(&Activity {
        idempotency_key: key("c2"),
        customer_id: "c2".into(),
        kind: ActivityKind::Open,
        url: None,
        at: t("2026-11-20T10:05:02Z"),
        machine: true,
    })
    .await
    .unwrap();
    ingest_batch(&s, cat, &batch[2..], "test", t(d1))
        .await
        .unwrap();

    let day = Span {
        since: t("2026-11-20T00:00:00Z"),
        until: t("2026-11-22T00:00:00Z"),
    };
    let series = s.delivery_series(day, Bucket::Hour).await.unwrap();
    let got: Vec<(String, &str, i64)> = series
        .iter()
        .map(|p| (p.at.to_rfc3339(), p.key.as_str(), p.count))
        .collect();
    assert_eq!(
        got,
        [
            ("2026-11-20T10:00:00+00:00".to_string(), "failed", 1),
            ("2026-11-20T10:00:00+00:00".to_string(), "sent", 1),
        ]
    );
    let by_day = s.delivery_series(day, Bucket::Day).await.unwrap();
    assert_eq!(by_day.len(), 2);
    assert_eq!(by_day[0].at, t("2026-11-20T00:00:00Z"));
    let later = Span {
        since: t("2026-11-20T11:00:00Z"),
        until: day.until,
    };
    assert!(
        s.delivery_series(later, Bucket::Hour)
            .await
            .unwrap()
            .is_empty()
    );
    let bounces = s
        .event_series("email.bounced", day, Bucket::Day)
        .await
        .unwrap();
    assert_eq!(bounces.len(), 1);
    assert_eq!(
        (bounces[0].at, bounces[0].count),
        (t("2026-11-21T00:00:00Z"), 1)
    );

    let mut depth: Vec<(String, i64)> = s
        .outbox_depth()
        .await
        .unwrap()
        .into_iter()
        .map(|(st, n)| (st.as_str().to_string(), n))
        .collect();
    depth.sort();
    // c1's second order: a confirmation still pending.
    assert_eq!(
        depth,
        [
            ("failed".to_string(), 1),
            ("pending".to_string(), 1),
            ("sent".to_string(), 1)
        ]
    );

    let mut steps = s.step_counts(day).await.unwrap();
    steps.sort_by(|a, b| (&a.sequence, &a.step).cmp(&(&b.sequence, &b.step)));
    assert_eq!(steps.len(), 1, "{steps:#?}");
    let c = &steps[0];
    assert_eq!(
        (c.sequence.as_str(), c.step.as_str(), c.template.as_str()),
        ("fulfilment", "order-confirmation", "order-confirmation")
    );
    // Three made (one still queued), one sent, opened and clicked by a person.
    assert_eq!((c.entered, c.emailed, c.opened, c.clicked), (3, 1, 1, 1));
    let first_day = Span {
        since: day.since,
        until: t("2026-11-21T00:00:00Z"),
    };
    let c = &s.step_counts(first_day).await.unwrap()[0];
    assert_eq!((c.entered, c.emailed), (2, 1));

    // Orders of the second day by customers with a touch since the first.
    let second = Span {
        since: t("2026-11-21T00:00:00Z"),
        until: day.until,
    };
    let orders = s.placed_orders(second, day.since).await.unwrap();
    // event, customer, order, total, currency, repeat
    let got: Vec<String> = orders
        .iter()
        .map(|o| {
            format!(
                "{} {} {} {} {} {}",
                o.event_id,
                o.customer_id,
                o.order_id,
                o.total.unwrap(),
                o.currency.as_deref().unwrap_or("-"),
                o.repeat
            )
        })
        .collect();
    assert_eq!(
        got,
        ["e3 c1 o3 129.90 EUR true", "e4 c1 o3 129.90 EUR true"]
    );
    assert_eq!(orders[0].at, t(d1));
    // Touched only after the span began: none.
    assert!(
        s.placed_orders(second, second.since)
            .await
            .unwrap()
            .is_empty()
    );
    let first = s.placed_orders(first_day, day.since).await.unwrap();
    assert_eq!(first.len(), 2, "c2's machine open makes it a candidate too");
    assert!(first.iter().all(|o| !o.repeat));

    let touches = s.touches(second, day.since).await.unwrap();
    let got: Vec<(&str, &str, bool, &str)> = touches
        .iter()
        .map(|t| {
            (
                t.customer_id.as_str(),
                t.kind.as_str(),
                t.machine,
                t.step.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("c1", "open", true, "order-confirmation"),
            ("c1", "open", false, "order-confirmation"),
            ("c1", "click", false, "order-confirmation"),
        ],
        "c2 placed no order on the second day"
    );
    assert_eq!(touches[2].at, t("2026-11-20T12:01:00Z"));

    assert_eq!(s.customers_ordering(day).await.unwrap(), 2);
    assert_eq!(s.customers_ordering(second).await.unwrap(), 1);
    assert_eq!(
        s.period_customers(day).await.unwrap(),
        PeriodCustomers {
            ordered: 2,
            new: 2,
            repeat: 1
        }
    );
    assert_eq!(
        s.period_customers(second).await.unwrap(),
        PeriodCustomers {
            ordered: 1,
            new: 0,
            repeat: 0
        },
        "o3 twice is one order"
    );
}

/// Enqueues one value email for `c` by walking fulfilment and education.
async fn value_email_for<S: Store>(s: &S, c: &str, consent: bool) -> DateTime<Utc> {
    let cat = catalog();
    let o = "o1";
    let evs = [
        event(&format!("{c}1"), "order.placed", c, o, T0, consent),
        event(&format!("{c}2"), "shipment.shipped", c, o, T0, consent),
        event(&format!("{c}3"), "shipment.delivered", c, o, T0, consent),
    ];
    ingest_batch(s, cat, &evs, "test", t(T0)).await.unwrap();
    // Send the three transactional emails, one claim each (in order).
    let now = t(T0);
    for _ in 0..3 {
        let rows = s
            .claim_outbox(now, Duration::seconds(60), 10, &solo())
            .await
            .unwrap();
        assert_eq!(rows.len(), 1, "a customer's emails one at a time");
        send(s, &rows[0], now).await;
    }
    // Education waits a day (to 11:00 Budapest on the 21st), then until the
    // next 10:00 in Budapest: 2026-11-22T09:00Z.
    assert_eq!(
        schedule::tick(s, cat, t("2026-11-22T08:59:59Z"))
            .await
            .unwrap()
            .ran,
        0
    );
    let wake = t("2026-11-22T09:00:00Z");
    assert_eq!(schedule::tick(s, cat, wake).await.unwrap().ran, 1);
    wake
}

/// Decides and records `row` as sent at `now`.
async fn send<S: Store>(s: &S, row: &Queued, now: DateTime<Utc>) {
    let (plan, _) = worker::plan(s, catalog(), row, now, worker::SENDING_LEASE)
        .await
        .unwrap();
    assert_eq!(plan, SendPlan::Send, "{}", row.idempotency_key);
    let sent = SendOutcome::Sent {
        message_id: format!("<{}@x>", row.id),
        detail: "ok".into(),
    };
    worker::finish(s, row, now, &sent).await.unwrap();
}

/// `(customer, step)` of each row.
fn who_what(rows: &[Queued]) -> Vec<(&str, &str)> {
    rows.iter()
        .map(|r| (r.customer_id.as_str(), r.step.as_str()))
        .collect()
}

/// Issue 8: one webhook call with `[order.placed, shipment.shipped,
/// shipment.delivered]` sent "delivered" before "shipped": the rows were
/// written in idempotency-key order, and a claim took all three at once. Now
/// the rows keep the engine's order, and a claim takes a customer's first
/// due email only (the next once it is done, or moved later); other
/// customers' go alongside, on any instance.
async fn a_customers_emails_are_claimed_one_at_a_time_in_order<S: Store>(s: S) {
    let cat = catalog();
    let now = t(T0);
    let kinds = ["order.placed", "shipment.shipped", "shipment.delivered"];
    let mut batch = Vec::new();
    for (i, kind) in kinds.iter().enumerate() {
        for c in ["c1", "c2"] {
            batch.push(event(&format!("{c}-{i}"), kind, c, "o1", T0, true));
        }
    }
    ingest_batch(&s, cat, &batch, "test", now).await.unwrap();
    let out = s.outbox().await.unwrap();
    for c in ["c1", "c2"] {
        let steps: Vec<&str> = out
            .iter()
            .filter(|o| o.customer_id == c)
            .map(|o| o.step.as_str())
            .collect();
        assert_eq!(
            steps,
            ["order-confirmation", "order-shipped", "order-delivered"],
            "rows (by id) in the order the engine emitted them"
        );
    }
    let timeout = Duration::seconds(5);
    let (a, b) = (Instance::new(now, timeout), Instance::new(now, timeout));
    a.beat(&s, now).await.unwrap();
    b.beat(&s, now).await.unwrap();
    let claim = |by: &Instance, at: DateTime<Utc>| {
        let (s, by) = (s.clone(), by.claimer.clone());
        async move { s.claim_outbox(at, worker::LEASE, 10, &by).await.unwrap() }
    };
    let first = claim(&a, now).await;
    assert_eq!(
        who_what(&first),
        [("c1", "order-confirmation"), ("c2", "order-confirmation")]
    );
    assert!(
        claim(&b, now).await.is_empty(),
        "the next emails wait while the first are claimed"
    );
    // c1's confirmation is sent: its shipped email is next, and only it.
    send(&s, &first[0], now).await;
    let shipped = claim(&b, now).await;
    assert_eq!(who_what(&shipped), [("c1", "order-shipped")]);
    // c2's confirmation is being sent: c2's next email waits for it.
    let (plan, _) = worker::plan(&s, cat, &first[1], now, worker::SENDING_LEASE)
        .await
        .unwrap();
    assert_eq!(plan, SendPlan::Send);
    assert!(claim(&b, now).await.is_empty());
    // `a` dies while sending. Once its heartbeat is stale `b` takes the
    // confirmation over, and still not the email after it.
    let gone = now + timeout + Duration::seconds(1);
    b.beat(&s, gone).await.unwrap();
    let taken = claim(&b, gone).await;
    assert_eq!(who_what(&taken), [("c2", "order-confirmation")]);
    assert_eq!(taken[0].status, OutboxStatus::Sending);
    send(&s, &taken[0], gone).await;
    // c1's shipped email is moved an hour later (as the send policy defers a
    // marketing email, or a transient failure retries): c1's delivered email,
    // due before that, goes first. c2 goes on in order.
    let later = now + Duration::hours(1);
    let mut tx = s.begin().await.unwrap();
    let moved = Transition::Defer { until: later };
    assert!(tx.transition(&shipped[0], &moved, gone).await.unwrap());
    tx.commit().await.unwrap();
    let next = claim(&b, gone).await;
    assert_eq!(
        who_what(&next),
        [("c2", "order-shipped"), ("c1", "order-delivered")]
    );
    for row in &next {
        send(&s, row, gone).await;
    }
    let last = claim(&b, gone).await;
    assert_eq!(who_what(&last), [("c2", "order-delivered")]);
    send(&s, &last[0], gone).await;
    b.beat(&s, later).await.unwrap();
    assert_eq!(who_what(&claim(&b, later).await), [("c1", "order-shipped")]);
}

/// Issue 8: the service (or its scheduler) was down for a week. An email
/// that becomes sendable more than its category's `stale_after` (3d for
/// transactional) after it was due is skipped as stale; one due an hour ago
/// goes. A wait that ended during the outage counts from its end, not from
/// when the scheduler got to it.
async fn emails_long_past_due_are_skipped_as_stale<S: Store>(s: S) {
    use aftercare::clock::ManualClock;
    use aftercare::send::transport::{EmlDir, Recorder};
    use aftercare::send::worker::{Compose, Done, Worker};
    use std::sync::Arc;

    let cat = catalog();
    let now = t(T0);
    let ten_days_ago = now - Duration::days(10);
    let hour_ago = now - Duration::hours(1);
    let placed = |c: &str, at: DateTime<Utc>| {
        let e = event(
            &format!("{c}-placed"),
            "order.placed",
            c,
            "o1",
            &at.to_rfc3339(),
            true,
        );
        (e, at)
    };
    for (e, at) in [placed("old", ten_days_ago), placed("new", hour_ago)] {
        ingest_batch(&s, cat, &[e], "test", at).await.unwrap();
    }
    // The scheduler comes back too: `old`'s wait for the shipment ended
    // seven days ago; its delay notice was due then.
    assert_eq!(schedule::tick(&s, cat, now).await.unwrap().ran, 1);
    let delayed = s
        .outbox()
        .await
        .unwrap()
        .into_iter()
        .find(|o| o.template == "shipping-delayed")
        .unwrap();
    assert_eq!(delayed.due_at, ten_days_ago + Duration::days(3));
    let recorder = Recorder::<EmlDir>::new(None);
    let templates = aftercare::template::Templates::load(std::path::Path::new("templates"), "en").0;
    let worker = Worker {
        store: s.clone(),
        catalog: Arc::new(cat.clone()),
        templates: Arc::new(templates),
        transport: recorder.clone(),
        clock: Arc::new(ManualClock::new(now)),
        retry: worker::DEFAULT_RETRY.to_vec(),
        compose: Compose::Check,
        instance: Instance::solo(),
        max_email_bytes: worker::DEFAULT_MAX_EMAIL_BYTES,
        concurrency: 1,
        bounces: None,
        paused: Default::default(),
        dkim: None,
        links: std::sync::Arc::new(
            aftercare::send::links::Links::ephemeral("http://127.0.0.1:8080").unwrap(),
        ),
    };
    let mut handled = Vec::new();
    loop {
        let round = worker.tick().await.unwrap();
        if round.is_empty() {
            break;
        }
        handled.extend(round);
    }
    let done: Vec<(&str, &str, &Done)> = handled
        .iter()
        .map(|h| (h.row.customer_id.as_str(), h.row.template.as_str(), &h.done))
        .collect();
    let stale = |late: &str, due: DateTime<Utc>| {
        Done::Planned(SendPlan::Skip {
            reason: format!(
                "stale: {late} after it was due at {}, more than stale_after.transactional (3d)",
                due.to_rfc3339()
            ),
        })
    };
    assert_eq!(
        done,
        [
            ("old", "order-confirmation", &stale("1w3d", ten_days_ago)),
            ("new", "order-confirmation", &Done::Sent),
            ("old", "shipping-delayed", &stale("1w", delayed.due_at)),
        ]
    );
    let sent: Vec<String> = recorder.take().into_iter().map(|a| a.customer_id).collect();
    assert_eq!(sent, ["new"]);
    // The delivery log says why, and the rows are final.
    let skipped: Vec<String> = s
        .deliveries()
        .await
        .unwrap()
        .into_iter()
        .filter(|d| d.outcome == Outcome::Skipped)
        .map(|d| d.detail)
        .collect();
    assert_eq!(skipped.len(), 2);
    assert!(
        skipped.iter().all(|why| why.starts_with("stale: ")),
        "{skipped:?}"
    );
    let statuses: Vec<OutboxStatus> = s.outbox().await.unwrap().iter().map(|o| o.status).collect();
    assert_eq!(
        statuses,
        [
            OutboxStatus::Skipped,
            OutboxStatus::Sent,
            OutboxStatus::Skipped
        ]
    );
}

async fn marketing_is_deferred_or_skipped_with_a_reason<S: Store>(s: S) {
    let cat = catalog();
    let wake = value_email_for(&s, "ca", true).await;
    value_email_for(&s, "cb", false).await;
    let rows = s
        .claim_outbox(wake, Duration::seconds(60), 10, &solo())
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    for row in &rows {
        let (plan, _) = worker::plan(&s, cat, row, wake, worker::SENDING_LEASE)
            .await
            .unwrap();
        match row.customer_id.as_str() {
            // Three transactional emails do not count toward the cap: it goes.
            "ca" => assert_eq!(plan, SendPlan::Send),
            _ => assert_eq!(
                plan,
                SendPlan::Skip {
                    reason: "no marketing consent".into()
                }
            ),
        }
    }
    let out = s.outbox().await.unwrap();
    let cb = out
        .iter()
        .find(|o| o.customer_id == "cb" && o.category == Category::Value)
        .unwrap();
    assert_eq!(cb.status, OutboxStatus::Skipped);
    let d = s.deliveries().await.unwrap();
    assert!(
        d.iter()
            .any(|d| d.outcome == Outcome::Skipped && d.detail == "no marketing consent")
    );

    // A value email at 22:00 Budapest is deferred to 08:00 local.
    let s2 = s.clone();
    let night = t("2026-11-22T21:00:00Z");
    let ca = rows.iter().find(|r| r.customer_id == "ca").unwrap();
    worker::finish(
        &s2,
        ca,
        wake,
        &SendOutcome::Retry {
            at: night,
            error: "421 try later".into(),
        },
    )
    .await
    .unwrap();
    let again = s2
        .claim_outbox(night, Duration::seconds(60), 10, &solo())
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    match worker::plan(&s2, cat, &again[0], night, worker::SENDING_LEASE)
        .await
        .unwrap()
        .0
    {
        SendPlan::Defer { until, reason } => {
            assert_eq!(until, t("2026-11-23T07:00:00Z"));
            assert!(reason.starts_with("quiet hours"), "{reason}");
        }
        other => panic!("expected a deferral, got {other:?}"),
    }
    assert_eq!(
        s2.next_outbox().await.unwrap(),
        Some(t("2026-11-23T07:00:00Z"))
    );
}

async fn a_crashed_instance_is_taken_over_in_seconds<S: Store>(s: S) {
    let cat = catalog();
    let batch = [
        event("e1", "order.placed", "c1", "o1", T0, true),
        event("e2", "order.placed", "c2", "o2", T0, true),
    ];
    ingest_batch(&s, cat, &batch, "test", t(T0)).await.unwrap();
    let now = t(T0);
    let timeout = Duration::seconds(5);
    let (a, b) = (Instance::new(now, timeout), Instance::new(now, timeout));
    assert_ne!(a.id(), b.id());
    a.beat(&s, now).await.unwrap();
    b.beat(&s, now).await.unwrap();
    // `a` claims both and begins sending the first.
    let rows = s
        .claim_outbox(now, worker::LEASE, 10, &a.claimer)
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    let (plan, _) = worker::plan(&s, cat, &rows[0], now, worker::SENDING_LEASE)
        .await
        .unwrap();
    assert_eq!(plan, SendPlan::Send);
    // While `a` beats, its rows are its own, however long its send takes.
    let alive = now + Duration::seconds(4);
    a.beat(&s, alive).await.unwrap();
    b.beat(&s, alive).await.unwrap();
    assert!(
        s.claim_outbox(alive, worker::LEASE, 10, &b.claimer)
            .await
            .unwrap()
            .is_empty()
    );
    // `a` is killed: its last heartbeat stays at `alive`. Once it is older
    // than the timeout, `b` takes both rows, long before their leases end.
    let gone = alive + timeout + Duration::seconds(1);
    b.beat(&s, gone).await.unwrap();
    let taken = s
        .claim_outbox(gone, worker::LEASE, 10, &b.claimer)
        .await
        .unwrap();
    assert_eq!(taken.len(), 2);
    assert_eq!(taken[0].status, OutboxStatus::Sending, "was being sent");
    assert_eq!(taken[1].status, OutboxStatus::Pending);
    // Were `a` only paused, its late decision is refused (fenced by claim
    // count), and its own check keeps it from handing mail to the transport.
    assert_eq!(
        worker::plan(&s, cat, &rows[1], gone, worker::SENDING_LEASE)
            .await
            .unwrap()
            .0,
        SendPlan::Stale
    );
    assert!(!a.may_send(gone));
    assert!(b.may_send(gone + Duration::seconds(1)));
    // An instance that stops cleanly frees what it claimed but never began.
    let c = Instance::new(gone, timeout);
    c.beat(&s, gone).await.unwrap();
    ingest_batch(
        &s,
        cat,
        &[event("e3", "order.placed", "c3", "o3", T0, true)],
        "test",
        gone,
    )
    .await
    .unwrap();
    let held = s
        .claim_outbox(gone, worker::LEASE, 10, &c.claimer)
        .await
        .unwrap();
    assert_eq!(held.len(), 1);
    s.retire(c.id()).await.unwrap();
    let freed = s
        .claim_outbox(gone, worker::LEASE, 10, &b.claimer)
        .await
        .unwrap();
    assert_eq!(freed.len(), 1);
    assert_eq!(freed[0].idempotency_key, held[0].idempotency_key);
}

async fn a_stale_worker_cannot_overwrite_a_newer_claim<S: Store>(s: S) {
    let cat = catalog();
    ingest_batch(
        &s,
        cat,
        &[event("e1", "order.placed", "c1", "o1", T0, true)],
        "test",
        t(T0),
    )
    .await
    .unwrap();
    let now = t(T0);
    // A slow worker whose claim ran out before it decided gets `Stale`, writes
    // nothing, and so cannot send the row that another worker now owns.
    let slow = s
        .claim_outbox(now, Duration::seconds(60), 10, &solo())
        .await
        .unwrap()
        .remove(0);
    let now = now + Duration::seconds(61);
    let first = s
        .claim_outbox(now, Duration::seconds(60), 10, &solo())
        .await
        .unwrap()
        .remove(0);
    assert_eq!(
        worker::plan(&s, cat, &slow, now, worker::SENDING_LEASE)
            .await
            .unwrap()
            .0,
        SendPlan::Stale
    );
    assert!(
        s.deliveries().await.unwrap().is_empty(),
        "a stale worker logs nothing"
    );
    assert_eq!(
        worker::plan(&s, cat, &first, now, worker::SENDING_LEASE)
            .await
            .unwrap()
            .0,
        SendPlan::Send
    );
    // While it is being sent, nobody else may take it.
    let soon = now + Duration::seconds(120);
    assert!(
        s.claim_outbox(soon, Duration::seconds(60), 10, &solo())
            .await
            .unwrap()
            .is_empty()
    );
    // The worker dies while sending; after the sending lease another one claims
    // the row, and as the row was already `sending`, sends without deciding again.
    let later = now + Duration::minutes(5) + Duration::seconds(1);
    let second = s
        .claim_outbox(later, Duration::seconds(60), 10, &solo())
        .await
        .unwrap()
        .remove(0);
    assert_eq!(second.attempts, first.attempts + 1);
    assert_eq!(second.status, OutboxStatus::Sending);
    assert_eq!(
        worker::plan(&s, cat, &second, later, worker::SENDING_LEASE)
            .await
            .unwrap()
            .0,
        SendPlan::Send
    );
    let sent = SendOutcome::Sent {
        message_id: "<m@x>".into(),
        detail: "ok".into(),
    };
    // The first worker's late result is fenced off.
    assert!(worker::finish(&s, &first, later, &sent).await.is_err());
    worker::finish(&s, &second, later, &sent).await.unwrap();
    let row = &s.outbox().await.unwrap()[0];
    assert_eq!((row.status, row.attempts), (OutboxStatus::Sent, 3));
    // And a stale claim that tries to plan is told so.
    assert_eq!(
        worker::plan(&s, cat, &first, later, worker::SENDING_LEASE)
            .await
            .unwrap()
            .0,
        SendPlan::Stale
    );
}

async fn dead_letters_and_settings<S: Store>(s: S) {
    let l = DeadLetter {
        source: "kafka".into(),
        reason: "order.total: money must be a decimal string".into(),
        payload: "{\"bad\": 1}".into(),
        origin: Some("shop-events/0/42".into()),
    };
    s.keep_dead_letters(std::slice::from_ref(&l), t(T0))
        .await
        .unwrap();
    let kept = s.dead_letters().await.unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].letter, l);
    assert_eq!(
        (kept[0].count, kept[0].first_seen_at, kept[0].last_seen_at),
        (1, t(T0), t(T0))
    );
    // The same letter again, from elsewhere: counted, with its new origin.
    let again = DeadLetter {
        origin: Some("shop-events/1/7".into()),
        ..l.clone()
    };
    let later = t(T0) + chrono::Duration::hours(1);
    s.keep_dead_letters(std::slice::from_ref(&again), later)
        .await
        .unwrap();
    // Another reason or another payload is another letter.
    let other_reason = DeadLetter {
        reason: "id: must not be empty".into(),
        ..l.clone()
    };
    let other_payload = DeadLetter {
        payload: "{\"bad\": 2}".into(),
        ..l.clone()
    };
    // Several at once, identical ones among them: counted before they are
    // written, and with those already kept.
    let batch = [
        other_reason.clone(),
        again.clone(),
        other_payload.clone(),
        again.clone(),
    ];
    s.keep_dead_letters(&batch, later).await.unwrap();
    s.keep_dead_letters(&[], later).await.unwrap();
    let kept = s.dead_letters().await.unwrap();
    assert_eq!(kept.len(), 3, "{kept:?}");
    assert_eq!(kept[0].letter, again);
    assert_eq!(
        (kept[0].count, kept[0].first_seen_at, kept[0].last_seen_at),
        (4, t(T0), later)
    );
    assert_eq!((&kept[1].letter, kept[1].count), (&other_reason, 1));
    assert_eq!((&kept[2].letter, kept[2].count), (&other_payload, 1));
    assert_eq!(s.setting("secret").await.unwrap(), None);
    assert_eq!(s.init_setting("secret", "one").await.unwrap(), "one");
    assert_eq!(
        s.init_setting("secret", "two").await.unwrap(),
        "one",
        "first value stays"
    );
}

async fn unsubscribe_and_bounce_are_remembered<S: Store>(s: S) {
    let cat = catalog();
    let evs = [
        event("e1", "order.placed", "c1", "o1", T0, true),
        event("e2", "email.bounced", "c1", "o1", T0, true),
    ];
    ingest_batch(&s, cat, &evs, "test", t(T0)).await.unwrap();
    let now = t(T0);
    let row = s
        .claim_outbox(now, Duration::seconds(60), 10, &solo())
        .await
        .unwrap()
        .remove(0);
    let (plan, _) = worker::plan(&s, cat, &row, now, worker::SENDING_LEASE)
        .await
        .unwrap();
    assert!(
        matches!(plan, SendPlan::Skip { ref reason } if reason.contains("suppressed")),
        "{plan:?}"
    );
}

/// Customers are found by their current address without regard to ASCII
/// case, and so are suppression list entries; the list keeps the first
/// reason an address got, and a
/// listed address no customer has is skipped all the same.
async fn bounces_find_customers_and_list_addresses<S: Store>(s: S) {
    let cat = catalog();
    let evs = [
        event("e1", "customer.updated", "c1", "o1", T0, true),
        event("e2", "customer.updated", "c2", "o1", T0, true),
    ];
    ingest_batch(&s, cat, &evs, "test", t(T0)).await.unwrap();
    assert_eq!(
        s.customers_with_address("C1@Example.COM").await.unwrap(),
        [("c1".to_string(), "c1@example.com".to_string())]
    );
    assert!(
        s.customers_with_address("c3@example.com")
            .await
            .unwrap()
            .is_empty()
    );
    // A relay spells the address its own way: one entry all the same.
    s.suppress_address("C3@Example.com", "hard bounce (dsn report x)", t(T0))
        .await
        .unwrap();
    s.suppress_address("c3@example.com", "complaint (later)", t(T0))
        .await
        .unwrap();
    let mut tx = s.begin().await.unwrap();
    assert_eq!(
        tx.suppression("c3@example.com").await.unwrap().as_deref(),
        Some("hard bounce (dsn report x)")
    );
    assert_eq!(
        tx.suppression("c3@EXAMPLE.com").await.unwrap().as_deref(),
        Some("hard bounce (dsn report x)")
    );
    assert_eq!(tx.suppression("c1@example.com").await.unwrap(), None);
    assert!(!tx.is_suppressed("c1@example.com").await.unwrap());
    tx.commit().await.unwrap();
    // c3 arrives: the list already holds the address.
    let evs = [event("e3", "order.placed", "c3", "o3", T0, true)];
    ingest_batch(&s, cat, &evs, "test", t(T0)).await.unwrap();
    let row = s
        .claim_outbox(t(T0), Duration::seconds(60), 10, &solo())
        .await
        .unwrap()
        .remove(0);
    let (plan, _) = worker::plan(&s, cat, &row, t(T0), worker::SENDING_LEASE)
        .await
        .unwrap();
    assert_eq!(
        plan,
        SendPlan::Skip {
            reason: "address suppressed: hard bounce (dsn report x)".into()
        }
    );
}

async fn two_schedulers_wake_each_enrollment_once<S: Store>(s: S) {
    let cat = catalog();
    let batch: Vec<_> = (0..120)
        .map(|i| {
            event(
                &format!("e{i}"),
                "order.placed",
                &format!("c{i}"),
                "o1",
                T0,
                true,
            )
        })
        .collect();
    ingest_batch(&s, cat, &batch, "test", t(T0)).await.unwrap();
    let due = t(T0) + Duration::days(3);
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut ran = 0;
            loop {
                let n = schedule::tick(&s, catalog(), due).await.unwrap().ran;
                let next = s.next_wake().await.unwrap();
                if n == 0 && next.is_none_or(|w| w > due) {
                    break ran;
                }
                ran += n;
            }
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap();
    }
    assert_eq!(total, 120, "each due enrollment woken exactly once");
    let delayed = s
        .outbox()
        .await
        .unwrap()
        .into_iter()
        .filter(|o| o.template == "shipping-delayed")
        .count();
    assert_eq!(delayed, 120);
}

/// A history import, then a live event of the same customer: the history's
/// emails are recorded as skipped and never stand in the way of the live
/// email, which is claimed (issue 8; the memory store once kept a skipped
/// row in the customer's queue).
async fn a_history_import_then_live_mail_is_claimed<S: Store>(s: S) {
    let cat = catalog();
    let now = t(T0);
    let mut placed = event(
        "h1",
        "order.placed",
        "c1",
        "o1",
        "2026-11-10T10:00:00Z",
        true,
    );
    placed.history = true;
    ingest_batch(&s, cat, &[placed], "test", now).await.unwrap();
    let shipped = event("l1", "shipment.shipped", "c1", "o1", T0, true);
    ingest_batch(&s, cat, &[shipped], "test", now)
        .await
        .unwrap();
    let rows = s
        .claim_outbox(now, worker::LEASE, 10, &solo())
        .await
        .unwrap();
    let steps: Vec<&str> = rows.iter().map(|r| r.step.as_str()).collect();
    assert_eq!(steps, ["order-shipped"]);
}

#[tokio::test]
async fn a_history_import_then_live_mail_is_claimed_in_a_lean_memory_store() {
    a_history_import_then_live_mail_is_claimed(aftercare::store::MemStore::lean()).await;
}

/// An erasure reaches what the journal and the admin API keep: the
/// engine's journal about the customer is deleted, and the operators' log
/// of the suppression list keeps only the address's hash.
async fn erasure_reaches_the_journal_and_the_suppression_log<S: Store>(s: S) {
    let cat = catalog();
    let evs = [event("e1", "order.placed", "c1", "o1", T0, true)];
    ingest_batch(&s, cat, &evs, "test", t(T0)).await.unwrap();
    s.add_suppression("C1@Example.com", "asked by phone: c1@example.com", t(T0))
        .await
        .unwrap();
    // A letter that names the customer in a spelling the payload search
    // would miss (a space before the colon) and no address.
    let letter = DeadLetter {
        source: "http".into(),
        reason: "occurred_at: not RFC 3339".into(),
        payload: r#"{"customer": {"id" : "c1"}, "occurred_at": "yesterday"}"#.into(),
        origin: None,
    };
    s.keep_dead_letters(&[letter], t(T0)).await.unwrap();
    let before = s.export_customer("c1").await.unwrap();
    assert!(!before.journal.is_empty(), "{before:?}");
    let erase = [erased_event("x1", "c1", "2026-11-20T11:00:00Z")];
    ingest_batch(&s, cat, &erase, "test", t(T0) + Duration::hours(1))
        .await
        .unwrap();
    assert!(s.journey("c1").await.unwrap().journal.is_empty());
    assert!(
        s.dead_letters().await.unwrap().is_empty(),
        "the letter named c1"
    );
    let after = s.export_customer("c1").await.unwrap();
    assert!(after.journal.is_empty());
    assert!(after.erasures[0].summary.journal > 0, "{after:?}");
    let log = s.suppression_log(None, 100).await.unwrap();
    assert_eq!(log.len(), 1);
    assert!(log[0].email.starts_with("sha256:"), "{log:?}");
    assert!(!log[0].reason.contains("c1@example.com"), "{log:?}");
    assert!(
        s.suppression_log(Some("c1@example.com"), 100)
            .await
            .unwrap()
            .is_empty()
    );
}

fn erased_event(id: &str, c: &str, at: &str) -> aftercare::event::Event {
    aftercare::event::Event::parse(&format!(
        r#"{{"id":"{id}","type":"customer.erased","occurred_at":"{at}","customer":{{"id":"{c}","email":"{c}@example.com"}}}}"#
    ))
    .unwrap()
}

/// A `customer.erased` event through the ingest path: nothing about the
/// customer is left to export but the erasure itself, their pending mail is
/// skipped as `erased`, an old event id is still a duplicate, the bounced
/// address stays suppressed (as its hash), and the customer who comes back
/// with a new order starts fresh.
async fn an_erased_customer_leaves_only_a_hash<S: Store>(s: S) {
    let cat = catalog();
    let at = |h: i64| (t(T0) + Duration::hours(h)).to_rfc3339();
    let evs = [
        event("e1", "order.placed", "c1", "o1", &at(0), true),
        event("e2", "email.bounced", "c1", "o1", &at(1), true),
        event("f1", "order.placed", "c2", "o9", &at(0), true),
    ];
    ingest_batch(&s, cat, &evs, "test", t(T0)).await.unwrap();
    s.keep_dead_letters(
        &[DeadLetter {
            source: "http".into(),
            reason: "order.total: not money".into(),
            payload: r#"{"customer":{"id":"c1","email":"C1@Example.com"}}"#.into(),
            origin: None,
        }],
        t(T0),
    )
    .await
    .unwrap();
    let before = s.export_customer("c1").await.unwrap();
    assert!(before.profile.is_some());
    assert_eq!(before.events.len(), 2);
    assert!(!before.enrollments.is_empty() && !before.outbox.is_empty());
    assert_eq!(before.suppressions.len(), 1, "{before:#?}");
    assert_eq!(before.dead_letters.len(), 1);

    let erase = [erased_event("x1", "c1", &at(2))];
    let r = ingest_batch(&s, cat, &erase, "http", t(T0) + Duration::hours(2))
        .await
        .unwrap();
    assert_eq!(r.applied, 1);
    let after = s.export_customer("c1").await.unwrap();
    assert!(
        after.profile.is_none() && after.events.is_empty(),
        "{after:?}"
    );
    assert!(after.enrollments.is_empty() && after.outbox.is_empty());
    assert!(after.deliveries.is_empty() && after.activity.is_empty());
    assert!(after.dead_letters.is_empty());
    // Nothing links the customer to the address any more: the entry is
    // found by the address alone.
    assert!(after.suppressions.is_empty());
    assert_eq!(after.erasures.len(), 1);
    let log = &after.erasures[0];
    assert_eq!(
        (log.source.as_str(), log.event_id.as_deref()),
        ("http", Some("x1"))
    );
    assert!(log.summary.profile && log.summary.events == 3 && log.summary.stopped >= 1);
    assert_eq!((log.summary.dead_letters, log.summary.suppressions), (1, 1));
    // Nobody's rows: the other customer's are untouched.
    assert!(s.export_customer("c2").await.unwrap().profile.is_some());
    for row in s.outbox().await.unwrap() {
        assert!(!row.idempotency_key.contains("/c1/"), "{row:?}");
        if row.customer_id != "c2" {
            assert_eq!(row.status, OutboxStatus::Skipped);
            assert_eq!(row.last_error.as_deref(), Some("erased"));
        }
    }
    assert!(s.enrollments_of("c1").await.unwrap().is_empty());
    let mut tx = s.begin().await.unwrap();
    assert!(
        tx.suppression("C1@example.com")
            .await
            .unwrap()
            .is_some_and(|why| why.contains("hard bounce"))
    );
    drop(tx);

    // A late duplicate is still one; the erasure again too.
    let again = ingest_batch(&s, cat, &[evs[0].clone(), erase[0].clone()], "test", t(T0))
        .await
        .unwrap();
    assert_eq!((again.applied, again.duplicates), (0, 2));
    assert!(s.export_customer("c1").await.unwrap().events.is_empty());

    // Back with a new order: a fresh start, the address still suppressed.
    let back = [event("e3", "order.placed", "c1", "o2", &at(3), true)];
    let r = ingest_batch(&s, cat, &back, "test", t(T0) + Duration::hours(3))
        .await
        .unwrap();
    assert_eq!((r.applied, r.emails), (1, 1));
    let fresh = s.export_customer("c1").await.unwrap();
    assert_eq!(fresh.events.len(), 1);
    assert_eq!(fresh.enrollments.len(), 1, "{:?}", fresh.enrollments);
    let rows = s
        .claim_outbox(
            t(T0) + Duration::hours(3),
            Duration::seconds(60),
            10,
            &solo(),
        )
        .await
        .unwrap();
    let row = rows.iter().find(|r| r.customer_id == "c1").unwrap();
    let (plan, _) = worker::plan(
        &s,
        cat,
        row,
        t(T0) + Duration::hours(3),
        worker::SENDING_LEASE,
    )
    .await
    .unwrap();
    assert!(
        matches!(plan, SendPlan::Skip { ref reason } if reason.contains("suppressed")),
        "{plan:?}"
    );
}

/// Within one batch, an erasure takes the customer's events before it and
/// leaves those after it: the customer comes back in the same batch.
async fn an_erasure_within_a_batch_keeps_what_follows<S: Store>(s: S) {
    let cat = catalog();
    let at = |h: i64| (t(T0) + Duration::hours(h)).to_rfc3339();
    let batch = [
        event("e1", "order.placed", "c1", "o1", &at(0), true),
        erased_event("x1", "c1", &at(1)),
        event("e2", "order.placed", "c1", "o2", &at(2), true),
    ];
    let r = ingest_batch(&s, cat, &batch, "test", t(T0) + Duration::hours(2))
        .await
        .unwrap();
    assert_eq!(r.applied, 3);
    let x = s.export_customer("c1").await.unwrap();
    let ids: Vec<&str> = x.events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["e2"]);
    assert!(x.outbox.iter().all(|o| o.idempotency_key.contains("/o2")));
    assert_eq!(x.erasures.len(), 1);
}

/// `DELETE`'s path: an erasure asked for by id; nothing stored, nothing done.
async fn erasing_by_id_logs_who_asked<S: Store>(s: S) {
    let cat = catalog();
    let evs = [event("e1", "order.placed", "c1", "o1", T0, true)];
    ingest_batch(&s, cat, &evs, "test", t(T0)).await.unwrap();
    let a = aftercare::rights::erase(&s, "c1", "admin", t(T0))
        .await
        .unwrap();
    let erased = a.erased.unwrap();
    assert!(erased.profile && erased.events == 1 && erased.emails == 1);
    assert_eq!(a.erasures.len(), 1);
    assert_eq!(a.erasures[0].source, "admin");
    let none = aftercare::rights::erase(&s, "nobody", "admin", t(T0))
        .await
        .unwrap();
    assert!(none.erased.is_none() && none.erasures.is_empty());
    assert!(s.export_customer("nobody").await.unwrap().is_empty());
}

/// Retention on a virtual clock: old events, deliveries, opens and dead
/// letters go in batches; events within the window still de-duplicate;
/// finished enrollments keep their key (no second `once_per_order` entry)
/// but lose their state; a person's old open still counts for sunset.
async fn retention_purges_in_batches<S: Store>(s: S) {
    use aftercare::store::{Activity, ActivityKind, After, Purge};
    let cat = catalog();
    let old = t(T0);
    let now = old + Duration::days(500);
    let keep = Duration::days(400);
    // Five old orders, each a finished-soon enrollment, and one recent.
    let olds: Vec<_> = (0..5)
        .map(|i| {
            event(
                &format!("o{i}"),
                "order.placed",
                &format!("c{i}"),
                "o1",
                T0,
                true,
            )
        })
        .collect();
    ingest_batch(&s, cat, &olds, "test", old).await.unwrap();
    let cancels: Vec<_> = (0..5)
        .map(|i| {
            event(
                &format!("x{i}"),
                "order.cancelled",
                &format!("c{i}"),
                "o1",
                T0,
                true,
            )
        })
        .collect();
    ingest_batch(&s, cat, &cancels, "test", old).await.unwrap();
    let recent_at = (now - Duration::days(1)).to_rfc3339();
    let recent = [event("n1", "order.placed", "c9", "o1", &recent_at, true)];
    ingest_batch(&s, cat, &recent, "test", now - Duration::days(1))
        .await
        .unwrap();
    // Mail of the old orders, sent then, and a person's open of one.
    let rows = s
        .claim_outbox(old, Duration::seconds(60), 100, &solo())
        .await
        .unwrap();
    assert!(!rows.is_empty());
    for row in &rows {
        let (plan, _) = worker::plan(&s, cat, row, old, worker::SENDING_LEASE)
            .await
            .unwrap();
        if plan == SendPlan::Send {
            let sent = SendOutcome::Sent {
                message_id: format!("<{}@x>", row.id),
                detail: "250 ok".into(),
            };
            worker::finish(&s, row, old, &sent).await.unwrap();
        }
    }
    let opened = rows[0].clone();
    s.record_activity(&Activity {
        idempotency_key: opened.idempotency_key.clone(),
        customer_id: opened.customer_id.clone(),
        kind: ActivityKind::Open,
        url: None,
        at: old + Duration::minutes(5),
        machine: false,
    })
    .await
    .unwrap();
    s.keep_dead_letters(
        &[DeadLetter {
            source: "http".into(),
            reason: "old".into(),
            payload: "x".into(),
            origin: None,
        }],
        old,
    )
    .await
    .unwrap();
    let logged = s.deliveries().await.unwrap().len();
    assert!(logged >= 5);

    // One batch takes at most its limit, and says whether more is left.
    let step = s
        .purge(Purge::Events, now - keep, &After::Start, 4)
        .await
        .unwrap();
    assert_eq!(step.changed, 4);
    assert!(step.next.is_some());
    let clock = aftercare::clock::ManualClock::new(now);
    let stop = tokio_util::sync::CancellationToken::new();
    let p = aftercare::retention::purge(&s, keep, "me", &clock, 3, &stop)
        .await
        .unwrap()
        .expect("the lease is free");
    assert_eq!(p.events, 6, "{p:?}");
    assert_eq!(p.deliveries as usize, logged);
    assert_eq!((p.activity, p.dead_letters), (1, 1));
    assert!(p.enrollments >= 5, "{p:?}");
    assert!(p.batches > 5, "{p:?}");
    assert_eq!(s.event_count().await.unwrap(), 1);
    assert!(s.deliveries().await.unwrap().is_empty());
    assert!(s.dead_letters().await.unwrap().is_empty());
    assert!(s.activity(&opened.customer_id).await.unwrap().is_empty());
    // The recent event is still a duplicate; a purged one is not.
    let r = ingest_batch(&s, cat, &recent, "test", now).await.unwrap();
    assert_eq!(r.duplicates, 1);
    // A purged order.placed comes again: its enrollment's key is kept, so
    // the order is not enrolled a second time.
    let r = ingest_batch(&s, cat, &olds[..1], "test", now)
        .await
        .unwrap();
    assert_eq!((r.applied, r.emails), (1, 0));
    assert!(
        s.enrollments_of("c1").await.unwrap().is_empty(),
        "compacted"
    );
    let x = s.export_customer("c1").await.unwrap();
    assert!(x.enrollments.iter().all(|e| e.state.is_none()), "{x:?}");
    // The open outlives its row.
    let mut tx = s.begin().await.unwrap();
    let history = tx.sent_history(&opened.customer_id, -1).await.unwrap();
    assert!(
        history.iter().any(|h| h.opened == Some(true)),
        "{history:?}"
    );
    drop(tx);
    // Nothing left: a second pass changes nothing.
    let p = aftercare::retention::purge(&s, keep, "me", &clock, 3, &stop)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p.events + p.deliveries + p.activity + p.enrollments, 0);
}

/// One instance at a time: the lease is another's until it lapses.
async fn the_retention_lease_is_held_by_one<S: Store>(s: S) {
    let now = t(T0);
    let until = now + Duration::minutes(5);
    assert!(s.take_lease("lease:x", "a", now, until).await.unwrap());
    assert!(!s.take_lease("lease:x", "b", now, until).await.unwrap());
    assert!(s.take_lease("lease:x", "a", now, until).await.unwrap());
    let later = until + Duration::seconds(1);
    assert!(
        s.take_lease("lease:x", "b", later, later + Duration::minutes(5))
            .await
            .unwrap()
    );
    assert!(!s.take_lease("lease:x", "a", later, later).await.unwrap());
    let clock = aftercare::clock::ManualClock::new(later);
    let stop = tokio_util::sync::CancellationToken::new();
    s.take_lease(
        aftercare::retention::LEASE_KEY,
        "b",
        later,
        later + Duration::minutes(5),
    )
    .await
    .unwrap();
    let p = aftercare::retention::purge(&s, Duration::days(30), "a", &clock, 10, &stop)
        .await
        .unwrap();
    assert_eq!(p, None, "another instance purges");
}

/// The gauges of `/metrics`: enrollments by sequence and status, and the
/// outbox queue by status with what is due and the earliest time, each
/// agreeing with the rows as listed one by one.
async fn metrics_count_enrollments_and_the_queue<S: Store>(s: S) {
    let cat = catalog();
    assert_eq!(s.enrollment_totals().await.unwrap(), []);
    assert_eq!(s.outbox_queue(t(T0)).await.unwrap(), []);
    let later = "2026-11-20T10:05:00Z";
    ingest_batch(
        &s,
        cat,
        &[
            event("e1", "order.placed", "c1", "o1", T0, true),
            event("e2", "order.placed", "c2", "o2", later, true),
            event("e3", "order.cancelled", "c2", "o2", later, true),
            event("e4", "order.placed", "c3", "o3", later, false),
        ],
        "test",
        t(later),
    )
    .await
    .unwrap();
    // Counted one by one.
    let mut expected: std::collections::BTreeMap<(String, &str), i64> = Default::default();
    for c in ["c1", "c2", "c3"] {
        for e in s.enrollments_of(c).await.unwrap() {
            *expected
                .entry((e.sequence.clone(), aftercare::store::status_name(e.status)))
                .or_default() += 1;
        }
    }
    let counted: std::collections::BTreeMap<(String, &str), i64> = s
        .enrollment_totals()
        .await
        .unwrap()
        .into_iter()
        .map(|(seq, st, n)| ((seq, aftercare::store::status_name(st)), n))
        .collect();
    assert_eq!(counted, expected);
    assert_eq!(
        counted.get(&("fulfilment".to_string(), "exited")),
        Some(&1),
        "{counted:?}"
    );
    assert!(counted.get(&("fulfilment".to_string(), "active")) >= Some(&2));
    // The queue before its rows are due, and once they are.
    let rows = s.outbox().await.unwrap();
    let pending: Vec<_> = rows
        .iter()
        .filter(|r| r.status == OutboxStatus::Pending)
        .collect();
    assert!(pending.len() >= 2, "{rows:?}");
    let oldest = pending.iter().map(|r| r.not_before).min().unwrap();
    for (at, due) in [
        (oldest - Duration::minutes(1), 0),
        (t(later), pending.len()),
    ] {
        let queue = s.outbox_queue(at).await.unwrap();
        assert_eq!(queue.len(), 1, "only pending rows: {queue:?}");
        let q = &queue[0];
        assert_eq!(q.status, OutboxStatus::Pending);
        assert_eq!(q.rows, pending.len() as i64);
        assert_eq!(q.due, due as i64, "at {at}");
        assert_eq!(
            q.due,
            pending.iter().filter(|r| r.not_before <= at).count() as i64
        );
        assert_eq!(q.oldest, Some(oldest));
    }
    // One row taken by the sender and marked `sending`.
    let claimed = s
        .claim_outbox(t(later), Duration::seconds(60), 1, &solo())
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let mut tx = s.begin().await.unwrap();
    let sending = Transition::Sending {
        lease_until: t(later) + Duration::seconds(60),
        tracked: false,
    };
    assert!(
        tx.transition(&claimed[0], &sending, t(later))
            .await
            .unwrap()
    );
    tx.commit().await.unwrap();
    let queue = s.outbox_queue(t(later)).await.unwrap();
    let by: Vec<(OutboxStatus, i64)> = queue.iter().map(|q| (q.status, q.rows)).collect();
    assert_eq!(
        by,
        [
            (OutboxStatus::Pending, pending.len() as i64 - 1),
            (OutboxStatus::Sending, 1)
        ]
    );
}

/// `Store::journey`: a customer's events (with when and how they came), the
/// engine's journal in the order decided (a duplicate included), their
/// emails with when each was enqueued, the delivery log, opens, and the dead
/// letters that name them; nothing of another customer.
async fn a_customers_journey_is_read_back<S: Store>(s: S) {
    use aftercare::engine::journal::{NotEnrolled, What};
    let cat = catalog();
    let e1 = event("j1", "order.placed", "c1", "o1", T0, true);
    let other = event("j2", "order.placed", "c2", "o2", T0, true);
    ingest_batch(&s, cat, &[e1.clone(), other], "http", t(T0))
        .await
        .unwrap();
    let later = t(T0) + Duration::minutes(5);
    let r = ingest_batch(&s, cat, std::slice::from_ref(&e1), "kafka", later)
        .await
        .unwrap();
    assert_eq!(r.duplicates, 1);
    // A letter cut short still names its customer; another names c2.
    let cut = DeadLetter {
        source: "http".into(),
        reason: "order.total: money must be a decimal string".into(),
        payload: r#"{"id":"j9","type":"order.placed","customer":{"email":"x@y.example","id":"c1"},"order":{"id":"o1","total":12"#.into(),
        origin: None,
    };
    let theirs = DeadLetter {
        payload: r#"{"id":"j8","customer":{"id":"c2"}}"#.into(),
        ..cut.clone()
    };
    s.keep_dead_letters(&[cut.clone(), theirs], later)
        .await
        .unwrap();
    let rows = s
        .claim_outbox(later, Duration::seconds(60), 10, &solo())
        .await
        .unwrap();
    let mine = rows.iter().find(|r| r.customer_id == "c1").unwrap();
    send(&s, mine, later).await;
    s.record_activity(&aftercare::store::Activity {
        idempotency_key: mine.idempotency_key.clone(),
        customer_id: "c1".into(),
        kind: aftercare::store::ActivityKind::Open,
        url: None,
        at: later + Duration::minutes(1),
        machine: false,
    })
    .await
    .unwrap();

    let j = s.journey("c1").await.unwrap();
    assert_eq!(j.events.len(), 1);
    assert_eq!(
        (
            j.events[0].event.id.as_str(),
            j.events[0].source.as_str(),
            j.events[0].received_at
        ),
        ("j1", "http", t(T0))
    );
    let kinds: Vec<(&str, Option<&str>)> = j
        .journal
        .iter()
        .map(|e| (e.what.kind(), e.sequence.as_deref()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("enrolled", Some("fulfilment")),
            ("awaiting_event", Some("fulfilment")),
            ("not_enrolled", Some("reorder")),
            ("duplicate", None),
        ],
        "{:#?}",
        j.journal
    );
    assert!(j.journal.iter().all(|e| e.customer_id == "c1"));
    assert!(matches!(
        &j.journal[2].what,
        What::NotEnrolled { why: NotEnrolled::TriggerFalse, condition: Some(c), .. }
            if c.value == Some(false) && c.source.contains("replenish_every_days")
    ));
    assert_eq!(
        (j.journal[3].at, &j.journal[3].what),
        (
            later,
            &What::Duplicate {
                event_id: "j1".into(),
                event_type: "order.placed".into()
            }
        )
    );
    assert_eq!(j.enrollments.len(), 1);
    assert_eq!(j.emails.len(), 1);
    assert_eq!(j.emails[0].created_at, t(T0));
    assert_eq!(j.emails[0].view.status, OutboxStatus::Sent);
    assert_eq!(j.deliveries.len(), 1);
    assert_eq!(j.deliveries[0].outcome, Outcome::Sent);
    assert_eq!(j.activity.len(), 1);
    assert_eq!(j.dead_letters.len(), 1);
    assert_eq!(j.dead_letters[0].letter, cut);
    assert!(s.journey("nobody").await.unwrap().is_empty());
    let theirs = s.journey("c2").await.unwrap();
    assert_eq!(theirs.dead_letters.len(), 1);
    assert!(theirs.journal.iter().all(|e| e.customer_id == "c2"));
}

/// A catalog of one sequence written in YAML (and the default policies).
fn catalog_of(yaml: &str) -> aftercare::sequence::model::Catalog {
    let (seq, diags) =
        aftercare::sequence::load::parse_sequence(std::path::Path::new("t.yaml"), yaml);
    assert!(diags.0.is_empty(), "{:?}", diags.0);
    aftercare::sequence::model::Catalog::new(vec![seq.unwrap()], Default::default())
}

/// Runs the scheduler at `now` until nothing more is due.
async fn wake_all<S: Store>(
    s: &S,
    cat: &aftercare::sequence::model::Catalog,
    now: DateTime<Utc>,
) -> usize {
    let mut ran = 0;
    loop {
        let n = schedule::tick(s, cat, now).await.unwrap().ran;
        if n == 0 {
            return ran;
        }
        ran += n;
    }
}

/// Issue 11: a date trigger keeps one timer per customer, set as the
/// facts change; the scheduler fires it at the anniversary (not before,
/// not on the day of the order itself), once, and sets the next one.
async fn a_date_trigger_fires_once_per_anniversary<S: Store>(s: S) {
    let cat = catalog_of(
        "id: anniversary\nname: A\ncategory: value\n\
         trigger: {date: customer.first_order_at, repeat: yearly, at: \"10:00\"}\n\
         steps:\n  - email: thanks\n",
    );
    let order = event("e1", "order.placed", "c1", "o1", T0, true);
    ingest_batch(&s, &cat, &[order], "test", t(T0))
        .await
        .unwrap();
    // 10:00 in Budapest (the customer's zone) a year on.
    let first = t("2027-11-20T09:00:00Z");
    assert_eq!(s.next_wake().await.unwrap(), Some(first));
    assert_eq!(wake_all(&s, &cat, first - Duration::seconds(1)).await, 0);
    assert!(s.outbox().await.unwrap().is_empty());
    assert_eq!(wake_all(&s, &cat, first).await, 1);
    let outbox = s.outbox().await.unwrap();
    assert_eq!(outbox.len(), 1);
    assert_eq!(
        outbox[0].idempotency_key,
        "anniversary/c1/@date:2027#thanks"
    );
    // The next one is set, and a second order changes nothing of it.
    assert_eq!(
        s.next_wake().await.unwrap(),
        Some(t("2028-11-20T09:00:00Z"))
    );
    let again = event(
        "e2",
        "order.placed",
        "c1",
        "o2",
        "2027-12-01T10:00:00Z",
        true,
    );
    ingest_batch(&s, &cat, &[again], "test", t("2027-12-01T10:00:00Z"))
        .await
        .unwrap();
    assert_eq!(
        s.next_wake().await.unwrap(),
        Some(t("2028-11-20T09:00:00Z"))
    );
    assert_eq!(wake_all(&s, &cat, t("2028-11-20T09:00:00Z")).await, 1);
    assert_eq!(s.outbox().await.unwrap().len(), 2);
}

/// Issue 11: a history import of an order two years old sets the timer to
/// the next anniversary from now: it never fires the ones already past.
async fn a_history_import_never_fires_a_past_anniversary<S: Store>(s: S) {
    let cat = catalog_of(
        "id: anniversary\nname: A\ncategory: value\n\
         trigger: {date: customer.first_order_at, at: \"10:00\"}\n\
         steps:\n  - email: thanks\n",
    );
    let mut old = event(
        "e1",
        "order.placed",
        "c1",
        "o1",
        "2024-06-01T10:00:00Z",
        true,
    );
    old.history = true;
    ingest_batch(&s, &cat, &[old], "test", t(T0)).await.unwrap();
    // 10:00 in Budapest (summer time) on 1 June 2027, the next one from now.
    assert_eq!(
        s.next_wake().await.unwrap(),
        Some(t("2027-06-01T08:00:00Z"))
    );
    assert_eq!(wake_all(&s, &cat, t(T0) + Duration::days(1)).await, 0);
    assert!(s.outbox().await.unwrap().is_empty());
}

/// Issue 11: `customer.last_email_at` is when the last email was sent, as
/// conditions (the sweep's reading included) and the engine see it, and a
/// late report of an older send does not move it back.
async fn the_last_email_is_a_fact<S: Store>(s: S) {
    let cat = catalog();
    ingest_batch(
        &s,
        cat,
        &[event("e1", "order.placed", "c1", "o1", T0, true)],
        "test",
        t(T0),
    )
    .await
    .unwrap();
    let rows = s
        .claim_outbox(t(T0), Duration::seconds(60), 10, &solo())
        .await
        .unwrap();
    let sent_at = t(T0) + Duration::minutes(1);
    send(&s, &rows[0], sent_at).await;
    s.emailed("c1", t(T0)).await.unwrap();
    // What a sweep reads.
    let read = std::sync::Mutex::new(Vec::new());
    let page = s
        .pick_customers("", 10, &|p| {
            read.lock()
                .unwrap()
                .push(p.and_then(|p| p.ledger.facts.last_email_at));
            true
        })
        .await
        .unwrap();
    assert_eq!(page.ids, ["c1"]);
    assert_eq!(read.into_inner().unwrap(), [Some(sent_at)]);
    // The engine sees it too: the next event's decisions read the profile.
    let mut tx = s.begin().await.unwrap();
    let states = tx
        .lock_customers(&["c1".to_string()], &LookBack::of(cat, t(T0)))
        .await
        .unwrap();
    let facts = &states["c1"].profile.as_ref().unwrap().ledger.facts;
    assert_eq!(facts.last_email_at, Some(sent_at));
    assert_eq!(facts.orders_count, 1);
}

/// The look-back the engine decides with: each customer's events of the
/// types some sequence looks back on, within the window, oldest first, at
/// most `LOOK_BACK_EVENTS` of them (the latest); none of other customers,
/// other types or before the window.
async fn the_look_back_loads_each_customers_latest_events<S: Store>(s: S) {
    use aftercare::engine::customer::LOOK_BACK_EVENTS;
    let cat = catalog();
    let looked = cat
        .looked_back
        .iter()
        .next()
        .expect("some type looked back")
        .clone();
    let other = aftercare::event::KNOWN_TYPES
        .iter()
        .find(|k| !cat.looked_back.contains(**k))
        .expect("a type nothing looks back on");
    let now = t(T0);
    let at = |minutes: i64| (now - Duration::minutes(minutes)).to_rfc3339();
    let mut batch = vec![
        event(
            "old",
            &looked,
            "c1",
            "o1",
            &(now - Duration::days(8)).to_rfc3339(),
            true,
        ),
        event("a", &looked, "c1", "o1", &at(300), true),
        event("b", other, "c1", "o1", &at(200), true),
        event("c", &looked, "c1", "o1", &at(100), true),
        event("d", &looked, "c2", "o2", &at(50), true),
    ];
    // c3: more than the cap, one a minute.
    let flood = LOOK_BACK_EVENTS + 5;
    batch.extend((0..flood).map(|i| {
        event(
            &format!("f{i:03}"),
            &looked,
            "c3",
            "o3",
            &at(1000 - i as i64),
            true,
        )
    }));
    ingest_batch(&s, cat, &batch, "test", now).await.unwrap();
    let ids: Vec<String> = ["c1", "c2", "c3", "c4"].map(String::from).to_vec();
    let mut tx = s.begin().await.unwrap();
    let states = tx
        .lock_customers(&ids, &LookBack::of(cat, now))
        .await
        .unwrap();
    let recent =
        |c: &str| -> Vec<String> { states[c].recent.iter().map(|e| e.id.clone()).collect() };
    assert_eq!(recent("c1"), ["a", "c"]);
    assert_eq!(recent("c2"), ["d"]);
    let latest: Vec<String> = (5..flood).map(|i| format!("f{i:03}")).collect();
    assert_eq!(recent("c3"), latest);
    assert!(recent("c4").is_empty());
}

/// What a sweep reads: pages in id order after the last id read, each
/// profile handed to the pick, and no last id past the end.
async fn a_sweep_reads_customers_in_pages_by_id<S: Store>(s: S) {
    let cat = catalog();
    let batch: Vec<_> = ["c3", "c1", "c4", "c2", "c5"]
        .iter()
        .enumerate()
        .map(|(i, c)| event(&format!("e{i}"), "order.placed", c, "o1", T0, true))
        .collect();
    ingest_batch(&s, cat, &batch, "test", t(T0)).await.unwrap();
    let odd = |p: Option<&aftercare::engine::profile::Profile>| {
        p.is_some_and(|p| p.customer.id.ends_with(['1', '3', '5']))
    };
    let first = s.pick_customers("", 2, &odd).await.unwrap();
    assert_eq!((first.read, first.last.as_deref()), (2, Some("c2")));
    assert_eq!(first.ids, ["c1"]);
    let second = s.pick_customers("c2", 2, &odd).await.unwrap();
    assert_eq!((second.read, second.last.as_deref()), (2, Some("c4")));
    assert_eq!(second.ids, ["c3"]);
    let third = s.pick_customers("c4", 2, &odd).await.unwrap();
    assert_eq!(
        (third.read, third.last.as_deref(), &third.ids[..]),
        (1, Some("c5"), &["c5".to_string()][..])
    );
    let end = s.pick_customers("c5", 2, &odd).await.unwrap();
    assert_eq!(end, aftercare::store::Picked::default());
}

/// Every customer a sweep within `range` picks, page by page.
async fn picked_within<S: Store>(s: &S, range: &FactRange) -> Vec<String> {
    let mut ids = Vec::new();
    let mut after = String::new();
    loop {
        let page = s
            .pick_customers_within(range, &after, 2, &|_| true)
            .await
            .unwrap();
        ids.extend(page.ids);
        match page.last {
            Some(last) => after = last,
            None => return ids,
        }
    }
}

/// A sweep whose condition bounds a time fact (win-back's
/// `now - customer.last_order_at > days(90)`) is handed exactly the
/// customers within it, in id order, as their facts change.
async fn a_sweep_within_a_range_reads_only_those_in_it<S: Store>(s: S) {
    let cat = catalog();
    let now = t(T0);
    let ago = |d: i64| (now - Duration::days(d)).to_rfc3339();
    let batch = vec![
        event("e1", "order.placed", "c1", "o1", &ago(100), true),
        event("e2", "order.placed", "c2", "o2", &ago(95), true),
        event("e3", "order.placed", "c3", "o3", &ago(91), true),
        event("e4", "order.placed", "c4", "o4", &ago(10), true),
        event("e5", "shipment.shipped", "c5", "o5", &ago(10), true),
        event("e6", "order.placed", "c6", "o6", &ago(120), true),
        event("e7", "order.placed", "c7", "o7", &ago(90), true),
    ];
    ingest_batch(&s, cat, &batch, "test", now).await.unwrap();
    // More than 90 days, at most 120, since the last order.
    let lapsed = FactRange {
        fact: TimeFact::LastOrderAt,
        from: Bound::Included(now - Duration::days(120)),
        to: Bound::Excluded(now - Duration::days(90)),
        present: true,
    };
    assert_eq!(picked_within(&s, &lapsed).await, ["c1", "c2", "c3", "c6"]);
    let or_never = FactRange {
        present: false,
        ..lapsed.clone()
    };
    assert_eq!(
        picked_within(&s, &or_never).await,
        ["c1", "c2", "c3", "c5", "c6"]
    );
    // A new order takes c2 out, an erasure c3.
    let again = event("e8", "order.placed", "c2", "o8", &ago(5), true);
    ingest_batch(&s, cat, &[again], "test", now).await.unwrap();
    aftercare::rights::erase(&s, "c3", "admin", now)
        .await
        .unwrap();
    assert_eq!(picked_within(&s, &lapsed).await, ["c1", "c6"]);
    // An email sent moves the customer in the order of the last email.
    let emailed = FactRange {
        fact: TimeFact::LastEmailAt,
        from: Bound::Included(now),
        to: Bound::Unbounded,
        present: true,
    };
    assert!(picked_within(&s, &emailed).await.is_empty());
    s.emailed("c4", now).await.unwrap();
    assert_eq!(picked_within(&s, &emailed).await, ["c4"]);
}

/// Every customer's profile, by id.
async fn profiles<S: Store>(s: &S) -> Vec<(String, Option<aftercare::engine::profile::Profile>)> {
    let ids = s.pick_customers("", 1000, &|_| true).await.unwrap().ids;
    let mut out = Vec::new();
    for id in ids {
        let c = s.customer(&id).await.unwrap().unwrap();
        out.push((id, c.profile));
    }
    out
}

/// Issue 11: customers stored before facts were kept (an upgrade) get them
/// counted from their stored events, once.
async fn facts_are_built_for_customers_stored_before<S: Store>(s: S) {
    let cat = catalog();
    let batch = [
        event(
            "e1",
            "order.placed",
            "c1",
            "o1",
            "2026-01-10T10:00:00Z",
            true,
        ),
        event(
            "e2",
            "order.placed",
            "c1",
            "o2",
            "2026-03-10T10:00:00Z",
            true,
        ),
        event(
            "e3",
            "order.cancelled",
            "c1",
            "o2",
            "2026-03-11T10:00:00Z",
            true,
        ),
        event(
            "e4",
            "order.placed",
            "c2",
            "o1",
            "2026-02-10T10:00:00Z",
            true,
        ),
    ];
    ingest_batch(&s, cat, &batch, "test", t(T0)).await.unwrap();
    let built = profiles(&s).await;
    // As an older version stored them: no ledger.
    let mut tx = s.begin().await.unwrap();
    let mut writes = aftercare::store::Writes::default();
    for (id, p) in &built {
        let mut p = p.clone().unwrap();
        p.ledger = Default::default();
        writes.profiles.insert(id.clone(), std::sync::Arc::new(p));
    }
    tx.write(writes, t(T0)).await.unwrap();
    tx.commit().await.unwrap();
    let old = profiles(&s).await;
    assert!(
        old.iter()
            .all(|(_, p)| p.as_ref().unwrap().ledger.facts.orders_count == 0)
    );
    assert_eq!(schedule::sweep::seed_facts(&s, t(T0)).await.unwrap(), 2);
    assert_eq!(
        schedule::sweep::seed_facts(&s, t(T0)).await.unwrap(),
        0,
        "once"
    );
    let rebuilt = profiles(&s).await;
    for ((_, before), (_, after)) in built.iter().zip(&rebuilt) {
        assert_eq!(
            before.as_ref().unwrap().ledger.facts,
            after.as_ref().unwrap().ledger.facts
        );
    }
    assert_eq!(rebuilt[0].1.as_ref().unwrap().ledger.facts.orders_count, 1);
}

/// Issue 11: customers who were there before a date-triggered sequence
/// (and send no event) get their timers by one pass, once per trigger.
async fn timers_are_set_for_customers_already_there<S: Store>(s: S) {
    let batch: Vec<_> = (0..1500)
        .map(|i| {
            event(
                &format!("e{i}"),
                "order.placed",
                &format!("c{i:05}"),
                "o1",
                T0,
                true,
            )
        })
        .collect();
    ingest_batch(&s, catalog(), &batch, "test", t(T0))
        .await
        .unwrap();
    let cat = catalog_of(
        "id: anniversary\nname: A\ncategory: value\n\
         trigger: {date: customer.first_order_at, at: \"10:00\"}\n\
         steps:\n  - email: thanks\n",
    );
    let later = t("2027-01-01T00:00:00Z");
    assert_eq!(
        schedule::sweep::seed_timers(&s, &cat, later).await.unwrap(),
        1500
    );
    assert_eq!(
        schedule::sweep::seed_timers(&s, &cat, later).await.unwrap(),
        0,
        "once"
    );
    let first = t("2027-11-20T09:00:00Z");
    let thanks = |rows: Vec<aftercare::store::OutboxView>| {
        rows.into_iter().filter(|o| o.template == "thanks").count()
    };
    wake_all(&s, &cat, first - Duration::seconds(1)).await;
    assert_eq!(thanks(s.outbox().await.unwrap()), 0);
    wake_all(&s, &cat, first).await;
    assert_eq!(thanks(s.outbox().await.unwrap()), 1500);
}

/// Issue 11: a schedule sweeps every customer in pages, enrolls those its
/// `when` holds for, once per firing (a page swept again after a crash
/// enrolls nobody twice), and not at the firing already past when the
/// sequence was first seen.
async fn a_schedule_sweeps_every_customer_once_per_firing<S: Store>(s: S) {
    let cat = catalog_of(
        "id: winback\nname: W\ncategory: value\n\
         trigger: {schedule: \"0 9 * * *\", when: 'now - customer.last_order_at > days(90)'}\n\
         exit_when: [{event: order.placed, scope: customer}]\n\
         steps:\n  - email: miss-you\n",
    );
    // 2,100 customers (three pages): the even ones ordered long ago.
    let batch: Vec<_> = (0..2100)
        .map(|i| {
            let at = if i % 2 == 0 {
                "2026-01-01T10:00:00Z"
            } else {
                T0
            };
            event(
                &format!("e{i}"),
                "order.placed",
                &format!("c{i:05}"),
                "o1",
                at,
                true,
            )
        })
        .collect();
    ingest_batch(&s, &cat, &batch, "test", t(T0)).await.unwrap();
    let sweep = schedule::sweep::sweep;
    // First seen at 10:00 UTC: today's 09:00 is gone, and does not run.
    let r = sweep(&s, &cat, t(T0)).await.unwrap();
    assert_eq!(r.read, 0);
    let next = t("2026-11-21T09:00:00Z");
    assert_eq!(
        schedule::sweep::next_sweep(&s, &cat).await.unwrap(),
        Some(next)
    );
    // Every customer is asked, or (a store that keeps the last order's
    // time in order) only those more than 90 days past it.
    let r = sweep(&s, &cat, next).await.unwrap();
    assert_eq!(r.matched, 1050);
    assert!((1050..=2100).contains(&r.read), "{}", r.read);
    let enrolled = s.outbox().await.unwrap();
    assert_eq!(enrolled.len(), 1050);
    assert!(
        enrolled
            .iter()
            .all(|o| o.idempotency_key.ends_with("/o1#miss-you"))
    );
    // A crash after the first page: the sweep goes on from there, and
    // what it does again enrolls nobody twice.
    let mut progress: serde_json::Value =
        serde_json::from_str(&s.setting("sweep/winback").await.unwrap().unwrap()).unwrap();
    progress["cursor"] = "c00999".into();
    progress["done"] = false.into();
    s.put_setting("sweep/winback", &progress.to_string())
        .await
        .unwrap();
    let r = sweep(&s, &cat, next + Duration::minutes(5)).await.unwrap();
    assert_eq!(r.matched, 550);
    assert_eq!(r.offered, 0, "enrolled already: not locked again");
    assert!((550..=1100).contains(&r.read), "{}", r.read);
    assert_eq!(s.outbox().await.unwrap().len(), 1050);
    // The next day: once per last order, so nobody again, and nobody locked.
    let r = sweep(&s, &cat, t("2026-11-22T09:00:00Z")).await.unwrap();
    assert_eq!((r.matched, r.offered), (1050, 0));
    assert_eq!(s.outbox().await.unwrap().len(), 1050);
    // What the sweep asks before it locks: which enrollments exist.
    let pair = |c: &str, k: &str| (c.to_string(), k.to_string());
    let held = s
        .enrollments_held(&[
            pair("c00000", "winback/c00000/o1"),
            pair("c00001", "winback/c00001/o1"),
            pair("c00002", "winback/c00002/o2"),
            pair("c09999", "winback/c09999/o1"),
        ])
        .await
        .unwrap();
    assert_eq!(held, ["winback/c00000/o1".to_string()].into());
    // An order of March, imported late: more than 90 days ago too, but a
    // new lapse, offered again.
    let again = event(
        "e-again",
        "order.placed",
        "c00000",
        "o2",
        "2026-03-01T10:00:00Z",
        true,
    );
    ingest_batch(&s, &cat, &[again], "test", t("2026-11-22T10:00:00Z"))
        .await
        .unwrap();
    let r = sweep(&s, &cat, t("2026-11-23T09:00:00Z")).await.unwrap();
    assert_eq!(r.offered, 1, "c00000's new lapse");
    let winbacks = s.outbox().await.unwrap();
    assert!(
        winbacks
            .iter()
            .any(|o| o.idempotency_key == "winback/c00000/o2#miss-you"),
        "{:?}",
        winbacks
            .iter()
            .map(|o| &o.idempotency_key)
            .collect::<Vec<_>>()
    );
}

/// An enrollment reads back whole, however the store keeps it: the SQL
/// stores leave the context's customer and facts out of the row when they are
/// the profile's and fill them back in on load; a context holding another
/// customer keeps its own.
async fn an_enrollment_reads_back_whole<S: Store>(s: S) {
    let cat = catalog();
    let placed = event("e1", "order.placed", "c1", "o1", T0, true);
    ingest_batch(&s, cat, &[placed], "test", t(T0))
        .await
        .unwrap();
    let ids = vec!["c1".to_string()];
    let mut tx = s.begin().await.unwrap();
    let mut states = tx.lock_customers(&ids, &LookBack::none()).await.unwrap();
    let state = states.remove("c1").unwrap();
    let profile = state.profile.clone().unwrap();
    let loaded = state.enrollments[0].clone();
    assert_eq!(loaded.context.customer, profile.customer);
    assert_eq!(loaded.context.facts, profile.ledger.facts);
    assert_eq!(loaded.context.facts.orders_count, 1);
    assert_eq!(loaded.context.order.as_ref().unwrap().id, "o1");
    assert_eq!(loaded.order_id.as_deref(), Some("o1"));
    drop(tx);
    assert_eq!(
        s.enrollments_of("c1").await.unwrap(),
        std::slice::from_ref(&loaded)
    );
    let mut tx = s.begin().await.unwrap();
    let mut states = tx.lock_customers(&ids, &LookBack::none()).await.unwrap();
    let mut state = states.remove("c1").unwrap();

    // Another customer in the context than the profile's: kept as written.
    let mut other = loaded.clone();
    let context = std::sync::Arc::make_mut(&mut other.context);
    context.customer.first_name = Some("Nem Anna".into());
    context.facts.orders_count = 7;
    state.enrollments[0] = other.clone();
    let mut writes = aftercare::store::Writes::default();
    writes.take_enrollments(state, &[0].into());
    tx.write(writes, t(T0)).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(s.enrollments_of("c1").await.unwrap(), [other.clone()]);
    let mut tx = s.begin().await.unwrap();
    let mut states = tx.lock_customers(&ids, &LookBack::none()).await.unwrap();
    assert_eq!(states.remove("c1").unwrap().enrollments, [other.clone()]);
    drop(tx);
    let at_step = s
        .enrollments_at("fulfilment", "await-shipment", None, 10)
        .await
        .unwrap();
    assert_eq!(at_step, [other]);
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let (store, _dir) = crate::support::sqlite().await;
                    super::$name(store).await;
                }
            )*
        }
        mod memory {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(aftercare::store::MemStore::new()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let db = crate::support::PgDb::new().await;
                    super::$name(db.store.clone()).await;
                    db.drop().await;
                }
            )*
        }
    };
}

conformance!(
    events_are_applied_once,
    events_advance_stored_enrollments,
    due_enrollments_are_claimed_once_and_woken,
    concurrent_wakes_never_overlap,
    outbox_rows_go_through_the_policy,
    marketing_is_deferred_or_skipped_with_a_reason,
    a_stale_worker_cannot_overwrite_a_newer_claim,
    a_crashed_instance_is_taken_over_in_seconds,
    dead_letters_and_settings,
    unsubscribe_and_bounce_are_remembered,
    bounces_find_customers_and_list_addresses,
    two_schedulers_wake_each_enrollment_once,
    a_customers_emails_are_claimed_one_at_a_time_in_order,
    emails_long_past_due_are_skipped_as_stale,
    a_history_import_then_live_mail_is_claimed,
    the_delivery_log_is_searched_and_paged,
    metrics_count_enrollments_and_the_queue,
    a_customers_journey_is_read_back,
    a_failed_email_is_requeued_by_an_operator,
    operators_change_the_suppression_list,
    replayed_dead_letters_are_revised,
    a_sequences_enrollments_by_step,
    an_erased_customer_leaves_only_a_hash,
    an_erasure_within_a_batch_keeps_what_follows,
    erasing_by_id_logs_who_asked,
    retention_purges_in_batches,
    the_retention_lease_is_held_by_one,
    reports_count_in_the_database,
    erasure_reaches_the_journal_and_the_suppression_log,
    a_date_trigger_fires_once_per_anniversary,
    a_schedule_sweeps_every_customer_once_per_firing,
    timers_are_set_for_customers_already_there,
    a_history_import_never_fires_a_past_anniversary,
    the_last_email_is_a_fact,
    facts_are_built_for_customers_stored_before,
    a_sweep_reads_customers_in_pages_by_id,
    a_sweep_within_a_range_reads_only_those_in_it,
    the_look_back_loads_each_customers_latest_events,
    an_enrollment_reads_back_whole,
);

/// On PostgreSQL two transactions claim at once: each takes rows the other
/// does not hold, and a customer held by ingest is skipped, not waited for
/// (waiting would deadlock: ingest holds customers, then writes their
/// enrollments).
#[tokio::test]
async fn postgres_claims_skip_what_others_hold() {
    let db = support::PgDb::new().await;
    let s = db.store.clone();
    let cat = catalog();
    let batch: Vec<_> = (0..40)
        .map(|i| {
            let c = format!("c{i:02}");
            event(&format!("e{i}"), "order.placed", &c, "o1", T0, true)
        })
        .collect();
    ingest_batch(&s, cat, &batch, "test", t(T0)).await.unwrap();
    let due = t(T0) + Duration::days(3);

    // Ingest holds c00 (and would write its enrollments next).
    let mut ingest = s.begin().await.unwrap();
    ingest
        .lock_customers(&["c00".to_string()], &LookBack::none())
        .await
        .unwrap();

    let mut a = s.begin().await.unwrap();
    let mut b = s.begin().await.unwrap();
    let got_a = a.claim_due(due, 15, &LookBack::none()).await.unwrap();
    let got_b = b.claim_due(due, 100, &LookBack::none()).await.unwrap();
    let keys = |d: &aftercare::store::Due| -> HashSet<String> {
        d.claims.iter().map(|c| c.key.clone()).collect()
    };
    let (ka, kb) = (keys(&got_a), keys(&got_b));
    assert!(ka.is_disjoint(&kb), "a row is claimed by one transaction");
    assert!(!ka.contains("fulfilment/c00/o1") && !kb.contains("fulfilment/c00/o1"));
    assert!(!got_a.customers.contains_key("c00") && !got_b.customers.contains_key("c00"));
    assert_eq!(ka.len() + kb.len(), 39, "all but the held customer's");
    drop((a, b));

    // Ingest finishes; the held customer's enrollment is due as before.
    ingest.commit().await.unwrap();
    let mut ran = 0;
    loop {
        match schedule::tick(&s, cat, due).await.unwrap().ran {
            0 => break,
            n => ran += n,
        }
    }
    assert_eq!(ran, 40);
    db.drop().await;
}
