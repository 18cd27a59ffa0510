//! The catalogue schema and its migrations.
//!
//! Each table's module holds its migrations next to the SQL that reads and writes it. The
//! schema version is SQLite's `PRAGMA user_version`: the number of the last migration applied.
//! Pending migrations run in one IMMEDIATE transaction that also sets the version, so a
//! library is either fully migrated or untouched. A file whose version is newer than this
//! build knows is refused before anything is written to it (not even the switch to WAL).

pub(crate) mod library_meta;
pub(crate) mod models;
pub(crate) mod node_questions;
pub(crate) mod node_tags;
pub(crate) mod nodes;
pub(crate) mod prefix_blocks;
pub(crate) mod segments;

use crate::error::{LibraryError, Result};
use rusqlite::{Connection, TransactionBehavior};

/// One forward step of the schema.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Migration {
    /// The `user_version` after this step; consecutive from 1.
    pub version: i64,
    pub sql: &'static str,
    /// The step edits `sqlite_schema` directly (SQLite's documented way to widen a CHECK
    /// constraint without copying the table): the schema cookie is bumped after it, so every
    /// connection re-reads the schema.
    pub rewrites_schema: bool,
}

/// Every migration in order. Append only: a released step is never edited.
pub(crate) const MIGRATIONS: &[Migration] = &[
    models::CREATE,
    segments::CREATE,
    nodes::CREATE,
    node_tags::CREATE,
    library_meta::CREATE,
    nodes::ALLOW_CACHE_KIND,
    prefix_blocks::CREATE,
    node_questions::CREATE,
    nodes::ADD_PREVIEW,
];

/// The schema version this build writes and the newest it can open.
pub const SCHEMA_VERSION: i64 = 9;

/// Reads `PRAGMA user_version`.
pub(crate) fn user_version(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row("PRAGMA user_version", [], |row| row.get(0))?)
}

/// Refuses a database written by a newer build. Only reads.
pub(crate) fn refuse_newer(conn: &Connection, supported: i64) -> Result<i64> {
    let found = user_version(conn)?;
    if found > supported {
        return Err(LibraryError::NewerDatabase { found, supported });
    }
    Ok(found)
}

/// Brings the database up to [`SCHEMA_VERSION`].
pub(crate) fn migrate(conn: &mut Connection) -> Result<()> {
    apply(conn, MIGRATIONS)
}

