//! The outbox worker: claims due rows, asks the engine whether each may go
//! (against the customer's real history, under the customer's lock), renders
//! it, and hands the message to a transport. Every attempt, deferral and skip
//! is appended to `deliveries`.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use futures_util::StreamExt as _;

use super::transport::{About, Outgoing, Transport};
use super::{Envelope, build_message, message_id, return_path};
use crate::clock::Clock;
use crate::engine::outbox::{
    self, OutboxStatus, Outcome, Queued, SendContext, SendOutcome, SendPlan,
};
use crate::engine::profile::Profile;
use crate::instance::Instance;
use crate::sequence::model::Catalog;
use crate::store::{Error, Store, Transition, Tx};
use crate::telemetry::{self, EmailResult};
use crate::template::data::{self, Origin};
use crate::template::{Parts, Templates};

pub const LEASE: chrono::Duration = chrono::Duration::seconds(60);
/// How long a row being handed to a transport that states no deadline of
/// its own is held before another worker may take it over (the first is then
/// presumed dead). See [`Transport::deadline`].
pub const SENDING_LEASE: chrono::Duration = chrono::Duration::minutes(5);
pub const BATCH: i64 = 50;
/// The largest message sent, in bytes as handed to the transport (1 MiB);
/// `AFTERCARE_MAX_EMAIL_BYTES` changes it. A larger one is skipped, not sent
/// and not retried. Mail providers refuse messages of 10-25 MB, and clients
/// clip far smaller HTML (Gmail at 102 KB).
pub const DEFAULT_MAX_EMAIL_BYTES: usize = 1 << 20;
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

/// Loads the customer under lock, checks the claim still holds, applies the
/// send policy and records the decision, in one transaction. A row to send
/// is marked `sending`, which counts toward caps at once.
/// `sending_lease` is how long a row marked `sending` is held: longer than
/// the transport may take.
pub async fn plan<S: Store>(
    store: &S,
    catalog: &Catalog,
    row: &Queued,
    now: DateTime<Utc>,
    sending_lease: chrono::Duration,
) -> crate::store::Result<(SendPlan, Option<Arc<Profile>>)> {
    plan_reporting(store, catalog, row, now, sending_lease, true).await
}

/// [`plan`]; `reporting`: whether an open pixel in the message can report
/// to this service (not in `simulate` and `demo`, whose links nobody
/// follows). A row sent with a pixel that can report counts as unopened for
/// the sunset rule until an open comes.
pub async fn plan_reporting<S: Store>(
    store: &S,
    catalog: &Catalog,
    row: &Queued,
    now: DateTime<Utc>,
    sending_lease: chrono::Duration,
    reporting: bool,
) -> crate::store::Result<(SendPlan, Option<Arc<Profile>>)> {
    let started = std::time::Instant::now();
    let mut tx = store.begin().await?;
    let profile = tx.lock_profile(&row.customer_id).await?;
    let plan = match tx.outbox_state(row.id).await? {
        // Finished meanwhile (an operator's stop skipped it): nothing to do.
        Some((OutboxStatus::Sent | OutboxStatus::Skipped | OutboxStatus::Failed, _)) => {
            SendPlan::Stale
        }
        Some((status, attempts)) if attempts == row.attempts => {
            if status == OutboxStatus::Sending {
                // A worker died between deciding and finishing: the decision
                // stands, unless the email has gone stale meanwhile (the
                // service was down for days).
                outbox::stale(catalog, row, now, None).unwrap_or(SendPlan::Send)
            } else {
                let history = tx.sent_history(&row.customer_id, row.id).await?;
                let suppressed = match &profile {
                    Some(p) => tx.suppression(p.customer.email.as_str()).await?,
                    None => None,
                };
                let ctx = SendContext {
                    row,
                    profile: profile.as_deref(),
                    suppressed,
                    history: &history,
                };
                outbox::decide(catalog, &ctx, now)
            }
        }
        _ => SendPlan::Stale,
    };
    let transition = match &plan {
        SendPlan::Send => Some(Transition::Sending {
            lease_until: now + sending_lease,
            tracked: reporting && catalog.policies.tracking.opens.contains(row.category),
        }),
        SendPlan::Defer { until, .. } => Some(Transition::Defer { until: *until }),
        SendPlan::Skip { reason } => Some(Transition::Skip { reason }),
        SendPlan::Stale => None,
    };
    let owned = match &transition {
        Some(t) => tx.transition(row, t, now).await?,
        None => false,
    };
    let plan = if owned { plan } else { SendPlan::Stale };
    match &plan {
        SendPlan::Defer { reason, .. } => {
            tx.log_delivery(row, now, Outcome::Deferred, reason, None)
                .await?
        }
        SendPlan::Skip { reason } => {
            tx.log_delivery(row, now, Outcome::Skipped, reason, None)
                .await?
        }
        SendPlan::Send | SendPlan::Stale => {}
    }
    tx.commit().await?;
    crate::telemetry::transaction("send", started.elapsed());
    Ok((plan, profile))
}

