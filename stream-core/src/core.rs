//! The stream core's run loop: start-up (the registry, the records of reports and
//! indicators, the daily tallies and the state topic, read together), then one input at a time from the merged
//! stream ([`Inputs`]):
//! the books turn it into effects, the publisher publishes those this instance owns, and
//! only then is the input marked applied so its offsets can be committed.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bus::{Bus, BusError, Message, Subscription, Topics};
use chrono::Utc;
use model::{EntityId, StateRecord};
use serde::{Deserialize, Serialize};
use store::History;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::alerts::RulesConfig;
use crate::books::Books;
use crate::forecaster;
use crate::input::{decode_event, decode_registry, decode_tally, Input, Inputs};
use crate::ownership::Ownership;
use crate::publisher::Publisher;
use crate::reports::ReportsConfig;

/// How a stream-core instance gets its share of the readings topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Assignment {
    /// Explicit partitions (`partitions`, all when unset), offsets committed under `group`:
    /// restarts resume at once on any broker; scale out by giving instances disjoint lists.
    Static,
    /// Kafka consumer-group membership: partitions rebalance automatically between
    /// instances (needs a broker whose coordinator evicts crashed members; tansu 0.6 does not).
    Group,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CoreConfig {
    /// Consumer group whose committed offsets record progress.
    pub group: String,
    pub assignment: Assignment,
    /// Static assignment only: this instance's partitions of the readings topic.
    pub partitions: Option<Vec<i32>>,
    /// Most readings applied per batch.
    pub batch_max: usize,
    /// How long a batch waits for more readings after its first one, ms.
    pub batch_wait_ms: u64,
    /// Alert rules.
    pub rules: RulesConfig,
    /// Field reports: how long closed ones stay live, what counts as a duplicate.
    pub reports: ReportsConfig,
}

impl Default for CoreConfig {
    fn default() -> Self {
        Self {
            group: "ioc-core".into(),
            assignment: Assignment::Static,
            partitions: None,
            batch_max: 2000,
            batch_wait_ms: 2,
            rules: RulesConfig::default(),
            reports: ReportsConfig::default(),
        }
    }
}

/// What a running core reports about itself (for `/readyz`).
#[derive(Debug, Default)]
pub struct CoreStatus {
    started: AtomicBool,
}

