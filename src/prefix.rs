//! The seed's workflow: process a prefix once and save its attention state
//! ([`process_prefix`]); later, in any process, continue from it without re-processing
//! ([`generate_with_prefix`]).

use crate::error::{Error, Result};
use crate::generate::Observer;
use crate::state::{load_state, save_state, Parent, SavedState};
use crate::transcript::Transcript;
use freeze_attn_engine::chat::sync;
use freeze_attn_engine::state::StoredDType;
use freeze_attn_engine::{generate, GenerateParams, Generation, KvState, LoadedModel, Message};
use serde::Serialize;
use std::path::Path;
use std::time::{Duration, Instant};

/// What a prefix is made of.
#[derive(Debug, Clone)]
pub enum PrefixInput {
    /// Raw text (a document, the start of a story); BOS added as the model's metadata says.
    Text(String),
    /// A priming conversation, rendered with the model's chat template.
    Chat(Vec<Message>),
}

#[derive(Debug, Clone, Serialize)]
pub struct PrefixReport {
    pub saved: SavedState,
    pub tokens: usize,
    /// Tokens dropped by `max_prefix_tokens`.
    pub truncated: usize,
    pub prefill: Duration,
}

/// Processes `input` through the model once and saves its attention state to `out`.
/// `max_prefix_tokens` keeps only the first N tokens (as the seed's truncation does).
#[tracing::instrument(level = "info", name = "process_prefix", skip_all)]
pub fn process_prefix(
    model: &LoadedModel,
    input: &PrefixInput,
    max_prefix_tokens: Option<usize>,
    out: &Path,
    dtype: StoredDType,
    chunk: usize,
    observer: &mut Observer<'_>,
) -> Result<PrefixReport> {
    let (mut tokens, transcript) = match input {
        PrefixInput::Text(t) => (model.tokenizer.encode_prompt(t)?, Transcript::Text { text: t.clone() }),
        PrefixInput::Chat(m) => {
            let text = model.template()?.render(m, false)?;
            (model.tokenizer.encode(&text)?, Transcript::Chat { messages: m.clone() })
        }
    };
    if tokens.is_empty() {
        return Err(Error::Invalid("the prefix is empty".into()));
    }
    let mut truncated = 0;
    let mut transcript = transcript;
    if let Some(max) = max_prefix_tokens {
        if tokens.len() > max {
            truncated = tokens.len() - max;
            tokens.truncate(max);
            // The kept text is what the kept tokens decode to.
            transcript = Transcript::Text {
                text: model.tokenizer.decode_with_special(&tokens)?,
            };
        }
    }
    let mut state = model.model.new_state();
    let t0 = Instant::now();
    let cancel = observer.cancel.clone();
    let mut progress = |p| {
        (observer.on_progress)(p);
        !cancel.is_cancelled()
    };
    model.model.prefill(&tokens, &mut state, chunk, &mut progress)?;
    let prefill = t0.elapsed();
    let saved = save_state(model, &state, out, dtype, None, Some(&transcript))?;
    Ok(PrefixReport {
        saved,
        tokens: tokens.len(),
        truncated,
        prefill,
    })
}

/// How the prompt joins the saved prefix.
#[derive(Debug, Clone)]
pub enum Continuation {
    /// Raw text appended after the prefix tokens (tokenized on its own, no BOS).
    Text(String),
    /// A user turn: the saved conversation plus this message, rendered with the chat template
    /// and generation prompt; only the tokens past the saved state are processed.
    ChatTurn { system: Option<String>, user: String },
}

#[derive(Debug, Clone, Serialize)]
pub struct PrefixGeneration {
    pub generation: Generation,
    /// Ids fed after the saved state.
    pub prompt_tokens: Vec<u32>,
    /// Tokens of the saved state that were reused as is.
    pub reused_tokens: usize,
    pub resume: Duration,
    pub state_bytes: u64,
    /// The state after the reply, and what it grew from (to save only the new tokens).
    #[serde(skip)]
    pub state: KvState,
    #[serde(skip)]
    pub parent: Option<Parent>,
    /// The transcript of the grown state.
    pub transcript: Transcript,
}

/// Generates from the state saved at `state_path`; the file is left untouched.
#[tracing::instrument(level = "info", name = "generate_with_prefix", skip_all)]
pub fn generate_with_prefix(
    model: &LoadedModel,
    state_path: &Path,
    continuation: &Continuation,
    params: &GenerateParams,
    observer: &mut Observer<'_>,
) -> Result<PrefixGeneration> {
    let loaded = load_state(model, state_path)?;
    let resume = loaded.load_time;
    let mut state = loaded.state.clone();
    let prompt: Vec<u32> = match continuation {
        Continuation::Text(t) => model.tokenizer.encode(t)?,
        Continuation::ChatTurn { system, user } => match &loaded.transcript {
            Some(Transcript::Chat { messages }) => {
                // The saved conversation plus this turn; only what is past the state is fed.
                let mut messages = messages.clone();
                messages.push(Message::user(user.clone()));
                let target = model.template()?.render(&messages, true)?;
                let plan = sync(&model.tokenizer, state.tokens(), &target)?;
                state.truncate(plan.keep);
                plan.append
            }
            // A text prefix (a document, a story): the turn is rendered on its own and follows it.
            Some(Transcript::Text { .. }) | None => {
                let mut messages = Vec::new();
                if let Some(s) = system {
                    messages.push(Message::system(s.clone()));
                }
                messages.push(Message::user(user.clone()));
                let text = model.template()?.render(&messages, true)?;
                // The state already begins the sequence: no second BOS in the middle.
                let bos = model
                    .tokenizer
                    .bos()
                    .and_then(|b| model.tokenizer.token_text(b))
                    .unwrap_or_default();
                let text = match text.strip_prefix(bos.as_str()) {
                    Some(rest) if !bos.is_empty() => rest.to_string(),
                    _ => text,
                };
                model.tokenizer.encode(&text)?
            }
        },
    };
    let reused = state.len();
    let cancel = observer.cancel.clone();
    let generation = generate(
        &model.model,
        &model.tokenizer,
        &mut state,
        &prompt,
        params,
        &cancel,
        &mut |e| observer.event(e),
    )?;
    let transcript = match (&loaded.transcript, continuation) {
        (Some(Transcript::Chat { messages }), Continuation::ChatTurn { user, .. }) => {
            let mut m = messages.clone();
            m.push(Message::user(user.clone()));
            m.push(Message::assistant(generation.text.clone()));
            Transcript::Chat { messages: m }
        }
        _ => Transcript::Text {
            text: model.tokenizer.decode_with_special(state.tokens())?,
        },
    };
    // Saving again writes only what is past the part of the file that was kept.
    let parent = loaded.as_parent(loaded.chain_len).filter(|p| p.len <= reused);
    Ok(PrefixGeneration {
        generation,
        prompt_tokens: prompt,
        reused_tokens: reused,
        resume,
        state_bytes: loaded.file_bytes,
        state,
        parent,
        transcript,
    })
}

/// Saves the state a [`generate_with_prefix`] call grew; only the new tokens are written when
/// the loaded state is still its prefix.
pub fn save_continuation(
    model: &LoadedModel,
    out: &PrefixGeneration,
    path: &Path,
    dtype: StoredDType,
) -> Result<SavedState> {
    save_state(
        model,
        &out.state,
        path,
        dtype,
        out.parent.as_ref(),
        Some(&out.transcript),
    )
}
