//! Schedule triggers in the policies' default time zone: at each time a
//! sequence's cron names, one sweep over every customer, in pages by id.
//!
//! - A page's profiles are read without locks and the trigger's `when` is
//!   asked of each; of the customers it holds for, those who have the
//!   enrollment it would start (running or finished) are left alone, and
//!   only the others are locked, asked again, and enrolled, in one
//!   transaction per page.
//! - Progress (the firing, the last customer id done) is kept in
//!   `settings` after each page, so a crash resumes the sweep where it
//!   stopped. Enrollment keys carry the firing (or the customer's last
//!   order, with `once_per_order`), so a page done twice enrolls nobody
//!   twice.
//! - The first time a scheduled sequence is seen, its latest past firing is
//!   recorded as done: deploying a sequence does not fire a time already
//!   gone. After downtime, the latest missed firing runs once, late.
//! - In `run`, one instance sweeps at a time (a lease in `settings`).
//!
//! Schedules in each customer's own time zone (`timezone: customer`) are
//! timers instead, like date triggers (see `dispatch::plan_timers`).

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::engine::calendar;
use crate::engine::dispatch::{self, Note};
use crate::sequence::model::{Catalog, ScheduleTrigger, Trigger};
use crate::store::{LookBack, Store, Tx, Writes};

/// Customers read per page.
pub const PAGE: i64 = 1000;

/// A sweep's progress, as kept in `settings` under [`key`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Progress {
    /// The trigger's version ([`trigger_version`]): a trigger changed (or a
    /// sequence removed and added again) is seen for the first time anew.
    #[serde(default)]
    version: String,
    firing: DateTime<Utc>,
    /// The last customer id done.
    cursor: String,
    done: bool,
}

fn key(sequence: &str) -> String {
    format!("sweep/{sequence}")
}

/// What a round of sweeps did.
#[derive(Debug, Default)]
pub struct Swept {
    /// Customers read.
    pub read: usize,
    /// Customers whose `when` held.
    pub matched: usize,
    /// Of those, the customers locked and offered the sequence: the others
    /// had the enrollment it would start already.
    pub offered: usize,
    pub notes: Vec<Note>,
}

fn schedule_of<'a>(catalog: &'a Catalog, id: &str) -> Option<&'a ScheduleTrigger> {
    match catalog.get(id)?.trigger.as_ref()? {
        Trigger::Schedule(t) => Some(t),
        _ => None,
    }
}

async fn progress<S: Store>(store: &S, id: &str) -> crate::store::Result<Option<Progress>> {
    Ok(store
        .setting(&key(id))
        .await?
        .and_then(|text| serde_json::from_str(&text).ok()))
}

async fn save<S: Store>(store: &S, id: &str, p: &Progress) -> crate::store::Result<()> {
    let text = serde_json::to_string(p).expect("progress serializes");
    store.put_setting(&key(id), &text).await
}

