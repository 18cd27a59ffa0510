//! Schema versioning: fresh libraries are migrated, newer ones refused untouched.

use super::common::{fixture, node};
use freeze_attn_library::{Library, LibraryError, SCHEMA_VERSION};
use rusqlite::Connection;
use std::fs;

fn user_version(path: &std::path::Path) -> i64 {
    let conn = Connection::open(path).unwrap();
    conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap()
}

#[test]
fn a_new_library_is_at_the_current_schema_version() {
    let f = fixture();
    assert_eq!(user_version(&f.lib.database_path()), SCHEMA_VERSION);
}

#[test]
fn a_newer_database_is_refused_and_left_byte_for_byte_untouched() {
    let f = fixture();
    let root = f.lib.root().to_path_buf();
    node(&f.lib, None, "existing", None, 0);
    let db = f.lib.database_path();
    drop(f.lib);
    {
        let conn = Connection::open(&db).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1).unwrap();
        // Fold the WAL into the main file so the file alone is the whole database.
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
    }
    let before = fs::read(&db).unwrap();
    let err = Library::open(&root).unwrap_err();
    assert!(
        matches!(err, LibraryError::NewerDatabase { found, supported } if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION),
        "expected NewerDatabase, got {err:?}"
    );
    assert!(err.to_string().contains("newer"), "the message must say why: {err}");
    assert_eq!(fs::read(&db).unwrap(), before, "a newer database must not be modified");
    assert_eq!(user_version(&db), SCHEMA_VERSION + 1);
}

#[test]
fn many_handles_opening_a_new_library_at_once_all_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("lib");
    let handles: Vec<_> = (0..6)
        .map(|_| {
            let root = root.clone();
            std::thread::spawn(move || Library::open(&root).map(|_| ()))
        })
        .collect();
    for h in handles {
        h.join()
            .unwrap()
            .expect("concurrent first opens must serialise the migration");
    }
    assert_eq!(user_version(&root.join("library.sqlite3")), SCHEMA_VERSION);
}

#[test]
fn a_file_that_is_not_a_database_gives_a_database_error() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("library.sqlite3"),
        b"this is not sqlite, just some text!!",
    )
    .unwrap();
    let err = Library::open(dir.path()).unwrap_err();
    assert!(matches!(err, LibraryError::Database(_)), "got {err:?}");
}
