//! The video wall's screens in real browsers: headless Chromium at 1920×1080 over `ioc demo`,
//! its cameras streaming from a fixture RTSP server this test runs (so that it can stop one).
//! A layout stored through the API (a bad one refused naming the field) opens on two screens;
//! the 3×3 mosaic shows nine fresh JPEGs; a camera stopped at the RTSP server turns its tile
//! to "offline" with the time since, within the stall + offline delays; an operator's focus
//! moves both screens (the map pans there, the mosaic fills with the nearest cameras); an
//! edit of the layout reaches the open screens; closing the tiles frees every live viewer
//! slot; the tour moves on; and when the server goes, every panel says the connection is lost. Screenshots are saved under `target/tmp/screenshots/` for a person to look at.

mod common;

use std::time::Duration;

use common::browser::{Browser, Page};
use common::*;
use fixtures::rtsp::{RtspFixture, RtspFixtureConfig};
use serde_json::{json, Value};

const PASSWORD: &str = "wall-test-password";
const LAYOUT: &str = "tuong-thu";
/// The camera stopped during the test.
const STOPPED: &str = "hg-cam-an-vt-05";
/// Stall and offline delays given to the workers, seconds.
const STALL_S: f64 = 1.5;
const OFFLINE_S: f64 = 4.0;

fn shots() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn mosaic_cameras() -> Vec<String> {
    (1..=9).map(|n| format!("hg-cam-an-vt-{n:02}")).collect()
}

fn layout(mosaic: u8) -> Value {
    let cams: Vec<String> = mosaic_cameras()
        .into_iter()
        .take(usize::from(mosaic * mosaic))
        .collect();
    json!({"name": "Tường thử", "screens": [
        {"name": "Bản đồ", "columns": 4, "rows": 4, "panels": [
            {"kind": "kpi", "at": [0, 0, 4, 1]},
            {"kind": "map", "at": [0, 1, 3, 3]},
            {"kind": "alerts", "at": [3, 1, 1, 2]},
            {"kind": "clock", "at": [3, 3, 1, 1]}]},
        {"name": "Camera", "columns": 4, "rows": 3, "panels": [
            {"kind": "mosaic", "at": [0, 0, 3, 3], "size": mosaic, "cameras": cams, "live": [cams[0]]},
            {"kind": "tour", "at": [3, 0, 1, 1], "group": "traffic", "every_s": 5},
            {"kind": "reports", "at": [3, 1, 1, 2]}]}]})
}

