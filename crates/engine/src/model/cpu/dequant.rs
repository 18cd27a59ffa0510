//! Dequantizing rows of GGUF block-quantized weights to f32, bit for bit as candle (and ggml)
//! define each format: the same operations in the same order, only vectorized.
//!
//! Each format's decoders are in [`super::formats`]; this module picks one for an instruction
//! set from the table there, and holds the kernel that runs a format's AVX-512 block decoder
//! (the one the fused decoding kernels use) over whole rows.

use super::formats::{self, RowDecoder};
use super::isa::Isa;
use candle_core::quantized::GgmlDType;

/// The decoder for a weight type on the given instruction set (the format's best one at or
/// below it), or `None` for types that are not weight formats. `isa` must be one the CPU runs
/// (the crate's invariant, see [`super::isa`]): the SIMD decoders returned are safe functions
/// that rely on it.
pub fn decoder(dtype: GgmlDType, isa: Isa) -> Option<RowDecoder> {
    let f = formats::of(dtype)?;
    let simd = match isa {
        Isa::Avx512 => f.decode_avx512.or(f.decode_avx2),
        Isa::Avx2 => f.decode_avx2,
        Isa::Portable => None,
    };
    Some(simd.unwrap_or(f.decode))
}

/// A whole row (of whole 32-value blocks) decoded with the AVX2 block decoder of the fused
/// decoding kernel ([`super::gemv`]).
#[cfg(target_arch = "x86_64")]
pub fn avx2_row<B: formats::BlockAvx2>(bytes: &[u8], out: &mut [f32]) {
    use std::arch::x86_64::*;
    #[target_feature(enable = "avx2,fma,f16c")]
    fn inner<B: formats::BlockAvx2>(bytes: &[u8], out: &mut [f32]) {
        let nb = out.len() / 32;
        assert!(bytes.len() >= nb * B::BYTES);
        for b in 0..nb {
            // SAFETY: `b < nb`: block `b` (`BYTES` bytes) is inside `bytes` (asserted) and its 32
            // outputs inside `out`; `inner` enables every feature `BlockAvx2::decode8` needs.
            unsafe {
                let v = B::decode8(bytes.as_ptr().add(b * B::BYTES));
                let o = out.as_mut_ptr().add(b * 32);
                for (q, v) in v.into_iter().enumerate() {
                    _mm256_storeu_ps(o.add(8 * q), v);
                }
            }
        }
    }
    // SAFETY: `decoder` hands this function out only for `Isa::Avx2` or above, so the CPU has
    // AVX2, FMA and F16C (see `isa`).
    unsafe { inner::<B>(bytes, out) }
}

/// A whole row decoded with the block decoder of the fused decoding kernels
/// ([`super::gemv`]), so prefill panels and decoding see the same values.
#[cfg(target_arch = "x86_64")]
pub fn avx512_row<B: formats::Block>(bytes: &[u8], out: &mut [f32]) {
    use std::arch::x86_64::*;
    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c")]
    fn inner<B: formats::Block>(bytes: &[u8], out: &mut [f32]) {
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
            GgmlDType::Q5_1,
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
