//! The `nodes` table: the state tree.
//!
//! `name_key` is the folded name; the unique index over `(ifnull(parent_id, 0), name_key)`
//! enforces "unique among siblings" even at the top level (where `parent_id` is NULL, which a
//! plain UNIQUE would treat as all distinct). `AUTOINCREMENT` keeps ids of deleted nodes from
//! being handed out again, so a stale id in the UI or a script cannot hit a different node.
//! `tip` references `segments`, so gc can never collect a segment a node's tip names.

use super::Migration;
use crate::error::{from_sql_int, to_sql_int, LibraryError, Result};
use crate::ids::{NodeId, SegmentId};
use crate::node::{Node, NodeKind, NodeSummary};
use freeze_attn_ids::ModelFingerprint;
use rusqlite::{Connection, OptionalExtension, Row, ToSql};

pub(crate) const CREATE: Migration = Migration {
    version: 3,
    sql: "CREATE TABLE nodes (
              id                INTEGER PRIMARY KEY AUTOINCREMENT,
              parent_id         INTEGER REFERENCES nodes (id),
              name              TEXT NOT NULL CHECK (name <> ''),
              name_key          TEXT NOT NULL,
              kind              TEXT NOT NULL CHECK (kind IN ('personality', 'story', 'document', 'chat')),
              notes             TEXT NOT NULL DEFAULT '',
              pinned            INTEGER NOT NULL DEFAULT 0 CHECK (pinned IN (0, 1)),
              model_fingerprint TEXT NOT NULL CHECK (model_fingerprint <> ''),
              tip               TEXT REFERENCES segments (hash),
              token_count       INTEGER NOT NULL CHECK (token_count >= 0),
              transcript        TEXT NOT NULL,
              created_at        INTEGER NOT NULL,
              updated_at        INTEGER NOT NULL,
              CHECK ((tip IS NULL) = (token_count = 0))
          ) STRICT;
          CREATE INDEX nodes_parent ON nodes (parent_id);
          CREATE INDEX nodes_tip ON nodes (tip);
          CREATE UNIQUE INDEX nodes_sibling_name ON nodes (ifnull(parent_id, 0), name_key);",
    rewrites_schema: false,
};

/// Version 6: the `cache` kind, for the states a server keeps of recent requests (hidden from
/// listings, evicted least recently used). Widening the kind CHECK by editing the stored
/// `CREATE TABLE` text is SQLite's documented procedure for a constraint change that every
/// existing row already satisfies; copying the table instead would cascade-delete the tags.
pub(crate) const ALLOW_CACHE_KIND: Migration = Migration {
    version: 6,
    sql: "UPDATE sqlite_schema
          SET sql = replace(sql, '''chat''))', '''chat'', ''cache''))')
          WHERE type = 'table' AND name = 'nodes';",
    rewrites_schema: true,
};

/// Version 9: `preview`, a line of what the node holds (a chat's last message, the text a story
/// added after its parent's), so a map of a thousand nodes can show each one's text without
/// reading every transcript. The API writes it with the node (it knows the transcript format);
/// rows from before this step get the same line computed here from the stored JSON: the last
/// message's content, or the text's first characters (the parent's text is not compared here).
pub(crate) const ADD_PREVIEW: Migration = Migration {
    version: 9,
    sql: "ALTER TABLE nodes ADD COLUMN preview TEXT NOT NULL DEFAULT '';
          UPDATE nodes SET preview = substr(trim(replace(replace(replace(
                  coalesce(CASE WHEN json_valid(transcript) THEN
                      coalesce(json_extract(transcript, '$.messages[#-1].content'),
                               json_extract(transcript, '$.text')) END, ''),
                  char(13), ' '), char(10), ' '), char(9), ' ')), 1, 160);",
    rewrites_schema: false,
};

/// Longest preview kept, in characters.
pub const MAX_PREVIEW_CHARS: usize = 160;

