//! Loading sequences, policies and templates together and checking them
//! against each other: what `validate` reports and what every other command
//! runs at start. Also `validate --events`: an events file checked against
//! the event schema and the sequences.

use std::path::Path;
use std::sync::Arc;

use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::engine::state::Context;
use crate::event::{Event, limits};
use crate::ingest::file::Lines;
use crate::ingest::listened::{Hearing, Listeners};
use crate::sequence::condition::Condition;
use crate::sequence::load::{Unreadable, load_folder, walk};
use crate::sequence::model::{Catalog, StepKind};
use crate::template::check::may_be_missing;
use crate::template::data::{minimal_data, sample_data, sample_event};
use crate::template::{Parts, RenderError, Templates};

pub struct Loaded {
    pub catalog: Arc<Catalog>,
    pub templates: Arc<Templates>,
    pub diagnostics: Diagnostics,
}

/// Loads everything and checks it; the diagnostics list every problem.
/// Every check runs whatever the others found (a sequence or template with
/// errors is still checked as far as it goes), so that one run lists
/// everything there is to fix.
pub fn load(sequences: &Path, templates: &Path) -> Loaded {
    let folder = load_folder(sequences);
    let (catalog, mut diags) = (folder.catalog, folder.diagnostics);
    let (tpl, tdiags) = Templates::load(templates, &catalog.policies.default_locale);
    diags.extend(tdiags);
    diags.extend(check_templates_exist(&catalog, &tpl, &folder.unreadable));
    diags.extend(render_samples(&catalog, &tpl));
    diags.extend(crate::send::links::check_unsubscribe_links(&catalog, &tpl));
    diags.extend(check_conditions(&catalog));
    Loaded {
        catalog: Arc::new(catalog),
        templates: Arc::new(tpl),
        diagnostics: diags.sorted(),
    }
}

fn check_templates_exist(
    catalog: &Catalog,
    tpl: &Templates,
    unreadable: &[Unreadable],
) -> Diagnostics {
    let mut diags = Diagnostics::default();
    let mut used: std::collections::HashSet<String> = unreadable
        .iter()
        .flat_map(|u| u.templates.iter().cloned())
        .collect();

    for seq in catalog.sequences.values() {
        walk(&seq.steps, &mut |step| {
            let StepKind::Email { template, .. } = &step.kind else {
                return;
            };
            used.insert(template.clone());
            if !tpl.contains(template) && tpl.has_errors_in(template) {
                // A template whose files have errors: those errors are the
                // ones to fix, reported in its own files.
            } else if !tpl.contains(template) {
                let known: Vec<&str> = tpl.ids().map(String::as_str).collect();
                diags.push(Diagnostic::error(
                    &seq.file,
                    step.line,
                    step.col,
                    format!(
                        "unknown template `{template}`: no {}/{template}/ folder with .hbs files (known: {})",
                        tpl.dir.display(),
                        known.join(", ")
                    ),
                ));
            } else if tpl.resolve_locale(template, None).is_err()
                && !tpl
                    .every_locale_name(template)
                    .contains(&tpl.default_locale)
            {
                diags.push(Diagnostic::error(
                    &seq.file,
                    step.line,
                    step.col,
                    format!(
                        "template `{template}` has no {}.hbs for the default locale",
                        tpl.default_locale
                    ),
                ));
            }
        });
    }
    for id in tpl.ids() {
        if !used.contains(id)
            && let Some(loc) = tpl.locales(id).first()
            && let Some(file) = tpl.file(id, loc)
        {
            diags.push(Diagnostic::warning(
                file,
                1,
                1,
                format!("template `{id}` is not used by any sequence"),
            ));
        }
    }
    diags
}

