//! History benchmarks (BENCHMARKS.md, "History store"):
//!
//! - `history-write`: rows/s through the store's writer (batches as the history sink sends
//!   them, each committed before the next) against `psql \copy` of the same rows into a
//!   table with the same primary key, in the same database and run (the limit);
//! - `history-query`: p50/p99 of 30-day series at 1-hour buckets over 1-minute data of 100
//!   stations, from the 1-hour rollup and from raw rows, with TimescaleDB's aggregates
//!   refreshed after loading (what its policies do when they run).
//!
//! Both run on plain PostgreSQL (`--admin-url`) and, given `--timescale-url`, on the
//! TimescaleDB layout in the same run. Each run creates a database of its own per server and
//! drops it afterwards. Data ends a day ago, so times are relative to now as in production.

use std::io::Write;
use std::time::Instant;

use anyhow::{bail, Context};
use chrono::{DateTime, Duration, DurationRound, TimeZone, Utc};
use model::reading::Quality;
use model::{LocalId, Parameter, Reading};
use rand::{Rng, SeedableRng};
use sqlx::Connection;
use store::{
    DatabaseUrl, Flavor, History, PgStore, SeriesQuery, StoreConfig, TimescaleMode, WriteMethod,
};

/// The layouts of one run: plain PostgreSQL, then TimescaleDB when its server is given.
fn layouts<'a>(admin: &'a str, timescale: Option<&'a str>) -> Vec<(TimescaleMode, &'a str)> {
    let mut out = vec![(TimescaleMode::Off, admin)];
    if let Some(t) = timescale {
        out.push((TimescaleMode::Require, t));
    }
    out
}

fn layout_name(mode: TimescaleMode) -> &'static str {
    match mode {
        TimescaleMode::Require => "TimescaleDB",
        _ => "PostgreSQL",
    }
}

struct BenchDb {
    admin: String,
    name: String,
    url: String,
    mode: TimescaleMode,
}

impl BenchDb {
    async fn create(admin: &str, mode: TimescaleMode) -> anyhow::Result<Self> {
        let name = format!("ioc_bench_{}", rand::random::<u32>());
        let mut c = sqlx::PgConnection::connect(admin)
            .await
            .context("connecting to --admin-url")?;
        sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
            .execute(&mut c)
            .await?;
        let (base, q) = admin
            .split_once('?')
            .map(|(b, q)| (b, format!("?{q}")))
            .unwrap_or((admin, String::new()));
        let url = format!(
            "{}/{name}{q}",
            &base[..base.rfind('/').context("admin URL without a path")?]
        );
        Ok(Self {
            admin: admin.to_string(),
            name,
            url,
            mode,
        })
    }

    async fn drop_it(self) -> anyhow::Result<()> {
        let mut c = sqlx::PgConnection::connect(&self.admin).await?;
        sqlx::raw_sql(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&mut c)
        .await?;
        Ok(())
    }

    async fn store(&self, method: WriteMethod) -> anyhow::Result<PgStore> {
        let cfg = StoreConfig {
            database_url: Some(DatabaseUrl::new(self.url.clone())),
            write_method: method,
            timescale: self.mode,
            ..StoreConfig::default()
        };
        let s = PgStore::open(&cfg)?;
        s.prepare().await?;
        Ok(s)
    }
}

/// What TimescaleDB's refresh policies do when their jobs run (nothing on plain PostgreSQL).
async fn refresh_aggregates(s: &PgStore) -> anyhow::Result<()> {
    Ok(s.refresh_aggregates().await?)
}

/// Where the data starts: `days` whole days before yesterday's midnight (UTC).
fn t0_for(days: i64) -> DateTime<Utc> {
    Utc::now()
        .duration_trunc(Duration::days(1))
        .unwrap_or_else(|_| Utc.timestamp_opt(0, 0).unwrap())
        - Duration::days(days + 1)
}

static T0: std::sync::OnceLock<DateTime<Utc>> = std::sync::OnceLock::new();

fn t0() -> DateTime<Utc> {
    *T0.get_or_init(|| t0_for(30))
}

/// 1-minute salinity readings of `stations` stations, minute by minute, `n` in all.
fn minute_rows(stations: usize, n: usize) -> Vec<Reading> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let ids: Vec<LocalId> = (0..stations)
        .map(|i| LocalId::parse("station", &format!("bench-sal-{i:04}")).unwrap())
        .collect();
    (0..n)
        .map(|i| Reading {
            station: ids[i % stations].clone(),
            parameter: Parameter::Salinity,
            ts: (t0() + Duration::minutes((i / stations) as i64)).fixed_offset(),
            value: (rng.random_range(0.0..12.0f64) * 1000.0).round() / 1000.0,
            unit: Parameter::Salinity.canonical_unit(),
            quality: Quality::Good,
            sent_as: None,
        })
        .collect()
}

pub async fn write(
    admin: &str,
    timescale: Option<&str>,
    rows: usize,
    batch: usize,
    stations: usize,
) -> anyhow::Result<()> {
    let data = minute_rows(stations, rows);
    for (mode, url) in layouts(admin, timescale) {
        println!("== layout: {}", layout_name(mode));
        write_on(url, mode, &data, batch).await?;
    }
    Ok(())
}

