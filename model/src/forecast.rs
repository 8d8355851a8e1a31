//! Salinity forecasts by harmonic regression: hourly means of the last days are fitted with a
//! level, a linear trend (the season, over a few days) and the main tidal constituents of the
//! Mekong mouths (semi-diurnal M2, S2; diurnal K1, O1; shallow-water M4), by least squares;
//! the fit is extended over the next hours. [`backtest`] measures the error the same model
//! makes on the last hours of the history when fitted on what came before.
//!
//! Pure arithmetic: times are hours on any common axis, values any unit.

use serde::Serialize;

/// Tidal constituents: name and period in hours.
pub const CONSTITUENTS: [(&str, f64); 5] = [
    ("M2", 12.420_601),
    ("S2", 12.0),
    ("K1", 23.934_470),
    ("O1", 25.819_342),
    ("M4", 6.210_300),
];

/// Fewest hourly points a fit accepts (two days; K1 and O1 separate only over two weeks, and
/// until then act together as one diurnal wave, which is what a short forecast needs).
pub const MIN_POINTS: usize = 48;

/// A fitted model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Harmonic {
    /// Level, trend per hour, then cos/sin pairs per constituent.
    pub coefficients: Vec<f64>,
    /// Time origin of the fit, hours (trend is relative to it).
    pub origin: f64,
    /// Root-mean-square residual of the fit.
    pub rms_residual: f64,
    pub points: usize,
}

fn basis(t: f64, origin: f64) -> Vec<f64> {
    let mut b = Vec::with_capacity(2 + 2 * CONSTITUENTS.len());
    b.push(1.0);
    b.push(t - origin);
    for (_, period) in CONSTITUENTS {
        let w = std::f64::consts::TAU / period;
        b.push((w * t).cos());
        b.push((w * t).sin());
    }
    b
}

/// Solves `a x = b` (symmetric positive definite, `n × n`) by Gaussian elimination with
/// partial pivoting; `None` when singular.
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Option<Vec<f64>> {
    let n = b.len();
    for col in 0..n {
        let pivot = (col..n).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() < 1e-12 {
            return None;
        }
        a.swap(col, pivot);
        b.swap(col, pivot);
        for row in col + 1..n {
            let f = a[row][col] / a[col][col];
            for k in col..n {
                a[row][k] -= f * a[col][k];
            }
            b[row] -= f * b[col];
        }
    }
    let mut x = vec![0.0; n];
    for row in (0..n).rev() {
        let s: f64 = (row + 1..n).map(|k| a[row][k] * x[k]).sum();
        x[row] = (b[row] - s) / a[row][row];
    }
    Some(x)
}

impl Harmonic {
    /// Fits `(hour, value)` points (gaps allowed). `None` with fewer than [`MIN_POINTS`] or a
    /// degenerate series.
    pub fn fit(points: &[(f64, f64)]) -> Option<Harmonic> {
        if points.len() < MIN_POINTS {
            return None;
        }
        let origin = points.iter().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max);
        let n = 2 + 2 * CONSTITUENTS.len();
        let mut ata = vec![vec![0.0; n]; n];
        let mut atb = vec![0.0; n];
        for &(t, y) in points {
            let b = basis(t, origin);
            for i in 0..n {
                atb[i] += b[i] * y;
                for j in 0..n {
                    ata[i][j] += b[i] * b[j];
                }
            }
        }
        // A touch of ridge keeps nearly aliased constituents (S2/M2 over short spans) sane.
        for (i, row) in ata.iter_mut().enumerate().skip(2) {
            row[i] += 1e-6 * points.len() as f64;
        }
        let coefficients = solve(ata, atb)?;
        let mut h = Harmonic {
            coefficients,
            origin,
            rms_residual: 0.0,
            points: points.len(),
        };
        let sq: f64 = points.iter().map(|&(t, y)| (h.raw(t) - y).powi(2)).sum();
        h.rms_residual = (sq / points.len() as f64).sqrt();
        Some(h)
    }

    fn raw(&self, t: f64) -> f64 {
        basis(t, self.origin)
            .iter()
            .zip(&self.coefficients)
            .map(|(b, c)| b * c)
            .sum()
    }

    /// The forecast at hour `t`, never below zero (salinity).
    pub fn predict(&self, t: f64) -> f64 {
        self.raw(t).max(0.0)
    }
}

