//! SQLite: the embedded default (`sqlite://aftercare.db`). One writer at a
//! time, so a customer's changes are serialised by the database itself and
//! claims are a conditional `UPDATE … RETURNING`.

use std::str::FromStr;
use std::time::Duration;

use sqlx::Sqlite;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};

use super::sql::{Affected, Backend, QUEUED_COLUMNS, SqlStore};

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

    const CLAIM_DUE: &'static str = "UPDATE enrollments SET lease_until = $2 WHERE key IN (\
        SELECT key FROM enrollments WHERE status = 'active' AND wake_at <= $1 \
        AND (lease_until IS NULL OR lease_until < $1) ORDER BY wake_at LIMIT $3) \
        RETURNING key, customer_id";

    const CLAIM_OUTBOX: &'static str = const_format::concatcp!(
        "UPDATE outbox SET lease_until = $2, attempts = attempts + 1, updated_at = $1 WHERE id IN (\
         SELECT id FROM outbox WHERE ((status = 'pending' AND not_before <= $1) OR status = 'sending') \
         AND (lease_until IS NULL OR lease_until < $1) ORDER BY not_before, id LIMIT $3) \
         RETURNING ",
        QUEUED_COLUMNS
    );

    fn migrator() -> &'static Migrator {
        &MIGRATOR
    }
}

impl Affected for sqlx::sqlite::SqliteQueryResult {
    fn rows(&self) -> u64 {
        self.rows_affected()
    }
}
