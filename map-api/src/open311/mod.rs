//! Field reports over HTTP: Open311 GeoReport v2 under `/open311/v2` (services, service
//! definitions, requests; JSON or XML by the path's extension; errors in the spec's shape),
//! photos under `/open311/v2/media`, and the IOC's own report API under `/api/v1/reports`
//! (agency queues, the full life, transitions).
//!
//! Reads come from the `reports` layer of the replica. Writes go to `ioc.reports`, the record
//! of truth: a new report through the intake (`ingest::reports`), a transition checked
//! against the report's current state and written with the next `seq`; the answer waits
//! until the replica shows the event applied, so a client reads its own write, and a writer
//! that lost a race (another event took that `seq` first) is told 409.
//!
//! Who sees what: operators, admins, leaders and police see every report; an agency sees the
//! reports assigned to it and the non-sensitive rest; a citizen sees its own and the
//! non-sensitive rest. Public-order reports are sensitive. A report a caller may not see is
//! answered 404, as if it did not exist.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use auth::{Caller, Claims, Role};
use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Duration as Span, FixedOffset, Utc};
use ingest::reports::{Filed, IntakeError, ReportForm, Upload};
use model::report::{attributes, Actor, Report, Step, StepError, SERVICES};
use model::{EntityId, Envelope, EventKind, LocalId, StateRecord};
use serde::Deserialize;
use serde_json::{json, Value};
use tracing::warn;

use crate::ApiState;

mod form;
mod format;
mod queue;

use form::*;
pub use form::{form_urlencoded, TooManyFields};
use format::*;
pub use queue::{one, queue, transition, QueueParams};

/// Serialises writes to one report within this process (others are caught by `seq`).
#[derive(Default)]
pub struct ReportLocks(Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

impl ReportLocks {
    fn lock_for(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.retain(|_, l| Arc::strong_count(l) > 1);
        m.entry(id.to_string()).or_default().clone()
    }
}

/// `GET /open311/v2/{file}`: `services.{json,xml}` (no token needed) or
/// `requests.{json,xml}`.
pub async fn get_root(
    State(st): State<ApiState>,
    Path(file): Path<String>,
    headers: HeaderMap,
    Query(q): Query<Vec<(String, String)>>,
) -> Response {
    let Some((stem, format)) = split_format(&file) else {
        return error(
            StatusCode::NOT_FOUND,
            Format::Json,
            "unknown resource: use services.json, services.xml, requests.json or requests.xml",
        );
    };
    match stem {
        "services" => services(format),
        "requests" => {
            let caller = match caller_of(&st, &headers, None) {
                Ok(c) => c,
                Err(r) => return r.respond(format),
            };
            list_requests(&st, &caller, format, &q)
        }
        _ => not_found(format, stem),
    }
}

fn services(format: Format) -> Response {
    let items = SERVICES
        .iter()
        .map(|s| {
            json!({
                "service_code": s.code,
                "service_name": s.name,
                "description": format!("{} ({})", s.name, s.name_en),
                "metadata": !attributes(s.code).is_empty(),
                "type": "realtime",
                "keywords": s.name_en.to_lowercase().replace(' ', ","),
                "group": s.group,
            })
        })
        .collect();
    reply(StatusCode::OK, format, "services", items)
}

/// `GET /open311/v2/services/{code}.{json,xml}`: the service definition.
pub async fn service_definition(Path(file): Path<String>) -> Response {
    let Some((code, format)) = split_format(&file) else {
        return error(
            StatusCode::NOT_FOUND,
            Format::Json,
            "use <service_code>.json or .xml",
        );
    };
    if model::report::service(code).is_none() {
        return not_found(format, &format!("service {code}"));
    }
    let attrs: Vec<Value> = attributes(code)
        .iter()
        .enumerate()
        .map(|(i, a)| {
            json!({
                "variable": true,
                "code": a.code,
                "datatype": a.datatype,
                "required": a.required,
                "datatype_description": Value::Null,
                "order": i + 1,
                "description": a.description,
                "values": a.values.iter().map(|(k, n)| json!({"key": k, "name": n})).collect::<Vec<_>>(),
            })
        })
        .collect();
    reply_one(
        format,
        "service_definition",
        json!({"service_code": code, "attributes": attrs}),
    )
}

/// Why a caller was refused, answered in the format of the resource asked for.
enum Refusal {
    Unauthorized(String),
    Forbidden(String),
}

impl Refusal {
    fn respond(self, format: Format) -> Response {
        match self {
            Refusal::Unauthorized(r) => {
                let mut resp = error(StatusCode::UNAUTHORIZED, format, r);
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer"),
                );
                resp
            }
            Refusal::Forbidden(r) => error(StatusCode::FORBIDDEN, format, r),
        }
    }
}

