//! Refused requests, folded: the first [`WRITTEN_PER_WINDOW`] refusals of a caller
//! (subject, role, action, address) in a window are written one by one, as they happen
//! (an ordinary mistake stays fully visible); the rest of the window's refusals are counted
//! and written as one row when it ends. A token probing 1,000 made-up camera ids then costs
//! a dozen entries a minute instead of 1,000, refusals stay visible (with their count), and
//! real rows are neither evicted nor drowned.
//!
//! Pure bookkeeping; [`crate::Auditor::flush_folded`] writes what is due, on a timer the
//! process runs.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use store::{AuditEntry, AuditResult};

/// How long refusals of one caller are folded into one row.
pub const FOLD_WINDOW: Duration = Duration::from_secs(60);
/// Refusals of one caller written one by one in a window, before the rest are folded.
pub const WRITTEN_PER_WINDOW: u32 = 10;
/// Callers tracked at once; past it, further callers' refusals fold into one row per
/// window under the subject `*` (still counted, never dropped).
const MAX_CALLERS: usize = 10_000;

type Key = (String, String, String, Option<String>);

#[derive(Debug)]
struct Window {
    started: DateTime<Utc>,
    /// Refusals written one by one so far.
    written: u32,
    /// Refusals after the first, not yet written.
    folded: u32,
    /// The target of the first of the folded ones.
    first: Option<String>,
}

/// The refusals of the current windows.
#[derive(Debug, Default)]
pub struct RefusalFolder {
    windows: HashMap<Key, Window>,
}

impl RefusalFolder {
    /// Takes one refused access; `Some(row)` when it must be written now (the first of its
    /// window), `None` when it was folded.
    pub fn refused(&mut self, row: AuditEntry) -> Option<AuditEntry> {
        let mut key = (
            row.subject.clone(),
            row.role.clone(),
            row.action.clone(),
            row.remote.clone(),
        );
        if !self.windows.contains_key(&key) && self.windows.len() >= MAX_CALLERS {
            key = ("*".into(), "*".into(), row.action.clone(), None);
        }
        let window = chrono::Duration::from_std(FOLD_WINDOW).unwrap_or_default();
        match self.windows.get_mut(&key) {
            Some(w) if row.at - w.started < window && w.written < WRITTEN_PER_WINDOW => {
                w.written += 1;
                Some(row)
            }
            Some(w) if row.at - w.started < window => {
                w.folded += 1;
                w.first.get_or_insert(row.target);
                None
            }
            _ => {
                self.windows.insert(
                    key,
                    Window {
                        started: row.at,
                        written: 1,
                        folded: 0,
                        first: None,
                    },
                );
                Some(row)
            }
        }
    }

    /// The rows of windows that ended by `now`: one per window with folded refusals.
    pub fn due(&mut self, now: DateTime<Utc>) -> Vec<AuditEntry> {
        let window = chrono::Duration::from_std(FOLD_WINDOW).unwrap_or_default();
        let mut out = Vec::new();
        self.windows.retain(|(subject, role, action, remote), w| {
            if now - w.started < window {
                return true;
            }
            if w.folded > 0 {
                out.push(AuditEntry {
                    at: now,
                    subject: subject.clone(),
                    role: role.clone(),
                    action: action.clone(),
                    target: w.first.clone().unwrap_or_default(),
                    remote: remote.clone(),
                    result: AuditResult::Refused,
                    status: None,
                    reason: Some(format!(
                        "{} more refusals in {} s",
                        w.folded,
                        FOLD_WINDOW.as_secs()
                    )),
                    count: w.folded,
                });
            }
            false
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(sub: &str, camera: &str, at: DateTime<Utc>) -> AuditEntry {
        AuditEntry {
            at,
            subject: sub.into(),
            role: "sensor".into(),
            action: "camera.snapshot".into(),
            target: camera.into(),
            remote: Some("10.0.0.7".into()),
            result: AuditResult::Refused,
            status: Some(403),
            reason: None,
            count: 1,
        }
    }

    #[test]
    fn a_flood_of_refusals_is_a_dozen_rows_a_window_with_its_count() {
        let mut f = RefusalFolder::default();
        let t0 = Utc::now();
        let mut written = 0;
        for i in 0..1000 {
            let at = t0 + chrono::Duration::milliseconds(i * 3);
            if f.refused(refusal("probe", &format!("cam-{i}"), at))
                .is_some()
            {
                written += 1;
            }
        }
        assert_eq!(
            written, WRITTEN_PER_WINDOW,
            "the first ones are written one by one"
        );
        assert!(
            f.due(t0 + chrono::Duration::seconds(30)).is_empty(),
            "the window is open"
        );
        let rows = f.due(t0 + chrono::Duration::seconds(61));
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].count, 1000 - WRITTEN_PER_WINDOW);
        assert_eq!(rows[0].target, "cam-10");
        assert_eq!(rows[0].result, AuditResult::Refused);
        // Another caller is not folded into this one, and a new window starts afresh.
        assert!(f.refused(refusal("other", "cam-x", t0)).is_some());
        assert!(f
            .refused(refusal(
                "probe",
                "cam-y",
                t0 + chrono::Duration::seconds(62)
            ))
            .is_some());
    }
}
