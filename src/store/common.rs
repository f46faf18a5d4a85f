//! The SQL both backends share, written once. Each backend module defines its
//! pool type and the statements that differ (`LOCK_SUFFIX`, `CLAIM_DUE`,
//! `CLAIM_OUTBOX`, `MIGRATOR`) and invokes [`impl_store!`]. The conformance
//! suite (tests/store.rs) runs the same tests against both.

/// Columns of a claimed outbox row, in `RETURNING` and `SELECT` lists.
pub(crate) const OUTBOX_CLAIM_COLUMNS: &str = "id, idempotency_key, customer_id, sequence, step, template, category, status, attempts, retries, not_before, context";

/// How long a row being handed to the transport is held before another
/// worker may take it over (the first is then presumed dead).
pub(crate) const SENDING_LEASE: chrono::Duration = chrono::Duration::minutes(5);

macro_rules! impl_store {
    ($store:ty, $db:ty) => {
        use std::collections::{BTreeMap, HashMap, HashSet};

        use chrono::{DateTime, Utc};
        use sqlx::types::Json;
        use sqlx::{QueryBuilder, Row as _};

        use $crate::engine::policy::Sent;
        use $crate::engine::profile::Profile;
        use $crate::engine::state::{Enrollment, Status};
        use $crate::event::Event;
        use $crate::sequence::model::Category;
        use $crate::store::*;

        type Tx<'c> = sqlx::Transaction<'c, $db>;

        fn status_str(s: Status) -> &'static str {
            match s {
                Status::Active => "active",
                Status::Completed => "completed",
                Status::Exited => "exited",
            }
        }

        /// Rows per multi-row statement: far below both databases' limits on
        /// bound parameters (SQLite's 32,766 with 11 per row).
        const MAX_ROWS: usize = 1000;

        /// Appends `(v1, v2, …)` of bound values for an `IN` list.
        fn push_in<'a>(q: &mut QueryBuilder<$db>, ids: impl IntoIterator<Item = &'a String>) {
            q.push("(");
            let mut sep = q.separated(", ");
            for id in ids {
                sep.push_bind(id.as_str());
            }
            sep.push_unseparated(")");
        }

        /// Loads the customers `ids` (sorted, unique) and all their
        /// enrollments, holding each customer's lock until the transaction
        /// ends. Customers without a row get an empty state.
        async fn load_customers(
            tx: &mut Tx<'_>,
            ids: &[String],
        ) -> Result<HashMap<String, CustomerState>> {
            let mut out: HashMap<String, CustomerState> =
                ids.iter().map(|id| (id.clone(), CustomerState::default())).collect();
            for chunk in ids.chunks(MAX_ROWS) {
                let mut q = QueryBuilder::<$db>::new("SELECT id, profile FROM customers WHERE id IN ");
                push_in(&mut q, chunk);
                q.push(" ORDER BY id");
                q.push(LOCK_SUFFIX);
                for r in q.build().fetch_all(&mut **tx).await? {
                    let id: String = r.try_get("id")?;
                    let Json(profile): Json<Option<Profile>> = r.try_get("profile")?;
                    if let Some(st) = out.get_mut(&id) {
                        st.profile = profile;
                    }
                }
                // Finished enrollments by key only: their state is not needed.
                let mut q = QueryBuilder::<$db>::new(
                    "SELECT customer_id, key, CASE WHEN status = 'active' THEN state END AS state \
                     FROM enrollments WHERE customer_id IN ",
                );
                push_in(&mut q, chunk);
                q.push(" ORDER BY started_at, key");
                for r in q.build().fetch_all(&mut **tx).await? {
                    let id: String = r.try_get("customer_id")?;
                    let state: Option<Json<Enrollment>> = r.try_get("state")?;
                    if let Some(st) = out.get_mut(&id) {
                        match state {
                            Some(Json(e)) => st.enrollments.push(e),
                            None => {
                                st.finished.insert(r.try_get("key")?);
                            }
                        }
                    }
                }
            }
            Ok(out)
        }

        /// Everything a batch changes, collected in memory and written with a
        /// few multi-row statements.
        #[derive(Default)]
        struct Writes {
            profiles: BTreeMap<String, Profile>,
            enrollments: BTreeMap<String, Enrollment>,
            emails: BTreeMap<String, NewEmail>,
            suppress: BTreeMap<String, String>,
        }

        impl Writes {
            /// Takes in what one pure decision changed; returns whether the
            /// enrollment at `watch` (if any) is among the saved ones.
            fn absorb(&mut self, state: &CustomerState, changes: Changes, watch: Option<usize>) -> bool {
                if let Some(p) = changes.profile {
                    self.profiles.insert(p.customer.id.clone(), p);
                }
                let mut saved = false;
                for i in changes.enrollments {
                    let e = &state.enrollments[i];
                    self.enrollments.insert(e.key.clone(), e.clone());
                    saved |= Some(i) == watch;
                }
                for m in changes.emails {
                    self.emails.entry(m.job.idempotency_key.clone()).or_insert(m);
                }
                if let Some((email, reason)) = changes.suppress {
                    self.suppress.entry(email).or_insert(reason);
                }
                saved
            }

            /// Writes everything; returns the outbox rows that were new.
            async fn write(self, tx: &mut Tx<'_>, now: DateTime<Utc>) -> Result<usize> {
                let profiles: Vec<Profile> = self.profiles.into_values().collect();
                for chunk in profiles.chunks(MAX_ROWS) {
                    let mut q = QueryBuilder::<$db>::new("INSERT INTO customers (id, email, profile, updated_at) ");
                    q.push_values(chunk, |mut b, p| {
                        b.push_bind(p.customer.id.as_str())
                            .push_bind(p.customer.email.as_str())
                            .push_bind(Json(p))
                            .push_bind(now);
                    });
                    q.push(
                        " ON CONFLICT (id) DO UPDATE SET email = excluded.email, profile = excluded.profile, \
                         updated_at = excluded.updated_at",
                    );
                    q.build().execute(&mut **tx).await?;
                }
                let enrollments: Vec<Enrollment> = self.enrollments.into_values().collect();
                for chunk in enrollments.chunks(MAX_ROWS) {
                    let mut q = QueryBuilder::<$db>::new(
                        "INSERT INTO enrollments (key, sequence, version, customer_id, order_id, status, step, \
                         wake_at, lease_until, state, started_at, updated_at) ",
                    );
                    q.push_values(chunk, |mut b, e| {
                        b.push_bind(e.key.as_str())
                            .push_bind(e.sequence.as_str())
                            .push_bind(e.version.as_str())
                            .push_bind(e.customer_id.as_str())
                            .push_bind(e.order_id.as_deref())
                            .push_bind(status_str(e.status))
                            .push_bind(e.step.as_deref())
                            .push_bind(e.wake_at())
                            .push_bind(None::<DateTime<Utc>>)
                            .push_bind(Json(e))
                            .push_bind(e.started_at)
                            .push_bind(e.updated_at);
                    });
                    q.push(
                        " ON CONFLICT (key) DO UPDATE SET version = excluded.version, status = excluded.status, \
                         step = excluded.step, wake_at = excluded.wake_at, lease_until = NULL, \
                         state = excluded.state, updated_at = excluded.updated_at",
                    );
                    q.build().execute(&mut **tx).await?;
                }
                let emails: Vec<NewEmail> = self.emails.into_values().collect();
                let mut written = 0;
                for chunk in emails.chunks(MAX_ROWS) {
                    let mut q = QueryBuilder::<$db>::new(
                        "INSERT INTO outbox (idempotency_key, customer_id, sequence, step, template, category, \
                         status, attempts, not_before, context, created_at, updated_at) ",
                    );
                    q.push_values(chunk, |mut b, m| {
                        let j = &m.job;
                        b.push_bind(j.idempotency_key.as_str())
                            .push_bind(j.customer_id.as_str())
                            .push_bind(j.sequence.as_str())
                            .push_bind(j.step.as_str())
                            .push_bind(j.template.as_str())
                            .push_bind(j.category.as_str())
                            .push_bind("pending")
                            .push_bind(0_i64)
                            .push_bind(j.due_at)
                            .push_bind(Json(&m.context))
                            .push_bind(now)
                            .push_bind(now);
                    });
                    q.push(" ON CONFLICT (idempotency_key) DO NOTHING");
                    written += q.build().execute(&mut **tx).await?.rows_affected() as usize;
                }
                let suppress: Vec<(String, String)> = self.suppress.into_iter().collect();
                for chunk in suppress.chunks(MAX_ROWS) {
                    let mut q = QueryBuilder::<$db>::new("INSERT INTO suppressions (email, reason, created_at) ");
                    q.push_values(chunk, |mut b, (email, reason)| {
                        b.push_bind(email.as_str()).push_bind(reason.as_str()).push_bind(now);
                    });
                    q.push(" ON CONFLICT (email) DO NOTHING");
                    q.build().execute(&mut **tx).await?;
                }
                Ok(written)
            }
        }

        async fn log_delivery(
            tx: &mut Tx<'_>,
            row: &OutboxRow,
            now: DateTime<Utc>,
            outcome: &str,
            detail: &str,
            message_id: Option<&str>,
        ) -> Result<()> {
            sqlx::query(
                "INSERT INTO deliveries (outbox_id, idempotency_key, customer_id, attempt, at, outcome, detail, message_id) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(row.id)
            .bind(&row.idempotency_key)
            .bind(&row.customer_id)
            .bind(row.attempts)
            .bind(now)
            .bind(outcome)
            .bind(detail)
            .bind(message_id)
            .execute(&mut **tx)
            .await?;
            Ok(())
        }

        impl Store for $store {
            async fn migrate(&self) -> Result<()> {
                MIGRATOR.run(&self.pool).await?;
                Ok(())
            }

            async fn ingest(
                &self,
                events: &[Event],
                source: &str,
                now: DateTime<Utc>,
                apply: &ApplyEvent<'_>,
            ) -> Result<IngestReport> {
                let mut tx = self.pool.begin().await?;
                let mut report = IngestReport::default();
                // Record every event; the ids that were new come back.
                let mut new_ids: HashSet<String> = HashSet::with_capacity(events.len());
                for chunk in events.chunks(MAX_ROWS) {
                    let mut q = QueryBuilder::<$db>::new(
                        "INSERT INTO events (id, type, customer_id, occurred_at, received_at, source, payload) ",
                    );
                    q.push_values(chunk, |mut b, ev| {
                        b.push_bind(ev.id.as_str())
                            .push_bind(ev.kind.as_str())
                            .push_bind(ev.customer.id.as_str())
                            .push_bind(ev.occurred_at)
                            .push_bind(now)
                            .push_bind(source)
                            .push_bind(Json(ev));
                    });
                    q.push(" ON CONFLICT (id) DO NOTHING RETURNING id");
                    for r in q.build().fetch_all(&mut *tx).await? {
                        new_ids.insert(r.try_get("id")?);
                    }
                }
                // An id seen before, or twice in this batch, is a duplicate.
                let mut fresh: Vec<&Event> = Vec::with_capacity(new_ids.len());
                for ev in events {
                    if new_ids.remove(&ev.id) {
                        fresh.push(ev);
                    } else {
                        report.duplicates += 1;
                    }
                }
                if fresh.is_empty() {
                    tx.commit().await?;
                    return Ok(report);
                }
                // Make sure each customer has a row to lock, then lock and load.
                let mut first_email: BTreeMap<String, &str> = BTreeMap::new();
                for ev in &fresh {
                    first_email.entry(ev.customer.id.clone()).or_insert(ev.customer.email.as_str());
                }
                let pairs: Vec<(&String, &&str)> = first_email.iter().collect();
                for chunk in pairs.chunks(MAX_ROWS) {
                    let mut q = QueryBuilder::<$db>::new("INSERT INTO customers (id, email, profile, updated_at) ");
                    q.push_values(chunk, |mut b, (id, email)| {
                        b.push_bind(id.as_str())
                            .push_bind(**email)
                            .push_bind(Json(serde_json::Value::Null))
                            .push_bind(now);
                    });
                    q.push(" ON CONFLICT (id) DO NOTHING");
                    q.build().execute(&mut *tx).await?;
                }
                let ids: Vec<String> = first_email.into_keys().collect();
                let mut states = load_customers(&mut tx, &ids).await?;
                let mut writes = Writes::default();
                for ev in fresh {
                    let state = states.get_mut(&ev.customer.id).expect("loaded above");
                    let changes = apply(state, ev);
                    writes.absorb(state, changes, None);
                    report.applied += 1;
                }
                report.emails = writes.write(&mut tx, now).await?;
                tx.commit().await?;
                Ok(report)
            }

            async fn claim_due(
                &self,
                now: DateTime<Utc>,
                lease: chrono::Duration,
                limit: i64,
            ) -> Result<Vec<(String, String)>> {
                let rows = sqlx::query(CLAIM_DUE)
                    .bind(now)
                    .bind(now + lease)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter()
                    .map(|r| Ok((r.try_get("key")?, r.try_get("customer_id")?)))
                    .collect()
            }

            async fn wake(
                &self,
                claimed: &[(String, String)],
                now: DateTime<Utc>,
                apply: &ApplyWake<'_>,
            ) -> Result<usize> {
                let mut ids: Vec<String> = claimed.iter().map(|(_, c)| c.clone()).collect();
                ids.sort();
                ids.dedup();
                let mut tx = self.pool.begin().await?;
                let mut states = load_customers(&mut tx, &ids).await?;
                let mut writes = Writes::default();
                let mut release: Vec<String> = Vec::new();
                let mut ran = 0;
                for (key, customer) in claimed {
                    let state = states.get_mut(customer).expect("loaded above");
                    let due = state
                        .enrollments
                        .iter()
                        .position(|e| &e.key == key && e.wake_at().is_some_and(|w| w <= now));
                    let saved = match due {
                        Some(idx) => {
                            ran += 1;
                            let changes = apply(state, idx);
                            // Saving an enrollment clears its lease.
                            writes.absorb(state, changes, Some(idx))
                        }
                        None => false,
                    };
                    if !saved {
                        // Not due any more (another worker got there first), or
                        // woken without a change: the claim is done either way.
                        release.push(key.clone());
                    }
                }
                writes.write(&mut tx, now).await?;
                for chunk in release.chunks(MAX_ROWS) {
                    let mut q = QueryBuilder::<$db>::new("UPDATE enrollments SET lease_until = NULL WHERE key IN ");
                    push_in(&mut q, chunk);
                    q.build().execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(ran)
            }

            async fn next_wake(&self) -> Result<Option<DateTime<Utc>>> {
                Ok(sqlx::query_scalar(
                    "SELECT wake_at FROM enrollments WHERE status = 'active' AND wake_at IS NOT NULL AND lease_until IS NULL \
                     ORDER BY wake_at LIMIT 1",
                )
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn claim_outbox(
                &self,
                now: DateTime<Utc>,
                lease: chrono::Duration,
                limit: i64,
            ) -> Result<Vec<OutboxRow>> {
                let mut out: Vec<OutboxRow> = sqlx::query_as(CLAIM_OUTBOX)
                    .bind(now)
                    .bind(now + lease)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?;
                out.sort_by_key(|r| (r.not_before, r.id));
                Ok(out)
            }

            async fn plan_send(
                &self,
                row: &OutboxRow,
                now: DateTime<Utc>,
                decide: &DecideSend<'_>,
            ) -> Result<(SendPlan, Option<Profile>)> {
                let mut tx = self.pool.begin().await?;
                let state = load_customers(&mut tx, std::slice::from_ref(&row.customer_id))
                    .await?
                    .remove(&row.customer_id)
                    .unwrap_or_default();
                let current: Option<(String, i64)> =
                    sqlx::query_as("SELECT status, attempts FROM outbox WHERE id = $1")
                        .bind(row.id)
                        .fetch_optional(&mut *tx)
                        .await?;
                let plan = match current {
                    Some((status, attempts)) if attempts == row.attempts => {
                        if status == "sending" {
                            // A worker died between deciding and finishing: the decision stands.
                            SendPlan::Send
                        } else {
                            let history = sent_history(&mut tx, &row.customer_id, row.id).await?;
                            let suppressed = match &state.profile {
                                Some(p) => {
                                    sqlx::query_scalar::<_, String>(
                                        "SELECT email FROM suppressions WHERE email = $1",
                                    )
                                    .bind(p.customer.email.as_str())
                                    .fetch_optional(&mut *tx)
                                    .await?
                                    .is_some()
                                }
                                None => false,
                            };
                            decide(&SendContext {
                                row,
                                profile: state.profile.as_ref(),
                                suppressed,
                                history: &history,
                            })
                        }
                    }
                    _ => SendPlan::Stale,
                };
                // Every write is fenced by the claim count: a worker whose
                // claim was taken over writes nothing and learns it is stale.
                let owned = match &plan {
                    SendPlan::Send => {
                        sqlx::query(
                            "UPDATE outbox SET status = 'sending', sent_at = $2, updated_at = $2, lease_until = $4 \
                             WHERE id = $1 AND attempts = $3",
                        )
                        .bind(row.id)
                        .bind(now)
                        .bind(row.attempts)
                        .bind(now + $crate::store::common::SENDING_LEASE)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected()
                            == 1
                    }
                    SendPlan::Defer { until, .. } => {
                        sqlx::query(
                            "UPDATE outbox SET not_before = $2, lease_until = NULL, updated_at = $3 \
                             WHERE id = $1 AND attempts = $4",
                        )
                        .bind(row.id)
                        .bind(*until)
                        .bind(now)
                        .bind(row.attempts)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected()
                            == 1
                    }
                    SendPlan::Skip { reason } => {
                        sqlx::query(
                            "UPDATE outbox SET status = 'skipped', last_error = $2, lease_until = NULL, \
                             updated_at = $3 WHERE id = $1 AND attempts = $4",
                        )
                        .bind(row.id)
                        .bind(reason)
                        .bind(now)
                        .bind(row.attempts)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected()
                            == 1
                    }
                    SendPlan::Stale => false,
                };
                let plan = if owned { plan } else { SendPlan::Stale };
                match &plan {
                    SendPlan::Defer { reason, .. } => {
                        log_delivery(&mut tx, row, now, "deferred", reason, None).await?
                    }
                    SendPlan::Skip { reason } => log_delivery(&mut tx, row, now, "skipped", reason, None).await?,
                    SendPlan::Send | SendPlan::Stale => {}
                }
                tx.commit().await?;
                Ok((plan, state.profile))
            }

            async fn finish_send(
                &self,
                row: &OutboxRow,
                now: DateTime<Utc>,
                outcome: &SendOutcome,
            ) -> Result<()> {
                let mut tx = self.pool.begin().await?;
                let (sql, detail, outcome_name, message_id, at): (&'static str, &str, &str, Option<&str>, DateTime<Utc>) =
                    match outcome {
                        SendOutcome::Sent { message_id, detail } => (
                            "UPDATE outbox SET status = 'sent', message_id = $2, lease_until = NULL, \
                             updated_at = $3, last_error = NULL WHERE id = $1 AND attempts = $4 AND status = 'sending'",
                            detail.as_str(),
                            "sent",
                            Some(message_id.as_str()),
                            now,
                        ),
                        SendOutcome::Retry { at, error } => (
                            "UPDATE outbox SET status = 'pending', last_error = $2, not_before = $5, sent_at = NULL, \
                             retries = retries + 1, lease_until = NULL, updated_at = $3 WHERE id = $1 AND attempts = $4 AND status = 'sending'",
                            error.as_str(),
                            "retry",
                            None,
                            *at,
                        ),
                        SendOutcome::Failed { error } => (
                            "UPDATE outbox SET status = 'failed', last_error = $2, lease_until = NULL, \
                             updated_at = $3 WHERE id = $1 AND attempts = $4 AND status = 'sending'",
                            error.as_str(),
                            "failed",
                            None,
                            now,
                        ),
                    };
                let mut q = sqlx::query(sql)
                    .bind(row.id)
                    .bind(message_id.unwrap_or(detail))
                    .bind(now)
                    .bind(row.attempts);
                if matches!(outcome, SendOutcome::Retry { .. }) {
                    q = q.bind(at);
                }
                let fenced = q.execute(&mut *tx).await?.rows_affected() == 0;
                if fenced {
                    // A newer claim owns the row: this worker's late result is dropped.
                    tx.rollback().await?;
                    return Err(Error::Conflict(format!(
                        "outbox row {} was claimed again; result of attempt {} dropped",
                        row.id, row.attempts
                    )));
                }
                log_delivery(&mut tx, row, now, outcome_name, detail, message_id).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn next_outbox(&self) -> Result<Option<DateTime<Utc>>> {
                Ok(sqlx::query_scalar(
                    "SELECT not_before FROM outbox WHERE status = 'pending' AND lease_until IS NULL ORDER BY not_before LIMIT 1",
                )
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn dead_letter(&self, l: &DeadLetter, now: DateTime<Utc>) -> Result<()> {
                sqlx::query(
                    "INSERT INTO dead_letters (source, reason, payload, origin, received_at) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&l.source)
                .bind(&l.reason)
                .bind(&l.payload)
                .bind(&l.origin)
                .bind(now)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn setting(&self, key: &str) -> Result<Option<String>> {
                Ok(sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
                    .bind(key)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn init_setting(&self, key: &str, value: &str) -> Result<String> {
                sqlx::query("INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
                    .bind(key)
                    .bind(value)
                    .execute(&self.pool)
                    .await?;
                self.setting(key)
                    .await?
                    .ok_or_else(|| Error::NotFound(key.to_string()))
            }

            async fn outbox(&self) -> Result<Vec<OutboxView>> {
                Ok(sqlx::query_as(
                    "SELECT id, idempotency_key, customer_id, sequence, step, template, category, status, \
                     attempts, not_before, message_id, last_error, sent_at FROM outbox ORDER BY id",
                )
                .fetch_all(&self.pool)
                .await?)
            }

            async fn deliveries(&self) -> Result<Vec<DeliveryView>> {
                Ok(sqlx::query_as(
                    "SELECT outbox_id, idempotency_key, attempt, at, outcome, detail FROM deliveries ORDER BY id",
                )
                .fetch_all(&self.pool)
                .await?)
            }

            async fn dead_letters(&self) -> Result<Vec<DeadLetter>> {
                Ok(sqlx::query_as("SELECT source, reason, payload, origin FROM dead_letters ORDER BY id")
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn enrollments_of(&self, customer_id: &str) -> Result<Vec<Enrollment>> {
                let rows: Vec<Json<Enrollment>> = sqlx::query_scalar(
                    "SELECT state FROM enrollments WHERE customer_id = $1 ORDER BY started_at, key",
                )
                .bind(customer_id)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(|j| j.0).collect())
            }

            async fn event_count(&self) -> Result<i64> {
                Ok(sqlx::query_scalar("SELECT COUNT(*) FROM events")
                    .fetch_one(&self.pool)
                    .await?)
            }

            async fn active_enrollments(&self) -> Result<i64> {
                Ok(sqlx::query_scalar("SELECT COUNT(*) FROM enrollments WHERE status = 'active'")
                    .fetch_one(&self.pool)
                    .await?)
            }
        }

        /// Value, promo and transactional mail already sent (or being sent) to
        /// the customer, with whether each was opened.
        async fn sent_history(tx: &mut Tx<'_>, customer_id: &str, except: i64) -> Result<Vec<Sent>> {
            let rows = sqlx::query(
                "SELECT o.category, o.sent_at, \
                 CAST(CASE WHEN EXISTS (SELECT 1 FROM email_activity a \
                   WHERE a.idempotency_key = o.idempotency_key AND a.kind = 'open') THEN 1 ELSE 0 END AS BIGINT) AS opened \
                 FROM outbox o WHERE o.customer_id = $1 AND o.status IN ('sent', 'sending') \
                 AND o.sent_at IS NOT NULL AND o.id <> $2",
            )
            .bind(customer_id)
            .bind(except)
            .fetch_all(&mut **tx)
            .await?;
            rows.iter()
                .map(|r| {
                    let category: String = r.try_get("category")?;
                    let opened: i64 = r.try_get("opened")?;
                    Ok(Sent {
                        at: r.try_get("sent_at")?,
                        category: Category::parse(&category).unwrap_or(Category::Value),
                        // An open is known when recorded; without open tracking
                        // in the message, "not opened" cannot be told apart
                        // from "not tracked", so it is unknown.
                        opened: (opened != 0).then_some(true),
                    })
                })
                .collect()
        }
    };
}

pub(crate) use impl_store;
