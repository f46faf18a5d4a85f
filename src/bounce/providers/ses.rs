//! Amazon SES bounce and complaint notifications, delivered by SNS to an
//! HTTPS subscription.
//!
//! SNS signs each message with RSA (`SignatureVersion` 1: SHA-1, 2:
//! SHA-256) over a canonical string of its fields, with the certificate at
//! its `SigningCertURL`. This service fetches nothing: the operator pins
//! the certificate(s) (`AFTERCARE_SES_SIGNING_CERTS`), and a message signed
//! with another is refused with the URL of the certificate it names, to be
//! checked and added. A `SigningCertURL` that is not on an SNS host
//! (`https://sns.<region>.amazonaws.com[.cn]/….pem`) is refused outright.
//! Anyone can make an SNS topic, so a message from a topic not in
//! `AFTERCARE_SES_TOPIC_ARNS` is refused too.
//!
//! A `SubscriptionConfirmation` is checked the same way, and its
//! `SubscribeURL` is handed to the operator (logged), never fetched.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use rsa::RsaPublicKey;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::DecodePublicKey;
use rsa::signature::Verifier;
use serde_json::Value;
use x509_cert::Certificate;
use x509_cert::der::{DecodePem, Encode};

use super::{Parsed, Refused, bare_address, json, kind_of, str_at};
use crate::bounce::{Malformed, Notice, Report, bracketed};
use crate::event::BounceKind;

pub struct Config {
    /// The SNS topics whose notifications are taken.
    pub topic_arns: Vec<String>,
    pub certs: Vec<SigningCert>,
}

/// A pinned SNS signing certificate's key.
#[derive(Clone)]
pub struct SigningCert {
    key: RsaPublicKey,
}

impl SigningCert {
    /// The RSA key of a PEM certificate.
    pub fn from_pem(pem: &str) -> Result<SigningCert, String> {
        let cert = Certificate::from_pem(pem.as_bytes())
            .map_err(|e| format!("not a PEM X.509 certificate: {e}"))?;
        let spki = cert
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .map_err(|e| format!("unreadable public key: {e}"))?;
        let key = RsaPublicKey::from_public_key_der(&spki)
            .map_err(|e| format!("the certificate's key is not an RSA key: {e}"))?;
        Ok(SigningCert { key })
    }

    fn verifies(&self, version: &str, text: &[u8], sig: &Signature) -> bool {
        match version {
            "1" => VerifyingKey::<sha1::Sha1>::new(self.key.clone())
                .verify(text, sig)
                .is_ok(),
            _ => VerifyingKey::<rsa::sha2::Sha256>::new(self.key.clone())
                .verify(text, sig)
                .is_ok(),
        }
    }
}

