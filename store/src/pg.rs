//! The PostgreSQL store, on TimescaleDB when the extension can be created and on plain
//! PostgreSQL otherwise. `prepare` applies the sqlx migrations (the common schema), then sets
//! up what depends on the flavour, under an advisory lock so several processes may start at
//! once:
//!
//! - TimescaleDB: `readings` becomes a hypertable; `readings_5m` and `readings_1h` are
//!   continuous aggregates (real-time) with refresh policies; compression and retention
//!   policies reconciled with the configuration at every start; rows written below an
//!   aggregate's watermark are refreshed before the write is acknowledged (`timescale`).
//! - PostgreSQL: a BRIN index on `readings.ts`; `readings_5m` and `readings_1h` are tables the
//!   writer keeps in the same statement as the raw insert, counting only rows that were new,
//!   so a replayed batch changes nothing; retention by periodic deletes.
//!
//! Both keep the rollups' columns alike (`n`, `total`, `lo`, `hi`), so one query serves both.

use std::str::FromStr;
use std::sync::OnceLock;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use model::reading::Quality;
use model::{LocalId, Parameter, Reading};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection, Executor, Row};
use tracing::{info, warn};

use crate::series::{Bucket, Series, SeriesQuery, ORIGIN_SQL};
use crate::timescale::{self, FailingJob};
use crate::{
    AlertEventRow, AuditEntry, AuditQuery, AuditResult, AuditRow, Flavor, History,
    IndicatorEventRow, Media, ReadingKey, RegistryRow, ReportEventRow, StoreConfig, StoreError,
    TimescaleMode, WriteMethod, Written,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Key of the advisory lock held while the flavour is set up.
const SETUP_LOCK: i64 = 0x10c_5707e;

pub struct PgStore {
    pool: PgPool,
    config: StoreConfig,
    flavor: OnceLock<Flavor>,
    server: OnceLock<String>,
    /// TimescaleDB: a refresh of rows written below a watermark failed after their insert
    /// committed; the next write (or housekeeping) settles `rollup_pending` first.
    pending_dirty: std::sync::atomic::AtomicBool,
}

/// Maps a sqlx error to transient (retry) or not.
fn map_err(e: sqlx::Error) -> StoreError {
    use sqlx::Error as E;
    match &e {
        E::Io(_)
        | E::PoolTimedOut
        | E::PoolClosed
        | E::Tls(_)
        | E::Protocol(_)
        | E::WorkerCrashed => StoreError::Unavailable(e.to_string()),
        E::Database(db) => {
            let code = db.code().unwrap_or_default();
            // 08 connection, 53 resources, 57 operator intervention (shutdown, cancel),
            // 40001/40P01 serialisation failure and deadlock, 55P03 a lock (a concurrent
            // aggregate refresh) not available: all worth a retry.
            if ["08", "53", "57"].iter().any(|c| code.starts_with(c))
                || code == "40001"
                || code == "40P01"
                || code == "55P03"
            {
                StoreError::Unavailable(e.to_string())
            } else {
                StoreError::Failed(e.to_string())
            }
        }
        _ => StoreError::Failed(e.to_string()),
    }
}

fn rollup_table_sql(name: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {name} (
            station text NOT NULL, parameter text NOT NULL, bucket timestamptz NOT NULL,
            n bigint NOT NULL, total double precision NOT NULL,
            lo double precision NOT NULL, hi double precision NOT NULL,
            PRIMARY KEY (station, parameter, bucket))"
    )
}

fn cagg_sql(name: &str, width: &str) -> String {
    format!(
        "CREATE MATERIALIZED VIEW IF NOT EXISTS {name}
         WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
         SELECT station, parameter, time_bucket(INTERVAL '{width}', ts) AS bucket,
                count(*) AS n, sum(value) AS total, min(value) AS lo, max(value) AS hi
         FROM readings GROUP BY station, parameter, bucket WITH NO DATA"
    )
}

/// The upsert of a rollup from the `ins` rows (plain PostgreSQL only).
fn rollup_upsert_sql(name: &str, width: &str) -> String {
    format!(
        "{name}_up AS (
            INSERT INTO {name} AS a (station, parameter, bucket, n, total, lo, hi)
            SELECT station, parameter, date_bin(INTERVAL '{width}', ts, TIMESTAMPTZ '{ORIGIN_SQL}'),
                   count(*), sum(value), min(value), max(value)
            FROM ins GROUP BY 1, 2, 3
            ON CONFLICT (station, parameter, bucket) DO UPDATE SET
                n = a.n + EXCLUDED.n, total = a.total + EXCLUDED.total,
                lo = LEAST(a.lo, EXCLUDED.lo), hi = GREATEST(a.hi, EXCLUDED.hi)
            RETURNING 1)"
    )
}

