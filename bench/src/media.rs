//! Media benchmark (BENCHMARKS.md, "Camera images through the API"): what the hop from an API
//! process to an `ioc video` worker costs, against the same fleet read in-process in the
//! same run. Snapshots: requests/s and latency p50/p99 with concurrent clients. Live view:
//! MJPEG frames/s delivered and process CPU for the same viewers, local and relayed.
//!
//! One process holds the fleet, the worker's media endpoint (`video::media::router` on a
//! loopback port, tickets checked as in `ioc video`) and both readers, so the relayed path's
//! CPU includes both ends of the hop; the fixture RTSP server runs as its own process.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use auth::{Authenticator, Claims, Role};
use bus::{Bus, MemoryBus};
use chrono::Utc;
use futures::StreamExt;
use model::{CameraState, LocalId, RegistryEntry};
use video::{Fleet, MediaSource, RemoteWorkers, VideoConfig};

use crate::cameras::{camera, fleet_config, usage, FixtureServer};

pub struct MediaBench {
    pub ioc: String,
    pub cameras: usize,
    pub requests: usize,
    pub clients: usize,
    pub viewers: usize,
    pub window_s: u64,
}

fn who() -> Claims {
    Claims {
        sub: "bench".into(),
        role: Role::Operator,
        agency: None,
        grants: Vec::new(),
        stations: vec![],
        iat: 0,
        exp: 0,
    }
}

fn id(i: usize) -> LocalId {
    LocalId::parse("id", &format!("bench-{i:04}")).expect("valid id")
}

/// (requests/s, p50 ms, p99 ms, mean JPEG bytes) of `requests` snapshots over `clients`.
async fn snapshots(
    media: &Arc<dyn MediaSource>,
    cameras: usize,
    requests: usize,
    clients: usize,
) -> anyhow::Result<(f64, f64, f64, f64)> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let media = media.clone();
        let mine = (c..requests).step_by(clients).collect::<Vec<_>>();
        tasks.push(tokio::spawn(async move {
            let who = who();
            let mut out = Vec::with_capacity(mine.len());
            for r in mine {
                let t0 = Instant::now();
                let s = media
                    .snapshot(&id(r % cameras), &who)
                    .await
                    .map_err(|e| anyhow::anyhow!("snapshot: {}", e.body()))?;
                out.push((t0.elapsed().as_secs_f64() * 1000.0, s.jpeg.len()));
            }
            anyhow::Ok(out)
        }));
    }
    let mut lat = Vec::new();
    let mut bytes = 0usize;
    for t in tasks {
        for (ms, b) in t.await?? {
            lat.push(ms);
            bytes += b;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    lat.sort_by(|a, b| a.total_cmp(b));
    Ok((
        lat.len() as f64 / secs,
        crate::percentile(&lat, 0.5),
        crate::percentile(&lat, 0.99),
        bytes as f64 / lat.len().max(1) as f64,
    ))
}

/// (frames/s delivered in all, CPU share of a core) for `viewers` MJPEG views over `window`.
async fn live(
    media: &Arc<dyn MediaSource>,
    cameras: usize,
    viewers: usize,
    window: Duration,
) -> anyhow::Result<(f64, f64)> {
    let me = std::process::id();
    // Every view is read from its start; frames count only inside the window, which opens
    // once every view has had 2 s to deliver its first frame.
    let start = Instant::now() + Duration::from_secs(2);
    let end = start + window;
    let mut tasks = Vec::new();
    for v in 0..viewers {
        let mut s = media
            .live(&id(v % cameras), &who())
            .await
            .map_err(|e| anyhow::anyhow!("live view: {}", e.body()))?;
        tasks.push(tokio::spawn(async move {
            let mut frames = 0u64;
            while let Ok(Some(part)) = tokio::time::timeout_at(end.into(), s.next()).await {
                let frame = part.is_ok_and(|b| b.windows(7).any(|w| w == b"--frame"));
                if frame && Instant::now() >= start {
                    frames += 1;
                }
            }
            frames
        }));
    }
    tokio::time::sleep_until(start.into()).await;
    let (cpu0, _) = usage(me).context("/proc/self")?;
    let mut frames = 0;
    for t in tasks {
        frames += t.await?;
    }
    let (cpu1, _) = usage(me).context("/proc/self")?;
    let secs = window.as_secs_f64();
    Ok((frames as f64 / secs, (cpu1 - cpu0) / secs))
}

pub async fn run(b: MediaBench) -> anyhow::Result<()> {
    let server = FixtureServer::start(&b.ioc, b.cameras, 15)?;
    let bus: Arc<dyn Bus> = Arc::new(MemoryBus::with_retention(1_000_000));
    let config = fleet_config(VideoConfig {
        snapshot_every_s: 2.0,
        max_viewers: b.viewers.max(4),
        // The relay is measured with every camera watched: the worker's cap on cameras
        // decoded live (video.max_live_cameras) is lifted to the camera count.
        max_live_cameras: b.cameras.max(16),
        ..Default::default()
    });
    let now = Utc::now();
    for i in 0..b.cameras {
        let env = RegistryEntry::Camera(camera(i, &server.base)).upsert_event("bench", now);
        bus.publish("registry", env.entity.as_str(), Some(env.to_bytes()))
            .await?;
    }
    let fleet = Fleet::new(config.clone(), bus.clone(), "cameras".into(), "video:bench")?;
    tokio::spawn(fleet.clone().follow(bus.clone(), "registry".into()));
    let deadline = Instant::now() + Duration::from_secs(60);
    while (0..b.cameras).any(|i| {
        !fleet
            .status(&id(i))
            .is_some_and(|s| s.state == CameraState::Online)
            || fleet.snapshot(&id(i)).is_err()
    }) {
        anyhow::ensure!(
            Instant::now() < deadline,
            "cameras not all online with a snapshot after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The worker's media endpoint on loopback, as `ioc video` serves it.
    let auth = Arc::new(Authenticator::new(&[42u8; 32])?);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let router = video::media::router(fleet.clone(), auth.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let local: Arc<dyn MediaSource> = fleet.clone();
    let remote: Arc<dyn MediaSource> = Arc::new(RemoteWorkers::new(
        &[format!("http://{addr}")],
        config.max_viewers,
        auth,
    )?);

    // Warm both paths (connection pool, page cache) before measuring.
    snapshots(&local, b.cameras, 200, b.clients).await?;
    snapshots(&remote, b.cameras, 200, b.clients).await?;
    for (name, media) in [("local", &local), ("via worker", &remote)] {
        let (rps, p50, p99, bytes) = snapshots(media, b.cameras, b.requests, b.clients).await?;
        println!(
            "snapshots {name}: {n} requests, {c} clients, {cams} cameras: {rps:.0} req/s, p50 {p50:.2} ms, p99 {p99:.2} ms, {kb:.1} KiB per JPEG",
            n = b.requests,
            c = b.clients,
            cams = b.cameras,
            kb = bytes / 1024.0,
        );
    }
    let window = Duration::from_secs(b.window_s);
    for (name, media) in [("local", &local), ("via worker", &remote)] {
        let (fps, cpu) = live(media, b.cameras, b.viewers, window).await?;
        println!(
            "live MJPEG {name}: {v} viewers over {w} s: {fps:.1} frames/s delivered ({per:.2} per viewer), process CPU {cpu:.1}% of a core",
            v = b.viewers,
            w = b.window_s,
            per = fps / b.viewers.max(1) as f64,
            cpu = cpu * 100.0,
        );
        // Let the views close and the decoders stop before the next run.
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    fleet.shutdown();
    drop(server);
    Ok(())
}
