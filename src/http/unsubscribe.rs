//! `GET|POST /u/TOKEN`: the unsubscribe page and RFC 8058 one-click
//! unsubscribe.
//!
//! - `POST /u/TOKEN` with `List-Unsubscribe=One-Click` (what a mail client
//!   sends for the `List-Unsubscribe-Post` header) unsubscribes from value
//!   and promo mail at once: 200, no login, no confirmation. The page's
//!   forms post `scope=promo` ("no more offers") or `scope=marketing`.
//! - `GET /u/TOKEN` shows a small page in the customer's language with
//!   those two choices. A GET alone changes nothing: mail scanners follow
//!   links.
//!
//! An unsubscribe becomes a `customer.unsubscribed` event (`data.scope`
//! `promo` or `marketing`) ingested through the one ingest path, so it is in
//! `events` (the customer's history) and the stored profile, which the
//! sender reads before every email: mail already queued is stopped too.
//! Its id is derived from the customer, the scope and the profile's last
//! change, so a repeated click is one event, while an unsubscribe after a
//! later re-subscription is a new one. A token that does not verify gets
//! 404 and changes nothing.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::Notify;

use crate::clock::Clock;
use crate::engine::profile::{Profile, UnsubscribeScope};
use crate::event::Event;
use crate::send::links::Links;
use crate::send::token::Token;
use crate::sequence::model::Catalog;
use crate::store::{Store, Tx};

/// What the unsubscribe and tracking routes need.
pub struct Mailing<S> {
    pub store: S,
    pub catalog: Arc<Catalog>,
    pub clock: Arc<dyn Clock>,
    /// Wakes the sender after an unsubscribe is written.
    pub kick: Arc<Notify>,
    pub links: Arc<Links>,
}

pub fn routes<S: Store>(m: Arc<Mailing<S>>) -> Router {
    Router::new()
        .route("/u/{token}", get(page::<S>).post(unsubscribe::<S>))
        .with_state(m)
}

/// The customer a token names, and their profile as stored.
async fn customer<S: Store>(m: &Mailing<S>, token: &str) -> Result<Profile, Response> {
    let Ok(Token::Unsubscribe { customer_id }) = m.links.verify(token) else {
        return Err(not_found());
    };
    let profile = async {
        let mut tx = m.store.begin().await?;
        let p = tx.lock_profile(&customer_id).await?;
        // Read only: dropped, the transaction rolls back and lets go.
        drop(tx);
        crate::store::Result::Ok(p)
    }
    .await;
    match profile {
        Ok(Some(p)) => Ok(Arc::unwrap_or_clone(p)),
        Ok(None) => Err(not_found()),
        Err(e) => {
            tracing::error!(customer_id = %customer_id, "unsubscribe: loading the customer: {e}");
            Err(unavailable())
        }
    }
}

async fn page<S: Store>(State(m): State<Arc<Mailing<S>>>, Path(token): Path<String>) -> Response {
    let profile = match customer(&m, &token).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let words = words(profile.customer.locale.as_deref());
    let shop = shop_name(&m.catalog);
    let body = if profile.unsubscribed {
        format!("<p>{}</p>", words.already)
    } else {
        let offers = if profile.promo_unsubscribed {
            format!("<p>{}</p>", fill(words.done_offers, &shop))
        } else {
            choice("promo", words.offers, words.offers_note)
        };
        format!(
            "<p>{}</p>{offers}{}",
            fill(words.intro, &shop),
            choice("marketing", words.all, words.all_note)
        )
    };
    html(StatusCode::OK, words, &body)
}

/// One form: a button that posts `scope` back to this page's URL.
fn choice(scope: &str, button: &str, note: &str) -> String {
    format!(
        "<form method=\"post\"><input type=\"hidden\" name=\"scope\" value=\"{scope}\">\
         <button type=\"submit\">{button}</button><p class=\"note\">{note}</p></form>"
    )
}

