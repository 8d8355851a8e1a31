//! Cameras end to end against `ioc serve` (tansu, a private PostgreSQL) and the fixture RTSP
//! server (GStreamer, password-protected): the cameras layer over the websocket follows a
//! camera online → stalled → online; every role × camera group × use (map, snapshot, live
//! view) answers as the access matrix says, a forbidden and an unknown camera alike; the
//! audit log holds one row per allowed image request; an offline camera's snapshot is 503 with
//! its state; a snapshot is a JPEG of the configured size; the stream password appears in no
//! response and no log line.

mod common;

use std::time::Duration;

use auth::{Grant, Role};
use common::postgres::PrivatePostgres;
use common::*;
use fixtures::rtsp::{RtspFixture, RtspFixtureConfig};
use serde_json::Value;

const PASSWORD: &str = "Cam-Pass-7f3a9e1c";
const POLICE_CAM: &str = "hg-cam-an-vt-01";
const OFFLINE_CAM: &str = "hg-cam-an-vt-02";
const TRAFFIC_CAM: &str = "tg-cam-gt-mt-01";
const SCHOOL_CAM: &str = "lx-th-my-binh-cam-1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cameras_are_watched_shown_by_role_audited_and_keep_their_secrets() {
    let pg = PrivatePostgres::start();
    let rtsp = RtspFixture::start(RtspFixtureConfig {
        credentials: Some(("ioc-test".into(), PASSWORD.into())),
        ..Default::default()
    })
    .expect("the fixture RTSP server (GStreamer RTSP server, x264)");
    for cam in [POLICE_CAM, TRAFFIC_CAM, SCHOOL_CAM] {
        rtsp.mount(cam).unwrap();
    }
    let mut env = isolated_env("cameras");
    for (k, v) in [
        ("IOC_STORE__DATABASE_URL", pg.url()),
        ("IOC_HISTORY__GROUP", unique("hist")),
        ("IOC_REGISTRY__FIXTURE_CAMERAS", "true".into()),
        ("IOC_REGISTRY__FIXTURE_RTSP", rtsp.base_url()),
        ("IOC_VIDEO__CREDENTIALS__FIXTURE__USER", "ioc-test".into()),
        ("IOC_VIDEO__CREDENTIALS__FIXTURE__PASSWORD", PASSWORD.into()),
        ("IOC_VIDEO__STALL_AFTER_S", "1.5".into()),
        ("IOC_VIDEO__OFFLINE_AFTER_S", "4".into()),
        ("IOC_VIDEO__BACKOFF_MAX_S", "2".into()),
        ("IOC_VIDEO__SNAPSHOT_EVERY_S", "1".into()),
        ("IOC_VIDEO__SNAPSHOT_WIDTH", "320".into()),
        ("IOC_VIDEO__STATS_EVERY_S", "2".into()),
        ("IOC_AUTH__MEDIA_TICKET_TTL_S", "4".into()),
        ("IOC_CORE__RULES__CAMERA_DOWN_AFTER_S", "2".into()),
        ("IOC_CORE__RULES__TICK_MS", "300".into()),
        (
            "IOC_LOG__FILTER",
            "debug,sqlx=info,rdkafka=info,h2=info,hyper=info".into(),
        ),
    ] {
        env.push((k.into(), v));
    }
    let mut ioc = Ioc::start(&["serve"], &env);
    ioc.ready().await;
    let mut responses = String::new();

    // --- The cameras layer over the websocket: online, then stalled, then online again.
    let (mut ws, snap) = ws_subscribe(&ioc, "cams", &["cameras"], None).await;
    responses.push_str(&snap.to_string());
    let entity = format!("camera:{POLICE_CAM}");
    let is = |state: &'static str| move |f: &Value| f["properties"]["state"] == state;
    let already = snap["features"]["features"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["id"] == entity.as_str() && f["properties"]["state"] == "online");
    if !already {
        wait_for_entity(&mut ws, &entity, Duration::from_secs(20), is("online"))
            .await
            .expect("the police camera online on the websocket");
    }
    rtsp.get(POLICE_CAM).unwrap().stall();
    let stalled = wait_for_entity(&mut ws, &entity, Duration::from_secs(8), is("stalled"))
        .await
        .expect("stalled within 5 s (plus the pipeline's hops)");
    responses.push_str(&stalled.to_string());
    rtsp.get(POLICE_CAM).unwrap().resume();
    wait_for_entity(&mut ws, &entity, Duration::from_secs(8), is("online"))
        .await
        .expect("online again after the resume");
    // School cameras are not on an operator's map.
    let school_seen = snap["features"]["features"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| {
            f["properties"]["group"]
                .as_str()
                .unwrap_or("")
                .starts_with("school:")
        });
    assert!(
        !school_seen,
        "an operator saw school cameras without the grant"
    );

    // Wait for the school and traffic cameras to be online with snapshots.
    let op = token(Role::Operator);
    let warmup = token_with("warm-up", Role::Operator, None, &[Grant::SchoolCameras]);
    for (cam, t) in [
        (TRAFFIC_CAM, &warmup),
        (SCHOOL_CAM, &warmup),
        (POLICE_CAM, &warmup),
    ] {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let (s, _, _) = fetch(&ioc, &format!("/api/v1/cameras/{cam}/snapshot.jpg"), t).await;
            if s == 200 {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{cam}: no snapshot");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    // --- A snapshot: a JPEG of the configured size with its capture time.
    let r = reqwest::Client::new()
        .get(ioc.url(&format!("/api/v1/cameras/{POLICE_CAM}/snapshot.jpg")))
        .bearer_auth(&op)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let captured = r.headers()["x-capture-time"].to_str().unwrap().to_string();
    chrono::DateTime::parse_from_rfc3339(&captured).expect("X-Capture-Time is RFC 3339");
    let jpeg = r.bytes().await.unwrap();
    assert_eq!(video::jpeg::jpeg_dimensions(&jpeg), Some((320, 180)));

    // --- An offline camera: 503 with its state, never a 200 with nothing.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let body: Value = loop {
        let (s, _, b) = fetch(
            &ioc,
            &format!("/api/v1/cameras/{OFFLINE_CAM}/snapshot.jpg"),
            &op,
        )
        .await;
        assert_eq!(s, 503, "{}", String::from_utf8_lossy(&b));
        let v: Value = serde_json::from_slice(&b).unwrap();
        if v["state"] == "offline" {
            break v;
        }
        assert!(tokio::time::Instant::now() < deadline, "{v}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    responses.push_str(&body.to_string());
    assert!(body["reason"].as_str().is_some(), "{body}");
    // ...and operators are told: a camera_down alert at the camera, with its owner.
    let q = format!("/api/v1/alerts?rule=camera_down&entity=camera:{OFFLINE_CAM}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let alert = loop {
        let v = get_json(&ioc, &q, Role::Operator).await;
        if let Some(a) = v["alerts"].as_array().and_then(|a| a.first()).cloned() {
            break a;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no camera_down alert: {v}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(alert["agency"], "hg-ca", "{alert}");
    assert_eq!(alert["state"], "raised", "{alert}");
    assert_eq!(
        alert["geometry"].as_array().map(Vec::len),
        Some(2),
        "placed at the camera: {alert}"
    );
    // The other schools' cameras are not served, so they are down too; their alerts show only
    // to those who may see school cameras (an alert tells where the camera is).
    let granted = token_with("granted", Role::Operator, None, &[Grant::SchoolCameras]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (mut seen, mut groups) = (Vec::new(), Vec::new());
        for t in [&op, &granted] {
            let (_, _, b) = fetch(&ioc, "/api/v1/alerts?rule=camera_down&limit=500", t).await;
            let v: Value = serde_json::from_slice(&b).unwrap();
            let school: Vec<Value> = v["alerts"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|a| {
                    a["entity"]
                        .as_str()
                        .unwrap_or("")
                        .starts_with("camera:lx-th-")
                })
                .cloned()
                .collect();
            groups.extend(school.iter().map(|a| a["camera_group"].clone()));
            seen.push(school.len());
        }
        assert_eq!(
            seen[0], 0,
            "an operator without the grant saw school camera alerts"
        );
        if seen[1] > 0 {
            assert!(groups
                .iter()
                .all(|g| g.as_str().unwrap_or("").starts_with("school:")));
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no school camera_down alert for a granted operator"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // --- HLS by passthrough: the playlist, then a listed MPEG-TS segment; a leader without
    // the grant is refused both.
    let (s, ctype, b) = fetch(
        &ioc,
        &format!("/api/v1/cameras/{TRAFFIC_CAM}/hls/live.m3u8"),
        &op,
    )
    .await;
    let playlist = String::from_utf8_lossy(&b).to_string();
    assert_eq!(s, 200, "{playlist}");
    assert_eq!(ctype, "application/vnd.apple.mpegurl");
    assert!(
        !playlist.contains('/'),
        "segment URIs are relative: {playlist}"
    );
    let seg = playlist
        .lines()
        .find(|l| l.ends_with(".ts"))
        .expect("a segment");
    let (s, ctype, b) = fetch(
        &ioc,
        &format!("/api/v1/cameras/{TRAFFIC_CAM}/hls/{seg}"),
        &op,
    )
    .await;
    assert_eq!((s, ctype.as_str()), (200, "video/mp2t"));
    assert!(!b.is_empty() && b.len() % 188 == 0 && b[0] == 0x47);
    let plain_leader = token_with("leader-hls", Role::Leader, None, &[]);
    for f in ["live.m3u8", seg] {
        let (s, _, _) = fetch(
            &ioc,
            &format!("/api/v1/cameras/{TRAFFIC_CAM}/hls/{f}"),
            &plain_leader,
        )
        .await;
        assert_eq!(s, 403, "leader HLS {f}");
    }

    // --- The access matrix, written out: role × group × (map, snapshot, live view).
    let t = |sub: &str, role, agency, grants: &[Grant]| token_with(sub, role, agency, grants);
    // (who = the token's subject, token, [police, traffic, school] x [map, snapshot, live])
    let callers: Vec<(&str, String, [[bool; 3]; 3])> = vec![
        (
            "operator",
            t("operator", Role::Operator, None, &[]),
            [[true; 3], [true; 3], [false; 3]],
        ),
        (
            "operator-granted",
            t(
                "operator-granted",
                Role::Operator,
                None,
                &[Grant::SchoolCameras],
            ),
            [[true; 3], [true; 3], [true; 3]],
        ),
        (
            "police",
            t("police", Role::Police, None, &[]),
            [[true; 3], [true; 3], [false; 3]],
        ),
        (
            "leader",
            t("leader", Role::Leader, None, &[]),
            [[true, false, false], [true, false, false], [false; 3]],
        ),
        (
            "leader-granted",
            t("leader-granted", Role::Leader, None, &[Grant::CameraImages]),
            [[true; 3], [true; 3], [false; 3]],
        ),
        (
            "school-mine",
            t("school-mine", Role::School, Some("lx-th-my-binh"), &[]),
            [[false; 3], [false; 3], [true; 3]],
        ),
        (
            "school-other",
            t("school-other", Role::School, Some("lx-mn-hoa-sen"), &[]),
            [[false; 3]; 3],
        ),
        (
            "admin",
            t("admin", Role::Admin, None, &[]),
            [
                [true, false, false],
                [true, false, false],
                [true, false, false],
            ],
        ),
        (
            "agency",
            t("agency", Role::Agency, Some("hg-ca"), &[]),
            [[false; 3]; 3],
        ),
        (
            "citizen",
            t("citizen", Role::Citizen, None, &[]),
            [[false; 3]; 3],
        ),
    ];
    let forbidden_body = r#"{"error":"forbidden","reason":"no access to this camera"}"#;
    for (who, t, rows) in &callers {
        let layer = get_layer(&ioc, t).await;
        for (cam, row) in [POLICE_CAM, TRAFFIC_CAM, SCHOOL_CAM].iter().zip(rows) {
            let on_map = layer.iter().any(|id| id == &format!("camera:{cam}"));
            assert_eq!(on_map, row[0], "{who} on the map: {cam}");
            let (s, _, b) = fetch(&ioc, &format!("/api/v1/cameras/{cam}"), t).await;
            assert_eq!(s == 200, row[0], "{who} GET {cam}: {s}");
            responses.push_str(&String::from_utf8_lossy(&b));
            for (use_, path, allowed) in [
                ("snapshot", "snapshot.jpg", row[1]),
                ("live view", "live.mjpeg", row[2]),
            ] {
                let (s, ctype, b) = fetch(&ioc, &format!("/api/v1/cameras/{cam}/{path}"), t).await;
                if allowed {
                    assert_eq!(
                        s,
                        200,
                        "{who} {use_} {cam}: {}",
                        String::from_utf8_lossy(&b)
                    );
                    if use_ == "snapshot" {
                        assert_eq!(ctype, "image/jpeg");
                    } else {
                        assert!(ctype.starts_with("multipart/x-mixed-replace"), "{ctype}");
                        let head = String::from_utf8_lossy(&b[..b.len().min(80)]).to_string();
                        assert!(head.contains("image/jpeg"), "{head}");
                    }
                } else {
                    assert_eq!(s, 403, "{who} {use_} {cam}");
                    assert_eq!(String::from_utf8_lossy(&b), forbidden_body);
                }
            }
        }
        // An unknown camera looks exactly like a forbidden one.
        let (s, _, b) = fetch(&ioc, "/api/v1/cameras/hg-cam-khong-co/snapshot.jpg", t).await;
        assert_eq!(
            (s, String::from_utf8_lossy(&b).to_string()),
            (403, forbidden_body.to_string()),
            "{who}"
        );
    }

    // --- The audit log: for each caller, one allowed row per allowed image request and one
    // denied row per refused one (the unknown camera included), with who, what, when, where.
    let log = get_json(&ioc, "/api/v1/audit/cameras?limit=10000", Role::Admin).await;
    let rows = log["accesses"].as_array().unwrap();
    for (who, _, matrix) in &callers {
        let allowed: usize = matrix.iter().map(|r| r[1] as usize + r[2] as usize).sum();
        let denied = 6 - allowed + 1;
        let count = |ok: bool| {
            rows.iter()
                .filter(|r| r["subject"] == *who && r["allowed"] == ok)
                .count()
        };
        assert_eq!((count(true), count(false)), (allowed, denied), "{who}");
    }
    for r in rows {
        assert!(
            r["role"].is_string() && r["camera"].is_string() && r["at"].is_string(),
            "{r}"
        );
        assert_eq!(r["remote"], "127.0.0.1", "{r}");
    }
    let (s, _, _) = fetch(&ioc, "/api/v1/audit/cameras", &op).await;
    assert_eq!(s, 403, "operators do not read the audit log");

    // --- Media tickets for clients that cannot send the bearer header (`<img src>`): one
    // camera, one use, audited when used like any other image request.
    let wall = token_with("wall-1", Role::Operator, None, &[]);
    let client = reqwest::Client::new();
    let issue_as = |who: String, cam: &'static str, body: Value| {
        let client = client.clone();
        let url = ioc.url(&format!("/api/v1/cameras/{cam}/tickets"));
        async move {
            let r = client
                .post(url)
                .bearer_auth(who)
                .json(&body)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let issue = |who: String, cam: &'static str, use_: &'static str| {
        issue_as(who, cam, serde_json::json!({"use": use_}))
    };
    let (s, t) = issue(wall.clone(), POLICE_CAM, "live_view").await;
    assert_eq!(s, 201, "{t}");
    let live_url = t["url"].as_str().unwrap().to_string();
    let mut r = client.get(ioc.url(&live_url)).send().await.unwrap();
    assert_eq!(
        r.status(),
        200,
        "the ticket opens the live view without a header"
    );
    let first = tokio::time::timeout(Duration::from_secs(10), r.chunk())
        .await
        .expect("a first live frame")
        .unwrap()
        .unwrap();
    assert!(first.starts_with(b"--frame"));
    drop(r);
    let again = client.get(ioc.url(&live_url)).send().await.unwrap();
    assert_eq!(
        again.status(),
        401,
        "a used ticket opened the live view again"
    );
    let ticket = t["ticket"].as_str().unwrap();
    for (what, path) in [
        (
            "another use",
            format!("/api/v1/cameras/{POLICE_CAM}/snapshot.jpg?ticket={ticket}"),
        ),
        (
            "another camera",
            format!("/api/v1/cameras/{TRAFFIC_CAM}/live.mjpeg?ticket={ticket}"),
        ),
        (
            "a forged ticket",
            format!("/api/v1/cameras/{POLICE_CAM}/live.mjpeg?ticket=x{ticket}"),
        ),
        (
            "no ticket",
            format!("/api/v1/cameras/{POLICE_CAM}/live.mjpeg"),
        ),
    ] {
        let s = client.get(ioc.url(&path)).send().await.unwrap().status();
        assert_eq!(s, 401, "{what}");
    }
    let (s, b) = issue(wall.clone(), SCHOOL_CAM, "snapshot").await;
    assert_eq!(
        (s, b["reason"].as_str()),
        (403, Some("no access to this camera"))
    );
    let (s, b) = issue(wall.clone(), POLICE_CAM, "look").await;
    assert_eq!((s, b["field"].as_str()), (400, Some("use")), "{b}");
    let log = get_json(&ioc, "/api/v1/audit/cameras?limit=10000", Role::Admin).await;
    let wall_rows: Vec<(bool, String)> = log["accesses"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["subject"] == "wall-1")
        .map(|r| {
            (
                r["allowed"] == true,
                r["camera"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        wall_rows.iter().filter(|r| r.0).count(),
        1,
        "one allowed row for the one ticketed view: {wall_rows:?}"
    );
    assert!(wall_rows.contains(&(false, SCHOOL_CAM.to_string())));

    // --- HLS with a ticket, for native players (Safari, tablets): the playlist carries the
    // ticket on its segment URIs, and the player keeps polling past the ticket's 4 s while it
    // plays; a ticket nobody used is dead once expired. One audit row for the session.
    let hls_ticket = |who: &str| {
        issue_as(
            token_with(who, Role::Operator, None, &[]),
            TRAFFIC_CAM,
            serde_json::json!({"use": "live_view", "format": "hls"}),
        )
    };
    let (s, played) = hls_ticket("tablet-1").await;
    assert_eq!(s, 201, "{played}");
    let (s, unused) = hls_ticket("tablet-2").await;
    assert_eq!(s, 201, "{unused}");
    let playlist_url = played["url"].as_str().unwrap().to_string();
    assert!(
        playlist_url.contains("/hls/live.m3u8?ticket="),
        "{playlist_url}"
    );
    let hls_base = playlist_url.split("live.m3u8").next().unwrap().to_string();
    let until = tokio::time::Instant::now() + Duration::from_secs(11);
    let mut polls = 0;
    while tokio::time::Instant::now() < until {
        let r = client.get(ioc.url(&playlist_url)).send().await.unwrap();
        assert_eq!(r.status(), 200, "poll {polls} of the ticketed playlist");
        let text = r.text().await.unwrap();
        let seg = text
            .lines()
            .find(|l| l.contains(".ts"))
            .unwrap_or_else(|| panic!("a segment in {text}"));
        assert!(seg.contains("?ticket="), "{text}");
        let r = client
            .get(ioc.url(&format!("{hls_base}{seg}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "segment {seg}");
        let b = r.bytes().await.unwrap();
        assert!(!b.is_empty() && b[0] == 0x47);
        polls += 1;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(polls >= 5);
    let r = client
        .get(ioc.url(unused["url"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "an expired, unused HLS ticket");
    let (s, b) = issue_as(
        wall.clone(),
        TRAFFIC_CAM,
        serde_json::json!({"use": "snapshot", "format": "hls"}),
    )
    .await;
    assert_eq!((s, b["field"].as_str()), (400, Some("format")), "{b}");
    let log = get_json(&ioc, "/api/v1/audit/cameras?limit=10000", Role::Admin).await;
    let tablet_rows = log["accesses"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["subject"] == "tablet-1" && r["allowed"] == true)
        .count();
    assert_eq!(tablet_rows, 1, "one row for the HLS session's first minute");

    // --- The stream password is in no response and no log line.
    assert!(!responses.contains(PASSWORD));
    let layer_text = serde_json::to_string(
        &get_json(&ioc, "/api/v1/layers/cameras/features", Role::Operator).await,
    )
    .unwrap();
    assert!(!layer_text.contains(PASSWORD) && !layer_text.contains("rtsp://"));
    let log_path = std::env::temp_dir().join(format!("ioc-serve-{}.log", ioc.port));
    let log_text = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log_text.contains("camera state"),
        "the log has camera transitions"
    );
    assert!(
        !log_text.contains(PASSWORD),
        "the stream password is in the log"
    );
}

/// Entity ids of the cameras layer as `token` sees it.
async fn get_layer(ioc: &Ioc, token: &str) -> Vec<String> {
    let r = reqwest::Client::new()
        .get(ioc.url("/api/v1/layers/cameras/features?limit=1000"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    if r.status() == 403 {
        return Vec::new();
    }
    let v: Value = r.json().await.unwrap();
    v["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_string())
        .collect()
}
