//! History endpoints: a station's series (JSON for charts, CSV for export), what the history
//! store is (`/api/v1/history`), and replay of the map as newline-delimited JSON.
//!
//! Times are RFC 3339; output is in Vietnam time (+07:00). Every mistake is a 400 naming
//! the field; a store that cannot answer now is a 503 with Retry-After.

use api_error::ApiError;
use std::sync::Arc;

use auth::Caller;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use model::state::parse_bbox;
use model::{EntityId, FieldError, Layer, LocalId, Parameter};
use replica::past::PastView;
use serde::Deserialize;
use serde_json::{json, Value};
use store::replay::ReplayRequest;
use store::series::{parse_step, vn, MAX_BUCKETS};
use store::{History, Series, SeriesQuery, StoreError};

use crate::ApiState;

/// Most stations one replay follows.
const REPLAY_STATIONS: usize = 20_000;

pub(crate) fn no_history() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "no_history",
        "this process keeps no history: set store.database_url",
    )
}

pub(crate) fn store_error(e: StoreError) -> ApiError {
    if e.is_transient() {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "history_unavailable",
            e.to_string(),
        )
        .retry_after(5)
    } else {
        tracing::error!(error = %e, "history query failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "history_failed",
            "the history store refused the query; see the server log",
        )
    }
}

fn not_found(field: &str, reason: String) -> ApiError {
    ApiError::not_found(field, reason)
}

/// An RFC 3339 time, or `default` when absent.
fn parse_time(
    field: &str,
    v: Option<&str>,
    default: DateTime<Utc>,
) -> Result<DateTime<Utc>, FieldError> {
    match v {
        None | Some("") => Ok(default),
        Some(s) => DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| {
                FieldError::new(
                    field,
                    format!("must be an RFC 3339 time such as 2026-03-02T06:00:00+07:00 ({e})"),
                )
            }),
    }
}

pub async fn info(State(st): State<ApiState>, _caller: Caller) -> Response {
    match &st.history {
        None => {
            Json(json!({"backend": "none", "description": "no history is kept by this process"}))
                .into_response()
        }
        Some(h) => {
            let ready = h.check_ready().await;
            Json(json!({
                "backend": h.flavor(),
                "description": h.describe(),
                "ready": ready.is_ok(),
                "reason": ready.err().map(|e| e.to_string()),
            }))
            .into_response()
        }
    }
}

/// The history store, and the station `id` as the caller may see it: 503 without a store,
/// 404 for an unknown station, 403 for a layer the role may not see.
fn station_for(
    st: &ApiState,
    caller: &Caller,
    id: &str,
) -> Result<(Arc<dyn History>, LocalId, Arc<model::StateRecord>), ApiError> {
    let history = st.history.clone().ok_or_else(no_history)?;
    let local =
        LocalId::parse("id", id).map_err(|_| not_found("id", format!("no station {id:?}")))?;
    let rec = st
        .replica
        .get(&EntityId::station(&local))
        .ok_or_else(|| not_found("id", format!("no station {local}")))?;
    caller.require_view(rec.layer).map_err(ApiError::from)?;
    Ok((history, local, rec))
}

#[derive(Debug, Deserialize)]
pub struct SeriesParams {
    param: Option<String>,
    from: Option<String>,
    to: Option<String>,
    step: Option<String>,
    max_points: Option<String>,
    format: Option<String>,
    source: Option<String>,
}

enum Format {
    Json,
    Csv,
}

fn series_query(
    id: &LocalId,
    p: &SeriesParams,
) -> Result<(SeriesQuery, Option<usize>, Format), FieldError> {
    let parameter: Parameter = p
        .param
        .as_deref()
        .ok_or_else(|| {
            FieldError::new("param", "is required: the parameter, e.g. salinity or pm25")
        })?
        .parse()
        .map_err(|e: FieldError| FieldError::new("param", e.reason))?;
    let to = parse_time("to", p.to.as_deref(), Utc::now())?;
    let from = parse_time("from", p.from.as_deref(), to - chrono::Duration::hours(24))?;
    let step = p.step.as_deref().map(parse_step).transpose()?;
    let mut q = SeriesQuery::new(id.clone(), parameter, from, to, step)?;
    q.raw_only = match p.source.as_deref() {
        None | Some("auto") => false,
        Some("raw") => true,
        Some(_) => return Err(FieldError::new("source", "must be auto or raw")),
    };
    let max_points = match p.max_points.as_deref() {
        None => None,
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (3..=MAX_BUCKETS as usize).contains(&n) => Some(n),
            _ => {
                return Err(FieldError::new(
                    "max_points",
                    format!("must be an integer in 3..={MAX_BUCKETS}"),
                ))
            }
        },
    };
    let format = match p.format.as_deref() {
        None | Some("json") => Format::Json,
        Some("csv") => Format::Csv,
        Some(_) => return Err(FieldError::new("format", "must be json or csv")),
    };
    Ok((q, max_points, format))
}

