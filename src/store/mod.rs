//! Durable state: one [`Store`] trait, implemented for PostgreSQL
//! (production, any number of instances), SQLite (the embedded default) and
//! memory (`simulate`, `demo` and tests on a virtual clock).
//!
//! The store is plumbing: it records, locks, loads and writes. It decides
//! nothing and calls nobody back. A caller (`ingest`, `schedule`, `send`)
//! opens a [`Tx`], loads the customers it needs under their locks, asks the
//! engine what changes, and writes the engine's answer in the same
//! transaction, so that every event, enrollment change and outbox row commits
//! together or not at all.

mod journal_rows;
pub mod memory;
pub mod postgres;
mod sql;
pub mod sqlite;
mod state_doc;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::engine::customer::{
    Changes, CustomerState, LOOK_BACK, LOOK_BACK_EVENTS, NewEmail, Recorded, Timer,
};
use crate::engine::dispatch::Note;
use crate::engine::facts::FactRange;
use crate::engine::journal::Entry;
use crate::engine::outbox::{OutboxStatus, Outcome, Queued};
use crate::engine::policy::Sent;
use crate::engine::profile::Profile;
use crate::engine::state::Enrollment;
use crate::event::Event;
use crate::sequence::model::{Catalog, Category};

pub use memory::MemStore;
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("not found: {0}")]
    NotFound(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("stored JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A stored value the program does not know (a status, a category).
    #[error("stored data: {0}")]
    Corrupt(String),
    /// The database answers but cannot serve yet (a migration is missing).
    #[error("not ready: {0}")]
    NotReady(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// Maps and sets on the hot paths (the customers of a batch, what a batch
/// writes, the memory store's tables), hashed with foldhash: SipHash, the
/// standard one, took ~2 % of `simulate`'s time in the memory store's tables
/// (docs/BENCHMARKS.md, section 14) and 0.6 % of its instructions in the
/// others (section 16). Seeded at random like the standard one, so crafted
/// ids cannot pick collisions, and no result may depend on their order.
pub type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
pub type FastSet<K> = HashSet<K, foldhash::fast::RandomState>;

/// The customers of a batch, loaded and locked, by id.
pub type States = FastMap<String, CustomerState>;

impl Error {
    /// Whether the database could not be reached, was busy or out of
    /// resources: the same work is worth trying again later. Any other error
    /// is about what was written, and an ingest batch looks for the event
    /// at fault (`ingest::ingest_batch`).
    pub fn is_unavailable(&self) -> bool {
        use sqlx::Error as E;
        let Error::Database(e) = self else {
            return matches!(self, Error::Migration(_));
        };
        match e {
            E::Io(_)
            | E::Tls(_)
            | E::Protocol(_)
            | E::PoolTimedOut
            | E::PoolClosed
            | E::WorkerCrashed
            | E::BeginFailed
            | E::Configuration(_) => true,
            E::Database(db) => {
                if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                    // SQLSTATE classes: 08 connection, 40 rollback (serialization,
                    // deadlock), 53 insufficient resources, 57 operator
                    // intervention (shutdown, cancel, timeouts), 58 system error;
                    // 25006 a read-only transaction, 55P03 a lock not available.
                    let code = pg.code();
                    matches!(code.get(..2), Some("08" | "40" | "53" | "57" | "58"))
                        || matches!(code, "25006" | "55P03")
                } else if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                    // Primary result codes: BUSY, LOCKED, NOMEM, READONLY,
                    // INTERRUPT, IOERR, FULL, CANTOPEN, PROTOCOL.
                    let code = db.code().and_then(|c| c.parse::<i32>().ok()).unwrap_or(0);
                    matches!(code & 0xff, 5 | 6 | 7 | 8 | 9 | 10 | 13 | 14 | 15)
                } else {
                    false
                }
            }
            _ => false,
        }
    }
}

/// The outcome of one ingest transaction.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct IngestReport {
    pub applied: usize,
    pub duplicates: usize,
    /// Outbox rows written (an idempotency key already there is not counted).
    pub emails: usize,
    /// What the operator should know (exits, failed conditions), also logged.
    #[serde(skip)]
    pub notes: Vec<Note>,
    /// Events the store would not take even alone, by their index in the
    /// batch given to `ingest::ingest_batch`, with the store's message. The
    /// caller dead-letters them.
    #[serde(skip)]
    pub refused: Vec<Refused>,
}

/// An event the store refused (see [`IngestReport::refused`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub index: usize,
    pub reason: String,
}

impl IngestReport {
    pub fn add(&mut self, other: IngestReport) {
        self.applied += other.applied;
        self.duplicates += other.duplicates;
        self.emails += other.emails;
        self.notes.extend(other.notes);
        self.refused.extend(other.refused);
    }
}

/// Which of a customer's recorded events a load brings along
/// ([`CustomerState::recent`]): those of `kinds` that occurred at or after
/// `since`, the latest [`LOOK_BACK_EVENTS`] of each customer, except the
/// events in `except` (the batch being applied, which the dispatcher adds in
/// order as it applies them).
#[derive(Debug, Clone, Copy)]
pub struct LookBack<'a> {
    pub kinds: &'a BTreeSet<String>,
    pub since: DateTime<Utc>,
    pub except: &'a HashSet<String>,
    /// Whether to load the customers' timers (some sequence keeps them).
    pub timers: bool,
}

impl<'a> LookBack<'a> {
    /// The look-back of `catalog` at `now`: [`LOOK_BACK`] of its looked-back
    /// types.
    pub fn of(catalog: &'a Catalog, now: DateTime<Utc>) -> Self {
        Self {
            kinds: &catalog.looked_back,
            since: now.checked_sub_signed(LOOK_BACK).unwrap_or(now),
            except: &NO_IDS,
            timers: !catalog.timed.is_empty(),
        }
    }

    /// Loads no events.
    pub fn none() -> LookBack<'static> {
        LookBack {
            kinds: &NO_KINDS,
            since: DateTime::<Utc>::MIN_UTC,
            except: &NO_IDS,
            timers: false,
        }
    }

    /// Keeps the events of one load, newest last, dropping those in `except`
    /// and all but the latest [`LOOK_BACK_EVENTS`].
    pub(crate) fn keep(&self, mut events: Vec<Recorded>) -> Vec<Recorded> {
        events.retain(|e| !self.except.contains(&e.id));
        events.sort_by(|a, b| (a.occurred_at, &a.id).cmp(&(b.occurred_at, &b.id)));
        let cut = events.len().saturating_sub(LOOK_BACK_EVENTS);
        events.drain(..cut);
        events
    }
}

/// Widens the look-back of the customers in `states` whose history is
/// still to be caught up (rare: a history import via Kafka or the webhook),
/// to 7 days before the earliest last event of those enrollments: their
/// catch-up wakes them at those earlier times. `except` as in [`LookBack`].
pub async fn widen_for_history<T: Tx>(
    tx: &mut T,
    catalog: &Catalog,
    states: &mut States,
    except: &HashSet<String>,
) -> Result<()> {
    let mut since: Option<DateTime<Utc>> = None;
    let mut ids = Vec::new();
    for (id, st) in states.iter() {
        let marks = st
            .enrollments
            .iter()
            .filter(|e| e.is_active() && e.history.is_some())
            .map(|e| e.mark().at);
        if let Some(at) = marks.min() {
            since = Some(since.map_or(at, |s| s.min(at)));
            ids.push(id.clone());
        }
    }
    let Some(since) = since else {
        return Ok(());
    };
    ids.sort();
    let mut look_back = LookBack::of(catalog, since);
    look_back.except = except;
    tx.reload_recent(states, &ids, &look_back).await
}

