//! A store kept in memory: `simulate` and `demo` run the service's own
//! ingest, scheduler and sender over it on a virtual clock, and it passes the
//! same conformance suite as the databases. One transaction at a time (a
//! lock held from [`Store::begin`] to commit); it cannot fail after a write,
//! so writes apply at once.
//!
//! [`MemStore::lean`] forgets what a simulation never reads again (the state
//! of finished enrollments, the context of finished emails, the delivery
//! log), so that a long simulation stays small.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::{Mutex, OwnedMutexGuard};

use super::{
    Activity, ActivityKind, Bucket, Claimer, DeadLetter, DeliveryEntry, DeliveryFilter,
    DeliveryView, Due, DueClaim, EmailRow, JourneyRows, LookBack, OutboxView, PeriodCustomers,
    Picked, PlacedOrder, QueueDepth, ReceivedEvent, Result, SeriesPoint, Span, StepCount,
    StepCounts, Store, StoredCustomer, StoredDeadLetter, SuppressionAction, SuppressionChange,
    SuppressionEntry, SuppressionFilter, Touch, Transition, Tx, Writes, address_key,
    count_dead_letters, parse_stored,
};
use super::{
    After, CustomerExport, Erased, Erasure, ErasureLog, ExportedEmail, ExportedEnrollment,
    ExportedEvent, ExportedSuppression, FastMap, Purge, PurgeStep, States,
};
use crate::engine::customer::{CustomerState, Recorded, Timer};
use crate::engine::facts::{FactRange, Facts, TimeFact};
use crate::engine::journal::Entry;
use crate::engine::outbox::{OutboxStatus, Outcome, Queued};
use crate::engine::policy::Sent;
use crate::engine::profile::Profile;
use crate::engine::state::{Context, Enrollment, Status};
use crate::event::Event;

#[derive(Clone, Default)]
pub struct MemStore {
    inner: Arc<Mutex<Mem>>,
}

impl MemStore {
    /// Keeps everything, as a database would.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps only what later decisions read.
    pub fn lean() -> Self {
        let mem = Mem {
            lean: true,
            ..Mem::default()
        };
        Self {
            inner: Arc::new(Mutex::new(mem)),
        }
    }
}

#[derive(Default)]
struct Mem {
    lean: bool,
    /// Every event id recorded.
    events: Keys,
    /// By id, in order: a sweep reads them a page at a time.
    customers: BTreeMap<String, CustomerRec>,
    /// Every enrollment by key (only the active ones in a lean store). Boxed:
    /// a record is ~350 bytes, and growing a table of them inline doubled
    /// the largest block `simulate` holds (a 15 MB peak, docs/BENCHMARKS.md,
    /// section 9).
    enrollments: FastMap<String, Box<EnrollmentRec>>,
    /// `(wake_at, key)` of every active enrollment that waits.
    due: BTreeSet<(DateTime<Utc>, String)>,
    /// Timers by customer and sequence, and by time.
    timers: FastMap<String, Vec<Timer>>,
    timers_due: BTreeSet<(DateTime<Utc>, String, String)>,
    outbox: FastMap<i64, OutboxRec>,
    outbox_keys: Keys,
    /// `(not_before, id)` of pending and sending rows: what a claim may take.
    queue: BTreeSet<(DateTime<Utc>, i64)>,
    /// The same rows by customer: the claim keeps each customer's in order.
    queued_of: FastMap<String, BTreeSet<(DateTime<Utc>, i64)>>,
    next_id: i64,
    /// The delivery log with each entry's Message-ID; an entry's id is its
    /// index + 1.
    deliveries: Vec<(DeliveryView, Option<String>)>,
    /// The suppression list by address: the reason and since when.
    suppressions: BTreeMap<String, (String, DateTime<Utc>)>,
    /// What operators did to it, oldest first (an entry's id is its index + 1).
    suppression_log: Vec<SuppressionChange>,
    dead_letters: Vec<StoredDeadLetter>,
    /// Index in `dead_letters` by [`DeadLetter::identity`].
    dead_letter_ids: HashMap<String, usize>,
    settings: HashMap<String, String>,
    /// Opens and clicks, in the order recorded.
    activity: Vec<Activity>,
    /// Heartbeats by instance id.
    instances: HashMap<String, DateTime<Utc>>,
    /// What the last load looked back for: a lean store keeps recent events
    /// of these types only, and forgets those older than `since` now and then.
    look_back: Option<(BTreeSet<String>, DateTime<Utc>)>,
    /// Events recorded since a lean store last forgot old ones.
    recorded_since_sweep: usize,
    /// Every event recorded, by id, with what an export and retention read
    /// (not in a lean store).
    kept_events: HashMap<String, KeptEvent>,
    /// Finished enrollments retention compacted, or an erasure moved: no
    /// state, what re-entry and an export read.
    compacted: HashMap<String, Compacted>,
    /// Emails a person opened or clicked whose activity retention purged.
    opened: HashSet<String>,
    /// Delivery log entries purged from the front: an entry's id is its
    /// index + 1 + this.
    deliveries_purged: usize,
    erasures: Vec<ErasureLog>,
    /// Customers in order of a time fact, for each fact a sweep has asked
    /// by ([`Store::pick_customers_within`]); kept from then on.
    fact_index: Vec<FactIndex>,
}

/// The customers with a profile in order of one time fact.
struct FactIndex {
    fact: TimeFact,
    at: BTreeSet<(DateTime<Utc>, String)>,
    /// Those without the fact.
    without: BTreeSet<String>,
}

impl FactIndex {
    /// Moves customer `id` from where `old` facts put it to where `new` do
    /// (`None`: no profile, not indexed).
    fn update(&mut self, id: &str, old: Option<&Facts>, new: Option<&Facts>) {
        let (old, new) = (old.map(|f| self.fact.of(f)), new.map(|f| self.fact.of(f)));
        self.moved(id, old, new);
    }

    /// As [`FactIndex::update`], given the fact before and after (`None`:
    /// no profile; `Some(None)`: without the fact).
    fn moved(
        &mut self,
        id: &str,
        old: Option<Option<DateTime<Utc>>>,
        new: Option<Option<DateTime<Utc>>>,
    ) {
        if old == new {
            return;
        }
        match old {
            Some(Some(t)) => {
                self.at.remove(&(t, id.to_string()));
            }
            Some(None) => {
                self.without.remove(id);
            }
            None => {}
        }
        match new {
            Some(Some(t)) => {
                self.at.insert((t, id.to_string()));
            }
            Some(None) => {
                self.without.insert(id.to_string());
            }
            None => {}
        }
    }
}

/// A set of strings kept as 128-bit digests: event ids and idempotency
/// keys are only ever asked whether they were seen, and a simulation sees
/// hundreds of thousands (16 bytes each instead of a string's ~70).
#[derive(Default)]
struct Keys(HashSet<u128, foldhash::fast::RandomState>);

impl Keys {
    fn digest(key: &str) -> u128 {
        use sha2::{Digest, Sha256};
        let d = Sha256::digest(key.as_bytes());
        u128::from_le_bytes(d[..16].try_into().expect("16 bytes"))
    }

    /// Adds `key`; whether it was new.
    fn insert(&mut self, key: &str) -> bool {
        self.0.insert(Self::digest(key))
    }

    fn contains(&self, key: &str) -> bool {
        self.0.contains(&Self::digest(key))
    }

