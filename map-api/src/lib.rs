//! The REST API under `/api/v1`: map layers as RFC 7946 GeoJSON (filtered by bbox, unit and
//! limit), station series and map replays from the history store, plus `/healthz` (the
//! process is up), `/readyz` (the bus answers, the replica has caught up, history is being
//! written) and `/metrics` (Prometheus text).
//!
//! It owns *request validation and response shapes*. It must never change state; it reads
//! live state only through the `replica` crate and history only through `store`. Every endpoint but `/healthz` and `/readyz` needs a token.

use api_error::ApiError;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use auth::{Authenticator, Caller, Rejection, Role};
use axum::extract::{FromRef, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use bus::Bus;
use model::spatial::{Near, WithinSpec};
use model::state::parse_bbox;
use model::{FieldError, Layer};
use replica::Replica;
use serde::Deserialize;
use serde_json::{json, Value};

mod alerts;
mod audit_log;
mod camera_admin;
mod cameras;
mod history;
mod indicators;
mod layouts;
pub mod open311;
mod zones;

/// A named readiness condition besides the bus and the replica (e.g. "ingest registry"):
/// a JSON object with at least `"ready": bool`, and whatever explains it.
pub type Check = (String, Arc<dyn Fn() -> Value + Send + Sync>);

#[derive(Clone)]
pub struct ApiState {
    pub replica: Arc<Replica>,
    pub auth: Arc<Authenticator>,
    pub bus: Arc<dyn Bus>,
    pub checks: Vec<Check>,
    /// Renders the Prometheus exposition text.
    pub metrics: Arc<dyn Fn() -> String + Send + Sync>,
    /// "memory" or "kafka", reported by /readyz.
    pub mode: String,
    /// Where history is read from (`None`: this process keeps none).
    pub history: Option<Arc<dyn store::History>>,
    /// Where alert acknowledgements and clears go (`ioc.alerts`).
    pub alerts_topic: String,
    /// Where zones drawn by operators go (`ioc.registry`).
    pub registry_topic: String,
    /// Where report transitions go (`ioc.reports`).
    pub reports_topic: String,
    /// Where explanations and targets go (`ioc.indicators`).
    pub indicators_topic: String,
    /// Takes new field reports (`None`: this process runs no ingest; POST answers 503).
    pub intake: Option<Arc<ingest::reports::ReportIntake>>,
    pub report_locks: Arc<open311::ReportLocks>,
    /// Where camera images come from: the workers of this process or the `ioc video`
    /// processes (`None`: neither; images answer 503).
    pub cameras: Option<Arc<dyn media::MediaSource>>,
    pub hls_sessions: Arc<cameras::HlsSessions>,
    /// How long a browser's media ticket may wait before its first use.
    pub media_ticket_ttl: chrono::Duration,
    /// The address clients reach this service at (`http://host:port` or `https://…`):
    /// links the API builds (photos) start with it, never with a request's `Host` header.
    pub public_url: String,
    /// Write rates (the HTTP layer charges bearer callers; Open311's `api_key` callers are
    /// charged here, once known).
    pub limits: Arc<auth::limits::SharedLimiter>,
    /// Snapshot and MJPEG tickets already used (each opens one request).
    pub used_tickets: Arc<auth::UsedTickets>,
    /// Writes the audit log (camera images here; writes through their [`audit::Slip`]) and
    /// reads it back for admins.
    pub auditor: Arc<audit::Auditor>,
}

impl FromRef<ApiState> for Arc<Authenticator> {
    fn from_ref(s: &ApiState) -> Self {
        s.auth.clone()
    }
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/alerts", get(alerts::list))
        .route("/api/v1/alerts/{id}/acknowledge", post(alerts::acknowledge))
        .route("/api/v1/alerts/{id}/clear", post(alerts::clear))
        .route("/api/v1/zones", post(zones::create))
        .route("/api/v1/zones/{id}", delete(zones::delete))
        .route("/api/v1/summary", get(zones::summary))
        .route("/api/v1/layouts", get(layouts::list))
        .route(
            "/api/v1/layouts/{id}",
            get(layouts::one).put(layouts::put).delete(layouts::delete),
        )
        .route(
            "/api/v1/layouts/{id}/focus",
            post(layouts::focus).delete(layouts::release),
        )
        .route("/api/v1/indicators", get(indicators::list))
        .route("/api/v1/indicators/{code}", get(indicators::one))
        .route(
            "/api/v1/indicators/{code}/history",
            get(indicators::history),
        )
        .route(
            "/api/v1/indicators/{code}/explanations",
            post(indicators::explain),
        )
        .route(
            "/api/v1/indicators/{code}/targets",
            post(indicators::set_target),
        )
        .route("/api/v1/dashboard", get(indicators::dashboard))
        .route("/api/v1/history", get(history::info))
        .route("/api/v1/stations/{id}/series", get(history::series))
        .route("/api/v1/stations/{id}/forecast", get(history::forecast))
        .route("/api/v1/stations/{id}/aqi", get(history::aqi))
        .route("/api/v1/replay", get(history::replay))
        // Requests take POST; the service list and anything else only GET (so OPTIONS and
        // 405 answers advertise what each resource really takes).
        .route(
            "/open311/v2/requests.json",
            get(open311::get_requests_json)
                .post(open311::post_request_json)
                .layer(axum::extract::DefaultBodyLimit::max(REPORT_BODY_LIMIT)),
        )
        .route(
            "/open311/v2/requests.xml",
            get(open311::get_requests_xml)
                .post(open311::post_request_xml)
                .layer(axum::extract::DefaultBodyLimit::max(REPORT_BODY_LIMIT)),
        )
        .route("/open311/v2/{file}", get(open311::get_root))
        .route(
            "/open311/v2/services/{file}",
            get(open311::service_definition),
        )
        .route("/open311/v2/requests/{file}", get(open311::get_request))
        .route("/open311/v2/media/{id}", get(open311::media))
        .route("/api/v1/reports", get(open311::queue))
        .route("/api/v1/reports/{id}", get(open311::one))
        .route(
            "/api/v1/reports/{id}/transitions",
            post(open311::transition),
        )
        .route("/api/v1/cameras/near", get(cameras::near))
        .route(
            "/api/v1/cameras/{id}",
            get(cameras::one)
                .put(camera_admin::put)
                .delete(camera_admin::remove),
        )
        .route("/api/v1/cameras/{id}/snapshot.jpg", get(cameras::snapshot))
        .route("/api/v1/cameras/{id}/live.mjpeg", get(cameras::live))
        .route("/api/v1/cameras/{id}/tickets", post(cameras::ticket))
        .route("/api/v1/cameras/{id}/views", get(cameras::my_views))
        .route("/api/v1/cameras/{id}/hls/{file}", get(cameras::hls))
        .route("/api/v1/audit", get(audit_log::read))
        .route("/api/v1/audit/cameras", get(cameras::audit_log))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/layers", get(layers))
        .route("/api/v1/layers/{layer}/features", get(features))
        .with_state(state)
        .layer(axum::middleware::map_response(json_rejections))
}

/// Largest Open311 POST body: three 5 MiB photos and the form.
pub(crate) const REPORT_BODY_LIMIT: usize = 16 * 1024 * 1024;

/// axum answers malformed queries and bodies in plain text (and JSON body errors with 422):
/// give them the API's error shape, a 400 naming the field where the message does.
async fn json_rejections(resp: Response) -> Response {
    let plain = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain"));
    let status = resp.status();
    if !plain || !(status.is_client_error() && status != StatusCode::UNAUTHORIZED) {
        return resp;
    }
    let body = axum::body::to_bytes(resp.into_body(), 64 * 1024)
        .await
        .unwrap_or_default();
    let reason = String::from_utf8_lossy(&body).trim().to_string();
    // "Failed to deserialize ... : note: invalid type ..." names the field after the first ": ".
    let field = reason
        .split(": ")
        .nth(1)
        .filter(|f| !f.contains(' ') && reason.matches(": ").count() >= 2)
        .unwrap_or("")
        .to_string();
    let status = if status == StatusCode::UNPROCESSABLE_ENTITY {
        StatusCode::BAD_REQUEST
    } else {
        status
    };
    ApiError::new(status, "bad_request", reason)
        .field(field)
        .into_response()
}

/// Checks a zone Feature as `POST /api/v1/zones` does, on this thread (for fuzzing and
/// tools; the handler runs it off the async workers).
pub fn check_zone(feature: &Value) -> Result<(), FieldError> {
    zones::zone_from(feature, None).map(|_| ())
}

/// `limit`: absent (or empty, as forms send it) gives `default`; otherwise an integer in
/// `1..=max`.
pub fn parse_limit(v: Option<&str>, default: usize, max: usize) -> Result<usize, FieldError> {
    match v.filter(|v| !v.is_empty()).map(str::parse::<usize>) {
        None => Ok(default),
        Some(Ok(n)) if (1..=max).contains(&n) => Ok(n),
        Some(_) => Err(FieldError::new(
            "limit",
            format!("must be an integer in 1..={max}"),
        )),
    }
}

/// A 400 naming the field.
/// The OpenAPI 3 description of this API (no token needed).
async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("../static/openapi.json"),
    )
        .into_response()
}

