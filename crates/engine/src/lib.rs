//! # freeze-attn-engine
//!
//! Everything that touches candle: a Llama-architecture forward pass of our own over an
//! attention state the caller owns ([`KvState`]), model loading (GGUF and Hugging Face
//! safetensors), tokenizers (from `tokenizer.json` or GGUF metadata), chat templates, sampling
//! and the generation loop.
//!
//! Invariants:
//! - Weights ([`Model`]) are immutable and shared; all mutable attention state is a
//!   [`KvState`], passed by `&mut` to [`Model::forward`].
//! - A `KvState` holds K/V for exactly `tokens().len()` positions; rewinding is `truncate`,
//!   forking is `fork` (copy on write).
//! - No code path assumes the CPU: the device comes from [`DeviceChoice`].

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod chat;
pub mod config;
pub mod device;
pub mod error;
pub mod fingerprint;
pub mod generate;
pub mod gguf;
pub mod grammar;
pub mod kernels;
pub mod kv;
pub mod loader;
pub mod memory;
pub mod model;
pub mod sampling;
pub mod state;
pub mod template;
pub mod tokenizer;
pub mod tools;
pub mod worker;

pub use candle_core::{DType, Device, Tensor};
pub use config::ModelConfig;
pub use device::DeviceChoice;
pub use error::{EngineError, Result};
pub use fingerprint::ModelFingerprint;
pub use generate::{
    generate, score, CancelToken, Event, FinishReason, GenerateParams, Generation, TokenLogprob, MAX_TOP_LOGPROBS,
    SCORE_CHUNK,
};
pub use grammar::Grammar;
pub use kernels::{KernelChoice, Kernels};
pub use kv::{KvGeometry, KvState};
pub use loader::{
    load_model, load_model_with, load_model_with_progress, LoadProgress, LoadedModel, ModelFormat, ModelInfo,
};
pub use model::{Model, PrefillProgress, DEFAULT_CHUNK, PREFILL_HEADROOM};
pub use sampling::{Sampler, SamplingParams};
pub use template::{ChatTemplate, Message, ToolCall};
pub use tokenizer::Tokenizer;