    fn remove(&mut self, key: &str) -> bool {
        self.0.remove(&Self::digest(key))
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

/// How many events a lean store records between sweeps of old recent events.
const SWEEP_EVERY: usize = 2_000;

#[derive(Default)]
struct CustomerRec {
    /// Shared with the loads that hand it out.
    profile: Option<Arc<Profile>>,
    /// The address the customer's row was made with, and when the row last
    /// changed (as `customers.email` and `updated_at`).
    email: String,
    updated_at: DateTime<Utc>,
    /// Keys of the active enrollments.
    active: Vec<String>,
    finished: Arc<HashSet<String>>,
    /// When each finished enrollment started.
    finished_starts: Arc<Vec<DateTime<Utc>>>,
    /// Every enrollment key in the order they started (not in a lean store).
    all: Vec<String>,
    /// Mail sent (or being sent), by outbox id.
    sent: Vec<(i64, Sent)>,
    /// Every event recorded, with when and how (not in a lean store).
    received: Vec<ReceivedEvent>,
    /// The engine's journal entries (not in a lean store).
    journal: Vec<Entry>,
    /// Recorded events, in the order recorded (a lean store keeps only
    /// recent ones of the types looked back for, as JSON text: a third of
    /// the memory of parsed events).
    recent: Vec<Recorded>,
}

impl CustomerRec {
    /// The recorded events `look_back` asks for, as a load hands them out.
    fn recent_for(&self, look_back: &LookBack<'_>) -> Vec<Recorded> {
        let recent = self
            .recent
            .iter()
            .filter(|e| look_back.kinds.contains(&e.kind) && e.occurred_at >= look_back.since);
        look_back.keep(recent.cloned().collect())
    }
}

/// A recorded event as an export and retention read it; the payload is
/// dropped by an erasure.
struct KeptEvent {
    customer_id: String,
    occurred_at: DateTime<Utc>,
    received_at: DateTime<Utc>,
    source: String,
    event: Option<Arc<Event>>,
}

/// An enrollment kept without its state.
#[derive(Clone)]
struct Compacted {
    customer_id: String,
    sequence: String,
    status: Status,
    step: Option<String>,
    order_id: Option<String>,
    started_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl Compacted {
    fn of(e: &Enrollment) -> Self {
        Self {
            customer_id: e.customer_id.clone(),
            sequence: e.sequence.clone(),
            status: e.status,
            step: e.step.clone(),
            order_id: e.order_id.clone(),
            started_at: e.started_at,
            updated_at: e.updated_at,
        }
    }

    fn export(&self, key: &str) -> ExportedEnrollment {
        ExportedEnrollment {
            key: key.to_string(),
            sequence: self.sequence.clone(),
            status: super::sql::status_str(self.status).to_string(),
            step: self.step.clone(),
            order_id: self.order_id.clone(),
            started_at: self.started_at,
            updated_at: self.updated_at,
            state: None,
        }
    }
}

/// Whether a dead letter names the customer or one of `addresses` (as
/// `sql::push_naming` asks).
fn names(l: &DeadLetter, customer_id: &str, addresses: &BTreeSet<String>) -> bool {
    let id = serde_json::to_string(customer_id).unwrap_or_default();
    if l.customer_id().as_deref() == Some(customer_id)
        || l.payload.contains(&format!("\"id\":{id}"))
        || l.payload.contains(&format!("\"id\": {id}"))
    {
        return true;
    }
    let (payload, reason) = (
        l.payload.to_ascii_lowercase(),
        l.reason.to_ascii_lowercase(),
    );
    addresses.iter().any(|a| {
        let a = super::address_key(a);
        payload.contains(&a) || reason.contains(&a)
    })
}

/// The context an erased customer's email keeps: nobody's.
fn nobodys(to: &str) -> Arc<Context> {
    Arc::new(Context {
        customer: crate::event::Customer {
            id: to.to_string(),
            email: crate::event::EmailAddress::parse("erased@erased.invalid")
                .expect("a valid address"),
            first_name: None,
            locale: None,
            timezone: None,
            marketing_consent: None,
            tags: Vec::new(),
            attributes: Default::default(),
        },
        order: None,
        shipment: None,
        review: None,
        facts: Default::default(),
    })
}

impl Mem {
    /// The customer's timers, by sequence.
    fn timers_of(&self, customer_id: &str) -> Vec<Timer> {
        self.timers.get(customer_id).cloned().unwrap_or_default()
    }

    /// Sets or drops a customer's timer for a sequence. A customer's timers
    /// are a short list sorted by sequence (one per timed sequence; a map's
    /// node took ~1 KB per customer).
    fn set_timer(&mut self, (customer, sequence): (String, String), timer: Option<Timer>) {
        let mine = self.timers.entry(customer.clone()).or_default();
        let at = mine.binary_search_by(|t| t.sequence.cmp(&sequence));
        if let Ok(i) = at {
            let old = mine.remove(i);
            self.timers_due
                .remove(&(old.fire_at, old.customer_id, old.sequence));
        }
        if let Some(t) = timer {
            debug_assert_eq!(t.sequence, sequence, "a timer is kept under its sequence");
            self.timers_due
                .insert((t.fire_at, t.customer_id.clone(), t.sequence.clone()));
            let i = at.unwrap_or_else(|i| i);
            mine.insert(i, t);
        }
        if mine.is_empty() {
            self.timers.remove(&customer);
        }
    }

    /// The addresses stored for `customer_id`: the profile's and those
    /// their events carried.
    fn addresses_of(&self, customer_id: &str, known: &mut BTreeSet<String>) {
        if let Some(p) = self
            .customers
            .get(customer_id)
            .and_then(|c| c.profile.as_ref())
        {
            known.insert(p.customer.email.to_string());
        }
        for k in self.kept_events.values() {
            if k.customer_id == customer_id
                && let Some(e) = &k.event
            {
                known.insert(e.customer.email.to_string());
            }
        }
    }

    fn rebuild_dead_letter_ids(&mut self) {
        self.dead_letter_ids = self
            .dead_letters
            .iter()
            .enumerate()
            .map(|(i, l)| (l.letter.identity(), i))
            .collect();
    }
}

struct EnrollmentRec {
    customer_id: String,
    state: Enrollment,
}

struct OutboxRec {
    row: Queued,
    /// When the row was written.
    created_at: DateTime<Utc>,
    lease_until: Option<DateTime<Utc>>,
    claimed_by: Option<String>,
    sent_at: Option<DateTime<Utc>>,
    message_id: Option<String>,
    last_error: Option<String>,
}

fn leased(lease: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    lease.is_some_and(|l| l >= now)
}

/// What a claim at `now` sees of other rows: whether a row is held by a
/// claimer, and whether it is due.
struct ClaimView<'a> {
    now: DateTime<Utc>,
    /// A claimer whose heartbeat is older than this is gone.
    stale_before: DateTime<Utc>,
    instances: &'a HashMap<String, DateTime<Utc>>,
}

impl ClaimView<'_> {
    /// Claimed or being sent, by a claimer still alive.
    fn held(&self, rec: &OutboxRec) -> bool {
        let claimer_gone = rec
            .claimed_by
            .as_ref()
            .and_then(|c| self.instances.get(c))
            .is_some_and(|beat| *beat < self.stale_before);
        leased(rec.lease_until, self.now) && !claimer_gone
    }

    /// Pending and due, or `sending` (being sent, or to be taken over).
    fn due(&self, rec: &OutboxRec) -> bool {
        match rec.row.status {
            OutboxStatus::Pending => rec.row.not_before <= self.now,
            OutboxStatus::Sending => true,
            OutboxStatus::Sent | OutboxStatus::Skipped | OutboxStatus::Failed => false,
        }
    }

    /// Whether a row of the customer, `mine` by `(not_before, id)`, must wait
    /// for another of theirs: one in flight, or one due that comes earlier
    /// (as `sql::IN_ORDER`).
    fn waits(
        &self,
        mine: (DateTime<Utc>, i64),
        theirs: &BTreeSet<(DateTime<Utc>, i64)>,
        outbox: &FastMap<i64, OutboxRec>,
    ) -> bool {
        theirs.iter().filter(|k| k.1 != mine.1).any(|k| {
            let rec = &outbox[&k.1];
            self.held(rec) || (self.due(rec) && *k < mine)
        })
    }
}

impl Mem {
    fn save_enrollment(&mut self, e: Enrollment) {
        // Saved for each enrollment a decision moves: the customer's record
        // and the enrollment's are found, not made again, and its place in
        // `due` is moved only when its wake-up moved.
        if !self.customers.contains_key(&e.customer_id) {
            self.customers
                .insert(e.customer_id.clone(), CustomerRec::default());
        }
        let customer = self
            .customers
            .get_mut(&e.customer_id)
            .expect("inserted above");
        let wake = e.wake_at();
        let was = match self.enrollments.get(&e.key) {
            Some(old) => Some(old.state.wake_at()),
            None => {
                if !self.lean {
                    customer.all.push(e.key.clone());
                }
                if e.is_active() {
                    customer.active.push(e.key.clone());
                }
                None
            }
        };
        if was != Some(wake) {
            if let Some(Some(w)) = was {
                self.due.remove(&(w, e.key.clone()));
            }
            if let Some(w) = wake {
                self.due.insert((w, e.key.clone()));
            }
        }
        if !e.is_active() {
            customer.active.retain(|k| *k != e.key);
            if Arc::make_mut(&mut customer.finished).insert(e.key.clone()) {
                Arc::make_mut(&mut customer.finished_starts).push(e.started_at);
            }
            if self.lean {
                self.enrollments.remove(&e.key);
                return;
            }
        }
        match self.enrollments.get_mut(&e.key) {
            Some(rec) => {
                if rec.customer_id != e.customer_id {
                    rec.customer_id.clone_from(&e.customer_id);
                }
                rec.state = e;
            }
            None => {
                self.enrollments.insert(
                    e.key.clone(),
                    Box::new(EnrollmentRec {
                        customer_id: e.customer_id.clone(),
                        state: e,
                    }),
                );
            }
        }
    }

    /// Puts a new row in the claim queue.
    fn enqueue(&mut self, id: i64, customer_id: &str, not_before: DateTime<Utc>) {
        self.queue.insert((not_before, id));
        self.queued_of
            .entry(customer_id.to_string())
            .or_default()
            .insert((not_before, id));
    }

    /// Moves a row's place in the claim queue (or takes it out).
    fn requeue(&mut self, id: i64, before: (OutboxStatus, DateTime<Utc>)) {
        let in_queue = |s| matches!(s, OutboxStatus::Pending | OutboxStatus::Sending);
        let customer = self.outbox[&id].row.customer_id.clone();
        if in_queue(before.0) {
            self.queue.remove(&(before.1, id));
            if let Some(rows) = self.queued_of.get_mut(&customer) {
                rows.remove(&(before.1, id));
                if rows.is_empty() {
                    self.queued_of.remove(&customer);
                }
            }
        }
        let rec = &self.outbox[&id];
        if in_queue(rec.row.status) {
            let not_before = rec.row.not_before;
            self.enqueue(id, &customer, not_before);
        } else if self.lean {
            // Final: a lean store keeps only the key (and the history).
            self.outbox.remove(&id);
        }
    }

    /// Records the rows just written in `skipped` (key, id, reason) as
    /// skipped, with their delivery log entries.
    fn skip_written(&mut self, skipped: Vec<(String, i64, String)>, now: DateTime<Utc>) {
        for (key, id, reason) in skipped {
            let Some(rec) = self.outbox.get_mut(&id) else {
                continue;
            };
            let before = (rec.row.status, rec.row.not_before);
            rec.row.status = OutboxStatus::Skipped;
            rec.last_error = Some(reason.clone());
            // Out of the claim queue and the customer's queue (a lean
            // store forgets the row there).
            self.requeue(id, before);
            if self.lean {
                continue;
            }
            let view = DeliveryView {
                outbox_id: id,
                idempotency_key: key,
                attempt: 0,
                at: now,
                outcome: Outcome::Skipped,
                detail: reason,
            };
            self.deliveries.push((view, None));
        }
    }

