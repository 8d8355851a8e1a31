//! One camera: an RTSP pipeline (`rtspsrc ! depay ! parse ! appsink`, no decoding) and the
//! state machine that judges it from the frames that actually arrive:
//!
//! ```text
//! connecting --first frame--> online --no frame for stall_after_s--> stalled
//!      |                        ^                                      |
//!      |                        +-------------frame arrives------------+
//!      +--error / no frame for offline_after_s--> offline <--stall too long, error, end--+
//!                                                    | reconnect with backoff
//!                                                    +--first frame--> online
//! ```
//!
//! Every transition and every stats period is a `camera.status` event. A snapshot is one
//! keyframe decoded to JPEG every `snapshot_every_s`. A camera's failures stay in its own
//! pipeline and task.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use model::camera::{RtspTransport, StreamStats};
use model::{Camera, CameraState, CameraStatus, EntityId, Envelope, EventKind};
use tokio::sync::{broadcast, watch};
use tracing::{debug, info, warn};

use crate::config::{Credential, VideoConfig};
use crate::hls::HlsMuxer;
use crate::jpeg::{self, Codec, LiveDecoder};
use crate::pace::Pacer;
use crate::Publisher;

pub use ::media::Snapshot;

struct Keyframe {
    buffer: gst::Buffer,
    caps: gst::Caps,
    codec: Codec,
    at: DateTime<Utc>,
}

/// What the streaming thread records about arriving frames.
#[derive(Default)]
struct FrameLog {
    frames: u64,
    /// Frames and bytes since the last stats period.
    window_frames: u64,
    window_bytes: u64,
    last_frame: Option<(Instant, DateTime<Utc>)>,
    /// Arrival of the last two keyframes.
    keys: [Option<Instant>; 2],
    keyframe: Option<Keyframe>,
    /// Was the previous access unit (part of) a keyframe?
    last_was_key: bool,
    codec: Option<Codec>,
    size: Option<(u32, u32)>,
}

/// The camera's live view, while somebody watches.
struct Live {
    decoder: LiveDecoder,
    /// Fed from a keyframe on: a decoder cannot start mid-GOP.
    started: bool,
}

/// The camera's HLS muxer, while somebody fetches its playlist.
struct Hls {
    muxer: HlsMuxer,
    /// Fed from a keyframe on: a segment must start with one.
    started: bool,
    last_access: Instant,
}

/// HLS clients are gone once no playlist or segment was fetched for this long.
const HLS_IDLE: Duration = Duration::from_secs(30);

