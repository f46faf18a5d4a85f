//! Routes an event or a wake-up to a customer's enrollments, starts the
//! sequences it triggers, and follows `start` hand-overs. Pure: the caller
//! loads the customer ([`CustomerState`]), calls this, and saves the
//! [`Changes`]. One function per input: [`apply_event`], [`apply_wake`].

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::calendar;
use super::customer::{Changes, CustomerState, NewEmail, Recorded, Timer, TimerWrite};
use super::facts::Facts;
use super::journal::{Checked, Entry, NotEnrolled, What};
use super::profile;
use super::state::{Context, EmailJob, Enrollment, Mark, Waiting, correlates, enrollment_key};
use super::{Effect, Input, advance, begin, holds};
use crate::event::{Customer, Event};
use crate::sequence::condition::Bindings;
use crate::sequence::model::{Catalog, Trigger};

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
    journal: Vec<Entry>,
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
                    skip: None,
                })
            })
            .collect();
        Changes {
            enrollments: self.changed,
            emails,
            notes: self.notes,
            journal: self.journal,
            ..Changes::default()
        }
    }
}

/// Applies `event` to the customer: updates the profile, moves the active
/// enrollments on, starts the sequences it triggers, and pairs each email
/// with the context of the enrollment that sent it.
///
/// A live event first catches up the customer's history (see
/// [`Event::history`]); a history event is replayed on its own time.
pub fn apply_event(
    catalog: &Catalog,
    state: &mut CustomerState,
    event: &Event,
    now: DateTime<Utc>,
) -> Changes {
    if event.history {
        return replay_event(catalog, state, event, now);
    }
    let mut changes = catch_up(catalog, state, now);
    changes.merge(live_event(catalog, state, event, now));
    changes
}

/// Wakes enrollment `idx` of the customer (its `wake_at` has passed, or the
/// caller thinks so). History of the customer is caught up first.
pub fn apply_wake(
    catalog: &Catalog,
    state: &mut CustomerState,
    idx: usize,
    now: DateTime<Utc>,
) -> Changes {
    let mut changes = catch_up(catalog, state, now);
    changes.merge(wake_one(catalog, state, idx, now));
    changes
}

/// Replays a history event as if it were happening at `occurred_at`: the
/// customer's history enrollments first wake up to then on their own time,
/// then the event applies at that time. Every email this makes is recorded
/// as skipped (`backfill`), and the enrollments it moves are history until
/// caught up ([`Enrollment::history`]).
fn replay_event(
    catalog: &Catalog,
    state: &mut CustomerState,
    event: &Event,
    now: DateTime<Utc>,
) -> Changes {
    let at = event.occurred_at.min(now);
    let timers = state.timers.clone();
    let zone_was = zone_of(catalog, state);
    let mut changes = replay_wakes(catalog, state, |_| Some(at), now);
    let first_new = state.enrollments.len();
    let mut applied = live_event(catalog, state, event, at);
    as_history(&mut applied, now);
    changes.merge(applied);
    // Timers count from now: history never fires a date already past.
    state.timers = timers;
    changes.timers = plan_timers(catalog, state, zone_was, now);
    // The customer's history goes on: every enrollment still open stays
    // history, caught up once this import has settled; one the replay ended
    // is history no more.
    for (i, e) in state.enrollments.iter_mut().enumerate() {
        if !e.is_active() {
            if e.history.take().is_some() {
                changes.enrollments.insert(i);
            }
        } else if e.history.is_some() || changes.enrollments.contains(&i) || i >= first_new {
            e.history = Some(now);
            changes.enrollments.insert(i);
        }
    }
    changes
}

/// Catches the customer's history up to now: each history enrollment wakes
/// on its own time through every step that ended by its import (emails
/// recorded as skipped), then is live again; a step that ends after the
/// import runs as usual.
pub fn catch_up(catalog: &Catalog, state: &mut CustomerState, now: DateTime<Utc>) -> Changes {
    if !state
        .enrollments
        .iter()
        .any(|e| e.is_active() && e.history.is_some())
    {
        return Changes::default();
    }
    let mut changes = replay_wakes(catalog, state, |e| e.history, now);
    for (i, e) in state.enrollments.iter_mut().enumerate() {
        if e.history.take().is_some() {
            changes.enrollments.insert(i);
        }
    }
    changes
}

