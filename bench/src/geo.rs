//! `ioc-bench geo`: geo queries against the replica holding many point entities, in-process
//! and through `GET /api/v1/layers/{layer}/features`, with Redis's `GEOSEARCH` on the same
//! points and the same boxes and discs as the peer in the same run.
//!
//! Points are spread uniformly over a province-sized box; each query is a random
//! district-sized box (`bbox=`, `limit=100`) or a disc (`near=`, nearest first, `limit=100`).
//! Memory per entity is the growth of this process's resident set while the replica is
//! filled, divided by the entities.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use model::spatial::Near;
use model::{Layer, StateRecord};
use rand::{Rng, SeedableRng};
use replica::{Query, Replica};

use crate::percentile;

/// Roughly Hậu Giang and its neighbours.
const PROVINCE: [f64; 4] = [105.2, 9.4, 106.2, 10.2];
/// A district: about 11 km × 11 km.
const DISTRICT_DEG: f64 = 0.1;
const NEAR_RADIUS_M: f64 = 3_000.0;
const LIMIT: usize = 100;

pub struct GeoBench {
    pub entities: usize,
    pub queries: usize,
    /// `host:port` of a Redis server (the peer).
    pub redis: String,
}

fn rss_kib() -> anyhow::Result<u64> {
    crate::rss_kib(std::process::id())
}

fn point(i: usize, lon: f64, lat: f64) -> anyhow::Result<StateRecord> {
    crate::point_record(&format!("p{i}"), lon, lat, &[("kind", "salinity".into())])
}

fn random_box(rng: &mut impl Rng) -> [f64; 4] {
    let w = rng.random_range(PROVINCE[0]..PROVINCE[2] - DISTRICT_DEG);
    let s = rng.random_range(PROVINCE[1]..PROVINCE[3] - DISTRICT_DEG);
    [w, s, w + DISTRICT_DEG, s + DISTRICT_DEG]
}

fn random_centre(rng: &mut impl Rng) -> (f64, f64) {
    (
        rng.random_range(PROVINCE[0]..PROVINCE[2]),
        rng.random_range(PROVINCE[1]..PROVINCE[3]),
    )
}

fn summary(name: &str, mut us: Vec<f64>, returned: usize) {
    us.sort_by(|a, b| a.total_cmp(b));
    println!(
        "{name:<34} p50 {:>8.1} µs  p99 {:>8.1} µs  {:>6.1} results/query",
        percentile(&us, 0.5),
        percentile(&us, 0.99),
        returned as f64 / us.len().max(1) as f64
    );
}

/// A minimal RESP client: one command, the reply's top-level element count (arrays) or
/// value (integers, simple strings). Enough for GEOADD and GEOSEARCH; errors are errors.
struct Resp {
    w: TcpStream,
    r: BufReader<TcpStream>,
}

enum Reply {
    Count(usize),
    Int(i64),
    Ok,
}

impl Resp {
    fn connect(addr: &str) -> anyhow::Result<Self> {
        let w = TcpStream::connect(addr).with_context(|| format!("redis at {addr}"))?;
        w.set_nodelay(true)?;
        let r = BufReader::new(w.try_clone()?);
        Ok(Self { w, r })
    }

