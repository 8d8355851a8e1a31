//! The report book: every field report's current state, folded from `ioc.reports` (the record
//! of truth), with what the core derives from it: the overdue flag, likely duplicates (same
//! category, close in space and time), and per-unit counts for leaders (open, overdue,
//! resolved, resolved on time).
//!
//! Duplicates form clusters around the first report of a matter: a new report that matches
//! any report of a cluster joins it, pointing at the cluster's first report, which lists its
//! followers. So a flooded street reported by 500 people changes two records per new report
//! (the new one and the first), not 500.
//!
//! Pure logic: the caller feeds events and clock ticks and publishes the records of the
//! reports and units it is told changed. The book is rebuilt from the topic at every start,
//! so it holds no state of its own that a crash could lose.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Duration, FixedOffset, NaiveDate};
use model::geoindex::BoxIndex;
use model::indicator::period::vietnam_date;
use model::report::life::{Applied, DuplicateRule};
use model::report::{Report, ReportCreated, ReportTransition};
use model::{EntityId, Envelope, EventKind, FieldError, Layer, LocalId, StateRecord};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use tracing::warn;

use crate::alerts::Observation;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReportsConfig {
    /// Closed, resolved and rejected reports stay live (map layer, Open311 answers, unit
    /// counts) this many days after their last step; the history store keeps them for good.
    pub keep_closed_days: u32,
    /// Likely duplicates: same category within this many metres and hours.
    pub duplicates: DuplicateRule,
}

impl Default for ReportsConfig {
    fn default() -> Self {
        Self {
            keep_closed_days: 90,
            duplicates: DuplicateRule::default(),
        }
    }
}

/// Per-unit counts of the reports the book holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitCounts {
    pub open: i64,
    pub overdue: i64,
    pub resolved: i64,
    pub resolved_on_time: i64,
}

impl UnitCounts {
    fn add(&mut self, o: &UnitCounts, sign: i64) {
        self.open += sign * o.open;
        self.overdue += sign * o.overdue;
        self.resolved += sign * o.resolved;
        self.resolved_on_time += sign * o.resolved_on_time;
    }

    /// As shown on the unit: counts and the on-time percentage (none before any is resolved).
    pub fn to_json(self) -> Value {
        let pct = (self.resolved > 0)
            .then(|| (1000.0 * self.resolved_on_time as f64 / self.resolved as f64).round() / 10.0);
        json!({
            "open": self.open,
            "overdue": self.overdue,
            "resolved": self.resolved,
            "resolved_on_time": self.resolved_on_time,
            "on_time_pct": pct,
        })
    }
}

struct Entry {
    report: Report,
    /// Who filed it (may reopen); kept off the map.
    reporter: String,
    /// The first report of the cluster this one joined as a likely duplicate.
    duplicate_of: Option<LocalId>,
    /// On a cluster's first report: the reports that joined it.
    followers: BTreeSet<LocalId>,
    overdue: bool,
}

/// A cluster's first report lists at most this many followers on the map (and says how many
/// there are in all).
const LISTED_FOLLOWERS: usize = 50;

impl Entry {
    fn counts(&self) -> UnitCounts {
        let on_time = self.report.resolved_on_time();
        UnitCounts {
            open: i64::from(self.report.is_open()),
            overdue: i64::from(self.overdue),
            resolved: i64::from(on_time.is_some()),
            resolved_on_time: i64::from(on_time == Some(true)),
        }
    }
}

/// What changed: reports to republish and units whose counts moved.
#[derive(Debug, Default, PartialEq)]
pub struct Changed {
    pub reports: BTreeSet<LocalId>,
    pub units: BTreeSet<LocalId>,
    /// Reports that left the book (tombstones).
    pub removed: Vec<LocalId>,
    /// (unit, Vietnam day) whose report flows moved: the derived indicators of those days.
    pub days: BTreeSet<(LocalId, NaiveDate)>,
}

/// Reports that came in, were resolved, and were resolved by their deadline, in one unit
/// on one day (Vietnam time). Kept for the whole record, not only for the reports still in
/// the book: the derived indicators count every report of a period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flow {
    pub received: u64,
    pub resolved: u64,
    pub resolved_on_time: u64,
}

