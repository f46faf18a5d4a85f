//! The pure state machine. Given a sequence, an enrollment, an input (an
//! event or a wake-up) and `now`, it moves the enrollment on and says what
//! should happen. No clock, no database, no network: `run`, `simulate` and the
//! tests drive the same code with different clocks and stores.

pub mod calendar;
pub mod customer;
pub mod dispatch;
pub mod facts;
pub mod journal;
pub mod localtime;
pub mod operator;
pub mod outbox;
pub mod policy;
pub mod profile;
pub mod state;

use std::sync::Arc;

use chrono::{DateTime, Datelike, NaiveTime, TimeDelta, Utc};
use chrono_tz::Tz;
use sha2::{Digest, Sha256};

use crate::event::Event;
use crate::sequence::model::{Catalog, Sequence};
use crate::sequence::plan::Op;
use crate::sequence::weekdays::Weekdays;
use journal::{Checked, Role, What};
use state::{Context, EmailJob, Enrollment, Mark, Status, Waiting};

/// What drives an enrollment forward.
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    Event(&'a Event),
    /// The scheduler's call once `wake_at` has passed.
    Wake,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Email(EmailJob),
    /// Enroll the customer in another sequence, handing over the context.
    Start {
        sequence: String,
        context: Box<Context>,
        origin: String,
    },
    Sleep {
        until: DateTime<Utc>,
    },
    AwaitEvent {
        event: String,
        until: DateTime<Utc>,
    },
    Exited {
        reason: String,
    },
    Completed,
    /// Something the operator should know (a condition that failed to run).
    Warn(String),
    /// What was decided and why, at `step` (see [`journal`]): it moves
    /// nothing by itself.
    Journal {
        step: Option<String>,
        what: What,
    },
}

impl Effect {
    /// Whether the effect is more than an account of a decision: an input
    /// whose effects are all journal entries did not move the enrollment.
    pub fn moves(&self) -> bool {
        !matches!(self, Effect::Journal { .. })
    }

    fn journal(step: &Option<String>, what: What) -> Self {
        Effect::Journal {
            step: step.clone(),
            what,
        }
    }
}

/// Starts a new enrollment and runs it to its first wait. `mark` is the
/// event that started it (see [`Enrollment::mark`]).
pub fn begin(
    catalog: &Catalog,
    seq: &Sequence,
    key: String,
    context: Context,
    mark: Mark,
    now: DateTime<Utc>,
) -> (Enrollment, Vec<Effect>) {
    let mut e = Enrollment {
        key,
        sequence: seq.id.clone(),
        version: seq.version.clone(),
        customer_id: context.customer.id.clone(),
        order_id: context.order.as_ref().map(|o| o.id.clone()),
        status: Status::Active,
        step: None,
        waiting: Waiting::Nothing,
        context: Arc::new(context),
        started_at: now,
        updated_at: now,
        ended_reason: None,
        mark: Some(mark),
        history: None,
    };
    let mut effects = Vec::new();
    run_from(catalog, seq, &mut e, seq.plan.entry, now, &mut effects);
    (e, effects)
}

