//! `aftercare run`: the roles (Kafka ingest, scheduler, sender, HTTP) over one
//! store, each stopping cleanly on SIGTERM/SIGINT.

use std::str::FromStr;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use futures_util::FutureExt;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::clock::{Clock, SystemClock};
use crate::config::{Role, ServiceArgs};
use crate::http::{Readiness, router};
use crate::ingest::http::Webhook;
use crate::ingest::kafka::{self, ConsumerState, KafkaConfig};
use crate::ingest::listened::Watch;
use crate::instance::Instance;
use crate::send::smtp::Smtp;
use crate::send::transport::{EmlDir, Outbound};
use crate::send::worker::{Compose, Worker};
use crate::sequence::model::Catalog;
use crate::store::Store;
use crate::template::Templates;

/// Opens the store named by `url` and hands it to `f`, whichever backend.
#[macro_export]
macro_rules! with_store {
    ($url:expr, |$s:ident| $body:expr) => {{
        let url: &str = $url;
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let $s = anyhow::Context::context(
                $crate::store::PgStore::connect(url).await,
                "connecting to PostgreSQL",
            )?;
            $body
        } else if url.starts_with("sqlite:") {
            let $s = anyhow::Context::context(
                $crate::store::SqliteStore::connect(url).await,
                "opening SQLite",
            )?;
            $body
        } else {
            anyhow::bail!("AFTERCARE_DATABASE_URL: {url:?} is neither postgres://… nor sqlite://…")
        }
    }};
}

pub struct Loaded {
    pub catalog: Arc<Catalog>,
    pub templates: Arc<Templates>,
}

pub async fn run(args: ServiceArgs, loaded: Loaded) -> anyhow::Result<()> {
    let url = args.db.database_url.clone();
    // Held until `run` returns; the operating system lets go on a crash.
    let _only_instance = sqlite_lock(&url)?;
    let stop = CancellationToken::new();
    spawn_signal_handler(stop.clone());
    crate::with_store!(&url, |store| serve(
        store,
        args,
        loaded,
        Arc::new(SystemClock),
        stop,
        None
    )
    .await)
}

/// SMTP when `AFTERCARE_SMTP_URL` is set, else `.eml` files in the outbox
/// folder.
pub fn outbound(args: &ServiceArgs) -> anyhow::Result<Outbound> {
    Ok(match args.smtp()? {
        Some(settings) => {
            tracing::info!(server = %format!("{}:{}", settings.endpoint.host, settings.endpoint.port),
                security = ?settings.endpoint.security, "sending over SMTP");
            Outbound::Smtp(
                Smtp::new(&settings).map_err(|e| anyhow::anyhow!("AFTERCARE_SMTP_URL: {e}"))?,
            )
        }
        None => Outbound::Eml(EmlDir {
            dir: args.outbox_dir.clone(),
        }),
    })
}

/// SQLite has one writer: a second `run` on the same file would only fight
/// the first for its lock. Takes an exclusive lock on `<file>.lock` beside
/// the database, or says what to do instead.
fn sqlite_lock(url: &str) -> anyhow::Result<Option<std::fs::File>> {
    if !url.starts_with("sqlite:") {
        return Ok(None);
    }
    let opts = sqlx::sqlite::SqliteConnectOptions::from_str(url)
        .with_context(|| format!("AFTERCARE_DATABASE_URL: {url:?}"))?;
    let db = opts.get_filename();
    if db.as_os_str().is_empty() || db.as_os_str() == ":memory:" {
        return Ok(None);
    }
    let mut path = db.as_os_str().to_owned();
    path.push(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", std::path::Path::new(&path).display()))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "another aftercare instance is running on {}: SQLite serves one instance. \
             Stop it, or use PostgreSQL (AFTERCARE_DATABASE_URL=postgres://…) to run several",
            db.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", std::path::Path::new(&path).display()))
        }
    }
}

fn spawn_signal_handler(stop: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("install SIGTERM handler");
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutting down: finishing the work in hand");
        stop.cancel();
    });
}

