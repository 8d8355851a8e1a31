//! Cameras in the registry, by an admin over HTTP: `PUT /api/v1/cameras/{id}` adds or changes
//! one, `DELETE /api/v1/cameras/{id}` removes one. The body is checked like a row of a camera
//! sheet (`ingest::registry`), a stream URL with a user or password is refused without being
//! repeated, every change is written to the audit log before it goes to `ioc.registry`,
//! and the answer (202) comes once the bus has it: the workers and the map follow from there.

use api_error::ApiError;
use auth::{Caller, Rejection, Role};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use model::{EntityId, FieldError, LocalId, RegistryEntry};
use serde_json::{json, Value};

use crate::zones::{audited_upsert, not_found, publish_removal};
use crate::ApiState;

/// The camera id of an admin's request; `Err` is the 403 or 400 to send.
fn admin_camera(caller: &Caller, id: &str) -> Result<LocalId, ApiError> {
    if caller.role() != Role::Admin {
        return Err(Rejection::forbidden("cameras are registered by admins").into());
    }
    Ok(LocalId::parse("id", id)?)
}

/// `PUT /api/v1/cameras/{id}`: the camera as the registry keeps it (name, position, agency,
/// purpose, group, stream {url, transport, credentials}).
pub async fn put(
    State(st): State<ApiState>,
    caller: Caller,
    slip: audit::Slip,
    Path(id): Path<String>,
    body: Option<Json<Value>>,
) -> Result<Response, ApiError> {
    let local = admin_camera(&caller, &id)?;
    let Some(Json(body)) = body else {
        return Err(ApiError::bad_request("", "send the camera as JSON"));
    };
    let camera = ingest::registry::camera_from_json(&local, body).map_err(|errors| {
        let first = errors
            .first()
            .cloned()
            .unwrap_or_else(|| FieldError::new("", "invalid"));
        ApiError::from(first).with("errors", json!(errors))
    })?;
    let entry = RegistryEntry::Camera(camera);
    audited_upsert(&st, &caller.0, &slip, entry).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"id": id, "entity": format!("camera:{id}"), "requested": "upsert"})),
    )
        .into_response())
}

/// `DELETE /api/v1/cameras/{id}`: its worker stops, the map drops it.
pub async fn remove(
    State(st): State<ApiState>,
    caller: Caller,
    slip: audit::Slip,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let local = admin_camera(&caller, &id)?;
    let entity = EntityId::new(model::EntityKind::Camera, &local);
    if st.replica.get(&entity).is_none() {
        return Err(not_found("camera", &id));
    }
    publish_removal(&st, &caller, &slip, entity, &id).await
}
