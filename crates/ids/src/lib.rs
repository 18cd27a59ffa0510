//! # freeze-attn-ids
//!
//! The identifiers that cross the crate seams, defined once: the engine writes them into state
//! files, the library stores them in SQLite and names files after them, the API and the app show
//! them. One type per concept, so that nothing converts them through strings.
//!
//! - [`SegmentId`]: a segment's content address, 64 lowercase hexadecimal digits (a blake3
//!   digest). Always valid once constructed, so it is safe in file names.
//! - [`ModelFingerprint`]: what makes an attention state valid for one model only (see
//!   `docs/state-format.md` for what it covers). Opaque text to everything but the engine.

#![forbid(unsafe_code)]

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A string that is not a segment id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a segment id (64 hexadecimal digits)")]
pub struct InvalidSegmentId(pub String);

/// The content address of a segment: 64 lowercase hexadecimal characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
#[cfg_attr(feature = "specta", derive(specta::Type), specta(transparent))]
pub struct SegmentId(String);

impl SegmentId {
    /// Length of the hexadecimal form.
    pub const LEN: usize = 64;

    /// Parses a 64-character hexadecimal digest; upper case is accepted and normalised.
    pub fn parse(s: &str) -> Result<Self, InvalidSegmentId> {
        if s.len() == Self::LEN && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(Self(s.to_ascii_lowercase()))
        } else {
            Err(InvalidSegmentId(s.chars().take(80).collect()))
        }
    }

    /// The id of a blake3 digest.
    pub fn from_blake3(hash: &blake3::Hash) -> Self {
        Self(hash.to_hex().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first `n` digits, for messages.
    pub fn short(&self, n: usize) -> &str {
        &self.0[..n.min(Self::LEN)]
    }
}

impl fmt::Display for SegmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for SegmentId {
    type Err = InvalidSegmentId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for SegmentId {
    type Error = InvalidSegmentId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<SegmentId> for String {
    fn from(h: SegmentId) -> String {
        h.0
    }
}

/// What makes an attention state valid for one model only: a blake3 digest (hex) computed by
/// the engine. Everything else only compares and shows it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct ModelFingerprint(String);

impl ModelFingerprint {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first `n` characters, for messages.
    pub fn short(&self, n: usize) -> &str {
        let end = self.0.char_indices().nth(n).map_or(self.0.len(), |(i, _)| i);
        &self.0[..end]
    }
}

impl From<&str> for ModelFingerprint {
    fn from(s: &str) -> Self {
        Self(s.to_string())
    }
}

impl From<String> for ModelFingerprint {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl fmt::Display for ModelFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(feature = "sql")]
mod sql {
    use super::{ModelFingerprint, SegmentId};
    use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};

    impl ToSql for SegmentId {
        fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
            Ok(ToSqlOutput::from(self.0.as_str()))
        }
    }

    impl FromSql for SegmentId {
        fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
            SegmentId::parse(value.as_str()?).map_err(|e| FromSqlError::Other(Box::new(e)))
        }
    }

    impl ToSql for ModelFingerprint {
        fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
            Ok(ToSqlOutput::from(self.0.as_str()))
        }
    }

    impl FromSql for ModelFingerprint {
        fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
            Ok(ModelFingerprint(value.as_str()?.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_id_accepts_64_hex_and_normalises_case() {
        let upper = "AB".repeat(32);
        let h = SegmentId::parse(&upper).expect("64 hex characters are a valid id");
        assert_eq!(h.as_str(), "ab".repeat(32), "ids are kept in lower case");
    }

    #[test]
    fn segment_id_rejects_wrong_length_and_non_hex() {
        for bad in ["", "abc", &"g".repeat(64), &"a".repeat(65), &"../".repeat(21)] {
            assert!(
                SegmentId::parse(bad).is_err(),
                "{bad:?} must be refused: ids become file names"
            );
        }
    }

    #[test]
    fn segment_id_deserialises_only_valid_values() {
        let good = format!("\"{}\"", "0".repeat(64));
        assert!(serde_json::from_str::<SegmentId>(&good).is_ok());
        assert!(
            serde_json::from_str::<SegmentId>("\"zz\"").is_err(),
            "serde must validate too"
        );
    }

    #[test]
    fn blake3_digest_is_a_valid_id() {
        let h = SegmentId::from_blake3(&blake3::hash(b"kv"));
        assert_eq!(SegmentId::parse(h.as_str()).unwrap(), h);
    }

    #[test]
    fn fingerprint_is_text_on_the_wire() {
        let f = ModelFingerprint::new("abc123");
        assert_eq!(serde_json::to_string(&f).unwrap(), "\"abc123\"");
        assert_eq!(f.short(3), "abc");
        assert_eq!(f.short(99), "abc123");
    }
}
