//! `_policies.yaml`: the default locale and time zone, the sender, quiet
//! hours, the frequency cap, the promo share, sunset, the per-customer
//! ceiling, how late an email may go (`stale_after`) and open and click
//! `tracking`. Every key is optional; a rule that is absent does not apply,
//! except the ceiling and `stale_after`, safety nets that apply at their
//! defaults, and `tracking`, on for value and promo mail by default.

use std::path::Path;

use super::duration;
use super::model::{
    Categories, Category, Ceiling, FrequencyCap, Policies, PromoShare, QuietHours, Sender,
    StaleAfter, Tracking,
};
use super::yaml::{self, Node, Reader, Value};
use crate::diagnostic::Diagnostics;
use crate::event::EmailAddress;

const POLICY_KEYS: &[&str] = &[
    "default_locale",
    "default_timezone",
    "sender",
    "quiet_hours",
    "frequency_cap",
    "promo_share",
    "sunset",
    "ceiling",
    "stale_after",
    "tracking",
];

/// Reads the policies file. What is wrong is reported and left at its
/// default, so that the other rules still load.
pub fn parse_policies(file: &Path, text: &str) -> (Policies, Diagnostics) {
    let mut p = Policies::default();
    let root = match yaml::parse(file, text) {
        Ok(n) => n,
        Err(d) => return (p, Diagnostics(vec![d])),
    };
    let mut r = Reader::new(file);
    let Some(mut f) = r.map(&root, "policies") else {
        return (p, r.diags);
    };
    if let Some(n) = f.take("default_locale")
        && let Some(s) = r.string(n, "default_locale")
    {
        p.default_locale = s;
    }
    if let Some(n) = f.take("default_timezone")
        && let Some(s) = r.string(n, "default_timezone")
    {
        match s.parse::<chrono_tz::Tz>() {
            Ok(tz) => p.default_timezone = tz,
            Err(_) => r.error(
                n,
                format!("default_timezone: `{s}` is not an IANA time zone like Europe/Budapest"),
            ),
        }
    }
    if let Some(n) = f.take("sender") {
        sender(&mut r, n, &mut p.sender);
    }
    if let Some(n) = f.take("quiet_hours") {
        p.quiet_hours = quiet_hours(&mut r, n);
    }
    if let Some(n) = f.take("frequency_cap") {
        p.frequency_cap = frequency_cap(&mut r, n);
    }
    if let Some(n) = f.take("promo_share") {
        p.promo_share = promo_share(&mut r, n);
    }
    if let Some(n) = f.take("sunset") {
        p.sunset_after_unopened = sunset(&mut r, n);
    }
    if let Some(n) = f.take("ceiling") {
        ceiling(&mut r, n, &mut p.ceiling);
    }
    if let Some(n) = f.take("stale_after") {
        stale_after(&mut r, n, &mut p.stale_after);
    }
    if let Some(n) = f.take("tracking") {
        tracking(&mut r, n, &mut p.tracking);
    }
    r.finish(f, "policies", POLICY_KEYS);
    (p, r.diags)
}

/// Sets what is valid of `sender: {from, reply_to}` on `out`.
fn sender(r: &mut Reader, n: &Node, out: &mut Sender) {
    let Some(mut s) = r.map(n, "sender") else {
        return;
    };
    match s.take("from") {
        Some(from) => {
            if let Some(v) = r.string(from, "sender.from") {
                let sender = Sender {
                    from: v.clone(),
                    reply_to: None,
                };
                let (_, email) = sender.name_and_email();
                if EmailAddress::parse(&email).is_err() {
                    r.error(from, format!("sender.from: `{v}` has no valid address"));
                }
                out.from = v;
            }
        }
        None => r.error(n, "sender: missing `from`"),
    }
    if let Some(rt) = s.take("reply_to")
        && let Some(v) = r.string(rt, "sender.reply_to")
    {
        if EmailAddress::parse(&v).is_err() {
            r.error(
                rt,
                format!("sender.reply_to: `{v}` is not an email address"),
            );
        }
        out.reply_to = Some(v);
    }
    r.finish(s, "sender", &["from", "reply_to"]);
}

