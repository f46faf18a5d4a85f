//! The loop the scheduler and the sender share: do a batch of due work; when
//! there was none, sleep until the next item falls due (at most `idle`, so
//! work written by another instance is seen soon), or until `kick` says this
//! instance wrote new work, or until `stop`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;

/// How long to wait after a failed batch before trying again.
const AFTER_ERROR: Duration = Duration::from_secs(1);
/// The shortest pause after an empty batch: work that is due but held by
/// another transaction (a customer ingest has locked) is not spun on.
const AT_LEAST: Duration = Duration::from_millis(5);

/// Runs `batch` until `stop`. `batch` returns how many items it handled;
/// `next_due` when the next one falls due.
pub async fn run<B, BF, N, NF>(
    name: &str,
    clock: Arc<dyn Clock>,
    idle: Duration,
    kick: Arc<Notify>,
    stop: CancellationToken,
    mut batch: B,
    mut next_due: N,
) where
    B: FnMut() -> BF,
    BF: Future<Output = crate::store::Result<usize>>,
    N: FnMut() -> NF,
    NF: Future<Output = crate::store::Result<Option<DateTime<Utc>>>>,
{
    // Empty batches in a row while work was already due: that work is held
    // (by another transaction, or behind a customer's email in flight), and
    // the pause doubles from `AT_LEAST` up to `idle` instead of spinning.
    let mut held = 0u32;
    while !stop.is_cancelled() {
        let mut pause = idle;
        match batch().await {
            Ok(n) if n > 0 => {
                held = 0;
                continue;
            }
            Ok(_) => {
                if let Ok(Some(next)) = next_due().await {
                    let until = (next - clock.now()).to_std().unwrap_or(Duration::ZERO);
                    let floor = if until.is_zero() {
                        held = held.saturating_add(1);
                        AT_LEAST.saturating_mul(1 << held.min(10)).min(idle)
                    } else {
                        held = 0;
                        AT_LEAST
                    };
                    pause = pause.min(until).max(floor);
                }
            }
            Err(e) => {
                tracing::error!("{name}: {e}");
                pause = AFTER_ERROR;
            }
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = kick.notified() => {}
            _ = tokio::time::sleep(pause) => {}
        }
    }
    tracing::info!("{name} stopped");
}
