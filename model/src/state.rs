//! State records: the latest state of one entity as stream-core publishes it on the compacted
//! `ioc.state` topic and read replicas (map-api, ui-feeds) hold it. Kind-agnostic on purpose:
//! a replica serves any layer as GeoJSON without knowing what a station or a camera is.

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::id::{EntityId, LocalId};
use crate::layer::Layer;

/// Where in an input topic an entity's state was last advanced: partition -> offset.
/// stream-core uses it to skip events it has already applied when it replays after a crash.
pub type SourcePosition = BTreeMap<i32, i64>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateRecord {
    pub entity: EntityId,
    pub layer: Layer,
    pub geometry: geojson::Geometry,
    /// `[west, south, east, north]` of the geometry.
    pub bbox: [f64; 4],
    /// Administrative units containing the entity, deepest first.
    #[serde(default)]
    pub units: Vec<LocalId>,
    /// Event time of the newest data in this state.
    pub updated: Option<DateTime<FixedOffset>>,
    /// What a map shows: name, latest values, levels...
    pub properties: Map<String, Value>,
    /// Input positions already applied to this state (not shown to clients).
    #[serde(default)]
    pub applied: SourcePosition,
    /// What the core keeps across restarts to derive properties (e.g. hourly means for
    /// VN_AQI); not shown to clients.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub core: Value,
}

impl StateRecord {
    /// Does the record's bbox intersect `[w, s, e, n]`?
    pub fn intersects(&self, bbox: &[f64; 4]) -> bool {
        self.bbox[0] <= bbox[2]
            && self.bbox[2] >= bbox[0]
            && self.bbox[1] <= bbox[3]
            && self.bbox[3] >= bbox[1]
    }

    /// The entity's display name (`properties.name`), empty when it has none.
    pub fn name(&self) -> &str {
        self.properties
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// Is the entity inside (or is it) the unit `unit`?
    pub fn in_unit(&self, unit: &str) -> bool {
        self.units.iter().any(|u| u.as_str() == unit)
    }

    /// The record as an RFC 7946 Feature, `id` = entity id.
    pub fn to_feature(&self) -> geojson::Feature {
        let mut props = self.properties.clone();
        props.insert("layer".into(), Value::String(self.layer.as_str().into()));
        props.insert(
            "units".into(),
            Value::Array(
                self.units
                    .iter()
                    .map(|u| Value::String(u.to_string()))
                    .collect(),
            ),
        );
        if let Some(ts) = self.updated {
            props.insert("updated".into(), Value::String(ts.to_rfc3339()));
        }
        geojson::Feature {
            bbox: None,
            geometry: Some(self.geometry.clone()),
            id: Some(geojson::feature::Id::String(self.entity.to_string())),
            properties: Some(props),
            foreign_members: None,
        }
    }
}

/// `[w, s, e, n]` of a GeoJSON geometry's coordinates, or `None` when it has none.
pub fn geometry_bbox(g: &geojson::Geometry) -> Option<[f64; 4]> {
    fn walk(v: &geojson::Value, b: &mut [f64; 4]) {
        use geojson::Value::*;
        let mut add = |p: &Vec<f64>| {
            if p.len() >= 2 {
                b[0] = b[0].min(p[0]);
                b[1] = b[1].min(p[1]);
                b[2] = b[2].max(p[0]);
                b[3] = b[3].max(p[1]);
            }
        };
        match v {
            Point(p) => add(p),
            MultiPoint(ps) | LineString(ps) => ps.iter().for_each(&mut add),
            MultiLineString(ls) | Polygon(ls) => ls.iter().flatten().for_each(&mut add),
            MultiPolygon(pss) => pss.iter().flatten().flatten().for_each(&mut add),
            GeometryCollection(gs) => gs.iter().for_each(|g| walk(&g.value, b)),
        }
    }
    let mut b = [
        f64::INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NEG_INFINITY,
    ];
    walk(&g.value, &mut b);
    b[0].is_finite().then_some(b)
}

/// Parses `w,s,e,n` as a bbox, naming what is wrong.
pub fn parse_bbox(s: &str) -> Result<[f64; 4], crate::FieldError> {
    let parts: Vec<f64> = s
        .split(',')
        .map(|p| p.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|_| {
            crate::FieldError::new("bbox", "must be four numbers: west,south,east,north")
        })?;
    let b: [f64; 4] = parts.try_into().map_err(|_| {
        crate::FieldError::new("bbox", "must be four numbers: west,south,east,north")
    })?;
    check_bbox(b)
}

pub fn check_bbox(b: [f64; 4]) -> Result<[f64; 4], crate::FieldError> {
    let err = |r: &str| Err(crate::FieldError::new("bbox", r));
    if b.iter().any(|v| !v.is_finite()) {
        return err("must be finite numbers");
    }
    if !(-180.0..=180.0).contains(&b[0]) || !(-180.0..=180.0).contains(&b[2]) {
        return err("longitudes must be within -180..180");
    }
    if !(-90.0..=90.0).contains(&b[1]) || !(-90.0..=90.0).contains(&b[3]) {
        return err("latitudes must be within -90..90");
    }
    if b[0] > b[2] || b[1] > b[3] {
        return err("west must not exceed east, nor south north");
    }
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bbox_parsing_refuses_nonsense() {
        assert_eq!(
            parse_bbox("105,9,106,10.5").unwrap(),
            [105.0, 9.0, 106.0, 10.5]
        );
        for bad in [
            "",
            "1,2,3",
            "a,b,c,d",
            "106,9,105,10",
            "0,-91,1,1",
            "NaN,0,1,1",
        ] {
            assert_eq!(parse_bbox(bad).unwrap_err().field, "bbox", "{bad}");
        }
    }

    #[test]
    fn geometry_bbox_covers_all_positions() {
        let g = geojson::Geometry::new(geojson::Value::Polygon(vec![vec![
            vec![105.0, 9.0],
            vec![106.0, 9.5],
            vec![105.5, 10.0],
            vec![105.0, 9.0],
        ]]));
        assert_eq!(geometry_bbox(&g), Some([105.0, 9.0, 106.0, 10.0]));
    }
}
