//! The wall page in a real browser: headless Chromium loads `ioc demo`'s page with an
//! operator token, connects over the websocket and draws every fixture station and unit.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

fn chromium(url: &str, extra: &[&str]) -> String {
    let bin = required_env(
        "IOC_TEST_CHROMIUM",
        "headless Chromium (Debian package chromium)",
    );
    let profile = std::env::temp_dir().join(unique("chromium-profile"));
    let out = Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
        ])
        .args([
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--window-size=1600,900", "--virtual-time-budget=10000"])
        .args(extra)
        .arg(url)
        .output()
        .expect("running chromium");
    let _ = std::fs::remove_dir_all(profile);
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn text_of(dom: &str, id: &str) -> String {
    let start = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("#{id} missing from the page"));
    let open = start + dom[start..].find('>').unwrap() + 1;
    let close = open + dom[open..].find('<').unwrap();
    dom[open..close].to_string()
}

#[tokio::test]
async fn the_wall_page_draws_every_station_and_unit_live() {
    let env = vec![
        ("IOC_AUTH__SECRET".to_string(), SECRET.to_string()),
        ("IOC_DEMO__INTERVAL_S".to_string(), "1".to_string()),
    ];
    let mut demo = Ioc::start(&["demo"], &env);
    demo.ready().await;
    tokio::time::sleep(Duration::from_secs(2)).await; // a round of simulated readings
    let url = format!("{}#token={}", demo.url("/"), token(auth::Role::Operator));

    let dom = tokio::task::spawn_blocking(move || chromium(&url, &["--dump-dom"]))
        .await
        .unwrap();
    assert_eq!(
        text_of(&dom, "conn"),
        "đã kết nối",
        "the page connected over the websocket"
    );
    assert_eq!(
        text_of(&dom, "counts"),
        "21 trạm · 35 đơn vị",
        "every fixture station and unit is drawn"
    );
    assert_eq!(
        text_of(&dom, "mode"),
        "DEMO: dữ liệu mô phỏng",
        "the page says the data is simulated"
    );
    assert!(
        dom.contains("µg/m³") || dom.contains("‰"),
        "the ticker shows live values with units"
    );

    // Without a token the page asks for one instead of showing data.
    let bare = demo.url("/");
    let dom = tokio::task::spawn_blocking(move || chromium(&bare, &["--dump-dom"]))
        .await
        .unwrap();
    assert_eq!(text_of(&dom, "counts"), "", "no data without a token");
    assert!(
        dom.contains("id=\"login\" style=\"display: flex;\""),
        "the token form is shown"
    );
}
