//! Load generator and probes for the service benchmarks (scripts/bench-service.sh):
//! produce events to Kafka, read them with a bare consumer, seed a million
//! enrollments, and measure how fast the service drains them and how late
//! wake-ups fire. Only loopback addresses are used.

use std::time::{Duration, Instant};

use aftercare::engine::state::{Context, Enrollment, Mark, Status, Waiting};
use aftercare::event::Event;
use aftercare::store::{PgStore, Store};
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::message::OwnedMessage;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, ClientContext};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Produce `events` events from `customers` customers (keyed by customer).
    Produce {
        #[arg(long, default_value = "127.0.0.1:9092")]
        brokers: String,
        #[arg(long)]
        topic: String,
        #[arg(long, default_value_t = 200_000)]
        events: usize,
        #[arg(long, default_value_t = 20_000)]
        customers: usize,
        #[arg(long, default_value_t = 4)]
        partitions: i32,
        /// Write the events to this JSON-lines file (for `aftercare ingest`)
        /// instead of producing them.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// Read `count` messages with a bare rdkafka consumer (fresh group);
    /// prints the rate and this process's resident memory.
    ConsumeBare {
        #[arg(long, default_value = "127.0.0.1:9092")]
        brokers: String,
        #[arg(long)]
        topic: String,
        #[arg(long)]
        count: usize,
        /// The service's consumer settings and batching (detach up to 4,000
        /// messages, then drop them), without the database.
        #[arg(long)]
        like_service: bool,
        /// librdkafka settings on top, e.g. `--set queued.max.messages.kbytes=1024`.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        settings: Vec<String>,
        /// Print librdkafka statistics (prefetch queue, bytes received) this often.
        #[arg(long)]
        stats_ms: Option<u64>,
    },
    /// Sample a process's resident memory (VmRSS) until it exits; prints
    /// one line per `--every-ms` to `--out` (if given) and the peak.
    Rss {
        #[arg(long)]
        pid: u32,
        #[arg(long, default_value_t = 250)]
        every_ms: u64,
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// Wait until the events table holds `count` rows; print the rate.
    WaitEvents {
        #[arg(long)]
        db: String,
        #[arg(long)]
        count: i64,
    },
    /// Insert `total` enrollments of the bench sequence; `due` of them due now,
    /// `steady` more due at 1,000 per second from `--start-in` seconds on.
    Seed {
        #[arg(long)]
        db: String,
        #[arg(long, default_value_t = 1_000_000)]
        total: usize,
        #[arg(long, default_value_t = 100_000)]
        due: usize,
        #[arg(long, default_value_t = 0)]
        steady: usize,
        #[arg(long, default_value_t = 10)]
        start_in: i64,
    },
    /// Insert `total` customers whose last order was 10 days ago, but for
    /// `lapsed` percent of them 100 days ago (what a win-back sweep looks for).
    SeedCustomers {
        #[arg(long)]
        db: String,
        #[arg(long, default_value_t = 1_000_000)]
        total: usize,
        #[arg(long, default_value_t = 10)]
        lapsed: usize,
    },
    /// Time one daily win-back sweep (a schedule trigger) over every customer.
    Sweep {
        #[arg(long)]
        db: String,
    },
    /// Wait until no enrollment is due; print the time it took.
    WaitDrained {
        #[arg(long)]
        db: String,
        #[arg(long, default_value_t = 600)]
        timeout: u64,
    },
    /// Wake-up lag: outbox row creation minus the wake time in the key.
    Lag {
        #[arg(long)]
        db: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Produce {
            events,
            customers,
            out: Some(out),
            ..
        } => write_events(&out, events, customers),
        Cmd::Produce {
            brokers,
            topic,
            events,
            customers,
            partitions,
            out: None,
        } => produce(&brokers, &topic, events, customers, partitions).await,
        Cmd::ConsumeBare {
            brokers,
            topic,
            count,
            like_service,
            settings,
            stats_ms,
        } => consume_bare(&brokers, &topic, count, like_service, &settings, stats_ms).await,
        Cmd::Rss { pid, every_ms, out } => rss(pid, every_ms, out.as_deref()),
        Cmd::WaitEvents { db, count } => wait_events(&db, count).await,
        Cmd::Seed {
            db,
            total,
            due,
            steady,
            start_in,
        } => seed(&db, total, due, steady, start_in).await,
        Cmd::WaitDrained { db, timeout } => wait_drained(&db, timeout).await,
        Cmd::SeedCustomers { db, total, lapsed } => seed_customers(&db, total, lapsed).await,
        Cmd::Sweep { db } => sweep(&db).await,
        Cmd::Lag { db } => lag(&db).await,
    }
}

fn event(i: usize, customer: usize, kind: &str, order: usize) -> String {
    let at = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    format!(
        r#"{{"id":"bench-{i}","type":"{kind}","occurred_at":"{at}","customer":{{"id":"c{customer}","email":"c{customer}@example.com","locale":"en","timezone":"Europe/Budapest","marketing_consent":true}},"order":{{"id":"o{customer}-{order}","number":"{order}","placed_at":"{at}","currency":"EUR","total":"19.90","items":[{{"sku":"COF","name":"Coffee","category":"coffee","quantity":1,"unit_price":"19.90","replenish_every_days":30}}]}},"shipment":{{"id":"s{customer}-{order}","carrier":"DHL","tracking_number":"T{i}"}}}}"#
    )
}

/// The event `produce` sends as its `i`th message.
fn nth_event(i: usize, customers: usize) -> (String, String) {
    let kinds = ["order.placed", "shipment.shipped", "shipment.delivered"];
    let customer = i % customers;
    let round = i / customers;
    (
        format!("c{customer}"),
        event(i, customer, kinds[round % 3], round / 3),
    )
}

fn write_events(out: &std::path::Path, events: usize, customers: usize) -> anyhow::Result<()> {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(out)?);
    for i in 0..events {
        writeln!(f, "{}", nth_event(i, customers).1)?;
    }
    f.flush()?;
    println!("wrote {events} events to {}", out.display());
    Ok(())
}