/// The caller from the bearer header, or (Open311 POST) from the `api_key` field.
fn caller_of(st: &ApiState, headers: &HeaderMap, api_key: Option<&str>) -> Result<Claims, Refusal> {
    let token = auth::bearer_of(headers)
        .or(api_key)
        .ok_or_else(|| Refusal::Unauthorized("a bearer token or api_key is required".into()))?;
    let claims = st
        .auth
        .verify(token)
        .map_err(|e| Refusal::Unauthorized(e.to_string()))?;
    if claims.role == Role::Sensor {
        return Err(Refusal::Forbidden(
            "sensors may not use field reports".into(),
        ));
    }
    Ok(claims)
}

/// A live report, typed by the replica: its record, the report and who filed it.
type Live = Arc<replica::LiveReport>;

fn live(st: &ApiState, id: &str) -> Option<Live> {
    let local = LocalId::parse("id", id).ok()?;
    st.replica
        .report(&EntityId::new(model::EntityKind::Report, &local))
}

/// Who may see a report: a role that uses field reports, then the one rule
/// ([`model::report::report_visible`]) with the caller's sensitive scope and whether it
/// filed the report.
fn can_see(c: &Claims, l: &Live) -> bool {
    c.role.can_report()
        && model::report::report_visible(
            Some(&l.report.service_code),
            l.report.agency.as_ref().map(LocalId::as_str),
            &c.sensitive_scope(),
            is_reporter(c, l),
        )
}

/// Is the caller the report's reporter (same role and subject)?
fn is_reporter(c: &Claims, l: &Live) -> bool {
    !l.reporter.is_empty() && c.principal() == l.reporter
}

/// The report's history as `viewer` may know it. The centre (operators, admins) sees who
/// did what. Everyone else sees the reporter only as `reporter` (with `yours` for the
/// reporter), never a citizen's subject, which would link all of one person's reports;
/// citizens and schools see staff by role, never their subject, and not the staff's
/// internal notes (results, reasons and assignments stay: they are the answer).
fn history_for(viewer: &Claims, l: &Live) -> Value {
    let centre = matches!(viewer.role, Role::Operator | Role::Admin);
    let public = matches!(viewer.role, Role::Citizen | Role::School);
    let mine = is_reporter(viewer, l);
    let entries = l.report.history.iter().map(|h| {
        let mut v = serde_json::to_value(h).unwrap_or_default();
        if centre {
            return v;
        }
        let by_reporter =
            (h.seq == 0 && h.action == "created") || format!("{}:{}", h.role, h.by) == l.reporter;
        if by_reporter {
            v["by"] = "reporter".into();
            if mine {
                v["yours"] = true.into();
            }
        } else if public {
            if h.role == "system" {
                v["by"] = "ioc".into();
            } else {
                v["by"] = Value::Null;
            }
            if let Some(m) = v.as_object_mut() {
                m.remove("note");
            }
        }
        v
    });
    Value::Array(entries.collect())
}

/// A w3c date-time in Vietnam time (UTC+7), as the reporter reads it.
fn w3c(t: DateTime<FixedOffset>) -> String {
    let vn = FixedOffset::east_opt(7 * 3600).expect("UTC+7");
    t.with_timezone(&vn)
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
}

/// A report as an Open311 `request`.
fn open311_request(r: &Report) -> Value {
    json!({
        "service_request_id": r.id.as_str(),
        "status": r.state.open311(),
        "status_notes": r.status_notes(),
        "service_name": r.service_name,
        "service_code": r.service_code,
        "description": r.description,
        "agency_responsible": r.agency_name.clone().unwrap_or_else(|| "Trung tâm Giám sát, điều hành thông minh (IOC)".into()),
        "service_notice": Value::Null,
        "requested_datetime": w3c(r.requested),
        "updated_datetime": w3c(r.updated),
        "expected_datetime": r.expected().map(w3c),
        "address": r.address,
        "address_id": Value::Null,
        "zipcode": Value::Null,
        "lat": r.lat,
        "long": r.lon,
        "media_url": r.media.first(),
    })
}

