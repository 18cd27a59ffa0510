//! The input side of the integer path: rows of f32 quantized to 8 bits per block of `QB`
//! values, with the sums of every 16 (see the definition in [`super`]).

use crate::model::cpu::isa::{self, Isa};
use crate::model::cpu::pool;

/// Input rows quantized for the integer kernels (see the definition in [`super`]).
#[derive(Debug, Default)]
pub struct QuantRows {
    /// `m × k` values.
    pub qs: Vec<i8>,
    /// One scale per input block, `m × k / QB`.
    pub d: Vec<f32>,
    /// `Σ qx` of every 16 values, `m × k / 16` (at most 16 · 127 in magnitude).
    pub bsum: Vec<i16>,
    pub k: usize,
    pub qb: usize,
}

impl QuantRows {
    /// Quantizes `m` rows of `k` values in blocks of `qb` (rows in parallel when there are many).
    /// `isa` above what the CPU has is lowered to what it has (every path gives the same values).
    pub fn new(x: &[f32], m: usize, k: usize, qb: usize, isa: Isa) -> Self {
        assert!(x.len() == m * k && k.is_multiple_of(qb) && qb.is_multiple_of(32));
        // A public entry point: the SIMD path below relies on the CPU having `isa`.
        let isa = isa.min(isa::supported());
        let mut q = Self {
            qs: vec![0; m * k],
            d: vec![0.0; m * k / qb],
            bsum: vec![0; m * k / 16],
            k,
            qb,
        };
        let dst = RowsPtr(q.qs.as_mut_ptr(), q.d.as_mut_ptr(), q.bsum.as_mut_ptr());
        let rows_per_task = (1 << 16) / k + 1;
        let run = |t: usize| {
            let (qs_ptr, d_ptr, bsum_ptr) = dst.get();
            for r in t * rows_per_task..((t + 1) * rows_per_task).min(m) {
                // SAFETY: task `t` alone writes rows `r` of the three arrays, each sized for m rows.
                let (qs, d, bsum) = unsafe {
                    (
                        std::slice::from_raw_parts_mut(qs_ptr.add(r * k), k),
                        std::slice::from_raw_parts_mut(d_ptr.add(r * k / qb), k / qb),
                        std::slice::from_raw_parts_mut(bsum_ptr.add(r * k / 16), k / 16),
                    )
                };
                let xr = &x[r * k..][..k];
                for (b, xs) in xr.chunks_exact(qb).enumerate() {
                    let (qb_, bs) = (&mut qs[b * qb..(b + 1) * qb], &mut bsum[b * qb / 16..(b + 1) * qb / 16]);
                    d[b] = quantize_block(xs, qb_, bs, isa);
                }
            }
        };
        pool::run(m.div_ceil(rows_per_task), &run);
        q
    }
}

/// The three arrays of [`QuantRows`], written row by row from several tasks.
#[derive(Clone, Copy)]
struct RowsPtr(*mut i8, *mut f32, *mut i16);
// SAFETY: tasks write disjoint rows, and the arrays outlive the parallel section (they belong to
// the `QuantRows` that `new` returns after `pool::run`).
unsafe impl Send for RowsPtr {}
// SAFETY: sharing only hands out the pointers; every write through them is to a task's own rows.
unsafe impl Sync for RowsPtr {}

impl RowsPtr {
    /// Through a method, so closures capture the whole (Sync) wrapper rather than its fields.
    fn get(self) -> (*mut i8, *mut f32, *mut i16) {
        (self.0, self.1, self.2)
    }
}

/// One input block: returns its scale, writes its 8-bit values and the sums of every 16.
fn quantize_block(x: &[f32], q: &mut [i8], bsum: &mut [i16], isa: Isa) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512 {
        // SAFETY: `QuantRows::new` lowered `isa` to what the CPU has, so it has AVX-512
        // F/BW/DQ/VL; the block is whole 16s (`qb` is a multiple of 32, asserted in `new`), and
        // `q` has as many values as `x`, `bsum` one per 16.
        return unsafe { quantize_block_avx512(x, q, bsum) };
    }
    let _ = isa;
    let amax = x.iter().fold(0f32, |a, v| a.max(v.abs()));
    let (d, id) = if amax > 0.0 {
        (amax / 127.0, 127.0 / amax)
    } else {
        (0.0, 0.0)
    };
    for (q, &v) in q.iter_mut().zip(x) {
        *q = (v * id).round_ties_even().clamp(-127.0, 127.0) as i8;
    }
    for (s, qs) in bsum.iter_mut().zip(q.chunks_exact(16)) {
        *s = qs.iter().map(|&v| v as i16).sum();
    }
    d
}

/// [`quantize_block`] 16 values at a time: the same maximum (exact in any order), the same
/// scalar scales, and `cvtps` rounds to nearest even as `round_ties_even` does (NaN inputs
/// aside, which the portable path maps to 0).
///
/// # Safety
/// The CPU has AVX-512 F/BW/DQ/VL; `x.len()` is a multiple of 16 and `q.len() >= x.len()`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
unsafe fn quantize_block_avx512(x: &[f32], q: &mut [i8], bsum: &mut [i16]) -> f32 {
    use std::arch::x86_64::*;
    // SAFETY: `c < x.len() / 16`: each load reads 16 floats inside `x`, each store writes 16
    // bytes inside `q` (at least as long, the contract); the features are this function's.
    unsafe {
        let n = x.len() / 16;
        let mut mx = _mm512_setzero_ps();
        for c in 0..n {
            mx = _mm512_max_ps(mx, _mm512_abs_ps(_mm512_loadu_ps(x.as_ptr().add(16 * c))));
        }
        let amax = _mm512_reduce_max_ps(mx);
        let (d, id) = if amax > 0.0 {
            (amax / 127.0, 127.0 / amax)
        } else {
            (0.0, 0.0)
        };
        let idv = _mm512_set1_ps(id);
        let lim = _mm512_set1_epi32(127);
        for c in 0..n {
            let v = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x.as_ptr().add(16 * c)), idv));
            let v = _mm512_max_epi32(_mm512_min_epi32(v, lim), _mm512_sub_epi32(_mm512_setzero_si512(), lim));
            _mm_storeu_si128(q.as_mut_ptr().add(16 * c) as *mut __m128i, _mm512_cvtepi32_epi8(v));
            bsum[c] = _mm512_reduce_add_epi32(v) as i16;
        }
        d
    }
}
