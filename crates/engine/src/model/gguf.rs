//! Loading Llama-architecture weights from a GGUF file.

use super::{Block, Linear, Model};
use crate::config::{ModelConfig, RopeConfig, RopeScaling, RopeStyle};
use crate::error::{EngineError, Result};
use crate::fingerprint::WeightDigest;
use crate::loader::LoadProgress;
use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use std::fs::File;
use std::io::{BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// ggml's type numbers, for naming types candle cannot load.
fn ggml_type_name(n: u32) -> String {
    const NAMES: [&str; 40] = [
        "F32",
        "F16",
        "Q4_0",
        "Q4_1",
        "Q4_2",
        "Q4_3",
        "Q5_0",
        "Q5_1",
        "Q8_0",
        "Q8_1",
        "Q2_K",
        "Q3_K",
        "Q4_K",
        "Q5_K",
        "Q6_K",
        "Q8_K",
        "IQ2_XXS",
        "IQ2_XS",
        "IQ3_XXS",
        "IQ1_S",
        "IQ4_NL",
        "IQ3_S",
        "IQ2_S",
        "IQ4_XS",
        "I8",
        "I16",
        "I32",
        "I64",
        "F64",
        "IQ1_M",
        "BF16",
        "Q4_0_4_4",
        "Q4_0_4_8",
        "Q4_0_8_8",
        "TQ1_0",
        "TQ2_0",
        "IQ4_NL_4_4",
        "IQ4_NL_4_8",
        "IQ4_NL_8_8",
        "MXFP4",
    ];
    NAMES
        .get(n as usize)
        .map(|s| s.to_string())
        .unwrap_or_else(|| format!("#{n}"))
}

/// An open GGUF file: its parsed header and a reader for tensor data.
pub struct GgufFile {
    pub path: PathBuf,
    pub content: Content,
    reader: BufReader<File>,
    file_len: u64,
    /// Bytes of tensor data read so far, and of all tensors (for load progress).
    read_bytes: u64,
    total_bytes: u64,
}

impl GgufFile {
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| EngineError::io(path, e))?;
        let file_len = file.metadata().map_err(|e| EngineError::io(path, e))?.len();
        let mut reader = BufReader::new(file);
        let content = Content::read(&mut reader).map_err(|e| classify_read_error(path, e))?;
        let mut me = Self {
            path: path.to_path_buf(),
            content,
            reader,
            file_len,
            read_bytes: 0,
            total_bytes: 0,
        };
        me.total_bytes = me.content.tensor_infos.keys().map(|n| me.tensor_bytes(n)).sum();
        me.check_tensor_extents()?;
        Ok(me)
    }

    /// Every tensor must lie inside the file: a truncated download is caught here, by name.
    fn check_tensor_extents(&mut self) -> Result<()> {
        let base = self.content.tensor_data_offset;
        for (name, info) in &self.content.tensor_infos {
            let bs = info.ggml_dtype.block_size();
            let elems = info.shape.elem_count();
            if elems % bs != 0 {
                return Err(EngineError::Truncated {
                    path: self.path.clone(),
                    detail: format!("tensor `{name}` has {elems} elements, not a multiple of its block size {bs}"),
                });
            }
            let bytes = (elems / bs * info.ggml_dtype.type_size()) as u64;
            let end = base.saturating_add(info.offset).saturating_add(bytes);
            if end > self.file_len {
                return Err(EngineError::Truncated {
                    path: self.path.clone(),
                    detail: format!(
                        "tensor `{name}` ends at byte {end} but the file has {} bytes",
                        self.file_len
                    ),
                });
            }
        }
        self.reader
            .seek(SeekFrom::Start(0))
            .map_err(|e| EngineError::io(&self.path, e))?;
        Ok(())
    }

    pub fn meta(&self, key: &str) -> Option<&Value> {
        self.content.metadata.get(key)
    }

    fn bad(&self, key: &str, detail: impl Into<String>) -> EngineError {
        EngineError::BadMetadata {
            path: self.path.clone(),
            key: key.into(),
            detail: detail.into(),
        }
    }

    pub fn meta_str(&self, key: &str) -> Result<&str> {
        match self.meta(key) {
            Some(Value::String(s)) => Ok(s),
            Some(v) => Err(self.bad(key, format!("expected a string, found {:?}", v.value_type()))),
            None => Err(self.bad(key, "missing")),
        }
    }

    pub fn meta_usize(&self, key: &str) -> Result<usize> {
        let v = self.meta(key).ok_or_else(|| self.bad(key, "missing"))?;
        v.to_u64()
            .map(|n| n as usize)
            .or_else(|_| v.to_i32().map(|n| n.max(0) as usize))
            .map_err(|_| self.bad(key, format!("expected an integer, found {:?}", v.value_type())))
    }

    pub fn meta_f32(&self, key: &str) -> Result<f32> {
        let v = self.meta(key).ok_or_else(|| self.bad(key, "missing"))?;
        v.to_f32()
            .or_else(|_| v.to_f64().map(|x| x as f32))
            .map_err(|_| self.bad(key, format!("expected a float, found {:?}", v.value_type())))
    }

    pub fn has_tensor(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    pub fn tensor(&mut self, name: &str, device: &Device) -> Result<QTensor> {
        if !self.has_tensor(name) {
            return Err(EngineError::MissingTensor {
                path: self.path.clone(),
                name: name.into(),
            });
        }
        let t = self
            .content
            .tensor(&mut self.reader, name, device)
            .map_err(|e| EngineError::Truncated {
                path: self.path.clone(),
                detail: format!("tensor `{name}`: {e}"),
            })?;
        self.read_bytes += self.tensor_bytes(name);
        Ok(t)
    }

    /// Bytes of one tensor's data in the file (0 if absent).
    fn tensor_bytes(&self, name: &str) -> u64 {
        self.content.tensor_infos.get(name).map_or(0, |info| {
            (info.shape.elem_count() / info.ggml_dtype.block_size() * info.ggml_dtype.type_size()) as u64
        })
    }

    /// Load progress: tensor bytes read so far, of all.
    fn progress(&self) -> LoadProgress {
        LoadProgress {
            done_bytes: self.read_bytes,
            total_bytes: self.total_bytes,
        }
    }

    /// The dtype of a tensor, if present.
    pub fn tensor_dtype(&self, name: &str) -> Option<GgmlDType> {
        self.content.tensor_infos.get(name).map(|i| i.ggml_dtype)
    }
}

