//! Completions as an OpenAI-style server asks for them: a whole conversation (or text) arrives
//! with every request, and the longest token prefix it shares with any state the session knows
//! (warm in memory, or any node of the library for this model, found through the prefix index)
//! is thawed instead of processed. What a request leaves behind is kept as a cache node (hidden,
//! evicted least recently used under a byte quota) or, when asked, frozen as a named node.
//!
//! Exactness: the prompt's tokens are always the canonical encoding of the whole request (never
//! "whatever the cached state holds"), so a request processes the same tokens with and without
//! reuse; only where processing starts differs. The live state of the session (the app's) is
//! never touched.

use super::Session;
use crate::error::{Error, Result};
use crate::freeze::{freeze, Base, FreezeRequest};
use crate::live::Live;
use crate::transcript::Transcript;
use freeze_attn_engine::chat::sync;
use freeze_attn_engine::grammar::Schema;
use freeze_attn_engine::tools::{may_be_tool_calls, parse_tool_calls, CallFormat};
use freeze_attn_engine::{
    generate, CancelToken, EngineError, Event, FinishReason, GenerateParams, Grammar, Message, TokenLogprob, Tokenizer,
    ToolCall,
};
use freeze_attn_library::{DeleteMode, NodeId, NodeKind};
use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;

/// Most alternatives one request may ask for.
pub const MAX_CHOICES: usize = 16;

/// Most prompts one request may list (completions' `prompt` as a list, as evaluation harnesses
/// batch them).
pub const MAX_PROMPTS: usize = 128;

/// Most alternatives per generated token a request may ask log-probabilities for.
pub use freeze_attn_engine::MAX_TOP_LOGPROBS;

/// What is completed: a conversation (rendered with the model's chat template), raw text, or
/// token ids (used as they are: no BOS added).
#[derive(Debug, Clone)]
pub enum CompletionInput {
    Chat(Vec<Message>),
    Text(String),
    Tokens(Vec<u32>),
}

/// Most tools one request may offer.
pub const MAX_TOOLS: usize = 128;

/// Whether the model calls a tool (OpenAI's `tool_choice`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    /// The model decides: its reply is read for calls.
    Auto,
    /// The model sees the tools; its reply is text.
    None,
    /// The reply is one call to one of the tools (generation constrained to it).
    Required,
    /// The reply is one call to this tool.
    Function(String),
}

/// Function calling: the tools offered to the model, and whether its reply is read for calls.
#[derive(Debug, Clone)]
pub struct Tools {
    /// An OpenAI tool list as JSON text; the chat template sees it as sent (key order kept).
    json: String,
    names: Vec<String>,
    choice: ToolChoice,
}

impl Tools {
    /// Checks an OpenAI tool list (`[{"type": "function", "function": {"name": …, "description":
    /// …, "parameters": {…}}}]`): at most [`MAX_TOOLS`], each a function with a unique name of
    /// 1-64 letters, digits, `_`, `-` or `.`.
    pub fn new(json: &str) -> Result<Self> {
        let bad = |msg: String| Error::Invalid(format!("tools: {msg}"));
        let list: Vec<serde_json::Value> =
            serde_json::from_str(json).map_err(|e| bad(format!("not a list of tools ({e})")))?;
        if list.is_empty() || list.len() > MAX_TOOLS {
            return Err(bad(format!("offer 1 to {MAX_TOOLS} tools, not {}", list.len())));
        }
        let mut names = Vec::with_capacity(list.len());
        for (i, t) in list.iter().enumerate() {
            if t.get("type").and_then(|v| v.as_str()) != Some("function") {
                return Err(bad(format!("tool {i} is not of type \"function\"")));
            }
            let name = t
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(|n| n.as_str())
                .ok_or_else(|| bad(format!("tool {i} has no function.name")))?;
            let valid = (1..=64).contains(&name.len())
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
            if !valid {
                return Err(bad(format!(
                    "tool {i}'s name {name:?} must be 1-64 letters, digits, _, - or ."
                )));
            }
            if names.iter().any(|n| n == name) {
                return Err(bad(format!("two tools are named {name:?}")));
            }
            names.push(name.to_string());
        }
        Ok(Self {
            json: json.to_string(),
            names,
            choice: ToolChoice::Auto,
        })
    }

    /// Sets `tool_choice`; a named function must be one of the tools.
    pub fn with_choice(mut self, choice: ToolChoice) -> Result<Self> {
        if let ToolChoice::Function(name) = &choice {
            if !self.names.contains(name) {
                return Err(Error::Invalid(format!(
                    "tool_choice names the function {name:?}, which is not among the tools"
                )));
            }
        }
        self.choice = choice;
        Ok(self)
    }

