//! SQLite: the embedded default (`sqlite://aftercare.db`). One writer at a
//! time, so a customer's changes are serialised by the database itself and
//! claims are a conditional `UPDATE … RETURNING`.

use std::str::FromStr;
use std::time::Duration;

use sqlx::Sqlite;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};

use std::collections::{BTreeSet, HashSet};

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{QueryBuilder, Row};

use super::journal_rows;
use super::sql::{
    Affected, Backend, IN_ORDER, MAX_ROWS, QUEUED_COLUMNS, SqlStore, TAKE_OVER, push_in, status_str,
};
use super::state_doc::StateDoc;
use super::{Bucket, Result, Writes};
use crate::engine::outbox::OutboxStatus;
use crate::engine::profile::Profile;
use crate::engine::state::Enrollment;
use crate::event::Event;

pub type SqliteStore = SqlStore<Sqlite>;

impl SqlStore<Sqlite> {
    pub async fn connect(url: &str) -> super::Result<Self> {
        let opts = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(30));
        // One connection: SQLite has one writer anyway, and a single connection
        // makes every transaction exclusive without lock upgrades failing.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(60))
            .connect_with(opts)
            .await?;
        Ok(Self { pool })
    }
}

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

impl Backend for Sqlite {
    /// SQLite has one writer: the transaction itself is the lock.
    const LOCK: &'static str = "";

    const LOCK_UNLESS_HELD: &'static str = "";

    const TAKE_DUE: &'static str = "SELECT key, customer_id FROM enrollments \
        WHERE status = 'active' AND wake_at <= $1 ORDER BY wake_at LIMIT $2";

    const TAKE_DUE_TIMERS: &'static str = "SELECT customer_id, sequence FROM timers \
        WHERE fire_at <= $1 ORDER BY fire_at LIMIT $2";

