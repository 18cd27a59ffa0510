//! The `library_meta` table: facts about the catalogue itself.
//!
//! `created_at` (ms since the epoch) is when this catalogue began. A segment file written before
//! it cannot be a leftover of this catalogue's own writes (a crash between a file's rename and
//! its row's commit): it belongs to a catalogue that was lost or replaced. `verify` reports such
//! files and `gc` never deletes them; `states recover` catalogues them again. For a database that
//! predates this table, the migration takes its oldest row's time, so files its rows were written
//! with are not mistaken for strangers.

use super::Migration;
use crate::error::Result;
use rusqlite::Connection;

pub(crate) const CREATE: Migration = Migration {
    version: 5,
    sql: "CREATE TABLE library_meta (
              key   TEXT PRIMARY KEY NOT NULL,
              value INTEGER NOT NULL
          ) STRICT, WITHOUT ROWID;
          INSERT INTO library_meta (key, value) VALUES ('created_at', coalesce(
              (SELECT min(t) FROM (SELECT min(touched_at) AS t FROM segments
                                   UNION ALL SELECT min(created_at) FROM nodes)),
              CAST(unixepoch('subsec') * 1000 AS INTEGER)));",
    rewrites_schema: false,
};

/// When this catalogue began (ms since the epoch).
pub(crate) fn created_at(conn: &Connection) -> Result<i64> {
    Ok(
        conn.query_row("SELECT value FROM library_meta WHERE key = 'created_at'", [], |r| {
            r.get(0)
        })?,
    )
}
