//! History end to end: `ioc serve` on a real Kafka-protocol broker writing to a real
//! PostgreSQL of the test's own (so the test can stop it), every test once per layout (plain
//! PostgreSQL, and TimescaleDB with its aggregates materialised part-way, so late rows land
//! below the watermark):
//!
//! - the database stops mid-run: readings keep reaching screens live, `/readyz` says history
//!   is not ready and why, and once the database is back every reading is stored, once;
//! - a crash after the history write but before the offset commit: the restart reads the
//!   readings again and stores none of them twice;
//! - series and replay (HTTP and websocket) read back what was written;
//! - TimescaleDB: a failing policy job shows in `/readyz`, and the next start replaces it.

mod common;

use std::time::Duration;

use chrono::{DateTime, DurationRound, Utc};
use common::postgres::{Layout, PrivatePostgres};
use common::*;
use futures::SinkExt;
use serde_json::{json, Value};
use sqlx::Connection;
use tokio_tungstenite::tungstenite::Message;

const STATIONS: [&str; 2] = ["hg-vt-sal-01", "tg-my-tho-sal"];

/// Two days ago at midnight UTC: relative to now, so the same paths run whatever the date.
fn base() -> DateTime<Utc> {
    static BASE: std::sync::OnceLock<DateTime<Utc>> = std::sync::OnceLock::new();
    *BASE.get_or_init(|| {
        Utc::now()
            .duration_trunc(chrono::Duration::days(1))
            .unwrap()
            - chrono::Duration::days(2)
    })
}

/// What TimescaleDB's refresh policies do when their jobs run (nothing on plain PostgreSQL).
async fn policies_ran(pg: &PrivatePostgres) {
    if pg.layout() != Layout::Timescale {
        return;
    }
    let s = store::PgStore::open(&store::StoreConfig {
        database_url: Some(store::DatabaseUrl::new(pg.url())),
        timescale: store::TimescaleMode::Require,
        ..Default::default()
    })
    .unwrap();
    s.prepare().await.unwrap();
    s.refresh_aggregates().await.unwrap();
}

/// Readings `first..first + n`: alternate stations, one every 10 s of event time.
fn readings(first: usize, n: usize) -> Vec<Value> {
    (first..first + n)
        .map(|i| {
            json!({"station": STATIONS[i % 2], "parameter": "salinity",
                   "ts": (base() + chrono::Duration::seconds(10 * i as i64)).to_rfc3339(),
                   "value": (i % 997) as f64 / 100.0})
        })
        .collect()
}

