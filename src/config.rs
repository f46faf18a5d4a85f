//! Flags and `AFTERCARE_*` variables, with defaults that need no server.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// `sqlite://aftercare.db` (embedded) or `postgres://…`.
    #[arg(
        long,
        env = "AFTERCARE_DATABASE_URL",
        default_value = "sqlite://aftercare.db"
    )]
    pub database_url: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum)]
pub enum Role {
    /// Consume events from Kafka (when AFTERCARE_KAFKA_BROKERS is set).
    Ingest,
    /// Wake due enrollments.
    Schedule,
    /// Send due outbox rows.
    Send,
    /// The HTTP server (events webhook, health).
    Http,
}

pub const ALL_ROLES: &[Role] = &[Role::Ingest, Role::Schedule, Role::Send, Role::Http];

#[derive(Debug, Clone, Args)]
pub struct ServiceArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// Kafka bootstrap servers; unset: no Kafka.
    #[arg(long, env = "AFTERCARE_KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,
    #[arg(long, env = "AFTERCARE_KAFKA_TOPIC", default_value = "shop-events")]
    pub kafka_topic: String,
    #[arg(long, env = "AFTERCARE_KAFKA_GROUP", default_value = "aftercare")]
    pub kafka_group: String,
    /// `smtp://host:port`; unset: write .eml files to the outbox folder.
    #[arg(long, env = "AFTERCARE_SMTP_URL")]
    pub smtp_url: Option<String>,
    #[arg(long, env = "AFTERCARE_OUTBOX_DIR", default_value = "./outbox")]
    pub outbox_dir: PathBuf,
    #[arg(long, env = "AFTERCARE_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,
    /// HMAC key of POST /v1/events; unset: unsigned webhooks are accepted.
    #[arg(long, env = "AFTERCARE_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,
    /// Retry schedule after transient send failures: comma list of durations.
    #[arg(long, env = "AFTERCARE_SMTP_RETRY")]
    pub smtp_retry: Option<String>,
    /// The largest email sent, in bytes; a larger one is skipped with the reason.
    #[arg(long, env = "AFTERCARE_MAX_EMAIL_BYTES", default_value_t = crate::send::worker::DEFAULT_MAX_EMAIL_BYTES)]
    pub max_email_bytes: usize,
    /// Roles to run (default: all), e.g. `--roles ingest,http`.
    #[arg(long, value_delimiter = ',', value_enum)]
    pub roles: Vec<Role>,
}

impl ServiceArgs {
    pub fn roles(&self) -> Vec<Role> {
        if self.roles.is_empty() {
            ALL_ROLES.to_vec()
        } else {
            self.roles.clone()
        }
    }

    /// The retry schedule in seconds, checked.
    pub fn retry_schedule(&self) -> anyhow::Result<Vec<i64>> {
        match &self.smtp_retry {
            None => Ok(crate::send::worker::DEFAULT_RETRY.to_vec()),
            Some(list) => list
                .split(',')
                .map(|d| {
                    crate::sequence::duration::parse(d)
                        .map(|t| t.num_seconds())
                        .map_err(|e| anyhow::anyhow!("AFTERCARE_SMTP_RETRY: {e}"))
                })
                .collect(),
        }
    }
}