/// Moves `e` on by `input`. Returns no effects when the input does not
/// concern the enrollment (then `e` is unchanged).
pub fn advance(
    catalog: &Catalog,
    seq: &Sequence,
    e: &mut Enrollment,
    input: Input,
    now: DateTime<Utc>,
) -> Vec<Effect> {
    let mut effects = Vec::new();
    if !e.is_active() {
        return effects;
    }
    // Resume by step id: the sequence may have been edited since.
    let idx = match e.step.as_deref().and_then(|s| seq.plan.by_id.get(s)) {
        Some(i) => *i,
        None => {
            let reason = format!(
                "step `{}` no longer exists in version {} of `{}`",
                e.step.as_deref().unwrap_or("?"),
                seq.version,
                seq.id
            );
            end(e, Status::Exited, reason, now, &mut effects);
            return effects;
        }
    };
    let instr = &seq.plan.instrs[idx];
    match input {
        // An event from before the enrollment's last one (a history import,
        // a late event) does not move it.
        Input::Event(ev) if !e.admits(ev) => {}
        Input::Event(ev) => {
            for rule in &seq.exit_when {
                if ev.kind == rule.event
                    && e.correlates(ev, rule.scope)
                    && checks(
                        rule.when.as_ref(),
                        Role::ExitWhen,
                        e,
                        Some(ev),
                        (now, zone(catalog, e)),
                        &mut effects,
                    )
                {
                    let reason = format!("exit_when {} ({})", ev.kind, ev.id);
                    end_by(e, Status::Exited, reason, Some(&ev.id), now, &mut effects);
                    return effects;
                }
            }
            // The deadline passed before this event happened, and the wake-up
            // has not run yet (a scheduler running behind): time out first, as
            // it would have, then offer the event to the step that follows.
            if let Waiting::Event { until, .. } = &e.waiting
                && ev.occurred_at >= *until
                && now >= *until
            {
                let mut fx = advance(catalog, seq, e, Input::Wake, now);
                if !fx.is_empty() {
                    fx.extend(advance(catalog, seq, e, Input::Event(ev), now));
                }
                return fx;
            }
            if let (Waiting::Event { event, until }, Op::WaitFor { when, scope, .. }) =
                (&e.waiting, &instr.op)
                && *event == ev.kind
                // It happened in time, even if it is processed later.
                && ev.occurred_at < *until
                && e.correlates(ev, *scope)
                && checks(
                    when.as_ref(),
                    Role::WaitFor,
                    e,
                    Some(ev),
                    (now, zone(catalog, e)),
                    &mut effects,
                )
            {
                effects.push(Effect::journal(
                    &e.step,
                    What::Received {
                        event_id: ev.id.clone(),
                        event_type: ev.kind.clone(),
                    },
                ));
                Arc::make_mut(&mut e.context).absorb(ev);
                if e.mark().before(ev) {
                    e.mark = Some(Mark::of(ev));
                }
                mark_version(e, seq);
                run_from(catalog, seq, e, instr.next, now, &mut effects);
            }
        }
        Input::Wake => match (&e.waiting, &instr.op) {
            (Waiting::Time { until }, _) if now >= *until => {
                effects.push(Effect::journal(&e.step, What::WaitOver { until: *until }));
                mark_version(e, seq);
                run_from(catalog, seq, e, instr.next, now, &mut effects);
            }
            (Waiting::Event { until, event }, op) if now >= *until => {
                effects.push(Effect::journal(
                    &e.step,
                    What::TimedOut {
                        event: event.clone(),
                        until: *until,
                    },
                ));
                mark_version(e, seq);
                let next = match op {
                    Op::WaitFor { timeout, .. } => *timeout,
                    _ => instr.next,
                };
                run_from(catalog, seq, e, next, now, &mut effects);
            }
            _ => {}
        },
    }
    effects
}

fn mark_version(e: &mut Enrollment, seq: &Sequence) {
    if e.version != seq.version {
        e.version = seq.version.clone();
    }
}

/// The customer's time zone, or the policies' default: where `at`, `on`,
/// calendar spans and `months(n)` count.
fn zone(catalog: &Catalog, e: &Enrollment) -> Tz {
    e.context
        .customer
        .timezone
        .unwrap_or(catalog.policies.default_timezone)
}

/// Whether the `when` of a rule holds for enrollment `e` and `event`, with
/// the evaluation in the journal (a rule without `when` holds, unrecorded).
/// `at`: now, and the customer's time zone.
fn checks(
    cond: Option<&crate::sequence::condition::Condition>,
    role: Role,
    e: &Enrollment,
    event: Option<&Event>,
    (now, tz): (DateTime<Utc>, Tz),
    effects: &mut Vec<Effect>,
) -> bool {
    let Some(c) = cond else {
        return true;
    };
    let result = c.eval_bool_in(&e.context.bindings(event, now), tz);
    let checked = Checked::of(&c.source, &result);
    effects.push(Effect::journal(
        &e.step,
        What::Condition {
            role,
            event_id: event.map(|ev| ev.id.clone()),
            checked,
        },
    ));
    warn_failed(c, result, effects)
}

