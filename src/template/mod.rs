//! Email templates: `templates/<id>/<locale>.hbs` (HTML) or
//! `<locale>.mjml.hbs` (MJML) with YAML front matter (`subject`, optional
//! `preheader` and `layout`), optional `<locale>.txt.hbs` for the text part,
//! `_layouts/` and `_partials/`, locale fallback and strict rendering. The
//! HTML part is finished in [`html`]: MJML to HTML, CSS inlined.

pub mod check;
pub mod data;
pub mod helpers;
pub mod html;
mod includes;
mod layout;
pub mod reads;
mod syntax;
mod text;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use handlebars::Handlebars;

use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::sequence::yaml::{self, Reader};

/// One rendered email.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub locale: String,
    pub subject: String,
    pub preheader: Option<String>,
    pub html: String,
    pub text: String,
}

#[derive(Debug, Clone)]
struct LocaleFile {
    file: PathBuf,
    /// File lines on which each part starts, to report errors in file lines,
    /// and the columns on which the subject and preheader start.
    subject_line: u64,
    subject_col: u64,
    preheader_line: u64,
    preheader_col: u64,
    body_line: u64,
    has_preheader: bool,
    /// The body is registered with its partials inlined (handlebars copies
    /// the whole data for each partial it renders); `html#src` is the body as
    /// written, rendered only to report an error in the file's own lines.
    inlined: bool,
    text: TextPart,
    /// `_layouts/<name>`, registered.
    layout: Option<String>,
    /// The body (and its layout) are MJML: `<locale>.mjml.hbs`.
    mjml: bool,
    /// The registered names of the parts, made once.
    names: Names,
}

/// The registry names of one locale's parts.
#[derive(Debug, Clone)]
struct Names {
    subject: String,
    preheader: String,
    html: String,
    html_src: String,
    text: String,
}

impl LocaleFile {
    /// `<locale>.txt.hbs` next to the HTML part.
    fn text_file(&self) -> PathBuf {
        let name = self.file.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let locale = name
            .strip_suffix(".mjml.hbs")
            .or_else(|| name.strip_suffix(".hbs"))
            .unwrap_or(name);
        self.file.with_file_name(format!("{locale}.txt.hbs"))
    }
}

impl Names {
    fn new(id: &str, locale: &str) -> Self {
        Names {
            subject: name(id, locale, "subject"),
            preheader: name(id, locale, "preheader"),
            html: name(id, locale, "html"),
            html_src: name(id, locale, "html#src"),
            text: name(id, locale, "text"),
        }
    }
}

/// Where the text part of a locale comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TextPart {
    /// `<locale>.txt.hbs`.
    Own,
    /// A text template derived from the HTML template at load time.
    Derived,
    /// html2text on each rendered body: the HTML template has a form the
    /// derivation does not handle, or did not match html2text on the sample.
    PerMessage,
}

#[derive(Debug, Clone)]
struct LayoutFile {
    file: PathBuf,
    source: String,
    /// `<name>.mjml.hbs`.
    mjml: bool,
}

#[derive(Debug, Clone, Default)]
struct TemplateSet {
    /// A file of it has errors that leave nothing to check (no front
    /// matter, no subject).
    failed: bool,
    locales: BTreeMap<String, LocaleFile>,
    /// Locales with errors, left out: what of them compiled is still
    /// checked, so that one `validate` run reports all their errors.
    broken: BTreeMap<String, LocaleFile>,
    sample: Option<serde_json::Value>,
}

pub struct Templates {
    hb: Handlebars<'static>,
    /// Text parts: the same helpers and partials, no HTML escaping.
    hb_text: Handlebars<'static>,
    /// The sources of `_partials/`, inlined into bodies at load time.
    partials: BTreeMap<String, String>,
    /// Each partial's file.
    partial_files: BTreeMap<String, PathBuf>,
    sets: BTreeMap<String, TemplateSet>,
    /// Templates whose every locale has errors, by id (see `TemplateSet::broken`).
    broken: BTreeMap<String, TemplateSet>,
    /// Layouts that [`layout::simple`] allows to be laid out once.
    simple_layouts: std::collections::BTreeSet<String>,
    /// Each registered layout's file and source; MJML errors point into them.
    layouts: BTreeMap<String, LayoutFile>,
    skeletons: layout::Skeletons,
    /// What of the data each template reads (see [`data::Needs`]).
    needs: BTreeMap<String, data::Needs>,
    pub default_locale: String,
    pub dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("unknown template `{0}`")]
    Unknown(String),
    #[error("template `{template}` has no locale for {wanted} (nor the default {default})")]
    NoLocale {
        template: String,
        wanted: String,
        default: String,
    },
    #[error("{file}:{line}:{col}: {message}")]
    Render {
        file: String,
        line: usize,
        col: usize,
        message: String,
    },
}

