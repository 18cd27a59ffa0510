//! Loading a Hugging Face Llama folder: `config.json` + `*.safetensors` (single or sharded).

use super::{Block, Linear, Model, Stacked};
use crate::config::{ModelConfig, RopeConfig, RopeScaling, RopeStyle};
use crate::error::{EngineError, Result};
use crate::fingerprint::WeightDigest;
use crate::kernels::Kernels;
use crate::loader::LoadProgress;
use candle_core::quantized::{GgmlDType, QStorage, QTensor};
use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};
use serde::Deserialize;
use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, Deserialize)]
struct RopeScalingJson {
    #[serde(alias = "type")]
    rope_type: Option<String>,
    factor: Option<f32>,
    low_freq_factor: Option<f32>,
    high_freq_factor: Option<f32>,
    original_max_position_embeddings: Option<usize>,
}

#[derive(Debug, Deserialize)]
struct HfConfig {
    #[serde(default)]
    architectures: Vec<String>,
    model_type: Option<String>,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    rms_norm_eps: f64,
    #[serde(default = "default_theta")]
    rope_theta: f32,
    rope_scaling: Option<RopeScalingJson>,
    max_position_embeddings: usize,
    vocab_size: usize,
    #[serde(default)]
    tie_word_embeddings: bool,
    #[serde(default)]
    attention_bias: bool,
    #[serde(default)]
    mlp_bias: bool,
    torch_dtype: Option<String>,
    #[serde(rename = "_name_or_path")]
    name_or_path: Option<String>,
}

fn default_theta() -> f32 {
    10000.0
}

fn bad(path: &Path, key: &str, detail: impl Into<String>) -> EngineError {
    EngineError::BadMetadata {
        path: path.into(),
        key: key.into(),
        detail: detail.into(),
    }
}

/// Reads and checks `config.json`.
pub fn read_config(dir: &Path) -> Result<(ModelConfig, Option<String>)> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| EngineError::io(&path, e))?;
    let hf: HfConfig = serde_json::from_str(&text).map_err(|e| bad(&path, "config.json", e.to_string()))?;
    let arch = hf
        .architectures
        .first()
        .cloned()
        .or_else(|| hf.model_type.clone())
        .unwrap_or_else(|| "unknown".into());
    let is_llama =
        hf.model_type.as_deref() == Some("llama") || hf.architectures.iter().any(|a| a == "LlamaForCausalLM");
    if !is_llama {
        return Err(EngineError::UnsupportedArchitecture { path, arch });
    }
    if hf.attention_bias || hf.mlp_bias {
        return Err(EngineError::UnsupportedArchitecture {
            path,
            arch: format!("{arch} with bias terms"),
        });
    }
    let scaling = match &hf.rope_scaling {
        None => RopeScaling::None,
        Some(s) => match s.rope_type.as_deref() {
            Some("llama3") => RopeScaling::Llama3 {
                factor: s.factor.ok_or_else(|| bad(&path, "rope_scaling.factor", "missing"))?,
                low_freq_factor: s
                    .low_freq_factor
                    .ok_or_else(|| bad(&path, "rope_scaling.low_freq_factor", "missing"))?,
                high_freq_factor: s
                    .high_freq_factor
                    .ok_or_else(|| bad(&path, "rope_scaling.high_freq_factor", "missing"))?,
                original_max_position_embeddings: s
                    .original_max_position_embeddings
                    .ok_or_else(|| bad(&path, "rope_scaling.original_max_position_embeddings", "missing"))?,
            },
            Some("linear") => RopeScaling::Linear {
                factor: s.factor.ok_or_else(|| bad(&path, "rope_scaling.factor", "missing"))?,
            },
            Some("default") => RopeScaling::None,
            other => {
                return Err(bad(
                    &path,
                    "rope_scaling",
                    format!("rope scaling {other:?} is not supported"),
                ));
            }
        },
    };
    let head_dim = hf.head_dim.unwrap_or(hf.hidden_size / hf.num_attention_heads.max(1));
    let name = hf.name_or_path.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| {
        dir.file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    let config = ModelConfig {
        architecture: "llama".into(),
        name,
        n_layer: hf.num_hidden_layers,
        n_embd: hf.hidden_size,
        n_head: hf.num_attention_heads,
        n_kv_head: hf.num_key_value_heads.unwrap_or(hf.num_attention_heads),
        head_dim,
        n_ff: hf.intermediate_size,
        vocab_size: hf.vocab_size,
        context_length: hf.max_position_embeddings,
        rms_eps: hf.rms_norm_eps as f32,
        rope: RopeConfig {
            theta: hf.rope_theta,
            dim: head_dim,
            style: RopeStyle::HalfSplit,
            scaling,
        },
        tied_embeddings: hf.tie_word_embeddings,
    };
    config.validate().map_err(|d| bad(&path, "config.json", d))?;
    Ok((config, hf.torch_dtype))
}

