//! Wall-clock times in a customer's time zone, correct across DST changes.

use chrono::{
    DateTime, Days, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeZone,
    Utc,
};
use chrono_tz::Tz;

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
}
