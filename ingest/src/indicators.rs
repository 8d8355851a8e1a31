//! Indicator intake: figures that agencies and their systems report, as JSON (one value, an
//! array, `{"values": [...]}`, or DHIS2's `dataValueSets` shape with `dataElement`, `orgUnit`,
//! `period`, `value`, `comment`) or CSV with a header (`indicator,unit,period,value,note`, or
//! DHIS2's column names). Every item is checked against the catalogue and the unit tree: the
//! indicator exists, the unit exists, the period is of the indicator's frequency, the value is
//! a plain number, and the sender may report it (an agency its own indicators, for units
//! within its own). A submission is all or nothing: one bad item and nothing is written, every
//! bad item is named by index (and CSV line) and field, and the refused items go to the
//! dead-letter topic. What is accepted is acknowledged only after the bus acknowledged it.
//!
//! Parsing and checking are pure; [`IndicatorIntake::submit`] does the writes.

use std::collections::HashSet;
use std::sync::Arc;

use bus::{Bus, Topics};
use chrono::{DateTime, Utc};
use model::indicator::value::MAX_NOTE;
use model::indicator::{IndicatorEvent, Period, Value};
use model::{Directory, EntityId, EntityKind, Envelope, FieldError, LocalId};
use serde::Serialize;
use serde_json::Value as Json;
use tracing::warn;

use crate::{IngestError, RegistryView};

/// Most values in one submission.
pub const MAX_ITEMS: usize = 10_000;

/// Who is reporting, for what they may report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reporter {
    /// The control room and admins (entering figures on an agency's behalf), and configured
    /// poll sources: any indicator, any unit.
    Any,
    /// An agency, or a system acting for it: its own indicators, for units within its unit.
    Agency(LocalId),
}

/// One item as sent, before checking.
#[derive(Debug, Clone, PartialEq)]
pub struct RawItem {
    pub indicator: Option<String>,
    pub unit: Option<String>,
    pub period: Option<String>,
    pub value: Option<Json>,
    pub note: Option<String>,
    /// The CSV line it came from.
    pub line: Option<usize>,
    /// The item as sent, for its dead letter.
    pub original: Json,
}

/// Why one item was refused.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Refused {
    pub index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    pub errors: Vec<FieldError>,
    /// The sender may not report this item (another agency's indicator or unit).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub forbidden: bool,
}

/// Why one item cannot be written: what is wrong with it, and whether the sender may not
/// report it at all.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    pub errors: Vec<FieldError>,
    pub forbidden: bool,
}

/// The body could not be read as a submission at all.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct Unreadable(pub FieldError);

