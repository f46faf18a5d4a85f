//! The suppression list:
//!
//! - `GET /v1/admin/suppressions`: entries by address (`email` for one,
//!   `after` the `next` of the page before, `limit`), with `history`: what
//!   operators added and removed, newest first, with why and when.
//! - `POST /v1/admin/suppressions` `{"email", "reason"}`: adds an address
//!   (201; 200 with the entry as it is when it is there already).
//! - `DELETE /v1/admin/suppressions/{email}` with a reason (`?reason=` or
//!   `{"reason"}`): removes it, logged. A customer whose own address it is
//!   gets their profile's suppression (bounce, complaint) lifted with it,
//!   in the same transaction under their lock (`engine::operator`), so mail
//!   to them goes out again.
//!
//! Entries are spelled as the list keeps them ([`address_key`]); an entry
//! kept as a hash (`sha256:<hex>`) is listed as it is and removed by it.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::Admin;
use super::reply::{Answer, ApiError, Params, body, reason};
use crate::engine::operator;
use crate::event::EmailAddress;
use crate::store::{LookBack, Store, SuppressionFilter, Tx, Writes, address_key};

/// Changes shown in a list's `history`.
pub const HISTORY: i64 = 100;

pub fn routes<S: Store>() -> Router<Admin<S>> {
    Router::new()
        .route("/suppressions", get(list::<S>).post(add::<S>))
        .route("/suppressions/{email}", delete(remove::<S>))
}

async fn list<S: Store>(
    State(admin): State<Admin<S>>,
    RawQuery(query): RawQuery,
) -> Answer<Json<Value>> {
    let mut p = Params::parse(query.as_deref())?;
    let f = SuppressionFilter {
        email: p.text("email").map(|e| address_key(&e)),
        after: p.text("after"),
        limit: p.limit()?,
    };
    p.done()?;
    let store = &admin.app.store;
    let entries = store.suppressions(&f).await?;
    let next = match entries.last() {
        Some(last) if entries.len() as i64 == f.page_size() => {
            let probe = SuppressionFilter {
                after: Some(last.email.clone()),
                limit: 1,
                ..f.clone()
            };
            (!store.suppressions(&probe).await?.is_empty()).then(|| last.email.clone())
        }
        _ => None,
    };
    let history = store.suppression_log(f.email.as_deref(), HISTORY).await?;
    let mut answer = json!({ "suppressions": entries, "history": history });
    if let Some(next) = next {
        answer["next"] = next.into();
    }
    Ok(Json(answer))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewEntry {
    email: String,
    reason: Option<String>,
}

async fn add<S: Store>(
    State(admin): State<Admin<S>>,
    raw: Bytes,
) -> Answer<(StatusCode, Json<Value>)> {
    let new: NewEntry = body(&raw)?;
    let email =
        EmailAddress::parse(new.email.trim()).map_err(|e| ApiError::bad(format!("email: {e}")))?;
    let why = reason(new.reason, "reason")?;
    let app = &admin.app;
    let now = app.clock.now();
    let added = app.store.add_suppression(email.as_str(), &why, now).await?;
    let key = address_key(email.as_str());
    let entry = app
        .store
        .suppressions(&SuppressionFilter {
            email: Some(key.clone()),
            limit: 1,
            ..SuppressionFilter::default()
        })
        .await?;
    let Some(entry) = entry.into_iter().next() else {
        return Err(ApiError::conflict(format!(
            "{key} was removed meanwhile: ask again"
        )));
    };
    if added {
        tracing::info!(email = %key, reason = %why, "an operator suppressed an address");
    }
    let status = if added {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(json!({ "added": added, "entry": entry }))))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Why {
    reason: Option<String>,
}

async fn remove<S: Store>(
    State(admin): State<Admin<S>>,
    Path(email): Path<String>,
    RawQuery(query): RawQuery,
    raw: Bytes,
) -> Answer<Json<Value>> {
    let mut p = Params::parse(query.as_deref())?;
    let in_query = p.text("reason");
    p.done()?;
    let given = match (in_query, body::<Why>(&raw)?.reason) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad(
                "reason: give it once, in the query or in the body",
            ));
        }
        (q, b) => q.or(b),
    };
    let why = reason(given, "reason")?;
    let app = &admin.app;
    let now = app.clock.now();
    // Whose own address it is: their profile's suppression goes with it.
    let owners: Vec<String> = app
        .store
        .customers_with_address(&email)
        .await?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let mut tx = app.store.begin().await?;
    let states = tx.lock_customers(&owners, &LookBack::none()).await?;
    let was = tx.remove_suppression(&email, &why, now).await?;
    let mut writes = Writes::default();
    for (id, st) in &states {
        if let Some(p) = st
            .profile
            .as_ref()
            .and_then(|p| operator::lift_suppression(p, &email))
        {
            writes.profiles.insert(id.clone(), std::sync::Arc::new(p));
        }
    }
    if was.is_none() && writes.profiles.is_empty() {
        return Err(ApiError::not_found(format!(
            "{} is not on the suppression list",
            address_key(&email)
        )));
    }
    let lifted: Vec<String> = writes.profiles.keys().cloned().collect();
    tx.write(writes, now).await?;
    tx.commit().await?;
    app.kick.notify_waiters();
    tracing::info!(email = %address_key(&email), reason = %why, "an operator removed a suppression");
    Ok(Json(json!({
        "email": address_key(&email),
        "removed": was.is_some(),
        "previous_reason": was,
        "reason": why,
        "at": now,
        "customers_lifted": lifted,
    })))
}
