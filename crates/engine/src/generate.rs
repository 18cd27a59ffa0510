//! The generation loop: prefill the prompt into the state, then sample, stream and feed tokens
//! until a stop token, a stop string, the token limit, a full context, or cancellation.
//!
//! Invariant: when it returns, the state holds the prompt and every token whose text was
//! reported (the stop token and the text of a stop string are not kept), so freezing right after
//! a reply captures exactly what the user saw.

use crate::error::{EngineError, Result};
use crate::grammar::{Constrained, Grammar};
use crate::kv::KvState;
use crate::model::{Model, PrefillProgress, DEFAULT_CHUNK};
use crate::sampling::{Sampler, SamplingParams};
use crate::tokenizer::{TokenStream, Tokenizer};
use candle_core::{Tensor, D};
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
    /// Report each generated token's log-probability with this many of the most likely tokens
    /// at its step (0 to [`MAX_TOP_LOGPROBS`]); `None`: none (no logits leave the device).
    /// Not part of saved settings.
    #[serde(skip)]
    pub logprobs: Option<usize>,
    /// Generate only what this grammar allows (constrained decoding); `None`: anything. Not part
    /// of saved settings.
    #[serde(skip)]
    pub grammar: Option<Grammar>,
}

/// Most alternatives per step that [`GenerateParams::logprobs`] may ask for (OpenAI's limit).
pub const MAX_TOP_LOGPROBS: usize = 20;

/// A generated token's log-probability under the model, and the most likely tokens at its step.
/// The distribution is the model's own (log-softmax of its logits): temperature, penalties and
/// top-k/top-p shape what is sampled, not what is reported (as llama.cpp's server and vLLM do).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenLogprob {
    pub token: u32,
    pub logprob: f32,
    /// The most likely tokens and their log-probabilities, most likely first (a tie: the lower
    /// id first).
    pub top: Vec<(u32, f32)>,
}

impl TokenLogprob {
    /// `token`'s log-probability in `logits` `(1, vocab)`, with the `k` most likely tokens.
    pub fn of(logits: &Tensor, token: u32, k: usize) -> Result<Self> {
        let lp = candle_nn::ops::log_softmax(logits, D::Minus1)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        Self::of_row(&lp, token, k)
    }

    /// The same from one row of log-probabilities already computed.
    fn of_row(lp: &[f32], token: u32, k: usize) -> Result<Self> {
        let logprob = *lp.get(token as usize).ok_or(EngineError::BadToken {
            id: token,
            vocab: lp.len(),
        })?;
        let order = |a: &u32, b: &u32| lp[*b as usize].total_cmp(&lp[*a as usize]).then(a.cmp(b));
        let k = k.min(lp.len());
        let mut ids: Vec<u32> = (0..lp.len() as u32).collect();
        if k > 0 && k < ids.len() {
            ids.select_nth_unstable_by(k - 1, order);
        }
        ids.truncate(k);
        ids.sort_unstable_by(order);
        let top = ids.into_iter().map(|id| (id, lp[id as usize])).collect();
        Ok(Self { token, logprob, top })
    }
}