/// Wakes the customer's history enrollments in the order their steps end,
/// each at the time its step ends, while that is no later than `bound` of
/// it. Enrollments they start are history too.
fn replay_wakes(
    catalog: &Catalog,
    state: &mut CustomerState,
    bound: impl Fn(&Enrollment) -> Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Changes {
    let mut changes = Changes::default();
    // Each wake-up moves its enrollment past a step; the bound only guards
    // against a sequence that would not move.
    for _ in 0..MAX_REPLAYED_WAKES {
        let next = state
            .enrollments
            .iter()
            .enumerate()
            .filter(|(_, e)| e.history.is_some())
            .filter_map(|(i, e)| {
                let until = e.until()?;
                (until <= bound(e)?.min(now)).then_some((until, i))
            })
            .min();
        let Some((at, i)) = next else {
            return changes;
        };
        let imported = state.enrollments[i].history;
        let first_new = state.enrollments.len();
        let mut woke = wake_one(catalog, state, i, at);
        as_history(&mut woke, imported.unwrap_or(now));
        for e in &mut state.enrollments[first_new..] {
            if e.is_active() {
                e.history = imported;
            }
        }
        changes.merge(woke);
    }
    changes.notes.push(Note {
        enrollment_key: String::new(),
        sequence: String::new(),
        message: format!(
            "history replay stopped after {MAX_REPLAYED_WAKES} wake-ups of one customer"
        ),
    });
    changes
}

/// The most wake-ups one history replay of a customer runs.
const MAX_REPLAYED_WAKES: usize = 10_000;

/// Marks every email of `changes` as history: recorded, not sent.
fn as_history(changes: &mut Changes, imported: DateTime<Utc>) {
    for m in &mut changes.emails {
        m.skip = Some(format!(
            "backfill: due before the history import at {}",
            imported.to_rfc3339()
        ));
    }
}

/// Applies a live `event` at `now`: updates the profile, moves the active
/// enrollments on, starts the sequences it triggers, and pairs each email
/// with the context of the enrollment that sent it.
///
/// Every decision reads the customer as the store knows them (the profile
/// merged from all events so far), never the partial copy in `event`.
/// Events the customer had before ([`CustomerState::recent`]) count for a
/// `wait_for` or `exit_when` an enrollment reaches now, if they came after
/// the event the enrollment last took in.
fn live_event(
    catalog: &Catalog,
    state: &mut CustomerState,
    event: &Event,
    now: DateTime<Utc>,
) -> Changes {
    let zone_was = zone_of(catalog, state);
    let before = state.profile.take();
    let profile = profile::update(before.as_deref(), event);
    let suppress = profile::suppression_of(&profile, event);
    state.profile = Some(Arc::new(profile));
    let mut out = Applied::default();
    // The stored customer, beside the parts the decisions change.
    let (mut c, stored) = Parts::beside_profile(state);
    let stored = stored.expect("set above");
    let (customer, facts) = (&stored.customer, &stored.ledger.facts);
    for i in 0..c.enrollments.len() {
        if !c.enrollments[i].is_active() {
            continue;
        }
        let Some(seq) = catalog.get(&c.enrollments[i].sequence) else {
            continue;
        };
        let was = super::zone(catalog, &c.enrollments[i]);
        know(&mut c.enrollments[i], customer, facts);
        // Where the event gave the customer a new time zone, the wait it
        // leaves the enrollment in (the same as before: one it starts now is
        // placed in the new zone already) follows the zone.
        let waited = {
            let e = &c.enrollments[i];
            (super::zone(catalog, e) != was).then(|| (e.step.clone(), e.waiting.clone()))
        };
        let mut effects = advance(
            catalog,
            seq,
            &mut c.enrollments[i],
            Input::Event(event),
            now,
        );
        if let Some((step, waiting)) = waited {
            let e = &mut c.enrollments[i];
            if e.step == step && e.waiting == waiting {
                effects.extend(super::follow_zone(catalog, seq, e, was, now));
            }
        }
        handle(catalog, &mut c, i, effects, now, 0, &mut out);
    }
    for id in catalog.triggers.get(&event.kind).into_iter().flatten() {
        let seq = &catalog.sequences[id];
        let trigger = seq.trigger.as_ref().expect("indexed by trigger");
        if let Some(cond) = trigger.when() {
            let b = Bindings {
                customer,
                facts: Some(facts),
                order: event.order.as_ref(),
                shipment: event.shipment.as_ref(),
                review: event.review.as_ref(),
                event: Some(event),
                now,
            };
            let tz = calendar::zone_of(customer, catalog.policies.default_timezone);
            let result = cond.eval_bool_in(&b, tz);
            if result != Ok(true) {
                let why = match &result {
                    Ok(_) => NotEnrolled::TriggerFalse,
                    Err(_) => NotEnrolled::TriggerFailed,
                };
                let key = enrollment_key(
                    &seq.id,
                    seq.enroll,
                    &customer.id,
                    event.order_id(),
                    &event.id,
                );
                out.journal.push(Entry {
                    customer_id: customer.id.clone(),
                    at: now,
                    enrollment_key: Some(key),
                    sequence: Some(seq.id.clone()),
                    step: None,
                    what: What::NotEnrolled {
                        why,
                        event_id: Some(event.id.clone()),
                        condition: Some(Checked::of(&cond.source, &result)),
                        message: match &result {
                            Ok(v) => format!("trigger condition `{}` was {v}", cond.source),
                            Err(e) => {
                                format!("trigger condition `{}` failed: {e}", cond.source)
                            }
                        },
                    },
                });
            }
            match result {
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
        let context = Context::new(event, customer, facts);
        let origin = Origin {
            id: &event.id,
            mark: Mark::of(event),
            by_event: true,
        };
        enroll(catalog, &mut c, &seq.id, context, origin, now, 0, &mut out);
    }
    remember(catalog, state, event);
    // An event that repeats what is known (and starts and sends nothing)
    // writes nothing.
    let changed = before.as_ref() != state.profile.as_ref();
    let timers = plan_timers(catalog, state, zone_was, now);
    let mut changes = out.into_changes(state);
    changes.timers = timers;
    if changed {
        changes.profile = state.profile.clone();
    }
    changes.suppress = suppress;
    changes
}

/// Keeps `event` among the customer's recent events if a sequence may look
/// back for its type.
fn remember(catalog: &Catalog, state: &mut CustomerState, event: &Event) {
    if !catalog.looked_back.contains(&event.kind) {
        return;
    }
    let at = state
        .recent
        .partition_point(|e| (e.occurred_at, &e.id) <= (event.occurred_at, &event.id));
    state
        .recent
        .insert(at, Recorded::of(Arc::new(event.clone())));
}

/// Makes the enrollment's customer and facts the stored ones.
fn know(e: &mut Enrollment, customer: &Customer, facts: &Facts) {
    let customer = (e.context.customer != *customer).then_some(customer);
    let facts = (e.context.facts != *facts).then_some(facts);
    if customer.is_none() && facts.is_none() {
        return;
    }
    match Arc::get_mut(&mut e.context) {
        Some(c) => {
            if let Some(customer) = customer {
                c.customer = customer.clone();
            }
            if let Some(facts) = facts {
                c.facts = facts.clone();
            }
        }
        // Shared (with the store that loaded it): a new context, without
        // copying the customer and facts it replaces.
        None => {
            let old = &e.context;
            e.context = Arc::new(Context {
                customer: customer.unwrap_or(&old.customer).clone(),
                order: old.order.clone(),
                shipment: old.shipment.clone(),
                review: old.review.clone(),
                facts: facts.unwrap_or(&old.facts).clone(),
            });
        }
    }
}

/// Wakes enrollment `idx` at `now` if its step has ended by then.
fn wake_one(
    catalog: &Catalog,
    state: &mut CustomerState,
    idx: usize,
    now: DateTime<Utc>,
) -> Changes {
    let mut out = Applied::default();
    // What the wake-up sends was due when the wait ended, however late the
    // scheduler gets to it (`stale_after` measures from there).
    let due = state.enrollments[idx].until().map_or(now, |w| w.min(now));
    let (mut c, stored) = Parts::beside_profile(state);
    if let Some(seq) = catalog.get(&c.enrollments[idx].sequence) {
        if let Some(p) = stored {
            know(&mut c.enrollments[idx], &p.customer, &p.ledger.facts);
        }
        let effects = advance(catalog, seq, &mut c.enrollments[idx], Input::Wake, now);
        handle(catalog, &mut c, idx, effects, now, 0, &mut out);
    } else if c.enrollments[idx].is_active() {
        // The sequence file was removed: end the enrollment visibly.
        let e = &mut c.enrollments[idx];
        e.status = super::state::Status::Exited;
        e.waiting = super::state::Waiting::Nothing;
        e.ended_reason = Some(format!("sequence `{}` no longer exists", e.sequence));
        e.updated_at = now;
        out.changed.insert(idx);
        out.journal.push(Entry {
            customer_id: e.customer_id.clone(),
            at: now,
            enrollment_key: Some(e.key.clone()),
            sequence: Some(e.sequence.clone()),
            step: e.step.clone(),
            what: What::Exited {
                reason: e.ended_reason.clone().unwrap_or_default(),
                event_id: None,
            },
        });
        out.notes.push(Note {
            enrollment_key: e.key.clone(),
            sequence: e.sequence.clone(),
            message: e.ended_reason.clone().unwrap_or_default(),
        });
    }
    for job in &mut out.emails {
        job.due_at = due;
    }
    out.into_changes(state)
}

/// The parts of a [`CustomerState`] that starting and handling effects
/// use, borrowed apart.
struct Parts<'a> {
    enrollments: &'a mut Vec<Enrollment>,
    finished: &'a HashSet<String>,
    /// When the customer's finished enrollments started.
    finished_starts: &'a [DateTime<Utc>],
    recent: &'a [Recorded],
}

/// What started an enrollment: an event (its id and mark), or another
/// enrollment (its key, and the last event it took in).
struct Origin<'a> {
    id: &'a str,
    mark: Mark,
    /// `id` is an event's (else an enrollment's key).
    by_event: bool,
}

impl<'a> Parts<'a> {
    fn of(state: &'a mut CustomerState) -> Self {
        Self::beside_profile(state).0
    }

    /// The parts, and the stored profile beside them (read, not copied).
    fn beside_profile(state: &'a mut CustomerState) -> (Self, Option<&'a profile::Profile>) {
        let parts = Parts {
            enrollments: &mut state.enrollments,
            finished: &state.finished,
            finished_starts: &state.finished_starts,
            recent: &state.recent,
        };
        (parts, state.profile.as_deref())
    }

    /// Whether the per-customer ceiling lets one more enrollment start at
    /// `now`: fewer than `ceiling.enrollments` started in the `ceiling.per`
    /// before it. Counted from what is loaded anyway (the enrollments and
    /// when the finished ones started), so it costs no write.
    fn may_start(&self, catalog: &Catalog, now: DateTime<Utc>) -> bool {
        let c = &catalog.policies.ceiling;
        let Some(since) = now.checked_sub_signed(c.per) else {
            return true;
        };
        let started = self
            .enrollments
            .iter()
            .map(|e| e.started_at)
            .chain(self.finished_starts.iter().copied())
            // Starts later than `now` (live ones, during a history replay)
            // are not in its window.
            .filter(|t| *t > since && *t <= now)
            .count();
        started < c.enrollments as usize
    }
}

#[allow(clippy::too_many_arguments)]
fn enroll(
    catalog: &Catalog,
    c: &mut Parts,
    sequence: &str,
    context: Context,
    origin: Origin,
    now: DateTime<Utc>,
    depth: usize,
    out: &mut Applied,
) {
    let Some(seq) = catalog.get(sequence) else {
        return;
    };
    let order_id = context.order.as_ref().map(|o| o.id.as_str());
    let key = enrollment_key(
        &seq.id,
        seq.enroll,
        &context.customer.id,
        order_id,
        origin.id,
    );
    // The decision not to start, in the journal.
    let not_enrolled = |why: NotEnrolled, message: String| Entry {
        customer_id: context.customer.id.clone(),
        at: now,
        enrollment_key: Some(key.clone()),
        sequence: Some(seq.id.clone()),
        step: None,
        what: What::NotEnrolled {
            why,
            event_id: origin.by_event.then(|| origin.id.to_string()),
            condition: None,
            message,
        },
    };
    if c.finished.contains(&key) || c.enrollments.iter().any(|e| e.key == key) {
        // A schedule offers the sequence again at each firing: that it runs
        // (or ran) already is no news worth a journal entry a day.
        if origin.id.starts_with("schedule:") {
            return;
        }
        let done = if c.finished.contains(&key) {
            "has run already"
        } else {
            "is running"
        };
        out.journal.push(not_enrolled(
            NotEnrolled::AlreadyEnrolled,
            format!(
                "enrollment {key} {done} (enroll: {})",
                mode_name(seq.enroll)
            ),
        ));
        return;
    }
    if depth > MAX_START_DEPTH {
        let message = format!("not started: `start` chain deeper than {MAX_START_DEPTH}");
        out.journal
            .push(not_enrolled(NotEnrolled::StartTooDeep, message.clone()));
        out.notes.push(Note {
            enrollment_key: key,
            sequence: seq.id.clone(),
            message,
        });
        return;
    }
    // An exit already recorded after the trigger (an `order.cancelled` that
    // overtook its `order.placed`) stops the enrollment before it starts.
    let tz = catalog.policies.default_timezone;
    if let Some(ev) = recorded_exit(seq, c.recent, &context, &origin.mark, now, tz, out) {
        let message = format!(
            "not started: exit_when {} ({}) is already recorded, at {}",
            ev.kind,
            ev.id,
            ev.occurred_at.to_rfc3339()
        );
        out.journal
            .push(not_enrolled(NotEnrolled::ExitRecorded, message.clone()));
        out.notes.push(Note {
            enrollment_key: key,
            sequence: seq.id.clone(),
            message,
        });
        return;
    }
    if !c.may_start(catalog, now) {
        let ceiling = &catalog.policies.ceiling;
        let message = format!(
            "not started: the customer reached the ceiling of {} enrollments started per {} \
             (policies `ceiling`); a runaway sequence is the likely cause",
            ceiling.enrollments,
            crate::sequence::duration::format(ceiling.per)
        );
        out.journal
            .push(not_enrolled(NotEnrolled::Ceiling, message.clone()));
        out.notes.push(Note {
            enrollment_key: key,
            sequence: seq.id.clone(),
            message,
        });
        return;
    }
    out.journal.push(Entry {
        customer_id: context.customer.id.clone(),
        at: now,
        enrollment_key: Some(key.clone()),
        sequence: Some(seq.id.clone()),
        step: None,
        what: What::Enrolled {
            event_id: origin.by_event.then(|| origin.id.to_string()),
            started_by: (!origin.by_event).then(|| origin.id.to_string()),
        },
    });
    let (e, effects) = begin(catalog, seq, key, context, origin.mark, now);
    c.enrollments.push(e);
    let idx = c.enrollments.len() - 1;
    out.changed.insert(idx);
    handle(catalog, c, idx, effects, now, depth, out);
}

fn handle(
    catalog: &Catalog,
    c: &mut Parts,
    idx: usize,
    effects: Vec<Effect>,
    now: DateTime<Utc>,
    depth: usize,
    out: &mut Applied,
) {
    if !effects.iter().any(Effect::moves) {
        journal(&c.enrollments[idx], &effects, now, out);
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
            Effect::Email(job) => out.emails.push(job),
            Effect::Start {
                sequence: target,
                context,
                origin,
            } => {
                let origin = Origin {
                    id: &origin,
                    mark: c.enrollments[idx].mark(),
                    by_event: false,
                };
                enroll(catalog, c, &target, *context, origin, now, depth + 1, out)
            }
            Effect::Exited { reason } => out.notes.push(note(format!("exited: {reason}"))),
            Effect::Warn(w) => out.notes.push(note(w)),
            // In order: what a `start` starts comes after the step that
            // started it, before what its starter did next.
            f @ Effect::Journal { .. } => {
                journal(&c.enrollments[idx], std::slice::from_ref(&f), now, out)
            }
            Effect::Completed | Effect::Sleep { .. } | Effect::AwaitEvent { .. } => {}
        }
    }
    take_recorded(catalog, c, idx, now, depth, out);
}

