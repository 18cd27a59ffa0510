//! The handful of vector operations the attention kernel is written in, for each instruction set.
//!
//! Every operation is element-wise and exactly rounded (or exact), so a lane computes the same
//! value whatever the vector width; that is what lets one generic kernel serve every path.
//! The methods are `unsafe` because the SIMD implementations require their CPU features (the
//! kernel is only instantiated for them inside functions that enable those features) and take
//! raw pointers.

use crate::model::cpu::formats::f16_to_f32;

/// # Safety
/// One contract for every method (stated here once, hence the `allow` below):
/// - the CPU has the implementation's features: none for `f32`; AVX2, FMA and F16C for
///   [`F32x8`]; AVX-512 F/DQ on top of those for [`F32x16`]; NEON for `F32x4`, which every
///   aarch64 target enables at compile time. The kernel is instantiated with an x86 vector type
///   only inside `kernel::x86::{avx2, avx512}`, whose `#[target_feature]`s enable them and which
///   run only when `isa()` found them (see `crate::model::cpu::isa`);
/// - a pointer argument is valid for the `W` lanes the method reads ([`Simd::load`],
///   [`Simd::load_f16`]) or writes ([`Simd::store`]); [`Simd::transpose_keys`] states its own.
#[allow(clippy::missing_safety_doc)]
pub trait Simd: Copy {
    /// Lanes per vector.
    const W: usize;
    /// Query rows per register tile (the tile holds `R × 4` accumulators).
    const R: usize;

    unsafe fn zero() -> Self;
    unsafe fn splat(x: f32) -> Self;
    unsafe fn load(p: *const f32) -> Self;
    unsafe fn store(self, p: *mut f32);
    /// `W` f16 values (raw bits), converted exactly.
    unsafe fn load_f16(p: *const u16) -> Self;
    /// `a · b + c` with one rounding.
    unsafe fn fma(a: Self, b: Self, c: Self) -> Self;
    unsafe fn mul(a: Self, b: Self) -> Self;
    unsafe fn add(a: Self, b: Self) -> Self;
    unsafe fn sub(a: Self, b: Self) -> Self;
    /// Larger of each pair (the inputs are never NaN).
    unsafe fn max(a: Self, b: Self) -> Self;
    /// Round to the nearest integer, ties to even.
    unsafe fn round_even(a: Self) -> Self;
    /// `2^n` for integral `n` in `-126..=127`.
    unsafe fn pow2(n: Self) -> Self;
    /// Lanes `n..` set to zero.
    unsafe fn keep_first(a: Self, n: usize) -> Self;
    /// The largest lane.
    unsafe fn hmax(a: Self) -> f32;

    /// `kt[t·kb + j] = key j's value t` for `j < kc` (key `j` at `src + j·stride`, `d` values),
    /// and zero for `kc ≤ j < kb`: the keys of a block across the lanes.
    ///
    /// Besides the trait's contract: keys `0..kc` (`d` values each) are readable at `src`, `kt`
    /// is writable for `d × kb` floats, and `d` and `kb` are multiples of `W`.
    unsafe fn transpose_keys(src: *const u16, stride: usize, kc: usize, d: usize, kt: *mut f32, kb: usize) {
        for j in 0..kb {
            for t in 0..d {
                let x = if j < kc {
                    // SAFETY: `j < kc` and `t < d`: value `t` of a key the caller vouches for.
                    f16_to_f32(unsafe { *src.add(j * stride + t) })
                } else {
                    0.0
                };
                // SAFETY: `t < d`, `j < kb`: inside the caller's `d × kb` buffer.
                unsafe { *kt.add(t * kb + j) = x };
            }
        }
    }
}

