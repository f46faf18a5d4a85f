//! PostgreSQL: production, any number of instances. Claims use
//! `FOR UPDATE SKIP LOCKED`; a customer's changes hold that customer's row lock.

use std::str::FromStr;
use std::time::Duration;

use sqlx::Postgres;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use super::sql::{Affected, Backend, QUEUED_COLUMNS, SqlStore};

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

    const CLAIM_DUE: &'static str = "UPDATE enrollments SET lease_until = $2 WHERE key IN (\
        SELECT key FROM enrollments WHERE status = 'active' AND wake_at <= $1 \
        AND (lease_until IS NULL OR lease_until < $1) ORDER BY wake_at LIMIT $3 FOR UPDATE SKIP LOCKED) \
        RETURNING key, customer_id";

    const CLAIM_OUTBOX: &'static str = const_format::concatcp!(
        "UPDATE outbox SET lease_until = $2, attempts = attempts + 1, updated_at = $1 WHERE id IN (\
         SELECT id FROM outbox WHERE ((status = 'pending' AND not_before <= $1) OR status = 'sending') \
         AND (lease_until IS NULL OR lease_until < $1) ORDER BY not_before, id LIMIT $3 FOR UPDATE SKIP LOCKED) \
         RETURNING ",
        QUEUED_COLUMNS
    );

    fn migrator() -> &'static Migrator {
        &MIGRATOR
    }
}

impl Affected for sqlx::postgres::PgQueryResult {
    fn rows(&self) -> u64 {
        self.rows_affected()
    }
}