    fn sent_mut(&mut self, customer_id: &str) -> &mut Vec<(i64, Sent)> {
        &mut self
            .customers
            .entry(customer_id.to_string())
            .or_default()
            .sent
    }
}

/// A row as [`Store::outbox`] shows it.
fn view_of(r: &OutboxRec) -> OutboxView {
    OutboxView {
        id: r.row.id,
        idempotency_key: r.row.idempotency_key.clone(),
        customer_id: r.row.customer_id.clone(),
        sequence: r.row.sequence.clone(),
        step: r.row.step.clone(),
        template: r.row.template.clone(),
        category: r.row.category,
        status: r.row.status,
        attempts: r.row.attempts,
        not_before: r.row.not_before,
        due_at: r.row.due_at,
        message_id: r.message_id.clone(),
        last_error: r.last_error.clone(),
        sent_at: r.sent_at,
    }
}

/// The type of the events the reports count as orders.
const ORDER_PLACED: &str = "order.placed";

impl Mem {
    /// Every recorded event of type `kind` with its customer id (a lean
    /// store keeps only recent events of the types looked back for, so its
    /// reports see only those).
    fn recorded<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = (&'a String, &'a Recorded)> {
        self.customers
            .iter()
            .flat_map(|(id, c)| c.recent.iter().map(move |r| (id, r)))
            .filter(move |(_, r)| r.kind == kind)
    }

    /// The outbox rows by idempotency key.
    fn outbox_by_key(&self) -> HashMap<&str, &OutboxRec> {
        self.outbox
            .values()
            .map(|r| (r.row.idempotency_key.as_str(), r))
            .collect()
    }

    /// The customers with an order in `span`.
    fn buyers(&self, span: Span) -> HashSet<&String> {
        self.recorded(ORDER_PLACED)
            .filter(|(_, r)| span.contains(r.occurred_at))
            .map(|(c, _)| c)
            .collect()
    }
}

/// The order id of a recorded `order.placed` (its event id without one).
fn order_id(r: &Recorded) -> String {
    r.event()
        .and_then(|e| e.order.as_ref().map(|o| o.id.clone()))
        .unwrap_or_else(|| r.id.clone())
}

pub struct MemTx {
    mem: OwnedMutexGuard<Mem>,
}

impl Tx for MemTx {
    async fn record_events(
        &mut self,
        events: &[&Event],
        source: &str,
        now: DateTime<Utc>,
    ) -> Result<HashSet<String>> {
        let mem = &mut *self.mem;
        let mut fresh = HashSet::with_capacity(events.len());
        for ev in events {
            if mem.events.insert(&ev.id) {
                fresh.insert(ev.id.clone());
                if !mem.lean {
                    let c = mem.customers.entry(ev.customer.id.clone()).or_default();
                    c.received.push(ReceivedEvent {
                        event: (*ev).clone(),
                        received_at: now,
                        source: source.to_string(),
                    });
                }
                let wanted = !mem.lean
                    || mem
                        .look_back
                        .as_ref()
                        .is_none_or(|(kinds, _)| kinds.contains(&ev.kind));
                if wanted {
                    let recorded = if mem.lean {
                        let json = serde_json::to_string(ev)?;
                        Recorded::stored(ev.id.clone(), ev.kind.clone(), ev.occurred_at, json)
                    } else {
                        let event = Arc::new((*ev).clone());
                        mem.kept_events.insert(
                            ev.id.clone(),
                            KeptEvent {
                                customer_id: ev.customer.id.clone(),
                                occurred_at: ev.occurred_at,
                                received_at: now,
                                source: source.to_string(),
                                event: Some(event.clone()),
                            },
                        );
                        Recorded::of(event)
                    };
                    let c = mem.customers.entry(ev.customer.id.clone()).or_default();
                    c.recent.push(recorded);
                    mem.recorded_since_sweep += 1;
                }
            }
        }
        if mem.lean && mem.recorded_since_sweep >= SWEEP_EVERY {
            mem.recorded_since_sweep = 0;
            if let Some((_, since)) = &mem.look_back {
                for c in mem.customers.values_mut() {
                    c.recent.retain(|e| e.occurred_at >= *since);
                    // Most customers have no event in the look-back, or
                    // one: their room for four goes back.
                    if c.recent.capacity() > c.recent.len() {
                        c.recent.shrink_to_fit();
                    }
                }
            }
        }
        Ok(fresh)
    }

    async fn ensure_customers(
        &mut self,
        customers: &[(&str, &str)],
        now: DateTime<Utc>,
    ) -> Result<()> {
        for (id, email) in customers {
            let c = self.mem.customers.entry(id.to_string()).or_default();
            if c.email.is_empty() {
                c.email = email.to_string();
                c.updated_at = now;
            }
        }
        Ok(())
    }

    async fn lock_customers(&mut self, ids: &[String], look_back: &LookBack<'_>) -> Result<States> {
        if self.mem.lean {
            match &mut self.mem.look_back {
                Some((kinds, since)) if kinds == look_back.kinds => *since = look_back.since,
                other => *other = Some((look_back.kinds.clone(), look_back.since)),
            }
        }
        let mem = &*self.mem;
        let mut out = States::with_capacity_and_hasher(ids.len(), Default::default());
        for id in ids {
            let mut st = CustomerState::default();
            if let Some(c) = mem.customers.get(id) {
                if !look_back.kinds.is_empty() {
                    st.recent = c.recent_for(look_back);
                }
                st.profile = c.profile.clone();
                if look_back.timers {
                    st.timers = mem.timers_of(id);
                }
                st.finished = c.finished.clone();
                st.finished_starts = c.finished_starts.clone();
                st.enrollments = c
                    .active
                    .iter()
                    .map(|k| mem.enrollments[k].state.clone())
                    .collect();
                // As a database returns them.
                st.enrollments
                    .sort_by(|a, b| (a.started_at, &a.key).cmp(&(b.started_at, &b.key)));
            }
            out.insert(id.clone(), st);
        }
        Ok(out)
    }

    async fn claim_due(
        &mut self,
        now: DateTime<Utc>,
        limit: i64,
        look_back: &LookBack<'_>,
    ) -> Result<Due> {
        // The transaction holds the whole store: nothing is held by another.
        let claims: Vec<DueClaim> = self
            .mem
            .due
            .iter()
            .take_while(|(wake_at, _)| *wake_at <= now)
            .take(usize::try_from(limit).unwrap_or(0))
            .map(|(_, key)| DueClaim {
                customer_id: self.mem.enrollments[key].customer_id.clone(),
                key: key.clone(),
            })
            .collect();
        let timers: Vec<(String, String)> = if look_back.timers {
            self.mem
                .timers_due
                .iter()
                .take_while(|(at, _, _)| *at <= now)
                .take(usize::try_from(limit).unwrap_or(0))
                .map(|(_, c, s)| (c.clone(), s.clone()))
                .collect()
        } else {
            Vec::new()
        };
        let mut ids: Vec<String> = claims
            .iter()
            .map(|c| c.customer_id.clone())
            .chain(timers.iter().map(|(c, _)| c.clone()))
            .collect();
        ids.sort();
        ids.dedup();
        let customers = self.lock_customers(&ids, look_back).await?;
        Ok(Due {
            claims,
            timers,
            customers,
        })
    }

    async fn reload_recent(
        &mut self,
        states: &mut States,
        ids: &[String],
        look_back: &LookBack<'_>,
    ) -> Result<()> {
        for id in ids {
            if let (Some(c), Some(st)) = (self.mem.customers.get(id), states.get_mut(id)) {
                st.recent = c.recent_for(look_back);
            }
        }
        Ok(())
    }

    async fn stored_events(
        &mut self,
        ids: &[String],
        kinds: &[&str],
    ) -> Result<HashMap<String, Vec<Event>>> {
        // A lean store keeps no events (its customers' facts were built as
        // they came).
        let mut out: HashMap<String, Vec<Event>> = HashMap::new();
        for id in ids {
            let Some(c) = self.mem.customers.get(id) else {
                continue;
            };
            let mut events: Vec<Event> = c
                .received
                .iter()
                .filter(|r| kinds.contains(&r.event.kind.as_str()))
                .map(|r| r.event.clone())
                .collect();
            if !events.is_empty() {
                events.sort_by(|a, b| (a.occurred_at, &a.id).cmp(&(b.occurred_at, &b.id)));
                out.insert(id.clone(), events);
            }
        }
        Ok(out)
    }

    async fn lock_profile(&mut self, customer_id: &str) -> Result<Option<Arc<Profile>>> {
        Ok(self
            .mem
            .customers
            .get(customer_id)
            .and_then(|c| c.profile.clone()))
    }

    async fn write(&mut self, w: Writes, now: DateTime<Utc>) -> Result<usize> {
        let mem = &mut *self.mem;
        // Rows just written that a history import records as skipped.
        let mut skipped = Vec::new();
        for (id, p) in w.profiles {
            if !mem.fact_index.is_empty() {
                let old = mem.customers.get(&id).and_then(|c| c.profile.as_ref());
                for ix in &mut mem.fact_index {
                    ix.update(&id, old.map(|p| &p.ledger.facts), Some(&p.ledger.facts));
                }
            }
            let c = mem.customers.entry(id).or_default();
            c.email = p.customer.email.to_string();
            c.updated_at = now;
            c.profile = Some(p);
        }
        for e in w.enrollments.into_values() {
            mem.save_enrollment(e);
        }
        for (key, timer) in w.timers {
            mem.set_timer(key, timer);
        }
        let mut written = 0;
        for m in w.emails {
            let key = m.job.idempotency_key.clone();
            if mem.outbox_keys.contains(&key) {
                continue;
            }
            mem.next_id += 1;
            let id = mem.next_id;
            let j = m.job;
            let row = Queued {
                id,
                idempotency_key: j.idempotency_key,
                customer_id: j.customer_id,
                sequence: j.sequence,
                step: j.step,
                template: j.template,
                category: j.category,
                status: OutboxStatus::Pending,
                attempts: 0,
                retries: 0,
                not_before: j.due_at,
                due_at: j.due_at,
                context: m.context,
            };
            if let Some(reason) = m.skip {
                skipped.push((key.clone(), id, reason));
            }
            mem.outbox_keys.insert(&key);
            mem.enqueue(id, &row.customer_id, row.not_before);
            mem.outbox.insert(
                id,
                OutboxRec {
                    row,
                    created_at: now,
                    lease_until: None,
                    claimed_by: None,
                    sent_at: None,
                    message_id: None,
                    last_error: None,
                },
            );
            written += 1;
        }
        for (email, reason) in w.suppress {
            mem.suppressions.entry(email).or_insert((reason, now));
        }
        if !mem.lean {
            for j in w.journal {
                mem.customers
                    .entry(j.customer_id.clone())
                    .or_default()
                    .journal
                    .push(j);
            }
        }
        mem.skip_written(skipped, now);
        Ok(written)
    }