async fn unsubscribe<S: Store>(
    State(m): State<Arc<Mailing<S>>>,
    Path(token): Path<String>,
    body: Bytes,
) -> Response {
    let profile = match customer(&m, &token).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let Some((scope, one_click)) = scope_of(&body) else {
        return (
            StatusCode::BAD_REQUEST,
            "the body must be List-Unsubscribe=One-Click, or scope=promo or scope=marketing",
        )
            .into_response();
    };
    let words = words(profile.customer.locale.as_deref());
    let shop = shop_name(&m.catalog);
    let done = match scope {
        UnsubscribeScope::Promo => fill(words.done_offers, &shop),
        UnsubscribeScope::Marketing => fill(words.done_all, &shop),
    };
    let already = match scope {
        UnsubscribeScope::Promo => profile.unsubscribed || profile.promo_unsubscribed,
        UnsubscribeScope::Marketing => profile.unsubscribed,
    };
    if !already {
        let now = m.clock.now();
        let event = match unsubscribed_event(&profile, scope, one_click, now) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(customer_id = %profile.customer.id, "unsubscribe: {e}");
                return (StatusCode::INTERNAL_SERVER_ERROR, "the request failed").into_response();
            }
        };
        match crate::ingest::ingest_batch(&m.store, &m.catalog, &[event], "unsubscribe", now).await
        {
            Ok(r) if r.refused.is_empty() => {
                tracing::info!(customer_id = %profile.customer.id, scope = scope.as_str(),
                    duplicate = r.duplicates > 0, "unsubscribed");
                m.kick.notify_waiters();
            }
            Ok(r) => {
                tracing::error!(customer_id = %profile.customer.id, "unsubscribe refused by the store: {:?}", r.refused);
                return unavailable();
            }
            Err(e) => {
                tracing::error!(customer_id = %profile.customer.id, "unsubscribe: {e}");
                return unavailable();
            }
        }
    }
    html(StatusCode::OK, words, &format!("<p>{done}</p>"))
}

/// The scope a POST body asks for, and whether it is RFC 8058's one-click
/// body: `List-Unsubscribe=One-Click` is "no more marketing"; the page
/// sends `scope=promo` or `scope=marketing`. An empty body (a client that
/// posts without the body RFC 8058 asks for) is a one-click too. RFC 8058
/// says the body SHOULD be `multipart/form-data` and MAY be urlencoded:
/// both are read.
fn scope_of(body: &[u8]) -> Option<(UnsubscribeScope, bool)> {
    let mut scope = None;
    let mut one_click = body.iter().all(u8::is_ascii_whitespace);
    let fields: Vec<(String, String)> = match multipart_fields(body) {
        Some(f) => f,
        None => url::form_urlencoded::parse(body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect(),
    };
    for (k, v) in &fields {
        match (k.as_str(), v.as_str()) {
            ("List-Unsubscribe", "One-Click") => one_click = true,
            ("scope", s) => scope = Some(UnsubscribeScope::parse(s)?),
            _ => {}
        }
    }
    match (scope, one_click) {
        (Some(s), _) => Some((s, false)),
        (None, true) => Some((UnsubscribeScope::Marketing, true)),
        (None, false) => None,
    }
}

/// The fields of a `multipart/form-data` body (RFC 7578), if it is one: it
/// starts with a boundary line `--…`; each part names its field in
/// `Content-Disposition: form-data; name="…"` and holds the value after a
/// blank line. `None` for any other body.
fn multipart_fields(body: &[u8]) -> Option<Vec<(String, String)>> {
    let text = std::str::from_utf8(body).ok()?;
    let text = text.trim_start_matches(['\r', '\n']);
    let first = text.lines().next()?;
    let boundary = first
        .trim_end()
        .strip_prefix("--")
        .filter(|b| !b.is_empty())?;
    let delimiter = format!("--{boundary}");
    let mut fields = Vec::new();
    for part in text.split(delimiter.as_str()).skip(1) {
        if part.starts_with("--") {
            break;
        }
        let part = part
            .strip_prefix("\r\n")
            .or_else(|| part.strip_prefix('\n'))
            .unwrap_or(part);
        let (head, value) = part
            .split_once("\r\n\r\n")
            .or_else(|| part.split_once("\n\n"))?;
        let name = head.lines().find_map(|l| {
            let lower = l.to_ascii_lowercase();
            if !lower.starts_with("content-disposition:") {
                return None;
            }
            let at = lower.find("name=\"")? + 6;
            let rest = &l[at..];
            Some(rest[..rest.find('"')?].to_string())
        })?;
        let value = value
            .strip_suffix("\r\n")
            .or_else(|| value.strip_suffix('\n'))
            .unwrap_or(value);
        fields.push((name, value.to_string()));
    }
    Some(fields)
}

/// The `customer.unsubscribed` event for a click. Its id depends on the
/// customer, the scope and when the profile last changed: the same click
/// twice is one event; a click after the customer subscribed again is new.
fn unsubscribed_event(
    p: &Profile,
    scope: UnsubscribeScope,
    one_click: bool,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Event, String> {
    let mut h = Sha256::new();
    for part in [
        p.customer.id.as_str(),
        scope.as_str(),
        &p.as_of.map(|t| t.to_rfc3339()).unwrap_or_default(),
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    let id = format!("unsubscribe_{}", &hex::encode(h.finalize())[..32]);
    let event = json!({
        "id": id,
        "type": "customer.unsubscribed",
        "occurred_at": now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "customer": {"id": p.customer.id, "email": p.customer.email.as_str()},
        "data": {"scope": scope.as_str(), "via": if one_click { "one-click" } else { "page" }},
    });
    Event::parse(&event.to_string()).map_err(|e| e.message)
}

fn shop_name(catalog: &Catalog) -> String {
    let (name, email) = catalog.policies.sender.name_and_email();
    let name = if name.is_empty() { email } else { name };
    handlebars::html_escape(&name)
}

fn fill(text: &str, shop: &str) -> String {
    text.replace("{shop}", shop)
}

/// A token that does not verify, or a customer no longer known. The page
/// cannot know the customer's language: English.
fn not_found() -> Response {
    html(
        StatusCode::NOT_FOUND,
        &EN,
        &format!("<p>{}</p>", EN.invalid),
    )
}

fn unavailable() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, HeaderValue::from_static("30"))],
        "the service cannot record this now; please try again in a minute",
    )
        .into_response()
}

