//! What the TimescaleDB layout adds to the common schema, kept true to the configuration and
//! never dependent on TimescaleDB's job scheduler for correctness:
//!
//! - **Policies follow the configuration at every start.** [`desired_policies`] is the pure
//!   list the config asks for; [`reconcile`] compares it with the jobs the database has and
//!   replaces what differs and removes what is no longer asked for (a changed
//!   `aggregate_refresh_days` used to stop the service; a changed `compress_after_days` or a
//!   removed retention was silently ignored).
//! - **Rollups equal raw rows, late and backfilled ones included.** The aggregates are
//!   real-time (rows above a view's watermark are read from raw), and the writer notes in
//!   `rollup_pending`, in the same statement as the insert, the time range of rows that landed
//!   below a watermark; [`refresh_pending`] refreshes that range before the write is
//!   acknowledged, and again at start and in housekeeping if it failed.
//! - **The watermark keeps up without the scheduler.** [`advance`] refreshes what a view's own
//!   policy should have (jobs fail and back off on some PostgreSQL builds); [`failing_jobs`]
//!   names jobs whose last run failed, for `/readyz` and a metric.

use chrono::{DateTime, Duration, DurationRound, Utc};
use sqlx::postgres::PgConnection;
use sqlx::{Executor, PgPool, Row};
use tracing::{info, warn};

use crate::StoreConfig;

/// One continuous aggregate: its view, bucket width and refresh policy's schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rollup {
    pub view: &'static str,
    pub width_s: i64,
    /// The policy leaves the newest `end_offset` unmaterialised (real-time reads cover it).
    pub end_offset_s: i64,
    pub schedule_s: i64,
}

pub const ROLLUPS: [Rollup; 2] = [
    Rollup {
        view: "readings_5m",
        width_s: 300,
        end_offset_s: 300,
        schedule_s: 60,
    },
    Rollup {
        view: "readings_1h",
        width_s: 3600,
        end_offset_s: 3600,
        schedule_s: 600,
    },
];

/// What a policy does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyKind {
    /// Continuous-aggregate refresh over `[now - start_days, now - end_offset_s]`.
    Refresh {
        start_days: u32,
        end_offset_s: i64,
        schedule_s: i64,
    },
    /// Compress chunks older than this.
    Compression { after_days: u32 },
    /// Drop chunks older than this.
    Retention { after_days: u32 },
}

/// Which of TimescaleDB's job procedures runs a policy kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyProc {
    Refresh,
    Compression,
    Retention,
}

impl PolicyProc {
    pub const ALL: [PolicyProc; 3] = [
        PolicyProc::Refresh,
        PolicyProc::Compression,
        PolicyProc::Retention,
    ];

    fn proc_name(self) -> &'static str {
        match self {
            PolicyProc::Refresh => "policy_refresh_continuous_aggregate",
            PolicyProc::Compression => "policy_compression",
            PolicyProc::Retention => "policy_retention",
        }
    }

    fn remove_sql(self, relation: &str) -> String {
        match self {
            PolicyProc::Refresh => {
                format!(
                    "SELECT remove_continuous_aggregate_policy('{relation}', if_exists => TRUE)"
                )
            }
            PolicyProc::Compression => {
                format!("SELECT remove_compression_policy('{relation}', if_exists => TRUE)")
            }
            PolicyProc::Retention => {
                format!("SELECT remove_retention_policy('{relation}', if_exists => TRUE)")
            }
        }
    }

    /// Relations a policy of this kind may be on (so a removed setting is found and removed).
    fn relations(self) -> &'static [&'static str] {
        match self {
            PolicyProc::Refresh => &["readings_5m", "readings_1h"],
            PolicyProc::Compression => &["readings"],
            PolicyProc::Retention => &["readings", "readings_5m", "readings_1h"],
        }
    }
}

impl PolicyKind {
    fn proc(&self) -> PolicyProc {
        match self {
            PolicyKind::Refresh { .. } => PolicyProc::Refresh,
            PolicyKind::Compression { .. } => PolicyProc::Compression,
            PolicyKind::Retention { .. } => PolicyProc::Retention,
        }
    }
}

