//! The virtual-clock driver behind `simulate` and `demo`. It runs the
//! service's own code: events go through [`ingest::ingest_batch`], wake-ups
//! through [`schedule::tick`], emails through the outbox [`Worker`], over a
//! [`MemStore`] and a [`ManualClock`] that jumps from one due time to the
//! next. Only the clock, the store and the transport differ from `run`.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::clock::{Clock, ManualClock};
pub use crate::engine::customer::shard_of;
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

/// How far past the last event [`Until::Drained`] runs when sequences are
/// time-driven (date or schedule triggers, which never drain): a year and
/// a bit, so every anniversary and schedule shows once.
pub const CALENDAR_HORIZON_DAYS: i64 = 400;

/// How many days past the last event [`Until::Drained`] runs for `catalog`.
pub fn horizon_days(catalog: &Catalog) -> i64 {
    if catalog.timed.is_empty() && catalog.scheduled.is_empty() {
        MAX_HORIZON_DAYS
    } else {
        CALENDAR_HORIZON_DAYS
    }
}

/// Where a simulation's results go, as they happen. Emails arrive in the
/// documented order: time, then customer id, sequence, step.
pub trait Sink {
    fn sent(&mut self, email: Delivered);
    fn skipped(&mut self, skip: Skipped);
    fn note(&mut self, at: DateTime<Utc>, note: Note);
}

/// What a simulation counted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// Events applied (duplicates not counted).
    pub events: usize,
    pub duplicates: usize,
    /// Enrollments still waiting when the clock stopped.
    pub pending: usize,
}

/// What a simulation did, collected (for `demo` and tests).
#[derive(Debug, Default)]
pub struct Simulation {
    pub delivered: Vec<Delivered>,
    pub skipped: Vec<Skipped>,
    pub notes: Vec<(DateTime<Utc>, Note)>,
    pub duplicates: usize,
    pub events: usize,
    pub pending: usize,
}

impl Sink for Simulation {
    fn sent(&mut self, email: Delivered) {
        self.delivered.push(email);
    }

    fn skipped(&mut self, skip: Skipped) {
        self.skipped.push(skip);
    }

    fn note(&mut self, at: DateTime<Utc>, note: Note) {
        self.notes.push((at, note));
    }
}

impl Simulation {
    /// Emails sent, in time order (ties: customer id, sequence, step).
    pub fn sorted_delivered(&self) -> Vec<&Delivered> {
        self.delivered.iter().collect()
    }

    fn add(&mut self, t: Totals) {
        self.events = t.events;
        self.duplicates = t.duplicates;
        self.pending = t.pending;
    }
}

/// How the sender builds what it sends.
pub enum Output<'a> {
    /// Checks that each email renders and records its subject; builds no
    /// message (`simulate`).
    Check,
    /// Writes each email as a whole message to a folder through the `.eml`
    /// transport that `run` uses without SMTP (`demo`).
    Eml(&'a std::path::Path),
}

/// Runs `events` (sorted here by `occurred_at`, file order among equals) and
/// then the clock until `until`, collecting everything.
pub fn simulate(
    catalog: &Arc<Catalog>,
    templates: &Arc<Templates>,
    mut events: Vec<Event>,
    until: Until,
) -> Simulation {
    events.sort_by_key(|e| e.occurred_at);
    let mut sim = Simulation::default();
    let totals = run(catalog, templates, events, until, Output::Check, &mut sim);
    sim.add(totals);
    sim
}

/// As [`simulate`] until nothing is pending, writing every email out.
pub fn demo(
    catalog: &Arc<Catalog>,
    templates: &Arc<Templates>,
    mut events: Vec<Event>,
    outbox: &std::path::Path,
) -> Simulation {
    events.sort_by_key(|e| e.occurred_at);
    let mut sim = Simulation::default();
    let totals = run(
        catalog,
        templates,
        events,
        Until::Drained,
        Output::Eml(outbox),
        &mut sim,
    );
    sim.add(totals);
    sim
}

/// Runs `events`, which must come in `occurred_at` order, and then the clock
/// until `until`, handing results to `sink` as they happen.
pub fn run(
    catalog: &Arc<Catalog>,
    templates: &Arc<Templates>,
    events: impl IntoIterator<Item = Event>,
    until: Until,
    output: Output<'_>,
    sink: &mut dyn Sink,
) -> Totals {
    match output {
        Output::Check => drive(
            catalog,
            templates,
            events,
            until,
            Compose::Check,
            Recorder::<EmlDir>::new(None),
            sink,
        ),
        Output::Eml(dir) => {
            let eml = EmlDir {
                dir: dir.to_path_buf(),
            };
            drive(
                catalog,
                templates,
                events,
                until,
                Compose::Message,
                Recorder::new(Some(eml)),
                sink,
            )
        }
    }
}

/// How many shards `aftercare simulate` cuts customers into. A constant, not
/// the number of cores: which of two emails due at one instant for one
/// customer goes first can depend on how many wake-ups the scheduler claims
/// in one batch, so the shard count is part of what makes the output the
/// same on every machine.
pub const SHARDS: usize = 2;

