//! The IOC's own report API under `/api/v1/reports`: the agencies' queues, one report's
//! full life, and transitions checked against the report's state and written with the next
//! `seq`.

use super::*;
use api_error::ApiError;

/// A report as the IOC's own API shows it to `viewer`: the whole life (as the viewer may
/// know its actors), flags and links.
pub(super) fn full(viewer: &Claims, l: &Live) -> Value {
    let mut v = Value::Object(l.record.properties.clone());
    v["history"] = history_for(viewer, l);
    v["open311"] = open311_request(&l.report);
    v
}

#[derive(Debug, Deserialize)]
pub struct QueueParams {
    /// `mine` (the caller's agency), or an agency id (operators, admins, leaders).
    agency: Option<String>,
    /// `open` (default), `overdue`, `all`.
    state: Option<String>,
    unit: Option<String>,
    limit: Option<String>,
}

/// `GET /api/v1/reports`: a queue. An agency sees its own by default.
pub async fn queue(
    State(st): State<ApiState>,
    caller: Caller,
    Query(p): Query<QueueParams>,
) -> Result<Response, ApiError> {
    let claims = &caller.0;
    if matches!(claims.role, Role::Sensor) {
        return Err(ApiError::forbidden("sensors may not use field reports"));
    }
    let limit = crate::parse_limit(p.limit.as_deref(), 500, 5000)?;
    let agency = match p.agency.as_deref().filter(|a| !a.is_empty()) {
        Some("mine") | None if claims.role == Role::Agency => claims.agency.clone(),
        Some("mine") => claims.agency.clone(),
        Some(a) => Some(a.to_string()),
        None => None,
    };
    let which = p
        .state
        .as_deref()
        .filter(|s| !s.is_empty())
        .unwrap_or("open");
    if !["open", "overdue", "all"].contains(&which) {
        return Err(ApiError::bad_request(
            "state",
            "must be open, overdue or all",
        ));
    }
    // Most urgent first, from the deadline index: the open queue (the default) walks only
    // open reports; the page is built for the first `limit`, the rest only counted.
    let order = match which {
        "all" => replica::ReportOrder::AllByDeadline,
        _ => replica::ReportOrder::OpenByDeadline,
    };
    let unit = p.unit.as_deref().filter(|u| !u.is_empty());
    let mut page: Vec<Live> = Vec::new();
    let mut total = 0;
    let (seq, _) = st.replica.visit_reports(order, |l| {
        let wanted = can_see(claims, l)
            && unit.is_none_or(|u| l.record.in_unit(u))
            && agency
                .as_deref()
                .is_none_or(|a| l.report.agency.as_ref().map(|x| x.as_str()) == Some(a))
            && (which != "overdue" || l.overdue());
        if wanted {
            total += 1;
            if page.len() < limit {
                page.push(l.clone());
            }
        }
        std::ops::ControlFlow::Continue(())
    });
    let reports: Vec<Value> = page.iter().map(|l| full(claims, l)).collect();
    Ok(Json(json!({"seq": seq, "total": total, "reports": reports})).into_response())
}

/// `GET /api/v1/reports/{id}`: the report, and its events from the history store.
pub async fn one(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let l = live(&st, &id)
        .filter(|l| can_see(&caller.0, l))
        .ok_or_else(|| report_not_found(&id))?;
    let mut v = full(&caller.0, &l);
    if let Some(h) = &st.history {
        if let Ok(events) = h.report_events(&id).await {
            v["stored_events"] = events.len().into();
        }
    }
    Ok(Json(v).into_response())
}

pub(super) fn report_not_found(id: &str) -> ApiError {
    ApiError::not_found("id", format!("no report {id}"))
}

/// The step a transition's body asks for. Which field is at fault is read off the body
/// itself, not off the decoder's message.
fn step_of(body: &Value) -> Result<Step, ApiError> {
    const ACTIONS: &str =
        "actions: assign (agency), start, resolve (result), reject (reason), close, reopen (reason)";
    let needs = match body.get("action").and_then(Value::as_str) {
        Some("assign") => Some("agency"),
        Some("resolve") => Some("result"),
        Some("reject" | "reopen") => Some("reason"),
        Some("start" | "close") => None,
        Some(other) => {
            return Err(ApiError::bad_request(
                "action",
                format!("{other:?} is not an action; {ACTIONS}"),
            ))
        }
        None => {
            return Err(ApiError::bad_request(
                "action",
                format!("is required; {ACTIONS}"),
            ))
        }
    };
    if let Some(field) = needs {
        if !body.get(field).is_some_and(Value::is_string) {
            return Err(ApiError::bad_request(field, "is required: text"));
        }
    }
    serde_json::from_value(body.clone())
        .map_err(|e| ApiError::bad_request("body", format!("{e}; {ACTIONS}")))
}

