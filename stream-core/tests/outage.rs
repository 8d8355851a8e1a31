//! A bus outage pauses the core and never ends it: every write it makes (states,
//! tombstones, alert events, dead letters) waits and retries while the bus is unavailable.
//! Before, tombstones went to the bus outside the retry loop, and one "unavailable" on a
//! station's removal ended the core.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bus::{Bus, BusError, Delivered, MemoryBus, Subscription, TopicSpec, Topics};
use model::{EntityId, RegistryEntry};
use stream_core::{CoreConfig, CoreStatus};

/// The in-memory bus, refusing the first `fail` tombstones with "unavailable".
struct Flaky {
    inner: MemoryBus,
    fail: AtomicUsize,
}

#[async_trait]
impl Bus for Flaky {
    async fn publish(
        &self,
        topic: &str,
        key: &str,
        payload: Option<Vec<u8>>,
    ) -> Result<Delivered, BusError> {
        if payload.is_none()
            && self
                .fail
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            return Err(BusError::Unavailable("broker down (test)".into()));
        }
        self.inner.publish(topic, key, payload).await
    }
    async fn ensure_topics(&self, specs: &[TopicSpec]) -> Result<(), BusError> {
        self.inner.ensure_topics(specs).await
    }
    async fn join_group(
        &self,
        group: &str,
        topics: &[&str],
    ) -> Result<Box<dyn Subscription>, BusError> {
        self.inner.join_group(group, topics).await
    }
    async fn assign(
        &self,
        group: &str,
        topic: &str,
        partitions: Option<&[i32]>,
    ) -> Result<Box<dyn Subscription>, BusError> {
        self.inner.assign(group, topic, partitions).await
    }
    async fn read_all(&self, topics: &[&str]) -> Result<Box<dyn Subscription>, BusError> {
        self.inner.read_all(topics).await
    }
    async fn partition_count(&self, topic: &str) -> Result<i32, BusError> {
        self.inner.partition_count(topic).await
    }
    async fn check_ready(&self) -> Result<(), BusError> {
        self.inner.check_ready().await
    }
    fn name(&self) -> &'static str {
        "flaky-memory"
    }
}

#[tokio::test]
async fn a_tombstone_refused_by_the_bus_is_retried_and_the_core_keeps_running() {
    let flaky = Arc::new(Flaky {
        inner: MemoryBus::default(),
        fail: AtomicUsize::new(0),
    });
    let bus: Arc<dyn Bus> = flaky.clone();
    let topics = Topics::default();
    bus.ensure_topics(&topics.specs(1)).await.unwrap();
    ingest_registry(&*bus, &topics).await;
    let status = Arc::new(CoreStatus::default());
    let core = tokio::spawn(stream_core::run(
        bus.clone(),
        topics.clone(),
        CoreConfig::default(),
        status.clone(),
        None,
        std::future::pending(),
    ));
    while !status.is_started() {
        assert!(
            !core.is_finished(),
            "the core ended at start: {:?}",
            core.await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The broker refuses the next three tombstones; then a station leaves the registry.
    flaky.fail.store(3, Ordering::SeqCst);
    let station = fixtures::stations::stations().remove(0);
    let entity = EntityId::station(&station.id);
    let env = RegistryEntry::remove_event(entity.clone(), "test", chrono::Utc::now());
    bus.publish(&topics.registry, entity.as_str(), Some(env.to_bytes()))
        .await
        .unwrap();
    // The tombstone lands once the bus takes writes again, and the core is still running.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        assert!(!core.is_finished(), "the core ended: {:?}", core.await);
        if flaky.fail.load(Ordering::SeqCst) == 0 && tombstoned(&*bus, &topics, &entity).await {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no tombstone for {entity}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!core.is_finished());
}

async fn ingest_registry(bus: &dyn Bus, topics: &Topics) {
    for e in fixtures::registry() {
        let env = e.upsert_event("test", chrono::Utc::now());
        bus.publish(&topics.registry, env.entity.as_str(), Some(env.to_bytes()))
            .await
            .unwrap();
    }
}

/// Is the newest message of `entity` on the state topic a tombstone?
async fn tombstoned(bus: &dyn Bus, topics: &Topics, entity: &EntityId) -> bool {
    let mut sub = bus.read_all(&[&topics.state]).await.unwrap();
    let mut last = None;
    while let Ok(Some(m)) = sub.next_until_caught_up().await {
        if m.key.as_deref() == Some(entity.as_str()) {
            last = Some(m.payload.is_none());
        }
    }
    last == Some(true)
}
