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

/// Where a tally sits: its day and kind, under its entity.
type Slot = (NaiveDate, &'static str);

#[derive(Debug, Default)]
pub struct TallyBook {
    /// Per entity (looked up by reference: the hot path allocates nothing), per day and kind.
    tallies: HashMap<EntityId, BTreeMap<Slot, Tally>>,
    count: usize,
    /// The tallies per unit and day.
    by_unit: HashMap<LocalId, BTreeMap<NaiveDate, BTreeSet<(EntityId, &'static str)>>>,
    /// Each camera's latest day with a tally (its time runs on there).
    camera_day: HashMap<EntityId, NaiveDate>,
}

/// The kinds, as `'static` names (a key read from the topic names one of them).
const KINDS: [&str; 5] = ["camera", "air", "salinity", "river", "alerts"];

impl TallyBook {
    pub fn len(&self) -> usize {
        self.count
    }

    /// Takes a tally (its own, or another instance's from the topic); the (unit, day)s it
    /// moves, empty when it was held already.
    pub fn put(&mut self, t: Tally) -> Days {
        let slot = (t.day, t.parts.kind());
        if self.get(&t.entity, slot.0, slot.1) == Some(&t) {
            return Days::new();
        }
        let mut days = self.unindex(&t.entity, slot);
        for u in &t.units {
            self.by_unit
                .entry(u.clone())
                .or_default()
                .entry(t.day)
                .or_default()
                .insert((t.entity.clone(), slot.1));
            days.insert((u.clone(), t.day));
        }
        if matches!(t.parts, Parts::Camera(_)) {
            let d = self.camera_day.entry(t.entity.clone()).or_insert(t.day);
            *d = (*d).max(t.day);
        }
        let held = self.tallies.entry(t.entity.clone()).or_default();
        if held.insert(slot, t).is_none() {
            self.count += 1;
        }
        days
    }

    /// A tally gone from the topic (a tombstone of its key, `{entity}/{day}/{kind}`).
    pub fn remove(&mut self, key: &str) -> Days {
        let mut parts = key.rsplitn(3, '/');
        let (Some(kind), Some(day), Some(entity)) = (parts.next(), parts.next(), parts.next())
        else {
            return Days::new();
        };
        let (Some(kind), Ok(day), Ok(entity)) = (
            KINDS.into_iter().find(|k| *k == kind),
            day.parse::<NaiveDate>(),
            EntityId::parse(entity),
        ) else {
            return Days::new();
        };
        self.drop_slot(&entity, (day, kind))
    }

    fn drop_slot(&mut self, entity: &EntityId, slot: Slot) -> Days {
        let days = self.unindex(entity, slot);
        let Some(held) = self.tallies.get_mut(entity) else {
            return days;
        };
        if held.remove(&slot).is_some() {
            self.count -= 1;
            if self.camera_day.get(entity) == Some(&slot.0) && slot.1 == "camera" {
                self.camera_day.remove(entity);
            }
        }
        if held.is_empty() {
            self.tallies.remove(entity);
        }
        days
    }

    fn unindex(&mut self, entity: &EntityId, slot: Slot) -> Days {
        let mut days = Days::new();
        let Some(old) = self.tallies.get(entity).and_then(|h| h.get(&slot)) else {
            return days;
        };
        for u in &old.units {
            if let Some(at) = self.by_unit.get_mut(u).and_then(|d| d.get_mut(&old.day)) {
                at.remove(&(entity.clone(), slot.1));
            }
            days.insert((u.clone(), old.day));
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
            .flat_map(|(day, at)| at.iter().map(move |(e, kind)| (e, *day, *kind)))
            .filter_map(|(e, day, kind)| self.get(e, day, kind))
    }

    /// Every (unit, day) with a tally.
    pub fn all_days(&self) -> Days {
        self.by_unit
            .iter()
            .flat_map(|(u, d)| d.keys().map(move |day| (u.clone(), *day)))
            .collect()
    }

    fn get(&self, entity: &EntityId, day: NaiveDate, kind: &str) -> Option<&Tally> {
        let kind = KINDS.into_iter().find(|k| *k == kind)?;
        self.tallies.get(entity)?.get(&(day, kind))
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
                // Most observations change nothing (the same level again): known before
                // anything is cloned but the parts.
                let mut merged = held.parts.clone();
                merged.absorb(parts);
                if merged == held.parts {
                    return Days::new();
                }
                let mut t = held.clone();
                t.parts = merged;
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

    /// The camera's latest tally (its time runs on there).
    pub fn camera_latest(&self, entity: &EntityId) -> Option<&Tally> {
        let day = self.camera_day.get(entity)?;
        self.get(entity, *day, "camera")
    }

    /// Whether the camera's time is counted yet.
    pub fn has_camera(&self, entity: &EntityId) -> bool {
        self.camera_day.contains_key(entity)
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
        let old: Vec<(EntityId, Slot)> = self
            .tallies
            .iter()
            .flat_map(|(e, held)| {
                held.keys()
                    .take_while(|(day, _)| *day < oldest)
                    .map(move |slot| (e.clone(), *slot))
            })
            .collect();
        old.into_iter()
            .map(|(entity, slot)| {
                self.drop_slot(&entity, slot);
                Effect::TallyGone {
                    key: tally::key(&entity, slot.0, slot.1),
                    owner: entity,
                }
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
        // A tombstone read from the topic takes the tally out by its key.
        let moved = b.remove(&tally::key(&cam, day("2026-12-03"), "camera"));
        assert_eq!(moved.len(), 2, "both units' day moves");
        assert_eq!(b.len(), 0);
        assert!(b.cameras().is_empty());
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