const UNNEST_SOURCE: &str = "unnest($1::text[], $2::text[], $3::timestamptz[], $4::float8[], $5::text[], $6::text[]) AS s(station, parameter, ts, value, unit, quality)";
const STAGE_TABLE: &str = "CREATE TEMP TABLE IF NOT EXISTS readings_stage (
    station text, parameter text, ts timestamptz, value float8, unit text, quality text)
    ON COMMIT DELETE ROWS";

/// One statement that inserts new readings from `source` and (plain PostgreSQL) folds only
/// the new ones into the rollups, or (TimescaleDB) notes the range of new rows that landed
/// below an aggregate's watermark; it returns how many rows were new and how many notes
/// were made (0 or 1).
fn insert_sql(flavor: &Flavor, source: &str) -> String {
    let mut sql = format!(
        "WITH ins AS (
            INSERT INTO readings (station, parameter, ts, value, unit, quality)
            SELECT station, parameter, ts, value, unit, quality FROM {source}
            ON CONFLICT DO NOTHING
            RETURNING station, parameter, ts, value)"
    );
    if *flavor == Flavor::Postgres {
        sql.push_str(", ");
        sql.push_str(&rollup_upsert_sql("readings_5m", "5 minutes"));
        sql.push_str(", ");
        sql.push_str(&rollup_upsert_sql("readings_1h", "1 hour"));
        sql.push_str(" SELECT (SELECT count(*) FROM ins), 0::int8");
    } else {
        sql.push_str(", ");
        sql.push_str(timescale::NOTE_PENDING_CTE);
        sql.push_str(" SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM pend)");
    }
    sql
}

fn quality_str(q: Quality) -> &'static str {
    match q {
        Quality::Good => "good",
        Quality::Suspect => "suspect",
        Quality::Bad => "bad",
    }
}

fn parse_quality(s: &str) -> Quality {
    match s {
        "suspect" => Quality::Suspect,
        "bad" => Quality::Bad,
        _ => Quality::Good,
    }
}

