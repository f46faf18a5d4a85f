//! The sender's decisions, pure: whether and when a claimed email may go and
//! to whom, and what a transport's answer means for the row (sent, retried
//! on the schedule, or failed). The outbox worker moves the data; this
//! decides.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::policy::{self, Decision, Recipient, Sent};
use super::profile::Profile;
use super::state::{Context, ContextView};
use crate::sequence::duration::format as format_duration;
use crate::sequence::model::{Catalog, Category};

/// Where an outbox row stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboxStatus {
    /// Waiting for its `not_before`.
    Pending,
    /// Handed to the transport; a worker that dies here leaves it for another.
    Sending,
    Sent,
    Skipped,
    Failed,
}

/// How one step of a row's life ended, as the delivery log records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Deferred,
    Skipped,
    Sent,
    Retry,
    Failed,
}

macro_rules! named {
    ($t:ty { $($v:ident = $s:literal),* $(,)? }) => {
        impl $t {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$v => $s),* }
            }

            pub fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some(Self::$v),)* _ => None }
            }
        }

        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

named!(OutboxStatus {
    Pending = "pending",
    Sending = "sending",
    Sent = "sent",
    Skipped = "skipped",
    Failed = "failed",
});
named!(Outcome {
    Deferred = "deferred",
    Skipped = "skipped",
    Sent = "sent",
    Retry = "retry",
    Failed = "failed",
});

/// A claimed outbox row: one email the engine decided on, with the context it
/// is rendered from.
#[derive(Debug, Clone, PartialEq)]
pub struct Queued {
    pub id: i64,
    pub idempotency_key: String,
    pub customer_id: String,
    pub sequence: String,
    pub step: String,
    pub template: String,
    pub category: Category,
    /// `Pending`, or `Sending` when a worker died before finishing.
    pub status: OutboxStatus,
    /// Claims so far; a worker's writes are fenced by the count it claimed at.
    pub attempts: i64,
    /// Transient transport failures so far (the retry schedule's position).
    pub retries: i64,
    /// Not to be sent before: starts at `due_at`, moved by deferrals and
    /// retries.
    pub not_before: DateTime<Utc>,
    /// When the email first became due; never moved. How late it would go
    /// is measured from here (`stale_after`).
    pub due_at: DateTime<Utc>,
    pub context: Arc<Context>,
}

/// What the send policy sees: the customer and the mail already sent.
#[derive(Debug)]
pub struct SendContext<'a> {
    pub row: &'a Queued,
    pub profile: Option<&'a Profile>,
    /// Why the customer's address is on the store's suppression list, if
    /// it is.
    pub suppressed: Option<String>,
    pub history: &'a [Sent],
}

/// What to do with a claimed row, decided before the transport is called.
#[derive(Debug, Clone, PartialEq)]
pub enum SendPlan {
    /// Hand it to the transport now (the row is marked `sending`).
    Send,
    /// Not yet: move `not_before`, say why.
    Defer {
        until: DateTime<Utc>,
        reason: String,
    },
    /// Never: logged with its reason, not retried.
    Skip { reason: String },
    /// A stale claim (another worker got there first): leave the row alone.
    Stale,
}

/// How a transport call ended, as a transport reports it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TransportError {
    /// Worth trying again later (a 4xx reply, a connection failure).
    #[error("transient: {0}")]
    Transient(String),
    /// Final (a 5xx reply, a message the server will never take).
    #[error("permanent: {0}")]
    Permanent(String),
    /// Final, and the server said the address itself does not exist or
    /// takes no mail (`550 5.1.1`): the address is suppressed.
    #[error("recipient refused: {0}")]
    Refused(String),
    /// The server could not be reached or would not talk (connection
    /// refused, greeting timed out, TLS failed): not the message's fault.
    /// The row goes back to the queue without using a retry, and the sender
    /// pauses until the server answers again.
    #[error("server unavailable: {0}")]
    Unavailable(String),
}

