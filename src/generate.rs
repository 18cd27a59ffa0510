//! `generate`: text in, continuation out, from an empty attention state.

use crate::error::Result;
use freeze_attn_engine::{
    generate as engine_generate, CancelToken, Event, GenerateParams, Generation, KvState, LoadedModel, Message,
    PrefillProgress,
};
use serde::{Deserialize, Serialize};

/// What to feed the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Prompt {
    /// Raw text; BOS is added if the model's metadata asks for it.
    Raw { text: String },
    /// A conversation rendered with the model's chat template, ending with the assistant header.
    Chat { messages: Vec<Message> },
}

impl Prompt {
    pub fn raw(text: impl Into<String>) -> Self {
        Prompt::Raw { text: text.into() }
    }

    /// A single user turn, with an optional system prompt.
    pub fn chat(system: Option<&str>, user: &str) -> Self {
        let mut messages = Vec::new();
        if let Some(s) = system {
            messages.push(Message::system(s));
        }
        messages.push(Message::user(user));
        Prompt::Chat { messages }
    }

    /// Token ids of the prompt for a model, as fed after an empty state.
    pub fn encode(&self, model: &LoadedModel) -> Result<Vec<u32>> {
        Ok(match self {
            Prompt::Raw { text } => model.tokenizer.encode_prompt(text)?,
            Prompt::Chat { messages } => {
                let text = model.template()?.render(messages, true)?;
                model.tokenizer.encode(&text)?
            }
        })
    }
}

/// Callbacks for a running generation.
pub struct Observer<'a> {
    pub on_text: &'a mut dyn FnMut(&str),
    pub on_progress: &'a mut dyn FnMut(PrefillProgress),
    pub cancel: CancelToken,
}

impl<'a> Observer<'a> {
    pub(crate) fn event(&mut self, e: Event<'_>) {
        match e {
            Event::Text(t) => (self.on_text)(t),
            Event::Prefill(p) => (self.on_progress)(p),
            // Not asked for by these callers.
            Event::Logprobs(_) => {}
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct GenerateOutput {
    pub prompt_tokens: Vec<u32>,
    pub generation: Generation,
    /// The attention state after the reply (prompt + generated tokens), ready to save or continue.
    #[serde(skip)]
    pub state: KvState,
}

/// Generates a continuation of `prompt` from scratch.
#[tracing::instrument(level = "info", name = "generate", skip_all)]
/// The grammar of a JSON Schema (structured outputs: `response_format` `json_schema`,
/// `generate --json-schema`); a schema that cannot be followed is one line naming the keyword
/// and where it is.
pub fn json_schema_grammar(schema: &serde_json::Value) -> Result<freeze_attn_engine::Grammar> {
    let schema =
        freeze_attn_engine::grammar::Schema::compile(schema).map_err(|e| crate::Error::Invalid(e.to_string()))?;
    Ok(freeze_attn_engine::Grammar::JsonSchema(std::sync::Arc::new(schema)))
}

pub fn generate(
    model: &LoadedModel,
    prompt: &Prompt,
    params: &GenerateParams,
    observer: &mut Observer<'_>,
) -> Result<GenerateOutput> {
    let prompt_tokens = prompt.encode(model)?;
    let mut state: KvState = model.model.new_state();
    let cancel = observer.cancel.clone();
    let generation = engine_generate(
        &model.model,
        &model.tokenizer,
        &mut state,
        &prompt_tokens,
        params,
        &cancel,
        &mut |e| observer.event(e),
    )?;
    Ok(GenerateOutput {
        prompt_tokens,
        generation,
        state,
    })
}

/// The transcript of the state a [`generate`] call ends with.
pub fn transcript_after(model: &LoadedModel, prompt: &Prompt, out: &GenerateOutput) -> Result<crate::Transcript> {
    Ok(match prompt {
        Prompt::Chat { messages } => {
            let mut m = messages.clone();
            m.push(Message::assistant(out.generation.text.clone()));
            crate::Transcript::Chat { messages: m }
        }
        Prompt::Raw { .. } => crate::Transcript::Text {
            text: model.tokenizer.decode_with_special(out.state.tokens())?,
        },
    })
}
