//! An enrollment: one customer's walk through one sequence, as data.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

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
}

impl Context {
    pub fn of_event(e: &Event) -> Self {
        Self {
            customer: e.customer.clone(),
            order: e.order.clone(),
            shipment: e.shipment.clone(),
            review: e.review.clone(),
        }
    }

    /// Takes in what `e` carries.
    pub fn absorb(&mut self, e: &Event) {
        self.customer = e.customer.clone();
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
}

impl Enrollment {
    /// When the scheduler must wake this enrollment, if ever.
    pub fn wake_at(&self) -> Option<DateTime<Utc>> {
        match (&self.status, &self.waiting) {
            (Status::Active, Waiting::Time { until }) => Some(*until),
            (Status::Active, Waiting::Event { until, .. }) => Some(*until),
            _ => None,
        }
    }

    pub fn is_active(&self) -> bool {
        self.status == Status::Active
    }

    /// Whether `event` concerns this enrollment: same customer, and same order
    /// when both carry one, unless the rule's scope is the whole customer.
    pub fn correlates(&self, event: &Event, scope: Scope) -> bool {
        if event.customer.id != self.customer_id {
            return false;
        }
        match (scope, &self.order_id, event.order_id()) {
            (Scope::Customer, _, _) => true,
            (Scope::Order, Some(mine), Some(theirs)) => mine == theirs,
            (Scope::Order, _, _) => true,
        }
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
