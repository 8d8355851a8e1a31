//! What travels on `ioc.indicators`: reported values (a correction is a value for the same
//! indicator, unit and period), targets, and explanations asked for and given. Each names
//! who sent it and when; the book keeps a value's revisions from them.

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

use super::{Period, Target};
use crate::id::LocalId;

/// Longest note on a value or an explanation.
pub const MAX_NOTE: usize = 2000;

/// A figure one unit reported for one period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Value {
    pub indicator: LocalId,
    pub unit: LocalId,
    pub period: Period,
    pub value: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The sender's subject (`api:…`, a service account, a poll source).
    pub by: String,
    /// When it was reported.
    pub at: DateTime<FixedOffset>,
}

/// One revision of a value: what it was changed to, from what, by whom, when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Revision {
    pub value: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<f64>,
    pub by: String,
    pub at: DateTime<FixedOffset>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A leader asks the responsible unit to explain a value, or the owning agency answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Explanation {
    pub indicator: LocalId,
    pub unit: LocalId,
    pub period: Period,
    /// `request` or `answer`.
    pub step: ExplanationStep,
    pub note: String,
    pub by: String,
    pub role: String,
    pub at: DateTime<FixedOffset>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExplanationStep {
    Request,
    Answer,
}

/// An event on `ioc.indicators`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum IndicatorEvent {
    Value(Value),
    Target(Target),
    Explanation(Explanation),
}

impl IndicatorEvent {
    /// The indicator the event is about: its key on the topic, so that one book holds
    /// every unit of an indicator (roll-up needs them together).
    pub fn indicator(&self) -> &LocalId {
        match self {
            IndicatorEvent::Value(v) => &v.indicator,
            IndicatorEvent::Target(t) => &t.indicator,
            IndicatorEvent::Explanation(e) => &e.indicator,
        }
    }

    pub fn kind(&self) -> crate::EventKind {
        match self {
            IndicatorEvent::Value(_) => crate::EventKind::IndicatorValue,
            IndicatorEvent::Target(_) => crate::EventKind::IndicatorTarget,
            IndicatorEvent::Explanation(_) => crate::EventKind::IndicatorExplanation,
        }
    }
}
