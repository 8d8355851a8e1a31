//! Camera benchmark (BENCHMARKS.md, "Cameras"): how many cameras one worker process keeps
//! online with a snapshot every 10 s, its CPU and memory per camera, against `gst-launch-1.0
//! rtspsrc ! fakesink` per camera in the same run; and the time from a camera stopping to the
//! worker's offline event (p50/p99).
//!
//! The fixture RTSP server runs as its own process (`ioc rtsp-fixture`) so that its CPU is
//! not counted as the workers'; it is reported beside them. CPU comes from `/proc/<pid>/stat`
//! (user + system ticks over the measuring window), memory from `VmRSS`.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bus::{Bus, MemoryBus};
use chrono::Utc;
use model::camera::{RtspTransport, StreamSource};
use model::{Camera, CameraGroup, CameraPurpose, CameraState, GeoPoint, LocalId, RegistryEntry};
use video::{Credential, Fleet, VideoConfig};

const USER: &str = "bench";
const PASSWORD: &str = "bench-camera-password";

/// CPU seconds (user + system) and RSS bytes of a process.
pub(crate) fn usage(pid: u32) -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    // USER_HZ is 100 on Linux.
    Some((ticks / 100.0, rss_kb * 1024))
}

fn total(pids: &[u32]) -> (f64, u64) {
    pids.iter()
        .filter_map(|p| usage(*p))
        .fold((0.0, 0), |(c, r), (c2, r2)| (c + c2, r + r2))
}

pub(crate) struct FixtureServer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    pub(crate) base: String,
}

impl FixtureServer {
    pub(crate) fn start(ioc: &str, cameras: usize, fps: u32) -> anyhow::Result<Self> {
        let mut child = Command::new(ioc)
            .args(["rtsp-fixture", "--port", "0", "--prefix", "bench"])
            .args(["--cameras", &cameras.to_string(), "--fps", &fps.to_string()])
            .args(["--user", USER])
            .env("IOC_RTSP_FIXTURE_PASSWORD", PASSWORD)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| {
                format!("starting `{ioc} rtsp-fixture` (build it: cargo build --release -p ioc)")
            })?;
        let stdin = child.stdin.take().context("stdin")?;
        let mut stdout = BufReader::new(child.stdout.take().context("stdout")?);
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        let base = line
            .strip_prefix("ready ")
            .and_then(|l| l.split_whitespace().next())
            .with_context(|| format!("the fixture server said {line:?}"))?
            .to_string();
        Ok(Self {
            child,
            stdin,
            stdout,
            base,
        })
    }

    fn command(&mut self, cmd: &str) -> anyhow::Result<()> {
        writeln!(self.stdin, "{cmd}")?;
        self.stdin.flush()?;
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        if line.trim() != "ok" {
            bail!("fixture server: {cmd}: {line}");
        }
        Ok(())
    }
}

impl Drop for FixtureServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `config` with the fixture server's credentials, which every bench camera names.
pub(crate) fn fleet_config(mut config: VideoConfig) -> VideoConfig {
    config.credentials.insert(
        "bench".into(),
        Credential {
            user: USER.into(),
            password: PASSWORD.into(),
        },
    );
    config
}

pub(crate) fn camera(i: usize, base: &str) -> Camera {
    let name = format!("bench-{i:04}");
    Camera {
        id: LocalId::parse("id", &name).expect("valid id"),
        name: name.clone(),
        position: GeoPoint::new(105.47, 9.78).expect("valid point"),
        agency: None,
        purpose: CameraPurpose::Traffic,
        group: CameraGroup::Traffic,
        stream: StreamSource {
            url: format!("{base}/{name}"),
            transport: RtspTransport::Tcp,
            credentials: Some("bench".into()),
        },
    }
}

fn counts(fleet: &Fleet, n: usize, fresh_within: Duration) -> (usize, usize) {
    let now = Utc::now();
    let mut online = 0;
    let mut fresh = 0;
    for i in 0..n {
        let id = LocalId::parse("id", &format!("bench-{i:04}")).expect("valid id");
        if fleet
            .status(&id)
            .is_some_and(|s| s.state == CameraState::Online)
        {
            online += 1;
        }
        if let Ok(s) = fleet.snapshot(&id) {
            if (now - s.captured).to_std().unwrap_or_default() <= fresh_within {
                fresh += 1;
            }
        }
    }
    (online, fresh)
}

pub struct CameraBench {
    pub ioc: String,
    pub cameras: Vec<usize>,
    pub window_s: u64,
    pub snapshot_every_s: f64,
    pub fps: u32,
    pub stops: usize,
}

