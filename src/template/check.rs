//! What `validate` and `preview` learn from the data a template reads
//! ([`reads`]): every unknown variable at once, the subject's values that a
//! real event may leave empty, and how a `--data` file fits a template.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use handlebars::Handlebars;
use handlebars::template::Template;
use serde_json::Value;

use super::data::Needs;
use super::reads::{self, DataPath, Found, How, Read, Seg, display, find};
use super::{LocaleFile, Templates, TextPart};
use crate::diagnostic::{Diagnostic, Diagnostics, closest};

/// The file given to `preview --data`.
#[derive(Debug, Clone, Copy)]
pub struct DataFile<'a> {
    pub file: &'a Path,
    pub text: &'a str,
    pub json: &'a Value,
    /// An event, not template data merged over the sample.
    pub event: bool,
}

/// A read with its place in a file.
#[derive(Debug, Clone)]
pub struct Placed {
    pub read: Read,
    pub file: PathBuf,
    pub line: u64,
    pub col: u64,
    /// Read in the subject itself (not in a partial it includes).
    pub in_subject: bool,
}

struct Registry<'a>(&'a Handlebars<'static>);

impl reads::Lookup for Registry<'_> {
    fn template(&self, name: &str) -> Option<&Template> {
        self.0.get_template(name)
    }

    fn is_helper(&self, name: &str) -> bool {
        // A dotted path is never a helper. Handlebars has no public way to
        // ask for a helper by name: a helper renders `{{name}}` on no data,
        // a missing variable fails in strict mode.
        !name.contains(['.', '/', '[', '@'])
            && self
                .0
                .render_template(&format!("{{{{{name}}}}}"), &serde_json::json!({}))
                .is_ok()
    }
}

/// Data the renderer adds itself; a layout also gets the rendered parts.
const GIVEN: &[&str] = &["_locale"];
const GIVEN_TO_LAYOUTS: &[&str] = &["body", "subject", "preheader"];

/// `customer.attributes` holds what each shop sends: a key the sample lacks
/// may well be there in real events.
fn free_form(path: &[Seg]) -> bool {
    path.len() > 2
        && path[0] == Seg::Key("customer".into())
        && path[1] == Seg::Key("attributes".into())
}

fn root_is(path: &[Seg], names: &[&str]) -> bool {
    matches!(path.first(), Some(Seg::Key(k)) if names.contains(&k.as_str()))
}

impl Templates {
    /// Every locale of template `id`, those with errors too.
    fn every_locale(&self, id: &str) -> Vec<(&String, &LocaleFile)> {
        let mut out = Vec::new();
        for set in [self.sets.get(id), self.broken.get(id)]
            .into_iter()
            .flatten()
        {
            out.extend(set.locales.iter());
            out.extend(set.broken.iter());
        }
        out.sort_by_key(|(l, _)| l.as_str());
        out
    }

    /// The locales of template `id`, those with errors too.
    pub fn every_locale_name(&self, id: &str) -> Vec<String> {
        self.every_locale(id)
            .into_iter()
            .map(|(l, _)| l.clone())
            .collect()
    }

    /// Whether template `id` has files with errors (reported when loading):
    /// a sequence that sends it is not told it does not exist.
    pub fn has_errors_in(&self, id: &str) -> bool {
        self.broken.contains_key(id)
            || self
                .sets
                .get(id)
                .is_some_and(|s| s.failed || !s.broken.is_empty())
    }

    /// Every template id, those whose locales all have errors too.
    pub fn every_id(&self) -> impl Iterator<Item = &String> {
        let ids: BTreeSet<&String> = self.sets.keys().chain(self.broken.keys()).collect();
        ids.into_iter()
    }

