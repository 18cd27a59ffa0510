//! Scaled dot-product attention with grouped queries and no K/V copies.
//!
//! Query heads `h = kv·group + g` are laid out so that `(n_head, L, d)` reshapes to
//! `(n_kv_head, group·L, d)`: every query row of a group meets its KV head in one batched matmul
//! against the cache view, so the cache is read in place and never repeated per query head.

use candle_core::{DType, Device, Tensor};

/// Additive causal mask `(len, past+len)`: query `i` sees keys `0..=past+i`.
pub fn causal_mask(past: usize, len: usize, device: &Device) -> candle_core::Result<Tensor> {
    let total = past + len;
    let mask: Vec<f32> = (0..len)
        .flat_map(|i| (0..total).map(move |j| if j > past + i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Tensor::from_vec(mask, (len, total), device)
}

/// `q`: `(n_head, L, d)`; `k`, `v`: `(n_kv, T, d)` views of the cache; `mask`: `(L, T)`.
/// Returns `(n_head, L, d)`. On the CPU with an f16 cache this is [`super::cpu::attention`];
/// elsewhere (CUDA, Metal) candle's batched matmuls.
pub fn attend(q: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>, n_kv: usize) -> candle_core::Result<Tensor> {
    if let Some(out) = super::cpu::attention::attend(q, k, v)? {
        return Ok(out);
    }
    attend_generic(q, k, v, mask, n_kv)
}

/// The device-generic path: batched matmuls over the cache views.
pub fn attend_generic(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&Tensor>,
    n_kv: usize,
) -> candle_core::Result<Tensor> {
    let (n_head, l, d) = q.dims3()?;
    let t = k.dim(1)?;
    let group = n_head / n_kv;
    let scale = 1.0 / (d as f64).sqrt();
    let kv_dtype = k.dtype();
    let q = (q * scale)?.to_dtype(kv_dtype)?.reshape((n_kv, group * l, d))?;
    let scores = q.matmul(&k.t()?)?.to_dtype(DType::F32)?;
    let scores = match mask {
        Some(m) => scores
            .reshape((n_kv, group, l, t))?
            .broadcast_add(m)?
            .reshape((n_kv, group * l, t))?,
        None => scores,
    };
    let probs = candle_nn::ops::softmax_last_dim(&scores)?.to_dtype(kv_dtype)?;
    probs.matmul(v)?.reshape((n_head, l, d))
}
