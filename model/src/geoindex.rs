//! Spatial indexes (R*-trees): `BoxIndex` answers "what is in this bbox" for live entities;
//! `UnitIndex` answers "which administrative units contain this point", deepest first.

use std::collections::HashMap;
use std::hash::Hash;

use geo::{BoundingRect, Contains, Intersects, MultiPolygon, Point};
use rstar::primitives::{GeomWithData, Rectangle};
use rstar::{RTree, AABB};

use crate::id::LocalId;

type Entry<K> = GeomWithData<Rectangle<[f64; 2]>, K>;

fn rect(b: &[f64; 4]) -> Rectangle<[f64; 2]> {
    Rectangle::from_corners([b[0], b[1]], [b[2], b[3]])
}

/// Keys with bounding boxes; insert replaces.
pub struct BoxIndex<K: Clone + Eq + Hash> {
    tree: RTree<Entry<K>>,
    boxes: HashMap<K, [f64; 4]>,
}

impl<K: Clone + Eq + Hash> Default for BoxIndex<K> {
    fn default() -> Self {
        Self {
            tree: RTree::new(),
            boxes: HashMap::new(),
        }
    }
}

impl<K: Clone + Eq + Hash> BoxIndex<K> {
    pub fn insert(&mut self, key: K, bbox: [f64; 4]) {
        if let Some(old) = self.boxes.get(&key) {
            if *old == bbox {
                return;
            }
            self.remove(&key);
        }
        self.tree
            .insert(GeomWithData::new(rect(&bbox), key.clone()));
        self.boxes.insert(key, bbox);
    }

    pub fn remove(&mut self, key: &K) {
        if let Some(b) = self.boxes.remove(key) {
            self.tree.remove(&GeomWithData::new(rect(&b), key.clone()));
        }
    }

    /// Keys whose boxes intersect `[w, s, e, n]`.
    pub fn query<'a>(&'a self, bbox: &[f64; 4]) -> impl Iterator<Item = &'a K> + 'a {
        let env = AABB::from_corners([bbox[0], bbox[1]], [bbox[2], bbox[3]]);
        self.tree
            .locate_in_envelope_intersecting(&env)
            .map(|e| &e.data)
    }

    pub fn len(&self) -> usize {
        self.boxes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.boxes.is_empty()
    }
}

struct UnitShape {
    id: LocalId,
    depth: usize,
    shape: MultiPolygon<f64>,
}

/// Administrative units for point-in-polygon look-ups.
#[derive(Default)]
pub struct UnitIndex {
    tree: RTree<Entry<usize>>,
    units: Vec<UnitShape>,
}

impl UnitIndex {
    /// Builds the index from `(id, parent, shape)`; depth comes from the parent chain.
    pub fn build(units: Vec<(LocalId, Option<LocalId>, MultiPolygon<f64>)>) -> Self {
        let parents: HashMap<LocalId, Option<LocalId>> = units
            .iter()
            .map(|(id, p, _)| (id.clone(), p.clone()))
            .collect();
        let depth = |id: &LocalId| {
            let mut d = 0;
            let mut cur = parents.get(id).cloned().flatten();
            while let Some(p) = cur {
                d += 1;
                if d > 32 {
                    break; // a cycle in bad data; depth stops counting
                }
                cur = parents.get(&p).cloned().flatten();
            }
            d
        };
        let mut shapes = Vec::with_capacity(units.len());
        let mut entries = Vec::with_capacity(units.len());
        for (id, _, shape) in units {
            let Some(r) = shape.bounding_rect() else {
                continue;
            };
            let idx = shapes.len();
            entries.push(GeomWithData::new(
                rect(&[r.min().x, r.min().y, r.max().x, r.max().y]),
                idx,
            ));
            shapes.push(UnitShape {
                depth: depth(&id),
                id,
                shape,
            });
        }
        Self {
            tree: RTree::bulk_load(entries),
            units: shapes,
        }
    }

    /// Units containing the point (boundary included), deepest first.
    pub fn locate(&self, lon: f64, lat: f64) -> Vec<LocalId> {
        let p = Point::new(lon, lat);
        let mut hits: Vec<&UnitShape> = self
            .tree
            .locate_in_envelope_intersecting(&AABB::from_point([lon, lat]))
            .map(|e| &self.units[e.data])
            .filter(|u| u.shape.contains(&p) || u.shape.intersects(&p))
            .collect();
        hits.sort_by(|a, b| b.depth.cmp(&a.depth).then_with(|| a.id.cmp(&b.id)));
        hits.into_iter().map(|u| u.id.clone()).collect()
    }

    pub fn len(&self) -> usize {
        self.units.len()
    }

    pub fn is_empty(&self) -> bool {
        self.units.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use geo::polygon;

    fn id(s: &str) -> LocalId {
        LocalId::parse("id", s).unwrap()
    }

    #[test]
    fn box_index_finds_and_forgets() {
        let mut ix = BoxIndex::default();
        ix.insert("a", [105.0, 9.0, 105.0, 9.0]);
        ix.insert("b", [106.0, 10.0, 106.0, 10.0]);
        let hits: Vec<_> = ix.query(&[104.5, 8.5, 105.5, 9.5]).copied().collect();
        assert_eq!(hits, vec!["a"]);
        ix.insert("a", [107.0, 11.0, 107.0, 11.0]);
        assert_eq!(ix.query(&[104.5, 8.5, 105.5, 9.5]).count(), 0);
        ix.remove(&"b");
        assert_eq!(ix.len(), 1);
    }

    #[test]
    fn units_are_located_deepest_first_with_edges_included() {
        let province =
            polygon![(x: 0.0, y: 0.0), (x: 10.0, y: 0.0), (x: 10.0, y: 10.0), (x: 0.0, y: 10.0)];
        let district =
            polygon![(x: 0.0, y: 0.0), (x: 5.0, y: 0.0), (x: 5.0, y: 5.0), (x: 0.0, y: 5.0)];
        let ix = UnitIndex::build(vec![
            (id("p"), None, MultiPolygon(vec![province])),
            (id("d"), Some(id("p")), MultiPolygon(vec![district])),
        ]);
        assert_eq!(ix.locate(1.0, 1.0), vec![id("d"), id("p")]);
        assert_eq!(
            ix.locate(5.0, 2.0),
            vec![id("d"), id("p")],
            "on the district edge"
        );
        assert_eq!(ix.locate(7.0, 7.0), vec![id("p")]);
        assert!(ix.locate(11.0, 1.0).is_empty());
    }
}
