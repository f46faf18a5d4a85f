//! Routes an event or a wake-up to a customer's enrollments, starts the
//! sequences it triggers, and follows `start` hand-overs. Pure: the caller
//! loads the customer ([`CustomerState`]), calls this, and saves the
//! [`Changes`]. One function per input: [`apply_event`], [`apply_wake`].

use std::collections::{BTreeSet, HashSet};

use chrono::{DateTime, Utc};

use super::customer::{Changes, CustomerState, NewEmail};
use super::profile::{self, Counted, Profile};
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
    state.profile = Some(profile);
    let mut out = Applied::default();
    let enrollments = &mut state.enrollments;
    let finished = &state.finished;
    let tally = &mut state.profile;
    for i in 0..enrollments.len() {
        if !enrollments[i].is_active() {
            continue;
        }
        let Some(seq) = catalog.get(&enrollments[i].sequence) else {
            continue;
        };
        let effects = advance(catalog, seq, &mut enrollments[i], Input::Event(event), now);
        let mut c = Customer {
            enrollments,
            finished,
            profile: tally,
        };
        handle(catalog, &mut c, i, effects, now, 0, &mut out);
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
        let mut c = Customer {
            enrollments,
            finished,
            profile: tally,
        };
        enroll(
            catalog, &mut c, &seq.id, context, &event.id, now, 0, &mut out,
        );
    }
    // An event that repeats what is known (and starts and sends nothing)
    // writes nothing.
    let changed = before.as_ref() != state.profile.as_ref();
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
    let tally = state.profile.as_ref().and_then(|p| p.tally);
    // What the wake-up sends was due when the wait ended, however late the
    // scheduler gets to it (`stale_after` measures from there).
    let due = state.enrollments[idx].wake_at().map_or(now, |w| w.min(now));
    let enrollments = &mut state.enrollments;
    if let Some(seq) = catalog.get(&enrollments[idx].sequence) {
        let effects = advance(catalog, seq, &mut enrollments[idx], Input::Wake, now);
        let mut c = Customer {
            enrollments,
            finished: &state.finished,
            profile: &mut state.profile,
        };
        handle(catalog, &mut c, idx, effects, now, 0, &mut out);
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
    for job in &mut out.emails {
        job.due_at = due;
    }
    let counted = state.profile.as_ref().and_then(|p| p.tally) != tally;
    let mut changes = out.into_changes(state);
    if counted {
        changes.profile = state.profile.clone();
    }
    changes
}

/// The parts of a [`CustomerState`] that starting and handling effects
/// change, borrowed apart.
struct Customer<'a> {
    enrollments: &'a mut Vec<Enrollment>,
    finished: &'a HashSet<String>,
    /// Carries the ceiling's tally; `None` only for a customer never seen,
    /// whose count could not be kept.
    profile: &'a mut Option<Profile>,
}

impl Customer<'_> {
    /// Counts one `what` against the per-customer ceiling; `false` past it.
    fn count(&mut self, catalog: &Catalog, what: Counted, now: DateTime<Utc>) -> bool {
        match self.profile {
            Some(p) => p.count(&catalog.policies.ceiling, what, now),
            None => true,
        }
    }
}

/// Why the ceiling refused, for the log.
fn past_ceiling(catalog: &Catalog, what: Counted) -> String {
    let c = &catalog.policies.ceiling;
    let (n, what) = match what {
        Counted::Enrollment => (c.enrollments, "enrollments started"),
        Counted::Email => (c.emails, "emails enqueued"),
    };
    format!(
        "the customer reached the ceiling of {n} {what} per {} (policies `ceiling`); \
         a runaway sequence is the likely cause",
        crate::sequence::duration::format(c.per)
    )
}

#[allow(clippy::too_many_arguments)]
fn enroll(
    catalog: &Catalog,
    c: &mut Customer,
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
    if c.finished.contains(&key) || c.enrollments.iter().any(|e| e.key == key) {
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
    if !c.count(catalog, Counted::Enrollment, now) {
        let message = format!(
            "not started: {}",
            past_ceiling(catalog, Counted::Enrollment)
        );
        out.notes.push(Note {
            enrollment_key: key,
            sequence: seq.id.clone(),
            message,
        });
        return;
    }
    let (e, effects) = begin(catalog, seq, key, context, now);
    c.enrollments.push(e);
    let idx = c.enrollments.len() - 1;
    out.changed.insert(idx);
    handle(catalog, c, idx, effects, now, depth, out);
}

fn handle(
    catalog: &Catalog,
    c: &mut Customer,
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
    let key = c.enrollments[idx].key.clone();
    let sequence = c.enrollments[idx].sequence.clone();
    let note = |message: String| Note {
        enrollment_key: key.clone(),
        sequence: sequence.clone(),
        message,
    };
    for effect in effects {
        match effect {
            Effect::Email(job) if c.count(catalog, Counted::Email, now) => out.emails.push(job),
            Effect::Email(job) => {
                let message = format!(
                    "email `{}` not enqueued: {}",
                    job.template,
                    past_ceiling(catalog, Counted::Email)
                );
                out.notes.push(note(message));
            }
            Effect::Start {
                sequence: target,
                context,
                origin,
            } => enroll(catalog, c, &target, *context, &origin, now, depth + 1, out),
            Effect::Exited { reason } => out.notes.push(note(format!("exited: {reason}"))),
            Effect::Warn(w) => out.notes.push(note(w)),
            Effect::Completed | Effect::Sleep { .. } | Effect::AwaitEvent { .. } => {}
        }
    }
}
