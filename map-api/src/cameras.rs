//! Cameras: one camera's record, its latest snapshot and its MJPEG live view, behind the
//! access matrix of `auth` (role × camera group × use), with every image request written to
//! the audit log before anything is served.
//!
//! A caller who may not use a camera gets the same 403 whether the camera exists or not. A
//! camera that is not online answers 503 with its state and the age of its last good frame,
//! never a 200 with an empty or stale picture. If the audit log cannot be written, no image
//! is served.

use api_error::ApiError;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use auth::{Caller, CameraUse, Claims, Grant, Role};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use model::{CameraGroup, EntityId, LocalId, StateRecord};
use serde::Deserialize;
use serde_json::json;
use store::{AuditEntry, AuditQuery, AuditResult};

use crate::ApiState;

pub use audit::Remote;

fn forbidden() -> ApiError {
    ApiError::forbidden("no access to this camera")
}

/// The camera's record if the caller may use it this way.
fn permitted(st: &ApiState, claims: &Claims, id: &str, use_: CameraUse) -> Option<StateRecord> {
    let local = LocalId::parse("camera", id).ok()?;
    let rec = st
        .replica
        .get(&EntityId::new(model::EntityKind::Camera, &local))?;
    let group: CameraGroup = rec.properties.get("group")?.as_str()?.parse().ok()?;
    claims.may_use_camera(&group, use_).then(|| (*rec).clone())
}

/// Writes the audit entry of one use of a camera image (a refusal may be folded with the
/// caller's others of the minute); `Err` (a 503 to send) when it cannot be written.
async fn audit(
    st: &ApiState,
    claims: &Claims,
    camera: &str,
    use_: CameraUse,
    remote: &Remote,
    allowed: bool,
) -> Result<(), ApiError> {
    let (result, status, reason) = if allowed {
        (AuditResult::Allowed, None, None)
    } else {
        (
            AuditResult::Refused,
            Some(403),
            Some("403 forbidden: no access to this camera".to_string()),
        )
    };
    let entry = AuditEntry {
        at: Utc::now(),
        subject: claims.sub.clone(),
        role: claims.role.to_string(),
        action: format!("camera.{}", use_.as_str()),
        target: format!("camera:{}", audit::clean(camera, 64)),
        remote: remote.0.clone(),
        result,
        status,
        reason,
        count: 1,
    };
    st.auditor.record(entry).await.map_err(Into::into)
}

/// The response to a camera with no image to give: what the worker knows, with the state and
/// last frame time from the map when no worker runs the camera.
fn no_image(e: media::MediaError, record: &StateRecord) -> ApiError {
    let mut answer = e.to_api_error();
    if let media::MediaError::NoImage(n) = &e {
        if n.state.is_none() {
            let state = record.properties.get("state").cloned();
            answer = answer.with("state", state.unwrap_or_else(|| "unknown".into()));
        }
        let last_frame = record.properties.get("last_frame").cloned();
        answer = answer.with("last_frame", last_frame.unwrap_or(serde_json::Value::Null));
    }
    answer
}

fn no_worker() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "camera_unavailable",
        "no video workers: run them in this process or list them in video.workers",
    )
}

/// `GET /api/v1/cameras/{id}`: the camera as the map shows it.
pub async fn one(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let rec = permitted(&st, &caller.0, &id, CameraUse::Layer).ok_or_else(forbidden)?;
    let images = caller.0.may_use_camera(
        &rec.properties["group"]
            .as_str()
            .and_then(|g| g.parse().ok())
            .unwrap_or(CameraGroup::Police),
        CameraUse::Snapshot,
    );
    let mut f = rec.to_feature();
    if let Some(p) = f.properties.as_mut() {
        p.insert("images_allowed".into(), images.into());
    }
    Ok(Json(f).into_response())
}

