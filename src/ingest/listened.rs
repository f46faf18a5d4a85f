//! Event types nobody listens to. A shop that publishes `shipment.shiped`
//! (a typo) gets its events accepted, as a shop may publish types of its
//! own, but the orders then look unshipped: nothing said so. Here:
//!
//! - [`Listeners`]: the types the loaded sequences listen to (a trigger, a
//!   `wait_for`, an `exit_when`) or the service itself reads
//!   ([`SERVICE_READS`]), and what an unheard type is: documented but unused,
//!   or unknown (with the nearest known type as a suggestion).
//! - [`Tracker`]: pure counting, the time passed in: one line per unknown
//!   type per hour, with how many events came.
//! - [`Watch`]: the two behind a lock, shared by the Kafka, HTTP and file
//!   ingest paths, logging the tracker's lines.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::diagnostic::closest;
use crate::event::{Event, KNOWN_TYPES};
use crate::sequence::load::walk;
use crate::sequence::model::{Catalog, StepKind};
use crate::store::Refused;

/// Types the service reads whatever the sequences say: they update the
/// customer's profile (consent, unsubscription, suppression, the facts of
/// orders and reviews), or erase the customer.
pub const SERVICE_READS: &[&str] = &[
    "order.placed",
    "order.cancelled",
    "order.refunded",
    "review.submitted",
    "customer.updated",
    "customer.unsubscribed",
    "customer.erased",
    "email.bounced",
    "email.complained",
];

/// At most one log line per unknown type in this long.
pub const WINDOW: TimeDelta = TimeDelta::hours(1);

/// Unknown types counted by name at most; past that (a shop sending a new
/// type per event, say) the rest are counted together, so memory stays bounded.
pub const MAX_TYPES: usize = 1000;

/// How the service hears one event type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hearing {
    /// A sequence listens to it, or the service reads it.
    Listened,
    /// A documented type ([`KNOWN_TYPES`]) that no loaded sequence listens to.
    Unused,
    /// Neither listened to nor documented: a typo, most likely.
    Unknown { suggestion: Option<String> },
}

/// The event types something listens to, from the loaded sequences.
#[derive(Debug, Clone)]
pub struct Listeners {
    listened: BTreeSet<String>,
}

impl Listeners {
    pub fn of(catalog: &Catalog) -> Self {
        let mut listened: BTreeSet<String> = SERVICE_READS.iter().map(|t| t.to_string()).collect();
        for seq in catalog.sequences.values() {
            if let Some(event) = seq.trigger.as_ref().and_then(|t| t.event()) {
                listened.insert(event.to_string());
            }
            for rule in &seq.exit_when {
                listened.insert(rule.event.clone());
            }
            walk(&seq.steps, &mut |step| {
                if let StepKind::WaitFor { event, .. } = &step.kind {
                    listened.insert(event.clone());
                }
            });
        }
        Self { listened }
    }

    pub fn hearing(&self, kind: &str) -> Hearing {
        if self.listened.contains(kind) {
            Hearing::Listened
        } else if KNOWN_TYPES.contains(&kind) {
            Hearing::Unused
        } else {
            Hearing::Unknown {
                suggestion: self.suggestion(kind),
            }
        }
    }

    /// The listened or documented type nearest to `kind`, if one is near.
    fn suggestion(&self, kind: &str) -> Option<String> {
        let mut names: Vec<&str> = self.listened.iter().map(String::as_str).collect();
        names.extend(KNOWN_TYPES.iter().filter(|t| !self.listened.contains(**t)));
        closest(kind, &names).map(str::to_string)
    }

    /// The unheard types among `kinds`, counted, in name order.
    pub fn survey<'a>(&self, kinds: impl IntoIterator<Item = &'a str>) -> Survey {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for k in kinds {
            *counts.entry(k).or_default() += 1;
        }
        let mut survey = Survey::default();
        for (kind, events) in counts {
            let unheard = |did_you_mean| Unheard {
                kind: kind.to_string(),
                events,
                did_you_mean,
            };
            match self.hearing(kind) {
                Hearing::Listened => {}
                Hearing::Unused => survey.unused.push(unheard(None)),
                Hearing::Unknown { suggestion } => survey.unknown.push(unheard(suggestion)),
            }
        }
        survey
    }
}

