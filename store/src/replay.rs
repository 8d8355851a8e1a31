//! Replay of the past: the state at `from` (the newest reading of each station and parameter
//! at that moment), then every reading up to `to` in event-time order, grouped into frames and
//! paced at a chosen speed. Readings are read in pages, so a long window never sits in memory,
//! and frames go through a small bounded channel, so a slow consumer slows only its replay.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use model::{FieldError, LocalId, Reading};
use tokio::sync::mpsc;

use crate::{History, ReadingKey, StoreError};

/// Longest window one replay may cover.
pub const MAX_WINDOW_DAYS: i64 = 31;
/// Fastest pace: event seconds per real second (0 means "as fast as the consumer reads").
pub const MAX_SPEED: f64 = 1_000_000.0;
/// Slowest pacing: a tenth of an event second per second (slower would wait for years).
pub const MIN_SPEED: f64 = 0.1;
/// Readings fetched per page.
const PAGE: usize = 5000;
/// How far back the state at `from` looks for a station's last reading.
pub const DEFAULT_LOOKBACK: Duration = Duration::from_secs(2 * 86_400);

#[derive(Debug, Clone, PartialEq)]
pub struct ReplayRequest {
    pub stations: Vec<LocalId>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Event seconds per real second (60 = an hour a minute); 0 = no pacing.
    pub speed: f64,
    pub lookback: Duration,
}

impl ReplayRequest {
    pub fn new(
        stations: Vec<LocalId>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        speed: f64,
    ) -> Result<Self, FieldError> {
        if from >= to {
            return Err(FieldError::new("from", "must be before to"));
        }
        if (to - from).num_days() > MAX_WINDOW_DAYS {
            return Err(FieldError::new(
                "to",
                format!("a replay may cover at most {MAX_WINDOW_DAYS} days"),
            ));
        }
        if !speed.is_finite() || !(speed == 0.0 || (MIN_SPEED..=MAX_SPEED).contains(&speed)) {
            return Err(FieldError::new(
                "speed",
                format!("must be 0 (no pacing) or a number of event seconds per second from {MIN_SPEED} to {MAX_SPEED}"),
            ));
        }
        Ok(Self {
            stations,
            from,
            to,
            speed,
            lookback: DEFAULT_LOOKBACK,
        })
    }

    /// Event time one frame gathers: a tenth of a real second's worth, at least one second;
    /// a minute when unpaced.
    pub fn frame_width(&self) -> chrono::Duration {
        if self.speed == 0.0 {
            chrono::Duration::seconds(60)
        } else {
            chrono::Duration::milliseconds(((self.speed * 100.0) as i64).max(1000))
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ReplayFrame {
    /// The state at `from`: the newest reading of each station and parameter.
    Start {
        at: DateTime<Utc>,
        readings: Vec<Reading>,
    },
    /// Readings of one frame, in event-time order; `at` is the newest event time in it.
    Changes {
        at: DateTime<Utc>,
        readings: Vec<Reading>,
    },
    /// The window is done.
    End {
        at: DateTime<Utc>,
        frames: u64,
        readings: u64,
    },
}

/// Starts a replay; frames arrive on the returned channel (an `Err` ends it). Dropping the
/// receiver stops the replay.
pub fn start(
    history: Arc<dyn History>,
    req: ReplayRequest,
) -> mpsc::Receiver<Result<ReplayFrame, StoreError>> {
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        if let Err(e) = run(&*history, &req, &tx).await {
            let _ = tx.send(Err(e)).await;
        }
    });
    rx
}

struct Closed;

impl From<Closed> for StoreError {
    fn from(_: Closed) -> Self {
        StoreError::Failed("replay consumer went away".into())
    }
}

type FrameSender = mpsc::Sender<Result<ReplayFrame, StoreError>>;

/// Sends frames at their pace: frame `i` leaves when `i × width` of event time, divided by
/// the speed, has passed in real time.
struct Player<'a> {
    req: &'a ReplayRequest,
    tx: &'a FrameSender,
    width: chrono::Duration,
    real_start: tokio::time::Instant,
    frames: u64,
    readings: u64,
}

impl Player<'_> {
    async fn wait_for(&self, event: DateTime<Utc>) {
        if self.req.speed > 0.0 {
            let ahead = (event - self.req.from).to_std().unwrap_or_default();
            // Bounded by the checks on speed and window; saturating all the same.
            let wait = std::time::Duration::try_from_secs_f64(ahead.as_secs_f64() / self.req.speed)
                .unwrap_or(std::time::Duration::MAX);
            match self.real_start.checked_add(wait) {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        }
    }

    async fn send(&self, f: ReplayFrame) -> Result<(), Closed> {
        self.tx.send(Ok(f)).await.map_err(|_| Closed)
    }

    /// Sends frame number `index` holding `readings` (event-time order).
    async fn changes(&mut self, index: i64, readings: Vec<Reading>) -> Result<(), Closed> {
        self.wait_for(self.req.from + self.width * index as i32)
            .await;
        self.frames += 1;
        self.readings += readings.len() as u64;
        let at = readings
            .last()
            .map(|r| r.ts.with_timezone(&Utc))
            .unwrap_or(self.req.from);
        self.send(ReplayFrame::Changes { at, readings }).await
    }
}

