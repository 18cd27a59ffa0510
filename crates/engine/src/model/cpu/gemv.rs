//! Decoding-time products for the formats with an AVX-512 or AVX2 block decoder
//! ([`super::formats`]'s [`Block`](super::formats::Block)s and
//! [`BlockAvx2`](super::formats::BlockAvx2)s): each weight block is dequantized in registers and
//! met with the input at once, with no row buffer in between.
//!
//! A block of 32 values fills two 16-lane vectors in `k` order (values 0–15, then 16–31), each
//! value computed exactly as the format's reference decoder computes it, and each goes into the
//! accumulator with one fused multiply-add (with AVX2, four 8-lane vectors into the two halves
//! of the accumulator). That is lane `l` accumulating `k ≡ l (mod 16)` in increasing `k`, the
//! arithmetic of [`super::gemm::dot`] on the dequantized row, so these kernels give the same bits
//! as the panel path used for prefill.
//!
//! Decoding streams every weight once per token, from memory rather than cache on most
//! machines, so it is bound by memory bandwidth: the kernels read four rows side by side and
//! prefetch the next four.

use super::isa::Isa;
use candle_core::quantized::GgmlDType;

/// `out[r·ldo + i] = dot(x[r], W[i])` for `r < m ≤ 3` and `i < rows`, with `W` row `i` at
/// `w + i·row_bytes`.
///
/// # Safety
/// The kernel must come from [`gemv`] called with an [`Isa`] this CPU runs (see
/// [`super::isa`]); `w` must hold `rows` rows of `row_bytes` bytes, each the whole blocks of
/// `k` values; `x` must hold `m` rows of `k` floats, `1 <= m <= MAX_M`; `out` must be writable
/// at every `r·ldo + i` above, by this call alone.
pub type Gemv = unsafe fn(
    w: *const u8,
    row_bytes: usize,
    rows: usize,
    x: *const f32,
    m: usize,
    k: usize,
    out: *mut f32,
    ldo: usize,
);

/// Most input rows the fused kernels take.
pub const MAX_M: usize = 3;

/// The fused kernel for `dtype` on `isa`, if there is one (see [`super::formats::FORMATS`]).
pub fn gemv(dtype: GgmlDType, isa: Isa) -> Option<Gemv> {
    match isa {
        Isa::Avx512 => super::formats::of(dtype)?.gemv_avx512,
        Isa::Avx2 => super::formats::of(dtype)?.gemv_avx2,
        Isa::Portable => None,
    }
}