/// Puts the journal entries among `effects` of enrollment `e` in the
/// journal.
fn journal(e: &Enrollment, effects: &[Effect], now: DateTime<Utc>, out: &mut Applied) {
    for f in effects {
        if let Effect::Journal { step, what } = f {
            out.journal.push(Entry {
                customer_id: e.customer_id.clone(),
                at: now,
                enrollment_key: Some(e.key.clone()),
                sequence: Some(e.sequence.clone()),
                step: step.clone(),
                what: what.clone(),
            });
        }
    }
}

fn mode_name(mode: crate::sequence::model::EnrollMode) -> &'static str {
    use crate::sequence::model::EnrollMode;
    match mode {
        EnrollMode::OncePerOrder => "once_per_order",
        EnrollMode::OncePerCustomer => "once_per_customer",
        EnrollMode::EveryEvent => "every_event",
    }
}

/// If enrollment `idx` now waits for an event the customer already had
/// (recorded after the event it last took in, before its deadline), it takes
/// that event in at once, as if it had just arrived: events that arrive out
/// of order still move sequences the right way.
fn take_recorded(
    catalog: &Catalog,
    c: &mut Parts,
    idx: usize,
    now: DateTime<Utc>,
    depth: usize,
    out: &mut Applied,
) {
    let e = &c.enrollments[idx];
    let Waiting::Event { event: kind, until } = &e.waiting else {
        return;
    };
    let (kind, until) = (kind.clone(), *until);
    let Some(seq) = catalog.get(&e.sequence) else {
        return;
    };
    let mark = e.mark();
    let recent = c.recent;
    let candidates = recent
        .iter()
        .filter(|r| r.kind == kind && r.occurred_at < until && r.admitted_by(&mark))
        .filter_map(|r| r.event());
    for ev in candidates {
        let effects = advance(
            catalog,
            seq,
            &mut c.enrollments[idx],
            Input::Event(&ev),
            now,
        );
        if effects
            .iter()
            .all(|f| !f.moves() || matches!(f, Effect::Warn(_)))
        {
            // It did not concern this enrollment (another order, a `when`
            // that does not hold): try the next one.
            let e = &c.enrollments[idx];
            journal(e, &effects, now, out);
            out.notes
                .extend(effects.into_iter().filter_map(|f| match f {
                    Effect::Warn(w) => Some(Note {
                        enrollment_key: e.key.clone(),
                        sequence: e.sequence.clone(),
                        message: w,
                    }),
                    _ => None,
                }));
            continue;
        }
        let e = &c.enrollments[idx];
        out.notes.push(Note {
            enrollment_key: e.key.clone(),
            sequence: e.sequence.clone(),
            message: format!(
                "took in {} ({}, at {}), recorded before the enrollment waited for it",
                ev.kind,
                ev.id,
                ev.occurred_at.to_rfc3339()
            ),
        });
        handle(catalog, c, idx, effects, now, depth, out);
        return;
    }
}

