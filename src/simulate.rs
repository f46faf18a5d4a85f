//! The virtual-clock driver behind `simulate` and `demo`: events in time
//! order, wake-ups and sends on a queue, the same engine, dispatch and send
//! policy as `run`, and an in-memory store.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::engine::dispatch::Note;
use crate::engine::policy::{self, Decision, Sent};
use crate::engine::state::EmailJob;
use crate::event::Event;
use crate::send::worker;
use crate::sequence::model::Catalog;
use crate::store::{Changes, CustomerState, NewEmail};
use crate::template::data::{self, Origin};
use crate::template::{Parts, Rendered, Templates};
use crate::{ingest, schedule};

/// One line of `simulate`'s output, fields in the documented order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SentEmail {
    pub at: String,
    pub customer_id: String,
    pub to: String,
    pub sequence: String,
    pub step: String,
    pub template: String,
    pub locale: String,
    pub subject: String,
    pub category: String,
}

/// A sent email with everything needed to write it out (for `demo`).
#[derive(Debug, Clone)]
pub struct Delivered {
    pub line: SentEmail,
    pub at: DateTime<Utc>,
    pub idempotency_key: String,
    /// The whole message, kept only when asked for (`demo` writes it out).
    pub content: Option<Rendered>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    pub at: DateTime<Utc>,
    pub customer_id: String,
    pub sequence: String,
    pub step: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Job {
    Wake { customer_id: String, key: String },
    Send { idempotency_key: String },
}

/// Everything one simulation knows; `run` keeps the same in a database.
pub struct World<'a> {
    catalog: &'a Catalog,
    templates: &'a Templates,
    /// Each customer's profile and enrollments, as the store keeps them.
    customers: HashMap<String, CustomerState>,
    seen_events: HashSet<String>,
    history: HashMap<String, Vec<Sent>>,
    outbox: HashMap<String, NewEmail>,
    queue: BinaryHeap<Reverse<(DateTime<Utc>, u64, Job)>>,
    ticket: u64,
    keep_content: bool,
    pub delivered: Vec<Delivered>,
    pub skipped: Vec<Skipped>,
    pub notes: Vec<(DateTime<Utc>, Note)>,
    pub duplicates: usize,
    pub events: usize,
}

/// How far the clock may run.
#[derive(Debug, Clone, Copy)]
pub enum Until {
    /// Until nothing is pending (bounded by [`MAX_HORIZON_DAYS`] after the last event).
    Drained,
    At(DateTime<Utc>),
}

pub const MAX_HORIZON_DAYS: i64 = 3650;

impl<'a> World<'a> {
    pub fn new(catalog: &'a Catalog, templates: &'a Templates) -> Self {
        Self {
            catalog,
            templates,
            customers: HashMap::new(),
            seen_events: HashSet::new(),
            history: HashMap::new(),
            outbox: HashMap::new(),
            queue: BinaryHeap::new(),
            ticket: 0,
            keep_content: false,
            delivered: Vec::new(),
            skipped: Vec::new(),
            notes: Vec::new(),
            duplicates: 0,
            events: 0,
        }
    }

    /// Keep each email's full content (HTML and text), as `demo` needs.
    pub fn keep_content(mut self) -> Self {
        self.keep_content = true;
        self
    }

    /// Runs `events` (sorted here by `occurred_at`, file order among equals)
    /// and then the clock until `until`.
    pub fn run(&mut self, mut events: Vec<Event>, until: Until) {
        events.sort_by_key(|e| e.occurred_at);
        let horizon = match until {
            Until::At(t) => t,
            Until::Drained => {
                let last = events
                    .last()
                    .map(|e| e.occurred_at)
                    .unwrap_or_else(|| DateTime::<Utc>::from_timestamp(0, 0).expect("epoch"));
                last + chrono::Duration::days(MAX_HORIZON_DAYS)
            }
        };
        for event in &events {
            if event.occurred_at > horizon {
                break;
            }
            self.run_jobs_until(event.occurred_at);
            self.apply_event(event, event.occurred_at);
        }
        self.run_jobs_until(horizon);
    }

    fn push(&mut self, at: DateTime<Utc>, job: Job) {
        self.ticket += 1;
        self.queue.push(Reverse((at, self.ticket, job)));
    }

    fn run_jobs_until(&mut self, t: DateTime<Utc>) {
        while let Some(Reverse((at, _, _))) = self.queue.peek() {
            if *at > t {
                break;
            }
            let Reverse((at, _, job)) = self.queue.pop().expect("peeked");
            match job {
                Job::Wake { customer_id, key } => self.wake(&customer_id, &key, at),
                Job::Send { idempotency_key } => self.send(&idempotency_key, at),
            }
        }
    }

    /// Applies one event with the same pure function the service's ingest uses.
    pub fn apply_event(&mut self, event: &Event, now: DateTime<Utc>) {
        if !self.seen_events.insert(event.id.clone()) {
            self.duplicates += 1;
            return;
        }
        self.events += 1;
        let cid = event.customer.id.clone();
        let mut state = self.customers.remove(&cid).unwrap_or_default();
        let changes = ingest::apply_event(self.catalog, &mut state, event, now);
        self.absorb(&cid, state, changes, now);
    }

