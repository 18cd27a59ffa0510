//! Decoding-time products for the common 32-value block formats: each weight block is
//! dequantized in registers and met with the input at once, with no row buffer in between.
//!
//! A block of 32 values fills two 16-lane vectors in `k` order (values 0–15, then 16–31), each
//! value computed exactly as the format's reference decoder computes it, and each goes into the
//! accumulator with one fused multiply-add. That is lane `l` accumulating `k ≡ l (mod 16)` in
//! increasing `k`, the arithmetic of [`super::gemm::dot`] on the dequantized row, so these
//! kernels give the same bits as the panel path used for prefill.
//!
//! Decoding streams every weight once per token, from memory rather than cache on most
//! machines, so it is bound by memory bandwidth: the kernels read four rows side by side and
//! prefetch the next four.

use super::isa::Isa;
use candle_core::quantized::GgmlDType;

/// `out[r·ldo + i] = dot(x[r], W[i])` for `r < m ≤ 3` and `i < rows`, with `W` row `i` at
/// `w + i·row_bytes`.
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

/// The fused kernel for `dtype` on `isa`, if there is one.
pub fn gemv(dtype: GgmlDType, isa: Isa) -> Option<Gemv> {
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512 {
        return match dtype {
            GgmlDType::Q4_0 => Some(avx512::gemv::<avx512::Q4_0>),
            GgmlDType::Q4_1 => Some(avx512::gemv::<avx512::Q4_1>),
            GgmlDType::Q5_0 => Some(avx512::gemv::<avx512::Q5_0>),
            GgmlDType::Q8_0 => Some(avx512::gemv::<avx512::Q8_0>),
            _ => None,
        };
    }
    let _ = (dtype, isa);
    None
}

#[cfg(target_arch = "x86_64")]
pub(super) mod avx512 {
    use super::super::gemm::avx512::hsum;
    use std::arch::x86_64::*;

    /// One 32-value block format: its size and its values as two vectors in `k` order.
    pub trait Block {
        const BYTES: usize;
        unsafe fn decode(p: *const u8) -> (__m512, __m512);
    }

    /// `[d, m]` from the two leading f16 values of a block.
    #[inline(always)]
    unsafe fn halves(p: *const u8) -> __m128 {
        unsafe { _mm_cvtph_ps(_mm_cvtsi32_si128((p as *const i32).read_unaligned())) }
    }

    pub struct Q4_0;
    impl Block for Q4_0 {
        const BYTES: usize = 18;
        #[inline(always)]
        unsafe fn decode(p: *const u8) -> (__m512, __m512) {
            unsafe {
                let d = _mm512_broadcastss_ps(halves(p));
                let v = _mm512_cvtepu8_epi32(_mm_loadu_si128(p.add(2) as *const __m128i));
                let eight = _mm512_set1_epi32(8);
                let lo = _mm512_sub_epi32(_mm512_and_si512(v, _mm512_set1_epi32(0xF)), eight);
                let hi = _mm512_sub_epi32(_mm512_srli_epi32::<4>(v), eight);
                (
                    _mm512_mul_ps(_mm512_cvtepi32_ps(lo), d),
                    _mm512_mul_ps(_mm512_cvtepi32_ps(hi), d),
                )
            }
        }
    }

    pub struct Q4_1;
    impl Block for Q4_1 {
        const BYTES: usize = 20;
        #[inline(always)]
        unsafe fn decode(p: *const u8) -> (__m512, __m512) {
            unsafe {
                let dm = halves(p);
                let d = _mm512_broadcastss_ps(dm);
                let m = _mm512_broadcastss_ps(_mm_movehdup_ps(dm));
                let v = _mm512_cvtepu8_epi32(_mm_loadu_si128(p.add(4) as *const __m128i));
                let lo = _mm512_cvtepi32_ps(_mm512_and_si512(v, _mm512_set1_epi32(0xF)));
                let hi = _mm512_cvtepi32_ps(_mm512_srli_epi32::<4>(v));
                // q * d + m with two roundings, as the reference decoder.
                (
                    _mm512_add_ps(_mm512_mul_ps(lo, d), m),
                    _mm512_add_ps(_mm512_mul_ps(hi, d), m),
                )
            }
        }
    }

    pub struct Q5_0;
    impl Block for Q5_0 {
        const BYTES: usize = 22;
        #[inline(always)]
        unsafe fn decode(p: *const u8) -> (__m512, __m512) {
            unsafe {
                let d = _mm512_broadcastss_ps(halves(p));
                let qh = (p.add(2) as *const u32).read_unaligned();
                let v = _mm512_cvtepu8_epi32(_mm_loadu_si128(p.add(6) as *const __m128i));
                let sixteen = _mm512_set1_epi32(16);
                let lo = _mm512_and_si512(v, _mm512_set1_epi32(0xF));
                let lo = _mm512_mask_sub_epi32(lo, !(qh as u16), lo, sixteen);
                let hi = _mm512_srli_epi32::<4>(v);
                let hi = _mm512_mask_sub_epi32(hi, !((qh >> 16) as u16), hi, sixteen);
                (
                    _mm512_mul_ps(_mm512_cvtepi32_ps(lo), d),
                    _mm512_mul_ps(_mm512_cvtepi32_ps(hi), d),
                )
            }
        }
    }

    pub struct Q8_0;
    impl Block for Q8_0 {
        const BYTES: usize = 34;
        #[inline(always)]
        unsafe fn decode(p: *const u8) -> (__m512, __m512) {
            unsafe {
                let d = _mm512_broadcastss_ps(halves(p));
                let lo = _mm512_cvtepi8_epi32(_mm_loadu_si128(p.add(2) as *const __m128i));
                let hi = _mm512_cvtepi8_epi32(_mm_loadu_si128(p.add(18) as *const __m128i));
                (
                    _mm512_mul_ps(_mm512_cvtepi32_ps(lo), d),
                    _mm512_mul_ps(_mm512_cvtepi32_ps(hi), d),
                )
            }
        }
    }

    /// Rows of `W` four at a time (fewer at the end) against `M` input rows.
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
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); NR]; M];
            let next = w.add(NR * row_bytes);
            for b in 0..k / 32 {
                let mut xv = [[_mm512_setzero_ps(); 2]; M];
                for r in 0..M {
                    xv[r] = [
                        _mm512_loadu_ps(x.add(r * k + 32 * b)),
                        _mm512_loadu_ps(x.add(r * k + 32 * b + 16)),
                    ];
                }
                for i in 0..NR {
                    let p = w.add(i * row_bytes + b * B::BYTES);
                    if prefetch {
                        _mm_prefetch::<_MM_HINT_T0>(next.add(i * row_bytes + b * B::BYTES) as *const i8);
                    }
                    let (lo, hi) = B::decode(p);
                    for r in 0..M {
                        acc[r][i] = _mm512_fmadd_ps(xv[r][0], lo, acc[r][i]);
                        acc[r][i] = _mm512_fmadd_ps(xv[r][1], hi, acc[r][i]);
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
