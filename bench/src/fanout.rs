//! `ioc-bench fanout`: N websocket clients, each subscribed to a district-sized bbox of its
//! own, while the state changes `rate` entities/s spread over the province. Deliveries/s,
//! p50/p99 from the state change to the client's receipt, and the server's resident memory
//! per client; optionally a share of clients that never read. The limit in the same run: a
//! bare tokio-tungstenite server broadcasting the same frames to the same clients (no
//! subscriptions, no filtering, no replica).
//!
//! The server runs in a child process (`ioc-bench fanout-server`, the same binary) so that
//! its memory is its own; clients and the change driver's clock share the machine's wall
//! clock (`t_ns` in each changed entity's properties).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use futures::{SinkExt, StreamExt};
use model::StateRecord;
use rand::{Rng, SeedableRng};
use replica::Replica;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_tungstenite::tungstenite::Message;

use crate::percentile;

const PROVINCE: [f64; 4] = [105.2, 9.4, 106.2, 10.2];
const DISTRICT_DEG: f64 = 0.1;
const SECRET: [u8; 32] = [9u8; 32];
const TICK: Duration = Duration::from_millis(10);

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn station(i: usize, lon: f64, lat: f64, t_ns: u64) -> anyhow::Result<StateRecord> {
    // About a real station's size on the wire (latest values, level, units).
    let extra = [("t_ns", t_ns.into()), ("detail", "x".repeat(400).into())];
    crate::point_record(&format!("f{i}"), lon, lat, &extra)
}

/// Which server the child runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Server {
    /// ui-feeds over a replica: subscriptions, bbox filtering, per-client backpressure.
    Ioc,
    /// tokio-tungstenite broadcasting every frame to every client.
    Bare,
}

/// The child: serves websockets on `port` and changes `rate` entities/s once told to start
/// (a line on stdin), printing `ready` first.
pub async fn serve(server: Server, port: u16, entities: usize, rate: usize) -> anyhow::Result<()> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let points: Vec<(f64, f64)> = (0..entities)
        .map(|_| {
            (
                rng.random_range(PROVINCE[0]..PROVINCE[2]),
                rng.random_range(PROVINCE[1]..PROVINCE[3]),
            )
        })
        .collect();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let replica = Replica::new(replica::DEFAULT_RECENT);
    let (frames, _) = tokio::sync::broadcast::channel::<Arc<str>>(replica::BROADCAST_CAPACITY);
    match server {
        Server::Ioc => {
            for (i, (lon, lat)) in points.iter().enumerate() {
                let r = station(i, *lon, *lat, 0)?;
                replica.apply(r.entity.clone(), Some(r));
            }
            replica.set_ready();
            let state = ui_feeds::FeedsState {
                replica: replica.clone(),
                auth: Arc::new(auth::Authenticator::new(&SECRET)?),
                config: Default::default(),
                mode: "memory".into(),
                history: None,
                basemap: Default::default(),
                tiles: None,
                used_tickets: Default::default(),
            };
            tokio::spawn(async move { axum::serve(listener, ui_feeds::router(state)).await });
        }
        Server::Bare => {
            let frames = frames.clone();
            tokio::spawn(async move {
                while let Ok((tcp, _)) = listener.accept().await {
                    let mut rx = frames.subscribe();
                    tokio::spawn(async move {
                        let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
                            return;
                        };
                        let (mut tx, mut incoming) = ws.split();
                        // The client's subscribe message is read and ignored.
                        let _ = incoming.next().await;
                        loop {
                            match rx.recv().await {
                                Ok(f) => {
                                    if tx.send(Message::Text(f.to_string().into())).await.is_err() {
                                        return;
                                    }
                                }
                                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                                Err(_) => return,
                            }
                        }
                    });
                }
            });
        }
    }
    println!("ready");
    let mut start = String::new();
    BufReader::new(tokio::io::stdin())
        .read_line(&mut start)
        .await?;
    // The driver: `rate` changes per second in ticks, each a random entity with a new t_ns.
    let per_tick = (rate as f64 * TICK.as_secs_f64()).round().max(1.0) as usize;
    let mut tick = tokio::time::interval(TICK);
    let mut seq = 0u64;
    loop {
        tick.tick().await;
        for _ in 0..per_tick {
            let i = rng.random_range(0..entities);
            let (lon, lat) = points[i];
            let r = station(i, lon, lat, now_ns())?;
            match server {
                Server::Ioc => {
                    replica.apply(r.entity.clone(), Some(r));
                }
                Server::Bare => {
                    seq += 1;
                    let frame = json!({"op": "delta", "sub": "s", "seq": seq,
                        "upsert": [r.to_feature()], "remove": []});
                    let _ = frames.send(frame.to_string().into());
                }
            }
        }
    }
}

