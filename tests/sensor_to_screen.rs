//! The whole path over real connections: a reading published to Mosquitto travels through
//! `ioc serve` (MQTT ingest -> Kafka-protocol broker -> stream-core -> ioc.state -> replica)
//! and arrives as a delta on a websocket client whose bbox contains the station, and not on
//! one whose bbox excludes it. Also the REST layer reflects it.

mod common;

use std::time::Duration;

use chrono::Utc;
use common::*;
use rumqttc::{AsyncClient, MqttOptions, QoS};
use serde_json::{json, Value};

const VI_THANH: [f64; 4] = [105.3, 9.6, 105.6, 9.9];
const TIEN_GIANG: [f64; 4] = [106.0, 10.2, 106.8, 10.6];

/// `env` plus MQTT ingest on a topic prefix of its own; returns the prefix.
fn with_mqtt(mut env: Vec<(String, String)>) -> (Vec<(String, String)>, String) {
    let prefix = unique("ioc");
    env.push(("IOC_INGEST__MQTT__URL".into(), format!("mqtt://{}", mqtt())));
    env.push((
        "IOC_INGEST__MQTT__TOPIC".into(),
        format!("{prefix}/sensors/+/readings"),
    ));
    env.push(("IOC_INGEST__MQTT__CLIENT_ID".into(), unique("ingest")));
    (env, prefix)
}

