//! Attention states on disk. A state is a chain of **segments**; each segment is one
//! safetensors file holding the K/V of a run of tokens appended after its parent segment, the
//! token ids, and header metadata that names the model fingerprint, the parent, the position,
//! the stored dtype and a checksum. `docs/state-format.md` is the specification.
//!
//! Loading is strict: every field must be present and agree with the model and the file; a state
//! file is untrusted input, so sizes are checked against the header and the file before anything
//! is allocated.

mod convert;
mod error;
mod format;
mod q8;
mod read;
mod write;

pub use error::StateError;
pub use format::{SegmentHeader, StoredDType, FORMAT_NAME, FORMAT_VERSION, OLDEST_READABLE_VERSION};
pub use read::{load_chain, parse_header, read_header, Segment};
pub use write::{write_segment, SegmentInfo};

/// A segment's identity: blake3 over its content (see `docs/state-format.md`), 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct SegmentId(pub String);

impl std::fmt::Display for SegmentId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl SegmentId {
    pub fn parse(s: &str) -> Option<Self> {
        (s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))).then(|| Self(s.into()))
    }
}
