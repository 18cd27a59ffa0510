//! The dot products behind every matrix product: `out[r][j] = dot(x[r], w[j])` over f32 rows.
//!
//! The arithmetic, identical on every path: 16 lanes over `k` (lane `l` accumulates the products
//! of `k ≡ l (mod 16)` with one fused multiply-add each, in increasing `k`), then the lanes are
//! summed in a fixed tree: halves (`a[i] + a[i+8]`), quarters, pairs, and the last two. That tree
//! is exactly "add the upper half of the register to the lower half" repeated, so AVX-512 does it
//! in four steps and AVX2 (two 8-lane registers per accumulator) in the same four.
//!
//! The kernels differ only in how many dot products run side by side (register tiles of
//! `MR` input rows × `NR` weight rows), which changes speed, never a value.

// Index loops mirror the arithmetic they define; iterator chains would hide the order.
#![allow(clippy::needless_range_loop)]

use super::isa::Isa;

/// Lanes of the dot product; `k` must be a multiple of this.
pub const LANES: usize = 16;

/// The reference dot product (the definition the SIMD kernels reproduce).
#[inline]
pub fn dot(x: &[f32], w: &[f32]) -> f32 {
    debug_assert!(x.len() == w.len() && x.len().is_multiple_of(LANES));
    let mut acc = [0f32; LANES];
    for (xc, wc) in x.chunks_exact(LANES).zip(w.chunks_exact(LANES)) {
        for l in 0..LANES {
            acc[l] = xc[l].mul_add(wc[l], acc[l]);
        }
    }
    reduce(&acc)
}

/// The fixed reduction tree of the 16 lanes.
#[inline(always)]
pub fn reduce(a: &[f32; LANES]) -> f32 {
    let mut h = [0f32; 8];
    for i in 0..8 {
        h[i] = a[i] + a[i + 8];
    }
    let q = [h[0] + h[4], h[1] + h[5], h[2] + h[6], h[3] + h[7]];
    let p = [q[0] + q[2], q[1] + q[3]];
    p[0] + p[1]
}

/// `out[r * ldo + j] = dot(x[r], w[j])` for `r < m`, `j < nw`; `x` holds `m` rows and `w` holds
/// `nw` rows, each `k` long and contiguous.
///
/// # Safety
/// `out` must be valid for writes at every `r * ldo + j` above, and no other thread may access
/// those elements during the call.
#[allow(clippy::too_many_arguments)]
pub unsafe fn block(isa: Isa, x: &[f32], m: usize, w: &[f32], nw: usize, k: usize, out: *mut f32, ldo: usize) {
    assert!(k.is_multiple_of(LANES) && x.len() >= m * k && w.len() >= nw * k);
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `isa` is only Avx512/Avx2 when the CPU has those features; bounds asserted above.
        Isa::Avx512 => unsafe { avx512::block(x.as_ptr(), m, w.as_ptr(), nw, k, out, ldo) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Isa::Avx2 => unsafe { avx2::block(x.as_ptr(), m, w.as_ptr(), nw, k, out, ldo) },
        _ => {
            for r in 0..m {
                for j in 0..nw {
                    // SAFETY: the caller guarantees `out` is valid here.
                    unsafe { *out.add(r * ldo + j) = dot(&x[r * k..][..k], &w[j * k..][..k]) };
                }
            }
        }
    }
}