/// One unheard type among some events (the webhook's answer, `validate
/// --events`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unheard {
    #[serde(rename = "type")]
    pub kind: String,
    pub events: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub did_you_mean: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Survey {
    /// Not listened to and not documented.
    pub unknown: Vec<Unheard>,
    /// Documented, but no loaded sequence listens.
    pub unused: Vec<Unheard>,
}

/// One log line: `events` of `kind` since the type's last line (at most an
/// hour ago, or never).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// `None`: the types past [`MAX_TYPES`], counted together.
    pub kind: Option<String>,
    pub events: u64,
    pub suggestion: Option<String>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let events = match self.events {
            1 => "1 event".to_string(),
            n => format!("{n} events"),
        };
        let Some(kind) = &self.kind else {
            return write!(
                f,
                "further event types are not listened to by any sequence and are not \
                 documented (more than {MAX_TYPES} such types, not named): {events} in the last hour"
            );
        };
        write!(
            f,
            "event type {kind:?} is not listened to by any sequence and is not a documented \
             type: {events} in the last hour"
        )?;
        if let Some(s) = &self.suggestion {
            write!(f, " (did you mean {s}?)")?;
        }
        Ok(())
    }
}

/// What has been said of one type.
#[derive(Debug, Clone)]
struct Tally {
    /// When its last line was given.
    said_at: DateTime<Utc>,
    /// Events since then.
    pending: u64,
    suggestion: Option<String>,
}

/// Counts events of unknown types and says when a line is due: a type's
/// first events at once (a typo shows up the minute it starts), then at
/// most one line per [`WINDOW`] with the count since the last. Pure: the
/// time is passed in.
#[derive(Debug, Default)]
pub struct Tracker {
    types: BTreeMap<String, Tally>,
    /// Events of types past [`MAX_TYPES`].
    others: Option<Tally>,
}

impl Tracker {
    /// Counts `events` of `kind` at `now`; the line to give now, if one is due.
    pub fn count(
        &mut self,
        kind: &str,
        events: u64,
        suggestion: Option<&str>,
        now: DateTime<Utc>,
    ) -> Option<Report> {
        if let Some(t) = self.types.get_mut(kind) {
            t.pending += events;
            return take_due(Some(kind), t, now);
        }
        let suggestion = suggestion.map(str::to_string);
        // The first events of a type: said at once.
        if self.types.len() < MAX_TYPES {
            self.types.insert(
                kind.to_string(),
                Tally {
                    said_at: now,
                    pending: 0,
                    suggestion: suggestion.clone(),
                },
            );
            return Some(Report {
                kind: Some(kind.to_string()),
                events,
                suggestion,
            });
        }
        if let Some(t) = &mut self.others {
            t.pending += events;
            return take_due(None, t, now);
        }
        self.others = Some(Tally {
            said_at: now,
            pending: 0,
            suggestion: None,
        });
        Some(Report {
            kind: None,
            events,
            suggestion: None,
        })
    }

    /// The lines due at `now`: types with events since a line given a
    /// [`WINDOW`] ago or more. Types quiet for a whole window are forgotten
    /// (their next event is said at once again).
    pub fn due(&mut self, now: DateTime<Utc>) -> Vec<Report> {
        let mut out = Vec::new();
        self.types.retain(|kind, t| {
            if let Some(r) = take_due(Some(kind), t, now) {
                out.push(r);
                return true;
            }
            t.pending > 0 || now - t.said_at < WINDOW
        });
        if let Some(t) = &mut self.others {
            out.extend(take_due(None, t, now));
            if t.pending == 0 && now - t.said_at >= WINDOW {
                self.others = None;
            }
        }
        out
    }

    /// Every count not yet said, whatever the time (the end of a file, a
    /// stopping service).
    pub fn flush(&mut self) -> Vec<Report> {
        let mut out: Vec<Report> = std::mem::take(&mut self.types)
            .into_iter()
            .filter(|(_, t)| t.pending > 0)
            .map(|(kind, t)| Report {
                kind: Some(kind),
                events: t.pending,
                suggestion: t.suggestion,
            })
            .collect();
        if let Some(t) = self.others.take().filter(|t| t.pending > 0) {
            out.push(Report {
                kind: None,
                events: t.pending,
                suggestion: None,
            });
        }
        out
    }
}

