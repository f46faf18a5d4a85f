//! The pure engine, driven step by step with a hand-held clock: every step
//! kind, correlation and scope, enrollment modes, and resuming after an edit.

use std::path::Path;

use aftercare::engine::customer::{Changes, CustomerState};
use aftercare::engine::dispatch::{apply_event, apply_wake};
use aftercare::engine::state::{Status, Waiting};
use aftercare::event::Event;
use aftercare::sequence::load::{parse_policies, parse_sequence};
use aftercare::sequence::model::{Catalog, Sequence};
use chrono::{DateTime, Duration, Utc};

fn seq(text: &str) -> Sequence {
    let (s, d) = parse_sequence(Path::new("test.yaml"), text);
    assert!(!d.has_errors(), "{d}");
    s.expect("sequence")
}

fn catalog(texts: &[&str]) -> Catalog {
    let (p, d) = parse_policies(Path::new("_policies.yaml"), "default_timezone: UTC\n");
    assert!(!d.has_errors());
    Catalog::new(texts.iter().map(|t| seq(t)).collect(), p)
}

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

const T0: &str = "2026-11-20T10:00:00Z";

/// An event of `kind` for customer `c` and order `o` at `at`.
fn ev(id: &str, kind: &str, c: &str, o: Option<&str>, at: &str) -> Event {
    let order = o
        .map(|o| {
            format!(
                r#","order":{{"id":"{o}","number":"N{o}","placed_at":"{at}","currency":"EUR","total":"150.00",
                "items":[{{"sku":"CAM","category":"camera","unit_price":"150.00","replenish_every_days":30}}]}}"#
            )
        })
        .unwrap_or_default();
    let shipment = if kind.starts_with("shipment.") {
        r#","shipment":{"id":"s1","carrier":"DHL","tracking_number":"JV1"}"#
    } else {
        ""
    };
    Event::parse(&format!(
        r#"{{"id":"{id}","type":"{kind}","occurred_at":"{at}",
        "customer":{{"id":"{c}","email":"{c}@example.com","timezone":"Europe/Budapest","marketing_consent":true}}{order}{shipment}}}"#
    ))
    .unwrap()
}

/// Customer c1's order o1, placed at `T0`.
fn first_order(cat: &Catalog, state: &mut CustomerState) -> Changes {
    apply_event(
        cat,
        state,
        &ev("e1", "order.placed", "c1", Some("o1"), T0),
        t(T0),
    )
}

fn templates(a: &Changes) -> Vec<String> {
    a.emails.iter().map(|e| e.job.template.clone()).collect()
}

/// Wakes every enrollment whose time has come, as the scheduler would.
fn wake_all(cat: &Catalog, list: &mut CustomerState, now: DateTime<Utc>) -> Vec<String> {
    let mut sent = Vec::new();
    for i in 0..list.enrollments.len() {
        if list.enrollments[i].wake_at().is_some_and(|w| w <= now) {
            sent.extend(templates(&apply_wake(cat, list, i, now)));
        }
    }
    sent
}

const FULFILMENT: &str = r#"
id: fulfilment
category: transactional
trigger: {event: order.placed, when: 'order.total > 100.0'}
exit_when: [{event: order.cancelled}]
steps:
  - email: confirmation
  - id: await-shipment
    wait_for: shipment.shipped
    within: 3d
    on_timeout:
      - email: delayed
      - wait_for: shipment.shipped
        within: 14d
        on_timeout: [{exit: true}]
  - email: shipped
  - start: education
"#;

const EDUCATION: &str = r#"
id: education
category: value
steps:
  - wait: 1d
    at: "10:00"
  - if: 'order.items.exists(i, i.category == "camera")'
    then: [{email: camera-tips}]
    else: [{email: generic-tips}]
"#;

#[test]
fn email_wait_for_and_start() {
    let cat = catalog(&[FULFILMENT, EDUCATION]);
    let mut list = CustomerState::default();
    let a = first_order(&cat, &mut list);
    assert_eq!(templates(&a), ["confirmation"]);
    assert_eq!(
        a.emails[0].job.idempotency_key,
        "fulfilment/c1/o1#confirmation"
    );
    assert_eq!(list.enrollments[0].step.as_deref(), Some("await-shipment"));
    assert_eq!(
        list.enrollments[0].wake_at(),
        Some(t("2026-11-23T10:00:00Z"))
    );

    // A shipment of another order does not move it.
    let other = ev(
        "e2",
        "shipment.shipped",
        "c1",
        Some("o2"),
        "2026-11-21T09:00:00Z",
    );
    let a = apply_event(&cat, &mut list, &other, other.occurred_at);
    assert!(a.emails.is_empty() && a.enrollments.is_empty());

    let ship = ev(
        "e3",
        "shipment.shipped",
        "c1",
        Some("o1"),
        "2026-11-21T09:00:00Z",
    );
    let a = apply_event(&cat, &mut list, &ship, ship.occurred_at);
    assert_eq!(templates(&a), ["shipped"]);
    // The context took the shipment in; fulfilment ended and education began.
    assert_eq!(
        list.enrollments[0].context.shipment.as_ref().unwrap().id,
        "s1"
    );
    assert_eq!(list.enrollments[0].status, Status::Completed);
    assert_eq!(list.enrollments[1].key, "education/c1/o1");
    assert_eq!(
        list.enrollments[1].context.shipment.as_ref().unwrap().id,
        "s1"
    );
    // 1 day later, then the next 10:00 in Budapest (09:00Z).
    assert_eq!(
        list.enrollments[1].wake_at(),
        Some(t("2026-11-22T09:00:00Z"))
    );
    assert!(wake_all(&cat, &mut list, t("2026-11-22T08:59:00Z")).is_empty());
    assert_eq!(
        wake_all(&cat, &mut list, t("2026-11-22T09:00:00Z")),
        ["camera-tips"]
    );
    assert_eq!(list.enrollments[1].status, Status::Completed);
}

