//! The Kafka source: a consumer group on `AFTERCARE_KAFKA_TOPIC`, at least
//! once. Offsets are stored only after the batch's transaction has committed
//! (auto-commit then sends stored offsets); on partition revoke and on
//! shutdown the stored offsets are committed synchronously. Messages that do
//! not parse or validate, and events the store refuses even alone, go to
//! `<topic>.dlq` and `dead_letters` with their reason; consumption goes on.
//!
//! The loop is an explicit state machine: Consuming (collect a batch) →
//! Applying (one transaction, retried until it commits or we stop) →
//! Acknowledging (store offsets) → Consuming; on stop, Draining (commit sync).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::{Header, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::statistics::Statistics;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::engine::customer::shard_of;
use crate::event::Event;
use crate::ingest::listened::Watch;
use crate::sequence::model::Catalog;
use crate::store::Store;

#[derive(Debug, Clone)]
pub struct KafkaConfig {
    pub brokers: String,
    pub topic: String,
    pub group: String,
    /// At most this many messages per poll, split into transactions by
    /// partition and by customer (`shards`). This bounds the resident memory:
    /// each transaction holds its customers' enrollments. Measured on a
    /// 100,000-event backlog (docs/BENCHMARKS.md): 2,000 in 4 shards ran at
    /// 9,700-10,100 events/s peaking at 93-103 MiB; 1,000 at ~8,000/s and
    /// ~90 MiB; 4,000 in one transaction per partition peaked at 247 MiB
    /// (docs/kafka-ingest-findings.md).
    pub batch_max: usize,
    /// Transactions per partition and batch, each for a share of the
    /// customers, run side by side.
    pub shards: usize,
    /// How long to wait for a batch to fill once its first message is in.
    pub batch_wait: Duration,
    /// Partitions for topics we create.
    pub partitions: i32,
}

impl KafkaConfig {
    pub fn new(brokers: &str, topic: &str, group: &str) -> Self {
        Self {
            brokers: brokers.to_string(),
            topic: topic.to_string(),
            group: group.to_string(),
            batch_max: 2000,
            shards: 4,
            batch_wait: Duration::from_millis(20),
            partitions: 4,
        }
    }

    pub fn dlq(&self) -> String {
        format!("{}.dlq", self.topic)
    }
}

/// What the consumer's callbacks learn, shared with `/readyz` and
/// `/metrics`: whether the group has given this consumer its partitions,
/// which, and how far behind each is.
#[derive(Debug)]
pub struct ConsumerState {
    topic: String,
    /// `None` until the group assigns partitions and again from a revoke to
    /// the next assignment; `Some` (possibly empty: a member beyond the
    /// partition count waits as a standby) once it has.
    assigned: Mutex<Option<BTreeSet<(String, i32)>>>,
    /// `(topic, partition, lag)` of the assigned partitions, from the last
    /// statistics (every [`STATISTICS_INTERVAL_MS`]).
    lag: Mutex<Vec<(String, i32, i64)>>,
}

/// How often librdkafka reports its statistics (the consumer lag).
pub const STATISTICS_INTERVAL_MS: &str = "5000";

impl ConsumerState {
    pub fn new(topic: &str) -> Self {
        Self {
            topic: topic.to_string(),
            assigned: Mutex::new(None),
            lag: Mutex::new(Vec::new()),
        }
    }

    /// How many partitions are assigned; `None` while none are (the
    /// consumer has not joined its group yet, or a rebalance is under way).
    pub fn assigned(&self) -> Option<usize> {
        lock(&self.assigned).as_ref().map(BTreeSet::len)
    }

    /// The `/readyz` check: `ok`, or what is awaited.
    pub fn readiness(&self) -> String {
        match self.assigned() {
            Some(_) => "ok".to_string(),
            None => format!(
                "waiting for the consumer group to assign partitions of {}",
                self.topic
            ),
        }
    }

    /// The gauges of `/metrics`.
    pub fn gauges(&self) -> crate::telemetry::KafkaGauges {
        crate::telemetry::KafkaGauges {
            assigned: self.assigned().unwrap_or(0),
            lag: lock(&self.lag).clone(),
        }
    }

    fn assign(&self, tpl: &rdkafka::TopicPartitionList) {
        let parts = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        *lock(&self.assigned) = Some(parts);
    }

    fn revoke(&self) {
        *lock(&self.assigned) = None;
        lock(&self.lag).clear();
    }

