//! The engine's own account of what it decided and why: one [`Entry`] per
//! decision (a step waited, a condition checked, a rule that fired, a
//! sequence that did not start), collected by [`super::dispatch`] into
//! [`Changes::journal`](super::customer::Changes::journal) and written by the
//! store in the same transaction as the decisions themselves. What the
//! sender decides about an email lives in the delivery log; `aftercare
//! explain` merges both (see `crate::journey`).
//!
//! Pure data: the engine fills it in as it goes, with the `now` it is given.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One decision about one customer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub customer_id: String,
    pub at: DateTime<Utc>,
    /// The enrollment it concerns (for [`What::NotEnrolled`], the one that
    /// would have started); `None` for an event's duplicate.
    pub enrollment_key: Option<String>,
    pub sequence: Option<String>,
    /// The step it happened at.
    pub step: Option<String>,
    pub what: What,
}

/// What was decided, with the values it was decided on. Stored as its
/// `kind` and the rest as JSON (`detail`), so the names here are the stored
/// and documented ones (README: "Why did (not) customer X get email Y?").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum What {
    /// An event whose id was already recorded came again: not applied.
    Duplicate {
        event_id: String,
        event_type: String,
    },
    /// The enrollment started, by an event (its trigger) or by another
    /// enrollment's `start` step.
    Enrolled {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        event_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        started_by: Option<String>,
    },
    /// The sequence did not start: why, in words and as a code.
    NotEnrolled {
        why: NotEnrolled,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        event_id: Option<String>,
        /// The trigger's condition, when that is what stopped it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        condition: Option<Checked>,
        message: String,
    },
    /// A condition the engine evaluated: an `if` step (`branch` says which
    /// way it went), a `wait_for`'s or an `exit_when` rule's `when` on an
    /// event.
    Condition {
        role: Role,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        event_id: Option<String>,
        #[serde(flatten)]
        checked: Checked,
    },
    /// A `split` step picked this variant for the customer.
    Split { variant: String },
    /// A `wait` or `wait_until` step: goes on at `until` (`source`: the
    /// `wait_until` expression).
    Waiting {
        until: DateTime<Utc>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source: Option<String>,
    },
    /// A `wait_until` whose time had passed already: went straight on.
    WaitPassed {
        until: DateTime<Utc>,
        source: String,
    },
    /// A `wait_for` step: goes on when `event` comes, or times out at `until`.
    AwaitingEvent { event: String, until: DateTime<Utc> },
    /// A `wait` or `wait_until` ended at its time.
    WaitOver { until: DateTime<Utc> },
    /// A `wait_for` ended without its event: the `on_timeout` steps run.
    TimedOut { event: String, until: DateTime<Utc> },
    /// A `wait_for` took in the event it waited for.
    Received {
        event_id: String,
        event_type: String,
    },
    /// A `start` step started (or tried to start) this sequence.
    Start { sequence: String },
    /// The enrollment ended early: an `exit_when` rule fired (`event_id`, the
    /// event that fired it), an `exit` step, a `wait_until` that failed.
    Exited {
        reason: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        event_id: Option<String>,
    },
    /// The enrollment ran past its last step.
    Completed,
    /// Something the operator should know (a condition that failed to run).
    Warning { message: String },
}

impl What {
    /// The stored name of the kind.
    pub fn kind(&self) -> &'static str {
        match self {
            What::Duplicate { .. } => "duplicate",
            What::Enrolled { .. } => "enrolled",
            What::NotEnrolled { .. } => "not_enrolled",
            What::Condition { .. } => "condition",
            What::Split { .. } => "split",
            What::Waiting { .. } => "waiting",
            What::WaitPassed { .. } => "wait_passed",
            What::AwaitingEvent { .. } => "awaiting_event",
            What::WaitOver { .. } => "wait_over",
            What::TimedOut { .. } => "timed_out",
            What::Received { .. } => "received",
            What::Start { .. } => "start",
            What::Exited { .. } => "exited",
            What::Completed => "completed",
            What::Warning { .. } => "warning",
        }
    }

    /// The kind apart (as stored) and the rest as a JSON object.
    pub fn split(&self) -> (&'static str, serde_json::Value) {
        let mut v = serde_json::to_value(self).expect("plain data serializes");
        if let Some(o) = v.as_object_mut() {
            o.remove("kind");
        }
        (self.kind(), v)
    }

    /// Reads back what [`What::split`] made; `None` for a kind or detail
    /// this program does not know.
    pub fn join(kind: &str, detail: serde_json::Value) -> Option<Self> {
        let mut o = match detail {
            serde_json::Value::Object(o) => o,
            serde_json::Value::Null => serde_json::Map::new(),
            _ => return None,
        };
        o.insert("kind".into(), kind.into());
        serde_json::from_value(serde_json::Value::Object(o)).ok()
    }
}

/// Why a sequence did not start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotEnrolled {
    /// The trigger's `when` was false for the event.
    TriggerFalse,
    /// The trigger's `when` failed to run (taken as false).
    TriggerFailed,
    /// The enrollment exists or has finished: the sequence's `enroll` rule
    /// (`once_per_order`, `once_per_customer`) lets it run once.
    AlreadyEnrolled,
    /// An `exit_when` event was recorded after the trigger.
    ExitRecorded,
    /// The per-customer ceiling of enrollments was reached.
    Ceiling,
    /// A chain of `start` steps too deep.
    StartTooDeep,
}

/// Where a condition was evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    If,
    WaitFor,
    ExitWhen,
    Trigger,
}

/// A condition as evaluated: its CEL source and what it gave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checked {
    pub source: String,
    /// `None` when it failed to run (then taken as false; `error` says why).
    pub value: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// For an `if` step: `then` or `else`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
}

impl Checked {
    /// The outcome of evaluating `source`.
    pub fn of(source: &str, result: &Result<bool, String>) -> Self {
        Self {
            source: source.to_string(),
            value: result.as_ref().ok().copied(),
            error: result.as_ref().err().cloned(),
            branch: None,
        }
    }

    /// Whether it held (a failure does not).
    pub fn holds(&self) -> bool {
        self.value == Some(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kind goes to the store and comes back the same, and a kind the
    /// program does not know is refused.
    #[test]
    fn split_and_join_round_trip() {
        let at: DateTime<Utc> = "2026-11-20T10:00:00Z".parse().unwrap();
        let all = [
            What::Duplicate {
                event_id: "e1".into(),
                event_type: "order.placed".into(),
            },
            What::NotEnrolled {
                why: NotEnrolled::TriggerFalse,
                event_id: Some("e1".into()),
                condition: Some(Checked::of("order.total > 100.0", &Ok(false))),
                message: "m".into(),
            },
            What::Condition {
                role: Role::If,
                event_id: None,
                checked: Checked {
                    branch: Some("else".into()),
                    ..Checked::of("x", &Err("no such key".into()))
                },
            },
            What::Waiting {
                until: at,
                source: None,
            },
            What::Completed,
        ];
        for w in all {
            let (kind, detail) = w.split();
            assert!(detail.get("kind").is_none());
            assert_eq!(What::join(kind, detail).as_ref(), Some(&w), "{kind}");
        }
        assert_eq!(What::join("no_such_kind", serde_json::json!({})), None);
    }
}
