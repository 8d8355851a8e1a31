//! The history sink: readings from the bus into the history store, in batches, each batch
//! durable before its offsets may be committed.
//!
//! It consumes the readings topic under a consumer group of its own (`history.group`), apart
//! from the live-state loop, so a slow or stopped database holds back history only: the sink
//! stops consuming (Kafka keeps the readings), retries with backoff and reports not-ready,
//! while live state keeps flowing to screens. Writes are idempotent, so the readings between
//! the last commit and a crash are written again harmlessly. A row the database refuses for
//! good (not a passing failure) is isolated and dead-lettered; the rest of its batch lands.
//! It also keeps the `registry` table (the last version of every entity) from the registry
//! topic, the `alerts` table (every alert event) from the alerts topic, and the
//! `report_events` table (every field-report event, first per seq) from the reports topic,
//! and `indicator_events` (every value, correction, target and explanation) from the
//! indicators topic.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bus::{Bus, BusError, Message, Topics};
use chrono::Utc;
use model::envelope::original_value;
use model::indicator::IndicatorEvent;
use model::report::{ReportCreated, ReportTransition};
use model::{Envelope, EventKind, FieldError, Reading};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use store::{
    AlertEventRow, FailingJob, History, IndicatorEventRow, RegistryRow, ReportEventRow, StoreError,
};
use tracing::{info, warn};

use crate::input::collect_batch;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HistoryConfig {
    /// Consumer group whose committed offsets record what is durable in the store.
    pub group: String,
    /// This instance's partitions of the readings topic (unset: `core.partitions`, which
    /// is all of them when that is unset too).
    pub partitions: Option<Vec<i32>>,
    /// Most readings per write.
    pub batch_max: usize,
    /// How long a batch waits for more readings after its first one, ms.
    pub batch_wait_ms: u64,
    /// Longest wait between retries while the store is failing, ms.
    pub max_backoff_ms: u64,
    /// How often housekeeping runs, s: retention (audit log; plain PostgreSQL's readings and
    /// rollups), and on TimescaleDB refreshing aggregates whose policies lag.
    pub housekeeping_s: u64,
    /// How often the database's background jobs are checked for failures (`/readyz`,
    /// `ioc_history_jobs_failing`), s.
    pub upkeep_s: u64,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        Self {
            group: "ioc-history".into(),
            partitions: None,
            batch_max: 5000,
            batch_wait_ms: 50,
            max_backoff_ms: 5000,
            housekeeping_s: 3600,
            upkeep_s: 60,
        }
    }
}

/// What the sink reports about itself (`/readyz` check `history`).
#[derive(Debug, Default)]
pub struct HistoryStatus {
    running: AtomicBool,
    written: AtomicU64,
    duplicates: AtomicU64,
    problem: Mutex<Option<String>>,
    backend: Mutex<String>,
    /// The database's own background jobs (TimescaleDB policies) whose last run failed: the
    /// store stays exact without them (it refreshes itself), so they do not make the sink
    /// unready, but operators must see them.
    jobs_failing: Mutex<Vec<FailingJob>>,
}

impl HistoryStatus {
    fn set_problem(&self, p: Option<String>) {
        *self.problem.lock().unwrap_or_else(|e| e.into_inner()) = p;
    }

    /// The store cannot be reached yet (start-up).
    pub fn waiting(&self, reason: &str) {
        self.set_problem(Some(reason.to_string()));
    }

    fn set_jobs_failing(&self, jobs: Vec<FailingJob>) {
        metrics::gauge!("ioc_history_jobs_failing").set(jobs.len() as f64);
        *self.jobs_failing.lock().unwrap_or_else(|e| e.into_inner()) = jobs;
    }

    pub fn set_backend(&self, describe: String) {
        *self.backend.lock().unwrap_or_else(|e| e.into_inner()) = describe;
    }

    /// Ready = consuming and the last write went through.
    pub fn is_ready(&self) -> bool {
        self.running.load(Ordering::Acquire)
            && self
                .problem
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_none()
    }

