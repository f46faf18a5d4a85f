//! Bounce and complaint reports as `POST /v1/bounces` and
//! `POST /v1/providers/<name>` read them once their proof is checked: the
//! same bytes as a DSN (raw mail, RFC 3464), as SendGrid's and Postmark's
//! bodies, as an SES notification inside an SNS message, and as a Mailgun
//! webhook (whose signature check runs first). Each report read becomes its
//! event, as the webhook makes it.
#![no_main]

use aftercare::bounce::providers::{Parsed, mailgun, postmark, sendgrid, ses};
use aftercare::bounce::{Notice, dsn};
use libfuzzer_sys::fuzz_target;

fn events(notices: &[Notice]) {
    for n in notices {
        let _ = n.event("c", &n.address);
        let _ = n.reason();
    }
}

fuzz_target!(|body: &[u8]| {
    // `dsn::parse` catches mail-parser's panics on broken MIME (and says the
    // body is malformed); libfuzzer-sys's panic hook would abort on them all
    // the same, so the default hook is put back: a panic nothing catches
    // still reaches fuzz_target!'s own catch and aborts as a crash.
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let _ = std::panic::take_hook();
    });
    let now = chrono::DateTime::from_timestamp(1_795_684_503, 0).expect("a time");
    if let Ok(d) = dsn::parse(body, now) {
        events(&d.notices);
    }
    let parsed: Vec<Parsed> = [sendgrid::parse(body), postmark::parse(body)]
        .into_iter()
        .flatten()
        .collect();
    for p in &parsed {
        events(&p.notices);
    }
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        if let Some(kind) = v.get("Type").and_then(|t| t.as_str()) {
            let _ = ses::canonical(&v, kind);
        }
        if let Ok(p) = ses::notification(&v, "m") {
            events(&p.notices);
        }
    }
    let config = mailgun::Config {
        signing_key: "key".into(),
        max_age: chrono::TimeDelta::minutes(10),
        seen: Default::default(),
    };
    if let Ok(p) = mailgun::parse(&config, body, now) {
        events(&p.notices);
    }
});
