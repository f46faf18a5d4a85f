//! `aftercare run`: the roles (Kafka ingest, scheduler, sender, HTTP) over one
//! store, each stopping cleanly on SIGTERM/SIGINT.

use std::sync::Arc;

use anyhow::{Context as _, bail};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::clock::{Clock, SystemClock};
use crate::config::{Role, ServiceArgs};
use crate::http::router;
use crate::ingest::http::Webhook;
use crate::ingest::kafka::{self, KafkaConfig};
use crate::send::transport::EmlDir;
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
    if args.smtp_url.is_some() {
        bail!(
            "AFTERCARE_SMTP_URL is set, but SMTP delivery is not built yet; unset it to write .eml files to {}",
            args.outbox_dir.display()
        );
    }
    let url = args.db.database_url.clone();
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
    let kick = Arc::new(Notify::new());
    let mut tasks = JoinSet::new();
    if roles.contains(&Role::Ingest) {
        match &args.kafka_brokers {
            Some(brokers) => {
                let cfg = KafkaConfig::new(brokers, &args.kafka_topic, &args.kafka_group);
                tasks.spawn(kafka::run(
                    store.clone(),
                    loaded.catalog.clone(),
                    clock.clone(),
                    cfg,
                    kick.clone(),
                    stop.clone(),
                ));
            }
            None => {
                tracing::info!("AFTERCARE_KAFKA_BROKERS unset: events come by HTTP and files only")
            }
        }
    }
    if roles.contains(&Role::Schedule) {
        // Loops side by side, as separate instances would run: one claims
        // while another's wake-ups are in the database (claims never overlap).
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
    if roles.contains(&Role::Send) {
        let worker = Worker {
            store: store.clone(),
            catalog: loaded.catalog.clone(),
            templates: loaded.templates.clone(),
            transport: EmlDir {
                dir: args.outbox_dir.clone(),
            },
            clock: clock.clone(),
            retry: args.retry_schedule()?,
            compose: Compose::Message,
            max_email_bytes: args.max_email_bytes,
        };
        let fut = worker.run(kick.clone(), stop.clone());
        tasks.spawn(async move {
            fut.await;
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
        let app = router(Webhook {
            store: store.clone(),
            catalog: loaded.catalog.clone(),
            clock: clock.clone(),
            secret: args.webhook_secret.clone(),
            kick: kick.clone(),
        });
        let stop_http = stop.clone();
        tasks.spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop_http.cancelled().await })
                .await?;
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
    tracing::info!("stopped");
    result
}
