//! Listing the tree: a node's children or the whole tree, with tags, token counts and each
//! node's own bytes on disk. Pinned nodes come first among their siblings, then by the chosen
//! order.

use crate::error::Result;
use crate::forest::Forest;
use crate::ids::{NodeId, SegmentId};
use crate::library::Library;
use crate::node::NodeSummary;
use crate::schema::{node_tags, nodes};
use rusqlite::Connection;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::collections::HashMap;

/// Order of siblings after the pinned ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeOrder {
    /// Case-insensitive name order.
    #[default]
    Name,
    /// Oldest first.
    Created,
}

impl NodeOrder {
    pub(crate) fn sql(self) -> &'static str {
        match self {
            NodeOrder::Name => "n.pinned DESC, n.name_key, n.id",
            NodeOrder::Created => "n.pinned DESC, n.created_at, n.id",
        }
    }

    /// The same order as [`NodeOrder::sql`], for rows sorted in memory; `name_key` is the
    /// node's folded name (the `name_key` column).
    pub(crate) fn compare(self, a: (&NodeSummary, &str), b: (&NodeSummary, &str)) -> Ordering {
        let pinned_first = b.0.pinned.cmp(&a.0.pinned);
        let by_order = match self {
            NodeOrder::Name => a.1.cmp(b.1),
            NodeOrder::Created => a.0.created_at.cmp(&b.0.created_at),
        };
        pinned_first.then(by_order).then(a.0.id.0.cmp(&b.0.id.0))
    }
}

/// A node in a depth-first listing of the tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeEntry {
    /// 0 for top-level nodes.
    pub depth: usize,
    pub node: NodeSummary,
}

impl Library {
    /// The children of `parent` (the top-level nodes for `None`).
    pub fn children(&self, parent: Option<NodeId>, order: NodeOrder) -> Result<Vec<NodeSummary>> {
        self.read(|conn| {
            if let Some(p) = parent {
                nodes::parent_of(conn, p)?;
            }
            let sql = format!(
                "SELECT {} FROM nodes n WHERE n.parent_id IS ?1 AND {} ORDER BY {}",
                nodes::SUMMARY_COLUMNS,
                nodes::NOT_CACHE,
                order.sql()
            );
            let mut stmt = conn.prepare(&sql)?;
            let rows = stmt.query_map([parent], nodes::summary_from_row)?;
            let list = rows.collect::<rusqlite::Result<Vec<_>>>()?;
            finish_summaries(conn, list)
        })
    }

    /// One node as listings show it (cache nodes too).
    pub fn summary(&self, id: NodeId) -> Result<NodeSummary> {
        self.read(|conn| {
            let sql = format!("SELECT {} FROM nodes n WHERE n.id = ?1", nodes::SUMMARY_COLUMNS);
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map([id], nodes::summary_from_row)?;
            let list = rows.collect::<rusqlite::Result<Vec<_>>>()?;
            finish_summaries(conn, list)?
                .pop()
                .ok_or(crate::error::LibraryError::NodeNotFound(id))
        })
    }

    /// The whole tree, depth first: each node followed by its subtree, siblings in `order`.
    /// Cache nodes (a server's recent requests) are left out.
    pub fn tree(&self, order: NodeOrder) -> Result<Vec<TreeEntry>> {
        self.tree_of(order, false)
    }

    /// [`Library::tree`], cache nodes included when `with_cache`.
    pub fn tree_of(&self, order: NodeOrder, with_cache: bool) -> Result<Vec<TreeEntry>> {
        self.read(|conn| {
            let sql = format!(
                "SELECT {} FROM nodes n WHERE {} ORDER BY {}",
                nodes::SUMMARY_COLUMNS,
                if with_cache { "1" } else { nodes::NOT_CACHE },
                order.sql()
            );
            let mut stmt = conn.prepare(&sql)?;
            let rows = stmt.query_map([], nodes::summary_from_row)?;
            let all = finish_summaries(conn, rows.collect::<rusqlite::Result<Vec<_>>>()?)?;
            Ok(depth_first(all))
        })
    }

    /// Bytes the subtree of `id` costs on top of its parent's state: every segment some node
    /// of the subtree uses and the parent's chain does not, counted once.
    pub fn subtree_bytes(&self, id: NodeId) -> Result<u64> {
        self.read(|conn| {
            let parent = nodes::parent_of(conn, id)?;
            let members = nodes::subtree(conn, id)?;
            let tips = tips_by_id(conn)?;
            let subtree_tips: Vec<&SegmentId> = members.iter().filter_map(|m| tips.get(m)?.as_ref()).collect();
            let parent_tip = parent.and_then(|p| tips.get(&p)?.as_ref());
            Ok(Forest::load(conn)?.exclusive_bytes(subtree_tips, parent_tip))
        })
    }
}

/// Every node's tip, by id.
pub(crate) fn tips_by_id(conn: &Connection) -> Result<HashMap<NodeId, Option<SegmentId>>> {
    Ok(nodes::all_tips(conn)?.into_iter().collect())
}

