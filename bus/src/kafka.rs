//! Kafka through rdkafka (bundled librdkafka): an idempotent producer with `acks=all`, group
//! consumers that store offsets only for messages marked applied (auto-committed from the
//! store), and group-less readers of whole compacted topics.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message as _;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use crate::{Bus, BusError, Delivered, Message, OnAssign, Subscription, TopicSpec};

/// A consumer's context: a watched group member tells its owner which partitions it holds
/// ([`Bus::join_group_watched`]); other consumers carry none.
#[derive(Default)]
struct Watch(Option<OnAssign>);

impl ClientContext for Watch {}

impl ConsumerContext for Watch {
    /// Before partitions are given up, the owner stops acting on them.
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let (Some(tell), Rebalance::Revoke(gone)) = (&self.0, rebalance) {
            let gone = pairs(gone);
            let kept: Vec<(String, i32)> = consumer
                .assignment()
                .map(|a| pairs(&a))
                .unwrap_or_default()
                .into_iter()
                .filter(|p| !gone.contains(p))
                .collect();
            info!(
                kept = kept.len(),
                revoked = gone.len(),
                "group partitions revoked"
            );
            tell(&kept);
        }
    }

    /// After partitions are taken, the owner acts on them.
    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let (Some(tell), Rebalance::Assign(_)) = (&self.0, rebalance) {
            let held = consumer.assignment().map(|a| pairs(&a)).unwrap_or_default();
            info!(held = held.len(), "group partitions assigned");
            tell(&held);
        }
    }
}

fn pairs(list: &TopicPartitionList) -> Vec<(String, i32)> {
    list.elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition()))
        .collect()
}

type BusConsumer = StreamConsumer<Watch>;

/// How many offsets before its resume point an assigned partition is fetched from, so that
/// the record batch holding the resume point comes whole (see `assign_rewound`): more than a
/// producer puts in one batch.
const BATCH_SLACK: i64 = 20_000;
/// How long a reader past the watermarks waits for stragglers before it counts as caught up.
const QUIET_WINDOW: Duration = Duration::from_millis(500);
/// A topic that is never quiet for a `QUIET_WINDOW` (a province's state topic is not) counts
/// as caught up this long after the watermarks were passed: the stragglers of tansu's last
/// batch come in the same fetches, long before.
const SETTLE_MAX: Duration = Duration::from_secs(3);

/// Connection settings; any librdkafka property can be added under `extra`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct KafkaConfig {
    /// `host:port,host:port`
    pub brokers: String,
    pub client_id: String,
    /// How long a publish may wait for the broker's acknowledgement before it fails.
    pub publish_timeout_ms: u64,
    pub replication_factor: i32,
    /// Group session timeout: how soon a crashed consumer's partitions are reassigned.
    pub session_timeout_ms: u64,
    /// Static group membership (`group.instance.id`): a restarted instance with the same id
    /// takes its partitions back at once instead of waiting for the old session to expire.
    /// Give each stream-core instance its own stable id (e.g. the pod name).
    pub group_instance_id: Option<String>,
    /// Longest gap between two polls of a group consumer before it leaves the group; also the
    /// rebalance timeout the coordinator waits for members to rejoin.
    pub max_poll_interval_ms: u64,
    /// Longest time the broker may hold a fetch waiting for data.
    pub fetch_wait_max_ms: u64,
    /// How often applied offsets are committed. Whatever was applied since the last commit
    /// is read again after a crash (and skipped as already applied).
    pub commit_interval_ms: u64,
    /// Extra librdkafka properties (security.protocol, sasl.*, ...).
    pub extra: HashMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".into(),
            client_id: "ioc".into(),
            publish_timeout_ms: 10_000,
            replication_factor: 1,
            session_timeout_ms: 10_000,
            group_instance_id: None,
            max_poll_interval_ms: 30_000,
            fetch_wait_max_ms: 20,
            commit_interval_ms: 500,
            extra: HashMap::new(),
        }
    }
}

impl KafkaConfig {
    fn client(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("client.id", &self.client_id);
        for (k, v) in &self.extra {
            c.set(k, v);
        }
        c
    }
}

