//! Video-wall layouts: a named set of screens, each a grid of panels (map, camera mosaic,
//! camera tour, alerts, report queue, KPI strip, clock). Layouts are registry entries
//! (`layout:{id}` on `ioc.registry`), so every screen of every API instance sees the same
//! one, and an edit or a *focus* (pan every screen to an incident and fill the mosaics with
//! its nearest cameras) reaches open screens as a change of the layout's state record.
//!
//! Parsing names the field at fault (`screens[1].panels[0].size`), so an operator editing a
//! layout by hand can fix it.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::camera::CameraGroup;
use crate::error::FieldError;
use crate::id::LocalId;
use crate::layer::Layer;

/// Screens one layout may span.
pub const MAX_SCREENS: usize = 8;
/// Cells a screen's grid may have on a side.
pub const MAX_CELLS: u8 = 6;
/// Panels on one screen.
pub const MAX_PANELS: usize = 16;
/// Side of the largest mosaic (4×4).
pub const MAX_MOSAIC: u8 = 4;
/// Cameras one tour cycles through.
pub const MAX_TOUR: usize = 64;
/// The nearest-camera search radius of a focus, metres.
pub const FOCUS_RADIUS_M: std::ops::RangeInclusive<f64> = 10.0..=20_000.0;

/// One layout of the video wall.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WallLayout {
    pub id: LocalId,
    pub name: String,
    pub screens: Vec<WallScreen>,
    /// Where the layout is focused now, when an operator focused it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub focus: Option<Focus>,
}

/// One physical screen of a layout: a grid of `columns` × `rows` cells.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WallScreen {
    #[serde(default)]
    pub name: String,
    pub columns: u8,
    pub rows: u8,
    pub panels: Vec<Panel>,
}

/// A panel and the cells it covers: `at` = `[column, row, width, height]`, from the
/// top-left cell `[0, 0]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Panel {
    pub at: [u8; 4],
    #[serde(flatten)]
    pub kind: PanelKind,
}

/// What a panel shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PanelKind {
    /// The map: the unit polygons (over the basemap), stations, alerts, cameras.
    Map(MapPanel),
    /// A mosaic of camera pictures.
    Mosaic(MosaicPanel),
    /// One camera at a time, in turn.
    Tour(TourPanel),
    /// Active alerts, most severe first.
    Alerts,
    /// The field-report queue: newest and overdue.
    Reports,
    /// Counts of the day: reports received and overdue, active alerts by severity, cameras
    /// online, stations in warning.
    Kpi,
    /// The clock and how fresh each feed's data is.
    Clock,
}

/// A map panel.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapPanel {
    /// The view to open on (`[w, s, e, n]`); the whole province when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bbox: Option<[f64; 4]>,
    /// The layers drawn; the page's default set when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<Layer>,
}

/// A `size` × `size` mosaic of camera pictures; `live` ones play MJPEG, the others show their
/// latest snapshot. Cells without a camera are filled by a focus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MosaicPanel {
    pub size: u8,
    #[serde(default)]
    pub cameras: Vec<LocalId>,
    #[serde(default)]
    pub live: Vec<LocalId>,
}

/// One camera at a time, cycling through `cameras` or a camera group every `every_s`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TourPanel {
    #[serde(default)]
    pub cameras: Vec<LocalId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<CameraGroup>,
    pub every_s: u32,
}

impl PanelKind {
    pub fn name(&self) -> &'static str {
        match self {
            PanelKind::Map(_) => "map",
            PanelKind::Mosaic(_) => "mosaic",
            PanelKind::Tour(_) => "tour",
            PanelKind::Alerts => "alerts",
            PanelKind::Reports => "reports",
            PanelKind::Kpi => "kpi",
            PanelKind::Clock => "clock",
        }
    }
}

/// Where an operator focused a layout: every screen pans there and its mosaics fill with
/// the nearest cameras (each screen asks for the ones its own login may see).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Focus {
    pub lon: f64,
    pub lat: f64,
    pub radius_m: f64,
    /// What the focus is on (an alert or report id, or free text), shown on the screens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    pub at: DateTime<Utc>,
    /// Who focused it (the token's subject).
    pub by: String,
}

