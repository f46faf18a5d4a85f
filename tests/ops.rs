//! Operations: `/metrics` after a real run (the webhook, Kafka on the real
//! broker, SMTP to a real server, the scheduler, tracking and unsubscribe
//! links), `/readyz` waiting for the Kafka assignment, the ops listener of a
//! role without HTTP, and what `deploy/` ships: the Grafana dashboard's and
//! the alerts' metric names against a real exposition, `promtool` on the
//! rules and their unit tests, `kubernetes-validate --strict` on every
//! manifest, the compose file, the Dockerfile, and the configuration table of
//! README's production section.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aftercare::clock::SystemClock;
use aftercare::config::{DatabaseArgs, Role, ServiceArgs};
use aftercare::engine::outbox::OutboxStatus;
use aftercare::ingest::kafka::{KafkaConfig, ensure_topics};
use aftercare::service::{Loaded, serve};
use aftercare::store::Store;
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio_util::sync::CancellationToken;

/// The metrics recorder is one per process: the tests that run the service
/// take turns, so that each sees only its own counts move.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

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

async fn wait_for(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// The service in-process, its HTTP role on a loopback port.
struct Running {
    base: String,
    stop: CancellationToken,
    done: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    async fn start<S: Store>(store: S, args: ServiceArgs, loaded: Loaded) -> Running {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let stop = CancellationToken::new();
        let done = tokio::spawn(serve(
            store,
            args,
            loaded,
            Arc::new(SystemClock),
            stop.clone(),
            Some(listener),
        ));
        Running { base, stop, done }
    }

    async fn get(&self, path: &str) -> (u16, String) {
        get(&format!("{}{path}", self.base)).await
    }

    async fn shutdown(self) {
        self.stop.cancel();
        self.done.await.unwrap().unwrap();
    }
}

/// GETs `url` as a browser would, without following a redirect (a click's
/// target is outside).
async fn get(url: &str) -> (u16, String) {
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(url)
        .header(
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
        )
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

fn args(flags: &[&str], outbox: &Path, roles: &[Role]) -> ServiceArgs {
    ServiceArgs {
        db: DatabaseArgs {
            database_url: "unused".into(),
        },
        outbox_dir: outbox.to_path_buf(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        roles: roles.to_vec(),
        ..support::service_args(flags)
    }
}

fn shipped() -> Loaded {
    Loaded {
        catalog: Arc::new(support::catalog().clone()),
        templates: Arc::new(aftercare::template::Templates::load(Path::new("templates"), "en").0),
    }
}

/// One sample line of an exposition: name, labels, value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// The samples of a text exposition (its `#` lines skipped).
fn samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("name and value");
            let (name, labels) = match series.split_once('{') {
                None => (series, BTreeMap::new()),
                Some((name, rest)) => (name, labels_of(rest.strip_suffix('}').unwrap())),
            };
            Sample {
                name: name.to_string(),
                labels,
                value: value.parse().unwrap_or_else(|_| panic!("value of {l}")),
            }
        })
        .collect()
}

/// `a="x",b="y"` (values escaped as the text format does).
fn labels_of(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = s;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"").unwrap();
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            let (i, c) = chars.next().expect("a closing quote");
            match c {
                '\\' => value.push(chars.next().unwrap().1),
                '"' => break i,
                c => value.push(c),
            }
        };
        out.insert(key.to_string(), value);
        rest = after[end + 1..].trim_start_matches(',');
    }
    out
}

