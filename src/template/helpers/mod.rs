//! Template helpers. `money` and `date` (below): formatted for the
//! customer's locale and time zone, which the renderer puts at the root of
//! the data as `_locale`, `_timezone`. The others, registered by
//! [`register`] with them: text ([`text`]), numbers ([`numbers`]) and dates
//! ([`time`]); locale rules come from ICU4X's CLDR data ([`locale`] says
//! which locale each follows). The built-in `eq`, `ne`, `gt`, `gte`, `lt`,
//! `lte`, `and`, `or` and `not` of handlebars compare; `len` replaces
//! handlebars' own to count characters, not bytes ([`text::len`]).

mod args;
mod locale;
pub mod numbers;
pub mod text;
pub mod time;

#[cfg(test)]
mod helper_tests;

use chrono::{DateTime, Locale, Utc};
use chrono_tz::Tz;
use handlebars::{
    Context, Handlebars, Helper, HelperDef, HelperResult, JsonRender, Output, RenderContext,
    RenderError, RenderErrorReason,
};
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::Value;

/// Registers every helper of aftercare's templates on `hb`.
pub fn register(hb: &mut Handlebars) {
    hb.register_helper("money", Box::new(MoneyHelper));
    hb.register_helper("date", Box::new(DateHelper));
    hb.register_helper("upper", Box::new(text::CaseHelper(text::Case::Upper)));
    hb.register_helper("lower", Box::new(text::CaseHelper(text::Case::Lower)));
    hb.register_helper(
        "capitalize",
        Box::new(text::CaseHelper(text::Case::Capitalize)),
    );
    hb.register_helper("title", Box::new(text::CaseHelper(text::Case::Title)));
    hb.register_helper("truncate", Box::new(text::TruncateHelper));
    hb.register_helper("len", Box::new(text::len));
    hb.register_helper("default", Box::new(text::DefaultHelper));
    hb.register_helper("number", Box::new(numbers::NumberHelper));
    hb.register_helper("percent", Box::new(numbers::PercentHelper));
    hb.register_helper("plural", Box::new(numbers::PluralHelper));
    hb.register_helper("range", Box::new(numbers::RangeHelper));
    hb.register_helper("date_add", Box::new(time::DateAddHelper));
    hb.register_helper("relative", Box::new(time::RelativeHelper));
}

fn root_str<'a>(ctx: &'a Context, key: &str) -> Option<&'a str> {
    ctx.data().get(key).and_then(Value::as_str)
}

fn language(locale: &str) -> &str {
    locale.split(['-', '_']).next().unwrap_or("en")
}

fn param<'a>(h: &'a Helper, i: usize, helper: &str) -> Result<&'a Value, RenderError> {
    h.param(i)
        .map(|p| p.value())
        .ok_or_else(|| RenderErrorReason::ParamNotFoundForIndex(helper_name(helper), i).into())
}

fn helper_name(h: &str) -> &'static str {
    match h {
        "money" => "money",
        _ => "date",
    }
}

/// `{{money amount currency}}`: `€129.90` in English, `129,90 €` in Hungarian.
pub struct MoneyHelper;

impl HelperDef for MoneyHelper {
    fn call<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        ctx: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
        out: &mut dyn Output,
    ) -> HelperResult {
        let amount = param(h, 0, "money")?;
        let currency = match param(h, 1, "money")? {
            Value::String(s) => std::borrow::Cow::Borrowed(s.as_str()),
            other => std::borrow::Cow::Owned(other.render()),
        };
        let amount: Decimal = match amount {
            Value::Null => return Ok(()),
            Value::String(s) => s.parse(),
            Value::Number(n) => n.to_string().parse(),
            other => {
                return Err(
                    RenderErrorReason::Other(format!("money: {other} is not an amount")).into(),
                );
            }
        }
        .map_err(|_| RenderErrorReason::Other(format!("money: {amount} is not an amount")))?;
        let locale = root_str(ctx, "_locale").unwrap_or("en");
        out.write(&format_money(amount, &currency, locale))?;
        Ok(())
    }
}

/// Digits after the decimal point that people expect for a currency.
fn minor_units(currency: &str) -> u32 {
    match currency {
        "JPY" | "KRW" | "HUF" | "CLP" | "ISK" | "VND" | "TWD" => 0,
        _ => 2,
    }
}

fn symbol(currency: &str) -> Option<&'static str> {
    Some(match currency {
        "EUR" => "€",
        "USD" => "$",
        "GBP" => "£",
        "HUF" => "Ft",
        "THB" => "฿",
        "BGN" => "лв.",
        "CNY" | "JPY" => "¥",
        "PLN" => "zł",
        "CZK" => "Kč",
        _ => return None,
    })
}

