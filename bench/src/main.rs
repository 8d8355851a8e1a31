//! `ioc-bench`: the figures in BENCHMARKS.md. Each subcommand prints one result line.
//!
//! - `pipeline`: readings/s through ingest -> bus -> stream-core -> ioc.state -> replica, on
//!   the in-memory bus or on Kafka;
//! - `baseline`: the same number of same-sized messages through the same Kafka broker with a
//!   bare rdkafka producer and consumer (the limit the pipeline is compared with);
//! - `latency`: MQTT publish -> websocket delta latency at a fixed reading rate;
//! - `history-write`, `history-query`: the history store (see `history.rs`);
//! - `cold-start`: `ioc api` and `ioc core` start to ready over a big state topic, against a bare consumer;
//! - `fanout`: websocket clients on district bboxes, against a bare tokio-tungstenite broadcast;
//! - `geo`: bbox and near queries on a million points, replica and API, against Redis GEOSEARCH;
//! - `reports`: Open311 report creation against a running server (see `reports.rs`);
//! - `cameras`: camera workers against `gst-launch-1.0 rtspsrc ! fakesink` (see `cameras.rs`).

mod abuse;
mod cameras;
mod coldstart;
mod fanout;
mod geo;
mod history;
mod indicators;
mod media;
mod reports;
mod wall;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bus::{Bus, KafkaBus, KafkaConfig, MemoryBus, Topics};
use chrono::Utc;
use clap::{Parser, Subcommand};
use futures::{SinkExt, StreamExt};
use ingest::{RegistryView, SensorIngest};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use replica::Replica;
use serde_json::{json, Value};

#[derive(Parser)]
#[command(name = "ioc-bench", about = "IOC benchmarks (see BENCHMARKS.md)")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

/// The upgrade request of a websocket to `url` with `token` in its header (a token is never
/// taken from a URL).
pub(crate) fn ws_request(
    url: &str,
    token: &str,
) -> anyhow::Result<tokio_tungstenite::tungstenite::handshake::client::Request> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = url.into_client_request()?;
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    Ok(req)
}

