//! The audit log as files an admin takes away: CSV (for a spreadsheet) and JSON lines (for
//! a SIEM), both round-tripping to the same rows. A CSV cell that a spreadsheet would run as
//! a formula (it starts with `=`, `+`, `-`, `@`, a tab or a carriage return; the remote
//! address carries what a client put in `X-Forwarded-For`) is written with a leading `'`,
//! as is one starting with `'`; reading takes exactly one off again.

use store::{AuditEntry, AuditResult, AuditRow};

/// The CSV columns, in order.
pub const CSV_HEADER: [&str; 11] = [
    "id", "at", "subject", "role", "action", "target", "remote", "result", "status", "reason",
    "count",
];

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("CSV: {0}")]
    Csv(#[from] csv::Error),
    #[error("row {row}: {field}: {reason}")]
    Field {
        row: usize,
        field: &'static str,
        reason: String,
    },
    #[error("JSON line {line}: {source}")]
    Json {
        line: usize,
        source: serde_json::Error,
    },
}

fn guard(s: &str) -> String {
    match s.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r' | '\'') => format!("'{s}"),
        _ => s.to_string(),
    }
}

fn unguard(s: &str) -> String {
    s.strip_prefix('\'').unwrap_or(s).to_string()
}

/// The rows as CSV with a header line.
pub fn to_csv(rows: &[AuditRow]) -> Result<Vec<u8>, ExportError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(CSV_HEADER)?;
    for r in rows {
        let e = &r.entry;
        w.write_record([
            r.id.to_string(),
            e.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            guard(&e.subject),
            guard(&e.role),
            guard(&e.action),
            guard(&e.target),
            e.remote.as_deref().map(guard).unwrap_or_default(),
            e.result.as_str().to_string(),
            e.status.map(|s| s.to_string()).unwrap_or_default(),
            e.reason.as_deref().map(guard).unwrap_or_default(),
            e.count.to_string(),
        ])?;
    }
    w.into_inner()
        .map_err(|e| ExportError::Csv(e.into_error().into()))
}

/// Reads back what [`to_csv`] wrote.
pub fn from_csv(bytes: &[u8]) -> Result<Vec<AuditRow>, ExportError> {
    let mut r = csv::Reader::from_reader(bytes);
    let mut out = Vec::new();
    for (i, rec) in r.records().enumerate() {
        let rec = rec?;
        let row = i + 1;
        let get = |n: usize| rec.get(n).unwrap_or("");
        let bad = |field: &'static str, reason: String| ExportError::Field { row, field, reason };
        let opt = |s: &str| (!s.is_empty()).then(|| unguard(s));
        out.push(AuditRow {
            id: get(0).parse().map_err(|e| bad("id", format!("{e}")))?,
            entry: AuditEntry {
                at: get(1).parse().map_err(|e| bad("at", format!("{e}")))?,
                subject: unguard(get(2)),
                role: unguard(get(3)),
                action: unguard(get(4)),
                target: unguard(get(5)),
                remote: opt(get(6)),
                result: AuditResult::parse(get(7))
                    .ok_or_else(|| bad("result", format!("{:?} is no result", get(7))))?,
                status: match get(8) {
                    "" => None,
                    s => Some(s.parse().map_err(|e| bad("status", format!("{e}")))?),
                },
                reason: opt(get(9)),
                count: get(10).parse().map_err(|e| bad("count", format!("{e}")))?,
            },
        });
    }
    Ok(out)
}

/// The rows as JSON lines, one object each.
pub fn to_jsonl(rows: &[AuditRow]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in rows {
        if let Ok(line) = serde_json::to_vec(r) {
            out.extend_from_slice(&line);
            out.push(b'\n');
        }
    }
    out
}

/// Reads back what [`to_jsonl`] wrote.
pub fn from_jsonl(bytes: &[u8]) -> Result<Vec<AuditRow>, ExportError> {
    bytes
        .split(|b| *b == b'\n')
        .enumerate()
        .filter(|(_, l)| !l.is_empty())
        .map(|(i, l)| {
            serde_json::from_slice(l).map_err(|source| ExportError::Json {
                line: i + 1,
                source,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> Vec<AuditRow> {
        let base = AuditEntry {
            at: "2026-12-03T08:00:00.123456Z".parse().unwrap(),
            subject: "op1".into(),
            role: "operator".into(),
            action: "alert.acknowledge".into(),
            target: "alert:a1".into(),
            remote: Some("10.0.0.7 (x-forwarded-for: =HYPERLINK(\"http://x\"))".into()),
            result: AuditResult::Allowed,
            status: None,
            reason: None,
            count: 1,
        };
        let refused = AuditEntry {
            subject: "-".into(),
            role: "-".into(),
            remote: Some("=cmd|' /C calc'!A0".into()),
            result: AuditResult::Refused,
            status: Some(401),
            reason: Some(
                "401 unauthorized: a bearer token is required, \"quoted\"\nand split".into(),
            ),
            count: 7,
            ..base.clone()
        };
        let quoted = AuditEntry {
            subject: "'=already".into(),
            remote: None,
            ..base.clone()
        };
        vec![
            AuditRow { id: 3, entry: base },
            AuditRow {
                id: 2,
                entry: refused,
            },
            AuditRow {
                id: 1,
                entry: quoted,
            },
        ]
    }

    #[test]
    fn csv_and_json_lines_round_trip_and_csv_runs_no_formula() {
        let rows = rows();
        let csv = to_csv(&rows).unwrap();
        let text = String::from_utf8(csv.clone()).unwrap();
        assert!(text
            .starts_with("id,at,subject,role,action,target,remote,result,status,reason,count\n"));
        for cell in text.split([',', '\n']) {
            let cell = cell.trim_start_matches('"');
            assert!(!cell.starts_with(['=', '+', '@']), "a formula cell: {cell}");
        }
        assert_eq!(from_csv(&csv).unwrap(), rows);
        assert_eq!(from_jsonl(&to_jsonl(&rows)).unwrap(), rows);
    }
}
