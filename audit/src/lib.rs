//! The audit log: every state-changing request is written to it **before it takes effect**,
//! with who (subject and role), what (an [`Action`]), on what (a target), from where, and
//! the result; refused requests leave a refused entry (floods folded into counted ones);
//! a copy of each entry can be shipped to the SOC as JSON lines (a file a shipper follows,
//! or syslog); admins read and export the log as CSV or JSON lines.
//!
//! It owns *what is written and when*: the route table of audited writes ([`route`]), the
//! [`layer`] that puts a [`Slip`] on each write and writes what its handler did not, and the
//! [`Auditor`] that writes. It must never decide whether a request is allowed (handlers and
//! `auth` do), never keep a request body, a token or a secret, and never let a write proceed
//! whose entry could not be written.

pub mod export;
mod fold;
mod layer;
pub mod route;
mod ship;

use std::sync::{Arc, Mutex};

use chrono::Utc;
use store::{AuditEntry, AuditResult, History};
use tracing::warn;

pub use fold::{RefusalFolder, FOLD_WINDOW, WRITTEN_PER_WINDOW};
pub use layer::{layer, AuditLayer, Remote, Slip};
pub use route::{Action, Route};
pub use ship::{AuditConfig, ShipTarget};

/// Why an entry could not be written.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(
        "no audit log in this process: its writes are refused without one (set store.database_url)"
    )]
    NoLog,
    #[error("the audit log could not be written: {0}")]
    Store(#[from] store::StoreError),
}

impl From<AuditError> for api_error::ApiError {
    fn from(e: AuditError) -> Self {
        api_error::ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "audit_unavailable",
            e.to_string(),
        )
        .retry_after(5)
    }
}

/// Writes audit entries: to the store (the record; a write proceeds only once it is there),
/// then a copy to the SOC shipper, if one is configured.
pub struct Auditor {
    store: Option<Arc<dyn History>>,
    refusals: Mutex<RefusalFolder>,
    ship: Option<ship::Shipper>,
}

impl Auditor {
    /// `store`: where entries are kept (`None`: this process keeps no audit log and refuses
    /// audited writes). `ship`: the SOC copy. Must be called within a tokio runtime when
    /// `ship` names a target (its writer is a task).
    pub fn new(store: Option<Arc<dyn History>>, cfg: &AuditConfig) -> std::io::Result<Self> {
        Ok(Self {
            store,
            refusals: Mutex::new(RefusalFolder::default()),
            ship: ship::Shipper::start(cfg)?,
        })
    }

    /// Whether entries can be written at all.
    pub fn keeps_log(&self) -> bool {
        self.store.is_some()
    }

    /// The store entries are read from (admins' reading and export).
    pub fn store(&self) -> Option<&Arc<dyn History>> {
        self.store.as_ref()
    }

    /// Writes `entry`; a refusal may instead be folded with the caller's others of the
    /// window (then it is written, counted, when the window ends). `Ok` means the entry is in
    /// the log (or folded), and what it stands for may proceed.
    pub async fn record(&self, entry: AuditEntry) -> Result<(), AuditError> {
        let store = self.store.as_ref().ok_or(AuditError::NoLog)?;
        let entry = if entry.result == AuditResult::Refused {
            match self.folder().refused(entry) {
                Some(first) => first,
                None => return Ok(()),
            }
        } else {
            entry
        };
        match store.write_audit(&entry).await {
            Ok(()) => {
                metrics::counter!("ioc_audit_entries_total", "result" => entry.result.as_str())
                    .increment(1);
                if let Some(s) = &self.ship {
                    s.send(&entry);
                }
                Ok(())
            }
            Err(e) => {
                metrics::counter!("ioc_audit_write_failures_total").increment(1);
                warn!(error = %e, action = %entry.action, "audit entry not written");
                Err(e.into())
            }
        }
    }

    /// Writes the folded refusals whose window ended; run every few seconds.
    pub async fn flush_folded(&self) {
        let due = self.folder().due(Utc::now());
        let Some(store) = &self.store else { return };
        for entry in due {
            match store.write_audit(&entry).await {
                Ok(()) => {
                    if let Some(s) = &self.ship {
                        s.send(&entry);
                    }
                }
                Err(e) => warn!(error = %e, count = entry.count, "folded refusals not written"),
            }
        }
    }

    fn folder(&self) -> std::sync::MutexGuard<'_, RefusalFolder> {
        self.refusals.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Shortens what a client sent to what an entry may hold: at most `max` characters, no
/// control characters (a log line stays one line).
pub fn clean(s: &str, max: usize) -> String {
    s.chars().filter(|c| !c.is_control()).take(max).collect()
}
