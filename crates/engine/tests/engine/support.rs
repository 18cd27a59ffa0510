//! Shared test support: the default model (loaded once), fixtures, and a tiny GGUF writer for
//! hand-made bad or synthetic model files.

#![allow(dead_code)]

use freeze_attn_engine::{load_model, Device, LoadedModel, Tensor};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The default model file, as fetched by `scripts/fetch-test-assets` (`freeze-attn fetch-model`).
pub fn default_model_path() -> PathBuf {
    let dir = match std::env::var_os("FREEZE_ATTN_MODELS") {
        Some(p) => PathBuf::from(p),
        None => match std::env::var_os("FREEZE_ATTN_HOME") {
            Some(h) => PathBuf::from(h).join("models"),
            None => directories::ProjectDirs::from("", "", "freeze-attn")
                .unwrap()
                .data_dir()
                .join("models"),
        },
    };
    let p = dir.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        p.exists(),
        "the default model is missing at {}: run scripts/fetch-test-assets",
        p.display()
    );
    p
}

/// The default model on the CPU, loaded once per test binary.
pub fn smollm() -> &'static LoadedModel {
    static M: OnceLock<LoadedModel> = OnceLock::new();
    M.get_or_init(|| load_model(&default_model_path(), &Device::Cpu).expect("load the default model"))
}

/// Test assets fetched from package registries (the Llama 3.1 tokenizer).
pub fn assets_dir() -> PathBuf {
    let p = match std::env::var_os("FREEZE_ATTN_TEST_ASSETS") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/freeze-attn/test-assets"),
    };
    assert!(
        p.join("llama3_1/tokenizer.json").exists(),
        "test assets missing in {}: run scripts/fetch-test-assets",
        p.display()
    );
    p
}

pub fn fixture(name: &str) -> serde_json::Value {
    let p = repo_root().join("tests/fixtures").join(name);
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
}

pub fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// A GGUF metadata value.
pub enum Meta {
    U32(u32),
    F32(f32),
    Bool(bool),
    Str(String),
    StrArr(Vec<String>),
    I32Arr(Vec<i32>),
}

/// A tensor to write: name, dims (ggml order is reversed by the writer: give them as in candle,
/// rows first), ggml type number, raw bytes.
pub struct RawTensor {
    pub name: String,
    pub dims: Vec<usize>,
    pub ggml_type: u32,
    pub data: Vec<u8>,
}

