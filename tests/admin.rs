//! The admin API against the real service (in-process on port 0, over
//! PostgreSQL and over SQLite): the bearer token guards every path under
//! `/v1/admin/`, and without a token the API is off.

mod support;

use std::any::Any;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aftercare::config::Role;
use aftercare::engine::outbox::{OutboxStatus, Outcome};
use aftercare::store::{DeliveryView, OutboxView, PgStore, SqliteStore, Store};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::app::{self, App};
use support::event_json;
use support::smtp::SmtpServer;

const TOKEN: &str = "admin-token-for-tests-0123456789";

async fn spawn_admin<S: Store>(store: S, token: Option<&str>) -> App {
    let mut flags = Vec::new();
    if let Some(t) = token {
        flags.extend(["--admin-token", t]);
    }
    app::spawn_with(store, None, &flags, &[Role::Http]).await
}

fn admin_url(app: &App, path: &str) -> String {
    format!("http://{}/v1/admin{path}", app.addr)
}

async fn every_admin_path_wants_the_token<S: Store>(store: S) {
    let app = spawn_admin(store, Some(TOKEN)).await;
    let http = reqwest::Client::new();
    for path in ["", "/", "/deliveries", "/no/such/path"] {
        let url = admin_url(&app, path);
        let r = http.get(&url).send().await.unwrap();
        assert_eq!(
            r.status(),
            StatusCode::UNAUTHORIZED,
            "GET {url} without a token"
        );
        assert!(r.headers().contains_key("www-authenticate"));
        let r = http
            .delete(&url)
            .bearer_auth("wrong-token-wrong-token")
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::UNAUTHORIZED,
            "DELETE {url}, wrong token"
        );
        // The token, but not as a bearer token.
        let r = http
            .get(&url)
            .header("authorization", TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::UNAUTHORIZED,
            "GET {url}, not Bearer"
        );
    }
    let r = http
        .get(admin_url(&app, "/no/such/path"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    app.shutdown().await;
}

async fn without_a_token_the_admin_api_is_off<S: Store>(store: S) {
    let app = spawn_admin(store, None).await;
    let r = reqwest::Client::new()
        .get(admin_url(&app, "/deliveries"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("AFTERCARE_ADMIN_TOKEN"),
        "{body}"
    );
    app.shutdown().await;
}

/// The service with the admin token, `roles` and `flags`.
async fn spawn<S: Store>(store: &S, roles: &[Role], flags: &[&str]) -> App {
    let mut all = vec!["--admin-token", TOKEN];
    all.extend_from_slice(flags);
    app::spawn_with(store.clone(), None, &all, roles).await
}

const MAILING: [Role; 3] = [Role::Http, Role::Schedule, Role::Send];

/// The admin API of a running service, with the token.
struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    fn of(app: &App) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: admin_url(app, ""),
        }
    }

    async fn call(&self, r: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let r = r.bearer_auth(TOKEN).send().await.unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {status} {text}"));
        (status, body)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(self.http.post(format!("{}{path}", self.base)).json(&body))
            .await
    }

    async fn delete(&self, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut r = self.http.delete(format!("{}{path}", self.base));
        if let Some(b) = body {
            r = r.json(&b);
        }
        self.call(r).await
    }
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// An `order.placed` of customer `c` (`c@example.com`) for order `o`.
fn placed(id: &str, c: &str, o: &str) -> String {
    event_json(id, "order.placed", c, o, &now_rfc3339(), true)
}

/// Waits (up to 60 s) until `done` holds of the delivery log.
async fn until_log<S: Store>(store: &S, what: &str, done: impl Fn(&[DeliveryView]) -> bool) {
    for _ in 0..600 {
        if done(&store.deliveries().await.unwrap()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = store.deliveries().await.unwrap();
    panic!("waited 60 s for {what}; the delivery log: {log:#?}");
}

fn sent(log: &[DeliveryView], key_part: &str) -> bool {
    log.iter()
        .any(|d| d.outcome == Outcome::Sent && d.idempotency_key.contains(key_part))
}

/// The outbox row whose key contains `part`.
async fn row<S: Store>(store: &S, part: &str) -> OutboxView {
    let rows = store.outbox().await.unwrap();
    rows.iter()
        .find(|r| r.idempotency_key.contains(part))
        .cloned()
        .unwrap_or_else(|| panic!("no outbox row {part}: {rows:#?}"))
}

fn eml_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "eml"))
                .collect()
        })
        .unwrap_or_default()
}