fn name(id: &str, locale: &str, part: &str) -> String {
    format!("{id}/{locale}#{part}")
}

impl Templates {
    /// Loads every template under `dir`. Problems are returned as diagnostics;
    /// templates with errors are left out.
    pub fn load(dir: &Path, default_locale: &str) -> (Templates, Diagnostics) {
        let registry = |escape: fn(&str) -> String| {
            let mut hb = Handlebars::new();
            hb.set_strict_mode(true);
            hb.register_escape_fn(escape);
            helpers::register(&mut hb);
            hb
        };
        let mut t = Templates {
            hb: registry(layout::escape_html),
            hb_text: registry(handlebars::no_escape),
            partials: BTreeMap::new(),
            partial_files: BTreeMap::new(),
            sets: BTreeMap::new(),
            broken: BTreeMap::new(),
            simple_layouts: Default::default(),
            layouts: BTreeMap::new(),
            skeletons: Default::default(),
            needs: BTreeMap::new(),
            default_locale: default_locale.to_string(),
            dir: dir.to_path_buf(),
        };
        let mut diags = Diagnostics::default();
        let entries = match sorted_entries(dir) {
            Ok(e) => e,
            Err(e) => {
                diags.push(Diagnostic::error(
                    dir,
                    1,
                    1,
                    format!("cannot read the templates folder: {e}"),
                ));
                return (t, diags);
            }
        };
        // Where each registered template comes from, for include errors.
        let mut origins: BTreeMap<String, includes::Origin> = BTreeMap::new();
        let origin = |file: &Path, first_line: u64| includes::Origin {
            file: file.to_path_buf(),
            first_line,
        };
        // Partials and layouts first: templates refer to them.
        for special in ["_partials", "_layouts"] {
            let sub = dir.join(special);
            if !sub.is_dir() {
                continue;
            }
            for file in sorted_entries(&sub).unwrap_or_default() {
                let mjml = special == "_layouts" && mjml_stem(&file).is_some();
                let Some(stem) = hbs_stem(&file).or_else(|| mjml_stem(&file).filter(|_| mjml))
                else {
                    continue;
                };
                let Some(src) = read(&file, &mut diags) else {
                    continue;
                };
                let result = if special == "_partials" {
                    let r = t.hb.register_partial(&stem, &src);
                    if r.is_ok() {
                        // Checked by the first registration.
                        let _ = t.hb_text.register_partial(&stem, &src);
                        origins.insert(stem.clone(), origin(&file, 1));
                        t.partial_files.insert(stem.clone(), file.clone());
                        t.partials.insert(stem, src.clone());
                    }
                    r
                } else {
                    let name = format!("_layouts/{stem}");
                    if let Some(other) = t.layouts.get(&name) {
                        diags.push(Diagnostic::error(
                            &file,
                            1,
                            1,
                            format!(
                                "layout `{stem}` is defined twice: here and in {}",
                                other.file.display()
                            ),
                        ));
                        continue;
                    }
                    t.layouts.insert(
                        name.clone(),
                        LayoutFile {
                            file: file.clone(),
                            source: src.clone(),
                            mjml,
                        },
                    );
                    let r = t.hb.register_template_string(&name, &src);
                    origins.insert(name.clone(), origin(&file, 1));
                    if r.is_ok() && t.hb.get_template(&name).is_some_and(layout::simple) {
                        t.simple_layouts.insert(name);
                    }
                    r
                };
                if let Err(e) = result {
                    diags.push(template_error(&file, 0, &e, &src));
                }
            }
        }
        for sub in entries {
            let Some(id) = sub.file_name().and_then(|n| n.to_str()).map(str::to_string) else {
                continue;
            };
            if !sub.is_dir() || id.starts_with('_') || id.starts_with('.') {
                continue;
            }
            let set = t.load_set(&id, &sub, &mut diags);
            if !set.locales.is_empty() {
                t.sets.insert(id, set);
            } else if !set.broken.is_empty() || set.failed {
                t.broken.insert(id, set);
            }
        }
        for set in t.sets.values() {
            for (locale, lf) in &set.locales {
                let n = &lf.names;
                let text = lf.file.with_file_name(format!("{locale}.txt.hbs"));
                for (name, file, line) in [
                    (&n.subject, lf.file.as_path(), lf.subject_line),
                    (&n.preheader, &lf.file, lf.preheader_line),
                    (&n.html, &lf.file, lf.body_line),
                    (&n.html_src, &lf.file, lf.body_line),
                    (&n.text, &text, 1),
                ] {
                    origins.insert(name.clone(), origin(file, line));
                }
            }
        }
        // Nothing that can include itself is ever rendered (here, the sample
        // renders below would overflow the stack).
        t.refuse_include_loops(&origins, &mut diags);
        let ids: Vec<String> = t.sets.keys().cloned().collect();
        for id in ids {
            if let Some(mut set) = t.sets.remove(&id) {
                t.derive_text_parts(&id, &mut set);
                t.sets.insert(id.clone(), set);
            }
            let needs = t.needs_of(&id);
            t.needs.insert(id, needs);
        }
        (t, diags)
    }