static NO_IDS: std::sync::LazyLock<HashSet<String>> = std::sync::LazyLock::new(HashSet::new);
static NO_KINDS: BTreeSet<String> = BTreeSet::new();

/// An enrollment claimed by the scheduler.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DueClaim {
    pub customer_id: String,
    pub key: String,
}

/// Due enrollments taken by a transaction, with their customers locked and
/// loaded (as [`Tx::lock_customers`] loads them).
#[derive(Debug, Default)]
pub struct Due {
    /// Oldest `wake_at` first; only enrollments whose customer is in
    /// `customers`.
    pub claims: Vec<DueClaim>,
    /// Due timers (customer, sequence), earliest first; only those whose
    /// customer is in `customers`.
    pub timers: Vec<(String, String)>,
    pub customers: States,
}

/// Who claims outbox rows, and when a claimer counts as gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimer {
    /// The claiming instance (`instances.id`).
    pub instance: String,
    /// A row claimed by an instance whose last heartbeat is older than this
    /// is taken over at once, whatever its lease.
    pub stale_after: chrono::Duration,
}

/// A fenced change of a claimed outbox row: it applies only while the row
/// still carries the claim count the worker claimed it at.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition<'a> {
    /// Decided to send: held for `lease_until` while the transport works.
    /// `tracked`: the message carries an open pixel (so no recorded open
    /// means not opened, for the sunset rule).
    Sending {
        lease_until: DateTime<Utc>,
        tracked: bool,
    },
    Defer {
        until: DateTime<Utc>,
    },
    Skip {
        reason: &'a str,
    },
    /// Only from `Sending`.
    Sent {
        message_id: &'a str,
    },
    /// Only from `Sending`: back to `pending` at `at`. `counted` moves the
    /// retry schedule on (a transient failure); an unavailable server does
    /// not.
    Retry {
        at: DateTime<Utc>,
        error: &'a str,
        counted: bool,
    },
    /// Only from `Sending`.
    Failed {
        error: &'a str,
    },
}

/// One row of the outbox, for operators and tests.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutboxView {
    pub id: i64,
    pub idempotency_key: String,
    pub customer_id: String,
    pub sequence: String,
    pub step: String,
    pub template: String,
    pub category: Category,
    pub status: OutboxStatus,
    pub attempts: i64,
    pub not_before: DateTime<Utc>,
    /// When it first became due (see [`Queued::due_at`]).
    pub due_at: DateTime<Utc>,
    pub message_id: Option<String>,
    pub last_error: Option<String>,
    pub sent_at: Option<DateTime<Utc>>,
}

/// One entry of the delivery log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeliveryView {
    pub outbox_id: i64,
    pub idempotency_key: String,
    pub attempt: i64,
    pub at: DateTime<Utc>,
    pub outcome: Outcome,
    pub detail: String,
}

/// Which entries of the delivery log to read, newest first, a page at a
/// time ([`Store::delivery_log`]). Every field set must match.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeliveryFilter {
    /// At or after.
    pub since: Option<DateTime<Utc>>,
    /// Before.
    pub until: Option<DateTime<Utc>>,
    pub sequence: Option<String>,
    pub template: Option<String>,
    pub outcome: Option<Outcome>,
    pub customer_id: Option<String>,
    /// The customer's address, without regard to ASCII case.
    pub address: Option<String>,
    /// The cursor: entries with an id below this (the last id of the page
    /// before).
    pub before: Option<i64>,
    /// Entries in a page (the store takes at most [`DeliveryFilter::MAX_LIMIT`]).
    pub limit: i64,
}

impl DeliveryFilter {
    pub const MAX_LIMIT: i64 = 1000;

    /// The page size asked for, within 1 to [`Self::MAX_LIMIT`].
    pub fn page_size(&self) -> i64 {
        self.limit.clamp(1, Self::MAX_LIMIT)
    }

    /// Whether `e` is one of the entries asked for (the memory store's
    /// filter; the databases say the same in SQL).
    pub fn admits(&self, e: &DeliveryEntry) -> bool {
        self.since.is_none_or(|t| e.at >= t)
            && self.until.is_none_or(|t| e.at < t)
            && self.sequence.as_ref().is_none_or(|s| *s == e.sequence)
            && self.template.as_ref().is_none_or(|t| *t == e.template)
            && self.outcome.is_none_or(|o| o == e.outcome)
            && self
                .customer_id
                .as_ref()
                .is_none_or(|c| *c == e.customer_id)
            && self
                .address
                .as_ref()
                .is_none_or(|a| address_key(a) == address_key(&e.address))
            && self.before.is_none_or(|b| e.id < b)
    }
}

/// One entry of the delivery log with the email it concerns: what an
/// operator searches ([`Store::delivery_log`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeliveryEntry {
    /// Its place in the log: later entries have larger ids.
    pub id: i64,
    pub at: DateTime<Utc>,
    pub outbox_id: i64,
    pub idempotency_key: String,
    pub customer_id: String,
    /// The customer's address as stored now.
    pub address: String,
    pub sequence: String,
    pub step: String,
    pub template: String,
    pub attempt: i64,
    pub outcome: Outcome,
    /// The server's reply, the policy's reason or the error.
    pub detail: String,
    pub message_id: Option<String>,
}

/// A customer as the store keeps them, for operators.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredCustomer {
    pub id: String,
    /// The address as the customer has it now.
    pub email: String,
    /// `None` until an event about them has been applied.
    pub profile: Option<Profile>,
    pub updated_at: DateTime<Utc>,
}

/// One page of [`Store::pick_customers`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Picked {
    /// How many customers the page read.
    pub read: usize,
    /// The last id read, where the next page starts; `None` when no
    /// customer came after `after`.
    pub last: Option<String>,
    /// The ids picked, in id order.
    pub ids: Vec<String>,
}

/// One entry of the suppression list: no mail goes to the address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct SuppressionEntry {
    /// As the list spells it ([`address_key`]), or a hash (`sha256:<hex>`)
    /// for an address kept only as one.
    pub email: String,
    pub reason: String,
    pub created_at: DateTime<Utc>,
}

/// Which entries of the suppression list to read, by address, a page at a
/// time ([`Store::suppressions`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SuppressionFilter {
    /// Only this address's entry (spelled as [`address_key`] spells it).
    pub email: Option<String>,
    /// The cursor: entries whose address sorts after this one (the last of
    /// the page before).
    pub after: Option<String>,
    /// Entries in a page (at most [`DeliveryFilter::MAX_LIMIT`]).
    pub limit: i64,
}

