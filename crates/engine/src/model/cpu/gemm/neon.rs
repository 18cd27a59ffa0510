//! The NEON kernels of [`super::block`] (every 64-bit ARM CPU): each 16-lane accumulator as two
//! passes over `k` of 8 lanes (two 4-lane registers each), 2 × 4 register tiles (16 accumulator
//! registers of 32), and 1 × 4 tiles for the last odd row (decoding).
//!
//! Without it ARM machines ran one dot product at a time, two loads for every fused
//! multiply-add, for every f32 weight panel: f16 and bf16 weights (safetensors folders), Q4_1
//! (the default model), Q5_0 and Q5_1. The arithmetic is the definition's: lane `l` accumulates
//! `k ≡ l (mod 16)` in increasing `k` with one fused multiply-add each, then the fixed tree.

use super::{LANES, ROW_BLOCK};
use std::arch::aarch64::*;

/// [`super::reduce`] of one 16-lane accumulator held as lanes 0–7 (`lo`, two registers) and
/// 8–15 (`hi`): halves `a[i] + a[i+8]`, quarters, pairs, the last two.
///
/// # Safety
/// NEON (every aarch64 target); registers only.
#[inline(always)]
unsafe fn hsum(lo: [float32x4_t; 2], hi: [float32x4_t; 2]) -> f32 {
    // SAFETY: NEON register arithmetic (the contract).
    unsafe {
        // h[0..4] = a[0..4] + a[8..12], h[4..8] = a[4..8] + a[12..16].
        let (h0, h1) = (vaddq_f32(lo[0], hi[0]), vaddq_f32(lo[1], hi[1]));
        // q[i] = h[i] + h[i+4].
        let q = vaddq_f32(h0, h1);
        // p = (q[0] + q[2], q[1] + q[3]), then p[0] + p[1].
        let p = vadd_f32(vget_low_f32(q), vget_high_f32(q));
        vpadds_f32(p)
    }
}

/// One `MR × NR` tile: lanes 0–7 of every accumulator over all of `k`, then lanes 8–15.
///
/// # Safety
/// Rows `0..MR` of `x` and `0..NR` of `w` (each `k` floats, `k` floats apart, `k` a multiple
/// of 16) are readable; `out` is writable at `i·ldo + j` for `i < MR`, `j < NR`.
#[inline(always)]
unsafe fn tile<const MR: usize, const NR: usize>(x: *const f32, w: *const f32, k: usize, out: *mut f32, ldo: usize) {
    // SAFETY: NEON (every aarch64 target); each load reads 4 floats at `c + 4·v + 4 <= k` (`c`
    // is `half·8` plus whole 16s, `v < 2`, `k` whole 16s) of a row the contract names, and the
    // stores write the tile's outputs.
    unsafe {
        let z = vdupq_n_f32(0.0);
        let mut halves = [[[[z; 2]; NR]; MR]; 2];
        for (half, acc) in halves.iter_mut().enumerate() {
            let mut c = half * 8;
            while c < k {
                let mut xv = [[z; 2]; MR];
                for i in 0..MR {
                    for v in 0..2 {
                        xv[i][v] = vld1q_f32(x.add(i * k + c + 4 * v));
                    }
                }
                for j in 0..NR {
                    let wv = [vld1q_f32(w.add(j * k + c)), vld1q_f32(w.add(j * k + c + 4))];
                    for i in 0..MR {
                        for v in 0..2 {
                            acc[i][j][v] = vfmaq_f32(acc[i][j][v], xv[i][v], wv[v]);
                        }
                    }
                }
                c += LANES;
            }
        }
        for i in 0..MR {
            for j in 0..NR {
                *out.add(i * ldo + j) = hsum(halves[0][i][j], halves[1][i][j]);
            }
        }
    }
}

/// See [`super::block`]: tiles of 2 input rows × 4 weight rows, a block of input rows kept in
/// cache while every weight row meets it; the last odd row against 4 weight rows at a time.
///
/// # Safety
/// `x` holds `m` rows and `w` `nw` rows of `k` floats (`k` a multiple of 16); `out` is writable
/// at `r·ldo + j` for `r < m`, `j < nw`.
pub unsafe fn block(x: *const f32, m: usize, w: *const f32, nw: usize, k: usize, out: *mut f32, ldo: usize) {
    let m2 = m / 2 * 2;
    for r0 in (0..m2).step_by(ROW_BLOCK) {
        let r1 = (r0 + ROW_BLOCK).min(m2);
        for j in (0..nw).step_by(4) {
            let nr = (nw - j).min(4);
            for r in (r0..r1).step_by(2) {
                // SAFETY: input rows `r..r + 2 <= m2 <= m` and weight rows `j..j + nr <= nw`
                // exist, and their outputs lie inside the caller's `out`.
                unsafe {
                    let (xp, wp, op) = (x.add(r * k), w.add(j * k), out.add(r * ldo + j));
                    dispatch_tile!(tile, 2, nr, (xp, wp, k, op, ldo))
                };
            }
        }
    }
    if m2 < m {
        for j in (0..nw).step_by(4) {
            let nr = (nw - j).min(4);
            // SAFETY: the last input row `m2 = m - 1`, weight rows `j..j + nr <= nw`, and their
            // outputs inside `out`.
            unsafe {
                let (xp, wp, op) = (x.add(m2 * k), w.add(j * k), out.add(m2 * ldo + j));
                dispatch_tile!(tile, 1, nr, (xp, wp, k, op, ldo))
            };
        }
    }
}
