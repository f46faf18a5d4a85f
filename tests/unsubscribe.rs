//! One-click unsubscribe and open/click tracking, end to end: the real
//! service on a loopback port over PostgreSQL and SQLite, events through the
//! webhook, emails sent over SMTP to a real server (aiosmtpd) and read from
//! its Maildir, links followed over HTTP as a mail client would.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aftercare::clock::SystemClock;
use aftercare::config::{DatabaseArgs, Role};
use aftercare::engine::outbox::OutboxStatus;
use aftercare::send::links::{self, Links};
use aftercare::service::{Loaded, serve};
use aftercare::store::{ActivityKind, OutboxView, Store};
use chrono::Utc;
use reqwest::StatusCode;
use tokio_util::sync::CancellationToken;

const POLICIES: &str = "default_locale: en\nsender: {from: \"Aurora Shop <hello@shop.example>\"}\n";

/// A receipt (transactional), a tip (value) and an offer (promo) for every order.
const SEQUENCES: &[(&str, &str)] = &[
    (
        "receipt.yaml",
        "id: receipt\nname: Receipt\ncategory: transactional\ntrigger: {event: order.placed}\nsteps:\n  - email: order-confirmation\n",
    ),
    (
        "tips.yaml",
        "id: tips\nname: Tips\ncategory: value\ntrigger: {event: order.placed}\nsteps:\n  - email: product-tips\n",
    ),
    (
        "offer.yaml",
        "id: offer\nname: Offer\ncategory: promo\ntrigger: {event: order.placed}\nsteps:\n  - email: camera-tripod-offer\n",
    ),
];

struct App {
    base: String,
    stop: CancellationToken,
    done: tokio::task::JoinHandle<anyhow::Result<()>>,
    /// Where the SMTP server keeps what it accepted (Maildir `new/`).
    outbox: PathBuf,
    _smtp: support::smtp::SmtpServer,
    _dir: tempfile::TempDir,
}

impl App {
    async fn post(&self, event: String) {
        let r = reqwest::Client::new()
            .post(format!("{}/v1/events", self.base))
            .body(event)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED);
    }

    async fn shutdown(self) {
        self.stop.cancel();
        self.done.await.unwrap().unwrap();
    }
}

/// The service with every role, the three sequences and `policies` added to
/// the base policies, its public URL its own loopback address.
async fn spawn<S: Store>(store: S, policies: &str) -> App {
    spawn_roles(
        store,
        policies,
        &[Role::Ingest, Role::Schedule, Role::Send, Role::Http],
    )
    .await
}

async fn spawn_roles<S: Store>(store: S, policies: &str, roles: &[Role]) -> App {
    let dir = tempfile::tempdir().unwrap();
    let seq = dir.path().join("sequences");
    std::fs::create_dir(&seq).unwrap();
    std::fs::write(seq.join("_policies.yaml"), format!("{POLICIES}{policies}")).unwrap();
    for (name, text) in SEQUENCES {
        std::fs::write(seq.join(name), text).unwrap();
    }
    let loaded = aftercare::validate::load(&seq, Path::new("templates"));
    assert!(!loaded.diagnostics.has_errors(), "{}", loaded.diagnostics);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let base = format!("http://{addr}");
    let smtp = support::smtp::SmtpServer::start();
    let outbox = smtp.dir.join("new");
    let args = aftercare::config::ServiceArgs {
        db: DatabaseArgs {
            database_url: "unused".into(),
        },
        outbox_dir: dir.path().join("outbox"),
        http_addr: addr,
        public_url: base.clone(),
        roles: roles.to_vec(),
        ..support::service_args(&["--smtp-url", &smtp.url()])
    };
    let stop = CancellationToken::new();
    let done = tokio::spawn(serve(
        store,
        args,
        Loaded {
            catalog: loaded.catalog,
            templates: loaded.templates,
        },
        Arc::new(SystemClock),
        stop.clone(),
        Some(listener),
    ));
    App {
        base,
        stop,
        done,
        outbox,
        _smtp: smtp,
        _dir: dir,
    }
}

