//! Which entities this core instance owns. Instances split the partitions of the input
//! topics (static assignment) and every entity's key hashes to one partition
//! ([`bus::partition_for`]), so each entity has exactly one owner, and only the owner
//! publishes its state, its alerts and its dead letters. The others may compute the same
//! records from their own copies; the publisher drops them.

use std::collections::BTreeSet;

use model::EntityId;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ownership {
    /// `None`: every partition (a single instance, or the in-memory bus).
    partitions: Option<BTreeSet<i32>>,
    /// Partitions of each input topic.
    count: i32,
}

impl Ownership {
    /// An instance that owns everything.
    pub fn all() -> Self {
        Self {
            partitions: None,
            count: 1,
        }
    }

    /// An instance owning `partitions` of topics with `count` partitions (all when `None`,
    /// or when the list names every partition).
    pub fn of(partitions: Option<&[i32]>, count: i32) -> Self {
        let set: Option<BTreeSet<i32>> = partitions.map(|p| p.iter().copied().collect());
        let every = set
            .as_ref()
            .is_none_or(|s| (0..count.max(1)).all(|p| s.contains(&p)));
        Self {
            partitions: if every { None } else { set },
            count: count.max(1),
        }
    }

    /// True when another instance owns some entities.
    pub fn is_partial(&self) -> bool {
        self.partitions.is_some()
    }

    pub fn owns_partition(&self, partition: i32) -> bool {
        self.partitions
            .as_ref()
            .is_none_or(|s| s.contains(&partition))
    }

    pub fn owns_key(&self, key: &str) -> bool {
        match &self.partitions {
            None => true,
            Some(s) => s.contains(&bus::partition_for(key, self.count)),
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
}