impl WallLayout {
    /// Parses and checks a layout sent by a client; the `id` comes from the URL.
    pub fn from_json(id: LocalId, mut v: Value) -> Result<WallLayout, FieldError> {
        let Some(obj) = v.as_object_mut() else {
            return Err(FieldError::new("", "send the layout as a JSON object"));
        };
        // The focus is set through its own request, never with the layout.
        obj.remove("focus");
        let name = obj.remove("name").unwrap_or(Value::Null);
        let screens = obj.remove("screens").unwrap_or(Value::Null);
        if let Some(other) = obj.keys().next() {
            return Err(FieldError::new(
                other.as_str(),
                "unknown field; a layout has name and screens",
            ));
        }
        let name: String = parse_at("name", name)?;
        let Value::Array(screens) = screens else {
            return Err(FieldError::new(
                "screens",
                "is required: an array of screens",
            ));
        };
        let screens = screens
            .into_iter()
            .enumerate()
            .map(|(i, s)| WallScreen::from_json(s).map_err(|e| e.within(&format!("screens[{i}]"))))
            .collect::<Result<Vec<_>, _>>()?;
        let layout = WallLayout {
            id,
            name: crate::text::nfc(name.trim()),
            screens,
            focus: None,
        };
        layout.check()?;
        Ok(layout)
    }

    /// Every camera the layout names, for the caller to check against the registry, with
    /// the field that names it.
    pub fn cameras(&self) -> Vec<(String, &LocalId)> {
        let mut out = Vec::new();
        for (s, screen) in self.screens.iter().enumerate() {
            for (p, panel) in screen.panels.iter().enumerate() {
                let at = format!("screens[{s}].panels[{p}]");
                match &panel.kind {
                    PanelKind::Mosaic(MosaicPanel { cameras, live, .. }) => {
                        for (i, c) in cameras.iter().enumerate() {
                            out.push((format!("{at}.cameras[{i}]"), c));
                        }
                        for (i, c) in live.iter().enumerate() {
                            out.push((format!("{at}.live[{i}]"), c));
                        }
                    }
                    PanelKind::Tour(TourPanel { cameras, .. }) => {
                        for (i, c) in cameras.iter().enumerate() {
                            out.push((format!("{at}.cameras[{i}]"), c));
                        }
                    }
                    _ => {}
                }
            }
        }
        out
    }

    /// The checks serde cannot make: counts, ranges, overlaps.
    pub fn check(&self) -> Result<(), FieldError> {
        let name = crate::text::nfc(self.name.trim());
        if name.is_empty() {
            return Err(FieldError::new("name", "is required: 1-200 characters"));
        }
        if let Some(reason) = crate::text::refuse_text(&name, 200) {
            return Err(FieldError::new("name", reason));
        }
        if self.screens.is_empty() || self.screens.len() > MAX_SCREENS {
            return Err(FieldError::new(
                "screens",
                format!(
                    "{} screens; a layout has 1-{MAX_SCREENS}",
                    self.screens.len()
                ),
            ));
        }
        for (i, s) in self.screens.iter().enumerate() {
            s.check().map_err(|e| e.within(&format!("screens[{i}]")))?;
        }
        Ok(())
    }
}

/// `T` from `v`, the field at fault named from `field` down.
fn parse_at<T: serde::de::DeserializeOwned>(field: &str, v: Value) -> Result<T, FieldError> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let reason = e.into_inner().to_string();
        match path.as_str() {
            "." => FieldError::new(field, reason),
            p if field.is_empty() => FieldError::new(p, reason),
            p => FieldError::new(format!("{field}.{p}"), reason),
        }
    })
}

