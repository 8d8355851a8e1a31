//! Salinity levels and the inland reach of isohalines.
//!
//! A station's level (normal, watch, warning) comes from per-station thresholds (defaults
//! 1‰ and 4‰) with hysteresis: a level is entered when the value reaches its threshold and
//! left only once the value falls below the threshold minus the hysteresis, so a value
//! hovering at 4‰ does not flap. Along a river, the reach of the 1‰ and 4‰ lines is
//! interpolated between stations by their distance from the mouth, and a risk level is read
//! from configurable bands of the 4‰ reach.

use serde::{Deserialize, Serialize};

/// A station's salinity level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SalinityLevel {
    Normal,
    Watch,
    Warning,
}

impl SalinityLevel {
    pub fn name_vi(self) -> &'static str {
        match self {
            SalinityLevel::Normal => "Bình thường",
            SalinityLevel::Watch => "Theo dõi",
            SalinityLevel::Warning => "Cảnh báo",
        }
    }
}

/// Thresholds of one station, ‰.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SalinityThresholds {
    /// At or above: watch (1‰: limit for domestic water and fruit trees).
    pub watch: f64,
    /// At or above: warning (4‰: limit for irrigating rice).
    pub warning: f64,
    /// How far below a threshold the value must fall to leave its level.
    pub hysteresis: f64,
}

impl Default for SalinityThresholds {
    fn default() -> Self {
        Self {
            watch: 1.0,
            warning: 4.0,
            hysteresis: 0.2,
        }
    }
}

impl SalinityThresholds {
    /// The level of `value` on its own (no history).
    pub fn classify(&self, value: f64) -> SalinityLevel {
        if value >= self.warning {
            SalinityLevel::Warning
        } else if value >= self.watch {
            SalinityLevel::Watch
        } else {
            SalinityLevel::Normal
        }
    }

    /// The level after `value`, coming from `current`: rising levels are entered at their
    /// threshold; a level is left only below its threshold minus the hysteresis.
    pub fn next(&self, current: Option<SalinityLevel>, value: f64) -> SalinityLevel {
        let plain = self.classify(value);
        let Some(current) = current else {
            return plain;
        };
        if plain >= current {
            return plain;
        }
        // Falling: step down only as far as the hysteresis allows.
        let held = |threshold: f64| value >= threshold - self.hysteresis;
        match current {
            SalinityLevel::Warning if held(self.warning) => SalinityLevel::Warning,
            SalinityLevel::Warning | SalinityLevel::Watch if held(self.watch) => {
                SalinityLevel::Watch
            }
            _ => plain,
        }
    }
}

/// What [`from_specific_conductance`] does, for the record of a converted reading.
pub const CONDUCTIVITY_CONVERSION: &str =
    "PSS-78 from specific conductance at 25 °C (Hill et al. 1986 extension below 2)";

/// Practical salinity (≈ ‰) from specific conductance (µS/cm at 25 °C), by PSS-78
/// (UNESCO 1981), with the Hill et al. (1986) extension below 2, where estuaries and
/// irrigation canals mostly are. PSS-78 is defined up to 42.
pub fn from_specific_conductance(us_cm: f64) -> f64 {
    if us_cm <= 0.0 || !us_cm.is_finite() {
        return 0.0;
    }
    let pss = Pss78::at(25.0);
    let rt = us_cm / C35_15_US / pss.rt_t;
    let s = pss.sp(rt.sqrt());
    if s >= 2.0 {
        return s;
    }
    // Below 2, Hill et al. (1986), scaled (as TEOS-10 does) so that it meets PSS-78 at 2.
    let ratio = 2.0 / pss.hill_raw(pss.rt_at(2.0));
    (ratio * pss.hill_raw(rt.sqrt())).max(0.0)
}

/// Conductivity of standard seawater (S = 35, 15 °C, 0 dbar), µS/cm.
const C35_15_US: f64 = 42_914.0;
const A: [f64; 6] = [0.0080, -0.1692, 25.3851, 14.0941, -7.0261, 2.7081];
const B: [f64; 6] = [0.0005, -0.0056, -0.0066, -0.0375, 0.0636, -0.0144];

/// PSS-78 at one temperature: the temperature terms are fixed, the rest is a series in
/// √Rt. PSS-78 is defined on IPTS-68 temperatures; sensors report ITS-90, hence the factor.
struct Pss78 {
    /// rt(t): conductivity ratio of standard seawater at t to that at 15 °C.
    rt_t: f64,
    /// f(t) of the B series.
    f: f64,
}