/// The first `exit_when` rule of `seq` that an event recorded after `mark`
/// meets, for an enrollment about to start with `context`.
fn recorded_exit(
    seq: &crate::sequence::model::Sequence,
    recent: &[Recorded],
    context: &Context,
    mark: &Mark,
    now: DateTime<Utc>,
    default_tz: chrono_tz::Tz,
    out: &mut Applied,
) -> Option<Arc<Event>> {
    let order_id = context.order.as_ref().map(|o| o.id.as_str());
    for rule in &seq.exit_when {
        let candidates = recent
            .iter()
            .filter(|r| r.kind == rule.event && r.admitted_by(mark))
            .filter_map(|r| r.event())
            .filter(|ev| correlates(&context.customer.id, order_id, ev, rule.scope));
        for ev in candidates {
            let mut warnings = Vec::new();
            if holds(
                rule.when.as_ref(),
                context,
                Some(&ev),
                now,
                default_tz,
                &mut warnings,
            ) {
                return Some(ev);
            }
            out.notes
                .extend(warnings.into_iter().filter_map(|f| match f {
                    Effect::Warn(w) => Some(Note {
                        enrollment_key: String::new(),
                        sequence: seq.id.clone(),
                        message: w,
                    }),
                    _ => None,
                }));
        }
    }
    None
}

