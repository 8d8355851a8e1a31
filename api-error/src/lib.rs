//! The one error answer of every HTTP handler (map-api, ingest, the video workers' media
//! routes, auth's extractors): a status, a machine-readable `error`, the `field` at fault
//! when there is one, a `reason` in words a caller can act on, and what else helps (a
//! camera's state, `Retry-After`), always as one JSON shape:
//! `{"error": "...", "field": "...", "reason": "...", ...}`.
//!
//! Handlers return `Result<_, ApiError>` and use `?`; a library's error becomes an
//! `ApiError` by its type (a `From` impl at the edge, or [`ApiError::from`] for a
//! [`FieldError`]), never by matching its message text.
//!
//! It owns the *shape* of error answers. It must never put a secret, a token or personal
//! data in a reason (reasons come from the callers' own validated input or fixed text).

use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use model::FieldError;
use serde_json::{Map, Value};

/// A refused or failed request, as the caller sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    field: Option<String>,
    reason: String,
    extra: Map<String, Value>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    /// Any status, with its machine-readable `code` (`"not_found"`, `"history_failed"`…).
    pub fn new(status: StatusCode, code: &'static str, reason: impl Into<String>) -> Self {
        Self {
            status,
            code,
            field: None,
            reason: reason.into(),
            extra: Map::new(),
            headers: Vec::new(),
        }
    }

    /// 400: `field` is wrong, and why.
    pub fn bad_request(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", reason).field(field)
    }

    /// 404: nothing at `field` (the path segment or parameter that named it).
    pub fn not_found(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", reason).field(field)
    }

    /// 401, with `WWW-Authenticate: Bearer`.
    pub fn unauthorized(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", reason)
            .header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))
    }

    /// 403.
    pub fn forbidden(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", reason)
    }

    /// 409.
    pub fn conflict(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", reason)
    }

    /// 503 with `Retry-After`: a dependency is down or busy; nothing was done.
    pub fn unavailable(reason: impl Into<String>, retry_after_s: u32) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", reason).retry_after(retry_after_s)
    }

    /// 500, saying nothing of the cause (which goes to the log, not to the caller).
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    }

    /// The field at fault.
    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// Another member of the JSON body (`state`, `viewers`, `retry_after_s`…).
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.to_string(), value.into());
        self
    }

    /// `Retry-After: s`.
    pub fn retry_after(self, s: u32) -> Self {
        self.header(header::RETRY_AFTER, HeaderValue::from(s))
    }

    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn code(&self) -> &'static str {
        self.code
    }

    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        let mut body = Map::new();
        body.insert("error".into(), self.code.into());
        if let Some(f) = &self.field {
            body.insert("field".into(), f.clone().into());
        }
        body.insert("reason".into(), self.reason.clone().into());
        for (k, v) in &self.extra {
            body.insert(k.clone(), v.clone());
        }
        Value::Object(body)
    }
}

/// A field that failed validation: 400 naming it.
impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> Self {
        Self::bad_request(e.field, e.reason)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, Json(self.body())).into_response();
        for (name, value) in self.headers {
            resp.headers_mut().insert(name, value);
        }
        resp
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.field {
            Some(field) => write!(
                f,
                "{} {}: {}: {}",
                self.status.as_u16(),
                self.code,
                field,
                self.reason
            ),
            None => write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.reason),
        }
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_shape_for_every_error() {
        let e = ApiError::from(FieldError::new("bbox", "must be four numbers"));
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            e.body(),
            serde_json::json!({"error": "bad_request", "field": "bbox", "reason": "must be four numbers"})
        );
        let busy = ApiError::unavailable("the bus is down", 5).with("queued", 0);
        let resp = busy.clone().into_response();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "5");
        assert_eq!(busy.body()["queued"], 0);
        assert!(busy.body().get("field").is_none());
        let who = ApiError::unauthorized("a bearer token is required").into_response();
        assert_eq!(who.headers()[header::WWW_AUTHENTICATE], "Bearer");
        assert_eq!(ApiError::internal().body()["reason"], "internal error");
    }
}