    /// Keeps the lag of the assigned partitions. librdkafka reports every
    /// partition it knows, with -1 as the lag of one without a committed
    /// offset: all of such a partition is still to read (the consumer starts
    /// at the earliest offset), so its lag is the high watermark less the
    /// low one (so that a consumer stuck from its very start shows too).
    fn statistics(&self, stats: &Statistics) {
        let assigned = lock(&self.assigned).clone().unwrap_or_default();
        let lag_of = |p: &rdkafka::statistics::Partition| match p.consumer_lag {
            l if l >= 0 => Some(l),
            _ if p.hi_offset >= 0 && p.lo_offset >= 0 => Some(p.hi_offset - p.lo_offset),
            _ => None,
        };
        let mut lag: Vec<(String, i32, i64)> = stats
            .topics
            .iter()
            .flat_map(|(topic, t)| {
                t.partitions
                    .values()
                    .filter(|p| assigned.contains(&(topic.clone(), p.partition)))
                    .filter_map(move |p| Some((topic.clone(), p.partition, lag_of(p)?)))
            })
            .collect();
        lag.sort();
        *lock(&self.lag) = lag;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Commits stored offsets synchronously before partitions are taken away, so
/// the next owner starts after the last committed batch; keeps the
/// assignment and the lag in [`ConsumerState`].
pub struct CommitOnRevoke {
    pub state: Arc<ConsumerState>,
}

impl ClientContext for CommitOnRevoke {
    fn stats(&self, statistics: Statistics) {
        self.state.statistics(&statistics);
    }
}

impl ConsumerContext for CommitOnRevoke {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let parts: Vec<String> = tpl
                .elements()
                .iter()
                .map(|e| format!("{}/{}", e.topic(), e.partition()))
                .collect();
            tracing::info!(partitions = %parts.join(","), "assigned");
            self.state.assign(tpl);
        }
    }

    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            self.state.revoke();
            match consumer.commit_consumer_state(CommitMode::Sync) {
                Ok(()) => tracing::info!(partitions = tpl.count(), "revoked: offsets committed"),
                // Nothing stored since the last commit is the usual case.
                Err(e) => tracing::debug!("revoke commit: {e}"),
            }
        }
    }
}

/// Creates the events topic and its dead-letter topic if the broker lets us.
pub async fn ensure_topics(cfg: &KafkaConfig) {
    let admin: AdminClient<DefaultClientContext> = match ClientConfig::new()
        .set("bootstrap.servers", &cfg.brokers)
        .create()
    {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!("kafka admin client: {e}");
            return;
        }
    };
    let dlq = cfg.dlq();
    let topics = [
        NewTopic::new(&cfg.topic, cfg.partitions, TopicReplication::Fixed(1)),
        NewTopic::new(&dlq, 1, TopicReplication::Fixed(1)),
    ];
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    match admin.create_topics(&topics, &opts).await {
        Ok(results) => {
            for r in results {
                match r {
                    Ok(t) => tracing::info!(topic = %t, "created topic"),
                    Err((t, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {
                        tracing::debug!(topic = %t, "topic exists")
                    }
                    Err((t, e)) => tracing::warn!(topic = %t, "could not create topic: {e}"),
                }
            }
        }
        Err(e) => {
            tracing::warn!("could not create topics ({e}); create them with your broker's tools")
        }
    }
}

/// The consumer's librdkafka settings (shared with `examples/loadgen.rs`,
/// which measures the same client without the service around it).
pub fn consumer_config(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers)
        .set("group.id", &cfg.group)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        // A member that dies (kill -9) is replaced within seconds: the
        // coordinator waits at most the poll interval for it to rejoin.
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "1000")
        .set("max.poll.interval.ms", "15000")
        .set("enable.partition.eof", "false")
        // Prefetch enough for a few batches, not librdkafka's default of up
        // to 64 MiB per partition: memory stays flat however long the backlog.
        .set("queued.max.messages.kbytes", "4096")
        .set("queued.min.messages", "5000")
        // When the prefetch queue is full a partition's next fetch waits this
        // long (default 1 s): with the small queue above, 1 s stalls capped
        // the consumer at ~8,500 messages/s; 20 ms lets it read ~30,000/s.
        .set("fetch.queue.backoff.ms", "20")
        .set("fetch.max.bytes", "4194304")
        .set("max.partition.fetch.bytes", "1048576");
    c
}

/// The service's consumer, reporting its assignment and lag to `state`.
pub fn consumer(
    cfg: &KafkaConfig,
    state: Arc<ConsumerState>,
) -> anyhow::Result<StreamConsumer<CommitOnRevoke>> {
    let c: StreamConsumer<CommitOnRevoke> = consumer_config(cfg)
        .set("statistics.interval.ms", STATISTICS_INTERVAL_MS)
        .create_with_context(CommitOnRevoke { state })?;
    c.subscribe(&[&cfg.topic])?;
    Ok(c)
}

