//! Which entities this core instance owns. Instances split the partitions of the input
//! topics (static assignment, or a consumer group's, which moves at each rebalance) and
//! every entity's key hashes to one partition
//! ([`bus::partition_for`]), so each entity has exactly one owner, and only the owner
//! publishes its state, its alerts and its dead letters. The others may compute the same
//! records from their own copies; the publisher drops them.

use std::collections::BTreeSet;
use std::sync::{Arc, PoisonError, RwLock};

use model::EntityId;

/// Who owns what; clones share it, so a group rebalance told to one is seen by all.
#[derive(Debug, Clone)]
pub struct Ownership {
    inner: Arc<RwLock<Owned>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Owned {
    /// `None`: every partition (a single instance, or the in-memory bus).
    partitions: Option<BTreeSet<i32>>,
    /// Partitions of each input topic.
    count: i32,
    /// Partitions follow a consumer group's assignment (`core.assignment = "group"`).
    grouped: bool,
    /// Bumped at every change of `partitions`.
    generation: u64,
}

impl PartialEq for Ownership {
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (self.read(), other.read());
        (&a.partitions, a.count, a.grouped) == (&b.partitions, b.count, b.grouped)
    }
}

impl Ownership {
    fn new(partitions: Option<BTreeSet<i32>>, count: i32, grouped: bool) -> Self {
        Self {
            inner: Arc::new(RwLock::new(Owned {
                partitions,
                count: count.max(1),
                grouped,
                generation: 0,
            })),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Owned> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// An instance that owns everything.
    pub fn all() -> Self {
        Self::new(None, 1, false)
    }

    /// An instance owning `partitions` of topics with `count` partitions (all when `None`,
    /// or when the list names every partition).
    pub fn of(partitions: Option<&[i32]>, count: i32) -> Self {
        let set: Option<BTreeSet<i32>> = partitions.map(|p| p.iter().copied().collect());
        let every = set
            .as_ref()
            .is_none_or(|s| (0..count.max(1)).all(|p| s.contains(&p)));
        Self::new(if every { None } else { set }, count, false)
    }

    /// A consumer-group member on topics with `count` partitions: it owns nothing until the
    /// group assigns it partitions ([`Ownership::hold`]).
    pub fn grouped(count: i32) -> Self {
        Self::new(Some(BTreeSet::new()), count, true)
    }

    /// The group's assignment changed: this instance now owns `partitions`.
    pub fn hold(&self, partitions: impl IntoIterator<Item = i32>) {
        let mut o = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        let set: BTreeSet<i32> = partitions.into_iter().collect();
        if o.partitions.as_ref() != Some(&set) {
            o.partitions = Some(set);
            o.generation += 1;
        }
    }

    /// Changes with every new assignment; a core compares it to notice one.
    pub fn generation(&self) -> u64 {
        self.read().generation
    }

    /// The partitions owned now (`None`: all).
    pub fn partitions(&self) -> Option<BTreeSet<i32>> {
        self.read().partitions.clone()
    }

    /// True when another instance owns (or, in a group, may come to own) some entities.
    pub fn is_partial(&self) -> bool {
        let o = self.read();
        o.grouped || o.partitions.is_some()
    }

    pub fn owns_partition(&self, partition: i32) -> bool {
        self.read()
            .partitions
            .as_ref()
            .is_none_or(|s| s.contains(&partition))
    }

    /// The partition of the input topics `key` lands on.
    pub fn partition_of(&self, key: &str) -> i32 {
        bus::partition_for(key, self.read().count)
    }

    pub fn owns_key(&self, key: &str) -> bool {
        let o = self.read();
        match &o.partitions {
            None => true,
            Some(s) => s.contains(&bus::partition_for(key, o.count)),
        }
    }

    pub fn owns(&self, entity: &EntityId) -> bool {
        self.owns_key(entity.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disjoint_lists_give_every_entity_one_owner() {
        let a = Ownership::of(Some(&[0, 1]), 6);
        let b = Ownership::of(Some(&[2, 3]), 6);
        let c = Ownership::of(Some(&[4, 5]), 6);
        for i in 0..500 {
            let key = format!("station:s-{i}");
            let owners = [&a, &b, &c].iter().filter(|o| o.owns_key(&key)).count();
            assert_eq!(owners, 1, "{key}");
        }
        assert!(a.is_partial());
    }

    #[test]
    fn every_partition_listed_is_the_same_as_none() {
        assert_eq!(Ownership::of(Some(&[2, 0, 1]), 3), Ownership::of(None, 3));
        assert!(!Ownership::of(None, 6).is_partial());
        assert!(Ownership::all().owns_key("anything"));
    }

    #[test]
    fn a_group_member_owns_what_it_is_assigned_and_its_clones_see_it() {
        let o = Ownership::grouped(6);
        let seen_by_publisher = o.clone();
        assert!(o.is_partial());
        assert!(!o.owns_key("station:s-1"), "nothing before an assignment");
        let g = o.generation();
        o.hold([0, 1, 2, 3, 4, 5]);
        assert!(seen_by_publisher.owns_key("station:s-1"));
        assert!(o.is_partial(), "a group member may lose partitions again");
        assert_ne!(o.generation(), g);
        let g = o.generation();
        o.hold([0, 1, 2, 3, 4, 5]);
        assert_eq!(o.generation(), g, "the same assignment is no change");
        o.hold([0, 1]);
        let key = (0..100)
            .map(|i| format!("station:s-{i}"))
            .find(|k| o.partition_of(k) == 4)
            .unwrap();
        assert!(!seen_by_publisher.owns_key(&key));
    }
}
