//! The `state` column of an enrollment row in the SQL stores: what no other
//! column of the row holds.
//!
//! The key, sequence, version, customer, order, status, step and times are
//! columns of their own and are not repeated in the document. The context's
//! `customer` and `facts` are left out too when they are the customer's
//! profile's (the engine makes them so whenever it touches an enrollment), and
//! a load fills them back in from the profile; an enrollment whose context
//! holds another customer or other facts keeps its own. Rows written before
//! this form (the whole enrollment in the document) read the same way: the
//! fields that are columns are ignored, the customer and facts kept.
//!
//! Each enrollment write carried its customer and facts (about half of its
//! 1.1 KB) and the columns again; ingest writes ~1.8 enrollments an event
//! (docs/BENCHMARKS.md, section 9).

use std::borrow::Cow;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Error, Result};
use crate::engine::facts::Facts;
use crate::engine::profile::Profile;
use crate::engine::state::{Context, Enrollment, Mark, Waiting};
use crate::event::{Customer, Order, Review, Shipment};

/// The document, borrowed from an [`Enrollment`] to write it, owned when read.
#[derive(Debug, Serialize, Deserialize)]
pub struct StateDoc<'a> {
    waiting: Cow<'a, Waiting>,
    context: ContextDoc<'a>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ended_reason: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mark: Option<Cow<'a, Mark>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    history: Option<DateTime<Utc>>,
}

/// The context: `customer` and `facts` both present, or both the profile's.
#[derive(Debug, Serialize, Deserialize)]
struct ContextDoc<'a> {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    customer: Option<Cow<'a, Customer>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    order: Option<Cow<'a, Order>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    shipment: Option<Cow<'a, Shipment>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    review: Option<Cow<'a, Review>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    facts: Option<Cow<'a, Facts>>,
}

/// Whether `e`'s context holds `profile`'s customer and facts, so that its
/// document may leave them out.
pub fn holds_profile(e: &Enrollment, profile: Option<&Profile>) -> bool {
    profile.is_some_and(|p| e.context.customer == p.customer && e.context.facts == p.ledger.facts)
}

impl<'a> StateDoc<'a> {
    /// The document of `e`; `lean`: leave out its customer and facts, which
    /// are its customer's profile's ([`holds_profile`]).
    pub fn of(e: &'a Enrollment, lean: bool) -> Self {
        let c = &e.context;
        Self {
            waiting: Cow::Borrowed(&e.waiting),
            context: ContextDoc {
                customer: (!lean).then_some(Cow::Borrowed(&c.customer)),
                order: c.order.as_ref().map(Cow::Borrowed),
                shipment: c.shipment.as_ref().map(Cow::Borrowed),
                review: c.review.as_ref().map(Cow::Borrowed),
                facts: (!lean && !c.facts.is_empty()).then_some(Cow::Borrowed(&c.facts)),
            },
            ended_reason: e.ended_reason.as_deref().map(Cow::Borrowed),
            mark: e.mark.as_ref().map(Cow::Borrowed),
            history: e.history,
        }
    }
}

/// The columns of an enrollment row beside its document.
#[derive(sqlx::FromRow)]
pub struct Columns {
    pub key: String,
    pub sequence: String,
    pub version: String,
    pub customer_id: String,
    pub order_id: Option<String>,
    pub status: String,
    pub step: Option<String>,
    pub started_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The enrollment of a row: its columns, its document, and its customer's
/// profile for a document that leaves the customer out.
pub fn enrollment(
    cols: Columns,
    doc: StateDoc<'_>,
    profile: Option<&Profile>,
) -> Result<Enrollment> {
    let status = super::sql::status_parse(&cols.status).ok_or_else(|| {
        Error::Corrupt(format!(
            "enrollment `{}` has the unknown status `{}`",
            cols.key, cols.status
        ))
    })?;
    let c = doc.context;
    let (customer, facts) = match (c.customer, profile) {
        (Some(customer), _) => (
            customer.into_owned(),
            c.facts.map(Cow::into_owned).unwrap_or_default(),
        ),
        (None, Some(p)) => (p.customer.clone(), p.ledger.facts.clone()),
        (None, None) => {
            return Err(Error::Corrupt(format!(
                "enrollment `{}` takes its customer from the profile of `{}`, which has none",
                cols.key, cols.customer_id
            )));
        }
    };
    Ok(Enrollment {
        key: cols.key,
        sequence: cols.sequence,
        version: cols.version,
        customer_id: cols.customer_id,
        order_id: cols.order_id,
        status,
        step: cols.step,
        waiting: doc.waiting.into_owned(),
        context: Arc::new(Context {
            customer,
            order: c.order.map(Cow::into_owned),
            shipment: c.shipment.map(Cow::into_owned),
            review: c.review.map(Cow::into_owned),
            facts,
        }),
        started_at: cols.started_at,
        updated_at: cols.updated_at,
        ended_reason: doc.ended_reason.map(Cow::into_owned),
        mark: doc.mark.map(Cow::into_owned),
        history: doc.history,
    })
}