/// Applies the steps of `migrations` newer than the file's version, all or nothing.
pub(crate) fn apply(conn: &mut Connection, migrations: &[Migration]) -> Result<()> {
    let supported = migrations.last().map_or(0, |m| m.version);
    if refuse_newer(conn, supported)? == supported {
        return Ok(()); // Up to date: no write lock needed.
    }
    // IMMEDIATE: two processes opening a new library at once serialise here, and the second
    // sees the first one's version when it re-reads it inside the transaction.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found = refuse_newer(&tx, supported)?;
    for step in migrations.iter().filter(|m| m.version > found) {
        if step.rewrites_schema {
            let cookie: i64 = tx.query_row("PRAGMA schema_version", [], |r| r.get(0))?;
            tx.pragma_update(None, "writable_schema", true)?;
            tx.execute_batch(step.sql)?;
            tx.pragma_update(None, "schema_version", cookie + 1)?;
            tx.pragma_update(None, "writable_schema", false)?;
        } else {
            tx.execute_batch(step.sql)?;
        }
    }
    tx.pragma_update(None, "user_version", supported)?;
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_consecutively_up_to_the_schema_version() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1, "migration versions must be 1, 2, 3, ...");
        }
        assert_eq!(MIGRATIONS.last().map(|m| m.version), Some(SCHEMA_VERSION));
    }

    #[test]
    fn migrate_creates_every_table_and_is_idempotent() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        migrate(&mut conn).unwrap();
        assert_eq!(user_version(&conn).unwrap(), SCHEMA_VERSION);
        for table in [
            "models",
            "segments",
            "nodes",
            "node_tags",
            "library_meta",
            "prefix_blocks",
            "node_questions",
        ] {
            let n: i64 = conn
                .query_row("SELECT count(*) FROM sqlite_schema WHERE name = ?1", [table], |r| {
                    r.get(0)
                })
                .unwrap();
            assert_eq!(n, 1, "table {table} must exist after migration");
        }
    }

    #[test]
    fn a_failing_step_leaves_the_database_untouched() {
        let mut conn = Connection::open_in_memory().unwrap();
        let broken = [
            Migration {
                version: 1,
                sql: "CREATE TABLE first (x INTEGER);",
                rewrites_schema: false,
            },
            Migration {
                version: 2,
                sql: "THIS IS NOT SQL;",
                rewrites_schema: false,
            },
        ];
        assert!(apply(&mut conn, &broken).is_err());
        assert_eq!(user_version(&conn).unwrap(), 0, "the version must not move");
        let n: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_schema WHERE name = 'first'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(n, 0, "the first step must be rolled back with the second");
    }

    #[test]
    fn a_newer_version_is_refused_without_changes() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1).unwrap();
        let err = migrate(&mut conn).unwrap_err();
        assert!(
            matches!(err, LibraryError::NewerDatabase { found, supported } if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION),
            "got {err:?}"
        );
        let tables: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
            .unwrap();
        assert_eq!(tables, 0);
    }

    #[test]
    fn version_6_allows_cache_nodes_and_keeps_every_row_and_tag() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "foreign_keys", true).unwrap();
        apply(&mut conn, &MIGRATIONS[..5]).unwrap();
        conn.execute_batch(
            "INSERT INTO nodes (name, name_key, kind, model_fingerprint, token_count, transcript, created_at, updated_at)
             VALUES ('a', 'a', 'chat', 'm', 0, '{}', 1, 1);
             INSERT INTO node_tags (node_id, tag) VALUES (1, 'kept');",
        )
        .unwrap();
        let insert_cache = "INSERT INTO nodes (name, name_key, kind, model_fingerprint, token_count, transcript, created_at, updated_at)
                            VALUES ('c', 'c', 'cache', 'm', 0, '{}', 1, 1)";
        assert!(
            conn.execute(insert_cache, []).is_err(),
            "version 5 refuses the cache kind"
        );
        migrate(&mut conn).unwrap();
        conn.execute(insert_cache, []).unwrap();
        assert!(
            conn.execute("UPDATE nodes SET kind = 'folder' WHERE id = 1", [])
                .is_err(),
            "other kinds are still refused"
        );
        let tags: i64 = conn
            .query_row("SELECT count(*) FROM node_tags", [], |r| r.get(0))
            .unwrap();
        assert_eq!(tags, 1);
        let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
        assert_eq!(check, "ok");
    }

    #[test]
    fn the_summary_column_count_matches_the_column_list() {
        assert_eq!(nodes::SUMMARY_COLUMNS.split(',').count(), nodes::SUMMARY_COLUMN_COUNT);
    }

    #[test]
    fn version_9_fills_previews_of_existing_nodes_from_their_transcripts() {
        let mut conn = Connection::open_in_memory().unwrap();
        apply(&mut conn, &MIGRATIONS[..8]).unwrap();
        let long = "word ".repeat(100);
        let rows = [
            r#"{"mode":"chat","messages":[{"role":"user","content":"Hi there"},{"role":"assistant","content":"Ahoy!\nWhat be\tyer name?"}]}"#.to_owned(),
            format!(r#"{{"mode":"text","text":"{long}"}}"#),
            r#"{"mode":"chat","messages":[]}"#.to_owned(),
            "[]".to_owned(),
            "not json at all".to_owned(),
        ];
        for (i, t) in rows.iter().enumerate() {
            conn.execute(
                "INSERT INTO nodes (name, name_key, kind, model_fingerprint, token_count, transcript, created_at, updated_at)
                 VALUES (?1, ?1, 'chat', 'm', 0, ?2, 1, 1)",
                (format!("n{i}"), t),
            )
            .unwrap();
        }
        migrate(&mut conn).unwrap();
        let previews: Vec<String> = conn
            .prepare("SELECT preview FROM nodes ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(previews[0], "Ahoy! What be yer name?", "the last message, on one line");
        assert_eq!(previews[1].chars().count(), nodes::MAX_PREVIEW_CHARS);
        assert!(previews[1].starts_with("word word"));
        assert_eq!(previews[2..], ["", "", ""], "no message, no text or no JSON: empty");
    }
}
