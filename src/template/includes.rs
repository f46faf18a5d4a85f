//! Which partials each registered template includes, checked at load time so
//! that no render can recurse without bound: partials that include each other
//! (`a` → `b` → `a`, or `a` → `a`, also through inline partials) and partial
//! names computed at render time (`{{> (lookup ...)}}`) are errors, and every
//! template that can reach one is left out. What is left includes partials
//! along an acyclic graph of names written in the files, so its depth is
//! bounded by the number of partials.
//!
//! Names resolve as handlebars resolves them, over-approximated: an include
//! of `x` may reach every inline partial named `x` (inline partials are
//! visible to the partials a template includes) and the registered template
//! `x`. A loop through that graph may be one that a real render would not
//! take; it is still reported, since a small change to the data could take it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use handlebars::template::{DecoratorTemplate, Parameter, Template, TemplateElement};

use crate::diagnostic::Diagnostic;

/// Where a registered template's text comes from: its file and the file line
/// on which the template's first line is.
#[derive(Debug, Clone)]
pub(crate) struct Origin {
    pub file: PathBuf,
    pub first_line: u64,
}

#[derive(Debug)]
struct Include {
    /// `None`: a name computed at render time.
    name: Option<String>,
    line: usize,
    col: usize,
}

#[derive(Debug)]
struct Node<'a> {
    /// The registered template this node is or is inside.
    unit: &'a str,
    /// The name an include resolves to this node by.
    name: String,
    /// `Some` for an inline partial.
    inline: Option<(usize, usize)>,
    includes: Vec<Include>,
}

/// Collects the includes of `t` (not those inside its inline partials, which
/// become nodes of their own) and the inline partials it defines.
fn walk<'t>(
    t: &'t Template,
    includes: &mut Vec<Include>,
    inlines: &mut Vec<(String, &'t Template, usize, usize)>,
) {
    for (i, e) in t.elements.iter().enumerate() {
        let (line, col) = t.mapping.get(i).map_or((1, 1), |m| (m.0, m.1));
        match e {
            TemplateElement::HelperBlock(h) => {
                for sub in [&h.template, &h.inverse].into_iter().flatten() {
                    walk(sub, includes, inlines);
                }
            }
            TemplateElement::PartialExpression(d) | TemplateElement::PartialBlock(d) => {
                includes.push(Include {
                    name: static_name(&d.name),
                    line,
                    col,
                });
                // A partial block's content is rendered by the includer.
                if let Some(sub) = &d.template {
                    walk(sub, includes, inlines);
                }
            }
            TemplateElement::DecoratorBlock(d) | TemplateElement::DecoratorExpression(d) => {
                match inline_name(d) {
                    Some(name) => {
                        if let Some(sub) = &d.template {
                            inlines.push((name, sub, line, col));
                        }
                    }
                    None => {
                        if let Some(sub) = &d.template {
                            walk(sub, includes, inlines);
                        }
                    }
                }
            }
            // Text, expressions and comments include nothing.
            _ => {}
        }
    }
}

fn static_name(p: &Parameter) -> Option<String> {
    match p {
        Parameter::Name(_) | Parameter::Path(_) => p.as_name().map(str::to_string),
        Parameter::Literal(serde_json::Value::String(s)) => Some(s.clone()),
        _ => None,
    }
}

fn inline_name(d: &DecoratorTemplate) -> Option<String> {
    if d.name.as_name() != Some("inline") {
        return None;
    }
    match d.params.first() {
        Some(Parameter::Literal(serde_json::Value::String(s))) => Some(s.clone()),
        Some(p) => p.as_name().map(str::to_string),
        None => None,
    }
}

/// Why a node cannot be rendered.
enum Bad {
    /// In an include loop, or includes a computed name: reported where it is.
    Reported,
    /// Includes a node that cannot be rendered: (include, target).
    Reaches(usize, usize),
}