impl Changed {
    pub fn is_empty(&self) -> bool {
        self.reports.is_empty()
            && self.units.is_empty()
            && self.removed.is_empty()
            && self.days.is_empty()
    }
}

#[derive(Default)]
pub struct ReportBook {
    config: ReportsConfig,
    reports: HashMap<LocalId, Entry>,
    index: BoxIndex<LocalId>,
    counts: HashMap<LocalId, UnitCounts>,
    /// Daily flows per unit, over the whole record.
    flows: BTreeMap<(LocalId, NaiveDate), Flow>,
}

impl ReportBook {
    pub fn new(config: ReportsConfig) -> Self {
        Self {
            config,
            ..Default::default()
        }
    }

    pub fn len(&self) -> usize {
        self.reports.len()
    }

    pub fn is_empty(&self) -> bool {
        self.reports.is_empty()
    }

    pub fn get(&self, id: &LocalId) -> Option<&Report> {
        self.reports.get(id).map(|e| &e.report)
    }

    pub fn ids(&self) -> impl Iterator<Item = &LocalId> {
        self.reports.keys()
    }

    pub fn counts(&self, unit: &LocalId) -> UnitCounts {
        self.counts.get(unit).copied().unwrap_or_default()
    }

    /// Adds (`sign` 1) or takes away (-1) a report's share of its units' daily flows. Only
    /// events move flows; a closed report leaving the book keeps its share.
    fn flow(&mut self, id: &LocalId, sign: i64, changed: &mut Changed) {
        let Some(e) = self.reports.get(id) else {
            return;
        };
        let r = &e.report;
        let received = vietnam_date(r.requested.to_utc());
        let resolved = r
            .resolved_at
            .map(|t| (vietnam_date(t.to_utc()), r.resolved_on_time() == Some(true)));
        let add = |n: &mut u64| *n = n.saturating_add_signed(sign);
        for u in &r.units {
            let f = self.flows.entry((u.clone(), received)).or_default();
            add(&mut f.received);
            changed.days.insert((u.clone(), received));
            if let Some((day, on_time)) = resolved {
                let f = self.flows.entry((u.clone(), day)).or_default();
                add(&mut f.resolved);
                if on_time {
                    add(&mut f.resolved_on_time);
                }
                changed.days.insert((u.clone(), day));
            }
        }
    }

    /// The flows of `unit` over the days `first..=last`.
    pub fn flows(&self, unit: &LocalId, first: NaiveDate, last: NaiveDate) -> Flow {
        let mut out = Flow::default();
        for (_, f) in self
            .flows
            .range((unit.clone(), first)..=(unit.clone(), last))
        {
            out.received += f.received;
            out.resolved += f.resolved;
            out.resolved_on_time += f.resolved_on_time;
        }
        out
    }

    /// Every (unit, day) with a flow.
    pub fn flow_days(&self) -> impl Iterator<Item = &(LocalId, NaiveDate)> {
        self.flows.keys()
    }

    /// Adds (`sign` 1) or takes away (-1) a report's share of its units' counts.
    fn count(&mut self, id: &LocalId, sign: i64, changed: &mut Changed) {
        let Some(e) = self.reports.get(id) else {
            return;
        };
        let c = e.counts();
        for u in &e.report.units {
            self.counts.entry(u.clone()).or_default().add(&c, sign);
            changed.units.insert(u.clone());
        }
    }

