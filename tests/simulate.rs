//! The simulation over the shipped sequences: properties that must hold for
//! any stream of events.

use std::collections::HashSet;
use std::path::Path;

use aftercare::event::Event;
use aftercare::simulate::{Until, simulate};
use aftercare::validate::{self, Loaded};
use proptest::prelude::*;

/// Loaded once: rendering every sample takes longer than a simulation.
fn shipped() -> &'static Loaded {
    static LOADED: std::sync::LazyLock<Loaded> = std::sync::LazyLock::new(|| {
        let l = validate::load(Path::new("sequences"), Path::new("templates"));
        assert!(!l.diagnostics.has_errors(), "{}", l.diagnostics);
        l
    });
    &LOADED
}

const KINDS: &[&str] = &[
    "order.placed",
    "order.cancelled",
    "order.refunded",
    "shipment.shipped",
    "shipment.delivered",
    "review.submitted",
    "customer.unsubscribed",
];

fn event(
    i: usize,
    kind: usize,
    customer: usize,
    order: usize,
    minutes: i64,
    camera: bool,
) -> Event {
    let kind = KINDS[kind];
    let at = "2026-11-01T00:00:00Z"
        .parse::<chrono::DateTime<chrono::Utc>>()
        .unwrap()
        + chrono::Duration::minutes(minutes);
    let at = at.to_rfc3339();
    let (sku, cat, rep) = if camera {
        ("CAM", "camera", "null")
    } else {
        ("COF", "coffee", "30")
    };
    let text = format!(
        r#"{{"id":"e{i}","type":"{kind}","occurred_at":"{at}",
        "customer":{{"id":"c{customer}","email":"c{customer}@example.com","locale":"hu-HU",
                    "timezone":"Europe/Budapest","marketing_consent":{consent}}},
        "order":{{"id":"o{customer}-{order}","number":"{order}","placed_at":"{at}","currency":"EUR","total":"40.00",
                 "items":[{{"sku":"{sku}","name":"x","category":"{cat}","unit_price":"40.00","replenish_every_days":{rep}}}]}},
        "shipment":{{"id":"s{order}","carrier":"DHL","tracking_number":"T{order}","tracking_url":"https://t.example/{order}"}},
        "review":{{"rating":5}}}}"#,
        consent = !customer.is_multiple_of(3),
    );
    Event::parse(&text).unwrap()
}

fn stream() -> impl Strategy<Value = Vec<Event>> {
    prop::collection::vec(
        (
            0..KINDS.len(),
            0usize..4,
            0usize..3,
            0i64..(60 * 24 * 30),
            prop::bool::ANY,
        ),
        1..40,
    )
    .prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (k, c, o, m, cam))| event(i, k, c, o, m, cam))
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Whatever arrives, in whatever order and however often, no email is
    /// sent twice: every idempotency key and every (enrollment, step) is unique.
    #[test]
    fn no_idempotency_key_twice(events in stream(), replay in prop::bool::ANY) {
        let l = shipped();
        let mut events = events;
        if replay {
            // Every event delivered twice, as Kafka may after a crash.
            let again = events.clone();
            events.extend(again);
        }
        let w = simulate(&l.catalog, &l.templates, events, Until::Drained);
        let mut keys = HashSet::new();
        for d in &w.delivered {
            prop_assert!(keys.insert(d.idempotency_key.clone()), "twice: {}", d.idempotency_key);
        }
        prop_assert_eq!(w.pending, 0, "every wait is bounded, so the clock drains");
    }

    /// The same events give the same output, line for line.
    #[test]
    fn simulation_is_deterministic(events in stream()) {
        let l = shipped();
        let run = |evs: Vec<Event>| {
            let w = simulate(&l.catalog, &l.templates, evs, Until::Drained);
            w.sorted_delivered()
                .iter()
                .map(|d| serde_json::to_string(&d.line).unwrap())
                .collect::<Vec<_>>()
        };
        let a = run(events.clone());
        prop_assert!(!a.is_empty() || events.iter().all(|e| e.kind != "order.placed"));
        prop_assert_eq!(&a, &run(events));
    }
}

