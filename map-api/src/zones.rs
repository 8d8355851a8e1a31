//! Custom zones and per-area summaries.
//!
//! `POST /api/v1/zones` takes a GeoJSON Feature (a Polygon or MultiPolygon with a `name`) from
//! an operator or admin, checks it, and puts it on `ioc.registry`; the stream core then
//! publishes it on the `zones` layer and names it in alerts raised inside it.
//! `DELETE /api/v1/zones/{id}` removes one. `GET /api/v1/summary?by=unit|zone` counts, per
//! administrative unit or zone, the stations, their salinity levels and VN_AQI bands, and the
//! active alerts by severity, from the live state.

use api_error::ApiError;
use std::collections::BTreeMap;

use auth::{Caller, Rejection, Role};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use geo::{Area as _, Intersects, MultiPolygon, Point, Validation};
use model::alert::Alert;
use model::place::Area;
use model::{EntityId, Envelope, FieldError, Layer, LocalId, RegistryEntry, StateRecord, Zone};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::ApiState;

/// Most vertices one zone may have.
const MAX_VERTICES: usize = 20_000;

fn may_edit(caller: &Caller) -> Result<(), Rejection> {
    if matches!(caller.role(), Role::Operator | Role::Admin) {
        Ok(())
    } else {
        Err(Rejection::forbidden(
            "zones are drawn by operators and admins",
        ))
    }
}

/// Zone checks running at once (each may take seconds of CPU on a large polygon).
const CHECKS_AT_ONCE: usize = 1;
/// How long a request waits for its check, seconds.
const CHECK_BUDGET_S: u64 = 5;

static CHECKS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(CHECKS_AT_ONCE);

/// Runs [`zone_from`] on a blocking thread, at most [`CHECKS_AT_ONCE`] at a time, so that a
/// large polygon's validity check never stalls the async workers that answer everyone else
/// (`/healthz` stalled 6.5 s under two 20,000-vertex zones when it ran inline): a zone, the
/// field at fault, or 503 when the check did not finish within the budget.
async fn check_off_the_runtime(feature: Value, owner: Option<String>) -> Result<Zone, ApiError> {
    let busy = || {
        ApiError::unavailable(
            format!(
                "the zone could not be checked within {CHECK_BUDGET_S} s; simplify it or retry"
            ),
            10,
        )
        .field("geometry")
    };
    // What is cheap to refuse is refused at once, without waiting for a heavy check's turn.
    if let Some(g) = feature.get("geometry") {
        model::place::rings_closed(g)?;
    }
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(CHECK_BUDGET_S);
    let permit = tokio::time::timeout_at(deadline, CHECKS.acquire())
        .await
        .map_err(|_| busy())?
        .map_err(|_| busy())?;
    // The permit travels with the work: a check that outlives its request still counts.
    let task = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        zone_from(&feature, owner.as_deref())
    });
    match tokio::time::timeout_at(deadline, task).await {
        Ok(Ok(result)) => Ok(result?),
        Ok(Err(_)) | Err(_) => Err(busy()),
    }
}

/// Checks a zone Feature and makes the registry entry.
pub(crate) fn zone_from(feature: &Value, owner: Option<&str>) -> Result<Zone, FieldError> {
    // Free text in any script, NFC.
    let name = feature
        .pointer("/properties/name")
        .and_then(Value::as_str)
        .map(|n| model::text::nfc(n.trim()))
        .filter(|n| !n.is_empty())
        .ok_or_else(|| FieldError::new("properties.name", "is required: 1-200 characters"))?;
    if let Some(reason) = model::text::refuse_text(&name, 200) {
        return Err(FieldError::new("properties.name", reason));
    }
    if let Some(g) = feature.get("geometry") {
        model::place::rings_closed(g)?;
    }
    let geometry: geojson::Geometry = feature
        .get("geometry")
        .cloned()
        .ok_or_else(|| FieldError::new("geometry", "is required: a Polygon or MultiPolygon"))
        .and_then(|g| {
            serde_json::from_value(g)
                .map_err(|e| FieldError::new("geometry", format!("not GeoJSON: {e}")))
        })?;
    let area = Area(geometry);
    let mp: MultiPolygon<f64> = area.to_multipolygon()?;
    let vertices = model::place::vertex_count(&mp);
    if vertices > MAX_VERTICES {
        return Err(FieldError::new(
            "geometry",
            format!("{vertices} vertices; at most {MAX_VERTICES}"),
        ));
    }
    let inside =
        mp.0.iter()
            .flat_map(|p| p.exterior().0.iter())
            .all(|c| (-180.0..=180.0).contains(&c.x) && (-90.0..=90.0).contains(&c.y));
    if !inside {
        return Err(FieldError::new(
            "geometry",
            "coordinates must be [longitude, latitude] in WGS 84 degrees",
        ));
    }
    if !mp.is_valid() {
        return Err(FieldError::new(
            "geometry",
            "the polygon is not valid (self-intersecting, or rings out of order)",
        ));
    }
    if mp.unsigned_area() <= 0.0 {
        return Err(FieldError::new("geometry", "the polygon has no area"));
    }
    let id = match feature.pointer("/properties/id").and_then(Value::as_str) {
        Some(id) => LocalId::parse("properties.id", id)?,
        None => {
            let slug: String = model::text::fold(&name)
                .to_lowercase()
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .collect();
            let slug = slug
                .split('-')
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join("-");
            let suffix = &uuid::Uuid::now_v7().simple().to_string()[24..];
            // A name in a script that folds to nothing Latin still gets an id.
            let stem: String = match slug.chars().take(40).collect::<String>() {
                s if s.is_empty() => "zone".into(),
                s => s.trim_end_matches('-').to_string(),
            };
            LocalId::parse("properties.id", &format!("{stem}-{suffix}"))?
        }
    };
    Ok(Zone {
        id,
        name,
        geometry: area,
        owner: owner.and_then(|o| LocalId::parse("owner", o).ok()),
    })
}

