//! The alert book: rules observe station state and raise one alert per condition and entity;
//! acknowledgements and clears arrive as events; unacknowledged alerts escalate; cleared ones
//! stay on the layer for a while, then leave it (history keeps them).
//!
//! Pure logic: the caller feeds observations, actions and clock ticks, and publishes the
//! transitions it gets back.

use std::collections::HashMap;

use chrono::{DateTime, Duration, FixedOffset};
use model::alert::{Alert, AlertAction, AlertState, Severity};
use model::aqi::Band;
use model::salinity::RiskBands;
use model::{EntityId, LocalId};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RulesConfig {
    /// Rules on at all (benchmarks compare on and off).
    pub enabled: bool,
    /// A salinity warning must last this long (event time) before it raises an alert.
    pub salinity_min_duration_s: i64,
    /// Hourly VN_AQI bands from which an alert is raised.
    pub aqi_alert_from: Band,
    /// A station is stale after this many of its reading intervals without a reading.
    pub stale_multiple: f64,
    /// An unacknowledged alert escalates after this long, and again after each further period.
    pub escalate_after_s: i64,
    /// Cleared alerts stay on the alerts layer this long.
    pub cleared_kept_s: i64,
    /// How often stale sensors and escalations are checked, ms.
    pub tick_ms: u64,
    /// Risk levels from the inland reach of the 4‰ line: `[[km, level], ...]`.
    pub salinity_risk_bands: RiskBands,
    /// How often salinity forecasts are made (needs a history store), s; 0 = never.
    pub forecast_every_s: u64,
    /// Hours a forecast looks ahead (at most 72).
    pub forecast_horizon_h: u32,
    /// A camera stalled or offline this long raises a `camera_down` alert.
    pub camera_down_after_s: i64,
    /// A camera whose video worker sent no `camera.status` this long (workers report every
    /// `video.stats_every_s`) is shown `unknown`, not its last state, and counts as down: a
    /// dead worker must not leave cameras "online" on the map. 0 = never.
    pub camera_silent_after_s: i64,
    /// How complete a day must be for a daily VN_AQI (the project's rule; Decision 1459
    /// sets none).
    pub aqi_completeness: crate::air::Completeness,
}

impl Default for RulesConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            salinity_min_duration_s: 600,
            aqi_alert_from: Band::Poor,
            stale_multiple: 3.0,
            escalate_after_s: 900,
            cleared_kept_s: 86_400,
            tick_ms: 5000,
            salinity_risk_bands: RiskBands::default(),
            forecast_every_s: 3600,
            forecast_horizon_h: 24,
            camera_down_after_s: 120,
            camera_silent_after_s: 60,
            aqi_completeness: Default::default(),
        }
    }
}

/// What a rule sees of one entity at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub rule: &'static str,
    pub entity: EntityId,
    pub entity_name: String,
    pub agency: Option<LocalId>,
    /// The condition holds now.
    pub holds: bool,
    /// How long it must hold before an alert is raised.
    pub min_duration: Duration,
    pub severity: Severity,
    pub title: String,
    pub detail: String,
    pub value: Option<f64>,
    /// Custom zones containing the entity: id and name.
    pub zones: Vec<(LocalId, String)>,
    /// The access group of the camera the observation is about, if it is one.
    pub camera_group: Option<model::CameraGroup>,
    /// About a sensitive matter (see [`model::alert::Alert::sensitive`]).
    pub sensitive: bool,
}

impl Observation {
    /// A warning-level observation of `entity` under `rule`, holding or not, with no text yet.
    pub fn new(
        rule: &'static str,
        entity: EntityId,
        entity_name: String,
        agency: Option<LocalId>,
        holds: bool,
    ) -> Self {
        Self {
            rule,
            entity,
            entity_name,
            agency,
            holds,
            min_duration: Duration::zero(),
            severity: Severity::Warning,
            title: String::new(),
            detail: String::new(),
            value: None,
            zones: Vec::new(),
            camera_group: None,
            sensitive: false,
        }
    }
}

