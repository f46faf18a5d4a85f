//! SendGrid's signed event webhook: a JSON array of events, signed with
//! ECDSA P-256 over the `X-Twilio-Email-Event-Webhook-Timestamp` header
//! followed by the raw body; the base64 DER signature is in
//! `X-Twilio-Email-Event-Webhook-Signature`, the key is the account's
//! verification key (`AFTERCARE_SENDGRID_PUBLIC_KEY`, base64 DER as
//! SendGrid shows it, or PEM).
//!
//! `bounce` with `type` `bounce` is hard, with `type` `blocked` soft;
//! `dropped` because SendGrid already holds the address as bounced is hard,
//! as reported for spam is a complaint; `spamreport` is a complaint. A
//! replayed request carries events already taken (`sg_event_id`), so it
//! changes nothing.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::DateTime;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use serde_json::Value;

use super::{Parsed, Refused, bare_address, json, kind_of, str_at};
use crate::bounce::{Malformed, Notice, Report, bracketed};
use crate::event::BounceKind;

pub const SIGNATURE_HEADER: &str = "x-twilio-email-event-webhook-signature";
pub const TIMESTAMP_HEADER: &str = "x-twilio-email-event-webhook-timestamp";

pub struct Config {
    key: VerifyingKey,
}

impl Config {
    /// The verification key, as base64 DER (SendGrid's settings page) or PEM.
    pub fn from_key(text: &str) -> Result<Config, String> {
        let text = text.trim();
        let key = if text.starts_with("-----BEGIN") {
            VerifyingKey::from_public_key_pem(text).map_err(|e| e.to_string())
        } else {
            let der = BASE64
                .decode(text)
                .map_err(|e| format!("neither PEM nor base64: {e}"))?;
            VerifyingKey::from_public_key_der(&der).map_err(|e| e.to_string())
        }
        .map_err(|e| format!("not an ECDSA P-256 public key: {e}"))?;
        Ok(Config { key })
    }

    /// Whether `signature` (base64 DER) signs `timestamp` + `body`.
    pub fn verify(
        &self,
        timestamp: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
    ) -> Result<(), Refused> {
        let (Some(ts), Some(sig)) = (timestamp, signature) else {
            return Err(Refused::Unauthorized(
                "missing X-Twilio-Email-Event-Webhook-Signature or -Timestamp: turn on \
                 SendGrid's signed event webhook"
                    .into(),
            ));
        };
        let sig = BASE64
            .decode(sig.trim())
            .ok()
            .and_then(|der| Signature::from_der(&der).ok())
            .ok_or_else(|| {
                Refused::Unauthorized(
                    "X-Twilio-Email-Event-Webhook-Signature is not a base64 DER ECDSA signature"
                        .into(),
                )
            })?;
        let mut signed = Vec::with_capacity(ts.len() + body.len());
        signed.extend_from_slice(ts.as_bytes());
        signed.extend_from_slice(body);
        self.key.verify(&signed, &sig).map_err(|_| {
            Refused::Unauthorized(
                "the SendGrid signature does not verify with AFTERCARE_SENDGRID_PUBLIC_KEY".into(),
            )
        })
    }
}

/// Reads the events of a (verified) body.
pub fn parse(body: &[u8]) -> Result<Parsed, Refused> {
    let v = json(body)?;
    let Value::Array(events) = v else {
        return Err(Malformed(format!(
            "the body is {}, not SendGrid's array of events",
            kind_of(&v)
        ))
        .into());
    };
    let mut parsed = Parsed::default();
    for (i, e) in events.iter().enumerate() {
        match event(e, &format!("[{i}]")) {
            Ok(Some(n)) => parsed.notices.push(n),
            Ok(None) => parsed.ignored += 1,
            Err(m) => parsed.bad.push((m, e.to_string())),
        }
    }
    Ok(parsed)
}

