//! The shapes exchanged with the UI that the API does not already define: streamed events,
//! errors, and small reports. Generated into `ui/src/lib/bindings.ts`.

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

impl ApiError {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
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

/// Whether the app serves its library over the OpenAI-compatible HTTP API (loopback only).
#[derive(Debug, Clone, Serialize, Type)]
pub struct ServingStatus {
    /// `http://127.0.0.1:PORT/v1` while serving.
    pub url: Option<String>,
}