/// Sets the customer's timers to the next firing of each timed sequence
/// (date triggers, and schedules in the customer's own time zone), as the
/// profile now says; returns what changed. A timer that is due and has not
/// fired yet (the scheduler behind) keeps its occurrence, and so does a
/// coming firing that the change moves at most [`MOVED_INTO_THE_PAST`] into
/// the past ([`still_pending`]). `zone_was`: the customer's time zone when
/// the timers were planned, where the change may have moved it.
pub fn plan_timers(
    catalog: &Catalog,
    state: &mut CustomerState,
    zone_was: Option<Tz>,
    now: DateTime<Utc>,
) -> Vec<TimerWrite> {
    let mut writes = Vec::new();
    if catalog.timed.is_empty() && state.timers.is_empty() {
        return writes;
    }
    let Some(customer_id) = state
        .profile
        .as_ref()
        .map(|p| p.customer.id.clone())
        .or_else(|| state.timers.first().map(|t| t.customer_id.clone()))
    else {
        return writes;
    };
    let mut kept = Vec::with_capacity(catalog.timed.len());
    for id in &catalog.timed {
        let existing = state.timers.iter().find(|t| &t.sequence == id);
        let from = existing.map_or(now, |e| e.fire_at.min(now));
        let wanted = next_timer(catalog, state, id, from);
        // Planned afresh, the coming occurrence may be lost or repeated.
        let wanted = match existing {
            Some(e) if wanted.as_ref().is_none_or(|w| w.occurrence != e.occurrence) => {
                still_pending(catalog, state, e, zone_was, now).or(wanted)
            }
            _ => wanted,
        };
        if wanted.as_ref() != existing {
            writes.push(TimerWrite {
                customer_id: customer_id.clone(),
                sequence: id.clone(),
                timer: wanted.clone(),
            });
        }
        kept.extend(wanted);
    }
    // Timers of sequences that are gone or no longer timed.
    for t in &state.timers {
        if !catalog.timed.contains(&t.sequence) {
            writes.push(TimerWrite {
                customer_id: customer_id.clone(),
                sequence: t.sequence.clone(),
                timer: None,
            });
        }
    }
    state.timers = kept;
    writes
}

