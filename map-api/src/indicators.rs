//! The leaders' indicators over REST: the catalogue (`GET /api/v1/indicators`), one
//! indicator for a unit and its child units (`GET /api/v1/indicators/{code}?unit=`), the
//! tablet's first screen in one answer (`GET /api/v1/dashboard?unit=`: sector tiles and the
//! attention list), and the writes a leader or an agency makes from there: asking a unit to
//! explain a figure and answering (`POST …/explanations`), setting targets (`POST …/targets`,
//! admins). Figures come from the `indicators` layer of the replica (the core's roll-up and
//! judgement); the catalogue from the registry this process follows. Writes go to
//! `ioc.indicators`.
//!
//! Who reads what: leaders, operators and admins every indicator; an agency its own; nobody
//! else any.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use api_error::ApiError;
use auth::{Caller, Claims, Role};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use model::indicator::{
    Explanation, ExplanationStep, Indicator, IndicatorEvent, Period, Sector, Target,
};
use model::{EntityId, EntityKind, Layer, LocalId, StateRecord};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::ApiState;

/// Which indicators a caller may read.
enum Readers {
    All,
    Agency(String),
}

impl Readers {
    fn of(c: &Claims) -> Result<Self, ApiError> {
        match (c.role, c.agency.as_deref()) {
            (Role::Leader | Role::Operator | Role::Admin, _) => Ok(Readers::All),
            (Role::Agency, Some(a)) => Ok(Readers::Agency(a.to_string())),
            (role, _) => Err(ApiError::forbidden(format!(
                "role {role} may not read indicators"
            ))),
        }
    }

    fn may_read(&self, agency: &str) -> bool {
        match self {
            Readers::All => true,
            Readers::Agency(a) => a == agency,
        }
    }
}

/// The name of an agency, as the registry has it.
fn agency_name(st: &ApiState, agency: &LocalId) -> Option<String> {
    st.intake.as_ref()?.places().agency_name(agency)
}

/// The catalogue as this process knows it.
fn catalogue(st: &ApiState) -> Result<Vec<Indicator>, ApiError> {
    let registry = st
        .intake
        .as_ref()
        .map(|i| i.places().clone())
        .ok_or_else(|| {
            ApiError::unavailable("this process follows no registry: it runs no api role", 5)
        })?;
    if !registry.is_ready() {
        return Err(ApiError::unavailable("the registry is still loading", 2));
    }
    let mut out: Vec<Indicator> = registry.with(|d| d.indicators.values().cloned().collect());
    out.sort_by(|a, b| (a.sector, &a.code).cmp(&(b.sector, &b.code)));
    Ok(out)
}

fn entry(st: &ApiState, i: &Indicator) -> Value {
    let mut v = serde_json::to_value(i).unwrap_or_default();
    v["sector_name"] = i.sector.name_vi().into();
    v["agency_name"] = agency_name(st, &i.agency).into();
    v
}

#[derive(Debug, Deserialize)]
pub struct CatalogueParams {
    sector: Option<String>,
}

/// `GET /api/v1/indicators?sector=`: the catalogue the caller may read.
pub async fn list(
    State(st): State<ApiState>,
    caller: Caller,
    Query(p): Query<CatalogueParams>,
) -> Result<Response, ApiError> {
    let readers = Readers::of(&caller.0)?;
    let sector = p
        .sector
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| Sector::parse("sector", s))
        .transpose()?;
    let items: Vec<Value> = catalogue(&st)?
        .iter()
        .filter(|i| readers.may_read(i.agency.as_str()) && sector.is_none_or(|s| i.sector == s))
        .map(|i| entry(&st, i))
        .collect();
    Ok(Json(json!({"indicators": items})).into_response())
}

#[derive(Debug, Deserialize)]
pub struct UnitParams {
    unit: Option<String>,
}

