//! The events webhook against the real service (started in-process on port
//! 0, over PostgreSQL and over SQLite): statuses, signatures, dead letters,
//! body limits, and the emails that come out the other end, in order.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aftercare::clock::{Clock, SystemClock};
use aftercare::config::Role;
use aftercare::engine::outbox::{Outcome, TransportError};
use aftercare::ingest::http::sign;
use aftercare::instance::Instance;
use aftercare::send::transport::{EmlDir, Outgoing, Transport};
use aftercare::send::worker::{Compose, DEFAULT_MAX_EMAIL_BYTES, DEFAULT_RETRY, Worker};
use aftercare::store::Store;
use reqwest::StatusCode;
use support::app::{self, App};
use support::event_json;
use tokio_util::sync::CancellationToken;

async fn spawn_app<S: Store>(store: S, secret: Option<&str>) -> App {
    spawn_app_with(store, secret, &[]).await
}

/// Starts the service with `flags` (as on the command line) over `store`.
async fn spawn_app_with<S: Store>(store: S, secret: Option<&str>, flags: &[&str]) -> App {
    let roles = [Role::Http, Role::Schedule, Role::Send];
    app::spawn_with(store, secret, flags, &roles).await
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

async fn eml_files(dir: &Path, want: usize) -> Vec<PathBuf> {
    for _ in 0..100 {
        let files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "eml"))
                    .collect()
            })
            .unwrap_or_default();
        if files.len() >= want {
            return files;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("expected {want} .eml files in {}", dir.display());
}

async fn webhook_takes_events_and_mail_goes_out<S: Store>(store: S) {
    let app = spawn_app(store.clone(), None).await;
    let http = reqwest::Client::new();
    let body = event_json("h1", "order.placed", "c1", "o1", &now_rfc3339(), true);
    let r = http
        .post(app.url())
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let answer: serde_json::Value = r.json().await.unwrap();
    assert_eq!(answer["accepted"], 1);
    // 202 means committed: the event is there now.
    assert_eq!(store.event_count().await.unwrap(), 1);
    let files = eml_files(&app.outbox, 1).await;
    let text = std::fs::read_to_string(&files[0]).unwrap();
    assert!(text.contains("X-Aftercare-Sequence: fulfilment"));
    assert!(text.contains("To: c1@example.com"));
    // The same event again: accepted as a duplicate, nothing new enqueued.
    let r = http.post(app.url()).body(body).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["duplicates"],
        1
    );
    assert_eq!(store.outbox().await.unwrap().len(), 1);
    let d = store.deliveries().await.unwrap();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].outcome, Outcome::Sent);
    app.shutdown().await;
}

async fn invalid_items_get_reasons_and_are_dead_lettered<S: Store>(store: S) {
    let app = spawn_app(store.clone(), None).await;
    let http = reqwest::Client::new();
    let good = event_json("h2", "order.placed", "c2", "o2", &now_rfc3339(), true);
    let bad_money = good
        .replace("\"129.90\"", "129.9")
        .replace("\"h2\"", "\"h3\"");
    let body = format!("[{good}, {bad_money}, {{\"id\": \"h4\"}}]");
    let r = http.post(app.url()).body(body).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let answer: serde_json::Value = r.json().await.unwrap();
    assert_eq!(answer["accepted"], 1, "the valid item is still taken");
    let rejected = answer["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 2);
    assert_eq!(rejected[0]["index"], 1);
    assert_eq!(rejected[0]["id"], "h3");
    assert!(
        rejected[0]["reason"]
            .as_str()
            .unwrap()
            .contains("order.total: expected money as a string like \"129.90\", got the number")
    );
    assert!(
        rejected[1]["reason"]
            .as_str()
            .unwrap()
            .contains("missing field")
    );
    let dead = store.dead_letters().await.unwrap();
    assert_eq!(dead.len(), 2);
    assert!(dead.iter().all(|d| d.letter.source == "http"));
    for (body, what) in [("not json", "invalid JSON"), ("", "empty body")] {
        let r = http.post(app.url()).body(body).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert!(r.text().await.unwrap().contains(what));
    }
    let huge = "x".repeat(aftercare::http::BODY_LIMIT + 1);
    let r = http
        .post(app.url())
        .header("X-Request-Id", "big-one")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.headers()["x-request-id"], "big-one");
    app.shutdown().await;
}