/// Records how the transport call for a `sending` row ended. A worker whose
/// claim was taken over meanwhile gets `Conflict` and writes nothing.
pub async fn finish<S: Store>(
    store: &S,
    row: &Queued,
    now: DateTime<Utc>,
    outcome: &SendOutcome,
) -> crate::store::Result<()> {
    let started = std::time::Instant::now();
    let mut tx = store.begin().await?;
    let (transition, detail, message_id) = match outcome {
        SendOutcome::Sent { message_id, detail } => (
            Transition::Sent { message_id },
            detail.as_str(),
            Some(message_id.as_str()),
        ),
        SendOutcome::Retry { at, error } => (
            Transition::Retry {
                at: *at,
                error,
                counted: true,
            },
            error.as_str(),
            None,
        ),
        SendOutcome::Held { at, error } => (
            Transition::Retry {
                at: *at,
                error,
                counted: false,
            },
            error.as_str(),
            None,
        ),
        SendOutcome::Failed { error } | SendOutcome::Refused { error } => {
            (Transition::Failed { error }, error.as_str(), None)
        }
    };
    if !tx.transition(row, &transition, now).await? {
        // A newer claim owns the row: this worker's late result is dropped.
        return Err(Error::Conflict(format!(
            "outbox row {} was claimed again; result of attempt {} dropped",
            row.id, row.attempts
        )));
    }
    tx.log_delivery(row, now, outcome.outcome(), detail, message_id)
        .await?;
    tx.commit().await?;
    crate::telemetry::transaction("send", started.elapsed());
    // The fact `customer.last_email_at`, apart from the transaction above:
    // taking the customer's row there would lock it after the outbox row,
    // against the order every other writer takes them in.
    if matches!(outcome, SendOutcome::Sent { .. })
        && let Err(e) = store.emailed(&row.customer_id, now).await
    {
        tracing::warn!(customer = %row.customer_id, "last_email_at not kept: {e}");
    }
    Ok(())
}

/// Records that a row marked `sending` will not be sent as it is (the
/// message it renders to is too large): skipped with `reason`, not retried.
pub async fn skip<S: Store>(
    store: &S,
    row: &Queued,
    now: DateTime<Utc>,
    reason: &str,
) -> crate::store::Result<()> {
    let mut tx = store.begin().await?;
    if !tx
        .transition(row, &Transition::Skip { reason }, now)
        .await?
    {
        return Err(Error::Conflict(format!(
            "outbox row {} was claimed again; skip of attempt {} dropped",
            row.id, row.attempts
        )));
    }
    tx.log_delivery(row, now, Outcome::Skipped, reason, None)
        .await?;
    tx.commit().await
}

/// How much of a message the worker builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compose {
    /// The whole MIME message: what a transport sends.
    Message,
    /// Subject and body only, no MIME: enough to know that the email renders
    /// and what it says (`simulate`, which must not pay for the rest).
    Check,
}

