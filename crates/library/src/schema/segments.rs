//! The `segments` table: one row per stored segment file, `segments/<hash>.seg`.
//!
//! `parent` references another row, so a chain can never point at an uncatalogued segment and
//! rows are never updated except `touched_at`: the set of rows is acyclic by construction.
//! `touched_at` is the last time a put stored or re-used the segment; `gc` spares rows touched
//! within its grace period, so a segment put just before the node that uses it is created is
//! not collected in between by another process.

use super::Migration;
use crate::error::{from_sql_int, to_sql_int, Result};
use crate::ids::SegmentId;
use crate::segment::SegmentMeta;
use rusqlite::{Connection, OptionalExtension, Row};
use std::collections::HashSet;

pub(crate) const CREATE: Migration = Migration {
    version: 2,
    sql: "CREATE TABLE segments (
              hash              TEXT PRIMARY KEY NOT NULL CHECK (length(hash) = 64),
              parent            TEXT REFERENCES segments (hash),
              start             INTEGER NOT NULL CHECK (start >= 0),
              token_count       INTEGER NOT NULL CHECK (token_count > 0),
              dtype             TEXT NOT NULL CHECK (dtype <> ''),
              bytes             INTEGER NOT NULL CHECK (bytes >= 0),
              model_fingerprint TEXT NOT NULL CHECK (model_fingerprint <> ''),
              touched_at        INTEGER NOT NULL,
              CHECK ((parent IS NULL) = (start = 0))
          ) STRICT;
          CREATE INDEX segments_parent ON segments (parent);",
    rewrites_schema: false,
};

const COLUMNS: &str = "hash, parent, start, token_count, dtype, bytes, model_fingerprint";

fn from_row(row: &Row<'_>) -> rusqlite::Result<SegmentMeta> {
    Ok(SegmentMeta {
        hash: row.get(0)?,
        parent: row.get(1)?,
        start: from_sql_int(row.get(2)?),
        token_count: from_sql_int(row.get(3)?),
        dtype: row.get(4)?,
        bytes: from_sql_int(row.get(5)?),
        model_fingerprint: row.get(6)?,
    })
}

pub(crate) fn select(conn: &Connection, hash: &SegmentId) -> Result<Option<SegmentMeta>> {
    let sql = format!("SELECT {COLUMNS} FROM segments WHERE hash = ?1");
    Ok(conn.query_row(&sql, [hash], from_row).optional()?)
}

pub(crate) fn select_all(conn: &Connection) -> Result<Vec<SegmentMeta>> {
    let mut stmt = conn.prepare(&format!("SELECT {COLUMNS} FROM segments"))?;
    let rows = stmt.query_map([], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub(crate) fn insert(conn: &Connection, meta: &SegmentMeta, now: i64) -> Result<()> {
    conn.execute(
        &format!("INSERT INTO segments ({COLUMNS}, touched_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
        (
            &meta.hash,
            &meta.parent,
            to_sql_int("start", meta.start)?,
            to_sql_int("token_count", meta.token_count)?,
            &meta.dtype,
            to_sql_int("bytes", meta.bytes)?,
            &meta.model_fingerprint,
            now,
        ),
    )?;
    Ok(())
}

pub(crate) fn touch(conn: &Connection, hash: &SegmentId, now: i64) -> Result<()> {
    conn.execute("UPDATE segments SET touched_at = ?2 WHERE hash = ?1", (hash, now))?;
    Ok(())
}

/// Rows touched after `cutoff` (ms): within gc's grace period. Strictly after, so a zero
/// grace protects nothing, even a row touched in the current millisecond.
pub(crate) fn touched_since(conn: &Connection, cutoff: i64) -> Result<Vec<SegmentId>> {
    let mut stmt = conn.prepare("SELECT hash FROM segments WHERE touched_at > ?1")?;
    let rows = stmt.query_map([cutoff], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub(crate) fn delete(conn: &Connection, hash: &SegmentId) -> Result<()> {
    conn.execute("DELETE FROM segments WHERE hash = ?1", [hash])?;
    Ok(())
}

/// The chain ending at `tip`, tip first: each hash with its row, or `None` where the row is
/// missing (then the walk stops there). Bounded in case a damaged file holds a cycle.
pub(crate) fn chain_from_tip(conn: &Connection, tip: &SegmentId) -> Result<Vec<(SegmentId, Option<SegmentMeta>)>> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut next = Some(tip.clone());
    let mut stmt = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM segments WHERE hash = ?1"))?;
    while let Some(hash) = next.take() {
        let row = stmt.query_row([&hash], from_row).optional()?;
        next = row.as_ref().and_then(|m| m.parent.clone());
        seen.insert(hash.clone());
        out.push((hash, row));
        if next.as_ref().is_some_and(|p| seen.contains(p)) {
            break;
        }
    }
    Ok(out)
}