async fn signatures_are_required_when_a_secret_is_set<S: Store>(store: S) {
    let app = spawn_app(store.clone(), Some("s3cret")).await;
    let http = reqwest::Client::new();
    let body = event_json("h5", "order.placed", "c5", "o5", &now_rfc3339(), true);
    let r = http
        .post(app.url())
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let wrong = sign("other", body.as_bytes());
    let r = http
        .post(app.url())
        .header("X-Aftercare-Signature", wrong)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(store.event_count().await.unwrap(), 0);
    let right = sign("s3cret", body.as_bytes());
    let r = http
        .post(app.url())
        .header("X-Aftercare-Signature", right)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(store.event_count().await.unwrap(), 1);
    app.shutdown().await;
}

/// Reads from `stream` until it closes; true if it did within `within`.
async fn closed_within(stream: &mut tokio::net::TcpStream, within: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 1024];
    let read = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(within, read).await.is_ok()
}

/// Twenty thousand half-sent requests once exhausted the file descriptors and
/// `/health` died. Now the oldest idle or half-sent connection makes room for
/// a new client, slow headers and slow bodies are cut off, and the health
/// check is answered throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_and_health_is_answered() {
    use tokio::io::AsyncWriteExt;
    let (store, _dir) = support::sqlite().await;
    let flags = [
        "--http-max-connections",
        "20",
        "--http-header-timeout",
        "1s",
        "--http-request-timeout",
        "2s",
    ];
    let app = spawn_app_with(store, None, &flags).await;
    // 100 clients that never finish their headers: five times the cap.
    let mut slow = Vec::new();
    for _ in 0..100 {
        let mut s = tokio::net::TcpStream::connect(app.addr).await.unwrap();
        s.write_all(b"POST /v1/events HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        slow.push(s);
    }
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    for path in ["/healthz", "/health"] {
        let r = http
            .get(format!("http://{}{path}", app.addr))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert_eq!(r.text().await.unwrap(), "ok");
    }
    // Every one of them is closed: the first to make room, the rest when
    // their header time runs out.
    for s in &mut slow {
        assert!(closed_within(s, Duration::from_secs(10)).await);
    }
    // A body that trickles is cut off with 408.
    let mut s = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    s.write_all(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n[{")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = tokio::io::AsyncReadExt::read_to_end(&mut s, &mut answer);
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("answered")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    app.shutdown().await;
}

/// `/readyz` checks the database and the outbox folder, naming what failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_names_the_failed_check() {
    let (store, _dir) = support::sqlite().await;
    let app = spawn_app(store, None).await;
    let url = format!("http://{}/readyz", app.addr);
    let r = reqwest::get(&url).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["ready"], true);
    assert_eq!(body["checks"]["database"], "ok");
    assert_eq!(body["checks"]["outbox_dir"], "ok");
    // The outbox folder becomes something no file can be written into.
    std::fs::remove_dir_all(&app.outbox).unwrap();
    std::fs::write(&app.outbox, b"not a folder").unwrap();
    let r = reqwest::get(&url).await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["ready"], false);
    assert_eq!(body["checks"]["database"], "ok");
    let why = body["checks"]["outbox_dir"].as_str().unwrap();
    assert!(why.contains("is not writable"), "{why}");
    // Liveness does not depend on it.
    let r = reqwest::get(format!("http://{}/healthz", app.addr))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    std::fs::remove_file(&app.outbox).unwrap();
    app.shutdown().await;
}

/// Posts `body` and returns the status and the JSON answer.
async fn post(app: &App, body: String) -> (StatusCode, serde_json::Value) {
    let r = reqwest::Client::new()
        .post(app.url())
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap())
}

