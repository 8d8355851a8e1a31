//! The core's state as one pure machine: [`Books::apply`] takes one [`Input`] and the time,
//! and returns the [`Effect`]s to publish. No bus, no clock of its own: the run loop
//! (`core.rs`) feeds it and hands the effects to the publisher, so every rule is unit-tested
//! here without a broker.
//!
//! Each kind of entity keeps its own book: stations (`stations`, with each station's air
//! hours in `air`), rivers (`rivers`), reports (`reports`), cameras (`cameras`), alerts
//! (`alerts`), and the places the registry draws (`places`). This module routes inputs to
//! them and turns what they changed into records, and what the rules saw into alerts.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use model::alert::Alert;
use model::envelope::Envelope;
use model::{EntityId, EventKind, Layer, LocalId, StateRecord, StationKind};

use crate::alerts::{AlertBook, RulesConfig, Transition};
use crate::cameras::CameraBook;
use crate::effect::Effect;
use crate::forecaster::{ForecastView, Target};
use crate::indicators::{IndicatorBook, Touched};
use crate::input::TallyIn;
use crate::input::{AlertActionIn, Input, Located, ReadingIn, Rejected};
use crate::places::{layout_record, unit_record, zone_record};
use crate::reports::{Changed, ReportBook, ReportsConfig};
use crate::rivers::RiverBook;
use crate::rules;
use crate::stations::StationBook;
use crate::tallies::{Days, TallyBook};
use model::indicator::period::vietnam_date;
use model::indicator::tally::Parts;
use model::Directory;
use model::{EntityKind, RegistryChange};

pub struct Books {
    dir: Directory,
    stations: StationBook,
    rivers: RiverBook,
    reports: ReportBook,
    cameras: CameraBook,
    indicators: IndicatorBook,
    /// The Vietnam date the indicator records were last built for (periods open and close,
    /// deadlines pass, with the date).
    indicators_day: Option<chrono::NaiveDate>,
    /// Daily tallies of cameras, stations, rivers and alerts.
    tallies: TallyBook,
    /// The minute the open periods' tallied figures were last figured (camera time runs on).
    tallies_minute: i64,
    alerts: AlertBook,
}

impl Books {
    /// Empty books; `started` is when stations never heard from begin to count as stale.
    pub fn new(rules: RulesConfig, reports: ReportsConfig, started: DateTime<Utc>) -> Self {
        Self {
            dir: Directory::default(),
            stations: StationBook::new(started, rules.aqi_completeness),
            rivers: RiverBook::default(),
            reports: ReportBook::new(reports),
            cameras: CameraBook::new(chrono::Duration::seconds(
                rules.camera_silent_after_s.max(0),
            )),
            indicators: IndicatorBook::default(),
            indicators_day: None,
            tallies: TallyBook::default(),
            tallies_minute: 0,
            alerts: AlertBook::new(rules),
        }
    }

    fn rules(&self) -> &RulesConfig {
        self.alerts.config()
    }

    pub fn station_count(&self) -> usize {
        self.stations.len()
    }

    pub fn unit_count(&self) -> usize {
        self.dir.units.len()
    }

    pub fn report_count(&self) -> usize {
        self.reports.len()
    }

    #[cfg(test)]
    pub(crate) fn reports_book(&self) -> &ReportBook {
        &self.reports
    }

    pub fn tally_count(&self) -> usize {
        self.tallies.len()
    }

    pub fn indicator_value_count(&self) -> usize {
        self.indicators.len()
    }

    /// Start-up, before anything is published: the registry and the record of reports are
    /// folded in, and only what could not be read is returned (as dead letters).
    pub fn load(&mut self, input: Input, now: DateTime<Utc>) -> Vec<Effect> {
        let mut out = Vec::new();
        match input {
            Input::Registry(Ok(change)) => self.dir_change(change),
            Input::Registry(Err(r)) => out.push(dead_letter(r, now)),
            Input::Reports(batch) => {
                let mut changed = Changed::default();
                for e in batch {
                    if let Some(d) = self.report_event(e, now, &mut changed) {
                        out.push(d);
                    }
                }
            }
            Input::Indicators(batch) => {
                let mut touched = Touched::new();
                for e in batch {
                    out.extend(self.indicator_event(e, now, &mut touched));
                }
            }
            Input::Tallies(batch) => {
                self.take_tallies(batch);
            }
            other => out = self.apply(other, now),
        }
        out
    }

    /// Once the registry and reports are loaded: builds every entity's state, taking live
    /// values back from `restored` (the state topic as it was), and returns the records that
    /// differ from it.
    pub fn start(
        &mut self,
        restored: &HashMap<EntityId, StateRecord>,
        now: DateTime<Utc>,
    ) -> Vec<Effect> {
        self.refresh_index();
        let now_local = now.fixed_offset();
        let mut out = Vec::new();
        let mut changed = Vec::new();
        // Reports closed long ago leave the book before anything is published.
        self.reports.tick(now_local);
        for id in self.reports.ids() {
            if let Some(rec) = self.reports.record(id) {
                if restored.get(&rec.entity) != Some(&rec) {
                    changed.push(rec);
                }
            }
        }
        for r in restored.values().filter(|r| r.layer == Layer::Reports) {
            let known = LocalId::parse("report", r.entity.local())
                .is_ok_and(|id| self.reports.get(&id).is_some());
            if !known {
                out.push(Effect::tombstone(r.entity.clone()));
            }
        }
        for unit in self.dir.units.values() {
            let rec = unit_record(unit, &self.dir, self.reports.counts(&unit.id));
            if restored.get(&rec.entity) != Some(&rec) {
                changed.push(rec);
            }
        }
        let places = self.dir.zones.values().map(zone_record);
        for rec in places.chain(self.dir.layouts.values().map(layout_record)) {
            if restored.get(&rec.entity) != Some(&rec) {
                changed.push(rec);
            }
        }
        for r in restored.values().filter(|r| r.layer == Layer::Cameras) {
            self.cameras.restore(r);
        }
        // Each camera's time counted on from its latest tally (at the state its restored
        // status gives) into today, before its record, which shows its time today.
        let mut days = self.tallies.all_days();
        let cameras: Vec<LocalId> = self.dir.cameras.keys().cloned().collect();
        for id in &cameras {
            days.extend(self.tally_camera(id, now, &mut out));
        }
        for (entity, units, online) in self.tallies.cameras() {
            days.extend(self.tallies.camera(&entity, &units, now, online, &mut out));
        }
        for id in cameras {
            if let Some(rec) = self.camera_record(&id, now) {
                if restored.get(&rec.entity) != Some(&rec) {
                    changed.push(rec);
                }
            }
        }
        for r in restored.values().filter(|r| r.layer == Layer::Alerts) {
            if let Some(a) = Alert::from_record(r) {
                self.alerts.restore(a);
            }
        }
        changed.extend(self.stations.start(&self.dir, restored));
        out.extend(changed.into_iter().map(Effect::upsert));
        // Indicators: the derived ones from the whole record of reports, then every series
        // there is, and those the state holds that are gone.
        let report_days: BTreeSet<(LocalId, chrono::NaiveDate)> =
            self.reports.flow_days().cloned().collect();
        let units: BTreeSet<LocalId> = self.dir.units.keys().cloned().collect();
        self.derive_from_reports(&report_days, &units, now);
        // Each station's latest index and level into its tallies, those past keeping
        // dropped; then the figures of every day the tallies hold.
        let today = model::indicator::period::vietnam_date(now);
        let stations: Vec<LocalId> = self.stations.iter().map(|s| s.station.id.clone()).collect();
        for id in &stations {
            days.extend(self.tally_station(id, &mut out));
        }
        out.extend(self.tallies.expire(today));
        days.extend(self.every_unit_on(today));
        self.derive_from_tallies(&days, now);
        let series = self.indicators.all_series(&self.dir);
        for r in restored.values().filter(|r| r.layer == Layer::Indicators) {
            let known = r.entity.series_parts().is_some_and(|k| series.contains(&k));
            if !known {
                out.push(Effect::tombstone(r.entity.clone()));
            }
        }
        self.indicators_day = Some(model::indicator::period::vietnam_date(now));
        out.extend(self.indicator_changes(series, Some(restored), now));
        // Rivers as the restored stations give them (republished only where they differ).
        self.rivers.restore(restored);
        out.extend(self.refresh_rivers(now));
        out
    }