/// As [`run`] with [`Output::Check`], over customers cut into shards (see
/// [`shard_of`]), each shard on its own thread with its own store, as
/// instances of the service would split them. Customers never affect each
/// other, so the result is the same as one run; `sink` gets it in the same
/// order.
pub fn run_sharded<I>(
    catalog: &Arc<Catalog>,
    templates: &Arc<Templates>,
    shards: Vec<I>,
    until: Until,
    sink: &mut dyn Sink,
) -> Totals
where
    I: Iterator<Item = Event> + Send,
{
    std::thread::scope(|scope| {
        let mut streams = Vec::with_capacity(shards.len());
        let mut threads = Vec::with_capacity(shards.len());
        for events in shards {
            let (tx, rx) = std::sync::mpsc::sync_channel(BATCHES_AHEAD);
            streams.push(Stream {
                rx,
                batch: Vec::new().into_iter(),
                head: None,
            });
            threads.push(scope.spawn(move || {
                let mut sink = Forward {
                    tx,
                    batch: Vec::with_capacity(BATCH),
                };
                let totals = run(catalog, templates, events, until, Output::Check, &mut sink);
                sink.send();
                totals
            }));
        }
        merge(&mut streams, sink);
        let mut totals = Totals::default();
        for t in threads {
            let t = t.join().expect("a simulation shard panicked");
            totals.events += t.events;
            totals.duplicates += t.duplicates;
            totals.pending += t.pending;
        }
        totals
    })
}

/// What a shard reports, in its own time order.
enum Report {
    Note(DateTime<Utc>, Note),
    Skipped(Skipped),
    Sent(Delivered),
}

impl Report {
    /// The merge order: time; at one instant notes and skips before the
    /// emails (a shard sends its emails of an instant once it is over); the
    /// emails by customer, sequence and step.
    fn key(&self) -> (DateTime<Utc>, u8, &str, &str, &str) {
        match self {
            Report::Note(at, _) => (*at, 0, "", "", ""),
            Report::Skipped(s) => (s.at, 0, "", "", ""),
            Report::Sent(d) => (d.at, 1, &d.line.customer_id, &d.line.sequence, &d.line.step),
        }
    }
}

/// Reports go to the merge in batches: one hand-over per report woke the
/// merging thread hundreds of thousands of times.
const BATCH: usize = 1024;

/// How many batches a shard may run ahead of the merge.
const BATCHES_AHEAD: usize = 4;

struct Forward {
    tx: std::sync::mpsc::SyncSender<Vec<Report>>,
    batch: Vec<Report>,
}

impl Forward {
    fn push(&mut self, r: Report) {
        self.batch.push(r);
        if self.batch.len() >= BATCH {
            self.send();
        }
    }

    fn send(&mut self) {
        if !self.batch.is_empty() {
            let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
            let _ = self.tx.send(batch);
        }
    }
}

impl Sink for Forward {
    fn sent(&mut self, email: Delivered) {
        self.push(Report::Sent(email));
    }

    fn skipped(&mut self, skip: Skipped) {
        self.push(Report::Skipped(skip));
    }

    fn note(&mut self, at: DateTime<Utc>, note: Note) {
        self.push(Report::Note(at, note));
    }
}

struct Stream {
    rx: std::sync::mpsc::Receiver<Vec<Report>>,
    /// What is left of the last batch received.
    batch: std::vec::IntoIter<Report>,
    head: Option<Report>,
}

impl Stream {
    /// The next report, waiting for the shard's next batch if need be.
    fn next(&mut self) -> Option<Report> {
        loop {
            if let Some(r) = self.batch.next() {
                return Some(r);
            }
            self.batch = self.rx.recv().ok()?.into_iter();
        }
    }
}

/// Hands the shards' reports to `sink` in one order: each shard's is sorted,
/// so the least head goes next (ties: the lower shard).
fn merge(streams: &mut [Stream], sink: &mut dyn Sink) {
    loop {
        for s in streams.iter_mut() {
            if s.head.is_none() {
                s.head = s.next();
            }
        }
        let next = streams
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.head.as_ref().map(|h| (h.key(), i)))
            .min()
            .map(|(_, i)| i);
        let Some(i) = next else { return };
        match streams[i].head.take().expect("chosen by its head") {
            Report::Note(at, n) => sink.note(at, n),
            Report::Skipped(s) => sink.skipped(s),
            Report::Sent(d) => sink.sent(d),
        }
    }
}