async fn produce(
    brokers: &str,
    topic: &str,
    events: usize,
    customers: usize,
    partitions: i32,
) -> anyhow::Result<()> {
    let mut cfg = aftercare::ingest::kafka::KafkaConfig::new(brokers, topic, "unused");
    cfg.partitions = partitions;
    aftercare::ingest::kafka::ensure_topics(&cfg).await;
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    let start = Instant::now();
    let mut pending = Vec::with_capacity(10_000);
    for i in 0..events {
        let (key, payload) = nth_event(i, customers);
        pending.push(
            p.send_result(FutureRecord::to(topic).key(&key).payload(&payload))
                .map_err(|(e, _)| e)?,
        );
        if pending.len() == 10_000 {
            for f in pending.drain(..) {
                f.await?.map_err(|(e, _)| e)?;
            }
        }
    }
    for f in pending {
        f.await?.map_err(|(e, _)| e)?;
    }
    let s = start.elapsed().as_secs_f64();
    println!(
        "produced {events} events in {s:.1} s ({:.0}/s)",
        events as f64 / s
    );
    Ok(())
}

/// Logs a line of librdkafka statistics: what is prefetched and received.
struct Stats;

impl ClientContext for Stats {
    fn stats_raw(&self, raw: &[u8]) {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(raw) else {
            return;
        };
        let (mut fetchq_cnt, mut fetchq_size) = (0, 0);
        for t in v["topics"].as_object().into_iter().flat_map(|t| t.values()) {
            for p in t["partitions"]
                .as_object()
                .into_iter()
                .flat_map(|p| p.values())
            {
                fetchq_cnt += p["fetchq_cnt"].as_i64().unwrap_or(0);
                fetchq_size += p["fetchq_size"].as_i64().unwrap_or(0);
            }
        }
        eprintln!(
            "stats: age {:.1} s, rx {} MiB, rxmsgs {}, fetchq {} msgs / {} KiB, replyq {}, rss {} MiB",
            v["age"].as_f64().unwrap_or(0.0) / 1e6,
            v["rx_bytes"].as_i64().unwrap_or(0) >> 20,
            v["rxmsgs"].as_i64().unwrap_or(0),
            fetchq_cnt,
            fetchq_size >> 10,
            v["replyq"].as_i64().unwrap_or(0),
            status_kib(std::process::id(), "VmRSS").unwrap_or(0) >> 10,
        );
    }
}

impl ConsumerContext for Stats {}

