//! Field-report intake (Open311 GeoReport v2 `POST requests`): the fields a citizen's app
//! sends are checked one by one, photos are stripped of their metadata and kept, the report is
//! placed in its units by point-in-polygon and routed to the agency that handles its category
//! there ([`model::report::RouteTable`]), and `report.created` is written to the reports
//! topic. The caller answers the citizen only after the bus acknowledged it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::directory::RegistryView;
use bus::{Bus, BusError};
use chrono::{DateTime, Utc};
use model::error::Checker;
use model::report::life::{Contact, Routing};
use model::report::{attributes, service, ReportCreated, RouteTable};
use model::text::nfc;
use model::{EntityId, Envelope, EventKind, FieldError, Invalid, LocalId};
use sha2::{Digest, Sha256};
use store::{History, Media};
use tracing::warn;
use uuid::Uuid;

use crate::photo::{self, PhotoError};

/// Limits of the intake.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ReportIntakeConfig {
    /// Largest photo accepted, bytes.
    pub max_photo_bytes: usize,
    /// Most photos per report.
    pub max_photos: usize,
    /// Routes and deadlines (empty: every report goes to the operators' queue).
    pub routing: RouteTable,
}

impl Default for ReportIntakeConfig {
    fn default() -> Self {
        Self {
            max_photo_bytes: 5 * 1024 * 1024,
            max_photos: 3,
            routing: RouteTable::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// The registry (units, agencies) is not loaded yet.
    #[error("the report intake is starting")]
    NotReady,
    #[error("bus unavailable: {0}")]
    BusUnavailable(String),
    #[error("photo store unavailable: {0}")]
    MediaUnavailable(String),
}

impl From<BusError> for IntakeError {
    fn from(e: BusError) -> Self {
        IntakeError::BusUnavailable(e.to_string())
    }
}

/// The fields of an Open311 `POST requests`, as sent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReportForm {
    pub fields: Vec<(String, String)>,
}

impl ReportForm {
    fn one(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }
}

/// A photo as uploaded (multipart `media`).
#[derive(Debug, Clone)]
pub struct Upload {
    pub bytes: Vec<u8>,
}

/// The checked content of a form, before routing.
#[derive(Debug)]
struct Checked {
    service_code: String,
    lat: f64,
    lon: f64,
    address: Option<String>,
    description: String,
    media_url: Option<String>,
    attributes: BTreeMap<String, String>,
    contact: Contact,
}

fn text(inv: &mut Checker, form: &ReportForm, field: &str, max: usize) -> Option<String> {
    let v = form.one(field)?;
    if let Some(reason) = model::text::refuse_text(v, max) {
        inv.fail(field, reason);
        return None;
    }
    Some(nfc(v))
}

/// Why a link a reporter gave is refused: only an absolute http(s) URL with a host, no
/// user or password, and nothing that could end an attribute or start markup where the link
/// is shown.
fn refuse_link(u: &str) -> Option<&'static str> {
    if u.chars()
        .any(|c| c.is_whitespace() || matches!(c, '<' | '>' | '"' | '\'' | '`' | '\\'))
    {
        return Some("must be a plain URL: no spaces, quotes, angle brackets or backslashes");
    }
    if u.split_once("://")
        .is_none_or(|(_, rest)| rest.starts_with('/'))
    {
        return Some("must be an absolute http(s) URL with a host");
    }
    match url::Url::parse(u) {
        Ok(p) if !matches!(p.scheme(), "http" | "https") => Some("must be an http(s) URL"),
        Ok(p) if p.host_str().is_none_or(str::is_empty) => Some("must name a host"),
        Ok(p) if !p.username().is_empty() || p.password().is_some() => {
            Some("must not carry a user or password")
        }
        Ok(_) => None,
        Err(_) => Some("must be an absolute http(s) URL"),
    }
}

fn coordinate(inv: &mut Checker, form: &ReportForm, field: &str, limit: f64) -> Option<f64> {
    let v = form.one(field)?;
    match v.parse::<f64>() {
        Ok(x) if x.is_finite() && x.abs() <= limit => Some(x),
        _ => {
            inv.fail(field, format!("must be a decimal number within ±{limit}"));
            None
        }
    }
}

/// Checks an Open311 form as the intake does, without taking it (for fuzzing and tools).
pub fn check_form(form: &ReportForm) -> Result<(), Invalid> {
    check(form).map(|_| ())
}

