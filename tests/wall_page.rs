//! The wall page in a real browser: headless Chromium, driven over the DevTools protocol,
//! loads `ioc demo`'s page with an operator token, connects over the websocket and draws every
//! fixture station and unit; without a token it asks for one. The test waits (in real time,
//! polling the DOM) for what a person at the wall would see.

mod common;

use std::time::Duration;

use common::browser::{Browser, Page};
use common::*;
use serde_json::{json, Value};

fn text(id: &str) -> String {
    format!("(document.getElementById('{id}') || {{}}).textContent")
}

#[tokio::test]
async fn the_wall_page_draws_every_station_and_unit_live() {
    let env = vec![
        ("IOC_AUTH__SECRET".to_string(), SECRET.to_string()),
        ("IOC_DEMO__INTERVAL_S".to_string(), "1".to_string()),
        ("IOC_VIDEO__MAX_VIEWERS".to_string(), "1".to_string()),
    ];
    let mut demo = Ioc::start(&["demo"], &env);
    demo.ready().await;
    let browser = Browser::start().await;
    let mut page = Page::open(&browser).await;
    page.watch_csp().await;
    page.watch_websockets().await;

    let operator = token(auth::Role::Operator);
    let url = format!("{}#token={operator}", demo.url("/"));
    page.call("Page.navigate", json!({"url": url})).await;
    let wait = Duration::from_secs(30);
    let counts = page
        .wait_for(&text("counts"), &json!("21 trạm · 35 đơn vị"), wait)
        .await;
    assert_eq!(
        counts,
        json!("21 trạm · 35 đơn vị"),
        "every fixture station and unit is drawn"
    );
    // The demo's cameras an operator may see: 61 police and 16 traffic in Hậu Giang, 8 in Mỹ
    // Tho; the 9 school cameras are not on an operator's map.
    let cams = page
        .wait_for("window.iocWall.cameras.size", &json!(85), wait)
        .await;
    assert_eq!(
        cams,
        json!(85),
        "every camera the operator may see is drawn"
    );
    assert_eq!(
        page.eval(&text("conn")).await,
        json!("đã kết nối"),
        "connected over the websocket"
    );
    assert_eq!(
        page.eval(&text("mode")).await,
        json!("DEMO: dữ liệu mô phỏng"),
        "the page says the data is simulated"
    );
    assert_eq!(
        page.eval("location.hash").await,
        json!(""),
        "the token is taken out of the address bar"
    );

    // Live: deltas keep arriving and the ticker shows values with units.
    let deltas = page.eval("window.iocWall.deltas").await.as_u64().unwrap();
    let more = page
        .wait_for(
            &format!("window.iocWall.deltas > {deltas}"),
            &json!(true),
            wait,
        )
        .await;
    assert_eq!(more, json!(true), "the page keeps receiving deltas");
    let ticker = page
        .wait_for(
            "document.querySelectorAll('#ticker li').length > 0",
            &json!(true),
            wait,
        )
        .await;
    assert_eq!(ticker, json!(true));
    let first = page.eval(&text("ticker")).await;
    assert!(
        first.as_str().unwrap().contains("µg/m³") || first.as_str().unwrap().contains("‰"),
        "{first}"
    );

    // Rivers are drawn with their salinity reach.
    let rivers = page
        .wait_for(
            "[...window.iocWall.areas.keys()].filter(k => k.startsWith('river:')).length",
            &json!(8),
            wait,
        )
        .await;
    assert_eq!(
        rivers,
        json!(8),
        "one line per river of the fixture stations"
    );

    // An incident's nearest cameras, as an alert's "Camera gần nhất" lists them: in Vị Thanh
    // the town's security and traffic cameras, nearest first, with distance and state.
    page.eval("window.nearTest = document.createElement('li'); document.getElementById('alerts').append(window.nearTest); window.iocWall.nearCameras(window.nearTest, [105.470, 9.784])")
        .await;
    let near = page
        .wait_for(
            "(window.nearTest.querySelector('.near') || {}).textContent.includes(' m · ')",
            &json!(true),
            wait,
        )
        .await;
    assert_eq!(
        near,
        json!(true),
        "{}",
        page.eval("window.nearTest.textContent").await
    );
    let listed = page
        .eval("window.nearTest.querySelector('.near').innerHTML")
        .await;
    assert!(listed.as_str().unwrap().contains("Vị Thanh"), "{listed}");

    page.assert_policy_kept(&operator).await;
    // The API describes itself.
    let spec: Value = reqwest::get(demo.url("/api/v1/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(spec["openapi"], "3.0.3");
    assert!(spec["paths"]["/api/v1/stations/{id}/series"].is_object());

    // The demo keeps no database, and the page says so.
    let note = page
        .wait_for(
            "document.getElementById('history-note').textContent.includes('bộ nhớ')",
            &json!(true),
            wait,
        )
        .await;
    assert_eq!(note, json!(true), "the page says history is only in memory");
    // A station's popup charts its last 24 hours from the series API, once the demo's
    // simulated past has reached the store: live readings come after it, so a live one in
    // the store means the past is all there.
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let from = (chrono::Utc::now() - chrono::Duration::minutes(2))
            .to_rfc3339()
            .replace('+', "%2B");
        let s = get_json(
            &demo,
            &format!("/api/v1/stations/hg-vt-sal-01/series?param=salinity&from={from}"),
            auth::Role::Operator,
        )
        .await;
        if s["points"].as_array().is_some_and(|p| !p.is_empty()) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the simulated history never reached the store: {s}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // The hourly VN_AQI recomputed from history equals the live one, station by station.
    let aq = get_json(
        &demo,
        "/api/v1/layers/air_quality/features",
        auth::Role::Operator,
    )
    .await;
    let mut compared = 0;
    for f in aq["features"].as_array().unwrap() {
        let live = &f["properties"]["aqi"];
        let (Some(period), Some(value)) = (live["period"].as_str(), live["value"].as_u64()) else {
            continue;
        };
        let id = f["id"].as_str().unwrap().trim_start_matches("station:");
        let t0 = chrono::DateTime::parse_from_rfc3339(period).unwrap();
        let q = format!(
            "/api/v1/stations/{id}/aqi?from={}&to={}",
            t0.to_rfc3339(),
            (t0 + chrono::Duration::hours(1)).to_rfc3339()
        )
        .replace('+', "%2B");
        let past = get_json(&demo, &q, auth::Role::Leader).await;
        assert_eq!(
            past["hours"][0]["aqi"].as_u64(),
            Some(value),
            "{id} at {period}: live {live} vs history {past}"
        );
        compared += 1;
    }
    assert!(compared >= 5, "VN_AQI compared for {compared} stations");
    page.eval("window.iocWall.stations.get('station:hg-vt-sal-01').openPopup()")
        .await;
    let chart = page
        .wait_for(
            "!!document.querySelector('.leaflet-popup .chart-box svg polyline')",
            &json!(true),
            wait,
        )
        .await;
    assert_eq!(
        chart,
        json!(true),
        "the popup draws the station's history: {}",
        page.eval("String(document.querySelector('.leaflet-popup') && document.querySelector('.leaflet-popup').innerHTML)").await
    );
    let forecast = page
        .wait_for(
            "!!document.querySelector('.leaflet-popup .chart-box svg polyline.forecast')",
            &json!(true),
            wait,
        )
        .await;
    assert_eq!(
        forecast,
        json!(true),
        "and the next 24 h of its salinity forecast"
    );

    // A camera's popup shows its latest snapshot, and "Xem trực tiếp" plays the MJPEG live
    // view through a media ticket (an <img> cannot send the token). This demo allows one
    // viewer per camera: while the page watches, another viewer is refused; closing the popup
    // frees the slot.
    let online = "(() => { const e = [...window.iocWall.cameras].find(([, m]) => \
                  m.camera.state === 'online' && m.camera.last_snapshot); return e ? e[0] : null })()";
    page.wait_for(&format!("{online} !== null"), &json!(true), wait)
        .await;
    let cam = page.eval(online).await;
    let cam = cam
        .as_str()
        .expect("an online camera with a snapshot on the map")
        .to_string();
    page.eval("window.iocWall.map.closePopup()").await;
    page.eval(&format!("window.iocWall.openCamera({cam:?})"))
        .await;
    let button = page
        .wait_for(
            "!!document.querySelector('.leaflet-popup button.live-btn')",
            &json!(true),
            wait,
        )
        .await;
    assert_eq!(
        button,
        json!(true),
        "the popup shows the snapshot and a live-view button: {}",
        page.eval("String(document.querySelector('.leaflet-popup') && document.querySelector('.leaflet-popup').innerText)").await
    );
    page.eval("document.querySelector('.leaflet-popup button.live-btn').click()")
        .await;
    let live_img = "(() => { const i = document.querySelector('.leaflet-popup img'); \
                    return !!i && i.src.includes('live.mjpeg?ticket=') && i.naturalWidth > 0 })()";
    let playing = page.wait_for(live_img, &json!(true), wait).await;
    assert_eq!(
        playing,
        json!(true),
        "the popup plays the live view: {}",
        page.eval("String(document.querySelector('.leaflet-popup') && document.querySelector('.leaflet-popup').innerText)").await
    );
    let local = cam.trim_start_matches("camera:");
    let live_path = format!("/api/v1/cameras/{local}/live.mjpeg");
    let (status, _, _) = fetch(&demo, &live_path, &token(auth::Role::Operator)).await;
    assert_eq!(status, 429, "the page holds the camera's one viewer slot");
    page.eval("window.iocWall.map.closePopup()").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _, _) = fetch(&demo, &live_path, &token(auth::Role::Operator)).await;
        if status == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "closing the popup did not free the viewer slot (still {status})"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Replay the last ten minutes at 3600x: the page shows the past, then goes back to live.
    page.eval(
        "document.getElementById('replay-from').value = new Date(Date.now() + 7 * 3600e3 - 600e3).toISOString().slice(0, 16); \
         document.getElementById('replay-speed').value = '3600'; \
         document.getElementById('replay-btn').click()",
    )
    .await;
    assert_eq!(
        page.eval(&text("mode")).await,
        json!("PHÁT LẠI"),
        "the page says it shows the past"
    );
    let done = page
        .wait_for("window.iocWall.replay.state", &json!("done"), wait)
        .await;
    assert_eq!(
        done,
        json!("done"),
        "{}",
        page.eval(&text("replay-status")).await
    );
    let frames = page.eval("window.iocWall.replay.frames").await;
    assert!(
        frames.as_u64().unwrap() > 0,
        "the replay drew past readings: {frames} ({}; {})",
        page.eval(&text("replay-status")).await,
        page.eval("JSON.stringify(window.iocWall.replay)").await
    );
    assert_eq!(
        page.wait_for(&text("mode"), &json!("DEMO: dữ liệu mô phỏng"), wait)
            .await,
        json!("DEMO: dữ liệu mô phỏng"),
        "back to live after the replay"
    );
    assert_eq!(
        page.wait_for(&text("counts"), &json!("21 trạm · 35 đơn vị"), wait)
            .await,
        json!("21 trạm · 35 đơn vị")
    );

    // Without a token the page asks for one and shows no data.
    page.eval("sessionStorage.clear()").await;
    page.call("Page.navigate", json!({"url": demo.url("/")}))
        .await;
    let login = page
        .wait_for(
            "getComputedStyle(document.getElementById('login')).display",
            &json!("flex"),
            wait,
        )
        .await;
    assert_eq!(login, json!("flex"), "the token form is shown");
    assert_eq!(
        page.eval(&text("counts")).await,
        json!(""),
        "no data without a token"
    );
}
