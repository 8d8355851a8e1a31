//! `GET /api/v1/audit`: the audit log for admins — filtered by time, subject, action,
//! target and result, newest first, paged with `before`, as JSON or exported as CSV or JSON
//! lines (`format=csv|jsonl`). Reading it is itself an entry (`audit.read`), written before
//! the answer.

use api_error::ApiError;
use auth::{Caller, Role};
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;
use store::{AuditEntry, AuditQuery, AuditResult};

use crate::cameras::Remote;
use crate::ApiState;

#[derive(Debug, Deserialize)]
pub struct Params {
    since: Option<String>,
    until: Option<String>,
    subject: Option<String>,
    action: Option<String>,
    target: Option<String>,
    result: Option<String>,
    before: Option<String>,
    limit: Option<String>,
    format: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Format {
    Json,
    Csv,
    JsonLines,
}

fn time(field: &'static str, v: Option<&str>) -> Result<Option<DateTime<Utc>>, ApiError> {
    v.filter(|v| !v.is_empty())
        .map(|v| {
            DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| ApiError::bad_request(field, format!("an RFC 3339 time: {e}")))
        })
        .transpose()
}

fn text(v: Option<String>) -> Option<String> {
    v.filter(|v| !v.is_empty()).map(|v| audit::clean(&v, 200))
}

fn query_of(p: Params) -> Result<(AuditQuery, Format), ApiError> {
    let format = match p.format.as_deref().unwrap_or("json") {
        "json" | "" => Format::Json,
        "csv" => Format::Csv,
        "jsonl" => Format::JsonLines,
        other => {
            return Err(ApiError::bad_request(
                "format",
                format!("{other:?}: one of json, csv, jsonl"),
            ))
        }
    };
    let result = match p.result.as_deref().filter(|r| !r.is_empty()) {
        None => None,
        Some(r) => Some(AuditResult::parse(r).ok_or_else(|| {
            ApiError::bad_request("result", format!("{r:?}: one of allowed, refused, failed"))
        })?),
    };
    let before = match p.before.as_deref().filter(|b| !b.is_empty()) {
        None => None,
        Some(b) => Some(
            b.parse::<i64>()
                .map_err(|_| ApiError::bad_request("before", "an entry id"))?,
        ),
    };
    // An export takes more at once than a page.
    let (default, max) = match format {
        Format::Json => (100, 1000),
        _ => (10_000, 100_000),
    };
    let q = AuditQuery {
        since: time("since", p.since.as_deref())?,
        until: time("until", p.until.as_deref())?,
        subject: text(p.subject),
        action: text(p.action),
        target: text(p.target),
        result,
        before,
        limit: crate::parse_limit(p.limit.as_deref(), default, max)?,
    };
    Ok((q, format))
}

pub async fn read(
    State(st): State<ApiState>,
    caller: Caller,
    remote: Remote,
    Query(p): Query<Params>,
) -> Result<Response, ApiError> {
    let (q, format) = query_of(p)?;
    let c = &caller.0;
    let entry = |result, reason: Option<&str>| AuditEntry {
        at: Utc::now(),
        subject: c.sub.clone(),
        role: c.role.to_string(),
        action: audit::Action::AuditRead.as_str().into(),
        target: format!(
            "audit:{}",
            match format {
                Format::Json => "page",
                Format::Csv => "export.csv",
                Format::JsonLines => "export.jsonl",
            }
        ),
        remote: remote.0.clone(),
        result,
        status: reason.map(|_| 403),
        reason: reason.map(str::to_string),
        count: 1,
    };
    if c.role != Role::Admin {
        let reason = "403 forbidden: the audit log is read by admins";
        // The refusal is an entry too (folded if it floods); its own failure changes nothing.
        let _ = st
            .auditor
            .record(entry(AuditResult::Refused, Some(reason)))
            .await;
        return Err(ApiError::forbidden("the audit log is read by admins"));
    }
    let store = st.auditor.store().ok_or_else(|| {
        ApiError::unavailable(
            "no audit log in this process: it needs the history store",
            5,
        )
    })?;
    st.auditor.record(entry(AuditResult::Allowed, None)).await?;
    let rows = store
        .audit(&q)
        .await
        .map_err(|e| ApiError::unavailable(e.to_string(), 5))?;
    let stamp = Utc::now().format("%Y%m%dT%H%M%SZ");
    let attach = |ext: &str| format!("attachment; filename=\"ioc-audit-{stamp}.{ext}\"");
    Ok(match format {
        Format::Json => {
            let next = (rows.len() == q.limit)
                .then(|| rows.last().map(|r| r.id))
                .flatten();
            Json(json!({"entries": rows, "next_before": next})).into_response()
        }
        Format::Csv => {
            let body = audit::export::to_csv(&rows).map_err(|e| {
                tracing::error!(error = %e, "audit CSV export failed");
                ApiError::internal()
            })?;
            (
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                    (header::CONTENT_DISPOSITION, attach("csv")),
                ],
                body,
            )
                .into_response()
        }
        Format::JsonLines => (
            [
                (header::CONTENT_TYPE, "application/x-ndjson".to_string()),
                (header::CONTENT_DISPOSITION, attach("jsonl")),
            ],
            audit::export::to_jsonl(&rows),
        )
            .into_response(),
    })
}
