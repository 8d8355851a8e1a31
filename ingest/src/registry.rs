//! Registry files: how a province brings its own inventory onto the registry topic. A camera
//! sheet as CSV (one row per camera, the shape an NVR or asset list exports) or any registry
//! entries as JSON (an array, one object, or one object per line) are read, every entry is
//! checked, and only a file set without a single problem is published. A bad file publishes
//! nothing: each problem names the file, the line, the entity, the field and the reason.
//!
//! A stream URL carrying a user or password is refused, and no problem ever repeats a URL:
//! credentials belong in the video workers' `video.credentials.<set>`, named by the camera.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use bus::{Bus, BusError};
use chrono::Utc;
use model::camera::{RtspTransport, StreamSource};
use model::error::Checker;
use model::indicator::Derivation;
use model::{
    Camera, CameraGroup, CameraPurpose, EntityId, Envelope, FieldError, GeoPoint, LocalId,
    RegistryEntry,
};
use serde_json::Value;

/// One thing wrong with one entry of a registry file.
#[derive(Debug, Clone, PartialEq)]
pub struct EntryProblem {
    pub file: String,
    /// Line in the file (CSV, JSON lines), or 1-based position in a JSON array.
    pub at: Where,
    /// The entry's entity id, when it could be read.
    pub entity: Option<String>,
    pub error: FieldError,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Where {
    Line(usize),
    Item(usize),
    File,
}

impl fmt::Display for EntryProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        match self.at {
            Where::Line(n) => write!(f, " line {n}")?,
            Where::Item(n) => write!(f, " item {n}")?,
            Where::File => {}
        }
        if let Some(e) = &self.entity {
            write!(f, " ({e})")?;
        }
        write!(f, ": {}", self.error)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryFileError {
    #[error("{file}: {source}")]
    Unreadable {
        file: String,
        source: std::io::Error,
    },
    /// Vietnamese sheets are still saved in Windows-1258 or TCVN3 by older tools.
    #[error("{file}: not UTF-8 text; save the sheet as \"CSV UTF-8\"")]
    NotUtf8 { file: String },
    #[error("{file}: unknown format; registry files end in .csv (cameras), .json or .jsonl")]
    UnknownFormat { file: String },
    #[error("{} problem(s); nothing was published:\n  {}", .0.len(), .0.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n  "))]
    Invalid(Vec<EntryProblem>),
}

/// Reads and checks every file; returns all their entries only if none has a problem.
pub fn load_files(paths: &[impl AsRef<Path>]) -> Result<Vec<RegistryEntry>, RegistryFileError> {
    let mut texts = Vec::new();
    for p in paths {
        let p = p.as_ref();
        let file = p.display().to_string();
        let text = std::fs::read_to_string(p).map_err(|source| match source.kind() {
            std::io::ErrorKind::InvalidData => RegistryFileError::NotUtf8 { file: file.clone() },
            _ => RegistryFileError::Unreadable {
                file: file.clone(),
                source,
            },
        })?;
        texts.push((file, text));
    }
    let mut entries = Vec::new();
    let mut problems = Vec::new();
    for (file, text) in &texts {
        match parse(file, text) {
            Ok(mut e) => entries.append(&mut e),
            Err(RegistryFileError::Invalid(mut p)) => problems.append(&mut p),
            Err(e) => return Err(e),
        }
    }
    problems.extend(duplicates(&entries));
    match problems.is_empty() {
        true => Ok(entries.into_iter().map(|l| l.entry).collect()),
        false => Err(RegistryFileError::Invalid(problems)),
    }
}

/// An entry with where it came from, for problems found across entries.
#[derive(Debug, Clone)]
pub struct Located {
    pub file: String,
    pub at: Where,
    pub entry: RegistryEntry,
}

/// Parses and checks one file's text; the format follows the name's extension.
pub fn parse(file: &str, text: &str) -> Result<Vec<Located>, RegistryFileError> {
    // Spreadsheets save UTF-8 with a byte-order mark.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lower = file.to_ascii_lowercase();
    let rows = if lower.ends_with(".csv") && is_indicator_sheet(text) {
        indicator_rows(file, text)
    } else if lower.ends_with(".csv") {
        camera_rows(file, text)
    } else if lower.ends_with(".jsonl") || lower.ends_with(".ndjson") {
        json_lines(file, text)
    } else if lower.ends_with(".json") {
        json_document(file, text)
    } else {
        return Err(RegistryFileError::UnknownFormat { file: file.into() });
    };
    let mut entries = Vec::new();
    let mut problems = Vec::new();
    for row in rows {
        match row.and_then(|l| check(&l).map(|()| l)) {
            Ok(l) => entries.push(l),
            Err(mut p) => problems.append(&mut p),
        }
    }
    match problems.is_empty() {
        true => Ok(entries),
        false => Err(RegistryFileError::Invalid(problems)),
    }
}

type Row = Result<Located, Vec<EntryProblem>>;

fn problem(file: &str, at: Where, entity: Option<String>, error: FieldError) -> EntryProblem {
    EntryProblem {
        file: file.into(),
        at,
        entity,
        error,
    }
}

/// The model's own checks, for the kinds that have them.
fn check(l: &Located) -> Result<(), Vec<EntryProblem>> {
    let checked = match &l.entry {
        RegistryEntry::Station(s) => s.validate(),
        RegistryEntry::Camera(c) => c.validate(),
        RegistryEntry::Indicator(i) => i.check(),
        RegistryEntry::Layout(l) => l.check().map_err(Into::into),
        _ => Ok(()),
    };
    checked.map_err(|invalid| {
        let entity = Some(l.entry.entity().to_string());
        invalid
            .errors
            .into_iter()
            .map(|e| problem(&l.file, l.at, entity.clone(), e))
            .collect()
    })
}

/// The same entity twice in one import is a mistake, not an update.
fn duplicates(entries: &[Located]) -> Vec<EntryProblem> {
    let mut first: HashMap<EntityId, &Located> = HashMap::new();
    let mut out = Vec::new();
    for l in entries {
        let id = l.entry.entity();
        match first.get(&id) {
            Some(f) => out.push(problem(
                &l.file,
                l.at,
                Some(id.to_string()),
                FieldError::new("id", format!("already given at {}", place(f))),
            )),
            None => {
                first.insert(id, l);
            }
        }
    }
    out
}

fn place(l: &Located) -> String {
    match l.at {
        Where::Line(n) => format!("{} line {n}", l.file),
        Where::Item(n) => format!("{} item {n}", l.file),
        Where::File => l.file.clone(),
    }
}

fn json_entry(file: &str, at: Where, v: Value) -> Row {
    let entity = v
        .get("type")
        .and_then(Value::as_str)
        .zip(v.get("id").and_then(Value::as_str))
        .map(|(k, i)| format!("{k}:{i}"));
    serde_json::from_value::<RegistryEntry>(v)
        .map(|entry| Located {
            file: file.into(),
            at,
            entry,
        })
        .map_err(|e| {
            let reason = without_strings(&e.to_string());
            vec![problem(file, at, entity, FieldError::new("", reason))]
        })
}

/// serde quotes an unexpected string (`invalid type: string "rtsp://user:pw@…"`); a
/// problem must not repeat what could be a stream address with its password.
fn without_strings(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(i) = rest.find("string \"") {
        out.push_str(&rest[..i]);
        out.push_str("a string");
        let after = &rest[i + "string \"".len()..];
        rest = after.find('"').map_or("", |j| &after[j + 1..]);
    }
    out.push_str(rest);
    out
}

fn json_document(file: &str, text: &str) -> Vec<Row> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| json_entry(file, Where::Item(i + 1), v))
            .collect(),
        Ok(v @ Value::Object(_)) => vec![json_entry(file, Where::Item(1), v)],
        Ok(_) => vec![Err(vec![problem(
            file,
            Where::File,
            None,
            FieldError::new("", "must be a JSON array of registry entries, or one entry"),
        )])],
        Err(e) => vec![Err(vec![problem(
            file,
            Where::Line(e.line()),
            None,
            FieldError::new("", format!("not JSON: {e}")),
        )])],
    }
}

