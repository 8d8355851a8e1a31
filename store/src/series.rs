//! Time-bucketed series: what a chart or an export asks for, how it is validated, which
//! table can answer it, and LTTB downsampling for charts.
//!
//! Buckets are aligned to Vietnam midnight (origin 2000-01-01T00:00+07:00), so a 1-day step
//! is a local day and 5-minute and 1-hour buckets are the usual clock ones. A query's range is
//! widened to whole buckets (`from` down, `to` up), and the series says which range it covers.

use chrono::{DateTime, FixedOffset, TimeZone, Utc};
use model::{FieldError, LocalId, Parameter, Unit};
use serde::Serialize;

/// 2000-01-01T00:00:00+07:00 as Unix seconds: the origin of every bucket grid.
pub const ORIGIN_UNIX: i64 = 946_659_600;
/// The same origin as SQL, for `date_bin`.
pub const ORIGIN_SQL: &str = "2000-01-01 00:00:00+07";
/// Most buckets one response may hold.
pub const MAX_BUCKETS: i64 = 20_000;
/// Longest range one query may cover.
pub const MAX_RANGE_DAYS: i64 = 400;
/// Steps tried, smallest first, when the caller gives none.
const AUTO_STEPS: [i64; 9] = [
    60,
    300,
    900,
    3600,
    3 * 3600,
    6 * 3600,
    86_400,
    7 * 86_400,
    30 * 86_400,
];
/// Buckets aimed at when the step is chosen automatically.
const AUTO_TARGET: i64 = 1000;

/// Vietnam time (UTC+7), for output.
pub fn vn() -> FixedOffset {
    FixedOffset::east_opt(7 * 3600).expect("valid offset")
}

/// Where a series is computed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SeriesSource {
    /// Raw readings, bucketed at query time.
    Raw,
    /// The 5-minute rollup (continuous aggregate on TimescaleDB).
    #[serde(rename = "rollup_5m")]
    Rollup5m,
    /// The 1-hour rollup.
    #[serde(rename = "rollup_1h")]
    Rollup1h,
}

impl SeriesSource {
    /// The table or view holding this rollup.
    pub fn table(self) -> Option<&'static str> {
        match self {
            SeriesSource::Raw => None,
            SeriesSource::Rollup5m => Some("readings_5m"),
            SeriesSource::Rollup1h => Some("readings_1h"),
        }
    }
}

/// A validated series request.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesQuery {
    pub station: LocalId,
    pub parameter: Parameter,
    /// Start of the first bucket (inclusive), aligned to `step`.
    pub from: DateTime<Utc>,
    /// End of the last bucket (exclusive), aligned to `step`.
    pub to: DateTime<Utc>,
    /// Bucket width, seconds.
    pub step_s: i64,
    /// Raw readings even where a rollup could answer (audits, benchmarks).
    pub raw_only: bool,
}

/// Parses `90s`, `5m`, `1h`, `1d` (a positive integer and a unit) into seconds.
pub fn parse_step(s: &str) -> Result<i64, FieldError> {
    let err = || {
        FieldError::new(
            "step",
            "must be a positive integer followed by s, m, h or d (e.g. 5m, 1h, 1d)",
        )
    };
    let s = s.trim();
    // The unit is the last character, whatever its width in bytes ("1é" is refused, not a
    // panic inside a character).
    let Some((at, _)) = s.char_indices().last() else {
        return Err(err());
    };
    let (num, unit) = s.split_at(at);
    let n: i64 = num.parse().map_err(|_| err())?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(err()),
    };
    if n <= 0 || n > 366 {
        return Err(err());
    }
    Ok(n * mult)
}

/// Floors `t` to the bucket grid of `step_s`.
pub fn floor_to_step(t: DateTime<Utc>, step_s: i64) -> DateTime<Utc> {
    let rel = t.timestamp() - ORIGIN_UNIX;
    let start = ORIGIN_UNIX + rel.div_euclid(step_s) * step_s;
    Utc.timestamp_opt(start, 0).single().unwrap_or(t)
}

/// Ceils `t` to the bucket grid of `step_s`.
pub fn ceil_to_step(t: DateTime<Utc>, step_s: i64) -> DateTime<Utc> {
    let f = floor_to_step(t, step_s);
    if f == t && t.timestamp_subsec_nanos() == 0 {
        t
    } else {
        f + chrono::Duration::seconds(step_s)
    }
}

