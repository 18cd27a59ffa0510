//! Bundles: round trip, dedup on import, and refusal of every kind of damage with nothing
//! written to the library.

use super::common::{bytes_for, content_check, files_in, fixture, put, Fixture, MODEL};
use freeze_attn_library::{read_bundle, Bundle, LibraryError, ModelRecord, NewNode, NodeId, NodeKind, NodeOrder};
use std::fs;
use std::path::{Path, PathBuf};

const HEADER: usize = 52;

/// A library with a three-segment personality rewound into its tip, exported to a bundle.
fn exported() -> (Fixture, NodeId, PathBuf) {
    let f = fixture();
    f.lib
        .put_model(&ModelRecord {
            fingerprint: MODEL.into(),
            display_name: "Test Llama".into(),
            path: "/m".into(),
        })
        .unwrap();
    let a = put(&f.lib, None, 10, 3000, 1);
    let b = put(&f.lib, Some(&a), 10, 2000, 2);
    let c = put(&f.lib, Some(&b), 10, 1000, 3);
    let mut new = NewNode::new("Pirate", NodeKind::Personality, MODEL).with_state(c.hash.clone(), 25);
    new.notes = "speaks like a pirate".into();
    new.tags = vec!["fun".into(), "sea".into()];
    new.transcript = r#"[{"role":"system","content":"You are a pirate."}]"#.into();
    let id = f.lib.create_node(&new).unwrap();
    let out = f.dir.path().join("pirate.fzpack");
    let size = f.lib.export_node(id, &out).unwrap();
    assert_eq!(size, fs::metadata(&out).unwrap().len());
    (f, id, out)
}

/// What a library holds, to assert that a refused import wrote nothing.
fn contents(f: &Fixture) -> (usize, Vec<String>) {
    (
        f.lib.tree(NodeOrder::Name).unwrap().len(),
        files_in(f.lib.segments_dir()),
    )
}

fn read(path: &Path, scratch: &Path) -> Result<Bundle, LibraryError> {
    read_bundle(path, scratch)
}

#[test]
fn a_bundle_round_trips_into_another_library() {
    let (src, id, out) = exported();
    let dst = fixture();
    let scratch = dst.dir.path().join("scratch");
    let bundle = read(&out, &scratch).unwrap();
    assert_eq!(bundle.node.model_name.as_deref(), Some("Test Llama"));
    assert_eq!(bundle.segments.len(), 3);
    for seg in &bundle.segments {
        content_check(&seg.meta, &seg.path).expect("the engine would inspect these files now");
    }
    let new_id = dst.lib.commit_import(&bundle, None, None, "").unwrap();
    let (before, after) = (src.lib.node(id).unwrap(), dst.lib.node(new_id).unwrap());
    assert_eq!(
        (&after.name, after.kind, &after.notes, &after.tags),
        (&before.name, before.kind, &before.notes, &before.tags)
    );
    assert_eq!(
        (&after.tip, after.token_count, &after.transcript),
        (&before.tip, before.token_count, &before.transcript)
    );
    let tip = after.tip.clone().unwrap();
    assert_eq!(
        dst.lib.chain(&tip).unwrap(),
        src.lib.chain(&tip).unwrap(),
        "the chain arrives intact"
    );
    for seg in dst.lib.chain(&tip).unwrap() {
        assert_eq!(
            fs::read(dst.lib.segment_path(&seg.hash)).unwrap(),
            fs::read(src.lib.segment_path(&seg.hash)).unwrap()
        );
    }
    assert!(dst.lib.verify(content_check).unwrap().is_ok());
    bundle.discard();
    assert!(files_in(&scratch).is_empty(), "discard removes the unpacked files");
}

#[test]
fn importing_a_taken_name_is_refused_until_renamed_and_segments_are_deduplicated() {
    let (f, id, out) = exported();
    let files_before = files_in(f.lib.segments_dir());
    let bundle = read(&out, &f.dir.path().join("scratch")).unwrap();
    let err = f.lib.commit_import(&bundle, None, None, "").unwrap_err();
    assert!(
        matches!(&err, LibraryError::NameTaken { name, parent: None } if name == "Pirate"),
        "{err:?}"
    );
    assert_eq!(
        f.lib.tree(NodeOrder::Name).unwrap().len(),
        1,
        "the existing node is not overwritten"
    );
    let copy = f
        .lib
        .commit_import(&bundle, None, Some("Pirate (imported)"), "")
        .unwrap();
    assert_ne!(copy, id);
    assert_eq!(f.lib.node(copy).unwrap().name, "Pirate (imported)");
    assert_eq!(
        files_in(f.lib.segments_dir()),
        files_before,
        "identical segments are stored once"
    );
    let under = f.lib.commit_import(&bundle, Some(id), None, "").unwrap();
    assert_eq!(
        f.lib.node(under).unwrap().parent,
        Some(id),
        "the same name is free under another parent"
    );
    assert!(matches!(
        f.lib.commit_import(&bundle, Some(NodeId(999)), Some("x"), ""),
        Err(LibraryError::NodeNotFound(_))
    ));
}

