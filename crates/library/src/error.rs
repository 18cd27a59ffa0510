//! `LibraryError`: every way a library operation can fail, one variant per cause.

use crate::ids::{NodeId, SegmentId};
use std::path::PathBuf;

/// Shorthand used throughout the crate.
pub type Result<T, E = LibraryError> = std::result::Result<T, E>;

/// Errors of the library crate. Variants name what failed so the API layer can map them to
/// user-facing codes without parsing messages.
#[derive(Debug, thiserror::Error)]
pub enum LibraryError {
    /// SQLite's message can quote whole schema statements (a damaged schema): shown on one
    /// line, at most 300 characters.
    #[error("library database: {}", one_line(&.0.to_string(), 300))]
    Database(#[from] rusqlite::Error),

    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "the library was written by a newer Freeze-Attn (schema version {found}, this build knows \
         up to {supported}); it was left untouched — update Freeze-Attn to open it"
    )]
    NewerDatabase { found: i64, supported: i64 },

    #[error("node {0} not found")]
    NodeNotFound(NodeId),

    #[error("a node named {name:?} already exists {}", in_parent(parent))]
    NameTaken { name: String, parent: Option<NodeId> },

    #[error("invalid name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },

    #[error("invalid tag {tag:?}: {reason}")]
    InvalidTag { tag: String, reason: &'static str },

    #[error("unknown node kind {0:?}: expected personality, story, document or chat")]
    InvalidKind(String),

    #[error("invalid model fingerprint {0:?}: must be non-empty, without control characters")]
    InvalidFingerprint(String),

    #[error("transcript is not valid JSON: {0}")]
    InvalidTranscript(String),

    #[error("cannot move node {node} under {new_parent}: it is the node itself or one of its descendants")]
    MoveCycle { node: NodeId, new_parent: NodeId },

    #[error("node {node} is not an empty branch to fill: {reason}")]
    NotAnEmptyBranch { node: NodeId, reason: &'static str },

    #[error(transparent)]
    InvalidSegmentId(#[from] freeze_attn_ids::InvalidSegmentId),

    #[error("the library fails verification ({problems} problem(s); first: {first}): nothing was deleted; see `freeze-attn states verify`")]
    Unhealthy { problems: usize, first: String },

    #[error("invalid segment {hash}: {reason}")]
    InvalidSegment { hash: SegmentId, reason: String },

    #[error("segment {0} not found in the library")]
    SegmentNotFound(SegmentId),

    #[error("segment {hash} is catalogued but its file {path} is missing")]
    SegmentFileMissing { hash: SegmentId, path: PathBuf },

    #[error("segment {hash} is already stored with different metadata ({field} differs)")]
    SegmentConflict { hash: SegmentId, field: &'static str },

    #[error("segment {hash} is {found} bytes on disk but {expected} were expected")]
    SegmentSize { hash: SegmentId, expected: u64, found: u64 },

    #[error("model mismatch: expected fingerprint {expected}, found {found}")]
    ModelMismatch {
        expected: freeze_attn_ids::ModelFingerprint,
        found: freeze_attn_ids::ModelFingerprint,
    },

    #[error("token count {token_count} is out of range: the chain holds {available} tokens")]
    TokenCountOutOfRange { token_count: u64, available: u64 },

    #[error("model path {0} is not valid UTF-8")]
    NonUtf8Path(PathBuf),

    #[error("{what} {value} does not fit the database's 64-bit signed integers")]
    ValueTooLarge { what: &'static str, value: u64 },

    #[error("{path} is not a Freeze-Attn bundle (bad magic bytes)")]
    BundleBadMagic { path: PathBuf },

    #[error("bundle {path} has format version {found}; this build reads version {supported}")]
    BundleVersion { path: PathBuf, found: u32, supported: u32 },

    #[error("bundle {path} is truncated: {what} needs {expected} bytes, only {found} are present")]
    BundleTruncated {
        path: PathBuf,
        what: String,
        expected: u64,
        found: u64,
    },

    #[error("bundle {path} has {extra} bytes after the last file its manifest lists")]
    BundleTrailingData { path: PathBuf, extra: u64 },

    #[error("bundle {path}: {what} is {value}, over the limit of {limit}")]
    BundleTooLarge {
        path: PathBuf,
        what: &'static str,
        value: u64,
        limit: u64,
    },

    #[error("bundle {path}: checksum of {what} does not match its manifest (corrupted)")]
    BundleChecksum { path: PathBuf, what: String },

    #[error("bundle {path}: invalid manifest: {reason}")]
    BundleManifest { path: PathBuf, reason: String },
}

fn in_parent(parent: &Option<NodeId>) -> String {
    match parent {
        Some(p) => format!("under node {p}"),
        None => "at the top level".to_owned(),
    }
}

impl LibraryError {
    /// Wraps an IO error with the action and path it concerned.
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| LibraryError::Io { action, path, source }
    }
}

/// Converts an unsigned count for storage in SQLite's `INTEGER` (i64).
pub(crate) fn to_sql_int(what: &'static str, value: u64) -> Result<i64> {
    i64::try_from(value).map_err(|_| LibraryError::ValueTooLarge { what, value })
}

/// Reads an unsigned count back; the schema's CHECK constraints keep stored values non-negative.
pub(crate) fn from_sql_int(value: i64) -> u64 {
    value.max(0) as u64
}

/// `text` on one line (runs of whitespace, line breaks included, become one space), cut to
/// `max` characters with an ellipsis.
fn one_line(text: &str, max: usize) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line,
    }
}

#[cfg(test)]
mod one_line_tests {
    #[test]
    fn a_quoted_schema_becomes_one_short_line() {
        let schema = "CREATE TABLE nodes (\n  id INTEGER,\n".repeat(40);
        let e = super::LibraryError::Database(rusqlite::Error::InvalidQuery);
        assert!(!e.to_string().contains('\n'));
        let line = super::one_line(&format!("malformed database schema (nodes) - {schema}"), 300);
        assert!(
            !line.contains('\n') && line.chars().count() == 301 && line.ends_with('…'),
            "{line}"
        );
    }
}
