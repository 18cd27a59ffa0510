//! Segment metadata: what the catalogue knows about one segment file, and the rules a chain of
//! segments obeys.
//!
//! A segment holds the K/V of `token_count` tokens appended after its parent, starting at
//! position `start` (= the parent's end; 0 for a root). The file itself is written by the engine
//! and is opaque here. The hash is the caller's content address: the library never rehashes the
//! file (the engine may hash tokens and model rather than bytes), so two puts of one hash are
//! trusted to be the same content, and content checks belong to `verify`'s closure.

use crate::error::{LibraryError, Result};
use crate::ids::SegmentId;
use crate::model::validate_fingerprint;
use freeze_attn_ids::ModelFingerprint;
use serde::{Deserialize, Serialize};

/// Longest dtype label accepted ("f16", "bf16", "q8_0", ...).
const MAX_DTYPE_LEN: usize = 32;

/// A catalogued segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentMeta {
    pub hash: SegmentId,
    pub parent: Option<SegmentId>,
    /// Token position of the first token (the parent's end).
    pub start: u64,
    pub token_count: u64,
    pub dtype: String,
    /// Size of the file in bytes.
    pub bytes: u64,
    pub model_fingerprint: ModelFingerprint,
}

/// A segment about to be stored; its size is taken from the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSegment {
    pub hash: SegmentId,
    pub parent: Option<SegmentId>,
    pub start: u64,
    pub token_count: u64,
    pub dtype: String,
    pub model_fingerprint: ModelFingerprint,
}

impl NewSegment {
    /// The metadata this segment will have once stored with a file of `bytes` bytes.
    pub fn with_bytes(&self, bytes: u64) -> SegmentMeta {
        SegmentMeta {
            hash: self.hash.clone(),
            parent: self.parent.clone(),
            start: self.start,
            token_count: self.token_count,
            dtype: self.dtype.clone(),
            bytes,
            model_fingerprint: self.model_fingerprint.clone(),
        }
    }
}

impl SegmentMeta {
    /// Token position one past the last token of this segment.
    pub fn end(&self) -> u64 {
        self.start.saturating_add(self.token_count)
    }

    /// Checks the fields on their own (not against the parent); the reason names the field.
    pub(crate) fn check_fields(&self) -> std::result::Result<(), String> {
        if self.token_count == 0 {
            return Err("token_count must be at least 1".into());
        }
        if self
            .start
            .checked_add(self.token_count)
            .is_none_or(|end| end > i64::MAX as u64)
        {
            return Err(format!(
                "start {} + token_count {} overflows",
                self.start, self.token_count
            ));
        }
        if self.bytes > i64::MAX as u64 {
            return Err(format!("bytes {} is too large", self.bytes));
        }
        if self.dtype.is_empty()
            || self.dtype.len() > MAX_DTYPE_LEN
            || !self.dtype.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(format!(
                "dtype {:?} must be 1-{MAX_DTYPE_LEN} ASCII letters, digits or _",
                self.dtype
            ));
        }
        validate_fingerprint(&self.model_fingerprint).map_err(|e| e.to_string())?;
        match &self.parent {
            Some(p) if *p == self.hash => Err("a segment cannot be its own parent".into()),
            Some(_) if self.start == 0 => Err("a segment with a parent cannot start at position 0".into()),
            None if self.start != 0 => Err(format!("a root segment must start at 0, not {}", self.start)),
            _ => Ok(()),
        }
    }

    /// Checks that `self` directly continues `parent`: same model, starting at its end.
    pub(crate) fn check_extends(&self, parent: &SegmentMeta) -> std::result::Result<(), String> {
        if self.parent.as_ref() != Some(&parent.hash) {
            return Err(format!("its parent is not {}", parent.hash));
        }
        if self.start != parent.end() {
            return Err(format!(
                "it starts at {} but its parent ends at {}",
                self.start,
                parent.end()
            ));
        }
        if self.model_fingerprint != parent.model_fingerprint {
            return Err(format!(
                "its model {} differs from its parent's {}",
                self.model_fingerprint, parent.model_fingerprint
            ));
        }
        Ok(())
    }

    /// The first field in which two records of the same hash disagree, if any.
    pub(crate) fn first_difference(&self, other: &SegmentMeta) -> Option<&'static str> {
        if self.parent != other.parent {
            Some("parent")
        } else if self.start != other.start {
            Some("start")
        } else if self.token_count != other.token_count {
            Some("token_count")
        } else if self.dtype != other.dtype {
            Some("dtype")
        } else if self.model_fingerprint != other.model_fingerprint {
            Some("model_fingerprint")
        } else if self.bytes != other.bytes {
            Some("bytes")
        } else {
            None
        }
    }

    /// Like [`Self::check_fields`], as a library error.
    pub(crate) fn validate(&self) -> Result<()> {
        self.check_fields().map_err(|reason| LibraryError::InvalidSegment {
            hash: self.hash.clone(),
            reason,
        })
    }
}

