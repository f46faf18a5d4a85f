//! One customer as a decision sees it, and what a decision asks to change.
//! The store loads a [`CustomerState`] under the customer's lock, the
//! dispatcher turns an input into [`Changes`], and the store writes them.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::dispatch::Note;
use super::journal::Entry;
use super::profile::Profile;
use super::state::{Context, EmailJob, Enrollment};
use crate::event::Event;

/// What the store knows of one customer, loaded under the customer's lock.
#[derive(Debug, Default, Clone)]
pub struct CustomerState {
    /// Shared: a store kept in memory hands it out without copying, and a
    /// decision that changes it makes its own ([`Arc::make_mut`]).
    pub profile: Option<Arc<Profile>>,
    /// The customer's active enrollments (and any started meanwhile).
    pub enrollments: Vec<Enrollment>,
    /// Keys of the customer's finished enrollments: they stop a second
    /// `once_*` entry, and their state is not needed. Shared, so that a
    /// store kept in memory hands it out without copying.
    pub finished: Arc<HashSet<String>>,
    /// When each of the finished enrollments started: with the active ones,
    /// what the per-customer ceiling counts.
    pub finished_starts: Arc<Vec<DateTime<Utc>>>,
    /// The customer's recent events of the types a sequence may look back
    /// for ([`Catalog::looked_back`]), oldest first (by
    /// [`Mark`](super::state::Mark) order). The store loads those of the
    /// last [`LOOK_BACK`]; the dispatcher adds each event it applies.
    ///
    /// [`Catalog::looked_back`]: crate::sequence::model::Catalog::looked_back
    pub recent: Vec<Recorded>,
    /// The customer's date-trigger timers, one per dated sequence at most.
    pub timers: Vec<Timer>,
}

/// When a date trigger fires next for one customer (see
/// `engine::calendar`): the scheduler wakes the customer then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timer {
    pub customer_id: String,
    pub sequence: String,
    pub fire_at: DateTime<Utc>,
    /// The occurrence it fires for (`date:2027`): the enrollment's origin.
    pub occurrence: String,
}

/// A timer to set (or, with `timer: None`, to drop) for `sequence`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimerWrite {
    pub customer_id: String,
    pub sequence: String,
    pub timer: Option<Timer>,
}

/// A recorded event as the look-back holds it: what picks the candidates
/// (type, time, id), and the event itself, read from its stored JSON only
/// when it is a candidate (most recorded events never are: they were taken
/// in when they arrived). Shared: a load hands out the memory store's
/// without copying them.
#[derive(Debug, Clone)]
pub struct Recorded(Arc<RecordedEvent>);

#[derive(Debug)]
pub struct RecordedEvent {
    pub id: String,
    pub kind: String,
    pub occurred_at: DateTime<Utc>,
    body: Body,
}

#[derive(Debug)]
enum Body {
    Event(Arc<Event>),
    Json(String),
}

impl std::ops::Deref for Recorded {
    type Target = RecordedEvent;

    fn deref(&self) -> &RecordedEvent {
        &self.0
    }
}

impl Recorded {
    pub fn of(event: Arc<Event>) -> Self {
        Self(Arc::new(RecordedEvent {
            id: event.id.clone(),
            kind: event.kind.clone(),
            occurred_at: event.occurred_at,
            body: Body::Event(event),
        }))
    }

    /// An event as stored: its JSON is read when needed.
    pub fn stored(id: String, kind: String, occurred_at: DateTime<Utc>, json: String) -> Self {
        Self(Arc::new(RecordedEvent {
            id,
            kind,
            occurred_at,
            body: Body::Json(json),
        }))
    }
}

impl RecordedEvent {
    /// The event; `None` if its stored JSON does not read as one (it was
    /// written by this program, so only a damaged row gets here; it is
    /// passed over).
    pub fn event(&self) -> Option<Arc<Event>> {
        match &self.body {
            Body::Event(e) => Some(e.clone()),
            Body::Json(text) => serde_json::from_str(text).ok().map(Arc::new),
        }
    }

    /// Whether it may move an enrollment whose last event is `mark` (see
    /// [`super::state::Mark::admits`]).
    pub fn admitted_by(&self, mark: &super::state::Mark) -> bool {
        mark.admits(&self.id, self.occurred_at)
    }
}

/// How far back a customer's recorded events count for a `wait_for` or an
/// `exit_when` reached later: an event that arrives up to this long before
/// its turn (out of order) is still taken in.
pub const LOOK_BACK: chrono::TimeDelta = chrono::TimeDelta::days(7);

/// At most this many recent events of one customer are loaded (the latest).
pub const LOOK_BACK_EVENTS: usize = 200;

/// An email to enqueue, with the context it is rendered from.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEmail {
    pub job: EmailJob,
    pub context: Arc<Context>,
    /// Recorded as skipped with this reason, never sent: an email a history
    /// import replays (it was due before the import).
    pub skip: Option<String>,
}

/// What one input changed for one customer.
#[derive(Debug, Default, Clone)]
pub struct Changes {
    /// The profile to save, when the input carried customer details.
    pub profile: Option<Arc<Profile>>,
    /// Indices into [`CustomerState::enrollments`] to save (new ones appended).
    pub enrollments: BTreeSet<usize>,
    pub emails: Vec<NewEmail>,
    /// An address to suppress, with the reason.
    pub suppress: Option<(String, String)>,
    /// What the operator should know (exits, failed conditions).
    pub notes: Vec<Note>,
    /// What was decided and why, for `aftercare explain` (written with the
    /// rest).
    pub journal: Vec<Entry>,
    /// Date-trigger timers to set or drop, in order.
    pub timers: Vec<TimerWrite>,
}

impl Changes {
    /// Takes in what a later decision on the same customer changed.
    pub fn merge(&mut self, later: Changes) {
        if later.profile.is_some() {
            self.profile = later.profile;
        }
        self.enrollments.extend(later.enrollments);
        self.emails.extend(later.emails);
        if later.suppress.is_some() {
            self.suppress = later.suppress;
        }
        self.notes.extend(later.notes);
        self.journal.extend(later.journal);
        self.timers.extend(later.timers);
    }
}

/// Which of `n` shards a customer belongs to, the same in every process and
/// on every machine: work cut this way never puts one customer in two
/// places (the Kafka consumer's parallel transactions, `simulate`'s threads).
pub fn shard_of(customer_id: &str, n: usize) -> usize {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(customer_id.as_bytes());
    (u64::from_be_bytes(h[..8].try_into().expect("8 bytes")) % n.max(1) as u64) as usize
}