fn order(id: &str, customer: &str, order: &str) -> String {
    let c = format!(
        r#"{{"id":"{customer}","email":"{customer}@example.com","first_name":"Anna","locale":"hu-HU","marketing_consent":true}}"#
    );
    support::shop_event(id, "order.placed", &c, order, Utc::now())
}

/// Waits until the customer has `n` outbox rows, all finished; returns them
/// by template.
async fn finished<S: Store>(store: &S, customer: &str, n: usize) -> Vec<OutboxView> {
    for _ in 0..200 {
        let rows: Vec<OutboxView> = store
            .outbox()
            .await
            .unwrap()
            .into_iter()
            .filter(|o| o.customer_id == customer)
            .collect();
        let done = rows.iter().all(|o| {
            matches!(
                o.status,
                OutboxStatus::Sent | OutboxStatus::Skipped | OutboxStatus::Failed
            )
        });
        if rows.len() >= n && done {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{customer}: {n} emails not finished in 20 s");
}

/// The status and reason of the customer's email with `template` that came
/// last.
fn last<'a>(rows: &'a [OutboxView], template: &str) -> (&'a OutboxStatus, Option<&'a str>) {
    let r = rows
        .iter()
        .filter(|o| o.template == template)
        .max_by_key(|o| o.id)
        .unwrap_or_else(|| panic!("no {template} in {rows:#?}"));
    (&r.status, r.last_error.as_deref())
}

/// One email as the transport wrote it.
struct Mail {
    template: String,
    headers: BTreeMap<String, String>,
    html: String,
}

/// The messages the SMTP server accepted for `to`.
fn mails(outbox: &Path, to: &str) -> Vec<Mail> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(outbox).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let msg = mail_parser::MessageParser::default()
            .parse(&bytes)
            .expect("a MIME message");
        let raw = |name: &str| msg.header_raw(name).map(|v| v.trim().to_string());
        if !raw("To").is_some_and(|t| t.contains(to)) {
            continue;
        }
        let mut headers = BTreeMap::new();
        for name in [
            "List-Unsubscribe",
            "List-Unsubscribe-Post",
            "X-Aftercare-Template",
        ] {
            if let Some(v) = raw(name) {
                // Unfolded.
                headers.insert(name.to_string(), v.replace("\r\n", "").replace('\n', ""));
            }
        }
        let html = msg.body_html(0).expect("an HTML part").to_string();
        let template = headers["X-Aftercare-Template"].clone();
        out.push(Mail {
            template,
            headers,
            html,
        });
    }
    out
}

/// The one email with `template` among `mails`.
fn one<'a>(mails: &'a [Mail], template: &str) -> &'a Mail {
    let found: Vec<&Mail> = mails.iter().filter(|m| m.template == template).collect();
    assert_eq!(found.len(), 1, "{template}");
    found[0]
}

fn count(mails: &[Mail], template: &str) -> usize {
    mails.iter().filter(|m| m.template == template).count()
}

/// The URLs in `html` that start with `prefix`.
fn links_in(html: &str, prefix: &str) -> Vec<String> {
    html.match_indices(prefix)
        .map(|(i, _)| {
            html[i..]
                .chars()
                .take_while(|c| !matches!(c, '"' | '\'' | '<' | '>' | ' '))
                .collect()
        })
        .collect()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/130.0 Safari/537.36")
        .build()
        .unwrap()
}

/// RFC 8058's one-click POST, in the form the RFC recommends
/// (`multipart/form-data`; the urlencoded form is read too).
async fn one_click(url: &str) -> reqwest::Response {
    client()
        .post(url)
        .header("content-type", "multipart/form-data; boundary=aftercare-b0undary")
        .body("--aftercare-b0undary\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\nOne-Click\r\n--aftercare-b0undary--\r\n")
        .send()
        .await
        .unwrap()
}