fn text_of(v: Option<&Json>) -> Option<String> {
    match v? {
        Json::String(s) => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The items of a JSON submission.
pub fn parse_json(body: &Json) -> Result<Vec<RawItem>, Unreadable> {
    let bad = |reason: &str| Unreadable(FieldError::new("body", reason));
    // DHIS2's dataValueSets: defaults for every value at the top.
    let (list, defaults) = match body {
        Json::Array(a) => (a.clone(), None),
        Json::Object(o) if o.contains_key("dataValues") => (
            o.get("dataValues")
                .and_then(Json::as_array)
                .cloned()
                .ok_or_else(|| bad("dataValues must be an array"))?,
            Some(o),
        ),
        Json::Object(o) if o.contains_key("values") => (
            o.get("values")
                .and_then(Json::as_array)
                .cloned()
                .ok_or_else(|| bad("values must be an array"))?,
            None,
        ),
        Json::Object(_) => (vec![body.clone()], None),
        _ => {
            return Err(bad(
                "send a value, an array of values, {\"values\": [...]} or a DHIS2 dataValueSet",
            ))
        }
    };
    let default = |k: &str| defaults.and_then(|d| d.get(k));
    Ok(list
        .into_iter()
        .map(|item| {
            let get = |a: &str, b: &str| item.get(a).or_else(|| item.get(b));
            RawItem {
                indicator: text_of(get("indicator", "dataElement")),
                unit: text_of(get("unit", "orgUnit").or_else(|| default("orgUnit"))),
                period: text_of(get("period", "period").or_else(|| default("period"))),
                value: get("value", "value").cloned(),
                note: text_of(get("note", "comment")),
                line: None,
                original: item,
            }
        })
        .collect())
}

/// The items of a CSV submission (a header row, then one value per row).
pub fn parse_csv(text: &str) -> Result<Vec<RawItem>, Unreadable> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(true)
        .from_reader(text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| Unreadable(FieldError::new("header", e.to_string())))?
        .iter()
        .map(|h| h.to_lowercase())
        .collect();
    let column = |names: &[&str]| header.iter().position(|h| names.contains(&h.as_str()));
    let (i, u, p, v, n) = (
        column(&["indicator", "dataelement"]),
        column(&["unit", "orgunit"]),
        column(&["period"]),
        column(&["value"]),
        column(&["note", "comment"]),
    );
    let missing: Vec<&str> = [("indicator", i), ("unit", u), ("period", p), ("value", v)]
        .iter()
        .filter(|(_, c)| c.is_none())
        .map(|(name, _)| *name)
        .collect();
    if !missing.is_empty() {
        return Err(Unreadable(FieldError::new(
            "header",
            format!("the header needs the columns {}", missing.join(", ")),
        )));
    }
    let mut out = Vec::new();
    for row in reader.records() {
        let row = row.map_err(|e| Unreadable(FieldError::new("body", e.to_string())))?;
        let line = row.position().map(|p| p.line() as usize);
        let cell = |c: Option<usize>| {
            c.and_then(|c| row.get(c))
                .map(str::to_string)
                .filter(|s| !s.is_empty())
        };
        let original: serde_json::Map<String, Json> = header
            .iter()
            .zip(row.iter())
            .map(|(h, c)| (h.clone(), Json::String(c.to_string())))
            .collect();
        out.push(RawItem {
            indicator: cell(i),
            unit: cell(u),
            period: cell(p),
            value: cell(v).map(Json::String),
            note: cell(n),
            line,
            original: Json::Object(original),
        });
    }
    Ok(out)
}

/// A value as a number: a JSON number, or a string in plain machine form. Decimal commas
/// and thousands separators are refused rather than guessed (in Vietnamese "7.085" is seven
/// thousand and eighty-five).
fn number(v: &Json) -> Result<f64, FieldError> {
    let n = match v {
        Json::Number(n) => n.as_f64(),
        Json::String(s) => {
            let s = s.trim();
            if s.contains(',') || s.contains(' ') {
                return Err(FieldError::new(
                    "value",
                    format!("{s:?}: write the number with a decimal point and no thousands separators (99.1, 7085)"),
                ));
            }
            s.parse::<f64>().ok()
        }
        _ => None,
    };
    n.filter(|n| n.is_finite())
        .ok_or_else(|| FieldError::new("value", "must be a number"))
}

/// Is `unit` at or under `top` in the unit tree?
fn within(dir: &Directory, unit: &LocalId, top: &LocalId) -> bool {
    let mut cur = Some(unit.clone());
    for _ in 0..16 {
        match cur {
            Some(u) if &u == top => return true,
            Some(u) => cur = dir.units.get(&u).and_then(|x| x.parent.clone()),
            None => return false,
        }
    }
    false
}

/// Checks one item: the value to write, or every fault.
pub fn check(
    dir: &Directory,
    reporter: &Reporter,
    item: &RawItem,
    by: &str,
    now: DateTime<Utc>,
) -> Result<Value, Fault> {
    let mut errors = Vec::new();
    let mut forbidden = false;
    let required = |v: &Option<String>, field: &str, errors: &mut Vec<FieldError>| {
        if v.as_deref().is_none_or(|s| s.trim().is_empty()) {
            errors.push(FieldError::new(field, "is required"));
        }
    };
    required(&item.indicator, "indicator", &mut errors);
    required(&item.unit, "unit", &mut errors);
    required(&item.period, "period", &mut errors);
    let indicator = item.indicator.as_deref().and_then(|c| {
        let code = LocalId::parse("indicator", c.trim())
            .map_err(|e| errors.push(e))
            .ok()?;
        match dir.indicators.get(&code) {
            Some(i) => Some(i),
            None => {
                errors.push(FieldError::new(
                    "indicator",
                    format!("{code} is not in the catalogue"),
                ));
                None
            }
        }
    });
    let unit = item.unit.as_deref().and_then(|u| {
        let id = LocalId::parse("unit", u.trim())
            .map_err(|e| errors.push(e))
            .ok()?;
        if dir.units.contains_key(&id) {
            Some(id)
        } else {
            errors.push(FieldError::new(
                "unit",
                format!("{id} is not a unit in the registry"),
            ));
            None
        }
    });
    // The core computes a derived indicator from its own streams: a pushed figure would
    // stand in for the computed one, so it is refused, not stored beside it.
    if let Some(ind) = indicator.filter(|i| i.source == model::indicator::Source::Derived) {
        errors.push(FieldError::new(
            "indicator",
            format!(
                "{} is computed by the core from its own streams (source = derived); it is not reported",
                ind.code
            ),
        ));
    }
    // A unit reports only the indicators of its tier (a commune does not send a district's
    // figure; the district's comes from its own report or its communes').
    if let (Some(ind), Some(u)) = (indicator, unit.as_ref().and_then(|u| dir.units.get(u))) {
        let tier = model::indicator::Tier::of_level(&u.level);
        if !ind.levels.contains(&tier) {
            let levels: Vec<&str> = ind.levels.iter().map(|t| t.as_str()).collect();
            errors.push(FieldError::new(
                "unit",
                format!(
                    "{} is a {} unit; {} is reported by {} units",
                    u.id,
                    tier.as_str(),
                    ind.code,
                    levels.join(", ")
                ),
            ));
        }
    }
    let period = match (item.period.as_deref(), indicator) {
        (Some(p), Some(i)) => Period::parse_for("period", p, i.frequency)
            .map_err(|e| errors.push(e))
            .ok(),
        (Some(p), None) => Period::parse("period", p).map_err(|e| errors.push(e)).ok(),
        _ => None,
    };
    let value = match &item.value {
        None | Some(Json::Null) => {
            errors.push(FieldError::new("value", "is required"));
            None
        }
        Some(v) => number(v).map_err(|e| errors.push(e)).ok(),
    };
    let note = item
        .note
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty());
    if let Some(reason) = note.and_then(|n| model::text::refuse_text(n, MAX_NOTE)) {
        errors.push(FieldError::new("note", reason));
    }
    if let (Reporter::Agency(agency), Some(ind)) = (reporter, indicator) {
        if &ind.agency != agency {
            forbidden = true;
            errors.push(FieldError::new(
                "indicator",
                format!(
                    "{} is reported by {}, not by {agency}",
                    ind.code, ind.agency
                ),
            ));
        } else if let Some(u) = &unit {
            let home = dir.agencies.get(agency).and_then(|a| a.unit.clone());
            if !home.is_some_and(|h| within(dir, u, &h)) {
                forbidden = true;
                errors.push(FieldError::new(
                    "unit",
                    format!("{u} is outside the units {agency} reports for"),
                ));
            }
        }
    }
    match (indicator, unit, period, value) {
        (Some(i), Some(unit), Some(period), Some(value)) if errors.is_empty() => Ok(Value {
            indicator: i.code.clone(),
            unit,
            period,
            value,
            note: note.map(model::text::nfc),
            by: by.to_string(),
            at: now.fixed_offset(),
        }),
        _ => Err(Fault { errors, forbidden }),
    }
}

