//! When time-driven triggers fire: date triggers (anniversaries, birthdays)
//! and schedules (cron). Pure: the caller passes the customer and `now`.
//!
//! A date trigger fires on each anniversary of its date strictly after the
//! date itself (`repeat: yearly`; the first order never triggers its own
//! anniversary), shifted by `offset`, at `at` (else the date's own time of
//! day, midnight for a plain date) in the customer's time zone. A date of
//! 29 February falls on 28 February in years without one. `repeat: once`
//! fires at the date plus the offset, if that is still ahead.

use chrono::{DateTime, Datelike, Months, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, Utc};
use chrono_tz::Tz;

use super::localtime::{local, resolve};
use super::profile::Profile;
use crate::event::{Customer, Order};
use crate::sequence::duration::Span;
use crate::sequence::model::{DateFact, DateSource, DateTrigger, Repeat};

/// One firing of a date trigger: when, and which occurrence it is (the
/// origin of the enrollment it starts: one per occurrence, however often
/// the date is corrected).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Firing {
    pub at: DateTime<Utc>,
    /// `date:<year>` for a yearly trigger (the year of the anniversary),
    /// `date:once:<date>` for a one-off.
    pub occurrence: String,
}

/// The customer's date for `source` as a local date and time in `tz`.
pub fn anchor(source: &DateSource, profile: &Profile, tz: Tz) -> Option<NaiveDateTime> {
    let f = &profile.ledger.facts;
    let local = |t: DateTime<Utc>| t.with_timezone(&tz).naive_local();
    match source {
        DateSource::Fact(DateFact::FirstOrderAt) => f.first_order_at.map(local),
        DateSource::Fact(DateFact::LastOrderAt) => f.last_order_at.map(local),
        DateSource::Fact(DateFact::LastReviewAt) => f.last_review_at.map(local),
        DateSource::Attribute(name) => {
            let text = profile.customer.attributes.get(name)?.as_str()?.trim();
            if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
                return Some(d.and_time(NaiveTime::MIN));
            }
            // The date as written (a birthday sent as midnight UTC is that
            // day everywhere), at the time of day written.
            DateTime::parse_from_rfc3339(text)
                .ok()
                .map(|t| t.naive_local())
        }
    }
}

/// The first firing of `t` at or after `from` for the customer, if any.
pub fn next_date_firing(
    t: &DateTrigger,
    profile: &Profile,
    tz: Tz,
    from: DateTime<Utc>,
) -> Option<Firing> {
    let anchor = anchor(&t.date, profile, tz)?;
    let at = |k: u32| -> Option<DateTime<Utc>> {
        let day = anchor.date().checked_add_months(Months::new(12 * k))?;
        let local = day.and_time(t.at.unwrap_or(anchor.time()));
        let local = match &t.offset {
            Some(offset) => shift(local, offset)?,
            None => local,
        };
        (1970..=9999)
            .contains(&local.year())
            .then(|| resolve(tz, local))
    };
    match t.repeat {
        // Once per date: a new date (a later order's) fires again.
        Repeat::Once => at(0).filter(|when| *when >= from).map(|when| Firing {
            at: when,
            occurrence: format!("date:once:{}", anchor.date()),
        }),
        Repeat::Yearly => {
            // The anniversary near `from`'s year, then the next few: an
            // offset of up to ten years either way is covered.
            let near = from.year() - anchor.year() - 11;
            let first = u32::try_from(near.max(1)).ok()?;
            (first..first + 24).find_map(|k| {
                let when = at(k)?;
                (when >= from).then(|| Firing {
                    at: when,
                    occurrence: format!("date:{}", anchor.year() + k as i32),
                })
            })
        }
    }
}

