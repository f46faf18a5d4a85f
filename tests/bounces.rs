//! Bounces and complaints against the real service (in-process on port 0,
//! over PostgreSQL and SQLite, sending to `.eml` files): each relay's sample
//! webhook (tests/fixtures/providers) and a DSN suppress the right address,
//! so that the next transactional email to it is skipped with the reason in
//! the delivery log; wrong signatures change nothing; soft bounces suppress
//! only on the third within 7 days; a delayed DSN is not a bounce.

mod support;

use std::time::Duration;

use aftercare::config::Role;
use aftercare::engine::outbox::Outcome;
use aftercare::store::{DeliveryView, Store, Tx};
use base64::Engine;
use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::app::{self, App};

const SNS_TOPIC: &str = "arn:aws:sns:eu-west-1:123456789012:ses-bounces";
const POSTMARK_SECRET: &str = "pm-0123456789abcdef";
const MAILGUN_KEY: &str = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0";
const FIXTURES: &str = "tests/fixtures/providers";

fn fixture(name: &str) -> String {
    let path = format!("{FIXTURES}/{name}");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The service with every provider configured, or none.
async fn spawn<S: Store>(store: S, configured: bool, secret: Option<&str>) -> App {
    let cert = format!("{FIXTURES}/sns-signing-cert.pem");
    let sendgrid_key = fixture("sendgrid-public-key.txt");
    let flags: Vec<&str> = if configured {
        vec![
            "--ses-topic-arns",
            SNS_TOPIC,
            "--ses-signing-certs",
            &cert,
            "--sendgrid-public-key",
            sendgrid_key.trim(),
            "--postmark-secret",
            POSTMARK_SECRET,
            "--mailgun-signing-key",
            MAILGUN_KEY,
        ]
    } else {
        Vec::new()
    };
    let roles = [Role::Http, Role::Schedule, Role::Send];
    app::spawn_with(store, secret, &flags, &roles).await
}

fn at(ago_minutes: i64) -> DateTime<Utc> {
    Utc::now() - chrono::Duration::minutes(ago_minutes)
}

/// Posts a shop event for `customer` (`<customer>@example.com`).
async fn shop(app: &App, id: &str, kind: &str, customer: &str, when: DateTime<Utc>) {
    let who = format!(
        r#"{{"id":"{customer}","email":"{customer}@example.com","marketing_consent":true}}"#
    );
    app.post(&[support::shop_event(
        id,
        kind,
        &who,
        &format!("o-{id}"),
        when,
    )])
    .await;
}

async fn post(app: &App, path: &str, body: &str, headers: &[(&str, &str)]) -> (StatusCode, Value) {
    let mut r = reqwest::Client::new()
        .post(format!("http://{}{path}", app.addr))
        .body(body.to_string());
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let r = r.send().await.unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text));
    (status, v)
}

