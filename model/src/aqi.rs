//! VN_AQI as Decision 1459/QĐ-TCMT (12 Nov 2019) defines it: sub-indices by linear
//! interpolation between the decision's breakpoints, the 12-hour NowCast for PM10 and PM2.5
//! (only when at least 2 of the last 3 hours are present), hourly and daily AQI, the dominant
//! pollutant, the band with its Vietnamese name and colour.
//!
//! Concentrations are µg/m³. When inputs are insufficient the AQI is absent with the reason
//! ([`AqiAbsent`]), never a guess. A concentration past the top of the table gives the top
//! index, 500, flagged `above_scale`.

use serde::{Deserialize, Serialize};

/// The pollutants of the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pollutant {
    Pm25,
    Pm10,
    O3,
    Co,
    So2,
    No2,
}

impl Pollutant {
    pub const ALL: [Pollutant; 6] = [
        Pollutant::Pm25,
        Pollutant::Pm10,
        Pollutant::O3,
        Pollutant::Co,
        Pollutant::So2,
        Pollutant::No2,
    ];

    /// The reading parameter measuring this pollutant.
    pub fn parameter(self) -> crate::Parameter {
        use crate::Parameter as P;
        match self {
            Pollutant::Pm25 => P::Pm25,
            Pollutant::Pm10 => P::Pm10,
            Pollutant::O3 => P::O3,
            Pollutant::Co => P::Co,
            Pollutant::So2 => P::So2,
            Pollutant::No2 => P::No2,
        }
    }

    /// The pollutant a parameter measures, if it is one of the index's.
    pub fn of(p: crate::Parameter) -> Option<Pollutant> {
        Pollutant::ALL.into_iter().find(|x| x.parameter() == p)
    }
}

/// Index levels of the breakpoint table.
const LEVELS: [f64; 8] = [0.0, 50.0, 100.0, 150.0, 200.0, 300.0, 400.0, 500.0];

/// Breakpoints (µg/m³) at each level; `None` where the decision gives none.
type Breakpoints = [Option<f64>; 8];

const O3_1H: Breakpoints = bp([0.0, 160.0, 200.0, 300.0, 400.0, 800.0, 1000.0, 1200.0]);
const O3_8H: Breakpoints = [
    Some(0.0),
    Some(100.0),
    Some(120.0),
    Some(170.0),
    Some(210.0),
    Some(400.0),
    None,
    None,
];
const CO: Breakpoints = bp([
    0.0, 10_000.0, 30_000.0, 45_000.0, 60_000.0, 90_000.0, 120_000.0, 150_000.0,
]);
const SO2: Breakpoints = bp([0.0, 125.0, 350.0, 550.0, 800.0, 1600.0, 2100.0, 2630.0]);
const NO2: Breakpoints = bp([0.0, 100.0, 200.0, 700.0, 1200.0, 2350.0, 3100.0, 3850.0]);
const PM10: Breakpoints = bp([0.0, 50.0, 150.0, 250.0, 350.0, 420.0, 500.0, 600.0]);
const PM25: Breakpoints = bp([0.0, 25.0, 50.0, 80.0, 150.0, 250.0, 350.0, 500.0]);

const fn bp(v: [f64; 8]) -> Breakpoints {
    [
        Some(v[0]),
        Some(v[1]),
        Some(v[2]),
        Some(v[3]),
        Some(v[4]),
        Some(v[5]),
        Some(v[6]),
        Some(v[7]),
    ]
}

/// One pollutant's sub-index.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SubIndex {
    pub pollutant: Pollutant,
    /// The concentration it was computed from (µg/m³): NowCast, mean or maximum.
    pub concentration: f64,
    /// Rounded to an integer, as the decision requires.
    pub index: u32,
    /// The concentration is past the top of the table (the index is held at 500).
    pub above_scale: bool,
}

