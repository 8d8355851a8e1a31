//! The demo's citizens and agencies, as real clients of this process's HTTP API: citizens
//! file reports through Open311 (`POST /open311/v2/requests.json`) around the fixture
//! hotspots, and each agency starts and resolves its reports after a plausible delay (some
//! late, so the wall shows overdue reports), on a compressed clock.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use auth::{Authenticator, Role};
use chrono::Utc;
use serde_json::{json, Value};
use tracing::{debug, warn};

use crate::config::DemoConfig;

pub async fn simulate(
    auth: Arc<Authenticator>,
    local: SocketAddr,
    demo: DemoConfig,
) -> anyhow::Result<()> {
    let base = format!("http://127.0.0.1:{}", local.port());
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .context("http client")?;
    let ttl = chrono::Duration::days(30);
    let mut sim = fixtures::reports::ReportSim::new(Utc::now().timestamp() as u64);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(demo.report_every_s.max(0.5)));
    let scale = demo.report_time_scale.max(0.01);
    // A burst first, so the layer is not empty when the page opens.
    let mut burst = 12;
    let mut n = 0u64;
    loop {
        if burst > 0 {
            burst -= 1;
            tokio::time::sleep(Duration::from_millis(300)).await;
        } else {
            tick.tick().await;
        }
        n += 1;
        let report = sim.next_report(Utc::now());
        let citizen = auth.issue(
            &format!("demo-citizen-{}", n % 40),
            Role::Citizen,
            None,
            ttl,
        );
        let resp = http
            .post(format!("{base}/open311/v2/requests.json"))
            .bearer_auth(&citizen)
            .form(&report.fields)
            .send()
            .await;
        let created: Value = match resp {
            Ok(r) if r.status().is_success() => r.json().await.unwrap_or_default(),
            Ok(r) => {
                let status = r.status();
                // 503 while the registry loads at start: try again on the next tick.
                debug!(%status, "simulated report not taken");
                continue;
            }
            Err(e) => {
                warn!(error = %e, "simulated report not sent");
                continue;
            }
        };
        let Some(id) = created[0]["service_request_id"]
            .as_str()
            .map(str::to_string)
        else {
            continue;
        };
        // The agency handles it later, as its own client.
        let (start_min, resolve_min) = sim.handling_minutes(24);
        let reject = sim.chance(0.08);
        let (http, base, auth) = (http.clone(), base.clone(), auth.clone());
        tokio::spawn(async move {
            let op = auth.issue("demo-operator", Role::Operator, None, ttl);
            let Some(agency) = agency_of(&http, &base, &op, &id).await else {
                return;
            };
            let token = auth.issue(&format!("demo-{agency}"), Role::Agency, Some(&agency), ttl);
            let wait = |min: u64| Duration::from_secs_f64(min as f64 / scale);
            tokio::time::sleep(wait(start_min)).await;
            let step = if reject {
                json!({"action": "reject", "reason": "Không thuộc thẩm quyền, đã hướng dẫn người dân liên hệ đơn vị khác"})
            } else {
                json!({"action": "start", "note": "Đã cử cán bộ đến hiện trường"})
            };
            if !transition(&http, &base, &token, &id, step).await || reject {
                return;
            }
            tokio::time::sleep(wait(resolve_min.saturating_sub(start_min))).await;
            let done =
                json!({"action": "resolve", "result": "Đã kiểm tra và khắc phục tại hiện trường"});
            transition(&http, &base, &token, &id, done).await;
        });
    }
}

/// The agency a report was routed to, if any (unrouted ones wait for the operators).
async fn agency_of(http: &reqwest::Client, base: &str, token: &str, id: &str) -> Option<String> {
    let v: Value = http
        .get(format!("{base}/api/v1/reports/{id}"))
        .bearer_auth(token)
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    v["agency"].as_str().map(str::to_string)
}

async fn transition(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    id: &str,
    step: Value,
) -> bool {
    match http
        .post(format!("{base}/api/v1/reports/{id}/transitions"))
        .bearer_auth(token)
        .json(&step)
        .send()
        .await
    {
        Ok(r) if r.status().is_success() => true,
        Ok(r) => {
            debug!(status = %r.status(), %id, "simulated transition refused");
            false
        }
        Err(e) => {
            warn!(error = %e, "simulated transition not sent");
            false
        }
    }
}