/// What the worker did with one claimed row.
#[derive(Debug, Clone, PartialEq)]
pub struct Handled {
    pub at: DateTime<Utc>,
    pub row: Queued,
    pub done: Done,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Done {
    /// Not handed to the transport: deferred, skipped, or a stale claim.
    Planned(SendPlan),
    Sent,
    /// A transient failure, tried again later.
    Retry(String),
    /// The transport was unavailable: back in the queue, no retry used.
    Held(String),
    /// Given up: a permanent failure, a render error, or retries spent.
    Failed(String),
    /// The store failed; the claim's lease brings the row back.
    Error(String),
}

pub struct Worker<S, T> {
    pub store: S,
    pub catalog: Arc<Catalog>,
    pub templates: Arc<Templates>,
    pub transport: T,
    pub clock: Arc<dyn Clock>,
    pub retry: Vec<i64>,
    pub compose: Compose,
    /// Who claims rows; a worker whose heartbeat is late sends nothing.
    pub instance: Instance,
    /// See [`DEFAULT_MAX_EMAIL_BYTES`].
    pub max_email_bytes: usize,
    /// Rows handled at once (transport calls in flight); 1 keeps the
    /// claimed order, as `simulate` and `demo` need.
    pub concurrency: usize,
    /// The address bounces go to, as [`return_path`] extends it per
    /// message; `None`: the sender's own address.
    pub bounces: Option<String>,
    /// Set while the transport is unavailable.
    pub paused: Pause,
    /// Signs every message when a DKIM key is configured.
    pub dkim: Option<Arc<super::dkim::Signer>>,
    /// Unsubscribe and tracking links.
    pub links: Arc<super::links::Links>,
}

/// The sender's pause while its transport is unavailable: no rows are
/// claimed until it ends, and then only once the transport answers a probe.
/// Each failed probe doubles the pause, from 1 s up to a minute; so does a
/// new pause that follows a successful probe before any email got through
/// (a relay that answers probes but refuses every email, say for want of
/// STARTTLS, is backed off from, not spun on). A delivered email resets it.
/// Real time (tokio's clock), not the service clock: it is about a server,
/// not about emails.
#[derive(Debug, Default)]
pub struct Pause(std::sync::Mutex<PauseState>);

#[derive(Debug, Default)]
struct PauseState {
    /// The pause under way: until when, and how long it is.
    until: Option<(tokio::time::Instant, Duration)>,
    /// The last pause's length, while no email has got through since.
    last: Option<Duration>,
}

impl Pause {
    const FIRST: Duration = Duration::from_secs(1);
    const LONGEST: Duration = Duration::from_secs(60);

    fn lock(&self) -> std::sync::MutexGuard<'_, PauseState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a pause, unless one is under way (the rows in flight when the
    /// transport went away all find it so).
    fn start(&self) -> Duration {
        let mut p = self.lock();
        match p.until {
            Some((_, d)) => d,
            None => {
                let length = p.last.map_or(Self::FIRST, |d| (d * 2).min(Self::LONGEST));
                p.until = Some((tokio::time::Instant::now() + length, length));
                length
            }
        }
    }

    /// Lengthens the pause after a failed probe.
    fn extend(&self) -> Duration {
        let mut p = self.lock();
        let length = match p.until {
            Some((_, d)) => (d * 2).min(Self::LONGEST),
            None => Self::FIRST,
        };
        p.until = Some((tokio::time::Instant::now() + length, length));
        length
    }

    /// When the pause under way ends, if there is one.
    fn until(&self) -> Option<tokio::time::Instant> {
        self.lock().until.map(|(at, _)| at)
    }

    pub fn active(&self) -> bool {
        self.until().is_some()
    }

    /// The transport answered a probe: sending resumes, and the next pause,
    /// should one come before an email gets through, is longer.
    fn end(&self) {
        let mut p = self.lock();
        if let Some((_, d)) = p.until.take() {
            p.last = Some(d);
        }
    }

    /// An email got through: the transport works.
    fn delivered(&self) {
        self.lock().last = None;
    }
}

/// Why a rendered row is not handed to the transport.
enum NotSent {
    /// Given up: recorded as failed.
    Failed(String),
    /// Never to be sent as it is: recorded as skipped, as the policy's skips.
    Skip(String),
}

impl<S: Store, T: Transport> Worker<S, T> {
    /// Claims and processes one batch; returns what became of each row.
    pub async fn tick(&self) -> crate::store::Result<Vec<Handled>> {
        let now = self.clock.now();
        let concurrency = self.concurrency.max(1);
        let batch = BATCH.max(2 * concurrency as i64);
        let rows = self
            .store
            .claim_outbox(now, LEASE, batch, &self.instance.claimer)
            .await?;
        let handled = futures_util::stream::iter(rows)
            .map(|row| async move {
                let done = match self.process(&row).await {
                    Ok(done) => done,
                    Err(e) => {
                        tracing::error!(outbox_id = row.id, key = %row.idempotency_key, "send failed, retried after the lease: {e}");
                        Done::Error(e.to_string())
                    }
                };
                Handled { at: now, row, done }
            })
            .buffered(concurrency)
            .collect()
            .await;
        Ok(handled)
    }

