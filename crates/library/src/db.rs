//! Per-connection set-up of the catalogue database, and the case folding names, tags and search share.
//!
//! Every connection gets the same settings (they are per connection in SQLite, not stored in
//! the file): a 5 s busy timeout so the app and the CLI can write to one library at the same
//! time, foreign keys on, WAL so readers never block the writer, and `synchronous = NORMAL`.
//!
//! Why NORMAL and not FULL: in WAL mode NORMAL never corrupts the database and loses nothing
//! when the *process* dies (a kill or crash: committed pages are in the OS cache); only a power
//! cut or kernel crash can roll back the last few commits. Segment files are fsynced before their
//! rows commit, so such a rollback leaves at worst unreferenced files that `gc` reclaims, never a
//! row pointing at a missing file. FULL would add an fsync per commit (per rename, tag or pin)
//! for the sake of the last second before a power cut.

use crate::error::Result;
use rusqlite::Connection;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long a statement waits for another connection's write lock before failing.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens a connection with the per-connection settings that do not write to the file.
/// `enable_wal` is separate because it writes, and a newer database must be refused first.
pub(crate) fn connect(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "foreign_keys", true)?;
    Ok(conn)
}

/// Switches the file to WAL (persistent, a no-op once done) and sets this connection's sync level.
pub(crate) fn enable_wal(conn: &Connection) -> Result<()> {
    // The returned mode is not checked: a filesystem without shared memory keeps the rollback
    // journal, which is slower under concurrency but still correct with the busy timeout.
    let _mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(())
}

/// Milliseconds since the Unix epoch (0 if the clock is before 1970).
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis().min(i64::MAX as u128) as i64)
        .unwrap_or(0)
}

/// Case folding used by names, tags and search: full Unicode lower case (SQLite's own LIKE and
/// NOCASE fold ASCII only, so "Émile" and "émile" would differ).
pub(crate) fn fold(s: &str) -> String {
    s.to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_sets_per_connection_pragmas() {
        let dir = tempfile::tempdir().unwrap();
        let conn = connect(&dir.path().join("x.sqlite3")).unwrap();
        enable_wal(&conn).unwrap();
        let fk: i64 = conn.query_row("PRAGMA foreign_keys", [], |r| r.get(0)).unwrap();
        let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        let sync: i64 = conn.query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap();
        let busy: i64 = conn.query_row("PRAGMA busy_timeout", [], |r| r.get(0)).unwrap();
        assert_eq!(fk, 1, "foreign keys must be enforced");
        assert_eq!(mode, "wal");
        assert_eq!(sync, 1, "synchronous = NORMAL");
        assert_eq!(busy, BUSY_TIMEOUT.as_millis() as i64);
    }
}