    /// Applies one event of the reports topic. `Err` for an event that cannot be read (the
    /// caller dead-letters it); a stale event (replay, a race's loser) changes nothing.
    pub fn apply(
        &mut self,
        env: &Envelope,
        now: DateTime<FixedOffset>,
        changed: &mut Changed,
    ) -> Result<(), FieldError> {
        match env.kind {
            EventKind::ReportCreated => {
                let c: ReportCreated = env.data_as()?;
                if self.reports.contains_key(&c.id) {
                    return Ok(()); // a replay
                }
                let report = Report::created(&c);
                let id = c.id.clone();
                let p = [report.lon, report.lat, report.lon, report.lat];
                let duplicate_of = self.cluster_for(&report);
                if let Some(first) = &duplicate_of {
                    if let Some(other) = self.reports.get_mut(first) {
                        other.followers.insert(id.clone());
                        changed.reports.insert(first.clone());
                    }
                }
                let overdue = report.overdue(now);
                self.reports.insert(
                    id.clone(),
                    Entry {
                        report,
                        reporter: c.reporter,
                        duplicate_of,
                        followers: BTreeSet::new(),
                        overdue,
                    },
                );
                self.index.insert(id.clone(), p);
                self.count(&id, 1, changed);
                self.flow(&id, 1, changed);
                changed.reports.insert(id);
            }
            EventKind::ReportTransition => {
                let t: ReportTransition = env.data_as()?;
                if !self.reports.contains_key(&t.report) {
                    return Err(FieldError::new(
                        "report",
                        format!("{} has no report.created before it", t.report),
                    ));
                }
                self.count(&t.report, -1, changed);
                self.flow(&t.report, -1, changed);
                let e = self.reports.get_mut(&t.report).expect("checked above");
                match e.report.apply(&t) {
                    Applied::Yes => {
                        e.overdue = e.report.overdue(now);
                        changed.reports.insert(t.report.clone());
                    }
                    Applied::Stale => {}
                    other => warn!(report = %t.report, ?other, "report event not applied"),
                }
                self.count(&t.report, 1, changed);
                self.flow(&t.report, 1, changed);
            }
            _ => {}
        }
        Ok(())
    }

    /// The cluster a new report `r` joins: among the reports likely to be the same matter
    /// (see [`DuplicateRule`]), the first report of the earliest cluster; none if nothing
    /// matches.
    fn cluster_for(&self, r: &Report) -> Option<LocalId> {
        let rule = self.config.duplicates;
        // Degrees that cover `within_m` in both directions at this latitude.
        let dlat = rule.within_m / 111_000.0;
        let dlon = dlat / r.lat.to_radians().cos().max(0.1);
        let bbox = [r.lon - dlon, r.lat - dlat, r.lon + dlon, r.lat + dlat];
        self.index
            .query(&bbox)
            .filter_map(|id| self.reports.get(id))
            .filter(|e| rule.matches(r, &e.report))
            .filter_map(|e| match &e.duplicate_of {
                Some(first) => self.reports.get(first),
                None => Some(e),
            })
            .min_by(|a, b| {
                (a.report.requested, &a.report.id).cmp(&(b.report.requested, &b.report.id))
            })
            .map(|e| e.report.id.clone())
    }

