//! The tally book: every daily tally ([`model::indicator::tally`]) of cameras, stations,
//! rivers and alerts, this instance's and (read from `ioc.tallies`) the other instances',
//! indexed by unit and day, from which the core figures the derived indicators of those
//! streams. Each tally is published by the owner of its entity; the topic is compacted, one
//! message per entity, day and kind, and read whole at every start, so a restart figures the
//! same as before.
//!
//! Pure: the books hand it tallies and the time; it never reads the bus.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use model::indicator::tally::{self, camera_advance, camera_start, Parts, Tally, KEEP_DAYS};
use model::{EntityId, LocalId};

use crate::effect::Effect;

/// The (unit, day)s whose figures a change moves.
pub type Days = BTreeSet<(LocalId, NaiveDate)>;

#[derive(Debug, Default)]
pub struct TallyBook {
    tallies: HashMap<String, Tally>,
    /// Keys per unit and day.
    by_unit: HashMap<LocalId, BTreeMap<NaiveDate, BTreeSet<String>>>,
    /// Each camera's latest day with a tally (its time runs on there).
    camera_day: HashMap<EntityId, NaiveDate>,
}

impl TallyBook {
    pub fn len(&self) -> usize {
        self.tallies.len()
    }

    /// Takes a tally (its own, or another instance's from the topic); the (unit, day)s it
    /// moves, empty when it was held already.
    pub fn put(&mut self, t: Tally) -> Days {
        let key = t.key();
        if self.tallies.get(&key) == Some(&t) {
            return Days::new();
        }
        let mut days = self.unindex(&key);
        for u in &t.units {
            self.by_unit
                .entry(u.clone())
                .or_default()
                .entry(t.day)
                .or_default()
                .insert(key.clone());
            days.insert((u.clone(), t.day));
        }
        if matches!(t.parts, Parts::Camera(_)) {
            let d = self.camera_day.entry(t.entity.clone()).or_insert(t.day);
            *d = (*d).max(t.day);
        }
        self.tallies.insert(key, t);
        days
    }

    /// A tally gone from the topic (a tombstone).
    pub fn remove(&mut self, key: &str) -> Days {
        let days = self.unindex(key);
        if let Some(t) = self.tallies.remove(key) {
            if self.camera_day.get(&t.entity) == Some(&t.day) {
                self.camera_day.remove(&t.entity);
            }
        }
        days
    }

    fn unindex(&mut self, key: &str) -> Days {
        let mut days = Days::new();
        if let Some(old) = self.tallies.get(key) {
            for u in &old.units {
                if let Some(keys) = self.by_unit.get_mut(u).and_then(|d| d.get_mut(&old.day)) {
                    keys.remove(key);
                }
                days.insert((u.clone(), old.day));
            }
        }
        days
    }

    /// The tallies of `unit` from `first` to `last` (Vietnam days, inclusive).
    pub fn of_unit(
        &self,
        unit: &LocalId,
        first: NaiveDate,
        last: NaiveDate,
    ) -> impl Iterator<Item = &Tally> {
        self.by_unit
            .get(unit)
            .into_iter()
            .flat_map(move |d| d.range(first..=last))
            .flat_map(|(_, keys)| keys.iter())
            .filter_map(|k| self.tallies.get(k))
    }

    /// Every (unit, day) with a tally.
    pub fn all_days(&self) -> Days {
        self.by_unit
            .iter()
            .flat_map(|(u, d)| d.keys().map(move |day| (u.clone(), *day)))
            .collect()
    }

    fn get(&self, entity: &EntityId, day: NaiveDate, kind: &str) -> Option<&Tally> {
        self.tallies.get(&tally::key(entity, day, kind))
    }

    /// What `parts` counted of `entity` on `day` added to its tally (a new one when it has
    /// none): its effect and the days it moves, nothing when that changed nothing.
    pub fn add(
        &mut self,
        entity: &EntityId,
        units: &[LocalId],
        day: NaiveDate,
        parts: Parts,
        out: &mut Vec<Effect>,
    ) -> Days {
        let t = match self.get(entity, day, parts.kind()) {
            Some(held) => {
                let mut t = held.clone();
                t.parts.absorb(parts);
                t
            }
            None => Tally {
                entity: entity.clone(),
                day,
                units: units.to_vec(),
                parts,
            },
        };
        let days = self.put(t.clone());
        if !days.is_empty() {
            out.push(Effect::tally(t));
        }
        days
    }

    /// A camera (in `units`) is online or not since `at`: its tallies from the last one it
    /// has, published where they changed. A camera seen for the first time counts from `at`.
    pub fn camera(
        &mut self,
        entity: &EntityId,
        units: &[LocalId],
        at: DateTime<Utc>,
        online: bool,
        out: &mut Vec<Effect>,
    ) -> Days {
        let last = self
            .camera_day
            .get(entity)
            .and_then(|d| self.get(entity, *d, "camera"))
            .cloned();
        let next = match last {
            None => vec![camera_start(entity.clone(), units.to_vec(), at, online)],
            Some(last) => {
                let Parts::Camera(held) = last.parts else {
                    return Days::new();
                };
                let at = at.max(held.upto);
                if held.online == online && model::indicator::period::vietnam_date(at) == last.day {
                    return Days::new(); // the same state on the same day: nothing to count yet
                }
                camera_advance(&last, units, at, online)
            }
        };
        let mut days = Days::new();
        for t in next {
            let moved = self.put(t.clone());
            if !moved.is_empty() {
                out.push(Effect::tally(t));
                days.extend(moved);
            }
        }
        days
    }