/// Puts a registry event on `ioc.registry`; `Err` is the 503 to send.
pub(crate) async fn publish(st: &ApiState, env: Envelope) -> Result<(), ApiError> {
    st.bus
        .publish(
            &st.registry_topic,
            env.entity.as_str(),
            Some(env.to_bytes()),
        )
        .await
        .map(|_| ())
        .map_err(|e| ApiError::unavailable(e.to_string(), 5))
}

pub async fn create(
    State(st): State<ApiState>,
    caller: Caller,
    slip: audit::Slip,
    body: Option<Json<Value>>,
) -> Result<Response, ApiError> {
    may_edit(&caller)?;
    let Some(Json(feature)) = body else {
        return Err(ApiError::bad_request("", "send a GeoJSON Feature as JSON"));
    };
    let zone = check_off_the_runtime(feature, caller.0.agency.clone()).await?;
    slip.target(format!("zone:{}", zone.id));
    audited_upsert(&st, &caller.0, &slip, RegistryEntry::Zone(zone.clone())).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": zone.id, "name": zone.name, "entity": format!("zone:{}", zone.id)})),
    )
        .into_response())
}

pub async fn delete(
    State(st): State<ApiState>,
    caller: Caller,
    slip: audit::Slip,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    may_edit(&caller)?;
    let entity = LocalId::parse("id", &id)
        .ok()
        .map(|l| EntityId::new(model::EntityKind::Zone, &l));
    let Some(entity) = entity.filter(|e| st.replica.get(e).is_some()) else {
        return Err(not_found("zone", &id));
    };
    publish_removal(&st, &caller, &slip, entity, &id).await
}

/// Writes the audit entry of `slip` (before it takes effect), then puts `entry` on
/// `ioc.registry`; `Err` is the 503 to send when either cannot be written.
pub(crate) async fn audited_upsert(
    st: &ApiState,
    caller: &auth::Claims,
    slip: &audit::Slip,
    entry: RegistryEntry,
) -> Result<(), ApiError> {
    slip.allowed().await?;
    publish(
        st,
        entry.upsert_event(&format!("api:{}", caller.sub), Utc::now()),
    )
    .await
}

/// 404 for a registry entity that is not there.
pub(crate) fn not_found(kind: &str, id: &str) -> ApiError {
    ApiError::not_found("id", format!("no {kind} {id}"))
}

/// Writes the audit entry of `slip`, then puts the removal of `entity` on `ioc.registry`:
/// 202, or the 503 when either cannot be written.
pub(crate) async fn publish_removal(
    st: &ApiState,
    caller: &Caller,
    slip: &audit::Slip,
    entity: EntityId,
    id: &str,
) -> Result<Response, ApiError> {
    slip.allowed().await?;
    let env = RegistryEntry::remove_event(entity, &format!("api:{}", caller.0.sub), Utc::now());
    publish(st, env).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"id": id, "requested": "delete"})),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
pub struct SummaryParams {
    by: Option<String>,
}

#[derive(Default)]
struct Tally {
    name: String,
    stations: u64,
    salinity: BTreeMap<String, u64>,
    aqi: BTreeMap<String, u64>,
    alerts: BTreeMap<String, u64>,
}

impl Tally {
    fn station(&mut self, r: &StateRecord) {
        self.stations += 1;
        if let Some(l) = r.properties.get("salinity_level").and_then(Value::as_str) {
            *self.salinity.entry(l.to_string()).or_default() += 1;
        }
        if let Some(b) = r
            .properties
            .get("aqi")
            .and_then(|a| a.get("band"))
            .and_then(Value::as_str)
        {
            *self.aqi.entry(b.to_string()).or_default() += 1;
        }
    }

