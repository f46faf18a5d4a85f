//! The Kafka source: a consumer group on `AFTERCARE_KAFKA_TOPIC`, at least
//! once. An offset is stored only after the transactions of its message and
//! of every message before it in its partition have committed (auto-commit
//! then sends stored offsets); on partition revoke and on shutdown the
//! stored offsets are committed synchronously. Messages that do not parse or
//! validate, and events the store refuses even alone, go to `<topic>.dlq`
//! and `dead_letters` with their reason; consumption goes on.
//!
//! Reading and ingesting run apart: the reader parses each message and
//! queues it on its customer's lane; each lane loops Applying (what has
//! queued, one transaction, retried until it commits or we stop) →
//! Acknowledging (store offsets). On stop, Draining: the lanes finish the
//! transaction they are in, then the stored offsets are committed.

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
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
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
    /// At most this many messages between the stream and their commit, all
    /// lanes together. This bounds the resident memory: each transaction
    /// holds its customers' enrollments (docs/BENCHMARKS.md).
    pub batch_max: usize,
    /// Lanes: transactions side by side, each for a share of the customers.
    pub lanes: usize,
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
            lanes: 4,
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

/// Consumes until `stop`. Returns after the last committed transactions'
/// offsets are committed. `state` learns the assignment and the lag
/// (`/readyz`, `/metrics`).
///
/// One task reads the stream and hands each message to a lane by its
/// customer ([`shard_of`]); each lane, its own task, takes whatever has
/// queued for it and ingests it in one transaction, then the next. A lane
/// never waits for another: no batch ends when its slowest transaction does.
/// A customer's events go to one lane, in the order read. At most
/// `batch_max` messages are between the stream and a commit at any time.
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
    let consumer = Arc::new(consumer(&cfg, state)?);
    let lane = Lane {
        store,
        catalog,
        clock,
        dlq: producer(&cfg.brokers)?,
        consumer: consumer.clone(),
        offsets: Arc::new(Offsets::of(&cfg.topic)),
        kick,
        watch,
        stop: stop.clone(),
        cfg: cfg.clone(),
    };
    let lanes = cfg.lanes.max(1);
    let mut queues = Vec::with_capacity(lanes);
    let mut running = tokio::task::JoinSet::new();
    for _ in 0..lanes {
        let (queue, taken) = tokio::sync::mpsc::unbounded_channel();
        queues.push(queue);
        running.spawn(lane.clone().run(taken));
    }
    let room = Arc::new(Semaphore::new(cfg.batch_max.max(1)));
    let mut failed = None;
    tracing::info!(topic = %cfg.topic, group = %cfg.group, lanes, "consuming");
    loop {
        let permit = tokio::select! {
            _ = stop.cancelled() => break,
            p = room.clone().acquire_owned() => p.expect("the semaphore is never closed"),
        };
        let message = tokio::select! {
            _ = stop.cancelled() => break,
            // A lane ends before the reader only when it fails.
            Some(ended) = running.join_next() => {
                failed = ended.err();
                break;
            }
            m = consumer.recv() => m,
        };
        let message = match message {
            Ok(m) => m.detach(),
            Err(e) => {
                tracing::warn!("kafka: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        lane.offsets.read(&message);
        let parsed = match message.payload().map(super::parse) {
            Some(Ok(mut ev)) => {
                ev.history |= is_history(&message);
                Ok(ev)
            }
            Some(Err(reason)) => Err(reason),
            None => Err("empty message".to_string()),
        };
        let to = match &parsed {
            Ok(ev) => shard_of(&ev.customer.id, lanes),
            // Dead letters have no order to keep.
            Err(_) => usize::try_from(message.partition()).unwrap_or(0) % lanes,
        };
        let read = Read {
            message,
            parsed,
            room: permit,
        };
        if queues[to].send(read).is_err() {
            break; // the lane ended: the service is stopping, or it failed
        }
    }
    // Draining: the lanes finish the transaction they are in and take no
    // more; then what has been stored is committed, synchronously.
    drop(queues);
    while let Some(done) = running.join_next().await {
        if let Err(e) = done {
            failed = Some(e);
        }
    }
    if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
        tracing::debug!("final commit: {e}");
    }
    tracing::info!("kafka consumer stopped");
    // A lane that panicked stops the service, as any role that fails does:
    // consuming on without it would leave its customers' events unread.
    match failed {
        Some(e) => Err(anyhow::anyhow!("a Kafka ingest lane failed: {e}")),
        None => Ok(()),
    }
}

/// A message read from the stream, parsed, holding its room among the
/// `batch_max` messages in flight until its transaction has committed.
struct Read {
    message: OwnedMessage,
    parsed: Result<Event, String>,
    room: OwnedSemaphorePermit,
}

/// The most messages one lane takes into one transaction.
const LANE_TAKE: usize = 1024;

/// What a lane needs: everything it shares with the other lanes.
#[derive(Clone)]
struct Lane<S: Store> {
    store: S,
    catalog: Arc<Catalog>,
    clock: Arc<dyn Clock>,
    dlq: FutureProducer,
    consumer: Arc<StreamConsumer<CommitOnRevoke>>,
    offsets: Arc<Offsets>,
    kick: Arc<Notify>,
    watch: Arc<Watch>,
    stop: CancellationToken,
    cfg: KafkaConfig,
}

impl<S: Store> Lane<S> {
    /// Ingests what queues for this lane, a transaction at a time, until
    /// the queue closes or the service stops.
    async fn run(self, mut taken: tokio::sync::mpsc::UnboundedReceiver<Read>) {
        let mut reads = Vec::with_capacity(LANE_TAKE);
        while taken.recv_many(&mut reads, LANE_TAKE).await > 0 {
            if self.stop.is_cancelled() {
                break; // not started: read again after a restart
            }
            let mut group = Group::default();
            let mut rooms = Vec::with_capacity(reads.len());
            for read in reads.drain(..) {
                match read.parsed {
                    Ok(ev) => {
                        group.events.push(ev);
                        group.messages.push(read.message);
                    }
                    Err(reason) => group.dead.push((read.message, reason)),
                }
                rooms.push(read.room);
            }
            let committed = apply(
                &self.store,
                &self.catalog,
                self.clock.as_ref(),
                &self.cfg,
                &self.dlq,
                &self.watch,
                &group,
                &self.stop,
            )
            .await;
            if !committed {
                break; // stopped before it committed: no offsets stored
            }
            // Acknowledging: offsets only now that the transaction has
            // committed, and only as far as every message before them has.
            let dead = group.dead.iter().map(|(m, _)| m);
            self.offsets
                .done(&self.consumer, group.messages.iter().chain(dead));
            drop((group, rooms));
            self.kick.notify_waiters();
        }
    }
}

/// Which messages of each partition of the topic are read but not yet
/// committed, so that the offset stored for a partition never passes one of
/// them: lanes commit in any order, a partition's offset moves only as far
/// as every message before it has.
struct Offsets {
    /// The one topic the consumer reads.
    topic: String,
    partitions: Mutex<BTreeMap<i32, Progress>>,
}

#[derive(Default)]
struct Progress {
    /// Read and not yet committed.
    open: BTreeSet<i64>,
    /// The highest committed.
    done: Option<i64>,
    /// The last offset stored with the client.
    stored: Option<i64>,
}

impl Offsets {
    fn of(topic: &str) -> Self {
        Self {
            topic: topic.to_string(),
            partitions: Mutex::default(),
        }
    }

    fn read(&self, m: &OwnedMessage) {
        self.opened(m.partition(), m.offset());
    }

    fn opened(&self, partition: i32, offset: i64) {
        lock(&self.partitions)
            .entry(partition)
            .or_default()
            .open
            .insert(offset);
    }

    /// Marks `messages` committed and stores with the client, for each
    /// partition they are of, the offset before the first message still
    /// open there.
    fn done<'a, C: ConsumerContext>(
        &self,
        consumer: &StreamConsumer<C>,
        messages: impl Iterator<Item = &'a OwnedMessage>,
    ) {
        let topic = &self.topic;
        for (partition, offset) in self.closed(messages.map(|m| (m.partition(), m.offset()))) {
            // `store_offset` takes the message's own offset (librdkafka adds 1).
            if let Err(e) = consumer.store_offset(topic, partition, offset) {
                // The partition was revoked meanwhile; its new owner re-reads
                // from the last commit and the event ids make that harmless.
                tracing::warn!(%topic, partition, offset, "store offset: {e}");
            }
        }
    }

    /// Marks `(partition, offset)`s committed; returns the offset to store
    /// for each partition whose stored offset may move.
    fn closed(&self, places: impl Iterator<Item = (i32, i64)>) -> Vec<(i32, i64)> {
        let mut parts = lock(&self.partitions);
        let mut touched = BTreeSet::new();
        for (partition, offset) in places {
            let p = parts.entry(partition).or_default();
            p.open.remove(&offset);
            p.done = p.done.max(Some(offset));
            touched.insert(partition);
        }
        let mut store = Vec::new();
        for partition in touched {
            let p = parts.get_mut(&partition).expect("touched above");
            let upto = match p.open.first() {
                Some(first) => Some(first - 1).filter(|o| Some(*o) <= p.done),
                None => p.done,
            };
            if let Some(offset) = upto.filter(|o| Some(*o) > p.stored) {
                p.stored = Some(offset);
                store.push((partition, offset));
            }
        }
        store
    }
}

