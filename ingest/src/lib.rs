//! Sensor ingest: readings arrive over MQTT, HTTP push or HTTP poll, are validated and
//! converted to canonical units (`model`), and are written to the readings topic keyed by
//! station. Field reports arrive through the Open311 intake ([`reports`]), photos stripped
//! of their metadata ([`photo`]), and are written to the reports topic. Indicator figures
//! arrive as JSON, DHIS2 data value sets or CSV ([`indicators`]) and go to the indicators topic. A province's own
//! inventory (cameras, stations) arrives as registry files ([`registry`]), checked whole
//! before anything reaches the registry topic. A sender is acknowledged (HTTP 202, MQTT PUBACK) only after the bus acknowledged
//! every reading it sent; what cannot be accepted goes to the dead-letter topic with the reason.
//!
//! It owns *the edge*: parsing untrusted input, limits, acknowledgements. It must never keep
//! live state (stream-core does) and never drop an input silently.

mod directory;
pub mod http;
pub mod indicator_poll;
pub mod indicators;
pub mod mqtt;
pub mod photo;
pub mod poll;
pub mod registry;
pub mod reports;

pub use directory::RegistryView;

use std::collections::HashSet;
use std::sync::Arc;

use bus::{Bus, BusError, Topics};
use chrono::Utc;
use model::reading::{split_payload, RawReading};
use model::{EntityId, Envelope, EventKind, FieldError, LocalId, Reading};
use serde::Serialize;
use serde_json::Value;
use tracing::warn;

/// Why one item of a payload was refused.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ItemRejection {
    pub index: usize,
    pub errors: Vec<FieldError>,
}

/// What became of a payload.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Accepted {
    /// Readings written to the bus.
    pub accepted: usize,
    /// Readings a poll source had already delivered (not written again).
    #[serde(skip_serializing_if = "is_zero")]
    pub unchanged: usize,
    pub rejected: Vec<ItemRejection>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The bus did not acknowledge; the sender must retry (nothing was acknowledged to it).
    #[error("the bus cannot take writes now: {0}")]
    BusUnavailable(String),
    /// The station registry is not loaded yet, so stations cannot be checked.
    #[error("the station registry is still loading")]
    NotReady,
}

impl From<BusError> for IngestError {
    fn from(e: BusError) -> Self {
        IngestError::BusUnavailable(e.to_string())
    }
}

/// Which stations a sender may report for: a device's token names its stations, or its
/// agency (every station the agency owns); the centre's own roles and configured sources
/// (MQTT behind the broker's ACL, poll sources) report for any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StationScope {
    Any,
    Only(HashSet<LocalId>),
    Agency(LocalId),
    /// A sensor token that names neither: nothing.
    Nothing,
}

impl StationScope {
    /// The scope of a token's claims.
    pub fn of(c: &auth::Claims) -> Self {
        match c.role {
            auth::Role::Sensor if !c.stations.is_empty() => StationScope::Only(
                c.stations
                    .iter()
                    .filter_map(|s| LocalId::parse("station", s).ok())
                    .collect(),
            ),
            auth::Role::Sensor => c
                .agency
                .as_deref()
                .and_then(|a| LocalId::parse("agency", a).ok())
                .map_or(StationScope::Nothing, StationScope::Agency),
            _ => StationScope::Any,
        }
    }

    /// Why `station` (owned by `owner`) is outside the scope, if it is.
    fn refuses(&self, station: &LocalId, owner: Option<&LocalId>) -> Option<String> {
        match self {
            StationScope::Any => None,
            StationScope::Only(s) if s.contains(station) => None,
            StationScope::Agency(a) if owner == Some(a) => None,
            StationScope::Only(_) => Some(format!(
                "this sensor's token does not name station {station}"
            )),
            StationScope::Agency(a) => Some(format!(
                "station {station} does not belong to {a}, the agency of this sensor's token"
            )),
            StationScope::Nothing => {
                Some("this sensor's token names no stations and no agency to report for".into())
            }
        }
    }
}

/// The accept path shared by every transport.
pub struct SensorIngest {
    bus: Arc<dyn Bus>,
    topics: Topics,
    stations: Arc<RegistryView>,
}

impl SensorIngest {
    pub fn new(bus: Arc<dyn Bus>, topics: Topics, stations: Arc<RegistryView>) -> Self {
        Self {
            bus,
            topics,
            stations,
        }
    }

    pub fn stations(&self) -> &Arc<RegistryView> {
        &self.stations
    }

    pub fn bus(&self) -> &Arc<dyn Bus> {
        &self.bus
    }

    /// Validates every item of `payload`, writes the good ones to the readings topic and the
    /// bad ones to the dead-letter topic, and returns once the bus acknowledged all writes.
    /// `topic_station` is the station named by the transport (MQTT topic), if any.
    pub async fn accept(
        &self,
        source: &str,
        topic_station: Option<&LocalId>,
        payload: &Value,
    ) -> Result<Accepted, IngestError> {
        self.accept_new(source, topic_station, payload, |_| true)
            .await
    }

