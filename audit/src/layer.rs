//! The middleware that makes every write an entry. For each write it puts a [`Slip`] on the
//! request; the handler, once the request passed its checks and just before its effect,
//! calls [`Slip::allowed`] (the entry is written, or the request is answered 503 and nothing
//! happens). After the answer, the layer writes what the handler did not: the refusal (with
//! the answer's status and reason), the failure of an allowed write whose effect could not be
//! carried out, or — for a handler that forgot its slip — the allowed entry, late, marked so.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use api_error::ApiError;
use auth::Authenticator;
use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use store::{AuditEntry, AuditResult};
use tracing::{error, warn};

use crate::route::{classify, Action, Kept, Route};
use crate::{clean, Auditor};

/// Largest error answer read for its reason (error answers are small JSON).
const REASON_BODY_LIMIT: usize = 64 * 1024;

/// Where a request came from, as this server saw it (and what a proxy in front says).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Remote(pub Option<String>);

impl Remote {
    pub fn of(parts: &Parts) -> Self {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_string());
        let forwarded = parts
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .map(|v| clean(v, 200));
        Remote(match (peer, forwarded) {
            (Some(p), Some(f)) => Some(format!("{p} (x-forwarded-for: {f})")),
            (p, f) => p.or(f),
        })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Remote {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Remote::of(parts))
    }
}

