//! The scheduler: wakes enrollments whose `wake_at` has passed (the end of a
//! `wait`, the timeout of a `wait_for`) and advances them, in batches. Claims
//! carry a lease, so the work of a crashed instance comes back.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::engine::dispatch;
use crate::ingest::with_context;
use crate::sequence::model::Catalog;
use crate::store::{Changes, CustomerState, Store};

/// How long a claim holds before another instance may take it over.
pub const LEASE: chrono::Duration = chrono::Duration::seconds(30);
pub const BATCH: i64 = 500;
/// Idle polling: new work from another instance is seen within this.
pub const IDLE: Duration = Duration::from_millis(200);

/// The pure part of a wake-up, run by the store under the customer's lock.
pub fn apply_wake(
    catalog: &Catalog,
    state: &mut CustomerState,
    idx: usize,
    now: DateTime<Utc>,
) -> Changes {
    let applied = dispatch::apply_wake(catalog, &mut state.enrollments, idx, now);
    for n in &applied.notes {
        tracing::info!(sequence = %n.sequence, enrollment = %n.enrollment_key, "{}", n.message);
    }
    let emails = with_context(state, applied.emails);
    Changes {
        profile: None,
        enrollments: applied.changed.into_iter().collect(),
        emails,
        suppress: None,
    }
}

/// Claims and wakes one batch of due enrollments; returns how many ran.
pub async fn tick<S: Store>(
    store: &S,
    catalog: &Catalog,
    now: DateTime<Utc>,
) -> crate::store::Result<usize> {
    let claimed = store.claim_due(now, LEASE, BATCH).await?;
    let apply = |state: &mut CustomerState, idx: usize| apply_wake(catalog, state, idx, now);
    let mut ran = 0;
    for (key, customer) in &claimed {
        match store.wake(key, customer, now, &apply).await {
            Ok(true) => ran += 1,
            Ok(false) => {}
            Err(e) => {
                tracing::error!(enrollment = %key, "wake failed, retried after the lease: {e}")
            }
        }
    }
    Ok(ran)
}

/// Runs until `stop`: wake due work, sleep until the next is due (at most
/// [`IDLE`]), or until `kick` says new work was written here.
pub async fn run<S: Store>(
    store: S,
    catalog: Arc<Catalog>,
    clock: Arc<dyn Clock>,
    kick: Arc<Notify>,
    stop: CancellationToken,
) {
    while !stop.is_cancelled() {
        let now = clock.now();
        let mut pause = IDLE;
        match tick(&store, &catalog, now).await {
            Ok(n) if n > 0 => continue,
            Ok(_) => {
                if let Ok(Some(next)) = store.next_wake().await {
                    let until = (next - clock.now()).to_std().unwrap_or(Duration::ZERO);
                    pause = pause.min(until);
                }
            }
            Err(e) => {
                tracing::error!("scheduler: {e}");
                pause = Duration::from_secs(1);
            }
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = kick.notified() => {}
            _ = tokio::time::sleep(pause) => {}
        }
    }
    tracing::info!("scheduler stopped");
}
