//! The replica's field reports, typed: each `reports`-layer record is decoded into a
//! [`Report`] once, when it changes, and indexed newest-first and by deadline, so a list
//! request walks only what it returns (the newest page, or the open queue) and never
//! deserialises every report the book holds again.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};
use std::ops::ControlFlow;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use model::report::Report;
use model::{EntityId, StateRecord};
use tracing::warn;

/// A live report: its record (as screens get it), the typed report, and who filed it.
#[derive(Debug)]
pub struct LiveReport {
    pub record: Arc<StateRecord>,
    pub report: Report,
    /// `role:subject` of the reporter (never shown to other citizens).
    pub reporter: String,
}

impl LiveReport {
    /// The report a record of the `reports` layer holds; `None` when it does not decode.
    pub fn of(record: Arc<StateRecord>) -> Option<Self> {
        let report: Report =
            serde_json::from_value(serde_json::Value::Object(record.properties.clone())).ok()?;
        let reporter = record.core["reporter"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        Some(Self {
            record,
            report,
            reporter,
        })
    }

    /// Past its deadline and still open, as the core marked it.
    pub fn overdue(&self) -> bool {
        self.record.properties.get("overdue") == Some(&serde_json::Value::Bool(true))
    }
}

/// In which order [`ReportBook::visit`] walks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportOrder {
    /// Every report, newest filed first (ties by id), filed no later than `to` and no
    /// earlier than `from`.
    Newest {
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    },
    /// Open reports only, the earliest deadline first (the queue).
    OpenByDeadline,
    /// Every report, the earliest deadline first.
    AllByDeadline,
}

type Micros = i64;

fn micros(t: DateTime<Utc>) -> Micros {
    t.timestamp_micros()
}

/// The indexes are keyed by the entity id's text, whose smallest value (`""`) bounds ranges.
#[derive(Default)]
pub(crate) struct ReportBook {
    by_id: HashMap<String, Arc<LiveReport>>,
    newest: BTreeSet<(Reverse<Micros>, String)>,
    by_deadline: BTreeSet<(Micros, String)>,
    open_by_deadline: BTreeSet<(Micros, String)>,
}

impl ReportBook {
    fn keys(l: &LiveReport) -> (Micros, Micros) {
        (
            micros(l.report.requested.with_timezone(&Utc)),
            micros(l.report.deadline.with_timezone(&Utc)),
        )
    }

    fn unindex(&mut self, id: &str) {
        if let Some(old) = self.by_id.remove(id) {
            let (filed, due) = Self::keys(&old);
            self.newest.remove(&(Reverse(filed), id.to_string()));
            self.by_deadline.remove(&(due, id.to_string()));
            self.open_by_deadline.remove(&(due, id.to_string()));
        }
    }

    /// Follows one change of a `reports`-layer entity (`None`: removed).
    pub(crate) fn apply(&mut self, entity: &EntityId, record: Option<&Arc<StateRecord>>) {
        let id = entity.to_string();
        self.unindex(&id);
        let Some(record) = record else { return };
        let Some(live) = LiveReport::of(record.clone()) else {
            warn!(%entity, "a reports-layer record that is not a report: not listed");
            return;
        };
        let (filed, due) = Self::keys(&live);
        self.newest.insert((Reverse(filed), id.clone()));
        self.by_deadline.insert((due, id.clone()));
        if live.report.is_open() {
            self.open_by_deadline.insert((due, id.clone()));
        }
        self.by_id.insert(id, Arc::new(live));
    }

    pub(crate) fn get(&self, entity: &EntityId) -> Option<Arc<LiveReport>> {
        self.by_id.get(&entity.to_string()).cloned()
    }

