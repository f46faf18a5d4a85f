//! The HTML part as it is sent: an MJML document (a `<locale>.mjml.hbs`
//! template, after handlebars) turned into HTML by `mrml`, then the CSS of
//! `<style>` blocks inlined into `style` attributes by `css-inline` (many
//! mail clients drop `<style>`); `@media` rules stay in a `<style>` block for
//! the clients that honour them. HTML without `<style>` is sent as it is,
//! at no cost.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use css_inline::CSSInliner;

/// One inliner for every message: options only, no state between calls.
static INLINER: LazyLock<CSSInliner<'static>> = LazyLock::new(|| {
    CSSInliner::options()
        .inline_style_tags(true)
        .keep_style_tags(false)
        .keep_at_rules(true)
        .keep_link_tags(false)
        .load_remote_stylesheets(false)
        .build()
});

/// The CSS of `html`'s `<style>` blocks inlined; `html` unchanged when it has none.
pub fn inline_css(html: String) -> Result<String, String> {
    if !has_style(&html) {
        return Ok(html);
    }
    INLINER
        .inline(&html)
        .map_err(|e| format!("inlining the CSS: {e}"))
}

fn has_style(html: &str) -> bool {
    html.as_bytes()
        .windows(6)
        .any(|w| w[0] == b'<' && w[1..].eq_ignore_ascii_case(b"style"))
}

/// An MJML body as plain HTML, for its text part: `<mj-text>` a paragraph,
/// `<mj-button href>` a link in a paragraph, `<mj-divider>` a rule,
/// `<mj-head>` left out; every other MJML tag is dropped, its content kept.
/// (mrml's HTML would do too, but its blocks are `<div>`s in table cells,
/// which read as text without a blank line between paragraphs.)
pub fn mjml_text_html(mjml: &str) -> String {
    let mut out = String::with_capacity(mjml.len());
    let mut i = 0;
    while let Some(off) = mjml[i..].find('<') {
        let at = i + off;
        out.push_str(&mjml[i..at]);
        let after = &mjml[at + 1..];
        let closing = after.starts_with('/');
        let name_from = if closing { &after[1..] } else { after };
        let Some(end) = mjml[at..].find('>').map(|e| at + e + 1) else {
            i = at;
            break;
        };
        if !name_from.starts_with("mj") {
            out.push('<');
            i = at + 1;
            continue;
        }
        let tag = &mjml[at..end];
        let name: String = name_from
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        match (name.as_str(), closing) {
            ("mj-head", false) => {
                i = mjml[end..]
                    .find("</mj-head>")
                    .map_or(mjml.len(), |e| end + e + "</mj-head>".len());
                continue;
            }
            ("mj-text", false) => out.push_str("<p>"),
            ("mj-text", true) => out.push_str("</p>"),
            ("mj-button", false) => {
                let href = attribute(tag, "href").unwrap_or_default();
                out.push_str(&format!("<p><a href=\"{href}\">"));
            }
            ("mj-button", true) => out.push_str("</a></p>"),
            ("mj-divider", _) => out.push_str("<hr>"),
            _ => {}
        }
        i = end;
    }
    out.push_str(&mjml[i..]);
    out
}

/// The value of `name="…"` in a tag, as written.
fn attribute<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let key = format!(" {name}=\"");
    let start = tag.find(&key)? + key.len();
    let len = tag[start..].find('"')?;
    Some(&tag[start..start + len])
}

/// A source an MJML document was rendered from, to point an MJML error at
/// the line that wrote it.
pub struct Source<'a> {
    pub file: &'a Path,
    /// The text as written (handlebars expressions and all).
    pub text: &'a str,
    /// The file line on which `text` starts.
    pub first_line: u64,
}

/// An MJML error, where it was found.
#[derive(Debug)]
pub struct MjmlError {
    pub file: PathBuf,
    pub line: u64,
    pub col: u64,
    pub message: String,
}