pub async fn run(b: CameraBench) -> anyhow::Result<()> {
    let me = std::process::id();
    for &n in &b.cameras {
        let mut server = FixtureServer::start(&b.ioc, n, b.fps)?;
        tokio::time::sleep(Duration::from_millis(500)).await;

        // --- Ours: one worker process (this one) running n cameras.
        let bus: Arc<dyn Bus> = Arc::new(MemoryBus::with_retention(1_000_000));
        let config = fleet_config(VideoConfig {
            snapshot_every_s: b.snapshot_every_s,
            ..Default::default()
        });
        let (_, rss_before) = usage(me).context("/proc/self")?;
        let now = Utc::now();
        for i in 0..n {
            let env = RegistryEntry::Camera(camera(i, &server.base)).upsert_event("bench", now);
            bus.publish("registry", env.entity.as_str(), Some(env.to_bytes()))
                .await?;
        }
        let fleet = Fleet::new(config, bus.clone(), "cameras".into(), "video:bench")?;
        tokio::spawn(fleet.clone().follow(bus.clone(), "registry".into()));
        let started = Instant::now();
        let deadline = started + Duration::from_secs(60 + n as u64 / 5);
        loop {
            let (online, _) = counts(&fleet, n, Duration::ZERO);
            if online == n {
                break;
            }
            if Instant::now() > deadline {
                eprintln!(
                    "cameras={n}: only {online} online after {:?}",
                    started.elapsed()
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let all_online = started.elapsed();
        // Settle one snapshot period, then measure.
        tokio::time::sleep(Duration::from_secs_f64(b.snapshot_every_s)).await;
        let (cpu0, _) = usage(me).context("/proc/self")?;
        let server_pid = server.child.id();
        let (scpu0, _) = usage(server_pid).unwrap_or_default();
        let mut min_online = n;
        let window_end = Instant::now() + Duration::from_secs(b.window_s);
        while Instant::now() < window_end {
            tokio::time::sleep(Duration::from_secs(1)).await;
            min_online = min_online.min(counts(&fleet, n, Duration::ZERO).0);
        }
        let (cpu1, rss) = usage(me).context("/proc/self")?;
        let (scpu1, srss) = usage(server_pid).unwrap_or_default();
        let fresh_within = Duration::from_secs_f64(b.snapshot_every_s * 2.0 + 1.0);
        let (online_end, fresh) = counts(&fleet, n, fresh_within);
        let ours_cpu = (cpu1 - cpu0) / b.window_s as f64;
        let ours_rss = rss.saturating_sub(rss_before);

        // --- Stop -> offline latency over `stops` cameras.
        let mut lat = Vec::new();
        for i in 0..b.stops.min(n) {
            let name = format!("bench-{i:04}");
            let id = LocalId::parse("id", &name)?;
            server.command(&format!("stop {name}"))?;
            let t0 = Instant::now();
            loop {
                if fleet
                    .status(&id)
                    .is_some_and(|s| s.state == CameraState::Offline)
                {
                    lat.push(t0.elapsed().as_secs_f64() * 1000.0);
                    break;
                }
                if t0.elapsed() > Duration::from_secs(30) {
                    eprintln!("{name}: not offline 30 s after stopping");
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            server.command(&format!("resume {name}"))?;
        }
        fleet.shutdown();
        drop(fleet);
        tokio::time::sleep(Duration::from_secs(3)).await;

        // --- Baseline: one `gst-launch-1.0 rtspsrc ! fakesink` process per camera.
        let mut children: Vec<Child> = Vec::new();
        for i in 0..n {
            let url = format!("{}/bench-{i:04}", server.base);
            let c = Command::new("gst-launch-1.0")
                .args(["-q", "rtspsrc", &format!("location={url}"), "protocols=tcp"])
                .arg(format!("user-id={USER}"))
                .arg(format!("user-pw={PASSWORD}"))
                .args(["!", "fakesink", "sync=false"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("gst-launch-1.0 (gstreamer1.0-tools)")?;
            children.push(c);
        }
        tokio::time::sleep(Duration::from_secs(5 + n as u64 / 20)).await;
        let pids: Vec<u32> = children.iter().map(|c| c.id()).collect();
        let (bcpu0, _) = total(&pids);
        let (scpu_b0, _) = usage(server_pid).unwrap_or_default();
        tokio::time::sleep(Duration::from_secs(b.window_s)).await;
        let (bcpu1, brss) = total(&pids);
        let (scpu_b1, _) = usage(server_pid).unwrap_or_default();
        let mut alive = 0;
        for c in children.iter_mut() {
            if matches!(c.try_wait(), Ok(None)) {
                alive += 1;
            }
        }
        for mut c in children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let base_cpu = (bcpu1 - bcpu0) / b.window_s as f64;

        lat.sort_by(|a, b| a.total_cmp(b));
        let pct = |q: f64| crate::percentile(&lat, q);
        println!(
            "cameras={n} fps={fps} snapshot_every={snap}s window={w}s: ours {online_end}/{n} online (min {min_online}, all online after {all:.1} s), {fresh} fresh snapshots, CPU {oc:.1}% of a core ({opc:.2}% per camera), RSS +{orss:.0} MiB ({opm:.2} MiB per camera); baseline gst-launch rtspsrc ! fakesink: {alive}/{n} running, CPU {bc:.1}% ({bpc:.2}% per camera), RSS {brss:.0} MiB ({bpm:.2} MiB per camera); fixture server CPU {sc:.1}% (ours) / {sb:.1}% (baseline), RSS {srss:.0} MiB; stop -> offline over {k} stops: p50 {p50:.0} ms, p99 {p99:.0} ms, max {max:.0} ms",
            fps = b.fps,
            snap = b.snapshot_every_s,
            w = b.window_s,
            all = all_online.as_secs_f64(),
            oc = ours_cpu * 100.0,
            opc = ours_cpu * 100.0 / n as f64,
            orss = ours_rss as f64 / 1048576.0,
            opm = ours_rss as f64 / 1048576.0 / n as f64,
            bc = base_cpu * 100.0,
            bpc = base_cpu * 100.0 / n as f64,
            brss = brss as f64 / 1048576.0,
            bpm = brss as f64 / 1048576.0 / n as f64,
            sc = (scpu1 - scpu0) / b.window_s as f64 * 100.0,
            sb = (scpu_b1 - scpu_b0) / b.window_s as f64 * 100.0,
            srss = srss as f64 / 1048576.0,
            k = lat.len(),
            p50 = pct(0.5),
            p99 = pct(0.99),
            max = lat.last().copied().unwrap_or(f64::NAN),
        );
    }
    Ok(())
}
