//! The IOC's own report API under `/api/v1/reports`: the agencies' queues, one report's
//! full life, and transitions checked against the report's state and written with the next
//! `seq`.

use super::*;

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
) -> Response {
    let claims = &caller.0;
    if matches!(claims.role, Role::Sensor) {
        return auth::Rejection::forbidden("sensors may not use field reports").into_response();
    }
    let limit = match crate::parse_limit(p.limit.as_deref(), 500, 5000) {
        Ok(n) => n,
        Err(e) => return bad_request(e),
    };
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
        return bad_request(model::FieldError::new(
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
    Json(json!({"seq": seq, "total": total, "reports": reports})).into_response()
}

/// `GET /api/v1/reports/{id}`: the report, and its events from the history store.
pub async fn one(State(st): State<ApiState>, caller: Caller, Path(id): Path<String>) -> Response {
    let Some(l) = live(&st, &id).filter(|l| can_see(&caller.0, l)) else {
        return report_not_found(&id);
    };
    let mut v = full(&caller.0, &l);
    if let Some(h) = &st.history {
        if let Ok(events) = h.report_events(&id).await {
            v["stored_events"] = events.len().into();
        }
    }
    Json(v).into_response()
}

pub(super) fn report_not_found(id: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"error": "not_found", "field": "id", "reason": format!("no report {id}")})),
    )
        .into_response()
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
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let claims = caller.0;
    let body: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return bad_request(model::FieldError::new("body", format!("not JSON: {e}"))),
    };
    let note = match body.get("note") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => match model::text::refuse_text(s, MAX_STEP_TEXT) {
            Some(reason) => return bad_request(model::FieldError::new("note", reason)),
            None => Some(model::text::nfc(s.trim())).filter(|s| !s.is_empty()),
        },
        Some(_) => return bad_request(model::FieldError::new("note", "must be text")),
    };
    let mut step: Step = match serde_json::from_value(body.clone()) {
        Ok(s) => s,
        Err(e) => {
            let msg = e.to_string();
            let missing = msg
                .split_once("missing field `")
                .and_then(|(_, rest)| rest.split_once('`'))
                .map(|(f, _)| f.to_string());
            let field = match missing {
                _ if body.get("action").is_none() || msg.contains("unknown variant") => {
                    "action".to_string()
                }
                Some(f) => f,
                None => "body".to_string(),
            };
            return bad_request(model::FieldError::new(
                field,
                format!("{e}; actions: assign (agency), start, resolve (result), reject (reason), close, reopen (reason)"),
            ));
        }
    };
    // Texts as NFC, the way every other Vietnamese text is kept.
    let text_field = match step {
        Step::Resolve { .. } => "result",
        _ => "reason",
    };
    match &mut step {
        Step::Resolve { result: t } | Step::Reject { reason: t } | Step::Reopen { reason: t } => {
            if let Some(reason) = model::text::refuse_text(t, MAX_STEP_TEXT) {
                return bad_request(model::FieldError::new(text_field, reason));
            }
            *t = model::text::nfc(t.trim())
        }
        Step::Assign { agency } => *agency = agency.trim().to_string(),
        Step::Start | Step::Close => {}
    }
    let lock = st.report_locks.lock_for(&id);
    let _guard = lock.lock().await;
    let Some(l) = live(&st, &id).filter(|l| can_see(&claims, l)) else {
        return report_not_found(&id);
    };
    let Some(actor) = actor(&claims, &l) else {
        return auth::Rejection::forbidden(format!(
            "role {} may not change this report",
            claims.role
        ))
        .into_response();
    };
    let mut agency_name = None;
    if let Step::Assign { agency } = &step {
        let known = LocalId::parse("agency", agency)
            .ok()
            .and_then(|a| st.intake.as_ref()?.places().agency_name(&a));
        match known {
            Some(n) => agency_name = Some(n),
            None => {
                return bad_request(model::FieldError::new(
                    "agency",
                    format!("{agency:?} is not an agency in the registry"),
                ))
            }
        }
    }
    let now = Utc::now().fixed_offset();
    let mut t = match l
        .report
        .transition(step, actor, &claims.sub, claims.role.as_str(), note, now)
    {
        Ok(t) => t,
        Err(StepError::Illegal(r)) => {
            return (
                StatusCode::CONFLICT,
                Json(json!({"error": "conflict", "field": "action", "reason": r, "state": l.report.state})),
            )
                .into_response()
        }
        Err(StepError::Forbidden(r)) => return auth::Rejection::forbidden(r).into_response(),
        Err(StepError::Invalid { field, reason }) => {
            return bad_request(model::FieldError::new(field, reason))
        }
    };
    t.agency_name = agency_name;
    let env = Envelope::new(
        EventKind::ReportTransition,
        EntityId::new(model::EntityKind::Report, &t.report),
        t.at,
        Utc::now(),
        format!("api:{}", claims.role),
        serde_json::to_value(&t).expect("transitions serialise"),
    );
    if let Err(e) = st
        .bus
        .publish(&st.reports_topic, env.entity.as_str(), Some(env.to_bytes()))
        .await
    {
        warn!(error = %e, "transition not written");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "5")],
            Json(json!({"error": "unavailable", "reason": e.to_string()})),
        )
            .into_response();
    }
    let seq = t.seq;
    let entity = EntityId::new(model::EntityKind::Report, &t.report);
    let applied = wait_for(&st, &entity, |r| {
        r.and_then(|r| r.properties.get("seq")?.as_u64())
            .is_some_and(|s| s >= u64::from(seq))
    })
    .await;
    let Some(now_live) = live(&st, &id) else {
        return report_not_found(&id);
    };
    if !applied {
        return (
            StatusCode::ACCEPTED,
            Json(json!({"status": "accepted", "seq": seq, "reason": "written; not shown applied within 10 s"})),
        )
            .into_response();
    }
    let ours = now_live
        .report
        .history
        .iter()
        .any(|h| h.seq == seq && h.event_id == t.event_id);
    if !ours {
        return (
            StatusCode::CONFLICT,
            Json(json!({
                "error": "conflict",
                "field": "action",
                "reason": "the report changed meanwhile; look again and retry",
                "state": now_live.report.state,
            })),
        )
            .into_response();
    }
    Json(full(&claims, &now_live)).into_response()
}
