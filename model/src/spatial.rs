//! Geo queries beyond the bbox, pure: `near=lon,lat,radius_m` (a disc, nearest first) and
//! `within=` an area (a unit's or zone's outline, or a GeoJSON polygon the client sends).
//! Parsing refuses what a bbox would refuse, naming the field; the replica answers from its
//! index with the bounding boxes given here and tests each candidate exactly with
//! [`Near::distance_to`] and [`Within::holds`].

use geo::{BoundingRect, Closest, ClosestPoint, Intersects, MultiPolygon, Point};
use serde_json::Value;

use crate::error::FieldError;
use crate::place::{Area, GeoPoint};

/// Mean Earth radius (IUGG), metres.
const EARTH_RADIUS_M: f64 = 6_371_008.8;
/// Largest `near` radius: a province is at most a few hundred km across.
pub const MAX_RADIUS_M: f64 = 500_000.0;
/// Most vertices a client-sent `within` polygon may have (a URL carries it).
pub const MAX_WITHIN_VERTICES: usize = 1_000;

/// Metres between two points (haversine; good to well under a metre at 50 m).
pub fn distance_m(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = (lat2 - lat1).to_radians();
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * a.sqrt().min(1.0).asin()
}

/// A disc on the ground: the `near` of a query.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Near {
    pub lon: f64,
    pub lat: f64,
    pub radius_m: f64,
}

impl Near {
    /// `lon,lat,radius_m`, as a query string carries it.
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        let parts: Vec<f64> = s
            .split(',')
            .map(|p| p.trim().parse::<f64>())
            .collect::<Result<_, _>>()
            .map_err(|_| bad_near())?;
        match parts[..] {
            [lon, lat, radius_m] => Self::new(lon, lat, radius_m),
            _ => Err(bad_near()),
        }
    }

    /// `[lon, lat, radius_m]`, as a websocket subscription carries it.
    pub fn from_json(v: &Value) -> Result<Self, FieldError> {
        let a = v.as_array().filter(|a| a.len() == 3).ok_or_else(bad_near)?;
        let n = |i: usize| a.get(i).and_then(Value::as_f64).ok_or_else(bad_near);
        Self::new(n(0)?, n(1)?, n(2)?)
    }

    pub fn new(lon: f64, lat: f64, radius_m: f64) -> Result<Self, FieldError> {
        GeoPoint::new(lon, lat).map_err(|e| FieldError::new("near", e.reason))?;
        if !radius_m.is_finite() || radius_m <= 0.0 || radius_m > MAX_RADIUS_M {
            return Err(FieldError::new(
                "near",
                format!("radius_m must be a number of metres above 0 and at most {MAX_RADIUS_M}"),
            ));
        }
        Ok(Self { lon, lat, radius_m })
    }

    /// `[w, s, e, n]` holding the disc (wider in longitude away from the equator), clamped to
    /// the globe.
    pub fn bbox(&self) -> [f64; 4] {
        let dlat = (self.radius_m / EARTH_RADIUS_M).to_degrees();
        let cos = self.lat.to_radians().cos().max(1e-6);
        let dlon = (dlat / cos).min(180.0);
        [
            (self.lon - dlon).max(-180.0),
            (self.lat - dlat).max(-90.0),
            (self.lon + dlon).min(180.0),
            (self.lat + dlat).min(90.0),
        ]
    }

    /// Metres from the centre to the nearest point of `geometry` (0 inside a polygon);
    /// `None` for a geometry that cannot be read.
    pub fn distance_to(&self, geometry: &geojson::Geometry) -> Option<f64> {
        if let geojson::Value::Point(p) = &geometry.value {
            // The common case (stations, cameras, reports, alerts), without a conversion.
            return match p[..] {
                [lon, lat, ..] => Some(distance_m(self.lat, self.lon, lat, lon)),
                _ => None,
            };
        }
        let g: geo::Geometry<f64> = geometry.clone().try_into().ok()?;
        let centre = Point::new(self.lon, self.lat);
        if g.intersects(&centre) {
            return Some(0.0);
        }
        // The closest point in plane coordinates, then its distance on the sphere: within a
        // disc of a few km the two agree to metres.
        match g.closest_point(&centre) {
            Closest::Intersection(_) => Some(0.0),
            Closest::SinglePoint(p) => Some(distance_m(self.lat, self.lon, p.y(), p.x())),
            Closest::Indeterminate => None,
        }
    }

    /// The distance when `geometry` reaches into the disc.
    pub fn reach(&self, geometry: &geojson::Geometry) -> Option<f64> {
        self.distance_to(geometry).filter(|d| *d <= self.radius_m)
    }
}

fn bad_near() -> FieldError {
    FieldError::new("near", "must be three numbers: lon,lat,radius_m")
}