    /// The river records the stations now give, where they differ from the last published,
    /// with the day's farthest 4‰ reach of each into its tallies.
    fn refresh_rivers(&mut self, now: DateTime<Utc>) -> Vec<Effect> {
        let bands = &self.alerts.config().salinity_risk_bands;
        let mut out = self.rivers.refresh(&self.stations, bands);
        let reached: Vec<(EntityId, Vec<LocalId>, DateTime<Utc>, f64)> = out
            .iter()
            .filter_map(Effect::record)
            .filter_map(|r| {
                Some((
                    r.entity.clone(),
                    r.units.clone(),
                    r.updated?.to_utc(),
                    crate::rivers::reach_4_km(r)?,
                ))
            })
            .collect();
        let mut days = Days::new();
        for (river, units, at, km) in reached {
            let parts = Parts::River { reach_4_km: km };
            days.extend(
                self.tallies
                    .add(&river, &units, vietnam_date(at), parts, &mut out),
            );
        }
        out.extend(self.figure_tallies(&days, now));
        out
    }

    /// The series records the tallies of `days` change.
    fn figure_tallies(&mut self, days: &Days, now: DateTime<Utc>) -> Vec<Effect> {
        let touched = self.derive_from_tallies(days, now);
        self.indicator_changes(touched, None, now)
    }

    /// See [`StationBook::covered_up_to`].
    pub fn readings_covered_up_to(
        &self,
        owns: impl Fn(i32) -> bool,
    ) -> std::collections::BTreeMap<i32, i64> {
        self.stations.covered_up_to(owns)
    }

    /// The salinity stations to forecast, with their levels, in id order.
    pub fn forecast_targets(&self) -> Vec<Target> {
        let mut t: Vec<Target> = self
            .stations
            .iter()
            .filter(|s| s.station.kind == StationKind::Salinity)
            .map(|s| {
                let levels = s.station.salinity_levels.unwrap_or_default();
                Target {
                    station: s.station.id.clone(),
                    watch: levels.watch,
                    warning: levels.warning,
                }
            })
            .collect();
        t.sort_by(|a, b| a.station.cmp(&b.station));
        t
    }

    /// One input at `now`: what to publish.
    pub fn apply(&mut self, input: Input, now: DateTime<Utc>) -> Vec<Effect> {
        match input {
            Input::Registry(Ok(change)) => self.registry(change, now),
            Input::Registry(Err(r)) => vec![dead_letter(r, now)],
            Input::Readings(batch) => self.readings(batch, now),
            Input::Reports(batch) => {
                let mut out = Vec::new();
                let mut changed = Changed::default();
                for e in batch {
                    out.extend(self.report_event(e, now, &mut changed));
                }
                out.extend(self.report_changes(changed, now));
                out
            }
            Input::Indicators(batch) => {
                let mut out = Vec::new();
                let mut touched = Touched::new();
                for e in batch {
                    out.extend(self.indicator_event(e, now, &mut touched));
                }
                out.extend(self.indicator_changes(touched, None, now));
                out
            }
            Input::CameraStatus(Ok(l)) => self.camera_status(l, now),
            Input::CameraStatus(Err(r)) => vec![dead_letter(r, now)],
            Input::AlertAction(a) => self.alert_action(a, now),
            Input::Peer(record) => self.peer(&record, now),
            Input::Forecast(station, f) => self.forecast(&station, f, now),
            Input::Tallies(batch) => {
                let days = self.take_tallies(batch);
                self.figure_tallies(&days, now)
            }
            Input::Tick => self.tick(now),
        }
    }

    fn dir_change(&mut self, change: RegistryChange) {
        self.dir.apply(change);
    }

    /// Rebuilds the unit index after units changed, saying which units it had to leave out.
    fn refresh_index(&mut self) {
        if self.dir.refresh_index() {
            for (unit, reason) in self.dir.refused_units() {
                tracing::warn!(%unit, %reason, "unit geometry refused; unit not indexed");
            }
        }
    }

    /// A registry change, and the live state it moves.
    fn registry(&mut self, change: RegistryChange, now: DateTime<Utc>) -> Vec<Effect> {
        let entity = change.entity();
        self.dir_change(change);
        let Ok(local) = LocalId::parse("entity", entity.local()) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        match entity.kind() {
            EntityKind::Unit => {
                self.refresh_index();
                match self.dir.units.get(&local) {
                    Some(u) => out.push(Effect::upsert(unit_record(
                        u,
                        &self.dir,
                        self.reports.counts(&u.id),
                    ))),
                    None => out.push(Effect::tombstone(entity.clone())),
                }
                // Units moved: every station is placed again.
                out.extend(
                    self.stations
                        .replace_all(&self.dir)
                        .into_iter()
                        .map(Effect::upsert),
                );
            }
            EntityKind::Zone => out.push(match self.dir.zones.get(&local) {
                Some(z) => Effect::upsert(zone_record(z)),
                None => Effect::tombstone(entity.clone()),
            }),
            EntityKind::Layout => out.push(match self.dir.layouts.get(&local) {
                Some(l) => Effect::upsert(layout_record(l)),
                None => Effect::tombstone(entity.clone()),
            }),
            EntityKind::Camera => match self.camera_record(&local, now) {
                Some(rec) => out.push(Effect::upsert(rec)),
                None => {
                    self.cameras.forget(&local);
                    out.push(Effect::tombstone(entity.clone()));
                }
            },
            EntityKind::Station => match self.dir.stations.get(&local) {
                Some(_) => out.extend(self.stations.replace(&self.dir, &local).map(Effect::upsert)),
                None => {
                    self.stations.remove(&local);
                    out.push(Effect::tombstone(entity.clone()));
                }
            },
            // A catalogue entry changed: its series (and those reading it) are built again;
            // a removed one's are tombstoned.
            EntityKind::Indicator => {
                let touched: Touched = self
                    .indicators
                    .all_series(&self.dir)
                    .into_iter()
                    .filter(|(c, _)| {
                        *c == local
                            || self
                                .dir
                                .indicators
                                .get(c)
                                .is_some_and(|i| i.rollup.inputs().contains(&&local))
                    })
                    .collect();
                if !self.dir.indicators.contains_key(&local) {
                    out.extend(
                        self.indicators
                            .series_of(&local)
                            .into_iter()
                            .map(|u| Effect::tombstone(EntityId::series(&local, &u))),
                    );
                }
                out.extend(self.indicator_changes(touched, None, now));
            }
            _ => {}
        }
        out
    }

    /// One event of `ioc.indicators` into the book; the series it moves go into `touched`.
    fn indicator_event(
        &mut self,
        event: Result<Located, Rejected>,
        now: DateTime<Utc>,
        touched: &mut Touched,
    ) -> Option<Effect> {
        let located = match event {
            Ok(l) => l,
            Err(r) => return Some(dead_letter(r, now)),
        };
        let decoded = located
            .event
            .data_as::<model::indicator::IndicatorEvent>()
            .map_err(|e| vec![e]);
        match decoded.and_then(|e| self.indicators.apply(&self.dir, e)) {
            Ok(t) => {
                touched.extend(t);
                None
            }
            Err(errors) => Some(dead_letter(located.rejected(errors), now)),
        }
    }

    /// The records of the touched series (those that differ from `restored`, at start-up),
    /// and the indicator rules on them.
    fn indicator_changes(
        &mut self,
        touched: Touched,
        restored: Option<&HashMap<EntityId, StateRecord>>,
        now: DateTime<Utc>,
    ) -> Vec<Effect> {
        let mut out = Vec::new();
        let mut transitions = Vec::new();
        let at = now.fixed_offset();
        for (code, unit) in touched {
            let Some(rec) = self.indicators.record(&self.dir, &code, &unit, now) else {
                out.push(Effect::tombstone(EntityId::series(&code, &unit)));
                continue;
            };
            if self.rules().enabled {
                for o in crate::indicators::observations(&rec) {
                    transitions.extend(self.alerts.observe(o, at));
                }
            }
            if restored.and_then(|r| r.get(&rec.entity)) != Some(&rec) {
                out.push(Effect::upsert(rec));
            }
        }
        out.extend(self.alert_effects(transitions, true, now));
        out
    }

