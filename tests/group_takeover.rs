//! `core.assignment = "group"` over librdkafka's mock cluster (a group coordinator that
//! rebalances and evicts a member whose session times out, which tansu 0.6 does not): two
//! `ioc core` processes split the readings' partitions by group membership; one is
//! SIGKILLed mid-stream and the other takes its partitions over by itself. Every salinity
//! station reads above the warning level, and its alert is acknowledged from the API while
//! the dead member's partitions have no owner yet. At the end every reading is counted once,
//! each station's latest value is the newest sent, and every acknowledgement was applied
//! (those for the dead member's stations by the member that took them over).

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bus::{Bus, KafkaBus, KafkaConfig};
use chrono::{TimeZone, Utc};
use common::*;
use model::{EntityId, Parameter, StationKind};
use rdkafka::mocking::MockCluster;

const PARTITIONS: i32 = 6;
const PER_ROUND: usize = 2_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_member_takes_over_the_partitions_of_one_that_died() {
    let mock = MockCluster::new(1).unwrap();
    let mut base = isolated_env("group");
    let topics = topics_of(&base);
    // The mock broker has no CreateTopics: the topics are made here, as an operator would.
    for spec in topics.specs(PARTITIONS) {
        mock.create_topic(&spec.name, spec.partitions, 1).unwrap();
    }
    base.retain(|(k, _)| k != "IOC_BUS__KAFKA__BROKERS" && k != "IOC_BUS__PARTITIONS");
    base.push(("IOC_BUS__KAFKA__BROKERS".into(), mock.bootstrap_servers()));
    base.push(("IOC_BUS__PARTITIONS".into(), PARTITIONS.to_string()));
    base.push(("IOC_BUS__KAFKA__SESSION_TIMEOUT_MS".into(), "6000".into()));
    base.push((
        "IOC_BUS__KAFKA__MAX_POLL_INTERVAL_MS".into(),
        "10000".into(),
    ));
    base.push(("IOC_BUS__KAFKA__REPLICATION_FACTOR".into(), "1".into()));
    let mut core_env = base.clone();
    core_env.push(("IOC_CORE__ASSIGNMENT".into(), "group".into()));
    core_env.push((
        "IOC_CORE__RULES__SALINITY_MIN_DURATION_S".into(),
        "0".into(),
    ));
    core_env.retain(|(k, _)| k != "IOC_REGISTRY__SEED_FIXTURES");
    // The API takes the acknowledgements: it keeps its audit log in its own database.
    let pg = common::postgres::PrivatePostgres::start();
    let mut api_env = base.clone();
    api_env.push(("IOC_STORE__DATABASE_URL".into(), pg.url()));
    let mut api = Ioc::start(&["api"], &api_env); // seeds the registry
    api.ready().await;
    let mut a = Ioc::start(&["core"], &core_env);
    let mut b = Ioc::start(&["core"], &core_env);
    a.ready().await;
    b.ready().await;

    let kafka: Arc<dyn Bus> = Arc::new(
        KafkaBus::connect(KafkaConfig {
            brokers: mock.bootstrap_servers(),
            client_id: unique("group-producer"),
            ..KafkaConfig::default()
        })
        .unwrap(),
    );
    let stations = fixtures::stations::stations();
    let base_t = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
    let mut expected: HashMap<String, (u64, f64)> = HashMap::new();
    let mut send = |round: usize| {
        let mut writes = Vec::new();
        for seq in round * PER_ROUND..(round + 1) * PER_ROUND {
            let s = &stations[seq % stations.len()];
            let (parameter, value) = match s.kind {
                StationKind::Salinity => (Parameter::Salinity, 6.0 + (seq % 50) as f64 / 100.0),
                _ => (Parameter::Pm25, 5.0 + (seq % 100) as f64 / 10.0),
            };
            let ts = (base_t + chrono::Duration::seconds(seq as i64)).fixed_offset();
            let r = reading(&s.id, parameter, ts, value);
            let entity = EntityId::station(&s.id);
            let e = expected.entry(entity.to_string()).or_default();
            *e = (e.0 + 1, value);
            writes.push(publish_reading(
                kafka.clone(),
                topics.readings.clone(),
                r,
                "test:group",
            ));
        }
        writes
    };
    for w in futures::future::join_all(send(0)).await {
        w.expect("the broker took the reading");
    }
    let all = counted(&api, PER_ROUND as u64).await;
    assert_eq!(
        readings_counted(&all),
        PER_ROUND as u64,
        "both members at work"
    );

    // The group evicts the dead member after its session and the other takes over.
    let salinity: Vec<String> = stations
        .iter()
        .filter(|s| s.kind == StationKind::Salinity)
        .map(|s| EntityId::station(&s.id).to_string())
        .collect();
    assert!(salinity.len() >= 3, "fixture salinity stations");
    let alerts = alerts_on(&api, &salinity).await;

    // One member dies; while the group has not yet evicted it, every alert is acknowledged.
    b.kill();
    for id in &alerts {
        let status = reqwest::Client::new()
            .post(api.url(&format!("/api/v1/alerts/{id}/acknowledge")))
            .bearer_auth(token(auth::Role::Operator))
            .json(&serde_json::json!({"note": "đã xem"}))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 202, "{id}");
    }
    for w in futures::future::join_all(send(1)).await {
        w.expect("the broker took the reading");
    }
    let all = counted(&api, 2 * PER_ROUND as u64).await;
    for f in &all {
        let id = f["id"].as_str().unwrap();
        let Some((n, value)) = expected.get(id) else {
            continue;
        };
        let p = &f["properties"];
        assert_eq!(
            p["readings"].as_u64(),
            Some(*n),
            "{id}: every reading counted once"
        );
        let param = if p["kind"] == "salinity" {
            "salinity"
        } else {
            "pm25"
        };
        let got = p["latest"][param]["value"].as_f64().unwrap();
        assert!(
            (got - value).abs() < 1e-9,
            "{id}: latest {got}, sent {value}"
        );
    }
    assert_eq!(readings_counted(&all), 2 * PER_ROUND as u64);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let list = get_json(
            &api,
            "/api/v1/alerts?state=all&limit=1000",
            auth::Role::Operator,
        )
        .await;
        let waiting: Vec<&str> = list["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| alerts.iter().any(|id| a["id"] == id.as_str()))
            .filter(|a| a["state"] != "acknowledged")
            .map(|a| a["entity"].as_str().unwrap_or(""))
            .collect();
        if waiting.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "acknowledgements never applied on {waiting:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    a.kill();
    api.kill();
}

/// The ids of the salinity-warning alerts on `entities`, once the API shows one on each.
async fn alerts_on(api: &Ioc, entities: &[String]) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let list = get_json(api, "/api/v1/alerts?limit=1000", auth::Role::Operator).await;
        let ids: Vec<String> = list["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["rule"] == "salinity_warning")
            .filter(|a| entities.iter().any(|e| a["entity"] == e.as_str()))
            .filter_map(|a| a["id"].as_str().map(String::from))
            .collect();
        if ids.len() == entities.len() {
            return ids;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "alerts on {} of {} stations: {list}",
            ids.len(),
            entities.len()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The station features once they count `total` readings (or after 90 s, as they are).
async fn counted(api: &Ioc, total: u64) -> Vec<serde_json::Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let all = station_features(api).await;
        if readings_counted(&all) == total || tokio::time::Instant::now() > deadline {
            return all;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