#[test]
fn transactional_mail_is_never_held_back() {
    let l = shipped();
    // Placed at 23:30 local time, no consent: the confirmation still goes at once.
    let mut e = event(1, 0, 0, 0, 0, true);
    e.occurred_at = "2026-11-20T22:30:00Z".parse().unwrap();
    let w = simulate(
        &l.catalog,
        &l.templates,
        vec![e],
        Until::At("2026-11-21T00:00:00Z".parse().unwrap()),
    );
    let first = &w.sorted_delivered()[0].line;
    assert_eq!(first.template, "order-confirmation");
    assert_eq!(first.at, "2026-11-20T22:30:00Z");
    assert_eq!(first.locale, "hu");
}

/// `simulate` runs customers in shards on threads; the merged output is in
/// the documented order, has each email once, and is the same every time.
#[test]
fn sharded_runs_merge_in_order_and_repeat_exactly() {
    use aftercare::simulate::{self, Simulation, run_sharded, shard_of};
    let l = shipped();
    let mut events: Vec<Event> = (0..300)
        .map(|i| {
            event(
                i,
                i % KINDS.len(),
                i % 17,
                i % 3,
                (i as i64) * 37,
                i % 2 == 0,
            )
        })
        .collect();
    events.sort_by_key(|e| e.occurred_at);
    let run = || {
        let mut shards: Vec<Vec<Event>> = vec![Vec::new(); simulate::SHARDS];
        for e in &events {
            shards[shard_of(&e.customer.id, simulate::SHARDS)].push(e.clone());
        }
        let streams: Vec<_> = shards.into_iter().map(Vec::into_iter).collect();
        let mut sim = Simulation::default();
        let totals = run_sharded(&l.catalog, &l.templates, streams, Until::Drained, &mut sim);
        (totals, sim)
    };
    let (totals, a) = run();
    assert_eq!(totals.events + totals.duplicates, events.len());
    assert_eq!(totals.pending, 0);
    assert!(!a.delivered.is_empty());
    let order: Vec<_> = a
        .delivered
        .iter()
        .map(|d| {
            (
                d.at,
                d.line.customer_id.clone(),
                d.line.sequence.clone(),
                d.line.step.clone(),
            )
        })
        .collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(
        order, sorted,
        "merged in (time, customer, sequence, step) order"
    );
    let keys: HashSet<&str> = a
        .delivered
        .iter()
        .map(|d| d.idempotency_key.as_str())
        .collect();
    assert_eq!(keys.len(), a.delivered.len(), "no email twice");
    let (_, b) = run();
    let lines = |s: &Simulation| {
        s.delivered
            .iter()
            .map(|d| serde_json::to_string(&d.line).unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(lines(&a), lines(&b));
}

/// Issue 7, reproduction 1: the order whose `replenish_every_days` puts the
/// reorder reminder past every date. `simulate` (the same code as `run`)
/// goes on: the order confirmation is sent, the reorder enrollment ends with
/// its reason noted, and later events still run.
#[test]
fn a_huge_replenish_interval_costs_only_its_enrollment() {
    let l = shipped();
    let mut huge = event(1, 0, 1, 0, 0, false);
    // Set past any check at the boundary: the engine must hold on its own.
    huge.order.as_mut().unwrap().items[0].replenish_every_days = Some(100_000_000);
    let after = event(2, 0, 2, 0, 60, false);
    let w = simulate(&l.catalog, &l.templates, vec![huge, after], Until::Drained);
    let notes: Vec<String> = w
        .notes
        .iter()
        .filter(|(_, n)| n.sequence == "reorder")
        .map(|(_, n)| n.message.clone())
        .collect();
    assert!(
        notes
            .iter()
            .any(|m| m.contains("wait_until") && m.contains("out of range")),
        "{notes:?}"
    );
    let sent = |c: &str, t: &str| {
        w.delivered
            .iter()
            .any(|d| d.line.customer_id == c && d.line.template == t)
    };
    assert!(sent("c1", "order-confirmation"));
    assert!(!sent("c1", "reorder-reminder"));
    assert!(sent("c2", "order-confirmation"));
    assert!(
        sent("c2", "reorder-reminder"),
        "the next customer's reorder still runs"
    );
    assert_eq!(w.pending, 0);
}

/// Issue 7, reproduction 4: a promo share window and a frequency cap too long
/// for the calendar (as if validation had been skipped) do not stop the
/// sender: every email is decided, none panics.
#[test]
fn policy_windows_past_the_calendar_do_not_panic() {
    use aftercare::sequence::model::{FrequencyCap, PromoShare};
    let l = shipped();
    let mut catalog = (*l.catalog).clone();
    let huge = chrono::TimeDelta::weeks(15_000_000);
    catalog.policies.promo_share = Some(PromoShare {
        max_percent: 20,
        window: huge,
    });
    catalog.policies.frequency_cap = Some(FrequencyCap { max: 1, per: huge });
    let catalog = std::sync::Arc::new(catalog);
    // A coffee order (a reorder reminder, then a last call a week later)
    // and a camera order (education and a promo) from customers with consent.
    let coffee = event(1, 0, 1, 0, 0, false);
    let camera = event(2, 0, 2, 0, 0, true);
    let delivered = event(3, 4, 2, 0, 60 * 24 * 3, true);
    let w = simulate(
        &catalog,
        &l.templates,
        vec![coffee, camera, delivered],
        Until::Drained,
    );
    assert_eq!(w.pending, 0);
    let sent = |c: &str, t: &str| {
        w.delivered
            .iter()
            .any(|d| d.line.customer_id == c && d.line.template == t)
    };
    assert!(
        sent("c1", "reorder-reminder"),
        "the first marketing email goes"
    );
    assert!(!sent("c1", "reorder-last-call"));
    // The cap's window never ends within the calendar: the second marketing
    // email is skipped with the reason.
    assert!(
        w.skipped
            .iter()
            .any(|s| s.reason.contains("before the year 9999")),
        "{:?}",
        w.skipped.iter().map(|s| &s.reason).collect::<Vec<_>>()
    );
}

/// Issue 11: date and schedule triggers fire at their virtual times, each in
/// the customer's own time zone: a schedule with `timezone: customer` at
/// 09:00 where each customer lives, a first-order anniversary a year on at
/// 10:00 local (not on the day of the order), a birthday only with consent.
#[test]
fn time_driven_triggers_fire_at_local_times() {
    let dir = tempfile::tempdir().unwrap();
    let seq = dir.path();
    std::fs::copy("sequences/_policies.yaml", seq.join("_policies.yaml")).unwrap();
    let write = |name: &str, text: &str| std::fs::write(seq.join(name), text).unwrap();
    write(
        "lapsed.yaml",
        "id: lapsed\nname: L\ncategory: transactional\n\
         trigger: {schedule: \"0 9 * * *\", timezone: customer, \
         when: 'now - customer.last_order_at > days(30)'}\n\
         steps:\n  - email: order-delivered\n",
    );
    write(
        "anniversary.yaml",
        "id: anniversary\nname: A\ncategory: transactional\n\
         trigger: {date: customer.first_order_at, at: \"10:00\"}\n\
         steps:\n  - email: order-confirmation\n",
    );
    write(
        "birthday.yaml",
        "id: birthday\nname: B\ncategory: transactional\n\
         trigger: {date: customer.attributes.birthday, at: \"08:00\", \
         when: 'customer.marketing_consent'}\n\
         steps:\n  - email: order-shipped\n",
    );
    let loaded = validate::load(seq, Path::new("templates"));
    assert!(!loaded.diagnostics.has_errors(), "{}", loaded.diagnostics);
    let order = |id: &str, c: &str, tz: &str, consent: bool| {
        Event::parse(&format!(
            r#"{{"id":"{id}","type":"order.placed","occurred_at":"2026-03-01T12:00:00Z",
               "customer":{{"id":"{c}","email":"{c}@example.com","timezone":"{tz}",
               "marketing_consent":{consent},"attributes":{{"birthday":"1990-06-15"}}}},
               "order":{{"id":"o-{c}","placed_at":"2026-03-01T12:00:00Z"}}}}"#
        ))
        .unwrap()
    };
    let events = vec![
        order("e1", "bkk", "Asia/Bangkok", true),
        order("e2", "nyc", "America/New_York", false),
    ];
    let until = "2027-04-01T00:00:00Z".parse().unwrap();
    let sim = simulate(&loaded.catalog, &loaded.templates, events, Until::At(until));
    let sent: Vec<(String, String, String)> = sim
        .delivered
        .iter()
        .map(|d| {
            (
                d.line.at.clone(),
                d.line.customer_id.clone(),
                d.line.sequence.clone(),
            )
        })
        .collect();
    let want = |at: &str, c: &str, s: &str| (at.to_string(), c.to_string(), s.to_string());
    assert_eq!(
        sent,
        vec![
            // 30 days after 1 March: the first 09:00 local after 31 March
            // 12:00 UTC (New York's is an hour later, Bangkok's the next day).
            want("2026-03-31T13:00:00Z", "nyc", "lapsed"),
            want("2026-04-01T02:00:00Z", "bkk", "lapsed"),
            want("2026-06-15T01:00:00Z", "bkk", "birthday"),
            want("2027-03-01T03:00:00Z", "bkk", "anniversary"),
            want("2027-03-01T15:00:00Z", "nyc", "anniversary"),
        ],
        "{sent:#?}"
    );
}

