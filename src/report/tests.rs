use super::*;
use crate::store::ActivityKind;

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn touch(customer: &str, at: &str, kind: ActivityKind, machine: bool, step: &str) -> Touch {
    Touch {
        customer_id: customer.into(),
        at: t(at),
        kind,
        machine,
        sequence: "seq".into(),
        step: step.into(),
        template: step.into(),
    }
}

fn order(id: &str, customer: &str, at: &str, total: &str, currency: &str) -> PlacedOrder {
    PlacedOrder {
        event_id: format!("e-{id}-{at}"),
        customer_id: customer.into(),
        order_id: id.into(),
        at: t(at),
        total: Some(total.parse().unwrap()),
        currency: Some(currency.into()),
        repeat: true,
    }
}

const OPEN: ActivityKind = ActivityKind::Open;
const CLICK: ActivityKind = ActivityKind::Click;

fn steps_of(a: &[Attributed<'_>]) -> Vec<(String, String)> {
    a.iter()
        .map(|a| (a.order.order_id.clone(), a.touch.step.clone()))
        .collect()
}

#[test]
fn an_order_after_two_touches_goes_to_the_last() {
    let touches = [
        touch("c", "2026-01-01T10:00:00Z", CLICK, false, "first"),
        touch("c", "2026-01-02T10:00:00Z", OPEN, false, "second"),
    ];
    let orders = [order("o1", "c", "2026-01-03T10:00:00Z", "10", "EUR")];
    let a = attribute(&orders, &touches, DEFAULT_WINDOW);
    assert_eq!(steps_of(&a), [("o1".into(), "second".into())]);
}

#[test]
fn a_touch_after_the_order_does_not_count() {
    let touches = [
        touch("c", "2026-01-01T10:00:00Z", OPEN, false, "before"),
        touch("c", "2026-01-03T10:00:01Z", CLICK, false, "after"),
    ];
    let orders = [order("o1", "c", "2026-01-03T10:00:00Z", "10", "EUR")];
    let a = attribute(&orders, &touches, DEFAULT_WINDOW);
    assert_eq!(steps_of(&a), [("o1".into(), "before".into())]);
    // With only the later touch, nobody brought it.
    let a = attribute(&orders, &touches[1..], DEFAULT_WINDOW);
    assert!(a.is_empty());
}

#[test]
fn an_order_outside_the_window_does_not_count() {
    let touches = [touch("c", "2026-01-01T10:00:00Z", CLICK, false, "s")];
    // Exactly 5 days after: in; a second later: out.
    let edge = [order("o1", "c", "2026-01-06T10:00:00Z", "10", "EUR")];
    assert_eq!(attribute(&edge, &touches, DEFAULT_WINDOW).len(), 1);
    let late = [order("o1", "c", "2026-01-06T10:00:01Z", "10", "EUR")];
    assert!(attribute(&late, &touches, DEFAULT_WINDOW).is_empty());
    // A window of its own.
    assert_eq!(attribute(&late, &touches, TimeDelta::days(6)).len(), 1);
    // At the very instant of the touch: in.
    let same = [order("o1", "c", "2026-01-01T10:00:00Z", "10", "EUR")];
    assert_eq!(attribute(&same, &touches, DEFAULT_WINDOW).len(), 1);
}

#[test]
fn machine_opens_do_not_count() {
    let touches = [
        touch("c", "2026-01-01T10:00:00Z", OPEN, false, "person"),
        touch("c", "2026-01-02T10:00:00Z", OPEN, true, "proxy"),
        touch("c", "2026-01-02T11:00:00Z", CLICK, true, "scanner"),
    ];
    let orders = [order("o1", "c", "2026-01-03T10:00:00Z", "10", "EUR")];
    let a = attribute(&orders, &touches, DEFAULT_WINDOW);
    assert_eq!(steps_of(&a), [("o1".into(), "person".into())]);
    // Machine touches alone bring nothing.
    assert!(attribute(&orders, &touches[1..], DEFAULT_WINDOW).is_empty());
}

#[test]
fn touches_are_the_customers_own() {
    let touches = [touch("other", "2026-01-01T10:00:00Z", CLICK, false, "s")];
    let orders = [order("o1", "c", "2026-01-02T10:00:00Z", "10", "EUR")];
    assert!(attribute(&orders, &touches, DEFAULT_WINDOW).is_empty());
}

#[test]
fn one_order_placed_twice_counts_once() {
    let touches = [touch("c", "2026-01-01T10:00:00Z", CLICK, false, "s")];
    let orders = [
        order("o1", "c", "2026-01-02T10:00:00Z", "10", "EUR"),
        order("o1", "c", "2026-01-02T10:05:00Z", "10", "EUR"),
        order("o2", "c", "2026-01-02T11:00:00Z", "5", "EUR"),
    ];
    let a = attribute(&orders, &touches, DEFAULT_WINDOW);
    assert_eq!(a.len(), 2);
    let c = conversions(&a);
    let s = &c[&("seq".to_string(), "s".to_string())];
    assert_eq!(s.orders, 2);
    assert_eq!(s.revenue["EUR"], "15".parse::<Decimal>().unwrap());
}

#[test]
fn revenue_is_kept_per_currency() {
    let touches = [
        touch("a", "2026-01-01T10:00:00Z", CLICK, false, "s"),
        touch("b", "2026-01-01T10:00:00Z", OPEN, false, "s"),
    ];
    let mut first = order("o2", "b", "2026-01-02T10:00:00Z", "12990", "HUF");
    first.repeat = false;
    let orders = [
        order("o1", "a", "2026-01-02T10:00:00Z", "129.90", "EUR"),
        first,
        order("o3", "a", "2026-01-02T12:00:00Z", "0.10", "EUR"),
    ];
    let c = conversions(&attribute(&orders, &touches, DEFAULT_WINDOW));
    let s = &c[&("seq".to_string(), "s".to_string())];
    assert_eq!(s.orders, 3);
    assert_eq!(s.repeat, 2, "the first order of b is not a repeat order");
    assert_eq!(revenue_text(&s.revenue), "12990 HUF + 130 EUR");
    assert_eq!(revenue_text(&Revenue::new()), "—");
    let mut none = order("o4", "a", "2026-01-02T12:00:00Z", "1", "EUR");
    none.currency = None;
    let mut r = Conversions::default();
    r.add(&none);
    assert_eq!(revenue_text(&r.revenue), "1 (no currency)");
}

#[test]
fn rates_without_a_whole_are_a_dash() {
    assert_eq!(rate(1, 0), None);
    assert_eq!(percent(rate(0, 0)), "—");
    assert_eq!(percent(rate(1, 8)), "12.5%");
    assert_eq!(percent(Some(f64::NAN)), "—");
    let f = StepFunnel::default();
    let r = f.rates();
    assert_eq!(
        (r.emailed, r.opened, r.clicked, r.converted),
        (None, None, None, None)
    );
    let f = StepFunnel {
        entered: 10,
        emailed: 8,
        opened: 4,
        clicked: 1,
        converted: Conversions {
            orders: 2,
            ..Conversions::default()
        },
        ..StepFunnel::default()
    };
    let r = f.rates();
    assert_eq!(percent(r.emailed), "80.0%");
    assert_eq!(percent(r.opened), "50.0%");
    assert_eq!(percent(r.clicked), "25.0%");
    assert_eq!(percent(r.converted), "25.0%");
}

#[test]
fn retention_as_the_articles_define_it() {
    // 200 customers at the start, 230 at the end of which 50 are new:
    // (230 − 50) ÷ 200 = 90%.
    let r = Retention {
        at_start: 200,
        at_end: 230,
        new: 50,
    };
    assert_eq!(percent(r.rate()), "90.0%");
    // No customers at the start: no rate, not NaN nor infinity.
    let r = Retention {
        at_start: 0,
        at_end: 5,
        new: 5,
    };
    assert_eq!(r.rate(), None);
    assert_eq!(percent(r.rate()), "—");
    let p = Period::Month.span(t("2026-03-31T00:00:00Z"));
    let (start, end) = Retention::spans(p);
    assert_eq!(start.until, p.since);
    assert_eq!(end.until, p.until);
    assert_eq!(start.until - start.since, ACTIVE_WINDOW);
    assert_eq!(end.until - end.since, ACTIVE_WINDOW);
}

#[test]
fn repeat_rate_counts_customers_not_orders() {
    let c = PeriodCustomers {
        ordered: 4,
        new: 1,
        repeat: 1,
    };
    assert_eq!(percent(repeat_rate(&c)), "25.0%");
    assert_eq!(repeat_rate(&PeriodCustomers::default()), None);
}

#[test]
fn periods_and_buckets() {
    assert_eq!(Period::parse("30d"), Some(Period::Month));
    assert_eq!(Period::parse("31d"), None);
    let now = t("2026-03-10T12:34:56Z");
    let week = Period::Week.span(now);
    let starts = bucket_starts(week, Period::Week.bucket());
    // 7 × 24 hours, the first the hour the span begins in.
    assert_eq!(starts.len(), 7 * 24 + 1);
    assert_eq!(starts[0], t("2026-03-03T12:00:00Z"));
    assert_eq!(*starts.last().unwrap(), t("2026-03-10T12:00:00Z"));
    let month = bucket_starts(Period::Month.span(now), Period::Month.bucket());
    assert_eq!(month.len(), 31);
    assert_eq!(month[0], t("2026-02-08T00:00:00Z"));
}

#[test]
fn the_series_has_every_bucket() {
    let now = t("2026-03-10T12:34:56Z");
    let span = Period::Month.span(now);
    let deliveries = [
        SeriesPoint {
            at: t("2026-03-09T00:00:00Z"),
            key: Outcome::Sent,
            count: 3,
        },
        SeriesPoint {
            at: t("2026-03-09T00:00:00Z"),
            key: Outcome::Retry,
            count: 1,
        },
        SeriesPoint {
            at: t("2026-03-09T00:00:00Z"),
            key: Outcome::Deferred,
            count: 2,
        },
    ];
    let bounces = [SeriesPoint {
        at: t("2026-03-10T00:00:00Z"),
        key: (),
        count: 1,
    }];
    let s = outcome_series(&deliveries, &bounces, span, Bucket::Day);
    assert_eq!(s.at.len(), 31);
    assert!(s.lines.iter().all(|l| l.values.len() == 31));
    let names: Vec<&str> = s.lines.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, SERIES_LINES);
    assert_eq!(s.total("sent"), 3);
    assert_eq!(s.total("deferred"), 3, "retries are drawn as deferred");
    assert_eq!(s.total("bounced"), 1);
    assert_eq!(s.lines[0].values[29], 3);
    assert_eq!(s.lines[4].values[30], 1);
    assert!(s.any());
    assert!(!outcome_series(&[], &[], span, Bucket::Day).any());
}

