//! The scheduler: wakes enrollments whose `wake_at` has passed (the end of a
//! `wait`, the timeout of a `wait_for`) and advances them, in batches. Claims
//! carry a lease, so the work of a crashed instance comes back.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::engine::dispatch::{self, Note};
use crate::sequence::model::Catalog;
use crate::store::{DueClaim, Store, Tx, Writes};

/// How long a claim holds before another instance may take it over.
pub const LEASE: chrono::Duration = chrono::Duration::seconds(30);
pub const BATCH: i64 = 1000;
/// Enrollments per transaction, and transactions at once.
pub const CHUNK: usize = 200;
pub const PARALLEL: usize = 4;
/// Scheduler loops per instance (`run` with the schedule role).
pub const LOOPS: usize = 2;
/// Idle polling: new work from another instance is seen within this.
pub const IDLE: Duration = Duration::from_millis(200);

/// What one round of wake-ups did.
#[derive(Debug, Default)]
pub struct Woken {
    /// Enrollments that were still due and ran.
    pub ran: usize,
    pub notes: Vec<Note>,
}

/// Wakes claimed enrollments that are still due, each under its customer's
/// lock, in one transaction.
pub async fn wake<S: Store>(
    store: &S,
    catalog: &Catalog,
    claimed: &[DueClaim],
    now: DateTime<Utc>,
) -> crate::store::Result<Woken> {
    let mut ids: Vec<String> = claimed.iter().map(|c| c.customer_id.clone()).collect();
    ids.sort();
    ids.dedup();
    let mut tx = store.begin().await?;
    let mut states = tx.lock_customers(&ids).await?;
    let mut writes = Writes::default();
    let mut woken = Woken::default();
    let mut changed: BTreeMap<&str, BTreeSet<usize>> = BTreeMap::new();
    for claim in claimed {
        let state = states.get_mut(&claim.customer_id).expect("loaded above");
        let due = state
            .enrollments
            .iter()
            .position(|e| e.key == claim.key && e.wake_at().is_some_and(|w| w <= now));
        let saved = match due {
            Some(idx) => {
                woken.ran += 1;
                let mut changes = dispatch::apply_wake(catalog, state, idx, now);
                for n in &changes.notes {
                    tracing::info!(sequence = %n.sequence, enrollment = %n.enrollment_key, "{}", n.message);
                }
                woken.notes.append(&mut changes.notes);
                let idxs = writes.absorb(changes);
                // Saving an enrollment clears its lease.
                let saved = idxs.contains(&idx);
                changed.entry(&claim.customer_id).or_default().extend(idxs);
                saved
            }
            None => false,
        };
        if !saved {
            // Not due any more (another worker got there first), or woken
            // without a change: the claim is done either way.
            writes.release.push(claim.key.clone());
        }
    }
    for (customer, idx) in &changed {
        let state = states.remove(*customer).expect("loaded above");
        writes.take_enrollments(state, idx);
    }
    drop(states);
    tx.write(writes, now).await?;
    tx.commit().await?;
    Ok(woken)
}

/// Claims and wakes one batch of due enrollments. The batch is cut into
/// chunks by customer, each chunk one transaction, a few chunks at a time.
pub async fn tick<S: Store>(
    store: &S,
    catalog: &Catalog,
    now: DateTime<Utc>,
) -> crate::store::Result<Woken> {
    let mut claimed = store.claim_due(now, LEASE, BATCH).await?;
    let mut woken = Woken::default();
    if claimed.is_empty() {
        return Ok(woken);
    }
    claimed.sort();
    let mut chunks: Vec<&[DueClaim]> = Vec::new();
    let mut rest = claimed.as_slice();
    while !rest.is_empty() {
        // Keep a customer's enrollments in one chunk.
        let mut end = CHUNK.min(rest.len());
        while end < rest.len() && rest[end].customer_id == rest[end - 1].customer_id {
            end += 1;
        }
        chunks.push(&rest[..end]);
        rest = &rest[end..];
    }
    for group in chunks.chunks(PARALLEL) {
        let wakes = group.iter().map(|chunk| wake(store, catalog, chunk, now));
        for r in futures_util::future::join_all(wakes).await {
            match r {
                Ok(w) => {
                    woken.ran += w.ran;
                    woken.notes.extend(w.notes);
                }
                Err(e) => tracing::error!("wake failed, retried after the lease: {e}"),
            }
        }
    }
    Ok(woken)
}

/// Runs until `stop`, waking due enrollments as they fall due.
pub async fn run<S: Store>(
    store: S,
    catalog: Arc<Catalog>,
    clock: Arc<dyn Clock>,
    kick: Arc<Notify>,
    stop: CancellationToken,
) {
    let batch = || async { Ok(tick(&store, &catalog, clock.now()).await?.ran) };
    let next = || store.next_wake();
    crate::poll::run("scheduler", clock.clone(), IDLE, kick, stop, batch, next).await;
}
