//! Field reports (phản ánh hiện trường): the service catalogue offered through Open311
//! GeoReport v2, and a report's life as a state machine:
//!
//! ```text
//! received → assigned → in_progress → resolved (with a result) → closed
//!                   ↘                ↘ rejected (with a reason) → closed
//! resolved / rejected / closed → reopened by the reporter → assigned again
//! ```
//!
//! Who may make a step is part of the machine: operators route and close, the assigned agency
//! works the report, the reporter reopens. A step that does not exist from the current state
//! is [`StepError::Illegal`] (HTTP 409); one the actor may not take is
//! [`StepError::Forbidden`] (403). [`life`] folds a report's events into its current state;
//! [`routing`] decides which agency a new report goes to and by when it is due.

use serde::{Deserialize, Serialize};

pub mod life;
pub mod routing;

pub use life::{Report, ReportCreated, ReportTransition};
pub use routing::{RouteTable, Routed};

/// One category of the catalogue (Open311 `service`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Service {
    /// Stable code (Open311 `service_code`).
    pub code: &'static str,
    /// Vietnamese name (`service_name`).
    pub name: &'static str,
    pub name_en: &'static str,
    /// Open311 `group`.
    pub group: &'static str,
    /// Handling deadline in hours unless configured otherwise.
    pub deadline_h: u32,
}

/// An extra question a category asks (Open311 service definition `attribute`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attribute {
    pub code: &'static str,
    /// `string`, `number` or `singlevaluelist`.
    pub datatype: &'static str,
    pub required: bool,
    pub description: &'static str,
    /// (key, Vietnamese name) for lists.
    pub values: &'static [(&'static str, &'static str)],
}

/// The extra questions of a category (empty for most).
pub fn attributes(code: &str) -> &'static [Attribute] {
    const ROAD: &[Attribute] = &[Attribute {
        code: "damage_type",
        datatype: "singlevaluelist",
        required: false,
        description: "Loại hư hỏng",
        values: &[
            ("pothole", "Ổ gà"),
            ("subsidence", "Sụt lún"),
            ("crack", "Nứt mặt đường"),
            ("bridge", "Hư hỏng cầu"),
        ],
    }];
    const FLOOD: &[Attribute] = &[Attribute {
        code: "water_depth_cm",
        datatype: "number",
        required: false,
        description: "Độ sâu ngập ước tính (cm)",
        values: &[],
    }];
    const SALT: &[Attribute] = &[Attribute {
        code: "water_source",
        datatype: "singlevaluelist",
        required: true,
        description: "Nguồn nước bị ảnh hưởng",
        values: &[
            ("piped", "Nước máy"),
            ("well", "Giếng khoan"),
            ("river", "Nước sông, kênh"),
        ],
    }];
    match code {
        "traffic.road_damage" => ROAD,
        "infra.drainage_flooding" => FLOOD,
        "env.salinity_water" => SALT,
        _ => &[],
    }
}

const fn svc(
    code: &'static str,
    name: &'static str,
    name_en: &'static str,
    group: &'static str,
    deadline_h: u32,
) -> Service {
    Service {
        code,
        name,
        name_en,
        group,
        deadline_h,
    }
}

/// The categories of DOMAIN.md, with default deadlines (the documents give none: configure them).
pub const SERVICES: [Service; 12] = [
    svc(
        "order.security",
        "An ninh, trật tự",
        "Public order and security",
        "An ninh trật tự",
        24,
    ),
    svc(
        "social.welfare",
        "An sinh xã hội",
        "Social welfare",
        "An sinh xã hội",
        120,
    ),
    svc(
        "env.pollution",
        "Ô nhiễm môi trường",
        "Pollution",
        "Môi trường",
        72,
    ),
    svc("env.waste", "Rác thải", "Waste", "Môi trường", 48),
    svc(
        "env.salinity_water",
        "Xâm nhập mặn ảnh hưởng nước sinh hoạt",
        "Salinity affecting water supply",
        "Môi trường",
        24,
    ),
    svc(
        "traffic.road_damage",
        "Hư hỏng đường, cầu",
        "Road and bridge damage",
        "Giao thông",
        72,
    ),
    svc(
        "traffic.safety",
        "An toàn giao thông",
        "Traffic safety",
        "Giao thông",
        24,
    ),
    svc(
        "urban.encroachment",
        "Lấn chiếm lòng đường, vỉa hè",
        "Encroachment on streets and pavements",
        "Trật tự đô thị",
        72,
    ),
    svc(
        "urban.illegal_construction",
        "Xây dựng trái phép",
        "Illegal construction",
        "Trật tự đô thị",
        120,
    ),
    svc(
        "infra.lighting",
        "Chiếu sáng công cộng",
        "Street lighting",
        "Hạ tầng",
        72,
    ),
    svc(
        "infra.drainage_flooding",
        "Thoát nước, ngập úng",
        "Drainage and flooding",
        "Hạ tầng",
        24,
    ),
    svc(
        "infra.water_supply",
        "Cấp nước",
        "Water supply",
        "Hạ tầng",
        48,
    ),
];