/// The series records of the indicators layer under `unit` (any depth), as the replica has
/// them.
fn series_under(st: &ApiState, unit: &str) -> Vec<Arc<StateRecord>> {
    let q = replica::Query {
        layers: BTreeSet::from([Layer::Indicators]),
        unit: Some(unit.to_string()),
        sensitive: model::report::SensitiveScope::All,
        ..Default::default()
    };
    st.replica.snapshot(&q, usize::MAX).1
}

/// The unit asked for, or the root of the tree (the province) when none is.
fn unit_param(st: &ApiState, unit: Option<&str>) -> Result<String, ApiError> {
    let registry = st
        .intake
        .as_ref()
        .map(|i| i.places().clone())
        .ok_or_else(|| ApiError::unavailable("no registry in this process", 5))?;
    match unit.filter(|u| !u.is_empty()) {
        Some(u) => {
            let id = LocalId::parse("unit", u)?;
            if registry.with(|d| d.units.contains_key(&id)) {
                Ok(id.to_string())
            } else {
                Err(ApiError::not_found("unit", format!("no unit {id}")))
            }
        }
        None => registry
            .with(|d| {
                // The root with the most indicators' figures of its own: the province the
                // IOC serves. One lookup per root and indicator, not a scan of the layer.
                let mut roots: Vec<&model::AdminUnit> =
                    d.units.values().filter(|u| u.parent.is_none()).collect();
                roots.sort_by_key(|u| u.id.clone());
                let figures_of = |root: &LocalId| {
                    d.indicators
                        .keys()
                        .filter(|code| st.replica.get(&EntityId::series(code, root)).is_some())
                        .count()
                };
                roots
                    .into_iter()
                    .max_by_key(|u| figures_of(&u.id))
                    .map(|u| u.id.to_string())
            })
            .ok_or_else(|| ApiError::not_found("unit", "the registry has no units")),
    }
}

/// Is `r` the series of `unit` itself (not of a unit under it)?
fn is_of(r: &StateRecord, unit: &str) -> bool {
    r.units.first().is_some_and(|u| u.as_str() == unit)
}

/// Is `r` the series of a unit directly under `unit`?
fn is_child_of(r: &StateRecord, unit: &str) -> bool {
    r.units.get(1).is_some_and(|u| u.as_str() == unit)
}

fn status_rank(r: &StateRecord) -> u8 {
    match r.properties.get("status").and_then(Value::as_str) {
        Some("missed") => 0,
        Some("watch") => 1,
        Some("met") => 2,
        _ => 3,
    }
}

/// `GET /api/v1/indicators/{code}?unit=`: the indicator's figures for the unit and for each
/// unit directly under it, worst status first.
pub async fn one(
    State(st): State<ApiState>,
    caller: Caller,
    Path(code): Path<String>,
    Query(p): Query<UnitParams>,
) -> Result<Response, ApiError> {
    let ind = readable(&st, &caller.0, &code)?;
    let code = ind.code.clone();
    let unit = unit_param(&st, p.unit.as_deref())?;
    let series: Vec<Arc<StateRecord>> = series_under(&st, &unit)
        .into_iter()
        .filter(|r| r.entity.series_parts().is_some_and(|(c, _)| c == code))
        .collect();
    let own = series
        .iter()
        .find(|r| is_of(r, &unit))
        .map(|r| &r.properties);
    let mut children: Vec<&Arc<StateRecord>> =
        series.iter().filter(|r| is_child_of(r, &unit)).collect();
    children.sort_by_key(|r| {
        (
            status_rank(r),
            r.properties.get("unit_name").map(|v| v.to_string()),
        )
    });
    Ok(Json(json!({
        "indicator": entry(&st, &ind),
        "unit": unit,
        "figures": own,
        "children": children.iter().map(|r| &r.properties).collect::<Vec<_>>(),
        "seq": st.replica.seq(),
    }))
    .into_response())
}

#[derive(Debug, Deserialize)]
pub struct HistoryParams {
    unit: Option<String>,
    /// Most events read (the newest); default and cap [`HISTORY_MAX`].
    limit: Option<usize>,
}

/// Most events one history answer reads.
const HISTORY_MAX: usize = 20_000;

