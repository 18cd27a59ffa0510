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
/// Returns `(n_head, L, d)`. With our kernels (`ours`: on the CPU, with an f16 cache) this is
/// [`super::cpu::attention`], which masks by position and needs no mask; elsewhere (CUDA, Metal,
/// the generic path) candle's batched matmuls, query rows in blocks under [`SCORE_BUDGET`].
pub fn attend(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&Tensor>,
    n_kv: usize,
    ours: bool,
) -> candle_core::Result<Tensor> {
    if ours {
        if let Some(out) = super::cpu::attention::attend(q, k, v)? {
            return Ok(out);
        }
    }
    let (l, t) = (q.dim(1)?, k.dim(1)?);
    // A caller that expected our kernel passed no mask: the causal mask is still required.
    let built;
    let mask = match mask {
        None if l > 1 => {
            let past = t
                .checked_sub(l)
                .ok_or_else(|| candle_core::Error::Msg(format!("{l} queries against {t} keys")))?;
            built = causal_mask(past, l, q.device())?;
            Some(&built)
        }
        m => m,
    };
    attend_blocks(q, k, v, mask, n_kv, rows_per_block(q.dim(0)?, t))
}

/// Most bytes of f32 scores the generic path holds at once. A long prompt's query rows are
/// taken in blocks under it, so a 16k-token prompt against a 16k-token cache never builds its
/// whole `(heads × prompt × context)` score matrix (an 8B model: 32 GiB at once, 64 MiB per
/// block). Each query row is computed from the same inputs with the same ops whichever block it
/// falls in.
const SCORE_BUDGET: usize = 64 << 20;

/// Query positions per block for `n_head` heads against `t` keys (at least one).
fn rows_per_block(n_head: usize, t: usize) -> usize {
    (SCORE_BUDGET / (4 * n_head * t).max(1)).max(1)
}

/// The device-generic path: batched matmuls over the cache views, `rows` query positions at a
/// time.
fn attend_blocks(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&Tensor>,
    n_kv: usize,
    rows: usize,
) -> candle_core::Result<Tensor> {
    let l = q.dim(1)?;
    if l <= rows {
        return attend_rows(q, k, v, mask, n_kv);
    }
    let mut out = Vec::with_capacity(l.div_ceil(rows));
    for start in (0..l).step_by(rows) {
        let n = rows.min(l - start);
        let m = mask.map(|m| m.narrow(0, start, n)).transpose()?;
        out.push(attend_rows(&q.narrow(1, start, n)?, k, v, m.as_ref(), n_kv)?);
    }
    Tensor::cat(&out, 1)
}

/// One block of query rows `q` `(n_head, L, d)` against the whole view, with its rows of the mask.
fn attend_rows(q: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>, n_kv: usize) -> candle_core::Result<Tensor> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values in about ±1.
    fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    /// Queries `(n_head, l, d)` f32 and an f16 cache `(n_kv, past + l, d)` of test values.
    fn inputs(
        n_head: usize,
        n_kv: usize,
        d: usize,
        past: usize,
        l: usize,
        seed: u32,
    ) -> candle_core::Result<[Tensor; 3]> {
        let (dev, t) = (Device::Cpu, past + l);
        let q = Tensor::from_vec(values(n_head * l * d, seed), (n_head, l, d), &dev)?;
        let k = Tensor::from_vec(values(n_kv * t * d, seed + 1), (n_kv, t, d), &dev)?.to_dtype(DType::F16)?;
        let v = Tensor::from_vec(values(n_kv * t * d, seed + 2), (n_kv, t, d), &dev)?.to_dtype(DType::F16)?;
        Ok([q, k, v])
    }

    fn largest_diff(a: &Tensor, b: &Tensor) -> candle_core::Result<f32> {
        let flat = |t: &Tensor| t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>();
        Ok(flat(a)?
            .iter()
            .zip(&flat(b)?)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max))
    }

    #[test]
    fn query_rows_in_blocks_give_the_whole_result() -> candle_core::Result<()> {
        let (n_head, n_kv, d, past, l) = (8, 2, 16, 20, 37);
        let [q, k, v] = inputs(n_head, n_kv, d, past, l, 1)?;
        let mask = causal_mask(past, l, &Device::Cpu)?;
        let whole = attend_blocks(&q, &k, &v, Some(&mask), n_kv, l)?;
        assert_eq!(whole.dims(), &[n_head, l, d]);
        for rows in [1, 5, 16, 36] {
            let blocked = attend_blocks(&q, &k, &v, Some(&mask), n_kv, rows)?;
            let worst = largest_diff(&whole, &blocked)?;
            assert_eq!(worst, 0.0, "{rows} rows per block differ by {worst}");
        }
        Ok(())
    }

    #[test]
    fn the_generic_path_agrees_with_our_kernel() -> candle_core::Result<()> {
        let (n_head, n_kv, d, past, l) = (6, 2, 64, 9, 23);
        let [q, k, v] = inputs(n_head, n_kv, d, past, l, 4)?;
        let ours = attend(&q, &k, &v, None, n_kv, true)?;
        let mask = causal_mask(past, l, &Device::Cpu)?;
        let generic = attend(&q, &k, &v, Some(&mask), n_kv, false)?;
        let worst = largest_diff(&ours, &generic)?;
        // The generic path rounds scores and probabilities to the cache's f16 for its matmuls.
        assert!(worst < 2e-3, "largest difference {worst}");
        Ok(())
    }

    /// Our kernel declines an f32 cache; the fallback must still be causal without a mask.
    #[test]
    fn the_fallback_from_our_kernel_is_still_causal() -> candle_core::Result<()> {
        let (n_head, n_kv, d, past, l) = (4, 2, 16, 5, 9);
        let [q, k, v] = inputs(n_head, n_kv, d, past, l, 7)?;
        let (k, v) = (k.to_dtype(DType::F32)?, v.to_dtype(DType::F32)?);
        let mask = causal_mask(past, l, &Device::Cpu)?;
        let masked = attend(&q, &k, &v, Some(&mask), n_kv, false)?;
        let unmasked = attend(&q, &k, &v, None, n_kv, true)?;
        assert_eq!(largest_diff(&masked, &unmasked)?, 0.0);
        Ok(())
    }

    #[test]
    fn a_long_prompt_never_holds_all_its_scores() {
        // Llama 3.1 8B: 32 query heads; 16,384-token prompt against a 16,384-token cache.
        let rows = rows_per_block(32, 16_384);
        assert_eq!(rows, 32);
        assert!(4 * 32 * rows * 16_384 <= SCORE_BUDGET);
        assert_eq!(rows_per_block(32, 1 << 40), 1);
    }
}
