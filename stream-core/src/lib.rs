//! The stream core: consumes the registry and sensor readings from the bus, keeps the latest
//! state of every station in a geo index (each station placed in its administrative units by
//! point-in-polygon), and publishes every state change to the compacted `ioc.state` topic,
//! from which read replicas (map-api, ui-feeds) serve clients. What it derives lives there
//! too: salinity levels, hourly and daily VN_AQI (`air`), the reach of salinity along each
//! river (`rivers`), salinity forecasts (`forecaster`), and alerts (`rules` observe state,
//! `alerts` keeps one alert per condition and entity, acknowledgements come from
//! `ioc.alerts`).
//!
//! It owns the *live picture* and its consistency: late or out-of-order readings never move
//! latest state backwards in event time; offsets are committed only after a reading is
//! applied and its new state acknowledged by the bus; a restart rebuilds state from
//! `ioc.state` and skips readings already applied (each state records the input offsets it
//! covers). The history sink ([`run_history`]) writes every reading to the history store
//! under its own consumer group, committing only what is durable. It must never talk to
//! clients, and reaches the database only through the `store` crate.

mod air;
mod alerts;
mod books;
pub mod cameras;
mod core;
mod effect;
pub mod forecaster;
mod history;
mod input;
mod ownership;
mod places;
mod publisher;
mod reports;
mod rivers;
mod rules;
mod station;
mod stations;

pub use history::{run_history, HistoryConfig, HistoryError, HistoryStart, HistoryStatus};

pub use crate::core::{run, Assignment, CoreConfig, CoreError, CoreStatus};
pub use air::{AirHours, AqiView};
pub use alerts::{AlertBook, Observation, RulesConfig, Transition};
pub use books::Books;
pub use effect::Effect;
pub use input::{AlertActionIn, Input, Located, ReadingIn, Rejected};
pub use model::reading::Latest;
pub use model::Directory;
pub use model::RegistryChange;
pub use ownership::Ownership;
pub use reports::{ReportBook, ReportsConfig, UnitCounts};
pub use station::{ApplyOutcome, StationProps, StationState};
