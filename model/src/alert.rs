//! Alerts: what an operator must act on. One alert per condition (rule) and entity at a
//! time; its life is raised → acknowledged (by whom, with a note) → cleared (automatically
//! when the condition ends, or by an operator), escalating while nobody acknowledges it.
//! Alerts travel on `ioc.alerts` as events and live in `ioc.state` as `alert:<id>` records of
//! the `alerts` layer.

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::id::{EntityId, LocalId};
use crate::layer::Layer;
use crate::state::StateRecord;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    Raised,
    Acknowledged,
    Cleared,
}

impl AlertState {
    pub fn is_active(self) -> bool {
        self != AlertState::Cleared
    }

    pub fn name_vi(self) -> &'static str {
        match self {
            AlertState::Raised => "Mới",
            AlertState::Acknowledged => "Đã tiếp nhận",
            AlertState::Cleared => "Đã kết thúc",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

/// One alert, as the alerts layer shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Unique per raise (uuid v7, sortable by time).
    pub id: String,
    /// The condition: `salinity_warning`, `aqi_poor`, `stale`...
    pub rule: String,
    /// What it is about (`station:hg-vt-sal-01`).
    pub entity: EntityId,
    /// The entity's name, for screens.
    pub entity_name: String,
    pub state: AlertState,
    pub severity: Severity,
    /// Vietnamese headline ("Độ mặn vượt ngưỡng cảnh báo 4‰").
    pub title: String,
    /// Details: value, threshold, since when.
    pub detail: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// Agency owning the entity (who may acknowledge besides operators).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agency: Option<LocalId>,
    pub raised_at: DateTime<FixedOffset>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acked_at: Option<DateTime<FixedOffset>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acked_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack_note: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cleared_at: Option<DateTime<FixedOffset>>,
    /// `auto` when the condition ended, else who cleared it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cleared_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clear_note: Option<String>,
    /// Times it escalated while unacknowledged.
    #[serde(default)]
    pub escalation: u32,
    /// Custom zones containing the entity when the alert was raised.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<LocalId>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zone_names: Vec<String>,
    /// For an alert about a camera: the camera's access group. Whoever may not see the
    /// camera does not see the alert either (it would tell where the camera is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub camera_group: Option<crate::camera::CameraGroup>,
    /// About a sensitive matter (a public-order report): only those who may see it, by
    /// [`crate::report::SensitiveScope`] for `agency`, see the alert.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sensitive: bool,
}

/// Somebody (or the core: `auto`) acting on an alert: the data of `alert.acked` and
/// `alert.cleared` events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertAction {
    pub alert: String,
    pub by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub at: DateTime<FixedOffset>,
}

impl Alert {
    pub fn entity_id(&self) -> EntityId {
        EntityId::new(
            crate::EntityKind::Alert,
            &LocalId::parse("alert", &self.id).expect("alert ids are uuids"),
        )
    }

    /// The state record of the alert, placed at its entity (`geometry`, `bbox`, `units`).
    pub fn to_record(
        &self,
        geometry: geojson::Geometry,
        bbox: [f64; 4],
        units: Vec<LocalId>,
    ) -> StateRecord {
        let properties = match serde_json::to_value(self) {
            Ok(Value::Object(mut m)) => {
                m.insert("state_vi".into(), self.state.name_vi().into());
                m
            }
            _ => Map::new(),
        };
        StateRecord {
            entity: self.entity_id(),
            layer: Layer::Alerts,
            geometry,
            bbox,
            units,
            updated: Some(
                self.acked_at
                    .max(self.cleared_at)
                    .unwrap_or(self.raised_at)
                    .max(self.raised_at),
            ),
            properties,
            applied: Default::default(),
            core: Value::Null,
        }
    }

    /// Reads an alert back from its state record.
    pub fn from_record(r: &StateRecord) -> Option<Alert> {
        serde_json::from_value(Value::Object(r.properties.clone())).ok()
    }
}
