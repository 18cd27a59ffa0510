//! Converting stored K/V (f16, bf16, f32 or q8 bytes, little-endian) into the f16 load buffers.
//!
//! The portable loops are the definition; the AVX-512 and AVX2 (+F16C) paths compute the same
//! values bit for bit (an exact widening to f32, one f32 product for q8, one round-to-nearest-even
//! to f16), only many at a time. Loading a bf16 or q8 state is bound by this conversion, so it
//! runs over whole runs of rows (every token of a head), not row by row.

use super::format::StoredDType;
use super::q8;
use crate::model::cpu::isa::{isa, Isa};
use half::{bf16, f16};

/// Converts `dst.len()` stored values from `data` (and, for q8, their block scales, one
/// little-endian f16 per 32 values) into `dst`. `data` must hold exactly those values.
pub(super) fn to_f16(dt: StoredDType, data: &[u8], scales: Option<&[u8]>, dst: &mut [f16]) {
    to_f16_with(isa(), dt, data, scales, dst)
}

fn to_f16_with(isa: Isa, dt: StoredDType, data: &[u8], scales: Option<&[u8]>, dst: &mut [f16]) {
    let n = dst.len();
    match dt {
        StoredDType::F16 => {
            let src = &data[..n * 2];
            if cfg!(target_endian = "little") {
                // SAFETY: `dst` holds `n` f16 values (2·n bytes) and `src` is 2·n bytes of
                // little-endian f16; f16 has no invalid bit patterns.
                unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst.as_mut_ptr() as *mut u8, n * 2) };
            } else {
                for (o, c) in dst.iter_mut().zip(src.chunks_exact(2)) {
                    *o = f16::from_le_bytes([c[0], c[1]]);
                }
            }
        }
        StoredDType::Bf16 => {
            let src = &data[..n * 2];
            let done = simd::bf16(isa, src, dst);
            for (o, c) in dst[done..].iter_mut().zip(src[done * 2..].chunks_exact(2)) {
                *o = f16::from_f32(bf16::from_le_bytes([c[0], c[1]]).to_f32());
            }
        }
        StoredDType::F32 => {
            let src = &data[..n * 4];
            let done = simd::f32(isa, src, dst);
            for (o, c) in dst[done..].iter_mut().zip(src[done * 4..].chunks_exact(4)) {
                *o = f16::from_f32(f32::from_le_bytes([c[0], c[1], c[2], c[3]]));
            }
        }
        StoredDType::Q8 => {
            let q = &data[..n];
            let s = &scales.unwrap_or(&[])[..n / q8::BLOCK * 2];
            let done = simd::q8(isa, q, s, dst);
            q8::dequantize(&q[done..], &s[done / q8::BLOCK * 2..], &mut dst[done..]);
        }
    }
}

/// Each function converts a prefix of `dst` (whole SIMD steps; q8: whole blocks) and returns how
/// many values it did; the caller finishes the rest with the portable code.
// On other architectures every function returns 0 and its arguments go unused.
#[cfg_attr(not(all(target_arch = "x86_64", target_endian = "little")), allow(unused_variables))]
mod simd {
    use super::Isa;
    use half::f16;

    pub(super) fn bf16(isa: Isa, src: &[u8], dst: &mut [f16]) -> usize {
        match isa {
            #[cfg(all(target_arch = "x86_64", target_endian = "little"))]
            // SAFETY: `isa` comes from `isa()` (or `available()` in tests), so the CPU has
            // AVX-512 F/BW/VL, AVX2 and F16C; the kernel bounds itself by both slices.
            Isa::Avx512 => unsafe { x86::bf16_avx512(src, dst) },
            #[cfg(all(target_arch = "x86_64", target_endian = "little"))]
            // SAFETY: `isa` comes from `isa()` (or `available()`), so the CPU has AVX2 and F16C;
            // the kernel bounds itself by both slices.
            Isa::Avx2 => unsafe { x86::bf16_avx2(src, dst) },
            _ => 0,
        }
    }

    pub(super) fn f32(isa: Isa, src: &[u8], dst: &mut [f16]) -> usize {
        match isa {
            #[cfg(all(target_arch = "x86_64", target_endian = "little"))]
            // SAFETY: `isa` comes from `isa()` (or `available()`), so the CPU has AVX-512 F/BW/VL,
            // AVX2 and F16C; the kernel bounds itself by both slices.
            Isa::Avx512 => unsafe { x86::f32_avx512(src, dst) },
            #[cfg(all(target_arch = "x86_64", target_endian = "little"))]
            // SAFETY: `isa` comes from `isa()` (or `available()`), so the CPU has AVX2 and F16C;
            // the kernel bounds itself by both slices.
            Isa::Avx2 => unsafe { x86::f32_avx2(src, dst) },
            _ => 0,
        }
    }

