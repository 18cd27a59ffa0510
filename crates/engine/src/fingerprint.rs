//! `ModelFingerprint`: what makes an attention state valid for one model only.
//!
//! A blake3 hash over: the model's shape and rope settings (everything in [`ModelConfig`] but its
//! display name), the live cache dtype, the tokenizer's id → token table and BOS/EOS, the chat
//! template, and a digest of the weights. The weight digest hashes every tensor's name, type,
//! shape and every byte of its data (blake3 on all cores): any changed weight changes it. That
//! is seconds for an 8B model, so the digest of each model file is remembered between runs
//! ([`DigestCache`]), keyed by the file's path, size and modification time.

use crate::config::ModelConfig;
use crate::tokenizer::Tokenizer;
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

pub use freeze_attn_ids::ModelFingerprint;

/// Bytes hashed per read when a tensor is read from its file.
const CHUNK: usize = 16 << 20;

/// Accumulates the weight digest, one tensor at a time, in name order.
pub struct WeightDigest(blake3::Hasher);

impl Default for WeightDigest {
    fn default() -> Self {
        Self::new()
    }
}

impl WeightDigest {
    pub fn new() -> Self {
        Self(blake3::Hasher::new())
    }

    fn header(&mut self, name: &str, dtype: &str, shape: &[usize], len: u64) {
        self.0.update(name.as_bytes());
        self.0.update(&[0]);
        self.0.update(dtype.as_bytes());
        for d in shape {
            self.0.update(&(*d as u64).to_le_bytes());
        }
        self.0.update(&len.to_le_bytes());
    }

    /// A tensor whose bytes are in memory (or memory-mapped).
    pub fn tensor_bytes(&mut self, name: &str, dtype: &str, shape: &[usize], bytes: &[u8]) {
        self.header(name, dtype, shape, bytes.len() as u64);
        self.0.update_rayon(bytes);
    }

    /// A tensor stored at `offset..offset+len` of a file.
    pub fn tensor_in_file<R: Read + Seek>(
        &mut self,
        file: &mut R,
        name: &str,
        dtype: &str,
        shape: &[usize],
        offset: u64,
        len: u64,
    ) -> std::io::Result<()> {
        self.header(name, dtype, shape, len);
        file.seek(SeekFrom::Start(offset))?;
        let mut buf = vec![0u8; (len as usize).min(CHUNK)];
        let mut left = len;
        while left > 0 {
            let n = (left as usize).min(CHUNK);
            file.read_exact(&mut buf[..n])?;
            self.0.update_rayon(&buf[..n]);
            left -= n as u64;
        }
        Ok(())
    }

    pub fn finish(self) -> [u8; 32] {
        *self.0.finalize().as_bytes()
    }
}

/// Weight digests remembered between runs, in one small JSON file. Keyed by each file's
/// canonical path, size and modification time: a file that changes in any of them is hashed
/// again. A missing or unreadable cache is only slower, never wrong.
pub struct DigestCache {
    path: PathBuf,
}

/// One version of a model's files on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileKey(String);

impl FileKey {
    /// The key of `files` as they are now (path, size and modification time of each).
    pub fn of(files: &[PathBuf]) -> std::io::Result<Self> {
        let mut key = String::new();
        for f in files {
            let canonical = std::fs::canonicalize(f)?;
            let m = std::fs::metadata(&canonical)?;
            let mtime = m
                .modified()?
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            key.push_str(&format!("{}|{}|{};", canonical.display(), m.len(), mtime));
        }
        Ok(Self(key))
    }
}

