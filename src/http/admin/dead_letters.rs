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
use crate::ingest::replay::{Fate, replay};
use crate::store::{DeadLetter, Store, StoredDeadLetter};

pub fn routes<S: Store>() -> Router<Admin<S>> {
    Router::new()
        .route("/dead-letters", get(list::<S>))
        .route("/dead-letters/replay", post(replay_all::<S>))
        .route("/dead-letters/{id}/replay", post(replay_one::<S>))
}

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

async fn replay_one<S: Store>(
    State(admin): State<Admin<S>>,
    Path(id): Path<String>,
) -> Answer<Json<Value>> {
    let letters = admin.app.store.dead_letters().await?;
    let Some(letter) = letters.into_iter().find(|l| l.letter.identity() == id) else {
        return Err(ApiError::not_found(format!("no dead letter {id:?}")));
    };
    let mut done = replay(&admin.app, vec![letter.letter]).await?;
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
    let done = replay(&admin.app, letters).await?;
    let count = |f: fn(&Fate) -> bool| done.iter().filter(|r| f(&r.outcome)).count();
    Ok(Json(json!({
        "applied": count(|f| matches!(f, Fate::Applied)),
        "duplicates": count(|f| matches!(f, Fate::Duplicate)),
        "dead": count(|f| matches!(f, Fate::Dead)),
        "replayed": done,
    })))
}
