//! One station's live state and the rules for advancing it.

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset};
use model::reading::Latest;
use model::salinity::SalinityLevel;

use crate::air::{AirHours, AqiView};
use crate::forecaster::ForecastView;
use model::state::SourcePosition;
use model::{EntityId, Layer, LocalId, Parameter, Reading, StateRecord, Station, StationKind};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What clients see of a station (the `properties` of its feature).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StationProps {
    pub name: String,
    pub kind: StationKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub river: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub km_from_mouth: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agency: Option<LocalId>,
    /// Names of the containing units, deepest first ("Thành phố Vị Thanh", "Tỉnh Hậu Giang").
    #[serde(default)]
    pub unit_names: Vec<String>,
    pub interval_s: u32,
    #[serde(default)]
    pub latest: BTreeMap<Parameter, Latest>,
    /// Readings applied to this state, late ones included.
    #[serde(default)]
    pub readings: u64,
    /// Readings that arrived older than the latest value of their parameter.
    #[serde(default)]
    pub late: u64,
    /// Salinity stations: the level of the latest value, with hysteresis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salinity_level: Option<SalinityLevel>,
    /// Its Vietnamese name ("Cảnh báo"), for screens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salinity_level_vi: Option<String>,
    /// Air-quality stations: VN_AQI of the latest closed hour (absent with a reason when
    /// the inputs are insufficient).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aqi: Option<AqiView>,
    /// VN_AQI of the latest closed day (Vietnam time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aqi_daily: Option<AqiView>,
    /// When the core last received a reading of this station (its clock, not the sender's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<DateTime<FixedOffset>>,
    /// Salinity stations: the latest forecast, with its issue time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forecast: Option<ForecastView>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StationState {
    pub station: Station,
    pub units: Vec<LocalId>,
    pub props: StationProps,
    pub applied: SourcePosition,
    /// Hourly pollutant means (air-quality stations).
    pub air: AirHours,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// Already applied before (a replay after a restart): nothing changed.
    Duplicate,
    /// Counted, but older than the latest value of its parameter: latest unchanged.
    Late,
    /// The latest value moved forward.
    Advanced,
}

impl StationState {
    pub fn new(station: Station, units: Vec<LocalId>, unit_names: Vec<String>) -> Self {
        let props = StationProps {
            name: station.name.clone(),
            kind: station.kind,
            river: station.river.clone(),
            km_from_mouth: station.km_from_mouth,
            agency: station.agency.clone(),
            unit_names,
            interval_s: station.interval_s,
            latest: BTreeMap::new(),
            readings: 0,
            late: 0,
            salinity_level: None,
            salinity_level_vi: None,
            aqi: None,
            aqi_daily: None,
            last_seen: None,
            forecast: None,
        };
        Self {
            station,
            units,
            props,
            applied: SourcePosition::new(),
            air: AirHours::default(),
        }
    }

    /// Takes new registry data, keeping the live values.
    pub fn rebase(&mut self, station: Station, units: Vec<LocalId>, unit_names: Vec<String>) {
        let mut fresh = StationState::new(station, units, unit_names);
        fresh.props.latest = std::mem::take(&mut self.props.latest);
        fresh.props.readings = self.props.readings;
        fresh.props.late = self.props.late;
        fresh.props.salinity_level = self.props.salinity_level;
        fresh.props.salinity_level_vi = self.props.salinity_level_vi.take();
        fresh.props.aqi = self.props.aqi.take();
        fresh.props.aqi_daily = self.props.aqi_daily.take();
        fresh.props.last_seen = self.props.last_seen;
        fresh.props.forecast = self.props.forecast.take();
        fresh.air = std::mem::take(&mut self.air);
        fresh.applied = std::mem::take(&mut self.applied);
        *self = fresh;
    }

    /// Applies the reading found at `(partition, offset)` of the readings topic, as if it
    /// arrived at its own time.
    pub fn apply(&mut self, r: &Reading, partition: i32, offset: i64) -> ApplyOutcome {
        self.apply_received(r, r.ts, partition, offset)
    }