#[test]
fn a_node_without_state_round_trips() {
    let f = fixture();
    let id = f
        .lib
        .create_node(&NewNode::new("Empty", NodeKind::Story, MODEL))
        .unwrap();
    let out = f.dir.path().join("empty.fzpack");
    f.lib.export_node(id, &out).unwrap();
    let dst = fixture();
    let bundle = read(&out, &dst.dir.path().join("s")).unwrap();
    assert!(bundle.segments.is_empty());
    let new_id = dst.lib.commit_import(&bundle, None, None, "").unwrap();
    assert_eq!(dst.lib.node(new_id).unwrap().tip, None);
}

/// Reads `bytes` as a bundle into a fresh library; asserts nothing was written and returns the error.
fn refused(bytes: &[u8]) -> LibraryError {
    let f = fixture();
    let before = contents(&f);
    let path = f.dir.path().join("bad.fzpack");
    fs::write(&path, bytes).unwrap();
    let scratch = f.dir.path().join("scratch");
    let err = match read(&path, &scratch) {
        Ok(bundle) => match f.lib.commit_import(&bundle, None, None, "") {
            Ok(id) => panic!("a damaged bundle was imported as node {id}"),
            Err(e) => e,
        },
        Err(e) => e,
    };
    assert_eq!(
        contents(&f),
        before,
        "a refused bundle writes nothing to the library ({err})"
    );
    if scratch.exists() {
        assert!(
            files_in(&scratch).is_empty(),
            "a refused bundle leaves no unpacked files ({err})"
        );
    }
    err
}

#[test]
fn every_flipped_byte_is_detected() {
    let (_f, _, out) = exported();
    let good = fs::read(&out).unwrap();
    let manifest_len = u64::from_le_bytes(good[12..20].try_into().unwrap()) as usize;
    let data = HEADER + manifest_len;
    let offsets = [
        0,
        7,
        8,
        12,
        19,
        20,
        51,
        HEADER,
        HEADER + manifest_len / 2,
        data - 1,
        data,
        data + 2999,
        data + 3000,
        good.len() - 1,
    ];
    for at in offsets {
        let mut bad = good.clone();
        bad[at] ^= 0x20;
        let err = refused(&bad);
        let ok = match at {
            0..=7 => matches!(err, LibraryError::BundleBadMagic { .. }),
            8..=11 => matches!(err, LibraryError::BundleVersion { .. }),
            12..=19 => matches!(
                err,
                LibraryError::BundleTooLarge { .. }
                    | LibraryError::BundleTruncated { .. }
                    | LibraryError::BundleChecksum { .. }
            ),
            _ => matches!(err, LibraryError::BundleChecksum { .. }),
        };
        assert!(ok, "flipping byte {at} gave {err:?}");
    }
}

#[test]
fn truncated_bundles_are_refused() {
    let (_f, _, out) = exported();
    let good = fs::read(&out).unwrap();
    for len in [0, 5, 8, 30, HEADER, HEADER + 10, good.len() - 1000, good.len() - 1] {
        let err = refused(&good[..len]);
        assert!(
            matches!(
                err,
                LibraryError::BundleTruncated { .. } | LibraryError::BundleBadMagic { .. }
            ),
            "a bundle cut to {len} bytes gave {err:?}"
        );
    }
    let mut longer = good.clone();
    longer.extend_from_slice(b"junk");
    assert!(matches!(
        refused(&longer),
        LibraryError::BundleTrailingData { extra: 4, .. }
    ));
}

#[test]
fn bad_magic_is_refused() {
    let err = refused(b"PK\x03\x04 this is a zip file, not a bundle at all........................");
    assert!(matches!(err, LibraryError::BundleBadMagic { .. }), "{err:?}");
    assert!(err.to_string().contains("not a Freeze-Attn bundle"));
}

/// A bundle with a correctly hashed manifest: damage that only a consistency check can catch.
fn forged(manifest: &serde_json::Value, data: &[u8], manifest_len_override: Option<u64>) -> Vec<u8> {
    let json = serde_json::to_vec(manifest).unwrap();
    let mut out = b"FZATPACK".to_vec();
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&manifest_len_override.unwrap_or(json.len() as u64).to_le_bytes());
    out.extend_from_slice(blake3::hash(&json).as_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(data);
    out
}

