//! Roll-up: how a unit's figure is made from its child units' when the unit does not report
//! it itself, and how complete that figure is (reporting units that reported / reporting
//! units expected for the period). A province's value is often not the sum of its
//! districts' (rates, indices), hence a rule per indicator; units merge and split, hence the
//! tree is asked for the units as they stood in the period.

use serde::{Deserialize, Serialize};

use super::{Basis, Indicator, Period, Tier};
use crate::error::FieldError;
use crate::id::LocalId;

/// How an indicator's value for a unit follows from its child units'.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rollup", rename_all = "snake_case")]
pub enum Rollup {
    /// Counts and amounts: the children's sum.
    Sum,
    /// The children's plain mean.
    Mean,
    /// The children's mean weighted by another indicator of the same period (e.g. a rate
    /// weighted by population).
    WeightedMean { weight: LocalId },
    /// Another indicator divided by a third, both rolled up first, times `scale` (100 for a
    /// percentage): the on-time rate is on-time dossiers over resolved dossiers, never a
    /// mean of rates.
    Ratio {
        numerator: LocalId,
        denominator: LocalId,
        #[serde(default = "percent")]
        scale: f64,
    },
    /// Not combined: only a unit's own report counts (an index, a ranking).
    None,
}

fn percent() -> f64 {
    100.0
}

impl Rollup {
    /// The rule may not refer to its own indicator.
    pub fn check(&self, own: &LocalId) -> Result<(), FieldError> {
        match self {
            Rollup::WeightedMean { weight } if weight == own => Err(FieldError::new(
                "weight",
                "an indicator cannot be weighted by itself",
            )),
            Rollup::Ratio { numerator, .. } if numerator == own => Err(FieldError::new(
                "numerator",
                "a ratio's numerator must be another indicator",
            )),
            Rollup::Ratio { denominator, .. } if denominator == own => Err(FieldError::new(
                "denominator",
                "a ratio's denominator must be another indicator",
            )),
            Rollup::Ratio { scale, .. } if !scale.is_finite() || *scale <= 0.0 => {
                Err(FieldError::new("scale", "must be a positive number"))
            }
            _ => Ok(()),
        }
    }

    /// The other indicators this rule reads.
    pub fn inputs(&self) -> Vec<&LocalId> {
        match self {
            Rollup::WeightedMean { weight } => vec![weight],
            Rollup::Ratio {
                numerator,
                denominator,
                ..
            } => vec![numerator, denominator],
            _ => Vec::new(),
        }
    }
}

/// What the roll-up reads: the catalogue, the values reported, and the unit tree as it
/// stood in a period.
pub trait Figures {
    fn indicator(&self, code: &LocalId) -> Option<&Indicator>;
    /// The value `unit` itself reported for `period` (the latest revision).
    fn reported(&self, code: &LocalId, unit: &LocalId, period: &Period) -> Option<f64>;
    /// The units directly under `unit` that existed during `period` (its dates on `basis`).
    fn children(&self, unit: &LocalId, period: &Period, basis: Basis) -> Vec<LocalId>;
    fn tier(&self, unit: &LocalId) -> Option<Tier>;
}

/// Where a unit's figure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// The unit reported it.
    Reported,
    /// Made from the units under it.
    RolledUp,
}

/// A unit's figure for one indicator and period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    pub value: Option<f64>,
    pub origin: Option<Origin>,
    /// Reporting units (at the indicator's levels, this one or under it) that reported.
    pub reported: u32,
    /// Reporting units expected for the period.
    pub expected: u32,
}

impl Figure {
    /// Reported over expected, 0-1; `None` when no unit is expected to report.
    pub fn completeness(&self) -> Option<f64> {
        (self.expected > 0).then(|| f64::from(self.reported) / f64::from(self.expected))
    }
}

/// How deep references between indicators (ratios of ratios) may go: a catalogue with a
/// cycle gets no figure rather than a stack overflow.
const MAX_DEPTH: u8 = 6;

/// `unit`'s figure for `code` in `period`: its own report, else its children's by the
/// indicator's rule, with completeness either way.
pub fn figure(f: &impl Figures, code: &LocalId, unit: &LocalId, period: &Period) -> Figure {
    let (reported, expected) = completeness(f, code, unit, period, 0);
    let value = value_of(f, code, unit, period, 0);
    Figure {
        value: value.map(|(v, _)| v),
        origin: value.map(|(_, o)| o),
        reported,
        expected,
    }
}

