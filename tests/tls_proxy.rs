//! The pages, REST, websocket and camera streams through nginx with TLS, as
//! `ops/nginx/ioc.conf` sets it up (that very file, with the test's ports and certificate):
//! plain HTTP is sent to HTTPS; pages carry ioc's headers and nginx's HSTS; a person signs in
//! (the demo's one click) and the wall's websocket runs over `wss://` on the Secure,
//! HTTP-only session cookie; a snapshot, the first live MJPEG frame and an HLS playlist and
//! segment come through unbuffered; the audit log names the client behind the proxy.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::browser::{Browser, Page};
use common::*;
use serde_json::{json, Value};

const TRAFFIC_CAM: &str = "tg-cam-gt-mt-01";

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("running a tool");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a certificate for 127.0.0.1 signed by it, made with openssl: (ca.crt, crt, key).
fn certificates(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let openssl = required_env("IOC_TEST_OPENSSL", "openssl (for the test's certificates)");
    let p = |f: &str| dir.join(f);
    run(Command::new(&openssl)
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=IOC test CA",
        ])
        .arg("-keyout")
        .arg(p("ca.key"))
        .arg("-out")
        .arg(p("ca.crt")));
    run(Command::new(&openssl)
        .args([
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
        ])
        .arg("-keyout")
        .arg(p("ioc.key"))
        .arg("-out")
        .arg(p("ioc.csr")));
    std::fs::write(
        p("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(Command::new(&openssl)
        .args(["x509", "-req", "-days", "2", "-CAcreateserial"])
        .arg("-in")
        .arg(p("ioc.csr"))
        .arg("-CA")
        .arg(p("ca.crt"))
        .arg("-CAkey")
        .arg(p("ca.key"))
        .arg("-extfile")
        .arg(p("ext.cnf"))
        .arg("-out")
        .arg(p("ioc.crt")));
    (p("ca.crt"), p("ioc.crt"), p("ioc.key"))
}

/// nginx running `ops/nginx/ioc.conf` in front of `upstream`; stopped on drop.
struct Nginx {
    child: Child,
    tls: u16,
    plain: u16,
}

