//! Date helpers: `date_add` (a timestamp moved by a duration, for `date`
//! and `relative`) and `relative` ("in 3 days", "3 nap múlva", "3天前"),
//! with CLDR's words for every locale from ICU4X `icu_experimental`.
//!
//! "Now" is `_now` at the data's root, the time the email is rendered:
//! the sender sets it to its clock's time (virtual in `simulate`), the
//! sample to the sample event's time, so that renders are repeatable.

use chrono::{DateTime, Datelike, Months, NaiveDate, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use fixed_decimal::Decimal as Fixed;
use handlebars::{Context, Handlebars, Helper, HelperDef, RenderContext, RenderError, ScopedJson};
use icu_experimental::relativetime::options::Numeric;
use icu_experimental::relativetime::{RelativeTimeFormatter, RelativeTimeFormatterOptions};
use icu_locale_core::{Locale, locale};
use serde_json::Value;
use writeable::Writeable;

use super::args::{Args, shown};
use super::{locale, root_str};
use crate::sequence::duration;

/// The customer's time zone (`_timezone`), UTC when unknown.
fn time_zone(ctx: &Context) -> Tz {
    root_str(ctx, "_timezone")
        .and_then(|z| z.parse().ok())
        .unwrap_or(Tz::UTC)
}

/// A timestamp argument: RFC 3339, or a date (`1990-04-02`, midnight in
/// the customer's time zone); `None` for null.
fn timestamp(a: &Args, v: &Value, tz: Tz) -> Result<Option<DateTime<Utc>>, RenderError> {
    let text = match v {
        Value::Null => return Ok(None),
        Value::String(s) => s.trim(),
        other => {
            return Err(a.fail(format!(
                "{} is not a timestamp such as order.placed_at",
                shown(other)
            )));
        }
    };
    if let Ok(t) = text.parse::<DateTime<Utc>>() {
        return Ok(Some(t));
    }
    if let Ok(d) = text.parse::<NaiveDate>() {
        return Ok(Some(local_midnight(d, tz)));
    }
    Err(a.fail(format!(
        "{text:?} is not a timestamp (RFC 3339, such as 2026-11-18T09:12:00Z) nor a date (2026-11-18)"
    )))
}

fn local_midnight(d: NaiveDate, tz: Tz) -> DateTime<Utc> {
    let midnight = d.and_hms_opt(0, 0, 0).expect("midnight exists");
    at_local(midnight, tz)
}

/// A local time as a UTC instant; a time skipped by a DST change is taken
/// an hour later.
fn at_local(local: chrono::NaiveDateTime, tz: Tz) -> DateTime<Utc> {
    tz.from_local_datetime(&local)
        .earliest()
        .or_else(|| {
            tz.from_local_datetime(&(local + TimeDelta::hours(1)))
                .earliest()
        })
        .map_or_else(|| local.and_utc(), |t| t.with_timezone(&Utc))
}

/// How far `date_add` moves a timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offset {
    /// `30m`, `2h`, `3d`, `2w` (and sums, `1d12h`): a fixed length of time.
    Fixed(TimeDelta),
    /// `1mo`, `1y` (12 months): calendar months in the customer's time zone.
    Months(i32),
}

/// `30d`, `-7d`, `1d12h`, `1mo`, `-1y`.
pub fn parse_offset(text: &str) -> Result<Offset, String> {
    let s = text.trim();
    let (sign, rest) = match s.strip_prefix('-') {
        Some(r) => (-1, r),
        None => (1, s.strip_prefix('+').unwrap_or(s)),
    };
    let calendar = rest
        .strip_suffix("mo")
        .map(|n| (n, 1))
        .or_else(|| rest.strip_suffix('y').map(|n| (n, 12)));
    if let Some((n, months)) = calendar {
        let n: i32 = n.parse().map_err(|_| {
            format!("{text:?} is not a duration; write e.g. 30d, 2w, 1mo or 1y (one calendar unit alone)")
        })?;
        let total = n
            .checked_mul(months)
            .filter(|m| *m <= 120)
            .ok_or_else(|| format!("{text:?} is longer than 10 years"))?;
        return Ok(Offset::Months(sign * total));
    }
    let d = duration::parse(rest).map_err(|e| format!("{e}, 1mo or 1y"))?;
    Ok(Offset::Fixed(d * sign))
}

