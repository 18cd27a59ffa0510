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

/// Input rows the SIMD kernels sweep per group of weight rows: the block (`ROW_BLOCK × k` f32)
/// stays in L2 while the weight rows, in L1, meet all of it.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
const ROW_BLOCK: usize = 64;

/// The reference dot product (the definition the SIMD kernels reproduce). ARM always has a
/// vector path (NEON), so there only the tests call it.
#[cfg_attr(target_arch = "aarch64", allow(dead_code))]
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
/// those elements during the call. `isa` must be one the CPU runs (from [`super::isa::isa`]; see
/// the invariant in [`super::isa`]).
#[allow(clippy::too_many_arguments)]
pub unsafe fn block(isa: Isa, x: &[f32], m: usize, w: &[f32], nw: usize, k: usize, out: *mut f32, ldo: usize) {
    assert!(k.is_multiple_of(LANES) && x.len() >= m * k && w.len() >= nw * k);
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `isa` is Avx512 only when the CPU has AVX-512 F/DQ, AVX2 and FMA (the caller's
        // contract); `x` holds m rows and `w` nw rows of k floats (asserted above), `k` is whole
        // 16s, and `out` is the caller's.
        Isa::Avx512 => unsafe { avx512::block(x.as_ptr(), m, w.as_ptr(), nw, k, out, ldo) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `isa` is Avx2 only when the CPU has AVX2 and FMA (the caller's contract); the
        // same asserted bounds of `x`, `w` and `k`, and the caller's `out`.
        Isa::Avx2 => unsafe { avx2::block(x.as_ptr(), m, w.as_ptr(), nw, k, out, ldo) },
        #[cfg(target_arch = "aarch64")]
        // SAFETY: NEON is part of every aarch64 target; the same asserted bounds of `x`, `w` and
        // `k`, and the caller's `out`.
        _ => unsafe { neon::block(x.as_ptr(), m, w.as_ptr(), nw, k, out, ldo) },
        #[cfg(not(target_arch = "aarch64"))]
        _ => {
            for r in 0..m {
                for j in 0..nw {
                    // SAFETY: `r < m` and `j < nw`: the caller guarantees `out` is writable at
                    // `r * ldo + j` and that no one else touches it.
                    unsafe { *out.add(r * ldo + j) = dot(&x[r * k..][..k], &w[j * k..][..k]) };
                }
            }
        }
    }
}

/// Calls `$f::<MR, NR>` for the runtime `($mr, $nr)`, both at most the given maxima.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
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
pub(super) mod avx512;

#[cfg(target_arch = "x86_64")]
pub(super) mod avx2;

#[cfg(target_arch = "aarch64")]
mod neon;

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
            (12, 12, 32),
            (70, 25, 48),
            (131, 14, 64),
            (9, 13, 1040),
            (70, 7, 2096),
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

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn sixteen_sums_at_once_equal_sixteen_reductions() {
        if !available().contains(&Isa::Avx512) {
            return;
        }
        use std::arch::x86_64::*;
        let v = data(256, 5);
        let accs: Vec<[f32; LANES]> = v.chunks_exact(LANES).map(|c| c.try_into().unwrap()).collect();
        // SAFETY: the CPU has AVX-512 (checked above); loads and stores stay within the arrays.
        let got = unsafe {
            let a: [__m512; 16] = std::array::from_fn(|t| _mm512_loadu_ps(accs[t].as_ptr()));
            let mut out = [0f32; 16];
            _mm512_storeu_ps(out.as_mut_ptr(), avx512::hsum16(&a));
            out
        };
        for t in 0..16 {
            assert_eq!(got[t].to_bits(), reduce(&accs[t]).to_bits(), "lane {t}");
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
