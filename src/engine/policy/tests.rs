use super::*;
use crate::sequence::model::{FrequencyCap, PromoShare};
use chrono::TimeDelta;
use chrono_tz::{America::New_York, Europe::Budapest};
use proptest::prelude::*;

fn utc(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn hm(h: u32, m: u32) -> NaiveTime {
    NaiveTime::from_hms_opt(h, m, 0).unwrap()
}

fn policies() -> Policies {
    Policies {
        quiet_hours: Some(QuietHours {
            start: hm(21, 0),
            end: hm(8, 0),
        }),
        frequency_cap: Some(FrequencyCap {
            max: 1,
            per: TimeDelta::hours(16),
        }),
        promo_share: Some(PromoShare {
            max_percent: 20,
            window: TimeDelta::days(30),
        }),
        sunset_after_unopened: Some(8),
        ..Policies::default()
    }
}

fn to(tz: Tz) -> Recipient {
    Recipient {
        marketing_consent: true,
        promo_unsubscribed: false,
        suppressed: false,
        timezone: tz,
    }
}

fn sent(at: &str, category: Category) -> Sent {
    Sent {
        at: utc(at),
        category,
        opened: Some(true),
    }
}

#[test]
fn transactional_goes_at_once_whatever_the_rules() {
    let p = policies();
    let night = utc("2026-11-20T23:30:00Z"); // 00:30 in Budapest
    let mut r = to(Budapest);
    r.marketing_consent = false;
    let history = [sent("2026-11-20T23:00:00Z", Category::Value)];
    assert_eq!(
        decide(&p, Category::Transactional, night, &r, &history),
        Decision::SendAt(night)
    );
    r.suppressed = true;
    assert_eq!(
        decide(&p, Category::Transactional, night, &r, &history),
        Decision::Skip(Skip::Suppressed)
    );
}

#[test]
fn marketing_needs_consent() {
    let mut r = to(Budapest);
    r.marketing_consent = false;
    for c in [Category::Value, Category::Promo] {
        assert_eq!(
            decide(&policies(), c, utc("2026-11-20T10:00:00Z"), &r, &[]),
            Decision::Skip(Skip::NoConsent)
        );
    }
}

/// "No more offers" stops promo mail only; value and transactional go on.
#[test]
fn an_offers_opt_out_stops_promo_only() {
    let mut r = to(Budapest);
    r.promo_unsubscribed = true;
    let at = utc("2026-11-20T10:00:00Z");
    let p = Policies::default();
    assert_eq!(
        decide(&p, Category::Promo, at, &r, &[]),
        Decision::Skip(Skip::NoOffers)
    );
    for c in [Category::Value, Category::Transactional] {
        assert_eq!(decide(&p, c, at, &r, &[]), Decision::SendAt(at));
    }
}

#[test]
fn quiet_hours_across_midnight_in_local_time() {
    let p = policies();
    // (due UTC, expected UTC) for Budapest (UTC+1 in November).
    let cases = [
        ("2026-11-20T19:59:00Z", "2026-11-20T19:59:00Z"), // 20:59 local: still fine
        ("2026-11-20T20:00:00Z", "2026-11-21T07:00:00Z"), // 21:00 local: quiet until 08:00
        ("2026-11-20T23:30:00Z", "2026-11-21T07:00:00Z"), // 00:30 local
        ("2026-11-21T06:59:00Z", "2026-11-21T07:00:00Z"), // 07:59 local
        ("2026-11-21T07:00:00Z", "2026-11-21T07:00:00Z"), // 08:00 local: open
    ];
    for (due, want) in cases {
        assert_eq!(
            decide(&p, Category::Value, utc(due), &to(Budapest), &[]),
            Decision::SendAt(utc(want)),
            "due {due}"
        );
    }
}

#[test]
fn quiet_hours_within_one_day() {
    let mut p = policies();
    p.quiet_hours = Some(QuietHours {
        start: hm(12, 0),
        end: hm(14, 0),
    });
    let d = decide(
        &p,
        Category::Value,
        utc("2026-11-20T12:30:00Z"),
        &to(Tz::UTC),
        &[],
    );
    assert_eq!(d, Decision::SendAt(utc("2026-11-20T14:00:00Z")));
    let d = decide(
        &p,
        Category::Value,
        utc("2026-11-20T23:30:00Z"),
        &to(Tz::UTC),
        &[],
    );
    assert_eq!(d, Decision::SendAt(utc("2026-11-20T23:30:00Z")));
}

#[test]
fn quiet_hours_end_moves_with_daylight_saving() {
    let p = policies();
    // New York: clocks go back on 2026-11-01. 08:00 local is 12:00Z before, 13:00Z after.
    let before = decide(
        &p,
        Category::Value,
        utc("2026-10-31T05:00:00Z"),
        &to(New_York),
        &[],
    );
    assert_eq!(before, Decision::SendAt(utc("2026-10-31T12:00:00Z")));
    let after = decide(
        &p,
        Category::Value,
        utc("2026-11-01T06:00:00Z"),
        &to(New_York),
        &[],
    );
    assert_eq!(after, Decision::SendAt(utc("2026-11-01T13:00:00Z")));
    // Budapest spring forward (2026-03-29, 02:00 -> 03:00): 08:00 local is 06:00Z.
    let spring = decide(
        &p,
        Category::Value,
        utc("2026-03-28T23:00:00Z"),
        &to(Budapest),
        &[],
    );
    assert_eq!(spring, Decision::SendAt(utc("2026-03-29T06:00:00Z")));
}

#[test]
fn a_cap_defers_and_can_defer_into_quiet_hours() {
    let p = policies();
    // A value email went at 10:00 local (09:00Z); the cap (1 per 16h) holds the
    // next until 02:00 local, which is quiet, so it goes at 08:00 local.
    let history = [sent("2026-11-20T09:00:00Z", Category::Value)];
    let d = decide(
        &p,
        Category::Value,
        utc("2026-11-20T12:00:00Z"),
        &to(Budapest),
        &history,
    );
    assert_eq!(d, Decision::SendAt(utc("2026-11-21T07:00:00Z")));
    // Transactional mail does not count toward the cap.
    let history = [sent("2026-11-20T09:00:00Z", Category::Transactional)];
    let d = decide(
        &p,
        Category::Value,
        utc("2026-11-20T12:00:00Z"),
        &to(Budapest),
        &history,
    );
    assert_eq!(d, Decision::SendAt(utc("2026-11-20T12:00:00Z")));
}

#[test]
fn a_cap_of_two_waits_for_the_older_one_to_leave() {
    let mut p = policies();
    p.quiet_hours = None;
    p.frequency_cap = Some(FrequencyCap {
        max: 2,
        per: TimeDelta::hours(24),
    });
    let history = [
        sent("2026-11-20T08:00:00Z", Category::Value),
        sent("2026-11-20T12:00:00Z", Category::Promo),
    ];
    let d = decide(
        &p,
        Category::Value,
        utc("2026-11-20T13:00:00Z"),
        &to(Tz::UTC),
        &history,
    );
    assert_eq!(d, Decision::SendAt(utc("2026-11-21T08:00:00Z")));
}

#[test]
fn promo_share_at_the_boundary() {
    let mut p = policies();
    p.quiet_hours = None;
    p.frequency_cap = None;
    let due = utc("2026-11-20T12:00:00Z");
    let four: Vec<Sent> = (1..=4)
        .map(|d| sent(&format!("2026-11-1{d}T12:00:00Z"), Category::Transactional))
        .collect();
    // 1 promo of 5 emails = 20%: allowed.
    assert_eq!(
        decide(&p, Category::Promo, due, &to(Tz::UTC), &four),
        Decision::SendAt(due)
    );
    // 1 promo of 4 = 25%: skipped.
    assert_eq!(
        decide(&p, Category::Promo, due, &to(Tz::UTC), &four[..3]),
        Decision::Skip(Skip::PromoShare {
            promos: 1,
            total: 4,
            max_percent: 20
        })
    );
    // Emails older than the window do not count.
    let old: Vec<Sent> = (1..=4)
        .map(|d| sent(&format!("2026-09-1{d}T12:00:00Z"), Category::Transactional))
        .collect();
    assert!(matches!(
        decide(&p, Category::Promo, due, &to(Tz::UTC), &old),
        Decision::Skip(Skip::PromoShare { .. })
    ));
    // Value mail is never limited by the share.
    assert_eq!(
        decide(&p, Category::Value, due, &to(Tz::UTC), &[]),
        Decision::SendAt(due)
    );
}

#[test]
fn sunset_after_unopened_marketing_in_a_row() {
    let p = policies();
    let mut history: Vec<Sent> = (0..8)
        .map(|d| Sent {
            at: utc("2026-10-01T10:00:00Z") + TimeDelta::days(d),
            category: Category::Value,
            opened: Some(false),
        })
        .collect();
    let due = utc("2026-11-20T10:00:00Z");
    assert_eq!(
        decide(&p, Category::Value, due, &to(Tz::UTC), &history),
        Decision::Skip(Skip::Sunset { unopened: 8 })
    );
    // One opened email in the last eight resets the streak.
    history[7].opened = Some(true);
    assert_eq!(
        decide(&p, Category::Value, due, &to(Tz::UTC), &history),
        Decision::SendAt(due)
    );
    // Mail whose opening is not known does not count toward the streak.
    history[7].opened = None;
    assert_eq!(
        decide(&p, Category::Value, due, &to(Tz::UTC), &history),
        Decision::SendAt(due)
    );
    history[7].opened = Some(false);
    // Transactional mail still goes to a sunset customer.
    history[7].opened = Some(false);
    assert_eq!(
        decide(&p, Category::Transactional, due, &to(Tz::UTC), &history),
        Decision::SendAt(due)
    );
}

#[test]
fn absent_rules_do_not_apply() {
    let p = Policies::default();
    let due = utc("2026-11-20T23:30:00Z");
    let history = vec![sent("2026-11-20T23:00:00Z", Category::Promo); 20];
    assert_eq!(
        decide(&p, Category::Promo, due, &to(Budapest), &history),
        Decision::SendAt(due)
    );
}

fn zone() -> impl Strategy<Value = Tz> {
    prop::sample::select(vec![
        Tz::UTC,
        Budapest,
        New_York,
        chrono_tz::Asia::Bangkok,
        chrono_tz::Australia::Lord_Howe,
        chrono_tz::Asia::Kathmandu,
    ])
}

proptest! {
    /// Whatever the history, a value email goes no earlier than due, outside
    /// quiet hours, and within the cap at the moment it goes.
    #[test]
    fn decided_times_obey_every_rule(
        tz in zone(),
        due_min in 0i64..(2 * 365 * 24 * 60),
        start_h in 0u32..24, end_h in 0u32..24,
        cap_max in 1u32..4, cap_h in 1i64..48,
        past in prop::collection::vec((0i64..(7 * 24 * 60), prop::bool::ANY), 0..10),
    ) {
        let base = utc("2026-01-01T00:00:00Z");
        let due = base + TimeDelta::minutes(due_min);
        let q = QuietHours { start: hm(start_h, 0), end: hm(end_h, 0) };
        let p = Policies {
            quiet_hours: Some(q),
            frequency_cap: Some(FrequencyCap { max: cap_max, per: TimeDelta::hours(cap_h) }),
            ..Policies::default()
        };
        let history: Vec<Sent> = past
            .iter()
            .map(|(m, promo)| Sent {
                at: due - TimeDelta::minutes(*m),
                category: if *promo { Category::Promo } else { Category::Value },
                opened: Some(true),
            })
            .collect();
        let Decision::SendAt(t) = decide(&p, Category::Value, due, &to(tz), &history) else {
            panic!("value mail with consent is never skipped here");
        };
        prop_assert!(t >= due);
        prop_assert!(!in_quiet_hours(t.with_timezone(&tz).time(), q), "{t} is quiet in {tz}");
        let in_window = history.iter().filter(|s| s.at > t - TimeDelta::hours(cap_h) && s.at <= t).count();
        prop_assert!(in_window < cap_max as usize, "cap broken at {t}");
    }

    /// A promo that is sent keeps the share at or under the limit.
    #[test]
    fn promo_share_never_exceeded(
        max_percent in 0u32..=100,
        past in prop::collection::vec((0i64..(40 * 24), prop::bool::ANY), 0..30),
    ) {
        let due = utc("2026-06-01T12:00:00Z");
        let p = Policies {
            promo_share: Some(PromoShare { max_percent, window: TimeDelta::days(30) }),
            ..Policies::default()
        };
        let history: Vec<Sent> = past
            .iter()
            .map(|(h, promo)| Sent {
                at: due - TimeDelta::hours(*h),
                category: if *promo { Category::Promo } else { Category::Transactional },
                opened: Some(true),
            })
            .collect();
        if let Decision::SendAt(t) = decide(&p, Category::Promo, due, &to(Tz::UTC), &history) {
            let window: Vec<&Sent> = history.iter().filter(|s| s.at > t - TimeDelta::days(30) && s.at <= t).collect();
            let promos = window.iter().filter(|s| s.category == Category::Promo).count() + 1;
            let total = window.len() + 1;
            prop_assert!(promos * 100 <= max_percent as usize * total);
        }
    }
}

/// Issue 7, reproduction 4: a cap or a promo window longer than the calendar
/// (as if validation had been skipped) decides without panicking: the window
/// counts everything, and a slot past the year 9999 is a skip with its reason.
#[test]
fn windows_past_the_calendar_are_checked_not_panics() {
    let huge = TimeDelta::weeks(15_000_000);
    let mut p = policies();
    p.frequency_cap = Some(FrequencyCap { max: 1, per: huge });
    p.promo_share = Some(PromoShare {
        max_percent: 50,
        window: huge,
    });
    let due = utc("2026-11-20T12:00:00Z");
    assert_eq!(
        decide(&p, Category::Value, due, &to(Budapest), &[]),
        Decision::SendAt(due)
    );
    let history = [sent("2026-11-19T12:00:00Z", Category::Transactional)];
    assert_eq!(
        decide(&p, Category::Promo, due, &to(Budapest), &history),
        Decision::SendAt(due)
    );
    let history = [sent("2026-11-19T12:00:00Z", Category::Value)];
    let d = decide(&p, Category::Value, due, &to(Budapest), &history);
    assert_eq!(d, Decision::Skip(Skip::NoSlot));
    let Decision::Skip(why) = d else {
        unreachable!()
    };
    assert!(why.to_string().contains("before the year 9999"));
    // At the edges of time too.
    for at in [DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC] {
        let _ = decide(
            &p,
            Category::Promo,
            at,
            &to(New_York),
            &[sent("2026-11-19T12:00:00Z", Category::Value)],
        );
    }
}
