//! Camera workers: for every registry camera this worker owns (see [`VideoConfig::owns`]),
//! a GStreamer pipeline pulling its RTSP stream without decoding it, a state machine that
//! judges liveness from the frames that actually arrive (connecting, online, stalled,
//! offline), `camera.status` events on `ioc.cameras` at every transition and every stats
//! period, a JPEG snapshot decoded from one keyframe at an interval, and MJPEG live view
//! decoded only while somebody watches. [`media`] carries those images to an API in another
//! process.
//!
//! It owns *what a camera is doing right now*. It must never put a stream credential in a
//! URL, a log line, an event or an error, never decode every frame of every camera, and never
//! let one camera's failure reach another's pipeline or task.

pub mod hls;
pub mod jpeg;
pub mod media;
mod pace;
mod worker;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bus::{Bus, BusError, Message};
use model::{Camera, CameraState, CameraStatus, Envelope, LocalId, RegistryChange, RegistryEntry};
use tokio::sync::watch;
use tracing::{info, warn};

pub use ::media::config::{self, shard_of, Credential, VideoConfig};
pub use ::media::{MediaError, MediaSource, RemoteWorkers};
use worker::CameraShared;
pub use worker::{LiveError, LiveView, Snapshot};

#[derive(Debug, thiserror::Error)]
pub enum VideoError {
    #[error("GStreamer could not start: {0}")]
    Init(String),
    #[error("video configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// Where status events go.
#[derive(Clone)]
pub(crate) struct Publisher {
    bus: Arc<dyn Bus>,
    topic: String,
    source: String,
}

impl Publisher {
    async fn publish(&self, status: &CameraStatus) {
        let env = worker::status_event(status, &self.source);
        if let Err(e) = self
            .bus
            .publish(&self.topic, env.entity.as_str(), Some(env.to_bytes()))
            .await
        {
            // The next transition or stats period publishes the state again.
            warn!(camera = %status.camera, error = %e, "camera status not published");
        }
    }
}

struct Running {
    camera: Camera,
    shared: Arc<CameraShared>,
    stop: watch::Sender<bool>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

pub use ::media::NoImage;

/// The cameras this process runs.
pub struct Fleet {
    config: Arc<VideoConfig>,
    publisher: Publisher,
    running: Mutex<HashMap<LocalId, Running>>,
    ready: AtomicBool,
    /// Where HLS muxers write (one directory per camera, removed with its muxer).
    hls_root: std::path::PathBuf,
    /// Spaces RTSP connects across this worker's cameras.
    pacer: Arc<pace::Pacer>,
    /// Taken while a live view starts (see [`Fleet::live`]).
    live_starts: Mutex<()>,
}

impl Fleet {
    /// A fleet publishing to `topic` (`ioc.cameras`); nothing runs until [`Fleet::follow`].
    pub fn new(
        config: VideoConfig,
        bus: Arc<dyn Bus>,
        topic: String,
        source: &str,
    ) -> Result<Arc<Self>, VideoError> {
        gstreamer::init().map_err(|e| VideoError::Init(e.to_string()))?;
        for element in [
            "rtspsrc",
            "rtph264depay",
            "h264parse",
            "avdec_h264",
            "jpegenc",
        ] {
            if gstreamer::ElementFactory::find(element).is_none() {
                return Err(VideoError::Init(format!(
                    "GStreamer element `{element}` is missing (install gstreamer1.0-plugins-good, -bad and gstreamer1.0-libav)"
                )));
            }
        }
        Ok(Arc::new(Self {
            pacer: Arc::new(pace::Pacer::new(config.connects_per_s)),
            live_starts: Mutex::new(()),
            config: Arc::new(config),
            publisher: Publisher {
                bus,
                topic,
                source: source.to_string(),
            },
            running: Mutex::new(HashMap::new()),
            ready: AtomicBool::new(false),
            hls_root: std::env::temp_dir()
                .join("ioc-hls")
                .join(std::process::id().to_string()),
        }))
    }

