//! The one ingest path. Kafka, HTTP and files all call [`ingest_batch`]:
//! in one transaction it records each event id (a duplicate is skipped),
//! updates the customer, starts and advances enrollments through the engine,
//! and writes the outbox rows with their idempotency keys.

pub mod file;
pub mod http;
pub mod kafka;

use chrono::{DateTime, Utc};

use crate::engine::dispatch;
use crate::engine::profile;
use crate::event::Event;
use crate::sequence::model::Catalog;
use crate::store::{Changes, CustomerState, DeadLetter, IngestReport, NewEmail, Store};

/// The pure part of ingesting one event, run by the store under the
/// customer's lock: what to write for `event` given what is stored.
pub fn apply_event(
    catalog: &Catalog,
    state: &mut CustomerState,
    event: &Event,
    now: DateTime<Utc>,
) -> Changes {
    let profile = profile::update(state.profile.take(), event);
    let suppress = profile.suppressed.then(|| {
        (
            profile.customer.email.to_string(),
            format!("{} ({})", event.kind, event.id),
        )
    });
    let applied =
        dispatch::apply_event_known(catalog, &mut state.enrollments, &state.finished, event, now);
    for n in &applied.notes {
        tracing::info!(event_id = %event.id, customer_id = %event.customer.id,
            sequence = %n.sequence, enrollment = %n.enrollment_key, "{}", n.message);
    }
    let emails = with_context(state, applied.emails);
    state.profile = Some(profile.clone());
    Changes {
        profile: Some(profile),
        enrollments: applied.changed.into_iter().collect(),
        emails,
        suppress,
        notes: applied.notes,
    }
}

/// Pairs each email with the context of the enrollment that sent it.
pub fn with_context(
    state: &CustomerState,
    jobs: Vec<crate::engine::state::EmailJob>,
) -> Vec<NewEmail> {
    jobs.into_iter()
        .filter_map(|job| {
            let e = state
                .enrollments
                .iter()
                .find(|e| e.key == job.enrollment_key)?;
            Some(NewEmail {
                context: e.context.clone(),
                job,
            })
        })
        .collect()
}

/// Ingests a batch in one transaction. Returns once it has committed.
pub async fn ingest_batch<S: Store>(
    store: &S,
    catalog: &Catalog,
    events: &[Event],
    source: &str,
    now: DateTime<Utc>,
) -> crate::store::Result<IngestReport> {
    let apply = |state: &mut CustomerState, ev: &Event| apply_event(catalog, state, ev, now);
    store.ingest(events, source, now, &apply).await
}

/// Parses one raw event; a failure is a dead letter with a reason.
pub fn parse(payload: &[u8]) -> Result<Event, String> {
    let text =
        std::str::from_utf8(payload).map_err(|_| "the payload is not UTF-8 text".to_string())?;
    Event::parse(text).map_err(|e| e.message)
}

pub fn dead(source: &str, reason: String, payload: &[u8], origin: Option<String>) -> DeadLetter {
    DeadLetter {
        source: source.to_string(),
        reason,
        payload: String::from_utf8_lossy(payload).into_owned(),
        origin,
    }
}
