//! Several `ioc core` instances over the real broker, as README's Scale-out section tells an
//! operator to run them: three instances on partitions [0,1], [2,3] and [4,5] of 6, 100,000
//! readings for 200 stations, field reports worked through their life from the API, alert
//! acknowledgements from the API and registry renames during the run, one instance SIGKILLed twice and restarted, then killed for good and its
//! partitions taken over by another (static assignment: restarted with both lists).
//!
//! At the end the picture is what one uninterrupted instance gives on the same input: every
//! reading counted once, each latest value the newest, each acknowledgement applied once by
//! the owner of its alert, each report transition applied once by the owner of its report,
//! renamed stations renamed, and no station's count ever moved
//! backwards on `ioc.state` (every record a screen could have seen), and history holds every
//! reading once.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bus::{Bus, KafkaBus, KafkaConfig};
use chrono::{TimeZone, Utc};
use common::postgres::PrivatePostgres;
use common::*;
use model::{EntityId, Envelope, EventKind, Parameter, RegistryEntry, Station, StationKind};
use serde_json::{json, Value};
use sqlx::Connection;

const TOTAL: usize = 100_000;
const LOAD_STATIONS: usize = 179; // + the 21 fixture stations: 200
const PARTITIONS: i32 = 6;
const CHUNK: usize = 2_000;

fn core_env(base: &[(String, String)], partitions: &str) -> Vec<(String, String)> {
    let mut env = base.to_vec();
    env.push(("IOC_CORE__PARTITIONS".into(), partitions.into()));
    env
}

