//! The pages' login in headless Chromium. In the demo, one click per role signs in; against
//! a real OpenID provider (`oidc-provider` from npm), a person signs in there (authorization
//! code with PKCE) and comes back to the page asked for, signed in with the role the provider's
//! groups map to; the session is an HTTP-only cookie the page's scripts cannot read, renewed
//! before it ends; no address the browser asks for carries a token (its network log);
//! signing out ends the session here and at the provider; an account with no IOC role is
//! told so.

mod common;

use std::time::Duration;

use common::browser::{Browser, Page};
use common::oidc::{config, login_config, sign_in_at_provider, Key, Provider};
use common::*;
use serde_json::{json, Value};

fn shots() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn demo_env() -> Vec<(String, String)> {
    vec![
        ("IOC_AUTH__SECRET".to_string(), SECRET.to_string()),
        ("IOC_DEMO__REPORT_EVERY_S".to_string(), "0".to_string()),
        ("IOC_DEMO__CAMERAS".to_string(), "false".to_string()),
        ("IOC_DEMO__BACKFILL_HOURS".to_string(), "0".to_string()),
    ]
}

/// `what` JavaScript says about the session, from the page itself.
const SESSION: &str = "fetch('/auth/session').then(r => r.json()).then(j => JSON.stringify(j))";

async fn session(page: &mut Page) -> Value {
    let v = page
        .call(
            "Runtime.evaluate",
            json!({"expression": SESSION, "awaitPromise": true, "returnByValue": true}),
        )
        .await;
    serde_json::from_str(v["result"]["value"].as_str().unwrap_or("null")).unwrap()
}

