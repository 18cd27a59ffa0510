//! Integer dot products for Q4_0, Q8_0, Q4_K and Q6_K weights: the input rows are quantized to
//! 8 bits and met with the weights' own integers, as llama.cpp does, instead of dequantizing the
//! weights to f32. Used by prefill and decoding alike, so both give the same bits.
//!
//! # The arithmetic (the definition every path reproduces)
//!
//! **Inputs.** Each input row is cut into blocks of `QB` values (32 for Q4_0/Q8_0, 256 for the
//! K-quants). A block's scale is `dx = amax / 127` and its values `qx = round(x · (127 / amax))`
//! (ties to even; all zero when `amax = 0`), so `|qx| ≤ 127`. Each 16 values also keep
//! `bsum = Σ qx` (for the K-quants' offsets).
//!
//! **Lanes.** Every 64 values (a *pair* of 32-value sub-blocks) give 16 integer lanes: lane `l`
//! is `D[l] = Σ_{t<4} w[4l+t] · qx[4l+t]` over the pair's values in `k` order, with `w` the
//! weight's integer (Q4_0: `q − 8`; Q8_0: `q`; Q4_K: `q`, its minimum apart; Q6_K: `q`, its
//! offset of 32 apart). Lanes 0–7 are the pair's first sub-block, 8–15 its second. Integer sums
//! are exact, so any SIMD grouping gives the same `D`.
//!
//! **Scales, in f32 lane by lane, in increasing `k`:**
//! - Q4_0, Q8_0 (per 32-value block `b`): `acc[l] = fma(D[l] as f32, dw_b · dx_b, acc[l])`.
//! - K-quants (per 256-value block): the integer `I[l] = Σ_pairs sc · D[l]` (Q4_K: the 6-bit
//!   scale of the lane's sub-block; Q6_K: the signed 8-bit scale of the lane's 16 values), then
//!   `acc[l] = fma(I[l] as f32, d · dx, acc[l])`. Beside the lanes, the offsets:
//!   `off = fma(C as f32, e · dx, off)` with `C = Σ_{j<16} c_j · bsum_j` over the block's
//!   16-value groups: Q4_K `c_j = m_{j/2}` (the sub-block's 6-bit min) and `e = dmin`; Q6_K
//!   `c_j = 32 · sc_j` and `e = d`.
//!
//! The result is [`super::gemm::reduce`]`(acc) − off`. Every lane integer fits in an `i32` and
//! converts to f32 exactly (below 2²⁴); `C` may round in its conversion, the same on every path.
//!
//! Each format's weight integers, scales and layout come from [`super::formats`]; this module
//! holds the definition ([`dot`]) and the dispatch, `avx2` and `avx512` the SIMD kernels, and
//! `inputs` the quantized input rows.

// Index loops mirror the arithmetic they define; iterator chains would hide the order.
#![allow(clippy::needless_range_loop)]

use super::formats::{self, half_at, q4_0, q4k, q6k, q8_0};
use super::gemm::{reduce, LANES};
use super::isa::Isa;
use candle_core::quantized::GgmlDType;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod inputs;
#[cfg(test)]
mod tests;

pub use inputs::QuantRows;

/// The weight formats with an integer path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QFormat {
    Q4_0,
    Q8_0,
    Q4K,
    Q6K,
}

impl QFormat {
    /// The integer format for `dtype` with rows of `k` values, if there is one (rows must be
    /// whole pairs of 32-value blocks).
    pub fn of(dtype: GgmlDType, k: usize) -> Option<Self> {
        let f = formats::of(dtype)?.int8?;
        (k > 0 && k.is_multiple_of(f.input_block()) && k.is_multiple_of(64)).then_some(f)
    }

    /// Values per input block (one scale each): those of a weight block, so that each weight
    /// block meets one input scale.
    pub fn input_block(self) -> usize {
        self.block().1
    }

    /// Bytes of one weight block and the values it holds.
    pub fn block(self) -> (usize, usize) {
        match self {
            Self::Q4_0 => (q4_0::BYTES, q4_0::VALUES),
            Self::Q8_0 => (q8_0::BYTES, q8_0::VALUES),
            Self::Q4K => (q4k::BYTES, q4k::VALUES),
            Self::Q6K => (q6k::BYTES, q6k::VALUES),
        }
    }
}

/// One call of the SIMD kernels: weight rows `0..rows` at `w` (`row_bytes` apart) against input
/// rows `r0..r0 + m` of `x`, the result of input row `r0 + r` and weight row `i` at
/// `out[r·ldo + i]`.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct Call<'a> {
    w: *const u8,
    row_bytes: usize,
    rows: usize,
    x: &'a QuantRows,
    r0: usize,
    m: usize,
    out: *mut f32,
    ldo: usize,
}

#[cfg(target_arch = "x86_64")]
impl<'a> Call<'a> {
    /// What a tile reads: weights, row stride, inputs, first input row, output, output stride.
    fn parts(self) -> (*const u8, usize, &'a QuantRows, usize, *mut f32, usize) {
        (self.w, self.row_bytes, self.x, self.r0, self.out, self.ldo)
    }

    /// The tile of weight rows from `i` and input rows from `r` (relative to this call).
    ///
    /// # Safety
    /// `i` and `r` must lie inside the call's rows.
    unsafe fn at(self, i: usize, r: usize) -> Self {
        // SAFETY: `i < rows` and `r < m` (the contract): weight row `i` lies inside the call's
        // `rows × row_bytes` bytes, and output `r·ldo + i` inside the call's outputs.
        unsafe {
            Self {
                w: self.w.add(i * self.row_bytes),
                r0: self.r0 + r,
                out: self.out.add(r * self.ldo + i),
                ..self
            }
        }
    }
}

