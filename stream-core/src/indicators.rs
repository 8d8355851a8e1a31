//! The indicator book: every value reported on `ioc.indicators` with its revisions, the
//! targets and the explanations, and from them one record per indicator and unit on the
//! `indicators` layer: the latest periods' figures (reported, or rolled up from the units
//! under it by the indicator's rule), each against its target, with completeness, the
//! revisions of the latest value, explanations, and the periods past their deadline with no
//! figure.
//!
//! Every instance folds the whole topic (it is the record of truth, like the reports'); each
//! record is published by the owner of its indicator's key (`indicator:{code}`), the key its
//! events travel under. Pure: the caller passes the registry and the time.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, NaiveDate, Utc};
use model::indicator::rollup::{figure, Figure, Figures};
use model::indicator::target::{target_for, Judgement};
use model::indicator::{
    period::vietnam_date, Basis, Explanation, Indicator, IndicatorEvent, Period, Revision, Source,
    Status, Target, Tier, Value,
};
use model::{Directory, EntityId, FieldError, Layer, LocalId, StateRecord};

use crate::alerts::Observation;
use serde_json::{json, Map};

/// How many periods a record carries, for a sparkline.
pub const SERIES_LEN: usize = 12;

/// Days after a period closes before its value is missing, when the indicator sets none.
pub const DEFAULT_GRACE_DAYS: u32 = 10;

/// The revisions of one value, oldest first (the last is the value in force).
#[derive(Debug, Clone, Default)]
struct Entry {
    revisions: Vec<Revision>,
}

impl Entry {
    fn value(&self) -> Option<f64> {
        self.revisions.last().map(|r| r.value)
    }
}

type Key = (LocalId, LocalId, Period);

#[derive(Default)]
pub struct IndicatorBook {
    values: HashMap<Key, Entry>,
    /// Targets per indicator.
    targets: HashMap<LocalId, Vec<Target>>,
    explanations: HashMap<Key, Vec<Explanation>>,
    /// Figures the core derives from its own streams (no revisions: the streams are the
    /// record).
    derived: HashMap<Key, f64>,
    /// Units with any value per indicator (the series that exist), for start-up.
    reported_units: HashMap<LocalId, BTreeSet<LocalId>>,
}

/// What a change touched: these (indicator, unit) series must be published again.
pub type Touched = BTreeSet<(LocalId, LocalId)>;

impl IndicatorBook {
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Sets a derived figure; the series it moves when it changed.
    pub fn set_derived(
        &mut self,
        dir: &Directory,
        code: &LocalId,
        unit: &LocalId,
        period: Period,
        value: f64,
    ) -> Touched {
        let key = (code.clone(), unit.clone(), period);
        if self.derived.get(&key) == Some(&value) {
            return Touched::new();
        }
        self.derived.insert(key, value);
        self.reported_units
            .entry(code.clone())
            .or_default()
            .insert(unit.clone());
        self.affected(dir, code, unit)
    }