fn check(form: &ReportForm) -> Result<Checked, Invalid> {
    let mut inv = Checker::default();
    let code = form.one("service_code");
    let svc = match code {
        None => {
            inv.fail("service_code", "is required");
            None
        }
        Some(c) => {
            let s = service(c);
            if s.is_none() {
                inv.fail(
                    "service_code",
                    format!("unknown service {c:?}; GET services.json lists them"),
                );
            }
            s
        }
    };
    let lat = coordinate(&mut inv, form, "lat", 90.0);
    let lon = coordinate(&mut inv, form, "long", 180.0);
    let address = text(&mut inv, form, "address_string", 500);
    let position = match (form.one("lat"), form.one("long"), lat, lon) {
        (_, _, Some(lat), Some(lon)) => Some((lat, lon)),
        (None, None, _, _) => {
            if address.is_some() {
                inv.fail(
                    "lat",
                    "lat and long are required: addresses alone cannot be placed on the map yet",
                );
            } else {
                inv.fail("lat", "a location is required: lat and long");
            }
            None
        }
        (Some(_), None, _, _) => {
            inv.fail("long", "is required with lat");
            None
        }
        (None, Some(_), _, _) => {
            inv.fail("lat", "is required with long");
            None
        }
        _ => None, // the coordinate itself was named above
    };
    let description = text(&mut inv, form, "description", 4000).unwrap_or_default();
    let media_url = text(&mut inv, form, "media_url", 2048);
    if let Some(reason) = media_url.as_deref().and_then(refuse_link) {
        inv.fail("media_url", reason);
    }
    let email = text(&mut inv, form, "email", 254);
    if let Some(e) = &email {
        let ok = e.split_once('@').is_some_and(|(a, b)| {
            !a.is_empty() && b.contains('.') && !b.starts_with('.') && !e.contains(' ')
        });
        if !ok {
            inv.fail("email", "is not an e-mail address");
        }
    }
    let phone = text(&mut inv, form, "phone", 32);
    if let Some(p) = &phone {
        let digits = p.chars().filter(char::is_ascii_digit).count();
        if digits < 8
            || p.chars()
                .any(|c| !(c.is_ascii_digit() || " +-().".contains(c)))
        {
            inv.fail("phone", "is not a phone number");
        }
    }
    let contact = Contact {
        first_name: text(&mut inv, form, "first_name", 100),
        last_name: text(&mut inv, form, "last_name", 100),
        email,
        phone,
        device_id: text(&mut inv, form, "device_id", 200),
    };
    // attribute[code]=value, checked against the service definition.
    let mut attrs = BTreeMap::new();
    if let Some(svc) = svc {
        let defs = attributes(svc.code);
        for (k, v) in &form.fields {
            let Some(code) = k
                .strip_prefix("attribute[")
                .and_then(|r| r.strip_suffix(']'))
            else {
                continue;
            };
            let field = k.as_str();
            let Some(def) = defs.iter().find(|d| d.code == code) else {
                inv.fail(field, format!("{} has no attribute {code:?}", svc.code));
                continue;
            };
            let v = v.trim();
            let ok = match def.datatype {
                "number" => v.parse::<f64>().is_ok_and(f64::is_finite),
                "singlevaluelist" => def.values.iter().any(|(key, _)| *key == v),
                _ => v.chars().count() <= 500,
            };
            if !ok {
                let keys: Vec<&str> = def.values.iter().map(|(k, _)| *k).collect();
                inv.fail(
                    field,
                    match def.datatype {
                        "number" => "must be a number".to_string(),
                        "singlevaluelist" => format!("must be one of {}", keys.join(", ")),
                        _ => "at most 500 characters".to_string(),
                    },
                );
                continue;
            }
            attrs.insert(code.to_string(), nfc(v));
        }
        for def in defs.iter().filter(|d| d.required) {
            if !attrs.contains_key(def.code) && !inv.names(&format!("attribute[{}]", def.code)) {
                inv.fail(
                    &format!("attribute[{}]", def.code),
                    "is required for this service",
                );
            }
        }
    }
    let svc_code = svc.map(|s| s.code.to_string());
    inv.finish(|| {
        let (lat, lon) = position.expect("errors otherwise");
        Checked {
            service_code: svc_code.expect("errors otherwise"),
            lat,
            lon,
            address,
            description,
            media_url,
            attributes: attrs,
            contact,
        }
    })
}

