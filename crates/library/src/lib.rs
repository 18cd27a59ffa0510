//! `freeze-attn-library`: the persistent catalogue of Freeze-Attn's state tree.
//!
//! A library is a folder holding `library.sqlite3` (the catalogue) and `segments/` (the blob
//! store). A **segment** is an opaque file, written by the engine, with the K/V of a run of
//! tokens appended after a parent segment; the library knows only its metadata and stores it as
//! `segments/<hash>.seg`, addressed by the caller's blake3 hash, so identical segments are stored
//! once. A **node** is a named state in a tree of nodes: the first `token_count` tokens of the
//! chain of segments ending at its `tip`, plus name, kind, notes, tags and transcript. Forks
//! share their parent's segments; a rewind references a prefix without copying.
//!
//! Invariants:
//! - A catalogued segment's file exists with its recorded size: files are written to a temp
//!   name, fsynced and renamed into place *before* their row commits, under the database write
//!   lock; `gc` deletes files under the same lock. A crash leaves at worst unreferenced files.
//! - Chains are consistent: a segment's parent is catalogued, it starts where its parent ends,
//!   and it is for the same model. A node's tip is the segment holding its last token.
//! - Names are unique among siblings, compared case-insensitively.
//! - Every operation is one transaction; several handles and processes (the app and the CLI)
//!   may use one library at once.
//! - A database written by a newer build is refused, never modified.
//! - No panics on bad input: errors are [`LibraryError`] variants naming what failed.
//!
//! This crate knows nothing about models or tensors (no candle); content checks of segment
//! files are the engine's, passed to [`Library::verify`] and done between [`read_bundle`] and
//! [`Library::commit_import`].

#![forbid(unsafe_code)]

mod bundle;
mod db;
mod delete;
mod durable;
mod error;
mod forest;
mod gc;
mod ids;
mod library;
mod model;
mod node;
mod node_ops;
mod prefix;
mod schema;
mod search;
mod segment;
mod segment_store;
mod tree;
mod verify;

pub use bundle::{read_bundle, Bundle, BundleNode, BundleSegment};
pub use delete::{DeleteMode, Deletion};
pub use durable::TempFile;
pub use error::{LibraryError, Result};
pub use freeze_attn_ids::ModelFingerprint;
pub use gc::{GcOptions, GcReport};
pub use ids::{NodeId, SegmentId};
pub use library::{Library, DATABASE_FILE, SEGMENTS_DIR};
pub use model::ModelRecord;
pub use node::{BranchFill, NewNode, Node, NodeKind, NodeSummary, MAX_NAME_CHARS, MAX_TAG_CHARS};
pub use prefix::{block_hashes, CacheEntry, PrefixMatch, PREFIX_BLOCK};
pub use schema::node_questions::{Question, MAX_PER_NODE as MAX_QUESTIONS};
pub use schema::SCHEMA_VERSION;
pub use search::SearchHit;
pub use segment::{NewSegment, SegmentMeta};
pub use tree::{NodeOrder, TreeEntry};
pub use verify::{Problem, ProblemKind, Rejection, VerifyReport};
