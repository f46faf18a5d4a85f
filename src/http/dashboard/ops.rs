//! The dashboard's operator pages: a customer's journey (the timeline of
//! `aftercare explain`, [`crate::journey`]) and the dead letters with their
//! replay through the ingest path ([`crate::ingest::replay`], as the admin
//! API replays them).

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Deserialize;

use super::Dashboard;
use super::pages::{bad_request, layout, page, store_error};
use super::session::{CSRF_FIELD, Session};
use crate::ingest::replay::{Fate, replay as replay_letters};
use crate::journey::{self, Filter};
use crate::store::{DeadLetter, Store};

#[derive(Debug, Deserialize)]
pub struct JourneyQuery {
    id: Option<String>,
    order: Option<String>,
    template: Option<String>,
}

fn given(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// `GET /admin/journey?id=C[&order=O][&template=T]`: "did this customer get
/// the email, and if not, why", as one page.
pub async fn journey<S: Store>(
    State(d): State<Arc<Dashboard<S>>>,
    Extension(session): Extension<Session>,
    Query(q): Query<JourneyQuery>,
) -> Response {
    let id = given(&q.id);
    let filter = Filter {
        order: given(&q.order),
        template: given(&q.template),
    };
    if let Some(t) = &filter.template
        && !d.templates.contains(t)
    {
        let why = format!("template {t:?} does not exist");
        return bad_request(&session, "/admin/journey", &why);
    }
    let found = match &id {
        None => None,
        Some(id) => match d.store.journey(id).await {
            Ok(rows) if rows.is_empty() => Some(None),
            Ok(rows) => Some(Some(journey::assemble(&d.catalog, id, &rows, &filter))),
            Err(e) => return store_error(&session, e),
        },
    };
    let templates: Vec<&String> = d.templates.ids().collect();
    let body = html! {
        h1 { "Customer journey" }
        form.search method="get" action="/admin/journey" role="search" {
            input type="search" name="id" value=(id.clone().unwrap_or_default()) placeholder="customer id" aria-label="Customer id" required;
            input type="text" name="order" value=(filter.order.clone().unwrap_or_default()) placeholder="order id (optional)" aria-label="Order id";
            select name="template" aria-label="Template" {
                option value="" { "any template" }
                @for t in &templates {
                    option value=(t) selected[filter.template.as_deref() == Some(t.as_str())] { (t) }
                }
            }
            button type="submit" { "Explain" }
        }
        @match &found {
            None => p.hint { "Every event received, every decision of the engine with its why, every email and what became of it; with a template, whether the customer got it and if not, why." },
            Some(None) => p #no-entries { "Nothing is stored about this customer." },
            Some(Some(j)) => {
                @if let Some(a) = &j.answer {
                    section #answer class=(if a.sent { "answer yes" } else { "answer no" }) {
                        h2 { (a.template) ": " (a.summary) }
                        @if !a.reasons.is_empty() {
                            ul { @for r in &a.reasons { li { (r.message) } } }
                        }
                    }
                }
                table #journey {
                    thead { tr { th { "time (UTC)" } th { "what" } th { "sequence" } th { "step" } th { "order" } th { "summary" } } }
                    tbody {
                        @for l in &j.entries {
                            tr class=(l.kind) {
                                td { (l.at.format("%Y-%m-%d %H:%M:%S")) }
                                td { (l.kind) }
                                td { (l.sequence.clone().unwrap_or_default()) }
                                td { (l.step.clone().unwrap_or_default()) }
                                td { (l.order_id.clone().unwrap_or_default()) }
                                td { (l.summary) }
                            }
                        }
                    }
                }
            }
        }
    };
    page(layout(
        "Customer journey",
        "/admin/journey",
        Some(&session),
        body,
    ))
}