/// How far into the past a change may move a coming firing that then still
/// fires, at once: the widest gap between two time zones (UTC-12 to UTC+14),
/// so that any change of zone keeps the firing, and a date corrected further
/// back than that does not fire late.
pub const MOVED_INTO_THE_PAST: chrono::TimeDelta = chrono::TimeDelta::hours(26);

/// The coming firing `pending` as a change leaves it, where planning afresh
/// from now would lose or repeat it:
///
/// - A date trigger's occurrence (the year) that the change (a time zone, a
///   date corrected on its day to the day before) moved into the past by at most
///   [`MOVED_INTO_THE_PAST`] has not fired, so it fires at once instead of a
///   year later: a birthday at 09:00 in Los Angeles, still coming at 10:00
///   UTC, is 09:00 in Tokyo, already past.
/// - A schedule in the customer's zone, when the zone changed from
///   `zone_was`, keeps its place among the cron's wall-clock times: the
///   pending 09:00 is the new zone's 09:00 of that day, at once if that has
///   passed there, and a day whose 09:00 fired in the old zone does not fire
///   again in the new one.
fn still_pending(
    catalog: &Catalog,
    state: &CustomerState,
    pending: &Timer,
    zone_was: Option<Tz>,
    now: DateTime<Utc>,
) -> Option<Timer> {
    if pending.fire_at <= now {
        return None;
    }
    match catalog.get(&pending.sequence)?.trigger.as_ref()? {
        Trigger::Date(_) => {
            next_timer(catalog, state, &pending.sequence, now - MOVED_INTO_THE_PAST)
                .filter(|t| t.fire_at < now && t.occurrence == pending.occurrence)
        }
        Trigger::Schedule(t) if t.per_customer_zone => {
            let (was, tz) = (zone_was?, zone_of(catalog, state)?);
            if tz == was {
                return None;
            }
            // Only a firing of the cron as it reads now, in the old zone.
            let before = pending.fire_at - chrono::TimeDelta::seconds(1);
            if calendar::next_cron(&t.cron, was, before) != Some(pending.fire_at) {
                return None;
            }
            let fire_at = super::localtime::same_wall_time(pending.fire_at, was, tz);
            Some(Timer {
                customer_id: pending.customer_id.clone(),
                sequence: pending.sequence.clone(),
                fire_at,
                occurrence: calendar::schedule_origin(fire_at),
            })
        }
        Trigger::Schedule(_) | Trigger::Event { .. } => None,
    }
}

