//! Kafka end to end, against the real broker that scripts/test starts (tansu
//! on 127.0.0.1:9092) and the real PostgreSQL: duplicates, poison messages,
//! `kill -9` in the middle of a stream, and two instances in one group.

mod support;

use std::collections::HashSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aftercare::clock::SystemClock;
use aftercare::config::{DatabaseArgs, Role, ServiceArgs};
use aftercare::engine::outbox::Outcome;
use aftercare::ingest::kafka::{KafkaConfig, ensure_topics};
use aftercare::service::{Loaded, serve};
use aftercare::store::{PgStore, Store};
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use support::{PgDb, event_json};
use tokio_util::sync::CancellationToken;

fn brokers() -> String {
    std::env::var("AFTERCARE_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

fn unique(prefix: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{}", std::process::id(), n % 1_000_000_000_000)
}

/// Creates the topic and its `.dlq`; tansu does not create topics on first use.
async fn create_topics(topic: &str, partitions: i32) {
    let mut cfg = KafkaConfig::new(&brokers(), topic, "unused");
    cfg.partitions = partitions;
    ensure_topics(&cfg).await;
}

/// Produces `messages` (key, payload), each in a record batch of its own.
///
/// tansu 0.6.0's `memory://` storage answers a fetch from an offset inside
/// a record batch with the batches that start at or after it: the rest of
/// the batch the offset is in is never delivered. A consumer that resumes
/// from a committed offset (after `kill -9`, or when a partition moves to
/// another instance) would lose those messages, which Apache Kafka would
/// deliver. One message a batch keeps every offset at a batch's start;
/// [`any_offset_can_be_read_from`] checks that it does.
async fn produce(topic: &str, messages: &[(String, String)]) {
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("message.timeout.ms", "30000")
        .set("linger.ms", "5")
        .set("batch.num.messages", "1")
        .create()
        .unwrap();
    let sends = messages.iter().map(|(k, v)| {
        p.send(
            FutureRecord::to(topic).key(k).payload(v),
            Duration::from_secs(30),
        )
    });
    for r in futures_util::future::join_all(sends).await {
        r.map_err(|(e, _)| e).expect("produce");
    }
}

async fn wait_for(what: &str, timeout: Duration, check: impl AsyncFnMut() -> bool) {
    if !wait_until(timeout, check).await {
        panic!("timed out after {timeout:?} waiting for {what}");
    }
}

/// Whether `check` held within `timeout`, asked every 200 ms.
async fn wait_until(timeout: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

fn args(db_url: &str, topic: &str, group: &str, outbox: &Path, roles: Vec<Role>) -> ServiceArgs {
    ServiceArgs {
        db: DatabaseArgs {
            database_url: db_url.into(),
        },
        kafka_brokers: Some(brokers()),
        kafka_topic: topic.into(),
        kafka_group: group.into(),
        smtp_url: None,
        outbox_dir: outbox.to_path_buf(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        webhook_secret: None,
        smtp_retry: None,
        max_email_bytes: aftercare::send::worker::DEFAULT_MAX_EMAIL_BYTES,
        roles,
        ..support::service_args(&[])
    }
}

fn loaded() -> Loaded {
    Loaded {
        catalog: Arc::new(support::catalog().clone()),
        templates: Arc::new(aftercare::template::Templates::load(Path::new("templates"), "en").0),
    }
}

/// Starts the service in-process over `store` with `args`; stop it with the
/// token, then await the task.
fn start(
    store: &PgStore,
    args: ServiceArgs,
) -> (
    CancellationToken,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let stop = CancellationToken::new();
    let svc = tokio::spawn(serve(
        store.clone(),
        args,
        loaded(),
        Arc::new(SystemClock),
        stop.clone(),
        None,
    ));
    (stop, svc)
}

/// A test's own consumer, in a group of its own named after `prefix`.
fn reader(prefix: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers())
        .set("group.id", unique(prefix));
    c
}

/// The `aftercare-reason` headers of the first `n` messages of
/// `<topic>.dlq`.
async fn dlq_reasons(topic: &str, n: usize) -> Vec<String> {
    let dlq: StreamConsumer = reader("dlq-reader")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    dlq.subscribe(&[&format!("{topic}.dlq")]).unwrap();
    let mut reasons = Vec::new();
    while reasons.len() < n {
        let m = tokio::time::timeout(Duration::from_secs(30), dlq.recv())
            .await
            .expect("dlq message")
            .unwrap();
        let h = m.headers().expect("headers");
        let reason = h
            .iter()
            .find(|h| h.key == "aftercare-reason")
            .and_then(|h| h.value)
            .unwrap();
        reasons.push(String::from_utf8_lossy(reason).into_owned());
    }
    reasons
}

/// What the tests produce can be read from any offset, as a consumer that
/// resumes from its group's commit reads it (see [`produce`]).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_offset_can_be_read_from() {
    use rdkafka::consumer::BaseConsumer;
    use rdkafka::{Offset, TopicPartitionList};
    let topic = unique("offsets");
    create_topics(&topic, 1).await;
    let msgs: Vec<(String, String)> = (0..60).map(|i| ("k".into(), format!("m{i}"))).collect();
    produce(&topic, &msgs).await;
    for start in [1, 29, 59] {
        let c: BaseConsumer = reader("offsets-reader")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let mut at = TopicPartitionList::new();
        at.add_partition_offset(&topic, 0, Offset::Offset(start))
            .unwrap();
        c.assign(&at).unwrap();
        let mut got = Vec::new();
        let begun = Instant::now();
        while got.len() < 60 - start as usize && begun.elapsed() < Duration::from_secs(30) {
            if let Some(m) = c.poll(Duration::from_millis(200)) {
                got.push(m.unwrap().offset());
            }
        }
        let want: Vec<i64> = (start..60).collect();
        assert_eq!(got, want, "read from offset {start}");
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

async fn count_status(store: &PgStore, status: &str) -> usize {
    store
        .outbox()
        .await
        .unwrap()
        .iter()
        .filter(|o| o.status.as_str() == status)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_are_applied_once_and_poison_is_dead_lettered() {
    let db = PgDb::new().await;
    let topic = unique("dup");
    create_topics(&topic, 3).await;
    let mut msgs = Vec::new();
    for c in 0..10 {
        for o in 0..3 {
            let (cid, oid) = (format!("c{c}"), format!("o{c}-{o}"));
            let ev = event_json(
                &format!("e{c}-{o}"),
                "order.placed",
                &cid,
                &oid,
                &now(),
                true,
            );
            msgs.push((cid.clone(), ev.clone()));
            msgs.push((cid, ev)); // produced twice
        }
    }
    let good = event_json("late", "order.placed", "c0", "o-late", &now(), true);
    msgs.insert(7, ("c3".into(), "{this is not json".into()));
    msgs.insert(
        20,
        (
            "c4".into(),
            good.replace("\"129.90\"", "129.9")
                .replace("\"late\"", "\"bad-money\""),
        ),
    );
    msgs.push(("c0".into(), good));
    produce(&topic, &msgs).await;

    let dir = tempfile::tempdir().unwrap();
    let group = unique("g");
    let (stop, svc) = start(
        &db.store,
        args(
            &db.url,
            &topic,
            &group,
            dir.path(),
            vec![Role::Ingest, Role::Send],
        ),
    );
    let s = db.store.clone();
    wait_for(
        "31 events and 2 dead letters",
        Duration::from_secs(60),
        async || s.event_count().await.unwrap() == 31 && s.dead_letters().await.unwrap().len() == 2,
    )
    .await;
    wait_for("31 emails sent", Duration::from_secs(30), async || {
        count_status(&s, "sent").await == 31
    })
    .await;
    let outbox = s.outbox().await.unwrap();
    assert_eq!(outbox.len(), 31, "each order confirmed once");
    let sent: Vec<_> = s
        .deliveries()
        .await
        .unwrap()
        .into_iter()
        .filter(|d| d.outcome == Outcome::Sent)
        .collect();
    assert_eq!(sent.len(), 31, "and sent once");
    let dead = s.dead_letters().await.unwrap();
    assert!(
        dead.iter().all(|d| d.letter.source == "kafka"
            && d.letter.origin.as_deref().unwrap().starts_with(&topic))
    );
    assert!(dead.iter().any(|d| {
        d.letter
            .reason
            .contains("order.total: expected money as a string like \"129.90\", got the number")
    }));
    stop.cancel();
    svc.await.unwrap().unwrap();

    // The poison also went to <topic>.dlq, with its reason.
    let reasons = dlq_reasons(&topic, 2).await;
    assert!(reasons.iter().any(|r| r.contains("money")), "{reasons:?}");

    // Offsets were committed on shutdown: the same group reads nothing again.
    let (stop, svc) = start(
        &db.store,
        args(&db.url, &topic, &group, dir.path(), vec![Role::Ingest]),
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(s.dead_letters().await.unwrap().len(), 2, "nothing re-read");
    stop.cancel();
    svc.await.unwrap().unwrap();
    db.drop().await;
}

/// A child `aftercare run`, killed if the test ends without stopping it.
/// When the test fails, it prints how the child ended and the end of its
/// log (the log is in a temporary directory that goes with the test).
struct Run {
    child: Child,
    log: std::path::PathBuf,
}

impl Drop for Run {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let ended = match self.child.try_wait() {
                Ok(Some(status)) => format!("had exited ({status})"),
                Ok(None) => "was still running".to_string(),
                Err(e) => format!("could not be asked ({e})"),
            };
            // Each email sent is a line: those would hide the rest.
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let lines: Vec<&str> = text
                .lines()
                .filter(|l| !l.contains(r#""message":"sent""#))
                .collect();
            let tail = lines[lines.len().saturating_sub(40)..].join("\n");
            eprintln!(
                "--- {} {ended}; the last {} of its {} log lines other than `sent`:\n{tail}",
                self.log.display(),
                lines.len().min(40),
                lines.len()
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `aftercare run` as a child process, logging to a file.
fn spawn_run(db_url: &str, topic: &str, group: &str, outbox: &Path, log: &Path) -> Run {
    let child = Command::new(env!("CARGO_BIN_EXE_aftercare"))
        .args(["run", "--roles", "ingest,schedule,send"])
        .env("AFTERCARE_DATABASE_URL", db_url)
        .env("AFTERCARE_KAFKA_BROKERS", brokers())
        .env("AFTERCARE_KAFKA_TOPIC", topic)
        .env("AFTERCARE_KAFKA_GROUP", group)
        .env("AFTERCARE_OUTBOX_DIR", outbox)
        .env("RUST_LOG", "info")
        .env("AFTERCARE_LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("start aftercare run");
    Run {
        child,
        log: log.to_path_buf(),
    }
}

fn terminate(run: &mut Run) {
    let child = &mut run.child;
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "graceful shutdown exits 0, got {status}");
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("aftercare run did not stop on SIGTERM");
}

/// The partitions of the last `assigned` line in an instance's JSON log.
fn last_assignment(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["fields"]["message"] == "assigned")
        .and_then(|v| v["fields"]["partitions"].as_str().map(str::to_string))
}

/// Two events per customer: the order and its shipment, so two emails each.
fn stream(customers: usize) -> (Vec<(String, String)>, HashSet<String>) {
    let mut msgs = Vec::new();
    let mut keys = HashSet::new();
    for c in 0..customers {
        let (cid, oid) = (format!("k{c}"), format!("ko{c}"));
        msgs.push((
            cid.clone(),
            event_json(&format!("p{c}"), "order.placed", &cid, &oid, &now(), true),
        ));
        msgs.push((
            cid.clone(),
            event_json(
                &format!("s{c}"),
                "shipment.shipped",
                &cid,
                &oid,
                &now(),
                true,
            ),
        ));
        keys.insert(format!("fulfilment/{cid}/{oid}#order-confirmation"));
        keys.insert(format!("fulfilment/{cid}/{oid}#order-shipped"));
    }
    (msgs, keys)
}

async fn assert_exactly_once(s: &PgStore, outbox_dir: &Path, events: i64, keys: &HashSet<String>) {
    let (mut stored, timeout) = (0, Duration::from_secs(120));
    let all = wait_until(timeout, async || {
        stored = s.event_count().await.unwrap();
        stored == events
    })
    .await;
    assert!(
        all,
        "timed out after {timeout:?} with {stored} of {events} events stored"
    );
    wait_for("every email sent", Duration::from_secs(120), async || {
        count_status(s, "sent").await == keys.len()
    })
    .await;
    let outbox = s.outbox().await.unwrap();
    let got: HashSet<String> = outbox.iter().map(|o| o.idempotency_key.clone()).collect();
    assert_eq!(outbox.len(), keys.len(), "no email enqueued twice");
    assert_eq!(&got, keys, "every expected email, exactly");
    let files = std::fs::read_dir(outbox_dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "eml")
        })
        .count();
    assert_eq!(files, keys.len(), "one .eml per email");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_in_the_middle_of_a_stream_loses_and_duplicates_nothing() {
    let db = PgDb::new().await;
    let topic = unique("crash");
    create_topics(&topic, 4).await;
    let (msgs, keys) = stream(1500);
    produce(&topic, &msgs).await;
    let dir = tempfile::tempdir().unwrap();
    let outbox = dir.path().join("outbox");
    let group = unique("g");
    let mut first = spawn_run(
        &db.url,
        &topic,
        &group,
        &outbox,
        &dir.path().join("first.log"),
    );
    let s = db.store.clone();
    wait_for("some events", Duration::from_secs(60), async || {
        s.event_count().await.unwrap() >= 300
    })
    .await;
    first.child.kill().unwrap(); // SIGKILL: no chance to finish or commit
    first.child.wait().unwrap();
    let at_kill = s.event_count().await.unwrap();
    assert!(
        at_kill < msgs.len() as i64,
        "killed mid-stream ({at_kill} of {})",
        msgs.len()
    );
    let mut second = spawn_run(
        &db.url,
        &topic,
        &group,
        &outbox,
        &dir.path().join("second.log"),
    );
    assert_exactly_once(&s, &outbox, msgs.len() as i64, &keys).await;
    terminate(&mut second);
    db.drop().await;
}

/// Issue 8: a type nothing listens to, from Kafka, is logged with its count
/// and the nearest known type (the events are still applied).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unheard_types_from_kafka_are_logged() {
    let db = PgDb::new().await;
    let topic = unique("typo");
    create_topics(&topic, 1).await;
    let msgs: Vec<(String, String)> = (0..3)
        .map(|i| {
            let ev = event_json(
                &format!("t{i}"),
                "shipment.shiped",
                "c-t",
                "o-t",
                &now(),
                true,
            );
            ("c-t".to_string(), ev)
        })
        .collect();
    produce(&topic, &msgs).await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("run.log");
    let mut run = spawn_run(
        &db.url,
        &topic,
        &unique("g"),
        &dir.path().join("outbox"),
        &log,
    );
    let s = db.store.clone();
    wait_for("the events", Duration::from_secs(60), async || {
        s.event_count().await.unwrap() == 3
    })
    .await;
    let warned = || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["fields"]["event_type"] == "shipment.shiped")
            .map(|v| v["fields"]["message"].as_str().unwrap_or("").to_string())
            .collect::<Vec<String>>()
    };
    wait_for("the warning", Duration::from_secs(10), async || {
        !warned().is_empty()
    })
    .await;
    let lines = warned();
    assert_eq!(lines.len(), 1, "one line within the hour: {lines:?}");
    assert!(
        lines[0].contains("is not a documented type: ")
            && lines[0].ends_with("in the last hour (did you mean shipment.shipped?)"),
        "{lines:?}"
    );
    terminate(&mut run);
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_the_partitions_and_send_each_email_once() {
    let db = PgDb::new().await;
    let topic = unique("pair");
    create_topics(&topic, 4).await;
    let dir = tempfile::tempdir().unwrap();
    let outbox = dir.path().join("outbox");
    let group = unique("g");
    let logs = [dir.path().join("a.log"), dir.path().join("b.log")];
    let mut a = spawn_run(&db.url, &topic, &group, &outbox, &logs[0]);
    let mut b = spawn_run(&db.url, &topic, &group, &outbox, &logs[1]);
    // Both join before the stream starts, so the group spreads the partitions.
    wait_for(
        "both instances own partitions",
        Duration::from_secs(90),
        async || {
            let owned: Vec<Option<String>> = logs.iter().map(|l| last_assignment(l)).collect();
            owned
                .iter()
                .all(|o| o.as_ref().is_some_and(|p| !p.is_empty()))
        },
    )
    .await;
    let a_parts = last_assignment(&logs[0]).unwrap();
    let b_parts = last_assignment(&logs[1]).unwrap();
    let a_set: HashSet<&str> = a_parts.split(',').collect();
    assert!(
        b_parts.split(',').all(|p| !a_set.contains(p)),
        "disjoint: {a_parts} / {b_parts}"
    );
    let (msgs, keys) = stream(600);
    produce(&topic, &msgs).await;
    assert_exactly_once(&db.store, &outbox, msgs.len() as i64, &keys).await;
    let sent = db
        .store
        .deliveries()
        .await
        .unwrap()
        .into_iter()
        .filter(|d| d.outcome == Outcome::Sent)
        .count();
    assert_eq!(sent, keys.len(), "no email sent twice");
    terminate(&mut a);
    terminate(&mut b);
    db.drop().await;
}

/// Issue 7 over Kafka: an event past a limit (reproduction 1), a payload
/// with a raw NUL byte, and an event the database refuses for its own
/// reasons (a trigger the test installs; reproduction 3) each go to
/// `<topic>.dlq` and `dead_letters` alone; the others commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_and_store_refusals_are_dead_lettered_alone() {
    let db = PgDb::new().await;
    sqlx::query(
        "CREATE FUNCTION refuse_poison() RETURNS trigger AS $$ BEGIN \
         IF NEW.id LIKE 'poison%' THEN RAISE EXCEPTION 'poisoned event %', NEW.id \
         USING ERRCODE = '22023'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql",
    )
    .execute(&db.store.pool)
    .await
    .unwrap();
    sqlx::query(
        "CREATE TRIGGER refuse_poison BEFORE INSERT ON events \
         FOR EACH ROW EXECUTE FUNCTION refuse_poison()",
    )
    .execute(&db.store.pool)
    .await
    .unwrap();
    let topic = unique("limits");
    create_topics(&topic, 1).await;
    let at = now();
    let good = |id: &str| {
        let c = format!("c-{id}");
        let ev = event_json(id, "order.placed", &c, &format!("o-{id}"), &at, true);
        (c, ev)
    };
    let (rc, r) = good("too-long-a-wait");
    let msgs = vec![
        good("k1"),
        (
            rc,
            r.replace(
                r#""quantity":1"#,
                r#""quantity":1,"replenish_every_days":100000000"#,
            ),
        ),
        ("c-nul".to_string(), "{\"id\":\"n\u{0}ul\"}".to_string()),
        good("k2"),
        good("poison-k"),
        good("k3"),
    ];
    produce(&topic, &msgs).await;
    let dir = tempfile::tempdir().unwrap();
    let (stop, svc) = start(
        &db.store,
        args(
            &db.url,
            &topic,
            &unique("g"),
            dir.path(),
            vec![Role::Ingest],
        ),
    );
    let s = db.store.clone();
    wait_for(
        "3 events and 3 dead letters",
        Duration::from_secs(60),
        async || s.event_count().await.unwrap() == 3 && s.dead_letters().await.unwrap().len() == 3,
    )
    .await;
    stop.cancel();
    svc.await.unwrap().unwrap();
    let dead = s.dead_letters().await.unwrap();
    let reason_of = |needle: &str| {
        dead.iter()
            .find(|d| d.letter.reason.contains(needle))
            .unwrap_or_else(|| panic!("no dead letter for {needle}: {dead:?}"))
    };
    reason_of("order.items[0].replenish_every_days: 100000000 is not between 1 and 3650 days");
    let refused = reason_of("the store refused this event");
    assert!(refused.letter.reason.contains("poisoned event poison-k"));
    assert!(refused.letter.payload.contains("\"poison-k\""));
    let nul = reason_of("control character");
    assert_eq!(nul.letter.payload, "{\"id\":\"n\u{fffd}ul\"}");
    assert!(dead.iter().all(|d| d.letter.source == "kafka"));

    let reasons = dlq_reasons(&topic, 3).await;
    assert!(
        reasons.iter().any(|r| r.contains("poisoned event")),
        "{reasons:?}"
    );
    db.drop().await;
}

/// Events out of order and history, from Kafka as from the webhook: a
/// shipment before its order, a cancellation before its order, a delivery
/// before its shipment (each pair in separate batches), and an order marked
/// as history with the `aftercare-history: true` header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_order_and_history_events_from_kafka() {
    use aftercare::engine::outbox::OutboxStatus;
    use aftercare::engine::state::{Status, Waiting};
    use rdkafka::message::{Header, OwnedHeaders};

    let db = support::PgDb::new().await;
    let topic = unique("order");
    create_topics(&topic, 2).await;
    let at = |minutes: i64| {
        (chrono::Utc::now() - chrono::Duration::minutes(minutes))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    let e = |id: &str, kind: &str, c: &str, minutes: i64| {
        (
            c.to_string(),
            event_json(id, kind, c, &format!("o-{c}"), &at(minutes), true),
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let group = unique("g");
    let (stop, svc) = start(
        &db.store,
        args(&db.url, &topic, &group, dir.path(), vec![Role::Ingest]),
    );
    let s = db.store.clone();
    produce(
        &topic,
        &[
            e("k1-s", "shipment.shipped", "k1", 30),
            e("k2-x", "order.cancelled", "k2", 30),
            e("k3-p", "order.placed", "k3", 60),
            e("k3-d", "shipment.delivered", "k3", 10),
        ],
    )
    .await;
    // History: an order placed ten days ago, marked by the header.
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .unwrap();
    let old = event_json(
        "k4-p",
        "order.placed",
        "k4",
        "o-k4",
        &at(10 * 24 * 60),
        true,
    );
    let headers = OwnedHeaders::new().insert(Header {
        key: "aftercare-history",
        value: Some("true"),
    });
    p.send(
        FutureRecord::to(&topic)
            .key("k4")
            .payload(&old)
            .headers(headers),
        Duration::from_secs(30),
    )
    .await
    .map_err(|(e, _)| e)
    .unwrap();
    wait_for("the first 5 events", Duration::from_secs(60), async || {
        s.event_count().await.unwrap() == 5
    })
    .await;
    produce(
        &topic,
        &[
            e("k1-p", "order.placed", "k1", 60),
            e("k2-p", "order.placed", "k2", 60),
            e("k3-s", "shipment.shipped", "k3", 30),
        ],
    )
    .await;
    wait_for("all 8 events", Duration::from_secs(60), async || {
        s.event_count().await.unwrap() == 8
    })
    .await;
    stop.cancel();
    svc.await.unwrap().unwrap();

    let outbox = s.outbox().await.unwrap();
    let of = |c: &str| {
        let mut rows: Vec<_> = outbox.iter().filter(|o| o.customer_id == c).collect();
        rows.sort_by_key(|o| o.id);
        rows.iter()
            .map(|o| (o.template.clone(), o.status))
            .collect::<Vec<_>>()
    };
    let pending = |t: &str| (t.to_string(), OutboxStatus::Pending);
    assert_eq!(
        of("k1"),
        [pending("order-confirmation"), pending("order-shipped")]
    );
    let k1 = s.enrollments_of("k1").await.unwrap();
    assert!(
        matches!(&k1[0].waiting, Waiting::Event { event, .. } if event == "shipment.delivered"),
        "{k1:?}"
    );
    assert!(of("k2").is_empty(), "a cancelled order is not confirmed");
    assert!(s.enrollments_of("k2").await.unwrap().is_empty());
    assert_eq!(
        of("k3"),
        [
            pending("order-confirmation"),
            pending("order-shipped"),
            pending("order-delivered")
        ]
    );
    let k3 = s.enrollments_of("k3").await.unwrap();
    assert!(
        k3.iter()
            .any(|e| e.sequence == "fulfilment" && e.status == Status::Completed)
    );
    assert_eq!(
        of("k4"),
        [("order-confirmation".to_string(), OutboxStatus::Skipped)]
    );
    db.drop().await;
}
