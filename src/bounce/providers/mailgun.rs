//! Mailgun's webhooks (JSON): `{"signature": {"timestamp", "token",
//! "signature"}, "event-data": {…}}`. The signature is the hex HMAC-SHA256
//! of timestamp + token with the webhook signing key
//! (`AFTERCARE_MAILGUN_SIGNING_KEY`); a timestamp further than
//! `AFTERCARE_MAILGUN_MAX_AGE` from now is refused, and so is a token seen
//! within that time, so a captured signature cannot be played again.
//!
//! `failed` with `severity` `permanent` is a hard bounce, `temporary` soft;
//! `complained` is a complaint.

use chrono::{DateTime, TimeDelta, Utc};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;

use super::{Parsed, Refused, bare_address, json, kind_of, str_at};
use crate::bounce::{Malformed, Notice, Report, bracketed};
use crate::event::BounceKind;

pub struct Config {
    pub signing_key: String,
    pub max_age: TimeDelta,
    /// The tokens of the signatures taken in the last `max_age`, with their
    /// timestamps: Mailgun signs only timestamp + token, not the event, so
    /// a signature seen once is refused again (Mailgun's advice). Kept per
    /// instance: behind a load balancer a replay to another instance within
    /// `max_age` is not caught.
    pub seen: std::sync::Mutex<std::collections::HashMap<String, DateTime<Utc>>>,
}

/// Checks a Mailgun webhook at `now` and reads its event.
pub fn parse(config: &Config, body: &[u8], now: DateTime<Utc>) -> Result<Parsed, Refused> {
    let v = json(body)?;
    if !v.is_object() {
        return Err(Malformed(format!(
            "the body is {}, not a Mailgun webhook (a JSON object)",
            kind_of(&v)
        ))
        .into());
    }
    let sig = v.get("signature").ok_or_else(|| {
        Refused::Unauthorized(
            "no signature: Mailgun's JSON webhooks carry {\"signature\": {\"timestamp\", \
             \"token\", \"signature\"}}"
                .into(),
        )
    })?;
    let timestamp = str_at(sig, "signature", "timestamp")?;
    let token = str_at(sig, "signature", "token")?;
    let given = str_at(sig, "signature", "signature")?;
    if !signed(&config.signing_key, timestamp, token, given) {
        return Err(Refused::Unauthorized(
            "the Mailgun signature does not verify with AFTERCARE_MAILGUN_SIGNING_KEY".into(),
        ));
    }
    let at = timestamp
        .parse::<i64>()
        .ok()
        .and_then(|s| DateTime::from_timestamp(s, 0))
        .ok_or_else(|| {
            Malformed::at(
                "signature.timestamp",
                format!("{timestamp:?} is not Unix seconds"),
            )
        })?;
    if (now - at).abs() > config.max_age {
        return Err(Refused::Unauthorized(format!(
            "the Mailgun signature's timestamp {} is more than {} s from now \
             (AFTERCARE_MAILGUN_MAX_AGE): a replay, or a clock out of step",
            at.to_rfc3339(),
            config.max_age.num_seconds()
        )));
    }
    {
        let mut seen = config.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.retain(|_, t| (now - *t).abs() <= config.max_age);
        if seen.contains_key(token) {
            return Err(Refused::Unauthorized(
                "this Mailgun signature (its token) was already used: a replay".into(),
            ));
        }
        seen.insert(token.to_string(), at);
    }
    let data = v
        .get("event-data")
        .ok_or_else(|| Malformed::at("event-data", "missing"))?;
    match event(data)? {
        Some(n) => Ok(Parsed {
            notices: vec![n],
            ..Parsed::default()
        }),
        None => Ok(Parsed {
            ignored: 1,
            ..Parsed::default()
        }),
    }
}

/// Whether `signature` is the hex HMAC-SHA256 of timestamp + token.
pub fn signed(key: &str, timestamp: &str, token: &str, signature: &str) -> bool {
    let Ok(sig) = hex::decode(signature) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key.as_bytes()) else {
        return false;
    };
    mac.update(timestamp.as_bytes());
    mac.update(token.as_bytes());
    mac.verify_slice(&sig).is_ok()
}