/// One transaction's share of what was read.
#[derive(Default)]
struct Group {
    events: Vec<Event>,
    /// The message of each event.
    messages: Vec<OwnedMessage>,
    dead: Vec<(OwnedMessage, String)>,
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
    group: &Group,
    stop: &CancellationToken,
) -> bool {
    let Group {
        events,
        messages,
        dead,
    } = group;
    let dead: Vec<(&OwnedMessage, &str)> = dead.iter().map(|(m, r)| (m, r.as_str())).collect();
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
        .map(|r| (&messages[r.index], r.reason.as_str()))
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

#[cfg(test)]
mod tests {
    use super::Offsets;

    fn closed(o: &Offsets, offsets: &[i64]) -> Vec<i64> {
        let places = offsets.iter().map(|&off| (0, off));
        o.closed(places).into_iter().map(|(_, off)| off).collect()
    }

    #[test]
    fn an_offset_is_stored_only_once_every_message_before_it_has_committed() {
        let o = Offsets::of("t");
        for off in 10..16 {
            o.opened(0, off);
        }
        // A later lane commits first: 10 is still open, so the offset may
        // go only as far as 9 (what came before 10 was committed before
        // this consumer read 10, or it would be open).
        assert_eq!(closed(&o, &[12, 14]), vec![9]);
        assert_eq!(closed(&o, &[10]), vec![10]);
        assert_eq!(closed(&o, &[11]), vec![12]);
        assert_eq!(closed(&o, &[15]), Vec::<i64>::new());
        assert_eq!(closed(&o, &[13]), vec![15]);
    }

    #[test]
    fn partitions_move_apart_and_a_rewind_never_moves_an_offset_back() {
        let o = Offsets::of("t");
        for off in 0..3 {
            o.opened(0, off);
            o.opened(1, off + 100);
        }
        let both = o.closed([(0, 0), (1, 100), (1, 101)].into_iter());
        assert_eq!(both, vec![(0, 0), (1, 101)]);
        // After a rebalance the client reads 1 and 2 of partition 0 again.
        o.opened(0, 1);
        assert_eq!(closed(&o, &[1]), vec![1]);
        assert_eq!(closed(&o, &[2]), vec![2]);
        assert_eq!(closed(&o, &[1]), Vec::<i64>::new());
    }
}
