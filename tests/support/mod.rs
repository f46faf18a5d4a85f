//! Shared by the integration tests: the shipped catalog, event builders, and
//! fresh databases (a temporary SQLite file, or a new PostgreSQL database).
#![allow(dead_code)]

pub mod app;
pub mod dkim;
pub mod smtp;

use std::path::Path;
use std::sync::LazyLock;

use aftercare::event::Event;
use aftercare::sequence::model::Catalog;
use aftercare::store::{PgStore, SqliteStore, Store};
use aftercare::template::Templates;
use aftercare::validate;
use chrono::{DateTime, Utc};

/// The shipped fulfilment sequences (fulfilment, education, review-request,
/// reorder) and the shipped templates: the store and service tests count
/// these sequences' enrollments and emails, so the catalog they use does not
/// grow when content is added to `sequences/` (the retention sequences are
/// tested over the whole shipped folder in tests/simulate.rs and tests/cli.rs).
static LOADED: LazyLock<validate::Loaded> = LazyLock::new(|| {
    let mut l = validate::load(Path::new("sequences"), Path::new("templates"));
    assert!(!l.diagnostics.has_errors(), "{}", l.diagnostics);
    let keep = ["fulfilment", "education", "review-request", "reorder"];
    let sequences = l
        .catalog
        .sequences
        .values()
        .filter(|s| keep.contains(&s.id.as_str()))
        .cloned()
        .collect();
    l.catalog = std::sync::Arc::new(Catalog::new(sequences, l.catalog.policies.clone()));
    l
});

pub fn catalog() -> &'static Catalog {
    &LOADED.catalog
}

pub fn templates() -> &'static Templates {
    &LOADED.templates
}

pub fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

/// An event for customer `c` (Budapest, Hungarian) and order `o`.
pub fn event(id: &str, kind: &str, c: &str, o: &str, at: &str, consent: bool) -> Event {
    Event::parse(&event_json(id, kind, c, o, at, consent)).unwrap()
}

pub fn event_json(id: &str, kind: &str, c: &str, o: &str, at: &str, consent: bool) -> String {
    format!(
        r#"{{"id":"{id}","type":"{kind}","occurred_at":"{at}",
        "customer":{{"id":"{c}","email":"{c}@example.com","first_name":"Anna","locale":"hu-HU",
                    "timezone":"Europe/Budapest","marketing_consent":{consent}}},
        "order":{{"id":"{o}","number":"N-{o}","placed_at":"{at}","currency":"EUR","total":"129.90",
                 "items":[{{"sku":"CAM-200","name":"DSLR 200","category":"camera","quantity":1,"unit_price":"129.90"}}]}},
        "shipment":{{"id":"s-{o}","carrier":"DHL","tracking_number":"JV-{o}","tracking_url":"https://t.example/{o}"}}}}"#
    )
    .replace('\n', " ")
}

pub async fn sqlite() -> (SqliteStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("test.db").display());
    let store = SqliteStore::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    (store, dir)
}

/// The PostgreSQL server the tests use (trust auth on this machine).
pub fn pg_admin_url() -> String {
    std::env::var("AFTERCARE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh, migrated PostgreSQL database, dropped by [`PgDb::drop`].
pub struct PgDb {
    pub store: PgStore,
    pub name: String,
    pub url: String,
}

impl PgDb {
    pub async fn new() -> Self {
        let name = format!("aftercare_test_{}", uuid_like());
        let admin = pg_admin_url();
        let admin_store = PgStore::connect(&admin)
            .await
            .expect("PostgreSQL on 127.0.0.1:5432 (scripts/test starts it)");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin_store.pool)
            .await
            .unwrap();
        admin_store.pool.close().await;
        let base = admin
            .rsplit_once('/')
            .map(|(b, _)| b.to_string())
            .unwrap_or(admin);
        let url = format!("{base}/{name}");
        let store = PgStore::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        Self { store, name, url }
    }

    pub async fn drop(self) {
        self.store.pool.close().await;
        let admin = PgStore::connect(&pg_admin_url()).await.unwrap();
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )))
        .execute(&admin.pool)
        .await;
    }
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{}_{}_{}",
        std::process::id(),
        nanos % 1_000_000_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The service's flags as `aftercare run` parses them, defaults included.
#[derive(clap::Parser)]
struct Flags {
    #[command(flatten)]
    service: aftercare::config::ServiceArgs,
}

/// `aftercare run`'s configuration from `flags` (as on the command line),
/// every other setting at its default.
pub fn service_args(flags: &[&str]) -> aftercare::config::ServiceArgs {
    <Flags as clap::Parser>::parse_from(std::iter::once("aftercare").chain(flags.iter().copied()))
        .service
}

/// An event as a shop sends it: `customer` is the customer's JSON object
/// (all a shop knows, or only `id` and `email`); an `order.placed` carries a
/// camera order, other types only the order id; `shipment.*` a shipment.
pub fn shop_event(id: &str, kind: &str, customer: &str, order: &str, at: DateTime<Utc>) -> String {
    let order = if kind == "order.placed" {
        format!(
            r#"{{"id":"{order}","number":"N-{order}","currency":"EUR","total":"129.90","items":[{{"sku":"CAM-200","name":"DSLR 200","category":"camera","quantity":1,"unit_price":"129.90"}}]}}"#
        )
    } else {
        format!(r#"{{"id":"{order}"}}"#)
    };
    let shipment = if kind.starts_with("shipment.") {
        format!(r#","shipment":{{"id":"s-{id}","carrier":"GLS"}}"#)
    } else {
        String::new()
    };
    format!(
        r#"{{"id":"{id}","type":"{kind}","occurred_at":"{}","customer":{customer},"order":{order}{shipment}}}"#,
        at.to_rfc3339()
    )
}

/// Runs each named `async fn(store)` of the calling test file as two tests,
/// `pg::NAME` on a fresh PostgreSQL database and `sqlite::NAME` on a fresh
/// SQLite file.
#[allow(unused_macros)]
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod pg {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = super::support::PgDb::new().await;
                    super::$name(db.store.clone()).await;
                    db.drop().await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (store, _dir) = super::support::sqlite().await;
                    super::$name(store).await;
                }
            )*
        }
    };
}
#[allow(unused_imports)]
pub(crate) use on_both_stores;