/// What a client names as `within`, before it is resolved to a shape.
#[derive(Debug, Clone, PartialEq)]
pub enum WithinSpec {
    /// An administrative unit's outline, by id.
    Unit(String),
    /// A zone's outline, by id.
    Zone(String),
    /// A polygon the client sent.
    Shape(Within),
}

impl WithinSpec {
    /// `unit:<id>`, `zone:<id>`, a bare id (a unit, then a zone), or a GeoJSON Polygon or
    /// MultiPolygon geometry.
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        let s = s.trim();
        if s.starts_with('{') {
            let v: Value = serde_json::from_str(s)
                .map_err(|e| FieldError::new("within", format!("not a GeoJSON geometry: {e}")))?;
            return Within::from_geojson(&v).map(Self::Shape);
        }
        let id_ok = |id: &str| {
            !id.is_empty()
                && id.len() <= 64
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        };
        let spec = match s.split_once(':') {
            Some(("unit", id)) => Self::Unit(id.to_string()),
            Some(("zone", id)) => Self::Zone(id.to_string()),
            Some(_) => return Err(bad_within()),
            None => Self::Unit(s.to_string()),
        };
        match &spec {
            Self::Unit(id) | Self::Zone(id) if !id_ok(id) => Err(bad_within()),
            _ => Ok(spec),
        }
    }

    /// As a websocket subscription carries it: an id string, or a geometry object.
    pub fn from_json(v: &Value) -> Result<Self, FieldError> {
        match v {
            Value::String(s) => Self::parse(s),
            Value::Object(_) => Within::from_geojson(v).map(Self::Shape),
            _ => Err(bad_within()),
        }
    }
}

fn bad_within() -> FieldError {
    FieldError::new(
        "within",
        "must be a unit id, zone:<id>, or a GeoJSON Polygon or MultiPolygon",
    )
}

/// A resolved area: its outline and bounding box.
#[derive(Debug, Clone, PartialEq)]
pub struct Within {
    shape: MultiPolygon<f64>,
    bbox: [f64; 4],
}

impl Within {
    /// A client's GeoJSON Polygon or MultiPolygon: closed rings, positions on the globe, at
    /// most [`MAX_WITHIN_VERTICES`].
    pub fn from_geojson(v: &Value) -> Result<Self, FieldError> {
        let in_field = |e: FieldError| FieldError::new("within", e.reason);
        crate::place::rings_closed(v).map_err(in_field)?;
        let geometry: geojson::Geometry = serde_json::from_value(v.clone())
            .map_err(|e| FieldError::new("within", format!("not a GeoJSON geometry: {e}")))?;
        let shape = Area(geometry).to_multipolygon().map_err(in_field)?;
        if crate::place::vertex_count(&shape) > MAX_WITHIN_VERTICES {
            return Err(FieldError::new(
                "within",
                format!("at most {MAX_WITHIN_VERTICES} positions"),
            ));
        }
        Self::of(shape).ok_or_else(bad_within)
    }

    /// A known outline (a unit's or zone's record geometry).
    pub fn from_geometry(geometry: &geojson::Geometry) -> Option<Self> {
        Self::of(Area(geometry.clone()).to_multipolygon().ok()?)
    }

    fn of(shape: MultiPolygon<f64>) -> Option<Self> {
        let r = shape.bounding_rect()?;
        Some(Self {
            bbox: [r.min().x, r.min().y, r.max().x, r.max().y],
            shape,
        })
    }

    pub fn bbox(&self) -> [f64; 4] {
        self.bbox
    }

    /// Does `geometry` lie in the area, wholly or in part (a point on the boundary counts)?
    pub fn holds(&self, geometry: &geojson::Geometry) -> bool {
        if let geojson::Value::Point(p) = &geometry.value {
            return match p[..] {
                [lon, lat, ..] => self.shape.intersects(&Point::new(lon, lat)),
                _ => false,
            };
        }
        let g: Option<geo::Geometry<f64>> = geometry.clone().try_into().ok();
        g.is_some_and(|g| self.shape.intersects(&g))
    }
}

