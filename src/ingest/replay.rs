//! Replaying dead letters through the ingest path (the admin API's
//! `/v1/admin/dead-letters/…/replay` and the dashboard's dead letters): each
//! letter's payload is parsed as its source parses it (webhook items, Kafka
//! messages and file lines are all one JSON event: [`super::parse`]) and
//! ingested through [`super::ingest_batch`] as its source would, so an event
//! that got in meanwhile is a duplicate. One that goes through now (applied,
//! or a duplicate) leaves the list; one that fails again stays, with the new
//! reason. A letter that did not parse when it came keeps its first reason
//! when it does not parse now either: that reason says what it was (a bounce
//! report, which was never an event, is kept as a letter too).

use serde::Serialize;

use super::http::Webhook;
use super::listened::kinds_taken;
use crate::store::{DeadLetter, Result, Store};

/// How `ingest::ingest_batch` begins the reason of an event the store
/// refused: an event that parsed when it came.
pub const STORE_REFUSED: &str = "the store refused this event";

/// What became of a replayed letter.
#[derive(Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fate {
    /// The event went through and was applied: the letter is gone.
    Applied,
    /// The event was in already: the letter is gone.
    Duplicate,
    /// It failed again: kept with `reason`, under `id` (the id changes with
    /// the reason).
    Dead,
}

#[derive(Debug, Serialize)]
pub struct Replayed {
    /// The letter's id before the replay.
    pub id: String,
    pub outcome: Fate,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// Emails the event enqueued.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub emails: Option<usize>,
    /// Why it is still dead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Its id now, when still dead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub now_id: Option<String>,
}

/// Replays `letters`, the events among them in the order they occurred
/// (as a batch applies them), one transaction each so that each letter's
/// fate is known. Stops at a store error (the letters not replayed yet
/// stay as they were).
pub async fn replay<S: Store>(app: &Webhook<S>, letters: Vec<DeadLetter>) -> Result<Vec<Replayed>> {
    let mut out: Vec<Option<Replayed>> = Vec::with_capacity(letters.len());
    let mut events = Vec::new();
    for (i, letter) in letters.iter().enumerate() {
        match super::parse(letter.payload.as_bytes()) {
            Ok(ev) => {
                events.push((i, ev));
                out.push(None);
            }
            Err(reason) => {
                // It did not parse when it came either (the parser is the
                // same): its reason stays, and says what it was (a bounce
                // report that was never an event, say). Only an event that
                // did parse then (and the store refused) gets the new one.
                let reason = if letter.reason.starts_with(STORE_REFUSED) {
                    reason
                } else {
                    letter.reason.clone()
                };
                out.push(Some(still_dead(app, letter, reason).await?))
            }
        }
    }
    events.sort_by_key(|(_, ev)| ev.occurred_at);
    for (i, ev) in events {
        let letter = &letters[i];
        let now = app.clock.now();
        let batch = std::slice::from_ref(&ev);
        let report =
            super::ingest_batch(&app.store, &app.catalog, batch, &letter.source, now).await?;
        app.watch.note(kinds_taken(batch, &report.refused), now);
        let done = match report.refused.into_iter().next() {
            Some(refused) => still_dead(app, letter, refused.reason).await?,
            None => {
                app.store.revise_dead_letter(letter, None).await?;
                let fate = if report.duplicates > 0 {
                    Fate::Duplicate
                } else {
                    Fate::Applied
                };
                tracing::info!(event_id = %ev.id, source = %letter.source, outcome = ?fate,
                    "dead letter replayed");
                Replayed {
                    id: letter.identity(),
                    outcome: fate,
                    event_id: Some(ev.id.clone()),
                    emails: Some(report.emails),
                    reason: None,
                    now_id: None,
                }
            }
        };
        out[i] = Some(done);
    }
    app.kick.notify_waiters();
    Ok(out
        .into_iter()
        .map(|r| r.expect("each letter answered"))
        .collect())
}

/// Keeps `letter` with the reason it failed for now.
async fn still_dead<S: Store>(
    app: &Webhook<S>,
    letter: &DeadLetter,
    reason: String,
) -> Result<Replayed> {
    let reason = super::dead(&letter.source, reason, b"", None).reason;
    app.store.revise_dead_letter(letter, Some(&reason)).await?;
    let now_id = DeadLetter {
        reason: reason.clone(),
        ..letter.clone()
    }
    .identity();
    Ok(Replayed {
        id: letter.identity(),
        outcome: Fate::Dead,
        event_id: super::http::item_id(&letter.payload),
        emails: None,
        reason: Some(reason),
        now_id: Some(now_id),
    })
}
