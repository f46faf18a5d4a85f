//! Durable state: one [`Store`] trait, implemented for PostgreSQL (production,
//! any number of instances) and SQLite (the embedded default).
//!
//! The store does plumbing only. What to change is decided by pure functions
//! handed in by the caller (`ingest::apply_event`, `schedule::apply_wake`,
//! `send::decide`), run inside the store's transaction while it holds the
//! customer's lock, so that every event, enrollment change and outbox row
//! commits together or not at all.

mod common;
pub mod postgres;
pub mod sqlite;

use std::collections::HashSet;
use std::future::Future;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::engine::dispatch::Note;
use crate::engine::policy::Sent;
use crate::engine::profile::Profile;
use crate::engine::state::{Context, EmailJob, Enrollment};
use crate::event::Event;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("not found: {0}")]
    NotFound(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("database: {0}")]
    Other(String),
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        Error::Other(e.to_string())
    }
}

impl From<sqlx::migrate::MigrateError> for Error {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        Error::Other(format!("migration: {e}"))
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::Other(format!("stored JSON: {e}"))
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// What the store knows of one customer, loaded under the customer's lock.
#[derive(Debug, Default)]
pub struct CustomerState {
    pub profile: Option<Profile>,
    /// The customer's active enrollments (and any started meanwhile).
    pub enrollments: Vec<Enrollment>,
    /// Keys of the customer's finished enrollments: they stop a second
    /// `once_*` entry, and their state is not needed.
    pub finished: HashSet<String>,
}

/// An email to enqueue, with the context it is rendered from.
#[derive(Debug, Clone)]
pub struct NewEmail {
    pub job: EmailJob,
    pub context: Context,
}

/// What a pure decision asks the store to write.
#[derive(Debug, Default)]
pub struct Changes {
    pub profile: Option<Profile>,
    /// Indices into `CustomerState::enrollments` to save (new ones appended).
    pub enrollments: Vec<usize>,
    pub emails: Vec<NewEmail>,
    pub suppress: Option<(String, String)>,
    /// What the operator should know (exits, failed conditions); logged.
    pub notes: Vec<Note>,
}

/// The outcome of one ingest transaction.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct IngestReport {
    pub applied: usize,
    pub duplicates: usize,
    /// Outbox rows written (an idempotency key already there is not counted).
    pub emails: usize,
}

/// A claimed outbox row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OutboxRow {
    pub id: i64,
    pub idempotency_key: String,
    pub customer_id: String,
    pub sequence: String,
    pub step: String,
    pub template: String,
    pub category: String,
    /// `pending`, or `sending` when a worker died before finishing.
    pub status: String,
    /// Claims so far; a worker's writes are fenced by the count it claimed at.
    pub attempts: i64,
    /// Transient transport failures so far (the retry schedule's position).
    pub retries: i64,
    pub not_before: DateTime<Utc>,
    #[sqlx(json)]
    pub context: Context,
}

/// What the send policy sees: the customer and the mail already sent.
#[derive(Debug)]
pub struct SendContext<'a> {
    pub row: &'a OutboxRow,
    pub profile: Option<&'a Profile>,
    pub suppressed: bool,
    pub history: &'a [Sent],
}

/// What to do with a claimed row, decided before the transport is called.
#[derive(Debug, Clone, PartialEq)]
pub enum SendPlan {
    /// Hand it to the transport now (the row is marked `sending`).
    Send,
    /// Not yet: move `not_before`, say why.
    Defer {
        until: DateTime<Utc>,
        reason: String,
    },
    /// Never: logged with its reason, not retried.
    Skip { reason: String },
    /// A stale claim (another worker got there first): leave the row alone.
    Stale,
}

/// How a transport call ended.
#[derive(Debug, Clone, PartialEq)]
pub enum SendOutcome {
    Sent { message_id: String, detail: String },
    Retry { at: DateTime<Utc>, error: String },
    Failed { error: String },
}

