//! The store against a real PostgreSQL (the test command starts one and sets
//! `IOC_TEST_DATABASE_URL`). Each test works in a database of its own, created empty.
//! Which layout ran (TimescaleDB or plain PostgreSQL) is printed, never silently skipped.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use model::reading::Quality;
use model::{LocalId, Parameter, Reading};
use rand::{Rng, SeedableRng};
use sqlx::Connection;
use store::replay::{ReplayFrame, ReplayRequest};
use store::{
    DatabaseUrl, Flavor, History, MemoryHistory, PgStore, SeriesQuery, SeriesSource, StoreConfig,
    WriteMethod,
};

fn admin_url() -> String {
    std::env::var("IOC_TEST_DATABASE_URL").unwrap_or_else(|_| {
        panic!("IOC_TEST_DATABASE_URL is not set: run the tests with `bash ops/test.sh`, which starts PostgreSQL, or point it at a server where this user may CREATE DATABASE")
    })
}

/// A fresh, empty database; returns its URL.
async fn fresh_database(tag: &str) -> String {
    let admin = admin_url();
    let name = format!(
        "ioc_t_{tag}_{}_{}",
        std::process::id(),
        rand::random::<u32>()
    );
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at IOC_TEST_DATABASE_URL is not reachable: {e}"));
    sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("CREATE DATABASE");
    let (base, query) = admin
        .split_once('?')
        .map(|(b, q)| (b, format!("?{q}")))
        .unwrap_or((&admin, String::new()));
    let base = &base[..base.rfind('/').expect("a URL with a path")];
    format!("{base}/{name}{query}")
}

async fn store(tag: &str, method: WriteMethod) -> PgStore {
    let url = fresh_database(tag).await;
    let cfg = StoreConfig {
        database_url: Some(DatabaseUrl::new(url)),
        write_method: method,
        ..StoreConfig::default()
    };
    let s = PgStore::open(&cfg).unwrap();
    let flavor = s.prepare().await.expect("migrations up from empty");
    println!("store flavour under test: {flavor:?}: {}", s.describe());
    s
}

fn reading(station: &str, parameter: Parameter, ts: DateTime<Utc>, value: f64) -> Reading {
    Reading {
        station: LocalId::parse("station", station).unwrap(),
        parameter,
        ts: ts.fixed_offset(),
        value,
        unit: parameter.canonical_unit(),
        quality: Quality::Good,
        sent_as: None,
    }
}

async fn count(s: &PgStore, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(s.pool()).await.unwrap()
}

#[tokio::test]
async fn migrations_run_up_from_empty_and_again() {
    let s = store("migr", WriteMethod::Unnest).await;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1",
    )
    .fetch_all(s.pool())
    .await
    .unwrap();
    for t in [
        "readings",
        "readings_5m",
        "readings_1h",
        "camera_status",
        "alerts",
        "report_events",
        "registry",
        "audit_log",
        "store_meta",
        "report_media",
    ] {
        assert!(tables.iter().any(|x| x == t), "{t} missing from {tables:?}");
    }
    let flavor = s.flavor();
    // A second process starting on the same database changes nothing.
    let again = PgStore::open(&StoreConfig {
        database_url: Some(DatabaseUrl::new(fresh_url_of(&s).await)),
        ..StoreConfig::default()
    })
    .unwrap();
    assert_eq!(again.prepare().await.unwrap(), flavor);
    // 0001 history, 0002 reports: each applied once.
    assert_eq!(count(&s, "SELECT count(*) FROM _sqlx_migrations").await, 2);
    match flavor {
        Flavor::Timescale => println!("ran on TimescaleDB: hypertable and continuous aggregates"),
        Flavor::Postgres => println!("ran on plain PostgreSQL (timescaledb not installed or not enabled): BRIN index and rollup tables"),
        Flavor::Memory => unreachable!(),
    }
}

async fn fresh_url_of(s: &PgStore) -> String {
    let db: String = sqlx::query_scalar("SELECT current_database()::text")
        .fetch_one(s.pool())
        .await
        .unwrap();
    let admin = admin_url();
    let base = admin.split('?').next().unwrap();
    format!("{}/{db}", &base[..base.rfind('/').unwrap()])
}

async fn rollups_hold(s: &PgStore, expected: i64) {
    for table in ["readings_5m", "readings_1h"] {
        if s.flavor() == Flavor::Timescale {
            // real-time aggregates: the view answers from raw rows for what is not materialised
        }
        let n: i64 = sqlx::query_scalar(&format!("SELECT coalesce(sum(n), 0)::int8 FROM {table}"))
            .fetch_one(s.pool())
            .await
            .unwrap();
        assert_eq!(n, expected, "{table} counts every reading once");
    }
}

