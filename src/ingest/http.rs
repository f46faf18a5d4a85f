//! `POST /v1/events`: one event or a JSON array. With a webhook secret the
//! body must carry `X-Aftercare-Signature: sha256=<hex HMAC-SHA256 of the raw
//! body>`. 202 once the transaction has committed; 400 with a reason per
//! invalid item (dead-lettered; the valid ones are still taken); 413 past the
//! body limit.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, KeyInit, Mac};
use serde::Serialize;
use serde_json::value::RawValue;
use sha2::Sha256;

use std::sync::Arc;

use axum::Router;
use axum::routing::post;
use tokio::sync::Notify;

use crate::clock::Clock;
use crate::sequence::model::Catalog;
use crate::store::Store;

pub const SIGNATURE_HEADER: &str = "x-aftercare-signature";

#[derive(Debug, Serialize)]
pub struct Rejected {
    pub index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub reason: String,
}

#[derive(Debug, Serialize)]
pub struct Answer {
    pub accepted: usize,
    pub duplicates: usize,
    pub rejected: Vec<Rejected>,
}

fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({"error": msg.into()}))).into_response()
}

/// Checks `sha256=<hex>` against the HMAC of `body`, in constant time.
pub fn verify(secret: &str, body: &[u8], header: Option<&str>) -> bool {
    let Some(hex_sig) = header.and_then(|h| h.trim().strip_prefix("sha256=")) else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Splits a webhook body into its items: one event, or each element of a
/// JSON array. The error is the 400 message for a body that is no JSON.
pub fn split_body(body: &[u8]) -> Result<Vec<&RawValue>, String> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}")),
        Some(_) => serde_json::from_slice::<&RawValue>(body)
            .map(|v| vec![v])
            .map_err(|e| format!("invalid JSON: {e}")),
        None => Err("empty body: send an event or an array of events".to_string()),
    }
}

/// The `id` of a rejected item, when it has a string one, to name it in the answer.
pub fn item_id(raw: &str) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(raw)
        .ok()
        .and_then(|v| v.get("id").and_then(|i| i.as_str()).map(str::to_string))
}

/// What the webhook needs.
pub struct Webhook<S> {
    pub store: S,
    pub catalog: Arc<Catalog>,
    pub clock: Arc<dyn Clock>,
    pub secret: Option<String>,
    /// Wakes the scheduler and sender at once after new work is written.
    pub kick: Arc<Notify>,
}

impl<S: Clone> Clone for Webhook<S> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            catalog: self.catalog.clone(),
            clock: self.clock.clone(),
            secret: self.secret.clone(),
            kick: self.kick.clone(),
        }
    }
}

/// `POST /v1/events`.
pub fn routes<S: Store>(webhook: Webhook<S>) -> Router {
    Router::new()
        .route("/v1/events", post(post_events::<S>))
        .with_state(webhook)
}

async fn post_events<S: Store>(
    State(app): State<Webhook<S>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(secret) = &app.secret {
        let header = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok());
        if !verify(secret, &body, header) {
            return error(
                StatusCode::UNAUTHORIZED,
                "missing or wrong X-Aftercare-Signature (sha256=<hex HMAC-SHA256 of the body>)",
            );
        }
    }
    let items = match split_body(&body) {
        Ok(items) => items,
        Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
    };
    let now = app.clock.now();
    let mut events = Vec::with_capacity(items.len());
    let mut rejected = Vec::new();
    for (index, raw) in items.iter().enumerate() {
        match crate::ingest::parse(raw.get().as_bytes()) {
            Ok(ev) => events.push(ev),
            Err(reason) => {
                let id = item_id(raw.get());
                let letter = crate::ingest::dead(
                    "http",
                    reason.clone(),
                    raw.get().as_bytes(),
                    Some(format!("item {index}")),
                );
                if let Err(e) = app.store.dead_letter(&letter, now).await {
                    tracing::error!("dead letter: {e}");
                    return error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "storage unavailable, retry",
                    );
                }
                rejected.push(Rejected { index, id, reason });
            }
        }
    }
    let report =
        match crate::ingest::ingest_batch(&app.store, &app.catalog, &events, "http", now).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("ingest: {e}");
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage unavailable, retry",
                );
            }
        };
    app.kick.notify_waiters();
    let status = if rejected.is_empty() {
        StatusCode::ACCEPTED
    } else {
        StatusCode::BAD_REQUEST
    };
    let answer = Answer {
        accepted: report.applied,
        duplicates: report.duplicates,
        rejected,
    };
    (status, Json(answer)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures() {
        let s = sign("k", b"body");
        assert!(verify("k", b"body", Some(&s)));
        assert!(!verify("k", b"bodY", Some(&s)));
        assert!(!verify("other", b"body", Some(&s)));
        assert!(!verify("k", b"body", None));
        assert!(!verify("k", b"body", Some("sha256=zz")));
        assert!(!verify("k", b"body", Some(s.trim_start_matches("sha256="))));
    }
}
