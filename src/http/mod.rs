//! The HTTP side: the events webhook and health. Unsubscribe, tracking,
//! metrics, admin and the dashboard come with later issues.

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use tokio::sync::Notify;

use crate::clock::Clock;
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

impl<S: Clone> Clone for AppState<S> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            catalog: self.catalog.clone(),
            clock: self.clock.clone(),
            webhook_secret: self.webhook_secret.clone(),
            kick: self.kick.clone(),
        }
    }
}

pub fn router<S: Store>(state: AppState<S>) -> Router {
    Router::new()
        .route("/v1/events", post(crate::ingest::http::post_events::<S>))
        .route("/health", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}
