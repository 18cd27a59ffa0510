//! The segment header: what the safetensors `__metadata__` of a segment file must hold.

use super::{SegmentId, StateError};
use crate::error::{EngineError, Result};
use crate::fingerprint::ModelFingerprint;
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

pub const FORMAT_NAME: &str = "freeze-attn/segment";
/// The version this build writes. Version 3's checksum covers the transcript too; version 2
/// stores the token ids as U16 when they all fit (U32 otherwise); version 1 always stored U32.
/// All three are read.
pub const FORMAT_VERSION: u32 = 3;
/// The oldest version this build still reads.
pub const OLDEST_READABLE_VERSION: u32 = 1;

/// How K/V are stored in a segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StoredDType {
    #[default]
    F16,
    Bf16,
    F32,
    /// 8-bit integers in blocks of 32 along the head dimension, one f16 scale per block.
    Q8,
}

impl StoredDType {
    /// Bytes per stored K or V element, scales included.
    pub fn bytes_per_element(self) -> f64 {
        match self {
            Self::F16 | Self::Bf16 => 2.0,
            Self::F32 => 4.0,
            Self::Q8 => 1.0 + 2.0 / 32.0,
        }
    }
}

impl fmt::Display for StoredDType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::F16 => "f16",
            Self::Bf16 => "bf16",
            Self::F32 => "f32",
            Self::Q8 => "q8",
        })
    }
}

impl StoredDType {
    /// The dtype named `s` as the header and the CLI write it.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "f16" => Some(Self::F16),
            "bf16" => Some(Self::Bf16),
            "f32" => Some(Self::F32),
            "q8" => Some(Self::Q8),
            _ => None,
        }
    }
}

impl FromStr for StoredDType {
    type Err = EngineError;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
            .ok_or_else(|| EngineError::Invalid(format!("unknown stored dtype `{s}` (expected f16, bf16, f32 or q8)")))
    }
}

/// Parsed and checked header metadata of one segment.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentHeader {
    pub format_version: u32,
    pub model_fingerprint: ModelFingerprint,
    pub parent: Option<SegmentId>,
    /// Position of the segment's first token (= the parent chain's length).
    pub start: usize,
    pub token_count: usize,
    pub stored_dtype: StoredDType,
    pub n_layer: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    /// blake3 of the tensor data, hex.
    pub checksum: String,
    pub transcript: Option<String>,
}

impl SegmentHeader {
    pub fn to_metadata(&self) -> HashMap<String, String> {
        let mut m = HashMap::new();
        m.insert("format".into(), FORMAT_NAME.into());
        m.insert("format_version".into(), self.format_version.to_string());
        m.insert("model_fingerprint".into(), self.model_fingerprint.to_string());
        m.insert(
            "parent".into(),
            self.parent.as_ref().map(|p| p.to_string()).unwrap_or_default(),
        );
        m.insert("start".into(), self.start.to_string());
        m.insert("token_count".into(), self.token_count.to_string());
        m.insert("stored_dtype".into(), self.stored_dtype.to_string());
        m.insert(
            "kv_shape".into(),
            format!("{},{},{}", self.n_layer, self.n_kv_head, self.head_dim),
        );
        m.insert("checksum".into(), self.checksum.clone());
        if let Some(t) = &self.transcript {
            m.insert("transcript".into(), t.clone());
        }
        m
    }

