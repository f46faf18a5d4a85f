//! The SQL both database backends share, written once as ordinary generic
//! Rust over [`Backend`]. A backend (postgres.rs, sqlite.rs) supplies only
//! what differs: its lock suffix, its claim statements and its migrations.
//! The conformance suite (tests/store.rs) runs the same tests against both.
//!
//! The `where` clause on each `impl` lists what the shared code needs of a
//! database (which Rust types it can bind and read); both PostgreSQL and
//! SQLite provide all of it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use const_format::concatcp;
use sqlx::IntoArguments;
use sqlx::migrate::{Migrate, Migrator};
use sqlx::types::Json;
use sqlx::{
    AssertSqlSafe, ColumnIndex, Database, Decode, Encode, Executor, FromRow, Pool, QueryBuilder,
    Row, Type,
};

use super::journal_rows;
use super::state_doc::{self, Columns, StateDoc};
use super::{
    Activity, ActivityKind, Bucket, Claimer, DeadLetter, DeliveryEntry, DeliveryFilter,
    DeliveryView, Due, DueClaim, EmailRow, Error, JOURNEY_ROWS, JourneyRows, LookBack, OutboxView,
    PeriodCustomers, Picked, PlacedOrder, QueueDepth, ReceivedEvent, Result, SeriesPoint, Span,
    StepCount, StepCounts, Store, StoredCustomer, StoredDeadLetter, SuppressionAction,
    SuppressionChange, SuppressionEntry, SuppressionFilter, Touch, Transition, Tx, Writes,
    address_key, count_dead_letters, parse_stored,
};
use super::{
    After, CustomerExport, ERASED, Erased, Erasure, ErasureLog, ExportedEmail, ExportedEnrollment,
    ExportedEvent, ExportedSuppression, Purge, PurgeStep, States,
};
use crate::engine::customer::{CustomerState, LOOK_BACK_EVENTS, NewEmail, Recorded, Timer};
use crate::engine::outbox::{OutboxStatus, Outcome, Queued};
use crate::engine::policy::Sent;
use crate::engine::profile::Profile;
use crate::engine::state::{Context, Enrollment, Status};
use crate::event::Event;
use crate::sequence::model::Category;

