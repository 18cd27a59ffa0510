//! What the x86 decoders of every format share: the [`Block`] and [`BlockAvx2`] interfaces of
//! the AVX-512 and AVX2 decoders (which the fused decoding kernels and the row decoders are
//! generic over) and the f16 scale readers.

use std::arch::x86_64::*;

/// One block format for AVX-512: its size, its number of 32-value sub-blocks, and the values of
/// sub-block `s` as two vectors in `k` order (values 0–15, then 16–31), each computed exactly
/// as the format's portable decoder computes it.
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

/// One 32-value block format for AVX2, as [`Block`] is for AVX-512: the values of the block
/// at `p` as four 8-lane vectors in `k` order (values 0–7, 8–15, 16–23, 24–31), each computed
/// exactly as the format's portable decoder computes it. The formats without an integer path
/// have one (their decoding is an f32 product over these values).
pub trait BlockAvx2 {
    const BYTES: usize;
    /// The 32 values of the block at `p`.
    ///
    /// # Safety
    /// `BYTES` bytes at `p` are readable, and the CPU has AVX2, FMA and F16C (the decoders are
    /// inlined into functions that enable them).
    unsafe fn decode8(p: *const u8) -> [__m256; 4];
}

/// The 32 nibbles of the 16 bytes at `p` (low nibbles are values 0–15 of a 32-value block, high
/// nibbles values 16–31) as four groups of 8 values in 32-bit lanes, in `k` order.
///
/// # Safety
/// 16 bytes at `p` are readable (any alignment); the CPU has AVX2.
#[inline(always)]
pub unsafe fn nibbles8x4(p: *const u8) -> [__m256i; 4] {
    // SAFETY: one unaligned 16-byte read (the contract); register operations otherwise, with
    // AVX2 (the contract).
    unsafe {
        let qs = _mm_loadu_si128(p as *const __m128i);
        let mask = _mm_set1_epi8(0x0F);
        let (lo, hi) = (_mm_and_si128(qs, mask), _mm_and_si128(_mm_srli_epi16::<4>(qs), mask));
        [
            _mm256_cvtepu8_epi32(lo),
            _mm256_cvtepu8_epi32(_mm_unpackhi_epi64(lo, lo)),
            _mm256_cvtepu8_epi32(hi),
            _mm256_cvtepu8_epi32(_mm_unpackhi_epi64(hi, hi)),
        ]
    }
}

/// `d` and `m` (the two leading f16 values of a block) each broadcast to 8 lanes.
///
/// # Safety
/// 4 bytes at `p` are readable; the CPU has AVX2 and F16C.
#[inline(always)]
pub unsafe fn dm8(p: *const u8) -> (__m256, __m256) {
    // SAFETY: `halves` reads the 4 bytes (the contract); register operations otherwise.
    unsafe {
        let dm = halves(p);
        (_mm256_broadcastss_ps(dm), _mm256_broadcastss_ps(_mm_movehdup_ps(dm)))
    }
}

/// The 32 nibbles of a Q5 block ([`nibbles8x4`]) with their fifth bits (bit `v` of `qh` for
/// value `v`, worth 16) set.
///
/// # Safety
/// The CPU has AVX2.
#[inline(always)]
pub unsafe fn with_fifth8x4(mut q: [__m256i; 4], qh: u32) -> [__m256i; 4] {
    // SAFETY: register operations only, with AVX2 (the contract).
    unsafe {
        let bits = _mm256_set1_epi32(qh as i32);
        let one = _mm256_set1_epi32(1);
        for (g, q) in q.iter_mut().enumerate() {
            let at = _mm256_add_epi32(
                _mm256_set1_epi32(8 * g as i32),
                _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
            );
            let bit = _mm256_and_si256(_mm256_srlv_epi32(bits, at), one);
            *q = _mm256_or_si256(*q, _mm256_slli_epi32::<4>(bit));
        }
        q
    }
}

/// The integers `q` as f32, each times `d` (one rounding).
///
/// # Safety
/// The CPU has AVX2.
#[inline(always)]
pub unsafe fn scaled8x4(q: [__m256i; 4], d: __m256) -> [__m256; 4] {
    // SAFETY: register operations only, with AVX2 (the contract).
    unsafe {
        let mut out = [_mm256_setzero_ps(); 4];
        for (o, q) in out.iter_mut().zip(q) {
            *o = _mm256_mul_ps(_mm256_cvtepi32_ps(q), d);
        }
        out
    }
}

