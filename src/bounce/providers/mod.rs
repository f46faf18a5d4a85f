//! The bounce and complaint webhooks of the relays shops send through, at
//! `POST /v1/providers/<name>`: each one's payload read into [`Notice`]s and
//! each one's own proof that the relay sent it checked first.
//!
//! | name | proof | what becomes an event |
//! |---|---|---|
//! | `ses` | SNS's RSA signature, verified with the pinned signing certificates, and the topic ARN | `Bounce` (`Permanent` hard, `Transient`/`Undetermined` soft), `Complaint` |
//! | `sendgrid` | ECDSA P-256 signature of timestamp + body with the account's public key | `bounce` (`type` `bounce` hard, `blocked` soft), `dropped` for a bounced or reported address, `spamreport` |
//! | `postmark` | none of its own: HTTP basic auth or a secret in the URL | `Bounce` (by `Type`), `SpamComplaint` |
//! | `mailgun` | HMAC-SHA256 of timestamp + token with the signing key, recent timestamp | `failed` (`severity` `permanent` hard, `temporary` soft), `complained` |
//!
//! Everything else a relay reports (deliveries, opens, delays) is counted
//! and left alone. Pure, but for [`Providers::load`], which reads the
//! configured key and certificate files once at start.

pub mod mailgun;
pub mod postmark;
pub mod sendgrid;
pub mod ses;

use anyhow::Context;

use super::{Malformed, Notice};
use crate::config::ProviderArgs;

/// The providers `/v1/providers/<name>` knows, by name.
pub const NAMES: &[&str] = &["ses", "sendgrid", "postmark", "mailgun"];

/// What one webhook call carried.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Parsed {
    pub notices: Vec<Notice>,
    /// Items that are no bounce or complaint (deliveries, opens, delays).
    pub ignored: usize,
    /// Items that could not be read: where and what, and the item as
    /// received (for its dead letter). The others are still taken.
    pub bad: Vec<(Malformed, String)>,
    /// What the operator must do (an SNS subscription to confirm).
    pub note: Option<String>,
}

/// Why a webhook call is refused as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// No proof, or a wrong one: 401.
    #[error("{0}")]
    Unauthorized(String),
    /// Proven, but not for us (another SNS topic), or a certificate URL
    /// that is not SNS's: 403.
    #[error("{0}")]
    Forbidden(String),
    /// The body cannot be read at all: 400.
    #[error("{0}")]
    Malformed(String),
}

impl From<Malformed> for Refused {
    fn from(m: Malformed) -> Refused {
        Refused::Malformed(m.0)
    }
}

/// Each provider's configuration, loaded; `None` when not configured.
#[derive(Default)]
pub struct Providers {
    pub ses: Option<ses::Config>,
    pub sendgrid: Option<sendgrid::Config>,
    pub postmark: Option<postmark::Config>,
    pub mailgun: Option<mailgun::Config>,
}

impl Providers {
    /// Reads the configured keys and certificates; a provider whose settings
    /// are only half there is an error that names what is missing.
    pub fn load(args: &ProviderArgs) -> anyhow::Result<Providers> {
        let ses = match (
            args.ses_topic_arns.is_empty(),
            args.ses_signing_certs.is_empty(),
        ) {
            (true, true) => None,
            (false, false) => {
                let mut certs = Vec::new();
                for path in &args.ses_signing_certs {
                    let pem = std::fs::read_to_string(path).with_context(|| {
                        format!("AFTERCARE_SES_SIGNING_CERTS: reading {}", path.display())
                    })?;
                    let cert = ses::SigningCert::from_pem(&pem).map_err(|e| {
                        anyhow::anyhow!("AFTERCARE_SES_SIGNING_CERTS: {}: {e}", path.display())
                    })?;
                    certs.push(cert);
                }
                Some(ses::Config {
                    topic_arns: args.ses_topic_arns.clone(),
                    certs,
                })
            }
            (true, false) => anyhow::bail!(
                "AFTERCARE_SES_SIGNING_CERTS is set but AFTERCARE_SES_TOPIC_ARNS is not: \
                 name the SNS topic(s) whose notifications aftercare takes"
            ),
            (false, true) => anyhow::bail!(
                "AFTERCARE_SES_TOPIC_ARNS is set but AFTERCARE_SES_SIGNING_CERTS is not: \
                 give the PEM file(s) of the SNS signing certificate (see the README)"
            ),
        };
        let sendgrid = match &args.sendgrid_public_key {
            None => None,
            Some(key) => Some(
                sendgrid::Config::from_key(key)
                    .map_err(|e| anyhow::anyhow!("AFTERCARE_SENDGRID_PUBLIC_KEY: {e}"))?,
            ),
        };
        let postmark = match &args.postmark_secret {
            None => None,
            Some(s) if s.len() < 16 => anyhow::bail!(
                "AFTERCARE_POSTMARK_SECRET: at least 16 characters (it is all that proves a \
                 Postmark webhook)"
            ),
            Some(s) => Some(postmark::Config { secret: s.clone() }),
        };
        let mailgun = match &args.mailgun_signing_key {
            None => None,
            Some(key) => {
                let max_age = crate::sequence::duration::parse(&args.mailgun_max_age)
                    .map_err(|e| anyhow::anyhow!("AFTERCARE_MAILGUN_MAX_AGE: {e}"))?;
                Some(mailgun::Config {
                    signing_key: key.clone(),
                    max_age,
                    seen: Default::default(),
                })
            }
        };
        Ok(Providers {
            ses,
            sendgrid,
            postmark,
            mailgun,
        })
    }

