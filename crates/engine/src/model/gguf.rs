//! Loading Llama-architecture weights from a GGUF file (read through [`crate::gguf`]).

use super::cpu::is_supported;
use super::{Block, Linear, Model, Stacked};
use crate::config::{ModelConfig, RopeConfig, RopeScaling, RopeStyle};
use crate::error::{EngineError, Result};
use crate::fingerprint::WeightDigest;
use crate::gguf::GgufFile;
use crate::kernels::Kernels;
use crate::loader::LoadProgress;
use candle_core::{DType, Device, Tensor};
use std::fs::File;
use std::sync::Arc;

/// Reads the model shape from `llama.*` metadata.
pub fn read_config(g: &GgufFile) -> Result<ModelConfig> {
    let arch = g.meta_str("general.architecture")?.to_string();
    if arch != "llama" {
        return Err(EngineError::UnsupportedArchitecture {
            path: g.path.clone(),
            arch,
        });
    }
    if let Ok(n) = g.meta_usize("llama.expert_count") {
        if n > 0 {
            return Err(EngineError::UnsupportedArchitecture {
                path: g.path.clone(),
                arch: format!("llama with {n} experts (mixture of experts)"),
            });
        }
    }
    let n_embd = g.meta_usize("llama.embedding_length")?;
    let n_head = g.meta_usize("llama.attention.head_count")?;
    let n_kv_head = g.meta_usize("llama.attention.head_count_kv").unwrap_or(n_head);
    let head_dim = g
        .meta_usize("llama.attention.key_length")
        .unwrap_or(n_embd / n_head.max(1));
    let rope_dim = g.meta_usize("llama.rope.dimension_count").unwrap_or(head_dim);
    // The model's vocabulary is its embedding's rows; the tokenizer is checked against it.
    let vocab_size = match g.tensor_entry("token_embd.weight") {
        Some(t) if t.dims.len() == 2 => t.dims[0],
        _ => g.meta_usize("llama.vocab_size").or_else(|_| {
            g.meta_array_len("tokenizer.ggml.tokens")
                .ok_or_else(|| EngineError::MissingTensor {
                    path: g.path.clone(),
                    name: "token_embd.weight".into(),
                })
        })?,
    };
    let scaling = match g.meta_str("llama.rope.scaling.type") {
        Ok("linear") => RopeScaling::Linear {
            factor: g.meta_f32("llama.rope.scaling.factor")?,
        },
        Ok("none") | Err(_) => RopeScaling::None,
        Ok(other) => {
            return Err(g.bad_metadata(
                "llama.rope.scaling.type",
                format!("rope scaling `{other}` is not supported"),
            ))
        }
    };
    let stem = g
        .path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = display_name(
        &stem,
        g.meta_str("general.name").ok(),
        g.meta_str("general.basename").ok(),
    );
    Ok(ModelConfig {
        architecture: arch,
        name,
        n_layer: g.meta_usize("llama.block_count")?,
        n_embd,
        n_head,
        n_kv_head,
        head_dim,
        n_ff: g.meta_usize("llama.feed_forward_length")?,
        vocab_size,
        context_length: g.meta_usize("llama.context_length")?,
        rms_eps: g.meta_f32("llama.attention.layer_norm_rms_epsilon")?,
        rope: RopeConfig {
            theta: g.meta_f32("llama.rope.freq_base").unwrap_or(10000.0),
            dim: rope_dim,
            style: RopeStyle::Interleaved,
            scaling,
        },
        tied_embeddings: !g.has_tensor("output.weight"),
    })
}

/// Refuses a weight matrix whose type is not a supported weight format (the one list, kept
/// with the CPU kernels' table of formats; it holds on every device).
fn check_weight_type(g: &GgufFile, name: &str) -> Result<()> {
    match g.tensor_dtype(name) {
        Some(dtype) if !is_supported(dtype) => Err(EngineError::UnsupportedTensorType {
            path: g.path.clone(),
            dtype: format!("{dtype:?} (tensor `{name}`)"),
        }),
        _ => Ok(()),
    }
}

fn linear(g: &mut GgufFile, name: &str, shape: (usize, usize), device: &Device, kernels: Kernels) -> Result<Linear> {
    check_weight_type(g, name)?;
    let t = g.tensor(name, device)?;
    check_shape(g, name, t.shape().dims(), &[shape.0, shape.1])?;
    Ok(Linear::from_qtensor(Arc::new(t), kernels.is_ours())?)
}