/// Checks a whole submission: the values, or every refused item. The same indicator, unit
/// and period twice in one submission is a mistake, not a correction.
pub fn check_all(
    dir: &Directory,
    reporter: &Reporter,
    items: &[RawItem],
    by: &str,
    now: DateTime<Utc>,
) -> Result<Vec<Value>, Vec<Refused>> {
    let mut good = Vec::with_capacity(items.len());
    let mut refused = Vec::new();
    let mut seen = HashSet::new();
    for (index, item) in items.iter().enumerate() {
        match check(dir, reporter, item, by, now) {
            Ok(v) => {
                if !seen.insert((v.indicator.clone(), v.unit.clone(), v.period)) {
                    refused.push(Refused {
                        index,
                        line: item.line,
                        errors: vec![FieldError::new(
                            "period",
                            format!(
                                "{} for {} in {} is already in this submission",
                                v.indicator, v.unit, v.period
                            ),
                        )],
                        forbidden: false,
                    });
                } else {
                    good.push(v);
                }
            }
            Err(f) => refused.push(Refused {
                index,
                line: item.line,
                errors: f.errors,
                forbidden: f.forbidden,
            }),
        }
    }
    if refused.is_empty() {
        Ok(good)
    } else {
        Err(refused)
    }
}

/// The envelope of an indicator event, keyed by its indicator (one book holds every unit of
/// an indicator: roll-up needs them together).
pub fn envelope(e: &IndicatorEvent, source: &str, now: DateTime<Utc>) -> Envelope {
    Envelope::new(
        e.kind(),
        EntityId::new(EntityKind::Indicator, e.indicator()),
        now.fixed_offset(),
        now,
        source,
        serde_json::to_value(e).unwrap_or_default(),
    )
}

