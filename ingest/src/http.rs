//! HTTP push: `POST /ingest/v1/readings` with one reading, an array, or `{"readings": [...]}`.
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
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
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
    let body = body.map_err(|e| {
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
    })?;
    let payload: Value = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the body is not JSON: {e}"),
        )
    })?;
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
        .map_err(|e| {
            let code = match e {
                IngestError::BusUnavailable(_) => "bus_unavailable",
                IngestError::NotReady => "not_ready",
            };
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                code,
                format!("{e}; nothing was accepted, retry later"),
            )
            .retry_after(st.config.retry_after_s)
        })?;
    let status = if out.rejected.is_empty() {
        StatusCode::ACCEPTED
    } else {
        StatusCode::BAD_REQUEST
    };
    Ok((status, Json(out)).into_response())
}
