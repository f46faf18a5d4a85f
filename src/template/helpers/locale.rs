//! Which locale a helper follows. Formats of numbers follow the customer's
//! locale (`_locale`), as `money` and `date` do; words (plural forms,
//! relative dates, letter case) follow the language of the template being
//! rendered (`_template_locale`), so that an English template sent to a
//! Thai customer, for want of a Thai one, still reads as English.

use handlebars::Context;
use icu_locale_core::{Locale, locale};

use super::root_str;

/// The customer's locale, for number formats.
pub(super) fn customer(ctx: &Context) -> Locale {
    parse(root_str(ctx, "_locale"))
}

/// The template's locale, for words; the customer's when the renderer did
/// not say (data built by hand).
pub(super) fn words(ctx: &Context) -> Locale {
    parse(root_str(ctx, "_template_locale").or_else(|| root_str(ctx, "_locale")))
}

/// `hu-HU`, `hu_HU` or `hu`; a locale that does not parse is taken for its
/// language, else English: a customer's odd locale never stops an email.
pub(super) fn parse(s: Option<&str>) -> Locale {
    let s = s.unwrap_or("en").trim().replace('_', "-");
    s.parse::<Locale>()
        .ok()
        .or_else(|| s.split('-').next().and_then(|l| l.parse().ok()))
        .unwrap_or(locale!("en"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_locales_fall_back_to_their_language_or_english() {
        assert_eq!(parse(Some("hu_HU")).to_string(), "hu-HU");
        assert_eq!(parse(Some("zh-CN")).to_string(), "zh-CN");
        assert_eq!(parse(Some("bg-@@")).to_string(), "bg");
        assert_eq!(parse(Some("!!")).to_string(), "en");
        assert_eq!(parse(None).to_string(), "en");
    }
}
