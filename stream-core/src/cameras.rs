//! Cameras on the map: each registry camera joined with the latest `camera.status` its video
//! worker published, as a record of the `cameras` layer (position, state, statistics, last
//! snapshot time, links to the snapshot and live view; never the stream address or its
//! credentials).
//!
//! A worker reports every camera at least every stats period, so a camera not reported for
//! `silent_after` has nobody watching it (the worker died, or lost the bus): it is shown
//! `unknown` with the reason and counts as down, never left showing its last "online".
//!
//! Pure logic: the caller feeds registry cameras and status events and publishes the records
//! it is handed. The latest status is kept in the record's `core` part, so a restart picks up
//! where the state topic left off.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, FixedOffset};
use model::{
    Camera, CameraState, CameraStatus, EntityId, Envelope, FieldError, Layer, LocalId, StateRecord,
};

use crate::alerts::Observation;
use serde_json::{json, Map, Value};

pub struct CameraBook {
    /// The latest status per camera, with the event time it was published at.
    statuses: HashMap<LocalId, (DateTime<FixedOffset>, CameraStatus)>,
    /// No status this long: the camera's worker is presumed gone (zero: never).
    silent_after: chrono::Duration,
    /// Cameras last published as silent.
    silent: HashSet<LocalId>,
}

impl CameraBook {
    pub fn new(silent_after: chrono::Duration) -> Self {
        Self {
            statuses: HashMap::new(),
            silent_after,
            silent: HashSet::new(),
        }
    }

    /// Seconds since the camera's worker last reported it, when that is past `silent_after`.
    fn silent_for(&self, id: &LocalId, now: DateTime<FixedOffset>) -> Option<i64> {
        let (ts, _) = self.statuses.get(id)?;
        let quiet = now - *ts;
        (self.silent_after > chrono::Duration::zero() && quiet > self.silent_after)
            .then(|| quiet.num_seconds())
    }

    /// Cameras that went silent, or were heard again, since the last call: their records
    /// must be published again.
    pub fn silence_changes(&mut self, now: DateTime<FixedOffset>) -> Vec<LocalId> {
        let mut changed = Vec::new();
        for id in self.statuses.keys() {
            let silent = self.silent_for(id, now).is_some();
            if silent != self.silent.contains(id) {
                changed.push(id.clone());
            }
        }
        for id in &changed {
            if !self.silent.remove(id) {
                self.silent.insert(id.clone());
            }
        }
        changed
    }

    /// Takes back the status a restored record carried.
    pub fn restore(&mut self, r: &StateRecord) {
        if let (Some(ts), Ok(s)) = (
            r.updated,
            serde_json::from_value::<CameraStatus>(r.core["status"].clone()),
        ) {
            self.statuses.insert(s.camera.clone(), (ts, s));
        }
    }

    /// Applies one `camera.status` event; `Ok(Some(id))` when the camera's state moved on,
    /// `Ok(None)` for an event older than what is held.
    pub fn apply(&mut self, env: &Envelope) -> Result<Option<LocalId>, FieldError> {
        let s: CameraStatus = env.data_as()?;
        if env.entity.local() != s.camera.as_str() {
            return Err(FieldError::new(
                "data.camera",
                format!("{} does not match the key {}", s.camera, env.entity),
            ));
        }
        if let Some((ts, _)) = self.statuses.get(&s.camera) {
            if *ts > env.ts {
                return Ok(None);
            }
        }
        let id = s.camera.clone();
        self.statuses.insert(id.clone(), (env.ts, s));
        self.silent.remove(&id);
        Ok(Some(id))
    }

    /// The `camera_down` rule's view of `camera`: it holds while the camera is stalled or
    /// offline (no picture) or its worker is silent, for `after` before an alert is raised.
    pub fn observation(
        &self,
        camera: &Camera,
        after: chrono::Duration,
        now: DateTime<FixedOffset>,
    ) -> Option<Observation> {
        let (ts, s) = self.statuses.get(&camera.id)?;
        let silent = self.silent_for(&camera.id, now).is_some();
        let down = silent || matches!(s.state, CameraState::Stalled | CameraState::Offline);
        let mut o = Observation::new(
            "camera_down",
            EntityId::new(model::EntityKind::Camera, &camera.id),
            camera.name.clone(),
            camera.agency.clone(),
            down,
        );
        o.min_duration = after;
        o.camera_group = Some(camera.group.clone());
        o.title = "Camera không có hình".into();
        let vn = |t: &DateTime<FixedOffset>| {
            t.with_timezone(&chrono::FixedOffset::east_opt(7 * 3600).expect("UTC+7"))
                .format("%H:%M %d/%m")
        };
        o.detail = match silent {
            true => format!(
                "{} ({}): {} từ {}",
                camera.name,
                camera.purpose.name_vi(),
                SILENT_VI,
                vn(ts)
            ),
            false => format!(
                "{} ({}): {} từ {}{}",
                camera.name,
                camera.purpose.name_vi(),
                s.state.name_vi(),
                vn(&s.since),
                s.reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            ),
        };
        Some(o)
    }