/// Listings leave out cache nodes unless asked (`n` is the nodes alias).
pub(crate) const NOT_CACHE: &str = "n.kind <> 'cache'";

/// Columns of a [`NodeSummary`] (tags and bytes are filled in afterwards), aliased `n`.
pub(crate) const SUMMARY_COLUMNS: &str =
    "n.id, n.parent_id, n.name, n.kind, n.pinned, n.model_fingerprint, n.tip, n.token_count, n.created_at, n.updated_at, n.notes, n.preview";

/// How many columns [`SUMMARY_COLUMNS`] has: a query selecting more after them reads those from
/// this index on.
pub(crate) const SUMMARY_COLUMN_COUNT: usize = 12;

/// Reads [`SUMMARY_COLUMNS`] starting at column 0.
pub(crate) fn summary_from_row(row: &Row<'_>) -> rusqlite::Result<NodeSummary> {
    Ok(NodeSummary {
        id: row.get(0)?,
        parent: row.get(1)?,
        name: row.get(2)?,
        kind: row.get(3)?,
        pinned: row.get(4)?,
        model_fingerprint: row.get(5)?,
        tip: row.get(6)?,
        token_count: from_sql_int(row.get(7)?),
        created_at: row.get(8)?,
        updated_at: row.get(9)?,
        notes: row.get(10)?,
        preview: row.get(11)?,
        tags: Vec::new(),
        own_bytes: 0,
    })
}

/// The node without its tags (see `node_tags::for_node`).
pub(crate) fn select(conn: &Connection, id: NodeId) -> Result<Option<Node>> {
    Ok(conn
        .query_row(
            "SELECT id, parent_id, name, kind, notes, pinned, model_fingerprint, tip, token_count,
                    transcript, created_at, updated_at
             FROM nodes WHERE id = ?1",
            [id],
            |row| {
                Ok(Node {
                    id: row.get(0)?,
                    parent: row.get(1)?,
                    name: row.get(2)?,
                    kind: row.get(3)?,
                    notes: row.get(4)?,
                    pinned: row.get(5)?,
                    model_fingerprint: row.get(6)?,
                    tip: row.get(7)?,
                    token_count: from_sql_int(row.get(8)?),
                    transcript: row.get(9)?,
                    created_at: row.get(10)?,
                    updated_at: row.get(11)?,
                    tags: Vec::new(),
                })
            },
        )
        .optional()?)
}

/// A new row; the caller has validated and canonicalised every field.
pub(crate) struct NodeRow<'a> {
    pub parent: Option<NodeId>,
    pub name: &'a str,
    pub name_key: &'a str,
    pub kind: NodeKind,
    pub notes: &'a str,
    pub pinned: bool,
    pub model_fingerprint: &'a ModelFingerprint,
    pub tip: Option<&'a SegmentId>,
    pub token_count: u64,
    pub transcript: &'a str,
    pub preview: &'a str,
    pub now: i64,
}

pub(crate) fn insert(conn: &Connection, row: &NodeRow<'_>) -> Result<NodeId> {
    conn.execute(
        "INSERT INTO nodes (parent_id, name, name_key, kind, notes, pinned, model_fingerprint, tip,
                            token_count, transcript, created_at, updated_at, preview)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11, ?12)",
        rusqlite::params![
            row.parent,
            row.name,
            row.name_key,
            row.kind,
            row.notes,
            row.pinned,
            row.model_fingerprint,
            row.tip,
            to_sql_int("token_count", row.token_count)?,
            row.transcript,
            row.now,
            row.preview,
        ],
    )?;
    Ok(NodeId(conn.last_insert_rowid()))
}

/// `NodeNotFound` unless the node exists; returns its parent.
pub(crate) fn parent_of(conn: &Connection, id: NodeId) -> Result<Option<NodeId>> {
    conn.query_row("SELECT parent_id FROM nodes WHERE id = ?1", [id], |r| r.get(0))
        .optional()?
        .ok_or(LibraryError::NodeNotFound(id))
}