/// Runs every scheduled sequence's sweep that is due at `now` to its end.
pub async fn sweep<S: Store>(
    store: &S,
    catalog: &Catalog,
    now: DateTime<Utc>,
) -> crate::store::Result<Swept> {
    let mut swept = Swept::default();
    let tz = catalog.policies.default_timezone;
    for id in &catalog.scheduled {
        let Some(trigger) = schedule_of(catalog, id) else {
            continue;
        };
        let Some(latest) = calendar::latest_cron(&trigger.cron, tz, now) else {
            continue;
        };
        let version = trigger_version(catalog, id).unwrap_or_default();
        let stored = progress(store, id).await?.filter(|p| p.version == version);
        let mut p = match stored {
            None => {
                // First seen: a firing already gone does not run.
                let first = Progress {
                    version,
                    firing: latest,
                    cursor: String::new(),
                    done: true,
                };
                save(store, id, &first).await?;
                continue;
            }
            Some(p) if latest > p.firing => {
                if !p.done {
                    tracing::warn!(
                        sequence = %id,
                        firing = %p.firing,
                        "the sweep of a firing did not finish before the next firing; \
                         going on with the next"
                    );
                }
                Progress {
                    version,
                    firing: latest,
                    cursor: String::new(),
                    done: false,
                }
            }
            Some(p) => p,
        };
        let seq = catalog.get(id).expect("scheduled sequences exist");
        // Where the `when` bounds a time fact (win-back's
        // `now - customer.last_order_at > days(90)`), only the customers
        // within are asked.
        let range = trigger.when.as_ref().and_then(|c| c.range_at(now));
        // `(customer id, enrollment key)`: the enrollment each customer the
        // `when` holds for would get, as the page is read.
        let keys = Mutex::new(Vec::new());
        let firing = p.firing;
        let holds = |profile: Option<&crate::engine::profile::Profile>| {
            profile.is_some_and(|profile| {
                let holds = dispatch::time_trigger_holds(seq, profile, now, tz) != Ok(false);
                if holds {
                    let key = dispatch::schedule_key(seq, profile, firing);
                    let mut keys = keys.lock().expect("not poisoned");
                    keys.push((profile.customer.id.clone(), key));
                }
                holds
            })
        };
        while !p.done {
            // Asked without locks: most customers are not due, and cost a
            // read and a condition only.
            let page = match &range {
                Some(range) => {
                    store
                        .pick_customers_within(range, &p.cursor, PAGE, &holds)
                        .await?
                }
                None => store.pick_customers(&p.cursor, PAGE, &holds).await?,
            };
            let keys = std::mem::take(&mut *keys.lock().expect("not poisoned"));
            let Some(last) = page.last else {
                p.done = true;
                save(store, id, &p).await?;
                break;
            };
            swept.read += page.read;
            swept.matched += page.ids.len();
            // Those already enrolled (once per order, per customer, or this
            // firing's page done before a crash) are not locked.
            let held = match keys.is_empty() {
                true => HashSet::new(),
                false => store.enrollments_held(&keys).await?,
            };
            let enrolled: HashSet<&str> = keys
                .iter()
                .filter(|(_, key)| held.contains(key))
                .map(|(customer, _)| customer.as_str())
                .collect();
            let ids: Vec<String> = page
                .ids
                .into_iter()
                .filter(|id| !enrolled.contains(id.as_str()))
                .collect();
            swept.offered += ids.len();
            if !ids.is_empty() {
                enroll_page(store, catalog, id, firing, &ids, now, &mut swept.notes).await?;
            }
            p.cursor = last;
            save(store, id, &p).await?;
        }
    }
    Ok(swept)
}

/// The settings key recording that every customer has a timer for the
/// timed sequence `id` as its trigger now reads (`version`).
fn timers_key(id: &str) -> String {
    format!("timers/{id}")
}

/// What a timed sequence's trigger says, as a short hash: a changed
/// trigger (another date, another cron) sets every customer's timer again.
fn trigger_version(catalog: &Catalog, id: &str) -> Option<String> {
    use sha2::{Digest, Sha256};
    let t = catalog.get(id)?.trigger.as_ref()?;
    let tz = catalog.policies.default_timezone;
    Some(hex::encode(
        &Sha256::digest(format!("{t:?} {tz}").as_bytes())[..8],
    ))
}

/// Gives every customer a timer for each timed sequence (date triggers,
/// schedules in the customer's zone) added or changed since the last time:
/// customers who send no event would otherwise never get one. One pass
/// over all customers in pages, once per trigger version, resumable (the
/// last id done is kept after each page). Returns the customers read.
pub async fn seed_timers<S: Store>(
    store: &S,
    catalog: &Catalog,
    now: DateTime<Utc>,
) -> crate::store::Result<usize> {
    let mut read = 0;
    for id in &catalog.timed {
        let Some(version) = trigger_version(catalog, id) else {
            continue;
        };
        let key = timers_key(id);
        let Some(mut cursor) = resume_at(store, &key, &version).await? else {
            continue;
        };
        loop {
            let page = store.pick_customers(&cursor, PAGE, &|_| true).await?;
            let Some(last) = page.last else {
                store.put_setting(&key, &version).await?;
                break;
            };
            read += page.read;
            let ids = page.ids;
            let mut tx = store.begin().await?;
            let mut states = tx.lock_customers(&ids, &LookBack::of(catalog, now)).await?;
            let mut writes = Writes::default();
            for cid in &ids {
                let Some(state) = states.get_mut(cid) else {
                    continue;
                };
                let timers = dispatch::plan_timers(catalog, state, None, now);
                writes.absorb(crate::engine::customer::Changes {
                    timers,
                    ..Default::default()
                });
            }
            tx.write(writes, now).await?;
            tx.commit().await?;
            cursor = last;
            store
                .put_setting(&key, &format!("{version} {cursor}"))
                .await?;
        }
    }
    Ok(read)
}