/// A new report id: `pa-<date in Vietnam>-<8 random base32 characters>`, unique without
/// coordination between intake instances.
fn new_id(now: DateTime<Utc>) -> LocalId {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut bits: u64 = rand::random();
    let mut tail = String::with_capacity(8);
    for _ in 0..8 {
        tail.push(ALPHABET[(bits & 31) as usize] as char);
        bits >>= 5;
    }
    let vn = now.with_timezone(&chrono::FixedOffset::east_opt(7 * 3600).expect("UTC+7"));
    LocalId::parse("id", &format!("pa-{}-{tail}", vn.format("%Y%m%d"))).expect("safe characters")
}

/// Checks, routes and publishes new reports.
pub struct ReportIntake {
    bus: Arc<dyn Bus>,
    topic: String,
    places: Arc<RegistryView>,
    config: ReportIntakeConfig,
    media: Option<Arc<dyn History>>,
    recent: std::sync::Mutex<RecentReports>,
}

/// What became of a submission.
#[derive(Debug, Clone)]
pub enum Filed {
    /// A new report, written to the bus.
    New(Box<ReportCreated>),
    /// The same reporter sent the same report again (a retry, a double tap, a script):
    /// nothing was written; this is the report it made before.
    Again(LocalId),
}

/// The reports this intake took recently, by their fingerprint (reporter, service,
/// place, text, attributes, photos), so that the same report from the same reporter is
/// answered with the report it made instead of making another. Bounded in count and age.
#[derive(Debug)]
pub struct RecentReports {
    by_print: HashMap<u64, (LocalId, DateTime<Utc>)>,
    keys: std::collections::hash_map::RandomState,
    window: chrono::Duration,
    max: usize,
}

impl RecentReports {
    pub fn new(window: chrono::Duration, max: usize) -> Self {
        Self {
            by_print: HashMap::new(),
            keys: Default::default(),
            window,
            max: max.max(1),
        }
    }

    fn print(&self, reporter: &str, c: &Checked, uploads: &[Upload]) -> u64 {
        use std::hash::{BuildHasher, Hash, Hasher};
        let mut h = self.keys.build_hasher();
        reporter.hash(&mut h);
        c.service_code.hash(&mut h);
        // About 10 m: the same spot tapped twice.
        ((c.lat * 1e4).round() as i64, (c.lon * 1e4).round() as i64).hash(&mut h);
        let text: String = c
            .description
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase();
        text.hash(&mut h);
        c.address.hash(&mut h);
        c.media_url.hash(&mut h);
        c.attributes.hash(&mut h);
        for u in uploads {
            u.bytes.hash(&mut h);
        }
        h.finish()
    }

    /// The report `print` made within the window, if any.
    fn seen(&mut self, print: u64, now: DateTime<Utc>) -> Option<LocalId> {
        let window = self.window;
        match self.by_print.get(&print) {
            Some((id, at)) if now - *at <= window => Some(id.clone()),
            _ => None,
        }
    }

    fn remember(&mut self, print: u64, id: LocalId, now: DateTime<Utc>) {
        if self.by_print.len() >= self.max {
            let window = self.window;
            self.by_print.retain(|_, (_, at)| now - *at <= window);
            if self.by_print.len() >= self.max {
                // Still full of fresh ones: forget the oldest half.
                let mut ages: Vec<DateTime<Utc>> = self.by_print.values().map(|v| v.1).collect();
                let mid = ages.len() / 2;
                ages.select_nth_unstable(mid);
                let cut = ages[mid];
                self.by_print.retain(|_, (_, at)| *at > cut);
            }
        }
        self.by_print.insert(print, (id, now));
    }

    fn forget(&mut self, print: u64) {
        self.by_print.remove(&print);
    }
}

impl ReportIntake {
    pub fn new(
        bus: Arc<dyn Bus>,
        topic: String,
        places: Arc<RegistryView>,
        config: ReportIntakeConfig,
        media: Option<Arc<dyn History>>,
    ) -> Self {
        Self {
            bus,
            topic,
            places,
            config,
            media,
            recent: std::sync::Mutex::new(RecentReports::new(chrono::Duration::hours(24), 100_000)),
        }
    }

    pub fn places(&self) -> &Arc<RegistryView> {
        &self.places
    }

    pub fn config(&self) -> &ReportIntakeConfig {
        &self.config
    }