    /// Whether `id` is online (frames arriving, its worker heard) as of `now`, and since when
    /// that holds: the status's own `since`, or for a silent camera when its silence began.
    /// `None` for a camera never reported.
    pub fn uptime_state(
        &self,
        id: &LocalId,
        now: DateTime<FixedOffset>,
    ) -> Option<(DateTime<FixedOffset>, bool)> {
        let (ts, s) = self.statuses.get(id)?;
        if self.silent_for(id, now).is_some() {
            return Some((*ts + self.silent_after, false));
        }
        Some((s.since.min(*ts), s.state == CameraState::Online))
    }

    /// True while the camera's worker is still opening its stream (no frame yet).
    pub fn is_connecting(&self, id: &LocalId) -> bool {
        self.statuses
            .get(id)
            .is_some_and(|(_, s)| s.state == CameraState::Connecting)
    }

    pub fn forget(&mut self, id: &LocalId) {
        self.statuses.remove(id);
        self.silent.remove(id);
    }

    /// The record of `camera` (in `units`, named `unit_names`) with its latest status as of
    /// `now`.
    pub fn record(
        &self,
        camera: &Camera,
        units: Vec<LocalId>,
        unit_names: Vec<String>,
        now: DateTime<FixedOffset>,
    ) -> StateRecord {
        let status = self.statuses.get(&camera.id);
        let mut p = Map::new();
        p.insert("name".into(), camera.name.clone().into());
        p.insert("purpose".into(), json!(camera.purpose));
        p.insert("purpose_vi".into(), camera.purpose.name_vi().into());
        p.insert("group".into(), camera.group.to_string().into());
        p.insert(
            "agency".into(),
            camera.agency.as_ref().map(|a| a.to_string()).into(),
        );
        p.insert("unit_names".into(), json!(unit_names));
        let base = format!("/api/v1/cameras/{}", camera.id);
        p.insert("snapshot_url".into(), format!("{base}/snapshot.jpg").into());
        p.insert("live_url".into(), format!("{base}/live.mjpeg").into());
        match status {
            Some((_, s)) => {
                p.insert("state".into(), s.state.as_str().into());
                p.insert("state_vi".into(), s.state.name_vi().into());
                p.insert("since".into(), json!(s.since));
                p.insert("reason".into(), json!(s.reason));
                p.insert("last_frame".into(), json!(s.last_frame));
                p.insert("last_snapshot".into(), json!(s.last_snapshot));
                p.insert("reconnects".into(), s.reconnects.into());
                p.insert("stats".into(), json!(s.stats));
                if let Some(quiet) = self.silent_for(&camera.id, now) {
                    p.insert("state".into(), "unknown".into());
                    p.insert("state_vi".into(), SILENT_VI.into());
                    p.insert("reported_state".into(), s.state.as_str().into());
                    p.insert(
                        "reason".into(),
                        format!("its video worker has not reported for {quiet} s").into(),
                    );
                }
            }
            None => {
                p.insert("state".into(), "unknown".into());
                p.insert("state_vi".into(), "Chưa có thông tin".into());
            }
        }
        let (lon, lat) = (camera.position.lon, camera.position.lat);
        StateRecord {
            entity: EntityId::new(model::EntityKind::Camera, &camera.id),
            layer: Layer::Cameras,
            geometry: geojson::Geometry::new(geojson::Value::Point(vec![lon, lat])),
            bbox: [lon, lat, lon, lat],
            units,
            updated: status.map(|(ts, _)| *ts),
            properties: p,
            applied: Default::default(),
            core: status.map_or(Value::Null, |(_, s)| json!({ "status": s })),
        }
    }
}

