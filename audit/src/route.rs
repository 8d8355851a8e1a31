//! Which requests are audited writes, as what, on what: one table for every process (API,
//! ingest, feeds), so that a write route cannot be added without an entry or a reason to
//! have none. Pure; the [`crate::layer`] applies it.

use axum::http::Method;

/// What an audited request does, as `<thing>.<verb>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    CameraSnapshot,
    CameraLiveView,
    AlertAcknowledge,
    AlertClear,
    ZoneCreate,
    ZoneDelete,
    LayoutEdit,
    LayoutDelete,
    WallFocus,
    WallRelease,
    /// A camera's registry entry created or changed.
    RegistryUpsert,
    RegistryRemove,
    ReportSubmit,
    ReportTransition,
    /// Indicator figures (values and corrections) reported by an agency.
    IndicatorValues,
    IndicatorTarget,
    IndicatorExplanation,
    /// Sensor readings pushed over HTTP (only their refusals are entries: what is accepted
    /// is kept in the history with its source).
    SensorReadings,
    /// A media ticket (only refusals: the image it opens is an entry of its own).
    CameraTicket,
    /// A websocket ticket (only refusals: it opens a read-only feed).
    FeedTicket,
    /// The audit log read or exported by an admin.
    AuditRead,
    /// A write this table does not know (an entry is still written, named by its route).
    Unlisted,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::CameraSnapshot => "camera.snapshot",
            Action::CameraLiveView => "camera.live_view",
            Action::AlertAcknowledge => "alert.acknowledge",
            Action::AlertClear => "alert.clear",
            Action::ZoneCreate => "zone.create",
            Action::ZoneDelete => "zone.delete",
            Action::LayoutEdit => "layout.edit",
            Action::LayoutDelete => "layout.delete",
            Action::WallFocus => "wall.focus",
            Action::WallRelease => "wall.release",
            Action::RegistryUpsert => "registry.upsert",
            Action::RegistryRemove => "registry.remove",
            Action::ReportSubmit => "report.submit",
            Action::ReportTransition => "report.transition",
            Action::IndicatorValues => "indicator.values",
            Action::IndicatorTarget => "indicator.target",
            Action::IndicatorExplanation => "indicator.explanation",
            Action::SensorReadings => "sensor.readings",
            Action::CameraTicket => "camera.ticket",
            Action::FeedTicket => "feed.ticket",
            Action::AuditRead => "audit.read",
            Action::Unlisted => "http.write",
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which of a write's outcomes are entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kept {
    /// Every one: the handler writes the allowed entry before the effect, the layer writes
    /// refusals and failures.
    All,
    /// Only refusals (high-rate data and tickets, recorded elsewhere when they are used).
    Refusals,
}

/// An audited write: its action, what it acts on, and which outcomes are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub action: Action,
    /// `<kind>:<id>` from the path, or the kind alone (`zone:`) where the handler names the
    /// thing once it exists.
    pub target: String,
    pub kept: Kept,
}

/// Whether a request of this method changes state.
pub fn is_write(method: &Method) -> bool {
    matches!(
        *method,
        Method::POST | Method::PUT | Method::DELETE | Method::PATCH
    )
}