fn json_lines(file: &str, text: &str) -> Vec<Row> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            let at = Where::Line(i + 1);
            match serde_json::from_str::<Value>(l) {
                Ok(v) => json_entry(file, at, v),
                Err(e) => Err(vec![problem(
                    file,
                    at,
                    None,
                    FieldError::new("", format!("not JSON: {e}")),
                )]),
            }
        })
        .collect()
}

/// A camera from an API body, its id from the path: the checks of a sheet row or a JSON
/// entry, and the same care never to repeat a stream address in a problem.
pub fn camera_from_json(id: &LocalId, body: Value) -> Result<Camera, Vec<FieldError>> {
    let Value::Object(mut fields) = body else {
        return Err(vec![FieldError::new(
            "",
            "send the camera as a JSON object",
        )]);
    };
    match fields.get("id") {
        Some(given) if given.as_str() != Some(id.as_str()) => {
            return Err(vec![FieldError::new("id", "must be the id in the path")]);
        }
        _ => {}
    }
    fields.insert("id".into(), Value::String(id.to_string()));
    let camera: Camera = serde_json::from_value(Value::Object(fields))
        .map_err(|e| vec![FieldError::new("", without_strings(&e.to_string()))])?;
    camera.validate().map_err(|invalid| invalid.errors)?;
    Ok(camera)
}