/// A token with one character changed.
fn altered(url: &str) -> String {
    let mut s = url.to_string();
    let last = s.pop().unwrap();
    s.push(if last == 'A' { 'B' } else { 'A' });
    s
}

async fn unsubscribed_events<S: Store>(store: &S) -> i64 {
    store.event_count().await.unwrap()
}

async fn unsubscribe_and_tracking<S: Store>(store: S) {
    let app = spawn(store.clone(), "").await;
    // Anna and Bob each order: a receipt, a tip and an offer each.
    app.post(order("a1", "anna", "o1")).await;
    app.post(order("b1", "bob", "o1")).await;
    finished(&store, "anna", 3).await;
    finished(&store, "bob", 3).await;
    let anna = mails(&app.outbox, "anna@example.com");
    assert_eq!(anna.len(), 3);

    // Value and promo mail carries RFC 8058's headers and a visible link;
    // the receipt carries neither, nor tracking.
    let receipt = one(&anna, "order-confirmation");
    assert!(!receipt.headers.contains_key("List-Unsubscribe"));
    assert!(links_in(&receipt.html, &format!("{}/t/", app.base)).is_empty());
    let tips = one(&anna, "product-tips");
    let header = &tips.headers["List-Unsubscribe"];
    assert!(
        header.starts_with(&format!("<{}/u/", app.base)) && header.ends_with('>'),
        "{header}"
    );
    assert_eq!(
        tips.headers["List-Unsubscribe-Post"],
        "List-Unsubscribe=One-Click"
    );
    let unsubscribe = header.trim_matches(['<', '>']).to_string();
    assert!(
        tips.html.contains(&format!("href=\"{unsubscribe}\"")),
        "the body links to the same page, not through the click redirect"
    );
    assert_eq!(
        one(&anna, "camera-tripod-offer").headers["List-Unsubscribe"],
        *header
    );

    // Tracking: one pixel; links go through the redirect.
    let opens = links_in(&tips.html, &format!("{}/t/o/", app.base));
    assert_eq!(opens.len(), 1, "{}", tips.html);
    let clicks = links_in(
        &one(&anna, "camera-tripod-offer").html,
        &format!("{}/t/c/", app.base),
    );
    assert!(!clicks.is_empty());

    // A click redirects to the URL signed into its token, and nowhere else.
    let r = client().get(&clicks[0]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    assert!(location.starts_with("https://"), "{location}");
    assert!(!location.contains(&app.base));
    for bad in [
        altered(&clicks[0]),
        format!("{}/t/c/{}", app.base, "x".repeat(40)),
        // An unsubscribe or open token is not a click token.
        unsubscribe.replace("/u/", "/t/c/"),
        opens[0].replace("/t/o/", "/t/c/"),
    ] {
        let r = client().get(&bad).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{bad}");
        assert!(r.headers().get("location").is_none());
    }
    // The open pixel: a GIF that is not cached.
    let r = client().get(&opens[0]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "image/gif");
    assert!(
        r.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("no-store")
    );
    assert_eq!(r.bytes().await.unwrap().len(), 43);
    // Apple's privacy proxy fetches with a bare user agent.
    let proxy = reqwest::Client::builder()
        .user_agent("Mozilla/5.0")
        .build()
        .unwrap();
    assert_eq!(
        proxy.get(&opens[0]).send().await.unwrap().status(),
        StatusCode::OK
    );
    let activity = store.activity("anna").await.unwrap();
    let kinds: Vec<(ActivityKind, bool)> = activity.iter().map(|a| (a.kind, a.machine)).collect();
    // Within seconds of sending, both count as a machine's; the proxy's
    // open does whatever the time.
    assert_eq!(
        kinds,
        [
            (ActivityKind::Click, true),
            (ActivityKind::Open, true),
            (ActivityKind::Open, true)
        ],
        "{activity:#?}"
    );
    assert_eq!(activity[0].url.as_deref(), Some(location.as_str()));
    assert!(activity.iter().all(|a| a.customer_id == "anna"));

    // The page: a GET shows the choices in Anna's language and changes nothing.
    let before = unsubscribed_events(&store).await;
    let r = client().get(&unsubscribe).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-language"], "hu");
    let page = r.text().await.unwrap();
    assert!(page.contains("Nem kérek több ajánlatot"), "{page}");
    assert!(page.contains("name=\"scope\" value=\"promo\""), "{page}");
    assert!(
        page.contains("name=\"scope\" value=\"marketing\""),
        "{page}"
    );
    assert!(page.contains("Aurora Shop"), "{page}");
    assert_eq!(
        unsubscribed_events(&store).await,
        before,
        "a GET never unsubscribes"
    );

    // A forged or altered token is refused and changes nothing.
    for bad in [
        altered(&unsubscribe),
        format!("{}/u/{}", app.base, "A".repeat(60)),
        opens[0].replace("/t/o/", "/u/"),
    ] {
        let r = one_click(&bad).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{bad}");
    }
    assert_eq!(unsubscribed_events(&store).await, before);

    // One click: 200 at once, one event however often it is clicked.
    let r = one_click(&unsubscribe).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(unsubscribed_events(&store).await, before + 1);
    assert_eq!(one_click(&unsubscribe).await.status(), StatusCode::OK);
    assert_eq!(unsubscribed_events(&store).await, before + 1);

    // Bob says "no more offers" on the page.
    let bob = mails(&app.outbox, "bob@example.com");
    let bob_page = one(&bob, "product-tips").headers["List-Unsubscribe"]
        .trim_matches(['<', '>'])
        .to_string();
    let r = client()
        .post(&bob_page)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("scope=promo")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("ajánlatot"));

    // The next order: Anna still gets her receipt and nothing else; Bob
    // gets his receipt and the tip, not the offer.
    app.post(order("a2", "anna", "o2")).await;
    app.post(order("b2", "bob", "o2")).await;
    let rows = finished(&store, "anna", 6).await;
    assert_eq!(last(&rows, "order-confirmation").0, &OutboxStatus::Sent);
    assert_eq!(
        last(&rows, "product-tips"),
        (&OutboxStatus::Skipped, Some("no marketing consent"))
    );
    assert_eq!(last(&rows, "camera-tripod-offer").0, &OutboxStatus::Skipped);
    let rows = finished(&store, "bob", 6).await;
    assert_eq!(last(&rows, "order-confirmation").0, &OutboxStatus::Sent);
    assert_eq!(last(&rows, "product-tips").0, &OutboxStatus::Sent);
    assert_eq!(
        last(&rows, "camera-tripod-offer"),
        (
            &OutboxStatus::Skipped,
            Some("unsubscribed from offers (promo mail)")
        )
    );
    // As files: the second receipt arrived, nothing else did.
    let anna = mails(&app.outbox, "anna@example.com");
    assert_eq!(count(&anna, "order-confirmation"), 2);
    assert_eq!(count(&anna, "product-tips"), 1);
    assert_eq!(count(&anna, "camera-tripod-offer"), 1);
    let bob = mails(&app.outbox, "bob@example.com");
    assert_eq!(count(&bob, "product-tips"), 2);
    assert_eq!(count(&bob, "camera-tripod-offer"), 1);
    app.shutdown().await;
}

