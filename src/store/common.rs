//! The SQL both backends share, written once. Each backend module defines its
//! pool type and the statements that differ (`LOCK_CUSTOMER`, `CLAIM_DUE`,
//! `CLAIM_OUTBOX`, `MIGRATOR`) and invokes [`impl_store!`]. The conformance
//! suite (tests/store.rs) runs the same tests against both.

/// Columns of a claimed outbox row, in `RETURNING` and `SELECT` lists.
pub(crate) const OUTBOX_CLAIM_COLUMNS: &str = "id, idempotency_key, customer_id, sequence, step, template, category, status, attempts, not_before, context";

macro_rules! impl_store {
    ($store:ty, $db:ty) => {
        use chrono::{DateTime, Utc};
        use sqlx::types::Json;
        use sqlx::Row as _;

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

        /// Creates the customer row if needed, then loads it under lock.
        async fn lock_customer(
            tx: &mut Tx<'_>,
            id: &str,
            email: Option<&str>,
            now: DateTime<Utc>,
        ) -> Result<CustomerState> {
            if let Some(email) = email {
                sqlx::query(
                    "INSERT INTO customers (id, email, profile, updated_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (id) DO NOTHING",
                )
                .bind(id)
                .bind(email)
                .bind(Json(serde_json::Value::Null))
                .bind(now)
                .execute(&mut **tx)
                .await?;
            }
            let profile: Option<Json<Option<Profile>>> = sqlx::query_scalar(LOCK_CUSTOMER)
                .bind(id)
                .fetch_optional(&mut **tx)
                .await?;
            let rows = sqlx::query(
                "SELECT state FROM enrollments WHERE customer_id = $1 ORDER BY started_at, key",
            )
            .bind(id)
            .fetch_all(&mut **tx)
            .await?;
            let mut enrollments = Vec::with_capacity(rows.len());
            for r in rows {
                let Json(e): Json<Enrollment> = r.try_get("state")?;
                enrollments.push(e);
            }
            Ok(CustomerState {
                profile: profile.and_then(|p| p.0),
                enrollments,
            })
        }

        async fn save_changes(
            tx: &mut Tx<'_>,
            state: &CustomerState,
            changes: &Changes,
            now: DateTime<Utc>,
        ) -> Result<usize> {
            if let Some(p) = &changes.profile {
                sqlx::query("UPDATE customers SET email = $2, profile = $3, updated_at = $4 WHERE id = $1")
                    .bind(&p.customer.id)
                    .bind(p.customer.email.as_str())
                    .bind(Json(p))
                    .bind(now)
                    .execute(&mut **tx)
                    .await?;
            }
            for &i in &changes.enrollments {
                let e = &state.enrollments[i];
                sqlx::query(
                    "INSERT INTO enrollments (key, sequence, version, customer_id, order_id, status, step, \
                     wake_at, lease_until, state, started_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, $9, $10, $11) \
                     ON CONFLICT (key) DO UPDATE SET version = excluded.version, status = excluded.status, \
                     step = excluded.step, wake_at = excluded.wake_at, lease_until = NULL, \
                     state = excluded.state, updated_at = excluded.updated_at",
                )
                .bind(&e.key)
                .bind(&e.sequence)
                .bind(&e.version)
                .bind(&e.customer_id)
                .bind(&e.order_id)
                .bind(status_str(e.status))
                .bind(&e.step)
                .bind(e.wake_at())
                .bind(Json(e))
                .bind(e.started_at)
                .bind(e.updated_at)
                .execute(&mut **tx)
                .await?;
            }
            let mut written = 0;
            for m in &changes.emails {
                let j = &m.job;
                let r = sqlx::query(
                    "INSERT INTO outbox (idempotency_key, customer_id, sequence, step, template, category, \
                     status, attempts, not_before, context, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, $7, $8, $9, $9) \
                     ON CONFLICT (idempotency_key) DO NOTHING",
                )
                .bind(&j.idempotency_key)
                .bind(&j.customer_id)
                .bind(&j.sequence)
                .bind(&j.step)
                .bind(&j.template)
                .bind(j.category.as_str())
                .bind(j.due_at)
                .bind(Json(&m.context))
                .bind(now)
                .execute(&mut **tx)
                .await?;
                written += r.rows_affected() as usize;
            }
            if let Some((email, reason)) = &changes.suppress {
                sqlx::query(
                    "INSERT INTO suppressions (email, reason, created_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (email) DO NOTHING",
                )
                .bind(email)
                .bind(reason)
                .bind(now)
                .execute(&mut **tx)
                .await?;
            }
            Ok(written)
        }

        fn outbox_row(r: &<$db as sqlx::Database>::Row) -> Result<OutboxRow> {
            let Json(context) = r.try_get("context")?;
            Ok(OutboxRow {
                id: r.try_get("id")?,
                idempotency_key: r.try_get("idempotency_key")?,
                customer_id: r.try_get("customer_id")?,
                sequence: r.try_get("sequence")?,
                step: r.try_get("step")?,
                template: r.try_get("template")?,
                category: r.try_get("category")?,
                status: r.try_get("status")?,
                attempts: r.try_get("attempts")?,
                not_before: r.try_get("not_before")?,
                context,
            })
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
                for ev in events {
                    let new = sqlx::query(
                        "INSERT INTO events (id, type, customer_id, occurred_at, received_at, source, payload) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
                    )
                    .bind(&ev.id)
                    .bind(&ev.kind)
                    .bind(&ev.customer.id)
                    .bind(ev.occurred_at)
                    .bind(now)
                    .bind(source)
                    .bind(Json(ev))
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                        == 1;
                    if !new {
                        report.duplicates += 1;
                        continue;
                    }
                    let mut state =
                        lock_customer(&mut tx, &ev.customer.id, Some(ev.customer.email.as_str()), now)
                            .await?;
                    let changes = apply(&mut state, ev);
                    report.emails += save_changes(&mut tx, &state, &changes, now).await?;
                    report.applied += 1;
                }
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
                // Customers in a fixed order, so two transactions never wait
                // on each other's locks in a cycle.
                let mut by_customer: Vec<&(String, String)> = claimed.iter().collect();
                by_customer.sort_by(|a, b| (&a.1, &a.0).cmp(&(&b.1, &b.0)));
                let mut tx = self.pool.begin().await?;
                let mut ran = 0;
                let mut i = 0;
                while i < by_customer.len() {
                    let customer = &by_customer[i].1;
                    let mut state = lock_customer(&mut tx, customer, None, now).await?;
                    while i < by_customer.len() && &by_customer[i].1 == customer {
                        let key = &by_customer[i].0;
                        i += 1;
                        let due = state
                            .enrollments
                            .iter()
                            .position(|e| &e.key == key && e.wake_at().is_some_and(|w| w <= now));
                        if let Some(idx) = due {
                            let changes = apply(&mut state, idx);
                            save_changes(&mut tx, &state, &changes, now).await?;
                            ran += 1;
                        }
                        // Woken or no longer due (another worker got there
                        // first): either way the claim is done.
                        sqlx::query("UPDATE enrollments SET lease_until = NULL WHERE key = $1")
                            .bind(key)
                            .execute(&mut *tx)
                            .await?;
                    }
                }
                tx.commit().await?;
                Ok(ran)
            }

            async fn next_wake(&self) -> Result<Option<DateTime<Utc>>> {
                Ok(sqlx::query_scalar(
                    "SELECT wake_at FROM enrollments WHERE status = 'active' AND wake_at IS NOT NULL \
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
                let rows = sqlx::query(CLAIM_OUTBOX)
                    .bind(now)
                    .bind(now + lease)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?;
                let mut out: Vec<OutboxRow> = rows.iter().map(outbox_row).collect::<Result<_>>()?;
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
                let state = lock_customer(&mut tx, &row.customer_id, None, now).await?;
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
                match &plan {
                    SendPlan::Send => {
                        sqlx::query(
                            "UPDATE outbox SET status = 'sending', sent_at = $2, updated_at = $2 \
                             WHERE id = $1 AND attempts = $3",
                        )
                        .bind(row.id)
                        .bind(now)
                        .bind(row.attempts)
                        .execute(&mut *tx)
                        .await?;
                    }
                    SendPlan::Defer { until, reason } => {
                        sqlx::query(
                            "UPDATE outbox SET not_before = $2, lease_until = NULL, updated_at = $3 \
                             WHERE id = $1 AND attempts = $4",
                        )
                        .bind(row.id)
                        .bind(*until)
                        .bind(now)
                        .bind(row.attempts)
                        .execute(&mut *tx)
                        .await?;
                        log_delivery(&mut tx, row, now, "deferred", reason, None).await?;
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
                        .await?;
                        log_delivery(&mut tx, row, now, "skipped", reason, None).await?;
                    }
                    SendPlan::Stale => {}
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
                             lease_until = NULL, updated_at = $3 WHERE id = $1 AND attempts = $4 AND status = 'sending'",
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
                    "SELECT not_before FROM outbox WHERE status = 'pending' ORDER BY not_before LIMIT 1",
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
                let rows = sqlx::query(
                    "SELECT id, idempotency_key, customer_id, sequence, step, template, category, status, \
                     attempts, not_before, message_id, last_error, sent_at FROM outbox ORDER BY id",
                )
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|r| {
                        Ok(OutboxView {
                            id: r.try_get("id")?,
                            idempotency_key: r.try_get("idempotency_key")?,
                            customer_id: r.try_get("customer_id")?,
                            sequence: r.try_get("sequence")?,
                            step: r.try_get("step")?,
                            template: r.try_get("template")?,
                            category: r.try_get("category")?,
                            status: r.try_get("status")?,
                            attempts: r.try_get("attempts")?,
                            not_before: r.try_get("not_before")?,
                            message_id: r.try_get("message_id")?,
                            last_error: r.try_get("last_error")?,
                            sent_at: r.try_get("sent_at")?,
                        })
                    })
                    .collect()
            }

            async fn deliveries(&self) -> Result<Vec<DeliveryView>> {
                let rows = sqlx::query(
                    "SELECT outbox_id, idempotency_key, attempt, at, outcome, detail FROM deliveries ORDER BY id",
                )
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|r| {
                        Ok(DeliveryView {
                            outbox_id: r.try_get("outbox_id")?,
                            idempotency_key: r.try_get("idempotency_key")?,
                            attempt: r.try_get("attempt")?,
                            at: r.try_get("at")?,
                            outcome: r.try_get("outcome")?,
                            detail: r.try_get("detail")?,
                        })
                    })
                    .collect()
            }

            async fn dead_letters(&self) -> Result<Vec<DeadLetter>> {
                let rows = sqlx::query("SELECT source, reason, payload, origin FROM dead_letters ORDER BY id")
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter()
                    .map(|r| {
                        Ok(DeadLetter {
                            source: r.try_get("source")?,
                            reason: r.try_get("reason")?,
                            payload: r.try_get("payload")?,
                            origin: r.try_get("origin")?,
                        })
                    })
                    .collect()
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
                        opened: opened != 0,
                    })
                })
                .collect()
        }
    };
}

pub(crate) use impl_store;
