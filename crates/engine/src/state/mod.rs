//! Attention states on disk. A state is a chain of **segments**; each segment is one
//! safetensors file holding the K/V of a run of tokens appended after its parent segment, the
//! token ids, and header metadata that names the model fingerprint, the parent, the position,
//! the stored dtype and a checksum. `docs/state-format.md` is the specification.
//!
//! Loading is strict: every field must be present and agree with the model and the file; a state
//! file is untrusted input, so sizes are checked against the header and the file before anything
//! is allocated.

mod convert;
mod direct;
mod error;
mod format;
mod q8;
mod read;
mod upload;
mod write;

pub use error::StateError;
pub use format::{SegmentHeader, StoredDType, FORMAT_NAME, FORMAT_VERSION, OLDEST_READABLE_VERSION};
pub use read::{load_chain, parse_header, read_header, Segment};
pub use write::{write_segment, SegmentInfo};

/// A segment's identity: blake3 over its content (see `docs/state-format.md`), 64 hex digits.
/// The same type the library stores and names files after.
pub use freeze_attn_ids::SegmentId;