/// Matrices `(name, rows)` of `cols` columns applied to the same input: one stacked matrix for
/// candle's ops when they share a format (see [`Stacked`]), else each on its own.
fn stacked(
    g: &mut GgufFile,
    parts: &[(String, usize)],
    cols: usize,
    device: &Device,
    kernels: Kernels,
) -> Result<Stacked> {
    for (name, rows) in parts {
        check_weight_type(g, name)?;
        match g.tensor_entry(name) {
            Some(t) => check_shape(g, name, t.dims, &[*rows, cols])?,
            None => {
                return Err(EngineError::MissingTensor {
                    path: g.path.clone(),
                    name: name.clone(),
                })
            }
        }
    }
    if kernels.is_ours() {
        let each = parts
            .iter()
            .map(|(name, rows)| linear(g, name, (*rows, cols), device, kernels))
            .collect::<Result<Vec<_>>>()?;
        return Ok(Stacked::each(each));
    }
    // Runs of neighbours stored in one format become one matrix each.
    let mut groups = Vec::new();
    let mut start = 0;
    while start < parts.len() {
        let dtype = g.tensor_dtype(&parts[start].0);
        let end = (start..parts.len())
            .find(|&j| g.tensor_dtype(&parts[j].0) != dtype)
            .unwrap_or(parts.len());
        let run = &parts[start..end];
        let widths: Vec<usize> = run.iter().map(|(_, r)| *r).collect();
        let m = if let [(name, rows)] = run {
            linear(g, name, (*rows, cols), device, kernels)?
        } else {
            let names: Vec<String> = run.iter().map(|(n, _)| n.clone()).collect();
            let t = g
                .stacked_tensor(&names, device)?
                .ok_or_else(|| EngineError::Invalid(format!("tensors {names:?} cannot be stacked")))?;
            Linear::from_qtensor(Arc::new(t), false)?
        };
        groups.push((m, widths));
        start = end;
    }
    Ok(Stacked::new(groups)?)
}

fn vector(g: &mut GgufFile, name: &str, len: usize, device: &Device) -> Result<Tensor> {
    let t = g.tensor(name, device)?;
    check_shape(g, name, t.shape().dims(), &[len])?;
    Ok(t.dequantize(device)?.to_dtype(DType::F32)?)
}

fn check_shape(g: &GgufFile, name: &str, found: &[usize], expected: &[usize]) -> Result<()> {
    if found != expected {
        return Err(EngineError::TensorShape {
            path: g.path.clone(),
            name: name.into(),
            expected: expected.to_vec(),
            found: found.to_vec(),
        });
    }
    Ok(())
}

/// Loads the weights described by `config` (from [`read_config`]), reporting progress after each
/// layer.
pub fn load_model(
    g: &mut GgufFile,
    mut config: ModelConfig,
    device: &Device,
    kernels: Kernels,
    progress: &mut dyn FnMut(LoadProgress),
) -> Result<Model> {
    config.validate().map_err(|d| g.bad_metadata("llama.*", d))?;
    let c = config.clone();
    if g.has_tensor("rope_freqs.weight") {
        let f = vector(g, "rope_freqs.weight", c.rope.dim / 2, &Device::Cpu)?;
        config.rope.scaling = RopeScaling::FreqFactors(f.to_vec1::<f32>()?);
    }
    let embed = linear(g, "token_embd.weight", (c.vocab_size, c.n_embd), device, kernels)?;
    let q_dim = c.n_head * c.head_dim;
    let kv_dim = c.n_kv_head * c.head_dim;
    let mut blocks = Vec::with_capacity(c.n_layer);
    for i in 0..c.n_layer {
        let p = format!("blk.{i}");
        if g.has_tensor(&format!("{p}.ffn_gate_exps.weight")) {
            return Err(EngineError::UnsupportedArchitecture {
                path: g.path.clone(),
                arch: "llama with mixture-of-experts feed-forward".into(),
            });
        }
        blocks.push(Block {
            attn_norm: vector(g, &format!("{p}.attn_norm.weight"), c.n_embd, device)?,
            qkv: stacked(
                g,
                &[
                    (format!("{p}.attn_q.weight"), q_dim),
                    (format!("{p}.attn_k.weight"), kv_dim),
                    (format!("{p}.attn_v.weight"), kv_dim),
                ],
                c.n_embd,
                device,
                kernels,
            )?,
            wo: linear(
                g,
                &format!("{p}.attn_output.weight"),
                (c.n_embd, q_dim),
                device,
                kernels,
            )?,
            ffn_norm: vector(g, &format!("{p}.ffn_norm.weight"), c.n_embd, device)?,
            gate_up: stacked(
                g,
                &[
                    (format!("{p}.ffn_gate.weight"), c.n_ff),
                    (format!("{p}.ffn_up.weight"), c.n_ff),
                ],
                c.n_embd,
                device,
                kernels,
            )?,
            w_down: linear(g, &format!("{p}.ffn_down.weight"), (c.n_embd, c.n_ff), device, kernels)?,
        });
        progress(g.progress());
    }
    let norm = vector(g, "output_norm.weight", c.n_embd, device)?;
    let output = if c.tied_embeddings {
        embed.clone()
    } else {
        linear(g, "output.weight", (c.vocab_size, c.n_embd), device, kernels)?
    };
    progress(g.progress());
    Ok(Model::assemble(
        config,
        device.clone(),
        kernels,
        DType::F32,
        embed,
        blocks,
        norm,
        output,
    ))
}