    fn reads_calls(&self) -> bool {
        self.choice != ToolChoice::None
    }

    /// The grammar of a forced call (`tool_choice` `required` or a function) in the format
    /// `template_source` teaches; `None` when the model decides.
    fn forced_call(&self, template_source: &str) -> Result<Option<Grammar>> {
        let only = match &self.choice {
            ToolChoice::Auto | ToolChoice::None => return Ok(None),
            ToolChoice::Required => None,
            ToolChoice::Function(name) => Some(name.as_str()),
        };
        let list: Vec<serde_json::Value> =
            serde_json::from_str(&self.json).map_err(|e| Error::Invalid(e.to_string()))?;
        let tools: Vec<(&str, Option<&serde_json::Value>)> = list
            .iter()
            .zip(&self.names)
            .filter(|(_, name)| only.is_none_or(|o| o == name.as_str()))
            .map(|(t, name)| (name.as_str(), t["function"].get("parameters").filter(|p| !p.is_null())))
            .collect();
        let format = CallFormat::of(template_source);
        let (before, after) = format.around();
        let schema = Schema::tool_call(&tools, format.arguments_key(), before, after)
            .map_err(|e| Error::Invalid(format!("tool_choice forces a call, but {e}")))?;
        Ok(Some(Grammar::JsonSchema(Arc::new(schema))))
    }

    /// The calls a whole reply consists of (`None`: the reply is text).
    fn calls_in(&self, text: &str) -> Option<Vec<ToolCall>> {
        if !self.reads_calls() {
            return None;
        }
        let names: Vec<&str> = self.names.iter().map(String::as_str).collect();
        let calls = parse_tool_calls(text, &names)?;
        Some(
            calls
                .into_iter()
                .map(|c| ToolCall {
                    id: call_id(),
                    name: c.name,
                    arguments: c.arguments,
                })
                .collect(),
        )
    }
}

/// One request.
#[derive(Debug, Clone)]
pub struct CompletionRequest {
    pub input: CompletionInput,
    /// Function calling (a chat only).
    pub tools: Option<Tools>,
    /// `None`: generate until the context is full or the model stops.
    pub max_tokens: Option<usize>,
    pub params: GenerateParams,
    /// Alternatives from the one prompt state (seeds `seed`, `seed + 1`, …).
    pub n: usize,
    /// A node (id or name) the input is appended after.
    pub state: Option<String>,
    /// Save the result (the first alternative) as a node with this name: a child of `state`,
    /// or top-level.
    pub freeze: Option<String>,
    /// Keep the result as a cache node, for reuse by later requests.
    pub cache: bool,
    /// Return the prompt (text or tokens, not a chat) with the completion; with
    /// `params.logprobs`, each prompt token scored given those before it (the prompt is then
    /// processed from its start: saved states hold no log-probabilities). With `echo`,
    /// `max_tokens` may be 0: the prompt is scored and nothing is generated.
    pub echo: bool,
}

/// One generated alternative.
#[derive(Debug, Clone, Serialize)]
pub struct Choice {
    pub index: usize,
    /// The reply; empty when it was function calls.
    pub text: String,
    /// The functions the model called (with `tools`): the whole reply, read as calls.
    pub tool_calls: Vec<ToolCall>,
    pub tokens: usize,
    pub finish: FinishReason,
    /// With `params.logprobs`: one per generated token.
    pub logprobs: Vec<Logprob>,
}

/// A token with its log-probability under the model (see [`TokenLogprob`]); for a generated
/// token, the most likely tokens at its step in `top` (most likely first).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Logprob {
    /// The token's text (a token inside a UTF-8 character shows U+FFFD; `bytes` has its bytes).
    pub token: String,
    pub bytes: Vec<u8>,
    pub logprob: f32,
    pub top: Vec<Logprob>,
}

impl Logprob {
    fn of(tokenizer: &Tokenizer, id: u32, logprob: f32, top: Vec<Logprob>) -> Self {
        let bytes = tokenizer.token_bytes(id).unwrap_or_default();
        Self {
            token: String::from_utf8_lossy(&bytes).into_owned(),
            bytes,
            logprob,
            top,
        }
    }

    fn from_engine(tokenizer: &Tokenizer, l: &TokenLogprob) -> Self {
        let top = l
            .top
            .iter()
            .map(|&(id, lp)| Self::of(tokenizer, id, lp, Vec::new()))
            .collect();
        Self::of(tokenizer, l.token, l.logprob, top)
    }
}