pub fn producer(brokers: &str) -> anyhow::Result<FutureProducer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("message.timeout.ms", "30000")
        .create()?)
}

/// Consumes until `stop`. Returns after the last batch's offsets are
/// committed. `state` learns the assignment and the lag (`/readyz`,
/// `/metrics`).
#[allow(clippy::too_many_arguments)]
pub async fn run<S: Store>(
    store: S,
    catalog: Arc<Catalog>,
    clock: Arc<dyn Clock>,
    cfg: KafkaConfig,
    kick: Arc<Notify>,
    watch: Arc<Watch>,
    state: Arc<ConsumerState>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    ensure_topics(&cfg).await;
    let consumer = consumer(&cfg, state)?;
    let dlq = producer(&cfg.brokers)?;
    tracing::info!(topic = %cfg.topic, group = %cfg.group, "consuming");
    loop {
        // Consuming: wait for a first message, then fill the batch briefly.
        let first = tokio::select! {
            _ = stop.cancelled() => break,
            m = consumer.recv() => m,
        };
        let mut batch: Vec<OwnedMessage> = Vec::with_capacity(cfg.batch_max);
        match first {
            Ok(m) => batch.push(m.detach()),
            Err(e) => {
                tracing::warn!("kafka: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        }
        let deadline = tokio::time::Instant::now() + cfg.batch_wait;
        while batch.len() < cfg.batch_max {
            tokio::select! {
                m = consumer.recv() => match m {
                    Ok(m) => batch.push(m.detach()),
                    Err(e) => { tracing::warn!("kafka: {e}"); break; }
                },
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        // Applying: the batch is cut by partition and, within a partition,
        // by customer (`cfg.shards` ways), one transaction each, side by
        // side. A customer's events stay together and in order, so the
        // transactions never touch the same customer, and each commits as a
        // whole or not at all. Messages come from the client in runs of one
        // partition, so the customer cut is what lets the database and this
        // process work at the same time.
        let mut groups: BTreeMap<(i32, usize), Group> = BTreeMap::new();
        for m in &batch {
            match m.payload().map(super::parse) {
                Some(Ok(mut ev)) => {
                    ev.history |= is_history(m);
                    let shard = shard_of(&ev.customer.id, cfg.shards);
                    let group = groups.entry((m.partition(), shard)).or_default();
                    group.events.push(ev);
                    group.messages.push(m);
                }
                Some(Err(reason)) => groups
                    .entry((m.partition(), 0))
                    .or_default()
                    .dead
                    .push((m, reason)),
                None => groups
                    .entry((m.partition(), 0))
                    .or_default()
                    .dead
                    .push((m, "empty message".to_string())),
            }
        }
        let mut applying = Vec::with_capacity(groups.len());
        for group in groups.values() {
            applying.push(apply(
                &store,
                &catalog,
                clock.as_ref(),
                &cfg,
                &dlq,
                &watch,
                group,
                &stop,
            ));
        }
        let committed = futures_util::future::join_all(applying).await;
        if committed.iter().any(|ok| !ok) {
            break; // stopped before every part committed: no offsets stored
        }
        // Acknowledging: offsets only now that the transaction has committed.
        let mut last: BTreeMap<(String, i32), i64> = BTreeMap::new();
        for m in &batch {
            let e = last
                .entry((m.topic().to_string(), m.partition()))
                .or_insert(m.offset());
            *e = (*e).max(m.offset());
        }
        for ((topic, partition), offset) in last {
            // `store_offset` takes the message's own offset (librdkafka adds 1).
            if let Err(e) = consumer.store_offset(&topic, partition, offset) {
                // The partition was revoked meanwhile; its new owner re-reads
                // from the last commit and the event ids make that harmless.
                tracing::warn!(%topic, partition, offset, "store offset: {e}");
            }
        }
        kick.notify_waiters();
    }
    // Draining: commit what has been stored, synchronously.
    if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
        tracing::debug!("final commit: {e}");
    }
    tracing::info!("kafka consumer stopped");
    Ok(())
}

/// One transaction's share of a batch.
#[derive(Default)]
struct Group<'a> {
    events: Vec<Event>,
    /// The message of each event.
    messages: Vec<&'a OwnedMessage>,
    dead: Vec<(&'a OwnedMessage, String)>,
}

/// Dead-letters the bad messages and ingests the good ones in one
/// transaction, retrying while the database is unavailable; events the store
/// refuses even alone are dead-lettered too. Returns false if asked to stop
/// before it could commit.
#[allow(clippy::too_many_arguments)]
async fn apply<S: Store>(
    store: &S,
    catalog: &Catalog,
    clock: &dyn Clock,
    cfg: &KafkaConfig,
    dlq: &FutureProducer,
    watch: &Watch,
    group: &Group<'_>,
    stop: &CancellationToken,
) -> bool {
    let Group {
        events,
        messages,
        dead,
    } = group;
    let dead: Vec<(&OwnedMessage, &str)> = dead.iter().map(|(m, r)| (*m, r.as_str())).collect();
    if !dead_letters(store, clock, cfg, dlq, &dead, stop).await {
        return false;
    }
    let mut wait = Duration::from_millis(200);
    let report = loop {
        match super::ingest_batch(store, catalog, events, "kafka", clock.now()).await {
            Ok(r) => break r,
            Err(e) => {
                tracing::error!(events = events.len(), "ingest failed, retrying: {e}");
                if sleep_or_stop(wait, stop).await {
                    return false;
                }
                wait = (wait * 2).min(Duration::from_secs(10));
            }
        }
    };
    watch.note(
        super::listened::kinds_taken(events, &report.refused),
        clock.now(),
    );
    tracing::debug!(
        applied = report.applied,
        duplicates = report.duplicates,
        emails = report.emails,
        refused = report.refused.len(),
        "batch committed"
    );
    let refused: Vec<(&OwnedMessage, &str)> = report
        .refused
        .iter()
        .map(|r| (messages[r.index], r.reason.as_str()))
        .collect();
    dead_letters(store, clock, cfg, dlq, &refused, stop).await
}

/// Sends each message to `<topic>.dlq` with its reason, and keeps them in
/// the dead-letter table in one transaction (retrying while the store is
/// unavailable). Returns false if asked to stop first.
async fn dead_letters<S: Store>(
    store: &S,
    clock: &dyn Clock,
    cfg: &KafkaConfig,
    dlq: &FutureProducer,
    messages: &[(&OwnedMessage, &str)],
    stop: &CancellationToken,
) -> bool {
    if messages.is_empty() {
        return true;
    }
    let dlq_topic = cfg.dlq();
    let mut letters = Vec::with_capacity(messages.len());
    for (m, reason) in messages {
        let origin = format!("{}/{}/{}", m.topic(), m.partition(), m.offset());
        tracing::warn!(%origin, "dead letter: {reason}");
        let payload = m.payload().unwrap_or_default();
        let mut record = FutureRecord::to(&dlq_topic).payload(payload).headers(
            OwnedHeaders::new()
                .insert(Header {
                    key: "aftercare-reason",
                    value: Some(reason.as_bytes()),
                })
                .insert(Header {
                    key: "aftercare-origin",
                    value: Some(origin.as_bytes()),
                }),
        );
        if let Some(k) = m.key() {
            record = record.key(k);
        }
        if let Err((e, _)) = dlq.send(record, Duration::from_secs(30)).await {
            tracing::error!(%origin, "could not produce to {dlq_topic}: {e}; kept in the dead_letters table");
        }
        letters.push(super::dead(
            "kafka",
            reason.to_string(),
            payload,
            Some(origin),
        ));
    }
    let mut wait = Duration::from_millis(200);
    while let Err(e) = store.keep_dead_letters(&letters, clock.now()).await {
        tracing::error!("dead letters: {e}");
        if sleep_or_stop(wait, stop).await {
            return false;
        }
        wait = (wait * 2).min(Duration::from_secs(10));
    }
    crate::telemetry::dead_letters(&letters);
    true
}

/// The message header that marks an event as history (see
/// [`Event::history`]): `aftercare-history: true`.
pub const HISTORY_HEADER: &str = "aftercare-history";

/// Whether the message carries [`HISTORY_HEADER`] with the value `true` (or
/// `1`; case ignored).
fn is_history<M: Message>(m: &M) -> bool {
    use rdkafka::message::Headers;
    m.headers().is_some_and(|hs| {
        hs.iter().any(|h| {
            h.key.eq_ignore_ascii_case(HISTORY_HEADER)
                && h.value.is_some_and(|v| {
                    let v = String::from_utf8_lossy(v);
                    let v = v.trim();
                    v.eq_ignore_ascii_case("true") || v == "1"
                })
        })
    })
}

async fn sleep_or_stop(d: Duration, stop: &CancellationToken) -> bool {
    tokio::select! {
        _ = stop.cancelled() => true,
        _ = tokio::time::sleep(d) => false,
    }
}
