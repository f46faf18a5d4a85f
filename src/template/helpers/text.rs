//! Text helpers: `upper`, `lower`, `capitalize`, `title` (Unicode case
//! mapping with the template language's rules, ICU4X `icu_casemap`),
//! `truncate` (at a word boundary where it can, never inside a character:
//! ICU4X `icu_segmenter`, with dictionaries for Thai and Chinese, which
//! write words without spaces), `default`, and `len` (characters, as
//! `truncate` counts them).

use std::borrow::Cow;

use handlebars::{Context, Handlebars, Helper, HelperDef, RenderContext, RenderError, ScopedJson};
use icu_casemap::options::{TitlecaseOptions, TrailingCase};
use icu_casemap::{CaseMapper, TitlecaseMapper};
use icu_locale_core::LanguageIdentifier;
use icu_segmenter::{GraphemeClusterSegmenter, WordSegmenter};
use serde_json::Value;

use super::args::{Args, shown, whole};
use super::locale;

/// What [`CaseHelper`] does to the text.
#[derive(Debug, Clone, Copy)]
pub enum Case {
    /// `{{upper text}}`: every letter a capital.
    Upper,
    /// `{{lower text}}`.
    Lower,
    /// `{{capitalize text}}`: the first letter a capital, the rest as written.
    Capitalize,
    /// `{{title text}}`: the first letter of each word a capital, the rest
    /// as written (`{{title (lower text)}}` to lower the rest).
    Title,
}

pub struct CaseHelper(pub Case);

impl HelperDef for CaseHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        r: &'reg Handlebars<'reg>,
        ctx: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let (name, usage) = match self.0 {
            Case::Upper => ("upper", "{{upper text}}"),
            Case::Lower => ("lower", "{{lower text}}"),
            Case::Capitalize => ("capitalize", "{{capitalize text}}"),
            Case::Title => ("title", "{{title text}}"),
        };
        let a = Args::new(h, r, name, usage, 1, &[])?;
        let Some(text) = text_of(&a, a.param(0, "the text")?)? else {
            return Ok(ScopedJson::Derived(Value::Null));
        };
        let lang = locale::words(ctx).id;
        Ok(ScopedJson::Derived(Value::String(change_case(
            &text, self.0, &lang,
        ))))
    }
}

/// `text` in `case`, by the rules of language `lang` (Turkish `i`, …).
pub fn change_case(text: &str, case: Case, lang: &LanguageIdentifier) -> String {
    let mut keep_rest = TitlecaseOptions::default();
    keep_rest.trailing_case = Some(TrailingCase::Unchanged);
    match case {
        Case::Upper => CaseMapper::new()
            .uppercase_to_string(text, lang)
            .into_owned(),
        Case::Lower => CaseMapper::new()
            .lowercase_to_string(text, lang)
            .into_owned(),
        Case::Capitalize => TitlecaseMapper::new()
            .titlecase_segment_to_string(text, lang, keep_rest)
            .into_owned(),
        Case::Title => {
            let title = TitlecaseMapper::new();
            let mut out = String::with_capacity(text.len());
            let mut start = 0;
            let mut words = WordSegmenter::new_dictionary(Default::default())
                .segment_str(text)
                .iter_with_word_type();
            // The first boundary is 0.
            words.next();
            for (end, kind) in words {
                let word = &text[start..end];
                match kind.is_word_like() {
                    true => out.push_str(&title.titlecase_segment_to_string(word, lang, keep_rest)),
                    false => out.push_str(word),
                }
                start = end;
            }
            out
        }
    }
}

/// The text of a value: a string, or a number or true/false as written;
/// `None` for null (which renders empty, as a null field does).
fn text_of<'v>(a: &Args, v: &'v Value) -> Result<Option<Cow<'v, str>>, RenderError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(Cow::Borrowed(s))),
        Value::Number(_) | Value::Bool(_) => Ok(Some(Cow::Owned(v.to_string()))),
        Value::Array(_) => Err(a.fail("takes text, not a list (use {{#each}} for each item)")),
        Value::Object(_) => Err(a.fail("takes text, not an object: name one of its fields")),
    }
}

/// `{{truncate text 40}}`: at most 40 characters, `…` included.
pub struct TruncateHelper;

impl HelperDef for TruncateHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        r: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let a = Args::new(h, r, "truncate", "{{truncate text 40}}", 2, &["ellipsis"])?;
        let text = a.param(0, "the text")?;
        let length = a.param(1, "the length, in characters")?;
        let max = match whole(length) {
            Some(n) if n > 0 => n as usize,
            _ => {
                return Err(a.fail(format!(
                    "the length is a whole number of characters above 0, such as 40, not {}",
                    shown(length)
                )));
            }
        };
        let ellipsis = a.option_str("ellipsis")?.unwrap_or("…");
        let Some(text) = text_of(&a, text)? else {
            return Ok(ScopedJson::Derived(Value::Null));
        };
        Ok(ScopedJson::Derived(Value::String(
            truncate(&text, max, ellipsis).into_owned(),
        )))
    }
}