/// Asserts that no address the browser asked for carries a token (a JWT's header starts
/// `eyJ`) or anything else: the websocket goes with the session cookie alone.
fn no_token_in(urls: &[String]) {
    assert!(!urls.is_empty(), "the network log is empty");
    for u in urls {
        assert!(
            !u.contains("eyJ") && !u.contains("access_token") && !u.contains("token="),
            "a token in {u}"
        );
        if u.starts_with("ws") {
            assert!(
                u.ends_with("/ws"),
                "the websocket's address carries nothing: {u}"
            );
        }
    }
    assert!(
        urls.iter().any(|u| u.starts_with("ws")),
        "a websocket was opened: {urls:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_signs_in_with_one_click_per_role_and_out_again() {
    let mut ioc = Ioc::start(&["demo"], &demo_env());
    ioc.ready().await;
    let browser = Browser::start().await;
    let mut page = Page::open(&browser).await;
    page.watch_csp().await;
    page.watch_network().await;
    page.goto(&ioc.url("/leader")).await;
    // Not signed in: the login box offers the demo's role buttons.
    let sso = page
        .wait_for(
            "(a => a && !a.hidden && !document.getElementById('login').hidden ? a.getAttribute('href') : null)(document.querySelector('#login a.sso'))",
            &json!("/auth/login?next=%2Fleader"),
            Duration::from_secs(20),
        )
        .await;
    assert_eq!(sso, json!("/auth/login?next=%2Fleader"));
    page.eval("document.querySelector('#login a.sso').click()")
        .await;
    let buttons = page
        .wait_for(
            "document.querySelectorAll('form[action=\"/auth/demo\"] button').length",
            &json!(6),
            Duration::from_secs(20),
        )
        .await;
    assert_eq!(buttons, json!(6), "one button per role a person has");
    page.screenshot(&shots().join("login-demo.png")).await;
    page.eval("[...document.querySelectorAll('button')].find(b => b.textContent.includes('Lãnh đạo')).click()")
        .await;
    // Back on the leaders' page, signed in as the leader: the province's figures come.
    let tiles = page
        .wait_for(
            "location.pathname === '/leader' && document.getElementById('login').hidden && document.querySelectorAll('#tiles .tile').length > 0",
            &json!(true),
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(
        tiles,
        json!(true),
        "the leaders' page after a one-click login: at {}, session {}, login box {}",
        page.eval("location.href").await,
        session(&mut page).await,
        page.eval("document.getElementById('login').hidden").await
    );
    let s = session(&mut page).await;
    assert_eq!(
        (&s["signed_in"], &s["role"]),
        (&json!(true), &json!("leader")),
        "{s}"
    );
    assert_eq!(
        page.eval("document.cookie").await,
        json!(""),
        "the session cookie is HTTP-only"
    );
    no_token_in(&page.network_log().await);
    assert_eq!(page.csp_violations().await, Some(vec![]));
    // Signing out: the session is gone and the login box is back.
    page.eval("document.getElementById('sign-out').click()")
        .await;
    let back = page
        .wait_for(
            "!!document.getElementById('login') && !document.getElementById('login').hidden",
            &json!(true),
            Duration::from_secs(20),
        )
        .await;
    assert_eq!(back, json!(true));
    let s = session(&mut page).await;
    assert_eq!(s["signed_in"], json!(false), "{s}");
}

fn users() -> Value {
    json!([
        {"id": "canbo-congan", "claims": {"groups": ["ioc-police"], "name": "Cán bộ công an"}},
        {"id": "canbo-dieuhanh", "claims": {"groups": ["staff", "ioc-operators"]}},
        {"id": "lanhdao-tinh", "claims": {"groups": ["ioc-leaders"]}},
        {"id": "chuyenvien-stnmt", "claims": {"groups": ["ioc-agency"], "agency": "hg-stnmt"}},
        {"id": "quantri", "claims": {"groups": ["ioc-admins"]}},
        {"id": "nhanvien-vanthu", "claims": {"groups": ["mail-users"]}},
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_signs_in_at_the_provider_stays_signed_in_and_signs_out_there() {
    let idp_port = free_port();
    let issuer = format!("http://127.0.0.1:{idp_port}");
    let dir = std::env::temp_dir().join(unique("login-ioc"));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("ioc.toml");
    let secret = "ioc-pages-secret-0123456789abcdef";
    std::fs::write(
        &cfg,
        config(&issuer, 300, 0) + &login_config("ioc-pages", secret, 3600),
    )
    .unwrap();
    let mut ioc = Ioc::start(&["demo", "--config", cfg.to_str().unwrap()], &demo_env());
    // Access tokens live 20 s: the page must renew its session to stay signed in.
    let clients = json!([{"client_id": "ioc-pages", "client_secret": secret, "claims": {},
        "redirect_uris": [ioc.url("/auth/callback")],
        "post_logout_redirect_uris": [ioc.url("/")]}]);
    let idp = Provider::start_at(idp_port, &[Key("a", "RS256")], 20, clients, users()).await;
    ioc.ready().await;

    let browser = Browser::start().await;
    let mut page = Page::open(&browser).await;
    page.watch_csp().await;
    page.watch_network().await;
    page.goto(&ioc.url("/cameras?unit=hg")).await;
    let label = page
        .wait_for(
            "(a => a && !a.hidden ? a.textContent : null)(document.querySelector('#login a.sso'))",
            &json!("Đăng nhập bằng tài khoản một cửa"),
            Duration::from_secs(20),
        )
        .await;
    assert_eq!(label, json!("Đăng nhập bằng tài khoản một cửa"));
    page.eval("document.querySelector('#login a.sso').click()")
        .await;
    sign_in_at_provider(&mut page, &idp, "canbo-congan", &ioc.url("/")).await;
    // Back where the person was going, signed in as police.
    let back = page
        .wait_for(
            "location.pathname + location.search === '/cameras?unit=hg' && document.getElementById('login').hidden && document.getElementById('conn').textContent",
            &json!("trực tuyến"),
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(
        back,
        json!("trực tuyến"),
        "the camera map after signing in: at {}, session {}, connection {}",
        page.eval("location.href").await,
        session(&mut page).await,
        page.eval("document.getElementById('conn') && document.getElementById('conn').textContent")
            .await
    );
    page.screenshot(&shots().join("login-provider-cameras.png"))
        .await;
    let first = session(&mut page).await;
    assert_eq!(
        (
            &first["signed_in"],
            &first["role"],
            &first["sub"],
            &first["renewable"]
        ),
        (
            &json!(true),
            &json!("police"),
            &json!("canbo-congan"),
            &json!(true)
        ),
        "{first}"
    );
    assert_eq!(
        page.eval("document.cookie").await,
        json!(""),
        "the session cookie is HTTP-only"
    );

    // Renewed before it ends: after the first token's life the page is still signed in and
    // its feed still open.
    tokio::time::sleep(Duration::from_secs(22)).await;
    let later = session(&mut page).await;
    assert_eq!(later["signed_in"], json!(true), "{later}");
    assert!(
        later["exp"].as_i64() > first["exp"].as_i64(),
        "renewed: {first} then {later}"
    );
    let (s, _) = {
        let v = page
            .call(
                "Runtime.evaluate",
                json!({"expression": "fetch('/api/v1/layers/cameras/features', {headers: {'X-IOC-CSRF': '1'}}).then(r => r.status)", "awaitPromise": true, "returnByValue": true}),
            )
            .await;
        (v["result"]["value"].clone(), ())
    };
    assert_eq!(s, json!(200), "the API answers the renewed session");
    let urls = page.network_log().await;
    no_token_in(&urls);
    assert_eq!(page.csp_violations().await, Some(vec![]));

    // A write with the cookie but without the page's header is refused (another site's form).
    let v = page
        .call(
            "Runtime.evaluate",
            json!({"expression": "fetch('/api/v1/zones', {method: 'POST', body: '{}'}).then(r => r.status)", "awaitPromise": true, "returnByValue": true}),
        )
        .await;
    assert_eq!(v["result"]["value"], json!(403));

    // The page closed until its access token ran out (the cookie is gone): opened again, it
    // is signed in by the refresh token, without a new login.
    page.call(
        "Network.deleteCookies",
        json!({"name": "ioc_session", "url": ioc.url("/")}),
    )
    .await;
    page.goto(&ioc.url("/cameras?unit=hg")).await;
    let again = page
        .wait_for(
            "document.getElementById('login').hidden && document.getElementById('conn').textContent",
            &json!("trực tuyến"),
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(
        again,
        json!("trực tuyến"),
        "signed in again by the refresh token"
    );

    // Signing out goes through the provider's logout and back to ioc, signed out.
    page.eval("document.getElementById('sign-out').click()")
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut saw_provider = false;
    loop {
        let at = page.eval("location.href").await;
        let at = at.as_str().unwrap_or_default().to_string();
        if at.starts_with(&idp.issuer()) {
            saw_provider = true;
            // The provider asks to confirm.
            page.eval(
                "(b => b && b.click())(document.querySelector('button[autofocus], form button'))",
            )
            .await;
        } else if saw_provider && at.starts_with(&ioc.url("/")) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "logout stuck at {at}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let s = session(&mut page).await;
    assert_eq!(s["signed_in"], json!(false), "{s}");

    // Each role signs in the same way and lands on its page with its role.
    for (who, role, page_path, ready) in [
        (
            "canbo-dieuhanh",
            "operator",
            "/",
            "document.getElementById('conn').textContent === 'đã kết nối'",
        ),
        (
            "lanhdao-tinh",
            "leader",
            "/leader",
            "document.querySelectorAll('#tiles .tile').length > 0",
        ),
        (
            "chuyenvien-stnmt",
            "agency",
            "/",
            "document.getElementById('conn').textContent === 'đã kết nối'",
        ),
        (
            "quantri",
            "admin",
            "/cameras",
            "document.getElementById('conn').textContent === 'trực tuyến'",
        ),
    ] {
        page.call("Network.clearBrowserCookies", json!({})).await;
        page.goto(&ioc.url(&format!("/auth/login?next={page_path}")))
            .await;
        sign_in_at_provider(&mut page, &idp, who, &ioc.url("/")).await;
        let shown = page
            .wait_for(
                &format!("location.pathname === '{page_path}' && ({ready})"),
                &json!(true),
                Duration::from_secs(30),
            )
            .await;
        assert_eq!(
            shown,
            json!(true),
            "{who} ({role}) on {page_path}: {}",
            session(&mut page).await
        );
        let s = session(&mut page).await;
        assert_eq!((&s["sub"], &s["role"]), (&json!(who), &json!(role)), "{s}");
    }
    page.call("Network.clearBrowserCookies", json!({})).await;

    // An account the provider knows but with no IOC role is told so, and gets no session.
    page.goto(&ioc.url("/auth/login?next=/")).await;
    sign_in_at_provider(&mut page, &idp, "nhanvien-vanthu", &ioc.url("/")).await;
    let text = page
        .wait_for(
            "document.querySelector('h1') && document.querySelector('h1').textContent",
            &json!("Tài khoản chưa có quyền trên hệ thống IOC"),
            Duration::from_secs(20),
        )
        .await;
    assert_eq!(text, json!("Tài khoản chưa có quyền trên hệ thống IOC"));
    let body = page.eval("document.body.textContent").await;
    assert!(
        body.as_str()
            .unwrap_or_default()
            .contains("maps to no role"),
        "{body}"
    );
    page.screenshot(&shots().join("login-provider-no-role.png"))
        .await;
    let s = session(&mut page).await;
    assert_eq!(s["signed_in"], json!(false), "{s}");
}
