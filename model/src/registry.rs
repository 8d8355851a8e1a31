//! Registry entries: the slowly-changing things (stations, units, agencies, zones, cameras,
//! the indicator catalogue) carried on
//! the compacted `ioc.registry` topic, keyed by entity id, and the [`Directory`] built from them.

use std::collections::HashMap;

use geo::{Intersects, MultiPolygon, Point};
use serde::{Deserialize, Serialize};

use crate::camera::Camera;
use crate::error::FieldError;
use crate::geoindex::UnitIndex;
use crate::id::{EntityId, EntityKind, LocalId};
use crate::place::{AdminUnit, Agency, Station, Zone};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RegistryEntry {
    Station(Station),
    Unit(AdminUnit),
    Agency(Agency),
    Zone(Zone),
    Camera(Camera),
    /// An indicator of the leaders' catalogue.
    Indicator(crate::indicator::Indicator),
    /// A video-wall layout.
    Layout(crate::wall::WallLayout),
}

impl RegistryEntry {
    pub fn entity(&self) -> EntityId {
        match self {
            RegistryEntry::Station(s) => EntityId::new(crate::EntityKind::Station, &s.id),
            RegistryEntry::Unit(u) => EntityId::new(crate::EntityKind::Unit, &u.id),
            RegistryEntry::Agency(a) => EntityId::new(crate::EntityKind::Agency, &a.id),
            RegistryEntry::Zone(z) => EntityId::new(crate::EntityKind::Zone, &z.id),
            RegistryEntry::Camera(c) => EntityId::new(crate::EntityKind::Camera, &c.id),
            RegistryEntry::Indicator(i) => EntityId::new(crate::EntityKind::Indicator, &i.code),
            RegistryEntry::Layout(l) => EntityId::new(crate::EntityKind::Layout, &l.id),
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

/// A change to the registry, as one event of `ioc.registry` carries it.
#[derive(Debug, Clone, PartialEq)]
pub enum RegistryChange {
    Upsert(RegistryEntry),
    Remove(EntityId),
}

impl RegistryChange {
    /// The change an event announces, checked (a station or camera must validate); `None`
    /// for an event of another kind. `Err` names what is wrong.
    pub fn from_event(env: &crate::Envelope) -> Result<Option<Self>, Vec<FieldError>> {
        LocalId::parse("entity", env.entity.local()).map_err(|e| vec![e])?;
        match env.kind {
            crate::EventKind::RegistryUpsert => {
                let entry = env.data_as::<RegistryEntry>().map_err(|e| vec![e])?;
                let checked = match &entry {
                    RegistryEntry::Station(s) => s.validate(),
                    RegistryEntry::Camera(c) => c.validate(),
                    RegistryEntry::Indicator(i) => i.check(),
                    RegistryEntry::Layout(l) => l.check().map_err(Into::into),
                    _ => Ok(()),
                };
                checked.map_err(|invalid| invalid.errors)?;
                if entry.entity() != env.entity {
                    return Err(vec![FieldError::new(
                        "entity",
                        format!(
                            "{} does not match the entry's id {}",
                            env.entity,
                            entry.entity()
                        ),
                    )]);
                }
                Ok(Some(Self::Upsert(entry)))
            }
            crate::EventKind::RegistryRemove => Ok(Some(Self::Remove(env.entity.clone()))),
            _ => Ok(None),
        }
    }

    /// The entity the change is about.
    pub fn entity(&self) -> EntityId {
        match self {
            Self::Upsert(e) => e.entity(),
            Self::Remove(e) => e.clone(),
        }
    }
}

/// The registry as every process sees it: administrative units (with a point-in-polygon
/// index), stations, agencies, custom zones (with point-in-zone) and cameras, kept current by
/// applying the registry's events in order. Pure: the caller reads the topic.
#[derive(Default)]
pub struct Directory {
    pub units: HashMap<LocalId, AdminUnit>,
    pub stations: HashMap<LocalId, Station>,
    pub agencies: HashMap<LocalId, Agency>,
    pub zones: HashMap<LocalId, Zone>,
    pub cameras: HashMap<LocalId, Camera>,
    pub indicators: HashMap<LocalId, crate::indicator::Indicator>,
    pub layouts: HashMap<LocalId, crate::wall::WallLayout>,
    index: UnitIndex,
    index_stale: bool,
    /// Zones as polygons, for point-in-zone.
    zone_shapes: Vec<(LocalId, String, MultiPolygon<f64>)>,
    /// Units left out of the index (their geometry was refused), with the reason.
    refused: Vec<(LocalId, String)>,
}

impl Directory {
    pub fn upsert(&mut self, entry: RegistryEntry) {
        match entry {
            RegistryEntry::Station(s) => {
                self.stations.insert(s.id.clone(), s);
            }
            RegistryEntry::Unit(u) => {
                self.units.insert(u.id.clone(), u);
                self.index_stale = true;
            }
            RegistryEntry::Agency(a) => {
                self.agencies.insert(a.id.clone(), a);
            }
            RegistryEntry::Zone(z) => {
                self.zones.insert(z.id.clone(), z);
                self.refresh_zones();
            }
            RegistryEntry::Camera(c) => {
                self.cameras.insert(c.id.clone(), c);
            }
            RegistryEntry::Indicator(i) => {
                self.indicators.insert(i.code.clone(), i);
            }
            RegistryEntry::Layout(l) => {
                self.layouts.insert(l.id.clone(), l);
            }
        }
    }

    /// Removes `entity`; true when something was there.
    pub fn remove(&mut self, entity: &EntityId) -> bool {
        let Ok(id) = LocalId::parse("entity", entity.local()) else {
            return false;
        };
        match entity.kind() {
            EntityKind::Station => self.stations.remove(&id).is_some(),
            EntityKind::Unit => {
                self.index_stale = true;
                self.units.remove(&id).is_some()
            }
            EntityKind::Agency => self.agencies.remove(&id).is_some(),
            EntityKind::Camera => self.cameras.remove(&id).is_some(),
            EntityKind::Indicator => self.indicators.remove(&id).is_some(),
            EntityKind::Layout => self.layouts.remove(&id).is_some(),
            EntityKind::Zone => {
                let had = self.zones.remove(&id).is_some();
                self.refresh_zones();
                had
            }
            _ => false,
        }
    }

    /// Applies one change of the registry.
    pub fn apply(&mut self, change: RegistryChange) {
        match change {
            RegistryChange::Upsert(entry) => self.upsert(entry),
            RegistryChange::Remove(entity) => {
                self.remove(&entity);
            }
        }
    }

    /// Every entry, in entity-id order (an export of the registry as it stands).
    pub fn entries(&self) -> Vec<RegistryEntry> {
        let mut out: Vec<RegistryEntry> = self
            .units
            .values()
            .cloned()
            .map(RegistryEntry::Unit)
            .chain(self.stations.values().cloned().map(RegistryEntry::Station))
            .chain(self.agencies.values().cloned().map(RegistryEntry::Agency))
            .chain(self.zones.values().cloned().map(RegistryEntry::Zone))
            .chain(self.cameras.values().cloned().map(RegistryEntry::Camera))
            .chain(
                self.indicators
                    .values()
                    .cloned()
                    .map(RegistryEntry::Indicator),
            )
            .chain(self.layouts.values().cloned().map(RegistryEntry::Layout))
            .collect();
        out.sort_by_key(|e| e.entity());
        out
    }

    /// Units whose geometry could not be indexed at the last refresh, with the reason.
    pub fn refused_units(&self) -> &[(LocalId, String)] {
        &self.refused
    }

    /// Rebuilds the point-in-polygon index if units changed; true when it did.
    pub fn refresh_index(&mut self) -> bool {
        if !self.index_stale {
            return false;
        }
        let mut refused = Vec::new();
        let shapes = self
            .units
            .values()
            .filter_map(|u| match u.geometry.to_multipolygon() {
                Ok(mp) => Some((u.id.clone(), u.parent.clone(), mp)),
                Err(e) => {
                    refused.push((u.id.clone(), e.to_string()));
                    None
                }
            })
            .collect();
        self.refused = refused;
        self.index = UnitIndex::build(shapes);
        self.index_stale = false;
        true
    }

    fn refresh_zones(&mut self) {
        self.zone_shapes = self
            .zones
            .values()
            .filter_map(|z| {
                let mp = z.geometry.to_multipolygon().ok()?;
                Some((z.id.clone(), z.name.clone(), mp))
            })
            .collect();
        self.zone_shapes.sort_by(|a, b| a.0.cmp(&b.0));
    }

    /// Custom zones containing a point: id and name.
    pub fn zones_at(&self, lon: f64, lat: f64) -> Vec<(LocalId, String)> {
        let p = Point::new(lon, lat);
        self.zone_shapes
            .iter()
            .filter(|(_, _, mp)| mp.intersects(&p))
            .map(|(id, name, _)| (id.clone(), name.clone()))
            .collect()
    }

    /// The names of `units` (those the registry knows), in order.
    pub fn unit_names(&self, units: &[LocalId]) -> Vec<String> {
        units
            .iter()
            .filter_map(|u| self.units.get(u))
            .map(|u| u.name.clone())
            .collect()
    }

    /// Units containing a point, deepest first.
    pub fn locate(&self, lon: f64, lat: f64) -> Vec<LocalId> {
        self.index.locate(lon, lat)
    }
}

#[cfg(test)]
mod directory_tests {
    use super::*;
    use chrono::Utc;

    fn station() -> Station {
        serde_json::from_value(serde_json::json!({
            "id": "hg-test-01", "name": "Trạm thử", "kind": "salinity",
            "position": {"lon": 105.47, "lat": 9.78}, "parameters": ["salinity"],
            "interval_s": 300
        }))
        .unwrap()
    }

    #[test]
    fn events_build_the_directory_and_removals_take_entries_out() {
        let mut dir = Directory::default();
        let s = station();
        let up = RegistryEntry::Station(s.clone()).upsert_event("test", Utc::now());
        dir.apply(RegistryChange::from_event(&up).unwrap().unwrap());
        assert!(dir.stations.contains_key(&s.id));
        assert_eq!(dir.entries(), vec![RegistryEntry::Station(s.clone())]);
        let gone = RegistryEntry::remove_event(EntityId::station(&s.id), "test", Utc::now());
        let change = RegistryChange::from_event(&gone).unwrap().unwrap();
        assert_eq!(change.entity(), EntityId::station(&s.id));
        dir.apply(change);
        assert!(dir.entries().is_empty());
    }

    #[test]
    fn an_invalid_or_mismatched_entry_is_refused_naming_the_field() {
        let mut s = station();
        s.position.lat = 95.0;
        let bad = RegistryEntry::Station(s).upsert_event("test", Utc::now());
        let errors = RegistryChange::from_event(&bad).unwrap_err();
        assert!(errors.iter().any(|e| e.field.contains("lat")), "{errors:?}");
        let mut env = RegistryEntry::Station(station()).upsert_event("test", Utc::now());
        env.entity = EntityId::parse("station:someone-else").unwrap();
        let errors = RegistryChange::from_event(&env).unwrap_err();
        assert_eq!(errors[0].field, "entity");
    }
}
