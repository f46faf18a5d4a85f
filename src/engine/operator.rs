//! What an operator's action through the admin API (`/v1/admin/`) changes,
//! decided here like every other change: the admin routes load the
//! customer under their lock, call these, and hand the answer to the store.
//! Pure: `now` is an argument.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::customer::{Changes, CustomerState};
use super::dispatch::Note;
use super::outbox::{OutboxStatus, Queued};
use super::profile::{Profile, Stopped};
use super::state::{Status, Waiting};

/// The reason an email is skipped with while its customer is stopped, and
/// the reason their enrollments exit with when the stop comes.
pub fn stopped_reason(reason: &str) -> String {
    format!("stopped by an operator: {reason}")
}

/// Stops all of a customer's mail: the profile records the stop (so every
/// email decided from now on is skipped, those of enrollments that start
/// later too, until an operator lifts it), and each active enrollment exits
/// with the reason. `None` for a customer the store has no profile of.
///
/// A stop is durable on purpose: an operator who stops a customer's mail
/// (a complaint by phone, a legal hold, a support case) means "until I say
/// otherwise", not "until the next order". Events are still recorded and
/// sequences still run, so the customer's history stays true and their
/// skipped emails say why.
pub fn stop(state: &mut CustomerState, reason: &str, now: DateTime<Utc>) -> Option<Changes> {
    let mut profile = state.profile.clone()?;
    Arc::make_mut(&mut profile).stopped = Some(Stopped {
        reason: reason.to_string(),
        at: now,
    });
    let why = stopped_reason(reason);
    let mut changes = Changes {
        profile: Some(profile),
        ..Changes::default()
    };
    for (i, e) in state.enrollments.iter_mut().enumerate() {
        if !e.is_active() {
            continue;
        }
        e.status = Status::Exited;
        e.waiting = Waiting::Nothing;
        e.ended_reason = Some(why.clone());
        e.updated_at = now;
        changes.enrollments.insert(i);
        changes.notes.push(Note {
            enrollment_key: e.key.clone(),
            sequence: e.sequence.clone(),
            message: why.clone(),
        });
    }
    Some(changes)
}

/// Which of a customer's unsent emails a stop skips: every one still
/// pending (claimed by a sender or not: the sender finds it skipped). A row
/// being sent is with the transport already.
pub fn to_skip(unsent: &[Queued]) -> impl Iterator<Item = &Queued> {
    unsent.iter().filter(|r| r.status == OutboxStatus::Pending)
}

/// The profile with its stop lifted; `None` when it was not stopped.
pub fn lift_stop(profile: &Profile) -> Option<Profile> {
    profile.stopped.as_ref()?;
    let mut p = profile.clone();
    p.stopped = None;
    Some(p)
}

/// The profile once an operator took `email` off the suppression list: a
/// suppression of the customer's own address (a hard bounce, repeated soft
/// bounces, a complaint) is lifted with it, and the soft bounces counted
/// toward one are forgotten. `None` when the profile does not change.
pub fn lift_suppression(profile: &Profile, email: &str) -> Option<Profile> {
    if !profile.customer.email.as_str().eq_ignore_ascii_case(email) {
        return None;
    }
    let mut p = profile.clone();
    p.suppressed = false;
    p.suppressed_for = None;
    p.soft_bounces.clear();
    (p != *profile).then_some(p)
}

/// Whether an operator may send a row in `status` again: only a failed one
/// (a pending one is queued already; a sent one went out; a skipped one was
/// skipped by a rule that would skip it again). The error is the 409's
/// message.
pub fn may_retry(status: OutboxStatus) -> Result<(), String> {
    match status {
        OutboxStatus::Failed => Ok(()),
        other => Err(format!(
            "the email is {}, not failed: only a failed email can be retried",
            other.as_str()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;

    fn event(id: &str, kind: &str, at: &str) -> Event {
        Event::parse(&format!(
            r#"{{"id":"{id}","type":"{kind}","occurred_at":"{at}",
            "customer":{{"id":"c","email":"Anna@Example.com"}},
            "order":{{"id":"o","currency":"EUR","total":"1.00","items":[{{"sku":"s","name":"n","quantity":1,"unit_price":"1.00"}}]}}}}"#
        ))
        .unwrap()
    }

    fn now() -> DateTime<Utc> {
        "2026-11-26T10:00:00Z".parse().unwrap()
    }

    #[test]
    fn a_stop_is_kept_in_the_profile_and_lifted() {
        let p = super::super::profile::update(
            None,
            &event("1", "order.placed", "2026-11-25T10:00:00Z"),
        );
        let mut state = CustomerState {
            profile: Some(Arc::new(p.clone())),
            ..CustomerState::default()
        };
        assert!(lift_stop(&p).is_none(), "nothing to lift");
        let changes = stop(&mut state, "asked by phone", now()).unwrap();
        let stopped = changes.profile.unwrap();
        assert_eq!(
            stopped.stopped,
            Some(Stopped {
                reason: "asked by phone".into(),
                at: now()
            })
        );
        // A later event keeps the stop.
        let later = super::super::profile::update(
            Some(&stopped),
            &event("2", "order.placed", "2026-11-27T10:00:00Z"),
        );
        assert_eq!(later.stopped, stopped.stopped);
        assert_eq!(lift_stop(&later).unwrap().stopped, None);
        assert!(stop(&mut CustomerState::default(), "x", now()).is_none());
    }

    #[test]
    fn lifting_a_suppression_clears_the_profiles_own() {
        let mut p = super::super::profile::update(
            None,
            &event("1", "order.placed", "2026-11-25T10:00:00Z"),
        );
        assert!(
            lift_suppression(&p, "anna@example.com").is_none(),
            "not suppressed"
        );
        p.suppressed = true;
        p.suppressed_for = Some(super::super::profile::Suppression::HardBounce);
        assert!(lift_suppression(&p, "other@example.com").is_none());
        let lifted = lift_suppression(&p, "ANNA@example.com").unwrap();
        assert!(!lifted.suppressed && lifted.suppressed_for.is_none());
    }

    #[test]
    fn only_a_failed_email_is_retried() {
        assert!(may_retry(OutboxStatus::Failed).is_ok());
        for s in [
            OutboxStatus::Pending,
            OutboxStatus::Sending,
            OutboxStatus::Sent,
            OutboxStatus::Skipped,
        ] {
            let e = may_retry(s).unwrap_err();
            assert!(e.contains(s.as_str()), "{e}");
        }
    }
}
