//! Garbage collection removes exactly what nothing needs.

use super::common::{content_check, files_in, fixture, node, put};
use freeze_attn_library::{DeleteMode, GcOptions};
use std::fs;
use std::time::Duration;

const NOW: GcOptions = GcOptions { grace: Duration::ZERO };

#[test]
fn gc_removes_only_segments_no_node_uses() {
    let f = fixture();
    let a = put(&f.lib, None, 10, 1000, 1);
    let b = put(&f.lib, Some(&a), 10, 100, 2);
    let c = put(&f.lib, Some(&b), 10, 10, 3);
    let d = put(&f.lib, Some(&a), 10, 7, 4); // Never used by a node.
    let root = node(&f.lib, None, "root", Some(&a), 10);
    let leaf = node(&f.lib, Some(root), "leaf", Some(&c), 25);
    let deleted = f.lib.delete_node(leaf, DeleteMode::Subtree).unwrap();
    assert_eq!(deleted.freed_bytes, 110);
    let report = f.lib.gc_with(NOW).unwrap();
    assert_eq!(report.segments_deleted, 3, "b, c and the never-used d");
    assert_eq!(report.bytes_freed, 117);
    assert_eq!(files_in(f.lib.segments_dir()), vec![format!("{}.seg", a.hash)]);
    assert!(f.lib.segment(&b.hash).is_err() && f.lib.segment(&d.hash).is_err());
    assert!(
        f.lib.verify(content_check).unwrap().is_ok(),
        "what remains is consistent"
    );
    assert_eq!(
        f.lib.gc_with(NOW).unwrap(),
        Default::default(),
        "a second gc finds nothing"
    );
}

#[test]
fn a_rewound_node_keeps_its_whole_tip_segment_and_ancestors() {
    let f = fixture();
    let a = put(&f.lib, None, 10, 100, 1);
    let b = put(&f.lib, Some(&a), 10, 100, 2);
    node(&f.lib, None, "rewind", Some(&b), 15);
    assert_eq!(f.lib.gc_with(NOW).unwrap().segments_deleted, 0);
    assert_eq!(f.lib.chain(&b.hash).unwrap().len(), 2);
}

#[test]
fn gc_removes_orphan_files_and_old_temp_files_but_nothing_else() {
    let f = fixture();
    let kept = put(&f.lib, None, 1, 10, 1);
    node(&f.lib, None, "n", Some(&kept), 1);
    let dir = f.lib.segments_dir();
    let orphan = format!("{}.seg", "ab".repeat(32));
    fs::write(dir.join(&orphan), b"crash leftover").unwrap();
    fs::write(dir.join(".123-0-0.part"), b"half written").unwrap();
    fs::write(dir.join("README.txt"), b"not ours").unwrap();

    fs::write(dir.join(".x.part.123.partial"), b"engine half").unwrap();

    let gentle = f.lib.gc().unwrap();
    assert_eq!(
        gentle.orphan_files_deleted, 0,
        "a fresh .seg without a row is kept for the grace period"
    );
    assert_eq!(
        gentle.temp_files_deleted, 0,
        "a fresh temp file may be a write in progress"
    );

    let report = f.lib.gc_with(NOW).unwrap();
    assert_eq!(report.orphan_files_deleted, 1, "after the grace period it is garbage");
    assert_eq!(
        report.temp_files_deleted, 2,
        "the library's .part and the engine's .partial"
    );
    assert_eq!(
        report.bytes_freed,
        (b"half written".len() + b"engine half".len() + b"crash leftover".len()) as u64
    );
    let mut expected = vec![format!("{}.seg", kept.hash), "README.txt".to_owned()];
    expected.sort();
    assert_eq!(files_in(dir), expected, "gc leaves files it does not own");
}

#[test]
fn the_grace_period_keeps_fresh_segments_and_their_ancestors() {
    let f = fixture();
    let old_parent = put(&f.lib, None, 1, 10, 1);
    std::thread::sleep(Duration::from_millis(200));
    let fresh_child = put(&f.lib, Some(&old_parent), 1, 10, 2);
    let report = f
        .lib
        .gc_with(GcOptions {
            grace: Duration::from_millis(100),
        })
        .unwrap();
    assert_eq!(
        report.segments_deleted, 0,
        "a fresh segment keeps its chain even if no node uses it yet"
    );
    assert!(f.lib.chain(&fresh_child.hash).is_ok());
    assert_eq!(f.lib.gc().unwrap().segments_deleted, 0, "the default grace keeps both");
    assert_eq!(f.lib.gc_with(NOW).unwrap().segments_deleted, 2);
}

/// Sets a file's modification time to `secs` seconds ago.
fn age(path: &std::path::Path, secs: u64) {
    let f = fs::File::options().append(true).open(path).unwrap();
    f.set_modified(std::time::SystemTime::now() - Duration::from_secs(secs))
        .unwrap();
}

