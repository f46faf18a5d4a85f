//! The text part of a template without its own `<locale>.txt.hbs`, derived
//! once at load time: the HTML *template* goes through html2text with every
//! Handlebars expression replaced by a private-use character, and the result,
//! with the expressions put back, is a text template rendered per message
//! like any other (in a registry that does not HTML-escape).
//!
//! html2text still decides what the text looks like (paragraphs, headings,
//! lists, tables, links as numbered footnotes); per message only Handlebars
//! runs, then [`finish`] wraps long lines at 78 columns and drops the blank
//! lines left by false `{{#if}}` blocks.
//!
//! A template this cannot convert faithfully (a triple-stash `{{{raw}}}`,
//! partials with arguments, links inside `{{#each}}`, a block that opens
//! inside a table row, ...) returns `None`; the caller then verifies the rest
//! against html2text on a sample render and keeps html2text per message for
//! anything that does not match.

use std::collections::BTreeMap;

use textwrap::core::Word;
use textwrap::{Options, WordSeparator, WrapAlgorithm};

/// Width at which the text part is wrapped, as html2text did per message.
pub const WIDTH: usize = 78;

/// First private-use character standing for an expression.
const MARK: u32 = 0xE000;
const MARKS: usize = 0x1800;
/// Ends a line that holds only block tags in the text template, so that
/// Handlebars does not take it for a standalone tag and drop its line
/// break; [`finish`] removes it.
const KEEP: char = '\u{F8FE}';
/// Starts each table cell, so that columns can be lined up again per
/// message, once the width of what is in them is known.
const CELL: char = '\u{F8FF}';

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Value,
    Open,
    Else,
    Close,
}

struct Mustache {
    src: String,
    kind: Kind,
}

fn mark(i: usize) -> char {
    char::from_u32(MARK + i as u32).expect("private-use range")
}

fn unmark(c: char) -> Option<usize> {
    let i = (c as u32).checked_sub(MARK)? as usize;
    (i < MARKS).then_some(i)
}