    /// The clock: overdue flags that flip, and closed reports that leave the book.
    pub fn tick(&mut self, now: DateTime<FixedOffset>) -> Changed {
        let mut changed = Changed::default();
        let flips: Vec<LocalId> = self
            .reports
            .iter()
            .filter(|(_, e)| e.overdue != e.report.overdue(now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in flips {
            self.count(&id, -1, &mut changed);
            if let Some(e) = self.reports.get_mut(&id) {
                e.overdue = e.report.overdue(now);
            }
            self.count(&id, 1, &mut changed);
            changed.reports.insert(id);
        }
        let keep = Duration::days(i64::from(self.config.keep_closed_days));
        let gone: Vec<LocalId> = self
            .reports
            .iter()
            .filter(|(_, e)| !e.report.is_open() && e.report.updated + keep < now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            self.count(&id, -1, &mut changed);
            if let Some(e) = self.reports.remove(&id) {
                // Its followers stand alone from now on; its cluster forgets it.
                for d in &e.followers {
                    if let Some(other) = self.reports.get_mut(d) {
                        other.duplicate_of = None;
                        changed.reports.insert(d.clone());
                    }
                }
                if let Some(other) = e.duplicate_of.and_then(|f| self.reports.get_mut(&f)) {
                    other.followers.remove(&id);
                    changed.reports.insert(other.report.id.clone());
                }
            }
            self.index.remove(&id);
            changed.reports.remove(&id);
            changed.removed.push(id);
        }
        changed
    }

    /// The report's state record (the `reports` layer).
    pub fn record(&self, id: &LocalId) -> Option<StateRecord> {
        let e = self.reports.get(id)?;
        let r = &e.report;
        let mut properties = match serde_json::to_value(r) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        };
        properties.insert("name".into(), r.service_name.clone().into());
        properties.insert("status".into(), r.state.open311().into());
        properties.insert("state_vi".into(), r.state.name_vi().into());
        properties.insert("status_notes".into(), r.status_notes().into());
        properties.insert("overdue".into(), e.overdue.into());
        // Likely duplicates: a follower shows its cluster's first report, a first report its
        // followers (the first LISTED_FOLLOWERS of them, and how many in all).
        let (listed, total): (Vec<Value>, usize) = match &e.duplicate_of {
            Some(first) => (vec![first.to_string().into()], 1),
            None => (
                e.followers
                    .iter()
                    .take(LISTED_FOLLOWERS)
                    .map(|d| d.to_string().into())
                    .collect(),
                e.followers.len(),
            ),
        };
        properties.insert("duplicates".into(), listed.into());
        properties.insert("duplicates_total".into(), total.into());
        properties.insert(
            "duplicate_of".into(),
            e.duplicate_of
                .as_ref()
                .map_or(Value::Null, |f| f.to_string().into()),
        );
        Some(StateRecord {
            entity: EntityId::new(model::EntityKind::Report, id),
            layer: Layer::Reports,
            geometry: geojson::Geometry::new(geojson::Value::Point(vec![r.lon, r.lat])),
            bbox: [r.lon, r.lat, r.lon, r.lat],
            units: r.units.clone(),
            updated: Some(r.updated),
            properties,
            applied: Default::default(),
            core: json!({"reporter": e.reporter}),
        })
    }

    /// The overdue rule's view of a report (an alert while it is open past its deadline).
    pub fn observation(&self, id: &LocalId) -> Option<Observation> {
        let e = self.reports.get(id)?;
        let r = &e.report;
        // The report's service and id, never its text: whoever sees the alert may open the
        // report if they may see it, and nobody learns more of it from the alert.
        let mut o = Observation::new(
            "report_overdue",
            EntityId::new(model::EntityKind::Report, id),
            format!("{} ({})", r.service_name, r.id),
            r.agency.clone(),
            e.overdue,
        );
        o.sensitive = model::report::is_sensitive(&r.service_code);
        o.title = "Phản ánh quá hạn xử lý".into();
        o.detail = format!(
            "{} ({}), hạn {}, {}",
            r.service_name,
            r.id,
            r.deadline
                .with_timezone(&FixedOffset::east_opt(7 * 3600).expect("UTC+7"))
                .format("%H:%M %d/%m/%Y"),
            r.agency_name.as_deref().unwrap_or("chưa chuyển đơn vị")
        );
        Some(o)
    }

    /// Where a report is (for alerts placed at it).
    pub fn place(&self, id: &LocalId) -> Option<((f64, f64), Vec<LocalId>)> {
        self.reports
            .get(id)
            .map(|e| ((e.report.lon, e.report.lat), e.report.units.clone()))
    }
}

/// The overdue rule's view of a report that left the book: not overdue.
pub fn no_longer_overdue(id: &LocalId) -> Observation {
    Observation::new(
        "report_overdue",
        EntityId::new(model::EntityKind::Report, id),
        id.to_string(),
        None,
        false,
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use chrono::Utc;
    use model::report::life::{Contact, Routing};
    use model::report::{Actor, Step};
    use uuid::Uuid;

    fn t(s: &str) -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339(s).unwrap()
    }

    fn id(s: &str) -> LocalId {
        LocalId::parse("id", s).unwrap()
    }

    pub(crate) fn created(n: &str, lat: f64, at: &str) -> Envelope {
        let c = ReportCreated {
            id: id(n),
            event_id: Uuid::now_v7(),
            service_code: "infra.lighting".into(),
            description: "Đèn đường hỏng cả dãy".into(),
            lat,
            lon: 105.47,
            address: None,
            media: vec![],
            attributes: Default::default(),
            contact: Contact::default(),
            reporter: "citizen-1".into(),
            reporter_role: None,
            requested: t(at),
            routing: Routing {
                units: vec![id("hg-vi-thanh"), id("hg")],
                unit_names: vec![],
                agency: Some(id("hg-vt-qldt")),
                agency_name: None,
                rule: "r".into(),
                level: None,
            },
            deadline_h: 72,
        };
        Envelope::new(
            EventKind::ReportCreated,
            EntityId::new(model::EntityKind::Report, &c.id),
            c.requested,
            Utc::now(),
            "test",
            serde_json::to_value(&c).unwrap(),
        )
    }

    pub(crate) fn step(book: &ReportBook, n: &str, s: Step, at: &str) -> Envelope {
        let tr = book
            .get(&id(n))
            .unwrap()
            .transition(s, Actor::Operator, "op", "operator", None, t(at))
            .unwrap();
        Envelope::new(
            EventKind::ReportTransition,
            EntityId::new(model::EntityKind::Report, &tr.report),
            tr.at,
            Utc::now(),
            "test",
            serde_json::to_value(&tr).unwrap(),
        )
    }

    #[test]
    fn duplicates_link_both_ways_and_counts_follow_the_life() {
        let mut book = ReportBook::new(ReportsConfig::default());
        let now = t("2026-11-23T10:00:00+07:00");
        let mut ch = Changed::default();
        book.apply(
            &created("pa-1", 9.78, "2026-11-23T08:00:00+07:00"),
            now,
            &mut ch,
        )
        .unwrap();
        book.apply(
            &created("pa-2", 9.7802, "2026-11-23T09:00:00+07:00"),
            now,
            &mut ch,
        )
        .unwrap();
        book.apply(
            &created("pa-3", 9.79, "2026-11-23T09:00:00+07:00"),
            now,
            &mut ch,
        )
        .unwrap();
        let rec = book.record(&id("pa-1")).unwrap();
        assert_eq!(rec.properties["duplicates"], json!(["pa-2"]));
        assert_eq!(
            book.record(&id("pa-2")).unwrap().properties["duplicates"],
            json!(["pa-1"])
        );
        assert_eq!(
            book.record(&id("pa-3")).unwrap().properties["duplicates"],
            json!([])
        );
        assert_eq!(book.counts(&id("hg")).open, 3);

        let resolve = step(
            &book,
            "pa-1",
            Step::Resolve {
                result: "Đã thay bóng".into(),
            },
            "2026-11-23T11:00:00+07:00",
        );
        let mut ch = Changed::default();
        book.apply(&resolve, now, &mut ch).unwrap();
        assert!(ch.units.contains(&id("hg-vi-thanh")));
        // A replay of the same event changes nothing.
        book.apply(&resolve, now, &mut Changed::default()).unwrap();
        let c = book.counts(&id("hg-vi-thanh"));
        assert_eq!((c.open, c.resolved, c.resolved_on_time), (2, 1, 1));
        assert_eq!(c.to_json()["on_time_pct"], json!(100.0));
    }

    #[test]
    fn a_crowd_reporting_one_matter_forms_one_cluster_and_each_report_changes_two_records() {
        let mut book = ReportBook::new(ReportsConfig::default());
        let now = t("2026-11-23T10:00:00+07:00");
        book.apply(
            &created("pa-a", 9.78, "2026-11-23T08:00:00+07:00"),
            now,
            &mut Changed::default(),
        )
        .unwrap();
        // 200 more within a few metres of each other, each matching every earlier one.
        for i in 0..200 {
            let mut ch = Changed::default();
            let n = format!("pa-f{i:03}");
            book.apply(
                &created(&n, 9.78 + f64::from(i) * 1e-6, "2026-11-23T09:00:00+07:00"),
                now,
                &mut ch,
            )
            .unwrap();
            assert_eq!(ch.reports, [id("pa-a"), id(&n)].into_iter().collect());
        }
        let first = book.record(&id("pa-a")).unwrap().properties;
        assert_eq!(first["duplicates_total"], json!(200));
        assert_eq!(
            first["duplicates"].as_array().unwrap().len(),
            LISTED_FOLLOWERS
        );
        assert_eq!(first["duplicate_of"], Value::Null);
        let follower = book.record(&id("pa-f150")).unwrap().properties;
        assert_eq!(follower["duplicates"], json!(["pa-a"]));
        assert_eq!(follower["duplicate_of"], json!("pa-a"));
        // A report near a follower only (40 m on from the last one, 60 m from the first)
        // still joins the same cluster.
        book.apply(
            &created("pa-z", 9.78 + 200e-6 + 0.00036, "2026-11-23T09:30:00+07:00"),
            now,
            &mut Changed::default(),
        )
        .unwrap();
        assert_eq!(
            book.record(&id("pa-z")).unwrap().properties["duplicate_of"],
            json!("pa-a")
        );
    }

    #[test]
    fn the_clock_flags_overdue_and_drops_long_closed_reports() {
        let mut book = ReportBook::new(ReportsConfig::default());
        let now = t("2026-11-23T10:00:00+07:00");
        book.apply(
            &created("pa-1", 9.78, "2026-11-23T08:00:00+07:00"),
            now,
            &mut Changed::default(),
        )
        .unwrap();
        assert!(book.tick(now).is_empty());
        let later = t("2026-11-26T08:01:00+07:00");
        let ch = book.tick(later);
        assert!(ch.reports.contains(&id("pa-1")));
        assert_eq!(book.counts(&id("hg")).overdue, 1);
        assert!(book.observation(&id("pa-1")).unwrap().holds);
        assert_eq!(
            book.record(&id("pa-1")).unwrap().properties["overdue"],
            json!(true)
        );
        let reject = step(
            &book,
            "pa-1",
            Step::Reject {
                reason: "Không thuộc thẩm quyền".into(),
            },
            "2026-11-26T09:00:00+07:00",
        );
        book.apply(&reject, later, &mut Changed::default()).unwrap();
        assert!(
            !book.observation(&id("pa-1")).unwrap().holds,
            "not overdue once rejected"
        );
        assert_eq!(book.counts(&id("hg")).overdue, 0);
        let ch = book.tick(t("2027-03-01T00:00:00+07:00"));
        assert_eq!(ch.removed, vec![id("pa-1")]);
        assert!(book.is_empty());
        assert_eq!(book.counts(&id("hg")), UnitCounts::default());
    }

    #[test]
    fn flows_count_every_report_of_a_day_even_after_it_leaves_the_book() {
        let mut book = ReportBook::new(ReportsConfig {
            keep_closed_days: 1,
            ..ReportsConfig::default()
        });
        let now = t("2026-11-23T10:00:00+07:00");
        let mut ch = Changed::default();
        book.apply(
            &created("pa-1", 9.78, "2026-11-23T08:00:00+07:00"),
            now,
            &mut ch,
        )
        .unwrap();
        // Filed at 23:30 Vietnam time: still the 23rd there, the 23rd in UTC too.
        book.apply(
            &created("pa-2", 9.70, "2026-11-23T23:30:00+07:00"),
            now,
            &mut ch,
        )
        .unwrap();
        let assign = step(
            &book,
            "pa-1",
            Step::Assign {
                agency: "hg-vt-qldt".into(),
            },
            "2026-11-24T08:00:00+07:00",
        );
        book.apply(&assign, now, &mut ch).unwrap();
        let start = step(&book, "pa-1", Step::Start, "2026-11-24T09:00:00+07:00");
        book.apply(&start, now, &mut ch).unwrap();
        let done = step(
            &book,
            "pa-1",
            Step::Resolve {
                result: "Đã thay bóng".into(),
            },
            "2026-11-24T10:00:00+07:00",
        );
        book.apply(&done, now, &mut ch).unwrap();
        let close = step(&book, "pa-1", Step::Close, "2026-11-24T11:00:00+07:00");
        book.apply(&close, now, &mut ch).unwrap();
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let vt = id("hg-vi-thanh");
        let nov = book.flows(&vt, d("2026-11-01"), d("2026-11-30"));
        assert_eq!(
            (nov.received, nov.resolved, nov.resolved_on_time),
            (2, 1, 1)
        );
        assert_eq!(
            book.flows(&vt, d("2026-11-24"), d("2026-11-24")).received,
            0
        );
        // A week later the closed report has left the book; its flows stay.
        book.tick(t("2026-12-01T10:00:00+07:00"));
        assert!(book.get(&id("pa-1")).is_none());
        let nov = book.flows(&vt, d("2026-11-01"), d("2026-11-30"));
        assert_eq!(
            (nov.received, nov.resolved, nov.resolved_on_time),
            (2, 1, 1)
        );
    }
}