/// What the worker, the API and the streaming thread share about one camera.
pub struct CameraShared {
    frames: Mutex<FrameLog>,
    hls: Mutex<Option<Hls>>,
    snapshot: RwLock<Option<Snapshot>>,
    status: RwLock<CameraStatus>,
    live: Mutex<Option<Live>>,
    live_tx: broadcast::Sender<Bytes>,
    viewers: AtomicUsize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl CameraShared {
    pub fn new(camera: &Camera) -> Arc<Self> {
        let now = Utc::now().fixed_offset();
        Arc::new(Self {
            frames: Mutex::default(),
            hls: Mutex::new(None),
            snapshot: RwLock::new(None),
            status: RwLock::new(CameraStatus {
                camera: camera.id.clone(),
                state: CameraState::Connecting,
                since: now,
                changed: true,
                reason: None,
                last_frame: None,
                last_snapshot: None,
                reconnects: 0,
                stats: StreamStats::default(),
            }),
            live: Mutex::new(None),
            live_tx: broadcast::channel(8).0,
            viewers: AtomicUsize::new(0),
        })
    }

    pub fn status(&self) -> CameraStatus {
        self.status
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn snapshot(&self) -> Option<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Called on the streaming thread for every access unit.
    fn on_frame(&self, buffer: gst::Buffer, caps: Option<gst::Caps>) {
        let now = Instant::now();
        let mut f = lock(&self.frames);
        // A keyframe: not a delta unit and holding a picture (parameter sets can come alone).
        let key = !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT)
            && f.codec.is_some_and(|c| {
                buffer
                    .map_readable()
                    .is_ok_and(|m| jpeg::has_keyframe_picture(c, m.as_slice()))
            });
        f.frames += 1;
        f.window_frames += 1;
        f.window_bytes += buffer.size() as u64;
        f.last_frame = Some((now, Utc::now()));
        if let Some(s) = caps.as_ref().and_then(|c| c.structure(0)) {
            if let (Ok(w), Ok(h)) = (s.get::<i32>("width"), s.get::<i32>("height")) {
                f.size = Some((w.max(0) as u32, h.max(0) as u32));
            }
        }
        if key && f.last_was_key {
            // The rest of the same keyframe (a picture sent as several access units).
            if let Some(k) = f.keyframe.as_mut() {
                let mut whole = k.buffer.clone();
                whole.append(buffer.clone());
                k.buffer = whole;
            }
        } else if key {
            f.keys = [f.keys[1], Some(now)];
            if let (Some(caps), Some(codec)) = (caps, f.codec) {
                f.keyframe = Some(Keyframe {
                    buffer: buffer.clone(),
                    caps,
                    codec,
                    at: Utc::now(),
                });
            }
        }
        f.last_was_key = key;
        drop(f);
        let mut live = lock(&self.live);
        if let Some(l) = live.as_mut() {
            l.started |= key;
            if l.started {
                l.decoder.push(&buffer);
            }
        }
        drop(live);
        let mut hls = lock(&self.hls);
        if let Some(h) = hls.as_mut() {
            h.started |= key;
            if h.started {
                h.muxer.push(&buffer);
            }
        }
    }

    /// The muxer's directory, starting the muxer if it is not running (HLS access).
    pub(crate) fn hls_dir(
        &self,
        root: &std::path::Path,
        camera: &str,
    ) -> Result<std::path::PathBuf, LiveError> {
        let mut hls = lock(&self.hls);
        if let Some(h) = hls.as_mut() {
            h.last_access = Instant::now();
            return Ok(h.muxer.dir().to_path_buf());
        }
        let f = lock(&self.frames);
        let Some(k) = f.keyframe.as_ref() else {
            return Err(LiveError::NoStream);
        };
        let (codec, caps) = (k.codec, k.caps.clone());
        drop(f);
        let muxer = HlsMuxer::start(codec, &caps, root.join(camera)).map_err(LiveError::Decoder)?;
        let dir = muxer.dir().to_path_buf();
        *hls = Some(Hls {
            muxer,
            started: false,
            last_access: Instant::now(),
        });
        Ok(dir)
    }

    /// Stops the HLS muxer if nobody fetched from it lately (or `always`).
    fn hls_reap(&self, always: bool) {
        let mut hls = lock(&self.hls);
        if hls
            .as_ref()
            .is_some_and(|h| always || h.last_access.elapsed() > HLS_IDLE)
        {
            hls.take();
        }
    }

    /// Does anybody watch this camera live (so its live decoder runs)?
    pub(crate) fn is_watched(&self) -> bool {
        self.viewers.load(Ordering::Acquire) > 0
    }

    /// Starts watching live: `None` when `max` viewers already watch.
    pub(crate) fn watch(
        self: &Arc<Self>,
        max: usize,
        size_for: impl Fn(u32, u32) -> Option<(u32, u32)>,
        quality: u32,
        fps: u32,
    ) -> Result<LiveView, LiveError> {
        let n = self.viewers.fetch_add(1, Ordering::AcqRel);
        // Counted with the guard, so every way out (a refusal too) counts down again.
        metrics::gauge!("ioc_video_live_viewers").increment(1.0);
        let guard = ViewerGuard(self.clone());
        if n >= max {
            return Err(LiveError::TooManyViewers(max));
        }
        let rx = self.live_tx.subscribe();
        let mut live = lock(&self.live);
        if live.is_none() {
            let f = lock(&self.frames);
            let Some(k) = f.keyframe.as_ref() else {
                return Err(LiveError::NoStream);
            };
            let (codec, caps) = (k.codec, k.caps.clone());
            let size = f.size.and_then(|(w, h)| size_for(w, h));
            drop(f);
            let tx = self.live_tx.clone();
            let decoder = LiveDecoder::start(codec, &caps, size, quality, fps, move |j| {
                let _ = tx.send(Bytes::from(j));
            })
            .map_err(LiveError::Decoder)?;
            *live = Some(Live {
                decoder,
                started: false,
            });
        }
        Ok(LiveView { rx, _guard: guard })
    }
}

/// Why live view could not start.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("this camera already has {0} live viewers")]
    TooManyViewers(usize),
    #[error("this video worker already decodes {0} cameras for live view")]
    LiveCapacity(usize),
    #[error("no stream yet")]
    NoStream,
    #[error("live decoder: {0}")]
    Decoder(String),
}