/// A field of /proc/PID/status in KiB (VmRSS, VmHWM).
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

async fn consume_bare(
    brokers: &str,
    topic: &str,
    count: usize,
    like_service: bool,
    settings: &[String],
    stats_ms: Option<u64>,
) -> anyhow::Result<()> {
    let group = format!("bare-{}", std::process::id());
    let mut cfg = if like_service {
        let k = aftercare::ingest::kafka::KafkaConfig::new(brokers, topic, &group);
        aftercare::ingest::kafka::consumer_config(&k)
    } else {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", brokers)
            .set("group.id", &group)
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false");
        c
    };
    for kv in settings {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--set {kv}: expected KEY=VALUE"))?;
        cfg.set(k, v);
    }
    if let Some(ms) = stats_ms {
        cfg.set("statistics.interval.ms", ms.to_string());
    }
    let c: StreamConsumer<Stats> = cfg.create_with_context(Stats)?;
    c.subscribe(&[topic])?;
    let first = c.recv().await?.detach();
    let start = Instant::now();
    drop(first);
    let mut n = 1;
    let batch_max = 4000;
    let mut batch: Vec<OwnedMessage> = Vec::with_capacity(batch_max);
    while n < count {
        let m = c.recv().await?;
        n += 1;
        if like_service {
            batch.push(m.detach());
            if batch.len() == batch_max {
                batch.clear();
            }
        }
    }
    let s = start.elapsed().as_secs_f64();
    let me = std::process::id();
    println!(
        "bare consumer{} read {n} messages in {s:.2} s ({:.0}/s), resident {} MiB (peak {} MiB)",
        if like_service {
            " (service settings)"
        } else {
            ""
        },
        n as f64 / s,
        status_kib(me, "VmRSS").unwrap_or(0) >> 10,
        status_kib(me, "VmHWM").unwrap_or(0) >> 10,
    );
    Ok(())
}