async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(st): State<ApiState>) -> Response {
    let bus = match tokio::time::timeout(Duration::from_secs(3), st.bus.check_ready()).await {
        Ok(Ok(())) => json!({"ready": true}),
        Ok(Err(e)) => json!({"ready": false, "reason": e.to_string()}),
        Err(_) => json!({"ready": false, "reason": "no answer within 3 s"}),
    };
    let mut checks = BTreeMap::new();
    checks.insert("bus".to_string(), bus);
    checks.insert(
        "state".to_string(),
        json!({"ready": st.replica.is_ready(), "seq": st.replica.seq()}),
    );
    for (name, f) in &st.checks {
        checks.insert(name.clone(), f());
    }
    let ready = checks.values().all(|c| c["ready"] == json!(true));
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({"ready": ready, "mode": st.mode, "checks": checks})),
    )
        .into_response()
}

async fn metrics(State(st): State<ApiState>, caller: Caller) -> Response {
    if !matches!(caller.role(), Role::Operator | Role::Admin) {
        return Rejection::forbidden("metrics are for operators and admins").into_response();
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        (st.metrics)(),
    )
        .into_response()
}

async fn layers(State(st): State<ApiState>, caller: Caller) -> Json<Value> {
    let counts = st.replica.counts();
    let list: Vec<Value> = Layer::ALL
        .into_iter()
        .filter(|l| caller.role().can_view(*l))
        .map(|l| {
            json!({
                "id": l.as_str(),
                "title": l.title_vi(),
                "title_en": l.title_en(),
                "live": l.is_live(),
                "features": counts.get(&l).copied().unwrap_or(0),
                "href": format!("/api/v1/layers/{}/features", l.as_str()),
            })
        })
        .collect();
    Json(json!({"layers": list}))
}