    async fn process(&self, row: &Queued) -> crate::store::Result<Done> {
        let now = self.clock.now();
        if self.paused.active() {
            // The transport went away while this batch was under way: the
            // claim is let go, and the row is taken again once it is back.
            let mut tx = self.store.begin().await?;
            let until = row.not_before;
            tx.transition(row, &Transition::Defer { until }, now)
                .await?;
            tx.commit().await?;
            return Ok(Done::Planned(SendPlan::Stale));
        }
        if !self.instance.may_send(now) {
            // Another instance may take this row over any moment now.
            return Ok(Done::Error(
                "this instance's heartbeat is late: the row is left to another instance".into(),
            ));
        }
        // Held a little longer than the transport may take, so that a row is
        // taken over only when its worker is surely gone.
        let deadline = self.transport.deadline();
        let lease = chrono::Duration::from_std(deadline * 2).unwrap_or(SENDING_LEASE);
        let reporting = self.links.reporting();
        let (plan, profile) =
            plan_reporting(&self.store, &self.catalog, row, now, lease, reporting).await?;
        match &plan {
            SendPlan::Send => {}
            SendPlan::Defer { reason, .. } | SendPlan::Skip { reason } => {
                tracing::info!(outbox_id = row.id, key = %row.idempotency_key, "{reason}");
                let word = telemetry::reason_word(reason);
                let result = match &plan {
                    SendPlan::Defer { .. } => EmailResult::Deferred(word),
                    _ => EmailResult::Skipped(word),
                };
                telemetry::email(row, result);
                return Ok(Done::Planned(plan));
            }
            SendPlan::Stale => return Ok(Done::Planned(plan)),
        }
        let renderer = self.renderer();
        let rendered = match on_many_threads() {
            true => {
                let (r, p) = (row.clone(), profile.clone());
                blocking(move || renderer.render(&r, p.as_deref(), now)).await
            }
            // `simulate` and `demo` (their virtual clock): no copy to hand over.
            false => renderer.render(row, profile.as_deref(), now),
        };
        let outcome = match rendered {
            Err(NotSent::Skip(reason)) => {
                tracing::warn!(outbox_id = row.id, key = %row.idempotency_key, "{reason}");
                skip(&self.store, row, self.clock.now(), &reason).await?;
                telemetry::email(row, EmailResult::Skipped(telemetry::reason_word(&reason)));
                return Ok(Done::Planned(SendPlan::Skip { reason }));
            }
            Ok(out) => {
                let result =
                    match tokio::time::timeout(deadline, self.transport.deliver(&out)).await {
                        Ok(r) => r,
                        Err(_) => Err(super::transport::Error::Transient(format!(
                            "the transport did not answer within {deadline:?}"
                        ))),
                    };
                outbox::after_transport(row, &out.message_id, result, &self.retry, now)
            }
            Err(NotSent::Failed(error)) => SendOutcome::Failed { error },
        };
        match &outcome {
            SendOutcome::Sent { .. } => {
                self.paused.delivered();
                tracing::info!(outbox_id = row.id, key = %row.idempotency_key, sequence = %row.sequence, step = %row.step, "sent")
            }
            SendOutcome::Held { error, .. } => {
                let pause = self.paused.start();
                tracing::warn!(outbox_id = row.id, key = %row.idempotency_key,
                    "transport unavailable, sending paused for {pause:?}: {error}")
            }
            other => tracing::warn!(outbox_id = row.id, key = %row.idempotency_key, "{other:?}"),
        }
        // Let go of the profile before `finish` notes the email in it (a
        // store kept in memory would copy the profile still shared here),
        // unless a refusal is to be recorded as a bounce of its address.
        let refused = profile.filter(|_| matches!(outcome, SendOutcome::Refused { .. }));
        let finished = self.clock.now();
        finish(&self.store, row, finished, &outcome).await?;
        telemetry::email(
            row,
            match &outcome {
                SendOutcome::Sent { .. } => EmailResult::Sent,
                SendOutcome::Retry { .. } => EmailResult::Deferred("transient"),
                SendOutcome::Held { .. } => EmailResult::Deferred("relay_unavailable"),
                SendOutcome::Failed { .. } => EmailResult::Failed,
                SendOutcome::Refused { .. } => EmailResult::Bounced,
            },
        );
        if let (SendOutcome::Refused { error }, Some(p)) = (&outcome, &refused) {
            self.bounced(row, p, error, finished).await?;
        }
        Ok(match outcome {
            SendOutcome::Sent { .. } => Done::Sent,
            SendOutcome::Retry { error, .. } => Done::Retry(error),
            SendOutcome::Held { error, .. } => Done::Held(error),
            SendOutcome::Failed { error } | SendOutcome::Refused { error } => Done::Failed(error),
        })
    }

