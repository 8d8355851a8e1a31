//! The security review's findings (issue "Hardening"), each over a real connection against a
//! real `ioc demo` (release or debug build, in-memory bus): memory before authentication,
//! unbounded websocket replies, slow and idle connections, sensitive reports leaking through
//! alerts, identities in report histories, input that panicked handlers, tokens, headers.
//! Each test fails on the code before the fix.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use futures::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

fn auth() -> auth::Authenticator {
    auth::Authenticator::new(SECRET.as_bytes()).unwrap()
}

fn token_as(sub: &str, role: auth::Role, agency: Option<&str>) -> String {
    auth().issue(sub, role, agency, chrono::Duration::hours(1))
}

/// `ioc demo` without simulated citizens or cameras (so nothing else moves), with `env`
/// added and, if given, a config file.
async fn demo(extra: &[(&str, &str)], config: Option<&str>) -> Ioc {
    let mut env = vec![
        ("IOC_AUTH__SECRET".to_string(), SECRET.to_string()),
        ("IOC_DEMO__REPORT_EVERY_S".to_string(), "0".to_string()),
        ("IOC_DEMO__CAMERAS".to_string(), "false".to_string()),
        ("IOC_DEMO__BACKFILL_HOURS".to_string(), "0".to_string()),
    ];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let mut args = vec!["demo".to_string()];
    if let Some(c) = config {
        let path = std::env::temp_dir().join(format!("{}.toml", unique("hardening")));
        std::fs::write(&path, c).unwrap();
        args.push("--config".into());
        args.push(path.to_string_lossy().into_owned());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut ioc = Ioc::start(&args, &env);
    ioc.ready().await;
    ioc
}

/// Resident memory of the process, bytes.
fn rss(ioc: &Ioc) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", ioc.child.id())).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb * 1024
}

const MIB: u64 = 1024 * 1024;