#[derive(Subcommand)]
enum Cmd {
    /// Readings/s end to end through ingest, bus, stream-core and a replica.
    Pipeline {
        /// `memory` or a Kafka bootstrap address.
        #[arg(long, default_value = "memory")]
        bus: String,
        #[arg(long, default_value_t = 1000)]
        stations: usize,
        #[arg(long, default_value_t = 200_000)]
        readings: u64,
        /// Readings per ingest call (an HTTP batch or an MQTT message).
        #[arg(long, default_value_t = 500)]
        batch: usize,
        /// Alert rules in stream-core: `on` or `off`.
        #[arg(long, default_value = "on", value_parser = ["on", "off"])]
        rules: String,
    },
    /// Bare rdkafka producer + consumer moving `messages` messages of `bytes` bytes.
    Baseline {
        #[arg(long)]
        brokers: String,
        #[arg(long, default_value_t = 200_000)]
        messages: u64,
        #[arg(long, default_value_t = 330)]
        bytes: usize,
        #[arg(long, default_value_t = 1000)]
        keys: usize,
    },
    /// MQTT -> websocket latency at `rate` readings/s for `seconds`.
    Latency {
        #[arg(long)]
        brokers: String,
        /// MQTT broker host:port.
        #[arg(long)]
        mqtt: String,
        #[arg(long, default_value_t = 1000.0)]
        rate: f64,
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        #[arg(long, default_value_t = 1000)]
        stations: usize,
        /// Readings per MQTT message.
        #[arg(long, default_value_t = 10)]
        per_message: usize,
    },
    /// History writer rows/s vs `psql \copy` of the same rows (PostgreSQL `--admin-url`
    /// whose user may create databases).
    HistoryWrite {
        /// A plain PostgreSQL server whose user may create databases.
        #[arg(long)]
        admin_url: String,
        /// A PostgreSQL preloading TimescaleDB: the same run on the TimescaleDB layout.
        #[arg(long)]
        timescale_url: Option<String>,
        #[arg(long, default_value_t = 1_000_000)]
        rows: usize,
        #[arg(long, default_value_t = 5000)]
        batch: usize,
        #[arg(long, default_value_t = 100)]
        stations: usize,
    },
    /// Start to `/readyz` ready for `ioc api` and a restarting `ioc core` over a state topic
    /// of many entities, against a bare rdkafka consumer reading it to its end.
    ColdStart {
        #[arg(long, default_value = "127.0.0.1:19092")]
        brokers: String,
        #[arg(long, default_value_t = 1_000_000)]
        entities: usize,
        #[arg(long, default_value = "target/release/ioc")]
        ioc: String,
    },
    /// Websocket fan-out: N clients on district bboxes while the state changes `rate`
    /// entities/s; against a bare tokio-tungstenite broadcast with `--server bare`.
    Fanout {
        /// Client counts, one run each (e.g. 1000,5000,10000).
        #[arg(long, value_delimiter = ',', default_value = "1000")]
        clients: Vec<usize>,
        #[arg(long, default_value_t = 2000)]
        rate: usize,
        #[arg(long, default_value_t = 20_000)]
        entities: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Share of clients that never read.
        #[arg(long, default_value_t = 0.0)]
        silent: f64,
        #[arg(long, value_enum, default_value = "ioc")]
        server: fanout::Server,
    },
    /// The server side of `fanout` (run by it as a child process).
    #[command(hide = true)]
    FanoutServer {
        #[arg(long, value_enum)]
        server: fanout::Server,
        #[arg(long)]
        port: u16,
        #[arg(long)]
        entities: usize,
        #[arg(long)]
        rate: usize,
    },
    /// Geo queries on many point entities: the replica in-process and through the layers
    /// API (bbox and near), against Redis GEOSEARCH on the same points in the same run.
    Geo {
        #[arg(long, default_value_t = 1_000_000)]
        entities: usize,
        #[arg(long, default_value_t = 2_000)]
        queries: usize,
        /// `host:port` of the Redis server that is the peer.
        #[arg(long, default_value = "127.0.0.1:6379")]
        redis: String,
    },
    /// Indicator values/s through a running server's intake to a leader's websocket, and
    /// the dashboard's p50/p99 over that history against `GET /api/v1/layers`.
    Indicators {
        /// Base URL of `ioc demo` or `ioc serve`.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// An operator token (writes for every unit).
        #[arg(long)]
        operator: String,
        /// A leader token (reads).
        #[arg(long)]
        leader: String,
        /// Periods of history per indicator and unit.
        #[arg(long, default_value_t = 24)]
        periods: usize,
        #[arg(long, default_value_t = 1000)]
        batch: usize,
        #[arg(long, default_value_t = 500)]
        requests: usize,
    },
    /// Reports created/s through a running server's Open311 endpoint (with routing), p50/p99,
    /// against `GET services.json` on the same server as the peer.
    Reports {
        /// Base URL of `ioc demo` or `ioc serve`.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// A citizen (or operator) token: `ioc token --role citizen --subject bench`.
        #[arg(long, env = "IOC_BENCH_TOKEN")]
        token: String,
        #[arg(long, default_value_t = 16)]
        clients: usize,
        #[arg(long, default_value_t = 5000)]
        requests: usize,
    },
    /// Cameras one worker keeps online with snapshots, CPU and memory per camera, against
    /// `gst-launch-1.0 rtspsrc ! fakesink` per camera; stop -> offline latency.
    Cameras {
        /// The `ioc` binary (for `ioc rtsp-fixture`).
        #[arg(long, default_value = "target/release/ioc")]
        ioc: String,
        /// Camera counts to try, e.g. 50,100,200.
        #[arg(long, value_delimiter = ',', default_value = "50")]
        cameras: Vec<usize>,
        #[arg(long, default_value_t = 30)]
        window: u64,
        #[arg(long, default_value_t = 10.0)]
        snapshot_every: f64,
        #[arg(long, default_value_t = 15)]
        fps: u32,
        /// Cameras stopped one by one to time the offline event.
        #[arg(long, default_value_t = 50)]
        stops: usize,
    },
    /// Camera images through an `ioc video` worker's media endpoint against the same fleet
    /// read in-process: snapshot req/s and p50/p99, MJPEG frames/s and CPU.
    Media {
        /// The `ioc` binary (for `ioc rtsp-fixture`).
        #[arg(long, default_value = "target/release/ioc")]
        ioc: String,
        #[arg(long, default_value_t = 20)]
        cameras: usize,
        #[arg(long, default_value_t = 20_000)]
        requests: usize,
        #[arg(long, default_value_t = 16)]
        clients: usize,
        /// Live views open at once (spread over the cameras).
        #[arg(long, default_value_t = 20)]
        viewers: usize,
        #[arg(long, default_value_t = 20)]
        window: u64,
    },
    /// A video wall against one `ioc demo` (API and worker in one process): CPU per tile,
    /// split tokio / media threads, and snapshot freshness, against no wall in the same run.
    Wall {
        /// The `ioc` binary (for `ioc demo` and `ioc rtsp-fixture`).
        #[arg(long, default_value = "target/release/ioc")]
        ioc: String,
        #[arg(long, default_value_t = 16)]
        cameras: usize,
        #[arg(long, default_value_t = 4)]
        screens: usize,
        /// Snapshot tiles per screen.
        #[arg(long, default_value_t = 16)]
        tiles: usize,
        /// Live tiles on the whole wall.
        #[arg(long, default_value_t = 4)]
        live: usize,
        #[arg(long, default_value_t = 30)]
        window: u64,
        #[arg(long, default_value_t = 2.0)]
        snapshot_every: f64,
        #[arg(long, default_value_t = 15)]
        fps: u32,
    },
    /// RSS and `/healthz` latency of a running server under each abuse of the security
    /// review (form floods, unread websocket pings, slow and idle connections, a report
    /// flood), against the same figures idle.
    Abuse {
        /// Base URL of `ioc demo` or `ioc serve` (loopback).
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// The server's pid (its RSS is read from /proc).
        #[arg(long)]
        pid: u32,
        /// A citizen token (`ioc token --role citizen --sub bench`).
        #[arg(long)]
        citizen: String,
        /// An operator token, for the websocket.
        #[arg(long)]
        operator: String,
    },
    /// Series query latency from the 1-hour rollup and from raw rows.
    HistoryQuery {
        /// A plain PostgreSQL server whose user may create databases.
        #[arg(long)]
        admin_url: String,
        /// A PostgreSQL preloading TimescaleDB: the same run on the TimescaleDB layout.
        #[arg(long)]
        timescale_url: Option<String>,
        #[arg(long, default_value_t = 100)]
        stations: usize,
        #[arg(long, default_value_t = 30)]
        days: i64,
        #[arg(long, default_value_t = 200)]
        queries: usize,
    },
}

