//! A read replica of the live state: follows the compacted `ioc.state` topic from the
//! beginning, holds every entity's latest record in a geo index, numbers each change with a
//! sequence number and broadcasts it. map-api and ui-feeds both serve clients from it, so
//! every replica process (one per API/feeds instance) sees the same picture.
//!
//! It owns *query and change-feed semantics* (bbox, layers, unit filter; `since` for resume).
//! It must never change state (only stream-core does). Its live part is kind-agnostic except
//! for field reports, which it also keeps typed and indexed ([`reports`]) so listing them
//! costs what a list returns; [`past::PastView`] rewinds station values to a moment in
//! history, for replays.

pub mod past;
pub mod reports;

pub use reports::{LiveReport, ReportOrder};

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use bus::{Bus, BusError};
use model::geoindex::BoxIndex;
use model::report::SensitiveScope;
use model::spatial::{bbox_meet, Near, Within, WithinSpec};
use model::{CameraGroup, CameraScope, EntityId, EntityKind, Layer, StateRecord};
use serde_json::value::RawValue;
use tokio::sync::broadcast;
use tracing::{info, warn};

/// One change of one entity. `record: None` means the entity was removed.
#[derive(Debug, Clone)]
pub struct Change {
    pub seq: u64,
    pub entity: EntityId,
    pub record: Option<Arc<StateRecord>>,
    /// Where the entity was before this change (`None`: it is new, or not known on a resume),
    /// so that a feed can reach the screens that showed it there.
    pub previous_bbox: Option<[f64; 4]>,
    /// The record as GeoJSON text, made once for every subscriber that sends this change.
    feature: Arc<OnceLock<Box<RawValue>>>,
}

impl Change {
    pub fn new(seq: u64, entity: EntityId, record: Option<Arc<StateRecord>>) -> Self {
        Self {
            seq,
            entity,
            record,
            previous_bbox: None,
            feature: Arc::default(),
        }
    }

    /// The same change, knowing where the entity was before it.
    pub fn moved_from(mut self, previous_bbox: Option<[f64; 4]>) -> Self {
        self.previous_bbox = previous_bbox;
        self
    }

    /// The record and its shared rendering, to be sent later; `None` for a removal.
    pub fn rendered(&self) -> Option<Rendered> {
        Some(Rendered {
            record: self.record.clone()?,
            feature: self.feature.clone(),
        })
    }
}

/// A record to send, with its GeoJSON text made at most once however many clients get it.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub record: Arc<StateRecord>,
    feature: Arc<OnceLock<Box<RawValue>>>,
}

impl Rendered {
    /// The record as an RFC 7946 Feature, serialised on first use.
    pub fn feature_json(&self) -> &RawValue {
        self.feature.get_or_init(|| {
            serde_json::value::to_raw_value(&self.record.to_feature()).unwrap_or_else(|e| {
                // A Feature of JSON values always serialises; keep the frame valid anyway.
                warn!(entity = %self.record.entity, error = %e, "feature not serialisable");
                RawValue::NULL.to_owned()
            })
        })
    }
}

/// What a client asks for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Query {
    pub layers: BTreeSet<Layer>,
    /// `[w, s, e, n]`; `None` = everywhere.
    pub bbox: Option<[f64; 4]>,
    /// Only entities inside this administrative unit (any depth).
    pub unit: Option<String>,
    /// Which cameras the client may see (the default: none).
    pub cameras: CameraScope,
    /// Which sensitive matters (public-order reports, alerts about them) the client may see
    /// (the default: none).
    pub sensitive: SensitiveScope,
    /// Only entities reaching into this disc; a snapshot lists them nearest first.
    pub near: Option<Near>,
    /// Only entities lying in this area, wholly or in part.
    pub within: Option<Arc<Within>>,
    /// Only indicator figures of this sector (other layers are not filtered by it).
    pub sector: Option<model::indicator::Sector>,
}

impl Query {
    pub fn matches(&self, r: &StateRecord) -> bool {
        self.matching(r).is_some()
    }

