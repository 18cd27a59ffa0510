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
pub use x86::{decode_avx2, Q4_1};

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::super::x86::{halves, halves_avx2, Block};
    use super::{BYTES, D, QS, VALUES};
    use std::arch::x86_64::*;

    pub fn decode_avx2(bytes: &[u8], out: &mut [f32]) {
        #[target_feature(enable = "avx2,fma,f16c")]
        fn inner(bytes: &[u8], out: &mut [f32]) {
            let nb = out.len() / VALUES;
            assert!(bytes.len() >= nb * BYTES);
            let mask = _mm_set1_epi8(0x0F);
            for b in 0..nb {
                // SAFETY: `b < nb`: the 20 bytes of block `b` are inside `bytes` (asserted) and its
                // 32 outputs inside `out` (`nb = out.len() / 32`); the features are `inner`'s.
                unsafe {
                    let blk = bytes.as_ptr().add(b * BYTES);
                    let dm = halves_avx2(blk.add(D));
                    let d = _mm256_broadcastss_ps(dm);
                    let m = _mm256_broadcastss_ps(_mm_movehdup_ps(dm));
                    let qs = _mm_loadu_si128(blk.add(QS) as *const __m128i);
                    let lo = _mm_and_si128(qs, mask);
                    let hi = _mm_and_si128(_mm_srli_epi16(qs, 4), mask);
                    let o = out.as_mut_ptr().add(b * VALUES);
                    for (i, v) in [lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)]
                        .into_iter()
                        .enumerate()
                    {
                        let f = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v));
                        // x * d + m with two roundings, as the reference (no fused multiply-add).
                        _mm256_storeu_ps(o.add(i * 8), _mm256_add_ps(_mm256_mul_ps(f, d), m));
                    }
                }
            }
        }
        // SAFETY: `decoder` hands this function out only for `Isa::Avx2` or above, so the CPU
        // has AVX2, FMA and F16C (see `isa`).
        unsafe { inner(bytes, out) }
    }

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
}
