//! Camera workers against the real fixture RTSP server (GStreamer RTSP server on loopback):
//! liveness within the issue's bounds, stall and stop detection, recovery, snapshots of the
//! configured size taken after a resume, resolution changes, and credentials kept out of
//! everything a worker emits.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bus::{Bus, MemoryBus};
use chrono::Utc;
use fixtures::rtsp::{FixtureCodec, RtspFixture, RtspFixtureConfig};
use model::camera::{RtspTransport, StreamSource};
use model::{Camera, CameraGroup, CameraPurpose, CameraState, CameraStatus, GeoPoint, LocalId};
use model::{Envelope, RegistryEntry};
use video::jpeg::jpeg_dimensions;
use video::{Credential, Fleet, VideoConfig};

const PASSWORD: &str = "Mk!7-hg-cam-pass";

fn camera(id: &str, base: &str, credentials: &str) -> Camera {
    Camera {
        id: LocalId::parse("id", id).unwrap(),
        name: id.into(),
        position: GeoPoint::new(105.47, 9.78).unwrap(),
        agency: None,
        purpose: CameraPurpose::Traffic,
        group: CameraGroup::Traffic,
        stream: StreamSource {
            url: format!("{base}/{id}"),
            transport: RtspTransport::Tcp,
            credentials: Some(credentials.into()),
        },
    }
}

struct Rig {
    server: RtspFixture,
    bus: Arc<dyn Bus>,
    fleet: Arc<Fleet>,
}

async fn rig(cameras: &[&str]) -> Rig {
    rig_with(cameras, FixtureCodec::H264).await
}

async fn rig_with(cameras: &[&str], codec: FixtureCodec) -> Rig {
    rig_tuned(cameras, codec, |_| {}).await
}

async fn rig_tuned(
    cameras: &[&str],
    codec: FixtureCodec,
    tune: impl FnOnce(&mut VideoConfig),
) -> Rig {
    let server = RtspFixture::start(RtspFixtureConfig {
        credentials: Some(("viewer".into(), PASSWORD.into())),
        codec,
        ..Default::default()
    })
    .expect("fixture RTSP server (GStreamer with plugins good/ugly and the RTSP server library)");
    let bus: Arc<dyn Bus> = Arc::new(MemoryBus::with_retention(100_000));
    let mut config = VideoConfig {
        stall_after_s: 1.5,
        offline_after_s: 4.0,
        backoff_min_s: 0.5,
        backoff_max_s: 1.0,
        stats_every_s: 1.0,
        snapshot_every_s: 0.5,
        snapshot_width: Some(320),
        ..Default::default()
    };
    tune(&mut config);
    config.credentials.insert(
        "fixture".into(),
        Credential {
            user: "viewer".into(),
            password: PASSWORD.into(),
        },
    );
    config.credentials.insert(
        "wrong".into(),
        Credential {
            user: "viewer".into(),
            password: "not-the-password".into(),
        },
    );
    let now = Utc::now();
    for id in cameras {
        let (name, creds) = id.split_once('@').unwrap_or((id, "fixture"));
        server.mount(name).unwrap();
        let env = RegistryEntry::Camera(camera(name, &server.base_url(), creds))
            .upsert_event("test", now);
        bus.publish("registry", env.entity.as_str(), Some(env.to_bytes()))
            .await
            .unwrap();
    }
    let fleet = Fleet::new(config, bus.clone(), "cameras".into(), "video:test").unwrap();
    tokio::spawn(fleet.clone().follow(bus.clone(), "registry".into()));
    Rig { server, bus, fleet }
}

fn id(s: &str) -> LocalId {
    LocalId::parse("id", s).unwrap()
}