pub async fn series(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(p): Query<SeriesParams>,
) -> Result<Response, ApiError> {
    let (history, id, rec) = station_for(&st, &caller, &id)?;
    let (q, max_points, format) = series_query(&id, &p)?;
    let mut s = history.series(&q).await.map_err(store_error)?;
    if let Some(n) = max_points {
        s.downsample(n);
    }
    let name = rec.name().to_string();
    match format {
        Format::Json => Ok(Json(series_json(&s, &name, &*history)).into_response()),
        Format::Csv => {
            let file = format!(
                "{}_{}_{}_{}.csv",
                id,
                q.parameter.as_str(),
                q.from.with_timezone(&vn()).format("%Y%m%dT%H%M"),
                q.to.with_timezone(&vn()).format("%Y%m%dT%H%M")
            );
            Ok((
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                    (
                        header::CONTENT_DISPOSITION,
                        format!("attachment; filename=\"{file}\""),
                    ),
                ],
                series_csv(&s),
            )
                .into_response())
        }
    }
}

fn series_json(s: &Series, name: &str, history: &dyn History) -> Value {
    let q = &s.query;
    json!({
        "station": q.station,
        "name": name,
        "parameter": q.parameter,
        "unit": s.unit,
        "from": q.from.with_timezone(&vn()).to_rfc3339(),
        "to": q.to.with_timezone(&vn()).to_rfc3339(),
        "step_s": q.step_s,
        "source": s.source,
        "backend": history.flavor(),
        "downsampled_from": s.downsampled_from,
        "points": s.buckets.iter().map(|b| json!({
            "t": b.t.with_timezone(&vn()).to_rfc3339(),
            "n": b.n, "min": b.min, "avg": b.avg, "max": b.max,
        })).collect::<Vec<_>>(),
    })
}

/// CSV with a header row; times in Vietnam time; one row per bucket.
pub fn series_csv(s: &Series) -> String {
    let q = &s.query;
    let mut out = String::from("time,station,parameter,unit,n,min,avg,max\n");
    for b in &s.buckets {
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{}\n",
            b.t.with_timezone(&vn()).to_rfc3339(),
            q.station,
            q.parameter.as_str(),
            s.unit.symbol(),
            b.n,
            b.min,
            b.avg,
            b.max
        ));
    }
    out
}

#[derive(Debug, Deserialize)]
pub struct ReplayParams {
    layers: Option<String>,
    bbox: Option<String>,
    unit: Option<String>,
    from: Option<String>,
    to: Option<String>,
    speed: Option<String>,
}