    /// Reports include loops and computed partial names ([`includes`]) and
    /// leaves out every template that can reach one.
    fn refuse_include_loops(
        &mut self,
        origins: &BTreeMap<String, includes::Origin>,
        diags: &mut Diagnostics,
    ) {
        let mut refused = std::collections::BTreeSet::new();
        for hb in [&self.hb, &self.hb_text] {
            let templates = hb
                .get_templates()
                .iter()
                .map(|(k, v)| (k.as_str(), v))
                .collect();
            let (found, names) = includes::check(&templates, origins);
            for d in found {
                if !diags.0.contains(&d) {
                    diags.push(d);
                }
            }
            refused.extend(names);
        }
        if refused.is_empty() {
            return;
        }
        for name in &refused {
            self.hb.unregister_template(name);
            self.hb_text.unregister_template(name);
            self.partials.remove(name);
            self.simple_layouts.remove(name);
        }
        for set in self.sets.values_mut() {
            set.locales.retain(|_, lf| {
                let n = &lf.names;
                ![&n.subject, &n.preheader, &n.html, &n.html_src, &n.text]
                    .into_iter()
                    .chain(&lf.layout)
                    .any(|name| refused.contains(name))
            });
        }
        self.sets.retain(|_, set| !set.locales.is_empty());
    }

    fn load_set(&mut self, id: &str, dir: &Path, diags: &mut Diagnostics) -> TemplateSet {
        let mut set = TemplateSet::default();
        let files = sorted_entries(dir).unwrap_or_default();
        for file in &files {
            let fname = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if fname == "sample.json" {
                if let Some(text) = read(file, diags) {
                    match serde_json::from_str(&text) {
                        Ok(v) => {
                            diags.extend(check::sample_types(file, &text, &v));
                            set.sample = Some(v);
                        }
                        Err(e) => diags.push(Diagnostic::error(
                            file,
                            e.line() as u64,
                            e.column() as u64,
                            format!("invalid JSON: {e}"),
                        )),
                    }
                }
                continue;
            }
            if fname.ends_with(".txt.hbs") {
                continue;
            }
            let mjml = mjml_stem(file);
            let Some(locale) = hbs_stem(file).or_else(|| mjml.clone()) else {
                if !fname.starts_with('.') {
                    diags.push(Diagnostic::warning(
                        file,
                        1,
                        1,
                        "ignored: templates are <locale>.hbs, <locale>.mjml.hbs, \
                         <locale>.txt.hbs or sample.json",
                    ));
                }
                continue;
            };
            if let Some(other) = set.locales.get(&locale) {
                diags.push(Diagnostic::error(
                    file,
                    1,
                    1,
                    format!(
                        "two HTML parts for locale {locale}: this file and {}; keep one",
                        other.file.display()
                    ),
                ));
                continue;
            }
            let Some(src) = read(file, diags) else {
                continue;
            };
            match self.register_locale(id, &locale, file, &src, mjml.is_some(), diags) {
                Some((lf, true)) => {
                    set.locales.insert(locale, lf);
                }
                Some((lf, false)) => {
                    set.broken.insert(locale, lf);
                }
                None => set.failed = true,
            }
        }
        for file in &files {
            let fname = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let Some(locale) = fname.strip_suffix(".txt.hbs") else {
                continue;
            };
            let Some(src) = read(file, diags) else {
                continue;
            };
            let lf = match set.locales.get_mut(locale) {
                Some(lf) => Some(lf),
                None => set.broken.get_mut(locale),
            };
            match lf {
                Some(lf) => match self
                    .hb_text
                    .register_template_string(&name(id, locale, "text"), &src)
                {
                    Ok(()) => lf.text = TextPart::Own,
                    Err(e) => diags.push(template_error(file, 0, &e, &src)),
                },
                None => diags.push(Diagnostic::error(
                    file,
                    1,
                    1,
                    format!(
                        "text part without an HTML part: add {locale}.hbs or {locale}.mjml.hbs"
                    ),
                )),
            }
        }
        set
    }