pub fn format_money(amount: Decimal, currency: &str, locale: &str) -> String {
    use std::fmt::Write;
    let digits = minor_units(currency);
    let rounded = amount.round_dp_with_strategy(digits, RoundingStrategy::MidpointAwayFromZero);
    let negative = rounded.is_sign_negative() && !rounded.is_zero();
    let mut plain = String::with_capacity(32);
    let _ = write!(plain, "{:.*}", digits as usize, rounded.abs());
    let (int, frac) = plain.split_once('.').unwrap_or((&plain, ""));
    // Separators and symbol placement by language.
    let lang = language(locale);
    let (group, point, symbol_after) = match lang {
        "hu" | "bg" | "cs" | "pl" | "fr" | "sv" | "fi" | "ru" | "uk" => ('\u{a0}', ',', true),
        "de" | "nl" | "es" | "it" | "pt" | "da" => ('.', ',', true),
        _ => (',', '.', false),
    };
    let symbol = symbol(currency);
    let before = symbol.filter(|s| !symbol_after && s.chars().count() == 1);
    let mut out = String::with_capacity(plain.len() + 16);
    if negative {
        out.push('-');
    }
    if let Some(s) = before {
        out.push_str(s);
    }
    // The integer part is ASCII digits.
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(group);
        }
        out.push(c);
    }
    if !frac.is_empty() {
        out.push(point);
        out.push_str(frac);
    }
    if before.is_none() {
        out.push('\u{a0}');
        out.push_str(symbol.unwrap_or(currency));
    }
    out
}

/// `{{date order.placed_at}}` or `{{date order.placed_at "%d.%m.%Y"}}`, in the
/// customer's time zone and language.
pub struct DateHelper;

impl HelperDef for DateHelper {
    fn call<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        ctx: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
        out: &mut dyn Output,
    ) -> HelperResult {
        let value = param(h, 0, "date")?;
        let text = match value {
            Value::Null => return Ok(()),
            Value::String(s) => s,
            other => {
                return Err(
                    RenderErrorReason::Other(format!("date: {other} is not a timestamp")).into(),
                );
            }
        };
        let t: DateTime<Utc> = text.parse().map_err(|_| {
            RenderErrorReason::Other(format!("date: {text:?} is not an RFC 3339 timestamp"))
        })?;
        let tz: Tz = root_str(ctx, "_timezone")
            .and_then(|z| z.parse().ok())
            .unwrap_or(Tz::UTC);
        let locale = root_str(ctx, "_locale").unwrap_or("en");
        let custom = h.param(1).map(|p| p.value().render());
        let (fmt, chrono_locale) = date_style(locale);
        // The built-in formats are known to be valid.
        if let Some(fmt) = &custom
            && chrono::format::StrftimeItems::new(fmt)
                .any(|i| matches!(i, chrono::format::Item::Error))
        {
            return Err(RenderErrorReason::Other(format!(
                "date: {fmt:?} is not a valid date format"
            ))
            .into());
        }
        let fmt = custom.as_deref().unwrap_or(fmt);
        write!(
            out,
            "{}",
            t.with_timezone(&tz).format_localized(fmt, chrono_locale)
        )?;
        Ok(())
    }
}

/// The long date format and the chrono locale for a language.
fn date_style(locale: &str) -> (&'static str, Locale) {
    match language(locale) {
        "hu" => ("%Y. %B %-d.", Locale::hu_HU),
        "bg" => ("%-d %B %Y г.", Locale::bg_BG),
        "th" => ("%-d %B %Y", Locale::th_TH),
        "zh" => ("%Y年%-m月%-d日", Locale::zh_CN),
        "de" => ("%-d. %B %Y", Locale::de_DE),
        "fr" => ("%-d %B %Y", Locale::fr_FR),
        "en" if locale.ends_with("US") => ("%B %-d, %Y", Locale::en_US),
        _ => ("%-d %B %Y", Locale::en_GB),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(a: &str, c: &str, l: &str) -> String {
        format_money(a.parse().unwrap(), c, l)
    }

    #[test]
    fn money_by_currency_and_locale() {
        assert_eq!(m("129.90", "EUR", "en"), "€129.90");
        assert_eq!(m("1234.5", "USD", "en-US"), "$1,234.50");
        assert_eq!(m("129.90", "EUR", "hu-HU"), "129,90\u{a0}€");
        assert_eq!(m("12990", "HUF", "hu"), "12\u{a0}990\u{a0}Ft");
        assert_eq!(
            m("1234567.891", "BGN", "bg"),
            "1\u{a0}234\u{a0}567,89\u{a0}лв."
        );
        assert_eq!(m("99", "THB", "th"), "฿99.00");
        assert_eq!(m("5.5", "XYZ", "en"), "5.50\u{a0}XYZ");
        assert_eq!(m("-0.005", "EUR", "en"), "-€0.01");
        assert_eq!(m("1000", "JPY", "zh"), "¥1,000");
    }
}