    fn readings(
        &mut self,
        batch: Vec<Result<ReadingIn, Rejected>>,
        now: DateTime<Utc>,
    ) -> Vec<Effect> {
        let mut out = Vec::new();
        let mut dirty = BTreeSet::new();
        for r in batch {
            match r {
                Ok(r) => match self.stations.apply(&r, now) {
                    Ok(true) => {
                        dirty.insert(r.reading.station);
                    }
                    Ok(false) => {}
                    Err(rejected) => out.push(dead_letter(rejected, now)),
                },
                Err(rejected) => out.push(dead_letter(rejected, now)),
            }
        }
        out.extend(
            dirty
                .iter()
                .filter_map(|id| self.stations.get(id))
                .map(|s| Effect::upsert(s.to_record())),
        );
        let river_changed = dirty.iter().any(|id| {
            self.stations
                .get(id)
                .is_some_and(|s| s.station.river.is_some())
        });
        if river_changed {
            out.extend(self.refresh_rivers(now));
        }
        let mut days = Days::new();
        for id in &dirty {
            days.extend(self.tally_station(id, &mut out));
        }
        out.extend(self.figure_tallies(&days, now));
        if self.rules().enabled {
            let mut transitions = Vec::new();
            for id in &dirty {
                let Some(state) = self.stations.get(id) else {
                    continue;
                };
                let at = state.updated().unwrap_or_else(|| now.fixed_offset());
                let p = state.station.position;
                let zones = self.dir.zones_at(p.lon, p.lat);
                for mut o in rules::on_reading(state, self.alerts.config()) {
                    o.zones = zones.clone();
                    transitions.extend(self.alerts.observe(o, at));
                }
            }
            out.extend(self.alert_effects(transitions, true, now));
        }
        out
    }

    /// Another instance's station: kept as a copy, so the rivers it lies on stay right.
    fn peer(&mut self, record: &StateRecord, now: DateTime<Utc>) -> Vec<Effect> {
        if !self.stations.mirror(record) {
            return Vec::new();
        }
        self.refresh_rivers(now)
    }

    /// One event of `ioc.reports` into the book; what it changes goes into `changed`.
    fn report_event(
        &mut self,
        event: Result<Located, Rejected>,
        now: DateTime<Utc>,
        changed: &mut Changed,
    ) -> Option<Effect> {
        let located = match event {
            Ok(l) => l,
            Err(r) => return Some(dead_letter(r, now)),
        };
        match self
            .reports
            .apply(&located.event, now.fixed_offset(), changed)
        {
            Ok(()) => None,
            Err(e) => Some(dead_letter(located.rejected(vec![e]), now)),
        }
    }

    /// The derived indicators of the (unit, day)s whose report flows moved, and of the units
    /// whose open overdue count moved: the series they change.
    fn derive_from_reports(
        &mut self,
        days: &BTreeSet<(LocalId, chrono::NaiveDate)>,
        units: &BTreeSet<LocalId>,
        now: DateTime<Utc>,
    ) -> Touched {
        use model::indicator::{Derivation, Period, Tier};
        let mut touched = Touched::new();
        let derived: Vec<model::indicator::Indicator> = self
            .dir
            .indicators
            .values()
            .filter(|i| i.derive.as_ref().is_some_and(|d| !d.is_tallied()))
            .cloned()
            .collect();
        let today = model::indicator::period::vietnam_date(now);
        for ind in &derived {
            let dir = &self.dir;
            let reports_here = |u: &LocalId| {
                dir.units
                    .get(u)
                    .is_some_and(|x| ind.levels.contains(&Tier::of_level(&x.level)))
            };
            let mut figures: Vec<(LocalId, Period, f64)> = Vec::new();
            match &ind.derive {
                Some(Derivation::ReportsOverdue) => {
                    let current = Period::containing(today, ind.frequency, ind.basis);
                    for u in units.iter().filter(|u| reports_here(u)) {
                        let n = self.reports.counts(u).overdue.max(0);
                        figures.push((u.clone(), current, n as f64));
                    }
                }
                Some(d) => {
                    let mut periods: BTreeSet<(LocalId, Period)> = days
                        .iter()
                        .filter(|(u, _)| reports_here(u))
                        .map(|(u, day)| {
                            (
                                u.clone(),
                                Period::containing(*day, ind.frequency, ind.basis),
                            )
                        })
                        .collect();
                    // The open period of every unit asked for: zero until a report counts.
                    let current = Period::containing(today, ind.frequency, ind.basis);
                    periods.extend(
                        units
                            .iter()
                            .filter(|u| reports_here(u))
                            .map(|u| (u.clone(), current)),
                    );
                    for (u, p) in periods {
                        let (first, last) = p.dates(ind.basis);
                        let f = self.reports.flows(&u, first, last);
                        let n = match d {
                            Derivation::ReportsReceived => f.received,
                            Derivation::ReportsResolved => f.resolved,
                            Derivation::ReportsResolvedOnTime => f.resolved_on_time,
                            _ => continue,
                        };
                        figures.push((u, p, n as f64));
                    }
                }
                None => {}
            }
            for (u, p, v) in figures {
                touched.extend(self.indicators.set_derived(&self.dir, &ind.code, &u, p, v));
            }
        }
        touched
    }

    /// Tallies read from `ioc.tallies`: the (unit, day)s they move.
    fn take_tallies(&mut self, batch: Vec<TallyIn>) -> Days {
        let mut days = Days::new();
        for t in batch {
            days.extend(match t.tally {
                Some(tally) => self.tallies.put(tally),
                None => self.tallies.remove(&t.key),
            });
        }
        days
    }

    /// The tallied derived indicators (cameras, air, salinity, alerts) of the periods holding
    /// `days`, figured per unit at the tiers each indicator is reported at, from the unit's
    /// own tallies (never rolled up: a province's availability is its cameras' time, not a
    /// mean of districts): the series they change.
    fn derive_from_tallies(&mut self, days: &Days, now: DateTime<Utc>) -> Touched {
        use model::indicator::{tally, Period, Tier};
        let mut touched = Touched::new();
        if days.is_empty() {
            return touched;
        }
        let tallied: Vec<model::indicator::Indicator> = self
            .dir
            .indicators
            .values()
            .filter(|i| i.derive.as_ref().is_some_and(|d| d.is_tallied()))
            .cloned()
            .collect();
        for ind in &tallied {
            let Some(d) = &ind.derive else { continue };
            let periods: BTreeSet<(LocalId, Period)> = days
                .iter()
                .filter(|(u, _)| {
                    self.dir
                        .units
                        .get(u)
                        .is_some_and(|x| ind.levels.contains(&Tier::of_level(&x.level)))
                })
                .map(|(u, day)| {
                    (
                        u.clone(),
                        Period::containing(*day, ind.frequency, ind.basis),
                    )
                })
                .collect();
            for (u, p) in periods {
                let (first, last) = p.dates(ind.basis);
                if let Some(v) = tally::figure(d, self.tallies.of_unit(&u, first, last), now) {
                    touched.extend(self.indicators.set_derived(&self.dir, &ind.code, &u, p, v));
                }
            }
        }
        touched
    }

    /// Every unit on `day`, for the figures of the periods open then (alerts count zero
    /// where none were raised; camera time runs on).
    fn every_unit_on(&self, day: chrono::NaiveDate) -> Days {
        self.dir.units.keys().map(|u| (u.clone(), day)).collect()
    }