/// The value of a condition's evaluation; a failure is a warning and false.
fn warn_failed(
    c: &crate::sequence::condition::Condition,
    result: Result<bool, String>,
    effects: &mut Vec<Effect>,
) -> bool {
    match result {
        Ok(v) => v,
        Err(err) => {
            effects.push(Effect::Warn(format!(
                "condition `{}` failed, taken as false: {err}",
                c.source
            )));
            false
        }
    }
}

/// Whether `cond` holds for `ctx` (calendar functions such as `months(n)`
/// count in the customer's zone, else `default_tz`).
fn holds(
    cond: Option<&crate::sequence::condition::Condition>,
    ctx: &Context,
    event: Option<&Event>,
    now: DateTime<Utc>,
    default_tz: chrono_tz::Tz,
    effects: &mut Vec<Effect>,
) -> bool {
    let tz = ctx.customer.timezone.unwrap_or(default_tz);
    match cond {
        None => true,
        Some(c) => match c.eval_bool_in(&ctx.bindings(event, now), tz) {
            Ok(v) => v,
            Err(err) => {
                effects.push(Effect::Warn(format!(
                    "condition `{}` failed, taken as false: {err}",
                    c.source
                )));
                false
            }
        },
    }
}

fn end(
    e: &mut Enrollment,
    status: Status,
    reason: String,
    now: DateTime<Utc>,
    fx: &mut Vec<Effect>,
) {
    end_by(e, status, reason, None, now, fx)
}

/// Ends `e`; `event_id`: the event that ended it (an `exit_when` rule's).
fn end_by(
    e: &mut Enrollment,
    status: Status,
    reason: String,
    event_id: Option<&str>,
    now: DateTime<Utc>,
    fx: &mut Vec<Effect>,
) {
    e.status = status;
    e.waiting = Waiting::Nothing;
    e.updated_at = now;
    fx.push(Effect::journal(
        &e.step,
        match status {
            Status::Completed => What::Completed,
            _ => What::Exited {
                reason: reason.clone(),
                event_id: event_id.map(str::to_string),
            },
        },
    ));
    fx.push(match status {
        Status::Completed => Effect::Completed,
        _ => Effect::Exited {
            reason: reason.clone(),
        },
    });
    e.ended_reason = Some(reason);
}

