//! The event schema shops publish, parsed and validated once at the boundary.
//!
//! Everything downstream works with [`Event`], which cannot hold an invalid
//! email address, a float for money or an unknown time zone.

use std::fmt;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Event types the shipped sequences and the service understand. Other types
/// are accepted (a shop may publish its own) but `validate` warns when a
/// sequence names one that is not listed here.
pub const KNOWN_TYPES: &[&str] = &[
    "order.placed",
    "order.cancelled",
    "order.refunded",
    "shipment.shipped",
    "shipment.delayed",
    "shipment.delivered",
    "review.submitted",
    "customer.updated",
    "customer.unsubscribed",
    "email.bounced",
    "email.complained",
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub occurred_at: DateTime<Utc>,
    pub customer: Customer,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<Order>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipment: Option<Shipment>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<Review>,
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub data: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Customer {
    pub id: String,
    pub email: EmailAddress,
    #[serde(default)]
    pub first_name: Option<String>,
    #[serde(default)]
    pub locale: Option<String>,
    #[serde(default)]
    pub timezone: Option<Tz>,
    #[serde(default)]
    pub marketing_consent: Option<bool>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub attributes: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    pub id: String,
    #[serde(default)]
    pub number: Option<String>,
    #[serde(default)]
    pub placed_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default)]
    pub total: Option<Money>,
    #[serde(default)]
    pub items: Vec<Item>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub sku: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default = "one")]
    pub quantity: u32,
    #[serde(default)]
    pub unit_price: Option<Money>,
    #[serde(default)]
    pub replenish_every_days: Option<u32>,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shipment {
    pub id: String,
    #[serde(default)]
    pub carrier: Option<String>,
    #[serde(default)]
    pub tracking_number: Option<String>,
    #[serde(default)]
    pub tracking_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Review {
    #[serde(default)]
    pub rating: Option<u8>,
}

impl Order {
    /// The smallest replenishment interval among the order's items, if any
    /// item has one: when the customer is likely to run out first.
    pub fn replenish_every_days(&self) -> Option<u32> {
        self.items
            .iter()
            .filter_map(|i| i.replenish_every_days)
            .min()
    }
}

/// A decimal amount of money. Parsed only from a JSON string (`"129.90"`):
/// a JSON number would already have passed through a float.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Money(pub Decimal);

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Money;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("money as a decimal string such as \"129.90\"")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Money, E> {
                s.parse::<Decimal>()
                    .map(Money)
                    .map_err(|_| E::custom(format!("{s:?} is not a decimal amount")))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Money, E> {
                Err(E::custom(format!(
                    "money must be a decimal string such as \"{v}\", not a JSON number"
                )))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Money, E> {
                self.visit_f64(v as f64)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Money, E> {
                self.visit_f64(v as f64)
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An address that has one `@`, something on both sides and no whitespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct EmailAddress(String);

impl EmailAddress {
    pub fn parse(s: &str) -> Result<Self, String> {
        let trimmed = s.trim();
        let ok = match trimmed.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && !domain.is_empty()
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !trimmed.chars().any(|c| c.is_whitespace() || c.is_control())
                    && !trimmed.contains(['<', '>', ',', ';'])
            }
            None => false,
        };
        if ok {
            Ok(Self(trimmed.to_string()))
        } else {
            Err(format!("{s:?} is not an email address"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for EmailAddress {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        EmailAddress::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why an event was rejected: the field path (`customer.email`) and what is wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct EventError {
    pub message: String,
}

impl Event {
    /// Parses and validates one event from JSON text.
    pub fn parse(text: &str) -> Result<Event, EventError> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let event: Event = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let msg = strip_position(&inner.to_string());
            let message = if path == "." || path.is_empty() {
                msg
            } else {
                format!("{path}: {msg}")
            };
            EventError { message }
        })?;
        event.check()?;
        Ok(event)
    }

    fn check(&self) -> Result<(), EventError> {
        let fail = |m: &str| {
            Err(EventError {
                message: m.to_string(),
            })
        };
        if self.id.trim().is_empty() {
            return fail("id: must not be empty");
        }
        if !is_event_type(&self.kind) {
            return fail("type: must look like \"order.placed\" (lowercase words joined by a dot)");
        }
        if self.customer.id.trim().is_empty() {
            return fail("customer.id: must not be empty");
        }
        let needs_order = self.kind.starts_with("order.")
            || self.kind.starts_with("shipment.")
            || self.kind.starts_with("review.");
        match &self.order {
            None if needs_order => {
                return fail(&format!(
                    "order: a {} event must carry its order",
                    self.kind
                ));
            }
            Some(o) if o.id.trim().is_empty() => return fail("order.id: must not be empty"),
            _ => {}
        }
        if self.kind.starts_with("shipment.") && self.shipment.is_none() {
            return fail(&format!(
                "shipment: a {} event must carry its shipment",
                self.kind
            ));
        }
        if let Some(cur) = self.order.as_ref().and_then(|o| o.currency.as_deref())
            && (cur.len() != 3 || !cur.chars().all(|c| c.is_ascii_uppercase()))
        {
            return fail(&format!(
                "order.currency: {cur:?} is not an ISO 4217 code such as \"EUR\""
            ));
        }
        if let Some(rating) = self.review.as_ref().and_then(|r| r.rating)
            && !(1..=5).contains(&rating)
        {
            return fail(&format!("review.rating: {rating} is not between 1 and 5"));
        }
        Ok(())
    }

    pub fn order_id(&self) -> Option<&str> {
        self.order.as_ref().map(|o| o.id.as_str())
    }
}

fn is_event_type(s: &str) -> bool {
    let mut parts = s.split('.');
    let ok = |p: Option<&str>| {
        p.is_some_and(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
    };
    ok(parts.next()) && ok(parts.next()) && parts.next().is_none()
}

/// serde_json appends " at line 1 column 42" to its messages; the field path
/// says more to a shop than a column in a one-line message does.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"id":"e1","type":"order.placed","occurred_at":"2026-11-20T10:00:00Z",
        "customer":{"id":"c1","email":"anna@example.com","timezone":"Europe/Budapest"},
        "order":{"id":"o1","currency":"EUR","total":"129.90",
                 "items":[{"sku":"A","unit_price":"129.90","replenish_every_days":30},{"sku":"B","replenish_every_days":14}]}}"#;

    #[test]
    fn parses_a_good_event() {
        let e = Event::parse(GOOD).unwrap();
        assert_eq!(e.customer.timezone, Some(chrono_tz::Europe::Budapest));
        let order = e.order.unwrap();
        assert_eq!(order.total.unwrap().0, "129.90".parse::<Decimal>().unwrap());
        assert_eq!(order.items[0].quantity, 1);
        assert_eq!(order.replenish_every_days(), Some(14));
    }

    fn error_of(text: &str) -> String {
        Event::parse(text).unwrap_err().message
    }

    #[test]
    fn money_as_a_number_is_rejected_with_its_path() {
        let bad = GOOD.replace(r#""total":"129.90""#, r#""total":129.9"#);
        let msg = error_of(&bad);
        assert!(
            msg.starts_with("order.total: money must be a decimal string"),
            "{msg}"
        );
    }

    #[test]
    fn bad_fields_name_their_path() {
        let cases = [
            (GOOD.replace("anna@example.com", "anna"), "customer.email"),
            (
                GOOD.replace("Europe/Budapest", "Mars/Olympus"),
                "customer.timezone",
            ),
            (
                GOOD.replace(r#""type":"order.placed""#, r#""type":"Order Placed""#),
                "type",
            ),
            (GOOD.replace(r#""id":"e1","#, ""), "missing field `id`"),
            (GOOD.replace("\"EUR\"", "\"euro\""), "order.currency"),
            (
                GOOD.replace("2026-11-20T10:00:00Z", "yesterday"),
                "occurred_at",
            ),
        ];
        for (text, expected) in cases {
            let msg = error_of(&text);
            assert!(msg.contains(expected), "{expected}: {msg}");
        }
    }

    #[test]
    fn shipment_events_need_their_order_and_shipment() {
        let text = r#"{"id":"e2","type":"shipment.shipped","occurred_at":"2026-11-20T10:00:00Z",
            "customer":{"id":"c1","email":"a@b.example"},"shipment":{"id":"s1"}}"#;
        assert!(error_of(text).starts_with("order:"));
    }

    #[test]
    fn not_json_is_an_error_not_a_panic() {
        assert!(!error_of("{not json").is_empty());
        assert!(!error_of("").is_empty());
    }
}