/// One viewer's live view: JPEG frames while it is held.
pub struct LiveView {
    pub rx: broadcast::Receiver<Bytes>,
    _guard: ViewerGuard,
}

struct ViewerGuard(Arc<CameraShared>);

impl Drop for ViewerGuard {
    fn drop(&mut self) {
        metrics::gauge!("ioc_video_live_viewers").decrement(1.0);
        if self.0.viewers.fetch_sub(1, Ordering::AcqRel) == 1 {
            // The last viewer left: stop decoding.
            lock(&self.0.live).take();
        }
    }
}

/// Runs one camera until `stop` turns true.
pub(crate) async fn run(
    camera: Camera,
    credential: Option<Credential>,
    config: Arc<VideoConfig>,
    shared: Arc<CameraShared>,
    publisher: Publisher,
    pacer: Arc<Pacer>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = config.backoff_min_s.max(0.1);
    let mut machine = Machine::new(camera.clone(), shared.clone(), publisher, config.clone());
    if let (Some(name), None) = (&camera.stream.credentials, &credential) {
        machine
            .enter(
                CameraState::Offline,
                Some(format!("credential set `{name}` is not configured")),
            )
            .await;
        machine.idle(None, &mut stop).await;
        return;
    }
    machine.publish(true).await;
    loop {
        tokio::select! {
            _ = pacer.turn() => {}
            _ = stopped(&mut stop) => return,
        }
        let outcome = match build(&camera, credential.as_ref(), &config, shared.clone()) {
            Ok(pipeline) => {
                let o = machine.watch(&pipeline, &mut stop).await;
                let p = pipeline.clone();
                // Tearing down may wait on the network: not on a runtime thread.
                let _ = tokio::task::spawn_blocking(move || p.set_state(gst::State::Null)).await;
                o
            }
            Err(e) => Outcome::Failed(e),
        };
        lock(&shared.live).take();
        shared.hls_reap(true);
        match outcome {
            Outcome::Stop => return,
            Outcome::Failed(reason) => {
                if machine.was_online {
                    backoff = config.backoff_min_s.max(0.1);
                }
                machine.enter(CameraState::Offline, Some(reason)).await;
            }
        }
        machine.was_online = false;
        let wait = Duration::from_secs_f64(backoff);
        backoff = (backoff * 2.0).min(config.backoff_max_s.max(backoff));
        if machine.idle(Some(wait), &mut stop).await {
            return;
        }
        machine.reconnects += 1;
    }
}

/// Resolves once the worker is told to stop (or its fleet is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

enum Outcome {
    Stop,
    Failed(String),
}

/// The camera's state and what it publishes.
struct Machine {
    camera: Camera,
    shared: Arc<CameraShared>,
    publisher: Publisher,
    config: Arc<VideoConfig>,
    state: CameraState,
    since: DateTime<Utc>,
    reconnects: u32,
    was_online: bool,
    last_stats: Instant,
}

impl Machine {
    fn new(
        camera: Camera,
        shared: Arc<CameraShared>,
        publisher: Publisher,
        config: Arc<VideoConfig>,
    ) -> Self {
        Self {
            camera,
            shared,
            publisher,
            config,
            state: CameraState::Connecting,
            since: Utc::now(),
            reconnects: 0,
            was_online: false,
            last_stats: Instant::now(),
        }
    }

