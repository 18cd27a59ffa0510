//! Dequantizing rows of GGUF block-quantized weights to f32 (candle's block decoders).

// Index loops mirror the arithmetic they define; iterator chains would hide the order.
#![allow(clippy::needless_range_loop)]

use candle_core::quantized::k_quants::{
    BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ5_0, BlockQ5_1, BlockQ6K, GgmlType,
};
use candle_core::quantized::GgmlDType;
use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};

/// Decodes `out.len()` consecutive values starting at block-aligned byte offset `bytes`.
pub type RowDecoder = fn(bytes: &[u8], out: &mut [f32]);

fn blocks<T: GgmlType>(bytes: &[u8], out: &mut [f32]) {
    let n = out.len() / T::BLCK_SIZE;
    let size = std::mem::size_of::<T>();
    debug_assert!(bytes.len() >= n * size);
    if (bytes.as_ptr() as usize) % std::mem::align_of::<T>() == 0 {
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

fn f32s(bytes: &[u8], out: &mut [f32]) {
    for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
        *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    }
}

fn f16s(bytes: &[u8], out: &mut [f32]) {
    let v: Vec<f16> = bytes[..out.len() * 2]
        .chunks_exact(2)
        .map(|c| f16::from_le_bytes([c[0], c[1]]))
        .collect();
    v.convert_to_f32_slice(out);
}

fn bf16s(bytes: &[u8], out: &mut [f32]) {
    for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        *o = bf16::from_le_bytes([c[0], c[1]]).to_f32();
    }
}

/// Our own decoders for the most common formats: the same arithmetic as candle's (and ggml's)
/// `dequantize_row_*`, written so the compiler vectorizes them; an AVX2 instantiation is chosen
/// at run time.
macro_rules! fast_decoder {
    ($name:ident, $portable:ident, $simd:ident) => {
        fn $name(bytes: &[u8], out: &mut [f32]) {
            #[cfg(target_arch = "x86_64")]
            {
                if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("f16c") {
                    // SAFETY: the features enabled on the function are present.
                    return unsafe { $simd(bytes, out) };
                }
            }
            $portable(bytes, out)
        }
    };
}

#[inline(always)]
fn half_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

#[inline(always)]
fn q4_0_generic(bytes: &[u8], out: &mut [f32]) {
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
fast_decoder!(q4_0, q4_0_generic, q4_0_avx2);

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c")]
unsafe fn q4_0_avx2(bytes: &[u8], out: &mut [f32]) {
    q4_0_generic(bytes, out)
}

#[inline(always)]
fn q4_1_generic(bytes: &[u8], out: &mut [f32]) {
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
fast_decoder!(q4_1, q4_1_generic, q4_1_avx2);

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c")]
unsafe fn q4_1_avx2(bytes: &[u8], out: &mut [f32]) {
    use std::arch::x86_64::*;
    let nb = out.len() / 32;
    debug_assert!(bytes.len() >= nb * 20);
    let mask = _mm_set1_epi8(0x0F);
    for b in 0..nb {
        let blk = bytes.as_ptr().add(b * 20);
        let d = _mm256_set1_ps(half_at(bytes, b * 20));
        let m = _mm256_set1_ps(half_at(bytes, b * 20 + 2));
        let qs = _mm_loadu_si128(blk.add(4) as *const __m128i);
        let lo = _mm_and_si128(qs, mask);
        let hi = _mm_and_si128(_mm_srli_epi16(qs, 4), mask);
        let o = out.as_mut_ptr().add(b * 32);
        for (i, v) in [lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)]
            .into_iter()
            .enumerate()
        {
            let f = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v));
            // x * d + m with two roundings, as the reference decoder (no fused multiply-add).
            _mm256_storeu_ps(o.add(i * 8), _mm256_add_ps(_mm256_mul_ps(f, d), m));
        }
    }
}

#[inline(always)]
fn q8_0_generic(bytes: &[u8], out: &mut [f32]) {
    for (blk, ys) in bytes.chunks_exact(34).zip(out.chunks_exact_mut(32)) {
        let d = half_at(blk, 0);
        for j in 0..32 {
            ys[j] = (blk[2 + j] as i8) as f32 * d;
        }
    }
}
fast_decoder!(q8_0, q8_0_generic, q8_0_avx2);

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c")]
unsafe fn q8_0_avx2(bytes: &[u8], out: &mut [f32]) {
    use std::arch::x86_64::*;
    let nb = out.len() / 32;
    debug_assert!(bytes.len() >= nb * 34);
    for b in 0..nb {
        let blk = bytes.as_ptr().add(b * 34 + 2);
        let d = _mm256_set1_ps(half_at(bytes, b * 34));
        let o = out.as_mut_ptr().add(b * 32);
        for i in 0..4 {
            let v = _mm_loadl_epi64(blk.add(i * 8) as *const __m128i);
            let f = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v));
            _mm256_storeu_ps(o.add(i * 8), _mm256_mul_ps(f, d));
        }
    }
}

/// The decoder for a weight type, or `None` for types that are not weight formats.
pub fn decoder(dtype: GgmlDType) -> Option<RowDecoder> {
    Some(match dtype {
        GgmlDType::F32 => f32s,
        GgmlDType::F16 => f16s,
        GgmlDType::BF16 => bf16s,
        GgmlDType::Q4_0 => q4_0,
        GgmlDType::Q4_1 => q4_1,
        GgmlDType::Q5_0 => blocks::<BlockQ5_0>,
        GgmlDType::Q5_1 => blocks::<BlockQ5_1>,
        GgmlDType::Q8_0 => q8_0,
        GgmlDType::Q2K => blocks::<BlockQ2K>,
        GgmlDType::Q3K => blocks::<BlockQ3K>,
        GgmlDType::Q4K => blocks::<BlockQ4K>,
        GgmlDType::Q5K => blocks::<BlockQ5K>,
        GgmlDType::Q6K => blocks::<BlockQ6K>,
        GgmlDType::Q8_1 | GgmlDType::Q8K => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::QTensor;
    use candle_core::{Device, Tensor};

    #[test]
    fn our_decoders_equal_candles_bit_for_bit() {
        let v: Vec<f32> = (0..64 * 256)
            .map(|i| ((i * 7919 % 1013) as f32 / 1013.0 - 0.5) * 3.0)
            .collect();
        let t = Tensor::from_vec(v, (64, 256), &Device::Cpu).unwrap();
        for dt in [GgmlDType::Q4_0, GgmlDType::Q4_1, GgmlDType::Q8_0] {
            let q = QTensor::quantize(&t, dt).unwrap();
            let want = q
                .dequantize(&Device::Cpu)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let mut got = vec![0f32; want.len()];
            decoder(dt).unwrap()(&q.data().unwrap(), &mut got);
            assert_eq!(got, want, "{dt:?}");
            let mut portable = vec![0f32; want.len()];
            match dt {
                GgmlDType::Q4_0 => q4_0_generic(&q.data().unwrap(), &mut portable),
                GgmlDType::Q4_1 => q4_1_generic(&q.data().unwrap(), &mut portable),
                _ => q8_0_generic(&q.data().unwrap(), &mut portable),
            }
            assert_eq!(portable, want, "{dt:?} portable");
        }
    }
}