fn counts(
    seq: &str,
    step: &str,
    entered: i64,
    emailed: i64,
    opened: i64,
    clicked: i64,
) -> StepCounts {
    StepCounts {
        sequence: seq.into(),
        step: step.into(),
        template: step.into(),
        entered,
        emailed,
        opened,
        clicked,
    }
}

#[test]
fn funnels_follow_the_file_and_keep_what_is_gone() {
    let yaml = "id: flow\nname: A flow\ncategory: value\ntrigger: {event: order.placed}\nsteps:\n  \
        - email: first\n  \
        - id: await\n    wait_for: shipment.shipped\n    within: 3d\n    on_timeout:\n      - email: late\n  \
        - email: last\n";
    let (seq, diags) =
        crate::sequence::load::parse_sequence(std::path::Path::new("flow.yaml"), yaml);
    assert!(!diags.has_errors(), "{diags}");
    let quiet = "id: quiet\nname: Quiet\ncategory: value\ntrigger: {event: order.placed}\nsteps:\n  - email: hello\n";
    let (quiet, _) = crate::sequence::load::parse_sequence(std::path::Path::new("q.yaml"), quiet);
    let catalog = Catalog::new(vec![seq.unwrap(), quiet.unwrap()], Default::default());
    assert_eq!(
        email_steps(&catalog.sequences["flow"]),
        [
            ("first".to_string(), "first".to_string()),
            ("await/timeout/late".to_string(), "late".to_string()),
            ("last".to_string(), "last".to_string()),
        ]
    );
    let rows = [
        counts("flow", "last", 4, 4, 2, 1),
        counts("flow", "first", 10, 9, 5, 2),
        counts("flow", "removed", 1, 1, 0, 0),
        counts("gone", "x", 2, 2, 1, 1),
    ];
    let mut converted = BTreeMap::new();
    converted.insert(
        ("flow".to_string(), "first".to_string()),
        Conversions {
            orders: 3,
            repeat: 2,
            revenue: [("EUR".to_string(), Decimal::from(30))].into(),
        },
    );
    converted.insert(
        ("flow".to_string(), "last".to_string()),
        Conversions {
            orders: 1,
            repeat: 1,
            revenue: [("HUF".to_string(), Decimal::from(5000))].into(),
        },
    );
    let f = funnels(&catalog, &rows, &converted);
    let names: Vec<&str> = f.iter().map(|f| f.sequence.as_str()).collect();
    assert_eq!(
        names,
        ["flow", "gone"],
        "a sequence with nothing is left out"
    );
    let steps: Vec<&str> = f[0].steps.iter().map(|s| s.step.as_str()).collect();
    assert_eq!(steps, ["first", "await/timeout/late", "last", "removed"]);
    let first = &f[0].steps[0];
    assert_eq!(
        (
            first.entered,
            first.emailed,
            first.opened,
            first.clicked,
            first.converted.orders
        ),
        (10, 9, 5, 2, 3)
    );
    assert_eq!(f[0].steps[1].entered, 0, "a step with nothing shows zeros");
    let total = f[0].converted();
    assert_eq!((total.orders, total.repeat), (4, 3));
    assert_eq!(revenue_text(&total.revenue), "5000 HUF + 30 EUR");
    assert_eq!(f[1].name, "gone");
}