const SILENT_VI: &str = "Không có báo cáo từ máy chủ video";

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use model::camera::{RtspTransport, StreamSource, StreamStats};
    use model::{CameraGroup, CameraPurpose, CameraState, EventKind, GeoPoint};

    fn camera() -> Camera {
        Camera {
            id: LocalId::parse("id", "hg-cam-1").unwrap(),
            name: "Camera 1".into(),
            position: GeoPoint::new(105.47, 9.78).unwrap(),
            agency: None,
            purpose: CameraPurpose::Traffic,
            group: CameraGroup::Traffic,
            stream: StreamSource {
                url: "rtsp://10.1.2.3/secret-path".into(),
                transport: RtspTransport::Tcp,
                credentials: Some("police".into()),
            },
        }
    }

    fn status(state: CameraState, at: &str) -> Envelope {
        let ts = DateTime::parse_from_rfc3339(at).unwrap();
        let s = CameraStatus {
            camera: camera().id,
            state,
            since: ts,
            changed: true,
            reason: None,
            last_frame: Some(ts),
            last_snapshot: None,
            reconnects: 0,
            stats: StreamStats::default(),
        };
        Envelope::new(
            EventKind::CameraStatus,
            EntityId::new(model::EntityKind::Camera, &camera().id),
            ts,
            Utc::now(),
            "test",
            serde_json::to_value(&s).unwrap(),
        )
    }

    fn at(t: &str) -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339(t).unwrap()
    }

    fn book() -> CameraBook {
        CameraBook::new(chrono::Duration::seconds(60))
    }

    #[test]
    fn the_newest_status_wins_and_the_record_hides_the_stream() {
        let mut book = book();
        let c = camera();
        let now = at("2026-11-23T10:00:10+07:00");
        assert_eq!(
            book.record(&c, vec![], vec![], now).properties["state"],
            "unknown"
        );
        book.apply(&status(CameraState::Online, "2026-11-23T10:00:05+07:00"))
            .unwrap();
        assert_eq!(
            book.apply(&status(CameraState::Stalled, "2026-11-23T10:00:01+07:00"))
                .unwrap(),
            None
        );
        let rec = book.record(&c, vec![], vec![], now);
        assert_eq!(rec.properties["state"], "online");
        let text = serde_json::to_string(&rec.to_feature()).unwrap();
        assert!(!text.contains("10.1.2.3") && !text.contains("secret-path"));
        let mut again = self::book();
        again.restore(&rec);
        assert_eq!(again.record(&c, vec![], vec![], now), rec);
    }

    #[test]
    fn a_camera_without_picture_is_down_and_an_online_one_is_not() {
        let mut book = book();
        let c = camera();
        let after = chrono::Duration::seconds(120);
        let now = at("2026-11-23T10:01:10+07:00");
        assert!(
            book.observation(&c, after, now).is_none(),
            "no status yet: no opinion"
        );
        book.apply(&status(CameraState::Online, "2026-11-23T10:01:00+07:00"))
            .unwrap();
        assert!(!book.observation(&c, after, now).unwrap().holds);
        for s in [CameraState::Stalled, CameraState::Offline] {
            book.apply(&status(s, "2026-11-23T10:01:00+07:00")).unwrap();
            let o = book.observation(&c, after, now).unwrap();
            assert!(o.holds && o.min_duration == after, "{s}");
            assert!(o.detail.contains("10:01"), "{}", o.detail);
        }
    }

    /// A worker that dies leaves its last "online" behind; the map must not believe it.
    #[test]
    fn a_camera_its_worker_stopped_reporting_is_unknown_and_down_until_heard_again() {
        let mut book = book();
        let c = camera();
        let after = chrono::Duration::seconds(120);
        book.apply(&status(CameraState::Online, "2026-11-23T10:00:00+07:00"))
            .unwrap();
        let quiet = at("2026-11-23T10:00:59+07:00");
        assert!(book.silence_changes(quiet).is_empty());
        assert_eq!(
            book.record(&c, vec![], vec![], quiet).properties["state"],
            "online"
        );

        let silent = at("2026-11-23T10:01:30+07:00");
        assert_eq!(book.silence_changes(silent), vec![c.id.clone()]);
        assert!(book.silence_changes(silent).is_empty(), "said once");
        let rec = book.record(&c, vec![], vec![], silent);
        assert_eq!(rec.properties["state"], "unknown");
        assert_eq!(rec.properties["reported_state"], "online");
        assert_eq!(
            rec.properties["reason"],
            "its video worker has not reported for 90 s"
        );
        let o = book.observation(&c, after, silent).unwrap();
        assert!(
            o.holds,
            "a silent camera has no picture anyone can vouch for"
        );
        assert!(o.detail.contains("Không có báo cáo"), "{}", o.detail);

        book.apply(&status(CameraState::Online, "2026-11-23T10:01:31+07:00"))
            .unwrap();
        let back = at("2026-11-23T10:01:32+07:00");
        assert_eq!(
            book.record(&c, vec![], vec![], back).properties["state"],
            "online"
        );
        assert!(!book.observation(&c, after, back).unwrap().holds);
        assert!(
            book.silence_changes(back).is_empty(),
            "the status itself was published"
        );

        let never = CameraBook::new(chrono::Duration::zero());
        let mut never = never;
        never
            .apply(&status(CameraState::Online, "2026-11-23T10:00:00+07:00"))
            .unwrap();
        assert_eq!(
            never.record(&c, vec![], vec![], silent).properties["state"],
            "online"
        );
    }
}
