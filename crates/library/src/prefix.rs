//! Finding saved states by the tokens they start with: the library side of automatic prefix
//! reuse. See `schema::prefix_blocks` for how the index works; this module computes the hashes
//! and answers "which node shares the longest prefix with these tokens".

use crate::db::now_ms;
use crate::error::Result;
use crate::ids::NodeId;
use crate::library::Library;
use crate::node::NodeKind;
use crate::schema::{nodes, prefix_blocks};
use freeze_attn_ids::ModelFingerprint;

/// Tokens per indexed block. Smaller finds more of a shared prefix by index alone (callers
/// refine to the exact token after thawing) at the cost of more rows: 32 keeps a 128k-token
/// state at 4,000 rows.
pub const PREFIX_BLOCK: usize = 32;

/// The chained hashes of `tokens` for `model`: element 0 is the model's own, element `i` covers
/// the first `i` whole blocks (a trailing partial block is not hashed).
pub fn block_hashes(model: &ModelFingerprint, tokens: &[u32]) -> Vec<i64> {
    let mut h = blake3::Hasher::new();
    h.update(b"freeze-attn prefix v1\0");
    h.update(model.to_string().as_bytes());
    let mut prev = *h.finalize().as_bytes();
    let mut out = Vec::with_capacity(1 + tokens.len() / PREFIX_BLOCK);
    out.push(short(&prev));
    for block in tokens.chunks_exact(PREFIX_BLOCK) {
        let mut h = blake3::Hasher::new();
        h.update(&prev);
        for t in block {
            h.update(&t.to_le_bytes());
        }
        prev = *h.finalize().as_bytes();
        out.push(short(&prev));
    }
    out
}

fn short(h: &[u8; 32]) -> i64 {
    i64::from_le_bytes(h[..8].try_into().expect("8 bytes"))
}

/// A node found by [`Library::longest_prefix`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrefixMatch {
    pub node: NodeId,
    /// Leading tokens the index says it shares (whole blocks); the node may share more.
    pub tokens: usize,
}

/// A cache node as eviction sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheEntry {
    pub node: NodeId,
    /// Unix milliseconds of its last use.
    pub used_at: i64,
}

impl Library {
    /// Records `tokens` as the state of node `id` in the prefix index (replacing what was there).
    pub fn index_prefix(&self, id: NodeId, model: &ModelFingerprint, tokens: &[u32]) -> Result<()> {
        let hashes = block_hashes(model, tokens);
        self.write(|conn| {
            nodes::parent_of(conn, id)?;
            prefix_blocks::replace(conn, id, &hashes)
        })
    }

    /// Nodes of `model` that the index does not know yet, with their token counts.
    pub fn unindexed_nodes(&self, model: &ModelFingerprint) -> Result<Vec<(NodeId, u64)>> {
        self.read(|conn| prefix_blocks::unindexed(conn, model))
    }

    /// The node of `model` sharing the most whole blocks with `tokens` (the most recently used
    /// among equals), or `None` when none shares a block.
    pub fn longest_prefix(&self, model: &ModelFingerprint, tokens: &[u32]) -> Result<Option<PrefixMatch>> {
        let hashes = block_hashes(model, tokens);
        self.read(|conn| {
            // Block i matching implies every block before it matches (chained hashes), so the
            // deepest match is found by binary search over 1..=n.
            let (mut lo, mut hi) = (0usize, hashes.len() - 1);
            let mut best = None;
            while lo < hi {
                let mid = lo + (hi - lo).div_ceil(2);
                match prefix_blocks::node_with(conn, mid, hashes[mid])? {
                    Some(node) => {
                        best = Some(PrefixMatch {
                            node,
                            tokens: mid * PREFIX_BLOCK,
                        });
                        lo = mid;
                    }
                    None => hi = mid - 1,
                }
            }
            Ok(best)
        })
    }

    /// Marks node `id` as used now (cache nodes are evicted least recently used first).
    pub fn touch_node(&self, id: NodeId) -> Result<()> {
        self.write(|conn| nodes::touch(conn, id, now_ms()))
    }