    /// `Some(distance from near's centre, if near is asked)` when `r` matches.
    fn matching(&self, r: &StateRecord) -> Option<Option<f64>> {
        let cheap = self.layers.contains(&r.layer)
            && self.bbox.is_none_or(|b| r.intersects(&b))
            && self.unit.as_deref().is_none_or(|u| r.in_unit(u))
            && self.sector.is_none_or(|s| {
                r.layer != Layer::Indicators
                    || r.properties.get("sector").and_then(|v| v.as_str()) == Some(s.as_str())
            })
            && visible_with(&self.cameras, &self.sensitive, r)
            && self.within.as_ref().is_none_or(|w| r.intersects(&w.bbox()))
            && self.near.is_none_or(|n| r.intersects(&n.bbox()));
        if !cheap || !self.within.as_ref().is_none_or(|w| w.holds(&r.geometry)) {
            return None;
        }
        match &self.near {
            None => Some(None),
            Some(n) => n.reach(&r.geometry).map(Some),
        }
    }

    /// Where this query can match anything: a feed indexes its subscriptions by it.
    pub fn extent(&self) -> Extent {
        match self.search_box() {
            Err(()) => Extent::Nowhere,
            Ok(None) => Extent::Everywhere,
            Ok(Some(b)) => Extent::Box(b),
        }
    }

    /// The box the index is asked for: bbox, within's and near's boxes together; `Err(())`
    /// when they do not meet (nothing can match), `Ok(None)` when the query is unbounded.
    fn search_box(&self) -> Result<Option<[f64; 4]>, ()> {
        let boxes = self
            .bbox
            .into_iter()
            .chain(self.within.as_ref().map(|w| w.bbox()))
            .chain(self.near.map(|n| n.bbox()));
        let mut out: Option<[f64; 4]> = None;
        for b in boxes {
            out = Some(match out {
                None => b,
                Some(a) => bbox_meet(&a, &b).ok_or(())?,
            });
        }
        Ok(out)
    }
}

/// Where a [`Query`] can match: nowhere (its boxes do not meet), inside one box, or anywhere.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Extent {
    Nowhere,
    Box([f64; 4]),
    Everywhere,
}

/// One record a snapshot found, with its distance when the query asked `near`.
#[derive(Debug, Clone)]
pub struct Hit {
    pub record: Arc<StateRecord>,
    pub distance_m: Option<f64>,
}

impl Hit {
    /// The record as a Feature, with `distance_m` (to the metre) when the query asked `near`.
    pub fn to_feature(&self) -> geojson::Feature {
        let mut f = self.record.to_feature();
        if let (Some(d), Some(props)) = (self.distance_m, f.properties.as_mut()) {
            props.insert("distance_m".into(), serde_json::json!(d.round()));
        }
        f
    }
}

/// May a caller with camera scope `cameras` and sensitive scope `sensitive` see `r`? A
/// camera only if its group is in scope, an alert about a camera likewise; a public-order
/// report, or an alert about one, and an indicator's figures, only if its agency is in the
/// sensitive scope; anything else yes (the role decides the layer). A camera whose group cannot be read is hidden.
pub fn visible_with(cameras: &CameraScope, sensitive: &SensitiveScope, r: &StateRecord) -> bool {
    let text = |key: &str| r.properties.get(key).and_then(|g| g.as_str());
    let group = |key: &str| text(key).and_then(|g| g.parse::<CameraGroup>().ok());
    let visible = match r.layer {
        // The map knows no reporter: a reporter sees its own report through Open311.
        Layer::Reports => {
            model::report::report_visible(text("service_code"), text("agency"), sensitive, false)
        }
        Layer::Alerts if r.properties.get("sensitive") == Some(&serde_json::Value::Bool(true)) => {
            sensitive.allows(text("agency"))
        }
        // An agency sees the indicators it owns; the control room and leaders all.
        Layer::Indicators => sensitive.allows(text("agency")),
        _ => true,
    };
    if !visible {
        return false;
    }
    match r.layer {
        Layer::Cameras => group("group").is_some_and(|g| cameras.allows(&g)),
        Layer::Alerts if r.properties.get("camera_group").is_some() => {
            group("camera_group").is_some_and(|g| cameras.allows(&g))
        }
        _ => true,
    }
}

