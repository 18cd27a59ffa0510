//! The bundle container: header, manifest and the checks that bound what a hostile file can
//! make the reader do (every size is checked against limits and the real file length before
//! anything is allocated or written).

use super::BundleNode;
use crate::ids::SegmentId;
use crate::model::validate_fingerprint;
use crate::node::{check_transcript, clean_name, clean_tag};
use crate::segment::{check_chain, SegmentMeta};
use freeze_attn_ids::ModelFingerprint;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::io::{self, Read};

pub(crate) const MAGIC: [u8; 8] = *b"FZATPACK";
pub(crate) const VERSION: u32 = 1;
pub(crate) const HEADER_LEN: u64 = 8 + 4 + 8 + 32;
/// Generous for a transcript of a long chat; small enough to hold in memory.
pub(crate) const MAX_MANIFEST_BYTES: u64 = 64 << 20;
pub(crate) const MAX_SEGMENTS: usize = 1 << 16;
pub(crate) const MAX_TAGS: usize = 1024;

/// The fixed-size start of a bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub version: u32,
    pub manifest_len: u64,
    pub manifest_hash: [u8; 32],
}

impl Header {
    pub(crate) fn encode(&self) -> [u8; HEADER_LEN as usize] {
        let mut out = [0u8; HEADER_LEN as usize];
        out[..8].copy_from_slice(&MAGIC);
        out[8..12].copy_from_slice(&self.version.to_le_bytes());
        out[12..20].copy_from_slice(&self.manifest_len.to_le_bytes());
        out[20..52].copy_from_slice(&self.manifest_hash);
        out
    }

    /// Decodes the fields; the caller has checked the magic.
    pub(crate) fn decode(bytes: &[u8; HEADER_LEN as usize]) -> Header {
        let mut version = [0u8; 4];
        version.copy_from_slice(&bytes[8..12]);
        let mut len = [0u8; 8];
        len.copy_from_slice(&bytes[12..20]);
        let mut manifest_hash = [0u8; 32];
        manifest_hash.copy_from_slice(&bytes[20..52]);
        Header {
            version: u32::from_le_bytes(version),
            manifest_len: u64::from_le_bytes(len),
            manifest_hash,
        }
    }
}

/// The manifest JSON. Unknown fields are refused: a new field means a new format version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Manifest {
    pub node: BundleNode,
    pub segments: Vec<ManifestSegment>,
}

/// One segment file in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ManifestSegment {
    pub hash: SegmentId,
    pub parent: Option<SegmentId>,
    pub start: u64,
    pub token_count: u64,
    pub dtype: String,
    pub model_fingerprint: ModelFingerprint,
    pub bytes: u64,
    /// blake3 of the file's bytes, 64 hex characters.
    pub blake3: String,
}

impl ManifestSegment {
    pub(crate) fn from_meta(meta: &SegmentMeta, blake3: &blake3::Hash) -> Self {
        ManifestSegment {
            hash: meta.hash.clone(),
            parent: meta.parent.clone(),
            start: meta.start,
            token_count: meta.token_count,
            dtype: meta.dtype.clone(),
            model_fingerprint: meta.model_fingerprint.clone(),
            bytes: meta.bytes,
            blake3: blake3.to_hex().to_string(),
        }
    }

    pub(crate) fn meta(&self) -> SegmentMeta {
        SegmentMeta {
            hash: self.hash.clone(),
            parent: self.parent.clone(),
            start: self.start,
            token_count: self.token_count,
            dtype: self.dtype.clone(),
            bytes: self.bytes,
            model_fingerprint: self.model_fingerprint.clone(),
        }
    }

    pub(crate) fn file_hash(&self) -> Result<blake3::Hash, String> {
        blake3::Hash::from_hex(&self.blake3).map_err(|_| {
            format!(
                "segment {}: blake3 {:?} is not 64 hex characters",
                self.hash, self.blake3
            )
        })
    }
}