impl CoreStatus {
    /// True once the registry and state are loaded and the initial state is published.
    pub fn is_started(&self) -> bool {
        self.started.load(Ordering::Acquire)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// Runs the stream core until `shutdown` resolves (then commits and returns) or the bus fails
/// for good. Aborting the task instead is a crash: a restart resumes without loss.
pub async fn run(
    bus: Arc<dyn Bus>,
    topics: Topics,
    config: CoreConfig,
    status: Arc<CoreStatus>,
    history: Option<Arc<dyn History>>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), CoreError> {
    let ownership = ownership(&*bus, &topics, &config).await?;
    let publisher = Publisher::new(bus.clone(), topics.clone(), ownership.clone());
    let mut books = Books::new(config.rules.clone(), config.reports.clone(), Utc::now());
    // The compacted or whole-record topics are read at once: a restart is ready as soon as
    // the slowest of them is caught up, not after them all in a row.
    let (mut registry, mut reports, mut indicators, mut tallies, (restored, state)) = tokio::try_join!(
        read_to_end(&*bus, &topics.registry),
        read_to_end(&*bus, &topics.reports),
        read_to_end(&*bus, &topics.indicators),
        read_to_end(&*bus, &topics.tallies),
        read_state(&*bus, &topics.state),
    )?;
    let mut effects = Vec::new();
    for m in registry.0.drain(..) {
        if let Some(change) = decode_registry(&m) {
            effects.extend(books.load(Input::Registry(change), Utc::now()));
        }
    }
    // Field reports: the whole record of truth, folded again at every start by every
    // instance (each publishes the reports it owns).
    let batch = reports.0.drain(..).map(|m| decode_event(&m)).collect();
    effects.extend(books.load(Input::Reports(batch), Utc::now()));
    // Indicator values and targets: likewise the whole record, folded at every start.
    let batch = indicators.0.drain(..).map(|m| decode_event(&m)).collect();
    effects.extend(books.load(Input::Indicators(batch), Utc::now()));
    // Daily tallies of cameras, stations, rivers and alerts, for their derived indicators.
    let batch = tallies
        .0
        .drain(..)
        .filter_map(|m| decode_tally(&m))
        .collect();
    effects.extend(books.load(Input::Tallies(batch), Utc::now()));
    effects.extend(books.start(&restored, Utc::now()));
    publisher.apply(effects).await?;
    drop(restored);
    info!(
        stations = books.station_count(),
        units = books.unit_count(),
        reports = books.report_count(),
        indicator_values = books.indicator_value_count(),
        tallies = books.tally_count(),
        partial = ownership.is_partial(),
        "stream core started"
    );

    let partitions = config.partitions.as_deref();
    // Each station's state records the readings it covers. Where a station's last kept
    // state covers less than the group committed (a broker that lost acknowledged state),
    // reading starts there, a few batches back at most, and what is covered is skipped.
    let covered = books.readings_covered_up_to(|p| ownership.owns_partition(p));
    let max_rewind = 8 * config.batch_max.max(1) as i64;
    let readings = match config.assignment {
        Assignment::Static => {
            bus.assign_rewound(
                &config.group,
                &topics.readings,
                partitions,
                &covered,
                max_rewind,
            )
            .await?
        }
        Assignment::Group => {
            // The group's assignment is this instance's ownership, changed before partitions
            // are given up and after new ones are taken (see the loop for what a gain does).
            let (owned, topic) = (ownership.clone(), topics.readings.clone());
            let on_assign: bus::OnAssign = Arc::new(move |held: &[(String, i32)]| {
                owned.hold(held.iter().filter(|(t, _)| *t == topic).map(|(_, p)| *p));
            });
            bus.join_group_watched(&config.group, &[&topics.readings], on_assign)
                .await?
        }
    };
    // The other inputs follow ownership too: statically their partitions are the same as the
    // readings'; in a group every partition is read and what this instance does not own
    // now is passed over (`Inputs` checks each key).
    let partitions = match config.assignment {
        Assignment::Static => partitions,
        Assignment::Group => None,
    };
    // Acknowledgements and clears from the API, keyed by the entity an alert is about, so
    // the owner's partitions carry them; the core's own events come back too and change
    // nothing.
    let alerts_group = format!("{}-alerts", config.group);
    let alert_actions = bus
        .assign(&alerts_group, &topics.alerts, partitions)
        .await?;
    // Camera states from the video workers (the latest is restored from ioc.state, so a
    // fresh group starts at the end of the topic's retention and skips nothing it needs).
    let cameras_group = format!("{}-cameras", config.group);
    let camera_status = bus
        .assign(&cameras_group, &topics.cameras, partitions)
        .await?;
    // Salinity forecasts, made beside the loop from the history store, for owned stations.
    let owned_targets = |books: &Books| -> Vec<forecaster::Target> {
        books
            .forecast_targets()
            .into_iter()
            .filter(|t| ownership.owns(&EntityId::station(&t.station)))
            .collect()
    };
    let (forecast_tx, forecasts) = mpsc::channel(64);
    let (targets, targets_rx) = watch::channel(owned_targets(&books));
    let rules = &config.rules;
    if let Some(h) = history.filter(|_| rules.enabled && rules.forecast_every_s > 0) {
        tokio::spawn(forecaster::run(
            h,
            targets_rx,
            Duration::from_secs(rules.forecast_every_s),
            rules.forecast_horizon_h.clamp(1, 72),
            forecast_tx,
        ));
    } else {
        drop(forecast_tx);
    }
    let tick = config.rules.enabled.then(|| {
        let mut t = tokio::time::interval(Duration::from_millis(config.rules.tick_ms.max(100)));
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        t
    });
    let mut inputs = Inputs::new(
        registry.1,
        reports.1,
        indicators.1,
        readings,
        alert_actions,
        camera_status,
        ownership.is_partial().then_some(state),
        ownership.is_partial().then_some(tallies.1),
        forecasts,
        tick,
        ownership.clone(),
        (config.batch_max, config.batch_wait_ms),
    );
    status.started.store(true, Ordering::Release);
    tokio::pin!(shutdown);
    let mut held = (ownership.generation(), ownership.partitions());
    loop {
        let input = tokio::select! {
            biased;
            _ = &mut shutdown => {
                inputs.commit().await?;
                info!("stream core stopped");
                return Ok(());
            }
            i = inputs.next() => i?,
        };
        // A group rebalance gave this instance partitions: before anything read from them is
        // applied, the books take the state topic as it is now, as at a restart (the last
        // owner's records, its open alerts; readings its state covers are then skipped), and
        // what differs is published by its new owner.
        let mut registry_changed = matches!(input, Input::Registry(_));
        if ownership.generation() != held.0 {
            let now_held = ownership.partitions();
            let gained = match (&held.1, &now_held) {
                (Some(before), Some(now)) => now.difference(before).count(),
                (Some(_), None) => 1,
                (None, _) => 0,
            };
            held = (ownership.generation(), now_held);
            if gained > 0 {
                let (restored, _) = read_state(&*bus, &topics.state).await?;
                let effects = books.start(&restored, Utc::now());
                info!(
                    gained,
                    held = ?held.1,
                    records = restored.len(),
                    republished = effects.len(),
                    "group partitions gained: state taken over"
                );
                publisher.apply(effects).await?;
                // Actions and camera statuses of the gained partitions were passed over while
                // another instance owned them, and those it had not applied when it died
                // would be lost: read every partition again from the group's commits, which
                // are the owners' (what this instance applied is committed first). An action
                // applied twice changes nothing the second time.
                inputs.alert_actions.commit().await?;
                inputs.camera_status.commit().await?;
                inputs.alert_actions = bus.assign(&alerts_group, &topics.alerts, None).await?;
                inputs.camera_status = bus.assign(&cameras_group, &topics.cameras, None).await?;
            }
            registry_changed = true; // forecast targets follow ownership
        }
        let effects = books.apply(input, Utc::now());
        publisher.apply(effects).await?;
        inputs.applied()?;
        if registry_changed {
            let now = owned_targets(&books);
            targets.send_if_modified(|t| {
                let changed = *t != now;
                *t = now;
                changed
            });
        }
    }
}

/// Which entities this instance owns: with `core.partitions` naming some of the input
/// topics' partitions, those whose keys hash there; in a consumer group, those of the
/// partitions the group assigns it (none until it does). Every input topic must have as
/// many partitions as the readings topic, or ownership would differ between them.
async fn ownership(
    bus: &dyn Bus,
    topics: &Topics,
    config: &CoreConfig,
) -> Result<Ownership, BusError> {
    let count = || bus.partition_count(&topics.readings);
    let ownership = match (config.assignment, config.partitions.as_deref()) {
        (Assignment::Group, listed) => {
            if listed.is_some() {
                warn!("core.partitions is ignored with core.assignment = \"group\"");
            }
            Ownership::grouped(count().await?)
        }
        (Assignment::Static, None) => return Ok(Ownership::all()),
        (Assignment::Static, Some(partitions)) => Ownership::of(Some(partitions), count().await?),
    };
    let count = count().await?;
    if ownership.is_partial() {
        for t in [&topics.cameras, &topics.reports, &topics.alerts] {
            let n = bus.partition_count(t).await?;
            if n != count {
                return Err(BusError::Refused(format!(
                    "core.partitions splits {} ({count} partitions) but {t} has {n}: every \
                     input topic needs the same partition count",
                    topics.readings
                )));
            }
        }
    }
    Ok(ownership)
}

/// Every message of `topic` up to its end now, and the subscription to follow it after.
async fn read_to_end(
    bus: &dyn Bus,
    topic: &str,
) -> Result<(Vec<Message>, Box<dyn Subscription>), BusError> {
    let mut sub = bus.read_all(&[topic]).await?;
    let mut out = Vec::new();
    while let Some(m) = sub.next_until_caught_up().await? {
        out.push(m);
    }
    Ok((out, sub))
}

/// Every record of the state topic, latest per entity, and the subscription to follow it.
async fn read_state(
    bus: &dyn Bus,
    topic: &str,
) -> Result<(HashMap<EntityId, StateRecord>, Box<dyn Subscription>), BusError> {
    let mut sub = bus.read_all(&[topic]).await?;
    let mut out = HashMap::new();
    while let Some(m) = sub.next_until_caught_up().await? {
        let Some(key) = m.key.as_deref().and_then(|k| EntityId::parse(k).ok()) else {
            continue;
        };
        match m
            .payload
            .as_deref()
            .map(serde_json::from_slice::<StateRecord>)
        {
            Some(Ok(r)) => {
                out.insert(key, r);
            }
            Some(Err(e)) => warn!(entity = %key, error = %e, "unreadable state record skipped"),
            None => {
                out.remove(&key);
            }
        }
    }
    Ok((out, sub))
}
