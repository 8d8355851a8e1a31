//! Abuse benchmark (BENCHMARKS.md, "Under abuse"): the server's resident memory and
//! `/healthz` latency while one client abuses it, against the same figures idle, in one run,
//! on loopback only and bounded in count and time. The abuses are the security review's:
//!
//! - `forms`: concurrent 16 MB `a&a&…` Open311 bodies without a token (and with one);
//! - `pings`: one websocket sending 60 KB pings and never reading;
//! - `slow`: 1,200 half-sent requests and 1,100 idle sockets from one address;
//! - `reports`: one citizen filing reports as fast as it can.
//!
//! The server is a running `ioc demo` or `ioc serve` whose pid is given (RSS is read from
//! `/proc/<pid>/status`).

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::SinkExt;

/// RSS of `pid`, MiB.
fn rss_mib(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS")?;
    Ok(kb / 1024.0)
}

/// `/healthz` latencies (ms) sampled every 100 ms while `busy` holds, and the peak RSS.
async fn watch(url: String, pid: u32, busy: Arc<AtomicBool>) -> (Vec<f64>, f64, usize) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(0)
        .build()
        .expect("a client");
    let mut lat = Vec::new();
    let mut peak: f64 = 0.0;
    let mut failed = 0;
    while busy.load(Ordering::Acquire) {
        let t = Instant::now();
        match client.get(format!("{url}/healthz")).send().await {
            Ok(r) if r.status().is_success() => lat.push(t.elapsed().as_secs_f64() * 1e3),
            _ => failed += 1,
        }
        peak = peak.max(rss_mib(pid).unwrap_or(0.0));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    (lat, peak, failed)
}

fn row(name: &str, base_rss: f64, lat: &[f64], peak: f64, failed: usize, note: &str) -> String {
    format!(
        "| {name} | {base_rss:.0} | {peak:.0} (+{:.0}) | {:.1} / {:.1} / {:.1} | {failed} | {note} |",
        (peak - base_rss).max(0.0),
        crate::percentile(lat, 0.5),
        crate::percentile(lat, 0.99),
        lat.last().copied().unwrap_or(f64::NAN),
    )
}

/// Runs `abuse` while watching the server; one table row.
async fn phase<F, Fut>(name: &str, url: &str, pid: u32, abuse: F) -> anyhow::Result<String>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<String>>,
{
    tokio::time::sleep(Duration::from_secs(2)).await;
    let base = rss_mib(pid)?;
    let busy = Arc::new(AtomicBool::new(true));
    let watcher = tokio::spawn(watch(url.to_string(), pid, busy.clone()));
    let note = abuse().await;
    busy.store(false, Ordering::Release);
    let (lat, peak, failed) = watcher.await?;
    Ok(row(name, base, &lat, peak, failed, &note?))
}

fn post_flood(addr: SocketAddr, token: Option<&str>, size: usize) -> String {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return "connect failed".into();
    };
    let _ = s.set_write_timeout(Some(Duration::from_secs(30)));
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "POST /open311/v2/requests.json HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n{auth}Content-Length: {size}\r\nConnection: close\r\n\r\n"
    );
    let _ = s.write_all(head.as_bytes());
    let chunk = "a&".repeat(32 * 1024);
    let mut sent = 0;
    while sent < size && s.write_all(chunk.as_bytes()).is_ok() {
        sent += chunk.len();
    }
    let mut answer = Vec::new();
    let _ = std::io::Read::read_to_end(&mut s, &mut answer);
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or("no answer")
        .to_string()
}