/// A prompt token and, after the first, its log-probability given the tokens before it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PromptLogprob {
    pub token: String,
    pub bytes: Vec<u8>,
    /// `None` for the first token: nothing comes before it.
    pub logprob: Option<f32>,
    pub top: Vec<Logprob>,
    /// Where the token starts in the echoed text, in characters (a BOS the model adds, which
    /// is not in the text, starts at 0 and takes no room).
    pub text_offset: usize,
}

/// The prompt returned with a completion (`echo`).
#[derive(Debug, Clone, Serialize)]
pub struct Echo {
    pub text: String,
    /// With `logprobs`: every prompt token.
    pub logprobs: Option<Vec<PromptLogprob>>,
}

/// What a completion streams for alternative `index`: text as it is released, and (when asked
/// for) the log-probabilities of the tokens that text completes, just before it.
pub enum Streamed<'a> {
    Text(&'a str),
    Logprobs(Vec<Logprob>),
}

/// The outcome of a request.
#[derive(Debug, Clone, Serialize)]
pub struct Completion {
    pub choices: Vec<Choice>,
    /// Tokens of the whole prompt (a `state`'s tokens included).
    pub prompt_tokens: usize,
    /// Prompt tokens resumed from a saved state rather than processed.
    pub cached_tokens: usize,
    /// The node the request resumed from, if any.
    pub resumed_from: Option<NodeId>,
    /// The node frozen on request (`freeze`).
    pub frozen: Option<NodeId>,
    /// The cache node kept of this request.
    pub cached_as: Option<NodeId>,
    pub prefill_ms: f64,
    /// With `echo`: the prompt.
    pub echo: Option<Echo>,
}

