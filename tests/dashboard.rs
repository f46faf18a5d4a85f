//! The dashboard at `/admin`, end to end: the real service in-process
//! (HTTP, scheduler and sender, `.eml` files), a real run through the
//! webhook, opens and clicks made by following the tracking links in the
//! emails, then headless Chromium driven over WebDriver through the login,
//! the charts, the funnel with its conversion, the delivery log's search,
//! the template preview and logout. Screenshots are kept in
//! `target/test-artifacts/dashboard/`. Plain HTTP checks the cookie, the
//! CSRF and Origin checks, and that the dashboard is off without a token.

mod support;
#[path = "dashboard/webdriver.rs"]
mod webdriver;

use std::path::{Path, PathBuf};
use std::time::Duration;

use aftercare::config::Role;
use aftercare::engine::outbox::OutboxStatus;
use aftercare::service::Loaded;
use aftercare::store::{MemStore, Store};
use chrono::Utc;
use reqwest::StatusCode;
use support::app::App;

const TOKEN: &str = "dashboard-test-token-0123456789";

/// A browser's user agent: tracking counts its opens and clicks as a
/// person's (after the first 10 seconds).
const PERSON: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36";

fn artifacts() -> PathBuf {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from);
    target.join("test-artifacts").join("dashboard")
}

/// The shipped sequences and templates, with open and click tracking on
/// for transactional mail too (the shipped fulfilment mails are
/// transactional, and the run should have opens and clicks to show).
fn content(dir: &Path) -> Loaded {
    let seq = dir.join("sequences");
    std::fs::create_dir_all(&seq).unwrap();
    for entry in std::fs::read_dir("sequences").unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let text = if path.file_name().unwrap() == "_policies.yaml" {
            let tracked = "tracking: {opens: [transactional, value, promo], clicks: [transactional, value, promo]}";
            let changed = text.replace(
                "tracking: {opens: [value, promo], clicks: [value, promo]}",
                tracked,
            );
            assert_ne!(changed, text, "the shipped policies name their tracking");
            changed
        } else {
            text
        };
        std::fs::write(seq.join(path.file_name().unwrap()), text).unwrap();
    }
    let loaded = aftercare::validate::load(&seq, Path::new("templates"));
    assert!(!loaded.diagnostics.has_errors(), "{}", loaded.diagnostics);
    Loaded {
        catalog: loaded.catalog,
        templates: loaded.templates,
    }
}

fn customer(id: &str) -> String {
    format!(
        r#"{{"id":"{id}","email":"{id}@example.com","first_name":"Anna","locale":"en","timezone":"Europe/Budapest","marketing_consent":true}}"#
    )
}

fn placed(id: &str, c: &str, order: &str, total: &str) -> String {
    format!(
        r#"{{"id":"{id}","type":"order.placed","occurred_at":"{}","customer":{},"order":{{"id":"{order}","number":"N-{order}","currency":"EUR","total":"{total}","items":[{{"sku":"CAM-200","name":"DSLR 200","category":"camera","quantity":1,"unit_price":"{total}"}}]}}}}"#,
        Utc::now().to_rfc3339(),
        customer(c)
    )
}

fn shipment(id: &str, kind: &str, c: &str, order: &str) -> String {
    format!(
        r#"{{"id":"{id}","type":"{kind}","occurred_at":"{}","customer":{},"order":{{"id":"{order}"}},"shipment":{{"id":"s-{order}","carrier":"GLS","tracking_number":"T-{order}","tracking_url":"https://tracking.example/{order}"}}}}"#,
        Utc::now().to_rfc3339(),
        customer(c)
    )
}

fn bounced(id: &str, c: &str) -> String {
    format!(
        r#"{{"id":"{id}","type":"email.bounced","occurred_at":"{}","customer":{},"data":{{"kind":"hard"}}}}"#,
        Utc::now().to_rfc3339(),
        customer(c)
    )
}