#[test]
fn wait_for_times_out_into_on_timeout_then_goes_on() {
    let cat = catalog(&[FULFILMENT, EDUCATION]);
    let mut list = CustomerState::default();
    first_order(&cat, &mut list);
    assert!(wake_all(&cat, &mut list, t("2026-11-23T09:59:59Z")).is_empty());
    assert_eq!(
        wake_all(&cat, &mut list, t("2026-11-23T10:00:00Z")),
        ["delayed"]
    );
    assert_eq!(
        list.enrollments[0].waiting,
        Waiting::Event {
            event: "shipment.shipped".into(),
            until: t("2026-12-07T10:00:00Z")
        }
    );
    let ship = ev(
        "e3",
        "shipment.shipped",
        "c1",
        Some("o1"),
        "2026-11-25T09:00:00Z",
    );
    let a = apply_event(&cat, &mut list, &ship, ship.occurred_at);
    assert_eq!(templates(&a), ["shipped"]);
}

#[test]
fn the_second_timeout_exits() {
    let cat = catalog(&[FULFILMENT, EDUCATION]);
    let mut list = CustomerState::default();
    first_order(&cat, &mut list);
    wake_all(&cat, &mut list, t("2026-11-23T10:00:00Z"));
    assert!(wake_all(&cat, &mut list, t("2026-12-07T10:00:00Z")).is_empty());
    assert_eq!(list.enrollments[0].status, Status::Exited);
    assert_eq!(list.enrollments.len(), 1, "education never started");
}