/// Calls `$f::<MR, NR>` for the runtime `($mr, $nr)`, both at most the given maxima.
#[cfg(target_arch = "x86_64")]
macro_rules! dispatch_tile {
    ($f:ident, $mr:expr, $nr:expr, ($($args:expr),*)) => {
        match ($mr, $nr) {
            (1, 1) => $f::<1, 1>($($args),*),
            (1, 2) => $f::<1, 2>($($args),*),
            (1, 3) => $f::<1, 3>($($args),*),
            (1, 4) => $f::<1, 4>($($args),*),
            (1, 5) => $f::<1, 5>($($args),*),
            (1, 6) => $f::<1, 6>($($args),*),
            (1, 7) => $f::<1, 7>($($args),*),
            (1, 8) => $f::<1, 8>($($args),*),
            (2, 1) => $f::<2, 1>($($args),*),
            (2, 2) => $f::<2, 2>($($args),*),
            (2, 3) => $f::<2, 3>($($args),*),
            (2, 4) => $f::<2, 4>($($args),*),
            (2, 5) => $f::<2, 5>($($args),*),
            (2, 6) => $f::<2, 6>($($args),*),
            (2, 7) => $f::<2, 7>($($args),*),
            (2, 8) => $f::<2, 8>($($args),*),
            (3, 1) => $f::<3, 1>($($args),*),
            (3, 2) => $f::<3, 2>($($args),*),
            (3, 3) => $f::<3, 3>($($args),*),
            (3, 4) => $f::<3, 4>($($args),*),
            (3, 5) => $f::<3, 5>($($args),*),
            (3, 6) => $f::<3, 6>($($args),*),
            (4, 1) => $f::<4, 1>($($args),*),
            (4, 2) => $f::<4, 2>($($args),*),
            (4, 3) => $f::<4, 3>($($args),*),
            (4, 4) => $f::<4, 4>($($args),*),
            (4, 5) => $f::<4, 5>($($args),*),
            (4, 6) => $f::<4, 6>($($args),*),
            _ => unreachable!("tile {}x{}", $mr, $nr),
        }
    };
}

#[cfg(target_arch = "x86_64")]
pub(super) mod avx512 {
    use super::LANES;
    use std::arch::x86_64::*;

