//! `[video]`: how camera workers judge liveness, how often they snapshot, which cameras this
//! worker takes, and the stream credentials (the only place they live).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A user and password for RTSP cameras. Never printed: `Debug` and the config dump redact
/// the password.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Credential {
    pub user: String,
    pub password: String,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VideoConfig {
    /// Run camera workers in this process.
    pub enabled: bool,
    /// A camera with no frame for this long is `stalled`.
    pub stall_after_s: f64,
    /// A stall this long (or no first frame this long after connecting) drops the session:
    /// the camera is `offline` and the worker reconnects.
    pub offline_after_s: f64,
    /// Reconnect backoff: from `backoff_min_s`, doubling, up to `backoff_max_s`.
    pub backoff_min_s: f64,
    pub backoff_max_s: f64,
    /// RTSP connects a second across this worker's cameras (start-up and reconnect waves are
    /// spread; a lone camera connects at once). 0 = unpaced.
    pub connects_per_s: f64,
    /// Seconds between `camera.status` events carrying fresh statistics.
    pub stats_every_s: f64,
    /// Seconds between snapshots (each decodes one keyframe).
    pub snapshot_every_s: f64,
    /// Snapshot width in pixels (height keeps the aspect ratio); none = the stream's own size.
    pub snapshot_width: Option<u32>,
    pub jpeg_quality: u32,
    /// RTSP jitter-buffer latency, ms.
    pub latency_ms: u32,
    /// Live view: viewers at once per camera, and MJPEG frames per second.
    pub max_viewers: usize,
    pub mjpeg_fps: u32,
    /// Live view: cameras this worker decodes for MJPEG at once. Each decodes every frame
    /// while watched (a few % of a core at 640×360, many times that at 1080p), so past this
    /// a new camera's live view is refused rather than starving every camera's liveness.
    pub max_live_cameras: usize,
    /// This worker takes the cameras whose id hashes to `shard` modulo `shards`.
    pub shard: u32,
    pub shards: u32,
    /// Credential sets by the name cameras give in `stream.credentials`.
    pub credentials: BTreeMap<String, Credential>,
    /// For an API process without workers of its own (`ioc api`): the base URLs of the
    /// `ioc video` processes, worker `i` being the one started with `shard = i` and
    /// `shards = workers.len()`. Images are fetched from them with media tickets.
    pub workers: Vec<String>,
}

pub use crate::shard_of;

impl Default for VideoConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            stall_after_s: 3.0,
            offline_after_s: 10.0,
            backoff_min_s: 1.0,
            backoff_max_s: 30.0,
            connects_per_s: 50.0,
            stats_every_s: 10.0,
            snapshot_every_s: 10.0,
            snapshot_width: None,
            jpeg_quality: 80,
            latency_ms: 200,
            max_viewers: 4,
            max_live_cameras: 16,
            mjpeg_fps: 4,
            shard: 0,
            shards: 1,
            credentials: BTreeMap::new(),
            workers: Vec::new(),
        }
    }
}

impl VideoConfig {
    /// Is `camera` this worker's?
    pub fn owns(&self, camera: &str) -> bool {
        let shards = self.shards.max(1);
        shard_of(camera, shards) == self.shard % shards
    }

    /// The config with passwords replaced, for `ioc config`.
    pub fn redacted(&self) -> Self {
        let mut c = self.clone();
        for cred in c.credentials.values_mut() {
            cred.password = "<redacted>".into();
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_split_cameras_and_passwords_stay_hidden() {
        let ids: Vec<String> = (0..300).map(|i| format!("hg-cam-{i}")).collect();
        let shards: Vec<VideoConfig> = (0..3)
            .map(|shard| VideoConfig {
                shard,
                shards: 3,
                ..Default::default()
            })
            .collect();
        for id in &ids {
            assert_eq!(shards.iter().filter(|c| c.owns(id)).count(), 1);
        }
        assert!(shards
            .iter()
            .all(|c| ids.iter().filter(|i| c.owns(i)).count() > 60));
        let mut c = VideoConfig::default();
        c.credentials.insert(
            "police".into(),
            Credential {
                user: "admin".into(),
                password: "Hg@2026!".into(),
            },
        );
        assert!(!format!("{c:?}").contains("Hg@2026!"));
        assert!(!serde_json::to_string(&c.redacted())
            .unwrap()
            .contains("Hg@2026!"));
    }
}
