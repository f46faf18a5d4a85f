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

/// `AFTERCARE_PUBLIC_URL`'s default: the default HTTP address.
pub const DEFAULT_PUBLIC_URL: &str = "http://127.0.0.1:8080";

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
    /// `smtp://host:port` (plain), `smtp://user:pass@host:587` (STARTTLS),
    /// `smtps://host:465` (TLS); unset: write .eml files to the outbox folder.
    #[arg(long, env = "AFTERCARE_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,
    /// Connecting to the relay must succeed within this, and one message's
    /// whole exchange within twice this.
    #[arg(long, env = "AFTERCARE_SMTP_TIMEOUT", default_value = "30s")]
    pub smtp_timeout: String,
    /// A PEM file of certificates to trust for the relay's TLS besides the
    /// Web PKI roots (a private CA, a self-signed relay).
    #[arg(long, env = "AFTERCARE_SMTP_CA_FILE")]
    pub smtp_ca_file: Option<PathBuf>,
    /// Connections to the relay kept open at most.
    #[arg(long, env = "AFTERCARE_SMTP_POOL", default_value_t = 16)]
    pub smtp_pool: u32,
    /// Emails handed to the transport at once by this instance's sender.
    #[arg(long, env = "AFTERCARE_SEND_CONCURRENCY", default_value_t = 32)]
    pub send_concurrency: usize,
    /// Where bounces go (the envelope sender, `+<message token>` added);
    /// unset: the sender's own address from `_policies.yaml`.
    #[arg(long, env = "AFTERCARE_BOUNCE_ADDRESS")]
    pub bounce_address: Option<String>,
    #[arg(long, env = "AFTERCARE_OUTBOX_DIR", default_value = "./outbox")]
    pub outbox_dir: PathBuf,
    #[arg(long, env = "AFTERCARE_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,
    /// A second listener serving only `/healthz`, `/readyz` and `/metrics`,
    /// whichever roles run (a process without the http role has no other);
    /// unset: none.
    #[arg(long, env = "AFTERCARE_OPS_ADDR")]
    pub ops_addr: Option<SocketAddr>,
    /// HMAC key of POST /v1/events; unset: unsigned webhooks are accepted.
    #[arg(long, env = "AFTERCARE_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,
    /// Base of the unsubscribe and tracking links in emails: where customers
    /// reach this service's HTTP role (`https://mail.shop.example`).
    #[arg(long, env = "AFTERCARE_PUBLIC_URL", default_value = DEFAULT_PUBLIC_URL)]
    pub public_url: String,
    /// Signs unsubscribe and tracking links (16 characters at least); unset:
    /// one is generated on first start and kept in the database.
    #[arg(long, env = "AFTERCARE_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
    /// An address for the `mailto:` of `List-Unsubscribe`, beside the
    /// one-click link; unset: the header carries the link only.
    #[arg(long, env = "AFTERCARE_UNSUBSCRIBE_MAILTO")]
    pub unsubscribe_mailto: Option<String>,
    /// Bearer token of the admin API (`/v1/admin/…`) and the dashboard
    /// (`/admin`), 16 characters at least; unset: both are off.
    #[arg(long, env = "AFTERCARE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// How long after an open or a click of an email an order still counts
    /// as that email's doing (the dashboard's conversions; 1h to 90d).
    #[arg(long, env = "AFTERCARE_ATTRIBUTION_WINDOW", default_value = "5d")]
    pub attribution_window: String,
    /// Retry schedule after transient send failures: comma list of durations.
    #[arg(long, env = "AFTERCARE_SMTP_RETRY")]
    pub smtp_retry: Option<String>,
    /// Open HTTP connections at most; at the cap, the oldest idle or
    /// half-sent one is closed for a new client.
    #[arg(long, env = "AFTERCARE_HTTP_MAX_CONNECTIONS", default_value_t = 512)]
    pub http_max_connections: usize,
    /// A request's headers must arrive within this; an idle keep-alive
    /// connection closes after it.
    #[arg(long, env = "AFTERCARE_HTTP_HEADER_TIMEOUT", default_value = "10s")]
    pub http_header_timeout: String,
    /// A request must be read and answered within this (else 408).
    #[arg(long, env = "AFTERCARE_HTTP_REQUEST_TIMEOUT", default_value = "60s")]
    pub http_request_timeout: String,
    /// After how long without a heartbeat an instance counts as gone and its
    /// claimed emails are taken over by another (a duration: `5s`).
    #[arg(long, env = "AFTERCARE_HEARTBEAT_TIMEOUT", default_value = "5s")]
    pub heartbeat_timeout: String,
    /// The largest email sent, in bytes; a larger one is skipped with the reason.
    #[arg(long, env = "AFTERCARE_MAX_EMAIL_BYTES", default_value_t = crate::send::worker::DEFAULT_MAX_EMAIL_BYTES)]
    pub max_email_bytes: usize,
    /// DKIM signing: AFTERCARE_DKIM_SELECTOR, _DOMAIN and _KEY_FILE (all or none).
    #[command(flatten)]
    pub dkim: crate::send::dkim::DkimArgs,
    /// Events, delivery log, opens and clicks and dead letters older than
    /// this are purged, and finished enrollments compacted (a duration of
    /// 30d at least: `400d`); unset: everything is kept.
    #[arg(long, env = "AFTERCARE_RETENTION")]
    pub retention: Option<String>,
    /// Roles to run (default: all), e.g. `--roles ingest,http`.
    #[arg(long, value_delimiter = ',', value_enum)]
    pub roles: Vec<Role>,
    #[command(flatten)]
    pub providers: ProviderArgs,
}

