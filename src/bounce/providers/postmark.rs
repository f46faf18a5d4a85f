//! Postmark's bounce and spam complaint webhooks: one JSON object per call.
//! Postmark signs nothing, so the operator's secret proves the call
//! (`AFTERCARE_POSTMARK_SECRET`): Postmark sends it as HTTP basic auth when
//! the webhook URL carries it (`https://aftercare:SECRET@host/…`), or it is
//! a query parameter (`…/v1/providers/postmark?secret=SECRET`).
//!
//! Bounce types: `HardBounce`, `BadEmailAddress` and `ManuallyDeactivated`
//! are hard; `SoftBounce`, `Transient`, `DnsError`, `Blocked`,
//! `SpamNotification` and `Unknown` soft; `SpamComplaint` is a complaint;
//! the rest (auto-responders, subscribe requests, address changes…) are not
//! bounces.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{Parsed, Refused, bare_address, json, kind_of, same_secret, str_at};
use crate::bounce::{Malformed, Notice, Report};
use crate::event::BounceKind;

pub struct Config {
    pub secret: String,
}

impl Config {
    /// Checks the secret given as the basic auth password (`authorization`
    /// header) or as the `secret` query parameter.
    pub fn verify(&self, authorization: Option<&str>, query: Option<&str>) -> Result<(), Refused> {
        let from_auth = authorization
            .and_then(|a| {
                a.strip_prefix("Basic ")
                    .or_else(|| a.strip_prefix("basic "))
            })
            .and_then(|b| {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD
                    .decode(b.trim())
                    .ok()
            })
            .and_then(|d| String::from_utf8(d).ok())
            .and_then(|d| d.split_once(':').map(|(_, p)| p.to_string()));
        let from_query = query.and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "secret")
                .map(|(_, v)| v.into_owned())
        });
        match from_auth.or(from_query) {
            Some(given) if same_secret(given.as_bytes(), self.secret.as_bytes()) => Ok(()),
            Some(_) => Err(Refused::Unauthorized(
                "wrong Postmark webhook secret (AFTERCARE_POSTMARK_SECRET)".into(),
            )),
            None => Err(Refused::Unauthorized(
                "missing Postmark webhook secret: give it as the basic auth password or as \
                 ?secret= in the webhook URL"
                    .into(),
            )),
        }
    }
}

/// Reads a (verified) Postmark webhook body.
pub fn parse(body: &[u8]) -> Result<Parsed, Refused> {
    let v = json(body)?;
    if !v.is_object() {
        return Err(Malformed(format!(
            "the body is {}, not a Postmark webhook (a JSON object)",
            kind_of(&v)
        ))
        .into());
    }
    let record = str_at(&v, "", "RecordType").map_err(strip_dot)?;
    let report = match record {
        "SpamComplaint" => Report::Complaint,
        "Bounce" => match str_at(&v, "", "Type").map_err(strip_dot)? {
            "HardBounce" | "BadEmailAddress" | "ManuallyDeactivated" => {
                Report::Bounce(BounceKind::Hard)
            }
            "SoftBounce" | "Transient" | "DnsError" | "Blocked" | "SpamNotification"
            | "Unknown" => Report::Bounce(BounceKind::Soft),
            "SpamComplaint" => Report::Complaint,
            _ => return Ok(ignored()),
        },
        // Deliveries, opens, clicks, subscription changes.
        _ => return Ok(ignored()),
    };
    let address = bare_address(str_at(&v, "", "Email").map_err(strip_dot)?);
    let at = str_at(&v, "", "BouncedAt").map_err(strip_dot)?;
    let at: DateTime<Utc> = at
        .parse()
        .map_err(|e| Malformed::at("BouncedAt", format!("{at:?}: {e}")))?;
    let id = match v.get("ID") {
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) => s.clone(),
        _ => return Err(Malformed::at("ID", "missing (the bounce's number)").into()),
    };
    let detail: Vec<&str> = ["Type", "Details"]
        .iter()
        .filter_map(|k| v.get(*k).and_then(Value::as_str))
        .collect();
    Ok(Parsed {
        notices: vec![Notice {
            source: "postmark",
            key: format!("{record}-{id}"),
            address,
            report,
            at,
            // Postmark's MessageID is its own, not the Message-ID header.
            message_id: None,
            detail: (!detail.is_empty()).then(|| detail.join(" ")),
        }],
        ..Parsed::default()
    })
}

fn ignored() -> Parsed {
    Parsed {
        ignored: 1,
        ..Parsed::default()
    }
}

fn strip_dot(m: Malformed) -> Malformed {
    Malformed(m.0.trim_start_matches('.').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bounce::providers::fixture;

    #[test]
    fn bounces_and_complaints_are_read() {
        let p = parse(fixture("postmark-bounce.json").as_bytes()).unwrap();
        let n = &p.notices[0];
        assert_eq!(n.address, "anna@example.com");
        assert_eq!(n.report, Report::Bounce(BounceKind::Hard));
        assert_eq!(n.key, "Bounce-4323372036854775807");
        assert_eq!(n.at.to_rfc3339(), "2026-11-26T09:15:03.907025900+00:00");
        let p = parse(fixture("postmark-complaint.json").as_bytes()).unwrap();
        assert_eq!(p.notices[0].report, Report::Complaint);
        let soft = fixture("postmark-bounce.json").replace("\"HardBounce\"", "\"SoftBounce\"");
        let p = parse(soft.as_bytes()).unwrap();
        assert_eq!(p.notices[0].report, Report::Bounce(BounceKind::Soft));
        let auto = fixture("postmark-bounce.json").replace("\"HardBounce\"", "\"AutoResponder\"");
        assert_eq!(parse(auto.as_bytes()).unwrap().ignored, 1);
        let e = parse(br#"{"RecordType":"Bounce","Type":"HardBounce","Email":7}"#).unwrap_err();
        assert_eq!(
            e,
            Refused::Malformed("Email: expected a string, found a number".into())
        );
    }

    #[test]
    fn the_secret_is_checked() {
        let c = Config {
            secret: "0123456789abcdef-secret".into(),
        };
        // "aftercare:0123456789abcdef-secret"
        use base64::Engine;
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("aftercare:0123456789abcdef-secret")
        );
        assert!(c.verify(Some(&basic), None).is_ok());
        assert!(
            c.verify(None, Some("secret=0123456789abcdef-secret"))
                .is_ok()
        );
        assert!(c.verify(None, Some("secret=wrong")).is_err());
        assert!(c.verify(None, None).is_err());
        assert!(c.verify(Some("Basic !!!"), None).is_err());
    }
}
