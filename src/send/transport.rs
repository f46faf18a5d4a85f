//! Where finished messages go. A transport says whether a failure is worth
//! retrying (`Transient`), final (`Permanent`), final and the address bad
//! (`Refused`), or whether the server could not be reached (`Unavailable`).

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

pub use crate::engine::outbox::TransportError as Error;
use crate::sequence::model::Category;

/// One message on its way out.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub message_id: String,
    /// The envelope sender (SMTP `MAIL FROM`, the future `Return-Path`):
    /// where bounces go, naming this message ([`super::return_path`]).
    pub from: String,
    pub to: String,
    /// The whole RFC 5322 message (empty when the worker only checks).
    pub bytes: Vec<u8>,
    /// What it is, for logs and for `simulate`'s and `demo`'s listings.
    pub about: About,
}

#[derive(Debug, Clone, PartialEq)]
pub struct About {
    pub date: DateTime<Utc>,
    pub to: String,
    pub idempotency_key: String,
    pub customer_id: String,
    pub sequence: String,
    pub step: String,
    pub template: String,
    pub category: Category,
    pub locale: String,
    pub subject: String,
}

pub trait Transport: Send + Sync + 'static {
    /// Delivers one message; the `Ok` text is the reply to log.
    fn deliver(&self, m: &Outgoing) -> impl Future<Output = Result<String, Error>> + Send;

    /// The longest one delivery may take; the worker gives up (a transient
    /// failure) after it, and holds a row being sent twice as long before
    /// another worker may take it over.
    fn deadline(&self) -> std::time::Duration {
        std::time::Duration::from_secs(150)
    }

    /// Whether the transport can take mail now: after it was found
    /// unavailable, the sender asks this before claiming more rows.
    fn probe(&self) -> impl Future<Output = bool> + Send {
        async { true }
    }
}

/// The transport `run` and `send-test` use: SMTP when `AFTERCARE_SMTP_URL`
/// is set, else `.eml` files.
#[derive(Debug, Clone)]
pub enum Outbound {
    Smtp(super::smtp::Smtp),
    Eml(EmlDir),
}

impl Transport for Outbound {
    fn deadline(&self) -> std::time::Duration {
        match self {
            Outbound::Smtp(t) => t.deadline(),
            Outbound::Eml(t) => t.deadline(),
        }
    }

    async fn probe(&self) -> bool {
        match self {
            Outbound::Smtp(t) => t.probe().await,
            Outbound::Eml(t) => t.probe().await,
        }
    }

    async fn deliver(&self, m: &Outgoing) -> Result<String, Error> {
        match self {
            Outbound::Smtp(t) => t.deliver(m).await,
            Outbound::Eml(t) => t.deliver(m).await,
        }
    }
}

/// Writes `<dir>/<message-id>.eml`; a re-send overwrites the same file.
#[derive(Debug, Clone)]
pub struct EmlDir {
    pub dir: PathBuf,
}

impl Transport for EmlDir {
    /// Writing a file: seconds at worst.
    fn deadline(&self) -> std::time::Duration {
        std::time::Duration::from_secs(15)
    }

    async fn deliver(&self, m: &Outgoing) -> Result<String, Error> {
        let dir = self.dir.clone();
        let id = m.message_id.clone();
        let bytes = m.bytes.clone();
        let written = tokio::task::spawn_blocking(move || super::eml::write(&dir, &id, &bytes))
            .await
            .map_err(|e| Error::Transient(e.to_string()))?
            .map_err(|e| Error::Transient(format!("writing the .eml file: {e}")))?;
        Ok(format!("written to {}", written.display()))
    }
}

/// Keeps what went through it (without the bytes) and passes each message
/// on to `inner`, if any: `simulate` lists the emails, `demo` lists them and
/// writes them out.
#[derive(Debug)]
pub struct Recorder<T> {
    inner: Arc<Option<T>>,
    sent: Arc<Mutex<Vec<About>>>,
}

impl<T> Clone for Recorder<T> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            sent: self.sent.clone(),
        }
    }
}

impl<T> Recorder<T> {
    pub fn new(inner: Option<T>) -> Self {
        Self {
            inner: Arc::new(inner),
            sent: Arc::default(),
        }
    }

    /// Everything recorded so far, emptied.
    pub fn take(&self) -> Vec<About> {
        std::mem::take(&mut *self.sent.lock().expect("not poisoned"))
    }
}

impl<T: Transport> Transport for Recorder<T> {
    fn deadline(&self) -> std::time::Duration {
        match self.inner.as_ref() {
            Some(t) => t.deadline(),
            None => std::time::Duration::from_secs(15),
        }
    }

    async fn deliver(&self, m: &Outgoing) -> Result<String, Error> {
        let reply = match self.inner.as_ref() {
            Some(t) => t.deliver(m).await?,
            None => "recorded".to_string(),
        };
        self.sent
            .lock()
            .expect("not poisoned")
            .push(m.about.clone());
        Ok(reply)
    }
}
