//! Cron expressions as marketers write them: the standard five fields
//! (minute, hour, day of month, month, day of week; Sunday is 0 or 7, or a
//! name), handed to the `cron` crate, which wants seconds first and counts
//! the days of the week from Sunday = 1.

use std::str::FromStr;

/// Parses a 5-field cron expression (or `@daily`, `@weekly`, `@monthly`,
/// `@yearly`, `@hourly`).
pub fn parse(text: &str) -> Result<cron::Schedule, String> {
    let text = text.trim();
    if text.starts_with('@') {
        return cron::Schedule::from_str(text)
            .map_err(|e| format!("`{text}` is not a cron expression: {e}"));
    }
    let fields: Vec<&str> = text.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "`{text}` has {} fields; a schedule has five: minute hour day-of-month month \
             day-of-week, e.g. \"0 9 * * *\" (every day at 09:00) or \"0 10 * * mon\"",
            fields.len()
        ));
    }
    let weekdays = weekdays(fields[4])?;
    let six = format!(
        "0 {} {} {} {} {weekdays}",
        fields[0], fields[1], fields[2], fields[3]
    );
    cron::Schedule::from_str(&six).map_err(|e| {
        format!(
            "`{text}` is not a cron expression ({e}); write five fields: minute hour \
             day-of-month month day-of-week, e.g. \"0 9 * * *\""
        )
    })
}

const NAMES: [&str; 8] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// The day-of-week field with its numbers (0-7, Sunday 0 and 7) written
/// as names, which the `cron` crate reads the standard way; steps stay.
fn weekdays(field: &str) -> Result<String, String> {
    let day = |s: &str| -> Result<String, String> {
        if s.chars().all(|c| c.is_ascii_digit()) && !s.is_empty() {
            let n: usize = s.parse().map_err(|_| bad(field))?;
            NAMES
                .get(n)
                .map(|n| n.to_string())
                .ok_or_else(|| bad(field))
        } else {
            Ok(s.to_string())
        }
    };
    let mut parts = Vec::new();
    for part in field.split(',') {
        let (base, step) = match part.split_once('/') {
            Some((b, s)) => (b, Some(s)),
            None => (part, None),
        };
        let base = match base.split_once('-') {
            // "5-7": Friday to Sunday, which the crate cannot write as Fri-Sun
            // (Sunday comes first for it).
            Some((a, b)) if b == "7" && step.is_none() => {
                let from = day(a)?;
                if from == "Sun" {
                    "*".to_string()
                } else {
                    format!("{from}-Sat,Sun")
                }
            }
            Some((a, b)) => format!("{}-{}", day(a)?, day(b)?),
            None => day(base)?,
        };
        parts.push(match step {
            Some(s) => format!("{base}/{s}"),
            None => base,
        });
    }
    Ok(parts.join(","))
}

fn bad(field: &str) -> String {
    format!("day of week `{field}`: days are 0-7 (Sunday is 0 or 7) or names such as mon")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Datelike, TimeZone, Utc, Weekday};

    fn next(expr: &str, after: &str) -> DateTime<Utc> {
        let s = parse(expr).unwrap();
        let after: DateTime<Utc> = after.parse().unwrap();
        s.after(&after).next().unwrap()
    }

    #[test]
    fn five_fields_as_marketers_write_them() {
        assert_eq!(
            next("0 9 * * *", "2026-11-26T10:00:00Z"),
            Utc.with_ymd_and_hms(2026, 11, 27, 9, 0, 0).unwrap()
        );
        // Sunday is 0 and 7; Monday is 1 (2026-11-30 is a Monday).
        for sunday in ["0 9 * * 0", "0 9 * * 7", "0 9 * * sun"] {
            assert_eq!(
                next(sunday, "2026-11-26T10:00:00Z").weekday(),
                Weekday::Sun,
                "{sunday}"
            );
        }
        assert_eq!(
            next("30 8 * * 1-5", "2026-11-28T10:00:00Z"),
            Utc.with_ymd_and_hms(2026, 11, 30, 8, 30, 0).unwrap()
        );
        assert_eq!(
            next("0 9 * * 5-7", "2026-11-26T10:00:00Z").weekday(),
            Weekday::Fri
        );
        assert_eq!(
            next("0 9 1 9 *", "2026-11-26T10:00:00Z"),
            Utc.with_ymd_and_hms(2027, 9, 1, 9, 0, 0).unwrap()
        );
        assert!(parse("@daily").is_ok());
    }

    #[test]
    fn wrong_expressions_say_what_is_expected() {
        let e = parse("0 0 9 * * *").unwrap_err();
        assert!(e.contains("has 6 fields; a schedule has five"), "{e}");
        let e = parse("0 25 * * *").unwrap_err();
        assert!(e.contains("is not a cron expression"), "{e}");
        let e = parse("0 9 * * 8").unwrap_err();
        assert!(e.contains("days are 0-7"), "{e}");
    }
}