/// What a submission came to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Submitted {
    pub accepted: usize,
    pub rejected: Vec<Refused>,
}

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error("{} of {total} values refused; nothing was written", .refused.len())]
    Refused { refused: Vec<Refused>, total: usize },
    /// What must happen before the values are written (their audit entry) did not.
    #[error("{0}")]
    NotAdmitted(api_error::ApiError),
}

/// Writes checked submissions to `ioc.indicators`.
pub struct IndicatorIntake {
    bus: Arc<dyn Bus>,
    topics: Topics,
    registry: Arc<RegistryView>,
}

impl IndicatorIntake {
    pub fn new(bus: Arc<dyn Bus>, topics: Topics, registry: Arc<RegistryView>) -> Self {
        Self {
            bus,
            topics,
            registry,
        }
    }

    /// Checks every item and, if all are good, writes them all; returns once the bus
    /// acknowledged them. Refused items are dead-lettered and nothing else is written.
    /// Checks every item and, when all pass, awaits `admit` (the submission's audit entry),
    /// then writes them; nothing is written unless both succeed.
    pub async fn submit(
        &self,
        source: &str,
        by: &str,
        reporter: &Reporter,
        items: &[RawItem],
        admit: impl std::future::Future<Output = Result<(), api_error::ApiError>>,
    ) -> Result<Submitted, SubmitError> {
        if !self.registry.is_ready() {
            return Err(IngestError::NotReady.into());
        }
        let now = Utc::now();
        let checked = self
            .registry
            .with(|dir| check_all(dir, reporter, items, by, now));
        let values = match checked {
            Ok(v) => v,
            Err(refused) => {
                self.dead_letter(source, items, &refused, now).await?;
                warn!(%source, refused = refused.len(), "indicator submission refused");
                return Err(SubmitError::Refused {
                    refused,
                    total: items.len(),
                });
            }
        };
        admit.await.map_err(SubmitError::NotAdmitted)?;
        self.publish(source, values.into_iter().map(IndicatorEvent::Value), now)
            .await
            .map(|accepted| Submitted {
                accepted,
                rejected: Vec::new(),
            })
            .map_err(Into::into)
    }

    /// Checks every item and writes the good ones, dead-lettering the rest: for a source
    /// that cannot be told (a poll), one bad row must not hold back the others.
    pub async fn submit_each(
        &self,
        source: &str,
        by: &str,
        reporter: &Reporter,
        items: &[RawItem],
    ) -> Result<Submitted, IngestError> {
        if !self.registry.is_ready() {
            return Err(IngestError::NotReady);
        }
        let now = Utc::now();
        let (good, refused) = self.registry.with(|dir| {
            let mut good = Vec::new();
            let mut refused = Vec::new();
            for (index, item) in items.iter().enumerate() {
                match check(dir, reporter, item, by, now) {
                    Ok(v) => good.push(v),
                    Err(f) => refused.push(Refused {
                        index,
                        line: item.line,
                        errors: f.errors,
                        forbidden: f.forbidden,
                    }),
                }
            }
            (good, refused)
        });
        self.dead_letter(source, items, &refused, now).await?;
        if !refused.is_empty() {
            warn!(%source, refused = refused.len(), "indicator rows refused and dead-lettered");
        }
        let accepted = self
            .publish(source, good.into_iter().map(IndicatorEvent::Value), now)
            .await?;
        Ok(Submitted {
            accepted,
            rejected: refused,
        })
    }

