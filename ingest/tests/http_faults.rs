//! HTTP push against librdkafka's mock Kafka cluster, which can take its broker down and up:
//! a good+bad batch gets 400 with per-item reasons while the good items land; oversized
//! bodies and batches get 413; with the broker down the sender gets 503 + Retry-After, and
//! every reading that was acknowledged with 202 is on the topic when the broker returns.

use std::sync::Arc;
use std::time::Duration;

use auth::{Authenticator, Role};
use bus::{Bus, KafkaBus, KafkaConfig, Topics};
use ingest::http::{router, HttpIngestConfig, HttpIngestState};
use ingest::{RegistryView, SensorIngest};
use rdkafka::mocking::MockCluster;
use serde_json::{json, Value};

struct Fixture {
    url: String,
    token: String,
    bus: Arc<dyn Bus>,
    topics: Topics,
}

async fn serve(cluster: &MockCluster<'_, rdkafka::producer::DefaultProducerContext>) -> Fixture {
    let brokers = cluster.bootstrap_servers();
    let bus: Arc<dyn Bus> = Arc::new(
        KafkaBus::connect(KafkaConfig {
            brokers,
            publish_timeout_ms: 2000,
            ..Default::default()
        })
        .unwrap(),
    );
    let topics = Topics::default();
    // The mock cluster has no CreateTopics; its own API makes them.
    for spec in topics.specs(2) {
        cluster
            .create_topic(&spec.name, spec.partitions, 1)
            .unwrap();
    }
    let known = Arc::new(RegistryView::default());
    for s in fixtures::stations::stations() {
        known.upsert(model::RegistryEntry::Station(s));
    }
    // Mark the registry as loaded by following an (empty) registry topic until caught up.
    let follow = tokio::spawn(known.clone().follow(bus.clone(), topics.registry.clone()));
    while !known.is_ready() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    std::mem::forget(follow);
    let auth = Arc::new(Authenticator::new(&[3u8; 32]).unwrap());
    // A gateway for the fixture stations (a sensor token names what it may report for).
    let now = chrono::Utc::now().timestamp();
    let token = auth.sign(&auth::Claims {
        sub: "gateway-1".into(),
        role: Role::Sensor,
        agency: None,
        grants: vec![],
        stations: fixtures::stations::stations()
            .into_iter()
            .map(|s| s.id.to_string())
            .collect(),
        iat: now,
        exp: now + 3600,
    });
    let state = HttpIngestState {
        ingest: Arc::new(SensorIngest::new(
            bus.clone(),
            topics.clone(),
            known.clone(),
        )),
        indicators: Arc::new(ingest::indicators::IndicatorIntake::new(
            bus.clone(),
            topics.clone(),
            known,
        )),
        auth,
        config: HttpIngestConfig {
            max_body_bytes: 64 * 1024,
            max_items: 100,
            retry_after_s: 7,
        },
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/ingest/v1/readings",
        listener.local_addr().unwrap()
    );
    tokio::spawn(async move { axum::serve(listener, router(state)).await.unwrap() });
    Fixture {
        url,
        token,
        bus,
        topics,
    }
}

fn reading(station: &str, minute: u32, value: f64) -> Value {
    json!({"station": station, "parameter": "salinity", "ts": format!("2026-03-02T06:{minute:02}:00+07:00"), "value": value, "unit": "‰"})
}