/// `GET /admin/dead-letters`: what could not be used, newest seen first,
/// each with a replay button; one button replays them all.
pub async fn dead_letters<S: Store>(
    State(d): State<Arc<Dashboard<S>>>,
    Extension(session): Extension<Session>,
) -> Response {
    let mut letters = match d.store.dead_letters().await {
        Ok(l) => l,
        Err(e) => return store_error(&session, e),
    };
    letters.sort_by_key(|l| std::cmp::Reverse(l.last_seen_at));
    page(layout(
        "Dead letters",
        "/admin/dead-letters",
        Some(&session),
        html! {
            h1 { "Dead letters" }
            p.hint { "Events and reports that could not be used, with why. Replaying one sends it through the ingest path again: an event that got in meanwhile is a duplicate; one that fails again stays with its new reason." }
            @if letters.is_empty() {
                p #no-entries { "None." }
            } @else {
                form method="post" action="/admin/dead-letters/replay" {
                    input type="hidden" name=(CSRF_FIELD) value=(session.csrf);
                    button type="submit" { "Replay all" }
                }
                table #dead-letters {
                    thead { tr { th { "last seen (UTC)" } th { "source" } th.num { "count" } th { "reason" } th { "payload" } th {} } }
                    tbody {
                        @for l in &letters {
                            tr {
                                td { (l.last_seen_at.format("%Y-%m-%d %H:%M:%S")) }
                                td { (l.letter.source) }
                                td.num { (l.count) }
                                td { (l.letter.reason) }
                                td { code { (preview(&l.letter.payload)) } }
                                td {
                                    form method="post" action="/admin/dead-letters/replay" {
                                        input type="hidden" name=(CSRF_FIELD) value=(session.csrf);
                                        input type="hidden" name="id" value=(l.letter.identity());
                                        button type="submit" { "Replay" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    ))
}

/// The start of a payload, for the table.
fn preview(payload: &str) -> String {
    const SHOWN: usize = 200;
    match payload.char_indices().nth(SHOWN) {
        Some((i, _)) => format!("{}…", &payload[..i]),
        None => payload.to_string(),
    }
}

/// `POST /admin/dead-letters/replay` (`id`: one letter; none: all): the
/// outcome of each, on the page.
pub async fn replay<S: Store>(
    State(d): State<Arc<Dashboard<S>>>,
    Extension(session): Extension<Session>,
    body: axum::body::Bytes,
) -> Response {
    let id = url::form_urlencoded::parse(&body)
        .find(|(k, _)| k == "id")
        .map(|(_, v)| v.into_owned());
    let kept = match d.store.dead_letters().await {
        Ok(l) => l,
        Err(e) => return store_error(&session, e),
    };
    let letters: Vec<DeadLetter> = kept
        .into_iter()
        .map(|l| l.letter)
        .filter(|l| id.as_ref().is_none_or(|id| l.identity() == *id))
        .collect();
    if id.is_some() && letters.is_empty() {
        let body = html! { h1 { "Not found" } p.error { "No such dead letter: it may have been replayed already." } };
        return (
            StatusCode::NOT_FOUND,
            page(layout(
                "Not found",
                "/admin/dead-letters",
                Some(&session),
                body,
            )),
        )
            .into_response();
    }
    let done = match replay_letters(&d.webhook, letters).await {
        Ok(done) => done,
        Err(e) => return store_error(&session, e),
    };
    page(layout(
        "Replayed",
        "/admin/dead-letters",
        Some(&session),
        html! {
            h1 { "Replayed" }
            table #replayed {
                thead { tr { th { "event" } th { "outcome" } th.num { "emails" } th { "reason" } } }
                tbody {
                    @for r in &done {
                        tr {
                            td { (r.event_id.clone().unwrap_or_default()) }
                            td { (match r.outcome { Fate::Applied => "applied", Fate::Duplicate => "duplicate", Fate::Dead => "still dead" }) }
                            td.num { (r.emails.map(|n| n.to_string()).unwrap_or_default()) }
                            td { (r.reason.clone().unwrap_or_default()) }
                        }
                    }
                }
            }
            p { a href="/admin/dead-letters" { "Back to the dead letters" } }
        },
    ))
}