    async fn outbox_state(&mut self, id: i64) -> Result<Option<(OutboxStatus, i64)>> {
        Ok(self
            .mem
            .outbox
            .get(&id)
            .map(|r| (r.row.status, r.row.attempts)))
    }

    async fn sent_history(&mut self, customer_id: &str, except: i64) -> Result<Vec<Sent>> {
        Ok(self
            .mem
            .customers
            .get(customer_id)
            .into_iter()
            .flat_map(|c| &c.sent)
            .filter(|(id, _)| *id != except)
            .map(|(_, s)| *s)
            .collect())
    }

    async fn suppression(&mut self, email: &str) -> Result<Option<String>> {
        Ok(self
            .mem
            .suppressions
            .get(&super::address_key(email))
            .or_else(|| self.mem.suppressions.get(email))
            .or_else(|| self.mem.suppressions.get(&super::address_hash(email)))
            .map(|(reason, _)| reason.clone()))
    }

    async fn transition(
        &mut self,
        row: &Queued,
        to: &Transition<'_>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let mem = &mut *self.mem;
        let Some(rec) = mem.outbox.get_mut(&row.id) else {
            return Ok(false);
        };
        let from_sending_only = matches!(
            to,
            Transition::Sent { .. } | Transition::Retry { .. } | Transition::Failed { .. }
        );
        if rec.row.attempts != row.attempts
            || (from_sending_only && rec.row.status != OutboxStatus::Sending)
        {
            return Ok(false);
        }
        let before = (rec.row.status, rec.row.not_before);
        let customer = rec.row.customer_id.clone();
        let category = rec.row.category;
        match to {
            Transition::Sending {
                lease_until,
                tracked,
            } => {
                rec.row.status = OutboxStatus::Sending;
                rec.sent_at = Some(now);
                rec.lease_until = Some(*lease_until);
                let key = rec.row.idempotency_key.clone();
                let engaged = mem
                    .activity
                    .iter()
                    .any(|a| !a.machine && a.idempotency_key == key)
                    || mem.opened.contains(&key);
                let list = mem.sent_mut(&customer);
                list.retain(|(id, _)| *id != row.id);
                list.push((
                    row.id,
                    Sent {
                        at: now,
                        category,
                        opened: match (engaged, *tracked) {
                            (true, _) => Some(true),
                            (false, true) => Some(false),
                            (false, false) => None,
                        },
                    },
                ));
            }
            Transition::Defer { until } => {
                rec.row.not_before = *until;
                rec.lease_until = None;
            }
            Transition::Skip { reason } => {
                rec.row.status = OutboxStatus::Skipped;
                rec.last_error = Some(reason.to_string());
                rec.lease_until = None;
                // A row skipped after it was marked `sending` (too large) no
                // longer counts toward caps, as in SQL.
                mem.sent_mut(&customer).retain(|(id, _)| *id != row.id);
            }
            Transition::Sent { message_id } => {
                rec.row.status = OutboxStatus::Sent;
                rec.message_id = Some(message_id.to_string());
                rec.last_error = None;
                rec.lease_until = None;
            }
            Transition::Retry { at, error, counted } => {
                rec.row.status = OutboxStatus::Pending;
                rec.row.not_before = *at;
                rec.row.retries += i64::from(*counted);
                rec.last_error = Some(error.to_string());
                rec.sent_at = None;
                rec.lease_until = None;
                mem.sent_mut(&customer).retain(|(id, _)| *id != row.id);
            }
            Transition::Failed { error } => {
                rec.row.status = OutboxStatus::Failed;
                rec.last_error = Some(error.to_string());
                rec.lease_until = None;
                mem.sent_mut(&customer).retain(|(id, _)| *id != row.id);
            }
        }
        mem.requeue(row.id, before);
        Ok(true)
    }

    async fn log_delivery(
        &mut self,
        row: &Queued,
        now: DateTime<Utc>,
        outcome: Outcome,
        detail: &str,
        message_id: Option<&str>,
    ) -> Result<()> {
        if !self.mem.lean {
            let view = DeliveryView {
                outbox_id: row.id,
                idempotency_key: row.idempotency_key.clone(),
                attempt: row.attempts,
                at: now,
                outcome,
                detail: detail.to_string(),
            };
            let message_id = message_id.map(str::to_string);
            self.mem.deliveries.push((view, message_id));
        }
        Ok(())
    }

    async fn unsent_emails(&mut self, customer_id: &str) -> Result<Vec<Queued>> {
        let mem = &*self.mem;
        Ok(mem
            .queued_of
            .get(customer_id)
            .into_iter()
            .flatten()
            .map(|(_, id)| mem.outbox[id].row.clone())
            .collect())
    }

    async fn remove_suppression(
        &mut self,
        email: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<String>> {
        let mem = &mut *self.mem;
        let key = address_key(email);
        let stored = if mem.suppressions.contains_key(&key) {
            key
        } else if mem.suppressions.contains_key(email) {
            email.to_string()
        } else {
            return Ok(None);
        };
        let (was, _) = mem.suppressions.remove(&stored).expect("found above");
        let id = mem.suppression_log.len() as i64 + 1;
        mem.suppression_log.push(SuppressionChange {
            id,
            email: stored,
            action: SuppressionAction::Removed,
            reason: reason.to_string(),
            previous_reason: Some(was.clone()),
            at: now,
        });
        Ok(Some(was))
    }

    async fn requeue_failed(&mut self, id: i64, detail: &str, now: DateTime<Utc>) -> Result<bool> {
        let mem = &mut *self.mem;
        let Some(rec) = mem.outbox.get_mut(&id) else {
            return Ok(false);
        };
        // An erased customer's email has nothing left to render.
        if rec.row.status != OutboxStatus::Failed || rec.row.customer_id.starts_with("erased:") {
            return Ok(false);
        }
        let before = (rec.row.status, rec.row.not_before);
        rec.row.status = OutboxStatus::Pending;
        rec.row.not_before = now;
        rec.row.due_at = now;
        rec.row.retries = 0;
        rec.lease_until = None;
        rec.claimed_by = None;
        rec.sent_at = None;
        let row = rec.row.clone();
        mem.requeue(id, before);
        self.log_delivery(&row, now, Outcome::Retry, detail, None)
            .await?;
        Ok(true)
    }

    async fn erase_customer(
        &mut self,
        customer_id: &str,
        keep: &HashSet<String>,
        addresses: &[String],
        now: DateTime<Utc>,
    ) -> Result<Erased> {
        let mem = &mut *self.mem;
        let to = super::tombstone();
        let mut erased = Erased::default();
        let mut known: BTreeSet<String> = addresses.iter().cloned().collect();
        mem.addresses_of(customer_id, &mut known);
        for t in mem.timers_of(customer_id) {
            mem.set_timer((t.customer_id, t.sequence), None);
        }
        if let Some(rec) = mem.customers.remove(customer_id) {
            for ix in &mut mem.fact_index {
                ix.update(
                    customer_id,
                    rec.profile.as_ref().map(|p| &p.ledger.facts),
                    None,
                );
            }
            erased.profile = true;
            erased.journal = rec.journal.len() as u64;
            // The batch's events after the erasure stay the customer's.
            let recent: Vec<Recorded> = rec
                .recent
                .into_iter()
                .filter(|e| keep.contains(&e.id))
                .collect();
            let received: Vec<ReceivedEvent> = rec
                .received
                .into_iter()
                .filter(|e| keep.contains(&e.event.id))
                .collect();
            if !recent.is_empty() || !received.is_empty() {
                let c = mem.customers.entry(customer_id.to_string()).or_default();
                c.recent = recent;
                c.received = received;
            }
            let mut keys: BTreeSet<String> = rec.all.into_iter().collect();
            keys.extend(rec.active);
            keys.extend(rec.finished.iter().cloned());
            for key in keys {
                let new_key = super::rekey(&key, customer_id, &to);
                let compacted = match mem.enrollments.remove(&key) {
                    Some(e) => {
                        if let Some(w) = e.state.wake_at() {
                            mem.due.remove(&(w, key.clone()));
                        }
                        Compacted::of(&e.state)
                    }
                    None => match mem.compacted.remove(&key) {
                        Some(c) => c,
                        None => {
                            erased.enrollments += 1;
                            continue;
                        }
                    },
                };
                let status = match compacted.status {
                    Status::Active => Status::Exited,
                    s => s,
                };
                mem.compacted.insert(
                    new_key,
                    Compacted {
                        customer_id: to.clone(),
                        status,
                        updated_at: now,
                        ..compacted
                    },
                );
                erased.enrollments += 1;
            }
        }
        for (id, k) in mem.kept_events.iter_mut() {
            if k.customer_id == customer_id && !keep.contains(id) {
                k.customer_id = to.clone();
                k.event = None;
                erased.events += 1;
            }
        }
        // Out of the claim queue: nothing of theirs is due any more.
        if let Some(rows) = mem.queued_of.remove(customer_id) {
            for r in rows {
                mem.queue.remove(&r);
            }
        }
        let logged = mem.deliveries.len();
        let mut emails: Vec<i64> = mem
            .outbox
            .values()
            .filter(|r| r.row.customer_id == customer_id)
            .map(|r| r.row.id)
            .collect();
        emails.sort();
        for id in &emails {
            let rec = mem.outbox.get_mut(id).expect("listed above");
            let new_key = super::rekey(&rec.row.idempotency_key, customer_id, &to);
            mem.outbox_keys.remove(&rec.row.idempotency_key);
            mem.outbox_keys.insert(&new_key);
            // A person's open that retention kept (the sunset rule's).
            if mem.opened.remove(&rec.row.idempotency_key) {
                mem.opened.insert(new_key.clone());
            }
            rec.row.idempotency_key = new_key.clone();
            rec.row.customer_id = to.clone();
            rec.row.context = nobodys(&to);
            rec.lease_until = None;
            rec.claimed_by = None;
            erased.emails += 1;
            if matches!(
                rec.row.status,
                OutboxStatus::Pending | OutboxStatus::Sending
            ) {
                rec.row.status = OutboxStatus::Skipped;
                rec.row.attempts += 1;
                rec.last_error = Some(super::ERASED.to_string());
                erased.stopped += 1;
                let view = DeliveryView {
                    outbox_id: *id,
                    idempotency_key: new_key,
                    attempt: rec.row.attempts,
                    at: now,
                    outcome: Outcome::Skipped,
                    detail: super::ERASED.to_string(),
                };
                if !mem.lean {
                    mem.deliveries.push((view, None));
                }
            } else {
                rec.last_error = rec.last_error.as_deref().map(super::scrub_addresses);
            }
        }
        let emails: HashSet<i64> = emails.into_iter().collect();
        for (d, _) in mem.deliveries[..logged].iter_mut() {
            if emails.contains(&d.outbox_id) {
                d.idempotency_key = super::rekey(&d.idempotency_key, customer_id, &to);
                d.detail = super::scrub_addresses(&d.detail);
                erased.deliveries += 1;
            }
        }
        for a in mem.activity.iter_mut() {
            if a.customer_id == customer_id {
                a.customer_id = to.clone();
                a.idempotency_key = super::rekey(&a.idempotency_key, customer_id, &to);
                a.url = None;
                erased.activity += 1;
            }
        }
        for address in &known {
            let hash = super::address_hash(address);
            for spelled in [super::address_key(address), address.clone()] {
                if let Some((reason, since)) = mem.suppressions.remove(&spelled) {
                    mem.suppressions
                        .entry(hash.clone())
                        .or_insert_with(|| (super::scrub_addresses(&reason), since));
                    erased.suppressions += 1;
                }
                // What operators did to the entry names the address too.
                for change in mem
                    .suppression_log
                    .iter_mut()
                    .filter(|c| c.email == spelled)
                {
                    change.email = hash.clone();
                    // An operator's reason is their own words about the customer.
                    change.reason = super::ERASED_TEXT.to_string();
                    change.previous_reason = change
                        .previous_reason
                        .as_deref()
                        .map(super::scrub_addresses);
                }
            }
        }
        let before = mem.dead_letters.len();
        mem.dead_letters
            .retain(|l| !names(&l.letter, customer_id, &known));
        erased.dead_letters = (before - mem.dead_letters.len()) as u64;
        mem.rebuild_dead_letter_ids();
        Ok(erased)
    }

    async fn log_erasure(
        &mut self,
        customer_id: &str,
        how: &Erasure<'_>,
        erased: &Erased,
    ) -> Result<()> {
        self.mem.erasures.push(ErasureLog {
            customer_id: customer_id.to_string(),
            erased_at: how.at,
            source: how.source.to_string(),
            event_id: how.event_id.map(str::to_string),
            summary: erased.clone(),
        });
        Ok(())
    }

    async fn commit(self) -> Result<()> {
        Ok(())
    }
}

impl Store for MemStore {
    type Tx = MemTx;