    /// A camera's state as its status (or silence) gives it, into its tallies.
    fn tally_camera(&mut self, id: &LocalId, now: DateTime<Utc>, out: &mut Vec<Effect>) -> Days {
        let (Some(c), Some((since, online))) = (
            self.dir.cameras.get(id),
            self.cameras.uptime_state(id, now.fixed_offset()),
        ) else {
            return Days::new();
        };
        let entity = EntityId::new(EntityKind::Camera, id);
        // A camera's time counts from its first picture or failure, not from the worker's
        // first connection attempt (every camera is "connecting" when a worker starts).
        if !self.tallies.has_camera(&entity) && self.cameras.is_connecting(id) {
            return Days::new();
        }
        let units = self.dir.locate(c.position.lon, c.position.lat);
        self.tallies
            .camera(&entity, &units, since.to_utc(), online, out)
    }

    /// A station's latest hourly and daily VN_AQI, or its salinity level, into its tallies.
    fn tally_station(&mut self, id: &LocalId, out: &mut Vec<Effect>) -> Days {
        let Some(s) = self.stations.get(id) else {
            return Days::new();
        };
        let (entity, units) = (s.entity(), s.units.clone());
        let hourly = s
            .props
            .aqi
            .as_ref()
            .and_then(|v| Some((v.period.to_utc(), v.value?)));
        let daily = s
            .props
            .aqi_daily
            .as_ref()
            .and_then(|v| Some((v.period.date_naive(), v.value?)));
        let salinity = s
            .props
            .salinity_level
            .zip(s.updated())
            .map(|(l, at)| (l, at.to_utc()));
        let mut days = Days::new();
        if hourly.is_some() || daily.is_some() {
            days.extend(self.tallies.air(&entity, &units, hourly, daily, out));
        }
        if let Some((level, at)) = salinity {
            let parts = Parts::Salinity { worst: level };
            days.extend(
                self.tallies
                    .add(&entity, &units, vietnam_date(at), parts, out),
            );
        }
        days
    }

    /// Report records (tombstones for those that left), unit counts, the overdue rule.
    fn report_changes(&mut self, changed: Changed, now: DateTime<Utc>) -> Vec<Effect> {
        if changed.is_empty() {
            return Vec::new();
        }
        let derived = self.derive_from_reports(&changed.days, &changed.units, now);
        let mut out: Vec<Effect> = changed
            .reports
            .iter()
            .filter_map(|id| self.reports.record(id))
            .map(Effect::upsert)
            .collect();
        out.extend(
            changed
                .units
                .iter()
                .filter_map(|u| self.dir.units.get(u))
                .map(|u| Effect::upsert(unit_record(u, &self.dir, self.reports.counts(&u.id)))),
        );
        out.extend(
            changed
                .removed
                .iter()
                .map(|id| Effect::tombstone(EntityId::new(model::EntityKind::Report, id))),
        );
        if !self.rules().enabled {
            out.extend(self.indicator_changes(derived, None, now));
            return out;
        }
        let now = now.fixed_offset();
        let mut transitions = Vec::new();
        for id in changed.reports.iter().chain(&changed.removed) {
            // Gone from the book: its alert, if any, clears.
            let o = self
                .reports
                .observation(id)
                .unwrap_or_else(|| crate::reports::no_longer_overdue(id));
            transitions.extend(self.alerts.observe(o, now));
        }
        out.extend(self.alert_effects(transitions, true, now.to_utc()));
        out.extend(self.indicator_changes(derived, None, now.to_utc()));
        out
    }

    fn camera_status(&mut self, located: Located, now: DateTime<Utc>) -> Vec<Effect> {
        match self.cameras.apply(&located.event) {
            Ok(Some(id)) => {
                // The tally first: the record shows the camera's time today with it.
                let mut out = Vec::new();
                let days = self.tally_camera(&id, now, &mut out);
                out.extend(self.camera_record(&id, now).map(Effect::upsert));
                out.extend(self.figure_tallies(&days, now));
                out
            }
            Ok(None) => Vec::new(),
            Err(e) => vec![dead_letter(located.rejected(vec![e]), now)],
        }
    }

    /// A registry camera's record with its latest status; `None` for one not registered.
    fn camera_record(&self, id: &LocalId, now: DateTime<Utc>) -> Option<StateRecord> {
        let c = self.dir.cameras.get(id)?;
        let units = self.dir.locate(c.position.lon, c.position.lat);
        let names = self.dir.unit_names(&units);
        let mut rec = self.cameras.record(c, units, names, now.fixed_offset());
        // Its time today as its tally holds it (a page adds the time since `upto` at `online`).
        let entity = EntityId::new(EntityKind::Camera, id);
        if let Some(t) = self.tallies.camera_latest(&entity) {
            if let model::indicator::tally::Parts::Camera(c) = &t.parts {
                rec.properties.insert(
                    "today".into(),
                    serde_json::json!({"day": t.day, "online_s": c.online_s,
                        "observed_s": c.observed_s, "upto": c.upto, "online": c.online}),
                );
            }
        }
        Some(rec)
    }

    /// An acknowledgement or clear from the API (the core's own events change nothing).
    fn alert_action(&mut self, a: AlertActionIn, now: DateTime<Utc>) -> Vec<Effect> {
        let t = match a.kind {
            EventKind::AlertAcked => self.alerts.ack(&a.action),
            EventKind::AlertCleared if a.action.by != rules::AUTO => self.alerts.clear(&a.action),
            _ => None,
        };
        // The event is on the topic already: only the state changes.
        self.alert_effects(t.into_iter().collect(), false, now)
    }

    /// Shows a new forecast on its station and checks the forecast rule.
    fn forecast(&mut self, station: &LocalId, f: ForecastView, now: DateTime<Utc>) -> Vec<Effect> {
        let Some(rec) = self.stations.forecast(station, f) else {
            return Vec::new();
        };
        let mut out = vec![Effect::upsert(rec)];
        let Some(state) = self.stations.get(station).filter(|_| self.rules().enabled) else {
            return out;
        };
        let p = state.station.position;
        let zones = self.dir.zones_at(p.lon, p.lat);
        let mut transitions = Vec::new();
        for mut o in rules::on_reading(state, self.alerts.config())
            .into_iter()
            .filter(|o| o.rule == "salinity_forecast")
        {
            o.zones = zones.clone();
            transitions.extend(self.alerts.observe(o, now.fixed_offset()));
        }
        out.extend(self.alert_effects(transitions, true, now));
        out
    }

    /// The clock: stale stations, cameras down or silent, escalation, report deadlines.
    fn tick(&mut self, now: DateTime<Utc>) -> Vec<Effect> {
        if !self.rules().enabled {
            return Vec::new();
        }
        let now_local = now.fixed_offset();
        let mut out = Vec::new();
        let mut transitions = Vec::new();
        for state in self.stations.iter() {
            let mut o = rules::stale(state, self.alerts.config(), now, self.stations.started());
            let p = state.station.position;
            o.zones = self.dir.zones_at(p.lon, p.lat);
            transitions.extend(self.alerts.observe(o, now_local));
        }
        let after = chrono::Duration::seconds(self.rules().camera_down_after_s.max(0));
        for c in self.dir.cameras.values() {
            if let Some(o) = self.cameras.observation(c, after, now_local) {
                transitions.extend(self.alerts.observe(o, now_local));
            }
        }
        // Cameras whose worker went quiet, or spoke again: their records change.
        let mut days = Days::new();
        for id in self.cameras.silence_changes(now_local) {
            days.extend(self.tally_camera(&id, now, &mut out));
            out.extend(self.camera_record(&id, now).map(Effect::upsert));
        }
        transitions.extend(self.alerts.tick(now_local));
        out.extend(self.alert_effects(transitions, true, now));
        let changed = self.reports.tick(now_local);
        out.extend(self.report_changes(changed, now));
        // A new day in Vietnam: periods open and close and deadlines pass.
        let today = model::indicator::period::vietnam_date(now);
        if self.indicators_day != Some(today) {
            self.indicators_day = Some(today);
            // Each camera's time opens a tally for the new day; tallies past keeping go.
            for (entity, units, online) in self.tallies.cameras() {
                days.extend(self.tallies.camera(&entity, &units, now, online, &mut out));
            }
            // Each camera's record shows its new day.
            let cameras: Vec<LocalId> = self.dir.cameras.keys().cloned().collect();
            for id in &cameras {
                out.extend(self.camera_record(id, now).map(Effect::upsert));
            }
            out.extend(self.tallies.expire(today));
            days.extend(self.every_unit_on(today));
            // The open period's overdue counts start afresh where a period opened.
            let units: BTreeSet<LocalId> = self.dir.units.keys().cloned().collect();
            self.derive_from_reports(&BTreeSet::new(), &units, now);
            self.derive_from_tallies(&days, now);
            let all = self.indicators.all_series(&self.dir);
            out.extend(self.indicator_changes(all, None, now));
            return out;
        }
        // Camera time runs on: the open periods' figures, once a minute.
        let minute = now.timestamp().div_euclid(60);
        if minute != self.tallies_minute {
            self.tallies_minute = minute;
            days.extend(self.every_unit_on(today));
        }
        out.extend(self.figure_tallies(&days, now));
        out
    }

