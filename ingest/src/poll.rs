//! HTTP poll: fetches a station's (or gateway's) JSON endpoint on an interval and ingests what
//! is new since the last poll. The endpoint returns readings in the push format.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, FixedOffset};
use model::{LocalId, Parameter};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::{info, warn};

use crate::SensorIngest;

#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct PollSource {
    /// A name for logs and metrics (the URL may hold secrets and is never logged whole).
    pub name: String,
    pub url: String,
    pub interval_s: u64,
    /// The station the endpoint speaks for, when its readings do not say.
    #[serde(default)]
    pub station: Option<String>,
    /// Secret: sent as `Authorization: Bearer`, never logged.
    #[serde(default)]
    pub bearer_token: Option<String>,
}

impl std::fmt::Debug for PollSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PollSource")
            .field("name", &self.name)
            .field("url", &redact_url(&self.url))
            .field("interval_s", &self.interval_s)
            .field("station", &self.station)
            .finish()
    }
}

/// The URL without credentials or query string, for logs.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let rest = match rest.split_once('/') {
        Some((authority, path)) => format!(
            "{}/{}",
            authority.rsplit('@').next().unwrap_or(authority),
            path
        ),
        None => rest.rsplit('@').next().unwrap_or(rest).to_string(),
    };
    if scheme.is_empty() {
        rest
    } else {
        format!("{scheme}://{rest}")
    }
}

/// Polls `src` forever.
pub async fn run(src: PollSource, ingest: Arc<SensorIngest>) {
    let interval = Duration::from_secs(src.interval_s.max(1));
    let client = match reqwest::Client::builder()
        .timeout(interval.min(Duration::from_secs(30)))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            warn!(source = %src.name, error = %e, "cannot build HTTP client; poll source disabled");
            return;
        }
    };
    let station = match src
        .station
        .as_deref()
        .map(|s| LocalId::parse("station", s))
        .transpose()
    {
        Ok(s) => s,
        Err(e) => {
            warn!(source = %src.name, error = %e, "bad station in poll source; disabled");
            return;
        }
    };
    info!(source = %src.name, url = %redact_url(&src.url), every_s = src.interval_s, "polling");
    let source = format!("poll:{}", src.name);
    let mut seen: HashMap<(LocalId, Parameter), DateTime<FixedOffset>> = HashMap::new();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let mut req = client.get(&src.url);
        if let Some(t) = &src.bearer_token {
            req = req.bearer_auth(t);
        }
        let payload: Value = match req.send().await.and_then(|r| r.error_for_status()) {
            Ok(resp) => match resp.json().await {
                Ok(v) => v,
                Err(e) => {
                    warn!(source = %src.name, error = %e.without_url(), "poll answer is not JSON");
                    metrics::counter!("ioc_poll_errors_total", "source" => src.name.clone())
                        .increment(1);
                    continue;
                }
            },
            Err(e) => {
                warn!(source = %src.name, error = %e.without_url(), "poll failed");
                metrics::counter!("ioc_poll_errors_total", "source" => src.name.clone())
                    .increment(1);
                continue;
            }
        };
        let mut fresh = Vec::new();
        let result = ingest
            .accept_new(&source, station.as_ref(), &payload, |r| {
                let key = (r.station.clone(), r.parameter);
                let new = seen.get(&key).is_none_or(|last| r.ts > *last);
                if new {
                    fresh.push((key, r.ts));
                }
                new
            })
            .await;
        match result {
            Ok(out) => {
                for (k, ts) in fresh {
                    let slot = seen.entry(k).or_insert(ts);
                    *slot = (*slot).max(ts);
                }
                if out.accepted > 0 || !out.rejected.is_empty() {
                    info!(source = %src.name, accepted = out.accepted, rejected = out.rejected.len(), "polled");
                }
            }
            // Nothing recorded as seen: the next poll offers the same readings again.
            Err(e) => warn!(source = %src.name, error = %e, "poll not ingested; will retry"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_and_queries_never_reach_logs() {
        assert_eq!(
            redact_url("https://user:pw@station.example/api/v1?token=abc"),
            "https://station.example/api/v1"
        );
        assert_eq!(
            redact_url("http://10.0.0.5:8080/data"),
            "http://10.0.0.5:8080/data"
        );
        let src = PollSource {
            name: "s".into(),
            url: "http://u:secretpw@h/x?key=k".into(),
            interval_s: 60,
            station: None,
            bearer_token: Some("tok-secret".into()),
        };
        let dbg = format!("{src:?}");
        assert!(!dbg.contains("secretpw") && !dbg.contains("tok-secret") && !dbg.contains("key=k"));
    }
}
