//! Camera images wherever the workers run. [`Media`] gives the API one way to fetch a
//! snapshot, an MJPEG live view or an HLS file: from the [`Fleet`] in this process, or over
//! HTTP from the `ioc video` process whose shard holds the camera
//! ([`VideoConfig::workers`](crate::VideoConfig::workers)). [`router`] is that worker side.
//! It serves only requests that carry a media ticket for that camera and use
//! (`auth::MediaTicket`), because by then the API has checked access and written the audit
//! row. A person's token is never accepted there.
//!
//! It must never decide who may see a camera (the API does that) and never answer 200
//! without an image.

use std::sync::Arc;
use std::time::Duration;

use auth::{Authenticator, CameraUse, Claims};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::{BoxStream, StreamExt};
use model::{CameraState, LocalId};
use serde::Deserialize;
use serde_json::json;
use tracing::{debug, warn};

use crate::{Fleet, LiveError, LiveView, NoImage, Snapshot, VideoConfig, VideoError};

/// The content type of [`LiveParts`]: one JPEG per part.
pub const MJPEG_CONTENT_TYPE: &str = "multipart/x-mixed-replace; boundary=frame";
/// How long a ticket for one request to a worker lasts (it is checked when the request
/// starts; a live view then runs as long as its reader).
const TICKET_TTL_S: i64 = 30;
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(5);
/// The playlist waits up to about 8 s for the first segment of a new HLS stream.
const HLS_TIMEOUT: Duration = Duration::from_secs(20);

/// Why there is no image to give.
#[derive(Debug, Clone, PartialEq)]
pub enum MediaError {
    /// The camera is not online (or no worker runs it): 503 with its state.
    NoImage(NoImage),
    /// 429: the camera's live viewers are at the limit.
    TooManyViewers(usize),
    /// 503: the worker decodes as many cameras for live view as it may.
    LiveCapacity(usize),
    /// 503: the decoder or the worker failed.
    Unavailable(String),
}

impl From<Result<LiveError, NoImage>> for MediaError {
    fn from(e: Result<LiveError, NoImage>) -> Self {
        match e {
            Err(n) => MediaError::NoImage(n),
            Ok(LiveError::TooManyViewers(n)) => MediaError::TooManyViewers(n),
            Ok(LiveError::LiveCapacity(n)) => MediaError::LiveCapacity(n),
            Ok(e) => MediaError::Unavailable(e.to_string()),
        }
    }
}

impl MediaError {
    pub fn status(&self) -> StatusCode {
        match self {
            MediaError::TooManyViewers(_) => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The JSON body: `error` and `reason`, with the state and the age of the last good frame
    /// for a camera that is not online, or the viewer count at the limit.
    pub fn body(&self) -> serde_json::Value {
        match self {
            MediaError::NoImage(n) => json!({
                "error": "camera_unavailable",
                "state": n.state.map(|s| s.as_str()),
                "reason": n.reason,
                "last_frame_age_s": n.last_frame_age_s,
            }),
            MediaError::TooManyViewers(n) => json!({
                "error": "too_many_viewers",
                "viewers": n,
                "reason": format!("this camera already has {n} live viewers"),
            }),
            MediaError::LiveCapacity(n) => json!({
                "error": "live_view_capacity",
                "live_cameras": n,
                "reason": format!("the video worker already shows {n} cameras live; close one, or use the snapshot"),
            }),
            MediaError::Unavailable(reason) => {
                json!({"error": "camera_unavailable", "reason": reason})
            }
        }
    }

    /// The response for `body`, with `Retry-After` on a 503.
    pub fn respond(&self, body: serde_json::Value) -> Response {
        let mut r = (self.status(), Json(body)).into_response();
        if self.status() == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        r
    }
}

impl IntoResponse for MediaError {
    fn into_response(self) -> Response {
        self.respond(self.body())
    }
}

/// An MJPEG body: `--frame` parts of one JPEG each, while the client reads.
pub type LiveParts = BoxStream<'static, Result<Bytes, std::io::Error>>;

/// A snapshot as HTTP: the JPEG, its capture time in `X-Capture-Time` and `Last-Modified`.
pub fn snapshot_response(s: Snapshot) -> Response {
    let captured = s
        .captured
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let http_date = s.captured.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    (
        [
            (header::CONTENT_TYPE, "image/jpeg".to_string()),
            (header::CACHE_CONTROL, "no-store".to_string()),
            (header::LAST_MODIFIED, http_date),
            (header::HeaderName::from_static("x-capture-time"), captured),
        ],
        s.jpeg,
    )
        .into_response()
}

/// A live view as HTTP (`multipart/x-mixed-replace`).
pub fn mjpeg_response(parts: LiveParts) -> Response {
    (
        [
            (header::CONTENT_TYPE, MJPEG_CONTENT_TYPE),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Body::from_stream(parts),
    )
        .into_response()
}

/// An HLS file as HTTP: the playlist (never cached) or a segment; 404 when there is no such
/// file (yet, or any more).
pub fn hls_response(file: &str, bytes: Option<Vec<u8>>) -> Response {
    let playlist = file == "live.m3u8";
    match bytes {
        Some(bytes) => (
            [
                (
                    header::CONTENT_TYPE,
                    if playlist { "application/vnd.apple.mpegurl" } else { "video/mp2t" },
                ),
                (header::CACHE_CONTROL, if playlist { "no-store" } else { "private, max-age=60" }),
            ],
            bytes,
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "not_found", "field": "file", "reason": "no such HLS file (segments last about 16 s)"})),
        )
            .into_response(),
    }
}

