//! What the service knows of a customer across events: the latest details,
//! consent and suppression. Pure: the store keeps it, this updates it.
//!
//! Suppression is about an address. A hard bounce or a complaint about the
//! customer's address suppresses it at once; soft bounces only when
//! [`SOFT_BOUNCES`] of them fall within [`SOFT_BOUNCE_WINDOW`] (on event
//! time, so late and history events count where they belong). A bounce or
//! complaint about another address (one the customer had before) suppresses
//! that address only ([`suppression_of`]: the store's suppression list), and
//! a new address starts clean of bounces (a complaint stays with the
//! customer).

use std::fmt;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::facts::{self, Ledger};
use crate::event::{BounceKind, Customer, EmailAddress, Event};

/// Soft bounces that suppress an address when they fall within
/// [`SOFT_BOUNCE_WINDOW`].
pub const SOFT_BOUNCES: usize = 3;
/// See [`SOFT_BOUNCES`].
pub const SOFT_BOUNCE_WINDOW: TimeDelta = TimeDelta::days(7);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub customer: Customer,
    /// Hard bounce, repeated soft bounces or complaint: no more mail of any
    /// kind to the address.
    pub suppressed: bool,
    /// Why [`Profile::suppressed`]; `None` on profiles stored before the
    /// reason was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppressed_for: Option<Suppression>,
    /// When the address's recent soft bounces occurred, oldest first: those
    /// within [`SOFT_BOUNCE_WINDOW`] of the newest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub soft_bounces: Vec<DateTime<Utc>>,
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
    /// Set by an operator (`POST /v1/admin/customers/{id}/stop`): no mail
    /// of any kind goes to the customer until an operator lifts it; events
    /// are still taken in (see `engine::operator`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<Stopped>,
    /// What the customer has done (orders, reviews, the last email): the
    /// facts conditions and templates read (see `engine::facts`).
    #[serde(default, skip_serializing_if = "Ledger::is_empty")]
    pub ledger: Ledger,
}

/// An operator's stop of all of a customer's mail ([`Profile::stopped`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stopped {
    pub reason: String,
    pub at: DateTime<Utc>,
}

/// Why an address gets no more mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Suppression {
    HardBounce,
    SoftBounces,
    Complaint,
}

impl fmt::Display for Suppression {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Suppression::HardBounce => f.write_str("hard bounce"),
            Suppression::SoftBounces => write!(
                f,
                "{SOFT_BOUNCES} soft bounces within {} days",
                SOFT_BOUNCE_WINDOW.num_days()
            ),
            Suppression::Complaint => f.write_str("complaint"),
        }
    }
}

impl Profile {
    pub fn marketing_consent(&self) -> bool {
        !self.unsubscribed && self.customer.marketing_consent.unwrap_or(false)
    }

