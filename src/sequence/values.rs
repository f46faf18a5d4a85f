//! The one reader for the typed values that sequences and policies share:
//! durations, times of day, CEL conditions, and the small vocabularies
//! (categories, scopes, event types). Each records a diagnostic at the node
//! when the value is wrong; `what` names the key in the message.

use chrono::{NaiveTime, TimeDelta};

use super::condition::Condition;
use super::duration;
use super::model::{Category, Scope};
use super::yaml::{Node, Reader, Value};
use crate::diagnostic::closest;
use crate::event::KNOWN_TYPES;

impl Reader<'_> {
    /// A duration longer than zero: `30m`, `2h`, `3d`, `2w`, `1d12h`.
    pub fn duration(&mut self, n: &Node, what: &str) -> Option<TimeDelta> {
        let s = match &n.value {
            Value::Str(s) => s.clone(),
            Value::Int(i) => i.to_string(),
            _ => {
                self.error(n, format!("{what}: expected a duration such as 3d"));
                return None;
            }
        };
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
