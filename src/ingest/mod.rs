//! The one ingest path. Kafka, HTTP and files all call [`ingest_batch`]:
//! in one transaction it records each event id (a duplicate is skipped),
//! loads each customer under lock, asks the engine what the event changes,
//! and writes the enrollments and outbox rows with their idempotency keys.
//!
//! A batch never fails because of one event. Events are checked against the
//! documented limits when parsed ([`Event::parse`], shared by every source);
//! and should the store still refuse a batch for something other than being
//! unavailable, the batch is cut in halves until the event it refuses stands
//! alone: that event is reported (the caller dead-letters it with the store's
//! message) and every other one commits.

pub mod file;
pub mod http;
pub mod kafka;
pub mod listened;
pub mod replay;

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};

use chrono::{DateTime, Utc};

use crate::engine::dispatch;
use crate::engine::journal::{Entry, What};
use crate::event::Event;
use crate::sequence::model::Catalog;
use crate::store::{DeadLetter, IngestReport, LookBack, Refused, Store, Tx, Writes};

/// Ingests a batch, in one transaction when the store takes it. Returns once
/// every event has committed or been refused: an error only when the store
/// is unavailable (then some parts may have committed; their events are
/// duplicates when the batch comes again). Events the store refuses even
/// alone are in [`IngestReport::refused`], for the caller to dead-letter.
pub async fn ingest_batch<S: Store>(
    store: &S,
    catalog: &Catalog,
    events: &[Event],
    source: &str,
    now: DateTime<Utc>,
) -> crate::store::Result<IngestReport> {
    let mut report = IngestReport::default();
    // Ranges still to commit, in order: a customer's events keep theirs.
    let mut todo = VecDeque::new();
    todo.push_back(0..events.len());
    while let Some(range) = todo.pop_front() {
        if range.is_empty() {
            continue;
        }
        match commit_batch(store, catalog, &events[range.clone()], source, now).await {
            Ok(r) => report.add(r),
            Err(e) if e.is_unavailable() => return Err(e),
            Err(e) if range.len() == 1 => {
                let ev = &events[range.start];
                tracing::warn!(event_id = %ev.id, customer_id = %ev.customer.id,
                    "the store refused the event: {e}");
                report.refused.push(Refused {
                    index: range.start,
                    reason: format!("the store refused this event: {e}"),
                });
            }
            Err(e) => {
                tracing::warn!(
                    events = range.len(),
                    "the store refused a batch, looking for the event at fault: {e}"
                );
                let mid = range.start + range.len() / 2;
                todo.push_front(mid..range.end);
                todo.push_front(range.start..mid);
            }
        }
    }
    Ok(report)
}

/// Ingests a batch in one transaction. Returns once it has committed.
async fn commit_batch<S: Store>(
    store: &S,
    catalog: &Catalog,
    events: &[Event],
    source: &str,
    now: DateTime<Utc>,
) -> crate::store::Result<IngestReport> {
    let mut report = IngestReport::default();
    let started = std::time::Instant::now();
    let mut tx = store.begin().await?;
    let all: Vec<&Event> = events.iter().collect();
    let mut new_ids = tx.record_events(&all, source, now).await?;
    let mut writes = Writes::default();
    // An id seen before, or twice in this batch, is a duplicate: in the
    // customer's journal, so that `explain` shows it came again.
    let mut fresh: Vec<&Event> = Vec::with_capacity(new_ids.len());
    for ev in all {
        if new_ids.remove(&ev.id) {
            fresh.push(ev);
        } else {
            report.duplicates += 1;
            writes.journal.push(Entry {
                customer_id: ev.customer.id.clone(),
                at: now,
                enrollment_key: None,
                sequence: None,
                step: None,
                what: What::Duplicate {
                    event_id: ev.id.clone(),
                    event_type: ev.kind.clone(),
                },
            });
        }
    }
    if fresh.is_empty() {
        if !writes.journal.is_empty() {
            tx.write(writes, now).await?;
        }
        tx.commit().await?;
        let taken = crate::telemetry::Taken {
            duplicates: report.duplicates as u64,
            ..Default::default()
        };
        crate::telemetry::ingested(catalog, source, &taken, started.elapsed());
        return Ok(report);
    }
    // Each customer's events apply in the order they occurred (arrival
    // order for ties), whatever order they came in.
    fresh.sort_by_key(|e| e.occurred_at);
    // A `customer.erased` erases first, with what came before it.
    report.applied += crate::rights::erase_in_batch(&mut tx, &mut fresh, source, now).await?;
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
    // The batch's own events are not history: each is added as it applies.
    let batch: HashSet<String> = fresh.iter().map(|e| e.id.clone()).collect();
    // Sorted above: the first event is the earliest.
    let mut look_back = LookBack::of(catalog, fresh[0].occurred_at.min(now));
    look_back.except = &batch;
    let mut states = tx.lock_customers(&ids, &look_back).await?;
    crate::store::widen_for_history(&mut tx, catalog, &mut states, &batch).await?;
    let mut changed: BTreeMap<&str, BTreeSet<usize>> = BTreeMap::new();
    let mut taken = crate::telemetry::Taken {
        duplicates: report.duplicates as u64,
        ..Default::default()
    };
    for ev in fresh {
        taken.event(&ev.kind);
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
    crate::telemetry::ingested(catalog, source, &taken, started.elapsed());
    Ok(report)
}

/// Parses one raw event; a failure is a dead letter with a reason.
pub fn parse(payload: &[u8]) -> Result<Event, String> {
    let text =
        std::str::from_utf8(payload).map_err(|_| "the payload is not UTF-8 text".to_string())?;
    Event::parse(text).map_err(|e| e.message)
}

/// A dead letter for `payload` as received. A store must be able to keep
/// it whatever it holds: bytes that are not UTF-8 become U+FFFD, NUL becomes
/// U+FFFD (PostgreSQL cannot store it), and past [`DEAD_PAYLOAD_BYTES`] the
/// payload is cut (the reason says so).
pub fn dead(source: &str, reason: String, payload: &[u8], origin: Option<String>) -> DeadLetter {
    let clean = |s: &str| s.replace('\0', "\u{fffd}");
    let cut = payload.len() > DEAD_PAYLOAD_BYTES;
    let mut kept = &payload[..payload.len().min(DEAD_PAYLOAD_BYTES)];
    if cut
        && let Err(e) = std::str::from_utf8(kept)
        && e.error_len().is_none()
    {
        // A character cut in two at the end is not a fault of the payload.
        kept = &kept[..e.valid_up_to()];
    }
    let text = String::from_utf8_lossy(kept);
    let reason = if cut {
        format!("{reason} (the payload is cut to its first {DEAD_PAYLOAD_BYTES} bytes)")
    } else {
        reason
    };
    DeadLetter {
        source: source.to_string(),
        reason: clean(&reason),
        payload: clean(&text),
        origin: origin.map(|o| clean(&o)),
    }
}

/// The most of a payload a dead letter keeps: the largest event accepted.
pub const DEAD_PAYLOAD_BYTES: usize = crate::event::limits::EVENT_BYTES;
