//! Q3_K: blocks of 256 values in 16 groups of 16, value `d · (sc − 32) · (q − 4)` with a 3-bit
//! `q` (two low bits and a high bit) and the group's 6-bit scale `sc`.
//!
//! Layout (110 bytes): 32 bytes of high bits at 0 (bit `s` of byte `l` is the high bit of value
//! `l` of sub-block `s`); 64 bytes of 2-bit values at 32, 32 bytes a half of the block, each byte
//! holding value `l` of its half's 4 sub-blocks in bits `2j..2j + 2`; the 16 scales packed in 12
//! bytes at 96 (4 low bits each in bytes 0–7, 2 high bits in bytes 8–11, as ggml packs them); f16
//! `d` at 108. The portable decoder is candle's (`BlockQ3K::to_float`). The integer path uses `q`
//! (0..8) as the weight integer, `sc − 32` as the group's scale and `4 · (sc − 32)` as its
//! offset coefficient, with `e = d` (as Q6_K, whose offset is 32).

use super::{half_at, KScales};

/// Bytes of a block.
pub const BYTES: usize = 110;
/// Values of a block.
pub const VALUES: usize = 256;
/// Byte offset of the 32 bytes of high bits.
pub const HMASK: usize = 0;
/// Byte offset of the 64 bytes of 2-bit values.
pub const QS: usize = 32;
/// Byte offset of the 12 bytes of packed scales.
pub const SCALES: usize = 96;
/// Byte offset of the f16 scale `d`.
pub const D: usize = 108;

/// The 16 groups' 6-bit scales, one a byte, as ggml unpacks the 12 packed bytes `(a0, a1, a2)`
/// (little-endian words): the low 4 bits from `a0`/`a1`, the high 2 from `a2`.
#[inline(always)]
fn unpack(a0: u32, a1: u32, tmp: u32) -> [u32; 4] {
    const K1: u32 = 0x0303_0303;
    const K2: u32 = 0x0f0f_0f0f;
    [
        (a0 & K2) | ((tmp & K1) << 4),
        (a1 & K2) | (((tmp >> 2) & K1) << 4),
        ((a0 >> 4) & K2) | (((tmp >> 4) & K1) << 4),
        ((a1 >> 4) & K2) | (((tmp >> 6) & K1) << 4),
    ]
}

/// The 16 groups' signed scales `sc − 32` of the block `blk`.
pub fn scales(blk: &[u8]) -> [i8; 16] {
    let word = |i: usize| {
        let at = SCALES + 4 * i;
        u32::from_le_bytes([blk[at], blk[at + 1], blk[at + 2], blk[at + 3]])
    };
    let aux = unpack(word(0), word(1), word(2));
    // Each byte is a 6-bit scale: `- 32` keeps it in i8.
    std::array::from_fn(|j| (aux[j / 4].to_le_bytes()[j % 4] as i8).wrapping_sub(32))
}

/// The weight integers `q` of pair `p` (sub-blocks `2p`, `2p + 1`) of the block `blk`.
#[inline(always)]
pub fn pair_values(blk: &[u8], p: usize) -> [i8; 64] {
    let mut w = [0i8; 64];
    for half in 0..2 {
        let s = 2 * p + half;
        let q = &blk[QS + 32 * (s / 4)..][..32];
        for l in 0..32 {
            let low = (q[l] >> (2 * (s % 4))) & 3;
            let high = (blk[HMASK + l] >> s) & 1;
            w[32 * half + l] = (low | high << 2) as i8;
        }
    }
    w
}

/// The integer path's scales of the block `blk`: each 16 values' signed scale, the offsets
/// `c_j = 4 · sc_j` with `e = d`.
#[inline(always)]
pub fn int_scales(blk: &[u8]) -> KScales {
    let s = scales(blk);
    let d = half_at(blk, D);
    KScales {
        sc: s.map(i32::from),
        c: s.map(|v| 4 * v as i32),
        d,
        e: d,
    }
}

#[cfg(target_arch = "x86_64")]
pub use x86::{pair_avx512, scales_sse, sub_avx2};

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::super::x86::{bits_avx2, bits_avx512};
    use super::{unpack, HMASK, QS, SCALES};
    use std::arch::x86_64::*;

    /// The 16 groups' signed scales `sc − 32` of the block `b` as the 16 bytes of a register
    /// ([`super::scales`] in registers: the decoding kernels unpack them every block).
    ///
    /// # Safety
    /// The 110 bytes of the block are readable; the CPU has SSE2.
    #[inline(always)]
    pub unsafe fn scales_sse(b: *const u8) -> __m128i {
        // SAFETY: three unaligned 4-byte reads of the 12 scale bytes (the contract).
        unsafe {
            let r = |i: usize| (b.add(SCALES + 4 * i) as *const u32).read_unaligned();
            let aux = unpack(r(0), r(1), r(2));
            _mm_sub_epi8(_mm_loadu_si128(aux.as_ptr() as *const __m128i), _mm_set1_epi8(32))
        }
    }

    /// Sub-block `s` of the block `b`: 32 unsigned 3-bit values, for the integer path.
    ///
    /// # Safety
    /// The 110 bytes of the block are readable, `s < 8`; the CPU has AVX2.
    #[inline(always)]
    pub unsafe fn sub_avx2(b: *const u8, s: usize) -> __m256i {
        // SAFETY: reads bytes `32 + 32·(s/4)` + 0..32 (at most 96) and 0..32 (the contract),
        // with AVX2 (the contract).
        unsafe {
            let q = bits_avx2(b.add(QS + 32 * (s / 4)), 2 * (s % 4), 3);
            // Bit `s` of each high-bit byte, at bit 2.
            _mm256_or_si256(q, _mm256_slli_epi16::<2>(bits_avx2(b.add(HMASK), s, 1)))
        }
    }

    /// Pair `p` of the block `b`: the 64 unsigned 3-bit values, for the integer path.
    ///
    /// # Safety
    /// The 110 bytes of the block are readable, `p < 4`; the CPU has AVX-512 F/BW and AVX2.
    #[inline(always)]
    pub unsafe fn pair_avx512(b: *const u8, p: usize) -> __m512i {
        // SAFETY: reads bytes `32 + 32·(p/2)` + 0..32 (at most 96) and 0..32 (the contract), with
        // the contract's features.
        unsafe {
            // Sub-blocks 2p and 2p + 1 share their bytes (the same half of the block).
            let s0 = 2 * (2 * p % 4);
            let q = bits_avx512(b.add(QS + 32 * (p / 2)), s0, s0 + 2, 3);
            let h = bits_avx512(b.add(HMASK), 2 * p, 2 * p + 1, 1);
            _mm512_or_si512(q, _mm512_slli_epi16::<2>(h))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The weight integers and scales give candle's decoded values: `(d · sc) · (q − 4)`, and the
    /// offsets are `4 · sc`.
    #[test]
    fn the_integers_are_candles_values() {
        let (data, ints) = super::super::testing::integers_against_candle(
            candle_core::quantized::GgmlDType::Q3K,
            BYTES,
            pair_values,
            int_scales,
            |s, g, q| (s.d * s.sc[g] as f32) * (q - 4) as f32,
        );
        let scales: Vec<KScales> = data.chunks_exact(BYTES).map(int_scales).collect();
        assert!(scales.iter().all(|s| (0..16).all(|g| s.c[g] == 4 * s.sc[g])));
        let negative = scales.iter().any(|s| s.sc.iter().any(|&v| v < 0));
        assert!(
            ints.iter().any(|&q| q >= 4) && negative,
            "high bits and negative scales must be exercised"
        );
    }
}
