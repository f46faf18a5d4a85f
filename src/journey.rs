//! "Why did (not) customer X get email Y?": a customer's timeline, merged
//! from what the store keeps (events, the engine's journal, the outbox, the
//! delivery log, opens and clicks, dead letters), and for a template the
//! answer in one line with its reasons. Pure: [`assemble`] turns plain rows
//! ([`JourneyRows`]) into a [`Journey`]; `aftercare explain` prints it
//! ([`render`]), `GET /v1/admin/customers/{id}/journey` serves it as JSON.
//! The JSON shape is documented in the README.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{Value, json};

use crate::engine::journal::{Entry, Role, What};
use crate::engine::outbox::{OutboxStatus, Outcome};
use crate::engine::state::{Enrollment, Status, Waiting};
use crate::sequence::model::{Catalog, Sequence};
use crate::sequence::plan::Op;
use crate::store::{ActivityKind, DeliveryEntry, JourneyRows, payload_id};

/// What to narrow the timeline to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// One order: its lines, and the customer's lines that name no order.
    pub order: Option<String>,
    /// One template: the lines of the sequences that send it (or start one
    /// that does) and of the events those listen to, and the answer.
    pub template: Option<String>,
}

/// A customer's timeline, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Journey {
    pub customer_id: String,
    pub order: Option<String>,
    pub template: Option<String>,
    pub entries: Vec<Line>,
    /// With a template: did the customer get it, and if not, why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<Answer>,
}

/// One thing that happened, in one line (`summary`), with what it concerns
/// and its particulars (`detail`, an object whose fields depend on `kind`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Line {
    pub at: DateTime<Utc>,
    pub kind: String,
    pub summary: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sequence: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enrollment: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    pub detail: Value,
    /// Sorts lines of one instant: what came in, what was decided, the
    /// emails, what the sender did, what the customer did.
    #[serde(skip)]
    rank: u8,
}

/// Did the customer get the template, and if not, why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Answer {
    pub template: String,
    /// At least one email of the template was handed to the mail server.
    pub sent: bool,
    /// The answer in one line.
    pub summary: String,
    pub reasons: Vec<Reason>,
}

/// One reason behind the answer: an email of the template and what became
/// of it, or an enrollment (or its absence) and why it sent none.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reason {
    pub kind: ReasonKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sequence: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enrollment: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonKind {
    /// Handed to the mail server.
    Sent,
    /// In the outbox, due at `until`.
    Pending,
    /// Put off by quiet hours or the frequency cap until `until`.
    Deferred,
    /// Not sent, and never will be (no consent, suppressed, promo share,
    /// sunset, stale, backfill, ceiling).
    Skipped,
    /// The mail server refused it, or retries ran out.
    Failed,
    /// The enrollment has not reached the email yet: it waits until `until`.
    Waiting,
    /// The enrollment ended before the email (an exit rule, an exit step).
    Exited,
    /// The enrollment finished another way (an `if` or `split` went elsewhere).
    OtherBranch,
    /// The sequence did not start (its trigger condition was false, ...).
    NotEnrolled,
    /// The event that starts the sequence never came.
    NoTriggerEvent,
    /// The sequence is started by another one, which has not got there.
    NotStarted,
    /// No sequence sends the template.
    NoSequence,
}

/// How many sequences deep [`Answer`] follows `start` steps back.
const MAX_STARTERS: usize = 8;

/// Merges `rows` of customer `customer_id` into their timeline, narrowed
/// by `filter`.
pub fn assemble(
    catalog: &Catalog,
    customer_id: &str,
    rows: &JourneyRows,
    filter: &Filter,
) -> Journey {
    let ix = Index::of(rows);
    let mut lines = Vec::new();
    for ev in &rows.events {
        lines.push(event_line(ev, &ix));
    }
    for d in &rows.dead_letters {
        lines.push(dead_letter_line(d));
    }
    for e in &rows.journal {
        lines.push(journal_line(e, &ix));
    }
    for m in &rows.emails {
        let v = &m.view;
        lines.push(Line {
            at: m.created_at,
            kind: "email_enqueued".into(),
            summary: format!(
                "email {} enqueued ({}), due {}; now {}",
                v.template,
                v.category.as_str(),
                iso(v.due_at),
                v.status
            ),
            sequence: Some(v.sequence.clone()),
            enrollment: Some(enrollment_of_key(&v.idempotency_key).to_string()),
            step: Some(v.step.clone()),
            order_id: ix.order_of_key(&v.idempotency_key),
            template: Some(v.template.clone()),
            event_id: None,
            detail: json!({
                "idempotency_key": v.idempotency_key,
                "category": v.category,
                "due_at": v.due_at,
                "status": v.status,
            }),
            rank: 3,
        });
    }
    let mut deliveries: Vec<&DeliveryEntry> = rows.deliveries.iter().collect();
    deliveries.sort_by_key(|d| d.id);
    for d in deliveries {
        lines.push(delivery_line(d, &ix));
    }
    for a in &rows.activity {
        let email = ix.emails.get(a.idempotency_key.as_str());
        let template = email.map(|m| m.view.template.clone());
        let what = match a.kind {
            ActivityKind::Open => "opened",
            ActivityKind::Click => "clicked",
        };
        let mut summary = format!(
            "email {} {what}",
            template.as_deref().unwrap_or(&a.idempotency_key)
        );
        if let Some(url) = &a.url {
            let _ = write!(summary, ": {url}");
        }
        if a.machine {
            summary.push_str(" (by a machine: not counted as engagement)");
        }
        lines.push(Line {
            at: a.at,
            kind: format!("email_{what}"),
            summary,
            sequence: email.map(|m| m.view.sequence.clone()),
            enrollment: Some(enrollment_of_key(&a.idempotency_key).to_string()),
            step: email.map(|m| m.view.step.clone()),
            order_id: ix.order_of_key(&a.idempotency_key),
            template,
            event_id: None,
            detail: json!({"idempotency_key": a.idempotency_key, "url": a.url, "machine": a.machine}),
            rank: 5,
        });
    }
    // Stable: lines of one instant keep the order they were written in.
    lines.sort_by_key(|l| (l.at, l.rank));
    let related = filter.template.as_deref().map(|t| Related::of(catalog, t));
    lines.retain(|l| {
        filter
            .order
            .as_ref()
            .is_none_or(|o| l.order_id.as_ref().is_none_or(|mine| mine == o))
            && related.as_ref().is_none_or(|r| r.admits(l))
    });
    let answer = filter
        .template
        .as_deref()
        .map(|t| answer(catalog, rows, &ix, filter.order.as_deref(), t));
    Journey {
        customer_id: customer_id.to_string(),
        order: filter.order.clone(),
        template: filter.template.clone(),
        entries: lines,
        answer,
    }
}

