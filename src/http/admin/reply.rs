//! What the admin routes share: the error answer (JSON, naming what was
//! wrong and what was expected), query parameters read strictly (an unknown
//! one is a 400 that lists the known ones, so a typo never silently widens
//! a search), bodies read as JSON with the field at fault named, and an
//! enrollment as operators see it.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::engine::state::{Enrollment, Status, Waiting};
use crate::store::DeliveryFilter;

/// An admin request that could not be served: its status and why.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// More for the client to act on (the known sequences, say).
    pub extra: Option<serde_json::Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            extra: None,
        }
    }

    pub fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }

    pub fn with(mut self, extra: serde_json::Value) -> Self {
        self.extra = Some(extra);
        self
    }
}

impl From<crate::store::Error> for ApiError {
    fn from(e: crate::store::Error) -> Self {
        tracing::error!("admin API: {e}");
        if e.is_unavailable() {
            Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage unavailable, retry",
            )
        } else {
            Self::new(StatusCode::INTERNAL_SERVER_ERROR, format!("storage: {e}"))
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.message });
        if let Some(serde_json::Value::Object(extra)) = self.extra {
            body.as_object_mut().expect("an object").extend(extra);
        }
        (self.status, Json(body)).into_response()
    }
}

pub type Answer<T> = Result<T, ApiError>;

/// A request's query parameters, taken one by one; [`Params::done`] refuses
/// any left over.
pub struct Params {
    given: BTreeMap<String, String>,
    known: Vec<&'static str>,
}

/// Entries in a page when the request does not say.
pub const DEFAULT_LIMIT: i64 = 100;

impl Params {
    /// Reads `query`; a parameter given twice is a 400.
    pub fn parse(query: Option<&str>) -> Answer<Self> {
        let mut given = BTreeMap::new();
        for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            if given.insert(k.to_string(), v.to_string()).is_some() {
                return Err(ApiError::bad(format!("{k}: given twice")));
            }
        }
        Ok(Self {
            given,
            known: Vec::new(),
        })
    }

    /// The parameter's value; an empty one counts as not given.
    pub fn text(&mut self, name: &'static str) -> Option<String> {
        self.known.push(name);
        self.given.remove(name).filter(|v| !v.is_empty())
    }

    /// An RFC 3339 time.
    pub fn time(&mut self, name: &'static str) -> Answer<Option<DateTime<Utc>>> {
        self.text(name)
            .map(|v| {
                DateTime::parse_from_rfc3339(&v)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|_| {
                        ApiError::bad(format!(
                            "{name}: {v:?} is not RFC 3339 (2026-11-26T10:00:00Z)"
                        ))
                    })
            })
            .transpose()
    }

    /// A value `parse` knows, `expected` saying which.
    pub fn one_of<T>(
        &mut self,
        name: &'static str,
        expected: &str,
        parse: fn(&str) -> Option<T>,
    ) -> Answer<Option<T>> {
        self.text(name)
            .map(|v| {
                parse(&v).ok_or_else(|| ApiError::bad(format!("{name}: {v:?} is not {expected}")))
            })
            .transpose()
    }

    /// A positive whole number (an id cursor).
    pub fn id(&mut self, name: &'static str) -> Answer<Option<i64>> {
        self.text(name)
            .map(|v| match v.parse::<i64>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(ApiError::bad(format!(
                    "{name}: {v:?} is not a cursor (the `next` of the page before)"
                ))),
            })
            .transpose()
    }

    /// `limit`: entries in a page, 1 to [`DeliveryFilter::MAX_LIMIT`],
    /// [`DEFAULT_LIMIT`] when not given.
    pub fn limit(&mut self) -> Answer<i64> {
        let max = DeliveryFilter::MAX_LIMIT;
        match self.text("limit") {
            None => Ok(DEFAULT_LIMIT),
            Some(v) => match v.parse::<i64>() {
                Ok(n) if (1..=max).contains(&n) => Ok(n),
                _ => Err(ApiError::bad(format!(
                    "limit: {v:?} is not a whole number from 1 to {max}"
                ))),
            },
        }
    }

    /// A 400 naming any parameter not taken, with the known ones.
    pub fn done(self) -> Answer<()> {
        match self.given.keys().next() {
            None => Ok(()),
            Some(k) => Err(ApiError::bad(format!(
                "{k}: unknown parameter (known: {})",
                self.known.join(", ")
            ))),
        }
    }
}

/// Reads a JSON body into `T`; a body that is not, or lacks a field, is a
/// 400 naming the field. An empty body reads as `{}`.
pub fn body<T: DeserializeOwned>(bytes: &Bytes) -> Answer<T> {
    let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        bytes
    };
    let de = &mut serde_json::Deserializer::from_slice(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            ApiError::bad(format!("body: {inner}"))
        } else {
            ApiError::bad(format!("body.{path}: {inner}"))
        }
    })
}

/// The longest reason an operator may give (it goes into logs and answers).
pub const REASON_CHARS: usize = 500;

/// An operator's reason: required, not blank, at most [`REASON_CHARS`].
pub fn reason(given: Option<String>, name: &str) -> Answer<String> {
    let r = given.as_deref().map(str::trim).unwrap_or("");
    if r.is_empty() {
        return Err(ApiError::bad(format!(
            "{name}: a reason is required (why, for the log)"
        )));
    }
    if r.chars().count() > REASON_CHARS || r.contains('\0') {
        return Err(ApiError::bad(format!(
            "{name}: at most {REASON_CHARS} characters, no NUL"
        )));
    }
    Ok(r.to_string())
}

/// An enrollment as operators see it: where it stands, what it waits for,
/// why it ended.
#[derive(Debug, Serialize)]
pub struct EnrollmentView<'a> {
    pub key: &'a str,
    pub sequence: &'a str,
    pub customer_id: &'a str,
    pub order_id: Option<&'a str>,
    pub step: Option<&'a str>,
    pub status: Status,
    /// Until when it waits (a `wait`, or a `wait_for`'s timeout).
    pub waiting_until: Option<DateTime<Utc>>,
    /// The event a `wait_for` waits for.
    pub waiting_for: Option<&'a str>,
    pub started_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub ended_reason: Option<&'a str>,
}

impl<'a> EnrollmentView<'a> {
    pub fn of(e: &'a Enrollment) -> Self {
        let (until, event) = match &e.waiting {
            Waiting::Nothing => (None, None),
            Waiting::Time { until } => (Some(*until), None),
            Waiting::Event { event, until } => (Some(*until), Some(event.as_str())),
        };
        Self {
            key: &e.key,
            sequence: &e.sequence,
            customer_id: &e.customer_id,
            order_id: e.order_id.as_deref(),
            step: e.step.as_deref(),
            status: e.status,
            waiting_until: until,
            waiting_for: event,
            started_at: e.started_at,
            updated_at: e.updated_at,
            ended_reason: e.ended_reason.as_deref(),
        }
    }
}
