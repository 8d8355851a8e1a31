//! The stream core: consumes the registry and sensor readings from the bus, keeps the latest
//! state of every station in a geo index (each station placed in its administrative units by
//! point-in-polygon), and publishes every state change to the compacted `ioc.state` topic,
//! from which read replicas (map-api, ui-feeds) serve clients.
//!
//! It owns the *live picture* and its consistency: late or out-of-order readings never move
//! latest state backwards in event time; offsets are committed only after a reading is
//! applied and its new state acknowledged by the bus; a restart rebuilds state from
//! `ioc.state` and skips readings already applied (each state records the input offsets it
//! covers). It must never talk to clients or to the database directly.

mod core;
mod directory;
mod station;

pub use crate::core::{run, Assignment, CoreConfig, CoreError, CoreStatus};
pub use directory::Directory;
pub use station::{ApplyOutcome, Latest, StationProps, StationState};