/// COPY text format: tabs, newlines and backslashes escaped.
fn copy_field(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

fn row_to_reading(row: &PgRow) -> Option<Reading> {
    let station: String = row.try_get("station").ok()?;
    let parameter: String = row.try_get("parameter").ok()?;
    let ts: DateTime<Utc> = row.try_get("ts").ok()?;
    let value: f64 = row.try_get("value").ok()?;
    let quality: String = row.try_get("quality").ok()?;
    let parameter = Parameter::from_str(&parameter).ok()?;
    Some(Reading {
        station: LocalId::parse("station", &station).ok()?,
        parameter,
        ts: ts.with_timezone(&crate::series::vn()),
        value,
        unit: parameter.canonical_unit(),
        quality: parse_quality(&quality),
        sent_as: None,
    })
}

fn rows_to_readings(rows: Vec<PgRow>) -> Vec<Reading> {
    let n = rows.len();
    let out: Vec<Reading> = rows.iter().filter_map(row_to_reading).collect();
    if out.len() < n {
        warn!(
            skipped = n - out.len(),
            "history rows with unknown parameters or ids skipped"
        );
    }
    out
}

impl PgStore {
    /// A store over a lazily connecting pool: nothing is contacted until [`PgStore::prepare`].
    pub fn open(config: &StoreConfig) -> Result<Self, StoreError> {
        let url = config
            .database_url
            .as_ref()
            .ok_or_else(|| StoreError::Failed("store.database_url is not set".into()))?;
        let opts = PgConnectOptions::from_str(url.expose())
            .map_err(|e| StoreError::Failed(format!("store.database_url {url}: {e}")))?
            .application_name("ioc")
            .options([("statement_timeout", "60s")]);
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections.max(1))
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy_with(opts);
        Ok(Self {
            pool,
            config: config.clone(),
            flavor: OnceLock::new(),
            server: OnceLock::new(),
            pending_dirty: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// True once migrations have run and the flavour is known.
    pub fn is_prepared(&self) -> bool {
        self.flavor.get().is_some()
    }

    /// The pool (benchmarks and tests read tables directly).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Applies migrations and sets up the flavour's objects. Idempotent; safe from several
    /// processes at once. Returns the flavour in use.
    pub async fn prepare(&self) -> Result<Flavor, StoreError> {
        if let Some(f) = self.flavor.get() {
            return Ok(f.clone());
        }
        let mut conn = self.pool.acquire().await.map_err(map_err)?;
        MIGRATOR.run_direct(&mut *conn).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(e) => map_err(e),
            other => StoreError::Failed(format!("migrations: {other}")),
        })?;
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(SETUP_LOCK)
            .execute(&mut *conn)
            .await
            .map_err(map_err)?;
        // The set-up runs on the connection that holds the lock: with `max_connections = 1`
        // the pool has no other to give.
        let result = self.set_up_flavor(&mut conn).await;
        let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(SETUP_LOCK)
            .execute(&mut *conn)
            .await;
        let flavor = result?;
        let version: String = sqlx::query_scalar("SHOW server_version")
            .fetch_one(&mut *conn)
            .await
            .map_err(map_err)?;
        drop(conn);
        let _ = self.server.set(version);
        if flavor == Flavor::Timescale {
            // Notes an earlier process left (it stopped between insert and refresh).
            if let Err(e) = timescale::refresh_pending(&self.pool).await {
                warn!(error = %e, "refreshing rollups noted by an earlier writer failed; the next write retries");
                self.pending_dirty
                    .store(true, std::sync::atomic::Ordering::Release);
            }
        }
        let _ = self.flavor.set(flavor.clone());
        info!(
            flavor = ?flavor,
            layout = flavor.describe(),
            server = self.server.get().map(String::as_str).unwrap_or("?"),
            database = %self.config.database_url.as_ref().map(|u| u.redacted()).unwrap_or_default(),
            "history store ready"
        );
        Ok(flavor)
    }

    /// [`PgStore::prepare`], retried with backoff while the database is unreachable;
    /// `on_wait` hears every failure (for readiness reporting).
    pub async fn prepare_with_retry(
        &self,
        mut on_wait: impl FnMut(&StoreError),
    ) -> Result<Flavor, StoreError> {
        let mut backoff = Duration::from_millis(250);
        loop {
            match self.prepare().await {
                Ok(f) => return Ok(f),
                Err(e) if e.is_transient() => {
                    warn!(error = %e, "history store not reachable yet; retrying");
                    on_wait(&e);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn set_up_flavor(&self, conn: &mut PgConnection) -> Result<Flavor, StoreError> {
        let recorded: Option<String> =
            sqlx::query_scalar("SELECT value FROM store_meta WHERE key = 'flavor'")
                .fetch_optional(&mut *conn)
                .await
                .map_err(map_err)?;
        let available: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')",
        )
        .fetch_one(&mut *conn)
        .await
        .map_err(map_err)?;
        // Creating the extension on a server that does not preload it ends the connection
        // (FATAL), and this one holds the set-up lock: ask first.
        let preloaded: bool = sqlx::query_scalar(
            "SELECT coalesce(current_setting('shared_preload_libraries', true), '') ~ '(^|[ ,])timescaledb([ ,]|$)'",
        )
        .fetch_one(&mut *conn)
        .await
        .map_err(map_err)?;
        let mode = self.config.timescale;
        let flavor = match recorded.as_deref() {
            Some("timescale") => Flavor::Timescale,
            Some(_) if mode == TimescaleMode::Require => return Err(StoreError::Failed(
                "store.timescale = \"require\", but this database was set up as plain PostgreSQL"
                    .into(),
            )),
            Some(_) => Flavor::Postgres,
            None if mode == TimescaleMode::Off => Flavor::Postgres,
            None if !available => {
                if mode == TimescaleMode::Require {
                    return Err(StoreError::Failed(
                        "store.timescale = \"require\", but the timescaledb extension is not installed on the server".into(),
                    ));
                }
                info!("timescaledb extension not installed: using plain PostgreSQL");
                Flavor::Postgres
            }
            None if !preloaded => {
                if mode == TimescaleMode::Require {
                    return Err(StoreError::Failed(
                        "store.timescale = \"require\", but the server does not preload timescaledb (shared_preload_libraries)".into(),
                    ));
                }
                warn!("timescaledb is installed but not in shared_preload_libraries: using plain PostgreSQL");
                Flavor::Postgres
            }
            None => match sqlx::query("CREATE EXTENSION IF NOT EXISTS timescaledb")
                .execute(&mut *conn)
                .await
            {
                Ok(_) => Flavor::Timescale,
                Err(e) if mode == TimescaleMode::Require => {
                    return Err(StoreError::Failed(format!(
                        "creating the timescaledb extension: {e}"
                    )))
                }
                Err(e) => {
                    warn!(error = %e, "timescaledb is installed but could not be enabled (shared_preload_libraries?): using plain PostgreSQL");
                    Flavor::Postgres
                }
            },
        };
        let statements = match flavor {
            Flavor::Timescale => self.timescale_statements(conn).await?,
            _ => vec![
                rollup_table_sql("readings_5m"),
                rollup_table_sql("readings_1h"),
                "CREATE INDEX IF NOT EXISTS readings_ts_brin ON readings USING brin (ts)".into(),
            ],
        };
        // One at a time: continuous aggregates may not be created inside a transaction.
        // Sent as simple queries (`Executor::execute` on text): `raw_sql` on a borrowed
        // connection makes the future's `Send` unprovable (rust#102211).
        for sql in statements {
            conn.execute(sql.as_str()).await.map_err(map_err)?;
        }
        if flavor == Flavor::Timescale {
            timescale::reconcile(conn, &self.config)
                .await
                .map_err(map_err)?;
        }
        let name = if flavor == Flavor::Timescale {
            "timescale"
        } else {
            "postgres"
        };
        sqlx::query("INSERT INTO store_meta (key, value) VALUES ('flavor', $1) ON CONFLICT (key) DO NOTHING")
            .bind(name)
            .execute(&mut *conn)
            .await
            .map_err(map_err)?;
        Ok(flavor)
    }

    /// The TimescaleDB objects (policies are reconciled afterwards, not created here).
    async fn timescale_statements(
        &self,
        conn: &mut PgConnection,
    ) -> Result<Vec<String>, StoreError> {
        let mut s = vec![
            "SELECT create_hypertable('readings', 'ts', chunk_time_interval => INTERVAL '1 day', if_not_exists => TRUE, migrate_data => TRUE)".to_string(),
            cagg_sql("readings_5m", "5 minutes"),
            cagg_sql("readings_1h", "1 hour"),
            // The key series queries use, as the plain layout's rollup tables have it (TimescaleDB
            // indexes each grouping column alone, so one station's month read every station's).
            "CREATE INDEX IF NOT EXISTS readings_5m_key ON readings_5m (station, parameter, bucket)".into(),
            "CREATE INDEX IF NOT EXISTS readings_1h_key ON readings_1h (station, parameter, bucket)".into(),
        ];
        let compressed: bool = sqlx::query_scalar(
            "SELECT coalesce(bool_or(compression_enabled), false) FROM timescaledb_information.hypertables WHERE hypertable_name = 'readings'",
        )
        .fetch_one(&mut *conn)
        .await
        .unwrap_or(false);
        if !compressed {
            s.push("ALTER TABLE readings SET (timescaledb.compress, timescaledb.compress_segmentby = 'station, parameter', timescaledb.compress_orderby = 'ts DESC')".into());
        }
        s.extend(timescale::BOOKKEEPING.iter().map(|x| x.to_string()));
        Ok(s)
    }

    fn ready_flavor(&self) -> Result<&Flavor, StoreError> {
        self.flavor
            .get()
            .ok_or_else(|| StoreError::NotReady("migrations have not run yet".into()))
    }

    /// Plain PostgreSQL: deletes rows past the configured retention (TimescaleDB does this
    /// with its own policies). Returns the rows deleted.
    pub async fn enforce_retention(&self) -> Result<u64, StoreError> {
        let flavor = self.ready_flavor()?.clone();
        let mut deleted = 0;
        // The audit log is a plain table on both layouts: its retention is ours to apply.
        // The table refuses every other change (0005): the policy says who it is, for this
        // transaction only.
        if let Some(d) = self.config.audit_retention_days {
            let mut tx = self.pool.begin().await.map_err(map_err)?;
            sqlx::query("SET LOCAL ioc.audit_retention = 'on'")
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
            deleted +=
                sqlx::query("DELETE FROM audit_log WHERE ts < now() - make_interval(days => $1)")
                    .bind(d as i32)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?
                    .rows_affected();
            tx.commit().await.map_err(map_err)?;
        }
        if flavor != Flavor::Postgres {
            return Ok(deleted);
        }
        let plan = [
            ("readings", "ts", self.config.raw_retention_days),
            ("readings_5m", "bucket", self.config.rollup_retention_days),
            ("readings_1h", "bucket", self.config.rollup_retention_days),
        ];
        for (table, col, days) in plan {
            if let Some(d) = days {
                let sql =
                    format!("DELETE FROM {table} WHERE {col} < now() - make_interval(days => $1)");
                deleted += sqlx::query(&sql)
                    .bind(d as i32)
                    .execute(&self.pool)
                    .await
                    .map_err(map_err)?
                    .rows_affected();
            }
        }
        Ok(deleted)
    }

    async fn write_unnest(
        &self,
        flavor: &Flavor,
        rows: &[Reading],
    ) -> Result<(i64, i64), StoreError> {
        let mut station = Vec::with_capacity(rows.len());
        let mut parameter = Vec::with_capacity(rows.len());
        let mut ts = Vec::with_capacity(rows.len());
        let mut value = Vec::with_capacity(rows.len());
        let mut unit = Vec::with_capacity(rows.len());
        let mut quality = Vec::with_capacity(rows.len());
        for r in rows {
            station.push(r.station.as_str());
            parameter.push(r.parameter.as_str());
            ts.push(r.ts.with_timezone(&Utc));
            value.push(r.value);
            unit.push(r.unit.symbol());
            quality.push(quality_str(r.quality));
        }
        sqlx::query_as(&insert_sql(flavor, UNNEST_SOURCE))
            .bind(station)
            .bind(parameter)
            .bind(ts)
            .bind(value)
            .bind(unit)
            .bind(quality)
            .fetch_one(&self.pool)
            .await
            .map_err(map_err)
    }

    async fn write_copy(
        &self,
        flavor: &Flavor,
        rows: &[Reading],
    ) -> Result<(i64, i64), StoreError> {
        let mut data = String::with_capacity(rows.len() * 80);
        for r in rows {
            copy_field(&mut data, r.station.as_str());
            data.push('\t');
            data.push_str(r.parameter.as_str());
            data.push('\t');
            data.push_str(&r.ts.to_rfc3339());
            data.push('\t');
            data.push_str(&format!("{:?}", r.value));
            data.push('\t');
            copy_field(&mut data, r.unit.symbol());
            data.push('\t');
            data.push_str(quality_str(r.quality));
            data.push('\n');
        }
        let mut conn = self.pool.acquire().await.map_err(map_err)?;
        let mut tx = conn.begin().await.map_err(map_err)?;
        sqlx::query(STAGE_TABLE)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        let mut copy = tx
            .copy_in_raw(
                "COPY readings_stage (station, parameter, ts, value, unit, quality) FROM STDIN",
            )
            .await
            .map_err(map_err)?;
        copy.send(data.as_bytes()).await.map_err(map_err)?;
        copy.finish().await.map_err(map_err)?;
        let written: (i64, i64) = sqlx::query_as(&insert_sql(flavor, "readings_stage AS s"))
            .fetch_one(&mut *tx)
            .await
            .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(written)
    }

    /// TimescaleDB: refreshes what writes noted below the watermarks. A failure leaves the
    /// notes for the next try and fails the write, so it is not acknowledged while its
    /// rollups disagree with its raw rows.
    async fn settle_pending(&self) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering;
        match timescale::refresh_pending(&self.pool).await {
            Ok(_) => {
                self.pending_dirty.store(false, Ordering::Release);
                Ok(())
            }
            Err(e) => {
                self.pending_dirty.store(true, Ordering::Release);
                Err(map_err(e))
            }
        }
    }

    /// TimescaleDB: materialises both aggregates up to where their policies would (now minus
    /// each end offset), waiting out a concurrent refresh; nothing on plain PostgreSQL.
    pub async fn refresh_aggregates(&self) -> Result<(), StoreError> {
        if self.ready_flavor()? != &Flavor::Timescale {
            return Ok(());
        }
        timescale::refresh_all(&self.pool).await.map_err(map_err)
    }

    /// TimescaleDB policy jobs whose last run failed (empty on plain PostgreSQL).
    pub async fn failing_jobs(&self) -> Result<Vec<FailingJob>, StoreError> {
        if self.ready_flavor()? != &Flavor::Timescale {
            return Ok(Vec::new());
        }
        timescale::failing_jobs(&self.pool).await.map_err(map_err)
    }
}

#[async_trait]
impl History for PgStore {
    async fn write_readings(&self, rows: &[Reading]) -> Result<Written, StoreError> {
        let flavor = self.ready_flavor()?;
        if rows.is_empty() {
            return Ok(Written::default());
        }
        let (inserted, noted) = match self.config.write_method {
            WriteMethod::Unnest => self.write_unnest(flavor, rows).await?,
            WriteMethod::Copy => self.write_copy(flavor, rows).await?,
        };
        if noted > 0
            || self
                .pending_dirty
                .load(std::sync::atomic::Ordering::Acquire)
        {
            self.settle_pending().await?;
        }
        let inserted = inserted as u64;
        Ok(Written {
            inserted,
            duplicates: rows.len() as u64 - inserted,
        })
    }

    async fn series(&self, q: &SeriesQuery) -> Result<Series, StoreError> {
        self.ready_flavor()?;
        let source = q.source();
        let sql = match source.table() {
            None => format!(
                "SELECT date_bin(make_interval(secs => $3), ts, TIMESTAMPTZ '{ORIGIN_SQL}') AS b,
                        count(*)::int8 AS n, avg(value) AS avg, min(value) AS lo, max(value) AS hi
                 FROM readings WHERE station = $1 AND parameter = $2 AND ts >= $4 AND ts < $5
                 GROUP BY b ORDER BY b"
            ),
            Some(table) => format!(
                "SELECT date_bin(make_interval(secs => $3), bucket, TIMESTAMPTZ '{ORIGIN_SQL}') AS b,
                        sum(n)::int8 AS n, sum(total) / sum(n) AS avg, min(lo) AS lo, max(hi) AS hi
                 FROM {table} WHERE station = $1 AND parameter = $2 AND bucket >= $4 AND bucket < $5
                 GROUP BY b ORDER BY b"
            ),
        };
        let rows = sqlx::query(&sql)
            .bind(q.station.as_str())
            .bind(q.parameter.as_str())
            .bind(q.step_s as f64)
            .bind(q.from)
            .bind(q.to)
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        let buckets = rows
            .iter()
            .map(|r| {
                Ok(Bucket {
                    t: r.try_get("b")?,
                    n: r.try_get("n")?,
                    min: r.try_get("lo")?,
                    avg: r.try_get("avg")?,
                    max: r.try_get("hi")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(map_err)?;
        Ok(Series {
            query: q.clone(),
            unit: q.parameter.canonical_unit(),
            source,
            buckets,
            downsampled_from: None,
        })
    }

    async fn latest_at(
        &self,
        stations: &[LocalId],
        at: DateTime<Utc>,
        lookback: Duration,
    ) -> Result<Vec<Reading>, StoreError> {
        self.ready_flavor()?;
        let since = at - chrono::Duration::from_std(lookback).unwrap_or(chrono::Duration::days(2));
        let ids: Vec<&str> = stations.iter().map(LocalId::as_str).collect();
        let rows = sqlx::query(
            "SELECT DISTINCT ON (station, parameter) station, parameter, ts, value, unit, quality
             FROM readings WHERE station = ANY($1) AND ts < $2 AND ts > $3
             ORDER BY station, parameter, ts DESC",
        )
        .bind(ids)
        .bind(at)
        .bind(since)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        let mut out = rows_to_readings(rows);
        out.sort_by_key(ReadingKey::of);
        Ok(out)
    }

    async fn readings_between(
        &self,
        stations: &[LocalId],
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        after: Option<&ReadingKey>,
        limit: usize,
    ) -> Result<Vec<Reading>, StoreError> {
        self.ready_flavor()?;
        let ids: Vec<&str> = stations.iter().map(LocalId::as_str).collect();
        let (ats, ast, apa) = match after {
            Some(k) => (k.ts, k.station.as_str(), k.parameter.as_str()),
            None => (from, "", ""),
        };
        let rows = sqlx::query(
            r#"SELECT station, parameter, ts, value, unit, quality FROM readings
             WHERE station = ANY($1) AND ts >= $2 AND ts < $3
               AND (ts, station COLLATE "C", parameter COLLATE "C") > ($4, $5::text COLLATE "C", $6::text COLLATE "C")
             ORDER BY ts, station COLLATE "C", parameter COLLATE "C" LIMIT $7"#,
        )
        .bind(ids)
        .bind(from)
        .bind(to)
        .bind(ats)
        .bind(ast)
        .bind(apa)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(rows_to_readings(rows))
    }

    async fn check_ready(&self) -> Result<(), StoreError> {
        self.ready_flavor()?;
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(map_err)
    }

    async fn write_registry(&self, rows: &[RegistryRow]) -> Result<(), StoreError> {
        self.ready_flavor()?;
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        for r in rows {
            sqlx::query(
                "INSERT INTO registry (entity, kind, data, updated, removed) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (entity) DO UPDATE SET kind = EXCLUDED.kind,
                     data = coalesce(EXCLUDED.data, registry.data),
                     updated = EXCLUDED.updated, removed = EXCLUDED.removed
                 WHERE registry.updated <= EXCLUDED.updated",
            )
            .bind(&r.entity)
            .bind(&r.kind)
            .bind(&r.data)
            .bind(r.updated)
            .bind(r.removed)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        }
        tx.commit().await.map_err(map_err)
    }

    async fn write_alert_events(&self, rows: &[AlertEventRow]) -> Result<(), StoreError> {
        self.ready_flavor()?;
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        for r in rows {
            sqlx::query(
                "INSERT INTO alerts (alert, ts, event, entity, detail) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT DO NOTHING",
            )
            .bind(&r.alert)
            .bind(r.ts)
            .bind(&r.event)
            .bind(&r.entity)
            .bind(&r.detail)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        }
        tx.commit().await.map_err(map_err)
    }

    async fn write_report_events(&self, rows: &[ReportEventRow]) -> Result<u64, StoreError> {
        self.ready_flavor()?;
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        let mut new = 0;
        for r in rows {
            new += sqlx::query(
                "INSERT INTO report_events (report, seq, event_id, ts, kind, data)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            )
            .bind(&r.report)
            .bind(r.seq)
            .bind(r.event_id)
            .bind(r.ts)
            .bind(&r.kind)
            .bind(&r.data)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?
            .rows_affected();
        }
        tx.commit().await.map_err(map_err)?;
        Ok(new)
    }

    async fn write_indicator_events(&self, rows: &[IndicatorEventRow]) -> Result<u64, StoreError> {
        self.ready_flavor()?;
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        let mut new = 0;
        for r in rows {
            new += sqlx::query(
                "INSERT INTO indicator_events
                     (event_id, ts, kind, indicator, unit, period, value, source, data)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
            )
            .bind(r.event_id)
            .bind(r.ts)
            .bind(&r.kind)
            .bind(&r.indicator)
            .bind(&r.unit)
            .bind(&r.period)
            .bind(r.value)
            .bind(&r.source)
            .bind(&r.data)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?
            .rows_affected();
        }
        tx.commit().await.map_err(map_err)?;
        Ok(new)
    }

    async fn indicator_events(
        &self,
        indicator: &str,
        unit: Option<&str>,
        limit: usize,
    ) -> Result<Vec<IndicatorEventRow>, StoreError> {
        self.ready_flavor()?;
        // The newest `limit`, answered oldest first.
        let rows = sqlx::query(
            "SELECT * FROM (
                 SELECT event_id, ts, kind, indicator, unit, period, value, source, data
                   FROM indicator_events
                  WHERE indicator = $1 AND ($2::text IS NULL OR unit = $2)
                  ORDER BY ts DESC, event_id DESC LIMIT $3) newest
             ORDER BY ts, event_id",
        )
        .bind(indicator)
        .bind(unit)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        rows.iter()
            .map(|r| {
                Ok(IndicatorEventRow {
                    event_id: r.try_get("event_id")?,
                    ts: r.try_get("ts")?,
                    kind: r.try_get("kind")?,
                    indicator: r.try_get("indicator")?,
                    unit: r.try_get("unit")?,
                    period: r.try_get("period")?,
                    value: r.try_get("value")?,
                    source: r.try_get("source")?,
                    data: r.try_get("data")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(map_err)
    }

    async fn report_events(&self, report: &str) -> Result<Vec<ReportEventRow>, StoreError> {
        self.ready_flavor()?;
        let rows: Vec<(
            String,
            i32,
            uuid::Uuid,
            DateTime<Utc>,
            String,
            serde_json::Value,
        )> = sqlx::query_as(
            "SELECT report, seq, event_id, ts, kind, data FROM report_events
                 WHERE report = $1 ORDER BY seq",
        )
        .bind(report)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(rows
            .into_iter()
            .map(|(report, seq, event_id, ts, kind, data)| ReportEventRow {
                report,
                seq,
                event_id,
                ts,
                kind,
                data,
            })
            .collect())
    }

    async fn put_media(&self, m: &Media) -> Result<(), StoreError> {
        self.ready_flavor()?;
        sqlx::query(
            "INSERT INTO report_media (id, content_type, bytes, sha256) VALUES ($1, $2, $3, $4)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&m.id)
        .bind(&m.content_type)
        .bind(&m.bytes)
        .bind(&m.sha256)
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn write_audit(&self, e: &AuditEntry) -> Result<(), StoreError> {
        self.ready_flavor()?;
        sqlx::query(
            "INSERT INTO audit_log (ts, subject, role, action, target, remote, result, status, reason, count)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(e.at)
        .bind(&e.subject)
        .bind(&e.role)
        .bind(&e.action)
        .bind(&e.target)
        .bind(&e.remote)
        .bind(e.result.as_str())
        .bind(e.status.map(|s| s as i16))
        .bind(&e.reason)
        .bind(i32::try_from(e.count.max(1)).unwrap_or(i32::MAX))
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn audit(&self, q: &AuditQuery) -> Result<Vec<AuditRow>, StoreError> {
        self.ready_flavor()?;
        type Row = (
            i64,
            DateTime<Utc>,
            String,
            String,
            String,
            String,
            Option<String>,
            String,
            Option<i16>,
            Option<String>,
            i32,
        );
        // `camera.` asks for every action of cameras; anything else is one action.
        let (exact, prefix) = match q.action.as_deref() {
            Some(a) if a.ends_with('.') => (None, Some(format!("{}%", a.replace('%', "")))),
            Some(a) => (Some(a.to_string()), None),
            None => (None, None),
        };
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT id, ts, subject, role, action, target, remote, result, status, reason, count
             FROM audit_log
             WHERE ($1::timestamptz IS NULL OR ts >= $1) AND ($2::timestamptz IS NULL OR ts < $2)
               AND ($3::text IS NULL OR subject = $3) AND ($4::text IS NULL OR action = $4)
               AND ($5::text IS NULL OR action LIKE $5) AND ($6::text IS NULL OR target = $6)
               AND ($7::text IS NULL OR result = $7) AND ($8::bigint IS NULL OR id < $8)
             ORDER BY id DESC LIMIT $9",
        )
        .bind(q.since)
        .bind(q.until)
        .bind(&q.subject)
        .bind(exact)
        .bind(prefix)
        .bind(&q.target)
        .bind(q.result.map(AuditResult::as_str))
        .bind(q.before)
        .bind(q.limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(rows
            .into_iter()
            .map(
                |(id, at, subject, role, action, target, remote, result, status, reason, count)| {
                    AuditRow {
                        id,
                        entry: AuditEntry {
                            at,
                            subject,
                            role,
                            action,
                            target,
                            remote,
                            result: AuditResult::parse(&result).unwrap_or(AuditResult::Allowed),
                            status: status.and_then(|s| u16::try_from(s).ok()),
                            reason,
                            count: u32::try_from(count).unwrap_or(1),
                        },
                    }
                },
            )
            .collect())
    }

    async fn media(&self, id: &str) -> Result<Option<Media>, StoreError> {
        self.ready_flavor()?;
        let row: Option<(String, String, Vec<u8>, String)> = sqlx::query_as(
            "SELECT id, content_type, bytes, sha256 FROM report_media WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(row.map(|(id, content_type, bytes, sha256)| Media {
            id,
            content_type,
            bytes,
            sha256,
        }))
    }

    async fn housekeeping(&self) -> Result<u64, StoreError> {
        if self.ready_flavor()? == &Flavor::Timescale {
            self.settle_pending().await?;
            let moved = timescale::advance(&self.pool, &self.config)
                .await
                .map_err(map_err)?;
            if !moved.is_empty() {
                info!(views = ?moved, "continuous aggregates refreshed where their policies lagged");
            }
        }
        self.enforce_retention().await
    }

    async fn failing_jobs(&self) -> Result<Vec<FailingJob>, StoreError> {
        PgStore::failing_jobs(self).await
    }

    fn flavor(&self) -> Flavor {
        self.flavor.get().cloned().unwrap_or(Flavor::Postgres)
    }

    fn describe(&self) -> String {
        match self.flavor.get() {
            Some(f) => format!(
                "{} {}",
                f.describe(),
                self.server
                    .get()
                    .map(|v| format!("(server {v})"))
                    .unwrap_or_default()
            ),
            None => "PostgreSQL (not set up yet)".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_writes_fold_only_new_rows_into_rollups() {
        let sql = insert_sql(&Flavor::Postgres, UNNEST_SOURCE);
        assert!(sql.contains("ON CONFLICT DO NOTHING"));
        assert!(
            sql.contains("FROM ins GROUP BY"),
            "rollups read the inserted rows only"
        );
        let ts = insert_sql(&Flavor::Timescale, UNNEST_SOURCE);
        assert!(!ts.contains("INSERT INTO readings_5m"));
        assert!(
            ts.contains("INSERT INTO rollup_pending"),
            "below-watermark rows are noted in the same statement"
        );
    }

    #[test]
    fn copy_fields_are_escaped() {
        let mut s = String::new();
        copy_field(&mut s, "a\tb\\c\nd");
        assert_eq!(s, "a\\tb\\\\c\\nd");
    }
}
