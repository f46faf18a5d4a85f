//! Turning an email the engine decided on into a message: Message-ID from the
//! idempotency key, the trace headers, multipart text + HTML. Transports (the
//! `.eml` folder here; SMTP later) take the finished bytes.

pub mod dkim;
pub mod eml;
pub mod links;
pub mod smtp;
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

/// The envelope sender for a message: `bounces` with `+<token>` added to its
/// local part, the token being the Message-ID's own (`hello+3f…9a@shop.example`
/// for `<3f…9a@shop.example>`). A bounce comes back to that address, and
/// the token names the message it is about (VERP, with one address for
/// every recipient's bounces). A local part too long for the token (RFC
/// 5321 allows 64 octets) gets none.
pub fn return_path(bounces: &str, message_id: &str) -> String {
    let token = message_id
        .trim_start_matches('<')
        .split('@')
        .next()
        .unwrap_or_default();
    match bounces.rsplit_once('@') {
        Some((local, domain)) if local.len() + 1 + token.len() <= 64 && !token.is_empty() => {
            format!("{local}+{token}@{domain}")
        }
        _ => bounces.to_string(),
    }
}

/// The message token a return path carries, if it is one of ours.
pub fn return_path_token(address: &str) -> Option<&str> {
    let (local, _) = address.rsplit_once('@')?;
    let (_, token) = local.rsplit_once('+')?;
    (token.len() == 32 && token.bytes().all(|b| b.is_ascii_hexdigit())).then_some(token)
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

/// A test send (`aftercare send-test`): the template as it would go, to
/// `to`, with a Message-ID of its own (never an outbox row's) and the header
/// `X-Aftercare-Test: true`, DKIM-signed as a real one would be. Nothing is stored: it counts toward no cap,
/// and carries no tracking.
pub fn test_message(
    policies: &Policies,
    template: &str,
    to: &str,
    bounces: Option<&str>,
    dkim: Option<&dkim::Signer>,
    now: DateTime<Utc>,
    content: &Rendered,
) -> Result<transport::Outgoing, BuildError> {
    let key = format!(
        "send-test/{template}/{}",
        now.timestamp_nanos_opt().unwrap_or_default()
    );
    let env = Envelope {
        to,
        idempotency_key: &key,
        sequence: "send-test",
        template,
        date: now,
        // A test send is no subscription: no List-Unsubscribe.
        list_unsubscribe: None,
    };
    let mut msg = build_message(policies, &env, content)?;
    msg.headers_mut().insert_raw(HeaderValue::new(
        HeaderName::new_from_ascii_str("X-Aftercare-Test"),
        "true".to_string(),
    ));
    let (_, sender) = policies.sender.name_and_email();
    let id = message_id(&key, &sender);
    Ok(transport::Outgoing {
        from: return_path(bounces.unwrap_or(&sender), &id),
        message_id: id,
        to: to.to_string(),
        bytes: dkim::finish(dkim, msg, now),
        about: transport::About {
            date: now,
            to: to.to_string(),
            idempotency_key: key,
            customer_id: String::new(),
            sequence: "send-test".into(),
            step: template.to_string(),
            template: template.to_string(),
            category: crate::sequence::model::Category::Transactional,
            locale: content.locale.clone(),
            subject: content.subject.clone(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_return_path_names_its_message() {
        let id = message_id("fulfilment/c/o#order-confirmation", "hello@shop.example");
        let rp = return_path("bounces@shop.example", &id);
        let token = id.trim_start_matches('<').split('@').next().unwrap();
        assert_eq!(rp, format!("bounces+{token}@shop.example"));
        assert_eq!(return_path_token(&rp), Some(token));
        assert_eq!(return_path_token("bounces@shop.example"), None);
        // No room for the token: the address as it is.
        let long = format!("{}@shop.example", "b".repeat(40));
        assert_eq!(return_path(&long, &id), long);
    }

    /// The headers of a built message, by name.
    fn header_names(bytes: &[u8]) -> Vec<String> {
        let m = mail_parser::MessageParser::default().parse(bytes).unwrap();
        let mut names: Vec<String> = m
            .headers()
            .iter()
            .map(|h| h.name().to_ascii_lowercase())
            .collect();
        names.sort();
        names
    }

    proptest! {
        /// Whatever a subject rendered from customer data holds (line breaks,
        /// header-like text, encoded-word look-alikes), the message has
        /// exactly its own headers: none can be injected.
        #[test]
        fn no_subject_injects_a_header(subject in "(\\PC|[\r\n\t\0]|Bcc: x@evil.example|=\\?utf-8\\?){0,40}") {
            let policies = crate::sequence::model::Policies::default();
            let env = Envelope {
                to: "anna@example.com",
                idempotency_key: "k",
                sequence: "fulfilment",
                template: "order-confirmation",
                date: "2026-11-26T10:00:00Z".parse().unwrap(),
                list_unsubscribe: None,
            };
            let content = Rendered {
                locale: "hu".into(),
                subject: subject.clone(),
                preheader: None,
                html: "<p>x</p>".into(),
                text: "x".into(),
            };
            let bytes = build_message(&policies, &env, &content).unwrap().formatted();
            let mut expected = vec![
                "content-language", "content-type", "date", "from", "message-id",
                "mime-version", "subject", "to", "x-aftercare-sequence", "x-aftercare-template",
            ];
            expected.sort();
            prop_assert_eq!(header_names(&bytes), expected);
        }
    }
}