impl RawTensor {
    pub fn f32(name: &str, dims: &[usize], values: &[f32]) -> Self {
        assert_eq!(dims.iter().product::<usize>(), values.len());
        Self {
            name: name.into(),
            dims: dims.to_vec(),
            ggml_type: 0,
            data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

/// Writes a GGUF v3 file byte by byte (so tests can also write what candle's writer would refuse).
pub fn write_gguf(path: &Path, meta: &[(&str, Meta)], tensors: &[RawTensor]) {
    let mut out = Vec::new();
    out.extend(b"GGUF");
    out.extend(3u32.to_le_bytes());
    out.extend((tensors.len() as u64).to_le_bytes());
    out.extend((meta.len() as u64).to_le_bytes());
    for (k, v) in meta {
        put_str(&mut out, k);
        match v {
            Meta::U32(x) => {
                out.extend(4u32.to_le_bytes());
                out.extend(x.to_le_bytes())
            }
            Meta::F32(x) => {
                out.extend(6u32.to_le_bytes());
                out.extend(x.to_le_bytes())
            }
            Meta::Bool(x) => {
                out.extend(7u32.to_le_bytes());
                out.push(u8::from(*x))
            }
            Meta::Str(s) => {
                out.extend(8u32.to_le_bytes());
                put_str(&mut out, s)
            }
            Meta::StrArr(a) => {
                out.extend(9u32.to_le_bytes());
                out.extend(8u32.to_le_bytes());
                out.extend((a.len() as u64).to_le_bytes());
                for s in a {
                    put_str(&mut out, s);
                }
            }
            Meta::I32Arr(a) => {
                out.extend(9u32.to_le_bytes());
                out.extend(5u32.to_le_bytes());
                out.extend((a.len() as u64).to_le_bytes());
                for x in a {
                    out.extend(x.to_le_bytes());
                }
            }
        }
    }
    let align = 32usize;
    let mut offset = 0usize;
    let mut offsets = Vec::new();
    for t in tensors {
        offsets.push(offset);
        offset += t.data.len().div_ceil(align) * align;
    }
    for (t, off) in tensors.iter().zip(&offsets) {
        put_str(&mut out, &t.name);
        out.extend((t.dims.len() as u32).to_le_bytes());
        for d in t.dims.iter().rev() {
            out.extend((*d as u64).to_le_bytes());
        }
        out.extend(t.ggml_type.to_le_bytes());
        out.extend((*off as u64).to_le_bytes());
    }
    while out.len() % align != 0 {
        out.push(0);
    }
    for t in tensors {
        out.extend(&t.data);
        while out.len() % align != 0 {
            out.push(0);
        }
    }
    std::fs::write(path, out).unwrap();
}

/// Deterministic pseudo-random values in [-scale, scale] (splitmix64), shared with
/// `scripts/reference/tiny_llama31.py`.
pub fn splitmix_values(seed: u64, n: usize, scale: f32) -> Vec<f32> {
    (0..n as u64)
        .map(|i| {
            let mut z = seed.wrapping_add(i).wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            ((z >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

/// A tiny llama GGUF (F32 weights) with the given vocabulary and extra metadata; used for
/// tokenizer and refusal tests. `vocab_size` rows in the embedding.
pub fn tiny_llama_gguf(
    path: &Path,
    arch: &str,
    tokens: Vec<String>,
    types: Vec<i32>,
    merges: Vec<String>,
    pre: &str,
    vocab_size: usize,
) {
    let (d, ff, layers, heads, kv) = (8usize, 16usize, 1usize, 2usize, 1usize);
    let hd = d / heads;
    let mut tensors = vec![
        RawTensor::f32(
            "token_embd.weight",
            &[vocab_size, d],
            &splitmix_values(1, vocab_size * d, 0.5),
        ),
        RawTensor::f32("output_norm.weight", &[d], &vec![1.0; d]),
    ];
    for l in 0..layers {
        let p = format!("blk.{l}");
        tensors.push(RawTensor::f32(&format!("{p}.attn_norm.weight"), &[d], &vec![1.0; d]));
        tensors.push(RawTensor::f32(&format!("{p}.ffn_norm.weight"), &[d], &vec![1.0; d]));
        tensors.push(RawTensor::f32(
            &format!("{p}.attn_q.weight"),
            &[heads * hd, d],
            &splitmix_values(2, d * d, 0.3),
        ));
        tensors.push(RawTensor::f32(
            &format!("{p}.attn_k.weight"),
            &[kv * hd, d],
            &splitmix_values(3, kv * hd * d, 0.3),
        ));
        tensors.push(RawTensor::f32(
            &format!("{p}.attn_v.weight"),
            &[kv * hd, d],
            &splitmix_values(4, kv * hd * d, 0.3),
        ));
        tensors.push(RawTensor::f32(
            &format!("{p}.attn_output.weight"),
            &[d, heads * hd],
            &splitmix_values(5, d * d, 0.3),
        ));
        tensors.push(RawTensor::f32(
            &format!("{p}.ffn_gate.weight"),
            &[ff, d],
            &splitmix_values(6, ff * d, 0.3),
        ));
        tensors.push(RawTensor::f32(
            &format!("{p}.ffn_up.weight"),
            &[ff, d],
            &splitmix_values(7, ff * d, 0.3),
        ));
        tensors.push(RawTensor::f32(
            &format!("{p}.ffn_down.weight"),
            &[d, ff],
            &splitmix_values(8, ff * d, 0.3),
        ));
    }
    let a = |k: &str| format!("{arch}.{k}");
    let meta = vec![
        ("general.architecture", Meta::Str(arch.into())),
        ("general.name", Meta::Str("tiny".into())),
        (leak(a("block_count")), Meta::U32(layers as u32)),
        (leak(a("context_length")), Meta::U32(256)),
        (leak(a("embedding_length")), Meta::U32(d as u32)),
        (leak(a("feed_forward_length")), Meta::U32(ff as u32)),
        (leak(a("attention.head_count")), Meta::U32(heads as u32)),
        (leak(a("attention.head_count_kv")), Meta::U32(kv as u32)),
        (leak(a("attention.layer_norm_rms_epsilon")), Meta::F32(1e-5)),
        (leak(a("rope.freq_base")), Meta::F32(10000.0)),
        ("tokenizer.ggml.model", Meta::Str("gpt2".into())),
        ("tokenizer.ggml.pre", Meta::Str(pre.into())),
        ("tokenizer.ggml.tokens", Meta::StrArr(tokens)),
        ("tokenizer.ggml.token_type", Meta::I32Arr(types)),
        ("tokenizer.ggml.merges", Meta::StrArr(merges)),
    ];
    write_gguf(path, &meta, &tensors);
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// The vocabulary, token types and merges of a `tokenizer.json` (byte-level BPE), laid out as a
/// GGUF converter does: added tokens that are special become CONTROL (3).
pub fn vocab_from_tokenizer_json(path: &Path) -> (Vec<String>, Vec<i32>, Vec<String>) {
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let vocab = v["model"]["vocab"].as_object().unwrap();
    let added = v["added_tokens"].as_array().unwrap();
    let n = vocab.len().max(
        added
            .iter()
            .map(|t| t["id"].as_u64().unwrap() as usize + 1)
            .max()
            .unwrap_or(0),
    );
    let mut tokens = vec![String::new(); n];
    let mut types = vec![1i32; n];
    for (t, id) in vocab {
        tokens[id.as_u64().unwrap() as usize] = t.clone();
    }
    for t in added {
        let id = t["id"].as_u64().unwrap() as usize;
        tokens[id] = t["content"].as_str().unwrap().to_string();
        types[id] = if t["special"].as_bool().unwrap_or(false) { 3 } else { 4 };
    }
    let merges = v["model"]["merges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| match m {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Array(a) => format!("{} {}", a[0].as_str().unwrap(), a[1].as_str().unwrap()),
            _ => panic!("bad merge"),
        })
        .collect();
    (tokens, types, merges)
}

/// The largest absolute difference between two tensors of the same shape.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}
