//! The one reader for the typed values that sequences and policies share:
//! durations, times of day, CEL conditions, and the small vocabularies
//! (categories, scopes, event types). Each records a diagnostic at the node
//! when the value is wrong; `what` names the key in the message.

use chrono::{NaiveTime, TimeDelta};

use super::condition::Condition;
use super::duration::{self, Span};
use super::model::{Category, Scope};
use super::weekdays::Weekdays;
use super::yaml::{Node, Reader, Value};
use crate::diagnostic::closest;
use crate::event::KNOWN_TYPES;

impl Reader<'_> {
    /// A fixed duration longer than zero: `30m`, `2h`, `3d`, `2w`, `1d12h`.
    /// Policy windows and settings are read so; a calendar unit (`1mo`,
    /// `1y`) there is an error that says why.
    pub fn duration(&mut self, n: &Node, what: &str) -> Option<TimeDelta> {
        let s = self.duration_text(n, what)?;
        if let Ok(span) = Span::parse(&s)
            && span.months != 0
        {
            self.error(
                n,
                format!(
                    "{what}: `{}` counts calendar months or years, which only waits \
                     (`wait`, `within`) take, in each customer's own calendar; \
                     {what} is a fixed length of time, the same for every customer \
                     whatever the month or time zone: write it in days or weeks, e.g. 30d",
                    s.trim()
                ),
            );
            return None;
        }
        match duration::parse(&s) {
            Ok(d) if d > TimeDelta::zero() => Some(d),
            Ok(_) => {
                self.error(n, format!("{what}: must be longer than zero"));
                None
            }
            Err(e) => {
                self.error(n, format!("{what}: {e}"));
                None
            }
        }
    }

    /// The span of a wait, longer than zero: a fixed duration or calendar
    /// months and years (`1mo`, `1y6mo`, `1mo2d`), see [`Span`].
    pub fn span(&mut self, n: &Node, what: &str) -> Option<Span> {
        let s = self.duration_text(n, what)?;
        // `-1mo` reads as a span, signed: still not one a wait takes.
        match Span::parse(&s).or_else(|e| Span::parse_signed(&s).map_err(|_| e)) {
            Ok(span) if span.is_positive() => Some(span),
            Ok(_) => {
                self.error(n, format!("{what}: must be longer than zero"));
                None
            }
            Err(e) => {
                self.error(n, format!("{what}: {e}"));
                None
            }
        }
    }

    fn duration_text(&mut self, n: &Node, what: &str) -> Option<String> {
        match &n.value {
            Value::Str(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            _ => {
                self.error(n, format!("{what}: expected a duration such as 3d"));
                None
            }
        }
    }

    /// Days of the week: a list of `mon` … `sun` (or one name alone), at
    /// least one; each wrong name is an error at its place with the
    /// closest right one.
    pub fn weekdays(&mut self, n: &Node, what: &str) -> Option<Weekdays> {
        let one = std::slice::from_ref(n);
        let items = match &n.value {
            Value::Seq(items) => items.as_slice(),
            Value::Str(_) => one,
            other => {
                self.error(
                    n,
                    format!(
                        "{what}: expected a list of days such as [mon, tue, wed, thu, fri], \
                         found {}",
                        match other {
                            Value::Map(_) => "a mapping",
                            Value::Null => "nothing",
                            _ => "a value that is not a day",
                        }
                    ),
                );
                return None;
            }
        };
        if items.is_empty() {
            self.error(
                n,
                format!(
                    "{what}: the list of days is empty; name at least one, e.g. \
                     [mon, tue, wed, thu, fri] (without `{what}`, any day will do)"
                ),
            );
            return None;
        }
        let mut days = Weekdays::default();
        let mut ok = true;
        for item in items {
            let Some(name) = self.string(item, what) else {
                ok = false;
                continue;
            };
            match Weekdays::day(&name) {
                Ok(d) => days.insert(d),
                Err(e) => {
                    self.error(item, format!("{what}: {e}"));
                    ok = false;
                }
            }
        }
        ok.then_some(days)
    }

    /// A time of day on the 24-hour clock: `"10:00"`, `"7:30"`.
    pub fn time_of_day(&mut self, n: &Node, what: &str) -> Option<NaiveTime> {
        let s = self.string(n, what)?;
        let t = parse_time_of_day(&s);
        if t.is_none() {
            self.error(
                n,
                format!("{what}: `{s}` is not a time of day like \"10:00\""),
            );
        }
        t
    }

    /// A CEL expression, compiled; its place is kept for later messages.
    pub fn condition(&mut self, n: &Node, what: &str) -> Option<Condition> {
        let src = self.string(n, what)?;
        match Condition::compile(&src, n.line, n.col) {
            Ok(c) => Some(c),
            Err(e) => {
                self.error(n, format!("{what}: {e}"));
                None
            }
        }
    }

    pub fn category(&mut self, n: &Node) -> Option<Category> {
        let s = self.string(n, "category")?;
        let c = Category::parse(&s);
        if c.is_none() {
            self.error(
                n,
                format!("category: `{s}` is not one of transactional, value, promo"),
            );
        }
        c
    }

    pub fn scope(&mut self, n: &Node) -> Option<Scope> {
        match self.string(n, "scope").as_deref() {
            Some("order") => Some(Scope::Order),
            Some("customer") => Some(Scope::Customer),
            Some(other) => {
                self.error(n, format!("scope: `{other}` is not one of order, customer"));
                None
            }
            None => None,
        }
    }

    /// An event type; one that is not known is a warning (a typo, most likely),
    /// not an error, so that a shop may send its own types.
    pub fn event_type(&mut self, n: &Node, what: &str) -> Option<String> {
        let s = self.string(n, what)?;
        if !KNOWN_TYPES.contains(&s.as_str()) {
            let hint = match closest(&s, KNOWN_TYPES) {
                Some(c) => format!("did you mean `{c}`?"),
                None => "is it a typo?".into(),
            };
            self.warning(
                n,
                format!(
                    "{what}: `{s}` is not a known event type ({}); {hint}",
                    KNOWN_TYPES.join(", ")
                ),
            );
        }
        Some(s)
    }
}