impl Pss78 {
    fn at(t90: f64) -> Self {
        const C: [f64; 5] = [
            0.676_609_7,
            2.005_64e-2,
            1.104_259e-4,
            -6.9698e-7,
            1.0031e-9,
        ];
        let t = t90 * 1.00024;
        let rt_t = C.iter().rev().fold(0.0, |acc, c| acc * t + c);
        let f = (t - 15.0) / (1.0 + 0.0162 * (t - 15.0));
        Self { rt_t, f }
    }

    /// PSS-78 salinity at √Rt = `r`.
    fn sp(&self, r: f64) -> f64 {
        let poly = |k: &[f64; 6]| k.iter().rev().fold(0.0, |acc, c| acc * r + c);
        poly(&A) + self.f * poly(&B)
    }

    /// d(sp)/d(√Rt).
    fn dsp(&self, r: f64) -> f64 {
        let d = |k: &[f64; 6]| {
            k.iter()
                .enumerate()
                .skip(1)
                .rev()
                .fold(0.0, |acc, (i, c)| acc * r + i as f64 * c)
        };
        d(&A) + self.f * d(&B)
    }

    /// √Rt where PSS-78 gives salinity `target` (Newton; sp is monotonic there).
    fn rt_at(&self, target: f64) -> f64 {
        let mut r: f64 = 0.27; // √Rt of S = 2 at room temperature
        for _ in 0..20 {
            let step = (self.sp(r) - target) / self.dsp(r);
            r -= step;
            if step.abs() < 1e-15 {
                break;
            }
        }
        r
    }

    /// Hill et al.'s low-salinity form at √Rt = `r`, before scaling.
    fn hill_raw(&self, r: f64) -> f64 {
        let x = 400.0 * r * r;
        let sqrt_y = 10.0 * r;
        self.sp(r)
            - A[0] / (1.0 + 1.5 * x + x * x)
            - B[0] * self.f / (1.0 + sqrt_y + sqrt_y * sqrt_y + sqrt_y.powi(3))
    }
}

/// How far inland an isohaline (e.g. the 4‰ line) reaches along one river.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reach {
    /// Between two stations: interpolated km from the mouth.
    At { km: f64 },
    /// Every station is at or above the threshold: at least as far as the farthest.
    AtLeast { km: f64 },
    /// No station reaches the threshold: short of the station nearest the mouth.
    ShortOf { km: f64 },
}

impl Reach {
    /// The km figure (a lower or upper bound for `AtLeast` and `ShortOf`).
    pub fn km(self) -> f64 {
        match self {
            Reach::At { km } | Reach::AtLeast { km } | Reach::ShortOf { km } => km,
        }
    }
}

/// The reach of the `threshold` line from `(km from the mouth, value)` of one river's
/// stations; `None` without stations. The line lies past the farthest-inland station at or
/// above the threshold, interpolated linearly towards the next station inland.
pub fn reach(stations: &[(f64, f64)], threshold: f64) -> Option<Reach> {
    let mut s: Vec<(f64, f64)> = stations
        .iter()
        .copied()
        .filter(|(k, v)| k.is_finite() && v.is_finite())
        .collect();
    s.sort_by(|a, b| a.0.total_cmp(&b.0));
    let first = *s.first()?;
    let Some(i) = s.iter().rposition(|&(_, v)| v >= threshold) else {
        return Some(Reach::ShortOf { km: first.0 });
    };
    let Some(&(k2, v2)) = s.get(i + 1) else {
        return Some(Reach::AtLeast { km: s[i].0 });
    };
    let (k1, v1) = s[i];
    let km = if v1 == v2 {
        k1
    } else {
        k1 + (v1 - threshold) / (v1 - v2) * (k2 - k1)
    };
    Some(Reach::At { km })
}

/// Risk levels from the reach of the 4‰ line: `(km at or beyond which, level)`, ascending.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RiskBands(pub Vec<(f64, u8)>);

impl Default for RiskBands {
    /// Disaster-risk levels 1–4 for salinity intrusion as commonly cited from Decision
    /// 18/2021/QĐ-TTg for the Mekong Delta (4‰ line 15, 25, 50, 90 km inland). Configure
    /// them per province.
    fn default() -> Self {
        Self(vec![(15.0, 1), (25.0, 2), (50.0, 3), (90.0, 4)])
    }
}