/// See the module docs.
pub struct KafkaBus {
    config: KafkaConfig,
    /// Replaced when it is fenced or fatally failed (see `renew_producer_if_failed`).
    producer: std::sync::RwLock<FutureProducer>,
}

/// An error librdkafka recovers from by itself (it reconnects and retries): a broker down or
/// unreachable, a leader moving, a request timing out.
fn is_transient(e: &KafkaError) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(
            C::AllBrokersDown
                | C::BrokerTransportFailure
                | C::BrokerNotAvailable
                | C::NetworkException
                | C::LeaderNotAvailable
                | C::NotLeaderForPartition
                | C::RequestTimedOut
                | C::OperationTimedOut
                | C::Resolve
        )
    )
}

fn unavailable(e: KafkaError) -> BusError {
    BusError::Unavailable(e.to_string())
}

impl KafkaBus {
    pub fn connect(config: KafkaConfig) -> Result<Self, BusError> {
        let producer = Self::new_producer(&config)?;
        info!(brokers = %config.brokers, "kafka producer created");
        Ok(Self {
            config,
            producer: std::sync::RwLock::new(producer),
        })
    }

    fn new_producer(config: &KafkaConfig) -> Result<FutureProducer, BusError> {
        config
            .client()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            // Kafka's own key hashing (the Java client's), so an instance can tell from a key
            // which partition, and so which instance, an entity belongs to.
            .set("partitioner", "murmur2_random")
            .set("message.timeout.ms", config.publish_timeout_ms.to_string())
            .create()
            .map_err(|e| BusError::Refused(format!("cannot create producer: {e}")))
    }

    fn producer(&self) -> FutureProducer {
        self.producer
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// An idempotent producer whose records timed out during an outage may be fenced or
    /// declared fatally failed when the broker returns (tansu answers its new epoch with
    /// ProducerFenced); librdkafka then refuses every later record. Such a producer is
    /// replaced by a fresh one, once, whoever notices first; the failed records are the
    /// caller's to retry.
    fn renew_producer_if_failed(&self, failed: &FutureProducer, error: &KafkaError) {
        let fenced = error.rdkafka_error_code() == Some(RDKafkaErrorCode::ProducerFenced);
        let Some((code, reason)) = failed
            .client()
            .fatal_error()
            .or_else(|| fenced.then(|| (RDKafkaErrorCode::ProducerFenced, error.to_string())))
        else {
            return;
        };
        let mut current = self.producer.write().unwrap_or_else(|e| e.into_inner());
        if current.client().native_ptr() != failed.client().native_ptr() {
            return; // already replaced
        }
        match Self::new_producer(&self.config) {
            Ok(fresh) => {
                warn!(?code, %reason, "the producer failed for good; a new one takes over");
                metrics::counter!("ioc_bus_producer_renewals_total").increment(1);
                *current = fresh;
            }
            Err(e) => warn!(error = %e, "the producer failed for good and cannot be renewed yet"),
        }
    }

    /// A consumer whose offsets are committed (auto-commit of stored offsets only, stored
    /// when the caller marks a message applied). With `member`, it joins the group: session,
    /// heartbeat, rebalance timeout and static membership apply.
    fn committing_consumer(
        &self,
        group: &str,
        member: bool,
        watch: Watch,
    ) -> Result<BusConsumer, BusError> {
        let session = self.config.session_timeout_ms.to_string();
        let heartbeat = (self.config.session_timeout_ms / 4).max(500).to_string();
        let max_poll = self.config.max_poll_interval_ms.to_string();
        let commit_every = self.config.commit_interval_ms.max(1).to_string();
        let mut settings = vec![
            ("enable.auto.commit", "true"),
            ("enable.auto.offset.store", "false"),
            ("auto.commit.interval.ms", commit_every.as_str()),
        ];
        if member {
            // A crashed member's partitions move to the others after the session timeout.
            settings.push(("session.timeout.ms", &session));
            settings.push(("heartbeat.interval.ms", &heartbeat));
            // Also the rebalance timeout a coordinator waits for members to rejoin.
            settings.push(("max.poll.interval.ms", &max_poll));
            if let Some(id) = self.config.group_instance_id.as_deref() {
                settings.push(("group.instance.id", id));
            }
        }
        self.consumer(group, &settings, watch)
    }

    fn consumer(
        &self,
        group: &str,
        extra: &[(&str, &str)],
        watch: Watch,
    ) -> Result<BusConsumer, BusError> {
        let mut c = self.config.client();
        c.set("group.id", group)
            // No transactions are used: read_uncommitted reads the same records, and tansu's
            // last stable offset lags its high watermark.
            .set("isolation.level", "read_uncommitted")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            // How long a fetch may wait for data: the floor of end-to-end latency on brokers
            // that hold fetches for the full wait (tansu does).
            .set(
                "fetch.wait.max.ms",
                self.config.fetch_wait_max_ms.to_string(),
            );
        for (k, v) in extra {
            c.set(*k, *v);
        }
        c.create_with_context(watch)
            .map_err(|e| BusError::Refused(format!("cannot create consumer: {e}")))
    }

    /// A group member on `topics`, its rebalances told through `watch`.
    async fn join(
        &self,
        group: &str,
        topics: &[&str],
        watch: Watch,
    ) -> Result<Box<dyn Subscription>, BusError> {
        let consumer = self.committing_consumer(group, true, watch)?;
        consumer.subscribe(topics).map_err(unavailable)?;
        info!(%group, ?topics, "joined consumer group");
        Ok(Box::new(KafkaSubscription {
            consumer,
            grouped: true,
            ends: HashMap::new(),
            settle_by: None,
            skip_below: Vec::new(),
        }))
    }
}

#[async_trait]
impl Bus for KafkaBus {
    async fn publish(
        &self,
        topic: &str,
        key: &str,
        payload: Option<Vec<u8>>,
    ) -> Result<Delivered, BusError> {
        let mut record = FutureRecord::<str, [u8]>::to(topic).key(key);
        if let Some(p) = payload.as_deref() {
            record = record.payload(p);
        }
        let queue_wait = Duration::from_millis(self.config.publish_timeout_ms);
        let producer = self.producer();
        match producer.send(record, queue_wait).await {
            Ok(d) => Ok(Delivered {
                partition: d.partition,
                offset: d.offset,
            }),
            Err((e, _)) => {
                self.renew_producer_if_failed(&producer, &e);
                Err(unavailable(e))
            }
        }
    }

