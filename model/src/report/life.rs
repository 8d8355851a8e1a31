//! A report's life as events, and the fold that turns them into its current state.
//!
//! `ioc.reports` (keyed by report id) is the record of truth. Each event carries `seq`, its
//! position in the report's life: `report.created` is 0 and every transition the next number.
//! Writers take `seq` from the state they saw; if two writers race, both events reach the
//! topic, and every reader keeps the *first* event with a given `seq` in partition order and
//! ignores the other ([`Report::apply`] says [`Applied::Stale`]). So the core, the store and a
//! replay after a crash all arrive at the same life, and the loser is told 409.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, FixedOffset};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{next, service, Actor, ReportState, Step, StepError};
use crate::id::LocalId;

/// How the reporter can be reached. Private: on the topic and in the store, never on maps
/// or in Open311 answers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Contact {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
}

/// Where a report went and why (decided at intake, see [`super::routing`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Routing {
    /// Units containing the report, deepest first.
    pub units: Vec<LocalId>,
    /// Their names, same order.
    pub unit_names: Vec<String>,
    /// The agency that handles it; `None`: the IOC operators' queue.
    pub agency: Option<LocalId>,
    pub agency_name: Option<String>,
    /// The route that matched, in words ("infra.* tại hg-vi-thanh").
    pub rule: String,
    /// Administrative level of the unit the route matched at ("phường", "huyện"...).
    pub level: Option<String>,
}

/// How often a reporter may reopen one report (operators are not bound by it): reopening
/// without end would keep a closed matter on an agency's queue forever.
pub const MAX_REPORTER_REOPENS: u32 = 3;

/// `report.created`: everything the citizen sent, plus the routing and deadline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportCreated {
    pub id: LocalId,
    pub event_id: Uuid,
    pub service_code: String,
    pub description: String,
    pub lat: f64,
    pub lon: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Photos: links the citizen gave and photos uploaded here.
    #[serde(default)]
    pub media: Vec<String>,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    #[serde(default)]
    pub contact: Contact,
    /// Who filed it, as `role:sub` (the reporter may reopen; a token of another role with
    /// the same `sub` is somebody else).
    pub reporter: String,
    /// The role it was filed under (`citizen` for events written before roles were kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reporter_role: Option<String>,
    pub requested: DateTime<FixedOffset>,
    pub routing: Routing,
    /// Hours allowed to resolve it.
    pub deadline_h: u32,
}

/// `report.transition`: one step of the life.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportTransition {
    pub report: LocalId,
    pub event_id: Uuid,
    /// Position in the report's life (created is 0).
    pub seq: u32,
    pub step: Step,
    /// Who took it: token subject.
    pub by: String,
    /// Their role.
    pub role: String,
    pub at: DateTime<FixedOffset>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub from: ReportState,
    pub to: ReportState,
    /// Agency name when the step assigns one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agency_name: Option<String>,
}

/// One line of a report's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub seq: u32,
    pub event_id: Uuid,
    pub at: DateTime<FixedOffset>,
    pub by: String,
    pub role: String,
    /// `created`, `assign`, `start`, `resolve`, `reject`, `close`, `reopen`.
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<ReportState>,
    pub to: ReportState,
    /// Result, reason, agency or note, as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A report as it stands: what maps, queues and Open311 answers show (no contact details).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub id: LocalId,
    pub service_code: String,
    pub service_name: String,
    pub description: String,
    pub lat: f64,
    pub lon: f64,
    pub address: Option<String>,
    pub media: Vec<String>,
    pub attributes: BTreeMap<String, String>,
    pub requested: DateTime<FixedOffset>,
    pub updated: DateTime<FixedOffset>,
    pub state: ReportState,
    /// Number of the last event applied.
    pub seq: u32,
    pub units: Vec<LocalId>,
    pub unit_names: Vec<String>,
    pub agency: Option<LocalId>,
    pub agency_name: Option<String>,
    pub routing_rule: String,
    pub level: Option<String>,
    pub deadline_h: u32,
    /// When it must be resolved (moves on reopen).
    pub deadline: DateTime<FixedOffset>,
    pub resolved_at: Option<DateTime<FixedOffset>>,
    pub result: Option<String>,
    pub reject_reason: Option<String>,
    pub reopened: u32,
    pub history: Vec<HistoryEntry>,
}

/// What [`Report::apply`] did with an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The event is the report's next step.
    Yes,
    /// Its `seq` is taken already (a replay, or the loser of a race): ignored.
    Stale,
    /// A gap: `seq` is beyond the next one (should not happen on one partition).
    Gap { expected: u32, got: u32 },
    /// The step is not legal from the current state (a writer raced past its check).
    Refused(String),
}

