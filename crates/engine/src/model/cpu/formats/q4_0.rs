//! Q4_0: blocks of 32 values, each `(q − 8) · d` with a 4-bit `q` and one f16 scale `d`.
//!
//! Layout (18 bytes): `d` at 0, then 16 bytes whose low nibbles are values 0–15 and whose high
//! nibbles are values 16–31. The integer path uses `q − 8` as the weight integer.

// Index loops mirror the arithmetic they define; iterator chains would hide the order.
#![allow(clippy::needless_range_loop)]

use super::half_at;

/// Bytes of a block.
pub const BYTES: usize = 18;
/// Values of a block.
pub const VALUES: usize = 32;
/// Byte offset of the f16 scale `d`.
pub const D: usize = 0;
/// Byte offset of the 16 bytes of nibbles.
pub const QS: usize = 2;

/// `(q - 8) · d`
#[inline(always)]
pub fn decode(bytes: &[u8], out: &mut [f32]) {
    for (blk, ys) in bytes.chunks_exact(BYTES).zip(out.chunks_exact_mut(VALUES)) {
        let d = half_at(blk, D);
        let qs = &blk[QS..BYTES];
        let (lo, hi) = ys.split_at_mut(16);
        for j in 0..16 {
            lo[j] = ((qs[j] & 0x0F) as i16 - 8) as f32 * d;
            hi[j] = ((qs[j] >> 4) as i16 - 8) as f32 * d;
        }
    }
}

#[cfg(target_arch = "x86_64")]
avx2_instance!(decode_avx2, decode);

/// The weight integers `q − 8` of the two blocks of a pair (see `qdot`), `blk` at the first.
#[inline(always)]
pub fn pair_values(blk: &[u8]) -> [i8; 64] {
    let mut w = [0i8; 64];
    for h in 0..2 {
        let qs = &blk[BYTES * h + QS..BYTES * h + BYTES];
        for j in 0..16 {
            w[32 * h + j] = (qs[j] & 0xF) as i8 - 8;
            w[32 * h + 16 + j] = (qs[j] >> 4) as i8 - 8;
        }
    }
    w
}

#[cfg(target_arch = "x86_64")]
pub use x86::{block_avx2, pair_avx512, Q4_0};

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::super::x86::{halves, Block};
    use super::{BYTES, QS};
    use std::arch::x86_64::*;

    pub struct Q4_0;
    impl Block for Q4_0 {
        const BYTES: usize = BYTES;
        #[inline(always)]
        unsafe fn decode(p: *const u8, _s: usize) -> (__m512, __m512) {
            // SAFETY: reads bytes 0..4 (`d`) and 2..18 (the nibbles) of the 18-byte block, all
            // readable by the contract, with the contract's CPU features.
            unsafe {
                let d = _mm512_broadcastss_ps(halves(p));
                let v = _mm512_cvtepu8_epi32(_mm_loadu_si128(p.add(QS) as *const __m128i));
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

    /// The block at `b`: 32 signed values `q − 8`, for the integer path.
    ///
    /// # Safety
    /// The 18 bytes of the block are readable; the CPU has AVX2.
    #[inline(always)]
    pub unsafe fn block_avx2(b: *const u8) -> __m256i {
        // SAFETY: reads bytes 2..18 of the block (the contract), with AVX2 (the contract).
        unsafe {
            let q = _mm_loadu_si128(b.add(QS) as *const __m128i);
            let v = _mm256_set_m128i(_mm_srli_epi16::<4>(q), q);
            _mm256_sub_epi8(_mm256_and_si256(v, _mm256_set1_epi8(0x0F)), _mm256_set1_epi8(8))
        }
    }

    /// The pair of blocks at `b`: 64 signed values `q − 8`, for the integer path.
    ///
    /// # Safety
    /// The two blocks (36 bytes) are readable; the CPU has AVX-512 F/BW and AVX2.
    #[inline(always)]
    pub unsafe fn pair_avx512(b: *const u8) -> __m512i {
        // SAFETY: reads bytes 2..18 and 20..36, the nibbles of the two 18-byte blocks (the
        // contract), with the contract's features.
        unsafe {
            let a = _mm_loadu_si128(b.add(QS) as *const __m128i);
            let c = _mm_loadu_si128(b.add(BYTES + QS) as *const __m128i);
            let v = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(_mm256_set_m128i(a, a)), _mm256_set_m128i(c, c));
            // 16-bit shift counts: 4 in the second and fourth 128-bit lanes (the high nibbles).
            const H: i64 = 0x0004_0004_0004_0004;
            let shifts = _mm512_set_epi64(H, H, 0, 0, H, H, 0, 0);
            let v = _mm512_and_si512(_mm512_srlv_epi16(v, shifts), _mm512_set1_epi8(0x0F));
            _mm512_sub_epi8(v, _mm512_set1_epi8(8))
        }
    }
}
