//! The outbox worker: claims due rows, applies the send policy against the
//! customer's real history, renders, and hands the message to a transport.
//! Every attempt, deferral and skip is appended to `deliveries`.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::transport::{Outgoing, Transport};
use super::{Envelope, build_message, message_id};
use crate::clock::Clock;
use crate::engine::policy::{self, Decision, Recipient};
use crate::engine::profile::Profile;
use crate::sequence::model::{Catalog, Category};
use crate::store::{OutboxRow, SendContext, SendOutcome, SendPlan, Store};
use crate::template::Templates;
use crate::template::data::{self, Origin};

pub const LEASE: chrono::Duration = chrono::Duration::seconds(60);
pub const BATCH: i64 = 50;
pub const IDLE: Duration = Duration::from_millis(200);

/// Waits after transient failures: minutes, then hours, about four days in all.
pub const DEFAULT_RETRY: &[i64] = &[
    60,
    300,
    900,
    3600,
    3 * 3600,
    6 * 3600,
    12 * 3600,
    24 * 3600,
    24 * 3600,
    24 * 3600,
];

/// The customer as the send policy sees them.
pub fn recipient(catalog: &Catalog, profile: &Profile, suppressed: bool) -> Recipient {
    Recipient {
        marketing_consent: profile.marketing_consent(),
        suppressed: suppressed || profile.suppressed,
        timezone: profile
            .customer
            .timezone
            .unwrap_or(catalog.policies.default_timezone),
    }
}

/// The send policy for a claimed row, at `now`. Pure.
pub fn decide(catalog: &Catalog, ctx: &SendContext, now: DateTime<Utc>) -> SendPlan {
    let Some(profile) = ctx.profile else {
        return SendPlan::Skip {
            reason: "unknown customer".into(),
        };
    };
    let policies = &catalog.policies;
    let category = Category::parse(&ctx.row.category).unwrap_or(Category::Value);
    let to = recipient(catalog, profile, ctx.suppressed);
    let tz = to.timezone;
    match policy::decide(policies, category, now, &to, ctx.history) {
        Decision::SendAt(t) if t <= now => SendPlan::Send,
        Decision::SendAt(until) => {
            let quiet = policies
                .quiet_hours
                .is_some_and(|q| policy::in_quiet_hours(now.with_timezone(&tz).time(), q));
            let reason = if quiet {
                "quiet hours"
            } else {
                "frequency cap"
            };
            SendPlan::Defer {
                until,
                reason: format!("{reason}: deferred to {}", until.to_rfc3339()),
            }
        }
        Decision::Skip(why) => SendPlan::Skip {
            reason: why.to_string(),
        },
    }
}

pub struct Worker<S, T> {
    pub store: S,
    pub catalog: Arc<Catalog>,
    pub templates: Arc<Templates>,
    pub transport: T,
    pub clock: Arc<dyn Clock>,
    pub retry: Vec<i64>,
}

impl<S: Store, T: Transport> Worker<S, T> {
    /// Claims and processes one batch; returns how many rows were handled.
    pub async fn tick(&self) -> crate::store::Result<usize> {
        let now = self.clock.now();
        let rows = self.store.claim_outbox(now, LEASE, BATCH).await?;
        for row in &rows {
            if let Err(e) = self.process(row).await {
                tracing::error!(outbox_id = row.id, key = %row.idempotency_key, "send failed, retried after the lease: {e}");
            }
        }
        Ok(rows.len())
    }

    async fn process(&self, row: &OutboxRow) -> crate::store::Result<()> {
        let now = self.clock.now();
        let catalog = &self.catalog;
        let decide = |ctx: &SendContext| decide(catalog, ctx, now);
        let (plan, profile) = self.store.plan_send(row, now, &decide).await?;
        match plan {
            SendPlan::Send => {}
            SendPlan::Defer { reason, .. } | SendPlan::Skip { reason } => {
                tracing::info!(outbox_id = row.id, key = %row.idempotency_key, "{reason}");
                return Ok(());
            }
            SendPlan::Stale => return Ok(()),
        }
        let outcome = match self.render(row, profile.as_ref(), now) {
            Ok(out) => match self.transport.deliver(&out).await {
                Ok(detail) => SendOutcome::Sent {
                    message_id: out.message_id.clone(),
                    detail,
                },
                Err(super::transport::Error::Transient(e)) => match self.retry_at(row, now) {
                    Some(at) => SendOutcome::Retry { at, error: e },
                    None => SendOutcome::Failed {
                        error: format!("gave up after {} retries: {e}", row.retries),
                    },
                },
                Err(super::transport::Error::Permanent(e)) => SendOutcome::Failed { error: e },
            },
            Err(e) => SendOutcome::Failed { error: e },
        };
        match &outcome {
            SendOutcome::Sent { .. } => {
                tracing::info!(outbox_id = row.id, key = %row.idempotency_key, sequence = %row.sequence, step = %row.step, "sent")
            }
            other => tracing::warn!(outbox_id = row.id, key = %row.idempotency_key, "{other:?}"),
        }
        self.store
            .finish_send(row, self.clock.now(), &outcome)
            .await
    }

    fn retry_at(&self, row: &OutboxRow, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let i = usize::try_from(row.retries).unwrap_or(usize::MAX);
        self.retry
            .get(i)
            .map(|s| now + chrono::Duration::seconds(*s))
    }

    /// Renders the row for the customer as they are now.
    fn render(
        &self,
        row: &OutboxRow,
        profile: Option<&Profile>,
        now: DateTime<Utc>,
    ) -> Result<Outgoing, String> {
        let policies = &self.catalog.policies;
        let mut context = row.context.clone();
        if let Some(p) = profile {
            context.customer = p.customer.clone();
        }
        let data = data::build(
            &context,
            policies,
            Origin {
                sequence: &row.sequence,
                step: &row.step,
            },
        );
        let content = self
            .templates
            .render(&row.template, context.customer.locale.as_deref(), &data)
            .map_err(|e| format!("render: {e}"))?;
        let to = context.customer.email.to_string();
        let env = Envelope {
            to: &to,
            idempotency_key: &row.idempotency_key,
            sequence: &row.sequence,
            template: &row.template,
            date: now,
        };
        let msg = build_message(policies, &env, &content).map_err(|e| e.to_string())?;
        let (_, sender) = policies.sender.name_and_email();
        Ok(Outgoing {
            message_id: message_id(&row.idempotency_key, &sender),
            from: sender,
            to,
            bytes: msg.formatted(),
        })
    }

    pub async fn run(self, kick: Arc<Notify>, stop: CancellationToken) {
        while !stop.is_cancelled() {
            let mut pause = IDLE;
            match self.tick().await {
                Ok(n) if n > 0 => continue,
                Ok(_) => {
                    if let Ok(Some(next)) = self.store.next_outbox().await {
                        let until = (next - self.clock.now()).to_std().unwrap_or(Duration::ZERO);
                        pause = pause.min(until);
                    }
                }
                Err(e) => {
                    tracing::error!("sender: {e}");
                    pause = Duration::from_secs(1);
                }
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = kick.notified() => {}
                _ = tokio::time::sleep(pause) => {}
            }
        }
        tracing::info!("sender stopped");
    }
}