    /// Walks the reports in `order` until `f` breaks; returns how many were visited.
    pub(crate) fn visit(
        &self,
        order: ReportOrder,
        mut f: impl FnMut(&Arc<LiveReport>) -> ControlFlow<()>,
    ) -> usize {
        let mut visited = 0;
        let mut step = |id: &str| -> ControlFlow<()> {
            match self.by_id.get(id) {
                Some(l) => {
                    visited += 1;
                    f(l)
                }
                None => ControlFlow::Continue(()),
            }
        };
        match order {
            ReportOrder::Newest { from, to } => {
                if from > to {
                    return 0;
                }
                // Reverse keys: the newest (largest time) sorts first.
                let start = (Reverse(micros(to)), String::new());
                for (Reverse(t), id) in self.newest.range(start..) {
                    if *t < micros(from) || step(id).is_break() {
                        break;
                    }
                }
            }
            ReportOrder::OpenByDeadline => {
                for (_, id) in &self.open_by_deadline {
                    if step(id).is_break() {
                        break;
                    }
                }
            }
            ReportOrder::AllByDeadline => {
                for (_, id) in &self.by_deadline {
                    if step(id).is_break() {
                        break;
                    }
                }
            }
        }
        visited
    }

    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Duration, FixedOffset};
    use model::report::life::{Contact, Routing};
    use model::report::ReportCreated;
    use model::{Layer, LocalId};

    fn t(s: &str) -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339(s).unwrap()
    }

    /// A report record as the core publishes it, filed `hours` after a fixed time with a
    /// deadline `deadline_h` later.
    fn record(id: &str, hours: i64, deadline_h: u32, open: bool) -> Arc<StateRecord> {
        let c = ReportCreated {
            id: LocalId::parse("id", id).unwrap(),
            event_id: uuid::Uuid::now_v7(),
            service_code: "infra.lighting".into(),
            description: "Đèn đường tắt".into(),
            lat: 9.78,
            lon: 105.47,
            address: None,
            media: vec![],
            attributes: Default::default(),
            contact: Contact::default(),
            reporter: "citizen:c-1".into(),
            reporter_role: Some("citizen".into()),
            requested: t("2026-11-23T08:00:00+07:00") + Duration::hours(hours),
            routing: Routing {
                units: vec![LocalId::parse("id", "hg-vi-thanh").unwrap()],
                unit_names: vec!["Thành phố Vị Thanh".into()],
                agency: Some(LocalId::parse("id", "hg-vt-qldt").unwrap()),
                agency_name: Some("Phòng Quản lý đô thị".into()),
                rule: "*".into(),
                level: None,
            },
            deadline_h,
        };
        let mut r = model::report::Report::created(&c);
        if !open {
            r.state = model::report::ReportState::Closed;
        }
        let serde_json::Value::Object(properties) = serde_json::to_value(&r).unwrap() else {
            panic!("a report serialises to an object")
        };
        Arc::new(StateRecord {
            entity: EntityId::parse(&format!("report:{id}")).unwrap(),
            layer: Layer::Reports,
            geometry: geojson::Geometry::new(geojson::Value::Point(vec![105.47, 9.78])),
            bbox: [105.47, 9.78, 105.47, 9.78],
            units: vec![LocalId::parse("u", "hg-vi-thanh").unwrap()],
            updated: None,
            properties,
            applied: Default::default(),
            core: serde_json::json!({"reporter": "citizen:c-1"}),
        })
    }

    fn walk(book: &ReportBook, order: ReportOrder, stop_after: usize) -> (Vec<String>, usize) {
        let mut seen = Vec::new();
        let visited = book.visit(order, |l| {
            seen.push(l.report.id.to_string());
            if seen.len() >= stop_after {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        (seen, visited)
    }

    #[test]
    fn lists_walk_only_what_they_return_in_their_order() {
        let mut book = ReportBook::default();
        for i in 0..1000 {
            let id = format!("r-{i:04}");
            // Every tenth closed; deadlines shuffled against filing order.
            let rec = record(&id, i, (997 * i as u32) % 500 + 1, i % 10 != 0);
            book.apply(&rec.entity.clone(), Some(&rec));
        }
        assert_eq!(book.len(), 1000);
        let all = ReportOrder::Newest {
            from: DateTime::<Utc>::MIN_UTC,
            to: DateTime::<Utc>::MAX_UTC,
        };
        // The newest page of one visits one report, not the thousand.
        let (newest, visited) = walk(&book, all, 1);
        assert_eq!((newest, visited), (vec!["r-0999".to_string()], 1));
        // A window: filed between hours 100 and 102 after the first.
        let from = (t("2026-11-23T08:00:00+07:00") + Duration::hours(100)).with_timezone(&Utc);
        let (window, visited) = walk(
            &book,
            ReportOrder::Newest {
                from,
                to: from + Duration::hours(2),
            },
            usize::MAX,
        );
        assert_eq!(window, ["r-0102", "r-0101", "r-0100"]);
        assert_eq!(visited, 3, "the walk starts and stops at the window's ends");
        // The open queue: 900 open reports, earliest deadline first, no closed ones.
        let (queue, visited) = walk(&book, ReportOrder::OpenByDeadline, usize::MAX);
        assert_eq!(visited, 900);
        let deadlines: Vec<_> = queue
            .iter()
            .map(|id| {
                let e = EntityId::parse(&format!("report:{id}")).unwrap();
                let l = book.get(&e).unwrap();
                assert!(l.report.is_open());
                l.report.deadline
            })
            .collect();
        assert!(deadlines.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(walk(&book, ReportOrder::AllByDeadline, usize::MAX).1, 1000);
    }

    #[test]
    fn a_change_moves_a_report_between_indexes_and_a_removal_drops_it() {
        let mut book = ReportBook::default();
        let open = record("r-1", 0, 24, true);
        let e = open.entity.clone();
        book.apply(&e, Some(&open));
        assert_eq!(walk(&book, ReportOrder::OpenByDeadline, 10).1, 1);
        // Closed: out of the open queue, still listed.
        book.apply(&e, Some(&record("r-1", 0, 24, false)));
        assert_eq!(walk(&book, ReportOrder::OpenByDeadline, 10).1, 0);
        assert_eq!(walk(&book, ReportOrder::AllByDeadline, 10).1, 1);
        // Reopened with a later deadline: back once, at its new key.
        book.apply(&e, Some(&record("r-1", 0, 48, true)));
        assert_eq!(walk(&book, ReportOrder::OpenByDeadline, 10).1, 1);
        assert_eq!(walk(&book, ReportOrder::AllByDeadline, 10).1, 1);
        book.apply(&e, None);
        assert_eq!(book.len(), 0);
        assert!(book.get(&e).is_none());
        assert_eq!(walk(&book, ReportOrder::AllByDeadline, 10).1, 0);
    }
}