fn parse_w3c(field: &str, v: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(v)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| format!("{field}: must be a w3c date-time such as 2026-11-23T08:00:00+07:00"))
}

fn list_requests(
    st: &ApiState,
    caller: &Claims,
    format: Format,
    q: &[(String, String)],
) -> Response {
    // An empty parameter is an absent one (forms send every field).
    let one = |k: &str| {
        q.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    };
    let list = |k: &str| -> Option<BTreeSet<String>> {
        one(k).filter(|v| !v.is_empty()).map(|v| {
            v.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
    };
    let mut problems = Vec::new();
    let ids = list("service_request_id");
    let codes = list("service_code");
    if let Some(c) = &codes {
        for code in c {
            if model::report::service(code).is_none() {
                problems.push(format!("service_code: unknown service {code:?}"));
            }
        }
    }
    let statuses = list("status");
    if let Some(s) = &statuses {
        for v in s {
            if v != "open" && v != "closed" {
                problems.push(format!("status: {v:?} is not open or closed"));
            }
        }
    }
    let start = one("start_date")
        .map(|v| parse_w3c("start_date", v))
        .transpose();
    let end = one("end_date")
        .map(|v| parse_w3c("end_date", v))
        .transpose();
    let (start, end) = match (start, end) {
        (Ok(s), Ok(e)) => (s, e),
        (s, e) => {
            problems.extend(s.err());
            problems.extend(e.err());
            (None, None)
        }
    };
    // The spec's window: at most 90 days, the last 90 when not given.
    let now = Utc::now();
    let (from, to) = match (start, end) {
        (Some(s), Some(e)) => (s, e),
        (Some(s), None) => (s, s + Span::days(90)),
        (None, Some(e)) => (e - Span::days(90), e),
        (None, None) => (now - Span::days(90), now + Span::days(1)),
    };
    if to < from {
        problems.push("end_date: must not be before start_date".into());
    } else if start.is_some() && end.is_some() && to - from > Span::days(90) {
        problems.push("end_date: the range may not span more than 90 days".into());
    }
    if !problems.is_empty() {
        return errors(StatusCode::BAD_REQUEST, format, problems);
    }
    // Newest first over the window, stopping at a full page: the walk costs what the answer
    // holds (and the reports the caller may not see on the way), not the whole book.
    let matches = |l: &Live| {
        let r = &l.report;
        can_see(caller, l)
            && codes.as_ref().is_none_or(|c| c.contains(&r.service_code))
            && statuses
                .as_ref()
                .is_none_or(|s| s.contains(r.state.open311()))
    };
    let mut found: Vec<Live> = Vec::new();
    match &ids {
        // service_request_id overrides every other filter.
        Some(ids) => {
            for id in ids {
                if let Some(l) = live(st, id).filter(|l| can_see(caller, l)) {
                    found.push(l);
                }
            }
            found.sort_by(|a, b| {
                b.report
                    .requested
                    .cmp(&a.report.requested)
                    .then(a.report.id.cmp(&b.report.id))
            });
            found.truncate(MAX_LIST);
        }
        None => {
            st.replica
                .visit_reports(replica::ReportOrder::Newest { from, to }, |l| {
                    if matches(l) {
                        found.push(l.clone());
                    }
                    if found.len() >= MAX_LIST {
                        std::ops::ControlFlow::Break(())
                    } else {
                        std::ops::ControlFlow::Continue(())
                    }
                });
        }
    }
    let items = found.iter().map(|l| open311_request(&l.report)).collect();
    reply(StatusCode::OK, format, "service_requests", items)
}

/// Longest note, result or reason of a step, characters.
const MAX_STEP_TEXT: usize = 2000;

/// Most requests in one Open311 answer.
const MAX_LIST: usize = 1000;

/// `GET /open311/v2/requests/{id}.{json,xml}`.
pub async fn get_request(
    State(st): State<ApiState>,
    Path(file): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some((id, format)) = split_format(&file) else {
        return error(
            StatusCode::NOT_FOUND,
            Format::Json,
            "use <service_request_id>.json or .xml",
        );
    };
    let caller = match caller_of(&st, &headers, None) {
        Ok(c) => c,
        Err(r) => return r.respond(format),
    };
    match live(&st, id).filter(|l| can_see(&caller, l)) {
        Some(l) => reply(
            StatusCode::OK,
            format,
            "service_requests",
            vec![open311_request(&l.report)],
        ),
        None => not_found(format, &format!("service request {id}")),
    }
}

/// `GET /open311/v2/requests.json`.
pub async fn get_requests_json(
    State(st): State<ApiState>,
    headers: HeaderMap,
    Query(q): Query<Vec<(String, String)>>,
) -> Response {
    get_root(State(st), Path("requests.json".into()), headers, Query(q)).await
}

/// `GET /open311/v2/requests.xml`.
pub async fn get_requests_xml(
    State(st): State<ApiState>,
    headers: HeaderMap,
    Query(q): Query<Vec<(String, String)>>,
) -> Response {
    get_root(State(st), Path("requests.xml".into()), headers, Query(q)).await
}

/// `POST /open311/v2/requests.json`.
pub async fn post_request_json(
    State(st): State<ApiState>,
    slip: audit::Slip,
    headers: HeaderMap,
    request: Request,
) -> Response {
    post_request(
        State(st),
        slip,
        Path("requests.json".into()),
        headers,
        request,
    )
    .await
}

/// `POST /open311/v2/requests.xml`.
pub async fn post_request_xml(
    State(st): State<ApiState>,
    slip: audit::Slip,
    headers: HeaderMap,
    request: Request,
) -> Response {
    post_request(
        State(st),
        slip,
        Path("requests.xml".into()),
        headers,
        request,
    )
    .await
}

/// `POST /open311/v2/requests.{json,xml}`: form-encoded as the spec says, or multipart with
/// photos in `media` parts.
///
/// A bearer header is checked before a byte of the body is read. Without one, the token
/// must come as `api_key` in a form of at most [`PREAUTH_BYTES`] (in multipart, before any
/// photo): an unauthenticated request costs at most that much. Either way a form has at
/// most [`MAX_FORM_FIELDS`] fields.
pub async fn post_request(
    State(st): State<ApiState>,
    slip: audit::Slip,
    Path(file): Path<String>,
    headers: HeaderMap,
    request: Request,
) -> Response {
    let format = match split_format(&file) {
        Some(("requests", f)) => f,
        _ => {
            return error(
                StatusCode::NOT_FOUND,
                Format::Json,
                "POST requests.json or requests.xml",
            )
        }
    };
    let mut caller = match auth::bearer_of(&headers) {
        Some(_) => match caller_of(&st, &headers, None) {
            Ok(c) => Some(c),
            Err(r) => return r.respond(format),
        },
        None => None,
    };
    let is_multipart = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    let mut form = ReportForm::default();
    let mut uploads = Vec::new();
    let too_big_unauthenticated = || {
        Refusal::Unauthorized(format!(
            "a bearer token is required: without an Authorization header, send api_key in a form of at most {} KiB, before any photo",
            PREAUTH_BYTES / 1024
        ))
        .respond(format)
    };
    if is_multipart {
        let mut mp = match Multipart::from_request(request, &()).await {
            Ok(m) => m,
            Err(e) => return error(StatusCode::BAD_REQUEST, format, format!("body: {e}")),
        };
        let mut unauthenticated_bytes = 0usize;
        loop {
            let mut f = match mp.next_field().await {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => return error(StatusCode::BAD_REQUEST, format, format!("body: {e}")),
            };
            if form.fields.len() + uploads.len() >= MAX_FORM_FIELDS {
                return too_many_fields(format);
            }
            let name = f.name().unwrap_or_default().to_string();
            let is_file = f.file_name().is_some() || name == "media";
            if caller.is_none() && is_file {
                return too_big_unauthenticated();
            }
            let limit = match caller {
                Some(_) => REPORT_PART_BYTES,
                None => PREAUTH_BYTES - unauthenticated_bytes,
            };
            let bytes = match read_part(&mut f, limit).await {
                Ok(b) => b,
                Err(PartError::TooBig) if caller.is_none() => return too_big_unauthenticated(),
                Err(PartError::TooBig) => {
                    return error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format,
                        format!("{name}: larger than {} bytes", REPORT_PART_BYTES),
                    )
                }
                Err(PartError::Body(e)) => {
                    return error(StatusCode::BAD_REQUEST, format, format!("{name}: {e}"))
                }
            };
            if is_file {
                uploads.push(Upload { bytes });
                continue;
            }
            let value = String::from_utf8_lossy(&bytes).into_owned();
            if caller.is_none() {
                unauthenticated_bytes += bytes.len();
                if name == "api_key" {
                    match caller_of(&st, &headers, Some(value.trim())) {
                        Ok(c) => caller = Some(c),
                        Err(r) => return r.respond(format),
                    }
                }
            }
            form.fields.push((name, value));
        }
    } else {
        let limit = if caller.is_some() {
            crate::REPORT_BODY_LIMIT
        } else {
            PREAUTH_BYTES
        };
        let body = match axum::body::to_bytes(request.into_body(), limit).await {
            Ok(b) => b,
            Err(_) if caller.is_none() => return too_big_unauthenticated(),
            Err(e) => return error(StatusCode::PAYLOAD_TOO_LARGE, format, format!("body: {e}")),
        };
        form.fields = match form_urlencoded(&body, MAX_FORM_FIELDS) {
            Ok(f) => f,
            Err(TooManyFields) => return too_many_fields(format),
        };
    }
    let caller = match caller {
        Some(c) if auth::bearer_of(&headers).is_some() => c,
        found => {
            let c = match found {
                Some(c) => c,
                None => {
                    let api_key = form
                        .fields
                        .iter()
                        .find(|(k, _)| k == "api_key")
                        .map(|(_, v)| v.trim());
                    match caller_of(&st, &headers, api_key) {
                        Ok(c) => c,
                        Err(r) => return r.respond(format),
                    }
                }
            };
            // Known from api_key only now: the subject's allowance is charged here.
            let principal = c.principal();
            if let Err(l) = st
                .limits
                .check(auth::limits::WriteKind::Report, "", Some(&principal))
            {
                return rate_limited(format, l);
            }
            c
        }
    };
    let Some(intake) = &st.intake else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            format,
            "this process does not take reports (no ingest role)",
        );
    };
    // The report's id is made by the intake: the entry names the kind, the report's own
    // events name who filed it.
    slip.caller(&caller.sub, caller.role.as_str());
    slip.target("report:new");
    if let Err(e) = slip.allowed().await {
        return error(e.status(), format, e.reason().to_string());
    }
    // Links from the configured public address, never from the request's Host header.
    let media_base = format!("{}/open311/v2/media", st.public_url.trim_end_matches('/'));
    match intake.submit(&form, &uploads, &caller, &media_base).await {
        Ok(Filed::Again(id)) => {
            let entity = EntityId::new(model::EntityKind::Report, &id);
            wait_for(&st, &entity, |r| r.is_some()).await;
            reply(
                StatusCode::OK,
                format,
                "service_requests",
                vec![json!({
                    "service_request_id": id.as_str(),
                    "service_notice": format!("Phản ánh này đã được tiếp nhận trước đó (mã {id}); không tạo phản ánh mới."),
                    "account_id": Value::Null,
                })],
            )
        }
        Ok(Filed::New(created)) => {
            // Read-your-writes: answer once this process's replica shows it (bounded).
            let entity = EntityId::new(model::EntityKind::Report, &created.id);
            wait_for(&st, &entity, |r| r.is_some()).await;
            let notice = match &created.routing.agency_name {
                Some(a) => format!("Đã chuyển {a} xử lý; hạn xử lý {} giờ.", created.deadline_h),
                None => "Đã tiếp nhận; Trung tâm IOC sẽ chuyển đơn vị xử lý.".into(),
            };
            reply(
                StatusCode::CREATED,
                format,
                "service_requests",
                vec![json!({
                    "service_request_id": created.id.as_str(),
                    "service_notice": notice,
                    "account_id": Value::Null,
                })],
            )
        }
        Err(IntakeError::Invalid(inv)) => errors(
            StatusCode::BAD_REQUEST,
            format,
            inv.errors.iter().map(|e| e.to_string()).collect(),
        ),
        Err(
            e @ (IntakeError::NotReady
            | IntakeError::BusUnavailable(_)
            | IntakeError::MediaUnavailable(_)),
        ) => {
            warn!(error = %e, "report not taken");
            let mut r = error(StatusCode::SERVICE_UNAVAILABLE, format, e.to_string());
            r.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
            r
        }
    }
}

