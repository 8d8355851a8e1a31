//! Video-wall benchmark (BENCHMARKS.md, "A video wall"): what a wall of `screens` screens ×
//! `tiles` snapshot tiles and `live` live tiles costs one `ioc demo` process (API, feeds,
//! core and the camera worker in one) over the same cameras with no wall open, in the same
//! run. A snapshot tile is what the page's does: the snapshot fetched with the bearer token
//! every snapshot period; a live tile takes a media ticket and reads the MJPEG stream.
//!
//! CPU comes from `/proc/<pid>/task/*/stat` over the window, split by thread: tokio's threads
//! (the API, the feeds, the core, the worker's control) and the media threads (GStreamer:
//! RTSP, depayload, decode, JPEG). Freshness is the age of each snapshot answered (now minus
//! its `X-Capture-Time`), p50 and p99; without a wall it is sampled once per camera per
//! period. The fixture RTSP server runs as its own process and is not counted.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::StreamExt;

use crate::cameras::FixtureServer;

pub struct WallBench {
    pub ioc: String,
    pub cameras: usize,
    pub screens: usize,
    pub tiles: usize,
    pub live: usize,
    pub window_s: u64,
    pub snapshot_every_s: f64,
    pub fps: u32,
}

const SECRET: &str = "wall-bench-secret-0123456789abcdef";

/// CPU seconds of a process's threads: (tokio threads, every other thread).
fn threads_cpu(pid: u32) -> (f64, f64) {
    let mut runtime = 0.0;
    let mut media = 0.0;
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return (0.0, 0.0);
    };
    for t in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat.get(open + 1..close).unwrap_or("");
        let f: Vec<&str> = stat
            .get(close + 2..)
            .unwrap_or("")
            .split_whitespace()
            .collect();
        let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        let cpu = (ticks(11) + ticks(12)) / 100.0;
        if name.starts_with("tokio") || name == "ioc" {
            runtime += cpu;
        } else {
            media += cpu;
        }
    }
    (runtime, media)
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