/// What the layer needs: the auditor, and the authenticator to name a caller.
#[derive(Clone)]
pub struct AuditLayer {
    pub auditor: Arc<Auditor>,
    pub auth: Arc<Authenticator>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Written {
    Nothing,
    Allowed,
}

struct SlipState {
    subject: String,
    role: String,
    target: String,
    written: Written,
}

struct SlipInner {
    auditor: Option<Arc<Auditor>>,
    action: Action,
    remote: Remote,
    state: Mutex<SlipState>,
}

/// The audit entry of one write, to be written by its handler just before the effect.
#[derive(Clone)]
pub struct Slip(Arc<SlipInner>);

impl Slip {
    fn new(
        auditor: Option<Arc<Auditor>>,
        route: &Route,
        who: (String, String),
        remote: Remote,
    ) -> Self {
        Slip(Arc::new(SlipInner {
            auditor,
            action: route.action,
            remote,
            state: Mutex::new(SlipState {
                subject: who.0,
                role: who.1,
                target: route.target.clone(),
                written: Written::Nothing,
            }),
        }))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, SlipState> {
        self.0.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Names the thing acted on once the handler knows it (a new zone's or report's id).
    pub fn target(&self, target: impl AsRef<str>) {
        self.state().target = clean(target.as_ref(), 160);
    }

    /// Names the caller where the layer could not (Open311's `api_key` callers).
    pub fn caller(&self, subject: &str, role: &str) {
        let mut s = self.state();
        s.subject = clean(subject, 120);
        s.role = clean(role, 40);
    }

    /// Writes the allowed entry: call it after every check, just before the effect. `Err`
    /// is the 503 to answer (the effect must not happen).
    pub async fn allowed(&self) -> Result<(), ApiError> {
        let auditor = self.0.auditor.clone().ok_or_else(|| {
            ApiError::unavailable(
                "this route is served without its audit layer: writes are refused",
                5,
            )
        })?;
        let entry = self.entry(AuditResult::Allowed, None, None);
        auditor.record(entry).await?;
        self.state().written = Written::Allowed;
        Ok(())
    }

    fn entry(
        &self,
        result: AuditResult,
        status: Option<u16>,
        reason: Option<String>,
    ) -> AuditEntry {
        let s = self.state();
        AuditEntry {
            at: Utc::now(),
            subject: s.subject.clone(),
            role: s.role.clone(),
            action: self.0.action.as_str().to_string(),
            target: s.target.clone(),
            remote: self.0.remote.0.clone(),
            result,
            status,
            reason,
            count: 1,
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Slip {
    type Rejection = std::convert::Infallible;

    /// The layer's slip; a route served without the layer gets one that refuses every write.
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts.extensions.get::<Slip>().cloned().unwrap_or_else(|| {
            let route = Route {
                action: Action::Unlisted,
                target: String::new(),
                kept: Kept::All,
            };
            Slip::new(None, &route, ("-".into(), "-".into()), Remote::of(parts))
        }))
    }
}

/// The middleware (`axum::middleware::from_fn_with_state(layer_state, audit::layer)`); it must
/// wrap routes (`Router::layer`) so that it sees the matched route.
pub async fn layer(State(l): State<AuditLayer>, req: Request, next: Next) -> Response {
    let template = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| req.uri().path().to_string());
    let Some(route) = classify(req.method(), &template, req.uri().path()) else {
        return next.run(req).await;
    };
    let who = match auth::token_of(req.headers()) {
        Some(t) => l.auth.verify_async(t).await.ok(),
        None => None,
    }
    .map(|c| (clean(&c.sub, 120), c.role.to_string()))
    .unwrap_or_else(|| ("-".into(), "-".into()));
    let (mut parts, body) = req.into_parts();
    let slip = Slip::new(Some(l.auditor.clone()), &route, who, Remote::of(&parts));
    parts.extensions.insert(slip.clone());
    let resp = next.run(Request::from_parts(parts, body)).await;
    finish(&l.auditor, &route, &slip, resp).await
}

/// Writes what the handler left: a refusal, a failure, or a late allowed entry.
async fn finish(auditor: &Auditor, route: &Route, slip: &Slip, resp: Response) -> Response {
    let status = resp.status();
    let written = slip.state().written;
    let ok = status.is_success() || status.is_redirection();
    let result = match (written, ok) {
        (Written::Allowed, true) => return resp,
        (Written::Allowed, false) if status.is_client_error() => return resp,
        (Written::Allowed, false) => AuditResult::Failed,
        (Written::Nothing, true) if route.kept == Kept::Refusals => return resp,
        (Written::Nothing, true) => {
            metrics::counter!("ioc_audit_late_total").increment(1);
            error!(action = %route.action, "a write took effect without its audit entry first; written now");
            let late = slip.entry(
                AuditResult::Allowed,
                Some(status.as_u16()),
                Some(
                    "written after the answer: the handler wrote no entry before its effect".into(),
                ),
            );
            if let Err(e) = auditor.record(late).await {
                warn!(error = %e, "late audit entry not written");
            }
            return resp;
        }
        (Written::Nothing, false) => AuditResult::Refused,
    };
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, REASON_BODY_LIMIT)
        .await
        .unwrap_or_default();
    let reason = reason_of(status.as_u16(), &bytes);
    if let Err(e) = auditor
        .record(slip.entry(result, Some(status.as_u16()), Some(reason)))
        .await
    {
        warn!(error = %e, "audit entry of a refused or failed write not written");
    }
    Response::from_parts(parts, axum::body::Body::from(bytes)).into_response()
}

/// `403 forbidden: …` from the API's error shape or Open311's error list; the status alone
/// otherwise.
fn reason_of(status: u16, body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let (code, reason) = match &v {
        serde_json::Value::Object(o) => (
            o.get("error").and_then(|c| c.as_str()).unwrap_or(""),
            o.get("reason").and_then(|r| r.as_str()).unwrap_or(""),
        ),
        serde_json::Value::Array(a) => (
            "",
            a.first()
                .and_then(|e| e.get("description"))
                .and_then(|d| d.as_str())
                .unwrap_or(""),
        ),
        _ => ("", ""),
    };
    let field = v
        .get("field")
        .and_then(|f| f.as_str())
        .filter(|f| !f.is_empty());
    let mut out = status.to_string();
    if !code.is_empty() {
        out.push(' ');
        out.push_str(code);
    }
    if let Some(f) = field {
        out.push_str(": ");
        out.push_str(f);
    }
    if !reason.is_empty() {
        out.push_str(": ");
        out.push_str(reason);
    }
    clean(&out, 300)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_is_the_status_the_code_the_field_and_the_reason() {
        let b = br#"{"error":"bad_request","field":"note","reason":"at most 500 characters"}"#;
        assert_eq!(
            reason_of(400, b),
            "400 bad_request: note: at most 500 characters"
        );
        assert_eq!(
            reason_of(400, br#"[{"code":400,"description":"lat: out of range"}]"#),
            "400: lat: out of range"
        );
        assert_eq!(reason_of(502, b"<html>"), "502");
    }
}
