//! The alert rules: what each station's state says about conditions an operator must act on.
//!
//! - `salinity_warning`: the station's salinity level is "warning" (its own thresholds, with
//!   hysteresis), for at least `salinity_min_duration_s` of event time;
//! - `aqi`: the hourly VN_AQI is in `aqi_alert_from` or a worse band (the alert follows band
//!   changes: severity and headline update);
//! - `stale`: no reading for `stale_multiple` × the station's interval (wall clock).

use chrono::{DateTime, Duration, Utc};
use model::alert::Severity;
use model::aqi::Band;
use model::salinity::SalinityLevel;
use model::{Parameter, StationKind};

use crate::alerts::{Observation, RulesConfig};
use crate::station::StationState;

/// Who clears an alert whose condition ended.
pub const AUTO: &str = "auto";

fn observation(state: &StationState, rule: &'static str, holds: bool) -> Observation {
    Observation::new(
        rule,
        state.entity(),
        state.station.name.clone(),
        state.station.agency.clone(),
        holds,
    )
}

/// Observations after a station's state changed with readings.
pub fn on_reading(state: &StationState, cfg: &RulesConfig) -> Vec<Observation> {
    match state.station.kind {
        StationKind::Salinity => {
            let value = state
                .props
                .latest
                .get(&Parameter::Salinity)
                .map(|l| l.value);
            let Some(v) = value else { return vec![] };
            let levels = state.station.salinity_levels.unwrap_or_default();
            let holds = state.props.salinity_level == Some(SalinityLevel::Warning);
            let mut o = observation(state, "salinity_warning", holds);
            o.min_duration = Duration::seconds(cfg.salinity_min_duration_s.max(0));
            o.severity = if v >= 2.0 * levels.warning {
                Severity::Critical
            } else {
                Severity::Warning
            };
            o.title = format!("Độ mặn ở mức cảnh báo (≥ {}‰)", levels.warning);
            o.detail = format!(
                "{}: {v:.2}‰{}",
                state.station.name,
                state
                    .station
                    .river
                    .as_deref()
                    .map(|r| format!(" trên {r}"))
                    .unwrap_or_default()
            );
            o.value = Some(v);
            vec![o, forecast_warning(state, &levels)]
        }
        StationKind::AirQuality => {
            let Some(aqi) = state.props.aqi.as_ref() else {
                return vec![];
            };
            let band = aqi.value.map(Band::of);
            let holds = band.is_some_and(|b| b >= cfg.aqi_alert_from);
            let mut o = observation(state, "aqi", holds);
            if let (Some(v), Some(b)) = (aqi.value, band) {
                o.severity = if b >= Band::Bad {
                    Severity::Critical
                } else {
                    Severity::Warning
                };
                o.title = format!("Chất lượng không khí {}: VN_AQI {v}", b.name_vi());
                o.detail = format!(
                    "{}: VN_AQI giờ {} là {v} ({}), chất ô nhiễm chính {}",
                    state.station.name,
                    aqi.period.format("%H:%M %d/%m"),
                    b.name_vi(),
                    aqi.dominant.as_deref().unwrap_or("?")
                );
                o.value = Some(f64::from(v));
            }
            vec![o]
        }
    }
}

/// The latest forecast reaches the warning level while the station is not in warning yet
/// (once it is, `salinity_warning` speaks for it).
fn forecast_warning(
    state: &StationState,
    levels: &model::salinity::SalinityThresholds,
) -> Observation {
    let f = state.props.forecast.as_ref();
    let when = f.and_then(|f| f.reaches_warning_at);
    let holds = when.is_some() && state.props.salinity_level != Some(SalinityLevel::Warning);
    let mut o = observation(state, "salinity_forecast", holds);
    o.title = format!("Dự báo độ mặn đạt mức cảnh báo (≥ {}‰)", levels.warning);
    if let (Some(f), Some(when)) = (f, when) {
        o.detail = format!(
            "{}: dự báo đạt {}‰ lúc {}, đỉnh {:.2}‰ lúc {} (dự báo lúc {}{})",
            state.station.name,
            levels.warning,
            when.format("%H:%M %d/%m"),
            f.peak,
            f.peak_at.format("%H:%M %d/%m"),
            f.issued_at.format("%H:%M %d/%m"),
            f.backtest_mae
                .map(|m| format!(", sai số kiểm định {m:.2}‰"))
                .unwrap_or_default()
        );
        o.value = Some(f.peak);
    }
    o
}

