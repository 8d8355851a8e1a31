//! The SOC's copy of the audit log: each entry written to the store is also sent, as one
//! JSON object, to a file a log shipper follows (JSON lines) or to syslog (RFC 5424 over
//! UDP or a local socket, facility "log audit"). The copy never holds up a request: entries
//! wait in a bounded queue, and past it they are counted as dropped (the store keeps them).

use std::io::Write;
use std::path::PathBuf;

use serde::Deserialize;
use store::{AuditEntry, AuditResult};
use tokio::sync::mpsc;
use tracing::warn;

/// Entries waiting for the shipper at most.
const QUEUE: usize = 10_000;

/// The `[audit]` section of the configuration.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Where the SOC's copy goes: `file:/var/log/ioc/audit.jsonl`, `udp://10.0.0.5:514` or
    /// `unix:/dev/log` (none by default). How long the store keeps entries is
    /// `store.audit_retention_days`.
    pub ship: Option<ShipTarget>,
}

/// One place the copy goes.
#[derive(Debug, Clone, PartialEq)]
pub enum ShipTarget {
    /// JSON lines appended to a file (a shipper like Filebeat or Vector follows it; rotate
    /// it with `copytruncate`).
    File(PathBuf),
    /// RFC 5424 datagrams to a syslog collector.
    Udp(String),
    /// RFC 5424 datagrams to the local syslog socket.
    Unix(PathBuf),
}

impl std::str::FromStr for ShipTarget {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(p) = s.strip_prefix("file:") {
            Ok(ShipTarget::File(p.into()))
        } else if let Some(a) = s.strip_prefix("udp://") {
            Ok(ShipTarget::Udp(a.into()))
        } else if let Some(p) = s.strip_prefix("unix:") {
            Ok(ShipTarget::Unix(p.into()))
        } else {
            Err(format!(
                "audit.ship: {s:?} is none of file:<path>, udp://<host:port>, unix:<socket>"
            ))
        }
    }
}

impl std::fmt::Display for ShipTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ShipTarget::File(p) => write!(f, "file:{}", p.display()),
            ShipTarget::Udp(a) => write!(f, "udp://{a}"),
            ShipTarget::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

impl serde::Serialize for ShipTarget {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ShipTarget {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

pub(crate) struct Shipper {
    tx: mpsc::Sender<AuditEntry>,
}

impl Shipper {
    /// Opens the target (so a wrong path fails at start, not at the first entry) and starts
    /// its writer.
    pub(crate) fn start(cfg: &AuditConfig) -> std::io::Result<Option<Self>> {
        let Some(to) = cfg.ship.clone() else {
            return Ok(None);
        };
        let sink = Sink::open(&to)?;
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::task::spawn_blocking(move || sink.run(rx));
        Ok(Some(Self { tx }))
    }

    pub(crate) fn send(&self, e: &AuditEntry) {
        if self.tx.try_send(e.clone()).is_err() {
            metrics::counter!("ioc_audit_ship_dropped_total").increment(1);
        }
    }
}

enum Sink {
    File(std::fs::File),
    Udp(std::net::UdpSocket),
    Unix(std::os::unix::net::UnixDatagram),
}

impl Sink {
    fn open(to: &ShipTarget) -> std::io::Result<Self> {
        Ok(match to {
            ShipTarget::File(p) => Sink::File(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)?,
            ),
            ShipTarget::Udp(addr) => {
                let s = std::net::UdpSocket::bind("0.0.0.0:0")?;
                s.connect(addr)?;
                Sink::Udp(s)
            }
            ShipTarget::Unix(p) => {
                let s = std::os::unix::net::UnixDatagram::unbound()?;
                s.connect(p)?;
                Sink::Unix(s)
            }
        })
    }

    fn run(mut self, mut rx: mpsc::Receiver<AuditEntry>) {
        let host = hostname();
        while let Some(e) = rx.blocking_recv() {
            let line = json_line(&e);
            let sent = match &mut self {
                Sink::File(f) => writeln!(f, "{line}"),
                Sink::Udp(s) => s.send(syslog(&e, &host, &line).as_bytes()).map(|_| ()),
                Sink::Unix(s) => s.send(syslog(&e, &host, &line).as_bytes()).map(|_| ()),
            };
            match sent {
                Ok(()) => metrics::counter!("ioc_audit_shipped_total").increment(1),
                Err(err) => {
                    metrics::counter!("ioc_audit_ship_failures_total").increment(1);
                    warn!(error = %err, "audit entry not shipped (the store has it)");
                }
            }
        }
    }
}

/// The entry as one JSON object on one line (the export's JSON lines have the same shape,
/// with the store's `id`).
pub(crate) fn json_line(e: &AuditEntry) -> String {
    serde_json::to_string(e).unwrap_or_default()
}

/// An RFC 5424 message: facility 13 (log audit), notice for refusals and failures, info for
/// the rest; the entry's JSON is the message.
fn syslog(e: &AuditEntry, host: &str, json: &str) -> String {
    let severity = if e.result == AuditResult::Allowed {
        6
    } else {
        5
    };
    format!(
        "<{}>1 {} {host} ioc {} audit - {json}",
        13 * 8 + severity,
        e.at.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
        std::process::id()
    )
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| crate::clean(h.trim(), 255))
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "-".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> AuditEntry {
        AuditEntry {
            at: "2026-12-03T08:00:00Z".parse().unwrap(),
            subject: "op1".into(),
            role: "operator".into(),
            action: "alert.acknowledge".into(),
            target: "alert:a1".into(),
            remote: Some("10.0.0.7".into()),
            result: AuditResult::Refused,
            status: Some(403),
            reason: Some("no".into()),
            count: 1,
        }
    }

    #[test]
    fn a_syslog_message_is_rfc_5424_in_the_audit_facility() {
        let e = entry();
        let m = syslog(&e, "ioc-1", &json_line(&e));
        assert!(
            m.starts_with("<109>1 2026-12-03T08:00:00.000Z ioc-1 ioc "),
            "{m}"
        );
        assert!(m.ends_with(&json_line(&e)));
        let back: AuditEntry = serde_json::from_str(m.split(" audit - ").nth(1).unwrap()).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn targets_are_named_by_their_scheme() {
        assert_eq!(
            "file:/var/log/ioc/audit.jsonl".parse(),
            Ok(ShipTarget::File("/var/log/ioc/audit.jsonl".into()))
        );
        assert_eq!(
            "udp://10.0.0.5:514".parse(),
            Ok(ShipTarget::Udp("10.0.0.5:514".into()))
        );
        assert!("tcp://x"
            .parse::<ShipTarget>()
            .unwrap_err()
            .contains("audit.ship"));
    }
}