/// The formats as const generic parameters of the SIMD kernels.
#[cfg(target_arch = "x86_64")]
const Q4_0: u8 = 0;
#[cfg(target_arch = "x86_64")]
const Q8_0: u8 = 1;
#[cfg(target_arch = "x86_64")]
const Q4K: u8 = 2;
#[cfg(target_arch = "x86_64")]
const Q6K: u8 = 3;

/// The 64 weight integers of pair `p` of a block (see the definition above), for the portable
/// path; for Q4_0 and Q8_0 a pair is two blocks and `blk` starts at the first.
fn pair_values(f: QFormat, blk: &[u8], p: usize) -> [i32; 64] {
    match f {
        QFormat::Q4_0 => q4_0::pair_values(blk),
        QFormat::Q8_0 => q8_0::pair_values(blk),
        QFormat::Q4K => q4k::pair_values(blk, p),
        QFormat::Q6K => q6k::pair_values(blk, p),
    }
}

/// The 16 lanes `D` of one pair.
fn lanes(w: &[i32; 64], qx: &[i8]) -> [i32; 16] {
    let mut d = [0i32; 16];
    for l in 0..16 {
        for t in 0..4 {
            d[l] += w[4 * l + t] * qx[4 * l + t] as i32;
        }
    }
    d
}

/// The reference dot product of input row `r` of `x` with the weight row `w` (the definition).
pub fn dot(f: QFormat, w: &[u8], x: &QuantRows, r: usize) -> f32 {
    let k = x.k;
    let qs = &x.qs[r * k..][..k];
    let mut acc = [0f32; LANES];
    let mut off = 0f32;
    match f {
        QFormat::Q4_0 | QFormat::Q8_0 => {
            let (bytes, _) = f.block();
            for p in 0..k / 64 {
                let blk = &w[2 * p * bytes..];
                let dl = lanes(&pair_values(f, blk, 0), &qs[64 * p..]);
                for l in 0..16 {
                    let b = 2 * p + l / 8;
                    // `d` leads each block (Q4_0 and Q8_0 alike).
                    let s = half_at(blk, bytes * (l / 8)) * x.d[r * k / 32 + b];
                    acc[l] = (dl[l] as f32).mul_add(s, acc[l]);
                }
            }
        }
        QFormat::Q4K | QFormat::Q6K => {
            let (bytes, _) = f.block();
            for (b, blk) in w.chunks_exact(bytes).take(k / 256).enumerate() {
                let dx = x.d[r * k / 256 + b];
                let s = if f == QFormat::Q4K {
                    q4k::int_scales(blk)
                } else {
                    q6k::int_scales(blk)
                };
                let mut isum = [0i32; 16];
                for p in 0..4 {
                    let dl = lanes(&pair_values(f, blk, p), &qs[256 * b + 64 * p..]);
                    for l in 0..16 {
                        // Lane `l` of pair `p` holds values `64p + 4l..`, of 16-value group `4p + l/4`.
                        isum[l] += s.sc[4 * p + l / 4] * dl[l];
                    }
                }
                let dd = s.d * dx;
                for l in 0..16 {
                    acc[l] = (isum[l] as f32).mul_add(dd, acc[l]);
                }
                let bs = &x.bsum[(r * k + 256 * b) / 16..][..16];
                let c: i32 = (0..16).map(|j| s.c[j] * bs[j] as i32).sum();
                off = (c as f32).mul_add(s.e * dx, off);
            }
        }
    }
    reduce(&acc) - off
}

/// `out[r·ldo + i] = dot(x[r], W[i])` for `r < m` and `i < rows`, `W` row `i` at
/// `w[i·row_bytes..]`.
///
/// # Safety
/// `out` must be valid for writes at every `r·ldo + i` above, and no other thread may access
/// those elements during the call. `isa` must be one the CPU runs (see [`super::isa`]).
#[allow(clippy::too_many_arguments)]
pub unsafe fn block(
    f: QFormat,
    isa: Isa,
    w: &[u8],
    row_bytes: usize,
    rows: usize,
    x: &QuantRows,
    r0: usize,
    m: usize,
    out: *mut f32,
    ldo: usize,
) {
    assert!(w.len() >= rows * row_bytes && x.qs.len() >= (r0 + m) * x.k);
    assert_eq!(row_bytes, x.k / f.block().1 * f.block().0);
    #[cfg(target_arch = "x86_64")]
    {
        let call = Call {
            w: w.as_ptr(),
            row_bytes,
            rows,
            x,
            r0,
            m,
            out,
            ldo,
        };
        match isa {
            Isa::Avx512 => {
                let vnni = std::arch::is_x86_feature_detected!("avx512vnni");
                // SAFETY: the CPU has AVX-512 (the contract on `isa`) and VNNI when `vnni` (just
                // detected); `w` holds `rows` rows and `x` rows `r0..r0 + m`, of whole blocks
                // (asserted above); `out` is the caller's.
                unsafe { avx512::block(f, vnni, call) };
                return;
            }
            Isa::Avx2 => {
                // SAFETY: the CPU has AVX2, FMA and F16C (the contract on `isa`); the bounds
                // asserted above; `out` is the caller's.
                unsafe { avx2::block(f, call) };
                return;
            }
            Isa::Portable => {}
        }
    }
    let _ = isa;
    for r in 0..m {
        for i in 0..rows {
            let v = dot(f, &w[i * row_bytes..][..row_bytes], x, r0 + r);
            // SAFETY: `r < m`, `i < rows`: the caller guarantees `out` is writable here.
            unsafe { *out.add(r * ldo + i) = v };
        }
    }
}