    async fn migrate(&self) -> Result<()> {
        Ok(())
    }

    async fn ready(&self) -> Result<()> {
        Ok(())
    }

    async fn begin(&self) -> Result<MemTx> {
        Ok(MemTx {
            mem: self.inner.clone().lock_owned().await,
        })
    }

    async fn next_wake(&self) -> Result<Option<DateTime<Utc>>> {
        let mem = self.inner.lock().await;
        let timer = mem.timers_due.first().map(|(t, _, _)| *t);
        Ok(mem
            .due
            .first()
            .map(|(w, _)| *w)
            .into_iter()
            .chain(timer)
            .min())
    }

    async fn claim_outbox(
        &self,
        now: DateTime<Utc>,
        lease: chrono::Duration,
        limit: i64,
        by: &Claimer,
    ) -> Result<Vec<Queued>> {
        let stale_before = now
            .checked_sub_signed(by.stale_after)
            .unwrap_or(DateTime::UNIX_EPOCH);
        let mut mem = self.inner.lock().await;
        let mem = &mut *mem;
        let mut out = Vec::new();
        let view = ClaimView {
            now,
            stale_before,
            instances: &mem.instances,
        };
        for &(not_before, id) in &mem.queue {
            if out.len() as i64 >= limit {
                break;
            }
            if not_before > now {
                // A row being sent was due when claimed: past this, nothing is.
                break;
            }
            let rec = &mem.outbox[&id];
            if view.held(rec) {
                continue;
            }
            let theirs = &mem.queued_of[&rec.row.customer_id];
            if view.waits((not_before, id), theirs, &mem.outbox) {
                continue;
            }
            let rec = mem.outbox.get_mut(&id).expect("indexed");
            rec.lease_until = Some(now + lease);
            rec.claimed_by = Some(by.instance.clone());
            rec.row.attempts += 1;
            out.push(rec.row.clone());
        }
        Ok(out)
    }

    async fn heartbeat(
        &self,
        instance: &str,
        _about: &str,
        _started_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let mut mem = self.inner.lock().await;
        mem.instances.insert(instance.to_string(), now);
        Ok(())
    }

    async fn retire(&self, instance: &str) -> Result<()> {
        let mut mem = self.inner.lock().await;
        mem.instances.remove(instance);
        for rec in mem.outbox.values_mut() {
            if rec.claimed_by.as_deref() == Some(instance)
                && rec.row.status == OutboxStatus::Pending
            {
                rec.lease_until = None;
            }
        }
        Ok(())
    }

    async fn next_outbox(&self) -> Result<Option<DateTime<Utc>>> {
        let mem = self.inner.lock().await;
        Ok(mem
            .queue
            .iter()
            .find(|(_, id)| {
                let rec = &mem.outbox[id];
                rec.row.status == OutboxStatus::Pending && rec.lease_until.is_none()
            })
            .map(|(t, _)| *t))
    }

    async fn keep_dead_letters(&self, letters: &[DeadLetter], now: DateTime<Utc>) -> Result<()> {
        let mut mem = self.inner.lock().await;
        let mem = &mut *mem;
        for (identity, letter, count) in count_dead_letters(letters) {
            match mem.dead_letter_ids.get(&identity) {
                Some(&i) => {
                    let kept = &mut mem.dead_letters[i];
                    kept.count += count;
                    kept.last_seen_at = now;
                    kept.letter.origin = letter.origin;
                }
                None => {
                    mem.dead_letter_ids.insert(identity, mem.dead_letters.len());
                    mem.dead_letters.push(StoredDeadLetter {
                        letter,
                        count,
                        first_seen_at: now,
                        last_seen_at: now,
                    });
                }
            }
        }
        Ok(())
    }

    async fn setting(&self, key: &str) -> Result<Option<String>> {
        Ok(self.inner.lock().await.settings.get(key).cloned())
    }

    async fn emailed(&self, customer_id: &str, at: DateTime<Utc>) -> Result<()> {
        let mut mem = self.inner.lock().await;
        let mem = &mut *mem;
        if let Some(p) = mem
            .customers
            .get_mut(customer_id)
            .and_then(|c| c.profile.as_mut())
        {
            let p = Arc::make_mut(p);
            let before: Vec<_> = mem
                .fact_index
                .iter()
                .map(|ix| ix.fact.of(&p.ledger.facts))
                .collect();
            crate::engine::facts::emailed(&mut p.ledger.facts, at);
            for (ix, old) in mem.fact_index.iter_mut().zip(before) {
                let new = ix.fact.of(&p.ledger.facts);
                ix.moved(customer_id, Some(old), Some(new));
            }
        }
        Ok(())
    }

    async fn put_setting(&self, key: &str, value: &str) -> Result<()> {
        let mut mem = self.inner.lock().await;
        mem.settings.insert(key.to_string(), value.to_string());
        Ok(())
    }

    async fn pick_customers(
        &self,
        after: &str,
        limit: i64,
        pick: &(dyn Fn(Option<&Profile>) -> bool + Sync),
    ) -> Result<Picked> {
        use std::ops::Bound::{Excluded, Unbounded};
        let mem = self.inner.lock().await;
        let mut out = Picked::default();
        let page = mem
            .customers
            .range::<str, _>((Excluded(after), Unbounded))
            .take(usize::try_from(limit).unwrap_or(0));
        let mut last = None;
        for (id, c) in page {
            out.read += 1;
            if pick(c.profile.as_deref()) {
                out.ids.push(id.clone());
            }
            last = Some(id);
        }
        out.last = last.cloned();
        Ok(out)
    }

