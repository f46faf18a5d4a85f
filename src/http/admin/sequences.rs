//! `GET /v1/admin/sequences/{id}/enrollments`: a sequence's enrollments
//! counted by step and status; with `?step=X`, those at step X, by key, a
//! page at a time (`after` the `next` of the page before). 404 for a
//! sequence the catalog does not have, naming those it has.

use axum::extract::{Path, RawQuery, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::Admin;
use super::reply::{Answer, ApiError, EnrollmentView, Params};
use crate::store::Store;

pub fn routes<S: Store>() -> Router<Admin<S>> {
    Router::new().route("/sequences/{id}/enrollments", get(enrollments::<S>))
}

async fn enrollments<S: Store>(
    State(admin): State<Admin<S>>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Answer<Json<Value>> {
    let app = &admin.app;
    let Some(seq) = app.catalog.sequences.get(&id) else {
        let known: Vec<&String> = app.catalog.sequences.keys().collect();
        return Err(ApiError::not_found(format!(
            "no sequence {id:?} (known: {})",
            known
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .with(json!({ "known": known })));
    };
    let mut p = Params::parse(query.as_deref())?;
    let step = p.text("step");
    let after = p.text("after");
    let limit = p.limit()?;
    p.done()?;
    let steps: Vec<&str> = {
        let mut seen = std::collections::HashSet::new();
        // The plan is laid out from the last step back: reversed, the
        // steps come in the order the file has them.
        seq.plan
            .instrs
            .iter()
            .rev()
            .map(|i| i.id.as_str())
            .filter(|s| seen.insert(*s))
            .collect()
    };
    let Some(step) = step else {
        if after.is_some() {
            return Err(ApiError::bad("after: pages are of one step: give step too"));
        }
        let counts = app.store.enrollment_counts(&id).await?;
        let total: i64 = counts.iter().map(|c| c.count).sum();
        return Ok(Json(json!({
            "sequence": id,
            "steps": steps,
            "total": total,
            "counts": counts,
        })));
    };
    // A step an older version of the sequence had still counts while
    // enrollments stand there.
    let stood = || async {
        let counts = app.store.enrollment_counts(&id).await?;
        Ok::<_, ApiError>(
            counts
                .iter()
                .any(|c| c.step.as_deref() == Some(step.as_str())),
        )
    };
    if !steps.contains(&step.as_str()) && !stood().await? {
        return Err(ApiError::bad(format!(
            "step: {step:?} is not a step of {id} ({})",
            steps.join(", ")
        )));
    }
    let page = app
        .store
        .enrollments_at(&id, &step, after.as_deref(), limit)
        .await?;
    let next = match page.last() {
        Some(last) if page.len() as i64 == limit => {
            let more = app
                .store
                .enrollments_at(&id, &step, Some(&last.key), 1)
                .await?;
            (!more.is_empty()).then(|| last.key.clone())
        }
        _ => None,
    };
    let mut answer = json!({
        "sequence": id,
        "step": step,
        "enrollments": page.iter().map(EnrollmentView::of).collect::<Vec<_>>(),
    });
    if let Some(next) = next {
        answer["next"] = next.into();
    }
    Ok(Json(answer))
}