/// The JPEG frames of a local live view as multipart parts. A slow reader skips frames rather
/// than holding the decoder back.
fn mjpeg_parts(view: LiveView) -> LiveParts {
    futures::stream::unfold(view, |mut view| async move {
        loop {
            match view.rx.recv().await {
                Ok(jpeg) => {
                    let mut part = format!(
                        "--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
                        jpeg.len()
                    )
                    .into_bytes();
                    part.extend_from_slice(&jpeg);
                    part.extend_from_slice(b"\r\n");
                    return Some((Ok(Bytes::from(part)), view));
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
    .boxed()
}

/// Where the API gets camera images.
#[derive(Clone)]
pub enum Media {
    /// The workers run in this process.
    Local(Arc<Fleet>),
    /// The workers are `ioc video` processes, one per shard.
    Remote(Arc<RemoteWorkers>),
}

impl Media {
    /// Live viewers allowed at once per camera.
    pub fn max_viewers(&self) -> usize {
        match self {
            Media::Local(f) => f.max_viewers(),
            Media::Remote(r) => r.max_viewers,
        }
    }

    /// The latest snapshot of an online camera; `who` is the caller whose access was admitted.
    pub async fn snapshot(&self, id: &LocalId, who: &Claims) -> Result<Snapshot, MediaError> {
        match self {
            Media::Local(f) => f.snapshot(id).map_err(MediaError::NoImage),
            Media::Remote(r) => r.snapshot(id, who).await,
        }
    }

    /// An MJPEG live view, within the camera's viewer limit.
    pub async fn live(&self, id: &LocalId, who: &Claims) -> Result<LiveParts, MediaError> {
        match self {
            Media::Local(f) => f.live(id).map(mjpeg_parts).map_err(MediaError::from),
            Media::Remote(r) => r.live(id, who).await,
        }
    }

    /// A file of the camera's HLS stream; `Ok(None)` when there is no such file.
    pub async fn hls_file(
        &self,
        id: &LocalId,
        file: &str,
        who: &Claims,
    ) -> Result<Option<Vec<u8>>, MediaError> {
        match self {
            Media::Local(f) => f.hls_file(id, file).await.map_err(MediaError::from),
            Media::Remote(r) => r.hls_file(id, file, who).await,
        }
    }
}

/// The `ioc video` processes, by shard, as seen from an API process.
pub struct RemoteWorkers {
    client: reqwest::Client,
    workers: Vec<String>,
    auth: Arc<Authenticator>,
    max_viewers: usize,
}

#[derive(Deserialize)]
struct WorkerRefusal {
    state: Option<CameraState>,
    reason: Option<String>,
    last_frame_age_s: Option<f64>,
    viewers: Option<usize>,
    live_cameras: Option<usize>,
}

impl RemoteWorkers {
    /// From `config.workers` (base URLs, worker `i` running shard `i`); tickets are signed
    /// with `auth`, whose secret the workers share.
    pub fn new(config: &VideoConfig, auth: Arc<Authenticator>) -> Result<Self, VideoError> {
        let mut workers = Vec::new();
        for w in &config.workers {
            let url = reqwest::Url::parse(w)
                .map_err(|e| VideoError::Config(format!("video.workers: {w:?}: {e}")))?;
            if !matches!(url.scheme(), "http" | "https") || !url.username().is_empty() {
                return Err(VideoError::Config(format!(
                    "video.workers: {w:?}: an http(s) URL without credentials is required"
                )));
            }
            workers.push(w.trim_end_matches('/').to_string());
        }
        if workers.is_empty() {
            return Err(VideoError::Config("video.workers is empty".into()));
        }
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| VideoError::Config(format!("HTTP client: {e}")))?;
        Ok(Self {
            client,
            workers,
            auth,
            max_viewers: config.max_viewers,
        })
    }

    /// The worker's answer when it is 200 (`Ok(Some)`) or 404 (`Ok(None)`).
    async fn get(
        &self,
        id: &LocalId,
        use_: CameraUse,
        tail: &str,
        who: &Claims,
        timeout: Option<Duration>,
    ) -> Result<Option<reqwest::Response>, MediaError> {
        let shard = crate::config::shard_of(id.as_str(), self.workers.len() as u32) as usize;
        let url = format!("{}/media/v1/cameras/{}/{tail}", self.workers[shard], id);
        let ticket = self.auth.issue_ticket(
            who,
            id.as_str(),
            use_,
            chrono::Duration::seconds(TICKET_TTL_S),
        );
        let mut req = self.client.get(&url).bearer_auth(ticket);
        if let Some(t) = timeout {
            req = req.timeout(t);
        }
        let resp = req.send().await.map_err(|e| {
            warn!(worker = shard, %url, error = %e, "video worker unreachable");
            MediaError::Unavailable(format!("the video worker of shard {shard} is unreachable"))
        })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(Some(resp));
        }
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let refusal = resp.json::<WorkerRefusal>().await.ok();
        Err(match (status.as_u16(), refusal) {
            (429, Some(r)) => MediaError::TooManyViewers(r.viewers.unwrap_or(self.max_viewers)),
            (
                503,
                Some(WorkerRefusal {
                    live_cameras: Some(n),
                    ..
                }),
            ) => MediaError::LiveCapacity(n),
            (503, Some(r)) if r.viewers.is_none() => MediaError::NoImage(NoImage {
                state: r.state,
                reason: r.reason,
                last_frame_age_s: r.last_frame_age_s,
            }),
            (code, _) => {
                warn!(worker = shard, %url, code, "video worker refused a ticketed request");
                MediaError::Unavailable(format!(
                    "the video worker of shard {shard} answered {code}"
                ))
            }
        })
    }

    fn unexpected_404() -> MediaError {
        MediaError::Unavailable("the video worker has no such media route".into())
    }

    async fn snapshot(&self, id: &LocalId, who: &Claims) -> Result<Snapshot, MediaError> {
        let resp = self
            .get(
                id,
                CameraUse::Snapshot,
                "snapshot.jpg",
                who,
                Some(SNAPSHOT_TIMEOUT),
            )
            .await?
            .ok_or_else(Self::unexpected_404)?;
        let captured = resp
            .headers()
            .get("x-capture-time")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| DateTime::parse_from_rfc3339(v).ok())
            .map(|t| t.with_timezone(&Utc))
            .ok_or_else(|| MediaError::Unavailable("the worker's snapshot has no time".into()))?;
        let jpeg = resp
            .bytes()
            .await
            .map_err(|e| MediaError::Unavailable(format!("snapshot transfer: {e}")))?;
        Ok(Snapshot { jpeg, captured })
    }

    async fn live(&self, id: &LocalId, who: &Claims) -> Result<LiveParts, MediaError> {
        let resp = self
            .get(id, CameraUse::LiveView, "live.mjpeg", who, None)
            .await?
            .ok_or_else(Self::unexpected_404)?;
        Ok(resp
            .bytes_stream()
            .map(|r| r.map_err(std::io::Error::other))
            .boxed())
    }

    async fn hls_file(
        &self,
        id: &LocalId,
        file: &str,
        who: &Claims,
    ) -> Result<Option<Vec<u8>>, MediaError> {
        if !crate::hls::is_hls_file(file) {
            return Ok(None);
        }
        let tail = format!("hls/{file}");
        let Some(resp) = self
            .get(id, CameraUse::LiveView, &tail, who, Some(HLS_TIMEOUT))
            .await?
        else {
            return Ok(None);
        };
        resp.bytes()
            .await
            .map(|b| Some(b.to_vec()))
            .map_err(|e| MediaError::Unavailable(format!("HLS transfer: {e}")))
    }
}

/// The worker side: this process's fleet, to holders of a media ticket.
#[derive(Clone)]
struct MediaServer {
    fleet: Arc<Fleet>,
    auth: Arc<Authenticator>,
}

/// `GET /media/v1/cameras/{id}/snapshot.jpg`, `/live.mjpeg` and `/hls/{file}`, for the API
/// processes (see [`RemoteWorkers`]); each request needs a media ticket for its camera and use.
pub fn router(fleet: Arc<Fleet>, auth: Arc<Authenticator>) -> Router {
    Router::new()
        .route("/media/v1/cameras/{id}/snapshot.jpg", get(serve_snapshot))
        .route("/media/v1/cameras/{id}/live.mjpeg", get(serve_live))
        .route("/media/v1/cameras/{id}/hls/{file}", get(serve_hls))
        .with_state(MediaServer { fleet, auth })
}

impl MediaServer {
    /// The camera, if the request carries a valid ticket for it and this use.
    fn admit(&self, headers: &HeaderMap, id: &str, use_: CameraUse) -> Result<LocalId, Response> {
        let refuse = |reason: String| {
            (
                StatusCode::UNAUTHORIZED,
                Json(json!({"error": "unauthorized", "reason": reason})),
            )
                .into_response()
        };
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| refuse("a media ticket is required".into()))?;
        let ticket = self
            .auth
            .verify_ticket(token.trim(), id, use_)
            .map_err(|e| refuse(e.to_string()))?;
        debug!(camera = id, sub = %ticket.who.sub, action = use_.as_str(), "ticketed media request");
        LocalId::parse("camera", id).map_err(|e| {
            (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": "bad_request", "field": "id", "reason": e.to_string()})),
            )
                .into_response()
        })
    }
}

async fn serve_snapshot(
    State(m): State<MediaServer>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    match m.admit(&headers, &id, CameraUse::Snapshot) {
        Ok(local) => match m.fleet.snapshot(&local) {
            Ok(s) => snapshot_response(s),
            Err(n) => MediaError::NoImage(n).into_response(),
        },
        Err(r) => r,
    }
}

async fn serve_live(
    State(m): State<MediaServer>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    match m.admit(&headers, &id, CameraUse::LiveView) {
        Ok(local) => match m.fleet.live(&local) {
            Ok(view) => mjpeg_response(mjpeg_parts(view)),
            Err(e) => MediaError::from(e).into_response(),
        },
        Err(r) => r,
    }
}

async fn serve_hls(
    State(m): State<MediaServer>,
    headers: HeaderMap,
    Path((id, file)): Path<(String, String)>,
) -> Response {
    match m.admit(&headers, &id, CameraUse::LiveView) {
        Ok(local) => match m.fleet.hls_file(&local, &file).await {
            Ok(bytes) => hls_response(&file, bytes),
            Err(e) => MediaError::from(e).into_response(),
        },
        Err(r) => r,
    }
}
