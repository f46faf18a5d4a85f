//! `POST /v1/events`: one event or a JSON array. With a webhook secret the
//! body must carry `X-Aftercare-Signature: sha256=<hex HMAC-SHA256 of the raw
//! body>`. 202 once the transaction has committed; 400 with a reason per
//! invalid item (dead-lettered; the valid ones are still taken), an item
//! being invalid when it breaks a limit of the event schema
//! (`crate::event::limits`) or when the store refuses it even alone; 413 past
//! the body limit; 503 only while the store is unavailable.
//!
//! The answer also names the event types of the request that nothing
//! listens to (`unknown_types`, `unused_types`; they are still accepted),
//! and every answer carries a request id (the client's `X-Request-Id` when
//! it is a sensible one), which the request's dead letters name with the
//! client's address.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use hmac::{Hmac, KeyInit, Mac};
use serde::Serialize;
use serde_json::value::RawValue;
use sha2::Sha256;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::post;
use tokio::sync::Notify;

use crate::clock::Clock;
use crate::ingest::listened::{Unheard, Watch, kinds_taken};
use crate::sequence::model::Catalog;
use crate::store::{DeadLetter, Store};

pub const SIGNATURE_HEADER: &str = "x-aftercare-signature";
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The longest client request id taken; a longer one is replaced.
pub const REQUEST_ID_BYTES: usize = 128;

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
    /// Types of the accepted items that no sequence listens to and that
    /// are not documented: a typo, most likely.
    pub unknown_types: Vec<Unheard>,
    /// Documented types of the accepted items that no sequence listens to.
    pub unused_types: Vec<Unheard>,
    pub request_id: String,
}

fn error(request: &RequestId, status: StatusCode, msg: impl Into<String>) -> Response {
    let body = serde_json::json!({"error": msg.into(), "request_id": request.id});
    request.answer(status, Json(body))
}

/// Who sent a request: its id and the client's address, for the answer and
/// the dead letters.
pub struct RequestId {
    pub id: String,
    pub peer: Option<SocketAddr>,
}

impl RequestId {
    /// The client's `X-Request-Id` when it is 1 to [`REQUEST_ID_BYTES`]
    /// printable ASCII characters (no spaces), else a new one.
    pub fn of(headers: &HeaderMap, peer: Option<SocketAddr>) -> Self {
        let given = headers
            .get(REQUEST_ID_HEADER)
            .map(HeaderValue::as_bytes)
            .filter(|v| {
                (1..=REQUEST_ID_BYTES).contains(&v.len()) && v.iter().all(u8::is_ascii_graphic)
            })
            .and_then(|v| std::str::from_utf8(v).ok());
        Self {
            id: given.map_or_else(new_request_id, str::to_string),
            peer,
        }
    }

    /// Where item `index` of this request came from, for its dead letter.
    pub fn origin(&self, index: usize) -> String {
        match self.peer {
            Some(peer) => format!("http {peer} request {} item {index}", self.id),
            None => format!("http request {} item {index}", self.id),
        }
    }

    /// `body` with the request id in its `X-Request-Id` header.
    fn answer(&self, status: StatusCode, body: impl IntoResponse) -> Response {
        let mut r = (status, body).into_response();
        if let Ok(v) = HeaderValue::from_str(&self.id) {
            r.headers_mut().insert(REQUEST_ID_HEADER, v);
        }
        r
    }
}

/// 16 hex digits, unlikely to repeat within a process or across processes:
/// a counter and the process id hashed with a randomly keyed hasher.
fn new_request_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(NEXT.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
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
    /// Event types nobody listens to, counted with the other sources'.
    pub watch: Arc<Watch>,
}