#[test]
fn exit_when_is_scoped_to_the_order_unless_told_otherwise() {
    let cat = catalog(&[FULFILMENT, EDUCATION]);
    let mut list = CustomerState::default();
    first_order(&cat, &mut list);
    apply_event(
        &cat,
        &mut list,
        &ev("e2", "order.placed", "c1", Some("o2"), T0),
        t(T0),
    );
    let cancel = ev("e3", "order.cancelled", "c1", Some("o2"), T0);
    let a = apply_event(&cat, &mut list, &cancel, t(T0));
    assert_eq!(a.notes.len(), 1, "{:?}", a.notes);
    assert_eq!(list.enrollments[0].status, Status::Active);
    assert_eq!(list.enrollments[1].status, Status::Exited);
    assert!(
        list.enrollments[1]
            .ended_reason
            .as_deref()
            .unwrap()
            .contains("order.cancelled")
    );

    let reorder = catalog(&[r#"
id: reorder
category: value
trigger: {event: order.placed}
exit_when:
  - {event: order.placed, scope: customer, when: 'event.order.id != order.id'}
steps:
  - wait: 20d
  - email: reorder-reminder
"#]);
    let mut list = CustomerState::default();
    first_order(&reorder, &mut list);
    assert_eq!(list.enrollments.len(), 1);
    let again = ev(
        "e2",
        "order.placed",
        "c1",
        Some("o2"),
        "2026-11-25T10:00:00Z",
    );
    apply_event(&reorder, &mut list, &again, again.occurred_at);
    assert_eq!(
        list.enrollments[0].status,
        Status::Exited,
        "a new order ends the old reminder"
    );
    assert_eq!(
        list.enrollments[1].status,
        Status::Active,
        "and starts its own"
    );
}

#[test]
fn trigger_condition_and_enroll_modes() {
    let cat = catalog(&[FULFILMENT, EDUCATION]);
    let mut list = CustomerState::default();
    let cheap = Event::parse(
        &serde_json::to_string(&ev("e1", "order.placed", "c1", Some("o1"), T0))
            .unwrap()
            .replace("150.00", "20.00"),
    )
    .unwrap();
    apply_event(&cat, &mut list, &cheap, t(T0));
    assert!(
        list.enrollments.is_empty(),
        "order.total > 100.0 does not hold"
    );

    // once_per_order: the same order placed twice (two event ids) enrolls once.
    apply_event(
        &cat,
        &mut list,
        &ev("e2", "order.placed", "c1", Some("o1"), T0),
        t(T0),
    );
    let a = apply_event(
        &cat,
        &mut list,
        &ev("e3", "order.placed", "c1", Some("o1"), T0),
        t(T0),
    );
    assert_eq!(list.enrollments.len(), 1);
    assert!(a.emails.is_empty());

    let per_customer = catalog(&[r#"
id: welcome
category: value
trigger: {event: order.placed}
enroll: once_per_customer
steps: [{email: welcome}]
"#]);
    let mut list = CustomerState::default();
    for (i, o) in ["o1", "o2"].iter().enumerate() {
        apply_event(
            &per_customer,
            &mut list,
            &ev(&format!("e{i}"), "order.placed", "c1", Some(o), T0),
            t(T0),
        );
    }
    assert_eq!(list.enrollments.len(), 1);

    let every = catalog(&[r#"
id: thanks
category: transactional
trigger: {event: review.submitted}
enroll: every_event
steps: [{email: thanks}]
"#]);
    let mut list = CustomerState::default();
    for i in 0..3 {
        apply_event(
            &every,
            &mut list,
            &ev(&format!("r{i}"), "review.submitted", "c1", Some("o1"), T0),
            t(T0),
        );
    }
    assert_eq!(list.enrollments.len(), 3);
    let keys: std::collections::HashSet<_> =
        list.enrollments.iter().map(|e| e.key.clone()).collect();
    assert_eq!(keys.len(), 3);
}

#[test]
fn split_is_stable_per_customer_and_follows_the_weights() {
    let cat = catalog(&[r#"
id: review
category: value
trigger: {event: shipment.delivered}
steps:
  - split:
      - {name: short, weight: 75, steps: [{email: short}]}
      - {name: long, weight: 25, steps: [{email: long}]}
  - email: after
"#]);
    let mut shorts = 0;
    for c in 0..2000 {
        let cid = format!("c{c}");
        let mut first = CustomerState::default();
        let a = apply_event(
            &cat,
            &mut first,
            &ev("e", "shipment.delivered", &cid, Some("o1"), T0),
            t(T0),
        );
        let mut second = CustomerState::default();
        let b = apply_event(
            &cat,
            &mut second,
            &ev("e", "shipment.delivered", &cid, Some("o1"), T0),
            t(T0),
        );
        assert_eq!(templates(&a), templates(&b), "same customer, same variant");
        assert_eq!(
            templates(&a)[1],
            "after",
            "the sequence goes on after the split"
        );
        shorts += usize::from(templates(&a)[0] == "short");
    }
    assert!(
        (1350..1650).contains(&shorts),
        "75% of 2000 expected, got {shorts}"
    );
}

#[test]
fn wait_until_from_a_condition() {
    let cat = catalog(&[r#"
id: reorder
category: value
trigger: {event: order.placed}
steps:
  - wait_until: 'order.placed_at + days(order.replenish_every_days - 7)'
  - email: reminder
  - wait_until: 'order.placed_at'
  - email: at-once
"#]);
    let mut list = CustomerState::default();
    first_order(&cat, &mut list);
    assert_eq!(
        list.enrollments[0].wake_at(),
        Some(t(T0) + Duration::days(23))
    );
    // A time already past does not wait.
    let sent = wake_all(&cat, &mut list, t(T0) + Duration::days(23));
    assert_eq!(sent, ["reminder", "at-once"]);
}

#[test]
fn exit_step_and_failing_conditions() {
    let cat = catalog(&[r#"
id: x
category: value
trigger: {event: order.placed}
steps:
  - if: 'customer.attributes.vip == true'
    then: [{email: vip}]
  - email: everyone
  - exit: true
  - email: never
"#]);
    let mut list = CustomerState::default();
    let a = first_order(&cat, &mut list);
    // The attribute is missing: the condition fails, counts as false, and says so.
    assert_eq!(templates(&a), ["everyone"]);
    assert!(
        a.notes
            .iter()
            .any(|n| n.message.contains("failed, taken as false"))
    );
    assert_eq!(list.enrollments[0].status, Status::Exited);
}

#[test]
fn an_edited_sequence_resumes_by_step_id() {
    let v1 = r#"
id: edu
category: value
trigger: {event: order.placed}
steps:
  - email: one
  - id: pause
    wait: 2d
  - email: two
"#;
    let v2 = r#"
id: edu
category: value
trigger: {event: order.placed}
steps:
  - email: one
  - email: inserted-before
  - id: pause
    wait: 2d
  - email: two-rewritten
"#;
    let v3 = r#"
id: edu
category: value
trigger: {event: order.placed}
steps:
  - email: one
  - wait: 1d
  - email: two
"#;
    let mut list = CustomerState::default();
    let cat1 = catalog(&[v1]);
    first_order(&cat1, &mut list);
    let started_on = list.enrollments[0].version.clone();
    let mut edited = list.clone();

    let cat2 = catalog(&[v2]);
    let sent = wake_all(&cat2, &mut edited, t(T0) + Duration::days(2));
    assert_eq!(
        sent,
        ["two-rewritten"],
        "resumes after `pause`, skipping nothing already sent"
    );
    assert_ne!(edited.enrollments[0].version, started_on);

    let cat3 = catalog(&[v3]);
    let sent = wake_all(&cat3, &mut list, t(T0) + Duration::days(2));
    assert!(sent.is_empty());
    assert_eq!(list.enrollments[0].status, Status::Exited);
    assert!(
        list.enrollments[0]
            .ended_reason
            .as_deref()
            .unwrap()
            .contains("`pause` no longer exists")
    );
}

#[test]
fn start_cycles_are_cut() {
    let a = r#"
id: a
category: value
trigger: {event: order.placed}
enroll: every_event
steps: [{email: a}, {start: b}]
"#;
    let b = r#"
id: b
category: value
enroll: every_event
steps: [{email: b}, {start: a}]
"#;
    let cat = catalog(&[a, b]);
    let mut list = CustomerState::default();
    let out = first_order(&cat, &mut list);
    assert!(
        list.enrollments.len() <= 20,
        "bounded, got {}",
        list.enrollments.len()
    );
    assert!(out.notes.iter().any(|n| n.message.contains("chain deeper")));
}

#[test]
fn a_late_event_times_out_first_even_when_the_wake_up_is_behind() {
    let cat = catalog(&[FULFILMENT, EDUCATION]);
    let mut list = CustomerState::default();
    first_order(&cat, &mut list);
    // The scheduler is behind: the shipment (after the 3-day deadline) comes first.
    let late = ev(
        "e2",
        "shipment.shipped",
        "c1",
        Some("o1"),
        "2026-11-23T11:00:00Z",
    );
    let a = apply_event(&cat, &mut list, &late, late.occurred_at);
    // As if the wake-up had run on time: the delay notice, then the shipment
    // meets the second wait.
    assert_eq!(templates(&a), ["delayed", "shipped"]);
    // A shipment that happened in time but is processed late still counts.
    let mut list = CustomerState::default();
    first_order(&cat, &mut list);
    let in_time = ev(
        "e3",
        "shipment.shipped",
        "c1",
        Some("o1"),
        "2026-11-23T09:00:00Z",
    );
    let a = apply_event(&cat, &mut list, &in_time, t("2026-11-23T12:00:00Z"));
    assert_eq!(templates(&a), ["shipped"]);
}

// Issue 7: no input and no setting that got past validation makes the
// engine panic; the enrollment pays, with its reason noted.

/// The shipped sequences, templates and policies, as `run` loads them.
fn shipped() -> aftercare::validate::Loaded {
    let l = aftercare::validate::load(Path::new("sequences"), Path::new("templates"));
    assert!(!l.diagnostics.has_errors(), "{}", l.diagnostics);
    l
}

/// Reproduction 1: `replenish_every_days: 100000000` puts the shipped
/// reorder's `wait_until` past every date. The reorder enrollment ends with
/// the reason; the rest of the event (fulfilment) goes on.
#[test]
fn a_huge_replenish_interval_ends_only_the_reorder_enrollment() {
    let l = shipped();
    let mut e = Event::parse(
        r#"{"id":"p","type":"order.placed","occurred_at":"2026-05-01T10:00:00Z","customer":{"id":"c","email":"a@b.co"},
        "order":{"id":"o","placed_at":"2026-05-01T10:00:00Z","items":[{"sku":"x","replenish_every_days":30}]}}"#,
    )
    .unwrap();
    // Set past any check at the boundary: the engine must hold on its own.
    e.order.as_mut().unwrap().items[0].replenish_every_days = Some(100_000_000);
    let mut state = CustomerState::default();
    let out = apply_event(&l.catalog, &mut state, &e, t("2026-05-01T10:00:00Z"));
    let reorder = state
        .enrollments
        .iter()
        .find(|e| e.sequence == "reorder")
        .expect("the reorder sequence was entered");
    assert_eq!(reorder.status, Status::Exited);
    let why = reorder.ended_reason.as_deref().unwrap();
    assert!(
        why.contains("wait_until") && why.contains("out of range"),
        "{why}"
    );
    assert!(
        out.notes
            .iter()
            .any(|n| n.sequence == "reorder" && n.message.contains("wait_until")),
        "{:?}",
        out.notes
    );
    assert!(
        templates(&out).contains(&"order-confirmation".to_string()),
        "{:?}",
        templates(&out)
    );
}

/// The expression of reproduction 1 written out: a `wait_until` past what
/// dates hold (it panicked inside the CEL library) is a failed `wait_until`.
#[test]
fn a_wait_until_past_the_calendar_ends_the_enrollment() {
    let cat = catalog(&[r#"
id: far
category: value
trigger: {event: order.placed}
steps:
  - wait_until: "order.placed_at + days(100000000)"
  - email: never
  - wait_until: "order.placed_at + days(3000000)"
  - email: never-either
"#]);
    let mut list = CustomerState::default();
    let out = first_order(&cat, &mut list);
    assert!(out.emails.is_empty());
    assert_eq!(list.enrollments[0].status, Status::Exited);
    let why = list.enrollments[0].ended_reason.clone().unwrap();
    assert!(
        why.contains("wait_until") && why.contains("out of range"),
        "{why}"
    );
}

/// Reproduction 4 in the engine: waits and `within`s too long for the
/// calendar (as if validation had been skipped) end the enrollment.
#[test]
fn waits_past_the_calendar_end_the_enrollment() {
    use aftercare::sequence::duration::Span;
    use aftercare::sequence::plan::Op;
    let mut seq = seq(r#"
id: long
category: value
trigger: {event: order.placed}
steps:
  - wait: 1d
  - email: never
"#);
    let mut waitfor = self::seq(
        r#"
id: longfor
category: value
trigger: {event: order.placed}
steps:
  - wait_for: shipment.shipped
    within: 1d
  - email: never-either
"#,
    );
    let huge = Span::of(chrono::TimeDelta::weeks(15_000_000));
    for i in &mut seq.plan.instrs {
        if let Op::Wait { duration, .. } = &mut i.op {
            *duration = huge;
        }
    }
    for i in &mut waitfor.plan.instrs {
        if let Op::WaitFor { within, .. } = &mut i.op {
            *within = huge;
        }
    }
    let (p, _) = parse_policies(Path::new("_policies.yaml"), "default_timezone: UTC\n");
    let cat = Catalog::new(vec![seq, waitfor], p);
    let mut list = CustomerState::default();
    let out = first_order(&cat, &mut list);
    assert!(out.emails.is_empty());
    assert_eq!(list.enrollments.len(), 2);
    for e in &list.enrollments {
        assert_eq!(e.status, Status::Exited, "{}", e.sequence);
        assert!(
            e.ended_reason
                .as_deref()
                .unwrap()
                .contains("past the dates"),
            "{e:?}"
        );
        assert_eq!(e.wake_at(), None);
    }
}

const RUNAWAY: &str = r#"
id: runaway
category: transactional
trigger: {event: order.placed}
enroll: every_event
steps: [{email: again}, {wait: 1s}, {start: runaway}]
"#;

/// Item 4 at run time: a sequence that starts itself every second (which
/// `validate` refuses) is stopped by the per-customer ceiling: at most 100
/// enrollments start in 24 hours by default, each refusal noted. (The
/// sender's half of the ceiling, 50 emails sent in 24 hours, is tested with
/// the send decision.) The ceiling is counted from the enrollments and their
/// start times, so it writes nothing.
#[test]
fn the_per_customer_ceiling_stops_a_runaway() {
    let cat = catalog(&[RUNAWAY]);
    let mut list = CustomerState::default();
    let start = t(T0);
    let first = apply_event(
        &cat,
        &mut list,
        &ev("e1", "order.placed", "c1", Some("o1"), T0),
        start,
    );
    let mut emails = first.emails.len();
    let mut notes = first.notes;
    let mut now = start;
    for _ in 0..500 {
        now += Duration::seconds(1);
        for i in 0..list.enrollments.len() {
            if list.enrollments[i].wake_at().is_some_and(|w| w <= now) {
                let c = apply_wake(&cat, &mut list, i, now);
                assert!(c.profile.is_none(), "counting writes nothing");
                emails += c.emails.len();
                notes.extend(c.notes);
            }
        }
    }
    assert_eq!(emails, 100);
    assert_eq!(list.enrollments.len(), 100);
    assert!(
        list.enrollments.iter().all(|e| !e.is_active()),
        "the chain ended"
    );
    assert!(notes.iter().any(|n| n.message.contains(
        "not started: the customer reached the ceiling of 100 enrollments started per 1d"
    )));
    // The store loads finished enrollments as their keys and start times.
    let mut loaded = CustomerState {
        profile: list.profile.clone(),
        finished: std::sync::Arc::new(list.enrollments.iter().map(|e| e.key.clone()).collect()),
        finished_starts: std::sync::Arc::new(
            list.enrollments.iter().map(|e| e.started_at).collect(),
        ),
        ..CustomerState::default()
    };
    let again = apply_event(
        &cat,
        &mut loaded,
        &ev(
            "e2",
            "order.placed",
            "c1",
            Some("o2"),
            "2026-11-20T12:00:00Z",
        ),
        t("2026-11-20T12:00:00Z"),
    );
    assert!(again.emails.is_empty());
    // A day after the first starts, the customer gets mail again.
    let later = apply_event(
        &cat,
        &mut loaded,
        &ev(
            "e3",
            "order.placed",
            "c1",
            Some("o3"),
            "2026-11-21T10:00:01Z",
        ),
        t("2026-11-21T10:00:01Z"),
    );
    assert_eq!(templates(&later), ["again"]);
}

/// The ceiling is read from the policies file.
#[test]
fn the_ceiling_is_configurable() {
    let (p, d) = parse_policies(
        Path::new("_policies.yaml"),
        "ceiling: {enrollments: 3, emails: 2, per: 1h}\n",
    );
    assert!(!d.has_errors(), "{d}");
    let cat = Catalog::new(vec![seq(RUNAWAY)], p);
    let mut list = CustomerState::default();
    let mut sent = templates(&first_order(&cat, &mut list));
    for s in 1..10 {
        sent.extend(wake_all(&cat, &mut list, t(T0) + Duration::seconds(s)));
    }
    assert_eq!(sent, ["again", "again", "again"]);
    assert_eq!(list.enrollments.len(), 3);
}

/// An `every_event` sequence that starts itself after a day (a warning in
/// `validate`, not an error) nested each key in the next: after a few
/// months a key passed what a PostgreSQL index takes and the scheduler's
/// batch failed. Keys stay short and distinct.
#[test]
fn a_slow_self_start_keeps_its_keys_short() {
    let cat = catalog(&[r#"
id: daily
category: transactional
trigger: {event: order.placed}
enroll: every_event
steps: [{email: daily}, {wait: 1d}, {start: daily}]
"#]);
    let mut list = CustomerState::default();
    first_order(&cat, &mut list);
    let mut sent = 1;
    for day in 1..=200 {
        sent += wake_all(&cat, &mut list, t(T0) + Duration::days(day)).len();
        list.enrollments.retain(|e| e.is_active());
    }
    assert_eq!(sent, 201);
    let e = &list.enrollments[0];
    assert!(e.key.len() < 120, "{}", e.key);
}

/// The journal entries of `a`, as `kind step` (and the enrollment key when
/// asked), in order.
fn journal(a: &Changes) -> Vec<String> {
    a.journal
        .iter()
        .map(|j| format!("{} {}", j.what.kind(), j.step.as_deref().unwrap_or("-")))
        .collect()
}

/// The engine says what it did and why: the enrollment started by its
/// trigger, each wait with its deadline, a timeout, the event that ended a
/// wait, the `if` with its value and the way it went, completion.
#[test]
fn the_journal_says_why_each_step_was_entered_and_left() {
    use aftercare::engine::journal::{Role, What};
    let cat = catalog(&[FULFILMENT, EDUCATION]);
    let mut list = CustomerState::default();
    let a = first_order(&cat, &mut list);
    assert_eq!(journal(&a), ["enrolled -", "awaiting_event await-shipment"]);
    let j = &a.journal[0];
    assert_eq!(
        (j.customer_id.as_str(), j.enrollment_key.as_deref(), j.at),
        ("c1", Some("fulfilment/c1/o1"), t(T0))
    );
    assert_eq!(
        j.what,
        What::Enrolled {
            event_id: Some("e1".into()),
            started_by: None
        }
    );
    assert_eq!(
        a.journal[1].what,
        What::AwaitingEvent {
            event: "shipment.shipped".into(),
            until: t("2026-11-23T10:00:00Z")
        }
    );
    // The wait_for times out: the on_timeout steps run, and wait again.
    let a = apply_wake(&cat, &mut list, 0, t("2026-11-23T10:00:00Z"));
    assert_eq!(
        journal(&a),
        [
            "timed_out await-shipment",
            "awaiting_event await-shipment/timeout/wait_for-shipment.shipped"
        ]
    );
    // The shipment comes: taken in, the email, education started.
    let ship = ev(
        "e3",
        "shipment.shipped",
        "c1",
        Some("o1"),
        "2026-11-25T09:00:00Z",
    );
    let a = apply_event(&cat, &mut list, &ship, ship.occurred_at);
    let kinds: Vec<&str> = a.journal.iter().map(|j| j.what.kind()).collect();
    assert_eq!(
        kinds,
        ["received", "start", "enrolled", "waiting", "completed"],
        "{:#?}",
        a.journal
    );
    assert_eq!(
        a.journal[2].what,
        What::Enrolled {
            event_id: None,
            started_by: Some("fulfilment/c1/o1".into())
        }
    );
    assert_eq!(
        a.journal[2].enrollment_key.as_deref(),
        Some("education/c1/o1")
    );
    // Education's `if`: its source, its value, the branch taken.
    let a = apply_wake(&cat, &mut list, 1, t("2026-11-26T09:00:00Z"));
    let cond = a
        .journal
        .iter()
        .find_map(|j| match &j.what {
            What::Condition { role, checked, .. } => Some((*role, checked.clone())),
            _ => None,
        })
        .expect("the if is journaled");
    assert_eq!(cond.0, Role::If);
    assert_eq!(
        cond.1.source,
        r#"order.items.exists(i, i.category == "camera")"#
    );
    assert_eq!(cond.1.value, Some(true));
    assert_eq!(cond.1.branch.as_deref(), Some("then"));
    assert_eq!(templates(&a), ["camera-tips"]);
}

/// A sequence that does not start says why: its trigger condition was
/// false (with the condition's source and value), or the customer is
/// already enrolled once per order.
#[test]
fn the_journal_says_why_a_sequence_did_not_start() {
    use aftercare::engine::journal::{NotEnrolled, What};
    let cat = catalog(&[FULFILMENT, EDUCATION]);
    let mut list = CustomerState::default();
    let mut cheap = ev("e1", "order.placed", "c2", Some("o9"), T0);
    cheap.order.as_mut().unwrap().total = Some(serde_json::from_str(r#""50.00""#).unwrap());
    let a = apply_event(&cat, &mut list, &cheap, t(T0));
    assert!(a.emails.is_empty());
    assert_eq!(a.journal.len(), 1, "{:#?}", a.journal);
    let j = &a.journal[0];
    assert_eq!(j.enrollment_key.as_deref(), Some("fulfilment/c2/o9"));
    let What::NotEnrolled {
        why,
        event_id,
        condition,
        message,
    } = &j.what
    else {
        panic!("{j:?}")
    };
    assert_eq!(*why, NotEnrolled::TriggerFalse);
    assert_eq!(event_id.as_deref(), Some("e1"));
    let c = condition.as_ref().unwrap();
    assert_eq!(
        (c.source.as_str(), c.value),
        ("order.total > 100.0", Some(false))
    );
    assert!(message.contains("order.total > 100.0"), "{message}");

    // The same order placed again (another event id): enrolled already.
    first_order(&cat, &mut list);
    let again = ev("e2", "order.placed", "c1", Some("o1"), T0);
    let a = apply_event(&cat, &mut list, &again, t(T0));
    assert!(
        a.journal.iter().any(|j| matches!(
            &j.what,
            What::NotEnrolled { why: NotEnrolled::AlreadyEnrolled, message, .. }
                if message.contains("once_per_order")
        )),
        "{:#?}",
        a.journal
    );
}

/// An exit_when rule that fires names its event; the journal entries of an
/// input that does not concern an enrollment do not make it a change.
#[test]
fn the_journal_names_the_exit_rule_that_fired() {
    use aftercare::engine::journal::What;
    let cat = catalog(&[FULFILMENT, EDUCATION]);
    let mut list = CustomerState::default();
    first_order(&cat, &mut list);
    let cancel = ev(
        "e5",
        "order.cancelled",
        "c1",
        Some("o1"),
        "2026-11-21T09:00:00Z",
    );
    let a = apply_event(&cat, &mut list, &cancel, cancel.occurred_at);
    assert_eq!(
        a.journal.last().unwrap().what,
        What::Exited {
            reason: "exit_when order.cancelled (e5)".into(),
            event_id: Some("e5".into())
        }
    );
    assert_eq!(
        a.journal.last().unwrap().step.as_deref(),
        Some("await-shipment")
    );
}

/// Issue 11: `1mo` and `1y` are added in the customer's calendar (Budapest,
/// from their events): the same local time, clamped to the month's end.
#[test]
fn calendar_waits_keep_the_local_time_and_clamp_to_the_month_end() {
    let cat = catalog(&[r#"
id: monthly
category: value
trigger: {event: order.placed}
steps:
  - wait: 1mo
  - email: one-month
  - wait: 1y
  - email: one-year
"#]);
    let mut list = CustomerState::default();
    // Jan 31, 10:00 in Budapest (CET).
    let placed = "2026-01-31T09:00:00Z";
    apply_event(
        &cat,
        &mut list,
        &ev("e1", "order.placed", "c1", Some("o1"), placed),
        t(placed),
    );
    let feb28 = t("2026-02-28T09:00:00Z");
    assert_eq!(list.enrollments[0].wake_at(), Some(feb28));
    assert!(wake_all(&cat, &mut list, feb28 - Duration::seconds(1)).is_empty());
    assert_eq!(wake_all(&cat, &mut list, feb28), ["one-month"]);
    assert_eq!(
        list.enrollments[0].wake_at(),
        Some(t("2027-02-28T09:00:00Z"))
    );

    // Across the spring change: Mar 20 10:00 CET, Apr 20 10:00 CEST.
    let mut list = CustomerState::default();
    let placed = "2026-03-20T09:00:00Z";
    apply_event(
        &cat,
        &mut list,
        &ev("e1", "order.placed", "c1", Some("o1"), placed),
        t(placed),
    );
    assert_eq!(
        list.enrollments[0].wake_at(),
        Some(t("2026-04-20T08:00:00Z"))
    );
}

/// `at` and `on` on `wait` and `wait_until`: T0 is Friday 11:00 in Budapest.
#[test]
fn waits_end_on_the_chosen_weekdays_at_the_chosen_time() {
    let cat = catalog(&[r#"
id: weekday
category: value
trigger: {event: order.placed}
steps:
  - wait: 1d
    at: "10:00"
    on: [mon, tue, wed, thu, fri]
  - email: weekday-morning
  - wait_until: 'order.placed_at + days(30)'
    at: "09:00"
    on: [sat]
  - email: saturday
"#]);
    let mut list = CustomerState::default();
    first_order(&cat, &mut list);
    // Saturday 11:00, then Sunday 10:00, then Monday 10:00 (CET).
    let monday = t("2026-11-23T09:00:00Z");
    assert_eq!(list.enrollments[0].wake_at(), Some(monday));
    assert_eq!(wake_all(&cat, &mut list, monday), ["weekday-morning"]);
    // Sunday Dec 20 11:00 → Monday 09:00 → Saturday Dec 26 09:00 (CET).
    let saturday = t("2026-12-26T08:00:00Z");
    assert_eq!(list.enrollments[0].wake_at(), Some(saturday));
    assert_eq!(wake_all(&cat, &mut list, saturday), ["saturday"]);
}

const REVIEW_WITHIN_A_MONTH: &str = r#"
id: review
category: value
trigger: {event: order.placed}
steps:
  - wait_for: review.submitted
    within: 1mo
    at: "10:00"
    on: [mon]
    on_timeout: [{email: nudge}]
  - email: thanks
"#;

/// `within: 1mo` with `at` and `on`: the deadline moves from Sunday
/// Dec 20 11:00 to Monday Dec 21 10:00 (Budapest), and an event before the
/// moved deadline still counts.
#[test]
fn wait_for_within_a_month_times_out_on_the_chosen_day() {
    let cat = catalog(&[REVIEW_WITHIN_A_MONTH]);
    let deadline = t("2026-12-21T09:00:00Z");
    let mut list = CustomerState::default();
    first_order(&cat, &mut list);
    assert_eq!(list.enrollments[0].wake_at(), Some(deadline));
    assert!(wake_all(&cat, &mut list, deadline - Duration::seconds(1)).is_empty());
    assert_eq!(wake_all(&cat, &mut list, deadline), ["nudge", "thanks"]);

    let mut list = CustomerState::default();
    first_order(&cat, &mut list);
    let late = "2026-12-21T08:00:00Z";
    let review = ev("e2", "review.submitted", "c1", Some("o1"), late);
    let a = apply_event(&cat, &mut list, &review, t(late));
    assert_eq!(
        templates(&a),
        ["thanks"],
        "past 1mo, before the moved deadline"
    );
}

/// `months(n)` counts in the customer's time zone, else the policies'
/// default: on Mar 1 00:30 in Bangkok the month before is February.
#[test]
fn months_in_conditions_count_in_the_policies_default_zone() {
    let seq_text = r#"
id: monthly-check
category: transactional
trigger: {event: order.placed}
steps:
  - if: 'months(1) == days(28)'
    then: [{email: february}]
    else: [{email: january}]
"#;
    let at = "2026-02-28T17:30:00Z";
    let placed = Event::parse(&format!(
        r#"{{"id":"e1","type":"order.placed","occurred_at":"{at}",
        "customer":{{"id":"c9","email":"c9@example.com"}},
        "order":{{"id":"o9","placed_at":"{at}","currency":"EUR","total":"10.00","items":[]}}}}"#
    ))
    .unwrap();
    for (zone, want) in [("Asia/Bangkok", "february"), ("UTC", "january")] {
        let (p, d) = parse_policies(
            Path::new("_policies.yaml"),
            &format!("default_timezone: {zone}\n"),
        );
        assert!(!d.has_errors(), "{d}");
        let cat = Catalog::new(vec![seq(seq_text)], p);
        let mut list = CustomerState::default();
        let a = apply_event(&cat, &mut list, &placed, t(at));
        assert_eq!(templates(&a), [want], "{zone}");
    }
}

/// A `wait_for` whose deadline `at` places keeps the deadline's day and
/// time of day when the customer moves to another time zone, and the move
/// is saved and journalled; one without `at` or `on` is a span of time and
/// stays where it was.
#[test]
fn a_wait_for_deadline_placed_by_at_follows_a_change_of_zone() {
    let placed = "id: placed\nname: Placed\ncategory: transactional\ntrigger: {event: order.placed}\n\
                  steps:\n  - wait_for: shipment.shipped\n    within: 2d\n    at: \"10:00\"\n\
                  \x20   on_timeout: [exit]\n";
    let span = "id: span\nname: Span\ncategory: transactional\ntrigger: {event: order.placed}\n\
                steps:\n  - wait_for: shipment.shipped\n    within: 2d\n    on_timeout: [exit]\n";
    let cat = catalog(&[placed, span]);
    let mut state = CustomerState::default();
    first_order(&cat, &mut state);
    let deadline = |state: &CustomerState, seq: &str| {
        let e = state
            .enrollments
            .iter()
            .find(|e| e.sequence == seq)
            .unwrap();
        e.waiting.clone()
    };
    // Friday 11:00 in Budapest; two days on is Sunday 11:00, so the first
    // 10:00 after it is Monday's.
    let monday_budapest = Waiting::Event {
        event: "shipment.shipped".into(),
        until: t("2026-11-23T09:00:00Z"),
    };
    assert_eq!(deadline(&state, "placed"), monday_budapest);
    let moved = Event::parse(
        r#"{"id":"u1","type":"customer.updated","occurred_at":"2026-11-21T00:00:00Z",
        "customer":{"id":"c1","email":"c1@example.com","timezone":"Asia/Tokyo"}}"#,
    )
    .unwrap();
    let changes = apply_event(&cat, &mut state, &moved, moved.occurred_at);
    // Monday 10:00 in Tokyo.
    assert_eq!(
        deadline(&state, "placed"),
        Waiting::Event {
            event: "shipment.shipped".into(),
            until: t("2026-11-23T01:00:00Z"),
        }
    );
    assert_eq!(
        deadline(&state, "span"),
        Waiting::Event {
            event: "shipment.shipped".into(),
            until: t("2026-11-22T10:00:00Z"),
        }
    );
    let placed_at = state
        .enrollments
        .iter()
        .position(|e| e.sequence == "placed")
        .unwrap();
    assert_eq!(
        changes.enrollments.iter().copied().collect::<Vec<_>>(),
        [placed_at],
        "only the moved enrollment is saved"
    );
    assert!(
        changes
            .journal
            .iter()
            .any(|j| j.what.kind() == "awaiting_event"),
        "{:?}",
        changes.journal
    );
}

/// The event a `wait_for` waits for, carrying a new time zone that puts the
/// placed deadline in the past, is taken in on the deadline it came under:
/// the move applies to the wait the event leaves, not before the event.
#[test]
fn the_awaited_event_that_moves_the_zone_is_taken_in_not_timed_out() {
    let placed = "id: placed\nname: Placed\ncategory: transactional\n\
                  trigger: {event: order.placed}\n\
                  steps:\n  - wait_for: shipment.shipped\n    within: 2d\n    at: \"10:00\"\n\
                  \x20   on_timeout: [{email: delayed}, exit]\n  - email: shipped\n";
    let cat = catalog(&[placed]);
    let mut state = CustomerState::default();
    first_order(&cat, &mut state);
    // Monday 05:00 UTC: before Monday 10:00 in Budapest (09:00 UTC), after
    // Monday 10:00 in Tokyo (01:00 UTC).
    let shipped = Event::parse(
        r#"{"id":"s1","type":"shipment.shipped","occurred_at":"2026-11-23T05:00:00Z",
        "customer":{"id":"c1","email":"c1@example.com","timezone":"Asia/Tokyo"},
        "order":{"id":"o1"},"shipment":{"id":"s1","carrier":"DHL","tracking_number":"JV1"}}"#,
    )
    .unwrap();
    let changes = apply_event(&cat, &mut state, &shipped, shipped.occurred_at);
    assert_eq!(templates(&changes), ["shipped"]);
    assert_eq!(state.enrollments[0].status, Status::Completed);
}
