//! Dense weights: f32, f16 and bf16, blocks of one value in GGUF. Their conversions to f32 are
//! exact, so every path gives the same values whatever the instructions.

use half::bf16;

pub fn f32s(bytes: &[u8], out: &mut [f32]) {
    for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
        *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    }
}

#[inline(always)]
pub fn f16s(bytes: &[u8], out: &mut [f32]) {
    // Eight at a time from a fixed-size array, so that the bytes are read as one vector.
    let mut outs = out.chunks_exact_mut(8);
    let mut ins = bytes.chunks_exact(16);
    for (o, b) in (&mut outs).zip(&mut ins) {
        // SAFETY: `b` holds 16 bytes (`chunks_exact`), any alignment (`read_unaligned`), and
        // every bit pattern is a `u16`.
        let h = unsafe { (b.as_ptr() as *const [u16; 8]).read_unaligned() };
        for i in 0..8 {
            o[i] = f16_to_f32(u16::from_le(h[i]));
        }
    }
    for (o, c) in outs.into_remainder().iter_mut().zip(ins.remainder().chunks_exact(2)) {
        *o = f16_to_f32(u16::from_le_bytes([c[0], c[1]]));
    }
}

/// The f16 with bits `h` as f32: exact, NaNs quieted with their payload kept, bit for bit what
/// F16C's `vcvtph2ps`, ARM's `fcvt` and `half` give. In integer operations and selects, which
/// the compiler vectorizes: `half`'s own conversion, where the build does not enable those
/// instructions (x86-64 and aarch64 Linux/Windows builds), asks the CPU and calls a function for
/// every value, which made f16 weights and the f16 cache slow on the portable path.
#[inline(always)]
pub fn f16_to_f32(h: u16) -> f32 {
    let h = h as u32;
    let sign = (h & 0x8000) << 16;
    // Exponent and mantissa where an f32 holds them.
    let em = (h & 0x7fff) << 13;
    let exp = em & 0x0f80_0000;
    // Normal numbers: the exponent's bias 15 becomes 127.
    let normal = em + ((127 - 15) << 23);
    // Infinities and NaNs: exponent 255; a NaN gets the quiet bit.
    let special = em | 0x7f80_0000 | if em & 0x007f_e000 != 0 { 0x0040_0000 } else { 0 };
    // Zero and subnormals (mantissa · 2⁻²⁴): 2⁻¹⁴ · (1 + mantissa/1024) − 2⁻¹⁴, exact.
    let magic = f32::from_bits(113 << 23);
    let sub = (f32::from_bits(em + (113 << 23)) - magic).to_bits();
    let bits = if exp == 0x0f80_0000 {
        special
    } else if exp == 0 {
        sub
    } else {
        normal
    };
    f32::from_bits(bits | sign)
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

#[cfg(test)]
mod tests {
    use super::*;
    use half::f16;

    #[test]
    fn every_f16_converts_as_half_does() {
        for h in 0..=u16::MAX {
            let want = f16::from_bits(h).to_f32();
            assert_eq!(f16_to_f32(h).to_bits(), want.to_bits(), "f16 bits {h:#06x}");
        }
    }
}
