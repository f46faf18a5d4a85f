//! PostgreSQL: production, any number of instances. Claims use
//! `FOR UPDATE SKIP LOCKED`; a customer's changes hold that customer's row lock.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::common::{OUTBOX_CLAIM_COLUMNS, impl_store};

#[derive(Clone)]
pub struct PgStore {
    pub pool: PgPool,
}

impl PgStore {
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

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Appended to the customer query: holds each customer's row lock.
const LOCK_SUFFIX: &str = " FOR UPDATE";

const CLAIM_DUE: &str = "UPDATE enrollments SET lease_until = $2 WHERE key IN (\
    SELECT key FROM enrollments WHERE status = 'active' AND wake_at <= $1 \
    AND (lease_until IS NULL OR lease_until < $1) ORDER BY wake_at LIMIT $3 FOR UPDATE SKIP LOCKED) \
    RETURNING key, customer_id";

const CLAIM_OUTBOX: &str = const_format::concatcp!(
    "UPDATE outbox SET lease_until = $2, attempts = attempts + 1, updated_at = $1 WHERE id IN (\
     SELECT id FROM outbox WHERE ((status = 'pending' AND not_before <= $1) OR status = 'sending') \
     AND (lease_until IS NULL OR lease_until < $1) ORDER BY not_before, id LIMIT $3 FOR UPDATE SKIP LOCKED) \
     RETURNING ",
    OUTBOX_CLAIM_COLUMNS
);

impl_store!(PgStore, sqlx::Postgres);