    async fn ensure_topics(&self, specs: &[TopicSpec]) -> Result<(), BusError> {
        // Only what is missing is created: topics an operator made beforehand (a principal
        // without the right to create them, or a broker without CreateTopics) are left be.
        let existing = tokio::task::spawn_blocking({
            let cfg = self.config.clone();
            move || topic_names(&cfg)
        })
        .await
        .map_err(|e| BusError::Unavailable(e.to_string()))??;
        let specs: Vec<&TopicSpec> = specs
            .iter()
            .filter(|s| !existing.contains(&s.name))
            .collect();
        if specs.is_empty() {
            return Ok(());
        }
        let admin: AdminClient<DefaultClientContext> = self
            .config
            .client()
            .create()
            .map_err(|e| BusError::Refused(format!("cannot create admin client: {e}")))?;
        let retention: Vec<String> = specs
            .iter()
            .map(|s| s.retention_ms.unwrap_or(0).to_string())
            .collect();
        let new_topics: Vec<NewTopic> = specs
            .iter()
            .zip(&retention)
            .map(|(s, r)| {
                let mut t = NewTopic::new(
                    &s.name,
                    s.partitions,
                    TopicReplication::Fixed(self.config.replication_factor),
                );
                t = t.set(
                    "cleanup.policy",
                    if s.compacted { "compact" } else { "delete" },
                );
                if s.retention_ms.is_some() {
                    t = t.set("retention.ms", r);
                }
                t
            })
            .collect();
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let results = admin
            .create_topics(&new_topics, &opts)
            .await
            .map_err(unavailable)?;
        for r in results {
            match r {
                Ok(name) => info!(topic = %name, "topic created"),
                Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => {
                    debug!(topic = %name, "topic exists")
                }
                Err((name, code)) => {
                    return Err(BusError::Refused(format!(
                        "cannot create topic {name}: {code}"
                    )))
                }
            }
        }
        Ok(())
    }

