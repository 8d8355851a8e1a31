//! The registry as ingest sees it: one [`model::Directory`] behind a lock, followed from the
//! registry topic. The sensor path asks it which stations exist and who owns them; the
//! report intake asks it where a point is (units, deepest first) and what agencies are
//! called. Entries the core would dead-letter are ignored here (the core reports them).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};

use bus::{Bus, BusError};
use model::{Directory, Envelope, LocalId, RegistryChange, RegistryEntry};
use tracing::{info, warn};

#[derive(Default)]
pub struct RegistryView {
    dir: RwLock<Directory>,
    ready: AtomicBool,
}

impl RegistryView {
    /// True once the registry topic was read to its end.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    fn read(&self) -> RwLockReadGuard<'_, Directory> {
        self.dir.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds or replaces one entry (what a registry event does; for tests and fixtures).
    pub fn upsert(&self, entry: RegistryEntry) {
        self.change(RegistryChange::Upsert(entry));
    }

    fn change(&self, change: RegistryChange) {
        let mut dir = self.dir.write().unwrap_or_else(|e| e.into_inner());
        dir.apply(change);
        // While loading, the index is built once at the end.
        if self.is_ready() && dir.refresh_index() {
            for (unit, reason) in dir.refused_units() {
                warn!(%unit, %reason, "unit geometry refused; unit not indexed");
            }
        }
    }

    /// Runs `f` on the registry as it stands (checks that need several of its parts at once).
    pub fn with<R>(&self, f: impl FnOnce(&Directory) -> R) -> R {
        f(&self.read())
    }

    pub fn contains_station(&self, id: &LocalId) -> bool {
        self.read().stations.contains_key(id)
    }

    /// The owning agency of a known station (`None` if unknown, `Some(None)` if unowned).
    pub fn station_owner(&self, id: &LocalId) -> Option<Option<LocalId>> {
        self.read().stations.get(id).map(|s| s.agency.clone())
    }

    /// Units containing the point, deepest first, with their names.
    pub fn locate(&self, lon: f64, lat: f64) -> (Vec<LocalId>, Vec<String>) {
        let dir = self.read();
        let ids = dir.locate(lon, lat);
        let names = ids
            .iter()
            .map(|id| {
                dir.units
                    .get(id)
                    .map(|u| u.name.clone())
                    .unwrap_or_default()
            })
            .collect();
        (ids, names)
    }

    /// The administrative level of a unit (`province`, `district`, …).
    pub fn level(&self, unit: &LocalId) -> Option<String> {
        self.read().units.get(unit).map(|u| u.level.clone())
    }

    pub fn agency_name(&self, id: &LocalId) -> Option<String> {
        self.read().agencies.get(id).map(|a| a.name.clone())
    }

    /// Follows the registry topic; ready once caught up.
    pub async fn follow(self: Arc<Self>, bus: Arc<dyn Bus>, topic: String) -> Result<(), BusError> {
        let on_ready = self.clone();
        bus::replay_and_follow(
            &*bus,
            &[&topic],
            |m| self.apply(&m),
            move || {
                let stations = {
                    let mut dir = on_ready.dir.write().unwrap_or_else(|e| e.into_inner());
                    dir.refresh_index();
                    for (unit, reason) in dir.refused_units() {
                        warn!(%unit, %reason, "unit geometry refused; unit not indexed");
                    }
                    dir.stations.len()
                };
                on_ready.ready.store(true, Ordering::Release);
                info!(stations, "ingest registry loaded");
            },
        )
        .await
    }

    /// Takes one registry message into account.
    fn apply(&self, m: &bus::Message) {
        let Some(env) = m
            .payload
            .as_deref()
            .and_then(|p| Envelope::from_bytes(p).ok())
        else {
            return;
        };
        if let Ok(Some(change)) = RegistryChange::from_event(&env) {
            self.change(change);
        }
    }
}