/// Fills in tags and own bytes of summaries read with [`nodes::SUMMARY_COLUMNS`].
pub(crate) fn finish_summaries(conn: &Connection, list: Vec<NodeSummary>) -> Result<Vec<NodeSummary>> {
    if list.is_empty() {
        return Ok(list);
    }
    finish_summaries_with_tags(conn, list, node_tags::all(conn)?)
}

/// [`finish_summaries`] for a caller that already holds every node's tags.
pub(crate) fn finish_summaries_with_tags(
    conn: &Connection,
    mut list: Vec<NodeSummary>,
    mut tags: HashMap<NodeId, Vec<String>>,
) -> Result<Vec<NodeSummary>> {
    if list.is_empty() {
        return Ok(list);
    }
    let forest = Forest::load(conn)?;
    // Most parents of a listing are in the listing (a tree, a search with many hits); only the
    // others are read: one by one when they are few (a node's children share one parent), all
    // nodes' tips at once otherwise.
    let in_list: HashMap<NodeId, usize> = list.iter().enumerate().map(|(i, s)| (s.id, i)).collect();
    let mut missing: Vec<NodeId> = list
        .iter()
        .filter_map(|s| s.parent)
        .filter(|p| !in_list.contains_key(p))
        .collect();
    missing.sort_unstable_by_key(|p| p.0);
    missing.dedup();
    let others: HashMap<NodeId, Option<SegmentId>> = if missing.len() > 64 {
        tips_by_id(conn)?
    } else {
        missing
            .into_iter()
            .map(|p| Ok((p, nodes::tip_of(conn, p)?)))
            .collect::<Result<_>>()?
    };
    let own: Vec<u64> = list
        .iter()
        .map(|s| {
            let parent_tip = s.parent.and_then(|p| match in_list.get(&p) {
                Some(&i) => list[i].tip.as_ref(),
                None => others.get(&p)?.as_ref(),
            });
            forest.own_bytes(s.tip.as_ref(), parent_tip)
        })
        .collect();
    for (s, own) in list.iter_mut().zip(own) {
        s.own_bytes = own;
        s.tags = tags.remove(&s.id).unwrap_or_default();
    }
    Ok(list)
}

/// Arranges sorted summaries into a pre-order walk. Iterative: a chat thread can be thousands
/// of nodes deep. Nodes whose parent is missing (impossible with foreign keys) are listed as
/// top-level rather than dropped.
fn depth_first(all: Vec<NodeSummary>) -> Vec<TreeEntry> {
    let ids: std::collections::HashSet<NodeId> = all.iter().map(|s| s.id).collect();
    let mut children: HashMap<Option<NodeId>, Vec<NodeSummary>> = HashMap::new();
    for s in all {
        let key = s.parent.filter(|p| ids.contains(p));
        children.entry(key).or_default().push(s);
    }
    let mut out = Vec::with_capacity(ids.len());
    // A stack of sibling iterators; reversed vectors so pop() yields them in order.
    let mut stack: Vec<(usize, Vec<NodeSummary>)> = Vec::new();
    if let Some(mut top) = children.remove(&None) {
        top.reverse();
        stack.push((0, top));
    }
    while let Some((depth, siblings)) = stack.last_mut() {
        let depth = *depth;
        let Some(node) = siblings.pop() else {
            stack.pop();
            continue;
        };
        let id = node.id;
        out.push(TreeEntry { depth, node });
        if let Some(mut kids) = children.remove(&Some(id)) {
            kids.reverse();
            stack.push((depth + 1, kids));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::NodeKind;

    fn summary(id: i64, parent: Option<i64>) -> NodeSummary {
        NodeSummary {
            id: NodeId(id),
            parent: parent.map(NodeId),
            name: format!("n{id}"),
            kind: NodeKind::Chat,
            pinned: false,
            tags: Vec::new(),
            notes: String::new(),
            preview: String::new(),
            model_fingerprint: "m".into(),
            tip: None,
            token_count: 0,
            own_bytes: 0,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn depth_first_handles_a_very_deep_thread_without_recursion() {
        let n = 100_000;
        let list: Vec<_> = (1..=n).map(|i| summary(i, (i > 1).then_some(i - 1))).collect();
        let walk = depth_first(list);
        assert_eq!(walk.len(), n as usize);
        assert_eq!(walk.last().map(|e| e.depth), Some(n as usize - 1));
    }

    #[test]
    fn depth_first_keeps_sibling_order_and_orphans() {
        let list = vec![
            summary(1, None),
            summary(3, Some(1)),
            summary(2, Some(1)),
            summary(9, Some(404)),
        ];
        let walk: Vec<(usize, i64)> = depth_first(list).iter().map(|e| (e.depth, e.node.id.0)).collect();
        assert_eq!(
            walk,
            vec![(0, 1), (1, 3), (1, 2), (0, 9)],
            "siblings keep the SQL order"
        );
    }
}