/// The resident set of process `pid`, KiB.
pub(crate) fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS")
}

/// A salinity station's state record at a point, with `extra` properties beside its name.
pub(crate) fn point_record(
    id: &str,
    lon: f64,
    lat: f64,
    extra: &[(&str, serde_json::Value)],
) -> anyhow::Result<model::StateRecord> {
    let mut properties = serde_json::Map::new();
    properties.insert("name".into(), format!("Trạm {id}").into());
    for (k, v) in extra {
        properties.insert((*k).into(), v.clone());
    }
    Ok(model::StateRecord {
        entity: model::EntityId::parse(&format!("station:{id}"))?,
        layer: model::Layer::Salinity,
        geometry: geojson::Geometry::new(geojson::Value::Point(vec![lon, lat])),
        bbox: [lon, lat, lon, lat],
        units: vec![model::LocalId::parse("unit", "hg")?],
        updated: None,
        properties,
        applied: Default::default(),
        core: serde_json::Value::Null,
    })
}

/// The `q` quantile of `sorted` (NaN when empty).
pub(crate) fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted
        .get(((sorted.len() as f64 * q) as usize).min(sorted.len().saturating_sub(1)))
        .copied()
        .unwrap_or(f64::NAN)
}

fn unique(p: &str) -> String {
    format!("{p}-{}", &uuid::Uuid::now_v7().simple().to_string()[20..])
}

