//! Q4_1: blocks of 32 values, each `q · d + m` (two roundings) with a 4-bit `q` and f16 `d`
//! and `m`.
//!
//! Layout (20 bytes): `d` at 0, `m` at 2, then 16 bytes whose low nibbles are values 0–15 and
//! whose high nibbles are values 16–31.

// Index loops mirror the arithmetic they define; iterator chains would hide the order.
#![allow(clippy::needless_range_loop)]

use super::half_at;

/// Bytes of a block.
pub const BYTES: usize = 20;
/// Values of a block.
pub const VALUES: usize = 32;
/// Byte offset of the f16 scale `d`.
pub const D: usize = 0;
/// Byte offset of the f16 minimum `m`, right after `d` (the SIMD decoders read both at once).
pub const M: usize = 2;
/// Byte offset of the 16 bytes of nibbles.
pub const QS: usize = 4;

/// `q · d + m`, two roundings.
#[inline(always)]
pub fn decode(bytes: &[u8], out: &mut [f32]) {
    for (blk, ys) in bytes.chunks_exact(BYTES).zip(out.chunks_exact_mut(VALUES)) {
        let d = half_at(blk, D);
        let m = half_at(blk, M);
        let qs = &blk[QS..BYTES];
        let (lo, hi) = ys.split_at_mut(16);
        for j in 0..16 {
            lo[j] = (qs[j] & 0x0F) as f32 * d + m;
            hi[j] = (qs[j] >> 4) as f32 * d + m;
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub use x86::Q4_1;

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::super::x86::{affine8x4, dm8, halves, nibbles8x4, Block, BlockAvx2};
    use super::{BYTES, D, QS};
    use std::arch::x86_64::*;

    pub struct Q4_1;
    impl Block for Q4_1 {
        const BYTES: usize = BYTES;
        #[inline(always)]
        unsafe fn decode(p: *const u8, _s: usize) -> (__m512, __m512) {
            // SAFETY: reads bytes 0..4 (`d`, `m`) and 4..20 (the nibbles) of the 20-byte block, all
            // readable by the contract, with the contract's CPU features.
            unsafe {
                let dm = halves(p.add(D));
                let d = _mm512_broadcastss_ps(dm);
                let m = _mm512_broadcastss_ps(_mm_movehdup_ps(dm));
                let v = _mm512_cvtepu8_epi32(_mm_loadu_si128(p.add(QS) as *const __m128i));
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

    impl BlockAvx2 for Q4_1 {
        const BYTES: usize = BYTES;
        #[inline(always)]
        unsafe fn decode8(p: *const u8) -> [__m256; 4] {
            // SAFETY: reads bytes 0..4 (`d`, `m`) and 4..20 (the nibbles) of the 20-byte block, all
            // readable by the contract, with the contract's CPU features.
            unsafe {
                let (d, m) = dm8(p.add(D));
                // q * d + m with two roundings, as the reference decoder.
                affine8x4(nibbles8x4(p.add(QS)), d, m)
            }
        }
    }
}
