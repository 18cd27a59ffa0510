//! Deleting nodes: one node with its children moved up a level, or a whole subtree.
//!
//! Deleting never removes segment files: it reports how many bytes became unreferenced, and
//! `gc` reclaims them (after its grace period), so a delete is a quick catalogue change.

use crate::db::now_ms;
use crate::error::{LibraryError, Result};
use crate::forest::Forest;
use crate::ids::{NodeId, SegmentId};
use crate::library::Library;
use crate::schema::nodes;
use crate::tree::tips_by_id;
use rusqlite::Connection;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// What happens to the children of a deleted node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeleteMode {
    /// The children move to the deleted node's parent (the top level for a top-level node).
    Reparent,
    /// The node and all its descendants are deleted.
    Subtree,
}

/// The outcome (or, from [`Library::preview_delete`], the plan) of a delete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deletion {
    /// Deleted nodes, the named node first.
    pub deleted: Vec<NodeId>,
    /// Children moved to the deleted node's parent.
    pub reparented: Vec<NodeId>,
    /// Segment bytes that no remaining node uses (reclaimed by the next `gc`).
    pub freed_bytes: u64,
}

impl Library {
    /// Deletes node `id`. With [`DeleteMode::Reparent`], fails with `NameTaken` if a child's
    /// name is already used among the siblings it would join; nothing is deleted then.
    pub fn delete_node(&self, id: NodeId, mode: DeleteMode) -> Result<Deletion> {
        self.write(|conn| {
            let plan = plan(conn, id, mode)?;
            apply(conn, id, &plan)?;
            Ok(plan)
        })
    }

    /// What [`Library::delete_node`] would do and free, without doing it.
    pub fn preview_delete(&self, id: NodeId, mode: DeleteMode) -> Result<Deletion> {
        self.read(|conn| plan(conn, id, mode))
    }
}

fn plan(conn: &Connection, id: NodeId, mode: DeleteMode) -> Result<Deletion> {
    let parent = nodes::parent_of(conn, id)?;
    let (deleted, reparented) = match mode {
        DeleteMode::Subtree => (nodes::subtree(conn, id)?, Vec::new()),
        DeleteMode::Reparent => {
            let kids = nodes::children(conn, id)?;
            for (_, name, key) in &kids {
                // The deleted node's own name is freed, so it is excepted.
                if nodes::name_taken(conn, parent, key, Some(id))? {
                    return Err(LibraryError::NameTaken {
                        name: name.clone(),
                        parent,
                    });
                }
            }
            (vec![id], kids.into_iter().map(|(kid, _, _)| kid).collect())
        }
    };
    let doomed: HashSet<NodeId> = deleted.iter().copied().collect();
    let tips = tips_by_id(conn)?;
    let (gone, kept): (Vec<_>, Vec<_>) = tips.iter().partition(|(node, _)| doomed.contains(node));
    let tips_of = |list: Vec<(&NodeId, &Option<SegmentId>)>| -> Vec<SegmentId> {
        list.into_iter().filter_map(|(_, tip)| tip.clone()).collect()
    };
    let (gone, kept) = (tips_of(gone), tips_of(kept));
    let freed_bytes = Forest::load(conn)?.exclusive_bytes(&gone, &kept);
    Ok(Deletion {
        deleted,
        reparented,
        freed_bytes,
    })
}

fn apply(conn: &Connection, id: NodeId, plan: &Deletion) -> Result<()> {
    // Children briefly reference a deleted row (reparent) or rows go parent-first (subtree);
    // the check runs at commit instead. Reset automatically when the transaction ends.
    conn.pragma_update(None, "defer_foreign_keys", true)?;
    let parent = nodes::parent_of(conn, id)?;
    let mut delete = conn.prepare_cached("DELETE FROM nodes WHERE id = ?1")?;
    for node in &plan.deleted {
        delete.execute([node])?;
    }
    if !plan.reparented.is_empty() {
        conn.execute(
            "UPDATE nodes SET parent_id = ?2, updated_at = ?3 WHERE parent_id = ?1",
            (id, parent, now_ms()),
        )?;
    }
    Ok(())
}
