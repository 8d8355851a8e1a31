//! Store configuration (`[store]` in the `ioc` config file). The database URL may carry a
//! password: it is only ever shown redacted.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A PostgreSQL URL whose password never reaches logs or API output.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The URL with its password (and any `password=` parameter) replaced by `***`.
    pub fn redacted(&self) -> String {
        let s = &self.0;
        let mut out = match (s.find("://"), s.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                let userinfo = &s[scheme + 3..at];
                match userinfo.find(':') {
                    Some(colon) => {
                        format!("{}{}:***{}", &s[..scheme + 3], &userinfo[..colon], &s[at..])
                    }
                    None => s.clone(),
                }
            }
            _ => s.clone(),
        };
        if let Some(i) = out.find("password=") {
            let end = out[i..].find('&').map(|e| i + e).unwrap_or(out.len());
            out.replace_range(i + "password=".len()..end, "***");
        }
        out
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Whether to use TimescaleDB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimescaleMode {
    /// Use it when the extension can be created; plain PostgreSQL otherwise.
    Auto,
    /// Refuse to start without it.
    Require,
    /// Plain PostgreSQL even where TimescaleDB is installed.
    Off,
}

/// How the writer sends a batch (BENCHMARKS.md compares them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteMethod {
    /// One `INSERT ... SELECT FROM unnest($1, $2, ...)` statement per batch.
    Unnest,
    /// `COPY` into a temporary staging table, then one `INSERT ... SELECT` from it.
    Copy,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StoreConfig {
    /// `postgres://user:password@host:port/db`. Unset: history kept in memory (demo).
    pub database_url: Option<DatabaseUrl>,
    pub timescale: TimescaleMode,
    pub write_method: WriteMethod,
    pub max_connections: u32,
    /// Raw readings older than this are dropped (TimescaleDB retention policy, or a periodic
    /// delete on PostgreSQL). `None` keeps everything.
    pub raw_retention_days: Option<u32>,
    /// Rollups / continuous aggregates older than this are dropped. `None` keeps everything.
    pub rollup_retention_days: Option<u32>,
    /// TimescaleDB: compress readings chunks older than this.
    pub compress_after_days: u32,
    /// TimescaleDB: the aggregates' refresh policies cover this many days back. Rollups never
    /// depend on it for correctness: rows newer than an aggregate's watermark are read from
    /// raw in real time, and the writer refreshes the range of any rows it stores below a
    /// watermark (late or backfilled, however old) before the write is acknowledged.
    pub aggregate_refresh_days: u32,
    /// In-memory history (no database): most readings kept; the oldest go first.
    pub memory_readings: usize,
    /// Audit rows older than this are deleted (a retention policy, applied by the history
    /// sink's housekeeping on both layouts). `None` keeps everything.
    pub audit_retention_days: Option<u32>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            database_url: None,
            timescale: TimescaleMode::Auto,
            write_method: WriteMethod::Copy,
            max_connections: 8,
            raw_retention_days: None,
            rollup_retention_days: None,
            compress_after_days: 7,
            aggregate_refresh_days: 30,
            memory_readings: 200_000,
            audit_retention_days: Some(365),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        let u = DatabaseUrl::new("postgres://ioc:s3cr3t@db.local:5432/ioc?sslmode=require");
        assert_eq!(
            u.redacted(),
            "postgres://ioc:***@db.local:5432/ioc?sslmode=require"
        );
        assert!(!format!("{u:?} {u}").contains("s3cr3t"));
        let k = DatabaseUrl::new("postgres://db/ioc?user=ioc&password=s3cr3t&sslmode=disable");
        assert!(!k.redacted().contains("s3cr3t"), "{}", k.redacted());
        let plain = DatabaseUrl::new("postgres://postgres@127.0.0.1/ioc");
        assert_eq!(plain.redacted(), "postgres://postgres@127.0.0.1/ioc");
    }
}