    /// Writes the refused items to the dead-letter topic, with their reasons.
    async fn dead_letter(
        &self,
        source: &str,
        items: &[RawItem],
        refused: &[Refused],
        now: DateTime<Utc>,
    ) -> Result<(), IngestError> {
        let dead = refused.iter().filter_map(|r| {
            let item = items.get(r.index)?;
            Some(Envelope::dead_letter(
                source,
                item.indicator
                    .as_deref()
                    .and_then(|c| LocalId::parse("indicator", c).ok())
                    .map(|c| EntityId::new(EntityKind::Indicator, &c)),
                r.errors.clone(),
                item.original.clone(),
                now,
            ))
        });
        let writes = dead.map(|env| {
            let bytes = env.to_bytes();
            async move {
                self.bus
                    .publish(&self.topics.deadletter, source, Some(bytes))
                    .await
            }
        });
        for r in futures::future::join_all(writes).await {
            r?;
        }
        metrics::counter!("ioc_ingest_indicators_total", "outcome" => "refused")
            .increment(refused.len() as u64);
        Ok(())
    }

    /// Writes indicator events (checked by the caller) keyed by indicator, once acknowledged.
    pub async fn publish(
        &self,
        source: &str,
        events: impl Iterator<Item = IndicatorEvent>,
        now: DateTime<Utc>,
    ) -> Result<usize, IngestError> {
        let envelopes: Vec<Envelope> = events.map(|e| envelope(&e, source, now)).collect();
        let writes = envelopes.iter().map(|env| {
            self.bus.publish(
                &self.topics.indicators,
                env.entity.as_str(),
                Some(env.to_bytes()),
            )
        });
        for r in futures::future::join_all(writes).await {
            if let Err(e) = r {
                warn!(%source, error = %e, "indicator write failed; sender not acknowledged");
                return Err(e.into());
            }
        }
        metrics::counter!("ioc_ingest_indicators_total", "outcome" => "accepted")
            .increment(envelopes.len() as u64);
        Ok(envelopes.len())
    }

