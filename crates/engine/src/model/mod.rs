//! Our own Llama forward pass over a caller-owned [`KvState`].
//!
//! Follows candle-transformers' `quantized_llama.rs` and Hugging Face's `modeling_llama.py`
//! (pre-norm blocks, SwiGLU feed-forward, rotary positions, grouped-query attention), with the
//! differences that make attention states first-class: the cache is a separate value passed in by
//! `&mut`, it is preallocated and written in place, K/V are stored once per KV head (grouped
//! queries attend to them without `repeat_kv` copies), and the position comes from the state.

mod attention;
pub mod cpu;
pub mod gguf;
pub mod hf;
mod linear;
mod rope;

pub use linear::{Linear, Stacked};

use crate::config::ModelConfig;
use crate::error::{EngineError, Result};
use crate::kernels::Kernels;
use crate::kv::{KvGeometry, KvState};
use candle_core::{DType, Device, Tensor, D};
use rope::Rope;

/// Default number of tokens per prefill chunk.
pub const DEFAULT_CHUNK: usize = 512;
/// Positions reserved beyond a prompt for the reply, so that decoding does not grow (copy) the
/// cache right after a long prefill.
pub const PREFILL_HEADROOM: usize = 1024;

#[derive(Debug)]
pub(crate) struct Block {
    pub attn_norm: Tensor,
    /// Q, K and V, in that order.
    pub qkv: Stacked,
    pub wo: Linear,
    pub ffn_norm: Tensor,
    /// The gate and up projections, in that order.
    pub gate_up: Stacked,
    pub w_down: Linear,
}

/// Immutable, shareable weights. All mutable attention state lives in [`KvState`].
#[derive(Debug)]
pub struct Model {
    config: ModelConfig,
    device: Device,
    /// Our CPU kernels, or candle's ops (GPUs, and the generic path on the CPU).
    kernels: Kernels,
    /// Dtype of activations between layers (f32 on CPU and for quantized weights).
    act_dtype: DType,
    /// Dtype of the live K/V cache.
    kv_dtype: DType,
    embed: Linear,
    blocks: Vec<Block>,
    norm: Tensor,
    output: Linear,
    rope: Rope,
}

/// Progress of a chunked prefill; return `false` from the callback to cancel.
#[derive(Debug, Clone, Copy)]
pub struct PrefillProgress {
    pub done: usize,
    pub total: usize,
}

impl Model {
    #[allow(clippy::too_many_arguments)] // the model's parts, each named, in one place
    pub(crate) fn assemble(
        config: ModelConfig,
        device: Device,
        kernels: Kernels,
        act_dtype: DType,
        embed: Linear,
        blocks: Vec<Block>,
        norm: Tensor,
        output: Linear,
    ) -> Self {
        let rope = Rope::new(config.rope.inv_freq(), config.rope.style);
        Self {
            config,
            device,
            kernels,
            act_dtype,
            kv_dtype: DType::F16,
            embed,
            blocks,
            norm,
            output,
            rope,
        }
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }
    pub fn device(&self) -> &Device {
        &self.device
    }
    pub fn kernels(&self) -> Kernels {
        self.kernels
    }

    /// Weight matrices the Q/K/V and gate/up projections of all layers run as: 5 a layer with
    /// our CPU kernels, fewer where candle's ops run stacked matrices (see [`Stacked`]).
    pub fn projection_matrices(&self) -> usize {
        self.blocks
            .iter()
            .map(|b| b.qkv.matrices() + b.gate_up.matrices())
            .sum()
    }

    pub fn kv_dtype(&self) -> DType {
        self.kv_dtype
    }

    pub fn kv_geometry(&self) -> KvGeometry {
        KvGeometry {
            n_layer: self.config.n_layer,
            n_kv_head: self.config.n_kv_head,
            head_dim: self.config.head_dim,
            dtype: self.kv_dtype,
            max_len: self.config.context_length,
        }
    }

    /// A new, empty attention state for this model.
    pub fn new_state(&self) -> KvState {
        KvState::new(self.kv_geometry(), &self.device)
    }

    fn check_state(&self, state: &KvState) -> Result<()> {
        if *state.geometry() != self.kv_geometry() || !state.device().same_device(&self.device) {
            return Err(EngineError::Invalid(format!(
                "state geometry {:?} does not belong to this model ({:?})",
                state.geometry(),
                self.kv_geometry()
            )));
        }
        Ok(())
    }