    async fn enter(&mut self, state: CameraState, reason: Option<String>) {
        if state == self.state {
            return;
        }
        match &reason {
            Some(r) => {
                info!(camera = %self.camera.id, from = %self.state, to = %state, reason = %r, "camera state")
            }
            None => {
                info!(camera = %self.camera.id, from = %self.state, to = %state, "camera state")
            }
        }
        metrics::counter!("ioc_camera_transitions_total", "to" => state.as_str()).increment(1);
        self.state = state;
        self.since = Utc::now();
        if state == CameraState::Online {
            self.was_online = true;
        }
        self.shared
            .status
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .reason = reason;
        self.publish(true).await;
    }

    /// Waits `wait` (forever with `None`) or until told to stop (`true`), still publishing the
    /// status every stats period: the core takes a camera nobody reports for a camera nobody
    /// watches, and an offline camera is still watched.
    async fn idle(&mut self, wait: Option<Duration>, stop: &mut watch::Receiver<bool>) -> bool {
        let every = Duration::from_secs_f64(self.config.stats_every_s.max(1.0));
        let end = wait.map(|w| Instant::now() + w);
        loop {
            let left = end.map(|e| e.saturating_duration_since(Instant::now()));
            if left == Some(Duration::ZERO) {
                return false;
            }
            let due = every.saturating_sub(self.last_stats.elapsed());
            tokio::select! {
                _ = tokio::time::sleep(left.map_or(due, |l| l.min(due))) => {}
                _ = stopped(stop) => return true,
            }
            if self.last_stats.elapsed() >= every {
                self.publish(false).await;
            }
        }
    }

    /// Publishes the current status (`changed`: a transition, else a stats period).
    async fn publish(&mut self, changed: bool) {
        let elapsed = self.last_stats.elapsed().as_secs_f64().max(0.001);
        let stats_due = !changed;
        let status = {
            let mut f = lock(&self.shared.frames);
            let mut st = self
                .shared
                .status
                .write()
                .unwrap_or_else(|e| e.into_inner());
            st.state = self.state;
            st.since = self.since.fixed_offset();
            st.changed = changed;
            st.reconnects = self.reconnects;
            st.last_frame = f.last_frame.map(|(_, t)| t.fixed_offset());
            st.last_snapshot = self
                .shared
                .snapshot
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .map(|s| s.captured.fixed_offset());
            if self.state != CameraState::Online && changed {
                // keep the reason set by `enter`
            } else if self.state == CameraState::Online {
                st.reason = None;
            }
            if stats_due {
                st.stats = StreamStats {
                    fps: (f.window_frames as f64 / elapsed * 10.0).round() / 10.0,
                    bitrate_kbps: (f.window_bytes as f64 * 8.0 / 1000.0 / elapsed).round(),
                    width: f.size.map(|s| s.0),
                    height: f.size.map(|s| s.1),
                    codec: f.codec.map(|c| c.as_str().to_string()),
                    keyframe_interval_s: match f.keys {
                        [Some(a), Some(b)] => Some(((b - a).as_secs_f64() * 100.0).round() / 100.0),
                        _ => None,
                    },
                    frames: f.frames,
                };
                f.window_frames = 0;
                f.window_bytes = 0;
                self.last_stats = Instant::now();
            } else {
                st.stats.frames = f.frames;
                st.stats.width = f.size.map(|s| s.0).or(st.stats.width);
                st.stats.height = f.size.map(|s| s.1).or(st.stats.height);
                st.stats.codec = f
                    .codec
                    .map(|c| c.as_str().to_string())
                    .or(st.stats.codec.clone());
            }
            st.clone()
        };
        self.publisher.publish(&status).await;
    }

