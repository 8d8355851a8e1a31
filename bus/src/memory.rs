//! The in-memory bus of the embedded demo: one append-only log per topic (one partition),
//! group offsets kept in memory, bounded by a per-topic retention count. Compacted topics
//! keep at least the latest message of every key, like Kafka's log compaction.
//!
//! It stands in for Kafka in `ioc demo` and in fast unit tests only; it is not durable.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::Notify;

use crate::{Bus, BusError, Delivered, Message, Subscription, TopicSpec};

const DEFAULT_RETAIN: usize = 200_000;

struct Log {
    compacted: bool,
    retain: usize,
    next_offset: i64,
    messages: VecDeque<Message>,
}

impl Log {
    fn new(compacted: bool, retain: usize) -> Self {
        Self {
            compacted,
            retain,
            next_offset: 0,
            messages: VecDeque::new(),
        }
    }

    fn append(&mut self, topic: &str, key: &str, payload: Option<Bytes>) -> i64 {
        let offset = self.next_offset;
        self.next_offset += 1;
        self.messages.push_back(Message {
            topic: topic.to_string(),
            partition: 0,
            offset,
            key: Some(key.to_string()),
            payload,
        });
        if self.messages.len() > self.retain {
            if self.compacted {
                self.compact();
            } else {
                self.messages.pop_front();
            }
        }
        offset
    }

    /// Keeps the newest message per key; raises the retention bar when every key is live.
    fn compact(&mut self) {
        let mut seen = HashSet::new();
        let mut kept: Vec<Message> = Vec::new();
        for m in self.messages.drain(..).rev() {
            if seen.insert(m.key.clone()) {
                kept.push(m);
            }
        }
        kept.reverse();
        self.messages = kept.into();
        self.retain = self.retain.max(self.messages.len() * 2);
    }

    /// First message at or after `pos`.
    fn at(&self, pos: i64) -> Option<&Message> {
        let idx = self.messages.partition_point(|m| m.offset < pos);
        self.messages.get(idx)
    }
}

#[derive(Default)]
struct Inner {
    logs: HashMap<String, Log>,
    committed: HashMap<(String, String), i64>,
}

/// See the module docs.
#[derive(Clone)]
pub struct MemoryBus {
    inner: Arc<Mutex<Inner>>,
    notify: Arc<Notify>,
    retain: usize,
}

impl Default for MemoryBus {
    fn default() -> Self {
        Self::with_retention(DEFAULT_RETAIN)
    }
}

impl MemoryBus {
    /// A bus keeping at most `retain` messages per non-compacted topic.
    pub fn with_retention(retain: usize) -> Self {
        Self {
            inner: Arc::default(),
            notify: Arc::new(Notify::new()),
            retain,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a log half-appended; keep going.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn subscription(&self, group: Option<&str>, topics: &[&str]) -> MemorySubscription {
        let mut inner = self.lock();
        let mut positions = Vec::new();
        let mut ends = Vec::new();
        for t in topics {
            let retain = self.retain;
            let log = inner
                .logs
                .entry(t.to_string())
                .or_insert_with(|| Log::new(false, retain));
            ends.push(log.next_offset);
            let start = group
                .and_then(|g| {
                    inner
                        .committed
                        .get(&(g.to_string(), t.to_string()))
                        .copied()
                })
                .unwrap_or(0);
            positions.push((t.to_string(), start));
        }
        MemorySubscription {
            bus: self.clone(),
            group: group.map(str::to_string),
            positions,
            ends,
            turn: 0,
        }
    }
}

#[async_trait]
impl Bus for MemoryBus {
    async fn publish(
        &self,
        topic: &str,
        key: &str,
        payload: Option<Vec<u8>>,
    ) -> Result<Delivered, BusError> {
        let offset = {
            let mut inner = self.lock();
            let retain = self.retain;
            let log = inner
                .logs
                .entry(topic.to_string())
                .or_insert_with(|| Log::new(false, retain));
            log.append(topic, key, payload.map(Bytes::from))
        };
        self.notify.notify_waiters();
        Ok(Delivered {
            partition: 0,
            offset,
        })
    }

    async fn ensure_topics(&self, specs: &[TopicSpec]) -> Result<(), BusError> {
        let mut inner = self.lock();
        for s in specs {
            let retain = self.retain;
            let log = inner
                .logs
                .entry(s.name.clone())
                .or_insert_with(|| Log::new(s.compacted, retain));
            log.compacted = s.compacted;
        }
        Ok(())
    }

    async fn join_group(
        &self,
        group: &str,
        topics: &[&str],
    ) -> Result<Box<dyn Subscription>, BusError> {
        Ok(Box::new(self.subscription(Some(group), topics)))
    }

    async fn assign(
        &self,
        group: &str,
        topic: &str,
        _partitions: Option<&[i32]>,
    ) -> Result<Box<dyn Subscription>, BusError> {
        // One partition per topic here: static assignment is the group's own position.
        Ok(Box::new(self.subscription(Some(group), &[topic])))
    }

    async fn read_all(&self, topics: &[&str]) -> Result<Box<dyn Subscription>, BusError> {
        Ok(Box::new(self.subscription(None, topics)))
    }

    async fn partition_count(&self, _topic: &str) -> Result<i32, BusError> {
        Ok(1)
    }

    async fn check_ready(&self) -> Result<(), BusError> {
        Ok(())
    }

    fn name(&self) -> &'static str {
        "memory"
    }
}

struct MemorySubscription {
    bus: MemoryBus,
    group: Option<String>,
    /// (topic, next offset to read)
    positions: Vec<(String, i64)>,
    /// next offset of each topic when the subscription started
    ends: Vec<i64>,
    /// round-robin start, so one busy topic cannot starve the others
    turn: usize,
}

impl MemorySubscription {
    fn try_next(&mut self) -> Option<Message> {
        let inner = self.bus.lock();
        let n = self.positions.len();
        for i in 0..n {
            let idx = (self.turn + i) % n;
            let (topic, pos) = &mut self.positions[idx];
            if let Some(m) = inner.logs.get(topic.as_str()).and_then(|l| l.at(*pos)) {
                *pos = m.offset + 1;
                self.turn = (idx + 1) % n;
                return Some(m.clone());
            }
        }
        None
    }
}

#[async_trait]
impl Subscription for MemorySubscription {
    async fn next(&mut self) -> Result<Message, BusError> {
        let notify = self.bus.notify.clone();
        loop {
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(m) = self.try_next() {
                return Ok(m);
            }
            notified.await;
        }
    }

