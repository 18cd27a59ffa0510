//! Integer dot products for Q4_0, Q8_0 and the K-quants (Q2_K to Q6_K): the input rows are
//! quantized to 8 bits and met with the weights' own integers, as llama.cpp does, instead of
//! dequantizing the weights to f32. Used by prefill and decoding alike, so both give the same bits.
//!
//! # The arithmetic (the definition every path reproduces)
//!
//! **Inputs.** Each input row is cut into blocks of `QB` values (32 for Q4_0/Q8_0, 256 for the
//! K-quants). A block's scale is `dx = amax / 127` and its values `qx = round(x · (127 / amax))`
//! (ties to even; all zero when `amax = 0`), so `|qx| ≤ 127`. Each 16 values also keep
//! `bsum = Σ qx` (for the K-quants' offsets).
//!
//! **Block totals.** Each weight block `b` (32 values for Q4_0/Q8_0, 256 for the K-quants)
//! gives one integer `T_b`:
//! - Q4_0: `Σ (q − 8) · qx`; Q8_0: `Σ q · qx`, over the block's 32 values.
//! - K-quants: `Σ_j sc_j · Σ_{v in group j} w_v · qx_v` over the block's 16 groups of 16 values,
//!   with `sc_j` the integer scale of group `j` (Q4_K, Q5_K: the 6-bit scale of its sub-block of
//!   32; Q6_K: its signed 8-bit scale; Q3_K: its 6-bit scale less 32; Q2_K: its 4-bit scale) and
//!   `w` the weight's integer (Q2_K, Q4_K, Q5_K: its 2-, 4- or 5-bit `q`, the minimum apart;
//!   Q6_K, Q3_K: `q`, its offset of 32 or 4 apart). Beside it, the offsets' integer
//!   `C_b = Σ_{j<16} c_j · bsum_j` (Q4_K, Q5_K `c_j = m_{j/2}`, the sub-block's 6-bit min; Q2_K
//!   `c_j = m_j`, the group's 4-bit min; Q6_K `c_j = 32 · sc_j`; Q3_K `c_j = 4 · sc_j`).
//!
//! These are exact integers (they fit an `i32`), so any grouping and order of the products gives
//! the same `T_b`: a kernel may sum 4 products a lane (decoding, weights as stored) or one weight
//! row a lane (prefill, weights repacked), and subtract `8 · Σ qx` from `Σ q · qx` instead of
//! multiplying by `q − 8`.
//!
//! **Scales, in f32, in increasing `b`, one chain per output:**
//! `acc = fma(T_b as f32, s_b · dx_b, acc)`, with `s_b` the block's f16 scale (Q4_0, Q8_0) or its
//! `d` (K-quants); for the K-quants also `off = fma(C_b as f32, e · dx_b, off)` with `e = dmin`
//! (Q2_K, Q4_K, Q5_K) or `d` (Q6_K, Q3_K). The result is `acc − off` (`off = 0` for Q4_0/Q8_0).
//! The conversions of `T_b` and `C_b` to f32 may round (above 2²⁴), the same on every path.
//!
//! Each format's weight integers, scales and layout come from [`super::formats`]; this module
//! holds the definition ([`dot`]) and the dispatch, `avx2` and `avx512` the SIMD kernels over
//! the weights as stored, `packed` the prefill kernels over repacked weights (AVX-512 VNNI;
//! `packed::avx2` for AVX2, with or without AVX-VNNI), `portable` the kernel of every other CPU
//! (ARM, x86 without AVX2: plain Rust the compiler vectorizes), and `inputs` the quantized input
//! rows.

// Index loops mirror the arithmetic they define; iterator chains would hide the order.
#![allow(clippy::needless_range_loop)]

use super::formats::{self, half_at, q2k, q3k, q4_0, q4k, q5k, q6k, q8_0};
use super::isa::Isa;
use candle_core::quantized::GgmlDType;