    /// The server refused the recipient for good: that is a hard bounce, and
    /// it goes into the customer's history as one, as a relay's bounce
    /// would, through the one ingest path (which suppresses the address).
    /// Its id is the row's and attempt's, so a second report is one event.
    async fn bounced(
        &self,
        row: &Queued,
        p: &Profile,
        reply: &str,
        now: DateTime<Utc>,
    ) -> crate::store::Result<()> {
        let json = serde_json::json!({
            "id": format!("smtp-refused:{}:{}", row.id, row.attempts),
            "type": "email.bounced",
            "occurred_at": now,
            "customer": {"id": p.customer.id, "email": p.customer.email},
            "data": {"kind": "hard", "reply": reply, "idempotency_key": row.idempotency_key},
        });
        let event = match crate::event::Event::parse(&json.to_string()) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(
                    outbox_id = row.id,
                    "could not record the refusal as a bounce: {e}"
                );
                return Ok(());
            }
        };
        crate::ingest::ingest_batch(&self.store, &self.catalog, &[event], "smtp", now).await?;
        tracing::warn!(outbox_id = row.id, customer_id = %p.customer.id,
            "the server refused the address for good: recorded as a hard bounce, the address is suppressed");
        Ok(())
    }

    fn renderer(&self) -> Renderer {
        Renderer {
            catalog: self.catalog.clone(),
            templates: self.templates.clone(),
            links: self.links.clone(),
            dkim: self.dkim.clone(),
            bounces: self.bounces.clone(),
            compose: self.compose,
            max_email_bytes: self.max_email_bytes,
        }
    }

    /// Runs until `stop`, sending rows as they fall due. While the transport
    /// is unavailable, claims nothing: waits out the pause, then probes.
    pub async fn run(self, kick: Arc<Notify>, stop: CancellationToken) {
        let stopping = stop.clone();
        let batch = || async {
            if let Some(until) = self.paused.until() {
                tokio::select! {
                    _ = stopping.cancelled() => return Ok(0),
                    _ = tokio::time::sleep_until(until) => {}
                }
                if !self.transport.probe().await {
                    let pause = self.paused.extend();
                    tracing::warn!("transport still unavailable, sending paused for {pause:?}");
                    return Ok(0);
                }
                tracing::info!("transport available again, sending resumes");
                self.paused.end();
            }
            Ok(self.tick().await?.len())
        };
        let next = || self.store.next_outbox();
        crate::poll::run("sender", self.clock.clone(), IDLE, kick, stop, batch, next).await;
    }
}

/// What rendering needs, owned, so that the work can go to a thread of the
/// blocking pool: on a multi-threaded runtime, several messages render (and
/// are DKIM-signed) at once, on every core.
struct Renderer {
    catalog: Arc<Catalog>,
    templates: Arc<Templates>,
    links: Arc<super::links::Links>,
    dkim: Option<Arc<super::dkim::Signer>>,
    bounces: Option<String>,
    compose: Compose,
    max_email_bytes: usize,
}

