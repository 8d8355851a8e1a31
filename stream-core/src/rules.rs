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
    Observation {
        rule,
        entity: state.entity(),
        entity_name: state.station.name.clone(),
        agency: state.station.agency.clone(),
        holds,
        min_duration: Duration::zero(),
        severity: Severity::Warning,
        title: String::new(),
        detail: String::new(),
        value: None,
        zones: Vec::new(),
    }
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
            vec![o]
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