/// Runs steps from `start` until one waits or the sequence ends.
fn run_from(
    catalog: &Catalog,
    seq: &Sequence,
    e: &mut Enrollment,
    start: Option<usize>,
    now: DateTime<Utc>,
    fx: &mut Vec<Effect>,
) {
    e.updated_at = now;
    e.waiting = Waiting::Nothing;
    let mut cur = start;
    // The plan only jumps forward, so this ends; the bound makes it obvious.
    for _ in 0..=seq.plan.instrs.len() {
        let Some(i) = cur else {
            end(e, Status::Completed, "completed".into(), now, fx);
            return;
        };
        let instr = &seq.plan.instrs[i];
        e.step = Some(instr.id.clone());
        cur = instr.next;
        match &instr.op {
            Op::Email { template, category } => fx.push(Effect::Email(EmailJob {
                idempotency_key: format!("{}#{}", e.key, instr.id),
                enrollment_key: e.key.clone(),
                customer_id: e.customer_id.clone(),
                sequence: seq.id.clone(),
                step: instr.id.clone(),
                template: template.clone(),
                category: category.unwrap_or(seq.category),
                due_at: now,
            })),
            Op::Wait { duration, at, on } => {
                let tz = zone(catalog, e);
                let Some(until) = duration
                    .add_to(now, tz)
                    .and_then(|t| aligned(t, tz, *at, *on))
                else {
                    let reason = format!(
                        "wait of {duration} from {now} ends past the dates aftercare can hold"
                    );
                    end(e, Status::Exited, reason, now, fx);
                    return;
                };
                e.waiting = Waiting::Time { until };
                fx.push(Effect::journal(
                    &e.step,
                    What::Waiting {
                        until,
                        source: None,
                    },
                ));
                fx.push(Effect::Sleep { until });
                return;
            }
            Op::WaitUntil { until: c, at, on } => {
                let tz = zone(catalog, e);
                let until = c
                    .eval_timestamp_in(&e.context.bindings(None, now), tz)
                    .and_then(|t| {
                        aligned(t, tz, *at, *on).ok_or_else(|| {
                            format!("{t} moved by `at`/`on` ends past the dates aftercare can hold")
                        })
                    });
                match until {
                    Ok(until) if until > now => {
                        e.waiting = Waiting::Time { until };
                        fx.push(Effect::journal(
                            &e.step,
                            What::Waiting {
                                until,
                                source: Some(c.source.clone()),
                            },
                        ));
                        fx.push(Effect::Sleep { until });
                        return;
                    }
                    Ok(until) => fx.push(Effect::journal(
                        &e.step,
                        What::WaitPassed {
                            until,
                            source: c.source.clone(),
                        },
                    )),
                    Err(err) => {
                        let reason = format!("wait_until `{}` failed: {err}", c.source);
                        end(e, Status::Exited, reason, now, fx);
                        return;
                    }
                }
            }
            Op::WaitFor {
                event,
                within,
                at,
                on,
                ..
            } => {
                let tz = zone(catalog, e);
                let Some(until) = within
                    .add_to(now, tz)
                    .and_then(|t| aligned(t, tz, *at, *on))
                else {
                    let reason = format!(
                        "wait_for {event} within {within} from {now} ends past the dates aftercare can hold"
                    );
                    end(e, Status::Exited, reason, now, fx);
                    return;
                };
                e.waiting = Waiting::Event {
                    event: event.clone(),
                    until,
                };
                fx.push(Effect::journal(
                    &e.step,
                    What::AwaitingEvent {
                        event: event.clone(),
                        until,
                    },
                ));
                fx.push(Effect::AwaitEvent {
                    event: event.clone(),
                    until,
                });
                return;
            }
            Op::If {
                cond,
                then,
                otherwise,
            } => {
                let result = cond.eval_bool_in(&e.context.bindings(None, now), zone(catalog, e));
                let mut checked = Checked::of(&cond.source, &result);
                let taken = warn_failed(cond, result, fx);
                checked.branch = Some(if taken { "then" } else { "else" }.into());
                fx.push(Effect::journal(
                    &e.step,
                    What::Condition {
                        role: Role::If,
                        event_id: None,
                        checked,
                    },
                ));
                cur = if taken { *then } else { *otherwise };
            }
            Op::Split(variants) => {
                let picked = pick_index(&e.customer_id, &seq.id, &instr.id, variants);
                if let Some((name, _, _)) = variants.get(picked) {
                    fx.push(Effect::journal(
                        &e.step,
                        What::Split {
                            variant: name.clone(),
                        },
                    ));
                }
                cur = variants.get(picked).and_then(|v| v.2);
            }
            Op::Start(target) => {
                fx.push(Effect::journal(
                    &e.step,
                    What::Start {
                        sequence: target.clone(),
                    },
                ));
                fx.push(Effect::Start {
                    sequence: target.clone(),
                    context: Box::new(Context::clone(&e.context)),
                    origin: e.key.clone(),
                });
            }
            Op::Exit => {
                end(
                    e,
                    Status::Exited,
                    format!("exit step `{}`", instr.id),
                    now,
                    fx,
                );
                return;
            }
        }
    }
    // Only a plan that jumps backwards could get here, and `Plan::compile`
    // never builds one; end visibly rather than loop.
    let reason = format!("internal: the plan of `{}` did not end", seq.id);
    end(e, Status::Exited, reason, now, fx);
}