    /// Like [`accept`](Self::accept), for a sender that may report only for `scope`:
    /// readings of other stations are refused per item (and dead-lettered).
    pub async fn accept_scoped(
        &self,
        source: &str,
        scope: &StationScope,
        payload: &Value,
    ) -> Result<Accepted, IngestError> {
        self.accept_checked(source, None, scope, payload, |_| true)
            .await
    }

    /// Like [`accept`](Self::accept), but skips readings for which `is_new` is false (a poll
    /// source returning what it returned before).
    pub async fn accept_new(
        &self,
        source: &str,
        topic_station: Option<&LocalId>,
        payload: &Value,
        is_new: impl FnMut(&Reading) -> bool,
    ) -> Result<Accepted, IngestError> {
        self.accept_checked(source, topic_station, &StationScope::Any, payload, is_new)
            .await
    }

    async fn accept_checked(
        &self,
        source: &str,
        topic_station: Option<&LocalId>,
        scope: &StationScope,
        payload: &Value,
        mut is_new: impl FnMut(&Reading) -> bool,
    ) -> Result<Accepted, IngestError> {
        if !self.stations.is_ready() {
            return Err(IngestError::NotReady);
        }
        let now = Utc::now();
        let mut out = Accepted::default();
        let mut good = Vec::new();
        let mut dead = Vec::new();
        for (index, item) in split_payload(payload).into_iter().enumerate() {
            let result = RawReading(item)
                .validate(topic_station, now)
                .map_err(|e| e.errors)
                .and_then(|r| match self.stations.station_owner(&r.station) {
                    None => Err(vec![FieldError::new(
                        "station",
                        format!("{} is not a registered station", r.station),
                    )]),
                    Some(owner) => match scope.refuses(&r.station, owner.as_ref()) {
                        Some(reason) => Err(vec![FieldError::new("station", reason)]),
                        None => Ok(r),
                    },
                });
            match result {
                Ok(r) if !is_new(&r) => out.unchanged += 1,
                Ok(r) => good.push(r),
                Err(errors) => {
                    let entity = item
                        .get("station")
                        .and_then(Value::as_str)
                        .and_then(|s| LocalId::parse("station", s).ok())
                        .or_else(|| topic_station.cloned())
                        .map(|s| EntityId::station(&s));
                    dead.push(Envelope::dead_letter(
                        source,
                        entity,
                        errors.clone(),
                        item.clone(),
                        now,
                    ));
                    out.rejected.push(ItemRejection { index, errors });
                }
            }
        }
        let envelopes: Vec<Envelope> = good
            .iter()
            .map(|r| {
                Envelope::new(
                    EventKind::SensorReading,
                    EntityId::station(&r.station),
                    r.ts,
                    now,
                    source,
                    serde_json::to_value(r).expect("readings serialise"),
                )
            })
            .collect();
        let writes = envelopes.iter().map(|env| {
            self.bus.publish(
                &self.topics.readings,
                env.entity.as_str(),
                Some(env.to_bytes()),
            )
        });
        let dead_writes = dead.iter().map(|env| {
            self.bus
                .publish(&self.topics.deadletter, source, Some(env.to_bytes()))
        });
        let (written, dead_written) = futures::join!(
            futures::future::join_all(writes),
            futures::future::join_all(dead_writes)
        );
        let failed = written
            .iter()
            .chain(dead_written.iter())
            .find_map(|r| r.as_ref().err());
        if let Some(e) = failed {
            warn!(%source, error = %e, "bus write failed; sender not acknowledged");
            metrics::counter!("ioc_ingest_unavailable_total").increment(1);
            return Err(IngestError::BusUnavailable(e.to_string()));
        }
        out.accepted = good.len();
        metrics::counter!("ioc_ingest_readings_total", "outcome" => "accepted")
            .increment(good.len() as u64);
        metrics::counter!("ioc_ingest_readings_total", "outcome" => "rejected")
            .increment(dead.len() as u64);
        if !dead.is_empty() {
            warn!(%source, rejected = dead.len(), "readings refused and dead-lettered");
        }
        Ok(out)
    }

    /// Writes a payload that could not even be parsed to the dead-letter topic.
    pub async fn dead_letter_unparsed(
        &self,
        source: &str,
        bytes: &[u8],
        reason: String,
    ) -> Result<(), IngestError> {
        let env = Envelope::dead_letter(
            source,
            None,
            vec![FieldError::new("payload", reason)],
            model::envelope::original_value(bytes),
            Utc::now(),
        );
        metrics::counter!("ioc_ingest_readings_total", "outcome" => "unparsed").increment(1);
        self.bus
            .publish(&self.topics.deadletter, source, Some(env.to_bytes()))
            .await?;
        Ok(())
    }
}