async fn post(ioc: &Ioc, items: Vec<Value>) {
    for chunk in items.chunks(100) {
        let r = reqwest::Client::new()
            .post(ioc.url("/ingest/v1/readings"))
            .bearer_auth(token(auth::Role::Sensor))
            .json(&Value::Array(chunk.to_vec()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    }
}

async fn db_count(url: &str, sql: &str) -> Option<i64> {
    let mut c = sqlx::PgConnection::connect(url).await.ok()?;
    sqlx::query_scalar(sql).fetch_one(&mut c).await.ok()
}

/// Waits until the database holds `n` readings; panics with what it saw otherwise.
async fn wait_for_rows(url: &str, n: i64, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    let mut seen = None;
    while tokio::time::Instant::now() < deadline {
        seen = db_count(url, "SELECT count(*) FROM readings").await;
        if seen == Some(n) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("expected {n} readings in the database within {within:?}; last saw {seen:?}");
}

async fn readyz(ioc: &Ioc) -> (u16, Value) {
    let r = reqwest::get(ioc.url("/readyz")).await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

fn env_with(pg: &PrivatePostgres, tag: &str) -> Vec<(String, String)> {
    let mut env = isolated_env(tag);
    env.push(("IOC_STORE__DATABASE_URL".into(), pg.url()));
    env.push((
        "IOC_STORE__TIMESCALE".into(),
        pg.layout().store_mode().into(),
    ));
    env.push(("IOC_HISTORY__UPKEEP_S".into(), "1".into()));
    env.push(("IOC_HISTORY__GROUP".into(), unique("hist")));
    env.push(("IOC_HISTORY__MAX_BACKOFF_MS".into(), "1000".into()));
    env
}

async fn database_down_mid_run_loses_nothing_and_screens_stay_live(layout: Layout) {
    let pg = PrivatePostgres::start_layout(layout);
    let env = env_with(&pg, "hist-down");
    let mut ioc = Ioc::start(&["serve"], &env);
    ioc.ready().await;
    let (_, ready) = readyz(&ioc).await;
    println!(
        "layout {layout:?}: history backend {}",
        ready["checks"]["history"]["backend"]
    );
    let (mut ws, _) = ws_subscribe(&ioc, "live", &["salinity"], None).await;

    post(&ioc, readings(0, 500)).await;
    wait_for_rows(&pg.url(), 500, Duration::from_secs(60)).await;
    // Materialised now (TimescaleDB): what arrives after the outage is below the watermark.
    policies_ran(&pg).await;

    pg.down();
    post(&ioc, readings(500, 500)).await;
    // Live state does not wait for the database: the last value reaches the screen.
    let last = readings(999, 1).remove(0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let d = next_op(&mut ws, "delta", Duration::from_secs(30))
            .await
            .expect("live deltas while the database is down");
        let hit = d["upsert"].as_array().unwrap().iter().any(|f| {
            f["id"] == format!("station:{}", last["station"].as_str().unwrap())
                && f["properties"]["latest"]["salinity"]["value"] == last["value"]
        });
        if hit {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the newest reading never reached the screen"
        );
    }
    // Readiness says why history is behind.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = readyz(&ioc).await;
        if status == 503 && body["checks"]["history"]["ready"] == false {
            println!("while down: {}", body["checks"]["history"]);
            assert!(body["checks"]["history"]["reason"]
                .as_str()
                .unwrap()
                .contains("unavailable"));
            assert_eq!(
                body["checks"]["state"]["ready"], true,
                "live state stays ready"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "readyz never reported history down: {body}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;

    pg.up();
    wait_for_rows(&pg.url(), 1000, Duration::from_secs(90)).await;
    for t in ["readings_5m", "readings_1h"] {
        let rollup = db_count(&pg.url(), &format!("SELECT sum(n)::int8 FROM {t}")).await;
        assert_eq!(rollup, Some(1000), "{t} counts every reading once");
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while readyz(&ioc).await.0 != 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "history never became ready again"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // Series: 10-minute buckets over the readings of hg-vt-sal-01.
    let from = base().to_rfc3339();
    let to = (base() + chrono::Duration::seconds(10_000)).to_rfc3339();
    let q =
        format!("/api/v1/stations/hg-vt-sal-01/series?param=salinity&step=10m&from={from}&to={to}")
            .replace('+', "%2B");
    let s = get_json(&ioc, &q, auth::Role::Leader).await;
    assert_eq!(s["source"], "rollup_5m", "{s}");
    let n: i64 = s["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["n"].as_i64().unwrap())
        .sum();
    assert_eq!(
        n, 500,
        "every stored reading of the station is in the series"
    );
    let first = &s["points"][0];
    // 00:00-00:10: readings 0, 2, ..., 58 of this station: values 0.00..0.58 step 0.02.
    assert_eq!(
        (
            first["n"].as_i64(),
            first["min"].as_f64(),
            first["max"].as_f64()
        ),
        (Some(30), Some(0.0), Some(0.58))
    );
    assert!((first["avg"].as_f64().unwrap() - 0.29).abs() < 1e-9);

    // Replay over HTTP, unpaced: state before 01:00, then every reading to 02:00.
    let from = (base() + chrono::Duration::hours(1))
        .to_rfc3339()
        .replace('+', "%2B");
    let to = (base() + chrono::Duration::hours(2))
        .to_rfc3339()
        .replace('+', "%2B");
    let body = reqwest::Client::new()
        .get(ioc.url(&format!(
            "/api/v1/replay?layers=salinity&from={from}&to={to}&speed=0"
        )))
        .bearer_auth(token(auth::Role::Operator))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let lines: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["op"], "replay_start");
    let at_start = lines[0]["features"]["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "station:hg-vt-sal-01")
        .unwrap()["properties"]["latest"]["salinity"]["value"]
        .clone();
    assert_eq!(
        at_start,
        json!(358.0 / 100.0),
        "hg-vt-sal-01 as it was just before 01:00 (reading 358)"
    );
    let end = lines.last().unwrap();
    assert_eq!(end["op"], "replay_end");
    assert_eq!(
        end["readings"], 360,
        "every reading between 01:00 and 02:00"
    );
    println!("HTTP replay: {} lines, {}", lines.len(), end);

    // The same over the websocket, paced at 3600x: an hour of events in about a second.
    let t = token(auth::Role::Operator);
    let (mut ws2, _) = tokio_tungstenite::connect_async(ws_request(
        &format!("ws://127.0.0.1:{}/ws", ioc.port),
        &t,
    ))
    .await
    .unwrap();
    let op = json!({"op": "replay", "id": "r1", "layers": ["salinity"],
                    "from": (base() + chrono::Duration::hours(1)).to_rfc3339(),
                    "to": (base() + chrono::Duration::hours(2)).to_rfc3339(), "speed": 3600});
    ws2.send(Message::Text(op.to_string().into()))
        .await
        .unwrap();
    let start = next_op(&mut ws2, "replay_start", Duration::from_secs(20))
        .await
        .expect("replay_start");
    assert_eq!(start["replay"], "r1");
    let mut deltas = 0;
    let mut readings_seen = 0;
    let started = std::time::Instant::now();
    loop {
        let Some(m) = next_any(&mut ws2, Duration::from_secs(20)).await else {
            panic!("replay stalled")
        };
        match m["op"].as_str() {
            Some("replay_delta") => {
                deltas += 1;
                readings_seen += m["readings"].as_i64().unwrap();
            }
            Some("replay_end") => {
                assert_eq!(m["readings"], 360);
                break;
            }
            _ => {}
        }
    }
    let took = started.elapsed();
    assert_eq!(readings_seen, 360);
    println!("websocket replay at 3600x: {deltas} frames in {took:?}");
    assert!(
        took >= Duration::from_millis(500),
        "paced, not dumped: an hour at 3600x took {took:?}"
    );
}

async fn next_any(ws: &mut Ws, wait: Duration) -> Option<Value> {
    use futures::StreamExt;
    loop {
        match tokio::time::timeout(wait, ws.next()).await.ok()?? {
            Ok(Message::Text(t)) => return Some(serde_json::from_str(&t).unwrap()),
            Ok(_) => continue,
            Err(e) => panic!("websocket error: {e}"),
        }
    }
}

async fn a_crash_between_history_write_and_offset_commit_stores_nothing_twice(layout: Layout) {
    let pg = PrivatePostgres::start_layout(layout);
    println!("layout {layout:?}");
    let mut env = env_with(&pg, "hist-crash");
    // First run: offsets are (practically) never committed, so every reading written to the
    // database is still uncommitted when the process is killed.
    let mut first_env = env.clone();
    first_env.push((
        "IOC_BUS__KAFKA__COMMIT_INTERVAL_MS".into(),
        "3600000".into(),
    ));
    let mut ioc = Ioc::start(&["serve"], &first_env);
    ioc.ready().await;
    post(&ioc, readings(0, 1000)).await;
    wait_for_rows(&pg.url(), 1000, Duration::from_secs(60)).await;
    if layout == Layout::Timescale {
        a_failing_job_shows_in_readyz(&ioc, &pg).await;
    }
    ioc.kill();

    env.push(("IOC_BUS__KAFKA__COMMIT_INTERVAL_MS".into(), "500".into()));
    let mut again = Ioc::start(&["serve"], &env);
    again.ready().await;
    // The restart reads all 1000 again and finds every one stored.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (_, body) = readyz(&again).await;
        let h = &body["checks"]["history"];
        if h["duplicates_skipped"] == 1000 {
            assert_eq!(h["written"], 0, "nothing new was written: {h}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the restart did not re-read the uncommitted readings: {h}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(
        db_count(&pg.url(), "SELECT count(*) FROM readings").await,
        Some(1000)
    );
    for t in ["readings_5m", "readings_1h"] {
        assert_eq!(
            db_count(&pg.url(), &format!("SELECT sum(n)::int8 FROM {t}")).await,
            Some(1000),
            "{t}"
        );
    }
    // The registry table knows the stations (from the fixtures the process published).
    assert_eq!(
        db_count(&pg.url(), "SELECT count(*) FROM registry WHERE entity = 'station:hg-vt-sal-01' AND NOT removed AND data->>'name' = 'Cái Lớn – Vị Thanh'").await,
        Some(1)
    );
    if layout == Layout::Timescale {
        // The broken job was replaced by the configuration's at the restart.
        let compress_after = db_count(&pg.url(), "SELECT extract(epoch FROM (config->>'compress_after')::interval)::int8 FROM timescaledb_information.jobs WHERE proc_name = 'policy_compression'").await;
        assert_eq!(
            compress_after,
            Some(7 * 86_400),
            "the compression policy follows the configuration again"
        );
    }
    // And readings after the restart are stored as usual, late ones included.
    policies_ran(&pg).await;
    post(&again, readings(1000, 100)).await;
    wait_for_rows(&pg.url(), 1100, Duration::from_secs(60)).await;
    for t in ["readings_5m", "readings_1h"] {
        assert_eq!(
            db_count(&pg.url(), &format!("SELECT sum(n)::int8 FROM {t}")).await,
            Some(1100),
            "{t}"
        );
    }
}

/// Breaks the compression job's configuration and has the scheduler run it: the job fails,
/// whatever the server, and `/readyz` names it (without making history unready: the store
/// keeps its rollups exact itself).
async fn a_failing_job_shows_in_readyz(ioc: &Ioc, pg: &PrivatePostgres) {
    let mut c = sqlx::PgConnection::connect(&pg.url()).await.unwrap();
    let job: i32 = sqlx::query_scalar(
        "SELECT job_id FROM timescaledb_information.jobs WHERE proc_name = 'policy_compression'",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    sqlx::query("SELECT alter_job($1, config => jsonb_build_object('hypertable_id', (config->>'hypertable_id')::int), next_start => now()) FROM timescaledb_information.jobs WHERE job_id = $1")
        .bind(job)
        .execute(&mut c)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = readyz(ioc).await;
        let h = &body["checks"]["history"];
        let listed = h["jobs_failing"]
            .as_array()
            .map(|a| a.iter().any(|j| j["job_id"] == job))
            .unwrap_or(false);
        if listed {
            println!("failing job in /readyz: {h}");
            assert_eq!(h["ready"], true, "history stays ready: {h}");
            assert_eq!(status, 200);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/readyz never listed failing job {job}: {h}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// One test per case, running it on each layout in turn.
macro_rules! on_both_layouts {
    ($($name:ident),* $(,)?) => {
        mod on_both_layouts {
            $(
                #[tokio::test]
                async fn $name() {
                    for layout in super::Layout::ALL {
                        super::$name(layout).await;
                    }
                }
            )*
        }
    };
}

on_both_layouts!(
    database_down_mid_run_loses_nothing_and_screens_stay_live,
    a_crash_between_history_write_and_offset_commit_stores_nothing_twice,
);

/// `store.timescale = "auto"` on a server that has TimescaleDB installed but does not preload
/// it (the private test servers' binaries have it): plain PostgreSQL, at once, instead of a
/// `CREATE EXTENSION` that ends the set-up connection; `require` refuses with the reason.
#[tokio::test]
async fn auto_on_a_server_without_the_preload_uses_plain_postgres() {
    let pg = PrivatePostgres::start();
    let mut c = sqlx::PgConnection::connect(&pg.url()).await.unwrap();
    let available: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert!(
        available,
        "the test servers' binaries carry TimescaleDB (IOC_TEST_PG_BIN from ops/test.sh)"
    );
    let config = |mode| store::StoreConfig {
        database_url: Some(store::DatabaseUrl::new(pg.url())),
        timescale: mode,
        ..Default::default()
    };
    let required = store::PgStore::open(&config(store::TimescaleMode::Require)).unwrap();
    let err = tokio::time::timeout(Duration::from_secs(30), required.prepare())
        .await
        .expect("refused at once")
        .unwrap_err();
    assert!(
        err.to_string().contains("shared_preload_libraries"),
        "{err}"
    );
    let auto = store::PgStore::open(&config(store::TimescaleMode::Auto)).unwrap();
    let flavor = tokio::time::timeout(Duration::from_secs(30), auto.prepare())
        .await
        .expect("set up at once")
        .unwrap();
    assert_eq!(flavor, store::Flavor::Postgres);
}