/// The integers `q` as f32, each times `d`, plus `m`: two roundings (no fused multiply-add), as
/// the formats with a minimum define their values.
///
/// # Safety
/// The CPU has AVX2.
#[inline(always)]
pub unsafe fn affine8x4(q: [__m256i; 4], d: __m256, m: __m256) -> [__m256; 4] {
    // SAFETY: register operations only, with AVX2 (the contract).
    unsafe {
        let mut out = [_mm256_setzero_ps(); 4];
        for (o, q) in out.iter_mut().zip(q) {
            *o = _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(q), d), m);
        }
        out
    }
}

/// `[d, m]` from the two leading f16 values of a block, for the [`Block`] decoders.
///
/// # Safety
/// 4 bytes at `p` are readable and the CPU has F16C.
#[inline(always)]
pub unsafe fn halves(p: *const u8) -> __m128 {
    // SAFETY: the 4 bytes at `p` are readable (unaligned read) and F16C is present (the
    // contract).
    unsafe { _mm_cvtph_ps(_mm_cvtsi32_si128((p as *const i32).read_unaligned())) }
}

/// `[d, m]` of a block from its two leading f16 values, for the AVX2 row decoders.
///
/// # Safety
/// 4 bytes at `p` are readable, and the CPU has AVX2 and F16C.
#[inline]
#[target_feature(enable = "avx2,f16c")]
pub unsafe fn halves_avx2(p: *const u8) -> __m128 {
    // SAFETY: the 4 bytes at `p` are readable (the contract); the read is unaligned.
    _mm_cvtph_ps(_mm_cvtsi32_si128(unsafe { (p as *const i32).read_unaligned() }))
}

/// The f16 at `p` as f32 (F16C).
///
/// # Safety
/// 2 bytes at `p` are readable (any alignment), and the CPU has F16C.
#[inline(always)]
pub unsafe fn f16_ptr(p: *const u8) -> f32 {
    // SAFETY: an unaligned read of the 2 readable bytes, and F16C (the contract).
    unsafe {
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(
            (p as *const u16).read_unaligned() as i32
        )))
    }
}

/// The 32 bytes at `p`, each shifted right by `shift` bits and masked with `mask`: one field of
/// packed weight bits (nibbles, 2-bit values, high bits) as one byte a value. The shift runs in
/// 16-bit lanes, so a byte takes in its neighbour's low bits; `mask` keeps only bits that were
/// the byte's own (at most `8 − shift` low bits).
///
/// # Safety
/// 32 bytes at `p` are readable (any alignment); the CPU has AVX2.
#[inline(always)]
pub unsafe fn bits_avx2(p: *const u8, shift: usize, mask: i8) -> __m256i {
    // SAFETY: one unaligned 32-byte read (the contract), with AVX2 (the contract).
    unsafe {
        let v = _mm256_loadu_si256(p as *const __m256i);
        _mm256_and_si256(
            _mm256_srl_epi16(v, _mm_cvtsi32_si128(shift as i32)),
            _mm256_set1_epi8(mask),
        )
    }
}

/// [`bits_avx2`] twice from the same 32 bytes, as the two halves of one register: the first
/// half shifted by `lo` bits, the second by `hi` (two sub-blocks stored in the same bytes).
///
/// # Safety
/// 32 bytes at `p` are readable (any alignment); the CPU has AVX-512 F/BW and AVX2.
#[inline(always)]
pub unsafe fn bits_avx512(p: *const u8, lo: usize, hi: usize, mask: i8) -> __m512i {
    // SAFETY: one unaligned 32-byte read (the contract), with the contract's features.
    unsafe {
        let v = _mm512_broadcast_i64x4(_mm256_loadu_si256(p as *const __m256i));
        let shifts = _mm512_inserti64x4::<1>(_mm512_set1_epi16(lo as i16), _mm256_set1_epi16(hi as i16));
        _mm512_and_si512(_mm512_srlv_epi16(v, shifts), _mm512_set1_epi8(mask))
    }
}
