//! HTTP poll against a real HTTP endpoint: each poll ingests only readings newer than what
//! it already delivered; a station's endpoint that names no station gets the configured one.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::get;
use axum::{Json, Router};
use bus::{Bus, MemoryBus, Topics};
use ingest::poll::{run, PollSource};
use ingest::{RegistryView, SensorIngest};
use serde_json::json;

#[tokio::test]
async fn polling_ingests_each_reading_once() {
    let served = Arc::new(Mutex::new(json!([
        {"parameter": "salinity", "ts": "2026-03-02T06:00:00+07:00", "value": 1.2},
        {"parameter": "salinity", "ts": "2026-03-02T06:05:00+07:00", "value": 1.4},
    ])));
    let s = served.clone();
    let app = Router::new().route(
        "/station/readings",
        get(move || {
            let s = s.clone();
            async move { Json(s.lock().unwrap().clone()) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/station/readings?key=secret",
        listener.local_addr().unwrap()
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let bus = MemoryBus::default();
    let topics = Topics::default();
    let known = Arc::new(RegistryView::default());
    let station = fixtures::stations::stations()
        .into_iter()
        .find(|s| s.id.as_str() == "hg-vt-sal-01")
        .unwrap();
    known.upsert(model::RegistryEntry::Station(station));
    tokio::spawn(
        known
            .clone()
            .follow(Arc::new(bus.clone()), topics.registry.clone()),
    );
    while !known.is_ready() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ingest = Arc::new(SensorIngest::new(
        Arc::new(bus.clone()),
        topics.clone(),
        known,
    ));
    let src = PollSource {
        name: "vt-gateway".into(),
        url,
        interval_s: 1,
        station: Some("hg-vt-sal-01".into()),
        bearer_token: None,
    };
    tokio::spawn(run(src, ingest));

    let values = |bus: MemoryBus, topic: String| async move {
        let mut sub = bus.read_all(&[&topic]).await.unwrap();
        let mut out = Vec::new();
        while let Some(m) = sub.next_until_caught_up().await.unwrap() {
            let env = model::Envelope::from_bytes(&m.payload.unwrap()).unwrap();
            assert_eq!(
                env.source, "poll:vt-gateway",
                "the source names the poll, not its URL"
            );
            out.push(env.data["value"].as_f64().unwrap());
        }
        out
    };
    tokio::time::sleep(Duration::from_millis(2500)).await; // at least two polls
    assert_eq!(
        values(bus.clone(), topics.readings.clone()).await,
        vec![1.2, 1.4],
        "re-polls add nothing"
    );

    served
        .lock()
        .unwrap()
        .as_array_mut()
        .unwrap()
        .push(json!({"parameter": "salinity", "ts": "2026-03-02T06:10:00+07:00", "value": 1.9}));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let v: Vec<f64> = values(bus.clone(), topics.readings.clone()).await;
    assert_eq!(v, vec![1.2, 1.4, 1.9], "only the new reading is added");
}
