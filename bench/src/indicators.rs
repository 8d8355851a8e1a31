//! `ioc-bench indicators`: the leaders' indicators through a running `ioc demo` or `ioc serve`
//! (BENCHMARKS.md, "Indicators").
//!
//! 1. Values/s through intake to the websocket: every catalogue indicator (that is reported
//!    rather than rolled up or derived) for every district-level unit and `periods` months, posted to
//!    `POST /ingest/v1/indicators` in batches of `batch` values, from the first request to the
//!    moment a leader's websocket shows the last value (a marker in the current month).
//! 2. `GET /api/v1/dashboard?unit=` p50/p99 over that history, one client at a time, against
//!    `GET /api/v1/layers` on the same server (the HTTP round trip with a token and a JSON
//!    answer, touching no indicator) as the floor, in the same run.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::{SinkExt, StreamExt};
use model::indicator::{Basis, Frequency, Period};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

pub struct IndicatorBench {
    pub url: String,
    /// An operator token (reports for every unit) for the writes.
    pub operator: String,
    /// A leader token for the reads.
    pub leader: String,
    pub periods: usize,
    pub batch: usize,
    pub requests: usize,
}

fn stats(name: &str, mut ms: Vec<f64>) {
    ms.sort_by(|a, b| a.total_cmp(b));
    println!(
        "{name:<40} p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms  ({} requests)",
        crate::percentile(&ms, 0.5),
        crate::percentile(&ms, 0.99),
        ms.last().copied().unwrap_or(f64::NAN),
        ms.len()
    );
}

async fn get(client: &reqwest::Client, url: &str, token: &str) -> anyhow::Result<Value> {
    let r = client.get(url).bearer_auth(token).send().await?;
    if !r.status().is_success() {
        bail!("{url}: {}", r.status());
    }
    Ok(r.json().await?)
}

pub async fn run(b: IndicatorBench) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let base = b.url.trim_end_matches('/');
    let catalogue = get(&client, &format!("{base}/api/v1/indicators"), &b.leader).await?;
    let indicators: Vec<(String, Frequency)> = catalogue["indicators"]
        .as_array()
        .context("a catalogue")?
        .iter()
        // Ratios are computed from their parts; derived figures by the core (intake refuses
        // them).
        .filter(|i| i["rollup"] != "ratio" && i["source"] != "derived")
        .filter_map(|i| {
            let f: Frequency = serde_json::from_value(i["frequency"].clone()).ok()?;
            Some((i["code"].as_str()?.to_string(), f))
        })
        .collect();
    let units = get(
        &client,
        &format!("{base}/api/v1/layers/units/features?limit=1000"),
        &b.leader,
    )
    .await?;
    let districts: Vec<String> = units["features"]
        .as_array()
        .context("units")?
        .iter()
        // The units at the tier the fixture indicators are reported by.
        .filter(|u| {
            u["properties"]["level"].as_str().is_some_and(|l| {
                model::indicator::Tier::of_level(l) == model::indicator::Tier::District
            })
        })
        .filter_map(|u| Some(u["id"].as_str()?.trim_start_matches("unit:").to_string()))
        .collect();
    let today = model::indicator::period::vietnam_date(chrono::Utc::now());
    let mut values = Vec::new();
    for (code, freq) in &indicators {
        let current = Period::containing(today, *freq, Basis::Calendar);
        for p in current.prev().last_n(b.periods.min(60)) {
            for (i, u) in districts.iter().enumerate() {
                values.push(
                    json!({"indicator": code, "unit": u, "period": p.to_string(),
                                   "value": 1000 + (i * 7 + p.year() as usize) % 500}),
                );
            }
        }
    }
    // The marker: the last value posted, for the current month, shown on the websocket.
    let (marker_code, marker_freq) = indicators
        .iter()
        .find(|(_, f)| *f == Frequency::Month)
        .cloned()
        .context("a monthly indicator")?;
    let marker_unit = districts.first().context("a unit")?.clone();
    let marker_period = Period::containing(today, marker_freq, Basis::Calendar);
    let marker = 987_654.0;
    values.push(json!({"indicator": marker_code, "unit": marker_unit,
                       "period": marker_period.to_string(), "value": marker}));
    println!(
        "{} indicators × {} units × up to {} periods = {} values, in batches of {}",
        indicators.len(),
        districts.len(),
        b.periods,
        values.len(),
        b.batch
    );

    let ws_url = format!("{}/ws", base.replacen("http", "ws", 1));
    let (mut ws, _) =
        tokio_tungstenite::connect_async(crate::ws_request(&ws_url, &b.leader)?).await?;
    ws.send(Message::Text(
        json!({"op": "subscribe", "id": "b", "layers": ["indicators"]})
            .to_string()
            .into(),
    ))
    .await?;
    let entity = format!("series:{marker_code}@{marker_unit}");
    let start = Instant::now();
    let mut posting = Duration::ZERO;
    for chunk in values.chunks(b.batch.max(1)) {
        let t = Instant::now();
        let r = client
            .post(format!("{base}/ingest/v1/indicators"))
            .bearer_auth(&b.operator)
            .json(&chunk)
            .send()
            .await?;
        if r.status().as_u16() != 202 {
            bail!(
                "ingest: {} {}",
                r.status(),
                r.text().await.unwrap_or_default()
            );
        }
        posting += t.elapsed();
    }
    let acknowledged = start.elapsed();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    'wait: loop {
        let m = tokio::time::timeout_at(deadline, ws.next())
            .await
            .context("the marker never reached the websocket")?
            .context("websocket closed")??;
        let Message::Text(t) = m else { continue };
        let v: Value = serde_json::from_str(&t)?;
        if v["op"] != "delta" {
            continue;
        }
        for f in v["upsert"].as_array().into_iter().flatten() {
            if f["id"] == entity.as_str() && f["properties"]["latest"]["value"] == marker {
                break 'wait;
            }
        }
    }
    let shown = start.elapsed();
    println!(
        "intake: {} values acknowledged in {:.2} s ({:.0} values/s, {:.0} values/s of request time)",
        values.len(),
        acknowledged.as_secs_f64(),
        values.len() as f64 / acknowledged.as_secs_f64(),
        values.len() as f64 / posting.as_secs_f64()
    );
    println!(
        "intake → websocket: the last value shown after {:.2} s ({:.0} values/s end to end)",
        shown.as_secs_f64(),
        values.len() as f64 / shown.as_secs_f64()
    );

    for (name, path) in [
        ("GET /api/v1/dashboard?unit=<province>", "/api/v1/dashboard"),
        ("GET /api/v1/layers (floor)", "/api/v1/layers"),
    ] {
        let url = format!("{base}{path}");
        for _ in 0..20 {
            get(&client, &url, &b.leader).await?;
        }
        let mut ms = Vec::with_capacity(b.requests);
        let mut bytes = 0usize;
        for _ in 0..b.requests {
            let t = Instant::now();
            let r = client.get(&url).bearer_auth(&b.leader).send().await?;
            let body = r.bytes().await?;
            ms.push(t.elapsed().as_secs_f64() * 1e3);
            bytes = body.len();
        }
        stats(name, ms);
        println!("{:<40} {} bytes per answer", "", bytes);
    }
    Ok(())
}
