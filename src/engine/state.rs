//! An enrollment: one customer's walk through one sequence, as data.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::facts::Facts;
use crate::event::{Customer, Event, Order, Review, Shipment};
use crate::sequence::condition::Bindings;
use crate::sequence::model::{Category, EnrollMode, Scope};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Active,
    Completed,
    Exited,
}

/// What an active enrollment is waiting for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Waiting {
    /// Not waiting: finished, or about to run.
    Nothing,
    /// A `wait` or `wait_until`: go on at `until`.
    Time { until: DateTime<Utc> },
    /// A `wait_for`: go on when the event comes, or time out at `until`.
    Event { event: String, until: DateTime<Utc> },
}

/// What the sequence knows: the trigger's parts, replaced by each event it
/// consumes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Context {
    pub customer: Customer,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<Order>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipment: Option<Shipment>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<Review>,
    /// The customer's facts as the store knows them (`customer.orders_count`
    /// and the rest): kept up to date like `customer`.
    #[serde(default, skip_serializing_if = "Facts::is_empty")]
    pub facts: Facts,
}

/// A context read in place, its customer and facts possibly another's (the
/// profile as stored now): what a template's data is built from, without
/// copying any of it.
#[derive(Debug, Clone, Copy)]
pub struct ContextView<'a> {
    pub customer: &'a Customer,
    pub order: Option<&'a Order>,
    pub shipment: Option<&'a Shipment>,
    pub review: Option<&'a Review>,
    pub facts: &'a Facts,
}

