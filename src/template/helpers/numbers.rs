//! Number helpers: `number` and `percent` in the customer's locale (CLDR
//! separators and percent patterns, from ICU4X `icu_decimal` and
//! `icu_experimental`), `plural` (CLDR plural rules of the template's
//! language, from `icu_plurals`) and `range`, for `{{#each}}`.

use fixed_decimal::Decimal as Fixed;
use handlebars::{Context, Handlebars, Helper, HelperDef, RenderContext, RenderError, ScopedJson};
use icu_decimal::DecimalFormatter;
use icu_experimental::dimension::percent::formatter::PercentFormatter;
use icu_locale_core::Locale;
use icu_plurals::{PluralCategory, PluralRules};
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::Value;
use writeable::Writeable;

use super::args::{Args, number, shown, whole};
use super::locale;

/// Fraction digits shown when `decimals=` is not given: as many as the
/// value has, at most three (as JavaScript's `Intl.NumberFormat`).
const MAX_AUTO_DECIMALS: u32 = 3;

/// `value` rounded (half away from zero, as `money`) to `decimals`
/// fraction digits, all of them shown; or, without `decimals`, to at most
/// three, trailing zeros dropped.
fn fixed(value: Decimal, decimals: Option<u32>) -> Fixed {
    let digits = decimals.unwrap_or(MAX_AUTO_DECIMALS);
    let mut rounded = value.round_dp_with_strategy(digits, RoundingStrategy::MidpointAwayFromZero);
    if decimals.is_none() {
        rounded = rounded.normalize();
    }
    if rounded.is_zero() {
        rounded.set_sign_positive(true);
    }
    let mut f: Fixed = rounded
        .to_string()
        .parse()
        .expect("a decimal's digits are a fixed decimal");
    if let Some(d) = decimals {
        f.pad_end(-(d as i16));
    }
    f
}

/// `value` with the separators of `locale`: `1,234.5` in English,
/// `1 234,5` in Hungarian and Bulgarian.
pub fn format_number(value: Decimal, decimals: Option<u32>, locale: &Locale) -> String {
    let formatter = DecimalFormatter::try_new(locale.into(), Default::default())
        .expect("compiled data has every locale, falling back to the root");
    formatter
        .format(&fixed(value, decimals))
        .write_to_string()
        .into_owned()
}

/// `fraction` (0.15) as a percentage (`15%`) in `locale`'s pattern.
pub fn format_percent(fraction: Decimal, decimals: Option<u32>, locale: &Locale) -> String {
    let hundredfold = fraction * Decimal::ONE_HUNDRED;
    let formatter = PercentFormatter::try_new(locale.into(), Default::default())
        .expect("compiled data has every locale, falling back to the root");
    let value = fixed(hundredfold, Some(decimals.unwrap_or(0)));
    formatter.format(&value).write_to_string().into_owned()
}

/// Reads a number argument; null gives `None` (it renders empty).
fn number_arg(a: &Args, v: &Value, usage_hint: &str) -> Result<Option<Decimal>, RenderError> {
    match v {
        Value::Null => Ok(None),
        _ => number(v)
            .map(Some)
            .ok_or_else(|| a.fail(format!("{} is not a number{usage_hint}", shown(v)))),
    }
}

/// `{{number value}}`, `{{number value decimals=2}}`.
pub struct NumberHelper;

impl HelperDef for NumberHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        r: &'reg Handlebars<'reg>,
        ctx: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let a = Args::new(h, r, "number", "{{number value}}", 1, &["decimals"])?;
        let decimals = a.decimals()?;
        let Some(value) = number_arg(&a, a.param(0, "a number")?, "")? else {
            return Ok(ScopedJson::Derived(Value::Null));
        };
        let text = format_number(value, decimals, &locale::customer(ctx));
        Ok(ScopedJson::Derived(Value::String(text)))
    }
}

/// `{{percent 0.15}}` → `15%`; `decimals=1` → `15.0%`.
pub struct PercentHelper;