/// The weight digest for the model fingerprint (see [`crate::fingerprint`]).
pub fn weight_digest(g: &GgufFile) -> Result<[u8; 32]> {
    let mut file = File::open(&g.path).map_err(|e| EngineError::io(&g.path, e))?;
    let mut tensors: Vec<_> = g.tensors().collect();
    tensors.sort_by_key(|t| t.name);
    let mut digest = WeightDigest::new();
    for t in tensors {
        digest
            .tensor_in_file(&mut file, t.name, &format!("{:?}", t.dtype), t.dims, t.offset, t.bytes)
            .map_err(|e| EngineError::io(&g.path, e))?;
    }
    Ok(digest.finish())
}

/// The most common quantized type among the weight matrices (e.g. `Q4_1`), for display.
pub fn weight_type(g: &GgufFile) -> String {
    let mut counts: std::collections::HashMap<String, usize> = Default::default();
    for t in g.tensors() {
        if t.dims.len() == 2 && t.name.starts_with("blk.") {
            *counts.entry(format!("{:?}", t.dtype)).or_default() += 1;
        }
    }
    counts
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .map(|(t, _)| t)
        .unwrap_or_else(|| "unknown".into())
}

/// The name people know a model by. The file name usually is that name (it is what they
/// downloaded: `Llama-3.2-1B-Instruct-Q4_K_M.gguf`), while `general.name` is often a conversion
/// artifact (`Smollm2 135M 8k Lc100K Mix1 Ep2`). So: the file name without its quant suffix when
/// it contains the model's `general.basename` (or when there is no `general.name`), else
/// `general.name`. The weight type is shown beside the name, not in it.
fn display_name(stem: &str, general_name: Option<&str>, basename: Option<&str>) -> String {
    let from_file = strip_quant_suffix(stem);
    let squash = |s: &str| -> String {
        s.chars()
            .filter(|c| c.is_alphanumeric())
            .flat_map(char::to_lowercase)
            .collect()
    };
    let names_model = basename.is_some_and(|b| !squash(b).is_empty() && squash(from_file).contains(&squash(b)));
    match general_name.map(str::trim).filter(|n| !n.is_empty()) {
        Some(n) if !names_model || from_file.is_empty() => n.to_string(),
        _ if !from_file.is_empty() => from_file.to_string(),
        _ => stem.to_string(),
    }
}

/// The weight type a file name ends with (`Q4_K_M` of `Llama-3.2-1B-Instruct-Q4_K_M`), if any.
pub fn quant_suffix(stem: &str) -> Option<&str> {
    let rest = &stem[strip_quant_suffix(stem).len()..];
    rest.get(1..).filter(|q| !q.is_empty())
}

/// The ggml tensor types the engine loads, comma-separated (`F32, F16, …, Q6_K`).
pub fn supported_type_names() -> String {
    crate::model::cpu::supported_names()
}

/// Whether the engine loads files of the weight type `quant`, as llama.cpp's quantizer names
/// them and file names end ([`quant_suffix`]: `Q4_K_M`, `IQ4_XS`, `F16`), so that a download
/// can be refused before it starts. `Some(false)`: a type no format here reads (the i-quants
/// `IQ*`, the ternary `TQ*`, `MXFP4`, ggml types such as the ARM repacks `Q4_0_4_4`). `Some(true)`:
/// a supported ggml type, or llama.cpp's mix of one (`Q4_K_M` is mostly Q4_K with some Q6_K;
/// the `_S`/`_M`/`_L` mixes, and publishers' `_XL`/`_XS`, keep to the K-quants and Q8_0).
/// `None`: not a weight type name this knows; only the file can tell.
pub fn weight_type_loads(quant: &str) -> Option<bool> {
    let upper = quant.to_ascii_uppercase();
    let name = match upper.as_str() {
        "FP16" => "F16",
        "FP32" => "F32",
        other => other,
    };
    if ["IQ", "TQ", "MXFP4"].iter().any(|p| name.starts_with(p)) {
        return Some(false);
    }
    if crate::gguf::is_ggml_type_name(name) {
        return Some(crate::model::cpu::is_supported_name(name));
    }
    let (base, size) = name.rsplit_once('_')?;
    (matches!(size, "S" | "M" | "L" | "XL" | "XS") && crate::model::cpu::is_supported_name(base)).then_some(true)
}