    pub fn registry(&self) -> &Arc<RegistryView> {
        &self.registry
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::RegistryEntry;
    use serde_json::json;

    fn dir() -> Directory {
        let mut d = Directory::default();
        for e in fixtures::registry() {
            d.upsert(e);
        }
        d
    }

    fn now() -> DateTime<Utc> {
        "2026-12-02T03:00:00Z".parse().unwrap()
    }

    fn agency(a: &str) -> Reporter {
        Reporter::Agency(LocalId::parse("a", a).unwrap())
    }

    #[test]
    fn json_arrays_dhis2_sets_and_csv_read_the_same() {
        let plain = parse_json(&json!([{"indicator": "yt-kcb", "unit": "hg-vi-thanh", "period": "202611", "value": 15200, "note": "Số liệu sơ bộ"}])).unwrap();
        let dhis2 = parse_json(&json!({"period": "202611", "dataValues": [
            {"dataElement": "yt-kcb", "orgUnit": "hg-vi-thanh", "value": "15200", "comment": "Số liệu sơ bộ"}
        ]}))
        .unwrap();
        let csv = parse_csv("\u{feff}indicator,unit,period,value,note\nyt-kcb,hg-vi-thanh,202611,15200,Số liệu sơ bộ\n").unwrap();
        let d = dir();
        let check = |items: &[RawItem]| {
            check_all(&d, &agency("hg-syt"), items, "agency:hg-syt", now()).unwrap()
        };
        let (a, b, c) = (check(&plain), check(&dhis2), check(&csv));
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(a[0].value, 15200.0);
        assert_eq!(a[0].note.as_deref(), Some("Số liệu sơ bộ"));
        assert_eq!(csv[0].line, Some(2));
    }

    #[test]
    fn every_bad_row_is_named_by_index_line_and_field() {
        let sheet = "indicator,unit,period,value\n\
            yt-kcb,hg-vi-thanh,202611,15200\n\
            yt-kcb,hg-vi-thanh,2026Q4,15200\n\
            yt-nope,hg-vi-thanh,202611,1\n\
            yt-kcb,hg-nowhere,202611,1\n\
            yt-kcb,hg-nga-bay,202611,\"7,085\"\n\
            yt-kcb,hg-nga-bay,202611,\n\
            yt-kcb,hg-vi-thanh,202611,15300\n\
            dl-luotkhach,hg-vi-thanh,202611,9000\n";
        let items = parse_csv(sheet).unwrap();
        let refused = check_all(&dir(), &agency("hg-syt"), &items, "x", now()).unwrap_err();
        let got: Vec<(usize, Option<usize>, &str)> = refused
            .iter()
            .flat_map(|r| {
                r.errors
                    .iter()
                    .map(move |e| (r.index, r.line, e.field.as_str()))
            })
            .collect();
        assert_eq!(
            got,
            [
                (1, Some(3), "period"),
                (2, Some(4), "indicator"),
                (3, Some(5), "unit"),
                (4, Some(6), "value"),
                (5, Some(7), "value"),
                (6, Some(8), "period"),
                (7, Some(9), "indicator"),
            ]
        );
        assert!(refused[0].errors[0].reason.contains("month"));
        assert!(refused[3].errors[0].reason.contains("decimal point"));
        assert!(refused[5].errors[0]
            .reason
            .contains("already in this submission"));
        assert!(refused[6].errors[0].reason.contains("hg-svhttdl"));
        assert!(refused[6].forbidden && !refused[0].forbidden);
    }

    #[test]
    fn an_agency_reports_its_own_indicators_for_its_own_units() {
        let mut d = dir();
        let item = |unit: &str| RawItem {
            indicator: Some("yt-kcb".into()),
            unit: Some(unit.into()),
            period: Some("202611".into()),
            value: Some(json!(1)),
            note: None,
            line: None,
            original: json!({}),
        };
        assert!(check(&d, &agency("hg-syt"), &item("hg-vi-thanh"), "x", now()).is_ok());
        // Tiền Giang's units are not Hậu Giang's department's.
        let e = check(&d, &agency("hg-syt"), &item("tg-my-tho"), "x", now()).unwrap_err();
        assert_eq!(e.errors[0].field, "unit");
        assert!(e.forbidden);
        assert!(check(&d, &Reporter::Any, &item("tg-my-tho"), "x", now()).is_ok());
        // A ward does not report a district-level indicator; nor does the province itself.
        let e = check(&d, &Reporter::Any, &item("lx-my-binh"), "x", now()).unwrap_err();
        assert!(e.errors[0].reason.contains("commune"), "{:?}", e.errors);
        assert!(!e.forbidden);
        // An agency with no home unit reports for none.
        d.upsert(RegistryEntry::Agency(model::Agency {
            id: LocalId::parse("a", "hg-syt").unwrap(),
            name: "Sở Y tế".into(),
            name_en: "Health".into(),
            unit: None,
        }));
        let e = check(&d, &agency("hg-syt"), &item("hg-vi-thanh"), "x", now()).unwrap_err();
        assert_eq!(e.errors[0].field, "unit");
    }

    #[test]
    fn a_derived_indicator_is_computed_not_reported() {
        let item = RawItem {
            indicator: Some("pa-tiepnhan".into()),
            unit: Some("hg-vi-thanh".into()),
            period: Some("202611".into()),
            value: Some(json!(12)),
            note: None,
            line: None,
            original: json!({}),
        };
        for reporter in [Reporter::Any, agency("hg-stttt")] {
            let e = check(&dir(), &reporter, &item, "x", now()).unwrap_err();
            assert_eq!(e.errors[0].field, "indicator");
            assert!(e.errors[0].reason.contains("derived"), "{:?}", e.errors);
            assert!(!e.forbidden);
        }
    }

    #[test]
    fn unreadable_bodies_say_why() {
        assert_eq!(parse_json(&json!(3)).unwrap_err().0.field, "body");
        assert_eq!(
            parse_json(&json!({"dataValues": 3})).unwrap_err().0.field,
            "body"
        );
        let e = parse_csv("indicator,period\nx,2026\n").unwrap_err();
        assert_eq!(e.0.field, "header");
        assert!(e.0.reason.contains("unit, value"), "{}", e.0.reason);
    }
}
