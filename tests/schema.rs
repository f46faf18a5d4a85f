//! The event schema in the repository (docs/event.schema.json) for shops to
//! validate against: it is what the code generates, it takes the shipped
//! events, it refuses what the parser refuses where JSON Schema can say so,
//! and docs/EVENTS.md names every field and type in it.

mod support;

use aftercare::event::{Event, KNOWN_TYPES};
use aftercare::schema::event_schema_text;
use serde_json::Value;
use support::event_json;

const CHECKED_IN: &str = "docs/event.schema.json";

/// Set to rewrite docs/event.schema.json from the code instead of failing.
const REWRITE: &str = "AFTERCARE_WRITE_SCHEMA";

#[test]
fn the_checked_in_schema_is_the_generated_one() {
    let generated = event_schema_text();
    if std::env::var_os(REWRITE).is_some() {
        std::fs::write(CHECKED_IN, &generated).unwrap();
    }
    let checked_in = std::fs::read_to_string(CHECKED_IN).unwrap_or_default();
    assert!(
        checked_in == generated,
        "{CHECKED_IN} is not what the event types generate. Regenerate it with \
         `{REWRITE}=1 cargo test --test schema` (or `cargo run -- schema > {CHECKED_IN}`) \
         and commit it"
    );
}

fn validator() -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(&event_schema_text()).unwrap();
    jsonschema::validator_for(&schema).expect("a valid JSON Schema")
}

#[test]
fn the_shipped_events_are_valid() {
    let v = validator();
    let text = std::fs::read_to_string("examples/events.jsonl").unwrap();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        Event::parse(line).unwrap();
        let json: Value = serde_json::from_str(line).unwrap();
        let errors: Vec<String> = v.iter_errors(&json).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "line {}: {errors:?}", i + 1);
    }
}

/// Each event here is refused by the parser and by the schema.
#[test]
fn what_the_parser_refuses_the_schema_refuses() {
    let v = validator();
    let good = event_json(
        "e1",
        "shipment.shipped",
        "c1",
        "o1",
        "2026-11-20T10:00:00Z",
        true,
    );
    assert!(v.is_valid(&serde_json::from_str(&good).unwrap()));
    let many_items = format!("[{}]", vec![r#"{"sku":"a"}"#; 1001].join(","));
    let cases: Vec<(&str, String)> = vec![
        ("money as a number", good.replace("\"129.90\"", "129.9")),
        (
            "money past the limit",
            good.replace("\"129.90\"", "\"1000000000000\""),
        ),
        ("a blank id", good.replace("\"e1\"", "\"  \"")),
        ("a long id", good.replace("\"e1\"", &format!("\"{}\"", "e".repeat(257)))),
        ("a type of words", good.replace("shipment.shipped", "Shipment Shipped")),
        ("a currency", good.replace("\"EUR\"", "\"euro\"")),
        ("a time zone", good.replace("Europe/Budapest", "Mars/Olympus")),
        ("a locale", good.replace("\"hu-HU\"", "\"../../etc\"")),
        ("an address", good.replace("c1@example.com", "anna")),
        ("a year", good.replace("2026-11-20T10:00:00Z", "1969-12-31T23:59:59Z")),
        ("a NUL", good.replace("\"Anna\"", "\"A\\u0000\"")),
        (
            "a tracking URL",
            good.replace("https://t.example/o1", "javascript:alert(1)"),
        ),
        ("a quantity", good.replace("\"quantity\":1", "\"quantity\":2000000")),
        (
            "too many items",
            good.replace(
                r#"[{"sku":"CAM-200","name":"DSLR 200","category":"camera","quantity":1,"unit_price":"129.90"}]"#,
                &many_items,
            ),
        ),
        ("a missing shipment", {
            let mut v: Value = serde_json::from_str(&good).unwrap();
            v.as_object_mut().unwrap().remove("shipment");
            v.to_string()
        }),
        ("a missing order", {
            let mut v: Value = serde_json::from_str(&good).unwrap();
            v.as_object_mut().unwrap().remove("order");
            v["type"] = "order.placed".into();
            v.to_string()
        }),
        ("a missing email", good.replace(r#""email":"c1@example.com","#, "")),
        ("a rating", good.replace(r#""shipment":"#, r#""review":{"rating":6},"shipment":"#)),
        (
            "a replenishment",
            good.replace(r#""quantity":1"#, r#""quantity":1,"replenish_every_days":0"#),
        ),
    ];
    for (what, text) in cases {
        assert_ne!(text, good, "{what}: the case changes nothing");
        assert!(Event::parse(&text).is_err(), "{what}: the parser takes it");
        let json: Value = serde_json::from_str(&text).unwrap();
        assert!(!v.is_valid(&json), "{what}: the schema takes it");
    }
}

/// Every field of the schema and every documented type is in docs/EVENTS.md.
#[test]
fn events_md_names_every_field_and_type() {
    let doc = std::fs::read_to_string("docs/EVENTS.md").unwrap();
    let schema: Value = serde_json::from_str(&event_schema_text()).unwrap();
    let mut names = Vec::new();
    let mut objects = vec![&schema];
    objects.extend(schema["$defs"].as_object().unwrap().values());
    for o in objects {
        if let Some(props) = o["properties"].as_object() {
            names.extend(props.keys().cloned());
        }
    }
    assert!(names.len() > 25, "{names:?}");
    for name in names
        .iter()
        .map(String::as_str)
        .chain(KNOWN_TYPES.iter().copied())
    {
        assert!(
            doc.contains(&format!("`{name}`")) || doc.contains(&format!(".{name}`")),
            "docs/EVENTS.md does not name `{name}`"
        );
    }
}
