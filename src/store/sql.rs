//! The SQL both database backends share, written once as ordinary generic
//! Rust over [`Backend`]. A backend (postgres.rs, sqlite.rs) supplies only
//! what differs: its lock suffix, its claim statements and its migrations.
//! The conformance suite (tests/store.rs) runs the same tests against both.
//!
//! The `where` clause on each `impl` lists what the shared code needs of a
//! database (which Rust types it can bind and read); both PostgreSQL and
//! SQLite provide all of it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use const_format::concatcp;
use sqlx::IntoArguments;
use sqlx::migrate::{Migrate, Migrator};
use sqlx::types::Json;
use sqlx::{
    ColumnIndex, Database, Decode, Encode, Executor, FromRow, Pool, QueryBuilder, Row, Type,
};

use super::{
    Activity, ActivityKind, Claimer, DeadLetter, DeliveryEntry, DeliveryFilter, DeliveryView, Due,
    DueClaim, EmailRow, Error, JOURNEY_ROWS, JourneyRows, LookBack, OutboxView, QueueDepth,
    ReceivedEvent, Result, StepCount, Store, StoredCustomer, StoredDeadLetter, SuppressionAction,
    SuppressionChange, SuppressionEntry, SuppressionFilter, Transition, Tx, Writes, address_key,
    count_dead_letters, parse_stored,
};
use crate::engine::customer::{CustomerState, LOOK_BACK_EVENTS, NewEmail, Recorded};
use crate::engine::journal::{Entry, What};
use crate::engine::outbox::{OutboxStatus, Outcome, Queued};
use crate::engine::policy::Sent;
use crate::engine::profile::Profile;
use crate::engine::state::{Context, Enrollment, Status};
use crate::event::Event;
use crate::sequence::model::Category;

/// What differs between the database backends.
pub trait Backend:
    Database<Arguments: IntoArguments<Self>, Connection: Migrate, QueryResult: Affected>
{
    /// Appended to the query that loads customers: holds their row locks.
    const LOCK: &'static str;
    /// Appended to the query that locks customers for the scheduler: takes
    /// the locks it can get at once and skips rows another transaction holds.
    const LOCK_UNLESS_HELD: &'static str;
    /// Takes due enrollments for the rest of the transaction, skipping rows
    /// another transaction holds: `$1` now, `$2` limit; returns
    /// `key, customer_id`.
    const TAKE_DUE: &'static str;
    /// Claims due outbox rows: `$1` now, `$2` lease end, `$3` limit, `$4`
    /// the claimer, `$5` stale before; returns [`QUEUED_COLUMNS`]. It walks
    /// the `outbox_queue (not_before, id)` index of pending and sending rows
    /// (a row being sent was due when claimed, so `not_before <= now` takes
    /// it too) and stops at the limit, keeping each customer's rows in order
    /// ([`IN_ORDER`]).
    const CLAIM_OUTBOX: &'static str;
    fn migrator() -> &'static Migrator;

    /// Inserts the events by id; returns the ids that were new.
    fn record_events(
        tx: &mut sqlx::Transaction<'static, Self>,
        events: &[&Event],
        source: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<HashSet<String>>> + Send;

    /// Inserts a row for each customer `(id, email)` that has none.
    fn ensure_customers(
        tx: &mut sqlx::Transaction<'static, Self>,
        customers: &[(&str, &str)],
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Writes profiles, enrollments, outbox rows and suppressions; returns
    /// how many outbox rows were new.
    fn write(
        tx: &mut sqlx::Transaction<'static, Self>,
        w: &Writes,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<usize>> + Send;
}

/// The claim condition that takes a row from an instance whose heartbeat is
/// older than `$5` (a crashed instance), whatever the row's lease.
pub const TAKE_OVER: &str = "EXISTS (SELECT 1 FROM instances i \
     WHERE i.id = outbox.claimed_by AND i.heartbeat_at < $5)";

/// The claim condition that keeps each customer's emails in order: a row is
/// not taken while another row of its customer is in flight (claimed or
/// being sent, by a claimer whose heartbeat is fresh: `$1` now, `$5` stale
/// before), nor while a row of its customer that comes earlier by
/// `(not_before, id)` is due (pending and due, or `sending` and to be taken
/// over). So a claim takes at most the first due row of a customer, and the
/// next only once that one is done or deferred past it. Each row asks only its
/// customer's unfinished rows, through the `outbox_customer (customer_id,
/// status)` index.
pub const IN_ORDER: &str = "NOT EXISTS (SELECT 1 FROM outbox e \
     WHERE e.customer_id = outbox.customer_id AND e.status IN ('pending', 'sending') \
     AND e.id <> outbox.id AND ( \
       (e.lease_until >= $1 AND NOT EXISTS (SELECT 1 FROM instances i \
         WHERE i.id = e.claimed_by AND i.heartbeat_at < $5)) \
       OR ((e.status = 'sending' OR e.not_before <= $1) \
         AND (e.not_before < outbox.not_before \
           OR (e.not_before = outbox.not_before AND e.id < outbox.id)))))";

/// How many rows a statement changed (each backend's result type has it).
pub trait Affected {
    fn rows(&self) -> u64;
}

/// Columns of a claimed outbox row, in `RETURNING` and `SELECT` lists.
pub const QUEUED_COLUMNS: &str = concatcp!(
    "id, idempotency_key, customer_id, sequence, step, template, \
     category, status, attempts, retries, not_before, ",
    DUE_AT,
    ", context"
);

/// When a row first became due. Rows written before migration 0006 (or by
/// an older instance during an upgrade) have no `due_at`; they were due when
/// they were written.
pub const DUE_AT: &str = "COALESCE(due_at, created_at) AS due_at";

/// Rows per multi-row statement: far below both databases' limits on bound
/// parameters (SQLite's 32,766 with 13 per row at most).
pub const MAX_ROWS: usize = 1000;

/// A store on a database pool.
pub struct SqlStore<DB: Database> {
    pub pool: Pool<DB>,
}

impl<DB: Database> Clone for SqlStore<DB> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
        }
    }
}

/// A transaction on a database.
pub struct SqlTx<DB: Database> {
    tx: sqlx::Transaction<'static, DB>,
}

#[derive(FromRow)]
pub struct QueuedRow {
    id: i64,
    idempotency_key: String,
    customer_id: String,
    sequence: String,
    step: String,
    template: String,
    category: String,
    status: String,
    attempts: i64,
    retries: i64,
    not_before: DateTime<Utc>,
    due_at: DateTime<Utc>,
    context: Json<Context>,
}

impl TryFrom<QueuedRow> for Queued {
    type Error = Error;

    fn try_from(r: QueuedRow) -> Result<Self> {
        Ok(Queued {
            id: r.id,
            idempotency_key: r.idempotency_key,
            customer_id: r.customer_id,
            sequence: r.sequence,
            step: r.step,
            template: r.template,
            category: parse_stored("category", &r.category, Category::parse)?,
            status: parse_stored("outbox status", &r.status, OutboxStatus::parse)?,
            attempts: r.attempts,
            retries: r.retries,
            not_before: r.not_before,
            due_at: r.due_at,
            context: Arc::new(r.context.0),
        })
    }
}