    fn register_locale(
        &mut self,
        id: &str,
        locale: &str,
        file: &Path,
        src: &str,
        mjml: bool,
        diags: &mut Diagnostics,
    ) -> Option<(LocaleFile, bool)> {
        let (front, body, body_line) = match split_front_matter(src) {
            Some(parts) => parts,
            None => {
                diags.push(Diagnostic::error(
                    file,
                    1,
                    1,
                    "a template starts with front matter: a line `---`, `subject: ...`, then `---`",
                ));
                return None;
            }
        };
        let mut r = Reader::new(file);
        let mut subject = None;
        let mut preheader = None;
        let mut layout = None;
        match yaml::parse(file, front) {
            Err(mut d) => {
                d.line += 1;
                diags.push(d);
                return None;
            }
            Ok(root) => {
                if let Some(mut f) = r.map(&root, "front matter") {
                    match f.take("subject") {
                        Some(n) => subject = r.string(n, "subject").map(|s| (s, n.line + 1, n.col)),
                        None => r.error(&root, "front matter: missing `subject`"),
                    }
                    preheader = f
                        .take("preheader")
                        .and_then(|n| r.string(n, "preheader").map(|s| (s, n.line + 1, n.col)));
                    if let Some(n) = f.take("layout") {
                        layout = r.string(n, "layout").map(|s| (s, n.line + 1, n.col));
                    }
                    r.finish(f, "front matter", &["subject", "preheader", "layout"]);
                }
            }
        }
        // Reader lines are relative to the front matter, which starts on line 2.
        for mut d in r.diags.0 {
            d.line += 1;
            diags.push(d);
        }
        let (subject, sl, sc) = subject?;
        // The column of the subject's first character: after the quote of a
        // quoted scalar (escapes inside it aside).
        let text_col = |line: u64, col: u64| {
            let quoted = src
                .lines()
                .nth(line.saturating_sub(1) as usize)
                .and_then(|l| l.chars().nth(col.saturating_sub(1) as usize))
                .is_some_and(|c| c == '"' || c == '\'');
            col + u64::from(quoted)
        };
        let subject_col = text_col(sl, sc);
        let preheader_col = preheader.as_ref().map_or(1, |p| text_col(p.1, p.2));
        let mut ok = true;
        // Subject and preheader are text: rendered without HTML escaping (the
        // layout escapes them where it puts them into HTML).
        let mut reg = |part: &str, text: &str, line: u64, col: u64, diags: &mut Diagnostics| {
            let hb = match part {
                "html" => &mut self.hb,
                _ => &mut self.hb_text,
            };
            if let Err(e) = hb.register_template_string(&name(id, locale, part), text) {
                let mut d = template_error(file, line.saturating_sub(1), &e, text);
                if line > 0 && d.line == line {
                    d.col += col.saturating_sub(1);
                }
                diags.push(d);
                ok = false;
            }
        };
        reg("subject", &subject, sl, subject_col, diags);
        if let Some((p, pl, _)) = &preheader {
            reg("preheader", p, *pl, preheader_col, diags);
        }
        reg("html", body, body_line, 1, diags);
        let flat = match ok && body.contains("{{>") {
            true => text::inline_partials(body, &self.partials, 0).filter(|f| f != body),
            false => None,
        };
        let inlined = flat.is_some_and(|flat| {
            let html = name(id, locale, "html");
            match self.hb.register_template_string(&html, &flat) {
                Ok(()) => {
                    // Checked as `html` above.
                    let _ = self
                        .hb
                        .register_template_string(&name(id, locale, "html#src"), body);
                    true
                }
                Err(_) => {
                    let _ = self.hb.register_template_string(&html, body);
                    false
                }
            }
        });
        if let Some((l, ll, lc)) = &layout
            && self.hb.get_template(&format!("_layouts/{l}")).is_none()
        {
            diags.push(Diagnostic::error(
                file,
                *ll,
                *lc,
                format!("layout `{l}` not found in _layouts/"),
            ));
            ok = false;
        }
        if let Some((l, ll, lc)) = &layout
            && let Some(lay) = self.layouts.get(&format!("_layouts/{l}"))
            && lay.mjml != mjml
        {
            let (this, that) = match mjml {
                true => ("an MJML template", "an HTML layout"),
                false => ("an HTML template", "an MJML layout"),
            };
            diags.push(Diagnostic::error(
                file,
                *ll,
                *lc,
                format!(
                    "{this} cannot use {that} ({}): MJML templates (<locale>.mjml.hbs) take \
                     MJML layouts (_layouts/<name>.mjml.hbs), HTML templates HTML layouts",
                    lay.file.display()
                ),
            ));
            ok = false;
        }
        let lf = LocaleFile {
            file: file.to_path_buf(),
            subject_line: sl,
            subject_col,
            preheader_line: preheader.as_ref().map(|p| p.1).unwrap_or(1),
            preheader_col,
            body_line,
            has_preheader: preheader.is_some(),
            inlined,
            text: TextPart::PerMessage,
            layout: layout.map(|l| format!("_layouts/{}", l.0)),
            mjml,
            names: Names::new(id, locale),
        };
        Some((lf, ok))
    }

