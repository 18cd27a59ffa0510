//! Text ⇄ token ids. A `tokenizer.json` when the model folder has one; for a bare GGUF, a
//! byte-level BPE built from the file's `tokenizer.ggml.*` metadata (see [`gguf`]).
//!
//! Special tokens written in the text (`<|im_start|>`, `<|eot_id|>`, …) are always parsed as
//! their ids, as llama.cpp does with `parse_special` and transformers does by default: chat
//! templates depend on it. BOS is never added implicitly; [`Tokenizer::encode_prompt`] adds it
//! when the model's metadata asks for it.

pub mod gguf;
mod stream;

pub use stream::TokenStream;

use crate::error::{EngineError, Result};
use std::path::{Path, PathBuf};

/// Texts of tokens that end a turn or a document, across model families (as llama.cpp's list).
pub(crate) const END_OF_GENERATION: &[&str] = &[
    "<|eot_id|>",
    "<|eom_id|>",
    "<|end_of_text|>",
    "<|im_end|>",
    "<|endoftext|>",
    "<|end|>",
    "<end_of_turn>",
    "<EOT>",
    "</s>",
];

#[derive(Debug, Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    bos: Option<u32>,
    eos: Option<u32>,
    add_bos: bool,
    stop_tokens: Vec<u32>,
    source: PathBuf,
    byte_table: ByteTable,
}

/// [`Tokenizer::byte_table`], once built (its `Debug` does not print a vocabulary).
#[derive(Clone, Default)]
struct ByteTable(std::sync::OnceLock<Vec<Option<Vec<u8>>>>);

impl std::fmt::Debug for ByteTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "ByteTable(built)"
        } else {
            "ByteTable(not built)"
        })
    }
}

impl Tokenizer {
    pub(crate) fn new(
        inner: tokenizers::Tokenizer,
        bos: Option<u32>,
        eos: Option<u32>,
        add_bos: bool,
        extra_stops: &[u32],
        source: PathBuf,
    ) -> Self {
        let mut stop_tokens: Vec<u32> = eos.into_iter().chain(extra_stops.iter().copied()).collect();
        for (text, id) in inner.get_added_vocabulary().get_vocab() {
            let special = inner.get_added_vocabulary().is_special_token(text);
            if special && END_OF_GENERATION.contains(&text.as_str()) {
                stop_tokens.push(*id);
            }
        }
        stop_tokens.sort_unstable();
        stop_tokens.dedup();
        Self {
            inner,
            bos,
            eos,
            add_bos,
            stop_tokens,
            source,
            byte_table: ByteTable::default(),
        }
    }