/// The camera sheet's columns. `agency`, `group`, `transport` and `credentials` may be left
/// empty: the group then follows the purpose, the transport is TCP.
pub const CAMERA_COLUMNS: [&str; 10] = [
    "id",
    "name",
    "lon",
    "lat",
    "agency",
    "purpose",
    "group",
    "url",
    "transport",
    "credentials",
];
const REQUIRED_COLUMNS: [&str; 6] = ["id", "name", "lon", "lat", "purpose", "url"];

/// A sheet's reader (cells trimmed, rows of any length) and its header in lower case.
fn sheet<'a>(
    file: &str,
    text: &'a str,
) -> Result<(csv::Reader<&'a [u8]>, Vec<String>), EntryProblem> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(true)
        .from_reader(text.as_bytes());
    let header = reader
        .headers()
        .map_err(|e| csv_problem(file, &e))?
        .iter()
        .map(|c| c.to_ascii_lowercase())
        .collect();
    Ok((reader, header))
}

fn camera_rows(file: &str, text: &str) -> Vec<Row> {
    let (mut reader, header) = match sheet(file, text) {
        Ok(s) => s,
        Err(p) => return vec![Err(vec![p])],
    };
    let mut header_problems = Vec::new();
    for c in &header {
        if !CAMERA_COLUMNS.contains(&c.as_str()) {
            header_problems.push(FieldError::new(
                c.as_str(),
                format!(
                    "unknown column; the columns are {}",
                    CAMERA_COLUMNS.join(", ")
                ),
            ));
        }
    }
    for c in REQUIRED_COLUMNS {
        if !header.iter().any(|h| h == c) {
            header_problems.push(FieldError::new(c, "required column missing"));
        }
    }
    if !header_problems.is_empty() {
        return vec![Err(header_problems
            .into_iter()
            .map(|e| problem(file, Where::Line(1), None, e))
            .collect())];
    }
    reader
        .records()
        .map(|record| {
            let record = record.map_err(|e| vec![csv_problem(file, &e)])?;
            let line = record.position().map_or(0, |p| p.line() as usize);
            let cells: HashMap<&str, &str> = header
                .iter()
                .map(String::as_str)
                .zip(record.iter())
                .filter(|(_, v)| !v.is_empty())
                .collect();
            let at = Where::Line(line);
            camera_from_cells(&cells)
                .map(|c| Located {
                    file: file.into(),
                    at,
                    entry: RegistryEntry::Camera(c),
                })
                .map_err(|(entity, errors)| {
                    errors
                        .into_iter()
                        .map(|e| problem(file, at, entity.clone(), e))
                        .collect()
                })
        })
        .collect()
}

/// The columns of an indicator catalogue sheet.
const INDICATOR_COLUMNS: [&str; 19] = [
    "code",
    "name",
    "sector",
    "measure",
    "frequency",
    "basis",
    "levels",
    "rollup",
    "weight",
    "numerator",
    "denominator",
    "scale",
    "direction",
    "agency",
    "source",
    "derive",
    "cumulative",
    "public",
    "deadline_days",
];

/// An indicator sheet names its indicators' frequency; a camera sheet never does.
fn is_indicator_sheet(text: &str) -> bool {
    let header = text.lines().next().unwrap_or_default().to_ascii_lowercase();
    header.split(',').any(|c| c.trim() == "frequency")
}

/// An indicator catalogue as a sheet, one row per indicator (the columns of
/// [`INDICATOR_COLUMNS`]; `levels` separated by `;`).
fn indicator_rows(file: &str, text: &str) -> Vec<Row> {
    let (mut reader, header) = match sheet(file, text) {
        Ok(s) => s,
        Err(p) => return vec![Err(vec![p])],
    };
    let unknown: Vec<EntryProblem> = header
        .iter()
        .filter(|c| !INDICATOR_COLUMNS.contains(&c.as_str()))
        .map(|c| {
            let e = FieldError::new(
                c.as_str(),
                format!(
                    "unknown column; the columns are {}",
                    INDICATOR_COLUMNS.join(", ")
                ),
            );
            problem(file, Where::Line(1), None, e)
        })
        .collect();
    if !unknown.is_empty() {
        return vec![Err(unknown)];
    }
    reader
        .records()
        .map(|record| {
            let record = record.map_err(|e| vec![csv_problem(file, &e)])?;
            let at = Where::Line(record.position().map_or(0, |p| p.line() as usize));
            let cells: HashMap<&str, &str> = header
                .iter()
                .map(String::as_str)
                .zip(record.iter())
                .filter(|(_, v)| !v.is_empty())
                .collect();
            let entity = cells.get("code").map(|c| format!("indicator:{c}"));
            indicator_from_cells(&cells)
                .map(|i| Located {
                    file: file.into(),
                    at,
                    entry: RegistryEntry::Indicator(i),
                })
                .map_err(|errors| {
                    errors
                        .into_iter()
                        .map(|e| problem(file, at, entity.clone(), e))
                        .collect()
                })
        })
        .collect()
}

