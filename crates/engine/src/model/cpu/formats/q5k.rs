//! Q5_K: Q4_K with a fifth bit. Blocks of 256 values in 8 sub-blocks of 32, value
//! `(d · sc) · q − (dmin · m)` with a 5-bit `q` and the sub-block's 6-bit scale `sc` and minimum
//! `m` (packed as Q4_K's).
//!
//! Layout (176 bytes): f16 `d` at 0 and `dmin` at 2; the 8 scales and 8 minimums packed in 12
//! bytes at 4 (ggml's `get_scale_min_k4`, as Q4_K); 32 bytes of high bits at 16, bit `s` of byte
//! `l` the fifth bit of value `l` of sub-block `s`; then 128 bytes of nibbles at 48, laid out as
//! Q4_K's (32 bytes a pair of sub-blocks, the low nibbles sub-block `2i`, the high `2i + 1`).
//! The portable decoder is candle's (`BlockQ5K::to_float`); the integer path uses `q` as the
//! weight integer and the minimums as its offsets, exactly as Q4_K's.

use super::{q4k, KScales};

/// Bytes of a block.
pub const BYTES: usize = 176;
/// Values of a block.
pub const VALUES: usize = 256;
/// Byte offset of the 32 bytes of high bits.
pub const QH: usize = 16;
/// Byte offset of the 128 bytes of nibbles.
pub const QS: usize = 48;

// `d`, `dmin` and the packed scales sit where Q4_K's do: its scale code reads Q5_K blocks too.
const _: () = assert!(q4k::D == 0 && q4k::DMIN == 2 && q4k::SCALES == 4 && q4k::QS == QH);

/// The weight integers `q` of pair `p` (sub-blocks `2p`, `2p + 1`) of the block `blk`.
#[inline(always)]
pub fn pair_values(blk: &[u8], p: usize) -> [i8; 64] {
    let mut w = [0i8; 64];
    let q = &blk[QS + 32 * p..][..32];
    let qh = &blk[QH..QS];
    for j in 0..32 {
        w[j] = ((q[j] & 0xF) | (qh[j] >> (2 * p) & 1) << 4) as i8;
        w[32 + j] = ((q[j] >> 4) | (qh[j] >> (2 * p + 1) & 1) << 4) as i8;
    }
    w
}

/// The integer path's scales of the block `blk`: Q4_K's (the same bytes at the same places).
#[inline(always)]
pub fn int_scales(blk: &[u8]) -> KScales {
    q4k::int_scales(blk)
}

#[cfg(target_arch = "x86_64")]
pub use x86::{pair_avx512, sub_avx2};

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::super::x86::{bits_avx2, bits_avx512};
    use super::{QH, QS};
    use std::arch::x86_64::*;

    /// Sub-block `s` of the block `b`: 32 unsigned 5-bit values, for the integer path.
    ///
    /// # Safety
    /// The 176 bytes of the block are readable, `s < 8`; the CPU has AVX2.
    #[inline(always)]
    pub unsafe fn sub_avx2(b: *const u8, s: usize) -> __m256i {
        // SAFETY: reads bytes `48 + 32·(s/2)` + 0..32 (at most 176 for `s < 8`) and 16..48 (the
        // contract), with AVX2 (the contract).
        unsafe {
            let q = bits_avx2(b.add(QS + 32 * (s / 2)), 4 * (s % 2), 0x0F);
            // Bit `s` of each high-bit byte, at bit 4.
            _mm256_or_si256(q, _mm256_slli_epi16::<4>(bits_avx2(b.add(QH), s, 1)))
        }
    }

    /// Pair `p` of the block `b`: the 64 unsigned 5-bit values, for the integer path.
    ///
    /// # Safety
    /// The 176 bytes of the block are readable, `p < 4`; the CPU has AVX-512 F/BW and AVX2.
    #[inline(always)]
    pub unsafe fn pair_avx512(b: *const u8, p: usize) -> __m512i {
        // SAFETY: reads bytes `48 + 32·p` + 0..32 (at most 176 for `p < 4`) and 16..48 (the
        // contract), with the contract's features.
        unsafe {
            let q = bits_avx512(b.add(QS + 32 * p), 0, 4, 0x0F);
            // Bits 2p (first sub-block) and 2p + 1 (second) of the high-bit bytes, at bit 4.
            let h = bits_avx512(b.add(QH), 2 * p, 2 * p + 1, 1);
            _mm512_or_si512(q, _mm512_slli_epi16::<4>(h))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The weight integers and scales give candle's decoded values: `(d · sc) · q − (dmin · m)`.
    #[test]
    fn the_integers_are_candles_values() {
        let (_, ints) = super::super::testing::integers_against_candle(
            candle_core::quantized::GgmlDType::Q5K,
            BYTES,
            pair_values,
            int_scales,
            |s, g, q| (s.d * s.sc[g] as f32) * q as f32 - s.e * s.c[g] as f32,
        );
        assert!(ints.iter().any(|&q| q >= 16), "the fifth bit must be exercised");
    }
}