/// What becomes of a row after its transport call.
#[derive(Debug, Clone, PartialEq)]
pub enum SendOutcome {
    Sent {
        message_id: String,
        detail: String,
    },
    Retry {
        at: DateTime<Utc>,
        error: String,
    },
    /// Back to the queue at `at` without using a retry (the server was
    /// unavailable: nothing was said about this message).
    Held {
        at: DateTime<Utc>,
        error: String,
    },
    Failed {
        error: String,
    },
    /// Failed, and the recipient's address is to be suppressed.
    Refused {
        error: String,
    },
}

impl SendOutcome {
    pub fn outcome(&self) -> Outcome {
        match self {
            SendOutcome::Sent { .. } => Outcome::Sent,
            SendOutcome::Retry { .. } => Outcome::Retry,
            SendOutcome::Held { .. } => Outcome::Deferred,
            SendOutcome::Failed { .. } | SendOutcome::Refused { .. } => Outcome::Failed,
        }
    }
}

/// The customer as the send policy sees them.
pub fn recipient(catalog: &Catalog, profile: &Profile, suppressed: bool) -> Recipient {
    Recipient {
        marketing_consent: profile.marketing_consent(),
        promo_unsubscribed: profile.promo_unsubscribed,
        suppressed: suppressed || profile.suppressed,
        timezone: profile
            .customer
            .timezone
            .unwrap_or(catalog.policies.default_timezone),
    }
}

/// The send policy for a claimed row, at `now`: the policy's rules, then
/// whether the email would go too late after it was due (`stale_after`;
/// a deferral that would make it so skips it at once).
pub fn decide(catalog: &Catalog, ctx: &SendContext, now: DateTime<Utc>) -> SendPlan {
    let Some(profile) = ctx.profile else {
        return SendPlan::Skip {
            reason: "unknown customer".into(),
        };
    };
    let policies = &catalog.policies;
    // Nothing goes to a customer an operator stopped, transactional mail
    // included, until the stop is lifted.
    if let Some(stop) = &profile.stopped {
        return SendPlan::Skip {
            reason: super::operator::stopped_reason(&stop.reason),
        };
    }
    // Nothing goes to a suppressed address, transactional mail included;
    // the reason says why (the list's reason first: it names the event).
    if let Some(why) = ctx
        .suppressed
        .clone()
        .or_else(|| profile.suppression_reason())
    {
        return SendPlan::Skip {
            reason: format!("address suppressed: {why}"),
        };
    }
    if let Some(reason) = past_ceiling(catalog, ctx.history, now) {
        return SendPlan::Skip { reason };
    }
    let to = recipient(catalog, profile, false);
    let tz = to.timezone;
    let until = match policy::decide(policies, ctx.row.category, now, &to, ctx.history) {
        Decision::SendAt(t) => t,
        Decision::Skip(why) => {
            return SendPlan::Skip {
                reason: why.to_string(),
            };
        }
    };
    let deferred_by = (until > now).then(|| {
        let quiet = policies
            .quiet_hours
            .is_some_and(|q| policy::in_quiet_hours(now.with_timezone(&tz).time(), q));
        if quiet {
            "quiet hours"
        } else {
            "frequency cap"
        }
    });
    if let Some(stale) = stale(catalog, ctx.row, until.max(now), deferred_by) {
        return stale;
    }
    match deferred_by {
        None => SendPlan::Send,
        Some(why) => SendPlan::Defer {
            until,
            reason: format!("{why}: deferred to {}", until.to_rfc3339()),
        },
    }
}

/// Why the per-customer ceiling stops this email, if it does: the customer
/// was sent `ceiling.emails` emails (of any category) in the `ceiling.per`
/// before `now`. A safety net against runaway sequences, counted from the
/// history the sender loads anyway.
fn past_ceiling(catalog: &Catalog, history: &[Sent], now: DateTime<Utc>) -> Option<String> {
    let c = &catalog.policies.ceiling;
    let since = now.checked_sub_signed(c.per)?;
    let sent = history.iter().filter(|s| s.at > since).count();
    (sent >= c.emails as usize).then(|| {
        format!(
            "ceiling: the customer was sent {sent} emails in the last {} \
             (policies `ceiling`: {} at most); a runaway sequence is the likely cause",
            crate::sequence::duration::format(c.per),
            c.emails
        )
    })
}