fn value_of(
    f: &impl Figures,
    code: &LocalId,
    unit: &LocalId,
    period: &Period,
    depth: u8,
) -> Option<(f64, Origin)> {
    if let Some(v) = f.reported(code, unit, period) {
        return Some((v, Origin::Reported));
    }
    if depth >= MAX_DEPTH {
        return None;
    }
    let ind = f.indicator(code)?;
    let children = f.children(unit, period, ind.basis);
    let child = |c: &LocalId, code: &LocalId| value_of(f, code, c, period, depth + 1).map(|x| x.0);
    let v = match &ind.rollup {
        Rollup::None => None,
        Rollup::Sum => {
            let vals: Vec<f64> = children.iter().filter_map(|c| child(c, code)).collect();
            (!vals.is_empty()).then(|| vals.iter().sum())
        }
        Rollup::Mean => {
            let vals: Vec<f64> = children.iter().filter_map(|c| child(c, code)).collect();
            (!vals.is_empty()).then(|| vals.iter().sum::<f64>() / vals.len() as f64)
        }
        Rollup::WeightedMean { weight } => {
            let (mut num, mut den) = (0.0, 0.0);
            for c in &children {
                if let (Some(v), Some(w)) = (child(c, code), child(c, weight)) {
                    num += v * w;
                    den += w;
                }
            }
            (den > 0.0).then(|| num / den)
        }
        Rollup::Ratio {
            numerator,
            denominator,
            scale,
        } => {
            let n = value_of(f, numerator, unit, period, depth + 1).map(|x| x.0);
            let d = value_of(f, denominator, unit, period, depth + 1).map(|x| x.0);
            match (n, d) {
                (Some(n), Some(d)) if d != 0.0 => Some(n / d * scale),
                _ => None,
            }
        }
    };
    v.filter(|v| v.is_finite()).map(|v| (v, Origin::RolledUp))
}

