//! Nodes: the named states of the tree, what a new one needs, and the rules for names and tags.
//!
//! A node's state is the first `token_count` tokens of the segment chain ending at `tip`. The
//! count may stop inside the tip segment (a rewind references a prefix, no copy). The library
//! keeps `tip` canonical: it is the segment holding the last token, so a node never lists a
//! segment it does not use, and `tip` is `None` exactly when `token_count` is 0.
//!
//! Names are unique among siblings (the top level counts as one parent), compared after Unicode
//! case folding, so a path like `personalities/Pirate` names one node. Tags are stored folded.

use crate::db::fold;
use crate::error::{LibraryError, Result};
use crate::ids::{NodeId, SegmentId};
use freeze_attn_ids::ModelFingerprint;
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Longest node name, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest tag, in characters.
pub const MAX_TAG_CHARS: usize = 64;

/// What a node holds; stored as lower-case text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub enum NodeKind {
    Personality,
    Story,
    Document,
    Chat,
    /// A state a server kept of a recent request: hidden from listings by default, evicted
    /// least recently used; never a user's named state.
    Cache,
}

impl NodeKind {
    /// The kinds a person makes (every kind but [`NodeKind::Cache`]).
    pub const USER: [NodeKind; 4] = [
        NodeKind::Personality,
        NodeKind::Story,
        NodeKind::Document,
        NodeKind::Chat,
    ];
    pub const ALL: [NodeKind; 5] = [
        NodeKind::Personality,
        NodeKind::Story,
        NodeKind::Document,
        NodeKind::Chat,
        NodeKind::Cache,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NodeKind::Personality => "personality",
            NodeKind::Story => "story",
            NodeKind::Document => "document",
            NodeKind::Chat => "chat",
            NodeKind::Cache => "cache",
        }
    }
}

impl fmt::Display for NodeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for NodeKind {
    type Err = LibraryError;
    fn from_str(s: &str) -> Result<Self> {
        NodeKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| LibraryError::InvalidKind(s.to_owned()))
    }
}

impl ToSql for NodeKind {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for NodeKind {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        value.as_str()?.parse().map_err(|e| FromSqlError::Other(Box::new(e)))
    }
}

/// A node with everything stored about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub id: NodeId,
    pub parent: Option<NodeId>,
    pub name: String,
    pub kind: NodeKind,
    pub notes: String,
    /// Folded tags, sorted.
    pub tags: Vec<String>,
    pub pinned: bool,
    pub model_fingerprint: ModelFingerprint,
    /// The segment holding the last token; `None` for an empty state.
    pub tip: Option<SegmentId>,
    pub token_count: u64,
    /// JSON text, opaque to the library.
    pub transcript: String,
    /// Unix milliseconds.
    pub created_at: i64,
    pub updated_at: i64,
}

/// What a listing shows of a node: no notes or transcript, plus its cost on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSummary {
    pub id: NodeId,
    pub parent: Option<NodeId>,
    pub name: String,
    pub kind: NodeKind,
    pub pinned: bool,
    pub tags: Vec<String>,
    /// The user's notes (listings show them; they are short text).
    pub notes: String,
    /// A line of what the node holds (see [`NewNode::preview`]).
    pub preview: String,
    pub model_fingerprint: ModelFingerprint,
    pub tip: Option<SegmentId>,
    pub token_count: u64,
    /// Bytes of the segments in this node's chain that its parent's chain does not use.
    pub own_bytes: u64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A node to create. `NewNode::new` fills the optional parts with empty values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewNode {
    pub parent: Option<NodeId>,
    pub name: String,
    pub kind: NodeKind,
    pub model_fingerprint: ModelFingerprint,
    /// Any segment of whose chain the state is a prefix; stored canonically (see module docs).
    pub tip: Option<SegmentId>,
    pub token_count: u64,
    pub transcript: String,
    /// A line of what the node holds, written by the caller that knows the transcript's format
    /// (cut to `MAX_PREVIEW_CHARS` characters here).
    pub preview: String,
    pub notes: String,
    pub tags: Vec<String>,
    pub pinned: bool,
}

