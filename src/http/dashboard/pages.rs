//! The dashboard's pages, drawn with maud (compiled templates: every value
//! is HTML-escaped unless marked otherwise).

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde::Deserialize;

use super::Dashboard;
use super::session::{CSRF_FIELD, Session};
use crate::engine::outbox::{OutboxStatus, Outcome};
use crate::report::{self, Period, Retention, SequenceFunnel, Series};
use crate::store::{DeliveryEntry, DeliveryFilter, PeriodCustomers, Store};
use crate::template::data::{self, Origin};

/// The navigation, in order: each entry has its route in `super::routes`.
pub const NAV: &[(&str, &str)] = &[
    ("/admin", "Overview"),
    ("/admin/funnels", "Funnels & conversions"),
    ("/admin/deliveries", "Delivery log"),
    ("/admin/preview", "Template preview"),
    ("/admin/journey", "Customer journey"),
    ("/admin/dead-letters", "Dead letters"),
];

/// A whole page: the navigation (with `current` marked), the logout form
/// (with the session's CSRF token) and `body`.
pub(super) fn layout(
    title: &str,
    current: &str,
    session: Option<&Session>,
    body: Markup,
) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="robots" content="noindex";
                title { (title) " · aftercare" }
                link rel="stylesheet" href="/admin/assets/uPlot.min.css";
                link rel="stylesheet" href="/admin/assets/dashboard.css";
                script src="/admin/assets/uPlot.iife.min.js" defer {}
                script src="/admin/assets/dashboard.js" defer {}
            }
            body {
                header {
                    nav {
                        span.brand { "aftercare" }
                        @if session.is_some() {
                            @for (href, label) in NAV {
                                a href=(href) class=[(*href == current).then_some("current")] { (label) }
                            }
                        }
                    }
                    @if let Some(s) = session {
                        form.logout method="post" action="/admin/logout" {
                            input type="hidden" name=(CSRF_FIELD) value=(s.csrf);
                            button type="submit" { "Log out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

pub(super) fn page(markup: Markup) -> Response {
    Html(markup.into_string()).into_response()
}

/// The login form, with `error` when a wrong token was given.
pub fn login(error: Option<&str>) -> Html<String> {
    let body = html! {
        section.login {
            h1 { "Log in" }
            p { "Give the admin token (" code { "AFTERCARE_ADMIN_TOKEN" } ")." }
            @if let Some(e) = error {
                p.error role="alert" { (e) }
            }
            form method="post" action="/admin/login" {
                label for="token" { "Admin token" }
                input #token type="password" name="token" autocomplete="current-password" required autofocus;
                button type="submit" { "Log in" }
            }
        }
    };
    Html(layout("Log in", "", None, body).into_string())
}

/// A refusal as a small page with `status`.
pub fn refused(status: StatusCode, message: &str) -> Response {
    let body =
        html! { h1 { (status.canonical_reason().unwrap_or("Refused")) } p.error { (message) } };
    let mut r = (status, page(layout("Refused", "", None, body))).into_response();
    super::secure_headers(r.headers_mut());
    r
}

pub async fn not_found(Extension(session): Extension<Session>) -> Response {
    let body = html! { h1 { "Not found" } p { "No such page." } };
    (
        StatusCode::NOT_FOUND,
        page(layout("Not found", "", Some(&session), body)),
    )
        .into_response()
}

/// A failure of the store, as a page.
pub(super) fn store_error(session: &Session, e: crate::store::Error) -> Response {
    tracing::warn!("dashboard: {e}");
    let body = html! { h1 { "The database did not answer" } p.error { (e.to_string()) } };
    (
        StatusCode::SERVICE_UNAVAILABLE,
        page(layout("Error", "", Some(session), body)),
    )
        .into_response()
}

#[derive(Debug, Default, Deserialize)]
pub struct PeriodQuery {
    period: Option<String>,
}

impl PeriodQuery {
    fn period(&self) -> Result<Period, String> {
        match self.period.as_deref() {
            None | Some("") => Ok(Period::default()),
            Some(p) => {
                Period::parse(p).ok_or_else(|| format!("period {p:?}: choose 7d, 30d or 90d"))
            }
        }
    }
}

fn period_picker(path: &str, current: Period) -> Markup {
    html! {
        nav.periods aria-label="Period" {
            @for p in Period::ALL {
                a href={ (path) "?period=" (p.as_str()) }
                    class=[(p == current).then_some("current")] { "last " (p.days()) " days" }
            }
        }
    }
}

/// JSON for a script element: `<` written as `\u003c`, so no text in it
/// can close the element.
fn json_script(id: &str, value: &impl serde::Serialize) -> Markup {
    let json = serde_json::to_string(value)
        .unwrap_or_else(|_| "null".into())
        .replace('<', "\\u003c");
    html! { script type="application/json" id=(id) { (PreEscaped(json)) } }
}

fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// What the overview and the funnels page read for a period.
struct Numbers {
    series: Series,
    depth: Vec<(OutboxStatus, i64)>,
    funnels: Vec<SequenceFunnel>,
    retention: Retention,
    customers: PeriodCustomers,
}

async fn numbers<S: Store>(d: &Dashboard<S>, period: Period) -> crate::store::Result<Numbers> {
    let span = period.span(d.clock.now());
    let bucket = period.bucket();
    let touched_since = span.since - d.window;
    let (start, end) = Retention::spans(span);
    let s = &d.store;
    let (deliveries, bounces, depth, counts, orders, touches, at_start, at_end, customers) = tokio::try_join!(
        s.delivery_series(span, bucket),
        s.event_series("email.bounced", span, bucket),
        s.outbox_depth(),
        s.step_counts(span),
        s.placed_orders(span, touched_since),
        s.touches(span, touched_since),
        s.customers_ordering(start),
        s.customers_ordering(end),
        s.period_customers(span),
    )?;
    let attributed = report::attribute(&orders, &touches, d.window);
    let converted = report::conversions(&attributed);
    Ok(Numbers {
        series: report::outcome_series(&deliveries, &bounces, span, bucket),
        depth,
        funnels: report::funnels(&d.catalog, &counts, &converted),
        retention: Retention {
            at_start,
            at_end,
            new: customers.new,
        },
        customers,
    })
}

/// A request the page cannot answer, with why.
pub(super) fn bad_request(session: &Session, current: &str, message: &str) -> Response {
    let body = html! { h1 { "Bad request" } p.error { (message) } };
    (
        StatusCode::BAD_REQUEST,
        page(layout("Bad request", current, Some(session), body)),
    )
        .into_response()
}

/// `GET /admin`: the period at a glance.
pub async fn overview<S: Store>(
    State(d): State<Arc<Dashboard<S>>>,
    Extension(session): Extension<Session>,
    Query(q): Query<PeriodQuery>,
) -> Response {
    let period = match q.period() {
        Ok(p) => p,
        Err(e) => return bad_request(&session, "/admin", &e),
    };
    let n = match numbers(&d, period).await {
        Ok(n) => n,
        Err(e) => return store_error(&session, e),
    };
    let mut converted = report::Conversions::default();
    for f in &n.funnels {
        let c = f.converted();
        converted.orders += c.orders;
        converted.repeat += c.repeat;
        report::add_revenue(&mut converted.revenue, &c.revenue);
    }
    let body = html! {
        h1 { "At a glance" }
        (period_picker("/admin", period))
        section.tiles {
            @for name in report::SERIES_LINES {
                div.tile data-tile=(name) {
                    span.label { (name) }
                    span.value { (n.series.total(name)) }
                }
            }
        }
        section {
            h2 { "Emails over time" }
            p.hint {
                "Per " (if period.bucket() == crate::store::Bucket::Hour { "hour" } else { "day" })
                " (UTC), from the delivery log; deferred includes retries; bounced counts "
                code { "email.bounced" } " events."
            }
            div #outcomes .chart data-chart="outcomes-data" {}
            (json_script("outcomes-data", &n.series))
        }
        section.cols {
            div {
                h2 { "Conversions" }
                dl {
                    dt { "Orders attributed to an email" }
                    dd #attributed-orders { (converted.orders) }
                    dt { "Their revenue" }
                    dd #attributed-revenue { (report::revenue_text(&converted.revenue)) }
                    dt { "Of them repeat orders" }
                    dd { (converted.repeat) }
                    dt { "Attribution window" }
                    dd { (crate::sequence::duration::format(d.window)) " after an open or a click (last touch)" }
                }
            }
            div {
                h2 { "Customers" }
                dl {
                    dt { "Customer retention rate" }
                    dd #retention { (report::percent(n.retention.rate())) }
                    dd.hint {
                        "(" (n.retention.at_end) " at the end − " (n.retention.new) " new) ÷ "
                        (n.retention.at_start) " at the start; a customer ordered in the 365 days before"
                    }
                    dt { "Repeat-order rate" }
                    dd #repeat-rate { (report::percent(report::repeat_rate(&n.customers))) }
                    dd.hint { (n.customers.repeat) " of " (n.customers.ordered) " customers who ordered ordered twice or more" }
                }
            }
            div {
                h2 { "Outbox" }
                table #outbox-depth {
                    thead { tr { th { "status" } th.num { "emails" } } }
                    tbody {
                        @for (status, count) in &n.depth {
                            tr data-status=(status.as_str()) { td { (status.as_str()) } td.num { (count) } }
                        }
                        @if n.depth.is_empty() { tr { td colspan="2" { "empty" } } }
                    }
                }
            }
        }
    };
    page(layout("Overview", "/admin", Some(&session), body))
}

fn count_cell(value: i64, rate: Option<f64>) -> Markup {
    html! {
        td.num { (value) " " span.rate { (report::percent(rate)) } }
    }
}

/// `GET /admin/funnels`: each sequence's email steps as a funnel, with the
/// orders they brought.
pub async fn funnels<S: Store>(
    State(d): State<Arc<Dashboard<S>>>,
    Extension(session): Extension<Session>,
    Query(q): Query<PeriodQuery>,
) -> Response {
    let period = match q.period() {
        Ok(p) => p,
        Err(e) => return bad_request(&session, "/admin/funnels", &e),
    };
    let n = match numbers(&d, period).await {
        Ok(n) => n,
        Err(e) => return store_error(&session, e),
    };
    let body = html! {
        h1 { "Funnels & conversions" }
        (period_picker("/admin/funnels", period))
        p.hint {
            "Entered: emails made for the step in the period. Emailed: of those, sent (rate: of entered). "
            "Opened: of those, opened or clicked by a person (of emailed). Clicked: clicked by a person "
            "(of opened). Converted: orders of the period whose last open or click within "
            (crate::sequence::duration::format(d.window)) " before was this step's (of emailed). "
            "Machine opens and clicks (privacy proxies, link scanners) never count."
        }
        @if n.funnels.is_empty() {
            p { "No email was made in this period." }
        }
        @for f in &n.funnels {
            section.funnel data-sequence=(f.sequence) {
                h2 { (f.name) " " small { "(" (f.sequence) ")" } }
                table {
                    thead { tr {
                        th { "step" } th { "template" } th.num { "entered" } th.num { "emailed" }
                        th.num { "opened" } th.num { "clicked" } th.num { "converted" }
                        th.num { "repeat orders" } th.num { "revenue" }
                    } }
                    tbody {
                        @for s in &f.steps {
                            @let r = s.rates();
                            tr data-step=(s.step) {
                                td { (s.step) } td { (s.template) }
                                td.num { (s.entered) }
                                (count_cell(s.emailed, r.emailed))
                                (count_cell(s.opened, r.opened))
                                (count_cell(s.clicked, r.clicked))
                                (count_cell(s.converted.orders, r.converted))
                                td.num { (s.converted.repeat) }
                                td.num { (report::revenue_text(&s.converted.revenue)) }
                            }
                        }
                    }
                }
            }
        }
    };
    page(layout("Funnels", "/admin/funnels", Some(&session), body))
}

#[derive(Debug, Default, Deserialize)]
pub struct SearchQuery {
    q: Option<String>,
    outcome: Option<String>,
    before: Option<i64>,
}

/// Entries shown per page of the delivery log.
const LOG_PAGE: i64 = 100;

/// `GET /admin/deliveries`: the delivery log, searched.
pub async fn deliveries<S: Store>(
    State(d): State<Arc<Dashboard<S>>>,
    Extension(session): Extension<Session>,
    Query(q): Query<SearchQuery>,
) -> Response {
    let mut filter = DeliveryFilter {
        limit: LOG_PAGE,
        before: q.before,
        ..DeliveryFilter::default()
    };
    let text = q.q.clone().unwrap_or_default();
    let field = super::search::apply(
        &text,
        |s| d.catalog.sequences.contains_key(s),
        |t| d.templates.contains(t),
        &mut filter,
    );
    let outcome = q.outcome.clone().filter(|o| !o.is_empty());
    if let Some(o) = &outcome {
        match Outcome::parse(o) {
            Some(o) => filter.outcome = Some(o),
            None => {
                let why = format!("outcome {o}: choose sent, deferred, skipped, retry or failed");
                return bad_request(&session, "/admin/deliveries", &why);
            }
        }
    }
    let entries = match d.store.delivery_log(&filter).await {
        Ok(e) => e,
        Err(e) => return store_error(&session, e),
    };
    let older = (entries.len() as i64 == filter.page_size())
        .then(|| entries.last().map(|e| e.id))
        .flatten();
    let body = html! {
        h1 { "Delivery log" }
        form.search method="get" action="/admin/deliveries" role="search" {
            input type="search" name="q" value=(text) placeholder="address, customer id, template or sequence" aria-label="Search";
            select name="outcome" aria-label="Outcome" {
                option value="" { "any outcome" }
                @for o in ["sent", "deferred", "skipped", "retry", "failed"] {
                    option value=(o) selected[outcome.as_deref() == Some(o)] { (o) }
                }
            }
            button type="submit" { "Search" }
        }
        @if let Some(f) = field {
            p.hint { "Searching by " (f.label()) "; write " code { "customer:" } ", " code { "address:" } ", " code { "template:" } " or " code { "sequence:" } " before the text to choose." }
        }
        (log_table(&entries))
        @if entries.is_empty() { p #no-entries { "Nothing found." } }
        @if let Some(id) = older {
            p { a.older href=(older_link(&text, outcome.as_deref(), id)) { "Older entries →" } }
        }
    };
    page(layout(
        "Delivery log",
        "/admin/deliveries",
        Some(&session),
        body,
    ))
}

fn older_link(text: &str, outcome: Option<&str>, before: i64) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("q", text);
    q.append_pair("outcome", outcome.unwrap_or(""));
    q.append_pair("before", &before.to_string());
    format!("/admin/deliveries?{}", q.finish())
}

fn log_table(entries: &[DeliveryEntry]) -> Markup {
    html! {
        table #delivery-log {
            thead { tr {
                th { "time" } th { "customer" } th { "address" } th { "sequence" } th { "step" }
                th { "template" } th.num { "attempt" } th { "outcome" } th { "detail" }
            } }
            tbody {
                @for e in entries {
                    tr data-outcome=(e.outcome.as_str()) {
                        td { (when(e.at)) } td { (e.customer_id) } td { (e.address) }
                        td { (e.sequence) } td { (e.step) } td { (e.template) }
                        td.num { (e.attempt) } td { span class={ "outcome " (e.outcome.as_str()) } { (e.outcome.as_str()) } }
                        td.detail { (e.detail) }
                    }
                }
            }
        }
    }
}

#[derive(Debug, Default, Deserialize, Clone)]
pub struct PreviewQuery {
    template: Option<String>,
    locale: Option<String>,
    customer: Option<String>,
}

impl PreviewQuery {
    fn as_query(&self) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        q.append_pair("template", self.template.as_deref().unwrap_or(""));
        q.append_pair("locale", self.locale.as_deref().unwrap_or(""));
        q.append_pair("customer", self.customer.as_deref().unwrap_or(""));
        q.finish()
    }
}

/// The template rendered as `aftercare preview` renders it: with the
/// template's sample data, or with the context of a real customer's latest
/// enrollment (their stored profile, order, shipment and review), in the
/// locale asked for or else the customer's.
async fn render_preview<S: Store>(
    d: &Dashboard<S>,
    q: &PreviewQuery,
) -> Result<Option<crate::template::Rendered>, String> {
    let Some(id) = q.template.clone().filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    if !d.templates.contains(&id) {
        return Err(format!("unknown template `{id}`"));
    }
    let policies = &d.catalog.policies;
    let customer = q
        .customer
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty());
    let mut value = match customer {
        None => data::sample_data(policies, &id, d.templates.sample(&id)),
        Some(c) => {
            let enrollments = d
                .store
                .enrollments_of(c)
                .await
                .map_err(|e| format!("reading customer {c}: {e}"))?;
            let latest = enrollments
                .iter()
                .max_by_key(|e| e.updated_at)
                .ok_or_else(|| {
                    format!("customer `{c}` has no enrollment: nothing to fill the template with")
                })?;
            data::build(
                latest.context.view(),
                policies,
                Origin {
                    sequence: &latest.sequence,
                    step: "preview",
                },
                d.clock.now(),
            )
        }
    };
    let asked = q.locale.as_deref().filter(|l| !l.trim().is_empty());
    let wanted = data::preview_locale(&mut value, asked);
    let templates = d.templates.clone();
    tokio::task::spawn_blocking(move || templates.render(&id, wanted.as_deref(), &value))
        .await
        .map_err(|e| format!("rendering: {e}"))?
        .map(Some)
        .map_err(|e| e.to_string())
}

/// `GET /admin/preview`: a template in any locale, with sample data or a
/// real customer's.
pub async fn preview<S: Store>(
    State(d): State<Arc<Dashboard<S>>>,
    Extension(session): Extension<Session>,
    Query(q): Query<PreviewQuery>,
) -> Response {
    let rendered = render_preview(&d, &q).await;
    let ids: Vec<&String> = d.templates.ids().collect();
    let chosen = q.template.clone().unwrap_or_default();
    let locales = if chosen.is_empty() {
        Vec::new()
    } else {
        d.templates.locales(&chosen)
    };
    let body = html! {
        h1 { "Template preview" }
        form.preview method="get" action="/admin/preview" {
            label { "Template "
                select name="template" required {
                    option value="" { "choose…" }
                    @for id in &ids {
                        option value=(id) selected[**id == chosen] { (id) }
                    }
                }
            }
            label { "Locale "
                input type="text" name="locale" list="locales" value=(q.locale.clone().unwrap_or_default()) placeholder="the customer's";
                datalist #locales { @for l in &locales { option value=(l) {} } }
            }
            label { "Customer id "
                input type="text" name="customer" value=(q.customer.clone().unwrap_or_default()) placeholder="sample data";
            }
            button type="submit" { "Preview" }
        }
        @match &rendered {
            Err(e) => p.error role="alert" { (e) },
            Ok(None) => p.hint { "Choose a template. Without a customer id the template's sample data is used." },
            Ok(Some(r)) => {
                dl.rendered {
                    dt { "Locale" } dd #preview-locale { (r.locale) }
                    dt { "Subject" } dd #preview-subject { (r.subject) }
                    @if let Some(p) = &r.preheader { dt { "Preheader" } dd { (p) } }
                }
                h2 { "HTML" }
                iframe.email sandbox="" title="The HTML part" src={ "/admin/preview/frame?" (q.as_query()) } {}
                h2 { "Text" }
                pre.text { (r.text) }
            }
        }
    };
    page(layout("Preview", "/admin/preview", Some(&session), body))
}

/// `GET /admin/preview/frame`: the HTML part alone, for the preview's
/// sandboxed frame (no scripts, no forms, its own origin).
pub async fn preview_frame<S: Store>(
    State(d): State<Arc<Dashboard<S>>>,
    Query(q): Query<PreviewQuery>,
) -> Response {
    let (status, html) = match render_preview(&d, &q).await {
        Ok(Some(r)) => (StatusCode::OK, r.html),
        Ok(None) => (StatusCode::NOT_FOUND, "no template chosen".to_string()),
        Err(e) => (
            StatusCode::BAD_REQUEST,
            maud::html! { p { (e) } }.into_string(),
        ),
    };
    let mut r = (status, Html(html)).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data: http: https:; \
             frame-ancestors 'self'",
        ),
    );
    h.insert("x-frame-options", HeaderValue::from_static("SAMEORIGIN"));
    r
}