/// Inlines `{{> name}}` (no arguments) from `partials`, a few levels deep.
pub(crate) fn inline_partials(
    src: &str,
    partials: &BTreeMap<String, String>,
    depth: u8,
) -> Option<String> {
    if !src.contains("{{>") && !src.contains("{{~>") {
        return Some(src.to_string());
    }
    if depth > 4 {
        return None;
    }
    let mut out = String::with_capacity(src.len());
    let mut rest = src;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let end = start + rest[start..].find("}}")? + 2;
        let tag = &rest[start..end];
        let inner = tag[2..tag.len() - 2].trim();
        if let Some(name) = inner.strip_prefix('>') {
            let name = name.trim();
            if name.is_empty() || name.contains(char::is_whitespace) {
                return None;
            }
            // Alone on its line, the tag takes its line break with it (and
            // indented, it would indent the partial: not done here).
            let line_start = out.rfind('\n').map_or(0, |i| i + 1);
            let alone = out[line_start..].is_empty();
            if out[line_start..].trim().is_empty() && !alone {
                return None;
            }
            out.push_str(&inline_partials(partials.get(name)?, partials, depth + 1)?);
            rest = &rest[end..];
            if alone {
                rest = rest
                    .strip_prefix("\r\n")
                    .or_else(|| rest.strip_prefix('\n'))
                    .unwrap_or(rest);
            }
            continue;
        } else {
            out.push_str(tag);
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    Some(out)
}

/// Splits the template into HTML with one private-use character per
/// expression, and the expressions. Comments are dropped.
fn protect(src: &str) -> Option<(String, Vec<Mustache>)> {
    if src
        .chars()
        .any(|c| unmark(c).is_some() || c == CELL || c == KEEP)
        || src.contains("\\{{")
    {
        return None;
    }
    let mut html = String::with_capacity(src.len());
    let mut found = Vec::new();
    let mut rest = src;
    while let Some(start) = rest.find("{{") {
        html.push_str(&rest[..start]);
        let tail = &rest[start..];
        let len = if tail.starts_with("{{!--") {
            tail.find("--}}")? + 4
        } else if tail.starts_with("{{{") {
            // Raw HTML has no faithful text form known in advance.
            return None;
        } else {
            tail.find("}}")? + 2
        };
        let tag = &tail[..len];
        let inner = tag[2..len - 2].trim_matches('~').trim();
        let kind = match inner.chars().next() {
            Some('!') => None,
            Some('#') if inner.starts_with("#>") || inner.starts_with("#*") => return None,
            Some('>') => return None,
            Some('#') => Some(Kind::Open),
            Some('^') if inner == "^" => Some(Kind::Else),
            Some('^') => Some(Kind::Open),
            Some('/') => Some(Kind::Close),
            _ if inner == "else" || inner.starts_with("else ") => Some(Kind::Else),
            _ => Some(Kind::Value),
        };
        if let Some(kind) = kind {
            if found.len() == MARKS {
                return None;
            }
            html.push(mark(found.len()));
            found.push(Mustache {
                src: tag.to_string(),
                kind,
            });
        }
        rest = &tail[len..];
    }
    html.push_str(rest);
    Some((html, found))
}

/// Puts [`CELL`] at the start of each `<td>` and `<th>`.
fn mark_cells(html: &str) -> String {
    let mut out = String::with_capacity(html.len() + 64);
    let mut rest = html;
    while let Some(i) = rest.find('<') {
        let tag = &rest[i + 1..];
        let is_cell = tag.len() > 2
            && tag.is_char_boundary(2)
            && (tag[..2].eq_ignore_ascii_case("td") || tag[..2].eq_ignore_ascii_case("th"))
            && tag[2..].starts_with(|c: char| c == '>' || c.is_ascii_whitespace());
        match tag.find('>').filter(|_| is_cell) {
            Some(end) => {
                // After the blanks: html2text wraps `<mark> <a>link</a>` early.
                let after = &rest[i + 1 + end + 1..];
                let content = after.trim_start();
                out.push_str(&rest[..rest.len() - content.len()]);
                out.push(CELL);
                rest = content;
            }
            None => {
                out.push_str(&rest[..i + 1]);
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Block tags that stand between a table's rows would be moved out of the
/// table by an HTML parser; they are put in a row of their own instead, which
/// html2text prints as a line of its own, dropped again in [`assemble`].
fn place_in_tables(html: &str, found: &[Mustache]) -> Option<String> {
    const TABLE: &[&str] = &[
        "table",
        "tbody",
        "thead",
        "tfoot",
        "/tr",
        "/tbody",
        "/thead",
        "/tfoot",
        "/caption",
        "/colgroup",
    ];
    const ROW: &[&str] = &["tr", "/td", "/th"];
    let is_block = |c: char| unmark(c).is_some_and(|i| found[i].kind != Kind::Value);
    let mut out = String::with_capacity(html.len() + 64);
    let mut chars = html.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        if !is_block(c) {
            out.push(c);
            continue;
        }
        // The run of block tags (and blanks) that starts here.
        let mut run = String::from(c);
        while let Some(&(_, n)) = chars.peek() {
            if is_block(n) || n.is_whitespace() {
                run.push(n);
                chars.next();
            } else {
                break;
            }
        }
        let before = out.trim_end();
        let tag = before
            .strip_suffix('>')
            .and_then(|b| b.rfind('<').map(|i| &b[i + 1..]))
            .map(|t| {
                t.split(|c: char| c.is_whitespace() || c == '/' && !t.starts_with('/'))
                    .next()
                    .unwrap_or("")
                    .to_ascii_lowercase()
            })
            .unwrap_or_default();
        if TABLE.contains(&tag.as_str()) {
            out.push_str("<tr><td>");
            out.push_str(run.trim());
            out.push_str("</td></tr>");
        } else if ROW.contains(&tag.as_str()) {
            return None;
        } else {
            out.push_str(&run);
        }
    }
    Some(out)
}

/// html2text's lines back into a template: lines that hold only block tags
/// are joined to the next line, footnotes of links inside `{{#if}}` blocks
/// get the same blocks, and the expressions are put back.
fn assemble(text: &str, found: &[Mustache]) -> Option<String> {
    let only_blocks = |line: &str| {
        let l = line.trim();
        let l = l.strip_prefix("* ").unwrap_or(l);
        l.chars().any(|c| unmark(c).is_some())
            && l.chars().all(|c| {
                c == ' ' || c == CELL || unmark(c).is_some_and(|i| found[i].kind != Kind::Value)
            })
    };
    let mut joined = String::with_capacity(text.len());
    let mut pending = String::new();
    for line in text.lines() {
        if only_blocks(line) {
            pending.extend(line.chars().filter(|c| unmark(*c).is_some()));
            continue;
        }
        joined.push_str(&pending);
        if !pending.is_empty() && line.trim().is_empty() {
            joined.push(KEEP);
        }
        pending.clear();
        if line.contains(CELL) {
            // html2text's padding fits the marks, not the values: cells are
            // lined up again in `finish`.
            let mut cells = line.split(CELL);
            joined.push_str(cells.next().unwrap_or(""));
            for cell in cells {
                joined.push(CELL);
                joined.push_str(cell.trim_matches(' '));
            }
        } else {
            joined.push_str(line.trim_end());
        }
        joined.push('\n');
    }
    joined.push_str(&pending);

    // Which blocks each link reference `[text][n]` sits in.
    struct Open {
        open: usize,
        elses: Vec<usize>,
    }
    let mut stack: Vec<Open> = Vec::new();
    let mut link_blocks: BTreeMap<String, String> = BTreeMap::new();
    let mut out = String::with_capacity(joined.len() * 2);
    for line in joined.split_inclusive('\n') {
        // A footnote of a link that is inside blocks.
        if stack.is_empty()
            && let Some(n) = footnote(line)
            && let Some(wrap) = link_blocks.get(n)
        {
            push_unmarked(&mut out, wrap, found);
            push_unmarked(&mut out, line, found);
            out.push_str(&closing(wrap, found));
            continue;
        }
        let mut rest = line;
        while let Some(c) = rest.chars().next() {
            if let Some(i) = unmark(c) {
                match found[i].kind {
                    Kind::Open => stack.push(Open {
                        open: i,
                        elses: Vec::new(),
                    }),
                    Kind::Else => stack.last_mut()?.elses.push(i),
                    Kind::Close => {
                        stack.pop()?;
                    }
                    Kind::Value => {}
                }
            } else if c == ']'
                && let Some(n) = rest[1..]
                    .strip_prefix('[')
                    .and_then(|r| r.split_once(']'))
                    .map(|(n, _)| n)
                    .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                && !stack.is_empty()
            {
                let mut wrap = String::new();
                for o in &stack {
                    if !(found[o.open].src.contains("#if") || found[o.open].src.contains("#unless"))
                    {
                        // A link in a loop or a `with` has no single footnote.
                        return None;
                    }
                    wrap.push(mark(o.open));
                    wrap.extend(o.elses.iter().map(|&e| mark(e)));
                }
                link_blocks.insert(n.to_string(), wrap);
            }
            rest = &rest[c.len_utf8()..];
        }
        push_unmarked(&mut out, line, found);
    }
    stack.is_empty().then_some(out)
}

fn footnote(line: &str) -> Option<&str> {
    let (n, _) = line.strip_prefix('[')?.split_once("]: ")?;
    (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())).then_some(n)
}

/// `{{/name}}` for each block opened in `wrap`, innermost first.
fn closing(wrap: &str, found: &[Mustache]) -> String {
    let mut out = String::new();
    for c in wrap.chars().rev() {
        if let Some(i) = unmark(c)
            && found[i].kind == Kind::Open
        {
            let inner = found[i].src.trim_start_matches('{').trim_start_matches('~');
            let name = inner[1..]
                .split(|c: char| c.is_whitespace() || c == '}')
                .next();
            out.push_str(&format!("{{{{/{}}}}}", name.unwrap_or("")));
        }
    }
    out
}

fn push_unmarked(out: &mut String, s: &str, found: &[Mustache]) {
    for c in s.chars() {
        match unmark(c) {
            Some(i) => out.push_str(&found[i].src),
            None => out.push(c),
        }
    }
}

/// The text template for an HTML body template, or `None` when it has a form
/// this conversion does not handle.
pub fn derive(body: &str, partials: &BTreeMap<String, String>) -> Option<String> {
    let src = inline_partials(body, partials, 0)?;
    let (html, found) = protect(&src)?;
    let html = place_in_tables(&mark_cells(&html), &found)?;
    // No wrapping here: the width of an expression is known only per message.
    let text = html2text::config::plain()
        .no_table_borders()
        .string_from_read(html.as_bytes(), 100_000)
        .ok()?;
    assemble(&text, &found).map(prewrap)
}

/// Breaks at spaces, and between wide (CJK) characters, which have none.
fn words(line: &str) -> Box<dyn Iterator<Item = Word<'_>> + '_> {
    Box::new(WordSeparator::AsciiSpace.find_words(line).flat_map(|w| {
        let mut pieces = Vec::new();
        let mut start = 0;
        for (i, c) in w.word.char_indices() {
            if unicode_width::UnicodeWidthChar::width(c) == Some(2) {
                if start < i {
                    pieces.push(Word::from(&w.word[start..i]));
                }
                pieces.push(Word::from(&w.word[i..i + c.len_utf8()]));
                start = i + c.len_utf8();
            }
        }
        if start < w.word.len() || pieces.is_empty() {
            pieces.push(Word::from(&w.word[start..]));
        }
        if let Some(last) = pieces.last_mut() {
            last.whitespace = w.whitespace;
        }
        pieces.into_iter()
    }))
}

/// A rendered text template made tidy: long lines wrapped (list items keep
/// their indent), no trailing spaces, at most one blank line in a row, none
/// at the start or the end.
pub fn finish(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 64);
    let mut blank = true;
    let mut lines = text.lines().peekable();
    let mut table = Vec::new();
    let mut row = String::new();
    while let Some(line) = lines.next() {
        if line.contains(CELL) {
            table.clear();
            table.push(line);
            while let Some(next) = lines.next_if(|l| l.contains(CELL)) {
                table.push(next);
            }
            columns(&table, &mut out, &mut row);
            blank = false;
            continue;
        }
        let line = line.trim_end_matches(|c: char| c.is_whitespace() || c == KEEP);
        if line.is_empty() {
            if !blank {
                out.push('\n');
            }
            blank = true;
            continue;
        }
        blank = false;
        if fits(line) {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        wrap(line, &mut out);
    }
    if out.ends_with("\n\n") {
        out.pop();
    }
    out
}

/// Whether `line` is at most [`WIDTH`] columns wide. Characters below
/// U+1100 are at most one column wide, so a line of at most [`WIDTH`] of them
/// fits without looking each up.
fn fits(line: &str) -> bool {
    if line.len() <= WIDTH {
        return true;
    }
    let mut count = 0;
    for c in line.chars() {
        count += 1;
        if count > WIDTH || c >= '\u{1100}' {
            return unicode_width::UnicodeWidthStr::width(line) <= WIDTH;
        }
    }
    true
}

/// Wraps one line longer than [`WIDTH`] into `out`.
fn wrap(line: &str, out: &mut String) {
    let body = line.trim_start();
    let lead = line.len() - body.len();
    let indent = lead
        + if body.starts_with("* ") || body.starts_with("- ") {
            2
        } else {
            0
        };
    let indent = &" ".repeat(indent.min(WIDTH / 2));
    // Breaks between wide characters only where there are some.
    let wide = !line.is_ascii()
        && line
            .chars()
            .any(|c| unicode_width::UnicodeWidthChar::width(c) == Some(2));
    let opts = Options::new(WIDTH)
        .break_words(false)
        .word_separator(if wide {
            WordSeparator::Custom(words)
        } else {
            WordSeparator::AsciiSpace
        })
        .wrap_algorithm(WrapAlgorithm::FirstFit)
        .subsequent_indent(indent);
    for l in textwrap::wrap(line, opts) {
        out.push_str(l.trim_end());
        out.push('\n');
    }
}

/// Lines without expressions are wrapped once here rather than per message.
fn prewrap(template: String) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    for line in template.split_inclusive('\n') {
        let bare = line.trim_end_matches('\n');
        if bare.len() > WIDTH
            && !bare.contains("{{")
            && !bare.contains(CELL)
            && unicode_width::UnicodeWidthStr::width(bare) > WIDTH
        {
            wrap(bare, &mut out);
            if !line.ends_with('\n') {
                out.pop();
            }
        } else {
            out.push_str(line);
        }
    }
    out
}

/// Lines up the cells of consecutive table lines: each column as wide as
/// its widest cell, one space between columns (html2text's layout without
/// borders).
fn columns(lines: &[&str], out: &mut String, row: &mut String) {
    use unicode_width::UnicodeWidthStr;
    let mut widths: Vec<usize> = Vec::new();
    for line in lines {
        for (i, cell) in line.split(CELL).skip(1).enumerate() {
            let w = cell.width();
            match widths.get_mut(i) {
                Some(max) => *max = (*max).max(w),
                None => widths.push(w),
            }
        }
    }
    for line in lines {
        row.clear();
        let mut cells = line.split(CELL);
        row.push_str(cells.next().unwrap_or(""));
        for (i, cell) in cells.enumerate() {
            if i > 0 {
                row.push(' ');
            }
            row.push_str(cell);
            row.extend(std::iter::repeat_n(' ', widths[i] - cell.width()));
        }
        out.push_str(row.trim_end());
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(src: &str) -> String {
        derive(src, &BTreeMap::new()).expect("converts")
    }

    #[test]
    fn expressions_survive_html2text() {
        let t = d(
            "<p>Hi {{customer.first_name}}, order <b>#{{order.number}}</b></p>\n\
                   {{#if x}}<p>Only if &amp; when</p>{{/if}}\n<p>End</p>",
        );
        assert_eq!(
            t,
            "Hi {{customer.first_name}}, order **#{{order.number}}**\n\n\
             {{#if x}}\u{F8FE}\nOnly if & when\n\n{{/if}}\u{F8FE}\nEnd\n"
        );
    }

    #[test]
    fn rows_in_a_loop_are_lines_in_a_loop() {
        let t = d(
            "<table>\n{{#each items}}\n<tr><td>{{name}}</td><td>{{qty}}</td></tr>\n{{/each}}\n</table>",
        );
        assert_eq!(
            t,
            "{{#each items}}\u{F8FF}{{name}}\u{F8FF}{{qty}}\n{{/each}}"
        );
        let rendered = finish("\u{F8FF}Camera\u{F8FF}1\n\u{F8FF}Tripod XL\u{F8FF}2\n");
        assert_eq!(rendered, "Camera    1\nTripod XL 2\n");
    }

    #[test]
    fn a_footnote_of_a_conditional_link_is_conditional() {
        let t = d("<p>{{#if url}}<a href=\"{{url}}\">Track</a>{{else}}none{{/if}}</p>");
        assert_eq!(
            t,
            "{{#if url}}[Track][1]{{else}}none{{/if}}\n\n{{#if url}}[1]: {{url}}\n{{/if}}"
        );
    }

    #[test]
    fn forms_it_cannot_convert() {
        for src in [
            "<p>{{{raw}}}</p>",
            "{{> other name=x}}",
            "<table><tr>{{#if x}}<td>a</td>{{/if}}</tr></table>",
            "{{#each xs}}<a href=\"{{url}}\">x</a>{{/each}}",
        ] {
            assert!(derive(src, &BTreeMap::new()).is_none(), "{src}");
        }
    }

    #[test]
    fn finish_wraps_and_tidies() {
        let long = format!("* {}", "word ".repeat(30));
        let out = finish(&format!("\n\nA  \n\n\n\n{long}\n\n"));
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "A");
        assert_eq!(lines[1], "");
        assert!(lines[2].starts_with("* word") && lines[2].len() <= WIDTH);
        assert!(lines[3].starts_with("  word"));
        assert!(out.ends_with("word\n"));
        let zh = "感谢".repeat(50);
        assert!(
            finish(&zh)
                .lines()
                .all(|l| unicode_width::UnicodeWidthStr::width(l) <= WIDTH)
        );
    }
}