    /// Alert transitions as effects: the event on `ioc.alerts` (when `with_events`), then
    /// the alert's state (a tombstone once it leaves the layer), all owned by the entity the
    /// alert is about.
    fn alert_effects(
        &mut self,
        transitions: Vec<Transition>,
        with_events: bool,
        now: DateTime<Utc>,
    ) -> Vec<Effect> {
        let mut out = Vec::new();
        let mut days = Days::new();
        for t in transitions {
            if let Some(a) = raised(&t).filter(|a| !a.entity.is(EntityKind::Series)) {
                // Alerts raised per rule, for their derived indicators (not those about the
                // indicators themselves: a count of those would judge itself).
                let units = self.place_of(&a.entity).map(|p| p.1).unwrap_or_default();
                if let Ok(rule) = LocalId::parse("rule", &a.rule) {
                    let day = vietnam_date(a.raised_at.to_utc());
                    let parts = Parts::Alerts {
                        raised: [(rule, 1)].into_iter().collect(),
                    };
                    days.extend(self.tallies.add(&a.entity, &units, day, parts, &mut out));
                }
            }
            let (kind, alert) = match &t {
                Transition::Raised(a) => (EventKind::AlertRaised, a),
                Transition::Updated(a) => (EventKind::AlertUpdated, a),
                Transition::Acked(a) => (EventKind::AlertAcked, a),
                Transition::Cleared(a) => (EventKind::AlertCleared, a),
                Transition::Escalated(a) => (EventKind::AlertEscalated, a),
                Transition::Expired(a) => {
                    out.push(Effect::Tombstone {
                        entity: a.entity_id(),
                        owner: a.entity.clone(),
                    });
                    continue;
                }
            };
            if with_events {
                let data = match &t {
                    Transition::Cleared(a) => serde_json::to_value(model::alert::AlertAction {
                        alert: a.id.clone(),
                        by: a.cleared_by.clone().unwrap_or_else(|| rules::AUTO.into()),
                        note: a.clear_note.clone(),
                        at: a.cleared_at.unwrap_or(a.raised_at),
                    }),
                    _ => serde_json::to_value(alert),
                }
                .unwrap_or_default();
                let event = Envelope::new(
                    kind,
                    alert.entity_id(),
                    now.fixed_offset(),
                    now,
                    "core:rules",
                    data,
                );
                out.push(Effect::AlertEvent {
                    subject: alert.entity.clone(),
                    event,
                });
            }
            let ((lon, lat), units) = self
                .place_of(&alert.entity)
                .unwrap_or(((0.0, 0.0), Vec::new()));
            let geometry = geojson::Geometry::new(geojson::Value::Point(vec![lon, lat]));
            out.push(Effect::Upsert {
                record: alert.to_record(geometry, [lon, lat, lon, lat], units),
                owner: alert.entity.clone(),
            });
        }
        if !days.is_empty() {
            out.extend(self.figure_tallies(&days, now));
        }
        out
    }

    /// Where an alert's entity is: its point and units.
    fn place_of(&self, entity: &EntityId) -> Option<((f64, f64), Vec<LocalId>)> {
        if let Some((_, unit)) = entity.series_parts() {
            return crate::indicators::place(&self.dir, &unit);
        }
        let id = LocalId::parse("entity", entity.local()).ok()?;
        match entity.kind() {
            EntityKind::Report => self.reports.place(&id),
            EntityKind::Camera => self.dir.cameras.get(&id).map(|c| {
                let (lon, lat) = (c.position.lon, c.position.lat);
                ((lon, lat), self.dir.locate(lon, lat))
            }),

            _ => self.stations.get(&id).map(|s| {
                (
                    (s.station.position.lon, s.station.position.lat),
                    s.units.clone(),
                )
            }),
        }
    }
}

/// The alert a transition raised, if it raised one.
fn raised(t: &Transition) -> Option<&Alert> {
    match t {
        Transition::Raised(a) => Some(a),
        _ => None,
    }
}

