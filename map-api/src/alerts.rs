//! Alerts: `GET /api/v1/alerts` lists them from the alerts layer (active by default, with
//! filters); `POST /api/v1/alerts/{id}/acknowledge` and `/clear` put the action on
//! `ioc.alerts`, where the stream core applies it (so the answer is 202, and the change
//! reaches every screen as a delta and an `alert` message).
//!
//! Who may act: operators and admins on every alert; an agency on alerts about its own
//! stations (acknowledge only). Acting on an alert that has moved on is a 409.

use api_error::ApiError;
use std::collections::BTreeSet;

use auth::{Caller, Rejection, Role};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use model::alert::{Alert, AlertAction, AlertState};
use model::state::parse_bbox;
use model::{EntityId, Envelope, EventKind, FieldError, Layer, LocalId};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::ApiState;

const DEFAULT_LIMIT: usize = 200;
const MAX_LIMIT: usize = 5000;
const MAX_NOTE: usize = 1000;

#[derive(Debug, Deserialize)]
pub struct ListParams {
    state: Option<String>,
    rule: Option<String>,
    unit: Option<String>,
    bbox: Option<String>,
    entity: Option<String>,
    /// A custom zone id: alerts raised inside it.
    zone: Option<String>,
    limit: Option<String>,
}

fn states(s: Option<&str>) -> Result<BTreeSet<AlertState>, FieldError> {
    use AlertState::*;
    Ok(match s.unwrap_or("active") {
        "active" => [Raised, Acknowledged].into(),
        "all" => [Raised, Acknowledged, Cleared].into(),
        "raised" => [Raised].into(),
        "acknowledged" => [Acknowledged].into(),
        "cleared" => [Cleared].into(),
        other => {
            return Err(FieldError::new(
                "state",
                format!("{other:?} is not one of active, all, raised, acknowledged, cleared"),
            ))
        }
    })
}

pub async fn list(
    State(st): State<ApiState>,
    caller: Caller,
    Query(p): Query<ListParams>,
) -> Result<Response, ApiError> {
    caller.require_view(Layer::Alerts)?;
    let wanted = states(p.state.as_deref())?;
    let bbox = p.bbox.as_deref().map(parse_bbox).transpose()?;
    let limit = crate::parse_limit(p.limit.as_deref(), DEFAULT_LIMIT, MAX_LIMIT)?;
    let q = replica::Query {
        layers: [Layer::Alerts].into_iter().collect(),
        bbox,
        unit: p.unit.clone(),
        cameras: caller.0.camera_scope(),
        sensitive: caller.0.sensitive_scope(),
        ..Default::default()
    };
    let (seq, records) = st.replica.snapshot(&q, usize::MAX);
    let mut alerts: Vec<(Alert, Value)> = records
        .iter()
        .filter_map(|r| Alert::from_record(r).map(|a| (a, r.geometry.value.clone())))
        .filter(|(a, _)| wanted.contains(&a.state))
        .filter(|(a, _)| p.rule.as_deref().is_none_or(|r| a.rule == r))
        .filter(|(a, _)| p.entity.as_deref().is_none_or(|e| a.entity.as_str() == e))
        .filter(|(a, _)| {
            p.zone
                .as_deref()
                .is_none_or(|z| a.zones.iter().any(|x| x.as_str() == z))
        })
        .map(|(a, g)| (a, serde_json::to_value(g).unwrap_or(Value::Null)))
        .collect();
    alerts.sort_by(|a, b| b.0.raised_at.cmp(&a.0.raised_at));
    let total = alerts.len();
    let items: Vec<Value> = alerts
        .into_iter()
        .take(limit)
        .map(|(a, geometry)| {
            let mut v = serde_json::to_value(&a).unwrap_or_default();
            v["state_vi"] = a.state.name_vi().into();
            v["geometry"] = geometry;
            v
        })
        .collect();
    Ok(
        Json(
            json!({"seq": seq, "total": total, "truncated": total > items.len(), "alerts": items}),
        )
        .into_response(),
    )
}

#[derive(Debug, Default, Deserialize)]
pub struct ActionBody {
    note: Option<String>,
}