impl WallScreen {
    /// A screen from JSON; its panels are read one by one, so that a mistake inside one is
    /// named down to its field (serde's tagged enums lose the path).
    fn from_json(v: Value) -> Result<WallScreen, FieldError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Shell {
            #[serde(default)]
            name: String,
            columns: u8,
            rows: u8,
            panels: Vec<Value>,
        }
        let shell: Shell = parse_at("", v)?;
        let panels = shell
            .panels
            .into_iter()
            .enumerate()
            .map(|(i, p)| Panel::from_json(p).map_err(|e| e.within(&format!("panels[{i}]"))))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(WallScreen {
            name: crate::text::nfc(shell.name.trim()),
            columns: shell.columns,
            rows: shell.rows,
            panels,
        })
    }

    fn check(&self) -> Result<(), FieldError> {
        if let Some(reason) = crate::text::refuse_text(&self.name, 200) {
            return Err(FieldError::new("name", reason));
        }
        for (f, v) in [("columns", self.columns), ("rows", self.rows)] {
            if !(1..=MAX_CELLS).contains(&v) {
                return Err(FieldError::new(f, format!("{v}; must be 1-{MAX_CELLS}")));
            }
        }
        if self.panels.is_empty() || self.panels.len() > MAX_PANELS {
            return Err(FieldError::new(
                "panels",
                format!("{} panels; a screen has 1-{MAX_PANELS}", self.panels.len()),
            ));
        }
        let mut taken = BTreeSet::new();
        for (i, p) in self.panels.iter().enumerate() {
            let at = |f: &str| format!("panels[{i}].{f}");
            let [c, r, w, h] = p.at;
            if w == 0 || h == 0 {
                return Err(FieldError::new(
                    at("at"),
                    "width and height are at least one cell",
                ));
            }
            if u16::from(c) + u16::from(w) > u16::from(self.columns)
                || u16::from(r) + u16::from(h) > u16::from(self.rows)
            {
                return Err(FieldError::new(
                    at("at"),
                    format!(
                        "[{c}, {r}, {w}, {h}] reaches outside the {}×{} grid",
                        self.columns, self.rows
                    ),
                ));
            }
            for x in c..c + w {
                for y in r..r + h {
                    if !taken.insert((x, y)) {
                        return Err(FieldError::new(
                            at("at"),
                            format!("cell [{x}, {y}] is already another panel's"),
                        ));
                    }
                }
            }
            p.kind
                .check()
                .map_err(|e| e.within(&format!("panels[{i}]")))?;
        }
        Ok(())
    }
}

impl Panel {
    fn from_json(v: Value) -> Result<Panel, FieldError> {
        let Value::Object(mut obj) = v else {
            return Err(FieldError::new(
                "",
                "a panel is a JSON object with kind and at",
            ));
        };
        let at: [u8; 4] = parse_at("at", obj.remove("at").unwrap_or(Value::Null))?;
        let kind = match obj.remove("kind") {
            Some(Value::String(k)) => k,
            _ => return Err(FieldError::new("kind", "is required: the panel's kind")),
        };
        let rest = Value::Object(obj);
        let plain =
            |rest: &Value, kind: PanelKind| match rest.as_object().and_then(|o| o.keys().next()) {
                Some(f) => Err(FieldError::new(
                    f.as_str(),
                    format!("unknown field for a {} panel", kind.name()),
                )),
                None => Ok(kind),
            };
        let kind = match kind.as_str() {
            "map" => PanelKind::Map(parse_at("", rest)?),
            "mosaic" => PanelKind::Mosaic(parse_at("", rest)?),
            "tour" => PanelKind::Tour(parse_at("", rest)?),
            "alerts" => plain(&rest, PanelKind::Alerts)?,
            "reports" => plain(&rest, PanelKind::Reports)?,
            "kpi" => plain(&rest, PanelKind::Kpi)?,
            "clock" => plain(&rest, PanelKind::Clock)?,
            other => {
                return Err(FieldError::new(
                    "kind",
                    format!("unknown panel kind {other:?}; known: map, mosaic, tour, alerts, reports, kpi, clock"),
                ))
            }
        };
        Ok(Panel { at, kind })
    }
}