/// The shipped policies and templates with one sequence, written as `yaml`.
fn with_sequence(yaml: &str) -> Loaded {
    let dir = tempfile::tempdir().unwrap();
    let seq = dir.path();
    std::fs::copy("sequences/_policies.yaml", seq.join("_policies.yaml")).unwrap();
    std::fs::write(seq.join("sequence.yaml"), yaml).unwrap();
    let loaded = validate::load(seq, Path::new("templates"));
    assert!(!loaded.diagnostics.has_errors(), "{}", loaded.diagnostics);
    loaded
}

/// When and to whom each email went, simulating `events` until `until`:
/// `at customer` lines.
fn sent_until(loaded: &Loaded, events: Vec<Event>, until: &str) -> Vec<String> {
    let until = until.parse().unwrap();
    simulate(&loaded.catalog, &loaded.templates, events, Until::At(until))
        .delivered
        .into_iter()
        .map(|d| format!("{} {}", d.line.at, d.line.customer_id))
        .collect()
}

/// A `customer.updated` at `at` for customer `c`, who consents to marketing,
/// in time zone `tz`; `extra`: more of the customer's fields (`,"key":…`).
fn customer_updated(id: &str, at: &str, c: &str, tz: &str, extra: &str) -> Event {
    Event::parse(&format!(
        r#"{{"id":"{id}","type":"customer.updated","occurred_at":"{at}",
           "customer":{{"id":"{c}","email":"{c}@example.com","timezone":"{tz}",
           "marketing_consent":true{extra}}}}}"#
    ))
    .unwrap()
}