impl SuppressionFilter {
    pub fn page_size(&self) -> i64 {
        self.limit.clamp(1, DeliveryFilter::MAX_LIMIT)
    }
}

/// What an operator did to the suppression list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SuppressionAction {
    Added,
    Removed,
}

impl SuppressionAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "added",
            Self::Removed => "removed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "added" => Some(Self::Added),
            "removed" => Some(Self::Removed),
            _ => None,
        }
    }
}

/// One change an operator made to the suppression list, with why and when
/// (`suppression_log`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SuppressionChange {
    pub id: i64,
    pub email: String,
    pub action: SuppressionAction,
    /// The operator's.
    pub reason: String,
    /// For a removal: the reason the entry had.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_reason: Option<String>,
    pub at: DateTime<Utc>,
}

/// How many of a sequence's enrollments stand at a step with a status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepCount {
    /// `None`: an enrollment that never reached a step.
    pub step: Option<String>,
    pub status: crate::engine::state::Status,
    pub count: i64,
}

/// Step counts in the order every store gives them: by step (none first),
/// then status.
pub(crate) fn sort_step_counts(counts: &mut [StepCount]) {
    counts.sort_by(|a, b| (&a.step, a.status as u8).cmp(&(&b.step, b.status as u8)));
}

/// A span of time, `since` included, `until` excluded: what a report reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
}

impl Span {
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        self.since <= t && t < self.until
    }
}

/// The width of a time series' buckets, in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    Hour,
    Day,
}

impl Bucket {
    pub fn width(self) -> chrono::TimeDelta {
        match self {
            Bucket::Hour => chrono::TimeDelta::hours(1),
            Bucket::Day => chrono::TimeDelta::days(1),
        }
    }

    /// The start of the bucket `t` falls in.
    pub fn floor(self, t: DateTime<Utc>) -> DateTime<Utc> {
        use chrono::DurationRound;
        t.duration_trunc(self.width()).unwrap_or(t)
    }

    /// A bucket's start from its text as the databases write it
    /// (`2026-03-10T12` for an hour, `2026-03-10` for a day).
    pub(crate) fn parse_start(self, text: &str) -> Result<DateTime<Utc>> {
        let full = match self {
            Bucket::Hour => format!("{text}:00:00"),
            Bucket::Day => format!("{text}T00:00:00"),
        };
        chrono::NaiveDateTime::parse_from_str(&full, "%Y-%m-%dT%H:%M:%S")
            .map(|t| t.and_utc())
            .map_err(|e| Error::Corrupt(format!("time bucket {text:?}: {e}")))
    }
}

/// How many of `key` fell in the bucket that starts at `at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SeriesPoint<K> {
    pub at: DateTime<Utc>,
    pub key: K,
    pub count: i64,
}

/// What became of the emails (outbox rows) one step of a sequence made in
/// a span ([`Store::step_counts`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct StepCounts {
    pub sequence: String,
    pub step: String,
    pub template: String,
    /// Emails made.
    pub entered: i64,
    /// Of those, sent.
    pub emailed: i64,
    /// Of those, opened or clicked by a person (at any time).
    pub opened: i64,
    /// Of those, clicked by a person.
    pub clicked: i64,
}

/// An open or a click of an email, with the email's sequence and step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Touch {
    pub customer_id: String,
    pub at: DateTime<Utc>,
    pub kind: ActivityKind,
    /// Made by a machine: not a touch for attribution.
    pub machine: bool,
    pub sequence: String,
    pub step: String,
    pub template: String,
}

/// An `order.placed` event, as reports read it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlacedOrder {
    pub event_id: String,
    pub customer_id: String,
    pub order_id: String,
    /// The event's `occurred_at`.
    pub at: DateTime<Utc>,
    pub total: Option<rust_decimal::Decimal>,
    pub currency: Option<String>,
    /// The customer had placed an order before this one.
    pub repeat: bool,
}

/// The customers who ordered in a span ([`Store::period_customers`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PeriodCustomers {
    /// Customers with an order in the span.
    pub ordered: i64,
    /// Of those, customers whose first order ever is in the span.
    pub new: i64,
    /// Of those, customers with two orders or more in the span (distinct
    /// order ids).
    pub repeat: i64,
}

/// What a tracked link recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActivityKind {
    Open,
    Click,
}

impl ActivityKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Click => "click",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "open" => Some(Self::Open),
            "click" => Some(Self::Click),
            _ => None,
        }
    }
}

/// One open or click of an email (`email_activity`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Activity {
    pub idempotency_key: String,
    pub customer_id: String,
    pub kind: ActivityKind,
    /// The link's target, for a click.
    pub url: Option<String>,
    pub at: DateTime<Utc>,
    /// Made by a machine (a privacy proxy, a link scanner), not the
    /// customer: kept, but not engagement (see `send::tracking::is_machine`).
    pub machine: bool,
}

/// Something received that could not be used, with why.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct DeadLetter {
    pub source: String,
    pub reason: String,
    pub payload: String,
    /// Where it came from (topic/partition/offset, file:line, HTTP item).
    pub origin: Option<String>,
}

impl DeadLetter {
    /// The customer the payload names (`customer.id`), read leniently: see
    /// [`payload_id`].
    pub fn customer_id(&self) -> Option<String> {
        payload_id(&self.payload, Some("customer"))
    }

    /// What makes two dead letters the same: source, reason and payload
    /// (not where they came from). Hex SHA-256.
    pub fn identity(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for part in [&self.source, &self.reason, &self.payload] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        hex::encode(h.finalize())
    }
}

/// Letters by identity, in the order first seen, each with how many times it
/// came and its latest origin.
pub(crate) fn count_dead_letters(letters: &[DeadLetter]) -> Vec<(String, DeadLetter, i64)> {
    let mut out: Vec<(String, DeadLetter, i64)> = Vec::new();
    let mut at: HashMap<String, usize> = HashMap::new();
    for l in letters {
        let id = l.identity();
        match at.get(&id) {
            Some(&i) => {
                out[i].1.origin = l.origin.clone();
                out[i].2 += 1;
            }
            None => {
                at.insert(id.clone(), out.len());
                out.push((id, l.clone(), 1));
            }
        }
    }
    out
}

/// The outbox rows of one queue status (`pending` or `sending`), for
/// `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueDepth {
    pub status: OutboxStatus,
    pub rows: i64,
    /// Rows whose `not_before` has come.
    pub due: i64,
    /// The earliest `not_before` among them.
    pub oldest: Option<DateTime<Utc>>,
}

/// An enrollment status as stored (`active`, `completed`, `exited`).
pub fn status_name(s: crate::engine::state::Status) -> &'static str {
    sql::status_str(s)
}

/// A dead letter as kept: identical ones are counted, not multiplied.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct StoredDeadLetter {
    #[serde(flatten)]
    #[sqlx(flatten)]
    pub letter: DeadLetter,
    /// How many times it was received.
    pub count: i64,
    pub first_seen_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
}

/// Who asked for an erasure, and when: logged in `erasures`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Erasure<'a> {
    /// `admin` (the admin API), or the ingest source of the
    /// `customer.erased` event (`kafka`, `http`, `file`).
    pub source: &'a str,
    /// The `customer.erased` event, when one asked.
    pub event_id: Option<&'a str>,
    pub at: DateTime<Utc>,
}