/// A skip for a row that would go at `at`, more than its category's
/// `stale_after` after it first became due (a service or scheduler that was
/// down, retries, deferrals); `None` while it is still in time.
/// `deferred_by` names the rule that would hold it until `at`.
pub fn stale(
    catalog: &Catalog,
    row: &Queued,
    at: DateTime<Utc>,
    deferred_by: Option<&str>,
) -> Option<SendPlan> {
    let limit = catalog.policies.stale_after.of(row.category);
    let late = at.signed_duration_since(row.due_at);
    if late <= limit {
        return None;
    }
    // Whole minutes: the seconds of a lateness in days say nothing.
    let late = format_duration(chrono::TimeDelta::minutes(late.num_minutes()));
    let when = match deferred_by {
        Some(rule) => format!("{rule} would defer it to {}, ", at.to_rfc3339()),
        None => String::new(),
    };
    Some(SendPlan::Skip {
        reason: format!(
            "stale: {when}{late} after it was due at {}, more than stale_after.{} ({})",
            row.due_at.to_rfc3339(),
            row.category.as_str(),
            format_duration(limit)
        ),
    })
}

/// The context an email is rendered from: the enrollment's, with the
/// customer as the store knows them now (address, name, locale).
pub fn render_context<'a>(row: &'a Queued, profile: Option<&'a Profile>) -> ContextView<'a> {
    let mut context = row.context.view();
    if let Some(p) = profile {
        context.customer = &p.customer;
        context.facts = &p.ledger.facts;
    }
    context
}