/// Scalar lanes: the portable path and the reference.
impl Simd for f32 {
    const W: usize = 1;
    const R: usize = 4;
    unsafe fn zero() -> Self {
        0.0
    }
    unsafe fn splat(x: f32) -> Self {
        x
    }
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: `p` is valid for one (`W`) float (the trait's contract).
        unsafe { *p }
    }
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: `p` is valid for writing one (`W`) float (the trait's contract).
        unsafe { *p = self }
    }
    unsafe fn load_f16(p: *const u16) -> Self {
        // SAFETY: `p` is valid for one (`W`) f16 (the trait's contract).
        f16_to_f32(unsafe { *p })
    }
    unsafe fn fma(a: Self, b: Self, c: Self) -> Self {
        a.mul_add(b, c)
    }
    unsafe fn mul(a: Self, b: Self) -> Self {
        a * b
    }
    unsafe fn add(a: Self, b: Self) -> Self {
        a + b
    }
    unsafe fn sub(a: Self, b: Self) -> Self {
        a - b
    }
    unsafe fn max(a: Self, b: Self) -> Self {
        if a > b {
            a
        } else {
            b
        }
    }
    unsafe fn round_even(a: Self) -> Self {
        a.round_ties_even()
    }
    unsafe fn pow2(n: Self) -> Self {
        f32::from_bits(((n as i32 + 127) as u32) << 23)
    }
    unsafe fn keep_first(a: Self, n: usize) -> Self {
        if n >= 1 {
            a
        } else {
            0.0
        }
    }
    unsafe fn hmax(a: Self) -> f32 {
        a
    }
}

#[cfg(target_arch = "x86_64")]
pub use x86::{F32x16, F32x8};

#[cfg(target_arch = "aarch64")]
pub use arm::F32x4;

#[cfg(target_arch = "aarch64")]
mod arm {
    use super::Simd;
    use std::arch::aarch64::*;

    /// Four lanes of NEON (every aarch64 CPU: Apple silicon, Snapdragon, Graviton, Ampere).
    /// Without it ARM machines ran the attention one lane at a time.
    #[derive(Clone, Copy)]
    pub struct F32x4(float32x4_t);

    /// Four f16 values (raw bits) to f32 with `fcvtl`, which is base ARMv8 (std's
    /// `vcvt_f32_f16` needs the unstable `f16` type). Exact; a NaN comes out quiet, as from
    /// `f16_to_f32`.
    ///
    /// # Safety
    /// NEON (every aarch64 target); touches registers only.
    #[inline(always)]
    unsafe fn cvt_f16(h: uint16x4_t) -> float32x4_t {
        let out: float32x4_t;
        // SAFETY: one register-to-register instruction of base AdvSIMD; no memory, stack or
        // flags touched, as the options say.
        unsafe {
            std::arch::asm!(
                "fcvtl {o:v}.4s, {h:v}.4h",
                o = lateout(vreg) out,
                h = in(vreg) h,
                options(pure, nomem, nostack, preserves_flags)
            )
        };
        out
    }