fn quiet_hours(r: &mut Reader, n: &Node) -> Option<QuietHours> {
    let mut q = r.map(n, "quiet_hours")?;
    let mut time = |key: &str, r: &mut Reader| match q.take(key) {
        Some(t) => r.time_of_day(t, &format!("quiet_hours.{key}")),
        None => {
            r.error(n, format!("quiet_hours: missing `{key}`"));
            None
        }
    };
    let start = time("start", r);
    let end = time("end", r);
    r.finish(q, "quiet_hours", &["start", "end"]);
    Some(QuietHours {
        start: start?,
        end: end?,
    })
}

fn frequency_cap(r: &mut Reader, n: &Node) -> Option<FrequencyCap> {
    let mut c = r.map(n, "frequency_cap")?;
    let max = c.take("max").and_then(|m| r.uint(m, "frequency_cap.max"));
    let per = c
        .take("per")
        .and_then(|d| r.duration(d, "frequency_cap.per"));
    if !c.has("max") || !c.has("per") {
        r.error(n, "frequency_cap: needs both `max` and `per`");
    }
    if max == Some(0) {
        r.error(n, "frequency_cap.max: must be at least 1");
    }
    r.finish(c, "frequency_cap", &["max", "per"]);
    Some(FrequencyCap {
        max: max.filter(|m| *m > 0)?,
        per: per?,
    })
}

fn promo_share(r: &mut Reader, n: &Node) -> Option<PromoShare> {
    let mut c = r.map(n, "promo_share")?;
    let max = c.take("max_percent").and_then(|m| {
        let v = r.uint(m, "promo_share.max_percent")?;
        if v > 100 {
            r.error(m, "promo_share.max_percent: must be between 0 and 100");
            return None;
        }
        Some(v)
    });
    let window = c
        .take("window")
        .and_then(|d| r.duration(d, "promo_share.window"));
    if !c.has("max_percent") || !c.has("window") {
        r.error(n, "promo_share: needs both `max_percent` and `window`");
    }
    r.finish(c, "promo_share", &["max_percent", "window"]);
    Some(PromoShare {
        max_percent: max?,
        window: window?,
    })
}

fn sunset(r: &mut Reader, n: &Node) -> Option<u32> {
    let mut c = r.map(n, "sunset")?;
    let mut after = None;
    match c.take("after_unopened") {
        Some(a) => {
            if let Some(v) = r.uint(a, "sunset.after_unopened") {
                if v == 0 {
                    r.error(a, "sunset.after_unopened: must be at least 1");
                } else {
                    after = Some(v);
                }
            }
        }
        None => r.error(n, "sunset: missing `after_unopened`"),
    }
    r.finish(c, "sunset", &["after_unopened"]);
    after
}

/// `ceiling: {enrollments, emails, per}`: each key optional, the others keep
/// their defaults.
fn ceiling(r: &mut Reader, n: &Node, out: &mut Ceiling) {
    let Some(mut c) = r.map(n, "ceiling") else {
        return;
    };
    let mut count = |key: &str, r: &mut Reader, out: &mut u32| {
        if let Some(v) = c.take(key) {
            match r.uint(v, &format!("ceiling.{key}")) {
                Some(0) => r.error(v, format!("ceiling.{key}: must be at least 1")),
                Some(m) => *out = m,
                None => {}
            }
        }
    };
    count("enrollments", r, &mut out.enrollments);
    count("emails", r, &mut out.emails);
    if let Some(per) = c.take("per").and_then(|d| r.duration(d, "ceiling.per")) {
        out.per = per;
    }
    r.finish(c, "ceiling", &["enrollments", "emails", "per"]);
}

/// `stale_after: {transactional, value, promo}`: each key optional, the
/// others keep their defaults; at least [`StaleAfter::MIN`].
fn stale_after(r: &mut Reader, n: &Node, out: &mut StaleAfter) {
    let Some(mut c) = r.map(n, "stale_after") else {
        return;
    };
    for category in [Category::Transactional, Category::Value, Category::Promo] {
        let key = category.as_str();
        let Some(v) = c.take(key) else { continue };
        let what = format!("stale_after.{key}");
        match r.duration(v, &what) {
            Some(d) if d < StaleAfter::MIN => r.error(
                v,
                format!(
                    "{what}: must be at least {} (shorter would skip mail that is only \
                     retried or deferred)",
                    duration::format(StaleAfter::MIN)
                ),
            ),
            Some(d) => match category {
                Category::Transactional => out.transactional = d,
                Category::Value => out.value = d,
                Category::Promo => out.promo = d,
            },
            None => {}
        }
    }
    r.finish(c, "stale_after", &["transactional", "value", "promo"]);
}