    /// The `/readyz` entry: ready, backend, rows written and skipped, the current problem.
    pub fn report(&self) -> Value {
        let problem = self
            .problem
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut v = json!({
            "ready": self.is_ready(),
            "backend": *self.backend.lock().unwrap_or_else(|e| e.into_inner()),
            "written": self.written.load(Ordering::Relaxed),
            "duplicates_skipped": self.duplicates.load(Ordering::Relaxed),
        });
        if let Some(p) = problem {
            v["reason"] = p.into();
        }
        let jobs = self
            .jobs_failing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if !jobs.is_empty() {
            v["jobs_failing"] = json!(jobs);
            v["jobs_note"] = "the database's policy jobs are failing; the store refreshes its rollups itself, so history stays exact".into();
        }
        v
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where the sink starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryStart {
    /// After the group's committed offsets (a durable store).
    Committed,
    /// From the oldest reading the bus keeps (a store that forgets on restart: memory).
    Oldest,
}

/// Runs the sink until `shutdown` resolves (then commits) or the bus fails for good.
pub async fn run_history(
    bus: Arc<dyn Bus>,
    topics: Topics,
    config: HistoryConfig,
    history: Arc<dyn History>,
    start: HistoryStart,
    status: Arc<HistoryStatus>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), HistoryError> {
    let mut registry = bus.read_all(&[&topics.registry]).await?;
    // Several sinks (one beside each core instance) take disjoint partitions of every topic
    // they write, so each row is written by one of them.
    let partitions = config.partitions.as_deref();
    let mut alerts = match start {
        HistoryStart::Committed => {
            bus.assign(&config.group, &topics.alerts, partitions)
                .await?
        }
        HistoryStart::Oldest => bus.read_all(&[&topics.alerts]).await?,
    };
    let mut reports = match start {
        HistoryStart::Committed => {
            bus.assign(&config.group, &topics.reports, partitions)
                .await?
        }
        HistoryStart::Oldest => bus.read_all(&[&topics.reports]).await?,
    };
    let mut indicators = match start {
        HistoryStart::Committed => {
            bus.assign(&config.group, &topics.indicators, partitions)
                .await?
        }
        HistoryStart::Oldest => bus.read_all(&[&topics.indicators]).await?,
    };
    let mut sub = match start {
        HistoryStart::Committed => {
            bus.assign(
                &config.group,
                &topics.readings,
                config.partitions.as_deref(),
            )
            .await?
        }
        HistoryStart::Oldest => bus.read_all(&[&topics.readings]).await?,
    };
    status.set_backend(history.describe());
    status.set_problem(None);
    status.running.store(true, Ordering::Release);
    info!(group = %config.group, backend = %history.describe(), "history sink started");
    let sink = Sink {
        bus: bus.clone(),
        topics,
        history,
        status,
        max_backoff: Duration::from_millis(config.max_backoff_ms.max(100)),
    };
    // Housekeeping first at start (an aggregate left behind while the process was down is
    // caught up at once), then every `housekeeping_s`.
    let mut last_housekeeping: Option<Instant> = None;
    // Job health once a minute (the first at once); housekeeping when due, even when idle.
    let mut upkeep = tokio::time::interval(Duration::from_secs(config.upkeep_s.max(1)));
    upkeep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            _ = &mut shutdown => {
                sub.commit().await?;
                alerts.commit().await?;
                reports.commit().await?;
                indicators.commit().await?;
                return Ok(());
            }
            // Alerts and registry first: rare, and never starved by a steady readings stream.
            m = alerts.next() => {
                let batch = collect_batch(m?, &mut *alerts, config.batch_max, config.batch_wait_ms).await?;
                let rows: Vec<AlertEventRow> = batch.iter().filter_map(alert_row).collect();
                sink.retrying(|| sink.history.write_alert_events(&rows)).await?;
                for m in &batch {
                    alerts.applied(m)?;
                }
            }
            m = reports.next() => {
                let batch = collect_batch(m?, &mut *reports, config.batch_max, config.batch_wait_ms).await?;
                let rows: Vec<ReportEventRow> = batch.iter().filter_map(report_row).collect();
                sink.retrying(|| sink.history.write_report_events(&rows)).await?;
                for m in &batch {
                    reports.applied(m)?;
                }
            }
            m = indicators.next() => {
                let batch = collect_batch(m?, &mut *indicators, config.batch_max, config.batch_wait_ms).await?;
                let rows: Vec<IndicatorEventRow> = batch.iter().filter_map(indicator_row).collect();
                sink.retrying(|| sink.history.write_indicator_events(&rows)).await?;
                for m in &batch {
                    indicators.applied(m)?;
                }
            }
            m = registry.next() => {
                let batch = collect_batch(m?, &mut *registry, config.batch_max, config.batch_wait_ms).await?;
                let rows: Vec<RegistryRow> = batch.iter().filter_map(registry_row).collect();
                sink.retrying(|| sink.history.write_registry(&rows)).await?;
            }
            m = sub.next() => {
                let batch = collect_batch(m?, &mut *sub, config.batch_max, config.batch_wait_ms).await?;
                sink.write(&batch).await?;
                for m in &batch {
                    sub.applied(m)?;
                }
            }
            _ = upkeep.tick() => {
                match sink.history.failing_jobs().await {
                    Ok(jobs) => sink.status.set_jobs_failing(jobs),
                    Err(e) => warn!(error = %e, "reading the database's job status failed"),
                }
                let every = Duration::from_secs(config.housekeeping_s.max(config.upkeep_s).max(1));
                if last_housekeeping.is_none_or(|t| t.elapsed() >= every) {
                    last_housekeeping = Some(Instant::now());
                    match sink.history.housekeeping().await {
                        Ok(0) => {}
                        Ok(n) => info!(rows = n, "history past retention deleted"),
                        Err(e) => warn!(error = %e, "history housekeeping failed; will retry"),
                    }
                }
            }
        }
    }
}