    async fn pick_customers_within(
        &self,
        range: &FactRange,
        after: &str,
        limit: i64,
        pick: &(dyn Fn(Option<&Profile>) -> bool + Sync),
    ) -> Result<Picked> {
        use std::ops::Bound::{Excluded, Included, Unbounded};
        let mut mem = self.inner.lock().await;
        let mem = &mut *mem;
        let i = match mem.fact_index.iter().position(|ix| ix.fact == range.fact) {
            Some(i) => i,
            None => {
                let mut ix = FactIndex {
                    fact: range.fact,
                    at: BTreeSet::new(),
                    without: BTreeSet::new(),
                };
                for (id, c) in &mem.customers {
                    ix.update(id, None, c.profile.as_ref().map(|p| &p.ledger.facts));
                }
                mem.fact_index.push(ix);
                mem.fact_index.len() - 1
            }
        };
        let ix = &mem.fact_index[i];
        let start = match range.from {
            Included(t) | Excluded(t) => Included((t, String::new())),
            Unbounded => Unbounded,
        };
        let mut ids: Vec<&String> = ix
            .at
            .range((start, Unbounded))
            .skip_while(|(t, _)| matches!(range.from, Excluded(from) if *t == from))
            .take_while(|(t, _)| match range.to {
                Included(to) => *t <= to,
                Excluded(to) => *t < to,
                Unbounded => true,
            })
            .map(|(_, id)| id)
            .filter(|id| id.as_str() > after)
            .collect();
        if !range.present {
            ids.extend(ix.without.range::<str, _>((Excluded(after), Unbounded)));
        }
        let limit = usize::try_from(limit).unwrap_or(0);
        if ids.len() > limit {
            if limit == 0 {
                ids.clear();
            } else {
                ids.select_nth_unstable(limit - 1);
                ids.truncate(limit);
            }
        }
        ids.sort_unstable();
        let mut out = Picked::default();
        for id in &ids {
            out.read += 1;
            if pick(mem.customers.get(*id).and_then(|c| c.profile.as_deref())) {
                out.ids.push((*id).clone());
            }
        }
        out.last = ids.last().map(|id| (*id).clone());
        Ok(out)
    }

    async fn enrollments_held(&self, keys: &[(String, String)]) -> Result<HashSet<String>> {
        let mem = self.inner.lock().await;
        Ok(keys
            .iter()
            .filter(|(customer, key)| {
                mem.enrollments.contains_key(key)
                    || mem
                        .customers
                        .get(customer)
                        .is_some_and(|c| c.finished.contains(key))
            })
            .map(|(_, key)| key.clone())
            .collect())
    }

    async fn init_setting(&self, key: &str, value: &str) -> Result<String> {
        let mut mem = self.inner.lock().await;
        Ok(mem
            .settings
            .entry(key.to_string())
            .or_insert_with(|| value.to_string())
            .clone())
    }

    async fn sent_at(&self, idempotency_key: &str) -> Result<Option<DateTime<Utc>>> {
        let mem = self.inner.lock().await;
        Ok(mem
            .outbox
            .values()
            .find(|r| r.row.idempotency_key == idempotency_key)
            .and_then(|r| r.sent_at))
    }

    async fn record_activity(&self, a: &Activity) -> Result<()> {
        let mut mem = self.inner.lock().await;
        let mem = &mut *mem;
        if !a.machine {
            // A person opened or clicked it: the email counts as opened.
            let id = mem
                .outbox
                .values()
                .find(|r| r.row.idempotency_key == a.idempotency_key)
                .map(|r| r.row.id);
            if let (Some(id), Some(c)) = (id, mem.customers.get_mut(&a.customer_id)) {
                for (sent_id, s) in c.sent.iter_mut() {
                    if *sent_id == id {
                        s.opened = Some(true);
                    }
                }
            }
        }
        mem.activity.push(a.clone());
        Ok(())
    }

    async fn activity(&self, customer_id: &str) -> Result<Vec<Activity>> {
        let mem = self.inner.lock().await;
        let mut out: Vec<Activity> = mem
            .activity
            .iter()
            .filter(|a| a.customer_id == customer_id)
            .cloned()
            .collect();
        out.sort_by_key(|a| a.at);
        Ok(out)
    }

    async fn recipient_of_message(&self, message_id: &str) -> Result<Option<(String, String)>> {
        let mem = self.inner.lock().await;
        Ok(mem
            .outbox
            .values()
            .find(|r| r.message_id.as_deref() == Some(message_id))
            .and_then(|r| {
                let c = mem.customers.get(&r.row.customer_id)?;
                let email = c.profile.as_ref()?.customer.email.to_string();
                Some((r.row.customer_id.clone(), email))
            }))
    }

    async fn customers_with_address(&self, address: &str) -> Result<Vec<(String, String)>> {
        let mem = self.inner.lock().await;
        let found: BTreeMap<&String, String> = mem
            .customers
            .iter()
            .filter_map(|(id, c)| Some((id, c.profile.as_ref()?.customer.email.to_string())))
            .filter(|(_, email)| email.eq_ignore_ascii_case(address))
            .collect();
        Ok(found
            .into_iter()
            .map(|(id, email)| (id.clone(), email))
            .collect())
    }

    async fn suppress_address(&self, email: &str, reason: &str, now: DateTime<Utc>) -> Result<()> {
        let mut mem = self.inner.lock().await;
        mem.suppressions
            .entry(super::address_key(email))
            .or_insert_with(|| (reason.to_string(), now));
        Ok(())
    }

    async fn outbox(&self) -> Result<Vec<OutboxView>> {
        let mem = self.inner.lock().await;
        let mut rows: Vec<OutboxView> = mem.outbox.values().map(view_of).collect();
        rows.sort_by_key(|r| r.id);
        Ok(rows)
    }

    async fn deliveries(&self) -> Result<Vec<DeliveryView>> {
        let mem = self.inner.lock().await;
        Ok(mem.deliveries.iter().map(|(d, _)| d.clone()).collect())
    }

    async fn delivery_log(&self, filter: &DeliveryFilter) -> Result<Vec<DeliveryEntry>> {
        let mem = self.inner.lock().await;
        let limit = usize::try_from(filter.page_size()).unwrap_or(usize::MAX);
        let entries = mem
            .deliveries
            .iter()
            .enumerate()
            .rev()
            .filter_map(|(i, (d, mid))| {
                let row = &mem.outbox.get(&d.outbox_id)?.row;
                let address = mem
                    .customers
                    .get(&row.customer_id)
                    .and_then(|c| c.profile.as_ref())
                    .map(|p| p.customer.email.to_string())
                    .unwrap_or_default();
                Some(DeliveryEntry {
                    id: (i + 1 + mem.deliveries_purged) as i64,
                    at: d.at,
                    outbox_id: d.outbox_id,
                    idempotency_key: d.idempotency_key.clone(),
                    customer_id: row.customer_id.clone(),
                    address,
                    sequence: row.sequence.clone(),
                    step: row.step.clone(),
                    template: row.template.clone(),
                    attempt: d.attempt,
                    outcome: d.outcome,
                    detail: d.detail.clone(),
                    message_id: mid.clone(),
                })
            });
        Ok(entries.filter(|e| filter.admits(e)).take(limit).collect())
    }

    async fn dead_letters(&self) -> Result<Vec<StoredDeadLetter>> {
        Ok(self.inner.lock().await.dead_letters.clone())
    }

    async fn enrollments_of(&self, customer_id: &str) -> Result<Vec<Enrollment>> {
        let mem = self.inner.lock().await;
        let Some(c) = mem.customers.get(customer_id) else {
            return Ok(Vec::new());
        };
        let keys = if mem.lean { &c.active } else { &c.all };
        let mut out: Vec<Enrollment> = keys
            .iter()
            .filter_map(|k| mem.enrollments.get(k).map(|r| r.state.clone()))
            .collect();
        out.sort_by(|a, b| (a.started_at, &a.key).cmp(&(b.started_at, &b.key)));
        Ok(out)
    }

    async fn journey(&self, customer_id: &str) -> Result<JourneyRows> {
        let deliveries = super::customer_deliveries(self, customer_id).await?;
        let enrollments = super::latest(self.enrollments_of(customer_id).await?);
        let activity = super::latest(self.activity(customer_id).await?);
        let mem = self.inner.lock().await;
        let (events, journal) = match mem.customers.get(customer_id) {
            Some(c) => {
                let mut events = c.received.clone();
                // As the databases read them.
                events.sort_by(|a, b| {
                    (a.event.occurred_at, &a.event.id).cmp(&(b.event.occurred_at, &b.event.id))
                });
                (super::latest(events), super::latest(c.journal.clone()))
            }
            None => Default::default(),
        };
        let mut emails: Vec<EmailRow> = mem
            .outbox
            .values()
            .filter(|r| r.row.customer_id == customer_id)
            .map(|r| EmailRow {
                view: view_of(r),
                created_at: r.created_at,
            })
            .collect();
        emails.sort_by_key(|m| m.view.id);
        let dead_letters = mem
            .dead_letters
            .iter()
            .filter(|d| d.letter.customer_id().as_deref() == Some(customer_id))
            .cloned()
            .collect();
        Ok(JourneyRows {
            events,
            journal,
            enrollments,
            emails: super::latest(emails),
            deliveries,
            activity,
            dead_letters: super::latest(dead_letters),
        })
    }

    async fn customer(&self, id: &str) -> Result<Option<StoredCustomer>> {
        let mem = self.inner.lock().await;
        Ok(mem.customers.get(id).map(|c| StoredCustomer {
            id: id.to_string(),
            email: c.email.clone(),
            profile: c.profile.as_deref().cloned(),
            updated_at: c.updated_at,
        }))
    }

    async fn email_counts(&self, customer_id: &str) -> Result<Vec<(OutboxStatus, i64)>> {
        let mem = self.inner.lock().await;
        let mut counts: BTreeMap<&str, (OutboxStatus, i64)> = BTreeMap::new();
        for r in mem.outbox.values() {
            if r.row.customer_id == customer_id {
                counts
                    .entry(r.row.status.as_str())
                    .or_insert((r.row.status, 0))
                    .1 += 1;
            }
        }
        Ok(counts.into_values().collect())
    }