pub struct FanoutBench {
    pub clients: Vec<usize>,
    pub rate: usize,
    pub entities: usize,
    pub seconds: u64,
    /// Share of clients that never read, 0..1.
    pub silent: f64,
    pub server: Server,
}

/// Latencies (µs) of every `t_ns` in a frame; a cheap scan, not a JSON parse, so that the
/// clients (on the same machine) cost little.
fn scan(text: &str, now: u64, out: &mut Vec<f64>) -> usize {
    let mut n = 0;
    let mut rest = text;
    while let Some(i) = rest.find("\"t_ns\":") {
        rest = &rest[i + 7..];
        let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        if let Ok(t) = digits.parse::<u64>() {
            if t > 0 {
                out.push(now.saturating_sub(t) as f64 / 1000.0);
                n += 1;
            }
        }
    }
    n
}

pub async fn run(b: FanoutBench) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    for &n in &b.clients {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0")?;
            l.local_addr()?.port()
        };
        let mut child = tokio::process::Command::new(&exe)
            .args(["fanout-server", "--server"])
            .arg(match b.server {
                Server::Ioc => "ioc",
                Server::Bare => "bare",
            })
            .args(["--port", &port.to_string()])
            .args(["--entities", &b.entities.to_string()])
            .args(["--rate", &b.rate.to_string()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let pid = child.id().context("child pid")?;
        let mut out = BufReader::new(child.stdout.take().context("child stdout")?).lines();
        match out.next_line().await? {
            Some(l) if l == "ready" => {}
            other => bail!("fanout-server: {other:?}"),
        }
        let rss_before = crate::rss_kib(pid)?;
        let token = auth::Authenticator::new(&SECRET)?.issue(
            "bench",
            auth::Role::Operator,
            None,
            chrono::Duration::hours(2),
        );
        let url = format!("ws://127.0.0.1:{port}/ws");
        let mut rng = rand::rngs::StdRng::seed_from_u64(n as u64);
        let measuring = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let delivered = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        let mut samples: Vec<Arc<std::sync::Mutex<Vec<f64>>>> = Vec::new();
        let silent = (n as f64 * b.silent).round() as usize;
        for c in 0..n {
            let w = rng.random_range(PROVINCE[0]..PROVINCE[2] - DISTRICT_DEG);
            let s = rng.random_range(PROVINCE[1]..PROVINCE[3] - DISTRICT_DEG);
            let sub = json!({"op": "subscribe", "id": "s", "layers": ["salinity"],
                "bbox": [w, s, w + DISTRICT_DEG, s + DISTRICT_DEG]});
            let (mut ws, _) = tokio_tungstenite::connect_async(crate::ws_request(&url, &token)?)
                .await
                .with_context(|| format!("client {c} of {n} (raise the open-files limit)"))?;
            ws.send(Message::Text(sub.to_string().into())).await?;
            let (measuring, delivered) = (measuring.clone(), delivered.clone());
            let quiet = c < silent;
            let mine = Arc::new(std::sync::Mutex::new(Vec::new()));
            samples.push(mine.clone());
            tasks.push(tokio::spawn(async move {
                if quiet {
                    // Holds the socket, never reads: the server must not slow the others.
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    drop(ws);
                    return;
                }
                while let Some(Ok(m)) = ws.next().await {
                    if let Message::Text(t) = m {
                        if measuring.load(Ordering::Relaxed) {
                            let mut lat = mine.lock().unwrap_or_else(|e| e.into_inner());
                            let k = scan(&t, now_ns(), &mut lat);
                            delivered.fetch_add(k as u64, Ordering::Relaxed);
                        }
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_secs(2)).await; // snapshots delivered
        let rss_after = crate::rss_kib(pid)?;
        let stdin = child.stdin.as_mut().context("child stdin")?;
        tokio::io::AsyncWriteExt::write_all(stdin, b"go\n").await?;
        tokio::time::sleep(Duration::from_secs(2)).await; // warm-up
        measuring.store(true, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(b.seconds)).await;
        measuring.store(false, Ordering::Relaxed);
        let count = delivered.load(Ordering::Relaxed);
        let _ = child.kill().await;
        for t in tasks {
            t.abort();
        }
        let mut lat: Vec<f64> = samples
            .iter()
            .flat_map(|m| m.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .collect();
        lat.sort_by(|a, b| a.total_cmp(b));
        println!(
            "{:?} N={n:>6} silent={silent:>5}: {:>9.0} deliveries/s, p50 {:>7.1} ms, p99 {:>7.1} ms; server RSS {:.1} KiB per client",
            b.server,
            count as f64 / b.seconds as f64,
            percentile(&lat, 0.5) / 1000.0,
            percentile(&lat, 0.99) / 1000.0,
            rss_after.saturating_sub(rss_before) as f64 / n as f64
        );
    }
    Ok(())
}