/// Checks that `chain` (root first) is one consistent chain and returns its end position.
pub(crate) fn check_chain(chain: &[SegmentMeta]) -> std::result::Result<u64, String> {
    let mut prev: Option<&SegmentMeta> = None;
    for seg in chain {
        seg.check_fields().map_err(|r| format!("segment {}: {r}", seg.hash))?;
        match prev {
            None if seg.parent.is_some() => {
                return Err(format!("segment {} is first but has a parent", seg.hash));
            }
            None => {}
            Some(p) => seg.check_extends(p).map_err(|r| format!("segment {}: {r}", seg.hash))?,
        }
        prev = Some(seg);
    }
    Ok(prev.map_or(0, SegmentMeta::end))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn meta(n: u8, parent: Option<&SegmentMeta>, tokens: u64) -> SegmentMeta {
        SegmentMeta {
            hash: SegmentId::parse(&format!("{n:02x}").repeat(32)).unwrap(),
            parent: parent.map(|p| p.hash.clone()),
            start: parent.map_or(0, SegmentMeta::end),
            token_count: tokens,
            dtype: "f16".into(),
            bytes: 100,
            model_fingerprint: "m".into(),
        }
    }

    #[test]
    fn a_consistent_chain_reports_its_end() {
        let a = meta(1, None, 10);
        let b = meta(2, Some(&a), 5);
        assert_eq!(check_chain(&[a, b]), Ok(15));
        assert_eq!(check_chain(&[]), Ok(0), "an empty chain holds no tokens");
    }

    #[test]
    fn chain_rejects_gaps_wrong_parents_and_model_changes() {
        let a = meta(1, None, 10);
        let mut gap = meta(2, Some(&a), 5);
        gap.start = 11;
        assert!(check_chain(&[a.clone(), gap]).unwrap_err().contains("starts at 11"));
        let orphan = meta(3, Some(&meta(9, None, 1)), 5);
        assert!(
            check_chain(&[a.clone(), orphan]).is_err(),
            "parent must be the previous segment"
        );
        let mut other_model = meta(4, Some(&a), 5);
        other_model.model_fingerprint = "other".into();
        assert!(check_chain(&[a, other_model]).unwrap_err().contains("model"));
    }

    #[test]
    fn fields_are_checked() {
        let mut m = meta(1, None, 1);
        m.token_count = 0;
        assert!(m.check_fields().is_err(), "empty segments are refused");
        let mut m = meta(1, None, 1);
        m.dtype = "f16/../x".into();
        assert!(m.check_fields().is_err(), "dtype is a short label");
        let mut m = meta(1, None, 1);
        m.start = 3;
        assert!(m.check_fields().is_err(), "roots start at 0");
        let mut m = meta(1, None, 1);
        m.start = u64::MAX;
        m.parent = Some(meta(2, None, 1).hash);
        assert!(m.check_fields().is_err(), "overflowing ends are refused");
    }

    #[test]
    fn first_difference_names_the_field() {
        let a = meta(1, None, 10);
        let mut b = a.clone();
        assert_eq!(a.first_difference(&b), None);
        b.dtype = "q8".into();
        assert_eq!(a.first_difference(&b), Some("dtype"));
    }
}
