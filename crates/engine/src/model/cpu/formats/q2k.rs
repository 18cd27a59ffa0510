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
pub fn pair_values(blk: &[u8], p: usize) -> [i32; 64] {
    let mut w = [0i32; 64];
    for half in 0..2 {
        let s = 2 * p + half;
        let q = &blk[QS + 32 * (s / 4)..][..32];
        for l in 0..32 {
            w[32 * half + l] = ((q[l] >> (2 * (s % 4))) & 3) as i32;
        }
    }
    w
}

/// The integer path's scales of the block `blk`: each 16 values' 4-bit scale, the offsets
/// `c_j = m_j` (its 4-bit minimum) with `e = dmin`.
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
        unsafe {
            let q = _mm256_loadu_si256(b.add(QS + 32 * (s / 4)) as *const __m256i);
            _mm256_and_si256(
                _mm256_srl_epi16(q, _mm_cvtsi32_si128(2 * (s % 4) as i32)),
                _mm256_set1_epi8(3),
            )
        }
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
            let v = _mm512_broadcast_i64x4(_mm256_loadu_si256(b.add(QS + 32 * (p / 2)) as *const __m256i));
            let s0 = 2 * (2 * p % 4) as i16;
            let shifts = _mm512_inserti64x4::<1>(_mm512_set1_epi16(s0), _mm256_set1_epi16(s0 + 2));
            _mm512_and_si512(_mm512_srlv_epi16(v, shifts), _mm512_set1_epi8(3))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::QTensor;
    use candle_core::{Device, Tensor};

    /// The weight integers and scales give candle's decoded values: `(d · sc) · q − (dmin · m)`.
    #[test]
    fn the_integers_are_candles_values() {
        let v: Vec<f32> = (0..8 * 256)
            .map(|i| ((i * 7919 % 1013) as f32 / 1013.0 - 0.5) * 3.0 + (i % 5) as f32 * 0.2)
            .collect();
        let t = Tensor::from_vec(v, (8, 256), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&t, candle_core::quantized::GgmlDType::Q2K).unwrap();
        let want = q
            .dequantize(&Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let data = q.data().unwrap();
        let (mut top, mut mins) = (0, 0);
        for (b, blk) in data.chunks_exact(BYTES).enumerate() {
            let s = int_scales(blk);
            mins += s.c.iter().filter(|&&c| c > 0).count();
            for p in 0..4 {
                let w = pair_values(blk, p);
                for (j, &q) in w.iter().enumerate() {
                    let g = 4 * p + j / 16;
                    let got = (s.d * s.sc[g] as f32) * q as f32 - s.e * s.c[g] as f32;
                    assert_eq!(
                        got.to_bits(),
                        want[256 * b + 64 * p + j].to_bits(),
                        "block {b} pair {p} value {j}"
                    );
                    top += (q == 3) as usize;
                }
            }
        }
        assert!(
            top > 0 && mins > 0,
            "every bit of the values and the minimums must be exercised"
        );
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_simd_unpackings_are_the_portable_ones() {
        /// `sub_avx2` of sub-block `s`, as bytes.
        #[target_feature(enable = "avx2")]
        unsafe fn sub(b: &[u8], s: usize) -> [u8; 32] {
            // SAFETY: the caller's block of 84 bytes, `s < 8`; AVX2 enabled here.
            unsafe { std::mem::transmute(sub_avx2(b.as_ptr(), s)) }
        }
        /// `pair_avx512` of pair `p`, as bytes.
        #[target_feature(enable = "avx512f,avx512bw,avx2")]
        unsafe fn pair(b: &[u8], p: usize) -> [u8; 64] {
            // SAFETY: the caller's block of 84 bytes, `p < 4`; the features enabled here.
            unsafe { std::mem::transmute(pair_avx512(b.as_ptr(), p)) }
        }
        let blk: Vec<u8> = (0..BYTES)
            .map(|i| (i as u32).wrapping_mul(2_654_435_761).rotate_left(11) as u8)
            .collect();
        if std::arch::is_x86_feature_detected!("avx2") {
            for s in 0..8 {
                // SAFETY: the block's 84 bytes, `s < 8`, and the CPU has AVX2 (detected).
                let got = unsafe { sub(&blk, s) };
                let want = pair_values(&blk, s / 2);
                for j in 0..32 {
                    assert_eq!(got[j] as i32, want[32 * (s % 2) + j], "sub-block {s} value {j}");
                }
            }
        }
        if std::arch::is_x86_feature_detected!("avx512bw") {
            for p in 0..4 {
                // SAFETY: the block's 84 bytes, `p < 4`, and the CPU has AVX-512 F/BW (detected).
                let got = unsafe { pair(&blk, p) };
                let want = pair_values(&blk, p);
                for j in 0..64 {
                    assert_eq!(got[j] as i32, want[j], "pair {p} value {j}");
                }
            }
        }
    }
}
