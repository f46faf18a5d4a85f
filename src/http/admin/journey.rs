//! `GET /v1/admin/customers/{id}/journey[?order=ID&template=T]`: a
//! customer's timeline (events, the engine's decisions, emails and what
//! became of them), and with `template` the answer to "did they get it, and
//! if not, why" ([`crate::journey`], the README's JSON shape).

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use serde::Deserialize;

use super::Admin;
use super::reply::{Answer, ApiError};
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
) -> Answer<axum::Json<journey::Journey>> {
    let filter = Filter {
        order: p.order.filter(|o| !o.is_empty()),
        template: p.template.filter(|t| !t.is_empty()),
    };
    let rows = admin.app.store.journey(&id).await?;
    if rows.is_empty() {
        return Err(ApiError::not_found(format!(
            "nothing is stored about customer {id:?}"
        )));
    }
    Ok(axum::Json(journey::assemble(
        &admin.app.catalog,
        &id,
        &rows,
        &filter,
    )))
}
