//! A basemap under the pages' unit polygons, from a local MBTiles file: the test paints a
//! raster of its own, turns it into MBTiles with GDAL (`gdal_translate -of MBTILES`, Debian's
//! gdal-bin, then `gdaladdo` for the zoom levels above it), and serves it with `ioc demo`
//! (`ui.basemap.kind = "mbtiles"`). The tiles come back at `/tiles/{z}/{x}/{y}.png` in XYZ
//! numbering with caching headers, a place the file does not cover is 404, and in headless
//! Chromium the wall's screen and the camera map draw the tiles under the polygons with the
//! configured attribution, nothing refused by the Content-Security-Policy; station data grown
//! old is marked on the panels that show it. Screenshot under `target/tmp/screenshots/`.

mod common;

use std::process::Command;
use std::time::Duration;

use common::browser::{Browser, Page};
use common::*;
use serde_json::json;

/// The XYZ tile holding `lon`, `lat` at zoom `z`.
fn tile_of(lon: f64, lat: f64, z: u8) -> (u32, u32) {
    let n = f64::from(1u32 << z);
    let x = ((lon + 180.0) / 360.0 * n).floor();
    let r = lat.to_radians();
    let y = ((1.0 - (r.tan() + 1.0 / r.cos()).ln() / std::f64::consts::PI) / 2.0 * n).floor();
    (x as u32, y as u32)
}

/// A 512×512 checkerboard in orange and blue as a binary PPM, which GDAL reads.
fn checkerboard() -> Vec<u8> {
    let (w, h) = (512, 512);
    let mut out = format!("P6\n{w} {h}\n255\n").into_bytes();
    for y in 0..h {
        for x in 0..w {
            let px: [u8; 3] = if (x / 64 + y / 64) % 2 == 0 {
                [230, 120, 30]
            } else {
                [40, 90, 160]
            };
            out.extend_from_slice(&px);
        }
    }
    out
}