/// Largest body read before the caller is known (a form carrying `api_key`).
pub const PREAUTH_BYTES: usize = 64 * 1024;
/// Most fields (photos included) in one report form.
pub const MAX_FORM_FIELDS: usize = 64;
/// Largest part of a multipart form (a photo; the intake checks its own limit after).
const REPORT_PART_BYTES: usize = 6 * 1024 * 1024;

fn rate_limited(format: Format, l: auth::limits::Limited) -> Response {
    let secs = l.retry_after.as_secs().max(1);
    let mut r = error(
        StatusCode::TOO_MANY_REQUESTS,
        format,
        format!("too many reports from this account; retry after {secs} s"),
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
    r
}

fn too_many_fields(format: Format) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        format,
        format!("body: more than {MAX_FORM_FIELDS} fields"),
    )
}

/// Waits (at most 10 s) until the replica's record of `entity` satisfies `done`.
async fn wait_for(
    st: &ApiState,
    entity: &EntityId,
    done: impl Fn(Option<&StateRecord>) -> bool,
) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut changes = st.replica.subscribe();
    loop {
        if done(st.replica.get(entity).as_deref()) {
            return true;
        }
        let wait = tokio::time::timeout_at(deadline, changes.recv());
        match wait.await {
            Err(_) => return false,
            Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => return false,
            Ok(_) => {}
        }
    }
}