/// Renders every template in every locale against the sample, so that a
/// missing variable is found here and not in a customer's inbox; finds every
/// unknown variable at once (a render stops at the first); then renders
/// against the minimal sample, the least a real event carries, where an
/// error is a field a real event may lack, and an empty value in the subject
/// a warning.
fn render_samples(catalog: &Catalog, tpl: &Templates) -> Diagnostics {
    let mut diags = Diagnostics::default();
    for id in tpl.every_id() {
        let data = sample_data(&catalog.policies, id, tpl.sample(id));
        let unknown = tpl.unknown_variables(id, &data);
        let all_found = unknown.has_errors();
        diags.extend(unknown);
        let minimal = minimal_data(&catalog.policies, id);
        for locale in tpl.locales(id) {
            let file = tpl.file(id, &locale).expect("listed locale has a file");
            match tpl.render(id, Some(&locale), &data) {
                Err(RenderError::Render {
                    file,
                    line,
                    col,
                    message,
                }) => {
                    // The same variable, found above with the others.
                    if all_found && message.starts_with("unknown variable") {
                        continue;
                    }
                    diags.push(Diagnostic::error(
                        Path::new(&file),
                        line as u64,
                        col as u64,
                        format!("with the sample data: {message}"),
                    ));
                }
                Err(other) => diags.push(Diagnostic::error(file, 1, 1, other.to_string())),
                Ok(_) => {
                    let failures = tpl.minimal_failures(id, &locale, &minimal);
                    let all_found = failures.has_errors();
                    diags.extend(failures);
                    match tpl.render_with(id, Some(&locale), minimal.clone(), Parts::All) {
                        Err(RenderError::Render {
                            file,
                            line,
                            col,
                            message,
                        }) if !(all_found && message.starts_with("unknown variable")) => diags
                            .push(Diagnostic::error(
                                Path::new(&file),
                                line as u64,
                                col as u64,
                                with_minimal(&message),
                            )),
                        Err(RenderError::Render { .. }) | Ok(_) => {}
                        Err(other) => diags.push(Diagnostic::error(file, 1, 1, other.to_string())),
                    }
                    if let Some(subject) = tpl.subject_with(id, &locale, &minimal) {
                        diags.extend(tpl.empty_in_subject(id, &locale, &minimal, &subject));
                    }
                }
            }
        }
    }
    diags
}

/// A render error with the minimal sample: what a real event may lack.
fn with_minimal(message: &str) -> String {
    let field = message
        .strip_prefix("unknown variable `")
        .and_then(|m| m.split_once('`'))
        .map(|(f, _)| f);
    match field {
        Some(f) => may_be_missing(f),
        None => format!(
            "with the minimal sample (only the fields every event has), rendering fails: \
             {message}; a field here may be missing in real events: guard it with \
             `{{{{#if …}}}}…{{{{/if}}}}` or give a default"
        ),
    }
}

/// Runs each condition against the sample, to catch type errors such as
/// comparing a number with a string.
fn check_conditions(catalog: &Catalog) -> Diagnostics {
    let mut diags = Diagnostics::default();
    let event = sample_event();
    let mut ctx = Context::of_event(&event);
    ctx.facts = crate::template::data::sample_facts();
    let b = ctx.bindings(Some(&event), event.occurred_at);
    for seq in catalog.sequences.values() {
        let mut conds: Vec<(&Condition, bool)> = Vec::new();
        if let Some(w) = seq.trigger.as_ref().and_then(|t| t.when()) {
            conds.push((w, false));
        }
        for r in &seq.exit_when {
            if let Some(w) = &r.when {
                conds.push((w, false));
            }
        }
        walk(&seq.steps, &mut |step| match &step.kind {
            StepKind::If { cond, .. } => conds.push((cond, false)),
            StepKind::WaitFor { when: Some(w), .. } => conds.push((w, false)),
            StepKind::WaitUntil { until, .. } => conds.push((until, true)),
            _ => {}
        });
        for (c, is_time) in conds {
            let result = if is_time {
                c.eval_timestamp(&b).map(|_| ())
            } else {
                c.eval_bool(&b).map(|_| ())
            };
            // Every field that is not there, not only the first one met (nor
            // only when the rest does not decide first). What each shop sends
            // in `attributes` and `data` varies: not looked up alone.
            let mut failed: Vec<String> = Vec::new();
            for path in c.fields() {
                let free_form = path.starts_with("customer.attributes.")
                    || path.starts_with("event.customer.attributes.")
                    || path.starts_with("event.data.");
                if !free_form
                    && let Ok(field) = Condition::compile(path, c.line, c.col)
                    && let Err(e) = field.eval_any(&b)
                    && !failed.contains(&e)
                {
                    failed.push(e);
                }
            }
            if let Err(e) = result
                && failed.is_empty()
            {
                failed.push(e);
            }
            for e in failed {
                diags.push(Diagnostic::error(
                    &seq.file,
                    c.line,
                    c.col,
                    format!("`{}` fails on the sample event: {e}", c.source),
                ));
            }
        }
    }
    diags
}

