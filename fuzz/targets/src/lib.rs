//! The fuzz targets' bodies: one function per parser of outside input, each taking raw bytes
//! as an attacker would send them. `fuzz/fuzz_targets/*.rs` hand them to libFuzzer
//! (`ops/fuzz.sh`); `tests/seeds.rs` runs every seed of `fuzz/corpus/` through them in CI.
//!
//! A target must never panic on any input: a panic is a finding. Where a parser has a
//! property beyond "no panic" (stripping is idempotent, a refused stream URL is never
//! echoed), the target asserts it.

use std::sync::OnceLock;

/// Every target, by the name of its corpus folder and fuzz binary.
pub const TARGETS: [(&str, fn(&[u8])); 10] = [
    ("reading_payload", reading_payload),
    ("open311_form", open311_form),
    ("registry_csv", registry_csv),
    ("registry_json", registry_json),
    ("zone_geojson", zone_geojson),
    ("ws_message", ws_message),
    ("query_params", query_params),
    ("token", token),
    ("photo", photo),
    ("stream_url", stream_url),
];

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// A reading payload (HTTP body or MQTT message): one reading, an array, or
/// `{"readings": [...]}`.
pub fn reading_payload(data: &[u8]) {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let now = chrono::Utc::now();
    let topic = model::LocalId::parse("station", "hg-vt-sal-01").ok();
    for item in model::reading::split_payload(&v) {
        let _ = model::reading::RawReading(item).validate(None, now);
        let _ = model::reading::RawReading(item).validate(topic.as_ref(), now);
    }
}

/// An Open311 `POST requests` form body (urlencoded), decoded and checked as the intake does.
pub fn open311_form(data: &[u8]) {
    let Ok(fields) = map_api::open311::form_urlencoded(data, map_api::open311::MAX_FORM_FIELDS)
    else {
        return;
    };
    let form = ingest::reports::ReportForm { fields };
    let _ = ingest::reports::check_form(&form);
}

/// A camera sheet (CSV) for `ioc registry import`.
pub fn registry_csv(data: &[u8]) {
    if let Some(t) = text(data) {
        if let Err(e) = ingest::registry::parse("sheet.csv", t) {
            let _ = e.to_string();
        }
    }
}

/// Registry entries as JSON and JSON lines.
pub fn registry_json(data: &[u8]) {
    if let Some(t) = text(data) {
        let _ = ingest::registry::parse("entries.json", t).map_err(|e| e.to_string());
        let _ = ingest::registry::parse("entries.jsonl", t).map_err(|e| e.to_string());
    }
}

/// A zone Feature for `POST /api/v1/zones` (GeoJSON).
pub fn zone_geojson(data: &[u8]) {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = map_api::check_zone(&v);
    }
}

/// A websocket client message.
pub fn ws_message(data: &[u8]) {
    if let Some(t) = text(data) {
        let _ = ui_feeds::protocol::parse(t);
    }
}

/// Query parameters of series, replay and layers: `step`, `bbox`, `limit`, `speed`, split
/// from the input at newlines.
pub fn query_params(data: &[u8]) {
    let Some(t) = text(data) else { return };
    for v in t.split('\n') {
        let _ = store::series::parse_step(v);
        let _ = model::state::parse_bbox(v);
        let _ = map_api::parse_limit(Some(v), 100, 10_000);
        if let Ok(speed) = v.trim().parse::<f64>() {
            let to = chrono::Utc::now();
            let from = to - chrono::Duration::hours(1);
            if let Ok(r) = store::replay::ReplayRequest::new(vec![], from, to, speed) {
                let _ = r.frame_width();
            }
        }
    }
}

fn authenticator() -> &'static auth::Authenticator {
    static A: OnceLock<auth::Authenticator> = OnceLock::new();
    A.get_or_init(|| auth::Authenticator::new(&[7u8; 32]).expect("a 32-byte secret"))
}

/// A bearer token or media ticket as presented.
pub fn token(data: &[u8]) {
    if let Some(t) = text(data) {
        let a = authenticator();
        if let Err(e) = a.verify(t) {
            let _ = e.to_string();
        }
        let _ = a.verify_ticket(t, "cam-1", auth::CameraUse::Snapshot);
    }
}

/// An uploaded photo: stripping never panics, and a stripped photo strips to itself.
pub fn photo(data: &[u8]) {
    if let Ok(clean) = ingest::photo::clean(data) {
        let again = ingest::photo::clean(&clean.bytes).expect("a stripped photo stays valid");
        assert_eq!(again.bytes, clean.bytes, "stripping is idempotent");
    }
}

fn camera_with(url: &str) -> Option<model::Camera> {
    let camera = serde_json::json!({
        "id": "cam-1", "name": "Cam", "position": {"lon": 105.47, "lat": 9.78},
        "purpose": "traffic", "group": "traffic", "stream": {"url": url}
    });
    serde_json::from_value::<model::Camera>(camera).ok()
}

/// Every refusal a stream URL can get, from one URL of each kind: a refusal is one of these
/// fixed texts, so it can never carry the URL (or its password).
fn stream_url_refusals() -> &'static std::collections::HashSet<String> {
    static R: OnceLock<std::collections::HashSet<String>> = OnceLock::new();
    R.get_or_init(|| {
        [
            "http://x/1",
            "rtsp://",
            "rtsp://u:p@h/1",
            "rtsp://h/1?password=p",
        ]
        .iter()
        .filter_map(|u| camera_with(u)?.validate().err())
        .map(|e| e.to_string())
        .collect()
    })
}

/// A camera's stream URL: refused or accepted, a refusal never repeats the URL.
pub fn stream_url(data: &[u8]) {
    let Some(url) = text(data) else { return };
    let _ = model::camera::credentials_in_url(url);
    let Some(c) = camera_with(url) else { return };
    if let Err(e) = c.validate() {
        let said = e.to_string();
        assert!(
            stream_url_refusals().contains(&said),
            "a refusal that is not one of the fixed texts (it may echo the URL): {said}"
        );
    }
}