/// The safetensors files of a folder: the shards named by `model.safetensors.index.json`, or
/// `model.safetensors`.
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join("model.safetensors.index.json");
    if index.exists() {
        let text = std::fs::read_to_string(&index).map_err(|e| EngineError::io(&index, e))?;
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(&index, "weight_map", e.to_string()))?;
        let map = v
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| bad(&index, "weight_map", "missing"))?;
        let mut files: Vec<String> = map.values().filter_map(|f| f.as_str().map(str::to_string)).collect();
        files.sort();
        files.dedup();
        return files
            .into_iter()
            .map(|f| {
                if f.contains("..") || f.contains('/') || f.contains('\\') {
                    return Err(bad(
                        &index,
                        "weight_map",
                        format!("shard name `{f}` is not a plain file name"),
                    ));
                }
                let p = dir.join(&f);
                if !p.exists() {
                    return Err(EngineError::io(
                        &p,
                        std::io::Error::new(std::io::ErrorKind::NotFound, "shard listed in the index is missing"),
                    ));
                }
                Ok(p)
            })
            .collect();
    }
    let single = dir.join("model.safetensors");
    if single.exists() {
        return Ok(vec![single]);
    }
    Err(EngineError::NotAModel {
        path: dir.into(),
        detail: "no model.safetensors or model.safetensors.index.json".into(),
    })
}

struct Weights<'a> {
    st: MmapedSafetensors,
    dir: &'a Path,
    device: &'a Device,
    kernels: Kernels,
    dtype: DType,
    /// Bytes of tensor data taken so far (for load progress).
    read: std::cell::Cell<u64>,
}

