//! Dense weights: f32, f16 and bf16, blocks of one value in GGUF. Their conversions to f32 are
//! exact, so every path gives the same values whatever the instructions.

use half::{bf16, f16};

pub fn f32s(bytes: &[u8], out: &mut [f32]) {
    for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
        *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    }
}

#[inline(always)]
pub fn f16s(bytes: &[u8], out: &mut [f32]) {
    for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        *o = f16::from_le_bytes([c[0], c[1]]).to_f32();
    }
}

pub fn bf16s(bytes: &[u8], out: &mut [f32]) {
    for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        *o = bf16::from_le_bytes([c[0], c[1]]).to_f32();
    }
}

#[cfg(target_arch = "x86_64")]
avx2_instance!(f16_avx2, f16s);

#[cfg(target_arch = "x86_64")]
pub use avx512::{Bf16, F16};

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::super::Block;
    use std::arch::x86_64::*;

    /// f16 weights, 32 values a block (exact conversion).
    pub struct F16;
    impl Block for F16 {
        const BYTES: usize = 64;
        #[inline(always)]
        unsafe fn decode(p: *const u8, _s: usize) -> (__m512, __m512) {
            // SAFETY: reads bytes 0..32 and 32..64 of the 64-byte block, all readable by the
            // contract, with the contract's CPU features.
            unsafe {
                (
                    _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i)),
                    _mm512_cvtph_ps(_mm256_loadu_si256(p.add(32) as *const __m256i)),
                )
            }
        }
    }

    /// bf16 weights, 32 values a block: the 16 bits become the high half of an f32 (exact).
    pub struct Bf16;
    impl Block for Bf16 {
        const BYTES: usize = 64;
        #[inline(always)]
        unsafe fn decode(p: *const u8, _s: usize) -> (__m512, __m512) {
            // SAFETY: reads bytes 0..32 and 32..64 of the 64-byte block, all readable by the
            // contract, with the contract's CPU features.
            unsafe {
                let widen = |q: *const u8| {
                    let v = _mm512_cvtepu16_epi32(_mm256_loadu_si256(q as *const __m256i));
                    _mm512_castsi512_ps(_mm512_slli_epi32::<16>(v))
                };
                (widen(p), widen(p.add(32)))
            }
        }
    }
}