#[tokio::test]
async fn an_mqtt_reading_reaches_the_websocket_client_whose_bbox_holds_the_station() {
    let (env, prefix) = with_mqtt(isolated_env("e2e"));
    let mut ioc = Ioc::start(&["serve"], &env);
    ioc.ready().await;

    let (mut inside, snap) = ws_subscribe(&ioc, "vt", &["salinity"], Some(VI_THANH)).await;
    let ids: Vec<&str> = snap["features"]["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"station:hg-vt-sal-01"),
        "the fixture station is in the snapshot: {ids:?}"
    );
    let (mut outside, _) = ws_subscribe(&ioc, "tg", &["salinity"], Some(TIEN_GIANG)).await;

    // A sensor publishes with QoS 1, in mg/L (converted to ‰ on ingest).
    let (host, port) = mqtt()
        .split_once(':')
        .map(|(h, p)| (h.to_string(), p.parse::<u16>().unwrap()))
        .unwrap();
    let mut opts = MqttOptions::new(unique("sensor"), host, port);
    opts.set_keep_alive(Duration::from_secs(10));
    let (client, mut events) = AsyncClient::new(opts, 10);
    tokio::spawn(async move { while events.poll().await.is_ok() {} });
    let ts = Utc::now()
        .with_timezone(&chrono::FixedOffset::east_opt(7 * 3600).unwrap())
        .to_rfc3339();
    let payload = json!({"parameter": "salinity", "ts": ts, "value": 3210, "unit": "mg/L"});
    client
        .publish(
            format!("{prefix}/sensors/hg-vt-sal-01/readings"),
            QoS::AtLeastOnce,
            false,
            payload.to_string(),
        )
        .await
        .unwrap();

    let f = wait_for_entity(
        &mut inside,
        "station:hg-vt-sal-01",
        Duration::from_secs(30),
        |f| {
            f["properties"]["latest"]["salinity"]["value"]
                .as_f64()
                .is_some_and(|v| (v - 3.21).abs() < 1e-9)
        },
    )
    .await
    .expect("the reading arrives as a delta within 30 s");
    assert_eq!(f["properties"]["latest"]["salinity"]["unit"], "‰");
    assert_eq!(f["properties"]["unit_names"][0], "Thành phố Vị Thanh");

    // The client looking at Tiền Giang hears nothing about it.
    let heard = wait_for_entity(
        &mut outside,
        "station:hg-vt-sal-01",
        Duration::from_secs(2),
        |_| true,
    )
    .await;
    assert!(
        heard.is_none(),
        "a client whose bbox excludes the station gets no delta for it"
    );

    // The REST layer agrees.
    let fc = get_json(
        &ioc,
        "/api/v1/layers/salinity/features?bbox=105.3,9.6,105.6,9.9",
        auth::Role::Leader,
    )
    .await;
    let st = fc["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "station:hg-vt-sal-01")
        .unwrap();
    assert_eq!(st["properties"]["latest"]["salinity"]["value"], 3.21);

    // Beyond the bbox: the stations near it, nearest first with their distance, and those in
    // its ward, from the same replica; nonsense is refused naming the field.
    let (lon, lat) = (
        st["geometry"]["coordinates"][0].as_f64().unwrap(),
        st["geometry"]["coordinates"][1].as_f64().unwrap(),
    );
    let near = get_json(
        &ioc,
        &format!("/api/v1/layers/salinity/features?near={lon},{lat},20000&limit=3"),
        auth::Role::Leader,
    )
    .await;
    let near = near["features"].as_array().unwrap();
    assert_eq!(
        near[0]["id"], "station:hg-vt-sal-01",
        "the station itself is nearest"
    );
    assert_eq!(near[0]["properties"]["distance_m"], 0.0);
    let d: Vec<f64> = near
        .iter()
        .map(|f| f["properties"]["distance_m"].as_f64().unwrap())
        .collect();
    assert!(
        d.windows(2).all(|w| w[0] <= w[1]) && d.iter().all(|d| *d <= 20000.0),
        "{d:?}"
    );
    let ward = st["properties"]["units"][0].as_str().unwrap();
    let within = get_json(
        &ioc,
        &format!("/api/v1/layers/salinity/features?within={ward}"),
        auth::Role::Leader,
    )
    .await;
    let in_ward: Vec<&Value> = within["features"].as_array().unwrap().iter().collect();
    assert!(
        in_ward.iter().any(|f| f["id"] == "station:hg-vt-sal-01"),
        "{ward}"
    );
    assert!(
        in_ward.iter().all(|f| f["properties"]["units"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u == ward)),
        "only stations of {ward}"
    );
    for (query, field) in [
        ("near=105,9", "near"),
        ("near=105,9,-1", "near"),
        ("within=nowhere", "within"),
        ("within=%7B%22type%22%3A%22Point%22%7D", "within"),
    ] {
        let r = reqwest::Client::new()
            .get(ioc.url(&format!("/api/v1/layers/salinity/features?{query}")))
            .bearer_auth(token(auth::Role::Leader))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{query}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["field"], field, "{query}: {body}");
    }

    // Operations: readiness per check, and Prometheus metrics for operators only.
    let ready: serde_json::Value = reqwest::get(ioc.url("/readyz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["ready"], true);
    for check in ["bus", "state", "stream_core", "ingest_registry"] {
        assert_eq!(ready["checks"][check]["ready"], true, "{check}: {ready}");
    }
    let http = reqwest::Client::new();
    let metrics = http
        .get(ioc.url("/metrics"))
        .bearer_auth(token(auth::Role::Operator))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.unwrap();
    assert!(text.contains("ioc_ingest_readings_total"), "{text}");
    assert!(text.contains("ioc_core_readings_total"), "{text}");
    let as_leader = http
        .get(ioc.url("/metrics"))
        .bearer_auth(token(auth::Role::Leader))
        .send()
        .await
        .unwrap();
    assert_eq!(as_leader.status(), 403);
}

#[tokio::test]
async fn a_bad_mqtt_payload_is_dead_lettered_not_dropped() {
    let (env, prefix) = with_mqtt(isolated_env("dl"));
    let deadletter = env
        .iter()
        .find(|(k, _)| k == "IOC_TOPICS__DEADLETTER")
        .unwrap()
        .1
        .clone();
    let mut ioc = Ioc::start(&["ingest"], &env);
    ioc.ready().await;

    let out = std::process::Command::new("mosquitto_pub")
        .args([
            "-h",
            mqtt().split(':').next().unwrap(),
            "-p",
            mqtt().split(':').nth(1).unwrap(),
        ])
        .args([
            "-q",
            "1",
            "-t",
            &format!("{prefix}/sensors/hg-vt-sal-01/readings"),
            "-m",
            "{\"parameter\":\"salinity\",\"value\":\"lots\"}",
        ])
        .output()
        .expect("mosquitto_pub (package mosquitto-clients) is needed; ops/test.sh installs it");
    assert!(
        out.status.success(),
        "mosquitto_pub failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let bus = bus::KafkaBus::connect(bus::KafkaConfig {
        brokers: kafka(),
        client_id: unique("dl-reader"),
        ..Default::default()
    })
    .unwrap();
    use bus::Bus;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut sub = bus.read_all(&[&deadletter]).await.unwrap();
        let mut found = None;
        while let Some(m) = sub.next_until_caught_up().await.unwrap() {
            let env = model::Envelope::from_bytes(&m.payload.unwrap()).unwrap();
            found = Some(env);
        }
        if let Some(env) = found {
            assert_eq!(
                env.source,
                format!("mqtt:{prefix}/sensors/hg-vt-sal-01/readings")
            );
            let fields: Vec<&str> = env.data["errors"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["field"].as_str().unwrap())
                .collect();
            assert!(
                fields.contains(&"value") && fields.contains(&"ts"),
                "{fields:?}"
            );
            assert_eq!(env.data["original"]["value"], "lots");
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no dead letter within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
