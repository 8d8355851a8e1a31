//! The store against real servers, every test on both layouts: plain PostgreSQL
//! (`IOC_TEST_DATABASE_URL`) and PostgreSQL preloading TimescaleDB (`IOC_TEST_TIMESCALE_URL`);
//! the test command starts both. Each case works in a database of its own, created empty,
//! and prints which layout it ran on; a missing server fails the test, never skips it.
//! Times are relative to now, so the same paths run whatever the date.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, DurationRound, TimeZone, Utc};
use model::reading::Quality;
use model::{LocalId, Parameter, Reading};
use rand::{Rng, SeedableRng};
use sqlx::Connection;
use store::replay::{ReplayFrame, ReplayRequest};
use store::{
    DatabaseUrl, Flavor, History, MemoryHistory, PgStore, SeriesQuery, SeriesSource, StoreConfig,
    TimescaleMode, WriteMethod,
};

/// The two history layouts; every test runs on each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    Postgres,
    Timescale,
}

const LAYOUTS: [Layout; 2] = [Layout::Postgres, Layout::Timescale];

fn admin_url(layout: Layout) -> String {
    let var = match layout {
        Layout::Postgres => "IOC_TEST_DATABASE_URL",
        Layout::Timescale => "IOC_TEST_TIMESCALE_URL",
    };
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: run the tests with `bash ops/test.sh`, which starts PostgreSQL and a PostgreSQL preloading TimescaleDB, or point it at a server where this user may CREATE DATABASE")
    })
}

/// A fresh, empty database on the layout's server; returns its URL.
async fn fresh_database(tag: &str, layout: Layout) -> String {
    let admin = admin_url(layout);
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

/// `config` for the layout: its server, TimescaleDB required or off.
fn on_layout(url: String, layout: Layout, config: StoreConfig) -> StoreConfig {
    StoreConfig {
        database_url: Some(DatabaseUrl::new(url)),
        timescale: match layout {
            Layout::Postgres => TimescaleMode::Off,
            Layout::Timescale => TimescaleMode::Require,
        },
        ..config
    }
}

async fn open_prepared(cfg: &StoreConfig, layout: Layout) -> PgStore {
    let s = PgStore::open(cfg).unwrap();
    let flavor = tokio::time::timeout(std::time::Duration::from_secs(60), s.prepare())
        .await
        .expect("prepare finished within 60 s")
        .expect("migrations up");
    let want = match layout {
        Layout::Postgres => Flavor::Postgres,
        Layout::Timescale => Flavor::Timescale,
    };
    assert_eq!(
        flavor, want,
        "the store set itself up on the layout asked for"
    );
    println!("layout under test: {layout:?}: {}", s.describe());
    s
}

async fn store_with(tag: &str, layout: Layout, config: StoreConfig) -> PgStore {
    let url = fresh_database(tag, layout).await;
    open_prepared(&on_layout(url, layout, config), layout).await
}

async fn store(tag: &str, method: WriteMethod, layout: Layout) -> PgStore {
    store_with(
        tag,
        layout,
        StoreConfig {
            write_method: method,
            ..StoreConfig::default()
        },
    )
    .await
}

/// What TimescaleDB's refresh policies do when their jobs run: each aggregate materialised up
/// to now minus its end offset. Nothing to do on plain PostgreSQL.
async fn policies_ran(s: &PgStore) {
    s.refresh_aggregates().await.unwrap();
}

/// The start of the current day minus `days` (UTC): a time relative to now on bucket bounds.
fn days_ago(days: i64) -> DateTime<Utc> {
    Utc::now().duration_trunc(Duration::days(1)).unwrap() - Duration::days(days)
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

async fn migrations_run_up_from_empty_and_again(layout: Layout) {
    let s = store("migr", WriteMethod::Unnest, layout).await;
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
        "indicator_events",
    ] {
        assert!(tables.iter().any(|x| x == t), "{t} missing from {tables:?}");
    }
    let flavor = s.flavor();
    // A second process starting on the same database changes nothing.
    let again = PgStore::open(&on_layout(
        fresh_url_of(&s, layout).await,
        layout,
        StoreConfig::default(),
    ))
    .unwrap();
    assert_eq!(again.prepare().await.unwrap(), flavor);
    // Every migration of store/migrations applied once.
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "sql"))
        })
        .count() as i64;
    assert!(files >= 5);
    assert_eq!(
        count(&s, "SELECT count(*) FROM _sqlx_migrations").await,
        files
    );
    match flavor {
        Flavor::Timescale => println!("ran on TimescaleDB: hypertable and continuous aggregates"),
        Flavor::Postgres => println!("ran on plain PostgreSQL (timescaledb not installed or not enabled): BRIN index and rollup tables"),
        Flavor::Memory => unreachable!(),
    }
}

