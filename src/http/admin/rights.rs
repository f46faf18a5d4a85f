//! Data rights over the admin API (README, "Data rights"):
//! `DELETE /v1/admin/customers/{id}` erases a customer, `GET
//! /v1/admin/customers/{id}/export` answers everything stored about them as
//! JSON.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use serde_json::json;

use super::Admin;
use crate::store::Store;

pub fn routes<S: Store>() -> Router<Admin<S>> {
    Router::new()
        .route("/customers/{id}", delete(erase::<S>))
        .route("/customers/{id}/export", get(export::<S>))
}

/// `200` with what was erased and the erasures logged; `404` when nothing
/// is stored about the customer and none was erased before.
async fn erase<S: Store>(State(admin): State<Admin<S>>, Path(id): Path<String>) -> Response {
    if let Some(bad) = refused(&id) {
        return bad;
    }
    let now = admin.app.clock.now();
    match crate::rights::erase(&admin.app.store, &id, crate::rights::ADMIN, now).await {
        Ok(a) if a.erased.is_none() && a.erasures.is_empty() => not_stored(&id),
        Ok(a) => {
            if let Some(erased) = &a.erased {
                tracing::info!(customer_id = %id, ?erased, "customer erased (admin API)");
            }
            (StatusCode::OK, axum::Json(a)).into_response()
        }
        Err(e) => failed(&e),
    }
}

/// `200` with the customer's rows in every table; `404` when there are none.
async fn export<S: Store>(State(admin): State<Admin<S>>, Path(id): Path<String>) -> Response {
    if let Some(bad) = refused(&id) {
        return bad;
    }
    match admin.app.store.export_customer(&id).await {
        Ok(x) if x.is_empty() => not_stored(&id),
        Ok(x) => (StatusCode::OK, axum::Json(x)).into_response(),
        Err(e) => failed(&e),
    }
}

/// A customer id no event could carry: `400` saying why.
fn refused(id: &str) -> Option<Response> {
    let max = crate::event::limits::ID_BYTES;
    let why = if id.trim().is_empty() {
        "the customer id is blank".to_string()
    } else if id.len() > max {
        format!("the customer id is {} bytes, longer than {max}", id.len())
    } else if id.contains('\0') {
        "the customer id contains a NUL".to_string()
    } else {
        return None;
    };
    Some((StatusCode::BAD_REQUEST, axum::Json(json!({ "error": why }))).into_response())
}

fn not_stored(id: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({ "error": format!("nothing is stored about customer {id:?}") })),
    )
        .into_response()
}

fn failed(e: &crate::store::Error) -> Response {
    tracing::error!("admin API: {e}");
    let status = if e.is_unavailable() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    (status, axum::Json(json!({ "error": e.to_string() }))).into_response()
}