/// `GET /api/v1/indicators/{code}/history?unit=`: everything the store keeps of one
/// indicator at one unit, per period, newest period first: every revision of the value (who,
/// when, from what, to what, from where), the targets set, the explanations asked for and
/// given. Beyond the dozen periods the live record carries, for charts and reviews.
pub async fn history(
    State(st): State<ApiState>,
    caller: Caller,
    Path(code): Path<String>,
    Query(p): Query<HistoryParams>,
) -> Result<Response, ApiError> {
    let ind = readable(&st, &caller.0, &code)?;
    let code = ind.code.clone();
    let unit = unit_param(&st, p.unit.as_deref())?;
    let limit = match p.limit {
        Some(0) => return Err(ApiError::bad_request("limit", "must be at least 1")),
        Some(n) => n.min(HISTORY_MAX),
        None => HISTORY_MAX,
    };
    let store = st.history.as_ref().ok_or_else(crate::history::no_history)?;
    let rows = store
        .indicator_events(code.as_str(), Some(&unit), limit)
        .await
        .map_err(crate::history::store_error)?;
    Ok(Json(json!({
        "indicator": entry(&st, &ind),
        "unit": unit,
        "events": rows.len(),
        "truncated": rows.len() >= limit,
        "periods": periods_of(&rows),
    }))
    .into_response())
}

/// Stored events folded per period, newest period first. A value equal to the one in force
/// is a replay, not a revision (as the book counts them).
fn periods_of(rows: &[store::IndicatorEventRow]) -> Vec<Value> {
    #[derive(Default)]
    struct Acc {
        revisions: Vec<Value>,
        current: Option<f64>,
        targets: Vec<Value>,
        explanations: Vec<Value>,
    }
    let mut per: BTreeMap<Period, Acc> = BTreeMap::new();
    for r in rows {
        let Ok(event) = serde_json::from_value::<IndicatorEvent>(r.data.clone()) else {
            continue;
        };
        match event {
            IndicatorEvent::Value(v) => {
                let acc = per.entry(v.period).or_default();
                if acc.current == Some(v.value) {
                    continue;
                }
                acc.revisions.push(json!({
                    "value": v.value, "previous": acc.current, "by": v.by, "at": v.at,
                    "note": v.note, "source": r.source,
                }));
                acc.current = Some(v.value);
            }
            IndicatorEvent::Target(t) => {
                let mut j = serde_json::to_value(&t).unwrap_or_default();
                if let Some(o) = j.as_object_mut() {
                    o.insert("at".into(), json!(r.ts));
                    o.insert("source".into(), json!(r.source));
                }
                per.entry(t.period).or_default().targets.push(j);
            }
            IndicatorEvent::Explanation(e) => {
                per.entry(e.period).or_default().explanations.push(json!({
                    "step": e.step, "note": e.note, "by": e.by, "role": e.role, "at": e.at,
                }));
            }
        }
    }
    per.into_iter()
        .rev()
        .map(|(period, a)| {
            json!({
                "period": period.to_string(),
                "value": a.current,
                "revisions": a.revisions,
                "targets": a.targets,
                "explanations": a.explanations,
            })
        })
        .collect()
}