impl Weights<'_> {
    /// The tensor's stored bytes, after checking its shape and type.
    fn view(&self, name: &str, shape: &[usize]) -> Result<safetensors::tensor::TensorView<'_>> {
        let view = self.st.get(name).map_err(|_| EngineError::MissingTensor {
            path: self.dir.into(),
            name: name.into(),
        })?;
        if view.shape() != shape {
            return Err(EngineError::TensorShape {
                path: self.dir.into(),
                name: name.into(),
                expected: shape.to_vec(),
                found: view.shape().to_vec(),
            });
        }
        match view.dtype() {
            safetensors::Dtype::BF16 | safetensors::Dtype::F16 | safetensors::Dtype::F32 => {}
            other => {
                return Err(EngineError::UnsupportedTensorType {
                    path: self.dir.into(),
                    dtype: format!("{other:?} (tensor `{name}`)"),
                })
            }
        }
        self.read.set(self.read.get() + view.data().len() as u64);
        Ok(view)
    }

    fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        self.view(name, shape)?;
        Ok(self.st.load(name, self.device)?.to_dtype(self.dtype)?)
    }

    /// A weight matrix. For our CPU kernels it stays in the checkpoint's type (bf16, f16 or
    /// f32, as blocks of one value): converting bf16 to f32 doubled the memory of a folder (an
    /// 8B model would have needed 32 GB). For candle's ops (a GPU, or the generic path) it is a
    /// tensor of the activations' type.
    /// Matrices `(name, rows)` of `cols` columns applied to the same input: stacked into one for
    /// candle's ops (see [`Stacked`]), each on its own for our CPU kernels.
    fn stacked(&self, parts: &[(String, usize)], cols: usize) -> Result<Stacked> {
        if self.kernels.is_ours() {
            let each = parts
                .iter()
                .map(|(name, rows)| self.linear(name, *rows, cols))
                .collect::<Result<Vec<_>>>()?;
            return Ok(Stacked::each(each));
        }
        let tensors = parts
            .iter()
            .map(|(name, rows)| self.get(name, &[*rows, cols]))
            .collect::<Result<Vec<_>>>()?;
        let one = Linear::from_tensor(Tensor::cat(&tensors, 0)?)?;
        Ok(Stacked::new(vec![(one, parts.iter().map(|(_, r)| *r).collect())])?)
    }

    fn linear(&self, name: &str, rows: usize, cols: usize) -> Result<Linear> {
        if !self.kernels.is_ours() {
            return Ok(Linear::from_tensor(self.get(name, &[rows, cols])?)?);
        }
        let view = self.view(name, &[rows, cols])?;
        let dtype = match view.dtype() {
            safetensors::Dtype::BF16 => GgmlDType::BF16,
            safetensors::Dtype::F16 => GgmlDType::F16,
            _ => GgmlDType::F32,
        };
        let data = view.data();
        #[cfg(target_os = "linux")]
        advise(data, MADV_POPULATE_READ);
        let align = dtype.type_size();
        let storage = if (data.as_ptr() as usize).is_multiple_of(align) {
            QStorage::from_data(Cow::Borrowed(data), self.device, dtype)?
        } else {
            // safetensors does not promise aligned tensors; candle's block view needs them.
            let mut aligned = vec![0u32; data.len().div_ceil(4)];
            let bytes = &mut bytemuck_bytes(&mut aligned)[..data.len()];
            bytes.copy_from_slice(data);
            QStorage::from_data(Cow::Borrowed(bytes), self.device, dtype)?
        };
        release_pages(data);
        let t = QTensor::new(storage, (rows, cols))?;
        Ok(Linear::from_qtensor(Arc::new(t), true)?)
    }
}

/// `u32`s as bytes (always sound: any bytes are valid `u8`s).
fn bytemuck_bytes(v: &mut [u32]) -> &mut [u8] {
    // SAFETY: the new slice covers exactly `v`'s `4·len` initialised bytes and takes over its
    // unique borrow (same lifetime); `u8` needs no alignment, and any bytes written through it
    // leave valid `u32`s.
    unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr() as *mut u8, v.len() * 4) }
}

/// Maps a tensor's pages in one call before it is copied (Linux 5.14+; elsewhere, or on an
/// older kernel, the copy faults them in one by one).
#[cfg(target_os = "linux")]
const MADV_POPULATE_READ: i32 = 22;

/// Drops the mapped pages of a tensor already copied out, so that a loaded model holds its
/// weights once rather than once copied and once mapped (peak memory near the folder's size,
/// not twice it). The file is only read: dropped pages read back the same bytes if touched.
fn release_pages(data: &[u8]) {
    #[cfg(unix)]
    advise(data, libc::MADV_DONTNEED);
    #[cfg(not(unix))]
    let _ = data;
}

/// `madvise` over the whole pages inside `data` (a read-only file mapping that stays mapped).
/// Failures are ignored: the advice only changes speed or residency, never a value.
#[cfg(unix)]
fn advise(data: &[u8], advice: i32) {
    // SAFETY: sysconf only reads a system constant; `_SC_PAGESIZE` is a valid name.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
    let start = (data.as_ptr() as usize).next_multiple_of(page);
    let end = (data.as_ptr() as usize + data.len()) / page * page;
    if end > start {
        // SAFETY: whole pages inside a read-only file mapping that stays mapped; populating
        // reads them in, and MADV_DONTNEED on such a mapping only drops them (they fault back
        // in from the file).
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, advice) };
    }
}