/// The rows by what the lines look up.
struct Index<'a> {
    enrollments: HashMap<&'a str, &'a Enrollment>,
    /// Order ids of events by event id.
    event_orders: HashMap<&'a str, Option<&'a str>>,
    event_types: HashMap<&'a str, &'a str>,
    emails: HashMap<&'a str, &'a crate::store::EmailRow>,
    /// Emails by Message-ID (a bounce names one).
    by_message: HashMap<&'a str, &'a crate::store::EmailRow>,
}

impl<'a> Index<'a> {
    fn of(rows: &'a JourneyRows) -> Self {
        Self {
            enrollments: rows
                .enrollments
                .iter()
                .map(|e| (e.key.as_str(), e))
                .collect(),
            event_orders: rows
                .events
                .iter()
                .map(|e| (e.event.id.as_str(), e.event.order_id()))
                .collect(),
            event_types: rows
                .events
                .iter()
                .map(|e| (e.event.id.as_str(), e.event.kind.as_str()))
                .collect(),
            emails: rows
                .emails
                .iter()
                .map(|m| (m.view.idempotency_key.as_str(), m))
                .collect(),
            by_message: rows
                .emails
                .iter()
                .filter_map(|m| Some((m.view.message_id.as_deref()?, m)))
                .collect(),
        }
    }

    /// The order of an email or activity by idempotency key.
    fn order_of_key(&self, key: &str) -> Option<String> {
        self.order_of_enrollment(enrollment_of_key(key))
    }

    fn order_of_enrollment(&self, key: &str) -> Option<String> {
        self.enrollments.get(key).and_then(|e| e.order_id.clone())
    }

    fn order_of_event(&self, id: &str) -> Option<String> {
        self.event_orders
            .get(id)
            .copied()
            .flatten()
            .map(str::to_string)
    }
}

/// The enrollment key of an email's idempotency key (`KEY#STEP`).
fn enrollment_of_key(key: &str) -> &str {
    key.rsplit_once('#').map_or(key, |(k, _)| k)
}

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn event_line(ev: &crate::store::ReceivedEvent, ix: &Index) -> Line {
    let e = &ev.event;
    let order = e
        .order_id()
        .map(|o| format!(" for order {o}"))
        .unwrap_or_default();
    let mut summary = format!("received {} {}{order} via {}", e.kind, e.id, ev.source);
    if e.history {
        summary.push_str(" (history)");
    }
    let mut kind = "event";
    let mut email = None;
    if matches!(e.kind.as_str(), "email.bounced" | "email.complained") {
        email = e
            .data
            .get("message_id")
            .and_then(Value::as_str)
            .and_then(|m| ix.by_message.get(m));
        kind = if e.kind == "email.bounced" {
            "email_bounced"
        } else {
            "email_complained"
        };
        if let Some(m) = email {
            let _ = write!(summary, ": about email {}", m.view.template);
        }
        if let Some(k) = e.data.get("kind").and_then(Value::as_str) {
            let _ = write!(summary, " ({k} bounce)");
        }
        if let Some(d) = e.data.get("detail").and_then(Value::as_str) {
            let _ = write!(summary, ": {d}");
        }
    }
    Line {
        at: ev.received_at,
        kind: kind.into(),
        summary,
        sequence: email.map(|m| m.view.sequence.clone()),
        enrollment: email.map(|m| enrollment_of_key(&m.view.idempotency_key).to_string()),
        step: email.map(|m| m.view.step.clone()),
        order_id: e
            .order_id()
            .map(str::to_string)
            .or_else(|| email.and_then(|m| ix.order_of_key(&m.view.idempotency_key))),
        template: email.map(|m| m.view.template.clone()),
        event_id: Some(e.id.clone()),
        detail: json!({
            "type": e.kind,
            "occurred_at": e.occurred_at,
            "source": ev.source,
            "history": e.history,
            "data": e.data,
        }),
        rank: 0,
    }
}

fn dead_letter_line(d: &crate::store::StoredDeadLetter) -> Line {
    let l = &d.letter;
    let times = if d.count > 1 {
        format!(" ({} times, last at {})", d.count, iso(d.last_seen_at))
    } else {
        String::new()
    };
    Line {
        at: d.first_seen_at,
        kind: "dead_letter".into(),
        summary: format!("dead-lettered ({}): {}{times}", l.source, l.reason),
        sequence: None,
        enrollment: None,
        step: None,
        order_id: payload_id(&l.payload, Some("order")),
        template: None,
        event_id: payload_id(&l.payload, None),
        detail: json!({
            "source": l.source,
            "reason": l.reason,
            "origin": l.origin,
            "count": d.count,
            "last_seen_at": d.last_seen_at,
            "payload": l.payload,
        }),
        rank: 0,
    }
}