impl<S: Clone> Clone for Webhook<S> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            catalog: self.catalog.clone(),
            clock: self.clock.clone(),
            secret: self.secret.clone(),
            kick: self.kick.clone(),
            watch: self.watch.clone(),
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
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let request = RequestId::of(&headers, peer.map(|Extension(ConnectInfo(a))| a));
    // Past the body limit (413) or unreadable: answered with the request id too.
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return error(&request, rejection.status(), rejection.body_text()),
    };
    if let Some(secret) = &app.secret {
        let header = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok());
        if !verify(secret, &body, header) {
            return error(
                &request,
                StatusCode::UNAUTHORIZED,
                "missing or wrong X-Aftercare-Signature (sha256=<hex HMAC-SHA256 of the body>)",
            );
        }
    }
    let items = match split_body(&body) {
        Ok(items) => items,
        Err(msg) => return error(&request, StatusCode::BAD_REQUEST, msg),
    };
    let now = app.clock.now();
    let mut events = Vec::with_capacity(items.len());
    // The item index of each event.
    let mut positions = Vec::with_capacity(items.len());
    let mut rejected = Rejections::new(&request);
    for (index, raw) in items.iter().enumerate() {
        match crate::ingest::parse(raw.get().as_bytes()) {
            Ok(ev) => {
                events.push(ev);
                positions.push(index);
            }
            Err(reason) => rejected.add(raw, index, reason.clone(), reason),
        }
    }
    if let Err(r) = rejected.keep(&app.store, now).await {
        return r;
    }
    let report =
        match crate::ingest::ingest_batch(&app.store, &app.catalog, &events, "http", now).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("ingest: {e}");
                return error(
                    &request,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage unavailable, retry",
                );
            }
        };
    // The types taken (duplicates too: a resent typo is still a typo).
    let survey = app.watch.note(kinds_taken(&events, &report.refused), now);
    for refused in report.refused {
        let index = positions[refused.index];
        // The database's own words stay with the operator.
        rejected.add(items[index], index, refused.reason, STORE_REFUSED.into());
    }
    if let Err(r) = rejected.keep(&app.store, now).await {
        return r;
    }
    let mut rejected = rejected.answer;
    rejected.sort_by_key(|r| r.index);
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
        unknown_types: survey.unknown,
        unused_types: survey.unused,
        request_id: request.id.clone(),
    };
    request.answer(status, Json(answer))
}

/// The reason given for an item the store refused even alone.
pub const STORE_REFUSED: &str =
    "the store refused this event; its reason is kept with the dead letter";

/// The items refused so far: their dead letters, kept a request's worth at
/// a time (one transaction), and what the answer says of them.
struct Rejections<'r> {
    request: &'r RequestId,
    letters: Vec<DeadLetter>,
    answer: Vec<Rejected>,
}

impl<'r> Rejections<'r> {
    fn new(request: &'r RequestId) -> Self {
        Self {
            request,
            letters: Vec::new(),
            answer: Vec::new(),
        }
    }

    /// Item `index` is refused: `why` goes in its dead letter, `reason` in
    /// the answer.
    fn add(&mut self, raw: &RawValue, index: usize, why: String, reason: String) {
        self.letters.push(crate::ingest::dead(
            "http",
            why,
            raw.get().as_bytes(),
            Some(self.request.origin(index)),
        ));
        #[derive(serde::Deserialize)]
        struct Id<'a> {
            #[serde(borrow)]
            id: Option<std::borrow::Cow<'a, str>>,
        }
        let id = serde_json::from_str::<Id>(raw.get())
            .ok()
            .and_then(|i| i.id)
            .map(|i| quoted_id(&i));
        self.answer.push(Rejected { index, id, reason });
    }

    /// Keeps the dead letters added since the last call; the answer to give
    /// at once if they could not be kept.
    async fn keep<S: Store>(
        &mut self,
        store: &S,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), Response> {
        let letters = std::mem::take(&mut self.letters);
        if let Err(e) = store.keep_dead_letters(&letters, now).await {
            tracing::error!("dead letter: {e}");
            return Err(error(
                self.request,
                StatusCode::SERVICE_UNAVAILABLE,
                "storage unavailable, retry",
            ));
        }
        crate::telemetry::dead_letters(&letters);
        Ok(())
    }
}

/// An id quoted back to the sender: at most the id limit, no NUL.
fn quoted_id(id: &str) -> String {
    let max = crate::event::limits::ID_BYTES;
    let mut end = id.len().min(max);
    while !id.is_char_boundary(end) {
        end -= 1;
    }
    id[..end].replace('\0', "\u{fffd}")
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

    #[test]
    fn request_ids_are_the_clients_when_sensible() {
        let peer: SocketAddr = "127.0.0.1:54321".parse().unwrap();
        let with = |v: &[u8]| {
            let mut h = HeaderMap::new();
            h.insert(REQUEST_ID_HEADER, HeaderValue::from_bytes(v).unwrap());
            RequestId::of(&h, Some(peer))
        };
        let r = with(b"shop-42");
        assert_eq!(r.id, "shop-42");
        assert_eq!(r.origin(3), "http 127.0.0.1:54321 request shop-42 item 3");
        let long = [b'x'; REQUEST_ID_BYTES + 1];
        for bad in [
            &b"two words"[..],
            &b"caf\xc3\xa9"[..],
            &long[..],
            &b"tab\there"[..],
        ] {
            let r = with(bad);
            assert_eq!(r.id.len(), 16, "{bad:?} -> {}", r.id);
            assert!(r.id.bytes().all(|b| b.is_ascii_hexdigit()));
        }
        let a = RequestId::of(&HeaderMap::new(), None);
        let b = RequestId::of(&HeaderMap::new(), None);
        assert_ne!(a.id, b.id);
        assert_eq!(a.origin(0), format!("http request {} item 0", a.id));
    }
}
