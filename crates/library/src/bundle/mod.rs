//! Bundles ("personality packs"): one file carrying a node — its name, kind, notes, tags,
//! transcript and state — and the segment files of its chain, to move a state between libraries.
//!
//! Layout (all integers little-endian):
//!
//! ```text
//! offset  size  field
//!      0     8  magic  "FZATPACK"
//!      8     4  format version (u32) = 1
//!     12     8  manifest length in bytes (u64), at most 64 MiB
//!     20    32  blake3 of the manifest bytes
//!     52     …  manifest: UTF-8 JSON (see `format::Manifest`)
//!      …     …  the segment files, root first, back to back, each exactly as long as its
//!               manifest entry says; nothing after the last one
//! ```
//!
//! The manifest lists the node and, per segment, its catalogue fields plus `bytes` and `blake3`
//! of the file. Every byte of the bundle is covered by a check: the header by its fields, the
//! manifest by its hash, each file by its hash, and the total length by the sizes.
//!
//! Import is two steps so the engine can inspect contents before anything is stored:
//! [`read_bundle`] validates everything the library can and unpacks the files into a scratch
//! folder; the caller checks the segments with the engine; [`crate::Library::commit_import`]
//! stores them and creates the node in one transaction.

mod commit;
mod export;
pub(crate) mod format;
mod read;

pub use read::read_bundle;

use crate::ids::SegmentId;
use crate::node::NodeKind;
use crate::segment::SegmentMeta;
use freeze_attn_ids::ModelFingerprint;
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::PathBuf;

/// The node a bundle carries, as recorded in its manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleNode {
    pub name: String,
    pub kind: NodeKind,
    pub notes: String,
    pub tags: Vec<String>,
    pub model_fingerprint: ModelFingerprint,
    /// The exporting library's display name for the model, to tell the user what to install.
    pub model_name: Option<String>,
    pub tip: Option<SegmentId>,
    pub token_count: u64,
    /// JSON text.
    pub transcript: String,
    /// When the node was created in the exporting library (unix ms).
    pub created_at: i64,
}

/// A segment unpacked from a bundle, ready for the engine to inspect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleSegment {
    pub meta: SegmentMeta,
    /// The unpacked file inside the scratch folder.
    pub path: PathBuf,
}

/// A bundle that passed every check [`read_bundle`] makes. Its files live in the caller's
/// scratch folder until [`Bundle::discard`] or the folder is removed; committing does not
/// consume them, so a refused import (a taken name) can be retried under another name.
/// After a commit they may be hard links to stored segments: read or delete them, never
/// write to them in place ([`read_bundle`] itself always replaces, never rewrites, a file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    pub node: BundleNode,
    /// Root first; empty for a node without state.
    pub segments: Vec<BundleSegment>,
}

impl Bundle {
    /// Deletes the unpacked files (best effort).
    pub fn discard(self) {
        for seg in self.segments {
            let _ = fs::remove_file(seg.path);
        }
    }

    /// Total bytes of the segment files.
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.meta.bytes).sum()
    }
}
