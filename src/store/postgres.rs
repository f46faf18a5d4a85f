//! PostgreSQL: production, any number of instances. Claims use
//! `FOR UPDATE SKIP LOCKED`; a customer's changes hold that customer's row lock.

use std::str::FromStr;
use std::time::Duration;

use sqlx::Postgres;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use std::collections::{BTreeMap, BTreeSet, HashSet};

use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, Transaction};

use super::journal_rows;
use super::sql::{Affected, Backend, IN_ORDER, QUEUED_COLUMNS, SqlStore, TAKE_OVER, status_str};
use super::state_doc::StateDoc;
use super::{Bucket, FastSet, Result, Writes};
use crate::engine::outbox::OutboxStatus;
use crate::event::Event;

pub type PgStore = SqlStore<Postgres>;

impl SqlStore<Postgres> {
    pub async fn connect(url: &str) -> super::Result<Self> {
        let opts = PgConnectOptions::from_str(url)?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(opts)
            .await?;
        Ok(Self { pool })
    }
}

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

impl Backend for Postgres {
    const LOCK: &'static str = " FOR UPDATE";

    const LOCK_UNLESS_HELD: &'static str = " FOR UPDATE SKIP LOCKED";

    const TAKE_DUE: &'static str = "SELECT key, customer_id FROM enrollments \
        WHERE status = 'active' AND wake_at <= $1 ORDER BY wake_at LIMIT $2 FOR UPDATE SKIP LOCKED";

    const TAKE_DUE_TIMERS: &'static str = "SELECT customer_id, sequence FROM timers \
        WHERE fire_at <= $1 ORDER BY fire_at LIMIT $2 FOR UPDATE SKIP LOCKED";

