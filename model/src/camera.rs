//! Cameras: the registry entity (where a camera is, who owns it, which access group it is in,
//! where its stream is) and the `camera.status` event a video worker publishes on every state
//! change and periodically with stream statistics.
//!
//! Stream credentials are never part of either: the registry names a credential set, and only
//! the video worker's configuration holds its user and password.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

use crate::error::{Checker, Invalid};
use crate::id::LocalId;
use crate::place::GeoPoint;

/// What a camera watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CameraPurpose {
    PublicOrder,
    Traffic,
    School,
    PublicPlace,
}

impl CameraPurpose {
    pub fn name_vi(self) -> &'static str {
        match self {
            CameraPurpose::PublicOrder => "An ninh trật tự",
            CameraPurpose::Traffic => "Giao thông",
            CameraPurpose::School => "Trường học",
            CameraPurpose::PublicPlace => "Nơi công cộng",
        }
    }
}

/// The access-control group of a camera: who may see it is decided per group (see the
/// `auth` crate). School cameras film minors, so each school is its own group.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CameraGroup {
    /// Police public-order cameras.
    Police,
    Traffic,
    PublicPlace,
    /// One school's cameras.
    School(LocalId),
}

impl fmt::Display for CameraGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CameraGroup::Police => f.write_str("police"),
            CameraGroup::Traffic => f.write_str("traffic"),
            CameraGroup::PublicPlace => f.write_str("public_place"),
            CameraGroup::School(s) => write!(f, "school:{s}"),
        }
    }
}

impl FromStr for CameraGroup {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "police" => Ok(CameraGroup::Police),
            "traffic" => Ok(CameraGroup::Traffic),
            "public_place" => Ok(CameraGroup::PublicPlace),
            _ => match s.strip_prefix("school:") {
                Some(site) => LocalId::parse("group", site)
                    .map(CameraGroup::School)
                    .map_err(|e| e.reason),
                None => Err(format!(
                    "unknown camera group `{s}` (police, traffic, public_place, school:<school id>)"
                )),
            },
        }
    }
}

impl Serialize for CameraGroup {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for CameraGroup {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Which cameras a caller may see on the map, by group. The default sees none: whoever builds
/// a query for a client must say what the client may see.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CameraScope {
    pub police: bool,
    pub traffic: bool,
    pub public_place: bool,
    pub schools: SchoolScope,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SchoolScope {
    #[default]
    None,
    One(LocalId),
    All,
}

impl CameraScope {
    /// Every camera (for the system's own use, never for a client).
    pub fn everything() -> Self {
        Self {
            police: true,
            traffic: true,
            public_place: true,
            schools: SchoolScope::All,
        }
    }

    pub fn allows(&self, group: &CameraGroup) -> bool {
        match group {
            CameraGroup::Police => self.police,
            CameraGroup::Traffic => self.traffic,
            CameraGroup::PublicPlace => self.public_place,
            CameraGroup::School(s) => match &self.schools {
                SchoolScope::None => false,
                SchoolScope::One(mine) => mine == s,
                SchoolScope::All => true,
            },
        }
    }
}

/// How to pull the stream: TCP interleaved first (works through NAT and firewalls), UDP
/// allowed where the network carries it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RtspTransport {
    #[default]
    Tcp,
    Udp,
    /// TCP, falling back to UDP.
    TcpThenUdp,
}

/// Where a camera's stream is. The URL carries no user or password: `credentials` names a
/// set in the video worker's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamSource {
    pub url: String,
    #[serde(default)]
    pub transport: RtspTransport,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<String>,
}

/// Does the part of a stream URL after the scheme carry credentials anywhere: `?user=…&
/// password=…` (many NVRs), `/user=…_password=…` (Dahua-style paths), `;pwd=…`,
/// `?authbasic=<base64>`, tokens and keys? Any `name=` whose name is one of these counts,
/// whatever separates it from the rest.
pub fn credentials_in_url(rest: &str) -> bool {
    const NAMES: [&str; 16] = [
        "user",
        "username",
        "usr",
        "login",
        "loginuse",
        "password",
        "passwd",
        "pass",
        "pwd",
        "psw",
        "loginpas",
        "authbasic",
        "auth",
        "token",
        "secret",
        "key",
    ];
    let lower = rest.to_ascii_lowercase();
    let bytes = lower.as_bytes();
    bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'=')
        .any(|(eq, _)| {
            let start = bytes[..eq]
                .iter()
                .rposition(|b| !b.is_ascii_alphanumeric())
                .map_or(0, |p| p + 1);
            let name = &lower[start..eq];
            NAMES.contains(&name)
                || [
                    "pass",
                    "pwd",
                    "token",
                    "secret",
                    "apikey",
                    "api_key",
                    "credential",
                ]
                .iter()
                .any(|n| name.contains(n))
        })
}

/// A camera in the registry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Camera {
    pub id: LocalId,
    pub name: String,
    pub position: GeoPoint,
    /// Owning agency (police, transport department, a school).
    pub agency: Option<LocalId>,
    pub purpose: CameraPurpose,
    pub group: CameraGroup,
    pub stream: StreamSource,
}

impl Camera {
    /// Checks a camera coming from a registry source.
    pub fn validate(&self) -> Result<(), Invalid> {
        let mut c = Checker::default();
        c.check(GeoPoint::new(self.position.lon, self.position.lat));
        if self.name.trim().is_empty() {
            c.fail("name", "must not be empty");
        }
        match self.stream.url.split_once("://") {
            Some(("rtsp" | "rtsps", rest)) => {
                let authority = rest.split(['/', '?', '#', ';']).next().unwrap_or("");
                if authority.contains('@') || credentials_in_url(rest) {
                    c.fail(
                        "stream.url",
                        "must not carry a user or password (nor a key or token) anywhere in it; name a credential set in `stream.credentials`",
                    );
                } else if authority.is_empty() {
                    c.fail("stream.url", "has no host");
                }
            }
            _ => c.fail("stream.url", "must be an rtsp:// or rtsps:// URL"),
        }
        match (&self.group, self.purpose) {
            (CameraGroup::School(_), CameraPurpose::School) => {}
            (CameraGroup::School(_), _) | (_, CameraPurpose::School) => c.fail(
                "group",
                "school cameras, and only they, belong to a school:<school id> group",
            ),
            _ => {}
        }
        c.finish(|| ())
    }
}

