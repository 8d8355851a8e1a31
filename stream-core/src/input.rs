//! The core's one typed input stream: every topic it reads and the clock, merged in one
//! place and decoded here, so the books see [`Input`]s and never raw messages. Adding an
//! input kind is a variant of [`Input`], its decoder, and one line in [`Inputs::next`].
//!
//! What cannot be decoded becomes a [`Rejected`] the books turn into a dead letter. Messages
//! are marked applied (their offsets may be committed) only through [`Inputs::applied`],
//! which the run loop calls after the effects of the input were published.

use std::time::Duration;

use bus::{BusError, Message, Subscription};
use chrono::{DateTime, FixedOffset};
use model::alert::AlertAction;
use model::envelope::original_value;
use model::indicator::tally::Tally;
use model::{
    EntityId, Envelope, EventKind, FieldError, Layer, LocalId, Reading, RegistryChange, StateRecord,
};
use tokio::sync::mpsc;

use crate::forecaster::ForecastView;
use crate::ownership::Ownership;

/// Input that cannot be accepted: where it was read, what it was about, why.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    /// `bus:topic/partition/offset`.
    pub source: String,
    pub partition: i32,
    pub entity: Option<EntityId>,
    pub errors: Vec<FieldError>,
    pub original: serde_json::Value,
}

impl Rejected {
    fn of(m: &Message, entity: Option<EntityId>, errors: Vec<FieldError>) -> Self {
        Self {
            source: format!("bus:{}/{}/{}", m.topic, m.partition, m.offset),
            partition: m.partition,
            entity,
            errors,
            original: m
                .payload
                .as_deref()
                .map(original_value)
                .unwrap_or(serde_json::Value::Null),
        }
    }
}

/// One sensor reading and where it was read.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadingIn {
    pub reading: Reading,
    /// When ingest received it.
    pub received: DateTime<FixedOffset>,
    /// The topic it was read from (one shared name per batch).
    pub topic: std::sync::Arc<str>,
    pub partition: i32,
    pub offset: i64,
}

impl ReadingIn {
    /// `bus:topic/partition/offset`.
    pub fn source(&self) -> String {
        format!("bus:{}/{}/{}", self.topic, self.partition, self.offset)
    }
}

/// An event of a topic and where it was read (for its dead letter, should a book refuse it).
#[derive(Debug, Clone, PartialEq)]
pub struct Located {
    pub event: Envelope,
    /// `bus:topic/partition/offset`.
    pub source: String,
    pub partition: i32,
}

impl Located {
    fn of(m: &Message, event: Envelope) -> Self {
        Self {
            event,
            source: format!("bus:{}/{}/{}", m.topic, m.partition, m.offset),
            partition: m.partition,
        }
    }

    /// Refused by a book, for `errors`.
    pub fn rejected(self, errors: Vec<FieldError>) -> Rejected {
        Rejected {
            original: serde_json::to_value(&self.event).unwrap_or_default(),
            entity: Some(self.event.entity),
            source: self.source,
            partition: self.partition,
            errors,
        }
    }
}

/// An acknowledgement or clear from the API (or the core's own event, which changes nothing).
#[derive(Debug, Clone, PartialEq)]
pub struct AlertActionIn {
    pub kind: EventKind,
    pub action: AlertAction,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Registry(Result<RegistryChange, Rejected>),
    Readings(Vec<Result<ReadingIn, Rejected>>),
    Reports(Vec<Result<Located, Rejected>>),
    /// Indicator values, corrections, targets and explanations (`ioc.indicators`, read whole
    /// by every instance like the reports).
    Indicators(Vec<Result<Located, Rejected>>),
    CameraStatus(Result<Located, Rejected>),
    AlertAction(AlertActionIn),
    /// The state another instance published for an entity it owns (stations only: rivers
    /// span stations of several owners).
    Peer(StateRecord),
    Forecast(LocalId, ForecastView),
    /// Daily tallies of `ioc.tallies`: the whole topic at start, then (with other instances
    /// owning some entities) theirs as they come.
    Tallies(Vec<TallyIn>),
    /// The clock: stale stations, silent cameras, escalation, deadlines.
    Tick,
}

pub fn decode_registry(m: &Message) -> Option<Result<RegistryChange, Rejected>> {
    let payload = m.payload.as_deref()?;
    let env = match Envelope::from_bytes(payload) {
        Ok(e) => e,
        Err(e) => return Some(Err(Rejected::of(m, None, vec![e]))),
    };
    RegistryChange::from_event(&env)
        .map_err(|errors| Rejected::of(m, Some(env.entity.clone()), errors))
        .transpose()
}

