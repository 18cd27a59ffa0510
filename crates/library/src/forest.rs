//! `Forest`: every catalogued segment in memory as a parent-pointer tree, for byte accounting.
//!
//! Chains share prefixes, so "bytes on disk" questions are set questions over the forest: a
//! node's own cost is its chain minus its parent's; a delete frees what only the deleted nodes
//! reach. Loading all rows once and walking in memory keeps a 10,000-node listing to one query.

use crate::error::Result;
use crate::ids::SegmentId;
use crate::schema::segments;
use rusqlite::Connection;
use std::collections::HashMap;

/// Depth not yet computed.
const UNKNOWN: u32 = u32::MAX;

pub(crate) struct Forest {
    index: HashMap<SegmentId, usize>,
    parent: Vec<Option<usize>>,
    bytes: Vec<u64>,
    /// Distance from the root of the chain (root = 0).
    depth: Vec<u32>,
}

impl Forest {
    pub(crate) fn load(conn: &Connection) -> Result<Forest> {
        let rows = segments::select_all(conn)?;
        let index: HashMap<SegmentId, usize> = rows.iter().enumerate().map(|(i, m)| (m.hash.clone(), i)).collect();
        let parent = rows
            .iter()
            .map(|m| m.parent.as_ref().and_then(|p| index.get(p).copied()))
            .collect();
        let bytes = rows.iter().map(|m| m.bytes).collect();
        let mut forest = Forest {
            index,
            parent,
            bytes,
            depth: vec![UNKNOWN; rows.len()],
        };
        forest.compute_depths();
        Ok(forest)
    }

    /// Iterative, so a 100,000-segment chain cannot overflow the stack. A damaged catalogue
    /// with a cycle gets finite depths (the walk stops after `n` steps) instead of a hang.
    fn compute_depths(&mut self) {
        let n = self.parent.len();
        let mut path = Vec::new();
        for start in 0..n {
            let mut cur = Some(start);
            path.clear();
            while let Some(i) = cur {
                if self.depth[i] != UNKNOWN || path.len() > n {
                    break;
                }
                path.push(i);
                cur = self.parent[i];
            }
            let mut d = cur.map_or(0, |i| if self.depth[i] == UNKNOWN { 0 } else { self.depth[i] + 1 });
            for &i in path.iter().rev() {
                if self.depth[i] == UNKNOWN {
                    self.depth[i] = d;
                }
                d = self.depth[i] + 1;
            }
        }
    }

    fn idx(&self, hash: Option<&SegmentId>) -> Option<usize> {
        hash.and_then(|h| self.index.get(h).copied())
    }

    /// Bytes of the chain ending at `tip` that the chain ending at `parent_tip` does not share.
    pub(crate) fn own_bytes(&self, tip: Option<&SegmentId>, parent_tip: Option<&SegmentId>) -> u64 {
        let (mut a, mut b) = (self.idx(tip), self.idx(parent_tip));
        let mut sum = 0u64;
        // Each step moves one pointer up; bounded for damaged catalogues.
        for _ in 0..=2 * self.parent.len() {
            match (a, b) {
                (None, _) => break,
                (Some(x), Some(y)) if x == y => break,
                (Some(x), Some(y)) if self.depth[y] > self.depth[x] => b = self.parent[y],
                (Some(x), _) => {
                    sum = sum.saturating_add(self.bytes[x]);
                    a = self.parent[x];
                }
            }
        }
        sum
    }

