//! Applies the books' effects to the bus: state upserts and tombstones on `ioc.state`, alert
//! events on `ioc.alerts`, daily tallies on `ioc.tallies`, dead letters on `ioc.deadletter`. Only for entities this instance
//! owns (see [`Ownership`]); the rest are dropped and counted. Every write waits and retries
//! with backoff while the bus is unavailable, so a broker outage pauses the core and never
//! ends it; an input is marked applied only once all of its effects are acknowledged.

use std::sync::Arc;
use std::time::Duration;

use bus::{Bus, BusError, Topics};
use tracing::warn;

use crate::effect::Effect;
use crate::ownership::Ownership;

pub struct Publisher {
    bus: Arc<dyn Bus>,
    topics: Topics,
    ownership: Ownership,
}

impl Publisher {
    pub fn new(bus: Arc<dyn Bus>, topics: Topics, ownership: Ownership) -> Self {
        Self {
            bus,
            topics,
            ownership,
        }
    }

    fn owned(&self, e: &Effect) -> bool {
        match e.owner() {
            Ok(entity) => self.ownership.owns(entity),
            Err(partition) => self.ownership.owns_partition(partition),
        }
    }

    /// Publishes `effects`, all at once (the producer keeps their order per key), and
    /// returns once every one is acknowledged.
    pub async fn apply(&self, effects: Vec<Effect>) -> Result<(), BusError> {
        let before = effects.len();
        let owned: Vec<Effect> = effects.into_iter().filter(|e| self.owned(e)).collect();
        if owned.len() < before {
            metrics::counter!("ioc_core_effects_not_owned_total")
                .increment((before - owned.len()) as u64);
        }
        let writes = owned.into_iter().map(|e| {
            let (topic, key, payload) = match e {
                Effect::Upsert { record, .. } => {
                    let payload = serde_json::to_vec(&record).expect("state records serialise");
                    (&self.topics.state, record.entity.to_string(), Some(payload))
                }
                Effect::Tombstone { entity, .. } => (&self.topics.state, entity.to_string(), None),
                Effect::Tally { tally, .. } => {
                    let payload = serde_json::to_vec(&tally).expect("tallies serialise");
                    (&self.topics.tallies, tally.key(), Some(payload))
                }
                Effect::TallyGone { key, .. } => (&self.topics.tallies, key, None),
                Effect::AlertEvent { subject, event } => (
                    &self.topics.alerts,
                    subject.to_string(),
                    Some(event.to_bytes()),
                ),
                Effect::DeadLetter { source, event, .. } => {
                    metrics::counter!("ioc_deadletter_total", "stage" => "core").increment(1);
                    (&self.topics.deadletter, source, Some(event.to_bytes()))
                }
            };
            self.retrying(topic, key, payload)
        });
        futures::future::try_join_all(writes).await.map(|_| ())
    }

    /// One write, retried with backoff while the bus is unavailable; other errors end it.
    async fn retrying(
        &self,
        topic: &str,
        key: String,
        payload: Option<Vec<u8>>,
    ) -> Result<(), BusError> {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.bus.publish(topic, &key, payload.clone()).await {
                Ok(_) => return Ok(()),
                Err(BusError::Unavailable(e)) => {
                    warn!(topic, key, error = %e, "publish failed; retrying");
                    metrics::counter!("ioc_core_publish_retries_total").increment(1);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bus::MemoryBus;
    use model::{EntityId, Envelope, Layer, StateRecord};

    fn record(entity: EntityId) -> StateRecord {
        StateRecord {
            entity,
            layer: Layer::Units,
            bbox: [0.0; 4],
            geometry: geojson::Geometry::new(geojson::Value::Point(vec![0.0, 0.0])),
            units: Vec::new(),
            updated: None,
            properties: Default::default(),
            applied: Default::default(),
            core: serde_json::Value::Null,
        }
    }

    #[tokio::test]
    async fn only_what_this_instance_owns_reaches_the_bus() {
        let bus: Arc<dyn Bus> = Arc::new(MemoryBus::default());
        let topics = Topics::default();
        bus.ensure_topics(&topics.specs(1)).await.unwrap();
        let ownership = Ownership::of(Some(&[0, 1]), 6);
        let publisher = Publisher::new(bus.clone(), topics.clone(), ownership.clone());
        let entities: Vec<EntityId> = (0..60)
            .map(|i| EntityId::parse(&format!("unit:u-{i}")).unwrap())
            .collect();
        let mut effects: Vec<Effect> = entities
            .iter()
            .cloned()
            .map(|e| Effect::upsert(record(e)))
            .collect();
        let dead = |partition| Effect::DeadLetter {
            partition,
            source: format!("bus:t/{partition}/0"),
            event: Envelope::dead_letter(
                "x",
                None,
                vec![],
                serde_json::Value::Null,
                chrono::Utc::now(),
            ),
        };
        effects.push(dead(1));
        effects.push(dead(4));
        publisher.apply(effects).await.unwrap();

        let mut sub = bus
            .read_all(&[&topics.state, &topics.deadletter])
            .await
            .unwrap();
        let mut keys = Vec::new();
        while let Some(m) = sub.next_until_caught_up().await.unwrap() {
            keys.push(m.key.unwrap());
        }
        let owned: Vec<String> = entities
            .iter()
            .filter(|e| ownership.owns(e))
            .map(|e| e.to_string())
            .collect();
        assert!(!owned.is_empty() && owned.len() < 60);
        let mut expected = owned.clone();
        expected.push("bus:t/1/0".into());
        keys.sort();
        expected.sort();
        assert_eq!(keys, expected);
    }
}