#[test]
fn a_lost_catalogue_is_reported_and_gc_deletes_nothing() {
    let f = fixture();
    let a = put(&f.lib, None, 4, 100, 1);
    let b = put(&f.lib, Some(&a), 4, 100, 2);
    node(&f.lib, None, "kept", Some(&b), 8);
    let root = f.lib.root().to_path_buf();
    let dir = f.lib.segments_dir().to_path_buf();
    // The files were written an hour ago; then the catalogue is deleted and a new one made.
    for s in [&a, &b] {
        age(&f.lib.segment_path(&s.hash), 3600);
    }
    drop(f.lib);
    for name in ["library.sqlite3", "library.sqlite3-wal", "library.sqlite3-shm"] {
        let _ = fs::remove_file(root.join(name));
    }
    let lib = freeze_attn_library::Library::open(&root).unwrap();
    let report = lib.verify(content_check).unwrap();
    let kinds: Vec<_> = report.problems.iter().map(|p| p.kind.code()).collect();
    assert_eq!(
        kinds,
        vec!["uncatalogued_file", "uncatalogued_file"],
        "verify must not say ok when the segment files outlive their catalogue: {report:?}"
    );
    let before = files_in(&dir);
    let e = lib.gc_with(NOW).unwrap_err();
    assert!(e.to_string().contains("fails verification"), "{e}");
    assert_eq!(files_in(&dir), before, "gc refused: nothing deleted");
}

#[test]
fn a_missing_segment_row_blocks_gc_and_its_file_survives() {
    let f = fixture();
    let a = put(&f.lib, None, 4, 100, 1);
    let b = put(&f.lib, Some(&a), 4, 100, 2);
    for i in 0..5 {
        node(&f.lib, None, &format!("n{i}"), Some(&b), 8);
    }
    let conn = rusqlite::Connection::open(f.lib.database_path()).unwrap();
    conn.execute_batch("PRAGMA foreign_keys = OFF;").unwrap();
    conn.execute("DELETE FROM segments WHERE hash = ?1", [a.hash.as_str()])
        .unwrap();
    drop(conn);
    let report = f.lib.verify(content_check).unwrap();
    assert!(!report.is_ok(), "a missing row is a problem");
    let e = f.lib.gc_with(NOW).unwrap_err();
    assert!(e.to_string().contains("fails verification"), "{e}");
    assert!(
        f.lib.segment_path(&a.hash).exists(),
        "the file five nodes need is not deleted"
    );
}

#[test]
fn odd_entries_and_old_import_scratch() {
    let f = fixture();
    let a = put(&f.lib, None, 4, 100, 1);
    node(&f.lib, None, "n", Some(&a), 4);
    // A directory named like a segment file: verify reports it, gc refuses instead of failing
    // on it; once it is gone gc runs.
    let odd = f.lib.segments_dir().join(format!("{}.seg", "cd".repeat(32)));
    fs::create_dir(&odd).unwrap();
    let report = f.lib.verify(content_check).unwrap();
    assert_eq!(
        report.problems.iter().map(|p| p.kind.code()).collect::<Vec<_>>(),
        vec!["not_a_file"]
    );
    assert!(f.lib.gc_with(NOW).is_err());
    fs::remove_dir(&odd).unwrap();
    // An import killed after unpacking leaves a scratch folder; gc removes it once it is old.
    let scratch = f.lib.import_scratch_dir().join("import-1");
    fs::create_dir_all(&scratch).unwrap();
    fs::write(scratch.join("x.seg"), b"unpacked").unwrap();
    assert_eq!(
        f.lib.gc().unwrap().scratch_deleted,
        0,
        "a fresh one may be an import in progress"
    );
    assert_eq!(f.lib.gc_with(NOW).unwrap().scratch_deleted, 1);
    assert!(!scratch.exists());
}

#[test]
fn files_of_a_lost_catalogue_can_be_adopted_again() {
    let f = fixture();
    let a = put(&f.lib, None, 4, 100, 1);
    let b = put(&f.lib, Some(&a), 4, 100, 2);
    let root = f.lib.root().to_path_buf();
    drop(f.lib);
    fs::remove_file(root.join("library.sqlite3")).unwrap();
    let lib = freeze_attn_library::Library::open(&root).unwrap();
    let found: Vec<_> = lib
        .uncatalogued_files()
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let mut expected = vec![a.hash.clone(), b.hash.clone()];
    expected.sort();
    assert_eq!(found, expected);
    let as_new = |m: &freeze_attn_library::SegmentMeta| freeze_attn_library::NewSegment {
        hash: m.hash.clone(),
        parent: m.parent.clone(),
        start: m.start,
        token_count: m.token_count,
        dtype: m.dtype.clone(),
        model_fingerprint: m.model_fingerprint.clone(),
    };
    assert!(
        lib.adopt_segment(&as_new(&b)).is_err(),
        "a parent must be catalogued first"
    );
    assert_eq!(lib.adopt_segment(&as_new(&a)).unwrap(), a);
    assert_eq!(lib.adopt_segment(&as_new(&b)).unwrap(), b);
    node(&lib, None, "back", Some(&b), 8);
    assert!(lib.uncatalogued_files().unwrap().is_empty());
    assert!(lib.verify(content_check).unwrap().is_ok(), "the library is whole again");
}