/// What differs between the database backends.
pub trait Backend:
    Database<Arguments: IntoArguments<Self>, Connection: Migrate, QueryResult: Affected>
    + sqlx::database::HasStatementCache
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
    /// Takes due timers as [`Backend::TAKE_DUE`] takes enrollments; returns
    /// `customer_id, sequence`.
    const TAKE_DUE_TIMERS: &'static str;
    /// Claims due outbox rows: `$1` now, `$2` lease end, `$3` limit, `$4`
    /// the claimer, `$5` stale before; returns [`QUEUED_COLUMNS`]. It walks
    /// the `outbox_queue (not_before, id)` index of pending and sending rows
    /// (a row being sent was due when claimed, so `not_before <= now` takes
    /// it too) and stops at the limit, keeping each customer's rows in order
    /// ([`IN_ORDER`]).
    const CLAIM_OUTBOX: &'static str;
    /// The function that finds text in text: `FIND(haystack, needle)` is
    /// above 0 when found (`strpos`, `instr`).
    const FIND: &'static str;
    /// Appended to a bound JSON text where a JSON column takes it.
    const JSON: &'static str;
    fn migrator() -> &'static Migrator;

    /// An SQL expression: the UTC bucket the timestamp `column` falls in,
    /// as text (`2026-03-10T12` for an hour, `2026-03-10` for a day; see
    /// [`Bucket::parse_start`]).
    fn bucket(column: &str, bucket: Bucket) -> String;

    /// An SQL expression: the text at `path` (object keys) in the JSON
    /// document `column`; NULL where there is none.
    fn json_text(column: &str, path: &[&str]) -> String;

    /// Appends the condition that `column` is one of `values`. PostgreSQL
    /// binds one array (`column = ANY($n)`), so the statement text is the
    /// same however many there are: prepared and planned once per
    /// connection, where an `IN` list of each length is a statement of its
    /// own. SQLite binds each value (`column IN (?, …)`).
    fn push_any<'a>(
        q: &mut QueryBuilder<Self>,
        column: &str,
        values: impl IntoIterator<Item = &'a str>,
    );

    /// The query of the latest events of types `kinds` since `since` of
    /// each customer of `ids`, at most `cap` a customer; selects
    /// `customer_id, id, type, occurred_at, payload` (payload as text).
    fn recent_events(
        ids: &[String],
        kinds: &BTreeSet<String>,
        since: DateTime<Utc>,
        cap: usize,
    ) -> QueryBuilder<Self>;

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

    /// Writes profiles, enrollments, outbox rows, journal rows and
    /// suppressions; returns how many outbox rows were new. It may free what
    /// it has written (the emails stay: the caller reads them after).
    fn write(
        tx: &mut sqlx::Transaction<'static, Self>,
        w: &mut Writes,
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
pub struct PlacedOrderRow {
    id: String,
    customer_id: String,
    occurred_at: DateTime<Utc>,
    order_id: Option<String>,
    total: Option<String>,
    currency: Option<String>,
    earlier: i64,
}

impl TryFrom<PlacedOrderRow> for PlacedOrder {
    type Error = Error;

    fn try_from(r: PlacedOrderRow) -> Result<Self> {
        let total = match r.total {
            None => None,
            Some(t) => Some(t.parse().map_err(|e| {
                Error::Corrupt(format!("order.total {t:?} of event {}: {e}", r.id))
            })?),
        };
        Ok(PlacedOrder {
            order_id: r.order_id.unwrap_or_else(|| r.id.clone()),
            event_id: r.id,
            customer_id: r.customer_id,
            at: r.occurred_at,
            total,
            currency: r.currency,
            repeat: r.earlier != 0,
        })
    }
}

#[derive(FromRow)]
pub struct TouchRow {
    customer_id: String,
    at: DateTime<Utc>,
    kind: String,
    machine: i64,
    sequence: String,
    step: String,
    template: String,
}

impl TryFrom<TouchRow> for Touch {
    type Error = Error;

    fn try_from(r: TouchRow) -> Result<Self> {
        Ok(Touch {
            customer_id: r.customer_id,
            at: r.at,
            kind: parse_stored("activity kind", &r.kind, ActivityKind::parse)?,
            machine: r.machine != 0,
            sequence: r.sequence,
            step: r.step,
            template: r.template,
        })
    }
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

/// The columns an enrollment's [`StateDoc`] leaves out (the table as `e`),
/// in every select that reads one.
const ENROLLMENT_COLUMNS: &str = "e.key, e.sequence, e.version, e.customer_id, e.order_id, \
     e.status, e.step, e.started_at, e.updated_at";

/// An enrollment row as read for operators, with its customer's profile
/// (`LEFT JOIN customers`: `None` without a row).
#[derive(FromRow)]
pub struct EnrollmentRow {
    #[sqlx(flatten)]
    columns: Columns,
    state: Json<StateDoc<'static>>,
    profile: Option<Json<Option<Profile>>>,
}

impl EnrollmentRow {
    /// Enrollment rows with their profiles, erased rows (their state `null`)
    /// left out; conditions go on with `AND`.
    const SELECT: &str = concatcp!(
        "SELECT ",
        ENROLLMENT_COLUMNS,
        ", e.state, c.profile FROM enrollments e \
         LEFT JOIN customers c ON c.id = e.customer_id \
         WHERE CAST(e.state AS TEXT) <> 'null'"
    );

    fn enrollment(self) -> Result<Enrollment> {
        let profile = self.profile.and_then(|p| p.0);
        state_doc::enrollment(self.columns, self.state.0, profile.as_ref())
    }
}

/// A dead letter's row, found by its identity.
#[derive(FromRow)]
pub struct DeadLetterRow {
    id: i64,
    count: i64,
}

/// Appends `(v1, v2, …)` of bound values for an `IN` list.
pub(super) fn push_in<DB>(q: &mut QueryBuilder<DB>, ids: impl IntoIterator<Item = impl AsRef<str>>)
where
    DB: Database,
    for<'t> &'t str: Encode<'t, DB> + Type<DB>,
{
    q.push("(");
    let mut sep = q.separated(", ");
    for id in ids {
        sep.push_bind(id.as_ref());
    }
    sep.push_unseparated(")");
}

impl<DB> SqlTx<DB>
where
    DB: Backend,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'t> &'t str: Encode<'t, DB> + Type<DB>,
    for<'t> Option<&'t str>: Encode<'t, DB> + Type<DB>,
    String: for<'r> Decode<'r, DB> + Type<DB>,
    Json<Option<Profile>>: for<'r> Decode<'r, DB> + Type<DB>,
    Option<Json<StateDoc<'static>>>: for<'r> Decode<'r, DB> + Type<DB>,
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
    ) -> Result<States> {
        let lock = if skip_held {
            DB::LOCK_UNLESS_HELD
        } else {
            DB::LOCK
        };
        let mut out = States::with_capacity_and_hasher(ids.len(), Default::default());
        if !skip_held {
            out.extend(ids.iter().map(|id| (id.clone(), CustomerState::default())));
        }
        for chunk in ids.chunks(MAX_ROWS) {
            let mut q =
                QueryBuilder::<DB>::new("SELECT id, profile, last_email_at FROM customers WHERE ");
            DB::push_any(&mut q, "id", chunk.iter().map(String::as_str));
            q.push(" ORDER BY id");
            q.push(lock);
            let mut locked = Vec::with_capacity(chunk.len());
            for r in q.build().fetch_all(&mut *self.tx).await? {
                let id: String = r.try_get("id")?;
                let Json(mut profile): Json<Option<Profile>> = r.try_get("profile")?;
                let emailed: Option<DateTime<Utc>> = r.try_get("last_email_at")?;
                if let (Some(p), Some(at)) = (&mut profile, emailed) {
                    crate::engine::facts::emailed(&mut p.ledger.facts, at);
                }
                out.entry(id.clone()).or_default().profile = profile.map(Arc::new);
                locked.push(id);
            }
            let chunk = if skip_held { &locked[..] } else { chunk };
            if chunk.is_empty() {
                continue;
            }
            // Finished enrollments by key only: their state is not needed.
            let mut q = QueryBuilder::<DB>::new(concatcp!(
                "SELECT ",
                ENROLLMENT_COLUMNS,
                ", CASE WHEN e.status = 'active' THEN e.state END AS state FROM enrollments e WHERE "
            ));
            // No ORDER BY: sorting carries the JSON state (PostgreSQL spilled
            // it to disk); each customer's few rows are ordered below.
            DB::push_any(&mut q, "customer_id", chunk.iter().map(String::as_str));
            for r in q.build().fetch_all(&mut *self.tx).await? {
                let id: String = r.try_get("customer_id")?;
                let state: Option<Json<StateDoc<'static>>> = r.try_get("state")?;
                if let Some(st) = out.get_mut(&id) {
                    match state {
                        Some(Json(doc)) => {
                            let cols = Columns::from_row(&r)?;
                            let e = state_doc::enrollment(cols, doc, st.profile.as_deref())?;
                            st.enrollments.push(e);
                        }
                        None => {
                            Arc::make_mut(&mut st.finished).insert(r.try_get("key")?);
                            Arc::make_mut(&mut st.finished_starts).push(r.try_get("started_at")?);
                        }
                    }
                }
            }
            self.load_recent(chunk, look_back, &mut out).await?;
            if look_back.timers {
                let mut q = QueryBuilder::<DB>::new(
                    "SELECT customer_id, sequence, fire_at, occurrence FROM timers WHERE ",
                );
                DB::push_any(&mut q, "customer_id", chunk.iter().map(String::as_str));
                // Planned afresh each time, with the ids in hand: a plan kept
                // for the connection is made once, while the table is still
                // small and without statistics (a burst of ingest into a new
                // database), and PostgreSQL kept scanning the whole table,
                // comparing each row with every id (27 ms a statement at
                // 10,000 timers, half of all the statements' time).
                let q = q.build().persistent(false);
                for r in q.fetch_all(&mut *self.tx).await? {
                    let id: String = r.try_get("customer_id")?;
                    if let Some(st) = out.get_mut(&id) {
                        st.timers.push(Timer {
                            customer_id: id,
                            sequence: r.try_get("sequence")?,
                            fire_at: r.try_get("fire_at")?,
                            occurrence: r.try_get("occurrence")?,
                        });
                    }
                }
            }
        }
        for st in out.values_mut() {
            st.enrollments
                .sort_by(|a, b| (a.started_at, &a.key).cmp(&(b.started_at, &b.key)));
        }
        Ok(out)
    }

    /// An erasure's outbox rows, delivery log and opens and clicks (see
    /// [`Tx::erase_customer`]): moved to `to`, contexts and URLs dropped,
    /// addresses in texts replaced, emails not sent yet skipped (their
    /// claim count moved on, so a worker holding one writes nothing more).
    /// Sets and drops timers: one upsert for those set, one delete each
    /// for those dropped (rare: a fact gone, a sequence removed).
    async fn write_timers(
        &mut self,
        timers: &BTreeMap<(String, String), Option<Timer>>,
    ) -> Result<()> {
        let set: Vec<&Timer> = timers.values().flatten().collect();
        for chunk in set.chunks(MAX_ROWS) {
            let mut q = QueryBuilder::<DB>::new(
                "INSERT INTO timers (customer_id, sequence, fire_at, occurrence) ",
            );
            q.push_values(chunk, |mut b, t| {
                b.push_bind(t.customer_id.as_str())
                    .push_bind(t.sequence.as_str())
                    .push_bind(t.fire_at)
                    .push_bind(t.occurrence.as_str());
            });
            q.push(
                " ON CONFLICT (customer_id, sequence) DO UPDATE \
                 SET fire_at = excluded.fire_at, occurrence = excluded.occurrence",
            );
            q.build().execute(&mut *self.tx).await?;
        }
        for ((customer, sequence), _) in timers.iter().filter(|(_, t)| t.is_none()) {
            sqlx::query("DELETE FROM timers WHERE customer_id = $1 AND sequence = $2")
                .bind(customer.as_str())
                .bind(sequence.as_str())
                .execute(&mut *self.tx)
                .await?;
        }
        Ok(())
    }

    async fn erase_emails(
        &mut self,
        customer_id: &str,
        to: &str,
        now: DateTime<Utc>,
        erased: &mut Erased,
    ) -> Result<()> {
        let rows = sqlx::query(
            "SELECT id, idempotency_key, status, attempts, last_error FROM outbox \
             WHERE customer_id = $1 ORDER BY id",
        )
        .bind(customer_id)
        .fetch_all(&mut *self.tx)
        .await?;
        for r in rows {
            let id: i64 = r.try_get("id")?;
            let key: String = r.try_get("idempotency_key")?;
            let status: String = r.try_get("status")?;
            let mut attempts: i64 = r.try_get("attempts")?;
            let last_error: Option<String> = r.try_get("last_error")?;
            let new_key = super::rekey(&key, customer_id, to);
            let stop = matches!(status.as_str(), "pending" | "sending");
            let (status, last_error) = if stop {
                attempts += 1;
                (OutboxStatus::Skipped.as_str(), Some(ERASED.to_string()))
            } else {
                (
                    status.as_str(),
                    last_error.map(|e| super::scrub_addresses(&e)),
                )
            };
            sqlx::query(
                "UPDATE outbox SET idempotency_key = $1, customer_id = $2, status = $3, \
                 attempts = $4, last_error = $5, context = 'null', lease_until = NULL, \
                 claimed_by = NULL, updated_at = $6 WHERE id = $7",
            )
            .bind(new_key.as_str())
            .bind(to)
            .bind(status)
            .bind(attempts)
            .bind(last_error.as_deref())
            .bind(now)
            .bind(id)
            .execute(&mut *self.tx)
            .await?;
            erased.emails += 1;
            if stop {
                erased.stopped += 1;
                sqlx::query(
                    "INSERT INTO deliveries (outbox_id, idempotency_key, customer_id, attempt, at, \
                     outcome, detail) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(id)
                .bind(new_key.as_str())
                .bind(to)
                .bind(attempts)
                .bind(now)
                .bind(Outcome::Skipped.as_str())
                .bind(ERASED)
                .execute(&mut *self.tx)
                .await?;
            }
        }
        let rows = sqlx::query(
            "SELECT id, idempotency_key, detail FROM deliveries WHERE customer_id = $1",
        )
        .bind(customer_id)
        .fetch_all(&mut *self.tx)
        .await?;
        for r in rows {
            let key: String = r.try_get("idempotency_key")?;
            let detail: String = r.try_get("detail")?;
            sqlx::query(
                "UPDATE deliveries SET customer_id = $1, idempotency_key = $2, detail = $3 \
                 WHERE id = $4",
            )
            .bind(to)
            .bind(super::rekey(&key, customer_id, to).as_str())
            .bind(super::scrub_addresses(&detail).as_str())
            .bind(r.try_get::<i64, _>("id")?)
            .execute(&mut *self.tx)
            .await?;
            erased.deliveries += 1;
        }
        let rows = sqlx::query(
            "SELECT DISTINCT idempotency_key FROM email_activity WHERE customer_id = $1",
        )
        .bind(customer_id)
        .fetch_all(&mut *self.tx)
        .await?;
        for r in rows {
            let key: String = r.try_get("idempotency_key")?;
            erased.activity += sqlx::query(
                "UPDATE email_activity SET customer_id = $1, idempotency_key = $2, url = NULL \
                 WHERE customer_id = $3 AND idempotency_key = $4",
            )
            .bind(to)
            .bind(super::rekey(&key, customer_id, to).as_str())
            .bind(customer_id)
            .bind(key.as_str())
            .execute(&mut *self.tx)
            .await?
            .rows();
        }
        Ok(())
    }

    /// The suppression entries of `addresses` (as the list spells them, or
    /// as given by an entry written before it lowercased) kept as the
    /// address's hash only.
    async fn hash_suppressions(
        &mut self,
        addresses: &BTreeSet<String>,
        erased: &mut Erased,
    ) -> Result<()> {
        for address in addresses {
            let hash = super::address_hash(address);
            let rows = sqlx::query(
                "SELECT email, reason, created_at FROM suppressions WHERE email = $1 OR email = $2",
            )
            .bind(super::address_key(address).as_str())
            .bind(address.as_str())
            .fetch_all(&mut *self.tx)
            .await?;
            for r in rows {
                let email: String = r.try_get("email")?;
                let reason: String = r.try_get("reason")?;
                let created_at: DateTime<Utc> = r.try_get("created_at")?;
                sqlx::query(
                    "INSERT INTO suppressions (email, reason, created_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (email) DO NOTHING",
                )
                .bind(hash.as_str())
                .bind(super::scrub_addresses(&reason).as_str())
                .bind(created_at)
                .execute(&mut *self.tx)
                .await?;
                sqlx::query("DELETE FROM suppressions WHERE email = $1")
                    .bind(email.as_str())
                    .execute(&mut *self.tx)
                    .await?;
                erased.suppressions += 1;
            }
            // What operators did to the entry (the admin API's log) names
            // the address too.
            let changes = sqlx::query(
                "SELECT id, previous_reason FROM suppression_log \
                 WHERE email = $1 OR email = $2",
            )
            .bind(super::address_key(address).as_str())
            .bind(address.as_str())
            .fetch_all(&mut *self.tx)
            .await?;
            for r in changes {
                let id: i64 = r.try_get("id")?;
                let previous: Option<String> = r.try_get("previous_reason")?;
                sqlx::query(
                    "UPDATE suppression_log SET email = $1, reason = $2, previous_reason = $3 \
                     WHERE id = $4",
                )
                .bind(hash.as_str())
                // An operator's reason is their own words about the customer.
                .bind(super::ERASED_TEXT)
                .bind(previous.as_deref().map(super::scrub_addresses).as_deref())
                .bind(id)
                .execute(&mut *self.tx)
                .await?;
            }
        }
        Ok(())
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
                q.push(" AND ");
                DB::push_any(&mut q, "idempotency_key", chunk.iter().map(|k| k.as_str()));
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
        out: &mut States,
    ) -> Result<()> {
        if look_back.kinds.is_empty() {
            return Ok(());
        }
        // The latest of each customer only: one customer's flood of events
        // cannot make every load of them slow. The batch's own events are
        // dropped after (`LookBack::keep`): make room for them, so that the
        // latest others still number the cap.
        let cap = LOOK_BACK_EVENTS + look_back.except.len();
        let mut q = DB::recent_events(ids, look_back.kinds, look_back.since, cap);
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
    Option<Json<StateDoc<'static>>>: for<'r> Decode<'r, DB> + Type<DB>,
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

    async fn lock_customers(&mut self, ids: &[String], look_back: &LookBack<'_>) -> Result<States> {
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
        let timers: Vec<(String, String)> = if look_back.timers {
            sqlx::query_as(DB::TAKE_DUE_TIMERS)
                .bind(now)
                .bind(limit)
                .fetch_all(&mut *self.tx)
                .await?
        } else {
            Vec::new()
        };
        let mut ids: Vec<String> = rows
            .iter()
            .map(|(_, c)| c.clone())
            .chain(timers.iter().map(|(c, _)| c.clone()))
            .collect();
        ids.sort();
        ids.dedup();
        let customers = self.load_customers(&ids, true, look_back).await?;
        let claims = rows
            .into_iter()
            .filter(|(_, c)| customers.contains_key(c))
            .map(|(key, customer_id)| DueClaim { customer_id, key })
            .collect();
        let timers = timers
            .into_iter()
            .filter(|(c, _)| customers.contains_key(c))
            .collect();
        Ok(Due {
            claims,
            timers,
            customers,
        })
    }
    async fn reload_recent(
        &mut self,
        states: &mut States,
        ids: &[String],
        look_back: &LookBack<'_>,
    ) -> Result<()> {
        for chunk in ids.chunks(MAX_ROWS) {
            self.load_recent(chunk, look_back, states).await?;
        }
        Ok(())
    }

    async fn stored_events(
        &mut self,
        ids: &[String],
        kinds: &[&str],
    ) -> Result<HashMap<String, Vec<Event>>> {
        let mut out: HashMap<String, Vec<Event>> = HashMap::new();
        for chunk in ids.chunks(MAX_ROWS) {
            let mut q = QueryBuilder::<DB>::new(
                "SELECT customer_id, CAST(payload AS TEXT) AS payload FROM events WHERE ",
            );
            DB::push_any(&mut q, "customer_id", chunk.iter().map(String::as_str));
            q.push(" AND ");
            DB::push_any(&mut q, "type", kinds.iter().copied());
            for r in q.build().fetch_all(&mut *self.tx).await? {
                let customer: String = r.try_get("customer_id")?;
                let payload: String = r.try_get("payload")?;
                // An erased event keeps no payload to read: passed over.
                if let Ok(e) = serde_json::from_str::<Event>(&payload) {
                    out.entry(customer).or_default().push(e);
                }
            }
        }
        for events in out.values_mut() {
            events.sort_by(|a, b| (a.occurred_at, &a.id).cmp(&(b.occurred_at, &b.id)));
        }
        Ok(out)
    }

    async fn lock_profile(&mut self, customer_id: &str) -> Result<Option<Arc<Profile>>> {
        let sql = format!("SELECT profile FROM customers WHERE id = $1{}", DB::LOCK);
        let row: Option<(Json<Option<Profile>>,)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(customer_id)
            .fetch_optional(&mut *self.tx)
            .await?;
        Ok(row.and_then(|r| r.0.0).map(Arc::new))
    }

    async fn write(&mut self, mut w: Writes, now: DateTime<Utc>) -> Result<usize> {
        let written = DB::write(&mut self.tx, &mut w, now).await?;
        self.skip_written(&w.emails, now).await?;
        self.write_timers(&w.timers).await?;
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
             CAST(CASE WHEN o.opened OR EXISTS (SELECT 1 FROM email_activity a \
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
        // An erased customer's entry is kept as the hash alone.
        let found: Option<(String,)> = sqlx::query_as(
            "SELECT reason FROM suppressions WHERE email = $1 OR email = $2 OR email = $3 LIMIT 1",
        )
        .bind(key.as_str())
        .bind(email)
        .bind(super::address_hash(email).as_str())
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
             WHERE id = $1 AND status = 'failed' AND customer_id NOT LIKE 'erased:%' \
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

    async fn erase_customer(
        &mut self,
        customer_id: &str,
        keep: &HashSet<String>,
        addresses: &[String],
        now: DateTime<Utc>,
    ) -> Result<Erased> {
        let mut erased = Erased::default();
        let to = super::tombstone();
        let mut known: BTreeSet<String> = addresses.iter().cloned().collect();
        // The customer's lock first, then what they are known by.
        let sql = format!(
            "SELECT email, CAST(profile AS TEXT) AS profile FROM customers WHERE id = $1{}",
            DB::LOCK
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(customer_id)
            .fetch_optional(&mut *self.tx)
            .await?;
        if let Some(r) = row {
            known.insert(r.try_get("email")?);
            address_in(&r.try_get::<String, _>("profile")?, &mut known);
            sqlx::query("DELETE FROM customers WHERE id = $1")
                .bind(customer_id)
                .execute(&mut *self.tx)
                .await?;
            sqlx::query("DELETE FROM timers WHERE customer_id = $1")
                .bind(customer_id)
                .execute(&mut *self.tx)
                .await?;
            erased.profile = true;
        }
        let rows = sqlx::query(
            "SELECT id, CAST(payload AS TEXT) AS payload FROM events WHERE customer_id = $1",
        )
        .bind(customer_id)
        .fetch_all(&mut *self.tx)
        .await?;
        for r in rows {
            address_in(&r.try_get::<String, _>("payload")?, &mut known);
        }
        // Events keep their id (dedup), type and times.
        let mut q = QueryBuilder::<DB>::new("UPDATE events SET customer_id = ");
        q.push_bind(to.as_str());
        q.push(", payload = 'null' WHERE customer_id = ");
        q.push_bind(customer_id);
        if !keep.is_empty() {
            q.push(" AND id NOT IN ");
            push_in(&mut q, keep);
        }
        erased.events = q.build().execute(&mut *self.tx).await?.rows();
        let keys: Vec<(String,)> =
            sqlx::query_as("SELECT key FROM enrollments WHERE customer_id = $1 ORDER BY key")
                .bind(customer_id)
                .fetch_all(&mut *self.tx)
                .await?;
        for (key,) in keys {
            sqlx::query(
                "UPDATE enrollments SET key = $1, customer_id = $2, state = 'null', wake_at = NULL, \
                 lease_until = NULL, updated_at = $3, \
                 status = CASE WHEN status = 'active' THEN 'exited' ELSE status END WHERE key = $4",
            )
            .bind(super::rekey(&key, customer_id, &to).as_str())
            .bind(to.as_str())
            .bind(now)
            .bind(key.as_str())
            .execute(&mut *self.tx)
            .await?;
            erased.enrollments += 1;
        }
        self.erase_emails(customer_id, &to, now, &mut erased)
            .await?;
        self.hash_suppressions(&known, &mut erased).await?;
        let mut q = QueryBuilder::<DB>::new("DELETE FROM dead_letters WHERE ");
        push_naming::<DB>(&mut q, customer_id, &known)?;
        erased.dead_letters = q.build().execute(&mut *self.tx).await?.rows();
        erased.journal = sqlx::query("DELETE FROM journal WHERE customer_id = $1")
            .bind(customer_id)
            .execute(&mut *self.tx)
            .await?
            .rows();
        Ok(erased)
    }

    async fn log_erasure(
        &mut self,
        customer_id: &str,
        how: &Erasure<'_>,
        erased: &Erased,
    ) -> Result<()> {
        let sql = format!(
            "INSERT INTO erasures (customer_id, erased_at, source, event_id, summary) \
             VALUES ($1, $2, $3, $4, $5{})",
            DB::JSON
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(customer_id)
            .bind(how.at)
            .bind(how.source)
            .bind(how.event_id)
            .bind(serde_json::to_string(erased)?.as_str())
            .execute(&mut *self.tx)
            .await?;
        Ok(())
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
    for<'r> ActivityRow: FromRow<'r, DB::Row>,
    for<'r> &'r str: ColumnIndex<DB::Row>,
    for<'r> QueuedRow: FromRow<'r, DB::Row>,
    for<'r> OutboxViewRow: FromRow<'r, DB::Row>,
    for<'r> EmailRowRow: FromRow<'r, DB::Row>,
    for<'r> journal_rows::Stored: FromRow<'r, DB::Row>,
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
    for<'r> EnrollmentRow: FromRow<'r, DB::Row>,
    for<'r> CustomerRow: FromRow<'r, DB::Row>,
    for<'r> SuppressionEntry: FromRow<'r, DB::Row>,
    for<'r> SuppressionChangeRow: FromRow<'r, DB::Row>,
    for<'r> DeadLetterRow: FromRow<'r, DB::Row>,
    for<'r> (String, i64): FromRow<'r, DB::Row>,
    for<'r> (Option<String>, String, i64): FromRow<'r, DB::Row>,
    for<'r> (String, String, i64): FromRow<'r, DB::Row>,
    for<'r> (i64, i64, i64): FromRow<'r, DB::Row>,
    for<'r> StepCounts: FromRow<'r, DB::Row>,
    for<'r> PlacedOrderRow: FromRow<'r, DB::Row>,
    for<'r> TouchRow: FromRow<'r, DB::Row>,
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
        let timer: Option<(DateTime<Utc>,)> =
            sqlx::query_as("SELECT fire_at FROM timers ORDER BY fire_at LIMIT 1")
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|r| r.0).into_iter().chain(timer.map(|t| t.0)).min())
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

    async fn emailed(&self, customer_id: &str, at: DateTime<Utc>) -> Result<()> {
        // Never backwards: workers finish out of order.
        sqlx::query(
            "UPDATE customers SET last_email_at = $2 \
             WHERE id = $1 AND (last_email_at IS NULL OR last_email_at < $2)",
        )
        .bind(customer_id)
        .bind(at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn put_setting(&self, key: &str, value: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn pick_customers(
        &self,
        after: &str,
        limit: i64,
        pick: &(dyn Fn(Option<&Profile>) -> bool + Sync),
    ) -> Result<Picked> {
        let rows = sqlx::query(
            "SELECT id, CAST(profile AS TEXT) AS profile, last_email_at FROM customers \
             WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Picked::default();
        for r in rows {
            let id: String = r.try_get("id")?;
            let text: String = r.try_get("profile")?;
            let emailed: Option<DateTime<Utc>> = r.try_get("last_email_at")?;
            let mut profile: Option<Profile> = serde_json::from_str(&text)
                .map_err(|e| Error::Corrupt(format!("profile of customer {id}: {e}")))?;
            if let (Some(p), Some(at)) = (&mut profile, emailed) {
                crate::engine::facts::emailed(&mut p.ledger.facts, at);
            }
            out.read += 1;
            if pick(profile.as_ref()) {
                out.ids.push(id.clone());
            }
            out.last = Some(id);
        }
        Ok(out)
    }

    async fn enrollments_held(&self, keys: &[(String, String)]) -> Result<HashSet<String>> {
        let mut held = HashSet::new();
        for chunk in keys.chunks(MAX_ROWS) {
            let mut q = QueryBuilder::<DB>::new("SELECT key FROM enrollments WHERE ");
            DB::push_any(&mut q, "key", chunk.iter().map(|(_, k)| k.as_str()));
            for r in q.build().fetch_all(&self.pool).await? {
                held.insert(r.try_get("key")?);
            }
        }
        Ok(held)
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
        let rows: Vec<EnrollmentRow> = sqlx::query_as(concatcp!(
            EnrollmentRow::SELECT,
            " AND e.customer_id = $1 ORDER BY e.started_at, e.key"
        ))
        .bind(customer_id)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(EnrollmentRow::enrollment).collect()
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
        // Rows hold one or more entries: the latest rows, then their
        // entries cut to the cap.
        let rows: Vec<journal_rows::Stored> = sqlx::query_as(
            "SELECT customer_id, at, enrollment_key, sequence, step, kind, \
             CAST(detail AS TEXT) AS detail FROM journal \
             WHERE customer_id = $1 ORDER BY at DESC, id DESC LIMIT $2",
        )
        .bind(customer_id)
        .bind(JOURNEY_ROWS)
        .fetch_all(&self.pool)
        .await?;
        let mut journal = Vec::new();
        for row in rows.into_iter().rev() {
            journal.extend(journal_rows::entries(row)?);
        }
        let cut = journal.len().saturating_sub(JOURNEY_ROWS as usize);
        journal.drain(..cut);
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
        let mut q = QueryBuilder::<DB>::new(EnrollmentRow::SELECT);
        q.push(" AND e.sequence = ").push_bind(sequence);
        q.push(" AND e.step = ").push_bind(step);
        if let Some(a) = after {
            q.push(" AND e.key > ").push_bind(a);
        }
        q.push(" ORDER BY e.key LIMIT ")
            .push_bind(limit.clamp(1, DeliveryFilter::MAX_LIMIT));
        let rows: Vec<EnrollmentRow> = q.build_query_as().fetch_all(&self.pool).await?;
        rows.into_iter().map(EnrollmentRow::enrollment).collect()
    }

    async fn delivery_series(
        &self,
        span: Span,
        bucket: Bucket,
    ) -> Result<Vec<SeriesPoint<Outcome>>> {
        // The span's entries come through `deliveries_at`.
        let sql = format!(
            "SELECT {} AS bucket, outcome, COUNT(*) AS n FROM deliveries \
             WHERE at >= $1 AND at < $2 GROUP BY 1, 2 ORDER BY 1, 2",
            DB::bucket("at", bucket)
        );
        let rows: Vec<(String, String, i64)> = sqlx::query_as(AssertSqlSafe(sql))
            .bind(span.since)
            .bind(span.until)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|(b, o, count)| {
                Ok(SeriesPoint {
                    at: bucket.parse_start(&b)?,
                    key: parse_stored("delivery outcome", &o, Outcome::parse)?,
                    count,
                })
            })
            .collect()
    }

    async fn event_series(
        &self,
        kind: &str,
        span: Span,
        bucket: Bucket,
    ) -> Result<Vec<SeriesPoint<()>>> {
        // `events_type` (migration 0014) finds them.
        let sql = format!(
            "SELECT {} AS bucket, COUNT(*) AS n FROM events \
             WHERE type = $1 AND occurred_at >= $2 AND occurred_at < $3 GROUP BY 1 ORDER BY 1",
            DB::bucket("occurred_at", bucket)
        );
        let rows: Vec<(String, i64)> = sqlx::query_as(AssertSqlSafe(sql))
            .bind(kind)
            .bind(span.since)
            .bind(span.until)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|(b, count)| {
                Ok(SeriesPoint {
                    at: bucket.parse_start(&b)?,
                    key: (),
                    count,
                })
            })
            .collect()
    }

    async fn outbox_depth(&self) -> Result<Vec<(OutboxStatus, i64)>> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT status, COUNT(*) FROM outbox GROUP BY status ORDER BY status")
                .fetch_all(&self.pool)
                .await?;
        rows.into_iter()
            .map(|(s, n)| Ok((parse_stored("outbox status", &s, OutboxStatus::parse)?, n)))
            .collect()
    }

    async fn step_counts(&self, span: Span) -> Result<Vec<StepCounts>> {
        // The rows come from the span's delivery log (`deliveries_at`) and
        // the queue (`outbox_queue`); opens and clicks by each row's key
        // (`email_activity_human`, `email_activity_key`).
        Ok(sqlx::query_as(
            "SELECT o.sequence, o.step, o.template, COUNT(*) AS entered, \
             COALESCE(SUM(CASE WHEN o.status = 'sent' THEN 1 ELSE 0 END), 0) AS emailed, \
             COALESCE(SUM(CASE WHEN EXISTS (SELECT 1 FROM email_activity a \
               WHERE a.idempotency_key = o.idempotency_key AND NOT a.machine) \
               THEN 1 ELSE 0 END), 0) AS opened, \
             COALESCE(SUM(CASE WHEN EXISTS (SELECT 1 FROM email_activity a \
               WHERE a.idempotency_key = o.idempotency_key AND a.kind = 'click' \
               AND NOT a.machine) THEN 1 ELSE 0 END), 0) AS clicked \
             FROM outbox o \
             WHERE o.id IN (SELECT d.outbox_id FROM deliveries d WHERE d.at >= $1 AND d.at < $2 \
               UNION SELECT q.id FROM outbox q WHERE q.status IN ('pending', 'sending')) \
             AND o.created_at >= $1 AND o.created_at < $2 \
             GROUP BY o.sequence, o.step, o.template ORDER BY o.sequence, o.step, o.template",
        )
        .bind(span.since)
        .bind(span.until)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn placed_orders(
        &self,
        span: Span,
        touched_since: DateTime<Utc>,
    ) -> Result<Vec<PlacedOrder>> {
        // Orders through `events_type` (migration 0014); earlier orders
        // through `events_customer`; the customer's opens and clicks through
        // `outbox_customer` and the activity's key.
        let sql = format!(
            "SELECT e.id, e.customer_id, e.occurred_at, {order_id} AS order_id, \
             {total} AS total, {currency} AS currency, \
             CAST(CASE WHEN EXISTS (SELECT 1 FROM events p WHERE p.customer_id = e.customer_id \
               AND p.type = 'order.placed' AND p.occurred_at < e.occurred_at) \
               THEN 1 ELSE 0 END AS BIGINT) AS earlier \
             FROM events e WHERE e.type = 'order.placed' \
             AND e.occurred_at >= $1 AND e.occurred_at < $2 \
             AND EXISTS (SELECT 1 FROM outbox o JOIN email_activity a \
               ON a.idempotency_key = o.idempotency_key \
               WHERE o.customer_id = e.customer_id AND a.at >= $3 AND a.at < $2) \
             ORDER BY e.occurred_at, e.id",
            order_id = DB::json_text("e.payload", &["order", "id"]),
            total = DB::json_text("e.payload", &["order", "total"]),
            currency = DB::json_text("e.payload", &["order", "currency"]),
        );
        let rows: Vec<PlacedOrderRow> = sqlx::query_as(AssertSqlSafe(sql))
            .bind(span.since)
            .bind(span.until)
            .bind(touched_since)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(PlacedOrder::try_from).collect()
    }

    async fn touches(&self, span: Span, touched_since: DateTime<Utc>) -> Result<Vec<Touch>> {
        // The span's buyers through `events_type` (migration 0014), their
        // emails through `outbox_customer`, each one's activity by its key.
        let rows: Vec<TouchRow> = sqlx::query_as(
            "SELECT o.customer_id, a.at, a.kind, \
             CAST(CASE WHEN a.machine THEN 1 ELSE 0 END AS BIGINT) AS machine, \
             o.sequence, o.step, o.template \
             FROM outbox o JOIN email_activity a ON a.idempotency_key = o.idempotency_key \
             WHERE o.customer_id IN (SELECT e.customer_id FROM events e \
               WHERE e.type = 'order.placed' AND e.occurred_at >= $1 AND e.occurred_at < $2) \
             AND a.at >= $3 AND a.at < $2 \
             ORDER BY a.at, a.id",
        )
        .bind(span.since)
        .bind(span.until)
        .bind(touched_since)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(Touch::try_from).collect()
    }

    async fn customers_ordering(&self, span: Span) -> Result<i64> {
        // Read from `events_type` alone (migration 0014).
        let (n,): (i64,) = sqlx::query_as(
            "SELECT COUNT(DISTINCT customer_id) FROM events \
             WHERE type = 'order.placed' AND occurred_at >= $1 AND occurred_at < $2",
        )
        .bind(span.since)
        .bind(span.until)
        .fetch_one(&self.pool)
        .await?;
        Ok(n)
    }

    async fn period_customers(&self, span: Span) -> Result<PeriodCustomers> {
        let sql = format!(
            "SELECT COUNT(*), \
             COALESCE(SUM(CASE WHEN NOT EXISTS (SELECT 1 FROM events p \
               WHERE p.customer_id = t.customer_id AND p.type = 'order.placed' \
               AND p.occurred_at < $1) THEN 1 ELSE 0 END), 0), \
             COALESCE(SUM(CASE WHEN t.orders >= 2 THEN 1 ELSE 0 END), 0) \
             FROM (SELECT e.customer_id, COUNT(DISTINCT COALESCE({order_id}, e.id)) AS orders \
               FROM events e WHERE e.type = 'order.placed' \
               AND e.occurred_at >= $1 AND e.occurred_at < $2 GROUP BY e.customer_id) t",
            order_id = DB::json_text("e.payload", &["order", "id"]),
        );
        let (ordered, new, repeat): (i64, i64, i64) = sqlx::query_as(AssertSqlSafe(sql))
            .bind(span.since)
            .bind(span.until)
            .fetch_one(&self.pool)
            .await?;
        Ok(PeriodCustomers {
            ordered,
            new,
            repeat,
        })
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

    async fn erasures(&self, customer_id: &str) -> Result<Vec<ErasureLog>> {
        let rows = sqlx::query(
            "SELECT customer_id, erased_at, source, event_id, CAST(summary AS TEXT) AS summary \
             FROM erasures WHERE customer_id = $1 ORDER BY id",
        )
        .bind(customer_id)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(ErasureLog {
                    customer_id: r.try_get("customer_id")?,
                    erased_at: r.try_get("erased_at")?,
                    source: r.try_get("source")?,
                    event_id: r.try_get("event_id")?,
                    summary: serde_json::from_str(&r.try_get::<String, _>("summary")?)?,
                })
            })
            .collect()
    }

    async fn export_customer(&self, customer_id: &str) -> Result<CustomerExport> {
        let mut tx = self.pool.begin().await?;
        let mut out = CustomerExport {
            customer_id: customer_id.to_string(),
            ..CustomerExport::default()
        };
        let mut known = BTreeSet::new();
        let row = sqlx::query(
            "SELECT email, CAST(profile AS TEXT) AS profile FROM customers WHERE id = $1",
        )
        .bind(customer_id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(r) = row {
            known.insert(r.try_get::<String, _>("email")?);
            let profile: String = r.try_get("profile")?;
            address_in(&profile, &mut known);
            out.profile = Some(serde_json::from_str(&profile)?);
        }
        let rows = sqlx::query(
            "SELECT id, type, occurred_at, received_at, source, CAST(payload AS TEXT) AS payload \
             FROM events WHERE customer_id = $1 ORDER BY occurred_at, id",
        )
        .bind(customer_id)
        .fetch_all(&mut *tx)
        .await?;
        for r in rows {
            let payload: String = r.try_get("payload")?;
            address_in(&payload, &mut known);
            out.events.push(ExportedEvent {
                id: r.try_get("id")?,
                kind: r.try_get("type")?,
                occurred_at: r.try_get("occurred_at")?,
                received_at: r.try_get("received_at")?,
                source: r.try_get("source")?,
                payload: serde_json::from_str(&payload)?,
            });
        }
        let rows = sqlx::query(
            "SELECT key, sequence, status, step, order_id, started_at, updated_at, \
             CAST(state AS TEXT) AS state FROM enrollments WHERE customer_id = $1 \
             ORDER BY started_at, key",
        )
        .bind(customer_id)
        .fetch_all(&mut *tx)
        .await?;
        for r in rows {
            out.enrollments.push(ExportedEnrollment {
                key: r.try_get("key")?,
                sequence: r.try_get("sequence")?,
                status: r.try_get("status")?,
                step: r.try_get("step")?,
                order_id: r.try_get("order_id")?,
                started_at: r.try_get("started_at")?,
                updated_at: r.try_get("updated_at")?,
                state: document(&r.try_get::<String, _>("state")?)?,
            });
        }
        let rows = sqlx::query(
            "SELECT id, idempotency_key, sequence, step, template, category, status, attempts, \
             not_before, sent_at, message_id, last_error, CAST(context AS TEXT) AS context \
             FROM outbox WHERE customer_id = $1 ORDER BY id",
        )
        .bind(customer_id)
        .fetch_all(&mut *tx)
        .await?;
        for r in rows {
            out.outbox.push(ExportedEmail {
                id: r.try_get("id")?,
                idempotency_key: r.try_get("idempotency_key")?,
                sequence: r.try_get("sequence")?,
                step: r.try_get("step")?,
                template: r.try_get("template")?,
                category: r.try_get("category")?,
                status: r.try_get("status")?,
                attempts: r.try_get("attempts")?,
                not_before: r.try_get("not_before")?,
                sent_at: r.try_get("sent_at")?,
                message_id: r.try_get("message_id")?,
                last_error: r.try_get("last_error")?,
                context: document(&r.try_get::<String, _>("context")?)?,
            });
        }
        let rows: Vec<DeliveryRow> = sqlx::query_as(
            "SELECT outbox_id, idempotency_key, attempt, at, outcome, detail FROM deliveries \
             WHERE customer_id = $1 ORDER BY id",
        )
        .bind(customer_id)
        .fetch_all(&mut *tx)
        .await?;
        for r in rows {
            out.deliveries.push(DeliveryView {
                outbox_id: r.outbox_id,
                idempotency_key: r.idempotency_key,
                attempt: r.attempt,
                at: r.at,
                outcome: parse_stored("delivery outcome", &r.outcome, Outcome::parse)?,
                detail: r.detail,
            });
        }
        tx.commit().await?;
        out.activity = self.activity(customer_id).await?;
        for address in &known {
            let hash = super::address_hash(address);
            let rows = sqlx::query(
                "SELECT email, reason, created_at FROM suppressions \
                 WHERE email = $1 OR email = $2 OR email = $3 ORDER BY email",
            )
            .bind(super::address_key(address).as_str())
            .bind(address.as_str())
            .bind(hash.as_str())
            .fetch_all(&self.pool)
            .await?;
            for r in rows {
                let entry = ExportedSuppression {
                    address: r.try_get("email")?,
                    reason: r.try_get("reason")?,
                    created_at: Some(r.try_get("created_at")?),
                };
                if !out.suppressions.contains(&entry) {
                    out.suppressions.push(entry);
                }
            }
        }
        if out.profile.is_some() || !out.events.is_empty() || !known.is_empty() {
            let mut q = QueryBuilder::<DB>::new(
                "SELECT source, reason, payload, origin, count, received_at AS first_seen_at, \
                 last_seen_at FROM dead_letters WHERE ",
            );
            push_naming::<DB>(&mut q, customer_id, &known)?;
            q.push(" ORDER BY id");
            out.dead_letters = q.build_query_as().fetch_all(&self.pool).await?;
        }
        out.erasures = self.erasures(customer_id).await?;
        out.journal = self.journey(customer_id).await?.journal;
        Ok(out)
    }

    async fn purge(
        &self,
        what: Purge,
        before: DateTime<Utc>,
        after: &After,
        limit: i64,
    ) -> Result<PurgeStep> {
        let (table, pk, old) = match what {
            Purge::Events => ("events", "id", "received_at < $1 AND occurred_at < $1"),
            Purge::Deliveries => ("deliveries", "id", "at < $1"),
            Purge::Activity => ("email_activity", "id", "at < $1"),
            Purge::DeadLetters => ("dead_letters", "id", "last_seen_at < $1"),
            Purge::Journal => ("journal", "id", "at < $1"),
            Purge::Enrollments => (
                "enrollments",
                "key",
                "status <> 'active' AND updated_at < $1 AND CAST(state AS TEXT) <> 'null'",
            ),
        };
        let mut tx = self.pool.begin().await?;
        // The batch: the next `limit` old rows by primary key, so that a
        // pass reads the table once however many batches it takes.
        let cursor = match after {
            After::Start => String::new(),
            _ => format!(" AND {pk} > $3"),
        };
        let sql =
            format!("SELECT {pk} AS pk FROM {table} WHERE {old}{cursor} ORDER BY {pk} LIMIT $2");
        let q = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(before)
            .bind(limit);
        let q = match after {
            After::Start => q,
            After::Id(id) => q.bind(*id),
            After::Key(key) => q.bind(key.as_str()),
        };
        let rows = q.fetch_all(&mut *tx).await?;
        let found = rows.len();
        let numeric = matches!(
            what,
            Purge::Deliveries | Purge::Activity | Purge::DeadLetters | Purge::Journal
        );
        let next = if numeric {
            let ids = rows
                .iter()
                .map(|r| r.try_get::<i64, _>("pk"))
                .collect::<std::result::Result<Vec<i64>, _>>()?;
            if ids.is_empty() {
                return Ok(PurgeStep {
                    changed: 0,
                    next: None,
                });
            }
            if what == Purge::Activity {
                // A person's open or click outlives its row: the sunset
                // rule reads it from the email.
                let mut q = QueryBuilder::<DB>::new(
                    "UPDATE outbox SET opened = true WHERE idempotency_key IN \
                     (SELECT idempotency_key FROM email_activity WHERE NOT machine AND id IN ",
                );
                push_ids(&mut q, &ids);
                q.push(")");
                q.build().execute(&mut *tx).await?;
            }
            let mut q = QueryBuilder::<DB>::new(format!("DELETE FROM {table} WHERE id IN "));
            push_ids(&mut q, &ids);
            q.build().execute(&mut *tx).await?;
            After::Id(*ids.last().expect("not empty"))
        } else {
            let keys = rows
                .iter()
                .map(|r| r.try_get::<String, _>("pk"))
                .collect::<std::result::Result<Vec<String>, _>>()?;
            if keys.is_empty() {
                return Ok(PurgeStep {
                    changed: 0,
                    next: None,
                });
            }
            let mut q = match what {
                Purge::Events => QueryBuilder::<DB>::new("DELETE FROM events WHERE id IN "),
                _ => QueryBuilder::<DB>::new("UPDATE enrollments SET state = 'null' WHERE key IN "),
            };
            push_in(&mut q, &keys);
            q.build().execute(&mut *tx).await?;
            After::Key(keys.last().expect("not empty").clone())
        };
        tx.commit().await?;
        Ok(PurgeStep {
            changed: found as u64,
            next: (found as i64 >= limit).then_some(next),
        })
    }

    async fn take_lease(
        &self,
        key: &str,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool> {
        let value = format!("{} {holder}", until.to_rfc3339());
        let mut tx = self.pool.begin().await?;
        let sql = format!("SELECT value FROM settings WHERE key = $1{}", DB::LOCK);
        let held: Option<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(key)
            .fetch_optional(&mut *tx)
            .await?;
        let taken = match held {
            None => sqlx::query(
                "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
            )
            .bind(key)
            .bind(value.as_str())
            .execute(&mut *tx)
            .await?
            .rows()
                == 1,
            Some((held,)) if super::lease_free(&held, holder, now) => {
                sqlx::query("UPDATE settings SET value = $2 WHERE key = $1")
                    .bind(key)
                    .bind(value.as_str())
                    .execute(&mut *tx)
                    .await?;
                true
            }
            Some(_) => false,
        };
        tx.commit().await?;
        Ok(taken)
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

/// Adds the address a stored document (an event's payload, a profile)
/// carries in `customer.email` to `known`.
fn address_in(json: &str, known: &mut BTreeSet<String>) {
    if let Ok(doc) = serde_json::from_str::<serde_json::Value>(json)
        && let Some(email) = doc.pointer("/customer/email").and_then(|e| e.as_str())
    {
        known.insert(email.to_string());
    }
}

/// The condition of a dead letter that names the customer: its payload
/// carries `"id": "<customer id>"` (with or without the space), or its
/// payload or reason one of `addresses` (without regard to ASCII case).
fn push_naming<DB>(
    q: &mut QueryBuilder<DB>,
    customer_id: &str,
    addresses: &BTreeSet<String>,
) -> Result<()>
where
    DB: Backend,
    for<'t> &'t str: Encode<'t, DB> + Type<DB>,
{
    let id = serde_json::to_string(customer_id)?;
    // The customer their payload names, read leniently when it was kept
    // (`payload_id`: any spacing, escapes, a payload cut short).
    q.push("(customer_id = ");
    q.push_bind(customer_id);
    let find = |q: &mut QueryBuilder<DB>, column: &str, needle: &str| {
        q.push(" OR ");
        q.push(DB::FIND);
        q.push("(");
        q.push(column);
        q.push(", ");
        q.push_bind(needle);
        q.push(") > 0");
    };
    find(q, "payload", &format!("\"id\":{id}"));
    find(q, "payload", &format!("\"id\": {id}"));
    let lowered: BTreeSet<String> = addresses.iter().map(|a| super::address_key(a)).collect();
    for a in lowered {
        find(q, "lower(payload)", &a);
        find(q, "lower(reason)", &a);
    }
    q.push(")");
    Ok(())
}

/// Appends `(1, 2, …)` of bound ids for an `IN` list.
fn push_ids<DB>(q: &mut QueryBuilder<DB>, ids: &[i64])
where
    DB: Database,
    i64: for<'t> Encode<'t, DB> + Type<DB>,
{
    q.push("(");
    let mut sep = q.separated(", ");
    for id in ids {
        sep.push_bind(*id);
    }
    sep.push_unseparated(")");
}

/// A stored JSON document; `None` for one dropped (`null`: erased or
/// compacted).
fn document(text: &str) -> Result<Option<serde_json::Value>> {
    Ok(match serde_json::from_str(text)? {
        serde_json::Value::Null => None,
        doc => Some(doc),
    })
}