    /// Reads the metadata strictly: a missing or malformed field is an error, never a default.
    pub fn from_metadata(m: Option<&HashMap<String, String>>, file: &str) -> Result<Self, StateError> {
        let bad = |detail: String| StateError::Header {
            file: file.to_string(),
            detail,
        };
        let not_state = |detail: String| StateError::NotAStateFile {
            file: file.to_string(),
            detail,
        };
        let m = m.ok_or_else(|| not_state("it has no header metadata".into()))?;
        let get = |k: &str| m.get(k).ok_or_else(|| bad(format!("header field `{k}` is missing")));
        let format = m
            .get("format")
            .ok_or_else(|| not_state("its header names no format".into()))?;
        if format != FORMAT_NAME {
            return Err(not_state(format!(
                "its header says format `{format}`, not `{FORMAT_NAME}`"
            )));
        }
        let version: u32 = get("format_version")?
            .parse()
            .map_err(|_| bad("format_version is not a number".into()))?;
        if !(OLDEST_READABLE_VERSION..=FORMAT_VERSION).contains(&version) {
            return Err(StateError::Version {
                file: file.to_string(),
                found: version,
                oldest: OLDEST_READABLE_VERSION,
                newest: FORMAT_VERSION,
            });
        }
        let num = |k: &str| -> Result<usize, StateError> {
            get(k)?
                .parse()
                .map_err(|_| bad(format!("header field `{k}` is not a number")))
        };
        let parent = match get("parent")?.as_str() {
            "" => None,
            p => Some(SegmentId::parse(p).map_err(|_| bad(format!("parent `{p}` is not a segment id")))?),
        };
        let shape: Vec<usize> = get("kv_shape")?
            .split(',')
            .map(|x| x.parse::<usize>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| bad("kv_shape is malformed".into()))?;
        let [n_layer, n_kv_head, head_dim] = shape[..] else {
            return Err(bad("kv_shape must have three numbers".into()));
        };
        let checksum = get("checksum")?.clone();
        if SegmentId::parse(&checksum).is_err() {
            return Err(bad("checksum is malformed".into()));
        }
        let h = Self {
            format_version: version,
            model_fingerprint: ModelFingerprint::new(get("model_fingerprint")?.as_str()),
            parent,
            start: num("start")?,
            token_count: num("token_count")?,
            stored_dtype: {
                let d = get("stored_dtype")?;
                StoredDType::parse(d).ok_or_else(|| StateError::DType {
                    file: file.to_string(),
                    found: d.clone(),
                })?
            },
            n_layer,
            n_kv_head,
            head_dim,
            checksum,
            transcript: m.get("transcript").cloned(),
        };
        if h.parent.is_none() && h.start != 0 {
            return Err(bad(format!(
                "a root segment must start at 0, this one starts at {}",
                h.start
            )));
        }
        if h.stored_dtype == StoredDType::Q8 && !h.head_dim.is_multiple_of(super::q8::BLOCK) {
            return Err(bad(format!(
                "a q8 segment needs a head dimension divisible by {}, this one says {}",
                super::q8::BLOCK,
                h.head_dim
            )));
        }
        if h.token_count == 0 {
            return Err(bad("the segment holds no tokens".into()));
        }
        Ok(h)
    }

    /// Feeds what the checksum covers besides the tensor data: from version 3 on, the
    /// transcript (it decides what the model is told when a chat continues, so a changed
    /// transcript must fail the checksum like a changed K/V). Versions 1 and 2 did not cover it.
    pub fn hash_transcript(version: u32, transcript: Option<&str>, hasher: &mut blake3::Hasher) {
        if let (true, Some(t)) = (version >= 3, transcript) {
            hasher.update(b"\0transcript\0");
            hasher.update(t.as_bytes());
        }
    }

    /// The segment's identity: blake3 over everything that defines its content (the
    /// transcript only through the checksum, from version 3 on).
    pub fn id(&self) -> SegmentId {
        let mut h = blake3::Hasher::new();
        h.update(b"freeze-attn segment id v1\0");
        for part in [
            self.model_fingerprint.as_str(),
            self.parent.as_ref().map(|p| p.as_str()).unwrap_or(""),
            &self.start.to_string(),
            &self.token_count.to_string(),
            &self.stored_dtype.to_string(),
            &format!("{},{},{}", self.n_layer, self.n_kv_head, self.head_dim),
            &self.checksum,
        ] {
            h.update(part.as_bytes());
            h.update(&[0]);
        }
        SegmentId::from_blake3(&h.finalize())
    }
}