/// Is the station silent for too long, as of `now`? Never-heard stations count from `started`.
pub fn stale(
    state: &StationState,
    cfg: &RulesConfig,
    now: DateTime<Utc>,
    started: DateTime<Utc>,
) -> Observation {
    let last = state
        .props
        .last_seen
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or(started);
    let limit = Duration::milliseconds(
        (f64::from(state.station.interval_s) * cfg.stale_multiple * 1000.0) as i64,
    );
    let silent = now - last;
    let mut o = observation(state, "stale", silent > limit);
    o.title = "Trạm không gửi số liệu".into();
    o.detail = format!(
        "{}: không có số liệu từ {} (quá {} lần chu kỳ {} s)",
        state.station.name,
        last.with_timezone(&vn()).format("%H:%M %d/%m"),
        cfg.stale_multiple,
        state.station.interval_s
    );
    o
}

fn vn() -> chrono::FixedOffset {
    chrono::FixedOffset::east_opt(7 * 3600).expect("valid offset")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forecaster::ForecastView;
    use chrono::{FixedOffset, TimeZone};
    use model::reading::Quality;
    use model::Reading;

    fn salinity_state(value: f64) -> StationState {
        let s = fixtures::stations::stations()
            .into_iter()
            .find(|s| s.kind == StationKind::Salinity)
            .unwrap();
        let mut st = StationState::new(s.clone(), vec![], vec![]);
        let t = FixedOffset::east_opt(7 * 3600)
            .unwrap()
            .with_ymd_and_hms(2026, 3, 2, 6, 0, 0)
            .unwrap();
        let r = Reading {
            station: s.id,
            parameter: Parameter::Salinity,
            ts: t,
            value,
            unit: Parameter::Salinity.canonical_unit(),
            quality: Quality::Good,
            sent_as: None,
        };
        st.apply(&r, 0, 1);
        st
    }

    fn forecast(warning_at: Option<i64>) -> ForecastView {
        let t = |h: i64| {
            FixedOffset::east_opt(7 * 3600)
                .unwrap()
                .with_ymd_and_hms(2026, 3, 2, 6, 0, 0)
                .unwrap()
                + Duration::hours(h)
        };
        ForecastView {
            issued_at: t(0),
            horizon_h: 24,
            peak: 4.6,
            peak_at: t(9),
            reaches_watch_at: Some(t(2)),
            reaches_warning_at: warning_at.map(t),
            backtest_mae: Some(0.1),
            hourly_means: 300,
        }
    }

    #[test]
    fn a_forecast_reaching_the_warning_level_holds_until_the_station_is_in_warning() {
        let cfg = RulesConfig::default();
        let rule = |st: &StationState| {
            on_reading(st, &cfg)
                .into_iter()
                .find(|o| o.rule == "salinity_forecast")
                .unwrap()
        };
        let mut st = salinity_state(2.0);
        assert!(!rule(&st).holds, "no forecast yet");
        st.props.forecast = Some(forecast(Some(7)));
        let o = rule(&st);
        assert!(o.holds);
        assert!(o.detail.contains("13:00 02/03"), "{}", o.detail);
        assert_eq!(o.value, Some(4.6));
        // The next forecast stays below: the condition ends.
        st.props.forecast = Some(forecast(None));
        assert!(!rule(&st).holds);
        // Already in warning: the warning alert covers it.
        let mut warn = salinity_state(5.0);
        warn.props.forecast = Some(forecast(Some(1)));
        assert!(!rule(&warn).holds);
    }
}
