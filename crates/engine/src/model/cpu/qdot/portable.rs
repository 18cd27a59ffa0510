//! The integer path in plain Rust, for CPUs without the x86 SIMD kernels (ARM laptops and
//! servers, x86 without AVX2). The same arithmetic as the definition ([`super::dot`]), arranged
//! for speed: each weight block is unpacked to bytes and its scales read once, then met with up to
//! [`MR`] input rows; the products of 16 values are summed over fixed-size arrays, which the
//! compiler turns into vector code (NEON, SSE2). Only the grouping of the exact integer sums
//! differs from the definition; the f32 operations and their order per output are the same, so
//! the bits are too.

// Index loops mirror the arithmetic they define; iterator chains would hide the order.
#![allow(clippy::needless_range_loop)]

use super::{QFormat, QuantRows};
use crate::model::cpu::formats::{half_at, q2k, q3k, q4_0, q4k, q5k, q6k, q8_0, KScales};

/// Input rows met with each unpacked weight block.
const MR: usize = 8;

/// `Σ w · qx` over 16 values (exact). The compiler's pattern for 8-bit dot products (`sdot`,
/// or `smull` and `sadalp`; `pmaddwd` on x86).
#[inline(always)]
fn sum16(w: &[i8], qx: &[i8]) -> i32 {
    let (w, qx): (&[i8; 16], &[i8; 16]) = (w[..16].try_into().unwrap(), qx[..16].try_into().unwrap());
    let mut s = 0i32;
    for j in 0..16 {
        s += w[j] as i32 * qx[j] as i32;
    }
    s
}

/// [`super::block`] without SIMD intrinsics: `out[r·ldo + i] = dot(x[r0 + r], W[i])`.
///
/// # Safety
/// `call.out` must be valid for writes at every `r·ldo + i` for `r < m`, `i < rows`, and no other
/// thread may access those elements during the call.
pub unsafe fn block(f: QFormat, call: Call) {
    #[cfg(target_arch = "aarch64")]
    if std::arch::is_aarch64_feature_detected!("dotprod") {
        // SAFETY: the CPU has the dot product instructions (just detected); `out` as the caller
        // guarantees.
        unsafe { with_dotprod(f, call) };
        return;
    }
    // SAFETY: `out` as the caller guarantees.
    unsafe { by_format(f, call) }
}

/// [`block`] without ARM's dot product instructions even where the CPU has them (for tests).
///
/// # Safety
/// As [`block`]'s.
#[cfg(all(test, target_arch = "aarch64"))]
pub unsafe fn block_plain(f: QFormat, call: Call) {
    // SAFETY: `out` as the caller guarantees.
    unsafe { by_format(f, call) }
}

/// [`by_format`] compiled with ARM's 8-bit dot product instructions (`sdot`, ARMv8.2; every Apple
/// M-series and Snapdragon X core has them), which the compiler then uses for [`sum16`].
///
/// # Safety
/// The CPU has `dotprod`; `out` as [`block`]'s.
#[cfg(target_arch = "aarch64")]
#[target_feature(enable = "dotprod")]
unsafe fn with_dotprod(f: QFormat, call: Call) {
    // SAFETY: as the caller's.
    unsafe { by_format(f, call) }
}

/// The loops for the format `f`, each format's unpacking inlined into its own copy.
///
/// # Safety
/// As [`block`]'s.
#[inline(always)]
unsafe fn by_format(f: QFormat, call: Call) {
    // SAFETY: as the caller's (every arm).
    unsafe {
        match f {
            QFormat::Q4_0 => blocks32(call, q4_0::BYTES, q4_0::pair_values),
            QFormat::Q8_0 => blocks32(call, q8_0::BYTES, q8_0::pair_values),
            QFormat::Q2K => blocks256(call, q2k::BYTES, q2k::pair_values, q2k::int_scales),
            QFormat::Q3K => blocks256(call, q3k::BYTES, q3k::pair_values, q3k::int_scales),
            QFormat::Q4K => blocks256(call, q4k::BYTES, q4k::pair_values, q4k::int_scales),
            QFormat::Q5K => blocks256(call, q5k::BYTES, q5k::pair_values, q5k::int_scales),
            QFormat::Q6K => blocks256(call, q6k::BYTES, q6k::pair_values, q6k::int_scales),
        }
    }
}

