//! `Library`: an open library folder — the catalogue database and the segment store beside it.

use crate::db;
use crate::durable::sync_dir;
use crate::error::{LibraryError, Result};
use crate::schema;
use rusqlite::{Connection, TransactionBehavior};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// File name of the catalogue inside the library folder.
pub const DATABASE_FILE: &str = "library.sqlite3";
/// Folder of segment files inside the library folder.
pub const SEGMENTS_DIR: &str = "segments";

/// An open library. `Send + Sync`: share one per process behind an `Arc`; several `Library`
/// values (in threads or processes, such as the app and the CLI) may open the same folder at once.
#[derive(Debug)]
pub struct Library {
    root: PathBuf,
    segments_dir: PathBuf,
    conn: Mutex<Connection>,
}

impl Library {
    /// Opens the library in `dir`, creating the folder, the database and `segments/` if needed,
    /// and migrating an older schema. A database from a newer build is refused untouched.
    pub fn open(dir: impl AsRef<Path>) -> Result<Library> {
        let root = dir.as_ref().to_path_buf();
        fs::create_dir_all(&root).map_err(LibraryError::io("create library folder", &root))?;
        let mut conn = db::connect(&root.join(DATABASE_FILE))?;
        // Before anything writes (the switch to WAL rewrites the header).
        schema::refuse_newer(&conn, schema::SCHEMA_VERSION)?;
        db::enable_wal(&conn)?;
        schema::migrate(&mut conn)?;
        let segments_dir = root.join(SEGMENTS_DIR);
        if !segments_dir.is_dir() {
            fs::create_dir_all(&segments_dir).map_err(LibraryError::io("create segment folder", &segments_dir))?;
            sync_dir(&root)?;
        }
        Ok(Library {
            root,
            segments_dir,
            conn: Mutex::new(conn),
        })
    }

    /// The library folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The catalogue database file.
    pub fn database_path(&self) -> PathBuf {
        self.root.join(DATABASE_FILE)
    }

    /// Where imports unpack a bundle before it is committed; `gc` removes what a killed or
    /// refused import left there.
    pub fn import_scratch_dir(&self) -> PathBuf {
        self.root.join("import-scratch")
    }

    /// The folder holding `<hash>.seg` files.
    pub fn segments_dir(&self) -> &Path {
        &self.segments_dir
    }

    /// This handle's connection. A panic in another thread while holding it cannot leave a
    /// transaction open (rusqlite rolls back on drop), so a poisoned lock is still usable.
    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` in a read transaction: one consistent snapshot, never blocked by writers (WAL).
    pub(crate) fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// Runs `f` in a write transaction, committed only if `f` succeeds. IMMEDIATE takes the
    /// write lock up front, so a read-then-write never fails with a stale snapshot under
    /// concurrency; waiting for another writer is bounded by the busy timeout. Holding this lock
    /// is also what serialises segment-file renames with `gc` across processes.
    pub(crate) fn write<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_creates_the_database_and_segment_folder() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("nested/lib");
        let lib = Library::open(&root).unwrap();
        assert!(lib.database_path().is_file());
        assert!(lib.segments_dir().is_dir());
        assert_eq!(lib.root(), root);
    }

    #[test]
    fn reopening_keeps_the_schema_version() {
        let dir = tempfile::tempdir().unwrap();
        drop(Library::open(dir.path()).unwrap());
        let lib = Library::open(dir.path()).unwrap();
        let v = lib.read(schema::user_version).unwrap();
        assert_eq!(v, schema::SCHEMA_VERSION);
    }

    #[test]
    fn a_failed_write_is_rolled_back() {
        let dir = tempfile::tempdir().unwrap();
        let lib = Library::open(dir.path()).unwrap();
        let r: Result<()> = lib.write(|c| {
            c.execute("INSERT INTO models VALUES ('fp', 'n', 'p')", [])?;
            Err(LibraryError::InvalidFingerprint("forced".into()))
        });
        assert!(r.is_err());
        assert_eq!(lib.models().unwrap(), vec![], "the insert must not survive the error");
    }

    #[test]
    fn library_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Library>();
    }
}