    /// How to configure provider `name`, for the answer to a call to one
    /// that is not configured.
    pub fn how_to_configure(name: &str) -> Option<&'static str> {
        Some(match name {
            "ses" => {
                "set AFTERCARE_SES_TOPIC_ARNS (the SNS topic ARNs of your SES bounce and \
                 complaint notifications) and AFTERCARE_SES_SIGNING_CERTS (PEM files of the SNS \
                 signing certificate); see the README, \"Bounce and complaint webhooks\""
            }
            "sendgrid" => {
                "set AFTERCARE_SENDGRID_PUBLIC_KEY to the verification key of SendGrid's signed \
                 event webhook; see the README, \"Bounce and complaint webhooks\""
            }
            "postmark" => {
                "set AFTERCARE_POSTMARK_SECRET and give Postmark the webhook URL with it as the \
                 basic auth password or as ?secret=…; see the README, \"Bounce and complaint \
                 webhooks\""
            }
            "mailgun" => {
                "set AFTERCARE_MAILGUN_SIGNING_KEY to your Mailgun webhook signing key; see the \
                 README, \"Bounce and complaint webhooks\""
            }
            _ => return None,
        })
    }
}

/// The string value of `v[key]`, or where and what is wrong.
pub(crate) fn str_at<'a>(
    v: &'a serde_json::Value,
    path: &str,
    key: &str,
) -> Result<&'a str, Malformed> {
    match v.get(key) {
        Some(serde_json::Value::String(s)) => Ok(s),
        Some(other) => Err(Malformed::at(
            format!("{path}.{key}"),
            format!("expected a string, found {}", kind_of(other)),
        )),
        None => Err(Malformed::at(format!("{path}.{key}"), "missing")),
    }
}

/// The JSON type of `v`, for messages.
pub(crate) fn kind_of(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// `"Anna" <anna@example.com>` → `anna@example.com`; a bare address as it is.
pub(crate) fn bare_address(s: &str) -> String {
    match (s.rfind('<'), s.rfind('>')) {
        (Some(a), Some(b)) if a < b => s[a + 1..b].trim().to_string(),
        _ => s.trim().to_string(),
    }
}

/// Reads a JSON body, or says where it stops being JSON.
pub(crate) fn json(body: &[u8]) -> Result<serde_json::Value, Malformed> {
    serde_json::from_slice(body).map_err(|e| Malformed(format!("the body is not JSON: {e}")))
}

/// Compares two secrets in time that does not depend on where they differ.
pub(crate) fn same_secret(a: &[u8], b: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    // Equal-length digests, compared without an early exit.
    let (x, y) = (Sha256::digest(a), Sha256::digest(b));
    x.iter()
        .zip(y.iter())
        .fold(0u8, |acc, (p, q)| acc | (p ^ q))
        == 0
}

/// A sample payload of `tests/fixtures/providers/`, for the parsers' tests.
#[cfg(test)]
pub(crate) fn fixture(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/providers/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}