    /// Applies the reading found at `(partition, offset)` of the readings topic, received
    /// by ingest at `received`: it ranks against the latest value by the earlier of its
    /// time and its arrival (see [`Latest::rank`]).
    pub fn apply_received(
        &mut self,
        r: &Reading,
        received: DateTime<FixedOffset>,
        partition: i32,
        offset: i64,
    ) -> ApplyOutcome {
        if self
            .applied
            .get(&partition)
            .is_some_and(|&done| offset <= done)
        {
            return ApplyOutcome::Duplicate;
        }
        self.applied.insert(partition, offset);
        self.props.readings += 1;
        // Late readings count too: they belong to their hour's mean.
        if self.air.add(r) {
            if let Some((hourly, daily)) = self.air.views() {
                self.props.aqi = Some(hourly);
                self.props.aqi_daily = Some(daily);
            }
        }
        let latest = Latest::of(r, received);
        match self.props.latest.get(&r.parameter) {
            Some(cur)
                if latest.rank() < cur.rank() || (latest.rank() == cur.rank() && r.ts < cur.ts) =>
            {
                self.props.late += 1;
                ApplyOutcome::Late
            }
            _ => {
                self.props.latest.insert(r.parameter, latest);
                if r.parameter == Parameter::Salinity {
                    let levels = self.station.salinity_levels.unwrap_or_default();
                    let level = levels.next(self.props.salinity_level, r.value);
                    self.props.salinity_level = Some(level);
                    self.props.salinity_level_vi = Some(level.name_vi().to_string());
                }
                ApplyOutcome::Advanced
            }
        }
    }

    pub fn entity(&self) -> EntityId {
        EntityId::station(&self.station.id)
    }

    pub fn layer(&self) -> Layer {
        match self.station.kind {
            StationKind::Salinity => Layer::Salinity,
            StationKind::AirQuality => Layer::AirQuality,
        }
    }

    /// Event time of the newest value.
    pub fn updated(&self) -> Option<DateTime<FixedOffset>> {
        self.props.latest.values().map(|l| l.ts).max()
    }

    pub fn to_record(&self) -> StateRecord {
        let p = self.station.position;
        let properties = match serde_json::to_value(&self.props) {
            Ok(Value::Object(m)) => m,
            _ => serde_json::Map::new(),
        };
        StateRecord {
            entity: self.entity(),
            layer: self.layer(),
            geometry: geojson::Geometry::new(geojson::Value::Point(vec![p.lon, p.lat])),
            bbox: [p.lon, p.lat, p.lon, p.lat],
            units: self.units.clone(),
            updated: self.updated(),
            properties,
            applied: self.applied.clone(),
            core: if self.air.is_empty() {
                Value::Null
            } else {
                serde_json::json!({ "air": self.air })
            },
        }
    }