/// `GET /api/v1/dashboard?unit=`: what the leaders' tablet draws first, in one answer:
/// per sector its indicators at the unit (latest figure, status, the last periods, how
/// complete), and the attention list: targets missed, reports missing past their deadline,
/// field reports overdue, warnings active in the unit.
pub async fn dashboard(
    State(st): State<ApiState>,
    caller: Caller,
    Query(p): Query<UnitParams>,
) -> Result<Response, ApiError> {
    let readers = Readers::of(&caller.0)?;
    let unit = unit_param(&st, p.unit.as_deref())?;
    let readable = |r: &StateRecord| {
        readers.may_read(
            r.properties
                .get("agency")
                .and_then(Value::as_str)
                .unwrap_or_default(),
        )
    };
    let series: Vec<Arc<StateRecord>> = series_under(&st, &unit)
        .into_iter()
        .filter(|r| readable(r))
        .collect();
    let mut sectors: BTreeMap<Sector, Vec<Value>> = BTreeMap::new();
    for ind in catalogue(&st)?
        .iter()
        .filter(|i| readers.may_read(i.agency.as_str()))
    {
        let figures = series.iter().find(|r| {
            is_of(r, &unit) && r.entity.series_parts().is_some_and(|(c, _)| c == ind.code)
        });
        let p = figures.map(|r| &r.properties);
        sectors.entry(ind.sector).or_default().push(json!({
            "code": ind.code,
            "name": ind.name,
            "measure": ind.measure,
            "frequency": ind.frequency,
            "direction": ind.direction,
            "cumulative": ind.cumulative,
            "status": p.and_then(|p| p.get("status")).cloned().unwrap_or(json!("no_target")),
            "latest": p.and_then(|p| p.get("latest")).cloned().unwrap_or(Value::Null),
            "series": p.and_then(|p| p.get("series")).cloned().unwrap_or(json!([])),
            "missing": p.and_then(|p| p.get("missing")).cloned().unwrap_or(json!([])),
        }));
    }
    let tiles: Vec<Value> = sectors
        .into_iter()
        .map(|(sector, items)| {
            let mut counts = BTreeMap::<String, u32>::new();
            for i in &items {
                *counts
                    .entry(i["status"].as_str().unwrap_or("no_target").to_string())
                    .or_default() += 1;
            }
            json!({"sector": sector, "name": sector.name_vi(), "counts": counts, "indicators": items})
        })
        .collect();
    let brief = |r: &StateRecord| {
        let p = &r.properties;
        json!({
            "entity": r.entity,
            "indicator": p.get("indicator"),
            "name": p.get("name"),
            "unit": p.get("unit"),
            "unit_name": p.get("unit_name"),
            "agency": p.get("agency"),
            "latest": p.get("latest"),
            "missing": p.get("missing"),
        })
    };
    let mut missed: Vec<&Arc<StateRecord>> =
        series.iter().filter(|r| status_rank(r) == 0).collect();
    missed.sort_by_key(|r| r.entity.clone());
    let mut late: Vec<&Arc<StateRecord>> = series
        .iter()
        .filter(|r| {
            let last_due = r.properties.get("last_due").and_then(Value::as_str);
            r.properties
                .get("missing")
                .and_then(Value::as_array)
                .is_some_and(|m| m.iter().any(|p| p.as_str() == last_due))
        })
        .collect();
    late.sort_by_key(|r| r.entity.clone());
    // Field reports overdue in the unit, and the warnings active there, for those who may
    // see them.
    let overdue_reports = st
        .replica
        .get(&EntityId::new(
            EntityKind::Unit,
            &LocalId::parse("unit", &unit)?,
        ))
        .and_then(|u| u.properties.get("reports")?.get("overdue")?.as_u64())
        .unwrap_or(0);
    let warnings: Vec<Value> = if caller.0.role.can_view(Layer::Alerts) {
        let q = replica::Query {
            layers: BTreeSet::from([Layer::Alerts]),
            unit: Some(unit.clone()),
            cameras: caller.0.camera_scope(),
            sensitive: caller.0.sensitive_scope(),
            ..Default::default()
        };
        st.replica
            .snapshot(&q, 200)
            .1
            .iter()
            .filter_map(|r| model::alert::Alert::from_record(r))
            // The indicators' own alerts are the missed and missing lists above.
            .filter(|a| !a.rule.starts_with("indicator_"))
            .filter(|a| a.state.is_active() && a.severity >= model::alert::Severity::Warning)
            .map(|a| json!({"id": a.id, "rule": a.rule, "title": a.title, "severity": a.severity, "entity": a.entity}))
            .collect()
    } else {
        Vec::new()
    };
    let unit_name = st.intake.as_ref().and_then(|i| {
        let id = LocalId::parse("unit", &unit).ok()?;
        i.places()
            .with(|d| d.units.get(&id).map(|u| u.name.clone()))
    });
    Ok(Json(json!({
        "unit": unit,
        "unit_name": unit_name,
        "generated_at": Utc::now().with_timezone(&model::indicator::period::vietnam()).to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
        "seq": st.replica.seq(),
        "sectors": tiles,
        "attention": {
            "missed": missed.iter().map(|r| brief(r)).collect::<Vec<_>>(),
            "missing": late.iter().map(|r| brief(r)).collect::<Vec<_>>(),
            "reports_overdue": overdue_reports,
            "warnings": warnings,
        },
    }))
    .into_response())
}