    fn alert(&mut self, a: &Alert) {
        if a.state.is_active() {
            let sev = serde_json::to_value(a.severity)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            *self.alerts.entry(sev).or_default() += 1;
        }
    }

    fn json(&self, id: &str) -> Value {
        json!({"id": id, "name": self.name, "stations": self.stations, "salinity_levels": self.salinity,
               "aqi_bands": self.aqi, "active_alerts": self.alerts,
               "active_alerts_total": self.alerts.values().sum::<u64>()})
    }
}

fn point_of(r: &StateRecord) -> Point<f64> {
    Point::new((r.bbox[0] + r.bbox[2]) / 2.0, (r.bbox[1] + r.bbox[3]) / 2.0)
}

pub async fn summary(
    State(st): State<ApiState>,
    caller: Caller,
    Query(p): Query<SummaryParams>,
) -> Result<Response, ApiError> {
    for l in [Layer::Salinity, Layer::AirQuality, Layer::Alerts] {
        caller.require_view(l)?;
    }
    let all = |layers: &[Layer]| {
        let q = replica::Query {
            layers: layers.iter().copied().collect(),
            bbox: None,
            unit: None,
            cameras: caller.0.camera_scope(),
            sensitive: caller.0.sensitive_scope(),
            ..Default::default()
        };
        st.replica.snapshot(&q, usize::MAX).1
    };
    let stations = all(&[Layer::Salinity, Layer::AirQuality]);
    let alerts: Vec<(Alert, std::sync::Arc<StateRecord>)> = all(&[Layer::Alerts])
        .into_iter()
        .filter_map(|r| Alert::from_record(&r).map(|a| (a, r)))
        .collect();
    let mut tallies: BTreeMap<String, Tally> = BTreeMap::new();
    match p.by.as_deref().unwrap_or("unit") {
        "unit" => {
            for u in all(&[Layer::Units]) {
                let name = u.name().to_string();
                tallies
                    .entry(u.entity.local().to_string())
                    .or_default()
                    .name = name;
            }
            for r in &stations {
                for u in &r.units {
                    tallies.entry(u.to_string()).or_default().station(r);
                }
            }
            for (a, r) in &alerts {
                for u in &r.units {
                    tallies.entry(u.to_string()).or_default().alert(a);
                }
            }
        }
        "zone" => {
            let zones: Vec<(String, String, MultiPolygon<f64>)> = all(&[Layer::Zones])
                .into_iter()
                .filter_map(|z| {
                    let mp = Area(z.geometry.clone()).to_multipolygon().ok()?;
                    let name = z.name().to_string();
                    Some((z.entity.local().to_string(), name, mp))
                })
                .collect();
            for (id, name, mp) in &zones {
                let t = tallies.entry(id.clone()).or_default();
                t.name = name.clone();
                for r in stations.iter().filter(|r| mp.intersects(&point_of(r))) {
                    t.station(r);
                }
                for (a, r) in &alerts {
                    if a.zones.iter().any(|z| z.as_str() == id) || mp.intersects(&point_of(r)) {
                        t.alert(a);
                    }
                }
            }
        }
        other => {
            return Err(ApiError::bad_request(
                "by",
                format!("{other:?} is not unit or zone"),
            ))
        }
    }
    let items: Vec<Value> = tallies.iter().map(|(id, t)| t.json(id)).collect();
    Ok(Json(json!({"by": p.by.as_deref().unwrap_or("unit"), "areas": items})).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square(name: &str, closed: bool) -> Value {
        let mut ring = vec![[105.4, 9.7], [105.5, 9.7], [105.5, 9.8], [105.4, 9.8]];
        if closed {
            ring.push([105.4, 9.7]);
        }
        json!({"type": "Feature", "properties": {"name": name},
               "geometry": {"type": "Polygon", "coordinates": [ring]}})
    }

    #[test]
    fn open_rings_are_refused_and_names_in_any_script_accepted() {
        let e = zone_from(&square("Khu A", false), None).unwrap_err();
        assert_eq!(e.field, "geometry");
        assert!(e.reason.contains("closed"));
        for name in ["Khu vực chợ nổi Ngã Bảy", "集市区", "ตลาดน้ำ", "سوق"]
        {
            let z = zone_from(&square(name, true), None).unwrap();
            assert_eq!(z.name, name);
            assert!(!z.id.as_str().is_empty());
        }
        let e = zone_from(&square("a\u{FFFE}", true), None).unwrap_err();
        assert_eq!(e.field, "properties.name");
    }
}