fn journal_line(e: &Entry, ix: &Index) -> Line {
    let summary = match &e.what {
        What::Duplicate {
            event_id,
            event_type,
        } => format!("duplicate of {event_type} {event_id}: already recorded, not applied again"),
        What::Enrolled {
            event_id,
            started_by,
        } => match (event_id, started_by) {
            (_, Some(by)) => format!("enrolled: started by {by}"),
            (Some(id), None) => format!("enrolled: triggered by event {id}"),
            (None, None) => "enrolled".into(),
        },
        What::NotEnrolled { message, .. } => format!("not enrolled: {message}"),
        What::Condition {
            role,
            event_id,
            checked,
        } => {
            let value = match (&checked.value, &checked.error) {
                (Some(v), _) => v.to_string(),
                (None, Some(err)) => format!("failed ({err}), taken as false"),
                (None, None) => "unknown".into(),
            };
            let on = event_id
                .as_ref()
                .map(|id| format!(" on event {id}"))
                .unwrap_or_default();
            let role = match role {
                Role::If => "if",
                Role::WaitFor => "wait_for when",
                Role::ExitWhen => "exit_when when",
                Role::Trigger => "trigger when",
            };
            let branch = checked
                .branch
                .as_ref()
                .map(|b| format!(": took `{b}`"))
                .unwrap_or_default();
            format!("{role} `{}` = {value}{on}{branch}", checked.source)
        }
        What::Split { variant } => format!("split: variant `{variant}`"),
        What::Waiting { until, source } => match source {
            Some(s) => format!("waiting until {} (wait_until `{s}`)", iso(*until)),
            None => format!("waiting until {}", iso(*until)),
        },
        What::WaitPassed { until, source } => format!(
            "wait_until `{source}` = {}, already past: went on at once",
            iso(*until)
        ),
        What::AwaitingEvent { event, until } => {
            format!("waiting for {event} until {}", iso(*until))
        }
        What::WaitOver { until } => format!("wait over (until {})", iso(*until)),
        What::TimedOut { event, until } => format!(
            "no {event} by {}: timed out, on_timeout steps run",
            iso(*until)
        ),
        What::Received {
            event_id,
            event_type,
        } => format!("took in {event_type} {event_id}: the wait is over"),
        What::Start { sequence } => format!("starts sequence {sequence}"),
        What::Exited { reason, .. } => format!("exited: {reason}"),
        What::Completed => "completed: past the last step".into(),
        What::Warning { message } => format!("warning: {message}"),
    };
    let event_id = match &e.what {
        What::Duplicate { event_id, .. } | What::Received { event_id, .. } => {
            Some(event_id.clone())
        }
        What::Enrolled { event_id, .. }
        | What::NotEnrolled { event_id, .. }
        | What::Condition { event_id, .. }
        | What::Exited { event_id, .. } => event_id.clone(),
        _ => None,
    };
    let order_id = e
        .enrollment_key
        .as_deref()
        .and_then(|k| ix.order_of_enrollment(k))
        .or_else(|| event_id.as_deref().and_then(|id| ix.order_of_event(id)));
    let (kind, detail) = e.what.split();
    Line {
        at: e.at,
        kind: kind.into(),
        summary,
        sequence: e.sequence.clone(),
        enrollment: e.enrollment_key.clone(),
        step: e.step.clone(),
        order_id,
        template: None,
        event_id,
        detail,
        rank: if kind == "duplicate" { 1 } else { 2 },
    }
}

fn delivery_line(d: &DeliveryEntry, ix: &Index) -> Line {
    let until = deferred_until(d);
    let summary = match d.outcome {
        Outcome::Sent => format!("email {} sent: {}", d.template, d.detail),
        Outcome::Deferred => format!("email {} deferred: {}", d.template, d.detail),
        Outcome::Skipped => format!("email {} skipped: {}", d.template, d.detail),
        Outcome::Retry => format!("email {} not sent, retried later: {}", d.template, d.detail),
        Outcome::Failed => format!("email {} failed: {}", d.template, d.detail),
    };
    Line {
        at: d.at,
        kind: format!("email_{}", d.outcome),
        summary,
        sequence: Some(d.sequence.clone()),
        enrollment: Some(enrollment_of_key(&d.idempotency_key).to_string()),
        step: Some(d.step.clone()),
        order_id: ix.order_of_key(&d.idempotency_key),
        template: Some(d.template.clone()),
        event_id: None,
        detail: json!({
            "idempotency_key": d.idempotency_key,
            "attempt": d.attempt,
            "outcome": d.outcome,
            "detail": d.detail,
            "message_id": d.message_id,
            "until": until,
        }),
        rank: 4,
    }
}

/// When a deferred email goes again, as the sender's reason says it
/// (`...: deferred to T`).
fn deferred_until(d: &DeliveryEntry) -> Option<DateTime<Utc>> {
    if d.outcome != Outcome::Deferred {
        return None;
    }
    let (_, t) = d.detail.rsplit_once("deferred to ")?;
    DateTime::parse_from_rfc3339(t.trim())
        .ok()
        .map(|t| t.to_utc())
}

/// What a template's answer concerns: the sequences that send it, those
/// that start them (and so on), and the events they listen to.
struct Related {
    template: String,
    sequences: BTreeSet<String>,
    events: BTreeSet<String>,
}

impl Related {
    fn of(catalog: &Catalog, template: &str) -> Self {
        let mut sequences: BTreeSet<String> = senders(catalog, template)
            .into_iter()
            .map(|(s, _)| s.id.clone())
            .collect();
        // Starters of starters, as far as they go.
        for _ in 0..MAX_STARTERS {
            let more: Vec<String> = sequences
                .iter()
                .flat_map(|s| starters(catalog, s))
                .map(|(s, _)| s.id.clone())
                .filter(|s| !sequences.contains(s))
                .collect();
            if more.is_empty() {
                break;
            }
            sequences.extend(more);
        }
        let mut events = BTreeSet::new();
        for id in &sequences {
            let Some(s) = catalog.get(id) else { continue };
            events.extend(
                s.trigger
                    .iter()
                    .filter_map(|t| t.event().map(str::to_string)),
            );
            events.extend(s.exit_when.iter().map(|r| r.event.clone()));
            for i in &s.plan.instrs {
                if let Op::WaitFor { event, .. } = &i.op {
                    events.insert(event.clone());
                }
            }
        }
        Self {
            template: template.to_string(),
            sequences,
            events,
        }
    }

    fn admits(&self, l: &Line) -> bool {
        if l.template.as_deref() == Some(self.template.as_str()) {
            return true;
        }
        if let Some(s) = &l.sequence {
            return self.sequences.contains(s);
        }
        match l.kind.as_str() {
            // Something that came in and could not be used may be the
            // missing event.
            "dead_letter" => true,
            _ => l
                .detail
                .get("type")
                .or_else(|| l.detail.get("event_type"))
                .and_then(Value::as_str)
                .is_some_and(|t| self.events.contains(t)),
        }
    }
}