/// A node's tip; `None` for an empty state or a node that does not exist.
pub(crate) fn tip_of(conn: &Connection, id: NodeId) -> Result<Option<SegmentId>> {
    let mut stmt = conn.prepare_cached("SELECT tip FROM nodes WHERE id = ?1")?;
    Ok(stmt.query_row([id], |r| r.get(0)).optional()?.flatten())
}

/// Whether a sibling under `parent` other than `except` already uses `key`.
pub(crate) fn name_taken(conn: &Connection, parent: Option<NodeId>, key: &str, except: Option<NodeId>) -> Result<bool> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM nodes WHERE parent_id IS ?1 AND name_key = ?2 AND id IS NOT ?3",
            (parent, key, except),
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// Runs `UPDATE nodes SET <assignments>, updated_at = ?2 WHERE id = ?1`, where the
/// assignments use `?3`, `?4`, ... bound to `values`; `NodeNotFound` if no row matched.
pub(crate) fn update(conn: &Connection, id: NodeId, assignments: &str, values: &[&dyn ToSql], now: i64) -> Result<()> {
    let sql = format!("UPDATE nodes SET {assignments}, updated_at = ?2 WHERE id = ?1");
    let mut params: Vec<&dyn ToSql> = vec![&id, &now];
    params.extend_from_slice(values);
    match conn.execute(&sql, params.as_slice())? {
        0 => Err(LibraryError::NodeNotFound(id)),
        _ => Ok(()),
    }
}

/// Bumps `updated_at` after a change stored in another table (tags).
pub(crate) fn touch(conn: &Connection, id: NodeId, now: i64) -> Result<()> {
    update(conn, id, "updated_at = updated_at", &[], now)
}

/// `id` and all its descendants, `id` first then breadth-first.
pub(crate) fn subtree(conn: &Connection, id: NodeId) -> Result<Vec<NodeId>> {
    let mut stmt = conn.prepare_cached(
        "WITH RECURSIVE sub(id, depth) AS (
             SELECT ?1, 0
             UNION ALL
             SELECT n.id, sub.depth + 1 FROM nodes n JOIN sub ON n.parent_id = sub.id
         )
         SELECT id FROM sub ORDER BY depth, id",
    )?;
    let rows = stmt.query_map([id], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Children of `id` as `(id, name, name_key)`.
pub(crate) fn children(conn: &Connection, id: NodeId) -> Result<Vec<(NodeId, String, String)>> {
    let mut stmt = conn.prepare_cached("SELECT id, name, name_key FROM nodes WHERE parent_id = ?1")?;
    let rows = stmt.query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Every node as `(id, tip)`, for byte accounting and gc.
pub(crate) fn all_tips(conn: &Connection) -> Result<Vec<(NodeId, Option<SegmentId>)>> {
    let mut stmt = conn.prepare_cached("SELECT id, tip FROM nodes")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// A node's state, for verify.
pub(crate) struct NodeState {
    pub id: NodeId,
    pub tip: Option<SegmentId>,
    pub token_count: u64,
    pub model_fingerprint: ModelFingerprint,
}

/// Every node's parent link.
pub(crate) fn all_parents(conn: &Connection) -> Result<Vec<(NodeId, Option<NodeId>)>> {
    let mut stmt = conn.prepare_cached("SELECT id, parent_id FROM nodes")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Every node's state.
pub(crate) fn all_states(conn: &Connection) -> Result<Vec<NodeState>> {
    let mut stmt = conn.prepare_cached("SELECT id, tip, token_count, model_fingerprint FROM nodes")?;
    let rows = stmt.query_map([], |r| {
        Ok(NodeState {
            id: r.get(0)?,
            tip: r.get(1)?,
            token_count: from_sql_int(r.get(2)?),
            model_fingerprint: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
