//! Attention over the f16 cache, without copying it and without materializing the whole
//! score matrix.
//!
//! Each query row is computed on its own with a fixed order of operations (keys in blocks from
//! position 0, f32 accumulation), so a row's result does not depend on how many other rows share
//! the call: decoding token by token gives bit-for-bit the same K/V and logits as one prefill,
//! whatever the chunking. That is what makes a thawed state resume exactly.
//!
//! Grouped queries: the rows of the `group` query heads that share a KV head are processed
//! together, so every key block is converted from f16 once and read from memory once.

// Index loops mirror the arithmetic they define; iterator chains would hide the order.
#![allow(clippy::needless_range_loop)]

use candle_core::{CpuStorage, DType, Layout, Storage, Tensor};
use half::f16;
use half::slice::HalfFloatSliceExt;
use rayon::prelude::*;

/// Keys converted to f32 at a time.
const KEY_BLOCK: usize = 64;
/// Query rows per task.
const ROW_TILE: usize = 16;

struct KvView<'a> {
    data: &'a [f16],
    offset: usize,
    head_stride: usize,
    row_stride: usize,
}

fn view<'a>(s: &'a Storage, l: &Layout) -> Option<KvView<'a>> {
    let Storage::Cpu(CpuStorage::F16(data)) = s else {
        return None;
    };
    let st = l.stride();
    if st.len() != 3 || st[2] != 1 {
        return None;
    }
    Some(KvView {
        data,
        offset: l.start_offset(),
        head_stride: st[0],
        row_stride: st[1],
    })
}

/// `q`: `(n_head, L, d)` f32; `k`, `v`: `(n_kv, T, d)` f16 views on the CPU; query row `i` sits
/// at position `T - L + i`. Returns `(n_head, L, d)` f32, or `None` when the inputs are not
/// CPU/f16 (the caller then uses the generic path).
pub fn attend(q: &Tensor, k: &Tensor, v: &Tensor) -> candle_core::Result<Option<Tensor>> {
    if !q.device().is_cpu() || k.dtype() != DType::F16 || v.dtype() != DType::F16 || q.dtype() != DType::F32 {
        return Ok(None);
    }
    let (n_head, l, d) = q.dims3()?;
    let (n_kv, t, _) = k.dims3()?;
    let group = n_head / n_kv;
    let past = t - l;
    let q = q.contiguous()?;
    let qv = q.flatten_all()?.to_vec1::<f32>()?;
    let (ks, kl) = k.storage_and_layout();
    let (vs, vl) = v.storage_and_layout();
    let (Some(kv_k), Some(kv_v)) = (view(&ks, kl), view(&vs, vl)) else {
        return Ok(None);
    };
    let scale = 1.0 / (d as f32).sqrt();
    let mut out = vec![0f32; n_head * l * d];
    // Tasks: (kv head, tile of positions); each task owns `group` heads × its rows of `out`.
    let tiles = l.div_ceil(ROW_TILE);
    let mut tasks: Vec<(usize, usize, Vec<f32>)> = (0..n_kv)
        .flat_map(|h| (0..tiles).map(move |tile| (h, tile, Vec::new())))
        .collect();
    tasks.par_iter_mut().for_each(|(h, tile, result)| {
        let i0 = *tile * ROW_TILE;
        let i1 = (i0 + ROW_TILE).min(l);
        *result = kernel(&qv, &kv_k, &kv_v, *h, group, l, d, i0, i1, past, scale);
    });
    for (h, tile, result) in tasks {
        let i0 = tile * ROW_TILE;
        let rows = result.len() / (group * d);
        for g in 0..group {
            let head = h * group + g;
            for r in 0..rows {
                let dst = (head * l + i0 + r) * d;
                let src = (g * rows + r) * d;
                out[dst..dst + d].copy_from_slice(&result[src..src + d]);
            }
        }
    }
    Ok(Some(Tensor::from_vec(out, (n_head, l, d), q.device())?))
}

