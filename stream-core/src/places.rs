//! The places the registry draws: administrative units (with their report counts) and
//! custom zones, as state records of the `units` and `zones` layers.

use model::state::geometry_bbox;
use model::{EntityId, Layer, StateRecord};

use crate::reports::UnitCounts;
use model::Directory;

/// The state record of a custom zone (the `zones` layer).
pub fn zone_record(z: &model::Zone) -> StateRecord {
    let mut properties = serde_json::Map::new();
    properties.insert("name".into(), z.name.clone().into());
    properties.insert(
        "owner".into(),
        z.owner.as_ref().map(|o| o.to_string()).into(),
    );
    StateRecord {
        entity: EntityId::new(model::EntityKind::Zone, &z.id),
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

/// The state record of a video-wall layout (the `layouts` layer): the layout itself in its
/// properties (screens, panels, focus), placed at its focus when it has one so that a map
/// can show where the wall is looking; a layout without one has no place.
pub fn layout_record(l: &model::wall::WallLayout) -> StateRecord {
    let mut properties = match serde_json::to_value(l) {
        Ok(serde_json::Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    };
    properties.remove("id");
    let geometry = match &l.focus {
        Some(f) => geojson::Geometry::new(geojson::Value::Point(vec![f.lon, f.lat])),
        None => geojson::Geometry::new(geojson::Value::GeometryCollection(Vec::new())),
    };
    StateRecord {
        entity: EntityId::new(model::EntityKind::Layout, &l.id),
        layer: Layer::Layouts,
        bbox: geometry_bbox(&geometry).unwrap_or([0.0; 4]),
        geometry,
        units: Vec::new(),
        updated: l.focus.as_ref().map(|f| f.at.fixed_offset()),
        properties,
        applied: Default::default(),
        core: serde_json::Value::Null,
    }
}

/// The state record of an administrative unit (the `units` layer).
pub fn unit_record(u: &model::AdminUnit, dir: &Directory, reports: UnitCounts) -> StateRecord {
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
        entity: EntityId::new(model::EntityKind::Unit, &u.id),
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