pub fn decode_reading(m: &Message, topic: &std::sync::Arc<str>) -> Result<ReadingIn, Rejected> {
    m.payload
        .as_deref()
        .ok_or_else(|| FieldError::new("payload", "empty message"))
        .and_then(Envelope::from_bytes)
        .and_then(|env| match env.kind {
            EventKind::SensorReading => env.data_as::<Reading>().map(|r| (r, env.received)),
            other => Err(FieldError::new(
                "kind",
                format!("{other:?} does not belong on the readings topic"),
            )),
        })
        .map(|(reading, received)| ReadingIn {
            reading,
            received,
            topic: topic.clone(),
            partition: m.partition,
            offset: m.offset,
        })
        .map_err(|e| Rejected::of(m, None, vec![e]))
}

/// An event of a topic read whole (reports, indicators), with where it was read.
pub fn decode_event(m: &Message) -> Result<Located, Rejected> {
    m.payload
        .as_deref()
        .ok_or_else(|| FieldError::new("payload", "empty message"))
        .and_then(Envelope::from_bytes)
        .map(|e| Located::of(m, e))
        .map_err(|e| Rejected::of(m, None, vec![e]))
}

pub fn decode_camera_status(m: &Message) -> Option<Result<Located, Rejected>> {
    match Envelope::from_bytes(m.payload.as_deref()?) {
        Ok(e) if e.kind == EventKind::CameraStatus => Some(Ok(Located::of(m, e))),
        Ok(_) => None,
        Err(e) => Some(Err(Rejected::of(m, None, vec![e]))),
    }
}

pub fn decode_alert_action(m: &Message) -> Option<AlertActionIn> {
    let env = Envelope::from_bytes(m.payload.as_deref()?).ok()?;
    let action = env.data_as::<AlertAction>().ok()?;
    Some(AlertActionIn {
        kind: env.kind,
        action,
    })
}

/// A station record another instance owns; `None` for our own records, other layers and
/// tombstones. Ownership is checked on the key before anything is parsed.
pub fn decode_peer(m: &Message, ownership: &Ownership) -> Option<StateRecord> {
    let key = m.key.as_deref()?;
    if !key.starts_with("station:") || ownership.owns_key(key) {
        return None;
    }
    let r: StateRecord = serde_json::from_slice(m.payload.as_deref()?).ok()?;
    (r.layer != Layer::Alerts && r.entity.is(model::EntityKind::Station)).then_some(r)
}

/// A tally of `ioc.tallies` under its key; `None` for a tombstone (the tally was dropped).
#[derive(Debug, Clone, PartialEq)]
pub struct TallyIn {
    pub key: String,
    pub tally: Option<Tally>,
}

/// A tally message; `None` for one without a key or that cannot be read (a tally is the
/// core's own output: one it cannot read is logged, never dead-lettered).
pub fn decode_tally(m: &Message) -> Option<TallyIn> {
    let key = m.key.clone()?;
    let tally = match m.payload.as_deref() {
        None => None,
        Some(p) => match serde_json::from_slice::<Tally>(p) {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::warn!(key, error = %e, "unreadable tally skipped");
                return None;
            }
        },
    };
    Some(TallyIn { key, tally })
}

/// Another instance's tally (its key starts with its entity); `None` for our own.
fn decode_peer_tally(m: &Message, ownership: &Ownership) -> Option<TallyIn> {
    let entity = m.key.as_deref()?.split('/').next()?;
    if ownership.owns_key(entity) {
        return None;
    }
    decode_tally(m)
}

/// Which subscription a message came from, to mark it applied after its effects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadFrom {
    Readings,
    AlertActions,
    CameraStatus,
}

/// The sources the core reads, merged into one stream of [`Input`]s.
pub struct Inputs {
    pub registry: Box<dyn Subscription>,
    pub reports: Box<dyn Subscription>,
    pub indicators: Box<dyn Subscription>,
    pub readings: Box<dyn Subscription>,
    pub alert_actions: Box<dyn Subscription>,
    pub camera_status: Box<dyn Subscription>,
    /// `ioc.state`, followed only when other instances own some entities.
    pub peers: Option<Box<dyn Subscription>>,
    /// `ioc.tallies`, likewise.
    pub peer_tallies: Option<Box<dyn Subscription>>,
    pub forecasts: mpsc::Receiver<(LocalId, ForecastView)>,
    pub tick: Option<tokio::time::Interval>,
    pub ownership: Ownership,
    pub batch_max: usize,
    pub batch_wait_ms: u64,
    /// Messages of the last input, to be marked applied.
    pending: Vec<(ReadFrom, Message)>,
}