    /// Gives each locale of `set` without its own text part a text template
    /// derived from its HTML template, kept only where it says the same as
    /// html2text on the template's sample data (whitespace aside: wrapping
    /// and column widths may differ).
    fn derive_text_parts(&mut self, id: &str, set: &mut TemplateSet) {
        let policies = crate::sequence::model::Policies::default();
        let sample = data::sample_data(&policies, id, set.sample.as_ref());
        for (locale, lf) in set.locales.iter_mut() {
            // An MJML body is not HTML: its text comes from its HTML.
            if lf.text != TextPart::PerMessage || lf.mjml {
                continue;
            }
            let Some(src) = std::fs::read_to_string(&lf.file)
                .ok()
                .and_then(|s| split_front_matter(&s).map(|(_, body, _)| body.to_string()))
            else {
                continue;
            };
            let Some(derived) = text::derive(&src, &self.partials) else {
                continue;
            };
            let part = name(id, locale, "text");
            if self
                .hb_text
                .register_template_string(&part, &derived)
                .is_err()
            {
                continue;
            }
            let mut data = sample.clone();
            if let Some(obj) = data.as_object_mut() {
                obj.insert("_locale".into(), locale.clone().into());
            }
            let ctx = handlebars::Context::from(data);
            let html = self.hb.render_with_context(&name(id, locale, "html"), &ctx);
            let txt = self.hb_text.render_with_context(&part, &ctx);
            let same = match (html, txt) {
                (Ok(html), Ok(txt)) => {
                    let squeeze = |s: &str| s.split_whitespace().collect::<String>();
                    squeeze(&html_to_text(&html)) == squeeze(&text::finish(&txt))
                }
                _ => false,
            };
            if same {
                lf.text = TextPart::Derived;
            } else {
                self.hb_text.unregister_template(&part);
                tracing::debug!(
                    template = id,
                    locale,
                    "text part stays html2text per message"
                );
            }
        }
    }

    pub fn contains(&self, id: &str) -> bool {
        self.sets.contains_key(id)
    }

    pub fn ids(&self) -> impl Iterator<Item = &String> {
        self.sets.keys()
    }

    pub fn locales(&self, id: &str) -> Vec<String> {
        self.sets
            .get(id)
            .map(|s| s.locales.keys().cloned().collect())
            .unwrap_or_default()
    }

    pub fn sample(&self, id: &str) -> Option<&serde_json::Value> {
        self.sets
            .get(id)
            .or_else(|| self.broken.get(id))
            .and_then(|s| s.sample.as_ref())
    }

