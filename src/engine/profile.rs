//! What the service knows of a customer across events: the latest details,
//! consent and suppression. Pure: the store keeps it, this updates it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::event::{Customer, Event};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub customer: Customer,
    /// Hard bounce or complaint: no more mail of any kind.
    pub suppressed: bool,
    /// Set by `customer.unsubscribed`; only a later explicit consent clears it.
    pub unsubscribed: bool,
    /// Set by `customer.unsubscribed` with `data.scope: "promo"` ("no more
    /// offers"): promo mail stops, value mail goes on. Cleared as
    /// `unsubscribed` is.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub promo_unsubscribed: bool,
    /// When the event that last changed the profile occurred: an older event
    /// cannot undo what it said (see [`update`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_of: Option<DateTime<Utc>>,
}

impl Profile {
    pub fn marketing_consent(&self) -> bool {
        !self.unsubscribed && self.customer.marketing_consent.unwrap_or(false)
    }

    /// Whether promo mail may go: marketing consent and no "no more offers".
    pub fn promo_consent(&self) -> bool {
        self.marketing_consent() && !self.promo_unsubscribed
    }
}

/// What a `customer.unsubscribed` event withdraws (`data.scope`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnsubscribeScope {
    /// "No more offers": promo mail only.
    Promo,
    /// "No more marketing": value and promo mail (the default).
    Marketing,
}

impl UnsubscribeScope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Promo => "promo",
            Self::Marketing => "marketing",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "promo" => Some(Self::Promo),
            "marketing" => Some(Self::Marketing),
            _ => None,
        }
    }

    /// The scope `event` asks for: `data.scope`, `marketing` when absent
    /// (events are checked when parsed, so another value does not get here).
    pub fn of(event: &Event) -> Self {
        event
            .data
            .get("scope")
            .and_then(|v| v.as_str())
            .and_then(Self::parse)
            .unwrap_or(Self::Marketing)
    }
}

/// The profile after `event`: details the event carries replace what was
/// known; fields it leaves out keep their last value.
///
/// An event older than the last change to the profile (a late event, a
/// history import after live data) cannot undo a newer one: it only fills
/// in what is not known, and it can withdraw consent or suppress an address
/// but never give consent back or change the address.
pub fn update(existing: Option<Profile>, event: &Event) -> Profile {
    let fresh = existing.is_none();
    let mut p = existing.unwrap_or_else(|| Profile {
        customer: event.customer.clone(),
        suppressed: false,
        unsubscribed: false,
        promo_unsubscribed: false,
        as_of: None,
    });
    let newer = fresh || p.as_of.is_none_or(|t| event.occurred_at >= t);
    let before = p.clone();
    if newer {
        take_newer(&mut p, event);
    } else {
        fill_in(&mut p.customer, &event.customer);
    }
    match event.kind.as_str() {
        "customer.unsubscribed" => match UnsubscribeScope::of(event) {
            UnsubscribeScope::Promo => p.promo_unsubscribed = true,
            UnsubscribeScope::Marketing => {
                p.unsubscribed = true;
                p.customer.marketing_consent = Some(false);
            }
        },
        "email.bounced" | "email.complained" => p.suppressed = true,
        _ => {}
    }
    if newer && (fresh || p != before) {
        p.as_of = Some(event.occurred_at);
    }
    p
}

/// What a newer event says replaces what was known.
fn take_newer(p: &mut Profile, event: &Event) {
    let incoming = &event.customer;
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
            p.promo_unsubscribed = false;
        }
        c.marketing_consent = Some(consent);
    }
    if !incoming.tags.is_empty() {
        c.tags = incoming.tags.clone();
    }
    for (k, v) in &incoming.attributes {
        c.attributes.insert(k.clone(), v.clone());
    }
}