async fn write_on(
    admin: &str,
    mode: TimescaleMode,
    data: &[Reading],
    batch: usize,
) -> anyhow::Result<()> {
    let rows = data.len();
    let db = BenchDb::create(admin, mode).await?;
    let result = async {
        for method in [WriteMethod::Unnest, WriteMethod::Copy] {
            let s = db.store(method).await?;
            sqlx::raw_sql("TRUNCATE readings, readings_5m, readings_1h").execute(s.pool()).await?;
            let start = Instant::now();
            for chunk in data.chunks(batch) {
                let w = s.write_readings(chunk).await?;
                if w.inserted != chunk.len() as u64 {
                    bail!("{method:?}: {} of {} rows inserted", w.inserted, chunk.len());
                }
            }
            let secs = start.elapsed().as_secs_f64();
            println!(
                "writer {method:?}: {rows} rows in batches of {batch} ({}, idempotent): {secs:.2} s = {:.0} rows/s",
                if mode == TimescaleMode::Require { "hypertable, below-watermark ranges noted and refreshed" } else { "raw + 5-min + 1-hour rollups" },
                rows as f64 / secs
            );
        }
        // The limit: psql \copy of the same rows into a table with the same primary key.
        let file = std::env::temp_dir().join(format!("{}.tsv", db.name));
        {
            let mut f = std::io::BufWriter::new(std::fs::File::create(&file)?);
            for r in data {
                writeln!(f, "{}\t{}\t{}\t{:?}\t{}\tgood", r.station, r.parameter.as_str(), r.ts.to_rfc3339(), r.value, r.unit.symbol())?;
            }
        }
        let s = db.store(WriteMethod::Unnest).await?;
        sqlx::raw_sql("CREATE TABLE readings_copy (LIKE readings INCLUDING ALL)").execute(s.pool()).await?;
        let start = Instant::now();
        let out = std::process::Command::new("psql")
            .arg(&db.url)
            .arg("-qc")
            .arg(format!("\\copy readings_copy (station, parameter, ts, value, unit, quality) FROM '{}'", file.display()))
            .output()
            .context("running psql (Debian package postgresql-client)")?;
        let secs = start.elapsed().as_secs_f64();
        let _ = std::fs::remove_file(&file);
        if !out.status.success() {
            bail!("psql \\copy failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        println!(
            "limit: psql \\copy of the same {rows} rows into a table with the same primary key (no rollups, one transaction): {secs:.2} s = {:.0} rows/s",
            rows as f64 / secs
        );
        Ok(())
    }
    .await;
    db.drop_it().await?;
    result
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

pub async fn query(
    admin: &str,
    timescale: Option<&str>,
    stations: usize,
    days: i64,
    queries: usize,
) -> anyhow::Result<()> {
    let _ = T0.set(t0_for(days));
    for (mode, url) in layouts(admin, timescale) {
        println!("== layout: {}", layout_name(mode));
        query_on(url, mode, stations, days, queries).await?;
    }
    Ok(())
}

async fn query_on(
    admin: &str,
    mode: TimescaleMode,
    stations: usize,
    days: i64,
    queries: usize,
) -> anyhow::Result<()> {
    let db = BenchDb::create(admin, mode).await?;
    let result = async {
        let s = db.store(WriteMethod::Copy).await?;
        let per_day = stations * 1440;
        let start = Instant::now();
        for day in 0..days {
            let rows: Vec<Reading> = minute_rows(stations, per_day)
                .into_iter()
                .map(|mut r| {
                    r.ts += Duration::days(day);
                    r
                })
                .collect();
            for chunk in rows.chunks(20_000) {
                s.write_readings(chunk).await?;
            }
        }
        let total = per_day as i64 * days;
        println!("loaded {total} rows ({stations} stations x {days} days x 1440) in {:.1} s", start.elapsed().as_secs_f64());
        let refresh = Instant::now();
        refresh_aggregates(&s).await?;
        if s.flavor() == Flavor::Timescale {
            println!("aggregates refreshed after loading in {:.1} s", refresh.elapsed().as_secs_f64());
        }
        // Every table, the TimescaleDB aggregates' materialisation hypertables included.
        sqlx::raw_sql("VACUUM ANALYZE").execute(s.pool()).await?;
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for raw_only in [false, true] {
            let mut ms = Vec::with_capacity(queries);
            let mut points = 0;
            for _ in 0..queries {
                let st = LocalId::parse("s", &format!("bench-sal-{:04}", rng.random_range(0..stations)))?;
                let mut q = SeriesQuery::new(st, Parameter::Salinity, t0(), t0() + Duration::days(days), Some(3600))?;
                q.raw_only = raw_only;
                let t = Instant::now();
                let series = s.series(&q).await?;
                ms.push(t.elapsed().as_secs_f64() * 1000.0);
                points = series.buckets.len();
            }
            ms.sort_by(f64::total_cmp);
            println!(
                "{days}-day series at 1-hour buckets ({points} points) from {}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms over {queries} queries",
                if raw_only { "raw rows (date_bin)" } else { "the 1-hour rollup" },
                percentile(&ms, 0.5),
                percentile(&ms, 0.99),
                ms[ms.len() - 1]
            );
        }
        Ok(())
    }
    .await;
    db.drop_it().await?;
    result
}