/// Renders an MJML document to HTML. A document that is only a body
/// fragment (no `<mjml>` root: a template's body, for its text part) is
/// wrapped in `<mjml><mj-body>`.
pub fn mjml_to_html(mjml: &str, sources: &[Source]) -> Result<String, MjmlError> {
    let wrapped;
    let doc = match mjml.trim_start().starts_with("<mjml") {
        true => mjml,
        false => {
            wrapped = format!("<mjml><mj-body>{mjml}</mj-body></mjml>");
            &wrapped
        }
    };
    let parsed = mrml::parse(doc).map_err(|e| parse_error(doc, &e, sources))?;
    // mrml only warns about an attribute an element does not take (a typo
    // such as `hreff`); rendering is strict, as for variables.
    if let Some(w) = parsed
        .warnings
        .iter()
        .find(|w| w.kind == mrml::prelude::parser::WarningKind::UnexpectedAttribute)
    {
        return Err(located(
            doc,
            Some(&w.span),
            sources,
            "an attribute this element does not take".into(),
        ));
    }
    let opts = mrml::prelude::render::RenderOptions {
        // No web fonts fetched from a font service: mail clients block
        // most of them, and the layout names its own font stack.
        fonts: HashMap::new(),
        disable_comments: true,
        ..Default::default()
    };
    let html = parsed.element.render(&opts).map_err(|e| MjmlError {
        file: sources
            .first()
            .map(|s| s.file.to_path_buf())
            .unwrap_or_default(),
        line: sources.first().map(|s| s.first_line).unwrap_or(1),
        col: 1,
        message: format!("MJML does not render: {e}"),
    })?;
    // mrml passes an element it does not know through as HTML: a misspelt
    // `<mj-colum>` would reach the customer as a tag no client knows.
    if let Some(at) = html.find("<mj-") {
        let tag: String = html[at..]
            .chars()
            .take_while(|c| !c.is_whitespace() && *c != '>' && *c != '/')
            .collect();
        let span = find_tag(doc, &tag).map(|start| mrml::prelude::parser::Span {
            start,
            end: start + tag.len(),
        });
        return Err(located(
            doc,
            span.as_ref(),
            sources,
            "an element MJML does not know, or not in this place".into(),
        ));
    }
    Ok(html)
}

fn parse_error(doc: &str, e: &mrml::prelude::parser::Error, sources: &[Source]) -> MjmlError {
    use mrml::prelude::parser::Error as E;
    let (what, span) = match e {
        E::UnexpectedElement { position, .. } => {
            ("an element that MJML does not allow here", Some(position))
        }
        E::UnexpectedToken { position, .. } => ("unexpected text or markup", Some(position)),
        E::MissingAttribute { name, position, .. } => {
            return located(
                doc,
                Some(position),
                sources,
                format!("missing attribute `{name}`"),
            );
        }
        E::InvalidAttribute { position, .. } => ("an invalid attribute", Some(position)),
        E::InvalidFormat { position, .. } => ("an invalid value", Some(position)),
        E::EndOfStream { .. } => ("the document ends early: an element is not closed", None),
        E::NoRootNode => ("no <mjml> root element", None),
        E::ParserError { source, .. } => {
            return located(doc, None, sources, format!("not well-formed: {source}"));
        }
        E::SizeLimit { .. } => ("the document is too large", None),
        E::IncludeLoaderError { .. } => (
            "mj-include is not supported: use a partial (`{{> name}}`)",
            None,
        ),
    };
    located(doc, span, sources, what.to_string())
}

/// The error at the line of its source that holds the offending text, when
/// it can be found there; otherwise at the first source, quoting the text.
fn located(
    doc: &str,
    span: Option<&mrml::prelude::parser::Span>,
    sources: &[Source],
    what: String,
) -> MjmlError {
    let snippet = span
        .and_then(|s| doc.get(s.start..s.end.max(s.start)))
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(|s| s.chars().take(80).collect::<String>());
    let first = || MjmlError {
        file: sources
            .first()
            .map(|s| s.file.to_path_buf())
            .unwrap_or_default(),
        line: sources.first().map(|s| s.first_line).unwrap_or(1),
        col: 1,
        message: String::new(),
    };
    let mut err = first();
    if let Some(snip) = &snippet {
        // The start of the offending tag (`<mj-colum`), as written.
        let key: String = snip.chars().take_while(|c| !c.is_whitespace()).collect();
        for s in sources {
            if let Some(at) = find_tag(s.text, &key) {
                let before = &s.text[..at];
                let line = before.matches('\n').count() as u64;
                let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) as u64 + 1;
                err = MjmlError {
                    file: s.file.to_path_buf(),
                    line: s.first_line + line,
                    col,
                    message: String::new(),
                };
                break;
            }
        }
    }
    err.message = match snippet {
        Some(s) => format!("MJML: {what}: `{s}`"),
        None => format!("MJML: {what}"),
    };
    err
}