    /// What the locale `locale` of template `id` reads (subject, preheader,
    /// body, its own text part, its layout, and the partials each includes),
    /// each read placed in the file it is written in.
    pub fn reads(&self, id: &str, locale: &str) -> Vec<Placed> {
        let Some((_, lf)) = self
            .every_locale(id)
            .into_iter()
            .find(|(l, _)| *l == locale)
        else {
            return Vec::new();
        };
        let n = &lf.names;
        let html = match lf.inlined {
            true => &n.html_src,
            false => &n.html,
        };
        // (registry, registered name, file, first line, first column)
        let mut units: Vec<(&Handlebars<'static>, &str, PathBuf, u64, u64)> = vec![(
            &self.hb_text,
            &n.subject,
            lf.file.clone(),
            lf.subject_line,
            lf.subject_col,
        )];
        if lf.has_preheader {
            units.push((
                &self.hb_text,
                &n.preheader,
                lf.file.clone(),
                lf.preheader_line,
                lf.preheader_col,
            ));
        }
        units.push((&self.hb, html, lf.file.clone(), lf.body_line, 1));
        if lf.text == TextPart::Own {
            units.push((&self.hb_text, &n.text, lf.text_file(), 1, 1));
        }
        if let Some(layout) = &lf.layout
            && let Some(l) = self.layouts.get(layout)
        {
            units.push((&self.hb, layout, l.file.clone(), 1, 1));
        }
        let mut out = Vec::new();
        for (hb, name, file, first_line, first_col) in units {
            let Some(t) = hb.get_template(name) else {
                continue;
            };
            let is_layout = name.starts_with("_layouts/");
            for read in reads::of(t, name, &Registry(hb)) {
                if is_layout
                    && read
                        .path
                        .as_deref()
                        .is_some_and(|p| root_is(p, GIVEN_TO_LAYOUTS))
                {
                    continue;
                }
                let (file, line, col) = if read.unit == name {
                    let line = first_line + read.line as u64 - 1;
                    let col = match read.line {
                        1 => read.col as u64 + first_col - 1,
                        _ => read.col as u64,
                    };
                    (file.clone(), line, col)
                } else {
                    let file = self
                        .partial_files
                        .get(&read.unit)
                        .or_else(|| self.layouts.get(&read.unit).map(|l| &l.file))
                        .cloned()
                        .unwrap_or_else(|| file.clone());
                    (file, read.line as u64, read.col as u64)
                };
                out.push(Placed {
                    in_subject: read.unit == n.subject,
                    read,
                    file,
                    line,
                    col,
                });
            }
        }
        out
    }

    /// What of the data template `id` reads, in every locale: its subject,
    /// preheader, body, text part (its own or the one derived from the
    /// body), layout and their partials. Everything if the walk cannot
    /// place a read.
    pub(super) fn needs_of(&self, id: &str) -> Needs {
        let mut needs = Needs::nothing();
        let mut add = |read: Read| match (read.certain, read.path) {
            (true, Some(path)) => {
                needs.add(&path);
                true
            }
            _ => false,
        };
        for (locale, lf) in self.every_locale(id) {
            for placed in self.reads(id, locale) {
                if !add(placed.read) {
                    return Needs::all();
                }
            }
            // `reads` leaves out a derived text part: it says what the body
            // says, but the sender renders it on its own.
            if lf.text == TextPart::Derived
                && let Some(t) = self.hb_text.get_template(&lf.names.text)
            {
                for read in reads::of(t, &lf.names.text, &Registry(&self.hb_text)) {
                    if !add(read) {
                        return Needs::all();
                    }
                }
            }
        }
        needs
    }

    /// What of the data template `id` reads ([`Templates::needs_of`],
    /// worked out once when the templates load).
    pub fn needs(&self, id: &str) -> &Needs {
        static ALL: Needs = Needs::all();
        self.needs.get(id).unwrap_or(&ALL)
    }

    /// Every variable of template `id` (every locale, its partials and
    /// layout) that `data` does not have, all at once: a render stops at
    /// the first. A `{{path}}`, `{{#each}}`, `{{#with}}` or helper argument
    /// that is missing is an error (strict rendering, or a helper given
    /// nothing); an `{{#if}}` on a missing path is a warning (always false).
    pub fn unknown_variables(&self, id: &str, data: &Value) -> Diagnostics {
        let mut diags = Diagnostics::default();
        for locale in self.every_locale_name(id) {
            let mut data = data.clone();
            if let Some(o) = data.as_object_mut() {
                for k in GIVEN {
                    o.insert(k.to_string(), locale.clone().into());
                }
            }
            for p in self.reads(id, &locale) {
                let r = &p.read;
                let Some(path) = r.path.as_deref().filter(|_| r.certain) else {
                    continue;
                };
                if find(&data, path) != Found::Missing {
                    continue;
                }
                // Only the first name that is not there: what is read below
                // it (inside an `#each` over it) follows from it.
                let above = &path[..path.len() - 1];
                let above = above.strip_suffix(&[Seg::Each]).unwrap_or(above);
                if !above.is_empty() && find(&data, above) == Found::Missing {
                    continue;
                }
                let name = display(path);
                // The nearest name the data has there.
                let hint = match (path.last(), find(&data, above)) {
                    (Some(Seg::Key(k)), Found::Value(Value::Object(o))) => {
                        let keys: Vec<&str> = o.keys().map(String::as_str).collect();
                        closest(k, &keys).map(|c| {
                            let mut p = above.to_vec();
                            p.push(Seg::Key(c.to_string()));
                            format!(" (did you mean `{}`?)", display(&p))
                        })
                    }
                    _ => None,
                }
                .unwrap_or_default();
                let message = match r.how {
                    How::Block { has_else: true, .. } => continue,
                    How::Test if free_form(path) => continue,
                    How::Test => {
                        diags.push(Diagnostic::warning(
                            &p.file,
                            p.line,
                            p.col,
                            format!(
                                "`{}` tests `{name}`, which no data has{hint}: the test is \
                                 always false (check the name, or give it in the template's \
                                 sample.json)",
                                r.raw
                            ),
                        ));
                        continue;
                    }
                    // Shops send attributes of their own: one the sample
                    // lacks is an error only where the sample renders it.
                    _ if free_form(path)
                        && (r.how == How::Argument || reads::reached(r, &data) != Some(true)) =>
                    {
                        continue;
                    }
                    How::Argument => format!(
                        "with the sample data: unknown variable `{name}`{hint} (a helper's \
                         argument: the helper would get nothing; check the name)"
                    ),
                    _ => format!(
                        "with the sample data: unknown variable `{name}`{hint} (rendering is \
                         strict: check the name)"
                    ),
                };
                diags.push(Diagnostic::error(&p.file, p.line, p.col, message));
            }
        }
        diags.sorted()
    }

    /// What fails to render in template `id`, `locale`, with `minimal` (the
    /// least a real event carries), all at once: a `{{path}}` it lacks, an
    /// `{{#each}}` or `{{#with}}` without `{{else}}` on nothing. Only what
    /// would be rendered counts (a guard that is false keeps its inside out).
    pub fn minimal_failures(&self, id: &str, locale: &str, minimal: &Value) -> Diagnostics {
        let mut data = minimal.clone();
        if let Some(o) = data.as_object_mut() {
            for k in GIVEN {
                o.insert(k.to_string(), locale.into());
            }
        }
        let mut diags = Diagnostics::default();
        for p in self.reads(id, locale) {
            let r = &p.read;
            let Some(path) = r.path.as_deref().filter(|_| r.certain) else {
                continue;
            };
            if reads::reached(r, &data) != Some(true) {
                continue;
            }
            let found = find(&data, path);
            let fails = match r.how {
                How::Value => found == Found::Missing,
                How::Block {
                    has_else: false,
                    each: true,
                } => !matches!(
                    found,
                    Found::Value(Value::Array(_) | Value::Object(_)) | Found::Unknown
                ),
                How::Block {
                    has_else: false,
                    each: false,
                } => match found {
                    Found::Value(v) => !reads::truthy(v),
                    Found::Missing => true,
                    Found::Unknown => false,
                },
                _ => false,
            };
            if fails {
                diags.push(Diagnostic::error(
                    &p.file,
                    p.line,
                    p.col,
                    may_be_missing(&display(path)),
                ));
            }
        }
        diags.sorted()
    }

    /// The subject of template `id` in `locale` rendered from `data`, alone
    /// (the body may fail where the subject does not).
    pub fn subject_with(&self, id: &str, locale: &str, data: &Value) -> Option<String> {
        let lf = self.sets.get(id)?.locales.get(locale)?;
        let mut data = data.clone();
        if let Some(o) = data.as_object_mut() {
            o.insert("_locale".into(), locale.into());
        }
        let s = self.hb_text.render(&lf.names.subject, &data).ok()?;
        Some(super::collapse(&s))
    }

    /// The values in the subject of template `id` in `locale` that are empty
    /// in `minimal` (the least a real event carries), as warnings at their
    /// place; `subject` is the subject rendered from `minimal`.
    pub fn empty_in_subject(
        &self,
        id: &str,
        locale: &str,
        minimal: &Value,
        subject: &str,
    ) -> Diagnostics {
        let mut diags = Diagnostics::default();
        for p in self.reads(id, locale) {
            let r = &p.read;
            let Some(path) = r.path.as_deref() else {
                continue;
            };
            if !p.in_subject
                || r.how != How::Value
                || !r.certain
                || r.repeated
                || reads::reached(r, minimal) != Some(true)
            {
                continue;
            }
            let empty = match find(minimal, path) {
                Found::Value(Value::Null) => true,
                Found::Value(Value::String(s)) => s.trim().is_empty(),
                _ => false,
            };
            if empty {
                let name = display(path);
                let lacks = match root_is(path, &["customer"]) && is_fact(path) {
                    true => format!("a customer with no history yet has no `{name}`"),
                    false => format!("a real event may not have `{name}`"),
                };
                diags.push(Diagnostic::warning(
                    &p.file,
                    p.line,
                    p.col,
                    format!(
                        "the subject shows `{{{{{raw}}}}}`, and {lacks}: then the subject reads \
                         \"{subject}\"; wrap it in `{{{{#if {raw}}}}}…{{{{/if}}}}` or give a \
                         default with `{{{{else}}}}`",
                        raw = r.raw
                    ),
                ));
            }
        }
        diags.sorted()
    }

    /// How the data of `preview --data` fits template `id` in `locale`;
    /// `used` is the data the template is rendered with. Returns warnings,
    /// each with its place: keys of the file that the template never reads,
    /// and fields it reads that the file lacks (with what is used instead, or
    /// that rendering fails on them).
    pub fn data_notes(&self, id: &str, locale: &str, data: &DataFile, used: &Value) -> Diagnostics {
        let DataFile {
            file,
            text,
            json: given,
            event,
        } = *data;
        let mut diags = Diagnostics::default();
        let reads = self.reads(id, locale);
        // What of the file a template sees, in the template's terms.
        const EVENT_PARTS: &[&str] = &["customer", "order", "shipment", "review"];
        let seen: Value = match (event, given) {
            (true, Value::Object(o)) => Value::Object(
                o.iter()
                    .filter(|(k, _)| EVENT_PARTS.contains(&k.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
            _ => given.clone(),
        };
        // Keys nobody reads.
        let mut leaves = Vec::new();
        leaves_of(&seen, &mut Vec::new(), &mut leaves);
        let read_paths: Vec<&DataPath> =
            reads.iter().filter_map(|p| p.read.path.as_ref()).collect();
        // Read by the service itself, whatever the template says.
        const SERVICE: &[&[&str]] = &[
            &["customer", "locale"],
            &["customer", "timezone"],
            &["customer", "id"],
            &["customer", "email"],
            &["customer", "marketing_consent"],
            &["order", "id"],
            &["shipment", "id"],
        ];
        let mut unread = BTreeSet::new();
        for leaf in &leaves {
            let by_service = SERVICE.iter().any(|s| {
                s.len() <= leaf.len()
                    && s.iter()
                        .zip(leaf.iter())
                        .all(|(a, b)| *b == Seg::Key(a.to_string()))
            });
            if by_service || read_paths.iter().any(|r| overlaps(r, leaf)) {
                continue;
            }
            unread.insert(leaf.clone());
        }
        let what = match event {
            true => "the event",
            false => "the data",
        };
        let names: BTreeSet<String> = read_paths.iter().map(|p| display(p)).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        for leaf in unread {
            let (line, col) = locate(text, &leaf).unwrap_or((1, 1));
            let leaf = display(&leaf);
            let hint = match closest(&leaf, &names) {
                Some(n) => format!(" (did you mean `{n}`?)"),
                None => String::new(),
            };
            diags.push(Diagnostic::warning(
                file,
                line,
                col,
                format!("`{leaf}` in {what} is not read by template `{id}` ({locale}){hint}"),
            ));
        }
        // Fields read that the file lacks.
        let mut told = BTreeSet::new();
        for p in &reads {
            let r = &p.read;
            let Some(path) = r.path.as_deref().filter(|_| r.certain) else {
                continue;
            };
            // What the service fills in (sender, sequence, links) is not the
            // file's to give; an event gives only its own parts.
            let given_root = matches!(path.first(), Some(Seg::Key(k)) if seen.get(k).is_some());
            if !root_is(path, EVENT_PARTS) && !given_root {
                continue;
            }
            if event && root_is(path, &["customer"]) && is_fact(path) {
                continue;
            }
            if find(&seen, path) != Found::Missing || !told.insert(display(path)) {
                continue;
            }
            let name = display(path);
            let message = match (find(used, path), event) {
                (Found::Missing, _)
                    if matches!(r.how, How::Test | How::Block { has_else: true, .. }) =>
                {
                    continue;
                }
                (Found::Missing, _) => format!(
                    "the template reads `{name}`, which is not in {what} nor the sample: \
                     rendering fails on it"
                ),
                (Found::Value(v), false) => format!(
                    "the template reads `{name}`, which is not in {what}: the sample's value \
                     is used ({})",
                    short(v)
                ),
                (Found::Value(Value::Null), true) => format!(
                    "the template reads `{name}`, which is not in {what}: it renders empty, as \
                     for a real event without it"
                ),
                (Found::Value(v), true) => format!(
                    "the template reads `{name}`, which is not in {what}: {} is used",
                    short(v)
                ),
                (Found::Unknown, _) => continue,
            };
            diags.push(Diagnostic::warning(&p.file, p.line, p.col, message));
        }
        diags
    }
}

/// The type each field of the template data has, where a sample.json could
/// get it wrong: what it says there reaches templates as real data would.
const TYPED: &[(&str, Typed)] = &[
    ("order.placed_at", Typed::Time),
    ("customer.first_order_at", Typed::Time),
    ("customer.last_order_at", Typed::Time),
    ("customer.last_review_at", Typed::Time),
    ("customer.last_email_at", Typed::Time),
    ("order.total", Typed::Money),
    ("order.items[].unit_price", Typed::Money),
    ("customer.total_spent", Typed::Money),
    ("order.items[].quantity", Typed::Whole),
    ("order.items[].replenish_every_days", Typed::Whole),
    ("review.rating", Typed::Whole),
    ("customer.orders_count", Typed::Whole),
    ("customer.reviews_count", Typed::Whole),
    ("customer.last_rating", Typed::Whole),
    ("customer.marketing_consent", Typed::Bool),
    ("customer.tags", Typed::List),
    ("order.items", Typed::List),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Typed {
    Time,
    Money,
    Whole,
    Bool,
    List,
}

/// The fields of a template's `sample.json` whose type is not the one real
/// data has (a time that is not RFC 3339, money as a number, …), each at its
/// place in `text`.
pub fn sample_types(file: &Path, text: &str, sample: &Value) -> Diagnostics {
    let mut diags = Diagnostics::default();
    for (path, typed) in TYPED {
        let segs: DataPath = path
            .split('.')
            .flat_map(|p| match p.strip_suffix("[]") {
                Some(k) => vec![Seg::Key(k.into()), Seg::Each],
                None => vec![Seg::Key(p.into())],
            })
            .collect();
        let mut values = Vec::new();
        all_at(sample, &segs, &mut values);
        for v in values {
            let ok = match (typed, v) {
                (_, Value::Null) => true,
                (Typed::Time, Value::String(s)) => chrono::DateTime::parse_from_rfc3339(s).is_ok(),
                (Typed::Money, Value::String(s)) => s.parse::<rust_decimal::Decimal>().is_ok(),
                (Typed::Whole, Value::Number(n)) => n.is_u64(),
                (Typed::Bool, Value::Bool(_)) => true,
                (Typed::List, Value::Array(_)) => true,
                _ => false,
            };
            if ok {
                continue;
            }
            let expected = match typed {
                Typed::Time => "an RFC 3339 timestamp such as \"2026-11-20T10:00:00Z\"",
                Typed::Money => "money as a string like \"129.90\"",
                Typed::Whole => "a whole number, 0 or more",
                Typed::Bool => "true or false",
                Typed::List => "a list [...]",
            };
            let (line, col) = locate(text, &segs).unwrap_or((1, 1));
            diags.push(Diagnostic::error(
                file,
                line,
                col,
                format!(
                    "{path}: expected {expected}, got {}",
                    crate::event::describe(v)
                ),
            ));
        }
    }
    diags
}

/// Every value at `path` in `v` (through each element at `[]`).
fn all_at<'a>(v: &'a Value, path: &[Seg], out: &mut Vec<&'a Value>) {
    match path.split_first() {
        None => out.push(v),
        Some((Seg::Key(k), rest)) => {
            if let Some(x) = v.get(k) {
                all_at(x, rest, out);
            }
        }
        Some((Seg::Each, rest)) => {
            if let Value::Array(a) = v {
                for x in a {
                    all_at(x, rest, out);
                }
            }
        }
    }
}

/// An error of the minimal sample: `field` is one a real event may lack.
pub fn may_be_missing(field: &str) -> String {
    format!(
        "`{field}` may be missing in real events (the minimal sample, with only the fields \
         every event has, lacks it) and then rendering fails: guard it with \
         `{{{{#if …}}}}…{{{{/if}}}}` (or `{{{{#each …}}}}…{{{{else}}}}…{{{{/each}}}}`) or give a default"
    )
}

/// Customer facts come from the store, never from an event.
fn is_fact(path: &[Seg]) -> bool {
    use crate::engine::facts::NAMES;
    matches!(path.get(1), Some(Seg::Key(k)) if NAMES.contains(&k.as_str()))
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    match s.char_indices().nth(60) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
}

/// Whether a read of `read` touches the data at `leaf`: one is within the
/// other (a list index read by name counts as any element).
fn overlaps(read: &[Seg], leaf: &[Seg]) -> bool {
    read.iter().zip(leaf.iter()).all(|(a, b)| match (a, b) {
        (Seg::Key(x), Seg::Key(y)) => x == y,
        (Seg::Each, _) | (_, Seg::Each) => true,
    })
}

/// The leaves of `v`: scalars, empty lists and objects; a list's elements
/// as `[]`.
fn leaves_of(v: &Value, at: &mut DataPath, out: &mut Vec<DataPath>) {
    match v {
        Value::Object(o) if !o.is_empty() => {
            for (k, v) in o {
                at.push(Seg::Key(k.clone()));
                leaves_of(v, at, out);
                at.pop();
            }
        }
        Value::Array(a) if !a.is_empty() => {
            at.push(Seg::Each);
            for v in a {
                leaves_of(v, at, out);
            }
            at.pop();
        }
        _ => {
            if !out.contains(at) {
                out.push(at.clone());
            }
        }
    }
}

/// Where the field of an event error (`order.items[0].quantity: …`) is
/// written in the JSON `text`.
pub fn locate_field(text: &str, path: &str) -> Option<(u64, u64)> {
    let segs: DataPath = path
        .split('.')
        .map(|p| Seg::Key(p.split('[').next().unwrap_or(p).to_string()))
        .collect();
    locate(text, &segs)
}

/// Where the key at `path` is written in the JSON `text`: each key searched
/// for after the one before it (good enough to point at the line).
fn locate(text: &str, path: &[Seg]) -> Option<(u64, u64)> {
    let mut from = 0;
    let mut at = None;
    for seg in path {
        let Seg::Key(k) = seg else { continue };
        let quoted = serde_json::to_string(k).ok()?;
        let mut search = from;
        loop {
            let i = text[search..].find(&quoted)? + search;
            let after = text[i + quoted.len()..].trim_start();
            if after.starts_with(':') {
                at = Some(i);
                from = i + quoted.len();
                break;
            }
            search = i + quoted.len();
        }
    }
    let i = at?;
    let before = &text[..i];
    let line = before.matches('\n').count() as u64 + 1;
    let col = before[before.rfind('\n').map_or(0, |n| n + 1)..]
        .chars()
        .count() as u64
        + 1;
    Some((line, col))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_found_where_they_are_written() {
        let text = "{\n  \"customer\": {\"id\": \"c\",\n    \"first_name\": \"A\"},\n  \"order\": {\"id\": \"o\"}\n}";
        let p = |s: &[&str]| -> DataPath { s.iter().map(|k| Seg::Key(k.to_string())).collect() };
        assert_eq!(locate(text, &p(&["customer", "first_name"])), Some((3, 5)));
        assert_eq!(locate(text, &p(&["order", "id"])), Some((4, 13)));
        assert_eq!(locate(text, &p(&["order", "number"])), None);
    }

    #[test]
    fn a_read_covers_the_data_within_it() {
        let p = |s: &[&str]| -> DataPath {
            s.iter()
                .map(|k| match *k {
                    "[]" => Seg::Each,
                    k => Seg::Key(k.to_string()),
                })
                .collect()
        };
        assert!(overlaps(
            &p(&["order", "items"]),
            &p(&["order", "items", "[]", "sku"])
        ));
        assert!(overlaps(
            &p(&["order", "items", "[]", "sku"]),
            &p(&["order", "items"])
        ));
        assert!(overlaps(
            &p(&["order", "items", "0", "sku"]),
            &p(&["order", "items", "[]", "sku"])
        ));
        assert!(!overlaps(
            &p(&["order", "items", "[]", "name"]),
            &p(&["order", "items", "[]", "sku"])
        ));
    }
}