impl SeriesQuery {
    /// Validates a request: `from < to`, a range of at most [`MAX_RANGE_DAYS`], a step of
    /// 1 s to 366 d (chosen for about 1000 buckets when `None`), at most [`MAX_BUCKETS`].
    pub fn new(
        station: LocalId,
        parameter: Parameter,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        step_s: Option<i64>,
    ) -> Result<Self, FieldError> {
        if from >= to {
            return Err(FieldError::new("from", "must be before to"));
        }
        let range = (to - from).num_seconds();
        if range > MAX_RANGE_DAYS * 86_400 {
            return Err(FieldError::new(
                "to",
                format!("the range may span at most {MAX_RANGE_DAYS} days"),
            ));
        }
        let step_s = match step_s {
            Some(s) if s >= 1 => s,
            Some(_) => return Err(FieldError::new("step", "must be at least 1 s")),
            None => AUTO_STEPS
                .into_iter()
                .find(|s| range / s <= AUTO_TARGET)
                .unwrap_or(30 * 86_400),
        };
        let from = floor_to_step(from, step_s);
        let to = ceil_to_step(to, step_s);
        let buckets = (to - from).num_seconds() / step_s;
        if buckets > MAX_BUCKETS {
            return Err(FieldError::new(
                "step",
                format!("{buckets} buckets is more than the {MAX_BUCKETS} one response may hold: widen the step or narrow the range"),
            ));
        }
        Ok(Self {
            station,
            parameter,
            from,
            to,
            step_s,
            raw_only: false,
        })
    }

    /// The coarsest rollup whose buckets nest in this query's buckets.
    pub fn source(&self) -> SeriesSource {
        if self.raw_only {
            SeriesSource::Raw
        } else if self.step_s % 3600 == 0 {
            SeriesSource::Rollup1h
        } else if self.step_s % 300 == 0 {
            SeriesSource::Rollup5m
        } else {
            SeriesSource::Raw
        }
    }
}

/// One bucket of a series. Buckets without readings are absent (a gap, not a zero).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bucket {
    /// Start of the bucket.
    pub t: DateTime<Utc>,
    /// Readings in the bucket.
    pub n: i64,
    pub min: f64,
    pub avg: f64,
    pub max: f64,
}

/// A series answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub query: SeriesQuery,
    pub unit: Unit,
    pub source: SeriesSource,
    pub buckets: Vec<Bucket>,
    /// Set when [`Series::downsample`] dropped buckets: how many there were.
    pub downsampled_from: Option<usize>,
}

impl Series {
    /// Keeps at most `max_points` buckets chosen by Largest-Triangle-Three-Buckets on the
    /// average (first and last always kept), so a chart keeps the series' shape.
    pub fn downsample(&mut self, max_points: usize) {
        let n = self.buckets.len();
        if max_points >= n || max_points < 3 {
            return;
        }
        let keep = lttb_indices(
            &self
                .buckets
                .iter()
                .map(|b| (b.t.timestamp() as f64, b.avg))
                .collect::<Vec<_>>(),
            max_points,
        );
        let mut it = keep.into_iter().peekable();
        let mut i = 0;
        self.buckets.retain(|_| {
            let k = it.peek() == Some(&i);
            if k {
                it.next();
            }
            i += 1;
            k
        });
        self.downsampled_from = Some(n);
    }
}