/// The hex signature Mailgun would send (for tests and tools).
pub fn sign(key: &str, timestamp: &str, token: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes any key");
    mac.update(timestamp.as_bytes());
    mac.update(token.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

fn event(d: &Value) -> Result<Option<Notice>, Malformed> {
    const P: &str = "event-data";
    let report = match str_at(d, P, "event")? {
        "failed" => match str_at(d, P, "severity")? {
            "permanent" => Report::Bounce(BounceKind::Hard),
            "temporary" => Report::Bounce(BounceKind::Soft),
            other => {
                return Err(Malformed::at(
                    "event-data.severity",
                    format!("{other:?} is not permanent or temporary"),
                ));
            }
        },
        "complained" => Report::Complaint,
        _ => return Ok(None),
    };
    let address = bare_address(str_at(d, P, "recipient")?);
    let at = match d.get("timestamp") {
        Some(Value::Number(n)) => n
            .as_f64()
            .filter(|s| s.is_finite())
            .and_then(|s| DateTime::from_timestamp_millis((s * 1000.0) as i64))
            .ok_or_else(|| Malformed::at("event-data.timestamp", format!("{n} is not a time")))?,
        Some(other) => {
            return Err(Malformed::at(
                "event-data.timestamp",
                format!("expected Unix seconds, found {}", kind_of(other)),
            ));
        }
        None => return Err(Malformed::at("event-data.timestamp", "missing")),
    };
    let key = str_at(d, P, "id")?.to_string();
    let status = d.get("delivery-status");
    let detail: Vec<String> = [
        status
            .and_then(|s| s.get("enhanced-code"))
            .and_then(Value::as_str)
            .map(str::to_string),
        status
            .and_then(|s| s.get("code"))
            .filter(|c| !c.is_null())
            .map(Value::to_string),
        status
            .and_then(|s| s.get("description").or_else(|| s.get("message")))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string),
        d.get("reason")
            .and_then(Value::as_str)
            .map(|r| format!("({r})")),
    ]
    .into_iter()
    .flatten()
    .collect();
    Ok(Some(Notice {
        source: "mailgun",
        key,
        address,
        report,
        at,
        message_id: d
            .pointer("/message/headers/message-id")
            .and_then(Value::as_str)
            .and_then(bracketed),
        detail: (!detail.is_empty()).then(|| detail.join(" ")),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bounce::providers::fixture;

    const KEY: &str = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0";

    /// The fixture signed at `at`.
    fn signed_at(name: &str, at: i64) -> String {
        let mut v: Value = serde_json::from_str(&fixture(name)).unwrap();
        let token = v["signature"]["token"].as_str().unwrap().to_string();
        v["signature"]["timestamp"] = at.to_string().into();
        v["signature"]["signature"] = sign(KEY, &at.to_string(), &token).into();
        v.to_string()
    }

    fn config() -> Config {
        Config {
            signing_key: KEY.into(),
            max_age: TimeDelta::minutes(10),
            seen: Default::default(),
        }
    }

    fn now() -> DateTime<Utc> {
        "2026-11-26T09:20:00Z".parse().unwrap()
    }

    #[test]
    fn signed_events_are_read() {
        let t = now().timestamp() - 60;
        let p = parse(
            &config(),
            signed_at("mailgun-failed.json", t).as_bytes(),
            now(),
        )
        .unwrap();
        let n = &p.notices[0];
        assert_eq!(n.address, "anna@example.com");
        assert_eq!(n.report, Report::Bounce(BounceKind::Hard));
        assert_eq!(
            n.message_id.as_deref(),
            Some("<0123456789abcdef0123456789abcdef@shop.example>")
        );
        assert!(
            n.detail.as_deref().unwrap().starts_with("5.1.1 550"),
            "{:?}",
            n.detail
        );
        let p = parse(
            &config(),
            signed_at("mailgun-complained.json", t).as_bytes(),
            now(),
        )
        .unwrap();
        assert_eq!(p.notices[0].report, Report::Complaint);
        let soft = signed_at("mailgun-failed.json", t).replace("\"permanent\"", "\"temporary\"");
        let p = parse(&config(), soft.as_bytes(), now()).unwrap();
        assert_eq!(p.notices[0].report, Report::Bounce(BounceKind::Soft));
    }

    #[test]
    fn a_signature_is_taken_once() {
        let c = config();
        let body = signed_at("mailgun-failed.json", now().timestamp() - 5);
        assert!(parse(&c, body.as_bytes(), now()).is_ok());
        let e = parse(&c, body.as_bytes(), now()).unwrap_err();
        assert!(e.to_string().contains("already used"), "{e}");
        // Once it is older than the allowed age, it is forgotten (and
        // refused for its age instead).
        let later = now() + TimeDelta::minutes(11);
        let e = parse(&c, body.as_bytes(), later).unwrap_err();
        assert!(e.to_string().contains("AFTERCARE_MAILGUN_MAX_AGE"), "{e}");
        // The next signature taken forgets the old token: the cache stays
        // as small as the allowed age makes it.
        let fresh = signed_at("mailgun-failed.json", later.timestamp())
            .replace("\"token\":\"", "\"token\":\"x");
        let fresh = {
            let mut v: Value = serde_json::from_str(&fresh).unwrap();
            let token = v["signature"]["token"].as_str().unwrap().to_string();
            let ts = later.timestamp().to_string();
            v["signature"]["signature"] = sign(KEY, &ts, &token).into();
            v.to_string()
        };
        assert!(parse(&c, fresh.as_bytes(), later).is_ok());
        assert_eq!(c.seen.lock().unwrap().len(), 1);
    }

    #[test]
    fn wrong_or_stale_signatures_are_refused() {
        let t = now().timestamp();
        // As stored: a placeholder signature.
        let e = parse(&config(), fixture("mailgun-failed.json").as_bytes(), now()).unwrap_err();
        assert!(matches!(e, Refused::Unauthorized(_)), "{e:?}");
        let stale = signed_at("mailgun-failed.json", t - 3600);
        let e = parse(&config(), stale.as_bytes(), now()).unwrap_err();
        assert!(e.to_string().contains("AFTERCARE_MAILGUN_MAX_AGE"), "{e}");
        let other = Config {
            signing_key: "another".into(),
            ..config()
        };
        let e = parse(
            &other,
            signed_at("mailgun-failed.json", t).as_bytes(),
            now(),
        )
        .unwrap_err();
        assert!(matches!(e, Refused::Unauthorized(_)), "{e:?}");
        let e = parse(&config(), br#"{"event-data":{}}"#, now()).unwrap_err();
        assert!(matches!(e, Refused::Unauthorized(_)), "{e:?}");
    }
}