#[derive(FromRow)]
pub struct OutboxViewRow {
    id: i64,
    idempotency_key: String,
    customer_id: String,
    sequence: String,
    step: String,
    template: String,
    category: String,
    status: String,
    attempts: i64,
    not_before: DateTime<Utc>,
    due_at: DateTime<Utc>,
    message_id: Option<String>,
    last_error: Option<String>,
    sent_at: Option<DateTime<Utc>>,
}

impl TryFrom<OutboxViewRow> for OutboxView {
    type Error = Error;

    fn try_from(r: OutboxViewRow) -> Result<Self> {
        Ok(OutboxView {
            id: r.id,
            idempotency_key: r.idempotency_key,
            customer_id: r.customer_id,
            sequence: r.sequence,
            step: r.step,
            template: r.template,
            category: parse_stored("category", &r.category, Category::parse)?,
            status: parse_stored("outbox status", &r.status, OutboxStatus::parse)?,
            attempts: r.attempts,
            not_before: r.not_before,
            due_at: r.due_at,
            message_id: r.message_id,
            last_error: r.last_error,
            sent_at: r.sent_at,
        })
    }
}

/// An outbox row with when it was written.
#[derive(FromRow)]
pub struct EmailRowRow {
    #[sqlx(flatten)]
    view: OutboxViewRow,
    created_at: DateTime<Utc>,
}

/// A journal entry as stored (`detail`: JSON text).
#[derive(FromRow)]
pub struct JournalRow {
    customer_id: String,
    at: DateTime<Utc>,
    enrollment_key: Option<String>,
    sequence: Option<String>,
    step: Option<String>,
    kind: String,
    detail: String,
}

impl TryFrom<JournalRow> for Entry {
    type Error = Error;

    fn try_from(r: JournalRow) -> Result<Self> {
        let detail: serde_json::Value = serde_json::from_str(&r.detail)?;
        let what = What::join(&r.kind, detail).ok_or_else(|| {
            Error::Corrupt(format!("unknown journal entry {:?}: {}", r.kind, r.detail))
        })?;
        Ok(Entry {
            customer_id: r.customer_id,
            at: r.at,
            enrollment_key: r.enrollment_key,
            sequence: r.sequence,
            step: r.step,
            what,
        })
    }
}

/// An event as stored, for a customer's journey.
#[derive(FromRow)]
pub struct EventRow {
    received_at: DateTime<Utc>,
    source: String,
    payload: String,
}

#[derive(FromRow)]
pub struct DeliveryRow {
    outbox_id: i64,
    idempotency_key: String,
    attempt: i64,
    at: DateTime<Utc>,
    outcome: String,
    detail: String,
}

#[derive(FromRow)]
pub struct DeliveryEntryRow {
    id: i64,
    at: DateTime<Utc>,
    outbox_id: i64,
    idempotency_key: String,
    customer_id: String,
    address: Option<String>,
    sequence: Option<String>,
    step: Option<String>,
    template: Option<String>,
    attempt: i64,
    outcome: String,
    detail: String,
    message_id: Option<String>,
}

impl TryFrom<DeliveryEntryRow> for DeliveryEntry {
    type Error = Error;

    fn try_from(r: DeliveryEntryRow) -> Result<Self> {
        Ok(DeliveryEntry {
            id: r.id,
            at: r.at,
            outbox_id: r.outbox_id,
            idempotency_key: r.idempotency_key,
            customer_id: r.customer_id,
            address: r.address.unwrap_or_default(),
            sequence: r.sequence.unwrap_or_default(),
            step: r.step.unwrap_or_default(),
            template: r.template.unwrap_or_default(),
            attempt: r.attempt,
            outcome: parse_stored("delivery outcome", &r.outcome, Outcome::parse)?,
            detail: r.detail,
            message_id: r.message_id,
        })
    }
}

#[derive(FromRow)]
pub struct ActivityRow {
    idempotency_key: String,
    customer_id: String,
    kind: String,
    url: Option<String>,
    at: DateTime<Utc>,
    machine: i64,
}

#[derive(FromRow)]
pub struct HistoryRow {
    category: String,
    sent_at: DateTime<Utc>,
    opened: i64,
}

/// Enrollments of one sequence and status, counted.
#[derive(FromRow)]
pub struct EnrollmentCountRow {
    sequence: String,
    status: String,
    n: i64,
}

/// The outbox queue's rows of one status.
#[derive(FromRow)]
pub struct QueueRow {
    status: String,
    n: i64,
    due: i64,
    oldest: Option<DateTime<Utc>>,
}

pub fn status_str(s: Status) -> &'static str {
    match s {
        Status::Active => "active",
        Status::Completed => "completed",
        Status::Exited => "exited",
    }
}

pub fn status_parse(s: &str) -> Option<Status> {
    match s {
        "active" => Some(Status::Active),
        "completed" => Some(Status::Completed),
        "exited" => Some(Status::Exited),
        _ => None,
    }
}

#[derive(FromRow)]
pub struct SuppressionChangeRow {
    id: i64,
    email: String,
    action: String,
    reason: String,
    previous_reason: Option<String>,
    at: DateTime<Utc>,
}

impl TryFrom<SuppressionChangeRow> for SuppressionChange {
    type Error = Error;

    fn try_from(r: SuppressionChangeRow) -> Result<Self> {
        Ok(SuppressionChange {
            id: r.id,
            email: r.email,
            action: parse_stored("suppression action", &r.action, SuppressionAction::parse)?,
            reason: r.reason,
            previous_reason: r.previous_reason,
            at: r.at,
        })
    }
}

/// A customer row as read for operators.
#[derive(FromRow)]
pub struct CustomerRow {
    id: String,
    email: String,
    profile: Json<Option<Profile>>,
    updated_at: DateTime<Utc>,
}

/// A dead letter's row, found by its identity.
#[derive(FromRow)]
pub struct DeadLetterRow {
    id: i64,
    count: i64,
}

/// Appends `(v1, v2, …)` of bound values for an `IN` list.
fn push_in<'a, DB>(q: &mut QueryBuilder<DB>, ids: impl IntoIterator<Item = &'a String>)
where
    DB: Database,
    for<'t> &'t str: Encode<'t, DB> + Type<DB>,
{
    q.push("(");
    let mut sep = q.separated(", ");
    for id in ids {
        sep.push_bind(id.as_str());
    }
    sep.push_unseparated(")");
}