    /// Watches a running pipeline until it fails or the worker is stopped.
    async fn watch(
        &mut self,
        pipeline: &gst::Pipeline,
        stop: &mut watch::Receiver<bool>,
    ) -> Outcome {
        let Some(bus) = pipeline.bus() else {
            return Outcome::Failed("pipeline without a bus".into());
        };
        let mut messages = bus.stream();
        if let Err(e) = pipeline.set_state(gst::State::Playing) {
            return Outcome::Failed(format!("could not start: {e}"));
        }
        let started = Instant::now();
        let stall = Duration::from_secs_f64(self.config.stall_after_s.max(0.2));
        let give_up = Duration::from_secs_f64(self.config.offline_after_s.max(0.5));
        let stats_every = Duration::from_secs_f64(self.config.stats_every_s.max(1.0));
        let snap_every = Duration::from_secs_f64(self.config.snapshot_every_s.max(0.5));
        let mut last_snapshot: Option<Instant> = None;
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        self.last_stats = Instant::now();
        loop {
            tokio::select! {
                _ = stopped(stop) => return Outcome::Stop,
                m = messages.next() => {
                    let Some(m) = m else { return Outcome::Failed("pipeline bus closed".into()) };
                    match m.view() {
                        gst::MessageView::Error(e) => {
                            let text = e.error().to_string();
                            debug!(camera = %self.camera.id, error = %text, debug = ?e.debug(), "camera pipeline error");
                            return Outcome::Failed(text);
                        }
                        gst::MessageView::Eos(_) => return Outcome::Failed("the stream ended".into()),
                        _ => {}
                    }
                }
                _ = tick.tick() => {
                    let (last, has_key) = {
                        let f = lock(&self.shared.frames);
                        (f.last_frame.map(|(i, _)| i), f.keyframe.as_ref().map(|k| k.at))
                    };
                    let age = last.map(|l| l.elapsed());
                    let fresh = last.is_some_and(|l| l >= started) ;
                    match self.state {
                        CameraState::Online => {
                            if age.is_none_or(|a| a > stall) {
                                self.enter(CameraState::Stalled, Some(format!("no frame for {:.0} s", stall.as_secs_f64()))).await;
                            }
                        }
                        CameraState::Stalled => {
                            if fresh && age.is_some_and(|a| a <= stall) {
                                self.enter(CameraState::Online, None).await;
                            } else if age.is_none_or(|a| a > give_up) {
                                return Outcome::Failed(format!("no frame for {:.0} s", give_up.as_secs_f64()));
                            }
                        }
                        CameraState::Connecting | CameraState::Offline => {
                            if fresh {
                                self.enter(CameraState::Online, None).await;
                            } else if started.elapsed() > give_up {
                                return Outcome::Failed(format!("no frame {:.0} s after connecting", give_up.as_secs_f64()));
                            }
                        }
                    }
                    if self.state == CameraState::Online
                        && has_key.is_some()
                        && last_snapshot.is_none_or(|t| t.elapsed() >= snap_every)
                    {
                        last_snapshot = Some(Instant::now());
                        self.take_snapshot().await;
                    }
                    self.shared.hls_reap(false);
                    if self.last_stats.elapsed() >= stats_every {
                        self.publish(false).await;
                    }
                }
            }
        }
    }

    /// Decodes the latest keyframe to the camera's snapshot.
    async fn take_snapshot(&self) {
        let key = {
            let f = lock(&self.shared.frames);
            f.keyframe.as_ref().map(|k| {
                (
                    k.buffer.clone(),
                    k.caps.clone(),
                    k.codec,
                    k.at,
                    f.size
                        .and_then(|(w, h)| jpeg::scaled(self.config.snapshot_width, w, h)),
                )
            })
        };
        let Some((buffer, caps, codec, at, size)) = key else {
            return;
        };
        let quality = self.config.jpeg_quality.clamp(10, 100);
        let started = Instant::now();
        let r = tokio::task::spawn_blocking(move || {
            jpeg::keyframe_to_jpeg(codec, &caps, &buffer, size, quality)
        })
        .await;
        metrics::histogram!("ioc_camera_snapshot_seconds").record(started.elapsed().as_secs_f64());
        match r {
            Ok(Ok(j)) => {
                *self
                    .shared
                    .snapshot
                    .write()
                    .unwrap_or_else(|e| e.into_inner()) = Some(Snapshot {
                    jpeg: Bytes::from(j),
                    captured: at,
                });
            }
            Ok(Err(e)) => warn!(camera = %self.camera.id, error = %e, "snapshot failed"),
            Err(e) => warn!(camera = %self.camera.id, error = %e, "snapshot task failed"),
        }
    }
}