/// The reasons given for the rejected items, by item index.
fn reasons(answer: &serde_json::Value) -> Vec<(u64, String)> {
    answer["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["index"].as_u64().unwrap(),
                r["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Issue 7, reproductions 1, 3, 7 and 12: each item past a limit gets a 400
/// naming its field and a dead letter; the others in the array are taken.
async fn items_past_a_limit_are_refused_alone<S: Store>(store: S) {
    let app = spawn_app(store.clone(), None).await;
    let now = now_rfc3339();
    // Reproduction 1, as the issue sent it: one event, alone.
    let e = r#""occurred_at":"2026-05-01T10:00:00Z","customer":{"id":"c","email":"a@b.co"}"#;
    let repro = format!(
        r#"{{"id":"p","type":"order.placed",{e},"order":{{"id":"o","placed_at":"2026-05-01T10:00:00Z","items":[{{"sku":"x","replenish_every_days":100000000}}]}}}}"#
    );
    let (status, answer) = post(&app, repro).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer["accepted"], 0);
    assert_eq!(
        reasons(&answer),
        [(
            0,
            "order.items[0].replenish_every_days: 100000000 is not between 1 and 3650 days".into()
        )]
    );
    let good =
        |id: &str, c: &str| event_json(id, "order.placed", c, &format!("o-{id}"), &now, true);
    let bad: Vec<(String, &str)> = vec![
        (
            good("l1", "c1").replace(
                r#""quantity":1"#,
                r#""quantity":1,"replenish_every_days":100000000"#,
            ),
            "order.items[0].replenish_every_days: 100000000 is not between 1 and 3650 days",
        ),
        (
            good("l2", "c2").replace(r#""first_name":"Anna""#, r#""first_name":"An\u0000na""#),
            "customer.first_name: contains a NUL character",
        ),
        (
            good("l3", "c3").replace(r#""id":"l3""#, &format!(r#""id":"{}""#, "x".repeat(10_000))),
            "id: 10000 bytes, longer than the limit of 256",
        ),
        (
            good("l4", "c4").replace("https://t.example/o-l4", "javascript:alert(1)"),
            "shipment.tracking_url: \"javascript:alert(1)\" is not an http:// or https:// URL",
        ),
        (
            good("l5", "c5").replace("c5@example.com", "a..b@c.d"),
            "customer.email: \"a..b@c.d\" is not an email address",
        ),
        (
            good("l6", "c6").replace("c6@example.com", ".a@b.c"),
            "customer.email: \".a@b.c\" is not an email address",
        ),
        (
            good("l7", "c7").replace("c7@example.com", "a@-b.c"),
            "customer.email: \"a@-b.c\" is not an email address",
        ),
        (
            good("l8", "c8").replace("c8@example.com", "a(x)@b.c"),
            "customer.email: \"a(x)@b.c\" is not an email address",
        ),
        (
            good("l9", "c9").replacen(&now, "+10000-01-01T00:00:00Z", 1),
            "occurred_at: the year 10000 is outside 1970 to 9999",
        ),
    ];
    let mut items: Vec<String> = vec![good("ok1", "c-ok")];
    items.extend(bad.iter().map(|(b, _)| b.clone()));
    // Every id at its limit (256 bytes, in two-byte characters) is taken.
    let at_limit = |c: char| c.to_string().repeat(128);
    items.push(
        good("ok2", "c-ok2")
            .replace(r#""id":"ok2""#, &format!(r#""id":"{}""#, at_limit('é')))
            .replace(r#""id":"c-ok2""#, &format!(r#""id":"{}""#, at_limit('ő')))
            .replace(r#""id":"o-ok2""#, &format!(r#""id":"{}""#, at_limit('ű')))
            .replace(r#""id":"s-o-ok2""#, &format!(r#""id":"{}""#, at_limit('á')))
            .replace("CAM-200", &at_limit('í')),
    );
    let (status, answer) = post(&app, format!("[{}]", items.join(","))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer["accepted"], 2, "the valid items are still taken");
    let got = reasons(&answer);
    assert_eq!(got.len(), bad.len(), "{got:?}");
    for ((index, reason), (i, (_, want))) in got.iter().zip(bad.iter().enumerate()) {
        assert_eq!(*index, i as u64 + 1);
        assert!(
            reason.starts_with(want),
            "item {index}: {reason:?}, expected {want:?}"
        );
    }
    assert_eq!(store.event_count().await.unwrap(), 2);
    let dead = store.dead_letters().await.unwrap();
    assert_eq!(
        dead.len(),
        1 + bad.len(),
        "one dead letter per refused item"
    );
    assert!(dead.iter().all(|d| d.letter.source == "http"));
    assert!(
        dead.iter().all(|d| !d.letter.payload.contains('\0')),
        "a store can keep every dead letter"
    );
    // The good ones are mailed.
    eml_files(&app.outbox, 2).await;
    app.shutdown().await;
}

/// Issue 7, reproduction 2: an order of 300,000 items (3.6 MB, under the
/// body limit) is refused at the event size limit, one of 50,000 items
/// (600 KB) at the items limit, and the service goes on.
async fn an_order_of_300000_items_is_refused<S: Store>(store: S) {
    let app = spawn_app(store.clone(), None).await;
    let order = |n: usize| {
        let items = vec![r#"{"sku":"a"}"#; n].join(",");
        format!(
            r#"{{"id":"big-{n}","type":"order.placed","occurred_at":"{}","customer":{{"id":"c","email":"a@b.co"}},"order":{{"id":"o","items":[{items}]}}}}"#,
            now_rfc3339()
        )
    };
    let body = order(300_000);
    assert!(body.len() > 3_500_000 && body.len() < aftercare::http::BODY_LIMIT);
    let (status, answer) = post(&app, body.clone()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        reasons(&answer),
        [(
            0,
            format!(
                "the event is {} bytes of JSON, more than the limit of 1048576",
                body.len()
            )
        )]
    );
    let (status, answer) = post(&app, order(50_000)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        reasons(&answer),
        [(0, "order.items: more than 1000 items (the limit)".into())]
    );
    assert_eq!(store.event_count().await.unwrap(), 0);
    assert_eq!(store.outbox().await.unwrap().len(), 0);
    let health = reqwest::get(format!("http://{}/health", app.addr))
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    // 1,000 items are taken, and the next event too.
    assert_eq!(post(&app, order(1000)).await.0, StatusCode::ACCEPTED);
    let next = event_json("after", "order.placed", "c2", "o2", &now_rfc3339(), true);
    assert_eq!(post(&app, next).await.0, StatusCode::ACCEPTED);
    assert_eq!(store.event_count().await.unwrap(), 2);
    app.shutdown().await;
}

/// Issue 7, reproduction 12: identical invalid items resent are counted,
/// not multiplied.
async fn identical_dead_letters_are_counted<S: Store>(store: S) {
    let app = spawn_app(store.clone(), None).await;
    let bad = event_json("same", "order.placed", "c", "o", &now_rfc3339(), true)
        .replace("c@example.com", "a..b@c.d");
    let body = format!("[{}]", vec![bad.as_str(); 2000].join(","));
    for _ in 0..2 {
        let (status, answer) = post(&app, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(answer["rejected"].as_array().unwrap().len(), 2000);
    }
    let other = bad.replace("\"same\"", "\"other\"");
    assert_eq!(post(&app, other).await.0, StatusCode::BAD_REQUEST);
    let dead = store.dead_letters().await.unwrap();
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert_eq!(dead[0].count, 4000);
    let origin = dead[0].letter.origin.as_deref().unwrap_or_default();
    assert!(
        origin.starts_with("http 127.0.0.1:") && origin.ends_with(" item 1999"),
        "the latest origin: {origin}"
    );
    assert!(dead[0].last_seen_at >= dead[0].first_seen_at);
    assert_eq!(dead[1].count, 1);
    app.shutdown().await;
}

/// Issue 7, reproduction 3 and item 2: an event the database refuses for a
/// reason the limits do not catch (here a trigger the test installs) is
/// dead-lettered alone with the database's message; the rest of the batch
/// commits and is mailed.
async fn an_event_the_store_refuses_does_not_fail_its_batch<S: Store>(store: S) {
    let app = spawn_app(store.clone(), None).await;
    let now = now_rfc3339();
    let ids = ["b1", "b2", "poison-1", "b3", "b4", "b5", "poison-2", "b6"];
    let items: Vec<String> = ids
        .iter()
        .map(|id| {
            event_json(
                id,
                "order.placed",
                &format!("c-{id}"),
                &format!("o-{id}"),
                &now,
                true,
            )
        })
        .collect();
    let (status, answer) = post(&app, format!("[{}]", items.join(","))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["accepted"], 6);
    let got = reasons(&answer);
    assert_eq!(got.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [2, 6]);
    for (_, reason) in &got {
        assert_eq!(reason, aftercare::ingest::http::STORE_REFUSED);
    }
    assert_eq!(answer["rejected"][0]["id"], "poison-1");
    assert_eq!(store.event_count().await.unwrap(), 6);
    // The database's message is kept with the dead letter.
    let dead = store.dead_letters().await.unwrap();
    assert_eq!(dead.len(), 2);
    for (d, id) in dead.iter().zip(["poison-1", "poison-2"]) {
        let reason = &d.letter.reason;
        assert!(
            reason.starts_with("the store refused this event: "),
            "{reason}"
        );
        assert!(reason.contains("poisoned event"), "{reason}");
        assert!(d.letter.payload.contains(&format!("\"{id}\"")));
    }
    let origin = dead[0].letter.origin.as_deref().unwrap_or_default();
    assert!(origin.ends_with(" item 2"), "{origin}");
    eml_files(&app.outbox, 6).await;
    // Sent again: the six are duplicates, the two refused again, counted.
    let (status, answer) = post(&app, format!("[{}]", items.join(","))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        (answer["accepted"].as_u64(), answer["duplicates"].as_u64()),
        (Some(0), Some(6))
    );
    let dead = store.dead_letters().await.unwrap();
    assert_eq!((dead.len(), dead[0].count), (2, 2));
    app.shutdown().await;
}

/// Issue 8: event types that nothing listens to are accepted and named in
/// the answer, with the nearest known type.
async fn unheard_types_are_named_in_the_answer<S: Store>(store: S) {
    let app = spawn_app(store.clone(), None).await;
    let now = now_rfc3339();
    let items: Vec<String> = [
        ("u1", "shipment.shiped"),
        ("u2", "shipment.shiped"),
        ("u3", "shop.loyalty_points"),
        ("u4", "shipment.delayed"),
        ("u5", "order.placed"),
    ]
    .iter()
    .map(|(id, kind)| event_json(id, kind, "c-u", "o-u", &now, true))
    .collect();
    let (status, answer) = post(&app, format!("[{}]", items.join(","))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["accepted"], 5);
    assert_eq!(
        answer["unknown_types"],
        serde_json::json!([
            {"type": "shipment.shiped", "events": 2, "did_you_mean": "shipment.shipped"},
            {"type": "shop.loyalty_points", "events": 1}
        ])
    );
    assert_eq!(
        answer["unused_types"],
        serde_json::json!([{"type": "shipment.delayed", "events": 1}])
    );
    assert_eq!(store.event_count().await.unwrap(), 5);
    // Only listened types: nothing to say.
    let (_, answer) = post(&app, items[4].replace("\"u5\"", "\"u6\"")).await;
    assert_eq!(answer["unknown_types"], serde_json::json!([]));
    assert_eq!(answer["unused_types"], serde_json::json!([]));
    app.shutdown().await;
}

/// Issue 8: the dead letters of a request name the client's address and the
/// request id, which the answer gives back (the client's own when sensible).
async fn dead_letters_name_the_client_and_the_request<S: Store>(store: S) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app(store.clone(), None).await;
    // Over a plain socket, to know the client's address.
    let mut socket = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let client = socket.local_addr().unwrap();
    let body = r#"[{"id": "r1"}]"#;
    let request = format!(
        "POST /v1/events HTTP/1.1\r\nHost: {}\r\nX-Request-Id: shop-req-42\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        app.addr,
        body.len()
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    socket.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("\r\nx-request-id: shop-req-42\r\n"),
        "{answer}"
    );
    assert!(answer.contains(r#""request_id":"shop-req-42""#), "{answer}");
    let origin = |payload: &str, letters: &[aftercare::store::StoredDeadLetter]| {
        letters
            .iter()
            .find(|d| d.letter.payload.contains(payload))
            .and_then(|d| d.letter.origin.clone())
            .unwrap_or_default()
    };
    let dead = store.dead_letters().await.unwrap();
    assert_eq!(
        origin("r1", &dead),
        format!("http {client} request shop-req-42 item 0")
    );
    // A request id with a space (or too long, or not ASCII) is replaced.
    let r = reqwest::Client::new()
        .post(app.url())
        .header("X-Request-Id", "two words")
        .body(r#"[{"id": "r2"}]"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert!(
        id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{id}"
    );
    let answer: serde_json::Value = r.json().await.unwrap();
    assert_eq!(answer["request_id"], id.as_str());
    let dead = store.dead_letters().await.unwrap();
    let o = origin("r2", &dead);
    assert!(
        o.starts_with("http 127.0.0.1:") && o.ends_with(&format!(" request {id} item 0")),
        "{o}"
    );
    // A request without one gets one too, in the header and the body.
    let r = reqwest::Client::new()
        .post(app.url())
        .body("not json")
        .send()
        .await
        .unwrap();
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    let answer: serde_json::Value = r.json().await.unwrap();
    assert_eq!(answer["request_id"], id.as_str());
    app.shutdown().await;
}

/// The `.eml` transport, with confirmations slow to go (a slow SMTP answer):
/// what comes after them would overtake them if it could.
struct SlowConfirmations {
    eml: EmlDir,
    slow: Duration,
}

impl Transport for SlowConfirmations {
    fn deadline(&self) -> Duration {
        self.eml.deadline()
    }

    async fn deliver(&self, m: &Outgoing) -> Result<String, TransportError> {
        if m.about.template == "order-confirmation" {
            tokio::time::sleep(self.slow).await;
        }
        self.eml.deliver(m).await
    }
}

/// A sender instance (`run --roles send`) with `loops` workers claiming side
/// by side, writing `.eml` files to `outbox`; stops with `stop`.
async fn spawn_sender<S: Store>(
    store: &S,
    outbox: &Path,
    loops: usize,
    stop: &CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let instance = Instance::new(clock.now(), aftercare::instance::STALE_AFTER);
    instance.beat(store, clock.now()).await.unwrap();
    let mut tasks = vec![tokio::spawn(instance.clone().run(
        store.clone(),
        clock.clone(),
        stop.clone(),
    ))];
    let templates = Arc::new(aftercare::template::Templates::load(Path::new("templates"), "en").0);
    for _ in 0..loops {
        let worker = Worker {
            store: store.clone(),
            catalog: Arc::new(support::catalog().clone()),
            templates: templates.clone(),
            transport: SlowConfirmations {
                eml: EmlDir {
                    dir: outbox.to_path_buf(),
                },
                slow: Duration::from_millis(600),
            },
            clock: clock.clone(),
            retry: DEFAULT_RETRY.to_vec(),
            compose: Compose::Message,
            instance: instance.clone(),
            max_email_bytes: DEFAULT_MAX_EMAIL_BYTES,
            concurrency: 1,
            bounces: None,
            paused: Default::default(),
            dkim: None,
            links: std::sync::Arc::new(
                aftercare::send::links::Links::ephemeral("http://127.0.0.1:8080").unwrap(),
            ),
        };
        let kick = Arc::new(tokio::sync::Notify::new());
        tasks.push(tokio::spawn(worker.run(kick, stop.clone())));
    }
    tasks
}

/// Issue 8: one webhook call with `[order.placed, shipment.shipped,
/// shipment.delivered]` sent the "delivered" email before the "shipped"
/// one. Through the webhook, with two sender instances of three workers
/// each: every customer's three emails go out in order, whether the events
/// come in one call or one call each while the confirmation is still being
/// sent; and the next email of a customer is handed to the transport only
/// after the one before it is done.
async fn a_customers_emails_go_out_in_order<S: Store>(store: S) {
    let app = app::spawn_with(store.clone(), None, &[], &[Role::Http, Role::Schedule]).await;
    let stop = CancellationToken::new();
    let mut senders = spawn_sender(&store, &app.outbox, 3, &stop).await;
    senders.extend(spawn_sender(&store, &app.outbox, 3, &stop).await);
    let now = now_rfc3339();
    let kinds = ["order.placed", "shipment.shipped", "shipment.delivered"];
    let customers: Vec<String> = (0..8).map(|i| format!("in-order-{i}")).collect();
    let calls = customers.iter().enumerate().map(|(i, c)| {
        let items: Vec<String> = kinds
            .iter()
            .map(|k| event_json(&format!("{c}/{k}"), k, c, "o1", &now, true))
            .collect();
        let app = &app;
        async move {
            if i % 2 == 0 {
                let (status, answer) = post(app, format!("[{}]", items.join(","))).await;
                assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
                return;
            }
            // One call per event, the next once the confirmation is on its
            // way (the workers poll every 200 ms).
            for item in items {
                let (status, answer) = post(app, item).await;
                assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    });
    futures_util::future::join_all(calls).await;
    let want = 3 * customers.len();
    let mut sent_log = Vec::new();
    for _ in 0..300 {
        sent_log = store.deliveries().await.unwrap();
        sent_log.retain(|d| d.outcome == Outcome::Sent);
        if sent_log.len() >= want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(sent_log.len(), want, "each sent once");
    assert_eq!(eml_files(&app.outbox, want).await.len(), want);
    let outbox = store.outbox().await.unwrap();
    for c in &customers {
        // The delivery log, in the order it was written.
        let sent: Vec<_> = sent_log
            .iter()
            .filter_map(|d| {
                let row = outbox.iter().find(|o| o.id == d.outbox_id)?;
                (row.customer_id == *c).then_some((row, d.at))
            })
            .collect();
        let templates: Vec<&str> = sent.iter().map(|(o, _)| o.template.as_str()).collect();
        assert_eq!(
            templates,
            ["order-confirmation", "order-shipped", "order-delivered"],
            "{c}"
        );
        for pair in sent.windows(2) {
            let ((_, done), (next, _)) = (pair[0], pair[1]);
            let began = next.sent_at.expect("marked sending when handed over");
            assert!(
                began >= done,
                "{c}: {} handed to the transport at {began}, before the email \
                 before it was done at {done}",
                next.template
            );
        }
    }
    stop.cancel();
    for task in senders {
        task.await.unwrap();
    }
    app.shutdown().await;
}

support::on_both_stores!(
    webhook_takes_events_and_mail_goes_out,
    invalid_items_get_reasons_and_are_dead_lettered,
    signatures_are_required_when_a_secret_is_set,
    items_past_a_limit_are_refused_alone,
    an_order_of_300000_items_is_refused,
    identical_dead_letters_are_counted,
    unheard_types_are_named_in_the_answer,
    dead_letters_name_the_client_and_the_request,
    a_customers_emails_go_out_in_order,
);

/// A database that refuses events whose id starts with `poison`, as a
/// database may refuse a value for its own reasons.
mod refusing {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        let (store, _dir) = crate::support::sqlite().await;
        sqlx::query(
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON events WHEN NEW.id LIKE 'poison%' \
             BEGIN SELECT RAISE(ABORT, 'poisoned event'); END",
        )
        .execute(&store.pool)
        .await
        .unwrap();
        super::an_event_the_store_refuses_does_not_fail_its_batch(store).await;
    }

    async fn pg_trigger(store: &aftercare::store::PgStore, errcode: &str) {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE FUNCTION refuse_poison() RETURNS trigger AS $$ BEGIN \
             IF NEW.id LIKE 'poison%' THEN RAISE EXCEPTION 'poisoned event %', NEW.id \
             USING ERRCODE = '{errcode}'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql"
        )))
        .execute(&store.pool)
        .await
        .unwrap();
        sqlx::query(
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON events \
             FOR EACH ROW EXECUTE FUNCTION refuse_poison()",
        )
        .execute(&store.pool)
        .await
        .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        let db = crate::support::PgDb::new().await;
        // 22023 invalid_parameter_value: a data exception.
        pg_trigger(&db.store, "22023").await;
        super::an_event_the_store_refuses_does_not_fail_its_batch(db.store.clone()).await;
        db.drop().await;
    }

    /// A database that says it is out of resources is unavailable: the
    /// batch is answered 503 (retry), nothing is dead-lettered.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_unavailable_is_retried_not_dead_lettered() {
        use aftercare::store::Store;
        let db = crate::support::PgDb::new().await;
        // 53000 insufficient_resources.
        pg_trigger(&db.store, "53000").await;
        let app = super::spawn_app(db.store.clone(), None).await;
        let now = super::now_rfc3339();
        let items: Vec<String> = ["u1", "poison-u", "u2"]
            .iter()
            .map(|id| crate::support::event_json(id, "order.placed", id, id, &now, true))
            .collect();
        let r = reqwest::Client::new()
            .post(app.url())
            .body(format!("[{}]", items.join(",")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(db.store.event_count().await.unwrap(), 0);
        assert!(db.store.dead_letters().await.unwrap().is_empty());
        app.shutdown().await;
        db.drop().await;
    }
}
