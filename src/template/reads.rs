//! Which data a template reads, found by walking its parsed form
//! ([`handlebars::template::Template`]) rather than by rendering it: every
//! `{{path}}`, block (`#if`, `#unless`, `#each`, `#with`) and helper argument,
//! with its place, through the partials it includes and its layout.
//!
//! `validate` uses it to report every unknown variable of a template in one
//! run (a render stops at the first) and the empty values a subject may show;
//! `preview --data` to say which keys of the data no template reads and which
//! fields the template reads that the data lacks.
//!
//! Paths are resolved as handlebars resolves them: `../` climbs out of an
//! `#each` or `#with`, `@root` starts at the top, block parameters
//! (`as |item|`) name what their block walks. Where the walk cannot know the
//! scope (inside a block helper it does not know, a partial block, an inline
//! partial) its reads are kept but marked uncertain: checks that would fail a
//! template skip them.

use std::collections::HashMap;

use handlebars::template::{BlockParam, Parameter, Template, TemplateElement};
use handlebars::{Path, PathSeg};
use serde_json::Value;

/// One step of a data path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Seg {
    Key(String),
    /// Any element of a list (or value of an object) that `#each` walks.
    Each,
}

pub type DataPath = Vec<Seg>;

/// `order.items[].name`.
pub fn display(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Each => out.push_str("[]"),
        }
    }
    out
}

/// How a template reads a path, which decides what a missing value does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    /// `{{path}}`: strict rendering fails when the path is missing.
    Value,
    /// `{{#each path}}` (`each`), `{{#with path}}`: fails when missing, unless
    /// the block has an `{{else}}` (and when not a list, or empty for `#with`).
    Block { has_else: bool, each: bool },
    /// `{{#if path}}`, `{{#unless path}}`: a missing value is false.
    Test,
    /// An argument of a helper (`{{money order.total order.currency}}`): a
    /// missing value reaches the helper as null, with no error.
    Argument,
}

#[derive(Debug, Clone)]
pub struct Read {
    /// From the root of the data; `None` where the walk lost the scope.
    pub path: Option<DataPath>,
    /// As written in the template.
    pub raw: String,
    pub how: How,
    /// The registered template it is written in (a part, a partial, a layout).
    pub unit: String,
    /// Line and column in that template.
    pub line: usize,
    pub col: usize,
    /// False inside what the walk does not understand (see the module doc).
    pub certain: bool,
    /// The tests that must hold for the read to be rendered: a path and
    /// whether it must be truthy (`#if`, `#each`, `#with`) or falsy (`#unless`,
    /// `{{else}}`). A test the walk cannot place makes it `None`.
    pub guards: Vec<Option<(DataPath, bool)>>,
    /// Inside an `#each`: rendered once per element, or not at all.
    pub repeated: bool,
}

/// What a walk needs from the registry.
pub trait Lookup {
    /// A registered template (a partial or a layout) by name.
    fn template(&self, name: &str) -> Option<&Template>;
    /// Whether `{{name}}` with no arguments calls a helper.
    fn is_helper(&self, name: &str) -> bool;
}

/// The reads of `template` (registered as `unit`), rendered at the root of
/// the data, and of the partials it includes.
pub fn of(template: &Template, unit: &str, lookup: &dyn Lookup) -> Vec<Read> {
    let mut w = Walker {
        lookup,
        reads: Vec::new(),
        scopes: vec![Scope {
            base: Some(Vec::new()),
            locals: HashMap::new(),
        }],
        guards: Vec::new(),
        certain: true,
        repeated: false,
        partials: Vec::new(),
    };
    w.template(template, unit);
    w.reads
}

#[derive(Debug, Clone)]
struct Scope {
    /// The context's path; `None`: unknown.
    base: Option<DataPath>,
    /// Block parameters and partial hash values: a name and the path it
    /// stands for (`None`: a value that is not data, such as a literal).
    locals: HashMap<String, Option<DataPath>>,
}