/// The line for `t` if its window is over and events are pending; the
/// window starts again.
fn take_due(kind: Option<&str>, t: &mut Tally, now: DateTime<Utc>) -> Option<Report> {
    if t.pending == 0 || now - t.said_at < WINDOW {
        return None;
    }
    let r = Report {
        kind: kind.map(str::to_string),
        events: t.pending,
        suggestion: t.suggestion.clone(),
    };
    t.said_at = now;
    t.pending = 0;
    Some(r)
}

/// The listeners and the tracker, shared by every ingest path of a process.
#[derive(Debug)]
pub struct Watch {
    listeners: Listeners,
    tracker: Mutex<Tracker>,
    /// Unknown types named in the metrics so far (at most
    /// [`METRIC_TYPES`]; later ones are counted as `other`).
    named: Mutex<BTreeSet<String>>,
}

/// Unknown event types named as a metric label at most: a shop sending a new
/// type per event must not make a series per event.
pub const METRIC_TYPES: usize = 50;

impl Watch {
    pub fn new(catalog: &Catalog) -> Self {
        Self {
            listeners: Listeners::of(catalog),
            tracker: Mutex::new(Tracker::default()),
            named: Mutex::new(BTreeSet::new()),
        }
    }

    pub fn listeners(&self) -> &Listeners {
        &self.listeners
    }

    /// Counts the events (by type) that nobody hears and logs the lines
    /// due; returns what they were, for an answer.
    pub fn note<'a>(&self, kinds: impl IntoIterator<Item = &'a str>, now: DateTime<Utc>) -> Survey {
        let survey = self.listeners.survey(kinds);
        for u in &survey.unused {
            crate::telemetry::unmatched(&u.kind, u.events as u64);
        }
        if survey.unknown.is_empty() {
            return survey;
        }
        {
            let mut named = self.named.lock().unwrap_or_else(|p| p.into_inner());
            for u in &survey.unknown {
                let label = if named.contains(&u.kind) || named.len() < METRIC_TYPES {
                    named.insert(u.kind.clone());
                    u.kind.as_str()
                } else {
                    "other"
                };
                crate::telemetry::unmatched(label, u.events as u64);
            }
        }
        let reports: Vec<Report> = {
            let mut tracker = self.tracker.lock().unwrap_or_else(|p| p.into_inner());
            survey
                .unknown
                .iter()
                .filter_map(|u| {
                    tracker.count(&u.kind, u.events as u64, u.did_you_mean.as_deref(), now)
                })
                .collect()
        };
        log(&reports);
        survey
    }

    /// Logs the lines due at `now`.
    pub fn tick(&self, now: DateTime<Utc>) {
        let reports = self
            .tracker
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .due(now);
        log(&reports);
    }

    /// Logs every count not yet said.
    pub fn flush(&self) {
        let reports = self
            .tracker
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .flush();
        log(&reports);
    }

    /// Ticks every minute until `stop`, then says what is left.
    pub async fn run(self: Arc<Self>, clock: Arc<dyn Clock>, stop: CancellationToken) {
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(std::time::Duration::from_secs(60)) => {
                    self.tick(clock.now());
                }
            }
        }
        self.flush();
    }
}

/// The types of a batch's events that the store took (not refused).
pub fn kinds_taken<'a>(
    events: &'a [Event],
    refused: &'a [Refused],
) -> impl Iterator<Item = &'a str> + 'a {
    events
        .iter()
        .enumerate()
        .filter(|(i, _)| !refused.iter().any(|r| r.index == *i))
        .map(|(_, e)| e.kind.as_str())
}

