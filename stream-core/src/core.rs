//! The stream core's run loop: start-up (registry, then state, from the compacted topics),
//! then readings in small batches: apply each, publish every changed state once, and only
//! then mark the batch applied so its offsets can be committed.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bus::{Bus, BusError, Message, Subscription, Topics};
use chrono::{DateTime, Utc};
use model::alert::{Alert, AlertAction};
use model::envelope::original_value;
use model::geoindex::BoxIndex;
use model::state::geometry_bbox;
use model::{
    EntityId, Envelope, EventKind, FieldError, Layer, LocalId, Reading, RegistryEntry, StateRecord,
    StationKind,
};
use serde::{Deserialize, Serialize};
use store::History;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::alerts::{AlertBook, RulesConfig, Transition};
use crate::cameras::CameraBook;
use crate::directory::Directory;
use crate::forecaster;
use crate::reports::{Changed, ReportBook, ReportsConfig, UnitCounts};
use crate::rivers;
use crate::rules;
use crate::station::{ApplyOutcome, StationState};

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
    let mut core = Core::new(
        bus.clone(),
        topics.clone(),
        config.rules.clone(),
        config.reports.clone(),
    );
    let mut registry = bus.read_all(&[&topics.registry]).await?;
    while let Some(m) = registry.next_until_caught_up().await? {
        core.registry_message(&m, false).await?;
    }
    core.dir.refresh_index();
    // Field reports: the whole record of truth, folded again at every start.
    let mut reports = bus.read_all(&[&topics.reports]).await?;
    while let Some(m) = reports.next_until_caught_up().await? {
        core.report_message(&m, &mut Changed::default()).await?;
    }
    let restored = read_state(&*bus, &topics.state).await?;
    core.start(restored).await?;
    info!(
        stations = core.stations.len(),
        units = core.dir.units.len(),
        reports = core.reports.len(),
        "stream core started"
    );

    let mut readings = match config.assignment {
        Assignment::Static => {
            bus.assign(
                &config.group,
                &topics.readings,
                config.partitions.as_deref(),
            )
            .await?
        }
        Assignment::Group => bus.join_group(&config.group, &[&topics.readings]).await?,
    };
    // Acknowledgements and clears from the API; the core's own events come back too and
    // change nothing.
    let mut alert_actions = bus
        .assign(&format!("{}-alerts", config.group), &topics.alerts, None)
        .await?;
    // Camera states from the video workers (the latest is restored from ioc.state, so a
    // fresh group starts at the end of the topic's retention and skips nothing it needs).
    let mut camera_status = bus
        .assign(&format!("{}-cameras", config.group), &topics.cameras, None)
        .await?;
    // Salinity forecasts, made beside this loop from the history store.
    let (forecast_tx, mut forecasts) = mpsc::channel(64);
    let (targets, targets_rx) = watch::channel(core.forecast_targets());
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
    let mut tick = tokio::time::interval(Duration::from_millis(config.rules.tick_ms.max(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    status.started.store(true, Ordering::Release);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            _ = &mut shutdown => {
                readings.commit().await?;
                alert_actions.commit().await?;
                camera_status.commit().await?;
                info!("stream core stopped");
                return Ok(());
            }
            m = alert_actions.next() => {
                let m = m?;
                core.alert_action(&m).await?;
                alert_actions.applied(&m)?;
            }
            m = camera_status.next() => {
                let m = m?;
                core.camera_message(&m).await?;
                camera_status.applied(&m)?;
            }
            _ = tick.tick(), if config.rules.enabled => {
                core.clock_rules().await?;
            }
            m = reports.next() => {
                let batch = collect_batch(m?, &mut *reports, config.batch_max, config.batch_wait_ms).await?;
                let mut changed = Changed::default();
                for m in &batch {
                    core.report_message(m, &mut changed).await?;
                }
                core.publish_reports(changed).await?;
            }
            m = registry.next() => {
                let m = m?;
                core.registry_message(&m, true).await?;
                let now = core.forecast_targets();
                targets.send_if_modified(|t| {
                    let changed = *t != now;
                    *t = now;
                    changed
                });
            }
            Some((station, forecast)) = forecasts.recv() => {
                core.forecast(&station, forecast).await?;
            }
            m = readings.next() => {
                let batch =
                    collect_batch(m?, &mut *readings, config.batch_max, config.batch_wait_ms).await?;
                core.readings(&batch).await?;
                for m in &batch {
                    readings.applied(m)?;
                }
            }
        }
    }
}