    /// Strips and keeps uploaded photos; returns their ids (`<hash>.jpg`).
    async fn keep_photos(&self, uploads: &[Upload]) -> Result<Vec<String>, IntakeError> {
        let mut inv = Checker::default();
        if uploads.len() > self.config.max_photos {
            inv.fail(
                "media",
                format!("at most {} photos", self.config.max_photos),
            );
        }
        let mut clean = Vec::new();
        for (i, u) in uploads.iter().enumerate() {
            let field = if uploads.len() == 1 {
                "media".to_string()
            } else {
                format!("media[{i}]")
            };
            if u.bytes.len() > self.config.max_photo_bytes {
                inv.fail(
                    &field,
                    format!("larger than {} bytes", self.config.max_photo_bytes),
                );
                continue;
            }
            match photo::clean(&u.bytes) {
                Ok(p) => clean.push(p),
                Err(e @ (PhotoError::NotAPhoto | PhotoError::Damaged(_))) => {
                    inv.fail(&field, e.to_string())
                }
            }
        }
        inv.finish(|| ())?;
        if clean.is_empty() {
            return Ok(Vec::new());
        }
        let Some(store) = &self.media else {
            return Err(IntakeError::MediaUnavailable(
                "this process keeps no photos (no store)".into(),
            ));
        };
        let mut ids = Vec::new();
        for p in clean {
            let sha = hex(&Sha256::digest(&p.bytes));
            let id = format!("{}.{}", &sha[..32], p.kind.extension());
            store
                .put_media(&Media {
                    id: id.clone(),
                    content_type: p.kind.content_type().into(),
                    bytes: p.bytes,
                    sha256: sha,
                })
                .await
                .map_err(|e| IntakeError::MediaUnavailable(e.to_string()))?;
            ids.push(id);
        }
        Ok(ids)
    }

    /// Checks the form, keeps the photos, routes the report and writes `report.created`;
    /// returns it once the bus acknowledged it. `media_base` makes uploaded photo ids into
    /// links (`<media_base>/<id>`).
    pub async fn submit(
        &self,
        form: &ReportForm,
        uploads: &[Upload],
        reporter: &auth::Claims,
        media_base: &str,
    ) -> Result<Filed, IntakeError> {
        if !self.places.is_ready() {
            return Err(IntakeError::NotReady);
        }
        let checked = check(form)?;
        let now = Utc::now();
        let id = new_id(now);
        // The same report from the same reporter: the one made before. Claimed before the
        // write, so two identical submissions at once make one report.
        let print = {
            let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
            let print = recent.print(&reporter.principal(), &checked, uploads);
            if let Some(existing) = recent.seen(print, now) {
                metrics::counter!("ioc_reports_repeated_total").increment(1);
                return Ok(Filed::Again(existing));
            }
            recent.remember(print, id.clone(), now);
            print
        };
        let result = self
            .write(checked, uploads, reporter, media_base, id, now)
            .await;
        if result.is_err() {
            self.recent
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .forget(print);
        }
        result.map(|c| Filed::New(Box::new(c)))
    }

