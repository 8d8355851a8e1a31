//! History in bounded memory, for the embedded demo (no database). The oldest readings are
//! dropped first once `capacity` is reached; everything is lost on exit, and the wall page
//! says so.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, FixedOffset, Utc};
use model::reading::Quality;
use model::{LocalId, Parameter, Reading, Unit};

use crate::series::{Bucket, Series, SeriesQuery, SeriesSource, ORIGIN_UNIX};
use crate::{
    AuditEntry, AuditQuery, AuditResult, AuditRow, Flavor, History, IndicatorEventRow, Media,
    ReadingKey, ReportEventRow, StoreError, Written,
};

#[derive(Debug, Clone)]
struct Row {
    ts: DateTime<FixedOffset>,
    value: f64,
    unit: Unit,
    quality: Quality,
}

type SeriesKey = (LocalId, Parameter);
/// (event time in µs, station, parameter name): event-time order, ties as in PostgreSQL.
type OrderKey = (i64, String, &'static str);

#[derive(Default)]
struct Inner {
    series: HashMap<SeriesKey, BTreeMap<i64, Row>>,
    order: BTreeSet<OrderKey>,
    /// Report events by report, then seq (the first stored with a seq wins).
    reports: HashMap<String, BTreeMap<i32, ReportEventRow>>,
    /// Indicator events in arrival order, oldest dropped first past [`INDICATOR_CAP`], and
    /// the ids held (a message read twice is kept once).
    indicators: std::collections::VecDeque<IndicatorEventRow>,
    indicator_ids: HashSet<uuid::Uuid>,
    /// Photos, oldest dropped first past [`MEDIA_CAP`].
    media: HashMap<String, Media>,
    media_order: std::collections::VecDeque<String>,
    /// Audit entries, oldest dropped first past [`ACCESS_CAP`].
    audit: std::collections::VecDeque<AuditRow>,
    /// Refused attempts, apart (and oldest dropped first past [`REFUSED_CAP`]), so that a
    /// flood of refusals never pushes out the record of what was done.
    refused: std::collections::VecDeque<AuditRow>,
    /// The id of the last entry written.
    audit_id: i64,
}

/// Refused-attempt rows the demo keeps.
const REFUSED_CAP: usize = 10_000;

/// Indicator events the demo keeps (two years of the fixture catalogue is about 25 000).
const INDICATOR_CAP: usize = 200_000;

/// Photos the demo keeps (a few hundred MB at most).
const MEDIA_CAP: usize = 200;

/// Audit rows the demo keeps (the demo is no record of anything; PostgreSQL keeps them all).
const ACCESS_CAP: usize = 100_000;

pub struct MemoryHistory {
    capacity: usize,
    inner: Mutex<Inner>,
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

impl MemoryHistory {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Readings held now.
    pub fn len(&self) -> usize {
        self.lock().order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn reading(key: &SeriesKey, row: &Row) -> Reading {
    Reading {
        station: key.0.clone(),
        parameter: key.1,
        ts: row.ts,
        value: row.value,
        unit: row.unit,
        quality: row.quality,
        sent_as: None,
    }
}

#[async_trait]
impl History for MemoryHistory {
    async fn write_report_events(&self, rows: &[ReportEventRow]) -> Result<u64, StoreError> {
        let mut inner = self.lock();
        let mut new = 0;
        for r in rows {
            let life = inner.reports.entry(r.report.clone()).or_default();
            if let std::collections::btree_map::Entry::Vacant(v) = life.entry(r.seq) {
                v.insert(r.clone());
                new += 1;
            }
        }
        Ok(new)
    }

    async fn report_events(&self, report: &str) -> Result<Vec<ReportEventRow>, StoreError> {
        Ok(self
            .lock()
            .reports
            .get(report)
            .map(|l| l.values().cloned().collect())
            .unwrap_or_default())
    }

    async fn write_indicator_events(&self, rows: &[IndicatorEventRow]) -> Result<u64, StoreError> {
        let mut inner = self.lock();
        let mut new = 0;
        for r in rows {
            if !inner.indicator_ids.insert(r.event_id) {
                continue;
            }
            inner.indicators.push_back(r.clone());
            new += 1;
            if inner.indicators.len() > INDICATOR_CAP {
                if let Some(old) = inner.indicators.pop_front() {
                    inner.indicator_ids.remove(&old.event_id);
                }
            }
        }
        Ok(new)
    }

    async fn indicator_events(
        &self,
        indicator: &str,
        unit: Option<&str>,
        limit: usize,
    ) -> Result<Vec<IndicatorEventRow>, StoreError> {
        let inner = self.lock();
        let mut rows: Vec<IndicatorEventRow> = inner
            .indicators
            .iter()
            .filter(|r| r.indicator == indicator && unit.is_none_or(|u| r.unit == u))
            .cloned()
            .collect();
        // Oldest first as the database answers: by event time, then id.
        rows.sort_by_key(|r| (r.ts, r.event_id));
        let skip = rows.len().saturating_sub(limit);
        Ok(rows.split_off(skip))
    }

    async fn write_audit(&self, e: &AuditEntry) -> Result<(), StoreError> {
        let mut inner = self.lock();
        inner.audit_id += 1;
        let row = AuditRow {
            id: inner.audit_id,
            entry: e.clone(),
        };
        let (rows, cap) = if e.result == AuditResult::Refused {
            (&mut inner.refused, REFUSED_CAP)
        } else {
            (&mut inner.audit, ACCESS_CAP)
        };
        rows.push_back(row);
        while rows.len() > cap {
            rows.pop_front();
        }
        Ok(())
    }

    async fn audit(&self, q: &AuditQuery) -> Result<Vec<AuditRow>, StoreError> {
        let inner = self.lock();
        let pick = |rows: &std::collections::VecDeque<AuditRow>| -> Vec<AuditRow> {
            rows.iter()
                .rev()
                .filter(|r| q.matches(r))
                .take(q.limit)
                .cloned()
                .collect()
        };
        let mut all = pick(&inner.audit);
        all.extend(pick(&inner.refused));
        all.sort_by(|a, b| b.id.cmp(&a.id));
        all.truncate(q.limit);
        Ok(all)
    }

    async fn put_media(&self, m: &Media) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if inner.media.insert(m.id.clone(), m.clone()).is_none() {
            inner.media_order.push_back(m.id.clone());
        }
        while inner.media_order.len() > MEDIA_CAP {
            if let Some(old) = inner.media_order.pop_front() {
                inner.media.remove(&old);
            }
        }
        Ok(())
    }

    async fn media(&self, id: &str) -> Result<Option<Media>, StoreError> {
        Ok(self.lock().media.get(id).cloned())
    }

    async fn write_readings(&self, rows: &[Reading]) -> Result<Written, StoreError> {
        let mut inner = self.lock();
        let mut w = Written::default();
        for r in rows {
            let t = micros(r.ts.with_timezone(&Utc));
            let key = (r.station.clone(), r.parameter);
            let series = inner.series.entry(key).or_default();
            if series.contains_key(&t) {
                w.duplicates += 1;
                continue;
            }
            series.insert(
                t,
                Row {
                    ts: r.ts,
                    value: r.value,
                    unit: r.unit,
                    quality: r.quality,
                },
            );
            inner
                .order
                .insert((t, r.station.to_string(), r.parameter.as_str()));
            w.inserted += 1;
        }
        while inner.order.len() > self.capacity {
            let Some((t, station, param)) = inner.order.pop_first() else {
                break;
            };
            let key = LocalId::parse("station", &station)
                .ok()
                .zip(param.parse::<Parameter>().ok());
            if let Some(key) = key {
                if let Some(s) = inner.series.get_mut(&key) {
                    s.remove(&t);
                    if s.is_empty() {
                        inner.series.remove(&key);
                    }
                }
            }
        }
        Ok(w)
    }

    async fn series(&self, q: &SeriesQuery) -> Result<Series, StoreError> {
        let inner = self.lock();
        let mut buckets: BTreeMap<i64, Bucket> = BTreeMap::new();
        let key = (q.station.clone(), q.parameter);
        if let Some(s) = inner.series.get(&key) {
            for row in s.range(micros(q.from)..micros(q.to)).map(|(_, r)| r) {
                let rel = row.ts.timestamp() - ORIGIN_UNIX;
                let start = ORIGIN_UNIX + rel.div_euclid(q.step_s) * q.step_s;
                let b = buckets.entry(start).or_insert_with(|| Bucket {
                    t: DateTime::from_timestamp(start, 0).unwrap_or_default(),
                    n: 0,
                    min: f64::INFINITY,
                    avg: 0.0,
                    max: f64::NEG_INFINITY,
                });
                b.n += 1;
                b.avg += row.value; // a sum until the end
                b.min = b.min.min(row.value);
                b.max = b.max.max(row.value);
            }
        }
        let buckets = buckets
            .into_values()
            .map(|mut b| {
                b.avg /= b.n as f64;
                b
            })
            .collect();
        Ok(Series {
            query: q.clone(),
            unit: q.parameter.canonical_unit(),
            source: SeriesSource::Raw,
            buckets,
            downsampled_from: None,
        })
    }

    async fn latest_at(
        &self,
        stations: &[LocalId],
        at: DateTime<Utc>,
        lookback: Duration,
    ) -> Result<Vec<Reading>, StoreError> {
        let wanted: HashSet<&LocalId> = stations.iter().collect();
        let since = micros(at) - lookback.as_micros() as i64;
        let inner = self.lock();
        let mut out: Vec<Reading> = inner
            .series
            .iter()
            .filter(|(k, _)| wanted.contains(&k.0))
            .filter_map(|(k, s)| {
                s.range(since + 1..micros(at))
                    .next_back()
                    .map(|(_, row)| reading(k, row))
            })
            .collect();
        out.sort_by_key(ReadingKey::of);
        Ok(out)
    }

    async fn readings_between(
        &self,
        stations: &[LocalId],
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        after: Option<&ReadingKey>,
        limit: usize,
    ) -> Result<Vec<Reading>, StoreError> {
        let wanted: HashSet<&str> = stations.iter().map(LocalId::as_str).collect();
        let inner = self.lock();
        let start = (micros(from), String::new(), "");
        let mut out = Vec::new();
        for (t, station, param) in inner.order.range(start..) {
            if *t >= micros(to) || out.len() >= limit {
                break;
            }
            if let Some(a) = after {
                if (*t, station.as_str(), *param)
                    <= (micros(a.ts), a.station.as_str(), a.parameter.as_str())
                {
                    continue;
                }
            }
            if !wanted.contains(station.as_str()) {
                continue;
            }
            let key = LocalId::parse("station", station)
                .ok()
                .zip(param.parse::<Parameter>().ok());
            if let Some(key) = key {
                if let Some(row) = inner.series.get(&key).and_then(|s| s.get(t)) {
                    out.push(reading(&key, row));
                }
            }
        }
        Ok(out)
    }

    async fn check_ready(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn flavor(&self) -> Flavor {
        Flavor::Memory
    }

    fn describe(&self) -> String {
        format!(
            "in memory: the last {} readings, lost on exit (no database configured)",
            self.capacity
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(station: &str, secs: i64, value: f64) -> Reading {
        Reading {
            station: LocalId::parse("station", station).unwrap(),
            parameter: Parameter::Salinity,
            ts: DateTime::from_timestamp(1_772_400_000 + secs, 0)
                .unwrap()
                .fixed_offset(),
            value,
            unit: Unit::Permille,
            quality: Quality::Good,
            sent_as: None,
        }
    }

    #[tokio::test]
    async fn writes_are_idempotent_and_bounded() {
        let h = MemoryHistory::new(5);
        let batch: Vec<_> = (0..4).map(|i| r("a", i * 60, i as f64)).collect();
        assert_eq!(h.write_readings(&batch).await.unwrap().inserted, 4);
        let again = h.write_readings(&batch).await.unwrap();
        assert_eq!((again.inserted, again.duplicates), (0, 4));
        let more: Vec<_> = (4..8).map(|i| r("a", i * 60, i as f64)).collect();
        h.write_readings(&more).await.unwrap();
        assert_eq!(h.len(), 5, "the oldest readings go first");
        let from = DateTime::from_timestamp(1_772_400_000, 0).unwrap();
        let all = h
            .readings_between(
                &[LocalId::parse("s", "a").unwrap()],
                from,
                from + chrono::Duration::hours(1),
                None,
                100,
            )
            .await
            .unwrap();
        assert_eq!(all.first().unwrap().value, 3.0);
    }
}
