//! Metrics in the Prometheus text format (`GET /metrics`).
//!
//! Two kinds of series:
//!
//! - **Counters and histograms** the roles record as they work, through the
//!   `metrics` crate into one Prometheus recorder per process ([`install`]:
//!   process-global, installed once, so tests that start several services in
//!   one process share it). The ingest path counts once per transaction, by
//!   event type, never once per event; label values are the service's own
//!   small sets (event types it knows, sources, sequences, templates, the
//!   reason words of [`reason_word`]), never customer ids, addresses or free
//!   text.
//! - **Gauges read at scrape time** ([`Scraped`]): enrollments by sequence and
//!   status and the outbox queue from one grouped query each, and the Kafka
//!   consumer's lag per partition from librdkafka's statistics. They are
//!   written straight into the answer, so a series that no longer exists
//!   (a partition moved to another instance, a status with no rows) goes
//!   away instead of repeating its last value.
//!
//! README, "Metrics", lists every series with its labels.

use std::fmt::Write as _;
use std::sync::OnceLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use metrics::{counter, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::engine::outbox::{OutboxStatus, Queued};
use crate::engine::state::Status;
use crate::event::KNOWN_TYPES;
use crate::sequence::model::Catalog;
use crate::store::{DeadLetter, QueueDepth};

pub const EVENTS_INGESTED: &str = "aftercare_events_ingested_total";
pub const EVENTS_DUPLICATE: &str = "aftercare_events_duplicate_total";
pub const DEAD_LETTERS: &str = "aftercare_dead_letters_total";
pub const EVENTS_UNMATCHED: &str = "aftercare_events_unmatched_total";
pub const EMAILS: &str = "aftercare_emails_total";
pub const UNSUBSCRIBES: &str = "aftercare_unsubscribes_total";
pub const OPENS: &str = "aftercare_email_opens_total";
pub const CLICKS: &str = "aftercare_email_clicks_total";
pub const WAKE_LAG: &str = "aftercare_wake_lag_seconds";
pub const SMTP_DURATION: &str = "aftercare_smtp_duration_seconds";
pub const STORE_TRANSACTION: &str = "aftercare_store_transaction_duration_seconds";
pub const ENROLLMENTS: &str = "aftercare_enrollments";
pub const OUTBOX_DEPTH: &str = "aftercare_outbox_depth";
pub const OUTBOX_DUE: &str = "aftercare_outbox_due";
pub const OUTBOX_OLDEST_DUE_AGE: &str = "aftercare_outbox_oldest_due_age_seconds";
pub const KAFKA_LAG: &str = "aftercare_kafka_consumer_lag";
pub const KAFKA_ASSIGNED: &str = "aftercare_kafka_assigned_partitions";

/// Buckets of the wake-up lag: a scheduler keeps up within a second; minutes
/// mean it is down or far behind.
const WAKE_LAG_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];
/// Buckets of one SMTP exchange (MAIL to the reply after DATA).
const SMTP_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// Buckets of one store transaction.
const TRANSACTION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Histogram samples wait in the recorder until they are folded into their
/// buckets; this often, whether or not anybody scrapes, so memory stays flat.
const UPKEEP: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's recorder, installed on first use; later calls return the
/// same handle. Should another recorder already be installed (a program
/// embedding aftercare), the handle renders this one's series only, which
/// then stay empty: said once in the log.
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let buckets = |b: PrometheusBuilder, name: &str, values: &[f64]| {
            b.set_buckets_for_metric(Matcher::Full(name.to_string()), values)
                .expect("bucket lists are not empty")
        };
        let mut builder = PrometheusBuilder::new();
        builder = buckets(builder, WAKE_LAG, WAKE_LAG_BUCKETS);
        builder = buckets(builder, SMTP_DURATION, SMTP_BUCKETS);
        builder = buckets(builder, STORE_TRANSACTION, TRANSACTION_BUCKETS);
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if let Err(e) = metrics::set_global_recorder(recorder) {
            tracing::warn!("metrics: another recorder is installed ({e}); /metrics shows only the gauges read at scrape time");
        }
        describe();
        // The counters an alert watches for a first increase exist from the
        // start, at 0: a series that appears at 1 shows no increase.
        for source in SOURCES.iter().chain(["other"].iter()) {
            counter!(DEAD_LETTERS, "source" => *source).increment(0);
            counter!(EVENTS_DUPLICATE, "source" => *source).increment(0);
        }
        let upkeep = handle.clone();
        let spawned = std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(UPKEEP);
                    upkeep.run_upkeep();
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("metrics: no upkeep thread ({e}); histograms are folded at scrape time only");
        }
        handle
    })
}