/// `tracking: {opens: [value, promo], clicks: [value, promo]}`: each key
/// optional (an absent one keeps its default, value and promo); an empty
/// list turns that kind of tracking off.
fn tracking(r: &mut Reader, n: &Node, out: &mut Tracking) {
    let Some(mut t) = r.map(n, "tracking") else {
        return;
    };
    for key in ["opens", "clicks"] {
        let Some(list) = t.take(key) else { continue };
        let what = format!("tracking.{key}");
        let mut set = Categories::default();
        let mut ok = true;
        for item in r.seq(list, &what) {
            let Some(name) = r.string(item, &what) else {
                ok = false;
                continue;
            };
            match Category::parse(&name) {
                Some(c) => set.insert(c),
                None => {
                    ok = false;
                    r.error(
                        item,
                        format!(
                            "{what}: `{name}` is not a category (transactional, value or promo)"
                        ),
                    );
                }
            }
        }
        if ok && matches!(list.value, Value::Seq(_) | Value::Null) {
            match key {
                "opens" => out.opens = set,
                _ => out.clicks = set,
            }
        }
    }
    r.finish(t, "tracking", &["opens", "clicks"]);
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

    #[test]
    fn policies_are_read_and_checked() {
        let text = "default_locale: en\nquiet_hours: {start: \"21:00\", end: \"08:00\"}\nfrequency_cap: {max: 1, per: 16h}\npromo_share: {max_percent: 20, window: 30d}\nsunset: {after_unopened: 8}\nsender: {from: \"Shop <hello@shop.example>\"}\n";
        let (p, d) = parse_policies(Path::new("p.yaml"), text);
        assert!(d.0.is_empty(), "{d}");
        assert_eq!(p.frequency_cap.unwrap().max, 1);
        assert_eq!(p.sender.name_and_email().1, "hello@shop.example");
        let (_, d) = parse_policies(
            Path::new("p.yaml"),
            "quiet_hours: {start: \"25:00\", end: \"08:00\"}\npromo_share: {max_percent: 120, window: 30d}\nsunsett: {}\n",
        );
        let s = d.to_string();
        assert!(s.contains("p.yaml:1:22: quiet_hours.start"), "{s}");
        assert!(s.contains("p.yaml:2:28: promo_share.max_percent"), "{s}");
        assert!(s.contains("p.yaml:3:1: unknown key `sunsett`"), "{s}");
    }

    #[test]
    fn the_ceiling_has_defaults_and_each_key_can_be_set() {
        let (p, d) = parse_policies(Path::new("p.yaml"), "default_locale: en\n");
        assert!(d.0.is_empty(), "{d}");
        assert_eq!(p.ceiling, Ceiling::default());
        let (p, d) = parse_policies(Path::new("p.yaml"), "ceiling: {emails: 20}\n");
        assert!(d.0.is_empty(), "{d}");
        assert_eq!((p.ceiling.enrollments, p.ceiling.emails), (100, 20));
        let (_, d) = parse_policies(
            Path::new("p.yaml"),
            "ceiling: {enrollments: 0, per: 15000000w, mails: 3}\n",
        );
        let s = d.to_string();
        assert!(
            s.contains("p.yaml:1:24: ceiling.enrollments: must be at least 1"),
            "{s}"
        );
        assert!(
            s.contains("p.yaml:1:32: ceiling.per: \"15000000w\" is longer than 3650d"),
            "{s}"
        );
        assert!(s.contains("unknown key `mails`"), "{s}");
    }

    #[test]
    fn stale_after_has_defaults_and_is_checked() {
        let (p, d) = parse_policies(Path::new("p.yaml"), "default_locale: en\n");
        assert!(d.0.is_empty(), "{d}");
        assert_eq!(p.stale_after, StaleAfter::default());
        assert_eq!(
            p.stale_after.of(Category::Transactional),
            TimeDelta::days(3)
        );
        assert_eq!(p.stale_after.of(Category::Promo), TimeDelta::days(2));
        let (p, d) = parse_policies(Path::new("p.yaml"), "stale_after: {value: 12h}\n");
        assert!(d.0.is_empty(), "{d}");
        assert_eq!(p.stale_after.value, TimeDelta::hours(12));
        assert_eq!(
            p.stale_after.transactional,
            TimeDelta::days(3),
            "default kept"
        );
        let (p, d) = parse_policies(
            Path::new("p.yaml"),
            "stale_after: {transactional: 30m, value: 3x, promo: 4000d, marketing: 1d}\n",
        );
        let s = d.to_string();
        assert!(
            s.contains("p.yaml:1:30: stale_after.transactional: must be at least 1h"),
            "{s}"
        );
        assert!(
            s.contains("p.yaml:1:42: stale_after.value: \"3x\" is not a duration"),
            "{s}"
        );
        assert!(
            s.contains("p.yaml:1:53: stale_after.promo: \"4000d\" is longer than 3650d"),
            "{s}"
        );
        assert!(
            s.contains("p.yaml:1:60: unknown key `marketing` in stale_after"),
            "{s}"
        );
        assert_eq!(
            p.stale_after,
            StaleAfter::default(),
            "what is wrong is left at its default"
        );
    }

    #[test]
    fn tracking_is_on_for_marketing_by_default_and_can_be_switched() {
        let (p, d) = parse_policies(Path::new("p.yaml"), "default_locale: en\n");
        assert!(d.0.is_empty(), "{d}");
        assert_eq!(p.tracking, Tracking::default());
        assert!(p.tracking.opens.contains(Category::Value));
        assert!(p.tracking.clicks.contains(Category::Promo));
        assert!(!p.tracking.opens.contains(Category::Transactional));
        let (p, d) = parse_policies(
            Path::new("p.yaml"),
            "tracking: {opens: [], clicks: [promo, transactional]}\n",
        );
        assert!(d.0.is_empty(), "{d}");
        assert_eq!(p.tracking.opens, Categories::default());
        assert!(p.tracking.clicks.contains(Category::Transactional));
        assert!(!p.tracking.clicks.contains(Category::Value));
        let (p, d) = parse_policies(
            Path::new("p.yaml"),
            "tracking: {opens: [value, promos], clicks: yes, pixels: []}\n",
        );
        let s = d.to_string();
        assert!(
            s.contains("p.yaml:1:27: tracking.opens: `promos` is not a category"),
            "{s}"
        );
        assert!(s.contains("p.yaml:1:44: tracking.clicks"), "{s}");
        assert!(s.contains("unknown key `pixels` in tracking"), "{s}");
        assert_eq!(
            p.tracking,
            Tracking::default(),
            "what is wrong is left at its default"
        );
    }

    /// Reproduction 4 of issue 7: windows that ended past the calendar.
    #[test]
    fn policy_windows_are_ten_years_at_most() {
        let (_, d) = parse_policies(
            Path::new("p.yaml"),
            "frequency_cap: {max: 1, per: 15000000w}\npromo_share: {max_percent: 20, window: 15000000w}\n",
        );
        let s = d.to_string();
        assert!(s.contains("p.yaml:1:30: frequency_cap.per: \"15000000w\" is longer than 3650d (about 10 years)"), "{s}");
        assert!(
            s.contains("p.yaml:2:40: promo_share.window: \"15000000w\" is longer than 3650d"),
            "{s}"
        );
    }

    /// Policy windows are fixed lengths of time: a calendar unit is an error
    /// at its place that says why, in each window.
    #[test]
    fn policy_windows_refuse_calendar_units() {
        let (p, d) = parse_policies(
            Path::new("p.yaml"),
            "frequency_cap: {max: 1, per: 1mo}\npromo_share: {max_percent: 20, window: 1y}\n\
             ceiling: {per: 1mo2d}\nstale_after: {value: 1mo}\n",
        );
        let s = d.to_string();
        for (place, what, text) in [
            ("p.yaml:1:30", "frequency_cap.per", "1mo"),
            ("p.yaml:2:40", "promo_share.window", "1y"),
            ("p.yaml:3:16", "ceiling.per", "1mo2d"),
            ("p.yaml:4:22", "stale_after.value", "1mo"),
        ] {
            let want = format!(
                "{place}: {what}: `{text}` counts calendar months or years, which only waits \
                 (`wait`, `within`) take, in each customer's own calendar; {what} is a fixed \
                 length of time"
            );
            assert!(s.contains(&want), "missing {want:?} in {s}");
        }
        assert_eq!(d.0.len(), 4, "{s}");
        assert_eq!(p.frequency_cap, None);
        assert_eq!(p.stale_after, StaleAfter::default());
    }
}