/// A policy on one relation (the hypertable or a continuous aggregate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub relation: &'static str,
    pub kind: PolicyKind,
}

impl Policy {
    fn add_sql(&self) -> String {
        let r = self.relation;
        match &self.kind {
            PolicyKind::Refresh {
                start_days,
                end_offset_s,
                schedule_s,
            } => format!(
                "SELECT add_continuous_aggregate_policy('{r}', start_offset => INTERVAL '{start_days} days', end_offset => INTERVAL '{end_offset_s} seconds', schedule_interval => INTERVAL '{schedule_s} seconds')"
            ),
            PolicyKind::Compression { after_days } => {
                format!("SELECT add_compression_policy('{r}', INTERVAL '{after_days} days')")
            }
            PolicyKind::Retention { after_days } => {
                format!("SELECT add_retention_policy('{r}', INTERVAL '{after_days} days')")
            }
        }
    }

    /// True when the job's `config` (and schedule) is this policy; compared by PostgreSQL as
    /// intervals, whatever text form TimescaleDB stored them in.
    fn matches_sql(&self) -> String {
        match &self.kind {
            PolicyKind::Refresh {
                start_days,
                end_offset_s,
                schedule_s,
            } => format!(
                "(config->>'start_offset')::interval = INTERVAL '{start_days} days'
                 AND (config->>'end_offset')::interval = INTERVAL '{end_offset_s} seconds'
                 AND schedule_interval = INTERVAL '{schedule_s} seconds'"
            ),
            PolicyKind::Compression { after_days } => format!(
                "coalesce(config->>'compress_after', config->>'after')::interval = INTERVAL '{after_days} days'"
            ),
            PolicyKind::Retention { after_days } => {
                format!("(config->>'drop_after')::interval = INTERVAL '{after_days} days'")
            }
        }
    }
}

/// The policies `config` asks for: refresh on each aggregate, compression on the raw readings,
/// retention where a retention is set.
pub fn desired_policies(config: &StoreConfig) -> Vec<Policy> {
    let mut out = Vec::new();
    // A refresh window must span at least two buckets past its end offset: one day does.
    let start_days = config.aggregate_refresh_days.max(1);
    for r in ROLLUPS {
        out.push(Policy {
            relation: r.view,
            kind: PolicyKind::Refresh {
                start_days,
                end_offset_s: r.end_offset_s,
                schedule_s: r.schedule_s,
            },
        });
    }
    out.push(Policy {
        relation: "readings",
        kind: PolicyKind::Compression {
            after_days: config.compress_after_days.max(1),
        },
    });
    if let Some(d) = config.raw_retention_days {
        out.push(Policy {
            relation: "readings",
            kind: PolicyKind::Retention {
                after_days: d.max(1),
            },
        });
    }
    if let Some(d) = config.rollup_retention_days {
        for r in ROLLUPS {
            out.push(Policy {
                relation: r.view,
                kind: PolicyKind::Retention {
                    after_days: d.max(1),
                },
            });
        }
    }
    out
}

/// The jobs TimescaleDB runs for `relation` with `proc`: a continuous aggregate's jobs are
/// listed under its view's name (2.28) or its materialisation hypertable's (older releases).
const JOBS_OF: &str = "SELECT j.job_id FROM timescaledb_information.jobs j
    WHERE j.proc_name = $1 AND j.hypertable_name IN ($2, coalesce(
        (SELECT c.materialization_hypertable_name FROM timescaledb_information.continuous_aggregates c
          WHERE c.view_name = $2), $2))";

