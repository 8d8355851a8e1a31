//! Crash safety of stream-core over a real Kafka-protocol broker: readings stream in through
//! HTTP ingest while `ioc core` is killed with SIGKILL and restarted; once caught up, every
//! station's state equals what an uninterrupted run gives: each reading counted exactly once
//! and the latest value the one with the newest event time.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use common::*;
use serde_json::{json, Value};

const BATCHES: usize = 60;
const PER_BATCH: usize = 100;

#[tokio::test]
async fn killing_the_core_mid_stream_loses_and_duplicates_nothing() {
    let env = isolated_env("crash");
    let mut ingest = Ioc::start(&["ingest"], &env);
    let mut core = Ioc::start(&["core"], &env);
    let mut api = Ioc::start(&["api"], &env);
    ingest.ready().await;
    core.ready().await;
    api.ready().await;

    let stations = fixtures::stations::stations();
    let base = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
    let mut expected_count: HashMap<String, u64> = HashMap::new();
    let mut expected_latest: HashMap<String, (i64, f64)> = HashMap::new();
    let http = reqwest::Client::new();
    let tok = token(auth::Role::Sensor);
    let mut seq: u64 = 0;
    for batch in 0..BATCHES {
        let mut items = Vec::new();
        for _ in 0..PER_BATCH {
            let s = &stations[(seq as usize * 8) % stations.len()]; // 8 and 21 are coprime: every station
                                                                    // Event times go forwards, with every fifth reading arriving late (older).
            let secs = if seq % 5 == 4 {
                seq as i64 - 400
            } else {
                seq as i64
            };
            let param = if s.kind == model::StationKind::Salinity {
                "salinity"
            } else {
                "pm25"
            };
            let value = (seq % 1000) as f64 / 100.0;
            items.push(json!({"station": s.id, "parameter": param, "ts": (base + chrono::Duration::seconds(secs)).to_rfc3339(), "value": value}));
            *expected_count
                .entry(format!("station:{}", s.id))
                .or_default() += 1;
            let e = expected_latest
                .entry(format!("station:{}", s.id))
                .or_insert((i64::MIN, 0.0));
            if secs >= e.0 {
                *e = (secs, value);
            }
            seq += 1;
        }
        let r = http
            .post(ingest.url("/ingest/v1/readings"))
            .bearer_auth(&tok)
            .json(&Value::Array(items))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            202,
            "batch {batch}: {}",
            r.text().await.unwrap()
        );
        if batch == 20 {
            // Let the core get going, then crash it (no shutdown, no final commit) while
            // it still has readings to apply.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            while counted(&api).await == 0 {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the core applied nothing within 60 s"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        if batch == 25 {
            core.kill();
            let applied = counted(&api).await;
            assert!(
                applied < (26 * PER_BATCH) as u64,
                "killed mid-stream ({applied} applied)"
            );
        }
        if batch == 35 {
            core = Ioc::start(&["core"], &env);
        }
    }
    core.ready().await;

    // Wait for the replica to show every reading.
    let total = (BATCHES * PER_BATCH) as u64;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let features = loop {
        let all = station_features(&api).await;
        let counted = readings_counted(&all);
        if counted >= total || tokio::time::Instant::now() > deadline {
            assert_eq!(
                counted, total,
                "every reading counted exactly once after catching up"
            );
            break all;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };

    for f in &features {
        let id = f["id"].as_str().unwrap();
        let p = &f["properties"];
        assert_eq!(
            p["readings"].as_u64().unwrap(),
            expected_count[id],
            "{id}: readings counted"
        );
        assert!(expected_count[id] > 100, "{id} took part");
        let param = if p["kind"] == "salinity" {
            "salinity"
        } else {
            "pm25"
        };
        let (secs, value) = expected_latest[id];
        let latest = &p["latest"][param];
        assert_eq!(
            latest["value"].as_f64().unwrap(),
            value,
            "{id}: latest value"
        );
        let ts = chrono::DateTime::parse_from_rfc3339(latest["ts"].as_str().unwrap()).unwrap();
        assert_eq!(
            ts.timestamp(),
            (base + chrono::Duration::seconds(secs)).timestamp(),
            "{id}: latest event time"
        );
    }
    drop(ingest);
}

/// Readings counted over all stations, as the API shows them.
async fn counted(api: &Ioc) -> u64 {
    station_features(api)
        .await
        .iter()
        .map(|f| f["properties"]["readings"].as_u64().unwrap_or(0))
        .sum()
}
