//! Data rights end to end (README, "Data rights"), on PostgreSQL and on
//! SQLite, with the real service in-process: a customer with orders, emails
//! sent (`.eml`), a bounce, an unsubscribe, opens and clicks and a dead
//! letter is exported, then erased (one by `DELETE /v1/admin/customers/{id}`,
//! one by a `customer.erased` event); afterwards every text column of every
//! table is read raw and neither address nor name is anywhere, the bounced
//! address is still suppressed when it comes back, and the export holds
//! nothing personal.

mod support;

use std::time::Duration;

use aftercare::config::Role;
use aftercare::engine::outbox::OutboxStatus;
use aftercare::store::{Activity, ActivityKind, PgStore, SqliteStore, Store};
use reqwest::StatusCode;
use support::app::{self, App};

const TOKEN: &str = "admin-token-for-rights-0123456789";

/// Reads every text (and JSON) column of every table, as stored.
trait Raw: Store {
    fn text_columns(&self) -> impl std::future::Future<Output = Vec<(String, String)>> + Send;
}

impl Raw for PgStore {
    async fn text_columns(&self) -> Vec<(String, String)> {
        let cols: Vec<(String, String)> = sqlx::query_as(
            "SELECT table_name::text, column_name::text FROM information_schema.columns \
             WHERE table_schema = 'public' \
             AND data_type IN ('text', 'json', 'jsonb', 'character varying')",
        )
        .fetch_all(&self.pool)
        .await
        .unwrap();
        assert!(cols.len() > 20, "{cols:?}");
        let mut out = Vec::new();
        for (table, column) in cols {
            let sql = format!("SELECT CAST(\"{column}\" AS TEXT) FROM \"{table}\"");
            let values: Vec<(Option<String>,)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .fetch_all(&self.pool)
                .await
                .unwrap();
            let at = format!("{table}.{column}");
            out.extend(values.into_iter().filter_map(|(v,)| Some((at.clone(), v?))));
        }
        out
    }
}

impl Raw for SqliteStore {
    async fn text_columns(&self) -> Vec<(String, String)> {
        let tables: Vec<(String,)> =
            sqlx::query_as("SELECT name FROM sqlite_master WHERE type = 'table'")
                .fetch_all(&self.pool)
                .await
                .unwrap();
        let mut out = Vec::new();
        for (table,) in tables {
            let cols: Vec<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT name FROM pragma_table_info('{table}') WHERE upper(type) <> 'BLOB'"
            )))
            .fetch_all(&self.pool)
            .await
            .unwrap();
            // Every column but the migrations' checksums, whatever its
            // declared type: SQLite stores any value in any column.
            for (column,) in cols {
                let sql = format!("SELECT CAST(\"{column}\" AS TEXT) FROM \"{table}\"");
                let values: Vec<(Option<String>,)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .fetch_all(&self.pool)
                    .await
                    .unwrap();
                let at = format!("{table}.{column}");
                out.extend(values.into_iter().filter_map(|(v,)| Some((at.clone(), v?))));
            }
        }
        out
    }
}

/// Where `needles` (without regard to case) are stored.
async fn found<S: Raw>(store: &S, needles: &[&str]) -> Vec<String> {
    let needles: Vec<String> = needles.iter().map(|n| n.to_lowercase()).collect();
    store
        .text_columns()
        .await
        .into_iter()
        .filter(|(_, v)| {
            let v = v.to_lowercase();
            needles.iter().any(|n| v.contains(n))
        })
        .map(|(at, v)| format!("{at}: {v}"))
        .collect()
}

fn customer(id: &str, email: &str, name: &str) -> String {
    format!(
        r#"{{"id":"{id}","email":"{email}","first_name":"{name}","locale":"hu-HU","timezone":"Europe/Budapest","marketing_consent":true,"attributes":{{"nickname":"{name}"}}}}"#
    )
}

fn at(minutes_ago: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now() - chrono::Duration::minutes(minutes_ago)
}