    /// Restores live values and applied positions from a published record.
    pub fn restore(&mut self, record: &StateRecord) {
        if let Ok(props) =
            serde_json::from_value::<StationProps>(Value::Object(record.properties.clone()))
        {
            self.props.latest = props.latest;
            self.props.readings = props.readings;
            self.props.late = props.late;
            self.props.salinity_level = props.salinity_level;
            self.props.salinity_level_vi = props.salinity_level_vi;
            self.props.aqi = props.aqi;
            self.props.aqi_daily = props.aqi_daily;
            self.props.last_seen = props.last_seen;
            self.props.forecast = props.forecast;
        }
        if let Some(Ok(air)) = record
            .core
            .get("air")
            .map(|a| serde_json::from_value(a.clone()))
        {
            let rules = self.air.completeness;
            self.air = air;
            self.air.completeness = rules;
        }
        self.applied = record.applied.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use model::reading::Quality;
    use model::Unit;

    fn station() -> Station {
        fixtures::stations::stations().into_iter().next().unwrap()
    }

    fn reading(minute: u32, value: f64) -> Reading {
        Reading {
            station: station().id,
            parameter: Parameter::Salinity,
            ts: FixedOffset::east_opt(7 * 3600)
                .unwrap()
                .with_ymd_and_hms(2026, 3, 2, 6, minute, 0)
                .unwrap(),
            value,
            unit: Unit::Permille,
            quality: Quality::Good,
            sent_as: None,
        }
    }

    #[test]
    fn the_salinity_level_follows_the_latest_value_with_hysteresis() {
        let mut s = StationState::new(station(), vec![], vec![]);
        let level = |s: &StationState| s.props.salinity_level;
        s.apply(&reading(0, 4.2), 0, 1);
        assert_eq!(level(&s), Some(SalinityLevel::Warning));
        s.apply(&reading(5, 3.9), 0, 2);
        assert_eq!(
            level(&s),
            Some(SalinityLevel::Warning),
            "within the hysteresis"
        );
        // A late reading (older) does not change the level.
        s.apply(&reading(1, 0.2), 0, 3);
        assert_eq!(level(&s), Some(SalinityLevel::Warning));
        s.apply(&reading(10, 3.5), 0, 4);
        assert_eq!(level(&s), Some(SalinityLevel::Watch));
        assert_eq!(s.props.salinity_level_vi.as_deref(), Some("Theo dõi"));
    }

    #[test]
    fn a_reading_stamped_ahead_of_its_arrival_does_not_hold_the_latest_value() {
        let mut s = StationState::new(station(), vec![], vec![]);
        let t0 = reading(0, 1.0).ts;
        // Forged: 35‰ stamped 290 s ahead, arriving at t0.
        let mut fake = reading(0, 35.0);
        fake.ts = t0 + chrono::Duration::seconds(290);
        assert_eq!(s.apply_received(&fake, t0, 0, 1), ApplyOutcome::Advanced);
        // The genuine readings that follow, on time, replace it at once.
        for (i, off) in (5..=20).step_by(5).enumerate() {
            let mut r = reading(0, 1.5);
            r.ts = t0 + chrono::Duration::seconds(off);
            let outcome = s.apply_received(&r, r.ts, 0, 2 + i as i64);
            assert_eq!(outcome, ApplyOutcome::Advanced, "genuine reading {i}");
        }
        assert_eq!(s.props.latest[&Parameter::Salinity].value, 1.5);
        // A reading that is merely late still is late.
        let mut old = reading(0, 9.0);
        old.ts = t0 + chrono::Duration::seconds(1);
        assert_eq!(
            s.apply_received(&old, t0 + chrono::Duration::seconds(30), 0, 9),
            ApplyOutcome::Late
        );
    }

    #[test]
    fn late_readings_never_move_latest_backwards() {
        let mut s = StationState::new(station(), vec![], vec![]);
        assert_eq!(s.apply(&reading(10, 2.0), 0, 1), ApplyOutcome::Advanced);
        assert_eq!(s.apply(&reading(5, 9.0), 0, 2), ApplyOutcome::Late);
        assert_eq!(s.props.latest[&Parameter::Salinity].value, 2.0);
        assert_eq!(s.apply(&reading(11, 3.0), 0, 3), ApplyOutcome::Advanced);
        assert_eq!(s.props.latest[&Parameter::Salinity].value, 3.0);
        assert_eq!((s.props.readings, s.props.late), (3, 1));
    }

    #[test]
    fn replayed_offsets_are_not_applied_twice() {
        let mut s = StationState::new(station(), vec![], vec![]);
        s.apply(&reading(10, 2.0), 3, 100);
        assert_eq!(s.apply(&reading(10, 2.0), 3, 100), ApplyOutcome::Duplicate);
        assert_eq!(s.apply(&reading(9, 2.0), 3, 99), ApplyOutcome::Duplicate);
        assert_eq!(
            s.apply(&reading(12, 2.0), 4, 7),
            ApplyOutcome::Advanced,
            "other partition"
        );
        assert_eq!(s.props.readings, 2);
    }

    #[test]
    fn a_record_restores_what_it_published() {
        let mut s = StationState::new(station(), vec![], vec!["X".into()]);
        s.apply(&reading(10, 2.5), 0, 41);
        let rec = s.to_record();
        let mut back = StationState::new(station(), vec![], vec!["X".into()]);
        back.restore(&rec);
        assert_eq!(back, s);
        assert_eq!(
            back.apply(&reading(10, 2.5), 0, 41),
            ApplyOutcome::Duplicate
        );
    }
}
