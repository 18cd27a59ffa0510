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
avx2_instance!(bf16_avx2, bf16s);

#[cfg(target_arch = "x86_64")]
pub use simd::{Bf16, F16};

#[cfg(target_arch = "x86_64")]
mod simd {
    //! The AVX-512 and AVX2 block decoders of f16 and bf16 weights.
    use super::super::x86::{Block, BlockAvx2};
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
            unsafe { (bf16x16(p), bf16x16(p.add(32))) }
        }
    }

    impl BlockAvx2 for F16 {
        const BYTES: usize = 64;
        #[inline(always)]
        unsafe fn decode8(p: *const u8) -> [__m256; 4] {
            // SAFETY: reads the four 16-byte quarters of the 64-byte block, all readable by the
            // contract, with the contract's CPU features.
            unsafe {
                [
                    _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i)),
                    _mm256_cvtph_ps(_mm_loadu_si128(p.add(16) as *const __m128i)),
                    _mm256_cvtph_ps(_mm_loadu_si128(p.add(32) as *const __m128i)),
                    _mm256_cvtph_ps(_mm_loadu_si128(p.add(48) as *const __m128i)),
                ]
            }
        }
    }

    impl BlockAvx2 for Bf16 {
        const BYTES: usize = 64;
        #[inline(always)]
        unsafe fn decode8(p: *const u8) -> [__m256; 4] {
            // SAFETY: reads the four 16-byte quarters of the 64-byte block, all readable by the
            // contract, with the contract's CPU features.
            unsafe { [bf16x8(p), bf16x8(p.add(16)), bf16x8(p.add(32)), bf16x8(p.add(48))] }
        }
    }

    /// The 16 bf16 values at `p` as f32: the 16 bits become the high half (exact).
    ///
    /// # Safety
    /// 32 bytes at `p` are readable, and the CPU has AVX-512 F.
    #[inline(always)]
    unsafe fn bf16x16(p: *const u8) -> __m512 {
        // SAFETY: one unaligned 32-byte read (the contract), with the contract's features.
        unsafe {
            let v = _mm512_cvtepu16_epi32(_mm256_loadu_si256(p as *const __m256i));
            _mm512_castsi512_ps(_mm512_slli_epi32::<16>(v))
        }
    }

    /// The 8 bf16 values at `p` as f32 (exact).
    ///
    /// # Safety
    /// 16 bytes at `p` are readable, and the CPU has AVX2.
    #[inline(always)]
    unsafe fn bf16x8(p: *const u8) -> __m256 {
        // SAFETY: one unaligned 16-byte read (the contract), with the contract's features.
        unsafe {
            let v = _mm256_cvtepu16_epi32(_mm_loadu_si128(p as *const __m128i));
            _mm256_castsi256_ps(_mm256_slli_epi32::<16>(v))
        }
    }
}