/// Makes the database's policies those of `config`: each wanted policy kept when it matches,
/// replaced when it differs, added when missing; policies no longer wanted removed. Returns
/// what changed, for the start-up log.
pub async fn reconcile(
    conn: &mut PgConnection,
    config: &StoreConfig,
) -> Result<Vec<String>, sqlx::Error> {
    let wanted = desired_policies(config);
    let mut changes = Vec::new();
    for proc in PolicyProc::ALL {
        for &relation in proc.relations() {
            let want = wanted
                .iter()
                .find(|p| p.relation == relation && p.kind.proc() == proc);
            let jobs: Vec<i32> = sqlx::query_scalar(JOBS_OF)
                .bind(proc.proc_name())
                .bind(relation)
                .fetch_all(&mut *conn)
                .await?;
            let keep = match (want, jobs.as_slice()) {
                (Some(p), [job]) => {
                    let sql = format!(
                        "SELECT {} FROM timescaledb_information.jobs WHERE job_id = $1",
                        p.matches_sql()
                    );
                    let same: Option<bool> = sqlx::query_scalar(&sql)
                        .bind(job)
                        .fetch_one(&mut *conn)
                        .await?;
                    same.unwrap_or(false)
                }
                (None, []) => true,
                _ => false,
            };
            if keep {
                continue;
            }
            if !jobs.is_empty() {
                conn.execute(proc.remove_sql(relation).as_str()).await?;
            }
            match want {
                Some(p) => {
                    conn.execute(p.add_sql().as_str()).await?;
                    changes.push(format!(
                        "{} {relation}: {:?}",
                        if jobs.is_empty() { "added" } else { "replaced" },
                        p.kind
                    ));
                }
                None => changes.push(format!("removed {:?} on {relation}", proc)),
            }
        }
    }
    if !changes.is_empty() {
        info!(
            ?changes,
            "TimescaleDB policies reconciled with the configuration"
        );
    }
    Ok(changes)
}

/// Objects the writer's bookkeeping needs: the pending table and a watermark function over
/// TimescaleDB's catalog (so the insert statement can tell which rows landed below it).
pub const BOOKKEEPING: [&str; 2] = [
    "CREATE TABLE IF NOT EXISTS rollup_pending (
        id bigserial PRIMARY KEY, lo timestamptz NOT NULL, hi timestamptz NOT NULL,
        noted timestamptz NOT NULL DEFAULT now())",
    "CREATE OR REPLACE FUNCTION ioc_rollup_watermark(view_name text) RETURNS timestamptz
        LANGUAGE sql STABLE AS $$
        SELECT _timescaledb_functions.to_timestamp(_timescaledb_functions.cagg_watermark(c.mat_hypertable_id))
        FROM _timescaledb_catalog.continuous_agg c WHERE c.user_view_name = view_name $$",
];

/// The CTE the writer appends to its insert: the range of inserted rows that landed below a
/// watermark of either aggregate, noted in `rollup_pending` in the same statement. The
/// watermarks are read once per statement (an uncorrelated subquery), not once per row.
pub const NOTE_PENDING_CTE: &str = "pend AS (
    INSERT INTO rollup_pending (lo, hi)
    SELECT min(ts), max(ts) FROM ins
    WHERE ts < (SELECT greatest(ioc_rollup_watermark('readings_5m'), ioc_rollup_watermark('readings_1h')))
    HAVING count(*) > 0
    RETURNING 1)";

/// The refresh window of `view` covering `[lo, hi]` in whole buckets, clipped to the view's
/// watermark (above it real-time reads already see raw rows) rounded down to a bucket;
/// `None` when nothing is left.
pub fn refresh_window(
    r: &Rollup,
    lo: DateTime<Utc>,
    hi: DateTime<Utc>,
    watermark: DateTime<Utc>,
) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let width = Duration::seconds(r.width_s);
    let start = lo.duration_trunc(width).ok()?;
    let end = (hi.duration_trunc(width).ok()? + width).min(watermark.duration_trunc(width).ok()?);
    (end > start).then_some((start, end))
}

async fn watermark(pool: &PgPool, view: &str) -> Result<DateTime<Utc>, sqlx::Error> {
    let w: Option<DateTime<Utc>> = sqlx::query_scalar("SELECT ioc_rollup_watermark($1)")
        .bind(view)
        .fetch_one(pool)
        .await?;
    Ok(w.unwrap_or(DateTime::<Utc>::MIN_UTC))
}

