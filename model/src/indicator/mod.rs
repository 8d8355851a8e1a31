//! Indicators (*chỉ tiêu*): the catalogue a province keeps of the figures its sectors report
//! per administrative unit and period, the targets set for them, and the rules that judge a
//! value against its target and roll values up from communes to districts to the province.
//!
//! Pure: the catalogue and targets arrive as registry entries and `ioc.indicators` events;
//! the indicator book in stream-core holds them and calls these rules.

pub mod period;
pub mod rollup;
pub mod tally;
pub mod target;
pub mod value;

use serde::{Deserialize, Serialize};

use crate::error::{Checker, FieldError, Invalid};
use crate::id::LocalId;
pub use period::{Basis, Frequency, Period};
pub use rollup::Rollup;
pub use target::{Direction, Status, Target};
pub use value::{Explanation, ExplanationStep, IndicatorEvent, Revision, Value};

/// The sector an indicator belongs to: one tile of the leaders' overview each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sector {
    SocioEconomic,
    Budget,
    PublicAdministration,
    ElectronicDocuments,
    Health,
    Education,
    Tourism,
    Accommodation,
    Environment,
    PublicOrder,
    FieldReports,
    Cameras,
}

impl Sector {
    pub const ALL: [Sector; 12] = [
        Sector::SocioEconomic,
        Sector::Budget,
        Sector::PublicAdministration,
        Sector::ElectronicDocuments,
        Sector::Health,
        Sector::Education,
        Sector::Tourism,
        Sector::Accommodation,
        Sector::Environment,
        Sector::PublicOrder,
        Sector::FieldReports,
        Sector::Cameras,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Sector::SocioEconomic => "socio_economic",
            Sector::Budget => "budget",
            Sector::PublicAdministration => "public_administration",
            Sector::ElectronicDocuments => "electronic_documents",
            Sector::Health => "health",
            Sector::Education => "education",
            Sector::Tourism => "tourism",
            Sector::Accommodation => "accommodation",
            Sector::Environment => "environment",
            Sector::PublicOrder => "public_order",
            Sector::FieldReports => "field_reports",
            Sector::Cameras => "cameras",
        }
    }

    /// The sector's name on the leaders' page.
    pub fn name_vi(self) -> &'static str {
        match self {
            Sector::SocioEconomic => "Kinh tế - xã hội",
            Sector::Budget => "Ngân sách",
            Sector::PublicAdministration => "Cải cách hành chính",
            Sector::ElectronicDocuments => "Văn bản điện tử",
            Sector::Health => "Y tế",
            Sector::Education => "Giáo dục",
            Sector::Tourism => "Du lịch",
            Sector::Accommodation => "Lưu trú",
            Sector::Environment => "Môi trường",
            Sector::PublicOrder => "An ninh trật tự",
            Sector::FieldReports => "Phản ánh hiện trường",
            Sector::Cameras => "Camera",
        }
    }

    pub fn parse(field: &str, s: &str) -> Result<Self, FieldError> {
        let t = s.trim().to_lowercase().replace(['-', ' '], "_");
        Self::ALL
            .into_iter()
            .find(|x| x.as_str() == t)
            .ok_or_else(|| {
                let all: Vec<&str> = Self::ALL.iter().map(|x| x.as_str()).collect();
                FieldError::new(field, format!("{s:?} is not one of {}", all.join(", ")))
            })
    }
}

/// The tier of the administrative tree a unit sits at, read from its legal level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// Province or centrally-run city (*tỉnh*, *thành phố trực thuộc trung ương*).
    Province,
    /// District level (*huyện*, *quận*, *thị xã*, *thành phố thuộc tỉnh*).
    District,
    /// Commune level (*xã*, *phường*, *thị trấn*).
    Commune,
}

impl Tier {
    pub const ALL: [Tier; 3] = [Tier::Province, Tier::District, Tier::Commune];

    /// The tier of an [`crate::AdminUnit::level`] as the registry writes it.
    pub fn of_level(level: &str) -> Tier {
        let l = crate::text::nfc(level.trim()).to_lowercase();
        match l.as_str() {
            "tỉnh" | "thành phố trực thuộc trung ương" | "province" => Tier::Province,
            "xã" | "phường" | "thị trấn" | "đặc khu" | "commune" | "ward" => {
                Tier::Commune
            }
            _ => Tier::District,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Province => "province",
            Tier::District => "district",
            Tier::Commune => "commune",
        }
    }

    pub fn parse(field: &str, s: &str) -> Result<Self, FieldError> {
        let t = s.trim().to_lowercase();
        Self::ALL
            .into_iter()
            .find(|x| x.as_str() == t)
            .ok_or_else(|| {
                FieldError::new(field, format!("{s:?} is not province, district or commune"))
            })
    }
}

/// Where an indicator's values come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Sent to `POST /ingest/v1/indicators` by the owning system or agency.
    Pushed,
    /// Fetched by a poll connector from the owning system.
    Polled,
    /// Computed by the stream core from its own streams (reports, cameras, sensors, alerts).
    Derived,
}

