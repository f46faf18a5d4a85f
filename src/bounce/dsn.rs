//! Delivery status notifications (RFC 3464): the `multipart/report;
//! report-type=delivery-status` message a mail server sends back to the
//! envelope sender when it cannot deliver. Posted as raw mail to
//! `POST /v1/bounces`.
//!
//! Each recipient whose `Action` is `failed` is a bounce of its
//! `Final-Recipient`: a `5.x.x` `Status` is hard, a `4.x.x` soft (the server
//! gave up on a temporary failure). `delayed`, `delivered`, `relayed` and
//! `expanded` are not bounces. The message it is about is found by the
//! `Message-ID` of the returned message (`message/rfc822` or
//! `text/rfc822-headers`), or else by the token aftercare's envelope sender
//! carries (`<local>+<token>@<domain>`, the token being the Message-ID's
//! 32 hex digits), to which the DSN is addressed.

use chrono::{DateTime, Utc};
use mail_parser::{HeaderValue, Message, MessageParser, MimeHeaders, PartType};
use sha2::{Digest, Sha256};

use super::{Malformed, Notice, Report, bracketed};
use crate::event::BounceKind;

/// What a DSN says.
#[derive(Debug, Clone, PartialEq)]
pub struct Dsn {
    /// The bounces, one per failed recipient.
    pub notices: Vec<Notice>,
    /// Recipients that did not bounce, as `(address, action)`: a `delayed`
    /// DSN is a warning, not a bounce.
    pub not_bounces: Vec<(String, String)>,
    /// The Message-ID of the email it is about, when found.
    pub message_id: Option<String>,
}

/// Reads a DSN; `now` is the time of a bounce whose DSN gives none.
pub fn parse(raw: &[u8], now: DateTime<Utc>) -> Result<Dsn, Malformed> {
    // mail-parser 0.11 panics on some malformed multipart nesting ("Invalid
    // part ID, could not find multipart"; fuzz/regressions/bounce_reports)
    // where debug assertions are on (the fuzzer's and the tests' builds; a
    // release build recovers what it can): a body it cannot read is
    // malformed, not a reason to drop the request.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| read(raw, now))).unwrap_or_else(|_| {
        Err(Malformed(
            "the body is not a mail message this service can read (its MIME structure is broken)"
                .into(),
        ))
    })
}

