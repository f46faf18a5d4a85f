//! Durations as marketers write them: `30m`, `2h`, `3d`, `2w`, or a sum (`1d12h`).
//!
//! Waits (`wait`, `within`) also take calendar units, `1mo` and `1y`, alone or
//! in sums (`1y6mo`, `1mo2d`): a [`Span`]. A span is added in the customer's
//! time zone: its months and years move the date in the customer's local
//! calendar and keep the local time of day, clamped to the end of a shorter
//! month (Jan 31 + 1mo = Feb 28, or Feb 29 in a leap year; Feb 29 + 1y =
//! Feb 28); then its fixed part (weeks, days, hours, ...) is added as that
//! many hours, as a `3d` wait always was. A local time that the clock skips
//! (spring forward) becomes the moment the clock jumps; one that happens
//! twice (fall back), the first of the two.
//!
//! Policy windows and settings (`frequency_cap.per`, `promo_share.window`,
//! `ceiling.per`, `stale_after`, retry schedules) stay fixed lengths of time,
//! read by [`parse`]: they are the same for every customer, whatever their
//! time zone or month, so a calendar unit there is refused.

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;

/// The longest duration aftercare takes anywhere (waits, `within`, policy
/// windows, retry delays): 3650 days, about ten years. Anything longer is a
/// typo, and a time that far ahead is past what dates can hold.
pub const MAX: TimeDelta = TimeDelta::days(3650);

/// [`MAX`] as the documentation and the messages write it.
pub const MAX_TEXT: &str = "3650d (about 10 years)";

/// What a calendar month counts for against [`MAX`]: a twelfth of a
/// 365-day year, so that `10y` is exactly the maximum and `11y` is past it.
const MONTH_FOR_MAX: TimeDelta = TimeDelta::seconds(365 * 86_400 / 12);

/// A span of time as a wait writes it: calendar months (a year is 12) and a
/// fixed part. Both have the same sign (see [`Span::parse_signed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub months: i32,
    pub delta: TimeDelta,
}

impl Span {
    /// A span without calendar months.
    pub fn of(delta: TimeDelta) -> Span {
        Span { months: 0, delta }
    }

    /// `30m`, `2h`, `3d`, `2w`, `1mo`, `1y` or a sum (`1y6mo`, `1mo2d`); zero
    /// is taken (the callers that need more than zero say so).
    pub fn parse(text: &str) -> Result<Span, String> {
        parse_span(text, text, true)
    }

    /// As [`Span::parse`], also with a leading minus: `-7d`, `-1mo`,
    /// `-1y2d` (the minus applies to the whole sum).
    pub fn parse_signed(text: &str) -> Result<Span, String> {
        match text.trim().strip_prefix('-') {
            Some(rest) if rest.starts_with(|c: char| c.is_ascii_digit()) => {
                let s = parse_span(text, rest, true)?;
                Ok(Span {
                    months: -s.months,
                    delta: -s.delta,
                })
            }
            _ => Span::parse(text),
        }
    }

    pub fn is_zero(&self) -> bool {
        self.months == 0 && self.delta.is_zero()
    }

    /// Whether the span goes forward in time (more than zero).
    pub fn is_positive(&self) -> bool {
        self.months >= 0 && self.delta >= TimeDelta::zero() && !self.is_zero()
    }

    /// `t + self` in the time zone `tz`: the months in the local calendar
    /// (clamped to the month's end, the local time of day kept), then the
    /// fixed part. `None` past the years dates can hold (as
    /// [`crate::engine::later`]: after the year 9999).
    pub fn add_to(&self, t: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        let moved = if self.months == 0 {
            t
        } else {
            crate::engine::localtime::add_months(t, tz, self.months)?
        };
        crate::engine::later(moved, self.delta)
    }