/// Checks an SNS message and reads the SES notifications it carries.
pub fn parse(config: &Config, body: &[u8]) -> Result<Parsed, Refused> {
    let msg = json(body)?;
    if !msg.is_object() {
        return Err(Malformed(format!(
            "the body is {}, not an SNS message (a JSON object)",
            kind_of(&msg)
        ))
        .into());
    }
    let field = |k: &str| {
        str_at(&msg, "", k).map_err(|m| Malformed(m.0.trim_start_matches('.').to_string()))
    };
    let kind = field("Type")?;
    let text = canonical(&msg, kind)?;
    let cert_url = field("SigningCertURL")?;
    if !is_sns_cert_url(cert_url) {
        return Err(Refused::Forbidden(format!(
            "SigningCertURL {cert_url:?} is not an SNS certificate \
             (https://sns.<region>.amazonaws.com/….pem)"
        )));
    }
    let version = field("SignatureVersion")?;
    if version != "1" && version != "2" {
        return Err(Malformed::at("SignatureVersion", format!("{version:?} is not 1 or 2")).into());
    }
    let sig = BASE64
        .decode(field("Signature")?)
        .ok()
        .and_then(|b| Signature::try_from(b.as_slice()).ok())
        .ok_or_else(|| Refused::Unauthorized("Signature: not base64 RSA signature".into()))?;
    if !config
        .certs
        .iter()
        .any(|c| c.verifies(version, text.as_bytes(), &sig))
    {
        return Err(Refused::Unauthorized(format!(
            "the SNS signature does not verify with the pinned signing certificate(s) \
             (AFTERCARE_SES_SIGNING_CERTS); the message names {cert_url}: if SNS has a new \
             certificate, check it and add it"
        )));
    }
    let topic = field("TopicArn")?;
    if !config.topic_arns.iter().any(|t| t == topic) {
        return Err(Refused::Forbidden(format!(
            "TopicArn {topic} is not in AFTERCARE_SES_TOPIC_ARNS"
        )));
    }
    match kind {
        "Notification" => {
            let message = field("Message")?;
            let ses: Value = serde_json::from_str(message)
                .map_err(|e| Malformed::at("Message", format!("not an SES notification: {e}")))?;
            notification(&ses, field("MessageId")?)
        }
        "SubscriptionConfirmation" => Ok(Parsed {
            note: Some(format!(
                "SNS asks to confirm the subscription of this endpoint to {topic}: open \
                 this SubscribeURL once to confirm it: {}",
                field("SubscribeURL")?
            )),
            ..Parsed::default()
        }),
        _ => Ok(Parsed {
            note: Some(format!(
                "SNS says this endpoint is unsubscribed from {topic}"
            )),
            ..Parsed::default()
        }),
    }
}

/// The string SNS signs: the message's fields, by name, each `Name\nvalue\n`.
pub fn canonical(msg: &Value, kind: &str) -> Result<String, Malformed> {
    let names: &[&str] = match kind {
        "Notification" => &[
            "Message",
            "MessageId",
            "Subject",
            "Timestamp",
            "TopicArn",
            "Type",
        ],
        "SubscriptionConfirmation" | "UnsubscribeConfirmation" => &[
            "Message",
            "MessageId",
            "SubscribeURL",
            "Timestamp",
            "Token",
            "TopicArn",
            "Type",
        ],
        other => {
            return Err(Malformed::at(
                "Type",
                format!(
                    "{other:?} is not Notification, SubscriptionConfirmation or \
                     UnsubscribeConfirmation"
                ),
            ));
        }
    };
    let mut text = String::new();
    for name in names {
        match msg.get(*name) {
            Some(Value::String(v)) => {
                text.push_str(name);
                text.push('\n');
                text.push_str(v);
                text.push('\n');
            }
            // Only a notification's Subject is optional.
            None | Some(Value::Null) if *name == "Subject" => {}
            Some(other) => {
                return Err(Malformed::at(
                    name,
                    format!("expected a string, found {}", kind_of(other)),
                ));
            }
            None => return Err(Malformed::at(name, "missing")),
        }
    }
    Ok(text)
}

/// `https://sns.<region>.amazonaws.com[.cn]/<path>.pem`, nothing else.
pub fn is_sns_cert_url(s: &str) -> bool {
    let Ok(url) = url::Url::parse(s) else {
        return false;
    };
    let Some(host) = url.host_str() else {
        return false;
    };
    let region = host
        .strip_prefix("sns.")
        .and_then(|h| {
            h.strip_suffix(".amazonaws.com")
                .or_else(|| h.strip_suffix(".amazonaws.com.cn"))
        })
        .unwrap_or("");
    url.scheme() == "https"
        && url.port().is_none()
        && url.username().is_empty()
        && url.password().is_none()
        && region.len() >= 3
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && url.path().ends_with(".pem")
        && url.query().is_none()
}