fn read(raw: &[u8], now: DateTime<Utc>) -> Result<Dsn, Malformed> {
    let msg = MessageParser::default()
        .parse(raw)
        .filter(|m| !m.headers().is_empty())
        .ok_or_else(|| Malformed("the body is not a mail message (no header found)".into()))?;
    let ct = msg.content_type().ok_or_else(|| {
        Malformed(
            "Content-Type: none (so text/plain) is not multipart/report: not a delivery \
             status notification (RFC 3464)"
                .into(),
        )
    })?;
    let subtype = ct.subtype().unwrap_or("");
    if !ct.ctype().eq_ignore_ascii_case("multipart") || !subtype.eq_ignore_ascii_case("report") {
        return Err(Malformed(format!(
            "Content-Type: {}/{subtype} is not multipart/report: not a delivery status \
             notification (RFC 3464)",
            ct.ctype()
        )));
    }
    let report_type = ct.attribute("report-type").unwrap_or("");
    if !report_type.eq_ignore_ascii_case("delivery-status")
        && !report_type.eq_ignore_ascii_case("global-delivery-status")
    {
        return Err(Malformed(format!(
            "Content-Type: report-type={report_type:?} is not delivery-status: not a delivery \
             status notification (RFC 3464)"
        )));
    }
    let status = msg
        .parts
        .iter()
        .find(|p| {
            p.content_type().is_some_and(|c| {
                c.ctype().eq_ignore_ascii_case("message")
                    && c.subtype().is_some_and(|s| {
                        s.eq_ignore_ascii_case("delivery-status")
                            || s.eq_ignore_ascii_case("global-delivery-status")
                    })
            })
        })
        .ok_or_else(|| {
            Malformed("the report has no message/delivery-status part (RFC 3464 §2)".into())
        })?;
    let fields = String::from_utf8_lossy(status.contents()).into_owned();
    let groups = field_groups(&fields);
    let Some((per_message, recipients)) = groups.split_first() else {
        return Err(Malformed(
            "message/delivery-status: empty (no per-message fields)".into(),
        ));
    };
    if recipients.is_empty() {
        return Err(Malformed(
            "message/delivery-status: no per-recipient fields (no Final-Recipient)".into(),
        ));
    }
    let message_id = original_message_id(&msg);
    let key = match msg.message_id().and_then(bracketed) {
        Some(id) => id,
        None => hex::encode(&Sha256::digest(raw)[..16]),
    };
    let arrival = get(per_message, "arrival-date").and_then(date);
    let sent_at = msg
        .date()
        .and_then(|d| DateTime::from_timestamp(d.to_timestamp(), 0));
    let mut dsn = Dsn {
        notices: Vec::new(),
        not_bounces: Vec::new(),
        message_id: message_id.clone(),
    };
    for (i, group) in recipients.iter().enumerate() {
        let at = |field: &str| format!("message/delivery-status: recipient {} {field}", i + 1);
        let final_recipient = get(group, "final-recipient")
            .ok_or_else(|| Malformed::at(at("Final-Recipient"), "missing"))?;
        let address = address_of(final_recipient).ok_or_else(|| {
            Malformed::at(
                at("Final-Recipient"),
                format!("{final_recipient:?} names no address"),
            )
        })?;
        let action = get(group, "action")
            .ok_or_else(|| Malformed::at(at("Action"), "missing"))?
            .to_ascii_lowercase();
        match action.as_str() {
            "failed" => {}
            "delayed" | "delivered" | "relayed" | "expanded" => {
                dsn.not_bounces.push((address, action));
                continue;
            }
            other => {
                return Err(Malformed::at(
                    at("Action"),
                    format!("{other:?} is not failed, delayed, delivered, relayed or expanded"),
                ));
            }
        }
        let status = get(group, "status").ok_or_else(|| Malformed::at(at("Status"), "missing"))?;
        let code = status.split_whitespace().next().unwrap_or("");
        let kind = match status_class(code) {
            Some('5') => BounceKind::Hard,
            Some('4') => BounceKind::Soft,
            _ => {
                return Err(Malformed::at(
                    at("Status"),
                    format!("{status:?} is not a failure status (4.x.x or 5.x.x)"),
                ));
            }
        };
        let detail = match get(group, "diagnostic-code") {
            Some(diag) => format!("{code} {diag}"),
            None => code.to_string(),
        };
        let when = get(group, "last-attempt-date")
            .and_then(date)
            .or(arrival)
            .or(sent_at)
            .unwrap_or(now);
        dsn.notices.push(Notice {
            source: "dsn",
            key: key.clone(),
            address,
            report: Report::Bounce(kind),
            at: when,
            message_id: message_id.clone(),
            detail: Some(detail),
        });
    }
    Ok(dsn)
}

/// The fields of a `message/delivery-status` body, in groups separated by
/// blank lines, each field `(lowercase name, unfolded value)`.
fn field_groups(text: &str) -> Vec<Vec<(String, String)>> {
    let mut groups: Vec<Vec<(String, String)>> = Vec::new();
    let mut current: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            if !current.is_empty() {
                groups.push(std::mem::take(&mut current));
            }
            continue;
        }
        if line.starts_with([' ', '\t']) {
            // A folded line continues the field before it.
            if let Some((_, v)) = current.last_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            current.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    if !current.is_empty() {
        groups.push(current);
    }
    groups
}