    fn send(&mut self, args: &[String]) -> anyhow::Result<()> {
        let mut out = format!("*{}\r\n", args.len());
        for a in args {
            out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        self.w.write_all(out.as_bytes())?;
        Ok(())
    }

    fn line(&mut self) -> anyhow::Result<String> {
        let mut l = String::new();
        self.r.read_line(&mut l)?;
        Ok(l.trim_end().to_string())
    }

    /// Reads one reply, skipping nested content.
    fn reply(&mut self) -> anyhow::Result<Reply> {
        let l = self.line()?;
        let (tag, rest) = l.split_at(l.len().min(1));
        Ok(match tag {
            "+" => Reply::Ok,
            ":" => Reply::Int(rest.parse()?),
            "-" => bail!("redis: {rest}"),
            "$" => {
                let n: i64 = rest.parse()?;
                if n >= 0 {
                    let mut buf = vec![0u8; n as usize + 2];
                    std::io::Read::read_exact(&mut self.r, &mut buf)?;
                }
                Reply::Count(1)
            }
            "*" => {
                let n: i64 = rest.parse()?;
                for _ in 0..n.max(0) {
                    self.reply()?;
                }
                Reply::Count(n.max(0) as usize)
            }
            other => bail!("redis: unexpected reply {other:?}"),
        })
    }

    fn call(&mut self, args: &[String]) -> anyhow::Result<Reply> {
        self.send(args)?;
        self.reply()
    }
}

fn geosearch(key: &str, from: [&str; 2], by: &[&str]) -> Vec<String> {
    ["GEOSEARCH", key, "FROMLONLAT", from[0], from[1]]
        .iter()
        .chain(by)
        .map(|s| s.to_string())
        .collect()
}

pub async fn run(b: GeoBench) -> anyhow::Result<()> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(16);
    let points: Vec<(f64, f64)> = (0..b.entities).map(|_| random_centre(&mut rng)).collect();

    // The replica, filled as the state topic fills it.
    let before = rss_kib()?;
    let replica = Replica::new(replica::DEFAULT_RECENT);
    let t = Instant::now();
    for (i, (lon, lat)) in points.iter().enumerate() {
        let r = point(i, *lon, *lat)?;
        replica.apply(r.entity.clone(), Some(r));
    }
    replica.set_ready();
    let after = rss_kib()?;
    println!(
        "replica: {} entities applied in {:.1} s; resident set +{:.0} MiB, {:.0} bytes per entity",
        b.entities,
        t.elapsed().as_secs_f64(),
        (after.saturating_sub(before)) as f64 / 1024.0,
        (after.saturating_sub(before)) as f64 * 1024.0 / b.entities as f64
    );

    let boxes: Vec<[f64; 4]> = (0..b.queries).map(|_| random_box(&mut rng)).collect();
    let centres: Vec<(f64, f64)> = (0..b.queries).map(|_| random_centre(&mut rng)).collect();
    let layers: BTreeSet<Layer> = [Layer::Salinity].into_iter().collect();

    // In-process.
    let mut us = Vec::new();
    let mut n = 0;
    for bx in &boxes {
        let q = Query {
            layers: layers.clone(),
            bbox: Some(*bx),
            ..Default::default()
        };
        let t = Instant::now();
        let (_, hits) = replica.hits(&q, LIMIT);
        us.push(t.elapsed().as_secs_f64() * 1e6);
        n += hits.len();
    }
    summary("replica, bbox, in-process", us, n);
    let mut us = Vec::new();
    let mut n = 0;
    for (lon, lat) in &centres {
        let q = Query {
            layers: layers.clone(),
            near: Some(Near::new(*lon, *lat, NEAR_RADIUS_M)?),
            ..Default::default()
        };
        let t = Instant::now();
        let (_, hits) = replica.hits(&q, LIMIT);
        us.push(t.elapsed().as_secs_f64() * 1e6);
        n += hits.len();
    }
    summary("replica, near 3 km, in-process", us, n);