    /// The least time the span can take when it goes forward: a month counts
    /// as 28 days, a year as 365 (the loop checks' lower bound).
    pub fn least(&self) -> TimeDelta {
        let (years, months) = (i64::from(self.months / 12), i64::from(self.months % 12));
        TimeDelta::try_days(years * 365 + months * 28)
            .and_then(|m| m.checked_add(&self.delta))
            .unwrap_or(TimeDelta::MAX)
    }

    /// What the span counts for against [`MAX`] (a month as a twelfth of
    /// 365 days).
    fn nominal(&self) -> Option<TimeDelta> {
        MONTH_FOR_MAX
            .checked_mul(self.months)?
            .checked_add(&self.delta)
    }
}

/// A fixed duration (policy windows, settings): `30m`, `2h`, `3d`, `2w`,
/// `1d12h`. A calendar unit (`1mo`, `1y`) is not one; the sequences' reader
/// says why where a marketer may write it (`Reader::duration`).
pub fn parse(text: &str) -> Result<TimeDelta, String> {
    let span = parse_span(text, text, false)?;
    if span.months != 0 {
        return Err(format!(
            "{text:?} is not a duration; write e.g. 30m, 2h, 3d or 2w"
        ));
    }
    Ok(span.delta)
}

/// Reads `body`, a sum of parts `<digits><unit>`; the messages quote
/// `text`, what was written. `calendar` names the calendar units in the
/// messages (they are read either way, for [`parse`] to say why it refuses
/// them).
fn parse_span(text: &str, body: &str, calendar: bool) -> Result<Span, String> {
    let s = body.trim();
    let (examples, units) = if calendar {
        ("30m, 2h, 3d, 2w, 1mo or 1y", "s, m, h, d, w, mo or y")
    } else {
        ("30m, 2h, 3d or 2w", "s, m, h, d or w")
    };
    let bad = || format!("{text:?} is not a duration; write e.g. {examples}");
    if s.is_empty() {
        return Err(bad());
    }
    let mut delta = TimeDelta::zero();
    let mut months: i64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (digits, after) = rest.split_at(digits_end);
        let unit_end = after
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_end);
        if unit.is_empty() {
            if !after.is_empty() || digits.is_empty() {
                return Err(bad());
            }
            return Err(format!(
                "{text:?} has no unit; write e.g. {digits}d ({units})"
            ));
        }
        let n: i64 = digits.parse().map_err(|_| bad())?;
        match unit {
            "mo" => months = months.checked_add(n).ok_or_else(bad)?,
            "y" => {
                months = n
                    .checked_mul(12)
                    .and_then(|m| months.checked_add(m))
                    .ok_or_else(bad)?
            }
            _ => {
                let part = match unit {
                    "s" => TimeDelta::try_seconds(n),
                    "m" => TimeDelta::try_minutes(n),
                    "h" => TimeDelta::try_hours(n),
                    "d" => TimeDelta::try_days(n),
                    "w" => TimeDelta::try_weeks(n),
                    _ => None,
                }
                .ok_or_else(bad)?;
                delta = delta.checked_add(&part).ok_or_else(bad)?;
            }
        }
        rest = after;
    }
    let too_long = || {
        let how = if months != 0 {
            " (a year counts as 365 days here, a month as a twelfth of that: 10y at most)"
        } else {
            ""
        };
        format!("{text:?} is longer than {MAX_TEXT}, the longest duration aftercare takes{how}")
    };
    let months = i32::try_from(months).map_err(|_| too_long())?;
    let span = Span { months, delta };
    match span.nominal() {
        Some(n) if n <= MAX => Ok(span),
        _ => Err(too_long()),
    }
}

/// The shortest way to write `d` in the same notation (`3d`, `1d12h`).
pub fn format(d: TimeDelta) -> String {
    let mut secs = d.num_seconds();
    if secs == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, len) in [
        ("w", 604_800),
        ("d", 86_400),
        ("h", 3_600),
        ("m", 60),
        ("s", 1),
    ] {
        if secs >= len {
            out.push_str(&format!("{}{unit}", secs / len));
            secs %= len;
        }
    }
    out
}