/// Runs the chosen roles until `stop`. With `listener`, HTTP serves on it
/// (tests bind port 0); otherwise on `args.http_addr`.
pub async fn serve<S: Store>(
    store: S,
    args: ServiceArgs,
    loaded: Loaded,
    clock: Arc<dyn Clock>,
    stop: CancellationToken,
    listener: Option<TcpListener>,
) -> anyhow::Result<()> {
    store.migrate().await.context("applying migrations")?;
    let roles = args.roles();
    let secret = crate::send::links::secret(&store, args.secret.as_deref()).await?;
    let links = Arc::new(crate::send::links::Links::new(
        &args.public_url,
        &secret,
        args.unsubscribe_mailto.as_deref(),
    )?);
    let retry = args.retry_schedule()?;
    let transport = outbound(&args)?;
    let (concurrency, bounces) = args.sending()?;
    let dkim = args.dkim.load()?.map(Arc::new);
    if let Some(d) = &dkim {
        let (_, from) = loaded.catalog.policies.sender.name_and_email();
        tracing::info!(record = %d.record().name, algorithm = d.algorithm(), "DKIM signing on");
        if let Some(w) = d.alignment_warning(&from) {
            tracing::warn!("{w}");
        }
    }
    let providers = Arc::new(crate::bounce::providers::Providers::load(&args.providers)?);
    let http_limits = args.http_limits()?;
    let retention = args.retention()?;
    let admin_token = args.admin_token()?;
    let attribution_window = args.attribution_window()?;
    if roles.contains(&Role::Http) {
        match &admin_token {
            None => tracing::info!(
                "AFTERCARE_ADMIN_TOKEN unset: the admin API (/v1/admin) and the dashboard (/admin) are off"
            ),
            Some(_) => tracing::info!("admin API at /v1/admin and dashboard at /admin"),
        }
    }
    let instance = Instance::new(clock.now(), args.heartbeat_timeout()?);
    instance
        .beat(&store, clock.now())
        .await
        .context("storing this instance's first heartbeat")?;
    tracing::info!(instance = %instance.id(), "started");
    // The heartbeat outlives the roles: it stops only once they have.
    let beating = CancellationToken::new();
    let heartbeat = tokio::spawn(instance.clone().run(
        store.clone(),
        clock.clone(),
        beating.clone(),
    ));
    // Process-global, once: counters and histograms from here on.
    crate::telemetry::install();
    let kick = Arc::new(Notify::new());
    let mut tasks = JoinSet::new();
    // Event types nobody listens to, counted across Kafka and HTTP; the
    // task says the hourly counts (and what is left when stopping).
    let watch = Arc::new(Watch::new(&loaded.catalog));
    tasks.spawn(watch.clone().run(clock.clone(), stop.clone()).map(Ok));
    // The consumer's assignment and lag, for /readyz and /metrics.
    let mut consumer = None;
    if roles.contains(&Role::Ingest) {
        match &args.kafka_brokers {
            Some(brokers) => {
                let cfg = KafkaConfig::new(brokers, &args.kafka_topic, &args.kafka_group);
                let state = Arc::new(ConsumerState::new(&args.kafka_topic));
                consumer = Some(state.clone());
                tasks.spawn(kafka::run(
                    store.clone(),
                    loaded.catalog.clone(),
                    clock.clone(),
                    cfg,
                    kick.clone(),
                    watch.clone(),
                    state,
                    stop.clone(),
                ));
            }
            None => {
                tracing::info!("AFTERCARE_KAFKA_BROKERS unset: events come by HTTP and files only")
            }
        }
    }
    if roles.contains(&Role::Schedule) {
        // Independent loops, one wake transaction each at a time; they take
        // disjoint rows, as separate instances would.
        for _ in 0..crate::schedule::LOOPS {
            let fut = crate::schedule::run(
                store.clone(),
                loaded.catalog.clone(),
                clock.clone(),
                kick.clone(),
                stop.clone(),
            );
            tasks.spawn(async move {
                fut.await;
                Ok(())
            });
        }
    }
    if roles.contains(&Role::Schedule) {
        // Schedule triggers' sweeps: one instance at a time, by a lease.
        tasks.spawn(
            crate::schedule::sweep::run(
                store.clone(),
                loaded.catalog.clone(),
                instance.id().to_string(),
                clock.clone(),
                stop.clone(),
            )
            .map(Ok),
        );
        // Retention rides with the scheduler: one lease, so one instance at a time.
        match retention {
            Some(keep) => {
                tracing::info!(
                    "retention: events, deliveries, opens and clicks and dead letters older than {} are purged",
                    crate::sequence::duration::format(keep)
                );
                tasks.spawn(
                    crate::retention::run(
                        store.clone(),
                        keep,
                        instance.id().to_string(),
                        clock.clone(),
                        stop.clone(),
                    )
                    .map(Ok),
                );
            }
            None => tracing::info!("AFTERCARE_RETENTION unset: everything is kept"),
        }
    }
    if roles.contains(&Role::Send) {
        let worker = Worker {
            store: store.clone(),
            catalog: loaded.catalog.clone(),
            templates: loaded.templates.clone(),
            transport,
            clock: clock.clone(),
            retry,
            compose: Compose::Message,
            instance: instance.clone(),
            max_email_bytes: args.max_email_bytes,
            concurrency,
            bounces,
            paused: Default::default(),
            dkim,
            links: links.clone(),
        };
        let fut = worker.run(kick.clone(), stop.clone());
        tasks.spawn(async move {
            fut.await;
            Ok(())
        });
    }
    let readiness = || Readiness {
        store: store.clone(),
        outbox_dir: (roles.contains(&Role::Send) && args.smtp_url.is_none())
            .then(|| args.outbox_dir.clone()),
        kafka: consumer.clone(),
        clock: clock.clone(),
    };
    if let Some(addr) = args.ops_addr {
        let ops = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding AFTERCARE_OPS_ADDR {addr}"))?;
        tracing::info!(addr = %ops.local_addr()?, "health and metrics listening");
        let app = crate::http::ops_routes(Arc::new(readiness()));
        let stop_ops = stop.clone();
        tasks.spawn(async move {
            crate::http::server::serve(ops, app, http_limits, stop_ops).await?;
            Ok(())
        });
    }
    if roles.contains(&Role::Http) {
        let listener = match listener {
            Some(l) => l,
            None => TcpListener::bind(args.http_addr)
                .await
                .with_context(|| format!("binding {}", args.http_addr))?,
        };
        tracing::info!(addr = %listener.local_addr()?, "http listening");
        let app = router(
            Webhook {
                store: store.clone(),
                catalog: loaded.catalog.clone(),
                clock: clock.clone(),
                secret: args.webhook_secret.clone(),
                kick: kick.clone(),
                watch: watch.clone(),
            },
            readiness(),
            links.clone(),
            providers,
            admin_token.as_deref().map(crate::http::admin::Token::new),
            crate::http::dashboard::Settings {
                token: admin_token.clone(),
                templates: loaded.templates.clone(),
                public_url: args.public_url.clone(),
                attribution_window,
            },
        );
        let stop_http = stop.clone();
        tasks.spawn(async move {
            crate::http::server::serve(listener, app, http_limits, stop_http).await?;
            Ok(())
        });
    }
    let mut result = Ok(());
    while let Some(done) = tasks.join_next().await {
        let r = match done {
            Ok(r) => r,
            Err(e) => Err(anyhow::anyhow!("a role panicked: {e}")),
        };
        if let Err(e) = r {
            tracing::error!("{e:#}");
            stop.cancel();
            result = Err(e);
        }
    }
    beating.cancel();
    let _ = heartbeat.await;
    if let Err(e) = store.retire(instance.id()).await {
        tracing::warn!(instance = %instance.id(), "could not retire this instance: {e}");
    }
    tracing::info!("stopped");
    result
}
