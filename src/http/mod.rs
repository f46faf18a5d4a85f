//! The HTTP side: one router for the events webhook and health. Unsubscribe,
//! tracking, metrics, admin and the dashboard come with later issues.

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;

use crate::ingest::http::Webhook;
use crate::store::Store;

/// Bodies above this get 413.
pub const BODY_LIMIT: usize = 5 * 1024 * 1024;

pub fn router<S: Store>(webhook: Webhook<S>) -> Router {
    crate::ingest::http::routes(webhook)
        .route("/health", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
}