/// The customer's time zone as the profile has it (the default where it
/// names none); `None` without a profile.
fn zone_of(catalog: &Catalog, state: &CustomerState) -> Option<Tz> {
    let p = state.profile.as_ref()?;
    Some(calendar::zone_of(
        &p.customer,
        catalog.policies.default_timezone,
    ))
}

/// The customer's next firing of the timed `sequence` at or after `from`.
fn next_timer(
    catalog: &Catalog,
    state: &CustomerState,
    sequence: &str,
    from: DateTime<Utc>,
) -> Option<Timer> {
    let profile = state.profile.as_ref()?;
    let tz = zone_of(catalog, state)?;
    let (fire_at, occurrence) = match catalog.get(sequence)?.trigger.as_ref()? {
        Trigger::Date(t) => {
            let f = calendar::next_date_firing(t, profile, tz, from)?;
            (f.at, f.occurrence)
        }
        Trigger::Schedule(t) if t.per_customer_zone => {
            let at = calendar::next_cron(&t.cron, tz, from - chrono::TimeDelta::seconds(1))?;
            (at, calendar::schedule_origin(at))
        }
        Trigger::Schedule(_) | Trigger::Event { .. } => return None,
    };
    Some(Timer {
        customer_id: profile.customer.id.clone(),
        sequence: sequence.to_string(),
        fire_at,
        occurrence,
    })
}

/// Fires the customer's timer for the timed `sequence` if it is due at
/// `now`: enrolls the customer for that occurrence (once: the occurrence
/// is in the enrollment key) when the trigger's `when` holds, and sets the
/// timer to the next occurrence.
pub fn apply_timer(
    catalog: &Catalog,
    state: &mut CustomerState,
    sequence: &str,
    now: DateTime<Utc>,
) -> Changes {
    let mut changes = catch_up(catalog, state, now);
    let Some(timer) = state
        .timers
        .iter()
        .find(|t| t.sequence == sequence && t.fire_at <= now)
        .cloned()
    else {
        // Not due as the customer's state has it: set it as the state says,
        // so that a stored timer never stays due.
        changes
            .timers
            .extend(plan_timers(catalog, state, None, now));
        if let Some(p) = &state.profile
            && !changes.timers.iter().any(|t| t.sequence == sequence)
        {
            changes.timers.push(TimerWrite {
                customer_id: p.customer.id.clone(),
                sequence: sequence.to_string(),
                timer: state
                    .timers
                    .iter()
                    .find(|t| t.sequence == sequence)
                    .cloned(),
            });
        }
        return changes;
    };
    let mut out = Applied::default();
    // A timer of a sequence no longer timed (its trigger changed) is dropped
    // without firing.
    let timed = catalog.timed.iter().any(|t| t == sequence);
    if let (true, Some(seq), Some(profile)) = (timed, catalog.get(sequence), state.profile.clone())
    {
        let origin = Origin {
            id: &timer.occurrence,
            mark: Mark {
                at: timer.fire_at,
                id: timer.occurrence.clone(),
            },
            by_event: false,
        };
        // A schedule's enrollment starts with the customer's last order
        // (`once_per_order`: once per lapse); a date's with none.
        let order = match seq.trigger {
            Some(Trigger::Schedule(_)) => calendar::last_order(&profile),
            _ => None,
        };
        fire(catalog, state, seq, &profile, order, origin, now, &mut out);
    }
    // The next occurrence, strictly after this one (and after now: a
    // scheduler far behind fires a missed occurrence once, not each).
    state.timers.retain(|t| t.sequence != sequence);
    let after = (timer.fire_at + chrono::TimeDelta::seconds(1)).max(now);
    let next = next_timer(catalog, state, sequence, after);
    state.timers.extend(next.clone());
    let mut fired = out.into_changes(state);
    fired.timers.push(TimerWrite {
        customer_id: timer.customer_id.clone(),
        sequence: sequence.to_string(),
        timer: next,
    });
    changes.merge(fired);
    changes
}

