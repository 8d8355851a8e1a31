//! Registry entries: the slowly-changing things (stations, units, agencies, zones, cameras) carried on
//! the compacted `ioc.registry` topic, keyed by entity id.

use serde::{Deserialize, Serialize};

use crate::id::EntityId;
use crate::place::{AdminUnit, Agency, Station, Zone};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RegistryEntry {
    Station(Station),
    Unit(AdminUnit),
    Agency(Agency),
    Zone(Zone),
    Camera(crate::camera::Camera),
}

impl RegistryEntry {
    pub fn entity(&self) -> EntityId {
        match self {
            RegistryEntry::Station(s) => EntityId::new("station", &s.id),
            RegistryEntry::Unit(u) => EntityId::new("unit", &u.id),
            RegistryEntry::Agency(a) => EntityId::new("agency", &a.id),
            RegistryEntry::Zone(z) => EntityId::new("zone", &z.id),
            RegistryEntry::Camera(c) => EntityId::new("camera", &c.id),
        }
    }
}

impl RegistryEntry {
    /// The `registry.upsert` event announcing this entry.
    pub fn upsert_event(
        &self,
        source: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> crate::Envelope {
        crate::Envelope::new(
            crate::EventKind::RegistryUpsert,
            self.entity(),
            now.fixed_offset(),
            now,
            source,
            serde_json::to_value(self).expect("registry entries serialise"),
        )
    }

    /// The `registry.remove` event taking `entity` off the registry.
    pub fn remove_event(
        entity: EntityId,
        source: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> crate::Envelope {
        crate::Envelope::new(
            crate::EventKind::RegistryRemove,
            entity,
            now.fixed_offset(),
            now,
            source,
            serde_json::Value::Null,
        )
    }
}