fn prefixed_topics(prefix: &str) -> Topics {
    let d = Topics::default();
    let p = |t: &str| format!("{prefix}.{t}");
    Topics {
        readings: p(&d.readings),
        cameras: p(&d.cameras),
        reports: p(&d.reports),
        indicators: p(&d.indicators),
        registry: p(&d.registry),
        alerts: p(&d.alerts),
        state: p(&d.state),
        tallies: p(&d.tallies),
        deadletter: p(&d.deadletter),
    }
}

struct Pipeline {
    ingest: Arc<SensorIngest>,
    replica: Arc<Replica>,
    bus: Arc<dyn Bus>,
    topics: Topics,
}

/// Starts ingest (in-process accept path), stream-core and a replica on `bus`, with `n` load
/// stations registered.
async fn pipeline(bus: Arc<dyn Bus>, n: usize, rules: bool) -> anyhow::Result<Pipeline> {
    let topics = prefixed_topics(&unique("bench"));
    bus.ensure_topics(&topics.specs(6)).await?;
    let now = Utc::now();
    let stations = fixtures::load::stations(n);
    for chunk in stations.chunks(500) {
        let writes = chunk.iter().map(|s| {
            let env = model::RegistryEntry::Station(s.clone()).upsert_event("bench", now);
            let bus = bus.clone();
            let topic = topics.registry.clone();
            async move {
                bus.publish(&topic, env.entity.as_str(), Some(env.to_bytes()))
                    .await
            }
        });
        futures::future::try_join_all(writes).await?;
    }
    let status = Arc::new(stream_core::CoreStatus::default());
    let mut cfg = stream_core::CoreConfig {
        group: unique("bench-core"),
        ..Default::default()
    };
    cfg.rules.enabled = rules;
    tokio::spawn(stream_core::run(
        bus.clone(),
        topics.clone(),
        cfg,
        status.clone(),
        None,
        std::future::pending(),
    ));
    while !status.is_started() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let replica = Replica::new(replica::DEFAULT_RECENT);
    tokio::spawn(replica.clone().follow(bus.clone(), topics.state.clone()));
    let known = Arc::new(RegistryView::default());
    tokio::spawn(known.clone().follow(bus.clone(), topics.registry.clone()));
    while !replica.is_ready() || !known.is_ready() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ingest = Arc::new(SensorIngest::new(bus.clone(), topics.clone(), known));
    Ok(Pipeline {
        ingest,
        replica,
        bus,
        topics,
    })
}

/// Readings counted over every station in the replica.
fn counted(r: &Replica) -> u64 {
    let q = replica::Query {
        layers: [model::Layer::Salinity, model::Layer::AirQuality]
            .into_iter()
            .collect(),
        bbox: None,
        unit: None,
        cameras: Default::default(),
        sensitive: Default::default(),
        ..Default::default()
    };
    r.snapshot(&q, usize::MAX)
        .1
        .iter()
        .map(|f| {
            f.properties
                .get("readings")
                .and_then(Value::as_u64)
                .unwrap_or(0)
        })
        .sum()
}

fn kafka_bus(brokers: &str) -> anyhow::Result<Arc<dyn Bus>> {
    Ok(Arc::new(KafkaBus::connect(KafkaConfig {
        brokers: brokers.to_string(),
        client_id: unique("bench"),
        ..Default::default()
    })?))
}

