//! Cameras in a split deployment: two `ioc video` processes (shards 0 and 1 of 2), an
//! `ioc core` and an `ioc api` that runs no workers of its own, against tansu, a private
//! PostgreSQL and the fixture RTSP server.
//!
//! The API serves each camera's snapshot, MJPEG live view and HLS from the worker of its
//! shard. It keeps the access checks and the audit log, and passes on the worker's answers:
//! 503 with the state for an offline camera, 429 at the viewer limit. A worker's media
//! endpoint opens only to a media ticket for that camera and use, never to a person's token.
//! When a worker dies, its cameras answer 503 while the other shard's cameras keep serving, and
//! the map shows them `unknown` (nobody reports them) rather than their last "online".

mod common;

use std::time::Duration;

use auth::{CameraUse, Role};
use common::postgres::PrivatePostgres;
use common::*;
use fixtures::rtsp::{RtspFixture, RtspFixtureConfig};
use serde_json::Value;

const PASSWORD: &str = "Split-Pass-41c9d2";

/// The first police cameras of the fixture on shard 0 and on shard 1 of 2, and a third
/// police camera (left unmounted, so offline).
fn cameras_by_shard() -> (String, String, String) {
    let ids: Vec<String> = fixtures::cameras::cameras("rtsp://unused")
        .into_iter()
        .filter(|c| c.id.as_str().starts_with("hg-cam-an-"))
        .map(|c| c.id.as_str().to_string())
        .collect();
    let on = |shard: u32| {
        ids.iter()
            .find(|id| video::shard_of(id, 2) == shard)
            .unwrap()
            .clone()
    };
    let (a, b) = (on(0), on(1));
    let offline = ids
        .iter()
        .find(|id| **id != a && **id != b)
        .unwrap()
        .clone();
    (a, b, offline)
}

