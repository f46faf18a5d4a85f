//! The scheduler: wakes enrollments whose `wake_at` has passed (the end of a
//! `wait`, the timeout of a `wait_for`) and advances them, in batches. A
//! batch is claimed and woken in one transaction, so the work of a crashed
//! instance is due again as soon as its connection is gone.

pub mod sweep;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::engine::dispatch::{self, Note};
use crate::sequence::model::Catalog;
use crate::store::{Due, LookBack, Store, Tx, Writes};

/// Enrollments one transaction takes and wakes.
pub const CHUNK: i64 = 250;
/// Scheduler loops per instance (`run` with the schedule role), each one
/// transaction at a time. Measured (docs/BENCHMARKS.md): four independent
/// loops drain faster than the same transactions run in lockstep rounds.
pub const LOOPS: usize = 4;
/// Idle polling: new work from another instance is seen within this.
pub const IDLE: Duration = Duration::from_millis(200);

/// What one round of wake-ups did.
#[derive(Debug, Default)]
pub struct Woken {
    /// Enrollments that were due and ran.
    pub ran: usize,
    pub notes: Vec<Note>,
}

/// Takes up to `limit` due enrollments and wakes them, in one transaction:
/// the claim is the transaction's row locks, so it ends with the commit (or
/// with a crash, which leaves the enrollments due again at once).
pub async fn wake<S: Store>(
    store: &S,
    catalog: &Catalog,
    now: DateTime<Utc>,
    limit: i64,
) -> crate::store::Result<Woken> {
    let started = std::time::Instant::now();
    let mut tx = store.begin().await?;
    let Due {
        claims,
        timers,
        customers: mut states,
    } = tx
        .claim_due(now, limit, &LookBack::of(catalog, now))
        .await?;
    let mut woken = Woken::default();
    if claims.is_empty() && timers.is_empty() {
        return Ok(woken);
    }
    crate::store::widen_for_history(&mut tx, catalog, &mut states, &HashSet::new()).await?;
    let mut writes = Writes::default();
    let mut changed: BTreeMap<&str, BTreeSet<usize>> = BTreeMap::new();
    for claim in &claims {
        let state = states
            .get_mut(&claim.customer_id)
            .expect("loaded with the claim");
        // Another enrollment's wake-up in this batch may have moved this one.
        let due = state
            .enrollments
            .iter()
            .position(|e| e.key == claim.key && e.wake_at().is_some_and(|w| w <= now));
        let Some(idx) = due else { continue };
        woken.ran += 1;
        if let Some(wake_at) = state.enrollments[idx].wake_at() {
            crate::telemetry::woke(now - wake_at);
        }
        let mut changes = dispatch::apply_wake(catalog, state, idx, now);
        for n in &changes.notes {
            tracing::info!(sequence = %n.sequence, enrollment = %n.enrollment_key, "{}", n.message);
        }
        woken.notes.append(&mut changes.notes);
        let idxs = writes.absorb(changes);
        changed.entry(&claim.customer_id).or_default().extend(idxs);
    }
    // Date triggers and schedules in the customer's own time zone.
    for (customer, sequence) in &timers {
        let state = states.get_mut(customer).expect("loaded with the claim");
        woken.ran += 1;
        let mut changes = dispatch::apply_timer(catalog, state, sequence, now);
        for n in &changes.notes {
            tracing::info!(sequence = %n.sequence, enrollment = %n.enrollment_key, "{}", n.message);
        }
        woken.notes.append(&mut changes.notes);
        let idxs = writes.absorb(changes);
        changed.entry(customer).or_default().extend(idxs);
    }
    for (customer, idx) in &changed {
        let state = states.remove(*customer).expect("loaded with the claim");
        writes.take_enrollments(state, idx);
    }
    drop(states);
    tx.write(writes, now).await?;
    tx.commit().await?;
    crate::telemetry::transaction("wake", started.elapsed());
    Ok(woken)
}

/// Catches up the history of `customers` at once, without waiting for the
/// import to settle (`aftercare ingest --backfill`, whose file holds all of
/// it): each ends at the step it would be at now, with the emails that were
/// due before now recorded as skipped. Returns how many outbox rows it wrote
/// (all of them skipped).
///
/// `since` is when the history began: the look-back reaches back from there
/// (the wake-ups it replays happened then, not now).
pub async fn catch_up<S: Store>(
    store: &S,
    catalog: &Catalog,
    customers: &[String],
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> crate::store::Result<usize> {
    let mut emails = 0;
    for chunk in customers.chunks(CHUNK as usize) {
        let mut tx = store.begin().await?;
        let look_back = LookBack::of(catalog, since.min(now));
        let mut states = tx.lock_customers(chunk, &look_back).await?;
        let mut writes = Writes::default();
        for id in chunk {
            let Some(mut state) = states.remove(id) else {
                continue;
            };
            let changes = dispatch::catch_up(catalog, &mut state, now);
            for n in &changes.notes {
                tracing::info!(sequence = %n.sequence, enrollment = %n.enrollment_key, "{}", n.message);
            }
            let idxs = writes.absorb(changes);
            writes.take_enrollments(state, &idxs);
        }
        emails += tx.write(writes, now).await?;
        tx.commit().await?;
    }
    Ok(emails)
}

/// One round: one transaction taking and waking up to [`CHUNK`] due
/// enrollments.
pub async fn tick<S: Store>(
    store: &S,
    catalog: &Catalog,
    now: DateTime<Utc>,
) -> crate::store::Result<Woken> {
    wake(store, catalog, now, CHUNK).await
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