impl PanelKind {
    fn check(&self) -> Result<(), FieldError> {
        match self {
            PanelKind::Map(MapPanel { bbox, .. }) => {
                if let Some(b) = bbox {
                    crate::state::check_bbox(*b)?;
                }
            }
            PanelKind::Mosaic(MosaicPanel {
                size,
                cameras,
                live,
            }) => {
                if !(1..=MAX_MOSAIC).contains(size) {
                    return Err(FieldError::new(
                        "size",
                        format!("{size}; a mosaic is 1×1 to {MAX_MOSAIC}×{MAX_MOSAIC}"),
                    ));
                }
                let cells = usize::from(*size) * usize::from(*size);
                if cameras.len() > cells {
                    return Err(FieldError::new(
                        "cameras",
                        format!(
                            "{} cameras for a {size}×{size} mosaic of {cells} cells",
                            cameras.len()
                        ),
                    ));
                }
                distinct(cameras, "cameras")?;
                for (i, l) in live.iter().enumerate() {
                    if !cameras.contains(l) {
                        return Err(FieldError::new(
                            format!("live[{i}]"),
                            format!("{l} is not one of the mosaic's cameras"),
                        ));
                    }
                }
            }
            PanelKind::Tour(TourPanel {
                cameras,
                group,
                every_s,
            }) => {
                if !(5..=3600).contains(every_s) {
                    return Err(FieldError::new(
                        "every_s",
                        format!("{every_s}; a tour moves on every 5-3600 s"),
                    ));
                }
                if cameras.is_empty() == group.is_none() {
                    return Err(FieldError::new(
                        "cameras",
                        "a tour cycles through a list of cameras or one group, not both nor neither",
                    ));
                }
                if cameras.len() > MAX_TOUR {
                    return Err(FieldError::new(
                        "cameras",
                        format!("{} cameras; a tour has at most {MAX_TOUR}", cameras.len()),
                    ));
                }
                distinct(cameras, "cameras")?;
            }
            PanelKind::Alerts | PanelKind::Reports | PanelKind::Kpi | PanelKind::Clock => {}
        }
        Ok(())
    }
}

fn distinct(ids: &[LocalId], field: &str) -> Result<(), FieldError> {
    let mut seen = BTreeSet::new();
    for (i, c) in ids.iter().enumerate() {
        if !seen.insert(c) {
            return Err(FieldError::new(
                format!("{field}[{i}]"),
                format!("{c} is named twice"),
            ));
        }
    }
    Ok(())
}

