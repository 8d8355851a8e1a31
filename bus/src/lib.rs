//! Publish/subscribe for the IOC: one interface ([`Bus`], [`Subscription`]) with two
//! implementations, Kafka through rdkafka ([`KafkaBus`]) and an in-memory log for the embedded
//! demo ([`MemoryBus`]). Keys are entity ids, so one entity's events stay in order.
//!
//! This crate owns delivery semantics: a publish resolves only when the broker acknowledged
//! the write (acks=all, idempotent producer), and a group consumer's offsets advance only past
//! messages the caller marked as applied. It must never interpret payloads (that is `model`'s
//! job) nor keep application state.

mod kafka;
mod memory;
mod partition;
mod topics;

use async_trait::async_trait;
use bytes::Bytes;

pub use kafka::{KafkaBus, KafkaConfig};
pub use memory::MemoryBus;
pub use partition::{murmur2, partition_for};
pub use topics::{TopicSpec, Topics, READINGS_RETENTION_DAYS};

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The broker cannot take writes or serve reads right now; retry later.
    #[error("bus unavailable: {0}")]
    Unavailable(String),
    /// A misconfiguration or a refused request that retrying will not fix.
    #[error("bus request refused: {0}")]
    Refused(String),
    /// The subscription ended (bus shut down).
    #[error("subscription closed")]
    Closed,
}

/// Where a published message landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub partition: i32,
    pub offset: i64,
}

/// A message read from a topic. `payload` is `None` for a tombstone (a deleted key).
#[derive(Debug, Clone)]
pub struct Message {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub payload: Option<Bytes>,
}

/// Told the partitions, as (topic, partition), a group member holds after a rebalance.
pub type OnAssign = std::sync::Arc<dyn Fn(&[(String, i32)]) + Send + Sync>;

#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Writes one message; resolves when the broker has acknowledged it durably.
    /// `payload: None` writes a tombstone (deletes `key` from a compacted topic).
    async fn publish(
        &self,
        topic: &str,
        key: &str,
        payload: Option<Vec<u8>>,
    ) -> Result<Delivered, BusError>;

    /// Creates the topics that do not exist yet (existing ones are left as they are).
    async fn ensure_topics(&self, specs: &[TopicSpec]) -> Result<(), BusError>;

    /// Joins consumer group `group` on `topics`, resuming after the last committed offsets
    /// (from the beginning for a new group).
    async fn join_group(
        &self,
        group: &str,
        topics: &[&str],
    ) -> Result<Box<dyn Subscription>, BusError>;

    /// As [`Bus::join_group`], and tells `on_assign` which partitions (topic, partition) this
    /// member holds whenever that changes: before it gives any up and after it takes new ones,
    /// so that it never acts on a partition another member holds. A bus without group
    /// rebalancing holds every partition from the start.
    async fn join_group_watched(
        &self,
        group: &str,
        topics: &[&str],
        on_assign: OnAssign,
    ) -> Result<Box<dyn Subscription>, BusError> {
        let sub = self.join_group(group, topics).await?;
        let mut all = Vec::new();
        for t in topics {
            for p in 0..self.partition_count(t).await? {
                all.push((t.to_string(), p));
            }
        }
        on_assign(&all);
        Ok(sub)
    }

    /// Consumes `partitions` of `topic` (all when `None`) by static assignment, resuming
    /// after the offsets committed under `group`, with no group membership: no rebalances,
    /// and a restarted instance resumes at once. Each instance must be given its own
    /// partitions (the operator decides; see DESIGN.md, Scale-out).
    async fn assign(
        &self,
        group: &str,
        topic: &str,
        partitions: Option<&[i32]>,
    ) -> Result<Box<dyn Subscription>, BusError>;

    /// [`Bus::assign`], except that a partition in `not_after` starts at that offset when
    /// the group's committed offset is past it, by at most `max_rewind` messages: for a
    /// consumer whose own output records which inputs it covers, so that input committed
    /// but not covered by any kept output (a crash between the two, or output a broker
    /// lost) is read again, and a long-silent key does not replay the whole retention.
    async fn assign_rewound(
        &self,
        group: &str,
        topic: &str,
        partitions: Option<&[i32]>,
        not_after: &std::collections::BTreeMap<i32, i64>,
        max_rewind: i64,
    ) -> Result<Box<dyn Subscription>, BusError> {
        let _ = (not_after, max_rewind);
        self.assign(group, topic, partitions).await
    }

    /// Reads every partition of `topics` from the beginning, outside any group: for compacted
    /// topics that a reader rebuilds state from (registry, state replicas).
    async fn read_all(&self, topics: &[&str]) -> Result<Box<dyn Subscription>, BusError>;

    /// How many partitions `topic` has (keys land on them by [`partition_for`]).
    async fn partition_count(&self, topic: &str) -> Result<i32, BusError>;

    /// Succeeds when the bus can serve requests now.
    async fn check_ready(&self) -> Result<(), BusError>;

    /// A short name for logs and `/readyz` ("kafka", "memory").
    fn name(&self) -> &'static str;
}

#[async_trait]
pub trait Subscription: Send {
    /// The next message, waiting for one to arrive.
    async fn next(&mut self) -> Result<Message, BusError>;

    /// Marks `msg` as applied: its group offset may be committed from now on. Offsets never
    /// advance past a message that was not marked.
    fn applied(&mut self, msg: &Message) -> Result<(), BusError>;

    /// Commits the applied positions now (before a clean shutdown, say).
    async fn commit(&mut self) -> Result<(), BusError>;

    /// For `read_all`: true once every partition was read up to where it ended when the
    /// subscription started (by the broker's watermarks). Always true for group subscriptions.
    fn caught_up(&self) -> bool;

    /// For rebuilding state: the next message if the reader has not caught up yet, `None`
    /// once it has. Past the start-time watermarks it still takes whatever arrives within a
    /// short quiet window, because some brokers (tansu 0.6) report a high watermark that
    /// stops at the start of the last record batch.
    async fn next_until_caught_up(&mut self) -> Result<Option<Message>, BusError>;
}

/// Reads `topics` from the beginning, handing every message to `apply`; calls `caught_up`
/// once the reader has caught up (see [`Subscription::next_until_caught_up`]), then follows
/// new messages for as long as the bus serves them. For state rebuilt from compacted topics.
pub async fn replay_and_follow(
    bus: &dyn Bus,
    topics: &[&str],
    mut apply: impl FnMut(Message) + Send,
    caught_up: impl FnOnce() + Send,
) -> Result<(), BusError> {
    let mut sub = bus.read_all(topics).await?;
    while let Some(m) = sub.next_until_caught_up().await? {
        apply(m);
    }
    caught_up();
    loop {
        apply(sub.next().await?);
    }
}