fn get<'a>(group: &'a [(String, String)], name: &str) -> Option<&'a str> {
    group
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// `rfc822; anna@example.com` → `anna@example.com` (the address type is
/// `rfc822` or `utf-8`).
fn address_of(field: &str) -> Option<String> {
    let addr = field.split_once(';').map_or(field, |(_, a)| a).trim();
    let addr = addr.trim_start_matches('<').trim_end_matches('>').trim();
    (addr.contains('@') && !addr.contains(char::is_whitespace)).then(|| addr.to_string())
}

/// The class digit of a status code `c.s.d` (RFC 3463).
fn status_class(code: &str) -> Option<char> {
    let mut parts = code.split('.');
    let class = parts.next()?;
    let rest: Vec<&str> = parts.collect();
    let digits = |s: &str| !s.is_empty() && s.len() <= 3 && s.bytes().all(|b| b.is_ascii_digit());
    (class.len() == 1 && digits(class) && rest.len() == 2 && rest.iter().all(|s| digits(s)))
        .then(|| class.chars().next().expect("one digit"))
}

fn date(s: &str) -> Option<DateTime<Utc>> {
    // A comment such as `(CET)` after the zone is allowed by RFC 5322.
    let s = s.split(" (").next().unwrap_or(s).trim();
    DateTime::parse_from_rfc2822(s)
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

/// The Message-ID of the message the DSN returns: from its returned
/// message or headers, else from the token in the address the DSN was sent
/// to (aftercare's envelope sender `<local>+<32 hex>@<domain>`).
fn original_message_id(msg: &Message) -> Option<String> {
    for part in &msg.parts {
        let returned = match &part.body {
            PartType::Message(m) => m.message_id().and_then(bracketed),
            _ if part.content_type().is_some_and(|c| {
                c.ctype().eq_ignore_ascii_case("text")
                    && c.subtype()
                        .is_some_and(|s| s.eq_ignore_ascii_case("rfc822-headers"))
            }) =>
            {
                MessageParser::default()
                    .parse_headers(part.contents())
                    .and_then(|h| h.message_id().and_then(bracketed))
            }
            _ => None,
        };
        if returned.is_some() {
            return returned;
        }
    }
    let mut to = Vec::new();
    for name in ["X-Original-To", "Delivered-To", "To"] {
        match msg.header(name) {
            Some(HeaderValue::Address(a)) => to.extend(
                a.iter()
                    .filter_map(|a| a.address.as_deref().map(str::to_string)),
            ),
            Some(HeaderValue::Text(t)) => to.push(t.to_string()),
            _ => {}
        }
    }
    to.iter().find_map(|addr| {
        let (local, domain) = addr.trim_matches(['<', '>']).rsplit_once('@')?;
        let token = token_of(local)?;
        Some(format!("<{token}@{domain}>"))
    })
}

/// The token of an envelope sender's local part `<local>+<token>`: the 32
/// hex digits of the Message-ID it was sent with.
pub fn token_of(local: &str) -> Option<&str> {
    let (_, token) = local.rsplit_once('+')?;
    (token.len() == 32 && token.bytes().all(|b| b.is_ascii_hexdigit())).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_the_mime_parser_chokes_on_is_malformed() {
        // Found by the fuzzer. mail-parser asserts on it with
        // `debug_assert!` ("Invalid part ID"), so in a build with debug
        // assertions it panics, which `parse` turns into the broken-MIME
        // refusal; without them (`--release`) it recovers what it can, and
        // what it recovers has no delivery-status part. Malformed either way.
        let raw = include_bytes!(
            "../../fuzz/regressions/bounce_reports/mail-parser-panic-broken-multipart"
        );
        let e = parse(raw, Utc::now()).unwrap_err();
        let why = match cfg!(debug_assertions) {
            true => "MIME structure is broken",
            false => "no message/delivery-status part",
        };
        assert!(e.0.contains(why), "{}", e.0);
    }

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/tests/fixtures/providers/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn now() -> DateTime<Utc> {
        "2026-11-26T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn a_hard_bounce_names_the_final_recipient_and_the_message() {
        let dsn = parse(&fixture("dsn-hard.eml"), now()).unwrap();
        assert_eq!(dsn.notices.len(), 1, "{dsn:?}");
        let n = &dsn.notices[0];
        assert_eq!(n.address, "anna@example.com");
        assert_eq!(n.report, Report::Bounce(BounceKind::Hard));
        assert_eq!(
            n.message_id.as_deref(),
            Some("<0123456789abcdef0123456789abcdef@shop.example>")
        );
        assert_eq!(
            n.at,
            "2026-11-26T09:15:03Z".parse::<DateTime<Utc>>().unwrap()
        );
        let detail = n.detail.as_deref().unwrap();
        assert!(detail.starts_with("5.1.1 smtp; 550 5.1.1"), "{detail}");
        assert_eq!(n.key, "<20261126091503.4F2A1C0042@mx.example.net>");
    }

    #[test]
    fn a_delayed_dsn_is_not_a_bounce() {
        let dsn = parse(&fixture("dsn-delayed.eml"), now()).unwrap();
        assert!(dsn.notices.is_empty(), "{dsn:?}");
        assert_eq!(
            dsn.not_bounces,
            [("bob@example.com".to_string(), "delayed".to_string())]
        );
    }

    #[test]
    fn a_4xx_failure_is_soft_and_the_token_finds_the_message() {
        let dsn = parse(&fixture("dsn-soft-headers.eml"), now()).unwrap();
        let n = &dsn.notices[0];
        assert_eq!(n.report, Report::Bounce(BounceKind::Soft));
        assert_eq!(n.address, "carol@example.org");
        // The returned headers carry no Message-ID: the envelope's token does.
        assert_eq!(
            n.message_id.as_deref(),
            Some("<fedcba9876543210fedcba9876543210@shop.example>")
        );
    }

    #[test]
    fn what_is_not_a_dsn_says_why() {
        let plain = b"From: a@b.example\r\nTo: c@d.example\r\nSubject: hi\r\n\r\nhello\r\n";
        let e = parse(plain, now()).unwrap_err();
        assert!(e.0.contains("text/plain) is not multipart/report"), "{e}");
        let html = b"Content-Type: text/html\r\n\r\n<p>hi</p>\r\n";
        let e = parse(html, now()).unwrap_err();
        assert!(
            e.0.starts_with("Content-Type: text/html is not multipart/report"),
            "{e}"
        );
        assert!(parse(b"", now()).is_err());
        assert!(parse(b"just some words", now()).is_err());
        let arf = String::from_utf8(fixture("dsn-hard.eml"))
            .unwrap()
            .replace("report-type=delivery-status", "report-type=feedback-report");
        let e = parse(arf.as_bytes(), now()).unwrap_err();
        assert!(
            e.0.contains("\"feedback-report\" is not delivery-status"),
            "{e}"
        );
        let no_action = String::from_utf8(fixture("dsn-hard.eml"))
            .unwrap()
            .replace("Action: failed\r\n", "");
        let e = parse(no_action.as_bytes(), now()).unwrap_err();
        assert_eq!(e.0, "message/delivery-status: recipient 1 Action: missing");
    }

    #[test]
    fn status_codes() {
        assert_eq!(status_class("5.1.1"), Some('5'));
        assert_eq!(status_class("4.4.7"), Some('4'));
        assert_eq!(status_class("5.1"), None);
        assert_eq!(status_class("x.1.1"), None);
        assert_eq!(
            token_of("bounces+0123456789abcdef0123456789abcdef"),
            Some("0123456789abcdef0123456789abcdef")
        );
        assert_eq!(token_of("bounces"), None);
        assert_eq!(
            address_of("rfc822; <Anna@Example.com>").as_deref(),
            Some("Anna@Example.com")
        );
    }
}
