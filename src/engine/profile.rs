//! What the service knows of a customer across events: the latest details,
//! consent and suppression. Pure: the store keeps it, this updates it.

use serde::{Deserialize, Serialize};

use crate::event::{Customer, Event};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub customer: Customer,
    /// Hard bounce or complaint: no more mail of any kind.
    pub suppressed: bool,
    /// Set by `customer.unsubscribed`; only a later explicit consent clears it.
    pub unsubscribed: bool,
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