/// One row of the outbox, for operators and tests.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct OutboxView {
    pub id: i64,
    pub idempotency_key: String,
    pub customer_id: String,
    pub sequence: String,
    pub step: String,
    pub template: String,
    pub category: String,
    pub status: String,
    pub attempts: i64,
    pub not_before: DateTime<Utc>,
    pub message_id: Option<String>,
    pub last_error: Option<String>,
    pub sent_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct DeliveryView {
    pub outbox_id: i64,
    pub idempotency_key: String,
    pub attempt: i64,
    pub at: DateTime<Utc>,
    pub outcome: String,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct DeadLetter {
    pub source: String,
    pub reason: String,
    pub payload: String,
    pub origin: Option<String>,
}

/// A pure function applied to one event under the customer's lock.
pub type ApplyEvent<'a> = dyn Fn(&mut CustomerState, &Event) -> Changes + Sync + 'a;
/// A pure function applied to one due enrollment (by index) under the lock.
pub type ApplyWake<'a> = dyn Fn(&mut CustomerState, usize) -> Changes + Sync + 'a;
/// The send policy for one claimed row.
pub type DecideSend<'a> = dyn Fn(&SendContext) -> SendPlan + Sync + 'a;

/// Durable state. Every method is one transaction.
pub trait Store: Clone + Send + Sync + 'static {
    fn migrate(&self) -> impl Future<Output = Result<()>> + Send;

    /// Records each event (a known id is a duplicate and skipped), and for
    /// each new one loads the customer under lock, runs `apply` and writes what
    /// it returns; all in one transaction.
    fn ingest(
        &self,
        events: &[Event],
        source: &str,
        now: DateTime<Utc>,
        apply: &ApplyEvent<'_>,
    ) -> impl Future<Output = Result<IngestReport>> + Send;

    /// Claims up to `limit` enrollments due at `now` for `lease`; returns
    /// `(key, customer_id)`. Claims of a crashed worker return when the lease ends.
    fn claim_due(
        &self,
        now: DateTime<Utc>,
        lease: chrono::Duration,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<(String, String)>>> + Send;

    /// Wakes claimed enrollments `(key, customer_id)` that are still due, each
    /// under its customer's lock, in one transaction; returns how many ran.
    fn wake(
        &self,
        claimed: &[(String, String)],
        now: DateTime<Utc>,
        apply: &ApplyWake<'_>,
    ) -> impl Future<Output = Result<usize>> + Send;

    /// The earliest `wake_at` of an active enrollment, to sleep until then.
    fn next_wake(&self) -> impl Future<Output = Result<Option<DateTime<Utc>>>> + Send;

    /// Claims up to `limit` outbox rows due at `now`, counting an attempt.
    fn claim_outbox(
        &self,
        now: DateTime<Utc>,
        lease: chrono::Duration,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<OutboxRow>>> + Send;

    /// Applies the send policy to a claimed row under the customer's lock and
    /// records the decision (a row to send is marked `sending`, which counts
    /// toward caps at once).
    fn plan_send(
        &self,
        row: &OutboxRow,
        now: DateTime<Utc>,
        decide: &DecideSend<'_>,
    ) -> impl Future<Output = Result<(SendPlan, Option<Profile>)>> + Send;

    /// Records how the transport call for a `sending` row ended.
    fn finish_send(
        &self,
        row: &OutboxRow,
        now: DateTime<Utc>,
        outcome: &SendOutcome,
    ) -> impl Future<Output = Result<()>> + Send;

    fn next_outbox(&self) -> impl Future<Output = Result<Option<DateTime<Utc>>>> + Send;

    fn dead_letter(
        &self,
        letter: &DeadLetter,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<()>> + Send;

    fn setting(&self, key: &str) -> impl Future<Output = Result<Option<String>>> + Send;
    /// Stores `value` unless the key exists; returns the stored value.
    fn init_setting(&self, key: &str, value: &str) -> impl Future<Output = Result<String>> + Send;

    // Reading, for operators and tests.
    fn outbox(&self) -> impl Future<Output = Result<Vec<OutboxView>>> + Send;
    fn deliveries(&self) -> impl Future<Output = Result<Vec<DeliveryView>>> + Send;
    fn dead_letters(&self) -> impl Future<Output = Result<Vec<DeadLetter>>> + Send;
    fn enrollments_of(
        &self,
        customer_id: &str,
    ) -> impl Future<Output = Result<Vec<Enrollment>>> + Send;
    fn event_count(&self) -> impl Future<Output = Result<i64>> + Send;
    fn active_enrollments(&self) -> impl Future<Output = Result<i64>> + Send;
}
