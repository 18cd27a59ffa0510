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
pub fn pair_values(blk: &[u8], p: usize) -> [i32; 64] {
    let mut w = [0i32; 64];
    let q = &blk[QS + 32 * p..][..32];
    let qh = &blk[QH..QS];
    for j in 0..32 {
        w[j] = (q[j] & 0xF) as i32 | ((qh[j] >> (2 * p) & 1) as i32) << 4;
        w[32 + j] = (q[j] >> 4) as i32 | ((qh[j] >> (2 * p + 1) & 1) as i32) << 4;
    }
    w
}

/// The integer path's scales of the block `blk`: Q4_K's (the same bytes at the same places).
pub fn int_scales(blk: &[u8]) -> KScales {
    q4k::int_scales(blk)
}

#[cfg(target_arch = "x86_64")]
pub use x86::{pair_avx512, sub_avx2};

#[cfg(target_arch = "x86_64")]
mod x86 {
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
            let q = _mm256_loadu_si256(b.add(QS + 32 * (s / 2)) as *const __m256i);
            let q = _mm256_and_si256(
                _mm256_srl_epi16(q, _mm_cvtsi32_si128(4 * (s % 2) as i32)),
                _mm256_set1_epi8(0x0F),
            );
            // Bit `s` of each high-bit byte, moved to bit 4 (shifts in 16-bit lanes; the mask
            // drops what crossed from the neighbouring byte).
            let h = _mm256_loadu_si256(b.add(QH) as *const __m256i);
            let h = _mm256_slli_epi16::<4>(_mm256_srl_epi16(h, _mm_cvtsi32_si128(s as i32)));
            _mm256_or_si256(q, _mm256_and_si256(h, _mm256_set1_epi8(0x10)))
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
            let v = _mm512_broadcast_i64x4(_mm256_loadu_si256(b.add(QS + 32 * p) as *const __m256i));
            let shifts = _mm512_inserti64x4::<1>(_mm512_setzero_si512(), _mm256_set1_epi16(4));
            let q = _mm512_and_si512(_mm512_srlv_epi16(v, shifts), _mm512_set1_epi8(0x0F));
            // Bits 2p (first sub-block) and 2p + 1 (second) of the high-bit bytes, at bit 4.
            let h = _mm512_broadcast_i64x4(_mm256_loadu_si256(b.add(QH) as *const __m256i));
            let hs = _mm512_inserti64x4::<1>(_mm512_set1_epi16(2 * p as i16), _mm256_set1_epi16(2 * p as i16 + 1));
            let h = _mm512_slli_epi16::<4>(_mm512_srlv_epi16(h, hs));
            _mm512_or_si512(q, _mm512_and_si512(h, _mm512_set1_epi8(0x10)))
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
        let v: Vec<f32> = (0..4 * 256)
            .map(|i| ((i * 7919 % 1013) as f32 / 1013.0 - 0.5) * 3.0 + (i % 5) as f32 * 0.2)
            .collect();
        let t = Tensor::from_vec(v, (4, 256), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&t, candle_core::quantized::GgmlDType::Q5K).unwrap();
        let want = q
            .dequantize(&Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let data = q.data().unwrap();
        let mut high = 0;
        for (b, blk) in data.chunks_exact(BYTES).enumerate() {
            let s = int_scales(blk);
            for p in 0..4 {
                let w = pair_values(blk, p);
                for (j, &q) in w.iter().enumerate() {
                    let g = 4 * p + j / 16;
                    let (d1, m1) = (s.d * s.sc[g] as f32, s.e * s.c[g] as f32);
                    let got = d1 * q as f32 - m1;
                    assert_eq!(
                        got.to_bits(),
                        want[256 * b + 64 * p + j].to_bits(),
                        "block {b} pair {p} value {j}"
                    );
                    high += (q >= 16) as usize;
                }
            }
        }
        assert!(high > 0, "the fifth bit must be exercised");
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_simd_unpackings_are_the_portable_ones() {
        /// `sub_avx2` of sub-block `s`, as bytes.
        #[target_feature(enable = "avx2")]
        unsafe fn sub(b: &[u8], s: usize) -> [u8; 32] {
            // SAFETY: the caller's block of 176 bytes, `s < 8`; AVX2 enabled here.
            unsafe { std::mem::transmute(sub_avx2(b.as_ptr(), s)) }
        }
        /// `pair_avx512` of pair `p`, as bytes.
        #[target_feature(enable = "avx512f,avx512bw,avx2")]
        unsafe fn pair(b: &[u8], p: usize) -> [u8; 64] {
            // SAFETY: the caller's block of 176 bytes, `p < 4`; the features enabled here.
            unsafe { std::mem::transmute(pair_avx512(b.as_ptr(), p)) }
        }
        // A spread of bytes over the high bits and nibbles.
        let blk: Vec<u8> = (0..BYTES)
            .map(|i| (i as u32).wrapping_mul(2_654_435_761).rotate_left(11) as u8)
            .collect();
        if std::arch::is_x86_feature_detected!("avx2") {
            for s in 0..8 {
                // SAFETY: the block's 176 bytes, `s < 8`, and the CPU has AVX2 (detected).
                let got = unsafe { sub(&blk, s) };
                let want = pair_values(&blk, s / 2);
                for j in 0..32 {
                    assert_eq!(got[j] as i32, want[32 * (s % 2) + j], "sub-block {s} value {j}");
                }
            }
        }
        if std::arch::is_x86_feature_detected!("avx512bw") {
            for p in 0..4 {
                // SAFETY: the block's 176 bytes, `p < 4`, and the CPU has AVX-512 F/BW (detected).
                let got = unsafe { pair(&blk, p) };
                let want = pair_values(&blk, p);
                for j in 0..64 {
                    assert_eq!(got[j] as i32, want[j], "pair {p} value {j}");
                }
            }
        }
    }
}
