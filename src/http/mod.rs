//! The HTTP side: one router for the events webhook, the relays' bounce
//! webhooks and DSNs ([`bounces`]), liveness, readiness and metrics
//! ([`ops_routes`]), unsubscribe and open/click tracking, the admin API
//! ([`admin`]) and the dashboard ([`dashboard`]), served by
//! [`server::serve`] under its limits.

pub mod admin;
pub mod bounces;
pub mod dashboard;
pub mod server;
pub mod tracking;
pub mod unsubscribe;

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;

use crate::bounce::providers::Providers;
use crate::clock::Clock;
use crate::ingest::http::Webhook;
use crate::ingest::kafka::ConsumerState;
use crate::store::Store;

/// Bodies above this get 413.
pub const BODY_LIMIT: usize = 5 * 1024 * 1024;

/// What `/readyz` checks besides the database, and what `/metrics` reads
/// at scrape time.
pub struct Readiness<S> {
    pub store: S,
    /// The `.eml` transport's folder, when that is the transport.
    pub outbox_dir: Option<PathBuf>,
    /// This process's Kafka consumer, when it runs one: ready once the
    /// group has assigned its partitions.
    pub kafka: Option<Arc<ConsumerState>>,
    /// For the age of the oldest due email.
    pub clock: Arc<dyn Clock>,
}

/// `/healthz` (alias `/health`), `/readyz` and `/metrics`: served by the
/// http role with the rest, and by every role on `AFTERCARE_OPS_ADDR`.
pub fn ops_routes<S: Store>(readiness: Arc<Readiness<S>>) -> Router {
    let alive = get(|| async { "ok" });
    Router::new()
        .route("/healthz", alive.clone())
        .route("/health", alive)
        .route("/readyz", get(ready::<S>))
        .route("/metrics", get(metrics::<S>))
        .with_state(readiness)
}

pub fn router<S: Store>(
    webhook: Webhook<S>,
    readiness: Readiness<S>,
    links: Arc<crate::send::links::Links>,
    providers: Arc<Providers>,
    admin_token: Option<admin::Token>,
    dashboard: dashboard::Settings,
) -> Router {
    let ops = ops_routes(Arc::new(readiness));
    let mailing = Arc::new(unsubscribe::Mailing {
        store: webhook.store.clone(),
        catalog: webhook.catalog.clone(),
        clock: webhook.clock.clone(),
        kick: webhook.kick.clone(),
        links,
    });
    let bounces = bounces::routes(bounces::Bounces {
        webhook: webhook.clone(),
        providers,
    });
    let dashboard = dashboard::routes(&webhook, dashboard);
    let admin = admin::routes(
        admin::Admin {
            app: webhook.clone(),
        },
        admin_token,
    );
    crate::ingest::http::routes(webhook)
        .merge(bounces)
        .merge(ops)
        .merge(unsubscribe::routes(mailing.clone()))
        .merge(tracking::routes(mailing))
        // Before the admin API: its 401 for unknown paths under /v1/admin/
        // is its router's fallback (the guard wraps it), and merging keeps
        // the fallback of the router merged last.
        .merge(dashboard)
        .merge(admin)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
}

/// 200 when the database answers with every migration applied and the
/// outbox folder takes files; 503 naming the failed check otherwise.
async fn ready<S: Store>(State(r): State<Arc<Readiness<S>>>) -> impl IntoResponse {
    let database = match r.store.ready().await {
        Ok(()) => "ok".to_string(),
        Err(e) => e.to_string(),
    };
    let mut checks = json!({ "database": database });
    if let Some(dir) = &r.outbox_dir {
        checks["outbox_dir"] = match writable(dir).await {
            Ok(()) => "ok".into(),
            Err(e) => format!("{} is not writable: {e}", dir.display()).into(),
        };
    }
    if let Some(k) = &r.kafka {
        checks["kafka"] = k.readiness().into();
    }
    let ok = checks
        .as_object()
        .is_some_and(|c| c.values().all(|v| v == "ok"));
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(json!({ "ready": ok, "checks": checks })))
}

/// Writes and removes a small file in `dir` (made if missing, as the
/// transport makes it).
async fn writable(dir: &std::path::Path) -> std::io::Result<()> {
    tokio::fs::create_dir_all(dir).await?;
    let probe = dir.join(format!(".aftercare-ready-{}", std::process::id()));
    let written = tokio::fs::write(&probe, b"ready").await;
    let _ = tokio::fs::remove_file(&probe).await;
    written
}

/// The Prometheus text format: the recorder's counters and histograms, and
/// the gauges read now (a store that does not answer leaves its gauges out;
/// `/readyz` says why).
async fn metrics<S: Store>(State(r): State<Arc<Readiness<S>>>) -> impl IntoResponse {
    let now = r.clock.now();
    let (enrollments, outbox) =
        tokio::join!(r.store.enrollment_totals(), r.store.outbox_queue(now));
    let warn = |what: &str, e: &crate::store::Error| tracing::warn!("/metrics: {what}: {e}");
    let scraped = crate::telemetry::Scraped {
        enrollments: enrollments.inspect_err(|e| warn("enrollments", e)).ok(),
        outbox: outbox.inspect_err(|e| warn("outbox", e)).ok(),
        now: Some(now),
        kafka: r.kafka.as_ref().map(|k| k.gauges()),
    };
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::telemetry::render(&scraped),
    )
}
