//! The registry as stream-core sees it: administrative units (with a point-in-polygon index),
//! stations, agencies, zones and cameras, kept current from `ioc.registry`.

use std::collections::HashMap;

use geo::{Intersects, MultiPolygon, Point};
use model::geoindex::UnitIndex;
use model::{AdminUnit, Agency, Camera, LocalId, RegistryEntry, Station, Zone};

#[derive(Default)]
pub struct Directory {
    pub units: HashMap<LocalId, AdminUnit>,
    pub stations: HashMap<LocalId, Station>,
    pub agencies: HashMap<LocalId, Agency>,
    pub zones: HashMap<LocalId, Zone>,
    pub cameras: HashMap<LocalId, Camera>,
    index: UnitIndex,
    index_stale: bool,
    /// Zones as polygons, for point-in-zone.
    zone_shapes: Vec<(LocalId, String, MultiPolygon<f64>)>,
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
        }
    }

    /// Removes `kind:id`; true when something was there.
    pub fn remove(&mut self, kind: &str, id: &LocalId) -> bool {
        match kind {
            "station" => self.stations.remove(id).is_some(),
            "unit" => {
                self.index_stale = true;
                self.units.remove(id).is_some()
            }
            "agency" => self.agencies.remove(id).is_some(),
            "camera" => self.cameras.remove(id).is_some(),
            "zone" => {
                let had = self.zones.remove(id).is_some();
                self.refresh_zones();
                had
            }
            _ => false,
        }
    }

    /// Rebuilds the point-in-polygon index if units changed; true when it did.
    pub fn refresh_index(&mut self) -> bool {
        if !self.index_stale {
            return false;
        }
        let shapes = self
            .units
            .values()
            .filter_map(|u| match u.geometry.to_multipolygon() {
                Ok(mp) => Some((u.id.clone(), u.parent.clone(), mp)),
                Err(e) => {
                    tracing::warn!(unit = %u.id, error = %e, "unit geometry refused; unit not indexed");
                    None
                }
            })
            .collect();
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
