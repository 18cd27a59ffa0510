//! A byte-level BPE tokenizer built from GGUF `tokenizer.ggml.*` metadata, with the
//! pre-tokenizer llama.cpp uses for the file's `tokenizer.ggml.pre` (its `llama-vocab.cpp` is the
//! reference for each regex). Only `tokenizer.ggml.model = gpt2` (byte-level BPE, as in Llama 3
//! and SmolLM) is supported; anything else is refused by name.

use super::Tokenizer;
use crate::error::{EngineError, Result};
use crate::gguf::GgufFile;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, PreTokenizerWrapper, SplitDelimiterBehavior};

const REGEX_LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const REGEX_GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";

/// llama.cpp token types (`tokenizer.ggml.token_type`).
const TYPE_CONTROL: i64 = 3;
const TYPE_USER_DEFINED: i64 = 4;

/// How a `tokenizer.ggml.pre` name splits text before BPE, and whether whole words found in the
/// vocabulary skip the merges (`ignore_merges`, as llama.cpp does for Llama 3).
fn pre_tokenizer(pre: &str) -> Option<(Vec<&'static str>, bool)> {
    Some(match pre {
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "smaug-bpe" | "dbrx" => (vec![REGEX_LLAMA3], true),
        "smollm" | "starcoder" | "refact" | "codeshell" | "exaone" | "minerva-7b" => {
            (vec![r"\p{N}", REGEX_GPT2], false)
        }
        "gpt-2" | "gpt2" | "phi-2" | "default" | "mpt" | "olmo" => (vec![REGEX_GPT2], false),
        _ => return None,
    })
}

fn split(regex: &str) -> Result<PreTokenizerWrapper> {
    Split::new(
        SplitPattern::Regex(regex.into()),
        SplitDelimiterBehavior::Isolated,
        false,
    )
    .map(Into::into)
    .map_err(|e| EngineError::Tokenizer(format!("bad pre-tokenizer regex: {e}")))
}

/// A token id from metadata, if `key` holds one.
fn id(g: &GgufFile, key: &str) -> Option<u32> {
    g.meta_usize(key).ok().map(|n| n as u32)
}

pub fn from_gguf(g: &GgufFile) -> Result<Tokenizer> {
    let model = g.meta_str("tokenizer.ggml.model")?;
    if model != "gpt2" {
        return Err(EngineError::UnsupportedTokenizer {
            path: g.path.clone(),
            detail: format!("tokenizer.ggml.model `{model}` (only byte-level BPE, `gpt2`, is supported)"),
        });
    }
    let pre_name = g.meta_str("tokenizer.ggml.pre").unwrap_or("default");
    let (regexes, ignore_merges) = pre_tokenizer(pre_name).ok_or_else(|| EngineError::UnsupportedTokenizer {
        path: g.path.clone(),
        detail: format!("pre-tokenizer `{pre_name}` (supported: llama-bpe, smollm, gpt-2 and their aliases)"),
    })?;
    let tokens = g.meta_strings("tokenizer.ggml.tokens")?;
    let merges: Vec<(String, String)> = g
        .meta_strings("tokenizer.ggml.merges")?
        .into_iter()
        .map(|m| match m.split_once(' ') {
            Some((a, b)) => Ok((a.to_string(), b.to_string())),
            None => Err(EngineError::BadMetadata {
                path: g.path.clone(),
                key: "tokenizer.ggml.merges".into(),
                detail: format!("merge `{m}` has no space"),
            }),
        })
        .collect::<Result<_>>()?;
    let vocab: tokenizers::models::bpe::Vocab = tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .ignore_merges(ignore_merges)
        .build()
        .map_err(|e| EngineError::Tokenizer(format!("BPE from {}: {e}", g.path.display())))?;
    let mut inner = tokenizers::Tokenizer::new(bpe);

    let mut steps: Vec<PreTokenizerWrapper> = regexes.iter().map(|r| split(r)).collect::<Result<_>>()?;
    steps.push(ByteLevel::new(false, true, false).into());
    inner.with_pre_tokenizer(Some(Sequence::new(steps)));
    inner.with_decoder(Some(ByteLevelDecoder::default()));

    let types = g.meta_ints("tokenizer.ggml.token_type").unwrap_or_default();
    let mut control = Vec::new();
    let mut user = Vec::new();
    for (i, t) in types.iter().enumerate() {
        match *t {
            TYPE_CONTROL => control.push(AddedToken::from(tokens[i].clone(), true)),
            TYPE_USER_DEFINED => user.push(AddedToken::from(tokens[i].clone(), false)),
            _ => {}
        }
    }
    let tok_err = |e: tokenizers::Error| EngineError::Tokenizer(format!("special tokens of {}: {e}", g.path.display()));
    inner.add_special_tokens(control).map_err(tok_err)?;
    inner.add_tokens(user).map_err(tok_err)?;

    let eos = id(g, "tokenizer.ggml.eos_token_id");
    let extra: Vec<u32> = ["tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"]
        .iter()
        .filter_map(|k| id(g, k))
        .collect();
    Ok(Tokenizer::new(
        inner,
        id(g, "tokenizer.ggml.bos_token_id"),
        eos,
        // llama.cpp's default: Llama 3 pre-tokenizers add BOS, the others do not; metadata decides.
        g.meta_bool("tokenizer.ggml.add_bos_token").unwrap_or(ignore_merges),
        &extra,
        g.path.clone(),
    ))
}