/// Where a one-time pass over all customers stands, as kept under `key`:
/// `"<version>"` when done (`None`), `"<version> <cursor>"` while under way
/// (the last customer id done), anything else (another version, nothing
/// yet) from the start.
async fn resume_at<S: Store>(
    store: &S,
    key: &str,
    version: &str,
) -> crate::store::Result<Option<String>> {
    let stored = store.setting(key).await?.unwrap_or_default();
    Ok(match stored.split_once(' ') {
        Some((v, c)) if v == version => Some(c.to_string()),
        _ if stored == version => None,
        _ => Some(String::new()),
    })
}

/// The settings key and version of the facts' rebuild ([`seed_facts`]).
const FACTS_KEY: &str = "facts/ledger";
const FACTS_VERSION: &str = "1";

/// The event types the facts are counted from.
pub const FACT_EVENTS: [&str; 4] = [
    "order.placed",
    "order.cancelled",
    "order.refunded",
    "review.submitted",
];

/// Records that every stored customer's facts are current, as after
/// [`seed_facts`]: for customers written as this version writes them (the
/// benchmarks' generated databases), whose profiles carry their facts.
pub async fn facts_are_current<S: Store>(store: &S) -> crate::store::Result<()> {
    store.put_setting(FACTS_KEY, FACTS_VERSION).await
}

/// Builds the facts of customers stored before aftercare kept them (an
/// upgrade): each customer whose profile has no ledger gets one counted from
/// their stored events, in the order they occurred. One pass over all
/// customers in pages, once, resumable; run before [`seed_timers`], which
/// reads the facts. Returns the customers whose facts it built.
pub async fn seed_facts<S: Store>(store: &S, now: DateTime<Utc>) -> crate::store::Result<usize> {
    let Some(mut cursor) = resume_at(store, FACTS_KEY, FACTS_VERSION).await? else {
        return Ok(0);
    };
    let mut built = 0;
    loop {
        let page = store
            .pick_customers(&cursor, PAGE, &|p| {
                p.is_some_and(|p| p.ledger.orders.is_empty())
            })
            .await?;
        let Some(last) = page.last else {
            store.put_setting(FACTS_KEY, FACTS_VERSION).await?;
            return Ok(built);
        };
        let ids = page.ids;
        if !ids.is_empty() {
            let mut tx = store.begin().await?;
            let states = tx.lock_customers(&ids, &LookBack::none()).await?;
            let events = tx.stored_events(&ids, &FACT_EVENTS).await?;
            let mut writes = Writes::default();
            for (id, state) in states {
                let (Some(mut profile), Some(events)) = (state.profile, events.get(&id)) else {
                    continue;
                };
                if !profile.ledger.orders.is_empty() {
                    continue;
                }
                let mut ledger = crate::engine::facts::Ledger::default();
                for e in events {
                    crate::engine::facts::update(&mut ledger, e);
                }
                if let Some(at) = profile.ledger.facts.last_email_at {
                    crate::engine::facts::emailed(&mut ledger.facts, at);
                }
                if ledger != profile.ledger {
                    Arc::make_mut(&mut profile).ledger = ledger;
                    writes.profiles.insert(id, profile);
                    built += 1;
                }
            }
            tx.write(writes, now).await?;
            tx.commit().await?;
        }
        cursor = last;
        store
            .put_setting(FACTS_KEY, &format!("{FACTS_VERSION} {cursor}"))
            .await?;
    }
}

/// Locks the page's matching customers and offers them the sequence, in
/// one transaction.
async fn enroll_page<S: Store>(
    store: &S,
    catalog: &Catalog,
    sequence: &str,
    firing: DateTime<Utc>,
    ids: &[String],
    now: DateTime<Utc>,
    notes: &mut Vec<Note>,
) -> crate::store::Result<()> {
    let mut tx = store.begin().await?;
    let mut states = tx.lock_customers(ids, &LookBack::of(catalog, now)).await?;
    let mut writes = Writes::default();
    for id in ids {
        let Some(mut state) = states.remove(id) else {
            continue;
        };
        let mut changes = dispatch::apply_schedule(catalog, &mut state, sequence, firing, now);
        for n in &changes.notes {
            tracing::info!(sequence = %n.sequence, enrollment = %n.enrollment_key, "{}", n.message);
        }
        notes.append(&mut changes.notes);
        let idxs = writes.absorb(changes);
        writes.take_enrollments(state, &idxs);
    }
    tx.write(writes, now).await?;
    tx.commit().await
}