async fn run_pipeline(
    bus_arg: &str,
    stations: usize,
    readings: u64,
    batch: usize,
    rules: bool,
) -> anyhow::Result<()> {
    let bus: Arc<dyn Bus> = if bus_arg == "memory" {
        Arc::new(MemoryBus::with_retention(readings as usize * 2))
    } else {
        kafka_bus(bus_arg)?
    };
    let p = pipeline(bus, stations, rules).await?;
    let start = Instant::now();
    let now = Utc::now();
    let batches: Vec<Value> = (0..readings.div_ceil(batch as u64))
        .map(|b| {
            let lo = b * batch as u64;
            let hi = (lo + batch as u64).min(readings);
            Value::Array(
                (lo..hi)
                    .map(|i| fixtures::load::reading(stations, i, now))
                    .collect(),
            )
        })
        .collect();
    let gen = start.elapsed();
    let start = Instant::now();
    // Up to 8 ingest calls in flight, as from 8 concurrent senders.
    futures::stream::iter(batches.iter())
        .map(|b| p.ingest.accept("bench", None, b))
        .buffer_unordered(8)
        .for_each(|r| async move {
            if let Err(e) = r {
                eprintln!("ingest error: {e}");
            }
        })
        .await;
    let ingested = start.elapsed();
    while counted(&p.replica) < readings {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let total = start.elapsed();
    println!(
        "pipeline bus={} stations={stations} readings={readings} batch={batch} rules={}: ingest {:.0} readings/s ({:.2} s), end to end {:.0} readings/s ({:.2} s) [payload generation {:.2} s excluded]",
        p.bus.name(),
        if rules { "on" } else { "off" },
        readings as f64 / ingested.as_secs_f64(),
        ingested.as_secs_f64(),
        readings as f64 / total.as_secs_f64(),
        total.as_secs_f64(),
        gen.as_secs_f64()
    );
    let _ = &p.topics;
    Ok(())
}

async fn run_baseline(
    brokers: &str,
    messages: u64,
    bytes: usize,
    keys: usize,
) -> anyhow::Result<()> {
    let topic = unique("bench-baseline");
    let bus = kafka_bus(brokers)?;
    bus.ensure_topics(&[bus::TopicSpec {
        name: topic.clone(),
        partitions: 6,
        compacted: false,
        retention_ms: None,
    }])
    .await?;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()?;
    let payload = vec![b'x'; bytes];
    let keys: Vec<String> = (0..keys).map(|k| format!("station:load-{k:06}")).collect();
    let start = Instant::now();
    futures::stream::iter(0..messages)
        .map(|i| {
            let producer = &producer;
            let payload = &payload;
            let key = &keys[i as usize % keys.len()];
            let topic = &topic;
            async move {
                producer
                    .send(
                        FutureRecord::to(topic).key(key).payload(payload),
                        Duration::from_secs(30),
                    )
                    .await
            }
        })
        .buffer_unordered(4000)
        .for_each(|r| async move {
            if let Err((e, _)) = r {
                eprintln!("produce error: {e}");
            }
        })
        .await;
    let produced = start.elapsed();
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("bench-baseline"))
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_uncommitted")
        .create()?;
    consumer.subscribe(&[&topic])?;
    let cstart = Instant::now();
    let mut got = 0u64;
    while got < messages {
        tokio::time::timeout(Duration::from_secs(60), consumer.recv())
            .await
            .context("consumer stalled")??;
        got += 1;
    }
    let consumed = cstart.elapsed();
    println!(
        "baseline messages={messages} bytes={bytes}: produce {:.0} msg/s ({:.2} s), consume {:.0} msg/s ({:.2} s), produce+consume {:.0} msg/s",
        messages as f64 / produced.as_secs_f64(),
        produced.as_secs_f64(),
        messages as f64 / consumed.as_secs_f64(),
        consumed.as_secs_f64(),
        messages as f64 / (produced + consumed).as_secs_f64()
    );
    Ok(())
}