/// The sequences with an email step of `template`, with those steps.
fn senders<'c>(catalog: &'c Catalog, template: &str) -> Vec<(&'c Sequence, Vec<&'c str>)> {
    catalog
        .sequences
        .values()
        .filter_map(|s| {
            let steps: Vec<&str> = s
                .plan
                .instrs
                .iter()
                .filter(|i| matches!(&i.op, Op::Email { template: t, .. } if t == template))
                .map(|i| i.id.as_str())
                .collect();
            (!steps.is_empty()).then_some((s, steps))
        })
        .collect()
}

/// The sequences with a `start` step of `sequence`, with those steps.
fn starters<'c>(catalog: &'c Catalog, sequence: &str) -> Vec<(&'c Sequence, Vec<&'c str>)> {
    catalog
        .sequences
        .values()
        .filter_map(|s| {
            let steps: Vec<&str> = s
                .plan
                .instrs
                .iter()
                .filter(|i| matches!(&i.op, Op::Start(t) if t == sequence))
                .map(|i| i.id.as_str())
                .collect();
            (!steps.is_empty()).then_some((s, steps))
        })
        .collect()
}

/// Did the customer get `template` (of order `order`, if given), and if
/// not, why.
fn answer(
    catalog: &Catalog,
    rows: &JourneyRows,
    ix: &Index,
    order: Option<&str>,
    template: &str,
) -> Answer {
    let of_order =
        |o: Option<String>| order.is_none_or(|want| o.as_deref().is_none_or(|o| o == want));
    let mut reasons: Vec<Reason> = rows
        .emails
        .iter()
        .filter(|m| {
            m.view.template == template && of_order(ix.order_of_key(&m.view.idempotency_key))
        })
        .map(|m| email_reason(m, rows, ix))
        .collect();
    if reasons.is_empty() {
        let sending = senders(catalog, template);
        if sending.is_empty() {
            reasons.push(Reason {
                kind: ReasonKind::NoSequence,
                message: format!("no sequence has an email step of template `{template}`"),
                ..Reason::none()
            });
        }
        let mut seen = BTreeSet::new();
        for (seq, steps) in sending {
            let what = format!("email step `{}`", steps.join("`, `"));
            sequence_reasons(
                catalog,
                rows,
                ix,
                order,
                seq,
                &what,
                &mut seen,
                &mut reasons,
            );
        }
    }
    let sent = reasons.iter().any(|r| r.kind == ReasonKind::Sent);
    let summary = if sent {
        let r = reasons
            .iter()
            .find(|r| r.kind == ReasonKind::Sent)
            .expect("found");
        format!("yes: {}", r.message)
    } else {
        let first = reasons
            .first()
            .map(|r| r.message.as_str())
            .unwrap_or("no record of it");
        format!("no: {first}")
    };
    Answer {
        template: template.to_string(),
        sent,
        summary,
        reasons,
    }
}

impl Reason {
    fn none() -> Self {
        Reason {
            kind: ReasonKind::NoSequence,
            sequence: None,
            enrollment: None,
            order_id: None,
            step: None,
            at: None,
            until: None,
            message: String::new(),
        }
    }
}

/// What became of one email.
fn email_reason(m: &crate::store::EmailRow, rows: &JourneyRows, ix: &Index) -> Reason {
    let v = &m.view;
    let log: Vec<&DeliveryEntry> = {
        let mut l: Vec<&DeliveryEntry> = rows
            .deliveries
            .iter()
            .filter(|d| d.idempotency_key == v.idempotency_key)
            .collect();
        l.sort_by_key(|d| d.id);
        l
    };
    let last = |o: Outcome| log.iter().rev().find(|d| d.outcome == o).copied();
    let base = Reason {
        sequence: Some(v.sequence.clone()),
        enrollment: Some(enrollment_of_key(&v.idempotency_key).to_string()),
        order_id: ix.order_of_key(&v.idempotency_key),
        step: Some(v.step.clone()),
        ..Reason::none()
    };
    let (kind, at, until, mut message) = match v.status {
        OutboxStatus::Sent => {
            let reply = last(Outcome::Sent)
                .map(|d| d.detail.clone())
                .unwrap_or_default();
            let at = v.sent_at.or(last(Outcome::Sent).map(|d| d.at));
            let when = at.map(|t| format!(" at {}", iso(t))).unwrap_or_default();
            (
                ReasonKind::Sent,
                at,
                None,
                format!("sent{when}; the server said: {reply}"),
            )
        }
        OutboxStatus::Pending | OutboxStatus::Sending => match log.last() {
            Some(d) if d.outcome == Outcome::Deferred => (
                ReasonKind::Deferred,
                Some(d.at),
                Some(v.not_before),
                format!("deferred until {}: {}", iso(v.not_before), d.detail),
            ),
            Some(d) if d.outcome == Outcome::Retry => (
                ReasonKind::Pending,
                Some(d.at),
                Some(v.not_before),
                format!(
                    "not sent yet, tried again at {}: {}",
                    iso(v.not_before),
                    d.detail
                ),
            ),
            _ => (
                ReasonKind::Pending,
                Some(m.created_at),
                Some(v.not_before),
                format!("enqueued, due at {}", iso(v.not_before)),
            ),
        },
        OutboxStatus::Skipped => {
            let d = last(Outcome::Skipped);
            let why = d
                .map(|d| d.detail.clone())
                .or_else(|| v.last_error.clone())
                .unwrap_or_default();
            (
                ReasonKind::Skipped,
                d.map(|d| d.at),
                None,
                format!("skipped: {why}"),
            )
        }
        OutboxStatus::Failed => {
            let d = last(Outcome::Failed);
            let why = d
                .map(|d| d.detail.clone())
                .or_else(|| v.last_error.clone())
                .unwrap_or_default();
            (
                ReasonKind::Failed,
                d.map(|d| d.at),
                None,
                format!("failed: {why}"),
            )
        }
    };
    // What the customer and their mailbox did with it.
    let bounced = rows.events.iter().find(|e| {
        matches!(e.event.kind.as_str(), "email.bounced" | "email.complained")
            && v.message_id.is_some()
            && e.event.data.get("message_id").and_then(Value::as_str) == v.message_id.as_deref()
    });
    if let Some(b) = bounced {
        let _ = write!(
            message,
            "; then {} ({}) at {}",
            b.event.kind,
            b.event.id,
            iso(b.received_at)
        );
    }
    let human = |k: ActivityKind| {
        rows.activity
            .iter()
            .filter(|a| a.idempotency_key == v.idempotency_key && a.kind == k && !a.machine)
            .count()
    };
    let (opens, clicks) = (human(ActivityKind::Open), human(ActivityKind::Click));
    if opens + clicks > 0 {
        let _ = write!(
            message,
            "; opened {opens} time(s), clicked {clicks} time(s)"
        );
    }
    Reason {
        kind,
        at,
        until,
        message,
        ..base
    }
}