impl Inputs {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        registry: Box<dyn Subscription>,
        reports: Box<dyn Subscription>,
        indicators: Box<dyn Subscription>,
        readings: Box<dyn Subscription>,
        alert_actions: Box<dyn Subscription>,
        camera_status: Box<dyn Subscription>,
        peers: Option<Box<dyn Subscription>>,
        peer_tallies: Option<Box<dyn Subscription>>,
        forecasts: mpsc::Receiver<(LocalId, ForecastView)>,
        tick: Option<tokio::time::Interval>,
        ownership: Ownership,
        batch: (usize, u64),
    ) -> Self {
        Self {
            registry,
            reports,
            indicators,
            readings,
            alert_actions,
            camera_status,
            peers,
            peer_tallies,
            forecasts,
            tick,
            ownership,
            batch_max: batch.0.max(1),
            batch_wait_ms: batch.1,
            pending: Vec::new(),
        }
    }

    /// The next input. Rare inputs first, so a steady readings stream never starves them.
    pub async fn next(&mut self) -> Result<Input, BusError> {
        let (max, wait) = (self.batch_max, self.batch_wait_ms);
        loop {
            let Self {
                registry,
                reports,
                indicators,
                readings,
                alert_actions,
                camera_status,
                peers,
                peer_tallies,
                forecasts,
                tick,
                ownership,
                pending,
                ..
            } = &mut *self;
            let peers = async {
                match peers.as_mut() {
                    Some(p) => p.next().await,
                    None => std::future::pending().await,
                }
            };
            let peer_tallies = async {
                match peer_tallies.as_mut() {
                    Some(p) => p.next().await,
                    None => std::future::pending().await,
                }
            };
            let tick = async {
                match tick.as_mut() {
                    Some(t) => t.tick().await,
                    None => std::future::pending().await,
                }
            };
            // An action or a camera's status is applied, and its offset stored, only by the
            // owner of its key's partition (in a consumer group every instance reads every
            // partition of these topics): the group's commits are the owners', and a new
            // owner resumes from them.
            let owned = |m: &Message| m.key.as_deref().is_some_and(|k| ownership.owns_key(k));
            let input = tokio::select! {
                biased;
                m = alert_actions.next() => {
                    let m = m?;
                    if !owned(&m) {
                        continue;
                    }
                    let input = decode_alert_action(&m).map(Input::AlertAction);
                    pending.push((ReadFrom::AlertActions, m));
                    input
                }
                m = camera_status.next() => {
                    let m = m?;
                    if !owned(&m) {
                        continue;
                    }
                    let input = decode_camera_status(&m).map(Input::CameraStatus);
                    pending.push((ReadFrom::CameraStatus, m));
                    input
                }
                _ = tick => Some(Input::Tick),
                m = reports.next() => {
                    let batch = collect_batch(m?, &mut **reports, max, wait).await?;
                    Some(Input::Reports(batch.iter().map(decode_event).collect()))
                }
                m = indicators.next() => {
                    let batch = collect_batch(m?, &mut **indicators, max, wait).await?;
                    Some(Input::Indicators(batch.iter().map(decode_event).collect()))
                }
                m = registry.next() => decode_registry(&m?).map(Input::Registry),
                m = peers => decode_peer(&m?, ownership).map(Input::Peer),
                m = peer_tallies => decode_peer_tally(&m?, ownership).map(|t| Input::Tallies(vec![t])),
                Some((station, f)) = forecasts.recv() => Some(Input::Forecast(station, f)),
                m = readings.next() => {
                    let batch = collect_batch(m?, &mut **readings, max, wait).await?;
                    let topic: std::sync::Arc<str> = batch[0].topic.as_str().into();
                    let input = Input::Readings(batch.iter().map(|m| decode_reading(m, &topic)).collect());
                    pending.extend(batch.into_iter().map(|m| (ReadFrom::Readings, m)));
                    Some(input)
                }
            };
            match input {
                Some(i) => return Ok(i),
                // Nothing for the books (a tombstone, another instance's record, an event
                // of a kind the core does not read): mark it and go on.
                None => self.applied()?,
            }
        }
    }

    /// Marks the messages of the last input applied.
    pub fn applied(&mut self) -> Result<(), BusError> {
        for (from, m) in self.pending.drain(..) {
            match from {
                ReadFrom::Readings => self.readings.applied(&m)?,
                ReadFrom::AlertActions => self.alert_actions.applied(&m)?,
                ReadFrom::CameraStatus => self.camera_status.applied(&m)?,
            }
        }
        Ok(())
    }

    /// Commits what was marked applied (before a clean stop).
    pub async fn commit(&mut self) -> Result<(), BusError> {
        self.readings.commit().await?;
        self.alert_actions.commit().await?;
        self.camera_status.commit().await
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
