//! The Kafka bus against a real Kafka-protocol broker (`IOC_TEST_KAFKA`, started by
//! `ops/test.sh`): publish with acknowledgement, group offsets that advance only past applied
//! messages, whole-topic reads that know when they caught up.

use std::time::Duration;

use bus::{Bus, KafkaBus, KafkaConfig, TopicSpec};

fn brokers() -> String {
    std::env::var("IOC_TEST_KAFKA")
        .expect("IOC_TEST_KAFKA is not set: run the tests through ops/test.sh, which starts a Kafka-protocol broker")
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::now_v7().simple())
}

fn bus() -> KafkaBus {
    KafkaBus::connect(KafkaConfig {
        brokers: brokers(),
        client_id: unique("bus-test"),
        ..Default::default()
    })
    .unwrap()
}

async fn topic(bus: &KafkaBus, compacted: bool) -> String {
    let name = unique("t");
    let spec = TopicSpec {
        name: name.clone(),
        partitions: 3,
        compacted,
        retention_ms: None,
    };
    bus.ensure_topics(std::slice::from_ref(&spec))
        .await
        .unwrap();
    bus.ensure_topics(&[spec])
        .await
        .expect("creating an existing topic is not an error");
    name
}

#[tokio::test]
async fn group_offsets_advance_only_past_applied_messages() {
    let bus = bus();
    bus.check_ready().await.unwrap();
    let t = topic(&bus, false).await;
    for i in 0..10 {
        bus.publish(&t, "station:a", Some(format!("{i}").into_bytes()))
            .await
            .unwrap();
    }
    let group = unique("g");
    let mut sub = bus.join_group(&group, &[&t]).await.unwrap();
    for i in 0..6 {
        let m = tokio::time::timeout(Duration::from_secs(30), sub.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            m.payload.as_deref(),
            Some(format!("{i}").as_bytes()),
            "one key keeps its order"
        );
        if i < 4 {
            sub.applied(&m).unwrap();
        }
    }
    sub.commit().await.unwrap();
    drop(sub);
    let mut again = bus.join_group(&group, &[&t]).await.unwrap();
    let m = tokio::time::timeout(Duration::from_secs(30), again.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        m.payload.as_deref(),
        Some(&b"4"[..]),
        "resumes at the first unapplied message"
    );
}

#[tokio::test]
async fn read_all_sees_every_partition_and_knows_when_it_caught_up() {
    let bus = bus();
    let t = topic(&bus, true).await;
    for k in ["a", "b", "c", "d", "e", "f"] {
        bus.publish(&t, &format!("station:{k}"), Some(k.as_bytes().to_vec()))
            .await
            .unwrap();
    }
    bus.publish(&t, "station:a", None).await.unwrap();
    let mut sub = bus.read_all(&[&t]).await.unwrap();
    let mut seen = std::collections::HashMap::new();
    while let Some(m) = tokio::time::timeout(Duration::from_secs(30), sub.next_until_caught_up())
        .await
        .unwrap()
        .unwrap()
    {
        seen.insert(m.key.unwrap(), m.payload);
    }
    assert_eq!(seen.len(), 6);
    assert_eq!(
        seen["station:a"], None,
        "tombstones arrive as empty payloads"
    );
    assert_eq!(seen["station:f"].as_deref(), Some(&b"f"[..]));
}

/// A province's state topic is never quiet: a reader must still come to the end of what was
/// there when it started, or an API replica would never be ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_all_catches_up_on_a_topic_that_is_never_quiet() {
    let bus = std::sync::Arc::new(bus());
    let t = topic(&bus, true).await;
    for i in 0..50 {
        bus.publish(&t, &format!("camera:c{i}"), Some(b"before".to_vec()))
            .await
            .unwrap();
    }
    let writer = {
        let (bus, t) = (bus.clone(), t.clone());
        tokio::spawn(async move {
            for i in 0.. {
                let key = format!("camera:c{}", i % 50);
                let _ = bus.publish(&t, &key, Some(b"after".to_vec())).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let mut sub = bus.read_all(&[&t]).await.unwrap();
    let mut keys = std::collections::HashSet::new();
    let caught_up = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(m) = sub.next_until_caught_up().await.unwrap() {
            keys.insert(m.key.unwrap());
        }
    })
    .await;
    writer.abort();
    assert!(
        caught_up.is_ok(),
        "never caught up while the topic was busy"
    );
    assert_eq!(keys.len(), 50, "every key written before the read began");
}

#[tokio::test]
async fn static_assignment_resumes_after_committed_offsets() {
    let bus = bus();
    let t = topic(&bus, false).await;
    for i in 0..9 {
        bus.publish(
            &t,
            &format!("station:k{}", i % 3),
            Some(format!("{i}").into_bytes()),
        )
        .await
        .unwrap();
    }
    let group = unique("g");
    let mut sub = bus.assign(&group, &t, None).await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..9 {
        let m = tokio::time::timeout(Duration::from_secs(30), sub.next())
            .await
            .unwrap()
            .unwrap();
        if seen.len() < 5 {
            sub.applied(&m).unwrap();
            seen.push(m.payload.unwrap());
        }
    }
    sub.commit().await.unwrap();
    drop(sub); // no clean leave: static assignment has no membership to leave
    let mut again = bus.assign(&group, &t, None).await.unwrap();
    let mut rest = 0;
    while let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(3), again.next()).await {
        rest += 1;
    }
    assert_eq!(rest, 4, "exactly the four unapplied messages come again");
    assert!(
        bus.assign(&group, &t, Some(&[7])).await.is_err(),
        "a partition the topic lacks is refused"
    );
}