/// `stem` without a trailing weight type (`-Q4_K_M`, `.Q4_1`, `-f16`, `.IQ3_XS`, `-bf16`).
fn strip_quant_suffix(stem: &str) -> &str {
    // `_` also separates parts of a quant name (`Q4_K_M`): the longest tail is tried first.
    let mut cut = None;
    for (j, c) in stem.char_indices().filter(|(_, c)| matches!(c, '.' | '-' | '_')) {
        if is_quant_name(&stem[j + c.len_utf8()..]) {
            cut = Some(j);
            break;
        }
    }
    match cut {
        Some(j) if j > 0 => &stem[..j],
        _ => stem,
    }
}

fn is_quant_name(s: &str) -> bool {
    let u = s.to_ascii_uppercase();
    if matches!(u.as_str(), "F16" | "F32" | "BF16" | "FP16" | "FP32") {
        return true;
    }
    let rest = u.strip_prefix("IQ").or_else(|| u.strip_prefix('Q'));
    rest.is_some_and(|r| {
        r.chars().next().is_some_and(|c| c.is_ascii_digit()) && r.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

#[cfg(test)]
mod name_tests {
    use super::{display_name, quant_suffix, weight_type_loads};

    #[test]
    fn the_weight_type_at_the_end_of_a_file_name() {
        assert_eq!(quant_suffix("Llama-3.2-1B-Instruct-Q4_K_M"), Some("Q4_K_M"));
        assert_eq!(quant_suffix("SmolLM2-135M-Instruct.Q4_1"), Some("Q4_1"));
        assert_eq!(quant_suffix("model-bf16"), Some("bf16"));
        assert_eq!(quant_suffix("Llama-3.2-1B-Instruct"), None);
    }

    #[test]
    fn which_weight_types_load_is_known_from_the_name() {
        // What the Hub's Llama repositories offer (bartowski's, unsloth's, lmstudio-community's).
        for q in [
            "Q4_K_M", "q4_k_m", "Q4_K_S", "Q5_K_M", "Q3_K_L", "Q3_K_XL", "Q2_K", "Q6_K", "Q6_K_L", "Q8_0", "Q4_0",
            "Q4_1", "Q5_0", "f16", "BF16", "F32", "fp16",
        ] {
            assert_eq!(weight_type_loads(q), Some(true), "{q}");
        }
        for q in [
            "IQ4_XS",
            "IQ4_NL",
            "iq3_m",
            "IQ2_XXS",
            "IQ1_S",
            "TQ1_0",
            "MXFP4_MOE",
            "Q4_0_4_4",
            "Q4_0_8_8",
            "Q8_K",
        ] {
            assert_eq!(weight_type_loads(q), Some(false), "{q}");
        }
        for q in ["Q9_K_M", "Q7_K_S", "Q4_K_MEDIUM", "instruct", ""] {
            assert_eq!(weight_type_loads(q), None, "{q}");
        }
    }

    #[test]
    fn the_file_name_wins_when_it_names_the_model() {
        assert_eq!(
            display_name(
                "SmolLM2-135M-Instruct.Q4_1",
                Some("Smollm2 135M 8k Lc100K Mix1 Ep2"),
                Some("smollm2")
            ),
            "SmolLM2-135M-Instruct"
        );
        assert_eq!(
            display_name(
                "Llama-3.2-1B-Instruct-Q4_K_M",
                Some("Llama 3.2 1B Instruct"),
                Some("Llama-3.2")
            ),
            "Llama-3.2-1B-Instruct"
        );
        assert_eq!(
            display_name("Meta-Llama-3.1-8B-Instruct-IQ3_XS", None, None),
            "Meta-Llama-3.1-8B-Instruct"
        );
        assert_eq!(
            display_name("llama-3.2-1b.F16", Some("Llama 3.2 1b"), Some("llama-3.2")),
            "llama-3.2-1b"
        );
    }

    #[test]
    fn general_name_wins_over_a_file_name_that_says_nothing() {
        assert_eq!(
            display_name("model", Some("Llama 3.2 1B Instruct"), Some("Llama-3.2")),
            "Llama 3.2 1B Instruct"
        );
        assert_eq!(display_name("ggml-model-q4_0", Some("Mistral 7B"), None), "Mistral 7B");
        assert_eq!(display_name("ggml-model-q4_0", None, None), "ggml-model");
    }
}
