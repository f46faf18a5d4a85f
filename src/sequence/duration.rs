//! Durations as marketers write them: `30m`, `2h`, `3d`, `2w`, or a sum (`1d12h`).

use chrono::TimeDelta;

/// The longest duration aftercare takes anywhere (waits, `within`, policy
/// windows, retry delays): 3650 days, about ten years. Anything longer is a
/// typo, and a time that far ahead is past what dates can hold.
pub const MAX: TimeDelta = TimeDelta::days(3650);

/// [`MAX`] as the documentation and the messages write it.
pub const MAX_TEXT: &str = "3650d (about 10 years)";

pub fn parse(text: &str) -> Result<TimeDelta, String> {
    let s = text.trim();
    let bad = || format!("{text:?} is not a duration; write e.g. 30m, 2h, 3d or 2w");
    if s.is_empty() {
        return Err(bad());
    }
    let mut total = TimeDelta::zero();
    let mut digits = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let n: i64 = digits.parse().map_err(|_| bad())?;
        digits.clear();
        let part = match c {
            's' => TimeDelta::try_seconds(n),
            'm' => TimeDelta::try_minutes(n),
            'h' => TimeDelta::try_hours(n),
            'd' => TimeDelta::try_days(n),
            'w' => TimeDelta::try_weeks(n),
            _ => None,
        }
        .ok_or_else(bad)?;
        total = total.checked_add(&part).ok_or_else(bad)?;
    }
    if !digits.is_empty() {
        return Err(format!(
            "{text:?} has no unit; write e.g. {digits}d (s, m, h, d or w)"
        ));
    }
    if total > MAX {
        return Err(format!(
            "{text:?} is longer than {MAX_TEXT}, the longest duration aftercare takes"
        ));
    }
    Ok(total)
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

#[cfg(test)]
mod tests {
    use super::*;

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
        for bad in ["", "3", "d", "3x", "three days", "-3d", "3d 2h"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(parse("3").unwrap_err().contains("no unit"));
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

    #[test]
    fn formats_round_trip() {
        for s in ["3d", "1d12h", "2w", "30m", "16h"] {
            assert_eq!(format(parse(s).unwrap()), s);
        }
    }
}