/// The checks before any image: the access matrix (a refusal is audited too), the audit row,
/// somewhere to get images from.
async fn admit_image(
    st: &ApiState,
    claims: &Claims,
    id: &str,
    use_: CameraUse,
    remote: &Remote,
) -> Result<(StateRecord, LocalId, std::sync::Arc<dyn media::MediaSource>), ApiError> {
    let Some(rec) = permitted(st, claims, id, use_) else {
        audit(st, claims, id, use_, remote, false).await?;
        return Err(forbidden());
    };
    audit(st, claims, id, use_, remote, true).await?;
    let media = st.cameras.clone().ok_or_else(no_worker)?;
    let local = LocalId::parse("camera", id).map_err(|_| forbidden())?;
    Ok((rec, local, media))
}

#[derive(Debug, Deserialize)]
pub struct TicketParam {
    ticket: Option<String>,
}

/// What may keep a ticket good past its expiry: an HLS session its viewer keeps polling.
enum TicketSession<'a> {
    /// The ticket must be unexpired (a snapshot, an MJPEG stream: one request each).
    None,
    /// An HLS player polls one URL for as long as it plays: past its expiry the ticket still
    /// opens this camera while its viewer has polled the playlist in the last 30 s, for at
    /// most `HLS_TICKET_MAX` after its issue.
    Hls(&'a HlsSessions),
}

/// The longest an HLS session opened by one ticket may last (a control-room shift).
const HLS_TICKET_MAX: chrono::Duration = chrono::Duration::hours(8);

/// Who asks for an image: the bearer token, or for clients that cannot send headers (`<img
/// src>`, native video players) a media ticket in `?ticket=` for this camera and use, from
/// `POST /api/v1/cameras/{id}/tickets`. Either way the matrix is checked and the use audited.
fn image_caller(
    st: &ApiState,
    caller: Result<Caller, auth::Rejection>,
    ticket: Option<&str>,
    id: &str,
    use_: CameraUse,
    session: TicketSession<'_>,
) -> Result<Claims, ApiError> {
    let bad_ticket = |reason: String| ApiError::unauthorized(reason).field("ticket");
    let t = match (caller, ticket) {
        (Ok(c), _) => return Ok(c.0),
        (Err(r), None) => return Err(r.into()),
        (Err(_), Some(t)) => st
            .auth
            .verify_ticket_any_age(t, id, use_)
            .map_err(|e| bad_ticket(e.to_string()))?,
    };
    let now = Utc::now().timestamp();
    if let (TicketSession::None, Some(raw)) = (&session, ticket) {
        // One request per ticket: a snapshot or one MJPEG stream.
        if !st.used_tickets.first_use(raw, t.who.exp, now) {
            return Err(bad_ticket(
                "the ticket has been used; ask for a new one".into(),
            ));
        }
    }
    if now <= t.who.exp + auth::TICKET_LEEWAY_S as i64 {
        return Ok(t.claims());
    }
    match session {
        TicketSession::Hls(sessions)
            if now - t.who.iat <= HLS_TICKET_MAX.num_seconds()
                && sessions.watching(id, &t.who.sub) =>
        {
            Ok(t.claims())
        }
        TicketSession::Hls(_) => Err(bad_ticket(
            "the ticket has expired and no HLS session it opened is playing".into(),
        )),
        TicketSession::None => Err(bad_ticket("the ticket has expired".into())),
    }
}

#[derive(Debug, Deserialize)]
pub struct TicketRequest {
    #[serde(rename = "use")]
    use_: Option<String>,
    /// For `live_view`: `mjpeg` (the default) or `hls`.
    format: Option<String>,
}

