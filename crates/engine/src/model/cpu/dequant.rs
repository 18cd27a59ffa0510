//! Dequantizing rows of GGUF block-quantized weights to f32, bit for bit as candle (and ggml)
//! define each format: the same operations in the same order, only vectorized.
//!
//! Our own decoders cover the formats the default model and its common re-quantizations use
//! (Q4_0, Q4_1, Q5_0, Q8_0, Q4_K, Q6_K, f16); the rest go through candle's `to_float`.

// Index loops mirror the arithmetic they define; iterator chains would hide the order.
#![allow(clippy::needless_range_loop)]

use super::isa::Isa;
use candle_core::quantized::k_quants::{BlockQ2K, BlockQ3K, BlockQ5K, BlockQ5_1, GgmlType};
use candle_core::quantized::GgmlDType;
use half::{bf16, f16};

/// Decodes `out.len()` consecutive values starting at block-aligned byte offset `bytes`.
pub type RowDecoder = fn(bytes: &[u8], out: &mut [f32]);

/// The decoder for a weight type on the given instruction set, or `None` for types that are not
/// weight formats. `isa` must be one the CPU runs (the crate's invariant, see [`super::isa`]):
/// the SIMD decoders returned are safe functions that rely on it.
pub fn decoder(dtype: GgmlDType, isa: Isa) -> Option<RowDecoder> {
    #[cfg(target_arch = "x86_64")]
    {
        use super::gemv::avx512 as blocks;
        let simd: Option<RowDecoder> = match (isa, dtype) {
            (Isa::Avx512, GgmlDType::Q4_0) => Some(x86::avx512_row::<blocks::Q4_0>),
            (Isa::Avx512, GgmlDType::Q4_1) => Some(x86::avx512_row::<blocks::Q4_1>),
            (Isa::Avx512, GgmlDType::Q5_0) => Some(x86::avx512_row::<blocks::Q5_0>),
            (Isa::Avx512, GgmlDType::Q8_0) => Some(x86::avx512_row::<blocks::Q8_0>),
            (Isa::Avx2, GgmlDType::Q4_0) => Some(x86::q4_0_avx2),
            (Isa::Avx2, GgmlDType::Q4_1) => Some(x86::q4_1_avx2),
            (Isa::Avx2, GgmlDType::Q5_0) => Some(x86::q5_0_avx2),
            (Isa::Avx2, GgmlDType::Q8_0) => Some(x86::q8_0_avx2),
            (Isa::Avx512, GgmlDType::Q4K) => Some(x86::avx512_row::<blocks::Q4K>),
            (Isa::Avx512, GgmlDType::Q6K) => Some(x86::avx512_row::<blocks::Q6K>),
            (Isa::Avx2, GgmlDType::Q4K) => Some(x86::q4k_avx2),
            (Isa::Avx2, GgmlDType::Q6K) => Some(x86::q6k_avx2),
            (Isa::Avx512, GgmlDType::F16) => Some(x86::avx512_row::<blocks::F16>),
            (Isa::Avx512, GgmlDType::BF16) => Some(x86::avx512_row::<blocks::Bf16>),
            (Isa::Avx2, GgmlDType::F16) => Some(x86::f16_avx2),
            _ => None,
        };
        if simd.is_some() {
            return simd;
        }
    }
    let _ = isa;
    Some(match dtype {
        GgmlDType::F32 => f32s,
        GgmlDType::F16 => f16s,
        GgmlDType::BF16 => bf16s,
        GgmlDType::Q4_0 => q4_0,
        GgmlDType::Q4_1 => q4_1,
        GgmlDType::Q5_0 => q5_0,
        GgmlDType::Q5_1 => blocks::<BlockQ5_1>,
        GgmlDType::Q8_0 => q8_0,
        GgmlDType::Q2K => blocks::<BlockQ2K>,
        GgmlDType::Q3K => blocks::<BlockQ3K>,
        GgmlDType::Q4K => q4k,
        GgmlDType::Q5K => blocks::<BlockQ5K>,
        GgmlDType::Q6K => q6k,
        GgmlDType::Q8_1 | GgmlDType::Q8K => return None,
    })
}

