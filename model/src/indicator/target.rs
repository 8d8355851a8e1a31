//! Targets and the status of a value against its target: met, watch (within the watch
//! margin of missing), missed, or no target; direction-aware. A target may be set for a
//! longer period than the values (the year's target of a monthly figure): a rate is held to it
//! as it is, an amount pro rata (a month's share of the year, or for a cumulative value the
//! share of the year elapsed by its period's end).

use serde::{Deserialize, Serialize};

use super::{Indicator, Period, Rollup};
use crate::error::{Checker, Invalid};
use crate::id::LocalId;

/// Which way is good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    HigherIsBetter,
    LowerIsBetter,
    /// Good inside the target's `low`..`high` range.
    WithinRange,
}

/// The target of one indicator for one unit and period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Target {
    pub indicator: LocalId,
    pub unit: LocalId,
    pub period: Period,
    /// The figure to reach (higher / lower is better).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// The range to stay in (within range).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high: Option<f64>,
    /// How close to missing, in the indicator's unit of measure, counts as "watch".
    #[serde(default)]
    pub watch_margin: f64,
}

/// A value's standing against its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Worst first, so that sorting by status puts what needs attention on top.
    Missed,
    Watch,
    Met,
    NoTarget,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Missed => "missed",
            Status::Watch => "watch",
            Status::Met => "met",
            Status::NoTarget => "no_target",
        }
    }
}

/// The status and the target it was judged against (after pro-rating).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Judgement {
    pub status: Status,
    /// The target value the figure was held to (for a range, its low end).
    pub expected: Option<f64>,
}

fn finite(field: &str, v: Option<f64>, c: &mut Checker) {
    if v.is_some_and(|v| !v.is_finite()) {
        c.fail(field, "must be a finite number");
    }
}

impl Target {
    /// Checks the target for `indicator`'s direction and frequency.
    pub fn check(&self, indicator: &Indicator) -> Result<(), Invalid> {
        let mut c = Checker::default();
        finite("value", self.value, &mut c);
        finite("low", self.low, &mut c);
        finite("high", self.high, &mut c);
        if !self.watch_margin.is_finite() || self.watch_margin < 0.0 {
            c.fail("watch_margin", "must be zero or more");
        }
        match indicator.direction {
            Direction::HigherIsBetter | Direction::LowerIsBetter if self.value.is_none() => {
                c.fail("value", "is required for this indicator's direction")
            }
            Direction::WithinRange => match (self.low, self.high) {
                (Some(l), Some(h)) if l > h => c.fail("high", "must not be below low"),
                (None, _) | (_, None) => c.fail(
                    "low",
                    "a within-range indicator's target needs low and high",
                ),
                _ => {}
            },
            _ => {}
        }
        if self.period.frequency() < indicator.frequency {
            c.fail(
                "period",
                format!(
                    "a target is for a period of the indicator's frequency ({}) or longer",
                    indicator.frequency
                ),
            );
        }
        c.finish(|| ())
    }

    /// The share of this target a value of `period` is held to: 1 for a rate, or for an
    /// amount its share of the target's period.
    fn share(&self, indicator: &Indicator, period: &Period) -> Option<f64> {
        if *period == self.period {
            return Some(1.0);
        }
        let basis = indicator.basis;
        if !period.within(&self.period, basis) {
            return None;
        }
        if !matches!(indicator.rollup, Rollup::Sum) {
            return Some(1.0);
        }
        let (start, _) = self.period.dates(basis);
        let (first, last) = period.dates(basis);
        let covered = if indicator.cumulative {
            (last - start).num_days() + 1
        } else {
            (last - first).num_days() + 1
        };
        Some(covered as f64 / self.period.days(basis) as f64)
    }

    /// Judges `value`, a figure of `indicator` for `period`, against this target.
    pub fn judge(&self, indicator: &Indicator, period: &Period, value: f64) -> Judgement {
        let Some(share) = self.share(indicator, period) else {
            return Judgement {
                status: Status::NoTarget,
                expected: None,
            };
        };
        let m = self.watch_margin * share;
        let scaled = |v: Option<f64>| v.map(|v| v * share);
        let status = match indicator.direction {
            Direction::HigherIsBetter => match scaled(self.value) {
                Some(t) if value >= t => Status::Met,
                Some(t) if value >= t - m => Status::Watch,
                Some(_) => Status::Missed,
                None => Status::NoTarget,
            },
            Direction::LowerIsBetter => match scaled(self.value) {
                Some(t) if value <= t => Status::Met,
                Some(t) if value <= t + m => Status::Watch,
                Some(_) => Status::Missed,
                None => Status::NoTarget,
            },
            Direction::WithinRange => match (scaled(self.low), scaled(self.high)) {
                (Some(l), Some(h)) if (l..=h).contains(&value) => Status::Met,
                (Some(l), Some(h)) if (l - m..=h + m).contains(&value) => Status::Watch,
                (Some(_), Some(_)) => Status::Missed,
                _ => Status::NoTarget,
            },
        };
        let expected = match indicator.direction {
            Direction::WithinRange => scaled(self.low),
            _ => scaled(self.value),
        };
        Judgement { status, expected }
    }
}

