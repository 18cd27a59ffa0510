//! `ModelFingerprint`: what makes an attention state valid for one model only.
//!
//! A blake3 hash over: the model's shape and rope settings (everything in [`ModelConfig`] but its
//! display name), the live cache dtype, the tokenizer's id → token table and BOS/EOS, the chat
//! template, and a digest of the weights. The weight digest hashes every tensor's name, type and
//! shape and 16 evenly spaced 4 KiB windows of its bytes: a different fine-tune, quantization or
//! corrupted file changes it, and it costs a few megabytes of reads even for an 8B model.

use crate::config::ModelConfig;
use crate::tokenizer::Tokenizer;
use std::io::{Read, Seek, SeekFrom};

pub use freeze_attn_ids::ModelFingerprint;

const WINDOWS: u64 = 16;
const WINDOW: u64 = 4096;

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

    fn header(&mut self, name: &str, dtype: &str, shape: &[usize]) {
        self.0.update(name.as_bytes());
        self.0.update(&[0]);
        self.0.update(dtype.as_bytes());
        for d in shape {
            self.0.update(&(*d as u64).to_le_bytes());
        }
    }

    /// A tensor whose bytes are in memory (or memory-mapped).
    pub fn tensor_bytes(&mut self, name: &str, dtype: &str, shape: &[usize], bytes: &[u8]) {
        self.header(name, dtype, shape);
        for (s, e) in windows(bytes.len() as u64) {
            self.0.update(&bytes[s as usize..e as usize]);
        }
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
        self.header(name, dtype, shape);
        let pieces = windows(len);
        // A tensor of up to WINDOWS × WINDOW bytes is hashed whole, in one piece.
        let longest = pieces.iter().map(|(s, e)| e - s).max().unwrap_or(0);
        let mut buf = vec![0u8; longest as usize];
        for (s, e) in pieces {
            file.seek(SeekFrom::Start(offset + s))?;
            let n = (e - s) as usize;
            file.read_exact(&mut buf[..n])?;
            self.0.update(&buf[..n]);
        }
        Ok(())
    }

    pub fn finish(self) -> [u8; 32] {
        *self.0.finalize().as_bytes()
    }
}

fn windows(len: u64) -> Vec<(u64, u64)> {
    if len <= WINDOWS * WINDOW {
        return vec![(0, len)];
    }
    let step = (len - WINDOW) / (WINDOWS - 1);
    (0..WINDOWS).map(|i| (i * step, i * step + WINDOW)).collect()
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
    h.update(b"freeze-attn model fingerprint v1\0");
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

    /// Tensors smaller than one window, between one window and the whole-tensor limit, and
    /// larger: reading from a file gives the same digest as hashing the bytes in memory.
    #[test]
    fn file_and_memory_digests_agree_for_every_size() {
        for len in [0usize, 100, 4096, 62_208, 65_536, 65_537, 300_000] {
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
}
