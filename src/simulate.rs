//! The virtual-clock driver behind `simulate` and `demo`. It runs the
//! service's own code: events go through [`ingest::ingest_batch`], wake-ups
//! through [`schedule::tick`], emails through the outbox [`Worker`], over a
//! [`MemStore`] and a [`ManualClock`] that jumps from one due time to the
//! next. Only the clock, the store and the transport differ from `run`.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::clock::{Clock, ManualClock};
use crate::engine::dispatch::Note;
use crate::engine::outbox::SendPlan;
use crate::event::Event;
use crate::send::transport::{About, EmlDir, Recorder, Transport};
use crate::send::worker::{self, Compose, Done, Worker};
use crate::sequence::model::Catalog;
use crate::store::{MemStore, Store};
use crate::template::Templates;
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

/// A sent email.
#[derive(Debug, Clone)]
pub struct Delivered {
    pub line: SentEmail,
    pub at: DateTime<Utc>,
    pub idempotency_key: String,
}

/// An email the sender did not send, with why.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    pub at: DateTime<Utc>,
    pub customer_id: String,
    pub sequence: String,
    pub step: String,
    pub reason: String,
}

/// How far the clock may run.
#[derive(Debug, Clone, Copy)]
pub enum Until {
    /// Until nothing is pending (bounded by [`MAX_HORIZON_DAYS`] after the last event).
    Drained,
    At(DateTime<Utc>),
}

pub const MAX_HORIZON_DAYS: i64 = 3650;

/// What a simulation did.
#[derive(Debug, Default)]
pub struct Simulation {
    pub delivered: Vec<Delivered>,
    pub skipped: Vec<Skipped>,
    pub notes: Vec<(DateTime<Utc>, Note)>,
    pub duplicates: usize,
    pub events: usize,
    /// Enrollments still waiting when the clock stopped.
    pub pending: usize,
}

impl Simulation {
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
}

/// Runs `events` (in `occurred_at` order, file order among equals) and then
/// the clock until `until`, checking that each email renders (subject and
/// body) without building messages.
pub fn simulate(
    catalog: &Arc<Catalog>,
    templates: &Arc<Templates>,
    events: Vec<Event>,
    until: Until,
) -> Simulation {
    let recorder = Recorder::<EmlDir>::new(None);
    drive(catalog, templates, events, until, Compose::Check, recorder)
}

/// As [`simulate`], and writes each email as a whole message to `outbox`
/// through the `.eml` transport that `run` uses without SMTP.
pub fn demo(
    catalog: &Arc<Catalog>,
    templates: &Arc<Templates>,
    events: Vec<Event>,
    outbox: &std::path::Path,
) -> Simulation {
    let recorder = Recorder::new(Some(EmlDir {
        dir: outbox.to_path_buf(),
    }));
    drive(
        catalog,
        templates,
        events,
        Until::Drained,
        Compose::Message,
        recorder,
    )
}

fn drive<T: Transport>(
    catalog: &Arc<Catalog>,
    templates: &Arc<Templates>,
    mut events: Vec<Event>,
    until: Until,
    compose: Compose,
    recorder: Recorder<T>,
) -> Simulation {
    events.sort_by_key(|e| e.occurred_at);
    let horizon = match until {
        Until::At(t) => t,
        Until::Drained => {
            let last = events
                .last()
                .map(|e| e.occurred_at)
                .unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
            last + chrono::Duration::days(MAX_HORIZON_DAYS)
        }
    };
    let start = events.first().map(|e| e.occurred_at).unwrap_or(horizon);
    let clock = ManualClock::new(start);
    let store = MemStore::lean();
    let mut driver = Driver {
        catalog,
        worker: Worker {
            store: store.clone(),
            catalog: catalog.clone(),
            templates: templates.clone(),
            transport: recorder.clone(),
            clock: Arc::new(clock.clone()),
            retry: worker::DEFAULT_RETRY.to_vec(),
            compose,
        },
        store,
        clock,
        recorder,
        out: Simulation::default(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime");
    rt.block_on(driver.run(&events, horizon))
        .expect("the memory store does not fail");
    driver.out
}

struct Driver<'a, T> {
    catalog: &'a Arc<Catalog>,
    store: MemStore,
    clock: ManualClock,
    worker: Worker<MemStore, Recorder<T>>,
    recorder: Recorder<T>,
    out: Simulation,
}

impl<T: Transport> Driver<'_, T> {
    async fn run(&mut self, events: &[Event], horizon: DateTime<Utc>) -> crate::store::Result<()> {
        for event in events {
            if event.occurred_at > horizon {
                break;
            }
            // What fell due before (or at) the event happens first.
            self.run_until(event.occurred_at).await?;
            let now = event.occurred_at.max(self.clock.now());
            self.clock.set(now);
            let r = ingest::ingest_batch(
                &self.store,
                self.catalog,
                std::slice::from_ref(event),
                "simulate",
                now,
            )
            .await?;
            self.out.events += r.applied;
            self.out.duplicates += r.duplicates;
            self.out.notes.extend(r.notes.into_iter().map(|n| (now, n)));
        }
        self.run_until(horizon).await?;
        self.out.pending = self.store.active_enrollments().await? as usize;
        Ok(())
    }

    /// Moves the clock from one due time to the next up to `until`, waking
    /// enrollments and sending emails as the service would.
    async fn run_until(&mut self, until: DateTime<Utc>) -> crate::store::Result<()> {
        loop {
            let next = [
                self.store.next_wake().await?,
                self.store.next_outbox().await?,
            ]
            .into_iter()
            .flatten()
            .min();
            let Some(next) = next.filter(|t| *t <= until) else {
                return Ok(());
            };
            let now = next.max(self.clock.now());
            self.clock.set(now);
            loop {
                let woken = schedule::tick(&self.store, self.catalog, now).await?;
                self.out
                    .notes
                    .extend(woken.notes.into_iter().map(|n| (now, n)));
                if woken.ran == 0 {
                    break;
                }
            }
            loop {
                let handled = self.worker.tick().await?;
                if handled.is_empty() {
                    break;
                }
                for h in handled {
                    let reason = match h.done {
                        Done::Planned(SendPlan::Skip { reason }) => reason,
                        Done::Failed(error) => error,
                        _ => continue,
                    };
                    self.out.skipped.push(Skipped {
                        at: h.at,
                        customer_id: h.row.customer_id,
                        sequence: h.row.sequence,
                        step: h.row.step,
                        reason,
                    });
                }
            }
            for about in self.recorder.take() {
                self.out.delivered.push(delivered(about));
            }
        }
    }
}

fn delivered(a: About) -> Delivered {
    Delivered {
        line: SentEmail {
            at: a.date.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            customer_id: a.customer_id,
            to: a.to,
            sequence: a.sequence,
            step: a.step,
            template: a.template,
            locale: a.locale,
            subject: a.subject,
            category: a.category.as_str().to_string(),
        },
        at: a.date,
        idempotency_key: a.idempotency_key,
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