impl HelperDef for PercentHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        r: &'reg Handlebars<'reg>,
        ctx: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let a = Args::new(h, r, "percent", "{{percent 0.15}}", 1, &["decimals"])?;
        let decimals = a.decimals()?;
        let hint = " (a fraction: 0.15 is 15%)";
        let Some(value) = number_arg(&a, a.param(0, "a fraction")?, hint)? else {
            return Ok(ScopedJson::Derived(Value::Null));
        };
        let text = format_percent(value, decimals, &locale::customer(ctx));
        Ok(ScopedJson::Derived(Value::String(text)))
    }
}

const CATEGORIES: [(&str, PluralCategory); 6] = [
    ("zero", PluralCategory::Zero),
    ("one", PluralCategory::One),
    ("two", PluralCategory::Two),
    ("few", PluralCategory::Few),
    ("many", PluralCategory::Many),
    ("other", PluralCategory::Other),
];

/// The CLDR plural category of `count` in `locale`'s language.
pub fn plural_category(count: Decimal, locale: &Locale) -> PluralCategory {
    let rules = PluralRules::try_new_cardinal(locale.into())
        .expect("compiled data has every locale, falling back to the root");
    // As written: `1.0` has a visible fraction digit, and that can matter.
    let f: Fixed = count
        .to_string()
        .parse()
        .expect("a decimal's digits are a fixed decimal");
    rules.category_for(&f)
}

/// `{{plural count one="order" other="orders"}}`: the word for the CLDR
/// plural category of `count` in the template's language; a category not
/// given takes `other` (as in ICU MessageFormat), and `#` in a word is the
/// count, formatted.
pub struct PluralHelper;

impl HelperDef for PluralHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        r: &'reg Handlebars<'reg>,
        ctx: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let names: Vec<&str> = CATEGORIES.iter().map(|(n, _)| *n).collect();
        let a = Args::new(
            h,
            r,
            "plural",
            "{{plural count one=\"order\" other=\"orders\"}}",
            1,
            &names,
        )?;
        let Some(other) = a.option_str("other")? else {
            return Err(a.fail(
                "needs other=\"…\", the word for any count; add one=, few=, … as the \
                 language needs (CLDR plural categories: zero, one, two, few, many, other)",
            ));
        };
        let count = a.param(0, "the count")?;
        let hint = " (the count, such as customer.orders_count)";
        let Some(count) = number_arg(&a, count, hint)? else {
            return Ok(ScopedJson::Derived(Value::Null));
        };
        let category = plural_category(count, &locale::words(ctx));
        let name = CATEGORIES
            .iter()
            .find(|(_, c)| *c == category)
            .map_or("other", |(n, _)| *n);
        let word = a.option_str(name)?.unwrap_or(other);
        let word = match word.contains('#') {
            true => word.replace('#', &format_number(count, None, &locale::customer(ctx))),
            false => word.to_string(),
        };
        Ok(ScopedJson::Derived(Value::String(word)))
    }
}

/// The most numbers `range` gives: enough for stars and steps, and a
/// template cannot make a list that eats the sender's memory.
pub const MAX_RANGE: i64 = 1000;

/// `{{#each (range 1 5)}}`: 1, 2, 3, 4, 5 (both ends included); empty
/// when the end is below the start or either is null.
pub struct RangeHelper;

impl HelperDef for RangeHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        r: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let a = Args::new(h, r, "range", "{{#each (range 1 5)}}", 2, &[])?;
        let from = a.param(0, "the first number")?;
        let to = a.param(1, "the last number")?;
        if from.is_null() || to.is_null() {
            return Ok(ScopedJson::Derived(Value::Array(Vec::new())));
        }
        let int = |v: &Value, which: &str| {
            whole(v).ok_or_else(|| {
                a.fail(format!(
                    "the {which} number is a whole number, not {}",
                    shown(v)
                ))
            })
        };
        let (from, to) = (int(from, "first")?, int(to, "last")?);
        if to.saturating_sub(from) >= MAX_RANGE {
            return Err(a.fail(format!("{from} to {to} is more than {MAX_RANGE} numbers")));
        }
        Ok(ScopedJson::Derived(Value::Array(
            (from..=to).map(Value::from).collect(),
        )))
    }
}