/// What a transport's answer means for the row: a transient failure is
/// retried after `retry[retries]` seconds until the schedule runs out; an
/// unavailable server costs no retry.
pub fn after_transport(
    row: &Queued,
    message_id: &str,
    result: Result<String, TransportError>,
    retry: &[i64],
    now: DateTime<Utc>,
) -> SendOutcome {
    match result {
        Ok(detail) => SendOutcome::Sent {
            message_id: message_id.to_string(),
            detail,
        },
        Err(TransportError::Transient(error)) => {
            let next = usize::try_from(row.retries).ok().and_then(|i| retry.get(i));
            let at =
                next.map(|s| chrono::TimeDelta::try_seconds(*s).and_then(|d| super::later(now, d)));
            match at {
                Some(Some(at)) => SendOutcome::Retry { at, error },
                Some(None) => SendOutcome::Failed {
                    error: format!(
                        "retry delay of {}s is past the dates aftercare can hold: {error}",
                        next.copied().unwrap_or_default()
                    ),
                },
                None => SendOutcome::Failed {
                    error: format!("gave up after {} retries: {error}", row.retries),
                },
            }
        }
        Err(TransportError::Permanent(error)) => SendOutcome::Failed { error },
        Err(TransportError::Refused(error)) => SendOutcome::Refused { error },
        // Due again at once: the sender that found the server away pauses
        // and probes it before claiming anything more.
        Err(TransportError::Unavailable(error)) => SendOutcome::Held { at: now, error },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(retries: i64) -> Queued {
        let e = crate::event::Event::parse(
            r#"{"id":"e","type":"customer.updated","occurred_at":"2026-11-20T10:00:00Z","customer":{"id":"c","email":"a@b.example"}}"#,
        )
        .unwrap();
        Queued {
            id: 1,
            idempotency_key: "k".into(),
            customer_id: "c".into(),
            sequence: "s".into(),
            step: "e".into(),
            template: "t".into(),
            category: Category::Transactional,
            status: OutboxStatus::Pending,
            attempts: 1,
            retries,
            not_before: e.occurred_at,
            due_at: e.occurred_at,
            context: Arc::new(Context::of_event(&e)),
        }
    }

    /// The sender's half of the per-customer ceiling: past `ceiling.emails`
    /// sent in `ceiling.per`, any category is skipped with the reason.
    #[test]
    fn the_ceiling_skips_mail_past_its_count() {
        let mut catalog = Catalog::default();
        catalog.policies.ceiling.emails = 3;
        let now: DateTime<Utc> = "2026-11-20T10:00:00Z".parse().unwrap();
        let sent = |hours_ago: i64| Sent {
            at: now - chrono::TimeDelta::hours(hours_ago),
            category: Category::Transactional,
            opened: None,
        };
        let r = row(0);
        let profile = crate::engine::profile::update(
            None,
            &crate::event::Event::parse(
                r#"{"id":"e","type":"customer.updated","occurred_at":"2026-11-20T10:00:00Z","customer":{"id":"c","email":"a@b.example"}}"#,
            )
            .unwrap(),
        );
        let plan = |history: &[Sent]| {
            let ctx = SendContext {
                row: &r,
                profile: Some(&profile),
                suppressed: None,
                history,
            };
            decide(&catalog, &ctx, now)
        };
        assert_eq!(plan(&[sent(1), sent(2), sent(30)]), SendPlan::Send);
        let SendPlan::Skip { reason } = plan(&[sent(1), sent(2), sent(3)]) else {
            panic!("not skipped")
        };
        assert!(
            reason.starts_with("ceiling: the customer was sent 3 emails in the last 1d"),
            "{reason}"
        );
    }

    fn catalog(policies: &str) -> Catalog {
        let (p, d) = crate::sequence::policies::parse_policies(
            std::path::Path::new("_policies.yaml"),
            policies,
        );
        assert!(d.0.is_empty(), "{d}");
        Catalog::new(Vec::new(), p)
    }

    /// Row `row(0)` of `category`, first due at `due`.
    fn due(category: Category, due: &str) -> Queued {
        let due: DateTime<Utc> = due.parse().unwrap();
        Queued {
            category,
            not_before: due,
            due_at: due,
            ..row(0)
        }
    }

    /// The decision at `now` for a customer who consents to marketing.
    fn plan(catalog: &Catalog, row: &Queued, history: &[Sent], now: &str) -> SendPlan {
        plan_for(catalog, row, history, now, true)
    }

    fn plan_for(
        catalog: &Catalog,
        row: &Queued,
        history: &[Sent],
        now: &str,
        consent: bool,
    ) -> SendPlan {
        let mut profile = Profile {
            customer: row.context.customer.clone(),
            suppressed: false,
            suppressed_for: None,
            soft_bounces: Vec::new(),
            unsubscribed: false,
            promo_unsubscribed: false,
            as_of: None,
            stopped: None,
            ledger: Default::default(),
        };
        profile.customer.marketing_consent = Some(consent);
        let ctx = SendContext {
            row,
            profile: Some(&profile),
            suppressed: None,
            history,
        };
        decide(catalog, &ctx, now.parse().unwrap())
    }

    fn skipped(plan: SendPlan) -> String {
        match plan {
            SendPlan::Skip { reason } => reason,
            other => panic!("expected a skip, got {other:?}"),
        }
    }

    /// The service was down for a week and more: mail due 10 days ago is
    /// skipped as stale, mail due an hour ago goes.
    #[test]
    fn an_email_long_past_its_due_time_is_skipped_as_stale() {
        let cat = catalog("");
        let now = "2026-11-20T10:00:00Z";
        let old = due(Category::Transactional, "2026-11-10T10:00:00Z");
        assert_eq!(
            skipped(plan(&cat, &old, &[], now)),
            "stale: 1w3d after it was due at 2026-11-10T10:00:00+00:00, \
             more than stale_after.transactional (3d)"
        );
        let recent = due(Category::Transactional, "2026-11-20T09:00:00Z");
        assert_eq!(plan(&cat, &recent, &[], now), SendPlan::Send);
        // At the limit it still goes; past it, not.
        let edge = due(Category::Value, "2026-11-18T10:00:00Z");
        assert_eq!(plan(&cat, &edge, &[], now), SendPlan::Send);
        let past = due(Category::Value, "2026-11-18T09:59:00Z");
        let reason = skipped(plan(&cat, &past, &[], now));
        assert!(
            reason.ends_with("more than stale_after.value (2d)"),
            "{reason}"
        );
    }

    /// "Due" is when the email first became due: a deferral moved
    /// `not_before`, and the lateness still counts from `due_at`.
    #[test]
    fn lateness_counts_from_the_first_due_time_not_the_deferred_one() {
        let cat = catalog("stale_after: {promo: 6h}\n");
        let mut row = due(Category::Promo, "2026-11-20T02:00:00Z");
        row.not_before = "2026-11-20T09:00:00Z".parse().unwrap();
        let reason = skipped(plan(&cat, &row, &[], "2026-11-20T09:00:00Z"));
        assert_eq!(
            reason,
            "stale: 7h after it was due at 2026-11-20T02:00:00+00:00, \
             more than stale_after.promo (6h)"
        );
        // The policy's own skips come first and keep their reasons.
        let no_consent = plan_for(&cat, &row, &[], "2026-11-20T09:00:00Z", false);
        assert_eq!(skipped(no_consent), "no marketing consent");
    }

    /// A deferral that would send the email past its `stale_after` skips it
    /// now instead of holding it for a send that will never come.
    #[test]
    fn a_deferral_past_stale_after_skips_at_once() {
        let policies = "frequency_cap: {max: 1, per: 16h}\nstale_after: {value: 12h}\n";
        let cat = catalog(policies);
        let now = "2026-11-20T10:00:00Z";
        let sent = |at: &str| Sent {
            at: at.parse().unwrap(),
            category: Category::Value,
            opened: None,
        };
        let row = due(Category::Value, "2026-11-20T08:00:00Z");
        // Sent at 06:00: the cap defers to 22:00, 14h after it was due.
        let reason = skipped(plan(&cat, &row, &[sent("2026-11-20T06:00:00Z")], now));
        assert_eq!(
            reason,
            "stale: frequency cap would defer it to 2026-11-20T22:00:00+00:00, \
             14h after it was due at 2026-11-20T08:00:00+00:00, more than stale_after.value (12h)"
        );
        // Sent at 01:00: deferred to 17:00, 9h after due: in time, deferred.
        match plan(&cat, &row, &[sent("2026-11-20T01:00:00Z")], now) {
            SendPlan::Defer { until, reason } => {
                assert_eq!(
                    until,
                    "2026-11-20T17:00:00Z".parse::<DateTime<Utc>>().unwrap()
                );
                assert!(reason.starts_with("frequency cap"), "{reason}");
            }
            other => panic!("expected a deferral, got {other:?}"),
        }
    }

    /// A retry delay past the calendar fails the row instead of panicking.
    #[test]
    fn a_retry_past_the_calendar_fails_the_row() {
        let now: DateTime<Utc> = "2026-11-20T10:00:00Z".parse().unwrap();
        let transient = || Err(TransportError::Transient("421 busy".into()));
        let at = after_transport(&row(0), "m", transient(), &[60], now);
        assert_eq!(
            at,
            SendOutcome::Retry {
                at: "2026-11-20T10:01:00Z".parse().unwrap(),
                error: "421 busy".into()
            }
        );
        for huge in [i64::MAX, 400_000 * 365 * 86_400] {
            let out = after_transport(&row(0), "m", transient(), &[huge], now);
            let SendOutcome::Failed { error } = out else {
                panic!("{out:?}")
            };
            assert!(error.contains("past the dates"), "{error}");
        }
    }
}
