//! Bounces and complaints reported from outside: the webhooks of the relays
//! shops send through ([`providers`]: Amazon SES via SNS, SendGrid, Postmark,
//! Mailgun) and delivery status notifications posted as raw mail ([`dsn`]).
//!
//! Pure: each parser takes the request's bytes (and for a signature, the
//! key and the time) and gives [`Notice`]s; a notice becomes an
//! `email.bounced` or `email.complained` event for each customer with the
//! address ([`Notice::event`]), with an id derived from the report, so a
//! relay that sends the same report again makes the same event (applied
//! once). `http::bounces` finds the customers and ingests the events.

pub mod dsn;
pub mod providers;

use std::fmt;

use chrono::{DateTime, Utc};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::event::{BounceKind, Event};

/// What a report says of one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    Bounce(BounceKind),
    Complaint,
}

impl Report {
    pub fn event_type(self) -> &'static str {
        match self {
            Report::Bounce(_) => "email.bounced",
            Report::Complaint => "email.complained",
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Report::Bounce(k) => write!(f, "{} bounce", k.as_str()),
            Report::Complaint => f.write_str("complaint"),
        }
    }
}

/// One bounce or complaint about one address, as a relay or a DSN reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    /// Who reported it: `ses`, `sendgrid`, `postmark`, `mailgun`, `dsn`.
    pub source: &'static str,
    /// What identifies the report at its source (with the address, the
    /// event id): the same report sent again has the same key.
    pub key: String,
    /// The address that bounced or complained, as reported.
    pub address: String,
    pub report: Report,
    /// When it happened, as reported.
    pub at: DateTime<Utc>,
    /// The Message-ID of the email it is about (`<…@…>`), when reported.
    pub message_id: Option<String>,
    /// The status code and text (`5.1.1 smtp; 550 user unknown`), the
    /// complaint's feedback type, or the relay's own classification.
    pub detail: Option<String>,
}

/// The most of a report's detail kept with its event.
pub const DETAIL_BYTES: usize = 1000;

impl Notice {
    /// The event id: the source, the kind, and a hash of the report's key,
    /// the address and the customer.
    pub fn event_id(&self, customer_id: &str) -> String {
        let mut h = Sha256::new();
        for part in [&self.key, &self.address.to_ascii_lowercase(), customer_id] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        let kind = match self.report {
            Report::Bounce(k) => k.as_str(),
            Report::Complaint => "complaint",
        };
        format!(
            "{}-{kind}-{}",
            self.source,
            hex::encode(&h.finalize()[..16])
        )
    }

    /// The event for the customer `customer_id`, whose address as the
    /// store has it is `email` (the same address, perhaps in another case).
    /// An error is the event schema's message (an address it refuses).
    pub fn event(&self, customer_id: &str, email: &str) -> Result<Event, String> {
        let mut data = serde_json::Map::new();
        if let Report::Bounce(kind) = self.report {
            data.insert("kind".into(), kind.as_str().into());
        }
        data.insert("source".into(), self.source.into());
        if let Some(m) = &self.message_id {
            data.insert("message_id".into(), cut(m).into());
        }
        if let Some(d) = &self.detail {
            data.insert("detail".into(), cut(d).into());
        }
        let event = json!({
            "id": self.event_id(customer_id),
            "type": self.report.event_type(),
            "occurred_at": self.at.to_rfc3339(),
            "customer": {"id": customer_id, "email": email},
            "data": data,
        });
        Event::parse(&event.to_string()).map_err(|e| e.message)
    }

    /// The reason kept on the suppression list for an address no customer
    /// has: `hard bounce (ses report 0100…)`.
    pub fn reason(&self) -> String {
        let what = match self.report {
            Report::Bounce(BounceKind::Hard) => "hard bounce",
            Report::Bounce(BounceKind::Soft) => "soft bounce",
            Report::Complaint => "complaint",
        };
        format!("{what} ({} report {})", self.source, cut(&self.key))
    }

    /// Whether the report alone suppresses its address.
    pub fn suppresses(&self) -> bool {
        !matches!(self.report, Report::Bounce(BounceKind::Soft))
    }
}

/// `s` cut to [`DETAIL_BYTES`] at a character boundary, without NUL.
fn cut(s: &str) -> String {
    let mut end = s.len().min(DETAIL_BYTES);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].replace('\0', "\u{fffd}")
}

/// The message id written as `<id>`, whether or not it came with brackets;
/// `None` for a blank one.
pub fn bracketed(id: &str) -> Option<String> {
    let bare = id
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim();
    (!bare.is_empty()).then(|| format!("<{bare}>"))
}

/// What a parser says of a payload it cannot read: where and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Malformed(pub String);

impl Malformed {
    pub fn at(path: impl fmt::Display, what: impl fmt::Display) -> Malformed {
        Malformed(format!("{path}: {what}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(report: Report) -> Notice {
        Notice {
            source: "ses",
            key: "feedback-1".into(),
            address: "Anna@Example.com".into(),
            report,
            at: "2026-11-20T10:00:00Z".parse().unwrap(),
            message_id: Some("<abc@shop.example>".into()),
            detail: Some("5.1.1 smtp; 550 5.1.1 user unknown".into()),
        }
    }

    #[test]
    fn a_notice_is_an_event_with_a_stable_id() {
        let n = notice(Report::Bounce(BounceKind::Hard));
        let e = n.event("c1", "anna@example.com").unwrap();
        assert_eq!(e.kind, "email.bounced");
        assert_eq!(e.bounce_kind(), Some(BounceKind::Hard));
        assert_eq!(e.customer.email.as_str(), "anna@example.com");
        assert_eq!(e.data["source"], "ses");
        assert_eq!(e.data["message_id"], "<abc@shop.example>");
        assert!(e.id.starts_with("ses-hard-"), "{}", e.id);
        // The same report again: the same id; another customer, another.
        assert_eq!(e.id, n.event("c1", "anna@example.com").unwrap().id);
        assert_ne!(e.id, n.event("c2", "anna@example.com").unwrap().id);
        let c = notice(Report::Complaint)
            .event("c1", "anna@example.com")
            .unwrap();
        assert_eq!(c.kind, "email.complained");
        assert!(!c.data.contains_key("kind"));
        let soft = notice(Report::Bounce(BounceKind::Soft));
        assert!(!soft.suppresses());
        assert_eq!(soft.reason(), "soft bounce (ses report feedback-1)");
    }

    #[test]
    fn message_ids_get_their_brackets() {
        assert_eq!(bracketed("a@b").as_deref(), Some("<a@b>"));
        assert_eq!(bracketed(" <a@b> ").as_deref(), Some("<a@b>"));
        assert_eq!(bracketed("<>"), None);
    }
}