fn indicator_from_cells(
    cells: &HashMap<&str, &str>,
) -> Result<model::indicator::Indicator, Vec<FieldError>> {
    use model::indicator::{Basis, Direction, Frequency, Indicator, Rollup, Sector, Source, Tier};
    let mut c = Checker::default();
    let need = |k: &str| {
        cells
            .get(k)
            .copied()
            .ok_or_else(|| FieldError::new(k, "is required"))
    };
    let id = |k: &str| need(k).and_then(|v| LocalId::parse(k, v));
    let flag = |k: &str| match cells.get(k).map(|v| v.to_lowercase()) {
        None => Ok(false),
        Some(v) if ["true", "1", "x", "có", "yes"].contains(&v.as_str()) => Ok(true),
        Some(v) if ["false", "0", "không", "no"].contains(&v.as_str()) => Ok(false),
        Some(v) => Err(FieldError::new(k, format!("{v:?} is not true or false"))),
    };
    let code = c.check(id("code"));
    let name = c.check(need("name").map(model::text::nfc));
    let sector = c.check(need("sector").and_then(|v| Sector::parse("sector", v)));
    let measure = c.check(need("measure").map(str::to_string));
    let frequency = c.check(need("frequency").and_then(|v| Frequency::parse("frequency", v)));
    let basis = c.check(match cells.get("basis").map(|b| b.to_lowercase()) {
        None => Ok(Basis::Calendar),
        Some(b) if b == "calendar" => Ok(Basis::Calendar),
        Some(b) if b == "reporting" => Ok(Basis::Reporting),
        Some(b) => Err(FieldError::new(
            "basis",
            format!("{b:?} is not calendar or reporting"),
        )),
    });
    let levels = c.check(need("levels").and_then(|v| {
        v.split([';', '|', ' '])
            .filter(|l| !l.is_empty())
            .map(|l| Tier::parse("levels", l))
            .collect::<Result<Vec<_>, _>>()
    }));
    let rollup = c.check(match cells.get("rollup").copied().unwrap_or("sum") {
        "sum" => Ok(Rollup::Sum),
        "mean" => Ok(Rollup::Mean),
        "none" => Ok(Rollup::None),
        "weighted_mean" => id("weight").map(|weight| Rollup::WeightedMean { weight }),
        "ratio" => id("numerator").and_then(|numerator| {
            let denominator = id("denominator")?;
            let scale = match cells.get("scale") {
                None => 100.0,
                Some(s) => number("scale", s)?,
            };
            Ok(Rollup::Ratio {
                numerator,
                denominator,
                scale,
            })
        }),
        other => Err(FieldError::new(
            "rollup",
            format!("{other:?} is not sum, mean, weighted_mean, ratio or none"),
        )),
    });
    let direction = c.check(
        match cells
            .get("direction")
            .copied()
            .unwrap_or("higher_is_better")
        {
            "higher_is_better" => Ok(Direction::HigherIsBetter),
            "lower_is_better" => Ok(Direction::LowerIsBetter),
            "within_range" => Ok(Direction::WithinRange),
            other => Err(FieldError::new(
                "direction",
                format!("{other:?} is not higher_is_better, lower_is_better or within_range"),
            )),
        },
    );
    let agency = c.check(id("agency"));
    let source = c.check(match cells.get("source").copied().unwrap_or("pushed") {
        "pushed" => Ok(Source::Pushed),
        "polled" => Ok(Source::Polled),
        "derived" => Ok(Source::Derived),
        other => Err(FieldError::new(
            "source",
            format!("{other:?} is not pushed, polled or derived"),
        )),
    });
    let derive = c.check(
        cells
            .get("derive")
            .map(|d| Derivation::parse("derive", d))
            .transpose(),
    );
    let cumulative = c.check(flag("cumulative"));
    let public = c.check(flag("public"));
    let deadline_days = c.check(
        cells
            .get("deadline_days")
            .map(|d| {
                d.parse::<u32>()
                    .map_err(|_| FieldError::new("deadline_days", "must be a whole number of days"))
            })
            .transpose(),
    );
    c.finish(|| ()).map_err(|i| i.errors)?;
    // Every cell was read (the checker holds no error), so each is there.
    let bad = || vec![FieldError::new("", "invalid row")];
    Ok(Indicator {
        code: code.ok_or_else(bad)?,
        name: name.ok_or_else(bad)?,
        sector: sector.ok_or_else(bad)?,
        measure: measure.ok_or_else(bad)?,
        frequency: frequency.ok_or_else(bad)?,
        basis: basis.ok_or_else(bad)?,
        levels: levels.ok_or_else(bad)?,
        rollup: rollup.ok_or_else(bad)?,
        direction: direction.ok_or_else(bad)?,
        agency: agency.ok_or_else(bad)?,
        source: source.ok_or_else(bad)?,
        derive: derive.ok_or_else(bad)?,
        cumulative: cumulative.ok_or_else(bad)?,
        public: public.ok_or_else(bad)?,
        deadline_days: deadline_days.ok_or_else(bad)?,
    })
}