/// Waits until `camera` is in `state`; the time it took.
async fn wait_state(fleet: &Fleet, camera: &str, state: CameraState, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let s = fleet.status(&id(camera));
        if s.as_ref().is_some_and(|s| s.state == state) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "{camera} not {state} within {within:?}: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn statuses(bus: &dyn Bus) -> Vec<CameraStatus> {
    let mut sub = bus.read_all(&["cameras"]).await.unwrap();
    let mut out = Vec::new();
    while let Some(m) = sub.next_until_caught_up().await.unwrap() {
        let env = Envelope::from_bytes(m.payload.as_deref().unwrap()).unwrap();
        out.push(env.data_as::<CameraStatus>().unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_camera_goes_online_stalls_stops_and_comes_back_with_fresh_snapshots() {
    let r = rig(&["cam-a", "cam-b"]).await;
    let took = wait_state(
        &r.fleet,
        "cam-a",
        CameraState::Online,
        Duration::from_secs(3),
    )
    .await;
    eprintln!("online after {took:?}");
    wait_state(
        &r.fleet,
        "cam-b",
        CameraState::Online,
        Duration::from_secs(3),
    )
    .await;

    // A snapshot of the configured size (320 wide, the 640x360 stream's aspect kept).
    let deadline = Instant::now() + Duration::from_secs(3);
    let snap = loop {
        if let Ok(s) = r.fleet.snapshot(&id("cam-a")) {
            break s;
        }
        assert!(Instant::now() < deadline, "no snapshot");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(jpeg_dimensions(&snap.jpeg), Some((320, 180)));

    // A stall is reported within 5 s; the other camera is not disturbed.
    let mount = r.server.get("cam-a").unwrap();
    mount.stall();
    let took = wait_state(
        &r.fleet,
        "cam-a",
        CameraState::Stalled,
        Duration::from_secs(5),
    )
    .await;
    eprintln!("stalled after {took:?}");
    let no = r.fleet.snapshot(&id("cam-a")).unwrap_err();
    assert_eq!(no.state, Some(CameraState::Stalled));
    assert!(no.last_frame_age_s.unwrap() >= 1.0, "{no:?}");
    assert_eq!(
        r.fleet.status(&id("cam-b")).unwrap().state,
        CameraState::Online
    );
    mount.resume();
    wait_state(
        &r.fleet,
        "cam-a",
        CameraState::Online,
        Duration::from_secs(3),
    )
    .await;

    // Stopped: offline, 503-worthy; resumed: online again, with a snapshot taken after.
    mount.stop();
    let took = wait_state(
        &r.fleet,
        "cam-a",
        CameraState::Offline,
        Duration::from_secs(6),
    )
    .await;
    eprintln!("offline after {took:?}");
    assert_eq!(
        r.fleet.snapshot(&id("cam-a")).unwrap_err().state,
        Some(CameraState::Offline)
    );
    assert_eq!(
        r.fleet.status(&id("cam-b")).unwrap().state,
        CameraState::Online
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let resumed = Utc::now();
    mount.resume();
    wait_state(
        &r.fleet,
        "cam-a",
        CameraState::Online,
        Duration::from_secs(6),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(3);
    let snap = loop {
        match r.fleet.snapshot(&id("cam-a")) {
            Ok(s) if s.captured > resumed => break s,
            _ => {}
        }
        assert!(Instant::now() < deadline, "no snapshot after the resume");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(jpeg_dimensions(&snap.jpeg), Some((320, 180)));
    assert!(r.fleet.status(&id("cam-a")).unwrap().reconnects >= 1);

    // Every transition went out as an event, in order.
    let events = statuses(&*r.bus).await;
    let path: Vec<CameraState> = events
        .iter()
        .filter(|s| s.camera.as_str() == "cam-a" && s.changed)
        .map(|s| s.state)
        .collect();
    use CameraState::*;
    assert_eq!(
        path,
        [Connecting, Online, Stalled, Online, Offline, Online],
        "{path:?}"
    );
    // Stats periods carry the stream's facts.
    let stats = events
        .iter()
        .rfind(|s| s.camera.as_str() == "cam-b" && !s.changed)
        .expect("a stats event")
        .stats
        .clone();
    assert_eq!((stats.width, stats.height), (Some(640), Some(360)));
    assert_eq!(stats.codec.as_deref(), Some("h264"));
    assert!(stats.fps > 10.0 && stats.fps < 20.0, "{stats:?}");
    assert!(stats.bitrate_kbps > 50.0, "{stats:?}");
    assert!(
        stats
            .keyframe_interval_s
            .is_some_and(|k| (0.7..1.3).contains(&k)),
        "{stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolution_change_shows_in_stats_and_snapshots_keep_their_size() {
    let r = rig(&["cam-r"]).await;
    wait_state(
        &r.fleet,
        "cam-r",
        CameraState::Online,
        Duration::from_secs(3),
    )
    .await;
    r.server
        .get("cam-r")
        .unwrap()
        .set_resolution(1280, 720)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let events = statuses(&*r.bus).await;
        if events
            .iter()
            .any(|s| s.stats.width == Some(1280) && s.stats.height == Some(720))
        {
            break;
        }
        assert!(Instant::now() < deadline, "resolution change not seen");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let changed = Utc::now();
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        if let Ok(s) = r.fleet.snapshot(&id("cam-r")) {
            if s.captured > changed {
                assert_eq!(jpeg_dimensions(&s.jpeg), Some((320, 180)));
                break;
            }
        }
        assert!(Instant::now() < deadline, "no snapshot after the change");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        r.fleet.status(&id("cam-r")).unwrap().state,
        CameraState::Online
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_or_missing_credentials_leave_the_camera_offline_with_a_reason_and_no_secret() {
    let r = rig(&["cam-w@wrong", "cam-m@missing", "cam-ok"]).await;
    wait_state(
        &r.fleet,
        "cam-ok",
        CameraState::Online,
        Duration::from_secs(3),
    )
    .await;
    wait_state(
        &r.fleet,
        "cam-w",
        CameraState::Offline,
        Duration::from_secs(6),
    )
    .await;
    wait_state(
        &r.fleet,
        "cam-m",
        CameraState::Offline,
        Duration::from_secs(3),
    )
    .await;
    let m = r.fleet.status(&id("cam-m")).unwrap();
    assert!(m.reason.unwrap().contains("`missing` is not configured"));
    let w = r.fleet.status(&id("cam-w")).unwrap();
    eprintln!("wrong password reason: {:?}", w.reason);
    assert!(w.reason.is_some());
    let all = serde_json::to_string(&statuses(&*r.bus).await).unwrap();
    assert!(!all.contains(PASSWORD) && !all.contains("not-the-password"));
    // Still reported every stats period (1 s here) while it waits: the core takes a camera
    // nobody reports for one whose worker is gone.
    let reports =
        |all: &[CameraStatus]| all.iter().filter(|s| s.camera.as_str() == "cam-m").count();
    let before = reports(&statuses(&*r.bus).await);
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let after = statuses(&*r.bus).await;
    assert!(
        reports(&after) >= before + 2,
        "an offline camera went unreported: {before} then {}",
        reports(&after)
    );
    assert!(after
        .iter()
        .filter(|s| s.camera.as_str() == "cam-m")
        .all(|s| s.state == CameraState::Offline));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hls_passes_the_cameras_own_stream_through_in_mpeg_ts_segments() {
    let r = rig(&["cam-h"]).await;
    wait_state(
        &r.fleet,
        "cam-h",
        CameraState::Online,
        Duration::from_secs(3),
    )
    .await;
    let ts = hls_segment(&r.fleet, "cam-h").await;
    // MPEG-TS: 188-byte packets, each starting with the 0x47 sync byte.
    assert!(ts.len() >= 188 * 10 && ts.len() % 188 == 0, "{}", ts.len());
    assert!(ts.chunks(188).all(|p| p[0] == 0x47));
    // Names outside the muxer's own are refused without touching the disk.
    assert_eq!(
        r.fleet
            .hls_file(&id("cam-h"), "../live.m3u8")
            .await
            .unwrap(),
        None
    );
}

/// Many cameras in the field send H.265: watched, measured, snapshotted (decoded from its
/// IRAP pictures) and passed through to HLS like H.264.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h265_camera_is_watched_snapshotted_and_passed_through_to_hls() {
    let r = rig_with(&["cam-hevc"], FixtureCodec::H265).await;
    wait_state(
        &r.fleet,
        "cam-hevc",
        CameraState::Online,
        Duration::from_secs(5),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(5);
    let snapshot = loop {
        if let Ok(s) = r.fleet.snapshot(&id("cam-hevc")) {
            break s;
        }
        assert!(Instant::now() < deadline, "no H.265 snapshot");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(jpeg_dimensions(&snapshot.jpeg), Some((320, 180)));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s = r.fleet.status(&id("cam-hevc")).unwrap().stats;
        if s.codec.is_some() && s.width.is_some() && s.keyframe_interval_s.is_some() {
            assert_eq!(s.codec.as_deref(), Some("h265"), "{s:?}");
            assert_eq!((s.width, s.height), (Some(640), Some(360)), "{s:?}");
            break;
        }
        assert!(Instant::now() < deadline, "no H.265 stats: {s:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut live = r.fleet.live(&id("cam-hevc")).expect("live view");
    let frame = tokio::time::timeout(Duration::from_secs(5), live.rx.recv())
        .await
        .expect("a live frame within 5 s")
        .unwrap();
    assert!(jpeg_dimensions(&frame).is_some(), "a JPEG live frame");
    let ts = hls_segment(&r.fleet, "cam-hevc").await;
    assert!(ts.len() % 188 == 0 && ts.chunks(188).all(|p| p[0] == 0x47));
    // The camera's own HEVC, not a re-encode: stream type 0x24 in the program map.
    assert_eq!(pmt_stream_types(&ts), vec![0x24]);
}

/// A worker decodes at most `max_live_cameras` cameras for live view: the next camera's view is
/// refused with the reason, more viewers of a camera already decoded are not, and a decoder
/// freed by its last viewer can be taken by another camera.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_view_decoders_are_capped_per_worker_not_per_viewer() {
    let r = rig_tuned(&["cam-l1", "cam-l2"], FixtureCodec::H264, |c| {
        c.max_live_cameras = 1;
    })
    .await;
    for cam in ["cam-l1", "cam-l2"] {
        wait_state(&r.fleet, cam, CameraState::Online, Duration::from_secs(5)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut first = loop {
        match r.fleet.live(&id("cam-l1")) {
            Ok(v) => break v,
            Err(e) => assert!(Instant::now() < deadline, "no live view: {e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    tokio::time::timeout(Duration::from_secs(5), first.rx.recv())
        .await
        .expect("a live frame within 5 s")
        .unwrap();
    let second_viewer = r
        .fleet
        .live(&id("cam-l1"))
        .expect("a second viewer of the same camera");
    match r.fleet.live(&id("cam-l2")) {
        Err(Ok(e @ video::LiveError::LiveCapacity(1))) => {
            let body = video::MediaError::from(e).body();
            assert_eq!(body["error"], "live_view_capacity", "{body}");
        }
        other => panic!("a second camera decoded past the cap: {:?}", other.err()),
    }
    drop(first);
    drop(second_viewer);
    let mut other = r
        .fleet
        .live(&id("cam-l2"))
        .expect("the freed decoder for another camera");
    tokio::time::timeout(Duration::from_secs(5), other.rx.recv())
        .await
        .expect("a live frame of the other camera within 5 s")
        .unwrap();
}

/// The stream types listed in the first program map table (PMT) of an MPEG-TS segment.
fn pmt_stream_types(ts: &[u8]) -> Vec<u8> {
    for p in ts.chunks(188) {
        let control = (p[3] >> 4) & 0x3;
        if p[1] & 0x40 == 0 || control & 1 == 0 {
            continue; // no section starts in this packet
        }
        // After the header and any adaptation field: the pointer field, then the section.
        let payload = 4 + if control & 2 != 0 {
            1 + p[4] as usize
        } else {
            0
        };
        let Some(t) = p.get(payload + 1 + p[payload] as usize..) else {
            continue;
        };
        if t[0] != 0x02 {
            continue; // not a PMT section
        }
        let section_end = 3 + ((usize::from(t[1] & 0x0F) << 8) | usize::from(t[2])) - 4;
        let mut i = 12 + ((usize::from(t[10] & 0x0F) << 8) | usize::from(t[11]));
        let mut types = Vec::new();
        while i + 5 <= section_end {
            types.push(t[i]);
            i += 5 + ((usize::from(t[i + 3] & 0x0F) << 8) | usize::from(t[i + 4]));
        }
        return types;
    }
    Vec::new()
}

/// The camera's HLS playlist, then the first segment it lists.
async fn hls_segment(fleet: &Fleet, camera: &str) -> Vec<u8> {
    let playlist = fleet
        .hls_file(&id(camera), "live.m3u8")
        .await
        .unwrap()
        .expect("a playlist once the first segment is cut");
    let text = String::from_utf8(playlist).unwrap();
    assert!(text.starts_with("#EXTM3U"), "{text}");
    let segment = text
        .lines()
        .find(|l| l.ends_with(".ts"))
        .unwrap_or_else(|| panic!("no segment in {text}"));
    let name = segment.rsplit('/').next().unwrap();
    fleet
        .hls_file(&id(camera), name)
        .await
        .unwrap()
        .expect("the listed segment")
}