/// When a sweep falls due next: an unfinished one now, else the next
/// firing after the last. `None` for a sequence not seen yet (the first
/// [`sweep`] records it).
pub async fn next_sweep<S: Store>(
    store: &S,
    catalog: &Catalog,
) -> crate::store::Result<Option<DateTime<Utc>>> {
    let tz = catalog.policies.default_timezone;
    let mut next: BTreeSet<DateTime<Utc>> = BTreeSet::new();
    for id in &catalog.scheduled {
        let Some(trigger) = schedule_of(catalog, id) else {
            continue;
        };
        let version = trigger_version(catalog, id).unwrap_or_default();
        match progress(store, id).await?.filter(|p| p.version == version) {
            Some(p) if !p.done => {
                next.insert(p.firing);
            }
            Some(p) => next.extend(calendar::next_cron(&trigger.cron, tz, p.firing)),
            None => {}
        }
    }
    Ok(next.first().copied())
}

/// The lease one instance holds while it sweeps.
pub const LEASE_KEY: &str = "lease/sweep";
/// How long a sweep's lease lasts: far longer than a sweep takes (a million
/// customers take under a minute, docs/BENCHMARKS.md), so that a crashed
/// holder's sweep is taken over within it.
pub const LEASE: chrono::TimeDelta = chrono::TimeDelta::minutes(10);
/// The longest the loop sleeps before it looks again (a firing another
/// instance finished, a clock that jumped).
const LOOK_AGAIN: std::time::Duration = std::time::Duration::from_secs(30);

/// Runs sweeps as they fall due, until `stop`; one instance at a time.
pub async fn run<S: Store>(
    store: S,
    catalog: std::sync::Arc<Catalog>,
    holder: String,
    clock: std::sync::Arc<dyn crate::clock::Clock>,
    stop: tokio_util::sync::CancellationToken,
) {
    // Facts for customers stored before they were kept, and timers for
    // customers who were there before a timed sequence.
    loop {
        let now = clock.now();
        match store.take_lease(LEASE_KEY, &holder, now, now + LEASE).await {
            Ok(true) => match async {
                let facts = seed_facts(&store, now).await?;
                if facts > 0 {
                    tracing::info!(customers = facts, "facts built from the stored events");
                }
                seed_timers(&store, &catalog, now).await
            }
            .await
            {
                Ok(read) => {
                    if read > 0 {
                        tracing::info!(customers = read, "timers set for every customer");
                    }
                    break;
                }
                Err(e) => tracing::warn!("setting timers: {e}; trying again"),
            },
            // Another instance sweeps (or seeds): wait for the lease, so
            // that this catalog's timers are set even when an instance of an
            // older one holds it during a rolling upgrade.
            Ok(false) => tracing::debug!("setting timers: another instance holds the lease"),
            Err(e) => tracing::warn!("setting timers: {e}; trying again"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(LOOK_AGAIN) => {}
        }
    }
    if catalog.scheduled.is_empty() {
        return;
    }
    loop {
        let now = clock.now();
        let due = match next_sweep(&store, &catalog).await {
            Ok(next) => next.is_none_or(|t| t <= now),
            Err(e) => {
                tracing::warn!("sweep: {e}");
                false
            }
        };
        // Whether this round swept (else wait the full while: another
        // instance has the lease, or the database failed).
        let mut swept = !due;
        if due {
            match store.take_lease(LEASE_KEY, &holder, now, now + LEASE).await {
                Ok(true) => match sweep(&store, &catalog, now).await {
                    Ok(s) => {
                        swept = true;
                        if s.read > 0 {
                            tracing::info!(
                                read = s.read,
                                matched = s.matched,
                                offered = s.offered,
                                "sweep: schedules fired"
                            );
                        }
                    }
                    Err(e) => tracing::warn!("sweep: {e}; trying again"),
                },
                Ok(false) => tracing::debug!("sweep: another instance sweeps"),
                Err(e) => tracing::warn!("sweep: {e}"),
            }
        }
        let wait = match next_sweep(&store, &catalog).await {
            Ok(Some(t)) if swept => (t - clock.now())
                .to_std()
                .unwrap_or_default()
                .min(LOOK_AGAIN),
            _ => LOOK_AGAIN,
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait.max(std::time::Duration::from_millis(100))) => {}
        }
    }
}