struct Sink {
    bus: Arc<dyn Bus>,
    topics: Topics,
    history: Arc<dyn History>,
    status: Arc<HistoryStatus>,
    max_backoff: Duration,
}

/// An alert event as the `alerts` table keeps it.
fn alert_row(m: &Message) -> Option<AlertEventRow> {
    let env = Envelope::from_bytes(m.payload.as_deref()?).ok()?;
    let event = serde_json::to_value(env.kind).ok()?.as_str()?.to_string();
    if !event.starts_with("alert.") {
        return None;
    }
    let subject = env
        .data
        .get("entity")
        .and_then(|e| e.as_str())
        .map(str::to_string);
    Some(AlertEventRow {
        alert: env.entity.local().to_string(),
        ts: env.ts.with_timezone(&Utc),
        event,
        entity: subject.unwrap_or_else(|| env.entity.to_string()),
        detail: env.data,
    })
}

/// A report event as the `report_events` table keeps it.
fn report_row(m: &Message) -> Option<ReportEventRow> {
    let env = Envelope::from_bytes(m.payload.as_deref()?).ok()?;
    let (seq, event_id) = match env.kind {
        EventKind::ReportCreated => {
            let c: ReportCreated = env.data_as().ok()?;
            (0, c.event_id)
        }
        EventKind::ReportTransition => {
            let t: ReportTransition = env.data_as().ok()?;
            (i32::try_from(t.seq).ok()?, t.event_id)
        }
        _ => return None,
    };
    Some(ReportEventRow {
        report: env.entity.local().to_string(),
        seq,
        event_id,
        ts: env.ts.with_timezone(&Utc),
        kind: serde_json::to_value(env.kind).ok()?.as_str()?.to_string(),
        data: env.data,
    })
}

/// An indicator event as `indicator_events` keeps it; what the book would refuse (no such
/// event, unreadable) is not history.
fn indicator_row(m: &Message) -> Option<IndicatorEventRow> {
    let env = Envelope::from_bytes(m.payload.as_deref()?).ok()?;
    let event: IndicatorEvent = env.data_as().ok()?;
    let (unit, period, value) = match &event {
        IndicatorEvent::Value(v) => (&v.unit, v.period, Some(v.value)),
        IndicatorEvent::Target(t) => (&t.unit, t.period, t.value),
        IndicatorEvent::Explanation(e) => (&e.unit, e.period, None),
    };
    Some(IndicatorEventRow {
        event_id: env.id,
        ts: env.ts.with_timezone(&Utc),
        kind: serde_json::to_value(env.kind).ok()?.as_str()?.to_string(),
        indicator: event.indicator().to_string(),
        unit: unit.to_string(),
        period: period.to_string(),
        value,
        source: env.source,
        data: env.data,
    })
}

