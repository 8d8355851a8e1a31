//! Places and the things placed in them: administrative units (a hierarchy kept as data,
//! since Vietnam's levels change), custom zones, monitoring stations and the agencies that
//! own them. Names are NFC Vietnamese; coordinates are WGS 84 longitude/latitude.

use geo::{MultiPolygon, Point};
use serde::{Deserialize, Serialize};

use crate::error::{Checker, FieldError, Invalid};
use crate::id::LocalId;
use crate::reading::Parameter;

/// A WGS 84 position, longitude first (as GeoJSON).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GeoPoint {
    pub lon: f64,
    pub lat: f64,
}

impl GeoPoint {
    pub fn new(lon: f64, lat: f64) -> Result<Self, FieldError> {
        if !lon.is_finite() || !(-180.0..=180.0).contains(&lon) {
            return Err(FieldError::new(
                "position.lon",
                format!("{lon} is not a longitude in -180..180"),
            ));
        }
        if !lat.is_finite() || !(-90.0..=90.0).contains(&lat) {
            return Err(FieldError::new(
                "position.lat",
                format!("{lat} is not a latitude in -90..90"),
            ));
        }
        Ok(Self { lon, lat })
    }

    pub fn point(&self) -> Point<f64> {
        Point::new(self.lon, self.lat)
    }
}

/// A polygonal area as GeoJSON (Polygon or MultiPolygon).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Area(pub geojson::Geometry);

impl Area {
    pub fn from_multipolygon(mp: &MultiPolygon<f64>) -> Self {
        Area(geojson::Geometry::new(geojson::Value::from(mp)))
    }

    /// The area as a geo multipolygon, refusing anything that is not a valid polygon.
    pub fn to_multipolygon(&self) -> Result<MultiPolygon<f64>, FieldError> {
        let g: geo::Geometry<f64> = self.0.clone().try_into().map_err(|e| {
            FieldError::new("geometry", format!("not a valid GeoJSON geometry: {e}"))
        })?;
        let mp = match g {
            geo::Geometry::Polygon(p) => MultiPolygon(vec![p]),
            geo::Geometry::MultiPolygon(mp) => mp,
            _ => {
                return Err(FieldError::new(
                    "geometry",
                    "must be a Polygon or MultiPolygon",
                ))
            }
        };
        for p in &mp.0 {
            if p.exterior().0.len() < 4 {
                return Err(FieldError::new(
                    "geometry",
                    "a ring needs at least 4 positions",
                ));
            }
            for c in p
                .exterior()
                .0
                .iter()
                .chain(p.interiors().iter().flat_map(|r| r.0.iter()))
            {
                GeoPoint::new(c.x, c.y).map_err(|e| FieldError::new("geometry", e.reason))?;
            }
        }
        Ok(mp)
    }
}

/// One node of the administrative hierarchy (province, district, ward, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdminUnit {
    pub id: LocalId,
    /// Official name with diacritics, NFC: "Thành phố Vị Thanh".
    pub name: String,
    /// Level as the law names it ("tỉnh", "thành phố", "huyện", "phường", "xã", ...).
    pub level: String,
    pub parent: Option<LocalId>,
    pub geometry: Area,
    /// True when the boundary is a rough approximation, not surveyed data.
    #[serde(default)]
    pub approximate: bool,
    /// The first day the unit existed (created or formed by a merger), if after the
    /// registry's beginning: roll-ups of earlier periods leave it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_from: Option<chrono::NaiveDate>,
    /// The last day the unit existed (merged away or split): roll-ups of later periods
    /// leave it out, earlier ones still count it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_to: Option<chrono::NaiveDate>,
}

impl AdminUnit {
    /// Did the unit exist at some time between `first` and `last` (inclusive)?
    pub fn existed_during(&self, first: chrono::NaiveDate, last: chrono::NaiveDate) -> bool {
        self.valid_from.is_none_or(|f| f <= last) && self.valid_to.is_none_or(|t| t >= first)
    }
}

/// A custom area drawn by an operator (e.g. a rice-growing zone).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Zone {
    pub id: LocalId,
    pub name: String,
    pub geometry: Area,
    pub owner: Option<LocalId>,
}

/// An organisation that owns stations or handles reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Agency {
    pub id: LocalId,
    /// Vietnamese name: "Sở Tài nguyên và Môi trường tỉnh Hậu Giang".
    pub name: String,
    pub name_en: String,
    /// The unit whose area it serves.
    pub unit: Option<LocalId>,
}

/// What a station is for; decides its map layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StationKind {
    Salinity,
    AirQuality,
}

/// A monitoring station.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Station {
    pub id: LocalId,
    pub name: String,
    pub kind: StationKind,
    pub position: GeoPoint,
    pub parameters: Vec<Parameter>,
    /// Owning agency.
    pub agency: Option<LocalId>,
    /// Expected seconds between readings (for stale-sensor alerts).
    pub interval_s: u32,
    /// River or canal a salinity station stands on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub river: Option<String>,
    /// Distance from the river mouth along the river, km.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub km_from_mouth: Option<f64>,
    /// Salinity levels of this station (defaults: watch at 1‰, warning at 4‰).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salinity_levels: Option<crate::salinity::SalinityThresholds>,
}

impl Station {
    /// Checks a station coming from a registry source.
    pub fn validate(&self) -> Result<(), Invalid> {
        let mut c = Checker::default();
        c.check(GeoPoint::new(self.position.lon, self.position.lat));
        if self.name.trim().is_empty() {
            c.fail("name", "must not be empty");
        }
        if self.parameters.is_empty() {
            c.fail("parameters", "a station measures at least one parameter");
        }
        if self.interval_s == 0 {
            c.fail("interval_s", "must be at least 1 second");
        }
        if let Some(km) = self.km_from_mouth {
            if !km.is_finite() || km < 0.0 {
                c.fail("km_from_mouth", "must be a non-negative distance");
            }
        }
        c.finish(|| ())
    }
}

/// Positions in every ring of `mp` (exterior and holes): what an area costs to check.
pub fn vertex_count(mp: &MultiPolygon<f64>) -> usize {
    mp.0.iter()
        .map(|p| p.exterior().0.len() + p.interiors().iter().map(|r| r.0.len()).sum::<usize>())
        .sum()
}

/// Every ring of a GeoJSON Polygon or MultiPolygon ends where it starts (RFC 7946 §3.1.6);
/// geo would close an open ring silently.
pub fn rings_closed(geometry: &serde_json::Value) -> Result<(), FieldError> {
    let polygons: Vec<&serde_json::Value> =
        match geometry.get("type").and_then(serde_json::Value::as_str) {
            Some("Polygon") => geometry.get("coordinates").into_iter().collect(),
            Some("MultiPolygon") => geometry
                .get("coordinates")
                .and_then(serde_json::Value::as_array)
                .map(|a| a.iter().collect())
                .unwrap_or_default(),
            _ => return Ok(()), // the conversion names the type
        };
    for rings in polygons.iter().filter_map(|p| p.as_array()) {
        for ring in rings.iter().filter_map(|r| r.as_array()) {
            if ring.len() < 4 || ring.first() != ring.last() {
                return Err(FieldError::new(
                    "geometry",
                    "every ring must be closed (its last position equal to its first) and have at least 4 positions",
                ));
            }
        }
    }
    Ok(())
}