/// An SES notification (`notificationType`, or `eventType` for event
/// publishing): a notice per bounced or complaining recipient.
pub fn notification(ses: &Value, sns_id: &str) -> Result<Parsed, Refused> {
    let kind = ses
        .get("notificationType")
        .or_else(|| ses.get("eventType"))
        .and_then(Value::as_str)
        .ok_or_else(|| Malformed::at("Message.notificationType", "missing"))?;
    let message_id = ses
        .pointer("/mail/commonHeaders/messageId")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| header(ses, "Message-ID"))
        .and_then(|m| bracketed(&m));
    let (section, list, report_of): (&str, &str, fn(&Value, &Value) -> Report) = match kind {
        "Bounce" => ("bounce", "bouncedRecipients", |b, _| {
            match b.get("bounceType").and_then(Value::as_str) {
                Some("Permanent") => Report::Bounce(BounceKind::Hard),
                // Transient and Undetermined: a failure that may pass.
                _ => Report::Bounce(BounceKind::Soft),
            }
        }),
        "Complaint" => ("complaint", "complainedRecipients", |_, _| {
            Report::Complaint
        }),
        _ => {
            return Ok(Parsed {
                ignored: 1,
                ..Parsed::default()
            });
        }
    };
    let path = format!("Message.{section}");
    let s = ses
        .get(section)
        .ok_or_else(|| Malformed::at(&path, "missing"))?;
    let at = str_at(s, &path, "timestamp")?;
    let at: DateTime<Utc> = at
        .parse()
        .map_err(|e| Malformed::at(format!("{path}.timestamp"), format!("{at:?}: {e}")))?;
    let key = s
        .get("feedbackId")
        .and_then(Value::as_str)
        .unwrap_or(sns_id)
        .to_string();
    let recipients = s
        .get(list)
        .and_then(Value::as_array)
        .ok_or_else(|| Malformed::at(format!("{path}.{list}"), "missing (an array)"))?;
    let mut parsed = Parsed::default();
    for (i, r) in recipients.iter().enumerate() {
        let rpath = format!("{path}.{list}[{i}]");
        let address = match str_at(r, &rpath, "emailAddress") {
            Ok(a) => bare_address(a),
            Err(m) => {
                parsed.bad.push((m, r.to_string()));
                continue;
            }
        };
        let report = report_of(s, r);
        let detail = match report {
            Report::Complaint => s
                .get("complaintFeedbackType")
                .and_then(Value::as_str)
                .map(|t| format!("complaint feedback type {t}")),
            Report::Bounce(_) => {
                let parts: Vec<&str> = [
                    s.get("bounceType").and_then(Value::as_str),
                    s.get("bounceSubType").and_then(Value::as_str),
                    r.get("status").and_then(Value::as_str),
                    r.get("diagnosticCode").and_then(Value::as_str),
                ]
                .into_iter()
                .flatten()
                .collect();
                (!parts.is_empty()).then(|| parts.join(" "))
            }
        };
        parsed.notices.push(Notice {
            source: "ses",
            key: key.clone(),
            address,
            report,
            at,
            message_id: message_id.clone(),
            detail,
        });
    }
    Ok(parsed)
}