/// Who the caller is to this report, for the state machine.
pub(super) fn actor(c: &Claims, l: &Live) -> Option<Actor> {
    let own_agency =
        c.agency.is_some() && c.agency.as_deref() == l.report.agency.as_ref().map(|a| a.as_str());
    match c.role {
        Role::Operator | Role::Admin => Some(Actor::Operator),
        Role::Agency | Role::Police if own_agency => Some(Actor::AssignedAgency),
        Role::Agency | Role::Police => Some(Actor::OtherAgency),
        Role::Citizen | Role::School if is_reporter(c, l) => Some(Actor::Reporter),
        Role::Citizen | Role::School | Role::Leader | Role::Sensor => None,
    }
}

/// `POST /api/v1/reports/{id}/transitions` with `{"action": "start" | "assign" | "resolve" |
/// "reject" | "close" | "reopen", "agency"|"result"|"reason": ..., "note": ...}`.
pub async fn transition(
    State(st): State<ApiState>,
    caller: Caller,
    slip: audit::Slip,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let claims = caller.0;
    let body: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("body", format!("not JSON: {e}")))?;
    let note = match body.get("note") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => match model::text::refuse_text(s, MAX_STEP_TEXT) {
            Some(reason) => return Err(ApiError::bad_request("note", reason)),
            None => Some(model::text::nfc(s.trim())).filter(|s| !s.is_empty()),
        },
        Some(_) => return Err(ApiError::bad_request("note", "must be text")),
    };
    let mut step = step_of(&body)?;
    // Texts as NFC, the way every other Vietnamese text is kept.
    let text_field = match step {
        Step::Resolve { .. } => "result",
        _ => "reason",
    };
    match &mut step {
        Step::Resolve { result: t } | Step::Reject { reason: t } | Step::Reopen { reason: t } => {
            if let Some(reason) = model::text::refuse_text(t, MAX_STEP_TEXT) {
                return Err(ApiError::bad_request(text_field, reason));
            }
            *t = model::text::nfc(t.trim())
        }
        Step::Assign { agency } => *agency = agency.trim().to_string(),
        Step::Start | Step::Close => {}
    }
    let lock = st.report_locks.lock_for(&id);
    let _guard = lock.lock().await;
    let l = live(&st, &id)
        .filter(|l| can_see(&claims, l))
        .ok_or_else(|| report_not_found(&id))?;
    let actor = actor(&claims, &l).ok_or_else(|| {
        ApiError::forbidden(format!("role {} may not change this report", claims.role))
    })?;
    let mut agency_name = None;
    if let Step::Assign { agency } = &step {
        let known = LocalId::parse("agency", agency)
            .ok()
            .and_then(|a| st.intake.as_ref()?.places().agency_name(&a));
        let name = known.ok_or_else(|| {
            ApiError::bad_request(
                "agency",
                format!("{agency:?} is not an agency in the registry"),
            )
        })?;
        agency_name = Some(name);
    }
    let now = Utc::now().fixed_offset();
    let mut t = l
        .report
        .transition(step, actor, &claims.sub, claims.role.as_str(), note, now)
        .map_err(|e| match e {
            StepError::Illegal(r) => ApiError::conflict(r)
                .field("action")
                .with("state", json!(l.report.state)),
            StepError::Forbidden(r) => ApiError::forbidden(r),
            StepError::Invalid { field, reason } => ApiError::bad_request(field, reason),
        })?;
    t.agency_name = agency_name;
    let env = Envelope::new(
        EventKind::ReportTransition,
        EntityId::new(model::EntityKind::Report, &t.report),
        t.at,
        Utc::now(),
        format!("api:{}", claims.role),
        serde_json::to_value(&t).expect("transitions serialise"),
    );
    slip.allowed().await?;
    st.bus
        .publish(&st.reports_topic, env.entity.as_str(), Some(env.to_bytes()))
        .await
        .map_err(|e| {
            warn!(error = %e, "transition not written");
            ApiError::unavailable(e.to_string(), 5)
        })?;
    let seq = t.seq;
    let entity = EntityId::new(model::EntityKind::Report, &t.report);
    let applied = wait_for(&st, &entity, |r| {
        r.and_then(|r| r.properties.get("seq")?.as_u64())
            .is_some_and(|s| s >= u64::from(seq))
    })
    .await;
    let now_live = live(&st, &id).ok_or_else(|| report_not_found(&id))?;
    if !applied {
        return Ok((
            StatusCode::ACCEPTED,
            Json(json!({"status": "accepted", "seq": seq, "reason": "written; not shown applied within 10 s"})),
        )
            .into_response());
    }
    let ours = now_live
        .report
        .history
        .iter()
        .any(|h| h.seq == seq && h.event_id == t.event_id);
    if !ours {
        return Err(
            ApiError::conflict("the report changed meanwhile; look again and retry")
                .field("action")
                .with("state", json!(now_live.report.state)),
        );
    }
    Ok(Json(full(&claims, &now_live)).into_response())
}