    const CLAIM_OUTBOX: &'static str = const_format::concatcp!(
        "UPDATE outbox SET lease_until = $2, attempts = attempts + 1, updated_at = $1, claimed_by = $4 \
         WHERE id IN (SELECT id FROM outbox WHERE status IN ('pending', 'sending') AND not_before <= $1 \
         AND (lease_until IS NULL OR lease_until < $1 OR ",
        TAKE_OVER,
        ") AND ",
        IN_ORDER,
        " ORDER BY not_before, id LIMIT $3 FOR UPDATE SKIP LOCKED) RETURNING ",
        QUEUED_COLUMNS
    );

    const FIND: &'static str = "strpos";

    const JSON: &'static str = "::json";

    fn migrator() -> &'static Migrator {
        &MIGRATOR
    }

    fn bucket(column: &str, bucket: Bucket) -> String {
        let format = match bucket {
            Bucket::Hour => "YYYY-MM-DD\"T\"HH24",
            Bucket::Day => "YYYY-MM-DD",
        };
        format!("to_char({column} AT TIME ZONE 'UTC', '{format}')")
    }

    fn json_text(column: &str, path: &[&str]) -> String {
        // `payload -> 'order' ->> 'total'`: objects along the way, text last.
        let mut out = column.to_string();
        for (i, key) in path.iter().enumerate() {
            let arrow = if i + 1 == path.len() { "->>" } else { "->" };
            out.push_str(&format!(" {arrow} '{key}'"));
        }
        out
    }

    fn push_any<'a>(
        q: &mut QueryBuilder<Postgres>,
        column: &str,
        values: impl IntoIterator<Item = &'a str>,
    ) {
        q.push(column);
        q.push(" = ANY(");
        q.push_bind(values.into_iter().collect::<Vec<&str>>());
        q.push(")");
    }

    // Customer by customer: each walks its own entries of the
    // `events_customer (customer_id, occurred_at)` index backwards and stops
    // at the cap. One statement text whatever the batch. The type is tested
    // as `(…) IS TRUE`, which no index can serve, so that the plan does not
    // depend on the table's statistics: they lag during a burst of ingest,
    // and with them the planner took `events_type (type, occurred_at,
    // customer_id)` and read, for each customer, the whole window of every
    // type (8 s a statement, where this takes milliseconds).
    fn recent_events(
        ids: &[String],
        kinds: &BTreeSet<String>,
        since: DateTime<Utc>,
        cap: usize,
    ) -> QueryBuilder<Postgres> {
        let mut q = QueryBuilder::new(
            "SELECT c.id AS customer_id, e.id, e.type, e.occurred_at, e.payload \
             FROM UNNEST(",
        );
        q.push_bind(ids.iter().map(String::as_str).collect::<Vec<&str>>());
        q.push(
            "::text[]) AS c(id) CROSS JOIN LATERAL (SELECT id, type, occurred_at, \
             CAST(payload AS TEXT) AS payload FROM events WHERE customer_id = c.id AND (type = ANY(",
        );
        q.push_bind(kinds.iter().map(String::as_str).collect::<Vec<&str>>());
        q.push(")) IS TRUE AND occurred_at >= ");
        q.push_bind(since);
        q.push(" ORDER BY occurred_at DESC, id DESC LIMIT ");
        q.push_bind(i64::try_from(cap).unwrap_or(i64::MAX));
        q.push(") e");
        q
    }

    // One statement per table whatever the batch size: rows go in as arrays
    // (`UNNEST`), so the statement text never changes, is prepared once and
    // planned once, and binds 5-11 parameters instead of 12 per row.

    async fn record_events(
        tx: &mut Transaction<'static, Postgres>,
        events: &[&Event],
        source: &str,
        now: DateTime<Utc>,
    ) -> Result<HashSet<String>> {
        let n = events.len();
        let (mut ids, mut kinds, mut customers, mut at) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let mut payloads = Documents::new(n, 640);
        for ev in events {
            ids.push(ev.id.as_str());
            kinds.push(ev.kind.as_str());
            customers.push(ev.customer.id.as_str());
            at.push(ev.occurred_at);
            payloads.push(ev)?;
        }
        let payloads = payloads.texts();
        let rows: Vec<(String,)> = sqlx::query_as(
            "INSERT INTO events (id, type, customer_id, occurred_at, received_at, source, payload) \
             SELECT e.id, e.type, e.customer_id, e.occurred_at, $6, $7, e.payload::json \
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[]) \
               AS e(id, type, customer_id, occurred_at, payload) \
             ON CONFLICT (id) DO NOTHING RETURNING id",
        )
        .bind(&ids)
        .bind(&kinds)
        .bind(&customers)
        .bind(&at)
        .bind(&payloads)
        .bind(now)
        .bind(source)
        .fetch_all(&mut **tx)
        .await?;
        Ok(rows.into_iter().map(|r| r.0).collect())
    }

    async fn ensure_customers(
        tx: &mut Transaction<'static, Postgres>,
        customers: &[(&str, &str)],
        now: DateTime<Utc>,
    ) -> Result<()> {
        let (ids, emails): (Vec<&str>, Vec<&str>) = customers.iter().copied().unzip();
        sqlx::query(
            "INSERT INTO customers (id, email, profile, updated_at) \
             SELECT c.id, c.email, 'null'::json, $3 FROM UNNEST($1::text[], $2::text[]) AS c(id, email) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&ids)
        .bind(&emails)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    async fn write(
        tx: &mut Transaction<'static, Postgres>,
        w: &mut Writes,
        now: DateTime<Utc>,
    ) -> Result<usize> {
        if !w.profiles.is_empty() {
            let mut ids = Vec::with_capacity(w.profiles.len());
            let mut emails = Vec::with_capacity(w.profiles.len());
            let mut docs = Documents::new(w.profiles.len(), 1024);
            for p in w.profiles.values() {
                ids.push(p.customer.id.as_str());
                emails.push(p.customer.email.as_str());
                docs.push(p)?;
            }
            let docs = docs.texts();
            sqlx::query(
                "INSERT INTO customers (id, email, profile, updated_at) \
                 SELECT p.id, p.email, p.profile::json, $4 FROM UNNEST($1::text[], $2::text[], $3::text[]) \
                   AS p(id, email, profile) \
                 ON CONFLICT (id) DO UPDATE SET email = excluded.email, profile = excluded.profile, \
                   updated_at = excluded.updated_at",
            )
            .bind(&ids)
            .bind(&emails)
            .bind(&docs)
            .bind(now)
            .execute(&mut **tx)
            .await?;
        }
        // Each part is freed once written: a poll's transactions write side
        // by side, and what they hold together is the service's peak.
        w.profiles = BTreeMap::new();
        if !w.enrollments.is_empty() {
            let n = w.enrollments.len();
            let mut keys = Vec::with_capacity(n);
            let mut sequences = Vec::with_capacity(n);
            let mut versions = Vec::with_capacity(n);
            let mut customers = Vec::with_capacity(n);
            let mut orders = Vec::with_capacity(n);
            let mut statuses = Vec::with_capacity(n);
            let mut steps = Vec::with_capacity(n);
            let mut wakes = Vec::with_capacity(n);
            let mut states = Documents::new(n, 512);
            let mut started = Vec::with_capacity(n);
            let mut updated = Vec::with_capacity(n);
            for e in w.enrollments.values() {
                keys.push(e.key.as_str());
                sequences.push(e.sequence.as_str());
                versions.push(e.version.as_str());
                customers.push(e.customer_id.as_str());
                orders.push(e.order_id.as_deref());
                statuses.push(status_str(e.status));
                steps.push(e.step.as_deref());
                wakes.push(e.wake_at());
                states.push(&StateDoc::of(e, w.from_profile.contains(&e.key)))?;
                started.push(e.started_at);
                updated.push(e.updated_at);
            }
            let states = states.texts();
            sqlx::query(
                "INSERT INTO enrollments (key, sequence, version, customer_id, order_id, status, step, \
                   wake_at, lease_until, state, started_at, updated_at) \
                 SELECT e.key, e.sequence, e.version, e.customer_id, e.order_id, e.status, e.step, \
                   e.wake_at, NULL, e.state::json, e.started_at, e.updated_at \
                 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
                   $7::text[], $8::timestamptz[], $9::text[], $10::timestamptz[], $11::timestamptz[]) \
                   AS e(key, sequence, version, customer_id, order_id, status, step, wake_at, state, \
                   started_at, updated_at) \
                 ON CONFLICT (key) DO UPDATE SET version = excluded.version, status = excluded.status, \
                   step = excluded.step, wake_at = excluded.wake_at, lease_until = NULL, \
                   state = excluded.state, updated_at = excluded.updated_at",
            )
            .bind(&keys)
            .bind(&sequences)
            .bind(&versions)
            .bind(&customers)
            .bind(&orders)
            .bind(&statuses)
            .bind(&steps)
            .bind(&wakes)
            .bind(&states)
            .bind(&started)
            .bind(&updated)
            .execute(&mut **tx)
            .await?;
        }
        w.enrollments = BTreeMap::new();
        w.from_profile = FastSet::default();
        let mut written = 0;
        if !w.emails.is_empty() {
            let n = w.emails.len();
            let mut keys = Vec::with_capacity(n);
            let mut customers = Vec::with_capacity(n);
            let mut sequences = Vec::with_capacity(n);
            let mut steps = Vec::with_capacity(n);
            let mut templates = Vec::with_capacity(n);
            let mut categories = Vec::with_capacity(n);
            let mut due = Vec::with_capacity(n);
            let mut contexts = Documents::new(n, 768);
            for m in &w.emails {
                let j = &m.job;
                keys.push(j.idempotency_key.as_str());
                customers.push(j.customer_id.as_str());
                sequences.push(j.sequence.as_str());
                steps.push(j.step.as_str());
                templates.push(j.template.as_str());
                categories.push(j.category.as_str());
                due.push(j.due_at);
                contexts.push(&m.context)?;
            }
            let contexts = contexts.texts();
            // Ids in the order of the arrays (the engine's order): among a
            // customer's emails due at one time, the lower id goes first.
            written = sqlx::query(
                "INSERT INTO outbox (idempotency_key, customer_id, sequence, step, template, category, \
                   status, attempts, not_before, due_at, context, created_at, updated_at) \
                 SELECT o.key, o.customer_id, o.sequence, o.step, o.template, o.category, $9, 0, \
                   o.due_at, o.due_at, o.context::json, $10, $10 \
                 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
                   $7::timestamptz[], $8::text[]) WITH ORDINALITY \
                   AS o(key, customer_id, sequence, step, template, category, due_at, context, n) \
                 ORDER BY o.n \
                 ON CONFLICT (idempotency_key) DO NOTHING",
            )
            .bind(&keys)
            .bind(&customers)
            .bind(&sequences)
            .bind(&steps)
            .bind(&templates)
            .bind(&categories)
            .bind(&due)
            .bind(&contexts)
            .bind(OutboxStatus::Pending.as_str())
            .bind(now)
            .execute(&mut **tx)
            .await?
            .rows_affected() as usize;
        }
        if !w.journal.is_empty() {
            let groups = journal_rows::groups(&w.journal);
            let n = groups.len();
            let mut customers = Vec::with_capacity(n);
            let mut at = Vec::with_capacity(n);
            // About 200 bytes an entry: sized once, not grown by doubling.
            let mut details = Documents::new(n, 200 * w.journal.len() / n);
            for g in &groups {
                customers.push(g.customer_id);
                at.push(g.at);
                details.push(&g.entries)?;
            }
            let details = details.texts();
            // Ids in the order decided: a customer's rows of one instant
            // read back in that order.
            sqlx::query(
                "INSERT INTO journal (customer_id, at, kind, detail) \
                 SELECT j.customer_id, j.at, $4, j.detail::json \
                 FROM UNNEST($1::text[], $2::timestamptz[], $3::text[]) WITH ORDINALITY \
                   AS j(customer_id, at, detail, n) \
                 ORDER BY j.n",
            )
            .bind(&customers)
            .bind(&at)
            .bind(&details)
            .bind(journal_rows::GROUPED)
            .execute(&mut **tx)
            .await?;
        }
        w.journal = Vec::new();
        if !w.suppress.is_empty() {
            let (emails, reasons): (Vec<&str>, Vec<&str>) = w
                .suppress
                .iter()
                .map(|(e, r)| (e.as_str(), r.as_str()))
                .unzip();
            sqlx::query(
                "INSERT INTO suppressions (email, reason, created_at) \
                 SELECT s.email, s.reason, $3 FROM UNNEST($1::text[], $2::text[]) AS s(email, reason) \
                 ON CONFLICT (email) DO NOTHING",
            )
            .bind(&emails)
            .bind(&reasons)
            .bind(now)
            .execute(&mut **tx)
            .await?;
        }
        Ok(written)
    }
}

