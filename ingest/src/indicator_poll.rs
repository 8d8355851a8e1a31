//! Poll connectors for indicator figures: a system that owns figures (the public-service
//! portal's statistics, a sector's database) is fetched on an interval, as JSON or CSV, and
//! its rows are mapped to indicator values by configuration: which fields hold the
//! indicator, unit, period, value and note, and how the source's own codes translate to the
//! catalogue's. Each poll writes only what changed since the last (a figure the book already
//! holds is not sent again); a row that cannot be read is dead-lettered and the rest are
//! written, since there is no sender to tell. Credentials stay out of logs (`redact_url`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use tracing::{info, warn};

use crate::indicators::{parse_csv, IndicatorIntake, RawItem, Reporter};
use crate::poll::{redact_url, Fetcher};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Json,
    Csv,
}

/// Which of the source's fields hold what (JSON keys, or CSV column names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FieldMap {
    pub indicator: String,
    pub unit: String,
    pub period: String,
    pub value: String,
    pub note: String,
}

impl Default for FieldMap {
    fn default() -> Self {
        Self {
            indicator: "indicator".into(),
            unit: "unit".into(),
            period: "period".into(),
            value: "value".into(),
            note: "note".into(),
        }
    }
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct IndicatorPoll {
    /// A name for logs and metrics (the URL may hold secrets and is never logged whole).
    pub name: String,
    pub url: String,
    pub interval_s: u64,
    #[serde(default)]
    pub format: Format,
    /// Where the rows are in a JSON answer, as a dotted path (`data.rows`); the root when
    /// empty (an array of rows).
    #[serde(default)]
    pub rows: String,
    #[serde(default)]
    pub fields: FieldMap,
    /// The source's indicator codes that differ from the catalogue's: source → catalogue.
    #[serde(default)]
    pub indicators: BTreeMap<String, String>,
    /// The source's unit codes that differ from the registry's: source → registry.
    #[serde(default)]
    pub units: BTreeMap<String, String>,
    /// Secret: sent as `Authorization: Bearer`, never logged.
    #[serde(default)]
    pub bearer_token: Option<String>,
}

impl std::fmt::Debug for IndicatorPoll {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndicatorPoll")
            .field("name", &self.name)
            .field("url", &redact_url(&self.url))
            .field("interval_s", &self.interval_s)
            .field("format", &self.format)
            .field("rows", &self.rows)
            .finish()
    }
}

fn text(v: Option<&Json>) -> Option<String> {
    match v? {
        Json::String(s) => Some(s.trim().to_string()),
        Json::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl IndicatorPoll {
    /// The rows of an answer as intake items, with the source's codes translated.
    pub fn items(&self, body: &[u8]) -> Result<Vec<RawItem>, String> {
        let map = |code: Option<String>, table: &BTreeMap<String, String>| {
            code.map(|c| table.get(&c).cloned().unwrap_or(c))
        };
        match self.format {
            Format::Csv => {
                let text = std::str::from_utf8(body).map_err(|_| "the answer is not UTF-8")?;
                // Rename the mapped columns to the intake's, then read as a sheet.
                let mut lines = text
                    .strip_prefix('\u{feff}')
                    .unwrap_or(text)
                    .splitn(2, '\n');
                let header = lines.next().unwrap_or_default();
                let f = &self.fields;
                let renamed: Vec<String> = header
                    .trim_end_matches('\r')
                    .split(',')
                    .map(|h| {
                        let h = h.trim();
                        [
                            (&f.indicator, "indicator"),
                            (&f.unit, "unit"),
                            (&f.period, "period"),
                            (&f.value, "value"),
                            (&f.note, "note"),
                        ]
                        .iter()
                        .find(|(src, _)| src.as_str() == h)
                        .map_or(h.to_string(), |(_, ours)| ours.to_string())
                    })
                    .collect();
                let sheet = format!(
                    "{}\n{}",
                    renamed.join(","),
                    lines.next().unwrap_or_default()
                );
                let mut items = parse_csv(&sheet).map_err(|e| e.to_string())?;
                for i in &mut items {
                    i.indicator = map(i.indicator.take(), &self.indicators);
                    i.unit = map(i.unit.take(), &self.units);
                }
                Ok(items)
            }
            Format::Json => {
                let v: Json = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
                let mut at = &v;
                for key in self.rows.split('.').filter(|k| !k.is_empty()) {
                    at = at.get(key).ok_or_else(|| {
                        format!("no {key:?} in the answer (rows = {:?})", self.rows)
                    })?;
                }
                let rows = at.as_array().ok_or("the rows are not an array")?;
                let f = &self.fields;
                Ok(rows
                    .iter()
                    .map(|r| RawItem {
                        indicator: map(text(r.get(&f.indicator)), &self.indicators),
                        unit: map(text(r.get(&f.unit)), &self.units),
                        period: text(r.get(&f.period)),
                        value: r.get(&f.value).cloned(),
                        note: text(r.get(&f.note)),
                        line: None,
                        original: r.clone(),
                    })
                    .collect())
            }
        }
    }
}

/// Polls `src` forever, writing through `intake`.
pub async fn run(src: IndicatorPoll, intake: Arc<IndicatorIntake>) {
    let interval = Duration::from_secs(src.interval_s.max(1));
    let Some(fetcher) = Fetcher::new(&src.name, &src.url, src.bearer_token.clone(), interval)
    else {
        return;
    };
    info!(source = %src.name, url = %redact_url(&src.url), every_s = src.interval_s, "polling indicators");
    let source = format!("poll:{}", src.name);
    // What this source last delivered per figure: only changes are written again.
    let mut sent: HashMap<(String, String, String), String> = HashMap::new();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(body) = fetcher.get().await else {
            continue;
        };
        let items = match src.items(&body) {
            Ok(i) => i,
            Err(reason) => {
                warn!(source = %src.name, %reason, "indicator poll answer unreadable");
                metrics::counter!("ioc_poll_errors_total", "source" => src.name.clone())
                    .increment(1);
                continue;
            }
        };
        let key = |i: &RawItem| {
            (
                i.indicator.clone().unwrap_or_default(),
                i.unit.clone().unwrap_or_default(),
                i.period.clone().unwrap_or_default(),
            )
        };
        let changed: Vec<RawItem> = items
            .into_iter()
            .filter(|i| sent.get(&key(i)) != Some(&i.original.to_string()))
            .collect();
        if changed.is_empty() {
            continue;
        }
        match intake
            .submit_each(&source, &source, &Reporter::Any, &changed)
            .await
        {
            Ok(out) => {
                for i in &changed {
                    sent.insert(key(i), i.original.to_string());
                }
                info!(source = %src.name, accepted = out.accepted, refused = out.rejected.len(), "indicators polled");
            }
            // Nothing recorded as sent: the next poll offers the same rows again.
            Err(e) => {
                warn!(source = %src.name, error = %e, "indicator poll not written; will retry")
            }
        }
    }
}
