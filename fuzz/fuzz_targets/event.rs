//! The event parser on any bytes: `ingest::parse` (what Kafka and files call)
//! must answer Ok or a reason, never panic; an event it accepts must come back
//! the same from its own JSON, since the store keeps events as JSON.
#![no_main]

use aftercare::event::Event;
use chrono::Datelike;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(event) = aftercare::ingest::parse(data) else {
        return;
    };
    // Years past 9999 (or before year 0) do not survive RFC 3339: a known
    // class, being limited at the boundary in another branch.
    let times = [
        Some(event.occurred_at),
        event.order.as_ref().and_then(|o| o.placed_at),
    ];
    if times
        .iter()
        .flatten()
        .any(|t| !(0..=9999).contains(&t.year()))
    {
        return;
    }
    let json = serde_json::to_string(&event).expect("an event serialises");
    let again =
        Event::parse(&json).unwrap_or_else(|e| panic!("{json} does not parse back: {}", e.message));
    assert_eq!(again, event, "round trip through {json}");
});