/// Errors of a forecast against what happened.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Backtest {
    /// Hours predicted ahead.
    pub horizon_h: f64,
    /// Points compared.
    pub n: usize,
    /// Mean absolute error.
    pub mae: f64,
    pub rmse: f64,
    /// Mean of the observed values over the horizon (to read the errors against).
    pub observed_mean: f64,
}

/// Fits on the points before the last `horizon_h` hours and compares the forecast with them.
pub fn backtest(points: &[(f64, f64)], horizon_h: f64) -> Option<Backtest> {
    let end = points.iter().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max);
    let cut = end - horizon_h;
    let train: Vec<(f64, f64)> = points.iter().copied().filter(|p| p.0 <= cut).collect();
    let test: Vec<(f64, f64)> = points.iter().copied().filter(|p| p.0 > cut).collect();
    if test.is_empty() {
        return None;
    }
    let model = Harmonic::fit(&train)?;
    let errors: Vec<f64> = test.iter().map(|&(t, y)| model.predict(t) - y).collect();
    let n = errors.len();
    Some(Backtest {
        horizon_h,
        n,
        mae: errors.iter().map(|e| e.abs()).sum::<f64>() / n as f64,
        rmse: (errors.iter().map(|e| e * e).sum::<f64>() / n as f64).sqrt(),
        observed_mean: test.iter().map(|p| p.1).sum::<f64>() / n as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A synthetic tide: level 3, slow rise, M2 and K1 with phases, small M4.
    fn tide(t: f64) -> f64 {
        let w = |p: f64| std::f64::consts::TAU / p;
        3.0 + 0.002 * t
            + 1.2 * (w(12.420_601) * t + 0.7).cos()
            + 0.5 * (w(23.934_470) * t - 1.1).cos()
            + 0.15 * (w(6.210_300) * t).sin()
    }

    #[test]
    fn a_tide_made_of_its_constituents_is_recovered() {
        let pts: Vec<(f64, f64)> = (0..14 * 24).map(|h| (h as f64, tide(h as f64))).collect();
        let m = Harmonic::fit(&pts).unwrap();
        assert!(m.rms_residual < 1e-4, "{}", m.rms_residual);
        for h in [1.0, 24.0, 72.0] {
            let t = 14.0 * 24.0 + h;
            assert!((m.predict(t) - tide(t)).abs() < 1e-4, "at +{h} h");
        }
    }

    #[test]
    fn gaps_and_noise_keep_the_error_small() {
        // Every fifth hour missing, ±0.2 deterministic noise.
        let pts: Vec<(f64, f64)> = (0..14 * 24)
            .filter(|h| h % 5 != 3)
            .map(|h| {
                (
                    h as f64,
                    tide(h as f64) + 0.2 * ((h * 7919 % 13) as f64 / 6.0 - 1.0),
                )
            })
            .collect();
        let b = backtest(&pts, 72.0).unwrap();
        assert!(b.mae < 0.2, "{b:?}");
        assert!(b.n > 50);
    }

    #[test]
    fn too_little_history_gives_no_forecast() {
        let pts: Vec<(f64, f64)> = (0..40).map(|h| (h as f64, tide(h as f64))).collect();
        assert!(Harmonic::fit(&pts).is_none());
        // Negative fits are held at zero (fresh water, not negative salt).
        let low: Vec<(f64, f64)> = (0..100)
            .map(|h| (h as f64, (h as f64 / 4.0).sin() * 0.1))
            .collect();
        let m = Harmonic::fit(&low).unwrap();
        assert!((0..200).all(|h| m.predict(h as f64) >= 0.0));
    }
}