/// The state and transcript that fill an empty branch (see [`crate::Library::fill_branch`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BranchFill {
    pub name: String,
    pub kind: NodeKind,
    pub tip: Option<SegmentId>,
    pub token_count: u64,
    pub transcript: String,
    pub preview: String,
}

impl NewNode {
    /// An empty top-level node: no state, transcript `[]`, no notes or tags, not pinned.
    pub fn new(name: impl Into<String>, kind: NodeKind, model_fingerprint: impl Into<ModelFingerprint>) -> Self {
        NewNode {
            parent: None,
            name: name.into(),
            kind,
            model_fingerprint: model_fingerprint.into(),
            tip: None,
            token_count: 0,
            transcript: "[]".to_owned(),
            preview: String::new(),
            notes: String::new(),
            tags: Vec::new(),
            pinned: false,
        }
    }

    /// Sets the parent node.
    pub fn under(mut self, parent: NodeId) -> Self {
        self.parent = Some(parent);
        self
    }

    /// Sets the state: the first `token_count` tokens of the chain ending at `tip`.
    pub fn with_state(mut self, tip: SegmentId, token_count: u64) -> Self {
        self.tip = Some(tip);
        self.token_count = token_count;
        self
    }
}

/// Trims a name and checks it; returns the trimmed name.
pub(crate) fn clean_name(name: &str) -> Result<String> {
    let trimmed = name.trim();
    let reason = if trimmed.is_empty() {
        Some("a name cannot be empty")
    } else if trimmed.chars().count() > MAX_NAME_CHARS {
        Some("a name is at most 200 characters")
    } else if trimmed.chars().any(char::is_control) {
        Some("a name cannot contain control characters or line breaks")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(LibraryError::InvalidName {
            name: name.to_owned(),
            reason,
        }),
        None => Ok(trimmed.to_owned()),
    }
}

/// The key names are compared by among siblings.
pub(crate) fn name_key(clean: &str) -> String {
    fold(clean)
}

/// Trims and folds a tag and checks it; returns the stored form.
pub(crate) fn clean_tag(tag: &str) -> Result<String> {
    let folded = fold(tag.trim());
    let reason = if folded.is_empty() {
        Some("a tag cannot be empty")
    } else if folded.chars().count() > MAX_TAG_CHARS {
        Some("a tag is at most 64 characters")
    } else if folded.chars().any(char::is_control) {
        Some("a tag cannot contain control characters")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(LibraryError::InvalidTag {
            tag: tag.to_owned(),
            reason,
        }),
        None => Ok(folded),
    }
}

/// The transcript must be JSON (any value); its shape is the API's business.
pub(crate) fn check_transcript(transcript: &str) -> Result<()> {
    serde_json::from_str::<serde::de::IgnoredAny>(transcript)
        .map(|_| ())
        .map_err(|e| LibraryError::InvalidTranscript(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_text() {
        for kind in NodeKind::ALL {
            assert_eq!(kind.as_str().parse::<NodeKind>().unwrap(), kind);
        }
        assert!(matches!(
            "folder".parse::<NodeKind>(),
            Err(LibraryError::InvalidKind(_))
        ));
    }

    #[test]
    fn names_are_trimmed_and_checked() {
        assert_eq!(clean_name("  Pirate  ").unwrap(), "Pirate");
        for bad in ["", "   ", "a\nb", &"x".repeat(MAX_NAME_CHARS + 1)] {
            assert!(
                matches!(clean_name(bad), Err(LibraryError::InvalidName { .. })),
                "{bad:?}"
            );
        }
        assert_eq!(
            name_key("ÉMILE"),
            name_key("émile"),
            "sibling names compare case-insensitively"
        );
    }

    #[test]
    fn tags_are_folded_and_checked() {
        assert_eq!(clean_tag(" Sci-Fi ").unwrap(), "sci-fi");
        assert!(clean_tag(" ").is_err());
        assert!(clean_tag("a\tb").is_err());
    }

    #[test]
    fn transcripts_must_be_json() {
        assert!(check_transcript("[]").is_ok());
        assert!(check_transcript(r#"[{"role":"user","content":"hi"}]"#).is_ok());
        assert!(matches!(
            check_transcript("not json"),
            Err(LibraryError::InvalidTranscript(_))
        ));
    }
}