    async fn suppressions(&self, f: &SuppressionFilter) -> Result<Vec<SuppressionEntry>> {
        let mem = self.inner.lock().await;
        let limit = usize::try_from(f.page_size()).unwrap_or(usize::MAX);
        Ok(mem
            .suppressions
            .iter()
            .filter(|(email, _)| f.email.as_ref().is_none_or(|e| e == *email))
            .filter(|(email, _)| f.after.as_ref().is_none_or(|a| *email > a))
            .take(limit)
            .map(|(email, (reason, at))| SuppressionEntry {
                email: email.clone(),
                reason: reason.clone(),
                created_at: *at,
            })
            .collect())
    }

    async fn suppression_log(
        &self,
        email: Option<&str>,
        limit: i64,
    ) -> Result<Vec<SuppressionChange>> {
        let mem = self.inner.lock().await;
        let limit = usize::try_from(limit.clamp(1, DeliveryFilter::MAX_LIMIT)).unwrap_or(1);
        Ok(mem
            .suppression_log
            .iter()
            .rev()
            .filter(|c| email.is_none_or(|e| c.email == e))
            .take(limit)
            .cloned()
            .collect())
    }

    async fn add_suppression(&self, email: &str, reason: &str, now: DateTime<Utc>) -> Result<bool> {
        let mut mem = self.inner.lock().await;
        let key = address_key(email);
        if mem.suppressions.contains_key(&key) {
            return Ok(false);
        }
        mem.suppressions
            .insert(key.clone(), (reason.to_string(), now));
        let id = mem.suppression_log.len() as i64 + 1;
        mem.suppression_log.push(SuppressionChange {
            id,
            email: key,
            action: SuppressionAction::Added,
            reason: reason.to_string(),
            previous_reason: None,
            at: now,
        });
        Ok(true)
    }

    async fn revise_dead_letter(&self, letter: &DeadLetter, reason: Option<&str>) -> Result<bool> {
        let mut mem = self.inner.lock().await;
        let mem = &mut *mem;
        let Some(&i) = mem.dead_letter_ids.get(&letter.identity()) else {
            return Ok(false);
        };
        let revised = match reason {
            Some(r) if r == letter.reason => return Ok(true),
            Some(r) => Some(DeadLetter {
                reason: r.to_string(),
                ..letter.clone()
            }),
            None => None,
        };
        let kept = mem.dead_letters.remove(i);
        if let Some(revised) = revised {
            match mem.dead_letter_ids.get(&revised.identity()) {
                Some(&j) => {
                    let j = if j > i { j - 1 } else { j };
                    mem.dead_letters[j].count += kept.count;
                }
                None => mem.dead_letters.insert(
                    i,
                    StoredDeadLetter {
                        letter: revised,
                        ..kept
                    },
                ),
            }
        }
        mem.dead_letter_ids = mem
            .dead_letters
            .iter()
            .enumerate()
            .map(|(i, l)| (l.letter.identity(), i))
            .collect();
        Ok(true)
    }

    async fn enrollment_counts(&self, sequence: &str) -> Result<Vec<StepCount>> {
        let mem = self.inner.lock().await;
        let mut counts: HashMap<(Option<String>, u8), StepCount> = HashMap::new();
        for r in mem.enrollments.values() {
            let e = &r.state;
            if e.sequence != sequence {
                continue;
            }
            counts
                .entry((e.step.clone(), e.status as u8))
                .or_insert_with(|| StepCount {
                    step: e.step.clone(),
                    status: e.status,
                    count: 0,
                })
                .count += 1;
        }
        let mut out: Vec<StepCount> = counts.into_values().collect();
        super::sort_step_counts(&mut out);
        Ok(out)
    }

