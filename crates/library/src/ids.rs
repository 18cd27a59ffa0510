//! Newtype identifiers: `NodeId` (a node row) and `SegmentHash` (a segment's content address).

use crate::error::{LibraryError, Result};
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Identifies a node of the state tree. Stable for the life of the node; never reused while
/// the node exists (SQLite rowids of deleted rows may be reused later).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeId(pub i64);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for NodeId {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        s.trim().parse().map(NodeId)
    }
}

impl ToSql for NodeId {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        self.0.to_sql()
    }
}

impl FromSql for NodeId {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        i64::column_result(value).map(NodeId)
    }
}

/// The content address of a segment: 64 lowercase hexadecimal characters (a blake3 digest
/// chosen by the caller). Always valid once constructed, so it is safe to use in file names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SegmentHash(String);

impl SegmentHash {
    /// Length of the hexadecimal form.
    pub const LEN: usize = 64;

    /// Parses a 64-character hexadecimal digest; upper case is accepted and normalised.
    pub fn parse(s: &str) -> Result<Self> {
        if s.len() == Self::LEN && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(SegmentHash(s.to_ascii_lowercase()))
        } else {
            Err(LibraryError::InvalidSegmentHash(s.to_owned()))
        }
    }

    /// The address of a blake3 digest, for callers that hash the file's bytes.
    pub fn from_blake3(hash: &blake3::Hash) -> Self {
        SegmentHash(hash.to_hex().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SegmentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for SegmentHash {
    type Err = LibraryError;
    fn from_str(s: &str) -> Result<Self> {
        SegmentHash::parse(s)
    }
}

impl TryFrom<String> for SegmentHash {
    type Error = LibraryError;
    fn try_from(s: String) -> Result<Self> {
        SegmentHash::parse(&s)
    }
}

impl From<SegmentHash> for String {
    fn from(h: SegmentHash) -> String {
        h.0
    }
}

impl ToSql for SegmentHash {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.0.as_str()))
    }
}

impl FromSql for SegmentHash {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let s = value.as_str()?;
        SegmentHash::parse(s).map_err(|e| FromSqlError::Other(Box::new(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_hash_accepts_64_hex_and_normalises_case() {
        let upper = "AB".repeat(32);
        let h = SegmentHash::parse(&upper).expect("64 hex characters are a valid hash");
        assert_eq!(h.as_str(), "ab".repeat(32), "hashes are stored in lower case");
    }

    #[test]
    fn segment_hash_rejects_wrong_length_and_non_hex() {
        for bad in ["", "abc", &"g".repeat(64), &"a".repeat(65), &"../".repeat(21)] {
            assert!(
                matches!(SegmentHash::parse(bad), Err(LibraryError::InvalidSegmentHash(_))),
                "{bad:?} must be refused: hashes become file names"
            );
        }
    }

    #[test]
    fn segment_hash_deserialises_only_valid_values() {
        let good = format!("\"{}\"", "0".repeat(64));
        assert!(serde_json::from_str::<SegmentHash>(&good).is_ok());
        assert!(
            serde_json::from_str::<SegmentHash>("\"zz\"").is_err(),
            "serde must validate too"
        );
    }

    #[test]
    fn blake3_digest_is_a_valid_hash() {
        let h = SegmentHash::from_blake3(&blake3::hash(b"kv"));
        assert_eq!(SegmentHash::parse(h.as_str()).unwrap(), h);
    }

    #[test]
    fn node_id_round_trips_through_text() {
        assert_eq!("42".parse::<NodeId>().unwrap(), NodeId(42));
        assert_eq!(NodeId(7).to_string(), "7");
    }
}