/// Prefetches bytes `at..at + bytes` (one weight block) of each of the `NR` rows at `rows`.
///
/// # Safety
/// Those bytes lie inside the caller's weights (a prefetch does not fault, but the addresses
/// must stay inside the allocation for the pointer arithmetic to be defined).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn prefetch_block<const NR: usize>(rows: *const u8, row_bytes: usize, at: usize, bytes: usize) {
    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
    for i in 0..NR {
        for line in (0..bytes).step_by(64) {
            // SAFETY: inside row `i < NR` at `at + line < at + bytes` (the contract).
            unsafe { _mm_prefetch::<_MM_HINT_T0>(rows.add(i * row_bytes + at + line) as *const i8) };
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) mod avx512 {
    use super::super::formats::Block;
    use super::super::gemm::avx512::hsum;
    use std::arch::x86_64::*;

    /// Rows `0..NR` of `W` against `M` input rows (`k` values each); with `prefetch`, the same
    /// blocks of the next `NR` rows are prefetched.
    ///
    /// # Safety
    /// The CPU has AVX-512 F/BW/DQ/VL, AVX2, FMA and F16C; `NR` rows of `row_bytes` bytes (whole
    /// blocks of `k` values) are readable at `w`, and `NR` more after them when `prefetch`; `M`
    /// rows of `k` floats at `x`; `out` is writable at `r·ldo + i` for `r < M`, `i < NR`.
    #[inline(always)]
    // Register tiles indexed by row and column read best as index loops; they unroll fully.
    #[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
    unsafe fn rows<B: Block, const M: usize, const NR: usize>(
        w: *const u8,
        row_bytes: usize,
        prefetch: bool,
        x: *const f32,
        k: usize,
        out: *mut f32,
        ldo: usize,
    ) {
        // SAFETY: the contract: every block read (`blk < k / (32·SUBS)`, `sub < SUBS`) lies in
        // rows `0..NR`, every prefetch address in the next `NR` rows (only when `prefetch`),
        // every input load inside row `r < M` (`c + 32 <= k`), every store at an output of the
        // tile; the features cover every intrinsic.
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); NR]; M];
            let next = w.add(NR * row_bytes);
            for blk in 0..k / (32 * B::SUBS) {
                if prefetch {
                    super::prefetch_block::<NR>(next, row_bytes, blk * B::BYTES, B::BYTES);
                }
                for sub in 0..B::SUBS {
                    let c = 32 * (blk * B::SUBS + sub);
                    let mut xv = [[_mm512_setzero_ps(); 2]; M];
                    for r in 0..M {
                        xv[r] = [
                            _mm512_loadu_ps(x.add(r * k + c)),
                            _mm512_loadu_ps(x.add(r * k + c + 16)),
                        ];
                    }
                    for i in 0..NR {
                        let (lo, hi) = B::decode(w.add(i * row_bytes + blk * B::BYTES), sub);
                        for r in 0..M {
                            acc[r][i] = _mm512_fmadd_ps(xv[r][0], lo, acc[r][i]);
                            acc[r][i] = _mm512_fmadd_ps(xv[r][1], hi, acc[r][i]);
                        }
                    }
                }
            }
            for r in 0..M {
                for i in 0..NR {
                    *out.add(r * ldo + i) = hsum(acc[r][i]);
                }
            }
        }
    }

    /// See [`super::Gemv`].
    ///
    /// # Safety
    /// As [`super::Gemv`]: `w`, `x` and `out` cover `n` weight rows, `m` input rows and their
    /// outputs, and the CPU has the features enabled here.
    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c")]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn gemv<B: Block>(
        w: *const u8,
        row_bytes: usize,
        n: usize,
        x: *const f32,
        m: usize,
        k: usize,
        out: *mut f32,
        ldo: usize,
    ) {
        // SAFETY: each call covers weight rows `i..i + nr <= n` (prefetching rows
        // `i + nr..i + 2·nr` only when `pf`, i.e. they exist), the `m` input rows and the
        // outputs of those rows: all inside the caller's bounds. The features are this function's.
        unsafe {
            let mut i = 0;
            while i < n {
                let nr = (n - i).min(4);
                let pf = i + 2 * nr <= n;
                let (wp, op) = (w.add(i * row_bytes), out.add(i));
                match (m, nr) {
                    (1, 4) => rows::<B, 1, 4>(wp, row_bytes, pf, x, k, op, ldo),
                    (2, 4) => rows::<B, 2, 4>(wp, row_bytes, pf, x, k, op, ldo),
                    (3, 4) => rows::<B, 3, 4>(wp, row_bytes, pf, x, k, op, ldo),
                    (1, _) => {
                        for j in 0..nr {
                            rows::<B, 1, 1>(wp.add(j * row_bytes), row_bytes, false, x, k, op.add(j), ldo)
                        }
                    }
                    (2, _) => {
                        for j in 0..nr {
                            rows::<B, 2, 1>(wp.add(j * row_bytes), row_bytes, false, x, k, op.add(j), ldo)
                        }
                    }
                    (3, _) => {
                        for j in 0..nr {
                            rows::<B, 3, 1>(wp.add(j * row_bytes), row_bytes, false, x, k, op.add(j), ldo)
                        }
                    }
                    _ => unreachable!("{m} input rows"),
                }
                i += nr;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) mod avx2 {
    use super::super::formats::BlockAvx2;
    use super::super::gemm::avx2::hsum;
    use std::arch::x86_64::*;

    /// Rows `0..NR` of `W` against `M` input rows (`k` values each), each accumulator as two
    /// 8-lane halves (lanes 0–7 take values 0–7 and 16–23 of every block, lanes 8–15 the
    /// others); with `prefetch`, the same blocks of the next `NR` rows are prefetched.
    ///
    /// # Safety
    /// The CPU has AVX2, FMA and F16C; `NR` rows of `row_bytes` bytes (whole blocks of `k`
    /// values) are readable at `w`, and `NR` more after them when `prefetch`; `M` rows of `k`
    /// floats at `x`; `out` is writable at `r·ldo + i` for `r < M`, `i < NR`.
    #[inline(always)]
    // Register tiles indexed by row and column read best as index loops; they unroll fully.
    #[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
    unsafe fn rows<B: BlockAvx2, const M: usize, const NR: usize>(
        w: *const u8,
        row_bytes: usize,
        prefetch: bool,
        x: *const f32,
        k: usize,
        out: *mut f32,
        ldo: usize,
    ) {
        // SAFETY: the contract: every block read (`blk < k / 32`) lies in rows `0..NR`, every
        // prefetch address in the next `NR` rows (only when `prefetch`), every input load inside
        // row `r < M` (`c + 32 <= k`), every store at an output of the tile; the features cover
        // every intrinsic.
        unsafe {
            let mut acc = [[[_mm256_setzero_ps(); 2]; NR]; M];
            let next = w.add(NR * row_bytes);
            for blk in 0..k / 32 {
                if prefetch {
                    super::prefetch_block::<NR>(next, row_bytes, blk * B::BYTES, B::BYTES);
                }
                let c = 32 * blk;
                for i in 0..NR {
                    let v = B::decode8(w.add(i * row_bytes + blk * B::BYTES));
                    for r in 0..M {
                        for q in 0..4 {
                            let xv = _mm256_loadu_ps(x.add(r * k + c + 8 * q));
                            acc[r][i][q % 2] = _mm256_fmadd_ps(xv, v[q], acc[r][i][q % 2]);
                        }
                    }
                }
            }
            for r in 0..M {
                for i in 0..NR {
                    *out.add(r * ldo + i) = hsum(acc[r][i][0], acc[r][i][1]);
                }
            }
        }
    }

    /// Weight rows `0..n` against `M` input rows, `NR` rows at a time (the last few one by one).
    ///
    /// # Safety
    /// As [`super::Gemv`] with `m = M`, and the CPU has AVX2, FMA and F16C.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn walk<B: BlockAvx2, const M: usize, const NR: usize>(
        w: *const u8,
        row_bytes: usize,
        n: usize,
        x: *const f32,
        k: usize,
        out: *mut f32,
        ldo: usize,
    ) {
        // SAFETY: each call covers weight rows `i..i + NR <= n` (or one row `i < n`), prefetching
        // rows `i + NR..i + 2·NR` only when they exist, and those rows' outputs: all inside the
        // caller's bounds.
        unsafe {
            let mut i = 0;
            while i + NR <= n {
                let pf = i + 2 * NR <= n;
                rows::<B, M, NR>(w.add(i * row_bytes), row_bytes, pf, x, k, out.add(i), ldo);
                i += NR;
            }
            for j in i..n {
                rows::<B, M, 1>(w.add(j * row_bytes), row_bytes, false, x, k, out.add(j), ldo);
            }
        }
    }

    /// See [`super::Gemv`]. Four weight rows at a time for one input row (8 accumulators of the
    /// 16 registers), two for two or three.
    ///
    /// # Safety
    /// As [`super::Gemv`]: `w`, `x` and `out` cover `n` weight rows, `m` input rows and their
    /// outputs, and the CPU has the features enabled here.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn gemv<B: BlockAvx2>(
        w: *const u8,
        row_bytes: usize,
        n: usize,
        x: *const f32,
        m: usize,
        k: usize,
        out: *mut f32,
        ldo: usize,
    ) {
        // SAFETY: the caller's bounds, passed on; `m` selects the instance.
        unsafe {
            match m {
                1 => walk::<B, 1, 4>(w, row_bytes, n, x, k, out, ldo),
                2 => walk::<B, 2, 2>(w, row_bytes, n, x, k, out, ldo),
                3 => walk::<B, 3, 2>(w, row_bytes, n, x, k, out, ldo),
                _ => unreachable!("{m} input rows"),
            }
        }
    }
}