    /// Follows the registry: starts a worker for each camera this process owns, restarts it
    /// when its stream changes, stops it when the camera goes.
    pub async fn follow(
        self: Arc<Self>,
        bus: Arc<dyn Bus>,
        registry: String,
    ) -> Result<(), BusError> {
        let on_ready = self.clone();
        bus::replay_and_follow(
            &*bus,
            &[&registry],
            |m| self.registry_message(&m),
            move || {
                info!(cameras = on_ready.len(), "video workers started");
                on_ready.ready.store(true, Ordering::Release);
            },
        )
        .await
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<LocalId, Running>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn registry_message(&self, m: &Message) {
        let Some(env) = m
            .payload
            .as_deref()
            .and_then(|p| Envelope::from_bytes(p).ok())
        else {
            return;
        };
        let Some(id) = env.entity.local_of(model::EntityKind::Camera) else {
            return;
        };
        match RegistryChange::from_event(&env) {
            Ok(Some(RegistryChange::Upsert(RegistryEntry::Camera(c))))
                if self.config.owns(c.id.as_str()) =>
            {
                self.start(c)
            }
            Err(errors) => {
                warn!(camera = %id, ?errors, "camera refused by validation; not started");
                self.lock().remove(&id);
            }
            // Removed, or another worker's.
            _ => {
                self.lock().remove(&id);
            }
        }
    }

    fn start(&self, camera: Camera) {
        let mut running = self.lock();
        if running
            .get(&camera.id)
            .is_some_and(|r| r.camera.stream == camera.stream)
        {
            // Name, position or group changed: the stream is the same, keep it running.
            if let Some(r) = running.get_mut(&camera.id) {
                r.camera = camera;
            }
            return;
        }
        let credential = camera
            .stream
            .credentials
            .as_ref()
            .and_then(|name| self.config.credentials.get(name).cloned());
        let shared = CameraShared::new(&camera);
        let (stop, stop_rx) = watch::channel(false);
        tokio::spawn(worker::run(
            camera.clone(),
            credential,
            self.config.clone(),
            shared.clone(),
            self.publisher.clone(),
            self.pacer.clone(),
            stop_rx,
        ));
        running.insert(
            camera.id.clone(),
            Running {
                camera,
                shared,
                stop,
            },
        );
    }

    /// Stops every worker.
    pub fn shutdown(&self) {
        self.lock().clear();
    }

    /// Live viewers allowed at once per camera.
    pub fn max_viewers(&self) -> usize {
        self.config.max_viewers
    }

    /// The camera's current status, if this process runs it.
    pub fn status(&self, id: &LocalId) -> Option<CameraStatus> {
        self.lock().get(id).map(|r| r.shared.status())
    }

    fn shared(&self, id: &LocalId) -> Option<Arc<CameraShared>> {
        self.lock().get(id).map(|r| r.shared.clone())
    }

    fn no_image(&self, shared: Option<&CameraShared>) -> NoImage {
        match shared.map(|s| s.status()) {
            Some(s) => NoImage {
                state: Some(s.state),
                reason: s.reason,
                last_frame_age_s: s.last_frame.map(|t| {
                    ((chrono::Utc::now() - t.to_utc()).num_milliseconds() as f64 / 1000.0).max(0.0)
                }),
            },
            None => NoImage {
                state: None,
                reason: Some("no video worker in this process runs this camera".into()),
                last_frame_age_s: None,
            },
        }
    }

    /// The latest snapshot, only while the camera is online (a stalled or offline camera's
    /// old picture is not passed off as current).
    pub fn snapshot(&self, id: &LocalId) -> Result<Snapshot, NoImage> {
        let shared = self.shared(id);
        match shared.as_ref() {
            Some(s) if s.status().state == CameraState::Online => {
                s.snapshot().ok_or_else(|| NoImage {
                    reason: Some("online, first snapshot not taken yet".into()),
                    ..self.no_image(Some(s))
                })
            }
            other => Err(self.no_image(other.map(|s| &**s))),
        }
    }

    /// A file of the camera's HLS stream (`live.m3u8` or a segment): the camera's own
    /// compressed video muxed into MPEG-TS, started on the first request and stopped when
    /// nobody has fetched for 30 s. The playlist waits (a few seconds at most) for the first
    /// segment. `Ok(None)`: no such file (yet).
    pub async fn hls_file(
        &self,
        id: &LocalId,
        name: &str,
    ) -> Result<Option<Vec<u8>>, Result<LiveError, NoImage>> {
        if !hls::is_hls_file(name) {
            return Ok(None);
        }
        let shared = self.shared(id);
        let dir = match shared.as_ref() {
            Some(s) if s.status().state == CameraState::Online => {
                s.hls_dir(&self.hls_root, id.as_str()).map_err(Ok)?
            }
            other => return Err(Err(self.no_image(other.map(|s| &**s)))),
        };
        let path = dir.join(name);
        let waits = if name == "live.m3u8" {
            hls::TARGET_S * 20 + 40
        } else {
            0
        };
        for _ in 0..=waits {
            if let Ok(bytes) = tokio::fs::read(&path).await {
                if name != "live.m3u8" {
                    return Ok(Some(bytes));
                }
                // Segment URIs relative to the playlist's URL, never the server's paths.
                let text = String::from_utf8_lossy(&bytes);
                let relative: String = text
                    .lines()
                    .map(|l| match l.starts_with('#') {
                        true => format!("{l}\n"),
                        false => format!("{}\n", l.rsplit('/').next().unwrap_or(l)),
                    })
                    .collect();
                return Ok(Some(relative.into_bytes()));
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        Ok(None)
    }

    /// MJPEG live view of an online camera, within its viewer limit and the worker's limit
    /// of cameras decoded live.
    pub fn live(&self, id: &LocalId) -> Result<LiveView, Result<LiveError, NoImage>> {
        // Live views start one at a time, so two first viewers of two cameras cannot both
        // take the last decoder; the fleet's own lock (snapshots, status) is not held while
        // a decoder starts.
        let _starting = self.live_starts.lock().unwrap_or_else(|e| e.into_inner());
        let shared = self.shared(id);
        match shared.as_ref() {
            Some(s) if s.status().state == CameraState::Online => {
                let decoding = self
                    .lock()
                    .values()
                    .filter(|r| r.shared.is_watched())
                    .count();
                if !s.is_watched() && decoding >= self.config.max_live_cameras {
                    return Err(Ok(LiveError::LiveCapacity(self.config.max_live_cameras)));
                }
                let width = self.config.snapshot_width;
                s.watch(
                    self.config.max_viewers,
                    |w, h| jpeg::scaled(width, w, h),
                    self.config.jpeg_quality.clamp(10, 100),
                    self.config.mjpeg_fps,
                )
                .map_err(Ok)
            }
            other => Err(Err(self.no_image(other.map(|s| &**s)))),
        }
    }
}
