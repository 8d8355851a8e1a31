//! `ioc-bench cold-start`: how long `ioc api` takes from start to `/readyz` ready over a state
//! topic holding many entities, and `ioc core` restarting over the same, against a bare
//! rdkafka consumer reading the same topic to its end in the same run (the limit: nothing
//! can be ready before its state is read).
//!
//! The state topic is filled once with station records (about a real one's size) keyed as
//! the core keys them; then each of the three is timed from spawn (or consumer creation) to
//! ready (or the last record).

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::StreamExt;
use rand::{Rng, SeedableRng};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::{kafka_bus, prefixed_topics, unique};

pub struct ColdStart {
    pub brokers: String,
    pub entities: usize,
    /// The `ioc` binary.
    pub ioc: String,
}

/// The time from spawn to `/readyz` ready, and what `/readyz` said then.
async fn time_to_ready(
    ioc: &str,
    role: &str,
    env: &[(String, String)],
) -> anyhow::Result<(Duration, serde_json::Value)> {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?.port()
    };
    let start = Instant::now();
    let mut child = tokio::process::Command::new(ioc)
        .arg(role)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {ioc}"))?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let url = format!("http://127.0.0.1:{port}/readyz");
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("ioc {role} exited with {status}");
        }
        if start.elapsed() > Duration::from_secs(600) {
            bail!("ioc {role} not ready within 600 s");
        }
        if let Ok(r) = client.get(&url).send().await {
            if r.status().is_success() {
                let elapsed = start.elapsed();
                let body = r.json().await.unwrap_or_default();
                let _ = child.kill().await;
                return Ok((elapsed, body));
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn run(b: ColdStart) -> anyhow::Result<()> {
    let prefix = unique("cold");
    let topics = prefixed_topics(&prefix);
    let bus = kafka_bus(&b.brokers)?;
    bus.ensure_topics(&topics.specs(6)).await?;

    // The state, as the core would have left it: one record per station.
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let t = Instant::now();
    futures::stream::iter(0..b.entities)
        .map(|i| {
            let (lon, lat) = (rng.random_range(105.2..106.2), rng.random_range(9.4..10.2));
            let extra = [
                ("kind", "salinity".into()),
                ("readings", 500.into()),
                ("detail", "x".repeat(250).into()),
            ];
            let record = crate::point_record(&format!("c{i:07}"), lon, lat, &extra);
            let bus = &bus;
            let topic = &topics.state;
            async move {
                let record = record?;
                let payload = serde_json::to_vec(&record)?;
                bus.publish(topic, record.entity.as_str(), Some(payload))
                    .await
                    .map_err(anyhow::Error::from)
            }
        })
        .buffer_unordered(4000)
        .for_each(|r| async move {
            if let Err(e) = r {
                eprintln!("publish: {e}");
            }
        })
        .await;
    println!(
        "state: {} records on {} in {:.1} s",
        b.entities,
        topics.state,
        t.elapsed().as_secs_f64()
    );

    let mut env: Vec<(String, String)> = vec![
        ("IOC_BUS__KAFKA__BROKERS".into(), b.brokers.clone()),
        ("IOC_BUS__PARTITIONS".into(), "6".into()),
        ("IOC_REGISTRY__SEED_FIXTURES".into(), "false".into()),
        ("IOC_CORE__GROUP".into(), format!("{prefix}-core")),
        (
            "IOC_AUTH__SECRET".into(),
            "cold-start-bench-secret-0123456789abcdef".into(),
        ),
        ("IOC_LOG__FILTER".into(), "warn".into()),
    ];
    for (k, v) in [
        ("READINGS", &topics.readings),
        ("CAMERAS", &topics.cameras),
        ("REPORTS", &topics.reports),
        ("INDICATORS", &topics.indicators),
        ("REGISTRY", &topics.registry),
        ("ALERTS", &topics.alerts),
        ("STATE", &topics.state),
        ("TALLIES", &topics.tallies),
        ("DEADLETTER", &topics.deadletter),
    ] {
        env.push((format!("IOC_TOPICS__{k}"), v.clone()));
    }

    for round in 1..=2 {
        // The limit: a bare consumer from the beginning to the high watermarks.
        let t = Instant::now();
        // Assigned from the beginning, no group, the bus's fetch wait: as the replica reads.
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &b.brokers)
            .set("group.id", unique("cold-bare"))
            .set("enable.auto.commit", "false")
            .set("fetch.wait.max.ms", "20")
            .create()?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..6 {
            tpl.add_partition_offset(&topics.state, p, Offset::Beginning)?;
        }
        consumer.assign(&tpl)?;
        let mut got = 0usize;
        while got < b.entities {
            tokio::time::timeout(Duration::from_secs(60), consumer.recv())
                .await
                .context("bare consumer stalled")??;
            got += 1;
        }
        let bare = t.elapsed();
        drop(consumer);
        let (api, api_ready) = time_to_ready(&b.ioc, "api", &env).await?;
        let (core, _) = time_to_ready(&b.ioc, "core", &env).await?;
        println!(
            "round {round}: {} entities: bare rdkafka consumer to the end {:.2} s; ioc api to ready {:.2} s (replica seq {}); ioc core to ready {:.2} s",
            b.entities,
            bare.as_secs_f64(),
            api.as_secs_f64(),
            api_ready["checks"]["state"]["seq"],
            core.as_secs_f64()
        );
    }
    Ok(())
}