impl Report {
    /// The report a `report.created` event starts.
    pub fn created(c: &ReportCreated) -> Self {
        let state = if c.routing.agency.is_some() {
            ReportState::Assigned
        } else {
            ReportState::Received
        };
        let mut history = vec![HistoryEntry {
            seq: 0,
            event_id: c.event_id,
            at: c.requested,
            by: c.reporter.clone(),
            role: c.reporter_role.clone().unwrap_or_else(|| "citizen".into()),
            action: "created".into(),
            from: None,
            to: ReportState::Received,
            text: None,
            note: None,
        }];
        if let Some(agency) = &c.routing.agency {
            history.push(HistoryEntry {
                seq: 0,
                event_id: c.event_id,
                at: c.requested,
                by: "ioc:routing".into(),
                role: "system".into(),
                action: "assign".into(),
                from: Some(ReportState::Received),
                to: ReportState::Assigned,
                text: Some(
                    c.routing
                        .agency_name
                        .clone()
                        .unwrap_or_else(|| agency.to_string()),
                ),
                note: Some(c.routing.rule.clone()),
            });
        }
        Report {
            id: c.id.clone(),
            service_code: c.service_code.clone(),
            service_name: service(&c.service_code)
                .map(|s| s.name.to_string())
                .unwrap_or_else(|| c.service_code.clone()),
            description: c.description.clone(),
            lat: c.lat,
            lon: c.lon,
            address: c.address.clone(),
            media: c.media.clone(),
            attributes: c.attributes.clone(),
            requested: c.requested,
            updated: c.requested,
            state,
            seq: 0,
            units: c.routing.units.clone(),
            unit_names: c.routing.unit_names.clone(),
            agency: c.routing.agency.clone(),
            agency_name: c.routing.agency_name.clone(),
            routing_rule: c.routing.rule.clone(),
            level: c.routing.level.clone(),
            deadline_h: c.deadline_h,
            deadline: c.requested + Duration::hours(i64::from(c.deadline_h)),
            resolved_at: None,
            result: None,
            reject_reason: None,
            reopened: 0,
            history,
        }
    }

    /// Is it still waiting for someone to act?
    pub fn is_open(&self) -> bool {
        matches!(
            self.state,
            ReportState::Received | ReportState::Assigned | ReportState::InProgress
        )
    }

    /// Open past its deadline.
    pub fn overdue(&self, now: DateTime<FixedOffset>) -> bool {
        self.is_open() && now > self.deadline
    }

    /// Resolved, and by its deadline.
    pub fn resolved_on_time(&self) -> Option<bool> {
        self.resolved_at.map(|t| t <= self.deadline)
    }

    /// The step `step` by `by` (role `role`, acting as `actor`) as the next event, or why not.
    pub fn transition(
        &self,
        step: Step,
        actor: Actor,
        by: &str,
        role: &str,
        note: Option<String>,
        at: DateTime<FixedOffset>,
    ) -> Result<ReportTransition, StepError> {
        if let Some(n) = &note {
            if n.chars().count() > 2000 {
                return Err(StepError::Invalid {
                    field: "note",
                    reason: "at most 2000 characters".into(),
                });
            }
        }
        if matches!(step, Step::Reopen { .. })
            && actor == Actor::Reporter
            && self.reopened >= MAX_REPORTER_REOPENS
        {
            return Err(StepError::Forbidden(format!(
                "reopened {} times already: a reporter may reopen a report at most {MAX_REPORTER_REOPENS} times; the IOC operators can reopen it further",
                self.reopened
            )));
        }
        let mut to = next(self.state, &step, actor)?;
        if matches!(step, Step::Reopen { .. }) && self.agency.is_none() {
            // Nobody to hand it back to: it goes to the operators' queue.
            to = ReportState::Received;
        }
        Ok(ReportTransition {
            report: self.id.clone(),
            event_id: Uuid::now_v7(),
            seq: self.seq + 1,
            step,
            by: by.to_string(),
            role: role.to_string(),
            at,
            note,
            from: self.state,
            to,
            agency_name: None,
        })
    }

