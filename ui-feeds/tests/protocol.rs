//! The websocket protocol over real sockets, against a replica fed directly: snapshot then
//! deltas, bbox change, resume with `since`, role checks, and a deliberately slow client that
//! is told to resync while a fast client sees every change.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use auth::{Authenticator, Role};
use futures::{SinkExt, StreamExt};
use model::{EntityId, Layer, LocalId, StateRecord};
use replica::Replica;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{connect_async, MaybeTlsStream, WebSocketStream};
use ui_feeds::{router, FeedsConfig, FeedsState};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

struct Server {
    addr: String,
    replica: Arc<Replica>,
    auth: Arc<Authenticator>,
}

async fn server(config: FeedsConfig) -> Server {
    let replica = Replica::new(10_000);
    replica.set_ready();
    let auth = Arc::new(Authenticator::new(&[5u8; 32]).unwrap());
    let state = FeedsState {
        replica: replica.clone(),
        auth: auth.clone(),
        config,
        mode: "memory".into(),
        history: None,
        basemap: Default::default(),
        tiles: None,
        used_tickets: Default::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, router(state)).await.unwrap() });
    Server {
        addr,
        replica,
        auth,
    }
}

fn station(i: usize, lon: f64, lat: f64, value: f64) -> StateRecord {
    let mut properties = serde_json::Map::new();
    properties.insert("value".into(), value.into());
    // About the size of a real station feature (name, units, several latest values).
    properties.insert("detail".into(), "x".repeat(1000).into());
    StateRecord {
        entity: EntityId::parse(&format!("station:s{i}")).unwrap(),
        layer: Layer::Salinity,
        geometry: geojson::Geometry::new(geojson::Value::Point(vec![lon, lat])),
        bbox: [lon, lat, lon, lat],
        units: vec![LocalId::parse("u", "hg").unwrap()],
        updated: None,
        properties,
        applied: Default::default(),
        core: Value::Null,
    }
}

fn set(r: &Replica, rec: StateRecord) {
    r.apply(rec.entity.clone(), Some(rec));
}

async fn connect(s: &Server, role: Role) -> Ws {
    let token = s.auth.issue("t", role, None, chrono::Duration::hours(1));
    let (ws, _) = connect_async(request(&format!("ws://{}/ws", s.addr), &token))
        .await
        .unwrap();
    ws
}

/// The upgrade request with `token` in its header.
fn request(url: &str, token: &str) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    req
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