async fn fresh_url_of(s: &PgStore, layout: Layout) -> String {
    let db: String = sqlx::query_scalar("SELECT current_database()::text")
        .fetch_one(s.pool())
        .await
        .unwrap();
    let admin = admin_url(layout);
    let base = admin.split('?').next().unwrap();
    format!("{}/{db}", &base[..base.rfind('/').unwrap()])
}

/// Both rollups count every raw row once (TimescaleDB: materialised below the watermark,
/// real-time above it).
async fn rollups_hold(s: &PgStore, expected: i64) {
    for table in ["readings_5m", "readings_1h"] {
        let n: i64 = sqlx::query_scalar(&format!("SELECT coalesce(sum(n), 0)::int8 FROM {table}"))
            .fetch_one(s.pool())
            .await
            .unwrap();
        assert_eq!(n, expected, "{table} counts every reading once");
    }
}

async fn the_same_batch_written_twice_is_stored_once(layout: Layout) {
    for method in [WriteMethod::Unnest, WriteMethod::Copy] {
        let s = store("idem", method, layout).await;
        let t0 = days_ago(2);
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
        // Materialised in between (TimescaleDB): the new half lands below the watermark.
        policies_ran(&s).await;
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

async fn series_equal_a_brute_force_computation_over_the_raw_rows(layout: Layout) {
    let s = store("series", WriteMethod::Unnest, layout).await;
    let mem = MemoryHistory::new(1_000_000);
    let mut rng = rand::rngs::StdRng::seed_from_u64(20261123);
    let t0 = days_ago(4);
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
    // Written in uneven batches, some twice (a replay), out of order within batches; half way
    // the aggregates are materialised (TimescaleDB), so the rest lands below the watermark.
    let mut i = 0;
    let mut refreshed = false;
    while i < rows.len() {
        if !refreshed && i >= rows.len() / 2 {
            policies_ran(&s).await;
            refreshed = true;
        }
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

async fn replay_reads_the_same_from_postgres_as_from_memory(layout: Layout) {
    let s = Arc::new(store("replay", WriteMethod::Copy, layout).await);
    let mem = Arc::new(MemoryHistory::new(1_000_000));
    let t0 = days_ago(1);
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

async fn the_registry_table_keeps_the_newest_version_and_removals(layout: Layout) {
    let s = store("registry", WriteMethod::Copy, layout).await;
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

async fn indicator_events_are_kept_once_and_read_per_unit_as_memory_reads_them(layout: Layout) {
    let s = store("indicators", WriteMethod::Copy, layout).await;
    let mem = MemoryHistory::new(10);
    let t0 = Utc.with_ymd_and_hms(2026, 11, 20, 3, 0, 0).unwrap();
    let row = |n: u32, unit: &str, value: f64| store::IndicatorEventRow {
        event_id: uuid::Uuid::from_u128(u128::from(n) + 1),
        ts: t0 + Duration::minutes(i64::from(n)),
        kind: "indicator.value".into(),
        indicator: "hcc-hs-dunghan".into(),
        unit: unit.into(),
        period: "202611".into(),
        value: Some(value),
        source: "http:/ingest/v1/indicators".into(),
        data: serde_json::json!({"type": "value", "indicator": "hcc-hs-dunghan", "unit": unit,
            "period": "202611", "value": value, "by": "agency:hg-vpubnd",
            "at": (t0 + Duration::minutes(i64::from(n))).to_rfc3339(), "note": "Số liệu sơ bộ – đợt 1"}),
    };
    let rows: Vec<_> = (0..6)
        .map(|n| {
            row(
                n,
                if n % 2 == 0 {
                    "hg-vi-thanh"
                } else {
                    "hg-nga-bay"
                },
                90.0 + f64::from(n),
            )
        })
        .collect();
    for h in [&s as &dyn History, &mem] {
        assert_eq!(h.write_indicator_events(&rows).await.unwrap(), 6);
        // The sink reading the same messages again adds nothing.
        assert_eq!(h.write_indicator_events(&rows).await.unwrap(), 0);
    }
    let pg = s
        .indicator_events("hcc-hs-dunghan", Some("hg-vi-thanh"), 2)
        .await
        .unwrap();
    let values: Vec<_> = pg.iter().map(|r| r.value).collect();
    assert_eq!(
        values,
        [Some(92.0), Some(94.0)],
        "the newest two, oldest first"
    );
    assert_eq!(
        pg,
        mem.indicator_events("hcc-hs-dunghan", Some("hg-vi-thanh"), 2)
            .await
            .unwrap()
    );
    assert_eq!(pg[0].data["note"], "Số liệu sơ bộ – đợt 1");
    let all = s
        .indicator_events("hcc-hs-dunghan", None, 100)
        .await
        .unwrap();
    assert_eq!(
        all,
        mem.indicator_events("hcc-hs-dunghan", None, 100)
            .await
            .unwrap()
    );
    assert_eq!(all.len(), 6);
    assert!(s
        .indicator_events("pa-tiepnhan", None, 100)
        .await
        .unwrap()
        .is_empty());
}

/// `n` readings of `station`, one every `every_s` seconds from `from`, values varying.
fn run_of(station: &str, from: DateTime<Utc>, n: i64, every_s: i64) -> Vec<Reading> {
    (0..n)
        .map(|i| {
            reading(
                station,
                Parameter::Salinity,
                from + Duration::seconds(i * every_s),
                ((i * 7919) % 4000) as f64 / 100.0,
            )
        })
        .collect()
}

/// Series over `[from, to)` from each rollup and from raw rows at the same steps (and at one
/// minute where the range allows) equal the brute-force computation over `rows`.
async fn series_agree(
    s: &PgStore,
    rows: &[Reading],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    what: &str,
) {
    let stations: std::collections::BTreeSet<&str> =
        rows.iter().map(|r| r.station.as_str()).collect();
    let short = to - from <= Duration::days(10);
    for station in stations {
        for (step, source) in [
            (3600, SeriesSource::Rollup1h),
            (300, SeriesSource::Rollup5m),
            (60, SeriesSource::Raw),
        ] {
            if step == 60 && !short {
                continue;
            }
            let q = SeriesQuery::new(
                LocalId::parse("s", station).unwrap(),
                Parameter::Salinity,
                from,
                to,
                Some(step),
            )
            .unwrap();
            let want = brute_force(rows, &q);
            let got = s.series(&q).await.unwrap();
            assert_eq!(got.source, source, "{what}: step {step}");
            assert_series_eq(&got, &want, &format!("{what}: {station} {source:?}"));
            let raw = SeriesQuery {
                raw_only: true,
                ..q
            };
            assert_series_eq(
                &s.series(&raw).await.unwrap(),
                &want,
                &format!("{what}: {station} raw at {step} s"),
            );
        }
    }
}

async fn nothing_pending(s: &PgStore) {
    if s.flavor() == Flavor::Timescale {
        assert_eq!(
            count(s, "SELECT count(*) FROM rollup_pending").await,
            0,
            "every range noted below a watermark was refreshed before the write returned"
        );
    }
}

/// The operator's table of the issue: recent rows, then late rows two days back after a
/// refresh, then a backfill 40 days back: the rollups equal the raw rows at once, every time,
/// and a later scheduled refresh counts nothing twice.
async fn late_rows_and_backfill_reach_the_rollups_at_once(layout: Layout) {
    let s = store("late", WriteMethod::Copy, layout).await;
    let now = Utc::now().duration_trunc(Duration::minutes(5)).unwrap();
    let mut all = Vec::new();
    // Recent: -3 h to -1 h, two stations, 720 rows.
    for st in ["hg-vt-sal-01", "hg-nb-sal-02"] {
        all.extend(run_of(st, now - Duration::hours(3), 360, 20));
    }
    s.write_readings(&all).await.unwrap();
    policies_ran(&s).await;
    rollups_hold(&s, 720).await;
    series_agree(&s, &all, now - Duration::hours(4), now, "recent").await;
    // Late, two days back, just after the refresh: below both watermarks.
    let late = run_of("hg-vt-sal-01", now - Duration::days(2), 360, 10);
    assert_eq!(s.write_readings(&late).await.unwrap().inserted, 360);
    all.extend(late);
    nothing_pending(&s).await;
    rollups_hold(&s, 1080).await;
    series_agree(
        &s,
        &all,
        now - Duration::days(2) - Duration::hours(1),
        now,
        "late -2 d",
    )
    .await;
    // Late by an hour and a half, between readings already there: inside both windows.
    let between = run_of(
        "hg-nb-sal-02",
        now - Duration::minutes(100) + Duration::seconds(7),
        90,
        20,
    );
    assert_eq!(s.write_readings(&between).await.unwrap().inserted, 90);
    all.extend(between);
    nothing_pending(&s).await;
    rollups_hold(&s, 1170).await;
    series_agree(&s, &all, now - Duration::hours(4), now, "late -100 min").await;
    // Backfill 40 days back, older than every refresh window.
    let backfill = run_of("hg-vt-sal-01", now - Duration::days(40), 360, 60);
    assert_eq!(s.write_readings(&backfill).await.unwrap().inserted, 360);
    all.extend(backfill);
    nothing_pending(&s).await;
    rollups_hold(&s, 1530).await;
    series_agree(&s, &all, now - Duration::days(41), now, "backfill -40 d").await;
    // The scheduled refresh comes later and counts nothing twice; housekeeping neither.
    policies_ran(&s).await;
    s.housekeeping().await.unwrap();
    rollups_hold(&s, 1530).await;
    series_agree(
        &s,
        &all,
        now - Duration::days(41),
        now,
        "after the next refresh",
    )
    .await;
    println!("{layout:?}: rollups equal raw rows for recent, late and backfilled data");
}

/// The policy jobs of a TimescaleDB database: (procedure, relation, interval).
async fn policy_jobs(s: &PgStore) -> Vec<(String, String, String)> {
    sqlx::query_as(
        "SELECT j.proc_name::text, coalesce(c.view_name::text, j.hypertable_name::text),
                coalesce(j.config->>'start_offset', j.config->>'compress_after', j.config->>'drop_after')::interval::text
         FROM timescaledb_information.jobs j
         LEFT JOIN timescaledb_information.continuous_aggregates c
                ON c.materialization_hypertable_name = j.hypertable_name
         WHERE j.proc_name LIKE 'policy%' AND j.hypertable_name IS NOT NULL ORDER BY 1, 2",
    )
    .fetch_all(s.pool())
    .await
    .unwrap()
}

/// The policies of the default configuration.
const DEFAULT_JOBS: &[(&str, &str, &str)] = &[
    ("policy_compression", "readings", "7 days"),
    (
        "policy_refresh_continuous_aggregate",
        "readings_1h",
        "30 days",
    ),
    (
        "policy_refresh_continuous_aggregate",
        "readings_5m",
        "30 days",
    ),
];

async fn job_ids(s: &PgStore) -> Vec<i32> {
    sqlx::query_scalar("SELECT job_id FROM timescaledb_information.jobs ORDER BY 1")
        .fetch_all(s.pool())
        .await
        .unwrap()
}

fn jobs(list: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
    list.iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect()
}

/// Restarts with changed settings: the policies (TimescaleDB) or the periodic deletes (plain
/// PostgreSQL) follow the configuration each time; a removed setting removes its policy.
async fn policies_follow_the_configuration_at_every_start(layout: Layout) {
    let first = store("policy", WriteMethod::Copy, layout).await;
    let url = fresh_url_of(&first, layout).await;
    let changed = StoreConfig {
        aggregate_refresh_days: 3,
        compress_after_days: 2,
        raw_retention_days: Some(90),
        rollup_retention_days: Some(400),
        ..StoreConfig::default()
    };
    let restart = |cfg: StoreConfig| {
        let url = url.clone();
        async move { open_prepared(&on_layout(url, layout, cfg), layout).await }
    };
    match layout {
        Layout::Timescale => {
            assert_eq!(policy_jobs(&first).await, jobs(DEFAULT_JOBS));
            let s = restart(changed.clone()).await;
            assert_eq!(
                policy_jobs(&s).await,
                jobs(&[
                    ("policy_compression", "readings", "2 days"),
                    (
                        "policy_refresh_continuous_aggregate",
                        "readings_1h",
                        "3 days"
                    ),
                    (
                        "policy_refresh_continuous_aggregate",
                        "readings_5m",
                        "3 days"
                    ),
                    ("policy_retention", "readings", "90 days"),
                    ("policy_retention", "readings_1h", "400 days"),
                    ("policy_retention", "readings_5m", "400 days"),
                ]),
                "every changed setting is in the jobs after a restart"
            );
            // The same settings again: nothing is replaced (job ids stay).
            let ids = job_ids(&s).await;
            let again = restart(changed).await;
            assert_eq!(
                ids,
                job_ids(&again).await,
                "unchanged policies are kept as they are"
            );
            let back = restart(StoreConfig::default()).await;
            assert_eq!(
                policy_jobs(&back).await,
                jobs(DEFAULT_JOBS),
                "removing the retention settings removes their policies"
            );
        }
        Layout::Postgres => {
            let old = run_of("hg-vt-sal-01", days_ago(100), 10, 60);
            let recent = run_of("hg-vt-sal-01", days_ago(10), 10, 60);
            first.write_readings(&old).await.unwrap();
            first.write_readings(&recent).await.unwrap();
            let kept = restart(StoreConfig::default()).await;
            kept.housekeeping().await.unwrap();
            assert_eq!(
                count(&kept, "SELECT count(*) FROM readings").await,
                20,
                "no retention set: nothing deleted"
            );
            let s = restart(changed).await;
            s.housekeeping().await.unwrap();
            assert_eq!(
                count(&s, "SELECT count(*) FROM readings").await,
                10,
                "raw rows past 90 days deleted"
            );
            let old_rollups =
                "SELECT count(*) FROM readings_1h WHERE bucket < now() - INTERVAL '99 days'";
            assert!(
                count(&s, old_rollups).await > 0,
                "rollups kept for their own 400 days"
            );
            let shorter = restart(StoreConfig {
                rollup_retention_days: Some(30),
                ..StoreConfig::default()
            })
            .await;
            shorter.housekeeping().await.unwrap();
            assert_eq!(
                count(&shorter, old_rollups).await,
                0,
                "a shorter rollup retention applies at once"
            );
            assert_eq!(count(&shorter, "SELECT count(*) FROM readings").await, 10);
        }
    }
    println!("{layout:?}: policies follow the configuration at every start");
}

/// `store.max_connections = 1`: the set-up runs on the connection holding the set-up lock.
async fn one_connection_is_enough(layout: Layout) {
    let s = store_with(
        "onecon",
        layout,
        StoreConfig {
            max_connections: 1,
            ..StoreConfig::default()
        },
    )
    .await;
    let rows = run_of("hg-vt-sal-01", Utc::now() - Duration::hours(2), 100, 30);
    assert_eq!(s.write_readings(&rows).await.unwrap().inserted, 100);
    policies_ran(&s).await;
    let more = run_of(
        "hg-vt-sal-01",
        Utc::now() - Duration::hours(2) + Duration::seconds(11),
        100,
        30,
    );
    assert_eq!(s.write_readings(&more).await.unwrap().inserted, 100);
    s.housekeeping().await.unwrap();
    rollups_hold(&s, 200).await;
    println!("{layout:?}: one pooled connection sets up, writes and refreshes");
}

/// The audit log takes new rows only: an UPDATE, a DELETE or a TRUNCATE is refused by the
/// database itself, and only the retention policy removes rows (those past its horizon).
async fn the_audit_log_is_append_only_but_for_its_retention(layout: Layout) {
    let s = store_with(
        "audit",
        layout,
        StoreConfig {
            audit_retention_days: Some(30),
            ..StoreConfig::default()
        },
    )
    .await;
    let entry = |days_ago: i64, target: &str| store::audit::AuditEntry {
        at: Utc::now() - Duration::days(days_ago),
        subject: "dieu-hanh-1".into(),
        role: "operator".into(),
        action: "zone.create".into(),
        target: target.into(),
        remote: Some("10.0.0.7".into()),
        result: store::audit::AuditResult::Allowed,
        status: None,
        reason: None,
        count: 1,
    };
    s.write_audit(&entry(40, "zone:old")).await.unwrap();
    s.write_audit(&entry(1, "zone:new")).await.unwrap();
    for sql in [
        "UPDATE audit_log SET subject = 'someone-else'",
        "DELETE FROM audit_log WHERE target = 'zone:new'",
        "TRUNCATE audit_log",
    ] {
        let e = sqlx::query(sql)
            .execute(s.pool())
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("append-only"), "{sql}: {e}");
    }
    assert_eq!(count(&s, "SELECT count(*) FROM audit_log").await, 2);
    assert!(s.enforce_retention().await.unwrap() >= 1);
    assert_eq!(
        count(
            &s,
            "SELECT count(*) FROM audit_log WHERE target = 'zone:new' AND subject = 'dieu-hanh-1'"
        )
        .await,
        1
    );
    assert_eq!(count(&s, "SELECT count(*) FROM audit_log").await, 1);
    println!("{layout:?}: the audit log refuses changes; retention removed the old row");
}

/// One test per case, running it on each layout in turn.
macro_rules! on_both_layouts {
    ($($name:ident),* $(,)?) => {
        mod on_both_layouts {
            $(
                #[tokio::test]
                async fn $name() {
                    for layout in super::LAYOUTS {
                        super::$name(layout).await;
                    }
                }
            )*
        }
    };
}

on_both_layouts!(
    migrations_run_up_from_empty_and_again,
    the_same_batch_written_twice_is_stored_once,
    series_equal_a_brute_force_computation_over_the_raw_rows,
    replay_reads_the_same_from_postgres_as_from_memory,
    the_registry_table_keeps_the_newest_version_and_removals,
    late_rows_and_backfill_reach_the_rollups_at_once,
    policies_follow_the_configuration_at_every_start,
    one_connection_is_enough,
    indicator_events_are_kept_once_and_read_per_unit_as_memory_reads_them,
    the_audit_log_is_append_only_but_for_its_retention,
);