async fn run_latency(
    brokers: &str,
    mqtt: &str,
    rate: f64,
    seconds: u64,
    stations: usize,
    per_message: usize,
) -> anyhow::Result<()> {
    let p = pipeline(kafka_bus(brokers)?, stations, true).await?;
    // MQTT ingest on its own topic prefix.
    let prefix = unique("bench");
    let mcfg = ingest::mqtt::MqttConfig {
        url: format!("mqtt://{mqtt}"),
        topic: format!("{prefix}/sensors/+/readings"),
        client_id: unique("bench-ingest"),
        ..Default::default()
    };
    tokio::spawn(ingest::mqtt::run(mcfg, p.ingest.clone()));
    // Feeds on a local port, one client subscribed to everything.
    let auth = Arc::new(auth::Authenticator::new(&[9u8; 32])?);
    let state = ui_feeds::FeedsState {
        replica: p.replica.clone(),
        auth: auth.clone(),
        config: Default::default(),
        mode: "kafka".into(),
        history: None,
        basemap: Default::default(),
        tiles: None,
        used_tickets: Default::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, ui_feeds::router(state)).await });
    let token = auth.issue(
        "bench",
        auth::Role::Operator,
        None,
        chrono::Duration::hours(1),
    );
    let (mut ws, _) =
        tokio_tungstenite::connect_async(ws_request(&format!("ws://{addr}/ws"), &token)?).await?;
    ws.send(tokio_tungstenite::tungstenite::Message::Text(
        json!({"op":"subscribe","id":"all","layers":["salinity","air_quality"]})
            .to_string()
            .into(),
    ))
    .await?;
    let latencies = Arc::new(std::sync::Mutex::new(Vec::<f64>::new()));
    let lat = latencies.clone();
    tokio::spawn(async move {
        while let Some(Ok(m)) = ws.next().await {
            let tokio_tungstenite::tungstenite::Message::Text(t) = m else {
                continue;
            };
            let now = Utc::now();
            let Ok(v) = serde_json::from_str::<Value>(&t) else {
                continue;
            };
            if v["op"] != "delta" {
                continue;
            }
            let mut l = lat.lock().unwrap();
            for f in v["upsert"].as_array().into_iter().flatten() {
                for (_, latest) in f["properties"]["latest"].as_object().into_iter().flatten() {
                    if let Some(ts) = latest["ts"]
                        .as_str()
                        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
                    {
                        l.push(
                            (now - ts.with_timezone(&Utc))
                                .num_microseconds()
                                .unwrap_or(0) as f64
                                / 1000.0,
                        );
                    }
                }
            }
        }
    });
    tokio::time::sleep(Duration::from_secs(2)).await; // MQTT connected and subscribed
    let (host, port) = mqtt.split_once(':').context("--mqtt host:port")?;
    let mut opts = rumqttc::MqttOptions::new(unique("bench-sensor"), host, port.parse()?);
    opts.set_inflight(1000);
    let (client, mut events) = rumqttc::AsyncClient::new(opts, 10_000);
    tokio::spawn(async move {
        loop {
            if let Err(e) = events.poll().await {
                eprintln!("sensor mqtt: {e}; reconnecting");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    });
    let messages_per_s = rate / per_message as f64;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / messages_per_s));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let total = (messages_per_s * seconds as f64) as u64;
    let warmup = total / 10;
    let mut seq = 0u64;
    for m in 0..total {
        tick.tick().await;
        if m == warmup {
            latencies.lock().unwrap().clear();
        }
        let ts = Utc::now();
        let station = (m as usize) % stations;
        let items: Vec<Value> = (0..per_message)
            .map(|_| {
                seq += 1;
                // one station per message, readings a microsecond apart in event time
                let mut r = fixtures::load::reading(
                    stations,
                    station as u64,
                    ts + chrono::Duration::microseconds(seq as i64 % 1000),
                );
                r["station"] = json!(format!("load-{station:06}"));
                r
            })
            .collect();
        client
            .publish(
                format!("{prefix}/sensors/load-{station:06}/readings"),
                rumqttc::QoS::AtLeastOnce,
                false,
                Value::Array(items).to_string(),
            )
            .await?;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut l = latencies.lock().unwrap().clone();
    if l.is_empty() {
        bail!("no deltas received");
    }
    l.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let pct = |q: f64| percentile(&l, q);
    println!(
        "latency rate={rate} readings/s ({} per MQTT message) seconds={seconds} stations={stations}: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms over {} station updates",
        per_message,
        pct(0.50),
        pct(0.99),
        l[l.len() - 1],
        l.len()
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Pipeline {
            bus,
            stations,
            readings,
            batch,
            rules,
        } => run_pipeline(&bus, stations, readings, batch, rules == "on").await,
        Cmd::Baseline {
            brokers,
            messages,
            bytes,
            keys,
        } => run_baseline(&brokers, messages, bytes, keys).await,
        Cmd::Latency {
            brokers,
            mqtt,
            rate,
            seconds,
            stations,
            per_message,
        } => run_latency(&brokers, &mqtt, rate, seconds, stations, per_message).await,
        Cmd::HistoryWrite {
            admin_url,
            timescale_url,
            rows,
            batch,
            stations,
        } => history::write(&admin_url, timescale_url.as_deref(), rows, batch, stations).await,
        Cmd::ColdStart {
            brokers,
            entities,
            ioc,
        } => {
            coldstart::run(coldstart::ColdStart {
                brokers,
                entities,
                ioc,
            })
            .await
        }
        Cmd::Fanout {
            clients,
            rate,
            entities,
            seconds,
            silent,
            server,
        } => {
            fanout::run(fanout::FanoutBench {
                clients,
                rate,
                entities,
                seconds,
                silent,
                server,
            })
            .await
        }
        Cmd::FanoutServer {
            server,
            port,
            entities,
            rate,
        } => fanout::serve(server, port, entities, rate).await,
        Cmd::Geo {
            entities,
            queries,
            redis,
        } => {
            geo::run(geo::GeoBench {
                entities,
                queries,
                redis,
            })
            .await
        }
        Cmd::Reports {
            url,
            token,
            clients,
            requests,
        } => reports::run(&url, &token, clients, requests).await,
        Cmd::Indicators {
            url,
            operator,
            leader,
            periods,
            batch,
            requests,
        } => {
            indicators::run(indicators::IndicatorBench {
                url,
                operator,
                leader,
                periods,
                batch,
                requests,
            })
            .await
        }
        Cmd::Abuse {
            url,
            pid,
            citizen,
            operator,
        } => abuse::run(&url, pid, &citizen, &operator).await,
        Cmd::Cameras {
            ioc,
            cameras: counts,
            window,
            snapshot_every,
            fps,
            stops,
        } => {
            cameras::run(cameras::CameraBench {
                ioc,
                cameras: counts,
                window_s: window,
                snapshot_every_s: snapshot_every,
                fps,
                stops,
            })
            .await
        }
        Cmd::Wall {
            ioc,
            cameras,
            screens,
            tiles,
            live,
            window,
            snapshot_every,
            fps,
        } => {
            wall::run(wall::WallBench {
                ioc,
                cameras,
                screens,
                tiles,
                live,
                window_s: window,
                snapshot_every_s: snapshot_every,
                fps,
            })
            .await
        }
        Cmd::Media {
            ioc,
            cameras,
            requests,
            clients,
            viewers,
            window,
        } => {
            media::run(media::MediaBench {
                ioc,
                cameras,
                requests,
                clients,
                viewers,
                window_s: window,
            })
            .await
        }
        Cmd::HistoryQuery {
            admin_url,
            timescale_url,
            stations,
            days,
            queries,
        } => {
            history::query(
                &admin_url,
                timescale_url.as_deref(),
                stations,
                days,
                queries,
            )
            .await
        }
    }
}