/// Loads the weights; activations run in f32 on the CPU (over the matrices as stored) and in the
/// checkpoint's half type on GPUs.
/// Also returns the weight digest for the model fingerprint, when `with_digest`.
pub fn load_model(
    dir: &Path,
    config: ModelConfig,
    torch_dtype: Option<&str>,
    device: &Device,
    kernels: Kernels,
    progress: &mut dyn FnMut(LoadProgress),
    with_digest: bool,
) -> Result<(Model, Option<[u8; 32]>)> {
    let files = weight_files(dir)?;
    // SAFETY: read-only mappings of weight files the project never writes (they are the user's
    // model directory; the default model is fetched to a temporary name and renamed). Only an
    // outside process truncating or rewriting them while mapped could change the bytes, which
    // no mapping can guard against; candle checks each tensor's bounds against the file.
    let st = unsafe { MmapedSafetensors::multi(&files) }.map_err(|e| EngineError::Truncated {
        path: dir.into(),
        detail: e.to_string(),
    })?;
    let dtype = if device.is_cpu() {
        DType::F32
    } else {
        match torch_dtype {
            Some("bfloat16") => DType::BF16,
            Some("float16") => DType::F16,
            _ => DType::F32,
        }
    };
    let mut digest = WeightDigest::new();
    let mut names: Vec<(String, safetensors::tensor::TensorView<'_>)> = st.tensors();
    names.sort_by(|a, b| a.0.cmp(&b.0));
    let mut total_bytes = 0u64;
    for (name, view) in &names {
        if with_digest {
            digest.tensor_bytes(name, &format!("{:?}", view.dtype()), view.shape(), view.data());
        }
        total_bytes += view.data().len() as u64;
    }
    drop(names);
    let w = Weights {
        st,
        dir,
        device,
        kernels,
        dtype,
        read: Default::default(),
    };
    let mut report = |w: &Weights| {
        progress(LoadProgress {
            done_bytes: w.read.get(),
            total_bytes,
        })
    };
    let c = &config;
    let q_dim = c.n_head * c.head_dim;
    let kv_dim = c.n_kv_head * c.head_dim;
    let embed = w.linear("model.embed_tokens.weight", c.vocab_size, c.n_embd)?;
    let mut blocks = Vec::with_capacity(c.n_layer);
    for i in 0..c.n_layer {
        let p = format!("model.layers.{i}");
        blocks.push(Block {
            attn_norm: w.get(&format!("{p}.input_layernorm.weight"), &[c.n_embd])?,
            qkv: w.stacked(
                &[
                    (format!("{p}.self_attn.q_proj.weight"), q_dim),
                    (format!("{p}.self_attn.k_proj.weight"), kv_dim),
                    (format!("{p}.self_attn.v_proj.weight"), kv_dim),
                ],
                c.n_embd,
            )?,
            wo: w.linear(&format!("{p}.self_attn.o_proj.weight"), c.n_embd, q_dim)?,
            ffn_norm: w.get(&format!("{p}.post_attention_layernorm.weight"), &[c.n_embd])?,
            gate_up: w.stacked(
                &[
                    (format!("{p}.mlp.gate_proj.weight"), c.n_ff),
                    (format!("{p}.mlp.up_proj.weight"), c.n_ff),
                ],
                c.n_embd,
            )?,
            w_down: w.linear(&format!("{p}.mlp.down_proj.weight"), c.n_embd, c.n_ff)?,
        });
        report(&w);
    }
    let norm = w.get("model.norm.weight", &[c.n_embd])?;
    let output = if c.tied_embeddings {
        embed.clone()
    } else {
        w.linear("lm_head.weight", c.vocab_size, c.n_embd)?
    };
    report(&w);
    Ok((
        Model::assemble(config, device.clone(), kernels, dtype, embed, blocks, norm, output),
        with_digest.then(|| digest.finish()),
    ))
}