    /// Applies the next event of the life (see the module note on `seq`).
    pub fn apply(&mut self, t: &ReportTransition) -> Applied {
        if t.seq <= self.seq {
            return Applied::Stale;
        }
        if t.seq != self.seq + 1 {
            return Applied::Gap {
                expected: self.seq + 1,
                got: t.seq,
            };
        }
        if t.from != self.state {
            return Applied::Refused(format!(
                "written from {:?} but the report is {:?}",
                t.from, self.state
            ));
        }
        let text = match &t.step {
            Step::Assign { agency } => {
                self.agency = LocalId::parse("agency", agency).ok();
                self.agency_name = t.agency_name.clone();
                Some(t.agency_name.clone().unwrap_or_else(|| agency.clone()))
            }
            Step::Start | Step::Close => None,
            Step::Resolve { result } => {
                self.result = Some(result.clone());
                self.resolved_at = Some(t.at);
                Some(result.clone())
            }
            Step::Reject { reason } => {
                self.reject_reason = Some(reason.clone());
                Some(reason.clone())
            }
            Step::Reopen { reason } => {
                self.reopened += 1;
                self.result = None;
                self.reject_reason = None;
                self.resolved_at = None;
                // A fresh deadline from the reopening.
                self.deadline = t.at + Duration::hours(i64::from(self.deadline_h));
                Some(reason.clone())
            }
        };
        self.history.push(HistoryEntry {
            seq: t.seq,
            event_id: t.event_id,
            at: t.at,
            by: t.by.clone(),
            role: t.role.clone(),
            action: t.step.action().into(),
            from: Some(t.from),
            to: t.to,
            text,
            note: t.note.clone(),
        });
        self.state = t.to;
        self.seq = t.seq;
        self.updated = t.at;
        Applied::Yes
    }

    /// Open311 `status_notes`: the richer state in words for the reporter.
    pub fn status_notes(&self) -> String {
        let agency = self
            .agency_name
            .clone()
            .unwrap_or_else(|| "Trung tâm IOC".into());
        match self.state {
            ReportState::Received => "Đã tiếp nhận, chờ chuyển đơn vị xử lý".into(),
            ReportState::Assigned => format!("Đã chuyển {agency} xử lý"),
            ReportState::InProgress => format!("{agency} đang xử lý"),
            ReportState::Resolved => format!(
                "Đã xử lý xong: {}",
                self.result.as_deref().unwrap_or_default()
            ),
            ReportState::Rejected => format!(
                "Từ chối: {}",
                self.reject_reason.as_deref().unwrap_or_default()
            ),
            ReportState::Closed => match (&self.result, &self.reject_reason) {
                (Some(r), _) => format!("Đã đóng. Kết quả: {r}"),
                (None, Some(r)) => format!("Đã đóng. Lý do từ chối: {r}"),
                _ => "Đã đóng".into(),
            },
        }
    }

    /// When the agency is expected to be done (Open311 `expected_datetime`).
    pub fn expected(&self) -> Option<DateTime<FixedOffset>> {
        self.is_open().then_some(self.deadline)
    }
}

impl Step {
    /// The step's name as it appears in the API and the history.
    pub fn action(&self) -> &'static str {
        match self {
            Step::Assign { .. } => "assign",
            Step::Start => "start",
            Step::Resolve { .. } => "resolve",
            Step::Reject { .. } => "reject",
            Step::Close => "close",
            Step::Reopen { .. } => "reopen",
        }
    }
}

pub use crate::spatial::distance_m;

/// How close in space and time two reports must be to be likely duplicates.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DuplicateRule {
    pub within_m: f64,
    pub within_h: u32,
}

impl Default for DuplicateRule {
    fn default() -> Self {
        Self {
            within_m: 50.0,
            within_h: 24,
        }
    }
}

impl DuplicateRule {
    /// Same category, within `within_m` metres and `within_h` hours of each other.
    pub fn matches(&self, a: &Report, b: &Report) -> bool {
        a.id != b.id
            && a.service_code == b.service_code
            && (a.requested - b.requested).num_seconds().abs() <= i64::from(self.within_h) * 3600
            && distance_m(a.lat, a.lon, b.lat, b.lon) <= self.within_m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339(s).unwrap()
    }

    pub(crate) fn created(agency: Option<&str>) -> ReportCreated {
        ReportCreated {
            id: LocalId::parse("id", "pa-20261123-abc").unwrap(),
            event_id: Uuid::now_v7(),
            service_code: "infra.drainage_flooding".into(),
            description: "Đường Trần Hưng Đạo ngập sâu sau mưa, xe máy chết máy".into(),
            lat: 9.7841,
            lon: 105.4701,
            address: Some("Trần Hưng Đạo, phường 5, Vị Thanh".into()),
            media: vec![],
            attributes: BTreeMap::new(),
            contact: Contact::default(),
            reporter: "citizen-1".into(),
            reporter_role: None,
            requested: t("2026-11-23T08:00:00+07:00"),
            routing: Routing {
                units: vec![LocalId::parse("id", "hg-vi-thanh").unwrap()],
                unit_names: vec!["Thành phố Vị Thanh".into()],
                agency: agency.map(|a| LocalId::parse("id", a).unwrap()),
                agency_name: agency.map(|_| "Phòng Quản lý đô thị TP Vị Thanh".into()),
                rule: "infra.* tại hg-vi-thanh".into(),
                level: Some("thành phố".into()),
            },
            deadline_h: 24,
        }
    }