/// `local` moved by `offset` on the wall clock: months in the calendar
/// (clamped to the month's end), then days and hours.
fn shift(local: NaiveDateTime, offset: &Span) -> Option<NaiveDateTime> {
    let months = Months::new(offset.months.unsigned_abs());
    let moved = if offset.months >= 0 {
        local.checked_add_months(months)?
    } else {
        local.checked_sub_months(months)?
    };
    moved.checked_add_signed(offset.delta)
}

/// The latest time at or before `now` that `cron` names in `tz`.
///
/// Cron times are local wall-clock times, walked on a clock that has no
/// daylight saving and resolved as [`resolve`] resolves a step's `at`: a
/// time the clock skips (spring forward) fires at the moment it jumps, one
/// it passes twice (fall back) at the first of the two.
pub fn latest_cron(cron: &cron::Schedule, tz: Tz, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    // In an autumn fold a wall-clock time later than `now`'s can still be
    // earlier than `now` (its first pass): start past any clock change.
    let start = local(now, tz)?.checked_add_signed(CLOCK_CHANGE + TimeDelta::seconds(1))?;
    // Resolving keeps the order of wall-clock times, and a wall-clock time
    // at or before `now`'s resolves at or before `now`: the walk ends there.
    cron.after(&start.and_utc())
        .rev()
        .map(|t| resolve(tz, t.naive_utc()))
        .find(|at| *at <= now)
}

/// The first time after `after` that `cron` names in `tz`, resolved as in
/// [`latest_cron`]. Wall-clock times in one spring-forward gap all resolve
/// to the jump, and fire once.
pub fn next_cron(cron: &cron::Schedule, tz: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    // A wall-clock time at or before `after`'s resolves at or before it.
    let start = local(after, tz)?;
    cron.after(&start.and_utc())
        .map(|t| resolve(tz, t.naive_utc()))
        .find(|at| *at > after)
}

/// Longer than any change of a clock in the time-zone database (two hours,
/// in a few zones' history; one hour or less today).
const CLOCK_CHANGE: TimeDelta = TimeDelta::hours(3);

/// The origin of the enrollments a schedule firing at `at` starts.
pub fn schedule_origin(at: DateTime<Utc>) -> String {
    format!(
        "schedule:{}",
        at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    )
}

/// The order a time-driven enrollment starts with: the customer's last
/// order as the facts know it (id, time, total; no items), so that
/// `once_per_order` means once per last order (a win-back once per lapse).
pub fn last_order(profile: &Profile) -> Option<Order> {
    let l = &profile.ledger;
    let id = l.facts.last_order_id.clone()?;
    let counted = l.orders.iter().find(|o| o.id == id);
    Some(Order {
        id,
        number: None,
        placed_at: l.facts.last_order_at,
        currency: counted.and_then(|o| o.currency.clone()),
        total: counted.and_then(|o| o.total),
        items: Vec::new(),
    })
}