async fn run(
    history: &dyn History,
    req: &ReplayRequest,
    tx: &FrameSender,
) -> Result<(), StoreError> {
    let initial = history
        .latest_at(&req.stations, req.from, req.lookback)
        .await?;
    let mut player = Player {
        req,
        tx,
        width: req.frame_width(),
        real_start: tokio::time::Instant::now(),
        frames: 0,
        readings: 0,
    };
    if player
        .send(ReplayFrame::Start {
            at: req.from,
            readings: initial,
        })
        .await
        .is_err()
    {
        return Ok(());
    }
    let mut current: Option<(i64, Vec<Reading>)> = None;
    let mut after: Option<ReadingKey> = None;
    loop {
        let page = history
            .readings_between(&req.stations, req.from, req.to, after.as_ref(), PAGE)
            .await?;
        let last_page = page.len() < PAGE;
        after = page.last().map(ReadingKey::of);
        for r in page {
            let index = (r.ts.with_timezone(&Utc) - req.from).num_milliseconds()
                / player.width.num_milliseconds();
            if let Some((i, readings)) = current.take_if(|(i, _)| *i != index) {
                if player.changes(i, readings).await.is_err() {
                    return Ok(());
                }
            }
            current.get_or_insert_with(|| (index, Vec::new())).1.push(r);
        }
        if last_page {
            break;
        }
    }
    if let Some((i, readings)) = current {
        if player.changes(i, readings).await.is_err() {
            return Ok(());
        }
    }
    player.wait_for(req.to).await;
    let end = ReplayFrame::End {
        at: req.to,
        frames: player.frames,
        readings: player.readings,
    };
    let _ = player.send(end).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryHistory;
    use model::reading::Quality;
    use model::{Parameter, Unit};

    fn r(station: &str, t: DateTime<Utc>, value: f64) -> Reading {
        Reading {
            station: LocalId::parse("station", station).unwrap(),
            parameter: Parameter::Salinity,
            ts: t.fixed_offset(),
            value,
            unit: Unit::Permille,
            quality: Quality::Good,
            sent_as: None,
        }
    }

    #[tokio::test]
    async fn replay_gives_the_state_at_from_then_every_change_in_order() {
        let h = Arc::new(MemoryHistory::new(100_000));
        let t0 = DateTime::parse_from_rfc3339("2026-03-02T02:00:00+07:00")
            .unwrap()
            .with_timezone(&Utc);
        let mut rows = vec![
            r("a", t0 - chrono::Duration::minutes(10), 1.0),
            r("b", t0 - chrono::Duration::hours(1), 2.0),
        ];
        // 12,000 readings after t0 (more than two pages), alternately from a and b.
        for i in 0..12_000 {
            rows.push(r(
                if i % 2 == 0 { "a" } else { "b" },
                t0 + chrono::Duration::seconds(i),
                i as f64,
            ));
        }
        h.write_readings(&rows).await.unwrap();
        let stations = vec![
            LocalId::parse("s", "a").unwrap(),
            LocalId::parse("s", "b").unwrap(),
        ];
        let req = ReplayRequest::new(stations, t0, t0 + chrono::Duration::hours(4), 0.0).unwrap();
        let mut rx = start(h, req);
        let Some(Ok(ReplayFrame::Start { readings, .. })) = rx.recv().await else {
            panic!()
        };
        let vals: Vec<(&str, f64)> = readings
            .iter()
            .map(|r| (r.station.as_str(), r.value))
            .collect();
        assert_eq!(
            vals,
            vec![("b", 2.0), ("a", 1.0)],
            "the state before from, oldest first"
        );
        let mut seen = Vec::new();
        let mut frames = 0;
        loop {
            match rx.recv().await.unwrap().unwrap() {
                ReplayFrame::Changes { readings, .. } => {
                    frames += 1;
                    seen.extend(readings.into_iter().map(|r| r.value));
                }
                ReplayFrame::End {
                    readings,
                    frames: f,
                    ..
                } => {
                    assert_eq!((readings, f), (12_000, frames));
                    break;
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(seen, (0..12_000).map(|i| i as f64).collect::<Vec<_>>());
        assert_eq!(
            frames, 200,
            "one frame per minute of event time when unpaced"
        );
    }

    #[test]
    fn requests_are_checked() {
        let t0 = Utc::now();
        let bad = |from, to, speed| {
            ReplayRequest::new(vec![], from, to, speed)
                .unwrap_err()
                .field
        };
        assert_eq!(bad(t0, t0, 1.0), "from");
        assert_eq!(bad(t0, t0 + chrono::Duration::days(40), 1.0), "to");
        assert_eq!(bad(t0, t0 + chrono::Duration::hours(1), -1.0), "speed");
        assert_eq!(bad(t0, t0 + chrono::Duration::hours(1), f64::NAN), "speed");
        assert_eq!(bad(t0, t0 + chrono::Duration::hours(1), 1e-300), "speed");
        assert_eq!(
            bad(t0, t0 + chrono::Duration::hours(1), f64::INFINITY),
            "speed"
        );
        assert!(ReplayRequest::new(vec![], t0, t0 + chrono::Duration::hours(1), MIN_SPEED).is_ok());
    }
}
