//! The shapes exchanged with the UI that the API does not already define: sampling settings,
//! streamed events, errors, and small reports. Generated into `ui/src/lib/bindings.ts`.

use freeze_attn::engine::{GenerateParams, ModelInfo, SamplingParams};
use freeze_attn::session::LiveState;
use serde::{Deserialize, Serialize};
use specta::Type;

/// `{ code, message }`: `message` is for people, `code` for code.
#[derive(Debug, Clone, Serialize, Deserialize, Type)]
pub struct ApiError {
    pub code: String,
    pub message: String,
}

impl From<freeze_attn::Error> for ApiError {
    fn from(e: freeze_attn::Error) -> Self {
        Self {
            code: e.code().into(),
            message: e.to_string(),
        }
    }
}

impl From<freeze_attn::engine::worker::WorkerGone> for ApiError {
    fn from(e: freeze_attn::engine::worker::WorkerGone) -> Self {
        Self {
            code: "engine_stopped".into(),
            message: e.to_string(),
        }
    }
}

impl ApiError {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Type)]
pub struct Sampling {
    pub temperature: f32,
    pub top_p: f32,
    pub top_k: u32,
    pub min_p: f32,
    pub repeat_penalty: f32,
    pub max_tokens: u32,
    pub seed: u64,
}

impl Default for Sampling {
    fn default() -> Self {
        Self {
            temperature: 0.7,
            top_p: 0.9,
            top_k: 40,
            min_p: 0.0,
            repeat_penalty: 1.1,
            max_tokens: 256,
            seed: 42,
        }
    }
}

impl Sampling {
    pub fn params(&self) -> GenerateParams {
        GenerateParams {
            max_tokens: self.max_tokens as usize,
            sampling: SamplingParams {
                temperature: self.temperature,
                top_k: self.top_k as usize,
                top_p: self.top_p,
                min_p: self.min_p,
                repeat_penalty: self.repeat_penalty,
                repeat_last_n: 64,
                seed: self.seed,
            },
            ..Default::default()
        }
    }
}

/// Streamed while a prompt is processed and a reply is generated.
#[derive(Debug, Clone, Serialize, Type)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum GenEvent {
    Progress { done: u32, total: u32 },
    Text { text: String },
}

/// Streamed text of story alternative `index`.
#[derive(Debug, Clone, Serialize, Type)]
pub struct AltEvent {
    pub index: u32,
    pub text: String,
}

#[derive(Debug, Clone, Serialize, Type)]
pub struct AppStatus {
    pub model: ModelInfo,
    pub live: LiveState,
    pub sampling: Sampling,
    /// A job is running on the engine thread.
    pub busy: bool,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, Type)]
#[serde(rename_all = "snake_case")]
pub enum DeleteMode {
    Reparent,
    Subtree,
}

#[derive(Debug, Clone, Serialize, Type)]
pub struct DeleteReport {
    pub deleted: u32,
    pub reparented: u32,
    pub freed_bytes: u64,
}