/// Sends a request of `head` and a body of `body_len` bytes of `a&`, as fast as the server
/// takes it, and returns the status line the server answered with (the server may answer
/// and close before the body is all sent).
fn raw_post(port: u16, head: &str, body_len: usize) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
    let req = format!("{head}Content-Length: {body_len}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let chunk = "a&".repeat(32 * 1024);
    let mut sent = 0;
    while sent < body_len {
        let n = chunk.len().min(body_len - sent);
        if s.write_all(&chunk.as_bytes()[..n]).is_err() {
            break; // answered and closed early: what we want
        }
        sent += n;
    }
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

/// Item 1: a form body is not split into pairs before the caller is known, and never into
/// more than a bounded number of them.
#[tokio::test]
async fn report_forms_cost_memory_in_proportion_to_their_size_and_nothing_before_auth() {
    let ioc = demo(&[], None).await;
    let port = ioc.port;
    let before = rss(&ioc);
    let size = 16 * 1024 * 1024;
    let head = "POST /open311/v2/requests.json HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n";
    let anonymous: Vec<_> = (0..3)
        .map(|_| std::thread::spawn(move || raw_post(port, head, size)))
        .collect();
    for t in anonymous {
        let status = t.join().unwrap();
        assert!(status.contains(" 401 "), "no token: {status}");
    }
    let citizen = token_as("citizen-flood", auth::Role::Citizen, None);
    let authed_head = format!("{head}Authorization: Bearer {citizen}\r\n");
    let authed: Vec<_> = (0..3)
        .map(|_| {
            let h = authed_head.clone();
            std::thread::spawn(move || raw_post(port, &h, size))
        })
        .collect();
    for t in authed {
        let status = t.join().unwrap();
        assert!(status.contains(" 400 "), "too many fields: {status}");
    }
    let grown = rss(&ioc).saturating_sub(before);
    // Three authenticated 16 MB bodies may be buffered at once (the body limit); nothing
    // like the 1.3 GB of splitting them into pairs, and nothing at all for the anonymous.
    assert!(
        grown < 120 * MIB,
        "RSS grew by {} MiB under six 16 MB `a&a&…` bodies",
        grown / MIB
    );
    // The reason for the anonymous refusal says how to send a token.
    let r = reqwest::Client::new()
        .post(ioc.url("/open311/v2/requests.json"))
        .form(&[
            ("service_code", "infra.lighting"),
            ("api_key", "not-a-token"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body[0]["description"], "token refused: the token is malformed",
        "our words, not the library's"
    );
}

/// Item 2: replies count against one per-connection budget; a client that does not read
/// is closed with 1008 instead of growing the server. Sensors get no socket at all.
#[tokio::test]
async fn a_websocket_client_that_does_not_read_is_closed_at_its_budget() {
    let ioc = demo(&[("IOC_FEEDS__MAX_OUTBOX_BYTES", "1048576")], None).await;
    let before = rss(&ioc);
    let mut ws = ws_connect(&ioc, &token(auth::Role::Operator)).await;
    let big = "x".repeat(60 * 1024);
    let ping = json!({"op": "ping", "t": big}).to_string();
    let mut sent = 0;
    for _ in 0..10_000 {
        let send = tokio::time::timeout(
            Duration::from_secs(5),
            ws.send(Message::Text(ping.clone().into())),
        )
        .await;
        match send {
            Ok(Ok(())) => sent += 1,
            _ => break, // the server stopped reading us, or closed
        }
    }
    assert!(sent > 30, "sent {sent} pings");
    let grown = rss(&ioc).saturating_sub(before);
    assert!(
        grown < 100 * MIB,
        "RSS grew by {} MiB for one socket's unread pongs",
        grown / MIB
    );
    // Now read: some pongs, then the policy close with its reason.
    let close = next_close(&mut ws, Duration::from_secs(30)).await;
    assert_eq!(close.code, CloseCode::Policy);
    assert!(close.reason.contains("outbound budget"), "{}", close.reason);

    let sensor = token(auth::Role::Sensor);
    let refused = tokio_tungstenite::connect_async(ws_request(
        &format!("ws://127.0.0.1:{}/ws", ioc.port),
        &sensor,
    ))
    .await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 403),
        other => panic!("a sensor got a websocket: {other:?}"),
    }
}

/// Item 14: a socket does not outlive its token.
#[tokio::test]
async fn a_websocket_is_closed_when_its_token_expires() {
    let ioc = demo(&[], None).await;
    let t = auth().issue(
        "short",
        auth::Role::Operator,
        None,
        chrono::Duration::seconds(3),
    );
    let mut ws = ws_connect(&ioc, &t).await;
    let sub = json!({"op": "subscribe", "id": "live", "layers": ["salinity"]});
    ws_send(&mut ws, &sub).await;
    // Closed within 15 s of a 3 s token.
    let close = next_close(&mut ws, Duration::from_secs(15)).await;
    assert_eq!(u16::from(close.code), 4001);
    assert!(close.reason.contains("token expired"));
}

/// Item 3: half-sent requests are cut at the header deadline, a flood of idle sockets from
/// one address is capped, and `/healthz` answers others all along.
#[tokio::test]
async fn slow_and_idle_connections_are_cut_and_health_stays_answered() {
    let ioc = demo(
        &[
            ("IOC_HTTP__HEADER_READ_TIMEOUT_S", "2"),
            ("IOC_HTTP__MAX_CONNECTIONS_PER_CLIENT", "200"),
        ],
        None,
    )
    .await;
    let server: SocketAddr = format!("127.0.0.1:{}", ioc.port).parse().unwrap();
    // 1,100 connections from 127.0.0.2, each with a request's first header line only.
    let mut flood = Vec::new();
    for _ in 0..1100 {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let mut s = sock.connect(server).await.unwrap();
        use tokio::io::AsyncWriteExt;
        let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await;
        flood.push(s);
    }
    let health = || async {
        let started = Instant::now();
        let r = reqwest::Client::new()
            .get(ioc.url("/healthz"))
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        (
            r.map(|r| r.status().as_u16()).unwrap_or(0),
            started.elapsed(),
        )
    };
    let (status, took) = health().await;
    assert_eq!(status, 200, "healthz under 1,100 half-sent requests");
    assert!(took < Duration::from_secs(5));
    // Past the header deadline every one of them is closed by the server.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut open = 0;
    for s in &mut flood {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 256];
        match tokio::time::timeout(Duration::from_millis(50), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {}
            Ok(Ok(_)) => {} // an answer (408) and then the close
            Err(_) => open += 1,
        }
    }
    assert_eq!(
        open, 0,
        "{open} half-sent requests still open after the header deadline"
    );
    let (status, _) = health().await;
    assert_eq!(status, 200);
}