/// The `# HELP` lines.
fn describe() {
    use metrics::{Unit, describe_counter, describe_histogram};
    describe_counter!(
        EVENTS_INGESTED,
        "Events applied (not duplicates), by event type and source"
    );
    describe_counter!(
        EVENTS_DUPLICATE,
        "Events whose id was already recorded, by source"
    );
    describe_counter!(DEAD_LETTERS, "Messages dead-lettered, by source");
    describe_counter!(
        EVENTS_UNMATCHED,
        "Events of a type no loaded sequence listens to, by event type"
    );
    describe_counter!(
        EMAILS,
        "Emails by sequence, template and result (sent, deferred, skipped, failed, bounced), with a reason for deferred and skipped"
    );
    describe_counter!(UNSUBSCRIBES, "Unsubscriptions applied, by source");
    describe_counter!(
        OPENS,
        "Recorded opens, by sequence; machine=\"true\" for privacy proxies and scanners"
    );
    describe_counter!(
        CLICKS,
        "Recorded clicks, by sequence; machine=\"true\" for link scanners"
    );
    describe_histogram!(
        WAKE_LAG,
        Unit::Seconds,
        "How late the scheduler woke enrollments (now - wake_at)"
    );
    describe_histogram!(
        SMTP_DURATION,
        Unit::Seconds,
        "One SMTP exchange with the relay, by result (ok, error, timeout)"
    );
    describe_histogram!(
        STORE_TRANSACTION,
        Unit::Seconds,
        "Store transactions of the ingest, wake and send paths, by kind"
    );
}

/// The exposition: the recorder's series and the gauges read now.
pub fn render(scraped: &Scraped) -> String {
    let mut out = install().render();
    scraped.write(&mut out);
    out
}

/// What an ingest transaction took, for [`ingested`].
#[derive(Debug, Default)]
pub struct Taken<'a> {
    /// Events applied, counted by type (a batch holds a few types).
    pub types: Vec<(&'a str, u64)>,
    pub duplicates: u64,
    pub unsubscribes: u64,
}

impl<'a> Taken<'a> {
    pub fn event(&mut self, kind: &'a str) {
        match self.types.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, n)) => *n += 1,
            None => self.types.push((kind, 1)),
        }
        if kind == "customer.unsubscribed" {
            self.unsubscribes += 1;
        }
    }
}

/// Counts one committed ingest transaction: a few counter updates, whatever
/// its size.
pub fn ingested(catalog: &Catalog, source: &str, taken: &Taken<'_>, took: Duration) {
    histogram!(STORE_TRANSACTION, "kind" => "ingest").record(took.as_secs_f64());
    let source = source_label(source);
    for (kind, n) in &taken.types {
        counter!(EVENTS_INGESTED, "type" => type_label(catalog, kind), "source" => source)
            .increment(*n);
    }
    if taken.duplicates > 0 {
        counter!(EVENTS_DUPLICATE, "source" => source).increment(taken.duplicates);
    }
    if taken.unsubscribes > 0 {
        counter!(UNSUBSCRIBES, "source" => source).increment(taken.unsubscribes);
    }
}

/// The sources that call the ingest path; another name is `other`.
const SOURCES: &[&str] = &["kafka", "http", "file", "unsubscribe", "smtp"];

fn source_label(source: &str) -> &'static str {
    SOURCES
        .iter()
        .find(|s| **s == source)
        .copied()
        .unwrap_or("other")
}