/// A committed offset inside a record batch: the rest of that batch comes again, nothing
/// before it. (tansu 0.6 answers a fetch from inside a batch with the batches after it only;
/// the bus asks from earlier and drops what precedes the committed offset.)
#[tokio::test]
async fn resuming_inside_a_record_batch_skips_nothing() {
    let bus = bus();
    let t = topic(&bus, false).await;
    // Sent at once to one key: the producer packs them into a few batches.
    let sends = (0..300).map(|i| bus.publish(&t, "station:one", Some(format!("{i}").into_bytes())));
    for r in futures::future::join_all(sends).await {
        r.unwrap();
    }
    let group = unique("g");
    let mut sub = bus.assign(&group, &t, None).await.unwrap();
    for _ in 0..121 {
        let m = tokio::time::timeout(Duration::from_secs(30), sub.next())
            .await
            .unwrap()
            .unwrap();
        sub.applied(&m).unwrap();
    }
    sub.commit().await.unwrap();
    drop(sub);
    let mut again = bus.assign(&group, &t, None).await.unwrap();
    let mut got = Vec::new();
    while let Ok(Ok(m)) = tokio::time::timeout(Duration::from_secs(3), again.next()).await {
        got.push(String::from_utf8(m.payload.unwrap().to_vec()).unwrap());
    }
    let want: Vec<String> = (121..300).map(|i| i.to_string()).collect();
    assert_eq!(
        got, want,
        "the rest of the batch and everything after it, once, in order"
    );
}

#[tokio::test]
async fn read_all_at_scale_ends_with_the_latest_record_of_every_key() {
    let bus = bus();
    let t = topic(&bus, true).await;
    for round in 0..20 {
        let keys: Vec<String> = (0..100).map(|k| format!("station:k{k}")).collect();
        let writes = keys
            .iter()
            .map(|k| bus.publish(&t, k, Some(format!("{round}").into_bytes())));
        for r in futures::future::join_all(writes).await {
            r.unwrap();
        }
    }
    let mut sub = bus.read_all(&[&t]).await.unwrap();
    let mut latest = std::collections::HashMap::new();
    while let Some(m) = tokio::time::timeout(Duration::from_secs(30), sub.next_until_caught_up())
        .await
        .unwrap()
        .unwrap()
    {
        latest.insert(m.key.unwrap(), m.payload.unwrap());
    }
    assert_eq!(latest.len(), 100);
    let stale: Vec<_> = latest
        .iter()
        .filter(|(_, v)| v.as_ref() != b"19")
        .map(|(k, _)| k.clone())
        .collect();
    assert!(
        stale.is_empty(),
        "{} keys stale at caught-up: {:?}",
        stale.len(),
        &stale[..stale.len().min(5)]
    );
}

#[tokio::test]
async fn keys_land_on_the_partition_partition_for_names() {
    // Ownership of entities between core instances rests on this: the producer and
    // `partition_for` must agree for every key.
    let bus = bus();
    let name = unique("t");
    bus.ensure_topics(&[TopicSpec {
        name: name.clone(),
        partitions: 6,
        compacted: false,
        retention_ms: None,
    }])
    .await
    .unwrap();
    for i in 0..120 {
        let key = format!("station:load-{i:06}");
        let d = bus.publish(&name, &key, Some(b"x".to_vec())).await.unwrap();
        assert_eq!(d.partition, bus::partition_for(&key, 6), "{key}");
    }
}