/// Everything a replay needs, checked: the view at the start and the request.
pub fn replay_setup(
    st: &ApiState,
    caller: &Caller,
    p: &ReplayParams,
) -> Result<(Arc<dyn History>, PastView, ReplayRequest), ApiError> {
    let history = st.history.clone().ok_or_else(no_history)?;
    let layers = match p.layers.as_deref() {
        None | Some("") => Layer::REPLAYABLE
            .iter()
            .copied()
            .filter(|l| caller.role().can_view(*l))
            .collect(),
        Some(s) => s
            .split(',')
            .map(|l| {
                let l: Layer = l.trim().parse()?;
                if Layer::REPLAYABLE.contains(&l) {
                    Ok(l)
                } else {
                    Err(FieldError::new(
                        "layers",
                        format!("{l} cannot be replayed yet; replayable: salinity, air_quality"),
                    ))
                }
            })
            .collect::<Result<_, _>>()?,
    };
    let layers: std::collections::BTreeSet<Layer> = layers;
    for l in &layers {
        caller.require_view(*l).map_err(ApiError::from)?;
    }
    if layers.is_empty() {
        return Err(ApiError::from(FieldError::new(
            "layers",
            "no replayable layer is visible to this role",
        )));
    }
    let bbox = p.bbox.as_deref().map(parse_bbox).transpose()?;
    let from = parse_time(
        "from",
        p.from.as_deref(),
        Utc::now() - chrono::Duration::hours(1),
    )?;
    let to = parse_time("to", p.to.as_deref(), Utc::now())?;
    let speed = match p.speed.as_deref() {
        None => 60.0,
        Some(s) => s.parse::<f64>().map_err(|_| {
            ApiError::from(FieldError::new(
                "speed",
                "must be a number: event seconds per second (0 = unpaced)",
            ))
        })?,
    };
    let q = replica::Query {
        layers,
        bbox,
        unit: p.unit.clone(),
        cameras: Default::default(),
        sensitive: Default::default(),
        ..Default::default()
    };
    let (_, base) = st.replica.snapshot(&q, REPLAY_STATIONS);
    let view = PastView::new(&base);
    let req = ReplayRequest::new(view.stations(), from, to, speed)?;
    Ok((history, view, req))
}

/// `GET /api/v1/replay`: NDJSON, one message per line (`replay_start`, `replay_delta`...,
/// `replay_end`), paced at `speed` event seconds per second (default 60; 0 = unpaced).
pub async fn replay(
    State(st): State<ApiState>,
    caller: Caller,
    Query(p): Query<ReplayParams>,
) -> Result<Response, ApiError> {
    let (history, view, req) = replay_setup(&st, &caller, &p)?;
    let lines = view.play(history, req, "http".into());
    let body = futures::stream::unfold(lines, |mut rx| async move {
        let mut line = rx.recv().await?;
        line.push('\n');
        Some((Ok::<_, std::convert::Infallible>(line), rx))
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(body),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
pub struct ForecastParams {
    param: Option<String>,
    hours: Option<String>,
    days: Option<String>,
}

fn int_param(
    field: &str,
    v: Option<&str>,
    default: i64,
    range: std::ops::RangeInclusive<i64>,
) -> Result<i64, FieldError> {
    match v {
        None => Ok(default),
        Some(s) => match s.parse::<i64>() {
            Ok(n) if range.contains(&n) => Ok(n),
            _ => Err(FieldError::new(
                field,
                format!("must be an integer in {}..={}", range.start(), range.end()),
            )),
        },
    }
}

/// `GET /api/v1/stations/{id}/forecast`: harmonic regression on the station's hourly means of
/// the last `days` (default 14), extended `hours` ahead (default 72), with its back-test.
pub async fn forecast(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(p): Query<ForecastParams>,
) -> Result<Response, ApiError> {
    use model::forecast::MIN_POINTS;
    use store::forecast::ForecastError;
    let (history, id, rec) = station_for(&st, &caller, &id)?;
    let parameter: Parameter = match p.param.as_deref().unwrap_or("salinity").parse() {
        Ok(x) => x,
        Err(e) => return Err(FieldError::new("param", e.reason).into()),
    };
    let (hours, days) = match (
        int_param("hours", p.hours.as_deref(), 72, 1..=72),
        int_param("days", p.days.as_deref(), 14, 3..=60),
    ) {
        (Ok(h), Ok(d)) => (h, d),
        (Err(e), _) | (_, Err(e)) => return Err(e.into()),
    };
    let now = Utc::now();
    let f = match store::forecast::forecast(&*history, &id, parameter, days, hours as u32, now).await {
        Ok(f) => f,
        Err(ForecastError::Store(e)) => return Err(store_error(e)),
        Err(ForecastError::Request(e)) => return Err(e.into()),
        Err(ForecastError::TooLittle(n)) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "insufficient_history",
                format!("a forecast needs at least {MIN_POINTS} hourly means in the last {days} days; there are {n}"),
            )
            .field("days"))
        }
    };
    let at = |t: DateTime<Utc>| t.with_timezone(&vn()).to_rfc3339();
    // Salinity: when the forecast first reaches the default watch and warning levels.
    let crossings = (parameter == Parameter::Salinity).then(|| {
        json!({"watch_1": f.first_reaching(1.0).map(at), "warning_4": f.first_reaching(4.0).map(at)})
    });
    Ok(Json(json!({
        "station": id,
        "name": rec.name(),
        "parameter": parameter,
        "unit": parameter.canonical_unit(),
        "issued_at": at(f.issued_at),
        "model": "harmonic regression: level, linear trend, tidal M2 S2 K1 O1 M4; least squares over hourly means",
        "training": {
            "from": at(f.from),
            "to": at(f.to),
            "hourly_means": f.hourly_means,
            "rms_residual": f.rms_residual,
        },
        "backtest": f.backtest,
        "first_reaches": crossings,
        "points": f.points.iter().map(|(t, v)| json!({"t": at(*t), "value": v})).collect::<Vec<_>>(),
    }))
    .into_response())
}

