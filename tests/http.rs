//! The events webhook against the real service (started in-process on port
//! 0, over PostgreSQL and over SQLite): statuses, signatures, dead letters,
//! body limits, and the email that comes out the other end.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aftercare::clock::SystemClock;
use aftercare::config::{DatabaseArgs, Role, ServiceArgs};
use aftercare::engine::outbox::Outcome;
use aftercare::ingest::http::sign;
use aftercare::service::{Loaded, serve};
use aftercare::store::Store;
use reqwest::StatusCode;
use support::event_json;
use tokio_util::sync::CancellationToken;

struct App {
    addr: SocketAddr,
    stop: CancellationToken,
    done: tokio::task::JoinHandle<anyhow::Result<()>>,
    outbox: PathBuf,
    _dir: tempfile::TempDir,
}

impl App {
    fn url(&self) -> String {
        format!("http://{}/v1/events", self.addr)
    }

    async fn shutdown(self) {
        self.stop.cancel();
        self.done.await.unwrap().unwrap();
    }
}

async fn spawn_app<S: Store>(store: S, secret: Option<&str>) -> App {
    let dir = tempfile::tempdir().unwrap();
    let outbox = dir.path().join("outbox");
    let args = ServiceArgs {
        db: DatabaseArgs {
            database_url: "unused".into(),
        },
        kafka_brokers: None,
        kafka_topic: "unused".into(),
        kafka_group: "unused".into(),
        smtp_url: None,
        outbox_dir: outbox.clone(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        webhook_secret: secret.map(str::to_string),
        smtp_retry: None,
        max_email_bytes: aftercare::send::worker::DEFAULT_MAX_EMAIL_BYTES,
        roles: vec![Role::Http, Role::Schedule, Role::Send],
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let loaded = Loaded {
        catalog: Arc::new(support::catalog().clone()),
        templates: Arc::new(aftercare::template::Templates::load(Path::new("templates"), "en").0),
    };
    let stop = CancellationToken::new();
    let done = tokio::spawn(serve(
        store,
        args,
        loaded,
        Arc::new(SystemClock),
        stop.clone(),
        Some(listener),
    ));
    App {
        addr,
        stop,
        done,
        outbox,
        _dir: dir,
    }
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
            .contains("order.total: money must be a decimal string")
    );
    assert!(
        rejected[1]["reason"]
            .as_str()
            .unwrap()
            .contains("missing field")
    );
    let dead = store.dead_letters().await.unwrap();
    assert_eq!(dead.len(), 2);
    assert!(dead.iter().all(|d| d.source == "http"));
    for (body, what) in [("not json", "invalid JSON"), ("", "empty body")] {
        let r = http.post(app.url()).body(body).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert!(r.text().await.unwrap().contains(what));
    }
    let huge = "x".repeat(aftercare::http::BODY_LIMIT + 1);
    let r = http.post(app.url()).body(huge).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
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

macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (store, _dir) = crate::support::sqlite().await;
                    super::$name(store).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = crate::support::PgDb::new().await;
                    super::$name(db.store.clone()).await;
                    db.drop().await;
                }
            )*
        }
    };
}

both!(
    webhook_takes_events_and_mail_goes_out,
    invalid_items_get_reasons_and_are_dead_lettered,
    signatures_are_required_when_a_secret_is_set,
);