/// Checks the includes of every template in `templates` (a registry's
/// templates by name; `origins` says where each comes from). Returns the
/// errors, one per loop, per computed partial name and per template that
/// reaches one of those, and the names of the templates that must not be
/// rendered.
pub(crate) fn check(
    templates: &BTreeMap<&str, &Template>,
    origins: &BTreeMap<String, Origin>,
) -> (Vec<Diagnostic>, BTreeSet<String>) {
    let fallback = Origin {
        file: PathBuf::from("?"),
        first_line: 1,
    };
    let origin = |unit: &str| origins.get(unit).unwrap_or(&fallback);
    // File, line and column of a place in a registered template.
    let at = |unit: &str, line: usize, col: usize| {
        let o = origin(unit);
        (
            o.file.as_path(),
            (line as u64 + o.first_line).saturating_sub(1),
            col as u64,
        )
    };
    let show = |(file, line, col): (&Path, u64, u64)| format!("{}:{line}:{col}", file.display());

    let mut nodes: Vec<Node> = Vec::new();
    for (&unit, t) in templates {
        let mut includes = Vec::new();
        let mut inlines = Vec::new();
        walk(t, &mut includes, &mut inlines);
        nodes.push(Node {
            unit,
            name: unit.to_string(),
            inline: None,
            includes,
        });
        // Inline partials inside inline partials are nodes too.
        let mut i = 0;
        while i < inlines.len() {
            let (name, sub, line, col) = inlines[i].clone();
            let mut includes = Vec::new();
            walk(sub, &mut includes, &mut inlines);
            nodes.push(Node {
                unit,
                name,
                inline: Some((line, col)),
                includes,
            });
            i += 1;
        }
    }
    let mut by_name: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, n) in nodes.iter().enumerate() {
        by_name.entry(n.name.as_str()).or_default().push(i);
    }
    // The edges: (target, index of the include in the source node). An
    // unknown name has none: it fails at render time (or a partial block
    // renders its fallback), which cannot recurse.
    let edges: Vec<Vec<(usize, usize)>> = nodes
        .iter()
        .map(|n| {
            let mut out = Vec::new();
            for (k, inc) in n.includes.iter().enumerate() {
                if let Some(name) = &inc.name
                    && let Some(targets) = by_name.get(name.as_str())
                {
                    out.extend(targets.iter().map(|&t| (t, k)));
                }
            }
            out
        })
        .collect();

    let describe = |i: usize| match nodes[i].inline {
        Some(_) => format!("inline partial `{}`", nodes[i].name),
        None => format!("`{}`", nodes[i].name),
    };
    let mut diags = Vec::new();
    let mut bad: BTreeMap<usize, Bad> = BTreeMap::new();
    for (i, n) in nodes.iter().enumerate() {
        for inc in n.includes.iter().filter(|inc| inc.name.is_none()) {
            let (file, line, col) = at(n.unit, inc.line, inc.col);
            diags.push(Diagnostic::error(
                file,
                line,
                col,
                "a partial's name must be written out: a name computed at render time \
                 could make partials include each other without end",
            ));
            bad.insert(i, Bad::Reported);
        }
    }

    // Loops: a depth-first search; each back edge closes one. Every node of a
    // strongly connected component that is not on a reported loop reaches one.
    let mut seen: BTreeSet<Vec<usize>> = BTreeSet::new();
    let mut state = vec![Visit::New; nodes.len()];
    let mut stack: Vec<(usize, usize)> = Vec::new();
    let mut loops: Vec<Vec<(usize, usize)>> = Vec::new();
    for start in 0..nodes.len() {
        if state[start] == Visit::New {
            dfs(start, &edges, &mut state, &mut stack, &mut loops);
        }
    }
    for cycle in loops {
        let mut key: Vec<usize> = cycle.iter().map(|h| h.0).collect();
        key.sort_unstable();
        key.dedup();
        if !seen.insert(key) {
            continue;
        }
        // Told from the hop that comes first in file order.
        let place = |&(n, inc): &(usize, usize)| {
            let i: &Include = &nodes[n].includes[inc];
            at(nodes[n].unit, i.line, i.col)
        };
        let first = (0..cycle.len())
            .min_by_key(|&k| place(&cycle[k]))
            .unwrap_or(0);
        let hops: Vec<String> = (0..cycle.len())
            .map(|k| {
                let hop = &cycle[(first + k) % cycle.len()];
                let name = nodes[hop.0].includes[hop.1].name.as_deref().unwrap_or("?");
                format!(
                    "{} ({}) includes `{name}`",
                    show(place(hop)),
                    describe(hop.0)
                )
            })
            .collect();
        let (file, line, col) = place(&cycle[first]);
        diags.push(Diagnostic::error(
            file,
            line,
            col,
            format!(
                "partials include each other without end: {} -> back to {}",
                hops.join(" -> "),
                describe(cycle[first].0)
            ),
        ));
        for (n, _) in cycle {
            bad.insert(n, Bad::Reported);
        }
    }

    // Every node that reaches a bad one is bad too.
    let mut changed = true;
    while changed {
        changed = false;
        for (i, out) in edges.iter().enumerate() {
            if bad.contains_key(&i) {
                continue;
            }
            if let Some(&(t, k)) = out.iter().find(|(t, _)| bad.contains_key(t)) {
                bad.insert(i, Bad::Reaches(k, t));
                changed = true;
            }
        }
    }
    let mut refused = BTreeSet::new();
    for (&i, why) in &bad {
        refused.insert(nodes[i].unit.to_string());
        if let (Bad::Reaches(k, t), None) = (why, nodes[i].inline) {
            let inc = &nodes[i].includes[*k];
            let (file, line, col) = at(nodes[i].unit, inc.line, inc.col);
            diags.push(Diagnostic::error(
                file,
                line,
                col,
                format!(
                    "left out: it includes {}, which cannot be rendered (see the include loop \
                     reported for it)",
                    describe(*t)
                ),
            ));
        }
    }
    (diags, refused)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Visit {
    New,
    OnStack,
    Done,
}

fn dfs(
    n: usize,
    edges: &[Vec<(usize, usize)>],
    state: &mut [Visit],
    stack: &mut Vec<(usize, usize)>,
    loops: &mut Vec<Vec<(usize, usize)>>,
) {
    state[n] = Visit::OnStack;
    for &(t, inc) in &edges[n] {
        stack.push((n, inc));
        match state[t] {
            Visit::New => dfs(t, edges, state, stack, loops),
            Visit::OnStack => {
                let from = stack.iter().rposition(|h| h.0 == t).unwrap_or(0);
                loops.push(stack[from..].to_vec());
            }
            Visit::Done => {}
        }
        stack.pop();
    }
    state[n] = Visit::Done;
}
