//! Forecasts from history: a station's hourly means of the last days, fitted with the
//! harmonic model of `model::forecast` and extended ahead. One function for the API (which
//! shows the whole forecast) and the stream core's forecaster (which shows a summary).

use chrono::{DateTime, Duration, Utc};
use model::forecast::{backtest, Backtest, Harmonic};
use model::{FieldError, LocalId, Parameter};

use crate::series::floor_to_step;
use crate::{History, SeriesQuery, StoreError};

/// A forecast and what it was made from.
#[derive(Debug, Clone, PartialEq)]
pub struct Forecast {
    pub issued_at: DateTime<Utc>,
    /// Training range: hourly means in `[from, to)`; `to` is the start of the open hour.
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub hourly_means: usize,
    pub rms_residual: f64,
    /// One value per hour from the open hour on.
    pub points: Vec<(DateTime<Utc>, f64)>,
    /// The same model fitted without the last `horizon` hours, compared with them.
    pub backtest: Option<Backtest>,
}

impl Forecast {
    /// When the forecast first reaches `level`.
    pub fn first_reaching(&self, level: f64) -> Option<DateTime<Utc>> {
        self.points
            .iter()
            .find(|(_, v)| *v >= level)
            .map(|(t, _)| *t)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ForecastError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Request(FieldError),
    /// Fewer hourly means than the model needs (count given).
    #[error("too little history: {0} hourly means")]
    TooLittle(usize),
}

/// Forecasts `parameter` at `station` `horizon_h` hours ahead from the hourly means of the
/// `days` before the open hour of `now`.
pub async fn forecast(
    history: &dyn History,
    station: &LocalId,
    parameter: Parameter,
    days: i64,
    horizon_h: u32,
    now: DateTime<Utc>,
) -> Result<Forecast, ForecastError> {
    let open = floor_to_step(now, 3600);
    let q = SeriesQuery::new(
        station.clone(),
        parameter,
        open - Duration::days(days),
        open,
        Some(3600),
    )
    .map_err(ForecastError::Request)?;
    let series = history.series(&q).await?;
    let hour = |t: DateTime<Utc>| t.timestamp() as f64 / 3600.0;
    let points: Vec<(f64, f64)> = series.buckets.iter().map(|b| (hour(b.t), b.avg)).collect();
    let model = Harmonic::fit(&points).ok_or(ForecastError::TooLittle(points.len()))?;
    let ahead = (0..i64::from(horizon_h))
        .map(|k| {
            let t = open + Duration::hours(k);
            (t, model.predict(hour(t)))
        })
        .collect();
    Ok(Forecast {
        issued_at: now,
        from: q.from,
        to: q.to,
        hourly_means: points.len(),
        rms_residual: model.rms_residual,
        points: ahead,
        backtest: backtest(&points, f64::from(horizon_h)),
    })
}