/// A small page that works without scripts, styles or images from
/// elsewhere, is not cached and is not indexed.
fn html(status: StatusCode, w: &Words, body: &str) -> Response {
    let page = format!(
        "<!DOCTYPE html><html lang=\"{lang}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"robots\" content=\"noindex\"><title>{title}</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;\
         line-height:1.5;color:#2b2b2b}}button{{font-size:1rem;padding:.6rem 1rem;margin-top:1rem;\
         cursor:pointer}}.note{{color:#666;margin:.3rem 0 0}}</style></head>\
         <body><h1>{title}</h1>{body}</body></html>",
        lang = w.lang,
        title = w.title,
    );
    let mut r = (status, page).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-robots-tag", HeaderValue::from_static("noindex"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
        ),
    );
    if let Ok(v) = HeaderValue::from_str(w.lang) {
        h.insert(header::CONTENT_LANGUAGE, v);
    }
    r
}

/// The page's words in one language.
pub struct Words {
    pub lang: &'static str,
    title: &'static str,
    intro: &'static str,
    offers: &'static str,
    offers_note: &'static str,
    all: &'static str,
    all_note: &'static str,
    done_offers: &'static str,
    done_all: &'static str,
    already: &'static str,
    invalid: &'static str,
}

/// The page's language for a customer locale (`hu-HU` → `hu`): the shipped
/// languages, else English.
pub fn words(locale: Option<&str>) -> &'static Words {
    let lang = locale
        .and_then(|l| l.split(['-', '_']).next())
        .unwrap_or("en")
        .to_ascii_lowercase();
    match lang.as_str() {
        "hu" => &HU,
        "bg" => &BG,
        "th" => &TH,
        "zh" => &ZH,
        _ => &EN,
    }
}

const EN: Words = Words {
    lang: "en",
    title: "Email preferences",
    intro: "Choose which emails you no longer want from {shop}. Emails about your orders and deliveries keep coming.",
    offers: "No more offers",
    offers_note: "Stops promotional emails; tips and reminders keep coming.",
    all: "No more marketing",
    all_note: "Stops all tips, reminders and offers.",
    done_offers: "Done: you will get no more offers from {shop}.",
    done_all: "Done: you will get no more marketing emails from {shop}.",
    already: "You are unsubscribed from marketing emails.",
    invalid: "This link is not valid.",
};

const HU: Words = Words {
    lang: "hu",
    title: "E-mail-beállítások",
    intro: "Válassza ki, milyen e-maileket nem kér többé tőlünk ({shop}). A rendelésekről és a szállításról továbbra is értesítjük.",
    offers: "Nem kérek több ajánlatot",
    offers_note: "Nem küldünk több promóciós e-mailt; a tippeket és emlékeztetőket továbbra is megkapja.",
    all: "Nem kérek marketing e-maileket",
    all_note: "Nem küldünk több tippet, emlékeztetőt és ajánlatot.",
    done_offers: "Kész: nem kap több ajánlatot tőlünk ({shop}).",
    done_all: "Kész: nem kap több marketing e-mailt tőlünk ({shop}).",
    already: "Ön leiratkozott a marketing e-mailekről.",
    invalid: "Ez a hivatkozás nem érvényes.",
};