#[derive(Debug, Deserialize)]
pub struct ExplanationBody {
    unit: Option<String>,
    period: Option<String>,
    note: Option<String>,
}

/// A write's JSON body, or 400 naming the body and why.
fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request("body", format!("not the expected JSON: {e}")))
}

/// The indicator a write names, if the catalogue has it.
/// The indicator `code` if the caller may read it; one not found answer for both "no such
/// indicator" and "not yours", so an agency cannot learn another's catalogue by probing.
fn readable(st: &ApiState, caller: &Claims, code: &str) -> Result<Indicator, ApiError> {
    let readers = Readers::of(caller)?;
    Some(indicator_of(st, code)?)
        .filter(|i| readers.may_read(i.agency.as_str()))
        .ok_or_else(|| ApiError::not_found("code", format!("no indicator {code}")))
}

fn indicator_of(st: &ApiState, code: &str) -> Result<Indicator, ApiError> {
    let code = LocalId::parse("code", code)?;
    catalogue(st)?
        .into_iter()
        .find(|i| i.code == code)
        .ok_or_else(|| ApiError::not_found("code", format!("no indicator {code}")))
}

/// Writes an indicator event; 202 once the bus has it.
async fn publish(
    st: &ApiState,
    caller: &Claims,
    event: IndicatorEvent,
) -> Result<Response, ApiError> {
    let env = ingest::indicators::envelope(&event, &format!("api:{}", caller.sub), Utc::now());
    st.bus
        .publish(
            &st.indicators_topic,
            env.entity.as_str(),
            Some(env.to_bytes()),
        )
        .await
        .map_err(|e| ApiError::unavailable(e.to_string(), 5))?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"requested": event.kind(), "event": event})),
    )
        .into_response())
}

fn unit_and_period(
    st: &ApiState,
    ind: &Indicator,
    unit: Option<&str>,
    period: Option<&str>,
) -> Result<(LocalId, Period), ApiError> {
    let unit = LocalId::parse("unit", unit.unwrap_or_default())?;
    unit_param(st, Some(unit.as_str()))?;
    let period = Period::parse_for("period", period.unwrap_or_default(), ind.frequency)?;
    Ok((unit, period))
}

/// `POST /api/v1/indicators/{code}/explanations` `{unit, period, note}`: a leader (or the
/// control room) asks the responsible unit to explain a figure; the owning agency answers.
pub async fn explain(
    State(st): State<ApiState>,
    caller: Caller,
    slip: audit::Slip,
    Path(code): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let body: ExplanationBody = json_body(&body)?;
    let ind = indicator_of(&st, &code)?;
    let c = &caller.0;
    let step = match c.role {
        Role::Leader | Role::Operator | Role::Admin => ExplanationStep::Request,
        Role::Agency if c.agency.as_deref() == Some(ind.agency.as_str()) => ExplanationStep::Answer,
        role => {
            return Err(ApiError::forbidden(format!(
                "role {role} may not ask for or give explanations of {}",
                ind.code
            )))
        }
    };
    let (unit, period) = unit_and_period(&st, &ind, body.unit.as_deref(), body.period.as_deref())?;
    let note = body.note.as_deref().map(str::trim).unwrap_or_default();
    if note.is_empty() {
        return Err(ApiError::bad_request("note", "is required"));
    }
    if let Some(reason) = model::text::refuse_text(note, model::indicator::value::MAX_NOTE) {
        return Err(ApiError::bad_request("note", reason));
    }
    let event = IndicatorEvent::Explanation(Explanation {
        indicator: ind.code.clone(),
        unit,
        period,
        step,
        note: model::text::nfc(note),
        by: c.sub.clone(),
        role: c.role.to_string(),
        at: Utc::now().fixed_offset(),
    });
    if let IndicatorEvent::Explanation(e) = &event {
        slip.target(format!("indicator:{}/{}/{}", e.indicator, e.unit, e.period));
    }
    slip.allowed().await?;
    publish(&st, c, event).await
}