    pub fn file(&self, id: &str, locale: &str) -> Option<&Path> {
        self.sets
            .get(id)?
            .locales
            .get(locale)
            .map(|l| l.file.as_path())
    }

    /// The locale used for a customer who wants `wanted`: `hu-HU`, then `hu`,
    /// then the default locale.
    pub fn resolve_locale(&self, id: &str, wanted: Option<&str>) -> Result<&str, RenderError> {
        let set = self
            .sets
            .get(id)
            .ok_or_else(|| RenderError::Unknown(id.to_string()))?;
        let find = |c: &str| {
            set.locales
                .keys()
                .find(|k| k.eq_ignore_ascii_case(c))
                .map(String::as_str)
        };
        if let Some(w) = wanted {
            let w: std::borrow::Cow<str> = match w.contains('_') {
                true => w.replace('_', "-").into(),
                false => w.into(),
            };
            if let Some(k) = find(&w) {
                return Ok(k);
            }
            if let Some((lang, _)) = w.split_once('-')
                && let Some(k) = find(lang)
            {
                return Ok(k);
            }
        }
        if let Some(k) = find(&self.default_locale) {
            return Ok(k);
        }
        Err(RenderError::NoLocale {
            template: id.to_string(),
            wanted: wanted.unwrap_or("-").to_string(),
            default: self.default_locale.clone(),
        })
    }

    /// Renders template `id` for a customer who wants locale `wanted`.
    /// `data` is the template data (see [`data`]); `_locale` is filled in here.
    pub fn render(
        &self,
        id: &str,
        wanted: Option<&str>,
        data: &serde_json::Value,
    ) -> Result<Rendered, RenderError> {
        self.render_with(id, wanted, data.clone(), Parts::All)
    }