    async fn join_group(
        &self,
        group: &str,
        topics: &[&str],
    ) -> Result<Box<dyn Subscription>, BusError> {
        self.join(group, topics, Watch::default()).await
    }

    async fn join_group_watched(
        &self,
        group: &str,
        topics: &[&str],
        on_assign: OnAssign,
    ) -> Result<Box<dyn Subscription>, BusError> {
        self.join(group, topics, Watch(Some(on_assign))).await
    }

    async fn assign(
        &self,
        group: &str,
        topic: &str,
        partitions: Option<&[i32]>,
    ) -> Result<Box<dyn Subscription>, BusError> {
        self.assign_rewound(group, topic, partitions, &BTreeMap::new(), 0)
            .await
    }

    async fn assign_rewound(
        &self,
        group: &str,
        topic: &str,
        partitions: Option<&[i32]>,
        not_after: &BTreeMap<i32, i64>,
        max_rewind: i64,
    ) -> Result<Box<dyn Subscription>, BusError> {
        let consumer = self.committing_consumer(group, false, Watch::default())?;
        let all = tokio::task::spawn_blocking({
            let cfg = self.config.clone();
            let topics = vec![topic.to_string()];
            move || watermarks(&cfg, &topics)
        })
        .await
        .map_err(|e| BusError::Unavailable(e.to_string()))??;
        let mut chosen: Vec<i32> = all.keys().map(|(_, p)| *p).collect();
        if let Some(wanted) = partitions {
            if let Some(missing) = wanted.iter().find(|p| !chosen.contains(p)) {
                return Err(BusError::Refused(format!(
                    "topic {topic} has no partition {missing}"
                )));
            }
            chosen = wanted.to_vec();
        }
        chosen.sort_unstable();
        let mut wanted = TopicPartitionList::new();
        for p in &chosen {
            wanted
                .add_partition_offset(topic, *p, Offset::Stored)
                .map_err(unavailable)?;
        }
        // The group's committed offsets: where each partition resumes.
        let committed = consumer
            .committed_offsets(wanted.clone(), Duration::from_secs(10))
            .map_err(unavailable)?;
        let mut tpl = TopicPartitionList::new();
        let mut skip_below = Vec::new();
        for p in &chosen {
            let stored = committed
                .find_partition(topic, *p)
                .map(|e| e.offset())
                .unwrap_or(Offset::Stored);
            let resume = match (stored, not_after.get(p)) {
                (Offset::Offset(c), Some(&n)) if n < c && max_rewind > 0 => {
                    let from = n.max(c - max_rewind);
                    info!(%group, %topic, partition = p, committed = c, from,
                        "starting before the committed offset: what it covers was not all kept");
                    Some(from)
                }
                (Offset::Offset(c), _) => Some(c),
                // None committed: auto.offset.reset=earliest applies.
                _ => None,
            };
            let start = match resume {
                // A committed offset usually falls inside a record batch. A fetch from there
                // returns that whole batch on Apache Kafka, but only the batches after it on
                // tansu, which would skip the rest of the batch: ask from up to a batch's worth
                // earlier and drop what precedes `resume` here, as librdkafka does.
                Some(resume) => {
                    let low = all.get(&(topic.to_string(), *p)).map_or(0, |(low, _)| *low);
                    skip_below.push((*p, resume));
                    Offset::Offset((resume - BATCH_SLACK).max(low).min(resume))
                }
                None => Offset::Stored,
            };
            tpl.add_partition_offset(topic, *p, start)
                .map_err(unavailable)?;
        }
        consumer.assign(&tpl).map_err(unavailable)?;
        info!(%group, %topic, partitions = ?chosen, "assigned partitions");
        Ok(Box::new(KafkaSubscription {
            consumer,
            grouped: true,
            ends: HashMap::new(),
            settle_by: None,
            skip_below,
        }))
    }

