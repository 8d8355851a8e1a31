//! The event envelope: every message on the bus is one of these, as JSON.
//!
//! ```json
//! {"v":1,"id":"<uuid v7>","kind":"sensor.reading","entity":"station:hg-vt-sal-01",
//!  "ts":"2026-03-02T06:00:00+07:00","received":"2026-03-02T06:00:01.2+07:00",
//!  "source":"mqtt:ioc/sensors/hg-vt-sal-01/readings","data":{...}}
//! ```

use chrono::{DateTime, FixedOffset, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::error::FieldError;
use crate::id::EntityId;

pub const ENVELOPE_VERSION: u16 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventKind {
    #[serde(rename = "sensor.reading")]
    SensorReading,
    #[serde(rename = "registry.upsert")]
    RegistryUpsert,
    #[serde(rename = "registry.remove")]
    RegistryRemove,
    #[serde(rename = "state.update")]
    StateUpdate,
    #[serde(rename = "deadletter")]
    DeadLetter,
    /// An alert was raised (data: the whole [`crate::alert::Alert`]).
    #[serde(rename = "alert.raised")]
    AlertRaised,
    /// Somebody acknowledged an alert (data: [`crate::alert::AlertAction`]).
    #[serde(rename = "alert.acked")]
    AlertAcked,
    /// An alert's condition ended, or somebody cleared it (data: [`crate::alert::AlertAction`]).
    #[serde(rename = "alert.cleared")]
    AlertCleared,
    /// An alert stayed unacknowledged too long (data: the whole alert).
    #[serde(rename = "alert.escalated")]
    AlertEscalated,
    /// An active alert's value, severity or text changed (data: the whole alert).
    #[serde(rename = "alert.updated")]
    AlertUpdated,
    /// A citizen filed a field report (data: [`crate::report::ReportCreated`]).
    #[serde(rename = "report.created")]
    ReportCreated,
    /// A step of a report's life (data: [`crate::report::ReportTransition`]).
    #[serde(rename = "report.transition")]
    ReportTransition,
    /// A camera's state changed, or fresh stream statistics (data: [`crate::CameraStatus`]).
    #[serde(rename = "camera.status")]
    CameraStatus,
    /// A unit's figure for an indicator and period, new or corrected (data:
    /// [`crate::indicator::IndicatorEvent`]).
    #[serde(rename = "indicator.value")]
    IndicatorValue,
    /// A target for an indicator, unit and period (data: [`crate::indicator::IndicatorEvent`]).
    #[serde(rename = "indicator.target")]
    IndicatorTarget,
    /// An explanation asked for or given (data: [`crate::indicator::IndicatorEvent`]).
    #[serde(rename = "indicator.explanation")]
    IndicatorExplanation,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub v: u16,
    pub id: Uuid,
    pub kind: EventKind,
    pub entity: EntityId,
    /// Event time.
    pub ts: DateTime<FixedOffset>,
    /// Ingest time.
    pub received: DateTime<FixedOffset>,
    /// Where it came from: `mqtt:<topic>`, `http:<path>`, `poll:<url host>`, `sim:...`.
    pub source: String,
    pub data: Value,
}

impl Envelope {
    pub fn new(
        kind: EventKind,
        entity: EntityId,
        ts: DateTime<FixedOffset>,
        received: DateTime<Utc>,
        source: impl Into<String>,
        data: Value,
    ) -> Self {
        Self {
            v: ENVELOPE_VERSION,
            id: Uuid::now_v7(),
            kind,
            entity,
            ts,
            received: received.with_timezone(ts.offset()),
            source: source.into(),
            data,
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an envelope always serialises")
    }

    /// Parses an envelope, refusing versions this build does not understand.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, FieldError> {
        let env: Envelope = serde_json::from_slice(bytes)
            .map_err(|e| FieldError::new("envelope", format!("not a valid envelope: {e}")))?;
        if env.v != ENVELOPE_VERSION {
            return Err(FieldError::new(
                "v",
                format!("envelope version {} is not supported", env.v),
            ));
        }
        Ok(env)
    }

    /// Decodes `data` as `T`.
    pub fn data_as<T: serde::de::DeserializeOwned>(&self) -> Result<T, FieldError> {
        T::deserialize(&self.data).map_err(|e| FieldError::new("data", e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn envelopes_round_trip_and_keep_the_event_offset() {
        let ts = DateTime::parse_from_rfc3339("2026-03-02T06:00:00+07:00").unwrap();
        let env = Envelope::new(
            EventKind::SensorReading,
            EntityId::parse("station:hg-vt-sal-01").unwrap(),
            ts,
            Utc::now(),
            "mqtt:ioc/sensors/hg-vt-sal-01/readings",
            json!({"value": 1.0}),
        );
        let back = Envelope::from_bytes(&env.to_bytes()).unwrap();
        assert_eq!(back, env);
        assert_eq!(back.received.offset().local_minus_utc(), 7 * 3600);
        let text = String::from_utf8(env.to_bytes()).unwrap();
        assert!(text.contains("\"kind\":\"sensor.reading\""));
        assert_eq!(env.id.get_version_num(), 7);
    }

    #[test]
    fn unknown_versions_are_refused() {
        let mut v: Value = serde_json::from_slice(
            &Envelope::new(
                EventKind::SensorReading,
                EntityId::parse("station:x").unwrap(),
                Utc::now().fixed_offset(),
                Utc::now(),
                "t",
                json!({}),
            )
            .to_bytes(),
        )
        .unwrap();
        v["v"] = json!(2);
        let e = Envelope::from_bytes(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert_eq!(e.field, "v");
    }
}

/// What the dead-letter topic holds: input that could not be accepted, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Where the input came from (`mqtt:<topic>`, `http:/ingest/v1/readings`, ...).
    pub source: String,
    pub errors: Vec<crate::FieldError>,
    /// The input as received (JSON when it parsed, else the text, cut to 64 KiB).
    pub original: Value,
}

impl Envelope {
    /// A `deadletter` event for input from `source` refused for `errors`.
    pub fn dead_letter(
        source: &str,
        entity: Option<EntityId>,
        errors: Vec<crate::FieldError>,
        original: Value,
        now: DateTime<Utc>,
    ) -> Self {
        let entity = entity.unwrap_or_else(|| EntityId("source:unknown".to_string()));
        let data = DeadLetter {
            source: source.to_string(),
            errors,
            original,
        };
        Envelope::new(
            EventKind::DeadLetter,
            entity,
            now.fixed_offset(),
            now,
            source,
            serde_json::to_value(data).expect("dead letters serialise"),
        )
    }
}

/// Raw bytes as a JSON value for a dead letter: parsed when they are JSON, else (lossy) text.
pub fn original_value(bytes: &[u8]) -> Value {
    const MAX: usize = 64 * 1024;
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v) if bytes.len() <= MAX => v,
        _ => Value::String(String::from_utf8_lossy(&bytes[..bytes.len().min(MAX)]).into_owned()),
    }
}