/// (status, JSON answer) of a write with a JSON body.
async fn send(
    method: reqwest::Method,
    demo: &Ioc,
    path: &str,
    token: &str,
    body: &Value,
) -> (u16, Value) {
    let r = reqwest::Client::new()
        .request(method, demo.url(path))
        .bearer_auth(token)
        .json(body)
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn put(demo: &Ioc, path: &str, token: &str, body: &Value) -> (u16, Value) {
    send(reqwest::Method::PUT, demo, path, token, body).await
}

async fn post(demo: &Ioc, path: &str, token: &str, body: &Value) -> (u16, Value) {
    send(reqwest::Method::POST, demo, path, token, body).await
}

/// The worker's live viewers, from `/metrics`.
async fn live_viewers(demo: &Ioc) -> f64 {
    let (_, _, body) = fetch(demo, "/metrics", &token(auth::Role::Admin)).await;
    String::from_utf8_lossy(&body)
        .lines()
        .find(|l| l.starts_with("ioc_video_live_viewers"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

async fn screen(demo: &Ioc, n: usize, tok: &str) -> (Browser, Page) {
    let browser = Browser::start().await;
    let mut page = Page::open(&browser).await;
    page.viewport(1920, 1080).await;
    page.watch_csp().await;
    page.watch_websockets().await;
    let url = format!(
        "{}?screen={n}#token={tok}",
        demo.url(&format!("/wall/{LAYOUT}"))
    );
    page.call("Page.navigate", json!({"url": url})).await;
    (browser, page)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wall_screens_show_a_live_mosaic_follow_a_focus_and_free_their_viewers() {
    let rtsp = RtspFixture::start(RtspFixtureConfig {
        credentials: Some(("ioc-test".into(), PASSWORD.into())),
        ..Default::default()
    })
    .expect("the fixture RTSP server (GStreamer RTSP server, x264)");
    let mut mounts = Vec::new();
    for cam in fixtures::cameras::cameras("rtsp://unused")
        .iter()
        .filter(|c| {
            c.id.as_str().starts_with("hg-cam-an-vt-") || c.id.as_str().starts_with("hg-cam-gt-vt-")
        })
    {
        mounts.push((cam.id.to_string(), rtsp.mount(cam.id.as_str()).unwrap()));
    }
    let env: Vec<(String, String)> = [
        ("IOC_AUTH__SECRET", SECRET.to_string()),
        ("IOC_DEMO__INTERVAL_S", "5".into()),
        ("IOC_DEMO__CAMERAS", "false".into()),
        ("IOC_REGISTRY__FIXTURE_CAMERAS", "true".into()),
        ("IOC_REGISTRY__FIXTURE_RTSP", rtsp.base_url()),
        ("IOC_VIDEO__CREDENTIALS__FIXTURE__USER", "ioc-test".into()),
        ("IOC_VIDEO__CREDENTIALS__FIXTURE__PASSWORD", PASSWORD.into()),
        ("IOC_VIDEO__STALL_AFTER_S", STALL_S.to_string()),
        ("IOC_VIDEO__OFFLINE_AFTER_S", OFFLINE_S.to_string()),
        ("IOC_VIDEO__BACKOFF_MAX_S", "2".into()),
        ("IOC_VIDEO__SNAPSHOT_EVERY_S", "1".into()),
        ("IOC_VIDEO__SNAPSHOT_WIDTH", "320".into()),
        ("IOC_VIDEO__STATS_EVERY_S", "2".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let mut demo = Ioc::start(&["demo"], &env);
    demo.ready().await;
    let operator = token_with("dieu-hanh-1", auth::Role::Operator, None, &[]);
    let path = format!("/api/v1/layouts/{LAYOUT}");

    // --- Storage: a bad layout is refused naming its field; a good one is stored.
    let mut bad = layout(3);
    bad["screens"][1]["panels"][0]["size"] = json!(5);
    let (s, e) = put(&demo, &path, &operator, &bad).await;
    assert_eq!(s, 400, "{e}");
    assert_eq!(e["field"], "screens[1].panels[0].size", "{e}");
    let mut unknown = layout(3);
    unknown["screens"][1]["panels"][0]["cameras"][2] = json!("hg-cam-khong-co");
    let (s, e) = put(&demo, &path, &operator, &unknown).await;
    assert_eq!(s, 400, "{e}");
    assert_eq!(e["field"], "screens[1].panels[0].cameras[2]", "{e}");
    let leader = token(auth::Role::Leader);
    let (s, _) = put(&demo, &path, &leader, &layout(3)).await;
    assert_eq!(s, 403, "leaders watch walls, they do not edit them");
    // The cameras must be in the registry first: wait for the one the layout names last.
    let wait = Duration::from_secs(40);
    let deadline = tokio::time::Instant::now() + wait;
    let stored = loop {
        let (s, v) = put(&demo, &path, &operator, &layout(3)).await;
        if s == 201 || s == 200 {
            break v;
        }
        assert!(tokio::time::Instant::now() < deadline, "{s} {v}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(stored["screen_urls"][1], format!("/wall/{LAYOUT}?screen=1"));
    // Listed to those who watch walls; not to an agency or a citizen.
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let (s, _, body) = fetch(&demo, "/api/v1/layouts", &token(auth::Role::Police)).await;
        assert_eq!(s, 200);
        if String::from_utf8_lossy(&body).contains(LAYOUT) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stored layout is listed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for role in [auth::Role::Agency, auth::Role::Citizen] {
        let (s, _, _) = fetch(&demo, &path, &token(role)).await;
        assert_eq!(s, 403, "{role} may not read wall layouts");
    }

    // --- Two screens of the layout.
    let (_b0, mut map_screen) = screen(&demo, 0, &operator).await;
    let (_b1, mut cam_screen) = screen(&demo, 1, &operator).await;
    let fresh_jpegs = "[...document.querySelectorAll('.panel-mosaic .cam-tile')].filter(t => \
        t.dataset.state === 'online' && t.querySelector('img').naturalWidth > 0 && \
        (t.classList.contains('live') || /ảnh lúc/.test(t.querySelector('.cam-age').textContent))).length";
    let nine = cam_screen.wait_for(fresh_jpegs, &json!(9), wait).await;
    assert_eq!(nine, json!(9), "nine tiles with pictures");
    // Each snapshot tile's picture is recent (the workers snapshot every second).
    let ages = cam_screen
        .eval("JSON.stringify(window.iocScreen.tiles().filter(t => t.mode === 'snapshot' && t.captured).map(t => Date.now() - t.captured))")
        .await;
    let ages: Vec<f64> = serde_json::from_str(ages.as_str().unwrap()).unwrap();
    assert!(ages.len() >= 8, "eight snapshot tiles: {ages:?}");
    assert!(
        ages.iter().all(|a| *a < 15_000.0),
        "fresh snapshots: {ages:?} ms"
    );
    let live = cam_screen
        .eval("window.iocScreen.tiles().filter(t => t.mode === 'live').length")
        .await;
    assert_eq!(live, json!(1), "the layout's live camera plays MJPEG");
    let deadline = tokio::time::Instant::now() + wait;
    while live_viewers(&demo).await < 1.0 {
        if tokio::time::Instant::now() > deadline {
            let notes = cam_screen
                .eval("JSON.stringify(window.iocScreen.tiles().map(t => [t.id, t.mode, t.note, t.img.src.slice(0, 60), t.img.naturalWidth]))")
                .await;
            let (_, _, m) = fetch(&demo, "/metrics", &token(auth::Role::Admin)).await;
            let m = String::from_utf8_lossy(&m)
                .lines()
                .filter(|l| l.contains("live"))
                .collect::<Vec<_>>()
                .join("\n");
            panic!("the worker counts the live viewer: {notes}\n{m}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    cam_screen
        .screenshot(&shots().join("wall-screen-1-mosaic.png"))
        .await;
    // The tour moves on to the next traffic camera every 5 s.
    let toured = "(() => { const t = document.querySelector('.panel-tour .cam-tile'); return t ? t.dataset.camera : null; })()";
    let first = cam_screen
        .wait_for(&format!("{toured} !== null"), &json!(true), wait)
        .await;
    assert_eq!(first, json!(true), "the tour shows a camera");
    let first = cam_screen.eval(toured).await;
    let moved = cam_screen
        .wait_for(
            &format!("{toured} !== {first}"),
            &json!(true),
            Duration::from_secs(15),
        )
        .await;
    assert_eq!(moved, json!(true), "the tour moved on from {first}");

    let kpi = map_screen
        .wait_for(
            "(() => { const c = document.querySelector('[data-kpi=\"Camera trực tuyến\"] b'); return !!c && /^[1-9]\\d*\\/\\d+$/.test(c.textContent); })()",
            &json!(true),
            wait,
        )
        .await;
    assert_eq!(kpi, json!(true), "the KPI strip counts cameras online");
    let indicators = map_screen
        .wait_for(
            "!!document.querySelector('[data-kpi^=\"Chỉ tiêu không đạt\"]')",
            &json!(true),
            wait,
        )
        .await;
    assert_eq!(
        indicators,
        json!(true),
        "and the leaders' indicators missed"
    );
    let units = map_screen
        .wait_for("window.iocScreen.data.units.size > 0", &json!(true), wait)
        .await;
    assert_eq!(units, json!(true));

    // --- A camera stopped at the RTSP server: its tile says offline, and since when.
    let stopped_at = std::time::Instant::now();
    let (_, mount) = mounts.iter().find(|(id, _)| id == STOPPED).unwrap();
    mount.stop();
    let offline = format!(
        "(() => {{ const t = document.querySelector('.panel-mosaic .cam-tile[data-camera=\"{STOPPED}\"]'); \
         return !!t && t.dataset.state === 'offline' && t.classList.contains('down') && \
         /Mất kết nối từ/.test(t.querySelector('.cam-state').textContent); }})()"
    );
    let went = cam_screen.wait_for(&offline, &json!(true), wait).await;
    assert_eq!(went, json!(true), "the stopped camera's tile shows offline");
    let took = stopped_at.elapsed().as_secs_f64();
    // Stall + offline delays, plus the status report, the core and the feed on a busy machine.
    assert!(
        took < STALL_S + OFFLINE_S + 10.0,
        "offline shown {took:.1} s after the stop"
    );
    cam_screen
        .screenshot(&shots().join("wall-screen-1-offline.png"))
        .await;

    // --- Focus: both screens move.
    let police = token(auth::Role::Police);
    let (s, _) = post(
        &demo,
        &format!("{path}/focus"),
        &police,
        &json!({"lon": 105.47, "lat": 9.784}),
    )
    .await;
    assert_eq!(s, 403, "police watch a wall; its operators focus it");
    let (lon, lat) = (105.4745, 9.7862);
    let (s, v) = post(
        &demo,
        &format!("{path}/focus"),
        &operator,
        &json!({"lon": lon, "lat": lat, "radius_m": 2000, "label": "Cháy chợ Vị Thanh"}),
    )
    .await;
    assert_eq!(s, 202, "{v}");
    let centred = format!(
        "(() => {{ const p = window.iocScreen.screen.panels.find(p => p.map); if (!p) return false; \
         const c = p.map.getCenter(); return Math.abs(c.lng - {lon}) < 0.001 && Math.abs(c.lat - {lat}) < 0.001 && p.map.getZoom() >= 15; }})()"
    );
    let panned = map_screen.wait_for(&centred, &json!(true), wait).await;
    let view = map_screen
        .eval("(() => { try { const s = window.iocScreen.screen; const p = s.panels.find(p => p.map); return JSON.stringify([s.panels.map(p => Object.keys(p)), p && p.map.getCenter(), p && p.map.getZoom(), s.focusAt, s.conn, location.href]); } catch (e) { return String(e); } })()")
        .await;
    map_screen
        .screenshot(&shots().join("wall-screen-0-focus.png"))
        .await;
    assert_eq!(
        panned,
        json!(true),
        "the map screen panned to the focus: {view}"
    );
    // The mosaic holds the cameras nearest the focus, nearest first, as the API orders them.
    let (_, _, near) = fetch(
        &demo,
        &format!("/api/v1/cameras/near?lon={lon}&lat={lat}&radius_m=2000&limit=9"),
        &operator,
    )
    .await;
    let near: Value = serde_json::from_slice(&near).unwrap();
    let want: Vec<Value> = near["cameras"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].clone())
        .collect();
    assert_eq!(
        want.len(),
        9,
        "nine cameras within 2 km of the focus: {near}"
    );
    let shown = cam_screen
        .wait_for(
            "JSON.stringify(window.iocScreen.tiles().filter(t => t.el.closest('.panel-mosaic')).map(t => t.id))",
            &json!(serde_json::to_string(&want).unwrap()),
            wait,
        )
        .await;
    assert_eq!(
        shown,
        json!(serde_json::to_string(&want).unwrap()),
        "the mosaic filled with the nearest cameras"
    );
    let banner = cam_screen
        .eval("document.querySelector('.panel-mosaic .focus-banner').textContent")
        .await;
    assert!(
        banner.as_str().unwrap().contains("Cháy chợ Vị Thanh"),
        "{banner}"
    );
    map_screen
        .screenshot(&shots().join("wall-screen-0-focus.png"))
        .await;
    cam_screen
        .screenshot(&shots().join("wall-screen-1-focus.png"))
        .await;

    // --- An edit reaches the open screens, and keeps the focus.
    let (s, v) = put(&demo, &path, &operator, &layout(2)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["focus"]["label"], "Cháy chợ Vị Thanh", "{v}");
    let four = cam_screen
        .wait_for(
            "document.querySelectorAll('.panel-mosaic .mosaic > *').length",
            &json!(4),
            wait,
        )
        .await;
    assert_eq!(four, json!(4), "the mosaic became 2×2 on the open screen");

    // --- Releasing the focus, then closing every tile, frees the viewer slots.
    let r = reqwest::Client::new()
        .delete(demo.url(&format!("{path}/focus")))
        .bearer_auth(&operator)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let back = cam_screen
        .wait_for(
            "window.iocScreen.tiles().filter(t => t.mode === 'live').length",
            &json!(1),
            wait,
        )
        .await;
    let notes = cam_screen
        .eval(
            "JSON.stringify(window.iocScreen.tiles().map(t => [t.id, t.mode, t.note, t.liveNote]))",
        )
        .await;
    assert_eq!(
        back,
        json!(1),
        "the layout's own cameras are back, one live: {notes}"
    );
    cam_screen
        .eval("window.iocScreen.tiles().forEach(t => t.close())")
        .await;
    let deadline = tokio::time::Instant::now() + wait;
    while live_viewers(&demo).await > 0.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "live viewers left after every tile closed: {}",
            live_viewers(&demo).await
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // The focus and the edits are in the audit log.
    let (_, _, audit) = fetch(
        &demo,
        &format!("/api/v1/audit?target=layout:{LAYOUT}"),
        &token(auth::Role::Admin),
    )
    .await;
    let audit = String::from_utf8_lossy(&audit).to_string();
    for action in ["layout.edit", "wall.focus", "wall.release"] {
        assert!(audit.contains(action), "{action} audited: {audit}");
    }
    for page in [&mut map_screen, &mut cam_screen] {
        page.assert_policy_kept(&operator).await;
    }

    // --- The server goes away: every panel of both screens says so.
    drop(demo);
    for page in [&mut map_screen, &mut cam_screen] {
        let all = page
            .wait_for(
                "(() => { const p = [...document.querySelectorAll('.panel')]; return p.length > 0 && p.every(e => e.classList.contains('stale') && /Mất kết nối/.test(e.dataset.stale)); })()",
                &json!(true),
                wait,
            )
            .await;
        assert_eq!(all, json!(true), "a lost connection shown on every panel");
    }
    map_screen
        .screenshot(&shots().join("wall-screen-0-lost.png"))
        .await;
}