/// The keys of each object of the event schema (`data` and
/// `customer.attributes` are free-form).
const EVENT_KEYS: &[(&str, &[&str])] = &[
    (
        "",
        &[
            "id",
            "type",
            "occurred_at",
            "customer",
            "order",
            "shipment",
            "review",
            "data",
            "history",
        ],
    ),
    (
        "customer",
        &[
            "id",
            "email",
            "first_name",
            "locale",
            "timezone",
            "marketing_consent",
            "tags",
            "attributes",
        ],
    ),
    (
        "order",
        &["id", "number", "placed_at", "currency", "total", "items"],
    ),
    (
        "order.items[]",
        &[
            "sku",
            "name",
            "category",
            "quantity",
            "unit_price",
            "replenish_every_days",
        ],
    ),
    (
        "shipment",
        &["id", "carrier", "tracking_number", "tracking_url"],
    ),
    ("review", &["rating"]),
];

/// Keys of a valid event that the schema does not have: ingest drops them
/// without a word, so a misspelt `first_nam` would never reach a template.
fn unknown_keys(text: &str) -> Vec<String> {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (at, keys) in EVENT_KEYS {
        let objects: Vec<&serde_json::Value> = match *at {
            "" => vec![&v],
            "order.items[]" => v
                .pointer("/order/items")
                .and_then(|i| i.as_array())
                .map(|a| a.iter().collect())
                .unwrap_or_default(),
            key => v.get(key).into_iter().collect(),
        };
        let mut seen = std::collections::BTreeSet::new();
        for o in objects {
            for k in o.as_object().into_iter().flat_map(|o| o.keys()) {
                if keys.contains(&k.as_str()) || !seen.insert(k.clone()) {
                    continue;
                }
                let hint = crate::diagnostic::closest(k, keys)
                    .map(|c| format!(" (did you mean `{c}`?)"))
                    .unwrap_or_default();
                let name = match *at {
                    "" => k.clone(),
                    at => format!("{at}.{k}"),
                };
                out.push(format!(
                    "`{name}` is not a field of the event schema{hint}: it is ignored (a \
                     shop's own values go in `data` or `customer.attributes`)"
                ));
            }
        }
    }
    out
}

/// What `validate --events` found in an events file.
pub struct EventsChecked {
    pub diagnostics: Diagnostics,
    /// Lines that are valid events.
    pub events: usize,
}

/// Checks a JSON-lines events file as ingest would read it: every line that
/// is not a valid event is an error at `FILE:LINE` (all of them, not the
/// first); each event type that nothing listens to is a warning at its first
/// line, with its count (and the nearest known type, for one that is not
/// documented either). Unknown types are warnings, not errors: a shop may
/// publish types of its own, and ingest accepts them.
pub fn check_events(path: &Path, catalog: &Catalog) -> std::io::Result<EventsChecked> {
    let file = std::fs::File::open(path)?;
    let mut lines = Lines::new(std::io::BufReader::new(file), limits::EVENT_BYTES);
    let mut diagnostics = Diagnostics::default();
    let mut events = 0;
    // Each type's first line and count.
    let mut types: std::collections::BTreeMap<String, (u64, usize)> = Default::default();
    while let Some(line) = lines.next_line()? {
        let number = line.number as u64;
        let parsed = match line.text(limits::EVENT_BYTES) {
            None => continue,
            Some(text) => text.and_then(|t| Event::parse(t).map_err(|e| e.message)),
        };
        match parsed {
            Ok(ev) => {
                events += 1;
                types.entry(ev.kind).or_insert((number, 0)).1 += 1;
                if let Some(Ok(text)) = line.text(limits::EVENT_BYTES) {
                    for message in unknown_keys(text) {
                        diagnostics.push(Diagnostic::line_warning(path, number, message));
                    }
                }
            }
            Err(message) => diagnostics.push(Diagnostic::line_error(path, number, message)),
        }
    }
    let listeners = Listeners::of(catalog);
    for (kind, (line, n)) in &types {
        let events = match n {
            1 => "1 event".to_string(),
            n => format!("{n} events"),
        };
        let message = match listeners.hearing(kind) {
            Hearing::Listened => continue,
            Hearing::Unused => format!(
                "event type {kind:?} is documented, but no sequence listens to it: {events}, \
                 the first on this line"
            ),
            Hearing::Unknown { suggestion } => {
                let hint = suggestion
                    .map(|s| format!(" (did you mean {s}?)"))
                    .unwrap_or_default();
                format!(
                    "event type {kind:?} is not listened to by any sequence and is not a \
                     documented type: {events}, the first on this line{hint}"
                )
            }
        };
        diagnostics.push(Diagnostic::line_warning(path, *line, message));
    }
    Ok(EventsChecked {
        diagnostics: diagnostics.sorted(),
        events,
    })
}