/// The audited write `method` on the route `template` (axum's matched path, `{id}` for a
/// parameter) is, filled from the request's `path`; `None` for a request that writes
/// nothing.
pub fn classify(method: &Method, template: &str, path: &str) -> Option<Route> {
    if !is_write(method) {
        return None;
    }
    let param = |name: &str| param(template, path, name).unwrap_or_default();
    let m = method.as_str();
    use Action::*;
    let (action, target, kept) = match (m, template) {
        ("POST", "/api/v1/alerts/{id}/acknowledge") => (
            AlertAcknowledge,
            format!("alert:{}", param("id")),
            Kept::All,
        ),
        ("POST", "/api/v1/alerts/{id}/clear") => {
            (AlertClear, format!("alert:{}", param("id")), Kept::All)
        }
        ("POST", "/api/v1/zones") => (ZoneCreate, "zone:".into(), Kept::All),
        ("DELETE", "/api/v1/zones/{id}") => {
            (ZoneDelete, format!("zone:{}", param("id")), Kept::All)
        }
        ("PUT", "/api/v1/layouts/{id}") => {
            (LayoutEdit, format!("layout:{}", param("id")), Kept::All)
        }
        ("DELETE", "/api/v1/layouts/{id}") => {
            (LayoutDelete, format!("layout:{}", param("id")), Kept::All)
        }
        ("POST", "/api/v1/layouts/{id}/focus") => {
            (WallFocus, format!("layout:{}", param("id")), Kept::All)
        }
        ("DELETE", "/api/v1/layouts/{id}/focus") => {
            (WallRelease, format!("layout:{}", param("id")), Kept::All)
        }
        ("PUT", "/api/v1/cameras/{id}") => {
            (RegistryUpsert, format!("camera:{}", param("id")), Kept::All)
        }
        ("DELETE", "/api/v1/cameras/{id}") => {
            (RegistryRemove, format!("camera:{}", param("id")), Kept::All)
        }
        ("POST", "/api/v1/cameras/{id}/tickets") => (
            CameraTicket,
            format!("camera:{}", param("id")),
            Kept::Refusals,
        ),
        ("POST", "/open311/v2/requests.json" | "/open311/v2/requests.xml") => {
            (ReportSubmit, "report:".into(), Kept::All)
        }
        ("POST", "/api/v1/reports/{id}/transitions") => (
            ReportTransition,
            format!("report:{}", param("id")),
            Kept::All,
        ),
        ("POST", "/api/v1/indicators/{code}/explanations") => (
            IndicatorExplanation,
            format!("indicator:{}", param("code")),
            Kept::All,
        ),
        ("POST", "/api/v1/indicators/{code}/targets") => (
            IndicatorTarget,
            format!("indicator:{}", param("code")),
            Kept::All,
        ),
        ("POST", "/ingest/v1/indicators") => (IndicatorValues, "indicator:".into(), Kept::All),
        ("POST", "/ingest/v1/readings") => (SensorReadings, "station:".into(), Kept::Refusals),
        ("POST", "/ws/tickets") => (FeedTicket, "feed:".into(), Kept::Refusals),
        _ => (
            Unlisted,
            format!("route:{m} {}", crate::clean(template, 120)),
            Kept::All,
        ),
    };
    Some(Route {
        action,
        target: crate::clean(&target, 160),
        kept,
    })
}

/// The path segment standing where `{name}` stands in `template`.
fn param<'a>(template: &str, path: &'a str, name: &str) -> Option<&'a str> {
    let want = format!("{{{name}}}");
    let at = template.split('/').position(|s| s == want)?;
    path.split('/').nth(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_is_named_by_its_route_and_its_target_by_the_path() {
        let r = classify(
            &Method::POST,
            "/api/v1/alerts/{id}/acknowledge",
            "/api/v1/alerts/a1b2/acknowledge",
        )
        .unwrap();
        assert_eq!(r.action, Action::AlertAcknowledge);
        assert_eq!(r.target, "alert:a1b2");
        assert_eq!(r.kept, Kept::All);
        let r = classify(
            &Method::DELETE,
            "/api/v1/layouts/{id}/focus",
            "/api/v1/layouts/tuong/focus",
        )
        .unwrap();
        assert_eq!(
            (r.action, r.target.as_str()),
            (Action::WallRelease, "layout:tuong")
        );
        // Reads are no entries; writes nobody listed still are, named by their route.
        assert_eq!(
            classify(&Method::GET, "/api/v1/alerts", "/api/v1/alerts"),
            None
        );
        let r = classify(&Method::PATCH, "/api/v1/new/{id}", "/api/v1/new/7").unwrap();
        assert_eq!((r.action, r.kept), (Action::Unlisted, Kept::All));
        assert_eq!(r.target, "route:PATCH /api/v1/new/{id}");
        // Sensor pushes leave only their refusals.
        let r = classify(&Method::POST, "/ingest/v1/readings", "/ingest/v1/readings").unwrap();
        assert_eq!(r.kept, Kept::Refusals);
    }

    #[test]
    fn a_target_from_the_path_holds_no_control_characters_and_is_bounded() {
        let long = format!("/api/v1/zones/{}", "x".repeat(500));
        let r = classify(&Method::DELETE, "/api/v1/zones/{id}", &long).unwrap();
        assert_eq!(r.target.chars().count(), 160);
        let r = classify(&Method::DELETE, "/api/v1/zones/{id}", "/api/v1/zones/a\nb").unwrap();
        assert_eq!(r.target, "zone:ab");
    }
}
