//! Opening a model from a path: a GGUF file or a Hugging Face folder, with its tokenizer, its
//! chat template and its fingerprint.

use crate::device::device_name;
use crate::error::{EngineError, Result};
use crate::fingerprint::{fingerprint, ModelFingerprint};
use crate::gguf::GgufFile;
use crate::kernels::{KernelChoice, Kernels};
use crate::model::{gguf, hf, Model};
use crate::template::ChatTemplate;
use crate::tokenizer::{self, Tokenizer};
use candle_core::Device;
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub enum ModelFormat {
    Gguf,
    HfFolder,
}

/// What the UI and the CLI show about a loaded model.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct ModelInfo {
    pub path: PathBuf,
    pub format: ModelFormat,
    pub name: String,
    /// Weight type, e.g. `Q4_1` or `BF16`.
    pub weight_type: String,
    pub bytes: u64,
    pub device: String,
    /// The kernels it runs: ours on the CPU (`avx512`, `avx2`, `portable`) or candle's ops
    /// (`generic` on the CPU, `cuda`, `metal`).
    pub kernels: Kernels,
    pub context_length: usize,
    pub n_layer: usize,
    pub vocab_size: usize,
    pub fingerprint: ModelFingerprint,
    pub has_chat_template: bool,
}

/// A model ready to run: weights, tokenizer, chat template and fingerprint.
#[derive(Debug)]
pub struct LoadedModel {
    pub model: Model,
    pub tokenizer: Tokenizer,
    pub template: Option<ChatTemplate>,
    pub info: ModelInfo,
}

impl LoadedModel {
    pub fn fingerprint(&self) -> &ModelFingerprint {
        &self.info.fingerprint
    }

    /// The chat template, or a clear error when the model has none.
    pub fn template(&self) -> Result<&ChatTemplate> {
        self.template.as_ref().ok_or(EngineError::NoChatTemplate)
    }

    /// Uses `source` as the chat template instead of the model's own (a template with function
    /// calling for a model whose own has none, as llama.cpp's `--chat-template-file`). States
    /// are token sequences, so nothing saved depends on which template made them.
    pub fn set_chat_template(&mut self, source: &str) -> Result<()> {
        self.template = template_for(Some(source.to_string()), &self.tokenizer)?;
        self.info.has_chat_template = true;
        Ok(())
    }
}

fn template_for(source: Option<String>, tokenizer: &Tokenizer) -> Result<Option<ChatTemplate>> {
    let text = |id: Option<u32>| id.and_then(|i| tokenizer.token_text(i)).unwrap_or_default();
    source
        .map(|s| ChatTemplate::new(&s, &text(tokenizer.bos()), &text(tokenizer.eos())))
        .transpose()
}

fn check_vocab(path: &Path, tokenizer: &Tokenizer, model: &Model, exact: bool) -> Result<()> {
    let (t, m) = (tokenizer.vocab_size(), model.config().vocab_size);
    if t > m || (exact && t != m) {
        return Err(EngineError::VocabMismatch {
            path: path.into(),
            tokenizer: t,
            model: m,
        });
    }
    Ok(())
}

/// How far loading a model's weights has come: bytes of tensor data read, of all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct LoadProgress {
    pub done_bytes: u64,
    pub total_bytes: u64,
}

/// Loads a model from a GGUF file or a Hugging Face folder onto `device`.
pub fn load_model(path: &Path, device: &Device) -> Result<LoadedModel> {
    load_model_with_progress(path, device, &mut |_| {})
}

/// [`load_model`], reporting progress after each layer (a multi-gigabyte model takes seconds),
/// with the kernels `FREEZE_ATTN_KERNELS` asks for.
pub fn load_model_with_progress(
    path: &Path,
    device: &Device,
    progress: &mut dyn FnMut(LoadProgress),
) -> Result<LoadedModel> {
    load_model_with(path, device, KernelChoice::from_env()?, progress)
}

/// [`load_model_with_progress`] with the kernels chosen by the caller.
#[tracing::instrument(level = "info", name = "load_model", skip_all, fields(path = %path.display()))]
pub fn load_model_with(
    path: &Path,
    device: &Device,
    choice: KernelChoice,
    progress: &mut dyn FnMut(LoadProgress),
) -> Result<LoadedModel> {
    let kernels = Kernels::select(choice, device);
    let meta = std::fs::metadata(path).map_err(|e| EngineError::io(path, e))?;
    if meta.is_dir() {
        return load_hf(path, device, kernels, progress);
    }
    let mut magic = [0u8; 4];
    let mut f = std::fs::File::open(path).map_err(|e| EngineError::io(path, e))?;
    if f.read_exact(&mut magic).is_err() || &magic != b"GGUF" {
        return Err(EngineError::NotAModel {
            path: path.into(),
            detail: if meta.len() < 4 {
                "the file is empty or too short".into()
            } else {
                "no GGUF magic at the start of the file".into()
            },
        });
    }
    load_gguf(path, device, kernels, meta.len(), progress)
}