/// `$run::<F>(args)` with `F` the const parameter of the format `$f`: the SIMD kernels' entry
/// (each kernel is compiled once per format).
#[cfg(target_arch = "x86_64")]
macro_rules! by_format {
    ($f:expr, $run:ident($($arg:expr),*)) => {
        match $f {
            QFormat::Q4_0 => $run::<{ $crate::model::cpu::qdot::Q4_0 }>($($arg),*),
            QFormat::Q8_0 => $run::<{ $crate::model::cpu::qdot::Q8_0 }>($($arg),*),
            QFormat::Q2K => $run::<{ $crate::model::cpu::qdot::Q2K }>($($arg),*),
            QFormat::Q3K => $run::<{ $crate::model::cpu::qdot::Q3K }>($($arg),*),
            QFormat::Q4K => $run::<{ $crate::model::cpu::qdot::Q4K }>($($arg),*),
            QFormat::Q5K => $run::<{ $crate::model::cpu::qdot::Q5K }>($($arg),*),
            QFormat::Q6K => $run::<{ $crate::model::cpu::qdot::Q6K }>($($arg),*),
        }
    };
}

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod inputs;
#[cfg(target_arch = "x86_64")]
mod packed;
mod portable;
#[cfg(test)]
mod tests;

pub use inputs::QuantRows;

/// The weight formats with an integer path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QFormat {
    Q4_0,
    Q8_0,
    Q2K,
    Q3K,
    Q4K,
    Q5K,
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
            Self::Q2K => (q2k::BYTES, q2k::VALUES),
            Self::Q3K => (q3k::BYTES, q3k::VALUES),
            Self::Q4K => (q4k::BYTES, q4k::VALUES),
            Self::Q5K => (q5k::BYTES, q5k::VALUES),
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
#[cfg(target_arch = "x86_64")]
const Q5K: u8 = 4;
#[cfg(target_arch = "x86_64")]
const Q3K: u8 = 5;
#[cfg(target_arch = "x86_64")]
const Q2K: u8 = 6;

/// Whether the format `F` (a K-quant) carries Q4_K's packed 6-bit scales and minimums (Q4_K and
/// Q5_K: the same bytes at the same places), not Q6_K's signed scales.
#[cfg(target_arch = "x86_64")]
const fn k4_scales(f: u8) -> bool {
    f == Q4K || f == Q5K
}

/// Bytes of one weight block of the format `F`.
#[cfg(target_arch = "x86_64")]
const fn block_bytes(f: u8) -> usize {
    match f {
        Q4_0 => q4_0::BYTES,
        Q8_0 => q8_0::BYTES,
        Q2K => q2k::BYTES,
        Q3K => q3k::BYTES,
        Q4K => q4k::BYTES,
        Q5K => q5k::BYTES,
        _ => q6k::BYTES,
    }
}

/// The 64 weight integers of pair `p` of a block (see the definition above), for the portable
/// path; for Q4_0 and Q8_0 a pair is two blocks and `blk` starts at the first.
fn pair_values(f: QFormat, blk: &[u8], p: usize) -> [i8; 64] {
    match f {
        QFormat::Q4_0 => q4_0::pair_values(blk),
        QFormat::Q8_0 => q8_0::pair_values(blk),
        QFormat::Q2K => q2k::pair_values(blk, p),
        QFormat::Q3K => q3k::pair_values(blk, p),
        QFormat::Q4K => q4k::pair_values(blk, p),
        QFormat::Q5K => q5k::pair_values(blk, p),
        QFormat::Q6K => q6k::pair_values(blk, p),
    }
}

/// The integer scales of the K-quant block `blk` (see the definition above).
fn int_scales(f: QFormat, blk: &[u8]) -> formats::KScales {
    match f {
        QFormat::Q2K => q2k::int_scales(blk),
        QFormat::Q3K => q3k::int_scales(blk),
        QFormat::Q4K => q4k::int_scales(blk),
        QFormat::Q5K => q5k::int_scales(blk),
        QFormat::Q6K => q6k::int_scales(blk),
        QFormat::Q4_0 | QFormat::Q8_0 => unreachable!("{f:?} has one f16 scale a block"),
    }
}

/// `Σ w · qx` over `n` values (exact).
fn total(w: &[i8], qx: &[i8], n: usize) -> i32 {
    (0..n).map(|j| w[j] as i32 * qx[j] as i32).sum()
}