/// `POST /api/v1/cameras/{id}/tickets` `{"use": "snapshot"|"live_view", "format":
/// "mjpeg"|"hls"}`: a media ticket for a client that cannot carry the bearer header, good for
/// `auth.media_ticket_ttl_s` (60 s) before its first use, with the URL to use it on (an HLS
/// playlist keeps it good while the player polls). A caller who may not use the camera gets
/// the same 403 as for the image itself, audited.
pub async fn ticket(
    State(st): State<ApiState>,
    caller: Caller,
    remote: Remote,
    Path(id): Path<String>,
    body: Option<Json<TicketRequest>>,
) -> Result<Response, ApiError> {
    let req = body.as_ref().map(|b| &b.0);
    let format = req.and_then(|b| b.format.as_deref());
    let (use_, file) = match (req.and_then(|b| b.use_.as_deref()), format) {
        (Some("snapshot"), None | Some("jpeg")) => (CameraUse::Snapshot, "snapshot.jpg"),
        (Some("live_view"), None | Some("mjpeg")) => (CameraUse::LiveView, "live.mjpeg"),
        (Some("live_view"), Some("hls")) => (CameraUse::LiveView, "hls/live.m3u8"),
        (Some("snapshot" | "live_view"), Some(_)) => {
            return Err(ApiError::bad_request(
                "format",
                "a snapshot is \"jpeg\"; a live view is \"mjpeg\" or \"hls\"",
            ))
        }
        _ => {
            return Err(ApiError::bad_request(
                "use",
                "\"snapshot\" or \"live_view\" is required",
            ))
        }
    };
    if permitted(&st, &caller.0, &id, use_).is_none() {
        audit(&st, &caller.0, &id, use_, &remote, false).await?;
        return Err(forbidden());
    }
    let ttl = st.media_ticket_ttl;
    let ticket = st.auth.issue_ticket(&caller.0, &id, use_, ttl);
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "camera": id,
            "use": use_.as_str(),
            "expires_at": (Utc::now() + ttl).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "url": format!("/api/v1/cameras/{id}/{file}?ticket={ticket}"),
            "ticket": ticket,
        })),
    )
        .into_response())
}

/// `GET /api/v1/cameras/{id}/snapshot.jpg`: the latest snapshot of an online camera, its
/// capture time in `X-Capture-Time` and `Last-Modified`.
pub async fn snapshot(
    State(st): State<ApiState>,
    caller: Result<Caller, auth::Rejection>,
    Query(q): Query<TicketParam>,
    remote: Remote,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let claims = image_caller(
        &st,
        caller,
        q.ticket.as_deref(),
        &id,
        CameraUse::Snapshot,
        TicketSession::None,
    )?;
    let (rec, local, media) = admit_image(&st, &claims, &id, CameraUse::Snapshot, &remote).await?;
    Ok(match media.snapshot(&local, &claims).await {
        Ok(s) => media::snapshot_response(s),
        Err(e) => no_image(e, &rec).into_response(),
    })
}

/// `GET /api/v1/cameras/{id}/live.mjpeg`: MJPEG (`multipart/x-mixed-replace`) at a few frames
/// per second while the client reads; 429 past the camera's viewer limit.
pub async fn live(
    State(st): State<ApiState>,
    caller: Result<Caller, auth::Rejection>,
    Query(q): Query<TicketParam>,
    remote: Remote,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let claims = image_caller(
        &st,
        caller,
        q.ticket.as_deref(),
        &id,
        CameraUse::LiveView,
        TicketSession::None,
    )?;
    let (rec, local, media) = admit_image(&st, &claims, &id, CameraUse::LiveView, &remote).await?;
    Ok(match media.live(&local, &claims).await {
        Ok(parts) => media::mjpeg_response(parts),
        Err(e) => no_image(e, &rec).into_response(),
    })
}

/// Who has been fetching which camera's HLS stream lately: HLS clients poll the playlist
/// every few seconds, so a viewer is a subject seen in the last 30 s, and the audit log gets
/// one row per viewer and camera per minute rather than one per poll.
#[derive(Default)]
pub struct HlsSessions {
    /// camera -> subject -> (last fetch, last audit row)
    seen: std::sync::Mutex<HashMap<String, HashMap<String, (Instant, Instant)>>>,
}

const HLS_VIEWER_IDLE: Duration = Duration::from_secs(30);
const HLS_AUDIT_EVERY: Duration = Duration::from_secs(60);

