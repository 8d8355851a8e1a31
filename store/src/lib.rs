//! History for the IOC: every reading the stream core sees, kept so operators can scroll
//! back, leaders can compare weeks and an incident review can replay the map.
//!
//! This crate owns *the history schema and its queries*: sqlx migrations, the idempotent
//! batch writer (natural keys, so a replay after a crash adds nothing), time-bucketed series
//! served from rollups or continuous aggregates, and the reads a replay needs. It runs on
//! TimescaleDB when the extension is there and on plain PostgreSQL 15 otherwise ([`Flavor`]),
//! and has a bounded in-memory stand-in for the embedded demo ([`MemoryHistory`]).
//! It must never consume the bus nor decide what to write: stream-core feeds it.

pub mod audit;
mod config;
pub mod forecast;
mod memory;
mod pg;
pub mod replay;
pub mod series;
mod timescale;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use model::{LocalId, Reading};
use serde::Serialize;

pub use audit::{AuditEntry, AuditQuery, AuditResult, AuditRow};
pub use config::{DatabaseUrl, StoreConfig, TimescaleMode, WriteMethod};
pub use memory::MemoryHistory;
pub use pg::PgStore;
pub use series::{Bucket, Series, SeriesQuery, SeriesSource};
pub use timescale::{desired_policies, FailingJob, Policy, PolicyKind};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or refused for a passing reason; retry later.
    #[error("history store unavailable: {0}")]
    Unavailable(String),
    /// A request the database refused and retrying will not fix.
    #[error("history store error: {0}")]
    Failed(String),
    /// The store has not finished setting itself up (migrations) yet.
    #[error("history store not ready: {0}")]
    NotReady(String),
}

impl StoreError {
    /// Worth retrying (the writer backs off and tries again).
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_) | StoreError::NotReady(_))
    }
}

/// How the history is kept, for logs, `/readyz` and the wall page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Flavor {
    /// TimescaleDB: hypertables, continuous aggregates, compression and retention policies.
    Timescale,
    /// Plain PostgreSQL: BRIN time indexes, rollup tables kept by the writer, `date_bin`.
    Postgres,
    /// The embedded demo: bounded memory, lost on exit.
    Memory,
}

impl Flavor {
    pub fn describe(&self) -> &'static str {
        match self {
            Flavor::Timescale => "TimescaleDB (hypertables, continuous aggregates)",
            Flavor::Postgres => "PostgreSQL (BRIN indexes, rollup tables, date_bin)",
            Flavor::Memory => "in memory (bounded, lost on exit)",
        }
    }
}

/// What a write did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Written {
    /// Rows that were new.
    pub inserted: u64,
    /// Rows already stored (a replay): skipped by their natural key.
    pub duplicates: u64,
}