    async fn write(
        &self,
        checked: Checked,
        uploads: &[Upload],
        reporter: &auth::Claims,
        media_base: &str,
        id: LocalId,
        now: DateTime<Utc>,
    ) -> Result<ReportCreated, IntakeError> {
        let photos = self.keep_photos(uploads).await?;
        let (units, unit_names) = self.places.locate(checked.lon, checked.lat);
        let routed = self
            .config
            .routing
            .route(&checked.service_code, &units, |u| self.places.level(u));
        // A route naming an agency the registry does not know falls back to the operators.
        let (agency, agency_name, rule) = match routed.agency {
            Some(a) => match self.places.agency_name(&a) {
                Some(name) => (Some(a), Some(name), routed.rule),
                None => {
                    warn!(agency = %a, "route names an agency not in the registry");
                    (
                        None,
                        None,
                        format!(
                            "{} (đơn vị {a} không có trong danh mục): hàng đợi Trung tâm IOC",
                            routed.rule
                        ),
                    )
                }
            },
            None => (None, None, routed.rule),
        };
        let mut media: Vec<String> = checked.media_url.into_iter().collect();
        media.extend(photos.iter().map(|id| format!("{media_base}/{id}")));
        let created = ReportCreated {
            id,
            event_id: Uuid::now_v7(),
            service_code: checked.service_code,
            description: checked.description,
            lat: checked.lat,
            lon: checked.lon,
            address: checked.address,
            media,
            attributes: checked.attributes,
            contact: checked.contact,
            reporter: reporter.principal(),
            reporter_role: Some(reporter.role.as_str().to_string()),
            requested: now.fixed_offset(),
            routing: Routing {
                units,
                unit_names,
                agency,
                agency_name,
                rule,
                level: routed.level,
            },
            deadline_h: routed.deadline_h,
        };
        let env = Envelope::new(
            EventKind::ReportCreated,
            EntityId::new(model::EntityKind::Report, &created.id),
            created.requested,
            now,
            "open311",
            serde_json::to_value(&created).expect("reports serialise"),
        );
        self.bus
            .publish(&self.topic, env.entity.as_str(), Some(env.to_bytes()))
            .await?;
        metrics::counter!("ioc_reports_created_total", "routed" => if created.routing.agency.is_some() { "agency" } else { "operators" }).increment(1);
        Ok(created)
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The error of one field, for callers that build single-field errors.
pub fn field_error(field: &str, reason: &str) -> Invalid {
    Invalid {
        errors: vec![FieldError::new(field, reason)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_given_by_reporters_are_plain_absolute_http_urls() {
        assert_eq!(refuse_link("https://anh.example.vn/p/1.jpg"), None);
        assert_eq!(refuse_link("http://10.0.0.1:8080/a?b=c"), None);
        for bad in [
            "http://x/\"><img src=x onerror=alert(1)>",
            "javascript:alert(1)",
            "ftp://x/y",
            "/relative/path.jpg",
            "http://user:pw@x/y",
            "http:///nohost",
            "https://x/a b",
            "data:image/png;base64,AAAA",
        ] {
            assert!(refuse_link(bad).is_some(), "{bad}");
        }
    }

    fn form(pairs: &[(&str, &str)]) -> ReportForm {
        ReportForm {
            fields: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn fields(e: Invalid) -> Vec<String> {
        e.errors.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn a_good_form_is_checked_and_normalised() {
        // "ngập" with a decomposed (NFD) diacritic, as some keyboards send it.
        let c = check(&form(&[
            ("service_code", "infra.drainage_flooding"),
            ("lat", "9.7841"),
            ("long", "105.4701"),
            ("description", "Đường ngâ\u{0323}p sâu"),
            ("attribute[water_depth_cm]", "40"),
            ("email", "an.nguyen@example.vn"),
            ("phone", "+84 292 3871 234"),
        ]))
        .unwrap();
        assert_eq!(c.description, "Đường ngập sâu");
        assert_eq!(c.attributes["water_depth_cm"], "40");
        assert_eq!(c.contact.email.as_deref(), Some("an.nguyen@example.vn"));
    }

    #[test]
    fn every_bad_field_is_named() {
        let e = check(&form(&[
            ("service_code", "nope"),
            ("lat", "91"),
            ("long", "105"),
            ("email", "not-an-address"),
        ]))
        .unwrap_err();
        assert_eq!(fields(e), vec!["service_code", "lat", "email"]);
        let e = check(&form(&[
            ("service_code", "env.waste"),
            ("address_string", "Chợ Vị Thanh"),
        ]))
        .unwrap_err();
        assert_eq!(fields(e.clone()), vec!["lat"]);
        assert!(e.errors[0].reason.contains("addresses alone"));
        let e = check(&form(&[
            ("service_code", "env.salinity_water"),
            ("lat", "10.36"),
            ("long", "106.36"),
        ]))
        .unwrap_err();
        assert_eq!(
            fields(e),
            vec!["attribute[water_source]"],
            "required attribute"
        );
        let e = check(&form(&[
            ("service_code", "traffic.road_damage"),
            ("lat", "10.36"),
            ("long", "106.36"),
            ("attribute[damage_type]", "volcano"),
            ("attribute[colour]", "red"),
        ]))
        .unwrap_err();
        assert_eq!(
            fields(e),
            vec!["attribute[damage_type]", "attribute[colour]"]
        );
        let e = check(&form(&[("lat", "10.36")])).unwrap_err();
        assert_eq!(fields(e), vec!["service_code", "long"]);
    }

    #[test]
    fn ids_are_dated_and_distinct() {
        let now = Utc::now();
        let a = new_id(now);
        let b = new_id(now);
        assert_ne!(a, b);
        assert!(
            a.as_str().starts_with("pa-20") && a.as_str().len() == 20,
            "{a}"
        );
    }
}
