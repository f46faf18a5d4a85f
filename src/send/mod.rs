//! Turning an email the engine decided on into a message: Message-ID from the
//! idempotency key, the trace headers, multipart text + HTML. Transports (the
//! `.eml` folder here; SMTP later) take the finished bytes.

pub mod eml;
pub mod links;
pub mod token;
pub mod tracking;
pub mod transport;
pub mod worker;

use chrono::{DateTime, Utc};
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use sha2::{Digest, Sha256};

use crate::sequence::model::Policies;
use crate::template::Rendered;

/// The Message-ID for an idempotency key: the same key always gives the same
/// id, so a receiver can drop a duplicate if a crash ever sends one twice.
pub fn message_id(idempotency_key: &str, sender_email: &str) -> String {
    let domain = sender_email
        .rsplit_once('@')
        .map(|(_, d)| d)
        .unwrap_or("aftercare.invalid");
    let h = Sha256::digest(idempotency_key.as_bytes());
    format!("<{}@{domain}>", hex::encode(&h[..16]))
}

/// What one message needs besides its rendered content.
pub struct Envelope<'a> {
    pub to: &'a str,
    pub idempotency_key: &'a str,
    pub sequence: &'a str,
    pub template: &'a str,
    pub date: DateTime<Utc>,
    /// The `List-Unsubscribe` value of a value or promo email (see
    /// [`links::Links::list_unsubscribe`]); it comes with
    /// `List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 8058).
    pub list_unsubscribe: Option<&'a str>,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("invalid address {0:?}: {1}")]
    Address(String, String),
    #[error("cannot build the message: {0}")]
    Message(String),
}

/// An address (with an optional display name) as a header can carry it
/// without SMTPUTF8: a domain with non-ASCII labels is written in its ASCII
/// form (IDNA, `xn--`), as RFC 5890 says; a display name is RFC 2047-encoded
/// by lettre. A local part with non-ASCII characters has no ASCII form at
/// all: such an address works only end to end over SMTPUTF8 (RFC 6531),
/// which aftercare does not use, so it is refused with that reason.
pub fn mailbox(s: &str) -> Result<Mailbox, BuildError> {
    let bad = |why: String| BuildError::Address(s.to_string(), why);
    let mb: Mailbox = s
        .parse()
        .map_err(|e: lettre::address::AddressError| bad(e.to_string()))?;
    if mb.email.user().is_ascii() && mb.email.domain().is_ascii() {
        return Ok(mb);
    }
    if !mb.email.user().is_ascii() {
        return Err(bad(
            "the part before @ has non-ASCII characters: such an address needs SMTPUTF8, \
             which aftercare does not use"
                .into(),
        ));
    }
    let domain = idna::domain_to_ascii(mb.email.domain())
        .map_err(|e| bad(format!("the domain has no ASCII form: {e}")))?;
    let email = lettre::Address::new(mb.email.user(), domain).map_err(|e| bad(e.to_string()))?;
    Ok(Mailbox::new(mb.name, email))
}

/// Builds the RFC 5322 message: multipart/alternative with the text part
/// first, so clients that cannot show HTML show the text.
pub fn build_message(
    policies: &Policies,
    env: &Envelope,
    content: &Rendered,
) -> Result<lettre::Message, BuildError> {
    let parse = mailbox;
    let (_, sender_email) = policies.sender.name_and_email();
    // The subject is one line of at most `MAX_SUBJECT_CHARS` (the renderer
    // sees to that); lettre folds it at spaces and encodes non-ASCII words
    // (RFC 2047), so no line of the header passes RFC 5322's 998.
    let mut b = lettre::Message::builder()
        .from(parse(&policies.sender.from)?)
        .to(parse(env.to)?)
        .subject(content.subject.clone())
        .date(env.date.into())
        .message_id(Some(message_id(env.idempotency_key, &sender_email)));
    if let Some(r) = &policies.sender.reply_to {
        b = b.reply_to(parse(r)?);
    }
    let mut msg = b
        .multipart(
            MultiPart::alternative()
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_PLAIN)
                        .body(content.text.clone()),
                )
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_HTML)
                        .body(content.html.clone()),
                ),
        )
        .map_err(|e| BuildError::Message(e.to_string()))?;
    let headers = msg.headers_mut();
    for (name, value) in [
        ("X-Aftercare-Sequence", env.sequence),
        ("X-Aftercare-Template", env.template),
        ("Content-Language", content.locale.as_str()),
    ] {
        headers.insert_raw(HeaderValue::new(
            HeaderName::new_from_ascii_str(name),
            value.to_string(),
        ));
    }
    if let Some(value) = env.list_unsubscribe {
        for (name, value) in [
            ("List-Unsubscribe", value),
            ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
        ] {
            headers.insert_raw(HeaderValue::new(
                HeaderName::new_from_ascii_str(name),
                value.to_string(),
            ));
        }
    }
    Ok(msg)
}