#[tokio::test]
async fn the_same_batch_written_twice_is_stored_once() {
    for method in [WriteMethod::Unnest, WriteMethod::Copy] {
        let s = store("idem", method).await;
        let t0 = Utc.with_ymd_and_hms(2026, 3, 2, 0, 0, 0).unwrap();
        let rows = |range: std::ops::Range<i64>| -> Vec<Reading> {
            range
                .map(|i| {
                    let station = format!("st-{}", i % 7);
                    reading(
                        &station,
                        Parameter::Salinity,
                        t0 + Duration::seconds(i * 37),
                        i as f64 / 10.0,
                    )
                })
                .collect()
        };
        let batch = rows(0..500);
        let first = s.write_readings(&batch).await.unwrap();
        assert_eq!((first.inserted, first.duplicates), (500, 0), "{method:?}");
        let second = s.write_readings(&batch).await.unwrap();
        assert_eq!((second.inserted, second.duplicates), (0, 500), "{method:?}");
        // Half old, half new: only the new half lands, and rollups count it once.
        let mixed = rows(250..750);
        let third = s.write_readings(&mixed).await.unwrap();
        assert_eq!((third.inserted, third.duplicates), (250, 250), "{method:?}");
        assert_eq!(count(&s, "SELECT count(*) FROM readings").await, 750);
        rollups_hold(&s, 750).await;
        // Vietnamese units survive (‰ and µg/m³ are not ASCII).
        let units: Vec<String> = sqlx::query_scalar("SELECT DISTINCT unit FROM readings")
            .fetch_all(s.pool())
            .await
            .unwrap();
        assert_eq!(units, vec!["‰".to_string()]);
    }
}

/// What a series must be, computed the slow way from the raw rows.
fn brute_force(rows: &[Reading], q: &SeriesQuery) -> Vec<(i64, i64, f64, f64, f64)> {
    let mut b: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
    for r in rows {
        let t = r.ts.with_timezone(&Utc);
        if r.station != q.station || r.parameter != q.parameter || t < q.from || t >= q.to {
            continue;
        }
        let start = q.from.timestamp()
            + (t.timestamp() - q.from.timestamp()).div_euclid(q.step_s) * q.step_s;
        b.entry(start).or_default().push(r.value);
    }
    b.into_iter()
        .map(|(t, v)| {
            let n = v.len() as i64;
            let avg = v.iter().sum::<f64>() / n as f64;
            let min = v.iter().cloned().fold(f64::INFINITY, f64::min);
            let max = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            (t, n, min, avg, max)
        })
        .collect()
}

fn assert_series_eq(got: &store::Series, want: &[(i64, i64, f64, f64, f64)], what: &str) {
    assert_eq!(got.buckets.len(), want.len(), "{what}: bucket count");
    for (b, w) in got.buckets.iter().zip(want) {
        assert_eq!(
            (b.t.timestamp(), b.n),
            (w.0, w.1),
            "{what}: bucket start and count"
        );
        assert_eq!((b.min, b.max), (w.2, w.4), "{what}: min/max at {}", b.t);
        assert!(
            (b.avg - w.3).abs() <= 1e-9 * w.3.abs().max(1.0),
            "{what}: avg {} vs {} at {}",
            b.avg,
            w.3,
            b.t
        );
    }
}

#[tokio::test]
async fn series_equal_a_brute_force_computation_over_the_raw_rows() {
    let s = store("series", WriteMethod::Unnest).await;
    let mem = MemoryHistory::new(1_000_000);
    let mut rng = rand::rngs::StdRng::seed_from_u64(20261123);
    let t0 = Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap();
    let mut rows = Vec::new();
    for station in ["hg-vt-sal-01", "tg-mt-sal-02", "lx-aq-01"] {
        for parameter in [Parameter::Salinity, Parameter::Pm25] {
            let mut t = t0 + Duration::seconds(rng.random_range(0..600));
            while t < t0 + Duration::days(3) {
                rows.push(reading(
                    station,
                    parameter,
                    t,
                    (rng.random_range(0.0..50.0f64) * 1000.0).round() / 1000.0,
                ));
                t += Duration::seconds(rng.random_range(20..400));
            }
        }
    }
    // Written in uneven batches, some twice (a replay), out of order within batches.
    let mut i = 0;
    while i < rows.len() {
        let n = rng.random_range(1..900).min(rows.len() - i);
        let mut batch = rows[i..i + n].to_vec();
        batch.reverse();
        s.write_readings(&batch).await.unwrap();
        if rng.random_bool(0.2) {
            assert_eq!(s.write_readings(&batch).await.unwrap().inserted, 0);
        }
        mem.write_readings(&batch).await.unwrap();
        i += n;
    }
    println!("{} raw rows over 3 days", rows.len());
    let mut checked = 0;
    for step in [60, 300, 420, 900, 3600, 3 * 3600, 86_400] {
        for _ in 0..4 {
            let from = t0 + Duration::seconds(rng.random_range(-3600..2 * 86_400));
            let to = from + Duration::seconds(rng.random_range(step..3 * 86_400));
            let station = ["hg-vt-sal-01", "tg-mt-sal-02", "lx-aq-01"][rng.random_range(0..3)];
            let parameter = [Parameter::Salinity, Parameter::Pm25][rng.random_range(0..2)];
            let q = SeriesQuery::new(
                LocalId::parse("s", station).unwrap(),
                parameter,
                from,
                to,
                Some(step),
            )
            .unwrap();
            let want = brute_force(&rows, &q);
            let got = s.series(&q).await.unwrap();
            let expected_source = if step % 3600 == 0 {
                SeriesSource::Rollup1h
            } else if step % 300 == 0 {
                SeriesSource::Rollup5m
            } else {
                SeriesSource::Raw
            };
            assert_eq!(got.source, expected_source, "step {step}");
            assert_series_eq(&got, &want, &format!("{:?} step {step}", got.source));
            let raw = s
                .series(&SeriesQuery {
                    raw_only: true,
                    ..q.clone()
                })
                .await
                .unwrap();
            assert_series_eq(&raw, &want, &format!("raw step {step}"));
            assert_series_eq(
                &mem.series(&q).await.unwrap(),
                &want,
                &format!("memory step {step}"),
            );
            checked += got.buckets.len();
        }
    }
    assert!(checked > 1000, "the comparison covered {checked} buckets");
    println!("{checked} buckets equal to the brute-force computation (rollups, raw and memory)");
}

