//! The dashboard at `/admin`: server-rendered pages (maud) for operators
//! and the shop, behind the admin token. A login form trades the token for
//! a signed session cookie ([`session`]); every POST must come from the
//! dashboard's own pages and carry the session's CSRF token. Without
//! `AFTERCARE_ADMIN_TOKEN` the dashboard is off, as the admin API is.
//!
//! What the pages show is read from the store with grouped queries and
//! worked out by `crate::report` (pure); this module only gathers and draws.
//! Charts are drawn by uPlot, vendored under `assets/` and served from the
//! binary ([`assets`]): nothing is loaded from elsewhere.

pub mod assets;
mod ops;
mod pages;
pub mod search;
pub mod session;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use chrono::TimeDelta;

use crate::clock::Clock;
use crate::http::admin::Token;
use crate::ingest::http::Webhook;
use crate::sequence::model::Catalog;
use crate::store::Store;
use crate::template::Templates;
use session::{CSRF_FIELD, Session, Sessions};

/// What the dashboard needs besides the webhook's store, catalog and clock.
pub struct Settings {
    /// `AFTERCARE_ADMIN_TOKEN`, checked; `None`: the dashboard is off.
    pub token: Option<String>,
    pub templates: Arc<Templates>,
    /// `AFTERCARE_PUBLIC_URL`: `https` makes the cookie `Secure`, and its
    /// origin is accepted for POSTs behind a proxy.
    pub public_url: String,
    /// `AFTERCARE_ATTRIBUTION_WINDOW`.
    pub attribution_window: TimeDelta,
}

/// The dashboard's state.
pub struct Dashboard<S> {
    pub store: S,
    pub catalog: Arc<Catalog>,
    pub templates: Arc<Templates>,
    pub clock: Arc<dyn Clock>,
    token: Token,
    sessions: Sessions,
    public_origin: Option<String>,
    pub window: TimeDelta,
    /// The ingest path a replayed dead letter goes through.
    pub webhook: Webhook<S>,
}

/// Form bodies are small: a token, a CSRF token, a few fields.
const FORM_LIMIT: usize = 64 * 1024;

/// `/admin` and everything under it; `settings.token` `None`: off.
pub fn routes<S: Store>(webhook: &Webhook<S>, settings: Settings) -> Router {
    let Some(token) = settings.token else {
        return Router::new()
            .route("/admin", any(off))
            .route("/admin/{*rest}", any(off));
    };
    let public = url::Url::parse(&settings.public_url).ok();
    let secure = public.as_ref().is_some_and(|u| u.scheme() == "https");
    let d = Arc::new(Dashboard {
        store: webhook.store.clone(),
        catalog: webhook.catalog.clone(),
        templates: settings.templates,
        clock: webhook.clock.clone(),
        token: Token::new(&token),
        sessions: Sessions::new(&token, secure),
        public_origin: public.map(|u| u.origin().ascii_serialization()),
        window: settings.attribution_window,
        webhook: webhook.clone(),
    });
    // Every page but the login form and the assets wants a session.
    let pages = Router::new()
        .route("/admin", get(pages::overview::<S>))
        .route("/admin/funnels", get(pages::funnels::<S>))
        .route("/admin/deliveries", get(pages::deliveries::<S>))
        .route("/admin/preview", get(pages::preview::<S>))
        .route("/admin/preview/frame", get(pages::preview_frame::<S>))
        .route("/admin/journey", get(ops::journey::<S>))
        .route("/admin/dead-letters", get(ops::dead_letters::<S>))
        .route("/admin/dead-letters/replay", post(ops::replay::<S>))
        .route("/admin/logout", post(logout::<S>))
        .route("/admin/{*rest}", any(pages::not_found))
        .route_layer(middleware::from_fn_with_state(d.clone(), guard::<S>))
        .with_state(d.clone());
    let open = Router::new()
        .route("/admin/", get(|| async { redirect("/admin") }))
        .route("/admin/login", get(login_page).post(login::<S>))
        .route("/admin/assets/{file}", get(assets::serve))
        .with_state(d);
    pages.merge(open)
}

