//! Salinity intrusion per river: from the latest salinity of the stations on one river
//! (those with a distance from the mouth), the inland reach of the 1‰ and 4‰ lines and the
//! risk level the 4‰ reach gives (`model::salinity`). One `river:<slug>` record per river in
//! the `rivers` layer, drawn as a line through its stations from the mouth inland.

use std::collections::{BTreeMap, HashMap};

use model::salinity::{reach, Reach, RiskBands};
use model::state::geometry_bbox;
use model::{EntityId, Layer, LocalId, Parameter, StateRecord};
use serde_json::{json, Map, Value};

use crate::effect::Effect;
use crate::station::StationState;
use crate::stations::StationBook;

/// `Sông Tiền (cửa Tiểu)` -> `song-tien-cua-tieu`.
pub fn slug(river: &str) -> String {
    let folded = model::text::fold(river).to_lowercase();
    let mut out = String::new();
    for c in folded.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_string()
}

fn risk_text(level: u8, bound: &str) -> String {
    if level == 0 {
        format!(
            "{}dưới cấp độ rủi ro 1",
            if bound.is_empty() { "" } else { bound }
        )
    } else {
        format!("Rủi ro thiên tai do xâm nhập mặn: {bound}cấp độ {level}")
    }
}

fn reach_json(r: Option<Reach>) -> Value {
    r.map(|r| serde_json::to_value(r).unwrap_or_default())
        .unwrap_or(Value::Null)
}

/// How far inland a river record puts the 4‰ line, km from the mouth: between stations or
/// at least to the farthest; `None` where it stops short of the first station or is unknown.
pub fn reach_4_km(record: &StateRecord) -> Option<f64> {
    let r = record.properties.get("reach_4")?;
    match r.get("kind")?.as_str()? {
        "at" | "at_least" => r.get("km")?.as_f64(),
        _ => None,
    }
}