/// One call's arguments (see [`block`]): weight rows `0..rows` of `w`, `row_bytes` apart, against
/// input rows `r0..r0 + m` of `x`; the result of input row `r0 + r` and weight row `i` at
/// `out[r·ldo + i]`. Weights and inputs are read through bounds-checked slices ([`super::block`]
/// asserts their sizes once); only `out` is a raw pointer.
pub struct Call<'a> {
    pub w: &'a [u8],
    pub row_bytes: usize,
    pub rows: usize,
    pub x: &'a QuantRows,
    pub r0: usize,
    pub m: usize,
    pub out: *mut f32,
    pub ldo: usize,
}

impl Call<'_> {
    /// Writes `acc − off` of input rows `t0..t0 + mr` (relative to the call) for weight row `i`.
    ///
    /// # Safety
    /// As [`block`]'s; `i < rows`, `t0 + mr <= m`.
    #[inline(always)]
    unsafe fn store(&self, i: usize, t0: usize, mr: usize, acc: &[f32; MR], off: &[f32; MR]) {
        for r in 0..mr {
            // SAFETY: `t0 + r < m` and `i < rows`: the caller guarantees `out` is writable here.
            unsafe { *self.out.add((t0 + r) * self.ldo + i) = acc[r] - off[r] };
        }
    }
}

/// Q4_0 and Q8_0: blocks of 32 (`bytes` each, `d` leading), unpacked in pairs by `pairs`.
///
/// # Safety
/// As [`block`]'s.
#[inline(always)]
unsafe fn blocks32(c: Call, bytes: usize, pairs: impl Fn(&[u8]) -> [i8; 64]) {
    let (x, k) = (c.x, c.x.k);
    // Loops written out, not a closure: a closure is not inlined into `with_dotprod`.
    for i in 0..c.rows {
        let wrow = &c.w[i * c.row_bytes..][..c.row_bytes];
        for t0 in (0..c.m).step_by(MR) {
            let (first, mr) = (c.r0 + t0, MR.min(c.m - t0));
            let mut acc = [0f32; MR];
            for p in 0..k / 64 {
                let blk = &wrow[2 * p * bytes..];
                let v = pairs(blk);
                for h in 0..2 {
                    let b = 2 * p + h;
                    let sw = half_at(blk, bytes * h);
                    for r in 0..mr {
                        let row = first + r;
                        let qs = &x.qs[row * k + 32 * b..][..32];
                        let t = sum16(&v[32 * h..], qs) + sum16(&v[32 * h + 16..], &qs[16..]);
                        acc[r] = (t as f32).mul_add(sw * x.d[row * k / 32 + b], acc[r]);
                    }
                }
            }
            // SAFETY: `i < rows`, `t0 + mr <= m`; `out` as the caller's.
            unsafe { c.store(i, t0, mr, &acc, &[0.0; MR]) };
        }
    }
}

/// The K-quants: blocks of 256 (`bytes` each), unpacked a pair of 32-value sub-blocks at a time by
/// `pairs`, their integer scales read by `scales`.
///
/// # Safety
/// As [`block`]'s.
#[inline(always)]
unsafe fn blocks256(
    c: Call,
    bytes: usize,
    pairs: impl Fn(&[u8], usize) -> [i8; 64],
    scales: impl Fn(&[u8]) -> KScales,
) {
    let (x, k) = (c.x, c.x.k);
    for i in 0..c.rows {
        let wrow = &c.w[i * c.row_bytes..][..c.row_bytes];
        for t0 in (0..c.m).step_by(MR) {
            let (first, mr) = (c.r0 + t0, MR.min(c.m - t0));
            let (mut acc, mut off) = ([0f32; MR], [0f32; MR]);
            for (b, blk) in wrow.chunks_exact(bytes).take(k / 256).enumerate() {
                let s = scales(blk);
                let v: [[i8; 64]; 4] = [pairs(blk, 0), pairs(blk, 1), pairs(blk, 2), pairs(blk, 3)];
                for r in 0..mr {
                    let row = first + r;
                    let qs = &x.qs[row * k + 256 * b..][..256];
                    let mut t = 0i32;
                    for p in 0..4 {
                        for g in 0..4 {
                            t += s.sc[4 * p + g] * sum16(&v[p][16 * g..], &qs[64 * p + 16 * g..]);
                        }
                    }
                    let dx = x.d[row * k / 256 + b];
                    acc[r] = (t as f32).mul_add(s.d * dx, acc[r]);
                    let bs = &x.bsum[(row * k + 256 * b) / 16..][..16];
                    let mut cs = 0i32;
                    for j in 0..16 {
                        cs += s.c[j] * bs[j] as i32;
                    }
                    off[r] = (cs as f32).mul_add(s.e * dx, off[r]);
                }
            }
            // SAFETY: `i < rows`, `t0 + mr <= m`; `out` as the caller's.
            unsafe { c.store(i, t0, mr, &acc, &off) };
        }
    }
}