/// The JSON documents of one column of a multi-row statement, written end
/// to end into one buffer: it grows a few times for the whole batch, where
/// a `String` per document grew from empty a dozen times each (reallocation
/// and copying were a tenth of ingest's CPU).
struct Documents {
    buf: Vec<u8>,
    ends: Vec<usize>,
}

impl Documents {
    /// Room for `n` documents of about `each` bytes.
    fn new(n: usize, each: usize) -> Self {
        Self {
            buf: Vec::with_capacity(n * each),
            ends: Vec::with_capacity(n),
        }
    }

    fn push<T: serde::Serialize + ?Sized>(&mut self, doc: &T) -> Result<()> {
        serde_json::to_writer(&mut self.buf, doc)?;
        self.ends.push(self.buf.len());
        Ok(())
    }

    /// The documents as text, to bind as a `text[]`.
    fn texts(&self) -> Vec<&str> {
        let all = std::str::from_utf8(&self.buf).expect("serde_json writes UTF-8");
        let mut start = 0;
        self.ends
            .iter()
            .map(|&end| {
                let doc = &all[start..end];
                start = end;
                doc
            })
            .collect()
    }
}

impl Affected for sqlx::postgres::PgQueryResult {
    fn rows(&self) -> u64 {
        self.rows_affected()
    }
}