    pub(super) fn q8(isa: Isa, q: &[u8], scales: &[u8], dst: &mut [f16]) -> usize {
        let blocks = (q.len().min(dst.len()) / super::q8::BLOCK).min(scales.len() / 2);
        let done = match isa {
            #[cfg(all(target_arch = "x86_64", target_endian = "little"))]
            Isa::Avx512 => {
                // SAFETY: the CPU has AVX-512 F/BW/VL, AVX2 and F16C (`isa` comes from `isa()` or
                // `available()`); `blocks` is at most the whole blocks of `q` and of `dst`, and
                // the scales present.
                unsafe { x86::q8_avx512(q, scales, dst, blocks) };
                blocks
            }
            #[cfg(all(target_arch = "x86_64", target_endian = "little"))]
            Isa::Avx2 => {
                // SAFETY: the CPU has AVX2 and F16C (`isa` comes from `isa()` or `available()`);
                // `blocks` is at most the whole blocks of `q` and of `dst`, and the scales present.
                unsafe { x86::q8_avx2(q, scales, dst, blocks) };
                blocks
            }
            _ => 0,
        };
        done * super::q8::BLOCK
    }

    #[cfg(all(target_arch = "x86_64", target_endian = "little"))]
    mod x86 {
        use super::super::q8::BLOCK;
        use half::f16;
        use std::arch::x86_64::*;

        /// Round to nearest even, as `f16::from_f32` does.
        const ROUND: i32 = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
        const ROUND_F16C: i32 = _MM_FROUND_TO_NEAREST_INT;

