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
use crate::sequence::load::{load_dir, walk};
use crate::sequence::model::{Catalog, StepKind};
use crate::template::Templates;
use crate::template::data::{sample_data, sample_event};

pub struct Loaded {
    pub catalog: Arc<Catalog>,
    pub templates: Arc<Templates>,
    pub diagnostics: Diagnostics,
}

/// Loads everything and checks it; the diagnostics list every problem.
pub fn load(sequences: &Path, templates: &Path) -> Loaded {
    let (catalog, mut diags) = load_dir(sequences);
    let (tpl, tdiags) = Templates::load(templates, &catalog.policies.default_locale);
    diags.extend(tdiags);
    diags.extend(check_templates_exist(&catalog, &tpl));
    diags.extend(render_samples(&catalog, &tpl));
    diags.extend(crate::send::links::check_unsubscribe_links(&catalog, &tpl));
    diags.extend(check_conditions(&catalog));
    Loaded {
        catalog: Arc::new(catalog),
        templates: Arc::new(tpl),
        diagnostics: diags.sorted(),
    }
}

fn check_templates_exist(catalog: &Catalog, tpl: &Templates) -> Diagnostics {
    let mut diags = Diagnostics::default();
    let mut used = std::collections::HashSet::new();
    for seq in catalog.sequences.values() {
        walk(&seq.steps, &mut |step| {
            let StepKind::Email { template, .. } = &step.kind else {
                return;
            };
            used.insert(template.clone());
            if !tpl.contains(template) {
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
            } else if tpl.resolve_locale(template, None).is_err() {
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
/// missing variable is found here and not in a customer's inbox.
fn render_samples(catalog: &Catalog, tpl: &Templates) -> Diagnostics {
    let mut diags = Diagnostics::default();
    for id in tpl.ids() {
        let data = sample_data(&catalog.policies, id, tpl.sample(id));
        for locale in tpl.locales(id) {
            if let Err(e) = tpl.render(id, Some(&locale), &data) {
                let file = tpl.file(id, &locale).expect("listed locale has a file");
                diags.push(match e {
                    crate::template::RenderError::Render {
                        file,
                        line,
                        col,
                        message,
                    } => Diagnostic::error(
                        Path::new(&file),
                        line as u64,
                        col as u64,
                        format!("with the sample data: {message}"),
                    ),
                    other => Diagnostic::error(file, 1, 1, other.to_string()),
                });
            }
        }
    }
    diags
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
            if let Err(e) = result {
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