impl Focus {
    /// A focus at `lon`, `lat`, checked.
    pub fn new(
        lon: f64,
        lat: f64,
        radius_m: f64,
        label: Option<String>,
        at: DateTime<Utc>,
        by: &str,
    ) -> Result<Focus, FieldError> {
        let p = crate::place::GeoPoint::new(lon, lat)
            .map_err(|e| FieldError::new(e.field.trim_start_matches("position."), e.reason))?;
        if !radius_m.is_finite() || !FOCUS_RADIUS_M.contains(&radius_m) {
            return Err(FieldError::new(
                "radius_m",
                format!(
                    "{radius_m}; must be {}-{} metres",
                    FOCUS_RADIUS_M.start(),
                    FOCUS_RADIUS_M.end()
                ),
            ));
        }
        let label = label.map(|l| crate::text::nfc(l.trim()));
        if let Some(reason) = label
            .as_deref()
            .and_then(|l| crate::text::refuse_text(l, 200))
        {
            return Err(FieldError::new("label", reason));
        }
        Ok(Focus {
            lon: p.lon,
            lat: p.lat,
            radius_m,
            label: label.filter(|l| !l.is_empty()),
            at,
            by: by.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn id() -> LocalId {
        LocalId::parse("id", "tuong-chinh").unwrap()
    }

    fn good() -> Value {
        json!({"name": "Tường chính", "screens": [
            {"columns": 3, "rows": 2, "panels": [
                {"kind": "map", "at": [0, 0, 2, 2]},
                {"kind": "alerts", "at": [2, 0, 1, 1]},
                {"kind": "clock", "at": [2, 1, 1, 1]}]},
            {"columns": 2, "rows": 2, "panels": [
                {"kind": "mosaic", "size": 3, "at": [0, 0, 2, 1], "cameras": ["cam-a", "cam-b"], "live": ["cam-b"]},
                {"kind": "tour", "at": [0, 1, 1, 1], "group": "traffic", "every_s": 10},
                {"kind": "kpi", "at": [1, 1, 1, 1]}]}]})
    }

    #[test]
    fn a_good_layout_parses_and_names_its_cameras() {
        let l = WallLayout::from_json(id(), good()).unwrap();
        assert_eq!(l.screens.len(), 2);
        assert_eq!(l.screens[1].panels[1].kind.name(), "tour");
        let named: Vec<String> = l.cameras().into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            named,
            [
                "screens[1].panels[0].cameras[0]",
                "screens[1].panels[0].cameras[1]",
                "screens[1].panels[0].live[0]"
            ]
        );
        // A focus sent with the layout is dropped: it has its own request.
        let mut v = good();
        v["focus"] = json!({"lon": 1});
        assert!(WallLayout::from_json(id(), v).unwrap().focus.is_none());
    }

    #[test]
    fn bad_layouts_name_the_field() {
        let mut cases: Vec<(Box<dyn Fn(&mut Value)>, &str)> = vec![
            (Box::new(|v| v["name"] = json!(" ")), "name"),
            (Box::new(|v| v["screens"] = json!([])), "screens"),
            (
                Box::new(|v| v["screens"][0]["columns"] = json!(7)),
                "screens[0].columns",
            ),
            (
                Box::new(|v| v["screens"][0]["columns"] = json!("3")),
                "screens[0].columns",
            ),
            (
                Box::new(|v| v["screens"][0]["panels"][1]["kind"] = json!("radar")),
                "screens[0].panels[1].kind",
            ),
            (
                Box::new(|v| v["screens"][0]["panels"][1]["at"] = json!([1, 0, 1, 1])),
                "screens[0].panels[1].at",
            ),
            (
                Box::new(|v| v["screens"][0]["panels"][1]["at"] = json!([2, 0, 2, 1])),
                "screens[0].panels[1].at",
            ),
            (
                Box::new(|v| v["screens"][1]["panels"][0]["size"] = json!(5)),
                "screens[1].panels[0].size",
            ),
            (
                Box::new(|v| v["screens"][1]["panels"][0]["size"] = json!(1)),
                "screens[1].panels[0].cameras",
            ),
            (
                Box::new(|v| v["screens"][1]["panels"][0]["live"] = json!(["cam-z"])),
                "screens[1].panels[0].live[0]",
            ),
            (
                Box::new(|v| v["screens"][1]["panels"][0]["cameras"] = json!(["cam-a", "cam-a"])),
                "screens[1].panels[0].cameras[1]",
            ),
            (
                Box::new(|v| v["screens"][1]["panels"][1]["every_s"] = json!(1)),
                "screens[1].panels[1].every_s",
            ),
            (
                Box::new(|v| v["screens"][1]["panels"][1]["group"] = json!("army")),
                "screens[1].panels[1].group",
            ),
            (
                Box::new(|v| v["screens"][1]["panels"][1]["cameras"] = json!(["cam-a"])),
                "screens[1].panels[1].cameras",
            ),
            (
                Box::new(|v| v["screens"][0]["panels"][0]["bbox"] = json!([106, 9, 105, 10])),
                "screens[0].panels[0].bbox",
            ),
        ];
        cases.push((
            Box::new(|v| v["screens"][0]["panels"][1]["colour"] = json!("red")),
            "screens[0].panels[1].colour",
        ));
        cases.push((
            Box::new(|v| v["screens"][1]["panels"][0]["sise"] = json!(2)),
            "screens[1].panels[0].sise",
        ));
        for (edit, field) in cases {
            let mut v = good();
            edit(&mut v);
            let e = WallLayout::from_json(id(), v.clone()).unwrap_err();
            assert_eq!(e.field, field, "{v}: {e}");
            assert!(!e.reason.is_empty());
        }
    }

    #[test]
    fn a_focus_is_checked() {
        let now = Utc::now();
        assert!(Focus::new(105.6, 9.78, 500.0, Some("alert:x".into()), now, "op").is_ok());
        assert_eq!(
            Focus::new(205.6, 9.78, 500.0, None, now, "op")
                .unwrap_err()
                .field,
            "lon"
        );
        assert_eq!(
            Focus::new(105.6, 9.78, 0.0, None, now, "op")
                .unwrap_err()
                .field,
            "radius_m"
        );
    }
}