    /// Loads `tokenizer.json`; `tokenizer_config.json` beside it (if any) says whether to add BOS
    /// and names BOS/EOS; `generation_config.json` may name more end tokens.
    pub fn from_hf_dir(dir: &Path) -> Result<Self> {
        let path = dir.join("tokenizer.json");
        let inner = tokenizers::Tokenizer::from_file(&path).map_err(|e| EngineError::UnsupportedTokenizer {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        let config = read_json(&dir.join("tokenizer_config.json"))?;
        let gen_config = read_json(&dir.join("generation_config.json"))?;
        let token_id = |key: &str| -> Option<u32> {
            let v = config.as_ref()?.get(key)?;
            let text = v.as_str().or_else(|| v.get("content")?.as_str())?;
            inner.token_to_id(text)
        };
        let bos = token_id("bos_token");
        let mut eos = token_id("eos_token");
        let mut extra = Vec::new();
        if let Some(g) = &gen_config {
            match g.get("eos_token_id") {
                Some(serde_json::Value::Number(n)) => extra.extend(n.as_u64().map(|n| n as u32)),
                Some(serde_json::Value::Array(a)) => {
                    extra.extend(a.iter().filter_map(|n| n.as_u64().map(|n| n as u32)))
                }
                _ => {}
            }
            if eos.is_none() {
                eos = extra.first().copied();
            }
        }
        // Does the tokenizer itself prepend BOS? That is what "add BOS" means for this model.
        let add_bos = match config
            .as_ref()
            .and_then(|c| c.get("add_bos_token"))
            .and_then(|v| v.as_bool())
        {
            Some(b) => b,
            None => match (bos, inner.encode("a", true)) {
                (Some(b), Ok(enc)) => enc.get_ids().first() == Some(&b),
                _ => false,
            },
        };
        Ok(Self::new(inner, bos, eos, add_bos, &extra, path))
    }

    pub fn source(&self) -> &Path {
        &self.source
    }
    /// Number of ids, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
    pub fn bos(&self) -> Option<u32> {
        self.bos
    }
    pub fn eos(&self) -> Option<u32> {
        self.eos
    }
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }
    /// Tokens that end generation (EOS, end of turn, …).
    pub fn stop_tokens(&self) -> &[u32] {
        &self.stop_tokens
    }
    pub fn is_stop(&self, id: u32) -> bool {
        self.stop_tokens.binary_search(&id).is_ok()
    }
    pub fn token_text(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.inner.token_to_id(text)
    }

    /// The bytes a token stands for (part of a UTF-8 character, for some). A byte-level BPE
    /// piece is mapped back through GPT-2's byte alphabet; an added token (`<|eot_id|>`) is its
    /// text; any other piece is what decoding it alone gives. `None` for an id outside the
    /// vocabulary.
    pub fn token_bytes(&self, id: u32) -> Option<Vec<u8>> {
        let piece = self.inner.id_to_token(id)?;
        let added = self.inner.get_added_vocabulary().get_vocab().contains_key(&piece);
        let byte_level = matches!(
            self.inner.get_decoder(),
            Some(tokenizers::decoders::DecoderWrapper::ByteLevel(_))
        );
        if !added && byte_level {
            if let Some(bytes) = piece.chars().map(byte_level_byte).collect::<Option<Vec<u8>>>() {
                return Some(bytes);
            }
        }
        if added {
            return Some(piece.into_bytes());
        }
        self.decode_with_special(&[id]).ok().map(String::into_bytes)
    }
    /// Every token's bytes ([`Tokenizer::token_bytes`]), `None` for added and special tokens
    /// (control tokens, not text); built once, on first use (constrained decoding tries every
    /// token at every step).
    pub fn byte_table(&self) -> &[Option<Vec<u8>>] {
        self.byte_table.0.get_or_init(|| {
            let added = self.inner.get_added_vocabulary();
            (0..self.vocab_size() as u32)
                .map(|id| {
                    let piece = self.inner.id_to_token(id)?;
                    if added.get_vocab().contains_key(&piece) || added.is_special_token(&piece) {
                        return None;
                    }
                    self.token_bytes(id).filter(|b| !b.is_empty())
                })
                .collect()
        })
    }
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// Encodes text as is: special tokens parsed, nothing added.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode_fast(text, false)
            .map_err(|e| EngineError::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Encodes a raw prompt: BOS first when the model's metadata asks for it.
    pub fn encode_prompt(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids = Vec::new();
        if self.add_bos {
            ids.extend(self.bos);
        }
        ids.extend(self.encode(text)?);
        Ok(ids)
    }

    /// Decodes ids to text; special (control) tokens are left out.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, true)
            .map_err(|e| EngineError::Tokenizer(e.to_string()))
    }

    /// Decodes ids to text with special tokens written out.
    pub fn decode_with_special(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, false)
            .map_err(|e| EngineError::Tokenizer(e.to_string()))
    }
}

/// The byte that GPT-2's byte-level alphabet writes as `c`: printable bytes stand for
/// themselves, the other 68 for U+0100 onwards in byte order (0-32, then 127-160, then 173).
fn byte_level_byte(c: char) -> Option<u8> {
    let u = c as u32;
    match u {
        33..=126 | 161..=172 | 174..=255 => Some(u as u8),
        256..=288 => Some((u - 256) as u8),
        289..=322 => Some((u - 289 + 127) as u8),
        323 => Some(173),
        _ => None,
    }
}

fn read_json(path: &Path) -> Result<Option<serde_json::Value>> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| EngineError::UnsupportedTokenizer {
                path: path.into(),
                detail: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(EngineError::io(path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::byte_level_byte;

    /// GPT-2's `bytes_to_unicode`, built as its reference code builds it: the printable bytes
    /// keep their code point, every other byte takes the next code point from 256 on.
    #[test]
    fn the_byte_level_alphabet_maps_back_to_every_byte() {
        let printable: Vec<u32> = (b'!' as u32..=b'~' as u32)
            .chain(0xA1..=0xAC)
            .chain(0xAE..=0xFF)
            .collect();
        let mut next = 256;
        for b in 0u32..=255 {
            let c = if printable.contains(&b) {
                b
            } else {
                next += 1;
                next - 1
            };
            assert_eq!(byte_level_byte(char::from_u32(c).unwrap()), Some(b as u8), "byte {b}");
        }
        assert_eq!(next, 256 + 68);
        assert_eq!(byte_level_byte('\u{144}'), None);
        assert_eq!(byte_level_byte('\u{1F600}'), None);
    }
}