    async fn read_all(&self, topics: &[&str]) -> Result<Box<dyn Subscription>, BusError> {
        // A throwaway group id: librdkafka wants one, but nothing is ever committed to it.
        let group = format!("{}-reader-{}", self.config.client_id, uuid_like());
        let consumer =
            self.consumer(&group, &[("enable.auto.commit", "false")], Watch::default())?;
        let topics: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
        let ends = tokio::task::spawn_blocking({
            let consumer_cfg = self.config.clone();
            let topics = topics.clone();
            move || watermarks(&consumer_cfg, &topics)
        })
        .await
        .map_err(|e| BusError::Unavailable(e.to_string()))??;
        let mut tpl = TopicPartitionList::new();
        for (topic, partition) in ends.keys() {
            tpl.add_partition_offset(topic, *partition, Offset::Beginning)
                .map_err(unavailable)?;
        }
        consumer.assign(&tpl).map_err(unavailable)?;
        let ends = ends
            .into_iter()
            .filter(|(_, (low, high))| high > low)
            .map(|(k, (_, h))| (k, h))
            .collect();
        Ok(Box::new(KafkaSubscription {
            consumer,
            grouped: false,
            ends,
            settle_by: None,
            skip_below: Vec::new(),
        }))
    }

    async fn partition_count(&self, topic: &str) -> Result<i32, BusError> {
        let producer = self.producer();
        let topic = topic.to_string();
        tokio::task::spawn_blocking(move || {
            let md = producer
                .client()
                .fetch_metadata(Some(&topic), Duration::from_secs(10))
                .map_err(unavailable)?;
            let n = md
                .topics()
                .iter()
                .filter(|t| t.name() == topic && t.error().is_none())
                .map(|t| t.partitions().len())
                .next()
                .unwrap_or(0);
            if n == 0 {
                return Err(BusError::Unavailable(format!(
                    "topic {topic} has no partitions (does it exist?)"
                )));
            }
            i32::try_from(n)
                .map_err(|_| BusError::Refused(format!("topic {topic}: {n} partitions")))
        })
        .await
        .map_err(|e| BusError::Unavailable(e.to_string()))?
    }

    async fn check_ready(&self) -> Result<(), BusError> {
        let producer = self.producer();
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(None, Duration::from_secs(2))
                .map(|_| ())
                .map_err(unavailable)
        })
        .await
        .map_err(|e| BusError::Unavailable(e.to_string()))?
    }

    fn name(&self) -> &'static str {
        "kafka"
    }
}

/// (topic, partition) -> (low, high) watermarks, for every partition of `topics`.
/// (topic, partition) -> (low, high) watermarks.
type Watermarks = HashMap<(String, i32), (i64, i64)>;

/// A consumer that only asks the cluster about topics (blocking calls).
fn probe(cfg: &KafkaConfig) -> Result<rdkafka::consumer::BaseConsumer, BusError> {
    cfg.client()
        .set("group.id", format!("{}-probe", cfg.client_id))
        .set("isolation.level", "read_uncommitted")
        .create()
        .map_err(|e| BusError::Refused(format!("cannot create consumer: {e}")))
}

/// The names of the topics the cluster has.
fn topic_names(cfg: &KafkaConfig) -> Result<std::collections::HashSet<String>, BusError> {
    let md = probe(cfg)?
        .fetch_metadata(None, Duration::from_secs(10))
        .map_err(unavailable)?;
    Ok(md
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .map(|t| t.name().to_string())
        .collect())
}

fn watermarks(cfg: &KafkaConfig, topics: &[String]) -> Result<Watermarks, BusError> {
    let probe = probe(cfg)?;
    let timeout = Duration::from_secs(10);
    let mut out = HashMap::new();
    for t in topics {
        // A topic created a moment ago may not show its partitions yet: wait for them,
        // or the reader would follow nothing, forever.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let partitions: Vec<i32> = loop {
            let md = probe
                .fetch_metadata(Some(t), timeout)
                .map_err(unavailable)?;
            let found: Vec<i32> = md
                .topics()
                .iter()
                .filter(|mt| mt.name() == t && mt.error().is_none())
                .flat_map(|mt| mt.partitions().iter().map(|p| p.id()))
                .collect();
            if !found.is_empty() {
                break found;
            }
            if std::time::Instant::now() > deadline {
                return Err(BusError::Unavailable(format!(
                    "topic {t} has no partitions (does it exist?)"
                )));
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        for p in partitions {
            let wm = probe.fetch_watermarks(t, p, timeout).map_err(unavailable)?;
            out.insert((t.clone(), p), wm);
        }
    }
    Ok(out)
}

fn uuid_like() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:x}-{}", nanos, std::process::id())
}