async fn recv(ws: &mut Ws) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a message within 10 s");
        if let Message::Text(t) = m.unwrap().unwrap() {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

async fn recv_op(ws: &mut Ws, op: &str) -> Value {
    loop {
        let m = recv(ws).await;
        if m["op"] == op {
            return m;
        }
    }
}

/// Nothing (but pongs) arrives within `ms`.
async fn quiet(ws: &mut Ws, ms: u64) -> bool {
    match tokio::time::timeout(Duration::from_millis(ms), ws.next()).await {
        Err(_) => true,
        Ok(Some(Ok(Message::Text(t)))) => panic!("unexpected message: {t}"),
        Ok(_) => true,
    }
}

fn ids(features: &Value) -> Vec<String> {
    let mut v: Vec<String> = features
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

const WEST: [f64; 4] = [105.0, 9.0, 106.0, 10.0];

#[tokio::test]
async fn snapshot_then_deltas_within_the_bbox_and_bbox_changes() {
    let s = server(FeedsConfig::default()).await;
    set(&s.replica, station(1, 105.5, 9.8, 1.0)); // west
    set(&s.replica, station(2, 106.4, 10.4, 1.0)); // east
    let mut ws = connect(&s, Role::Operator).await;
    let hello = recv_op(&mut ws, "hello").await;
    assert_eq!(hello["epoch"], s.replica.epoch());
    send(
        &mut ws,
        json!({"op":"subscribe","id":"w","layers":["salinity"],"bbox":WEST}),
    )
    .await;
    let snap = recv_op(&mut ws, "snapshot").await;
    assert_eq!(snap["features"]["type"], "FeatureCollection");
    assert_eq!(ids(&snap["features"]["features"]), vec!["station:s1"]);
    let snap_seq = snap["seq"].as_u64().unwrap();

    set(&s.replica, station(2, 106.4, 10.4, 2.0)); // outside: nothing
    set(&s.replica, station(1, 105.5, 9.8, 3.0)); // inside: a delta
    let d = recv_op(&mut ws, "delta").await;
    assert_eq!(ids(&d["upsert"]), vec!["station:s1"]);
    assert_eq!(d["upsert"][0]["properties"]["value"], 3.0);
    assert!(d["seq"].as_u64().unwrap() > snap_seq);
    assert!(quiet(&mut ws, 300).await);

    // Move the bbox east: a new snapshot with the east station only.
    send(
        &mut ws,
        json!({"op":"update","id":"w","layers":["salinity"],"bbox":[106.0, 10.0, 107.0, 11.0]}),
    )
    .await;
    let snap = recv_op(&mut ws, "snapshot").await;
    assert_eq!(ids(&snap["features"]["features"]), vec!["station:s2"]);
    set(&s.replica, station(1, 105.5, 9.8, 4.0));
    assert!(
        quiet(&mut ws, 300).await,
        "the west station is out of the new bbox"
    );

    // An entity that leaves the bbox is removed from the client's view.
    set(&s.replica, station(2, 105.2, 9.2, 5.0));
    let d = recv_op(&mut ws, "delta").await;
    assert_eq!(d["remove"], json!(["station:s2"]));

    // One that enters it is sent, and once removed from the state it goes from the view.
    set(&s.replica, station(3, 106.5, 10.5, 6.0));
    assert_eq!(
        ids(&recv_op(&mut ws, "delta").await["upsert"]),
        vec!["station:s3"]
    );
    s.replica
        .apply(EntityId::parse("station:s3").unwrap(), None);
    let d = recv_op(&mut ws, "delta").await;
    assert_eq!(d["remove"], json!(["station:s3"]));

    send(&mut ws, json!({"op":"ping","t":42})).await;
    assert_eq!(recv_op(&mut ws, "pong").await["t"], 42);
    send(&mut ws, json!({"op":"unsubscribe","id":"w"})).await;
    assert_eq!(recv_op(&mut ws, "unsubscribed").await["sub"], "w");
}

#[tokio::test]
async fn near_and_within_subscriptions_follow_the_disc_and_the_area() {
    let s = server(FeedsConfig::default()).await;
    // 0.001° of latitude is about 111 m.
    set(&s.replica, station(1, 105.5, 9.801, 1.0));
    set(&s.replica, station(2, 105.5, 9.803, 1.0));
    set(&s.replica, station(3, 105.5, 9.9, 1.0));
    let mut ws = connect(&s, Role::Operator).await;
    send(
        &mut ws,
        json!({"op":"subscribe","id":"n","layers":["salinity"],"near":[105.5, 9.8, 500]}),
    )
    .await;
    let snap = recv_op(&mut ws, "snapshot").await;
    let f = snap["features"]["features"].as_array().unwrap();
    let got: Vec<(&str, f64)> = f
        .iter()
        .map(|f| {
            (
                f["id"].as_str().unwrap(),
                f["properties"]["distance_m"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [("station:s1", 111.0), ("station:s2", 334.0)],
        "nearest first"
    );
    // A station moving into the disc is delivered, with its distance; one far away is not.
    set(&s.replica, station(3, 105.5, 9.802, 2.0));
    let d = recv_op(&mut ws, "delta").await;
    assert_eq!(ids(&d["upsert"]), vec!["station:s3"]);
    assert_eq!(d["upsert"][0]["properties"]["distance_m"], 222.0);
    set(&s.replica, station(4, 105.5, 9.95, 2.0));
    assert!(quiet(&mut ws, 300).await, "outside the disc");

    // Within a polygon the client sends.
    let poly = json!({"type":"Polygon","coordinates":[[[105.4,9.85],[105.6,9.85],[105.6,10.0],[105.4,10.0],[105.4,9.85]]]});
    send(
        &mut ws,
        json!({"op":"update","id":"n","layers":["salinity"],"within":poly}),
    )
    .await;
    let snap = recv_op(&mut ws, "snapshot").await;
    assert_eq!(ids(&snap["features"]["features"]), vec!["station:s4"]);

    // Bad or unknown areas are refused, naming the field.
    for (bad, why) in [
        (
            json!({"op":"subscribe","id":"b","layers":["salinity"],"near":[105.5, 9.8, 0]}),
            "near",
        ),
        (
            json!({"op":"subscribe","id":"b","layers":["salinity"],"near":"105,9,1"}),
            "near",
        ),
        (
            json!({"op":"subscribe","id":"b","layers":["salinity"],"within":"zone:nope"}),
            "within",
        ),
        (
            json!({"op":"subscribe","id":"b","layers":["salinity"],"within":{"type":"Polygon","coordinates":[[[105,9],[106,9],[105,9]]]}}),
            "within",
        ),
    ] {
        send(&mut ws, bad).await;
        assert_eq!(recv_op(&mut ws, "error").await["field"], why);
    }
}

#[tokio::test]
async fn resume_sends_only_what_changed_since() {
    let s = server(FeedsConfig::default()).await;
    for i in 0..5 {
        set(&s.replica, station(i, 105.5, 9.5 + i as f64 * 0.1, 1.0));
    }
    let mut ws = connect(&s, Role::Operator).await;
    let epoch = recv_op(&mut ws, "hello").await["epoch"]
        .as_str()
        .unwrap()
        .to_string();
    send(
        &mut ws,
        json!({"op":"subscribe","id":"w","layers":["salinity"],"bbox":WEST}),
    )
    .await;
    let since = recv_op(&mut ws, "snapshot").await["seq"].as_u64().unwrap();
    drop(ws);

    // While disconnected: two stations change, one of them twice.
    set(&s.replica, station(1, 105.5, 9.6, 2.0));
    set(&s.replica, station(3, 105.5, 9.8, 2.0));
    set(&s.replica, station(1, 105.5, 9.6, 3.0));

    let mut ws = connect(&s, Role::Operator).await;
    recv_op(&mut ws, "hello").await;
    send(&mut ws, json!({"op":"resume","id":"w","layers":["salinity"],"bbox":WEST,"since":since,"epoch":epoch})).await;
    let d = recv(&mut ws).await;
    assert_eq!(
        d["op"], "delta",
        "a resume within memory is a delta, not a snapshot: {d}"
    );
    assert_eq!(ids(&d["upsert"]), vec!["station:s1", "station:s3"]);
    let s1 = d["upsert"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "station:s1")
        .unwrap();
    assert_eq!(s1["properties"]["value"], 3.0, "coalesced to the latest");

    // A resume against another epoch (another replica, a restart) gets a snapshot.
    send(&mut ws, json!({"op":"resume","id":"x","layers":["salinity"],"bbox":WEST,"since":since,"epoch":"other"})).await;
    let snap = recv_op(&mut ws, "snapshot").await;
    assert_eq!(snap["sub"], "x");
    assert_eq!(snap["features"]["features"].as_array().unwrap().len(), 5);
}

#[tokio::test]
async fn errors_name_the_field_and_roles_limit_layers() {
    let s = server(FeedsConfig::default()).await;
    // A citizen sees open environmental data, not the reports layer.
    let mut ws = connect(&s, Role::Citizen).await;
    recv_op(&mut ws, "hello").await;
    send(
        &mut ws,
        json!({"op":"subscribe","id":"a","layers":["reports"]}),
    )
    .await;
    let e = recv_op(&mut ws, "error").await;
    assert_eq!(e["field"], "layers");
    send(
        &mut ws,
        json!({"op":"subscribe","id":"a","layers":["salinity"],"bbox":[1,2,3]}),
    )
    .await;
    assert_eq!(recv_op(&mut ws, "error").await["field"], "bbox");
    ws.send(Message::Text("{{{".into())).await.unwrap();
    assert!(recv_op(&mut ws, "error").await["reason"]
        .as_str()
        .unwrap()
        .contains("JSON"));

    // A role with no layer to watch (a sensor) gets no socket: 403 at the upgrade.
    let sensor = s
        .auth
        .issue("t", Role::Sensor, None, chrono::Duration::hours(1));
    let err = connect_async(request(&format!("ws://{}/ws", s.addr), &sensor))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("403"), "{err}");

    // No token: the upgrade is refused with 401.
    let err = connect_async(format!("ws://{}/ws", s.addr))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");
}

#[tokio::test]
async fn a_slow_client_is_resynced_while_a_fast_one_sees_every_change() {
    let s = server(FeedsConfig {
        max_pending: 50,
        ..Default::default()
    })
    .await;
    const N: usize = 400;
    for i in 0..N {
        set(
            &s.replica,
            station(
                i,
                105.0 + (i % 20) as f64 * 0.05,
                9.0 + (i / 20) as f64 * 0.05,
                0.0,
            ),
        );
    }
    let mut fast = connect(&s, Role::Operator).await;
    let mut slow = connect(&s, Role::Operator).await;
    for ws in [&mut fast, &mut slow] {
        recv_op(ws, "hello").await;
        send(
            ws,
            json!({"op":"subscribe","id":"all","layers":["salinity"]}),
        )
        .await;
        assert_eq!(
            recv_op(ws, "snapshot").await["features"]["features"]
                .as_array()
                .unwrap()
                .len(),
            N
        );
    }

    // The fast client reads continuously, keeping the latest value of every station.
    let reader = tokio::spawn(async move {
        let mut latest: HashMap<String, f64> = HashMap::new();
        let mut resyncs = 0;
        while latest.values().filter(|v| **v == 59.0).count() < N {
            let m = recv(&mut fast).await;
            match m["op"].as_str().unwrap() {
                "delta" => {
                    for f in m["upsert"].as_array().unwrap() {
                        latest.insert(
                            f["id"].as_str().unwrap().into(),
                            f["properties"]["value"].as_f64().unwrap(),
                        );
                    }
                }
                "resync" => resyncs += 1,
                _ => {}
            }
        }
        resyncs
    });

    // 60 rounds over every station (24,000 changes, ~30 MB of deltas), paced so a reading
    // client keeps up; the slow client reads nothing meanwhile.
    for round in 0..60 {
        for i in 0..N {
            set(
                &s.replica,
                station(
                    i,
                    105.0 + (i % 20) as f64 * 0.05,
                    9.0 + (i / 20) as f64 * 0.05,
                    round as f64,
                ),
            );
            if i % 40 == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
    let fast_resyncs = tokio::time::timeout(Duration::from_secs(30), reader)
        .await
        .expect("fast client saw every final value")
        .unwrap();
    assert_eq!(fast_resyncs, 0, "the fast client was never resynced");

    // The slow client now reads its backlog: somewhere in it is a resync followed by a
    // snapshot; applying everything it got leaves it with the final state.
    let mut saw_resync = false;
    let mut state: HashMap<String, f64> = HashMap::new();
    let mut last_op = String::new();
    while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(2), slow.next()).await {
        let Message::Text(t) = m else { continue };
        let m: Value = serde_json::from_str(&t).unwrap();
        let op = m["op"].as_str().unwrap().to_string();
        match op.as_str() {
            "resync" => saw_resync = true,
            "snapshot" => {
                assert_eq!(
                    last_op, "resync",
                    "snapshots after the first follow a resync"
                );
                state.clear();
                for f in m["features"]["features"].as_array().unwrap() {
                    state.insert(
                        f["id"].as_str().unwrap().into(),
                        f["properties"]["value"].as_f64().unwrap(),
                    );
                }
            }
            "delta" => {
                for f in m["upsert"].as_array().unwrap() {
                    state.insert(
                        f["id"].as_str().unwrap().into(),
                        f["properties"]["value"].as_f64().unwrap(),
                    );
                }
            }
            _ => {}
        }
        last_op = op;
    }
    assert!(saw_resync, "the slow client was told to resync");
    assert_eq!(state.len(), N);
    assert!(
        state.values().all(|v| *v == 59.0),
        "after catching up the slow client holds the final state"
    );
}

/// Pages open the websocket with a ticket asked for with the bearer token: it opens one
/// connection, as the token's caller, and a token in the URL opens none.
#[tokio::test]
async fn a_ws_ticket_opens_one_connection_and_a_token_in_the_url_none() {
    let s = server(FeedsConfig::default()).await;
    let token = s
        .auth
        .issue("op-1", Role::Operator, None, chrono::Duration::hours(1));
    let http = reqwest::Client::new();
    let r = http
        .post(format!("http://{}/ws/tickets", s.addr))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let t: Value = r.json().await.unwrap();
    let url = format!("ws://{}{}", s.addr, t["url"].as_str().unwrap());
    assert!(!url.contains(&token), "the ticket is not the token");
    let (mut ws, _) = connect_async(&url)
        .await
        .expect("the ticket opens a websocket");
    let hello = recv(&mut ws).await;
    assert_eq!(hello["op"], "hello");
    let again = connect_async(&url).await.unwrap_err();
    assert!(
        again.to_string().contains("401"),
        "a ticket opens one connection: {again}"
    );
    let in_url = connect_async(format!("ws://{}/ws?access_token={token}", s.addr))
        .await
        .unwrap_err();
    assert!(
        in_url.to_string().contains("401"),
        "a token in the URL is refused: {in_url}"
    );
    let r = http
        .post(format!("http://{}/ws/tickets", s.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "a ticket needs a token");
    let sensor = s
        .auth
        .issue("probe", Role::Sensor, None, chrono::Duration::hours(1));
    let r = http
        .post(format!("http://{}/ws/tickets", s.addr))
        .bearer_auth(&sensor)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "a sensor watches nothing");
}

#[tokio::test]
async fn a_quiet_feed_is_pinged_so_proxies_keep_it_open() {
    let s = server(FeedsConfig {
        keepalive_s: 1.0,
        ..Default::default()
    })
    .await;
    let mut ws = connect(&s, Role::Leader).await;
    recv_op(&mut ws, "hello").await;
    // Nothing changes: within a few seconds the server pings (and keeps pinging).
    let mut pings = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while pings < 2 {
        let m = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("a ping while the feed is quiet")
            .unwrap()
            .unwrap();
        if let Message::Ping(_) = m {
            pings += 1;
        }
    }
}