/// The dead letter of a rejected input.
fn dead_letter(r: Rejected, now: DateTime<Utc>) -> Effect {
    tracing::warn!(source = %r.source, errors = ?r.errors, "input dead-lettered");
    let event = Envelope::dead_letter(&r.source, r.entity, r.errors, r.original, now);
    Effect::DeadLetter {
        partition: r.partition,
        source: r.source,
        event,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};
    use model::alert::{AlertAction, AlertState};
    use model::reading::Quality;
    use model::{Parameter, Reading, RegistryEntry, Station};

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 20, 3, 0, 0).unwrap()
    }

    fn rules() -> RulesConfig {
        RulesConfig {
            salinity_min_duration_s: 0,
            ..RulesConfig::default()
        }
    }

    /// Books loaded with the fixture registry and started on an empty state topic.
    fn started() -> (Books, Vec<Effect>) {
        let mut b = Books::new(rules(), ReportsConfig::default(), now());
        for e in fixtures::registry() {
            assert!(b
                .load(Input::Registry(Ok(RegistryChange::Upsert(e))), now())
                .is_empty());
        }
        let effects = b.start(&HashMap::new(), now());
        (b, effects)
    }

    fn salinity_station(b: &Books) -> Station {
        let mut s: Vec<&crate::station::StationState> = b
            .stations
            .iter()
            .filter(|s| s.station.kind == StationKind::Salinity && s.station.river.is_some())
            .collect();
        s.sort_by(|a, b| a.station.id.cmp(&b.station.id));
        s[0].station.clone()
    }

    fn reading(
        s: &Station,
        value: f64,
        at: DateTime<Utc>,
        offset: i64,
    ) -> Result<ReadingIn, Rejected> {
        Ok(ReadingIn {
            reading: Reading {
                station: s.id.clone(),
                parameter: Parameter::Salinity,
                ts: at.fixed_offset(),
                value,
                unit: Parameter::Salinity.canonical_unit(),
                quality: Quality::Good,
                sent_as: None,
            },
            received: at.fixed_offset(),
            topic: "ioc.readings".into(),
            partition: 0,
            offset,
        })
    }

    fn upserts(effects: &[Effect], layer: Layer) -> Vec<&StateRecord> {
        effects
            .iter()
            .filter_map(Effect::record)
            .filter(|r| r.layer == layer)
            .collect()
    }

    #[test]
    fn start_publishes_every_registered_entity_once_and_nothing_when_restored_equal() {
        let (b, effects) = started();
        assert_eq!(upserts(&effects, Layer::Units).len(), b.unit_count());
        let stations = effects
            .iter()
            .filter_map(Effect::record)
            .filter(|r| r.entity.is(model::EntityKind::Station))
            .count();
        assert_eq!(stations, b.station_count());
        // A restart over what it published publishes nothing again.
        let restored: HashMap<EntityId, StateRecord> = effects
            .iter()
            .filter_map(Effect::record)
            .map(|r| (r.entity.clone(), r.clone()))
            .collect();
        let mut fresh = Books::new(rules(), ReportsConfig::default(), now());
        for e in fixtures::registry() {
            fresh.load(Input::Registry(Ok(RegistryChange::Upsert(e))), now());
        }
        assert!(fresh.start(&restored, now()).is_empty());
        // And its clock finds nothing to say at once.
        assert!(fresh.apply(Input::Tick, now()).is_empty());
    }

    #[test]
    fn a_reading_moves_its_station_and_river_and_a_replay_changes_nothing() {
        let (mut b, _) = started();
        let s = salinity_station(&b);
        let effects = b.apply(Input::Readings(vec![reading(&s, 0.5, now(), 7)]), now());
        let station = upserts(&effects, s_layer(&b, &s));
        assert_eq!(station.len(), 1);
        assert_eq!(station[0].properties["readings"], 1);
        assert_eq!(upserts(&effects, Layer::Rivers).len(), 1, "{effects:?}");
        // The same message again (a replay after a crash): nothing to publish.
        let again = b.apply(Input::Readings(vec![reading(&s, 0.5, now(), 7)]), now());
        assert!(again.is_empty(), "{again:?}");
    }

    fn s_layer(b: &Books, s: &Station) -> Layer {
        b.stations.get(&s.id).unwrap().layer()
    }

    #[test]
    fn a_restart_knows_which_readings_its_restored_state_covers() {
        let (mut b, _) = started();
        let s = salinity_station(&b);
        let effects = b.apply(Input::Readings(vec![reading(&s, 0.5, now(), 41)]), now());
        let restored: HashMap<EntityId, StateRecord> = effects
            .iter()
            .filter_map(Effect::record)
            .map(|r| (r.entity.clone(), r.clone()))
            .collect();
        let mut again = Books::new(rules(), ReportsConfig::default(), now());
        for e in fixtures::registry() {
            again.load(Input::Registry(Ok(RegistryChange::Upsert(e))), now());
        }
        again.start(&restored, now());
        assert_eq!(again.readings_covered_up_to(|_| true).get(&0), Some(&42));
        assert!(again.readings_covered_up_to(|p| p != 0).is_empty());
    }

    #[test]
    fn a_reading_for_an_unknown_station_is_dead_lettered_naming_the_field() {
        let (mut b, _) = started();
        let mut s = salinity_station(&b);
        s.id = LocalId::parse("id", "nowhere-01").unwrap();
        let effects = b.apply(Input::Readings(vec![reading(&s, 0.5, now(), 3)]), now());
        let [Effect::DeadLetter {
            event, partition, ..
        }] = effects.as_slice()
        else {
            panic!("{effects:?}");
        };
        assert_eq!(*partition, 0);
        assert_eq!(event.data["errors"][0]["field"], "station");
        assert_eq!(event.data["source"], "bus:ioc.readings/0/3");
    }

    #[test]
    fn a_warning_raises_one_alert_owned_by_its_station_and_an_ack_changes_only_its_state() {
        let (mut b, _) = started();
        let s = salinity_station(&b);
        let effects = b.apply(Input::Readings(vec![reading(&s, 50.0, now(), 1)]), now());
        let events: Vec<&Effect> = effects
            .iter()
            .filter(|e| matches!(e, Effect::AlertEvent { .. }))
            .collect();
        assert_eq!(events.len(), 1, "{effects:?}");
        let Effect::AlertEvent { subject, event } = events[0] else {
            unreachable!()
        };
        assert_eq!(subject, &EntityId::station(&s.id));
        assert_eq!(event.kind, EventKind::AlertRaised);
        let alert: Alert = event.data_as().unwrap();
        // Every effect of the alert belongs to the station's owner.
        for e in effects
            .iter()
            .filter(|e| e.record().is_some_and(|r| r.layer == Layer::Alerts))
        {
            assert_eq!(e.owner(), Ok(&EntityId::station(&s.id)));
        }
        let ack = AlertActionIn {
            kind: EventKind::AlertAcked,
            action: AlertAction {
                alert: alert.id.clone(),
                by: "op-1".into(),
                note: None,
                at: now().fixed_offset(),
            },
        };
        let effects = b.apply(Input::AlertAction(ack.clone()), now());
        assert_eq!(effects.len(), 1, "{effects:?}");
        let rec = effects[0].record().unwrap();
        assert_eq!(
            Alert::from_record(rec).unwrap().state,
            AlertState::Acknowledged
        );
        // The same action again (read twice) applies once.
        assert!(b.apply(Input::AlertAction(ack), now()).is_empty());
    }

    #[test]
    fn the_clock_raises_stale_for_a_silent_station_and_clears_it_when_it_speaks() {
        let (mut b, _) = started();
        let s = salinity_station(&b);
        let later = now() + Duration::days(2);
        let effects = b.apply(Input::Tick, later);
        let raised: Vec<&Envelope> = effects
            .iter()
            .filter_map(|e| match e {
                Effect::AlertEvent { subject, event } if subject == &EntityId::station(&s.id) => {
                    Some(event)
                }
                _ => None,
            })
            .collect();
        assert_eq!(raised.len(), 1, "{effects:?}");
        assert_eq!(raised[0].data["rule"], "stale");
        b.apply(Input::Readings(vec![reading(&s, 0.5, later, 9)]), later);
        let effects = b.apply(Input::Tick, later);
        assert!(
            effects
                .iter()
                .any(|e| matches!(e, Effect::AlertEvent { subject, event }
                if subject == &EntityId::station(&s.id) && event.kind == EventKind::AlertCleared)),
            "{effects:?}"
        );
    }

    #[test]
    fn registry_changes_upsert_rename_and_tombstone_stations() {
        let (mut b, _) = started();
        let mut s = salinity_station(&b);
        s.name = "Trạm đổi tên".into();
        let effects = b.apply(
            Input::Registry(Ok(RegistryChange::Upsert(RegistryEntry::Station(
                s.clone(),
            )))),
            now(),
        );
        assert_eq!(effects.len(), 1, "{effects:?}");
        assert_eq!(
            effects[0].record().unwrap().properties["name"],
            "Trạm đổi tên"
        );
        let effects = b.apply(
            Input::Registry(Ok(RegistryChange::Remove(EntityId::station(&s.id)))),
            now(),
        );
        assert_eq!(effects, vec![Effect::tombstone(EntityId::station(&s.id))]);
    }

    #[test]
    fn another_instances_station_is_mirrored_and_moves_the_river_but_is_never_republished() {
        let (mut b, _) = started();
        let s = salinity_station(&b);
        // What the owner published after a reading of 12‰.
        let mut owner = Books::new(rules(), ReportsConfig::default(), now());
        for e in fixtures::registry() {
            owner.load(Input::Registry(Ok(RegistryChange::Upsert(e))), now());
        }
        owner.start(&HashMap::new(), now());
        let published = owner.apply(Input::Readings(vec![reading(&s, 12.0, now(), 1)]), now());
        let record = published
            .iter()
            .filter_map(Effect::record)
            .find(|r| r.entity == EntityId::station(&s.id))
            .unwrap()
            .clone();
        let effects = b.apply(Input::Peer(record), now());
        assert!(!effects.is_empty(), "the river moves");
        // The river and the derived figure of its reach; never the other's station.
        assert!(
            effects
                .iter()
                .filter_map(Effect::record)
                .all(|r| r.layer == Layer::Rivers
                    || r.entity.as_str().starts_with("series:mt-man-xamnhap-4@")),
            "{effects:?}"
        );
        assert!(effects
            .iter()
            .filter_map(Effect::record)
            .any(|r| r.layer == Layer::Rivers));
    }

    #[test]
    fn a_camera_status_moves_its_record_and_an_older_one_does_not() {
        let (mut b, _) = started();
        let cam = fixtures::cameras::cameras("rtsp://127.0.0.1:8554").remove(0);
        let effects = b.apply(
            Input::Registry(Ok(RegistryChange::Upsert(RegistryEntry::Camera(
                cam.clone(),
            )))),
            now(),
        );
        assert_eq!(upserts(&effects, Layer::Cameras).len(), 1, "{effects:?}");
        let online = model::CameraState::Online;
        let effects = b.apply(camera_status_at(&cam, online, now()), now());
        assert_eq!(upserts(&effects, Layer::Cameras).len(), 1, "{effects:?}");
        let effects = b.apply(
            camera_status_at(&cam, online, now() - Duration::minutes(5)),
            now(),
        );
        assert!(effects.is_empty());
    }

    fn indicator_input(events: Vec<model::indicator::IndicatorEvent>) -> Input {
        Input::Indicators(
            events
                .into_iter()
                .enumerate()
                .map(|(i, e)| {
                    Ok(Located {
                        event: Envelope::new(
                            e.kind(),
                            EntityId::new(model::EntityKind::Indicator, e.indicator()),
                            now().fixed_offset(),
                            now(),
                            "test",
                            serde_json::to_value(&e).unwrap(),
                        ),
                        source: format!("bus:indicators/0/{i}"),
                        partition: 0,
                    })
                })
                .collect(),
        )
    }

    #[test]
    fn indicators_load_roll_up_judge_and_raise_one_alert_per_missed_series() {
        let mut b = Books::new(rules(), ReportsConfig::default(), now());
        for e in fixtures::registry() {
            b.load(Input::Registry(Ok(RegistryChange::Upsert(e))), now());
        }
        let history = fixtures::indicators::history(
            model::indicator::period::vietnam_date(now()),
            now().fixed_offset(),
        );
        assert!(
            b.load(indicator_input(history), now()).is_empty(),
            "nothing refused"
        );
        let effects = b.start(&HashMap::new(), now());
        let series = upserts(&effects, Layer::Indicators);
        // 37 indicators × (8 districts + the province).
        assert!(series.len() > 300, "{}", series.len());
        let rate = series
            .iter()
            .find(|r| r.entity.as_str() == "series:hcc-tl-dunghan@hg")
            .expect("the province's on-time rate, rolled up from its districts");
        let latest = &rate.properties["latest"];
        assert_eq!(
            latest["period"], "202610",
            "October is the last closed month on 20 November"
        );
        assert_eq!(latest["origin"], "rolled_up");
        assert_eq!(latest["completeness"], 1.0);
        let v = latest["value"].as_f64().unwrap();
        assert!((95.0..100.0).contains(&v), "{v}");
        // Every missed series raised exactly one alert, to the indicator's agency.
        let missed: Vec<&&StateRecord> = series
            .iter()
            .filter(|r| r.properties["status"] == "missed")
            .collect();
        assert!(!missed.is_empty(), "the fixtures miss some targets");
        let raised: Vec<&Envelope> = effects
            .iter()
            .filter_map(|e| match e {
                Effect::AlertEvent { event, .. } if event.kind == EventKind::AlertRaised => {
                    Some(event)
                }
                _ => None,
            })
            .collect();
        let off: Vec<&&Envelope> = raised
            .iter()
            .filter(|e| e.data["rule"] == "indicator_off_target")
            .collect();
        assert_eq!(off.len(), missed.len());
        for r in &missed {
            let a = off
                .iter()
                .find(|e| e.data["entity"] == r.entity.as_str())
                .unwrap_or_else(|| panic!("no alert for {}", r.entity));
            assert_eq!(a.data["agency"], r.properties["agency"]);
        }
        // Long Mỹ stopped sending its tourism figures: one missing alert per series.
        let late: Vec<&&Envelope> = raised
            .iter()
            .filter(|e| e.data["rule"] == "indicator_missing")
            .collect();
        assert!(
            late.iter()
                .any(|e| e.data["entity"] == "series:dl-luotkhach@hg-long-my"),
            "{late:?}"
        );
        let agencies: std::collections::BTreeSet<&str> = late
            .iter()
            .filter_map(|e| e.data["agency"].as_str())
            .collect();
        assert_eq!(
            agencies.into_iter().collect::<Vec<_>>(),
            ["hg-svhttdl"],
            "{late:?}"
        );
        // A restart over its own published state publishes nothing again.
        let restored: HashMap<EntityId, StateRecord> = effects
            .iter()
            .filter_map(|e| e.record())
            .map(|r| (r.entity.clone(), r.clone()))
            .collect();
        let mut again = Books::new(rules(), ReportsConfig::default(), now());
        for e in fixtures::registry() {
            again.load(Input::Registry(Ok(RegistryChange::Upsert(e))), now());
        }
        let history = fixtures::indicators::history(
            model::indicator::period::vietnam_date(now()),
            now().fixed_offset(),
        );
        again.load(indicator_input(history), now());
        let effects = again.start(&restored, now());
        assert!(upserts(&effects, Layer::Indicators).is_empty());
    }

    #[test]
    fn a_correction_moves_the_province_and_a_bad_value_is_dead_lettered() {
        let (mut b, _) = started();
        let value = |unit: &str, v: f64| {
            model::indicator::IndicatorEvent::Value(model::indicator::Value {
                indicator: LocalId::parse("i", "dl-luotkhach").unwrap(),
                unit: LocalId::parse("u", unit).unwrap(),
                period: "202610".parse().unwrap(),
                value: v,
                note: None,
                by: "agency:hg-svhttdl".into(),
                at: now().fixed_offset(),
            })
        };
        let effects = b.apply(indicator_input(vec![value("hg-vi-thanh", 9000.0)]), now());
        let ids: Vec<&str> = upserts(&effects, Layer::Indicators)
            .iter()
            .map(|r| r.entity.as_str())
            .collect();
        assert_eq!(
            ids,
            ["series:dl-luotkhach@hg", "series:dl-luotkhach@hg-vi-thanh"]
        );
        let effects = b.apply(indicator_input(vec![value("hg-vi-thanh", 9500.0)]), now());
        let province = upserts(&effects, Layer::Indicators)
            .into_iter()
            .find(|r| r.entity.as_str() == "series:dl-luotkhach@hg")
            .unwrap();
        assert_eq!(province.properties["latest"]["value"], 9500.0);
        let unit = upserts(&effects, Layer::Indicators)
            .into_iter()
            .find(|r| r.entity.as_str() == "series:dl-luotkhach@hg-vi-thanh")
            .unwrap();
        assert_eq!(
            unit.properties["latest"]["revisions"][1]["previous"],
            9000.0
        );
        // The same value again: nothing to publish.
        assert!(b
            .apply(indicator_input(vec![value("hg-vi-thanh", 9500.0)]), now())
            .is_empty());
        let effects = b.apply(indicator_input(vec![value("hg-nowhere", 1.0)]), now());
        assert!(
            matches!(&effects[..], [Effect::DeadLetter { .. }]),
            "{effects:?}"
        );
    }

    #[test]
    fn field_reports_become_derived_indicators_rolled_up_to_the_province() {
        use crate::reports::tests::{created, step};
        use model::report::Step;
        let (mut b, _) = started();
        let located = |env: Envelope| {
            Ok(Located {
                event: env,
                source: "bus:reports/0/1".into(),
                partition: 0,
            })
        };
        let effects = b.apply(
            Input::Reports(vec![
                located(created("pa-1", 9.78, "2026-11-19T08:00:00+07:00")),
                located(created("pa-2", 9.70, "2026-11-19T09:00:00+07:00")),
            ]),
            now(),
        );
        let series = |effects: &[Effect], id: &str| {
            upserts(effects, Layer::Indicators)
                .into_iter()
                .find(|r| r.entity.as_str() == id)
                .cloned()
        };
        let received = series(&effects, "series:pa-tiepnhan@hg-vi-thanh").expect("received");
        assert_eq!(received.properties["latest"]["value"], 2.0);
        assert_eq!(received.properties["latest"]["period"], "202611");
        let province = series(&effects, "series:pa-tiepnhan@hg").expect("rolled up");
        assert_eq!(province.properties["latest"]["value"], 2.0);
        // One resolved within its 72 h: the on-time rate is 100 %.
        let mut out = Vec::new();
        for (s, at) in [
            (
                Step::Assign {
                    agency: "hg-vt-qldt".into(),
                },
                "2026-11-19T10:00:00+07:00",
            ),
            (Step::Start, "2026-11-19T11:00:00+07:00"),
            (
                Step::Resolve {
                    result: "Đã xử lý".into(),
                },
                "2026-11-20T08:00:00+07:00",
            ),
        ] {
            let env = step(b.reports_book(), "pa-1", s, at);
            out.extend(b.apply(Input::Reports(vec![located(env)]), now()));
        }
        let rate = out
            .iter()
            .rev()
            .filter_map(|e| e.record())
            .find(|r| r.entity.as_str() == "series:pa-tl-dunghan@hg")
            .expect("the province's on-time rate");
        assert_eq!(rate.properties["latest"]["value"], 100.0);
        assert_eq!(rate.properties["latest"]["origin"], "rolled_up");
    }

    fn camera_status_at(
        cam: &model::Camera,
        state: model::CameraState,
        at: DateTime<Utc>,
    ) -> Input {
        let s = model::camera::CameraStatus {
            camera: cam.id.clone(),
            state,
            since: at.fixed_offset(),
            changed: true,
            reason: None,
            last_frame: Some(at.fixed_offset()),
            last_snapshot: None,
            reconnects: 0,
            stats: Default::default(),
        };
        Input::CameraStatus(Ok(Located {
            event: Envelope::new(
                EventKind::CameraStatus,
                EntityId::new(model::EntityKind::Camera, &cam.id),
                at.fixed_offset(),
                at,
                "test",
                serde_json::to_value(&s).unwrap(),
            ),
            source: "bus:cameras/0/1".into(),
            partition: 0,
        }))
    }

    /// The tallies among `effects`, as the topic gives them back.
    fn tallies_of(effects: &[Effect]) -> Vec<crate::input::TallyIn> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Tally { tally, .. } => Some(crate::input::TallyIn {
                    key: tally.key(),
                    tally: Some(tally.clone()),
                }),
                _ => None,
            })
            .collect()
    }

    fn latest(effects: &[Effect], id: &str) -> Option<serde_json::Value> {
        effects
            .iter()
            .rev()
            .filter_map(Effect::record)
            .find(|r| r.entity.as_str() == id)
            .map(|r| r.properties["latest"]["value"].clone())
    }

    #[test]
    fn camera_time_and_alerts_become_derived_indicators_and_a_restart_figures_the_same() {
        let (mut b, mut effects) = started();
        let cam = fixtures::cameras::cameras("rtsp://127.0.0.1:8554").remove(0);
        effects.extend(b.apply(
            Input::Registry(Ok(RegistryChange::Upsert(RegistryEntry::Camera(
                cam.clone(),
            )))),
            now() - Duration::hours(5),
        ));
        let (online, offline) = (model::CameraState::Online, model::CameraState::Offline);
        // Connecting from 05:00 (the worker starting): not yet counted. Online from 06:00
        // (Vietnam), offline from 09:00; read at 10:00.
        let five = now() - Duration::hours(5);
        let connecting = model::CameraState::Connecting;
        effects.extend(b.apply(camera_status_at(&cam, connecting, five), five));
        let six = now() - Duration::hours(4);
        effects.extend(b.apply(camera_status_at(&cam, online, six), six));
        let nine = now() - Duration::hours(1);
        let at_nine = b.apply(camera_status_at(&cam, offline, nine), nine);
        // The camera's record carries its time today: 3 h online of 3 h seen by 09:00.
        let rec = upserts(&at_nine, Layer::Cameras)[0].clone();
        assert_eq!(rec.properties["today"]["online_s"], 3 * 3600);
        assert_eq!(rec.properties["today"]["observed_s"], 3 * 3600);
        assert_eq!(rec.properties["today"]["online"], false);
        effects.extend(at_nine);
        // The camera_down rule sees it down at 09:30, and raises its alert by 10:00.
        effects.extend(b.apply(Input::Tick, now() - Duration::minutes(30)));
        effects.extend(b.apply(Input::Tick, now()));
        let province = "series:cam-tl-hoatdong@hg";
        assert_eq!(latest(&effects, province), Some(serde_json::json!(75.0)));
        // The camera's district has the same figure: it is its only camera.
        let units = b.dir.locate(cam.position.lon, cam.position.lat);
        let district = units
            .iter()
            .find(|u| u.as_str() != "hg")
            .expect("a district");
        let of_district = format!("series:cam-tl-hoatdong@{district}");
        assert_eq!(
            latest(&effects, &of_district),
            Some(serde_json::json!(75.0))
        );
        // Offline past the rule's delay: one camera_down alert, counted for the month.
        assert_eq!(
            latest(&effects, "series:cam-mat-hinh@hg"),
            Some(serde_json::json!(1.0))
        );
        // A restart from what was published: the tallies and the state topic.
        let tallies = tallies_of(&effects);
        let effects_before = effects.clone();
        assert!(!tallies.is_empty());
        let mut restored: HashMap<EntityId, StateRecord> = HashMap::new();
        for e in &effects {
            match e {
                Effect::Upsert { record, .. } => {
                    restored.insert(record.entity.clone(), record.clone());
                }
                Effect::Tombstone { entity, .. } => {
                    restored.remove(entity);
                }
                _ => {}
            }
        }
        let mut again = Books::new(rules(), ReportsConfig::default(), now());
        for e in fixtures::registry() {
            again.load(Input::Registry(Ok(RegistryChange::Upsert(e))), now());
        }
        again.load(
            Input::Registry(Ok(RegistryChange::Upsert(RegistryEntry::Camera(
                cam.clone(),
            )))),
            now(),
        );
        again.load(Input::Tallies(tallies), now());
        let effects = again.start(&restored, now());
        assert_eq!(
            latest(&effects, province),
            None,
            "nothing changed: {effects:?}"
        );
        // An hour later the camera is still offline: 3 h online of 5 h seen.
        let later = again.apply(Input::Tick, now() + Duration::hours(1));
        assert_eq!(latest(&later, province), Some(serde_json::json!(60.0)));
        // Restarted the next day: the camera's record shows its time on the new day.
        let mut next = Books::new(rules(), ReportsConfig::default(), now());
        for e in fixtures::registry() {
            next.load(Input::Registry(Ok(RegistryChange::Upsert(e))), now());
        }
        next.load(
            Input::Registry(Ok(RegistryChange::Upsert(RegistryEntry::Camera(
                cam.clone(),
            )))),
            now(),
        );
        next.load(Input::Tallies(tallies_of(&effects_before)), now());
        let tomorrow = now() + Duration::days(1);
        let started = next.start(&restored, tomorrow);
        let rec = upserts(&started, Layer::Cameras)
            .into_iter()
            .find(|r| r.entity.local() == cam.id.as_str())
            .expect("the camera's record, moved to a new day");
        assert_eq!(
            rec.properties["today"]["day"],
            serde_json::json!(model::indicator::period::vietnam_date(tomorrow))
        );
        assert_eq!(rec.properties["today"]["online_s"], 0);
    }

    #[test]
    fn a_salinity_warning_counts_one_day_and_its_river_reach_the_farthest() {
        let (mut b, _) = started();
        let s = salinity_station(&b);
        let mut effects = b.apply(Input::Readings(vec![reading(&s, 50.0, now(), 1)]), now());
        let later = now() + Duration::hours(2);
        effects.extend(b.apply(Input::Readings(vec![reading(&s, 60.0, later, 2)]), later));
        assert_eq!(
            latest(&effects, "series:mt-man-ngay-canhbao@hg"),
            Some(serde_json::json!(1.0)),
            "two warnings on one day are one day"
        );
        let reach = latest(&effects, "series:mt-man-xamnhap-4@hg").expect("a reach");
        assert!(
            reach
                .as_f64()
                .is_some_and(|km| km >= s.km_from_mouth.unwrap_or(0.0)),
            "{reach}"
        );
        // The salinity_warning alert raised once is an alert of the day for its rule.
        let tallies = effects
            .iter()
            .filter(|e| matches!(e, Effect::Tally { tally, .. } if tally.parts.kind() == "alerts"))
            .count();
        assert_eq!(tallies, 1);
    }
}
