//! Daily tallies: what the core counts of its own streams per entity and Vietnam day (a
//! camera's time online, a station's hourly and daily VN_AQI or its worst salinity level, a
//! river's farthest 4‰ reach, the alerts raised about an entity per rule), and the figures of
//! the derived indicators a unit's tallies for a period give.
//!
//! Per entity, so each tally is kept by the one instance that owns its entity; per day, so a
//! period's figure is a fold of its days, a restart reads the days back, and a day that has
//! closed never changes again. Each tally names the units its entity lay in when it was
//! counted: a unit merged or redrawn mid-year keeps the days it had.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, Utc};
use serde::{Deserialize, Serialize};

use super::period::{vietnam, vietnam_date};
use super::Derivation;
use crate::aqi::Band;
use crate::salinity::SalinityLevel;
use crate::{EntityId, LocalId};

/// How many days of tallies are kept (a year of months, and the open one, with room).
pub const KEEP_DAYS: i64 = 400;

/// One entity's count for one Vietnam day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tally {
    pub entity: EntityId,
    pub day: NaiveDate,
    /// The units the entity lay in when it was counted, deepest first.
    pub units: Vec<LocalId>,
    pub parts: Parts,
}

/// What is counted, by the kind of entity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Parts {
    Camera(CameraTime),
    /// Hourly VN_AQI by Vietnam hour (0-23), and the day's VN_AQI once the day closed.
    Air {
        hourly: BTreeMap<u8, u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        daily: Option<u32>,
    },
    /// The day's worst salinity level.
    Salinity {
        worst: SalinityLevel,
    },
    /// The farthest inland the 4‰ line was seen that day, km from the mouth.
    River {
        reach_4_km: f64,
    },
    /// Alerts raised that day, per rule.
    Alerts {
        raised: BTreeMap<LocalId, u32>,
    },
}

impl Parts {
    /// Takes what a later observation of the same day counted: the worse level, the farther
    /// reach, more alerts, an hour's index (a recomputed one replaces it), the day's index;
    /// a camera's time as it now stands. Parts of another kind change nothing.
    pub fn absorb(&mut self, later: Parts) {
        match (self, later) {
            (Parts::Camera(c), Parts::Camera(n)) => *c = n,
            (
                Parts::Air { hourly, daily },
                Parts::Air {
                    hourly: h,
                    daily: d,
                },
            ) => {
                hourly.extend(h);
                *daily = d.or(*daily);
            }
            (Parts::Salinity { worst }, Parts::Salinity { worst: w }) => *worst = (*worst).max(w),
            (Parts::River { reach_4_km }, Parts::River { reach_4_km: k }) => {
                *reach_4_km = reach_4_km.max(k)
            }
            (Parts::Alerts { raised }, Parts::Alerts { raised: r }) => {
                for (rule, n) in r {
                    *raised.entry(rule).or_default() += n;
                }
            }
            _ => {}
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Parts::Camera(_) => "camera",
            Parts::Air { .. } => "air",
            Parts::Salinity { .. } => "salinity",
            Parts::River { .. } => "river",
            Parts::Alerts { .. } => "alerts",
        }
    }
}

impl Tally {
    /// The message key: one tally per entity, day and kind.
    pub fn key(&self) -> String {
        key(&self.entity, self.day, self.parts.kind())
    }
}

pub fn key(entity: &EntityId, day: NaiveDate, kind: &str) -> String {
    format!("{entity}/{day}/{kind}")
}

/// When a Vietnam day starts, in UTC.
pub fn day_start(day: NaiveDate) -> DateTime<Utc> {
    day.and_time(NaiveTime::MIN)
        .and_local_timezone(vietnam())
        .single()
        .map(|t| t.to_utc())
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// A camera's time in one day: accounted up to `upto`, and since then held `online` (as the
/// latest status said), so a figure read later adds the time since at that state.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CameraTime {
    pub online_s: i64,
    pub observed_s: i64,
    pub upto: DateTime<Utc>,
    pub online: bool,
}

impl CameraTime {
    /// (online, observed) seconds of `day` up to `now`, the held state counted on to `now`
    /// or the day's end, whichever is first.
    pub fn totals(&self, day: NaiveDate, now: DateTime<Utc>) -> (i64, i64) {
        let end = now.min(day_start(day) + Duration::days(1));
        let more = (end - self.upto).num_seconds().max(0);
        (
            self.online_s + if self.online { more } else { 0 },
            self.observed_s + more,
        )
    }
}