fn run(tool: &str, args: &[&str]) {
    let out = Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {tool}: {e}"));
    assert!(
        out.status.success(),
        "{tool} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn an_mbtiles_basemap_is_served_and_drawn_under_the_units() {
    let translate = required_env(
        "IOC_TEST_GDAL_TRANSLATE",
        "GDAL's gdal_translate (gdal-bin)",
    );
    let addo = required_env("IOC_TEST_GDALADDO", "GDAL's gdaladdo (gdal-bin)");
    let dir = std::env::temp_dir().join(unique("basemap"));
    std::fs::create_dir_all(&dir).unwrap();
    let raster = dir.join("raster.ppm");
    std::fs::write(&raster, checkerboard()).unwrap();
    let mbtiles = dir.join("hau-giang.mbtiles");
    // Georeferenced over Hậu Giang, in WGS 84; the driver reprojects to Web Mercator.
    run(
        &translate,
        &[
            "-q",
            "-of",
            "MBTILES",
            "-a_srs",
            "EPSG:4326",
            "-a_ullr",
            "105.3",
            "10.1",
            "106.0",
            "9.5",
            raster.to_str().unwrap(),
            mbtiles.to_str().unwrap(),
        ],
    );
    run(
        &addo,
        &["-q", mbtiles.to_str().unwrap(), "2", "4", "8", "16"],
    );

    let env: Vec<(String, String)> = [
        ("IOC_AUTH__SECRET", SECRET.to_string()),
        ("IOC_DEMO__CAMERAS", "false".into()),
        // Readings once an hour: the stations' data stays as it is while the page is read.
        ("IOC_DEMO__INTERVAL_S", "3600".into()),
        ("IOC_UI__BASEMAP__KIND", "mbtiles".into()),
        ("IOC_UI__BASEMAP__PATH", mbtiles.to_str().unwrap().into()),
        (
            "IOC_UI__BASEMAP__ATTRIBUTION",
            "Nền bản đồ thử nghiệm (GDAL)".into(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let mut demo = Ioc::start(&["demo"], &env);
    demo.ready().await;

    // --- The tiles, in XYZ numbering, with caching headers.
    let client = reqwest::Client::new();
    let mut found = None;
    for z in 0..=12u8 {
        let (x, y) = tile_of(105.65, 9.8, z);
        let r = client
            .get(demo.url(&format!("/tiles/{z}/{x}/{y}.png")))
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            found = Some((z, r));
            break;
        }
        assert_eq!(r.status(), 404, "z {z}: a tile or nothing");
    }
    let (z, r) = found.expect("a tile over Hậu Giang at some zoom");
    assert_eq!(r.headers()["content-type"], "image/png");
    let cache = r.headers()["cache-control"].to_str().unwrap().to_string();
    assert!(cache.contains("max-age="), "{cache}");
    let png = r.bytes().await.unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
    // The same zoom over Hà Nội: outside the file, 404.
    let (x, y) = tile_of(105.85, 21.03, z);
    let r = client
        .get(demo.url(&format!("/tiles/{z}/{x}/{y}.png")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // A tile outside the world is a mistake, said as one.
    let r = client
        .get(demo.url("/tiles/3/9/1.png"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // --- The pages draw it under the polygons, with the attribution.
    let operator = token(auth::Role::Operator);
    let browser = Browser::start().await;
    let mut page = Page::open(&browser).await;
    page.viewport(1920, 1080).await;
    page.watch_csp().await;
    let url = format!(
        "{}?screen=0#token={operator}",
        demo.url("/wall/tuong-chinh")
    );
    page.call("Page.navigate", json!({"url": url})).await;
    let wait = Duration::from_secs(40);
    let tiles = page
        .wait_for(
            "document.querySelectorAll('.panel-map img.leaflet-tile-loaded').length > 0 && window.iocScreen.data.units.size > 0",
            &json!(true),
            wait,
        )
        .await;
    assert_eq!(tiles, json!(true), "basemap tiles loaded on the wall's map");
    let from = page
        .eval("[...document.querySelectorAll('.panel-map img.leaflet-tile-loaded')].every(i => new URL(i.src).pathname.startsWith('/tiles/'))")
        .await;
    assert_eq!(from, json!(true), "the tiles come from this server");
    let attribution = page
        .eval("document.querySelector('.panel-map .leaflet-control-attribution').textContent")
        .await;
    assert!(
        attribution
            .as_str()
            .unwrap()
            .contains("Nền bản đồ thử nghiệm (GDAL)"),
        "{attribution}"
    );
    // The polygons are drawn over the tiles (the overlay pane is above the tile pane).
    let above = page
        .wait_for("(() => { const m = document.querySelector('.panel-map'); const t = m.querySelector('.leaflet-tile-pane'), o = m.querySelector('.leaflet-overlay-pane'); return Number(getComputedStyle(o).zIndex) > Number(getComputedStyle(t).zIndex) && o.querySelectorAll('path, canvas').length > 0; })()", &json!(true), wait)
        .await;
    let panes = page
        .eval("(() => { const m = document.querySelector('.panel-map'); return JSON.stringify([...m.querySelectorAll('.leaflet-pane')].map(p => [p.className, getComputedStyle(p).zIndex, p.children.length])); })()")
        .await;
    assert_eq!(
        above,
        json!(true),
        "unit polygons over the basemap: {panes}"
    );
    let dir_shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&dir_shots).unwrap();
    // Zoomed to where the file has tiles, for the screenshot.
    page.eval(&format!(
        "window.iocScreen.screen.panels.find(p => p.map).map.setView([9.8, 105.65], {z})"
    ))
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    page.screenshot(&dir_shots.join("basemap-wall.png")).await;
    assert_eq!(page.csp_violations().await, Some(vec![]));

    // Station data grown old says so on the map and the KPI strip, not on the others.
    page.eval("window.iocScreen.data.stations.forEach(f => { f.properties.updated = new Date(Date.now() - 40 * 60e3).toISOString(); })")
        .await;
    let stale = page
        .wait_for(
            "['map', 'kpi'].every(k => /Số liệu trạm cũ: 40 phút/.test(document.querySelector('.panel-' + k).dataset.stale)) && \
             !document.querySelector('.panel-alerts').classList.contains('stale')",
            &json!(true),
            Duration::from_secs(5),
        )
        .await;
    assert_eq!(
        stale,
        json!(true),
        "old station data is marked on the panels that show it"
    );

    // The camera map draws it too.
    let police = token(auth::Role::Police);
    page.call(
        "Page.navigate",
        json!({"url": format!("{}#token={police}", demo.url("/cameras"))}),
    )
    .await;
    page.watch_csp().await;
    let tiles = page
        .wait_for(
            "document.querySelectorAll('#map img.leaflet-tile-loaded').length > 0",
            &json!(true),
            wait,
        )
        .await;
    assert_eq!(tiles, json!(true), "basemap tiles on the camera map");
    assert_eq!(page.csp_violations().await, Some(vec![]));
    let _ = std::fs::remove_dir_all(&dir);
}
