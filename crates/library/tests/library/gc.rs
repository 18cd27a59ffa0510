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

    let gentle = f.lib.gc().unwrap();
    assert_eq!(
        gentle.orphan_files_deleted, 1,
        "a .seg without a row is garbage at once"
    );
    assert_eq!(
        gentle.temp_files_deleted, 0,
        "a fresh temp file may be a write in progress"
    );

    let report = f.lib.gc_with(NOW).unwrap();
    assert_eq!(report.temp_files_deleted, 1);
    assert_eq!(report.bytes_freed, b"half written".len() as u64);
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
