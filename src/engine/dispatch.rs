//! Routes an event or a wake-up to a customer's enrollments, starts the
//! sequences it triggers, and follows `start` hand-overs. Pure: the caller
//! loads the customer ([`CustomerState`]), calls this, and saves the
//! [`Changes`]. One function per input: [`apply_event`], [`apply_wake`].

use std::collections::{BTreeSet, HashSet};

use chrono::{DateTime, Utc};

use super::customer::{Changes, CustomerState, NewEmail};
use super::profile;
use super::state::{Context, EmailJob, Enrollment, enrollment_key};
use super::{Effect, Input, advance, begin};
use crate::event::Event;
use crate::sequence::condition::Bindings;
use crate::sequence::model::Catalog;

/// `start` chains deeper than this are cut, so that two `every_event`
/// sequences starting each other cannot loop.
const MAX_START_DEPTH: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub enrollment_key: String,
    pub sequence: String,
    pub message: String,
}

/// What the steps of one input did, before the emails get their contexts.
#[derive(Debug, Default)]
struct Applied {
    emails: Vec<EmailJob>,
    changed: BTreeSet<usize>,
    notes: Vec<Note>,
}

impl Applied {
    /// Pairs each email with the context of the enrollment that sent it.
    fn into_changes(self, state: &CustomerState) -> Changes {
        let emails = self
            .emails
            .into_iter()
            .filter_map(|job| {
                let e = state
                    .enrollments
                    .iter()
                    .find(|e| e.key == job.enrollment_key)?;
                Some(NewEmail {
                    context: e.context.clone(),
                    job,
                })
            })
            .collect();
        Changes {
            enrollments: self.changed,
            emails,
            notes: self.notes,
            ..Changes::default()
        }
    }
}

/// Applies `event` to the customer: updates the profile, moves the active
/// enrollments on, starts the sequences it triggers, and pairs each email
/// with the context of the enrollment that sent it.
pub fn apply_event(
    catalog: &Catalog,
    state: &mut CustomerState,
    event: &Event,
    now: DateTime<Utc>,
) -> Changes {
    let before = state.profile.take();
    let profile = profile::update(before.clone(), event);
    let suppress = profile.suppressed.then(|| {
        (
            profile.customer.email.to_string(),
            format!("{} ({})", event.kind, event.id),
        )
    });
    // An event that repeats what is known writes nothing.
    let changed = before.as_ref() != Some(&profile);
    state.profile = Some(profile);
    let mut out = Applied::default();
    let enrollments = &mut state.enrollments;
    let finished = &state.finished;
    for i in 0..enrollments.len() {
        if !enrollments[i].is_active() {
            continue;
        }
        let Some(seq) = catalog.get(&enrollments[i].sequence) else {
            continue;
        };
        let effects = advance(catalog, seq, &mut enrollments[i], Input::Event(event), now);
        handle(catalog, enrollments, finished, i, effects, now, 0, &mut out);
    }
    for id in catalog.triggers.get(&event.kind).into_iter().flatten() {
        let seq = &catalog.sequences[id];
        let trigger = seq.trigger.as_ref().expect("indexed by trigger");
        if let Some(cond) = &trigger.when {
            let b = Bindings {
                customer: &event.customer,
                order: event.order.as_ref(),
                shipment: event.shipment.as_ref(),
                review: event.review.as_ref(),
                event: Some(event),
                now,
            };
            match cond.eval_bool(&b) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(err) => {
                    out.notes.push(Note {
                        enrollment_key: String::new(),
                        sequence: seq.id.clone(),
                        message: format!(
                            "trigger condition `{}` failed on event {}, not enrolled: {err}",
                            cond.source, event.id
                        ),
                    });
                    continue;
                }
            }
        }
        let context = Context::of_event(event);
        enroll(
            catalog,
            enrollments,
            finished,
            &seq.id,
            context,
            &event.id,
            now,
            0,
            &mut out,
        );
    }
    let mut changes = out.into_changes(state);
    if changed {
        changes.profile = state.profile.clone();
    }
    changes.suppress = suppress;
    changes
}

