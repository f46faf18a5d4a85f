//! `GET /v1/admin/customers/{id}/journey[?order=ID&template=T]`: a
//! customer's timeline (events, the engine's decisions, emails and what
//! became of them), and with `template` the answer to "did they get it, and
//! if not, why" ([`crate::journey`], the README's JSON shape).

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;

use super::Admin;
use crate::journey::{self, Filter};
use crate::store::Store;

pub fn routes<S: Store>() -> Router<Admin<S>> {
    Router::new().route("/customers/{id}/journey", get(journey_of::<S>))
}

#[derive(Debug, Deserialize)]
struct Params {
    order: Option<String>,
    template: Option<String>,
}

async fn journey_of<S: Store>(
    State(admin): State<Admin<S>>,
    Path(id): Path<String>,
    Query(p): Query<Params>,
) -> Response {
    let filter = Filter {
        order: p.order.filter(|o| !o.is_empty()),
        template: p.template.filter(|t| !t.is_empty()),
    };
    match admin.app.store.journey(&id).await {
        Ok(rows) if rows.is_empty() => (
            StatusCode::NOT_FOUND,
            axum::Json(json!({ "error": format!("nothing is stored about customer {id:?}") })),
        )
            .into_response(),
        Ok(rows) => {
            axum::Json(journey::assemble(&admin.app.catalog, &id, &rows, &filter)).into_response()
        }
        Err(e) => {
            tracing::warn!(customer_id = %id, "reading the journey failed: {e}");
            let status = if e.is_unavailable() {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
            (
                status,
                axum::Json(json!({ "error": format!("reading the journey failed: {e}") })),
            )
                .into_response()
        }
    }
}