/// One schedule firing for one customer: enrolls them in `sequence` when
/// its `when` holds (once per firing at most: the firing is the origin).
pub fn apply_schedule(
    catalog: &Catalog,
    state: &mut CustomerState,
    sequence: &str,
    firing: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Changes {
    let mut changes = catch_up(catalog, state, now);
    let (Some(seq), Some(profile)) = (catalog.get(sequence), state.profile.clone()) else {
        return changes;
    };
    let id = calendar::schedule_origin(firing);
    let origin = Origin {
        id: &id,
        mark: Mark {
            at: firing,
            id: id.clone(),
        },
        by_event: false,
    };
    let mut out = Applied::default();
    let order = calendar::last_order(&profile);
    fire(catalog, state, seq, &profile, order, origin, now, &mut out);
    changes.merge(out.into_changes(state));
    changes
}

/// The enrollment key a schedule's `firing` would start for the customer:
/// what [`apply_schedule`] looks for, under the customer's lock, among the
/// enrollments running and finished. A sweep asks the store for it first,
/// so that it locks only the customers who may be enrolled (win-back's
/// window holds for a lapsed customer thirty mornings running; the first
/// enrolls them, `once_per_order`, and the rest would find them enrolled).
pub fn schedule_key(
    seq: &crate::sequence::model::Sequence,
    profile: &profile::Profile,
    firing: DateTime<Utc>,
) -> String {
    enrollment_key(
        &seq.id,
        seq.enroll,
        &profile.customer.id,
        profile.ledger.facts.last_order_id.as_deref(),
        &calendar::schedule_origin(firing),
    )
}

/// Whether a time-driven trigger's `when` holds for the customer at `now`
/// (no `when`: yes). A scheduled sweep asks first, without the customer's
/// lock, and only locks those for whom it holds.
pub fn time_trigger_holds(
    seq: &crate::sequence::model::Sequence,
    profile: &profile::Profile,
    now: DateTime<Utc>,
    default_tz: chrono_tz::Tz,
) -> Result<bool, String> {
    let Some(cond) = seq.trigger.as_ref().and_then(|t| t.when()) else {
        return Ok(true);
    };
    // A `when` that only bounds a time fact (win-back's) is that range:
    // asked of every lapsed customer at each firing, a comparison instead of
    // an evaluation.
    if let Some(range) = cond.exact_range_at(now) {
        return Ok(range.holds(&profile.ledger.facts));
    }
    // Asked of every customer at each firing: the order only when it is read.
    let order = if cond.names("order") {
        calendar::last_order(profile)
    } else {
        None
    };
    let tz = calendar::zone_of(&profile.customer, default_tz);
    cond.eval_bool_in(
        &Bindings {
            customer: &profile.customer,
            facts: Some(&profile.ledger.facts),
            order: order.as_ref(),
            shipment: None,
            review: None,
            event: None,
            now,
        },
        tz,
    )
}

/// Enrolls the customer in the time-triggered `seq` if its `when` holds,
/// with the journal's account either way.
#[allow(clippy::too_many_arguments)]
fn fire(
    catalog: &Catalog,
    state: &mut CustomerState,
    seq: &crate::sequence::model::Sequence,
    profile: &profile::Profile,
    order: Option<crate::event::Order>,
    origin: Origin,
    now: DateTime<Utc>,
    out: &mut Applied,
) {
    let result = time_trigger_holds(seq, profile, now, catalog.policies.default_timezone);
    if result != Ok(true) {
        let cond = seq
            .trigger
            .as_ref()
            .and_then(|t| t.when())
            .expect("a when that did not hold");
        let why = match &result {
            Ok(_) => NotEnrolled::TriggerFalse,
            Err(_) => NotEnrolled::TriggerFailed,
        };
        let message = match &result {
            Ok(v) => format!(
                "trigger condition `{}` was {v} ({})",
                cond.source, origin.id
            ),
            Err(e) => format!(
                "trigger condition `{}` failed ({}): {e}",
                cond.source, origin.id
            ),
        };
        if let Err(e) = &result {
            out.notes.push(Note {
                enrollment_key: String::new(),
                sequence: seq.id.clone(),
                message: format!(
                    "trigger condition `{}` failed, not enrolled: {e}",
                    cond.source
                ),
            });
        }
        // Only a firing's own account: a schedule asks every customer, and
        // a journal entry for each "no" would fill the journal.
        if matches!(seq.trigger, Some(Trigger::Date(_))) || result.is_err() {
            out.journal.push(Entry {
                customer_id: profile.customer.id.clone(),
                at: now,
                enrollment_key: None,
                sequence: Some(seq.id.clone()),
                step: None,
                what: What::NotEnrolled {
                    why,
                    event_id: None,
                    condition: Some(Checked::of(&cond.source, &result)),
                    message,
                },
            });
        }
        return;
    }
    let context = Context {
        customer: profile.customer.clone(),
        order,
        shipment: None,
        review: None,
        facts: profile.ledger.facts.clone(),
    };
    let mut c = Parts::of(state);
    enroll(catalog, &mut c, &seq.id, context, origin, now, 0, out);
}