    impl Simd for F32x4 {
        const W: usize = 4;
        // 32 registers, as AVX-512: six rows of four accumulators.
        const R: usize = 6;
        #[inline(always)]
        unsafe fn zero() -> Self {
            // SAFETY: NEON, which every aarch64 target has (the trait's contract).
            Self(unsafe { vdupq_n_f32(0.0) })
        }
        #[inline(always)]
        unsafe fn splat(x: f32) -> Self {
            // SAFETY: NEON (the trait's contract).
            Self(unsafe { vdupq_n_f32(x) })
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            // SAFETY: NEON (the trait's contract); `p` is valid for 4 floats (the contract);
            // `ld1` needs no alignment beyond the element's.
            Self(unsafe { vld1q_f32(p) })
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            // SAFETY: NEON (the trait's contract); `p` is valid for writing 4 floats.
            unsafe { vst1q_f32(p, self.0) }
        }
        #[inline(always)]
        unsafe fn load_f16(p: *const u16) -> Self {
            // SAFETY: NEON (the trait's contract); `p` is valid for 4 f16 values (the contract).
            Self(unsafe { cvt_f16(vld1_u16(p)) })
        }
        #[inline(always)]
        unsafe fn fma(a: Self, b: Self, c: Self) -> Self {
            // SAFETY: NEON (the trait's contract). `vfmaq_f32(c, a, b)` is `c + a·b`, rounded once.
            Self(unsafe { vfmaq_f32(c.0, a.0, b.0) })
        }
        #[inline(always)]
        unsafe fn mul(a: Self, b: Self) -> Self {
            // SAFETY: NEON (the trait's contract).
            Self(unsafe { vmulq_f32(a.0, b.0) })
        }
        #[inline(always)]
        unsafe fn add(a: Self, b: Self) -> Self {
            // SAFETY: NEON (the trait's contract).
            Self(unsafe { vaddq_f32(a.0, b.0) })
        }
        #[inline(always)]
        unsafe fn sub(a: Self, b: Self) -> Self {
            // SAFETY: NEON (the trait's contract).
            Self(unsafe { vsubq_f32(a.0, b.0) })
        }
        #[inline(always)]
        unsafe fn max(a: Self, b: Self) -> Self {
            // `a > b ? a : b`, as the scalar lanes and x86's `maxps` (`fmax` would differ in the
            // sign of a zero).
            // SAFETY: NEON (the trait's contract).
            Self(unsafe { vbslq_f32(vcgtq_f32(a.0, b.0), a.0, b.0) })
        }
        #[inline(always)]
        unsafe fn round_even(a: Self) -> Self {
            // SAFETY: NEON (the trait's contract); `frintn` rounds to nearest, ties to even.
            Self(unsafe { vrndnq_f32(a.0) })
        }
        #[inline(always)]
        unsafe fn pow2(n: Self) -> Self {
            // SAFETY: NEON (the trait's contract). `n` is integral, so the truncating conversion
            // is exact.
            unsafe {
                let i = vaddq_s32(vcvtq_s32_f32(n.0), vdupq_n_s32(127));
                Self(vreinterpretq_f32_s32(vshlq_n_s32::<23>(i)))
            }
        }
        #[inline(always)]
        unsafe fn keep_first(a: Self, n: usize) -> Self {
            const IDX: [u32; 4] = [0, 1, 2, 3];
            // SAFETY: NEON (the trait's contract); `IDX` is 4 readable `u32`s.
            unsafe {
                let keep = vcltq_u32(vld1q_u32(IDX.as_ptr()), vdupq_n_u32(n.min(4) as u32));
                Self(vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(a.0), keep)))
            }
        }
        #[inline(always)]
        unsafe fn hmax(a: Self) -> f32 {
            // The inputs are never NaN; `fmaxv` may differ from a chain of `a > b` selects only in
            // the sign of a zero maximum, and `s - m` then gives `exp` the same ±0 input (e = 1).
            // SAFETY: NEON (the trait's contract).
            unsafe { vmaxvq_f32(a.0) }
        }
        #[inline(always)]
        unsafe fn transpose_keys(src: *const u16, stride: usize, kc: usize, d: usize, kt: *mut f32, kb: usize) {
            // SAFETY: NEON (the trait's contract). Loads read keys `j0 + i < kc`, values `t0..t0
            // + 4 <= d` (`d` is whole 4s), which the caller vouches for; stores write values
            // `t0 + c < d` at lanes `j0..j0 + 4 <= kb` (`kb` is whole 4s): inside `d × kb`.
            unsafe {
                let zero = vdup_n_u16(0);
                for j0 in (0..kb).step_by(4) {
                    for t0 in (0..d).step_by(4) {
                        let mut r = [vdupq_n_f32(0.0); 4];
                        for i in 0..4 {
                            let h = if j0 + i < kc {
                                vld1_u16(src.add((j0 + i) * stride + t0))
                            } else {
                                zero
                            };
                            r[i] = cvt_f16(h);
                        }
                        // (r0[0], r1[0], r0[2], r1[2]), (r0[1], r1[1], r0[3], r1[3]), same for r2, r3.
                        let a0 = vreinterpretq_f64_f32(vtrn1q_f32(r[0], r[1]));
                        let a1 = vreinterpretq_f64_f32(vtrn2q_f32(r[0], r[1]));
                        let b0 = vreinterpretq_f64_f32(vtrn1q_f32(r[2], r[3]));
                        let b1 = vreinterpretq_f64_f32(vtrn2q_f32(r[2], r[3]));
                        let out = [
                            vtrn1q_f64(a0, b0),
                            vtrn1q_f64(a1, b1),
                            vtrn2q_f64(a0, b0),
                            vtrn2q_f64(a1, b1),
                        ];
                        for c in 0..4 {
                            vst1q_f32(kt.add((t0 + c) * kb + j0), vreinterpretq_f32_f64(out[c]));
                        }
                    }
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::Simd;
    use std::arch::x86_64::*;

    /// Eight lanes (AVX2 + FMA + F16C).
    #[derive(Clone, Copy)]
    pub struct F32x8(__m256);

    /// Sixteen lanes (AVX-512 F/DQ).
    #[derive(Clone, Copy)]
    pub struct F32x16(__m512);

    const NEAREST: i32 = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;

    impl Simd for F32x8 {
        const W: usize = 8;
        const R: usize = 3;
        #[inline(always)]
        unsafe fn zero() -> Self {
            // SAFETY: needs AVX, which the caller has (the trait's contract: AVX2/FMA/F16C).
            Self(unsafe { _mm256_setzero_ps() })
        }
        #[inline(always)]
        unsafe fn splat(x: f32) -> Self {
            // SAFETY: needs AVX, which the caller has (the trait's contract).
            Self(unsafe { _mm256_set1_ps(x) })
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            // SAFETY: AVX (the trait's contract); `p` is valid for 8 floats (the contract), and
            // the load is unaligned.
            Self(unsafe { _mm256_loadu_ps(p) })
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            // SAFETY: AVX (the trait's contract); `p` is valid for writing 8 floats (the contract).
            unsafe { _mm256_storeu_ps(p, self.0) }
        }
        #[inline(always)]
        unsafe fn load_f16(p: *const u16) -> Self {
            // SAFETY: F16C (the trait's contract); `p` is valid for 8 f16 values, the 16 bytes
            // loaded (the contract).
            Self(unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i)) })
        }
        #[inline(always)]
        unsafe fn fma(a: Self, b: Self, c: Self) -> Self {
            // SAFETY: needs FMA, which the caller has (the trait's contract).
            Self(unsafe { _mm256_fmadd_ps(a.0, b.0, c.0) })
        }
        #[inline(always)]
        unsafe fn mul(a: Self, b: Self) -> Self {
            // SAFETY: needs AVX, which the caller has (the trait's contract).
            Self(unsafe { _mm256_mul_ps(a.0, b.0) })
        }
        #[inline(always)]
        unsafe fn add(a: Self, b: Self) -> Self {
            // SAFETY: needs AVX, which the caller has (the trait's contract).
            Self(unsafe { _mm256_add_ps(a.0, b.0) })
        }
        #[inline(always)]
        unsafe fn sub(a: Self, b: Self) -> Self {
            // SAFETY: needs AVX, which the caller has (the trait's contract).
            Self(unsafe { _mm256_sub_ps(a.0, b.0) })
        }
        #[inline(always)]
        unsafe fn max(a: Self, b: Self) -> Self {
            // SAFETY: needs AVX, which the caller has (the trait's contract).
            Self(unsafe { _mm256_max_ps(a.0, b.0) })
        }
        #[inline(always)]
        unsafe fn round_even(a: Self) -> Self {
            // SAFETY: needs AVX, which the caller has (the trait's contract).
            Self(unsafe { _mm256_round_ps::<NEAREST>(a.0) })
        }
        #[inline(always)]
        unsafe fn pow2(n: Self) -> Self {
            // SAFETY: integer lanes need AVX2, which the caller has (the trait's contract).
            unsafe {
                let i = _mm256_add_epi32(_mm256_cvtps_epi32(n.0), _mm256_set1_epi32(127));
                Self(_mm256_castsi256_ps(_mm256_slli_epi32::<23>(i)))
            }
        }
        #[inline(always)]
        unsafe fn keep_first(a: Self, n: usize) -> Self {
            // SAFETY: the integer compare needs AVX2, which the caller has (the trait's contract).
            unsafe {
                let idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
                let keep = _mm256_cmpgt_epi32(_mm256_set1_epi32(n.min(8) as i32), idx);
                Self(_mm256_and_ps(a.0, _mm256_castsi256_ps(keep)))
            }
        }
        #[inline(always)]
        unsafe fn hmax(a: Self) -> f32 {
            // SAFETY: AVX and SSE3 (`movehdup`), both implied by the caller's AVX2 (the trait's
            // contract).
            unsafe {
                let h = _mm_max_ps(_mm256_castps256_ps128(a.0), _mm256_extractf128_ps::<1>(a.0));
                let h = _mm_max_ps(h, _mm_movehl_ps(h, h));
                _mm_cvtss_f32(_mm_max_ss(h, _mm_movehdup_ps(h)))
            }
        }
        #[inline(always)]
        unsafe fn transpose_keys(src: *const u16, stride: usize, kc: usize, d: usize, kt: *mut f32, kb: usize) {
            // SAFETY: the intrinsics need AVX and F16C, which the caller has (the trait's
            // contract). Loads read keys `j0 + i < kc`, values `t0..t0 + 8 <= d` (`d` is whole
            // 8s), which the caller vouches for; stores write values `t0 + c`, `t0 + 4 + c < d`
            // at lanes `j0..j0 + 8 <= kb` (`kb` is whole 8s): inside the `d × kb` buffer.
            unsafe {
                let zero = _mm_setzero_si128();
                for j0 in (0..kb).step_by(8) {
                    for t0 in (0..d).step_by(8) {
                        let mut r = [_mm256_setzero_ps(); 8];
                        for i in 0..8 {
                            let h = if j0 + i < kc {
                                _mm_loadu_si128(src.add((j0 + i) * stride + t0) as *const __m128i)
                            } else {
                                zero
                            };
                            r[i] = _mm256_cvtph_ps(h);
                        }
                        let t = [
                            _mm256_unpacklo_ps(r[0], r[1]),
                            _mm256_unpackhi_ps(r[0], r[1]),
                            _mm256_unpacklo_ps(r[2], r[3]),
                            _mm256_unpackhi_ps(r[2], r[3]),
                            _mm256_unpacklo_ps(r[4], r[5]),
                            _mm256_unpackhi_ps(r[4], r[5]),
                            _mm256_unpacklo_ps(r[6], r[7]),
                            _mm256_unpackhi_ps(r[6], r[7]),
                        ];
                        // u[4q + c]: keys 4q..4q+4 of columns c (low half) and 4 + c (high half).
                        let mut u = [_mm256_setzero_ps(); 8];
                        for q in 0..2 {
                            let (a0, a1, b0, b1) = (
                                _mm256_castps_pd(t[4 * q]),
                                _mm256_castps_pd(t[4 * q + 1]),
                                _mm256_castps_pd(t[4 * q + 2]),
                                _mm256_castps_pd(t[4 * q + 3]),
                            );
                            u[4 * q] = _mm256_castpd_ps(_mm256_unpacklo_pd(a0, b0));
                            u[4 * q + 1] = _mm256_castpd_ps(_mm256_unpackhi_pd(a0, b0));
                            u[4 * q + 2] = _mm256_castpd_ps(_mm256_unpacklo_pd(a1, b1));
                            u[4 * q + 3] = _mm256_castpd_ps(_mm256_unpackhi_pd(a1, b1));
                        }
                        for c in 0..4 {
                            let lo = _mm256_permute2f128_ps::<0x20>(u[c], u[4 + c]);
                            let hi = _mm256_permute2f128_ps::<0x31>(u[c], u[4 + c]);
                            _mm256_storeu_ps(kt.add((t0 + c) * kb + j0), lo);
                            _mm256_storeu_ps(kt.add((t0 + 4 + c) * kb + j0), hi);
                        }
                    }
                }
            }
        }
    }

    impl Simd for F32x16 {
        const W: usize = 16;
        const R: usize = 6;
        #[inline(always)]
        unsafe fn zero() -> Self {
            // SAFETY: needs AVX-512F, which the caller has (the trait's contract).
            Self(unsafe { _mm512_setzero_ps() })
        }
        #[inline(always)]
        unsafe fn splat(x: f32) -> Self {
            // SAFETY: needs AVX-512F, which the caller has (the trait's contract).
            Self(unsafe { _mm512_set1_ps(x) })
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            // SAFETY: AVX-512F (the trait's contract); `p` is valid for 16 floats (the
            // contract), and the load is unaligned.
            Self(unsafe { _mm512_loadu_ps(p) })
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            // SAFETY: AVX-512F (the trait's contract); `p` is valid for writing 16 floats (the
            // contract).
            unsafe { _mm512_storeu_ps(p, self.0) }
        }
        #[inline(always)]
        unsafe fn load_f16(p: *const u16) -> Self {
            // SAFETY: AVX-512F (the trait's contract); `p` is valid for 16 f16 values, the 32
            // bytes loaded (the contract).
            Self(unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i)) })
        }
        #[inline(always)]
        unsafe fn fma(a: Self, b: Self, c: Self) -> Self {
            // SAFETY: needs AVX-512F, which the caller has (the trait's contract).
            Self(unsafe { _mm512_fmadd_ps(a.0, b.0, c.0) })
        }
        #[inline(always)]
        unsafe fn mul(a: Self, b: Self) -> Self {
            // SAFETY: needs AVX-512F, which the caller has (the trait's contract).
            Self(unsafe { _mm512_mul_ps(a.0, b.0) })
        }
        #[inline(always)]
        unsafe fn add(a: Self, b: Self) -> Self {
            // SAFETY: needs AVX-512F, which the caller has (the trait's contract).
            Self(unsafe { _mm512_add_ps(a.0, b.0) })
        }
        #[inline(always)]
        unsafe fn sub(a: Self, b: Self) -> Self {
            // SAFETY: needs AVX-512F, which the caller has (the trait's contract).
            Self(unsafe { _mm512_sub_ps(a.0, b.0) })
        }
        #[inline(always)]
        unsafe fn max(a: Self, b: Self) -> Self {
            // SAFETY: needs AVX-512F, which the caller has (the trait's contract).
            Self(unsafe { _mm512_max_ps(a.0, b.0) })
        }
        #[inline(always)]
        unsafe fn round_even(a: Self) -> Self {
            // SAFETY: needs AVX-512F, which the caller has (the trait's contract).
            Self(unsafe { _mm512_roundscale_ps::<NEAREST>(a.0) })
        }
        #[inline(always)]
        unsafe fn pow2(n: Self) -> Self {
            // SAFETY: needs AVX-512F, which the caller has (the trait's contract).
            unsafe {
                let i = _mm512_add_epi32(_mm512_cvtps_epi32(n.0), _mm512_set1_epi32(127));
                Self(_mm512_castsi512_ps(_mm512_slli_epi32::<23>(i)))
            }
        }
        #[inline(always)]
        unsafe fn keep_first(a: Self, n: usize) -> Self {
            let mask: __mmask16 = if n >= 16 { 0xFFFF } else { (1u16 << n) - 1 };
            // SAFETY: needs AVX-512F, which the caller has (the trait's contract).
            Self(unsafe { _mm512_maskz_mov_ps(mask, a.0) })
        }
        #[inline(always)]
        unsafe fn hmax(a: Self) -> f32 {
            // SAFETY: needs AVX-512F, which the caller has (the trait's contract).
            unsafe { _mm512_reduce_max_ps(a.0) }
        }
        #[inline(always)]
        unsafe fn transpose_keys(src: *const u16, stride: usize, kc: usize, d: usize, kt: *mut f32, kb: usize) {
            // SAFETY: the intrinsics need AVX-512F (and AVX for the zero), which the caller has
            // (the trait's contract). Loads read keys `j0 + i < kc`, values `t0..t0 + 16 <= d`
            // (`d` is whole 16s), which the caller vouches for; stores write values `t0 + c < d`
            // at lanes `j0..j0 + 16 <= kb` (`kb` is whole 16s): inside the `d × kb` buffer.
            unsafe {
                let zero = _mm256_setzero_si256();
                for j0 in (0..kb).step_by(16) {
                    for t0 in (0..d).step_by(16) {
                        let mut r = [_mm512_setzero_ps(); 16];
                        for i in 0..16 {
                            let h = if j0 + i < kc {
                                _mm256_loadu_si256(src.add((j0 + i) * stride + t0) as *const __m256i)
                            } else {
                                zero
                            };
                            r[i] = _mm512_cvtph_ps(h);
                        }
                        let out = transpose16(r);
                        for c in 0..16 {
                            _mm512_storeu_ps(kt.add((t0 + c) * kb + j0), out[c]);
                        }
                    }
                }
            }
        }
    }

    /// `out[c][i] = r[i][c]` for a 16 × 16 block.
    ///
    /// # Safety
    /// The CPU has AVX-512F (it only touches registers).
    #[inline(always)]
    unsafe fn transpose16(r: [__m512; 16]) -> [__m512; 16] {
        // SAFETY: register shuffles only, needing AVX-512F, which the caller has (the contract).
        unsafe {
            let mut t = [_mm512_setzero_ps(); 16];
            for p in 0..8 {
                t[2 * p] = _mm512_unpacklo_ps(r[2 * p], r[2 * p + 1]);
                t[2 * p + 1] = _mm512_unpackhi_ps(r[2 * p], r[2 * p + 1]);
            }
            // u[4q + c], 128-bit lane L: rows 4q..4q+4 of column 4L + c.
            let mut u = [_mm512_setzero_ps(); 16];
            for q in 0..4 {
                let (a0, a1, b0, b1) = (
                    _mm512_castps_pd(t[4 * q]),
                    _mm512_castps_pd(t[4 * q + 1]),
                    _mm512_castps_pd(t[4 * q + 2]),
                    _mm512_castps_pd(t[4 * q + 3]),
                );
                u[4 * q] = _mm512_castpd_ps(_mm512_unpacklo_pd(a0, b0));
                u[4 * q + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a0, b0));
                u[4 * q + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(a1, b1));
                u[4 * q + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(a1, b1));
            }
            let mut out = [_mm512_setzero_ps(); 16];
            for c in 0..4 {
                let v = _mm512_shuffle_f32x4::<0x88>(u[c], u[4 + c]);
                let v2 = _mm512_shuffle_f32x4::<0xdd>(u[c], u[4 + c]);
                let w = _mm512_shuffle_f32x4::<0x88>(u[8 + c], u[12 + c]);
                let w2 = _mm512_shuffle_f32x4::<0xdd>(u[8 + c], u[12 + c]);
                out[c] = _mm512_shuffle_f32x4::<0x88>(v, w);
                out[8 + c] = _mm512_shuffle_f32x4::<0xdd>(v, w);
                out[4 + c] = _mm512_shuffle_f32x4::<0x88>(v2, w2);
                out[12 + c] = _mm512_shuffle_f32x4::<0xdd>(v2, w2);
            }
            out
        }
    }
}
