//! Q5_1: blocks of 32 values, each `q · d + m` (two roundings) with a 5-bit `q` and f16 `d` and
//! `m`: Q4_1's arithmetic with Q5_0's fifth bits.
//!
//! Layout (24 bytes): `d` at 0, `m` at 2, `qh` (the fifth bit of value `j` in bit `j`,
//! little-endian) at 4, then 16 bytes whose low nibbles are values 0–15 and whose high nibbles
//! are values 16–31.

// Index loops mirror the arithmetic they define; iterator chains would hide the order.
#![allow(clippy::needless_range_loop)]

use super::half_at;

/// Bytes of a block.
pub const BYTES: usize = 24;
/// Values of a block.
pub const VALUES: usize = 32;
/// Byte offset of the f16 scale `d`.
pub const D: usize = 0;
/// Byte offset of the f16 minimum `m`, right after `d` (the SIMD decoder reads both at once).
pub const M: usize = 2;
/// Byte offset of the 32 fifth bits `qh`.
pub const QH: usize = 4;
/// Byte offset of the 16 bytes of nibbles.
pub const QS: usize = 8;

/// `q · d + m`, two roundings, with the fifth bit of value `j` in bit `j` of `qh`.
#[inline(always)]
pub fn decode(bytes: &[u8], out: &mut [f32]) {
    for (blk, ys) in bytes.chunks_exact(BYTES).zip(out.chunks_exact_mut(VALUES)) {
        let d = half_at(blk, D);
        let m = half_at(blk, M);
        let qh = u32::from_le_bytes([blk[QH], blk[QH + 1], blk[QH + 2], blk[QH + 3]]);
        let qs = &blk[QS..BYTES];
        let (lo, hi) = ys.split_at_mut(16);
        for j in 0..16 {
            let x0 = (qs[j] & 0x0F) | ((((qh >> j) << 4) & 0x10) as u8);
            let x1 = (qs[j] >> 4) | (((qh >> (j + 12)) & 0x10) as u8);
            lo[j] = x0 as f32 * d + m;
            hi[j] = x1 as f32 * d + m;
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub use x86::Q5_1;

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::super::x86::{affine8x4, dm8, halves, nibbles8x4, with_fifth8x4, Block, BlockAvx2};
    use super::{BYTES, D, QH, QS};
    use std::arch::x86_64::*;

    pub struct Q5_1;
    impl Block for Q5_1 {
        const BYTES: usize = BYTES;
        #[inline(always)]
        unsafe fn decode(p: *const u8, _s: usize) -> (__m512, __m512) {
            // SAFETY: reads bytes 0..4 (`d`, `m`), 4..8 (`qh`) and 8..24 (the nibbles) of the
            // 24-byte block, all readable by the contract, with the contract's CPU features.
            unsafe {
                let dm = halves(p.add(D));
                let d = _mm512_broadcastss_ps(dm);
                let m = _mm512_broadcastss_ps(_mm_movehdup_ps(dm));
                let qh = (p.add(QH) as *const u32).read_unaligned();
                let v = _mm512_cvtepu8_epi32(_mm_loadu_si128(p.add(QS) as *const __m128i));
                let sixteen = _mm512_set1_epi32(16);
                let lo = _mm512_and_si512(v, _mm512_set1_epi32(0xF));
                let lo = _mm512_mask_add_epi32(lo, qh as u16, lo, sixteen);
                let hi = _mm512_srli_epi32::<4>(v);
                let hi = _mm512_mask_add_epi32(hi, (qh >> 16) as u16, hi, sixteen);
                // q * d + m with two roundings, as the reference decoder.
                (
                    _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(lo), d), m),
                    _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(hi), d), m),
                )
            }
        }
    }

    impl BlockAvx2 for Q5_1 {
        const BYTES: usize = BYTES;
        #[inline(always)]
        unsafe fn decode8(p: *const u8) -> [__m256; 4] {
            // SAFETY: reads bytes 0..4 (`d`, `m`), 4..8 (`qh`) and 8..24 (the nibbles) of the
            // 24-byte block, all readable by the contract, with the contract's CPU features.
            unsafe {
                let (d, m) = dm8(p.add(D));
                let qh = (p.add(QH) as *const u32).read_unaligned();
                // q * d + m with two roundings, as the reference decoder.
                affine8x4(with_fifth8x4(nibbles8x4(p.add(QS)), qh), d, m)
            }
        }
    }
}