    /// Renders `parts` of template `id`, taking the data by value (no copy).
    pub fn render_with(
        &self,
        id: &str,
        wanted: Option<&str>,
        mut data: serde_json::Value,
        parts: Parts,
    ) -> Result<Rendered, RenderError> {
        let locale = self.resolve_locale(id, wanted)?.to_string();
        let lf = &self.sets[id].locales[&locale];
        if let Some(obj) = data.as_object_mut() {
            obj.insert("_locale".into(), wanted.unwrap_or(&locale).into());
            // Words (plural forms, relative dates) follow the template's language.
            obj.insert("_template_locale".into(), locale.clone().into());
        }
        // One handlebars context for every part: `render` would serialise the
        // data again for each.
        let mut ctx = handlebars::Context::from(data);
        let n = &lf.names;
        let render = |hb: &Handlebars<'static>, part: &str, ctx: &handlebars::Context| {
            hb.render_with_context(part, ctx).map_err(|e| {
                // Report the error in the lines of the body as written.
                let (first_line, first_col, e) = match part {
                    p if p == n.subject => (lf.subject_line, lf.subject_col, e),
                    p if p == n.preheader => (lf.preheader_line, lf.preheader_col, e),
                    p if p == n.html && lf.inlined => (
                        lf.body_line,
                        1,
                        self.hb
                            .render_with_context(&n.html_src, ctx)
                            .err()
                            .unwrap_or(e),
                    ),
                    p if p == n.html => (lf.body_line, 1, e),
                    _ => (1, 1, e),
                };
                let file = match part {
                    p if p == n.text && lf.text == TextPart::Own => lf.text_file(),
                    _ => lf.file.clone(),
                };
                render_error(&file.display().to_string(), first_line, first_col, e)
            })
        };
        let subject = cut(collapse(&render(&self.hb_text, &n.subject, &ctx)?));
        let preheader = if lf.has_preheader {
            Some(collapse(&render(&self.hb_text, &n.preheader, &ctx)?))
        } else {
            None
        };
        let body = render(&self.hb, &n.html, &ctx)?;
        // The text part comes from the body alone: the layout's chrome
        // (hidden preheader, header table) reads badly as plain text.
        let text = match (parts, lf.text) {
            (Parts::NoText, _) => String::new(),
            (Parts::All, TextPart::Own) => render(&self.hb_text, &n.text, &ctx)?,
            (Parts::All, TextPart::Derived) => text::finish(&render(&self.hb_text, &n.text, &ctx)?),
            (Parts::All, TextPart::PerMessage) if lf.mjml => {
                html_to_text(&html::mjml_text_html(&body))
            }
            (Parts::All, TextPart::PerMessage) => html_to_text(&body),
        };
        let html = match &lf.layout {
            // The layout only wraps what was rendered; a check can skip it.
            Some(_) if parts == Parts::NoText => body,
            Some(layout) => {
                let filled = match self.simple_layouts.contains(layout) {
                    true => self.skeletons.render(
                        &self.hb,
                        layout,
                        ctx.data(),
                        [&subject, preheader.as_deref().unwrap_or(""), &body],
                    ),
                    false => None,
                };
                match filled {
                    Some(html) => html,
                    None => self.render_layout(layout, &mut ctx, &subject, &preheader, body)?,
                }
            }
            None => body,
        };
        // What is sent: MJML made HTML, CSS inlined (a check needs neither).
        let html = match parts {
            Parts::NoText => html,
            Parts::All => {
                let html = match lf.mjml {
                    true => self.mjml_to_html(lf, lf.layout.as_deref(), &html)?,
                    false => html,
                };
                html::inline_css(html).map_err(|message| RenderError::Render {
                    file: lf.file.display().to_string(),
                    line: lf.body_line as usize,
                    col: 1,
                    message,
                })?
            }
        };
        Ok(Rendered {
            locale,
            subject,
            preheader,
            html,
            text,
        })
    }

    /// The HTML of a rendered MJML template (with its `layout` around it);
    /// an error points at the line of the template or layout that
    /// wrote the faulty MJML, when it can be found.
    fn mjml_to_html(
        &self,
        lf: &LocaleFile,
        layout: Option<&str>,
        mjml: &str,
    ) -> Result<String, RenderError> {
        if let Ok(html) = html::mjml_to_html(mjml, &[]) {
            return Ok(html);
        }
        // The error again, now placed in the sources as written (read only
        // for this: a valid document never needs them).
        let own = std::fs::read_to_string(&lf.file).unwrap_or_default();
        let body = split_front_matter(&own).map_or("", |(_, b, _)| b);
        let mut sources = vec![html::Source {
            file: &lf.file,
            text: body,
            first_line: lf.body_line,
        }];
        if let Some(l) = layout.and_then(|l| self.layouts.get(l)) {
            sources.push(html::Source {
                file: &l.file,
                text: &l.source,
                first_line: 1,
            });
        }
        match html::mjml_to_html(mjml, &sources) {
            Ok(html) => Ok(html),
            Err(e) => Err(RenderError::Render {
                file: e.file.display().to_string(),
                line: e.line as usize,
                col: e.col as usize,
                message: e.message,
            }),
        }
    }

    /// The layout rendered by handlebars around the parts (a layout that
    /// cannot be laid out once).
    fn render_layout(
        &self,
        layout: &str,
        ctx: &mut handlebars::Context,
        subject: &str,
        preheader: &Option<String>,
        body: String,
    ) -> Result<String, RenderError> {
        if let Some(obj) = ctx.data_mut().as_object_mut() {
            obj.insert("body".into(), body.into());
            obj.insert("subject".into(), subject.into());
            obj.insert(
                "preheader".into(),
                preheader.clone().unwrap_or_default().into(),
            );
        }
        let file = match self.layouts.get(layout) {
            Some(l) => l.file.display().to_string(),
            None => format!("{}/{layout}.hbs", self.dir.display()),
        };
        self.hb
            .render_with_context(layout, ctx)
            .map_err(|e| render_error(&file, 1, 1, e))
    }
}

/// Which parts of an email to render.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parts {
    /// Everything a message needs.
    All,
    /// Subject, preheader and the body, without the layout and the text part:
    /// enough to know that the email renders and what its subject is (for
    /// `simulate`, which must not pay for what it does not print).
    NoText,
}

/// The longest subject sent, in characters; a longer one is cut to this
/// length, its last character an ellipsis. Mail clients show 40-80
/// characters; the limit keeps the header far below RFC 5322's 998
/// characters per line even where it cannot be folded (no spaces).
pub const MAX_SUBJECT_CHARS: usize = 255;

