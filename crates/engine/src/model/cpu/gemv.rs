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

/// The fused kernel for `dtype` on `isa`, if there is one.
pub fn gemv(dtype: GgmlDType, isa: Isa) -> Option<Gemv> {
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512 {
        return match dtype {
            GgmlDType::Q4_0 => Some(avx512::gemv::<avx512::Q4_0>),
            GgmlDType::Q4_1 => Some(avx512::gemv::<avx512::Q4_1>),
            GgmlDType::Q5_0 => Some(avx512::gemv::<avx512::Q5_0>),
            GgmlDType::Q8_0 => Some(avx512::gemv::<avx512::Q8_0>),
            GgmlDType::Q4K => Some(avx512::gemv::<avx512::Q4K>),
            GgmlDType::Q6K => Some(avx512::gemv::<avx512::Q6K>),
            GgmlDType::F16 => Some(avx512::gemv::<avx512::F16>),
            GgmlDType::BF16 => Some(avx512::gemv::<avx512::Bf16>),
            _ => None,
        };
    }
    let _ = (dtype, isa);
    None
}

#[cfg(target_arch = "x86_64")]
pub(super) mod avx512 {
    use super::super::dequant::scale_min_k4;
    use super::super::gemm::avx512::hsum;
    use std::arch::x86_64::*;

    /// One block format: its size, its number of 32-value sub-blocks, and the values of
    /// sub-block `s` as two vectors in `k` order.
    pub trait Block {
        const BYTES: usize;
        /// 32-value sub-blocks per block (1 for the 32-value formats, 8 for the K-quants).
        const SUBS: usize = 1;
        /// The 32 values of sub-block `s` of the block at `p`.
        ///
        /// # Safety
        /// `BYTES` bytes at `p` are readable, `s < SUBS`, and the CPU has AVX-512 F/BW/DQ/VL,
        /// AVX2 and F16C (the decoders are inlined into functions that enable them).
        unsafe fn decode(p: *const u8, s: usize) -> (__m512, __m512);
    }

    /// `[d, m]` from the two leading f16 values of a block.
    ///
    /// # Safety
    /// 4 bytes at `p` are readable and the CPU has F16C.
    #[inline(always)]
    unsafe fn halves(p: *const u8) -> __m128 {
        // SAFETY: the 4 bytes at `p` are readable (unaligned read) and F16C is present (the
        // contract).
        unsafe { _mm_cvtph_ps(_mm_cvtsi32_si128((p as *const i32).read_unaligned())) }
    }