/// `now + d`, or `None` past the years a wake-up may be stored at (9999):
/// checked, so that no duration can make the engine panic.
pub fn later(now: DateTime<Utc>, d: TimeDelta) -> Option<DateTime<Utc>> {
    now.checked_add_signed(d)
        .filter(|t| t.year() <= *crate::sequence::condition::YEARS.end())
}

/// The end of a wait at `t` moved by `at` and `on` (see
/// [`localtime::align`]), or `None` past the years a wake-up may be stored at.
fn aligned(
    t: DateTime<Utc>,
    tz: Tz,
    at: Option<NaiveTime>,
    on: Option<Weekdays>,
) -> Option<DateTime<Utc>> {
    later(localtime::align(t, tz, at, on), TimeDelta::zero())
}

/// Keeps the end of `e`'s wait on the customer's calendar when their time
/// zone changes from `was` to the one `e`'s context now names. A wait whose
/// step places its end with `at` or `on` ends on the same day at the same
/// time of day in the new zone (so it keeps both), at once (`now`) if that
/// has passed there; a wait without either is a span of time and stays.
/// Returns the effects of the move (a journal entry with the new end, and
/// the new wake-up), none if nothing moved.
fn follow_zone(
    catalog: &Catalog,
    seq: &Sequence,
    e: &mut Enrollment,
    was: Tz,
    now: DateTime<Utc>,
) -> Vec<Effect> {
    let tz = zone(catalog, e);
    if tz == was || !e.is_active() {
        return Vec::new();
    }
    let Some(instr) = e.step.as_deref().and_then(|s| seq.plan.by_id.get(s)) else {
        return Vec::new();
    };
    let placed = match &seq.plan.instrs[*instr].op {
        Op::Wait { at, on, .. } | Op::WaitUntil { at, on, .. } | Op::WaitFor { at, on, .. } => {
            at.is_some() || on.is_some()
        }
        _ => false,
    };
    // A wake-up already due (the scheduler behind) runs as it is.
    let until = match &mut e.waiting {
        Waiting::Time { until } | Waiting::Event { until, .. } if placed && *until > now => until,
        _ => return Vec::new(),
    };
    let moved = localtime::same_wall_time(*until, was, tz).max(now);
    if moved == *until {
        return Vec::new();
    }
    *until = moved;
    e.updated_at = now;
    match &e.waiting {
        Waiting::Event { event, until } => vec![
            Effect::journal(
                &e.step,
                What::AwaitingEvent {
                    event: event.clone(),
                    until: *until,
                },
            ),
            Effect::AwaitEvent {
                event: event.clone(),
                until: *until,
            },
        ],
        _ => vec![
            Effect::journal(
                &e.step,
                What::Waiting {
                    until: moved,
                    source: None,
                },
            ),
            Effect::Sleep { until: moved },
        ],
    }
}

/// A split's variant for a customer: the same customer always lands in the
/// same variant of the same split, spread by weight.
pub fn pick_variant(
    customer_id: &str,
    sequence: &str,
    step: &str,
    variants: &[(String, u32, Option<usize>)],
) -> Option<usize> {
    let i = pick_index(customer_id, sequence, step, variants);
    variants.get(i).and_then(|v| v.2)
}

/// Which of `variants` [`pick_variant`] picks, by index.
fn pick_index(
    customer_id: &str,
    sequence: &str,
    step: &str,
    variants: &[(String, u32, Option<usize>)],
) -> usize {
    let total: u64 = variants.iter().map(|v| u64::from(v.1)).sum();
    if total == 0 {
        return 0;
    }
    let h = Sha256::digest(format!("{customer_id}\u{0}{sequence}\u{0}{step}").as_bytes());
    let mut roll = u64::from_be_bytes(h[..8].try_into().expect("8 bytes")) % total;
    for (i, (_, w, _)) in variants.iter().enumerate() {
        let w = u64::from(*w);
        if roll < w {
            return i;
        }
        roll -= w;
    }
    unreachable!("roll < total")
}
