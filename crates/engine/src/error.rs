//! Engine errors: one variant per thing that can go wrong, each naming what failed.

use std::path::PathBuf;

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a GGUF file or a Hugging Face model folder ({detail})")]
    NotAModel { path: PathBuf, detail: String },
    #[error("{path} is truncated or corrupted: {detail}")]
    Truncated { path: PathBuf, detail: String },
    #[error("{path}: unsupported architecture `{arch}` (Freeze-Attn runs Llama-architecture models)")]
    UnsupportedArchitecture { path: PathBuf, arch: String },
    /// The supported types are listed from the one table of weight formats.
    #[error("{path}: unsupported tensor type {dtype} (supported: {supported})", supported = crate::model::cpu::supported_names())]
    UnsupportedTensorType { path: PathBuf, dtype: String },
    #[error("{path}: missing or invalid metadata `{key}`: {detail}")]
    BadMetadata { path: PathBuf, key: String, detail: String },
    #[error("{path}: missing tensor `{name}`")]
    MissingTensor { path: PathBuf, name: String },
    #[error("{path}: tensor `{name}` has shape {found:?}, expected {expected:?}")]
    TensorShape {
        path: PathBuf,
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("tokenizer from {path} has {tokenizer} tokens but the model's vocabulary has {model}")]
    VocabMismatch {
        path: PathBuf,
        tokenizer: usize,
        model: usize,
    },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("unsupported tokenizer in {path}: {detail}")]
    UnsupportedTokenizer { path: PathBuf, detail: String },
    #[error("chat template: {0}")]
    Template(String),
    #[error("the model has no chat template; use a raw prompt or a model with `tokenizer.chat_template`")]
    NoChatTemplate,
    #[error("{needed} tokens do not fit the model's context of {context} tokens")]
    ContextOverflow { needed: usize, context: usize },
    /// Refused before allocating (the machine's free memory, `available`, cannot hold what was
    /// asked), or by the allocator (`available` then as far as it is known).
    #[error(
        "not enough memory for {what}: its attention state needs {} more, {}",
        crate::memory::human(*needed),
        crate::memory::free_text(available)
    )]
    OutOfMemory {
        what: String,
        needed: u64,
        available: Option<u64>,
    },
    #[error("token id {id} is outside the vocabulary of {vocab} tokens")]
    BadToken { id: u32, vocab: usize },
    #[error("invalid sampling parameter: {0}")]
    BadSampling(String),
    #[error("device `{0}`: {1}")]
    Device(String, String),
    #[error("cancelled")]
    Cancelled,
    #[error("attention state belongs to another model: state has {found}, the loaded model is {expected}")]
    StateModelMismatch { expected: String, found: String },
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// A call the engine cannot honour (a caller's mistake, not bad input from a file).
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl EngineError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unsupported_type_names_the_supported_ones() {
        let e = EngineError::UnsupportedTensorType {
            path: "m.gguf".into(),
            dtype: "Q8K (tensor `output.weight`)".into(),
        };
        assert_eq!(
            e.to_string(),
            "m.gguf: unsupported tensor type Q8K (tensor `output.weight`) (supported: F32, F16, BF16, Q4_0, \
             Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K)"
        );
    }
}