struct State {
    records: HashMap<EntityId, Arc<StateRecord>>,
    index: BoxIndex<EntityId>,
    reports: reports::ReportBook,
    seq: u64,
    /// (seq, entity) of recent changes, oldest first, for `changes_since`.
    recent: VecDeque<(u64, EntityId)>,
}

pub struct Replica {
    state: RwLock<State>,
    tx: broadcast::Sender<Change>,
    epoch: String,
    recent_cap: usize,
    ready: AtomicBool,
}

/// How many changes a replica remembers for resume by default.
pub const DEFAULT_RECENT: usize = 100_000;
/// How many changes a slow subscriber may lag before it must resync.
pub const BROADCAST_CAPACITY: usize = 16_384;

impl Replica {
    pub fn new(recent_cap: usize) -> Arc<Self> {
        let (tx, _) = broadcast::channel(BROADCAST_CAPACITY);
        Arc::new(Self {
            state: RwLock::new(State {
                records: HashMap::new(),
                index: BoxIndex::default(),
                reports: Default::default(),
                seq: 0,
                recent: VecDeque::new(),
            }),
            tx,
            epoch: uuid::Uuid::now_v7().simple().to_string()[..12].to_string(),
            recent_cap,
            ready: AtomicBool::new(false),
        })
    }

    /// Identifies this replica's sequence numbering; a resume against another epoch restarts
    /// from a snapshot.
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// True once the replica has read the state topic up to where it was at start-up.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies one record (or removal); returns the change's sequence number, or `None` when
    /// nothing changed.
    pub fn apply(&self, entity: EntityId, record: Option<StateRecord>) -> Option<u64> {
        let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
        let record = record.map(Arc::new);
        let old = st.records.get(&entity);
        match (&record, old) {
            (Some(new), Some(old)) if **new == **old => return None,
            (None, None) => return None,
            _ => {}
        }
        // One lookup of the old record on this path (every state change passes here).
        let was_report = old.is_some_and(|r| r.layer == Layer::Reports);
        let previous_bbox = old.map(|r| r.bbox);
        st.seq += 1;
        let seq = st.seq;
        let is_report = record.as_ref().is_some_and(|r| r.layer == Layer::Reports);
        if was_report || is_report {
            st.reports
                .apply(&entity, record.as_ref().filter(|_| is_report));
        }
        match &record {
            Some(r) => {
                st.index.insert(entity.clone(), r.bbox);
                st.records.insert(entity.clone(), r.clone());
            }
            None => {
                st.index.remove(&entity);
                st.records.remove(&entity);
            }
        }
        st.recent.push_back((seq, entity.clone()));
        if st.recent.len() > self.recent_cap {
            st.recent.pop_front();
        }
        // No receivers is fine: nobody is watching yet.
        let _ = self
            .tx
            .send(Change::new(seq, entity, record).moved_from(previous_bbox));
        Some(seq)
    }

