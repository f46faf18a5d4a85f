//! `POST /v1/providers/<name>` (a relay's bounce and complaint webhook) and
//! `POST /v1/bounces` (a delivery status notification as raw mail).
//!
//! Each checks its proof first (the relay's signature or secret; for
//! `/v1/bounces` the `X-Aftercare-Signature` of `/v1/events` when
//! `AFTERCARE_WEBHOOK_SECRET` is set): without it, 401 (403 for a proven
//! message that is not for this service) and nothing is applied. A body
//! that cannot be read is 400 with where and what, kept as a dead letter.
//! Otherwise each bounce or complaint becomes an event for each customer
//! with the address ([`crate::bounce::Notice::event`]), ingested as
//! `POST /v1/events` ingests; an address no customer has is put on the
//! suppression list directly (a hard bounce or complaint). An item that
//! cannot be read is dead-lettered and named in a 400 answer; the others
//! are still applied. A provider that is not configured answers 404 saying
//! what to set.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Json};
use serde_json::json;

use crate::bounce::providers::{self, Parsed, Providers, Refused};
use crate::bounce::{Malformed, dsn};
use crate::event::EmailAddress;
use crate::ingest::http::{REQUEST_ID_HEADER, RequestId, SIGNATURE_HEADER, Webhook, verify};
use crate::store::{DeadLetter, Store};

pub struct Bounces<S> {
    pub webhook: Webhook<S>,
    pub providers: Arc<Providers>,
}

impl<S: Clone> Clone for Bounces<S> {
    fn clone(&self) -> Self {
        Self {
            webhook: self.webhook.clone(),
            providers: self.providers.clone(),
        }
    }
}

pub fn routes<S: Store>(bounces: Bounces<S>) -> Router {
    Router::new()
        .route("/v1/providers/{name}", post(provider::<S>))
        .route("/v1/bounces", post(dsn_report::<S>))
        .with_state(bounces)
}

fn answer(request: &RequestId, status: StatusCode, body: serde_json::Value) -> Response {
    let mut r = (status, Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&request.id) {
        r.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    r
}

fn error(request: &RequestId, status: StatusCode, msg: impl Into<String>) -> Response {
    answer(
        request,
        status,
        json!({"error": msg.into(), "request_id": request.id}),
    )
}

fn unavailable(request: &RequestId, e: crate::store::Error) -> Response {
    tracing::error!("bounces: {e}");
    error(
        request,
        StatusCode::SERVICE_UNAVAILABLE,
        "storage unavailable, retry",
    )
}

async fn provider<S: Store>(
    State(app): State<Bounces<S>>,
    Path(name): Path<String>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let request = RequestId::of(&headers, peer.map(|Extension(ConnectInfo(a))| a));
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return error(&request, rejection.status(), rejection.body_text()),
    };
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let p = &app.providers;
    let now = app.webhook.clock.now();
    let parsed = match name.as_str() {
        "ses" => p.ses.as_ref().map(|c| providers::ses::parse(c, &body)),
        "sendgrid" => p.sendgrid.as_ref().map(|c| {
            c.verify(
                header(providers::sendgrid::TIMESTAMP_HEADER),
                header(providers::sendgrid::SIGNATURE_HEADER),
                &body,
            )
            .and_then(|()| providers::sendgrid::parse(&body))
        }),
        "postmark" => p.postmark.as_ref().map(|c| {
            c.verify(header("authorization"), uri.query())
                .and_then(|()| providers::postmark::parse(&body))
        }),
        "mailgun" => p
            .mailgun
            .as_ref()
            .map(|c| providers::mailgun::parse(c, &body, now)),
        _ => {
            return error(
                &request,
                StatusCode::NOT_FOUND,
                format!(
                    "no provider {name:?}: the providers are {}",
                    providers::NAMES.join(", ")
                ),
            );
        }
    };
    let Some(parsed) = parsed else {
        let how = Providers::how_to_configure(&name).unwrap_or("see the README");
        return error(
            &request,
            StatusCode::NOT_FOUND,
            format!("the {name} webhook is not configured: {how}"),
        );
    };
    match parsed {
        Ok(parsed) => {
            if let Some(note) = &parsed.note {
                tracing::warn!(provider = %name, "{note}");
            }
            apply(&app, &request, &name, parsed, None).await
        }
        Err(Refused::Malformed(m)) => {
            malformed(
                &app,
                &request,
                format!("{name} webhook: {m}"),
                m,
                &body,
                now,
            )
            .await
        }
        Err(refused) => {
            let status = match refused {
                Refused::Forbidden(_) => StatusCode::FORBIDDEN,
                _ => StatusCode::UNAUTHORIZED,
            };
            tracing::warn!(provider = %name, peer = ?request.peer, "webhook refused: {refused}");
            error(&request, status, refused.to_string())
        }
    }
}

async fn dsn_report<S: Store>(
    State(app): State<Bounces<S>>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let request = RequestId::of(&headers, peer.map(|Extension(ConnectInfo(a))| a));
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return error(&request, rejection.status(), rejection.body_text()),
    };
    if let Some(secret) = &app.webhook.secret {
        let header = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok());
        if !verify(secret, &body, header) {
            return error(
                &request,
                StatusCode::UNAUTHORIZED,
                "missing or wrong X-Aftercare-Signature (sha256=<hex HMAC-SHA256 of the body>)",
            );
        }
    }
    let now = app.webhook.clock.now();
    match dsn::parse(&body, now) {
        Ok(d) => {
            for (address, action) in &d.not_bounces {
                tracing::info!(%address, %action, "DSN: not a bounce");
            }
            let not_bounces: Vec<_> = d
                .not_bounces
                .iter()
                .map(|(address, action)| json!({"address": address, "action": action}))
                .collect();
            let parsed = Parsed {
                notices: d.notices,
                ignored: d.not_bounces.len(),
                ..Parsed::default()
            };
            let extra = json!({"message_id": d.message_id, "not_bounces": not_bounces});
            apply(&app, &request, "dsn", parsed, Some(extra)).await
        }
        Err(Malformed(m)) => {
            malformed(
                &app,
                &request,
                format!("POST /v1/bounces: {m}"),
                m,
                &body,
                now,
            )
            .await
        }
    }
}