fn blocks<T: GgmlType>(bytes: &[u8], out: &mut [f32]) {
    let n = out.len() / T::BLCK_SIZE;
    let size = std::mem::size_of::<T>();
    assert!(bytes.len() >= n * size);
    if (bytes.as_ptr() as usize).is_multiple_of(std::mem::align_of::<T>()) {
        // SAFETY: the block types are `repr(C)` plain data; the pointer is aligned and `n`
        // blocks of `size` bytes are in bounds.
        let xs = unsafe { std::slice::from_raw_parts(bytes.as_ptr() as *const T, n) };
        T::to_float(xs, out);
    } else {
        let mut tmp: Vec<T> = (0..n).map(|_| T::zeros()).collect();
        // SAFETY: as above, copying into an aligned buffer of the same byte length.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), tmp.as_mut_ptr() as *mut u8, n * size) };
        T::to_float(&tmp, out);
    }
}

#[inline(always)]
fn half_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

fn f32s(bytes: &[u8], out: &mut [f32]) {
    for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
        *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    }
}

#[inline(always)]
fn f16s(bytes: &[u8], out: &mut [f32]) {
    for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        *o = f16::from_le_bytes([c[0], c[1]]).to_f32();
    }
}

fn bf16s(bytes: &[u8], out: &mut [f32]) {
    for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        *o = bf16::from_le_bytes([c[0], c[1]]).to_f32();
    }
}

/// `(q - 8) · d`
#[inline(always)]
fn q4_0(bytes: &[u8], out: &mut [f32]) {
    for (blk, ys) in bytes.chunks_exact(18).zip(out.chunks_exact_mut(32)) {
        let d = half_at(blk, 0);
        let qs = &blk[2..18];
        let (lo, hi) = ys.split_at_mut(16);
        for j in 0..16 {
            lo[j] = ((qs[j] & 0x0F) as i16 - 8) as f32 * d;
            hi[j] = ((qs[j] >> 4) as i16 - 8) as f32 * d;
        }
    }
}

/// `q · d + m`, two roundings.
#[inline(always)]
fn q4_1(bytes: &[u8], out: &mut [f32]) {
    for (blk, ys) in bytes.chunks_exact(20).zip(out.chunks_exact_mut(32)) {
        let d = half_at(blk, 0);
        let m = half_at(blk, 2);
        let qs = &blk[4..20];
        let (lo, hi) = ys.split_at_mut(16);
        for j in 0..16 {
            lo[j] = (qs[j] & 0x0F) as f32 * d + m;
            hi[j] = (qs[j] >> 4) as f32 * d + m;
        }
    }
}

/// `(q - 16) · d` with the fifth bit of value `j` in bit `j` of `qh`.
#[inline(always)]
fn q5_0(bytes: &[u8], out: &mut [f32]) {
    for (blk, ys) in bytes.chunks_exact(22).zip(out.chunks_exact_mut(32)) {
        let d = half_at(blk, 0);
        let qh = u32::from_le_bytes([blk[2], blk[3], blk[4], blk[5]]);
        let qs = &blk[6..22];
        let (lo, hi) = ys.split_at_mut(16);
        for j in 0..16 {
            let x0 = ((qs[j] & 0x0F) | ((((qh >> j) << 4) & 0x10) as u8)) as i32 - 16;
            let x1 = ((qs[j] >> 4) | (((qh >> (j + 12)) & 0x10) as u8)) as i32 - 16;
            lo[j] = x0 as f32 * d;
            hi[j] = x1 as f32 * d;
        }
    }
}

/// `q · d`
#[inline(always)]
fn q8_0(bytes: &[u8], out: &mut [f32]) {
    for (blk, ys) in bytes.chunks_exact(34).zip(out.chunks_exact_mut(32)) {
        let d = half_at(blk, 0);
        for j in 0..32 {
            ys[j] = (blk[2 + j] as i8) as f32 * d;
        }
    }
}