#[derive(Debug, Deserialize)]
pub struct TargetBody {
    unit: Option<String>,
    period: Option<String>,
    value: Option<f64>,
    low: Option<f64>,
    high: Option<f64>,
    watch_margin: Option<f64>,
}

/// `POST /api/v1/indicators/{code}/targets` `{unit, period, value | low+high, watch_margin}`:
/// an admin sets (or replaces) a target.
pub async fn set_target(
    State(st): State<ApiState>,
    caller: Caller,
    slip: audit::Slip,
    Path(code): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let body: TargetBody = json_body(&body)?;
    if caller.0.role != Role::Admin {
        return Err(ApiError::forbidden("targets are set by admins"));
    }
    let ind = indicator_of(&st, &code)?;
    let unit = LocalId::parse("unit", body.unit.as_deref().unwrap_or_default())?;
    unit_param(&st, Some(unit.as_str()))?;
    let period = Period::parse("period", body.period.as_deref().unwrap_or_default())?;
    let target = Target {
        indicator: ind.code.clone(),
        unit,
        period,
        value: body.value,
        low: body.low,
        high: body.high,
        watch_margin: body.watch_margin.unwrap_or(0.0),
    };
    target.check(&ind).map_err(|e| {
        let first = e
            .errors
            .first()
            .cloned()
            .unwrap_or_else(|| model::FieldError::new("", "invalid"));
        ApiError::from(first).with("errors", json!(e.errors))
    })?;
    slip.target(format!(
        "indicator:{}/{}/{}",
        target.indicator, target.unit, target.period
    ));
    slip.allowed().await?;
    publish(&st, &caller.0, IndicatorEvent::Target(target)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(n: u128, data: Value) -> store::IndicatorEventRow {
        store::IndicatorEventRow {
            event_id: uuid::Uuid::from_u128(n),
            ts: "2026-11-20T03:00:00Z".parse().unwrap(),
            kind: "indicator.value".into(),
            indicator: "dl-luotkhach".into(),
            unit: "hg".into(),
            period: data["period"].as_str().unwrap_or_default().into(),
            value: data["value"].as_f64(),
            source: "http:/ingest/v1/indicators".into(),
            data,
        }
    }

    #[test]
    fn history_is_per_period_newest_first_and_a_replay_is_no_revision() {
        let value = |n, period: &str, v: f64| {
            row(
                n,
                json!({"type": "value", "indicator": "dl-luotkhach", "unit": "hg", "period": period,
                       "value": v, "by": "agency:hg-svhttdl", "at": "2026-11-20T10:00:00+07:00"}),
            )
        };
        let rows = [
            value(1, "202610", 100.0),
            value(2, "202611", 200.0),
            value(3, "202611", 200.0),
            value(4, "202611", 210.0),
            row(
                5,
                json!({"type": "explanation", "indicator": "dl-luotkhach", "unit": "hg", "period": "202611",
                       "step": "request", "note": "Vì sao?", "by": "leader:1", "role": "leader",
                       "at": "2026-11-21T10:00:00+07:00"}),
            ),
            row(6, json!({"type": "nonsense"})),
        ];
        let p = periods_of(&rows);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0]["period"], "202611");
        assert_eq!(p[0]["value"], 210.0);
        let revs = p[0]["revisions"].as_array().unwrap();
        assert_eq!(revs.len(), 2);
        assert_eq!(revs[1]["previous"], 200.0);
        assert_eq!(p[0]["explanations"][0]["note"], "Vì sao?");
        assert_eq!(p[1]["revisions"][0]["previous"], Value::Null);
    }
}