/// (reported, expected) over the reporting units at or under `unit`. A ratio's unit counts
/// as reported when it reported the ratio or both its parts.
fn completeness(
    f: &impl Figures,
    code: &LocalId,
    unit: &LocalId,
    period: &Period,
    depth: u8,
) -> (u32, u32) {
    let Some(ind) = f.indicator(code) else {
        return (0, 0);
    };
    let mut counts = (0, 0);
    let reports_here = f.tier(unit).is_some_and(|t| ind.levels.contains(&t));
    if reports_here {
        counts.1 += 1;
        let own = f.reported(code, unit, period).is_some()
            || matches!(&ind.rollup, Rollup::Ratio { numerator, denominator, .. }
                if f.reported(numerator, unit, period).is_some()
                    && f.reported(denominator, unit, period).is_some());
        if own {
            counts.0 += 1;
        }
    }
    if depth < MAX_DEPTH {
        for c in f.children(unit, period, ind.basis) {
            let (r, e) = completeness(f, code, &c, period, depth + 1);
            counts.0 += r;
            counts.1 += e;
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use chrono::NaiveDate;

    use super::*;

    /// A province `p` with districts `d1`, `d2`, `d3`; `d3` was merged into `d2` on 1 July
    /// 2026 and `d4` was created on 1 October 2026.
    struct Tree {
        catalogue: Vec<Indicator>,
        values: HashMap<(String, String, Period), f64>,
    }

    fn id(s: &str) -> LocalId {
        LocalId::parse("id", s).unwrap()
    }

    fn p(s: &str) -> Period {
        Period::parse("period", s).unwrap()
    }

    impl Figures for Tree {
        fn indicator(&self, code: &LocalId) -> Option<&Indicator> {
            self.catalogue.iter().find(|i| &i.code == code)
        }
        fn reported(&self, code: &LocalId, unit: &LocalId, period: &Period) -> Option<f64> {
            self.values
                .get(&(code.to_string(), unit.to_string(), *period))
                .copied()
        }
        fn children(&self, unit: &LocalId, period: &Period, basis: Basis) -> Vec<LocalId> {
            if unit.as_str() != "p" {
                return Vec::new();
            }
            let (first, last) = period.dates(basis);
            let merged = NaiveDate::from_ymd_opt(2026, 7, 1).unwrap();
            let created = NaiveDate::from_ymd_opt(2026, 10, 1).unwrap();
            let mut out = vec![id("d1"), id("d2")];
            if first < merged {
                out.push(id("d3"));
            }
            if last >= created {
                out.push(id("d4"));
            }
            out
        }
        fn tier(&self, unit: &LocalId) -> Option<Tier> {
            Some(if unit.as_str() == "p" {
                Tier::Province
            } else {
                Tier::District
            })
        }
    }

    fn ind(code: &str, rollup: serde_json::Value) -> Indicator {
        let mut j = serde_json::json!({
            "code": code, "name": code, "sector": "public_administration", "measure": "hồ sơ",
            "frequency": "quarter", "levels": ["district"], "direction": "higher_is_better",
            "agency": "a", "source": "pushed"
        });
        j.as_object_mut()
            .unwrap()
            .extend(rollup.as_object().unwrap().clone());
        serde_json::from_value(j).unwrap()
    }

    fn tree(values: &[(&str, &str, &str, f64)]) -> Tree {
        Tree {
            catalogue: vec![
                ind("received", serde_json::json!({"rollup": "sum"})),
                ind("on-time", serde_json::json!({"rollup": "sum"})),
                ind("resolved", serde_json::json!({"rollup": "sum"})),
                ind(
                    "rate",
                    serde_json::json!({"rollup": "ratio", "numerator": "on-time", "denominator": "resolved"}),
                ),
                ind(
                    "coverage",
                    serde_json::json!({"rollup": "weighted_mean", "weight": "received"}),
                ),
                ind("index", serde_json::json!({"rollup": "none"})),
                ind("score", serde_json::json!({"rollup": "mean"})),
            ],
            values: values
                .iter()
                .map(|(c, u, q, v)| ((c.to_string(), u.to_string(), p(q)), *v))
                .collect(),
        }
    }

    #[test]
    fn sums_follow_the_units_that_existed_in_the_period() {
        let t = tree(&[
            ("received", "d1", "2026Q1", 100.0),
            ("received", "d2", "2026Q1", 50.0),
            ("received", "d3", "2026Q1", 25.0),
            ("received", "d1", "2026Q3", 120.0),
            ("received", "d2", "2026Q3", 80.0),
            // d3's late report for Q3, after its merger, is not part of the province's Q3.
            ("received", "d3", "2026Q3", 7.0),
            ("received", "d1", "2026Q4", 10.0),
        ]);
        let q1 = figure(&t, &id("received"), &id("p"), &p("2026Q1"));
        assert_eq!(q1.value, Some(175.0));
        assert_eq!(q1.origin, Some(Origin::RolledUp));
        assert_eq!((q1.reported, q1.expected), (3, 3));
        let q3 = figure(&t, &id("received"), &id("p"), &p("2026Q3"));
        assert_eq!(q3.value, Some(200.0));
        assert_eq!((q3.reported, q3.expected), (2, 2));
        // Q4: d4 is expected from its creation; one of three reported, the sum is partial
        // and says so.
        let q4 = figure(&t, &id("received"), &id("p"), &p("2026Q4"));
        assert_eq!(q4.value, Some(10.0));
        assert_eq!((q4.reported, q4.expected), (1, 3));
        assert!((q4.completeness().unwrap() - 1.0 / 3.0).abs() < 1e-9);
    }

    #[test]
    fn a_rate_is_the_ratio_of_the_rolled_up_parts_not_a_mean_of_rates() {
        let t = tree(&[
            ("on-time", "d1", "2026Q1", 99.0),
            ("resolved", "d1", "2026Q1", 100.0),
            ("on-time", "d2", "2026Q1", 5.0),
            ("resolved", "d2", "2026Q1", 10.0),
        ]);
        let f = figure(&t, &id("rate"), &id("p"), &p("2026Q1"));
        // 104 / 110, not (99 % + 50 %) / 2.
        assert!((f.value.unwrap() - 104.0 / 110.0 * 100.0).abs() < 1e-9);
        // d1 and d2 reported both parts; d3 nothing.
        assert_eq!((f.reported, f.expected), (2, 3));
        // A district's own rate from its parts.
        let d2 = figure(&t, &id("rate"), &id("d2"), &p("2026Q1"));
        assert_eq!(d2.value, Some(50.0));
    }

    #[test]
    fn a_province_that_reports_its_own_figure_keeps_it() {
        let t = tree(&[
            ("received", "d1", "2026Q1", 100.0),
            ("received", "p", "2026Q1", 180.0),
        ]);
        let f = figure(&t, &id("received"), &id("p"), &p("2026Q1"));
        assert_eq!(f.value, Some(180.0));
        assert_eq!(f.origin, Some(Origin::Reported));
        // The province is not a reporting level of this indicator: 1 of its 3 districts.
        assert_eq!((f.reported, f.expected), (1, 3));
    }

    #[test]
    fn weighted_means_plain_means_and_indices() {
        let t = tree(&[
            ("coverage", "d1", "2026Q1", 90.0),
            ("received", "d1", "2026Q1", 300.0),
            ("coverage", "d2", "2026Q1", 80.0),
            ("received", "d2", "2026Q1", 100.0),
            // d3 has a coverage but no weight: left out of the weighted mean.
            ("coverage", "d3", "2026Q1", 10.0),
            ("score", "d1", "2026Q1", 4.0),
            ("score", "d2", "2026Q1", 2.0),
            ("index", "d1", "2026Q1", 101.5),
        ]);
        let q = p("2026Q1");
        let w = figure(&t, &id("coverage"), &id("p"), &q);
        assert!((w.value.unwrap() - 87.5).abs() < 1e-9);
        assert_eq!(figure(&t, &id("score"), &id("p"), &q).value, Some(3.0));
        let idx = figure(&t, &id("index"), &id("p"), &q);
        assert_eq!(idx.value, None, "an index is never combined");
        assert_eq!((idx.reported, idx.expected), (1, 3));
        assert_eq!(
            figure(&t, &id("received"), &id("p"), &p("2026Q2")).value,
            None
        );
    }

    #[test]
    fn a_rule_cannot_name_its_own_indicator() {
        let r = Rollup::Ratio {
            numerator: id("a"),
            denominator: id("b"),
            scale: 100.0,
        };
        assert_eq!(r.check(&id("a")).unwrap_err().field, "numerator");
        assert!(r.check(&id("c")).is_ok());
        let w = Rollup::WeightedMean { weight: id("c") };
        assert_eq!(w.check(&id("c")).unwrap_err().field, "weight");
    }
}