    /// Runs `tokens` through the model after the state's positions, appending their K/V.
    /// Returns f32 logits `(1, vocab)` for the last token, or `(tokens, vocab)` with `all_logits`.
    /// On error the state is left as it was.
    pub fn forward(&self, tokens: &[u32], state: &mut KvState, all_logits: bool) -> Result<Tensor> {
        self.check_state(state)?;
        if tokens.is_empty() {
            return Err(EngineError::Invalid("forward called with no tokens".into()));
        }
        let vocab = self.config.vocab_size;
        if let Some(&id) = tokens.iter().find(|&&t| t as usize >= vocab) {
            return Err(EngineError::BadToken { id, vocab });
        }
        let c = &self.config;
        let l = tokens.len();
        state.prepare_append(l)?;
        let pos = state.len();
        let ids = Tensor::new(tokens, &self.device)?;
        let mut x = self.embed.embedding(&ids)?.to_dtype(self.act_dtype)?;
        let (cos, sin) = self.rope.tables(pos, l, self.act_dtype, &self.device)?;
        // Our attention kernel masks by position; candle's ops take the mask as a tensor.
        let ours = self.kernels.is_ours();
        let mask = if l > 1 && !ours {
            Some(attention::causal_mask(pos, l, &self.device)?)
        } else {
            None
        };
        for (i, b) in self.blocks.iter().enumerate() {
            let h = candle_nn::ops::rms_norm(&x, &b.attn_norm, c.rms_eps)?;
            let [q, k, v] = parts(b.qkv.forward(&h)?)?;
            let q = q.reshape((1, l, c.n_head, c.head_dim))?.transpose(1, 2)?.contiguous()?;
            let k = k
                .reshape((1, l, c.n_kv_head, c.head_dim))?
                .transpose(1, 2)?
                .contiguous()?;
            let v = v.reshape((l, c.n_kv_head, c.head_dim))?.transpose(0, 1)?;
            let q = self.rope.apply(&q, &cos, &sin)?.squeeze(0)?;
            let k = self.rope.apply(&k, &cos, &sin)?.squeeze(0)?;
            state.write(i, &k, &v)?;
            let (kk, vv) = state.layer_view_upto(i, pos + l)?;
            let y = attention::attend(&q, &kk, &vv, mask.as_ref(), c.n_kv_head, ours)?;
            let y = y
                .to_dtype(self.act_dtype)?
                .transpose(0, 1)?
                .reshape((l, c.n_head * c.head_dim))?;
            x = (x + b.wo.forward(&y)?)?;
            let h = candle_nn::ops::rms_norm(&x, &b.ffn_norm, c.rms_eps)?;
            let [g, u] = parts(b.gate_up.forward(&h)?)?;
            let ff = b.w_down.forward(&(candle_nn::ops::silu(&g)? * u)?)?;
            x = (x + ff)?;
        }
        state.commit(tokens);
        let x = if all_logits { x } else { x.narrow(0, l - 1, 1)? };
        let x = candle_nn::ops::rms_norm(&x, &self.norm, c.rms_eps)?;
        Ok(self.output.forward(&x)?.to_dtype(DType::F32)?)
    }

    /// Feeds `tokens` in chunks of `chunk` (where they do not fit the state's room, room is
    /// reserved for all of them and [`PREFILL_HEADROOM`] more), reporting progress after each
    /// chunk; the callback
    /// returns `false` to cancel, which rewinds the state to where it started.
    /// Returns the logits `(1, vocab)` of the last token.
    #[tracing::instrument(level = "debug", name = "engine.prefill", skip_all, fields(tokens = tokens.len(), chunk = chunk))]
    pub fn prefill(
        &self,
        tokens: &[u32],
        state: &mut KvState,
        chunk: usize,
        progress: &mut dyn FnMut(PrefillProgress) -> bool,
    ) -> Result<Tensor> {
        let start = state.len();
        let needed = start + tokens.len();
        if needed > self.config.context_length {
            return Err(EngineError::ContextOverflow {
                needed,
                context: self.config.context_length,
            });
        }
        let chunk = chunk.max(1);
        // Refused now rather than after minutes of prefill, or by the OOM killer: the prompt's
        // K/V, the room reserved for a reply, and a chunk's activations.
        let reserved = (needed + PREFILL_HEADROOM).min(self.config.context_length);
        state.check_memory(reserved, self.working_bytes(chunk.min(tokens.len())), &|| {
            format!("a prompt of {} tokens and its reply", tokens.len())
        })?;
        // Room for the whole prompt and a reply at once when the prompt does not fit: growing
        // chunk by chunk would copy the cache at every growth (a 16k-token prompt, a dozen
        // times). A prompt that fits the room already there (a thawed state's, a conversation's
        // next turn) does not copy the cache for a reply it may not need: decoding grows it
        // when the reply gets there.
        if needed > state.capacity() {
            state.reserve(needed + PREFILL_HEADROOM)?;
        }
        let mut last = None;
        for (n, piece) in tokens.chunks(chunk).enumerate() {
            match self.forward(piece, state, false) {
                Ok(l) => last = Some(l),
                Err(e) => {
                    state.truncate(start);
                    return Err(e);
                }
            }
            let done = (n * chunk + piece.len()).min(tokens.len());
            if !progress(PrefillProgress {
                done,
                total: tokens.len(),
            }) {
                state.truncate(start);
                return Err(EngineError::Cancelled);
            }
        }
        last.ok_or_else(|| EngineError::Invalid("prefill called with no tokens".into()))
    }

    /// About the most memory a forward pass of `rows` tokens holds besides the weights and the
    /// cache (f32 activations: the residual stream, Q/K/V, the attention's output, gate, up and
    /// their product, the down projection, and one row of logits), for refusing a prompt that
    /// cannot fit before it starts.
    fn working_bytes(&self, rows: usize) -> u64 {
        let c = &self.config;
        let q_kv = c.n_head * c.head_dim + 2 * c.n_kv_head * c.head_dim;
        let per_row = 3 * c.n_embd + q_kv + 3 * c.n_ff;
        ((rows * per_row + c.vocab_size) * 4) as u64
    }

    /// Log-probabilities `(tokens, vocab)` for every position of `tokens` fed after `state`.
    pub fn log_probs(&self, tokens: &[u32], state: &mut KvState) -> Result<Tensor> {
        let logits = self.forward(tokens, state, true)?;
        Ok(candle_nn::ops::log_softmax(&logits, D::Minus1)?)
    }
}

impl KvState {
    /// K/V of `layer` for positions `0..end`, including positions written by the forward in
    /// progress but not yet committed.
    pub(crate) fn layer_view_upto(&self, layer: usize, end: usize) -> Result<(Tensor, Tensor)> {
        self.raw_view(layer, end)
    }
}

/// The outputs of a [`Stacked`] projection as an array of its known number of parts.
fn parts<const N: usize>(outputs: Vec<Tensor>) -> Result<[Tensor; N]> {
    let n = outputs.len();
    outputs
        .try_into()
        .map_err(|_| EngineError::Invalid(format!("a projection gave {n} outputs, expected {N}")))
}