fn classify_read_error(path: &Path, e: candle_core::Error) -> EngineError {
    // With RUST_BACKTRACE set candle appends a backtrace to the message; only the first line names
    // the problem.
    let full = e.to_string();
    let msg = full.lines().next().unwrap_or_default().trim().to_string();
    if msg.contains("unknown magic") || msg.contains("unsupported magic") {
        return EngineError::NotAModel {
            path: path.into(),
            detail: "no GGUF magic at the start of the file".into(),
        };
    }
    if let Some(rest) = msg.strip_prefix("unknown dtype for tensor ") {
        if let Ok(n) = rest.trim().parse::<u32>() {
            return EngineError::UnsupportedTensorType {
                path: path.into(),
                dtype: ggml_type_name(n),
            };
        }
    }
    let eof = matches!(&e, candle_core::Error::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof);
    EngineError::Truncated {
        path: path.into(),
        detail: if eof {
            "the header ends before it is complete".into()
        } else {
            msg
        },
    }
}

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
    let vocab_size = match g.content.tensor_infos.get("token_embd.weight") {
        Some(i) if i.shape.rank() == 2 => i.shape.dims()[0],
        _ => g
            .meta_usize("llama.vocab_size")
            .or_else(|_| match g.meta("tokenizer.ggml.tokens") {
                Some(Value::Array(a)) => Ok(a.len()),
                _ => Err(EngineError::MissingTensor {
                    path: g.path.clone(),
                    name: "token_embd.weight".into(),
                }),
            })?,
    };
    let scaling = match g.meta_str("llama.rope.scaling.type") {
        Ok("linear") => RopeScaling::Linear {
            factor: g.meta_f32("llama.rope.scaling.factor")?,
        },
        Ok("none") | Err(_) => RopeScaling::None,
        Ok(other) => {
            return Err(g.bad(
                "llama.rope.scaling.type",
                format!("rope scaling `{other}` is not supported"),
            ))
        }
    };
    let name = g.meta_str("general.name").map(str::to_string).unwrap_or_else(|_| {
        g.path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
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

fn check_weight_type(g: &GgufFile, name: &str) -> Result<()> {
    match g.tensor_dtype(name) {
        Some(GgmlDType::Q8_1) | Some(GgmlDType::Q8K) => Err(EngineError::UnsupportedTensorType {
            path: g.path.clone(),
            dtype: format!("{:?} (tensor `{name}`)", g.tensor_dtype(name).unwrap()),
        }),
        _ => Ok(()),
    }
}

fn linear(g: &mut GgufFile, name: &str, shape: (usize, usize), device: &Device) -> Result<Linear> {
    check_weight_type(g, name)?;
    let t = g.tensor(name, device)?;
    check_shape(g, name, t.shape().dims(), &[shape.0, shape.1])?;
    Ok(Linear::from_qtensor(Arc::new(t))?)
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
    progress: &mut dyn FnMut(LoadProgress),
) -> Result<Model> {
    config.validate().map_err(|d| g.bad("llama.*", d))?;
    let c = config.clone();
    if g.has_tensor("rope_freqs.weight") {
        let f = vector(g, "rope_freqs.weight", c.rope.dim / 2, &Device::Cpu)?;
        config.rope.scaling = RopeScaling::FreqFactors(f.to_vec1::<f32>()?);
    }
    let embed = linear(g, "token_embd.weight", (c.vocab_size, c.n_embd), device)?;
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
            wq: linear(g, &format!("{p}.attn_q.weight"), (q_dim, c.n_embd), device)?,
            wk: linear(g, &format!("{p}.attn_k.weight"), (kv_dim, c.n_embd), device)?,
            wv: linear(g, &format!("{p}.attn_v.weight"), (kv_dim, c.n_embd), device)?,
            wo: linear(g, &format!("{p}.attn_output.weight"), (c.n_embd, q_dim), device)?,
            ffn_norm: vector(g, &format!("{p}.ffn_norm.weight"), c.n_embd, device)?,
            w_gate: linear(g, &format!("{p}.ffn_gate.weight"), (c.n_ff, c.n_embd), device)?,
            w_up: linear(g, &format!("{p}.ffn_up.weight"), (c.n_ff, c.n_embd), device)?,
            w_down: linear(g, &format!("{p}.ffn_down.weight"), (c.n_embd, c.n_ff), device)?,
        });
        progress(g.progress());
    }
    let norm = vector(g, "output_norm.weight", c.n_embd, device)?;
    let output = if c.tied_embeddings {
        embed.clone()
    } else {
        linear(g, "output.weight", (c.vocab_size, c.n_embd), device)?
    };
    progress(g.progress());
    Ok(Model::assemble(
        config,
        device.clone(),
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
    let mut names: Vec<&String> = g.content.tensor_infos.keys().collect();
    names.sort();
    let mut digest = WeightDigest::new();
    for name in names {
        let info = &g.content.tensor_infos[name];
        let len = (info.shape.elem_count() / info.ggml_dtype.block_size() * info.ggml_dtype.type_size()) as u64;
        digest
            .tensor_in_file(
                &mut file,
                name,
                &format!("{:?}", info.ggml_dtype),
                info.shape.dims(),
                g.content.tensor_data_offset + info.offset,
                len,
            )
            .map_err(|e| EngineError::io(&g.path, e))?;
    }
    Ok(digest.finish())
}

/// The most common quantized type among the weight matrices (e.g. `Q4_1`), for display.
pub fn weight_type(g: &GgufFile) -> String {
    let mut counts: std::collections::HashMap<String, usize> = Default::default();
    for (name, info) in &g.content.tensor_infos {
        if info.shape.rank() == 2 && name.starts_with("blk.") {
            *counts.entry(format!("{:?}", info.ggml_dtype)).or_default() += 1;
        }
    }
    counts
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .map(|(t, _)| t)
        .unwrap_or_else(|| "unknown".into())
}
