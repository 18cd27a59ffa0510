//! Shared fixtures: a library in a temporary folder and segments whose hash is the blake3 of
//! their bytes, so content checks can recompute it.

#![allow(dead_code)]

use freeze_attn_library::{Library, NewNode, NewSegment, NodeId, NodeKind, Rejection, SegmentId, SegmentMeta};
use std::fs;
use std::path::Path;

pub const MODEL: &str = "model-fingerprint-a";

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub lib: Library,
}

pub fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let lib = Library::open(dir.path().join("lib")).expect("open a new library");
    Fixture { dir, lib }
}

/// Deterministic bytes for `seed`.
pub fn bytes_for(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The segment description for `content` after `parent`.
pub fn new_segment(content: &[u8], parent: Option<&SegmentMeta>, tokens: u64) -> NewSegment {
    NewSegment {
        hash: SegmentId::from_blake3(&blake3::hash(content)),
        parent: parent.map(|p| p.hash.clone()),
        start: parent.map_or(0, SegmentMeta::end),
        token_count: tokens,
        dtype: "f16".into(),
        model_fingerprint: MODEL.into(),
    }
}

/// Stores a segment of `len` bytes derived from `seed`, through a temp segment file.
pub fn put(lib: &Library, parent: Option<&SegmentMeta>, tokens: u64, len: usize, seed: u64) -> SegmentMeta {
    let content = bytes_for(seed, len);
    let temp = lib.temp_segment().expect("temp segment");
    fs::write(temp.path(), &content).expect("write segment");
    lib.put_temp_segment(&new_segment(&content, parent, tokens), temp)
        .expect("put segment")
}

/// Creates a node with the state `tip`/`tokens` (or empty) under `parent`.
pub fn node(lib: &Library, parent: Option<NodeId>, name: &str, tip: Option<&SegmentMeta>, tokens: u64) -> NodeId {
    let mut new = NewNode::new(name, NodeKind::Chat, MODEL);
    new.parent = parent;
    if let Some(t) = tip {
        new = new.with_state(t.hash.clone(), tokens);
    }
    lib.create_node(&new).expect("create node")
}

/// The content check the engine would pass to `verify`: here, the hash is the file's blake3.
pub fn content_check(meta: &SegmentMeta, path: &Path) -> Result<(), Rejection> {
    let rejected = |message: String| Rejection {
        code: "test_content",
        message,
    };
    let bytes = fs::read(path).map_err(|e| rejected(e.to_string()))?;
    if blake3::hash(&bytes).to_hex().as_str() == meta.hash.as_str() {
        Ok(())
    } else {
        Err(rejected("content does not match its hash".into()))
    }
}

/// Names of the files in `dir`, sorted.
pub fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("list dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Total size of the files in `dir`.
pub fn bytes_in(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .expect("list dir")
        .map(|e| e.expect("entry").metadata().expect("stat").len())
        .sum()
}
