//! Retention (`AFTERCARE_RETENTION`, README "Retention"): what is older than
//! the configured age is purged in batches, each one short transaction, by
//! one instance at a time (a lease in `settings`, renewed every batch), as a
//! background task of the schedule role. Events, the delivery log, opens and
//! clicks and dead letters are deleted; finished enrollments are compacted
//! to their key and status (what re-entry reads). What dedup and re-entry
//! need within the window is never touched: see [`Purge`].

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::store::{After, Purge, Store};

/// Rows one batch purges at most: one short transaction each.
pub const BATCH: i64 = 500;
/// How often an instance of the schedule role purges.
pub const EVERY: Duration = Duration::from_secs(60 * 60);
/// The first purge after start: not at once, a starting instance has
/// enough to do.
pub const FIRST_AFTER: Duration = Duration::from_secs(60);
/// How long the purging instance holds the lease; renewed every batch, so
/// another instance takes over this long after one died mid-pass.
pub const LEASE: TimeDelta = TimeDelta::minutes(5);
/// The lease's name in `settings`.
pub const LEASE_KEY: &str = "lease:retention";
/// The shortest retention accepted: well above the 7 days an event is
/// looked back for, and above the days a Kafka topic keeps messages by
/// default (7), so that a redelivered event is still known as a duplicate.
pub const MIN: TimeDelta = TimeDelta::days(30);
/// [`MIN`] as the messages write it.
pub const MIN_TEXT: &str = "30d";

/// What one pass purged (rows deleted; enrollments compacted).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Purged {
    pub events: u64,
    pub deliveries: u64,
    pub activity: u64,
    pub dead_letters: u64,
    pub enrollments: u64,
    pub journal: u64,
    /// Transactions it took.
    pub batches: u64,
}

impl Purged {
    fn count(&mut self, what: Purge, n: u64) {
        *match what {
            Purge::Events => &mut self.events,
            Purge::Deliveries => &mut self.deliveries,
            Purge::Activity => &mut self.activity,
            Purge::DeadLetters => &mut self.dead_letters,
            Purge::Enrollments => &mut self.enrollments,
            Purge::Journal => &mut self.journal,
        } += n;
    }
}

/// One pass at `now` over everything older than `now - keep`, `batch` rows
/// a transaction, while `holder` holds the lease (taken first, renewed
/// every batch). `None`: another instance holds it. A pass cut short (the
/// lease lost, `stop`) purges the rest next time.
pub async fn purge<S: Store>(
    store: &S,
    keep: TimeDelta,
    holder: &str,
    clock: &dyn Clock,
    batch: i64,
    stop: &CancellationToken,
) -> crate::store::Result<Option<Purged>> {
    let start = clock.now();
    let before = start
        .checked_sub_signed(keep)
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    let mut done = Purged::default();
    for what in Purge::ALL {
        let mut after = After::Start;
        loop {
            if stop.is_cancelled() {
                return Ok(Some(done));
            }
            let now = clock.now();
            if !store
                .take_lease(LEASE_KEY, holder, now, now + LEASE)
                .await?
            {
                // Another instance purges (or took over from this one).
                return Ok((done.batches > 0).then_some(done));
            }
            let step = store.purge(what, before, &after, batch).await?;
            done.batches += 1;
            done.count(what, step.changed);
            match step.next {
                Some(next) => after = next,
                None => break,
            }
        }
    }
    Ok(Some(done))
}

/// Purges every [`EVERY`] until `stop` (the first time [`FIRST_AFTER`]
/// start), logging what went.
pub async fn run<S: Store>(
    store: S,
    keep: TimeDelta,
    holder: String,
    clock: Arc<dyn Clock>,
    stop: CancellationToken,
) {
    let mut wait = FIRST_AFTER;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = EVERY;
        match purge(&store, keep, &holder, clock.as_ref(), BATCH, &stop).await {
            Ok(Some(p)) => tracing::info!(
                events = p.events,
                deliveries = p.deliveries,
                activity = p.activity,
                dead_letters = p.dead_letters,
                enrollments_compacted = p.enrollments,
                journal = p.journal,
                batches = p.batches,
                "retention: purged what is older than {}",
                crate::sequence::duration::format(keep)
            ),
            Ok(None) => tracing::debug!("retention: another instance is purging"),
            Err(e) => tracing::warn!("retention: {e}; trying again in an hour"),
        }
    }
}
