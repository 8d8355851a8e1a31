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

/// One HTTP endpoint fetched on an interval (sensor and indicator polls): a client whose
/// timeout fits in the interval, the bearer token, and failures logged without the URL.
pub(crate) struct Fetcher {
    name: String,
    url: String,
    token: Option<String>,
    client: reqwest::Client,
}

impl Fetcher {
    /// `None` (logged) when no client can be built.
    pub(crate) fn new(
        name: &str,
        url: &str,
        token: Option<String>,
        interval: Duration,
    ) -> Option<Self> {
        match reqwest::Client::builder()
            .timeout(interval.min(Duration::from_secs(30)))
            .build()
        {
            Ok(client) => Some(Self {
                name: name.to_string(),
                url: url.to_string(),
                token,
                client,
            }),
            Err(e) => {
                warn!(source = %name, error = %e, "cannot build HTTP client; poll source disabled");
                None
            }
        }
    }

    /// The answer's body; `None` (logged, counted) when the fetch failed.
    pub(crate) async fn get(&self) -> Option<bytes::Bytes> {
        let mut req = self.client.get(&self.url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let failed = |e: reqwest::Error| {
            warn!(source = %self.name, error = %e.without_url(), "poll failed");
            metrics::counter!("ioc_poll_errors_total", "source" => self.name.clone()).increment(1);
        };
        match req.send().await.and_then(|r| r.error_for_status()) {
            Ok(r) => r.bytes().await.map_err(failed).ok(),
            Err(e) => {
                failed(e);
                None
            }
        }
    }
}

/// Polls `src` forever.
pub async fn run(src: PollSource, ingest: Arc<SensorIngest>) {
    let interval = Duration::from_secs(src.interval_s.max(1));
    let Some(fetcher) = Fetcher::new(&src.name, &src.url, src.bearer_token.clone(), interval)
    else {
        return;
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
        let Some(body) = fetcher.get().await else {
            continue;
        };
        let payload: Value = match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => {
                warn!(source = %src.name, error = %e, "poll answer is not JSON");
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