/// A birthday still to come that a change of time zone moves into the past
/// fires at once, not a year later: 09:00 in Los Angeles on 15 June is 16:00
/// UTC, and the customer moves to Tokyo at 10:00 UTC, when 09:00 there has
/// passed. A move the other way only delays it; a birthday corrected to a
/// day already gone waits for the next year, as before.
#[test]
fn a_birthday_a_new_time_zone_puts_in_the_past_fires_at_once() {
    let loaded = with_sequence(
        "id: birthday\nname: B\ncategory: transactional\n\
         trigger: {date: customer.attributes.birthday, at: \"09:00\"}\n\
         steps:\n  - email: order-shipped\n",
    );
    let event = |id: &str, at: &str, c: &str, tz: &str, birthday: &str| {
        customer_updated(
            id,
            at,
            c,
            tz,
            &format!(r#","attributes":{{"birthday":"{birthday}"}}"#),
        )
    };
    let (march, moved) = ("2026-03-01T12:00:00Z", "2026-06-15T10:00:00Z");
    let (la, tokyo, birthday) = ("America/Los_Angeles", "Asia/Tokyo", "1990-06-15");
    let events = vec![
        event("e1", march, "west", la, birthday),
        event("e2", march, "east", tokyo, birthday),
        event("e3", march, "fixed", la, birthday),
        event("e4", moved, "west", tokyo, birthday),
        event("e5", "2026-06-14T12:00:00Z", "east", la, birthday),
        event("e6", moved, "fixed", la, "1990-06-13"),
    ];
    let sent = sent_until(&loaded, events, "2027-07-01T00:00:00Z");
    assert_eq!(
        sent,
        vec![
            // Tokyo's 09:00 had passed when the move came: at once.
            "2026-06-15T10:00:00Z west",
            // Moved to Los Angeles the day before: its 09:00, later.
            "2026-06-15T16:00:00Z east",
            // Corrected to 13 June on the 15th: next year's.
            "2027-06-13T16:00:00Z fixed",
            "2027-06-15T00:00:00Z west",
            "2027-06-15T16:00:00Z east",
        ],
        "{sent:#?}"
    );
}

/// A schedule in each customer's own time zone keeps its place among the
/// cron's wall-clock times when the zone changes: 09:00 on 15 June that a
/// move to Tokyo has already passed fires at once, and a customer whose
/// 09:00 fired in Tokyo does not get that day's again after moving to Los
/// Angeles, where 09:00 is still to come.
#[test]
fn a_schedule_keeps_its_wall_clock_place_across_a_change_of_zone() {
    let loaded = with_sequence(
        "id: midsummer\nname: M\ncategory: transactional\n\
         trigger: {schedule: \"0 9 15 6 *\", timezone: customer}\n\
         enroll: every_event\n\
         steps:\n  - email: order-shipped\n",
    );
    let event = |id: &str, at: &str, c: &str, tz: &str| customer_updated(id, at, c, tz, "");
    let moved = "2026-06-15T10:00:00Z";
    let events = vec![
        event("e1", "2026-03-01T12:00:00Z", "west", "America/Los_Angeles"),
        event("e2", "2026-03-01T12:00:00Z", "east", "Asia/Tokyo"),
        event("e3", moved, "west", "Asia/Tokyo"),
        event("e4", moved, "east", "America/Los_Angeles"),
    ];
    let sent = sent_until(&loaded, events, "2027-07-01T00:00:00Z");
    assert_eq!(
        sent,
        vec![
            // 09:00 in Tokyo.
            "2026-06-15T00:00:00Z east",
            // Tokyo's 09:00 had passed when the move came: at once.
            "2026-06-15T10:00:00Z west",
            // A year on, each in their new zone.
            "2027-06-15T00:00:00Z west",
            "2027-06-15T16:00:00Z east",
        ],
        "{sent:#?}"
    );
}

/// A wait placed by `at` keeps its day and time of day when the customer's
/// time zone changes while it runs: 10:00 on Wednesday in Los Angeles
/// becomes 10:00 on Wednesday in Tokyo (earlier), or at once where Tokyo's
/// 10:00 has passed by the move; 10:00 in Tokyo becomes 10:00 in Los Angeles
/// (later). A wait without `at` or `on` is a span of time and stays.
#[test]
fn a_wait_at_a_time_of_day_follows_a_change_of_zone() {
    let loaded = with_sequence(
        "id: nudge\nname: Nudge\ncategory: transactional\n\
         trigger: {event: order.placed}\n\
         enroll: once_per_customer\n\
         steps:\n  - wait: 2d\n    at: \"10:00\"\n  - email: order-shipped\n\
         \x20 - wait: 3d\n  - email: order-shipped\n",
    );
    let moved = |id: &str, at: &str, c: &str, tz: &str| customer_updated(id, at, c, tz, "");
    let (la, tokyo) = ("America/Los_Angeles", "Asia/Tokyo");
    // The first wait ends on Wednesday 2026-06-17 at 10:00 local.
    let events = vec![
        // 08:00 on Monday in each zone.
        order_in("o1", "early", la, "2026-06-15T15:00:00Z"),
        order_in("o2", "late", la, "2026-06-15T15:00:00Z"),
        order_in("o3", "west", tokyo, "2026-06-14T23:00:00Z"),
        // Before Wednesday 10:00 in Tokyo (01:00 UTC).
        moved("m1", "2026-06-16T12:00:00Z", "early", tokyo),
        // After it (Wednesday 02:00 UTC), before 10:00 in Los Angeles.
        moved("m2", "2026-06-17T02:00:00Z", "late", tokyo),
        moved("m3", "2026-06-16T12:00:00Z", "west", la),
    ];
    let sent = sent_until(&loaded, events, "2026-07-01T00:00:00Z");
    assert_eq!(
        sent,
        vec![
            // Wednesday 10:00 in Tokyo.
            "2026-06-17T01:00:00Z early",
            // Tokyo's Wednesday 10:00 had passed when the move came: at once.
            "2026-06-17T02:00:00Z late",
            // Wednesday 10:00 in Los Angeles, no longer Tokyo's.
            "2026-06-17T17:00:00Z west",
            // Three days (72 hours) after each.
            "2026-06-20T01:00:00Z early",
            "2026-06-20T02:00:00Z late",
            "2026-06-20T17:00:00Z west",
        ],
        "{sent:#?}"
    );
}

/// An order placed by a customer in `tz` at `at`, with everything the
/// shipped templates read.
fn order_in(id: &str, customer: &str, tz: &str, at: &str) -> Event {
    Event::parse(&format!(
        r#"{{"id":"{id}","type":"order.placed","occurred_at":"{at}",
        "customer":{{"id":"{customer}","email":"{customer}@example.com","locale":"en",
                    "timezone":"{tz}","marketing_consent":true}},
        "order":{{"id":"o-{customer}","number":"1","placed_at":"{at}","currency":"EUR","total":"40.00",
                 "items":[{{"sku":"COF","name":"x","category":"coffee","unit_price":"40.00"}}]}},
        "shipment":{{"id":"s1","carrier":"DHL","tracking_number":"T1","tracking_url":"https://t.example/1"}}}}"#
    ))
    .unwrap()
}

