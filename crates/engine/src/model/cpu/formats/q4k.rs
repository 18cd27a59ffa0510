//! Q4_K: blocks of 256 values in 8 sub-blocks of 32, value `(d · sc) · q − (dmin · m)` with a
//! 4-bit `q` and the sub-block's 6-bit scale `sc` and minimum `m`.
//!
//! Layout (144 bytes): f16 `d` at 0 and `dmin` at 2; the 8 scales and 8 minimums packed in 12
//! bytes at 4 (ggml's `get_scale_min_k4`); then 128 bytes of nibbles at 16, 32 bytes a pair of
//! sub-blocks: the low nibbles are sub-block `2i`, the high nibbles sub-block `2i + 1`. The
//! integer path uses `q` as the weight integer and the minimums as its offsets.

// Index loops mirror the arithmetic they define; iterator chains would hide the order.
#![allow(clippy::needless_range_loop)]

use super::{half_at, KScales};

/// Bytes of a block.
pub const BYTES: usize = 144;
/// Values of a block.
pub const VALUES: usize = 256;
/// Byte offset of the f16 scale `d`.
pub const D: usize = 0;
/// Byte offset of the f16 scale of the minimums, `dmin`.
pub const DMIN: usize = 2;
/// Byte offset of the 12 bytes of packed scales and minimums.
pub const SCALES: usize = 4;
/// Byte offset of the 128 bytes of nibbles.
pub const QS: usize = 16;

/// The 6-bit scale and min of sub-block `j` of a Q4_K/Q5_K block (ggml's `get_scale_min_k4`),
/// from the 12 packed bytes `q`.
#[inline(always)]
pub fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// The same unpacking as [`scale_min_k4`] for all 8 sub-blocks at once, four bytes at a time
/// (ggml's SIMD form): the scales as bytes 0–7, the minimums as bytes 8–15. For the SIMD
/// integer kernels.
///
/// # Safety
/// `p` must point at the 12 packed bytes (readable, any alignment).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub unsafe fn scales_mins(p: *const u8) -> [u32; 4] {
    // SAFETY: three unaligned 4-byte reads at offsets 0, 4, 8: the 12 bytes of the contract.
    unsafe {
        let r = |i: usize| (p.add(4 * i) as *const u32).read_unaligned();
        let (u0, u1, u2) = (r(0), r(1), r(2));
        const M1: u32 = 0x3f3f_3f3f;
        const M2: u32 = 0x0f0f_0f0f;
        const M3: u32 = 0x0303_0303;
        [
            u0 & M1,
            (u2 & M2) | (((u0 >> 6) & M3) << 4),
            u1 & M1,
            ((u2 >> 4) & M2) | (((u1 >> 6) & M3) << 4),
        ]
    }
}