/// The reference dot product of input row `r` of `x` with the weight row `w` (the definition).
pub fn dot(f: QFormat, w: &[u8], x: &QuantRows, r: usize) -> f32 {
    let k = x.k;
    let qs = &x.qs[r * k..][..k];
    let mut acc = 0f32;
    let mut off = 0f32;
    match f {
        QFormat::Q4_0 | QFormat::Q8_0 => {
            let (bytes, _) = f.block();
            for p in 0..k / 64 {
                let blk = &w[2 * p * bytes..];
                let v = pair_values(f, blk, 0);
                for h in 0..2 {
                    let b = 2 * p + h;
                    let t = total(&v[32 * h..], &qs[32 * b..], 32);
                    // `d` leads each block (Q4_0 and Q8_0 alike).
                    let s = half_at(blk, bytes * h) * x.d[r * k / 32 + b];
                    acc = (t as f32).mul_add(s, acc);
                }
            }
        }
        QFormat::Q2K | QFormat::Q3K | QFormat::Q4K | QFormat::Q5K | QFormat::Q6K => {
            let (bytes, _) = f.block();
            for (b, blk) in w.chunks_exact(bytes).take(k / 256).enumerate() {
                let dx = x.d[r * k / 256 + b];
                let s = int_scales(f, blk);
                let mut t = 0i32;
                for p in 0..4 {
                    let v = pair_values(f, blk, p);
                    for g in 0..4 {
                        // Group `4p + g`: values `64p + 16g..` of the block.
                        t += s.sc[4 * p + g] * total(&v[16 * g..], &qs[256 * b + 64 * p + 16 * g..], 16);
                    }
                }
                acc = (t as f32).mul_add(s.d * dx, acc);
                let bs = &x.bsum[(r * k + 256 * b) / 16..][..16];
                let c: i32 = (0..16).map(|j| s.c[j] * bs[j] as i32).sum();
                off = (c as f32).mul_add(s.e * dx, off);
            }
        }
    }
    acc - off
}

/// Whether [`block`] repacks the weights for a call of `m` input rows on `isa` (it then takes
/// its input rows in one call best: the repacking is paid once per call).
pub fn repacks(isa: Isa, m: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    match isa {
        Isa::Avx512 if std::arch::is_x86_feature_detected!("avx512vnni") => return m >= packed::MIN_M,
        // AVX-512 without VNNI (Skylake-SP/X) runs the AVX2 repacked kernel.
        Isa::Avx512 | Isa::Avx2 => return m >= packed::avx2::MIN_M,
        Isa::Portable => {}
    }
    let _ = (isa, m);
    false
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
                if repacks(isa, m) {
                    // SAFETY: the CPU has AVX-512 (the contract on `isa`, which implies AVX2, FMA
                    // and F16C), VNNI when `vnni` (just detected) and AVX-VNNI when `avx_vnni`
                    // says so; the bounds asserted above; `out` is the caller's.
                    unsafe {
                        if vnni {
                            packed::block(f, call)
                        } else {
                            packed::avx2::block(f, super::isa::avx_vnni(), call)
                        }
                    };
                    return;
                }
                // SAFETY: the CPU has AVX-512 (the contract on `isa`) and VNNI when `vnni` (just
                // detected); `w` holds `rows` rows and `x` rows `r0..r0 + m`, of whole blocks
                // (asserted above); `out` is the caller's.
                unsafe { avx512::block(f, vnni, call) };
                return;
            }
            Isa::Avx2 => {
                // SAFETY: the CPU has AVX2, FMA and F16C (the contract on `isa`), and AVX-VNNI
                // when `avx_vnni` says so (detected); the bounds asserted above; `out` is the
                // caller's.
                unsafe {
                    if repacks(isa, m) {
                        packed::avx2::block(f, super::isa::avx_vnni(), call)
                    } else {
                        avx2::block(f, call)
                    }
                };
                return;
            }
            Isa::Portable => {}
        }
    }
    let _ = isa;
    let call = portable::Call {
        w,
        row_bytes,
        rows,
        x,
        r0,
        m,
        out,
        ldo,
    };
    // SAFETY: `out` is the caller's.
    unsafe { portable::block(f, call) }
}