impl Session {
    /// Completes `req` for each of `inputs` in turn (a list of prompts, `req.input` unused):
    /// choice `i` of input `k` has index `k * n + i`, in the results and in `on_stream`. Each
    /// input is a request of its own (its own prefix reuse and cache node); the first error
    /// ends the list. `freeze` would name one node for several results, so it is refused.
    pub fn complete_each(
        &mut self,
        mut req: CompletionRequest,
        inputs: Vec<CompletionInput>,
        cancel: &CancelToken,
        on_stream: &mut dyn FnMut(usize, Streamed<'_>),
    ) -> Result<Vec<Completion>> {
        if inputs.is_empty() || inputs.len() > MAX_PROMPTS {
            return Err(Error::Invalid(format!(
                "a request lists 1 to {MAX_PROMPTS} prompts, not {}",
                inputs.len()
            )));
        }
        if inputs.len() > 1 && req.freeze.is_some() {
            return Err(Error::Invalid(
                "freeze names one node: send one prompt per request to freeze it".into(),
            ));
        }
        let mut out = Vec::with_capacity(inputs.len());
        for (k, input) in inputs.into_iter().enumerate() {
            if k > 0 && cancel.is_cancelled() {
                break;
            }
            req.input = input;
            let base = k * req.n;
            let mut c = self.complete(&req, cancel, &mut |i, piece| on_stream(base + i, piece))?;
            for ch in &mut c.choices {
                ch.index += base;
            }
            out.push(c);
        }
        Ok(out)
    }

    /// Completes a request, reusing the longest saved prefix. `on_stream(index, piece)` streams
    /// each alternative's text (and log-probabilities); `cancel` stops generation (what was
    /// generated is returned).
    #[tracing::instrument(level = "info", name = "session.complete", skip_all, fields(prompt_tokens, cached_tokens, n = req.n))]
    pub fn complete(
        &mut self,
        req: &CompletionRequest,
        cancel: &CancelToken,
        on_stream: &mut dyn FnMut(usize, Streamed<'_>),
    ) -> Result<Completion> {
        if req.n == 0 || req.n > MAX_CHOICES {
            return Err(Error::Invalid(format!("n must be 1 to {MAX_CHOICES}, not {}", req.n)));
        }
        req.params.validate()?;
        if cancel.is_cancelled() {
            return Err(Error::Engine(EngineError::Cancelled));
        }
        let started = Instant::now();
        let base = match &req.state {
            Some(spec) => {
                let id = crate::tree::resolve(&self.library, spec)?;
                Some((id, self.warm_state(id)?))
            }
            None => None,
        };
        let base_node = base.as_ref().map(|(id, l)| (*id, l.kind));
        if req.echo && (base.is_some() || matches!(req.input, CompletionInput::Chat(_))) {
            return Err(Error::Invalid(
                "echo returns a prompt of text or tokens sent whole: not a chat, not after a state".into(),
            ));
        }
        if req.max_tokens == Some(0) && (!req.echo || req.freeze.is_some()) {
            return Err(Error::Invalid(
                "max_tokens 0 (nothing generated) is for scoring a prompt with echo, and saves nothing".into(),
            ));
        }
        if let Some(name) = &req.freeze {
            self.library.check_name_free(base_node.map(|b| b.0), name)?;
        }
        let (prompt, transcript) = self.request_tokens(&req.input, req.tools.as_ref(), base.as_ref().map(|b| &b.1))?;
        if prompt.is_empty() {
            return Err(Error::Invalid("the prompt is empty".into()));
        }
        let context = self.model.model.config().context_length;
        if prompt.len() > context {
            // (Also with `max_tokens` 0, where no room for a reply is asked.)
            return Err(Error::Engine(EngineError::ContextOverflow {
                needed: prompt.len(),
                context,
            }));
        }
        let room = context - prompt.len();
        let max_tokens = match req.max_tokens {
            Some(m) if m > room => {
                return Err(Error::Engine(EngineError::ContextOverflow {
                    needed: prompt.len() + m,
                    context,
                }))
            }
            Some(m) => m,
            None if room == 0 => {
                return Err(Error::Engine(EngineError::ContextOverflow {
                    needed: prompt.len() + 1,
                    context,
                }))
            }
            None => room,
        };
        let mut params = req.params.clone();
        params.max_tokens = max_tokens;
        if let Some(forced) = req
            .tools
            .as_ref()
            .map(|t| t.forced_call(self.model.template()?.source()))
            .transpose()?
            .flatten()
        {
            if params.grammar.is_some() {
                return Err(Error::Invalid(
                    "response_format and a forced tool call (tool_choice \"required\" or a function) do not combine"
                        .into(),
                ));
            }
            params.grammar = Some(forced);
        }

        // Resume from the longest shared prefix (at least one token is left to process, for
        // its logits); a prompt to score is processed whole.
        let scoring = req.echo && req.params.logprobs.is_some();
        let (mut live, resumed_from) = if scoring {
            (Live::empty(&self.model, NodeKind::Cache, Transcript::default()), None)
        } else {
            self.longest_saved_prefix(&prompt, base)?
        };
        let keep = live
            .state
            .tokens()
            .iter()
            .zip(&prompt)
            .take_while(|(a, b)| a == b)
            .count();
        let keep = keep.min(prompt.len() - 1);
        live.truncate(keep);
        let mut rest = &prompt[keep..];
        tracing::Span::current()
            .record("prompt_tokens", prompt.len())
            .record("cached_tokens", keep);
        let t_score = Instant::now();
        let echo = if req.echo {
            let scores = match params.logprobs {
                Some(k) => {
                    let s = freeze_attn_engine::score(&self.model.model, &mut live.state, &prompt, k, cancel)?;
                    rest = &prompt[prompt.len() - 1..];
                    Some(s)
                }
                None => None,
            };
            Some(self.echo(&req.input, &prompt, scores.as_deref())?)
        } else {
            None
        };
        let score_ms = t_score.elapsed().as_secs_f64() * 1000.0;
        if max_tokens == 0 {
            return Ok(Completion {
                choices: (0..req.n)
                    .map(|index| Choice {
                        index,
                        text: String::new(),
                        tool_calls: Vec::new(),
                        tokens: 0,
                        finish: FinishReason::Length,
                        logprobs: Vec::new(),
                    })
                    .collect(),
                prompt_tokens: prompt.len(),
                cached_tokens: keep,
                resumed_from,
                frozen: None,
                cached_as: None,
                prefill_ms: score_ms,
                echo,
            });
        }

        let mut states = Vec::with_capacity(req.n);
        let mut choices = Vec::with_capacity(req.n);
        let tokenizer = &self.model.tokenizer;
        let prefill_ms;
        let tools = req.tools.as_ref();
        if req.n == 1 {
            let mut hold = Hold::new(tools);
            let g = generate(
                &self.model.model,
                &self.model.tokenizer,
                &mut live.state,
                rest,
                &params,
                cancel,
                &mut |e| hold.relay(tokenizer, 0, e, on_stream),
            )?;
            prefill_ms = score_ms + g.prefill.as_secs_f64() * 1000.0;
            choices.push(hold.finish(tokenizer, 0, g, on_stream));
            states.push(live);
        } else {
            // The prompt once; every alternative forks from the state before its last token.
            let t0 = Instant::now();
            let (head, last) = rest.split_at(rest.len() - 1);
            if !head.is_empty() {
                self.model
                    .model
                    .prefill(head, &mut live.state, params.chunk, &mut |_| !cancel.is_cancelled())?;
            }
            prefill_ms = score_ms + t0.elapsed().as_secs_f64() * 1000.0;
            for i in 0..req.n {
                let mut p = params.clone();
                p.sampling.seed = params.sampling.seed.wrapping_add(i as u64);
                let mut alt = live.fork();
                let mut hold = Hold::new(tools);
                let g = generate(
                    &self.model.model,
                    &self.model.tokenizer,
                    &mut alt.state,
                    last,
                    &p,
                    cancel,
                    &mut |e| hold.relay(tokenizer, i, e, on_stream),
                )?;
                choices.push(hold.finish(tokenizer, i, g, on_stream));
                states.push(alt);
            }
        }

        let mut first = states.swap_remove(0);
        first.transcript = finish_transcript(transcript, &choices[0]);
        let mut out = Completion {
            choices,
            prompt_tokens: prompt.len(),
            cached_tokens: keep,
            resumed_from,
            frozen: None,
            cached_as: None,
            prefill_ms,
            echo,
        };
        if let Some(r) = resumed_from {
            // Another process may have evicted or deleted it meanwhile: the state was in memory.
            if let Err(e) = self.library.touch_node(r) {
                tracing::debug!(node = %r, error = %e, "the resumed node is gone");
                self.warm.remove(r);
            }
        }
        if let Some(name) = &req.freeze {
            // The kind of the node it continues, else what the transcript is.
            let kind = match (base_node, &first.transcript) {
                (Some((_, k)), _) if k != NodeKind::Cache => k,
                (_, Transcript::Chat { .. }) => NodeKind::Chat,
                (_, Transcript::Text { .. }) => NodeKind::Story,
            };
            let id = self.keep_state(&mut first, name, kind, base_node.map(|b| b.0))?;
            out.frozen = Some(id);
        } else if req.cache && !matches!(out.choices[0].finish, FinishReason::Cancelled) {
            let name = format!("cache {}", cache_stamp());
            match self.keep_state(&mut first, &name, NodeKind::Cache, None) {
                Ok(id) => {
                    out.cached_as = Some(id);
                    self.evict_cache(id)?;
                }
                // A cache entry is an optimisation: failing to write one (a full disk) must not
                // fail the request that already has its answer.
                Err(e) => tracing::warn!(error = %e, "could not keep the request's state as a cache node"),
            }
        }
        tracing::debug!(elapsed_ms = started.elapsed().as_millis() as u64, "complete");
        Ok(out)
    }

    /// Node `id` from memory when it is warm, else thawed from disk (and then kept warm).
    fn warm_state(&mut self, id: NodeId) -> Result<Live> {
        if let Some(w) = self.warm.get(id) {
            return Ok(w.fork());
        }
        let live = crate::thaw::thaw(&self.library, &self.model, id)?;
        self.warm.put(id, live.fork());
        Ok(live)
    }

    /// The request's whole prompt as tokens, and the transcript it extends.
    fn request_tokens(
        &self,
        input: &CompletionInput,
        tools: Option<&Tools>,
        base: Option<&Live>,
    ) -> Result<(Vec<u32>, Transcript)> {
        let tok = &self.model.tokenizer;
        let tools_json = match (tools, input) {
            (None, _) => None,
            (Some(_), CompletionInput::Text(_) | CompletionInput::Tokens(_)) => {
                return Err(Error::Invalid(
                    "tools are offered in a chat, not to a raw prompt".into(),
                ))
            }
            (Some(t), CompletionInput::Chat(_)) => {
                if !self.model.template()?.supports_tools() {
                    return Err(Error::Invalid(
                        "this model's chat template does not show tools to the model: give one that does \
                         (freeze-attn serve --chat-template FILE; for ChatML models such as SmolLM2 or Qwen, \
                         assets/templates/chatml-tools.jinja)"
                            .into(),
                    ));
                }
                Some(t.json.as_str())
            }
        };
        let base_tokens: &[u32] = base.map(|b| b.state.tokens()).unwrap_or(&[]);
        let base_transcript = base.map(|b| b.transcript.clone());
        let bos_text = || {
            if tok.add_bos() {
                tok.bos().and_then(|b| tok.token_text(b)).unwrap_or_default()
            } else {
                String::new()
            }
        };
        let appended = |text: &str| -> Result<Vec<u32>> {
            let mut all = base_tokens.to_vec();
            all.extend(tok.encode(text)?);
            Ok(all)
        };
        Ok(match (input, base_transcript) {
            (CompletionInput::Chat(messages), None | Some(Transcript::Chat { .. })) => {
                let mut all = match base.map(|b| &b.transcript) {
                    Some(Transcript::Chat { messages }) => messages.clone(),
                    _ => Vec::new(),
                };
                all.extend(messages.iter().cloned());
                let target = self.model.template()?.render_with_tools(&all, tools_json, true)?;
                let plan = sync(tok, base_tokens, &target)?;
                let mut tokens = base_tokens[..plan.keep].to_vec();
                tokens.extend(plan.append);
                (tokens, Transcript::Chat { messages: all })
            }
            // Questions to a text (a document): the turn follows the text, without a second BOS.
            (CompletionInput::Chat(messages), Some(Transcript::Text { text })) => {
                let turn = self.model.template()?.render_with_tools(messages, tools_json, true)?;
                let bos = bos_text();
                let turn = match turn.strip_prefix(bos.as_str()) {
                    Some(rest) if !bos.is_empty() && !base_tokens.is_empty() => rest.to_string(),
                    _ => turn,
                };
                (
                    appended(&turn)?,
                    Transcript::Text {
                        text: format!("{text}{turn}"),
                    },
                )
            }
            (CompletionInput::Text(prompt), None | Some(Transcript::Text { .. })) => {
                let before = match base.map(|b| &b.transcript) {
                    Some(Transcript::Text { text }) => text.clone(),
                    _ => String::new(),
                };
                let full = format!("{before}{prompt}");
                let plan = sync(tok, base_tokens, &format!("{}{full}", bos_text()))?;
                let mut tokens = base_tokens[..plan.keep].to_vec();
                tokens.extend(plan.append);
                (tokens, Transcript::Text { text: full })
            }
            (CompletionInput::Tokens(ids), None | Some(Transcript::Text { .. })) => {
                let vocab = self.model.model.config().vocab_size;
                if let Some(bad) = ids.iter().find(|&&t| t as usize >= vocab) {
                    return Err(Error::Invalid(format!(
                        "token id {bad} is outside the model's vocabulary (0 to {})",
                        vocab - 1
                    )));
                }
                let before = match base.map(|b| &b.transcript) {
                    Some(Transcript::Text { text }) => text.clone(),
                    _ => String::new(),
                };
                let mut tokens = base_tokens.to_vec();
                tokens.extend_from_slice(ids);
                (
                    tokens,
                    Transcript::Text {
                        text: format!("{before}{}", tok.decode(ids)?),
                    },
                )
            }
            // A conversation goes on with messages: raw text has no place in its transcript.
            (CompletionInput::Text(_) | CompletionInput::Tokens(_), Some(Transcript::Chat { .. })) => {
                return Err(Error::Invalid(
                    "this state is a conversation: continue it with chat messages (/v1/chat/completions)".into(),
                ))
            }
        })
    }

    /// The prompt returned with a completion: its text, and each token with its scores (the
    /// first has none).
    fn echo(&self, input: &CompletionInput, prompt: &[u32], scores: Option<&[TokenLogprob]>) -> Result<Echo> {
        let tok = &self.model.tokenizer;
        let (text, added_bos) = match input {
            CompletionInput::Text(t) => (
                t.clone(),
                tok.add_bos() && tok.bos().is_some() && tok.bos() == prompt.first().copied(),
            ),
            CompletionInput::Tokens(ids) => (tok.decode(ids)?, false),
            CompletionInput::Chat(_) => return Err(Error::Invalid("echo does not return a chat".into())),
        };
        let logprobs = scores.map(|scores| {
            let mut at = 0;
            prompt
                .iter()
                .enumerate()
                .map(|(i, &id)| {
                    let (logprob, top) = match i.checked_sub(1).and_then(|j| scores.get(j)) {
                        Some(s) => {
                            let l = Logprob::from_engine(tok, s);
                            (Some(l.logprob), l.top)
                        }
                        None => (None, Vec::new()),
                    };
                    let Logprob { token, bytes, .. } = Logprob::of(tok, id, 0.0, Vec::new());
                    let text_offset = at;
                    if !(i == 0 && added_bos) {
                        at += token.chars().count();
                    }
                    PromptLogprob {
                        token,
                        bytes,
                        logprob,
                        top,
                        text_offset,
                    }
                })
                .collect()
        });
        Ok(Echo { text, logprobs })
    }

    /// The state sharing the longest prefix with `prompt`: the `state` the request names, a warm
    /// state, or any indexed node of this model (nodes not indexed yet are indexed first).
    fn longest_saved_prefix(&mut self, prompt: &[u32], base: Option<(NodeId, Live)>) -> Result<(Live, Option<NodeId>)> {
        let lcp = |l: &Live| l.state.tokens().iter().zip(prompt).take_while(|(a, b)| a == b).count();
        let mut best: Option<(usize, NodeId, Option<Live>)> = base.map(|(id, l)| (lcp(&l), id, Some(l)));
        let better = |best: &Option<(usize, NodeId, Option<Live>)>, n: usize| best.as_ref().is_none_or(|b| n > b.0);
        if let Some((id, n)) = self.warm.longest_prefix(prompt) {
            if better(&best, n) {
                best = Some((n, id, None));
            }
        }
        self.index_new_nodes()?;
        if let Some(hit) = self.library.longest_prefix(self.model.fingerprint(), prompt)? {
            if better(&best, hit.tokens) {
                // The index counts whole blocks; the thawed state may share more (or, after a
                // hash collision, less: its tokens decide).
                match self.warm_state(hit.node) {
                    Ok(l) => {
                        let n = lcp(&l);
                        if better(&best, n) {
                            best = Some((n, hit.node, Some(l)));
                        }
                    }
                    // A damaged node is skipped, not fatal: the request is processed without it.
                    Err(e) => {
                        tracing::warn!(node = %hit.node, error = %e, "skipping a prefix match that does not thaw")
                    }
                }
            }
        }
        Ok(match best {
            Some((n, id, l)) if n > 0 => {
                let live = match l {
                    Some(l) => l,
                    None => self.warm_state(id)?,
                };
                (live, Some(id))
            }
            _ => (Live::empty(&self.model, NodeKind::Cache, Transcript::default()), None),
        })
    }

    /// Adds the nodes of this model that the prefix index does not know yet (made before it
    /// existed, forked, imported, or made by another process).
    fn index_new_nodes(&mut self) -> Result<()> {
        let fp = self.model.fingerprint().clone();
        for (id, _) in self.library.unindexed_nodes(&fp)? {
            let node = match self.library.node(id) {
                Ok(n) => n,
                Err(_) => continue, // deleted meanwhile
            };
            match crate::thaw::node_tokens(&self.library, &node) {
                Ok(tokens) => self.library.index_prefix(id, &fp, &tokens)?,
                // Indexed as empty, so a damaged node is not re-read by every request; `states
                // verify` reports it.
                Err(e) => {
                    tracing::warn!(node = %id, error = %e, "a node's tokens could not be read; not indexed");
                    self.library.index_prefix(id, &fp, &[])?;
                }
            }
        }
        Ok(())
    }

    /// Freezes `live` as a node and makes it known to the index and the warm states.
    fn keep_state(&mut self, live: &mut Live, name: &str, kind: NodeKind, parent: Option<NodeId>) -> Result<NodeId> {
        let req = FreezeRequest {
            name,
            kind,
            parent,
            transcript: &live.transcript,
            base: live.base.as_ref().map(|b| (b, live.shared)),
            dtype: self.dtype,
        };
        let id = freeze(&self.library, &self.model, &live.state, &req)?;
        self.library
            .index_prefix(id, self.model.fingerprint(), live.state.tokens())?;
        let node = self.library.node(id)?;
        live.kind = kind;
        live.shared = live.state.len();
        live.base = Some(Base {
            node: id,
            tip: node.tip,
            token_count: node.token_count as usize,
        });
        self.warm.put(id, live.fork());
        Ok(id)
    }

    /// Evicts cache nodes, least recently used first, until they use at most the session's cache
    /// quota; `keep` (the one just made) goes last. Files are reclaimed by a gc afterwards.
    fn evict_cache(&mut self, keep: NodeId) -> Result<()> {
        let Some(quota) = self.cache_quota else { return Ok(()) };
        // Every request makes a cache node: the sum of all segment sizes (one query) bounds the
        // cache's share, so the forest is walked only when that could pass the quota.
        if self.library.total_segment_bytes()? <= quota || self.library.cache_bytes()? <= quota {
            return Ok(());
        }
        let mut evicted = 0;
        for entry in self.library.cache_entries(self.model.fingerprint())? {
            if entry.node == keep {
                continue;
            }
            self.library.delete_node(entry.node, DeleteMode::Subtree)?;
            self.warm.remove(entry.node);
            evicted += 1;
            if self.library.cache_bytes()? <= quota {
                break;
            }
        }
        if evicted > 0 {
            match self.library.gc() {
                Ok(r) => tracing::info!(evicted, bytes_freed = r.bytes_freed, "evicted cache nodes"),
                Err(e) => tracing::warn!(error = %e, "cache eviction: gc did not run"),
            }
        }
        Ok(())
    }
}

/// The transcript after the first alternative's reply.
fn finish_transcript(t: Transcript, choice: &Choice) -> Transcript {
    match t {
        Transcript::Chat { mut messages } => {
            let mut reply = Message::assistant(&choice.text);
            reply.tool_calls = choice.tool_calls.clone();
            messages.push(reply);
            Transcript::Chat { messages }
        }
        Transcript::Text { text: before } => Transcript::Text {
            text: format!("{before}{}", choice.text),
        },
    }
}

/// An id for a function call, unique in this process and unlikely to repeat across restarts.
fn call_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    format!("call_{ns:x}{:04x}", NEXT.fetch_add(1, Ordering::Relaxed) & 0xffff)
}

/// A name for a cache node that no other can have: time and a process-wide counter.
fn cache_stamp() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!("{ms}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

impl Session {
    /// Processes a text or a priming conversation once and saves it as a node named `name`
    /// (top-level, or under `parent`), reporting progress; the live state is not touched.
    #[tracing::instrument(level = "info", name = "session.create_state", skip_all, fields(tokens))]
    pub fn create_state(
        &mut self,
        name: &str,
        input: &crate::prefix::PrefixInput,
        parent: Option<NodeId>,
        cancel: &CancelToken,
        on_progress: &mut dyn FnMut(freeze_attn_engine::PrefillProgress),
    ) -> Result<NodeId> {
        use crate::prefix::PrefixInput;
        self.library.check_name_free(parent, name)?;
        let (tokens, transcript, kind) = match input {
            PrefixInput::Text(t) => (
                self.model.tokenizer.encode_prompt(t)?,
                Transcript::Text { text: t.clone() },
                NodeKind::Document,
            ),
            PrefixInput::Chat(m) => {
                let text = self.model.template()?.render(m, false)?;
                (
                    self.model.tokenizer.encode(&text)?,
                    Transcript::Chat { messages: m.clone() },
                    NodeKind::Personality,
                )
            }
        };
        if tokens.is_empty() {
            return Err(Error::Invalid("the text is empty".into()));
        }
        let context = self.model.model.config().context_length;
        if tokens.len() >= context {
            return Err(Error::Engine(EngineError::ContextOverflow {
                needed: tokens.len(),
                context,
            }));
        }
        tracing::Span::current().record("tokens", tokens.len());
        let mut live = Live::empty(&self.model, kind, transcript);
        self.model
            .model
            .prefill(&tokens, &mut live.state, self.params.chunk, &mut |p| {
                on_progress(p);
                !cancel.is_cancelled()
            })?;
        if cancel.is_cancelled() || live.state.len() < tokens.len() {
            return Err(Error::Engine(EngineError::Cancelled));
        }
        self.keep_state(&mut live, name, kind, parent)
    }
}

/// Streams one alternative, holding its text back while it may still be function calls (with
/// tools offered, a reply that turns out to be calls streams no text: its calls come with the
/// outcome). Log-probabilities pass straight on; they belong to the next text that is sent.
struct Hold<'a> {
    tools: Option<&'a Tools>,
    held: String,
    /// The reply is text: it streams as it comes.
    text: bool,
}

impl<'a> Hold<'a> {
    fn new(tools: Option<&'a Tools>) -> Self {
        Self {
            tools,
            held: String::new(),
            text: !tools.is_some_and(|t| t.reads_calls()),
        }
    }