    pub struct Q4_0;
    impl Block for Q4_0 {
        const BYTES: usize = 18;
        #[inline(always)]
        unsafe fn decode(p: *const u8, _s: usize) -> (__m512, __m512) {
            // SAFETY: reads bytes 0..4 (`d`) and 2..18 (the nibbles) of the 18-byte block, all
            // readable by the contract, with the contract's CPU features.
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
        unsafe fn decode(p: *const u8, _s: usize) -> (__m512, __m512) {
            // SAFETY: reads bytes 0..4 (`d`, `m`) and 4..20 (the nibbles) of the 20-byte block, all
            // readable by the contract, with the contract's CPU features.
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
        unsafe fn decode(p: *const u8, _s: usize) -> (__m512, __m512) {
            // SAFETY: reads bytes 0..4 (`d`), 2..6 (`qh`) and 6..22 (the nibbles) of the 22-byte
            // block, all readable by the contract, with the contract's CPU features.
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
        unsafe fn decode(p: *const u8, _s: usize) -> (__m512, __m512) {
            // SAFETY: reads bytes 0..4 (`d`), 2..18 and 18..34 (the values) of the 34-byte block,
            // all readable by the contract, with the contract's CPU features.
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

    /// f16 weights, 32 values a block (exact conversion).
    pub struct F16;
    impl Block for F16 {
        const BYTES: usize = 64;
        #[inline(always)]
        unsafe fn decode(p: *const u8, _s: usize) -> (__m512, __m512) {
            // SAFETY: reads bytes 0..32 and 32..64 of the 64-byte block, all readable by the
            // contract, with the contract's CPU features.
            unsafe {
                (
                    _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i)),
                    _mm512_cvtph_ps(_mm256_loadu_si256(p.add(32) as *const __m256i)),
                )
            }
        }
    }

    /// bf16 weights, 32 values a block: the 16 bits become the high half of an f32 (exact).
    pub struct Bf16;
    impl Block for Bf16 {
        const BYTES: usize = 64;
        #[inline(always)]
        unsafe fn decode(p: *const u8, _s: usize) -> (__m512, __m512) {
            // SAFETY: reads bytes 0..32 and 32..64 of the 64-byte block, all readable by the
            // contract, with the contract's CPU features.
            unsafe {
                let widen = |q: *const u8| {
                    let v = _mm512_cvtepu16_epi32(_mm256_loadu_si256(q as *const __m256i));
                    _mm512_castsi512_ps(_mm512_slli_epi32::<16>(v))
                };
                (widen(p), widen(p.add(32)))
            }
        }
    }

    /// Q4_K (144-byte blocks of 256): sub-block `s` is `(d · sc) · q - (dmin · m)`, its 4-bit
    /// values the low (even `s`) or high (odd `s`) halves of 32 bytes.
    pub struct Q4K;
    impl Block for Q4K {
        const BYTES: usize = 144;
        const SUBS: usize = 8;
        #[inline(always)]
        unsafe fn decode(p: *const u8, s: usize) -> (__m512, __m512) {
            // SAFETY: with `s < 8`, reads bytes 0..4 (`d`, `dmin`), 4..16 (scales) and `16 +
            // 32·(s/2)` + 0..32 (at most 144) of the 144-byte block, all readable by the contract,
            // with the contract's CPU features.
            unsafe {
                let dm = halves(p);
                // The block's 12 bytes of packed scales and mins, unpacked as the portable decoder does.
                let (sc, m) = scale_min_k4(s, std::slice::from_raw_parts(p.add(4), 12));
                let d1 = _mm_cvtss_f32(dm) * sc as f32;
                let m1 = _mm_cvtss_f32(_mm_movehdup_ps(dm)) * m as f32;
                let q = p.add(16 + s / 2 * 32);
                let shift = _mm_cvtsi32_si128(4 * (s & 1) as i32);
                let nibbles = |v: __m128i| {
                    let v = _mm512_srl_epi32(_mm512_cvtepu8_epi32(v), shift);
                    _mm512_cvtepi32_ps(_mm512_and_si512(v, _mm512_set1_epi32(0xF)))
                };
                let lo = nibbles(_mm_loadu_si128(q as *const __m128i));
                let hi = nibbles(_mm_loadu_si128(q.add(16) as *const __m128i));
                let (d1, m1) = (_mm512_set1_ps(d1), _mm512_set1_ps(m1));
                // d1 · q − m1 with two roundings, as the reference decoder.
                (
                    _mm512_sub_ps(_mm512_mul_ps(d1, lo), m1),
                    _mm512_sub_ps(_mm512_mul_ps(d1, hi), m1),
                )
            }
        }
    }

    /// Q6_K (210-byte blocks of 256): 4 low bits in `ql`, 2 high bits in `qh`, a signed 8-bit
    /// scale per 16 values and one f16 `d`: `(d · sc) · (q − 32)`.
    pub struct Q6K;
    impl Block for Q6K {
        const BYTES: usize = 210;
        const SUBS: usize = 8;
        #[inline(always)]
        unsafe fn decode(p: *const u8, s: usize) -> (__m512, __m512) {
            // SAFETY: with `s < 8`, reads `ql` below byte 128, `qh` in 128..192, the two scales in
            // 192..208 and `d` at 208..210 of the 210-byte block, all readable by the contract,
            // with the contract's CPU features.
            unsafe {
                let (half, t) = (s / 4, s % 4);
                let ql = p.add(64 * half + 32 * (t & 1));
                let qh = p.add(128 + 32 * half);
                let sc = p.add(192 + 8 * half + 2 * t);
                let d = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(
                    (p.add(208) as *const u16).read_unaligned() as i32,
                )));
                // The 6-bit values of all 32 positions as bytes: (4 bits of ql) | (2 bits of qh) << 4,
                // minus 32. Shifts are 16-bit wide; the masks drop what crosses a byte.
                let l = _mm256_loadu_si256(ql as *const __m256i);
                let l = _mm256_and_si256(
                    _mm256_srl_epi16(l, _mm_cvtsi32_si128(4 * (t / 2) as i32)),
                    _mm256_set1_epi8(0x0F),
                );
                let h = _mm256_loadu_si256(qh as *const __m256i);
                let h = if t <= 2 {
                    _mm256_sll_epi16(h, _mm_cvtsi32_si128((4 - 2 * t) as i32))
                } else {
                    _mm256_srli_epi16::<2>(h)
                };
                let h = _mm256_and_si256(h, _mm256_set1_epi8(0x30));
                let q = _mm256_sub_epi8(_mm256_or_si256(l, h), _mm256_set1_epi8(32));
                let values = |i: usize, q: __m128i| {
                    // (d · sc) · q, as the reference decoder groups it.
                    let ds = d * (*sc.add(i) as i8) as f32;
                    _mm512_mul_ps(_mm512_set1_ps(ds), _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q)))
                };
                (
                    values(0, _mm256_castsi256_si128(q)),
                    values(1, _mm256_extracti128_si256::<1>(q)),
                )
            }
        }
    }

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
                    for i in 0..NR {
                        for line in (0..B::BYTES).step_by(64) {
                            _mm_prefetch::<_MM_HINT_T0>(next.add(i * row_bytes + blk * B::BYTES + line) as *const i8);
                        }
                    }
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