/// A registry event as the `registry` table keeps it.
fn registry_row(m: &Message) -> Option<RegistryRow> {
    let env = Envelope::from_bytes(m.payload.as_deref()?).ok()?;
    let removed = match env.kind {
        EventKind::RegistryUpsert => false,
        EventKind::RegistryRemove => true,
        _ => return None,
    };
    Some(RegistryRow {
        entity: env.entity.to_string(),
        kind: env.entity.kind().to_string(),
        data: (!removed).then_some(env.data),
        updated: env.ts.with_timezone(&Utc),
        removed,
    })
}

fn parse(m: &Message) -> Option<Reading> {
    let env = Envelope::from_bytes(m.payload.as_deref()?).ok()?;
    (env.kind == EventKind::SensorReading)
        .then(|| env.data_as::<Reading>().ok())
        .flatten()
}

impl Sink {
    /// Writes the readings of `batch`, retrying passing failures until they succeed; returns
    /// once every reading is durable or dead-lettered.
    async fn write(&self, batch: &[Message]) -> Result<(), HistoryError> {
        let rows: Vec<(&Message, Reading)> = batch
            .iter()
            .filter_map(|m| parse(m).map(|r| (m, r)))
            .collect();
        // Unreadable messages are the live core's to dead-letter; here they are only counted.
        metrics::counter!("ioc_history_skipped_total").increment((batch.len() - rows.len()) as u64);
        if rows.is_empty() {
            return Ok(());
        }
        let readings: Vec<Reading> = rows.iter().map(|(_, r)| r.clone()).collect();
        match self.write_retrying(&readings).await {
            Ok(()) => Ok(()),
            Err(StoreError::Failed(reason)) if rows.len() > 1 => {
                warn!(%reason, rows = rows.len(), "history batch refused; writing its rows one by one");
                for (m, r) in &rows {
                    if let Err(e) = self.write_retrying(std::slice::from_ref(r)).await {
                        self.dead_letter(m, &e).await?;
                    }
                }
                Ok(())
            }
            Err(e @ StoreError::Failed(_)) => self.dead_letter(rows[0].0, &e).await,
            Err(e) => Err(e.into()),
        }
    }

    async fn write_retrying(&self, rows: &[Reading]) -> Result<(), StoreError> {
        let w = self.retrying(|| self.history.write_readings(rows)).await?;
        self.status.written.fetch_add(w.inserted, Ordering::Relaxed);
        self.status
            .duplicates
            .fetch_add(w.duplicates, Ordering::Relaxed);
        metrics::counter!("ioc_history_rows_total", "outcome" => "inserted").increment(w.inserted);
        metrics::counter!("ioc_history_rows_total", "outcome" => "duplicate")
            .increment(w.duplicates);
        Ok(())
    }

    /// Runs `write` until it succeeds or fails for good, backing off while the store is
    /// unavailable and reporting not-ready meanwhile.
    async fn retrying<T, F, Fut>(&self, mut write: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        let mut backoff = Duration::from_millis(100);
        loop {
            match write().await {
                Ok(v) => {
                    self.status.set_problem(None);
                    return Ok(v);
                }
                Err(e) if e.is_transient() => {
                    warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "history write failed; holding the readings back and retrying");
                    metrics::counter!("ioc_history_retries_total").increment(1);
                    self.status.set_problem(Some(e.to_string()));
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.max_backoff);
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn dead_letter(&self, m: &Message, e: &StoreError) -> Result<(), HistoryError> {
        let source = format!("bus:{}/{}/{}", m.topic, m.partition, m.offset);
        let original = m
            .payload
            .as_deref()
            .map(original_value)
            .unwrap_or(Value::Null);
        warn!(%source, error = %e, "reading refused by the history store; dead-lettered");
        metrics::counter!("ioc_deadletter_total", "stage" => "history").increment(1);
        let env = Envelope::dead_letter(
            &source,
            None,
            vec![FieldError::new("history", e.to_string())],
            original,
            Utc::now(),
        );
        self.bus
            .publish(&self.topics.deadletter, &source, Some(env.to_bytes()))
            .await?;
        Ok(())
    }
}