/// Issue 11, through `simulate` (the same code as `run`): a `wait: 1mo`
/// ends at the same local time a calendar month later, clamped to the end
/// of February, and a `wait` with `at` and `on` ends on the chosen weekday
/// at the chosen local time, across New York's spring change; a customer
/// in Bangkok counts months by the local calendar, not UTC's.
#[test]
fn calendar_waits_and_weekdays_fire_at_local_times() {
    let l = shipped();
    let (seq, d) = aftercare::sequence::load::parse_sequence(
        Path::new("calendar.yaml"),
        r#"
id: calendar
category: transactional
trigger: {event: order.placed}
steps:
  - wait: 1mo
  - email: order-confirmation
  - wait: 1w
    at: "09:00"
    on: [mon]
  - email: order-shipped
"#,
    );
    assert!(!d.has_errors(), "{d}");
    let catalog = std::sync::Arc::new(aftercare::sequence::model::Catalog::new(
        vec![seq.unwrap()],
        l.catalog.policies.clone(),
    ));
    let events = vec![
        // Saturday Jan 31, 10:00 EST.
        order_in("e1", "ny", "America/New_York", "2026-01-31T15:00:00Z"),
        // Saturday Jan 31, 00:30 in Bangkok (still Jan 30 in UTC).
        order_in("e2", "bkk", "Asia/Bangkok", "2026-01-30T17:30:00Z"),
    ];
    let w = simulate(&catalog, &l.templates, events, Until::Drained);
    assert_eq!(w.pending, 0);
    let sent: Vec<(String, String, String)> = w
        .sorted_delivered()
        .iter()
        .map(|d| {
            let l = &d.line;
            (l.customer_id.clone(), l.template.clone(), l.at.clone())
        })
        .collect();
    let want = [
        // Feb 28 00:30 in Bangkok (a UTC month would end on Mar 1 local).
        ("bkk", "order-confirmation", "2026-02-27T17:30:00Z"),
        // Feb 28 10:00 EST.
        ("ny", "order-confirmation", "2026-02-28T15:00:00Z"),
        // Saturday Mar 7 00:30, at 09:00 that day, then Monday 09:00 local.
        ("bkk", "order-shipped", "2026-03-09T02:00:00Z"),
        // Saturday Mar 7 10:00 EST, Sunday 09:00 (EDT since 02:00), then
        // Monday 09:00 EDT.
        ("ny", "order-shipped", "2026-03-09T13:00:00Z"),
    ];
    let want: Vec<(String, String, String)> = want
        .iter()
        .map(|(c, t, a)| (c.to_string(), t.to_string(), a.to_string()))
        .collect();
    assert_eq!(sent, want);
}