/// A customer's life: two orders (emails sent), a shipment, an open and a
/// click (the URL names the customer), an unsubscribe, a hard bounce, a
/// dead letter naming the address.
async fn a_customer<S: Store>(app: &App, store: &S, id: &str, email: &str, name: &str) {
    let c = customer(id, email, name);
    app.post(&[
        support::shop_event(
            &format!("{id}-o1"),
            "order.placed",
            &c,
            &format!("{id}-A"),
            at(30),
        ),
        support::shop_event(
            &format!("{id}-o2"),
            "order.placed",
            &c,
            &format!("{id}-B"),
            at(29),
        ),
        support::shop_event(
            &format!("{id}-s1"),
            "shipment.shipped",
            &c,
            &format!("{id}-A"),
            at(28),
        ),
    ])
    .await;
    let sent = wait_for(store, id, |rows| {
        rows.iter()
            .filter(|r| r.status == OutboxStatus::Sent)
            .count()
            >= 3
    })
    .await;
    let key = sent[0].idempotency_key.clone();
    for (kind, url) in [
        (ActivityKind::Open, None),
        (
            ActivityKind::Click,
            Some(format!("https://shop.example/account?email={email}")),
        ),
    ] {
        store
            .record_activity(&Activity {
                idempotency_key: key.clone(),
                customer_id: id.to_string(),
                kind,
                url,
                at: at(20),
                machine: false,
            })
            .await
            .unwrap();
    }
    let bare = format!(r#"{{"id":"{id}","email":"{email}"}}"#);
    let unsubscribe = format!(
        r#"{{"id":"{id}-u","type":"customer.unsubscribed","occurred_at":"{}","customer":{bare},"data":{{"scope":"marketing","via":"page"}}}}"#,
        at(15).to_rfc3339()
    );
    let bounce = format!(
        r#"{{"id":"{id}-b","type":"email.bounced","occurred_at":"{}","customer":{bare},"data":{{"kind":"hard","detail":"550 5.1.1 <{email}>: user unknown"}}}}"#,
        at(10).to_rfc3339()
    );
    app.post(&[unsubscribe, bounce]).await;
    // A shop's mistake, kept as a dead letter: it names the address.
    let bad = support::shop_event(&format!("{id}-bad"), "order.placed", &c, "X", at(5))
        .replace("\"129.90\"", "129.9");
    let r = reqwest::Client::new()
        .post(app.url())
        .body(bad)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

/// The outbox rows of `customer` once `done` holds for them.
async fn wait_for<S: Store>(
    store: &S,
    customer: &str,
    done: impl Fn(&[aftercare::store::OutboxView]) -> bool,
) -> Vec<aftercare::store::OutboxView> {
    for _ in 0..150 {
        let rows: Vec<_> = store
            .outbox()
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.customer_id == customer)
            .collect();
        if done(&rows) {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{customer}'s emails did not get there");
}

fn admin(app: &App, path: &str) -> String {
    format!("http://{}/v1/admin{path}", app.addr)
}

async fn export(app: &App, id: &str) -> (StatusCode, serde_json::Value) {
    let r = reqwest::Client::new()
        .get(admin(app, &format!("/customers/{id}/export")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap())
}

async fn an_erased_customer_leaves_no_personal_data<S: Raw>(store: S) {
    let app = app::spawn_with(
        store.clone(),
        None,
        &["--admin-token", TOKEN],
        &[Role::Http, Role::Schedule, Role::Send],
    )
    .await;
    let anna = ("anna-7", "Zsofia.Kovacs@Example.com", "Zsófia");
    let bela = ("bela-9", "bela.nagy@example.org", "Bélamér");
    let other = ("cili-3", "cili@example.net", "Cecília");
    for (id, email, name) in [anna, bela, other] {
        a_customer(&app, &store, id, email, name).await;
    }

    // Before: the export has everything, the address and the name in it.
    let (status, before) = export(&app, anna.0).await;
    assert_eq!(status, StatusCode::OK);
    let text = before.to_string().to_lowercase();
    assert!(text.contains(&anna.1.to_lowercase()) && text.contains(&anna.2.to_lowercase()));
    assert_eq!(before["profile"]["customer"]["first_name"], anna.2);
    assert_eq!(before["events"].as_array().unwrap().len(), 5);
    assert!(before["enrollments"].as_array().unwrap().len() >= 2);
    assert!(before["outbox"].as_array().unwrap().len() >= 3);
    assert!(before["outbox"][0]["context"]["customer"]["email"].is_string());
    assert!(before["deliveries"].as_array().unwrap().len() >= 3);
    assert_eq!(before["activity"].as_array().unwrap().len(), 2);
    assert_eq!(before["suppressions"].as_array().unwrap().len(), 1);
    assert_eq!(before["dead_letters"].as_array().unwrap().len(), 1);
    assert!(before["erasures"].as_array().unwrap().is_empty());
    let everywhere = found(&store, &[anna.1, anna.2]).await;
    assert!(everywhere.len() > 5, "{everywhere:#?}");

    // Anna by the admin API; Béla by the shop's event.
    let http = reqwest::Client::new();
    let r = http
        .delete(admin(&app, &format!("/customers/{}", anna.0)))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let answer: serde_json::Value = r.json().await.unwrap();
    assert_eq!(answer["erased"]["profile"], true, "{answer}");
    assert_eq!(answer["erased"]["events"], 5);
    assert_eq!(answer["erasures"][0]["source"], "admin");
    let erase = format!(
        r#"{{"id":"erase-{}","type":"customer.erased","occurred_at":"{}","customer":{{"id":"{}","email":"{}"}}}}"#,
        bela.0,
        at(0).to_rfc3339(),
        bela.0,
        bela.1
    );
    let answer = app.post(std::slice::from_ref(&erase)).await;
    assert_eq!(answer["accepted"], 1);
    assert!(
        answer["unused_types"].as_array().unwrap().is_empty(),
        "{answer}"
    );
    assert!(
        answer["unknown_types"].as_array().unwrap().is_empty(),
        "{answer}"
    );

    // Nowhere: not in any text column of any table.
    for (_, email, name) in [anna, bela] {
        let left = found(&store, &[email, name]).await;
        assert!(left.is_empty(), "{email} / {name} still stored: {left:#?}");
    }
    assert!(!found(&store, &[other.1, other.2]).await.is_empty());

    // The export holds the erasure only; nothing personal.
    for (id, email, name) in [anna, bela] {
        let (status, after) = export(&app, id).await;
        assert_eq!(status, StatusCode::OK);
        let text = after.to_string().to_lowercase();
        assert!(
            !text.contains(&email.to_lowercase()) && !text.contains(&name.to_lowercase()),
            "{after}"
        );
        assert!(after["profile"].is_null());
        for list in ["events", "enrollments", "outbox", "deliveries", "activity"] {
            assert!(
                after[list].as_array().unwrap().is_empty(),
                "{list}: {after}"
            );
        }
        assert_eq!(after["erasures"].as_array().unwrap().len(), 1);
    }
    let (_, bela_after) = export(&app, bela.0).await;
    assert_eq!(bela_after["erasures"][0]["source"], "http");
    assert_eq!(
        bela_after["erasures"][0]["event_id"],
        format!("erase-{}", bela.0)
    );

    // Old events again: still duplicates. The erasure again: one too.
    let again = app
        .post(&[
            support::shop_event(
                &format!("{}-o1", anna.0),
                "order.placed",
                &customer(anna.0, anna.1, anna.2),
                "A",
                at(30),
            ),
            erase,
        ])
        .await;
    assert_eq!(again["duplicates"], 2, "{again}");

    // Anna comes back with a new order (under another spelling of the
    // address): a fresh start, but the bounced address stays suppressed.
    let back = customer(anna.0, &anna.1.to_lowercase(), anna.2);
    app.post(&[support::shop_event(
        "anna-back",
        "order.placed",
        &back,
        "C",
        at(0),
    )])
    .await;
    let rows = wait_for(&store, anna.0, |rows| {
        !rows.is_empty() && rows.iter().all(|r| r.status == OutboxStatus::Skipped)
    })
    .await;
    assert!(
        rows[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("suppressed")),
        "{rows:?}"
    );
    let (_, fresh) = export(&app, anna.0).await;
    assert_eq!(fresh["events"].as_array().unwrap().len(), 1);
    assert_eq!(fresh["erasures"].as_array().unwrap().len(), 1);

    // Nobody at all: 404.
    let r = http
        .delete(admin(&app, "/customers/nobody-here"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(export(&app, "nobody-here").await.0, StatusCode::NOT_FOUND);
    app.shutdown().await;
}

support::on_both_stores!(an_erased_customer_leaves_no_personal_data);

#[test]
fn retention_is_checked_at_start() {
    let err = support::service_args(&["--retention", "7d"])
        .retention()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("AFTERCARE_RETENTION") && err.contains("30d"),
        "{err}"
    );
    let err = support::service_args(&["--retention", "400"])
        .retention()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("AFTERCARE_RETENTION") && err.contains("no unit"),
        "{err}"
    );
    assert_eq!(
        support::service_args(&["--retention", "400d"])
            .retention()
            .unwrap(),
        Some(chrono::Duration::days(400))
    );
    assert_eq!(support::service_args(&[]).retention().unwrap(), None);
}
