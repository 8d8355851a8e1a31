//! Helpers for end-to-end tests: real `ioc` processes against the services `ops/test.sh`
//! starts (a Kafka-protocol broker, Mosquitto, Chromium). A missing service fails the test
//! with a message naming it; nothing is skipped.

#![allow(dead_code)]

pub mod browser;
pub mod oidc;
pub mod postgres;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{connect_async, MaybeTlsStream, WebSocketStream};

pub const SECRET: &str = "end-to-end-test-secret-0123456789abcdef";

/// The district-level units of the fixture province (Hậu Giang).
pub const HG_DISTRICTS: [&str; 8] = [
    "hg-vi-thanh",
    "hg-nga-bay",
    "hg-long-my-tx",
    "hg-chau-thanh",
    "hg-chau-thanh-a",
    "hg-phung-hiep",
    "hg-vi-thuy",
    "hg-long-my",
];

pub fn required_env(var: &str, what: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: {what} is needed; run the tests through ops/test.sh, which starts it")
    })
}

pub fn kafka() -> String {
    required_env("IOC_TEST_KAFKA", "a Kafka-protocol broker")
}

pub fn mqtt() -> String {
    required_env("IOC_TEST_MQTT", "an MQTT broker (Mosquitto)")
}

pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::now_v7().simple().to_string()[20..]
    )
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Environment that isolates one test: its own topics and consumer group on the shared broker.
pub fn isolated_env(tag: &str) -> Vec<(String, String)> {
    let t = unique(tag);
    let mut env: Vec<(String, String)> = [
        ("READINGS", "readings"),
        ("CAMERAS", "cameras"),
        ("REPORTS", "reports"),
        ("INDICATORS", "indicators"),
        ("REGISTRY", "registry"),
        ("ALERTS", "alerts"),
        ("STATE", "state"),
        ("TALLIES", "tallies"),
        ("DEADLETTER", "deadletter"),
    ]
    .iter()
    .map(|(k, v)| (format!("IOC_TOPICS__{k}"), format!("{t}.{v}")))
    .collect();
    env.push(("IOC_BUS__KAFKA__BROKERS".into(), kafka()));
    env.push(("IOC_BUS__KAFKA__CLIENT_ID".into(), t.clone()));
    env.push(("IOC_BUS__PARTITIONS".into(), "3".into()));
    env.push(("IOC_CORE__GROUP".into(), format!("{t}-core")));
    env.push(("IOC_AUTH__SECRET".into(), SECRET.into()));
    env.push(("IOC_REGISTRY__SEED_FIXTURES".into(), "true".into()));
    env.push(("IOC_LOG__FILTER".into(), "info".into()));
    env
}

/// The topic names of an [`isolated_env`].
pub fn topics_of(env: &[(String, String)]) -> bus::Topics {
    let get = |k: &str| {
        env.iter()
            .find(|(n, _)| n == &format!("IOC_TOPICS__{k}"))
            .map(|(_, v)| v.clone())
            .expect("an isolated environment names every topic")
    };
    bus::Topics {
        readings: get("READINGS"),
        cameras: get("CAMERAS"),
        reports: get("REPORTS"),
        indicators: get("INDICATORS"),
        registry: get("REGISTRY"),
        alerts: get("ALERTS"),
        state: get("STATE"),
        tallies: get("TALLIES"),
        deadletter: get("DEADLETTER"),
    }
}

/// A running `ioc` process, killed when dropped.
pub struct Ioc {
    pub child: Child,
    pub port: u16,
    pub name: String,
}

