//! Wall-clock times in a customer's time zone, correct across DST changes.

use chrono::{
    DateTime, Datelike, Days, Duration, LocalResult, Months, NaiveDate, NaiveDateTime, NaiveTime,
    Offset, TimeZone, Utc,
};
use chrono_tz::Tz;

use crate::sequence::weekdays::Weekdays;

/// `t`'s local date and time in `tz`; `None` at the ends of the calendar.
pub fn local(t: DateTime<Utc>, tz: Tz) -> Option<NaiveDateTime> {
    let offset = tz.offset_from_utc_datetime(&t.naive_utc()).fix();
    t.naive_utc().checked_add_offset(offset)
}

/// `t` moved by `months` calendar months (back when negative) in `tz`: the
/// same local time of day, the day clamped to the end of a shorter month
/// (Jan 31 + 1 = Feb 28, or 29 in a leap year), resolved as [`resolve`]
/// does across DST changes. `None` past the ends of the calendar.
pub fn add_months(t: DateTime<Utc>, tz: Tz, months: i32) -> Option<DateTime<Utc>> {
    let here = local(t, tz)?;
    let n = Months::new(months.unsigned_abs());
    let there = if months >= 0 {
        here.checked_add_months(n)?
    } else {
        here.checked_sub_months(n)?
    };
    Some(resolve(tz, there))
}

/// The instant whose local time in `to` is the one `t` shows in `from` (the
/// same day and time of day, resolved as [`resolve`] does): where a coming
/// wake-up or firing goes when the customer moves from zone `from` to `to`.
pub fn same_wall_time(t: DateTime<Utc>, from: Tz, to: Tz) -> DateTime<Utc> {
    resolve(to, t.with_timezone(&from).naive_local())
}

/// The first instant whose local time in `tz` is `local` or later: the
/// earlier of two instants when the clock falls back, and the moment the clock
/// jumps when `local` falls in a spring-forward gap.
pub fn resolve(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(a, b) => a.min(b).with_timezone(&Utc),
        LocalResult::None => {
            // In a gap: step forward minute by minute until local time exists;
            // gaps are at most a few hours, so this is bounded and rare.
            // Checked steps: a gap at the end of the calendar stays total.
            let minute = Duration::minutes(1);
            let mut probe = local;
            for _ in 0..(24 * 60) {
                let Some(next) = probe.checked_add_signed(minute) else {
                    break;
                };
                probe = next;
                if let Some(t) = tz.from_local_datetime(&probe).earliest() {
                    // The jump happened at the first existing instant; its
                    // local time is later than `local`, which is what we want.
                    let jump = t.with_timezone(&Utc);
                    // Walk back while the earlier instant is still local >= `local`.
                    let mut best = jump;
                    while let Some(prev) = best.checked_sub_signed(minute)
                        && prev.with_timezone(&tz).naive_local() >= local
                    {
                        best = prev;
                    }
                    return best;
                }
            }
            Utc.from_utc_datetime(&local)
        }
    }
}

/// The first instant at or after `from` whose local time in `tz` is `time`.
pub fn next_at(from: DateTime<Utc>, tz: Tz, time: NaiveTime) -> DateTime<Utc> {
    // Checked: at the end of the calendar the local date may not exist.
    let offset = tz.offset_from_utc_datetime(&from.naive_utc()).fix();
    let Some(local) = from.naive_utc().checked_add_offset(offset) else {
        return from;
    };
    let local_date: NaiveDate = local.date();
    for offset in 0..3 {
        let Some(day) = local_date.checked_add_days(Days::new(offset)) else {
            break;
        };
        let t = resolve(tz, day.and_time(time));
        if t >= from {
            return t;
        }
    }
    // Unreachable for real zones; stay total anyway.
    from
}