    const CLAIM_OUTBOX: &'static str = const_format::concatcp!(
        "UPDATE outbox SET lease_until = $2, attempts = attempts + 1, updated_at = $1, claimed_by = $4 \
         WHERE id IN (SELECT id FROM outbox WHERE status IN ('pending', 'sending') AND not_before <= $1 \
         AND (lease_until IS NULL OR lease_until < $1 OR ",
        TAKE_OVER,
        ") AND ",
        IN_ORDER,
        " ORDER BY not_before, id LIMIT $3) RETURNING ",
        QUEUED_COLUMNS
    );

    const FIND: &'static str = "instr";

    const JSON: &'static str = "";

    fn migrator() -> &'static Migrator {
        &MIGRATOR
    }

    fn bucket(column: &str, bucket: Bucket) -> String {
        let format = match bucket {
            Bucket::Hour => "%Y-%m-%dT%H",
            Bucket::Day => "%Y-%m-%d",
        };
        format!("strftime('{format}', {column})")
    }

    fn json_text(column: &str, path: &[&str]) -> String {
        // A string comes out as text; a number is made text, as on PostgreSQL.
        format!(
            "CAST(json_extract({column}, '$.{}') AS TEXT)",
            path.join(".")
        )
    }

    fn push_any<'a>(
        q: &mut QueryBuilder<Sqlite>,
        column: &str,
        values: impl IntoIterator<Item = &'a str>,
    ) {
        q.push(column);
        q.push(" IN ");
        push_in(q, values);
    }

    fn recent_events(
        ids: &[String],
        kinds: &BTreeSet<String>,
        since: DateTime<Utc>,
        cap: usize,
    ) -> QueryBuilder<Sqlite> {
        let mut q = QueryBuilder::new(
            "SELECT customer_id, id, type, occurred_at, CAST(payload AS TEXT) AS payload \
             FROM (SELECT customer_id, id, type, occurred_at, payload, row_number() \
             OVER (PARTITION BY customer_id ORDER BY occurred_at DESC, id DESC) AS n \
             FROM events WHERE customer_id IN ",
        );
        push_in(&mut q, ids);
        q.push(" AND type IN ");
        push_in(&mut q, kinds);
        q.push(" AND occurred_at >= ");
        q.push_bind(since);
        q.push(") recent WHERE n <= ");
        q.push(cap.to_string());
        q
    }

    // Multi-row `VALUES` lists, a chunk at a time.

    async fn record_events(
        tx: &mut sqlx::Transaction<'static, Sqlite>,
        events: &[&Event],
        source: &str,
        now: DateTime<Utc>,
    ) -> Result<HashSet<String>> {
        let mut fresh = HashSet::with_capacity(events.len());
        for chunk in events.chunks(MAX_ROWS) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO events (id, type, customer_id, occurred_at, received_at, source, payload) ",
            );
            q.push_values(chunk, |mut b, ev| {
                b.push_bind(ev.id.as_str())
                    .push_bind(ev.kind.as_str())
                    .push_bind(ev.customer.id.as_str())
                    .push_bind(ev.occurred_at)
                    .push_bind(now)
                    .push_bind(source)
                    .push_bind(Json(*ev));
            });
            q.push(" ON CONFLICT (id) DO NOTHING RETURNING id");
            for r in q.build().fetch_all(&mut **tx).await? {
                fresh.insert(r.try_get("id")?);
            }
        }
        Ok(fresh)
    }

    async fn ensure_customers(
        tx: &mut sqlx::Transaction<'static, Sqlite>,
        customers: &[(&str, &str)],
        now: DateTime<Utc>,
    ) -> Result<()> {
        for chunk in customers.chunks(MAX_ROWS) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO customers (id, email, profile, updated_at) ",
            );
            q.push_values(chunk, |mut b, (id, email)| {
                b.push_bind(*id)
                    .push_bind(*email)
                    .push_bind(Json(serde_json::Value::Null))
                    .push_bind(now);
            });
            q.push(" ON CONFLICT (id) DO NOTHING");
            q.build().execute(&mut **tx).await?;
        }
        Ok(())
    }

    async fn write(
        tx: &mut sqlx::Transaction<'static, Sqlite>,
        w: &mut Writes,
        now: DateTime<Utc>,
    ) -> Result<usize> {
        let profiles: Vec<&Profile> = w.profiles.values().map(|p| &**p).collect();
        for chunk in profiles.chunks(MAX_ROWS) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO customers (id, email, profile, updated_at) ",
            );
            q.push_values(chunk, |mut b, p| {
                b.push_bind(p.customer.id.as_str())
                    .push_bind(p.customer.email.as_str())
                    .push_bind(Json(*p))
                    .push_bind(now);
            });
            q.push(
                " ON CONFLICT (id) DO UPDATE SET email = excluded.email, profile = excluded.profile, \
                 updated_at = excluded.updated_at",
            );
            q.build().execute(&mut **tx).await?;
        }
        let enrollments: Vec<&Enrollment> = w.enrollments.values().collect();
        for chunk in enrollments.chunks(MAX_ROWS) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO enrollments (key, sequence, version, customer_id, order_id, status, step, \
                 wake_at, lease_until, state, started_at, updated_at) ",
            );
            q.push_values(chunk, |mut b, e| {
                b.push_bind(e.key.as_str())
                    .push_bind(e.sequence.as_str())
                    .push_bind(e.version.as_str())
                    .push_bind(e.customer_id.as_str())
                    .push_bind(e.order_id.as_deref())
                    .push_bind(status_str(e.status))
                    .push_bind(e.step.as_deref())
                    .push_bind(e.wake_at())
                    .push_bind(None::<DateTime<Utc>>)
                    .push_bind(Json(StateDoc::of(e, w.from_profile.contains(&e.key))))
                    .push_bind(e.started_at)
                    .push_bind(e.updated_at);
            });
            q.push(
                " ON CONFLICT (key) DO UPDATE SET version = excluded.version, status = excluded.status, \
                 step = excluded.step, wake_at = excluded.wake_at, lease_until = NULL, \
                 state = excluded.state, updated_at = excluded.updated_at",
            );
            q.build().execute(&mut **tx).await?;
        }
        let mut written = 0;
        let emails: Vec<_> = w.emails.iter().collect();
        for chunk in emails.chunks(MAX_ROWS) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO outbox (idempotency_key, customer_id, sequence, step, template, category, \
                 status, attempts, not_before, due_at, context, created_at, updated_at) ",
            );
            q.push_values(chunk, |mut b, m| {
                let j = &m.job;
                b.push_bind(j.idempotency_key.as_str())
                    .push_bind(j.customer_id.as_str())
                    .push_bind(j.sequence.as_str())
                    .push_bind(j.step.as_str())
                    .push_bind(j.template.as_str())
                    .push_bind(j.category.as_str())
                    .push_bind(OutboxStatus::Pending.as_str())
                    .push_bind(0_i64)
                    .push_bind(j.due_at)
                    .push_bind(j.due_at)
                    .push_bind(Json(&m.context))
                    .push_bind(now)
                    .push_bind(now);
            });
            q.push(" ON CONFLICT (idempotency_key) DO NOTHING");
            written += q.build().execute(&mut **tx).await?.rows() as usize;
        }
        let groups = journal_rows::groups(&w.journal);
        for chunk in groups.chunks(MAX_ROWS) {
            let mut q =
                QueryBuilder::<Sqlite>::new("INSERT INTO journal (customer_id, at, kind, detail) ");
            q.push_values(chunk, |mut b, g| {
                b.push_bind(g.customer_id)
                    .push_bind(g.at)
                    .push_bind(journal_rows::GROUPED)
                    .push_bind(Json(&g.entries));
            });
            q.build().execute(&mut **tx).await?;
        }
        let suppress: Vec<_> = w.suppress.iter().collect();
        for chunk in suppress.chunks(MAX_ROWS) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO suppressions (email, reason, created_at) ",
            );
            q.push_values(chunk, |mut b, (email, reason)| {
                b.push_bind(email.as_str())
                    .push_bind(reason.as_str())
                    .push_bind(now);
            });
            q.push(" ON CONFLICT (email) DO NOTHING");
            q.build().execute(&mut **tx).await?;
        }
        Ok(written)
    }
}

impl Affected for sqlx::sqlite::SqliteQueryResult {
    fn rows(&self) -> u64 {
        self.rows_affected()
    }
}
