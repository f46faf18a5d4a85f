//! Dead letters and their replay:
//!
//! - `GET /v1/admin/dead-letters`: each kept letter with its stable id
//!   ([`DeadLetter::identity`]), in the order first seen.
//! - `POST /v1/admin/dead-letters/{id}/replay`, `POST
//!   /v1/admin/dead-letters/replay` (all): each letter's payload is parsed
//!   as its source parses it (webhook items, Kafka messages and file lines
//!   are all one JSON event: [`crate::ingest::parse`]) and ingested through
//!   [`crate::ingest::ingest_batch`] as its source would, so an event that
//!   got in meanwhile is a duplicate. One that goes through now (applied, or
//!   a duplicate) leaves the list; one that fails again stays, with the new
//!   reason. A letter that did not parse when it came keeps its first
//!   reason when it does not parse now either: that reason says what it was
//!   (a bounce report, which was never an event, is kept as a letter too).
//!
//! A Kafka message's `aftercare-history` header and a file's `--backfill`
//! are not kept with a letter: a replayed event is live unless its payload
//! says `"history": true`.

use axum::extract::{Path, RawQuery, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{Value, json};

use super::Admin;
use super::reply::{Answer, ApiError, Params};
use crate::ingest::listened::kinds_taken;
use crate::store::{DeadLetter, Store, StoredDeadLetter};

pub fn routes<S: Store>() -> Router<Admin<S>> {
    Router::new()
        .route("/dead-letters", get(list::<S>))
        .route("/dead-letters/replay", post(replay_all::<S>))
        .route("/dead-letters/{id}/replay", post(replay_one::<S>))
}

/// How `ingest::ingest_batch` begins the reason of an event the store
/// refused: an event that parsed when it came.
const STORE_REFUSED: &str = "the store refused this event";

/// A kept letter with its id.
#[derive(Serialize)]
struct Listed<'a> {
    id: String,
    #[serde(flatten)]
    letter: &'a StoredDeadLetter,
}

async fn list<S: Store>(
    State(admin): State<Admin<S>>,
    RawQuery(query): RawQuery,
) -> Answer<Json<Value>> {
    Params::parse(query.as_deref())?.done()?;
    let letters = admin.app.store.dead_letters().await?;
    let listed: Vec<Listed> = letters
        .iter()
        .map(|l| Listed {
            id: l.letter.identity(),
            letter: l,
        })
        .collect();
    Ok(Json(json!({ "dead_letters": listed })))
}

/// What became of a replayed letter.
#[derive(Debug, Serialize)]
#[serde(rename_all = "snake_case")]
enum Fate {
    /// The event went through and was applied: the letter is gone.
    Applied,
    /// The event was in already: the letter is gone.
    Duplicate,
    /// It failed again: kept with `reason`, under `id` (the id changes with
    /// the reason).
    Dead,
}

#[derive(Debug, Serialize)]
struct Replayed {
    /// The letter's id before the replay.
    id: String,
    outcome: Fate,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_id: Option<String>,
    /// Emails the event enqueued.
    #[serde(skip_serializing_if = "Option::is_none")]
    emails: Option<usize>,
    /// Why it is still dead.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    /// Its id now, when still dead.
    #[serde(skip_serializing_if = "Option::is_none")]
    now_id: Option<String>,
}

async fn replay_one<S: Store>(
    State(admin): State<Admin<S>>,
    Path(id): Path<String>,
) -> Answer<Json<Value>> {
    let letters = admin.app.store.dead_letters().await?;
    let Some(letter) = letters.into_iter().find(|l| l.letter.identity() == id) else {
        return Err(ApiError::not_found(format!("no dead letter {id:?}")));
    };
    let mut done = replay(&admin, vec![letter.letter]).await?;
    Ok(Json(json!(done.pop().expect("one letter, one answer"))))
}

async fn replay_all<S: Store>(State(admin): State<Admin<S>>) -> Answer<Json<Value>> {
    let letters: Vec<DeadLetter> = admin
        .app
        .store
        .dead_letters()
        .await?
        .into_iter()
        .map(|l| l.letter)
        .collect();
    let done = replay(&admin, letters).await?;
    let count = |f: fn(&Fate) -> bool| done.iter().filter(|r| f(&r.outcome)).count();
    Ok(Json(json!({
        "applied": count(|f| matches!(f, Fate::Applied)),
        "duplicates": count(|f| matches!(f, Fate::Duplicate)),
        "dead": count(|f| matches!(f, Fate::Dead)),
        "replayed": done,
    })))
}

/// Replays `letters`, the events among them in the order they occurred
/// (as a batch applies them), one transaction each so that each letter's
/// fate is known. Stops with 503 while the store is unavailable (the
/// letters not replayed yet stay as they were).
async fn replay<S: Store>(admin: &Admin<S>, letters: Vec<DeadLetter>) -> Answer<Vec<Replayed>> {
    let app = &admin.app;
    let mut out: Vec<Option<Replayed>> = Vec::with_capacity(letters.len());
    let mut events = Vec::new();
    for (i, letter) in letters.iter().enumerate() {
        match crate::ingest::parse(letter.payload.as_bytes()) {
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
            crate::ingest::ingest_batch(&app.store, &app.catalog, batch, &letter.source, now)
                .await?;
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
    app: &crate::ingest::http::Webhook<S>,
    letter: &DeadLetter,
    reason: String,
) -> Answer<Replayed> {
    let reason = crate::ingest::dead(&letter.source, reason, b"", None).reason;
    app.store.revise_dead_letter(letter, Some(&reason)).await?;
    let now_id = DeadLetter {
        reason: reason.clone(),
        ..letter.clone()
    }
    .identity();
    Ok(Replayed {
        id: letter.identity(),
        outcome: Fate::Dead,
        event_id: crate::ingest::http::item_id(&letter.payload),
        emails: None,
        reason: Some(reason),
        now_id: Some(now_id),
    })
}