/// The record of `river` from its stations' states (those with `km_from_mouth`).
pub fn river_record(
    river: &str,
    stations: &[&StationState],
    bands: &RiskBands,
) -> Option<StateRecord> {
    let mut on_river: Vec<&StationState> = stations
        .iter()
        .copied()
        .filter(|s| s.station.river.as_deref() == Some(river) && s.station.km_from_mouth.is_some())
        .collect();
    if on_river.is_empty() {
        return None;
    }
    on_river.sort_by(|a, b| {
        a.station
            .km_from_mouth
            .partial_cmp(&b.station.km_from_mouth)
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let points: Vec<(f64, f64)> = on_river
        .iter()
        .filter_map(|s| {
            Some((
                s.station.km_from_mouth?,
                s.props.latest.get(&Parameter::Salinity)?.value,
            ))
        })
        .collect();
    let r1 = reach(&points, 1.0);
    let r4 = reach(&points, 4.0);
    // The risk level, and how sure it is: exact between stations; a lower bound when every
    // station is above 4‰; unknown when the line stops short of the first station but that
    // station is past the first band (the line may be anywhere before it).
    let (risk, risk_vi) = match r4 {
        None => (None, None),
        Some(Reach::At { km }) => {
            let l = bands.level(km);
            (Some(l), Some(risk_text(l, "")))
        }
        Some(Reach::AtLeast { km }) => {
            let l = bands.level(km);
            (Some(l), Some(risk_text(l, "ít nhất ")))
        }
        Some(Reach::ShortOf { km }) if bands.level(km) == 0 => (Some(0), Some(risk_text(0, ""))),
        Some(Reach::ShortOf { km }) => (
            None,
            Some(format!(
                "Chưa xác định: ranh mặn 4‰ chưa tới trạm gần cửa sông nhất (km {km})"
            )),
        ),
    };
    let coords: Vec<Vec<f64>> = on_river
        .iter()
        .map(|s| vec![s.station.position.lon, s.station.position.lat])
        .collect();
    let geometry = if coords.len() >= 2 {
        geojson::Geometry::new(geojson::Value::LineString(coords))
    } else {
        geojson::Geometry::new(geojson::Value::Point(coords[0].clone()))
    };
    let updated = on_river.iter().filter_map(|s| s.updated()).max();
    let mut units: Vec<LocalId> = on_river.iter().flat_map(|s| s.units.clone()).collect();
    units.sort();
    units.dedup();
    let mut properties = Map::new();
    properties.insert("name".into(), river.into());
    properties.insert(
        "stations".into(),
        json!(on_river
            .iter()
            .map(
                |s| json!({"id": s.station.id, "km_from_mouth": s.station.km_from_mouth,
            "salinity": s.props.latest.get(&Parameter::Salinity).map(|l| l.value)})
            )
            .collect::<Vec<_>>()),
    );
    properties.insert("reach_1".into(), reach_json(r1));
    properties.insert("reach_4".into(), reach_json(r4));
    properties.insert("risk_level".into(), risk.into());
    properties.insert("risk_vi".into(), risk_vi.into());
    let id = LocalId::parse("river", &slug(river)).ok()?;
    Some(StateRecord {
        entity: EntityId::new(model::EntityKind::River, &id),
        layer: Layer::Rivers,
        bbox: geometry_bbox(&geometry).unwrap_or([0.0; 4]),
        geometry,
        units,
        updated,
        properties,
        applied: Default::default(),
        core: Value::Null,
    })
}

/// Records of every river among `stations`, by river name.
pub fn all_rivers(stations: &[&StationState], bands: &RiskBands) -> BTreeMap<String, StateRecord> {
    let mut names: Vec<&str> = stations
        .iter()
        .filter_map(|s| s.station.river.as_deref())
        .collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter_map(|n| river_record(n, stations, bands).map(|r| (n.to_string(), r)))
        .collect()
}

/// The rivers book: each river's record as last published, republished when the stations
/// along it change it.
#[derive(Debug, Default)]
pub struct RiverBook {
    published: HashMap<String, StateRecord>,
}

impl RiverBook {
    /// Takes back the river records of the state topic.
    pub fn restore(&mut self, restored: &HashMap<EntityId, StateRecord>) {
        for r in restored.values().filter(|r| r.layer == Layer::Rivers) {
            self.published.insert(r.name().to_string(), r.clone());
        }
    }

    /// The river records that differ from what was published, from the stations as they are.
    pub fn refresh(&mut self, stations: &StationBook, bands: &RiskBands) -> Vec<Effect> {
        let states: Vec<&StationState> = stations.iter().collect();
        let now = all_rivers(&states, bands);
        let changed: Vec<Effect> = now
            .iter()
            .filter(|(name, rec)| self.published.get(*name) != Some(rec))
            .map(|(_, rec)| Effect::upsert(rec.clone()))
            .collect();
        self.published = now.into_iter().collect();
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{FixedOffset, TimeZone};
    use model::reading::Quality;
    use model::Reading;

    #[test]
    fn a_river_line_gets_its_reach_and_risk() {
        let all = fixtures::stations::stations();
        let on_tien: Vec<_> = all
            .iter()
            .filter(|s| s.river.as_deref() == Some("Sông Tiền"))
            .cloned()
            .collect();
        assert!(
            on_tien.len() >= 3,
            "the fixtures have a line of stations on the Tiền"
        );
        let t = FixedOffset::east_opt(7 * 3600)
            .unwrap()
            .with_ymd_and_hms(2026, 3, 2, 6, 0, 0)
            .unwrap();
        // Salinity falling inland: 12‰ at the first, halving each station.
        let mut states: Vec<StationState> = on_tien
            .iter()
            .map(|s| StationState::new(s.clone(), vec![], vec![]))
            .collect();
        states.sort_by(|a, b| {
            a.station
                .km_from_mouth
                .partial_cmp(&b.station.km_from_mouth)
                .unwrap()
        });
        for (i, s) in states.iter_mut().enumerate() {
            let r = Reading {
                station: s.station.id.clone(),
                parameter: Parameter::Salinity,
                ts: t,
                value: 12.0 / 2f64.powi(i as i32),
                unit: Parameter::Salinity.canonical_unit(),
                quality: Quality::Good,
                sent_as: None,
            };
            s.apply(&r, 0, i as i64);
        }
        let refs: Vec<&StationState> = states.iter().collect();
        let rivers = all_rivers(&refs, &RiskBands::default());
        let rec = &rivers["Sông Tiền"];
        assert_eq!(rec.entity.as_str(), "river:song-tien");
        assert_eq!(rec.layer, Layer::Rivers);
        // 4‰ lies between the 2nd (6‰) and 3rd (3‰) stations: halfway.
        let km: Vec<f64> = states
            .iter()
            .map(|s| s.station.km_from_mouth.unwrap())
            .collect();
        let expected = km[1] + (6.0 - 4.0) / (6.0 - 3.0) * (km[2] - km[1]);
        let r4 = rec.properties["reach_4"]["km"].as_f64().unwrap();
        assert!((r4 - expected).abs() < 1e-9, "{r4} vs {expected}");
        assert_eq!(rec.properties["reach_4"]["kind"], "at");
        assert_eq!(
            rec.properties["risk_level"],
            RiskBands::default().level(expected)
        );
        assert!(
            matches!(rec.geometry.value, geojson::Value::LineString(ref c) if c.len() == states.len())
        );
        assert_eq!(slug("Sông Tiền (cửa Tiểu)"), "song-tien-cua-tieu");

        // Fresh water at every station: the 4‰ line stops short of the first one. Whether
        // that is a risk depends on where that station is: past the first band, unknown.
        for (i, s) in states.iter_mut().enumerate() {
            let r = Reading {
                station: s.station.id.clone(),
                parameter: Parameter::Salinity,
                ts: t + chrono::Duration::minutes(5),
                value: 0.5,
                unit: Parameter::Salinity.canonical_unit(),
                quality: Quality::Good,
                sent_as: None,
            };
            s.apply(&r, 0, 100 + i as i64);
        }
        let refs: Vec<&StationState> = states.iter().collect();
        let fresh = &all_rivers(&refs, &RiskBands::default())["Sông Tiền"];
        assert_eq!(fresh.properties["reach_4"]["kind"], "short_of");
        if km[0] > 15.0 {
            assert_eq!(
                fresh.properties["risk_level"],
                Value::Null,
                "{:?}",
                fresh.properties["risk_vi"]
            );
        } else {
            assert_eq!(fresh.properties["risk_level"], 0);
        }
    }
}