/// `(d · sc) · q - (dmin · m)` per sub-block of 32.
#[inline(always)]
pub fn decode(bytes: &[u8], out: &mut [f32]) {
    for (blk, ys) in bytes.chunks_exact(BYTES).zip(out.chunks_exact_mut(VALUES)) {
        let d = half_at(blk, D);
        let min = half_at(blk, DMIN);
        let scales = &blk[SCALES..QS];
        let qs = &blk[QS..BYTES];
        for g in 0..4 {
            let q = &qs[g * 32..][..32];
            let (sc, m) = scale_min_k4(2 * g, scales);
            let (d1, m1) = (d * sc as f32, min * m as f32);
            let (sc, m) = scale_min_k4(2 * g + 1, scales);
            let (d2, m2) = (d * sc as f32, min * m as f32);
            let y = &mut ys[g * 64..][..64];
            for l in 0..32 {
                y[l] = d1 * (q[l] & 0xF) as f32 - m1;
                y[32 + l] = d2 * (q[l] >> 4) as f32 - m2;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
avx2_instance!(decode_avx2, decode);

/// The weight integers `q` of pair `p` (sub-blocks `2p`, `2p + 1`) of the block `blk`.
#[inline(always)]
pub fn pair_values(blk: &[u8], p: usize) -> [i8; 64] {
    let mut w = [0i8; 64];
    let q = &blk[QS + 32 * p..][..32];
    for j in 0..32 {
        w[j] = (q[j] & 0xF) as i8;
        w[32 + j] = (q[j] >> 4) as i8;
    }
    w
}

/// The integer path's scales of the block `blk`: each 16 values take their sub-block's scale,
/// the offsets `c_j = m` (the sub-block's minimum) with `e = dmin`.
#[inline(always)]
pub fn int_scales(blk: &[u8]) -> KScales {
    let packed = &blk[SCALES..QS];
    let sm: [(u8, u8); 8] = std::array::from_fn(|s| scale_min_k4(s, packed));
    KScales {
        sc: std::array::from_fn(|j| sm[j / 2].0 as i32),
        c: std::array::from_fn(|j| sm[j / 2].1 as i32),
        d: half_at(blk, D),
        e: half_at(blk, DMIN),
    }
}

#[cfg(target_arch = "x86_64")]
pub use x86::{pair_avx512, sub_avx2, Q4K};

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::super::x86::{bits_avx2, bits_avx512, halves, Block};
    use super::{scale_min_k4, BYTES, D, QS, SCALES};
    use std::arch::x86_64::*;

    /// Sub-block `s` is `(d · sc) · q - (dmin · m)`, its 4-bit values the low (even `s`) or high
    /// (odd `s`) halves of 32 bytes.
    pub struct Q4K;
    impl Block for Q4K {
        const BYTES: usize = BYTES;
        const SUBS: usize = 8;
        #[inline(always)]
        unsafe fn decode(p: *const u8, s: usize) -> (__m512, __m512) {
            // SAFETY: with `s < 8`, reads bytes 0..4 (`d`, `dmin`), 4..16 (scales) and `16 +
            // 32·(s/2)` + 0..32 (at most 144) of the 144-byte block, all readable by the contract,
            // with the contract's CPU features.
            unsafe {
                let dm = halves(p.add(D));
                // The block's 12 bytes of packed scales and mins, unpacked as the portable decoder does.
                let (sc, m) = scale_min_k4(s, std::slice::from_raw_parts(p.add(SCALES), 12));
                let d1 = _mm_cvtss_f32(dm) * sc as f32;
                let m1 = _mm_cvtss_f32(_mm_movehdup_ps(dm)) * m as f32;
                let q = p.add(QS + s / 2 * 32);
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

    /// Sub-block `s` of the block `b`: 32 unsigned 4-bit values, for the integer path.
    ///
    /// # Safety
    /// The 144 bytes of the block are readable, `s < 8`; the CPU has AVX2.
    #[inline(always)]
    pub unsafe fn sub_avx2(b: *const u8, s: usize) -> __m256i {
        // SAFETY: reads bytes `16 + 32·(s/2)` + 0..32, at most 144 for `s < 8` (the contract), with
        // AVX2 (the contract).
        unsafe { bits_avx2(b.add(QS + 32 * (s / 2)), 4 * (s % 2), 0x0F) }
    }

    /// Pair `p` of the block `b`: the 64 unsigned 4-bit values, for the integer path.
    ///
    /// # Safety
    /// The 144 bytes of the block are readable, `p < 4`; the CPU has AVX-512 F/BW and AVX2.
    #[inline(always)]
    pub unsafe fn pair_avx512(b: *const u8, p: usize) -> __m512i {
        // SAFETY: reads bytes `16 + 32·p` + 0..32, at most 144 for `p < 4` (the contract), with the
        // contract's features.
        unsafe { bits_avx512(b.add(QS + 32 * p), 0, 4, 0x0F) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The weight integers and scales give candle's decoded values: `(d · sc) · q − (dmin · m)`.
    #[test]
    fn the_integers_are_candles_values() {
        let (_, ints) = super::super::testing::integers_against_candle(
            candle_core::quantized::GgmlDType::Q4K,
            BYTES,
            pair_values,
            int_scales,
            |s, g, q| (s.d * s.sc[g] as f32) * q as f32 - s.e * s.c[g] as f32,
        );
        assert!(ints.contains(&15), "every bit of the values must be exercised");
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn both_unpackings_of_the_scales_agree() {
        // Patterns that set every bit of the 12 bytes in turn, and a spread of others.
        let mut cases: Vec<[u8; 12]> = (0..96)
            .map(|b| std::array::from_fn(|i| ((i == b / 8) as u8) << (b % 8)))
            .collect();
        cases
            .extend((0..200u32).map(|s| {
                std::array::from_fn(|i| (s.wrapping_mul(2_654_435_761).rotate_left(7 * i as u32) >> 8) as u8)
            }));
        cases.push([0xFF; 12]);
        for q in cases {
            // SAFETY: `q` holds the 12 bytes.
            let u = unsafe { scales_mins(q.as_ptr()) };
            let bytes: Vec<u8> = u.iter().flat_map(|w| w.to_le_bytes()).collect();
            for j in 0..8 {
                assert_eq!((bytes[j], bytes[8 + j]), scale_min_k4(j, &q), "sub-block {j} of {q:?}");
            }
        }
    }
}