    /// The cache nodes of `model`, least recently used first.
    pub fn cache_entries(&self, model: &ModelFingerprint) -> Result<Vec<CacheEntry>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, updated_at FROM nodes WHERE kind = ?1 AND model_fingerprint = ?2
                 ORDER BY updated_at, id",
            )?;
            let rows = stmt.query_map((NodeKind::Cache, model), |r| {
                Ok(CacheEntry {
                    node: r.get(0)?,
                    used_at: r.get(1)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    /// Bytes of every catalogued segment file (an upper bound of [`Library::cache_bytes`]).
    pub fn total_segment_bytes(&self) -> Result<u64> {
        self.read(|conn| {
            let total: i64 = conn.query_row("SELECT coalesce(sum(bytes), 0) FROM segments", [], |r| r.get(0))?;
            Ok(crate::error::from_sql_int(total))
        })
    }

    /// Bytes of segment files that only cache nodes use (what evicting every cache node frees).
    pub fn cache_bytes(&self) -> Result<u64> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached("SELECT tip, kind FROM nodes WHERE tip IS NOT NULL")?;
            let rows = stmt.query_map([], |r| {
                Ok((r.get::<_, crate::ids::SegmentId>(0)?, r.get::<_, NodeKind>(1)?))
            })?;
            let (mut cache, mut kept) = (Vec::new(), Vec::new());
            for row in rows {
                let (tip, kind) = row?;
                if kind == NodeKind::Cache {
                    cache.push(tip);
                } else {
                    kept.push(tip);
                }
            }
            Ok(crate::forest::Forest::load(conn)?.exclusive_bytes(&cache, &kept))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::NewNode;

    fn fp(s: &str) -> ModelFingerprint {
        ModelFingerprint::from(s)
    }

    #[test]
    fn hashes_are_chained_per_model() {
        let a: Vec<u32> = (0..100).collect();
        let mut b = a.clone();
        b[5] = 999; // differs in block 0 only
        let (ha, hb) = (block_hashes(&fp("m1"), &a), block_hashes(&fp("m1"), &b));
        assert_eq!(ha.len(), 1 + 100 / PREFIX_BLOCK);
        assert_eq!(ha[0], hb[0]);
        assert!(
            ha[1..].iter().zip(&hb[1..]).all(|(x, y)| x != y),
            "a change in block 0 changes every later hash"
        );
        assert_ne!(block_hashes(&fp("m2"), &a)[1], ha[1], "another model never matches");
    }

    #[test]
    fn longest_prefix_finds_the_deepest_shared_block_of_the_model() {
        let dir = tempfile::tempdir().unwrap();
        let lib = Library::open(dir.path()).unwrap();
        let m = fp("model-a");
        let short: Vec<u32> = (0..70).collect();
        let long: Vec<u32> = (0..200).collect();
        let a = lib.create_node(&NewNode::new("a", NodeKind::Chat, m.clone())).unwrap();
        let b = lib.create_node(&NewNode::new("b", NodeKind::Cache, m.clone())).unwrap();
        let other = lib
            .create_node(&NewNode::new("c", NodeKind::Chat, fp("model-b")))
            .unwrap();
        assert_eq!(lib.unindexed_nodes(&m).unwrap().len(), 2);
        lib.index_prefix(a, &m, &short).unwrap();
        lib.index_prefix(b, &m, &long).unwrap();
        lib.index_prefix(other, &fp("model-b"), &long).unwrap();
        assert!(lib.unindexed_nodes(&m).unwrap().is_empty());

        let mut query: Vec<u32> = (0..150).collect();
        query.push(7);
        let hit = lib.longest_prefix(&m, &query).unwrap().unwrap();
        assert_eq!(hit, PrefixMatch { node: b, tokens: 128 });
        let q2: Vec<u32> = (0..64).chain([5, 5, 5]).collect();
        let hit = lib.longest_prefix(&m, &q2).unwrap().unwrap();
        assert_eq!(hit.tokens, 64);
        let q3: Vec<u32> = (1..100).collect();
        assert_eq!(lib.longest_prefix(&m, &q3).unwrap(), None);
        assert_eq!(lib.longest_prefix(&fp("model-z"), &long).unwrap(), None);

        // Deleting a node drops its rows.
        lib.delete_node(b, crate::DeleteMode::Subtree).unwrap();
        assert_eq!(
            lib.longest_prefix(&m, &query).unwrap().unwrap(),
            PrefixMatch { node: a, tokens: 64 }
        );
    }

    #[test]
    fn cache_nodes_are_hidden_from_listings_and_listed_for_eviction() {
        let dir = tempfile::tempdir().unwrap();
        let lib = Library::open(dir.path()).unwrap();
        let m = fp("model-a");
        let named = lib
            .create_node(&NewNode::new("named", NodeKind::Chat, m.clone()))
            .unwrap();
        let c1 = lib
            .create_node(&NewNode::new("c1", NodeKind::Cache, m.clone()))
            .unwrap();
        let c2 = lib
            .create_node(&NewNode::new("c2", NodeKind::Cache, m.clone()))
            .unwrap();
        let ids = |t: Vec<crate::TreeEntry>| t.into_iter().map(|e| e.node.id).collect::<Vec<_>>();
        assert_eq!(ids(lib.tree(crate::NodeOrder::Name).unwrap()), vec![named]);
        assert_eq!(lib.tree_of(crate::NodeOrder::Name, true).unwrap().len(), 3);
        assert_eq!(lib.children(None, crate::NodeOrder::Name).unwrap().len(), 1);
        assert!(lib.search("c", crate::NodeOrder::Name).unwrap().is_empty());
        std::thread::sleep(std::time::Duration::from_millis(5));
        lib.touch_node(c1).unwrap();
        let order: Vec<NodeId> = lib.cache_entries(&m).unwrap().into_iter().map(|e| e.node).collect();
        assert_eq!(order, vec![c2, c1], "least recently used first");
    }
}