async fn off() -> Response {
    (
        StatusCode::NOT_FOUND,
        "the dashboard is off: set AFTERCARE_ADMIN_TOKEN to turn it on\n",
    )
        .into_response()
}

/// `303 See Other` to `to`.
fn redirect(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response()
}

fn session_of<S>(d: &Dashboard<S>, headers: &HeaderMap) -> Option<Session> {
    let cookies = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok());
    session::cookie_value(cookies).and_then(|v| d.sessions.check(v, d.clock.now()))
}

fn same_origin<S>(d: &Dashboard<S>, headers: &HeaderMap) -> bool {
    let h = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    session::same_origin(
        h(header::ORIGIN),
        h(header::REFERER),
        h(header::HOST),
        d.public_origin.as_deref(),
    )
}

/// A session for every page; for a POST also the same origin and the
/// session's CSRF token in the form (403 otherwise). A page asked for
/// without a session goes to the login form.
async fn guard<S: Store>(
    State(d): State<Arc<Dashboard<S>>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(session) = session_of(&d, request.headers()) else {
        if matches!(*request.method(), Method::GET | Method::HEAD) {
            return redirect("/admin/login");
        }
        return pages::refused(StatusCode::UNAUTHORIZED, "Log in first.");
    };
    let mut request = if request.method() == Method::POST {
        if !same_origin(&d, request.headers()) {
            return pages::refused(
                StatusCode::FORBIDDEN,
                "This form was not sent from the dashboard (Origin or Referer is another site).",
            );
        }
        let (parts, body) = request.into_parts();
        let Ok(bytes) = axum::body::to_bytes(body, FORM_LIMIT).await else {
            return pages::refused(StatusCode::PAYLOAD_TOO_LARGE, "The form is too large.");
        };
        let csrf_ok = url::form_urlencoded::parse(&bytes)
            .find(|(k, _)| k == CSRF_FIELD)
            .is_some_and(|(_, v)| session.csrf_matches(&v));
        if !csrf_ok {
            return pages::refused(
                StatusCode::FORBIDDEN,
                "The form's CSRF token is missing or wrong: reload the page and try again.",
            );
        }
        Request::from_parts(parts, Body::from(bytes))
    } else {
        request
    };
    request.extensions_mut().insert(session);
    let mut response = next.run(request).await;
    secure_headers(response.headers_mut());
    response
}

/// What every dashboard page says about itself: not cached, not framed,
/// scripts and styles from the dashboard only.
pub(crate) fn secure_headers(h: &mut HeaderMap) {
    h.entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         frame-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ));
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
}

async fn login_page() -> Response {
    let mut r = pages::login(None).into_response();
    secure_headers(r.headers_mut());
    r
}

/// The token from the form: right, a session cookie and on to the
/// overview; wrong, the form again with 401 and no cookie (after a short
/// pause, which makes guessing slower still).
async fn login<S: Store>(
    State(d): State<Arc<Dashboard<S>>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let mut r = if !same_origin(&d, &headers) {
        pages::refused(
            StatusCode::FORBIDDEN,
            "This form was not sent from the dashboard (Origin or Referer is another site).",
        )
    } else {
        let form: HashMap<String, String> =
            url::form_urlencoded::parse(&body).into_owned().collect();
        let given = form.get("token").map(|t| t.trim()).unwrap_or("");
        if !given.is_empty() && d.token.matches(given) {
            let value = d.sessions.issue(d.clock.now());
            let mut r = redirect("/admin");
            if let Ok(v) = HeaderValue::from_str(&d.sessions.cookie(&value)) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            r
        } else {
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            (
                StatusCode::UNAUTHORIZED,
                pages::login(Some("That is not the admin token.")),
            )
                .into_response()
        }
    };
    secure_headers(r.headers_mut());
    r
}

/// Clears the session cookie (the guard checked origin and CSRF token).
async fn logout<S: Store>(State(d): State<Arc<Dashboard<S>>>) -> Response {
    let mut r = redirect("/admin/login");
    if let Ok(v) = HeaderValue::from_str(&d.sessions.removal()) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}