/// How a time-driven sequence enrolls, in words; `None` for the others.
fn time_trigger(seq: &Sequence) -> Option<String> {
    use crate::sequence::model::{DateFact, DateSource, Repeat, Trigger};
    let when = |w: Option<&crate::sequence::condition::Condition>| {
        w.map(|c| format!(", when `{}` holds then", c.source))
            .unwrap_or_default()
    };
    match seq.trigger.as_ref()? {
        Trigger::Date(d) => {
            let date = match &d.date {
                DateSource::Fact(f) => DateFact::ALL
                    .iter()
                    .find(|(_, x)| x == f)
                    .map(|(n, _)| format!("customer.{n}"))
                    .unwrap_or_default(),
                DateSource::Attribute(a) => format!("customer.attributes.{a}"),
            };
            let how = match d.repeat {
                Repeat::Yearly => "on each anniversary of",
                Repeat::Once => "once, on",
            };
            Some(format!(
                "its date trigger starts it {how} {date}{} (it is not there yet, or the date \
                 is not known)",
                when(d.when.as_ref())
            ))
        }
        Trigger::Schedule(s) => Some(format!(
            "its schedule `{}` offers it at each firing{}",
            s.source,
            when(s.when.as_ref())
        )),
        Trigger::Event { .. } => None,
    }
}

/// Why `seq` sent none of `what` (its email steps, or its `start` step) to
/// the customer: for each of its enrollments, or for the enrollment that
/// never was.
#[allow(clippy::too_many_arguments)]
fn sequence_reasons(
    catalog: &Catalog,
    rows: &JourneyRows,
    ix: &Index,
    order: Option<&str>,
    seq: &Sequence,
    what: &str,
    seen: &mut BTreeSet<String>,
    out: &mut Vec<Reason>,
) {
    if !seen.insert(seq.id.clone()) || seen.len() > MAX_STARTERS {
        return;
    }
    let base = Reason {
        sequence: Some(seq.id.clone()),
        ..Reason::none()
    };
    let of_order = |o: Option<&str>| order.is_none_or(|want| o.is_none_or(|o| o == want));
    let enrolled: Vec<&Enrollment> = rows
        .enrollments
        .iter()
        .filter(|e| e.sequence == seq.id && of_order(e.order_id.as_deref()))
        .collect();
    for e in &enrolled {
        let r = Reason {
            enrollment: Some(e.key.clone()),
            order_id: e.order_id.clone(),
            step: e.step.clone(),
            at: Some(e.updated_at),
            ..base.clone()
        };
        let at_step = e
            .step
            .as_deref()
            .map(|s| format!(" at step `{s}`"))
            .unwrap_or_default();
        out.push(match (&e.status, &e.waiting) {
            (Status::Active, Waiting::Time { until }) => Reason {
                kind: ReasonKind::Waiting,
                until: Some(*until),
                message: format!(
                    "{} has not reached {what} yet: it waits{at_step} until {}",
                    e.key,
                    iso(*until)
                ),
                ..r
            },
            (Status::Active, Waiting::Event { event, until }) => Reason {
                kind: ReasonKind::Waiting,
                until: Some(*until),
                message: format!(
                    "{} has not reached {what} yet: it waits{at_step} for {event} until {}",
                    e.key,
                    iso(*until)
                ),
                ..r
            },
            (Status::Active, Waiting::Nothing) => Reason {
                kind: ReasonKind::Waiting,
                message: format!("{} has not reached {what} yet{at_step}", e.key),
                ..r
            },
            (Status::Exited, _) => Reason {
                kind: ReasonKind::Exited,
                message: format!(
                    "{} exited{at_step} before {what}: {}",
                    e.key,
                    e.ended_reason.as_deref().unwrap_or("no reason recorded")
                ),
                ..r
            },
            (Status::Completed, _) => Reason {
                kind: ReasonKind::OtherBranch,
                message: format!(
                    "{} completed without reaching {what}{}",
                    e.key,
                    turns(rows, &e.key)
                ),
                ..r
            },
        });
    }
    if !enrolled.is_empty() {
        return;
    }
    // Never enrolled: what the journal says stopped it.
    let stopped: Vec<&Entry> = rows
        .journal
        .iter()
        .filter(|j| j.sequence.as_deref() == Some(seq.id.as_str()))
        .filter(|j| matches!(j.what, What::NotEnrolled { .. }))
        .filter(|j| {
            let event_order = match &j.what {
                What::NotEnrolled {
                    event_id: Some(id), ..
                } => ix.order_of_event(id),
                _ => None,
            };
            of_order(event_order.as_deref())
        })
        .collect();
    for j in &stopped {
        let What::NotEnrolled {
            event_id, message, ..
        } = &j.what
        else {
            continue;
        };
        let on = event_id
            .as_ref()
            .map(|id| {
                let kind = ix.event_types.get(id.as_str()).copied().unwrap_or("event");
                format!(" ({kind} {id})")
            })
            .unwrap_or_default();
        out.push(Reason {
            kind: ReasonKind::NotEnrolled,
            enrollment: j.enrollment_key.clone(),
            order_id: event_id.as_deref().and_then(|id| ix.order_of_event(id)),
            at: Some(j.at),
            message: format!("not enrolled in {}{on}: {message}", seq.id),
            ..base.clone()
        });
    }
    if !stopped.is_empty() {
        return;
    }
    if let Some(why) = time_trigger(seq) {
        out.push(Reason {
            kind: ReasonKind::NotEnrolled,
            message: format!("not enrolled in {} (yet): {why}", seq.id),
            ..base.clone()
        });
    }
    if let Some(t) = seq.trigger.as_ref().and_then(|t| t.event()) {
        let came = rows
            .events
            .iter()
            .any(|e| e.event.kind == t && of_order(e.event.order_id()));
        let for_order = order.map(|o| format!(" for order {o}")).unwrap_or_default();
        let dead = if rows.dead_letters.is_empty() {
            String::new()
        } else {
            format!(
                " ({} dead-lettered event(s) name this customer: see the timeline)",
                rows.dead_letters.len()
            )
        };
        out.push(Reason {
            kind: ReasonKind::NoTriggerEvent,
            message: if came {
                format!(
                    "not enrolled in {}: its trigger {} came{for_order}, but no decision is recorded \
                     (before the journal was kept?)",
                    seq.id, t
                )
            } else {
                format!(
                    "not enrolled in {}: no {} event was received{for_order}{dead}",
                    seq.id, t
                )
            },
            ..base.clone()
        });
    }
    for (starter, steps) in starters(catalog, &seq.id) {
        let step = format!("step `{}` (start {})", steps.join("`, `"), seq.id);
        out.push(Reason {
            kind: ReasonKind::NotStarted,
            message: format!("{} is started by {} at its {step}", seq.id, starter.id),
            ..base.clone()
        });
        sequence_reasons(catalog, rows, ix, order, starter, &step, seen, out);
    }
}