/// What an older event says counts only where nothing is known. Consent it
/// withdraws is withdrawn (the safe side); consent it gives is not taken.
fn fill_in(c: &mut Customer, old: &Customer) {
    if c.first_name.is_none() {
        c.first_name = old.first_name.clone();
    }
    if c.locale.is_none() {
        c.locale = old.locale.clone();
    }
    if c.timezone.is_none() {
        c.timezone = old.timezone;
    }
    if old.marketing_consent == Some(false) || c.marketing_consent.is_none() {
        c.marketing_consent = old.marketing_consent.or(c.marketing_consent);
    }
    if c.tags.is_empty() {
        c.tags = old.tags.clone();
    }
    for (k, v) in &old.attributes {
        c.attributes.entry(k.clone()).or_insert_with(|| v.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: &str, kind: &str, at: &str, customer: &str) -> Event {
        Event::parse(&format!(
            r#"{{"id":"{id}","type":"{kind}","occurred_at":"{at}","customer":{customer}}}"#
        ))
        .unwrap()
    }

    /// A history import after live data: the year-old consent and address
    /// do not come back over last week's unsubscribe and new address.
    #[test]
    fn an_older_event_cannot_undo_a_newer_one() {
        let live = ev(
            "u",
            "customer.unsubscribed",
            "2026-11-20T10:00:00Z",
            r#"{"id":"c","email":"new@example.com"}"#,
        );
        let p = update(None, &live);
        assert!(!p.marketing_consent());
        let old = ev(
            "o",
            "customer.updated",
            "2025-11-20T10:00:00Z",
            r#"{"id":"c","email":"old@example.com","marketing_consent":true,"locale":"hu-HU"}"#,
        );
        let p = update(Some(p), &old);
        assert!(p.unsubscribed);
        assert!(!p.marketing_consent());
        assert_eq!(p.customer.email.as_str(), "new@example.com");
        // What was not known is filled in.
        assert_eq!(p.customer.locale.as_deref(), Some("hu-HU"));
        // A newer event still decides.
        let newer = ev(
            "n",
            "customer.updated",
            "2026-11-21T10:00:00Z",
            r#"{"id":"c","email":"new@example.com","marketing_consent":true}"#,
        );
        let p = update(Some(p), &newer);
        assert!(p.marketing_consent());
    }

    /// "No more offers" stops promo only; "no more marketing" both; a later
    /// explicit consent lifts either.
    #[test]
    fn an_unsubscribe_scope_withdraws_promo_or_all_marketing() {
        let anna = r#"{"id":"c","email":"a@example.com","marketing_consent":true}"#;
        let p = update(
            None,
            &ev("1", "customer.updated", "2026-11-20T10:00:00Z", anna),
        );
        assert!(p.marketing_consent() && p.promo_consent());
        let promo = Event::parse(
            r#"{"id":"2","type":"customer.unsubscribed","occurred_at":"2026-11-20T11:00:00Z","customer":{"id":"c","email":"a@example.com"},"data":{"scope":"promo"}}"#,
        )
        .unwrap();
        let p = update(Some(p), &promo);
        assert!(p.marketing_consent(), "value mail goes on");
        assert!(!p.promo_consent());
        let all = ev(
            "3",
            "customer.unsubscribed",
            "2026-11-20T12:00:00Z",
            r#"{"id":"c","email":"a@example.com"}"#,
        );
        let p = update(Some(p), &all);
        assert!(!p.marketing_consent() && !p.promo_consent());
        let back = update(
            Some(p),
            &ev("4", "customer.updated", "2026-11-21T10:00:00Z", anna),
        );
        assert!(back.marketing_consent() && back.promo_consent());
    }

    /// An event that repeats what is known leaves the profile as it was, so
    /// that ingest writes nothing for it.
    #[test]
    fn a_repeat_changes_nothing() {
        let e = |id: &str, at: &str| {
            ev(
                id,
                "customer.updated",
                at,
                r#"{"id":"c","email":"a@example.com"}"#,
            )
        };
        let p = update(None, &e("1", "2026-11-20T10:00:00Z"));
        let q = update(Some(p.clone()), &e("2", "2026-11-21T10:00:00Z"));
        assert_eq!(p, q);
    }
}