/// The best target for a value of `period`: its own period's, else the shortest period
/// holding it.
pub fn target_for<'a>(
    targets: impl IntoIterator<Item = &'a Target>,
    indicator: &Indicator,
    period: &Period,
) -> Option<&'a Target> {
    targets
        .into_iter()
        .filter(|t| t.period == *period || period.within(&t.period, indicator.basis))
        .min_by_key(|t| t.period.days(indicator.basis))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::indicator::tests::indicator;

    fn p(s: &str) -> Period {
        Period::parse("period", s).unwrap()
    }

    fn rate() -> Indicator {
        indicator(serde_json::json!({
            "code": "on-time", "name": "Tỷ lệ hồ sơ đúng hạn", "sector": "public_administration",
            "measure": "%", "frequency": "month", "levels": ["province"], "rollup": "none",
            "direction": "higher_is_better", "agency": "a", "source": "pushed"
        }))
    }

    fn target(period: &str, value: f64, margin: f64) -> Target {
        Target {
            indicator: LocalId::parse("i", "on-time").unwrap(),
            unit: LocalId::parse("u", "hg").unwrap(),
            period: p(period),
            value: Some(value),
            low: None,
            high: None,
            watch_margin: margin,
        }
    }

    #[test]
    fn a_rate_is_held_to_the_years_target_each_month() {
        let i = rate();
        let t = target("2026", 98.0, 1.0);
        assert_eq!(t.judge(&i, &p("202611"), 99.1).status, Status::Met);
        assert_eq!(t.judge(&i, &p("202611"), 97.5).status, Status::Watch);
        assert_eq!(t.judge(&i, &p("202611"), 96.9).status, Status::Missed);
        assert_eq!(t.judge(&i, &p("202511"), 99.0).status, Status::NoTarget);
        assert_eq!(t.judge(&i, &p("202611"), 97.0).expected, Some(98.0));
    }

    #[test]
    fn lower_is_better_and_ranges() {
        let mut i = rate();
        i.direction = Direction::LowerIsBetter;
        let t = target("2026", 10.0, 2.0);
        assert_eq!(t.judge(&i, &p("202611"), 9.0).status, Status::Met);
        assert_eq!(t.judge(&i, &p("202611"), 11.5).status, Status::Watch);
        assert_eq!(t.judge(&i, &p("202611"), 12.5).status, Status::Missed);
        i.direction = Direction::WithinRange;
        let mut r = target("2026", 0.0, 0.5);
        (r.value, r.low, r.high) = (None, Some(4.0), Some(6.0));
        assert!(r.check(&i).is_ok());
        assert_eq!(r.judge(&i, &p("202611"), 5.0).status, Status::Met);
        assert_eq!(r.judge(&i, &p("202611"), 6.4).status, Status::Watch);
        assert_eq!(r.judge(&i, &p("202611"), 3.0).status, Status::Missed);
    }

    #[test]
    fn an_amount_is_held_to_its_share_of_a_longer_target() {
        let mut i = rate();
        i.rollup = Rollup::Sum;
        i.frequency = Frequency::Quarter;
        // Budget revenue: 1,200 (billion đồng) for 2026.
        let t = target("2026", 1200.0, 0.0);
        // A quarter's own revenue against a quarter's share (~299).
        let q = t.judge(&i, &p("2026Q1"), 300.0);
        assert_eq!(q.status, Status::Met);
        assert!((q.expected.unwrap() - 1200.0 * 90.0 / 365.0).abs() < 1e-9);
        // Cumulative since January: Q3's year-to-date against three quarters of the year.
        i.cumulative = true;
        let ytd = t.judge(&i, &p("2026Q3"), 850.0);
        assert!((ytd.expected.unwrap() - 1200.0 * 273.0 / 365.0).abs() < 1e-9);
        assert_eq!(ytd.status, Status::Missed);
        assert_eq!(t.judge(&i, &p("2026Q4"), 1200.0).status, Status::Met);
    }

    #[test]
    fn the_closest_target_wins_and_bad_targets_are_named() {
        let i = rate();
        let year = target("2026", 98.0, 0.0);
        let month = target("202611", 99.5, 0.0);
        let ts = [year.clone(), month.clone()];
        assert_eq!(target_for(&ts, &i, &p("202611")), Some(&month));
        assert_eq!(target_for(&ts, &i, &p("202610")), Some(&year));
        assert_eq!(target_for(&ts, &i, &p("202512")), None);
        let mut bad = target("20261101", f64::NAN, -1.0);
        bad.value = Some(f64::NAN);
        let e = bad.check(&i).unwrap_err();
        let fields: Vec<&str> = e.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["value", "watch_margin", "period"]);
    }

    use crate::indicator::Frequency;
}