impl<DB> SqlTx<DB>
where
    DB: Backend,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'t> &'t str: Encode<'t, DB> + Type<DB>,
    String: for<'r> Decode<'r, DB> + Type<DB>,
    Json<Option<Profile>>: for<'r> Decode<'r, DB> + Type<DB>,
    Option<Json<Enrollment>>: for<'r> Decode<'r, DB> + Type<DB>,
    DateTime<Utc>: for<'r> Decode<'r, DB> + for<'t> Encode<'t, DB> + Type<DB>,
    i64: for<'r> Decode<'r, DB> + for<'t> Encode<'t, DB> + Type<DB>,
    for<'r> &'r str: ColumnIndex<DB::Row>,
{
    /// Loads customers with their enrollments, holding each customer's row
    /// lock. Waiting for the locks, every id is returned (a customer without
    /// a row gets an empty state); with `skip_held`, only the customers whose
    /// lock was free at once.
    async fn load_customers(
        &mut self,
        ids: &[String],
        skip_held: bool,
        look_back: &LookBack<'_>,
    ) -> Result<HashMap<String, CustomerState>> {
        let lock = if skip_held {
            DB::LOCK_UNLESS_HELD
        } else {
            DB::LOCK
        };
        let mut out: HashMap<String, CustomerState> = HashMap::with_capacity(ids.len());
        if !skip_held {
            out.extend(ids.iter().map(|id| (id.clone(), CustomerState::default())));
        }
        for chunk in ids.chunks(MAX_ROWS) {
            let mut q = QueryBuilder::<DB>::new("SELECT id, profile FROM customers WHERE id IN ");
            push_in(&mut q, chunk);
            q.push(" ORDER BY id");
            q.push(lock);
            let mut locked = Vec::with_capacity(chunk.len());
            for r in q.build().fetch_all(&mut *self.tx).await? {
                let id: String = r.try_get("id")?;
                let Json(profile): Json<Option<Profile>> = r.try_get("profile")?;
                out.entry(id.clone()).or_default().profile = profile;
                locked.push(id);
            }
            let chunk = if skip_held { &locked[..] } else { chunk };
            if chunk.is_empty() {
                continue;
            }
            // Finished enrollments by key only: their state is not needed.
            let mut q = QueryBuilder::<DB>::new(
                "SELECT customer_id, key, started_at, \
                 CASE WHEN status = 'active' THEN state END AS state \
                 FROM enrollments WHERE customer_id IN ",
            );
            // No ORDER BY: sorting carries the JSON state (PostgreSQL spilled
            // it to disk); each customer's few rows are ordered below.
            push_in(&mut q, chunk);
            for r in q.build().fetch_all(&mut *self.tx).await? {
                let id: String = r.try_get("customer_id")?;
                let state: Option<Json<Enrollment>> = r.try_get("state")?;
                if let Some(st) = out.get_mut(&id) {
                    match state {
                        Some(Json(e)) => st.enrollments.push(e),
                        None => {
                            Arc::make_mut(&mut st.finished).insert(r.try_get("key")?);
                            Arc::make_mut(&mut st.finished_starts).push(r.try_get("started_at")?);
                        }
                    }
                }
            }
            self.load_recent(chunk, look_back, &mut out).await?;
        }
        for st in out.values_mut() {
            st.enrollments
                .sort_by(|a, b| (a.started_at, &a.key).cmp(&(b.started_at, &b.key)));
        }
        Ok(out)
    }

    /// Records the outbox rows just written for the `emails` a history
    /// import skips ([`NewEmail::skip`]) as skipped, each with its entry in
    /// the delivery log. Rows that were there before (a key already pending
    /// or sent) are left as they are.
    async fn skip_written(&mut self, emails: &[NewEmail], now: DateTime<Utc>) -> Result<()> {
        let mut by_reason: BTreeMap<&str, Vec<&String>> = BTreeMap::new();
        for m in emails {
            if let Some(reason) = &m.skip {
                by_reason
                    .entry(reason)
                    .or_default()
                    .push(&m.job.idempotency_key);
            }
        }
        for (reason, keys) in by_reason {
            for chunk in keys.chunks(MAX_ROWS) {
                let mut q = QueryBuilder::<DB>::new("UPDATE outbox SET status = ");
                q.push_bind(OutboxStatus::Skipped.as_str());
                q.push(", last_error = ");
                q.push_bind(reason);
                q.push(", updated_at = ");
                q.push_bind(now);
                q.push(" WHERE status = 'pending' AND attempts = 0 AND created_at = ");
                q.push_bind(now);
                q.push(" AND idempotency_key IN ");
                push_in(&mut q, chunk.iter().copied());
                q.push(" RETURNING id, idempotency_key, customer_id");
                let rows = q.build().fetch_all(&mut *self.tx).await?;
                if rows.is_empty() {
                    continue;
                }
                let mut log = QueryBuilder::<DB>::new(
                    "INSERT INTO deliveries (outbox_id, idempotency_key, customer_id, attempt, at, \
                     outcome, detail) ",
                );
                let mut entries = Vec::with_capacity(rows.len());
                for r in &rows {
                    let id: i64 = r.try_get("id")?;
                    let key: String = r.try_get("idempotency_key")?;
                    let customer: String = r.try_get("customer_id")?;
                    entries.push((id, key, customer));
                }
                log.push_values(&entries, |mut b, (id, key, customer)| {
                    b.push_bind(*id)
                        .push_bind(key.as_str())
                        .push_bind(customer.as_str())
                        .push_bind(0_i64)
                        .push_bind(now)
                        .push_bind(Outcome::Skipped.as_str())
                        .push_bind(reason);
                });
                log.build().execute(&mut *self.tx).await?;
            }
        }
        Ok(())
    }

    /// Loads the recent events `look_back` asks for of the customers `ids`.
    async fn load_recent(
        &mut self,
        ids: &[String],
        look_back: &LookBack<'_>,
        out: &mut HashMap<String, CustomerState>,
    ) -> Result<()> {
        if look_back.kinds.is_empty() {
            return Ok(());
        }
        // The latest of each customer only: one customer's flood of events
        // cannot make every load of them slow.
        let mut q = QueryBuilder::<DB>::new(
            "SELECT customer_id, id, type, occurred_at, CAST(payload AS TEXT) AS payload \
             FROM (SELECT customer_id, id, type, occurred_at, payload, row_number() \
             OVER (PARTITION BY customer_id ORDER BY occurred_at DESC, id DESC) AS n \
             FROM events WHERE customer_id IN ",
        );
        push_in(&mut q, ids);
        q.push(" AND type IN ");
        push_in(&mut q, look_back.kinds);
        q.push(" AND occurred_at >= ");
        q.push_bind(look_back.since);
        // The batch's own events are dropped after (`LookBack::keep`): make
        // room for them, so that the latest others still number the cap.
        q.push(") recent WHERE n <= ");
        q.push((LOOK_BACK_EVENTS + look_back.except.len()).to_string());
        let mut found: HashMap<String, Vec<Recorded>> = HashMap::new();
        for r in q.build().fetch_all(&mut *self.tx).await? {
            let customer: String = r.try_get("customer_id")?;
            let event = Recorded::stored(
                r.try_get("id")?,
                r.try_get("type")?,
                r.try_get("occurred_at")?,
                r.try_get("payload")?,
            );
            found.entry(customer).or_default().push(event);
        }
        for (id, events) in found {
            if let Some(st) = out.get_mut(&id) {
                st.recent = look_back.keep(events);
            }
        }
        Ok(())
    }
}