fn manifest_for(data: &[u8], bytes: u64) -> serde_json::Value {
    let hash = blake3::hash(data).to_hex().to_string();
    serde_json::json!({
        "node": {
            "name": "Forged", "kind": "chat", "notes": "", "tags": [], "model_fingerprint": MODEL,
            "model_name": null, "tip": hash, "token_count": 4, "transcript": "[]", "created_at": 0
        },
        "segments": [{
            "hash": hash, "parent": null, "start": 0, "token_count": 4, "dtype": "f16",
            "model_fingerprint": MODEL, "bytes": bytes, "blake3": hash
        }]
    })
}

#[test]
fn a_manifest_lying_about_sizes_is_refused_without_allocating() {
    let data = bytes_for(7, 500);
    for lie in [501, 10_000_000_000_000, u64::MAX / 2] {
        let err = refused(&forged(&manifest_for(&data, lie), &data, None));
        assert!(
            matches!(err, LibraryError::BundleTruncated { .. }),
            "a claimed {lie} bytes gave {err:?}"
        );
    }
    let err = refused(&forged(&manifest_for(&data, 499), &data, None));
    assert!(
        matches!(err, LibraryError::BundleTrailingData { extra: 1, .. }),
        "{err:?}"
    );
    let err = refused(&forged(&manifest_for(&data, 500), &data, Some(u64::MAX)));
    assert!(
        matches!(err, LibraryError::BundleTooLarge { .. }),
        "a hostile manifest length gave {err:?}"
    );
}

#[test]
fn a_forged_bundle_with_consistent_sizes_imports() {
    // The control for the lies above: the forging helper itself makes valid bundles.
    let f = fixture();
    let data = bytes_for(7, 500);
    let path = f.dir.path().join("ok.fzpack");
    fs::write(&path, forged(&manifest_for(&data, 500), &data, None)).unwrap();
    let bundle = read(&path, &f.dir.path().join("s")).unwrap();
    f.lib.commit_import(&bundle, None, None, "").unwrap();
}

#[test]
fn an_inconsistent_chain_or_bad_name_is_refused() {
    let data = bytes_for(7, 500);
    let mut m = manifest_for(&data, 500);
    m["node"]["token_count"] = serde_json::json!(5);
    assert!(
        matches!(refused(&forged(&m, &data, None)), LibraryError::BundleManifest { .. }),
        "count beyond the chain"
    );
    let mut m = manifest_for(&data, 500);
    m["segments"][0]["start"] = serde_json::json!(3);
    assert!(
        matches!(refused(&forged(&m, &data, None)), LibraryError::BundleManifest { .. }),
        "a root must start at 0"
    );
    let mut m = manifest_for(&data, 500);
    m["node"]["name"] = serde_json::json!("line\nbreak");
    assert!(
        matches!(refused(&forged(&m, &data, None)), LibraryError::BundleManifest { .. }),
        "names are checked"
    );
    let mut m = manifest_for(&data, 500);
    m["segments"][0]["hash"] = serde_json::json!("../../etc/passwd");
    assert!(
        matches!(refused(&forged(&m, &data, None)), LibraryError::BundleManifest { .. }),
        "hashes become file names"
    );
    let err = refused(&forged(&serde_json::json!({"node": 1}), &[], None));
    assert!(matches!(err, LibraryError::BundleManifest { .. }), "{err:?}");
}

#[test]
fn unpacking_again_into_the_same_scratch_folder_never_alters_stored_segments() {
    let (_src, _, out) = exported();
    let dst = fixture();
    let scratch = dst.dir.path().join("scratch");
    let bundle = read(&out, &scratch).unwrap();
    let id = dst.lib.commit_import(&bundle, None, None, "").unwrap();
    let tip = dst.lib.node(id).unwrap().tip.unwrap();
    let stored = dst.lib.segment_path(&tip);
    let before = fs::read(&stored).unwrap();
    // A second bundle claiming the same segment hash with other bytes, unpacked to the same
    // scratch file name that the store may share an inode with (hard link).
    let data = bytes_for(99, before.len());
    let mut m = manifest_for(&data, data.len() as u64);
    m["segments"][0]["hash"] = serde_json::json!(tip.as_str());
    m["node"]["tip"] = serde_json::json!(tip.as_str());
    let forged_path = dst.dir.path().join("forged.fzpack");
    fs::write(&forged_path, forged(&m, &data, None)).unwrap();
    read(&forged_path, &scratch).unwrap();
    assert_eq!(
        fs::read(&stored).unwrap(),
        before,
        "unpacking must not write through a hard link into the store"
    );
    assert!(dst.lib.verify(content_check).unwrap().is_ok());
}
