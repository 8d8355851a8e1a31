//! HTTP push: `POST /ingest/v1/readings` with one reading, an array, or `{"readings": [...]}`;
//! `POST /ingest/v1/indicators` with indicator values as JSON, a DHIS2 data value set, or CSV
//! (`Content-Type: text/csv`), all or nothing (see [`crate::indicators`]).
//!
//! - 202 `{"accepted": n, "rejected": []}` once the bus acknowledged every reading;
//! - 400 with per-item reasons when any item was refused (the good items were accepted);
//! - 413 past the body-size or item-count limit (nothing accepted);
//! - 503 with `Retry-After` when the bus cannot take writes (nothing acknowledged).

use api_error::ApiError;
use std::sync::Arc;

use auth::{Authenticator, Caller, Rejection};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRef, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use model::reading::split_payload;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::indicators::{parse_csv, parse_json, IndicatorIntake, Reporter, SubmitError};
use crate::{IngestError, SensorIngest};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpIngestConfig {
    /// Largest request body accepted, bytes.
    pub max_body_bytes: usize,
    /// Most readings in one request.
    pub max_items: usize,
    /// `Retry-After` seconds sent with 503.
    pub retry_after_s: u32,
}

impl Default for HttpIngestConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            max_items: 5000,
            retry_after_s: 5,
        }
    }
}

#[derive(Clone)]
pub struct HttpIngestState {
    pub ingest: Arc<SensorIngest>,
    pub indicators: Arc<IndicatorIntake>,
    pub auth: Arc<Authenticator>,
    pub config: HttpIngestConfig,
}

impl FromRef<HttpIngestState> for Arc<Authenticator> {
    fn from_ref(s: &HttpIngestState) -> Self {
        s.auth.clone()
    }
}

pub fn router(state: HttpIngestState) -> Router {
    let limit = state.config.max_body_bytes;
    Router::new()
        .route("/ingest/v1/readings", post(push))
        .route("/ingest/v1/indicators", post(push_indicators))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// The body, or why it could not be read (too large, cut off).
fn body_of(st: &HttpIngestState, body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!(
                    "the body is larger than {} bytes; split the batch",
                    st.config.max_body_bytes
                ),
            )
        } else {
            ApiError::new(e.status(), "unreadable_body", e.body_text())
        }
    })
}

/// The body as JSON, or 400 `invalid_json` saying why not.
fn json_body(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the body is not JSON: {e}"),
        )
    })
}

fn unavailable(e: IngestError, retry_after_s: u32) -> ApiError {
    let code = match e {
        IngestError::BusUnavailable(_) => "bus_unavailable",
        IngestError::NotReady => "not_ready",
    };
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        code,
        format!("{e}; nothing was accepted, retry later"),
    )
    .retry_after(retry_after_s)
}

async fn push(
    State(st): State<HttpIngestState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    if !caller.role().can_ingest() {
        return Err(
            Rejection::forbidden(format!("role {} may not push readings", caller.role())).into(),
        );
    }
    let body = body_of(&st, body)?;
    let payload = json_body(&body)?;
    let items = split_payload(&payload).len();
    if items > st.config.max_items {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_items",
            format!(
                "{items} readings in one request; the limit is {}",
                st.config.max_items
            ),
        ));
    }
    let source = format!("http:{}", caller.0.sub);
    let scope = crate::StationScope::of(&caller.0);
    let out = st
        .ingest
        .accept_scoped(&source, &scope, &payload)
        .await
        .map_err(|e| unavailable(e, st.config.retry_after_s))?;
    let status = if out.rejected.is_empty() {
        StatusCode::ACCEPTED
    } else {
        StatusCode::BAD_REQUEST
    };
    Ok((status, Json(out)).into_response())
}

/// Who may report indicator figures: the control room and admins for anyone; an agency (or
/// a system's service account naming its agency) its own indicators.
fn reporter(caller: &Caller) -> Result<Reporter, ApiError> {
    use auth::Role;
    let agency = caller
        .0
        .agency
        .as_deref()
        .and_then(|a| model::LocalId::parse("agency", a).ok());
    match (caller.role(), agency) {
        (Role::Operator | Role::Admin, _) => Ok(Reporter::Any),
        (Role::Agency | Role::Sensor, Some(a)) => Ok(Reporter::Agency(a)),
        (role, _) => Err(ApiError::forbidden(format!(
            "role {role} may not report indicator values (agencies report their own)"
        ))),
    }
}

/// `POST /ingest/v1/indicators`: 202 `{"accepted": n, "rejected": []}` once the bus has
/// every value; 400 naming every bad item (index, CSV line, field) with nothing written, 403
/// when some of them are not the sender's to report.
async fn push_indicators(
    State(st): State<HttpIngestState>,
    caller: Caller,
    slip: audit::Slip,
    headers: axum::http::HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let reporter = reporter(&caller)?;
    let body = body_of(&st, body)?;
    let csv = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/csv"));
    let items = if csv {
        let text = std::str::from_utf8(&body)
            .map_err(|_| ApiError::bad_request("body", "the sheet is not UTF-8 text"))?;
        parse_csv(text)
    } else {
        let payload = json_body(&body)?;
        parse_json(&payload)
    }
    .map_err(|e| ApiError::from(e.0))?;
    if items.len() > crate::indicators::MAX_ITEMS {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_items",
            format!(
                "{} values in one submission; the limit is {}",
                items.len(),
                crate::indicators::MAX_ITEMS
            ),
        ));
    }
    let source = format!("http:{}", caller.0.sub);
    let by = format!("{}:{}", caller.role(), caller.0.sub);
    // The entry names what the submission is about: its first value, and how many.
    if let Some(first) = items.first() {
        slip.target(format!(
            "indicator:{}/{}/{} ({} values)",
            first.indicator.as_deref().unwrap_or("?"),
            first.unit.as_deref().unwrap_or("?"),
            first.period.as_deref().unwrap_or("?"),
            items.len()
        ));
    }
    match st
        .indicators
        .submit(&source, &by, &reporter, &items, slip.allowed())
        .await
    {
        Ok(out) => Ok((StatusCode::ACCEPTED, Json(out)).into_response()),
        Err(SubmitError::NotAdmitted(e)) => Err(e),
        Err(SubmitError::Ingest(e)) => Err(unavailable(e, st.config.retry_after_s)),
        Err(SubmitError::Refused { refused, total }) => {
            let (index, first) = refused
                .first()
                .and_then(|r| Some((r.index, r.errors.first()?.clone())))
                .unwrap_or_else(|| (0, model::FieldError::new("body", "refused")));
            let reason = format!(
                "{} of {total} values refused, nothing was written: {}",
                refused.len(),
                first
            );
            // Another agency's figures are not this sender's to report: 403, with the list.
            let status = if refused.iter().any(|r| r.forbidden) {
                StatusCode::FORBIDDEN
            } else {
                StatusCode::BAD_REQUEST
            };
            Err(ApiError::new(status, "invalid", reason)
                .field(format!("values[{index}].{}", first.field))
                .with("accepted", 0)
                .with(
                    "rejected",
                    serde_json::to_value(&refused).unwrap_or_default(),
                ))
        }
    }
}