    /// The cameras with a tally, and the state their latest holds (for a new day).
    pub fn cameras(&self) -> Vec<(EntityId, Vec<LocalId>, bool)> {
        self.camera_day
            .iter()
            .filter_map(|(e, d)| match self.get(e, *d, "camera") {
                Some(Tally {
                    units,
                    parts: Parts::Camera(c),
                    ..
                }) => Some((e.clone(), units.clone(), c.online)),
                _ => None,
            })
            .collect()
    }

    /// An air station's VN_AQI for the hour starting at `hour` (UTC), or for the Vietnam day
    /// `daily.0`.
    pub fn air(
        &mut self,
        entity: &EntityId,
        units: &[LocalId],
        hourly: Option<(DateTime<Utc>, u32)>,
        daily: Option<(NaiveDate, u32)>,
        out: &mut Vec<Effect>,
    ) -> Days {
        let mut days = Days::new();
        if let Some((start, aqi)) = hourly {
            let local = start.with_timezone(&model::indicator::period::vietnam());
            let hour = chrono::Timelike::hour(&local) as u8;
            let parts = Parts::Air {
                hourly: [(hour, aqi)].into_iter().collect(),
                daily: None,
            };
            days.extend(self.add(entity, units, local.date_naive(), parts, out));
        }
        if let Some((day, aqi)) = daily {
            let parts = Parts::Air {
                hourly: BTreeMap::new(),
                daily: Some(aqi),
            };
            days.extend(self.add(entity, units, day, parts, out));
        }
        days
    }

    /// Tallies older than [`KEEP_DAYS`] before `today`: tombstoned by their entities' owners.
    pub fn expire(&mut self, today: NaiveDate) -> Vec<Effect> {
        let oldest = today - Duration::days(KEEP_DAYS);
        let old: Vec<(String, EntityId)> = self
            .tallies
            .iter()
            .filter(|(_, t)| t.day < oldest)
            .map(|(k, t)| (k.clone(), t.entity.clone()))
            .collect();
        old.into_iter()
            .map(|(key, owner)| {
                self.remove(&key);
                Effect::TallyGone { key, owner }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn id(s: &str) -> LocalId {
        LocalId::parse("id", s).unwrap()
    }

    #[test]
    fn a_camera_is_counted_on_state_changes_only_and_a_new_day_opens_a_tally() {
        let mut b = TallyBook::default();
        let cam = EntityId::parse("camera:c1").unwrap();
        let units = [id("hg-vt"), id("hg")];
        let mut out = Vec::new();
        let days = b.camera(&cam, &units, t("2026-12-02T08:00:00+07:00"), true, &mut out);
        assert_eq!(days.len(), 2, "both units move");
        assert_eq!(out.len(), 1);
        // A heartbeat in the same state and day publishes nothing.
        assert!(b
            .camera(&cam, &units, t("2026-12-02T09:00:00+07:00"), true, &mut out)
            .is_empty());
        assert_eq!(out.len(), 1);
        b.camera(
            &cam,
            &units,
            t("2026-12-02T10:00:00+07:00"),
            false,
            &mut out,
        );
        assert_eq!(out.len(), 2);
        // The first tick of the next day closes the day at the state held, opens the next.
        b.camera(
            &cam,
            &units,
            t("2026-12-03T00:00:10+07:00"),
            false,
            &mut out,
        );
        assert_eq!(out.len(), 4);
        let day = |s: &str| s.parse::<NaiveDate>().unwrap();
        let d2: Vec<&Tally> = b
            .of_unit(&id("hg"), day("2026-12-02"), day("2026-12-02"))
            .collect();
        let d = model::indicator::Derivation::CameraAvailability;
        // 2 h online of 16 h seen.
        let f = tally::figure(&d, d2, t("2026-12-03T12:00:00+07:00"));
        assert_eq!(f, Some(12.5));
        // An old tally leaves the book with a tombstone for its key.
        let gone = b.expire(day("2026-12-02") + Duration::days(KEEP_DAYS + 1));
        assert_eq!(gone.len(), 1);
        assert_eq!(b.len(), 1);
    }

    #[test]
    fn the_days_worst_salinity_level_and_the_alerts_per_rule_add_up() {
        let mut b = TallyBook::default();
        let st = EntityId::parse("station:s1").unwrap();
        let units = [id("hg-vt")];
        let mut out = Vec::new();
        use model::salinity::SalinityLevel::*;
        let day: NaiveDate = "2026-03-01".parse().unwrap();
        b.add(
            &st,
            &units,
            day,
            Parts::Salinity { worst: Warning },
            &mut out,
        );
        let again = b.add(&st, &units, day, Parts::Salinity { worst: Watch }, &mut out);
        assert!(
            again.is_empty(),
            "a lower level later that day changes nothing"
        );
        let rule = id("salinity_warning");
        let one = || Parts::Alerts {
            raised: [(id("salinity_warning"), 1)].into_iter().collect(),
        };
        b.add(&st, &units, day, one(), &mut out);
        b.add(&st, &units, day, one(), &mut out);
        assert_eq!(out.len(), 3);
        let now = t("2026-03-02T00:00:00+07:00");
        let of = |d| tally::figure(&d, b.of_unit(&id("hg-vt"), day, day), now);
        assert_eq!(
            of(model::indicator::Derivation::SalinityWarningDays),
            Some(1.0)
        );
        assert_eq!(
            of(model::indicator::Derivation::AlertsRaised(rule)),
            Some(2.0)
        );
    }
}