impl Nginx {
    /// nginx on `tls` (HTTPS) and a free port (plain HTTP, sent to HTTPS).
    fn start(dir: &Path, tls: u16, upstream: u16, crt: &Path, key: &Path) -> Nginx {
        let nginx = required_env("IOC_TEST_NGINX", "nginx (Debian's nginx-light)");
        let plain = free_port();
        let site =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/ops/nginx/ioc.conf"))
                .unwrap();
        let mut site = site;
        for (from, to) in [
            (
                "listen 443 ssl http2;".to_string(),
                format!("listen 127.0.0.1:{tls} ssl http2;"),
            ),
            ("listen [::]:443 ssl http2;".into(), String::new()),
            ("listen 80;".into(), format!("listen 127.0.0.1:{plain};")),
            ("listen [::]:80;".into(), String::new()),
            (
                "server 127.0.0.1:8080 ".into(),
                format!("server 127.0.0.1:{upstream} "),
            ),
            ("/etc/ioc/tls/ioc.crt".into(), crt.display().to_string()),
            ("/etc/ioc/tls/ioc.key".into(), key.display().to_string()),
        ] {
            assert!(
                site.contains(&from),
                "ops/nginx/ioc.conf no longer has {from:?}"
            );
            site = site.replace(&from, &to);
        }
        std::fs::write(dir.join("ioc.conf"), site).unwrap();
        for t in ["body", "proxy", "fastcgi", "uwsgi", "scgi"] {
            std::fs::create_dir_all(dir.join(t)).unwrap();
        }
        let d = dir.display();
        let main = format!(
            "daemon off;\nuser root;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n  include /etc/nginx/mime.types;\n  access_log {d}/access.log;\n\
               client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n\
               uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  include {d}/ioc.conf;\n}}\n"
        );
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, main).unwrap();
        // `nginx -t` first: a configuration nginx refuses is this file's fault, said plainly.
        run(Command::new(&nginx)
            .arg("-t")
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&conf));
        let child = Command::new(&nginx)
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting nginx");
        Nginx { child, tls, plain }
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.tls)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_feeds_and_camera_streams_work_through_nginx_over_tls() {
    let dir = std::env::temp_dir().join(unique("tls-proxy"));
    std::fs::create_dir_all(&dir).unwrap();
    let (ca, crt, key) = certificates(&dir);
    let mut env = vec![
        ("IOC_AUTH__SECRET".to_string(), SECRET.to_string()),
        ("IOC_DEMO__REPORT_EVERY_S".to_string(), "0".to_string()),
        ("IOC_DEMO__BACKFILL_HOURS".to_string(), "0".to_string()),
        ("IOC_VIDEO__SNAPSHOT_EVERY_S".to_string(), "1".to_string()),
    ];
    // ioc's public address is nginx's, chosen before either starts.
    let public_port = free_port();
    env.push((
        "IOC_PUBLIC_URL".into(),
        format!("https://127.0.0.1:{public_port}"),
    ));
    let mut ioc = Ioc::start(&["demo"], &env);
    ioc.ready().await;
    let nginx = Nginx::start(&dir, public_port, ioc.port, &crt, &key);

    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(&ca).unwrap()).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    // nginx is up when it answers.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let page = loop {
        if let Ok(r) = client.get(nginx.url("/")).send().await {
            break r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "nginx not answering"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(page.status(), 200);
    let h = page.headers();
    assert!(
        h.get("strict-transport-security").is_some(),
        "HSTS from nginx"
    );
    assert!(
        h.get("content-security-policy")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("script-src 'self'")),
        "ioc's CSP passes through"
    );
    let r = client
        .get(format!("http://127.0.0.1:{}/cameras", nginx.plain))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 301);
    assert_eq!(
        r.headers()["location"].to_str().unwrap(),
        "https://127.0.0.1/cameras"
    );

    // --- Camera images through the proxy: a snapshot, the first live frame, HLS.
    let op = token_with("dieu-hanh-tls", auth::Role::Operator, None, &[]);
    let get = |path: String| client.get(nginx.url(&path)).bearer_auth(&op).send();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let r = get(format!("/api/v1/cameras/{TRAFFIC_CAM}/snapshot.jpg"))
            .await
            .unwrap();
        if r.status() == 200 {
            assert_eq!(r.headers()["content-type"], "image/jpeg");
            let b = r.bytes().await.unwrap();
            assert_eq!(&b[..2], &[0xff, 0xd8], "a JPEG");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no snapshot through nginx: {}",
            r.status()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mut live = get(format!("/api/v1/cameras/{TRAFFIC_CAM}/live.mjpeg"))
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    assert!(live.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("multipart/x-mixed-replace"));
    let mut seen = Vec::new();
    let first = tokio::time::timeout(Duration::from_secs(10), async {
        while !seen.windows(2).any(|w| w == [0xff, 0xd8]) {
            match live.chunk().await.unwrap() {
                Some(c) => seen.extend_from_slice(&c),
                None => break,
            }
        }
    })
    .await;
    assert!(
        first.is_ok(),
        "the first live frame came through unbuffered within 10 s"
    );
    drop(live);
    let r = get(format!("/api/v1/cameras/{TRAFFIC_CAM}/hls/live.m3u8"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let playlist = r.text().await.unwrap();
    let seg = playlist
        .lines()
        .find(|l| l.ends_with(".ts"))
        .expect("a segment")
        .to_string();
    let r = get(format!("/api/v1/cameras/{TRAFFIC_CAM}/hls/{seg}"))
        .await
        .unwrap();
    assert_eq!(
        (
            r.status().as_u16(),
            r.headers()["content-type"].to_str().unwrap()
        ),
        (200, "video/mp2t")
    );
    let b = r.bytes().await.unwrap();
    assert!(!b.is_empty() && b[0] == 0x47, "MPEG-TS");

    // --- A write through the proxy: the audit log names the client behind it.
    let zone = square_zone("Vùng qua proxy", 105.47, 9.78);
    let r = client
        .post(nginx.url("/api/v1/zones"))
        .bearer_auth(&op)
        .json(&zone)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let admin = token_with("quan-tri-tls", auth::Role::Admin, None, &[]);
    let log: Value = client
        .get(nginx.url("/api/v1/audit?action=zone.create"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let remote = log["entries"][0]["remote"].as_str().unwrap_or_default();
    assert!(remote.contains("x-forwarded-for: 127.0.0.1"), "{log}");

    // --- The wall in Chromium over HTTPS: one-click sign-in, the feed over wss:// on the
    // Secure session cookie.
    let browser = Browser::start_with(&["--ignore-certificate-errors"]).await;
    let mut page = Page::open(&browser).await;
    page.watch_csp().await;
    page.watch_network().await;
    page.goto(&nginx.url("/auth/demo?next=/")).await;
    page.wait_for(
        "document.querySelectorAll('form[action=\"/auth/demo\"] button').length > 0",
        &json!(true),
        Duration::from_secs(20),
    )
    .await;
    page.eval("[...document.querySelectorAll('button')].find(b => b.textContent.includes('Điều hành')).click()")
        .await;
    let connected = page
        .wait_for(
            "location.pathname === '/' && document.getElementById('conn').textContent === 'đã kết nối' && /[1-9]\\d* trạm/.test(document.getElementById('counts').textContent)",
            &json!(true),
            Duration::from_secs(40),
        )
        .await;
    assert_eq!(
        connected,
        json!(true),
        "the wall live through nginx: {} / {}",
        page.eval("document.getElementById('conn').textContent")
            .await,
        page.eval("document.getElementById('counts').textContent")
            .await
    );
    let cookies = page.call("Network.getCookies", json!({})).await;
    let session = cookies["cookies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "ioc_session")
        .cloned()
        .expect("the session cookie");
    assert_eq!(
        (
            &session["secure"],
            &session["httpOnly"],
            &session["sameSite"]
        ),
        (&json!(true), &json!(true), &json!("Strict")),
        "{session}"
    );
    let urls = page.network_log().await;
    let sockets: Vec<&String> = urls.iter().filter(|u| u.starts_with("ws")).collect();
    assert!(!sockets.is_empty(), "{urls:#?}");
    for u in &sockets {
        assert!(u.starts_with("wss://") && u.ends_with("/ws"), "{u}");
    }
    assert!(
        urls.iter().all(|u| !u.contains("eyJ")),
        "no token in any address: {urls:#?}"
    );
    assert_eq!(page.csp_violations().await, Some(vec![]));
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    page.screenshot(&shots.join("wall-through-nginx.png")).await;
}