impl Context {
    /// This context, read in place.
    pub fn view(&self) -> ContextView<'_> {
        ContextView {
            customer: &self.customer,
            order: self.order.as_ref(),
            shipment: self.shipment.as_ref(),
            review: self.review.as_ref(),
            facts: &self.facts,
        }
    }

    pub fn of_event(e: &Event) -> Self {
        Self {
            customer: e.customer.clone(),
            order: e.order.clone(),
            shipment: e.shipment.clone(),
            review: e.review.clone(),
            facts: Facts::default(),
        }
    }

    /// The context of an enrollment `e` starts, for the customer as the
    /// store knows them (`e` may leave out what earlier events said).
    pub fn new(e: &Event, customer: &Customer, facts: &Facts) -> Self {
        Self {
            customer: customer.clone(),
            order: e.order.clone(),
            shipment: e.shipment.clone(),
            review: e.review.clone(),
            facts: facts.clone(),
        }
    }

    /// Takes in the order, shipment and review `e` carries. The customer is
    /// not taken from the event: the dispatcher keeps it the stored one.
    pub fn absorb(&mut self, e: &Event) {
        if let Some(o) = &e.order {
            // A shipment event may carry only the order id: keep what we know.
            let keep = self.order.as_ref().is_some_and(|mine| mine.id == o.id)
                && o.items.is_empty()
                && o.total.is_none();
            if !keep {
                self.order = Some(o.clone());
            }
        }
        if e.shipment.is_some() {
            self.shipment = e.shipment.clone();
        }
        if e.review.is_some() {
            self.review = e.review.clone();
        }
    }

    pub fn bindings<'a>(&'a self, event: Option<&'a Event>, now: DateTime<Utc>) -> Bindings<'a> {
        Bindings {
            customer: &self.customer,
            facts: Some(&self.facts),
            order: self.order.as_ref(),
            shipment: self.shipment.as_ref(),
            review: self.review.as_ref(),
            event,
            now,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Enrollment {
    /// Unique per sequence: `sequence/customer[/order | /event]`.
    pub key: String,
    pub sequence: String,
    /// The sequence version (content hash) last run.
    pub version: String,
    pub customer_id: String,
    pub order_id: Option<String>,
    pub status: Status,
    /// The step it stands at (waiting in it), by stable id.
    pub step: Option<String>,
    pub waiting: Waiting,
    /// Shared: emails and loads take it without copying.
    pub context: Arc<Context>,
    pub started_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_reason: Option<String>,
    /// The last event the enrollment took in (its trigger, then each event
    /// a `wait_for` took): a recorded event counts for a later `wait_for`
    /// or `exit_when` only if it comes after this one. `None` in rows from
    /// before it was kept: then `started_at` stands for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mark: Option<Mark>,
    /// Set while the enrollment is history being replayed: the (real) time
    /// of the history import that last moved it. Its wake-ups due by then
    /// are history too: they run on their own time and their emails are
    /// recorded, not sent. The scheduler catches it up [`HISTORY_SETTLE`]
    /// after the import, so that the rest of the customer's history can
    /// arrive first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<DateTime<Utc>>,
}

/// How long after a history import the scheduler waits before catching its
/// enrollments up to now (a live event for the customer catches them up at
/// once).
pub const HISTORY_SETTLE: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

/// Where an event stands in a customer's history: by when it occurred,
/// then by id (so that two events at one instant have an order).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Mark {
    pub at: DateTime<Utc>,
    pub id: String,
}

impl Mark {
    pub fn of(e: &Event) -> Self {
        Self {
            at: e.occurred_at,
            id: e.id.clone(),
        }
    }

    /// Whether `e` comes after this mark.
    pub fn before(&self, e: &Event) -> bool {
        (self.at, self.id.as_str()) < (e.occurred_at, e.id.as_str())
    }

    /// Whether an event `id` that occurred at `at` may move an enrollment
    /// whose last event is this mark: any other event that occurred after
    /// it, or less than [`CLOCK_SKEW`] before it (the systems that publish
    /// events do not share a clock).
    pub fn admits(&self, id: &str, at: DateTime<Utc>) -> bool {
        id != self.id
            && at
                .checked_add_signed(CLOCK_SKEW)
                .is_none_or(|later| later > self.at)
    }
}

/// How much earlier than an enrollment's last event another event may have
/// occurred and still move it (see [`Mark::admits`]).
pub const CLOCK_SKEW: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

impl Enrollment {
    /// When the scheduler must wake this enrollment, if ever.
    pub fn wake_at(&self) -> Option<DateTime<Utc>> {
        let until = self.until()?;
        match self.history {
            // History is caught up once the import has settled.
            Some(imported) => {
                let settled = imported
                    .checked_add_signed(HISTORY_SETTLE)
                    .unwrap_or(imported);
                Some(until.max(settled))
            }
            None => Some(until),
        }
    }

    /// When the step the enrollment waits in ends (on its own time, which
    /// for history is before the scheduler's [`Enrollment::wake_at`]).
    pub fn until(&self) -> Option<DateTime<Utc>> {
        match (&self.status, &self.waiting) {
            (Status::Active, Waiting::Time { until }) => Some(*until),
            (Status::Active, Waiting::Event { until, .. }) => Some(*until),
            _ => None,
        }
    }

    pub fn is_active(&self) -> bool {
        self.status == Status::Active
    }

    /// Whether `event` may move the enrollment: one that occurred (well)
    /// before the last event it took in cannot (a history import, a late
    /// event). Rows from before marks were kept admit every event.
    pub fn admits(&self, event: &Event) -> bool {
        self.mark
            .as_ref()
            .is_none_or(|m| m.admits(&event.id, event.occurred_at))
    }

    /// The last event the enrollment took in (see [`Enrollment::mark`]).
    pub fn mark(&self) -> Mark {
        self.mark.clone().unwrap_or_else(|| Mark {
            at: self.started_at,
            id: String::new(),
        })
    }

    /// Whether `event` concerns this enrollment: same customer, and same order
    /// when both carry one, unless the rule's scope is the whole customer.
    pub fn correlates(&self, event: &Event, scope: Scope) -> bool {
        correlates(&self.customer_id, self.order_id.as_deref(), event, scope)
    }
}

/// Whether `event` concerns an enrollment of `customer_id` (and `order_id`):
/// see [`Enrollment::correlates`].
pub fn correlates(customer_id: &str, order_id: Option<&str>, event: &Event, scope: Scope) -> bool {
    if event.customer.id != customer_id {
        return false;
    }
    match (scope, order_id, event.order_id()) {
        (Scope::Customer, _, _) => true,
        (Scope::Order, Some(mine), Some(theirs)) => mine == theirs,
        (Scope::Order, _, _) => true,
    }
}

/// The key that makes enrollment idempotent for a sequence's `enroll` mode.
/// `origin` distinguishes `every_event` enrollments: the event id, or the key
/// of the enrollment that started this one.
pub fn enrollment_key(
    sequence: &str,
    mode: EnrollMode,
    customer_id: &str,
    order_id: Option<&str>,
    origin: &str,
) -> String {
    match (mode, order_id) {
        (EnrollMode::OncePerOrder, Some(o)) => format!("{sequence}/{customer_id}/{o}"),
        (EnrollMode::OncePerOrder, None) | (EnrollMode::OncePerCustomer, _) => {
            format!("{sequence}/{customer_id}")
        }
        (EnrollMode::EveryEvent, _) if origin.len() <= MAX_ORIGIN => {
            format!("{sequence}/{customer_id}/@{origin}")
        }
        // A chain of `start`s nests each key in the next: past a few hops the
        // origin is a hash, so that a loop that waits (allowed, with a
        // warning) never grows a key past what a database index takes.
        (EnrollMode::EveryEvent, _) => {
            use sha2::{Digest, Sha256};
            let h = hex::encode(&Sha256::digest(origin.as_bytes())[..16]);
            format!("{sequence}/{customer_id}/@#{h}")
        }
    }
}

/// The longest origin written out in an `every_event` enrollment key.
const MAX_ORIGIN: usize = 64;

/// One email the engine wants sent. The idempotency key is unique per
/// enrollment and step, so the same decision taken twice enqueues once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmailJob {
    pub idempotency_key: String,
    pub enrollment_key: String,
    pub customer_id: String,
    pub sequence: String,
    pub step: String,
    pub template: String,
    pub category: Category,
    pub due_at: DateTime<Utc>,
}
