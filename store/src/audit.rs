//! The audit log's rows and how they are asked for: who did what to which thing, from where,
//! and what became of it. The `audit` crate decides what is written; this module only keeps
//! the shape both stores (PostgreSQL and the demo's memory) share.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What became of an audited request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditResult {
    /// It passed every check and was handed to its effect (written before the effect).
    Allowed,
    /// It was refused (not authenticated, not allowed, invalid, too many): no effect.
    Refused,
    /// It was allowed but its effect could not be carried out (the bus did not take it).
    Failed,
}

impl AuditResult {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditResult::Allowed => "allowed",
            AuditResult::Refused => "refused",
            AuditResult::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "allowed" => Some(AuditResult::Allowed),
            "refused" => Some(AuditResult::Refused),
            "failed" => Some(AuditResult::Failed),
            _ => None,
        }
    }
}

/// One entry of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub at: DateTime<Utc>,
    /// Who (the token's subject, `-` when the request carried no valid token) and in which
    /// role.
    pub subject: String,
    pub role: String,
    /// What, as `<thing>.<verb>`: `camera.snapshot`, `alert.acknowledge`, `layout.edit`, …
    pub action: String,
    /// On what, as `<kind>:<id>` (`camera:cam-1`, `report:hg-2026-00042`).
    pub target: String,
    /// Where from (the client address as the server saw it, and what a proxy said).
    pub remote: Option<String>,
    pub result: AuditResult,
    /// The HTTP status answered, where the entry was written after the answer.
    pub status: Option<u16>,
    /// Why it was refused or failed (the answer's reason); never a request body or a secret.
    pub reason: Option<String>,
    /// Attempts this entry stands for: refused attempts of one caller in a short window are
    /// folded into one entry (with `target` the first of them), so a flood cannot drown the
    /// log; 1 for every other entry.
    pub count: u32,
}

/// An entry as stored, with its place in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRow {
    /// Increasing with writing order; pages of the log continue `before` the last one seen.
    pub id: i64,
    #[serde(flatten)]
    pub entry: AuditEntry,
}

/// Which entries to read, newest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditQuery {
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub subject: Option<String>,
    /// An action (`alert.acknowledge`) or every action of a thing (`camera.`, ending in a dot).
    pub action: Option<String>,
    pub target: Option<String>,
    pub result: Option<AuditResult>,
    /// Only rows older than this one (paging).
    pub before: Option<i64>,
    pub limit: usize,
}

impl AuditQuery {
    /// Whether `row` is one this query asks for (the memory store's filter; PostgreSQL runs
    /// the same in SQL).
    pub fn matches(&self, row: &AuditRow) -> bool {
        let e = &row.entry;
        self.since.is_none_or(|t| e.at >= t)
            && self.until.is_none_or(|t| e.at < t)
            && self.subject.as_deref().is_none_or(|s| e.subject == s)
            && self.target.as_deref().is_none_or(|t| e.target == t)
            && self.result.is_none_or(|r| e.result == r)
            && self.before.is_none_or(|b| row.id < b)
            && self
                .action
                .as_deref()
                .is_none_or(|a| match a.strip_suffix('.') {
                    Some(thing) => e
                        .action
                        .strip_prefix(thing)
                        .is_some_and(|r| r.starts_with('.')),
                    None => e.action == a,
                })
    }
}