/// The interpolated index of `c` on `table`, before rounding; `None` past the table.
fn interpolate(table: &Breakpoints, c: f64) -> Option<f64> {
    for i in 0..7 {
        let (Some(lo), Some(hi)) = (table[i], table[i + 1]) else {
            return None;
        };
        if c <= hi {
            return Some((LEVELS[i + 1] - LEVELS[i]) / (hi - lo) * (c - lo) + LEVELS[i]);
        }
    }
    None
}

fn sub_index(pollutant: Pollutant, table: &Breakpoints, c: f64) -> SubIndex {
    let c = c.max(0.0);
    let (index, above_scale) = match interpolate(table, c) {
        Some(i) => (i.round() as u32, false),
        None => (500, true),
    };
    SubIndex {
        pollutant,
        concentration: c,
        index,
        above_scale,
    }
}

/// The bands of the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Band {
    Good,
    Moderate,
    Poor,
    Bad,
    VeryBad,
    Hazardous,
}

impl Band {
    pub fn of(aqi: u32) -> Band {
        match aqi {
            0..=50 => Band::Good,
            51..=100 => Band::Moderate,
            101..=150 => Band::Poor,
            151..=200 => Band::Bad,
            201..=300 => Band::VeryBad,
            _ => Band::Hazardous,
        }
    }

    /// The decision's Vietnamese name.
    pub fn name_vi(self) -> &'static str {
        match self {
            Band::Good => "Tốt",
            Band::Moderate => "Trung bình",
            Band::Poor => "Kém",
            Band::Bad => "Xấu",
            Band::VeryBad => "Rất xấu",
            Band::Hazardous => "Nguy hại",
        }
    }

    pub fn rgb(self) -> [u8; 3] {
        match self {
            Band::Good => [0, 228, 0],
            Band::Moderate => [255, 255, 0],
            Band::Poor => [255, 126, 0],
            Band::Bad => [255, 0, 0],
            Band::VeryBad => [143, 63, 151],
            Band::Hazardous => [126, 0, 35],
        }
    }
}

/// An index and how it came about.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Aqi {
    pub aqi: u32,
    pub band: Band,
    /// The pollutant with the largest sub-index (the first of a tie in [`Pollutant`] order).
    pub dominant: Pollutant,
    pub sub_indices: Vec<SubIndex>,
}

/// Why there is no index.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
#[error("{reason}")]
pub struct AqiAbsent {
    pub reason: String,
}

fn absent(reason: impl Into<String>) -> AqiAbsent {
    AqiAbsent {
        reason: reason.into(),
    }
}

/// The 12-hour NowCast from hourly means, `hours[0]` the latest hour; `None` = no mean for
/// that hour. Needs at least 2 of the last 3 hours.
pub fn nowcast(hours: &[Option<f64>; 12]) -> Result<f64, AqiAbsent> {
    let recent = hours[..3].iter().filter(|h| h.is_some()).count();
    if recent < 2 {
        return Err(absent(format!(
            "NowCast needs at least 2 of the last 3 hourly means; {recent} present"
        )));
    }
    let present: Vec<(usize, f64)> = hours
        .iter()
        .enumerate()
        .filter_map(|(i, h)| h.map(|c| (i, c.max(0.0))))
        .collect();
    let max = present.iter().map(|p| p.1).fold(0.0, f64::max);
    let min = present.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    if max == 0.0 {
        return Ok(0.0);
    }
    let w = (min / max).max(0.5);
    let (num, den) = present.iter().fold((0.0, 0.0), |(n, d), &(i, c)| {
        let k = w.powi(i as i32);
        (n + k * c, d + k)
    });
    Ok(num / den)
}

/// What an hourly AQI is computed from (µg/m³).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HourlyInputs {
    /// The last 12 hourly means, latest first.
    pub pm25: [Option<f64>; 12],
    pub pm10: [Option<f64>; 12],
    /// This hour's means.
    pub o3: Option<f64>,
    pub co: Option<f64>,
    pub so2: Option<f64>,
    pub no2: Option<f64>,
}

