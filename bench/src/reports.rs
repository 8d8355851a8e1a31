//! Field reports benchmark (BENCHMARKS.md, "Field reports through Open311"): reports created
//! per second through `POST /open311/v2/requests.json` of a running `ioc demo` or `ioc serve`
//! (form checks, point-in-polygon routing, `report.created` acknowledged on the bus, answer
//! once the process's replica shows the report), with p50/p99 latency, from `clients`
//! concurrent citizens, each on its own keep-alive connection.
//!
//! The peer, in the same run against the same server and with the same clients: `GET
//! /open311/v2/services.json`, an authenticated request that touches neither the bus nor the
//! replica, so the gap between the two rows is what creating a report costs over the HTTP
//! stack itself.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::Utc;

/// What one phase measured.
struct Phase {
    ok: usize,
    failed: usize,
    elapsed: Duration,
    latencies_ms: Vec<f64>,
}

impl Phase {
    fn line(&self, name: &str, clients: usize) -> String {
        let mut l = self.latencies_ms.clone();
        l.sort_by(|a, b| a.total_cmp(b));
        let pct = |q: f64| crate::percentile(&l, q);
        format!(
            "{name}: {:.0} req/s ({} ok, {} failed in {:.2} s, {clients} clients), p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.ok as f64 / self.elapsed.as_secs_f64(),
            self.ok,
            self.failed,
            self.elapsed.as_secs_f64(),
            pct(0.50),
            pct(0.99),
            l.last().copied().unwrap_or(f64::NAN),
        )
    }
}

/// Runs `requests` requests built by `make` from `clients` closed-loop clients (each sends its
/// next request when the previous one is answered, on its own connection), and times each
/// one. `warmup` requests run first and are not counted.
async fn phase<F>(
    clients: Vec<reqwest::Client>,
    requests: usize,
    warmup: usize,
    make: F,
) -> anyhow::Result<Phase>
where
    F: Fn(&reqwest::Client, usize) -> reqwest::RequestBuilder + Sync,
{
    drive(&clients, 0..warmup, &make).await;
    let start = Instant::now();
    let results = drive(&clients, warmup..warmup + requests, &make).await;
    let elapsed = start.elapsed();
    let mut out = Phase {
        ok: 0,
        failed: 0,
        elapsed,
        latencies_ms: Vec::with_capacity(requests),
    };
    for r in results {
        match r {
            Ok(ms) => {
                out.ok += 1;
                out.latencies_ms.push(ms);
            }
            Err(e) => {
                if out.failed < 3 {
                    eprintln!("request failed: {e}");
                }
                out.failed += 1;
            }
        }
    }
    Ok(out)
}

/// The clients take request numbers from `range` in turn until it is used up.
async fn drive<F>(
    clients: &[reqwest::Client],
    range: std::ops::Range<usize>,
    make: &F,
) -> Vec<Result<f64, String>>
where
    F: Fn(&reqwest::Client, usize) -> reqwest::RequestBuilder + Sync,
{
    let next = AtomicUsize::new(range.start);
    let next = &next;
    let each = clients.iter().map(|c| async move {
        let mut out = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= range.end {
                return out;
            }
            let t = Instant::now();
            let r = match make(c, i).send().await {
                Ok(r) if r.status().is_success() => {
                    let _ = r.bytes().await;
                    Ok(t.elapsed().as_secs_f64() * 1000.0)
                }
                Ok(r) => {
                    let status = r.status();
                    Err(format!("{status}: {}", r.text().await.unwrap_or_default()))
                }
                Err(e) => Err(e.to_string()),
            };
            out.push(r);
        }
    });
    futures::future::join_all(each)
        .await
        .into_iter()
        .flatten()
        .collect()
}

pub async fn run(url: &str, token: &str, clients: usize, requests: usize) -> anyhow::Result<()> {
    let base = url.trim_end_matches('/');
    // One connection per client, as separate phones would have.
    let pool = || -> anyhow::Result<Vec<reqwest::Client>> {
        (0..clients.max(1))
            .map(|_| {
                reqwest::Client::builder()
                    .pool_max_idle_per_host(1)
                    .timeout(Duration::from_secs(30))
                    .build()
                    .context("http client")
            })
            .collect()
    };
    let probe = reqwest::Client::new()
        .get(format!("{base}/open311/v2/services.json"))
        .bearer_auth(token)
        .send()
        .await
        .with_context(|| format!("is `ioc demo` or `ioc serve` listening on {base}?"))?;
    if !probe.status().is_success() {
        bail!("GET services.json: {} (is --token valid?)", probe.status());
    }
    let warmup = (requests / 10).max(clients);
    // The forms, made before timing starts.
    let mut sim = fixtures::reports::ReportSim::new(7);
    let forms: Vec<Vec<(String, String)>> = (0..warmup + requests)
        .map(|_| sim.next_report(Utc::now()).fields)
        .collect();
    let services_url = format!("{base}/open311/v2/services.json");
    let services = phase(pool()?, requests, warmup, |c, _| {
        c.get(&services_url).bearer_auth(token)
    })
    .await?;
    let create_url = format!("{base}/open311/v2/requests.json");
    let created = phase(pool()?, requests, warmup, |c, i| {
        c.post(&create_url).bearer_auth(token).form(&forms[i])
    })
    .await?;
    println!(
        "{}",
        created.line("reports create (POST requests.json)", clients)
    );
    println!(
        "{}",
        services.line("peer GET services.json, same server", clients)
    );
    if created.failed > 0 {
        bail!("{} report creations failed", created.failed);
    }
    Ok(())
}