/// The camera pipeline: `rtspsrc` and, once it announces a video stream, depayloader, parser
/// and an appsink that sees every access unit. Credentials go into `rtspsrc` properties,
/// never into a URL or a launch line.
fn build(
    camera: &Camera,
    credential: Option<&Credential>,
    config: &VideoConfig,
    shared: Arc<CameraShared>,
) -> Result<gst::Pipeline, String> {
    let pipeline = gst::Pipeline::with_name(&format!("camera-{}", camera.id));
    let src = gst::ElementFactory::make("rtspsrc")
        .property("location", camera.stream.url.as_str())
        .property("latency", config.latency_ms)
        .property("tcp-timeout", 5_000_000u64)
        .property("timeout", 5_000_000u64)
        .build()
        .map_err(|e| format!("rtspsrc: {e}"))?;
    src.set_property_from_str(
        "protocols",
        match camera.stream.transport {
            RtspTransport::Tcp => "tcp",
            RtspTransport::Udp => "udp",
            RtspTransport::TcpThenUdp => "tcp+udp",
        },
    );
    if let Some(c) = credential {
        src.set_property("user-id", c.user.as_str());
        src.set_property("user-pw", c.password.as_str());
    }
    let sink = gst_app::AppSink::builder()
        .sync(false)
        .max_buffers(30)
        .drop(true)
        .build();
    pipeline
        .add_many([&src, sink.upcast_ref()])
        .map_err(|e| e.to_string())?;
    let frames_shared = shared.clone();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |s| {
                let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                if let Some(b) = sample.buffer_owned() {
                    frames_shared.on_frame(b, sample.caps().map(|c| c.to_owned()));
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    let weak = pipeline.downgrade();
    let sink_el: gst::Element = sink.upcast();
    let id = camera.id.to_string();
    src.connect_pad_added(move |_, pad| {
        let Some(pipeline) = weak.upgrade() else {
            return;
        };
        let Some(s) = pad
            .current_caps()
            .and_then(|c| c.structure(0).map(|s| s.to_owned()))
        else {
            return;
        };
        if s.get::<&str>("media").ok() != Some("video")
            || sink_el.static_pad("sink").is_some_and(|p| p.is_linked())
        {
            return;
        }
        let name = s.get::<&str>("encoding-name").unwrap_or("?").to_string();
        let Some(codec) = Codec::from_encoding_name(&name) else {
            let msg = format!("unsupported video codec {name}");
            gst::element_error!(pipeline, gst::StreamError::CodecNotFound, ("{}", msg));
            return;
        };
        lock(&shared.frames).codec = Some(codec);
        let link = || -> Result<(), String> {
            let depay = gst::ElementFactory::make(codec.depay())
                .build()
                .map_err(|e| e.to_string())?;
            let parse = gst::ElementFactory::make(codec.parse())
                .property("config-interval", -1i32)
                .build()
                .map_err(|e| e.to_string())?;
            let filter = gst::ElementFactory::make("capsfilter")
                .property("caps", codec.au_caps())
                .build()
                .map_err(|e| e.to_string())?;
            pipeline
                .add_many([&depay, &parse, &filter])
                .map_err(|e| e.to_string())?;
            gst::Element::link_many([&depay, &parse, &filter, &sink_el])
                .map_err(|e| e.to_string())?;
            for e in [&depay, &parse, &filter] {
                e.sync_state_with_parent().map_err(|e| e.to_string())?;
            }
            let sinkpad = depay
                .static_pad("sink")
                .ok_or("depayloader without a sink pad")?;
            pad.link(&sinkpad).map_err(|e| format!("{e:?}"))?;
            Ok(())
        };
        if let Err(e) = link() {
            warn!(camera = %id, error = %e, "could not link the camera stream");
            gst::element_error!(pipeline, gst::CoreError::Negotiation, ("{}", e));
        }
    });
    Ok(pipeline)
}

/// The `camera.status` envelope for `status`.
pub(crate) fn status_event(status: &CameraStatus, source: &str) -> Envelope {
    Envelope::new(
        EventKind::CameraStatus,
        EntityId::new(model::EntityKind::Camera, &status.camera),
        Utc::now().fixed_offset(),
        Utc::now(),
        source,
        serde_json::to_value(status).expect("statuses serialise"),
    )
}
