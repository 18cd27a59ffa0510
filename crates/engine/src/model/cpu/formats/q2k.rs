//! Q2_K: blocks of 256 values in 16 groups of 16, value `(d · sc) · q − (dmin · m)` with a 2-bit
//! `q` and the group's 4-bit scale `sc` and minimum `m`.
//!
//! Layout (84 bytes): the 16 groups' scale bytes at 0 (`sc` the low 4 bits, `m` the high 4);
//! 64 bytes of 2-bit values at 16, 32 bytes a half of the block, each byte holding value `l` of
//! its half's 4 sub-blocks in bits `2j..2j + 2` (as Q3_K's low bits); f16 `d` at 80 and `dmin`
//! at 82. The portable decoder is candle's (`BlockQ2K::to_float`). The integer path uses `q` as
//! the weight integer, `sc` as the group's scale and `m` as its offset coefficient, with
//! `e = dmin` (as Q4_K, with a minimum per 16 values instead of per 32).

use super::{half_at, KScales};

/// Bytes of a block.
pub const BYTES: usize = 84;
/// Values of a block.
pub const VALUES: usize = 256;
/// Byte offset of the 16 scale bytes.
pub const SCALES: usize = 0;
/// Byte offset of the 64 bytes of 2-bit values.
pub const QS: usize = 16;
/// Byte offset of the f16 scale `d`.
pub const D: usize = 80;
/// Byte offset of the f16 scale of the minimums, `dmin`.
pub const DMIN: usize = 82;

/// The weight integers `q` of pair `p` (sub-blocks `2p`, `2p + 1`) of the block `blk`.
#[inline(always)]
pub fn pair_values(blk: &[u8], p: usize) -> [i8; 64] {
    let mut w = [0i8; 64];
    for half in 0..2 {
        let s = 2 * p + half;
        let q = &blk[QS + 32 * (s / 4)..][..32];
        for l in 0..32 {
            w[32 * half + l] = ((q[l] >> (2 * (s % 4))) & 3) as i8;
        }
    }
    w
}

/// The integer path's scales of the block `blk`: each 16 values' 4-bit scale, the offsets
/// `c_j = m_j` (its 4-bit minimum) with `e = dmin`.
#[inline(always)]
pub fn int_scales(blk: &[u8]) -> KScales {
    let s = &blk[SCALES..SCALES + 16];
    KScales {
        sc: std::array::from_fn(|j| (s[j] & 0xF) as i32),
        c: std::array::from_fn(|j| (s[j] >> 4) as i32),
        d: half_at(blk, D),
        e: half_at(blk, DMIN),
    }
}

#[cfg(target_arch = "x86_64")]
pub use x86::{pair_avx512, sub_avx2};

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::super::x86::{bits_avx2, bits_avx512};
    use super::QS;
    use std::arch::x86_64::*;

    /// Sub-block `s` of the block `b`: 32 unsigned 2-bit values, for the integer path.
    ///
    /// # Safety
    /// The 84 bytes of the block are readable, `s < 8`; the CPU has AVX2.
    #[inline(always)]
    pub unsafe fn sub_avx2(b: *const u8, s: usize) -> __m256i {
        // SAFETY: reads bytes `16 + 32·(s/4)` + 0..32 (at most 80; the contract), with AVX2 (the
        // contract).
        unsafe { bits_avx2(b.add(QS + 32 * (s / 4)), 2 * (s % 4), 3) }
    }

    /// Pair `p` of the block `b`: the 64 unsigned 2-bit values, for the integer path.
    ///
    /// # Safety
    /// The 84 bytes of the block are readable, `p < 4`; the CPU has AVX-512 F/BW and AVX2.
    #[inline(always)]
    pub unsafe fn pair_avx512(b: *const u8, p: usize) -> __m512i {
        // SAFETY: reads bytes `16 + 32·(p/2)` + 0..32 (at most 80; the contract), with the
        // contract's features.
        unsafe {
            // Sub-blocks 2p and 2p + 1 share their bytes (the same half of the block).
            let s0 = 2 * (2 * p % 4);
            bits_avx512(b.add(QS + 32 * (p / 2)), s0, s0 + 2, 3)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The weight integers and scales give candle's decoded values: `(d · sc) · q − (dmin · m)`.
    #[test]
    fn the_integers_are_candles_values() {
        let (data, ints) = super::super::testing::integers_against_candle(
            candle_core::quantized::GgmlDType::Q2K,
            BYTES,
            pair_values,
            int_scales,
            |s, g, q| (s.d * s.sc[g] as f32) * q as f32 - s.e * s.c[g] as f32,
        );
        let mins = data.chunks_exact(BYTES).any(|b| int_scales(b).c.iter().any(|&c| c > 0));
        assert!(
            ints.contains(&3) && mins,
            "every bit of the values and the minimums must be exercised"
        );
    }
}
