//! Layouts laid out once. A layout that uses nothing but `subject`,
//! `preheader`, `body` and `sender.name` / `sender.email` (plain `{{x}}`,
//! `{{{x}}}`, `{{#if x}}`, `{{#unless x}}`) is rendered by handlebars once per
//! sender and per combination of empty parts, with a marker in place of each
//! part; every message then only fills the markers in. The result is the
//! bytes handlebars would give (the test `skeletons_render_as_handlebars_does`
//! checks every shipped template); any other layout is rendered in full.

use std::sync::RwLock;

use handlebars::template::{Parameter, Template, TemplateElement};
use handlebars::{Context, Handlebars};
use serde_json::{Value, json};

/// The parts a message fills in, in this order.
const PARTS: [&str; 3] = ["subject", "preheader", "body"];
/// What a layout may read besides the parts.
const SENDER: [&str; 2] = ["sender.name", "sender.email"];
/// Stands for part `i` in a skeleton; followed by `<`, so that whether the
/// layout escapes it shows in the output (`&lt;` or `<`).
const MARKS: [char; 3] = ['\u{E000}', '\u{E001}', '\u{E002}'];
/// Skeletons kept at most (a sender and the empty-or-not parts make one).
const CACHED: usize = 64;

#[derive(Debug)]
enum Piece {
    Text(String),
    Part { part: usize, escaped: bool },
}

#[derive(Debug)]
struct Skeleton {
    layout: String,
    sender: Value,
    empty: [bool; 3],
    /// `None`: the layout cannot be laid out once for this sender.
    pieces: Option<Vec<Piece>>,
}

#[derive(Debug, Default)]
pub(crate) struct Skeletons {
    cache: RwLock<Vec<Skeleton>>,
}

/// Whether `t` reads nothing but the parts and the sender, in forms whose
/// output depends only on their values and on whether they are empty.
pub(crate) fn simple(t: &Template) -> bool {
    let known = |p: &Parameter| {
        matches!(p, Parameter::Path(_) | Parameter::Name(_))
            && p.as_name()
                .is_some_and(|n| PARTS.contains(&n) || SENDER.contains(&n))
    };
    t.elements.iter().all(|e| match e {
        TemplateElement::RawString(s) => !s.contains(MARKS),
        TemplateElement::Comment(_) => true,
        TemplateElement::Expression(h) | TemplateElement::HtmlExpression(h) => {
            known(&h.name) && h.params.is_empty() && h.hash.is_empty() && h.template.is_none()
        }
        TemplateElement::HelperBlock(h) => {
            matches!(h.name.as_name(), Some("if" | "unless"))
                && h.params.len() == 1
                && known(&h.params[0])
                && h.hash.is_empty()
                && h.block_param.is_none()
                && [&h.template, &h.inverse].into_iter().flatten().all(simple)
        }
        _ => false,
    })
}

impl Skeletons {
    /// `layout` (registered in `hb` under `name`, and [`simple`]) around the
    /// parts, or `None` when this layout must be rendered in full.
    pub(crate) fn render(
        &self,
        hb: &Handlebars<'static>,
        name: &str,
        data: &Value,
        parts: [&str; 3],
    ) -> Option<String> {
        let sender = data.get("sender").unwrap_or(&Value::Null);
        let empty = parts.map(str::is_empty);
        let found = |s: &Skeleton| s.layout == name && s.empty == empty && s.sender == *sender;
        {
            let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
            if let Some(s) = cache.iter().find(|s| found(s)) {
                return s.pieces.as_ref().map(|p| fill(p, parts));
            }
        }
        let pieces = lay_out(hb, name, sender, empty);
        let out = pieces.as_ref().map(|p| fill(p, parts));
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        if cache.len() < CACHED && !cache.iter().any(found) {
            cache.push(Skeleton {
                layout: name.to_string(),
                sender: sender.clone(),
                empty,
                pieces,
            });
        }
        out
    }
}

/// Renders the layout with markers for the parts that are not empty and
/// splits the output at them.
fn lay_out(
    hb: &Handlebars<'static>,
    name: &str,
    sender: &Value,
    empty: [bool; 3],
) -> Option<Vec<Piece>> {
    if sender.to_string().contains(MARKS) {
        return None;
    }
    let probe = |i: usize| match empty[i] {
        true => String::new(),
        false => format!("{}<", MARKS[i]),
    };
    let data = json!({
        "subject": probe(0),
        "preheader": probe(1),
        "body": probe(2),
        "sender": sender,
    });
    let rendered = hb.render_with_context(name, &Context::from(data)).ok()?;
    let mut pieces = Vec::new();
    let mut rest = rendered.as_str();
    while let Some(at) = rest.find(MARKS) {
        let mark = rest[at..].chars().next()?;
        let part = MARKS.iter().position(|&m| m == mark)?;
        if at > 0 {
            pieces.push(Piece::Text(rest[..at].to_string()));
        }
        let after = &rest[at + mark.len_utf8()..];
        let (escaped, skip) = if after.starts_with("&lt;") {
            (true, 4)
        } else if after.starts_with('<') {
            (false, 1)
        } else {
            return None;
        };
        pieces.push(Piece::Part { part, escaped });
        rest = &after[skip..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest.to_string()));
    }
    Some(pieces)
}

fn fill(pieces: &[Piece], parts: [&str; 3]) -> String {
    let mut len = 0;
    for p in pieces {
        len += match p {
            Piece::Text(t) => t.len(),
            Piece::Part { part, escaped } => parts[*part].len() * if *escaped { 2 } else { 1 },
        };
    }
    let mut out = String::with_capacity(len + 64);
    for p in pieces {
        match p {
            Piece::Text(t) => out.push_str(t),
            Piece::Part {
                part,
                escaped: true,
            } => escape_html_into(&mut out, parts[*part]),
            Piece::Part {
                part,
                escaped: false,
            } => out.push_str(parts[*part]),
        }
    }
    out
}

/// Handlebars' HTML escaping (the same characters, the same entities),
/// written in runs rather than a character at a time.
pub(crate) fn escape_html_into(out: &mut String, s: &str) {
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let entity = match b {
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            b'&' => "&amp;",
            b'\'' => "&#x27;",
            b'`' => "&#x60;",
            b'=' => "&#x3D;",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        out.push_str(entity);
        start = i + 1;
    }
    out.push_str(&s[start..]);
}

/// The escape function of the HTML registry: [`escape_html_into`].
pub(crate) fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    escape_html_into(&mut out, s);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_matches_handlebars() {
        for s in [
            "",
            "plain",
            "A&B-O'Neil=1",
            "<a href=\"x\">`q`</a>",
            "árvíztűrő <tükörfúrógép> & 感谢",
            "&&&",
        ] {
            assert_eq!(escape_html(s), handlebars::html_escape(s), "{s:?}");
        }
    }

    #[test]
    fn only_simple_layouts_are_laid_out_once() {
        let t = |s: &str| Template::compile(s).unwrap();
        assert!(simple(&t(
            "<title>{{subject}}</title>{{#if preheader}}<i>{{preheader}}</i>{{/if}}\
             {{{body}}}{{sender.name}}{{#unless sender.email}}-{{else}}{{sender.email}}{{/unless}}"
        )));
        for s in [
            "{{customer.first_name}}",
            "{{#each items}}x{{/each}}",
            "{{> footer}}",
            "{{date order.placed_at}}",
            "{{#if subject includeZero=true}}x{{/if}}",
            "{{#if \"subject\"}}x{{/if}}",
            "\u{E000}",
        ] {
            assert!(!simple(&t(s)), "{s}");
        }
    }
}