    /// Bytes of the segments reachable from `tips` but not from `kept`, each counted once.
    pub(crate) fn exclusive_bytes<'a>(
        &self,
        tips: impl IntoIterator<Item = &'a SegmentId>,
        kept: impl IntoIterator<Item = &'a SegmentId>,
    ) -> u64 {
        let mut marked = self.reachable(kept);
        let mut sum = 0u64;
        for tip in tips {
            let mut cur = self.idx(Some(tip));
            while let Some(i) = cur {
                if marked[i] {
                    break;
                }
                marked[i] = true;
                sum = sum.saturating_add(self.bytes[i]);
                cur = self.parent[i];
            }
        }
        sum
    }

    /// Marks every segment on the chains ending at `tips`.
    pub(crate) fn reachable<'a>(&self, tips: impl IntoIterator<Item = &'a SegmentId>) -> Vec<bool> {
        let mut marked = vec![false; self.parent.len()];
        for tip in tips {
            let mut cur = self.idx(Some(tip));
            while let Some(i) = cur {
                if marked[i] {
                    break; // The rest of this chain is already marked.
                }
                marked[i] = true;
                cur = self.parent[i];
            }
        }
        marked
    }

    /// Whether `hash` is marked in a vector from [`Forest::reachable`].
    pub(crate) fn is_marked(&self, marked: &[bool], hash: &SegmentId) -> bool {
        self.idx(Some(hash)).is_some_and(|i| marked[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::SegmentMeta;

    fn h(n: u8) -> SegmentId {
        SegmentId::parse(&format!("{n:02x}").repeat(32)).unwrap()
    }

    /// a(100) <- b(10) <- c(1);  a <- d(1000)
    fn forest() -> Forest {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::schema::migrate(&mut conn).unwrap();
        let seg = |n: u8, parent: Option<(u8, u64)>, bytes| SegmentMeta {
            hash: h(n),
            parent: parent.map(|(p, _)| h(p)),
            start: parent.map_or(0, |(_, end)| end),
            token_count: 1,
            dtype: "f16".into(),
            bytes,
            model_fingerprint: "m".into(),
        };
        for m in [
            seg(1, None, 100),
            seg(2, Some((1, 1)), 10),
            seg(3, Some((2, 2)), 1),
            seg(4, Some((1, 1)), 1000),
        ] {
            segments::insert(&conn, &m, 0).unwrap();
        }
        Forest::load(&conn).unwrap()
    }

    #[test]
    fn own_bytes_counts_only_what_the_parent_lacks() {
        let f = forest();
        assert_eq!(f.own_bytes(Some(&h(3)), None), 111, "a root pays for its whole chain");
        assert_eq!(
            f.own_bytes(Some(&h(3)), Some(&h(2))),
            1,
            "a child pays for its extension"
        );
        assert_eq!(
            f.own_bytes(Some(&h(4)), Some(&h(3))),
            1000,
            "a sibling branch pays from the fork"
        );
        assert_eq!(
            f.own_bytes(Some(&h(1)), Some(&h(3))),
            0,
            "a rewind to an ancestor costs nothing"
        );
        assert_eq!(f.own_bytes(None, Some(&h(3))), 0, "an empty state costs nothing");
    }

    #[test]
    fn exclusive_bytes_counts_shared_segments_once() {
        let f = forest();
        assert_eq!(f.exclusive_bytes([&h(3), &h(4)], []), 1111);
        assert_eq!(f.exclusive_bytes([&h(3), &h(4)], [&h(2)]), 1001);
        let marked = f.reachable([&h(3)]);
        assert!(f.is_marked(&marked, &h(1)) && !f.is_marked(&marked, &h(4)));
    }

    #[test]
    fn a_very_deep_chain_gets_depths_without_recursion() {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::schema::migrate(&mut conn).unwrap();
        let tx = conn.transaction().unwrap();
        let hash = |i: u64| SegmentId::parse(&format!("{i:064x}")).unwrap();
        for i in 0..50_000u64 {
            let m = SegmentMeta {
                hash: hash(i),
                parent: i.checked_sub(1).map(hash),
                start: i,
                token_count: 1,
                dtype: "f16".into(),
                bytes: 1,
                model_fingerprint: "m".into(),
            };
            segments::insert(&tx, &m, 0).unwrap();
        }
        tx.commit().unwrap();
        let f = Forest::load(&conn).unwrap();
        assert_eq!(f.own_bytes(Some(&hash(49_999)), None), 50_000);
        assert_eq!(f.own_bytes(Some(&hash(49_999)), Some(&hash(10))), 49_989);
    }
}