/// `first` and whatever else arrives within `wait_ms`, up to `max` messages.
pub(crate) async fn collect_batch(
    first: Message,
    sub: &mut dyn Subscription,
    max: usize,
    wait_ms: u64,
) -> Result<Vec<Message>, BusError> {
    let mut batch = vec![first];
    let deadline = tokio::time::Instant::now() + Duration::from_millis(wait_ms);
    while batch.len() < max {
        match tokio::time::timeout_at(deadline, sub.next()).await {
            Ok(m) => batch.push(m?),
            Err(_) => break,
        }
    }
    Ok(batch)
}

/// Every record of the state topic, latest per entity.
async fn read_state(
    bus: &dyn Bus,
    topic: &str,
) -> Result<HashMap<EntityId, StateRecord>, BusError> {
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
    Ok(out)
}

struct Core {
    bus: Arc<dyn Bus>,
    topics: Topics,
    dir: Directory,
    stations: HashMap<LocalId, StationState>,
    /// Where every station is: the geo index of the live state.
    index: BoxIndex<LocalId>,
    alerts: AlertBook,
    /// When this core started: stations never heard from are stale counted from here.
    started: DateTime<Utc>,
    /// River records as last published, by river name.
    rivers: HashMap<String, StateRecord>,
    /// Field reports, folded from `ioc.reports`.
    reports: ReportBook,
    /// The latest status of every camera.
    cameras: CameraBook,
}

impl Core {
    fn new(bus: Arc<dyn Bus>, topics: Topics, rules: RulesConfig, reports: ReportsConfig) -> Self {
        Self {
            bus,
            topics,
            dir: Directory::default(),
            stations: HashMap::new(),
            index: BoxIndex::default(),
            cameras: CameraBook::new(chrono::Duration::seconds(
                rules.camera_silent_after_s.max(0),
            )),
            alerts: AlertBook::new(rules),
            started: Utc::now(),
            rivers: HashMap::new(),
            reports: ReportBook::new(reports),
        }
    }

    fn unit_names(&self, units: &[LocalId]) -> Vec<String> {
        units
            .iter()
            .filter_map(|u| self.dir.units.get(u))
            .map(|u| u.name.clone())
            .collect()
    }

    /// Builds station states from the registry, restoring live values from `restored`, and
    /// publishes whatever differs from what the state topic already holds.
    async fn start(&mut self, restored: HashMap<EntityId, StateRecord>) -> Result<(), BusError> {
        let mut changed = Vec::new();
        // Reports closed long ago leave the book before anything is published.
        self.reports.tick(Utc::now().fixed_offset());
        for id in self.reports.ids() {
            if let Some(rec) = self.reports.record(id) {
                if restored.get(&rec.entity) != Some(&rec) {
                    changed.push(rec);
                }
            }
        }
        let gone: Vec<EntityId> = restored
            .values()
            .filter(|r| r.layer == Layer::Reports)
            .filter(|r| {
                LocalId::parse("report", r.entity.local())
                    .map_or(true, |id| self.reports.get(&id).is_none())
            })
            .map(|r| r.entity.clone())
            .collect();
        for e in gone {
            self.tombstone(e.as_str()).await?;
        }
        for unit in self.dir.units.values() {
            let rec = unit_record(unit, &self.dir, self.reports.counts(&unit.id));
            if restored.get(&rec.entity) != Some(&rec) {
                changed.push(rec);
            }
        }
        for zone in self.dir.zones.values() {
            let rec = zone_record(zone);
            if restored.get(&rec.entity) != Some(&rec) {
                changed.push(rec);
            }
        }
        for r in restored.values().filter(|r| r.layer == Layer::Cameras) {
            self.cameras.restore(r);
        }
        let cameras: Vec<LocalId> = self.dir.cameras.keys().cloned().collect();
        for id in cameras {
            if let Some(rec) = self.camera_record(&id) {
                if restored.get(&rec.entity) != Some(&rec) {
                    changed.push(rec);
                }
            }
        }
        for r in restored.values().filter(|r| r.layer == Layer::Alerts) {
            if let Some(a) = Alert::from_record(r) {
                self.alerts.restore(a);
            }
        }
        let stations: Vec<_> = self.dir.stations.values().cloned().collect();
        for s in stations {
            let units = self.dir.locate(s.position.lon, s.position.lat);
            let names = self.unit_names(&units);
            let mut state = StationState::new(s, units, names);
            state.air.completeness = self.alerts.config().aqi_completeness;
            let prior = restored.get(&state.entity());
            if let Some(r) = prior {
                state.restore(r);
            }
            let rec = state.to_record();
            if prior != Some(&rec) {
                changed.push(rec);
            }
            let p = state.station.position;
            self.index
                .insert(state.station.id.clone(), [p.lon, p.lat, p.lon, p.lat]);
            self.stations.insert(state.station.id.clone(), state);
        }
        self.publish_all(changed).await?;
        // Rivers as the restored stations give them (republished only where they differ).
        for r in restored.values().filter(|r| r.layer == Layer::Rivers) {
            self.rivers.insert(r.name().to_string(), r.clone());
        }
        self.publish_rivers().await
    }