impl Manifest {
    /// Everything that can be checked without the library: names, tags, transcript, the chain
    /// (parents, starts, models), the node's state against the chain, and hash syntax.
    /// Returns the total bytes of the files.
    pub(crate) fn validate(&self) -> Result<u64, String> {
        let node = &self.node;
        clean_name(&node.name).map_err(|e| e.to_string())?;
        validate_fingerprint(&node.model_fingerprint).map_err(|e| e.to_string())?;
        check_transcript(&node.transcript).map_err(|e| e.to_string())?;
        if node.tags.len() > MAX_TAGS {
            return Err(format!("{} tags, more than {MAX_TAGS}", node.tags.len()));
        }
        for tag in &node.tags {
            clean_tag(tag).map_err(|e| e.to_string())?;
        }
        if self.segments.len() > MAX_SEGMENTS {
            return Err(format!("{} segments, more than {MAX_SEGMENTS}", self.segments.len()));
        }
        let mut seen = HashSet::new();
        let mut total = 0u64;
        for seg in &self.segments {
            seg.file_hash()?;
            if !seen.insert(&seg.hash) {
                return Err(format!("segment {} is listed twice", seg.hash));
            }
            total = total.checked_add(seg.bytes).ok_or("segment sizes overflow")?;
        }
        let metas: Vec<SegmentMeta> = self.segments.iter().map(ManifestSegment::meta).collect();
        let end = check_chain(&metas)?;
        match (metas.last(), &node.tip) {
            (None, None) if node.token_count == 0 => {}
            (None, None) => return Err(format!("token_count {} without a tip", node.token_count)),
            (Some(last), Some(tip)) if &last.hash == tip => {
                if node.token_count <= last.start || node.token_count > end {
                    return Err(format!(
                        "token_count {} is outside the tip segment ({}, {end}]",
                        node.token_count, last.start
                    ));
                }
                if last.model_fingerprint != node.model_fingerprint {
                    return Err(format!(
                        "the node is for model {} but its segments are for {}",
                        node.model_fingerprint, last.model_fingerprint
                    ));
                }
            }
            _ => return Err("the node's tip is not the last segment listed".into()),
        }
        Ok(total)
    }
}

/// A reader that hashes what passes through it.
pub(crate) struct HashingReader<R> {
    pub inner: R,
    pub hasher: blake3::Hasher,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::NodeKind;

    fn seg(n: u8, parent: Option<&ManifestSegment>, tokens: u64) -> ManifestSegment {
        ManifestSegment {
            hash: SegmentId::parse(&format!("{n:02x}").repeat(32)).unwrap(),
            parent: parent.map(|p| p.hash.clone()),
            start: parent.map_or(0, |p| p.start + p.token_count),
            token_count: tokens,
            dtype: "f16".into(),
            model_fingerprint: "m".into(),
            bytes: 10,
            blake3: "0".repeat(64),
        }
    }

    fn manifest() -> Manifest {
        let a = seg(1, None, 4);
        let b = seg(2, Some(&a), 4);
        Manifest {
            node: BundleNode {
                name: "Pirate".into(),
                kind: NodeKind::Personality,
                notes: String::new(),
                tags: vec!["fun".into()],
                model_fingerprint: "m".into(),
                model_name: None,
                tip: Some(b.hash.clone()),
                token_count: 6,
                transcript: "[]".into(),
                created_at: 0,
            },
            segments: vec![a, b],
        }
    }

    #[test]
    fn header_round_trips() {
        let h = Header {
            version: VERSION,
            manifest_len: 1234,
            manifest_hash: [7; 32],
        };
        let bytes = h.encode();
        assert_eq!(&bytes[..8], &MAGIC);
        assert_eq!(Header::decode(&bytes), h);
    }

    #[test]
    fn a_consistent_manifest_validates_and_sums_sizes() {
        assert_eq!(manifest().validate(), Ok(20));
    }

    #[test]
    fn inconsistent_manifests_are_refused() {
        let mut m = manifest();
        m.node.token_count = 4;
        assert!(
            m.validate().unwrap_err().contains("outside the tip"),
            "count must end inside the tip"
        );
        let mut m = manifest();
        m.node.tip = Some(m.segments[0].hash.clone());
        assert!(m.validate().is_err(), "the tip must be the last segment");
        let mut m = manifest();
        m.segments.swap(0, 1);
        assert!(m.validate().is_err(), "segments must be root first");
        let mut m = manifest();
        m.segments[1].bytes = u64::MAX;
        assert!(m.validate().is_err(), "sizes must not overflow");
        let mut m = manifest();
        m.node.name = "\n".into();
        assert!(m.validate().is_err(), "names are checked");
        let mut m = manifest();
        m.segments[0].blake3 = "xyz".into();
        assert!(m.validate().is_err(), "file hashes must be hex");
    }

    #[test]
    fn unknown_manifest_fields_are_refused() {
        let mut v = serde_json::to_value(manifest()).unwrap();
        v["surprise"] = serde_json::json!(1);
        assert!(serde_json::from_value::<Manifest>(v).is_err());
    }
}