impl Ioc {
    pub fn start(args: &[&str], env: &[(String, String)]) -> Ioc {
        let port = free_port();
        let name = args.join(" ");
        let log =
            std::fs::File::create(std::env::temp_dir().join(format!("ioc-{}-{port}.log", args[0])))
                .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_ioc"))
            .args(args)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting the ioc binary");
        Ioc { child, port, name }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Waits until /readyz says ready.
    pub async fn ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(90);
        let client = reqwest::Client::new();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "`ioc {}` exited early with {status}; see its log in the temp dir",
                    self.name
                );
            }
            if let Ok(r) = client.get(self.url("/readyz")).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "`ioc {}` not ready within 90 s",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Kills the process at once (SIGKILL): a crash, not a shutdown.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Ioc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A token of `role`; a sensor's is a gateway's for every fixture station (a sensor token
/// names the stations it may report for).
pub fn token(role: auth::Role) -> String {
    let now = chrono::Utc::now().timestamp();
    let stations = match role {
        auth::Role::Sensor => fixtures::stations::stations()
            .into_iter()
            .map(|s| s.id.to_string())
            .collect(),
        _ => vec![],
    };
    auth::Authenticator::new(SECRET.as_bytes())
        .unwrap()
        .sign(&auth::Claims {
            sub: "e2e".into(),
            role,
            agency: None,
            grants: vec![],
            stations,
            iat: now,
            exp: now + 3600,
        })
}

/// A token with grants beyond the role.
pub fn token_with(
    sub: &str,
    role: auth::Role,
    agency: Option<&str>,
    grants: &[auth::Grant],
) -> String {
    auth::Authenticator::new(SECRET.as_bytes())
        .unwrap()
        .issue_granted(sub, role, agency, grants, chrono::Duration::hours(1))
}

/// (status, content type, body) of a GET; for MJPEG, only the first part is read.
pub async fn fetch(ioc: &Ioc, path: &str, token: &str) -> (u16, String, Vec<u8>) {
    let r = reqwest::Client::new()
        .get(ioc.url(path))
        .bearer_auth(token)
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let ctype = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if ctype.starts_with("multipart/") {
        let mut r = r;
        let first = tokio::time::timeout(Duration::from_secs(10), r.chunk())
            .await
            .expect("a first live frame within 10 s")
            .unwrap()
            .expect("a first chunk");
        return (status, ctype, first.to_vec());
    }
    (status, ctype, r.bytes().await.unwrap().to_vec())
}

/// GETs `path` (with query) from `ioc` as `role` and parses the JSON body.
pub async fn get_json(ioc: &Ioc, path: &str, role: auth::Role) -> Value {
    reqwest::Client::new()
        .get(ioc.url(path))
        .bearer_auth(token(role))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// One step of a report's life through `POST /api/v1/reports/{id}/transitions`:
/// (status, body).
pub async fn report_step(ioc: &Ioc, id: &str, token: &str, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(ioc.url(&format!("/api/v1/reports/{id}/transitions")))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// A good reading of `parameter` in its canonical unit.
pub fn reading(
    station: &model::LocalId,
    parameter: model::Parameter,
    ts: chrono::DateTime<chrono::FixedOffset>,
    value: f64,
) -> model::Reading {
    model::Reading {
        station: station.clone(),
        parameter,
        ts,
        value,
        unit: parameter.canonical_unit(),
        quality: Default::default(),
        sent_as: None,
    }
}

/// Publishes `r` to `topic` as a `sensor.reading` envelope keyed by its station, as ingest
/// does; resolves when the broker has acknowledged it.
pub async fn publish_reading(
    bus: std::sync::Arc<dyn bus::Bus>,
    topic: String,
    r: model::Reading,
    source: &'static str,
) -> Result<bus::Delivered, bus::BusError> {
    let entity = model::EntityId::station(&r.station);
    let env = model::Envelope::new(
        model::EventKind::SensorReading,
        entity.clone(),
        r.ts,
        chrono::Utc::now(),
        source,
        serde_json::to_value(&r).unwrap(),
    );
    bus.publish(&topic, entity.as_str(), Some(env.to_bytes()))
        .await
}

/// Readings counted over `features` (each station's `properties.readings`).
pub fn readings_counted(features: &[Value]) -> u64 {
    features
        .iter()
        .map(|f| f["properties"]["readings"].as_u64().unwrap_or(0))
        .sum()
}

/// Every station feature (salinity and air quality layers), as the API serves them.
pub async fn station_features(api: &Ioc) -> Vec<Value> {
    let mut all = Vec::new();
    for layer in ["salinity", "air_quality"] {
        let fc = get_json(
            api,
            &format!("/api/v1/layers/{layer}/features?limit=1000"),
            auth::Role::Operator,
        )
        .await;
        all.extend(fc["features"].as_array().cloned().unwrap_or_default());
    }
    all
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The upgrade request of a websocket to `url` with `token` in its header (pages use a
/// single-use ticket instead; a token is never taken from a URL).
pub fn ws_request(
    url: &str,
    token: &str,
) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    req
}

/// A websocket to `ioc` with `token`.
pub async fn ws_connect(ioc: &Ioc, token: &str) -> Ws {
    connect_async(ws_request(
        &format!("ws://127.0.0.1:{}/ws", ioc.port),
        token,
    ))
    .await
    .unwrap()
    .0
}

/// Sends one client message.
pub async fn ws_send(ws: &mut Ws, msg: &Value) {
    ws.send(Message::Text(msg.to_string().into()))
        .await
        .unwrap();
}

/// The server's close frame, skipping other messages; panics if the socket ends without
/// one or none comes within `wait`.
pub async fn next_close(
    ws: &mut Ws,
    wait: Duration,
) -> tokio_tungstenite::tungstenite::protocol::CloseFrame {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => panic!("no close frame within {wait:?}"),
            Ok(Some(Ok(Message::Close(Some(f))))) => return f,
            Ok(Some(Ok(_))) => {}
            Ok(other) => panic!("the socket ended without a close frame: {other:?}"),
        }
    }
}

/// The latest salinity value of station `id` in a salinity FeatureCollection.
pub fn latest_salinity(fc: &Value, id: &str) -> Option<Value> {
    fc["features"]
        .as_array()?
        .iter()
        .find(|f| f["id"] == id)
        .map(|f| f["properties"]["latest"]["salinity"]["value"].clone())
}

/// Polls the salinity layer until `station` shows `value` and returns the layer then, or
/// `Err` with the last value seen when `wait` runs out.
pub async fn wait_for_salinity(
    ioc: &Ioc,
    station: &str,
    value: f64,
    wait: Duration,
) -> Result<Value, Option<Value>> {
    let deadline = Instant::now() + wait;
    loop {
        let fc = get_json(
            ioc,
            "/api/v1/layers/salinity/features",
            auth::Role::Operator,
        )
        .await;
        let latest = latest_salinity(&fc, station);
        if latest.as_ref().and_then(Value::as_f64) == Some(value) {
            return Ok(fc);
        }
        if Instant::now() >= deadline {
            return Err(latest);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub async fn ws_subscribe(
    ioc: &Ioc,
    id: &str,
    layers: &[&str],
    bbox: Option<[f64; 4]>,
) -> (Ws, Value) {
    let mut ws = ws_connect(ioc, &token(auth::Role::Operator)).await;
    let msg = serde_json::json!({"op": "subscribe", "id": id, "layers": layers, "bbox": bbox});
    ws_send(&mut ws, &msg).await;
    let snap = next_op(&mut ws, "snapshot", Duration::from_secs(30))
        .await
        .expect("a snapshot");
    (ws, snap)
}

/// The next message with `op`, or `None` if none comes within `wait`.
pub async fn next_op(ws: &mut Ws, op: &str, wait: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return None,
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["op"] == op {
                    return Some(v);
                }
            }
            Ok(Some(Ok(_))) => {}
            Ok(other) => panic!("websocket ended: {other:?}"),
        }
    }
}

/// Waits for a delta whose upserts include `entity` with a property satisfying `pred`.
pub async fn wait_for_entity(
    ws: &mut Ws,
    entity: &str,
    wait: Duration,
    pred: impl Fn(&Value) -> bool,
) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let d = next_op(ws, "delta", left).await?;
        if let Some(f) = d["upsert"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["id"] == entity && pred(f))
        {
            return Some(f.clone());
        }
    }
}

/// A zone feature: a square 0.02° wide around (`x`, `y`) named `name`.
pub fn square_zone(name: &str, x: f64, y: f64) -> Value {
    serde_json::json!({"type": "Feature", "properties": {"name": name},
        "geometry": {"type": "Polygon", "coordinates": [[[x - 0.01, y - 0.01], [x + 0.01, y - 0.01],
            [x + 0.01, y + 0.01], [x - 0.01, y + 0.01], [x - 0.01, y - 0.01]]]}})
}