/// Wakes enrollment `idx` of the customer (its `wake_at` has passed, or the
/// caller thinks so).
pub fn apply_wake(
    catalog: &Catalog,
    state: &mut CustomerState,
    idx: usize,
    now: DateTime<Utc>,
) -> Changes {
    let mut out = Applied::default();
    let enrollments = &mut state.enrollments;
    if let Some(seq) = catalog.get(&enrollments[idx].sequence) {
        let effects = advance(catalog, seq, &mut enrollments[idx], Input::Wake, now);
        handle(
            catalog,
            enrollments,
            &state.finished,
            idx,
            effects,
            now,
            0,
            &mut out,
        );
    } else if enrollments[idx].is_active() {
        // The sequence file was removed: end the enrollment visibly.
        let e = &mut enrollments[idx];
        e.status = super::state::Status::Exited;
        e.waiting = super::state::Waiting::Nothing;
        e.ended_reason = Some(format!("sequence `{}` no longer exists", e.sequence));
        e.updated_at = now;
        out.changed.insert(idx);
        out.notes.push(Note {
            enrollment_key: e.key.clone(),
            sequence: e.sequence.clone(),
            message: e.ended_reason.clone().unwrap_or_default(),
        });
    }
    out.into_changes(state)
}

#[allow(clippy::too_many_arguments)]
fn enroll(
    catalog: &Catalog,
    enrollments: &mut Vec<Enrollment>,
    finished: &HashSet<String>,
    sequence: &str,
    context: Context,
    origin: &str,
    now: DateTime<Utc>,
    depth: usize,
    out: &mut Applied,
) {
    let Some(seq) = catalog.get(sequence) else {
        return;
    };
    let order_id = context.order.as_ref().map(|o| o.id.as_str());
    let key = enrollment_key(&seq.id, seq.enroll, &context.customer.id, order_id, origin);
    if finished.contains(&key) || enrollments.iter().any(|e| e.key == key) {
        return;
    }
    if depth > MAX_START_DEPTH {
        out.notes.push(Note {
            enrollment_key: key,
            sequence: seq.id.clone(),
            message: format!("not started: `start` chain deeper than {MAX_START_DEPTH}"),
        });
        return;
    }
    let (e, effects) = begin(catalog, seq, key, context, now);
    enrollments.push(e);
    let idx = enrollments.len() - 1;
    out.changed.insert(idx);
    handle(
        catalog,
        enrollments,
        finished,
        idx,
        effects,
        now,
        depth,
        out,
    );
}

#[allow(clippy::too_many_arguments)]
fn handle(
    catalog: &Catalog,
    enrollments: &mut Vec<Enrollment>,
    finished: &HashSet<String>,
    idx: usize,
    effects: Vec<Effect>,
    now: DateTime<Utc>,
    depth: usize,
    out: &mut Applied,
) {
    if effects.is_empty() {
        return;
    }
    out.changed.insert(idx);
    let key = enrollments[idx].key.clone();
    let sequence = enrollments[idx].sequence.clone();
    let note = |message: String| Note {
        enrollment_key: key.clone(),
        sequence: sequence.clone(),
        message,
    };
    for effect in effects {
        match effect {
            Effect::Email(job) => out.emails.push(job),
            Effect::Start {
                sequence: target,
                context,
                origin,
            } => enroll(
                catalog,
                enrollments,
                finished,
                &target,
                *context,
                &origin,
                now,
                depth + 1,
                out,
            ),
            Effect::Exited { reason } => out.notes.push(note(format!("exited: {reason}"))),
            Effect::Warn(w) => out.notes.push(note(w)),
            Effect::Completed | Effect::Sleep { .. } | Effect::AwaitEvent { .. } => {}
        }
    }
}