    /// The reduction tree of one 16-lane accumulator.
    #[inline]
    #[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
    pub fn hsum(v: __m512) -> f32 {
        let h = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps::<1>(v));
        let q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps::<1>(h));
        let p = _mm_add_ps(q, _mm_movehl_ps(q, q));
        _mm_cvtss_f32(_mm_add_ss(p, _mm_movehdup_ps(p)))
    }

    /// One `MR × NR` tile over the whole of `k`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
    unsafe fn tile<const MR: usize, const NR: usize>(
        x: *const f32,
        w: *const f32,
        k: usize,
        out: *mut f32,
        ldo: usize,
    ) {
        let mut acc = [[_mm512_setzero_ps(); NR]; MR];
        let mut c = 0;
        while c < k {
            let mut wv = [_mm512_setzero_ps(); NR];
            for j in 0..NR {
                wv[j] = unsafe { _mm512_loadu_ps(w.add(j * k + c)) };
            }
            for i in 0..MR {
                let xv = unsafe { _mm512_loadu_ps(x.add(i * k + c)) };
                for j in 0..NR {
                    acc[i][j] = _mm512_fmadd_ps(xv, wv[j], acc[i][j]);
                }
            }
            c += LANES;
        }
        for i in 0..MR {
            for j in 0..NR {
                unsafe { *out.add(i * ldo + j) = hsum(acc[i][j]) };
            }
        }
    }

    /// See [`super::block`]. Input rows in tiles of 4 (weight rows 6 at a time) while at least 4
    /// remain, the rest (decoding: 1 or 2 rows) against 8 weight rows at a time.
    #[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
    pub unsafe fn block(x: *const f32, m: usize, w: *const f32, nw: usize, k: usize, out: *mut f32, ldo: usize) {
        let mut r = 0;
        while r < m {
            let mr = (m - r).min(4);
            let nr_max = if mr >= 3 { 6 } else { 8 };
            let mut j = 0;
            while j < nw {
                let nr = (nw - j).min(nr_max);
                let (xp, wp, op) = unsafe { (x.add(r * k), w.add(j * k), out.add(r * ldo + j)) };
                unsafe { dispatch_tile!(tile, mr, nr, (xp, wp, k, op, ldo)) };
                j += nr;
            }
            r += mr;
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) mod avx2 {
    use super::LANES;
    use std::arch::x86_64::*;

    /// The reduction tree of one 16-lane accumulator held as two 8-lane halves.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub fn hsum(lo: __m256, hi: __m256) -> f32 {
        let h = _mm256_add_ps(lo, hi);
        let q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps::<1>(h));
        let p = _mm_add_ps(q, _mm_movehl_ps(q, q));
        _mm_cvtss_f32(_mm_add_ss(p, _mm_movehdup_ps(p)))
    }

    /// One `MR × NR` tile: the low 8 lanes of every accumulator over all of `k`, then the high 8
    /// (16 registers do not hold both halves of a useful tile).
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn tile<const MR: usize, const NR: usize>(
        x: *const f32,
        w: *const f32,
        k: usize,
        out: *mut f32,
        ldo: usize,
    ) {
        let mut halves = [[[_mm256_setzero_ps(); NR]; MR]; 2];
        for (half, acc) in halves.iter_mut().enumerate() {
            let mut c = half * 8;
            while c < k {
                let mut wv = [_mm256_setzero_ps(); NR];
                for j in 0..NR {
                    wv[j] = unsafe { _mm256_loadu_ps(w.add(j * k + c)) };
                }
                for i in 0..MR {
                    let xv = unsafe { _mm256_loadu_ps(x.add(i * k + c)) };
                    for j in 0..NR {
                        acc[i][j] = _mm256_fmadd_ps(xv, wv[j], acc[i][j]);
                    }
                }
                c += LANES;
            }
        }
        for i in 0..MR {
            for j in 0..NR {
                unsafe { *out.add(i * ldo + j) = hsum(halves[0][i][j], halves[1][i][j]) };
            }
        }
    }

    /// See [`super::block`]: tiles of 3 input rows × 4 weight rows, 1–2 rows × 6 when decoding.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn block(x: *const f32, m: usize, w: *const f32, nw: usize, k: usize, out: *mut f32, ldo: usize) {
        let mut r = 0;
        while r < m {
            let mr = (m - r).min(3);
            let nr_max = if mr == 3 { 4 } else { 6 };
            let mut j = 0;
            while j < nw {
                let nr = (nw - j).min(nr_max);
                let (xp, wp, op) = unsafe { (x.add(r * k), w.add(j * k), out.add(r * ldo + j)) };
                unsafe { dispatch_tile!(tile, mr, nr, (xp, wp, k, op, ldo)) };
                j += nr;
            }
            r += mr;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::cpu::isa::available;

    fn data(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i * 7919 + seed * 104729) % 1013) as f32 / 1013.0 - 0.5) * 1.7)
            .collect()
    }

    #[test]
    fn every_path_equals_the_reference_bit_for_bit_for_every_tile_shape() {
        for (m, nw, k) in [
            (1, 1, 16),
            (1, 9, 48),
            (2, 17, 64),
            (3, 13, 96),
            (5, 7, 32),
            (7, 19, 160),
            (13, 23, 576),
        ] {
            let x = data(m * k, 1);
            let w = data(nw * k, 2);
            let want: Vec<f32> = (0..m * nw)
                .map(|i| dot(&x[i / nw * k..][..k], &w[i % nw * k..][..k]))
                .collect();
            for isa in available() {
                let mut got = vec![f32::NAN; m * nw];
                // SAFETY: `got` has m × nw elements, ldo = nw.
                unsafe { block(isa, &x, m, &w, nw, k, got.as_mut_ptr(), nw) };
                assert_eq!(
                    got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    "{isa:?} m={m} nw={nw} k={k}: every path must compute the reference arithmetic"
                );
            }
        }
    }

    #[test]
    fn the_reference_is_a_dot_product() {
        let x = data(576, 3);
        let w = data(576, 4);
        let exact: f64 = x.iter().zip(&w).map(|(a, b)| *a as f64 * *b as f64).sum();
        assert!((dot(&x, &w) as f64 - exact).abs() < 1e-4);
    }
}