struct Walker<'l> {
    lookup: &'l dyn Lookup,
    reads: Vec<Read>,
    scopes: Vec<Scope>,
    guards: Vec<Option<(DataPath, bool)>>,
    certain: bool,
    repeated: bool,
    /// The partials being walked: include loops are refused at load, this
    /// only keeps a walk finite whatever it is given.
    partials: Vec<String>,
}

/// What a path refers to.
enum Target {
    Data(DataPath),
    /// A local such as `@index`, or a literal passed by name: not data.
    NotData,
    /// The walk does not know the scope.
    Unknown,
}

fn is_rule(seg: &PathSeg, rule: &str) -> bool {
    // handlebars does not export its grammar's rules; their names are stable.
    matches!(seg, PathSeg::Ruled(r) if format!("{r:?}") == rule)
}

impl Walker<'_> {
    fn resolve(&self, path: &Path) -> Target {
        let segs = match path {
            Path::Local(_) => return Target::NotData,
            Path::Relative((segs, _)) => segs,
        };
        let mut rest = segs.as_slice();
        let mut up = 0;
        let mut root = false;
        loop {
            match rest.first() {
                Some(s) if is_rule(s, "path_root") => root = true,
                Some(s) if is_rule(s, "path_up") => up += 1,
                Some(s) if is_rule(s, "path_local") => return Target::NotData,
                _ => break,
            }
            rest = &rest[1..];
        }
        let names: Vec<String> = rest
            .iter()
            .filter_map(|s| match s {
                PathSeg::Named(n) => Some(n.clone()),
                _ => None,
            })
            .collect();
        let base = if root {
            Some(Vec::new())
        } else {
            let Some(depth) = self.scopes.len().checked_sub(1 + up) else {
                return Target::Unknown;
            };
            // A block parameter, innermost first, shadows the context.
            let local = names.first().and_then(|first| {
                self.scopes[..=depth]
                    .iter()
                    .rev()
                    .find_map(|s| s.locals.get(first))
            });
            match local {
                Some(None) => return Target::NotData,
                Some(Some(p)) => {
                    let mut p = p.clone();
                    p.extend(names[1..].iter().cloned().map(Seg::Key));
                    return Target::Data(p);
                }
                None => self.scopes[depth].base.clone(),
            }
        };
        match base {
            None => Target::Unknown,
            Some(mut p) => {
                p.extend(names.into_iter().map(Seg::Key));
                Target::Data(p)
            }
        }
    }

    fn read(&mut self, path: &Path, how: How, unit: &str, at: (usize, usize)) -> Option<DataPath> {
        let (p, certain) = match self.resolve(path) {
            Target::NotData => return None,
            Target::Data(p) => (Some(p), self.certain),
            Target::Unknown => (None, false),
        };
        let raw = match path {
            Path::Relative((_, raw)) | Path::Local((_, _, raw)) => raw.clone(),
        };
        self.reads.push(Read {
            path: p.clone(),
            raw,
            how,
            unit: unit.to_string(),
            line: at.0,
            col: at.1,
            certain,
            guards: self.guards.clone(),
            repeated: self.repeated,
        });
        p
    }

    /// A parameter read as `how`; subexpressions are helper calls whose
    /// arguments are read.
    fn param(
        &mut self,
        p: &Parameter,
        how: How,
        unit: &str,
        at: (usize, usize),
    ) -> Option<DataPath> {
        match p {
            Parameter::Path(path) => self.read(path, how, unit, at),
            Parameter::Subexpression(sub) => {
                for a in sub.params().into_iter().flatten() {
                    self.param(a, How::Argument, unit, at);
                }
                for a in sub.hash().into_iter().flat_map(|h| h.values()) {
                    self.param(a, How::Argument, unit, at);
                }
                None
            }
            _ => None,
        }
    }

    fn template(&mut self, t: &Template, unit: &str) {
        for (i, e) in t.elements.iter().enumerate() {
            let at = t.mapping.get(i).map_or((1, 1), |m| (m.0, m.1));
            self.element(e, unit, at);
        }
    }

    fn element(&mut self, e: &TemplateElement, unit: &str, at: (usize, usize)) {
        match e {
            TemplateElement::Expression(h) | TemplateElement::HtmlExpression(h) => {
                let name_only = h.params.is_empty() && h.hash.is_empty();
                match &h.name {
                    Parameter::Path(p) if name_only => {
                        if !self.lookup.is_helper(&raw_of(p)) {
                            self.read(p, How::Value, unit, at);
                        }
                    }
                    _ => self.arguments(&h.params, &h.hash, unit, at),
                }
            }
            TemplateElement::HelperBlock(h) => {
                let name = h.name.as_name().unwrap_or_default().to_string();
                match name.as_str() {
                    "if" | "unless" => {
                        let tested = h
                            .params
                            .first()
                            .and_then(|p| self.param(p, How::Test, unit, at));
                        let holds = name == "if";
                        self.branch(&h.template, tested.clone().map(|p| (p, holds)), unit, None);
                        self.branch(&h.inverse, tested.map(|p| (p, !holds)), unit, None);
                    }
                    "each" | "with" => {
                        let how = How::Block {
                            has_else: h.inverse.is_some(),
                            each: name == "each",
                        };
                        let walked = match h.params.first() {
                            Some(p @ Parameter::Path(_)) => self.param(p, how, unit, at),
                            Some(p) => {
                                self.param(p, How::Argument, unit, at);
                                None
                            }
                            None => None,
                        };
                        let inner = walked.clone().map(|mut p| {
                            if name == "each" {
                                p.push(Seg::Each);
                            }
                            p
                        });
                        let mut locals = HashMap::new();
                        let first = match &h.block_param {
                            Some(BlockParam::Single(p)) => p.as_name(),
                            Some(BlockParam::Pair((p, key))) => {
                                if let Some(k) = key.as_name() {
                                    locals.insert(k.to_string(), None);
                                }
                                p.as_name()
                            }
                            _ => None,
                        };
                        if let Some(first) = first {
                            locals.insert(first.to_string(), inner.clone());
                        }
                        let scope = Scope {
                            base: inner,
                            locals,
                        };
                        let outer = self.repeated;
                        self.repeated |= name == "each";
                        self.branch(
                            &h.template,
                            walked.clone().map(|p| (p, true)),
                            unit,
                            Some(scope),
                        );
                        self.repeated = outer;
                        self.branch(&h.inverse, walked.map(|p| (p, false)), unit, None);
                    }
                    _ => {
                        // A block helper of its own: its arguments are read;
                        // what it renders inside, with which context, is
                        // its business.
                        self.arguments(&h.params, &h.hash, unit, at);
                        let certain = std::mem::replace(&mut self.certain, false);
                        self.guards.push(None);
                        for t in [&h.template, &h.inverse].into_iter().flatten() {
                            self.template(t, unit);
                        }
                        self.guards.pop();
                        self.certain = certain;
                    }
                }
            }
            TemplateElement::PartialExpression(d) | TemplateElement::PartialBlock(d) => {
                let context = d.params.first().map(|p| match p {
                    Parameter::Path(path) => match self.resolve(path) {
                        Target::Data(p) => Some(p),
                        _ => None,
                    },
                    _ => None,
                });
                let mut locals = HashMap::new();
                for (k, v) in &d.hash {
                    let p = self.param(v, How::Argument, unit, at);
                    locals.insert(k.clone(), p);
                }
                let base = match context {
                    Some(c) => c,
                    None => self.scopes.last().and_then(|s| s.base.clone()),
                };
                let name = match &d.name {
                    Parameter::Name(n) => Some(n.clone()),
                    Parameter::Path(p) => Some(raw_of(p)),
                    Parameter::Literal(Value::String(s)) => Some(s.clone()),
                    _ => None,
                };
                // The content of a partial block renders as `@partial-block`
                // inside the partial, in a context the walk does not follow.
                if let Some(t) = &d.template {
                    let certain = std::mem::replace(&mut self.certain, false);
                    self.template(t, unit);
                    self.certain = certain;
                }
                let Some(name) = name else { return };
                if self.partials.contains(&name) || self.partials.len() > 16 {
                    return;
                }
                let Some(t) = self.lookup.template(&name) else {
                    return;
                };
                self.partials.push(name.clone());
                self.scopes.push(Scope { base, locals });
                self.template(t, &name);
                self.scopes.pop();
                self.partials.pop();
            }
            TemplateElement::DecoratorExpression(d) | TemplateElement::DecoratorBlock(d) => {
                // An inline partial renders where it is included.
                if let Some(t) = &d.template {
                    let certain = std::mem::replace(&mut self.certain, false);
                    self.guards.push(None);
                    self.template(t, unit);
                    self.guards.pop();
                    self.certain = certain;
                }
            }
            TemplateElement::RawString(_) | TemplateElement::Comment(_) => {}
            _ => {}
        }
    }

    fn arguments(
        &mut self,
        params: &[Parameter],
        hash: &std::collections::HashMap<String, Parameter>,
        unit: &str,
        at: (usize, usize),
    ) {
        for p in params {
            self.param(p, How::Argument, unit, at);
        }
        for p in hash.values() {
            self.param(p, How::Argument, unit, at);
        }
    }

    fn branch(
        &mut self,
        t: &Option<Template>,
        guard: Option<(DataPath, bool)>,
        unit: &str,
        scope: Option<Scope>,
    ) {
        let Some(t) = t else { return };
        self.guards.push(guard);
        let pushed = scope.is_some();
        if let Some(s) = scope {
            self.scopes.push(s);
        }
        self.template(t, unit);
        if pushed {
            self.scopes.pop();
        }
        self.guards.pop();
    }
}