const BG: Words = Words {
    lang: "bg",
    title: "Настройки за имейли",
    intro: "Изберете кои имейли от {shop} не желаете повече. Имейлите за поръчки и доставки ще продължат.",
    offers: "Без повече оферти",
    offers_note: "Спираме рекламните имейли; съветите и напомнянията остават.",
    all: "Без маркетингови имейли",
    all_note: "Спираме всички съвети, напомняния и оферти.",
    done_offers: "Готово: няма да получавате повече оферти от {shop}.",
    done_all: "Готово: няма да получавате повече маркетингови имейли от {shop}.",
    already: "Отписани сте от маркетинговите имейли.",
    invalid: "Тази връзка не е валидна.",
};

const TH: Words = Words {
    lang: "th",
    title: "การตั้งค่าอีเมล",
    intro: "เลือกอีเมลจาก {shop} ที่คุณไม่ต้องการรับอีกต่อไป อีเมลเกี่ยวกับคำสั่งซื้อและการจัดส่งจะยังส่งถึงคุณตามปกติ",
    offers: "ไม่รับข้อเสนออีก",
    offers_note: "หยุดอีเมลโปรโมชัน แต่ยังรับเคล็ดลับและการแจ้งเตือน",
    all: "ไม่รับอีเมลการตลาดอีก",
    all_note: "หยุดเคล็ดลับ การแจ้งเตือน และข้อเสนอทั้งหมด",
    done_offers: "เรียบร้อย: คุณจะไม่ได้รับข้อเสนอจาก {shop} อีก",
    done_all: "เรียบร้อย: คุณจะไม่ได้รับอีเมลการตลาดจาก {shop} อีก",
    already: "คุณได้ยกเลิกการรับอีเมลการตลาดแล้ว",
    invalid: "ลิงก์นี้ไม่ถูกต้อง",
};

const ZH: Words = Words {
    lang: "zh",
    title: "邮件偏好设置",
    intro: "请选择您不想再从 {shop} 收到的邮件。订单和配送邮件将照常发送。",
    offers: "不再接收优惠信息",
    offers_note: "停止促销邮件；仍接收使用技巧和提醒。",
    all: "不再接收营销邮件",
    all_note: "停止所有技巧、提醒和优惠邮件。",
    done_offers: "完成：您将不再收到 {shop} 的优惠信息。",
    done_all: "完成：您将不再收到 {shop} 的营销邮件。",
    already: "您已退订营销邮件。",
    invalid: "此链接无效。",
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_name_their_scope() {
        let one = |b: &str| scope_of(b.as_bytes());
        assert_eq!(
            one("List-Unsubscribe=One-Click"),
            Some((UnsubscribeScope::Marketing, true))
        );
        assert_eq!(one(""), Some((UnsubscribeScope::Marketing, true)));
        assert_eq!(one("scope=promo"), Some((UnsubscribeScope::Promo, false)));
        assert_eq!(
            one("scope=marketing"),
            Some((UnsubscribeScope::Marketing, false))
        );
        assert_eq!(one("scope=everything"), None);
        assert_eq!(one("hello=world"), None);
        // RFC 8058's recommended form: multipart/form-data.
        let multipart = "--b0undary\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\nOne-Click\r\n--b0undary--\r\n";
        assert_eq!(one(multipart), Some((UnsubscribeScope::Marketing, true)));
        let scoped = "--x\nContent-Disposition: form-data; name=\"scope\"\n\npromo\n--x--\n";
        assert_eq!(one(scoped), Some((UnsubscribeScope::Promo, false)));
        let other =
            "--x\r\nContent-Disposition: form-data; name=\"hello\"\r\n\r\nworld\r\n--x--\r\n";
        assert_eq!(one(other), None);
    }

    #[test]
    fn the_page_speaks_the_shipped_languages() {
        assert_eq!(words(Some("hu-HU")).lang, "hu");
        assert_eq!(words(Some("zh_CN")).lang, "zh");
        assert_eq!(words(Some("th")).lang, "th");
        assert_eq!(words(Some("bg")).lang, "bg");
        assert_eq!(words(Some("fr-FR")).lang, "en");
        assert_eq!(words(None).lang, "en");
    }
}