impl HlsSessions {
    /// Has `subject` polled `camera`'s playlist in the last 30 s?
    fn watching(&self, camera: &str, subject: &str) -> bool {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.get(camera)
            .and_then(|v| v.get(subject))
            .is_some_and(|(last, _)| last.elapsed() < HLS_VIEWER_IDLE)
    }

    /// Registers a playlist fetch: `Err(n)` when `n` other viewers hold every slot, else
    /// whether this fetch needs an audit row.
    fn fetch(&self, camera: &str, subject: &str, max: usize) -> Result<bool, usize> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let viewers = seen.entry(camera.to_string()).or_default();
        viewers.retain(|_, (last, _)| last.elapsed() < HLS_VIEWER_IDLE);
        let now = Instant::now();
        let others = viewers.len();
        match viewers.get_mut(subject) {
            Some((last, audited)) => {
                *last = now;
                let due = audited.elapsed() >= HLS_AUDIT_EVERY;
                if due {
                    *audited = now;
                }
                Ok(due)
            }
            None if others >= max => Err(others),
            None => {
                viewers.insert(subject.to_string(), (now, now));
                Ok(true)
            }
        }
    }
}

/// `GET /api/v1/cameras/{id}/hls/{file}`: HLS live view by passthrough of the camera's own
/// H.264/H.265 (no re-encoding): `live.m3u8`, then the segments it lists. A player that
/// cannot send the bearer header (Safari's and the tablets' native HLS) opens the playlist
/// with a ticket; the playlist then carries it on every segment URI.
pub async fn hls(
    State(st): State<ApiState>,
    caller: Result<Caller, auth::Rejection>,
    Query(q): Query<TicketParam>,
    remote: Remote,
    Path((id, file)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let claims = image_caller(
        &st,
        caller,
        q.ticket.as_deref(),
        &id,
        CameraUse::LiveView,
        TicketSession::Hls(&st.hls_sessions),
    )?;
    let playlist = file == "live.m3u8";
    let Some(rec) = permitted(&st, &claims, &id, CameraUse::LiveView) else {
        if playlist {
            audit(&st, &claims, &id, CameraUse::LiveView, &remote, false).await?;
        }
        return Err(forbidden());
    };
    let media = st.cameras.as_ref().ok_or_else(no_worker)?;
    if playlist {
        let due = st
            .hls_sessions
            .fetch(&id, &claims.sub, media.max_viewers())
            .map_err(|n| no_image(media::MediaError::TooManyViewers(n), &rec))?;
        if due {
            audit(&st, &claims, &id, CameraUse::LiveView, &remote, true).await?;
        }
    }
    let local = LocalId::parse("camera", &id).map_err(|_| forbidden())?;
    Ok(match media.hls_file(&local, &file, &claims).await {
        Ok(Some(bytes)) if playlist && q.ticket.is_some() => {
            let ticket = q.ticket.as_deref().unwrap_or_default();
            media::hls_response(&file, Some(with_ticket(&bytes, ticket)))
        }
        Ok(bytes) => media::hls_response(&file, bytes),
        Err(e) => no_image(e, &rec).into_response(),
    })
}

/// The playlist with `?ticket=` on every segment URI (relative URIs drop the playlist's own
/// query, so a player would otherwise fetch the segments without it).
fn with_ticket(playlist: &[u8], ticket: &str) -> Vec<u8> {
    let text = String::from_utf8_lossy(playlist);
    let mut out = String::with_capacity(text.len() + 64 * ticket.len());
    for line in text.lines() {
        out.push_str(line);
        if !line.is_empty() && !line.starts_with('#') {
            out.push_str(if line.contains('?') {
                "&ticket="
            } else {
                "?ticket="
            });
            out.push_str(ticket);
        }
        out.push('\n');
    }
    out.into_bytes()
}

#[derive(Debug, Deserialize)]
pub struct AuditParams {
    camera: Option<String>,
    limit: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct NearParams {
    lon: Option<String>,
    lat: Option<String>,
    radius_m: Option<String>,
    limit: Option<String>,
}

/// Default search radius for the cameras near a point, metres (at most `MAX_RADIUS_M`).
const NEAR_DEFAULT_M: f64 = 1000.0;
/// Default and most cameras listed near a point (a 4×4 mosaic at most).
const NEAR_DEFAULT_LIMIT: usize = 9;
const NEAR_MAX_LIMIT: usize = 16;

/// `GET /api/v1/cameras/near?lon=&lat=&radius_m=&limit=`: the cameras the caller may see
/// within `radius_m` of a point (an incident, a report), nearest first, with the distance to
/// the metre and the state. A caller who may see no camera gets the same empty answer as
/// one with no camera nearby: the answer never tells a forbidden camera exists.
pub async fn near(
    State(st): State<ApiState>,
    caller: Caller,
    Query(p): Query<NearParams>,
) -> Result<Response, ApiError> {
    let number = |field: &str, v: &Option<String>| -> Result<Option<f64>, ApiError> {
        v.as_deref()
            .map(|s| {
                s.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite())
                    .ok_or_else(|| ApiError::bad_request(field, "must be a number"))
            })
            .transpose()
    };
    let lon = number("lon", &p.lon)?.ok_or_else(|| ApiError::bad_request("lon", "is required"))?;
    let lat = number("lat", &p.lat)?.ok_or_else(|| ApiError::bad_request("lat", "is required"))?;
    let radius_m = number("radius_m", &p.radius_m)?.unwrap_or(NEAR_DEFAULT_M);
    let limit = crate::parse_limit(p.limit.as_deref(), NEAR_DEFAULT_LIMIT, NEAR_MAX_LIMIT)?;
    if !(-180.0..=180.0).contains(&lon) {
        return Err(ApiError::bad_request("lon", "must be within -180..180"));
    }
    if !(-90.0..=90.0).contains(&lat) {
        return Err(ApiError::bad_request("lat", "must be within -90..90"));
    }
    let centre = model::spatial::Near::new(lon, lat, radius_m)
        .map_err(|e| ApiError::bad_request("radius_m", e.reason))?;
    let cameras = if caller.0.role.can_view(model::Layer::Cameras) {
        let q = replica::Query {
            layers: [model::Layer::Cameras].into_iter().collect(),
            bbox: None,
            unit: None,
            cameras: caller.0.camera_scope(),
            sensitive: caller.0.sensitive_scope(),
            near: Some(centre),
            within: None,
            sector: None,
        };
        st.replica.hits(&q, limit).1
    } else {
        Vec::new()
    };
    let list: Vec<serde_json::Value> = cameras
        .iter()
        .map(|h| {
            let p = &h.record.properties;
            let group = p.get("group").and_then(|g| g.as_str()).unwrap_or_default();
            let snapshots = group
                .parse::<CameraGroup>()
                .is_ok_and(|g| caller.0.may_use_camera(&g, CameraUse::Snapshot));
            let point = match &h.record.geometry.value {
                geojson::Value::Point(c) => c.clone(),
                _ => Vec::new(),
            };
            json!({
                "id": h.record.entity.local(),
                "name": p.get("name"),
                "group": group,
                "purpose_vi": p.get("purpose_vi"),
                "unit_names": p.get("unit_names"),
                "state": p.get("state").cloned().unwrap_or_else(|| "unknown".into()),
                "state_vi": p.get("state_vi"),
                "since": p.get("since"),
                "last_frame": p.get("last_frame"),
                "distance_m": h.distance_m.map(f64::round),
                "position": point,
                "images_allowed": snapshots,
            })
        })
        .collect();
    Ok(Json(json!({
        "lon": lon,
        "lat": lat,
        "radius_m": radius_m,
        "cameras": list,
    }))
    .into_response())
}

/// `GET /api/v1/cameras/{id}/views`: the caller's own recent uses of one camera (snapshots,
/// live views, refusals) from the audit log, newest first, at most 20: what a police officer
/// looked at, and when. Another caller's rows are never in it; a camera the caller may not
/// see answers 403 like its images.
pub async fn my_views(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    permitted(&st, &caller.0, &id, CameraUse::Layer).ok_or_else(forbidden)?;
    let store = st.auditor.store().ok_or_else(|| {
        ApiError::unavailable(
            "no audit log in this process: it needs the history store",
            5,
        )
    })?;
    let q = AuditQuery {
        subject: Some(caller.0.sub.clone()),
        action: Some("camera.".into()),
        target: Some(format!("camera:{id}")),
        limit: 20,
        ..Default::default()
    };
    let rows = store
        .audit(&q)
        .await
        .map_err(|e| ApiError::unavailable(e.to_string(), 5))?;
    let views: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            let e = &r.entry;
            json!({
                "at": e.at,
                "action": e.action.strip_prefix("camera.").unwrap_or(&e.action),
                "allowed": e.result == AuditResult::Allowed,
                "count": e.count,
            })
        })
        .collect();
    Ok(Json(json!({"camera": id, "views": views})).into_response())
}