    fn applied(&mut self, msg: &Message) -> Result<(), BusError> {
        if let Some(g) = &self.group {
            let mut inner = self.bus.lock();
            let slot = inner
                .committed
                .entry((g.clone(), msg.topic.clone()))
                .or_insert(0);
            *slot = (*slot).max(msg.offset + 1);
        }
        Ok(())
    }

    async fn commit(&mut self) -> Result<(), BusError> {
        Ok(())
    }

    async fn next_until_caught_up(&mut self) -> Result<Option<Message>, BusError> {
        // The in-memory log knows its end exactly.
        if self.caught_up() {
            Ok(None)
        } else {
            self.next().await.map(Some)
        }
    }

    fn caught_up(&self) -> bool {
        self.group.is_some()
            || self
                .positions
                .iter()
                .zip(&self.ends)
                .all(|((_, pos), end)| pos >= end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn publish(bus: &MemoryBus, topic: &str, key: &str, body: &str) {
        bus.publish(topic, key, Some(body.as_bytes().to_vec()))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_group_resumes_after_what_it_applied() {
        let bus = MemoryBus::default();
        for i in 0..5 {
            publish(&bus, "t", "k", &i.to_string()).await;
        }
        let mut sub = bus.join_group("g", &["t"]).await.unwrap();
        for _ in 0..3 {
            let m = sub.next().await.unwrap();
            sub.applied(&m).unwrap();
        }
        let _unapplied = sub.next().await.unwrap();
        drop(sub);
        let mut again = bus.join_group("g", &["t"]).await.unwrap();
        assert_eq!(
            again.next().await.unwrap().offset,
            3,
            "the unapplied message comes again"
        );
    }

    #[tokio::test]
    async fn read_all_reports_when_it_caught_up() {
        let bus = MemoryBus::default();
        publish(&bus, "s", "a", "1").await;
        publish(&bus, "s", "b", "2").await;
        let mut sub = bus.read_all(&["s"]).await.unwrap();
        assert!(!sub.caught_up());
        sub.next().await.unwrap();
        sub.next().await.unwrap();
        assert!(sub.caught_up());
    }

    #[tokio::test]
    async fn compacted_topics_keep_the_latest_of_every_key() {
        let bus = MemoryBus::with_retention(4);
        bus.ensure_topics(&[TopicSpec {
            name: "c".into(),
            partitions: 1,
            compacted: true,
            retention_ms: None,
        }])
        .await
        .unwrap();
        for i in 0..20 {
            publish(&bus, "c", &format!("k{}", i % 3), &i.to_string()).await;
        }
        let mut sub = bus.read_all(&["c"]).await.unwrap();
        let mut latest = HashMap::new();
        while !sub.caught_up() {
            let m = sub.next().await.unwrap();
            latest.insert(
                m.key.unwrap(),
                String::from_utf8(m.payload.unwrap().to_vec()).unwrap(),
            );
        }
        assert_eq!(latest["k0"], "18");
        assert_eq!(latest["k1"], "19");
        assert_eq!(latest["k2"], "17");
    }

    #[tokio::test]
    async fn a_waiting_reader_wakes_on_publish() {
        let bus = MemoryBus::default();
        let mut sub = bus.read_all(&["w"]).await.unwrap();
        let b = bus.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            b.publish("w", "k", Some(b"x".to_vec())).await.unwrap();
        });
        let m = tokio::time::timeout(std::time::Duration::from_secs(2), sub.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(m.payload.unwrap().as_ref(), b"x");
    }
}