/// Sunset counts people, not machines: two marketing emails that only a
/// privacy proxy opened stop the third; one a person opened does not.
async fn sunset_counts_human_opens_only<S: Store>(store: S) {
    let app = spawn(store.clone(), "sunset: {after_unopened: 2}\n").await;
    app.post(order("c1", "carol", "o1")).await;
    app.post(order("d1", "dave", "o1")).await;
    finished(&store, "carol", 3).await;
    finished(&store, "dave", 3).await;
    let proxy = reqwest::Client::builder()
        .user_agent("Mozilla/5.0")
        .build()
        .unwrap();
    for mail in mails(&app.outbox, "carol@example.com") {
        for open in links_in(&mail.html, &format!("{}/t/o/", app.base)) {
            assert_eq!(
                proxy.get(&open).send().await.unwrap().status(),
                StatusCode::OK
            );
        }
    }
    // Later than a machine's reflex, Dave opens his tip himself.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let dave = mails(&app.outbox, "dave@example.com");
    let open = &links_in(
        &one(&dave, "product-tips").html,
        &format!("{}/t/o/", app.base),
    )[0];
    assert_eq!(
        client().get(open).send().await.unwrap().status(),
        StatusCode::OK
    );
    let carol = store.activity("carol").await.unwrap();
    assert_eq!(carol.len(), 2);
    assert!(carol.iter().all(|a| a.machine), "{carol:#?}");
    let seen = store.activity("dave").await.unwrap();
    assert_eq!(seen.len(), 1);
    assert!(!seen[0].machine, "{seen:#?}");

    app.post(order("c2", "carol", "o2")).await;
    app.post(order("d2", "dave", "o2")).await;
    let rows = finished(&store, "carol", 6).await;
    assert_eq!(last(&rows, "order-confirmation").0, &OutboxStatus::Sent);
    let (status, reason) = last(&rows, "product-tips");
    assert_eq!(status, &OutboxStatus::Skipped);
    assert!(reason.unwrap().starts_with("sunset"), "{reason:?}");
    let rows = finished(&store, "dave", 6).await;
    assert_eq!(last(&rows, "product-tips").0, &OutboxStatus::Sent);
    app.shutdown().await;
}