/// Which of the three instances owns a station: its key's partition, two per instance.
fn owner(station: &Station) -> usize {
    (bus::partition_for(EntityId::station(&station.id).as_str(), PARTITIONS) / 2) as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_cores_on_split_partitions_give_the_picture_of_one() {
    // History too: every instance's sink writes its own partitions' readings.
    let pg = PrivatePostgres::start();
    let mut base = isolated_env("scale");
    base.push(("IOC_STORE__DATABASE_URL".into(), pg.url()));
    base.push(("IOC_HISTORY__GROUP".into(), unique("scale-hist")));
    base.retain(|(k, _)| k != "IOC_BUS__PARTITIONS" && k != "IOC_REGISTRY__SEED_FIXTURES");
    base.push(("IOC_BUS__PARTITIONS".into(), PARTITIONS.to_string()));
    base.push(("IOC_DEMO__LOAD_STATIONS".into(), LOAD_STATIONS.to_string()));
    base.push((
        "IOC_CORE__RULES__SALINITY_MIN_DURATION_S".into(),
        "0".into(),
    ));
    // Only the API seeds the registry: a core seeding again at restart would undo renames.
    let mut api_env = base.clone();
    api_env.push(("IOC_REGISTRY__SEED_FIXTURES".into(), "true".into()));
    let mut api = Ioc::start(&["api"], &api_env);
    api.ready().await;
    let lists = ["[0,1]", "[2,3]", "[4,5]"];
    let mut cores: Vec<Ioc> = lists
        .iter()
        .map(|p| Ioc::start(&["core"], &core_env(&base, p)))
        .collect();
    for c in &mut cores {
        c.ready().await;
    }

    let topics = topics_of(&base);
    let kafka: Arc<dyn Bus> = Arc::new(
        KafkaBus::connect(KafkaConfig {
            brokers: kafka(),
            client_id: unique("scale-producer"),
            ..KafkaConfig::default()
        })
        .unwrap(),
    );
    let mut stations: Vec<Station> = fixtures::stations::stations();
    stations.extend(fixtures::load::stations(LOAD_STATIONS));
    assert_eq!(stations.len(), 200);
    // Two salinity stations per instance read above the warning level all run long: one
    // alert each, acknowledged from the API.
    let mut alarms: Vec<Station> = Vec::new();
    for i in 0..3 {
        alarms.extend(
            stations
                .iter()
                .filter(|s| s.id.as_str().starts_with("load-"))
                .filter(|s| s.kind == StationKind::Salinity && owner(s) == i)
                .take(2)
                .cloned(),
        );
    }
    assert_eq!(alarms.len(), 6);
    // Four of instance 1's stations are renamed while it is down.
    let renamed: Vec<Station> = stations
        .iter()
        .filter(|s| owner(s) == 1 && !alarms.contains(s))
        .take(4)
        .cloned()
        .collect();
    assert_eq!(renamed.len(), 4);

    // Nine field reports, three per instance, filed at the start and worked by their agency
    // during the run: started while every instance is up, resolved while instance 1 is down
    // (its reports' resolutions wait on its partitions).
    let reports = scale_reports();
    let agency = auth::Authenticator::new(SECRET.as_bytes()).unwrap().issue(
        "qldt-scale",
        auth::Role::Agency,
        Some(REPORT_AGENCY),
        chrono::Duration::hours(1),
    );

    let base_t = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
    let mut expected_count: HashMap<String, u64> = HashMap::new();
    let mut expected_latest: HashMap<String, (i64, f64)> = HashMap::new();
    let mut acked: BTreeMap<String, String> = BTreeMap::new(); // station entity -> alert id
    let mut sent = 0usize;
    let mut chunk_no = 0usize;
    while sent < TOTAL {
        let mut writes = Vec::new();
        for seq in sent..(sent + CHUNK).min(TOTAL) {
            let s = &stations[(seq * 7) % stations.len()]; // 7 and 200 are coprime
                                                           // Every fifth reading arrives late (older than the one before it).
            let secs = if seq % 5 == 4 {
                seq as i64 - 900
            } else {
                seq as i64
            };
            let alarm = alarms.contains(s);
            let (parameter, value) = match s.kind {
                StationKind::Salinity if alarm => {
                    (Parameter::Salinity, 6.0 + (seq % 10) as f64 / 100.0)
                }
                StationKind::Salinity => (Parameter::Salinity, 0.1 + (seq % 50) as f64 / 100.0),
                _ => (Parameter::Pm25, 5.0 + (seq % 100) as f64 / 10.0),
            };
            let ts = (base_t + chrono::Duration::seconds(secs)).fixed_offset();
            let r = reading(&s.id, parameter, ts, value);
            let entity = EntityId::station(&s.id);
            *expected_count.entry(entity.to_string()).or_default() += 1;
            let e = expected_latest
                .entry(entity.to_string())
                .or_insert((i64::MIN, 0.0));
            if secs >= e.0 {
                *e = (secs, value);
            }
            writes.push(publish_reading(
                kafka.clone(),
                topics.readings.clone(),
                r,
                "test:scale",
            ));
        }
        for w in futures::future::join_all(writes).await {
            w.expect("the broker took the reading");
        }
        sent = (sent + CHUNK).min(TOTAL);
        chunk_no += 1;
        match chunk_no {
            2 => {
                for (created, _) in &reports {
                    let env = Envelope::new(
                        EventKind::ReportCreated,
                        EntityId::new(model::EntityKind::Report, &created.id),
                        created.requested,
                        Utc::now(),
                        "test:scale",
                        serde_json::to_value(created).unwrap(),
                    );
                    kafka
                        .publish(&topics.reports, env.entity.as_str(), Some(env.to_bytes()))
                        .await
                        .unwrap();
                }
            }
            6 => {
                let steps = reports.iter().map(|(r, _)| async {
                    let id = r.id.to_string();
                    wait_for_report(&api, &id, "assigned").await;
                    let (s, b) = report_step(&api, &id, &agency, json!({"action": "start"})).await;
                    assert_eq!(s, 200, "{id}: {b}");
                });
                futures::future::join_all(steps).await;
            }
            // Every alarm raised by now: acknowledge those of instances 0 and 2.
            8 => {
                for s in alarms.iter().filter(|s| owner(s) != 1) {
                    let id = wait_for_alert(&api, s).await;
                    assert_eq!(ack(&api, &id).await, 202);
                    acked.insert(EntityId::station(&s.id).to_string(), id);
                }
            }
            12 => {
                // Instance 1's alarms are raised too; then it crashes.
                let ids: Vec<(String, String)> = {
                    let mut v = Vec::new();
                    for s in alarms.iter().filter(|s| owner(s) == 1) {
                        v.push((
                            EntityId::station(&s.id).to_string(),
                            wait_for_alert(&api, s).await,
                        ));
                    }
                    v
                };
                cores[1].kill();
                // While it is down: its alerts are acknowledged (the action waits on its
                // partitions) and four of its stations are renamed.
                for (entity, id) in ids {
                    assert_eq!(ack(&api, &id).await, 202);
                    acked.insert(entity, id);
                }
                let entries: Vec<RegistryEntry> = renamed
                    .iter()
                    .map(|s| {
                        let mut s = s.clone();
                        s.name = format!("{} (đổi tên)", s.name);
                        RegistryEntry::Station(s)
                    })
                    .collect();
                ingest::registry::publish(&*kafka, &topics.registry, "test:rename", &entries)
                    .await
                    .unwrap();
                // Every report resolved: at once where the owner is up, written and not yet
                // shown (202) where it is instance 1.
                let steps = reports.iter().map(|(r, owner)| {
                    let agency = &agency;
                    let api = &api;
                    async move {
                        let id = r.id.to_string();
                        let body = json!({"action": "resolve", "result": "Đã xử lý xong"});
                        let (s, b) = report_step(api, &id, agency, body).await;
                        let want = if *owner == 1 { 202 } else { 200 };
                        assert_eq!(s, want, "{id} (instance {owner}): {b}");
                    }
                });
                futures::future::join_all(steps).await;
            }
            20 => {
                cores[1] = Ioc::start(&["core"], &core_env(&base, lists[1]));
                cores[1].ready().await;
            }
            30 => cores[1].kill(),
            34 => {
                cores[1] = Ioc::start(&["core"], &core_env(&base, lists[1]));
                cores[1].ready().await;
            }
            42 => {
                // Instance 1 dies for good: instance 0 takes its partitions over.
                cores[1].kill();
                cores[0].kill();
                cores[0] = Ioc::start(&["core"], &core_env(&base, "[0,1,2,3]"));
                cores[0].ready().await;
            }
            _ => {}
        }
    }

    // Caught up: every reading counted once, latest values the newest.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let features = loop {
        let all = station_features(&api).await;
        let counted = readings_counted(&all);
        if counted == TOTAL as u64 || tokio::time::Instant::now() > deadline {
            let wrong: Vec<String> = all
                .iter()
                .filter_map(|f| {
                    let id = f["id"].as_str()?;
                    let n = f["properties"]["readings"].as_u64().unwrap_or(0);
                    let p = bus::partition_for(id, PARTITIONS);
                    (n != expected_count[id])
                        .then(|| format!("{id} (p{p}): {n} of {}", expected_count[id]))
                })
                .collect();
            assert_eq!(
                counted, TOTAL as u64,
                "every reading counted exactly once: {wrong:?}"
            );
            break all;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(features.len(), 200);
    for f in &features {
        let id = f["id"].as_str().unwrap();
        let p = &f["properties"];
        assert_eq!(
            p["readings"].as_u64(),
            Some(expected_count[id]),
            "{id}: readings counted"
        );
        let param = if p["kind"] == "salinity" {
            "salinity"
        } else {
            "pm25"
        };
        let (secs, value) = expected_latest[id];
        let latest = &p["latest"][param];
        // The core stores salinity in ‰ after a unit round trip: equal within a float step.
        let got = latest["value"].as_f64().unwrap();
        assert!(
            (got - value).abs() < 1e-9,
            "{id}: latest value {got}, sent {value}"
        );
        let ts = chrono::DateTime::parse_from_rfc3339(latest["ts"].as_str().unwrap()).unwrap();
        assert_eq!(
            ts.timestamp(),
            (base_t + chrono::Duration::seconds(secs)).timestamp(),
            "{id}"
        );
        assert!(p["last_seen"].is_string(), "{id}: last_seen kept");
    }
    for s in &renamed {
        let id = EntityId::station(&s.id).to_string();
        let f = features.iter().find(|f| f["id"] == id.as_str()).unwrap();
        assert_eq!(
            f["properties"]["name"],
            format!("{} (đổi tên)", s.name),
            "{id} renamed"
        );
    }

    // One alert per alarm station, acknowledged once, by the test's operator.
    let list = get_json(
        &api,
        "/api/v1/alerts?state=all&limit=1000",
        auth::Role::Operator,
    )
    .await;
    for (entity, id) in &acked {
        let ours: Vec<&Value> = list["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["entity"] == entity.as_str() && a["rule"] == "salinity_warning")
            .collect();
        assert_eq!(ours.len(), 1, "{entity}: one alert: {ours:?}");
        assert_eq!(ours[0]["id"], id.as_str());
        assert_eq!(ours[0]["state"], "acknowledged", "{entity}: {:?}", ours[0]);
    }

    // Every report resolved, its life exactly created → assign (its routing) → start →
    // resolve, each step once.
    for (r, owner) in &reports {
        let id = r.id.to_string();
        let v = wait_for_report(&api, &id, "resolved").await;
        let actions: Vec<&str> = v["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["action"].as_str().unwrap())
            .collect();
        assert_eq!(
            actions,
            ["created", "assign", "start", "resolve"],
            "{id} (instance {owner}): {v}"
        );
    }

    // The split `ioc api` (no ingest beside it) takes a new report over Open311 and routes
    // a re-assignment by the registry's agencies, as `ioc serve` does.
    let filed = reqwest::Client::new()
        .post(api.url("/open311/v2/requests.json"))
        .bearer_auth(token(auth::Role::Citizen))
        .form(&[
            ("service_code", "infra.drainage_flooding"),
            ("lat", "9.7841"),
            ("long", "105.4701"),
            ("description", "Ngập sau mưa, đường Trần Hưng Đạo"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        filed.status().as_u16(),
        201,
        "Open311 POST to the api alone"
    );
    let filed: Value = filed.json().await.unwrap();
    let new_id = filed[0]["service_request_id"].as_str().unwrap().to_string();
    let (s, b) = report_step(
        &api,
        &new_id,
        &token(auth::Role::Operator),
        json!({"action": "assign", "agency": "hg-sxd"}),
    )
    .await;
    assert_eq!(s, 200, "assigned by the api alone: {b}");
    assert_eq!(b["agency"], "hg-sxd", "{b}");

    // History holds every reading once: the sinks of the three instances (and the one that
    // took over) wrote disjoint partitions, and a replayed batch adds nothing.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let mut rows = None;
    while tokio::time::Instant::now() < deadline {
        if let Ok(mut c) = sqlx::PgConnection::connect(&pg.url()).await {
            rows = sqlx::query_scalar::<_, i64>("SELECT count(*) FROM readings")
                .fetch_one(&mut c)
                .await
                .ok();
        }
        if rows == Some(TOTAL as i64) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(rows, Some(TOTAL as i64), "every reading in history, once");

    // Every record of every station on ioc.state, in order: counts never go backwards.
    let mut sub = kafka.read_all(&[&topics.state]).await.unwrap();
    let mut last: HashMap<String, u64> = HashMap::new();
    let mut records = 0usize;
    while let Some(m) = sub.next_until_caught_up().await.unwrap() {
        let (Some(key), Some(payload)) = (m.key.as_deref(), m.payload.as_deref()) else {
            continue;
        };
        if !key.starts_with("station:") {
            continue;
        }
        let rec: Value = serde_json::from_slice(payload).unwrap();
        let n = rec["properties"]["readings"].as_u64().unwrap_or(0);
        let before = last.insert(key.to_string(), n).unwrap_or(0);
        assert!(
            n >= before,
            "{key}: readings went from {before} back to {n} at offset {}",
            m.offset
        );
        records += 1;
    }
    assert!(records > 200, "{records} station records on ioc.state");
}

const REPORT_AGENCY: &str = "hg-vt-qldt";

/// Nine reports in Vị Thanh routed to its urban-management office, three owned by each
/// instance, with the instance that owns each.
fn scale_reports() -> Vec<(model::report::ReportCreated, usize)> {
    let mut per_owner = [0; 3];
    let mut out = Vec::new();
    for i in 0.. {
        if out.len() == 9 {
            break;
        }
        let id = model::LocalId::parse("report", &format!("pa-20261101-sc{i:04}")).unwrap();
        let owner = (bus::partition_for(
            EntityId::new(model::EntityKind::Report, &id).as_str(),
            PARTITIONS,
        ) / 2) as usize;
        if per_owner[owner] == 3 {
            continue;
        }
        per_owner[owner] += 1;
        let created = model::report::ReportCreated {
            id,
            event_id: uuid::Uuid::now_v7(),
            service_code: "infra.drainage_flooding".into(),
            description: format!("Ngập sâu đoạn {i}"),
            lat: 9.7841,
            lon: 105.4701,
            address: None,
            media: vec![],
            attributes: Default::default(),
            contact: Default::default(),
            reporter: "citizen:scale".into(),
            reporter_role: Some("citizen".into()),
            requested: Utc::now().fixed_offset(),
            routing: model::report::life::Routing {
                units: vec![model::LocalId::parse("unit", "hg-vi-thanh").unwrap()],
                unit_names: vec!["Vị Thanh".into()],
                agency: Some(model::LocalId::parse("agency", REPORT_AGENCY).unwrap()),
                agency_name: Some("Phòng Quản lý đô thị thành phố Vị Thanh".into()),
                rule: "infra.* tại hg-vi-thanh".into(),
                level: Some("thành phố".into()),
            },
            deadline_h: 72,
        };
        out.push((created, owner));
    }
    out
}

/// The report, once the API shows it in `state`.
async fn wait_for_report(api: &Ioc, id: &str, state: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let v = get_json(api, &format!("/api/v1/reports/{id}"), auth::Role::Operator).await;
        if v["state"] == state {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{id} never {state}: {v}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The id of the salinity alert on `s`, once the API shows it.
async fn wait_for_alert(api: &Ioc, s: &Station) -> String {
    let entity = EntityId::station(&s.id).to_string();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let list = get_json(api, "/api/v1/alerts?limit=1000", auth::Role::Operator).await;
        if let Some(a) = list["alerts"].as_array().and_then(|a| {
            a.iter()
                .find(|a| a["entity"] == entity.as_str() && a["rule"] == "salinity_warning")
        }) {
            return a["id"].as_str().unwrap().to_string();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no alert on {entity}: {list}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn ack(api: &Ioc, id: &str) -> u16 {
    reqwest::Client::new()
        .post(api.url(&format!("/api/v1/alerts/{id}/acknowledge")))
        .bearer_auth(token(auth::Role::Operator))
        .json(&json!({"note": "đã xem"}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}