/// The relays whose bounce and complaint webhooks `POST /v1/providers/<name>`
/// takes (README, "Bounce and complaint webhooks"). A provider without its
/// settings is not configured: its webhook answers 404 saying what to set.
#[derive(Debug, Clone, Default, Args)]
pub struct ProviderArgs {
    /// Amazon SES via SNS: the SNS topic ARNs taken (comma list).
    #[arg(long, env = "AFTERCARE_SES_TOPIC_ARNS", value_delimiter = ',')]
    pub ses_topic_arns: Vec<String>,
    /// Amazon SES via SNS: PEM files of the SNS signing certificates trusted
    /// (comma list); nothing is fetched.
    #[arg(long, env = "AFTERCARE_SES_SIGNING_CERTS", value_delimiter = ',')]
    pub ses_signing_certs: Vec<PathBuf>,
    /// SendGrid: the signed event webhook's verification key (base64 or PEM).
    #[arg(long, env = "AFTERCARE_SENDGRID_PUBLIC_KEY")]
    pub sendgrid_public_key: Option<String>,
    /// Postmark: the secret its webhook URL carries (basic auth password or
    /// `?secret=`).
    #[arg(long, env = "AFTERCARE_POSTMARK_SECRET", hide_env_values = true)]
    pub postmark_secret: Option<String>,
    /// Mailgun: the webhook signing key.
    #[arg(long, env = "AFTERCARE_MAILGUN_SIGNING_KEY", hide_env_values = true)]
    pub mailgun_signing_key: Option<String>,
    /// Mailgun: how far a signature's timestamp may be from now.
    #[arg(long, env = "AFTERCARE_MAILGUN_MAX_AGE", default_value = "10m")]
    pub mailgun_max_age: String,
}

impl ServiceArgs {
    pub fn roles(&self) -> Vec<Role> {
        if self.roles.is_empty() {
            ALL_ROLES.to_vec()
        } else {
            self.roles.clone()
        }
    }

    /// The HTTP server's limits, checked.
    pub fn http_limits(&self) -> anyhow::Result<crate::http::server::Limits> {
        let secs = |name: &str, value: &str| -> anyhow::Result<std::time::Duration> {
            let d = crate::sequence::duration::parse(value)
                .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
            if d < chrono::Duration::seconds(1) || d > chrono::Duration::hours(1) {
                anyhow::bail!("{name}: {value:?} is outside 1s to 1h");
            }
            Ok(d.to_std()?)
        };
        if !(1..=100_000).contains(&self.http_max_connections) {
            anyhow::bail!(
                "AFTERCARE_HTTP_MAX_CONNECTIONS: {} is outside 1 to 100000",
                self.http_max_connections
            );
        }
        Ok(crate::http::server::Limits {
            max_connections: self.http_max_connections,
            header_timeout: secs("AFTERCARE_HTTP_HEADER_TIMEOUT", &self.http_header_timeout)?,
            request_timeout: secs("AFTERCARE_HTTP_REQUEST_TIMEOUT", &self.http_request_timeout)?,
        })
    }

    /// The heartbeat timeout, checked: 1 s to 10 min.
    pub fn heartbeat_timeout(&self) -> anyhow::Result<chrono::Duration> {
        let d = crate::sequence::duration::parse(&self.heartbeat_timeout)
            .map_err(|e| anyhow::anyhow!("AFTERCARE_HEARTBEAT_TIMEOUT: {e}"))?;
        if d < chrono::Duration::seconds(1) || d > chrono::Duration::minutes(10) {
            anyhow::bail!(
                "AFTERCARE_HEARTBEAT_TIMEOUT: {:?} is outside 1s to 10m",
                self.heartbeat_timeout
            );
        }
        Ok(d)
    }