/// The ways an enrollment turned (its `if` and `split` steps), as the
/// journal recorded them: why it went where it went.
fn turns(rows: &JourneyRows, key: &str) -> String {
    let turns: Vec<String> = rows
        .journal
        .iter()
        .filter(|j| j.enrollment_key.as_deref() == Some(key))
        .filter_map(|j| match &j.what {
            What::Condition {
                role: Role::If,
                checked,
                ..
            } => Some(format!(
                "`{}` was {} (took `{}`)",
                checked.source,
                checked
                    .value
                    .map_or("an error".to_string(), |v| v.to_string()),
                checked.branch.as_deref().unwrap_or("?")
            )),
            What::Split { variant } => Some(format!("split picked `{variant}`")),
            _ => None,
        })
        .collect();
    if turns.is_empty() {
        String::new()
    } else {
        format!(": {}", turns.join("; "))
    }
}

/// The journey as a terminal shows it: one line per entry (times in UTC,
/// ISO 8601), what it concerns indented below, then the answer.
pub fn render(j: &Journey) -> String {
    let mut out = String::new();
    let mut title = format!("customer {}", j.customer_id);
    if let Some(o) = &j.order {
        let _ = write!(title, ", order {o}");
    }
    if let Some(t) = &j.template {
        let _ = write!(title, ", template {t}");
    }
    let _ = writeln!(out, "{title}: {} entries (UTC)", j.entries.len());
    for l in &j.entries {
        let _ = writeln!(out, "{}  {:<16} {}", iso(l.at), l.kind, l.summary);
        let mut about = Vec::new();
        if let Some(s) = &l.sequence {
            about.push(format!("sequence {s}"));
        }
        if let Some(s) = &l.step {
            about.push(format!("step {s}"));
        }
        if let Some(o) = &l.order_id {
            about.push(format!("order {o}"));
        }
        if let Some(e) = &l.enrollment {
            about.push(format!("enrollment {e}"));
        }
        if !about.is_empty() {
            let _ = writeln!(out, "{:22}{}", "", about.join(" · "));
        }
    }
    if let Some(a) = &j.answer {
        let _ = writeln!(
            out,
            "\ndid {} get {}? {}",
            j.customer_id, a.template, a.summary
        );
        for r in &a.reasons {
            let _ = writeln!(out, "  - {}", r.message);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::engine::customer::CustomerState;
    use crate::engine::dispatch::{apply_event, apply_wake};
    use crate::event::Event;
    use crate::sequence::load::{parse_policies, parse_sequence};
    use crate::store::{EmailRow, OutboxView, ReceivedEvent};

    const SHIPPING: &str = r#"
id: shipping
category: transactional
trigger: {event: order.placed, when: 'order.total > 100.0'}
exit_when: [{event: order.cancelled}]
steps:
  - id: await-shipment
    wait_for: shipment.shipped
    within: 3d
  - email: order-shipped
  - start: tips
"#;

    const TIPS: &str = r#"
id: tips
category: value
steps:
  - id: settle-in
    wait: 1d
  - if: 'order.items.exists(i, i.category == "camera")'
    then: [{email: camera-tips}]
    else: [{email: generic-tips}]
"#;

    fn catalog() -> Catalog {
        let (p, d) = parse_policies(Path::new("_policies.yaml"), "default_timezone: UTC\n");
        assert!(!d.has_errors());
        let seqs = [SHIPPING, TIPS]
            .iter()
            .map(|t| {
                let (s, d) = parse_sequence(Path::new("t.yaml"), t);
                assert!(!d.has_errors(), "{d}");
                s.unwrap()
            })
            .collect();
        Catalog::new(seqs, p)
    }

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn ev(id: &str, kind: &str, order: &str, total: &str, at: &str) -> Event {
        let shipment = if kind.starts_with("shipment.") {
            r#","shipment":{"id":"s1","carrier":"DHL"}"#
        } else {
            ""
        };
        Event::parse(&format!(
            r#"{{"id":"{id}","type":"{kind}","occurred_at":"{at}",
            "customer":{{"id":"c1","email":"c1@example.com"}},
            "order":{{"id":"{order}","total":"{total}","currency":"EUR",
              "items":[{{"sku":"CAM","category":"camera","unit_price":"{total}"}}]}}{shipment}}}"#
        ))
        .unwrap()
    }

    /// What the store would hold after the engine took `events` (and woke
    /// what was due by `until`): plain rows, built by the real engine.
    fn rows(cat: &Catalog, events: &[Event], until: &str) -> JourneyRows {
        let mut st = CustomerState::default();
        let mut rows = JourneyRows::default();
        let take = |rows: &mut JourneyRows, ch: crate::engine::customer::Changes, at| {
            rows.journal.extend(ch.journal);
            for m in ch.emails {
                let j = m.job;
                rows.emails.push(EmailRow {
                    view: OutboxView {
                        id: rows.emails.len() as i64 + 1,
                        idempotency_key: j.idempotency_key,
                        customer_id: j.customer_id,
                        sequence: j.sequence,
                        step: j.step,
                        template: j.template,
                        category: j.category,
                        status: OutboxStatus::Pending,
                        attempts: 0,
                        not_before: j.due_at,
                        due_at: j.due_at,
                        message_id: None,
                        last_error: None,
                        sent_at: None,
                    },
                    created_at: at,
                });
            }
        };
        for e in events {
            let ch = apply_event(cat, &mut st, e, e.occurred_at);
            take(&mut rows, ch, e.occurred_at);
            rows.events.push(ReceivedEvent {
                event: e.clone(),
                received_at: e.occurred_at,
                source: "http".into(),
            });
        }
        let until = t(until);
        for i in 0..st.enrollments.len() {
            if let Some(w) = st.enrollments[i].wake_at().filter(|w| *w <= until) {
                let ch = apply_wake(cat, &mut st, i, w);
                take(&mut rows, ch, w);
            }
        }
        rows.enrollments = st.enrollments;
        rows
    }

    fn ask(cat: &Catalog, rows: &JourneyRows, template: &str) -> Answer {
        let filter = Filter {
            order: None,
            template: Some(template.into()),
        };
        assemble(cat, "c1", rows, &filter).answer.unwrap()
    }

    /// Sent: the answer names when and what the server said, and the
    /// customer's open.
    #[test]
    fn a_sent_email_is_a_yes_with_the_servers_reply() {
        let cat = catalog();
        let mut rows = rows(
            &cat,
            &[
                ev("e1", "order.placed", "o1", "150.00", "2026-11-20T10:00:00Z"),
                ev(
                    "e2",
                    "shipment.shipped",
                    "o1",
                    "150.00",
                    "2026-11-21T10:00:00Z",
                ),
            ],
            "2026-11-21T10:00:00Z",
        );
        let sent_at = t("2026-11-21T10:00:05Z");
        let m = &mut rows.emails[0];
        m.view.status = OutboxStatus::Sent;
        m.view.sent_at = Some(sent_at);
        m.view.message_id = Some("<m1@x>".into());
        rows.deliveries.push(DeliveryEntry {
            id: 1,
            at: sent_at,
            outbox_id: 1,
            idempotency_key: m.view.idempotency_key.clone(),
            customer_id: "c1".into(),
            address: "c1@example.com".into(),
            sequence: "shipping".into(),
            step: "order-shipped".into(),
            template: "order-shipped".into(),
            attempt: 1,
            outcome: Outcome::Sent,
            detail: "250 2.0.0 queued as 7F3A".into(),
            message_id: Some("<m1@x>".into()),
        });
        rows.activity.push(crate::store::Activity {
            idempotency_key: m.view.idempotency_key.clone(),
            customer_id: "c1".into(),
            kind: ActivityKind::Open,
            url: None,
            at: sent_at + chrono::TimeDelta::hours(1),
            machine: false,
        });
        let a = ask(&cat, &rows, "order-shipped");
        assert!(a.sent);
        assert_eq!(
            a.summary,
            "yes: sent at 2026-11-21T10:00:05Z; the server said: 250 2.0.0 queued as 7F3A; \
             opened 1 time(s), clicked 0 time(s)"
        );
        let j = assemble(&cat, "c1", &rows, &Filter::default());
        let kinds: Vec<&str> = j.entries.iter().map(|l| l.kind.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "event",
                "enrolled",
                "awaiting_event",
                "event",
                "received",
                "start",
                "enrolled",
                "waiting",
                "completed",
                "email_enqueued",
                "email_sent",
                "email_opened",
            ]
        );
    }

    /// Not sent: the sequence never started (its trigger condition, with the
    /// condition and the event); it waits (until when); it exited (the rule);
    /// a sequence started by another one waits for that one.
    /// Issue 11: a date-triggered sequence not started yet says how it
    /// starts, not that an event never came.
    #[test]
    fn a_time_driven_sequence_says_how_it_starts() {
        let (seq, d) = parse_sequence(
            Path::new("t.yaml"),
            "id: anniversary\ncategory: value\n\
             trigger: {date: customer.first_order_at, when: 'customer.orders_count > 1'}\n\
             steps:\n  - email: thanks\n",
        );
        assert!(!d.has_errors(), "{d}");
        let cat = Catalog::new(vec![seq.unwrap()], Default::default());
        let rows = rows(
            &cat,
            &[ev(
                "e1",
                "order.placed",
                "o1",
                "50.00",
                "2026-11-20T10:00:00Z",
            )],
            "2026-11-20T10:00:00Z",
        );
        let a = ask(&cat, &rows, "thanks");
        assert!(!a.sent);
        assert_eq!(a.reasons[0].kind, ReasonKind::NotEnrolled);
        assert_eq!(
            a.reasons[0].message,
            "not enrolled in anniversary (yet): its date trigger starts it on each anniversary \
             of customer.first_order_at, when `customer.orders_count > 1` holds then (it is \
             not there yet, or the date is not known)"
        );
    }

    #[test]
    fn a_template_not_received_says_why() {
        let cat = catalog();
        let cheap = rows(
            &cat,
            &[ev(
                "e1",
                "order.placed",
                "o1",
                "50.00",
                "2026-11-20T10:00:00Z",
            )],
            "2026-11-20T10:00:00Z",
        );
        let a = ask(&cat, &cheap, "order-shipped");
        assert!(!a.sent);
        assert_eq!(a.reasons[0].kind, ReasonKind::NotEnrolled);
        assert_eq!(
            a.reasons[0].message,
            "not enrolled in shipping (order.placed e1): trigger condition \
             `order.total > 100.0` was false"
        );
        assert_eq!(a.reasons[0].order_id.as_deref(), Some("o1"));

        let waiting = rows(
            &cat,
            &[ev(
                "e1",
                "order.placed",
                "o1",
                "150.00",
                "2026-11-20T10:00:00Z",
            )],
            "2026-11-20T10:00:00Z",
        );
        let a = ask(&cat, &waiting, "order-shipped");
        assert_eq!(a.reasons[0].kind, ReasonKind::Waiting);
        assert_eq!(a.reasons[0].until, Some(t("2026-11-23T10:00:00Z")));
        assert_eq!(
            a.summary,
            "no: shipping/c1/o1 has not reached email step `order-shipped` yet: it waits at \
             step `await-shipment` for shipment.shipped until 2026-11-23T10:00:00Z"
        );
        // The tips come after the shipment: tips is started by shipping,
        // which has not got there.
        let a = ask(&cat, &waiting, "camera-tips");
        let kinds: Vec<ReasonKind> = a.reasons.iter().map(|r| r.kind).collect();
        assert_eq!(kinds, [ReasonKind::NotStarted, ReasonKind::Waiting]);
        assert_eq!(
            a.reasons[0].message,
            "tips is started by shipping at its step `start-tips` (start tips)"
        );
        assert!(
            a.reasons[1]
                .message
                .starts_with("shipping/c1/o1 has not reached step `start-tips` (start tips) yet"),
            "{:?}",
            a.reasons
        );

        let cancelled = rows(
            &cat,
            &[
                ev("e1", "order.placed", "o1", "150.00", "2026-11-20T10:00:00Z"),
                ev(
                    "e2",
                    "order.cancelled",
                    "o1",
                    "150.00",
                    "2026-11-20T12:00:00Z",
                ),
            ],
            "2026-11-20T12:00:00Z",
        );
        let a = ask(&cat, &cancelled, "order-shipped");
        assert_eq!(a.reasons[0].kind, ReasonKind::Exited);
        assert_eq!(
            a.reasons[0].message,
            "shipping/c1/o1 exited at step `await-shipment` before email step `order-shipped`: \
             exit_when order.cancelled (e2)"
        );
        // The other branch of an `if`: completed, and which way it went.
        let camera = rows(
            &cat,
            &[
                ev("e1", "order.placed", "o1", "150.00", "2026-11-20T10:00:00Z"),
                ev(
                    "e2",
                    "shipment.shipped",
                    "o1",
                    "150.00",
                    "2026-11-20T12:00:00Z",
                ),
            ],
            "2026-11-22T12:00:00Z",
        );
        let a = ask(&cat, &camera, "generic-tips");
        assert_eq!(a.reasons[0].kind, ReasonKind::OtherBranch, "{a:#?}");
        assert!(
            a.reasons[0].message.ends_with(
                r#"`order.items.exists(i, i.category == "camera")` was true (took `then`)"#
            ),
            "{}",
            a.reasons[0].message
        );
        // Nothing at all: no order came.
        let a = ask(&cat, &JourneyRows::default(), "order-shipped");
        assert_eq!(a.reasons[0].kind, ReasonKind::NoTriggerEvent);
        assert_eq!(
            a.summary,
            "no: not enrolled in shipping: no order.placed event was received"
        );
        let a = ask(&cat, &JourneyRows::default(), "no-such-template");
        assert_eq!(a.reasons[0].kind, ReasonKind::NoSequence);
    }

    /// `order` keeps that order's lines and those that name none; `template`
    /// the lines of the sequences concerned. The text has one line per entry
    /// with its time in UTC.
    #[test]
    fn filters_and_the_text() {
        let cat = catalog();
        let rows = rows(
            &cat,
            &[
                ev("e1", "order.placed", "o1", "150.00", "2026-11-20T10:00:00Z"),
                ev("e2", "order.placed", "o2", "50.00", "2026-11-20T11:00:00Z"),
            ],
            "2026-11-20T11:00:00Z",
        );
        let only = |order: &str| Filter {
            order: Some(order.into()),
            template: None,
        };
        let j = assemble(&cat, "c1", &rows, &only("o2"));
        assert!(
            j.entries
                .iter()
                .all(|l| l.order_id.as_deref() == Some("o2"))
        );
        assert_eq!(j.entries.len(), 2, "{:#?}", j.entries);
        let text = render(&j);
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("customer c1, order o2: 2 entries (UTC)"));
        assert_eq!(
            lines.next(),
            Some(
                "2026-11-20T11:00:00Z  event            received order.placed e2 for order o2 via http"
            )
        );
        assert_eq!(lines.next(), Some("                      order o2"));
        assert!(lines.next().unwrap().starts_with(
            "2026-11-20T11:00:00Z  not_enrolled     not enrolled: trigger condition `order.total > 100.0`"
        ));
    }

    /// A dead letter's payload may be cut short or broken: the ids before
    /// the break are still read, and only where they belong.
    #[test]
    fn payload_ids_are_read_leniently() {
        use crate::store::payload_id;
        let cut = r#"{"id":"e\"1","type":"order.placed","order":{"items":[{"id":"i1"}],"id":"o1"},"customer":{"email":"a@b","id":"c1"},"data":{"x":"#;
        assert_eq!(payload_id(cut, None).as_deref(), Some("e\"1"));
        assert_eq!(payload_id(cut, Some("customer")).as_deref(), Some("c1"));
        assert_eq!(payload_id(cut, Some("order")).as_deref(), Some("o1"));
        assert_eq!(
            payload_id(r#"{"customer":{"id":12}}"#, Some("customer")),
            None
        );
        assert_eq!(
            payload_id(r#"{"customer":{"id":"c"#, Some("customer")),
            None
        );
        assert_eq!(payload_id("not json at all", None), None);
        assert_eq!(
            payload_id(r#"{"x":{"customer":{"id":"c9"}}}"#, Some("customer")),
            None
        );
    }
}
