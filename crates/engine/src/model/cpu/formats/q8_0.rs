//! Q8_0: blocks of 32 values, each `q · d` with a signed 8-bit `q` and one f16 scale `d`.
//!
//! Layout (34 bytes): `d` at 0, then the 32 values. The integer path uses `q` itself.

// Index loops mirror the arithmetic they define; iterator chains would hide the order.
#![allow(clippy::needless_range_loop)]

use super::half_at;

/// Bytes of a block.
pub const BYTES: usize = 34;
/// Values of a block.
pub const VALUES: usize = 32;
/// Byte offset of the f16 scale `d`.
pub const D: usize = 0;
/// Byte offset of the 32 signed values.
pub const QS: usize = 2;

/// `q · d`
#[inline(always)]
pub fn decode(bytes: &[u8], out: &mut [f32]) {
    for (blk, ys) in bytes.chunks_exact(BYTES).zip(out.chunks_exact_mut(VALUES)) {
        let d = half_at(blk, D);
        for j in 0..32 {
            ys[j] = (blk[QS + j] as i8) as f32 * d;
        }
    }
}

/// The weight integers `q` of the two blocks of a pair (see `qdot`), `blk` at the first.
#[inline(always)]
pub fn pair_values(blk: &[u8]) -> [i8; 64] {
    let mut w = [0i8; 64];
    for h in 0..2 {
        for j in 0..32 {
            w[32 * h + j] = blk[BYTES * h + QS + j] as i8;
        }
    }
    w
}

#[cfg(target_arch = "x86_64")]
pub use x86::{block_avx2, decode_avx2, pair_avx512, Q8_0};

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
            for b in 0..nb {
                // SAFETY: `b < nb`: the 34 bytes of block `b` are inside `bytes` (asserted) and its
                // 32 outputs inside `out` (`nb = out.len() / 32`); the features are `inner`'s.
                unsafe {
                    let blk = bytes.as_ptr().add(b * BYTES);
                    let d = _mm256_broadcastss_ps(halves_avx2(blk.add(D)));
                    let o = out.as_mut_ptr().add(b * VALUES);
                    for i in 0..4 {
                        let v = _mm_loadl_epi64(blk.add(QS + i * 8) as *const __m128i);
                        let f = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v));
                        _mm256_storeu_ps(o.add(i * 8), _mm256_mul_ps(f, d));
                    }
                }
            }
        }
        // SAFETY: `decoder` hands this function out only for `Isa::Avx2` or above, so the CPU
        // has AVX2, FMA and F16C (see `isa`).
        unsafe { inner(bytes, out) }
    }

    pub struct Q8_0;
    impl Block for Q8_0 {
        const BYTES: usize = BYTES;
        #[inline(always)]
        unsafe fn decode(p: *const u8, _s: usize) -> (__m512, __m512) {
            // SAFETY: reads bytes 0..4 (`d`), 2..18 and 18..34 (the values) of the 34-byte block,
            // all readable by the contract, with the contract's CPU features.
            unsafe {
                let d = _mm512_broadcastss_ps(halves(p.add(D)));
                let lo = _mm512_cvtepi8_epi32(_mm_loadu_si128(p.add(QS) as *const __m128i));
                let hi = _mm512_cvtepi8_epi32(_mm_loadu_si128(p.add(QS + 16) as *const __m128i));
                (
                    _mm512_mul_ps(_mm512_cvtepi32_ps(lo), d),
                    _mm512_mul_ps(_mm512_cvtepi32_ps(hi), d),
                )
            }
        }
    }

    /// The block at `b`: its 32 signed values, for the integer path.
    ///
    /// # Safety
    /// The 34 bytes of the block are readable; the CPU has AVX.
    #[inline(always)]
    pub unsafe fn block_avx2(b: *const u8) -> __m256i {
        // SAFETY: reads bytes 2..34, the values of the block (the contract), with AVX.
        unsafe { _mm256_loadu_si256(b.add(QS) as *const __m256i) }
    }

    /// The pair of blocks at `b`: 64 signed values, for the integer path.
    ///
    /// # Safety
    /// The two blocks (68 bytes) are readable; the CPU has AVX-512 F and AVX.
    #[inline(always)]
    pub unsafe fn pair_avx512(b: *const u8) -> __m512i {
        // SAFETY: reads bytes 2..34 and 36..68, the values of the two 34-byte blocks (the
        // contract), with the contract's features.
        unsafe {
            let lo = _mm256_loadu_si256(b.add(QS) as *const __m256i);
            let hi = _mm256_loadu_si256(b.add(BYTES + QS) as *const __m256i);
            _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi)
        }
    }
}
