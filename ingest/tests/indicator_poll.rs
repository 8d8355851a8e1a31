//! Indicator poll connectors against a real HTTP endpoint (a stand-in for the public-service
//! portal's statistics): the source's own field names and codes are mapped to the catalogue's,
//! the bearer token is sent (and refused without), a bad row is dead-lettered while the good
//! ones are written, a figure is written again only when the source changes it, and CSV reads
//! the same as JSON.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use bus::{Bus, MemoryBus, Topics};
use ingest::indicator_poll::{run, FieldMap, Format, IndicatorPoll};
use ingest::indicators::IndicatorIntake;
use ingest::RegistryView;
use model::indicator::IndicatorEvent;
use serde_json::json;

async fn registry(bus: &MemoryBus, topics: &Topics) -> Arc<RegistryView> {
    let view = Arc::new(RegistryView::default());
    for e in fixtures::registry() {
        view.upsert(e);
    }
    tokio::spawn(
        view.clone()
            .follow(Arc::new(bus.clone()), topics.registry.clone()),
    );
    while !view.is_ready() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    view
}

/// The indicator events on the topic so far.
async fn written(bus: &MemoryBus, topic: &str) -> Vec<model::indicator::Value> {
    let mut sub = bus.read_all(&[topic]).await.unwrap();
    let mut out = Vec::new();
    while let Some(m) = sub.next_until_caught_up().await.unwrap() {
        let env = model::Envelope::from_bytes(m.payload.as_deref().unwrap()).unwrap();
        if let IndicatorEvent::Value(v) = env.data_as::<IndicatorEvent>().unwrap() {
            out.push(v);
        }
    }
    out
}

async fn until(bus: &MemoryBus, topic: &str, n: usize) -> Vec<model::indicator::Value> {
    for _ in 0..100 {
        let w = written(bus, topic).await;
        if w.len() >= n {
            return w;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    written(bus, topic).await
}

#[tokio::test]
async fn a_portals_statistics_are_mapped_written_once_and_their_bad_rows_dead_lettered() {
    let answer = Arc::new(Mutex::new(json!({"ketqua": {"dulieu": [
        {"ma_chi_tieu": "HS_TIEPNHAN", "ma_dv": "VT", "ky": "202611", "so_lieu": "7301"},
        {"ma_chi_tieu": "HS_TIEPNHAN", "ma_dv": "NB", "ky": "202611", "so_lieu": 5120},
        {"ma_chi_tieu": "HS_TIEPNHAN", "ma_dv": "XX", "ky": "202611", "so_lieu": 1},
    ]}})));
    let a = answer.clone();
    let app = Router::new().route(
        "/thongke",
        get(move |h: HeaderMap| {
            let a = a.clone();
            async move {
                if h.get("authorization").and_then(|v| v.to_str().ok())
                    != Some("Bearer portal-secret")
                {
                    return StatusCode::UNAUTHORIZED.into_response();
                }
                axum::Json(a.lock().unwrap().clone()).into_response()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let bus = MemoryBus::default();
    let topics = Topics::default();
    let view = registry(&bus, &topics).await;
    let intake = Arc::new(IndicatorIntake::new(
        Arc::new(bus.clone()),
        topics.clone(),
        view,
    ));
    let src = IndicatorPoll {
        name: "dvc-portal".into(),
        url: format!("{base}/thongke?key=also-secret"),
        interval_s: 1,
        format: Format::Json,
        rows: "ketqua.dulieu".into(),
        fields: FieldMap {
            indicator: "ma_chi_tieu".into(),
            unit: "ma_dv".into(),
            period: "ky".into(),
            value: "so_lieu".into(),
            note: "ghi_chu".into(),
        },
        indicators: [("HS_TIEPNHAN".to_string(), "hcc-hs-tiepnhan".to_string())].into(),
        units: [
            ("VT".to_string(), "hg-vi-thanh".to_string()),
            ("NB".to_string(), "hg-nga-bay".to_string()),
        ]
        .into(),
        bearer_token: Some("portal-secret".into()),
    };
    let debug = format!("{src:?}");
    assert!(
        !debug.contains("portal-secret") && !debug.contains("also-secret"),
        "{debug}"
    );
    tokio::spawn(run(src, intake.clone()));

    let w = until(&bus, &topics.indicators, 2).await;
    assert_eq!(w.len(), 2, "the two good rows: {w:?}");
    assert_eq!(w[0].indicator.as_str(), "hcc-hs-tiepnhan");
    assert_eq!(w[0].unit.as_str(), "hg-vi-thanh");
    assert_eq!(w[0].value, 7301.0);
    assert_eq!(w[1].value, 5120.0);
    assert_eq!(w[0].by, "poll:dvc-portal");
    // The unknown unit is dead-lettered with its reason, once.
    let mut dead = bus.read_all(&[&topics.deadletter]).await.unwrap();
    let m = dead
        .next_until_caught_up()
        .await
        .unwrap()
        .expect("a dead letter");
    let env = model::Envelope::from_bytes(m.payload.as_deref().unwrap()).unwrap();
    assert!(env.data.to_string().contains("XX"), "{}", env.data);

    // Unchanged polls write nothing; a revised figure is written once.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(written(&bus, &topics.indicators).await.len(), 2);
    answer.lock().unwrap()["ketqua"]["dulieu"][1]["so_lieu"] = json!(5125);
    let w = until(&bus, &topics.indicators, 3).await;
    assert_eq!(w.len(), 3);
    assert_eq!(w[2].value, 5125.0);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(written(&bus, &topics.indicators).await.len(), 3);
}

#[test]
fn csv_answers_read_like_json_ones() {
    let src = IndicatorPoll {
        name: "s".into(),
        url: "http://x/".into(),
        interval_s: 60,
        format: Format::Csv,
        rows: String::new(),
        fields: FieldMap {
            indicator: "chitieu".into(),
            unit: "donvi".into(),
            period: "ky".into(),
            value: "giatri".into(),
            note: "ghichu".into(),
        },
        indicators: [("KCB".to_string(), "yt-kcb".to_string())].into(),
        units: Default::default(),
        bearer_token: None,
    };
    let items = src
        .items(
            "chitieu,donvi,ky,giatri,ghichu\r\nKCB,hg-vi-thanh,202611,15200,sơ bộ\r\n".as_bytes(),
        )
        .unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].indicator.as_deref(), Some("yt-kcb"));
    assert_eq!(items[0].unit.as_deref(), Some("hg-vi-thanh"));
    assert_eq!(items[0].note.as_deref(), Some("sơ bộ"));
    assert_eq!(items[0].line, Some(2));
}
