//! The stream core: consumes the registry, sensor readings, field reports, indicator values,
//! camera status and alert actions from the bus and keeps the live picture: every station placed in its
//! administrative units, with salinity levels, hourly and daily VN_AQI (`air`), the reach of
//! salinity along each river (`rivers`), forecasts (`forecaster`), reports with their
//! deadlines (`reports`), cameras (`cameras`), the leaders' indicators against their targets
//! (`indicators`, with the daily tallies of cameras, stations, rivers and alerts that its
//! derived figures fold, in `tallies`) and alerts (`rules` observe, `alerts` keeps one alert
//! per condition and entity). Each of those is a book; [`Books::apply`] turns one
//! typed [`Input`] (merged from the topics and the clock in `input`) into [`Effect`]s, purely,
//! and one publisher writes them to `ioc.state`, `ioc.alerts`, `ioc.tallies` and
//! `ioc.deadletter` under one
//! retry policy, so a broker outage pauses the core and never ends it.
//!
//! It owns the *live picture* and its consistency: late or out-of-order readings never move
//! latest state backwards in event time; offsets are committed only after the effects of an
//! input are acknowledged; a restart rebuilds state from `ioc.state` and skips readings
//! already applied (each state records the input offsets it covers). Several instances split
//! the input partitions ([`Ownership`]): each publishes only for the entities whose keys hash
//! to its partitions. The history sink ([`run_history`]) writes every reading to the history
//! store under its own consumer group, committing only what is durable. It must never talk to
//! clients, and reaches the database only through the `store` crate.

mod air;
mod alerts;
mod books;
pub mod cameras;
mod core;
mod effect;
pub mod forecaster;
mod history;
mod indicators;
mod input;
mod ownership;
mod places;
mod publisher;
mod reports;
mod rivers;
mod rules;
mod station;
mod stations;
mod tallies;

pub use history::{run_history, HistoryConfig, HistoryError, HistoryStart, HistoryStatus};

pub use crate::core::{run, Assignment, CoreConfig, CoreError, CoreStatus};
pub use air::{AirHours, AqiView};
pub use alerts::{AlertBook, Observation, RulesConfig, Transition};
pub use books::Books;
pub use effect::Effect;
pub use input::{AlertActionIn, Input, Located, ReadingIn, Rejected, TallyIn};
pub use model::reading::Latest;
pub use model::Directory;
pub use model::RegistryChange;
pub use ownership::Ownership;
pub use reports::{ReportBook, ReportsConfig, UnitCounts};
pub use station::{ApplyOutcome, StationProps, StationState};
