//! The feeds' one dispatcher: reads the replica's change feed once and offers each change
//! only to the subscriptions whose area it reaches, found in an R-tree of subscription boxes,
//! where it is now and where it was before (so a screen that showed an entity hears that it
//! left). With thousands of screens each watching a district, a change costs the screens
//! that can show it, not one wake-up of every connection.
//!
//! Lock order: a connection's outbox, then the hub's index; the dispatcher never holds the
//! index while it takes an outbox.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use model::geoindex::BoxIndex;
use replica::{Change, Extent, Query, Replica};
use tokio::sync::broadcast;

use crate::connection::Conn;

/// The box of a subscription that can match anywhere.
const WORLD: [f64; 4] = [-180.0, -90.0, 180.0, 90.0];

/// One subscription of one connection.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct SubKey {
    conn: u64,
    sub: Arc<str>,
}

#[derive(Default)]
struct Index {
    next_conn: u64,
    conns: HashMap<u64, Weak<Conn>>,
    subs: BoxIndex<SubKey>,
}

pub(crate) struct Hub {
    index: Mutex<Index>,
}

impl Hub {
    /// A hub fed by `replica`'s changes; its task ends when the replica or the hub is gone.
    /// Must be called within a tokio runtime. (On a thread of its own it was slower: it then
    /// competes for the cores with the writers it feeds, and for their locks.)
    pub fn start(replica: &Replica) -> Arc<Self> {
        let hub = Arc::new(Self {
            index: Mutex::default(),
        });
        let mut changes = replica.subscribe();
        let weak = Arc::downgrade(&hub);
        tokio::spawn(async move {
            loop {
                let got = changes.recv().await;
                let Some(hub) = weak.upgrade() else { break };
                match got {
                    Ok(c) => hub.dispatch(&c),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        metrics::counter!("ioc_ws_hub_lagged_total").increment(n);
                        for conn in hub.connections() {
                            conn.lagged();
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        hub
    }

    fn lock(&self) -> MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a connection; the id names it in [`Hub::index_sub`] and [`Hub::leave`].
    pub fn join(&self, conn: Weak<Conn>) -> u64 {
        let mut ix = self.lock();
        ix.next_conn += 1;
        let id = ix.next_conn;
        ix.conns.insert(id, conn);
        id
    }

    /// Indexes (or re-indexes) subscription `sub` of connection `conn` by where `query` can
    /// match; a query that can match nothing is not indexed.
    pub fn index_sub(&self, conn: u64, sub: &str, query: &Query) {
        let key = SubKey {
            conn,
            sub: sub.into(),
        };
        let mut ix = self.lock();
        match query.extent() {
            Extent::Nowhere => ix.subs.remove(&key),
            Extent::Box(b) => ix.subs.insert(key, b),
            Extent::Everywhere => ix.subs.insert(key, WORLD),
        }
    }

    pub fn unindex_sub(&self, conn: u64, sub: &str) {
        self.lock().subs.remove(&SubKey {
            conn,
            sub: sub.into(),
        });
    }

    /// Forgets a connection and its subscriptions.
    pub fn leave<'a>(&self, conn: u64, subs: impl Iterator<Item = &'a String>) {
        let mut ix = self.lock();
        ix.conns.remove(&conn);
        for sub in subs {
            ix.subs.remove(&SubKey {
                conn,
                sub: sub.as_str().into(),
            });
        }
    }

    fn connections(&self) -> Vec<Arc<Conn>> {
        self.lock()
            .conns
            .values()
            .filter_map(Weak::upgrade)
            .collect()
    }

    /// Offers `c` to every subscription whose box meets the entity's box now or before, and
    /// an alert to every connection (each decides whether its caller may see it).
    fn dispatch(&self, c: &Change) {
        let is_alert = c
            .record
            .as_deref()
            .is_some_and(|r| r.layer == model::Layer::Alerts);
        let (alerted, targets) = {
            let ix = self.lock();
            let now = c.record.as_deref().map(|r| r.bbox);
            // Most changes leave an entity where it was: its old box is asked only if it moved.
            let before = c.previous_bbox.filter(|b| Some(*b) != now);
            let mut keys: Vec<&SubKey> = now
                .iter()
                .chain(before.iter())
                .flat_map(|b| ix.subs.query(b))
                .collect();
            keys.sort_unstable_by(|a, b| (a.conn, &a.sub).cmp(&(b.conn, &b.sub)));
            keys.dedup();
            let mut targets: Vec<(Arc<Conn>, Vec<Arc<str>>)> = Vec::new();
            for key in keys {
                match targets.last_mut() {
                    Some((conn, subs)) if conn.id() == key.conn => subs.push(key.sub.clone()),
                    _ => {
                        if let Some(conn) = ix.conns.get(&key.conn).and_then(Weak::upgrade) {
                            targets.push((conn, vec![key.sub.clone()]));
                        }
                    }
                }
            }
            let alerted: Vec<Arc<Conn>> = if is_alert {
                ix.conns.values().filter_map(Weak::upgrade).collect()
            } else {
                Vec::new()
            };
            (alerted, targets)
        };
        for conn in alerted {
            conn.alert(c);
        }
        for (conn, subs) in targets {
            conn.offer(&subs, c);
        }
    }
}
