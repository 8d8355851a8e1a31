//! How often a caller may write: token buckets per subject (`role:sub`) and per client
//! address, one set per kind of write, so that one citizen cannot file 2,000 reports in
//! nine seconds nor one address flood every endpoint, while an operator's ordinary pace is
//! never felt. The buckets live in bounded memory (the least recently used are forgotten
//! first, and a forgotten bucket is a full one: forgetting never punishes).
//!
//! Pure bookkeeping: the caller passes the time, so it is tested without clocks.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One limit: `burst` at once, refilled at `per_minute`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rate {
    pub burst: u32,
    pub per_minute: f64,
}

impl Rate {
    pub const fn new(burst: u32, per_minute: f64) -> Self {
        Self { burst, per_minute }
    }
}

/// The kinds of write, each with its own limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WriteKind {
    /// A new field report (Open311 `POST requests`).
    Report,
    /// Sensor readings (`POST /ingest/v1/readings`).
    Readings,
    /// Every other state-changing request (transitions, acknowledgements, zones, cameras,
    /// tickets).
    Other,
}

/// Limits per kind, per subject and per client address (configuration `limits`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LimitsConfig {
    /// Limits on at all.
    pub enabled: bool,
    pub report_per_subject: Rate,
    pub report_per_address: Rate,
    pub readings_per_subject: Rate,
    pub readings_per_address: Rate,
    pub write_per_subject: Rate,
    pub write_per_address: Rate,
    /// Buckets kept in memory per table (least recently used forgotten first).
    pub max_tracked: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            // A citizen: a score of reports in a row, then one every 10 s.
            report_per_subject: Rate::new(20, 6.0),
            // The provincial app may relay many citizens from one address.
            report_per_address: Rate::new(120, 120.0),
            readings_per_subject: Rate::new(120, 1200.0),
            readings_per_address: Rate::new(600, 6000.0),
            write_per_subject: Rate::new(60, 600.0),
            write_per_address: Rate::new(300, 3000.0),
            max_tracked: 100_000,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Duration,
    /// Last use, for forgetting the least recently used.
    used: Duration,
}

/// One table of buckets for one rate.
#[derive(Debug)]
struct Table {
    rate: Rate,
    buckets: HashMap<String, Bucket>,
    max: usize,
}

impl Table {
    fn new(rate: Rate, max: usize) -> Self {
        Self {
            rate,
            buckets: HashMap::new(),
            max: max.max(1),
        }
    }

    /// Takes one token for `key` at `now` (time since any fixed origin); `Err(wait)` when
    /// none is left, with how long until one is.
    fn take(&mut self, key: &str, now: Duration) -> Result<(), Duration> {
        let burst = f64::from(self.rate.burst.max(1));
        let per_s = (self.rate.per_minute / 60.0).max(1e-9);
        if !self.buckets.contains_key(key) && self.buckets.len() >= self.max {
            self.forget_oldest();
        }
        let b = self.buckets.entry(key.to_string()).or_insert(Bucket {
            tokens: burst,
            at: now,
            used: now,
        });
        let elapsed = now.saturating_sub(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * per_s).min(burst);
        b.at = now;
        b.used = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                ((1.0 - b.tokens) / per_s).min(86_400.0),
            ))
        }
    }

    /// Forgets the least recently used tenth (at least one) of the buckets.
    fn forget_oldest(&mut self) {
        let mut used: Vec<Duration> = self.buckets.values().map(|b| b.used).collect();
        let n = (used.len() / 10).max(1);
        used.select_nth_unstable(n - 1);
        let cut = used[n - 1];
        self.buckets.retain(|_, b| b.used > cut);
    }
}

/// The limiter of one process.
#[derive(Debug)]
pub struct Limiter {
    enabled: bool,
    tables: HashMap<(WriteKind, bool), Table>,
}

/// A refused write: try again after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub retry_after: Duration,
    /// Which limit: per subject (`true`) or per address.
    pub per_subject: bool,
}

impl Limiter {
    pub fn new(cfg: &LimitsConfig) -> Self {
        let mut tables = HashMap::new();
        for (kind, subject, rate) in [
            (WriteKind::Report, true, cfg.report_per_subject),
            (WriteKind::Report, false, cfg.report_per_address),
            (WriteKind::Readings, true, cfg.readings_per_subject),
            (WriteKind::Readings, false, cfg.readings_per_address),
            (WriteKind::Other, true, cfg.write_per_subject),
            (WriteKind::Other, false, cfg.write_per_address),
        ] {
            tables.insert((kind, subject), Table::new(rate, cfg.max_tracked));
        }
        Self {
            enabled: cfg.enabled,
            tables,
        }
    }