/// `t` moved by `offset`; calendar months in `tz` (31 January + 1mo is the
/// end of February).
pub fn add(t: DateTime<Utc>, offset: Offset, tz: Tz) -> Option<DateTime<Utc>> {
    match offset {
        Offset::Fixed(d) => t.checked_add_signed(d),
        Offset::Months(m) => {
            let local = t.with_timezone(&tz).naive_local();
            let moved = match m >= 0 {
                true => local.checked_add_months(Months::new(m as u32)),
                false => local.checked_sub_months(Months::new(m.unsigned_abs())),
            }?;
            Some(at_local(moved, tz))
        }
    }
}

/// `{{date_add order.placed_at "30d"}}`: an RFC 3339 timestamp, for
/// `{{date (date_add order.placed_at "30d")}}`.
pub struct DateAddHelper;

impl HelperDef for DateAddHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        r: &'reg Handlebars<'reg>,
        ctx: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let a = Args::new(
            h,
            r,
            "date_add",
            "{{date_add order.placed_at \"30d\"}}",
            2,
            &[],
        )?;
        let tz = time_zone(ctx);
        let t = a.param(0, "a timestamp")?;
        let offset = match a.param(1, "a duration such as \"30d\"")? {
            Value::String(s) => parse_offset(s).map_err(|e| a.fail(e))?,
            other => {
                return Err(a.fail(format!(
                    "the duration is text in quotes such as \"30d\", not {}",
                    shown(other)
                )));
            }
        };
        let Some(t) = timestamp(&a, t, tz)? else {
            return Ok(ScopedJson::Derived(Value::Null));
        };
        let moved =
            add(t, offset, tz).ok_or_else(|| a.fail("the date falls outside the calendar"))?;
        Ok(ScopedJson::Derived(Value::String(
            moved.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        )))
    }
}

/// The unit `relative` counts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Second,
    Minute,
    Hour,
    Day,
    Week,
    Month,
    Year,
}

const UNITS: [(&str, Unit); 6] = [
    ("minute", Unit::Minute),
    ("hour", Unit::Hour),
    ("day", Unit::Day),
    ("week", Unit::Week),
    ("month", Unit::Month),
    ("year", Unit::Year),
];

/// Whole calendar months from `from` to `to` (negative into the past).
fn months_between(from: NaiveDate, to: NaiveDate) -> i64 {
    let mut m =
        (to.year() as i64 - from.year() as i64) * 12 + to.month() as i64 - from.month() as i64;
    if to > from && to.day() < from.day() {
        m -= 1;
    } else if to < from && to.day() > from.day() {
        m += 1;
    }
    m
}

/// How far `t` is from `now`, in `unit` or (without one) the unit a
/// person would pick: under a minute "now", then minutes, then hours
/// under a day, then calendar days in `tz` under a week, weeks under four,
/// months under a year, years. Counts are whole units, toward zero.
pub fn distance(t: DateTime<Utc>, now: DateTime<Utc>, tz: Tz, unit: Option<Unit>) -> (Unit, i64) {
    let delta = t - now;
    let days = (t.with_timezone(&tz).date_naive() - now.with_timezone(&tz).date_naive()).num_days();
    let months = || {
        months_between(
            now.with_timezone(&tz).date_naive(),
            t.with_timezone(&tz).date_naive(),
        )
    };
    let at_least_one = |n: i64| match (n, days.signum()) {
        (0, s) => s,
        (n, _) => n,
    };
    let unit = unit.unwrap_or({
        let secs = delta.num_seconds().abs();
        match () {
            _ if secs < 60 => Unit::Second,
            _ if secs < 3600 => Unit::Minute,
            _ if secs < 86_400 => Unit::Hour,
            _ if days.abs() < 7 => Unit::Day,
            _ if days.abs() < 28 => Unit::Week,
            _ if days.abs() < 365 => Unit::Month,
            _ => Unit::Year,
        }
    });
    let count = match unit {
        Unit::Second => 0,
        Unit::Minute => delta.num_minutes(),
        Unit::Hour => delta.num_hours(),
        Unit::Day => days,
        Unit::Week => days / 7,
        Unit::Month if days.abs() >= 28 => at_least_one(months()),
        Unit::Month => months(),
        Unit::Year if days.abs() >= 365 => at_least_one(months() / 12),
        Unit::Year => months() / 12,
    };
    (unit, count)
}