    /// Wakes one enrollment with the scheduler's pure function.
    fn wake(&mut self, customer_id: &str, key: &str, now: DateTime<Utc>) {
        let mut state = self.customers.remove(customer_id).unwrap_or_default();
        let due = state
            .enrollments
            .iter()
            .position(|e| e.key == key && e.wake_at() == Some(now));
        // A stale wake-up (the enrollment moved on since) does nothing.
        let changes = match due {
            Some(i) => schedule::apply_wake(self.catalog, &mut state, i, now),
            None => Changes::default(),
        };
        self.absorb(customer_id, state, changes, now);
    }

    /// Does what the store does with a decision: schedules wake-ups and
    /// enqueues emails (once per idempotency key).
    fn absorb(
        &mut self,
        customer_id: &str,
        state: CustomerState,
        changes: Changes,
        now: DateTime<Utc>,
    ) {
        for &i in &changes.enrollments {
            if let Some(t) = state.enrollments[i].wake_at() {
                let job = Job::Wake {
                    customer_id: customer_id.to_string(),
                    key: state.enrollments[i].key.clone(),
                };
                self.push(t, job);
            }
        }
        for email in changes.emails {
            let key = email.job.idempotency_key.clone();
            if self.outbox.contains_key(&key) {
                continue;
            }
            let due = email.job.due_at;
            self.outbox.insert(key.clone(), email);
            self.push(
                due,
                Job::Send {
                    idempotency_key: key,
                },
            );
        }
        for n in changes.notes {
            self.notes.push((now, n));
        }
        self.customers.insert(customer_id.to_string(), state);
    }

    fn send(&mut self, key: &str, now: DateTime<Utc>) {
        let Some(pending) = self.outbox.get(key) else {
            return;
        };
        let job = pending.job.clone();
        let Some(profile) = self
            .customers
            .get(&job.customer_id)
            .and_then(|c| c.profile.as_ref())
        else {
            self.skip(&job, now, "unknown customer".into());
            self.outbox.remove(key);
            return;
        };
        let customer = profile.customer.clone();
        let to = worker::recipient(self.catalog, profile, false);
        let history = self
            .history
            .get(&job.customer_id)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        match policy::decide(&self.catalog.policies, job.category, now, &to, history) {
            Decision::SendAt(t) if t > now => self.push(
                t,
                Job::Send {
                    idempotency_key: key.to_string(),
                },
            ),
            Decision::SendAt(_) => {
                let mut context = pending.context.clone();
                context.customer = customer.clone();
                let data = data::build(
                    &context,
                    &self.catalog.policies,
                    Origin {
                        sequence: &job.sequence,
                        step: &job.step,
                    },
                );
                let parts = if self.keep_content {
                    Parts::All
                } else {
                    Parts::NoText
                };
                match self.templates.render_with(
                    &job.template,
                    customer.locale.as_deref(),
                    data,
                    parts,
                ) {
                    Ok(content) => {
                        self.history
                            .entry(job.customer_id.clone())
                            .or_default()
                            .push(Sent {
                                at: now,
                                category: job.category,
                                // No open tracking yet: unknown, as in `run`.
                                opened: None,
                            });
                        self.delivered.push(Delivered {
                            line: SentEmail {
                                at: now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                                customer_id: job.customer_id.clone(),
                                to: customer.email.to_string(),
                                sequence: job.sequence.clone(),
                                step: job.step.clone(),
                                template: job.template.clone(),
                                locale: content.locale.clone(),
                                subject: content.subject.clone(),
                                category: job.category.as_str().to_string(),
                            },
                            at: now,
                            idempotency_key: job.idempotency_key.clone(),
                            content: self.keep_content.then_some(content),
                        });
                    }
                    Err(e) => self.skip(&job, now, format!("render failed: {e}")),
                }
                self.outbox.remove(key);
            }
            Decision::Skip(reason) => {
                self.skip(&job, now, reason.to_string());
                self.outbox.remove(key);
            }
        }
    }

    fn skip(&mut self, job: &EmailJob, at: DateTime<Utc>, reason: String) {
        self.skipped.push(Skipped {
            at,
            customer_id: job.customer_id.clone(),
            sequence: job.sequence.clone(),
            step: job.step.clone(),
            reason,
        });
    }

    /// Emails sent, in time order (ties: customer id, sequence, step).
    pub fn sorted_delivered(&self) -> Vec<&Delivered> {
        let mut v: Vec<&Delivered> = self.delivered.iter().collect();
        v.sort_by(|a, b| {
            (a.at, &a.line.customer_id, &a.line.sequence, &a.line.step).cmp(&(
                b.at,
                &b.line.customer_id,
                &b.line.sequence,
                &b.line.step,
            ))
        });
        v
    }

    /// Enrollments still waiting when the clock stopped.
    pub fn pending(&self) -> usize {
        self.customers
            .values()
            .flat_map(|c| &c.enrollments)
            .filter(|e| e.is_active())
            .count()
    }
}

/// A line of an events file that could not be used.
#[derive(Debug, Clone, PartialEq)]
pub struct BadLine {
    pub line: usize,
    pub message: String,
}

/// Parses a JSON-lines file of events; blank lines and lines starting with
/// `#` or `//` are ignored.
pub fn parse_events(text: &str) -> (Vec<Event>, Vec<BadLine>) {
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') || l.starts_with("//") {
            continue;
        }
        match Event::parse(l) {
            Ok(e) => good.push(e),
            Err(e) => bad.push(BadLine {
                line: i + 1,
                message: e.message,
            }),
        }
    }
    (good, bad)
}