fn csv_problem(file: &str, e: &csv::Error) -> EntryProblem {
    let line = e.position().map_or(0, |p| p.line() as usize);
    // csv's messages name positions and lengths, never field contents.
    problem(
        file,
        Where::Line(line),
        None,
        FieldError::new("", format!("not CSV: {e}")),
    )
}

/// One sheet row as a camera; every problem of the row at once.
fn camera_from_cells(
    cells: &HashMap<&str, &str>,
) -> Result<Camera, (Option<String>, Vec<FieldError>)> {
    let mut c = Checker::default();
    // A shifted column can put a stream address where a value is echoed in a problem.
    let mut cells = cells.clone();
    cells.retain(|field, value| {
        let secret = *field != "url"
            && value.split_once("://").is_some_and(|(_, rest)| {
                rest.split('/').next().is_some_and(|a| a.contains('@'))
                    || model::camera::credentials_in_url(rest)
            });
        if secret {
            c.fail(field, "holds a stream address with a user or password (only `url` takes an address, and without them)");
        }
        !secret
    });
    let cells = &cells;
    let need = |c: &mut Checker, field: &str| -> Option<String> {
        let v = cells.get(field).map(|s| s.to_string());
        if v.is_none() {
            c.fail(field, "must not be empty");
        }
        v
    };
    let id = need(&mut c, "id");
    let entity = id.as_ref().map(|i| format!("camera:{i}"));
    let id = id.and_then(|i| c.check(LocalId::parse("id", &i)));
    let name = need(&mut c, "name");
    let lon = need(&mut c, "lon").and_then(|v| c.check(number("lon", &v)));
    let lat = need(&mut c, "lat").and_then(|v| c.check(number("lat", &v)));
    let purpose = need(&mut c, "purpose").and_then(|p| c.check(parse_purpose(&p)));
    let url = need(&mut c, "url");
    let agency = cells
        .get("agency")
        .and_then(|a| c.check(LocalId::parse("agency", a)));
    let group = match (cells.get("group"), purpose) {
        (Some(g), _) => c.check(
            g.parse::<CameraGroup>()
                .map_err(|r| FieldError::new("group", r)),
        ),
        (None, Some(CameraPurpose::PublicOrder)) => Some(CameraGroup::Police),
        (None, Some(CameraPurpose::Traffic)) => Some(CameraGroup::Traffic),
        (None, Some(CameraPurpose::PublicPlace)) => Some(CameraGroup::PublicPlace),
        (None, Some(CameraPurpose::School)) => {
            c.fail(
                "group",
                "school cameras name their school's group: school:<school id>",
            );
            None
        }
        (None, None) => None,
    };
    let transport = match cells.get("transport") {
        None => Some(RtspTransport::Tcp),
        Some(t) => c.check(parse_transport(t)),
    };
    let credentials = cells.get("credentials").map(|s| s.to_string());
    let camera = match (id, name, lon, lat, purpose, group, url, transport) {
        (
            Some(id),
            Some(name),
            Some(lon),
            Some(lat),
            Some(purpose),
            Some(group),
            Some(url),
            Some(transport),
        ) => Some(Camera {
            id,
            name,
            position: GeoPoint { lon, lat },
            agency,
            purpose,
            group,
            stream: StreamSource {
                url,
                transport,
                credentials,
            },
        }),
        _ => None,
    };
    match c.finish(|| camera) {
        Ok(Some(camera)) => Ok(camera),
        Ok(None) => Err((entity, vec![FieldError::new("", "incomplete row")])),
        Err(invalid) => Err((entity, invalid.errors)),
    }
}

fn number(field: &str, s: &str) -> Result<f64, FieldError> {
    s.parse::<f64>().map_err(|_| {
        FieldError::new(
            field,
            format!("`{s}` is not a number (decimal degrees, with a point)"),
        )
    })
}

fn parse_purpose(s: &str) -> Result<CameraPurpose, FieldError> {
    serde_json::from_value(Value::String(s.to_ascii_lowercase())).map_err(|_| {
        FieldError::new(
            "purpose",
            format!("`{s}` is not one of public_order, traffic, school, public_place"),
        )
    })
}

fn parse_transport(s: &str) -> Result<RtspTransport, FieldError> {
    serde_json::from_value(Value::String(s.to_ascii_lowercase())).map_err(|_| {
        FieldError::new(
            "transport",
            format!("`{s}` is not one of tcp, udp, tcp_then_udp"),
        )
    })
}