/// `count` units from now in words of `locale` (CLDR): "in 3 days",
/// "3 days ago"; days in words where the language has them ("yesterday",
/// "today", "tomorrow"; Hungarian "tegnapelőtt", two days ago); "now", "this
/// week", … for zero.
pub fn format_relative(unit: Unit, count: i64, locale: &Locale) -> String {
    let words = |l: &Locale| {
        let numeric = match (unit, count) {
            (Unit::Day, _) | (_, 0) => Numeric::Auto,
            _ => Numeric::Always,
        };
        let options = RelativeTimeFormatterOptions::default().with_numeric(numeric);
        let prefs = l.into();
        let f = match unit {
            Unit::Second => RelativeTimeFormatter::try_new_long_second(prefs, options),
            Unit::Minute => RelativeTimeFormatter::try_new_long_minute(prefs, options),
            Unit::Hour => RelativeTimeFormatter::try_new_long_hour(prefs, options),
            Unit::Day => RelativeTimeFormatter::try_new_long_day(prefs, options),
            Unit::Week => RelativeTimeFormatter::try_new_long_week(prefs, options),
            Unit::Month => RelativeTimeFormatter::try_new_long_month(prefs, options),
            Unit::Year => RelativeTimeFormatter::try_new_long_year(prefs, options),
        }
        .expect("compiled data has every locale, falling back to the root");
        f.format(Fixed::from(count)).write_to_string().into_owned()
    };
    let text = words(locale);
    // A language CLDR has no words for gets the root's `+3 d`: English
    // reads better.
    if locale.id.language != locale!("und").id.language && text == words(&locale!("und")) {
        return words(&locale!("en"));
    }
    text
}

/// `{{relative order.placed_at}}`, `{{relative ts unit="day"}}`.
pub struct RelativeHelper;

impl HelperDef for RelativeHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        r: &'reg Handlebars<'reg>,
        ctx: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let a = Args::new(
            h,
            r,
            "relative",
            "{{relative order.placed_at}}",
            1,
            &["unit"],
        )?;
        let tz = time_zone(ctx);
        let unit = match a.option_str("unit")? {
            None => None,
            Some(u) => Some(
                UNITS
                    .iter()
                    .find(|(n, _)| *n == u)
                    .map(|(_, unit)| *unit)
                    .ok_or_else(|| {
                        a.fail(format!(
                            "unit={u:?} is not a unit; use minute, hour, day, week, month or year"
                        ))
                    })?,
            ),
        };
        let Some(t) = timestamp(&a, a.param(0, "a timestamp")?, tz)? else {
            return Ok(ScopedJson::Derived(Value::Null));
        };
        let now = root_str(ctx, "_now")
            .and_then(|n| n.parse::<DateTime<Utc>>().ok())
            .ok_or_else(|| {
                a.fail(
                    "the data has no `_now` (an RFC 3339 timestamp at its root: the time the \
                     email is rendered, which the sender and the preview set)",
                )
            })?;
        let (unit, count) = distance(t, now, tz, unit);
        Ok(ScopedJson::Derived(Value::String(format_relative(
            unit,
            count,
            &locale::words(ctx),
        ))))
    }
}
