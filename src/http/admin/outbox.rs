//! `POST /v1/admin/outbox/{id}/retry` (optional body `{"reason"}`): a
//! failed email goes back to pending, due now, with a fresh retry schedule;
//! its attempts and delivery log stay, and the operator's retry is logged
//! (outcome `retry`). 409 for a row that is not failed, 404 for none.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::Admin;
use super::reply::{Answer, ApiError, body, reason};
use crate::engine::operator;
use crate::store::{Store, Tx};

pub fn routes<S: Store>() -> Router<Admin<S>> {
    Router::new().route("/outbox/{id}/retry", post(retry::<S>))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Why {
    reason: Option<String>,
}

async fn retry<S: Store>(
    State(admin): State<Admin<S>>,
    Path(id): Path<String>,
    raw: Bytes,
) -> Answer<Json<Value>> {
    let Some(id) = id.parse::<i64>().ok().filter(|n| *n > 0) else {
        return Err(ApiError::bad(format!(
            "id: {id:?} is not an outbox row id (a whole number)"
        )));
    };
    let detail = match body::<Why>(&raw)?.reason {
        None => "retried by an operator".to_string(),
        given => format!("retried by an operator: {}", reason(given, "reason")?),
    };
    let app = &admin.app;
    let now = app.clock.now();
    let mut tx = app.store.begin().await?;
    let Some((status, _)) = tx.outbox_state(id).await? else {
        return Err(ApiError::not_found(format!("no outbox row {id}")));
    };
    operator::may_retry(status).map_err(ApiError::conflict)?;
    if !tx.requeue_failed(id, &detail, now).await? {
        return Err(ApiError::conflict(
            "the email changed meanwhile (ask again), or its customer was erased",
        ));
    }
    tx.commit().await?;
    app.kick.notify_waiters();
    tracing::info!(outbox_id = id, "{detail}");
    Ok(Json(json!({
        "id": id,
        "status": "pending",
        "not_before": now,
        "detail": detail,
    })))
}