fn event(e: &Value, path: &str) -> Result<Option<Notice>, Malformed> {
    let kind = str_at(e, path, "event")?;
    let field = |k: &str| e.get(k).and_then(Value::as_str);
    let report = match kind {
        "bounce" => match field("type") {
            Some("blocked") => Report::Bounce(BounceKind::Soft),
            // `bounce`, and events from before SendGrid had `type`.
            _ => Report::Bounce(BounceKind::Hard),
        },
        "spamreport" => Report::Complaint,
        "dropped" => {
            let reason = field("reason").unwrap_or("");
            if reason.contains("Bounced Address") {
                Report::Bounce(BounceKind::Hard)
            } else if reason.contains("Spam Reporting Address") {
                Report::Complaint
            } else {
                return Ok(None);
            }
        }
        _ => return Ok(None),
    };
    let address = bare_address(str_at(e, path, "email")?);
    let at = match e.get("timestamp") {
        Some(Value::Number(n)) => n
            .as_i64()
            .and_then(|s| DateTime::from_timestamp(s, 0))
            .ok_or_else(|| {
                Malformed::at(format!("{path}.timestamp"), format!("{n} is not a time"))
            })?,
        Some(other) => {
            return Err(Malformed::at(
                format!("{path}.timestamp"),
                format!("expected Unix seconds, found {}", kind_of(other)),
            ));
        }
        None => return Err(Malformed::at(format!("{path}.timestamp"), "missing")),
    };
    let key = str_at(e, path, "sg_event_id")?.to_string();
    let detail: Vec<&str> = [
        field("status"),
        field("reason"),
        field("bounce_classification"),
    ]
    .into_iter()
    .flatten()
    .collect();
    Ok(Some(Notice {
        source: "sendgrid",
        key,
        address,
        report,
        at,
        message_id: field("smtp-id").and_then(bracketed),
        detail: (!detail.is_empty()).then(|| detail.join(" ")),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bounce::providers::fixture;

    fn headers() -> (String, String) {
        let h: Value = serde_json::from_str(&fixture("sendgrid-events.headers.json")).unwrap();
        (
            h["X-Twilio-Email-Event-Webhook-Timestamp"]
                .as_str()
                .unwrap()
                .into(),
            h["X-Twilio-Email-Event-Webhook-Signature"]
                .as_str()
                .unwrap()
                .into(),
        )
    }

    #[test]
    fn signed_events_are_read() {
        let config = Config::from_key(&fixture("sendgrid-public-key.txt")).unwrap();
        let body = fixture("sendgrid-events.json");
        let (ts, sig) = headers();
        config
            .verify(Some(&ts), Some(&sig), body.as_bytes())
            .unwrap();
        let p = parse(body.as_bytes()).unwrap();
        let got: Vec<(&str, Report)> = p
            .notices
            .iter()
            .map(|n| (n.address.as_str(), n.report))
            .collect();
        assert_eq!(
            got,
            [
                ("anna@example.com", Report::Bounce(BounceKind::Hard)),
                ("carol@example.org", Report::Bounce(BounceKind::Soft)),
                ("bob@example.com", Report::Complaint),
            ]
        );
        assert_eq!(p.ignored, 2, "delivered and deferred are not bounces");
        assert_eq!(
            p.notices[0].message_id.as_deref(),
            Some("<0123456789abcdef0123456789abcdef@shop.example>")
        );
        assert_eq!(p.notices[0].at.to_rfc3339(), "2026-11-26T09:15:03+00:00");
    }

    #[test]
    fn a_wrong_signature_is_refused() {
        let config = Config::from_key(&fixture("sendgrid-public-key.txt")).unwrap();
        let body = fixture("sendgrid-events.json");
        let (ts, sig) = headers();
        let changed = body.replace("anna@", "else@");
        assert!(
            config
                .verify(Some(&ts), Some(&sig), changed.as_bytes())
                .is_err()
        );
        assert!(
            config
                .verify(Some("1795684505"), Some(&sig), body.as_bytes())
                .is_err()
        );
        assert!(config.verify(None, Some(&sig), body.as_bytes()).is_err());
        assert!(
            config
                .verify(Some(&ts), Some("bm90IGEgc2ln"), body.as_bytes())
                .is_err()
        );
        assert!(Config::from_key("not a key").is_err());
    }

    #[test]
    fn a_bad_event_is_named_and_the_others_taken() {
        let body = br#"[{"event":"bounce","email":"a@example.com","timestamp":"yesterday","sg_event_id":"x"},
            {"event":"spamreport","email":"b@example.com","timestamp":1764148520,"sg_event_id":"y"}]"#;
        let p = parse(body).unwrap();
        assert_eq!(p.notices.len(), 1);
        assert_eq!(
            p.bad[0].0.0,
            "[0].timestamp: expected Unix seconds, found a string"
        );
        assert_eq!(
            parse(b"{}").unwrap_err(),
            Refused::Malformed("the body is an object, not SendGrid's array of events".into())
        );
    }
}
