//! Data rights: erasing a customer and exporting what is stored about them.
//!
//! An erasure comes from `DELETE /v1/admin/customers/{id}` or from a
//! `customer.erased` event through the one ingest path ([`crate::ingest`]
//! erases in the batch's transaction, see [`split_erasures`]). The store does
//! the work ([`Tx::erase_customer`]): personal data removed or anonymized in
//! every table, the customer's mail stopped, a suppressed address kept only
//! as a hash, and the erasure logged. README, "Data rights", says exactly
//! what is removed, hashed and kept, and why.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::event::Event;
use crate::store::{Erased, Erasure, ErasureLog, Store, Tx};

/// `source` of an erasure asked for by the admin API.
pub const ADMIN: &str = "admin";

/// The event type that erases its customer.
pub const ERASED: &str = "customer.erased";

/// What `DELETE /v1/admin/customers/{id}` answers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Answer {
    pub customer_id: String,
    /// What this erasure removed or anonymized; `None` when nothing was
    /// stored about the customer.
    pub erased: Option<Erased>,
    /// Every erasure of the customer logged, this one included.
    pub erasures: Vec<ErasureLog>,
}

/// Erases `customer_id` in one transaction, logged as asked by `source` at
/// `now`. Nothing is logged when nothing is stored about the customer:
/// `erased` is `None` then.
pub async fn erase<S: Store>(
    store: &S,
    customer_id: &str,
    source: &str,
    now: DateTime<Utc>,
) -> crate::store::Result<Answer> {
    let mut tx = store.begin().await?;
    let erased = tx
        .erase_customer(customer_id, &HashSet::new(), &[], now)
        .await?;
    let erased = if erased.is_empty() {
        None
    } else {
        let how = Erasure {
            source,
            event_id: None,
            at: now,
        };
        tx.log_erasure(customer_id, &how, &erased).await?;
        Some(erased)
    };
    tx.commit().await?;
    Ok(Answer {
        customer_id: customer_id.to_string(),
        erased,
        erasures: store.erasures(customer_id).await?,
    })
}

/// A `customer.erased` in a batch being ingested: the last one of its
/// customer (in the order the batch applies them), and the ids of that
/// customer's events that apply after it (a customer who comes back within
/// the same batch: those stay theirs).
#[derive(Debug)]
pub struct InBatch<'a> {
    pub event: &'a Event,
    pub after: HashSet<String>,
}

/// The erasures among a batch's new events, by customer; `fresh` is in the
/// order the batch applies them.
pub fn erasures_in<'a>(fresh: &[&'a Event]) -> BTreeMap<&'a str, InBatch<'a>> {
    let mut last: BTreeMap<&'a str, usize> = BTreeMap::new();
    for (i, ev) in fresh.iter().enumerate() {
        if ev.kind == ERASED {
            last.insert(ev.customer.id.as_str(), i);
        }
    }
    last.into_iter()
        .map(|(customer, i)| {
            let after = fresh[i + 1..]
                .iter()
                .filter(|e| e.customer.id == customer)
                .map(|e| e.id.clone())
                .collect();
            (
                customer,
                InBatch {
                    event: fresh[i],
                    after,
                },
            )
        })
        .collect()
}

/// Erases, in the ingest transaction `tx`, the customers of the erasures
/// in `fresh` (the batch's new events, in the order they apply), and takes
/// out of `fresh` what they erase: each erasure and the customer's events
/// before it. Returns how many events it took out (applied: erased).
pub async fn erase_in_batch<T: Tx>(
    tx: &mut T,
    fresh: &mut Vec<&Event>,
    source: &str,
    now: DateTime<Utc>,
) -> crate::store::Result<usize> {
    let erasing = erasures_in(fresh);
    if erasing.is_empty() {
        return Ok(0);
    }
    // Every customer of the batch locked first, in the order ingest locks
    // them, so that an erasure never waits for a lock while holding one
    // out of order.
    let mut ids: Vec<String> = fresh.iter().map(|e| e.customer.id.clone()).collect();
    ids.sort();
    ids.dedup();
    tx.lock_customers(&ids, &crate::store::LookBack::none())
        .await?;
    for (customer, e) in &erasing {
        let addresses = [e.event.customer.email.to_string()];
        let erased = tx
            .erase_customer(customer, &e.after, &addresses, now)
            .await?;
        let how = Erasure {
            source,
            event_id: Some(&e.event.id),
            at: now,
        };
        tx.log_erasure(customer, &how, &erased).await?;
        tracing::info!(customer_id = %customer, event_id = %e.event.id, ?erased,
            "customer erased");
    }
    let before = fresh.len();
    fresh.retain(|ev| {
        erasing
            .get(ev.customer.id.as_str())
            .is_none_or(|e| e.after.contains(&ev.id))
    });
    Ok(before - fresh.len())
}