/// The `.eml` files addressed to `to`.
fn mail_to(dir: &Path, to: &str) -> usize {
    eml_files(dir)
        .iter()
        .filter(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .any(|l| l.starts_with("To:") && l.contains(to))
        })
        .count()
}

async fn the_delivery_log_is_searched_and_paged<S: Store>(store: S) {
    let app = spawn(&store, &MAILING, &[]).await;
    let api = Api::of(&app);
    app.post(&[
        placed("d1", "dora", "o1"),
        placed("d2", "emil", "o2"),
        placed("d3", "fay", "o3"),
    ])
    .await;
    until_log(&store, "three confirmations sent", |l| {
        l.iter().filter(|d| d.outcome == Outcome::Sent).count() == 3
    })
    .await;
    let (status, all) = api.get("/deliveries").await;
    assert_eq!(status, StatusCode::OK, "{all}");
    let entries = all["deliveries"].as_array().unwrap();
    assert_eq!(entries.len(), 3, "{all}");
    assert!(all.get("next").is_none(), "one page: {all}");
    let ids: Vec<i64> = entries.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    let e = &entries[0];
    for field in [
        "at",
        "outbox_id",
        "customer_id",
        "address",
        "sequence",
        "step",
        "template",
    ] {
        assert!(!e[field].is_null(), "{field}: {e}");
    }
    assert_eq!(e["outcome"], "sent");

    // By address (any case), customer, sequence and template, outcome, time.
    let (_, by) = api.get("/deliveries?address=EMIL@example.com").await;
    let by = by["deliveries"].as_array().unwrap().clone();
    assert_eq!(by.len(), 1);
    assert_eq!(by[0]["customer_id"], "emil");
    let (_, by) = api
        .get("/deliveries?customer=fay&sequence=fulfilment&template=order-confirmation&status=sent")
        .await;
    assert_eq!(by["deliveries"].as_array().unwrap().len(), 1, "{by}");
    let (_, none) = api.get("/deliveries?status=failed").await;
    assert_eq!(none["deliveries"], json!([]));
    let (_, none) = api.get("/deliveries?since=2099-01-01T00:00:00Z").await;
    assert_eq!(none["deliveries"], json!([]));
    let (_, old) = api
        .get("/deliveries?since=2020-01-01T00:00:00Z&until=2099-01-01T00:00:00Z")
        .await;
    assert_eq!(old["deliveries"].as_array().unwrap().len(), 3);

    // Pages of two: the first says where the next begins, the last does not.
    let (_, first) = api.get("/deliveries?limit=2").await;
    assert_eq!(first["deliveries"].as_array().unwrap().len(), 2);
    let next = first["next"].as_i64().expect("a next page");
    assert_eq!(next, ids[1]);
    let (_, rest) = api.get(&format!("/deliveries?limit=2&before={next}")).await;
    assert_eq!(rest["deliveries"].as_array().unwrap().len(), 1);
    assert_eq!(rest["deliveries"][0]["id"].as_i64(), Some(ids[2]));
    assert!(rest.get("next").is_none(), "{rest}");
    // A full last page has no next either.
    let (_, exact) = api.get("/deliveries?limit=3").await;
    assert!(exact.get("next").is_none(), "{exact}");

    // Bad parameters: 400 naming the parameter and what it wants.
    for (query, says) in [
        (
            "since=yesterday",
            r#"since: "yesterday" is not RFC 3339 (2026-11-26T10:00:00Z)"#,
        ),
        (
            "status=bounced",
            r#"status: "bounced" is not an outcome (sent, deferred, skipped, retry, failed)"#,
        ),
        (
            "limit=5000",
            r#"limit: "5000" is not a whole number from 1 to 1000"#,
        ),
        (
            "before=x",
            r#"before: "x" is not a cursor (the `next` of the page before)"#,
        ),
        (
            "adress=a@b.c",
            "adress: unknown parameter (known: since, until, sequence, template, status, customer, address, before, limit)",
        ),
    ] {
        let (status, body) = api.get(&format!("/deliveries?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_eq!(body["error"], says, "{query}");
    }
    app.shutdown().await;
}

async fn a_customer_is_shown_as_stored<S: Store>(store: S) {
    let app = spawn(&store, &MAILING, &[]).await;
    let api = Api::of(&app);
    app.post(&[placed("g1", "gita", "o1")]).await;
    until_log(&store, "the confirmation sent", |l| sent(l, "gita")).await;
    let (status, c) = api.get("/customers/gita").await;
    assert_eq!(status, StatusCode::OK, "{c}");
    assert_eq!(c["id"], "gita");
    assert_eq!(c["email"], "gita@example.com");
    assert_eq!(c["profile"]["customer"]["first_name"], "Anna");
    assert_eq!(c["profile"]["customer"]["timezone"], "Europe/Budapest");
    assert_eq!(c["consent"]["marketing"], true);
    assert_eq!(c["consent"]["unsubscribed"], false);
    assert_eq!(
        c["suppression"],
        json!({"suppressed": false, "reason": null, "list": null})
    );
    assert_eq!(c["stopped"], Value::Null);
    let e = &c["enrollments"][0];
    assert_eq!(e["key"], "fulfilment/gita/o1");
    assert_eq!(e["status"], "active");
    assert_eq!(e["step"], "await-shipment");
    assert_eq!(e["waiting_for"], "shipment.shipped");
    assert!(e["waiting_until"].is_string(), "{e}");
    assert_eq!(c["emails"], json!({"sent": 1}));

    // Unsubscribed, then hard-bounced: consent and suppression with why.
    let at = now_rfc3339();
    let unsub = event_json("g2", "customer.unsubscribed", "gita", "o1", &at, true);
    let bounce = format!(
        r#"{{"id":"g3","type":"email.bounced","occurred_at":"{at}","customer":{{"id":"gita","email":"gita@example.com"}},"data":{{"kind":"hard"}}}}"#
    );
    app.post(&[unsub, bounce]).await;
    let (_, c) = api.get("/customers/gita").await;
    assert_eq!(c["consent"]["marketing"], false, "{c}");
    assert_eq!(c["consent"]["unsubscribed"], true);
    assert_eq!(c["suppression"]["suppressed"], true);
    assert_eq!(c["suppression"]["reason"], "hard bounce");
    assert_eq!(c["suppression"]["list"]["email"], "gita@example.com");
    assert!(
        c["suppression"]["list"]["reason"]
            .as_str()
            .unwrap()
            .contains("email.bounced g3"),
        "{c}"
    );

    let (status, body) = api.get("/customers/nobody").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], r#"no customer "nobody""#);
    app.shutdown().await;
}

/// A stop ends the customer's enrollments and skips their pending mail in
/// one go; it holds for new events until an operator lifts it.
async fn an_operator_stops_all_of_a_customers_mail<S: Store>(store: S) {
    // No sender yet: the confirmation waits in the outbox.
    let app = spawn(&store, &[Role::Http], &[]).await;
    let api = Api::of(&app);
    app.post(&[placed("h1", "hugo", "o1"), placed("h2", "ines", "o2")])
        .await;
    let pending = row(&store, "hugo/o1").await;
    assert_eq!(pending.status, OutboxStatus::Pending);

    for (body, says) in [
        (json!({}), "reason: a reason is required (why, for the log)"),
        (
            json!({"reason": "  "}),
            "reason: a reason is required (why, for the log)",
        ),
        (
            json!({"why": "x"}),
            "body.why: unknown field `why`, expected `reason` at line 1 column 6",
        ),
    ] {
        let (status, err) = api.post("/customers/hugo/stop", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
        assert_eq!(err["error"], says);
    }
    let (status, _) = api
        .post("/customers/nobody/stop", json!({"reason": "x"}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, stop) = api
        .post("/customers/hugo/stop", json!({"reason": "asked by phone"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{stop}");
    assert_eq!(stop["stopped"]["reason"], "asked by phone");
    assert_eq!(stop["enrollments_exited"], json!(["fulfilment/hugo/o1"]));
    assert_eq!(stop["emails_skipped"], json!([pending.id]));
    let why = "stopped by an operator: asked by phone";
    let skipped = row(&store, "hugo/o1").await;
    assert_eq!(skipped.status, OutboxStatus::Skipped);
    assert_eq!(skipped.last_error.as_deref(), Some(why));
    let e = &store.enrollments_of("hugo").await.unwrap()[0];
    assert_eq!(e.status, aftercare::engine::state::Status::Exited);
    assert_eq!(e.ended_reason.as_deref(), Some(why));
    let (_, log) = api.get("/deliveries?customer=hugo").await;
    assert_eq!(log["deliveries"][0]["outcome"], "skipped");
    assert_eq!(log["deliveries"][0]["detail"], why);
    // Another customer is untouched.
    assert_eq!(row(&store, "ines/o2").await.status, OutboxStatus::Pending);
    let (_, c) = api.get("/customers/hugo").await;
    assert_eq!(c["stopped"]["reason"], "asked by phone", "{c}");
    app.shutdown().await;

    // With a sender: a new order of the stopped customer is recorded and
    // enrolled, and its email skipped with the stop's reason.
    let app = spawn(&store, &MAILING, &[]).await;
    let api = Api::of(&app);
    app.post(&[placed("h3", "hugo", "o3")]).await;
    until_log(&store, "o3 decided", |l| {
        l.iter().any(|d| d.idempotency_key.contains("hugo/o3"))
    })
    .await;
    until_log(&store, "ines's confirmation sent", |l| sent(l, "ines/o2")).await;
    let o3 = row(&store, "hugo/o3").await;
    assert_eq!(o3.status, OutboxStatus::Skipped);
    assert_eq!(o3.last_error.as_deref(), Some(why));
    assert_eq!(mail_to(&app.outbox, "hugo@example.com"), 0);
    assert_eq!(mail_to(&app.outbox, "ines@example.com"), 1);

    // Lifted: mail goes out again (what was skipped stays skipped).
    let (status, lifted) = api.delete("/customers/hugo/stop", None).await;
    assert_eq!(status, StatusCode::OK, "{lifted}");
    assert_eq!(lifted["lifted"]["reason"], "asked by phone");
    let (status, again) = api.delete("/customers/hugo/stop", None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");
    app.post(&[placed("h4", "hugo", "o4")]).await;
    until_log(&store, "o4 sent", |l| sent(l, "hugo/o4")).await;
    assert_eq!(mail_to(&app.outbox, "hugo@example.com"), 1);
    assert_eq!(row(&store, "hugo/o3").await.status, OutboxStatus::Skipped);
    app.shutdown().await;
}

/// Makes the store refuse events whose id starts with `poison` (as a
/// database may refuse a value for its own reasons), or stop refusing.
async fn refuse_poison<S: Store>(store: &S, on: bool) {
    let any = store as &dyn Any;
    if let Some(s) = any.downcast_ref::<SqliteStore>() {
        let sql = if on {
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON events WHEN NEW.id LIKE 'poison%' \
             BEGIN SELECT RAISE(ABORT, 'poisoned event'); END"
        } else {
            "DROP TRIGGER refuse_poison"
        };
        sqlx::query(sql).execute(&s.pool).await.unwrap();
    } else if let Some(s) = any.downcast_ref::<PgStore>() {
        let sql: &[&str] = if on {
            &[
                "CREATE FUNCTION refuse_poison() RETURNS trigger AS $$ BEGIN \
                 IF NEW.id LIKE 'poison%' THEN RAISE EXCEPTION 'poisoned event %', NEW.id \
                 USING ERRCODE = '22023'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql",
                "CREATE TRIGGER refuse_poison BEFORE INSERT ON events \
                 FOR EACH ROW EXECUTE FUNCTION refuse_poison()",
            ]
        } else {
            &["DROP TRIGGER refuse_poison ON events"]
        };
        for q in sql {
            sqlx::query(sqlx::AssertSqlSafe(*q))
                .execute(&s.pool)
                .await
                .unwrap();
        }
    } else {
        panic!("a database store");
    }
}

/// The id of the one dead letter whose payload contains `part`.
fn letter_id(list: &Value, part: &str) -> String {
    let found: Vec<&Value> = list["dead_letters"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["payload"].as_str().unwrap().contains(part))
        .collect();
    assert_eq!(found.len(), 1, "{part}: {list}");
    found[0]["id"].as_str().unwrap().to_string()
}

/// Dead letters from the webhook and a file, replayed one by one and all
/// at once: a letter that was never an event stays dead; one the store
/// refused goes through once the store takes it; one whose event came
/// again meanwhile is a duplicate. Either way it leaves the list.
async fn dead_letters_are_replayed_through_ingest<S: Store>(store: S) {
    refuse_poison(&store, true).await;
    let app = spawn(&store, &[Role::Http], &[]).await;
    let api = Api::of(&app);
    let at = now_rfc3339();
    let bad_total = event_json("bad-total", "order.placed", "kim", "o9", &at, true)
        .replace(r#""total":"129.90""#, r#""total":"lots""#);
    let items = [
        event_json("ok-1", "order.placed", "kim", "o1", &at, true),
        event_json("poison-h", "order.placed", "kim", "o2", &at, true),
        event_json("poison-d", "order.placed", "lea", "o3", &at, true),
        bad_total,
    ];
    let r = reqwest::Client::new()
        .post(app.url())
        .body(format!("[{}]", items.join(",")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // A file with a line that is not JSON and one the store refuses.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.jsonl");
    let poisoned_line = event_json("poison-f", "order.placed", "mia", "o4", &at, true);
    std::fs::write(&file, format!("{{\"id\": \"broken\", \n{poisoned_line}\n")).unwrap();
    let clock = aftercare::clock::SystemClock;
    let report = aftercare::ingest::file::ingest_file(
        &store,
        support::catalog(),
        &clock,
        &file,
        aftercare::ingest::file::Mode::Live,
    )
    .await
    .unwrap();
    assert_eq!(report.invalid, 2);

    let (status, list) = api.get("/dead-letters").await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["dead_letters"].as_array().unwrap().len(), 5, "{list}");
    let broken = letter_id(&list, "broken");
    let poison_h = letter_id(&list, "poison-h");
    let poison_d = letter_id(&list, "poison-d");
    let l = list["dead_letters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["id"] == poison_h)
        .unwrap();
    assert_eq!(l["source"], "http");
    assert_eq!(l["count"], 1);
    assert!(
        l["reason"].as_str().unwrap().contains("poisoned event"),
        "{l}"
    );
    assert!(l["origin"].as_str().unwrap().ends_with("item 1"), "{l}");
    assert!(l["first_seen_at"].is_string() && l["last_seen_at"].is_string());

    // Not JSON: dead again, for the same reason, under the same id.
    let (status, r) = api
        .post(&format!("/dead-letters/{broken}/replay"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(r["outcome"], "dead");
    assert_eq!(r["now_id"], broken.as_str());
    let was = list["dead_letters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["id"] == broken)
        .unwrap()["reason"]
        .clone();
    assert_eq!(r["reason"], was);
    assert!(
        was.as_str()
            .unwrap()
            .starts_with("invalid JSON: it ends before the event does"),
        "{was}"
    );
    assert!(r.get("event_id").is_none(), "no id to read: {r}");
    // Still refused by the store: dead again.
    let (_, r) = api
        .post(&format!("/dead-letters/{poison_h}/replay"), json!({}))
        .await;
    assert_eq!(r["outcome"], "dead", "{r}");
    assert_eq!(r["event_id"], "poison-h");
    assert_eq!(store.event_count().await.unwrap(), 1);

    // The store takes them now; the shop sent poison-d again meanwhile.
    refuse_poison(&store, false).await;
    app.post(&[event_json(
        "poison-d",
        "order.placed",
        "lea",
        "o3",
        &at,
        true,
    )])
    .await;
    let (_, r) = api
        .post(&format!("/dead-letters/{poison_h}/replay"), json!({}))
        .await;
    assert_eq!(r["outcome"], "applied", "{r}");
    assert_eq!(r["event_id"], "poison-h");
    assert_eq!(r["emails"], 1);
    assert_eq!(row(&store, "kim/o2").await.status, OutboxStatus::Pending);
    let (status, _) = api
        .post(&format!("/dead-letters/{poison_h}/replay"), json!({}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "gone from the list");

    // A bounce report that was not one: kept as a letter, never an event.
    let r = reqwest::Client::new()
        .post(format!("http://{}/v1/bounces", app.addr))
        .header("content-type", "text/plain")
        .body("not a report")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let (_, list) = api.get("/dead-letters").await;
    let report = letter_id(&list, "not a report");

    // All the rest: poison-d is a duplicate, poison-f applied, the others
    // stay dead; the report keeps the reason it came with.
    let (status, all) = api.post("/dead-letters/replay", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{all}");
    assert_eq!(
        (
            all["applied"].as_u64(),
            all["duplicates"].as_u64(),
            all["dead"].as_u64()
        ),
        (Some(1), Some(1), Some(3)),
        "{all}"
    );
    let fate = |id: &str| {
        all["replayed"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .unwrap()["outcome"]
            .clone()
    };
    assert_eq!(fate(&poison_d), "duplicate");
    assert_eq!(fate(&broken), "dead");
    assert_eq!(fate(&report), "dead");
    assert_eq!(row(&store, "mia/o4").await.status, OutboxStatus::Pending);
    assert_eq!(store.event_count().await.unwrap(), 4);
    let (_, list) = api.get("/dead-letters").await;
    let left: Vec<&str> = list["dead_letters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["payload"].as_str().unwrap())
        .collect();
    assert_eq!(left.len(), 3, "{list}");
    assert_eq!(letter_id(&list, "not a report"), report, "its reason kept");
    assert!(
        left.iter().any(|p| p.contains("broken")) && left.iter().any(|p| p.contains("bad-total"))
    );
    let bad = list["dead_letters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["payload"].as_str().unwrap().contains("bad-total"))
        .unwrap();
    assert!(
        bad["reason"].as_str().unwrap().starts_with("order.total"),
        "{bad}"
    );
    let (status, _) = api.post("/dead-letters/nope/replay", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.shutdown().await;
}

/// A really failed email (the relay said 451 until its retries ran out)
/// goes out once an operator retries it, its history kept.
async fn an_operator_retries_a_failed_email<S: Store>(store: S) {
    let server = SmtpServer::start();
    let smtp = server.url();
    let flags = ["--smtp-url", smtp.as_str(), "--smtp-retry", "1s"];
    let app = spawn(&store, &[Role::Http, Role::Send], &flags).await;
    let api = Api::of(&app);
    // The test server answers `later…` addresses 451 twice, then 250.
    let c = r#"{"id":"later-n","email":"later-n@example.com","marketing_consent":true}"#;
    let ev = support::shop_event("n1", "order.placed", c, "o1", chrono::Utc::now());
    app.post(&[ev]).await;
    until_log(&store, "the confirmation failed", |l| {
        l.iter().any(|d| d.outcome == Outcome::Failed)
    })
    .await;
    let failed = row(&store, "later-n/o1").await;
    assert_eq!(failed.status, OutboxStatus::Failed);

    for (path, status) in [
        ("/outbox/abc/retry", StatusCode::BAD_REQUEST),
        ("/outbox/999999/retry", StatusCode::NOT_FOUND),
    ] {
        let (got, body) = api.post(path, json!({})).await;
        assert_eq!(got, status, "{path}: {body}");
    }
    let (status, r) = api
        .post(
            &format!("/outbox/{}/retry", failed.id),
            json!({"reason": "relay fixed"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(r["status"], "pending");
    until_log(&store, "sent after the retry", |l| sent(l, "later-n/o1")).await;
    let log: Vec<(Outcome, String)> = store
        .deliveries()
        .await
        .unwrap()
        .into_iter()
        .filter(|d| d.outbox_id == failed.id)
        .map(|d| (d.outcome, d.detail))
        .collect();
    let outcomes: Vec<Outcome> = log.iter().map(|(o, _)| *o).collect();
    assert_eq!(
        outcomes,
        [
            Outcome::Retry,
            Outcome::Failed,
            Outcome::Retry,
            Outcome::Sent
        ],
        "{log:#?}"
    );
    assert_eq!(log[2].1, "retried by an operator: relay fixed");
    let done = row(&store, "later-n/o1").await;
    assert_eq!((done.status, done.attempts), (OutboxStatus::Sent, 3));
    assert_eq!(server.messages().len(), 1);
    // Sent: not failed, so 409.
    let (status, r) = api
        .post(&format!("/outbox/{}/retry", failed.id), json!({}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{r}");
    assert!(r["error"].as_str().unwrap().contains("sent"), "{r}");
    app.shutdown().await;
}

/// Operators add and remove suppressions with a reason, logged; mail to a
/// suppressed address is skipped, and goes again once it is removed.
async fn operators_keep_the_suppression_list<S: Store>(store: S) {
    let app = spawn(&store, &MAILING, &[]).await;
    let api = Api::of(&app);
    for (body, says) in [
        (json!({"email": "not an address", "reason": "x"}), "email: "),
        (
            json!({"email": "nia@example.com"}),
            "reason: a reason is required",
        ),
        (json!({"reason": "x"}), "body: missing field `email`"),
    ] {
        let (status, err) = api.post("/suppressions", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
        assert!(err["error"].as_str().unwrap().starts_with(says), "{err}");
    }
    let (status, added) = api
        .post(
            "/suppressions",
            json!({"email": "Nia@Example.com", "reason": "asked by phone"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{added}");
    assert_eq!(added["entry"]["email"], "nia@example.com");
    let (status, again) = api
        .post(
            "/suppressions",
            json!({"email": "nia@example.com", "reason": "twice"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (&again["added"], &again["entry"]["reason"]),
        (&json!(false), &json!("asked by phone"))
    );

    app.post(&[placed("n1", "nia", "o1")]).await;
    until_log(&store, "nia's confirmation decided", |l| {
        l.iter().any(|d| d.idempotency_key.contains("nia/o1"))
    })
    .await;
    let skipped = row(&store, "nia/o1").await;
    assert_eq!(skipped.status, OutboxStatus::Skipped);
    assert_eq!(
        skipped.last_error.as_deref(),
        Some("address suppressed: asked by phone")
    );

    // A hard bounce suppresses otto's address in the list and his profile.
    let bounce = format!(
        r#"{{"id":"b1","type":"email.bounced","occurred_at":"{}","customer":{{"id":"otto","email":"otto@example.com"}},"data":{{"kind":"hard"}}}}"#,
        now_rfc3339()
    );
    app.post(&[bounce]).await;
    let (_, list) = api.get("/suppressions").await;
    let emails: Vec<&str> = list["suppressions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["email"].as_str().unwrap())
        .collect();
    assert_eq!(emails, ["nia@example.com", "otto@example.com"], "{list}");
    let (_, page) = api.get("/suppressions?limit=1").await;
    assert_eq!(page["next"], "nia@example.com", "{page}");
    let (_, page) = api.get("/suppressions?limit=1&after=nia@example.com").await;
    assert_eq!(page["suppressions"][0]["email"], "otto@example.com");
    assert!(page.get("next").is_none(), "{page}");

    // Removal wants a reason; an address not on the list is 404.
    let (status, err) = api.delete("/suppressions/nia@example.com", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    let (status, _) = api
        .delete("/suppressions/nobody@example.com?reason=x", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, removed) = api
        .delete("/suppressions/NIA@example.com?reason=asked%20again", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{removed}");
    assert_eq!(removed["previous_reason"], "asked by phone");
    let (status, removed) = api
        .delete(
            "/suppressions/otto@example.com",
            Some(json!({"reason": "the mailbox exists again"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{removed}");
    assert_eq!(removed["customers_lifted"], json!(["otto"]));
    let (_, otto) = api.get("/customers/otto").await;
    assert_eq!(otto["suppression"]["suppressed"], false, "{otto}");

    // The list is empty, its history says who came and went, and why.
    let (_, list) = api.get("/suppressions").await;
    assert_eq!(list["suppressions"], json!([]));
    let history: Vec<(&str, &str, &str)> = list["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["email"].as_str().unwrap(),
                h["action"].as_str().unwrap(),
                h["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        history,
        [
            ("otto@example.com", "removed", "the mailbox exists again"),
            ("nia@example.com", "removed", "asked again"),
            ("nia@example.com", "added", "asked by phone"),
        ]
    );
    assert!(list["history"][0]["at"].is_string());
    let (_, nia) = api.get("/suppressions?email=Nia@example.com").await;
    assert_eq!(nia["history"].as_array().unwrap().len(), 2, "{nia}");

    // Mail goes to both again.
    app.post(&[placed("n2", "nia", "o2"), placed("n3", "otto", "o3")])
        .await;
    until_log(&store, "both sent", |l| {
        sent(l, "nia/o2") && sent(l, "otto/o3")
    })
    .await;
    app.shutdown().await;
}

async fn a_sequences_enrollments_by_step<S: Store>(store: S) {
    let app = spawn(&store, &[Role::Http], &[]).await;
    let api = Api::of(&app);
    app.post(&[
        placed("s1", "pia", "o1"),
        placed("s2", "quin", "o2"),
        placed("s3", "rosa", "o3"),
    ])
    .await;
    let (status, counts) = api.get("/sequences/fulfilment/enrollments").await;
    assert_eq!(status, StatusCode::OK, "{counts}");
    assert_eq!(counts["total"], 3);
    assert_eq!(
        counts["counts"],
        json!([{"step": "await-shipment", "status": "active", "count": 3}])
    );
    assert!(
        counts["steps"]
            .as_array()
            .unwrap()
            .contains(&json!("order-confirmation"))
    );
    let (_, page) = api
        .get("/sequences/fulfilment/enrollments?step=await-shipment&limit=2")
        .await;
    let keys: Vec<&str> = page["enrollments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["fulfilment/pia/o1", "fulfilment/quin/o2"]);
    assert_eq!(page["enrollments"][0]["waiting_for"], "shipment.shipped");
    let next = page["next"].as_str().unwrap();
    let (_, rest) = api
        .get(&format!(
            "/sequences/fulfilment/enrollments?step=await-shipment&limit=2&after={next}"
        ))
        .await;
    assert_eq!(rest["enrollments"][0]["customer_id"], "rosa");
    assert!(rest.get("next").is_none(), "{rest}");

    let (status, err) = api.get("/sequences/fulfilment/enrollments?step=nope").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        err["error"].as_str().unwrap().starts_with(
            r#"step: "nope" is not a step of fulfilment (order-confirmation, await-shipment"#
        ),
        "{err}"
    );
    let (status, err) = api.get("/sequences/nope/enrollments").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        err["known"]
            .as_array()
            .unwrap()
            .contains(&json!("fulfilment")),
        "{err}"
    );
    assert!(
        err["error"].as_str().unwrap().contains("fulfilment"),
        "{err}"
    );
    app.shutdown().await;
}

support::on_both_stores!(
    every_admin_path_wants_the_token,
    without_a_token_the_admin_api_is_off,
    the_delivery_log_is_searched_and_paged,
    a_customer_is_shown_as_stored,
    an_operator_stops_all_of_a_customers_mail,
    dead_letters_are_replayed_through_ingest,
    an_operator_retries_a_failed_email,
    operators_keep_the_suppression_list,
    a_sequences_enrollments_by_step,
);

#[test]
fn a_short_admin_token_is_refused_at_start() {
    let args = support::service_args(&["--admin-token", "short"]);
    let err = args.admin_token().unwrap_err().to_string();
    assert!(
        err.contains("AFTERCARE_ADMIN_TOKEN") && err.contains("16"),
        "{err}"
    );
    let args = support::service_args(&["--admin-token", TOKEN]);
    assert_eq!(args.admin_token().unwrap().as_deref(), Some(TOKEN));
}
