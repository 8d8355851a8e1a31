//! The media interface between the API and the cameras' workers, free of GStreamer: what a
//! camera image is ([`Snapshot`], an MJPEG body of [`LiveParts`], HLS files), why there is
//! none ([`MediaError`], [`NoImage`]), how each goes out over HTTP, and [`MediaSource`], the
//! one way the API asks for them. `video`'s fleet implements it in the process that runs the
//! workers; [`RemoteWorkers`] implements it over HTTP for an `ioc api` whose workers run in
//! `ioc video` processes, sending a media ticket with every request. Also `[video]`'s
//! configuration ([`config`]), which every process reads whether or not it runs workers.
//!
//! It owns the *shape* of media answers. It must never decide who may see a camera (the API
//! does that, before it asks), never link GStreamer, and never answer 200 without an image.

pub mod config;

pub use config::{Credential, VideoConfig};

use std::sync::Arc;
use std::time::Duration;

use api_error::ApiError;
use auth::{Authenticator, CameraUse, Claims};
use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::{BoxStream, StreamExt};
use model::{CameraState, LocalId};
use serde::Deserialize;
use serde_json::json;
use tracing::warn;

/// The content type of [`LiveParts`]: one JPEG per part.
pub const MJPEG_CONTENT_TYPE: &str = "multipart/x-mixed-replace; boundary=frame";
/// How long a ticket for one request to a worker lasts (it is checked when the request
/// starts; a live view then runs as long as its reader).
const TICKET_TTL_S: i64 = 30;
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(5);
/// The playlist waits up to about 8 s for the first segment of a new HLS stream.
const HLS_TIMEOUT: Duration = Duration::from_secs(20);

/// The latest snapshot of a camera.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub jpeg: Bytes,
    /// When the keyframe it was decoded from arrived.
    pub captured: DateTime<Utc>,
}

/// Why an image is not available.
#[derive(Debug, Clone, PartialEq)]
pub struct NoImage {
    /// `None` when this worker does not run the camera.
    pub state: Option<CameraState>,
    pub reason: Option<String>,
    /// Seconds since the last good frame, if there ever was one.
    pub last_frame_age_s: Option<f64>,
}

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

impl MediaError {
    pub fn status(&self) -> StatusCode {
        match self {
            MediaError::TooManyViewers(_) => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The answer: `error` and `reason`, with the state and the age of the last good frame
    /// for a camera that is not online, or the viewer count at the limit; `Retry-After` on a
    /// 503.
    pub fn to_api_error(&self) -> ApiError {
        let e = match self {
            MediaError::NoImage(n) => ApiError::new(
                self.status(),
                "camera_unavailable",
                n.reason.clone().unwrap_or_else(|| "the camera is not online".into()),
            )
            .with("state", json!(n.state.map(|s| s.as_str())))
            .with("last_frame_age_s", json!(n.last_frame_age_s)),
            MediaError::TooManyViewers(n) => ApiError::new(
                self.status(),
                "too_many_viewers",
                format!("this camera already has {n} live viewers"),
            )
            .with("viewers", *n),
            MediaError::LiveCapacity(n) => ApiError::new(
                self.status(),
                "live_view_capacity",
                format!("the video worker already shows {n} cameras live; close one, or use the snapshot"),
            )
            .with("live_cameras", *n),
            MediaError::Unavailable(reason) => {
                ApiError::new(self.status(), "camera_unavailable", reason.clone())
            }
        };
        if self.status() == StatusCode::SERVICE_UNAVAILABLE {
            e.retry_after(5)
        } else {
            e
        }
    }

    /// The JSON body of [`MediaError::to_api_error`].
    pub fn body(&self) -> serde_json::Value {
        self.to_api_error().body()
    }
}

impl From<MediaError> for ApiError {
    fn from(e: MediaError) -> Self {
        e.to_api_error()
    }
}

impl IntoResponse for MediaError {
    fn into_response(self) -> Response {
        self.to_api_error().into_response()
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

/// Where the API gets camera images: the workers in this process, or those of `ioc video`
/// processes. The caller has admitted `who` to the camera and written the audit row.
#[async_trait::async_trait]
pub trait MediaSource: Send + Sync {
    /// Live viewers allowed at once per camera.
    fn max_viewers(&self) -> usize;
    /// The latest snapshot of an online camera.
    async fn snapshot(&self, id: &LocalId, who: &Claims) -> Result<Snapshot, MediaError>;
    /// An MJPEG live view, within the camera's viewer limit.
    async fn live(&self, id: &LocalId, who: &Claims) -> Result<LiveParts, MediaError>;
    /// A file of the camera's HLS stream; `Ok(None)` when there is no such file.
    async fn hls_file(
        &self,
        id: &LocalId,
        file: &str,
        who: &Claims,
    ) -> Result<Option<Vec<u8>>, MediaError>;
}

/// Is `name` one of the names the muxer writes (`live.m3u8`, `seg-<digits>.ts`)? Anything
/// else (a path, `..`) is refused before touching the disk.
pub fn is_hls_file(name: &str) -> bool {
    name == "live.m3u8"
        || name
            .strip_prefix("seg-")
            .and_then(|r| r.strip_suffix(".ts"))
            .is_some_and(|d| {
                !d.is_empty() && d.len() <= 10 && d.bytes().all(|b| b.is_ascii_digit())
            })
}

/// The shard of `camera` among `shards` workers: FNV-1a of the id, stable across processes and
/// builds, so the API finds the worker that runs a camera without asking.
pub fn shard_of(camera: &str, shards: u32) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in camera.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h % shards.max(1)
}

/// A media configuration that cannot work, with the key that says so.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

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
    /// From `workers` (base URLs, worker `i` running shard `i`: `video.workers`); tickets are
    /// signed with `auth`, whose secret the workers share.
    pub fn new(
        workers_config: &[String],
        max_viewers: usize,
        auth: Arc<Authenticator>,
    ) -> Result<Self, ConfigError> {
        let mut workers = Vec::new();
        for w in workers_config {
            let url = reqwest::Url::parse(w)
                .map_err(|e| ConfigError(format!("video.workers: {w:?}: {e}")))?;
            if !matches!(url.scheme(), "http" | "https") || !url.username().is_empty() {
                return Err(ConfigError(format!(
                    "video.workers: {w:?}: an http(s) URL without credentials is required"
                )));
            }
            workers.push(w.trim_end_matches('/').to_string());
        }
        if workers.is_empty() {
            return Err(ConfigError("video.workers is empty".into()));
        }
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| ConfigError(format!("HTTP client: {e}")))?;
        Ok(Self {
            client,
            workers,
            auth,
            max_viewers,
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
        let shard = shard_of(id.as_str(), self.workers.len() as u32) as usize;
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
}

#[async_trait::async_trait]
impl MediaSource for RemoteWorkers {
    fn max_viewers(&self) -> usize {
        self.max_viewers
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
        if !is_hls_file(file) {
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