/// An event type as a label: a documented type, or one a loaded sequence
/// listens to, by name; any other `other` (those are counted by name, up to
/// a limit, in [`EVENTS_UNMATCHED`]).
fn type_label(catalog: &Catalog, kind: &str) -> metrics::SharedString {
    if let Some(k) = KNOWN_TYPES.iter().find(|k| **k == kind) {
        return (*k).into();
    }
    if catalog.triggers.contains_key(kind) || catalog.looked_back.contains(kind) {
        return kind.to_string().into();
    }
    "other".into()
}

/// Counts kept dead letters by source.
pub fn dead_letters(letters: &[DeadLetter]) {
    let mut by: Vec<(&'static str, u64)> = Vec::new();
    for l in letters {
        let s = source_label(&l.source);
        match by.iter_mut().find(|(k, _)| *k == s) {
            Some((_, n)) => *n += 1,
            None => by.push((s, 1)),
        }
    }
    for (source, n) in by {
        counter!(DEAD_LETTERS, "source" => source).increment(n);
    }
}

/// Counts `events` of a type nothing listens to; `kind` is already bounded
/// by the caller ([`crate::ingest::listened::Watch`]).
pub fn unmatched(kind: &str, events: u64) {
    counter!(EVENTS_UNMATCHED, "type" => kind.to_string()).increment(events);
}

/// What became of one email at the sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailResult {
    Sent,
    Deferred(&'static str),
    Skipped(&'static str),
    Failed,
    /// The relay refused the recipient for good (its later reports come as
    /// `email.bounced` events, counted in [`EVENTS_INGESTED`]).
    Bounced,
}

/// Counts one email's result.
pub fn email(row: &Queued, result: EmailResult) {
    let (name, reason) = match result {
        EmailResult::Sent => ("sent", None),
        EmailResult::Deferred(r) => ("deferred", Some(r)),
        EmailResult::Skipped(r) => ("skipped", Some(r)),
        EmailResult::Failed => ("failed", None),
        EmailResult::Bounced => ("bounced", None),
    };
    let sequence = row.sequence.clone();
    let template = row.template.clone();
    match reason {
        Some(reason) => counter!(EMAILS, "sequence" => sequence, "template" => template,
            "result" => name, "reason" => reason)
        .increment(1),
        None => counter!(EMAILS, "sequence" => sequence, "template" => template, "result" => name)
            .increment(1),
    }
}

/// The reason of a deferral or a skip as one word of a small fixed set,
/// from the sentence the send policy wrote (`engine::outbox::decide`,
/// `engine::policy::Skip`, the sender's size limit); `other` for a sentence
/// it does not know.
pub fn reason_word(reason: &str) -> &'static str {
    const WORDS: &[(&str, &str)] = &[
        ("address suppressed", "suppressed"),
        ("no marketing consent", "no_consent"),
        ("unsubscribed from offers", "no_offers"),
        ("sunset:", "sunset"),
        ("promo share", "promo_share"),
        ("no time to send", "no_slot"),
        ("ceiling:", "ceiling"),
        ("stale:", "stale"),
        ("unknown customer", "unknown_customer"),
        ("email too large", "too_large"),
        ("quiet hours", "quiet_hours"),
        ("frequency cap", "frequency_cap"),
    ];
    WORDS
        .iter()
        .find(|(start, _)| reason.starts_with(start))
        .map_or("other", |(_, word)| word)
}

/// Every word [`reason_word`] and the sender give a deferral or a skip.
pub const REASON_WORDS: &[&str] = &[
    "suppressed",
    "no_consent",
    "no_offers",
    "sunset",
    "promo_share",
    "no_slot",
    "ceiling",
    "stale",
    "unknown_customer",
    "too_large",
    "quiet_hours",
    "frequency_cap",
    "transient",
    "relay_unavailable",
    "other",
];

/// One wake-up, `lag` after its `wake_at`.
pub fn woke(lag: chrono::TimeDelta) {
    let secs = lag.num_milliseconds().max(0) as f64 / 1000.0;
    histogram!(WAKE_LAG).record(secs);
}

/// One store transaction of `kind` (`wake`, `send`; ingest's go through
/// [`ingested`]).
pub fn transaction(kind: &'static str, took: Duration) {
    histogram!(STORE_TRANSACTION, "kind" => kind).record(took.as_secs_f64());
}

/// One SMTP exchange: `ok`, `error` (a reply refusing or a broken
/// connection) or `timeout`.
pub fn smtp(result: &'static str, took: Duration) {
    histogram!(SMTP_DURATION, "result" => result).record(took.as_secs_f64());
}

/// One recorded open or click of an email of `sequence` (its idempotency
/// key's first part, kept only when the catalog has it).
pub fn activity(
    catalog: &Catalog,
    kind: crate::store::ActivityKind,
    idempotency_key: &str,
    machine: bool,
) {
    let sequence = idempotency_key
        .split_once('/')
        .map(|(s, _)| s)
        .filter(|s| catalog.sequences.contains_key(*s))
        .map_or_else(|| "other".to_string(), str::to_string);
    let machine = if machine { "true" } else { "false" };
    let name = match kind {
        crate::store::ActivityKind::Open => OPENS,
        crate::store::ActivityKind::Click => CLICKS,
    };
    counter!(name, "sequence" => sequence, "machine" => machine).increment(1);
}

/// The gauges read at scrape time.
#[derive(Debug, Default)]
pub struct Scraped {
    /// `(sequence, status, count)`; `None`: the store did not answer.
    pub enrollments: Option<Vec<(String, Status, i64)>>,
    pub outbox: Option<Vec<QueueDepth>>,
    pub now: Option<DateTime<Utc>>,
    /// The Kafka consumer of this process, when it runs one.
    pub kafka: Option<KafkaGauges>,
}

/// The Kafka consumer's partitions and their lag.
#[derive(Debug, Default, Clone)]
pub struct KafkaGauges {
    pub assigned: usize,
    /// `(topic, partition, lag)`: messages between the committed offset and
    /// the high watermark, for the partitions assigned to this consumer.
    pub lag: Vec<(String, i32, i64)>,
}

impl Scraped {
    fn write(&self, out: &mut String) {
        if let Some(rows) = &self.enrollments {
            head(
                out,
                ENROLLMENTS,
                "Enrollments by sequence and status (read at scrape time)",
            );
            for (sequence, status, n) in rows {
                let status = crate::store::status_name(*status);
                let _ = writeln!(
                    out,
                    "{ENROLLMENTS}{{sequence=\"{}\",status=\"{status}\"}} {n}",
                    escape(sequence)
                );
            }
        }
        if let (Some(rows), Some(now)) = (&self.outbox, self.now) {
            let of = |s: OutboxStatus| rows.iter().find(|r| r.status == s);
            head(
                out,
                OUTBOX_DEPTH,
                "Outbox rows waiting or being sent, by status (read at scrape time)",
            );
            for s in [OutboxStatus::Pending, OutboxStatus::Sending] {
                let n = of(s).map_or(0, |r| r.rows);
                let _ = writeln!(out, "{OUTBOX_DEPTH}{{status=\"{}\"}} {n}", s.as_str());
            }
            let pending = of(OutboxStatus::Pending);
            head(
                out,
                OUTBOX_DUE,
                "Pending outbox rows whose time has come (read at scrape time)",
            );
            let _ = writeln!(out, "{OUTBOX_DUE} {}", pending.map_or(0, |r| r.due));
            head(
                out,
                OUTBOX_OLDEST_DUE_AGE,
                "Seconds since the oldest due pending outbox row became sendable; 0 when none is due",
            );
            let age = pending
                .and_then(|r| r.oldest)
                .filter(|t| *t <= now)
                .map_or(0.0, |t| (now - t).num_milliseconds() as f64 / 1000.0);
            let _ = writeln!(out, "{OUTBOX_OLDEST_DUE_AGE} {age}");
        }
        if let Some(k) = &self.kafka {
            head(
                out,
                KAFKA_ASSIGNED,
                "Partitions assigned to this process's Kafka consumer",
            );
            let _ = writeln!(out, "{KAFKA_ASSIGNED} {}", k.assigned);
            head(
                out,
                KAFKA_LAG,
                "Messages between the committed offset and the high watermark, per assigned partition",
            );
            for (topic, partition, lag) in &k.lag {
                let _ = writeln!(
                    out,
                    "{KAFKA_LAG}{{topic=\"{}\",partition=\"{partition}\"}} {lag}",
                    escape(topic)
                );
            }
        }
    }
}

fn head(out: &mut String, name: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} gauge");
}

