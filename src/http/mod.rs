//! The HTTP side: one router for the events webhook, the relays' bounce
//! webhooks and DSNs ([`bounces`]), liveness and readiness, unsubscribe and
//! open/click tracking, served by [`server::serve`] under its limits.
//! the admin API ([`admin`]) and the dashboard ([`dashboard`]).

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
use crate::ingest::http::Webhook;
use crate::store::Store;

/// Bodies above this get 413.
pub const BODY_LIMIT: usize = 5 * 1024 * 1024;

/// What `/readyz` checks besides the database.
pub struct Readiness<S> {
    pub store: S,
    /// The `.eml` transport's folder, when that is the transport.
    pub outbox_dir: Option<PathBuf>,
}

pub fn router<S: Store>(
    webhook: Webhook<S>,
    readiness: Readiness<S>,
    links: Arc<crate::send::links::Links>,
    providers: Arc<Providers>,
    admin_token: Option<admin::Token>,
    dashboard: dashboard::Settings,
) -> Router {
    let alive = get(|| async { "ok" });
    let ready = Router::new()
        .route("/readyz", get(ready::<S>))
        .with_state(Arc::new(readiness));
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
        .route("/healthz", alive.clone())
        .route("/health", alive)
        .merge(ready)
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
