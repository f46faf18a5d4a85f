//! Where finished messages go. A transport says whether a failure is worth
//! retrying (`Transient`) or final (`Permanent`); SMTP plugs in here.

use std::future::Future;
use std::path::PathBuf;

pub struct Outgoing {
    pub message_id: String,
    pub from: String,
    pub to: String,
    /// The whole RFC 5322 message.
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    #[error("transient: {0}")]
    Transient(String),
    #[error("permanent: {0}")]
    Permanent(String),
}

pub trait Transport: Send + Sync + 'static {
    /// Delivers one message; the `Ok` text is the reply to log.
    fn deliver(&self, m: &Outgoing) -> impl Future<Output = Result<String, Error>> + Send;
}

/// Writes `<dir>/<message-id>.eml`; a re-send overwrites the same file.
#[derive(Debug, Clone)]
pub struct EmlDir {
    pub dir: PathBuf,
}

impl Transport for EmlDir {
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