#[tokio::test]
async fn replay_reads_the_same_from_postgres_as_from_memory() {
    let s = Arc::new(store("replay", WriteMethod::Copy).await);
    let mem = Arc::new(MemoryHistory::new(1_000_000));
    let t0 = Utc.with_ymd_and_hms(2026, 3, 2, 0, 0, 0).unwrap();
    let rows: Vec<Reading> = (0..12_000)
        .map(|i| {
            reading(
                ["b-1", "a-1", "a-2"][i % 3],
                if i % 2 == 0 {
                    Parameter::Salinity
                } else {
                    Parameter::Pm25
                },
                t0 + Duration::seconds(i as i64 / 2),
                i as f64,
            )
        })
        .collect();
    s.write_readings(&rows).await.unwrap();
    mem.write_readings(&rows).await.unwrap();
    let stations: Vec<LocalId> = ["a-1", "b-1"]
        .iter()
        .map(|x| LocalId::parse("s", x).unwrap())
        .collect();
    let from = t0 + Duration::minutes(10);
    let req = ReplayRequest::new(stations, from, from + Duration::hours(1), 0.0).unwrap();
    let mut frames = Vec::new();
    for h in [
        s.clone() as Arc<dyn History>,
        mem.clone() as Arc<dyn History>,
    ] {
        let mut rx = store::replay::start(h, req.clone());
        let mut got = Vec::new();
        while let Some(f) = rx.recv().await {
            let f = f.unwrap();
            let end = matches!(f, ReplayFrame::End { .. });
            got.push(f);
            if end {
                break;
            }
        }
        frames.push(got);
    }
    assert_eq!(frames[0], frames[1]);
    let ReplayFrame::End { readings, .. } = frames[0].last().unwrap() else {
        panic!()
    };
    assert_eq!(
        *readings,
        2 * 3600 * 2 / 3,
        "every reading of a-1 and b-1 in the hour"
    );
}

#[tokio::test]
async fn the_registry_table_keeps_the_newest_version_and_removals() {
    let s = store("registry", WriteMethod::Copy).await;
    let t0 = Utc.with_ymd_and_hms(2026, 3, 2, 0, 0, 0).unwrap();
    let row = |name: &str, at: DateTime<Utc>, removed: bool| store::RegistryRow {
        entity: "station:hg-vt-sal-01".into(),
        kind: "station".into(),
        data: (!removed).then(|| serde_json::json!({"name": name})),
        updated: at,
        removed,
    };
    s.write_registry(&[row("Cái Lớn – Vị Thanh", t0, false)])
        .await
        .unwrap();
    // An older version arriving late changes nothing.
    s.write_registry(&[row("cũ", t0 - Duration::hours(1), false)])
        .await
        .unwrap();
    let name: String = sqlx::query_scalar(
        "SELECT data->>'name' FROM registry WHERE entity = 'station:hg-vt-sal-01'",
    )
    .fetch_one(s.pool())
    .await
    .unwrap();
    assert_eq!(
        name, "Cái Lớn – Vị Thanh",
        "Vietnamese text round-trips, newest version kept"
    );
    // A removal keeps the last data, marked removed.
    s.write_registry(&[row("", t0 + Duration::hours(1), true)])
        .await
        .unwrap();
    let (name, removed): (String, bool) = sqlx::query_as(
        "SELECT data->>'name', removed FROM registry WHERE entity = 'station:hg-vt-sal-01'",
    )
    .fetch_one(s.pool())
    .await
    .unwrap();
    assert_eq!((name.as_str(), removed), ("Cái Lớn – Vị Thanh", true));
}
