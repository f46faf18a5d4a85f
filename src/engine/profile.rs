//! What the service knows of a customer across events: the latest details,
//! consent and suppression. Pure: the store keeps it, this updates it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::event::{Customer, Event};
use crate::sequence::model::Ceiling;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub customer: Customer,
    /// Hard bounce or complaint: no more mail of any kind.
    pub suppressed: bool,
    /// Set by `customer.unsubscribed`; only a later explicit consent clears it.
    pub unsubscribed: bool,
    /// What the per-customer ceiling has counted in its current window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tally: Option<Tally>,
}

/// Enrollments started and emails enqueued for one customer in the window
/// that began at `since` and lasts [`Ceiling::per`]. The window is fixed (it
/// starts at the first count after the last one ended), so a customer gets at
/// most twice the ceiling in any stretch of `per`: enough to stop a runaway,
/// and one small record to keep.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Tally {
    pub since: DateTime<Utc>,
    pub enrollments: u32,
    pub emails: u32,
}

/// What the ceiling counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    Enrollment,
    Email,
}

impl Profile {
    /// Counts one more `what` at `now` if the ceiling allows it; `false`
    /// (and nothing counted) once the window's ceiling is reached.
    pub fn count(&mut self, ceiling: &Ceiling, what: Counted, now: DateTime<Utc>) -> bool {
        let fresh = Tally {
            since: now,
            enrollments: 0,
            emails: 0,
        };
        let tally = self.tally.get_or_insert(fresh);
        let ended = tally
            .since
            .checked_add_signed(ceiling.per)
            .is_none_or(|end| now >= end);
        if ended {
            *tally = fresh;
        }
        let (n, max) = match what {
            Counted::Enrollment => (&mut tally.enrollments, ceiling.enrollments),
            Counted::Email => (&mut tally.emails, ceiling.emails),
        };
        if *n >= max {
            return false;
        }
        *n += 1;
        true
    }
}

impl Profile {
    pub fn marketing_consent(&self) -> bool {
        !self.unsubscribed && self.customer.marketing_consent.unwrap_or(false)
    }
}

/// The profile after `event`: details the event carries replace what was
/// known; fields it leaves out keep their last value.
pub fn update(existing: Option<Profile>, event: &Event) -> Profile {
    let incoming = &event.customer;
    let mut p = existing.unwrap_or_else(|| Profile {
        customer: incoming.clone(),
        suppressed: false,
        unsubscribed: false,
        tally: None,
    });
    let c = &mut p.customer;
    c.email = incoming.email.clone();
    if incoming.first_name.is_some() {
        c.first_name = incoming.first_name.clone();
    }
    if incoming.locale.is_some() {
        c.locale = incoming.locale.clone();
    }
    if incoming.timezone.is_some() {
        c.timezone = incoming.timezone;
    }
    if let Some(consent) = incoming.marketing_consent {
        if consent && event.kind == "customer.updated" {
            p.unsubscribed = false;
        }
        c.marketing_consent = Some(consent);
    }
    if !incoming.tags.is_empty() {
        c.tags = incoming.tags.clone();
    }
    for (k, v) in &incoming.attributes {
        c.attributes.insert(k.clone(), v.clone());
    }
    match event.kind.as_str() {
        "customer.unsubscribed" => {
            p.unsubscribed = true;
            p.customer.marketing_consent = Some(false);
        }
        "email.bounced" | "email.complained" => p.suppressed = true,
        _ => {}
    }
    p
}