fn rss(pid: u32, every_ms: u64, out: Option<&std::path::Path>) -> anyhow::Result<()> {
    use std::io::Write;
    let mut file = out.map(std::fs::File::create).transpose()?;
    let start = Instant::now();
    let mut peak = 0;
    while let Some(kib) = status_kib(pid, "VmRSS") {
        peak = peak.max(kib);
        if let Some(f) = file.as_mut() {
            writeln!(f, "{:.2} {}", start.elapsed().as_secs_f64(), kib >> 10)?;
        }
        std::thread::sleep(Duration::from_millis(every_ms));
    }
    println!(
        "resident memory of {pid}: peak {} MiB (sampled every {every_ms} ms for {:.1} s)",
        peak >> 10,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Waits for `count` events, then reports the ingest rate from the events'
/// own `received_at` (each transaction's time): events of the transactions
/// that began before the last one, over the time from the first to the last.
/// The probe counts only every 2 s: `COUNT(*)` is a sequential scan, and at
/// 10 per second it took ~40 % of a core from the ingest it was measuring.
async fn wait_events(db: &str, count: i64) -> anyhow::Result<()> {
    let store = PgStore::connect(db).await?;
    while store.event_count().await? < count {
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let (before_last, first, last): (i64, DateTime<Utc>, DateTime<Utc>) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE received_at < (SELECT max(received_at) FROM events)), \
         min(received_at), max(received_at) FROM events",
    )
    .fetch_one(&store.pool)
    .await?;
    let s = (last - first).num_milliseconds() as f64 / 1000.0;
    println!(
        "ingested {before_last} events in {s:.1} s from the first transaction to the last ({:.0}/s, committed with their outbox rows)",
        before_last as f64 / s
    );
    Ok(())
}

/// The order that started seeded enrollment `i`.
fn seed_event(i: usize) -> anyhow::Result<Event> {
    Event::parse(&format!(
        r#"{{"id":"seed{i}","type":"order.placed","occurred_at":"2026-11-01T00:00:00Z","customer":{{"id":"c{i}","email":"c{i}@example.com"}},"order":{{"id":"o{i}"}}}}"#
    ))
    .map_err(|e| anyhow::anyhow!(e.message))
}

fn bench_enrollment(i: usize, wake: DateTime<Utc>) -> anyhow::Result<Enrollment> {
    let customer = format!("c{i}");
    let ev = seed_event(i)?;
    let ms = wake.timestamp_millis();
    Ok(Enrollment {
        key: format!("bench/{customer}/o{i}@{ms}"),
        sequence: "bench".into(),
        version: "seed".into(),
        customer_id: customer,
        order_id: Some(format!("o{i}")),
        status: Status::Active,
        step: Some("pause".into()),
        waiting: Waiting::Time { until: wake },
        context: Context::of_event(&ev).into(),
        started_at: wake - chrono::Duration::days(1),
        updated_at: wake - chrono::Duration::days(1),
        ended_reason: None,
        mark: Some(Mark::of(&ev)),
        history: None,
    })
}

async fn seed(
    db: &str,
    total: usize,
    due: usize,
    steady: usize,
    start_in: i64,
) -> anyhow::Result<()> {
    let store = PgStore::connect(db).await?;
    store.migrate().await?;
    let now = Utc::now();
    let start = Instant::now();
    let mut conn = store.pool.acquire().await?;
    let mut copy = conn
        .copy_in_raw(
            "COPY enrollments (key, sequence, version, customer_id, order_id, status, step, wake_at, state, started_at, updated_at) FROM STDIN (FORMAT csv)",
        )
        .await?;
    let mut buf = String::with_capacity(8 << 20);
    for i in 0..total {
        let wake = if i < due {
            now - chrono::Duration::seconds(60)
        } else if i < due + steady {
            now + chrono::Duration::seconds(start_in)
                + chrono::Duration::milliseconds(((i - due) as i64) * 1000 / 1000)
        } else {
            now + chrono::Duration::days(30)
        };
        let e = bench_enrollment(i, wake)?;
        let state = serde_json::to_string(&e)?.replace('"', "\"\"");
        buf.push_str(&format!(
            "{},bench,seed,{},{},active,pause,{},\"{state}\",{},{}\n",
            e.key,
            e.customer_id,
            e.order_id.as_deref().unwrap_or(""),
            wake.to_rfc3339(),
            e.started_at.to_rfc3339(),
            e.updated_at.to_rfc3339()
        ));
        if buf.len() > (4 << 20) {
            copy.send(buf.as_bytes()).await?;
            buf.clear();
        }
    }
    copy.send(buf.as_bytes()).await?;
    copy.finish().await?;
    // Each enrollment's customer, as ingest would have stored them with it:
    // with their facts, so the one-time pass that builds the facts of
    // customers stored before aftercare kept them (an upgrade) has nothing
    // to do, as on a database this version wrote. Left to run, it read all
    // 1,000,000 profiles while the benchmark drained (docs/BENCHMARKS.md,
    // section 12).
    copy_customers(&mut conn, (0..total).map(seed_event), now).await?;
    aftercare::schedule::sweep::facts_are_current(&store).await?;
    sqlx::query("ANALYZE enrollments")
        .execute(&store.pool)
        .await?;
    sqlx::query("ANALYZE customers")
        .execute(&store.pool)
        .await?;
    println!(
        "seeded {total} enrollments ({due} due now, {steady} due at 1000/s from +{start_in}s) in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn wait_drained(db: &str, timeout: u64) -> anyhow::Result<()> {
    let store = PgStore::connect(db).await?;
    let start = Instant::now();
    loop {
        // EXISTS stops at the first due row of the partial index; a COUNT
        // of 100,000 rows every 100 ms took ~15 % of the database's time
        // away from the drain it measures.
        let due: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM enrollments WHERE status = 'active' AND wake_at <= now())",
        )
        .fetch_one(&store.pool)
        .await?;
        if !due {
            println!("drained in {:.1} s", start.elapsed().as_secs_f64());
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(timeout) {
            anyhow::bail!("enrollments still due after {timeout} s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn lag(db: &str) -> anyhow::Result<()> {
    let store = PgStore::connect(db).await?;
    let rows: Vec<(String, DateTime<Utc>)> =
        sqlx::query_as("SELECT idempotency_key, created_at FROM outbox WHERE sequence = 'bench'")
            .fetch_all(&store.pool)
            .await?;
    let mut lags: Vec<f64> = rows
        .iter()
        .filter_map(|(key, created)| {
            let ms: i64 = key.split('@').nth(1)?.split('#').next()?.parse().ok()?;
            let wake = DateTime::<Utc>::from_timestamp_millis(ms)?;
            Some((*created - wake).num_milliseconds() as f64 / 1000.0)
        })
        .filter(|l| *l > -1.0)
        .collect();
    lags.sort_by(|a, b| a.partial_cmp(b).unwrap());
    anyhow::ensure!(!lags.is_empty(), "no bench rows");
    let q = |p: f64| lags[((lags.len() as f64 - 1.0) * p) as usize];
    println!(
        "wake-up lag over {} wake-ups: p50 {:.3} s, p99 {:.3} s, max {:.3} s",
        lags.len(),
        q(0.5),
        q(0.99),
        lags[lags.len() - 1]
    );
    Ok(())
}

/// Writes the customers the events make (one event each) with COPY, as
/// ingest would have stored them.
async fn copy_customers(
    conn: &mut sqlx::PgConnection,
    events: impl Iterator<Item = anyhow::Result<Event>>,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let mut copy = conn
        .copy_in_raw("COPY customers (id, email, profile, updated_at) FROM STDIN (FORMAT csv)")
        .await?;
    let mut buf = String::with_capacity(8 << 20);
    for event in events {
        let profile = aftercare::engine::profile::update(None, &event?);
        let json = serde_json::to_string(&profile)?.replace('"', "\"\"");
        buf.push_str(&format!(
            "{},{},\"{json}\",{}\n",
            profile.customer.id,
            profile.customer.email,
            now.to_rfc3339()
        ));
        if buf.len() > (4 << 20) {
            copy.send(buf.as_bytes()).await?;
            buf.clear();
        }
    }
    copy.send(buf.as_bytes()).await?;
    copy.finish().await?;
    Ok(())
}

/// `SeedCustomers`: profiles with an order each, written with COPY.
async fn seed_customers(db: &str, total: usize, lapsed: usize) -> anyhow::Result<()> {
    let store = PgStore::connect(db).await?;
    store.migrate().await?;
    let now = Utc::now();
    let start = Instant::now();
    let mut conn = store.pool.acquire().await?;
    let orders = (0..total).map(|i| {
        let days = if i % 100 < lapsed { 100 } else { 10 };
        let at = (now - chrono::Duration::days(days)).to_rfc3339();
        Ok(Event::parse(&format!(
            r#"{{"id":"o{i}","type":"order.placed","occurred_at":"{at}","customer":{{"id":"c{i:07}","email":"c{i}@example.com","marketing_consent":true}},"order":{{"id":"o{i}","placed_at":"{at}","currency":"EUR","total":"19.90"}}}}"#
        ))?)
    });
    copy_customers(&mut conn, orders, now).await?;
    sqlx::query("ANALYZE customers")
        .execute(&store.pool)
        .await?;
    println!(
        "seeded {total} customers ({lapsed}% lapsed) in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The win-back sequence the sweep benchmark fires.
const WIN_BACK: &str = "id: win-back\nname: Win-back\ncategory: value\n\
trigger: {schedule: \"0 9 * * *\", when: 'has(customer.last_order_at) && now - customer.last_order_at > days(90)'}\n\
exit_when: [{event: order.placed, scope: customer}]\n\
steps:\n  - email: miss-you\n";

/// `Sweep`: records today's firing as seen, then times the next day's.
async fn sweep(db: &str) -> anyhow::Result<()> {
    use aftercare::schedule::sweep;
    let store = PgStore::connect(db).await?;
    let (seq, diags) =
        aftercare::sequence::load::parse_sequence(std::path::Path::new("win-back.yaml"), WIN_BACK);
    anyhow::ensure!(diags.0.is_empty(), "{:?}", diags.0);
    let catalog =
        aftercare::sequence::model::Catalog::new(vec![seq.expect("parsed")], Default::default());
    let now = Utc::now();
    sweep::sweep(&store, &catalog, now).await?;
    let firing = sweep::next_sweep(&store, &catalog)
        .await?
        .expect("a next firing");
    let start = Instant::now();
    let swept = sweep::sweep(&store, &catalog, firing).await?;
    let took = start.elapsed().as_secs_f64();
    println!(
        "swept {} customers ({} matched and enrolled) in {took:.1} s: {:.0} customers/s",
        swept.read,
        swept.matched,
        swept.read as f64 / took
    );
    Ok(())
}