/// A body that could not be read: kept as a dead letter (with `reason`),
/// answered 400 with `m`.
async fn malformed<S: Store>(
    app: &Bounces<S>,
    request: &RequestId,
    reason: String,
    m: String,
    body: &[u8],
    now: chrono::DateTime<chrono::Utc>,
) -> Response {
    let letter = crate::ingest::dead("http", reason, body, Some(request.origin(0)));
    if let Err(e) = app
        .webhook
        .store
        .keep_dead_letters(std::slice::from_ref(&letter), now)
        .await
    {
        return unavailable(request, e);
    }
    crate::telemetry::dead_letters(&[letter]);
    error(request, StatusCode::BAD_REQUEST, m)
}

/// Applies what a webhook or DSN reported; the answer says what became of it.
async fn apply<S: Store>(
    app: &Bounces<S>,
    request: &RequestId,
    source: &str,
    parsed: Parsed,
    extra: Option<serde_json::Value>,
) -> Response {
    let w = &app.webhook;
    let now = w.clock.now();
    let mut letters: Vec<DeadLetter> = Vec::new();
    let mut rejected: Vec<String> = Vec::new();
    let mut refuse = |letters: &mut Vec<DeadLetter>, why: String, raw: &str| {
        letters.push(crate::ingest::dead(
            "http",
            format!("{source} report: {why}"),
            raw.as_bytes(),
            Some(request.origin(0)),
        ));
        rejected.push(why);
    };
    for (m, raw) in &parsed.bad {
        refuse(&mut letters, m.0.clone(), raw);
    }
    let mut events = Vec::new();
    let (mut listed, mut unknown) = (0usize, 0usize);
    for n in &parsed.notices {
        let address = match EmailAddress::parse(&n.address) {
            Ok(a) => a,
            Err(e) => {
                refuse(&mut letters, e, &as_json(n));
                continue;
            }
        };
        // A report that names its message concerns the customer the message
        // went to, whatever address bounced in the end (a forwarding
        // address, say); otherwise whoever has the address.
        let sent_to = match &n.message_id {
            Some(id) => match w.store.recipient_of_message(id).await {
                Ok(found) => found,
                Err(e) => return unavailable(request, e),
            },
            None => None,
        };
        let customers = match sent_to {
            Some((id, email)) => {
                if !email.eq_ignore_ascii_case(address.as_str()) {
                    tracing::info!(source, reported = %address, sent_to = %email, customer_id = %id,
                        "a report about a message sent to another address: it concerns the address the message went to");
                }
                vec![(id, email)]
            }
            None => match w.store.customers_with_address(address.as_str()).await {
                Ok(c) => c,
                Err(e) => return unavailable(request, e),
            },
        };
        if customers.is_empty() {
            if n.suppresses() {
                if let Err(e) = w
                    .store
                    .suppress_address(address.as_str(), &n.reason(), now)
                    .await
                {
                    return unavailable(request, e);
                }
                listed += 1;
            } else {
                unknown += 1;
            }
            tracing::info!(source, address = %address, report = %n.report,
                "a report about an address no customer has");
            continue;
        }
        for (id, email) in customers {
            match n.event(&id, &email) {
                Ok(e) => events.push(e),
                Err(why) => refuse(&mut letters, why, &as_json(n)),
            }
        }
    }
    let report = match crate::ingest::ingest_batch(&w.store, &w.catalog, &events, "http", now).await
    {
        Ok(r) => r,
        Err(e) => return unavailable(request, e),
    };
    for r in &report.refused {
        let raw = serde_json::to_string(&events[r.index]).unwrap_or_default();
        refuse(&mut letters, r.reason.clone(), &raw);
    }
    if let Err(e) = w.store.keep_dead_letters(&letters, now).await {
        return unavailable(request, e);
    }
    crate::telemetry::dead_letters(&letters);
    w.kick.notify_waiters();
    for e in &events {
        tracing::info!(source, event_id = %e.id, customer_id = %e.customer.id, kind = %e.kind,
            "report applied");
    }
    let status = if rejected.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    let mut body = json!({
        "reports": parsed.notices.len(),
        "events": report.applied,
        "duplicates": report.duplicates,
        "suppressed_addresses": listed,
        "unknown_addresses": unknown,
        "ignored": parsed.ignored,
        "rejected": rejected,
        "request_id": request.id,
    });
    if let Some(note) = parsed.note {
        body["note"] = note.into();
    }
    if let (Some(serde_json::Value::Object(extra)), Some(obj)) = (extra, body.as_object_mut()) {
        obj.extend(extra);
    }
    answer(request, status, body)
}

/// A report as its dead letter keeps it.
fn as_json(n: &crate::bounce::Notice) -> String {
    json!({
        "source": n.source,
        "key": n.key,
        "address": n.address,
        "report": n.report.to_string(),
        "at": n.at.to_rfc3339(),
        "message_id": n.message_id,
        "detail": n.detail,
    })
    .to_string()
}
