//! Topic names (configurable) and how each is created: partitions, compaction, retention.

use serde::{Deserialize, Serialize};

/// The IOC's topics. Defaults are DESIGN.md's names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Topics {
    pub readings: String,
    pub cameras: String,
    pub reports: String,
    /// Indicator values, corrections, targets and explanations, keyed by indicator.
    pub indicators: String,
    pub registry: String,
    pub alerts: String,
    pub state: String,
    /// The stream core's daily tallies of cameras, stations, rivers and alerts, for the
    /// derived indicators (compacted: one per entity, day and kind; read whole at start).
    pub tallies: String,
    pub deadletter: String,
}

impl Default for Topics {
    fn default() -> Self {
        Self {
            readings: "ioc.readings".into(),
            cameras: "ioc.cameras".into(),
            reports: "ioc.reports".into(),
            indicators: "ioc.indicators".into(),
            registry: "ioc.registry".into(),
            alerts: "ioc.alerts".into(),
            state: "ioc.state".into(),
            tallies: "ioc.tallies".into(),
            deadletter: "ioc.deadletter".into(),
        }
    }
}

/// How to create one topic.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    pub compacted: bool,
    /// `None` keeps the broker's default retention.
    pub retention_ms: Option<i64>,
}

const DAY_MS: i64 = 24 * 3600 * 1000;
/// How long `ioc.readings` keeps readings (history must keep them longer).
pub const READINGS_RETENTION_DAYS: i64 = 7;

impl Topics {
    /// Specs for every topic, with `partitions` for the keyed event streams.
    pub fn specs(&self, partitions: i32) -> Vec<TopicSpec> {
        let spec =
            |name: &str, partitions: i32, compacted: bool, retention_ms: Option<i64>| TopicSpec {
                name: name.to_string(),
                partitions,
                compacted,
                retention_ms,
            };
        vec![
            spec(
                &self.readings,
                partitions,
                false,
                Some(READINGS_RETENTION_DAYS * DAY_MS),
            ),
            spec(&self.cameras, partitions, false, Some(7 * DAY_MS)),
            spec(&self.reports, partitions, false, Some(-1)),
            spec(&self.indicators, partitions, false, Some(-1)),
            spec(&self.registry, partitions, true, None),
            spec(&self.alerts, partitions, false, Some(-1)),
            spec(&self.state, partitions, true, None),
            spec(&self.tallies, partitions, true, None),
            spec(&self.deadletter, 1, false, Some(90 * DAY_MS)),
        ]
    }
}