/// Items 4, 6 and 15: an overdue public-order report raises an alert only those who may see
/// the report see, without its text; histories show actors only as the viewer may know them;
/// the reporter is a role and a subject.
#[tokio::test]
async fn sensitive_reports_do_not_leak_through_alerts_or_histories() {
    let ioc = demo(
        &[("IOC_CORE__RULES__TICK_MS", "300")],
        Some("[[reports.routing.deadlines]]\nservice = \"order.security\"\nhours = 0\n[[reports.routing.deadlines]]\nservice = \"infra.lighting\"\nhours = 48\n"),
    )
    .await;
    let citizen = token_as("an", auth::Role::Citizen, None);
    let post = |token: String, fields: Vec<(&'static str, &'static str)>| {
        let url = ioc.url("/open311/v2/requests.json");
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .bearer_auth(token)
                .form(&fields)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let v: Value = r.json().await.unwrap();
            assert_eq!(status, 201, "{v}");
            v[0]["service_request_id"].as_str().unwrap().to_string()
        }
    };
    let secret_text = "Nhóm thanh niên tụ tập gây rối trước nhà số 12";
    let order = post(
        citizen.clone(),
        vec![
            ("service_code", "order.security"),
            ("lat", "9.7841"),
            ("long", "105.4701"),
            ("description", secret_text),
        ],
    )
    .await;
    let operator = token(auth::Role::Operator);
    let env_agency = token_as("stnmt-1", auth::Role::Agency, Some("hg-stnmt"));
    let police = token_as("ca-1", auth::Role::Police, Some("hg-ca"));
    let alerts = |t: String| {
        let url = ioc.url("/api/v1/alerts?rule=report_overdue");
        async move {
            let v: Value = reqwest::Client::new()
                .get(url)
                .bearer_auth(t)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v["alerts"].as_array().cloned().unwrap_or_default()
        }
    };
    let about = |list: &[Value]| -> Option<Value> {
        list.iter()
            .find(|a| a["entity"] == format!("report:{order}"))
            .cloned()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let seen = loop {
        if let Some(a) = about(&alerts(operator.clone()).await) {
            break a;
        }
        assert!(Instant::now() < deadline, "no overdue alert for {order}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert!(
        !seen.to_string().contains("tụ tập"),
        "the alert carries the report's text: {seen}"
    );
    assert!(
        about(&alerts(police.clone()).await).is_some(),
        "police see it"
    );
    assert_eq!(
        about(&alerts(env_agency.clone()).await),
        None,
        "the environment department reads a public-order alert"
    );
    // Nor in the websocket's alert layer.
    let mut ws = ws_connect(&ioc, &env_agency).await;
    let sub = json!({"op": "subscribe", "id": "alerts", "layers": ["alerts"]});
    ws_send(&mut ws, &sub).await;
    let snap = next_op(&mut ws, "snapshot", Duration::from_secs(10))
        .await
        .expect("a snapshot");
    assert!(
        !snap.to_string().contains(&order),
        "the agency's alert snapshot holds the sensitive report's alert"
    );
    // The report itself: 404 to the agency and to a school token with the citizen's sub.
    let get = |t: String, id: String| {
        let url = ioc.url(&format!("/api/v1/reports/{id}"));
        async move {
            let r = reqwest::Client::new()
                .get(url)
                .bearer_auth(t)
                .send()
                .await
                .unwrap();
            let s = r.status().as_u16();
            (s, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    assert_eq!(get(env_agency.clone(), order.clone()).await.0, 404);
    let school_an = token_as("an", auth::Role::School, Some("lx-th-a"));
    assert_eq!(
        get(school_an, order.clone()).await.0,
        404,
        "same sub, other role"
    );
    let (s, mine) = get(citizen.clone(), order.clone()).await;
    assert_eq!(s, 200);
    assert_eq!(mine["history"][0]["by"], "reporter");
    assert_eq!(mine["history"][0]["yours"], true);
    assert_eq!(mine["history"][0]["role"], "citizen");

    // A report filed by police is recorded as filed by police.
    let by_police = post(
        police.clone(),
        vec![
            ("service_code", "infra.lighting"),
            ("lat", "9.7841"),
            ("long", "105.4701"),
            ("description", "Đèn đường hỏng"),
        ],
    )
    .await;
    let (_, r) = get(operator.clone(), by_police.clone()).await;
    assert_eq!(r["history"][0]["role"], "police");
    // Another citizen sees neither the reporter's subject nor the staff's.
    let lighting = post(
        citizen.clone(),
        vec![
            ("service_code", "infra.lighting"),
            ("lat", "9.7842"),
            ("long", "105.4702"),
            ("description", "Đèn đường chập chờn"),
        ],
    )
    .await;
    let step = json!({"action": "start", "note": "giao tổ điện 3, anh Tuấn"});
    let hg_agency = {
        let (_, r) = get(operator.clone(), lighting.clone()).await;
        r["agency"]
            .as_str()
            .expect("lighting in Vị Thanh is routed")
            .to_string()
    };
    let staff = token_as("nv-dien-07", auth::Role::Agency, Some(&hg_agency));
    let r = reqwest::Client::new()
        .post(ioc.url(&format!("/api/v1/reports/{lighting}/transitions")))
        .bearer_auth(&staff)
        .json(&step)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let other = token_as("binh", auth::Role::Citizen, None);
    let (_, seen_by_other) = get(other, lighting.clone()).await;
    let text = seen_by_other["history"].to_string();
    for secret in ["citizen:an", "\"an\"", "nv-dien-07", "anh Tuấn"] {
        assert!(
            !text.contains(secret),
            "{secret} shown to another citizen: {text}"
        );
    }
    assert_eq!(seen_by_other["history"][0]["by"], "reporter");
    assert!(seen_by_other["history"][0].get("yours").is_none());
    let (_, seen_by_centre) = get(operator, lighting).await;
    assert!(seen_by_centre["history"].to_string().contains("nv-dien-07"));
}

/// Items 11, 12 and 13: what XML forbids is refused, links come from the configured address
/// and carry no markup, and inputs that panicked handlers are answered 400 naming the field.
#[tokio::test]
async fn bad_input_is_refused_by_field_and_never_drops_the_connection() {
    let ioc = demo(&[("IOC_PUBLIC_URL", "https://ioc.example.gov.vn")], None).await;
    let citizen = token_as("an", auth::Role::Citizen, None);
    let post = |fields: Vec<(&'static str, String)>| {
        let url = ioc.url("/open311/v2/requests.json");
        let t = citizen.clone();
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .bearer_auth(t)
                .header("Host", "attacker.example")
                .form(&fields)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let base = || {
        vec![
            ("service_code", "infra.lighting".to_string()),
            ("lat", "9.7841".to_string()),
            ("long", "105.4701".to_string()),
        ]
    };
    let mut f = base();
    f.push(("description", "đèn\u{FFFE}hỏng".into()));
    let (s, e) = post(f).await;
    assert_eq!(s, 400);
    assert!(
        e[0]["description"]
            .as_str()
            .unwrap()
            .starts_with("description:"),
        "{e}"
    );
    let mut f = base();
    f.push((
        "media_url",
        "http://x/\"><img src=x onerror=alert(1)>".into(),
    ));
    let (s, e) = post(f).await;
    assert_eq!(s, 400);
    assert!(
        e[0]["description"]
            .as_str()
            .unwrap()
            .starts_with("media_url:"),
        "{e}"
    );

    // A photo's link starts with the configured public address, whatever the Host header.
    let v = post_photo(&ioc, &citizen, fixtures_jpeg(), Some("attacker.example")).await;
    let link = v[0]["media_url"].as_str().unwrap();
    assert!(
        link.starts_with("https://ioc.example.gov.vn/open311/v2/media/"),
        "{link}"
    );

    // Inputs that panicked a handler: a 400 naming the field, on a connection that stays.
    let op = token(auth::Role::Operator);
    let client = reqwest::Client::new();
    for (path, field) in [
        (
            "/api/v1/stations/hg-vt-sal-01/series?param=salinity&step=1%C3%A9",
            "step",
        ),
        (
            "/api/v1/stations/hg-vt-sal-01/series?param=salinity&step=%E2%82%AC",
            "step",
        ),
        ("/api/v1/replay?speed=1e-300", "speed"),
    ] {
        let r = client
            .get(ioc.url(path))
            .bearer_auth(&op)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{path}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["field"], field, "{path}: {v}");
    }
}

/// Files a lighting report with `photo` (as multipart, optionally with a forged `Host`) and
/// returns the report as Open311 answers it.
async fn post_photo(ioc: &Ioc, token: &str, photo: Vec<u8>, host: Option<&str>) -> Value {
    let form = reqwest::multipart::Form::new()
        .text("service_code", "infra.lighting")
        .text("lat", "9.7841")
        .text("long", "105.4701")
        .part(
            "media",
            reqwest::multipart::Part::bytes(photo).file_name("photo.jpg"),
        );
    let mut req = reqwest::Client::new()
        .post(ioc.url("/open311/v2/requests.json"))
        .bearer_auth(token)
        .multipart(form);
    if let Some(h) = host {
        req = req.header("Host", h);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()[0]["service_request_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, _, body) = fetch(ioc, &format!("/open311/v2/requests/{id}.json"), token).await;
    serde_json::from_slice(&body).unwrap()
}

/// A small structurally sound JPEG.
fn fixtures_jpeg() -> Vec<u8> {
    let seg = |marker: u8, body: &[u8]| {
        let mut s = vec![0xFF, marker];
        s.extend_from_slice(&((body.len() + 2) as u16).to_be_bytes());
        s.extend_from_slice(body);
        s
    };
    let mut b = vec![0xFF, 0xD8];
    b.extend(seg(0xE0, b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0"));
    b.extend(seg(0xDB, &[0u8; 65]));
    b.extend(seg(0xDA, &[1, 1, 0, 0, 63, 0]));
    b.extend_from_slice(&[0x12, 0x34, 0xFF, 0xD9]);
    b
}

/// Items 17 and 18: tokens only from the header on REST, refusals without internals, a
/// citizen cannot probe alert ids, and every answer carries the security headers.
#[tokio::test]
async fn tokens_headers_and_probing() {
    let ioc = demo(&[], None).await;
    let op = token(auth::Role::Operator);
    let client = reqwest::Client::new();
    // A token in the URL of a REST request is not taken, even with an Upgrade header.
    let r = client
        .get(ioc.url(&format!("/api/v1/layers?access_token={op}")))
        .header("Upgrade", "websocket")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Tokens from the future, for a century, or of nobody.
    let now = chrono::Utc::now().timestamp();
    let claims = |sub: &str, iat: i64, exp: i64| auth::Claims {
        sub: sub.into(),
        role: auth::Role::Operator,
        agency: None,
        grants: vec![],
        stations: vec![],
        iat,
        exp,
    };
    for (c, why) in [
        (claims("op", now + 3600, now + 7200), "future"),
        (claims("op", now, now + 100 * 365 * 86_400), "lifetime"),
        (claims("", now, now + 600), "subject"),
    ] {
        let r = client
            .get(ioc.url("/api/v1/layers"))
            .bearer_auth(auth().sign(&c))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{why}");
        let v: Value = r.json().await.unwrap();
        assert!(v["reason"].as_str().unwrap().contains(why), "{v}");
    }
    // A citizen learns nothing of which alert ids exist.
    let citizen = token(auth::Role::Citizen);
    for id in ["0193aaaa0000700080000000000000aa", "nonexistent"] {
        let r = client
            .post(ioc.url(&format!("/api/v1/alerts/{id}/acknowledge")))
            .bearer_auth(&citizen)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{id}");
    }
    // Security headers on pages, API answers and errors.
    for path in ["/", "/wall.js", "/api/v1/layers", "/healthz", "/nope"] {
        let r = client
            .get(ioc.url(path))
            .bearer_auth(&op)
            .send()
            .await
            .unwrap();
        let h = r.headers();
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("frame-ancestors 'none'") && !csp.contains("unsafe-inline"),
            "{path}: {csp}"
        );
    }
    // The page itself has no inline script or style for the policy to refuse.
    let page = client
        .get(ioc.url("/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !page.contains("<style") && !page.contains("style="),
        "inline styles in the page"
    );
    // Every script tag loads a file (classic or module); none carries code.
    let tags: Vec<&str> = page
        .split("<script")
        .skip(1)
        .map(|t| t.split('>').next().unwrap_or(""))
        .collect();
    assert!(!tags.is_empty());
    assert!(
        tags.iter().all(|t| t.contains(" src=\"/")),
        "inline scripts in the page: {tags:?}"
    );
}

/// Item 5: a sensor token names the stations it may report for, and a reading stamped ahead
/// of its arrival does not hold the station's latest value against the genuine ones.
#[tokio::test]
async fn sensors_report_only_for_their_stations_and_future_stamps_do_not_win() {
    let ioc = demo(&[("IOC_DEMO__INTERVAL_S", "3600")], None).await;
    let now = chrono::Utc::now();
    let device = auth().sign(&auth::Claims {
        sub: "probe-vt-01".into(),
        role: auth::Role::Sensor,
        agency: None,
        grants: vec![],
        stations: vec!["hg-vt-sal-01".into()],
        iat: now.timestamp(),
        exp: now.timestamp() + 600,
    });
    let push = |body: Value| {
        let url = ioc.url("/ingest/v1/readings");
        let t = device.clone();
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .bearer_auth(t)
                .json(&body)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let reading = |station: &str, at: chrono::DateTime<chrono::Utc>, value: f64| json!({"station": station, "parameter": "salinity", "ts": at.to_rfc3339(), "value": value, "unit": "‰"});
    // Another province's station: refused by item, with the reason.
    let (s, v) = push(json!([
        reading("tg-vam-kenh-sal", now, 35.0),
        reading("hg-vt-sal-01", now, 1.0)
    ]))
    .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["accepted"], 1, "{v}");
    assert_eq!(v["rejected"][0]["index"], 0);
    assert_eq!(v["rejected"][0]["errors"][0]["field"], "station");
    assert!(
        v["rejected"][0]["errors"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("does not name station"),
        "{v}"
    );
    // Its own station, stamped 290 s ahead, then genuine readings on time.
    let (s, v) = push(json!([reading(
        "hg-vt-sal-01",
        now + chrono::Duration::seconds(290),
        35.0
    )]))
    .await;
    assert_eq!(s, 202, "{v}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 1..=3 {
        let (s, v) = push(json!([reading(
            "hg-vt-sal-01",
            chrono::Utc::now() + chrono::Duration::seconds(i),
            1.2
        )]))
        .await;
        assert_eq!(s, 202, "{v}");
    }
    if let Err(latest) =
        wait_for_salinity(&ioc, "station:hg-vt-sal-01", 1.2, Duration::from_secs(10)).await
    {
        panic!("the future-stamped 35‰ still holds the station: {latest:?}");
    }
}

/// Item 8: checking a large zone runs off the async workers: `/healthz` keeps answering
/// while two 19,999-vertex zones are checked.
#[tokio::test]
async fn large_zones_are_checked_without_stalling_the_server() {
    let ioc = demo(&[], None).await;
    let n = 19_998;
    let ring: Vec<[f64; 2]> = (0..=n)
        .map(|i| {
            let a = std::f64::consts::TAU * (i % n) as f64 / n as f64;
            [105.47 + 0.05 * a.cos(), 9.78 + 0.05 * a.sin()]
        })
        .collect();
    let zone = json!({"type": "Feature", "properties": {"name": "Vùng lớn"},
                      "geometry": {"type": "Polygon", "coordinates": [ring]}});
    let op = token(auth::Role::Operator);
    let posts: Vec<_> = (0..2)
        .map(|_| {
            let (url, op, zone) = (ioc.url("/api/v1/zones"), op.clone(), zone.clone());
            tokio::spawn(async move {
                let r = reqwest::Client::new()
                    .post(url)
                    .bearer_auth(op)
                    .json(&zone)
                    .send()
                    .await
                    .unwrap();
                (r.status().as_u16(), r.json::<Value>().await.unwrap())
            })
        })
        .collect();
    let mut worst = Duration::ZERO;
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        let started = Instant::now();
        let r = reqwest::Client::new()
            .get(ioc.url("/healthz"))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        worst = worst.max(started.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        worst < Duration::from_secs(1),
        "/healthz took {worst:?} while zones were checked"
    );
    for p in posts {
        let (s, v) = p.await.unwrap();
        // A debug build may not finish the check within the budget: then it says so.
        assert!(
            s == 201 || (s == 503 && v["field"] == "geometry"),
            "{s} {v}"
        );
    }
    // An open ring is refused, naming the geometry.
    let open = json!({"type": "Feature", "properties": {"name": "Hở"},
        "geometry": {"type": "Polygon", "coordinates": [[[105.4, 9.7], [105.5, 9.7], [105.5, 9.8], [105.4, 9.8]]]}});
    let r = reqwest::Client::new()
        .post(ioc.url("/api/v1/zones"))
        .bearer_auth(&op)
        .json(&open)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["field"], "geometry");
}

/// Item 9: the same report twice is one report, and a reporter's writes are rate-limited
/// with 429 and Retry-After.
#[tokio::test]
async fn repeated_and_flooded_reports_are_answered_without_filling_the_queue() {
    let ioc = demo(&[], None).await;
    let citizen = token_as("spam", auth::Role::Citizen, None);
    let post = |description: String| {
        let url = ioc.url("/open311/v2/requests.json");
        let t = citizen.clone();
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .bearer_auth(t)
                .form(&[
                    ("service_code", "infra.lighting"),
                    ("lat", "9.7841"),
                    ("long", "105.4701"),
                    ("description", description.as_str()),
                ])
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let retry = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
            (status, retry, r.json::<Value>().await.unwrap())
        }
    };
    let (s, _, first) = post("Đèn đường hỏng".into()).await;
    assert_eq!(s, 201, "{first}");
    let (s, _, again) = post("  đèn đường   HỎNG ".into()).await;
    assert_eq!(s, 200, "{again}");
    assert_eq!(
        again[0]["service_request_id"],
        first[0]["service_request_id"]
    );
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for i in 0..40 {
        let (s, retry, _) = post(format!("Đèn đường số {i} hỏng")).await;
        statuses.push(s);
        if s == 429 {
            retry_after = retry;
        }
    }
    let made = statuses.iter().filter(|s| **s == 201).count();
    assert!(
        made < 25,
        "{made} reports from one citizen in a burst: {statuses:?}"
    );
    assert!(statuses.contains(&429));
    let secs: u64 = retry_after.expect("Retry-After on 429").parse().unwrap();
    assert!((1..=60).contains(&secs));
    // The queue holds what was made, not the flood.
    let v = get_json(
        &ioc,
        "/api/v1/reports?state=all&limit=5000",
        auth::Role::Operator,
    )
    .await;
    let mine = v["reports"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            r["description"]
                .as_str()
                .unwrap_or("")
                .starts_with("Đèn đường")
        })
        .count();
    assert!(mine <= 21, "{mine} reports in the queue");
}

/// Items 10 and 16: a flood of refused camera accesses is folded (visible, counted) and
/// cannot push out real rows; a stream URL with credentials anywhere is refused unechoed.
#[tokio::test]
async fn refusal_floods_are_folded_and_stream_credentials_refused_anywhere() {
    let ioc = demo(&[], None).await;
    let admin = token(auth::Role::Admin);
    let client = reqwest::Client::new();
    let camera = |url: &str| {
        json!({
            "name": "Cổng Công an tỉnh", "position": {"lon": 105.469, "lat": 9.785},
            "agency": "hg-ca", "purpose": "public_order", "group": "police",
            "stream": {"url": url}
        })
    };
    // A real, allowed change first.
    let r = client
        .put(ioc.url("/api/v1/cameras/hard-cam-1"))
        .bearer_auth(&admin)
        .json(&camera("rtsp://10.1.2.3/Streaming/Channels/101"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    // Credentials hidden in the path or query are refused, never echoed.
    for url in [
        "rtsp://10.1.2.3/ch1?user=admin&password=Hg-S3cret",
        "rtsp://10.1.2.3/user=admin_password=Hg-S3cret_channel=1",
        "rtsp://10.1.2.3/live?authbasic=YWRtaW46SGctUzNjcmV0",
    ] {
        let r = client
            .put(ioc.url("/api/v1/cameras/hard-cam-2"))
            .bearer_auth(&admin)
            .json(&camera(url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{url}");
        let body = r.text().await.unwrap();
        assert!(body.contains("stream.url"), "{body}");
        assert!(
            !body.contains("S3cret") && !body.contains("YWRtaW46"),
            "{body}"
        );
    }
    // A sensor probes 1,000 made-up camera ids.
    let sensor = token(auth::Role::Sensor);
    for i in 0..1000 {
        let r = client
            .get(ioc.url(&format!("/api/v1/cameras/made-up-{i}/snapshot.jpg")))
            .bearer_auth(&sensor)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
    }
    let v: Value = client
        .get(ioc.url("/api/v1/audit/cameras?limit=10000"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rows = v["accesses"].as_array().unwrap();
    let refused: Vec<&Value> = rows.iter().filter(|r| r["allowed"] == false).collect();
    assert!(
        !refused.is_empty() && refused.len() <= 12,
        "{} refused rows for one prober's minute",
        refused.len()
    );
    // The admin's real change is still in the whole log, and no entry repeats a secret.
    let all = client
        .get(ioc.url("/api/v1/audit?limit=1000"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let v: Value = serde_json::from_str(&all).unwrap();
    assert!(
        v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["target"] == "camera:hard-cam-1"
                && r["action"] == "registry.upsert"
                && r["result"] == "allowed"),
        "the real entry is gone: {all}"
    );
    assert!(
        !all.contains("S3cret") && !all.contains("YWRtaW46"),
        "{all}"
    );
}

/// Item 7: a phone photo with GPS in EXIF and XMP, a comment, and a second image appended
/// (as multi-picture files carry) reaches the store and its readers with none of it, as an
/// independent reader (exiftool) sees the file.
#[tokio::test]
async fn photos_are_stored_and_served_without_any_metadata() {
    let exiftool = |args: &[&str]| -> String {
        let out = std::process::Command::new("exiftool")
            .args(args)
            .output()
            .expect("exiftool (Debian libimage-exiftool-perl; ops/test.sh installs it)");
        assert!(
            out.status.success(),
            "exiftool {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let dir = std::env::temp_dir().join(unique("photo"));
    std::fs::create_dir_all(&dir).unwrap();
    let phone = dir.join("phone.jpg");
    let made = std::process::Command::new("gst-launch-1.0")
        .args([
            "-q",
            "videotestsrc",
            "num-buffers=1",
            "!",
            "video/x-raw,width=64,height=48",
            "!",
            "jpegenc",
            "!",
            "filesink",
        ])
        .arg(format!("location={}", phone.display()))
        .status()
        .expect("gst-launch-1.0 (gstreamer1.0-tools)");
    assert!(made.success());
    let p = phone.to_str().unwrap();
    exiftool(&[
        "-q",
        "-overwrite_original",
        "-GPSLatitude=9.7841",
        "-GPSLatitudeRef=N",
        "-GPSLongitude=105.4701",
        "-GPSLongitudeRef=E",
        "-XMP:Creator=Nguyen Van An",
        "-Comment=nha rieng",
        "-Make=PhoneCo",
        p,
    ]);
    let before = exiftool(&["-a", "-G1", "-s", p]);
    assert!(
        before.contains("GPSLatitude") && before.contains("Creator") && before.contains("Comment"),
        "{before}"
    );
    let mut bytes = std::fs::read(&phone).unwrap();
    let second = bytes.clone();
    bytes.extend_from_slice(&second); // a second image, GPS and all, after the first's end

    let ioc = demo(&[], None).await;
    let citizen = token_as("an", auth::Role::Citizen, None);
    let link = post_photo(&ioc, &citizen, bytes, None).await;
    let path = link[0]["media_url"]
        .as_str()
        .and_then(|u| u.find("/open311/").map(|i| u[i..].to_string()))
        .expect("a photo link");
    let (s, ctype, stored) = fetch(&ioc, &path, &citizen).await;
    assert_eq!((s, ctype.as_str()), (200, "image/jpeg"));
    let served = dir.join("served.jpg");
    std::fs::write(&served, &stored).unwrap();
    let after = exiftool(&["-a", "-G1", "-s", served.to_str().unwrap()]);
    for tag in ["GPS", "Creator", "Comment", "Make", "XMP", "MPF", "Trailer"] {
        assert!(!after.contains(tag), "{tag} survived:\n{after}");
    }
    assert!(
        after.contains("ImageWidth") && after.contains(": 64"),
        "not a picture any more:\n{after}"
    );
    assert!(stored.len() < second.len(), "the second image is gone");
}
