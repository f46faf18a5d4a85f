//! The one ingest path. Kafka, HTTP and files all call [`ingest_batch`]:
//! in one transaction it records each event id (a duplicate is skipped),
//! loads each customer under lock, asks the engine what the event changes,
//! and writes the enrollments and outbox rows with their idempotency keys.

pub mod file;
pub mod http;
pub mod kafka;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use crate::engine::dispatch;
use crate::event::Event;
use crate::sequence::model::Catalog;
use crate::store::{DeadLetter, IngestReport, Store, Tx, Writes};

/// Ingests a batch in one transaction. Returns once it has committed.
pub async fn ingest_batch<S: Store>(
    store: &S,
    catalog: &Catalog,
    events: &[Event],
    source: &str,
    now: DateTime<Utc>,
) -> crate::store::Result<IngestReport> {
    let mut report = IngestReport::default();
    let mut tx = store.begin().await?;
    let all: Vec<&Event> = events.iter().collect();
    let mut new_ids = tx.record_events(&all, source, now).await?;
    // An id seen before, or twice in this batch, is a duplicate.
    let mut fresh: Vec<&Event> = Vec::with_capacity(new_ids.len());
    for ev in all {
        if new_ids.remove(&ev.id) {
            fresh.push(ev);
        } else {
            report.duplicates += 1;
        }
    }
    if fresh.is_empty() {
        tx.commit().await?;
        return Ok(report);
    }
    // Make sure each customer has a row to lock, then lock and load them.
    let mut first_email: BTreeMap<&str, &str> = BTreeMap::new();
    for ev in &fresh {
        first_email
            .entry(ev.customer.id.as_str())
            .or_insert(ev.customer.email.as_str());
    }
    let pairs: Vec<(&str, &str)> = first_email.iter().map(|(c, e)| (*c, *e)).collect();
    tx.ensure_customers(&pairs, now).await?;
    let ids: Vec<String> = first_email.keys().map(|c| c.to_string()).collect();
    let mut states = tx.lock_customers(&ids).await?;
    let mut writes = Writes::default();
    let mut changed: BTreeMap<&str, BTreeSet<usize>> = BTreeMap::new();
    for ev in fresh {
        let state = states.get_mut(&ev.customer.id).expect("loaded above");
        let mut changes = dispatch::apply_event(catalog, state, ev, now);
        for n in &changes.notes {
            tracing::info!(event_id = %ev.id, customer_id = %ev.customer.id,
                sequence = %n.sequence, enrollment = %n.enrollment_key, "{}", n.message);
        }
        report.notes.append(&mut changes.notes);
        let idx = writes.absorb(changes);
        changed.entry(&ev.customer.id).or_default().extend(idx);
        report.applied += 1;
    }
    for (customer, idx) in &changed {
        let state = states.remove(*customer).expect("loaded above");
        writes.take_enrollments(state, idx);
    }
    drop(states);
    report.emails = tx.write(writes, now).await?;
    tx.commit().await?;
    Ok(report)
}

/// Parses one raw event; a failure is a dead letter with a reason.
pub fn parse(payload: &[u8]) -> Result<Event, String> {
    let text =
        std::str::from_utf8(payload).map_err(|_| "the payload is not UTF-8 text".to_string())?;
    Event::parse(text).map_err(|e| e.message)
}

pub fn dead(source: &str, reason: String, payload: &[u8], origin: Option<String>) -> DeadLetter {
    DeadLetter {
        source: source.to_string(),
        reason,
        payload: String::from_utf8_lossy(payload).into_owned(),
        origin,
    }
}
