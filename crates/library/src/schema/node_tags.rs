//! The `node_tags` table: a node's tags, stored folded; deleted with their node.

use super::Migration;
use crate::error::Result;
use crate::ids::NodeId;
use rusqlite::Connection;
use std::collections::HashMap;

pub(crate) const CREATE: Migration = Migration {
    version: 4,
    sql: "CREATE TABLE node_tags (
              node_id INTEGER NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
              tag     TEXT NOT NULL CHECK (tag <> ''),
              PRIMARY KEY (node_id, tag)
          ) STRICT, WITHOUT ROWID;
          CREATE INDEX node_tags_tag ON node_tags (tag);",
    rewrites_schema: false,
};

/// Adds a tag; returns whether it was new.
pub(crate) fn insert(conn: &Connection, id: NodeId, tag: &str) -> Result<bool> {
    Ok(conn.execute(
        "INSERT OR IGNORE INTO node_tags (node_id, tag) VALUES (?1, ?2)",
        (id, tag),
    )? > 0)
}

/// Removes a tag; returns whether it was there.
pub(crate) fn delete(conn: &Connection, id: NodeId, tag: &str) -> Result<bool> {
    Ok(conn.execute("DELETE FROM node_tags WHERE node_id = ?1 AND tag = ?2", (id, tag))? > 0)
}

/// One node's tags, sorted.
pub(crate) fn for_node(conn: &Connection, id: NodeId) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached("SELECT tag FROM node_tags WHERE node_id = ?1 ORDER BY tag")?;
    let rows = stmt.query_map([id], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Every node's tags, sorted; one query instead of one per node for listings.
pub(crate) fn all(conn: &Connection) -> Result<HashMap<NodeId, Vec<String>>> {
    let mut stmt = conn.prepare_cached("SELECT node_id, tag FROM node_tags ORDER BY node_id, tag")?;
    let mut rows = stmt.query([])?;
    let mut out: HashMap<NodeId, Vec<String>> = HashMap::new();
    while let Some(row) = rows.next()? {
        out.entry(row.get(0)?).or_default().push(row.get(1)?);
    }
    Ok(out)
}