/// `GET /open311/v2/media/{id}`: an uploaded photo (metadata already stripped).
pub async fn media(State(st): State<ApiState>, Path(id): Path<String>, caller: Caller) -> Response {
    if caller.role() == Role::Sensor {
        return auth::Rejection::forbidden("sensors may not see photos").into_response();
    }
    let no_photo = || {
        (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "not_found", "field": "id", "reason": "no such photo"})),
        )
            .into_response()
    };
    let Some(store) = &st.history else {
        return no_photo();
    };
    match store.media(&id).await {
        Ok(Some(m)) => (
            [
                (header::CONTENT_TYPE, m.content_type),
                (
                    header::CACHE_CONTROL,
                    "private, max-age=86400, immutable".into(),
                ),
            ],
            m.bytes,
        )
            .into_response(),
        Ok(None) => no_photo(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": "unavailable", "reason": e.to_string()})),
        )
            .into_response(),
    }
}

// ---- the IOC's report API ---------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode_like_browsers_send_them() {
        let pairs = form_urlencoded(
            "service_code=infra.lighting&description=%C4%90%C3%A8n+h%E1%BB%8Fng&attribute%5Bx%5D=1&lat=9.78&bad=%zz&empty"
                .as_bytes(),
            64,
        )
        .unwrap();
        assert_eq!(pairs[1], ("description".into(), "Đèn hỏng".into()));
        assert_eq!(pairs[2].0, "attribute[x]");
        assert_eq!(pairs[4], ("bad".into(), "%zz".into()));
        assert_eq!(pairs[5], ("empty".into(), String::new()));
        // `a&a&a...` of 16 MB: refused after the limit, not split into millions of pairs.
        let flood = "a&".repeat(8 * 1024 * 1024);
        assert_eq!(form_urlencoded(flood.as_bytes(), 64), Err(TooManyFields));
        assert_eq!(form_urlencoded(b"a%", 64).unwrap()[0].0, "a%");
    }

    #[test]
    fn xml_answers_never_carry_what_xml_forbids() {
        let mut out = String::new();
        xml_value(&mut out, "d", &json!("a\u{FFFE}b\u{0001}c"));
        assert_eq!(out, "<d>a\u{FFFD}b\u{FFFD}c</d>");
    }

    #[test]
    fn xml_is_escaped_and_lists_have_singular_items() {
        let r = reply(
            StatusCode::OK,
            Format::Xml,
            "service_requests",
            vec![
                json!({"service_request_id": "pa-1", "description": "<b>&'\"", "media_url": null}),
            ],
        );
        assert_eq!(r.headers()[header::CONTENT_TYPE], "text/xml; charset=utf-8");
        let mut out = String::new();
        xml_value(
            &mut out,
            "service_requests",
            &json!([{"description": "<b>&", "values": [{"key": "a"}]}]),
        );
        assert_eq!(
            out,
            "<service_requests><request><description>&lt;b&gt;&amp;</description><values><value><key>a</key></value></values></request></service_requests>"
        );
    }
}