/// What an erasure did, table by table (README, "Data rights"): rows whose
/// personal data was removed or anonymized, and rows removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Erased {
    /// The customer row and its profile, deleted.
    pub profile: bool,
    /// Events whose payload was dropped (their ids stay: a duplicate of one
    /// is still known as a duplicate).
    pub events: u64,
    /// Enrollments exited (the active ones) and their context dropped.
    pub enrollments: u64,
    /// Outbox rows whose context was dropped.
    pub emails: u64,
    /// Of those, the ones not sent yet: skipped with the reason `erased`.
    pub stopped: u64,
    /// Delivery log entries, addresses in the server's replies replaced.
    pub deliveries: u64,
    /// Opens and clicks, their URLs dropped.
    pub activity: u64,
    /// Suppression list entries, their address replaced by its hash.
    pub suppressions: u64,
    /// Dead letters that named the customer or one of their addresses, deleted.
    pub dead_letters: u64,
    /// The engine's journal entries about the customer, deleted.
    #[serde(default)]
    pub journal: u64,
}

impl Erased {
    /// Whether nothing was stored about the customer.
    pub fn is_empty(&self) -> bool {
        *self == Erased::default()
    }
}

/// One erasure, as logged (`erasures`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErasureLog {
    /// The shop's customer id: the shop proves the erasure with it.
    pub customer_id: String,
    pub erased_at: DateTime<Utc>,
    pub source: String,
    pub event_id: Option<String>,
    pub summary: Erased,
}

/// Everything stored about one customer (`GET
/// /v1/admin/customers/{id}/export`): the customer's rows in every table,
/// JSON documents as stored.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CustomerExport {
    pub customer_id: String,
    /// The stored profile: details, consent, suppression.
    pub profile: Option<serde_json::Value>,
    pub events: Vec<ExportedEvent>,
    pub enrollments: Vec<ExportedEnrollment>,
    pub outbox: Vec<ExportedEmail>,
    pub deliveries: Vec<DeliveryView>,
    pub activity: Vec<Activity>,
    /// Entries of the suppression list for the customer's addresses.
    pub suppressions: Vec<ExportedSuppression>,
    /// Dead letters that name the customer or one of their addresses.
    pub dead_letters: Vec<StoredDeadLetter>,
    /// Earlier erasures of the customer.
    pub erasures: Vec<ErasureLog>,
    /// The engine's journal about the customer (its latest
    /// [`JOURNEY_ROWS`] entries, oldest first).
    pub journal: Vec<crate::engine::journal::Entry>,
}