pub async fn run(url: &str, pid: u32, citizen: &str, operator: &str) -> anyhow::Result<()> {
    let addr: SocketAddr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .context("--url must be http://<ip>:<port>")?;
    println!("| abuse | RSS before, MiB | RSS peak, MiB | /healthz p50 / p99 / max, ms | /healthz failed | what the abuser got |");
    println!("|---|---|---|---|---|---|");
    println!(
        "{}",
        phase("idle (5 s)", url, pid, || async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok("-".into())
        })
        .await?
    );
    for (name, token) in [
        ("3 × 16 MB `a&…` forms, no token", None),
        (
            "3 × 16 MB `a&…` forms, citizen token",
            Some(citizen.to_string()),
        ),
    ] {
        println!(
            "{}",
            phase(name, url, pid, || async move {
                let ts: Vec<_> = (0..3)
                    .map(|_| {
                        let t = token.clone();
                        std::thread::spawn(move || post_flood(addr, t.as_deref(), 16 << 20))
                    })
                    .collect();
                let got: Vec<String> = ts
                    .into_iter()
                    .map(|t| t.join().unwrap_or_default())
                    .collect();
                Ok(got.join("; "))
            })
            .await?
        );
    }
    let op = operator.to_string();
    println!(
        "{}",
        phase(
            "websocket: 10,000 × 60 KB pings, never read",
            url,
            pid,
            || async move {
                let (mut ws, _) = tokio_tungstenite::connect_async(crate::ws_request(
                    &format!("ws://{addr}/ws"),
                    &op,
                )?)
                .await
                .context("websocket")?;
                let ping =
                    serde_json::json!({"op": "ping", "t": "x".repeat(60 * 1024)}).to_string();
                let mut sent = 0;
                for _ in 0..10_000 {
                    let send = ws.send(tokio_tungstenite::tungstenite::Message::Text(
                        ping.clone().into(),
                    ));
                    match tokio::time::timeout(Duration::from_secs(3), send).await {
                        Ok(Ok(())) => sent += 1,
                        _ => break,
                    }
                }
                Ok(format!(
                    "{sent} pings sent before the server stopped reading; closed 1008"
                ))
            }
        )
        .await?
    );
    println!(
        "{}",
        phase(
            "1,200 half-sent requests + 1,100 idle sockets (127.0.0.2)",
            url,
            pid,
            || async move {
                let mut held = Vec::new();
                let mut refused = 0;
                for i in 0..2300 {
                    let sock = tokio::net::TcpSocket::new_v4()?;
                    sock.bind("127.0.0.2:0".parse()?)?;
                    match sock.connect(addr).await {
                        Ok(mut s) => {
                            if i < 1200 {
                                use tokio::io::AsyncWriteExt;
                                let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await;
                            }
                            held.push(s);
                        }
                        Err(_) => refused += 1,
                    }
                }
                tokio::time::sleep(Duration::from_secs(12)).await;
                let mut open = 0;
                for s in &mut held {
                    use tokio::io::AsyncReadExt;
                    let mut b = [0u8; 64];
                    if tokio::time::timeout(Duration::from_millis(5), s.read(&mut b))
                        .await
                        .is_err()
                    {
                        open += 1;
                    }
                }
                Ok(format!(
                    "{} connected, {refused} refused; {open} still open after 12 s",
                    held.len()
                ))
            }
        )
        .await?
    );
    let c = citizen.to_string();
    let target = url.to_string();
    println!(
        "{}",
        phase("one citizen: 2,000 reports as fast as it can", url, pid, || async move {
            let client = reqwest::Client::new();
            let (mut created, mut again, mut limited, mut other) = (0, 0, 0, 0);
            for i in 0..2000 {
                let desc = format!("Đèn đường hỏng {}", i % 50);
                let r = client
                    .post(format!("{target}/open311/v2/requests.json"))
                    .bearer_auth(&c)
                    .form(&[
                        ("service_code", "infra.lighting"),
                        ("lat", "9.7841"),
                        ("long", "105.4701"),
                        ("description", desc.as_str()),
                    ])
                    .send()
                    .await?;
                match r.status().as_u16() {
                    201 => created += 1,
                    200 => again += 1,
                    429 => limited += 1,
                    _ => other += 1,
                }
            }
            Ok(format!("{created} created, {again} answered with an earlier id, {limited} × 429, {other} other"))
        })
        .await?
    );
    Ok(())
}