fn log(reports: &[Report]) {
    for r in reports {
        match &r.kind {
            Some(kind) => tracing::warn!(event_type = %kind, events = r.events, "{r}"),
            None => tracing::warn!(events = r.events, "{r}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minutes: i64) -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH + TimeDelta::days(20_000) + TimeDelta::minutes(minutes)
    }

    fn line(kind: &str, events: u64, suggestion: Option<&str>) -> Report {
        Report {
            kind: Some(kind.into()),
            events,
            suggestion: suggestion.map(str::to_string),
        }
    }

    #[test]
    fn the_first_events_are_said_at_once_then_once_an_hour() {
        let mut t = Tracker::default();
        let typo = Some("shipment.shipped");
        assert_eq!(
            t.count("shipment.shiped", 2, typo, at(0)),
            Some(line("shipment.shiped", 2, typo))
        );
        // Within the hour: counted, not said.
        assert_eq!(t.count("shipment.shiped", 5, typo, at(10)), None);
        assert_eq!(t.count("shipment.shiped", 5, typo, at(59)), None);
        assert_eq!(t.due(at(59)), []);
        // The hour is over: the count since the last line, once.
        assert_eq!(t.due(at(60)), [line("shipment.shiped", 10, typo)]);
        assert_eq!(t.due(at(61)), []);
        // The next event within the new hour waits; past it, it is said
        // with the event that finds the window over.
        assert_eq!(t.count("shipment.shiped", 1, typo, at(90)), None);
        assert_eq!(
            t.count("shipment.shiped", 1, typo, at(121)),
            Some(line("shipment.shiped", 2, typo))
        );
        assert_eq!(t.flush(), []);
    }

    #[test]
    fn types_are_counted_apart_and_quiet_ones_forgotten() {
        let mut t = Tracker::default();
        assert!(t.count("a.x", 1, None, at(0)).is_some());
        assert!(t.count("b.y", 1, None, at(30)).is_some());
        assert_eq!(t.count("a.x", 3, None, at(40)), None);
        assert_eq!(t.due(at(60)), [line("a.x", 3, None)]);
        assert_eq!(t.due(at(90)), []);
        // b.y said at 30 and quiet since: forgotten an hour later, so its
        // next event is said at once, as a new type's.
        assert_eq!(t.due(at(91)), []);
        assert_eq!(t.count("b.y", 1, None, at(95)), Some(line("b.y", 1, None)));
        // A count left at the end is said by a flush.
        assert_eq!(t.count("a.x", 4, None, at(100)), None);
        assert_eq!(t.flush(), [line("a.x", 4, None)]);
    }

    #[test]
    fn types_past_the_limit_are_counted_together() {
        let mut t = Tracker::default();
        for i in 0..MAX_TYPES {
            assert!(t.count(&format!("t.n{i}"), 1, None, at(0)).is_some());
        }
        let first = t.count("past.one", 1, None, at(1)).unwrap();
        assert_eq!(first.kind, None);
        assert!(first.to_string().contains("more than 1000 such types"));
        assert_eq!(t.count("past.two", 2, None, at(2)), None);
        let due = t.due(at(61));
        assert_eq!(due.len(), 1);
        assert_eq!((due[0].kind.as_deref(), due[0].events), (None, 2));
    }

    #[test]
    fn the_line_reads_as_documented() {
        assert_eq!(
            line("shipment.shiped", 12, Some("shipment.shipped")).to_string(),
            "event type \"shipment.shiped\" is not listened to by any sequence and is not a \
             documented type: 12 events in the last hour (did you mean shipment.shipped?)"
        );
        assert!(
            line("shop.points", 1, None)
                .to_string()
                .ends_with(": 1 event in the last hour")
        );
    }

    fn shipped() -> Catalog {
        let (catalog, diags) = crate::sequence::load::load_dir(std::path::Path::new("sequences"));
        assert!(!diags.has_errors(), "{diags}");
        catalog
    }

    #[test]
    fn listeners_are_triggers_waits_exits_and_the_service() {
        let l = Listeners::of(&shipped());
        for kind in [
            "order.placed",       // a trigger
            "shipment.shipped",   // a wait_for
            "order.refunded",     // an exit_when
            "email.bounced",      // the service
            "customer.updated",   // the service
            "shipment.delivered", // a wait_for inside on_timeout too
        ] {
            assert_eq!(l.hearing(kind), Hearing::Listened, "{kind}");
        }
        assert_eq!(l.hearing("shipment.delayed"), Hearing::Unused);
        assert_eq!(
            l.hearing("shipment.shiped"),
            Hearing::Unknown {
                suggestion: Some("shipment.shipped".into())
            }
        );
        assert_eq!(
            l.hearing("shop.loyalty_points"),
            Hearing::Unknown { suggestion: None }
        );
        let survey = l.survey([
            "shipment.shiped",
            "order.placed",
            "shipment.shiped",
            "shipment.delayed",
        ]);
        assert_eq!(
            survey.unknown,
            [Unheard {
                kind: "shipment.shiped".into(),
                events: 2,
                did_you_mean: Some("shipment.shipped".into())
            }]
        );
        assert_eq!(survey.unused.len(), 1);
        assert_eq!(survey.unused[0].kind, "shipment.delayed");
    }
}
