//! Video-wall layouts: `GET /api/v1/layouts` lists them, `GET /api/v1/layouts/{id}` gives one,
//! `PUT` stores one (operators and admins; checked like zones and put on `ioc.registry`),
//! `DELETE` removes it, and `POST`/`DELETE /api/v1/layouts/{id}/focus` point every screen of
//! the layout at an incident or release them (operators only; audited). The stream core
//! turns each into a record of the `layouts` layer, which reaches the open screens over
//! their websockets — on every API instance, since it travels through the bus.

use api_error::ApiError;
use auth::{Caller, Rejection, Role};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use model::wall::{Focus, WallLayout};
use model::{EntityId, EntityKind, FieldError, Layer, LocalId, RegistryEntry, StateRecord};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::zones::{audited_upsert, not_found, publish_removal};
use crate::ApiState;

/// Who may store and remove layouts.
fn may_edit(caller: &Caller) -> Result<(), Rejection> {
    if matches!(caller.role(), Role::Operator | Role::Admin) {
        Ok(())
    } else {
        Err(Rejection::forbidden(
            "wall layouts are edited by operators and admins",
        ))
    }
}

/// Who may focus a wall: the operators who run it.
fn may_focus(caller: &Caller) -> Result<(), Rejection> {
    if caller.role() == Role::Operator {
        Ok(())
    } else {
        Err(Rejection::forbidden("a wall is focused by its operators"))
    }
}

fn entity(id: &LocalId) -> EntityId {
    EntityId::new(EntityKind::Layout, id)
}

/// The layout a record of the `layouts` layer holds.
fn layout_of(rec: &StateRecord) -> Option<WallLayout> {
    let mut v = Value::Object(rec.properties.clone());
    v["id"] = rec.entity.local().into();
    serde_json::from_value(v).ok()
}

/// The stored layout `id`, or 404.
fn stored(st: &ApiState, id: &str) -> Result<(LocalId, WallLayout), ApiError> {
    let local = LocalId::parse("id", id).map_err(|_| not_found("layout", id))?;
    st.replica
        .get(&entity(&local))
        .as_deref()
        .and_then(layout_of)
        .map(|l| (local, l))
        .ok_or_else(|| not_found("layout", id))
}

/// The layout as answered: itself, and the address of each of its screens.
fn answer(l: &WallLayout) -> Value {
    let mut v = serde_json::to_value(l).unwrap_or(Value::Null);
    v["screen_urls"] = (0..l.screens.len())
        .map(|n| format!("/wall/{}?screen={n}", l.id))
        .collect::<Vec<_>>()
        .into();
    v
}

pub async fn list(State(st): State<ApiState>, caller: Caller) -> Result<Response, ApiError> {
    caller.require_view(Layer::Layouts)?;
    let q = replica::Query {
        layers: [Layer::Layouts].into_iter().collect(),
        ..Default::default()
    };
    let mut items: Vec<Value> = st
        .replica
        .snapshot(&q, usize::MAX)
        .1
        .iter()
        .filter_map(|r| layout_of(r))
        .map(|l| {
            json!({"id": l.id, "name": l.name, "screens": l.screens.len(),
                   "focus": l.focus, "screen_urls": answer(&l)["screen_urls"]})
        })
        .collect();
    items.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    Ok(Json(json!({"layouts": items})).into_response())
}

pub async fn one(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require_view(Layer::Layouts)?;
    let (_, l) = stored(&st, &id)?;
    Ok(Json(answer(&l)).into_response())
}

/// Checks the cameras a layout names against the registry as this process sees it.
fn cameras_known(st: &ApiState, l: &WallLayout) -> Result<(), FieldError> {
    for (field, c) in l.cameras() {
        if st
            .replica
            .get(&EntityId::new(EntityKind::Camera, c))
            .is_none()
        {
            return Err(FieldError::new(field, format!("no camera {c}")));
        }
    }
    Ok(())
}

pub async fn put(
    State(st): State<ApiState>,
    caller: Caller,
    slip: audit::Slip,
    Path(id): Path<String>,
    body: Option<Json<Value>>,
) -> Result<Response, ApiError> {
    may_edit(&caller)?;
    let local = LocalId::parse("id", &id)?;
    let Some(Json(body)) = body else {
        return Err(ApiError::bad_request("", "send the layout as JSON"));
    };
    let mut layout = WallLayout::from_json(local.clone(), body)?;
    cameras_known(&st, &layout)?;
    // An edit keeps where the wall is focused.
    let existing = st.replica.get(&entity(&local));
    layout.focus = existing
        .as_deref()
        .and_then(layout_of)
        .and_then(|l| l.focus);
    let entry = RegistryEntry::Layout(layout.clone());
    audited_upsert(&st, &caller.0, &slip, entry).await?;
    let status = if existing.is_some() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(answer(&layout))).into_response())
}

pub async fn delete(
    State(st): State<ApiState>,
    caller: Caller,
    slip: audit::Slip,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    may_edit(&caller)?;
    let (local, _) = stored(&st, &id)?;
    publish_removal(&st, &caller, &slip, entity(&local), &id).await
}

#[derive(Debug, Deserialize)]
pub struct FocusBody {
    lon: Option<f64>,
    lat: Option<f64>,
    radius_m: Option<f64>,
    label: Option<String>,
}

/// The nearest-camera radius of a focus when the request names none, metres.
const DEFAULT_FOCUS_RADIUS_M: f64 = 1000.0;

pub async fn focus(
    State(st): State<ApiState>,
    caller: Caller,
    slip: audit::Slip,
    Path(id): Path<String>,
    body: Option<Json<FocusBody>>,
) -> Result<Response, ApiError> {
    may_focus(&caller)?;
    let (_, mut layout) = stored(&st, &id)?;
    let Some(Json(b)) = body else {
        return Err(ApiError::bad_request(
            "",
            "send {\"lon\": …, \"lat\": …} as JSON",
        ));
    };
    let (Some(lon), Some(lat)) = (b.lon, b.lat) else {
        let field = if b.lon.is_none() { "lon" } else { "lat" };
        return Err(ApiError::bad_request(field, "is required: WGS 84 degrees"));
    };
    let f = Focus::new(
        lon,
        lat,
        b.radius_m.unwrap_or(DEFAULT_FOCUS_RADIUS_M),
        b.label,
        Utc::now(),
        &caller.0.sub,
    )?;
    layout.focus = Some(f);
    refocused(&st, &caller, &slip, layout).await
}

pub async fn release(
    State(st): State<ApiState>,
    caller: Caller,
    slip: audit::Slip,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    may_focus(&caller)?;
    let (_, mut layout) = stored(&st, &id)?;
    layout.focus = None;
    refocused(&st, &caller, &slip, layout).await
}

/// Audits and publishes a layout whose focus changed: 202 with where it is focused now.
async fn refocused(
    st: &ApiState,
    caller: &Caller,
    slip: &audit::Slip,
    layout: WallLayout,
) -> Result<Response, ApiError> {
    let answer = json!({"id": layout.id, "focus": layout.focus});
    audited_upsert(st, &caller.0, slip, RegistryEntry::Layout(layout)).await?;
    Ok((StatusCode::ACCEPTED, Json(answer)).into_response())
}
