//! The HTTP side: one router for the events webhook and health. Unsubscribe,
//! tracking, metrics, admin and the dashboard come with later issues.

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use tokio::sync::Notify;

use crate::clock::Clock;
use crate::ingest::http::Webhook;
use crate::sequence::model::Catalog;
use crate::store::Store;

/// Bodies above this get 413.
pub const BODY_LIMIT: usize = 5 * 1024 * 1024;

pub struct AppState<S> {
    pub store: S,
    pub catalog: Arc<Catalog>,
    pub clock: Arc<dyn Clock>,
    pub webhook_secret: Option<String>,
    /// Wakes the scheduler and sender at once after new work is written.
    pub kick: Arc<Notify>,
}

pub fn router<S: Store>(state: AppState<S>) -> Router {
    let webhook = Webhook {
        store: state.store,
        catalog: state.catalog,
        clock: state.clock,
        secret: state.webhook_secret,
        kick: state.kick,
    };
    crate::ingest::http::routes(webhook)
        .route("/health", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
}
