//! What the x86 decoders of every format share: the [`Block`] interface of the AVX-512 decoders
//! (which the fused decoding kernel and the AVX-512 row decoder are generic over) and the f16
//! scale readers.

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