async fn post(f: &Fixture, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(&f.url)
        .bearer_auth(&f.token)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// Every (station, value) on the readings topic.
async fn readings_on_topic(f: &Fixture) -> Vec<(String, f64)> {
    let mut sub = f.bus.read_all(&[&f.topics.readings]).await.unwrap();
    let mut out = Vec::new();
    while let Some(m) = tokio::time::timeout(Duration::from_secs(20), sub.next_until_caught_up())
        .await
        .unwrap()
        .unwrap()
    {
        let env = model::Envelope::from_bytes(&m.payload.unwrap()).unwrap();
        let r: model::Reading = env.data_as().unwrap();
        out.push((r.station.to_string(), r.value));
    }
    out
}

#[tokio::test]
async fn mixed_batches_oversized_bodies_and_broker_outages() {
    let cluster = MockCluster::new(1).unwrap();
    let f = serve(&cluster).await;

    // A batch with good and bad items: 400, per-item reasons, good items accepted.
    let batch = json!([
        reading("hg-vt-sal-01", 0, 1.5),
        {"station": "hg-vt-sal-01", "parameter": "salinity", "ts": "2026-03-02T06:01:00+07:00", "value": "NaN"},
        reading("no-such-station", 2, 1.0),
        {"station": "tg-my-tho-aq", "parameter": "pm25", "ts": "2026-03-02T06:03:00+07:00", "value": 3, "unit": "furlongs"},
        reading("tg-my-tho-sal", 4, 2.5),
    ]);
    let resp = post(&f, &batch).await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["accepted"], 2);
    let rejected: Vec<(u64, String)> = body["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["index"].as_u64().unwrap(),
                r["errors"][0]["field"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        rejected,
        vec![
            (1, "value".into()),
            (2, "station".into()),
            (3, "unit".into())
        ]
    );

    // The refused items are on the dead-letter topic with their reasons.
    let mut dl = f.bus.read_all(&[&f.topics.deadletter]).await.unwrap();
    let mut reasons = Vec::new();
    while let Some(m) = dl.next_until_caught_up().await.unwrap() {
        let env = model::Envelope::from_bytes(&m.payload.unwrap()).unwrap();
        reasons.push(env.data["errors"][0]["field"].as_str().unwrap().to_string());
    }
    assert_eq!(reasons.len(), 3);

    // Size limits: 413 for too many bytes and for too many items; nothing accepted.
    let big = json!({"readings": (0..2000).map(|i| reading("hg-vt-sal-01", (i % 60) as u32, 1.0)).collect::<Vec<_>>()});
    assert_eq!(post(&f, &big).await.status(), 413);
    let many = json!((0..101)
        .map(|i| reading("hg-vt-sal-01", (i % 60) as u32, 9.0))
        .collect::<Vec<_>>());
    let resp = post(&f, &many).await;
    assert_eq!(resp.status(), 413);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"],
        "too_many_items"
    );

    // A good reading before the outage.
    assert_eq!(
        post(&f, &json!(reading("hg-vt-sal-02", 10, 3.25)))
            .await
            .status(),
        202
    );

    // Broker down: 503 with Retry-After, nothing acknowledged.
    cluster.broker_down(1).unwrap();
    let resp = post(&f, &json!(reading("hg-vt-sal-02", 11, 7.77))).await;
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "7");
    cluster.broker_up(1).unwrap();

    // Back up: the sender retries and is acknowledged.
    let mut ok = false;
    for _ in 0..30 {
        if post(&f, &json!(reading("hg-vt-sal-02", 12, 4.5)))
            .await
            .status()
            == 202
        {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(ok, "ingest recovers when the broker returns");

    let on_topic = readings_on_topic(&f).await;
    for acknowledged in [
        ("hg-vt-sal-01", 1.5),
        ("tg-my-tho-sal", 2.5),
        ("hg-vt-sal-02", 3.25),
        ("hg-vt-sal-02", 4.5),
    ] {
        assert!(
            on_topic
                .iter()
                .any(|(s, v)| s == acknowledged.0 && (*v - acknowledged.1).abs() < 1e-9),
            "acknowledged reading {acknowledged:?} is on the topic: {on_topic:?}"
        );
    }
    assert!(
        !on_topic.iter().any(|(_, v)| *v == 9.0),
        "a refused (413) batch wrote nothing"
    );
}

#[tokio::test]
async fn tokens_are_required_and_roles_checked() {
    let cluster = MockCluster::new(1).unwrap();
    let f = serve(&cluster).await;
    let c = reqwest::Client::new();
    let r = c
        .post(&f.url)
        .json(&reading("hg-vt-sal-01", 0, 1.0))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = c
        .post(&f.url)
        .bearer_auth("not-a-token")
        .json(&reading("hg-vt-sal-01", 0, 1.0))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let leader = Authenticator::new(&[3u8; 32]).unwrap().issue(
        "l",
        Role::Leader,
        None,
        chrono::Duration::hours(1),
    );
    let r = c
        .post(&f.url)
        .bearer_auth(leader)
        .json(&reading("hg-vt-sal-01", 0, 1.0))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}