#[derive(Debug, Deserialize)]
pub struct AqiParams {
    from: Option<String>,
    to: Option<String>,
}

/// Longest range of hourly VN_AQI one request may ask for.
const AQI_MAX_DAYS: i64 = 31;

/// `GET /api/v1/stations/{id}/aqi?from=&to=`: the hourly VN_AQI of an air-quality station
/// over a range (default the last 24 h), recomputed from the stored hourly means exactly as
/// the live one is (NowCast over the 12 hours before each hour for PM, hourly means for gases).
pub async fn aqi(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(p): Query<AqiParams>,
) -> Result<Response, ApiError> {
    use model::aqi::{hourly_from_means, Pollutant};
    let (history, id, rec) = station_for(&st, &caller, &id)?;
    if rec.layer != Layer::AirQuality {
        return Err(FieldError::new("id", format!("{id} is not an air-quality station")).into());
    }
    let now = Utc::now();
    let (from, to) = match (parse_time("to", p.to.as_deref(), now), p.from.as_deref()) {
        (Err(e), _) => return Err(e.into()),
        (Ok(to), from) => match parse_time("from", from, to - chrono::Duration::hours(24)) {
            Ok(from) => (from, to),
            Err(e) => return Err(e.into()),
        },
    };
    if from >= to || (to - from).num_days() > AQI_MAX_DAYS {
        return Err(FieldError::new(
            "from",
            format!("must be before to, at most {AQI_MAX_DAYS} days earlier"),
        )
        .into());
    }
    let first = store::series::floor_to_step(from, 3600);
    let last = store::series::floor_to_step(to, 3600);
    // Hourly means of each pollutant, from 11 hours before the first hour (for the NowCast).
    let mut means: std::collections::HashMap<(Pollutant, i64), f64> =
        std::collections::HashMap::new();
    for pollutant in Pollutant::ALL {
        let q = match SeriesQuery::new(
            id.clone(),
            pollutant.parameter(),
            first - chrono::Duration::hours(11),
            last,
            Some(3600),
        ) {
            Ok(q) => q,
            Err(e) => return Err(e.into()),
        };
        match history.series(&q).await {
            Ok(s) => means.extend(
                s.buckets
                    .iter()
                    .map(|b| ((pollutant, b.t.timestamp()), b.avg)),
            ),
            Err(e) => return Err(store_error(e)),
        }
    }
    let hours: Vec<Value> = (0..(last - first).num_hours())
        .map(|k| {
            let h = (first + chrono::Duration::hours(k)).timestamp();
            let r = hourly_from_means(h, |p, h| means.get(&(p, h)).copied());
            let t = DateTime::from_timestamp(h, 0)
                .unwrap_or(now)
                .with_timezone(&vn())
                .to_rfc3339();
            match r {
                Ok(a) => {
                    json!({"hour": t, "aqi": a.aqi, "band": a.band, "band_vi": a.band.name_vi(),
                                "dominant": a.dominant, "sub_indices": a.sub_indices})
                }
                Err(e) => json!({"hour": t, "aqi": null, "absent": e.reason}),
            }
        })
        .collect();
    Ok(Json(json!({
        "station": id,
        "name": rec.name(),
        "method": "VN_AQI, Decision 1459/QĐ-TCMT: hourly, NowCast (12 h) for PM10 and PM2.5",
        "from": first.with_timezone(&vn()).to_rfc3339(),
        "to": last.with_timezone(&vn()).to_rfc3339(),
        "hours": hours,
    }))
    .into_response())
}