/// A store of history. Implementations: [`PgStore`] and [`MemoryHistory`].
#[async_trait]
pub trait History: Send + Sync + 'static {
    /// Writes readings durably and idempotently: a reading whose (station, parameter, event
    /// time) is stored already is skipped. Returns once the rows are committed.
    async fn write_readings(&self, rows: &[Reading]) -> Result<Written, StoreError>;

    /// Min/avg/max per bucket (see [`SeriesQuery`]).
    async fn series(&self, q: &SeriesQuery) -> Result<Series, StoreError>;

    /// The newest reading per (station, parameter) before `at` and after `at - lookback`,
    /// for `stations`, in event-time order.
    async fn latest_at(
        &self,
        stations: &[LocalId],
        at: DateTime<Utc>,
        lookback: Duration,
    ) -> Result<Vec<Reading>, StoreError>;

    /// Readings of `stations` with `from <= ts < to` in event-time order (ties by station and
    /// parameter), at most `limit`, starting after `after` (ts, station, parameter) when given.
    async fn readings_between(
        &self,
        stations: &[LocalId],
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        after: Option<&ReadingKey>,
        limit: usize,
    ) -> Result<Vec<Reading>, StoreError>;

    /// Succeeds when the store can serve reads and take writes now.
    async fn check_ready(&self) -> Result<(), StoreError>;

    /// Records registry changes (the last version of each entity; a removal keeps the last
    /// data and marks it removed). Older versions than the one stored are ignored.
    async fn write_registry(&self, rows: &[RegistryRow]) -> Result<(), StoreError> {
        let _ = rows;
        Ok(())
    }

    /// Records alert life events (raised, acknowledged, cleared...); idempotent.
    async fn write_alert_events(&self, rows: &[AlertEventRow]) -> Result<(), StoreError> {
        let _ = rows;
        Ok(())
    }

    /// Records field-report events; the first event stored with a given (report, seq)
    /// wins, so a replay or a race's loser adds nothing. Returns the rows that were new.
    async fn write_report_events(&self, rows: &[ReportEventRow]) -> Result<u64, StoreError> {
        let _ = rows;
        Err(StoreError::Failed("this store keeps no reports".into()))
    }

    /// A report's events in life order.
    async fn report_events(&self, report: &str) -> Result<Vec<ReportEventRow>, StoreError> {
        let _ = report;
        Err(StoreError::Failed("this store keeps no reports".into()))
    }

    /// Records indicator events (values, targets, explanations); an event stored already
    /// (by its id) is skipped. Returns the rows that were new.
    async fn write_indicator_events(&self, rows: &[IndicatorEventRow]) -> Result<u64, StoreError> {
        let _ = rows;
        Err(StoreError::Failed("this store keeps no indicators".into()))
    }

    /// The events of one indicator (for one unit, or all), oldest first: the newest `limit`.
    async fn indicator_events(
        &self,
        indicator: &str,
        unit: Option<&str>,
        limit: usize,
    ) -> Result<Vec<IndicatorEventRow>, StoreError> {
        let _ = (indicator, unit, limit);
        Err(StoreError::Failed("this store keeps no indicators".into()))
    }

    /// Keeps an uploaded photo (already stripped of metadata) under its id; idempotent.
    async fn put_media(&self, media: &Media) -> Result<(), StoreError> {
        let _ = media;
        Err(StoreError::Failed("this store keeps no photos".into()))
    }

    async fn media(&self, id: &str) -> Result<Option<Media>, StoreError> {
        let _ = id;
        Err(StoreError::Failed("this store keeps no photos".into()))
    }

    /// Writes one entry to the audit log; what it stands for proceeds only if this succeeds.
    async fn write_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        let _ = entry;
        Err(StoreError::Failed("this store keeps no audit log".into()))
    }

    /// Entries of the audit log, newest first.
    async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditRow>, StoreError> {
        let _ = query;
        Err(StoreError::Failed("this store keeps no audit log".into()))
    }

    /// Periodic upkeep (retention where the database has no policies of its own); returns
    /// the rows removed.
    async fn housekeeping(&self) -> Result<u64, StoreError> {
        Ok(0)
    }

    /// Background jobs of the database (TimescaleDB policies) whose last run failed; the
    /// store stays exact without them, but `/readyz` and a metric show them.
    async fn failing_jobs(&self) -> Result<Vec<FailingJob>, StoreError> {
        Ok(Vec::new())
    }

    fn flavor(&self) -> Flavor;

    /// A short human description: backend and limits ("in memory, last 200000 readings").
    fn describe(&self) -> String;
}

/// One registry change, as the `registry` table keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct RegistryRow {
    /// `station:hg-vt-sal-01`
    pub entity: String,
    /// `station`, `unit`, `agency`...
    pub kind: String,
    /// The entry; `None` for a removal.
    pub data: Option<serde_json::Value>,
    pub updated: DateTime<Utc>,
    pub removed: bool,
}

/// One alert event, as the `alerts` table keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertEventRow {
    pub alert: String,
    pub ts: DateTime<Utc>,
    /// `alert.raised`, `alert.acked`...
    pub event: String,
    /// The alert's subject (`station:hg-vt-sal-01`), or the alert itself for actions.
    pub entity: String,
    pub detail: serde_json::Value,
}

/// One field-report event, as `report_events` keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportEventRow {
    pub report: String,
    /// Place in the report's life: created is 0.
    pub seq: i32,
    pub event_id: uuid::Uuid,
    pub ts: DateTime<Utc>,
    /// `report.created` or `report.transition`.
    pub kind: String,
    pub data: serde_json::Value,
}

/// One event of `ioc.indicators`, as `indicator_events` keeps it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct IndicatorEventRow {
    /// The envelope's id: the same message read twice is stored once.
    pub event_id: uuid::Uuid,
    pub ts: DateTime<Utc>,
    /// `indicator.value`, `indicator.target` or `indicator.explanation`.
    pub kind: String,
    pub indicator: String,
    pub unit: String,
    /// DHIS2 period (`202611`).
    pub period: String,
    /// The value or the target's figure; none for an explanation or a range target.
    pub value: Option<f64>,
    /// Where it came from (`http:/ingest/v1/indicators`, `poll:…`, `api:…`).
    pub source: String,
    /// The event as it travelled.
    pub data: serde_json::Value,
}

/// A photo of a report.
#[derive(Debug, Clone, PartialEq)]
pub struct Media {
    /// `<sha256 prefix>.jpg`: the same photo uploaded twice is kept once.
    pub id: String,
    pub content_type: String,
    pub bytes: Vec<u8>,
    pub sha256: String,
}

/// The natural key of a reading, for paging in event-time order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ReadingKey {
    pub ts: DateTime<Utc>,
    pub station: String,
    pub parameter: String,
}

impl ReadingKey {
    pub fn of(r: &Reading) -> Self {
        Self {
            ts: r.ts.with_timezone(&Utc),
            station: r.station.to_string(),
            parameter: r.parameter.as_str().to_string(),
        }
    }
}