/// Publishes `registry.upsert` for every entry and returns once the bus acknowledged them all.
pub async fn publish(
    bus: &dyn Bus,
    topic: &str,
    source: &str,
    entries: &[RegistryEntry],
) -> Result<usize, BusError> {
    let now = Utc::now();
    let events: Vec<Envelope> = entries
        .iter()
        .map(|e| e.upsert_event(source, now))
        .collect();
    publish_events(bus, topic, &events).await
}

/// Publishes `registry.remove` for each entity; returns once the bus acknowledged them all.
pub async fn remove(
    bus: &dyn Bus,
    topic: &str,
    source: &str,
    entities: &[EntityId],
) -> Result<usize, BusError> {
    let now = Utc::now();
    let events: Vec<Envelope> = entities
        .iter()
        .map(|entity| RegistryEntry::remove_event(entity.clone(), source, now))
        .collect();
    publish_events(bus, topic, &events).await
}

/// Keyed by entity, 512 writes in flight at a time.
async fn publish_events(
    bus: &dyn Bus,
    topic: &str,
    events: &[Envelope],
) -> Result<usize, BusError> {
    for chunk in events.chunks(512) {
        let writes = chunk
            .iter()
            .map(|env| bus.publish(topic, env.entity.as_str(), Some(env.to_bytes())));
        futures::future::try_join_all(writes).await?;
    }
    Ok(events.len())
}

/// The registry as it stands: the latest upsert of every entity not removed since, read from
/// the start of the topic to its end.
pub async fn current(bus: &dyn Bus, topic: &str) -> Result<Vec<RegistryEntry>, BusError> {
    let mut dir = model::Directory::default();
    let mut sub = bus.read_all(&[topic]).await?;
    while let Some(m) = sub.next_until_caught_up().await? {
        let env = m
            .payload
            .as_deref()
            .and_then(|p| Envelope::from_bytes(p).ok());
        // What the core would refuse (and dead-letter) is not part of the registry.
        if let Some(Ok(Some(change))) = env.map(|e| model::RegistryChange::from_event(&e)) {
            dir.apply(change);
        }
    }
    Ok(dir.entries())
}

/// Cameras as a camera sheet (the columns `ioc registry import` reads), so an inventory can
/// be exported, edited in a spreadsheet and imported again.
pub fn camera_sheet(cameras: &[&Camera]) -> Result<String, csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(CAMERA_COLUMNS)?;
    for c in cameras {
        w.write_record([
            c.id.as_str(),
            &c.name,
            &c.position.lon.to_string(),
            &c.position.lat.to_string(),
            c.agency.as_ref().map_or("", |a| a.as_str()),
            &snake_name(&c.purpose),
            &c.group.to_string(),
            &c.stream.url,
            &snake_name(&c.stream.transport),
            c.stream.credentials.as_deref().unwrap_or(""),
        ])?;
    }
    let bytes = w.into_inner().map_err(|e| e.into_error())?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// An enum's name as the sheet and the JSON spell it (`public_order`, `tcp_then_udp`).
fn snake_name(v: &impl serde::Serialize) -> String {
    match serde_json::to_value(v) {
        Ok(Value::String(s)) => s,
        _ => String::new(),
    }
}