/// A span as a wait writes it (`1y2mo3d`, `-1mo`, `3d`): what
/// [`Span::parse_signed`] reads back. A span without months is written as
/// [`format`] writes its fixed part.
pub fn format_span(s: Span) -> String {
    if s.months < 0 || (s.months == 0 && s.delta < TimeDelta::zero()) {
        return format!(
            "-{}",
            format_span(Span {
                months: s.months.saturating_neg(),
                delta: -s.delta,
            })
        );
    }
    if s.months == 0 {
        return format(s.delta);
    }
    let mut out = String::new();
    let (years, months) = (s.months / 12, s.months % 12);
    if years > 0 {
        out.push_str(&format!("{years}y"));
    }
    if months > 0 {
        out.push_str(&format!("{months}mo"));
    }
    if !s.delta.is_zero() {
        out.push_str(&format(s.delta));
    }
    out
}

impl std::fmt::Display for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&format_span(*self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::America::New_York;
    use chrono_tz::Asia::Bangkok;
    use chrono_tz::Europe::Budapest;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!(parse("30m").unwrap(), TimeDelta::minutes(30));
        assert_eq!(parse("2h").unwrap(), TimeDelta::hours(2));
        assert_eq!(parse("3d").unwrap(), TimeDelta::days(3));
        assert_eq!(parse("2w").unwrap(), TimeDelta::weeks(2));
        assert_eq!(parse("1d12h").unwrap(), TimeDelta::hours(36));
    }

    #[test]
    fn rejects_what_is_not_a_duration() {
        for bad in [
            "",
            "3",
            "d",
            "3x",
            "three days",
            "-3d",
            "3d 2h",
            "1ms",
            "1mon",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
            assert!(Span::parse(bad).is_err(), "{bad}");
        }
        assert!(parse("3").unwrap_err().contains("no unit"));
        assert!(
            Span::parse("3")
                .unwrap_err()
                .contains("(s, m, h, d, w, mo or y)")
        );
    }

    #[test]
    fn ten_years_at_most() {
        assert_eq!(parse("3650d").unwrap(), MAX);
        assert_eq!(parse("521w3d").unwrap(), MAX);
        for long in [
            "3651d",
            "522w",
            "15000000w",
            "3650d1s",
            "99999999999999999999d",
        ] {
            let e = parse(long).unwrap_err();
            assert!(
                e.contains("3650d (about 10 years)") || e.contains("not a duration"),
                "{long}: {e}"
            );
        }
        assert!(
            parse("15000000w")
                .unwrap_err()
                .contains("longer than 3650d")
        );
    }

    /// A year counts as 365 days against the maximum: 10y is taken, 11y,
    /// 10y1d and 121mo are not, whatever way they are written.
    #[test]
    fn calendar_spans_ten_years_at_most() {
        assert_eq!(Span::parse("10y").unwrap().months, 120);
        assert_eq!(Span::parse("120mo").unwrap().months, 120);
        assert_eq!(Span::parse("9y12mo").unwrap().months, 120);
        assert_eq!(Span::parse_signed("-10y").unwrap().months, -120);
        for long in ["11y", "10y1d", "121mo", "10y1mo", "9999999999y", "-11y"] {
            let e = Span::parse_signed(long).unwrap_err();
            assert!(
                e.contains("longer than 3650d (about 10 years)") || e.contains("not a duration"),
                "{long}: {e}"
            );
        }
        assert!(
            Span::parse("11y")
                .unwrap_err()
                .contains("a year counts as 365 days")
        );
    }

    #[test]
    fn spans_parse_calendar_and_fixed_parts() {
        let span = |m, d| Span {
            months: m,
            delta: d,
        };
        assert_eq!(Span::parse("1mo").unwrap(), span(1, TimeDelta::zero()));
        assert_eq!(Span::parse("1y").unwrap(), span(12, TimeDelta::zero()));
        assert_eq!(Span::parse("1y6mo").unwrap(), span(18, TimeDelta::zero()));
        assert_eq!(Span::parse("1mo2d").unwrap(), span(1, TimeDelta::days(2)));
        assert_eq!(Span::parse("2d1mo").unwrap(), span(1, TimeDelta::days(2)));
        assert_eq!(Span::parse("1m").unwrap(), span(0, TimeDelta::minutes(1)));
        assert_eq!(Span::parse(" 3d ").unwrap(), Span::of(TimeDelta::days(3)));
        assert_eq!(Span::parse("0d").unwrap(), Span::of(TimeDelta::zero()));
        assert!(Span::parse("-7d").is_err(), "a minus only when signed");
        assert_eq!(
            Span::parse_signed("-7d").unwrap(),
            Span::of(TimeDelta::days(-7))
        );
        assert_eq!(
            Span::parse_signed("-1mo").unwrap(),
            span(-1, TimeDelta::zero())
        );
        assert_eq!(
            Span::parse_signed("-1y2d").unwrap(),
            span(-12, TimeDelta::days(-2))
        );
        assert_eq!(
            Span::parse_signed("7d").unwrap(),
            Span::of(TimeDelta::days(7))
        );
        for bad in ["-", "--1d", "-+1d", "- 1d", "1d-", "-x"] {
            assert!(Span::parse_signed(bad).is_err(), "{bad}");
        }
        assert!(
            Span::parse_signed("-3")
                .unwrap_err()
                .starts_with("\"-3\" has no unit"),
            "the message quotes what was written"
        );
    }

    /// Settings and policy windows are fixed: a calendar unit is refused
    /// (the sequences' reader says why, see `values`).
    #[test]
    fn fixed_durations_refuse_calendar_units() {
        for text in ["1mo", "1y", "1y6mo", "1mo2d"] {
            let e = parse(text).unwrap_err();
            assert_eq!(
                e,
                format!("{text:?} is not a duration; write e.g. 30m, 2h, 3d or 2w")
            );
        }
    }

    #[test]
    fn formats_round_trip() {
        for s in ["3d", "1d12h", "2w", "30m", "16h"] {
            assert_eq!(format(parse(s).unwrap()), s);
            assert_eq!(format_span(Span::parse(s).unwrap()), s);
        }
        for s in [
            "1mo", "1y", "1y2mo3d", "1y6mo", "1mo2d", "10y", "11mo", "-3d", "-1w", "-1mo", "-1y2d",
            "0s",
        ] {
            assert_eq!(format_span(Span::parse_signed(s).unwrap()), s);
        }
        // The shortest form, not the one written.
        assert_eq!(format_span(Span::parse("18mo").unwrap()), "1y6mo");
        assert_eq!(format_span(Span::parse("12mo").unwrap()), "1y");
        assert_eq!(format_span(Span::parse("14d").unwrap()), "2w");
    }

    /// Month ends clamp; the local time of day is kept; the fixed part is
    /// added after the months.
    #[test]
    fn months_clamp_to_the_month_end() {
        let one = Span::parse("1mo").unwrap();
        // Budapest, 10:00 local (UTC+1 in winter).
        assert_eq!(
            one.add_to(utc("2026-01-31T09:00:00Z"), Budapest),
            Some(utc("2026-02-28T09:00:00Z"))
        );
        assert_eq!(
            one.add_to(utc("2028-01-31T09:00:00Z"), Budapest),
            Some(utc("2028-02-29T09:00:00Z")),
            "a leap year"
        );
        let year = Span::parse("1y").unwrap();
        assert_eq!(
            year.add_to(utc("2028-02-29T09:00:00Z"), Budapest),
            Some(utc("2029-02-28T09:00:00Z"))
        );
        assert_eq!(
            Span::parse("1mo2d")
                .unwrap()
                .add_to(utc("2026-01-31T09:00:00Z"), Budapest),
            Some(utc("2026-03-02T09:00:00Z")),
            "the month first (Feb 28), then two days"
        );
        assert_eq!(
            Span::parse_signed("-1mo")
                .unwrap()
                .add_to(utc("2026-03-31T08:00:00Z"), Budapest),
            Some(utc("2026-02-28T09:00:00Z")),
            "back over the spring change: 10:00 local both times"
        );
    }

    /// The month is the customer's: 00:30 on Feb 1 in Bangkok is still
    /// January 31 in UTC.
    #[test]
    fn the_month_is_the_local_one() {
        // 2026-02-01 00:30 in Bangkok (UTC+7) = 2026-01-31T17:30Z.
        let t = utc("2026-01-31T17:30:00Z");
        assert_eq!(
            Span::parse("1mo").unwrap().add_to(t, Bangkok),
            Some(utc("2026-02-28T17:30:00Z")),
            "Mar 1 00:30 local"
        );
        assert_eq!(
            Span::parse("1mo").unwrap().add_to(t, Tz::UTC),
            Some(utc("2026-02-28T17:30:00Z")),
            "in UTC the same instant is Jan 31, clamped to Feb 28"
        );
        let t = utc("2026-01-30T17:30:00Z"); // Jan 31 00:30 in Bangkok
        assert_eq!(
            Span::parse("1mo").unwrap().add_to(t, Bangkok),
            Some(utc("2026-02-27T17:30:00Z")),
            "Feb 28 00:30 local"
        );
    }

    /// Across a DST change the local time of day is kept, so the month is an
    /// hour shorter or longer in UTC; a fixed `30d` is not.
    #[test]
    fn months_keep_the_local_time_across_dst() {
        // New York: 2026-03-08 spring forward, 2026-11-01 fall back.
        let one = Span::parse("1mo").unwrap();
        let feb = utc("2026-02-20T15:00:00Z"); // 10:00 EST
        assert_eq!(one.add_to(feb, New_York), Some(utc("2026-03-20T14:00:00Z")));
        let oct = utc("2026-10-20T14:00:00Z"); // 10:00 EDT
        assert_eq!(one.add_to(oct, New_York), Some(utc("2026-11-20T15:00:00Z")));
        let thirty = Span::parse("30d").unwrap();
        assert_eq!(
            thirty.add_to(oct, New_York),
            Some(oct + TimeDelta::days(30))
        );
        // Budapest: 02:30 on 2026-03-29 does not exist; the clock jumps
        // from 02:00 to 03:00 (01:00 UTC), and the year ends then.
        let spring = utc("2025-03-29T01:30:00Z"); // 02:30 CET
        assert_eq!(
            Span::parse("1y").unwrap().add_to(spring, Budapest),
            Some(utc("2026-03-29T01:00:00Z"))
        );
        // 02:30 on 2026-10-25 happens twice: the first (CEST, 00:30 UTC).
        let autumn = utc("2026-09-25T00:30:00Z"); // 02:30 CEST
        assert_eq!(
            Span::parse("1mo").unwrap().add_to(autumn, Budapest),
            Some(utc("2026-10-25T00:30:00Z"))
        );
    }

    #[test]
    fn past_the_calendar_is_none() {
        let t = utc("9999-12-01T00:00:00Z");
        assert_eq!(Span::parse("1mo").unwrap().add_to(t, Budapest), None);
        assert_eq!(Span::parse("31d").unwrap().add_to(t, Budapest), None);
        assert_eq!(
            Span::parse("1mo")
                .unwrap()
                .add_to(DateTime::<Utc>::MAX_UTC, Budapest),
            None
        );
    }

    #[test]
    fn least_counts_a_month_as_28_days() {
        assert_eq!(Span::parse("1mo").unwrap().least(), TimeDelta::days(28));
        assert_eq!(
            Span::parse("1y1mo1d").unwrap().least(),
            TimeDelta::days(394)
        );
        assert_eq!(Span::parse("3d").unwrap().least(), TimeDelta::days(3));
    }
}