    /// The units with figures, targets or explanations of `code`.
    pub fn series_of(&self, code: &LocalId) -> Vec<LocalId> {
        self.reported_units
            .get(code)
            .map(|u| u.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Applies one event: `Err` names what is wrong with it (for its dead letter). A value
    /// equal to the one in force (a replayed submission) changes nothing.
    pub fn apply(
        &mut self,
        dir: &Directory,
        event: IndicatorEvent,
    ) -> Result<Touched, Vec<FieldError>> {
        let code = event.indicator().clone();
        let ind = dir.indicators.get(&code).ok_or_else(|| {
            vec![FieldError::new(
                "indicator",
                format!("{code} is not in the catalogue"),
            )]
        })?;
        let unit_of = |u: &LocalId| {
            dir.units.get(u).map(|_| ()).ok_or_else(|| {
                vec![FieldError::new(
                    "unit",
                    format!("{u} is not a unit in the registry"),
                )]
            })
        };
        let mut touched = Touched::new();
        match event {
            IndicatorEvent::Value(v) => {
                unit_of(&v.unit)?;
                check_period(ind, &v.period).map_err(|e| vec![e])?;
                if !v.value.is_finite() {
                    return Err(vec![FieldError::new("value", "must be a finite number")]);
                }
                if self.record_value(v.clone()) {
                    touched.extend(self.affected(dir, &code, &v.unit));
                }
            }
            IndicatorEvent::Target(t) => {
                unit_of(&t.unit)?;
                t.check(ind).map_err(|i| i.errors)?;
                let list = self.targets.entry(code.clone()).or_default();
                list.retain(|o| !(o.unit == t.unit && o.period == t.period));
                let unit = t.unit.clone();
                list.push(t);
                touched.insert((code.clone(), unit.clone()));
                self.reported_units.entry(code).or_default().insert(unit);
            }
            IndicatorEvent::Explanation(e) => {
                unit_of(&e.unit)?;
                check_period(ind, &e.period).map_err(|e| vec![e])?;
                let key = (code.clone(), e.unit.clone(), e.period);
                let list = self.explanations.entry(key).or_default();
                if !list.contains(&e) {
                    touched.insert((code.clone(), e.unit.clone()));
                    self.reported_units
                        .entry(code)
                        .or_default()
                        .insert(e.unit.clone());
                    list.push(e);
                }
            }
        }
        Ok(touched)
    }

    /// Records a value as a new revision; false when it changes nothing.
    fn record_value(&mut self, v: Value) -> bool {
        let key = (v.indicator.clone(), v.unit.clone(), v.period);
        let entry = self.values.entry(key).or_default();
        let previous = entry.value();
        if previous == Some(v.value) {
            return false;
        }
        entry.revisions.push(Revision {
            value: v.value,
            previous,
            by: v.by,
            at: v.at,
            note: v.note,
        });
        self.reported_units
            .entry(v.indicator)
            .or_default()
            .insert(v.unit);
        true
    }

    /// The series a change of `code` at `unit` moves: that unit and every unit above it, for
    /// `code` and for every indicator whose roll-up reads `code`.
    fn affected(&self, dir: &Directory, code: &LocalId, unit: &LocalId) -> Touched {
        let mut codes = vec![code.clone()];
        let mut i = 0;
        while i < codes.len() && i < 32 {
            let c = codes[i].clone();
            for other in dir.indicators.values() {
                if other.rollup.inputs().contains(&&c) && !codes.contains(&other.code) {
                    codes.push(other.code.clone());
                }
            }
            i += 1;
        }
        let chain = ancestry(dir, unit);
        codes
            .iter()
            .flat_map(|c| chain.iter().map(move |u| (c.clone(), u.clone())))
            .collect()
    }

    /// Every series there is: each reported unit of each indicator and the units above it.
    pub fn all_series(&self, dir: &Directory) -> Touched {
        let mut out = Touched::new();
        for ind in dir.indicators.values() {
            let direct: Vec<LocalId> = self
                .reported_units
                .get(&ind.code)
                .into_iter()
                .flatten()
                .cloned()
                .collect();
            let mut units: Vec<LocalId> = direct;
            // A derived (roll-up) indicator has figures wherever its inputs do.
            for input in ind.rollup.inputs() {
                units.extend(
                    self.reported_units
                        .get(input)
                        .into_iter()
                        .flatten()
                        .cloned(),
                );
            }
            for u in units {
                for a in ancestry(dir, &u) {
                    out.insert((ind.code.clone(), a));
                }
            }
        }
        out
    }

    /// The record of `code` at `unit` as of `now`: `None` when the indicator or the unit is
    /// gone (the caller tombstones it).
    pub fn record(
        &self,
        dir: &Directory,
        code: &LocalId,
        unit: &LocalId,
        now: DateTime<Utc>,
    ) -> Option<StateRecord> {
        let ind = dir.indicators.get(code)?;
        let u = dir.units.get(unit)?;
        let view = View { book: self, dir };
        let today = vietnam_date(now);
        let current = Period::containing(today, ind.frequency, ind.basis);
        let targets = self.targets.get(code).map(Vec::as_slice).unwrap_or(&[]);
        let unit_targets: Vec<&Target> = targets.iter().filter(|t| &t.unit == unit).collect();
        let grace = ind.grace_days(DEFAULT_GRACE_DAYS);
        // A derived figure (or a ratio of derived ones) is the core's own: never missing,
        // only zero; the others are missing where the unit reports them.
        let computed = ind.derive.is_some()
            || (!ind.rollup.inputs().is_empty()
                && ind
                    .rollup
                    .inputs()
                    .iter()
                    .all(|c| dir.indicators.get(*c).is_some_and(|i| i.derive.is_some())));
        let reports_here = !computed && ind.levels.contains(&Tier::of_level(&u.level));
        let mut series = Vec::with_capacity(SERIES_LEN);
        let mut missing = Vec::new();
        let mut latest: Option<(Period, Figure, Judgement)> = None;
        let mut last_due = None;
        // A tallied figure is the unit's own, from its own cameras and stations: there is no
        // "units reported of those expected" to count.
        let tallied = ind.derive.as_ref().is_some_and(|d| d.is_tallied());
        for p in current.last_n(SERIES_LEN) {
            let mut f = figure(&view, code, unit, &p);
            if tallied {
                (f.reported, f.expected) = (0, 0);
            }
            let judged = match (f.value, target_for(unit_targets.iter().copied(), ind, &p)) {
                (Some(v), Some(t)) => t.judge(ind, &p, v),
                // No figure: no status, but the (pro-rated) target the period is held to.
                (None, Some(t)) => Judgement {
                    status: Status::NoTarget,
                    expected: t.judge(ind, &p, 0.0).expected,
                },
                (_, None) => Judgement {
                    status: Status::NoTarget,
                    expected: None,
                },
            };
            if p.deadline(ind.basis, grace) < today {
                last_due = Some(p.to_string());
                if f.value.is_none() && reports_here {
                    missing.push(p.to_string());
                }
            }
            series.push(json!({
                "period": p.to_string(),
                "value": f.value,
                "origin": f.origin,
                "status": judged.status,
                "target": judged.expected,
                "reported": f.reported,
                "expected": f.expected,
                "completeness": f.completeness(),
            }));
            if f.value.is_some() {
                latest = Some((p, f, judged));
            }
        }
        let mut properties = Map::new();
        properties.insert("name".into(), ind.name.clone().into());
        properties.insert("indicator".into(), code.to_string().into());
        properties.insert("unit".into(), unit.to_string().into());
        properties.insert("unit_name".into(), u.name.clone().into());
        properties.insert("tier".into(), json!(Tier::of_level(&u.level)));
        properties.insert("sector".into(), json!(ind.sector));
        properties.insert("measure".into(), ind.measure.clone().into());
        properties.insert("frequency".into(), json!(ind.frequency));
        properties.insert("direction".into(), json!(ind.direction));
        properties.insert("cumulative".into(), ind.cumulative.into());
        properties.insert("agency".into(), ind.agency.to_string().into());
        properties.insert("public".into(), ind.public.into());
        properties.insert("current_period".into(), current.to_string().into());
        let mut updated = None;
        match &latest {
            Some((p, f, j)) => {
                let key = (code.clone(), unit.clone(), *p);
                let revisions = self
                    .values
                    .get(&key)
                    .map(|e| e.revisions.clone())
                    .unwrap_or_default();
                updated = revisions.last().map(|r| r.at);
                properties.insert(
                    "latest".into(),
                    json!({
                        "period": p.to_string(),
                        "value": f.value,
                        "origin": f.origin,
                        "status": j.status,
                        "target": j.expected,
                        "completeness": f.completeness(),
                        "reported": f.reported,
                        "expected": f.expected,
                        "revisions": revisions,
                    }),
                );
                properties.insert("status".into(), json!(j.status));
            }
            None => {
                properties.insert("latest".into(), serde_json::Value::Null);
                properties.insert("status".into(), json!(Status::NoTarget));
            }
        }
        properties.insert("series".into(), series.into());
        properties.insert("missing".into(), missing.into());
        properties.insert("last_due".into(), last_due.into());
        let explanations: BTreeMap<String, &Vec<Explanation>> = self
            .explanations
            .iter()
            .filter(|((c, un, _), _)| c == code && un == unit)
            .map(|((_, _, p), e)| (p.to_string(), e))
            .collect();
        properties.insert("explanations".into(), json!(explanations));
        let bbox = model::state::geometry_bbox(&u.geometry.0).unwrap_or([0.0; 4]);
        let centre = [(bbox[0] + bbox[2]) / 2.0, (bbox[1] + bbox[3]) / 2.0];
        Some(StateRecord {
            entity: EntityId::series(code, unit),
            layer: Layer::Indicators,
            geometry: geojson::Geometry::new(geojson::Value::Point(centre.to_vec())),
            bbox: [centre[0], centre[1], centre[0], centre[1]],
            units: ancestry(dir, unit),
            updated,
            properties,
            applied: Default::default(),
            core: serde_json::Value::Null,
        })
    }
}

/// Where a unit's figures are shown: the centre of its bounding box, and its ancestry.
pub fn place(dir: &Directory, unit: &LocalId) -> Option<((f64, f64), Vec<LocalId>)> {
    let u = dir.units.get(unit)?;
    let bbox = model::state::geometry_bbox(&u.geometry.0).unwrap_or([0.0; 4]);
    Some((
        ((bbox[0] + bbox[2]) / 2.0, (bbox[1] + bbox[3]) / 2.0),
        ancestry(dir, unit),
    ))
}

/// The indicator rules on one series' record: `indicator_off_target` while its latest
/// figure misses its target, `indicator_missing` while a period the unit reports is past its
/// deadline with no figure, `indicator_explanation` while an explanation asked for is not
/// given. All go to the indicator's owning agency.
pub fn observations(rec: &StateRecord) -> Vec<Observation> {
    let p = &rec.properties;
    let text = |k: &str| {
        p.get(k)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string()
    };
    let agency = LocalId::parse("agency", &text("agency")).ok();
    let name = format!("{} – {}", text("name"), text("unit_name"));
    let latest = p.get("latest").filter(|l| !l.is_null());
    let missed = latest.is_some_and(|l| l["status"] == "missed");
    let mut off = Observation::new(
        "indicator_off_target",
        rec.entity.clone(),
        name.clone(),
        agency.clone(),
        missed,
    );
    if let Some(l) = latest {
        let (value, target) = (l["value"].as_f64(), l["target"].as_f64());
        off.value = value;
        off.title = format!("Chỉ tiêu không đạt: {name}");
        off.detail = format!(
            "Kỳ {}: {} {} (chỉ tiêu {} {})",
            l["period"].as_str().unwrap_or_default(),
            value.map(vn_number).unwrap_or_default(),
            text("measure"),
            target.map(vn_number).unwrap_or_else(|| "—".into()),
            text("measure"),
        );
    }
    let overdue: Vec<&str> = p
        .get("missing")
        .and_then(|m| m.as_array())
        .map(|m| m.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    // Only the newest period past its deadline counts: a unit that never reported a long
    // series raises one alert, not one per period, and it clears once that period is in.
    let last_due = p.get("last_due").and_then(|v| v.as_str());
    let due_missing = last_due.filter(|d| overdue.contains(d));
    let mut missing = Observation::new(
        "indicator_missing",
        rec.entity.clone(),
        name.clone(),
        agency,
        due_missing.is_some(),
    );
    missing.severity = model::alert::Severity::Info;
    if let Some(due) = due_missing {
        missing.title = format!("Chưa báo cáo chỉ tiêu: {name}");
        missing.detail = format!("Kỳ {due} đã quá hạn báo cáo");
    }
    // A leader asked for an explanation that the agency has not given yet: the newest step
    // of some period is a request.
    let asked: Vec<String> = p
        .get("explanations")
        .and_then(|e| e.as_object())
        .map(|by_period| {
            by_period
                .iter()
                .filter(|(_, steps)| {
                    steps
                        .as_array()
                        .and_then(|s| s.last())
                        .is_some_and(|last| last["step"] == "request")
                })
                .map(|(period, _)| period.clone())
                .collect()
        })
        .unwrap_or_default();
    let mut explain = Observation::new(
        "indicator_explanation",
        rec.entity.clone(),
        name.clone(),
        agency_of(rec),
        !asked.is_empty(),
    );
    explain.severity = model::alert::Severity::Info;
    if !asked.is_empty() {
        explain.title = format!("Đề nghị giải trình: {name}");
        explain.detail = format!("Kỳ {} chờ đơn vị giải trình", asked.join(", "));
    }
    vec![off, missing, explain]
}

fn agency_of(rec: &StateRecord) -> Option<LocalId> {
    rec.properties
        .get("agency")
        .and_then(|a| a.as_str())
        .and_then(|a| LocalId::parse("agency", a).ok())
}

/// A figure as Vietnamese write it: `,` for decimals, `.` between thousands.
fn vn_number(v: f64) -> String {
    let rounded = (v * 100.0).round() / 100.0;
    let s = format!("{rounded}");
    let (int, frac) = s.split_once('.').unwrap_or((&s, ""));
    let (sign, digits) = int.strip_prefix('-').map_or(("", int), |d| ("-", d));
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push('.');
        }
        grouped.push(c);
    }
    if frac.is_empty() {
        format!("{sign}{grouped}")
    } else {
        format!("{sign}{grouped},{frac}")
    }
}

/// A value's period must be of its indicator's frequency.
fn check_period(ind: &Indicator, p: &Period) -> Result<(), FieldError> {
    if p.frequency() != ind.frequency {
        return Err(FieldError::new(
            "period",
            format!(
                "{p} is a {} period; {} is reported by {} (e.g. {})",
                p.frequency(),
                ind.code,
                ind.frequency,
                ind.frequency.example()
            ),
        ));
    }
    Ok(())
}

/// `unit` and the units above it, deepest first.
fn ancestry(dir: &Directory, unit: &LocalId) -> Vec<LocalId> {
    let mut chain = vec![unit.clone()];
    let mut cur = dir.units.get(unit).and_then(|u| u.parent.clone());
    while let Some(p) = cur {
        if chain.contains(&p) || chain.len() > 16 {
            break;
        }
        cur = dir.units.get(&p).and_then(|u| u.parent.clone());
        chain.push(p);
    }
    chain
}

/// The book and the registry as the roll-up reads them.
struct View<'a> {
    book: &'a IndicatorBook,
    dir: &'a Directory,
}