fn combine(subs: Vec<SubIndex>) -> Aqi {
    let top = subs
        .iter()
        .copied()
        .reduce(|a, b| if b.index > a.index { b } else { a })
        .expect("at least one sub-index");
    Aqi {
        aqi: top.index,
        band: Band::of(top.index),
        dominant: top.pollutant,
        sub_indices: subs,
    }
}

/// The hourly AQI: NowCast for PM, this hour's means for the gases. At least one of PM10 and
/// PM2.5 must have a NowCast.
pub fn hourly(inputs: &HourlyInputs) -> Result<Aqi, AqiAbsent> {
    let pm25 = nowcast(&inputs.pm25);
    let pm10 = nowcast(&inputs.pm10);
    let mut subs = Vec::new();
    if let Ok(c) = pm25 {
        subs.push(sub_index(Pollutant::Pm25, &PM25, c));
    }
    if let Ok(c) = pm10 {
        subs.push(sub_index(Pollutant::Pm10, &PM10, c));
    }
    if subs.is_empty() {
        let reason = |r: Result<f64, AqiAbsent>| r.err().map(|e| e.reason).unwrap_or_default();
        return Err(absent(format!(
            "VN_AQI needs PM2.5 or PM10: PM2.5: {}; PM10: {}",
            reason(pm25),
            reason(pm10)
        )));
    }
    let gases = [
        (Pollutant::O3, &O3_1H, inputs.o3),
        (Pollutant::Co, &CO, inputs.co),
        (Pollutant::So2, &SO2, inputs.so2),
        (Pollutant::No2, &NO2, inputs.no2),
    ];
    for (p, table, c) in gases {
        if let Some(c) = c {
            subs.push(sub_index(p, table, c));
        }
    }
    Ok(combine(subs))
}

/// The hourly AQI of the hour starting at `hour` (Unix seconds) from hourly means looked up
/// by `mean(pollutant, hour start)`: the 12 hours up to `hour` for PM, `hour` for gases.
pub fn hourly_from_means(
    hour: i64,
    mean: impl Fn(Pollutant, i64) -> Option<f64>,
) -> Result<Aqi, AqiAbsent> {
    let last12 = |p| std::array::from_fn(|i| mean(p, hour - i as i64 * 3600));
    hourly(&HourlyInputs {
        pm25: last12(Pollutant::Pm25),
        pm10: last12(Pollutant::Pm10),
        o3: mean(Pollutant::O3, hour),
        co: mean(Pollutant::Co, hour),
        so2: mean(Pollutant::So2, hour),
        no2: mean(Pollutant::No2, hour),
    })
}

/// What a daily AQI is computed from (µg/m³).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DailyInputs {
    /// 24-hour means.
    pub pm25: Option<f64>,
    pub pm10: Option<f64>,
    /// The day's largest hourly mean.
    pub o3_1h_max: Option<f64>,
    /// The day's largest 8-hour rolling mean.
    pub o3_8h_max: Option<f64>,
    pub co_max: Option<f64>,
    pub so2_max: Option<f64>,
    pub no2_max: Option<f64>,
}