async fn wait_snapshot(api: &Ioc, cam: &str, token: &str) -> (u16, String, Vec<u8>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let r = fetch(api, &format!("/api/v1/cameras/{cam}/snapshot.jpg"), token).await;
        if r.0 == 200 || tokio::time::Instant::now() > deadline {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_without_workers_serves_images_from_the_video_processes_by_shard() {
    let (cam0, cam1, offline) = cameras_by_shard();
    let pg = PrivatePostgres::start();
    let rtsp = RtspFixture::start(RtspFixtureConfig {
        credentials: Some(("ioc-split".into(), PASSWORD.into())),
        ..Default::default()
    })
    .expect("the fixture RTSP server (GStreamer RTSP server, x264)");
    for cam in [&cam0, &cam1] {
        rtsp.mount(cam).unwrap();
    }
    let mut env = isolated_env("split");
    for (k, v) in [
        ("IOC_STORE__DATABASE_URL", pg.url()),
        ("IOC_HISTORY__GROUP", unique("hist")),
        ("IOC_REGISTRY__FIXTURE_CAMERAS", "true".into()),
        ("IOC_REGISTRY__FIXTURE_RTSP", rtsp.base_url()),
        ("IOC_VIDEO__STALL_AFTER_S", "1.5".into()),
        ("IOC_VIDEO__OFFLINE_AFTER_S", "4".into()),
        ("IOC_VIDEO__BACKOFF_MAX_S", "2".into()),
        ("IOC_VIDEO__SNAPSHOT_EVERY_S", "1".into()),
        ("IOC_VIDEO__SNAPSHOT_WIDTH", "320".into()),
        ("IOC_VIDEO__MAX_VIEWERS", "1".into()),
        ("IOC_VIDEO__STATS_EVERY_S", "1".into()),
        ("IOC_CORE__RULES__CAMERA_SILENT_AFTER_S", "8".into()),
        ("IOC_CORE__RULES__TICK_MS", "500".into()),
    ] {
        env.push((k.into(), v));
    }
    let mut workers = Vec::new();
    for shard in 0..2 {
        let mut e = env.clone();
        e.push(("IOC_VIDEO__SHARD".into(), shard.to_string()));
        e.push(("IOC_VIDEO__SHARDS".into(), "2".into()));
        e.push((
            "IOC_VIDEO__CREDENTIALS__FIXTURE__USER".into(),
            "ioc-split".into(),
        ));
        e.push((
            "IOC_VIDEO__CREDENTIALS__FIXTURE__PASSWORD".into(),
            PASSWORD.into(),
        ));
        let mut w = Ioc::start(&["video"], &e);
        w.ready().await;
        workers.push(w);
    }
    let mut core = Ioc::start(&["core"], &env);
    core.ready().await;
    let mut api_env = env.clone();
    api_env.push((
        "IOC_VIDEO__WORKERS".into(),
        format!(r#"["{}", "{}"]"#, workers[0].url(""), workers[1].url("")),
    ));
    let mut api = Ioc::start(&["api"], &api_env);
    api.ready().await;
    let op = token(Role::Operator);

    // --- Snapshots of both shards' cameras through the API, with their capture time.
    for cam in [&cam0, &cam1] {
        let (s, ctype, jpeg) = wait_snapshot(&api, cam, &op).await;
        assert_eq!(s, 200, "{cam}: {}", String::from_utf8_lossy(&jpeg));
        assert_eq!(ctype, "image/jpeg");
        assert_eq!(
            video::jpeg::jpeg_dimensions(&jpeg),
            Some((320, 180)),
            "{cam}"
        );
    }
    let r = reqwest::Client::new()
        .get(api.url(&format!("/api/v1/cameras/{cam1}/snapshot.jpg")))
        .bearer_auth(&op)
        .send()
        .await
        .unwrap();
    let captured = r.headers()["x-capture-time"].to_str().unwrap();
    let age =
        chrono::Utc::now().fixed_offset() - chrono::DateTime::parse_from_rfc3339(captured).unwrap();
    assert!(age < chrono::Duration::seconds(10), "snapshot {age} old");

    // --- The access checks stay in the API: a plain leader gets 403, as in one process.
    let (s, _, _) = fetch(
        &api,
        &format!("/api/v1/cameras/{cam0}/snapshot.jpg"),
        &token(Role::Leader),
    )
    .await;
    assert_eq!(s, 403);

    // --- An offline camera: the worker's 503 with its state comes through.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (s, _, b) = fetch(
            &api,
            &format!("/api/v1/cameras/{offline}/snapshot.jpg"),
            &op,
        )
        .await;
        assert_eq!(s, 503, "{}", String::from_utf8_lossy(&b));
        let v: Value = serde_json::from_slice(&b).unwrap();
        if v["state"] == "offline" {
            assert!(v["reason"].as_str().is_some(), "{v}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{v}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // --- Live view through the API, and the worker's viewer limit (1) answered as 429.
    let held = reqwest::Client::new()
        .get(api.url(&format!("/api/v1/cameras/{cam0}/live.mjpeg")))
        .bearer_auth(&op)
        .send()
        .await
        .unwrap();
    assert_eq!(held.status(), 200);
    let mut held = held;
    let first = tokio::time::timeout(Duration::from_secs(10), held.chunk())
        .await
        .expect("a first live frame within 10 s")
        .unwrap()
        .unwrap();
    assert!(first.starts_with(b"--frame\r\nContent-Type: image/jpeg"));
    let (s, _, b) = fetch(&api, &format!("/api/v1/cameras/{cam0}/live.mjpeg"), &op).await;
    assert_eq!(s, 429, "{}", String::from_utf8_lossy(&b));
    drop(held);

    // --- HLS through the API: the playlist, then a segment it lists.
    let (s, _, playlist) = fetch(&api, &format!("/api/v1/cameras/{cam1}/hls/live.m3u8"), &op).await;
    let playlist = String::from_utf8_lossy(&playlist).to_string();
    assert_eq!(s, 200, "{playlist}");
    let segment = playlist
        .lines()
        .find(|l| l.ends_with(".ts"))
        .unwrap_or_else(|| panic!("no segment in {playlist}"));
    let (s, ctype, ts) = fetch(&api, &format!("/api/v1/cameras/{cam1}/hls/{segment}"), &op).await;
    assert_eq!((s, ctype.as_str()), (200, "video/mp2t"));
    assert_eq!(ts.first(), Some(&0x47), "an MPEG-TS segment");

    // --- The worker's media endpoint: only a ticket for that camera and use opens it.
    let worker_path = format!("/media/v1/cameras/{cam0}/snapshot.jpg");
    let a = auth::Authenticator::new(SECRET.as_bytes()).unwrap();
    let x = a.verify(&token(Role::Operator)).unwrap();
    let minute = chrono::Duration::minutes(1);
    for (what, bearer) in [
        ("an admin's token", Some(token(Role::Admin))),
        ("no token", None),
        (
            "a ticket for another camera",
            Some(a.issue_ticket(&x, &cam1, CameraUse::Snapshot, minute)),
        ),
        (
            "a live-view ticket",
            Some(a.issue_ticket(&x, &cam0, CameraUse::LiveView, minute)),
        ),
    ] {
        let mut req = reqwest::Client::new().get(workers[0].url(&worker_path));
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        let s = req.send().await.unwrap().status();
        assert_eq!(s, 401, "the worker opened to {what}");
    }
    let (s, _, _) = fetch(
        &workers[0],
        &worker_path,
        &a.issue_ticket(&x, &cam0, CameraUse::Snapshot, minute),
    )
    .await;
    assert_eq!(s, 200, "a ticket for the camera and use opens it");

    // --- Every image request through the API was audited there.
    let log = get_json(&api, "/api/v1/audit/cameras?limit=1000", Role::Admin).await;
    let rows = log["accesses"].as_array().unwrap();
    let allowed_live = rows
        .iter()
        .filter(|r| r["camera"] == cam0.as_str() && r["action"] == "live_view")
        .count();
    assert_eq!(allowed_live, 2, "one row per live request: {log}");
    assert!(rows
        .iter()
        .any(|r| r["camera"] == cam0.as_str() && r["role"] == "leader" && r["allowed"] == false));

    // --- Shard 1's worker dies: its cameras answer 503, shard 0's keep serving.
    workers[1].kill();
    let (s, _, b) = fetch(&api, &format!("/api/v1/cameras/{cam1}/snapshot.jpg"), &op).await;
    assert_eq!(s, 503, "{}", String::from_utf8_lossy(&b));
    let v: Value = serde_json::from_slice(&b).unwrap();
    assert!(
        v["reason"].as_str().unwrap_or("").contains("unreachable"),
        "{v}"
    );
    let (s, _, _) = fetch(&api, &format!("/api/v1/cameras/{cam0}/snapshot.jpg"), &op).await;
    assert_eq!(s, 200);
    // ...and the map stops calling its cameras online: nobody watches them any more.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let silent = loop {
        let c = get_json(&api, &format!("/api/v1/cameras/{cam1}"), Role::Operator).await;
        if c["properties"]["state"] == "unknown" {
            break c;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the dead worker's camera still shown as {}",
            c["properties"]["state"]
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(silent["properties"]["reported_state"], "online", "{silent}");
    assert!(
        silent["properties"]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("video worker has not reported"),
        "{silent}"
    );
    let live_shard = get_json(&api, &format!("/api/v1/cameras/{cam0}"), Role::Operator).await;
    assert_eq!(live_shard["properties"]["state"], "online", "{live_shard}");
    if video::shard_of(&offline, 2) == 0 {
        // Offline but reported all along by its living worker: offline, not unknown.
        let c = get_json(&api, &format!("/api/v1/cameras/{offline}"), Role::Operator).await;
        assert_eq!(c["properties"]["state"], "offline", "{c}");
    }

    // --- The stream password is in no API response and in no log of the API process.
    let api_log =
        std::fs::read_to_string(std::env::temp_dir().join(format!("ioc-api-{}.log", api.port)))
            .unwrap();
    assert!(!api_log.contains(PASSWORD));
    assert!(!playlist.contains(PASSWORD) && !log.to_string().contains(PASSWORD));
}