/// How many entries of each kind, for a summary line: "77 camera, 2 station".
pub fn summary(entries: &[RegistryEntry]) -> String {
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    for e in entries {
        *counts.entry(e.entity().kind().to_string()).or_default() += 1;
    }
    counts
        .iter()
        .map(|(k, n)| format!("{n} {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHEET: &str = "\u{feff}id,name,lon,lat,agency,purpose,group,url,transport,credentials
hg-cam-vt-100,\"Ngã tư Trần Hưng Đạo, Vị Thanh\",105.47,9.784,hg-ca,public_order,,rtsp://10.1.2.3:554/Streaming/Channels/101,,nvr-vt
hg-cam-vt-101,Cầu Cái Nhúc,105.471,9.79,hg-sgtvt,traffic,traffic,rtsp://10.1.2.4/ch1,udp,
";

    fn one(file: &str, text: &str) -> Result<Vec<Located>, Vec<EntryProblem>> {
        match parse(file, text) {
            Ok(v) => Ok(v),
            Err(RegistryFileError::Invalid(p)) => Err(p),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn an_indicator_sheet_becomes_catalogue_entries_and_names_every_bad_cell() {
        let sheet = "\u{feff}code,name,sector,measure,frequency,levels,rollup,numerator,denominator,direction,agency,source,cumulative\n\
            hcc-tl-dunghan,Tỷ lệ hồ sơ đúng hạn,public_administration,%,month,province;district,ratio,hcc-hs-dunghan,hcc-hs-giaiquyet,higher_is_better,hg-vpubnd,pushed,\n\
            ns-thu,Thu ngân sách,budget,tỷ đồng,month,district,sum,,,higher_is_better,hg-stc,polled,có\n";
        let got = one("catalogue.csv", sheet).unwrap();
        assert_eq!(got.len(), 2);
        let RegistryEntry::Indicator(i) = &got[0].entry else {
            panic!("{:?}", got[0].entry)
        };
        assert_eq!(i.levels.len(), 2);
        assert!(
            matches!(i.rollup, model::indicator::Rollup::Ratio { scale, .. } if scale == 100.0)
        );
        let RegistryEntry::Indicator(b) = &got[1].entry else {
            panic!()
        };
        assert!(b.cumulative);
        let bad = "code,name,sector,measure,frequency,levels,rollup,agency\n\
            x-1,Tên,healthcare,ca,monthly,district;region,ratio,hg-syt\n";
        let problems = one("catalogue.csv", bad).unwrap_err();
        let fields: Vec<&str> = problems.iter().map(|p| p.error.field.as_str()).collect();
        assert_eq!(
            fields,
            ["sector", "frequency", "levels", "numerator"],
            "{problems:?}"
        );
        assert!(problems.iter().all(|p| p.at == Where::Line(2)));
        assert_eq!(problems[0].entity.as_deref(), Some("indicator:x-1"));
    }

    #[test]
    fn a_camera_sheet_becomes_cameras_with_defaults() {
        let got = one("cams.csv", SHEET).unwrap();
        assert_eq!(got.len(), 2);
        let RegistryEntry::Camera(c) = &got[0].entry else {
            panic!()
        };
        assert_eq!(c.name, "Ngã tư Trần Hưng Đạo, Vị Thanh");
        assert_eq!(c.group, CameraGroup::Police, "group follows the purpose");
        assert_eq!(c.stream.transport, RtspTransport::Tcp);
        assert_eq!(c.stream.credentials.as_deref(), Some("nvr-vt"));
        assert_eq!(got[0].at, Where::Line(2));
        let RegistryEntry::Camera(c) = &got[1].entry else {
            panic!()
        };
        assert_eq!(c.stream.transport, RtspTransport::Udp);
        assert_eq!(c.stream.credentials, None);
    }

    #[test]
    fn every_problem_of_a_sheet_is_named_by_line_and_field() {
        let sheet = "id,name,lon,lat,purpose,group,url
ok-1,Một,105.4,9.7,traffic,,rtsp://h/1
Bad Id,Hai,105.4,north,traffic,,rtsp://h/2
lx-cam-9,Ba,105.4,9.7,school,,rtsp://h/3
x-4,,105.4,9.7,sightseeing,,http://h/4
";
        let p = one("cams.csv", sheet).unwrap_err();
        let said: Vec<String> = p.iter().map(|p| p.to_string()).collect();
        let has = |needle: &str| {
            assert!(
                said.iter().any(|s| s.contains(needle)),
                "no problem says `{needle}` in {said:#?}"
            )
        };
        has("cams.csv line 3 (camera:Bad Id): id:");
        has("line 3 (camera:Bad Id): lat: `north` is not a number");
        has("line 4 (camera:lx-cam-9): group: school cameras name their school's group");
        has("line 5 (camera:x-4): name: must not be empty");
        has("line 5 (camera:x-4): purpose: `sightseeing` is not one of");
        assert_eq!(p.iter().filter(|p| p.at == Where::Line(2)).count(), 0);
    }

    #[test]
    fn a_stream_password_is_refused_and_never_repeated() {
        let sheet = "id,name,lon,lat,purpose,url
cam-1,Một,105.4,9.7,traffic,rtsp://admin:S3cret-99@10.0.0.9:554/live
";
        let p = one("cams.csv", sheet).unwrap_err();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].error.field, "stream.url");
        let all = RegistryFileError::Invalid(p).to_string();
        assert!(
            !all.contains("S3cret-99") && !all.contains("admin"),
            "{all}"
        );
        // A column shifted by one puts the address where values are echoed.
        let shifted = "id,name,lon,lat,purpose,transport,url
cam-2,Hai,105.4,9.7,traffic,rtsp://admin:S3cret-99@10.0.0.9:554/live,
";
        let all = RegistryFileError::Invalid(one("cams.csv", shifted).unwrap_err()).to_string();
        assert!(!all.contains("S3cret-99"), "{all}");
        assert!(all.contains("transport: holds a stream address"), "{all}");
    }

    #[test]
    fn an_api_body_is_checked_like_a_sheet_row() {
        let id = LocalId::parse("id", "vt-cam-9").unwrap();
        let body = |url: &str| {
            serde_json::json!({
                "name": "Cầu Vị Thanh", "position": {"lon": 105.47, "lat": 9.78},
                "purpose": "traffic", "group": "traffic",
                "stream": {"url": url, "credentials": "nvr"}
            })
        };
        let c = camera_from_json(&id, body("rtsp://10.0.0.9/live")).unwrap();
        assert_eq!(
            (c.id.as_str(), c.stream.transport),
            ("vt-cam-9", RtspTransport::Tcp)
        );
        let e = camera_from_json(&id, body("rtsp://u:S3cret-1@10.0.0.9/live")).unwrap_err();
        assert_eq!(e[0].field, "stream.url");
        assert!(!format!("{e:?}").contains("S3cret-1"));
        let mut other = body("rtsp://10.0.0.9/live");
        other["id"] = "vt-cam-10".into();
        assert_eq!(camera_from_json(&id, other).unwrap_err()[0].field, "id");
        let mut wrong = body("rtsp://10.0.0.9/live");
        wrong["stream"] = "rtsp://u:S3cret-1@10.0.0.9/live".into();
        let e = camera_from_json(&id, wrong).unwrap_err();
        assert!(!format!("{e:?}").contains("S3cret-1"), "{e:?}");
        assert!(camera_from_json(&id, Value::Null).is_err());
    }

    #[test]
    fn an_exported_sheet_imports_to_the_same_cameras() {
        let cams: Vec<Camera> = one(
            "cameras.example.csv",
            include_str!("../../ops/cameras.example.csv"),
        )
        .unwrap()
        .into_iter()
        .filter_map(|l| match l.entry {
            RegistryEntry::Camera(c) => Some(c),
            _ => None,
        })
        .collect();
        let sheet = camera_sheet(&cams.iter().collect::<Vec<_>>()).unwrap();
        let again: Vec<RegistryEntry> = one("out.csv", &sheet)
            .unwrap()
            .into_iter()
            .map(|l| l.entry)
            .collect();
        let cams: Vec<RegistryEntry> = cams.into_iter().map(RegistryEntry::Camera).collect();
        assert_eq!(again, cams);
    }

    #[test]
    fn the_example_sheet_in_ops_is_good() {
        let got = one(
            "cameras.example.csv",
            include_str!("../../ops/cameras.example.csv"),
        )
        .unwrap_or_else(|p| panic!("{p:#?}"));
        assert_eq!(got.len(), 3);
    }

    #[test]
    fn unknown_and_missing_columns_are_named() {
        let p = one("cams.csv", "id,name,lat,purpose,url,owner\n").unwrap_err();
        let said = RegistryFileError::Invalid(p).to_string();
        assert!(said.contains("owner: unknown column"), "{said}");
        assert!(said.contains("lon: required column missing"), "{said}");
    }

    #[test]
    fn json_arrays_and_lines_carry_any_registry_entry() {
        let cam = serde_json::to_value(RegistryEntry::Camera(
            match &one("c.csv", SHEET).unwrap()[0].entry {
                RegistryEntry::Camera(c) => c.clone(),
                _ => unreachable!(),
            },
        ))
        .unwrap();
        let array = Value::Array(vec![cam.clone()]).to_string();
        assert_eq!(one("r.json", &array).unwrap().len(), 1);
        let lines = format!("{cam}\n\n{{\"type\":\"camera\",\"id\":\"c-2\"}}\n");
        let p = one("r.jsonl", &lines).unwrap_err();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].at, Where::Line(3));
        assert_eq!(p[0].entity.as_deref(), Some("camera:c-2"));
        assert!(p[0].error.reason.contains("missing field"), "{:?}", p[0]);
        let string_for_object =
            r#"[{"type":"camera","id":"c-3","stream":"rtsp://admin:S3cret-99@10.0.0.9/live"}]"#;
        let p = one("r.json", string_for_object).unwrap_err();
        let said = RegistryFileError::Invalid(p).to_string();
        assert!(!said.contains("S3cret-99"), "{said}");
        assert!(said.contains("invalid type: a string"), "{said}");
        assert!(matches!(
            parse("r.xml", ""),
            Err(RegistryFileError::UnknownFormat { .. })
        ));
    }

    #[test]
    fn the_same_entity_twice_across_files_publishes_nothing() {
        let dir = std::env::temp_dir().join(format!("ioc-registry-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b) = (dir.join("a.csv"), dir.join("b.csv"));
        std::fs::write(&a, SHEET).unwrap();
        std::fs::write(&b, SHEET.lines().take(2).collect::<Vec<_>>().join("\n")).unwrap();
        let err = load_files(&[&a, &b]).unwrap_err().to_string();
        assert!(err.contains("already given at"), "{err}");
        assert!(err.contains("nothing was published"), "{err}");
        assert_eq!(load_files(&[&a]).unwrap().len(), 2);
        let legacy = dir.join("cp1258.csv");
        std::fs::write(&legacy, b"id,name\ncam-1,C\xe2u C\xe1i Nh\xfac\n").unwrap();
        let err = load_files(&[&legacy]).unwrap_err().to_string();
        assert!(err.contains("not UTF-8 text"), "{err}");
        assert_eq!(summary(&load_files(&[&a]).unwrap()), "2 camera");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