/// Where a camera's stream stands, as its worker sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CameraState {
    /// Opening the RTSP session, or waiting for the first frame.
    Connecting,
    /// Frames arriving.
    Online,
    /// The session is up but no frame came for the stall timeout.
    Stalled,
    /// No session: the worker is reconnecting with backoff.
    Offline,
}

impl CameraState {
    pub fn as_str(self) -> &'static str {
        match self {
            CameraState::Connecting => "connecting",
            CameraState::Online => "online",
            CameraState::Stalled => "stalled",
            CameraState::Offline => "offline",
        }
    }

    pub fn name_vi(self) -> &'static str {
        match self {
            CameraState::Connecting => "Đang kết nối",
            CameraState::Online => "Trực tuyến",
            CameraState::Stalled => "Mất hình",
            CameraState::Offline => "Mất kết nối",
        }
    }
}

impl fmt::Display for CameraState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Stream statistics over the last stats period.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamStats {
    pub fps: f64,
    pub bitrate_kbps: f64,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub codec: Option<String>,
    /// Seconds between the last two keyframes.
    pub keyframe_interval_s: Option<f64>,
    /// Frames received since the worker started.
    pub frames: u64,
}

/// `camera.status`: published on every state change (`changed: true`) and every stats period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CameraStatus {
    pub camera: LocalId,
    pub state: CameraState,
    /// When the camera entered this state.
    pub since: DateTime<FixedOffset>,
    /// Is this event a state change (not only fresh statistics)?
    pub changed: bool,
    /// Why the camera left `online` (stall timeout, the server's error), without credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Capture time of the last frame received.
    pub last_frame: Option<DateTime<FixedOffset>>,
    /// Capture time of the latest snapshot the worker holds.
    pub last_snapshot: Option<DateTime<FixedOffset>>,
    pub reconnects: u32,
    pub stats: StreamStats,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn camera(url: &str, purpose: CameraPurpose, group: &str) -> Camera {
        Camera {
            id: LocalId::parse("id", "hg-cam-1").unwrap(),
            name: "Ngã tư Trần Hưng Đạo".into(),
            position: GeoPoint::new(105.47, 9.78).unwrap(),
            agency: None,
            purpose,
            group: group.parse().unwrap(),
            stream: StreamSource {
                url: url.into(),
                transport: RtspTransport::Tcp,
                credentials: Some("police".into()),
            },
        }
    }

    #[test]
    fn groups_read_and_write_as_strings() {
        for g in ["police", "traffic", "public_place", "school:lx-th-my-binh"] {
            let parsed: CameraGroup = g.parse().unwrap();
            assert_eq!(parsed.to_string(), g);
            assert_eq!(serde_json::to_value(&parsed).unwrap(), g);
        }
        assert!("school:".parse::<CameraGroup>().is_err());
        assert!("army".parse::<CameraGroup>().unwrap_err().contains("army"));
    }

    #[test]
    fn a_registry_url_may_not_carry_credentials() {
        let ok = camera("rtsp://10.0.0.5:554/ch1", CameraPurpose::Traffic, "traffic");
        assert!(ok.validate().is_ok());
        let e = camera(
            "rtsp://admin:12345@10.0.0.5/ch1",
            CameraPurpose::Traffic,
            "traffic",
        )
        .validate()
        .unwrap_err();
        assert_eq!(e.errors[0].field, "stream.url");
        assert!(!e.to_string().contains("12345"));
        for url in [
            "rtsp://10.0.0.5/ch1?user=admin&password=12345",
            "rtsp://10.0.0.5:554/user=admin_password=12345_channel=1_stream=0.sdp",
            "rtsp://10.0.0.5/live?authbasic=YWRtaW46MTIzNDU=",
            "rtsp://10.0.0.5/live;pwd=12345",
            "rtsp://10.0.0.5/cam?loginuse=admin&loginpas=12345",
            "rtsp://10.0.0.5/cam?Token=abc",
            "rtsp://10.0.0.5/cam#password=12345",
        ] {
            let e = camera(url, CameraPurpose::Traffic, "traffic")
                .validate()
                .unwrap_err();
            assert_eq!(e.errors[0].field, "stream.url", "{url}");
            assert!(!e.to_string().contains("12345"), "{url}");
        }
        for url in [
            "rtsp://10.0.0.5:554/cam/realmonitor?channel=1&subtype=0",
            "rtsp://10.0.0.5/Streaming/Channels/101",
            "rtsp://10.0.0.5/h264?profile=main",
        ] {
            assert!(
                camera(url, CameraPurpose::Traffic, "traffic")
                    .validate()
                    .is_ok(),
                "{url}"
            );
        }
        let e = camera("http://x/ch1", CameraPurpose::Traffic, "traffic")
            .validate()
            .unwrap_err();
        assert_eq!(e.errors[0].field, "stream.url");
        let e = camera("rtsp://x/1", CameraPurpose::Traffic, "school:lx-a")
            .validate()
            .unwrap_err();
        assert_eq!(e.errors[0].field, "group");
        assert!(camera("rtsp://x/1", CameraPurpose::School, "school:lx-a")
            .validate()
            .is_ok());
    }
}
