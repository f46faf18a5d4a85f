//! The admin API under `/v1/admin/`: every path there, known or not, wants
//! `Authorization: Bearer $AFTERCARE_ADMIN_TOKEN` (401 otherwise). Without a
//! token the API is off, and every path there says so (404).
//!
//! Each group of admin routes is a module here with its own `routes(…)`,
//! merged into [`routes`]; all of them share [`Admin`].

pub mod customers;
pub mod dead_letters;
pub mod deliveries;
pub mod outbox;
pub mod reply;
pub mod sequences;
pub mod suppressions;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde_json::json;

use crate::ingest::http::Webhook;
use crate::store::Store;

mod journey;

/// What the admin routes work with: the webhook's store, catalog, clock and
/// ingest path (a replayed dead letter goes through it like any event).
pub struct Admin<S> {
    pub app: Webhook<S>,
}

impl<S: Clone> Clone for Admin<S> {
    fn clone(&self) -> Self {
        Self {
            app: self.app.clone(),
        }
    }
}

/// The token an admin request must carry, compared in constant time.
#[derive(Clone)]
pub struct Token(Arc<str>);

impl Token {
    pub fn new(token: &str) -> Self {
        Self(token.into())
    }

    /// Whether `given` is the token, in time that does not depend on where
    /// the two first differ.
    pub fn matches(&self, given: &str) -> bool {
        use sha2::{Digest, Sha256};
        use subtle::ConstantTimeEq;
        // Digests first: equal lengths, so the length of the token leaks
        // nothing either.
        let a = Sha256::digest(self.0.as_bytes());
        let b = Sha256::digest(given.as_bytes());
        a.as_slice().ct_eq(b.as_slice()).into()
    }

    /// Whether the request's `Authorization` header carries the token.
    pub fn admits(&self, headers: &HeaderMap) -> bool {
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| self.matches(t.trim()))
    }
}

/// The admin API; `token` `None`: off.
pub fn routes<S: Store>(admin: Admin<S>, token: Option<Token>) -> Router {
    let Some(token) = token else {
        return Router::new()
            .route("/v1/admin", any(off))
            .route("/v1/admin/{*rest}", any(off));
    };
    let api = Router::new()
        .merge(journey::routes())
        .merge(deliveries::routes())
        .merge(customers::routes())
        .merge(dead_letters::routes())
        .merge(outbox::routes())
        .merge(suppressions::routes())
        .merge(sequences::routes())
        .fallback(unknown)
        .with_state(admin);
    Router::new()
        .nest("/v1/admin", api)
        .layer(middleware::from_fn_with_state(token, guard))
}

/// 401 for a request without the token, whatever its path under
/// `/v1/admin/` (an unknown path does not tell a stranger it is unknown).
async fn guard(State(token): State<Token>, request: Request, next: Next) -> Response {
    if token.admits(request.headers()) {
        return next.run(request).await;
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer realm=\"aftercare admin\"")],
        axum::Json(json!({
            "error": "the admin API wants `Authorization: Bearer <AFTERCARE_ADMIN_TOKEN>`"
        })),
    )
        .into_response()
}

async fn off() -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({
            "error": "the admin API is off: set AFTERCARE_ADMIN_TOKEN to turn it on"
        })),
    )
        .into_response()
}

async fn unknown() -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({ "error": "no such admin path" })),
    )
        .into_response()
}
