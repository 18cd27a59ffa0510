//! Shared test support: the default model loaded once, and helpers to edit state files.

#![allow(dead_code)]

use freeze_attn::engine::{CancelToken, Device, GenerateParams, KvState, LoadedModel, Tensor};
use std::path::Path;
use std::sync::OnceLock;

/// The default model on the CPU, loaded once per test binary (fetched by scripts/fetch-test-assets).
pub fn model() -> &'static LoadedModel {
    static M: OnceLock<LoadedModel> = OnceLock::new();
    M.get_or_init(|| {
        let path = freeze_attn::resolve_model("default").expect("default model (run scripts/fetch-test-assets)");
        freeze_attn::engine::load_model(&path, &Device::Cpu).expect("load the default model")
    })
}

pub fn greedy(max_tokens: usize) -> GenerateParams {
    GenerateParams::greedy(max_tokens)
}

/// Generates greedily after `prompt` from `state`; returns the tokens.
pub fn continue_greedy(state: &mut KvState, prompt: &[u32], n: usize) -> Vec<u32> {
    let m = model();
    freeze_attn::engine::generate(
        &m.model,
        &m.tokenizer,
        state,
        prompt,
        &greedy(n),
        &CancelToken::new(),
        &mut |_| {},
    )
    .unwrap()
    .tokens
}

/// Rewrites fields of a segment file's header metadata (tensor data untouched).
pub fn edit_header(path: &Path, edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    edit(header["__metadata__"].as_object_mut().unwrap());
    let mut text = serde_json::to_string(&header).unwrap();
    while !text.len().is_multiple_of(8) {
        text.push(' ');
    }
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend(text.as_bytes());
    out.extend(&bytes[8 + n..]);
    std::fs::write(path, out).unwrap();
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
