//! The map as it was: a copy of the current station records with their live values replaced
//! by replayed ones. Positions, names and units come from the live registry (what the map
//! shows now); values and times come from history. Used by replays over HTTP and websocket.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, FixedOffset, Utc};
use model::reading::Latest;
use model::{EntityId, LocalId, Reading, StateRecord};
use serde_json::{json, Map, Value};
use store::replay::{ReplayFrame, ReplayRequest};
use store::series::vn;
use store::History;
use tokio::sync::mpsc;

/// Station records rewound to a moment in the past.
pub struct PastView {
    records: HashMap<EntityId, StateRecord>,
}

impl PastView {
    /// Starts from `base` (current records); keeps the stations, forgets their live values.
    pub fn new(base: &[Arc<StateRecord>]) -> Self {
        let records = base
            .iter()
            .filter(|r| r.entity.is(model::EntityKind::Station))
            .map(|r| {
                let mut r = (**r).clone();
                r.properties
                    .insert("latest".into(), Value::Object(Map::new()));
                // Counters and derived levels belong to the present, not the replayed past.
                for k in [
                    "readings",
                    "late",
                    "salinity_level",
                    "salinity_level_vi",
                    "aqi",
                    "aqi_daily",
                ] {
                    r.properties.remove(k);
                }
                r.core = Value::Null;
                r.updated = None;
                r.applied.clear();
                (r.entity.clone(), r)
            })
            .collect();
        Self { records }
    }

    /// The stations whose history is wanted.
    pub fn stations(&self) -> Vec<LocalId> {
        let mut ids: Vec<LocalId> = self
            .records
            .keys()
            .filter_map(|e| LocalId::parse("station", e.local()).ok())
            .collect();
        ids.sort();
        ids
    }

    /// Applies readings in order; returns the features that changed, once each.
    pub fn apply(&mut self, readings: &[Reading]) -> Vec<geojson::Feature> {
        let mut changed: Vec<EntityId> = Vec::new();
        for r in readings {
            let entity = EntityId::station(&r.station);
            let Some(rec) = self.records.get_mut(&entity) else {
                continue;
            };
            set_latest(rec, r);
            if !changed.contains(&entity) {
                changed.push(entity);
            }
        }
        changed
            .iter()
            .filter_map(|e| self.records.get(e))
            .map(StateRecord::to_feature)
            .collect()
    }

    /// Every station as it stands in the replay now.
    pub fn features(&self) -> Vec<geojson::Feature> {
        let mut out: Vec<&StateRecord> = self.records.values().collect();
        out.sort_by(|a, b| a.entity.as_str().cmp(b.entity.as_str()));
        out.into_iter().map(StateRecord::to_feature).collect()
    }
}

fn vn_time(t: DateTime<Utc>) -> String {
    t.with_timezone(&vn()).to_rfc3339()
}

impl PastView {
    /// One replay frame as the message clients get (websocket `replay_*` ops, or one line of
    /// the HTTP replay stream): `replay_start` with every station as it was at `from`,
    /// `replay_delta` with the stations a frame changed, `replay_end`.
    pub fn render(&mut self, id: &str, frame: &ReplayFrame) -> Value {
        match frame {
            ReplayFrame::Start { at, readings } => {
                self.apply(readings);
                json!({"op": "replay_start", "replay": id, "at": vn_time(*at),
                       "features": {"type": "FeatureCollection", "features": self.features()}})
            }
            ReplayFrame::Changes { at, readings } => {
                json!({"op": "replay_delta", "replay": id, "at": vn_time(*at),
                       "readings": readings.len(), "upsert": self.apply(readings)})
            }
            ReplayFrame::End {
                at,
                frames,
                readings,
            } => {
                json!({"op": "replay_end", "replay": id, "at": vn_time(*at),
                       "frames": frames, "readings": readings})
            }
        }
    }
}

impl PastView {
    /// Plays `req` from `history`: every frame rendered (see [`PastView::render`]) in order,
    /// ending after `replay_end` or a `replay_error`. Dropping the receiver stops the replay.
    pub fn play(
        mut self,
        history: Arc<dyn History>,
        req: ReplayRequest,
        id: String,
    ) -> mpsc::Receiver<String> {
        let (tx, rx) = mpsc::channel(2);
        tokio::spawn(async move {
            let mut frames = store::replay::start(history, req);
            while let Some(frame) = frames.recv().await {
                let (text, end) = match frame {
                    Ok(f) => (
                        self.render(&id, &f).to_string(),
                        matches!(f, ReplayFrame::End { .. }),
                    ),
                    Err(e) => (
                        json!({"op": "replay_error", "replay": id, "reason": e.to_string()})
                            .to_string(),
                        true,
                    ),
                };
                if tx.send(text).await.is_err() || end {
                    break;
                }
            }
        });
        rx
    }
}

fn set_latest(rec: &mut StateRecord, r: &Reading) {
    let latest = rec
        .properties
        .entry("latest")
        .or_insert_with(|| Value::Object(Map::new()));
    if let (Value::Object(m), Ok(v)) = (latest, serde_json::to_value(Latest::of(r, r.ts))) {
        m.insert(r.parameter.as_str().to_string(), v);
    }
    let ts: DateTime<FixedOffset> = r.ts;
    if rec.updated.is_none_or(|u| u < ts) {
        rec.updated = Some(ts);
    }
}