/// The 6-bit scale and min of sub-block `j` of a Q4_K/Q5_K block (ggml's `get_scale_min_k4`).
#[inline(always)]
pub(super) fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// Q4_K (144-byte blocks of 256): `(d · sc) · q - (dmin · m)` per sub-block of 32.
#[inline(always)]
fn q4k(bytes: &[u8], out: &mut [f32]) {
    for (blk, ys) in bytes.chunks_exact(144).zip(out.chunks_exact_mut(256)) {
        let d = half_at(blk, 0);
        let min = half_at(blk, 2);
        let scales = &blk[4..16];
        let qs = &blk[16..144];
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

/// Q6_K (210-byte blocks of 256): `(d · sc) · (q - 32)` per sub-block of 16.
#[inline(always)]
fn q6k(bytes: &[u8], out: &mut [f32]) {
    for (blk, ys) in bytes.chunks_exact(210).zip(out.chunks_exact_mut(256)) {
        let (ql, rest) = blk.split_at(128);
        let (qh, rest) = rest.split_at(64);
        let (sc, d) = rest.split_at(16);
        let d = half_at(d, 0);
        for half in 0..2 {
            let ys = &mut ys[half * 128..][..128];
            let sc = &sc[8 * half..];
            let ql = &ql[64 * half..];
            let qh = &qh[32 * half..];
            for l in 0..32 {
                let is = l / 16;
                let q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i8 - 32;
                let q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
                let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
                let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
                ys[l] = d * (sc[is] as i8) as f32 * q1 as f32;
                ys[l + 32] = d * (sc[is + 2] as i8) as f32 * q2 as f32;
                ys[l + 64] = d * (sc[is + 4] as i8) as f32 * q3 as f32;
                ys[l + 96] = d * (sc[is + 6] as i8) as f32 * q4 as f32;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::super::gemv::avx512::Block;
    use std::arch::x86_64::*;

    /// Instantiations of the portable decoders compiled for AVX2 (the compiler vectorizes them;
    /// Rust never contracts `a * b + c` into a fused multiply-add, so the values are unchanged).
    macro_rules! avx2_instance {
        ($name:ident, $generic:path) => {
            pub fn $name(bytes: &[u8], out: &mut [f32]) {
                #[target_feature(enable = "avx2,fma,f16c")]
                fn inner(bytes: &[u8], out: &mut [f32]) {
                    $generic(bytes, out)
                }
                // SAFETY: `decoder` hands this function out only for `Isa::Avx2`, which the
                // crate only holds when the CPU has AVX2, FMA and F16C (see `isa`); `inner`
                // itself is safe code.
                unsafe { inner(bytes, out) }
            }
        };
    }
    avx2_instance!(q4_0_avx2, super::q4_0);
    avx2_instance!(q5_0_avx2, super::q5_0);
    avx2_instance!(q4k_avx2, super::q4k);
    avx2_instance!(q6k_avx2, super::q6k);
    avx2_instance!(f16_avx2, super::f16s);

    /// `[d, m]` of a block from its two leading f16 values.
    ///
    /// # Safety
    /// 4 bytes at `p` are readable, and the CPU has AVX2 and F16C.
    #[inline]
    #[target_feature(enable = "avx2,f16c")]
    unsafe fn halves(p: *const u8) -> __m128 {
        // SAFETY: the 4 bytes at `p` are readable (the contract); the read is unaligned.
        _mm_cvtph_ps(_mm_cvtsi32_si128(unsafe { (p as *const i32).read_unaligned() }))
    }

    pub fn q4_1_avx2(bytes: &[u8], out: &mut [f32]) {
        #[target_feature(enable = "avx2,fma,f16c")]
        fn inner(bytes: &[u8], out: &mut [f32]) {
            let nb = out.len() / 32;
            assert!(bytes.len() >= nb * 20);
            let mask = _mm_set1_epi8(0x0F);
            for b in 0..nb {
                // SAFETY: `b < nb`: the 20 bytes of block `b` are inside `bytes` (asserted) and its
                // 32 outputs inside `out` (`nb = out.len() / 32`); the features are `inner`'s.
                unsafe {
                    let blk = bytes.as_ptr().add(b * 20);
                    let dm = halves(blk);
                    let d = _mm256_broadcastss_ps(dm);
                    let m = _mm256_broadcastss_ps(_mm_movehdup_ps(dm));
                    let qs = _mm_loadu_si128(blk.add(4) as *const __m128i);
                    let lo = _mm_and_si128(qs, mask);
                    let hi = _mm_and_si128(_mm_srli_epi16(qs, 4), mask);
                    let o = out.as_mut_ptr().add(b * 32);
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
        // SAFETY: `decoder` hands this function out only for `Isa::Avx2`, so the CPU has AVX2, FMA
        // and F16C (see `isa`).
        unsafe { inner(bytes, out) }
    }

    pub fn q8_0_avx2(bytes: &[u8], out: &mut [f32]) {
        #[target_feature(enable = "avx2,fma,f16c")]
        fn inner(bytes: &[u8], out: &mut [f32]) {
            let nb = out.len() / 32;
            assert!(bytes.len() >= nb * 34);
            for b in 0..nb {
                // SAFETY: `b < nb`: the 34 bytes of block `b` are inside `bytes` (asserted) and its
                // 32 outputs inside `out` (`nb = out.len() / 32`); the features are `inner`'s.
                unsafe {
                    let blk = bytes.as_ptr().add(b * 34);
                    let d = _mm256_broadcastss_ps(halves(blk));
                    let o = out.as_mut_ptr().add(b * 32);
                    for i in 0..4 {
                        let v = _mm_loadl_epi64(blk.add(2 + i * 8) as *const __m128i);
                        let f = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v));
                        _mm256_storeu_ps(o.add(i * 8), _mm256_mul_ps(f, d));
                    }
                }
            }
        }
        // SAFETY: `decoder` hands this function out only for `Isa::Avx2`, so the CPU has AVX2, FMA
        // and F16C (see `isa`).
        unsafe { inner(bytes, out) }
    }

    /// A whole row decoded with the block decoders of the fused decoding kernels
    /// ([`super::super::gemv`]), so prefill panels and decoding see the same values.
    pub fn avx512_row<B: Block>(bytes: &[u8], out: &mut [f32]) {
        #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c")]
        fn inner<B: Block>(bytes: &[u8], out: &mut [f32]) {
            let nb = out.len() / 32;
            assert!(bytes.len() >= nb / B::SUBS * B::BYTES);
            for b in 0..nb {
                // SAFETY: `b < nb`: block `b / SUBS` (`BYTES` bytes) is inside `bytes` (asserted),
                // `b % SUBS < SUBS`, and the 32 outputs of sub-block `b` are inside `out`; `inner`
                // enables every feature `Block::decode` needs.
                unsafe {
                    let (lo, hi) = B::decode(bytes.as_ptr().add(b / B::SUBS * B::BYTES), b % B::SUBS);
                    let o = out.as_mut_ptr().add(b * 32);
                    _mm512_storeu_ps(o, lo);
                    _mm512_storeu_ps(o.add(16), hi);
                }
            }
        }
        // SAFETY: `decoder` hands this function out only for `Isa::Avx512`, so the CPU has
        // AVX-512 F/BW/DQ/VL, AVX2, FMA and F16C (see `isa`).
        unsafe { inner::<B>(bytes, out) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::cpu::isa::available;
    use candle_core::quantized::QTensor;
    use candle_core::{Device, Tensor};

    #[test]
    fn our_decoders_equal_candles_bit_for_bit() {
        let v: Vec<f32> = (0..64 * 512)
            .map(|i| ((i * 7919 % 1013) as f32 / 1013.0 - 0.5) * 3.0 + (i % 7) as f32 * 0.01)
            .collect();
        let t = Tensor::from_vec(v, (64, 512), &Device::Cpu).unwrap();
        for dt in [
            GgmlDType::Q4_0,
            GgmlDType::Q4_1,
            GgmlDType::Q5_0,
            GgmlDType::Q8_0,
            GgmlDType::Q4K,
            GgmlDType::Q6K,
            GgmlDType::F16,
            GgmlDType::BF16,
        ] {
            let q = QTensor::quantize(&t, dt).unwrap();
            let want = q
                .dequantize(&Device::Cpu)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let data = q.data().unwrap();
            for isa in available() {
                let mut got = vec![f32::NAN; want.len()];
                decoder(dt, isa).unwrap()(&data, &mut got);
                let same = got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{dt:?} on {isa:?}: our decoder must equal candle's bit for bit");
            }
        }
    }
}