/// Issue 11: over the shipped retention examples and a year, each of the
/// shipped retention sequences sends, in English and in Hungarian.
#[test]
fn the_retention_examples_fire_every_retention_sequence() {
    let text = std::fs::read_to_string("examples/retention-events.jsonl").unwrap();
    let (events, bad) = aftercare::simulate::parse_events(&text);
    assert!(bad.is_empty(), "{bad:?}");
    let last = events.iter().map(|e| e.occurred_at).max().unwrap();
    let l = shipped();
    let sim = simulate(
        &l.catalog,
        &l.templates,
        events,
        Until::At(last + chrono::Duration::days(400)),
    );
    for seq in [
        "win-back",
        "first-order-anniversary",
        "birthday",
        "feedback-survey",
        "seasonal-winter-boots",
    ] {
        for locale in ["en", "hu"] {
            assert!(
                sim.delivered
                    .iter()
                    .any(|d| d.line.sequence == seq && d.line.locale == locale),
                "{seq} sent nothing in {locale}"
            );
        }
    }
    // The birthday goes only with consent: c_eszter gave none.
    assert!(
        !sim.delivered
            .iter()
            .any(|d| d.line.sequence == "birthday" && d.line.customer_id == "c_eszter")
    );
    assert!(
        sim.delivered
            .iter()
            .any(|d| d.line.sequence == "birthday" && d.line.customer_id == "c_zsofia")
    );
}