impl Renderer {
    /// Renders the row for the customer as the store knows them now.
    fn render(
        &self,
        row: &Queued,
        profile: Option<&Profile>,
        now: DateTime<Utc>,
    ) -> Result<Outgoing, NotSent> {
        let policies = &self.catalog.policies;
        let context = outbox::render_context(row, profile);
        // Only what the template reads: most read a few of the fields.
        let mut data = data::build_for(
            context,
            policies,
            Origin {
                sequence: &row.sequence,
                step: &row.step,
            },
            now,
            self.templates.needs(&row.template),
        );
        let unsubscribe = super::links::wants_unsubscribe(row.category)
            .then(|| self.links.unsubscribe_url(&row.customer_id));
        if let (Some(url), Some(obj)) = (&unsubscribe, data.as_object_mut()) {
            obj.insert("unsubscribe_url".into(), url.as_str().into());
        }
        let parts = match self.compose {
            Compose::Message => Parts::All,
            Compose::Check => Parts::NoText,
        };
        let mut content = self
            .templates
            .render_with(
                &row.template,
                context.customer.locale.as_deref(),
                data,
                parts,
            )
            .map_err(|e| NotSent::Failed(format!("render: {e}")))?;
        // The parts alone already too large: not worth building the message.
        let parts = content.html.len() + content.text.len();
        self.within_limit(parts)?;
        let to = context.customer.email.to_string();
        let (_, sender) = policies.sender.name_and_email();
        let bytes = match self.compose {
            Compose::Message => {
                let tracked = super::tracking::Tracked {
                    links: &self.links,
                    customer_id: &row.customer_id,
                    idempotency_key: &row.idempotency_key,
                    opens: policies.tracking.opens.contains(row.category),
                    clicks: policies.tracking.clicks.contains(row.category),
                };
                // Tracking never stops an email: should the rewrite fail,
                // the email goes as written.
                match super::tracking::rewrite(&content.html, &tracked) {
                    Ok(html) => content.html = html,
                    Err(e) => tracing::warn!(outbox_id = row.id, key = %row.idempotency_key,
                        "sent without tracking: {e}"),
                }
                let list_unsubscribe = unsubscribe
                    .as_deref()
                    .map(|u| self.links.list_unsubscribe(u));
                let env = Envelope {
                    list_unsubscribe: list_unsubscribe.as_deref(),
                    to: &to,
                    idempotency_key: &row.idempotency_key,
                    sequence: &row.sequence,
                    template: &row.template,
                    date: now,
                };
                let message = build_message(policies, &env, &content)
                    .map_err(|e| NotSent::Failed(e.to_string()))?;
                let bytes = super::dkim::finish(self.dkim.as_deref(), message, now);
                self.within_limit(bytes.len())?;
                bytes
            }
            Compose::Check => Vec::new(),
        };
        let id = message_id(&row.idempotency_key, &sender);
        Ok(Outgoing {
            from: return_path(self.bounces.as_deref().unwrap_or(&sender), &id),
            message_id: id,
            to: to.clone(),
            bytes,
            about: About {
                date: now,
                to: to.clone(),
                idempotency_key: row.idempotency_key.clone(),
                customer_id: row.customer_id.clone(),
                sequence: row.sequence.clone(),
                step: row.step.clone(),
                template: row.template.clone(),
                category: row.category,
                locale: content.locale,
                subject: content.subject,
            },
        })
    }

    fn within_limit(&self, size: usize) -> Result<(), NotSent> {
        match size > self.max_email_bytes {
            true => Err(NotSent::Skip(format!(
                "email too large: {size} bytes, more than the limit of {} \
                 (AFTERCARE_MAX_EMAIL_BYTES)",
                self.max_email_bytes
            ))),
            false => Ok(()),
        }
    }
}

/// Whether this runs on a multi-threaded runtime (`run`), where CPU-heavy
/// work (rendering a message) goes off the runtime's threads; on a
/// single-threaded one (`simulate`, `demo` on their virtual clock) it simply
/// runs.
fn on_many_threads() -> bool {
    tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
}

/// Runs `work` on the blocking pool, so that the sender's rows in flight
/// render side by side on every core and the other tasks (health checks,
/// HTTP, shutdown) are not held up.
async fn blocking<R: Send + 'static>(work: impl FnOnce() -> R + Send + 'static) -> R {
    match tokio::task::spawn_blocking(work).await {
        Ok(r) => r,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}