    async fn publish_all(&self, records: Vec<StateRecord>) -> Result<(), BusError> {
        let futs = records.into_iter().map(|r| self.publish_state(r));
        futures::future::try_join_all(futs).await.map(|_| ())
    }

    /// Publishes one state record, retrying while the bus is unavailable: the reading that
    /// caused it is not marked applied until this succeeds.
    async fn publish_state(&self, r: StateRecord) -> Result<(), BusError> {
        let payload = serde_json::to_vec(&r).expect("state records serialise");
        self.publish_retrying(&self.topics.state, r.entity.as_str(), Some(payload))
            .await
    }

    /// Removes `entity` from `ioc.state` (a tombstone), under the same retry policy.
    async fn tombstone(&self, entity: &str) -> Result<(), BusError> {
        self.publish_retrying(&self.topics.state, entity, None)
            .await
    }

    /// Every write of the core (states, tombstones, alert events, dead letters) goes through
    /// here: while the bus is unavailable it waits and retries with backoff, so a broker
    /// outage pauses the core and never ends it; other errors are returned.
    async fn publish_retrying(
        &self,
        topic: &str,
        key: &str,
        payload: Option<Vec<u8>>,
    ) -> Result<(), BusError> {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.bus.publish(topic, key, payload.clone()).await {
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

    async fn dead_letter(
        &self,
        m: &Message,
        entity: Option<EntityId>,
        errors: Vec<FieldError>,
    ) -> Result<(), BusError> {
        let source = format!("bus:{}/{}/{}", m.topic, m.partition, m.offset);
        let original = m
            .payload
            .as_deref()
            .map(original_value)
            .unwrap_or(serde_json::Value::Null);
        warn!(%source, ?errors, "input dead-lettered");
        metrics::counter!("ioc_deadletter_total", "stage" => "core").increment(1);
        let env = Envelope::dead_letter(&source, entity, errors, original, Utc::now());
        self.publish_retrying(&self.topics.deadletter, &source, Some(env.to_bytes()))
            .await
    }

    async fn readings(&mut self, batch: &[Message]) -> Result<(), BusError> {
        let mut dirty = BTreeSet::new();
        for m in batch {
            let parsed = m
                .payload
                .as_deref()
                .ok_or_else(|| FieldError::new("payload", "empty message"))
                .and_then(Envelope::from_bytes)
                .and_then(|env| match env.kind {
                    EventKind::SensorReading => env.data_as::<Reading>().map(|r| (r, env.received)),
                    other => Err(FieldError::new(
                        "kind",
                        format!("{other:?} does not belong on the readings topic"),
                    )),
                });
            let (reading, received) = match parsed {
                Ok(r) => r,
                Err(e) => {
                    self.dead_letter(m, None, vec![e]).await?;
                    continue;
                }
            };
            let Some(state) = self.stations.get_mut(&reading.station) else {
                let entity = EntityId::station(&reading.station);
                let e = FieldError::new(
                    "station",
                    format!("{} is not in the registry", reading.station),
                );
                self.dead_letter(m, Some(entity), vec![e]).await?;
                continue;
            };
            let outcome = state.apply_received(&reading, received, m.partition, m.offset);
            if outcome != ApplyOutcome::Duplicate {
                state.props.last_seen = Some(Utc::now().fixed_offset());
            }
            let label = match outcome {
                ApplyOutcome::Duplicate => "duplicate",
                ApplyOutcome::Late => "late",
                ApplyOutcome::Advanced => "applied",
            };
            metrics::counter!("ioc_core_readings_total", "outcome" => label).increment(1);
            if outcome != ApplyOutcome::Duplicate {
                dirty.insert(reading.station);
            }
        }
        let records = dirty
            .iter()
            .filter_map(|id| self.stations.get(id))
            .map(StationState::to_record)
            .collect();
        self.publish_all(records).await?;
        let river_changed = dirty.iter().any(|id| {
            self.stations
                .get(id)
                .is_some_and(|s| s.station.river.is_some())
        });
        if river_changed {
            self.publish_rivers().await?;
        }
        if self.alerts.config().enabled {
            let mut transitions = Vec::new();
            for id in &dirty {
                let Some(state) = self.stations.get(id) else {
                    continue;
                };
                let at = state.updated().unwrap_or_else(|| Utc::now().fixed_offset());
                let zones = self.zones_of(state);
                for mut o in rules::on_reading(state, self.alerts.config()) {
                    o.zones = zones.clone();
                    transitions.extend(self.alerts.observe(o, at));
                }
            }
            self.publish_transitions(transitions, true).await?;
        }
        Ok(())
    }

    /// The salinity stations to forecast, with their levels.
    fn forecast_targets(&self) -> Vec<forecaster::Target> {
        let mut t: Vec<forecaster::Target> = self
            .stations
            .values()
            .filter(|s| s.station.kind == StationKind::Salinity)
            .map(|s| {
                let levels = s.station.salinity_levels.unwrap_or_default();
                forecaster::Target {
                    station: s.station.id.clone(),
                    watch: levels.watch,
                    warning: levels.warning,
                }
            })
            .collect();
        t.sort_by(|a, b| a.station.cmp(&b.station));
        t
    }

    /// Shows a new forecast on its station and checks the forecast rule.
    async fn forecast(
        &mut self,
        station: &LocalId,
        forecast: forecaster::ForecastView,
    ) -> Result<(), BusError> {
        let Some(state) = self.stations.get_mut(station) else {
            return Ok(());
        };
        state.props.forecast = Some(forecast);
        let rec = state.to_record();
        self.publish_state(rec).await?;
        if !self.alerts.config().enabled {
            return Ok(());
        }
        let Some(state) = self.stations.get(station) else {
            return Ok(());
        };
        let zones = self.zones_of(state);
        let now = Utc::now().fixed_offset();
        let mut transitions = Vec::new();
        for mut o in rules::on_reading(state, self.alerts.config())
            .into_iter()
            .filter(|o| o.rule == "salinity_forecast")
        {
            o.zones = zones.clone();
            transitions.extend(self.alerts.observe(o, now));
        }
        self.publish_transitions(transitions, true).await
    }

    /// Custom zones containing a station.
    fn zones_of(&self, state: &StationState) -> Vec<(LocalId, String)> {
        let p = state.station.position;
        self.dir.zones_at(p.lon, p.lat)
    }

    /// Publishes the river records (reach of the 1‰ and 4‰ lines, risk) that changed.
    async fn publish_rivers(&mut self) -> Result<(), BusError> {
        let states: Vec<&StationState> = self.stations.values().collect();
        let now = rivers::all_rivers(&states, &self.alerts.config().salinity_risk_bands);
        let changed: Vec<StateRecord> = now
            .iter()
            .filter(|(name, rec)| self.rivers.get(*name) != Some(rec))
            .map(|(_, rec)| rec.clone())
            .collect();
        self.publish_all(changed).await?;
        self.rivers = now.into_iter().collect();
        Ok(())
    }

    /// Rules on the clock: stale stations, escalation, cleared alerts leaving the layer.
    async fn clock_rules(&mut self) -> Result<(), BusError> {
        let now = Utc::now();
        let mut transitions = Vec::new();
        for state in self.stations.values() {
            let mut o = rules::stale(state, self.alerts.config(), now, self.started);
            o.zones = self.zones_of(state);
            transitions.extend(self.alerts.observe(o, now.fixed_offset()));
        }
        let after = chrono::Duration::seconds(self.alerts.config().camera_down_after_s.max(0));
        let now_local = now.fixed_offset();
        for c in self.dir.cameras.values() {
            if let Some(o) = self.cameras.observation(c, after, now_local) {
                transitions.extend(self.alerts.observe(o, now_local));
            }
        }
        // Cameras whose worker went quiet, or spoke again: their records change.
        for id in self.cameras.silence_changes(now_local) {
            if let Some(rec) = self.camera_record(&id) {
                self.publish_state(rec).await?;
            }
        }
        transitions.extend(self.alerts.tick(now.fixed_offset()));
        self.publish_transitions(transitions, true).await?;
        let changed = self.reports.tick(now.fixed_offset());
        self.publish_reports(changed).await
    }

    /// One event of `ioc.reports` into the book; what it changes goes into `changed`.
    async fn report_message(&mut self, m: &Message, changed: &mut Changed) -> Result<(), BusError> {
        let parsed = m
            .payload
            .as_deref()
            .ok_or_else(|| FieldError::new("payload", "empty message"))
            .and_then(Envelope::from_bytes);
        let result = match parsed {
            Ok(env) => self
                .reports
                .apply(&env, Utc::now().fixed_offset(), changed)
                .map_err(|e| (Some(env.entity.clone()), e)),
            Err(e) => Err((None, e)),
        };
        match result {
            Ok(()) => Ok(()),
            Err((entity, e)) => self.dead_letter(m, entity, vec![e]).await,
        }
    }

    /// Publishes what changed in the report book: report records (tombstones for those that
    /// left), unit counts, and the overdue rule's alerts.
    async fn publish_reports(&mut self, changed: Changed) -> Result<(), BusError> {
        if changed.is_empty() {
            return Ok(());
        }
        let mut records: Vec<StateRecord> = changed
            .reports
            .iter()
            .filter_map(|id| self.reports.record(id))
            .collect();
        records.extend(
            changed
                .units
                .iter()
                .filter_map(|u| self.dir.units.get(u))
                .map(|u| unit_record(u, &self.dir, self.reports.counts(&u.id))),
        );
        self.publish_all(records).await?;
        for id in &changed.removed {
            self.tombstone(EntityId::new("report", id).as_str()).await?;
        }
        if !self.alerts.config().enabled {
            return Ok(());
        }
        let now = Utc::now().fixed_offset();
        let mut transitions = Vec::new();
        for id in changed.reports.iter().chain(&changed.removed) {
            // Gone from the book: its alert, if any, clears.
            let o = self
                .reports
                .observation(id)
                .unwrap_or_else(|| crate::reports::no_longer_overdue(id));
            transitions.extend(self.alerts.observe(o, now));
        }
        self.publish_transitions(transitions, true).await
    }

    /// An acknowledgement or clear from `ioc.alerts` (the core's own events change nothing).
    async fn alert_action(&mut self, m: &Message) -> Result<(), BusError> {
        let Some(env) = m
            .payload
            .as_deref()
            .and_then(|p| Envelope::from_bytes(p).ok())
        else {
            return Ok(());
        };
        let Ok(action) = env.data_as::<AlertAction>() else {
            return Ok(());
        };
        let t = match env.kind {
            EventKind::AlertAcked => self.alerts.ack(&action),
            EventKind::AlertCleared if action.by != rules::AUTO => self.alerts.clear(&action),
            _ => None,
        };
        // The event is on the topic already: only the state changes.
        self.publish_transitions(t.into_iter().collect(), false)
            .await
    }

    /// Publishes alert transitions: the event on `ioc.alerts` (when `with_events`), then the
    /// alert's state on `ioc.state` (a tombstone once it leaves the layer).
    async fn publish_transitions(
        &self,
        transitions: Vec<Transition>,
        with_events: bool,
    ) -> Result<(), BusError> {
        for t in transitions {
            let (kind, alert) = match &t {
                Transition::Raised(a) => (EventKind::AlertRaised, a),
                Transition::Updated(a) => (EventKind::AlertUpdated, a),
                Transition::Acked(a) => (EventKind::AlertAcked, a),
                Transition::Cleared(a) => (EventKind::AlertCleared, a),
                Transition::Escalated(a) => (EventKind::AlertEscalated, a),
                Transition::Expired(a) => {
                    self.tombstone(a.entity_id().as_str()).await?;
                    continue;
                }
            };
            metrics::counter!("ioc_alerts_total", "transition" => format!("{kind:?}")).increment(1);
            if with_events {
                let data = match &t {
                    Transition::Cleared(a) => serde_json::to_value(AlertAction {
                        alert: a.id.clone(),
                        by: a.cleared_by.clone().unwrap_or_else(|| rules::AUTO.into()),
                        note: a.clear_note.clone(),
                        at: a.cleared_at.unwrap_or(a.raised_at),
                    }),
                    _ => serde_json::to_value(alert),
                }
                .unwrap_or_default();
                let env = Envelope::new(
                    kind,
                    alert.entity_id(),
                    Utc::now().fixed_offset(),
                    Utc::now(),
                    "core:rules",
                    data,
                );
                self.publish_retrying(
                    &self.topics.alerts,
                    alert.entity_id().as_str(),
                    Some(env.to_bytes()),
                )
                .await?;
            }
            let local = LocalId::parse("entity", alert.entity.local()).ok();
            let place = local.as_ref().and_then(|id| match alert.entity.kind() {
                "report" => self.reports.place(id),
                "camera" => self.dir.cameras.get(id).map(|c| {
                    let (lon, lat) = (c.position.lon, c.position.lat);
                    ((lon, lat), self.dir.locate(lon, lat))
                }),
                _ => self.stations.get(id).map(|s| {
                    (
                        (s.station.position.lon, s.station.position.lat),
                        s.units.clone(),
                    )
                }),
            });
            let ((lon, lat), units) = place.unwrap_or(((0.0, 0.0), Vec::new()));
            let geometry = geojson::Geometry::new(geojson::Value::Point(vec![lon, lat]));
            self.publish_state(alert.to_record(geometry, [lon, lat, lon, lat], units))
                .await?;
        }
        Ok(())
    }

    /// Applies a registry event; with `publish`, publishes the state it changes.
    async fn registry_message(&mut self, m: &Message, publish: bool) -> Result<(), BusError> {
        let Some(payload) = m.payload.as_deref() else {
            return Ok(());
        };
        let env = match Envelope::from_bytes(payload) {
            Ok(e) => e,
            Err(e) => return self.dead_letter(m, None, vec![e]).await,
        };
        let local = match LocalId::parse("entity", env.entity.local()) {
            Ok(l) => l,
            Err(e) => return self.dead_letter(m, Some(env.entity.clone()), vec![e]).await,
        };
        match env.kind {
            EventKind::RegistryUpsert => {
                let entry = match env.data_as::<RegistryEntry>() {
                    Ok(entry) => entry,
                    Err(e) => return self.dead_letter(m, Some(env.entity.clone()), vec![e]).await,
                };
                let checked = match &entry {
                    RegistryEntry::Station(s) => s.validate(),
                    RegistryEntry::Camera(c) => c.validate(),
                    _ => Ok(()),
                };
                if let Err(invalid) = checked {
                    return self
                        .dead_letter(m, Some(env.entity.clone()), invalid.errors)
                        .await;
                }
                self.dir.upsert(entry);
            }
            EventKind::RegistryRemove => {
                self.dir.remove(env.entity.kind(), &local);
            }
            _ => return Ok(()),
        }
        if !publish {
            return Ok(());
        }
        self.reconcile(&env.entity).await
    }

    /// Brings live state in line with the directory after a change to `entity`.
    async fn reconcile(&mut self, entity: &EntityId) -> Result<(), BusError> {
        let local = LocalId::parse("entity", entity.local()).expect("checked by caller");
        let mut records = Vec::new();
        let mut tombstones = Vec::new();
        match entity.kind() {
            "unit" => {
                self.dir.refresh_index();
                match self.dir.units.get(&local) {
                    Some(u) => records.push(unit_record(u, &self.dir, self.reports.counts(&u.id))),
                    None => tombstones.push(entity.clone()),
                }
                // units moved: re-place every station
                let ids: Vec<LocalId> = self.stations.keys().cloned().collect();
                for id in ids {
                    if let Some(rec) = self.replace_station(&id) {
                        records.push(rec);
                    }
                }
            }
            "zone" => match self.dir.zones.get(&local) {
                Some(z) => records.push(zone_record(z)),
                None => tombstones.push(entity.clone()),
            },
            "camera" => match self.camera_record(&local) {
                Some(rec) => records.push(rec),
                None => {
                    self.cameras.forget(&local);
                    tombstones.push(entity.clone());
                }
            },
            "station" => match self.dir.stations.get(&local) {
                Some(_) => records.extend(self.replace_station(&local)),
                None => {
                    self.stations.remove(&local);
                    self.index.remove(&local);
                    tombstones.push(entity.clone());
                }
            },
            _ => {}
        }
        self.publish_all(records).await?;
        for t in tombstones {
            self.tombstone(t.as_str()).await?;
        }
        Ok(())
    }

    /// A registry camera's record with its latest status; `None` for a camera not registered.
    fn camera_record(&self, id: &LocalId) -> Option<StateRecord> {
        let c = self.dir.cameras.get(id)?;
        let units = self.dir.locate(c.position.lon, c.position.lat);
        let names = self.unit_names(&units);
        Some(
            self.cameras
                .record(c, units, names, Utc::now().fixed_offset()),
        )
    }

    /// One `camera.status` event: the camera's record moves on (status of a camera the
    /// registry does not know is kept until it is registered).
    async fn camera_message(&mut self, m: &Message) -> Result<(), BusError> {
        let Some(payload) = m.payload.as_deref() else {
            return Ok(());
        };
        let env = match Envelope::from_bytes(payload) {
            Ok(e) if e.kind == EventKind::CameraStatus => e,
            Ok(_) => return Ok(()),
            Err(e) => return self.dead_letter(m, None, vec![e]).await,
        };
        match self.cameras.apply(&env) {
            Ok(Some(id)) => match self.camera_record(&id) {
                Some(rec) => self.publish_state(rec).await,
                None => Ok(()),
            },
            Ok(None) => Ok(()),
            Err(e) => self.dead_letter(m, Some(env.entity.clone()), vec![e]).await,
        }
    }

    /// Re-creates a station's state from the directory; `Some(record)` when it changed.
    fn replace_station(&mut self, id: &LocalId) -> Option<StateRecord> {
        let s = self.dir.stations.get(id)?.clone();
        let units = self.dir.locate(s.position.lon, s.position.lat);
        let names = self.unit_names(&units);
        let p = s.position;
        self.index.insert(id.clone(), [p.lon, p.lat, p.lon, p.lat]);
        match self.stations.get_mut(id) {
            Some(state) => {
                let before = state.to_record();
                state.rebase(s, units, names);
                let after = state.to_record();
                (after != before).then_some(after)
            }
            None => {
                let mut state = StationState::new(s, units, names);
                state.air.completeness = self.alerts.config().aqi_completeness;
                let rec = state.to_record();
                self.stations.insert(id.clone(), state);
                Some(rec)
            }
        }
    }
}

/// The state record of a custom zone (the `zones` layer).
fn zone_record(z: &model::Zone) -> StateRecord {
    let mut properties = serde_json::Map::new();
    properties.insert("name".into(), z.name.clone().into());
    properties.insert(
        "owner".into(),
        z.owner.as_ref().map(|o| o.to_string()).into(),
    );
    StateRecord {
        entity: EntityId::new("zone", &z.id),
        layer: Layer::Zones,
        bbox: geometry_bbox(&z.geometry.0).unwrap_or([0.0; 4]),
        geometry: z.geometry.0.clone(),
        units: Vec::new(),
        updated: None,
        properties,
        applied: Default::default(),
        core: serde_json::Value::Null,
    }
}

/// The state record of an administrative unit (the `units` layer).
fn unit_record(u: &model::AdminUnit, dir: &Directory, reports: UnitCounts) -> StateRecord {
    let mut chain = vec![u.id.clone()];
    let mut cur = u.parent.clone();
    while let Some(p) = cur {
        if chain.contains(&p) || chain.len() > 32 {
            break;
        }
        cur = dir.units.get(&p).and_then(|pu| pu.parent.clone());
        chain.push(p);
    }
    let mut properties = serde_json::Map::new();
    properties.insert("name".into(), u.name.clone().into());
    properties.insert("level".into(), u.level.clone().into());
    properties.insert(
        "parent".into(),
        u.parent.as_ref().map(|p| p.to_string()).into(),
    );
    properties.insert("approximate".into(), u.approximate.into());
    properties.insert("reports".into(), reports.to_json());
    StateRecord {
        entity: EntityId::new("unit", &u.id),
        layer: Layer::Units,
        bbox: geometry_bbox(&u.geometry.0).unwrap_or([0.0; 4]),
        geometry: u.geometry.0.clone(),
        units: chain,
        updated: None,
        properties,
        applied: Default::default(),
        core: serde_json::Value::Null,
    }
}