/// `tracking: {opens: [], clicks: []}` turns both off: no pixel, links as
/// written; and so, with nothing known of opens, no sunset either.
async fn tracking_can_be_switched_off<S: Store>(store: S) {
    let app = spawn(
        store.clone(),
        "sunset: {after_unopened: 1}\ntracking: {opens: [], clicks: []}\n",
    )
    .await;
    app.post(order("e1", "erin", "o1")).await;
    finished(&store, "erin", 3).await;
    for mail in mails(&app.outbox, "erin@example.com") {
        assert!(
            links_in(&mail.html, &format!("{}/t/", app.base)).is_empty(),
            "{}",
            mail.template
        );
    }
    app.post(order("e2", "erin", "o2")).await;
    let rows = finished(&store, "erin", 6).await;
    assert_eq!(last(&rows, "product-tips").0, &OutboxStatus::Sent);
    app.shutdown().await;
}

/// Mail already queued when the customer unsubscribes is not sent: the
/// sender reads the stored customer when it takes each email. Here no
/// sender runs while the emails wait; one runs after the click.
async fn queued_mail_is_stopped_too<S: Store>(store: S) {
    let app = spawn_roles(store.clone(), "", &[Role::Ingest, Role::Http]).await;
    app.post(order("f1", "frank", "o1")).await;
    let queued = store.outbox().await.unwrap();
    assert_eq!(queued.len(), 3);
    assert!(queued.iter().all(|o| o.status == OutboxStatus::Pending));
    // The link of Frank's emails, signed with the service's own secret.
    let secret = links::secret(&store, None).await.unwrap();
    let url = Links::new(&app.base, &secret, None)
        .unwrap()
        .unsubscribe_url("frank");
    assert_eq!(one_click(&url).await.status(), StatusCode::OK);
    let loaded =
        aftercare::validate::load(&app._dir.path().join("sequences"), Path::new("templates"));
    let worker = aftercare::send::worker::Worker {
        store: store.clone(),
        catalog: loaded.catalog,
        templates: loaded.templates,
        transport: aftercare::send::transport::EmlDir {
            dir: app.outbox.clone(),
        },
        clock: Arc::new(SystemClock),
        retry: aftercare::send::worker::DEFAULT_RETRY.to_vec(),
        compose: aftercare::send::worker::Compose::Message,
        instance: aftercare::instance::Instance::solo(),
        max_email_bytes: aftercare::send::worker::DEFAULT_MAX_EMAIL_BYTES,
        concurrency: 1,
        bounces: None,
        paused: Default::default(),
        dkim: None,
        links: Arc::new(Links::new(&app.base, &secret, None).unwrap()),
    };
    while !worker.tick().await.unwrap().is_empty() {}
    let rows = finished(&store, "frank", 3).await;
    assert_eq!(last(&rows, "order-confirmation").0, &OutboxStatus::Sent);
    assert_eq!(
        last(&rows, "product-tips"),
        (&OutboxStatus::Skipped, Some("no marketing consent"))
    );
    assert_eq!(
        last(&rows, "camera-tripod-offer"),
        (&OutboxStatus::Skipped, Some("no marketing consent"))
    );
    app.shutdown().await;
}