    async fn enrollments_at(
        &self,
        sequence: &str,
        step: &str,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Enrollment>> {
        let mem = self.inner.lock().await;
        let limit = usize::try_from(limit.clamp(1, DeliveryFilter::MAX_LIMIT)).unwrap_or(1);
        let mut found: Vec<&Enrollment> = mem
            .enrollments
            .values()
            .map(|r| &r.state)
            .filter(|e| e.sequence == sequence && e.step.as_deref() == Some(step))
            .filter(|e| after.is_none_or(|a| e.key.as_str() > a))
            .collect();
        found.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(found.into_iter().take(limit).cloned().collect())
    }

    async fn delivery_series(
        &self,
        span: Span,
        bucket: Bucket,
    ) -> Result<Vec<SeriesPoint<Outcome>>> {
        let mem = self.inner.lock().await;
        let mut counts: BTreeMap<(DateTime<Utc>, &str), i64> = BTreeMap::new();
        for (d, _) in mem.deliveries.iter().filter(|(d, _)| span.contains(d.at)) {
            *counts
                .entry((bucket.floor(d.at), d.outcome.as_str()))
                .or_default() += 1;
        }
        counts
            .into_iter()
            .map(|((at, o), count)| {
                Ok(SeriesPoint {
                    at,
                    key: parse_stored("delivery outcome", o, Outcome::parse)?,
                    count,
                })
            })
            .collect()
    }

    async fn event_series(
        &self,
        kind: &str,
        span: Span,
        bucket: Bucket,
    ) -> Result<Vec<SeriesPoint<()>>> {
        let mem = self.inner.lock().await;
        let mut counts: BTreeMap<DateTime<Utc>, i64> = BTreeMap::new();
        for (_, r) in mem
            .recorded(kind)
            .filter(|(_, r)| span.contains(r.occurred_at))
        {
            *counts.entry(bucket.floor(r.occurred_at)).or_default() += 1;
        }
        Ok(counts
            .into_iter()
            .map(|(at, count)| SeriesPoint { at, key: (), count })
            .collect())
    }

    async fn outbox_depth(&self) -> Result<Vec<(OutboxStatus, i64)>> {
        let mem = self.inner.lock().await;
        let mut counts: BTreeMap<&str, (OutboxStatus, i64)> = BTreeMap::new();
        for r in mem.outbox.values() {
            counts
                .entry(r.row.status.as_str())
                .or_insert((r.row.status, 0))
                .1 += 1;
        }
        Ok(counts.into_values().collect())
    }

    async fn step_counts(&self, span: Span) -> Result<Vec<StepCounts>> {
        let mem = self.inner.lock().await;
        let dealt: HashSet<i64> = mem
            .deliveries
            .iter()
            .filter(|(d, _)| span.contains(d.at))
            .map(|(d, _)| d.outbox_id)
            .collect();
        let person = |kind: Option<ActivityKind>| -> HashSet<&str> {
            mem.activity
                .iter()
                .filter(|a| !a.machine && kind.is_none_or(|k| a.kind == k))
                .map(|a| a.idempotency_key.as_str())
                .collect()
        };
        let (opened, clicked) = (person(None), person(Some(ActivityKind::Click)));
        let mut out: BTreeMap<(&str, &str, &str), StepCounts> = BTreeMap::new();
        for r in mem.outbox.values() {
            let held = matches!(r.row.status, OutboxStatus::Pending | OutboxStatus::Sending);
            if !span.contains(r.created_at) || !(held || dealt.contains(&r.row.id)) {
                continue;
            }
            let q = &r.row;
            let c = out
                .entry((&q.sequence, &q.step, &q.template))
                .or_insert_with(|| StepCounts {
                    sequence: q.sequence.clone(),
                    step: q.step.clone(),
                    template: q.template.clone(),
                    entered: 0,
                    emailed: 0,
                    opened: 0,
                    clicked: 0,
                });
            let key = q.idempotency_key.as_str();
            c.entered += 1;
            c.emailed += i64::from(q.status == OutboxStatus::Sent);
            c.opened += i64::from(opened.contains(key));
            c.clicked += i64::from(clicked.contains(key));
        }
        Ok(out.into_values().collect())
    }

    async fn placed_orders(
        &self,
        span: Span,
        touched_since: DateTime<Utc>,
    ) -> Result<Vec<PlacedOrder>> {
        let mem = self.inner.lock().await;
        let by_key = mem.outbox_by_key();
        let touched: HashSet<&str> = mem
            .activity
            .iter()
            .filter(|a| a.at >= touched_since && a.at < span.until)
            .filter_map(|a| by_key.get(a.idempotency_key.as_str()))
            .map(|r| r.row.customer_id.as_str())
            .collect();
        let mut out = Vec::new();
        for (customer, r) in mem.recorded(ORDER_PLACED) {
            if !span.contains(r.occurred_at) || !touched.contains(customer.as_str()) {
                continue;
            }
            let order = r.event().and_then(|e| e.order.clone());
            let repeat = mem.customers[customer]
                .recent
                .iter()
                .any(|e| e.kind == ORDER_PLACED && e.occurred_at < r.occurred_at);
            out.push(PlacedOrder {
                event_id: r.id.clone(),
                customer_id: customer.clone(),
                order_id: order
                    .as_ref()
                    .map_or_else(|| r.id.clone(), |o| o.id.clone()),
                at: r.occurred_at,
                total: order.as_ref().and_then(|o| o.total.as_ref()).map(|m| m.0),
                currency: order.and_then(|o| o.currency),
                repeat,
            });
        }
        out.sort_by(|a, b| (a.at, &a.event_id).cmp(&(b.at, &b.event_id)));
        Ok(out)
    }

    async fn touches(&self, span: Span, touched_since: DateTime<Utc>) -> Result<Vec<Touch>> {
        let mem = self.inner.lock().await;
        let buyers = mem.buyers(span);
        let by_key = mem.outbox_by_key();
        let mut out: Vec<Touch> = mem
            .activity
            .iter()
            .filter(|a| a.at >= touched_since && a.at < span.until)
            .filter_map(|a| {
                let row = &by_key.get(a.idempotency_key.as_str())?.row;
                buyers.contains(&row.customer_id).then(|| Touch {
                    customer_id: row.customer_id.clone(),
                    at: a.at,
                    kind: a.kind,
                    machine: a.machine,
                    sequence: row.sequence.clone(),
                    step: row.step.clone(),
                    template: row.template.clone(),
                })
            })
            .collect();
        // Stable: the same instant keeps the order recorded.
        out.sort_by_key(|t| t.at);
        Ok(out)
    }

    async fn customers_ordering(&self, span: Span) -> Result<i64> {
        Ok(self.inner.lock().await.buyers(span).len() as i64)
    }

    async fn period_customers(&self, span: Span) -> Result<PeriodCustomers> {
        let mem = self.inner.lock().await;
        let mut orders: HashMap<&String, HashSet<String>> = HashMap::new();
        for (c, r) in mem
            .recorded(ORDER_PLACED)
            .filter(|(_, r)| span.contains(r.occurred_at))
        {
            orders.entry(c).or_default().insert(order_id(r));
        }
        let mut out = PeriodCustomers::default();
        for (c, ids) in orders {
            out.ordered += 1;
            out.repeat += i64::from(ids.len() >= 2);
            let before = mem.customers[c]
                .recent
                .iter()
                .any(|e| e.kind == ORDER_PLACED && e.occurred_at < span.since);
            out.new += i64::from(!before);
        }
        Ok(out)
    }

    async fn event_count(&self) -> Result<i64> {
        Ok(self.inner.lock().await.events.len() as i64)
    }

    async fn enrollment_totals(&self) -> Result<Vec<(String, Status, i64)>> {
        let mem = self.inner.lock().await;
        let mut counts: BTreeMap<(&str, &'static str), (Status, i64)> = BTreeMap::new();
        for rec in mem.enrollments.values() {
            let e = &rec.state;
            let key = (e.sequence.as_str(), super::status_name(e.status));
            counts.entry(key).or_insert((e.status, 0)).1 += 1;
        }
        Ok(counts
            .into_iter()
            .map(|((sequence, _), (status, n))| (sequence.to_string(), status, n))
            .collect())
    }

    async fn outbox_queue(&self, now: DateTime<Utc>) -> Result<Vec<QueueDepth>> {
        let mem = self.inner.lock().await;
        let mut by: BTreeMap<&'static str, QueueDepth> = BTreeMap::new();
        for (_, id) in &mem.queue {
            let row = &mem.outbox[id].row;
            let d = by.entry(row.status.as_str()).or_insert(QueueDepth {
                status: row.status,
                rows: 0,
                due: 0,
                oldest: None,
            });
            d.rows += 1;
            d.due += i64::from(row.not_before <= now);
            d.oldest = Some(d.oldest.map_or(row.not_before, |o| o.min(row.not_before)));
        }
        Ok(by.into_values().collect())
    }

    async fn active_enrollments(&self) -> Result<i64> {
        let mem = self.inner.lock().await;
        Ok(mem
            .customers
            .values()
            .map(|c| c.active.len())
            .sum::<usize>() as i64)
    }

    async fn erasures(&self, customer_id: &str) -> Result<Vec<ErasureLog>> {
        let mem = self.inner.lock().await;
        Ok(mem
            .erasures
            .iter()
            .filter(|e| e.customer_id == customer_id)
            .cloned()
            .collect())
    }

    async fn export_customer(&self, customer_id: &str) -> Result<CustomerExport> {
        let mem = self.inner.lock().await;
        let mut out = CustomerExport {
            customer_id: customer_id.to_string(),
            ..CustomerExport::default()
        };
        let mut known = BTreeSet::new();
        mem.addresses_of(customer_id, &mut known);
        if let Some(p) = mem
            .customers
            .get(customer_id)
            .and_then(|c| c.profile.as_ref())
        {
            out.profile = Some(serde_json::to_value(p)?);
        }
        for (id, k) in &mem.kept_events {
            if k.customer_id != customer_id {
                continue;
            }
            out.events.push(ExportedEvent {
                id: id.clone(),
                kind: k.event.as_ref().map(|e| e.kind.clone()).unwrap_or_default(),
                occurred_at: k.occurred_at,
                received_at: k.received_at,
                source: k.source.clone(),
                payload: serde_json::to_value(k.event.as_deref())?,
            });
        }
        out.events
            .sort_by(|a, b| (a.occurred_at, &a.id).cmp(&(b.occurred_at, &b.id)));
        for (key, r) in &mem.enrollments {
            if r.customer_id == customer_id {
                let mut e = Compacted::of(&r.state).export(key);
                e.state = Some(serde_json::to_value(&r.state)?);
                out.enrollments.push(e);
            }
        }
        for (key, c) in &mem.compacted {
            if c.customer_id == customer_id {
                out.enrollments.push(c.export(key));
            }
        }
        out.enrollments
            .sort_by(|a, b| (a.started_at, &a.key).cmp(&(b.started_at, &b.key)));
        let mut ids: Vec<i64> = Vec::new();
        for r in mem.outbox.values() {
            if r.row.customer_id != customer_id {
                continue;
            }
            ids.push(r.row.id);
            out.outbox.push(ExportedEmail {
                id: r.row.id,
                idempotency_key: r.row.idempotency_key.clone(),
                sequence: r.row.sequence.clone(),
                step: r.row.step.clone(),
                template: r.row.template.clone(),
                category: r.row.category.as_str().to_string(),
                status: r.row.status.as_str().to_string(),
                attempts: r.row.attempts,
                not_before: r.row.not_before,
                sent_at: r.sent_at,
                message_id: r.message_id.clone(),
                last_error: r.last_error.clone(),
                context: Some(serde_json::to_value(&*r.row.context)?),
            });
        }
        out.outbox.sort_by_key(|e| e.id);
        out.deliveries = mem
            .deliveries
            .iter()
            .filter(|(d, _)| ids.contains(&d.outbox_id))
            .map(|(d, _)| d.clone())
            .collect();
        out.activity = mem
            .activity
            .iter()
            .filter(|a| a.customer_id == customer_id)
            .cloned()
            .collect();
        out.activity.sort_by_key(|a| a.at);
        for address in &known {
            for spelled in [
                super::address_key(address),
                address.clone(),
                super::address_hash(address),
            ] {
                if let Some((reason, since)) = mem.suppressions.get(&spelled) {
                    let entry = ExportedSuppression {
                        address: spelled,
                        reason: reason.clone(),
                        created_at: Some(*since),
                    };
                    if !out.suppressions.contains(&entry) {
                        out.suppressions.push(entry);
                    }
                }
            }
        }
        out.dead_letters = mem
            .dead_letters
            .iter()
            .filter(|l| names(&l.letter, customer_id, &known))
            .cloned()
            .collect();
        out.erasures = mem
            .erasures
            .iter()
            .filter(|e| e.customer_id == customer_id)
            .cloned()
            .collect();
        out.journal = mem
            .customers
            .get(customer_id)
            .map(|c| super::latest(c.journal.clone()))
            .unwrap_or_default();
        Ok(out)
    }

    async fn purge(
        &self,
        what: Purge,
        before: DateTime<Utc>,
        _after: &After,
        limit: i64,
    ) -> Result<PurgeStep> {
        let mut mem = self.inner.lock().await;
        let mem = &mut *mem;
        let limit = usize::try_from(limit).unwrap_or(0);
        // What is purged is gone: each batch starts at the front again.
        let changed = match what {
            Purge::Events => {
                let old: Vec<String> = mem
                    .kept_events
                    .iter()
                    .filter(|(_, k)| k.received_at < before && k.occurred_at < before)
                    .map(|(id, _)| id.clone())
                    .take(limit)
                    .collect();
                for id in &old {
                    let k = mem.kept_events.remove(id).expect("listed above");
                    mem.events.remove(id);
                    if let Some(c) = mem.customers.get_mut(&k.customer_id) {
                        c.recent.retain(|e| e.id != *id);
                        c.received.retain(|e| e.event.id != *id);
                    }
                }
                old.len()
            }
            Purge::Deliveries => {
                let n = mem
                    .deliveries
                    .iter()
                    .take(limit)
                    .take_while(|(d, _)| d.at < before)
                    .count();
                mem.deliveries.drain(..n);
                mem.deliveries_purged += n;
                n
            }
            Purge::Activity => {
                let mut n = 0;
                let mut kept = Vec::with_capacity(mem.activity.len());
                for a in std::mem::take(&mut mem.activity) {
                    if n < limit && a.at < before {
                        n += 1;
                        if !a.machine {
                            mem.opened.insert(a.idempotency_key);
                        }
                    } else {
                        kept.push(a);
                    }
                }
                mem.activity = kept;
                n
            }
            Purge::DeadLetters => {
                let mut n = 0;
                mem.dead_letters.retain(|l| {
                    let old = n < limit && l.last_seen_at < before;
                    n += usize::from(old);
                    !old
                });
                mem.rebuild_dead_letter_ids();
                n
            }
            Purge::Enrollments => {
                let old: Vec<String> = mem
                    .enrollments
                    .iter()
                    .filter(|(_, r)| !r.state.is_active() && r.state.updated_at < before)
                    .map(|(k, _)| k.clone())
                    .take(limit)
                    .collect();
                for key in &old {
                    let r = mem.enrollments.remove(key).expect("listed above");
                    mem.compacted.insert(key.clone(), Compacted::of(&r.state));
                }
                old.len()
            }
            Purge::Journal => {
                let mut n = 0;
                for c in mem.customers.values_mut() {
                    c.journal.retain(|e| {
                        let old = n < limit && e.at < before;
                        n += usize::from(old);
                        !old
                    });
                }
                n
            }
        };
        Ok(PurgeStep {
            changed: changed as u64,
            next: (changed >= limit && limit > 0).then_some(After::Start),
        })
    }

    async fn take_lease(
        &self,
        key: &str,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool> {
        let mut mem = self.inner.lock().await;
        let free = mem
            .settings
            .get(key)
            .is_none_or(|held| super::lease_free(held, holder, now));
        if free {
            mem.settings
                .insert(key.to_string(), format!("{} {holder}", until.to_rfc3339()));
        }
        Ok(free)
    }
}