/// Waits until `n` emails are sent and none is left in the queue.
async fn sent<S: Store>(store: &S, n: usize) {
    for _ in 0..300 {
        let rows = store.outbox().await.unwrap();
        let done = rows
            .iter()
            .all(|o| !matches!(o.status, OutboxStatus::Pending | OutboxStatus::Sending));
        if done
            && rows
                .iter()
                .filter(|o| o.status == OutboxStatus::Sent)
                .count()
                >= n
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "{n} emails not sent in 30 s: {:#?}",
        store.outbox().await.unwrap()
    );
}

/// The HTML part of the `.eml` file the sender wrote for `template` to `to`.
fn html_of(outbox: &Path, to: &str, template: &str) -> String {
    for entry in std::fs::read_dir(outbox).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        let msg = mail_parser::MessageParser::default().parse(&bytes).unwrap();
        let header = |n: &str| msg.header_raw(n).map(str::trim).unwrap_or("").to_string();
        if header("To").contains(to) && header("X-Aftercare-Template") == template {
            return msg.body_html(0).unwrap().to_string();
        }
    }
    panic!("no {template} to {to} in {}", outbox.display());
}

/// The URLs in `html` that start with `prefix`.
fn links(html: &str, prefix: &str) -> Vec<String> {
    html.match_indices(prefix)
        .map(|(i, _)| {
            html[i..]
                .chars()
                .take_while(|c| !matches!(c, '"' | '\'' | '<' | '>' | ' '))
                .collect::<String>()
                .replace("&amp;", "&")
        })
        .collect()
}

fn base(app: &App) -> String {
    format!("http://{}", app.addr)
}

