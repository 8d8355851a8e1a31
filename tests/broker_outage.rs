//! A broker outage mid-stream: the test's own broker is taken off the network for 30 s (every
//! connection dropped, new ones refused) and comes back. `ioc core` and `ioc api` keep
//! running through it: the core pauses, retries its writes, and resumes by itself; at the end
//! every reading is counted once and a station removed just before the outage is gone from the
//! picture (its tombstone was published, late or not).

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bus::{Bus, KafkaBus, KafkaConfig};
use chrono::{TimeZone, Utc};
use common::*;
use model::{
    EntityId, Envelope, EventKind, Parameter, Reading, RegistryEntry, Station, StationKind,
};
use serde_json::Value;

/// A tansu broker of the test's own, reached only through a proxy on the port it
/// advertises: stopping the proxy closes every connection and refuses new ones, which is
/// what the clients see of a stopped broker process. (tansu's `memory://` storage does not
/// outlive a restart, and its sqlite engine panics on idempotent produce in 0.6, so the
/// broker itself stays up and keeps the topics.)
struct Broker {
    tansu: Child,
    port: u16,
    upstream: u16,
    proxy: Option<tokio::task::JoinHandle<()>>,
}

impl Broker {
    async fn start() -> Broker {
        let tansu_bin = required_env(
            "IOC_TEST_TANSU",
            "the tansu broker binary (ops/test.sh installs it)",
        );
        let (port, upstream) = (free_port(), free_port());
        let log = std::fs::File::create(
            std::env::temp_dir().join(format!("tansu-outage-{upstream}.log")),
        )
        .unwrap();
        let tansu = Command::new(tansu_bin)
            .args(["broker", "--storage-engine", "memory://tansu/"])
            .arg("--listener-url")
            .arg(format!("tcp://127.0.0.1:{upstream}"))
            .arg("--advertised-listener-url")
            .arg(format!("tcp://127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting tansu");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", upstream)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "tansu did not listen within 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut b = Broker {
            tansu,
            port,
            upstream,
            proxy: None,
        };
        b.up().await;
        b
    }

    /// The broker is reachable: a proxy forwards every connection to tansu.
    async fn up(&mut self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .unwrap();
        let upstream = self.upstream;
        self.proxy = Some(tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                conns.spawn(async move {
                    if let Ok(mut server) =
                        tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        }));
    }

    /// The broker is gone: every connection drops, new ones are refused.
    fn down(&mut self) {
        if let Some(p) = self.proxy.take() {
            // Aborting the task drops the listener and the JoinSet, which aborts every
            // forwarded connection.
            p.abort();
        }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.down();
        let _ = self.tansu.kill();
        let _ = self.tansu.wait();
    }
}

async fn publish_readings(bus: &dyn Bus, topic: &str, stations: &[Station], from: usize, n: usize) {
    let base = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
    let mut writes = Vec::new();
    for seq in from..from + n {
        let s = &stations[seq % stations.len()];
        let parameter = if s.kind == StationKind::Salinity {
            Parameter::Salinity
        } else {
            Parameter::Pm25
        };
        let ts = (base + chrono::Duration::seconds(seq as i64)).fixed_offset();
        let r = Reading {
            station: s.id.clone(),
            parameter,
            ts,
            value: 0.5,
            unit: parameter.canonical_unit(),
            quality: Default::default(),
            sent_as: None,
        };
        let entity = EntityId::station(&s.id);
        let env = Envelope::new(
            EventKind::SensorReading,
            entity.clone(),
            ts,
            Utc::now(),
            "test:outage",
            serde_json::to_value(&r).unwrap(),
        );
        writes.push(async move {
            bus.publish(topic, entity.as_str(), Some(env.to_bytes()))
                .await
        });
    }
    for w in futures::future::join_all(writes).await {
        w.expect("the broker took the reading");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_30_s_broker_outage_pauses_the_core_and_it_resumes_with_nothing_lost() {
    let mut broker = Broker::start().await;
    let mut env = isolated_env("outage");
    for (k, v) in env.iter_mut() {
        if k == "IOC_BUS__KAFKA__BROKERS" {
            *v = broker.addr();
        }
    }
    let mut api = Ioc::start(&["api"], &env);
    api.ready().await;
    let mut core = Ioc::start(&["core"], &env);
    core.ready().await;

    let topics = topics_of(&env);
    let kafka: Arc<dyn Bus> = Arc::new(
        KafkaBus::connect(KafkaConfig {
            brokers: broker.addr(),
            client_id: unique("outage-producer"),
            ..KafkaConfig::default()
        })
        .unwrap(),
    );
    let mut stations = fixtures::stations::stations();
    stations.sort_by(|a, b| a.id.cmp(&b.id));
    let removed = stations.remove(0);
    publish_readings(&*kafka, &topics.readings, &stations, 0, 3_000).await;

    // A station leaves the registry, and at once the broker goes away for 30 s.
    let gone = EntityId::station(&removed.id);
    let ev = RegistryEntry::remove_event(gone.clone(), "test", Utc::now());
    kafka
        .publish(&topics.registry, gone.as_str(), Some(ev.to_bytes()))
        .await
        .unwrap();
    broker.down();
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(
            core.child.try_wait().unwrap().is_none(),
            "the core ended during the outage"
        );
        assert!(
            api.child.try_wait().unwrap().is_none(),
            "the api ended during the outage"
        );
    }
    broker.up().await;
    publish_readings(&*kafka, &topics.readings, &stations, 3_000, 3_000).await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let mut counted = 0u64;
        let mut present = false;
        for layer in ["salinity", "air_quality"] {
            let fc = get_json(
                &api,
                &format!("/api/v1/layers/{layer}/features"),
                auth::Role::Operator,
            )
            .await;
            for f in fc["features"].as_array().cloned().unwrap_or_default() {
                counted += f["properties"]["readings"].as_u64().unwrap_or(0);
                present |= f["id"] == Value::from(gone.as_str());
            }
        }
        if counted == 6_000 && !present {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "after the outage: {counted} of 6000 readings counted, removed station still shown: {present}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        core.child.try_wait().unwrap().is_none(),
        "the same core process carried on"
    );
}
