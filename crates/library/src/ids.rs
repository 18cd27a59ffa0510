//! Newtype identifiers: `NodeId` (a node row); `SegmentId` (a segment's content address) comes
//! from `freeze-attn-ids`, shared with the engine.

use rusqlite::types::{FromSql, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
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

/// The content address of a segment, shared with the engine (which computes it).
pub use freeze_attn_ids::SegmentId;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_id_round_trips_through_text() {
        assert_eq!("42".parse::<NodeId>().unwrap(), NodeId(42));
        assert_eq!(NodeId(7).to_string(), "7");
    }
}