/// `"10:00"` or `"7:30"`: one or two digits of hour, two of minute.
pub fn parse_time_of_day(s: &str) -> Option<NaiveTime> {
    let (h, m) = s.trim().split_once(':')?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return None;
    }
    NaiveTime::from_hms_opt(h.parse().ok()?, m.parse().ok()?, 0)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::sequence::yaml;

    #[test]
    fn time_of_day() {
        assert_eq!(
            parse_time_of_day("10:00"),
            NaiveTime::from_hms_opt(10, 0, 0)
        );
        assert_eq!(parse_time_of_day("7:30"), NaiveTime::from_hms_opt(7, 30, 0));
        assert_eq!(parse_time_of_day("24:00"), None);
        assert_eq!(parse_time_of_day("10"), None);
    }

    /// Steps and policies read durations and times through the same code, so
    /// they accept and reject the same things with the same words.
    #[test]
    fn one_reader_for_durations_and_times() {
        let file = Path::new("v.yaml");
        let root = yaml::parse(
            file,
            "a: 16h\nb: 0m\nc: 3\nd: {}\ne: \"8am\"\nf: \"21:00\"\n",
        )
        .unwrap();
        let Value::Map(entries) = &root.value else {
            panic!("not a map")
        };
        let mut r = Reader::new(file);
        assert_eq!(r.duration(&entries[0].1, "a"), Some(TimeDelta::hours(16)));
        assert_eq!(r.duration(&entries[1].1, "b"), None);
        assert_eq!(r.duration(&entries[2].1, "c"), None);
        assert_eq!(r.duration(&entries[3].1, "d"), None);
        assert_eq!(r.time_of_day(&entries[4].1, "e"), None);
        assert_eq!(
            r.time_of_day(&entries[5].1, "f"),
            NaiveTime::from_hms_opt(21, 0, 0)
        );
        let got: Vec<String> = r.diags.0.iter().map(|d| d.to_string()).collect();
        assert_eq!(
            got,
            [
                "v.yaml:2:4: b: must be longer than zero",
                "v.yaml:3:4: c: \"3\" has no unit; write e.g. 3d (s, m, h, d or w)",
                "v.yaml:4:4: d: expected a duration such as 3d",
                "v.yaml:5:4: e: `8am` is not a time of day like \"10:00\"",
            ]
        );
    }
}
