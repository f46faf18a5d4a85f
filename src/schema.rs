//! The event schema as JSON Schema (2020-12), generated from the types in
//! [`crate::event`] with `schemars`, so that shops can check their events
//! before sending them. Checked in as `docs/event.schema.json`; `aftercare
//! schema` prints it, and a test fails when the two differ.
//!
//! It says what the parser enforces where JSON Schema can: required fields,
//! lengths and counts from [`crate::event::limits`], ranges, patterns (no NUL,
//! not blank, `word.word` types, ISO 4217 codes, decimal strings, years 1970
//! to 9999), the time zones by name, and which types must carry an `order` or
//! a `shipment`. What it cannot say is left to the parser and docs/EVENTS.md:
//! lengths are in bytes there but in characters here (the same for ASCII),
//! the 64 KiB of `attributes` and `data`, NUL inside them, and what the mail
//! transport's address parser refuses.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde_json::{Value, json};

use crate::event::{EmailAddress, Event, Money, limits};

/// An id: not blank, no NUL.
pub const ID: &str = r"^[^\u0000]*[^\s\u0000][^\u0000]*$";
/// Any other string: no NUL.
pub const TEXT: &str = r"^[^\u0000]*$";
/// Lowercase words joined by a dot.
pub const TYPE: &str = r"^[a-z_]+\.[a-z_]+$";
pub const LOCALE: &str = r"^[A-Za-z0-9_-]+$";
pub const CURRENCY: &str = r"^[A-Z]{3}$";
/// A timestamp in the years 1970 to 9999.
pub const YEARS: &str = r"^(19[7-9][0-9]|[2-9][0-9]{3})-";
/// `http` or `https` (any case) with a host.
pub const HTTP_URL: &str = r"^[Hh][Tt][Tt][Pp][Ss]?://[^/?#\s]";
/// A decimal string within the money limit: at most 12 digits before the point.
pub const MONEY: &str = r"^[+-]?[0-9]{1,12}(\.[0-9]+)?$";
/// No whitespace or `<>,;`, one `@`, a dot in the domain.
pub const EMAIL: &str = r"^[^\s<>,;@]+@[^\s<>,;@]+\.[^\s<>,;@]+$";

/// The schema as a JSON value.
pub fn event_schema() -> Value {
    let generated = SchemaGenerator::default()
        .into_root_schema_for::<Event>()
        .to_value();
    let Value::Object(generated) = generated else {
        unreachable!("a struct's schema is an object")
    };
    // `$schema`, title and description first, for a reader of the file.
    let mut root = serde_json::Map::new();
    if let Some(draft) = generated.get("$schema") {
        root.insert("$schema".into(), draft.clone());
    }
    root.insert("title".into(), "aftercare event".into());
    root.insert(
        "description".into(),
        "One event a shop sends to aftercare: one Kafka message, one item of \
         POST /v1/events, one line of a JSON-lines file. See docs/EVENTS.md."
            .into(),
    );
    for (k, v) in generated {
        root.entry(k).or_insert(v);
    }
    // What `Event::check` asks of a type's companions.
    root.insert(
        "allOf".into(),
        json!([
            {
                "if": {"properties": {"type": {"pattern": r"^(order|shipment|review)\."}}},
                "then": {"required": ["order"], "properties": {"order": {"type": "object"}}}
            },
            {
                "if": {"properties": {"type": {"pattern": r"^shipment\."}}},
                "then": {"required": ["shipment"], "properties": {"shipment": {"type": "object"}}}
            },
            {
                "if": {"properties": {"type": {"const": "customer.unsubscribed"}}},
                "then": {"properties": {"data": {"properties": {"scope": {
                    "description": "What the customer withdraws: \"promo\" (no more offers) \
                                    or \"marketing\" (no more value or promo mail; the default)",
                    "enum": ["promo", "marketing"]
                }}}}}
            },
            {
                "if": {"properties": {"type": {"const": "email.bounced"}}},
                "then": {"properties": {"data": {"properties": {"kind": {
                    "enum": ["hard", "soft"],
                    "description": "hard: suppress the address at once; soft: only when it \
                        repeats (3 within 7 days); absent: hard"
                }}}}}
            }
        ]),
    );
    Value::Object(root)
}

/// The schema as it is checked in: pretty JSON and a final newline.
pub fn event_schema_text() -> String {
    let mut text = serde_json::to_string_pretty(&event_schema()).expect("a JSON value serializes");
    text.push('\n');
    text
}

impl JsonSchema for Money {
    fn schema_name() -> Cow<'static, str> {
        "Money".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": format!(
                "A decimal string such as \"129.90\" (never a JSON number), strictly between \
                 -{max} and {max}",
                max = limits::MONEY_UNITS
            ),
            "type": "string",
            "pattern": MONEY,
        })
    }
}

impl JsonSchema for EmailAddress {
    fn schema_name() -> Cow<'static, str> {
        "EmailAddress".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "An address the transport can send to; a Unicode domain is kept \
                            in its ASCII form, a Unicode local part is refused",
            "type": "string",
            "format": "idn-email",
            "maxLength": limits::EMAIL_BYTES,
            "pattern": EMAIL,
        })
    }
}

/// An IANA time zone, by name: the schema of `customer.timezone`.
pub struct TimeZone;

impl JsonSchema for TimeZone {
    fn schema_name() -> Cow<'static, str> {
        "TimeZone".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let names: Vec<&str> = chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name()).collect();
        json_schema!({
            "description": "An IANA time zone such as \"Europe/Budapest\"",
            "type": "string",
            "enum": names,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_rules_are_in_the_schema() {
        let s = event_schema();
        let at = |p: &str| {
            s.pointer(p)
                .unwrap_or_else(|| panic!("no {p} in the schema"))
                .clone()
        };
        assert_eq!(
            at("/required"),
            json!(["id", "type", "occurred_at", "customer"])
        );
        assert_eq!(at("/properties/id/maxLength"), json!(limits::ID_BYTES));
        assert_eq!(at("/properties/type/maxLength"), json!(limits::TYPE_BYTES));
        assert_eq!(at("/properties/type/pattern"), json!(TYPE));
        assert_eq!(at("/$defs/Customer/required"), json!(["id", "email"]));
        assert_eq!(
            at("/$defs/Order/properties/items/maxItems"),
            json!(limits::ITEMS)
        );
        assert_eq!(
            at("/$defs/Customer/properties/tags/maxItems"),
            json!(limits::TAGS)
        );
        assert_eq!(
            at("/$defs/Item/properties/replenish_every_days/maximum"),
            json!(3650)
        );
        assert_eq!(at("/$defs/Review/properties/rating/minimum"), json!(1));
        assert_eq!(at("/$defs/Money/pattern"), json!(MONEY));
        assert!(
            at("/$defs/TimeZone/enum")
                .as_array()
                .unwrap()
                .contains(&json!("Europe/Budapest"))
        );
        assert_eq!(at("/allOf/1/then/required"), json!(["shipment"]));
        assert_eq!(
            at("/allOf/2/then/properties/data/properties/scope/enum"),
            json!(["promo", "marketing"])
        );
    }
}
