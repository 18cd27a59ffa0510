//! The `prefix_blocks` table: the index that finds, for a list of tokens, the node whose state
//! shares the longest prefix with it (a server's prompt cache is the whole library).
//!
//! A node's tokens are cut into blocks of [`crate::PREFIX_BLOCK`] tokens; row `block = i` holds
//! the chained hash of the model and the first `i` blocks (row 0: the model alone, which also
//! marks the node as indexed). Because the hashes are chained, a request's `i`-th hash equals a
//! node's `i`-th hash only if (barring a 64-bit collision) their first `i` blocks are equal, so
//! the deepest shared block is found by binary search over `i`. A collision costs nothing but a
//! wasted thaw: callers compare the thawed tokens themselves. Rows go with their node.

use super::Migration;
use crate::error::{from_sql_int, to_sql_int, Result};
use crate::ids::NodeId;
use rusqlite::{Connection, OptionalExtension};

pub(crate) const CREATE: Migration = Migration {
    version: 7,
    sql: "CREATE TABLE prefix_blocks (
              node_id INTEGER NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
              block   INTEGER NOT NULL CHECK (block >= 0),
              hash    INTEGER NOT NULL,
              PRIMARY KEY (node_id, block)
          ) STRICT, WITHOUT ROWID;
          CREATE INDEX prefix_blocks_hash ON prefix_blocks (hash, block);",
    rewrites_schema: false,
};

/// Replaces the node's rows with `hashes` (element `i` for block `i`).
pub(crate) fn replace(conn: &Connection, id: NodeId, hashes: &[i64]) -> Result<()> {
    conn.execute("DELETE FROM prefix_blocks WHERE node_id = ?1", [id])?;
    let mut stmt = conn.prepare_cached("INSERT INTO prefix_blocks (node_id, block, hash) VALUES (?1, ?2, ?3)")?;
    for (i, h) in hashes.iter().enumerate() {
        stmt.execute((id, to_sql_int("block", i as u64)?, h))?;
    }
    Ok(())
}

/// The most recently used node that has `hash` as its block `block`.
pub(crate) fn node_with(conn: &Connection, block: usize, hash: i64) -> Result<Option<NodeId>> {
    let mut stmt = conn.prepare_cached(
        "SELECT b.node_id FROM prefix_blocks b JOIN nodes n ON n.id = b.node_id
         WHERE b.hash = ?1 AND b.block = ?2
         ORDER BY n.updated_at DESC, n.id DESC LIMIT 1",
    )?;
    Ok(stmt
        .query_row((hash, to_sql_int("block", block as u64)?), |r| r.get(0))
        .optional()?)
}

/// Nodes of the model with no rows yet (made before the index existed, forked or imported).
pub(crate) fn unindexed(conn: &Connection, model: &freeze_attn_ids::ModelFingerprint) -> Result<Vec<(NodeId, u64)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT n.id, n.token_count FROM nodes n
         WHERE n.model_fingerprint = ?1
           AND NOT EXISTS (SELECT 1 FROM prefix_blocks b WHERE b.node_id = n.id)
         ORDER BY n.id",
    )?;
    let rows = stmt.query_map([model], |r| Ok((r.get(0)?, from_sql_int(r.get(1)?))))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
