//! `GET /t/o/TOKEN` (the open pixel) and `GET /t/c/TOKEN` (a link's
//! redirect). Each records an open or a click in `email_activity`, marked
//! when a machine made it (see [`crate::send::tracking::is_machine`]).
//!
//! A click token carries its target URL inside the signed part: the
//! redirect goes there and nowhere else, so the route is no open redirect.
//! A token that does not verify gets 404 and records nothing. The pixel and
//! the redirect are served even when the database cannot record them: the
//! customer's click matters more than the count.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::unsubscribe::Mailing;
use crate::send::token::Token;
use crate::send::tracking::is_machine;
use crate::store::{Activity, ActivityKind, Store};

/// A transparent 1x1 GIF (43 bytes).
pub const PIXEL: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

pub fn routes<S: Store>(m: Arc<Mailing<S>>) -> Router {
    Router::new()
        .route("/t/o/{token}", get(open::<S>))
        .route("/t/c/{token}", get(click::<S>))
        .with_state(m)
}

async fn open<S: Store>(
    State(m): State<Arc<Mailing<S>>>,
    Path(token): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let Ok(Token::Open {
        customer_id,
        idempotency_key,
    }) = m.links.verify(&token)
    else {
        return (StatusCode::NOT_FOUND, "unknown link").into_response();
    };
    record(
        &m,
        ActivityKind::Open,
        customer_id,
        idempotency_key,
        None,
        &method,
        &headers,
    )
    .await;
    let mut r = PIXEL.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/gif"));
    no_cache(h);
    r
}

async fn click<S: Store>(
    State(m): State<Arc<Mailing<S>>>,
    Path(token): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let Ok(Token::Click {
        customer_id,
        idempotency_key,
        url,
    }) = m.links.verify(&token)
    else {
        return (StatusCode::NOT_FOUND, "unknown link").into_response();
    };
    // Signed by this service, but checked again: only http(s) targets, and
    // nothing a header cannot carry.
    let location = match url::Url::parse(&url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => HeaderValue::from_str(u.as_str()),
        _ => return (StatusCode::NOT_FOUND, "unknown link").into_response(),
    };
    let Ok(location) = location else {
        return (StatusCode::NOT_FOUND, "unknown link").into_response();
    };
    record(
        &m,
        ActivityKind::Click,
        customer_id,
        idempotency_key,
        Some(url),
        &method,
        &headers,
    )
    .await;
    let mut r = StatusCode::FOUND.into_response();
    let h = r.headers_mut();
    h.insert(header::LOCATION, location);
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    no_cache(h);
    r
}

fn no_cache(h: &mut HeaderMap) {
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, no-cache, must-revalidate, max-age=0"),
    );
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert(header::EXPIRES, HeaderValue::from_static("0"));
}

/// Records the open or click, marked when a machine made it; a failure is
/// logged, not shown.
async fn record<S: Store>(
    m: &Mailing<S>,
    kind: ActivityKind,
    customer_id: String,
    idempotency_key: String,
    url: Option<String>,
    method: &Method,
    headers: &HeaderMap,
) {
    let now = m.clock.now();
    let agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    let sent_at = match m.store.sent_at(&idempotency_key).await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(key = %idempotency_key, "tracking: reading the send time: {e}");
            None
        }
    };
    let machine = is_machine(agent, method == Method::HEAD, sent_at, now);
    let a = Activity {
        idempotency_key,
        customer_id,
        kind,
        url,
        at: now,
        machine,
    };
    match m.store.record_activity(&a).await {
        Ok(()) => crate::telemetry::activity(&m.catalog, kind, &a.idempotency_key, machine),
        Err(e) => {
            tracing::warn!(key = %a.idempotency_key, kind = kind.as_str(), "tracking: recording: {e}")
        }
    }
}