/// A camera's first tally: counted from `at`, in the state it was first seen in.
pub fn camera_start(
    entity: EntityId,
    units: Vec<LocalId>,
    at: DateTime<Utc>,
    online: bool,
) -> Tally {
    Tally {
        entity,
        day: vietnam_date(at),
        units,
        parts: Parts::Camera(CameraTime {
            online_s: 0,
            observed_s: 0,
            upto: at,
            online,
        }),
    }
}

/// A camera changed state (or a day began) at `at`: its latest tally `last` accounted up
/// to then (or to its day's end) at the state it held, and a tally for every day after it up
/// to `at`'s, the last holding `online`. Empty for a time before what `last` accounts.
pub fn camera_advance(
    last: &Tally,
    units: &[LocalId],
    at: DateTime<Utc>,
    online: bool,
) -> Vec<Tally> {
    let Parts::Camera(t) = last.parts else {
        return Vec::new();
    };
    if at < t.upto {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut day = last.day;
    let mut held = t;
    loop {
        let end = day_start(day) + Duration::days(1);
        let (on, seen) = held.totals(day, at);
        let last_day = at < end;
        let upto = if last_day { at } else { end };
        out.push(Tally {
            entity: last.entity.clone(),
            day,
            units: if day == last.day {
                last.units.clone()
            } else {
                units.to_vec()
            },
            parts: Parts::Camera(CameraTime {
                online_s: on,
                observed_s: seen,
                upto,
                online: if last_day { online } else { held.online },
            }),
        });
        if last_day {
            return out;
        }
        held = CameraTime {
            online_s: 0,
            observed_s: 0,
            upto: end,
            online: held.online,
        };
        day = day.succ_opt().unwrap_or(day);
    }
}

/// The figure of `derivation` from one unit's tallies for the days of one period, as at
/// `now`; `None` where nothing was counted (no camera, station or river in the unit), so the
/// page says "no data" rather than a false zero. Alerts count zero without tallies.
pub fn figure<'a>(
    derivation: &Derivation,
    tallies: impl IntoIterator<Item = &'a Tally>,
    now: DateTime<Utc>,
) -> Option<f64> {
    let tallies = tallies.into_iter();
    match derivation {
        Derivation::CameraAvailability => {
            let (mut on, mut seen) = (0i64, 0i64);
            for t in tallies {
                if let Parts::Camera(c) = &t.parts {
                    let (o, s) = c.totals(t.day, now);
                    on += o;
                    seen += s;
                }
            }
            (seen > 0).then(|| (1000.0 * on as f64 / seen as f64).round() / 10.0)
        }
        Derivation::AqiHours(band) => {
            let mut worst: BTreeMap<(NaiveDate, u8), u32> = BTreeMap::new();
            let mut any = false;
            for t in tallies {
                if let Parts::Air { hourly, .. } = &t.parts {
                    any = true;
                    for (h, aqi) in hourly {
                        let w = worst.entry((t.day, *h)).or_default();
                        *w = (*w).max(*aqi);
                    }
                }
            }
            any.then(|| worst.values().filter(|a| Band::of(**a) == *band).count() as f64)
        }
        Derivation::AqiDays(band) => {
            let mut worst: BTreeMap<NaiveDate, u32> = BTreeMap::new();
            let mut any = false;
            for t in tallies {
                if let Parts::Air { daily, .. } = &t.parts {
                    any = true;
                    if let Some(d) = daily {
                        let w = worst.entry(t.day).or_default();
                        *w = (*w).max(*d);
                    }
                }
            }
            any.then(|| worst.values().filter(|a| Band::of(**a) == *band).count() as f64)
        }
        Derivation::SalinityWarningDays => {
            let mut days: BTreeMap<NaiveDate, bool> = BTreeMap::new();
            for t in tallies {
                if let Parts::Salinity { worst } = &t.parts {
                    *days.entry(t.day).or_default() |= *worst == SalinityLevel::Warning;
                }
            }
            (!days.is_empty()).then(|| days.values().filter(|w| **w).count() as f64)
        }
        Derivation::SalinityReachMax => tallies
            .filter_map(|t| match &t.parts {
                Parts::River { reach_4_km } => Some(*reach_4_km),
                _ => None,
            })
            .fold(None, |m: Option<f64>, k| Some(m.map_or(k, |m| m.max(k)))),
        Derivation::AlertsRaised(rule) => Some(
            tallies
                .filter_map(|t| match &t.parts {
                    Parts::Alerts { raised } => raised.get(rule).copied(),
                    _ => None,
                })
                .sum::<u32>() as f64,
        ),
        Derivation::ReportsReceived
        | Derivation::ReportsResolved
        | Derivation::ReportsResolvedOnTime
        | Derivation::ReportsOverdue => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn cam() -> EntityId {
        EntityId::parse("camera:hg-cam-01").unwrap()
    }

    fn unit() -> Vec<LocalId> {
        vec![LocalId::parse("unit", "hg-vt").unwrap()]
    }

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn a_camera_offline_for_six_of_twenty_four_hours_was_available_75_percent() {
        // Seen online at midnight (Vietnam), offline 06:00-12:00, online again after.
        let first = camera_start(cam(), unit(), t("2026-12-02T00:00:00+07:00"), true);
        let at6 = camera_advance(&first, &unit(), t("2026-12-02T06:00:00+07:00"), false);
        assert_eq!(at6.len(), 1);
        let at12 = camera_advance(&at6[0], &unit(), t("2026-12-02T12:00:00+07:00"), true);
        let d = Derivation::CameraAvailability;
        // At noon: 6 h online of 12 h seen.
        assert_eq!(
            figure(&d, &at12, t("2026-12-02T12:00:00+07:00")),
            Some(50.0)
        );
        // Read at the end of the day, the held online state counts on: 18 of 24 h.
        assert_eq!(
            figure(&d, &at12, t("2026-12-03T09:00:00+07:00")),
            Some(75.0)
        );
    }

    #[test]
    fn a_status_days_later_closes_each_day_between_at_the_state_held() {
        let first = camera_start(cam(), unit(), t("2026-12-01T18:00:00+07:00"), false);
        let out = camera_advance(&first, &unit(), t("2026-12-03T06:00:00+07:00"), true);
        let days: Vec<NaiveDate> = out.iter().map(|t| t.day).collect();
        assert_eq!(
            days,
            [day("2026-12-01"), day("2026-12-02"), day("2026-12-03")]
        );
        let totals: Vec<(i64, i64)> = out
            .iter()
            .map(|x| match x.parts {
                Parts::Camera(c) => c.totals(x.day, t("2026-12-03T06:00:00+07:00")),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(totals, [(0, 6 * 3600), (0, 86_400), (0, 6 * 3600)]);
        let Parts::Camera(last) = out[2].parts else {
            unreachable!()
        };
        assert!(last.online, "from 06:00 the camera holds its new state");
        // An older status changes nothing.
        assert!(camera_advance(&out[2], &unit(), t("2026-12-03T05:00:00+07:00"), false).is_empty());
    }

    fn air(d: &str, hourly: &[(u8, u32)], daily: Option<u32>) -> Tally {
        Tally {
            entity: EntityId::parse("station:hg-kk-01").unwrap(),
            day: day(d),
            units: unit(),
            parts: Parts::Air {
                hourly: hourly.iter().copied().collect(),
                daily,
            },
        }
    }

    #[test]
    fn aqi_hours_and_days_count_the_worst_station_of_each_hour_and_day() {
        let mut other = air("2026-12-02", &[(8, 40), (9, 160)], Some(60));
        other.entity = EntityId::parse("station:hg-kk-02").unwrap();
        let tallies = [
            air("2026-12-02", &[(8, 120), (9, 130), (10, 45)], Some(110)),
            other,
            air("2026-12-03", &[(0, 101)], None),
        ];
        let now = t("2026-12-03T01:00:00+07:00");
        // Hour 8: worst 120 (poor); hour 9: worst 160 (bad); hour 10: good; day 3 hour 0: poor.
        assert_eq!(
            figure(&Derivation::AqiHours(Band::Poor), &tallies, now),
            Some(2.0)
        );
        assert_eq!(
            figure(&Derivation::AqiHours(Band::Bad), &tallies, now),
            Some(1.0)
        );
        assert_eq!(
            figure(&Derivation::AqiHours(Band::Good), &tallies, now),
            Some(1.0)
        );
        // Day 2: worst daily 110 (poor); day 3 has no daily index yet.
        assert_eq!(
            figure(&Derivation::AqiDays(Band::Poor), &tallies, now),
            Some(1.0)
        );
        assert_eq!(
            figure(&Derivation::AqiDays(Band::Good), &tallies, now),
            Some(0.0)
        );
        // A unit with no air station has no figure, not zero hours.
        assert_eq!(figure(&Derivation::AqiHours(Band::Poor), &[], now), None);
    }

    #[test]
    fn salinity_days_count_each_day_once_and_the_reach_is_the_farthest() {
        let sal = |d: &str, s: &str, worst| Tally {
            entity: EntityId::parse(&format!("station:{s}")).unwrap(),
            day: day(d),
            units: unit(),
            parts: Parts::Salinity { worst },
        };
        let river = |d: &str, km| Tally {
            entity: EntityId::parse("river:cai-lon").unwrap(),
            day: day(d),
            units: unit(),
            parts: Parts::River { reach_4_km: km },
        };
        let tallies = [
            sal("2026-03-01", "a", SalinityLevel::Warning),
            sal("2026-03-01", "b", SalinityLevel::Warning),
            sal("2026-03-02", "a", SalinityLevel::Watch),
            sal("2026-03-03", "b", SalinityLevel::Warning),
            river("2026-03-01", 31.5),
            river("2026-03-02", 44.25),
        ];
        let now = t("2026-03-04T00:00:00+07:00");
        assert_eq!(
            figure(&Derivation::SalinityWarningDays, &tallies, now),
            Some(2.0)
        );
        assert_eq!(
            figure(&Derivation::SalinityReachMax, &tallies, now),
            Some(44.25)
        );
        assert_eq!(
            figure(&Derivation::SalinityReachMax, &tallies[..4], now),
            None
        );
    }

    #[test]
    fn alerts_count_per_rule_and_zero_without_any() {
        let rule = LocalId::parse("rule", "salinity_warning").unwrap();
        let a = Tally {
            entity: EntityId::parse("station:a").unwrap(),
            day: day("2026-03-01"),
            units: unit(),
            parts: Parts::Alerts {
                raised: [
                    (rule.clone(), 2),
                    (LocalId::parse("rule", "stale").unwrap(), 5),
                ]
                .into_iter()
                .collect(),
            },
        };
        let now = t("2026-03-04T00:00:00+07:00");
        assert_eq!(
            figure(&Derivation::AlertsRaised(rule.clone()), [&a, &a], now),
            Some(4.0)
        );
        assert_eq!(figure(&Derivation::AlertsRaised(rule), [], now), Some(0.0));
    }

    #[test]
    fn derivations_read_and_write_as_words_and_bad_ones_are_named() {
        for w in [
            "reports_received",
            "camera_availability",
            "aqi_hours:poor",
            "aqi_days:very_bad",
            "salinity_warning_days",
            "salinity_reach_max",
            "alerts_raised:salinity_warning",
        ] {
            let d = Derivation::parse("derive", w).unwrap();
            assert_eq!(d.to_string(), w);
            let json: Derivation = serde_json::from_value(serde_json::json!(w)).unwrap();
            assert_eq!(json, d);
        }
        let e = Derivation::parse("derive", "aqi_hours:smoky").unwrap_err();
        assert!(e.reason.contains("not a VN_AQI band"), "{e}");
        assert!(Derivation::parse("derive", "aqi_hours").is_err());
        assert!(Derivation::parse("derive", "camera_availability:x").is_err());
        let e = Derivation::parse("derive", "rainfall").unwrap_err();
        assert!(e.reason.contains("camera_availability"), "{e}");
    }

    #[test]
    fn a_tally_round_trips_and_keys_by_entity_day_and_kind() {
        let t0 = camera_start(cam(), unit(), t("2026-12-02T00:00:00+07:00"), true);
        assert_eq!(t0.key(), "camera:hg-cam-01/2026-12-02/camera");
        let back: Tally = serde_json::from_value(serde_json::to_value(&t0).unwrap()).unwrap();
        assert_eq!(back, t0);
    }
}