/// Public-order reports are police matters: only those who see sensitive matters of the
/// agency handling them (and the reporter) may see them, or alerts about them.
pub fn is_sensitive(service_code: &str) -> bool {
    service_code.starts_with("order.")
}

/// Who may see a report, decided here for every reader (the map's reports layer, the
/// Open311 reads, the agencies' queues): a report that is not sensitive, anyone who may use
/// field reports at all (the role decides that, before); a public-order report, those whose
/// sensitive scope holds the agency handling it, and its reporter. `service_code: None` (a
/// record that cannot be read) counts as sensitive.
pub fn report_visible(
    service_code: Option<&str>,
    agency: Option<&str>,
    scope: &SensitiveScope,
    is_reporter: bool,
) -> bool {
    !service_code.is_none_or(is_sensitive) || scope.allows(agency) || is_reporter
}

/// Which sensitive matters (public-order reports, alerts about them) a caller may see.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SensitiveScope {
    /// None (the default: a scope nobody set sees nothing sensitive).
    #[default]
    None,
    /// Those handled by this agency.
    Agency(crate::LocalId),
    /// All of them (operators, admins, leaders, police).
    All,
}

impl SensitiveScope {
    /// May a caller with this scope see a sensitive matter handled by `agency`?
    pub fn allows(&self, agency: Option<&str>) -> bool {
        match self {
            SensitiveScope::None => false,
            SensitiveScope::Agency(mine) => agency == Some(mine.as_str()),
            SensitiveScope::All => true,
        }
    }
}

pub fn service(code: &str) -> Option<&'static Service> {
    SERVICES.iter().find(|s| s.code == code)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportState {
    Received,
    Assigned,
    InProgress,
    Resolved,
    Rejected,
    Closed,
}

impl ReportState {
    /// Open311 `status`.
    pub fn open311(self) -> &'static str {
        match self {
            ReportState::Closed | ReportState::Resolved | ReportState::Rejected => "closed",
            _ => "open",
        }
    }

    pub fn name_vi(self) -> &'static str {
        match self {
            ReportState::Received => "Đã tiếp nhận",
            ReportState::Assigned => "Đã chuyển xử lý",
            ReportState::InProgress => "Đang xử lý",
            ReportState::Resolved => "Đã xử lý xong",
            ReportState::Rejected => "Từ chối",
            ReportState::Closed => "Đã đóng",
        }
    }
}

/// Who takes a step, as far as the machine cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// IOC operators and admins.
    Operator,
    /// The agency the report is assigned to.
    AssignedAgency,
    /// Any other agency.
    OtherAgency,
    /// Whoever filed the report.
    Reporter,
}