impl Figures for View<'_> {
    fn indicator(&self, code: &LocalId) -> Option<&Indicator> {
        self.dir.indicators.get(code)
    }

    fn reported(&self, code: &LocalId, unit: &LocalId, period: &Period) -> Option<f64> {
        let key = (code.clone(), unit.clone(), *period);
        // A derived indicator's figure is the core's alone: a value on the topic for it (sent
        // before intake refused them, or by another producer) never stands in for it.
        if self
            .dir
            .indicators
            .get(code)
            .is_some_and(|i| i.source == Source::Derived)
        {
            return self.book.derived.get(&key).copied();
        }
        self.book
            .values
            .get(&key)
            .and_then(Entry::value)
            .or_else(|| self.book.derived.get(&key).copied())
    }

    fn children(&self, unit: &LocalId, period: &Period, basis: Basis) -> Vec<LocalId> {
        let (first, last): (NaiveDate, NaiveDate) = period.dates(basis);
        let mut out: Vec<LocalId> = self
            .dir
            .units
            .values()
            .filter(|u| u.parent.as_ref() == Some(unit) && u.existed_during(first, last))
            .map(|u| u.id.clone())
            .collect();
        out.sort();
        out
    }

    fn tier(&self, unit: &LocalId) -> Option<Tier> {
        self.dir.units.get(unit).map(|u| Tier::of_level(&u.level))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::{AdminUnit, RegistryEntry};

    fn id(s: &str) -> LocalId {
        LocalId::parse("id", s).unwrap()
    }

    fn unit(code: &str, level: &str, parent: Option<&str>) -> AdminUnit {
        let g = json!({"type": "Polygon", "coordinates": [[[105.4, 9.7], [105.5, 9.7], [105.5, 9.8], [105.4, 9.7]]]});
        AdminUnit {
            id: id(code),
            name: format!("Đơn vị {code}"),
            level: level.into(),
            parent: parent.map(id),
            geometry: serde_json::from_value(g).unwrap(),
            approximate: true,
            valid_from: None,
            valid_to: None,
        }
    }

    fn dir() -> Directory {
        let mut d = Directory::default();
        d.upsert(RegistryEntry::Unit(unit("hg", "tỉnh", None)));
        d.upsert(RegistryEntry::Unit(unit("hg-vt", "thành phố", Some("hg"))));
        d.upsert(RegistryEntry::Unit(unit("hg-nb", "thành phố", Some("hg"))));
        for (code, rollup) in [
            ("hs-nhan", json!({"rollup": "sum"})),
            ("hs-dunghan", json!({"rollup": "sum"})),
            ("hs-giaiquyet", json!({"rollup": "sum"})),
            (
                "hs-tyle",
                json!({"rollup": "ratio", "numerator": "hs-dunghan", "denominator": "hs-giaiquyet"}),
            ),
        ] {
            let mut j = json!({
                "code": code, "name": "Hồ sơ", "sector": "public_administration", "measure": "hồ sơ",
                "frequency": "month", "levels": ["district"], "direction": "higher_is_better",
                "agency": "hg-stttt", "source": "pushed"
            });
            j.as_object_mut()
                .unwrap()
                .extend(rollup.as_object().unwrap().clone());
            d.upsert(RegistryEntry::Indicator(serde_json::from_value(j).unwrap()));
        }
        d
    }

    fn value(code: &str, unit: &str, period: &str, v: f64, at: &str) -> IndicatorEvent {
        IndicatorEvent::Value(Value {
            indicator: id(code),
            unit: id(unit),
            period: period.parse().unwrap(),
            value: v,
            note: None,
            by: "agency:hg-stttt".into(),
            at: DateTime::parse_from_rfc3339(at).unwrap(),
        })
    }

    fn now() -> DateTime<Utc> {
        "2026-12-02T03:00:00Z".parse().unwrap()
    }

    #[test]
    fn a_value_moves_its_unit_and_the_province_and_the_rate_that_reads_it() {
        let d = dir();
        let mut b = IndicatorBook::default();
        let t = b
            .apply(
                &d,
                value(
                    "hs-dunghan",
                    "hg-vt",
                    "202611",
                    99.0,
                    "2026-11-20T10:00:00+07:00",
                ),
            )
            .unwrap();
        let want: Touched = [
            ("hs-dunghan", "hg-vt"),
            ("hs-dunghan", "hg"),
            ("hs-tyle", "hg-vt"),
            ("hs-tyle", "hg"),
        ]
        .iter()
        .map(|(c, u)| (id(c), id(u)))
        .collect();
        assert_eq!(t, want);
        b.apply(
            &d,
            value(
                "hs-giaiquyet",
                "hg-vt",
                "202611",
                100.0,
                "2026-11-20T10:00:00+07:00",
            ),
        )
        .unwrap();
        b.apply(
            &d,
            value(
                "hs-dunghan",
                "hg-nb",
                "202611",
                45.0,
                "2026-11-20T10:00:00+07:00",
            ),
        )
        .unwrap();
        b.apply(
            &d,
            value(
                "hs-giaiquyet",
                "hg-nb",
                "202611",
                50.0,
                "2026-11-20T10:00:00+07:00",
            ),
        )
        .unwrap();
        let r = b.record(&d, &id("hs-tyle"), &id("hg"), now()).unwrap();
        assert_eq!(r.entity.as_str(), "series:hs-tyle@hg");
        assert_eq!(r.layer, Layer::Indicators);
        let latest = &r.properties["latest"];
        assert_eq!(latest["period"], "202611");
        assert!((latest["value"].as_f64().unwrap() - 144.0 / 150.0 * 100.0).abs() < 1e-9);
        assert_eq!(latest["origin"], "rolled_up");
        assert_eq!(latest["completeness"], 1.0);
        assert_eq!(r.units, vec![id("hg")]);
    }

    #[test]
    fn a_correction_keeps_its_revision_and_a_replay_changes_nothing() {
        let d = dir();
        let mut b = IndicatorBook::default();
        let first = value(
            "hs-nhan",
            "hg-vt",
            "202611",
            120.0,
            "2026-11-20T10:00:00+07:00",
        );
        assert!(!b.apply(&d, first.clone()).unwrap().is_empty());
        assert!(
            b.apply(&d, first).unwrap().is_empty(),
            "a replay changes nothing"
        );
        let fixed = value(
            "hs-nhan",
            "hg-vt",
            "202611",
            126.0,
            "2026-11-21T09:00:00+07:00",
        );
        assert!(!b.apply(&d, fixed).unwrap().is_empty());
        let r = b.record(&d, &id("hs-nhan"), &id("hg-vt"), now()).unwrap();
        let revs = r.properties["latest"]["revisions"].as_array().unwrap();
        assert_eq!(revs.len(), 2);
        assert_eq!(revs[1]["value"], 126.0);
        assert_eq!(revs[1]["previous"], 120.0);
        assert_eq!(r.properties["latest"]["value"], 126.0);
    }

    #[test]
    fn bad_events_name_the_field_and_change_nothing() {
        let d = dir();
        let mut b = IndicatorBook::default();
        let e = b
            .apply(
                &d,
                value("nope", "hg-vt", "202611", 1.0, "2026-11-20T10:00:00+07:00"),
            )
            .unwrap_err();
        assert_eq!(e[0].field, "indicator");
        let e = b
            .apply(
                &d,
                value(
                    "hs-nhan",
                    "hg-xx",
                    "202611",
                    1.0,
                    "2026-11-20T10:00:00+07:00",
                ),
            )
            .unwrap_err();
        assert_eq!(e[0].field, "unit");
        let e = b
            .apply(
                &d,
                value(
                    "hs-nhan",
                    "hg-vt",
                    "2026Q4",
                    1.0,
                    "2026-11-20T10:00:00+07:00",
                ),
            )
            .unwrap_err();
        assert_eq!(e[0].field, "period");
        assert!(e[0].reason.contains("month"), "{}", e[0].reason);
        assert_eq!(b.len(), 0);
    }

    #[test]
    fn targets_judge_and_missing_periods_are_listed_past_their_deadline() {
        let d = dir();
        let mut b = IndicatorBook::default();
        // Vị Thanh reported October, not November; the deadline for November is 10 December,
        // for October 10 November: on 2 December only... October is reported, so none.
        b.apply(
            &d,
            value(
                "hs-nhan",
                "hg-vt",
                "202610",
                90.0,
                "2026-10-20T10:00:00+07:00",
            ),
        )
        .unwrap();
        b.apply(
            &d,
            IndicatorEvent::Target(Target {
                indicator: id("hs-nhan"),
                unit: id("hg-vt"),
                period: "202610".parse().unwrap(),
                value: Some(100.0),
                low: None,
                high: None,
                watch_margin: 5.0,
            }),
        )
        .unwrap();
        let r = b.record(&d, &id("hs-nhan"), &id("hg-vt"), now()).unwrap();
        assert_eq!(r.properties["status"], "missed");
        assert_eq!(r.properties["latest"]["target"], 100.0);
        // September and before had no value and are long past their deadline.
        let missing = r.properties["missing"].as_array().unwrap();
        assert!(missing.contains(&json!("202609")));
        assert!(!missing.contains(&json!("202610")));
        assert!(
            !missing.contains(&json!("202611")),
            "November's deadline is 10 December"
        );
        // Ngã Bảy never reported: every past period is missing for it, not for the province
        // (which does not report this indicator itself).
        let p = b.record(&d, &id("hs-nhan"), &id("hg"), now()).unwrap();
        assert!(p.properties["missing"].as_array().unwrap().is_empty());
        assert_eq!(p.properties["latest"]["reported"], 1);
        assert_eq!(p.properties["latest"]["expected"], 2);
    }

    #[test]
    fn an_explanation_asked_for_holds_until_it_is_given() {
        let d = dir();
        let mut b = IndicatorBook::default();
        b.apply(
            &d,
            value(
                "hs-nhan",
                "hg-vt",
                "202611",
                90.0,
                "2026-11-20T10:00:00+07:00",
            ),
        )
        .unwrap();
        let step = |step, note: &str| {
            IndicatorEvent::Explanation(Explanation {
                indicator: id("hs-nhan"),
                unit: id("hg-vt"),
                period: "202611".parse().unwrap(),
                step,
                note: note.into(),
                by: "x".into(),
                role: "leader".into(),
                at: DateTime::parse_from_rfc3339("2026-11-25T10:00:00+07:00").unwrap(),
            })
        };
        let holds = |b: &IndicatorBook| {
            let r = b.record(&d, &id("hs-nhan"), &id("hg-vt"), now()).unwrap();
            let o = observations(&r);
            let e = o
                .iter()
                .find(|o| o.rule == "indicator_explanation")
                .unwrap();
            (e.holds, e.agency.as_ref().map(|a| a.to_string()))
        };
        assert_eq!(holds(&b).0, false);
        b.apply(
            &d,
            step(model::indicator::ExplanationStep::Request, "Vì sao?"),
        )
        .unwrap();
        assert_eq!(holds(&b), (true, Some("hg-stttt".into())));
        b.apply(
            &d,
            step(model::indicator::ExplanationStep::Answer, "Vì mưa"),
        )
        .unwrap();
        assert_eq!(holds(&b).0, false);
    }

    #[test]
    fn a_value_on_the_topic_never_stands_in_for_a_derived_figure() {
        let mut d = dir();
        let mut derived = d.indicators[&id("hs-nhan")].clone();
        derived.source = Source::Derived;
        derived.derive = Some(model::indicator::Derivation::ReportsReceived);
        d.upsert(RegistryEntry::Indicator(derived));
        let mut b = IndicatorBook::default();
        let p: Period = "202611".parse().unwrap();
        b.set_derived(&d, &id("hs-nhan"), &id("hg-vt"), p, 7.0);
        b.apply(
            &d,
            value(
                "hs-nhan",
                "hg-vt",
                "202611",
                500.0,
                "2026-11-20T10:00:00+07:00",
            ),
        )
        .unwrap();
        let r = b.record(&d, &id("hs-nhan"), &id("hg-vt"), now()).unwrap();
        assert_eq!(r.properties["latest"]["value"], 7.0);
    }
}