/// The daily AQI. For O₃ the larger of the 1-hour and the 8-hour sub-indices counts; the
/// 8-hour table stops at 400 µg/m³, past which the 1-hour value alone decides.
pub fn daily(inputs: &DailyInputs) -> Result<Aqi, AqiAbsent> {
    let mut subs = Vec::new();
    if let Some(c) = inputs.pm25 {
        subs.push(sub_index(Pollutant::Pm25, &PM25, c));
    }
    if let Some(c) = inputs.pm10 {
        subs.push(sub_index(Pollutant::Pm10, &PM10, c));
    }
    if subs.is_empty() {
        return Err(absent("VN_AQI needs a 24-hour mean of PM2.5 or PM10"));
    }
    let o3_8h = inputs
        .o3_8h_max
        .filter(|c| interpolate(&O3_8H, *c).is_some())
        .map(|c| sub_index(Pollutant::O3, &O3_8H, c));
    let o3_1h = inputs
        .o3_1h_max
        .map(|c| sub_index(Pollutant::O3, &O3_1H, c));
    match (o3_1h, o3_8h) {
        (Some(a), Some(b)) => subs.push(if b.index > a.index { b } else { a }),
        (Some(a), None) | (None, Some(a)) => subs.push(a),
        (None, None) => {}
    }
    let gases = [
        (Pollutant::Co, &CO, inputs.co_max),
        (Pollutant::So2, &SO2, inputs.so2_max),
        (Pollutant::No2, &NO2, inputs.no2_max),
    ];
    for (p, table, c) in gases {
        if let Some(c) = c {
            subs.push(sub_index(p, table, c));
        }
    }
    Ok(combine(subs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steady(c: f64) -> [Option<f64>; 12] {
        [Some(c); 12]
    }

    fn pm25_only(hours: [Option<f64>; 12]) -> Result<Aqi, AqiAbsent> {
        hourly(&HourlyInputs {
            pm25: hours,
            ..Default::default()
        })
    }

    #[test]
    fn steady_pm25_interpolates_between_breakpoints() {
        // 30 µg/m³ lies between 25 (I=50) and 50 (I=100): 50 + 50/25 × 5 = 60.
        let a = pm25_only(steady(30.0)).unwrap();
        assert_eq!(
            (a.aqi, a.band, a.dominant),
            (60, Band::Moderate, Pollutant::Pm25)
        );
        assert_eq!(a.band.name_vi(), "Trung bình");
        assert_eq!(a.band.rgb(), [255, 255, 0]);
    }

    #[test]
    fn nowcast_weights_recent_hours_and_skips_missing_ones() {
        // c1 = 40, c2 missing, c3 = 20: w* = 20/40 = 0.5, so w = 0.5;
        // NowCast = (40·1 + 20·0.25) / (1 + 0.25) = 36 -> 50 + 2 × 11 = 72.
        let mut h = [None; 12];
        h[0] = Some(40.0);
        h[2] = Some(20.0);
        assert!((nowcast(&h).unwrap() - 36.0).abs() < 1e-12);
        assert_eq!(pm25_only(h).unwrap().aqi, 72);
        // A steep rise: w* = 10/100 = 0.1 is held at 0.5.
        let mut rise = [Some(10.0); 12];
        rise[0] = Some(100.0);
        let expected = (100.0 + 10.0 * (1..12).map(|i| 0.5f64.powi(i)).sum::<f64>())
            / (0..12).map(|i| 0.5f64.powi(i)).sum::<f64>();
        assert!((nowcast(&rise).unwrap() - expected).abs() < 1e-9);
        // Slowly varying: w* = 30/40 = 0.75 is used as it is.
        let slow: [Option<f64>; 12] = std::array::from_fn(|i| Some(40.0 - i as f64 * 10.0 / 11.0));
        let w: f64 = 30.0 / 40.0;
        let (n, d) = (0..12).fold((0.0, 0.0), |(n, d), i| {
            (
                n + w.powi(i) * (40.0 - i as f64 * 10.0 / 11.0),
                d + w.powi(i),
            )
        });
        assert!((nowcast(&slow).unwrap() - n / d).abs() < 1e-9);
    }

    #[test]
    fn nowcast_needs_two_of_the_last_three_hours() {
        let mut h = [Some(30.0); 12];
        h[1] = None;
        h[2] = None;
        let e = pm25_only(h).unwrap_err();
        assert!(e.reason.contains("1 present"), "{}", e.reason);
        h[2] = Some(30.0);
        assert!(pm25_only(h).is_ok(), "2 of 3 is enough");
    }

    #[test]
    fn band_edges() {
        let at = |c: f64| pm25_only(steady(c)).unwrap();
        assert_eq!((at(25.0).aqi, at(25.0).band), (50, Band::Good));
        assert_eq!((at(25.2).aqi, at(25.2).band), (50, Band::Good)); // 50.4 rounds down
        assert_eq!((at(25.3).aqi, at(25.3).band), (51, Band::Moderate)); // 50.6 rounds up
        let pm10 = |c: f64| {
            hourly(&HourlyInputs {
                pm10: steady(c),
                ..Default::default()
            })
            .unwrap()
        };
        assert_eq!((pm10(150.0).aqi, pm10(150.0).band), (100, Band::Moderate));
        assert_eq!((pm10(151.0).aqi, pm10(151.0).band), (101, Band::Poor)); // 100.5 rounds up
        assert_eq!(Band::of(150), Band::Poor);
        assert_eq!(Band::of(151), Band::Bad);
        assert_eq!(Band::of(200), Band::Bad);
        assert_eq!(Band::of(201), Band::VeryBad);
        assert_eq!(Band::of(300), Band::VeryBad);
        assert_eq!(Band::of(301), Band::Hazardous);
        assert_eq!(Band::of(301).name_vi(), "Nguy hại");
    }

    #[test]
    fn values_past_the_table_hold_at_500() {
        let a = pm25_only(steady(600.0)).unwrap();
        assert_eq!((a.aqi, a.band), (500, Band::Hazardous));
        assert!(a.sub_indices[0].above_scale);
        let top = pm25_only(steady(500.0)).unwrap();
        assert_eq!(top.aqi, 500);
        assert!(!top.sub_indices[0].above_scale);
    }

    #[test]
    fn pm10_alone_is_enough_and_gases_can_dominate() {
        let only_pm10 = hourly(&HourlyInputs {
            pm10: steady(100.0), // 50 + 50/100 × 50 = 75
            ..Default::default()
        })
        .unwrap();
        assert_eq!((only_pm10.aqi, only_pm10.dominant), (75, Pollutant::Pm10));
        let with_no2 = hourly(&HourlyInputs {
            pm25: steady(30.0), // 60
            no2: Some(160.0),   // 50 + 50/100 × 60 = 80
            co: Some(10_000.0), // 50
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            (with_no2.aqi, with_no2.dominant, with_no2.band),
            (80, Pollutant::No2, Band::Moderate)
        );
        assert_eq!(with_no2.sub_indices.len(), 3);
    }

    #[test]
    fn gases_without_pm_give_no_index() {
        let e = hourly(&HourlyInputs {
            no2: Some(500.0),
            o3: Some(100.0),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.reason.contains("PM2.5 or PM10"), "{}", e.reason);
    }

    #[test]
    fn daily_uses_24h_pm_means_and_the_larger_ozone_index() {
        // O3: 1-hour max 180 -> 50 + 50/40 × 20 = 75; 8-hour max 110 -> 50 + 50/20 × 10 = 75;
        // 8-hour max 130 -> 100 + 50/50 × 10 = 110 wins.
        let d = daily(&DailyInputs {
            pm25: Some(20.0), // 40
            o3_1h_max: Some(180.0),
            o3_8h_max: Some(130.0),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            (d.aqi, d.dominant, d.band),
            (110, Pollutant::O3, Band::Poor)
        );
        // Past the 8-hour table (400 µg/m³), the 1-hour value decides:
        // 700 -> 200 + 100/400 × 300 = 275.
        let high = daily(&DailyInputs {
            pm10: Some(40.0),
            o3_1h_max: Some(700.0),
            o3_8h_max: Some(450.0),
            ..Default::default()
        })
        .unwrap();
        assert_eq!((high.aqi, high.dominant), (275, Pollutant::O3));
        assert!(daily(&DailyInputs {
            no2_max: Some(10.0),
            ..Default::default()
        })
        .is_err());
    }
}