// `len`, in place of handlebars' own, which counts a string's bytes (a Thai
// or Chinese name three times over): a string's characters, counted as
// `truncate` counts them, an array's items, an object's keys, 0 for anything
// else. Arguments and errors are handlebars' own.
handlebars::handlebars_helper!(len: |x: Json| match x {
    Value::Array(a) => a.len(),
    Value::Object(m) => m.len(),
    Value::String(s) => characters(s),
    _ => 0,
});

/// The characters of `text`: grapheme clusters, what a reader counts as one
/// (a Thai consonant with its vowel and tone marks, an emoji with its
/// modifiers).
pub fn characters(text: &str) -> usize {
    // Boundaries, 0 and text.len() included.
    GraphemeClusterSegmenter::new()
        .segment_str(text)
        .count()
        .saturating_sub(1)
}

/// Characters at the end of a cut text that the ellipsis replaces.
fn dangling(c: char) -> bool {
    c.is_whitespace() || ",;:-–—(、，".contains(c)
}

/// `text` in at most `max` characters (grapheme clusters: what a reader
/// counts as one, such as a Thai consonant with its vowel and tone marks),
/// `ellipsis` included when it is cut. The cut falls at the end of a word
/// when that keeps at least half of the room, else between two characters.
pub fn truncate<'t>(text: &'t str, max: usize, ellipsis: &str) -> Cow<'t, str> {
    let graphemes = GraphemeClusterSegmenter::new();
    // Byte offsets of the boundaries, 0 and text.len() included.
    let bounds: Vec<usize> = graphemes.segment_str(text).collect();
    if bounds.len() <= max + 1 {
        return Cow::Borrowed(text);
    }
    let ell: Vec<usize> = graphemes.segment_str(ellipsis).collect();
    let ell_len = ell.len().saturating_sub(1);
    if ell_len >= max {
        return Cow::Owned(ellipsis[..ell[max.min(ell_len)]].to_string());
    }
    let room = max - ell_len;
    let hard = bounds[room];
    let word_end = WordSegmenter::new_dictionary(Default::default())
        .segment_str(text)
        .take_while(|&b| b <= hard)
        .filter(|&b| b > 0)
        .filter_map(|b| bounds.binary_search(&b).ok().map(|chars| (b, chars)))
        .last();
    let cut = match word_end {
        Some((b, chars)) if chars * 2 >= room => b,
        _ => hard,
    };
    let kept = match text[..cut].trim_end_matches(dangling) {
        "" => &text[..hard],
        kept => kept,
    };
    Cow::Owned(format!("{kept}{ellipsis}"))
}

/// `{{default value "fallback"}}`: the fallback when the value is null,
/// empty or only spaces, or names a key the customer's `attributes` do not
/// have. Any other name that is not in the data stays an error in strict
/// mode, so that a misspelled `customer.frist_name` is found by `validate`
/// and not papered over with the fallback.
pub struct DefaultHelper;

impl HelperDef for DefaultHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        r: &'reg Handlebars<'reg>,
        _: &'rc Context,
        rc: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let a = Args::new(
            h,
            r,
            "default",
            "{{default customer.first_name \"there\"}}",
            2,
            &[],
        )?;
        let value = a.raw(0, "a value")?;
        let fallback = a.raw(1, "the fallback")?;
        let missing = value.is_value_missing();
        // The block's path: `{{#with customer.attributes}}{{default pet "x"}}`.
        let base = rc.block().map_or(&[][..], |b| b.base_path().as_slice());
        if missing
            && !value
                .relative_path()
                .is_some_and(|p| in_attributes(base, p))
        {
            a.present(value)?;
        }
        let empty = missing
            || match value.value() {
                Value::Null => true,
                Value::String(s) => s.trim().is_empty(),
                _ => false,
            };
        let chosen = match empty {
            true => a.present(fallback)?,
            false => value.value(),
        };
        Ok(ScopedJson::Derived(chosen.clone()))
    }
}

/// Whether `path` (as written, inside a block at `base`) reaches into
/// `attributes`, the shop's own fields, which differ from customer to
/// customer.
fn in_attributes(base: &[String], path: &str) -> bool {
    let written = path.split(['.', '/']).map(|s| s.trim_matches(['[', ']']));
    let segments: Vec<&str> = base.iter().map(String::as_str).chain(written).collect();
    segments
        .split_last()
        .is_some_and(|(_, before)| before.contains(&"attributes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_paths() {
        assert!(in_attributes(&[], "customer.attributes.nickname"));
        assert!(in_attributes(&[], "customer.[attributes].[nick name]"));
        assert!(in_attributes(&[], "../customer/attributes/x"));
        assert!(!in_attributes(&[], "customer.attributes"));
        assert!(!in_attributes(&[], "customer.frist_name"));
        let block = ["customer".to_string(), "attributes".to_string()];
        assert!(in_attributes(&block, "pet"));
        assert!(!in_attributes(&block[..1], "pet"));
    }
}