/// `GET /api/v1/audit/cameras?camera=&limit=`: who looked at which camera (admins, and
/// leaders granted camera images, who answer for their use). The whole log is
/// `/api/v1/audit` (admins).
pub async fn audit_log(
    State(st): State<ApiState>,
    caller: Caller,
    Query(p): Query<AuditParams>,
) -> Result<Response, ApiError> {
    let c = &caller.0;
    if !(c.role == Role::Admin || (c.role == Role::Leader && c.has(Grant::CameraImages))) {
        return Err(ApiError::forbidden("the camera audit log is for admins"));
    }
    let limit = crate::parse_limit(p.limit.as_deref(), 100, 10_000)?;
    let store = st.auditor.store().ok_or_else(|| {
        ApiError::unavailable(
            "no audit log in this process: it needs the history store",
            5,
        )
    })?;
    let q = AuditQuery {
        action: Some("camera.".into()),
        target: p.camera.as_deref().map(|c| format!("camera:{c}")),
        limit,
        ..Default::default()
    };
    let rows = store
        .audit(&q)
        .await
        .map_err(|e| ApiError::unavailable(e.to_string(), 5))?;
    let accesses: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            let e = &r.entry;
            json!({
                "at": e.at,
                "subject": e.subject,
                "role": e.role,
                "camera": e.target.strip_prefix("camera:").unwrap_or(&e.target),
                "action": e.action.strip_prefix("camera.").unwrap_or(&e.action),
                "remote": e.remote,
                "allowed": e.result == AuditResult::Allowed,
                "count": e.count,
            })
        })
        .collect();
    Ok(Json(json!({"accesses": accesses})).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticketed_playlist_carries_the_ticket_on_every_segment_and_nothing_else() {
        let playlist = b"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n\
            #EXTINF:2.0,\nseg-00001.ts\n#EXTINF:2.0,\nseg-00002.ts?x=1\n";
        let out = String::from_utf8(with_ticket(playlist, "T.k-n")).unwrap();
        assert_eq!(
            out,
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n\
             #EXTINF:2.0,\nseg-00001.ts?ticket=T.k-n\n#EXTINF:2.0,\nseg-00002.ts?x=1&ticket=T.k-n\n"
        );
    }

    #[test]
    fn a_viewer_is_watching_while_polling_and_only_that_camera() {
        let s = HlsSessions::default();
        assert!(!s.watching("cam-1", "op1"));
        assert_eq!(s.fetch("cam-1", "op1", 4), Ok(true));
        assert!(s.watching("cam-1", "op1"));
        assert!(!s.watching("cam-2", "op1"));
        assert!(!s.watching("cam-1", "op2"));
        // A second poll within the minute needs no audit row.
        assert_eq!(s.fetch("cam-1", "op1", 4), Ok(false));
    }
}