    /// Counts one write of `kind` from `address` (and `subject`, when the caller is known)
    /// at `now`. The address is charged first, so an unknown caller cannot spend a known
    /// subject's allowance.
    pub fn check(
        &mut self,
        kind: WriteKind,
        address: &str,
        subject: Option<&str>,
        now: Duration,
    ) -> Result<(), Limited> {
        if !self.enabled {
            return Ok(());
        }
        if let Some(t) = self.tables.get_mut(&(kind, false)) {
            t.take(address, now).map_err(|w| Limited {
                retry_after: w,
                per_subject: false,
            })?;
        }
        if let (Some(s), Some(t)) = (subject, self.tables.get_mut(&(kind, true))) {
            t.take(s, now).map_err(|w| Limited {
                retry_after: w,
                per_subject: true,
            })?;
        }
        Ok(())
    }
}

/// A [`Limiter`] shared by a process's request handlers, on the process's monotonic clock.
#[derive(Debug)]
pub struct SharedLimiter {
    inner: std::sync::Mutex<Limiter>,
    origin: std::time::Instant,
}

impl SharedLimiter {
    pub fn new(cfg: &LimitsConfig) -> Self {
        Self {
            inner: std::sync::Mutex::new(Limiter::new(cfg)),
            origin: std::time::Instant::now(),
        }
    }

    /// See [`Limiter::check`]; `address` only, or `subject` only, may be charged by passing
    /// an empty address (the caller charged it already).
    pub fn check(
        &self,
        kind: WriteKind,
        address: &str,
        subject: Option<&str>,
    ) -> Result<(), Limited> {
        let now = self.origin.elapsed();
        let mut l = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if address.is_empty() {
            if !l.enabled {
                return Ok(());
            }
            return match (subject, l.tables.get_mut(&(kind, true))) {
                (Some(s), Some(t)) => t.take(s, now).map_err(|w| Limited {
                    retry_after: w,
                    per_subject: true,
                }),
                _ => Ok(()),
            };
        }
        l.check(kind, address, subject, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: f64) -> Duration {
        Duration::from_secs_f64(secs)
    }

    #[test]
    fn a_citizen_gets_a_burst_then_one_report_every_ten_seconds() {
        let mut l = Limiter::new(&LimitsConfig::default());
        let r =
            |l: &mut Limiter, t| l.check(WriteKind::Report, "10.0.0.1", Some("citizen:an"), s(t));
        for _ in 0..20 {
            assert!(r(&mut l, 0.0).is_ok());
        }
        let refused = r(&mut l, 0.0).unwrap_err();
        assert!(refused.per_subject);
        assert!(
            (9..=10).contains(&refused.retry_after.as_secs()),
            "{refused:?}"
        );
        assert!(r(&mut l, 5.0).is_err());
        assert!(r(&mut l, 10.5).is_ok());
        // Another citizen behind the same address is not affected.
        assert!(l
            .check(WriteKind::Report, "10.0.0.1", Some("citizen:binh"), s(10.5))
            .is_ok());
        // Other kinds of write have their own allowance.
        assert!(l
            .check(WriteKind::Other, "10.0.0.1", Some("citizen:an"), s(10.5))
            .is_ok());
    }

    #[test]
    fn an_address_is_limited_whoever_it_claims_to_be() {
        let cfg = LimitsConfig {
            report_per_address: Rate::new(3, 60.0),
            ..LimitsConfig::default()
        };
        let mut l = Limiter::new(&cfg);
        for i in 0..3 {
            let sub = format!("citizen:{i}");
            assert!(l
                .check(WriteKind::Report, "10.0.0.9", Some(&sub), s(0.0))
                .is_ok());
        }
        let e = l
            .check(WriteKind::Report, "10.0.0.9", Some("citizen:x"), s(0.0))
            .unwrap_err();
        assert!(!e.per_subject);
        assert!(l
            .check(WriteKind::Report, "10.0.0.10", None, s(0.0))
            .is_ok());
    }

    #[test]
    fn memory_stays_bounded_and_forgetting_never_punishes() {
        let cfg = LimitsConfig {
            max_tracked: 100,
            ..LimitsConfig::default()
        };
        let mut l = Limiter::new(&cfg);
        for i in 0..10_000 {
            let _ = l.check(
                WriteKind::Other,
                &format!("10.0.{}.{}", i / 256, i % 256),
                None,
                s(i as f64),
            );
        }
        let t = &l.tables[&(WriteKind::Other, false)];
        assert!(t.buckets.len() <= 100, "{}", t.buckets.len());
        let off = LimitsConfig {
            enabled: false,
            ..LimitsConfig::default()
        };
        let mut l = Limiter::new(&off);
        for _ in 0..1000 {
            assert!(l.check(WriteKind::Report, "a", Some("b"), s(0.0)).is_ok());
        }
    }
}