        /// # Safety
        /// The CPU has the features enabled here (the bounds come from the slices).
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,f16c")]
        pub(super) unsafe fn bf16_avx512(src: &[u8], dst: &mut [f16]) -> usize {
            let n = (dst.len().min(src.len() / 2)) / 16 * 16;
            let (s, d) = (src.as_ptr(), dst.as_mut_ptr() as *mut u8);
            for i in (0..n).step_by(16) {
                // SAFETY: `i + 16 <= n`: 32 bytes of `src` and of `dst` at byte offset 2·i.
                unsafe {
                    let h = _mm256_loadu_si256(s.add(i * 2) as *const __m256i);
                    let f = _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)));
                    _mm256_storeu_si256(d.add(i * 2) as *mut __m256i, _mm512_cvtps_ph::<ROUND>(f));
                }
            }
            n
        }

        /// # Safety
        /// The CPU has the features enabled here (the bounds come from the slices).
        #[target_feature(enable = "avx2,f16c")]
        pub(super) unsafe fn bf16_avx2(src: &[u8], dst: &mut [f16]) -> usize {
            let n = (dst.len().min(src.len() / 2)) / 8 * 8;
            let (s, d) = (src.as_ptr(), dst.as_mut_ptr() as *mut u8);
            for i in (0..n).step_by(8) {
                // SAFETY: `i + 8 <= n`: 16 bytes of `src` and of `dst` at byte offset 2·i.
                unsafe {
                    let h = _mm_loadu_si128(s.add(i * 2) as *const __m128i);
                    let f = _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h)));
                    _mm_storeu_si128(d.add(i * 2) as *mut __m128i, _mm256_cvtps_ph::<ROUND_F16C>(f));
                }
            }
            n
        }

        /// # Safety
        /// The CPU has the features enabled here (the bounds come from the slices).
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,f16c")]
        pub(super) unsafe fn f32_avx512(src: &[u8], dst: &mut [f16]) -> usize {
            let n = (dst.len().min(src.len() / 4)) / 16 * 16;
            let (s, d) = (src.as_ptr(), dst.as_mut_ptr() as *mut u8);
            for i in (0..n).step_by(16) {
                // SAFETY: `i + 16 <= n`: 64 bytes of `src` at 4·i, 32 of `dst` at 2·i.
                unsafe {
                    let f = _mm512_loadu_ps(s.add(i * 4) as *const f32);
                    _mm256_storeu_si256(d.add(i * 2) as *mut __m256i, _mm512_cvtps_ph::<ROUND>(f));
                }
            }
            n
        }

        /// # Safety
        /// The CPU has the features enabled here (the bounds come from the slices).
        #[target_feature(enable = "avx2,f16c")]
        pub(super) unsafe fn f32_avx2(src: &[u8], dst: &mut [f16]) -> usize {
            let n = (dst.len().min(src.len() / 4)) / 8 * 8;
            let (s, d) = (src.as_ptr(), dst.as_mut_ptr() as *mut u8);
            for i in (0..n).step_by(8) {
                // SAFETY: `i + 8 <= n`: 32 bytes of `src` at 4·i, 16 of `dst` at 2·i.
                unsafe {
                    let f = _mm256_loadu_ps(s.add(i * 4) as *const f32);
                    _mm_storeu_si128(d.add(i * 2) as *mut __m128i, _mm256_cvtps_ph::<ROUND_F16C>(f));
                }
            }
            n
        }

        /// `blocks` whole blocks: 32 signed bytes times the block's scale (an f16, widened exactly).
        ///
        /// # Safety
        /// The CPU has the features enabled here; `q` and `dst` hold at least `blocks · 32`
        /// values (the scales are read with bounds checks).
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,f16c")]
        pub(super) unsafe fn q8_avx512(q: &[u8], scales: &[u8], dst: &mut [f16], blocks: usize) {
            let (qp, d) = (q.as_ptr(), dst.as_mut_ptr() as *mut u8);
            for b in 0..blocks {
                let s = f16::from_le_bytes([scales[2 * b], scales[2 * b + 1]]).to_f32();
                let sv = _mm512_set1_ps(s);
                for h in 0..2 {
                    let i = b * BLOCK + h * 16;
                    // SAFETY: `b < blocks`: 16 bytes of `q` at `i`, 32 bytes of `dst` at 2·i.
                    unsafe {
                        let bytes = _mm_loadu_si128(qp.add(i) as *const __m128i);
                        let f = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(bytes)), sv);
                        _mm256_storeu_si256(d.add(i * 2) as *mut __m256i, _mm512_cvtps_ph::<ROUND>(f));
                    }
                }
            }
        }

        /// As [`q8_avx512`], 8 values at a time.
        ///
        /// # Safety
        /// As [`q8_avx512`], for the features enabled here.
        #[target_feature(enable = "avx2,f16c")]
        pub(super) unsafe fn q8_avx2(q: &[u8], scales: &[u8], dst: &mut [f16], blocks: usize) {
            let (qp, d) = (q.as_ptr(), dst.as_mut_ptr() as *mut u8);
            for b in 0..blocks {
                let s = f16::from_le_bytes([scales[2 * b], scales[2 * b + 1]]).to_f32();
                let sv = _mm256_set1_ps(s);
                for h in 0..4 {
                    let i = b * BLOCK + h * 8;
                    // SAFETY: `b < blocks`: 8 bytes of `q` at `i`, 16 bytes of `dst` at 2·i.
                    unsafe {
                        let bytes = _mm_loadl_epi64(qp.add(i) as *const __m128i);
                        let f = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(bytes)), sv);
                        _mm_storeu_si128(d.add(i * 2) as *mut __m128i, _mm256_cvtps_ph::<ROUND_F16C>(f));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::cpu::isa::available;

    /// Values that exercise rounding: halfway cases, subnormals, overflow to infinity, zeros.
    fn awkward_f32(n: usize) -> Vec<f32> {
        let special = [
            0.0,
            -0.0,
            1.0,
            -1.0,
            65504.0,
            65520.0,
            1e6,
            -1e6,
            6.0e-8,
            3.0e-8,
            1.0e-5,
            -2.5e-6,
            1.0 + 1.0 / 1024.0, // one f16 step above 1
            1.0 + 1.0 / 2048.0, // halfway between two f16 values: rounds to even
            f32::INFINITY,
            f32::NEG_INFINITY,
        ];
        (0..n)
            .map(|i| match special.get(i) {
                Some(v) => *v,
                None => {
                    let z = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
                    f32::from_bits(((z as u32) << 4) ^ 0x3c00_0000) * if i % 3 == 0 { -1.0 } else { 1.0 } * 1e-3
                }
            })
            .collect()
    }

    /// A stored dtype, its bytes, its q8 scales, and how many values they hold.
    type Case<'a> = (StoredDType, &'a [u8], Option<&'a [u8]>, usize);

    fn bits(v: &[f16]) -> Vec<u16> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    #[test]
    fn every_path_converts_exactly_like_the_portable_code() {
        // Lengths that are not multiples of a SIMD step check the tails too.
        for n in [0usize, 7, 32, 100, 1000, 4096 + 40] {
            let x = awkward_f32(n);
            let f32_bytes: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
            let bf16_bytes: Vec<u8> = x.iter().flat_map(|v| bf16::from_f32(*v).to_le_bytes()).collect();
            let blocks = n / q8::BLOCK * q8::BLOCK;
            let (mut q, mut s) = (Vec::new(), Vec::new());
            q8::quantize(&x[..blocks], &mut q, &mut s);
            let q_bytes: Vec<u8> = q.iter().map(|v| *v as u8).collect();
            let s_bytes: Vec<u8> = s.iter().flat_map(|v| v.to_le_bytes()).collect();
            let cases: [Case; 3] = [
                (StoredDType::Bf16, &bf16_bytes, None, n),
                (StoredDType::F32, &f32_bytes, None, n),
                (StoredDType::Q8, &q_bytes, Some(&s_bytes), blocks),
            ];
            for (dt, data, scales, len) in cases {
                let mut want = vec![f16::ZERO; len];
                to_f16_with(Isa::Portable, dt, data, scales, &mut want);
                for isa in available() {
                    let mut got = vec![f16::from_bits(0x7777); len];
                    to_f16_with(isa, dt, data, scales, &mut got);
                    assert_eq!(bits(&got), bits(&want), "{dt} n={n} on {isa:?}");
                }
            }
            // The portable f32 and bf16 paths are the plain conversions.
            let mut out = vec![f16::ZERO; n];
            to_f16_with(Isa::Portable, StoredDType::F32, &f32_bytes, None, &mut out);
            assert_eq!(
                bits(&out),
                bits(&x.iter().map(|v| f16::from_f32(*v)).collect::<Vec<_>>())
            );
        }
    }
}