#[derive(Clone, Copy)]
enum Act {
    Acknowledge,
    Clear,
}

async fn act(
    st: ApiState,
    caller: Caller,
    slip: audit::Slip,
    id: String,
    body: Option<Json<ActionBody>>,
    act: Act,
) -> Result<Response, ApiError> {
    // Who may not see alerts learns nothing of which exist.
    caller.require_view(Layer::Alerts)?;
    let note = body
        .and_then(|Json(b)| b.note)
        .map(|n| model::text::nfc(n.trim()))
        .filter(|n| !n.is_empty());
    if let Some(reason) = note
        .as_deref()
        .and_then(|n| model::text::refuse_text(n, MAX_NOTE))
    {
        return Err(FieldError::new("note", reason).into());
    }
    let alert = LocalId::parse("id", &id)
        .ok()
        .and_then(|l| st.replica.get(&EntityId::new(model::EntityKind::Alert, &l)))
        .filter(|r| replica::visible_with(&caller.0.camera_scope(), &caller.0.sensitive_scope(), r))
        .and_then(|r| Alert::from_record(&r));
    let alert = alert.ok_or_else(|| ApiError::not_found("id", format!("no alert {id}")))?;
    let claims = &caller.0;
    let own_agency = claims.role == Role::Agency
        && claims.agency.is_some()
        && alert.agency.as_ref().map(LocalId::as_str) == claims.agency.as_deref();
    let allowed = match act {
        Act::Acknowledge => matches!(claims.role, Role::Operator | Role::Admin) || own_agency,
        Act::Clear => matches!(claims.role, Role::Operator | Role::Admin),
    };
    if !allowed {
        return Err(Rejection::forbidden(match act {
            Act::Acknowledge => {
                "alerts are acknowledged by operators, admins, or the agency owning the station"
            }
            Act::Clear => "alerts are cleared by operators and admins",
        })
        .into());
    }
    let (kind, verb) = match act {
        Act::Acknowledge if alert.state != AlertState::Raised => {
            return Err(ApiError::conflict(format!(
                "alert {id} is {} already",
                serde_json::to_value(alert.state)
                    .unwrap_or_default()
                    .as_str()
                    .unwrap_or("")
            )))
        }
        Act::Clear if !alert.state.is_active() => {
            return Err(ApiError::conflict(format!("alert {id} is cleared already")))
        }
        Act::Acknowledge => (EventKind::AlertAcked, "acknowledge"),
        Act::Clear => (EventKind::AlertCleared, "clear"),
    };
    let now = Utc::now().fixed_offset();
    let action = AlertAction {
        alert: alert.id.clone(),
        by: claims.sub.clone(),
        note,
        at: now,
    };
    let env = Envelope::new(
        kind,
        alert.entity_id(),
        now,
        Utc::now(),
        format!("api:{}", claims.sub),
        serde_json::to_value(&action).unwrap_or_default(),
    );
    slip.allowed().await?;
    // Keyed by the entity the alert is about: the core instance that owns that entity reads
    // this partition, and applies the action once.
    st.bus
        .publish(
            &st.alerts_topic,
            alert.entity.as_str(),
            Some(env.to_bytes()),
        )
        .await
        .map_err(|e| ApiError::unavailable(e.to_string(), 5))?;
    Ok((
        StatusCode::ACCEPTED,
        Json(
            json!({"alert": alert.id, "requested": verb, "by": claims.sub, "at": now.to_rfc3339()}),
        ),
    )
        .into_response())
}

pub async fn acknowledge(
    State(st): State<ApiState>,
    caller: Caller,
    slip: audit::Slip,
    Path(id): Path<String>,
    body: Option<Json<ActionBody>>,
) -> Result<Response, ApiError> {
    act(st, caller, slip, id, body, Act::Acknowledge).await
}

pub async fn clear(
    State(st): State<ApiState>,
    caller: Caller,
    slip: audit::Slip,
    Path(id): Path<String>,
    body: Option<Json<ActionBody>>,
) -> Result<Response, ApiError> {
    act(st, caller, slip, id, body, Act::Clear).await
}
