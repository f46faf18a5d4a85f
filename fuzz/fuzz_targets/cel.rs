//! A CEL expression as a trigger condition, an `if`, a `wait_for ... when`,
//! an `exit_when` and a `wait_until`, loaded from YAML the way a sequence
//! file is, then the shipped example events of a few customers pushed through
//! the engine (`dispatch::apply_event`), waking each enrollment when due.
#![no_main]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use aftercare::engine::customer::CustomerState;
use aftercare::engine::dispatch::{apply_event, apply_wake};
use aftercare::event::Event;
use aftercare::sequence::load::parse_sequence;
use aftercare::sequence::model::{Catalog, Policies};
use chrono::{DateTime, Utc};
use libfuzzer_sys::fuzz_target;

const CUSTOMERS: [&str; 3] = ["c_anna", "c_emma", "c_james"];

fn events() -> &'static [Event] {
    static EVENTS: OnceLock<Vec<Event>> = OnceLock::new();
    EVENTS.get_or_init(|| {
        include_str!("../../examples/events.jsonl")
            .lines()
            .map(|l| Event::parse(l).expect("the example events parse"))
            .filter(|e| CUSTOMERS.contains(&e.customer.id.as_str()))
            .collect()
    })
}

fn sequences(expr: &str) -> String {
    // A JSON string is a YAML double-quoted scalar.
    let q = serde_json::to_string(expr).expect("a string serialises");
    format!(
        "id: cond
category: value
trigger: {{event: order.placed, when: {q}}}
exit_when:
  - {{event: review.submitted, scope: customer, when: {q}}}
steps:
  - if: {q}
    then: [{{email: a}}]
    else: [{{email: b}}]
  - wait_for: shipment.delivered
    when: {q}
    within: 30d
    on_timeout: [{{email: c}}]
  - email: d
---
id: until
category: value
trigger: {{event: order.placed}}
steps:
  - wait_until: {q}
  - email: e
"
    )
}

/// Wakes every enrollment due by `now`, the earliest first, as the
/// scheduler would.
fn wake_due(catalog: &Catalog, state: &mut CustomerState, now: Option<DateTime<Utc>>) {
    // Each wake ends or moves its enrollment on; the bound keeps a
    // misbehaving one from spinning here.
    for _ in 0..64 {
        let due = state
            .enrollments
            .iter()
            .enumerate()
            .filter_map(|(i, e)| e.wake_at().map(|t| (t, i)))
            .filter(|(t, _)| now.is_none_or(|now| *t <= now))
            .min();
        let Some((at, idx)) = due else { return };
        let _ = apply_wake(catalog, state, idx, at);
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(expr) = std::str::from_utf8(data) else {
        return;
    };
    let mut loaded = Vec::new();
    for (i, doc) in sequences(expr).split("---\n").enumerate() {
        let (seq, diags) = parse_sequence(Path::new(&format!("s{i}.yaml")), doc);
        match seq {
            Some(seq) if !diags.has_errors() => loaded.push(seq),
            _ => {}
        }
    }
    if loaded.is_empty() {
        return;
    }
    let catalog = Catalog::new(loaded, Policies::default());
    let mut states: BTreeMap<&str, CustomerState> = BTreeMap::new();
    for event in events() {
        let state = states.entry(event.customer.id.as_str()).or_default();
        wake_due(&catalog, state, Some(event.occurred_at));
        let _ = apply_event(&catalog, state, event, event.occurred_at);
    }
    for state in states.values_mut() {
        wake_due(&catalog, state, None);
    }
});
