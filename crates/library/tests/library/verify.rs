//! Verify reports damage per node without changing anything.

use super::common::{content_check, fixture, node, put};
use freeze_attn_library::{ProblemKind, Rejection};
use std::fs;

#[test]
fn a_healthy_library_verifies_clean() {
    let f = fixture();
    let a = put(&f.lib, None, 10, 100, 1);
    node(&f.lib, None, "n", Some(&a), 10);
    put(&f.lib, None, 1, 5, 2);
    let report = f.lib.verify(content_check).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!((report.nodes_checked, report.segments_checked), (1, 2));
}

#[test]
fn verify_reports_a_deleted_file_against_every_node_that_needs_it() {
    let f = fixture();
    let base = put(&f.lib, None, 10, 100, 1);
    let x = put(&f.lib, Some(&base), 1, 10, 2);
    let y = put(&f.lib, Some(&base), 1, 10, 3);
    let nx = node(&f.lib, None, "x", Some(&x), 11);
    let ny = node(&f.lib, None, "y", Some(&y), 11);
    let fine = node(&f.lib, None, "empty", None, 0);
    fs::remove_file(f.lib.segment_path(&base.hash)).unwrap();
    let report = f.lib.verify(content_check).unwrap();
    assert!(!report.is_ok());
    for n in [nx, ny] {
        let problems: Vec<_> = report.problems_of(n).collect();
        assert_eq!(problems.len(), 1, "node {n} lost its base: {problems:?}");
        assert!(matches!(problems[0].kind, ProblemKind::MissingFile { .. }));
        assert_eq!(problems[0].segment.as_ref(), Some(&base.hash));
    }
    assert_eq!(report.problems_of(fine).count(), 0);
    assert!(
        report.problems[0].to_string().contains(base.hash.as_str()),
        "problems print the segment"
    );
}

#[test]
fn verify_catches_truncated_and_altered_files() {
    let f = fixture();
    let a = put(&f.lib, None, 10, 100, 1);
    let b = put(&f.lib, None, 10, 100, 2);
    let na = node(&f.lib, None, "a", Some(&a), 10);
    let nb = node(&f.lib, None, "b", Some(&b), 10);
    let path = f.lib.segment_path(&a.hash);
    let bytes = fs::read(&path).unwrap();
    fs::write(&path, &bytes[..60]).unwrap();
    let path = f.lib.segment_path(&b.hash);
    let mut bytes = fs::read(&path).unwrap();
    bytes[50] ^= 1;
    fs::write(&path, &bytes).unwrap();
    let report = f.lib.verify(content_check).unwrap();
    let kinds = |n| report.problems_of(n).map(|p| p.kind.clone()).collect::<Vec<_>>();
    assert_eq!(
        kinds(na),
        vec![ProblemKind::SizeMismatch {
            expected: 100,
            found: 60
        }]
    );
    assert_eq!(
        kinds(nb),
        vec![ProblemKind::ContentRejected(Rejection {
            code: "test_content",
            message: "content does not match its hash".into()
        })]
    );
    assert!(
        f.lib.verify(|_, _| Ok(())).unwrap().problems_of(nb).next().is_none(),
        "content checks are the caller's"
    );
}

#[test]
fn damage_to_an_unused_segment_is_reported_without_a_node() {
    let f = fixture();
    let a = put(&f.lib, None, 1, 10, 1);
    fs::remove_file(f.lib.segment_path(&a.hash)).unwrap();
    let report = f.lib.verify(content_check).unwrap();
    assert_eq!(report.problems.len(), 1);
    assert_eq!(report.problems[0].node, None);
}

#[test]
fn a_parent_cycle_is_reported() {
    let f = fixture();
    let a = node(&f.lib, None, "a", None, 0);
    let b = node(&f.lib, Some(a), "b", None, 0);
    let conn = rusqlite::Connection::open(f.lib.database_path()).unwrap();
    conn.execute("UPDATE nodes SET parent_id = ?1 WHERE id = ?2", [b.0, a.0])
        .unwrap();
    drop(conn);
    let report = f.lib.verify(content_check).unwrap();
    let mut cyclic: Vec<_> = report
        .problems
        .iter()
        .filter(|p| p.kind == ProblemKind::ParentCycle)
        .filter_map(|p| p.node)
        .collect();
    cyclic.sort();
    assert_eq!(
        cyclic,
        vec![a, b],
        "both nodes of the cycle are hidden from `tree`: {report:?}"
    );
}

#[test]
fn a_corrupted_index_is_found() {
    let f = fixture();
    let a = node(&f.lib, None, "a", None, 0);
    node(&f.lib, Some(a), "b", None, 0);
    assert!(f.lib.verify(content_check).unwrap().is_ok());
    // Make the stored index disagree with its table (what a torn write can do): quick_check
    // does not look at index contents, integrity_check does.
    let conn = rusqlite::Connection::open(f.lib.database_path()).unwrap();
    conn.execute_batch(
        "PRAGMA writable_schema = ON;
         UPDATE sqlite_schema SET sql = 'CREATE INDEX nodes_parent ON nodes (name)' WHERE name = 'nodes_parent';
         PRAGMA writable_schema = OFF;",
    )
    .unwrap();
    drop(conn);
    let lib = freeze_attn_library::Library::open(f.lib.root()).unwrap();
    let report = lib.verify(content_check).unwrap();
    assert!(
        report.problems.iter().any(|p| p.kind.code() == "database"),
        "integrity_check reports the index: {report:?}"
    );
}