fn load_gguf(
    path: &Path,
    device: &Device,
    kernels: Kernels,
    bytes: u64,
    progress: &mut dyn FnMut(LoadProgress),
) -> Result<LoadedModel> {
    let mut g = GgufFile::open(path)?;
    let config = gguf::read_config(&g)?;
    let tokenizer = tokenizer::gguf::from_gguf(&g)?;
    let template_src = g.meta_str("tokenizer.chat_template").ok().map(str::to_string);
    let weight_type = gguf::weight_type(&g);
    let digest = crate::fingerprint::cached_digest(&[path.to_path_buf()], || gguf::weight_digest(&g))?;
    let model = gguf::load_model(&mut g, config, device, kernels, progress)?;
    check_vocab(path, &tokenizer, &model, true)?;
    let template = template_for(template_src.clone(), &tokenizer)?;
    finish(
        path,
        ModelFormat::Gguf,
        model,
        tokenizer,
        template,
        template_src,
        weight_type,
        bytes,
        digest,
        device,
    )
}

fn load_hf(
    dir: &Path,
    device: &Device,
    kernels: Kernels,
    progress: &mut dyn FnMut(LoadProgress),
) -> Result<LoadedModel> {
    if !dir.join("config.json").exists() {
        return Err(EngineError::NotAModel {
            path: dir.into(),
            detail: "the folder has no config.json".into(),
        });
    }
    let (config, torch_dtype) = hf::read_config(dir)?;
    let tokenizer = Tokenizer::from_hf_dir(dir)?;
    let template_src = std::fs::read_to_string(dir.join("tokenizer_config.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v.get("chat_template").cloned())
        .and_then(|v| match v {
            serde_json::Value::String(s) => Some(s),
            // A list of named templates: take the default one.
            serde_json::Value::Array(a) => a
                .iter()
                .find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"))
                .and_then(|t| t.get("template")?.as_str().map(str::to_string)),
            _ => None,
        })
        .or_else(|| std::fs::read_to_string(dir.join("chat_template.jinja")).ok());
    let bytes = hf::weight_files(dir)?
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    let weight_type = torch_dtype.clone().unwrap_or_else(|| "float32".into());
    // The digest is computed while the weights are mapped anyway, unless it is remembered.
    let files = hf::weight_files(dir)?;
    let known = crate::fingerprint::remembered_digest(&files);
    let (model, computed) = hf::load_model(
        dir,
        config,
        torch_dtype.as_deref(),
        device,
        kernels,
        progress,
        known.is_none(),
    )?;
    let digest = match (known, computed) {
        (Some(d), _) => d,
        (None, Some(d)) => {
            crate::fingerprint::remember_digest(&files, d);
            d
        }
        (None, None) => return Err(EngineError::Invalid("the weight digest was not computed".into())),
    };
    check_vocab(&dir.join("tokenizer.json"), &tokenizer, &model, false)?;
    let template = template_for(template_src.clone(), &tokenizer)?;
    finish(
        dir,
        ModelFormat::HfFolder,
        model,
        tokenizer,
        template,
        template_src,
        weight_type,
        bytes,
        digest,
        device,
    )
}

#[allow(clippy::too_many_arguments)]
fn finish(
    path: &Path,
    format: ModelFormat,
    model: Model,
    tokenizer: Tokenizer,
    template: Option<ChatTemplate>,
    template_src: Option<String>,
    weight_type: String,
    bytes: u64,
    digest: [u8; 32],
    device: &Device,
) -> Result<LoadedModel> {
    let c = model.config();
    let fp = fingerprint(
        c,
        &format!("{:?}", model.kv_dtype()),
        &tokenizer,
        template_src.as_deref(),
        digest,
    );
    let info = ModelInfo {
        path: path.into(),
        format,
        name: c.name.clone(),
        weight_type,
        bytes,
        device: device_name(device),
        kernels: model.kernels(),
        context_length: c.context_length,
        n_layer: c.n_layer,
        vocab_size: c.vocab_size,
        fingerprint: fp,
        has_chat_template: template.is_some(),
    };
    Ok(LoadedModel {
        model,
        tokenizer,
        template,
        info,
    })
}