/// Every store keeps opens and clicks, and the sunset rule's history reads
/// them: an email sent with a pixel is unopened until a person opens or
/// clicks it; a machine's open changes nothing; mail without a pixel is
/// unknown.
async fn activity_feeds_the_history<S: Store>(store: S) {
    use aftercare::store::{Activity, Tx};
    let dir = tempfile::tempdir().unwrap();
    let seq = dir.path().join("sequences");
    std::fs::create_dir(&seq).unwrap();
    std::fs::write(seq.join("_policies.yaml"), POLICIES).unwrap();
    for (name, text) in SEQUENCES {
        std::fs::write(seq.join(name), text).unwrap();
    }
    let loaded = aftercare::validate::load(&seq, Path::new("templates"));
    let now = Utc::now();
    let event = aftercare::event::Event::parse(&order("g1", "gina", "o1")).unwrap();
    aftercare::ingest::ingest_batch(&store, &loaded.catalog, &[event], "test", now)
        .await
        .unwrap();
    let worker = aftercare::send::worker::Worker {
        store: store.clone(),
        catalog: loaded.catalog.clone(),
        templates: loaded.templates.clone(),
        transport: aftercare::send::transport::EmlDir {
            dir: dir.path().join("outbox"),
        },
        clock: Arc::new(SystemClock),
        retry: aftercare::send::worker::DEFAULT_RETRY.to_vec(),
        compose: aftercare::send::worker::Compose::Message,
        instance: aftercare::instance::Instance::solo(),
        max_email_bytes: aftercare::send::worker::DEFAULT_MAX_EMAIL_BYTES,
        concurrency: 1,
        bounces: None,
        paused: Default::default(),
        dkim: None,
        links: Arc::new(Links::new("https://m.example", b"0123456789abcdef", None).unwrap()),
    };
    while !worker.tick().await.unwrap().is_empty() {}
    let rows = finished(&store, "gina", 3).await;
    let key = |t: &str| {
        rows.iter()
            .find(|o| o.template == t)
            .unwrap()
            .idempotency_key
            .clone()
    };
    let history = |store: S| async move {
        let mut tx = store.begin().await.unwrap();
        let mut h: Vec<(aftercare::sequence::model::Category, Option<bool>)> = tx
            .sent_history("gina", -1)
            .await
            .unwrap()
            .into_iter()
            .map(|s| (s.category, s.opened))
            .collect();
        h.sort_by_key(|(c, _)| c.as_str());
        h
    };
    use aftercare::sequence::model::Category::{Promo, Transactional, Value};
    assert_eq!(
        history(store.clone()).await,
        [
            (Promo, Some(false)),
            (Transactional, None),
            (Value, Some(false))
        ]
    );
    let tips = key("product-tips");
    let offer = key("camera-tripod-offer");
    assert!(store.sent_at(&tips).await.unwrap().is_some());
    assert_eq!(store.sent_at("no such key").await.unwrap(), None);
    // Microseconds: what PostgreSQL keeps.
    let at = chrono::DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap();
    let activity = |key: &str, kind, machine| Activity {
        idempotency_key: key.to_string(),
        customer_id: "gina".into(),
        kind,
        url: (kind == ActivityKind::Click).then(|| "https://shop.example/c/tripods".to_string()),
        at,
        machine,
    };
    store
        .record_activity(&activity(&tips, ActivityKind::Open, true))
        .await
        .unwrap();
    store
        .record_activity(&activity(&offer, ActivityKind::Click, false))
        .await
        .unwrap();
    assert_eq!(
        history(store.clone()).await,
        [
            (Promo, Some(true)),
            (Transactional, None),
            (Value, Some(false))
        ]
    );
    let kept = store.activity("gina").await.unwrap();
    assert_eq!(kept.len(), 2);
    assert_eq!(kept[0], activity(&tips, ActivityKind::Open, true));
    assert_eq!(kept[1], activity(&offer, ActivityKind::Click, false));
}