/// A label value as the text format wants it.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::policy::Skip;

    #[test]
    fn every_reason_the_policy_gives_has_its_word() {
        let skips = [
            Skip::Suppressed,
            Skip::NoConsent,
            Skip::NoOffers,
            Skip::Sunset { unopened: 3 },
            Skip::PromoShare {
                promos: 3,
                total: 4,
                max_percent: 50,
            },
            Skip::NoSlot,
        ];
        let words: Vec<&str> = skips.iter().map(|s| reason_word(&s.to_string())).collect();
        assert_eq!(
            words,
            [
                "suppressed",
                "no_consent",
                "no_offers",
                "sunset",
                "promo_share",
                "no_slot"
            ]
        );
        for (reason, word) in [
            ("address suppressed: email.bounced (hard)", "suppressed"),
            ("unknown customer", "unknown_customer"),
            (
                "ceiling: the customer was sent 3 emails in the last 1d",
                "ceiling",
            ),
            ("stale: 2d after it was due", "stale"),
            (
                "quiet hours: deferred to 2026-01-01T07:00:00+00:00",
                "quiet_hours",
            ),
            (
                "frequency cap: deferred to 2026-01-01T07:00:00+00:00",
                "frequency_cap",
            ),
            ("email too large: 2000000 bytes", "too_large"),
            ("something new", "other"),
        ] {
            assert_eq!(reason_word(reason), word, "{reason}");
            assert!(REASON_WORDS.contains(&word));
        }
    }

    #[test]
    fn scraped_gauges_are_valid_text_and_drop_what_is_gone() {
        let now: DateTime<Utc> = "2026-03-01T12:00:00Z".parse().unwrap();
        let s = Scraped {
            enrollments: Some(vec![("re\"order".into(), Status::Active, 3)]),
            outbox: Some(vec![QueueDepth {
                status: OutboxStatus::Pending,
                rows: 5,
                due: 2,
                oldest: Some(now - chrono::TimeDelta::seconds(90)),
            }]),
            now: Some(now),
            kafka: Some(KafkaGauges {
                assigned: 1,
                lag: vec![("shop-events".into(), 2, 17)],
            }),
        };
        let mut out = String::new();
        s.write(&mut out);
        for line in [
            "aftercare_enrollments{sequence=\"re\\\"order\",status=\"active\"} 3",
            "aftercare_outbox_depth{status=\"pending\"} 5",
            "aftercare_outbox_depth{status=\"sending\"} 0",
            "aftercare_outbox_due 2",
            "aftercare_outbox_oldest_due_age_seconds 90",
            "aftercare_kafka_assigned_partitions 1",
            "aftercare_kafka_consumer_lag{topic=\"shop-events\",partition=\"2\"} 17",
        ] {
            assert!(out.lines().any(|l| l == line), "{line} not in\n{out}");
        }
        // Nothing due: the age is 0, not the age of a row waiting for later.
        let later = Scraped {
            outbox: Some(vec![QueueDepth {
                status: OutboxStatus::Pending,
                rows: 1,
                due: 0,
                oldest: Some(now + chrono::TimeDelta::hours(1)),
            }]),
            now: Some(now),
            ..Scraped::default()
        };
        let mut out = String::new();
        later.write(&mut out);
        assert!(
            out.contains("aftercare_outbox_oldest_due_age_seconds 0\n"),
            "{out}"
        );
    }
}
