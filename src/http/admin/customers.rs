//! A customer as the store keeps them, and stopping all of their mail:
//!
//! - `GET /v1/admin/customers/{id}`: profile, consent, suppression, the
//!   operator's stop, enrollments, emails counted by status.
//! - `POST /v1/admin/customers/{id}/stop` `{"reason"}`: in one transaction
//!   under the customer's lock, the profile records the stop, every active
//!   enrollment exits with the reason and every pending email is skipped
//!   with it (`engine::operator::stop` decides). The stop holds until lifted:
//!   later events are still recorded and run their sequences, and every
//!   email they make is skipped with the stop's reason.
//! - `DELETE /v1/admin/customers/{id}/stop`: lifts it; mail decided from
//!   then on goes out as usual (what was skipped stays skipped).
//!
//! Only these methods are registered on these paths, so other groups may
//! add theirs (`DELETE /customers/{id}`, `/customers/{id}/journey`, …).

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::Admin;
use super::reply::{Answer, ApiError, EnrollmentView, Params, body, reason};
use crate::engine::operator;
use crate::engine::outbox::Outcome;
use crate::store::{LookBack, Store, SuppressionFilter, Transition, Tx, Writes, address_key};

pub fn routes<S: Store>() -> Router<Admin<S>> {
    Router::new()
        .route("/customers/{id}", get(show::<S>))
        .route("/customers/{id}/stop", post(stop::<S>).delete(lift::<S>))
}

fn unknown(id: &str) -> ApiError {
    ApiError::not_found(format!("no customer {id:?}"))
}

async fn show<S: Store>(
    State(admin): State<Admin<S>>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Answer<Json<Value>> {
    Params::parse(query.as_deref())?.done()?;
    let store = &admin.app.store;
    let Some(c) = store.customer(&id).await? else {
        return Err(unknown(&id));
    };
    let listed = store
        .suppressions(&SuppressionFilter {
            email: Some(address_key(&c.email)),
            limit: 1,
            ..SuppressionFilter::default()
        })
        .await?;
    let enrollments = store.enrollments_of(&id).await?;
    let emails: serde_json::Map<String, Value> = store
        .email_counts(&id)
        .await?
        .into_iter()
        .map(|(status, n)| (status.as_str().to_string(), n.into()))
        .collect();
    let p = c.profile.as_ref();
    Ok(Json(json!({
        "id": c.id,
        "email": c.email,
        "updated_at": c.updated_at,
        "profile": p,
        "consent": {
            "marketing": p.is_some_and(|p| p.marketing_consent()),
            "promo": p.is_some_and(|p| p.promo_consent()),
            "unsubscribed": p.is_some_and(|p| p.unsubscribed),
            "promo_unsubscribed": p.is_some_and(|p| p.promo_unsubscribed),
        },
        "suppression": {
            "suppressed": p.is_some_and(|p| p.suppressed) || !listed.is_empty(),
            "reason": p.and_then(|p| p.suppression_reason()),
            "list": listed.first(),
        },
        "stopped": p.and_then(|p| p.stopped.as_ref()),
        "enrollments": enrollments.iter().map(EnrollmentView::of).collect::<Vec<_>>(),
        "emails": emails,
    })))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Why {
    reason: Option<String>,
}

async fn stop<S: Store>(
    State(admin): State<Admin<S>>,
    Path(id): Path<String>,
    raw: Bytes,
) -> Answer<Json<Value>> {
    let why = reason(body::<Why>(&raw)?.reason, "reason")?;
    let app = &admin.app;
    let now = app.clock.now();
    let mut tx = app.store.begin().await?;
    let ids = [id.clone()];
    let mut states = tx.lock_customers(&ids, &LookBack::none()).await?;
    let state = states.get_mut(&id).expect("every id is returned");
    let Some(changes) = operator::stop(state, &why, now) else {
        return Err(unknown(&id));
    };
    let stopped = changes.profile.as_ref().and_then(|p| p.stopped.clone());
    let exited: Vec<String> = changes
        .notes
        .iter()
        .map(|n| n.enrollment_key.clone())
        .collect();
    let skip = operator::stopped_reason(&why);
    let unsent = tx.unsent_emails(&id).await?;
    let mut skipped = Vec::new();
    for row in operator::to_skip(&unsent) {
        // A row a sender claimed meanwhile is fenced by its claim count:
        // that sender then finds the customer stopped and skips it.
        if tx
            .transition(row, &Transition::Skip { reason: &skip }, now)
            .await?
        {
            tx.log_delivery(row, now, Outcome::Skipped, &skip, None)
                .await?;
            skipped.push(row.id);
        }
    }
    let mut writes = Writes::default();
    let changed = writes.absorb(changes);
    let state = states.remove(&id).expect("loaded above");
    writes.take_enrollments(state, &changed);
    tx.write(writes, now).await?;
    tx.commit().await?;
    tracing::info!(customer_id = %id, reason = %why, exited = exited.len(),
        skipped = skipped.len(), "an operator stopped the customer's mail");
    Ok(Json(json!({
        "customer": id,
        "stopped": stopped,
        "enrollments_exited": exited,
        "emails_skipped": skipped,
    })))
}

async fn lift<S: Store>(
    State(admin): State<Admin<S>>,
    Path(id): Path<String>,
) -> Answer<Json<Value>> {
    let app = &admin.app;
    let now = app.clock.now();
    let mut tx = app.store.begin().await?;
    let ids = [id.clone()];
    let states = tx.lock_customers(&ids, &LookBack::none()).await?;
    let Some(profile) = states.get(&id).and_then(|s| s.profile.as_ref()) else {
        return Err(unknown(&id));
    };
    let was = profile.stopped.clone();
    let Some(lifted) = operator::lift_stop(profile) else {
        return Err(ApiError::conflict(format!(
            "the mail of customer {id:?} is not stopped"
        )));
    };
    let mut writes = Writes::default();
    writes
        .profiles
        .insert(id.clone(), std::sync::Arc::new(lifted));
    tx.write(writes, now).await?;
    tx.commit().await?;
    tracing::info!(customer_id = %id, "an operator lifted the stop of the customer's mail");
    Ok(Json(json!({ "customer": id, "lifted": was, "at": now })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemStore;
    use axum::routing::delete;

    /// Other groups register other methods on `/customers/{id}` (erasure's
    /// `DELETE`) and paths below it: merging them with these must work.
    #[test]
    fn other_methods_merge_on_the_customers_path() {
        let others: Router<Admin<MemStore>> = Router::new()
            .route("/customers/{id}", delete(|| async { "erased" }))
            .route("/customers/{id}/journey", get(|| async { "journey" }));
        let _merged: Router<Admin<MemStore>> = routes::<MemStore>().merge(others);
    }
}