/// The secret is generated once and every instance on the database gets
/// the same, so links one signs another accepts.
async fn the_secret_is_generated_once_and_shared<S: Store>(a: S, b: S) {
    let (x, y) = tokio::join!(links::secret(&a, None), links::secret(&b, None));
    let (x, y) = (x.unwrap(), y.unwrap());
    assert_eq!(x, y);
    assert_eq!(x.len(), 64, "32 random bytes as hex");
    assert_eq!(links::secret(&a, None).await.unwrap(), x, "kept");
    let one = Links::new("https://m.example", &x, None).unwrap();
    let two = Links::new("https://m.example", &y, None).unwrap();
    let url = one.unsubscribe_url("c1");
    assert!(two.verify(url.rsplit('/').next().unwrap()).is_ok());
    // A configured secret wins, and a short one is refused.
    assert_eq!(
        links::secret(&a, Some("a-configured-secret"))
            .await
            .unwrap(),
        b"a-configured-secret"
    );
    let e = links::secret(&a, Some("short")).await.unwrap_err();
    assert!(e.to_string().contains("AFTERCARE_SECRET"), "{e}");
}

mod pg {
    use super::*;

    macro_rules! on_pg {
        ($($name:ident),*) => {$(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let db = support::PgDb::new().await;
                super::$name(db.store.clone()).await;
                db.drop().await;
            }
        )*};
    }
    on_pg!(
        activity_feeds_the_history,
        unsubscribe_and_tracking,
        queued_mail_is_stopped_too,
        sunset_counts_human_opens_only,
        tracking_can_be_switched_off
    );

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_secret_is_generated_once_and_shared() {
        let db = support::PgDb::new().await;
        let other = aftercare::store::PgStore::connect(&db.url).await.unwrap();
        super::the_secret_is_generated_once_and_shared(db.store.clone(), other.clone()).await;
        other.pool.close().await;
        db.drop().await;
    }
}

mod sqlite {
    use super::*;

    macro_rules! on_sqlite {
        ($($name:ident),*) => {$(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (store, _dir) = support::sqlite().await;
                super::$name(store).await;
            }
        )*};
    }
    on_sqlite!(
        activity_feeds_the_history,
        unsubscribe_and_tracking,
        queued_mail_is_stopped_too,
        sunset_counts_human_opens_only,
        tracking_can_be_switched_off
    );

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_secret_is_generated_once_and_shared() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        let a = aftercare::store::SqliteStore::connect(&url).await.unwrap();
        a.migrate().await.unwrap();
        let b = aftercare::store::SqliteStore::connect(&url).await.unwrap();
        super::the_secret_is_generated_once_and_shared(a, b).await;
    }
}