impl DigestCache {
    pub fn at(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    fn load(&self) -> HashMap<String, String> {
        std::fs::read(&self.path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    pub fn get(&self, key: &FileKey) -> Option<[u8; 32]> {
        let hex = self.load().remove(&key.0)?;
        blake3::Hash::from_hex(hex).ok().map(|h| *h.as_bytes())
    }

    /// Remembers a digest (best effort: written to a temporary file and renamed).
    pub fn put(&self, key: &FileKey, digest: [u8; 32]) {
        let mut all = self.load();
        all.insert(key.0.clone(), blake3::Hash::from(digest).to_hex().to_string());
        let Some(dir) = self.path.parent() else { return };
        let tmp = dir.join(format!(".weight-digests.{}.tmp", std::process::id()));
        let written = std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(&tmp, serde_json::to_vec(&all).unwrap_or_default()))
            .and_then(|()| std::fs::rename(&tmp, &self.path));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
    }
}

static CACHE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Sets where this process remembers weight digests (the API sets it from its data folder;
/// without it every load hashes the weights again). The first call wins.
pub fn set_digest_cache(path: impl Into<PathBuf>) {
    let _ = CACHE.set(path.into());
}

/// The remembered digest of `files` as they are now, if any.
pub fn remembered_digest(files: &[PathBuf]) -> Option<[u8; 32]> {
    DigestCache::at(CACHE.get()?).get(&FileKey::of(files).ok()?)
}

/// Remembers the digest of `files` as they are now (nothing without a cache).
pub fn remember_digest(files: &[PathBuf], digest: [u8; 32]) {
    if let (Some(c), Ok(k)) = (CACHE.get(), FileKey::of(files)) {
        DigestCache::at(c).put(&k, digest);
    }
}

/// The digest of `files` from the cache, or computed by `compute` and remembered.
pub fn cached_digest(
    files: &[PathBuf],
    compute: impl FnOnce() -> crate::error::Result<[u8; 32]>,
) -> crate::error::Result<[u8; 32]> {
    if let Some(d) = remembered_digest(files) {
        return Ok(d);
    }
    let d = compute()?;
    remember_digest(files, d);
    Ok(d)
}

/// Combines everything that makes a state valid into the fingerprint.
pub fn fingerprint(
    config: &ModelConfig,
    kv_dtype: &str,
    tokenizer: &Tokenizer,
    template: Option<&str>,
    weights: [u8; 32],
) -> ModelFingerprint {
    let mut h = blake3::Hasher::new();
    h.update(b"freeze-attn model fingerprint v2\0");
    let shape = ModelConfig {
        name: String::new(),
        ..config.clone()
    };
    h.update(serde_json::to_string(&shape).unwrap_or_default().as_bytes());
    h.update(kv_dtype.as_bytes());
    h.update(&(tokenizer.vocab_size() as u64).to_le_bytes());
    for id in 0..tokenizer.vocab_size() as u32 {
        if let Some(t) = tokenizer.token_text(id) {
            h.update(t.as_bytes());
        }
        h.update(&[0xff]);
    }
    h.update(&[u8::from(tokenizer.add_bos())]);
    for id in [tokenizer.bos(), tokenizer.eos()] {
        h.update(&id.map(|i| i as i64).unwrap_or(-1).to_le_bytes());
    }
    h.update(template.unwrap_or("").as_bytes());
    h.update(&weights);
    ModelFingerprint::new(&h.finalize().to_hex()[..32])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// Reading a tensor from a file (in chunks) gives the same digest as hashing it in memory,
    /// for sizes around the chunk size.
    #[test]
    fn file_and_memory_digests_agree_for_every_size() {
        for len in [0usize, 100, 4096, 65_537, CHUNK - 1, CHUNK, CHUNK + 3] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let mut file = vec![7u8; 10];
            file.extend(&bytes);
            let mut a = WeightDigest::new();
            a.tensor_bytes("t", "Q4_0", &[len], &bytes);
            let mut b = WeightDigest::new();
            b.tensor_in_file(&mut Cursor::new(&file), "t", "Q4_0", &[len], 10, len as u64)
                .unwrap();
            assert_eq!(a.finish(), b.finish(), "{len} bytes");
        }
    }

    /// One changed byte anywhere in a tensor changes the digest (the old sampled digest missed
    /// bytes between its windows).
    #[test]
    fn every_weight_byte_counts() {
        let bytes: Vec<u8> = (0..1_000_000).map(|i| (i % 253) as u8).collect();
        let digest = |b: &[u8]| {
            let mut d = WeightDigest::new();
            d.tensor_bytes("w", "F16", &[b.len()], b);
            d.finish()
        };
        let base = digest(&bytes);
        for at in [0, 4_100, 500_001, 999_999] {
            let mut changed = bytes.clone();
            changed[at] ^= 1;
            assert_ne!(digest(&changed), base, "a change at byte {at}");
        }
    }

    #[test]
    fn the_cache_is_keyed_by_path_size_and_time() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("m.gguf");
        std::fs::write(&f, b"weights").unwrap();
        let cache = DigestCache::at(dir.path().join("cache/digests.json"));
        let key = FileKey::of(std::slice::from_ref(&f)).unwrap();
        assert_eq!(cache.get(&key), None);
        cache.put(&key, [7; 32]);
        assert_eq!(cache.get(&key), Some([7; 32]));
        std::fs::write(&f, b"weights, changed").unwrap();
        let changed = FileKey::of(std::slice::from_ref(&f)).unwrap();
        assert_ne!(changed, key, "another size is another key");
        assert_eq!(cache.get(&changed), None);
        std::fs::write(dir.path().join("cache/digests.json"), b"not json").unwrap();
        assert_eq!(cache.get(&key), None, "a damaged cache is only a miss");
    }
}