impl CustomerExport {
    /// Whether nothing at all is stored about the customer.
    pub fn is_empty(&self) -> bool {
        self.profile.is_none()
            && self.events.is_empty()
            && self.enrollments.is_empty()
            && self.outbox.is_empty()
            && self.deliveries.is_empty()
            && self.activity.is_empty()
            && self.suppressions.is_empty()
            && self.dead_letters.is_empty()
            && self.erasures.is_empty()
            && self.journal.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExportedEvent {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub occurred_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    pub source: String,
    pub payload: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExportedEnrollment {
    pub key: String,
    pub sequence: String,
    pub status: String,
    pub step: Option<String>,
    pub order_id: Option<String>,
    pub started_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The whole enrollment, context included; `None` once retention
    /// compacted it.
    pub state: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExportedEmail {
    pub id: i64,
    pub idempotency_key: String,
    pub sequence: String,
    pub step: String,
    pub template: String,
    pub category: String,
    pub status: String,
    pub attempts: i64,
    pub not_before: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub message_id: Option<String>,
    pub last_error: Option<String>,
    /// What the email is rendered from (the customer, the order).
    pub context: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExportedSuppression {
    /// As the list keeps it: the address, or [`address_hash`] of it.
    pub address: String,
    pub reason: String,
    pub created_at: Option<DateTime<Utc>>,
}

/// What retention purges ([`Store::purge`]; README, "Retention").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purge {
    /// Events received and occurred before the cut: deleted (so a
    /// duplicate of one is no longer recognised).
    Events,
    /// Delivery log entries logged before the cut: deleted.
    Deliveries,
    /// Opens and clicks before the cut: deleted, a person's open kept as
    /// `outbox.opened` for the sunset rule.
    Activity,
    /// Dead letters last seen before the cut: deleted.
    DeadLetters,
    /// Finished enrollments last changed before the cut: their state
    /// (context) dropped, key, status and start kept.
    Enrollments,
    /// The engine's journal entries from before the cut: deleted.
    Journal,
}

impl Purge {
    pub const ALL: [Purge; 6] = [
        Purge::Events,
        Purge::Deliveries,
        Purge::Activity,
        Purge::DeadLetters,
        Purge::Enrollments,
        Purge::Journal,
    ];
}

/// Where a purge goes on: after this row (by primary key) of its table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum After {
    Start,
    /// A numeric id (deliveries, activity, dead letters).
    Id(i64),
    /// A text key (events, enrollments).
    Key(String),
}

/// What one batch of a purge did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgeStep {
    /// Rows deleted or compacted.
    pub changed: u64,
    /// Where the next batch goes on; `None`: nothing is left before the cut.
    pub next: Option<After>,
}

/// Everything a batch of decisions changes, collected in memory and written
/// at once (a few multi-row statements on a database).
#[derive(Debug, Default)]
pub struct Writes {
    pub profiles: BTreeMap<String, Arc<Profile>>,
    pub enrollments: BTreeMap<String, Enrollment>,
    /// Keys of `enrollments` whose context holds their customer's profile's
    /// customer and facts: the SQL stores leave those out of the row
    /// ([`state_doc`]).
    pub from_profile: FastSet<String>,
    /// In the order the engine emitted them: the store gives the rows ids in
    /// this order, and a customer's emails due at the same time go out in id
    /// order. (Kept in a map by idempotency key, `…#order-delivered` came
    /// before `…#order-shipped`, and went out first.)
    pub emails: Vec<NewEmail>,
    /// Idempotency keys of `emails`: the first email with a key is kept.
    email_keys: FastSet<String>,
    /// Addresses to suppress (by [`address_key`]) with the reason.
    pub suppress: BTreeMap<String, String>,
    /// The engine's journal entries, in the order decided (one multi-row
    /// statement).
    pub journal: Vec<Entry>,
    /// Timers to set (`Some`) or drop, by customer and sequence; the last
    /// write of a batch wins.
    pub timers: BTreeMap<(String, String), Option<Timer>>,
}

impl Writes {
    /// Takes in what one decision changed, except the enrollments (they are
    /// still in use by the batch); returns the indices of those to save.
    pub fn absorb(&mut self, changes: Changes) -> BTreeSet<usize> {
        if let Some(p) = changes.profile {
            self.profiles.insert(p.customer.id.clone(), p);
        }
        for m in changes.emails {
            if !self.email_keys.insert(m.job.idempotency_key.clone()) {
                continue;
            }
            self.emails.push(m);
        }
        if let Some((email, reason)) = changes.suppress {
            self.suppress.entry(address_key(&email)).or_insert(reason);
        }
        self.journal.extend(changes.journal);
        for t in changes.timers {
            self.timers.insert((t.customer_id, t.sequence), t.timer);
        }
        changes.enrollments
    }

    /// Moves the enrollments at `changed` out of a customer's state, once the
    /// batch is done with it.
    pub fn take_enrollments(&mut self, state: CustomerState, changed: &BTreeSet<usize>) {
        let profile = state.profile.as_deref();
        for (i, e) in state.enrollments.into_iter().enumerate() {
            if changed.contains(&i) {
                if state_doc::holds_profile(&e, profile) {
                    self.from_profile.insert(e.key.clone());
                } else {
                    self.from_profile.remove(&e.key);
                }
                self.enrollments.insert(e.key.clone(), e);
            }
        }
    }
}

/// One transaction. Dropped without [`Tx::commit`], it rolls back (the
/// memory store, which cannot fail after a write, applies writes at once).
pub trait Tx: Send {
    /// Records each event by id; returns the ids that were new. A known id
    /// is a duplicate.
    fn record_events(
        &mut self,
        events: &[&Event],
        source: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<HashSet<String>>> + Send;

    /// Makes sure each customer `(id, email)` has a row to lock.
    fn ensure_customers(
        &mut self,
        customers: &[(&str, &str)],
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Loads the customers `ids` (sorted, unique) with their active
    /// enrollments, the keys of their finished ones and their recent events
    /// as `look_back` says, holding each customer's lock until the
    /// transaction ends. A customer without a row gets an empty state.
    fn lock_customers(
        &mut self,
        ids: &[String],
        look_back: &LookBack<'_>,
    ) -> impl Future<Output = Result<States>> + Send;

    /// Takes up to `limit` enrollments due at `now`, oldest first, and locks
    /// their customers until the transaction ends. It never waits: an
    /// enrollment or a customer that another transaction holds is left for a
    /// later round, so schedulers cannot deadlock with each other or with
    /// ingest (which waits for customers, then writes their enrollments).
    /// There is no lease to expire: a transaction that dies (a crash, a
    /// rollback) leaves its enrollments due for the next round at once.
    fn claim_due(
        &mut self,
        now: DateTime<Utc>,
        limit: i64,
        look_back: &LookBack<'_>,
    ) -> impl Future<Output = Result<Due>> + Send;

    /// Loads again, as `look_back` says, the recent events of customers
    /// this transaction already holds (`states`): a history catch-up wakes
    /// enrollments at their own, earlier times, and looks back from there.
    fn reload_recent(
        &mut self,
        states: &mut States,
        ids: &[String],
        look_back: &LookBack<'_>,
    ) -> impl Future<Output = Result<()>> + Send;

    /// The stored events of types `kinds` of the customers `ids` (which this
    /// transaction holds), each customer's in the order they occurred: what
    /// the facts are rebuilt from after an upgrade.
    fn stored_events(
        &mut self,
        ids: &[String],
        kinds: &[&str],
    ) -> impl Future<Output = Result<HashMap<String, Vec<Event>>>> + Send;

    /// Loads one customer's profile under the customer's lock.
    fn lock_profile(
        &mut self,
        customer_id: &str,
    ) -> impl Future<Output = Result<Option<Arc<Profile>>>> + Send;

    /// Writes what the decisions changed; returns how many outbox rows were new.
    fn write(
        &mut self,
        writes: Writes,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<usize>> + Send;

    /// The row's status and claim count as stored now.
    fn outbox_state(
        &mut self,
        id: i64,
    ) -> impl Future<Output = Result<Option<(OutboxStatus, i64)>>> + Send;

    /// Mail already sent (or being sent) to the customer, except row `except`.
    fn sent_history(
        &mut self,
        customer_id: &str,
        except: i64,
    ) -> impl Future<Output = Result<Vec<Sent>>> + Send;

    /// Why `email` is on the suppression list (the reason kept with it), or
    /// `None` when it is not. An entry kept as the address's hash (its
    /// customer was erased) counts.
    fn suppression(&mut self, email: &str) -> impl Future<Output = Result<Option<String>>> + Send;

    fn is_suppressed(&mut self, email: &str) -> impl Future<Output = Result<bool>> + Send {
        let found = self.suppression(email);
        async move { Ok(found.await?.is_some()) }
    }

    /// Applies `to` to `row` if the row still carries `row.attempts`;
    /// returns whether it did.
    fn transition(
        &mut self,
        row: &Queued,
        to: &Transition<'_>,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool>> + Send;

    fn log_delivery(
        &mut self,
        row: &Queued,
        now: DateTime<Utc>,
        outcome: Outcome,
        detail: &str,
        message_id: Option<&str>,
    ) -> impl Future<Output = Result<()>> + Send;

    /// The customer's emails not sent yet (pending or being sent), in
    /// `(not_before, id)` order.
    fn unsent_emails(
        &mut self,
        customer_id: &str,
    ) -> impl Future<Output = Result<Vec<Queued>>> + Send;

    /// Takes `email` (or a `sha256:` entry as spelled) off the suppression
    /// list, logging the removal with the operator's `reason`; returns the
    /// reason the entry had, `None` when there was none.
    fn remove_suppression(
        &mut self,
        email: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<String>>> + Send;

    /// Puts a failed row back to pending, due at `now` (its attempts and
    /// delivery log kept, its retry schedule begun afresh), and logs the
    /// operator's retry (outcome `retry`, with `detail`). Returns whether
    /// the row was failed (an erased customer's email is not put back: it
    /// has nothing left to render).
    fn requeue_failed(
        &mut self,
        id: i64,
        detail: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// Erases the customer `customer_id` (README, "Data rights"): the
    /// customer row is deleted; their events keep id, type and times but
    /// lose the payload (except the events `keep` names: a batch's events
    /// after its `customer.erased`); their enrollments, outbox rows,
    /// delivery log and opens and clicks move to a random id
    /// ([`tombstone`]) that names nobody, enrollments exited and their
    /// context dropped, emails not sent yet skipped with the reason
    /// `erased`, contexts and URLs dropped and addresses in replies
    /// replaced; suppression entries of their addresses (the stored ones,
    /// those their events carried and `addresses`) keep only the address's
    /// [`address_hash`]; dead letters naming them or one of those addresses
    /// are deleted. Holds the customer's lock. Does not log the erasure
    /// ([`Tx::log_erasure`]).
    fn erase_customer(
        &mut self,
        customer_id: &str,
        keep: &HashSet<String>,
        addresses: &[String],
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Erased>> + Send;

    /// Logs an erasure of `customer_id` in `erasures`.
    fn log_erasure(
        &mut self,
        customer_id: &str,
        how: &Erasure<'_>,
        erased: &Erased,
    ) -> impl Future<Output = Result<()>> + Send;

    fn commit(self) -> impl Future<Output = Result<()>> + Send;
}

/// Durable state. Methods outside a [`Tx`] are one statement each.
pub trait Store: Clone + Send + Sync + 'static {
    type Tx: Tx;

    fn migrate(&self) -> impl Future<Output = Result<()>> + Send;

    fn begin(&self) -> impl Future<Output = Result<Self::Tx>> + Send;

    /// Whether the store answers with every migration applied.
    fn ready(&self) -> impl Future<Output = Result<()>> + Send;

    /// The earliest `wake_at` of an active enrollment.
    fn next_wake(&self) -> impl Future<Output = Result<Option<DateTime<Utc>>>> + Send;

    /// Claims up to `limit` outbox rows due at `now` for `by`, counting an
    /// attempt, in `(not_before, id)` order. A row another claimer holds is
    /// taken when its lease has ended or its claimer's heartbeat is older
    /// than `by.stale_after`. A customer's rows are taken one at a time and
    /// in order: never while another row of the customer is held (claimed or
    /// `sending`, by a claimer still alive), nor while a row of theirs that
    /// comes earlier by `(not_before, id)` is due.
    fn claim_outbox(
        &self,
        now: DateTime<Utc>,
        lease: chrono::Duration,
        limit: i64,
        by: &Claimer,
    ) -> impl Future<Output = Result<Vec<Queued>>> + Send;

    /// Stores the heartbeat of `instance` (started at `started_at`, `about`
    /// naming its host and process for operators) at `now`.
    fn heartbeat(
        &self,
        instance: &str,
        about: &str,
        started_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Forgets an instance that stopped cleanly: rows it still held are free.
    fn retire(&self, instance: &str) -> impl Future<Output = Result<()>> + Send;

    /// The earliest `not_before` of an unclaimed pending row.
    fn next_outbox(&self) -> impl Future<Output = Result<Option<DateTime<Utc>>>> + Send;

    /// Keeps dead letters, all in one transaction. One identical to a kept
    /// one (same [`DeadLetter::identity`]) counts once more and takes the
    /// new origin, so 10,000 identical letters are one row counted 10,000
    /// times.
    fn keep_dead_letters(
        &self,
        letters: &[DeadLetter],
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<()>> + Send;

    fn setting(&self, key: &str) -> impl Future<Output = Result<Option<String>>> + Send;

    /// Records that an email to the customer was sent at `at` (the fact
    /// `customer.last_email_at`; never moved backwards).
    fn emailed(
        &self,
        customer_id: &str,
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Sets `key` to `value`.
    fn put_setting(&self, key: &str, value: &str) -> impl Future<Output = Result<()>> + Send;

    /// Up to `limit` customers after the id `after` (`""`: from the start),
    /// by id, without locks, each profile (if any, with its facts as a load
    /// sees them) handed to `pick`: what a sweep over the customers reads.
    /// Returns the ids picked; the profiles are not copied out.
    fn pick_customers(
        &self,
        after: &str,
        limit: i64,
        pick: &(dyn Fn(Option<&Profile>) -> bool + Sync),
    ) -> impl Future<Output = Result<Picked>> + Send;
    /// As [`Store::pick_customers`], for a sweep whose condition is false
    /// outside `range`: only the customers in it are handed to `pick`. A
    /// store that keeps the fact in order reads only those (`read` and
    /// `last` then count and end with them); the others read every
    /// customer in id order and leave out the rest.
    fn pick_customers_within(
        &self,
        range: &FactRange,
        after: &str,
        limit: i64,
        pick: &(dyn Fn(Option<&Profile>) -> bool + Sync),
    ) -> impl Future<Output = Result<Picked>> + Send {
        async move {
            self.pick_customers(after, limit, &|p| {
                p.is_some_and(|p| range.holds(&p.ledger.facts)) && pick(p)
            })
            .await
        }
    }
    /// Which of `keys` (each an enrollment key with its customer's id) a
    /// running or finished enrollment holds. A sweep asks, without locks,
    /// before it locks the customers it would enroll: one whose enrollment
    /// exists is left alone (the lock would find it and start nothing).
    fn enrollments_held(
        &self,
        keys: &[(String, String)],
    ) -> impl Future<Output = Result<HashSet<String>>> + Send;
    /// Stores `value` unless the key exists; returns the stored value.
    fn init_setting(&self, key: &str, value: &str) -> impl Future<Output = Result<String>> + Send;

    /// When the email with this idempotency key was handed to the
    /// transport (its last attempt), if it was.
    fn sent_at(
        &self,
        idempotency_key: &str,
    ) -> impl Future<Output = Result<Option<DateTime<Utc>>>> + Send;

    /// Records an open or a click.
    fn record_activity(&self, a: &Activity) -> impl Future<Output = Result<()>> + Send;

    /// A customer's opens and clicks, oldest first.
    fn activity(&self, customer_id: &str) -> impl Future<Output = Result<Vec<Activity>>> + Send;
    /// The customers whose address is `address` (without regard to ASCII
    /// case), as `(id, address as the customer has it)`, by id: whom a
    /// bounce or complaint about the address concerns.
    fn customers_with_address(
        &self,
        address: &str,
    ) -> impl Future<Output = Result<Vec<(String, String)>>> + Send;

    /// The customer the email with this Message-ID (`<…@…>`) was sent to,
    /// and the address it went to as the customer has it now: whom a
    /// bounce report that names its message concerns.
    fn recipient_of_message(
        &self,
        message_id: &str,
    ) -> impl Future<Output = Result<Option<(String, String)>>> + Send;

    /// Puts `email` on the suppression list with `reason`, unless it is
    /// there: for a bounce about an address no customer has.
    fn suppress_address(
        &self,
        email: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<()>> + Send;

    // Reading, for operators and tests.
    fn outbox(&self) -> impl Future<Output = Result<Vec<OutboxView>>> + Send;
    fn deliveries(&self) -> impl Future<Output = Result<Vec<DeliveryView>>> + Send;
    /// The delivery log as `filter` asks, newest first: a page of at most
    /// `filter.page_size()` entries; the next page is the entries before
    /// the last one's id.
    fn delivery_log(
        &self,
        filter: &DeliveryFilter,
    ) -> impl Future<Output = Result<Vec<DeliveryEntry>>> + Send;
    /// In the order first seen.
    fn dead_letters(&self) -> impl Future<Output = Result<Vec<StoredDeadLetter>>> + Send;
    fn enrollments_of(
        &self,
        customer_id: &str,
    ) -> impl Future<Output = Result<Vec<Enrollment>>> + Send;
    /// Enrollments counted by sequence and status, in that order: one
    /// grouped query over every sequence (`/metrics`).
    fn enrollment_totals(
        &self,
    ) -> impl Future<Output = Result<Vec<(String, crate::engine::state::Status, i64)>>> + Send;
    /// The outbox queue (rows `pending` and `sending`) by status, with the
    /// rows due at `now` and the earliest `not_before`: one grouped query
    /// over the queue's own index (`/metrics`).
    fn outbox_queue(
        &self,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<QueueDepth>>> + Send;
    /// Everything kept about one customer that explains their mail
    /// ([`JourneyRows`]): `aftercare explain`, the admin API's journey.
    fn journey(&self, customer_id: &str) -> impl Future<Output = Result<JourneyRows>> + Send;
    /// A customer as stored; `None` for one the store has never seen.
    fn customer(&self, id: &str) -> impl Future<Output = Result<Option<StoredCustomer>>> + Send;
    /// How many of a customer's emails are in each outbox status (statuses
    /// with none left out), by status.
    fn email_counts(
        &self,
        customer_id: &str,
    ) -> impl Future<Output = Result<Vec<(OutboxStatus, i64)>>> + Send;
    /// The suppression list as `filter` asks, by address.
    fn suppressions(
        &self,
        filter: &SuppressionFilter,
    ) -> impl Future<Output = Result<Vec<SuppressionEntry>>> + Send;
    /// What operators did to the suppression list (of `email` only, when
    /// given), newest first, at most `limit` (within 1 to
    /// [`DeliveryFilter::MAX_LIMIT`]).
    fn suppression_log(
        &self,
        email: Option<&str>,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<SuppressionChange>>> + Send;
    /// Puts `email` on the suppression list for an operator, logging it
    /// with `reason`; returns false (and changes nothing) when it is there.
    fn add_suppression(
        &self,
        email: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// After `letter` was replayed: `None` takes it off the dead letters
    /// (it went through); `Some(reason)` keeps it with that reason (counted
    /// into an identical letter if one is kept). Returns false when no such
    /// letter is kept.
    fn revise_dead_letter(
        &self,
        letter: &DeadLetter,
        reason: Option<&str>,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// How many of a sequence's enrollments stand at each step with each
    /// status, by step and status.
    fn enrollment_counts(
        &self,
        sequence: &str,
    ) -> impl Future<Output = Result<Vec<StepCount>>> + Send;
    /// A sequence's enrollments at `step`, by key, after the key `after`, at
    /// most `limit` (within 1 to [`DeliveryFilter::MAX_LIMIT`]).
    fn enrollments_at(
        &self,
        sequence: &str,
        step: &str,
        after: Option<&str>,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<Enrollment>>> + Send;

    // Reports (the dashboard): grouped reads over a span of time, each one
    // statement that counts in the database rather than a row at a time.

    /// The delivery log's entries in `span` counted by bucket and outcome.
    fn delivery_series(
        &self,
        span: Span,
        bucket: Bucket,
    ) -> impl Future<Output = Result<Vec<SeriesPoint<Outcome>>>> + Send;
    /// The events of type `kind` that occurred in `span`, counted by bucket.
    fn event_series(
        &self,
        kind: &str,
        span: Span,
        bucket: Bucket,
    ) -> impl Future<Output = Result<Vec<SeriesPoint<()>>>> + Send;
    /// The outbox's rows counted by status.
    fn outbox_depth(&self) -> impl Future<Output = Result<Vec<(OutboxStatus, i64)>>> + Send;
    /// The outbox rows made in `span` by sequence, step and template, with
    /// how many were sent, opened and clicked (by a person, at any time).
    /// Only rows the sender has dealt with in `span` (a delivery log entry)
    /// or still holds (pending, sending) are read, through the indexes
    /// those have: a row that is neither was not made in `span`.
    fn step_counts(&self, span: Span) -> impl Future<Output = Result<Vec<StepCounts>>> + Send;
    /// The `order.placed` events that occurred in `span` by customers with
    /// an open or a click (of any kind) from `touched_since` to the span's
    /// end: the orders an email may have brought. Oldest first.
    fn placed_orders(
        &self,
        span: Span,
        touched_since: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<PlacedOrder>>> + Send;
    /// The opens and clicks (machine-made ones too, marked) from
    /// `touched_since` to the span's end by customers with an `order.placed`
    /// in `span`: what attribution looks at. Oldest first.
    fn touches(
        &self,
        span: Span,
        touched_since: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<Touch>>> + Send;
    /// How many customers placed an order in `span`.
    fn customers_ordering(&self, span: Span) -> impl Future<Output = Result<i64>> + Send;
    /// The customers who placed an order in `span`: how many, how many of
    /// them for the first time, how many twice or more.
    fn period_customers(&self, span: Span) -> impl Future<Output = Result<PeriodCustomers>> + Send;
    fn event_count(&self) -> impl Future<Output = Result<i64>> + Send;
    fn active_enrollments(&self) -> impl Future<Output = Result<i64>> + Send;

    /// The erasures of `customer_id` logged, oldest first.
    fn erasures(&self, customer_id: &str) -> impl Future<Output = Result<Vec<ErasureLog>>> + Send;

    /// Everything stored about `customer_id` ([`CustomerExport`]).
    fn export_customer(
        &self,
        customer_id: &str,
    ) -> impl Future<Output = Result<CustomerExport>> + Send;

    /// One batch of retention, in one transaction: at most `limit` rows of
    /// `what` older than `before` after `after` (by primary key), deleted
    /// or compacted (see [`Purge`]).
    fn purge(
        &self,
        what: Purge,
        before: DateTime<Utc>,
        after: &After,
        limit: i64,
    ) -> impl Future<Output = Result<PurgeStep>> + Send;

    /// Takes or renews the lease `key` (a `settings` row) for `holder`
    /// until `until`: true when `holder` holds it now (it was free, lapsed
    /// at `now`, or already `holder`'s), false when another holds it.
    fn take_lease(
        &self,
        key: &str,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool>> + Send;
}

/// At most this many rows of each kind a [`Store::journey`] reads (the
/// latest), so that one customer with a flood of events cannot make it slow.
pub const JOURNEY_ROWS: i64 = 5_000;

/// An event as recorded, with when and how it came.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReceivedEvent {
    pub event: Event,
    pub received_at: DateTime<Utc>,
    /// `kafka`, `http`, `file`, ...
    pub source: String,
}

/// An outbox row with when it was written (enqueued).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EmailRow {
    #[serde(flatten)]
    pub view: OutboxView,
    pub created_at: DateTime<Utc>,
}

/// Everything kept about one customer that explains their mail: each part
/// oldest first, at most [`JOURNEY_ROWS`] of each (the latest).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JourneyRows {
    pub events: Vec<ReceivedEvent>,
    /// The engine's journal ([`crate::engine::journal`]).
    pub journal: Vec<Entry>,
    pub enrollments: Vec<Enrollment>,
    pub emails: Vec<EmailRow>,
    pub deliveries: Vec<DeliveryEntry>,
    pub activity: Vec<Activity>,
    /// Dead letters whose payload names the customer ([`payload_id`]).
    pub dead_letters: Vec<StoredDeadLetter>,
}

impl JourneyRows {
    /// Nothing is kept about the customer.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
            && self.journal.is_empty()
            && self.enrollments.is_empty()
            && self.emails.is_empty()
            && self.deliveries.is_empty()
            && self.activity.is_empty()
            && self.dead_letters.is_empty()
    }
}

/// The customer's entries of the delivery log, oldest first: the latest
/// [`JOURNEY_ROWS`], read a page at a time.
pub(crate) async fn customer_deliveries<S: Store>(
    store: &S,
    customer_id: &str,
) -> Result<Vec<DeliveryEntry>> {
    let mut filter = DeliveryFilter {
        customer_id: Some(customer_id.to_string()),
        limit: DeliveryFilter::MAX_LIMIT,
        ..DeliveryFilter::default()
    };
    let mut out = Vec::new();
    while (out.len() as i64) < JOURNEY_ROWS {
        let page = store.delivery_log(&filter).await?;
        let full = page.len() as i64 == filter.page_size();
        let Some(last) = page.last() else { break };
        filter.before = Some(last.id);
        out.extend(page);
        if !full {
            break;
        }
    }
    out.reverse();
    Ok(out)
}

/// Keeps the last [`JOURNEY_ROWS`] of `rows`.
pub(crate) fn latest<T>(mut rows: Vec<T>) -> Vec<T> {
    let cut = rows.len().saturating_sub(JOURNEY_ROWS as usize);
    rows.drain(..cut);
    rows
}

/// Reads a stored enum's name back, or says what was found.
pub(crate) fn parse_stored<T>(what: &str, s: &str, parse: fn(&str) -> Option<T>) -> Result<T> {
    parse(s).ok_or_else(|| Error::Corrupt(format!("unknown {what} {s:?}")))
}

/// How the suppression list spells an address: ASCII-lowercased, so that a
/// relay's `Anna@Example.com` and a shop's `anna@example.com` are one entry
/// (mailbox providers treat them as one; RFC 5321 leaves the local part's
/// case to the receiver, and none of them uses it).
pub fn address_key(email: &str) -> String {
    email.to_ascii_lowercase()
}

/// The `id` of the object under `within` (`"customer"`, `"order"`; `None`:
/// the top level) in a payload as received, read leniently: a dead letter's
/// payload may be cut short, malformed or not an event at all, and still
/// name its customer before the point where it breaks. Only strings count.
pub fn payload_id(payload: &str, within: Option<&str>) -> Option<String> {
    struct Frame {
        object: bool,
        /// The key this container is the value of.
        under: Option<String>,
        /// The last key read at this level, while its value is to come.
        key: Option<String>,
        expect_key: bool,
    }
    let want: &[&str] = match &within {
        Some(w) => std::slice::from_ref(w),
        None => &[],
    };
    let mut frames: Vec<Frame> = Vec::new();
    let mut chars = payload.chars();
    while let Some(c) = chars.next() {
        match c {
            '{' | '[' => {
                let under = frames.last_mut().and_then(|f| f.key.take());
                frames.push(Frame {
                    object: c == '{',
                    under,
                    key: None,
                    expect_key: c == '{',
                });
            }
            '}' | ']' => {
                frames.pop();
            }
            ',' => {
                if let Some(f) = frames.last_mut().filter(|f| f.object) {
                    f.expect_key = true;
                    f.key = None;
                }
            }
            ':' => {
                if let Some(f) = frames.last_mut() {
                    f.expect_key = false;
                }
            }
            '"' => {
                let s = json_string(&mut chars)?;
                let Some(f) = frames.last_mut().filter(|f| f.object) else {
                    continue;
                };
                if f.expect_key {
                    f.key = Some(s);
                    continue;
                }
                let here = frames.len() == want.len() + 1
                    && frames.iter().all(|f| f.object)
                    && frames[1..]
                        .iter()
                        .zip(want)
                        .all(|(f, w)| f.under.as_deref() == Some(*w));
                let f = frames.last_mut().expect("checked above");
                if here && f.key.as_deref() == Some("id") && !s.is_empty() {
                    return Some(s);
                }
                f.key = None;
            }
            _ => {}
        }
    }
    None
}

/// Reads a JSON string after its opening quote; `None` if it is cut short
/// or malformed.
fn json_string(chars: &mut std::str::Chars) -> Option<String> {
    let mut raw = String::from("\"");
    loop {
        let c = chars.next()?;
        raw.push(c);
        match c {
            '"' => return serde_json::from_str(&raw).ok(),
            '\\' => raw.push(chars.next()?),
            _ => {}
        }
    }
}
/// How an erased customer's address is kept on the suppression list: a
/// hash of [`address_key`], so that the suppression still holds for the
/// address (a lookup hashes the address it is asked about) while the list
/// no longer says what the address was.
pub fn address_hash(email: &str) -> String {
    use sha2::{Digest, Sha256};
    format!(
        "sha256:{}",
        hex::encode(Sha256::digest(address_key(email).as_bytes()))
    )
}

/// The id an erased customer's kept rows move to: random, so nothing links
/// them to the customer (the erasure log names the customer, not this).
pub fn tombstone() -> String {
    let mut bytes = [0u8; 12];
    getrandom::fill(&mut bytes).expect("the operating system's random numbers");
    format!("erased:{}", hex::encode(bytes))
}

/// `key` (an enrollment key `sequence/customer[/…]`, or an idempotency key
/// `<enrollment key>#<step>`) with the customer `from` replaced by `to`.
/// A key that does not name `from` where keys do (made by hand) becomes
/// `sequence/to/#<hash of the key>`: unique, and naming nobody.
pub fn rekey(key: &str, from: &str, to: &str) -> String {
    if let Some((sequence, rest)) = key.split_once('/')
        && let Some(after) = rest.strip_prefix(from)
        && (after.is_empty() || after.starts_with('/') || after.starts_with('#'))
    {
        return format!("{sequence}/{to}{after}");
    }
    use sha2::{Digest, Sha256};
    let sequence = key.split('/').next().unwrap_or_default();
    let hash = hex::encode(&Sha256::digest(key.as_bytes())[..12]);
    format!("{sequence}/{to}/#{hash}")
}

/// What an erasure leaves of an operator's words about the customer.
pub const ERASED_TEXT: &str = "[erased]";

/// `text` with every address in it (a word with an `@`, words being split
/// at whitespace, quotes and `<>()[]{},;:`) replaced by `[erased]`: a
/// relay's reply (`550 5.1.1 <anna@example.com>: user unknown`) kept after
/// its customer was erased; of a stop's reason (an operator's own words),
/// only that an operator stopped the mail.
pub fn scrub_addresses(text: &str) -> String {
    // An operator's own words about the customer (why their mail was
    // stopped) may name them: only that an operator stopped it is kept.
    let stopped = crate::engine::operator::stopped_reason("");
    if text.starts_with(&stopped) {
        return stopped.trim_end_matches([':', ' ']).to_string();
    }
    const CUTS: &[char] = &[
        '<', '>', '(', ')', '[', ']', '{', '}', ',', ';', ':', '"', '\'',
    ];
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if word.contains('@') {
            out.push_str("[erased]");
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in text.chars() {
        if c.is_whitespace() || CUTS.contains(&c) {
            flush(&mut word, &mut out);
            out.push(c);
        } else {
            word.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// Whether a lease stored as `"<until> <holder>"` may be taken by `holder`
/// at `now`: it is theirs, it has lapsed, or it does not read as a lease.
pub(crate) fn lease_free(stored: &str, holder: &str, now: DateTime<Utc>) -> bool {
    let Some((until, by)) = stored.split_once(' ') else {
        return true;
    };
    by == holder
        || DateTime::parse_from_rfc3339(until).map_or(true, |u| u.with_timezone(&Utc) <= now)
}

/// The reason an erasure skips the customer's emails not sent yet with.
pub const ERASED: &str = "erased";