const DEFAULT_LIMIT: usize = 1000;
const MAX_LIMIT: usize = 10_000;

#[derive(Debug, Deserialize)]
struct FeatureParams {
    bbox: Option<String>,
    limit: Option<String>,
    unit: Option<String>,
    /// `lon,lat,radius_m`: what reaches into that disc, nearest first, with `distance_m`.
    near: Option<String>,
    /// A unit id, `zone:<id>`, or a GeoJSON Polygon or MultiPolygon geometry.
    within: Option<String>,
    /// Indicator figures of one sector.
    sector: Option<String>,
}

async fn features(
    State(st): State<ApiState>,
    caller: Caller,
    Path(layer): Path<String>,
    Query(p): Query<FeatureParams>,
) -> Result<Response, ApiError> {
    let layer: Layer = layer
        .parse()
        .map_err(|e: FieldError| ApiError::not_found("layer", e.reason))?;
    caller.require_view(layer)?;
    let bbox = p.bbox.as_deref().map(parse_bbox).transpose()?;
    let limit = parse_limit(p.limit.as_deref(), DEFAULT_LIMIT, MAX_LIMIT)?;
    let near = p.near.as_deref().map(Near::parse).transpose()?;
    let cameras = caller.0.camera_scope();
    let sensitive = caller.0.sensitive_scope();
    let within = match p.within.as_deref().map(WithinSpec::parse).transpose()? {
        None => None,
        Some(w) => {
            let may_see = |r: &model::StateRecord| {
                caller.0.role.can_view(r.layer) && replica::visible_with(&cameras, &sensitive, r)
            };
            Some(st.replica.resolve_within(&w, may_see)?)
        }
    };
    let sector = p
        .sector
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| model::indicator::Sector::parse("sector", s))
        .transpose()?;
    let q = replica::Query {
        layers: [layer].into_iter().collect(),
        bbox,
        unit: p.unit,
        cameras,
        sensitive,
        near,
        within,
        sector,
    };
    let (seq, records) = st.replica.hits(&q, limit + 1);
    let truncated = records.len() > limit;
    let mut foreign = serde_json::Map::new();
    foreign.insert("seq".into(), seq.into());
    foreign.insert("truncated".into(), truncated.into());
    let fc = geojson::FeatureCollection {
        bbox: bbox.map(|b| b.to_vec()),
        features: records.iter().take(limit).map(|r| r.to_feature()).collect(),
        foreign_members: Some(foreign),
    };
    Ok(([(header::CONTENT_TYPE, "application/geo+json")], Json(fc)).into_response())
}