fn raw_of(p: &Path) -> String {
    match p {
        Path::Relative((_, raw)) | Path::Local((_, _, raw)) => raw.clone(),
    }
}

/// What a path finds in some data.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Found<'a> {
    Value(&'a Value),
    /// Not there: strict rendering fails on it.
    Missing,
    /// Cannot be told: it goes through an empty list.
    Unknown,
}

/// Looks `path` up in `data` as handlebars would; through a list, every
/// element must have it.
pub fn find<'a>(data: &'a Value, path: &[Seg]) -> Found<'a> {
    let Some((first, rest)) = path.split_first() else {
        return Found::Value(data);
    };
    match (first, data) {
        (Seg::Key(k), Value::Object(o)) => match o.get(k) {
            Some(v) => find(v, rest),
            None => Found::Missing,
        },
        (Seg::Key(k), Value::Array(a)) => match k.parse::<usize>().ok().and_then(|i| a.get(i)) {
            Some(v) => find(v, rest),
            None => Found::Missing,
        },
        (Seg::Key(_), _) => Found::Missing,
        (Seg::Each, Value::Array(_) | Value::Object(_)) => {
            let items: Vec<&Value> = match data {
                Value::Array(a) => a.iter().collect(),
                Value::Object(o) => o.values().collect(),
                _ => Vec::new(),
            };
            let mut found = Found::Unknown;
            for item in items {
                match find(item, rest) {
                    Found::Missing => return Found::Missing,
                    Found::Value(v) if found == Found::Unknown => found = Found::Value(v),
                    _ => {}
                }
            }
            found
        }
        (Seg::Each, _) => Found::Unknown,
    }
}

