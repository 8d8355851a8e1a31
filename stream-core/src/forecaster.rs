//! The salinity forecaster: every `rules.forecast_every_s`, for each salinity station, fits the
//! harmonic model (`model::forecast`) to its hourly means from the history store and sends the
//! core a summary of the next `rules.forecast_horizon_h` hours. The core shows it on the
//! station (`forecast`, with its issue time) and raises a `salinity_forecast` alert when the
//! forecast reaches the warning level.
//!
//! It runs beside the core loop, so store queries never hold up readings; it only reads.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, FixedOffset, Utc};
use model::{LocalId, Parameter};
use serde::{Deserialize, Serialize};
use store::History;
use tokio::sync::{mpsc, watch};
use tracing::debug;

/// Days of hourly means a forecast is fitted on.
const TRAINING_DAYS: i64 = 14;

/// What a station shows of its latest forecast.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForecastView {
    pub issued_at: DateTime<FixedOffset>,
    pub horizon_h: u32,
    /// The highest value forecast, and when.
    pub peak: f64,
    pub peak_at: DateTime<FixedOffset>,
    /// When the forecast first reaches the station's watch and warning levels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reaches_watch_at: Option<DateTime<FixedOffset>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reaches_warning_at: Option<DateTime<FixedOffset>>,
    /// Mean absolute error of the same model over the last `horizon_h` of history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backtest_mae: Option<f64>,
    pub hourly_means: usize,
}

/// A salinity station to forecast and its levels.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub station: LocalId,
    pub watch: f64,
    pub warning: f64,
}

fn vn(t: DateTime<Utc>) -> DateTime<FixedOffset> {
    t.with_timezone(&FixedOffset::east_opt(7 * 3600).expect("valid offset"))
}

/// One station's forecast now, or `None` without enough history.
pub async fn forecast_one(
    history: &dyn History,
    target: &Target,
    horizon_h: u32,
    now: DateTime<Utc>,
) -> Option<ForecastView> {
    let f = store::forecast::forecast(
        history,
        &target.station,
        Parameter::Salinity,
        TRAINING_DAYS,
        horizon_h,
        now,
    )
    .await
    .ok()?;
    let (peak_at, peak) = f
        .points
        .iter()
        .copied()
        .max_by(|a, b| a.1.total_cmp(&b.1))?;
    Some(ForecastView {
        issued_at: vn(now),
        horizon_h,
        peak,
        peak_at: vn(peak_at),
        reaches_watch_at: f.first_reaching(target.watch).map(vn),
        reaches_warning_at: f.first_reaching(target.warning).map(vn),
        backtest_mae: f.backtest.map(|b| b.mae),
        hourly_means: f.hourly_means,
    })
}

/// Forecasts every target now and then, sending `(station, forecast)` to the core.
pub async fn run(
    history: Arc<dyn History>,
    targets: watch::Receiver<Vec<Target>>,
    every: Duration,
    horizon_h: u32,
    out: mpsc::Sender<(LocalId, ForecastView)>,
) {
    // A first round soon after start, then every `every`.
    tokio::time::sleep(Duration::from_secs(5).min(every)).await;
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let list = targets.borrow().clone();
        for t in &list {
            match forecast_one(&*history, t, horizon_h, Utc::now()).await {
                Some(f) => {
                    if out.send((t.station.clone(), f)).await.is_err() {
                        return;
                    }
                }
                None => debug!(station = %t.station, "no forecast: too little history"),
            }
        }
    }
}