/// The sum of the samples of `name` carrying every label of `with`.
fn sum(text: &str, name: &str, with: &[(&str, &str)]) -> f64 {
    samples(text)
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            with.iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

/// Checks the exposition with Prometheus' own parser: `promtool check
/// metrics` reads it on stdin.
fn promtool_accepts(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool: run scripts/test, which installs it (apt-get install prometheus)");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A catalog of its own for the run: one value sequence whose second email
/// comes two seconds after the first (so the scheduler wakes it), and
/// policies without quiet hours (so the run does not depend on the hour).
fn quick_catalog(dir: &Path) -> Loaded {
    let seq = dir.join("sequences");
    std::fs::create_dir_all(&seq).unwrap();
    std::fs::write(
        seq.join("_policies.yaml"),
        "default_locale: en\n\
         default_timezone: UTC\n\
         sender: {from: \"Aurora Shop <hello@shop.example>\"}\n\
         frequency_cap: {max: 10, per: 1h}\n\
         tracking: {opens: [value, promo], clicks: [value, promo]}\n\
         stale_after: {transactional: 3d, value: 2d, promo: 2d}\n",
    )
    .unwrap();
    std::fs::write(
        seq.join("quick.yaml"),
        "id: quick\n\
         name: Quick follow-up\n\
         category: value\n\
         trigger:\n  event: order.placed\n\
         enroll: once_per_order\n\
         steps:\n\
         \x20 - email: review-request-short\n\
         \x20 - wait: 2s\n\
         \x20 - email: review-reminder\n",
    )
    .unwrap();
    let l = aftercare::validate::load(&seq, Path::new("templates"));
    assert!(!l.diagnostics.has_errors(), "{}", l.diagnostics);
    Loaded {
        catalog: l.catalog,
        templates: l.templates,
    }
}

async fn produce(topic: &str, key: &str, payload: &str) {
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("message.timeout.ms", "30000")
        .create()
        .unwrap();
    p.send(
        FutureRecord::to(topic).key(key).payload(payload),
        Duration::from_secs(30),
    )
    .await
    .map_err(|(e, _)| e)
    .expect("produce");
}

async fn post(base: &str, body: String) -> (u16, serde_json::Value) {
    let r = reqwest::Client::new()
        .post(format!("{base}/v1/events"))
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// The links in a message's HTML part that start with `prefix`.
fn links(message: &[u8], prefix: &str) -> Vec<String> {
    let msg = mail_parser::MessageParser::default()
        .parse(message)
        .unwrap();
    let html = msg.body_html(0).unwrap().to_string();
    html.split('"')
        .filter(|p| p.starts_with(prefix))
        .map(|p| p.replace("&amp;", "&"))
        .collect()
}

fn header(message: &[u8], name: &str) -> Option<String> {
    let msg = mail_parser::MessageParser::default()
        .parse(message)
        .unwrap();
    msg.header_raw(name)
        .map(|v| v.trim().replace(['\r', '\n'], ""))
}

/// Everything a shop, a customer and the relay do moves its series, and
/// the exposition is valid text format.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_run_moves_the_metrics() {
    let _turn = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let smtp = support::smtp::SmtpServer::start();
    let topic = unique("ops-metrics");
    let mut kcfg = KafkaConfig::new(&brokers(), &topic, "unused");
    kcfg.partitions = 2;
    ensure_topics(&kcfg).await;
    let (store, _db) = support::sqlite().await;
    let group = unique("ops-group");
    let smtp_url = smtp.url();
    let kafka = brokers();
    let flags = [
        "--smtp-url",
        smtp_url.as_str(),
        "--kafka-brokers",
        kafka.as_str(),
        "--kafka-topic",
        topic.as_str(),
        "--kafka-group",
        group.as_str(),
    ];
    // Links in emails must reach this service: its port comes first.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut a = args(&flags, &dir.path().join("outbox"), &[]);
    a.public_url = base.clone();
    let stop = CancellationToken::new();
    let done = tokio::spawn(serve(
        store.clone(),
        a,
        quick_catalog(dir.path()),
        Arc::new(SystemClock),
        stop.clone(),
        Some(listener),
    ));
    let app = Running { base, stop, done };
    wait_for("ready", Duration::from_secs(60), async || {
        app.get("/readyz").await.0 == 200
    })
    .await;
    let (status, before) = app.get("/metrics").await;
    assert_eq!(status, 200);
    let t = |min: i64| (chrono::Utc::now() - chrono::TimeDelta::minutes(min)).to_rfc3339();
    let ev = |id: &str, kind: &str, c: &str, consent: bool| {
        support::event_json(id, kind, c, &format!("o-{id}"), &t(1), consent)
    };
    // The webhook: two customers with consent (one whose address the
    // relay refuses), one without, a duplicate, a typo and a documented
    // type nothing listens to, and an item that is no event.
    let (code, answer) = post(
        &app.base,
        format!(
            "[{},{},{},{},{}]",
            ev("m1", "order.placed", "anna", true),
            ev("m2", "order.placed", "refused-bob", true),
            ev("m3", "order.placed", "cleo", false),
            ev("m4", "shipment.shiped", "anna", true),
            ev("m5", "shipment.delayed", "anna", true),
        ),
    )
    .await;
    assert_eq!(code, 202, "{answer}");
    let (code, answer) = post(&app.base, ev("m1", "order.placed", "anna", true)).await;
    assert_eq!((code, answer["duplicates"].as_u64()), (202, Some(1)));
    let (code, _) = post(&app.base, r#"[{"id":"bad"}]"#.to_string()).await;
    assert_eq!(code, 400);
    // Kafka: one order.
    produce(&topic, "dan", &ev("k1", "order.placed", "dan", true)).await;
    // anna and dan get both emails (the second after the scheduler's
    // wake-up); bob's address is refused, then suppressed; cleo's are
    // skipped.
    wait_for("every email decided", Duration::from_secs(60), async || {
        let rows = store.outbox().await.unwrap();
        rows.len() == 8
            && rows
                .iter()
                .all(|r| !matches!(r.status, OutboxStatus::Pending | OutboxStatus::Sending))
    })
    .await;
    // anna opens and clicks the first email, then unsubscribes.
    let mails = smtp.messages();
    let first = mails
        .iter()
        .find(|m| {
            header(m, "To").is_some_and(|t| t.contains("anna"))
                && header(m, "X-Aftercare-Template").as_deref() == Some("review-request-short")
        })
        .expect("anna's first email");
    let opens = links(first, &format!("{}/t/o/", app.base));
    let clicks = links(first, &format!("{}/t/c/", app.base));
    assert!(!opens.is_empty() && !clicks.is_empty(), "tracked links");
    get(&opens[0]).await;
    get(&clicks[0]).await;
    let unsubscribe = header(first, "List-Unsubscribe").expect("List-Unsubscribe");
    let url = unsubscribe
        .split(['<', '>'])
        .find(|p| p.starts_with(&app.base))
        .expect("the one-click link")
        .to_string();
    let r = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    // Kafka's lag is reported once the offsets are committed and the
    // statistics come (every 5 s).
    let mut after = String::new();
    wait_for("the consumer's lag", Duration::from_secs(30), async || {
        after = app.get("/metrics").await.1;
        let partitions = samples(&after)
            .iter()
            .filter(|s| s.name == "aftercare_kafka_consumer_lag" && s.labels["topic"] == topic)
            .count();
        partitions == 2
    })
    .await;
    let moved =
        |name: &str, with: &[(&str, &str)]| sum(&after, name, with) - sum(&before, name, with);
    // Events by type and source, duplicates, dead letters, unmatched types.
    let ingested = "aftercare_events_ingested_total";
    assert_eq!(
        moved(ingested, &[("type", "order.placed"), ("source", "http")]),
        3.0
    );
    assert_eq!(
        moved(ingested, &[("type", "order.placed"), ("source", "kafka")]),
        1.0
    );
    assert_eq!(
        moved(ingested, &[("type", "other"), ("source", "http")]),
        1.0
    );
    assert_eq!(
        moved(ingested, &[("type", "email.bounced"), ("source", "smtp")]),
        1.0
    );
    assert_eq!(
        moved(
            ingested,
            &[("type", "customer.unsubscribed"), ("source", "unsubscribe")]
        ),
        1.0
    );
    assert_eq!(
        moved("aftercare_events_duplicate_total", &[("source", "http")]),
        1.0
    );
    assert_eq!(
        moved("aftercare_dead_letters_total", &[("source", "http")]),
        1.0
    );
    let unmatched = "aftercare_events_unmatched_total";
    assert_eq!(moved(unmatched, &[("type", "shipment.shiped")]), 1.0);
    assert_eq!(moved(unmatched, &[("type", "shipment.delayed")]), 1.0);
    assert_eq!(
        moved("aftercare_unsubscribes_total", &[("source", "unsubscribe")]),
        1.0
    );
    // Emails by sequence, template and result.
    let emails = "aftercare_emails_total";
    let quick = ("sequence", "quick");
    for (template, result, n) in [
        ("review-request-short", "sent", 2.0),
        ("review-reminder", "sent", 2.0),
        ("review-request-short", "bounced", 1.0),
    ] {
        assert_eq!(
            moved(emails, &[quick, ("template", template), ("result", result)]),
            n,
            "{template} {result}\n{after}"
        );
    }
    for (template, reason) in [
        ("review-request-short", "no_consent"),
        ("review-reminder", "no_consent"),
        ("review-reminder", "suppressed"),
    ] {
        let with = [
            quick,
            ("template", template),
            ("result", "skipped"),
            ("reason", reason),
        ];
        assert_eq!(moved(emails, &with), 1.0, "{template} {reason}\n{after}");
    }
    assert_eq!(moved(emails, &[quick]), 8.0, "every email once\n{after}");
    // Opens and clicks, by sequence (machine or not, by its own rules).
    assert_eq!(moved("aftercare_email_opens_total", &[quick]), 1.0);
    assert_eq!(moved("aftercare_email_clicks_total", &[quick]), 1.0);
    // Histograms: the wake-ups, the relay, each kind of transaction.
    assert!(
        moved("aftercare_wake_lag_seconds_count", &[]) >= 2.0,
        "{after}"
    );
    assert!(moved("aftercare_smtp_duration_seconds_count", &[("result", "ok")]) >= 4.0);
    assert!(
        moved(
            "aftercare_smtp_duration_seconds_count",
            &[("result", "error")]
        ) >= 1.0
    );
    for kind in ["ingest", "wake", "send"] {
        assert!(
            moved(
                "aftercare_store_transaction_duration_seconds_count",
                &[("kind", kind)]
            ) >= 1.0,
            "{kind}"
        );
    }
    // Gauges read at scrape time: this run's store and consumer.
    assert_eq!(
        sum(
            &after,
            "aftercare_enrollments",
            &[quick, ("status", "completed")]
        ),
        4.0,
        "{after}"
    );
    assert_eq!(
        sum(&after, "aftercare_outbox_depth", &[("status", "pending")]),
        0.0
    );
    assert_eq!(
        sum(&after, "aftercare_outbox_oldest_due_age_seconds", &[]),
        0.0
    );
    assert_eq!(sum(&after, "aftercare_kafka_assigned_partitions", &[]), 2.0);
    assert_eq!(
        sum(
            &after,
            "aftercare_kafka_consumer_lag",
            &[("topic", topic.as_str())]
        ),
        0.0
    );
    // No customer id or address in any label.
    for s in samples(&after) {
        for v in s.labels.values() {
            assert!(
                !["anna", "bob", "cleo", "dan", "@"]
                    .iter()
                    .any(|p| v.contains(p)),
                "{s:?}"
            );
        }
    }
    promtool_accepts(&after);
    // The dashboard and the alerts ask only for series this run exported.
    let exported: BTreeSet<String> = samples(&after).into_iter().map(|s| s.name).collect();
    for (file, names) in [
        ("deploy/grafana/aftercare.json", dashboard_metrics()),
        ("deploy/prometheus/alerts.yaml", alert_metrics()),
    ] {
        assert!(!names.is_empty(), "{file} names no metric");
        let missing: Vec<&String> = names.difference(&exported).collect();
        assert!(
            missing.is_empty(),
            "{file} asks for {missing:?}, which /metrics does not export"
        );
    }
    app.shutdown().await;
}

/// `aftercare_…` names in a PromQL expression.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = expr;
    while let Some(i) = rest.find("aftercare_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

/// The metric names of the dashboard's queries.
fn dashboard_metrics() -> BTreeSet<String> {
    let text = std::fs::read_to_string("deploy/grafana/aftercare.json").unwrap();
    let dash: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut out = BTreeSet::new();
    let panels = dash["panels"].as_array().expect("panels");
    let mut queries = 0;
    for p in panels {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().expect("each target has an expr");
            queries += 1;
            out.extend(metric_names(expr));
        }
    }
    assert!(queries >= 20, "{queries} queries");
    out
}

/// The metric names of the alerting rules.
fn alert_metrics() -> BTreeSet<String> {
    let text = std::fs::read_to_string("deploy/prometheus/alerts.yaml").unwrap();
    let rules: serde_json::Value = serde_saphyr::from_str(&text).expect("alerts.yaml is YAML");
    let mut out = BTreeSet::new();
    for g in rules["groups"].as_array().unwrap() {
        for r in g["rules"].as_array().unwrap() {
            out.extend(metric_names(r["expr"].as_str().unwrap()));
        }
    }
    out
}

/// `/readyz` names the Kafka check and answers 503 until the consumer group
/// has assigned the partitions; then 200, and `/metrics` shows them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_waits_for_the_kafka_assignment() {
    let _turn = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let roles = [Role::Ingest, Role::Http];
    // A broker nobody answers at: never assigned, never ready.
    let (store, _db) = support::sqlite().await;
    let nowhere = args(
        &["--kafka-brokers", "127.0.0.1:1", "--kafka-topic", "nowhere"],
        &dir.path().join("outbox"),
        &roles,
    );
    let app = Running::start(store, nowhere, shipped()).await;
    wait_for("the http role", Duration::from_secs(30), async || {
        reqwest::get(format!("{}/healthz", app.base)).await.is_ok()
    })
    .await;
    for _ in 0..3 {
        let (status, body) = app.get("/readyz").await;
        assert_eq!(status, 503, "{body}");
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["checks"]["database"], "ok");
        assert_eq!(
            body["checks"]["kafka"],
            "waiting for the consumer group to assign partitions of nowhere"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // Its stop may wait on the unreachable broker; it is not awaited.
    app.stop.cancel();
    app.done.abort();
    // The real broker: ready once the group has assigned the partitions.
    let topic = unique("ops-ready");
    let mut kcfg = KafkaConfig::new(&brokers(), &topic, "unused");
    kcfg.partitions = 3;
    ensure_topics(&kcfg).await;
    let (store, _db) = support::sqlite().await;
    let kafka = brokers();
    let group = unique("ops-ready-group");
    let real = args(
        &[
            "--kafka-brokers",
            kafka.as_str(),
            "--kafka-topic",
            topic.as_str(),
            "--kafka-group",
            group.as_str(),
        ],
        &dir.path().join("outbox"),
        &roles,
    );
    let app = Running::start(store, real, shipped()).await;
    let mut seen = Vec::new();
    wait_for("ready", Duration::from_secs(60), async || {
        let (status, body) = app.get("/readyz").await;
        seen.push(status);
        status == 200 && body.contains(r#""kafka":"ok""#)
    })
    .await;
    let (_, metrics) = app.get("/metrics").await;
    assert_eq!(
        sum(&metrics, "aftercare_kafka_assigned_partitions", &[]),
        3.0
    );
    app.shutdown().await;
}

/// A process without the http role serves `/healthz`, `/readyz` and
/// `/metrics` on `AFTERCARE_OPS_ADDR`, and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_without_http_serves_health_and_metrics_on_the_ops_port() {
    let _turn = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let (store, _db) = support::sqlite().await;
    let port = support::smtp::free_port();
    let addr = format!("127.0.0.1:{port}");
    let a = args(
        &["--ops-addr", addr.as_str()],
        &dir.path().join("outbox"),
        &[Role::Schedule],
    );
    let stop = CancellationToken::new();
    let done = tokio::spawn(serve(
        store,
        a,
        shipped(),
        Arc::new(SystemClock),
        stop.clone(),
        None,
    ));
    let base = format!("http://{addr}");
    wait_for("the ops port", Duration::from_secs(30), async || {
        reqwest::get(format!("{base}/healthz")).await.is_ok()
    })
    .await;
    assert_eq!(
        get(&format!("{base}/healthz")).await,
        (200, "ok".to_string())
    );
    let (status, body) = get(&format!("{base}/readyz")).await;
    assert_eq!(status, 200, "{body}");
    let (status, metrics) = get(&format!("{base}/metrics")).await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("aftercare_outbox_depth{status=\"pending\"} 0"),
        "{metrics}"
    );
    let r = reqwest::Client::new()
        .post(format!("{base}/v1/events"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404, "the ops port takes no events");
    stop.cancel();
    done.await.unwrap().unwrap();
}

// What deploy/ ships.

fn tool(name: &str, install: &str) -> Command {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{name} not found: run scripts/test, which installs it ({install})"
    );
    Command::new(name)
}

fn run_ok(mut cmd: Command) -> String {
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?}:\n{text}");
    text
}

#[test]
fn the_alerting_rules_load_and_pass_their_unit_tests() {
    let mut check = tool("promtool", "apt-get install prometheus");
    check.args(["check", "rules", "deploy/prometheus/alerts.yaml"]);
    let out = run_ok(check);
    assert!(out.contains("SUCCESS: 7 rules found"), "{out}");
    let mut test = tool("promtool", "apt-get install prometheus");
    test.args(["test", "rules", "deploy/prometheus/rules_test.yaml"]);
    let out = run_ok(test);
    assert!(out.contains("SUCCESS"), "{out}");
    // Every alert has unit tests.
    let rules = std::fs::read_to_string("deploy/prometheus/alerts.yaml").unwrap();
    let tests = std::fs::read_to_string("deploy/prometheus/rules_test.yaml").unwrap();
    for line in rules.lines() {
        if let Some(name) = line.trim().strip_prefix("- alert: ") {
            assert!(
                tests.contains(&format!("alertname: {name}")),
                "{name} has no test"
            );
        }
    }
}

/// Every Kubernetes manifest against the Kubernetes schemas, offline and
/// strict (unknown fields are errors).
#[test]
fn the_kubernetes_manifests_are_valid() {
    let dir = Path::new("deploy/k8s");
    let mut manifests: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .filter(|p| p.file_name().is_some_and(|n| n != "kustomization.yaml"))
        .collect();
    manifests.sort();
    let mut v = tool("python3", "Python 3");
    let found = Command::new("python3")
        .args(["-c", "import kubernetes_validate"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "kubernetes-validate not found: run scripts/test, which installs it \
         (python3 -m pip install kubernetes-validate)"
    );
    v.args(["-m", "kubernetes_validate", "--strict"])
        .args(&manifests);
    let out = run_ok(v);
    assert_eq!(
        out.matches(" passed for resource ").count(),
        manifests.len() + 1, // content.yaml holds two ConfigMaps
        "{out}"
    );
    // The kustomization lists every manifest.
    let k: serde_json::Value =
        serde_saphyr::from_str(&std::fs::read_to_string(dir.join("kustomization.yaml")).unwrap())
            .unwrap();
    let listed: BTreeSet<String> = k["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect();
    let files: BTreeSet<String> = manifests
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(listed, files);
}

fn yaml(path: &str) -> serde_json::Value {
    serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A Deployment per role, each with its role's flag, probes on `/readyz`
/// and `/healthz`, resources, and no root.
#[test]
fn each_role_has_a_deployment_that_runs_without_root() {
    for role in ["ingest", "schedule", "send", "http"] {
        let d = yaml(&format!("deploy/k8s/{role}.yaml"));
        assert_eq!(d["kind"], "Deployment", "{role}");
        let pod = &d["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{role}");
        assert!(
            pod["securityContext"]["runAsUser"].as_u64() > Some(0),
            "{role}"
        );
        for c in pod["containers"]
            .as_array()
            .unwrap()
            .iter()
            .chain(pod["initContainers"].as_array().unwrap())
        {
            let sc = &c["securityContext"];
            assert_eq!(sc["allowPrivilegeEscalation"], false, "{role}");
            assert_eq!(sc["readOnlyRootFilesystem"], true, "{role}");
            assert!(c["resources"]["requests"]["memory"].is_string(), "{role}");
            assert!(c["resources"]["limits"]["memory"].is_string(), "{role}");
        }
        let c = &pod["containers"][0];
        let args: Vec<&str> = c["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(args, ["run", "--roles", role]);
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz", "{role}");
        assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz", "{role}");
        // The probes' port is one the container declares; a role without
        // HTTP is probed on the ops port, which the config map sets.
        let port = c["readinessProbe"]["httpGet"]["port"].as_str().unwrap();
        let ports: Vec<&str> = c["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert!(
            ports.contains(&port),
            "{role}: probe on {port}, ports {ports:?}"
        );
        if role != "http" {
            assert_eq!(port, "ops", "{role}");
        }
    }
    let config = yaml("deploy/k8s/config.yaml");
    assert_eq!(config["data"]["AFTERCARE_OPS_ADDR"], "0.0.0.0:9090");
    let service = yaml("deploy/k8s/service.yaml");
    assert_eq!(
        service["spec"]["selector"]["app.kubernetes.io/component"],
        "http"
    );
}

/// deploy/k8s/content.yaml holds the shipped sequences and templates as
/// ConfigMaps (template paths flattened with `__`, which the init
/// container lays out again); `UPDATE_GOLDEN=1` writes it anew.
#[test]
fn the_content_config_maps_hold_the_shipped_files() {
    let expected = content_yaml();
    let path = Path::new("deploy/k8s/content.yaml");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(path, &expected).unwrap();
    }
    let found = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        found == expected,
        "deploy/k8s/content.yaml is not the shipped sequences and templates: \
         run `UPDATE_GOLDEN=1 cargo test --test ops the_content` and commit it"
    );
}

fn files(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                assert!(
                    !rel.contains("__"),
                    "{rel}: `__` is the flattening separator"
                );
                out.push((rel.replace('/', "__"), std::fs::read_to_string(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

fn content_yaml() -> String {
    let mut out = String::from(
        "# Generated by tests/ops.rs from sequences/ and templates/ (UPDATE_GOLDEN=1\n\
         # cargo test --test ops the_content); edit those, not this. Replace these\n\
         # ConfigMaps with your own content: the roles mount them at\n\
         # /etc/aftercare/sequences and (laid out in folders again by an init\n\
         # container) /etc/aftercare/templates.\n",
    );
    for (name, dir) in [
        ("aftercare-sequences", "sequences"),
        ("aftercare-templates", "templates"),
    ] {
        out.push_str("---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n");
        out.push_str(&format!(
            "  name: {name}\n  labels:\n    app.kubernetes.io/name: aftercare\ndata:\n"
        ));
        for (key, text) in files(Path::new(dir)) {
            out.push_str(&format!("  {key}: |\n"));
            for line in text.lines() {
                if line.is_empty() {
                    out.push('\n');
                } else {
                    out.push_str(&format!("    {line}\n"));
                }
            }
        }
    }
    out
}

/// The compose file: Kafka (KRaft), PostgreSQL, Mailpit, a migrate step,
/// and aftercare by role, each with a healthcheck. (`docker compose config`
/// would need the daemon; the structure is checked as YAML.)
#[test]
fn compose_runs_each_role_with_its_neighbours() {
    let c = yaml("deploy/compose.yaml");
    let services = c["services"].as_object().expect("services");
    let names: BTreeSet<&str> = services.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "kafka", "postgres", "mailpit", "migrate", "ingest", "worker", "http"
        ])
    );
    assert!(
        services["kafka"]["image"]
            .as_str()
            .unwrap()
            .starts_with("apache/kafka:")
    );
    assert_eq!(
        services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"],
        "broker,controller"
    );
    let command = |s: &str| -> Vec<String> {
        services[s]["command"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(command("migrate"), ["migrate"]);
    for (svc, roles) in [
        ("ingest", "ingest"),
        ("worker", "schedule,send"),
        ("http", "http"),
    ] {
        assert_eq!(command(svc), ["run", "--roles", roles]);
        let s = &services[svc];
        assert!(s["healthcheck"]["test"].is_array(), "{svc}");
        assert_eq!(
            s["depends_on"]["migrate"]["condition"], "service_completed_successfully",
            "{svc}"
        );
        assert_eq!(
            s["environment"]["AFTERCARE_OPS_ADDR"], "0.0.0.0:9090",
            "{svc}"
        );
    }
    for svc in ["kafka", "postgres", "mailpit"] {
        assert!(services[svc]["healthcheck"]["test"].is_array(), "{svc}");
    }
}

/// The Dockerfile builds in one stage and runs from a small one, as a user
/// without privileges, with the content and `aftercare` as the entry point.
#[test]
fn the_dockerfile_is_multi_stage_and_runs_without_root() {
    let text = std::fs::read_to_string("deploy/Dockerfile").unwrap();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    let froms: Vec<&str> = lines
        .iter()
        .filter(|l| l.starts_with("FROM "))
        .copied()
        .collect();
    assert_eq!(froms.len(), 2, "{froms:?}");
    assert!(
        froms[0].starts_with("FROM rust:1-bookworm AS builder"),
        "{froms:?}"
    );
    assert!(
        froms[1].starts_with("FROM debian:bookworm-slim")
            || froms[1].starts_with("FROM gcr.io/distroless/"),
        "{froms:?}"
    );
    // After the last FROM: a numeric non-root user, the binary from the
    // builder, the content, CA roots.
    let last = text.rfind("\nFROM ").unwrap();
    let runtime = &text[last..];
    let user = runtime
        .lines()
        .filter_map(|l| l.trim().strip_prefix("USER "))
        .next_back()
        .expect("a USER");
    let uid: u32 = user
        .split(':')
        .next()
        .unwrap()
        .parse()
        .expect("a numeric user");
    assert!(uid > 0, "USER {user}");
    assert!(runtime.contains("COPY --from=builder"), "{runtime}");
    assert!(runtime.contains("COPY sequences ") && runtime.contains("COPY templates "));
    assert!(runtime.contains("ca-certificates"));
    assert!(runtime.contains("ENTRYPOINT [\"aftercare\"]"));
    // The context keeps out what the image does not need (target/ above all).
    let ignore = std::fs::read_to_string(".dockerignore").unwrap();
    assert_eq!(ignore.lines().find(|l| !l.starts_with('#')), Some("*"));
    for needed in [
        "src/",
        "migrations/",
        "sequences/",
        "templates/",
        "Cargo.lock",
    ] {
        assert!(ignore.contains(&format!("!{needed}")), "{needed}");
    }
}

/// README's production section lists every `AFTERCARE_*` variable the
/// service reads.
#[test]
fn the_production_section_lists_every_variable() {
    let readme = std::fs::read_to_string("README.md").unwrap();
    let start = readme
        .find("## Operating in production")
        .expect("README: Operating in production");
    let end = readme[start + 3..]
        .find("\n## ")
        .map_or(readme.len(), |i| start + 3 + i);
    let section = &readme[start..end];
    let mut read = BTreeSet::new();
    let mut todo = vec![PathBuf::from("src")];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else if p.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&p).unwrap();
                for part in text.split("env = \"").skip(1) {
                    read.insert(part.split('"').next().unwrap().to_string());
                }
                for part in text.split("std::env::var(\"").skip(1) {
                    read.insert(part.split('"').next().unwrap().to_string());
                }
            }
        }
    }
    read.retain(|v| v.starts_with("AFTERCARE_"));
    assert!(read.len() > 30, "{read:?}");
    let missing: Vec<&String> = read
        .iter()
        .filter(|v| !section.contains(&format!("`{v}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "README, Operating in production, does not list {missing:?}"
    );
}
