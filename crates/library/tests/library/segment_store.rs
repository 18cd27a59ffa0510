//! The segment store: crash-safe puts, dedup, chains and their errors.

use super::common::{bytes_for, files_in, fixture, new_segment, put};
use freeze_attn_library::{LibraryError, SegmentId};
use std::fs;

#[test]
fn put_segment_copies_the_file_and_catalogues_it() {
    let f = fixture();
    let src = f.dir.path().join("engine-output.bin");
    let content = bytes_for(1, 1000);
    fs::write(&src, &content).unwrap();
    let new = new_segment(&content, None, 7);
    let meta = f.lib.put_segment(&new, &src).unwrap();
    assert_eq!(meta.bytes, 1000, "the size comes from the file");
    assert_eq!(fs::read(&src).unwrap(), content, "put_segment leaves its source alone");
    assert_eq!(fs::read(f.lib.segment_path(&meta.hash)).unwrap(), content);
    assert_eq!(f.lib.segment(&meta.hash).unwrap(), meta);
    assert!(f
        .lib
        .segment_path(&meta.hash)
        .ends_with(format!("segments/{}.seg", meta.hash)));
}

#[test]
fn putting_the_same_hash_twice_stores_it_once() {
    let f = fixture();
    let a = put(&f.lib, None, 4, 500, 1);
    let again = put(&f.lib, None, 4, 500, 1);
    assert_eq!(a, again);
    let src = f.dir.path().join("copy.bin");
    fs::write(&src, bytes_for(1, 500)).unwrap();
    f.lib
        .put_segment(&new_segment(&bytes_for(1, 500), None, 4), &src)
        .unwrap();
    assert_eq!(
        files_in(f.lib.segments_dir()),
        vec![format!("{}.seg", a.hash)],
        "one file, no temp left over"
    );
}

#[test]
fn chain_lists_segments_root_first() {
    let f = fixture();
    let a = put(&f.lib, None, 10, 100, 1);
    let b = put(&f.lib, Some(&a), 5, 50, 2);
    let c = put(&f.lib, Some(&b), 1, 10, 3);
    let chain = f.lib.chain(&c.hash).unwrap();
    assert_eq!(chain, vec![a.clone(), b.clone(), c.clone()]);
    assert_eq!(
        (b.start, c.start, c.end()),
        (10, 15, 16),
        "starts follow the parent's end"
    );
}

#[test]
fn chain_names_a_missing_or_truncated_file() {
    let f = fixture();
    let a = put(&f.lib, None, 10, 100, 1);
    let b = put(&f.lib, Some(&a), 5, 50, 2);
    fs::write(f.lib.segment_path(&a.hash), b"short").unwrap();
    assert!(matches!(f.lib.chain(&b.hash), Err(LibraryError::SegmentSize { hash, .. }) if hash == a.hash));
    fs::remove_file(f.lib.segment_path(&a.hash)).unwrap();
    let err = f.lib.chain(&b.hash).unwrap_err();
    assert!(
        matches!(&err, LibraryError::SegmentFileMissing { hash, .. } if *hash == a.hash),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(a.hash.as_str()),
        "the message names the segment"
    );
    let unknown = SegmentId::parse(&"e".repeat(64)).unwrap();
    assert!(matches!(f.lib.chain(&unknown), Err(LibraryError::SegmentNotFound(h)) if h == unknown));
}

#[test]
fn a_put_whose_parent_is_not_stored_is_refused_without_leaving_files() {
    let f = fixture();
    let phantom = put(&other_library(&f), None, 3, 10, 9);
    let content = bytes_for(2, 64);
    let temp = f.lib.temp_segment().unwrap();
    fs::write(temp.path(), &content).unwrap();
    let err = f
        .lib
        .put_temp_segment(&new_segment(&content, Some(&phantom), 2), temp)
        .unwrap_err();
    assert!(
        matches!(err, LibraryError::SegmentNotFound(h) if h == phantom.hash),
        "the missing parent is named"
    );
    assert!(files_in(f.lib.segments_dir()).is_empty(), "the temp file was removed");
}

/// A second, separate library, to make segments this one has never seen.
fn other_library(f: &super::common::Fixture) -> freeze_attn_library::Library {
    freeze_attn_library::Library::open(f.dir.path().join("other")).unwrap()
}

#[test]
fn inconsistent_segments_are_refused() {
    let f = fixture();
    let a = put(&f.lib, None, 10, 100, 1);
    let content = bytes_for(2, 64);
    let src = f.dir.path().join("s.bin");
    fs::write(&src, &content).unwrap();

    let mut gap = new_segment(&content, Some(&a), 2);
    gap.start = 11;
    assert!(
        matches!(f.lib.put_segment(&gap, &src), Err(LibraryError::InvalidSegment { .. })),
        "start must be the parent's end"
    );

    let mut other_model = new_segment(&content, Some(&a), 2);
    other_model.model_fingerprint = "another-model".into();
    assert!(
        matches!(
            f.lib.put_segment(&other_model, &src),
            Err(LibraryError::InvalidSegment { .. })
        ),
        "a chain has one model"
    );

    let mut empty = new_segment(&content, None, 1);
    empty.token_count = 0;
    assert!(matches!(
        f.lib.put_segment(&empty, &src),
        Err(LibraryError::InvalidSegment { .. })
    ));

    let mut conflict = new_segment(&bytes_for(1, 100), None, 10);
    conflict.dtype = "q8".into();
    let src_a = f.dir.path().join("a.bin");
    fs::write(&src_a, bytes_for(1, 100)).unwrap();
    assert!(
        matches!(
            f.lib.put_segment(&conflict, &src_a),
            Err(LibraryError::SegmentConflict { field: "dtype", .. })
        ),
        "one hash, one metadata"
    );
    assert_eq!(
        files_in(f.lib.segments_dir()),
        vec![format!("{}.seg", a.hash)],
        "refusals leave nothing behind"
    );
}

#[test]
fn an_abandoned_temp_segment_is_deleted() {
    let f = fixture();
    let temp = f.lib.temp_segment().unwrap();
    fs::write(temp.path(), b"partial").unwrap();
    drop(temp);
    assert!(files_in(f.lib.segments_dir()).is_empty());
}

#[test]
fn has_segment_reports_stored_and_intact_segments() {
    let f = fixture();
    let a = put(&f.lib, None, 1, 10, 1);
    assert!(f.lib.has_segment(&a.hash).unwrap());
    fs::remove_file(f.lib.segment_path(&a.hash)).unwrap();
    assert!(
        !f.lib.has_segment(&a.hash).unwrap(),
        "a row without its file does not count"
    );
}
