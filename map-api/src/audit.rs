//! Refused camera accesses, folded: the first [`WRITTEN_PER_WINDOW`] refusals of a caller
//! (subject, role, action, address) in a window are written one by one, as they happen
//! (an ordinary mistake stays fully visible); the rest of the window's refusals are counted
//! and written as one row when it ends. A token probing 1,000 made-up camera ids then costs
//! a dozen rows a minute instead of 1,000, refusals stay visible (with their count), and
//! real rows are neither evicted nor drowned.
//!
//! Pure bookkeeping; [`flush_refusals`] writes what is due, on a timer the process runs.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use store::CameraAccess;
use tracing::warn;

use crate::ApiState;

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
    /// The first camera of the folded ones.
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
    pub fn refused(&mut self, row: CameraAccess) -> Option<CameraAccess> {
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
                w.first.get_or_insert(row.camera);
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
    pub fn due(&mut self, now: DateTime<Utc>) -> Vec<CameraAccess> {
        let window = chrono::Duration::from_std(FOLD_WINDOW).unwrap_or_default();
        let mut out = Vec::new();
        self.windows.retain(|(subject, role, action, remote), w| {
            if now - w.started < window {
                return true;
            }
            if w.folded > 0 {
                out.push(CameraAccess {
                    at: now,
                    subject: subject.clone(),
                    role: role.clone(),
                    camera: w.first.clone().unwrap_or_default(),
                    action: action.clone(),
                    remote: remote.clone(),
                    allowed: false,
                    count: w.folded,
                });
            }
            false
        });
        out
    }
}

/// Writes the folded refusals whose window ended; run every few seconds.
pub async fn flush_refusals(st: &ApiState) {
    let due = st
        .refusals
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .due(Utc::now());
    let Some(store) = &st.history else { return };
    for row in due {
        if let Err(e) = store.write_access(&row).await {
            warn!(error = %e, count = row.count, "folded refusals not written");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(sub: &str, camera: &str, at: DateTime<Utc>) -> CameraAccess {
        CameraAccess {
            at,
            subject: sub.into(),
            role: "sensor".into(),
            camera: camera.into(),
            action: "snapshot".into(),
            remote: Some("10.0.0.7".into()),
            allowed: false,
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
        assert_eq!(rows[0].camera, "cam-10");
        assert!(!rows[0].allowed);
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