    /// A receiver of every change from now on. Subscribe before taking a snapshot, then skip
    /// changes whose `seq` the snapshot already covers.
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.tx.subscribe()
    }

    /// The current sequence number and the records matching `q`, sorted by entity id
    /// (nearest first when `q` asks `near`), at most `limit` of them.
    pub fn snapshot(&self, q: &Query, limit: usize) -> (u64, Vec<Arc<StateRecord>>) {
        let (seq, hits) = self.hits(q, limit);
        (seq, hits.into_iter().map(|h| h.record).collect())
    }

    /// As [`Replica::snapshot`], with each record's distance when `q` asks `near`. What
    /// matches is ranked by reference and only the `limit` first are sorted and cloned, so a
    /// district box holding thousands of entities costs one pass over them, not a sort.
    pub fn hits(&self, q: &Query, limit: usize) -> (u64, Vec<Hit>) {
        let st = self.read();
        fn found<'r>(
            q: &Query,
            r: &'r Arc<StateRecord>,
        ) -> Option<(Option<f64>, &'r Arc<StateRecord>)> {
            q.matching(r).map(|d| (d, r))
        }
        let mut out: Vec<(Option<f64>, &Arc<StateRecord>)> = match q.search_box() {
            Err(()) => Vec::new(),
            Ok(Some(b)) => st
                .index
                .query(&b)
                .filter_map(|id| st.records.get(id))
                .filter_map(|r| found(q, r))
                .collect(),
            Ok(None) => st.records.values().filter_map(|r| found(q, r)).collect(),
        };
        let nearest = q.near.is_some();
        let order = |a: &(Option<f64>, &Arc<StateRecord>), b: &(Option<f64>, &Arc<StateRecord>)| {
            let by_id = || a.1.entity.cmp(&b.1.entity);
            if nearest {
                let d = |h: &(Option<f64>, _)| h.0.unwrap_or(f64::INFINITY);
                d(a).total_cmp(&d(b)).then_with(by_id)
            } else {
                by_id()
            }
        };
        if limit == 0 {
            out.clear();
        } else if out.len() > limit {
            out.select_nth_unstable_by(limit - 1, order);
            out.truncate(limit);
        }
        out.sort_by(order);
        let hits = out
            .into_iter()
            .map(|(distance_m, r)| Hit {
                record: r.clone(),
                distance_m,
            })
            .collect();
        (st.seq, hits)
    }

    /// The entities changed after `since`, each with its current record (`None` if removed),
    /// and the current sequence number; `None` when the replica no longer remembers that far.
    pub fn changes_since(&self, since: u64) -> Option<(u64, Vec<Change>)> {
        let st = self.read();
        if since > st.seq {
            return None;
        }
        let oldest_known = st.recent.front().map(|(s, _)| *s).unwrap_or(st.seq + 1);
        if since + 1 < oldest_known && since < st.seq {
            return None;
        }
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for (seq, entity) in st.recent.iter().rev().take_while(|(s, _)| *s > since) {
            if seen.insert(entity.clone()) {
                out.push(Change::new(
                    *seq,
                    entity.clone(),
                    st.records.get(entity).cloned(),
                ));
            }
        }
        out.reverse();
        Some((st.seq, out))
    }

    /// Entities per layer.
    pub fn counts(&self) -> HashMap<Layer, usize> {
        let st = self.read();
        let mut out = HashMap::new();
        for r in st.records.values() {
            *out.entry(r.layer).or_default() += 1;
        }
        out
    }

    pub fn get(&self, entity: &EntityId) -> Option<Arc<StateRecord>> {
        self.read().records.get(entity).cloned()
    }

    /// The area a `within` names: a client's polygon as it is, a unit's or zone's outline
    /// from its record when `may_see` lets the caller see that record. An unknown id and one
    /// the caller may not see get the same answer.
    pub fn resolve_within(
        &self,
        spec: &WithinSpec,
        may_see: impl Fn(&StateRecord) -> bool,
    ) -> Result<Arc<Within>, model::FieldError> {
        let (kind, id) = match spec {
            WithinSpec::Shape(w) => return Ok(Arc::new(w.clone())),
            WithinSpec::Unit(id) => (EntityKind::Unit, id),
            WithinSpec::Zone(id) => (EntityKind::Zone, id),
        };
        let unknown =
            || model::FieldError::new("within", format!("no {} {id} is known", kind.as_str()));
        let local = model::LocalId::parse("within", id).map_err(|_| unknown())?;
        let record = self
            .get(&EntityId::new(kind, &local))
            .filter(|r| may_see(r))
            .ok_or_else(unknown)?;
        Within::from_geometry(&record.geometry)
            .map(Arc::new)
            .ok_or_else(unknown)
    }

    /// One report, typed.
    pub fn report(&self, entity: &EntityId) -> Option<Arc<LiveReport>> {
        self.read().reports.get(entity)
    }

    /// Walks the reports in `order` until `f` breaks, under one read of the replica (keep `f`
    /// cheap: it holds back writers). Returns the sequence number the walk saw and how many
    /// reports it visited.
    pub fn visit_reports(
        &self,
        order: ReportOrder,
        f: impl FnMut(&Arc<LiveReport>) -> ControlFlow<()>,
    ) -> (u64, usize) {
        let st = self.read();
        let visited = st.reports.visit(order, f);
        (st.seq, visited)
    }

    /// How many reports the replica holds.
    pub fn report_count(&self) -> usize {
        self.read().reports.len()
    }

    pub fn seq(&self) -> u64 {
        self.read().seq
    }

    /// Follows `topic` from the beginning for as long as the bus serves it; becomes ready
    /// once caught up with where the topic stood at start.
    pub async fn follow(self: Arc<Self>, bus: Arc<dyn Bus>, topic: String) -> Result<(), BusError> {
        let on_ready = self.clone();
        bus::replay_and_follow(
            &*bus,
            &[&topic],
            |m| self.apply_message(&m),
            move || {
                info!(
                    entities = on_ready.read().records.len(),
                    "replica caught up"
                );
                on_ready.set_ready();
            },
        )
        .await
    }

    /// Applies one message of the state topic (a record, or a tombstone).
    fn apply_message(&self, m: &bus::Message) {
        let Some(entity) = m.key.as_deref().and_then(|k| EntityId::parse(k).ok()) else {
            warn!(
                offset = m.offset,
                "state message without a valid key skipped"
            );
            return;
        };
        let record = match m
            .payload
            .as_deref()
            .map(serde_json::from_slice::<StateRecord>)
        {
            Some(Ok(r)) => Some(r),
            Some(Err(e)) => {
                warn!(%entity, error = %e, "unreadable state record skipped");
                return;
            }
            None => None,
        };
        if self.apply(entity, record).is_some() {
            metrics::counter!("ioc_replica_changes_total").increment(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::LocalId;

    fn rec(id: &str, layer: Layer, lon: f64, lat: f64, v: f64) -> StateRecord {
        let mut properties = serde_json::Map::new();
        properties.insert("v".into(), v.into());
        StateRecord {
            entity: EntityId::parse(id).unwrap(),
            layer,
            geometry: geojson::Geometry::new(geojson::Value::Point(vec![lon, lat])),
            bbox: [lon, lat, lon, lat],
            units: vec![LocalId::parse("u", "hg").unwrap()],
            updated: None,
            properties,
            applied: Default::default(),
            core: serde_json::Value::Null,
        }
    }

    fn q(layers: &[Layer], bbox: Option<[f64; 4]>) -> Query {
        Query {
            layers: layers.iter().copied().collect(),
            bbox,
            unit: None,
            cameras: Default::default(),
            sensitive: Default::default(),
            ..Default::default()
        }
    }

    fn square(id: &str, layer: Layer, w: f64, s: f64, e: f64, n: f64) -> StateRecord {
        let mut r = rec(id, layer, w, s, 0.0);
        r.geometry = geojson::Geometry::new(geojson::Value::Polygon(vec![vec![
            vec![w, s],
            vec![e, s],
            vec![e, n],
            vec![w, n],
            vec![w, s],
        ]]));
        r.bbox = [w, s, e, n];
        r
    }

    #[test]
    fn near_lists_what_reaches_the_disc_nearest_first_with_distances() {
        let r = Replica::new(100);
        // 0.001° of latitude is about 111 m.
        for (id, dlat) in [
            ("station:far", 0.02),
            ("station:b", 0.002),
            ("station:a", 0.001),
        ] {
            r.apply(
                EntityId::parse(id).unwrap(),
                Some(rec(id, Layer::Salinity, 105.0, 9.0 + dlat, 1.0)),
            );
        }
        let mut query = q(&[Layer::Salinity], None);
        query.near = Some(Near::new(105.0, 9.0, 500.0).unwrap());
        let (_, hits) = r.hits(&query, 10);
        let got: Vec<(&str, i64)> = hits
            .iter()
            .map(|h| {
                (
                    h.record.entity.as_str(),
                    h.distance_m.unwrap().round() as i64,
                )
            })
            .collect();
        assert_eq!(got, [("station:a", 111), ("station:b", 222)]);
        assert_eq!(
            hits[0].to_feature().property("distance_m"),
            Some(&serde_json::json!(111.0))
        );
        // The limit keeps the nearest; a bbox elsewhere leaves nothing.
        assert_eq!(r.hits(&query, 1).1.len(), 1);
        assert_eq!(r.hits(&query, 1).1[0].record.entity.as_str(), "station:a");
        query.bbox = Some([106.0, 10.0, 107.0, 11.0]);
        assert!(r.hits(&query, 10).1.is_empty());
        // A change is matched the same way.
        query.bbox = None;
        assert!(query.matches(&rec("station:c", Layer::Salinity, 105.0, 9.003, 1.0)));
        assert!(!query.matches(&rec("station:d", Layer::Salinity, 105.0, 9.006, 1.0)));
    }

    #[test]
    fn a_limit_keeps_the_first_by_id_or_the_nearest() {
        let r = Replica::new(1000);
        for i in (0..50).rev() {
            let id = format!("station:s{i:02}");
            r.apply(
                EntityId::parse(&id).unwrap(),
                Some(rec(&id, Layer::Salinity, 105.0 + i as f64 * 1e-4, 9.0, 1.0)),
            );
        }
        let ids = |q: &Query, n| -> Vec<String> {
            r.hits(q, n)
                .1
                .iter()
                .map(|h| h.record.entity.to_string())
                .collect()
        };
        let mut query = q(&[Layer::Salinity], Some([104.0, 8.0, 106.0, 10.0]));
        assert_eq!(
            ids(&query, 3),
            ["station:s00", "station:s01", "station:s02"]
        );
        assert!(ids(&query, 0).is_empty());
        assert_eq!(ids(&query, 500).len(), 50);
        query.near = Some(Near::new(105.0049, 9.0, 5_000.0).unwrap());
        assert_eq!(
            ids(&query, 3),
            ["station:s49", "station:s48", "station:s47"]
        );
    }

    #[test]
    fn within_a_unit_a_zone_or_a_polygon_keeps_what_lies_in_it() {
        let r = Replica::new(100);
        r.apply(
            EntityId::parse("unit:west").unwrap(),
            Some(square("unit:west", Layer::Units, 105.0, 9.0, 105.5, 9.5)),
        );
        r.apply(
            EntityId::parse("zone:z1").unwrap(),
            Some(square("zone:z1", Layer::Zones, 105.4, 9.4, 106.0, 10.0)),
        );
        for (id, lon, lat) in [
            ("station:in", 105.2, 9.2),
            ("station:both", 105.45, 9.45),
            ("station:out", 105.8, 9.2),
        ] {
            r.apply(
                EntityId::parse(id).unwrap(),
                Some(rec(id, Layer::Salinity, lon, lat, 1.0)),
            );
        }
        let ids = |w: Arc<Within>| -> Vec<String> {
            let mut query = q(&[Layer::Salinity], None);
            query.within = Some(w);
            r.snapshot(&query, 10)
                .1
                .iter()
                .map(|r| r.entity.to_string())
                .collect()
        };
        let all = |_: &StateRecord| true;
        let unit = r
            .resolve_within(&WithinSpec::Unit("west".into()), all)
            .unwrap();
        assert_eq!(ids(unit), ["station:both", "station:in"]);
        let zone = r
            .resolve_within(&WithinSpec::Zone("z1".into()), all)
            .unwrap();
        assert_eq!(ids(zone), ["station:both"]);
        let WithinSpec::Shape(poly) = WithinSpec::parse(
            r#"{"type":"Polygon","coordinates":[[[105.7,9.1],[105.9,9.1],[105.9,9.3],[105.7,9.3],[105.7,9.1]]]}"#,
        )
        .unwrap() else {
            panic!("a shape")
        };
        assert_eq!(ids(Arc::new(poly)), ["station:out"]);
        // Unknown and not allowed read the same.
        let unknown = r
            .resolve_within(&WithinSpec::Zone("nope".into()), all)
            .unwrap_err();
        let hidden = r
            .resolve_within(&WithinSpec::Zone("z1".into()), |r| r.layer != Layer::Zones)
            .unwrap_err();
        assert_eq!(unknown.field, "within");
        assert_eq!(hidden.reason.replace("z1", "nope"), unknown.reason);
    }

    #[test]
    fn sensitive_reports_and_their_alerts_show_only_to_those_who_may_see_them() {
        let police = model::LocalId::parse("a", "hg-ca").unwrap();
        let env = model::LocalId::parse("a", "hg-stnmt").unwrap();
        let mut overdue = rec("alert:o", Layer::Alerts, 105.47, 9.78, 0.0);
        overdue.properties.insert("sensitive".into(), true.into());
        overdue.properties.insert("agency".into(), "hg-ca".into());
        let mut report = rec("report:r", Layer::Reports, 105.47, 9.78, 0.0);
        report
            .properties
            .insert("service_code".into(), "order.disturbance".into());
        report.properties.insert("agency".into(), "hg-ca".into());
        let lighting = {
            let mut r = rec("report:l", Layer::Reports, 105.47, 9.78, 0.0);
            r.properties
                .insert("service_code".into(), "infra.lighting".into());
            r
        };
        let scoped = |layer, scope| {
            let mut query = q(&[layer], None);
            query.sensitive = scope;
            query
        };
        for (r, layer) in [(&overdue, Layer::Alerts), (&report, Layer::Reports)] {
            assert!(
                !q(&[layer], None).matches(r),
                "the default scope sees nothing sensitive"
            );
            assert!(!scoped(layer, SensitiveScope::Agency(env.clone())).matches(r));
            assert!(scoped(layer, SensitiveScope::Agency(police.clone())).matches(r));
            assert!(scoped(layer, SensitiveScope::All).matches(r));
        }
        assert!(q(&[Layer::Reports], None).matches(&lighting));
        assert!(q(&[Layer::Alerts], None).matches(&rec(
            "alert:x",
            Layer::Alerts,
            105.47,
            9.78,
            0.0
        )));
    }

    #[test]
    fn cameras_show_only_to_those_whose_scope_holds_their_group() {
        let cam = |id: &str, group: &str| {
            let mut r = rec(id, Layer::Cameras, 105.47, 9.78, 0.0);
            r.properties.insert("group".into(), group.into());
            r
        };
        let police = cam("camera:p", "police");
        let school = cam("camera:s", "school:lx-th-a");
        let mut query = q(&[Layer::Cameras], None);
        assert!(!query.matches(&police), "the default scope sees no camera");
        query.cameras.police = true;
        assert!(query.matches(&police) && !query.matches(&school));
        query.cameras.schools =
            model::camera::SchoolScope::One(model::LocalId::parse("id", "lx-th-a").unwrap());
        assert!(query.matches(&school));
        query.cameras.schools =
            model::camera::SchoolScope::One(model::LocalId::parse("id", "lx-th-b").unwrap());
        assert!(!query.matches(&school));
        // Other layers are not affected by the camera scope.
        let station = rec("station:x", Layer::Salinity, 105.47, 9.78, 1.0);
        assert!(q(&[Layer::Salinity], None).matches(&station));
    }

    #[test]
    fn alerts_about_a_camera_show_only_to_those_who_may_see_the_camera() {
        let alert = |id: &str, group: Option<&str>| {
            let mut r = rec(id, Layer::Alerts, 105.47, 9.78, 0.0);
            if let Some(g) = group {
                r.properties.insert("camera_group".into(), g.into());
            }
            r
        };
        let mut operator = q(&[Layer::Alerts], None);
        operator.cameras = model::CameraScope {
            police: true,
            traffic: true,
            public_place: true,
            schools: model::camera::SchoolScope::None,
        };
        let school_down = alert("alert:s", Some("school:lx-th-a"));
        assert!(operator.matches(&alert("alert:p", Some("police"))));
        assert!(
            !operator.matches(&school_down),
            "a school camera revealed by its alert"
        );
        assert!(operator.matches(&alert("alert:salinity", None)));
        let mut school = q(&[Layer::Alerts], None);
        school.cameras.schools =
            model::camera::SchoolScope::One(model::LocalId::parse("id", "lx-th-a").unwrap());
        assert!(school.matches(&school_down));
        assert!(!school.matches(&alert("alert:garbled", Some("??"))));
    }

    #[test]
    fn snapshots_filter_by_layer_bbox_and_unit() {
        let r = Replica::new(100);
        r.apply(
            EntityId::parse("station:a").unwrap(),
            Some(rec("station:a", Layer::Salinity, 105.5, 9.8, 1.0)),
        );
        r.apply(
            EntityId::parse("station:b").unwrap(),
            Some(rec("station:b", Layer::AirQuality, 106.4, 10.4, 1.0)),
        );
        let (seq, all) = r.snapshot(&q(&[Layer::Salinity, Layer::AirQuality], None), 100);
        assert_eq!((seq, all.len()), (2, 2));
        let (_, west) = r.snapshot(
            &q(
                &[Layer::Salinity, Layer::AirQuality],
                Some([105.0, 9.5, 106.0, 10.0]),
            ),
            100,
        );
        assert_eq!(west.len(), 1);
        assert_eq!(west[0].entity.as_str(), "station:a");
        assert_eq!(r.snapshot(&q(&[Layer::Units], None), 100).1.len(), 0);
        let mut by_unit = q(&[Layer::Salinity], None);
        by_unit.unit = Some("tg".into());
        assert!(r.snapshot(&by_unit, 100).1.is_empty());
    }

    #[test]
    fn unchanged_records_do_not_bump_the_sequence() {
        let r = Replica::new(100);
        let e = EntityId::parse("station:a").unwrap();
        assert_eq!(
            r.apply(
                e.clone(),
                Some(rec("station:a", Layer::Salinity, 105.5, 9.8, 1.0))
            ),
            Some(1)
        );
        assert_eq!(
            r.apply(
                e.clone(),
                Some(rec("station:a", Layer::Salinity, 105.5, 9.8, 1.0))
            ),
            None
        );
        assert_eq!(r.apply(e.clone(), None), Some(2));
        assert_eq!(r.apply(e, None), None);
    }

    #[test]
    fn changes_since_coalesces_and_forgets_beyond_its_memory() {
        let r = Replica::new(3);
        let e = |s: &str| EntityId::parse(s).unwrap();
        for (i, id) in ["station:a", "station:b", "station:a", "station:c"]
            .iter()
            .enumerate()
        {
            r.apply(e(id), Some(rec(id, Layer::Salinity, 105.5, 9.8, i as f64)));
        }
        let (seq, changes) = r.changes_since(1).unwrap();
        assert_eq!(seq, 4);
        let ids: Vec<_> = changes.iter().map(|c| c.entity.as_str()).collect();
        assert_eq!(ids, vec!["station:b", "station:a", "station:c"]);
        assert!(r.changes_since(0).is_none(), "seq 1 fell out of memory");
        assert_eq!(r.changes_since(4).unwrap().1.len(), 0);
        assert!(
            r.changes_since(9).is_none(),
            "from the future (another epoch)"
        );
    }
}
