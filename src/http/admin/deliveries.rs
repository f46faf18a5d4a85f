//! `GET /v1/admin/deliveries`: the delivery log, newest first, filtered by
//! time, sequence, template, outcome, customer and address, a page at a
//! time (`before` the `next` of the page before).

use axum::extract::{RawQuery, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::Admin;
use super::reply::{Answer, ApiError, Params};
use crate::engine::outbox::Outcome;
use crate::store::{DeliveryFilter, Store};

pub fn routes<S: Store>() -> Router<Admin<S>> {
    Router::new().route("/deliveries", get(list::<S>))
}

/// The filter a query asks for.
fn filter(query: Option<&str>) -> Answer<DeliveryFilter> {
    let mut p = Params::parse(query)?;
    let f = DeliveryFilter {
        since: p.time("since")?,
        until: p.time("until")?,
        sequence: p.text("sequence"),
        template: p.text("template"),
        outcome: p.one_of(
            "status",
            "an outcome (sent, deferred, skipped, retry, failed)",
            Outcome::parse,
        )?,
        customer_id: p.text("customer"),
        address: p.text("address"),
        before: p.id("before")?,
        limit: p.limit()?,
    };
    p.done()?;
    if let (Some(since), Some(until)) = (f.since, f.until)
        && until <= since
    {
        return Err(ApiError::bad(format!(
            "until: {} is not after since ({})",
            until.to_rfc3339(),
            since.to_rfc3339()
        )));
    }
    Ok(f)
}

async fn list<S: Store>(
    State(admin): State<Admin<S>>,
    RawQuery(query): RawQuery,
) -> Answer<Json<Value>> {
    let f = filter(query.as_deref())?;
    let store = &admin.app.store;
    let entries = store.delivery_log(&f).await?;
    // A full page has a next one only if an entry comes before its last.
    let next = match entries.last() {
        Some(last) if entries.len() as i64 == f.page_size() => {
            let probe = DeliveryFilter {
                before: Some(last.id),
                limit: 1,
                ..f.clone()
            };
            (!store.delivery_log(&probe).await?.is_empty()).then_some(last.id)
        }
        _ => None,
    };
    let mut answer = json!({ "deliveries": entries });
    if let Some(next) = next {
        answer["next"] = next.into();
    }
    Ok(Json(answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_parameters_are_named_with_what_was_expected() {
        let err = |q: &str| filter(Some(q)).unwrap_err().message;
        assert_eq!(
            err("since=yesterday"),
            r#"since: "yesterday" is not RFC 3339 (2026-11-26T10:00:00Z)"#
        );
        assert!(err("status=bounced").starts_with(r#"status: "bounced" is not an outcome"#));
        assert!(err("limit=1001").contains("1 to 1000"));
        assert!(err("limit=0").contains("1 to 1000"));
        assert!(err("before=abc").starts_with(r#"before: "abc" is not a cursor"#));
        assert!(err("sequense=x").starts_with("sequense: unknown parameter (known: since,"));
        assert!(err("since=2026-11-26T10:00:00Z&until=2026-11-26T09:00:00Z").starts_with("until:"));
        assert!(err("status=sent&status=failed").starts_with("status: given twice"));
        let f = filter(Some(
            "since=2026-11-26T10:00:00%2B01:00&status=failed&address=A@x.example&limit=5",
        ))
        .unwrap();
        assert_eq!(f.since.unwrap().to_rfc3339(), "2026-11-26T09:00:00+00:00");
        assert_eq!(f.outcome, Some(Outcome::Failed));
        assert_eq!(f.address.as_deref(), Some("A@x.example"));
        assert_eq!(f.limit, 5);
        assert_eq!(filter(None).unwrap().limit, 100);
    }
}