/// What the core computes a derived indicator from (its own streams), per unit and day.
///
/// Written as a word, with a parameter after a colon where it takes one:
/// `reports_received`, `camera_availability`, `aqi_hours:poor`, `alerts_raised:salinity_warning`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Derivation {
    /// Field reports received (by the day they were filed).
    ReportsReceived,
    /// Field reports resolved (by the day they were resolved).
    ReportsResolved,
    /// Field reports resolved by their deadline.
    ReportsResolvedOnTime,
    /// Field reports open past their deadline now (the open period only).
    ReportsOverdue,
    /// Share of the unit's camera time spent online, % (time unknown or offline counts as
    /// down; a camera counts from its first status).
    CameraAvailability,
    /// Hours whose hourly VN_AQI, worst station of the unit, fell in the band.
    AqiHours(crate::aqi::Band),
    /// Days whose daily VN_AQI, worst station of the unit, fell in the band.
    AqiDays(crate::aqi::Band),
    /// Days on which a salinity station of the unit reached the warning level.
    SalinityWarningDays,
    /// The farthest inland the 4‰ line reached on a river through the unit, km from the mouth.
    SalinityReachMax,
    /// Alerts of one rule raised about entities in the unit.
    AlertsRaised(LocalId),
}

impl Derivation {
    /// The words a catalogue may use, for error messages.
    pub const WORDS: &'static str = "reports_received, reports_resolved, \
        reports_resolved_on_time, reports_overdue, camera_availability, aqi_hours:{band}, \
        aqi_days:{band}, salinity_warning_days, salinity_reach_max, alerts_raised:{rule}";

    /// True for those figured from the core's daily tallies of sensors, cameras and alerts
    /// (kept [`tally::KEEP_DAYS`] days), false for those figured from the record of reports.
    pub fn is_tallied(&self) -> bool {
        !matches!(
            self,
            Derivation::ReportsReceived
                | Derivation::ReportsResolved
                | Derivation::ReportsResolvedOnTime
                | Derivation::ReportsOverdue
        )
    }

    pub fn parse(field: &str, s: &str) -> Result<Self, FieldError> {
        let bad = |why: String| FieldError::new(field, why);
        let t = s.trim();
        let (word, param) = match t.split_once(':') {
            Some((w, p)) => (w.trim(), Some(p.trim())),
            None => (t, None),
        };
        let band = |p: Option<&str>| -> Result<crate::aqi::Band, FieldError> {
            let p = p.ok_or_else(|| bad(format!("{word} names a VN_AQI band: {word}:poor")))?;
            serde_json::from_value(serde_json::Value::String(p.to_lowercase())).map_err(|_| {
                bad(format!(
                    "{p:?} is not a VN_AQI band (good, moderate, poor, bad, very_bad, hazardous)"
                ))
            })
        };
        let plain = |d: Derivation| match param {
            None => Ok(d),
            Some(_) => Err(bad(format!("{word} takes no parameter"))),
        };
        match word {
            "reports_received" => plain(Derivation::ReportsReceived),
            "reports_resolved" => plain(Derivation::ReportsResolved),
            "reports_resolved_on_time" => plain(Derivation::ReportsResolvedOnTime),
            "reports_overdue" => plain(Derivation::ReportsOverdue),
            "camera_availability" => plain(Derivation::CameraAvailability),
            "salinity_warning_days" => plain(Derivation::SalinityWarningDays),
            "salinity_reach_max" => plain(Derivation::SalinityReachMax),
            "aqi_hours" => band(param).map(Derivation::AqiHours),
            "aqi_days" => band(param).map(Derivation::AqiDays),
            "alerts_raised" => {
                let rule = param
                    .ok_or_else(|| bad("alerts_raised names a rule: alerts_raised:stale".into()))?;
                LocalId::parse(field, rule).map(Derivation::AlertsRaised)
            }
            _ => Err(bad(format!("{t:?} is not one of {}", Self::WORDS))),
        }
    }
}

impl std::fmt::Display for Derivation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let band = |b: &crate::aqi::Band| {
            serde_json::to_value(b)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        };
        match self {
            Derivation::ReportsReceived => f.write_str("reports_received"),
            Derivation::ReportsResolved => f.write_str("reports_resolved"),
            Derivation::ReportsResolvedOnTime => f.write_str("reports_resolved_on_time"),
            Derivation::ReportsOverdue => f.write_str("reports_overdue"),
            Derivation::CameraAvailability => f.write_str("camera_availability"),
            Derivation::AqiHours(b) => write!(f, "aqi_hours:{}", band(b)),
            Derivation::AqiDays(b) => write!(f, "aqi_days:{}", band(b)),
            Derivation::SalinityWarningDays => f.write_str("salinity_warning_days"),
            Derivation::SalinityReachMax => f.write_str("salinity_reach_max"),
            Derivation::AlertsRaised(rule) => write!(f, "alerts_raised:{rule}"),
        }
    }
}

impl TryFrom<String> for Derivation {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Derivation::parse("derive", &s).map_err(|e| e.reason)
    }
}

