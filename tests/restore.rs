//! The restore drill of ops/DEPLOY.md §5 on the test services: a TimescaleDB history and a
//! Kafka-protocol broker hold a day's work (readings, the alerts they raise, a zone and its
//! audit entry); the database is dumped, more readings come, the database is lost; it is
//! restored from the dump (TimescaleDB's pre/post-restore procedure) and `ioc serve` starts
//! again with a new history group, which re-reads the topics: every history table then holds
//! exactly what it held before the loss, and the live state is the same.

mod common;

use std::time::Duration;

use common::postgres::{Layout, PrivatePostgres};
use common::*;
use serde_json::Value;
use sqlx::Connection;

/// The tables the history is made of (derived rollups follow them; the audit log is
/// written directly, so only what the dump holds can come back).
const TABLES: [&str; 7] = [
    "readings",
    "camera_status",
    "alerts",
    "report_events",
    "registry",
    "indicator_events",
    "audit_log",
];

/// Each table's row count and a digest of its rows in a fixed order.
async fn digest(url: &str) -> Vec<(String, i64, String)> {
    let mut c = sqlx::PgConnection::connect(url).await.unwrap();
    let mut out = Vec::new();
    for t in TABLES {
        let (n, d): (i64, Option<String>) = sqlx::query_as(&format!(
            "SELECT count(*), md5(string_agg(t::text, '|' ORDER BY t::text)) FROM {t} t"
        ))
        .fetch_one(&mut c)
        .await
        .unwrap();
        out.push((t.to_string(), n, d.unwrap_or_default()));
    }
    out
}

async fn count(url: &str, table: &str) -> i64 {
    let mut c = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(&mut c)
        .await
        .unwrap()
}

