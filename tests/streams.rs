//! Real event streams through the webhook, as a shop sends them: events that
//! leave out what earlier ones said, and events that arrive out of order.
//! Over PostgreSQL and SQLite, with only the HTTP role running, so that what
//! ingest decided can be read from the store before anything is sent.

mod support;

use aftercare::config::Role;
use aftercare::engine::state::{Status, Waiting};
use aftercare::store::Store;
use chrono::{DateTime, Duration, Timelike, Utc};
use support::app;

/// Everything a shop knows of Anna, in Budapest.
const ANNA: &str = r#"{"id":"anna","email":"anna@example.com","first_name":"Anna","locale":"hu-HU","timezone":"Europe/Budapest","marketing_consent":true}"#;
/// What a shipping system knows of her.
const ANNA_BARE: &str = r#"{"id":"anna","email":"anna@example.com"}"#;

fn ev(id: &str, kind: &str, customer: &str, order: &str, at: DateTime<Utc>) -> String {
    support::shop_event(id, kind, customer, order, at)
}

/// The templates of the customer's outbox rows, in creation order.
async fn emails<S: Store>(store: &S, customer: &str) -> Vec<String> {
    let mut rows: Vec<_> = store
        .outbox()
        .await
        .unwrap()
        .into_iter()
        .filter(|o| o.customer_id == customer)
        .collect();
    rows.sort_by_key(|o| o.id);
    rows.into_iter().map(|o| o.template).collect()
}

async fn enrollment<S: Store>(
    store: &S,
    customer: &str,
    sequence: &str,
) -> Option<aftercare::engine::state::Enrollment> {
    store
        .enrollments_of(customer)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.sequence == sequence)
}

/// A minute a little while ago, so that events sort by the time given.
fn ago(minutes: i64) -> DateTime<Utc> {
    let now = Utc::now().with_nanosecond(0).unwrap();
    now - Duration::minutes(minutes)
}

async fn the_stored_customer_is_the_truth<S: Store>(store: S) {
    let app = app::spawn(store.clone(), &[Role::Http]).await;
    let placed = ago(60);
    let delivered = ago(10);
    app.post(&[ev("p", "order.placed", ANNA, "o1", placed)])
        .await;
    // The carrier's events know only the id and the address.
    app.post(&[ev("s", "shipment.shipped", ANNA_BARE, "o1", ago(30))])
        .await;
    app.post(&[ev("d", "shipment.delivered", ANNA_BARE, "o1", delivered)])
        .await;
    let education = enrollment(&store, "anna", "education")
        .await
        .expect("education started after delivery");
    // Its wait ends at 10:00 in Budapest, not 10:00 UTC.
    let Waiting::Time { until } = education.waiting else {
        panic!("{:?}", education.waiting)
    };
    let local = until.with_timezone(&chrono_tz::Europe::Budapest);
    assert_eq!((local.hour(), local.minute()), (10, 0), "{until}");
    assert!(until > delivered + Duration::days(1) - Duration::minutes(1));
    // Locale, name and consent are what the first event said.
    let c = &education.context.customer;
    assert_eq!(c.locale.as_deref(), Some("hu-HU"));
    assert_eq!(c.first_name.as_deref(), Some("Anna"));
    assert_eq!(c.marketing_consent, Some(true));
    assert_eq!(c.timezone, Some(chrono_tz::Europe::Budapest));
    app.shutdown().await;
}