    /// The SMTP transport's settings, checked; `None` without
    /// `AFTERCARE_SMTP_URL`.
    pub fn smtp(&self) -> anyhow::Result<Option<crate::send::smtp::Settings>> {
        let Some(url) = &self.smtp_url else {
            return Ok(None);
        };
        let endpoint = crate::send::smtp::Endpoint::parse(url)
            .map_err(|e| anyhow::anyhow!("AFTERCARE_SMTP_URL: {e}"))?;
        let timeout = crate::sequence::duration::parse(&self.smtp_timeout)
            .map_err(|e| anyhow::anyhow!("AFTERCARE_SMTP_TIMEOUT: {e}"))?;
        if timeout < chrono::Duration::seconds(1) || timeout > chrono::Duration::minutes(10) {
            anyhow::bail!(
                "AFTERCARE_SMTP_TIMEOUT: {:?} is outside 1s to 10m",
                self.smtp_timeout
            );
        }
        if !(1..=1000).contains(&self.smtp_pool) {
            anyhow::bail!(
                "AFTERCARE_SMTP_POOL: {} is outside 1 to 1000",
                self.smtp_pool
            );
        }
        let ca = match &self.smtp_ca_file {
            None => None,
            Some(f) => {
                let pem = std::fs::read(f).map_err(|e| {
                    anyhow::anyhow!("AFTERCARE_SMTP_CA_FILE: reading {}: {e}", f.display())
                })?;
                if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
                    anyhow::bail!(
                        "AFTERCARE_SMTP_CA_FILE: {} holds no PEM certificate \
                         (-----BEGIN CERTIFICATE-----)",
                        f.display()
                    );
                }
                Some(pem)
            }
        };
        Ok(Some(crate::send::smtp::Settings {
            endpoint,
            timeout: timeout.to_std()?,
            pool: self.smtp_pool,
            ca,
        }))
    }

    /// The sender's concurrency and bounce address, checked.
    pub fn sending(&self) -> anyhow::Result<(usize, Option<String>)> {
        if !(1..=1000).contains(&self.send_concurrency) {
            anyhow::bail!(
                "AFTERCARE_SEND_CONCURRENCY: {} is outside 1 to 1000",
                self.send_concurrency
            );
        }
        if let Some(a) = &self.bounce_address {
            let mb = crate::send::mailbox(a)
                .map_err(|e| anyhow::anyhow!("AFTERCARE_BOUNCE_ADDRESS: {e}"))?;
            if mb.name.is_some() {
                anyhow::bail!(
                    "AFTERCARE_BOUNCE_ADDRESS: {a:?}: write the address alone, without a name"
                );
            }
        }
        Ok((self.send_concurrency, self.bounce_address.clone()))
    }

    /// The admin token, checked; `None` when the admin API and the
    /// dashboard are off.
    pub fn admin_token(&self) -> anyhow::Result<Option<String>> {
        match &self.admin_token {
            None => Ok(None),
            Some(t) if t.trim().is_empty() => Ok(None),
            Some(t) if t.chars().count() < 16 || t.chars().any(char::is_whitespace) => {
                anyhow::bail!(
                    "AFTERCARE_ADMIN_TOKEN: write 16 characters at least, without spaces \
                     (for example the output of `openssl rand -hex 24`)"
                )
            }
            Some(t) => Ok(Some(t.clone())),
        }
    }

    /// The retention, checked: 30d to 3650d; `None` when unset (everything
    /// is kept).
    pub fn retention(&self) -> anyhow::Result<Option<chrono::Duration>> {
        let Some(text) = self.retention.as_deref() else {
            return Ok(None);
        };
        let d = crate::sequence::duration::parse(text)
            .map_err(|e| anyhow::anyhow!("AFTERCARE_RETENTION: {e}"))?;
        if d < crate::retention::MIN {
            anyhow::bail!(
                "AFTERCARE_RETENTION: {text:?} is shorter than {}: events must be kept longer \
                 than they can be redelivered (a Kafka topic keeps them 7 days by default) \
                 and looked back for (7 days), or duplicates would be applied again",
                crate::retention::MIN_TEXT
            );
        }
        Ok(Some(d))
    }

    /// The attribution window, checked: 1 h to 90 days.
    pub fn attribution_window(&self) -> anyhow::Result<chrono::Duration> {
        let d = crate::sequence::duration::parse(&self.attribution_window)
            .map_err(|e| anyhow::anyhow!("AFTERCARE_ATTRIBUTION_WINDOW: {e}"))?;
        if d < chrono::Duration::hours(1) || d > chrono::Duration::days(90) {
            anyhow::bail!(
                "AFTERCARE_ATTRIBUTION_WINDOW: {:?} is outside 1h to 90d",
                self.attribution_window
            );
        }
        Ok(d)
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
