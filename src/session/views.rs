//! What the session reports to the app and the CLI.

use super::Live;
use crate::transcript::Transcript;
use freeze_attn_engine::{FinishReason, Generation, LoadedModel};
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct LiveState {
    pub node: Option<i64>,
    pub kind: freeze_attn_library::NodeKind,
    /// Tokens not yet frozen into a node.
    pub dirty: bool,
    pub token_count: usize,
    pub context_length: usize,
    pub transcript: Transcript,
}

impl LiveState {
    pub(crate) fn of(live: &Live, model: &LoadedModel) -> Self {
        Self {
            node: live.base.as_ref().map(|b| b.node.0),
            kind: live.kind,
            dirty: live.dirty(),
            token_count: live.state.len(),
            context_length: model.model.config().context_length,
            transcript: live.transcript.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct ThawReport {
    pub node: i64,
    pub millis: f64,
    /// Tokens of the saved state reused as they are.
    pub reused_tokens: usize,
    /// Tokens that had to be run through the model again (0: a full reuse).
    pub reprocessed_tokens: usize,
    pub from_memory: bool,
    pub live: LiveState,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct Reply {
    pub text: String,
    pub tokens: usize,
    pub finish: FinishReason,
    pub prefill_ms: f64,
    pub decode_ms: f64,
    /// Tokens fed before generating (the new turn).
    pub prompt_tokens: usize,
    pub live: LiveState,
}

impl Reply {
    pub(crate) fn new(g: &Generation, prompt_tokens: usize, live: LiveState) -> Self {
        Self {
            text: g.text.clone(),
            tokens: g.tokens.len(),
            finish: g.finish,
            prefill_ms: g.prefill.as_secs_f64() * 1000.0,
            decode_ms: g.decode.as_secs_f64() * 1000.0,
            prompt_tokens,
            live,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct Alternative {
    pub index: usize,
    pub text: String,
    pub tokens: usize,
}

/// A question asked of a document node and the answer it got (kept in the library, so the
/// history survives thawing the document again and restarting the app).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct QuestionView {
    /// Milliseconds since the Unix epoch.
    pub asked_at_ms: f64,
    pub question: String,
    pub answer: String,
    pub tokens: usize,
    pub finish: FinishReason,
}

impl QuestionView {
    pub(crate) fn of(q: freeze_attn_library::Question) -> Self {
        Self {
            asked_at_ms: q.asked_at_ms as f64,
            finish: serde_json::from_value(serde_json::Value::String(q.finish)).unwrap_or(FinishReason::StopToken),
            question: q.question,
            answer: q.answer,
            tokens: q.tokens as usize,
        }
    }
}