    // Through the API, on loopback, one client at a time.
    let auth = Arc::new(auth::Authenticator::new(&[7u8; 32])?);
    let state = map_api::ApiState {
        replica: replica.clone(),
        auth: auth.clone(),
        bus: Arc::new(bus::MemoryBus::with_retention(1_000)),
        checks: Vec::new(),
        metrics: Arc::new(String::new),
        mode: "memory".into(),
        history: None,
        alerts_topic: "alerts".into(),
        registry_topic: "registry".into(),
        reports_topic: "reports".into(),
        indicators_topic: "indicators".into(),
        intake: None,
        report_locks: Default::default(),
        cameras: None,
        hls_sessions: Default::default(),
        media_ticket_ttl: chrono::Duration::seconds(30),
        public_url: "http://127.0.0.1".into(),
        limits: Arc::new(auth::limits::SharedLimiter::new(&Default::default())),
        used_tickets: Default::default(),
        auditor: Arc::new(audit::Auditor::new(None, &Default::default())?),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, map_api::router(state)).await });
    let token = auth.issue(
        "bench",
        auth::Role::Operator,
        None,
        chrono::Duration::hours(1),
    );
    let client = reqwest::Client::new();
    for (name, urls) in [
        (
            "api, bbox, HTTP",
            boxes
                .iter()
                .map(|b| format!("bbox={},{},{},{}", b[0], b[1], b[2], b[3]))
                .collect::<Vec<_>>(),
        ),
        (
            "api, near 3 km, HTTP",
            centres
                .iter()
                .map(|(lon, lat)| format!("near={lon},{lat},{NEAR_RADIUS_M}"))
                .collect(),
        ),
    ] {
        let mut us = Vec::new();
        let mut n = 0;
        for q in &urls {
            let url = format!("http://{addr}/api/v1/layers/salinity/features?{q}&limit={LIMIT}");
            let t = Instant::now();
            let resp = client.get(&url).bearer_auth(&token).send().await?;
            if !resp.status().is_success() {
                bail!("{url}: {}", resp.status());
            }
            let body: serde_json::Value = resp.json().await?;
            us.push(t.elapsed().as_secs_f64() * 1e6);
            n += body["features"].as_array().map_or(0, Vec::len);
        }
        summary(name, us, n);
    }

    // The peer: Redis GEOSEARCH on the same points, boxes and discs.
    let mut redis = Resp::connect(&b.redis)?;
    let key = format!("ioc-bench-geo-{}", std::process::id());
    let t = Instant::now();
    for chunk in points.chunks(10_000).enumerate() {
        let (c, pts) = chunk;
        let mut args = vec!["GEOADD".to_string(), key.clone()];
        for (j, (lon, lat)) in pts.iter().enumerate() {
            args.push(lon.to_string());
            args.push(lat.to_string());
            args.push(format!("station:p{}", c * 10_000 + j));
        }
        match redis.call(&args)? {
            Reply::Int(_) => {}
            _ => bail!("GEOADD: unexpected reply"),
        }
    }
    let used = {
        redis.send(&[
            "MEMORY".into(),
            "USAGE".into(),
            key.clone(),
            "SAMPLES".into(),
            "0".into(),
        ])?;
        match redis.reply()? {
            Reply::Int(n) => n,
            _ => 0,
        }
    };
    println!(
        "redis: {} members added in {:.1} s; MEMORY USAGE {:.0} MiB, {:.0} bytes per member",
        b.entities,
        t.elapsed().as_secs_f64(),
        used as f64 / 1_048_576.0,
        used as f64 / b.entities as f64
    );
    let bybox: Vec<Vec<String>> = boxes
        .iter()
        .map(|bx| {
            let (cx, cy) = ((bx[0] + bx[2]) / 2.0, (bx[1] + bx[3]) / 2.0);
            // BYBOX takes a width and height in metres around the centre: the box's extent.
            let w = model::spatial::distance_m(cy, bx[0], cy, bx[2]);
            let h = model::spatial::distance_m(bx[1], cx, bx[3], cx);
            let (cx, cy, w, h) = (cx.to_string(), cy.to_string(), w.to_string(), h.to_string());
            geosearch(&key, [&cx, &cy], &["BYBOX", &w, &h, "m", "COUNT", "100"])
        })
        .collect();
    let byradius: Vec<Vec<String>> = centres
        .iter()
        .map(|(lon, lat)| {
            let (lon, lat, r) = (lon.to_string(), lat.to_string(), NEAR_RADIUS_M.to_string());
            geosearch(
                &key,
                [&lon, &lat],
                &["BYRADIUS", &r, "m", "ASC", "COUNT", "100", "WITHDIST"],
            )
        })
        .collect();
    for (name, commands) in [
        ("redis GEOSEARCH BYBOX COUNT 100", bybox),
        ("redis GEOSEARCH BYRADIUS ASC 100", byradius),
    ] {
        let mut us = Vec::new();
        let mut n = 0;
        for args in &commands {
            let t = Instant::now();
            let reply = redis.call(args)?;
            us.push(t.elapsed().as_secs_f64() * 1e6);
            if let Reply::Count(c) = reply {
                n += c;
            }
        }
        summary(name, us, n);
    }
    redis.call(&["DEL".into(), key])?;
    Ok(())
}