/// The first instant at or after `from` on one of `days` in `tz`: `from`
/// itself when its local day is one of them, else that day's `at` (or
/// `from`'s local time of day, without `at`) on the first such day after.
pub fn next_on(
    from: DateTime<Utc>,
    tz: Tz,
    days: Weekdays,
    at: Option<NaiveTime>,
) -> DateTime<Utc> {
    let Some(here) = local(from, tz) else {
        return from;
    };
    if days.is_empty() || days.contains(here.weekday()) {
        return from;
    }
    for ahead in 1..=7 {
        let Some(day) = here.date().checked_add_days(Days::new(ahead)) else {
            break;
        };
        if days.contains(day.weekday()) {
            return resolve(tz, day.and_time(at.unwrap_or(here.time())));
        }
    }
    from
}

/// Where a wait that ends at `t` really ends: with `at`, the first such
/// local time at or after `t`; with `on`, then the first of those days
/// (see [`next_on`]). Both in the customer's time zone `tz`.
pub fn align(
    t: DateTime<Utc>,
    tz: Tz,
    at: Option<NaiveTime>,
    on: Option<Weekdays>,
) -> DateTime<Utc> {
    let t = at.map_or(t, |at| next_at(t, tz, at));
    on.map_or(t, |days| next_on(t, tz, days, at))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::Europe::Budapest;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }
    fn hm(h: u32, m: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, 0).unwrap()
    }

    #[test]
    fn next_at_in_winter_and_summer() {
        // Budapest is UTC+1 in winter, UTC+2 in summer.
        assert_eq!(
            next_at(utc("2026-11-20T08:00:00Z"), Budapest, hm(10, 0)),
            utc("2026-11-20T09:00:00Z")
        );
        assert_eq!(
            next_at(utc("2026-11-20T09:00:01Z"), Budapest, hm(10, 0)),
            utc("2026-11-21T09:00:00Z")
        );
        assert_eq!(
            next_at(utc("2026-07-01T05:00:00Z"), Budapest, hm(10, 0)),
            utc("2026-07-01T08:00:00Z")
        );
    }

    #[test]
    fn across_the_spring_gap() {
        // 2026-03-29: clocks jump from 02:00 to 03:00 in Budapest (01:00 UTC).
        let t = next_at(utc("2026-03-28T23:30:00Z"), Budapest, hm(2, 30));
        assert_eq!(t, utc("2026-03-29T01:00:00Z"));
        // The day after, 02:30 exists again (at UTC+2).
        let t = next_at(utc("2026-03-29T02:00:00Z"), Budapest, hm(2, 30));
        assert_eq!(t, utc("2026-03-30T00:30:00Z"));
    }

    #[test]
    fn at_the_end_of_the_calendar_it_stays_total() {
        let last = DateTime::<Utc>::MAX_UTC;
        assert_eq!(next_at(last, Budapest, hm(10, 0)), last);
        let end = NaiveDate::MAX.and_time(hm(23, 59));
        assert_eq!(resolve(Tz::UTC, end), Utc.from_utc_datetime(&end));
    }

    #[test]
    fn across_the_autumn_fold() {
        // 2026-10-25: 02:30 happens twice in Budapest; the first is 00:30 UTC.
        let t = next_at(utc("2026-10-24T23:00:00Z"), Budapest, hm(2, 30));
        assert_eq!(t, utc("2026-10-25T00:30:00Z"));
    }

    fn on(days: &[chrono::Weekday]) -> Weekdays {
        let mut w = Weekdays::default();
        for d in days {
            w.insert(*d);
        }
        w
    }

    #[test]
    fn next_on_moves_to_the_first_chosen_day() {
        use chrono::Weekday::*;
        // Friday 2026-11-20, 10:00 in Budapest.
        let fri = utc("2026-11-20T09:00:00Z");
        assert_eq!(next_on(fri, Budapest, on(&[Fri, Sat]), None), fri);
        assert_eq!(
            next_on(fri, Budapest, on(&[Mon]), None),
            utc("2026-11-23T09:00:00Z"),
            "Monday, the same local time"
        );
        assert_eq!(
            next_on(fri, Budapest, on(&[Mon]), Some(hm(8, 15))),
            utc("2026-11-23T07:15:00Z"),
            "Monday at `at`"
        );
        assert_eq!(
            next_on(fri, Budapest, on(&[Thu]), None),
            utc("2026-11-26T09:00:00Z"),
            "six days on"
        );
    }

    #[test]
    fn next_on_counts_local_days_across_dst() {
        use chrono::Weekday::*;
        use chrono_tz::America::New_York;
        use chrono_tz::Asia::Bangkok;
        // New York springs forward on Sunday 2026-03-08: Saturday 10:00 EST
        // moves to Monday 10:00 EDT, 47 hours later.
        let sat = utc("2026-03-07T15:00:00Z");
        assert_eq!(
            next_on(sat, New_York, on(&[Mon]), None),
            utc("2026-03-09T14:00:00Z")
        );
        // Budapest: Saturday 2026-03-28 02:30 to Sunday, whose 02:30 the
        // clock skips: the moment it jumps (03:00 CEST).
        let sat = utc("2026-03-28T01:30:00Z");
        assert_eq!(
            next_on(sat, Budapest, on(&[Sun]), None),
            utc("2026-03-29T01:00:00Z")
        );
        // 20:00 UTC on Friday is Saturday 03:00 in Bangkok: the local day counts.
        let t = utc("2026-11-20T20:00:00Z");
        assert_eq!(next_on(t, Bangkok, on(&[Sat]), None), t);
        assert_eq!(
            next_on(t, Bangkok, on(&[Fri]), None),
            utc("2026-11-26T20:00:00Z")
        );
        assert_eq!(next_on(t, Tz::UTC, on(&[Fri]), None), t);
    }

    #[test]
    fn align_applies_at_then_on() {
        use chrono::Weekday::*;
        use chrono_tz::America::New_York;
        // Friday 11:00 in Budapest; at 10:00 is Saturday's; on weekdays,
        // Monday's 10:00.
        let t = utc("2026-11-20T10:00:00Z");
        assert_eq!(
            align(
                t,
                Budapest,
                Some(hm(10, 0)),
                Some(on(&[Mon, Tue, Wed, Thu, Fri]))
            ),
            utc("2026-11-23T09:00:00Z")
        );
        assert_eq!(align(t, Budapest, None, None), t);
        assert_eq!(
            align(t, Budapest, Some(hm(10, 0)), None),
            utc("2026-11-21T09:00:00Z")
        );
        // New York falls back on Sunday 2026-11-01: 01:30 happens twice;
        // the first (EDT, 05:30 UTC), and Sunday is a chosen day.
        let sat = utc("2026-10-31T16:00:00Z");
        assert_eq!(
            align(sat, New_York, Some(hm(1, 30)), Some(on(&[Sun]))),
            utc("2026-11-01T05:30:00Z")
        );
    }

    #[test]
    fn add_months_in_the_local_calendar() {
        use chrono_tz::Asia::Bangkok;
        // Jan 31 10:00 in Budapest, one month on: Feb 28; back from Mar 31: Feb 28.
        assert_eq!(
            add_months(utc("2026-01-31T09:00:00Z"), Budapest, 1),
            Some(utc("2026-02-28T09:00:00Z"))
        );
        assert_eq!(
            add_months(utc("2026-03-31T08:00:00Z"), Budapest, -1),
            Some(utc("2026-02-28T09:00:00Z"))
        );
        // Bangkok has no DST: a year is a year of local days.
        assert_eq!(
            add_months(utc("2028-02-28T17:00:00Z"), Bangkok, 12),
            Some(utc("2029-02-27T17:00:00Z")),
            "Feb 29 00:00 local + 1y = Feb 28 00:00 local, Feb 27 in UTC"
        );
        assert_eq!(add_months(DateTime::<Utc>::MAX_UTC, Budapest, 1), None);
    }
}
