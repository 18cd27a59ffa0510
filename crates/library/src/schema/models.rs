//! The `models` table: models this library knows how to load, by fingerprint.
//!
//! Nodes and segments carry a fingerprint without a foreign key to this table: an imported
//! personality pack may be for a model that is not installed here, and stays listed (and
//! unloadable) until it is.

use super::Migration;
use crate::error::Result;
use crate::model::ModelRecord;
use freeze_attn_ids::ModelFingerprint;
use rusqlite::{Connection, OptionalExtension, Row};

pub(crate) const CREATE: Migration = Migration {
    version: 1,
    sql: "CREATE TABLE models (
              fingerprint  TEXT PRIMARY KEY NOT NULL CHECK (fingerprint <> ''),
              display_name TEXT NOT NULL,
              path         TEXT NOT NULL
          ) STRICT;",
    rewrites_schema: false,
};

fn from_row(row: &Row<'_>) -> rusqlite::Result<ModelRecord> {
    Ok(ModelRecord {
        fingerprint: row.get(0)?,
        display_name: row.get(1)?,
        path: row.get::<_, String>(2)?.into(),
    })
}

pub(crate) fn upsert(conn: &Connection, model: &ModelRecord, path: &str) -> Result<()> {
    conn.execute(
        "INSERT INTO models (fingerprint, display_name, path) VALUES (?1, ?2, ?3)
         ON CONFLICT (fingerprint) DO UPDATE SET display_name = excluded.display_name, path = excluded.path",
        (&model.fingerprint, &model.display_name, path),
    )?;
    Ok(())
}

pub(crate) fn select(conn: &Connection, fingerprint: &ModelFingerprint) -> Result<Option<ModelRecord>> {
    Ok(conn
        .query_row(
            "SELECT fingerprint, display_name, path FROM models WHERE fingerprint = ?1",
            [fingerprint],
            from_row,
        )
        .optional()?)
}

pub(crate) fn select_all(conn: &Connection) -> Result<Vec<ModelRecord>> {
    let mut stmt =
        conn.prepare("SELECT fingerprint, display_name, path FROM models ORDER BY display_name, fingerprint")?;
    let rows = stmt.query_map([], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub(crate) fn delete(conn: &Connection, fingerprint: &ModelFingerprint) -> Result<bool> {
    Ok(conn.execute("DELETE FROM models WHERE fingerprint = ?1", [fingerprint])? > 0)
}
