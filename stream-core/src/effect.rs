//! What the books ask the publisher to do. A book never writes to the bus: it returns
//! effects, and [`crate::publisher::Publisher`] applies them in order under one retry policy,
//! for the entities this instance owns.

use model::indicator::tally::Tally;
use model::{EntityId, Envelope, StateRecord};

#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// The latest state of an entity, on `ioc.state` (keyed by `record.entity`).
    Upsert {
        record: StateRecord,
        /// The entity whose owner publishes this: the record's own, or for an alert, the
        /// entity it is about.
        owner: EntityId,
    },
    /// An entity leaves `ioc.state`.
    Tombstone { entity: EntityId, owner: EntityId },
    /// An alert event on `ioc.alerts`, keyed by the entity it is about, so the events and
    /// the API's actions on one alert share the owner's partition.
    AlertEvent { subject: EntityId, event: Envelope },
    /// A daily tally of the core's own streams on `ioc.tallies` (compacted, keyed by entity,
    /// day and kind), published by its entity's owner.
    Tally { tally: Tally, owner: EntityId },
    /// A tally past keeping leaves `ioc.tallies`.
    TallyGone { key: String, owner: EntityId },
    /// Input that could not be accepted, on `ioc.deadletter`, published by the owner of the
    /// input partition it was read from (topics read whole by every instance are
    /// dead-lettered once).
    DeadLetter {
        partition: i32,
        /// Where the input was read (`bus:topic/partition/offset`): the dead letter's key.
        source: String,
        event: Envelope,
    },
}

impl Effect {
    /// The record published under its own entity's owner.
    pub fn upsert(record: StateRecord) -> Self {
        let owner = record.entity.clone();
        Self::Upsert { record, owner }
    }

    pub fn tally(tally: Tally) -> Self {
        Self::Tally {
            owner: tally.entity.clone(),
            tally,
        }
    }

    pub fn tombstone(entity: EntityId) -> Self {
        Self::Tombstone {
            owner: entity.clone(),
            entity,
        }
    }

    /// The entity whose key names the partition that decides who publishes.
    pub fn owner(&self) -> Result<&EntityId, i32> {
        match self {
            Effect::Upsert { owner, .. }
            | Effect::Tombstone { owner, .. }
            | Effect::Tally { owner, .. }
            | Effect::TallyGone { owner, .. } => Ok(owner),
            Effect::AlertEvent { subject, .. } => Ok(subject),
            Effect::DeadLetter { partition, .. } => Err(*partition),
        }
    }

    /// The state record this effect writes, if it is an upsert.
    pub fn record(&self) -> Option<&StateRecord> {
        match self {
            Effect::Upsert { record, .. } => Some(record),
            _ => None,
        }
    }
}