impl<DB> Tx for SqlTx<DB>
where
    DB: Backend,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'t> &'t str: Encode<'t, DB> + Type<DB>,
    for<'t> Option<&'t str>: Encode<'t, DB> + Type<DB>,
    i64: for<'r> Decode<'r, DB> + for<'t> Encode<'t, DB> + Type<DB>,
    String: for<'r> Decode<'r, DB> + Type<DB>,
    DateTime<Utc>: for<'r> Decode<'r, DB> + for<'t> Encode<'t, DB> + Type<DB>,
    bool: for<'t> Encode<'t, DB> + Type<DB>,
    Json<Option<Profile>>: for<'r> Decode<'r, DB> + Type<DB>,
    Option<Json<Enrollment>>: for<'r> Decode<'r, DB> + Type<DB>,
    for<'r> &'r str: ColumnIndex<DB::Row>,
    for<'r> HistoryRow: FromRow<'r, DB::Row>,
    for<'r> QueuedRow: FromRow<'r, DB::Row>,
    for<'r> (String, String, i64): FromRow<'r, DB::Row>,
    for<'r> (String, i64): FromRow<'r, DB::Row>,
    for<'r> (String, String): FromRow<'r, DB::Row>,
    for<'r> (String,): FromRow<'r, DB::Row>,
    for<'r> (Json<Option<Profile>>,): FromRow<'r, DB::Row>,
{
    async fn record_events(
        &mut self,
        events: &[&Event],
        source: &str,
        now: DateTime<Utc>,
    ) -> Result<HashSet<String>> {
        DB::record_events(&mut self.tx, events, source, now).await
    }

    async fn ensure_customers(
        &mut self,
        customers: &[(&str, &str)],
        now: DateTime<Utc>,
    ) -> Result<()> {
        DB::ensure_customers(&mut self.tx, customers, now).await
    }

    async fn lock_customers(
        &mut self,
        ids: &[String],
        look_back: &LookBack<'_>,
    ) -> Result<HashMap<String, CustomerState>> {
        self.load_customers(ids, false, look_back).await
    }

    async fn claim_due(
        &mut self,
        now: DateTime<Utc>,
        limit: i64,
        look_back: &LookBack<'_>,
    ) -> Result<Due> {
        let rows: Vec<(String, String)> = sqlx::query_as(DB::TAKE_DUE)
            .bind(now)
            .bind(limit)
            .fetch_all(&mut *self.tx)
            .await?;
        let mut ids: Vec<String> = rows.iter().map(|(_, c)| c.clone()).collect();
        ids.sort();
        ids.dedup();
        let customers = self.load_customers(&ids, true, look_back).await?;
        let claims = rows
            .into_iter()
            .filter(|(_, c)| customers.contains_key(c))
            .map(|(key, customer_id)| DueClaim { customer_id, key })
            .collect();
        Ok(Due { claims, customers })
    }
    async fn reload_recent(
        &mut self,
        states: &mut HashMap<String, CustomerState>,
        ids: &[String],
        look_back: &LookBack<'_>,
    ) -> Result<()> {
        for chunk in ids.chunks(MAX_ROWS) {
            self.load_recent(chunk, look_back, states).await?;
        }
        Ok(())
    }

    async fn lock_profile(&mut self, customer_id: &str) -> Result<Option<Profile>> {
        let sql = format!("SELECT profile FROM customers WHERE id = $1{}", DB::LOCK);
        let row: Option<(Json<Option<Profile>>,)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(customer_id)
            .fetch_optional(&mut *self.tx)
            .await?;
        Ok(row.and_then(|r| r.0.0))
    }

    async fn write(&mut self, w: Writes, now: DateTime<Utc>) -> Result<usize> {
        let written = DB::write(&mut self.tx, &w, now).await?;
        self.skip_written(&w.emails, now).await?;
        Ok(written)
    }

    async fn outbox_state(&mut self, id: i64) -> Result<Option<(OutboxStatus, i64)>> {
        let row: Option<(String, i64)> =
            sqlx::query_as("SELECT status, attempts FROM outbox WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *self.tx)
                .await?;
        row.map(|(s, a)| Ok((parse_stored("outbox status", &s, OutboxStatus::parse)?, a)))
            .transpose()
    }

    async fn sent_history(&mut self, customer_id: &str, except: i64) -> Result<Vec<Sent>> {
        // `opened`: 1 a person opened or clicked it; 0 it carried a pixel and
        // nobody did; -1 unknown (no pixel). Machine opens and clicks (privacy
        // proxies, link scanners) are not engagement.
        let rows: Vec<HistoryRow> = sqlx::query_as(
            "SELECT o.category, o.sent_at, \
             CAST(CASE WHEN EXISTS (SELECT 1 FROM email_activity a \
               WHERE a.idempotency_key = o.idempotency_key AND NOT a.machine) THEN 1 \
               WHEN o.tracked THEN 0 ELSE -1 END AS BIGINT) AS opened \
             FROM outbox o WHERE o.customer_id = $1 AND o.status IN ('sent', 'sending') \
             AND o.sent_at IS NOT NULL AND o.id <> $2",
        )
        .bind(customer_id)
        .bind(except)
        .fetch_all(&mut *self.tx)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(Sent {
                    at: r.sent_at,
                    category: parse_stored("category", &r.category, Category::parse)?,
                    opened: match r.opened {
                        1 => Some(true),
                        0 => Some(false),
                        _ => None,
                    },
                })
            })
            .collect()
    }

    async fn suppression(&mut self, email: &str) -> Result<Option<String>> {
        // Entries are written lowercased; one written as given before that
        // is found too.
        let key = super::address_key(email);
        let found: Option<(String,)> = sqlx::query_as(
            "SELECT reason FROM suppressions WHERE email = $1 OR email = $2 LIMIT 1",
        )
        .bind(key.as_str())
        .bind(email)
        .fetch_optional(&mut *self.tx)
        .await?;
        Ok(found.map(|r| r.0))
    }

    async fn transition(
        &mut self,
        row: &Queued,
        to: &Transition<'_>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        // Every write is fenced by the claim count: a worker whose claim was
        // taken over writes nothing and learns it is stale.
        const FENCE: &str = " WHERE id = $1 AND attempts = $2";
        const FROM_SENDING: &str = " WHERE id = $1 AND attempts = $2 AND status = 'sending'";
        let q = match to {
            Transition::Sending {
                lease_until,
                tracked,
            } => sqlx::query(concatcp!(
                "UPDATE outbox SET status = 'sending', sent_at = $3, updated_at = $3, lease_until = $4, \
                 tracked = $5",
                FENCE
            ))
            .bind(row.id)
            .bind(row.attempts)
            .bind(now)
            .bind(*lease_until)
            .bind(*tracked),
            Transition::Defer { until } => sqlx::query(concatcp!(
                "UPDATE outbox SET not_before = $4, lease_until = NULL, updated_at = $3",
                FENCE
            ))
            .bind(row.id)
            .bind(row.attempts)
            .bind(now)
            .bind(*until),
            Transition::Skip { reason } => sqlx::query(concatcp!(
                "UPDATE outbox SET status = 'skipped', last_error = $4, lease_until = NULL, updated_at = $3",
                FENCE
            ))
            .bind(row.id)
            .bind(row.attempts)
            .bind(now)
            .bind(*reason),
            Transition::Sent { message_id } => sqlx::query(concatcp!(
                "UPDATE outbox SET status = 'sent', message_id = $4, lease_until = NULL, updated_at = $3, \
                 last_error = NULL",
                FROM_SENDING
            ))
            .bind(row.id)
            .bind(row.attempts)
            .bind(now)
            .bind(*message_id),
            Transition::Retry { at, error, counted } => sqlx::query(concatcp!(
                "UPDATE outbox SET status = 'pending', last_error = $4, not_before = $5, sent_at = NULL, \
                 retries = retries + $6, lease_until = NULL, updated_at = $3",
                FROM_SENDING
            ))
            .bind(row.id)
            .bind(row.attempts)
            .bind(now)
            .bind(*error)
            .bind(*at)
            .bind(i64::from(*counted)),
            Transition::Failed { error } => sqlx::query(concatcp!(
                "UPDATE outbox SET status = 'failed', last_error = $4, lease_until = NULL, updated_at = $3",
                FROM_SENDING
            ))
            .bind(row.id)
            .bind(row.attempts)
            .bind(now)
            .bind(*error),
        };
        Ok(q.execute(&mut *self.tx).await?.rows() == 1)
    }

    async fn log_delivery(
        &mut self,
        row: &Queued,
        now: DateTime<Utc>,
        outcome: Outcome,
        detail: &str,
        message_id: Option<&str>,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO deliveries (outbox_id, idempotency_key, customer_id, attempt, at, outcome, detail, message_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(row.id)
        .bind(row.idempotency_key.as_str())
        .bind(row.customer_id.as_str())
        .bind(row.attempts)
        .bind(now)
        .bind(outcome.as_str())
        .bind(detail)
        .bind(message_id)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn unsent_emails(&mut self, customer_id: &str) -> Result<Vec<Queued>> {
        let rows: Vec<QueuedRow> = sqlx::query_as(concatcp!(
            "SELECT ",
            QUEUED_COLUMNS,
            " FROM outbox WHERE customer_id = $1 AND status IN ('pending', 'sending') \
             ORDER BY not_before, id"
        ))
        .bind(customer_id)
        .fetch_all(&mut *self.tx)
        .await?;
        rows.into_iter().map(Queued::try_from).collect()
    }

    async fn remove_suppression(
        &mut self,
        email: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<String>> {
        // Entries are written lowercased; one written as given before that
        // is found too (as `suppression` finds it).
        let key = address_key(email);
        let found: Option<(String, String)> = sqlx::query_as(
            "SELECT email, reason FROM suppressions WHERE email = $1 OR email = $2 \
             ORDER BY email LIMIT 1",
        )
        .bind(key.as_str())
        .bind(email)
        .fetch_optional(&mut *self.tx)
        .await?;
        let Some((stored, was)) = found else {
            return Ok(None);
        };
        sqlx::query("DELETE FROM suppressions WHERE email = $1")
            .bind(stored.as_str())
            .execute(&mut *self.tx)
            .await?;
        sqlx::query(
            "INSERT INTO suppression_log (email, action, reason, previous_reason, at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(stored.as_str())
        .bind(SuppressionAction::Removed.as_str())
        .bind(reason)
        .bind(was.as_str())
        .bind(now)
        .execute(&mut *self.tx)
        .await?;
        Ok(Some(was))
    }

    async fn requeue_failed(&mut self, id: i64, detail: &str, now: DateTime<Utc>) -> Result<bool> {
        // Due from now: `stale_after` counts from the operator's retry, not
        // from when the email was first due (days ago, perhaps).
        let row: Option<(String, String, i64)> = sqlx::query_as(
            "UPDATE outbox SET status = 'pending', not_before = $2, due_at = $2, retries = 0, \
             lease_until = NULL, claimed_by = NULL, sent_at = NULL, updated_at = $2 \
             WHERE id = $1 AND status = 'failed' \
             RETURNING idempotency_key, customer_id, attempts",
        )
        .bind(id)
        .bind(now)
        .fetch_optional(&mut *self.tx)
        .await?;
        let Some((key, customer, attempts)) = row else {
            return Ok(false);
        };
        sqlx::query(
            "INSERT INTO deliveries (outbox_id, idempotency_key, customer_id, attempt, at, outcome, detail) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(id)
        .bind(key.as_str())
        .bind(customer.as_str())
        .bind(attempts)
        .bind(now)
        .bind(Outcome::Retry.as_str())
        .bind(detail)
        .execute(&mut *self.tx)
        .await?;
        Ok(true)
    }

    async fn commit(self) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
    }
}

impl<DB> Store for SqlStore<DB>
where
    DB: Backend,
    SqlTx<DB>: Tx,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'t> &'t str: Encode<'t, DB> + Type<DB>,
    i64: for<'r> Decode<'r, DB> + for<'t> Encode<'t, DB> + Type<DB>,
    String: for<'r> Decode<'r, DB> + Type<DB>,
    DateTime<Utc>: for<'r> Decode<'r, DB> + for<'t> Encode<'t, DB> + Type<DB>,
    bool: for<'t> Encode<'t, DB> + Type<DB>,
    for<'t> Option<&'t str>: Encode<'t, DB> + Type<DB>,
    Json<Enrollment>: for<'r> Decode<'r, DB> + Type<DB>,
    for<'r> ActivityRow: FromRow<'r, DB::Row>,
    for<'r> &'r str: ColumnIndex<DB::Row>,
    for<'r> QueuedRow: FromRow<'r, DB::Row>,
    for<'r> OutboxViewRow: FromRow<'r, DB::Row>,
    for<'r> EmailRowRow: FromRow<'r, DB::Row>,
    for<'r> JournalRow: FromRow<'r, DB::Row>,
    for<'r> EventRow: FromRow<'r, DB::Row>,
    for<'r> DeliveryRow: FromRow<'r, DB::Row>,
    for<'r> DeliveryEntryRow: FromRow<'r, DB::Row>,
    for<'r> StoredDeadLetter: FromRow<'r, DB::Row>,
    for<'r> EnrollmentCountRow: FromRow<'r, DB::Row>,
    for<'r> QueueRow: FromRow<'r, DB::Row>,
    for<'r> (String, String): FromRow<'r, DB::Row>,
    for<'r> (DateTime<Utc>,): FromRow<'r, DB::Row>,
    for<'r> (String,): FromRow<'r, DB::Row>,
    for<'r> (i64,): FromRow<'r, DB::Row>,
    for<'r> (Json<Enrollment>,): FromRow<'r, DB::Row>,
    for<'r> CustomerRow: FromRow<'r, DB::Row>,
    for<'r> SuppressionEntry: FromRow<'r, DB::Row>,
    for<'r> SuppressionChangeRow: FromRow<'r, DB::Row>,
    for<'r> DeadLetterRow: FromRow<'r, DB::Row>,
    for<'r> (String, i64): FromRow<'r, DB::Row>,
    for<'r> (Option<String>, String, i64): FromRow<'r, DB::Row>,
{
    type Tx = SqlTx<DB>;

    async fn migrate(&self) -> Result<()> {
        DB::migrator().run(&self.pool).await?;
        Ok(())
    }

    async fn ready(&self) -> Result<()> {
        let applied: Vec<(i64,)> =
            sqlx::query_as("SELECT version FROM _sqlx_migrations WHERE success")
                .fetch_all(&self.pool)
                .await?;
        let applied: HashSet<i64> = applied.into_iter().map(|(v,)| v).collect();
        match DB::migrator()
            .iter()
            .find(|m| !applied.contains(&m.version))
        {
            Some(m) => Err(Error::NotReady(format!(
                "migration {} ({}) is not applied",
                m.version, m.description
            ))),
            None => Ok(()),
        }
    }

    async fn begin(&self) -> Result<SqlTx<DB>> {
        Ok(SqlTx {
            tx: self.pool.begin().await?,
        })
    }

    async fn next_wake(&self) -> Result<Option<DateTime<Utc>>> {
        let row: Option<(DateTime<Utc>,)> = sqlx::query_as(
            "SELECT wake_at FROM enrollments WHERE status = 'active' AND wake_at IS NOT NULL \
             ORDER BY wake_at LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| r.0))
    }

    async fn claim_outbox(
        &self,
        now: DateTime<Utc>,
        lease: chrono::Duration,
        limit: i64,
        by: &Claimer,
    ) -> Result<Vec<Queued>> {
        let stale_before = now
            .checked_sub_signed(by.stale_after)
            .unwrap_or(DateTime::UNIX_EPOCH);
        let rows: Vec<QueuedRow> = sqlx::query_as(DB::CLAIM_OUTBOX)
            .bind(now)
            .bind(now + lease)
            .bind(limit)
            .bind(by.instance.as_str())
            .bind(stale_before)
            .fetch_all(&self.pool)
            .await?;
        let mut out = rows
            .into_iter()
            .map(Queued::try_from)
            .collect::<Result<Vec<_>>>()?;
        out.sort_by_key(|r| (r.not_before, r.id));
        Ok(out)
    }

    async fn heartbeat(
        &self,
        instance: &str,
        about: &str,
        started_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO instances (id, started_at, heartbeat_at, about) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
        )
        .bind(instance)
        .bind(started_at)
        .bind(now)
        .bind(about)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn retire(&self, instance: &str) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        // Claimed but not begun: free for the next claim at once. A row
        // marked `sending` keeps its lease (its send may have gone out).
        sqlx::query(
            "UPDATE outbox SET lease_until = NULL WHERE claimed_by = $1 AND status = 'pending'",
        )
        .bind(instance)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM instances WHERE id = $1")
            .bind(instance)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn next_outbox(&self) -> Result<Option<DateTime<Utc>>> {
        // A row being sent always holds a lease, so these are the unclaimed
        // pending rows; written with the index's own condition, so that
        // SQLite, too, reads them from `outbox_queue` in order.
        let row: Option<(DateTime<Utc>,)> = sqlx::query_as(
            "SELECT not_before FROM outbox WHERE status IN ('pending', 'sending') \
             AND lease_until IS NULL ORDER BY not_before LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| r.0))
    }

    async fn keep_dead_letters(&self, letters: &[DeadLetter], now: DateTime<Utc>) -> Result<()> {
        if letters.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for (identity, l, count) in count_dead_letters(letters) {
            let customer = l.customer_id();
            sqlx::query(
                "INSERT INTO dead_letters (source, reason, payload, origin, received_at, hash, count, \
                 last_seen_at, customer_id) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $5, $8) \
                 ON CONFLICT (hash) DO UPDATE SET count = dead_letters.count + excluded.count, \
                   last_seen_at = excluded.last_seen_at, origin = excluded.origin",
            )
            .bind(l.source.as_str())
            .bind(l.reason.as_str())
            .bind(l.payload.as_str())
            .bind(l.origin.as_deref())
            .bind(now)
            .bind(identity.as_str())
            .bind(count)
            .bind(customer.as_deref())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn setting(&self, key: &str) -> Result<Option<String>> {
        let row: Option<(String,)> = sqlx::query_as("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.0))
    }

    async fn init_setting(&self, key: &str, value: &str) -> Result<String> {
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await?;
        self.setting(key)
            .await?
            .ok_or_else(|| Error::NotFound(key.to_string()))
    }

    async fn sent_at(&self, idempotency_key: &str) -> Result<Option<DateTime<Utc>>> {
        let row: Option<(DateTime<Utc>,)> = sqlx::query_as(
            "SELECT sent_at FROM outbox WHERE idempotency_key = $1 AND sent_at IS NOT NULL",
        )
        .bind(idempotency_key)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| r.0))
    }

    async fn record_activity(&self, a: &Activity) -> Result<()> {
        sqlx::query(
            "INSERT INTO email_activity (idempotency_key, customer_id, kind, url, at, machine) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(a.idempotency_key.as_str())
        .bind(a.customer_id.as_str())
        .bind(a.kind.as_str())
        .bind(a.url.as_deref())
        .bind(a.at)
        .bind(a.machine)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn activity(&self, customer_id: &str) -> Result<Vec<Activity>> {
        let rows: Vec<ActivityRow> = sqlx::query_as(
            "SELECT idempotency_key, customer_id, kind, url, at, \
             CAST(CASE WHEN machine THEN 1 ELSE 0 END AS BIGINT) AS machine \
             FROM email_activity WHERE customer_id = $1 ORDER BY at, id",
        )
        .bind(customer_id)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(Activity {
                    idempotency_key: r.idempotency_key,
                    customer_id: r.customer_id,
                    kind: parse_stored("activity kind", &r.kind, ActivityKind::parse)?,
                    url: r.url,
                    at: r.at,
                    machine: r.machine != 0,
                })
            })
            .collect()
    }

    async fn recipient_of_message(&self, message_id: &str) -> Result<Option<(String, String)>> {
        // `message_id` is indexed (migration 0009).
        Ok(sqlx::query_as(
            "SELECT c.id, c.email FROM outbox o JOIN customers c ON c.id = o.customer_id \
             WHERE o.message_id = $1 LIMIT 1",
        )
        .bind(message_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn customers_with_address(&self, address: &str) -> Result<Vec<(String, String)>> {
        // `lower(email)` is indexed (migration 0008).
        Ok(sqlx::query_as(
            "SELECT id, email FROM customers WHERE lower(email) = lower($1) ORDER BY id",
        )
        .bind(address)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn suppress_address(&self, email: &str, reason: &str, now: DateTime<Utc>) -> Result<()> {
        sqlx::query(
            "INSERT INTO suppressions (email, reason, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (email) DO NOTHING",
        )
        .bind(super::address_key(email).as_str())
        .bind(reason)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn outbox(&self) -> Result<Vec<OutboxView>> {
        let rows: Vec<OutboxViewRow> = sqlx::query_as(concatcp!(
            "SELECT id, idempotency_key, customer_id, sequence, step, template, category, status, \
             attempts, not_before, ",
            DUE_AT,
            ", message_id, last_error, sent_at FROM outbox ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(OutboxView::try_from).collect()
    }

    async fn deliveries(&self) -> Result<Vec<DeliveryView>> {
        let rows: Vec<DeliveryRow> =
            sqlx::query_as("SELECT outbox_id, idempotency_key, attempt, at, outcome, detail FROM deliveries ORDER BY id")
                .fetch_all(&self.pool)
                .await?;
        rows.into_iter()
            .map(|r| {
                Ok(DeliveryView {
                    outbox_id: r.outbox_id,
                    idempotency_key: r.idempotency_key,
                    attempt: r.attempt,
                    at: r.at,
                    outcome: parse_stored("delivery outcome", &r.outcome, Outcome::parse)?,
                    detail: r.detail,
                })
            })
            .collect()
    }

    async fn delivery_log(&self, f: &DeliveryFilter) -> Result<Vec<DeliveryEntry>> {
        // Newest first by id, so the `deliveries` primary key walks the log
        // and the cursor is a plain `id <`; a customer's or an address's
        // entries come through `deliveries_customer` (migration 0011).
        let mut q = QueryBuilder::<DB>::new(
            "SELECT d.id, d.at, d.outbox_id, d.idempotency_key, d.customer_id, \
             c.email AS address, o.sequence, o.step, o.template, d.attempt, d.outcome, \
             d.detail, d.message_id \
             FROM deliveries d LEFT JOIN outbox o ON o.id = d.outbox_id \
             LEFT JOIN customers c ON c.id = d.customer_id WHERE 1 = 1",
        );
        if let Some(t) = f.since {
            q.push(" AND d.at >= ").push_bind(t);
        }
        if let Some(t) = f.until {
            q.push(" AND d.at < ").push_bind(t);
        }
        if let Some(s) = &f.sequence {
            q.push(" AND o.sequence = ").push_bind(s.as_str());
        }
        if let Some(t) = &f.template {
            q.push(" AND o.template = ").push_bind(t.as_str());
        }
        if let Some(o) = f.outcome {
            q.push(" AND d.outcome = ").push_bind(o.as_str());
        }
        if let Some(c) = &f.customer_id {
            q.push(" AND d.customer_id = ").push_bind(c.as_str());
        }
        if let Some(a) = &f.address {
            q.push(" AND d.customer_id IN (SELECT id FROM customers WHERE lower(email) = lower(")
                .push_bind(a.as_str())
                .push("))");
        }
        if let Some(b) = f.before {
            q.push(" AND d.id < ").push_bind(b);
        }
        q.push(" ORDER BY d.id DESC LIMIT ")
            .push_bind(f.page_size());
        let rows: Vec<DeliveryEntryRow> = q.build_query_as().fetch_all(&self.pool).await?;
        rows.into_iter().map(DeliveryEntry::try_from).collect()
    }

    async fn dead_letters(&self) -> Result<Vec<StoredDeadLetter>> {
        Ok(sqlx::query_as(
            "SELECT source, reason, payload, origin, count, received_at AS first_seen_at, \
             last_seen_at FROM dead_letters ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    async fn enrollments_of(&self, customer_id: &str) -> Result<Vec<Enrollment>> {
        let rows: Vec<(Json<Enrollment>,)> = sqlx::query_as(
            "SELECT state FROM enrollments WHERE customer_id = $1 ORDER BY started_at, key",
        )
        .bind(customer_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|r| r.0.0).collect())
    }

    async fn journey(&self, customer_id: &str) -> Result<JourneyRows> {
        // Each part the latest first (through the customer's index), turned
        // oldest first.
        let events: Vec<EventRow> = sqlx::query_as(
            "SELECT received_at, source, CAST(payload AS TEXT) AS payload FROM events \
             WHERE customer_id = $1 ORDER BY occurred_at DESC, id DESC LIMIT $2",
        )
        .bind(customer_id)
        .bind(JOURNEY_ROWS)
        .fetch_all(&self.pool)
        .await?;
        let mut events = events
            .into_iter()
            .map(|r| {
                Ok(ReceivedEvent {
                    event: serde_json::from_str(&r.payload)?,
                    received_at: r.received_at,
                    source: r.source,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        events.reverse();
        let journal: Vec<JournalRow> = sqlx::query_as(
            "SELECT customer_id, at, enrollment_key, sequence, step, kind, \
             CAST(detail AS TEXT) AS detail FROM journal \
             WHERE customer_id = $1 ORDER BY at DESC, id DESC LIMIT $2",
        )
        .bind(customer_id)
        .bind(JOURNEY_ROWS)
        .fetch_all(&self.pool)
        .await?;
        let mut journal = journal
            .into_iter()
            .map(Entry::try_from)
            .collect::<Result<Vec<_>>>()?;
        journal.reverse();
        let emails: Vec<EmailRowRow> = sqlx::query_as(concatcp!(
            "SELECT id, idempotency_key, customer_id, sequence, step, template, category, status, \
             attempts, not_before, ",
            DUE_AT,
            ", message_id, last_error, sent_at, created_at FROM outbox WHERE customer_id = $1 \
             ORDER BY id DESC LIMIT $2"
        ))
        .bind(customer_id)
        .bind(JOURNEY_ROWS)
        .fetch_all(&self.pool)
        .await?;
        let mut emails = emails
            .into_iter()
            .map(|r| {
                Ok(EmailRow {
                    view: OutboxView::try_from(r.view)?,
                    created_at: r.created_at,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        emails.reverse();
        let mut dead_letters: Vec<StoredDeadLetter> = sqlx::query_as(
            "SELECT source, reason, payload, origin, count, received_at AS first_seen_at, \
             last_seen_at FROM dead_letters WHERE customer_id = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(customer_id)
        .bind(JOURNEY_ROWS)
        .fetch_all(&self.pool)
        .await?;
        dead_letters.reverse();
        Ok(JourneyRows {
            events,
            journal,
            enrollments: super::latest(self.enrollments_of(customer_id).await?),
            emails,
            deliveries: super::customer_deliveries(self, customer_id).await?,
            activity: super::latest(self.activity(customer_id).await?),
            dead_letters,
        })
    }

    async fn customer(&self, id: &str) -> Result<Option<StoredCustomer>> {
        let row: Option<CustomerRow> =
            sqlx::query_as("SELECT id, email, profile, updated_at FROM customers WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|r| StoredCustomer {
            id: r.id,
            email: r.email,
            profile: r.profile.0,
            updated_at: r.updated_at,
        }))
    }

    async fn email_counts(&self, customer_id: &str) -> Result<Vec<(OutboxStatus, i64)>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT status, COUNT(*) FROM outbox WHERE customer_id = $1 GROUP BY status",
        )
        .bind(customer_id)
        .fetch_all(&self.pool)
        .await?;
        let mut out = rows
            .into_iter()
            .map(|(s, n)| Ok((parse_stored("outbox status", &s, OutboxStatus::parse)?, n)))
            .collect::<Result<Vec<_>>>()?;
        out.sort_by_key(|(s, _)| s.as_str());
        Ok(out)
    }

    async fn suppressions(&self, f: &SuppressionFilter) -> Result<Vec<SuppressionEntry>> {
        let mut q = QueryBuilder::<DB>::new(
            "SELECT email, reason, created_at FROM suppressions WHERE 1 = 1",
        );
        if let Some(e) = &f.email {
            q.push(" AND email = ").push_bind(e.as_str());
        }
        if let Some(a) = &f.after {
            q.push(" AND email > ").push_bind(a.as_str());
        }
        q.push(" ORDER BY email LIMIT ").push_bind(f.page_size());
        Ok(q.build_query_as().fetch_all(&self.pool).await?)
    }

    async fn suppression_log(
        &self,
        email: Option<&str>,
        limit: i64,
    ) -> Result<Vec<SuppressionChange>> {
        let mut q = QueryBuilder::<DB>::new(
            "SELECT id, email, action, reason, previous_reason, at FROM suppression_log WHERE 1 = 1",
        );
        if let Some(e) = email {
            q.push(" AND email = ").push_bind(e);
        }
        q.push(" ORDER BY id DESC LIMIT ")
            .push_bind(limit.clamp(1, DeliveryFilter::MAX_LIMIT));
        let rows: Vec<SuppressionChangeRow> = q.build_query_as().fetch_all(&self.pool).await?;
        rows.into_iter().map(SuppressionChange::try_from).collect()
    }

    async fn add_suppression(&self, email: &str, reason: &str, now: DateTime<Utc>) -> Result<bool> {
        let key = address_key(email);
        let mut tx = self.pool.begin().await?;
        let added = sqlx::query(
            "INSERT INTO suppressions (email, reason, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (email) DO NOTHING",
        )
        .bind(key.as_str())
        .bind(reason)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows()
            == 1;
        if added {
            sqlx::query(
                "INSERT INTO suppression_log (email, action, reason, at) VALUES ($1, $2, $3, $4)",
            )
            .bind(key.as_str())
            .bind(SuppressionAction::Added.as_str())
            .bind(reason)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(added)
    }

    async fn revise_dead_letter(&self, letter: &DeadLetter, reason: Option<&str>) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let identity = letter.identity();
        let mut found: Option<DeadLetterRow> =
            sqlx::query_as("SELECT id, count FROM dead_letters WHERE hash = $1")
                .bind(identity.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        if found.is_none() {
            // A letter kept before letters had a hash (migration 0003).
            found = sqlx::query_as(
                "SELECT id, count FROM dead_letters WHERE hash IS NULL AND source = $1 \
                 AND reason = $2 AND payload = $3 ORDER BY id LIMIT 1",
            )
            .bind(letter.source.as_str())
            .bind(letter.reason.as_str())
            .bind(letter.payload.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        }
        let Some(row) = found else {
            return Ok(false);
        };
        match reason {
            Some(r) if r == letter.reason => {}
            Some(r) => {
                let revised = DeadLetter {
                    reason: r.to_string(),
                    ..letter.clone()
                };
                let hash = revised.identity();
                let merged = sqlx::query(
                    "UPDATE dead_letters SET count = count + $1 WHERE hash = $2 AND id <> $3",
                )
                .bind(row.count)
                .bind(hash.as_str())
                .bind(row.id)
                .execute(&mut *tx)
                .await?
                .rows()
                    > 0;
                if merged {
                    sqlx::query("DELETE FROM dead_letters WHERE id = $1")
                        .bind(row.id)
                        .execute(&mut *tx)
                        .await?;
                } else {
                    sqlx::query("UPDATE dead_letters SET reason = $1, hash = $2 WHERE id = $3")
                        .bind(r)
                        .bind(hash.as_str())
                        .bind(row.id)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            None => {
                sqlx::query("DELETE FROM dead_letters WHERE id = $1")
                    .bind(row.id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn enrollment_counts(&self, sequence: &str) -> Result<Vec<StepCount>> {
        let rows: Vec<(Option<String>, String, i64)> = sqlx::query_as(
            "SELECT step, status, COUNT(*) FROM enrollments WHERE sequence = $1 \
             GROUP BY step, status",
        )
        .bind(sequence)
        .fetch_all(&self.pool)
        .await?;
        let mut out = rows
            .into_iter()
            .map(|(step, status, count)| {
                Ok(StepCount {
                    step,
                    status: parse_stored("enrollment status", &status, status_parse)?,
                    count,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        super::sort_step_counts(&mut out);
        Ok(out)
    }

    async fn enrollments_at(
        &self,
        sequence: &str,
        step: &str,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Enrollment>> {
        let mut q = QueryBuilder::<DB>::new("SELECT state FROM enrollments WHERE sequence = ");
        q.push_bind(sequence).push(" AND step = ").push_bind(step);
        if let Some(a) = after {
            q.push(" AND key > ").push_bind(a);
        }
        q.push(" ORDER BY key LIMIT ")
            .push_bind(limit.clamp(1, DeliveryFilter::MAX_LIMIT));
        let rows: Vec<(Json<Enrollment>,)> = q.build_query_as().fetch_all(&self.pool).await?;
        Ok(rows.into_iter().map(|r| r.0.0).collect())
    }

    async fn event_count(&self) -> Result<i64> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM events")
            .fetch_one(&self.pool)
            .await?;
        Ok(n)
    }

    async fn active_enrollments(&self) -> Result<i64> {
        let (n,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM enrollments WHERE status = 'active'")
                .fetch_one(&self.pool)
                .await?;
        Ok(n)
    }

    async fn enrollment_totals(&self) -> Result<Vec<(String, Status, i64)>> {
        let rows: Vec<EnrollmentCountRow> = sqlx::query_as(
            "SELECT sequence, status, COUNT(*) AS n FROM enrollments \
             GROUP BY sequence, status ORDER BY sequence, status",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                let status = parse_stored("enrollment status", &r.status, status_parse)?;
                Ok((r.sequence, status, r.n))
            })
            .collect()
    }

    async fn outbox_queue(&self, now: DateTime<Utc>) -> Result<Vec<QueueDepth>> {
        // The condition of the `outbox_queue` index, so that only the queue
        // is read, however many rows were sent.
        let rows: Vec<QueueRow> = sqlx::query_as(
            "SELECT status, COUNT(*) AS n, \
             SUM(CASE WHEN not_before <= $1 THEN 1 ELSE 0 END) AS due, \
             MIN(not_before) AS oldest FROM outbox WHERE status IN ('pending', 'sending') \
             GROUP BY status ORDER BY status",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(QueueDepth {
                    status: parse_stored("outbox status", &r.status, OutboxStatus::parse)?,
                    rows: r.n,
                    due: r.due,
                    oldest: r.oldest,
                })
            })
            .collect()
    }
}