struct KafkaSubscription {
    consumer: BusConsumer,
    grouped: bool,
    /// read_all only: (topic, partition) -> high watermark at start, removed once reached
    ends: HashMap<(String, i32), i64>,
    /// read_all only: when waiting for stragglers past the watermarks must end.
    settle_by: Option<tokio::time::Instant>,
    /// assign only: (partition, offset) where each partition resumes; what precedes it was
    /// fetched only to get the whole batch holding it, and is dropped.
    skip_below: Vec<(i32, i64)>,
}

#[async_trait]
impl Subscription for KafkaSubscription {
    async fn next(&mut self) -> Result<Message, BusError> {
        let m = loop {
            match self.consumer.recv().await {
                Ok(m) if !self.skip_below.is_empty() => {
                    let (partition, offset) = (m.partition(), m.offset());
                    match self.skip_below.iter().position(|(p, _)| *p == partition) {
                        Some(i) if offset < self.skip_below[i].1 => continue,
                        Some(i) => {
                            self.skip_below.swap_remove(i);
                            break m;
                        }
                        None => break m,
                    }
                }
                Ok(m) => break m,
                // librdkafka reports a broker outage as errors on the consumer while it keeps
                // reconnecting: the reader waits it out instead of ending.
                Err(e) if is_transient(&e) => {
                    metrics::counter!("ioc_bus_consume_transient_errors_total").increment(1);
                    debug!(error = %e, "broker unreachable; the reader waits");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(unavailable(e)),
            }
        };
        let msg = Message {
            topic: m.topic().to_string(),
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            payload: m.payload().map(Bytes::copy_from_slice),
        };
        if !self.grouped {
            let k = (msg.topic.clone(), msg.partition);
            if self.ends.get(&k).is_some_and(|end| msg.offset + 1 >= *end) {
                self.ends.remove(&k);
            }
        }
        Ok(msg)
    }

    fn applied(&mut self, msg: &Message) -> Result<(), BusError> {
        if self.grouped {
            match self
                .consumer
                .store_offset(&msg.topic, msg.partition, msg.offset)
            {
                Ok(()) => {}
                // Given up in a rebalance meanwhile: its next holder resumes from the last
                // commit and applies it again (an owner's books skip what they cover).
                Err(KafkaError::StoreOffset(
                    RDKafkaErrorCode::State | RDKafkaErrorCode::UnknownPartition,
                )) => {
                    debug!(topic = %msg.topic, partition = msg.partition, "offset of a partition no longer held")
                }
                Err(e) => return Err(unavailable(e)),
            }
        }
        Ok(())
    }

    async fn commit(&mut self) -> Result<(), BusError> {
        if !self.grouped {
            return Ok(());
        }
        match self.consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) => Ok(()),
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => Ok(()),
            Err(e) => Err(unavailable(e)),
        }
    }

    fn caught_up(&self) -> bool {
        self.grouped || self.ends.is_empty()
    }

    async fn next_until_caught_up(&mut self) -> Result<Option<Message>, BusError> {
        if !self.caught_up() {
            return self.next().await.map(Some);
        }
        let settle_by = *self
            .settle_by
            .get_or_insert_with(|| tokio::time::Instant::now() + SETTLE_MAX);
        let wait =
            QUIET_WINDOW.min(settle_by.saturating_duration_since(tokio::time::Instant::now()));
        if wait.is_zero() {
            return Ok(None);
        }
        match tokio::time::timeout(wait, self.next()).await {
            Ok(m) => m.map(Some),
            Err(_) => Ok(None),
        }
    }
}
