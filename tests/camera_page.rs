//! The police camera map in a real browser: headless Chromium at a laptop's 1366×768 over
//! `ioc demo` (the fixture cameras behind the fixture RTSP server): a search typed without
//! diacritics ("nga bay") finds the Ngã Bảy cameras, four of them open in a 2×2 view with
//! fresh snapshots and then live MJPEG, the health panel shows the picked camera and the
//! caller's own views from the audit log, and closing the tiles frees every live viewer slot
//! (the worker's viewer gauge back to zero); opened at an incident, the nearest cameras fill
//! the view. The officer signs in at a real OpenID provider (oidc-provider). Screenshots are
//! saved under
//! `target/tmp/screenshots/` for a person to look at.

mod common;

use std::time::Duration;

use common::browser::{Browser, Page};
use common::oidc::SsoDemo;
use common::*;
use serde_json::json;

fn shots() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The worker's live viewers, from `/metrics` (zero before the first live view).
async fn live_viewers(demo: &Ioc) -> f64 {
    let (_, _, body) = fetch(demo, "/metrics", &token(auth::Role::Admin)).await;
    let text = String::from_utf8_lossy(&body);
    text.lines()
        .find(|l| l.starts_with("ioc_video_live_viewers"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn police_find_cameras_without_diacritics_and_watch_four_live() {
    let env = vec![
        ("IOC_AUTH__SECRET".to_string(), SECRET.to_string()),
        ("IOC_DEMO__INTERVAL_S".to_string(), "5".to_string()),
        ("IOC_VIDEO__SNAPSHOT_EVERY_S".to_string(), "1".to_string()),
    ];
    // The officer signs in at the province's provider, as a person does.
    let sso = SsoDemo::start(
        &env,
        json!([{"id": "canh-sat-1", "claims": {"groups": ["ioc-police"]}}]),
    )
    .await;
    let demo = &sso.ioc;
    let browser = Browser::start().await;
    let mut page = Page::open(&browser).await;
    page.viewport(1366, 768).await;
    // Anything the page's Content-Security-Policy refuses is counted.
    page.watch_csp().await;
    page.watch_websockets().await;
    sso.sign_in(&mut page, "canh-sat-1", "/cameras").await;
    let wait = Duration::from_secs(40);
    let listed = page
        .wait_for(
            "window.iocCameras && window.iocCameras.cams.size > 20",
            &json!(true),
            wait,
        )
        .await;
    assert_eq!(listed, json!(true), "the cameras layer reached the page");
    assert_eq!(
        page.eval("location.pathname + location.search + location.hash")
            .await,
        json!("/cameras"),
        "back where the officer was going, nothing in the URL"
    );
    let school = page
        .eval("[...window.iocCameras.cams.values()].some(c => (c.p.group || '').startsWith('school:'))")
        .await;
    assert_eq!(school, json!(false), "police see no school camera");

    // Typed without diacritics, "nga bay" finds the cameras of Ngã Bảy and nothing else.
    page.eval("const q = document.getElementById('q'); q.value = 'nga bay'; q.dispatchEvent(new Event('input'))")
        .await;
    let found = page
        .eval("JSON.stringify([...document.querySelectorAll('#list button b')].map(b => b.textContent))")
        .await;
    let names: Vec<String> = serde_json::from_str(found.as_str().unwrap()).unwrap();
    let in_name = names.iter().filter(|n| n.contains("Ngã Bảy")).count();
    assert_eq!(
        in_name, 16,
        "all 12 security and 4 traffic cameras of Ngã Bảy: {names:?}"
    );
    let all_match = page
        .eval("window.iocCameras.listed.every(id => { const c = window.iocCameras.cams.get(id); return (c.p.name + ' ' + (c.p.unit_names || []).join(' ')).includes('Ngã Bảy'); })")
        .await;
    assert_eq!(
        all_match,
        json!(true),
        "nothing but Ngã Bảy (by name or ward): {names:?}"
    );

    // Four of them in the 2×2 view, each with a fresh snapshot.
    page.eval("[...document.querySelectorAll('#list button')].filter(b => b.textContent.includes('Ngã Bảy')).slice(0, 4).forEach(b => b.click())")
        .await;
    let fresh = page
        .wait_for(
            "[...document.querySelectorAll('#grid .cam-tile')].filter(t => t.querySelector('img').naturalWidth > 0 && t.dataset.state === 'online').length",
            &json!(4),
            wait,
        )
        .await;
    assert_eq!(fresh, json!(4), "four tiles with pictures");
    let health = page
        .wait_for(
            "document.getElementById('h-views').textContent.includes('Xem ảnh')",
            &json!(true),
            wait,
        )
        .await;
    assert_eq!(
        health,
        json!(true),
        "the caller's own views, from the audit log"
    );
    let today = page
        .eval("[...document.querySelectorAll('#h-facts dt')].find(d => d.textContent === 'Trực tuyến hôm nay').nextElementSibling.textContent")
        .await;
    assert!(
        today.as_str().is_some_and(|t| t.ends_with("%)")),
        "the camera's time online today: {today}"
    );
    page.screenshot(&shots().join("cameras-2x2-snapshots.png"))
        .await;

    // Live MJPEG in every tile: four viewers at the worker.
    page.eval("document.querySelectorAll('#grid .cam-live').forEach(b => b.click())")
        .await;
    let live = page
        .wait_for(
            "[...document.querySelectorAll('#grid .cam-tile.live img')].filter(i => i.src.includes('live.mjpeg') && i.naturalWidth > 0).length",
            &json!(4),
            wait,
        )
        .await;
    assert_eq!(live, json!(4), "four live MJPEG tiles");
    let deadline = tokio::time::Instant::now() + wait;
    while live_viewers(&demo).await < 4.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the worker never counted 4 viewers"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    page.screenshot(&shots().join("cameras-2x2-live.png")).await;
    page.assert_policy_kept("eyJ").await;

    // Closing the tiles frees the worker's viewer slots.
    page.eval("document.querySelectorAll('#grid .cam-close').forEach(b => b.click())")
        .await;
    let deadline = tokio::time::Instant::now() + wait;
    while live_viewers(&demo).await > 0.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "viewer slots still held"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        page.eval("document.querySelectorAll('#grid .cam-tile').length")
            .await,
        json!(0)
    );

    // Opened at an incident (`?near=`, as from an alert): its nearest cameras fill the view,
    // the nearest first.
    let at = fixtures::cameras::cameras("rtsp://unused")
        .into_iter()
        .find(|c| c.id.as_str() == "hg-cam-an-nb-01")
        .expect("a Ngã Bảy camera");
    let (lon, lat) = (at.position.lon, at.position.lat);
    let url = format!("{}?near={lon},{lat}", demo.url("/cameras"));
    page.call("Page.navigate", json!({"url": url})).await;
    let opened = page
        .wait_for(
            "document.querySelectorAll('#grid .cam-tile').length",
            &json!(4),
            wait,
        )
        .await;
    assert_eq!(opened, json!(4), "the four nearest cameras");
    assert_eq!(
        page.eval("document.querySelector('#grid .cam-tile').dataset.camera")
            .await,
        json!("hg-cam-an-nb-01")
    );
    page.screenshot(&shots().join("cameras-near-incident.png"))
        .await;

    // A tablet in landscape: no sideways scrolling.
    page.viewport(1024, 768).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        page.eval("document.documentElement.scrollWidth <= 1024")
            .await,
        json!(true)
    );
    page.screenshot(&shots().join("cameras-1024x768.png")).await;
}