impl Default for GenerateParams {
    fn default() -> Self {
        Self {
            max_tokens: 256,
            sampling: SamplingParams::default(),
            stop_strings: Vec::new(),
            chunk: DEFAULT_CHUNK,
            logprobs: None,
            grammar: None,
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
        if self.logprobs.is_some_and(|k| k > MAX_TOP_LOGPROBS) {
            return Err(EngineError::BadSampling(format!(
                "at most {MAX_TOP_LOGPROBS} top log-probabilities per token"
            )));
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
    /// With [`GenerateParams::logprobs`]: one per token of `tokens`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logprobs: Vec<TokenLogprob>,
}

pub enum Event<'a> {
    Prefill(PrefillProgress),
    /// Text released for display (whole UTF-8 characters, never part of a stop string).
    Text(&'a str),
    /// With [`GenerateParams::logprobs`]: the tokens whose text the next `Text` completes (or,
    /// at the end, the last ones, whatever text is left), in order; every kept token once.
    Logprobs(&'a [TokenLogprob]),
}

/// Tokens scored per forward pass by [`score`]: its logits, `SCORE_CHUNK × vocab` floats, are
/// all that is held at once (32 MB at Llama 3's vocabulary), whatever the prompt's length.
pub const SCORE_CHUNK: usize = 64;

/// Scores a token sequence as the model reads it: feeds `tokens[..n-1]` to `state` (after what
/// it holds) and returns, for each of `tokens[1..]`, its log-probability given everything
/// before it, with the `k` most likely tokens at that step. The last token is left for the
/// caller to feed (with a generation after it, say). What a scorer such as
/// lm-evaluation-harness asks of a prompt with `echo` and `logprobs`.
#[tracing::instrument(level = "debug", name = "engine.score", skip_all, fields(tokens = tokens.len()))]
pub fn score(
    model: &Model,
    state: &mut KvState,
    tokens: &[u32],
    k: usize,
    cancel: &CancelToken,
) -> Result<Vec<TokenLogprob>> {
    let feed = &tokens[..tokens.len().saturating_sub(1)];
    let mut out = Vec::with_capacity(feed.len());
    for (c, chunk) in feed.chunks(SCORE_CHUNK).enumerate() {
        if cancel.is_cancelled() {
            return Err(EngineError::Cancelled);
        }
        // One log-softmax and one copy per chunk, then each row on the host.
        let lp = model
            .log_probs(chunk, state)?
            .reshape((chunk.len(), ()))?
            .to_vec2::<f32>()?;
        for (j, row) in lp.iter().enumerate() {
            out.push(TokenLogprob::of_row(row, tokens[c * SCORE_CHUNK + j + 1], k)?);
        }
    }
    Ok(out)
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
    let mut logprobs = LogprobStream::new(params.logprobs);
    let mut grammar = params
        .grammar
        .as_ref()
        .map(|g| Constrained::new(g, tokenizer.byte_table()));
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
        let next = match grammar.as_mut() {
            None => sampler.sample_tensor(&logits, state.tokens())?,
            Some(g) => {
                let mut row = logits.flatten_all()?.to_vec1::<f32>()?;
                // The end comes with the grammar's, even where a stop token is ordinary text.
                for &s in tokenizer.stop_tokens() {
                    if let Some(l) = row.get_mut(s as usize) {
                        *l = f32::NEG_INFINITY;
                    }
                }
                if !g.mask(&mut row) {
                    break FinishReason::Length; // nothing the grammar allows is in the vocabulary
                }
                let next = sampler.sample(&mut row, state.tokens());
                g.advance(next);
                next
            }
        };
        if tokenizer.is_stop(next) {
            break FinishReason::StopToken;
        }
        if state.len() >= model.config().context_length {
            break FinishReason::ContextFull;
        }
        logprobs.push(&logits, next)?;
        tokens.push(next);
        logits = model.forward(&[next], state, false)?;
        if let Some(piece) = stream.push(tokenizer, next)? {
            text.push_str(&piece);
            logprobs.settle(text.len());
            if let Some(cut) = find_stop(&text, &params.stop_strings, shown.saturating_sub(hold)) {
                text.truncate(cut);
                let keep = tokens_covering(tokenizer, &tokens, cut)?;
                tokens.truncate(keep);
                state.truncate(prompt_end + keep);
                // The last kept token may reach past the cut: every kept token goes out now.
                logprobs.truncate(keep);
                logprobs.release(usize::MAX, on_event);
                if cut > shown {
                    on_event(Event::Text(&text[shown..]));
                }
                shown = text.len();
                break FinishReason::StopString;
            }
            let safe = floor_char_boundary(&text, text.len().saturating_sub(hold));
            if safe > shown {
                logprobs.release(safe, on_event);
                on_event(Event::Text(&text[shown..safe]));
                shown = safe;
            }
        }
        // The grammar's end is the generation's (as an end-of-turn token would be).
        if grammar.as_ref().is_some_and(|g| g.is_complete()) {
            break FinishReason::StopToken;
        }
    };
    if finish != FinishReason::StopString {
        if let Some(rest) = stream.flush(tokenizer)? {
            text.push_str(&rest);
        }
        logprobs.settle(text.len());
        logprobs.release(usize::MAX, on_event);
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
        logprobs: logprobs.all,
    })
}

/// The log-probabilities of a generation that asked for them (nothing is kept or computed
/// otherwise), and which of them went out with text: each token's goes with the text that
/// completes it (a token inside a UTF-8 character waits for the one that completes it).
struct LogprobStream {
    /// Alternatives per token; `None`: not asked for.
    k: Option<usize>,
    all: Vec<TokenLogprob>,
    /// The length of the text once each token's own text is whole (the last tokens may have
    /// none yet).
    ends: Vec<usize>,
    /// How many went out.
    released: usize,
}

impl LogprobStream {
    fn new(k: Option<usize>) -> Self {
        Self {
            k,
            all: Vec::new(),
            ends: Vec::new(),
            released: 0,
        }
    }

    /// The step that chose `token` from `logits`.
    fn push(&mut self, logits: &Tensor, token: u32) -> Result<()> {
        if let Some(k) = self.k {
            self.all.push(TokenLogprob::of(logits, token, k)?);
        }
        Ok(())
    }

    /// The text is now `text_len` long: the tokens without a whole text so far end there.
    fn settle(&mut self, text_len: usize) {
        self.ends.resize(self.all.len(), text_len);
    }

    /// Only the first `keep` tokens stay (a stop string cut the rest).
    fn truncate(&mut self, keep: usize) {
        self.all.truncate(keep);
        self.ends.truncate(keep);
        self.released = self.released.min(keep);
    }

    /// Hands out the tokens whose text ends by `upto`.
    fn release(&mut self, upto: usize, on_event: &mut dyn FnMut(Event<'_>)) {
        let n = self.ends[self.released..].iter().take_while(|&&e| e <= upto).count();
        if n > 0 {
            on_event(Event::Logprobs(&self.all[self.released..self.released + n]));
            self.released += n;
        }
    }
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