/// What changed; the caller publishes it.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    Raised(Alert),
    /// Severity or headline changed while active.
    Updated(Alert),
    Acked(Alert),
    Cleared(Alert),
    Escalated(Alert),
    /// A cleared alert left the layer.
    Expired(Alert),
}

type Key = (&'static str, EntityId);

/// Escalation levels an unacknowledged alert climbs at most.
pub const MAX_ESCALATION: u32 = 3;

#[derive(Debug, Default)]
pub struct AlertBook {
    config: RulesConfig,
    /// Active alert id per condition and entity.
    active: HashMap<(String, EntityId), String>,
    /// Active and recently cleared alerts by id.
    alerts: HashMap<String, Alert>,
    /// When a condition that has not raised an alert yet started to hold.
    pending: HashMap<Key, DateTime<FixedOffset>>,
}

impl AlertBook {
    pub fn new(config: RulesConfig) -> Self {
        Self {
            config,
            ..Default::default()
        }
    }

    pub fn config(&self) -> &RulesConfig {
        &self.config
    }

    /// Takes back alerts from the state topic after a restart.
    pub fn restore(&mut self, alert: Alert) {
        if alert.state.is_active() {
            self.active
                .insert((alert.rule.clone(), alert.entity.clone()), alert.id.clone());
        }
        self.alerts.insert(alert.id.clone(), alert);
    }

    pub fn get(&self, id: &str) -> Option<&Alert> {
        self.alerts.get(id)
    }

    pub fn active_count(&self) -> usize {
        self.active.len()
    }

    /// Feeds one observation made at `at`.
    pub fn observe(&mut self, o: Observation, at: DateTime<FixedOffset>) -> Option<Transition> {
        let key = (o.rule.to_string(), o.entity.clone());
        if !o.holds {
            self.pending.remove(&(o.rule, o.entity.clone()));
            let id = self.active.remove(&key)?;
            let alert = self.alerts.get_mut(&id)?;
            alert.state = AlertState::Cleared;
            alert.cleared_at = Some(at);
            alert.cleared_by = Some("auto".into());
            alert.clear_note = Some("điều kiện đã kết thúc (condition ended)".into());
            return Some(Transition::Cleared(alert.clone()));
        }
        if let Some(id) = self.active.get(&key) {
            let alert = self.alerts.get_mut(id)?;
            if alert.severity != o.severity || alert.title != o.title {
                alert.severity = o.severity;
                alert.title = o.title;
                alert.detail = o.detail;
                alert.value = o.value;
                return Some(Transition::Updated(alert.clone()));
            }
            return None;
        }
        let since = *self.pending.entry((o.rule, o.entity.clone())).or_insert(at);
        if at - since < o.min_duration {
            return None;
        }
        self.pending.remove(&(o.rule, o.entity.clone()));
        let mut detail = o.detail;
        if !o.zones.is_empty() {
            let names: Vec<&str> = o.zones.iter().map(|z| z.1.as_str()).collect();
            detail.push_str(&format!(" · trong vùng: {}", names.join(", ")));
        }
        let alert = Alert {
            id: uuid::Uuid::now_v7().simple().to_string(),
            rule: o.rule.to_string(),
            entity: o.entity,
            entity_name: o.entity_name,
            state: AlertState::Raised,
            severity: o.severity,
            title: o.title,
            detail,
            value: o.value,
            agency: o.agency,
            raised_at: at,
            acked_at: None,
            acked_by: None,
            ack_note: None,
            cleared_at: None,
            cleared_by: None,
            clear_note: None,
            escalation: 0,
            zone_names: o.zones.iter().map(|z| z.1.clone()).collect(),
            zones: o.zones.into_iter().map(|z| z.0).collect(),
            camera_group: o.camera_group,
            sensitive: o.sensitive,
        };
        self.active.insert(key, alert.id.clone());
        self.alerts.insert(alert.id.clone(), alert.clone());
        Some(Transition::Raised(alert))
    }

    /// An acknowledgement: only a raised alert can be acknowledged.
    pub fn ack(&mut self, a: &AlertAction) -> Option<Transition> {
        let alert = self.alerts.get_mut(&a.alert)?;
        if alert.state != AlertState::Raised {
            return None;
        }
        alert.state = AlertState::Acknowledged;
        alert.acked_at = Some(a.at);
        alert.acked_by = Some(a.by.clone());
        alert.ack_note = a.note.clone();
        Some(Transition::Acked(alert.clone()))
    }

    /// A clear by somebody: any active alert. The condition may raise a new one later.
    pub fn clear(&mut self, a: &AlertAction) -> Option<Transition> {
        let alert = self.alerts.get_mut(&a.alert)?;
        if !alert.state.is_active() {
            return None;
        }
        alert.state = AlertState::Cleared;
        alert.cleared_at = Some(a.at);
        alert.cleared_by = Some(a.by.clone());
        alert.clear_note = a.note.clone();
        self.active
            .remove(&(alert.rule.clone(), alert.entity.clone()));
        Some(Transition::Cleared(alert.clone()))
    }

    /// Escalates unacknowledged alerts and lets old cleared ones go, as of `now`.
    pub fn tick(&mut self, now: DateTime<FixedOffset>) -> Vec<Transition> {
        let mut out = Vec::new();
        let every = Duration::seconds(self.config.escalate_after_s.max(1));
        let keep = Duration::seconds(self.config.cleared_kept_s.max(0));
        let mut expired = Vec::new();
        for alert in self.alerts.values_mut() {
            match alert.state {
                AlertState::Raised => {
                    // One step per period unacknowledged, at most MAX_ESCALATION; an alert
                    // found long overdue (after a restart, or raised from old readings)
                    // jumps straight to its level in one transition.
                    let periods = (now - alert.raised_at).num_seconds() / every.num_seconds();
                    let level = periods.clamp(0, i64::from(MAX_ESCALATION)) as u32;
                    if level > alert.escalation {
                        alert.escalation = level;
                        if alert.severity < Severity::Critical {
                            alert.severity = match alert.severity {
                                Severity::Info => Severity::Warning,
                                _ => Severity::Critical,
                            };
                        }
                        out.push(Transition::Escalated(alert.clone()));
                    }
                }
                AlertState::Cleared => {
                    if alert.cleared_at.is_some_and(|c| now - c >= keep) {
                        expired.push(alert.id.clone());
                    }
                }
                AlertState::Acknowledged => {}
            }
        }
        for id in expired {
            if let Some(a) = self.alerts.remove(&id) {
                out.push(Transition::Expired(a));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(min: i64) -> DateTime<FixedOffset> {
        FixedOffset::east_opt(7 * 3600)
            .unwrap()
            .with_ymd_and_hms(2026, 3, 2, 6, 0, 0)
            .unwrap()
            + Duration::minutes(min)
    }

    fn obs(holds: bool, severity: Severity, title: &str) -> Observation {
        Observation {
            rule: "salinity_warning",
            entity: EntityId::new(
                model::EntityKind::Station,
                &LocalId::parse("s", "hg-vt-sal-01").unwrap(),
            ),
            entity_name: "Cái Lớn – Vị Thanh".into(),
            agency: None,
            holds,
            min_duration: Duration::minutes(10),
            severity,
            title: title.into(),
            detail: String::new(),
            value: Some(4.5),
            zones: vec![],
            camera_group: None,
            sensitive: false,
        }
    }

    fn action(id: &str, at: DateTime<FixedOffset>) -> AlertAction {
        AlertAction {
            alert: id.into(),
            by: "operator-1".into(),
            note: Some("đã báo Sở NN&PTNT".into()),
            at,
        }
    }

    #[test]
    fn a_condition_raises_one_alert_after_its_minimum_duration() {
        let mut b = AlertBook::new(RulesConfig::default());
        let w = || obs(true, Severity::Warning, "Độ mặn ở mức cảnh báo");
        assert_eq!(b.observe(w(), t(0)), None, "not yet 10 minutes");
        assert_eq!(b.observe(w(), t(5)), None);
        let Some(Transition::Raised(a)) = b.observe(w(), t(10)) else {
            panic!()
        };
        assert_eq!((a.state, a.raised_at), (AlertState::Raised, t(10)));
        // Holding on raises nothing more: one alert per condition and entity.
        for m in 11..40 {
            assert_eq!(b.observe(w(), t(m)), None);
        }
        assert_eq!(b.active_count(), 1);
        // A short blip below does not raise (the minimum duration starts again).
        let mut c = AlertBook::new(RulesConfig::default());
        c.observe(w(), t(0));
        c.observe(obs(false, Severity::Warning, ""), t(5));
        assert_eq!(c.observe(w(), t(12)), None, "the condition restarted at 12");
    }

    #[test]
    fn life_raised_acknowledged_cleared() {
        let mut b = AlertBook::new(RulesConfig {
            salinity_min_duration_s: 0,
            ..Default::default()
        });
        let mut o = obs(true, Severity::Warning, "Độ mặn ở mức cảnh báo");
        o.min_duration = Duration::zero();
        let Some(Transition::Raised(a)) = b.observe(o.clone(), t(0)) else {
            panic!()
        };
        let Some(Transition::Acked(acked)) = b.ack(&action(&a.id, t(3))) else {
            panic!()
        };
        assert_eq!(acked.acked_by.as_deref(), Some("operator-1"));
        assert_eq!(acked.ack_note.as_deref(), Some("đã báo Sở NN&PTNT"));
        assert_eq!(b.ack(&action(&a.id, t(4))), None, "acknowledged once");
        // A change of severity updates the same alert.
        let mut worse = o.clone();
        worse.severity = Severity::Critical;
        assert!(
            matches!(b.observe(worse, t(5)), Some(Transition::Updated(u)) if u.id == a.id && u.state == AlertState::Acknowledged)
        );
        // The condition ends: cleared automatically.
        let Some(Transition::Cleared(c)) = b.observe(obs(false, Severity::Warning, ""), t(20))
        else {
            panic!()
        };
        assert_eq!(
            (c.cleared_by.as_deref(), c.cleared_at),
            (Some("auto"), Some(t(20)))
        );
        assert_eq!(b.clear(&action(&a.id, t(21))), None, "already cleared");
        // The condition returns: a new alert.
        let Some(Transition::Raised(again)) = b.observe(o, t(30)) else {
            panic!()
        };
        assert_ne!(again.id, a.id);
    }

    #[test]
    fn unacknowledged_alerts_escalate_and_cleared_ones_leave_the_layer() {
        let cfg = RulesConfig {
            escalate_after_s: 900,
            cleared_kept_s: 3600,
            ..Default::default()
        };
        let mut b = AlertBook::new(cfg);
        let mut o = obs(true, Severity::Warning, "x");
        o.min_duration = Duration::zero();
        let Some(Transition::Raised(a)) = b.observe(o, t(0)) else {
            panic!()
        };
        assert!(b.tick(t(14)).is_empty());
        let up = b.tick(t(15));
        assert!(
            matches!(&up[..], [Transition::Escalated(e)] if e.escalation == 1 && e.severity == Severity::Critical)
        );
        assert!(b.tick(t(16)).is_empty(), "once per period");
        assert_eq!(b.tick(t(30)).len(), 1, "and again after the next");
        // Long overdue: straight to the top level, in one step, and no further.
        assert!(
            matches!(&b.tick(t(300))[..], [Transition::Escalated(e)] if e.escalation == MAX_ESCALATION)
        );
        assert!(b.tick(t(400)).is_empty());
        // An operator clears it by hand; an hour later it leaves the layer.
        assert!(
            matches!(b.clear(&action(&a.id, t(31))), Some(Transition::Cleared(c)) if c.cleared_by.as_deref() == Some("operator-1"))
        );
        assert!(b.tick(t(60)).is_empty());
        assert!(matches!(&b.tick(t(91))[..], [Transition::Expired(e)] if e.id == a.id));
        assert!(b.get(&a.id).is_none());
    }
}