/// A step of a report's life.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Step {
    /// Route to an agency (or re-route).
    Assign {
        agency: String,
    },
    /// The agency starts work.
    Start,
    /// Work done; the result is shown to the reporter.
    Resolve {
        result: String,
    },
    /// Not a matter to act on, with the reason.
    Reject {
        reason: String,
    },
    Close,
    /// The reporter disputes the outcome.
    Reopen {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    #[error("{0}")]
    Illegal(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

fn need_text(field: &'static str, v: &str) -> Result<(), StepError> {
    if v.trim().is_empty() || v.chars().count() > 2000 {
        return Err(StepError::Invalid {
            field,
            reason: "is required: 1-2000 characters".into(),
        });
    }
    Ok(())
}

/// The state after `step` taken by `actor` from `from`.
pub fn next(from: ReportState, step: &Step, actor: Actor) -> Result<ReportState, StepError> {
    use Actor::*;
    use ReportState::*;
    let (to, allowed): (Option<ReportState>, &[Actor]) = match (from, step) {
        (Received | Assigned, Step::Assign { agency }) => {
            need_text("agency", agency)?;
            (Some(Assigned), &[Operator])
        }
        (Assigned, Step::Start) => (Some(InProgress), &[AssignedAgency, Operator]),
        (Assigned | InProgress, Step::Resolve { result }) => {
            need_text("result", result)?;
            (Some(Resolved), &[AssignedAgency, Operator])
        }
        (Received | Assigned | InProgress, Step::Reject { reason }) => {
            need_text("reason", reason)?;
            (Some(Rejected), &[AssignedAgency, Operator])
        }
        (Resolved | Rejected, Step::Close) => (Some(Closed), &[Operator]),
        (Resolved | Rejected | Closed, Step::Reopen { reason }) => {
            need_text("reason", reason)?;
            (Some(Assigned), &[Reporter, Operator])
        }
        _ => (None, &[]),
    };
    let Some(to) = to else {
        return Err(StepError::Illegal(format!(
            "a report that is {} cannot take {:?}",
            serde_json::to_value(from)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            step
        )));
    };
    if !allowed.contains(&actor) {
        return Err(StepError::Forbidden(format!(
            "{actor:?} may not take this step"
        )));
    }
    Ok(to)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Actor::*;
    use ReportState::*;

    #[test]
    fn one_rule_says_who_sees_a_report() {
        let police = SensitiveScope::Agency(crate::LocalId::parse("agency", "hg-ca").unwrap());
        let anyone = SensitiveScope::None;
        // Not sensitive: everyone who may use field reports.
        assert!(report_visible(Some("env.flooding"), None, &anyone, false));
        // Public order: the agency's sensitive scope, everything scope, or the reporter.
        assert!(report_visible(
            Some("order.noise"),
            Some("hg-ca"),
            &police,
            false
        ));
        assert!(!report_visible(
            Some("order.noise"),
            Some("hg-ca"),
            &anyone,
            false
        ));
        assert!(!report_visible(
            Some("order.noise"),
            Some("other"),
            &police,
            false
        ));
        assert!(report_visible(
            Some("order.noise"),
            Some("other"),
            &SensitiveScope::All,
            false
        ));
        assert!(report_visible(Some("order.noise"), None, &anyone, true));
        // Unreadable: treated as sensitive.
        assert!(!report_visible(None, None, &anyone, false));
    }

    fn steps() -> Vec<Step> {
        vec![
            Step::Assign {
                agency: "hg-stnmt".into(),
            },
            Step::Start,
            Step::Resolve {
                result: "Đã nạo vét cống".into(),
            },
            Step::Reject {
                reason: "Không thuộc thẩm quyền".into(),
            },
            Step::Close,
            Step::Reopen {
                reason: "Vẫn còn ngập".into(),
            },
        ]
    }

    #[test]
    fn every_state_and_step_is_legal_or_a_conflict_exactly_as_drawn() {
        let legal: &[(ReportState, usize, ReportState)] = &[
            (Received, 0, Assigned),
            (Assigned, 0, Assigned),
            (Assigned, 1, InProgress),
            (Assigned, 2, Resolved),
            (InProgress, 2, Resolved),
            (Received, 3, Rejected),
            (Assigned, 3, Rejected),
            (InProgress, 3, Rejected),
            (Resolved, 4, Closed),
            (Rejected, 4, Closed),
            (Resolved, 5, Assigned),
            (Rejected, 5, Assigned),
            (Closed, 5, Assigned),
        ];
        let all = [Received, Assigned, InProgress, Resolved, Rejected, Closed];
        for from in all {
            for (i, step) in steps().iter().enumerate() {
                let expected = legal
                    .iter()
                    .find(|(f, s, _)| *f == from && *s == i)
                    .map(|t| t.2);
                match (next(from, step, Operator), expected) {
                    (Ok(to), Some(want)) => assert_eq!(to, want, "{from:?} {step:?}"),
                    (Err(StepError::Illegal(_)), None) => {}
                    (got, want) => panic!("{from:?} {step:?}: got {got:?}, want {want:?}"),
                }
            }
        }
    }

    #[test]
    fn who_may_take_a_step() {
        let resolve = Step::Resolve {
            result: "Đã sửa đèn".into(),
        };
        assert_eq!(next(InProgress, &resolve, AssignedAgency), Ok(Resolved));
        assert!(matches!(
            next(InProgress, &resolve, OtherAgency),
            Err(StepError::Forbidden(_))
        ));
        assert!(matches!(
            next(InProgress, &resolve, Reporter),
            Err(StepError::Forbidden(_))
        ));
        let assign = Step::Assign {
            agency: "lx-phong-vh".into(),
        };
        assert!(matches!(
            next(Received, &assign, AssignedAgency),
            Err(StepError::Forbidden(_))
        ));
        let reopen = Step::Reopen {
            reason: "Chưa xử lý".into(),
        };
        assert_eq!(next(Resolved, &reopen, Reporter), Ok(Assigned));
        assert!(matches!(
            next(Resolved, &reopen, AssignedAgency),
            Err(StepError::Forbidden(_))
        ));
        assert!(matches!(
            next(Resolved, &Step::Close, Reporter),
            Err(StepError::Forbidden(_))
        ));
    }

    #[test]
    fn results_and_reasons_are_required() {
        let e = next(
            InProgress,
            &Step::Resolve {
                result: "  ".into(),
            },
            Operator,
        )
        .unwrap_err();
        assert_eq!(
            e,
            StepError::Invalid {
                field: "result",
                reason: "is required: 1-2000 characters".into()
            }
        );
        assert!(matches!(
            next(
                Received,
                &Step::Reject {
                    reason: String::new()
                },
                Operator
            ),
            Err(StepError::Invalid {
                field: "reason",
                ..
            })
        ));
    }

    #[test]
    fn open311_status_and_catalogue() {
        assert_eq!(InProgress.open311(), "open");
        assert_eq!(Resolved.open311(), "closed");
        assert_eq!(
            service("infra.drainage_flooding").unwrap().name,
            "Thoát nước, ngập úng"
        );
        let mut codes: Vec<&str> = SERVICES.iter().map(|s| s.code).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), SERVICES.len(), "codes are unique");
    }
}