/// The intersection of two `[w, s, e, n]` boxes, `None` when they do not meet.
pub fn bbox_meet(a: &[f64; 4], b: &[f64; 4]) -> Option<[f64; 4]> {
    let m = [
        a[0].max(b[0]),
        a[1].max(b[1]),
        a[2].min(b[2]),
        a[3].min(b[3]),
    ];
    (m[0] <= m[2] && m[1] <= m[3]).then_some(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn point(lon: f64, lat: f64) -> geojson::Geometry {
        geojson::Geometry::new(geojson::Value::Point(vec![lon, lat]))
    }

    #[test]
    fn near_parses_and_refuses_like_a_bbox() {
        let n = Near::parse("105.78,9.78,2500").unwrap();
        assert_eq!((n.lon, n.lat, n.radius_m), (105.78, 9.78, 2500.0));
        for bad in [
            "",
            "105,9",
            "105,9,10,1",
            "x,9,10",
            "190,9,10",
            "105,95,10",
            "105,9,0",
            "105,9,-5",
            "105,9,NaN",
            "105,9,1e9",
        ] {
            assert_eq!(Near::parse(bad).unwrap_err().field, "near", "{bad}");
        }
        assert!(Near::from_json(&json!([105.0, 9.0, 100])).is_ok());
        assert_eq!(
            Near::from_json(&json!("105,9,100")).unwrap_err().field,
            "near"
        );
    }

    #[test]
    fn a_nearby_point_is_in_the_disc_at_its_distance() {
        let n = Near::new(105.0, 9.0, 100.0).unwrap();
        // 0.0003° of latitude is about 33 m.
        let d = n.reach(&point(105.0, 9.0003)).unwrap();
        assert!((d - 33.36).abs() < 0.1, "{d}");
        assert_eq!(n.reach(&point(105.0, 9.01)), None);
        // The box holds the disc in every direction.
        let b = n.bbox();
        for (lon, lat) in [
            (105.0, 9.00089),
            (105.0009, 9.0),
            (104.9991, 9.0),
            (105.0, 8.99911),
        ] {
            assert!(lon >= b[0] && lon <= b[2] && lat >= b[1] && lat <= b[3]);
        }
    }

    #[test]
    fn a_polygon_is_at_its_nearest_edge_and_zero_inside() {
        let square = geojson::Geometry::new(geojson::Value::Polygon(vec![vec![
            vec![105.0, 9.0],
            vec![105.01, 9.0],
            vec![105.01, 9.01],
            vec![105.0, 9.01],
            vec![105.0, 9.0],
        ]]));
        let inside = Near::new(105.005, 9.005, 10.0).unwrap();
        assert_eq!(inside.reach(&square), Some(0.0));
        // 0.001° of latitude south of the square's south edge: about 111 m.
        let south = Near::new(105.005, 8.999, 200.0).unwrap();
        let d = south.reach(&square).unwrap();
        assert!((d - 111.2).abs() < 0.5, "{d}");
    }

    #[test]
    fn within_takes_ids_and_polygons_and_names_its_field() {
        assert_eq!(
            WithinSpec::parse("vi-thanh").unwrap(),
            WithinSpec::Unit("vi-thanh".into())
        );
        assert_eq!(
            WithinSpec::parse("unit:hg").unwrap(),
            WithinSpec::Unit("hg".into())
        );
        assert_eq!(
            WithinSpec::parse("zone:z-1").unwrap(),
            WithinSpec::Zone("z-1".into())
        );
        let poly =
            r#"{"type":"Polygon","coordinates":[[[105,9],[106,9],[106,10],[105,10],[105,9]]]}"#;
        let WithinSpec::Shape(w) = WithinSpec::parse(poly).unwrap() else {
            panic!("a shape")
        };
        assert_eq!(w.bbox(), [105.0, 9.0, 106.0, 10.0]);
        assert!(w.holds(&point(105.5, 9.5)));
        assert!(w.holds(&point(105.0, 9.5)), "the boundary counts");
        assert!(!w.holds(&point(106.5, 9.5)));
        let open = r#"{"type":"Polygon","coordinates":[[[105,9],[106,9],[106,10],[105,10]]]}"#;
        let far = r#"{"type":"Polygon","coordinates":[[[105,9],[196,9],[106,10],[105,9]]]}"#;
        let line = r#"{"type":"LineString","coordinates":[[105,9],[106,9]]}"#;
        for bad in [
            "",
            "bus:1",
            "unit:",
            "a b",
            "{",
            open,
            far,
            line,
            "{\"type\":\"Polygon\"}",
        ] {
            assert_eq!(WithinSpec::parse(bad).unwrap_err().field, "within", "{bad}");
        }
        let many: Vec<Value> = (0..=MAX_WITHIN_VERTICES)
            .map(|i| {
                json!([
                    105.0 + (i as f64 / 2000.0).sin(),
                    9.0 + (i as f64 / 2000.0).cos()
                ])
            })
            .chain([json!([105.0 + 0f64.sin(), 9.0 + 0f64.cos()])])
            .collect();
        let huge = json!({"type": "Polygon", "coordinates": [many]});
        assert_eq!(WithinSpec::from_json(&huge).unwrap_err().field, "within");
    }

    #[test]
    fn boxes_meet_or_not() {
        assert_eq!(
            bbox_meet(&[0.0, 0.0, 2.0, 2.0], &[1.0, 1.0, 3.0, 3.0]),
            Some([1.0, 1.0, 2.0, 2.0])
        );
        assert_eq!(
            bbox_meet(&[0.0, 0.0, 1.0, 1.0], &[2.0, 2.0, 3.0, 3.0]),
            None
        );
    }
}
