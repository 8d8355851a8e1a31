//! Group membership on librdkafka's mock cluster (in-process, with a real group coordinator
//! that rebalances: tansu 0.6 does not evict members). Two members of one group hold
//! disjoint partitions that together cover the topic, and each is told what it holds; when
//! one leaves, the other is told it holds everything.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bus::{Bus, KafkaBus, KafkaConfig, OnAssign};
use rdkafka::mocking::MockCluster;

const PARTITIONS: i32 = 6;

type Held = Arc<Mutex<BTreeSet<i32>>>;

fn told(held: &Held) -> OnAssign {
    let held = held.clone();
    Arc::new(move |parts: &[(String, i32)]| {
        *held.lock().unwrap() = parts.iter().map(|(_, p)| *p).collect();
    })
}

fn now(held: &Held) -> BTreeSet<i32> {
    held.lock().unwrap().clone()
}

/// Waits (at most 60 s) until `done` holds of what the members were told.
async fn until(what: &str, done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_hold_disjoint_partitions_and_one_takes_over_from_a_leaver() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("readings", PARTITIONS, 1).unwrap();
    let member = |name: &str| {
        KafkaBus::connect(KafkaConfig {
            brokers: mock.bootstrap_servers(),
            client_id: name.into(),
            session_timeout_ms: 6_000,
            max_poll_interval_ms: 10_000,
            ..Default::default()
        })
        .unwrap()
    };
    let (a, b) = (member("core-a"), member("core-b"));
    let (held_a, held_b): (Held, Held) = Default::default();
    // Each member polls (rebalances are served while it waits for messages).
    let mut sub_a = a
        .join_group_watched("core", &["readings"], told(&held_a))
        .await
        .unwrap();
    let poll_a = tokio::spawn(async move { while sub_a.next().await.is_ok() {} });
    let mut sub_b = b
        .join_group_watched("core", &["readings"], told(&held_b))
        .await
        .unwrap();
    let poll_b = tokio::spawn(async move { while sub_b.next().await.is_ok() {} });

    let all: BTreeSet<i32> = (0..PARTITIONS).collect();
    until("two members split the partitions", || {
        let (x, y) = (now(&held_a), now(&held_b));
        !x.is_empty() && !y.is_empty() && x.is_disjoint(&y) && &x | &y == all
    })
    .await;

    // One leaves (its consumer closes): the other is told it holds every partition.
    poll_b.abort();
    let _ = poll_b.await;
    until("the remaining member holds every partition", || {
        now(&held_a) == all
    })
    .await;
    poll_a.abort();
}