    fn relay(
        &mut self,
        tokenizer: &Tokenizer,
        index: usize,
        e: Event<'_>,
        on_stream: &mut dyn FnMut(usize, Streamed<'_>),
    ) {
        match e {
            Event::Text(t) if self.text => on_stream(index, Streamed::Text(t)),
            Event::Text(t) => {
                self.held.push_str(t);
                if !may_be_tool_calls(&self.held) {
                    self.text = true;
                    on_stream(index, Streamed::Text(&std::mem::take(&mut self.held)));
                }
            }
            Event::Logprobs(l) => on_stream(
                index,
                Streamed::Logprobs(l.iter().map(|l| Logprob::from_engine(tokenizer, l)).collect()),
            ),
            Event::Prefill(_) => {}
        }
    }

    /// The alternative's outcome: its calls when the whole reply is calls, else its text (what
    /// was held back is sent now).
    fn finish(
        self,
        tokenizer: &Tokenizer,
        index: usize,
        g: freeze_attn_engine::Generation,
        on_stream: &mut dyn FnMut(usize, Streamed<'_>),
    ) -> Choice {
        let calls = match (self.text, self.tools) {
            (false, Some(t)) => t.calls_in(&g.text),
            _ => None,
        };
        if calls.is_none() && !self.held.is_empty() {
            on_stream(index, Streamed::Text(&self.held));
        }
        Choice {
            index,
            logprobs: g.logprobs.iter().map(|l| Logprob::from_engine(tokenizer, l)).collect(),
            text: if calls.is_some() { String::new() } else { g.text },
            tool_calls: calls.unwrap_or_default(),
            tokens: g.tokens.len(),
            finish: g.finish,
        }
    }
}