    #[test]
    fn a_routed_report_starts_assigned_with_its_deadline() {
        let r = Report::created(&created(Some("hg-vt-qldt")));
        assert_eq!(r.state, ReportState::Assigned);
        assert_eq!(r.history.len(), 2, "received, then assigned by routing");
        assert_eq!(r.deadline, t("2026-11-24T08:00:00+07:00"));
        assert_eq!(r.service_name, "Thoát nước, ngập úng");
        let unrouted = Report::created(&created(None));
        assert_eq!(unrouted.state, ReportState::Received);
        assert!(unrouted.status_notes().contains("chờ chuyển"));
    }

    #[test]
    fn the_first_event_with_a_seq_wins_and_replays_change_nothing() {
        let mut r = Report::created(&created(Some("hg-vt-qldt")));
        let at = t("2026-11-23T09:00:00+07:00");
        let start = r
            .transition(Step::Start, Actor::AssignedAgency, "a", "agency", None, at)
            .unwrap();
        let reject = r
            .transition(
                Step::Reject {
                    reason: "Trùng".into(),
                },
                Actor::Operator,
                "o",
                "operator",
                None,
                at,
            )
            .unwrap();
        assert_eq!(r.apply(&start), Applied::Yes);
        assert_eq!(r.apply(&reject), Applied::Stale, "the race's loser");
        assert_eq!(r.apply(&start), Applied::Stale, "a replay");
        assert_eq!(r.state, ReportState::InProgress);
        assert_eq!(r.history.len(), 3);
    }

    #[test]
    fn resolving_late_counts_as_late_and_reopen_gives_a_new_deadline() {
        let mut r = Report::created(&created(Some("hg-vt-qldt")));
        assert!(!r.overdue(t("2026-11-24T07:59:00+07:00")));
        assert!(r.overdue(t("2026-11-24T08:01:00+07:00")));
        let late = t("2026-11-24T10:00:00+07:00");
        let res = r
            .transition(
                Step::Resolve {
                    result: "Đã nạo vét cống".into(),
                },
                Actor::AssignedAgency,
                "a",
                "agency",
                None,
                late,
            )
            .unwrap();
        assert_eq!(r.apply(&res), Applied::Yes);
        assert_eq!(r.resolved_on_time(), Some(false));
        assert!(
            !r.overdue(late + Duration::days(3)),
            "resolved is not overdue"
        );
        assert_eq!(r.status_notes(), "Đã xử lý xong: Đã nạo vét cống");
        let reopen_at = t("2026-11-25T08:00:00+07:00");
        let reopen = r
            .transition(
                Step::Reopen {
                    reason: "Vẫn còn ngập".into(),
                },
                Actor::Reporter,
                "citizen-1",
                "citizen",
                None,
                reopen_at,
            )
            .unwrap();
        assert_eq!(r.apply(&reopen), Applied::Yes);
        assert_eq!(r.state, ReportState::Assigned);
        assert_eq!(r.deadline, t("2026-11-26T08:00:00+07:00"));
        assert_eq!(r.resolved_on_time(), None);
        assert_eq!(r.reopened, 1);
        // A reporter may reopen at most MAX_REPORTER_REOPENS times; operators further.
        r.reopened = MAX_REPORTER_REOPENS;
        let resolve = |r: &Report| {
            r.transition(
                Step::Resolve {
                    result: "Xong".into(),
                },
                Actor::AssignedAgency,
                "a",
                "agency",
                None,
                reopen_at,
            )
            .unwrap()
        };
        assert_eq!(r.apply(&resolve(&r)), Applied::Yes);
        let again = |actor| {
            r.transition(
                Step::Reopen {
                    reason: "Vẫn còn".into(),
                },
                actor,
                "citizen-1",
                "citizen",
                None,
                reopen_at,
            )
        };
        assert!(
            matches!(again(Actor::Reporter), Err(StepError::Forbidden(m)) if m.contains("at most 3"))
        );
        assert!(again(Actor::Operator).is_ok());
    }

    #[test]
    fn likely_duplicates_are_same_category_close_in_space_and_time() {
        let rule = DuplicateRule::default();
        let a = Report::created(&created(None));
        let mut c = created(None);
        c.id = LocalId::parse("id", "pa-20261123-def").unwrap();
        c.lat += 0.0003; // about 33 m north
        c.requested = t("2026-11-24T07:00:00+07:00");
        let b = Report::created(&c);
        assert!(rule.matches(&a, &b));
        c.lat += 0.0003; // about 67 m
        assert!(!rule.matches(&a, &Report::created(&c)));
        c.lat -= 0.0003;
        c.requested = t("2026-11-24T08:30:00+07:00");
        assert!(!rule.matches(&a, &Report::created(&c)), "more than a day");
        c.requested = t("2026-11-23T09:00:00+07:00");
        c.service_code = "env.waste".into();
        assert!(!rule.matches(&a, &Report::created(&c)), "other category");
        assert!((distance_m(9.0, 105.0, 9.0003, 105.0) - 33.36).abs() < 0.1);
    }
}
