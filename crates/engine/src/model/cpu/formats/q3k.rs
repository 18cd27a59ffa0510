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

/// The 16 groups' signed scales `sc − 32` of the block `blk` (ggml's unpacking of the 12 bytes).
pub fn scales(blk: &[u8]) -> [i8; 16] {
    let r = |i: usize| u32::from_le_bytes([0, 1, 2, 3].map(|j| blk[SCALES + 4 * i + j]));
    let (a0, a1, tmp) = (r(0), r(1), r(2));
    const K1: u32 = 0x0303_0303;
    const K2: u32 = 0x0f0f_0f0f;
    let aux = [
        (a0 & K2) | ((tmp & K1) << 4),
        (a1 & K2) | (((tmp >> 2) & K1) << 4),
        ((a0 >> 4) & K2) | (((tmp >> 4) & K1) << 4),
        ((a1 >> 4) & K2) | (((tmp >> 6) & K1) << 4),
    ];
    // Each byte is a 6-bit scale: `- 32` keeps it in i8.
    std::array::from_fn(|j| (aux[j / 4].to_le_bytes()[j % 4] as i8).wrapping_sub(32))
}

/// The weight integers `q` of pair `p` (sub-blocks `2p`, `2p + 1`) of the block `blk`.
pub fn pair_values(blk: &[u8], p: usize) -> [i32; 64] {
    let mut w = [0i32; 64];
    for half in 0..2 {
        let s = 2 * p + half;
        let q = &blk[QS + 32 * (s / 4)..][..32];
        for l in 0..32 {
            let low = (q[l] >> (2 * (s % 4))) & 3;
            let high = (blk[HMASK + l] >> s) & 1;
            w[32 * half + l] = (low | high << 2) as i32;
        }
    }
    w
}

