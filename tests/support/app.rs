//! The real service started in-process on a loopback port, for tests that go
//! the way a shop does (the webhook).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aftercare::clock::SystemClock;
use aftercare::config::{DatabaseArgs, Role, ServiceArgs};
use aftercare::service::{Loaded, serve};
use aftercare::store::Store;
use tokio_util::sync::CancellationToken;

pub struct App {
    pub addr: SocketAddr,
    pub stop: CancellationToken,
    pub done: tokio::task::JoinHandle<anyhow::Result<()>>,
    pub outbox: PathBuf,
    _dir: tempfile::TempDir,
}

impl App {
    pub fn url(&self) -> String {
        format!("http://{}/v1/events", self.addr)
    }

    /// Posts `events` (JSON texts) as one webhook call; panics unless all
    /// are accepted.
    pub async fn post(&self, events: &[String]) -> serde_json::Value {
        let body = if events.len() == 1 {
            events[0].clone()
        } else {
            format!("[{}]", events.join(","))
        };
        let r = reqwest::Client::new()
            .post(self.url())
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let answer: serde_json::Value = r.json().await.unwrap();
        assert_eq!(status, reqwest::StatusCode::ACCEPTED, "{answer}");
        answer
    }

    pub async fn shutdown(self) {
        self.stop.cancel();
        self.done.await.unwrap().unwrap();
    }
}

/// Starts the service over `store` with `roles`, every other setting at its
/// default.
pub async fn spawn<S: Store>(store: S, roles: &[Role]) -> App {
    spawn_with(store, None, &[], roles).await
}

/// Starts the service over `store` with `roles`, the webhook `secret` and
/// `flags` (as on the command line).
pub async fn spawn_with<S: Store>(
    store: S,
    secret: Option<&str>,
    flags: &[&str],
    roles: &[Role],
) -> App {
    let dir = tempfile::tempdir().unwrap();
    let outbox = dir.path().join("outbox");
    let args = ServiceArgs {
        db: DatabaseArgs {
            database_url: "unused".into(),
        },
        kafka_brokers: None,
        outbox_dir: outbox.clone(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        webhook_secret: secret.map(str::to_string),
        roles: roles.to_vec(),
        ..super::service_args(flags)
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let loaded = Loaded {
        catalog: Arc::new(super::catalog().clone()),
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

/// Starts the service over `store` with `loaded` content (sequences and
/// templates of a test's own), `flags` (as on the command line) and `roles`.
pub async fn spawn_loaded<S: Store>(
    store: S,
    loaded: Loaded,
    flags: &[&str],
    roles: &[Role],
) -> App {
    let dir = tempfile::tempdir().unwrap();
    let outbox = dir.path().join("outbox");
    let args = ServiceArgs {
        db: DatabaseArgs {
            database_url: "unused".into(),
        },
        kafka_brokers: None,
        outbox_dir: outbox.clone(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        roles: roles.to_vec(),
        ..super::service_args(flags)
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
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