async fn wait_for_count(url: &str, table: &str, want: i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let n = count(url, table).await;
        if n >= want {
            assert_eq!(n, want, "{table}");
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{table}: {n} of {want} rows after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn publish(bus: &std::sync::Arc<dyn bus::Bus>, topic: &str, from: i64, n: i64) {
    let stations = ["hg-vt-sal-01", "hg-lm-sal-01", "hg-nd-sal-01"];
    // Recent (the alert rules look at the present): a second apart, the last one now.
    let t0 = chrono::Utc::now().fixed_offset() - chrono::Duration::seconds(n);
    for i in from..from + n {
        let s = model::LocalId::parse("station", stations[(i % 3) as usize]).unwrap();
        // The last readings of a batch are over the warning level: alerts are raised too.
        let v = if i >= from + n - 3 {
            6.5
        } else {
            0.5 + (i % 7) as f64 * 0.3
        };
        let r = reading(
            &s,
            model::Parameter::Salinity,
            t0 + chrono::Duration::seconds(i - from),
            v,
        );
        publish_reading(bus.clone(), topic.to_string(), r, "restore-drill")
            .await
            .unwrap();
    }
}

async fn state(ioc: &Ioc) -> Value {
    let mut v = get_json(
        ioc,
        "/api/v1/layers/salinity/features",
        auth::Role::Operator,
    )
    .await;
    let mut fs: Vec<Value> = v["features"].as_array().cloned().unwrap_or_default();
    fs.sort_by_key(|f| f["id"].to_string());
    v["features"] = Value::Array(fs);
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_database_comes_back_from_its_dump_and_kafka() {
    let pg = PrivatePostgres::start_layout(Layout::Timescale);
    let admin_url = pg.url();
    let url = format!("{}/ioc", admin_url.trim_end_matches("/postgres"));
    {
        let mut c = sqlx::PgConnection::connect(&admin_url).await.unwrap();
        sqlx::query("CREATE DATABASE ioc")
            .execute(&mut c)
            .await
            .unwrap();
    }
    let mut env = isolated_env("restore");
    env.push(("IOC_STORE__DATABASE_URL".into(), url.clone()));
    env.push(("IOC_STORE__TIMESCALE".into(), "require".into()));
    env.push(("IOC_VIDEO__ENABLED".into(), "false".into()));
    // A warning is raised by the first reading over the level.
    env.push((
        "IOC_CORE__RULES__SALINITY_MIN_DURATION_S".into(),
        "0".into(),
    ));
    let topics = topics_of(&env);
    let mut first = env.clone();
    first.push(("IOC_HISTORY__GROUP".into(), unique("hist-a")));
    let mut ioc = Ioc::start(&["serve"], &first);
    ioc.ready().await;
    let bus: std::sync::Arc<dyn bus::Bus> = std::sync::Arc::new(
        bus::KafkaBus::connect(bus::KafkaConfig {
            brokers: kafka(),
            client_id: unique("restore-producer"),
            ..bus::KafkaConfig::default()
        })
        .unwrap(),
    );

    // --- The day's work: readings (and their alerts), a zone drawn (and its audit entry).
    publish(&bus, &topics.readings, 0, 60).await;
    let zone = square_zone("Vùng diễn tập khôi phục", 105.47, 9.78);
    let r = reqwest::Client::new()
        .post(ioc.url("/api/v1/zones"))
        .bearer_auth(token(auth::Role::Operator))
        .json(&zone)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    wait_for_count(&url, "readings", 60).await;
    tokio::time::sleep(Duration::from_secs(2)).await; // alerts and the registry settle

    // --- The nightly dump.
    let dump = pg.dir().join("ioc.dump");
    pg.tool(
        "pg_dump",
        &["-Fc", "-f", dump.to_str().unwrap(), "-d", &url],
    );
    let at_dump = digest(&url).await;

    // --- More readings after the dump; then the record as it stands before the loss.
    publish(&bus, &topics.readings, 60, 40).await;
    wait_for_count(&url, "readings", 100).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = digest(&url).await;
    let state_before = state(&ioc).await;
    assert_ne!(
        at_dump, before,
        "the readings after the dump changed the history"
    );
    let alerts = before.iter().find(|t| t.0 == "alerts").map(|t| t.1);
    assert!(alerts > Some(0), "the readings raised alerts: {before:?}");

    // --- The database is lost.
    ioc.kill();
    {
        let mut c = sqlx::PgConnection::connect(&admin_url).await.unwrap();
        sqlx::query("DROP DATABASE ioc WITH (FORCE)")
            .execute(&mut c)
            .await
            .unwrap();
        sqlx::query("CREATE DATABASE ioc")
            .execute(&mut c)
            .await
            .unwrap();
    }

    // --- Restored from the dump, as TimescaleDB documents it.
    {
        let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
        sqlx::query("CREATE EXTENSION timescaledb")
            .execute(&mut c)
            .await
            .unwrap();
        sqlx::query("SELECT timescaledb_pre_restore()")
            .execute(&mut c)
            .await
            .unwrap();
    }
    pg.tool(
        "pg_restore",
        &["--no-owner", "-d", &url, dump.to_str().unwrap()],
    );
    {
        let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
        sqlx::query("SELECT timescaledb_post_restore()")
            .execute(&mut c)
            .await
            .unwrap();
    }
    assert_eq!(
        digest(&url).await,
        at_dump,
        "the dump restores what it held"
    );

    // --- ioc again, a new history group re-reading the topics from their start: what the
    // dump lacks is written again, what it has is skipped.
    // The registry is on its compacted topic already (nothing seeds it again, as in a
    // province's deployment).
    let mut second = env.clone();
    second.retain(|(k, _)| k != "IOC_REGISTRY__SEED_FIXTURES");
    second.push(("IOC_HISTORY__GROUP".into(), unique("hist-b")));
    let mut ioc = Ioc::start(&["serve"], &second);
    ioc.ready().await;
    wait_for_count(&url, "readings", 100).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let now = digest(&url).await;
        if now == before {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "after restore and replay:\n{now:#?}\nbefore the loss:\n{before:#?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        state(&ioc).await,
        state_before,
        "the live state is the same"
    );
}