/// Where `key` (`<mj-colum`) first stands in `text` as a whole name: not as
/// the start of a longer one (`<mj-column`).
fn find_tag(text: &str, key: &str) -> Option<usize> {
    let name_char = |c: char| c.is_alphanumeric() || c == '-' || c == '_';
    let ends_name = key.chars().last().is_some_and(name_char);
    text.match_indices(key)
        .map(|(i, _)| i)
        .find(|&i| !ends_name || !text[i + key.len()..].chars().next().is_some_and(name_char))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_without_style_is_untouched() {
        let html = "<p style=\"color:red\">x &amp; y</p>".to_string();
        assert_eq!(inline_css(html.clone()).unwrap(), html);
    }

    #[test]
    fn style_blocks_are_inlined_and_media_queries_kept() {
        let html = "<html><head><style>p { color: #123456 } @media (max-width: 480px) { p { font-size: 18px } }</style></head><body><p>Hi</p></body></html>";
        let out = inline_css(html.to_string()).unwrap();
        assert!(out.contains("<p style=\"color: #123456;\">Hi</p>"), "{out}");
        assert!(out.contains("@media (max-width: 480px)"), "{out}");
    }

    #[test]
    fn mjml_becomes_tables() {
        let html = mjml_to_html(
            "<mjml><mj-body><mj-section><mj-column><mj-text>Hello &amp; welcome</mj-text></mj-column></mj-section></mj-body></mjml>",
            &[],
        )
        .unwrap();
        assert!(html.contains("<table"), "{html}");
        assert!(html.contains("Hello &amp; welcome"), "{html}");
        let fragment = mjml_to_html(
            "<mj-section><mj-column><mj-text>Hi</mj-text></mj-column></mj-section>",
            &[],
        )
        .unwrap();
        assert!(
            fragment.contains("Hi") && fragment.contains("<table"),
            "{fragment}"
        );
    }

    #[test]
    fn mjml_bodies_read_as_paragraphs() {
        let html = mjml_text_html(
            "<mjml><mj-head><mj-title>T</mj-title><mj-style>p { color: red }</mj-style></mj-head>\
             <mj-body><mj-section><mj-column><mj-text font-size=\"2px\">Hi <b>you</b> &amp; me</mj-text>\
             <mj-divider /><mj-button href=\"https://x.example/?a=1&amp;b=2\">Go</mj-button>\
             <mj-text>Bye</mj-text></mj-column></mj-section></mj-body></mjml>",
        );
        assert_eq!(
            html,
            "<p>Hi <b>you</b> &amp; me</p><hr><p><a href=\"https://x.example/?a=1&amp;b=2\">Go</a></p><p>Bye</p>"
        );
    }

    #[test]
    fn mjml_errors_point_at_the_source_line() {
        let src = "<mj-section>\n  <mj-column>\n    <mj-colum>x</mj-colum>\n  </mj-column>\n</mj-section>\n";
        let file = Path::new("t/en.mjml.hbs");
        let e = mjml_to_html(
            &format!("<mjml><mj-body>{src}</mj-body></mjml>"),
            &[Source {
                file,
                text: src,
                first_line: 5,
            }],
        )
        .unwrap_err();
        assert_eq!((e.file.as_path(), e.line, e.col), (file, 7, 5), "{e:?}");
        assert!(e.message.contains("<mj-colum"), "{e:?}");
    }
}