impl From<Derivation> for String {
    fn from(d: Derivation) -> String {
        d.to_string()
    }
}

/// One indicator of the catalogue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Indicator {
    /// Stable code, e.g. `hcc-hoso-dunghan`: the key of its values, never reused.
    pub code: LocalId,
    /// Vietnamese name, NFC.
    pub name: String,
    pub sector: Sector,
    /// Unit of measure as shown: "%", "hồ sơ", "tỷ đồng", "lượt khách".
    pub measure: String,
    pub frequency: Frequency,
    #[serde(default)]
    pub basis: Basis,
    /// The tiers whose units report it (the others get it by roll-up, if any).
    pub levels: Vec<Tier>,
    #[serde(flatten)]
    pub rollup: Rollup,
    pub direction: Direction,
    /// The agency that owns and reports it, and answers for it.
    pub agency: LocalId,
    pub source: Source,
    /// For `source = "derived"`: what the core computes it from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub derive: Option<Derivation>,
    /// Values are cumulative since January (*lũy kế*).
    #[serde(default)]
    pub cumulative: bool,
    /// May be published as open data.
    #[serde(default)]
    pub public: bool,
    /// Days after its period closes before a missing value is flagged; the core's default
    /// when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_days: Option<u32>,
}

/// Longest indicator name.
const MAX_NAME: usize = 300;

impl Indicator {
    /// Checks an entry as the registry takes it; every fault is named.
    pub fn check(&self) -> Result<(), Invalid> {
        let mut c = Checker::default();
        if let Some(r) = crate::text::refuse_text(&self.name, MAX_NAME) {
            c.fail("name", r);
        } else if self.name.trim().is_empty() {
            c.fail("name", "is required");
        }
        if self.measure.trim().is_empty() || self.measure.chars().count() > 40 {
            c.fail("measure", "is required: 1-40 characters");
        }
        if self.levels.is_empty() {
            c.fail("levels", "name at least one of province, district, commune");
        }
        c.check(self.rollup.check(&self.code));
        match (self.source, &self.derive) {
            (Source::Derived, None) => c.fail(
                "derive",
                "a derived indicator names what it is derived from",
            ),
            (Source::Pushed | Source::Polled, Some(_)) => c.fail(
                "derive",
                "only a derived indicator (source = derived) is computed by the core",
            ),
            (Source::Derived, Some(d)) if d.is_tallied() && self.frequency > Frequency::Month => c
                .fail(
                    "frequency",
                    format!(
                        "{d} is figured from daily tallies kept {} days: day, week or month",
                        tally::KEEP_DAYS
                    ),
                ),
            _ => {}
        }
        if matches!(self.deadline_days, Some(d) if d > 366) {
            c.fail("deadline_days", "at most 366");
        }
        c.finish(|| ())
    }

    /// The grace after a period closes before its value is missing.
    pub fn grace_days(&self, default: u32) -> u32 {
        self.deadline_days.unwrap_or(default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn indicator(json: serde_json::Value) -> Indicator {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_catalogue_entry_reads_from_flat_json_and_checks() {
        let i = indicator(serde_json::json!({
            "code": "hcc-hoso-dunghan", "name": "Tỷ lệ hồ sơ giải quyết đúng hạn",
            "sector": "public_administration", "measure": "%", "frequency": "month",
            "levels": ["province", "district"], "rollup": "ratio",
            "numerator": "hcc-hoso-dunghan-so", "denominator": "hcc-hoso-giaiquyet",
            "direction": "higher_is_better", "agency": "hg-stttt", "source": "pushed",
            "cumulative": true
        }));
        assert_eq!(i.frequency, Frequency::Month);
        assert_eq!(i.basis, Basis::Calendar);
        assert!(matches!(i.rollup, Rollup::Ratio { .. }));
        assert!(i.check().is_ok());
        let back = serde_json::to_value(&i).unwrap();
        assert_eq!(back["rollup"], "ratio");
        assert_eq!(back["numerator"], "hcc-hoso-dunghan-so");
        assert_eq!(indicator(back), i);
    }

    #[test]
    fn a_bad_entry_names_every_fault() {
        let i = indicator(serde_json::json!({
            "code": "x", "name": " ", "sector": "health", "measure": "",
            "frequency": "year", "levels": [], "rollup": "ratio", "numerator": "x",
            "denominator": "y", "direction": "within_range",
            "agency": "hg-syt", "source": "derived"
        }));
        let e = i.check().unwrap_err();
        let fields: Vec<&str> = e.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["name", "measure", "levels", "numerator", "derive"],
            "{e}"
        );
    }

    #[test]
    fn tiers_follow_the_legal_level() {
        assert_eq!(Tier::of_level("tỉnh"), Tier::Province);
        assert_eq!(Tier::of_level("thành phố"), Tier::District);
        assert_eq!(Tier::of_level("Thị xã"), Tier::District);
        assert_eq!(Tier::of_level("phường"), Tier::Commune);
        // Decomposed input (NFD) is the same level.
        assert_eq!(Tier::of_level("xa\u{0303}"), Tier::Commune);
    }
}