/// The integer path's scales of the block `blk`: each 16 values' signed scale, the offsets
/// `c_j = 4 · sc_j` with `e = d`.
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
pub use x86::{pair_avx512, sub_avx2};

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{HMASK, QS};
    use std::arch::x86_64::*;

    /// Sub-block `s` of the block `b`: 32 unsigned 3-bit values, for the integer path.
    ///
    /// # Safety
    /// The 110 bytes of the block are readable, `s < 8`; the CPU has AVX2.
    #[inline(always)]
    pub unsafe fn sub_avx2(b: *const u8, s: usize) -> __m256i {
        // SAFETY: reads bytes `32 + 32·(s/4)` + 0..32 (at most 96) and 0..32 (the contract),
        // with AVX2 (the contract).
        unsafe {
            let q = _mm256_loadu_si256(b.add(QS + 32 * (s / 4)) as *const __m256i);
            let q = _mm256_and_si256(
                _mm256_srl_epi16(q, _mm_cvtsi32_si128(2 * (s % 4) as i32)),
                _mm256_set1_epi8(3),
            );
            // Bit `s` of each high-bit byte, moved to bit 2 (shifts in 16-bit lanes; the mask
            // drops what crossed from the neighbouring byte).
            let h = _mm256_loadu_si256(b.add(HMASK) as *const __m256i);
            let h = _mm256_slli_epi16::<2>(_mm256_srl_epi16(h, _mm_cvtsi32_si128(s as i32)));
            _mm256_or_si256(q, _mm256_and_si256(h, _mm256_set1_epi8(4)))
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
            let v = _mm512_broadcast_i64x4(_mm256_loadu_si256(b.add(QS + 32 * (p / 2)) as *const __m256i));
            let s0 = 2 * (2 * p % 4) as i16;
            let shifts = _mm512_inserti64x4::<1>(_mm512_set1_epi16(s0), _mm256_set1_epi16(s0 + 2));
            let q = _mm512_and_si512(_mm512_srlv_epi16(v, shifts), _mm512_set1_epi8(3));
            let h = _mm512_broadcast_i64x4(_mm256_loadu_si256(b.add(HMASK) as *const __m256i));
            let hs = _mm512_inserti64x4::<1>(_mm512_set1_epi16(2 * p as i16), _mm256_set1_epi16(2 * p as i16 + 1));
            let h = _mm512_slli_epi16::<2>(_mm512_srlv_epi16(h, hs));
            _mm512_or_si512(q, _mm512_and_si512(h, _mm512_set1_epi8(4)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::QTensor;
    use candle_core::{Device, Tensor};

    /// The weight integers and scales give candle's decoded values: `d · sc · (q − 4)`.
    #[test]
    fn the_integers_are_candles_values() {
        let v: Vec<f32> = (0..8 * 256)
            .map(|i| ((i * 7919 % 1013) as f32 / 1013.0 - 0.5) * 3.0 + (i % 5) as f32 * 0.2)
            .collect();
        let t = Tensor::from_vec(v, (8, 256), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&t, candle_core::quantized::GgmlDType::Q3K).unwrap();
        let want = q
            .dequantize(&Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let data = q.data().unwrap();
        let (mut high, mut negative) = (0, 0);
        for (b, blk) in data.chunks_exact(BYTES).enumerate() {
            let s = int_scales(blk);
            negative += s.sc.iter().filter(|&&v| v < 0).count();
            for p in 0..4 {
                let w = pair_values(blk, p);
                for (j, &q) in w.iter().enumerate() {
                    let g = 4 * p + j / 16;
                    // candle: `(d · sc) · (q − 4)`, the same operations.
                    let got = (s.d * s.sc[g] as f32) * (q - 4) as f32;
                    assert_eq!(
                        got.to_bits(),
                        want[256 * b + 64 * p + j].to_bits(),
                        "block {b} pair {p} value {j}"
                    );
                    assert_eq!(s.c[g], 4 * s.sc[g]);
                    high += (q >= 4) as usize;
                }
            }
        }
        assert!(
            high > 0 && negative > 0,
            "high bits and negative scales must be exercised"
        );
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_simd_unpackings_are_the_portable_ones() {
        /// `sub_avx2` of sub-block `s`, as bytes.
        #[target_feature(enable = "avx2")]
        unsafe fn sub(b: &[u8], s: usize) -> [u8; 32] {
            // SAFETY: the caller's block of 110 bytes, `s < 8`; AVX2 enabled here.
            unsafe { std::mem::transmute(sub_avx2(b.as_ptr(), s)) }
        }
        /// `pair_avx512` of pair `p`, as bytes.
        #[target_feature(enable = "avx512f,avx512bw,avx2")]
        unsafe fn pair(b: &[u8], p: usize) -> [u8; 64] {
            // SAFETY: the caller's block of 110 bytes, `p < 4`; the features enabled here.
            unsafe { std::mem::transmute(pair_avx512(b.as_ptr(), p)) }
        }
        let blk: Vec<u8> = (0..BYTES)
            .map(|i| (i as u32).wrapping_mul(2_654_435_761).rotate_left(11) as u8)
            .collect();
        if std::arch::is_x86_feature_detected!("avx2") {
            for s in 0..8 {
                // SAFETY: the block's 110 bytes, `s < 8`, and the CPU has AVX2 (detected).
                let got = unsafe { sub(&blk, s) };
                let want = pair_values(&blk, s / 2);
                for j in 0..32 {
                    assert_eq!(got[j] as i32, want[32 * (s % 2) + j], "sub-block {s} value {j}");
                }
            }
        }
        if std::arch::is_x86_feature_detected!("avx512bw") {
            for p in 0..4 {
                // SAFETY: the block's 110 bytes, `p < 4`, and the CPU has AVX-512 F/BW (detected).
                let got = unsafe { pair(&blk, p) };
                let want = pair_values(&blk, p);
                for j in 0..64 {
                    assert_eq!(got[j] as i32, want[j], "pair {p} value {j}");
                }
            }
        }
    }
}