#[tokio::test]
async fn the_memory_store_keeps_activity() {
    activity_feeds_the_history(aftercare::store::MemStore::new()).await;
}

/// The memory store of `simulate` and `demo` keeps it too.
#[tokio::test]
async fn the_memory_store_keeps_the_secret() {
    let m = aftercare::store::MemStore::new();
    the_secret_is_generated_once_and_shared(m.clone(), m).await;
}

/// `validate` warns about a value or promo template that shows no
/// unsubscribe link, and not about a transactional one.
#[test]
fn validate_warns_about_marketing_without_an_unsubscribe_link() {
    let dir = tempfile::tempdir().unwrap();
    let seq = dir.path().join("sequences");
    let tpl = dir.path().join("templates");
    std::fs::create_dir_all(&seq).unwrap();
    for (name, text) in SEQUENCES {
        std::fs::write(seq.join(name), text).unwrap();
    }
    std::fs::write(seq.join("_policies.yaml"), POLICIES).unwrap();
    for (id, body) in [
        ("order-confirmation", "<p>Thanks</p>"),
        ("product-tips", "<p>Tips</p>"),
        (
            "camera-tripod-offer",
            "<p>Offer</p><a href=\"{{unsubscribe_url}}\">Unsubscribe</a>",
        ),
    ] {
        std::fs::create_dir_all(tpl.join(id)).unwrap();
        std::fs::write(
            tpl.join(id).join("en.hbs"),
            format!("---\nsubject: \"s\"\n---\n{body}\n"),
        )
        .unwrap();
    }
    let loaded = aftercare::validate::load(&seq, &tpl);
    let text = loaded.diagnostics.to_string();
    assert!(
        text.contains("product-tips/en.hbs:1:1: warning: template `product-tips` is sent as value or promo mail but shows no unsubscribe link"),
        "{text}"
    );
    assert!(!text.contains("`camera-tripod-offer` is sent"), "{text}");
    assert!(!text.contains("`order-confirmation` is sent"), "{text}");
    assert!(!loaded.diagnostics.has_errors(), "{text}");
}

/// `List-Unsubscribe` reaches the receiver as written, however long the
/// token (a long customer id) and with the `mailto:` beside the link: folded
/// at most between its two URIs, never encoded.
#[test]
fn the_header_is_written_as_given() {
    use aftercare::send::{Envelope, build_message};
    let links = Links::new(
        "https://mail.shop.example",
        b"0123456789abcdef",
        Some("unsubscribe@shop.example"),
    )
    .unwrap();
    let customer = "c".repeat(200);
    let url = links.unsubscribe_url(&customer);
    let value = links.list_unsubscribe(&url);
    assert!(value.len() > 500, "{value}");
    let content = aftercare::template::Rendered {
        locale: "en".into(),
        subject: "Hello".into(),
        preheader: None,
        html: "<p>Hi</p>".into(),
        text: "Hi".into(),
    };
    let env = Envelope {
        to: "anna@example.com",
        idempotency_key: "k",
        sequence: "s",
        template: "t",
        date: Utc::now(),
        list_unsubscribe: Some(&value),
    };
    let policies = aftercare::sequence::model::Policies::default();
    let bytes = build_message(&policies, &env, &content)
        .unwrap()
        .formatted();
    let text = String::from_utf8(bytes.clone()).unwrap();
    assert!(!text.contains("=?utf-8?"), "{text}");
    let msg = mail_parser::MessageParser::default().parse(&bytes).unwrap();
    let raw = msg.header_raw("List-Unsubscribe").unwrap();
    let unfolded: String = raw.replace("\r\n", "").trim().to_string();
    let normalized = unfolded.split_whitespace().collect::<Vec<_>>().join(" ");
    assert_eq!(normalized, value);
    assert_eq!(
        msg.header_raw("List-Unsubscribe-Post").unwrap().trim(),
        "List-Unsubscribe=One-Click"
    );
}