/// A refresh of an overlapping window is running (a policy job, or another writer):
/// SQLSTATE 55P03, worth waiting for.
pub fn is_concurrent_refresh(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("55P03"))
}

/// `CALL refresh_continuous_aggregate` sent as a simple query: a procedure that commits
/// cannot run inside the extended protocol's implicit transaction. Waits out a concurrent
/// refresh of the same view (up to ~10 s) before giving up.
async fn refresh(
    pool: &PgPool,
    view: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let sql = format!(
        "CALL refresh_continuous_aggregate('{view}', TIMESTAMPTZ '{}', TIMESTAMPTZ '{}')",
        start.to_rfc3339(),
        end.to_rfc3339()
    );
    let mut attempt = 0;
    loop {
        match sqlx::raw_sql(&sql).execute(pool).await {
            Ok(_) => return Ok(()),
            Err(e) if is_concurrent_refresh(&e) && attempt < 40 => {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Refreshes the ranges the writer noted below the watermarks, then forgets them. Several
/// writers may do it at once: a refresh is idempotent. Returns how many notes were settled.
pub async fn refresh_pending(pool: &PgPool) -> Result<u64, sqlx::Error> {
    let row = sqlx::query(
        "SELECT min(lo) AS lo, max(hi) AS hi, array_agg(id) AS ids FROM rollup_pending",
    )
    .fetch_one(pool)
    .await?;
    let (Some(lo), Some(hi), Some(ids)) = (
        row.try_get::<Option<DateTime<Utc>>, _>("lo")?,
        row.try_get::<Option<DateTime<Utc>>, _>("hi")?,
        row.try_get::<Option<Vec<i64>>, _>("ids")?,
    ) else {
        return Ok(0);
    };
    for r in &ROLLUPS {
        let wm = watermark(pool, r.view).await?;
        if let Some((start, end)) = refresh_window(r, lo, hi, wm) {
            refresh(pool, r.view, start, end).await?;
        }
    }
    // Exactly the notes read: another writer's note committed meanwhile (even with a lower
    // id) stays for its own refresh.
    let settled = sqlx::query("DELETE FROM rollup_pending WHERE id = ANY($1)")
        .bind(&ids)
        .execute(pool)
        .await?
        .rows_affected();
    Ok(settled)
}

/// Refreshes each aggregate up to where its policy would have (now − end offset) when its
/// watermark lags by more than a few of the policy's own periods. Returns the views moved.
pub async fn advance(
    pool: &PgPool,
    config: &StoreConfig,
) -> Result<Vec<&'static str>, sqlx::Error> {
    let now = Utc::now();
    let mut moved = Vec::new();
    for r in &ROLLUPS {
        let wm = watermark(pool, r.view).await?;
        let target = now - Duration::seconds(r.end_offset_s);
        let lag_allowed = Duration::seconds(3 * r.schedule_s + r.width_s);
        if target - wm <= lag_allowed {
            continue;
        }
        // Never further back than the policy's own window: older buckets are complete.
        let floor = now - Duration::days(config.aggregate_refresh_days.max(1) as i64);
        let Some((start, end)) = refresh_window(r, wm.max(floor), target, target) else {
            continue;
        };
        refresh(pool, r.view, start, end).await?;
        moved.push(r.view);
    }
    Ok(moved)
}

/// What the refresh policies do when their jobs run, over all time: each aggregate
/// materialised up to now minus its end offset (benchmarks and tests, after loading).
pub async fn refresh_all(pool: &PgPool) -> Result<(), sqlx::Error> {
    let now = Utc::now();
    let epoch = DateTime::<Utc>::UNIX_EPOCH;
    for r in &ROLLUPS {
        let target = now - Duration::seconds(r.end_offset_s);
        if let Some((start, end)) = refresh_window(r, epoch, target, target) {
            refresh(pool, r.view, start, end).await?;
        }
    }
    Ok(())
}

/// A TimescaleDB job whose last run failed.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FailingJob {
    pub job_id: i32,
    pub proc: String,
    pub relation: Option<String>,
    pub total_failures: i64,
    pub last_error: Option<String>,
}

/// The policy jobs on this database's relations whose last run failed, with their latest
/// error (TimescaleDB's own housekeeping jobs, on no relation, are not the store's).
pub async fn failing_jobs(pool: &PgPool) -> Result<Vec<FailingJob>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT s.job_id, j.proc_name::text AS proc, j.hypertable_name::text AS relation,
                s.total_failures, e.err_message AS last_error
         FROM timescaledb_information.job_stats s
         JOIN timescaledb_information.jobs j USING (job_id)
         LEFT JOIN LATERAL (SELECT err_message FROM timescaledb_information.job_errors x
                            WHERE x.job_id = s.job_id ORDER BY x.start_time DESC LIMIT 1) e ON TRUE
         WHERE j.proc_name LIKE 'policy%' AND j.hypertable_name IS NOT NULL
           AND s.last_run_status = 'Failed'
         ORDER BY s.job_id",
    )
    .fetch_all(pool)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        out.push(FailingJob {
            job_id: r.try_get("job_id")?,
            proc: r.try_get("proc")?,
            relation: r.try_get("relation")?,
            total_failures: r.try_get("total_failures")?,
            last_error: r.try_get("last_error")?,
        });
    }
    if !out.is_empty() {
        warn!(jobs = out.len(), "TimescaleDB policy jobs are failing; the store refreshes and keeps rollups exact itself");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 30, h, m, s).unwrap()
    }

    #[test]
    fn policies_follow_every_setting() {
        let base = StoreConfig::default();
        let p = desired_policies(&base);
        assert_eq!(
            p.len(),
            3,
            "two refreshes and compression, no retention by default"
        );
        assert!(p
            .iter()
            .all(|x| !matches!(x.kind, PolicyKind::Retention { .. })));
        let with = StoreConfig {
            aggregate_refresh_days: 3,
            compress_after_days: 2,
            raw_retention_days: Some(90),
            rollup_retention_days: Some(730),
            ..base.clone()
        };
        let p = desired_policies(&with);
        assert!(p.contains(&Policy {
            relation: "readings_1h",
            kind: PolicyKind::Refresh {
                start_days: 3,
                end_offset_s: 3600,
                schedule_s: 600
            }
        }));
        assert!(p.contains(&Policy {
            relation: "readings",
            kind: PolicyKind::Compression { after_days: 2 }
        }));
        assert!(p.contains(&Policy {
            relation: "readings",
            kind: PolicyKind::Retention { after_days: 90 }
        }));
        assert_eq!(
            p.iter()
                .filter(|x| x.kind == PolicyKind::Retention { after_days: 730 })
                .count(),
            2
        );
        // Every wanted policy is on a relation its kind is looked for on (else never removed).
        for x in &p {
            assert!(x.kind.proc().relations().contains(&x.relation), "{x:?}");
        }
    }

    #[test]
    fn refresh_windows_cover_whole_buckets_below_the_watermark() {
        let r5 = ROLLUPS[0];
        // 10:07:30..10:12:10 → buckets 10:05..10:15, all below a 11:00 watermark.
        assert_eq!(
            refresh_window(&r5, t(10, 7, 30), t(10, 12, 10), t(11, 0, 0)),
            Some((t(10, 5, 0), t(10, 15, 0)))
        );
        // Clipped at the watermark: the rest is read from raw rows in real time.
        assert_eq!(
            refresh_window(&r5, t(10, 7, 30), t(10, 42, 0), t(10, 20, 0)),
            Some((t(10, 5, 0), t(10, 20, 0)))
        );
        // Entirely above the watermark: nothing to refresh.
        assert_eq!(
            refresh_window(&r5, t(10, 30, 0), t(10, 42, 0), t(10, 20, 0)),
            None
        );
        let r1h = ROLLUPS[1];
        assert_eq!(
            refresh_window(&r1h, t(10, 59, 59), t(10, 59, 59), t(12, 0, 0)),
            Some((t(10, 0, 0), t(11, 0, 0)))
        );
    }
}