async fn a_shipment_before_its_order_is_taken_in_when_the_order_comes<S: Store>(store: S) {
    let app = app::spawn(store.clone(), &[Role::Http]).await;
    app.post(&[ev("s", "shipment.shipped", ANNA_BARE, "o1", ago(30))])
        .await;
    app.post(&[ev("p", "order.placed", ANNA, "o1", ago(60))])
        .await;
    let f = enrollment(&store, "anna", "fulfilment").await.unwrap();
    // It waits for the delivery, not for a shipment that already happened
    // (which would have meant a "your order is delayed" email in 3 days).
    match &f.waiting {
        Waiting::Event { event, .. } => assert_eq!(event, "shipment.delivered"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        emails(&store, "anna").await,
        ["order-confirmation", "order-shipped"]
    );
    app.shutdown().await;
}

async fn a_delivery_before_its_shipment_is_taken_in_after_it<S: Store>(store: S) {
    let app = app::spawn(store.clone(), &[Role::Http]).await;
    app.post(&[ev("p", "order.placed", ANNA, "o1", ago(60))])
        .await;
    app.post(&[ev("d", "shipment.delivered", ANNA_BARE, "o1", ago(10))])
        .await;
    assert_eq!(emails(&store, "anna").await, ["order-confirmation"]);
    app.post(&[ev("s", "shipment.shipped", ANNA_BARE, "o1", ago(30))])
        .await;
    let f = enrollment(&store, "anna", "fulfilment").await.unwrap();
    assert_eq!(f.status, Status::Completed, "{f:?}");
    assert_eq!(
        emails(&store, "anna").await,
        ["order-confirmation", "order-shipped", "order-delivered"]
    );
    assert!(enrollment(&store, "anna", "education").await.is_some());
    app.shutdown().await;
}

async fn a_cancellation_before_its_order_stops_the_sequence_from_starting<S: Store>(store: S) {
    let app = app::spawn(store.clone(), &[Role::Http]).await;
    app.post(&[ev("x", "order.cancelled", ANNA_BARE, "o1", ago(30))])
        .await;
    app.post(&[ev("p", "order.placed", ANNA, "o1", ago(60))])
        .await;
    assert!(enrollment(&store, "anna", "fulfilment").await.is_none());
    assert!(emails(&store, "anna").await.is_empty());
    // Another order of hers is not affected.
    app.post(&[ev("p2", "order.placed", ANNA, "o2", ago(5))])
        .await;
    assert_eq!(emails(&store, "anna").await, ["order-confirmation"]);
    app.shutdown().await;
}

async fn one_call_out_of_order_applies_in_the_order_things_happened<S: Store>(store: S) {
    let app = app::spawn(store.clone(), &[Role::Http]).await;
    app.post(&[
        ev("d", "shipment.delivered", ANNA_BARE, "o1", ago(10)),
        ev("s", "shipment.shipped", ANNA_BARE, "o1", ago(30)),
        ev("p", "order.placed", ANNA, "o1", ago(60)),
    ])
    .await;
    assert_eq!(
        emails(&store, "anna").await,
        ["order-confirmation", "order-shipped", "order-delivered"]
    );
    app.shutdown().await;
}

/// An order that arrives weeks late still takes in the shipment that came
/// before it: the look-back window (7 days) is counted back from the event
/// being applied, not from the clock.
async fn a_late_order_takes_in_its_shipment_however_late_it_comes<S: Store>(store: S) {
    let app = app::spawn(store.clone(), &[Role::Http]).await;
    let placed = Utc::now().with_nanosecond(0).unwrap() - Duration::days(20);
    app.post(&[ev(
        "s",
        "shipment.shipped",
        ANNA_BARE,
        "o1",
        placed + Duration::days(1),
    )])
    .await;
    app.post(&[ev("p", "order.placed", ANNA, "o1", placed)])
        .await;
    let f = enrollment(&store, "anna", "fulfilment").await.unwrap();
    match &f.waiting {
        Waiting::Event { event, .. } => assert_eq!(event, "shipment.delivered"),
        other => panic!("{other:?}"),
    }
    // A shipment that happened before its order was placed is not taken in:
    // only what happened after the event that started the enrollment counts.
    app.post(&[ev("s2", "shipment.shipped", ANNA_BARE, "o2", placed)])
        .await;
    app.post(&[ev(
        "p2",
        "order.placed",
        ANNA,
        "o2",
        placed + Duration::days(8),
    )])
    .await;
    let f = store
        .enrollments_of("anna")
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.order_id.as_deref() == Some("o2"))
        .unwrap();
    match &f.waiting {
        Waiting::Event { event, .. } => assert_eq!(event, "shipment.shipped"),
        other => panic!("{other:?}"),
    }
    app.shutdown().await;
}

/// Clocks disagree: the warehouse stamps the shipment two seconds before
/// the shop stamps the order. Applied in time order within the call, the
/// shipment comes first, and still counts for the order's wait.
async fn a_shipment_stamped_a_little_before_its_order_still_counts<S: Store>(store: S) {
    let app = app::spawn(store.clone(), &[Role::Http]).await;
    let placed = ago(10);
    app.post(&[
        ev("p", "order.placed", ANNA, "o1", placed),
        ev(
            "s",
            "shipment.shipped",
            ANNA_BARE,
            "o1",
            placed - Duration::seconds(2),
        ),
    ])
    .await;
    assert_eq!(
        emails(&store, "anna").await,
        ["order-confirmation", "order-shipped"]
    );
    app.shutdown().await;
}

/// A coffee order with a 30-day refill: it starts a reorder reminder.
fn coffee(id: &str, order: &str, at: DateTime<Utc>, history: bool) -> String {
    let at = at.to_rfc3339();
    format!(
        r#"{{"id":"{id}","type":"order.placed","occurred_at":"{at}","history":{history},"customer":{ANNA},
        "order":{{"id":"{order}","placed_at":"{at}","currency":"EUR","total":"12.00",
        "items":[{{"sku":"BEANS","name":"Beans","quantity":1,"unit_price":"12.00","replenish_every_days":30}}]}}}}"#
    )
    .replace('\n', " ")
}

/// A history import after live data: last year's order does not end this
/// month's reorder reminder (`exit_when: order.placed, scope: customer`),
/// because it happened before the enrollment's own order.
async fn history_does_not_move_live_enrollments<S: Store>(store: S) {
    let app = app::spawn(store.clone(), &[Role::Http]).await;
    app.post(&[coffee("o2", "o2", ago(60 * 24), false)]).await;
    let reorder = enrollment(&store, "anna", "reorder").await.unwrap();
    assert_eq!(reorder.status, Status::Active);
    app.post(&[coffee("o1", "o1", Utc::now() - Duration::days(365), true)])
        .await;
    let live = store
        .enrollments_of("anna")
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.key == reorder.key)
        .unwrap();
    assert_eq!(live.status, Status::Active, "{live:?}");
    assert!(live.history.is_none());
    app.shutdown().await;
}

support::on_both_stores!(
    the_stored_customer_is_the_truth,
    a_shipment_before_its_order_is_taken_in_when_the_order_comes,
    a_delivery_before_its_shipment_is_taken_in_after_it,
    a_cancellation_before_its_order_stops_the_sequence_from_starting,
    one_call_out_of_order_applies_in_the_order_things_happened,
    a_late_order_takes_in_its_shipment_however_late_it_comes,
    a_shipment_stamped_a_little_before_its_order_still_counts,
    history_does_not_move_live_enrollments,
);