/// Whether the tests around a read hold for `data` (handlebars' truthiness:
/// null, false, 0, "" and empty lists and objects are false). `None` when a
/// test cannot be told.
pub fn reached(read: &Read, data: &Value) -> Option<bool> {
    let mut all = true;
    for g in &read.guards {
        let (path, want) = g.as_ref()?;
        let truthy = match find(data, path) {
            Found::Value(v) => truthy(v),
            Found::Missing => false,
            Found::Unknown => return None,
        };
        all &= truthy == *want;
    }
    Some(all)
}

pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(f64::is_normal),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Partials(HashMap<String, Template>);

    impl Lookup for Partials {
        fn template(&self, name: &str) -> Option<&Template> {
            self.0.get(name)
        }
        fn is_helper(&self, name: &str) -> bool {
            name == "today"
        }
    }

    fn reads(src: &str, partials: &[(&str, &str)]) -> Vec<(String, How, usize, usize, bool)> {
        let p = Partials(
            partials
                .iter()
                .map(|(n, s)| (n.to_string(), Template::compile(s).unwrap()))
                .collect(),
        );
        of(&Template::compile(src).unwrap(), "t", &p)
            .into_iter()
            .map(|r| {
                (
                    r.path.as_deref().map(display).unwrap_or("?".into()),
                    r.how,
                    r.line,
                    r.col,
                    r.certain,
                )
            })
            .collect()
    }

    #[test]
    fn paths_resolve_through_blocks_parameters_and_partials() {
        let got = reads(
            "Hi {{customer.first_name}}\n{{#each order.items as |item|}}{{name}} {{item.sku}} {{../order.id}} {{@index}}{{/each}}\n\
             {{#with shipment}}{{carrier}}{{@root.order.number}}{{/with}}{{#if review.rating}}{{money order.total order.currency}}{{/if}}\
             {{today}}{{> line x=order.id}}",
            &[("line", "{{x}} {{customer.email}}")],
        );
        let paths: Vec<(&str, How, bool)> = got
            .iter()
            .map(|(p, h, _, _, c)| (p.as_str(), *h, *c))
            .collect();
        let each = How::Block {
            has_else: false,
            each: true,
        };
        let with = How::Block {
            has_else: false,
            each: false,
        };
        assert_eq!(
            paths,
            [
                ("customer.first_name", How::Value, true),
                ("order.items", each, true),
                ("order.items[].name", How::Value, true),
                ("order.items[].sku", How::Value, true),
                ("order.id", How::Value, true),
                ("shipment", with, true),
                ("shipment.carrier", How::Value, true),
                ("order.number", How::Value, true),
                ("review.rating", How::Test, true),
                ("order.total", How::Argument, true),
                ("order.currency", How::Argument, true),
                ("order.id", How::Argument, true),
                ("order.id", How::Value, true),
                ("customer.email", How::Value, true),
            ]
        );
        // Places are the template's lines and columns.
        assert_eq!((got[0].2, got[0].3), (1, 4));
        assert_eq!((got[2].2, got[2].3), (2, 32));
    }

    #[test]
    fn unknown_block_helpers_make_their_reads_uncertain() {
        let got = reads("{{#repeat 3}}{{customer.id}}{{/repeat}}", &[]);
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].0.as_str(), got[0].4), ("customer.id", false));
    }

    #[test]
    fn find_follows_lists_and_tells_missing_from_unknown() {
        let data =
            json!({"order": {"items": [{"sku": "A"}, {"sku": "B", "name": "x"}], "tags": []}});
        let p = |s: &[&str]| -> DataPath {
            s.iter()
                .map(|k| match *k {
                    "[]" => Seg::Each,
                    k => Seg::Key(k.to_string()),
                })
                .collect()
        };
        assert_eq!(
            find(&data, &p(&["order", "items", "[]", "sku"])),
            Found::Value(&json!("A"))
        );
        assert_eq!(
            find(&data, &p(&["order", "items", "[]", "name"])),
            Found::Missing
        );
        assert_eq!(
            find(&data, &p(&["order", "tags", "[]", "x"])),
            Found::Unknown
        );
        assert_eq!(find(&data, &p(&["order", "totl"])), Found::Missing);
    }
}
