//! The generation loop: prefill the prompt into the state, then sample, stream and feed tokens
//! until a stop token, a stop string, the token limit, a full context, or cancellation.
//!
//! Invariant: when it returns, the state holds the prompt and every token whose text was
//! reported (the stop token and the text of a stop string are not kept), so freezing right after
//! a reply captures exactly what the user saw.

use crate::error::{EngineError, Result};
use crate::kv::KvState;
use crate::model::{Model, PrefillProgress, DEFAULT_CHUNK};
use crate::sampling::{Sampler, SamplingParams};
use crate::tokenizer::{TokenStream, Tokenizer};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A flag another thread can raise to stop a prefill or a generation.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst)
    }
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
    pub fn reset(&self) {
        self.0.store(false, Ordering::SeqCst)
    }
}

/// A generation's settings: the sampling (flattened, so the app, the CLI and a request body see
/// one flat set of fields), the token limit, stop strings and the prefill chunk size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct GenerateParams {
    pub max_tokens: usize,
    #[serde(flatten)]
    pub sampling: SamplingParams,
    pub stop_strings: Vec<String>,
    /// Tokens per prefill chunk.
    pub chunk: usize,
}

impl Default for GenerateParams {
    fn default() -> Self {
        Self {
            max_tokens: 256,
            sampling: SamplingParams::default(),
            stop_strings: Vec::new(),
            chunk: DEFAULT_CHUNK,
        }
    }
}

impl GenerateParams {
    /// Greedy decoding of at most `max_tokens` tokens (tests and benchmarks compare these).
    pub fn greedy(max_tokens: usize) -> Self {
        Self {
            max_tokens,
            sampling: SamplingParams::greedy(),
            ..Self::default()
        }
    }

    /// Refuses settings no generation can run with.
    pub fn validate(&self) -> Result<()> {
        self.sampling.validate()?;
        if self.chunk == 0 {
            return Err(EngineError::BadSampling(
                "the prefill chunk must be at least 1 token".into(),
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub enum FinishReason {
    /// The model produced an end-of-turn / end-of-text token.
    StopToken,
    /// A stop string appeared.
    StopString,
    /// `max_tokens` were produced.
    Length,
    /// The model's context is full.
    ContextFull,
    Cancelled,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Generation {
    pub tokens: Vec<u32>,
    pub text: String,
    pub finish: FinishReason,
    pub prompt_tokens: usize,
    pub prefill: Duration,
    pub decode: Duration,
}

pub enum Event<'a> {
    Prefill(PrefillProgress),
    /// Text released for display (whole UTF-8 characters, never part of a stop string).
    Text(&'a str),
}

/// Generates after `prompt`. With an empty prompt the state's last token is re-fed to get its
/// logits (as llama.cpp's server does), so the state must not be empty.
#[tracing::instrument(level = "debug", name = "engine.generate", skip_all, fields(prompt_tokens = prompt.len(), tokens))]
pub fn generate(
    model: &Model,
    tokenizer: &Tokenizer,
    state: &mut KvState,
    prompt: &[u32],
    params: &GenerateParams,
    cancel: &CancelToken,
    on_event: &mut dyn FnMut(Event<'_>),
) -> Result<Generation> {
    let mut sampler = Sampler::new(params.sampling.clone())?;
    let started = Instant::now();
    let mut logits = if prompt.is_empty() {
        let n = state.len();
        let Some(&last) = state.tokens().last() else {
            return Err(EngineError::Invalid(
                "nothing to generate from: the state and the prompt are empty".into(),
            ));
        };
        state.truncate(n - 1);
        model.forward(&[last], state, false)?
    } else {
        let mut progress = |p: PrefillProgress| {
            on_event(Event::Prefill(p));
            !cancel.is_cancelled()
        };
        model.prefill(prompt, state, params.chunk, &mut progress)?
    };
    let prefill = started.elapsed();
    let prompt_end = state.len();

    let started = Instant::now();
    let mut tokens = Vec::new();
    let mut stream = TokenStream::new();
    let mut text = String::new();
    let mut shown = 0usize;
    let hold = params
        .stop_strings
        .iter()
        .map(|s| s.len())
        .max()
        .unwrap_or(0)
        .saturating_sub(1);
    let finish = loop {
        if cancel.is_cancelled() {
            break FinishReason::Cancelled;
        }
        if tokens.len() >= params.max_tokens {
            break FinishReason::Length;
        }
        let next = sampler.sample_tensor(&logits, state.tokens())?;
        if tokenizer.is_stop(next) {
            break FinishReason::StopToken;
        }
        if state.len() >= model.config().context_length {
            break FinishReason::ContextFull;
        }
        tokens.push(next);
        logits = model.forward(&[next], state, false)?;
        if let Some(piece) = stream.push(tokenizer, next)? {
            text.push_str(&piece);
            if let Some(cut) = find_stop(&text, &params.stop_strings, shown.saturating_sub(hold)) {
                text.truncate(cut);
                let keep = tokens_covering(tokenizer, &tokens, cut)?;
                tokens.truncate(keep);
                state.truncate(prompt_end + keep);
                if cut > shown {
                    on_event(Event::Text(&text[shown..]));
                }
                shown = text.len();
                break FinishReason::StopString;
            }
            let safe = floor_char_boundary(&text, text.len().saturating_sub(hold));
            if safe > shown {
                on_event(Event::Text(&text[shown..safe]));
                shown = safe;
            }
        }
    };
    if finish != FinishReason::StopString {
        if let Some(rest) = stream.flush(tokenizer)? {
            text.push_str(&rest);
        }
        if text.len() > shown {
            on_event(Event::Text(&text[shown..]));
        }
    }
    tracing::Span::current().record("tokens", tokens.len());
    Ok(Generation {
        tokens,
        text,
        finish,
        prompt_tokens: prompt.len(),
        prefill,
        decode: started.elapsed(),
    })
}

fn find_stop(text: &str, stops: &[String], from: usize) -> Option<usize> {
    let from = floor_char_boundary(text, from);
    stops
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| text[from..].find(s.as_str()).map(|p| p + from))
        .min()
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The fewest leading tokens whose text reaches byte `cut`.
fn tokens_covering(tokenizer: &Tokenizer, tokens: &[u32], cut: usize) -> Result<usize> {
    for k in 0..=tokens.len() {
        if tokenizer.decode(&tokens[..k])?.len() >= cut {
            return Ok(k);
        }
    }
    Ok(tokens.len())
}

/// Tokens per second, 0 when nothing was timed.
pub fn per_second(n: usize, d: Duration) -> f64 {
    let s = d.as_secs_f64();
    if s > 0.0 {
        n as f64 / s
    } else {
        0.0
    }
}