/// The value of the original message's header `name`, when SES includes
/// the headers.
fn header(ses: &Value, name: &str) -> Option<String> {
    ses.pointer("/mail/headers")?
        .as_array()?
        .iter()
        .find(|h| {
            h.get("name")
                .and_then(Value::as_str)
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        })?
        .get("value")?
        .as_str()
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bounce::providers::fixture;

    fn config() -> Config {
        Config {
            topic_arns: vec!["arn:aws:sns:eu-west-1:123456789012:ses-bounces".into()],
            certs: vec![SigningCert::from_pem(&fixture("sns-signing-cert.pem")).unwrap()],
        }
    }

    #[test]
    fn a_signed_bounce_is_read() {
        let p = parse(&config(), fixture("ses-bounce.json").as_bytes()).unwrap();
        assert!(p.bad.is_empty(), "{:?}", p.bad);
        assert_eq!(p.notices.len(), 1);
        let n = &p.notices[0];
        assert_eq!(n.address, "anna@example.com");
        assert_eq!(n.report, Report::Bounce(BounceKind::Hard));
        assert_eq!(
            n.key,
            "0102017f9866e0f4-c3c8ab0f-6b17-4a6a-b85b-7e07a3a8a3a2-000000"
        );
        assert_eq!(
            n.message_id.as_deref(),
            Some("<0123456789abcdef0123456789abcdef@shop.example>")
        );
        assert!(n.detail.as_deref().unwrap().contains("5.1.1"));
        let c = parse(&config(), fixture("ses-complaint.json").as_bytes()).unwrap();
        assert_eq!(c.notices[0].report, Report::Complaint);
        assert_eq!(c.notices[0].address, "bob@example.com");
        // A soft one, signed with SignatureVersion 1 (SHA-1).
        let s = parse(&config(), fixture("ses-soft-bounce.json").as_bytes()).unwrap();
        assert_eq!(s.notices[0].report, Report::Bounce(BounceKind::Soft));
    }

    #[test]
    fn a_changed_message_or_another_topic_is_refused() {
        let body = fixture("ses-bounce.json").replace("anna@example.com", "else@example.com");
        let e = parse(&config(), body.as_bytes()).unwrap_err();
        assert!(matches!(e, Refused::Unauthorized(_)), "{e:?}");
        let mut other = config();
        other.topic_arns = vec!["arn:aws:sns:eu-west-1:123456789012:other".into()];
        let e = parse(&other, fixture("ses-bounce.json").as_bytes()).unwrap_err();
        assert!(matches!(e, Refused::Forbidden(_)), "{e:?}");
        let body = fixture("ses-bounce.json").replace(
            "sns.eu-west-1.amazonaws.com",
            "sns.eu-west-1.amazonaws.com.evil.example",
        );
        let e = parse(&config(), body.as_bytes()).unwrap_err();
        assert!(matches!(e, Refused::Forbidden(_)), "{e:?}");
    }

    #[test]
    fn a_subscription_is_handed_to_the_operator() {
        let p = parse(&config(), fixture("ses-subscription.json").as_bytes()).unwrap();
        assert!(p.notices.is_empty());
        let note = p.note.unwrap();
        assert!(
            note.contains("https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription"),
            "{note}"
        );
    }

    #[test]
    fn certificate_urls_are_sns_only() {
        for good in [
            "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-9c6465fa7f48f5cacd23014631ec1136.pem",
            "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-x.pem",
        ] {
            assert!(is_sns_cert_url(good), "{good}");
        }
        for bad in [
            "http://sns.us-east-1.amazonaws.com/a.pem",
            "https://sns.us-east-1.amazonaws.com.evil.example/a.pem",
            "https://evil.example/sns.us-east-1.amazonaws.com/a.pem",
            "https://sns.us-east-1.amazonaws.com:8443/a.pem",
            "https://user@sns.us-east-1.amazonaws.com/a.pem",
            "https://sns.us-east-1.amazonaws.com/a.txt",
            "https://s3.amazonaws.com/a.pem",
            "not a url",
        ] {
            assert!(!is_sns_cert_url(bad), "{bad}");
        }
    }

    #[test]
    fn malformed_messages_say_where() {
        let e = parse(&config(), b"[1]").unwrap_err();
        assert_eq!(
            e,
            Refused::Malformed("the body is an array, not an SNS message (a JSON object)".into())
        );
        let e = parse(&config(), br#"{"Type":"Notification"}"#).unwrap_err();
        assert_eq!(e, Refused::Malformed("Message: missing".into()));
        let e = notification(
            &serde_json::json!({"notificationType":"Bounce","bounce":{"timestamp":"2026-11-26T09:00:00Z"}}),
            "m",
        )
        .unwrap_err();
        assert_eq!(
            e,
            Refused::Malformed("Message.bounce.bouncedRecipients: missing (an array)".into())
        );
        let p = notification(
            &serde_json::json!({"notificationType":"Delivery","delivery":{}}),
            "m",
        )
        .unwrap();
        assert_eq!(p.ignored, 1);
    }
}