#[allow(clippy::too_many_arguments)]
fn kernel(
    q: &[f32],
    k: &KvView,
    v: &KvView,
    h: usize,
    group: usize,
    l: usize,
    d: usize,
    i0: usize,
    i1: usize,
    past: usize,
    scale: f32,
) -> Vec<f32> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports the features enabled on `kernel_avx2`.
            return unsafe { kernel_avx2(q, k, v, h, group, l, d, i0, i1, past, scale) };
        }
    }
    kernel_generic(q, k, v, h, group, l, d, i0, i1, past, scale)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
unsafe fn kernel_avx2(
    q: &[f32],
    k: &KvView,
    v: &KvView,
    h: usize,
    group: usize,
    l: usize,
    d: usize,
    i0: usize,
    i1: usize,
    past: usize,
    scale: f32,
) -> Vec<f32> {
    kernel_generic(q, k, v, h, group, l, d, i0, i1, past, scale)
}

/// Rows `i0..i1` of the `group` query heads of KV head `h`; returns `(group, i1-i0, d)`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn kernel_generic(
    q: &[f32],
    k: &KvView,
    v: &KvView,
    h: usize,
    group: usize,
    l: usize,
    d: usize,
    i0: usize,
    i1: usize,
    past: usize,
    scale: f32,
) -> Vec<f32> {
    let rows = i1 - i0;
    let n_rows = group * rows;
    let keys = past + i1; // the last row sees keys 0..past+i1
    let mut scores = vec![0f32; n_rows * keys];
    let mut block = vec![0f32; KEY_BLOCK * d];
    // Scores, one key block at a time.
    for b0 in (0..keys).step_by(KEY_BLOCK) {
        let b1 = (b0 + KEY_BLOCK).min(keys);
        convert_rows(k, h, b0, b1, d, &mut block);
        for g in 0..group {
            for r in 0..rows {
                let limit = past + i0 + r + 1; // keys visible to this row
                if b0 >= limit {
                    continue;
                }
                let qrow = &q[((h * group + g) * l + i0 + r) * d..][..d];
                let srow = &mut scores[(g * rows + r) * keys..][..keys];
                for j in b0..b1.min(limit) {
                    srow[j] = dot(qrow, &block[(j - b0) * d..][..d]) * scale;
                }
            }
        }
    }
    // Softmax per row over its visible keys.
    for g in 0..group {
        for r in 0..rows {
            let limit = past + i0 + r + 1;
            let srow = &mut scores[(g * rows + r) * keys..][..limit];
            let max = srow.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
            let mut sum = 0f32;
            for x in srow.iter_mut() {
                *x = (*x - max).exp();
                sum += *x;
            }
            let inv = 1.0 / sum;
            srow.iter_mut().for_each(|x| *x *= inv);
        }
    }
    // Weighted sum of values.
    let mut out = vec![0f32; n_rows * d];
    for b0 in (0..keys).step_by(KEY_BLOCK) {
        let b1 = (b0 + KEY_BLOCK).min(keys);
        convert_rows(v, h, b0, b1, d, &mut block);
        for g in 0..group {
            for r in 0..rows {
                let limit = past + i0 + r + 1;
                if b0 >= limit {
                    continue;
                }
                let srow = &scores[(g * rows + r) * keys..][..keys];
                let orow = &mut out[(g * rows + r) * d..][..d];
                for j in b0..b1.min(limit) {
                    axpy(srow[j], &block[(j - b0) * d..][..d], orow);
                }
            }
        }
    }
    out
}

#[inline(always)]
fn convert_rows(kv: &KvView, h: usize, b0: usize, b1: usize, d: usize, out: &mut [f32]) {
    for j in b0..b1 {
        let src = &kv.data[kv.offset + h * kv.head_stride + j * kv.row_stride..][..d];
        src.convert_to_f32_slice(&mut out[(j - b0) * d..][..d]);
    }
}

/// Dot product with 8 independent lanes, reduced in a fixed order.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = a.len() / 8;
    for c in 0..chunks {
        for i in 0..8 {
            acc[i] = a[c * 8 + i].mul_add(b[c * 8 + i], acc[i]);
        }
    }
    let mut s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for i in chunks * 8..a.len() {
        s = a[i].mul_add(b[i], s);
    }
    s
}

#[inline(always)]
fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi = a.mul_add(*xi, *yi);
    }
}
