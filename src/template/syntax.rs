//! Template syntax errors in plain words. The handlebars parser says what
//! its grammar expected ("expected escape, expression, html_expression, …"),
//! often at the end of the file; a marketer needs the tag that is wrong and
//! what to write. [`explain`] reads the source again for the usual mistakes:
//! a tag not closed with `}}`, a block never closed, closed twice or in the
//! wrong order, `{{#if}}` with nothing to test.

use handlebars::{TemplateError, TemplateErrorReason};

/// The place (line, column in `source`) and the message for `e`.
pub fn explain(e: &TemplateError, source: &str) -> (usize, usize, String) {
    let (line, col) = e.pos().unwrap_or((1, 1));
    match e.reason() {
        TemplateErrorReason::InvalidSyntax(_) => match first_problem(source) {
            Some(p) => p,
            None => (
                line,
                col,
                "the parser cannot read the template here: check the `{{ }}` tags \
                 on this line and the one before (every `{{` needs its `}}`, every \
                 `{{#block}}` its `{{/block}}`)"
                    .into(),
            ),
        },
        TemplateErrorReason::MismatchingClosedHelper(open, close) => match first_problem(source) {
            Some(p) => p,
            None => (
                line,
                col,
                format!(
                    "`{{{{#{open}}}}}` is closed by `{{{{/{close}}}}}`: close it with `{{{{/{open}}}}}`"
                ),
            ),
        },
        other => (line, col, other.to_string()),
    }
}

/// Blocks that need something to work on.
const NEEDS: &[(&str, &str)] = &[
    (
        "if",
        "something to test, e.g. `{{#if customer.first_name}}`",
    ),
    (
        "unless",
        "something to test, e.g. `{{#unless customer.first_name}}`",
    ),
    ("each", "a list to go through, e.g. `{{#each order.items}}`"),
    ("with", "what to step into, e.g. `{{#with shipment}}`"),
];

/// The first usual mistake in `source`, with its line and column.
fn first_problem(source: &str) -> Option<(usize, usize, String)> {
    let place = |at: usize| {
        let before = &source[..at];
        let line = before.matches('\n').count() + 1;
        let col = before[before.rfind('\n').map_or(0, |i| i + 1)..]
            .chars()
            .count()
            + 1;
        (line, col)
    };
    let problem = |at: usize, msg: String| {
        let (l, c) = place(at);
        Some((l, c, msg))
    };
    // Open blocks: name and where.
    let mut open: Vec<(String, usize)> = Vec::new();
    let mut i = 0;
    while let Some(found) = source[i..].find("{{") {
        let at = i + found;
        let rest = &source[at..];
        if rest.starts_with("{{{{") || (at > 0 && source.as_bytes()[at - 1] == b'\\') {
            // Raw blocks and escaped tags: too rare to second-guess.
            return None;
        }
        let (close, skip) = if rest.starts_with("{{!--") {
            ("--}}", 5)
        } else if rest.starts_with("{{{") {
            ("}}}", 3)
        } else {
            ("}}", 2)
        };
        let Some(end) = rest[skip..].find(close).map(|e| e + skip) else {
            let shown: String = rest.chars().take(40).take_while(|c| *c != '\n').collect();
            return problem(
                at,
                format!("`{shown}` is not closed: the tag needs its `{close}`"),
            );
        };
        // A tag that runs into the next one lacks its end.
        if close == "}}"
            && let Some(next) = rest[2..end].find("{{")
        {
            let shown = rest[..2 + next].lines().next().unwrap_or("").trim_end();
            return problem(
                at,
                format!("`{shown}` is not closed: the tag needs its `}}}}` before the next `{{{{`"),
            );
        }
        let inner = rest[skip..end].trim_matches('~').trim();
        i = at + end + close.len();
        if skip != 2 || inner.starts_with('!') {
            continue;
        }
        let shown = &rest[..end + close.len()];
        if inner.is_empty() {
            return problem(
                at,
                "`{{}}` is empty: write a name inside, e.g. `{{order.number}}`".into(),
            );
        }
        if let Some(block) = inner
            .strip_prefix("#>")
            .or_else(|| inner.strip_prefix("#*"))
            .or_else(|| inner.strip_prefix('#'))
        {
            let mut words = block.split_whitespace();
            let Some(name) = words.next() else {
                return problem(
                    at,
                    format!("`{shown}` names no block: write e.g. `{{{{#if …}}}}`"),
                );
            };
            if let Some((_, needs)) = NEEDS.iter().find(|(n, _)| *n == name)
                && words.next().is_none()
            {
                return problem(at, format!("`{shown}` needs {needs}"));
            }
            open.push((name.to_string(), at));
        } else if let Some(name) = inner.strip_prefix('/') {
            let name = name.trim();
            match open.pop() {
                None => {
                    return problem(
                        at,
                        format!(
                            "`{shown}` closes no block: there is no `{{{{#{name} …}}}}` open before it"
                        ),
                    );
                }
                Some((o, _)) if o == name => {}
                Some((o, o_at)) => {
                    let (l, c) = place(o_at);
                    return problem(
                        at,
                        format!(
                            "`{shown}` closes `{{{{#{o} …}}}}` (line {l}, column {c}): close that one \
                             first with `{{{{/{o}}}}}`"
                        ),
                    );
                }
            }
        } else if (inner == "else" || inner.starts_with("else ") || inner == "^") && open.is_empty()
        {
            return problem(
                at,
                format!(
                    "`{shown}` is outside any block: it belongs inside `{{{{#if …}}}}…{{{{/if}}}}`"
                ),
            );
        }
    }
    if let Some((name, at)) = open.pop() {
        return problem(
            at,
            format!("`{{{{#{name} …}}}}` is never closed: add `{{{{/{name}}}}}` where it ends"),
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(src: &str) -> String {
        let e = handlebars::Template::compile(src).unwrap_err();
        let (l, c, m) = explain(&e, src);
        format!("{l}:{c}: {m}")
    }

    #[test]
    fn usual_mistakes_are_said_plainly_where_they_are() {
        for (src, want) in [
            (
                "Hi {{customer.first_name}, welcome",
                "1:4: `{{customer.first_name}, welcome` is not closed: the tag needs its `}}`",
            ),
            (
                "<p>{{order.number</p>\n<p>{{order.id}}</p>",
                "1:4: `{{order.number</p>` is not closed: the tag needs its `}}` before the next `{{`",
            ),
            (
                "<p>\n{{#if}}x</p>",
                "2:1: `{{#if}}` needs something to test, e.g. `{{#if customer.first_name}}`",
            ),
            (
                "{{#if a}}\n{{#each b}}x\n{{/if}}",
                "3:1: `{{/if}}` closes `{{#each …}}` (line 2, column 1): close that one first with `{{/each}}`",
            ),
            (
                "<p>{{#if a}}x</p>\n",
                "1:4: `{{#if …}}` is never closed: add `{{/if}}` where it ends",
            ),
            (
                "x{{/each}}",
                "1:2: `{{/each}}` closes no block: there is no `{{#each …}}` open before it",
            ),
        ] {
            assert_eq!(message(src), want, "{src}");
        }
    }
}