/// The customer's time zone, or the default.
pub fn zone_of(customer: &Customer, default: Tz) -> Tz {
    customer.timezone.unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;

    fn profile(extra: &str) -> Profile {
        let e = Event::parse(&format!(
            r#"{{"id":"e1","type":"customer.updated","occurred_at":"2024-02-29T15:30:00Z",
               "customer":{{"id":"c","email":"a@example.com","timezone":"Europe/Budapest"{extra}}}}}"#
        ))
        .unwrap();
        super::super::profile::update(None, &e)
    }

    fn with_first_order(at: &str) -> Profile {
        let mut p = profile("");
        p.ledger.facts.first_order_at = Some(at.parse().unwrap());
        p
    }

    fn trigger(
        date: DateSource,
        offset: Option<i64>,
        repeat: Repeat,
        at: Option<&str>,
    ) -> DateTrigger {
        DateTrigger {
            date,
            offset: offset.map(|d| Span::of(TimeDelta::days(d))),
            repeat,
            at: at.map(|a| NaiveTime::parse_from_str(a, "%H:%M").unwrap()),
            when: None,
        }
    }

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn an_anniversary_is_strictly_after_the_date() {
        let p = with_first_order("2025-03-10T14:00:00Z");
        let t = trigger(
            DateSource::Fact(DateFact::FirstOrderAt),
            None,
            Repeat::Yearly,
            Some("10:00"),
        );
        let tz = chrono_tz::Europe::Budapest;
        // Placed just now: the first firing is a year on, never today.
        let f = next_date_firing(&t, &p, tz, utc("2025-03-10T14:00:00Z")).unwrap();
        assert_eq!(f.at, utc("2026-03-10T09:00:00Z"), "10:00 in Budapest (CET)");
        assert_eq!(f.occurrence, "date:2026");
        // Later years, in summer time.
        let f = next_date_firing(&t, &p, tz, utc("2026-03-10T09:00:01Z")).unwrap();
        assert_eq!(f.at, utc("2027-03-10T09:00:00Z"));
        let p = with_first_order("2025-07-01T06:00:00Z");
        let f = next_date_firing(&t, &p, tz, utc("2025-08-01T00:00:00Z")).unwrap();
        assert_eq!(f.at, utc("2026-07-01T08:00:00Z"), "10:00 CEST");
    }

    #[test]
    fn an_offset_moves_it_and_once_fires_once() {
        let p = with_first_order("2025-03-10T14:00:00Z");
        let tz = chrono_tz::UTC;
        let week_before = trigger(
            DateSource::Fact(DateFact::FirstOrderAt),
            Some(-7),
            Repeat::Yearly,
            Some("10:00"),
        );
        let f = next_date_firing(&week_before, &p, tz, utc("2025-04-01T00:00:00Z")).unwrap();
        assert_eq!(f.at, utc("2026-03-03T10:00:00Z"));
        assert_eq!(f.occurrence, "date:2026");
        let once = trigger(
            DateSource::Fact(DateFact::FirstOrderAt),
            Some(30),
            Repeat::Once,
            None,
        );
        let f = next_date_firing(&once, &p, tz, utc("2025-03-10T14:00:00Z")).unwrap();
        assert_eq!(
            f.at,
            utc("2025-04-09T14:00:00Z"),
            "the date's own time of day"
        );
        assert_eq!(
            next_date_firing(&once, &p, tz, utc("2025-04-10T00:00:00Z")),
            None
        );
        // A calendar month before 31 March is 28 February (29th in a leap year).
        let p = with_first_order("2025-03-31T14:00:00Z");
        let mut month_before = trigger(
            DateSource::Fact(DateFact::FirstOrderAt),
            None,
            Repeat::Yearly,
            Some("10:00"),
        );
        month_before.offset = Some(Span::parse_signed("-1mo").unwrap());
        let f = next_date_firing(&month_before, &p, tz, utc("2025-04-01T00:00:00Z")).unwrap();
        assert_eq!(f.at, utc("2026-02-28T10:00:00Z"));
        let f = next_date_firing(&month_before, &p, tz, utc("2027-03-01T00:00:00Z")).unwrap();
        assert_eq!(f.at, utc("2028-02-29T10:00:00Z"));
    }

    #[test]
    fn a_birthday_from_the_attributes_and_the_29th_of_february() {
        let p = profile(r#","attributes":{"birthday":"1992-02-29"}"#);
        let t = trigger(
            DateSource::Attribute("birthday".into()),
            None,
            Repeat::Yearly,
            Some("09:00"),
        );
        let tz = chrono_tz::Europe::Budapest;
        let f = next_date_firing(&t, &p, tz, utc("2026-11-26T00:00:00Z")).unwrap();
        assert_eq!(
            f.at,
            utc("2027-02-28T08:00:00Z"),
            "28 February without a 29th"
        );
        let f = next_date_firing(&t, &p, tz, utc("2027-03-01T00:00:00Z")).unwrap();
        assert_eq!(f.at, utc("2028-02-29T08:00:00Z"), "the 29th in a leap year");
        assert_eq!(f.occurrence, "date:2028");
        // Not a date: no firing.
        let p = profile(r#","attributes":{"birthday":"soon"}"#);
        assert_eq!(
            next_date_firing(&t, &p, tz, utc("2026-11-26T00:00:00Z")),
            None
        );
        let p = profile("");
        assert_eq!(
            next_date_firing(&t, &p, tz, utc("2026-11-26T00:00:00Z")),
            None
        );
    }

    #[test]
    fn cron_times_in_a_zone() {
        let cron = crate::sequence::cron::parse("0 9 * * *").unwrap();
        let tz = chrono_tz::America::New_York;
        let now = utc("2026-11-26T15:00:00Z");
        assert_eq!(
            latest_cron(&cron, tz, now),
            Some(utc("2026-11-26T14:00:00Z"))
        );
        assert_eq!(next_cron(&cron, tz, now), Some(utc("2026-11-27T14:00:00Z")));
        // At the very time, it is the latest.
        let at = utc("2026-11-26T14:00:00Z");
        assert_eq!(latest_cron(&cron, tz, at), Some(at));
    }

    /// `next_cron` and `latest_cron` of `cron` in Berlin, at a UTC time.
    fn berlin(cron: &str) -> (impl Fn(&str) -> String, impl Fn(&str) -> String) {
        let cron = crate::sequence::cron::parse(cron).unwrap();
        let tz = chrono_tz::Europe::Berlin;
        let shown = |t: Option<DateTime<Utc>>| t.map(|t| t.to_rfc3339()).unwrap_or_default();
        let c = cron.clone();
        (
            move |at: &str| shown(next_cron(&c, tz, utc(at))),
            move |at: &str| shown(latest_cron(&cron, tz, utc(at))),
        )
    }

    #[test]
    fn a_schedule_in_a_spring_forward_gap_fires_when_the_clock_jumps() {
        // Berlin, 28 March 2027: at 02:00 CET (01:00Z) the clock jumps to
        // 03:00 CEST, so 02:30 never happens that day.
        let (next, latest) = berlin("30 2 * * *");
        let jump = "2027-03-28T01:00:00+00:00";
        assert_eq!(next("2027-03-27T12:00:00Z"), jump);
        assert_eq!(latest("2027-03-28T06:00:00Z"), jump);
        assert_eq!(latest(jump), jump);
        assert_eq!(latest("2027-03-28T00:59:59Z"), "2027-03-27T01:30:00+00:00");
        // Once: the next is the next day's 02:30 CEST.
        assert_eq!(next(jump), "2027-03-29T00:30:00+00:00");
        // Times in the gap that differ all fire once, at the jump.
        let (next, _) = berlin("*/15 2 * * *");
        assert_eq!(next("2027-03-28T00:50:00Z"), jump);
        assert_eq!(next(jump), "2027-03-29T00:00:00+00:00");
    }

    #[test]
    fn a_schedule_in_an_autumn_fold_fires_at_the_first_of_the_two() {
        // Berlin, 31 October 2027: at 03:00 CEST (01:00Z) the clock falls
        // back to 02:00 CET, so 02:30 happens at 00:30Z and again at 01:30Z.
        let (next, latest) = berlin("30 2 * * *");
        let first = "2027-10-31T00:30:00+00:00";
        assert_eq!(next("2027-10-30T12:00:00Z"), first);
        assert_eq!(next(first), "2027-11-01T01:30:00+00:00");
        // During the second pass, the latest is still the first.
        assert_eq!(latest("2027-10-31T01:45:00Z"), first);
        assert_eq!(latest("2027-10-31T01:10:00Z"), first);
        // A time the second pass reaches before the first pass did is not
        // the latest: 02:45's first pass (00:45Z) is after `now`.
        let (_, latest) = berlin("45 2 * * *");
        assert_eq!(latest("2027-10-31T00:40:00Z"), "2027-10-30T00:45:00+00:00");
    }
}