/// A real run: two customers order, one parcel ships and arrives, a bounce
/// comes in; after the machine window Anna opens her confirmation and
/// clicks her shipping email's link, then orders again.
async fn a_real_run<S: Store>(store: &S, app: &App) {
    app.post(&[
        placed("a1", "anna", "o1", "129.90"),
        placed("b1", "bob", "o9", "20.00"),
    ])
    .await;
    app.post(&[shipment("a2", "shipment.shipped", "anna", "o1")])
        .await;
    app.post(&[shipment("a3", "shipment.delivered", "anna", "o1")])
        .await;
    sent(store, 4).await;
    app.post(&[bounced("b2", "bob")]).await;
    // Opens and clicks within 10 s of sending are a machine's.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let person = reqwest::Client::builder()
        .user_agent(PERSON)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let confirmation = html_of(&app.outbox, "anna@example.com", "order-confirmation");
    let pixel = &links(&confirmation, &format!("{}/t/o/", base(app)))[0];
    assert_eq!(
        person.get(pixel).send().await.unwrap().status(),
        StatusCode::OK
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
    let shipped = html_of(&app.outbox, "anna@example.com", "order-shipped");
    let click = &links(&shipped, &format!("{}/t/c/", base(app)))[0];
    let r = person.get(click).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_eq!(r.headers()["location"], "https://tracking.example/o1");
    let activity = store.activity("anna").await.unwrap();
    assert_eq!(activity.len(), 2);
    assert!(activity.iter().all(|a| !a.machine), "{activity:#?}");
    // The click's last touch brings the next order.
    tokio::time::sleep(Duration::from_millis(20)).await;
    app.post(&[placed("a4", "anna", "o2", "59.00")]).await;
    sent(store, 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_a_real_browser() {
    // Fails, saying how to install them, when chromium or its driver is missing.
    let driver = webdriver::Driver::start().await;
    let (store, _db) = support::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let app = support::app::spawn_loaded(
        store.clone(),
        content(dir.path()),
        &["--admin-token", TOKEN],
        &[Role::Http, Role::Schedule, Role::Send],
    )
    .await;
    a_real_run(&store, &app).await;
    let shots = artifacts();
    let b = driver.browser().await;
    let site = base(&app);

    // Without a session every page leads to the login form.
    b.goto(&format!("{site}/admin/funnels")).await;
    assert_eq!(b.url().await, format!("{site}/admin/login"));
    // A wrong token: the form again with an error, and no cookie.
    b.type_into("#token", "not-the-admin-token-at-all").await;
    b.click("form button[type=submit]").await;
    // The refusal is the form again, at the same address.
    for _ in 0..100 {
        if b.count(".error").await > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(b.url().await, format!("{site}/admin/login"));
    assert!(b.text(".error").await.contains("not the admin token"));
    assert!(
        b.cookies()
            .await
            .iter()
            .all(|c| c["name"] != "aftercare_session"),
        "{:?}",
        b.cookies().await
    );
    b.screenshot(&shots.join("login-refused.png")).await;

    // The token: the overview, with the run's numbers.
    b.type_into("#token", TOKEN).await;
    b.click("form button[type=submit]").await;
    b.wait_for_url(&format!("{site}/admin")).await;
    let cookie = b
        .cookies()
        .await
        .into_iter()
        .find(|c| c["name"] == "aftercare_session")
        .expect("a session cookie");
    assert_eq!(cookie["httpOnly"], true);
    assert_eq!(cookie["sameSite"], "Strict");
    assert_eq!(cookie["path"], "/admin");
    assert_ne!(cookie["value"].as_str().unwrap(), TOKEN);
    assert_eq!(b.text("[data-tile=sent] .value").await, "5");
    assert_eq!(b.text("[data-tile=bounced] .value").await, "1");
    assert_eq!(b.text("#attributed-orders").await, "1");
    assert_eq!(b.text("#attributed-revenue").await, "59 EUR");
    // Anna and Bob ordered in the period; Anna twice.
    assert_eq!(b.text("#repeat-rate").await, "50.0%");
    assert_eq!(
        b.text("#retention").await,
        "—",
        "nobody was a customer before"
    );
    // The chart is drawn: a canvas of real size with coloured pixels.
    let drawn = b
        .run(
            r#"const el = document.querySelector('#outcomes');
               const c = el.querySelector('canvas');
               if (!c) return {canvas: false};
               const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
               let coloured = 0;
               for (let i = 0; i < px.length; i += 4) {
                 const [r, g, b, a] = [px[i], px[i + 1], px[i + 2], px[i + 3]];
                 if (a > 0 && !(r === g && g === b)) coloured++;
               }
               return {canvas: true, width: c.width, height: c.height,
                       points: Number(el.getAttribute('data-points')), coloured};"#,
        )
        .await;
    assert_eq!(drawn["canvas"], true, "{drawn}");
    assert!(drawn["width"].as_u64().unwrap() > 300, "{drawn}");
    assert!(drawn["height"].as_u64().unwrap() > 200, "{drawn}");
    assert_eq!(drawn["points"], 7 * 24 + 1, "{drawn}");
    assert!(
        drawn["coloured"].as_u64().unwrap() > 50,
        "the lines are drawn: {drawn}"
    );
    b.screenshot(&shots.join("overview.png")).await;

    // The funnel: fulfilment's shipping email brought Anna's second order.
    b.click("a[href='/admin/funnels']").await;
    b.wait_for_url(&format!("{site}/admin/funnels")).await;
    let shipped = "section.funnel[data-sequence=fulfilment] tr[data-step=order-shipped]";
    let row = b.text(shipped).await;
    assert_eq!(b.count(shipped).await, 1);
    let cells: Vec<String> = b
        .run(&format!(
            "return Array.from(document.querySelectorAll(\"{shipped} td\")).map(td => td.textContent.trim());"
        ))
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    // step, template, entered, emailed, opened, clicked, converted, repeat, revenue
    assert_eq!(cells[2], "1", "{row}");
    assert_eq!(cells[3], "1 100.0%", "{row}");
    assert_eq!(cells[4], "1 100.0%", "opened (the click): {row}");
    assert_eq!(cells[5], "1 100.0%", "{row}");
    assert_eq!(cells[6], "1 100.0%", "converted: {row}");
    assert_eq!(cells[7], "1", "a repeat order: {row}");
    assert_eq!(cells[8], "59 EUR", "{row}");
    let confirmation: Vec<String> = b
        .run("return Array.from(document.querySelectorAll(\"section.funnel[data-sequence=fulfilment] tr[data-step=order-confirmation] td\")).map(td => td.textContent.trim());")
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(confirmation[2], "3", "three orders, three confirmations");
    assert_eq!(confirmation[4], "1 33.3%", "Anna opened hers");
    assert_eq!(
        confirmation[6], "0 0.0%",
        "the order went to the later touch"
    );
    b.screenshot(&shots.join("funnels.png")).await;

    // The delivery log finds Anna's emails by her address.
    b.click("a[href='/admin/deliveries']").await;
    b.wait_for_url(&format!("{site}/admin/deliveries")).await;
    b.type_into("input[name=q]", "ANNA@example.com").await;
    b.click("form.search button").await;
    b.wait_for_url(&format!(
        "{site}/admin/deliveries?q=ANNA%40example.com&outcome="
    ))
    .await;
    let addresses: Vec<String> = b
        .run("return Array.from(document.querySelectorAll('#delivery-log tbody tr td:nth-child(3)')).map(td => td.textContent);")
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(addresses.len(), 4, "{addresses:?}");
    assert!(addresses.iter().all(|a| a == "anna@example.com"));
    b.screenshot(&shots.join("deliveries.png")).await;
    // By template, with an outcome.
    b.goto(&format!(
        "{site}/admin/deliveries?q=order-shipped&outcome=sent"
    ))
    .await;
    assert_eq!(b.count("#delivery-log tbody tr").await, 1);
    b.goto(&format!("{site}/admin/deliveries?q=nobody")).await;
    assert_eq!(b.count("#delivery-log tbody tr").await, 0);
    assert!(b.text("#no-entries").await.contains("Nothing found"));

    // The preview, in Hungarian with Anna's own order.
    b.goto(&format!(
        "{site}/admin/preview?template=order-shipped&locale=hu&customer=anna"
    ))
    .await;
    assert_eq!(b.text("#preview-locale").await, "hu");
    assert!(
        b.text("#preview-subject").await.contains("N-o2"),
        "her latest order"
    );
    let frame_html = b
        .run("return document.querySelector('iframe.email').getAttribute('src');")
        .await;
    assert!(
        frame_html
            .as_str()
            .unwrap()
            .starts_with("/admin/preview/frame?")
    );
    b.screenshot(&shots.join("preview.png")).await;
    // With sample data.
    b.goto(&format!("{site}/admin/preview?template=order-confirmation"))
        .await;
    assert_eq!(b.text("#preview-locale").await, "en");

    // Logout: back to the login form, and the pages want it again.
    b.goto(&format!("{site}/admin")).await;
    b.click("form.logout button").await;
    b.wait_for_url(&format!("{site}/admin/login")).await;
    assert!(
        b.cookies()
            .await
            .iter()
            .all(|c| c["name"] != "aftercare_session")
    );
    b.goto(&format!("{site}/admin")).await;
    assert_eq!(b.url().await, format!("{site}/admin/login"));
    b.close().await;
    app.shutdown().await;
}

// ------------------------------------------------------------ plain HTTP

/// A form body, as a browser sends it.
fn form<S: AsRef<str>>(pairs: &[(&str, S)]) -> String {
    let mut f = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        f.append_pair(k, v.as_ref());
    }
    f.finish()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Logs in as a browser on the page would; the session cookie's value.
async fn log_in(site: &str) -> String {
    let r = client()
        .post(format!("{site}/admin/login"))
        .header("origin", site)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("token", TOKEN)]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let set = r.headers()["set-cookie"].to_str().unwrap();
    set.split(';').next().unwrap().to_string()
}

/// The CSRF token in the logout form of the overview.
async fn csrf(site: &str, cookie: &str) -> String {
    let page = client()
        .get(format!("{site}/admin"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let at = page
        .find("name=\"csrf\" value=\"")
        .expect("the logout form")
        + 19;
    page[at..at + 64].to_string()
}

async fn http_app(flags: &[&str]) -> App {
    support::app::spawn_with(MemStore::new(), None, flags, &[Role::Http]).await
}

#[tokio::test]
async fn the_login_sets_a_strict_http_only_cookie() {
    let app = http_app(&["--admin-token", TOKEN]).await;
    let site = base(&app);
    // A wrong token: 401, the form again, no cookie.
    let r = client()
        .post(format!("{site}/admin/login"))
        .header("origin", &site)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("token", "wrong-token-0123456789")]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().get("set-cookie").is_none());
    assert!(r.text().await.unwrap().contains("not the admin token"));
    // The right one from another site: refused.
    let r = client()
        .post(format!("{site}/admin/login"))
        .header("origin", "https://evil.example")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("token", TOKEN)]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.headers().get("set-cookie").is_none());
    // The right one: a session, not the token, in a cookie the page's
    // scripts cannot read and other sites cannot send.
    let r = client()
        .post(format!("{site}/admin/login"))
        .header("origin", &site)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("token", TOKEN)]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/admin");
    let set = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(set.starts_with("aftercare_session=v1."), "{set}");
    assert!(!set.contains(TOKEN), "{set}");
    for attribute in [
        "; HttpOnly",
        "; SameSite=Strict",
        "; Path=/admin",
        "; Max-Age=43200",
    ] {
        assert!(set.contains(attribute), "{attribute} in {set}");
    }
    assert!(!set.contains("Secure"), "plain http: {set}");
    let cookie = set.split(';').next().unwrap().to_string();
    let r = client()
        .get(format!("{site}/admin"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert_eq!(r.headers()["cache-control"], "no-store");
    // Without the cookie, or with a forged one: to the login form.
    for bad in ["", "aftercare_session=v1.9999999999.00.00", TOKEN] {
        let r = client()
            .get(format!("{site}/admin/deliveries"))
            .header("cookie", bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{bad}");
        assert_eq!(r.headers()["location"], "/admin/login");
    }
    // A bad period is said to be one.
    let r = client()
        .get(format!("{site}/admin?period=1y"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("choose 7d, 30d or 90d"));
    app.shutdown().await;

    // Behind https the cookie is Secure.
    let app = http_app(&[
        "--admin-token",
        TOKEN,
        "--public-url",
        "https://mail.shop.example",
    ])
    .await;
    let r = client()
        .post(format!("{}/admin/login", base(&app)))
        .header("origin", "https://mail.shop.example")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("token", TOKEN)]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(
        r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .ends_with("; Secure")
    );
    app.shutdown().await;
}

#[tokio::test]
async fn posts_want_the_sessions_csrf_token_and_the_same_origin() {
    let app = http_app(&["--admin-token", TOKEN]).await;
    let site = base(&app);
    let cookie = log_in(&site).await;
    let token = csrf(&site, &cookie).await;
    let logout = |origin: Option<&str>, fields: Vec<(&'static str, String)>| {
        let mut r = client()
            .post(format!("{site}/admin/logout"))
            .header("cookie", &cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(&fields));
        if let Some(o) = origin {
            r = r.header("origin", o);
        }
        r.send()
    };
    // Without the CSRF token, with a wrong one, with another session's.
    let other = csrf(&site, &log_in(&site).await).await;
    assert_ne!(other, token);
    for form in [
        vec![],
        vec![("csrf", "0".repeat(64))],
        vec![("csrf", other.clone())],
    ] {
        let r = logout(Some(&site), form.clone()).await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{form:?}");
        assert!(r.headers().get("set-cookie").is_none());
    }
    // The right token from another origin, or with no origin at all.
    let r = logout(Some("https://evil.example"), vec![("csrf", token.clone())])
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = logout(None, vec![("csrf", token.clone())]).await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // A POST without a session at all.
    let r = client()
        .post(format!("{site}/admin/logout"))
        .header("origin", &site)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("csrf", token.clone())]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Right: logged out, the cookie removed.
    let r = logout(Some(&site), vec![("csrf", token.clone())])
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/admin/login");
    let set = r.headers()["set-cookie"].to_str().unwrap();
    assert!(
        set.starts_with("aftercare_session=;") && set.contains("Max-Age=0"),
        "{set}"
    );
    // A Referer from the dashboard does when a browser sends no Origin.
    let cookie = log_in(&site).await;
    let token = csrf(&site, &cookie).await;
    let r = client()
        .post(format!("{site}/admin/logout"))
        .header("cookie", &cookie)
        .header("referer", format!("{site}/admin"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("csrf", token)]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    app.shutdown().await;
}

#[tokio::test]
async fn without_a_token_the_dashboard_is_off() {
    let app = http_app(&[]).await;
    for path in ["/admin", "/admin/login", "/admin/assets/dashboard.js"] {
        let r = client()
            .get(format!("{}{path}", base(&app)))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
        assert!(
            r.text()
                .await
                .unwrap()
                .contains("set AFTERCARE_ADMIN_TOKEN")
        );
    }
    app.shutdown().await;
}

#[tokio::test]
async fn the_chart_library_is_served_from_the_binary() {
    let app = http_app(&["--admin-token", TOKEN]).await;
    let r = client()
        .get(format!("{}/admin/assets/uPlot.iife.min.js", base(&app)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    assert!(
        r.text()
            .await
            .unwrap()
            .starts_with("/*! https://github.com/leeoniya/uPlot (v1.6.32) */")
    );
    let r = client()
        .get(format!("{}/admin/assets/uPlot.LICENSE.txt", base(&app)))
        .send()
        .await
        .unwrap();
    assert!(r.text().await.unwrap().contains("MIT License"));
    let r = client()
        .get(format!("{}/admin/assets/..%2Fsecret", base(&app)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    app.shutdown().await;
}

#[test]
fn the_attribution_window_is_checked() {
    let args = support::service_args(&[]);
    assert_eq!(
        args.attribution_window().unwrap(),
        chrono::Duration::days(5)
    );
    let args = support::service_args(&["--attribution-window", "36h"]);
    assert_eq!(
        args.attribution_window().unwrap(),
        chrono::Duration::hours(36)
    );
    for bad in ["0s", "91d", "5 days"] {
        let args = support::service_args(&["--attribution-window", bad]);
        let e = args.attribution_window().unwrap_err().to_string();
        assert!(e.starts_with("AFTERCARE_ATTRIBUTION_WINDOW: "), "{e}");
    }
}

/// The operator's pages: a customer's journey answers whether the customer
/// got an email and why; a dead letter is listed and its replay (with the
/// session's CSRF token) goes through the ingest path and says what became
/// of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_journey_and_the_dead_letters() {
    let roles = [Role::Http, Role::Schedule, Role::Send];
    let app =
        support::app::spawn_with(MemStore::new(), None, &["--admin-token", TOKEN], &roles).await;
    let site = base(&app);
    app.post(&[placed("p1", "c1", "o1", "59.00")]).await;
    // An item the webhook cannot use: dead-lettered, naming no customer.
    let r = client()
        .post(app.url())
        .body(r#"{"id":"bad1","type":"order.placed","occurred_at":"yesterday"}"#)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
    let cookie = log_in(&site).await;
    let get = |path: String| {
        let cookie = cookie.clone();
        async move {
            let r = client()
                .get(path)
                .header("cookie", cookie)
                .send()
                .await
                .unwrap();
            (r.status(), r.text().await.unwrap())
        }
    };
    let url = format!("{site}/admin/journey?id=c1&template=order-confirmation");
    let mut page = String::new();
    for _ in 0..100 {
        page = get(url.clone()).await.1;
        if page.contains("answer yes") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(page.contains("answer yes"), "{page}");
    assert!(
        page.contains("email_sent") && page.contains("enrolled"),
        "{page}"
    );
    let (status, page) = get(format!("{site}/admin/journey?id=nobody")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("Nothing is stored about this customer"),
        "{page}"
    );
    let (status, _) = get(format!("{site}/admin/journey?id=c1&template=nope")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (_, page) = get(format!("{site}/admin/dead-letters")).await;
    assert!(
        page.contains("bad1") && page.contains("Replay all"),
        "{page}"
    );
    let token = csrf(&site, &cookie).await;
    let r = client()
        .post(format!("{site}/admin/dead-letters/replay"))
        .header("cookie", &cookie)
        .header("origin", &site)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("csrf", token.as_str())]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let page = r.text().await.unwrap();
    assert!(page.contains("still dead"), "{page}");
    // Without the CSRF token: refused, nothing replayed.
    let r = client()
        .post(format!("{site}/admin/dead-letters/replay"))
        .header("cookie", &cookie)
        .header("origin", &site)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    app.shutdown().await;
}
