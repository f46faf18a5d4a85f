//! Who this process is to the store, and whether it still counts as alive.
//!
//! Each running instance writes a heartbeat to the store every
//! [`Instance::beat_every`]. An outbox row remembers the instance that
//! claimed it; a row whose claimer's heartbeat is older than `stale_after` is
//! taken over by another instance at once, so a `kill -9` holds mail back for
//! seconds, not for the length of a lease. The other side of that promise: an
//! instance that could not renew its heartbeat in time (its database was out
//! of reach, the process was paused) hands nothing more to the transport, since
//! another instance may already have taken its rows over.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::store::{Claimer, Store};

/// The default for `AFTERCARE_HEARTBEAT_TIMEOUT`.
pub const STALE_AFTER: chrono::Duration = chrono::Duration::seconds(5);

#[derive(Debug, Clone)]
pub struct Instance {
    pub claimer: Claimer,
    /// Host and process id, for operators.
    pub about: String,
    pub started_at: DateTime<Utc>,
    /// When the last heartbeat was stored, in ms since the epoch; `i64::MAX`
    /// for an instance that never beats (one process on a virtual clock).
    last_beat: Arc<AtomicI64>,
}

impl Instance {
    /// A new identity for this process.
    pub fn new(now: DateTime<Utc>, stale_after: chrono::Duration) -> Instance {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "unknown-host".into());
        let pid = std::process::id();
        let about = format!("{host} pid {pid}");
        // Unique per process start, and per call within a process (tests).
        static CALLS: AtomicU64 = AtomicU64::new(0);
        let call = CALLS.fetch_add(1, Ordering::Relaxed);
        let started = now.timestamp_nanos_opt().unwrap_or_default();
        let seed = format!("{about} {started} {call}");
        let id = hex::encode(&Sha256::digest(seed.as_bytes())[..8]);
        Instance {
            claimer: Claimer {
                instance: id,
                stale_after,
            },
            about,
            started_at: now,
            last_beat: Arc::new(AtomicI64::new(i64::MIN)),
        }
    }

    /// The only instance, on a virtual clock (`simulate`, `demo`, tests):
    /// nobody can take its rows over, so it needs no heartbeat.
    pub fn solo() -> Instance {
        Instance {
            claimer: Claimer {
                instance: "solo".into(),
                stale_after: chrono::Duration::MAX,
            },
            about: "this process".into(),
            started_at: DateTime::<Utc>::MIN_UTC,
            last_beat: Arc::new(AtomicI64::new(i64::MAX)),
        }
    }

    pub fn id(&self) -> &str {
        &self.claimer.instance
    }

    /// How often the heartbeat is written: five times per timeout.
    pub fn beat_every(&self) -> Duration {
        (self.claimer.stale_after / 5)
            .to_std()
            .unwrap_or(Duration::from_secs(1))
            .max(Duration::from_millis(100))
    }

    /// Whether this instance may still hand mail to the transport at `now`:
    /// its last stored heartbeat is recent enough that nobody has taken its
    /// rows over, with half the timeout to spare for the send itself.
    pub fn may_send(&self, now: DateTime<Utc>) -> bool {
        let last = self.last_beat.load(Ordering::Acquire);
        if last == i64::MAX {
            return true;
        }
        let margin = self.claimer.stale_after / 2;
        now.timestamp_millis().saturating_sub(last) < margin.num_milliseconds()
    }

    /// Writes one heartbeat.
    pub async fn beat<S: Store>(&self, store: &S, now: DateTime<Utc>) -> crate::store::Result<()> {
        store
            .heartbeat(self.id(), &self.about, self.started_at, now)
            .await?;
        self.last_beat
            .store(now.timestamp_millis(), Ordering::Release);
        Ok(())
    }

    /// Beats until `stop`, then removes this instance from the store (its
    /// work is finished by then: `run` stops the roles first).
    pub async fn run<S: Store>(self, store: S, clock: Arc<dyn Clock>, stop: CancellationToken) {
        let every = self.beat_every();
        loop {
            if let Err(e) = self.beat(&store, clock.now()).await {
                tracing::error!(instance = %self.id(), "heartbeat not stored: {e}");
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(every) => {}
            }
        }
    }
}