impl RiskBands {
    /// The risk level of a 4‰ reach (0: below the first band).
    pub fn level(&self, reach_km: f64) -> u8 {
        self.0
            .iter()
            .filter(|(km, _)| reach_km >= *km)
            .map(|(_, l)| *l)
            .max()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use SalinityLevel::*;

    #[test]
    fn levels_change_with_hysteresis() {
        let t = SalinityThresholds::default();
        let run = |values: &[f64]| {
            let mut cur = None;
            values
                .iter()
                .map(|&v| {
                    let l = t.next(cur, v);
                    cur = Some(l);
                    l
                })
                .collect::<Vec<_>>()
        };
        // Rising enters at the threshold; hovering just below 4 keeps the warning.
        assert_eq!(
            run(&[0.5, 1.0, 3.9, 4.0, 3.9, 3.85, 4.1, 3.79]),
            vec![Normal, Watch, Watch, Warning, Warning, Warning, Warning, Watch]
        );
        // Falling from warning straight to 0.9 holds watch (within 0.2 of 1‰), 0.7 is normal.
        assert_eq!(run(&[5.0, 0.9, 0.7]), vec![Warning, Watch, Normal]);
        // A jump down past both hystereses goes straight to normal.
        assert_eq!(run(&[5.0, 0.3]), vec![Warning, Normal]);
        assert_eq!(t.classify(3.999), Watch);
        assert_eq!(Warning.name_vi(), "Cảnh báo");
    }

    #[test]
    fn reach_is_interpolated_between_stations() {
        // Mouth at km 0: 12‰ at km 10, 6‰ at km 30, 2‰ at km 50, 0.4‰ at km 70.
        let river = [(30.0, 6.0), (10.0, 12.0), (70.0, 0.4), (50.0, 2.0)];
        // 4‰ between km 30 (6‰) and km 50 (2‰): 30 + (6-4)/(6-2) × 20 = 40.
        assert_eq!(reach(&river, 4.0), Some(Reach::At { km: 40.0 }));
        // 1‰ between km 50 (2‰) and km 70 (0.4‰): 50 + 1/1.6 × 20 = 62.5.
        assert_eq!(reach(&river, 1.0), Some(Reach::At { km: 62.5 }));
        assert_eq!(reach(&river, 0.1), Some(Reach::AtLeast { km: 70.0 }));
        assert_eq!(reach(&river, 20.0), Some(Reach::ShortOf { km: 10.0 }));
        assert_eq!(reach(&[], 4.0), None);
        // Not monotone (a pocket of salt upstream): the farthest station above counts.
        let pocket = [(10.0, 8.0), (30.0, 3.0), (50.0, 5.0), (70.0, 1.0)];
        assert_eq!(reach(&pocket, 4.0), Some(Reach::At { km: 55.0 }));
    }

    #[test]
    fn specific_conductance_agrees_with_teos10() {
        // gsw.SP_from_C(us / 1000, 25, 0) from the TEOS-10 GSW toolbox (PyPI `gsw` 3.6),
        // an independent implementation of PSS-78 with the Hill et al. extension.
        let reference = [
            (100.0, 0.04620948177661863),
            (200.0, 0.09412882379732793),
            (500.0, 0.2403784330056478),
            (1_000.0, 0.49245077105363216),
            (2_000.0, 1.0166004878653572),
            (3_000.0, 1.5586279217133558),
            (5_000.0, 2.6796046991734),
            (7_500.0, 4.1315882172376455),
            (53_087.0, 35.01184883899759),
        ];
        for (us, sp) in reference {
            let ours = from_specific_conductance(us);
            assert!(
                (ours - sp).abs() < 1e-9,
                "{us} µS/cm: {ours} against TEOS-10 {sp}"
            );
        }
    }

    #[test]
    fn specific_conductance_converts_by_pss78() {
        // Standard seawater, S = 35, has a specific conductance of about 53,087 µS/cm.
        assert!((from_specific_conductance(53_087.0) - 35.0).abs() < 0.02);
        // Brackish canal water: 1,000 µS/cm ≈ 0.49, 7,500 µS/cm ≈ 4.1 (the rice limit).
        assert!(
            (from_specific_conductance(1_000.0) - 0.49).abs() < 0.02,
            "{}",
            from_specific_conductance(1_000.0)
        );
        assert!(
            (from_specific_conductance(7_500.0) - 4.14).abs() < 0.05,
            "{}",
            from_specific_conductance(7_500.0)
        );
        // Continuous across the switch to the low-salinity extension at 2.
        let below = from_specific_conductance(3_600.0);
        let above = from_specific_conductance(3_700.0);
        assert!(below < above && above - below < 0.1, "{below} {above}");
        assert_eq!(from_specific_conductance(0.0), 0.0);
    }

    #[test]
    fn risk_level_from_the_4_permille_reach() {
        let b = RiskBands::default();
        assert_eq!(b.level(10.0), 0);
        assert_eq!(b.level(15.0), 1);
        assert_eq!(b.level(40.0), 2);
        assert_eq!(b.level(62.5), 3);
        assert_eq!(b.level(120.0), 4);
    }
}
