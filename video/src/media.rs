//! The worker side of camera media: [`MediaSource`] for the [`Fleet`] in this process, and
//! [`router`], which serves the fleet's images over HTTP to the API processes' [`media::RemoteWorkers`]
//! ([`VideoConfig::workers`](crate::VideoConfig::workers)). It serves only requests that
//! carry a media ticket for that camera and use (`auth::MediaTicket`), because by then the API
//! has checked access and written the audit row. A person's token is never accepted there.
//!
//! It must never decide who may see a camera (the API does that) and never answer 200
//! without an image.

use std::sync::Arc;

use ::media::{
    hls_response, mjpeg_response, snapshot_response, LiveParts, MediaError, MediaSource, NoImage,
    Snapshot,
};
use api_error::ApiError;
use auth::{Authenticator, CameraUse, Claims};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use futures::stream::StreamExt;
use model::LocalId;
use tracing::debug;

use crate::{Fleet, LiveError, LiveView};

impl From<LiveError> for MediaError {
    fn from(e: LiveError) -> Self {
        match e {
            LiveError::TooManyViewers(n) => MediaError::TooManyViewers(n),
            LiveError::LiveCapacity(n) => MediaError::LiveCapacity(n),
            e => MediaError::Unavailable(e.to_string()),
        }
    }
}

/// Why a live view or an HLS file could not be had, as the API says it.
fn refusal(e: Result<LiveError, NoImage>) -> MediaError {
    e.map_or_else(MediaError::NoImage, MediaError::from)
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

/// The workers run in this process.
#[async_trait::async_trait]
impl MediaSource for Fleet {
    fn max_viewers(&self) -> usize {
        Fleet::max_viewers(self)
    }

    async fn snapshot(&self, id: &LocalId, _who: &Claims) -> Result<Snapshot, MediaError> {
        Fleet::snapshot(self, id).map_err(MediaError::NoImage)
    }

    async fn live(&self, id: &LocalId, _who: &Claims) -> Result<LiveParts, MediaError> {
        Fleet::live(self, id).map(mjpeg_parts).map_err(refusal)
    }

    async fn hls_file(
        &self,
        id: &LocalId,
        file: &str,
        _who: &Claims,
    ) -> Result<Option<Vec<u8>>, MediaError> {
        Fleet::hls_file(self, id, file).await.map_err(refusal)
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
        let refuse = |reason: String| ApiError::unauthorized(reason).into_response();
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
        LocalId::parse("camera", id)
            .map_err(|e| ApiError::bad_request("id", e.reason).into_response())
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
            Err(e) => refusal(e).into_response(),
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
            Err(e) => refusal(e).into_response(),
        },
        Err(r) => r,
    }
}