struct Demo {
    child: Child,
    base: String,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_demo(
    b: &WallBench,
    fixture: &FixtureServer,
    dir: &std::path::Path,
) -> anyhow::Result<Demo> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut csv = String::from("id,name,lon,lat,agency,purpose,group,url,transport,credentials\n");
    for i in 0..b.cameras {
        csv.push_str(&format!(
            "bench-{i:04},Camera thử {i},{},{},hg-ca,public_order,police,{}/bench-{i:04},tcp,bench\n",
            105.47 + 0.001 * i as f64,
            9.78,
            fixture.base
        ));
    }
    let csv_path = dir.join("cameras.csv");
    std::fs::write(&csv_path, csv)?;
    let config = format!(
        "listen = \"127.0.0.1:{port}\"\n\
         [auth]\nsecret = \"{SECRET}\"\n\
         [limits]\nenabled = false\n\
         [registry]\nfiles = [\"{}\"]\n\
         [video]\nsnapshot_every_s = {}\nmax_viewers = 8\n\
         [video.credentials.bench]\nuser = \"bench\"\npassword = \"bench-camera-password\"\n\
         [demo]\ncameras = false\n",
        csv_path.display(),
        b.snapshot_every_s
    );
    let cfg_path = dir.join("ioc.toml");
    std::fs::File::create(&cfg_path)?.write_all(config.as_bytes())?;
    let child = Command::new(&b.ioc)
        .args(["demo", "--config", cfg_path.to_str().context("path")?])
        .env("IOC_LOG__FILTER", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting `{} demo`", b.ioc))?;
    Ok(Demo {
        child,
        base: format!("http://127.0.0.1:{port}"),
    })
}

/// How many of the bench cameras are online on the map.
async fn online(client: &reqwest::Client, base: &str, token: &str) -> usize {
    let Ok(r) = client
        .get(format!("{base}/api/v1/layers/cameras/features?limit=10000"))
        .bearer_auth(token)
        .send()
        .await
    else {
        return 0;
    };
    let Ok(v) = r.json::<serde_json::Value>().await else {
        return 0;
    };
    v["features"]
        .as_array()
        .map(|f| {
            f.iter()
                .filter(|f| {
                    f["id"]
                        .as_str()
                        .is_some_and(|i| i.starts_with("camera:bench-"))
                        && f["properties"]["state"] == "online"
                })
                .count()
        })
        .unwrap_or(0)
}

/// One snapshot: the picture's age in ms, if it came.
async fn snapshot_age(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    cam: usize,
) -> Option<f64> {
    let r = client
        .get(format!("{base}/api/v1/cameras/bench-{cam:04}/snapshot.jpg"))
        .bearer_auth(token)
        .send()
        .await
        .ok()?;
    if !r.status().is_success() {
        return None;
    }
    let captured = r
        .headers()
        .get("x-capture-time")?
        .to_str()
        .ok()?
        .to_string();
    let _ = r.bytes().await.ok()?;
    let at = chrono::DateTime::parse_from_rfc3339(&captured).ok()?;
    Some((chrono::Utc::now() - at.with_timezone(&chrono::Utc)).num_milliseconds() as f64)
}

struct Window {
    runtime_s: f64,
    media_s: f64,
    ages: Vec<f64>,
    failed: u64,
    mjpeg_bytes: u64,
}

/// Runs `snapshot_tiles` tiles (each on camera `i % cameras`) and `live` live tiles for the
/// window; CPU of `pid` over it.
async fn window(
    b: &WallBench,
    base: &str,
    token: &str,
    pid: u32,
    snapshot_tiles: usize,
    live: usize,
) -> anyhow::Result<Window> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(20))
        .build()?;
    let ages = Arc::new(Mutex::new(Vec::new()));
    let failed = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + Duration::from_secs(b.window_s);
    let period = Duration::from_secs_f64(b.snapshot_every_s);
    let mut tasks = Vec::new();
    // Live tiles first, so that their streams run for the whole window.
    for i in 0..live {
        let (client, base, token, bytes) = (
            client.clone(),
            base.to_string(),
            token.to_string(),
            bytes.clone(),
        );
        let cam = i % b.cameras;
        tasks.push(tokio::spawn(async move {
            let t: serde_json::Value = client
                .post(format!("{base}/api/v1/cameras/bench-{cam:04}/tickets"))
                .bearer_auth(&token)
                .json(&serde_json::json!({"use": "live_view"}))
                .send()
                .await?
                .json()
                .await?;
            let url = t["url"].as_str().context("a ticket url")?;
            let url = if url.starts_with("http") {
                url.to_string()
            } else {
                format!("{base}{url}")
            };
            let r = reqwest::Client::new().get(url).send().await?;
            let mut body = r.bytes_stream();
            while Instant::now() < end {
                match tokio::time::timeout(Duration::from_secs(5), body.next()).await {
                    Ok(Some(Ok(c))) => {
                        bytes.fetch_add(c.len() as u64, Ordering::Relaxed);
                    }
                    _ => break,
                }
            }
            anyhow::Ok(())
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = threads_cpu(pid);
    let started = Instant::now();
    let end_snapshots = Instant::now() + Duration::from_secs(b.window_s.saturating_sub(3).max(1));
    for i in 0..snapshot_tiles {
        let (client, base, token) = (client.clone(), base.to_string(), token.to_string());
        let (ages, failed) = (ages.clone(), failed.clone());
        let cam = i % b.cameras;
        // Tiles start spread over one period, as pages opened one after another do.
        let offset = period.mul_f64(i as f64 / snapshot_tiles.max(1) as f64);
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(offset).await;
            let mut tick = tokio::time::interval(period);
            while Instant::now() < end_snapshots {
                tick.tick().await;
                match snapshot_age(&client, &base, &token, cam).await {
                    Some(a) => ages.lock().unwrap_or_else(|e| e.into_inner()).push(a),
                    None => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            anyhow::Ok(())
        }));
    }
    tokio::time::sleep_until(tokio::time::Instant::from_std(end_snapshots)).await;
    let after = threads_cpu(pid);
    let elapsed = started.elapsed().as_secs_f64();
    for t in tasks {
        let _ = t.await;
    }
    let ages = std::mem::take(&mut *ages.lock().unwrap_or_else(|e| e.into_inner()));
    Ok(Window {
        runtime_s: (after.0 - before.0) / elapsed,
        media_s: (after.1 - before.1) / elapsed,
        ages,
        failed: failed.load(Ordering::Relaxed),
        mjpeg_bytes: bytes.load(Ordering::Relaxed),
    })
}

pub async fn run(b: WallBench) -> anyhow::Result<()> {
    let fixture = FixtureServer::start(&b.ioc, b.cameras, b.fps)?;
    let dir = std::env::temp_dir().join(format!("ioc-wall-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let demo = start_demo(&b, &fixture, &dir)?;
    let pid = demo.child.id();
    let token = auth::Authenticator::new(SECRET.as_bytes())?.issue(
        "wall-bench",
        auth::Role::Operator,
        None,
        chrono::Duration::hours(2),
    );
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let n = online(&client, &demo.base, &token).await;
        if n == b.cameras {
            break;
        }
        if Instant::now() > deadline {
            bail!("{n} of {} cameras online after 120 s", b.cameras);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Let the start settle (history seeding, first snapshots).
    tokio::time::sleep(Duration::from_secs(10)).await;
    let tiles = b.screens * b.tiles;
    println!(
        "wall benchmark: {} cameras at {} fps, snapshot every {} s, window {} s",
        b.cameras, b.fps, b.snapshot_every_s, b.window_s
    );
    // Without a wall: one sample per camera per period, the freshness a wall would start from.
    let mut idle = window(&b, &demo.base, &token, pid, b.cameras, 0).await?;
    let mut wall = window(&b, &demo.base, &token, pid, tiles, b.live).await?;
    let row = |what: &str, w: &mut Window, n: usize| {
        let (p50, p99) = (percentile(&mut w.ages, 0.5), percentile(&mut w.ages, 0.99));
        println!(
            "{what:<34} tiles {n:>3}  tokio {:>5.1}% core  media {:>5.1}% core  snapshots {:>5} (failed {})  age p50 {:>5.0} ms p99 {:>5.0} ms",
            w.runtime_s * 100.0,
            w.media_s * 100.0,
            w.ages.len(),
            w.failed,
            p50,
            p99
        );
    };
    row("no wall (1 sample/camera/period)", &mut idle, b.cameras);
    row(
        &format!("wall {}×{} + {} live", b.screens, b.tiles, b.live),
        &mut wall,
        tiles + b.live,
    );
    let per = |x: f64, y: f64| (x - y) * 100.0 / (tiles + b.live - b.cameras).max(1) as f64;
    println!(
        "per added tile: tokio {:.2}% core, media {:.2}% core; MJPEG {:.0} kB/s per live tile",
        per(wall.runtime_s, idle.runtime_s),
        per(wall.media_s, idle.media_s),
        wall.mjpeg_bytes as f64 / 1024.0 / b.window_s as f64 / b.live.max(1) as f64
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