/// Indices chosen by LTTB (Steinarsson 2013) for `threshold` points out of `points`
/// (sorted by x). Needs `3 <= threshold < points.len()`.
pub fn lttb_indices(points: &[(f64, f64)], threshold: usize) -> Vec<usize> {
    let n = points.len();
    let mut out = Vec::with_capacity(threshold);
    out.push(0);
    let every = (n - 2) as f64 / (threshold - 2) as f64;
    let mut a = 0usize;
    for i in 0..threshold - 2 {
        // The average of the next bucket is the third vertex.
        let next_start = ((i + 1) as f64 * every).floor() as usize + 1;
        let next_end = (((i + 2) as f64 * every).floor() as usize + 1).min(n);
        // `every >= 1`, so the range is never empty.
        let next = &points[next_start..next_end.max(next_start + 1)];
        let ax = next.iter().map(|p| p.0).sum::<f64>() / next.len() as f64;
        let ay = next.iter().map(|p| p.1).sum::<f64>() / next.len() as f64;
        // This bucket's candidate making the largest triangle with `a` and that average.
        let start = (i as f64 * every).floor() as usize + 1;
        let end = (((i + 1) as f64 * every).floor() as usize + 1).min(n - 1);
        let (px, py) = points[a];
        let mut best = start;
        let mut best_area = -1.0;
        for (j, p) in points.iter().enumerate().take(end).skip(start) {
            let area = ((px - ax) * (p.1 - py) - (px - p.0) * (ay - py)).abs();
            if area > best_area {
                best_area = area;
                best = j;
            }
        }
        out.push(best);
        a = best;
    }
    out.push(n - 1);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_parsed_without_slicing_inside_a_character() {
        assert_eq!(parse_step("5m").unwrap(), 300);
        assert_eq!(parse_step(" 1d ").unwrap(), 86_400);
        for bad in [
            "1é", "€", "é", "", "0h", "999d", "5", "m", "1.5h", "-1h", "1€h",
        ] {
            assert_eq!(parse_step(bad).unwrap_err().field, "step", "{bad:?}");
        }
    }

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn q(from: &str, to: &str, step: Option<i64>) -> Result<SeriesQuery, FieldError> {
        SeriesQuery::new(
            LocalId::parse("station", "hg-01").unwrap(),
            Parameter::Salinity,
            t(from),
            t(to),
            step,
        )
    }

    #[test]
    fn steps_parse_and_mistakes_name_the_field() {
        assert_eq!(parse_step("90s").unwrap(), 90);
        assert_eq!(parse_step("5m").unwrap(), 300);
        assert_eq!(parse_step("1h").unwrap(), 3600);
        assert_eq!(parse_step("1d").unwrap(), 86_400);
        for bad in ["", "h", "0m", "-5m", "5y", "1.5h", "999d"] {
            assert_eq!(parse_step(bad).unwrap_err().field, "step", "{bad}");
        }
    }

    #[test]
    fn ranges_widen_to_whole_buckets_on_the_vietnam_grid() {
        let s = q(
            "2026-03-02T06:07:00+07:00",
            "2026-03-02T08:01:00+07:00",
            Some(3600),
        )
        .unwrap();
        assert_eq!(s.from, t("2026-03-02T06:00:00+07:00"));
        assert_eq!(s.to, t("2026-03-02T09:00:00+07:00"));
        // A day is a Vietnamese day, midnight to midnight.
        let d = q(
            "2026-03-02T03:00:00+07:00",
            "2026-03-02T05:00:00+07:00",
            Some(86_400),
        )
        .unwrap();
        assert_eq!(d.from, t("2026-03-02T00:00:00+07:00"));
        assert_eq!(d.to, t("2026-03-03T00:00:00+07:00"));
        // Aligned bounds stay.
        let a = q(
            "2026-03-02T06:00:00+07:00",
            "2026-03-02T07:00:00+07:00",
            Some(300),
        )
        .unwrap();
        assert_eq!(
            (a.from, a.to),
            (
                t("2026-03-02T06:00:00+07:00"),
                t("2026-03-02T07:00:00+07:00")
            )
        );
    }

    #[test]
    fn the_coarsest_nesting_rollup_answers() {
        let mk = |step| {
            q("2026-03-01T00:00:00Z", "2026-03-02T00:00:00Z", Some(step))
                .unwrap()
                .source()
        };
        assert_eq!(mk(86_400), SeriesSource::Rollup1h);
        assert_eq!(mk(3600), SeriesSource::Rollup1h);
        assert_eq!(mk(900), SeriesSource::Rollup5m);
        assert_eq!(mk(300), SeriesSource::Rollup5m);
        assert_eq!(mk(60), SeriesSource::Raw);
        assert_eq!(mk(420), SeriesSource::Raw);
    }

    #[test]
    fn bad_ranges_are_refused_with_reasons() {
        assert_eq!(
            q("2026-03-02T00:00:00Z", "2026-03-01T00:00:00Z", None)
                .unwrap_err()
                .field,
            "from"
        );
        assert_eq!(
            q("2024-01-01T00:00:00Z", "2026-03-01T00:00:00Z", None)
                .unwrap_err()
                .field,
            "to"
        );
        let e = q("2026-01-01T00:00:00Z", "2026-03-01T00:00:00Z", Some(60)).unwrap_err();
        assert_eq!(e.field, "step");
        assert!(e.reason.contains("84960 buckets"), "{}", e.reason);
        // Without a step, one is chosen for about a thousand buckets.
        let auto = q("2026-03-01T00:00:00Z", "2026-03-31T00:00:00Z", None).unwrap();
        assert_eq!(auto.step_s, 3600);
    }

    #[test]
    fn lttb_keeps_ends_and_peaks() {
        let pts: Vec<(f64, f64)> = (0..1000)
            .map(|i| {
                (
                    i as f64,
                    if i == 500 {
                        100.0
                    } else {
                        (i as f64 / 50.0).sin()
                    },
                )
            })
            .collect();
        let idx = lttb_indices(&pts, 50);
        assert_eq!(idx.len(), 50);
        assert_eq!(idx[0], 0);
        assert_eq!(*idx.last().unwrap(), 999);
        assert!(idx.contains(&500), "the spike survives");
        assert!(idx.windows(2).all(|w| w[0] < w[1]));
    }
}