    /// Why the address is suppressed, in words; `None` when it is not.
    pub fn suppression_reason(&self) -> Option<String> {
        if !self.suppressed {
            return None;
        }
        Some(match self.suppressed_for {
            Some(why) => why.to_string(),
            None => "bounce or complaint".to_string(),
        })
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
///
/// A bounce or complaint reports on the address it names: it never changes
/// the customer's address, and it counts toward the profile's suppression
/// only when it names the customer's address.
///
/// `existing` is left as it was: a caller compares it with the new one.
pub fn update(existing: Option<&Profile>, event: &Event) -> Profile {
    let fresh = existing.is_none();
    let mut p = existing.cloned().unwrap_or_else(|| Profile {
        customer: event.customer.clone(),
        suppressed: false,
        suppressed_for: None,
        soft_bounces: Vec::new(),
        unsubscribed: false,
        promo_unsubscribed: false,
        as_of: None,
        stopped: None,
        ledger: Ledger::default(),
    });
    let newer = fresh || p.as_of.is_none_or(|t| event.occurred_at >= t);
    if newer {
        take_newer(&mut p, event);
    } else {
        fill_in(&mut p.customer, &event.customer);
    }
    // Facts count every event once, in whatever order they arrive.
    facts::update(&mut p.ledger, event);
    match event.kind.as_str() {
        "customer.unsubscribed" => match UnsubscribeScope::of(event) {
            UnsubscribeScope::Promo => p.promo_unsubscribed = true,
            UnsubscribeScope::Marketing => {
                p.unsubscribed = true;
                p.customer.marketing_consent = Some(false);
            }
        },
        "email.complained" if same_address(&p.customer.email, &event.customer.email) => {
            suppress(&mut p, Suppression::Complaint)
        }
        "email.bounced" if same_address(&p.customer.email, &event.customer.email) => {
            match event.bounce_kind() {
                Some(BounceKind::Soft) => soft_bounce(&mut p, event.occurred_at),
                _ => suppress(&mut p, Suppression::HardBounce),
            }
        }
        _ => {}
    }
    if newer && existing.is_none_or(|before| p != *before) {
        p.as_of = Some(event.occurred_at);
    }
    p
}

/// The address `event` puts on the suppression list, with the reason kept
/// there: the address a hard bounce or complaint names (the customer's or
/// an earlier one), or the customer's address while `after` (the profile
/// after the event) is suppressed.
pub fn suppression_of(after: &Profile, event: &Event) -> Option<(String, String)> {
    let why = match (event.kind.as_str(), event.bounce_kind()) {
        ("email.complained", _) => Some(Suppression::Complaint),
        (_, Some(BounceKind::Hard)) => Some(Suppression::HardBounce),
        _ => None,
    };
    match why {
        Some(why) if !same_address(&after.customer.email, &event.customer.email) => Some((
            event.customer.email.to_string(),
            format!("{why} ({} {})", event.kind, event.id),
        )),
        _ => {
            let why = after.suppression_reason()?;
            let why = if matches!(event.kind.as_str(), "email.bounced" | "email.complained") {
                format!("{why} ({} {})", event.kind, event.id)
            } else {
                why
            };
            Some((after.customer.email.to_string(), why))
        }
    }
}

/// Addresses are compared without regard to ASCII case: bounce reports and
/// shops do not always keep it.
fn same_address(a: &EmailAddress, b: &EmailAddress) -> bool {
    a.as_str().eq_ignore_ascii_case(b.as_str())
}

fn suppress(p: &mut Profile, why: Suppression) {
    if !p.suppressed {
        p.suppressed = true;
        p.suppressed_for = Some(why);
    }
}

/// Counts a soft bounce at `at`; the address is suppressed once
/// [`SOFT_BOUNCES`] fall within [`SOFT_BOUNCE_WINDOW`]. Two reports of the
/// same instant are one bounce. Only the bounces within the window of the
/// newest are kept: an older one can no longer make a window with a newer.
fn soft_bounce(p: &mut Profile, at: DateTime<Utc>) {
    let times = &mut p.soft_bounces;
    if let Err(i) = times.binary_search(&at) {
        times.insert(i, at);
    }
    let repeated = times
        .windows(SOFT_BOUNCES)
        .any(|w| w[SOFT_BOUNCES - 1] - w[0] <= SOFT_BOUNCE_WINDOW);
    if let Some(&newest) = times.last() {
        times.retain(|t| newest - *t <= SOFT_BOUNCE_WINDOW);
    }
    // A flood of bounces within the window: the newest few are enough.
    if times.len() > 2 * SOFT_BOUNCES {
        times.drain(..times.len() - 2 * SOFT_BOUNCES);
    }
    if repeated {
        suppress(p, Suppression::SoftBounces);
    }
}

/// What a newer event says replaces what was known.
fn take_newer(p: &mut Profile, event: &Event) {
    let incoming = &event.customer;
    // A bounce or complaint reports on an address; it does not give one.
    let report = matches!(event.kind.as_str(), "email.bounced" | "email.complained");
    if !report && !same_address(&p.customer.email, &incoming.email) {
        // A new address starts without the old one's bounces; a complaint
        // is the person's, and stays.
        p.soft_bounces.clear();
        if matches!(
            p.suppressed_for,
            Some(Suppression::HardBounce | Suppression::SoftBounces)
        ) {
            p.suppressed = false;
            p.suppressed_for = None;
        }
    }
    let c = &mut p.customer;
    if !report {
        c.email = incoming.email.clone();
    }
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
        let p = update(Some(&p), &old);
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
        let p = update(Some(&p), &newer);
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
        let p = update(Some(&p), &promo);
        assert!(p.marketing_consent(), "value mail goes on");
        assert!(!p.promo_consent());
        let all = ev(
            "3",
            "customer.unsubscribed",
            "2026-11-20T12:00:00Z",
            r#"{"id":"c","email":"a@example.com"}"#,
        );
        let p = update(Some(&p), &all);
        assert!(!p.marketing_consent() && !p.promo_consent());
        let back = update(
            Some(&p),
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
        let q = update(Some(&p), &e("2", "2026-11-21T10:00:00Z"));
        assert_eq!(p, q);
    }

    fn bounce(id: &str, kind: &str, at: &str, email: &str) -> Event {
        let data = match kind {
            "complaint" => String::new(),
            k => format!(r#","data":{{"kind":"{k}"}}"#),
        };
        let ty = if kind == "complaint" {
            "email.complained"
        } else {
            "email.bounced"
        };
        Event::parse(&format!(
            r#"{{"id":"{id}","type":"{ty}","occurred_at":"{at}","customer":{{"id":"c","email":"{email}"}}{data}}}"#
        ))
        .unwrap()
    }

    fn anna() -> Profile {
        update(
            None,
            &ev(
                "p",
                "customer.updated",
                "2026-11-01T10:00:00Z",
                r#"{"id":"c","email":"anna@example.com"}"#,
            ),
        )
    }

    fn apply(p: Profile, events: &[Event]) -> Profile {
        events.iter().fold(p, |p, e| update(Some(&p), e))
    }

    #[test]
    fn a_hard_bounce_or_a_complaint_suppresses_at_once() {
        for (kind, why) in [
            ("hard", Suppression::HardBounce),
            ("complaint", Suppression::Complaint),
        ] {
            let e = bounce("b", kind, "2026-11-02T10:00:00Z", "anna@example.com");
            let p = update(Some(&anna()), &e);
            assert!(p.suppressed, "{kind}");
            assert_eq!(p.suppressed_for, Some(why));
            let (addr, reason) = suppression_of(&p, &e).unwrap();
            assert_eq!(addr, "anna@example.com");
            assert!(reason.starts_with(&why.to_string()), "{reason}");
            assert!(reason.contains(" b)"), "{reason}");
        }
        // A bounce without data.kind is a hard one.
        let e = Event::parse(
            r#"{"id":"b","type":"email.bounced","occurred_at":"2026-11-02T10:00:00Z","customer":{"id":"c","email":"ANNA@example.com"}}"#,
        )
        .unwrap();
        let p = update(Some(&anna()), &e);
        assert_eq!(p.suppressed_for, Some(Suppression::HardBounce));
        // The report does not change the address's spelling.
        assert_eq!(p.customer.email.as_str(), "anna@example.com");
    }

    #[test]
    fn soft_bounces_suppress_on_the_third_within_seven_days() {
        let s = |id: &str, at: &str| bounce(id, "soft", at, "anna@example.com");
        let p = apply(
            anna(),
            &[
                s("1", "2026-11-02T10:00:00Z"),
                s("2", "2026-11-05T10:00:00Z"),
            ],
        );
        assert!(!p.suppressed);
        assert!(suppression_of(&p, &s("2", "2026-11-05T10:00:00Z")).is_none());
        // The third, more than 7 days after the first: 2 in the window.
        let p = update(Some(&p), &s("3", "2026-11-09T10:00:01Z"));
        assert!(!p.suppressed, "{:?}", p.soft_bounces);
        assert_eq!(p.soft_bounces.len(), 2, "the first has left the window");
        // The fourth, within 7 days of the second and third.
        let e = s("4", "2026-11-10T10:00:00Z");
        let p = update(Some(&p), &e);
        assert!(p.suppressed);
        assert_eq!(p.suppressed_for, Some(Suppression::SoftBounces));
        assert_eq!(
            suppression_of(&p, &e).unwrap().1,
            "3 soft bounces within 7 days (email.bounced 4)"
        );
    }

    /// Out of order: a late soft bounce counts on its own time, and makes
    /// the third of a window; one outside every window does not.
    #[test]
    fn late_soft_bounces_count_where_they_belong() {
        let s = |id: &str, at: &str| bounce(id, "soft", at, "anna@example.com");
        let later = update(
            Some(&anna()),
            &ev(
                "u",
                "customer.updated",
                "2026-12-01T10:00:00Z",
                r#"{"id":"c","email":"anna@example.com"}"#,
            ),
        );
        let p = apply(
            later.clone(),
            &[
                s("1", "2026-11-02T10:00:00Z"),
                s("3", "2026-11-06T10:00:00Z"),
            ],
        );
        assert!(!p.suppressed);
        let p = update(Some(&p), &s("2", "2026-11-04T10:00:00Z"));
        assert!(
            p.suppressed,
            "three within 7 days, whatever the arrival order"
        );
        // The same instant twice is one bounce.
        let p = apply(
            later,
            &[
                s("1", "2026-11-02T10:00:00Z"),
                s("1b", "2026-11-02T10:00:00Z"),
                s("3", "2026-11-06T10:00:00Z"),
            ],
        );
        assert!(!p.suppressed, "{:?}", p.soft_bounces);
    }

    /// A report about an address the customer no longer has suppresses that
    /// address (the list), not the customer's new one; a new address starts
    /// clean of bounces, but not of a complaint.
    #[test]
    fn suppression_follows_the_address() {
        let moved = ev(
            "m",
            "customer.updated",
            "2026-11-03T10:00:00Z",
            r#"{"id":"c","email":"new@example.com"}"#,
        );
        let p = update(Some(&anna()), &moved);
        let late = bounce("b", "hard", "2026-11-02T10:00:00Z", "anna@example.com");
        let p = update(Some(&p), &late);
        assert!(!p.suppressed);
        assert_eq!(p.customer.email.as_str(), "new@example.com");
        assert_eq!(
            suppression_of(&p, &late).map(|s| s.0).as_deref(),
            Some("anna@example.com")
        );
        // Hard bounce on the old address first, then a new address.
        let p = apply(
            anna(),
            &[bounce(
                "b",
                "hard",
                "2026-11-02T10:00:00Z",
                "anna@example.com",
            )],
        );
        assert!(p.suppressed);
        let p = update(Some(&p), &moved);
        assert!(!p.suppressed, "a new address is not the bounced one");
        assert!(suppression_of(&p, &moved).is_none());
        // A complaint stays with the customer.
        let p = apply(
            anna(),
            &[bounce(
                "c",
                "complaint",
                "2026-11-02T10:00:00Z",
                "anna@example.com",
            )],
        );
        let p = update(Some(&p), &moved);
        assert!(p.suppressed);
        assert_eq!(
            suppression_of(&p, &moved),
            Some(("new@example.com".into(), "complaint".into()))
        );
    }

    #[test]
    fn a_bounce_kind_is_hard_or_soft() {
        let err = Event::parse(
            r#"{"id":"b","type":"email.bounced","occurred_at":"2026-11-02T10:00:00Z","customer":{"id":"c","email":"a@example.com"},"data":{"kind":"permanent"}}"#,
        )
        .unwrap_err();
        assert_eq!(
            err.message,
            r#"data.kind: "permanent" is not a bounce kind: "hard" or "soft""#
        );
    }
}