fn cut(subject: String) -> String {
    match subject.char_indices().nth(MAX_SUBJECT_CHARS) {
        None => subject,
        Some(_) => {
            let (end, _) = subject
                .char_indices()
                .nth(MAX_SUBJECT_CHARS - 1)
                .unwrap_or((subject.len(), ' '));
            format!("{}\u{2026}", subject[..end].trim_end())
        }
    }
}

/// Subjects are one line, whatever the template's whitespace.
fn collapse(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for w in s.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(w);
    }
    out
}

/// Plain text for the text part: no table borders, links as numbered
/// footnotes, no trailing spaces.
pub fn html_to_text(html: &str) -> String {
    let text = html2text::config::plain()
        .no_table_borders()
        .string_from_read(html.as_bytes(), 78)
        .unwrap_or_else(|_| html.to_string());
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A render error in file coordinates; `first_line` and `first_col` are
/// where in the file the failing part starts.
fn render_error(
    file: &str,
    first_line: u64,
    first_col: u64,
    e: handlebars::RenderError,
) -> RenderError {
    use handlebars::RenderErrorReason as R;
    let message = match e.reason() {
        R::MissingVariable(Some(path)) => {
            format!("unknown variable `{path}` (rendering is strict: check the name)")
        }
        R::PartialNotFound(name) => format!(
            "no partial `{name}`: `{{{{> {name}}}}}` includes _partials/{name}.hbs, which \
             does not exist (or has errors)"
        ),
        R::ParamNotFoundForIndex("money", i) => format!(
            "`money` needs more arguments: argument {} is missing (write \
             `{{{{money amount currency}}}}`, e.g. `{{{{money order.total order.currency}}}}`)",
            i + 1
        ),
        // The built-in helpers (`gte`, `eq`, …) say so of a misspelled name.
        R::ParamNotFoundForIndex(helper, i) => format!(
            "{helper}: argument {} is missing or names nothing in the data \
             (rendering is strict: check the name)",
            i + 1
        ),
        R::HelperNotFound(name) => format!("no helper named `{name}`: check the name"),
        other => other.to_string(),
    };
    let (line, col) = (e.line_no.unwrap_or(1), e.column_no.unwrap_or(1));
    RenderError::Render {
        file: file.to_string(),
        line: line + first_line as usize - 1,
        col: match line {
            1 => col + first_col as usize - 1,
            _ => col,
        },
        message,
    }
}

/// A template that does not compile, at its place in `file`; `source` is
/// the template's text, read again to say plainly what is wrong.
fn template_error(
    file: &Path,
    line_offset: u64,
    e: &handlebars::TemplateError,
    source: &str,
) -> Diagnostic {
    let (line, col, message) = syntax::explain(e, source);
    Diagnostic::error(
        file,
        line as u64 + line_offset,
        col as u64,
        format!("template syntax: {message}"),
    )
}

/// Splits `---\n<yaml>\n---\n<body>`; returns the YAML, the body and the
/// body's first line number.
fn split_front_matter(src: &str) -> Option<(&str, &str, u64)> {
    let rest = src
        .strip_prefix("---\n")
        .or_else(|| src.strip_prefix("---\r\n"))?;
    let mut offset = 0;
    for (i, line) in rest.split_inclusive('\n').enumerate() {
        if line.trim_end() == "---" {
            let front = &rest[..offset];
            let body = &rest[offset + line.len()..];
            return Some((front, body, i as u64 + 3));
        }
        offset += line.len();
    }
    None
}

fn sorted_entries(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    v.sort();
    Ok(v)
}

/// `en` for `en.mjml.hbs`.
fn mjml_stem(file: &Path) -> Option<String> {
    let fname = file.file_name()?.to_str()?;
    let stem = fname.strip_suffix(".mjml.hbs")?;
    (!stem.contains('.') && !stem.is_empty()).then(|| stem.to_string())
}

fn hbs_stem(file: &Path) -> Option<String> {
    let fname = file.file_name()?.to_str()?;
    let stem = fname.strip_suffix(".hbs")?;
    (!stem.contains('.')).then(|| stem.to_string())
}

fn read(file: &Path, diags: &mut Diagnostics) -> Option<String> {
    match std::fs::read_to_string(file) {
        Ok(s) => Some(s),
        Err(e) => {
            diags.push(Diagnostic::error(file, 1, 1, format!("cannot read: {e}")));
            None
        }
    }
}

#[cfg(test)]
mod tests;
