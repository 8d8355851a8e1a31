//! The stations book: every registered station's live state ([`StationState`], with its air
//! hours), placed in its units, fed by readings, rebuilt from the registry and restored from
//! `ioc.state` at start. Stations another instance owns are kept as copies of what that
//! instance published (`mirror`), so rivers spanning several owners are computed right.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use model::{EntityId, FieldError, LocalId, StateRecord};

use crate::air::Completeness;
use crate::input::{ReadingIn, Rejected};
use crate::station::{ApplyOutcome, StationState};
use model::Directory;

pub struct StationBook {
    stations: HashMap<LocalId, StationState>,
    /// Stations never heard from are stale counted from here.
    started: DateTime<Utc>,
    completeness: Completeness,
}

impl StationBook {
    pub fn new(started: DateTime<Utc>, completeness: Completeness) -> Self {
        Self {
            stations: HashMap::new(),
            started,
            completeness,
        }
    }

    pub fn len(&self) -> usize {
        self.stations.len()
    }

    pub fn started(&self) -> DateTime<Utc> {
        self.started
    }

    pub fn get(&self, id: &LocalId) -> Option<&StationState> {
        self.stations.get(id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &StationState> {
        self.stations.values()
    }

    fn fresh(&self, dir: &Directory, s: model::Station) -> StationState {
        let units = dir.locate(s.position.lon, s.position.lat);
        let names = dir.unit_names(&units);
        let mut state = StationState::new(s, units, names);
        state.air.completeness = self.completeness;
        state
    }

    /// Every registered station, with live values taken back from `restored`: the records
    /// that differ from it.
    pub fn start(
        &mut self,
        dir: &Directory,
        restored: &HashMap<EntityId, StateRecord>,
    ) -> Vec<StateRecord> {
        let mut changed = Vec::new();
        for s in dir.stations.values() {
            let mut state = self.fresh(dir, s.clone());
            let prior = restored.get(&state.entity());
            if let Some(r) = prior {
                state.restore(r);
            }
            let rec = state.to_record();
            if prior != Some(&rec) {
                changed.push(rec);
            }
            self.stations.insert(state.station.id.clone(), state);
        }
        changed
    }

    /// Per partition of the readings topic that `owns` accepts, the first offset not covered
    /// by every station's state: a restart reads no later than that, whatever was committed.
    pub fn covered_up_to(
        &self,
        owns: impl Fn(i32) -> bool,
    ) -> std::collections::BTreeMap<i32, i64> {
        let mut out = std::collections::BTreeMap::new();
        for s in self.stations.values() {
            for (&p, &o) in &s.applied {
                if owns(p) {
                    let next = out.entry(p).or_insert(o + 1);
                    *next = (*next).min(o + 1);
                }
            }
        }
        out
    }

    /// Re-creates a station's state from the directory; `Some(record)` when it changed.
    pub fn replace(&mut self, dir: &Directory, id: &LocalId) -> Option<StateRecord> {
        let s = dir.stations.get(id)?.clone();
        match self.stations.get_mut(id) {
            Some(state) => {
                let units = dir.locate(s.position.lon, s.position.lat);
                let names = dir.unit_names(&units);
                let before = state.to_record();
                state.rebase(s, units, names);
                let after = state.to_record();
                (after != before).then_some(after)
            }
            None => {
                let state = self.fresh(dir, s);
                let rec = state.to_record();
                self.stations.insert(id.clone(), state);
                Some(rec)
            }
        }
    }

    /// Every station placed again (the units moved): the records that changed.
    pub fn replace_all(&mut self, dir: &Directory) -> Vec<StateRecord> {
        let ids: Vec<LocalId> = self.stations.keys().cloned().collect();
        ids.iter().filter_map(|id| self.replace(dir, id)).collect()
    }

    pub fn remove(&mut self, id: &LocalId) {
        self.stations.remove(id);
    }

    /// One reading: `Ok(true)` when the station's state moved (not a duplicate),
    /// `Err` for a station the registry does not know.
    pub fn apply(&mut self, r: &ReadingIn, now: DateTime<Utc>) -> Result<bool, Rejected> {
        let Some(state) = self.stations.get_mut(&r.reading.station) else {
            return Err(Rejected {
                source: r.source(),
                partition: r.partition,
                entity: Some(EntityId::station(&r.reading.station)),
                errors: vec![FieldError::new(
                    "station",
                    format!("{} is not in the registry", r.reading.station),
                )],
                original: serde_json::to_value(&r.reading).unwrap_or_default(),
            });
        };
        let outcome = state.apply_received(&r.reading, r.received, r.partition, r.offset);
        if outcome != ApplyOutcome::Duplicate {
            state.props.last_seen = Some(now.fixed_offset());
        }
        let label = match outcome {
            ApplyOutcome::Duplicate => "duplicate",
            ApplyOutcome::Late => "late",
            ApplyOutcome::Advanced => "applied",
        };
        metrics::counter!("ioc_core_readings_total", "outcome" => label).increment(1);
        Ok(outcome != ApplyOutcome::Duplicate)
    }

    /// Takes another instance's record of one of its stations; true when the station lies
    /// on a river (whose record may have changed).
    pub fn mirror(&mut self, record: &StateRecord) -> bool {
        let Ok(id) = LocalId::parse("station", record.entity.local()) else {
            return false;
        };
        let Some(state) = self.stations.get_mut(&id) else {
            return false;
        };
        state.restore(record);
        state.station.river.is_some()
    }

    /// A new forecast shown on its station: its record.
    pub fn forecast(
        &mut self,
        id: &LocalId,
        f: crate::forecaster::ForecastView,
    ) -> Option<StateRecord> {
        let state = self.stations.get_mut(id)?;
        state.props.forecast = Some(f);
        Some(state.to_record())
    }
}