fn drive<T: Transport>(
    catalog: &Arc<Catalog>,
    templates: &Arc<Templates>,
    events: impl IntoIterator<Item = Event>,
    until: Until,
    compose: Compose,
    recorder: Recorder<T>,
    sink: &mut dyn Sink,
) -> Totals {
    let clock = ManualClock::new(DateTime::<Utc>::UNIX_EPOCH);
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
            instance: crate::instance::Instance::solo(),
            max_email_bytes: worker::DEFAULT_MAX_EMAIL_BYTES,
            concurrency: 1,
            bounces: None,
            paused: Default::default(),
            dkim: None,
            // `demo`'s emails link to the default address with a secret of
            // their own: nobody follows them.
            links: Arc::new(
                crate::send::links::Links::ephemeral(crate::config::DEFAULT_PUBLIC_URL)
                    .expect("the default public URL is valid"),
            ),
        },
        store,
        clock,
        recorder,
        sink,
        same_time: Vec::new(),
        totals: Totals::default(),
        sweep_at: None,
    };
    // Time is on: the worker bounds each transport call by its deadline.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime");
    rt.block_on(driver.run(events, until))
        .expect("the memory store does not fail");
    driver.flush();
    driver.totals
}

struct Driver<'a, T> {
    catalog: &'a Arc<Catalog>,
    store: MemStore,
    clock: ManualClock,
    worker: Worker<MemStore, Recorder<T>>,
    recorder: Recorder<T>,
    sink: &'a mut dyn Sink,
    /// Emails sent at the clock's current time, sorted before they go out.
    same_time: Vec<Delivered>,
    totals: Totals,
    /// When the schedules' next sweep is due, once looked up (`None`: not
    /// yet, or a sweep ran since).
    sweep_at: Option<Option<DateTime<Utc>>>,
}

impl<T: Transport> Driver<'_, T> {
    async fn run(
        &mut self,
        events: impl IntoIterator<Item = Event>,
        until: Until,
    ) -> crate::store::Result<()> {
        let mut last = None;
        for event in events {
            if let Until::At(horizon) = until
                && event.occurred_at > horizon
            {
                break;
            }
            // What fell due before (or at) the event happens first.
            self.run_until(event.occurred_at).await?;
            let now = event.occurred_at.max(self.clock.now());
            if now > self.clock.now() {
                self.flush();
            }
            self.clock.set(now);
            if last.is_none() && !self.catalog.scheduled.is_empty() {
                // The first sweep records the schedules' past firings as
                // done; later firings are due times `run_until` meets.
                self.sweep(now).await?;
            }
            last = Some(now);
            let r = ingest::ingest_batch(
                &self.store,
                self.catalog,
                std::slice::from_ref(&event),
                "simulate",
                now,
            )
            .await?;
            self.totals.events += r.applied;
            self.totals.duplicates += r.duplicates;
            for n in r.notes {
                self.sink.note(now, n);
            }
        }
        let horizon = match until {
            Until::At(t) => t,
            Until::Drained => {
                last.unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
                    + chrono::Duration::days(horizon_days(self.catalog))
            }
        };
        self.run_until(horizon).await?;
        self.totals.pending = self.store.active_enrollments().await? as usize;
        Ok(())
    }

    /// Moves the clock from one due time to the next up to `until`, waking
    /// enrollments and sending emails as the service would.
    async fn run_until(&mut self, until: DateTime<Utc>) -> crate::store::Result<()> {
        loop {
            let sweep_at = match self.sweep_at {
                Some(at) => at,
                None => {
                    let at = schedule::sweep::next_sweep(&self.store, self.catalog).await?;
                    self.sweep_at = Some(at);
                    at
                }
            };
            let next = [
                self.store.next_wake().await?,
                self.store.next_outbox().await?,
                sweep_at,
            ]
            .into_iter()
            .flatten()
            .min();
            let Some(next) = next.filter(|t| *t <= until) else {
                return Ok(());
            };
            let now = next.max(self.clock.now());
            if now > self.clock.now() {
                self.flush();
            }
            self.clock.set(now);
            if sweep_at.is_some_and(|at| at <= now) {
                self.sweep(now).await?;
            }
            loop {
                let woken = schedule::tick(&self.store, self.catalog, now).await?;
                for n in woken.notes {
                    self.sink.note(now, n);
                }
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
                    self.sink.skipped(Skipped {
                        at: h.at,
                        customer_id: h.row.customer_id,
                        sequence: h.row.sequence,
                        step: h.row.step,
                        reason,
                    });
                }
            }
            self.same_time
                .extend(self.recorder.take().into_iter().map(delivered));
        }
    }

    /// Runs the schedules' sweeps due at `now`.
    async fn sweep(&mut self, now: DateTime<Utc>) -> crate::store::Result<()> {
        let swept = schedule::sweep::sweep(&self.store, self.catalog, now).await?;
        // Only a sweep moves the next one.
        self.sweep_at = None;
        for n in swept.notes {
            self.sink.note(now, n);
        }
        Ok(())
    }

    /// Hands the emails of the time that just ended to the sink, in order.
    fn flush(&mut self) {
        let mut batch = std::mem::take(&mut self.same_time);
        batch.sort_by(|a, b| {
            (a.at, &a.line.customer_id, &a.line.sequence, &a.line.step).cmp(&(
                b.at,
                &b.line.customer_id,
                &b.line.sequence,
                &b.line.step,
            ))
        });
        for d in batch {
            self.sink.sent(d);
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
