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
pub const BATCH: i64 = 1000;
/// Enrollments per transaction, and transactions at once.
pub const CHUNK: usize = 200;
pub const PARALLEL: usize = 4;
/// Idle polling: new work from another instance is seen within this.
pub const IDLE: Duration = Duration::from_millis(200);

/// The pure part of a wake-up, run by the store under the customer's lock.
pub fn apply_wake(
    catalog: &Catalog,
    state: &mut CustomerState,
    idx: usize,
    now: DateTime<Utc>,
) -> Changes {
    let applied =
        dispatch::apply_wake_known(catalog, &mut state.enrollments, &state.finished, idx, now);
    for n in &applied.notes {
        tracing::info!(sequence = %n.sequence, enrollment = %n.enrollment_key, "{}", n.message);
    }
    let emails = with_context(state, applied.emails);
    Changes {
        profile: None,
        enrollments: applied.changed.into_iter().collect(),
        emails,
        suppress: None,
        notes: applied.notes,
    }
}

/// Claims and wakes one batch of due enrollments; returns how many ran.
/// The batch is cut into chunks by customer, each chunk one transaction, a
/// few chunks at a time.
pub async fn tick<S: Store>(
    store: &S,
    catalog: &Catalog,
    now: DateTime<Utc>,
) -> crate::store::Result<usize> {
    let mut claimed = store.claim_due(now, LEASE, BATCH).await?;
    if claimed.is_empty() {
        return Ok(0);
    }
    claimed.sort_by(|a, b| (&a.1, &a.0).cmp(&(&b.1, &b.0)));
    let mut chunks: Vec<&[(String, String)]> = Vec::new();
    let mut rest = claimed.as_slice();
    while !rest.is_empty() {
        // Keep a customer's enrollments in one chunk.
        let mut end = CHUNK.min(rest.len());
        while end < rest.len() && rest[end].1 == rest[end - 1].1 {
            end += 1;
        }
        chunks.push(&rest[..end]);
        rest = &rest[end..];
    }
    let apply = |state: &mut CustomerState, idx: usize| apply_wake(catalog, state, idx, now);
    let mut ran = 0;
    for group in chunks.chunks(PARALLEL) {
        let mut wakes = Vec::with_capacity(group.len());
        for chunk in group {
            wakes.push(store.wake(chunk, now, &apply));
        }
        for r in futures_util::future::join_all(wakes).await {
            match r {
                Ok(n) => ran += n,
                Err(e) => tracing::error!("wake failed, retried after the lease: {e}"),
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