fn sendgrid_headers() -> (String, String) {
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

/// Signs `body` as SendGrid does, with the fixture's key.
fn sendgrid_sign(timestamp: &str, body: &str) -> String {
    use p256::ecdsa::signature::Signer;
    let key = p256::SecretKey::from_sec1_pem(&fixture("sendgrid-key.pem")).unwrap();
    let signing = p256::ecdsa::SigningKey::from(key);
    let mut signed = timestamp.as_bytes().to_vec();
    signed.extend_from_slice(body.as_bytes());
    let sig: p256::ecdsa::Signature = signing.sign(&signed);
    base64::engine::general_purpose::STANDARD.encode(sig.to_der().as_bytes())
}

/// A Mailgun fixture signed now, its event's id, time and severity set.
fn mailgun(name: &str, id: &str, when: DateTime<Utc>, severity: Option<&str>) -> String {
    let mut v: Value = serde_json::from_str(&fixture(name)).unwrap();
    let now = Utc::now().timestamp().to_string();
    // A token of its own, as Mailgun gives each request (a token seen
    // before is refused as a replay).
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let token = format!("{}{n:08}", v["signature"]["token"].as_str().unwrap());
    v["signature"]["token"] = token.clone().into();
    v["signature"]["timestamp"] = now.clone().into();
    v["signature"]["signature"] =
        aftercare::bounce::providers::mailgun::sign(MAILGUN_KEY, &now, &token).into();
    v["event-data"]["id"] = id.into();
    v["event-data"]["timestamp"] = json!(when.timestamp() as f64);
    if let Some(s) = severity {
        v["event-data"]["severity"] = s.into();
    }
    v.to_string()
}

/// Posts each provider's sample bounce of anna@example.com.
async fn post_provider_bounce(app: &App, provider: &str) -> (StatusCode, Value) {
    match provider {
        "ses" => post(app, "/v1/providers/ses", &fixture("ses-bounce.json"), &[]).await,
        "sendgrid" => {
            let (ts, sig) = sendgrid_headers();
            post(
                app,
                "/v1/providers/sendgrid",
                &fixture("sendgrid-events.json"),
                &[
                    ("X-Twilio-Email-Event-Webhook-Timestamp", &ts),
                    ("X-Twilio-Email-Event-Webhook-Signature", &sig),
                ],
            )
            .await
        }
        "postmark" => {
            let path = format!("/v1/providers/postmark?secret={POSTMARK_SECRET}");
            post(app, &path, &fixture("postmark-bounce.json"), &[]).await
        }
        "mailgun" => {
            let body = mailgun("mailgun-failed.json", "mg-1", at(5), None);
            post(app, "/v1/providers/mailgun", &body, &[]).await
        }
        "dsn" => post(app, "/v1/bounces", &fixture("dsn-hard.eml"), &[]).await,
        other => panic!("{other}"),
    }
}

/// The delivery log entries of `customer`'s emails, once `n` are there.
async fn log_of<S: Store>(store: &S, customer: &str, n: usize) -> Vec<DeliveryView> {
    let mine = |d: &DeliveryView| d.idempotency_key.contains(&format!("/{customer}"));
    for _ in 0..150 {
        let log: Vec<DeliveryView> = store
            .deliveries()
            .await
            .unwrap()
            .into_iter()
            .filter(mine)
            .collect();
        if log.len() >= n {
            return log;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("fewer than {n} delivery log entries for {customer}");
}

async fn suppressed<S: Store>(store: &S, customer: &str) -> bool {
    let mut tx = store.begin().await.unwrap();
    let p = tx.lock_profile(customer).await.unwrap();
    tx.commit().await.unwrap();
    p.is_some_and(|p| p.suppressed)
}

/// A relay's sample hard bounce of anna suppresses her: her next
/// transactional email is skipped, with the reason; carol's goes out.
async fn a_providers_bounce_suppresses<S: Store>(store: S, provider: &str) {
    let app = spawn(store.clone(), true, None).await;
    shop(&app, "u-anna", "customer.updated", "anna", at(60)).await;
    shop(&app, "u-carol", "customer.updated", "carol", at(60)).await;
    let (status, answer) = post_provider_bounce(&app, provider).await;
    assert_eq!(status, StatusCode::OK, "{provider}: {answer}");
    assert!(
        answer["events"].as_u64().unwrap() >= 1,
        "{provider}: {answer}"
    );
    assert!(suppressed(&store, "anna").await, "{provider}");
    // The relay sends it again: one event.
    let (status, again) = post_provider_bounce(&app, provider).await;
    assert_eq!(status, StatusCode::OK, "{provider}: {again}");
    assert_eq!(again["events"], 0, "{provider}: {again}");
    shop(&app, "p-anna", "order.placed", "anna", at(1)).await;
    shop(&app, "p-carol", "order.placed", "carol", at(1)).await;
    let log = log_of(&store, "anna", 1).await;
    assert_eq!(log[0].outcome, Outcome::Skipped, "{provider}: {log:?}");
    assert!(
        log[0]
            .detail
            .starts_with("address suppressed: hard bounce ("),
        "{provider}: {}",
        log[0].detail
    );
    assert!(log[0].idempotency_key.starts_with("fulfilment/"));
    // Carol (in the SendGrid sample only softly bounced, elsewhere absent)
    // still gets hers.
    let log = log_of(&store, "carol", 1).await;
    assert_eq!(log[0].outcome, Outcome::Sent, "{provider}: {log:?}");
    app.shutdown().await;
}

async fn ses_bounce_suppresses<S: Store>(store: S) {
    a_providers_bounce_suppresses(store, "ses").await
}
async fn sendgrid_bounce_suppresses<S: Store>(store: S) {
    a_providers_bounce_suppresses(store, "sendgrid").await
}
async fn postmark_bounce_suppresses<S: Store>(store: S) {
    a_providers_bounce_suppresses(store, "postmark").await
}
async fn mailgun_bounce_suppresses<S: Store>(store: S) {
    a_providers_bounce_suppresses(store, "mailgun").await
}
async fn a_dsn_suppresses_the_final_recipient<S: Store>(store: S) {
    a_providers_bounce_suppresses(store, "dsn").await
}

type Headers = Vec<(String, String)>;

/// Each provider's complaint about bob suppresses him.
async fn complaints_suppress<S: Store>(store: S) {
    let app = spawn(store.clone(), true, None).await;
    let mut cases: Vec<(&str, String, Headers, String)> = vec![
        (
            "ses",
            "/v1/providers/ses".into(),
            vec![],
            fixture("ses-complaint.json"),
        ),
        (
            "postmark",
            format!("/v1/providers/postmark?secret={POSTMARK_SECRET}"),
            vec![],
            fixture("postmark-complaint.json"),
        ),
        (
            "mailgun",
            "/v1/providers/mailgun".into(),
            vec![],
            mailgun("mailgun-complained.json", "mg-c", at(5), None),
        ),
    ];
    let body = r#"[{"email":"bob@example.com","timestamp":1795684520,"event":"spamreport","sg_event_id":"sg-c"}]"#;
    let ts = "1795684600";
    cases.push((
        "sendgrid",
        "/v1/providers/sendgrid".into(),
        vec![
            (
                "X-Twilio-Email-Event-Webhook-Timestamp".into(),
                ts.to_string(),
            ),
            (
                "X-Twilio-Email-Event-Webhook-Signature".into(),
                sendgrid_sign(ts, body),
            ),
        ],
        body.to_string(),
    ));
    for (i, (provider, path, headers, body)) in cases.iter().enumerate() {
        // A fresh bob for each: bob0, bob1, … share the address in turn.
        let bob = format!("bob{i}");
        let customer = format!(r#"{{"id":"{bob}","email":"bob@example.com"}}"#);
        let ev = support::shop_event(
            &format!("u-{bob}"),
            "customer.updated",
            &customer,
            "x",
            at(60),
        );
        app.post(&[ev]).await;
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let (status, answer) = post(&app, path, body, &headers).await;
        assert_eq!(status, StatusCode::OK, "{provider}: {answer}");
        assert!(suppressed(&store, &bob).await, "{provider}: {answer}");
        let ev = support::shop_event(
            &format!("p-{bob}"),
            "order.placed",
            &customer,
            &format!("o-{bob}"),
            at(1),
        );
        app.post(&[ev]).await;
        let log = log_of(&store, &bob, 1).await;
        assert_eq!(log[0].outcome, Outcome::Skipped, "{provider}");
        assert!(
            log[0].detail.starts_with("address suppressed: complaint ("),
            "{provider}: {}",
            log[0].detail
        );
        // The list holds the address, with the first complaint's reason.
        let mut tx = store.begin().await.unwrap();
        let listed = tx.suppression("bob@example.com").await.unwrap();
        tx.commit().await.unwrap();
        assert!(listed.unwrap().starts_with("complaint"), "{provider}");
    }
    app.shutdown().await;
}

/// A tampered, unsigned or wrongly signed webhook is refused and changes
/// nothing: anna's order still goes out.
async fn bad_signatures_change_nothing<S: Store>(store: S) {
    let app = spawn(store.clone(), true, Some("events-secret")).await;
    let signed = |body: &str| aftercare::ingest::http::sign("events-secret", body.as_bytes());
    let customer = r#"{"id":"anna","email":"anna@example.com"}"#;
    let ev = support::shop_event("u-anna", "customer.updated", customer, "x", at(60));
    let sig = signed(&ev);
    let (status, _) = post(&app, "/v1/events", &ev, &[("X-Aftercare-Signature", &sig)]).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let tampered_ses = fixture("ses-bounce.json").replace("Permanent", "Transient");
    let (status, a) = post(&app, "/v1/providers/ses", &tampered_ses, &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{a}");
    assert!(
        a["error"].as_str().unwrap().contains("SigningCertURL")
            || a["error"].as_str().unwrap().contains("https://sns."),
        "{a}"
    );
    let foreign = fixture("ses-bounce.json").replace(
        "https://sns.eu-west-1.amazonaws.com/",
        "https://sns.eu-west-1.amazonaws.com.evil.example/",
    );
    let (status, _) = post(&app, "/v1/providers/ses", &foreign, &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (ts, sig) = sendgrid_headers();
    let tampered =
        fixture("sendgrid-events.json").replace("\"type\": \"blocked\"", "\"type\": \"bounce\"");
    for headers in [
        vec![
            ("X-Twilio-Email-Event-Webhook-Timestamp", ts.as_str()),
            ("X-Twilio-Email-Event-Webhook-Signature", sig.as_str()),
        ],
        vec![],
    ] {
        let (status, a) = post(&app, "/v1/providers/sendgrid", &tampered, &headers).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{a}");
    }
    for path in [
        "/v1/providers/postmark",
        "/v1/providers/postmark?secret=pm-wrong-wrong-wrong",
    ] {
        let (status, a) = post(&app, path, &fixture("postmark-bounce.json"), &[]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{a}");
    }
    // Mailgun: the fixture as stored (a placeholder signature), and a
    // signature from an hour ago.
    let (status, _) = post(
        &app,
        "/v1/providers/mailgun",
        &fixture("mailgun-failed.json"),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let mut stale: Value =
        serde_json::from_str(&mailgun("mailgun-failed.json", "mg-s", at(5), None)).unwrap();
    let then = (Utc::now().timestamp() - 3600).to_string();
    let token = stale["signature"]["token"].as_str().unwrap().to_string();
    stale["signature"]["timestamp"] = then.clone().into();
    stale["signature"]["signature"] =
        aftercare::bounce::providers::mailgun::sign(MAILGUN_KEY, &then, &token).into();
    let (status, a) = post(&app, "/v1/providers/mailgun", &stale.to_string(), &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{a}");
    // A DSN needs the events webhook's signature when a secret is set.
    let dsn = fixture("dsn-hard.eml");
    let (status, _) = post(&app, "/v1/bounces", &dsn, &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = post(
        &app,
        "/v1/bounces",
        &dsn,
        &[("X-Aftercare-Signature", "sha256=00")],
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Nothing was applied or kept.
    assert_eq!(store.event_count().await.unwrap(), 1);
    assert!(store.dead_letters().await.unwrap().is_empty());
    assert!(!suppressed(&store, "anna").await);
    let order = support::shop_event("p-anna", "order.placed", customer, "o1", at(1));
    let sig = signed(&order);
    post(
        &app,
        "/v1/events",
        &order,
        &[("X-Aftercare-Signature", &sig)],
    )
    .await;
    let log = log_of(&store, "anna", 1).await;
    assert_eq!(log[0].outcome, Outcome::Sent, "{log:?}");
    // And the DSN, signed, does suppress.
    let sig = signed(&dsn);
    let (status, a) = post(
        &app,
        "/v1/bounces",
        &dsn,
        &[("X-Aftercare-Signature", &sig)],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{a}");
    assert!(suppressed(&store, "anna").await);
    app.shutdown().await;
}

/// Soft bounces (Mailgun's temporary failures) suppress only when the third
/// falls within 7 days.
async fn soft_bounces_suppress_on_the_third_within_7_days<S: Store>(store: S) {
    let app = spawn(store.clone(), true, None).await;
    shop(&app, "u-anna", "customer.updated", "anna", at(60 * 24 * 12)).await;
    let day = 60 * 24;
    for (id, ago) in [("s1", 10 * day), ("s2", 2 * day), ("s3", day)] {
        let body = mailgun("mailgun-failed.json", id, at(ago), Some("temporary"));
        let (status, a) = post(&app, "/v1/providers/mailgun", &body, &[]).await;
        assert_eq!(status, StatusCode::OK, "{a}");
        assert_eq!(a["events"], 1, "{a}");
        assert!(
            !suppressed(&store, "anna").await,
            "after {id}: the first is 9 days before the third"
        );
    }
    // A transactional email still goes out.
    shop(&app, "p1", "order.placed", "anna", at(30)).await;
    let log = log_of(&store, "anna", 1).await;
    assert_eq!(log[0].outcome, Outcome::Sent, "{log:?}");
    let body = mailgun("mailgun-failed.json", "s4", at(60), Some("temporary"));
    let (status, a) = post(&app, "/v1/providers/mailgun", &body, &[]).await;
    assert_eq!(status, StatusCode::OK, "{a}");
    assert!(suppressed(&store, "anna").await, "three within 7 days");
    shop(&app, "p2", "order.placed", "anna", at(1)).await;
    let log = log_of(&store, "anna", 2).await;
    let last = log
        .iter()
        .find(|d| d.idempotency_key.contains("o-p2"))
        .unwrap();
    assert_eq!(last.outcome, Outcome::Skipped);
    assert!(
        last.detail.starts_with(
            "address suppressed: 3 soft bounces within 7 days (email.bounced mailgun-soft-"
        ),
        "{}",
        last.detail
    );
    app.shutdown().await;
}

/// Shop events over `POST /v1/events`, out of order: soft bounces count
/// on their own time whatever order they arrive in; a history import's old
/// hard bounce of an address the customer has since left suppresses that
/// address only.
async fn bounce_events_out_of_order<S: Store>(store: S) {
    let app = spawn(store.clone(), false, None).await;
    let bounce = |id: &str, kind: &str, email: &str, when: DateTime<Utc>, history: bool| {
        json!({
            "id": id, "type": "email.bounced", "occurred_at": when.to_rfc3339(),
            "customer": {"id": "anna", "email": email},
            "data": {"kind": kind}, "history": history,
        })
        .to_string()
    };
    let day = 60 * 24;
    shop(&app, "u-anna", "customer.updated", "anna", at(30 * day)).await;
    // The newest first, then one 9 days before it: no window of 3 yet.
    app.post(&[bounce("b3", "soft", "anna@example.com", at(day), false)])
        .await;
    app.post(&[bounce(
        "b1",
        "soft",
        "anna@example.com",
        at(10 * day),
        false,
    )])
    .await;
    assert!(!suppressed(&store, "anna").await);
    // The one between them arrives last: 3 within 7 days? b1 is 9 days
    // before b3, so only b2 and b3 are.
    app.post(&[bounce("b2", "soft", "anna@example.com", at(5 * day), false)])
        .await;
    assert!(!suppressed(&store, "anna").await);
    // A late one 4 days back completes b2, b4, b3.
    app.post(&[bounce("b4", "soft", "anna@example.com", at(4 * day), false)])
        .await;
    assert!(suppressed(&store, "anna").await);
    // Bob moved to a new address; a year-old hard bounce of the old one
    // arrives as history: the old address is listed, bob still gets mail.
    let bob_new = r#"{"id":"bob","email":"bob.new@example.com"}"#;
    app.post(&[support::shop_event(
        "u-bob",
        "customer.updated",
        bob_new,
        "x",
        at(day),
    )])
    .await;
    let old = json!({
        "id": "hb", "type": "email.bounced", "occurred_at": at(365 * day).to_rfc3339(),
        "customer": {"id": "bob", "email": "bob.old@example.com"},
        "data": {"kind": "hard"}, "history": true,
    })
    .to_string();
    app.post(&[old]).await;
    assert!(!suppressed(&store, "bob").await);
    let mut tx = store.begin().await.unwrap();
    assert!(
        tx.suppression("bob.old@example.com")
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(tx.suppression("bob.new@example.com").await.unwrap(), None);
    tx.commit().await.unwrap();
    app.post(&[support::shop_event(
        "p-bob",
        "order.placed",
        bob_new,
        "o-bob",
        at(1),
    )])
    .await;
    let log = log_of(&store, "bob", 1).await;
    assert_eq!(log[0].outcome, Outcome::Sent, "{log:?}");
    app.shutdown().await;
}

/// A delayed DSN is a warning, not a bounce; a DSN suppresses its
/// Final-Recipient, never the DSN's own From or To; a message that is no
/// DSN is refused with why and kept as a dead letter.
async fn dsns_suppress_only_failures<S: Store>(store: S) {
    let app = spawn(store.clone(), false, None).await;
    shop(&app, "u-bob", "customer.updated", "bob", at(60)).await;
    let (status, a) = post(&app, "/v1/bounces", &fixture("dsn-delayed.eml"), &[]).await;
    assert_eq!(status, StatusCode::OK, "{a}");
    assert_eq!(a["events"], 0, "{a}");
    assert_eq!(a["not_bounces"][0]["action"], "delayed", "{a}");
    assert!(!suppressed(&store, "bob").await);
    // A customer whose address is the DSN's To (the envelope sender) is
    // not touched by anna's bounce.
    let bounces =
        r#"{"id":"shop","email":"bounces+0123456789abcdef0123456789abcdef@shop.example"}"#;
    app.post(&[support::shop_event(
        "u-shop",
        "customer.updated",
        bounces,
        "x",
        at(60),
    )])
    .await;
    let (status, a) = post(&app, "/v1/bounces", &fixture("dsn-hard.eml"), &[]).await;
    assert_eq!(status, StatusCode::OK, "{a}");
    assert_eq!(
        a["message_id"], "<0123456789abcdef0123456789abcdef@shop.example>",
        "{a}"
    );
    // anna is not a customer: her address goes on the suppression list.
    assert_eq!(a["suppressed_addresses"], 1, "{a}");
    assert!(!suppressed(&store, "shop").await);
    let mut tx = store.begin().await.unwrap();
    let listed = tx.suppression("anna@example.com").await.unwrap();
    let shop_listed = tx
        .suppression("bounces+0123456789abcdef0123456789abcdef@shop.example")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert!(
        listed
            .unwrap()
            .starts_with("hard bounce (dsn report <20261126091503.4F2A1C0042@mx.example.net>)")
    );
    assert_eq!(shop_listed, None);
    // So when anna becomes a customer, her order confirmation is skipped.
    shop(&app, "p-anna", "order.placed", "anna", at(1)).await;
    shop(&app, "p-bob", "order.placed", "bob", at(1)).await;
    let log = log_of(&store, "anna", 1).await;
    assert_eq!(log[0].outcome, Outcome::Skipped);
    assert!(
        log[0]
            .detail
            .starts_with("address suppressed: hard bounce (dsn report"),
        "{}",
        log[0].detail
    );
    let log = log_of(&store, "bob", 1).await;
    assert_eq!(log[0].outcome, Outcome::Sent);
    // Not a DSN.
    let plain = "From: a@b.example\r\nSubject: out of office\r\n\r\nI am away.\r\n";
    let (status, a) = post(&app, "/v1/bounces", plain, &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        a["error"]
            .as_str()
            .unwrap()
            .contains("is not multipart/report"),
        "{a}"
    );
    let letters = store.dead_letters().await.unwrap();
    assert_eq!(letters.len(), 1);
    assert!(
        letters[0]
            .letter
            .reason
            .starts_with("POST /v1/bounces: Content-Type"),
        "{}",
        letters[0].letter.reason
    );
    app.shutdown().await;
}

/// A provider that is not configured says how to configure it; an unknown
/// one names those there are; a malformed item is named, dead-lettered, and
/// the others of the same call are applied.
async fn unconfigured_and_malformed<S: Store>(store: S) {
    let app = spawn(store.clone(), false, None).await;
    let (status, a) = post(&app, "/v1/providers/ses", &fixture("ses-bounce.json"), &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        a["error"]
            .as_str()
            .unwrap()
            .contains("AFTERCARE_SES_TOPIC_ARNS"),
        "{a}"
    );
    let (status, a) = post(&app, "/v1/providers/sparkpost", "{}", &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        a["error"]
            .as_str()
            .unwrap()
            .contains("ses, sendgrid, postmark, mailgun"),
        "{a}"
    );
    app.shutdown().await;
    let app = spawn(store.clone(), true, None).await;
    shop(&app, "u-anna", "customer.updated", "anna", at(60)).await;
    let body = r#"[{"email":"anna@example.com","timestamp":"yesterday","event":"bounce","sg_event_id":"sg-1"},
        {"email":"anna@example.com","timestamp":1795684520,"event":"spamreport","sg_event_id":"sg-2"}]"#;
    let ts = "1795684600";
    let sig = sendgrid_sign(ts, body);
    let (status, a) = post(
        &app,
        "/v1/providers/sendgrid",
        body,
        &[
            ("X-Twilio-Email-Event-Webhook-Timestamp", ts),
            ("X-Twilio-Email-Event-Webhook-Signature", &sig),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{a}");
    assert_eq!(
        a["rejected"],
        json!(["[0].timestamp: expected Unix seconds, found a string"])
    );
    assert_eq!(a["events"], 1, "{a}");
    assert!(suppressed(&store, "anna").await);
    let letters = store.dead_letters().await.unwrap();
    assert_eq!(letters.len(), 1);
    assert!(letters[0].letter.payload.contains("yesterday"));
    // SNS asks to confirm the subscription: the operator is told the URL;
    // nothing is fetched or applied.
    let (status, a) = post(
        &app,
        "/v1/providers/ses",
        &fixture("ses-subscription.json"),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{a}");
    assert_eq!(a["events"], 0);
    assert!(
        a["note"]
            .as_str()
            .unwrap()
            .contains("https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription"),
        "{a}"
    );
    // An address that is no address: named, kept.
    let bad =
        fixture("postmark-bounce.json").replace("\"anna@example.com\"", "\"anna at example\"");
    let path = format!("/v1/providers/postmark?secret={POSTMARK_SECRET}");
    let (status, a) = post(&app, &path, &bad, &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{a}");
    assert!(
        a["rejected"][0]
            .as_str()
            .unwrap()
            .contains("\"anna at example\" is not an email address"),
        "{a}"
    );
    let letters = store.dead_letters().await.unwrap();
    assert_eq!(letters.len(), 2, "{letters:#?}");
    // Not JSON at all: 400, kept.
    let (status, a) = post(
        &app,
        "/v1/providers/postmark?secret=pm-0123456789abcdef",
        "{oops",
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        a["error"]
            .as_str()
            .unwrap()
            .starts_with("the body is not JSON"),
        "{a}"
    );
    assert_eq!(store.dead_letters().await.unwrap().len(), 3);
    app.shutdown().await;
}

/// A DSN names the message it returns: the customer that message went to is
/// the one concerned, even when the address that failed is another (the
/// customer's mailbox forwards to it), and that other address is not listed.
async fn a_dsn_concerns_the_customer_its_message_went_to<S: Store>(store: S) {
    let app = spawn(store.clone(), false, None).await;
    shop(&app, "p-fwd", "order.placed", "fwd", at(5)).await;
    let mut sent = None;
    for _ in 0..300 {
        sent = store
            .outbox()
            .await
            .unwrap()
            .into_iter()
            .find(|o| o.customer_id == "fwd" && o.message_id.is_some());
        if sent.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let message_id = sent.expect("the confirmation sent").message_id.unwrap();
    let dsn = fixture("dsn-hard.eml")
        .replace("anna@example.com", "fwd.target@elsewhere.example")
        .replace(
            "<0123456789abcdef0123456789abcdef@shop.example>",
            &message_id,
        );
    let (status, answer) = post(&app, "/v1/bounces", &dsn, &[]).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(suppressed(&store, "fwd").await, "{answer}");
    let mut tx = store.begin().await.unwrap();
    assert_eq!(
        tx.suppression("fwd.target@elsewhere.example")
            .await
            .unwrap(),
        None,
        "the forwarding target is nobody's address: {answer}"
    );
    tx.commit().await.unwrap();
    app.shutdown().await;
}

support::on_both_stores!(
    a_dsn_concerns_the_customer_its_message_went_to,
    ses_bounce_suppresses,
    sendgrid_bounce_suppresses,
    postmark_bounce_suppresses,
    mailgun_bounce_suppresses,
    a_dsn_suppresses_the_final_recipient,
    complaints_suppress,
    bad_signatures_change_nothing,
    soft_bounces_suppress_on_the_third_within_7_days,
    dsns_suppress_only_failures,
    unconfigured_and_malformed,
    bounce_events_out_of_order,
);
