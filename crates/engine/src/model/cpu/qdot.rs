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

// Index loops mirror the arithmetic they define; iterator chains would hide the order.
#![allow(clippy::needless_range_loop)]

use super::dequant::scale_min_k4;
use super::gemm::{reduce, LANES};
use super::isa::Isa;
use candle_core::quantized::GgmlDType;

#[cfg(target_arch = "x86_64")]
#[path = "qdot_avx2.rs"]
mod avx2;
#[cfg(target_arch = "x86_64")]
#[path = "qdot_avx512.rs"]
mod avx512;

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
        let f = match dtype {
            GgmlDType::Q4_0 => Self::Q4_0,
            GgmlDType::Q8_0 => Self::Q8_0,
            GgmlDType::Q4K => Self::Q4K,
            GgmlDType::Q6K => Self::Q6K,
            _ => return None,
        };
        (k > 0 && k.is_multiple_of(f.input_block()) && k.is_multiple_of(64)).then_some(f)
    }

    /// Values per input block (one scale each).
    pub fn input_block(self) -> usize {
        match self {
            Self::Q4_0 | Self::Q8_0 => 32,
            Self::Q4K | Self::Q6K => 256,
        }
    }

    /// Bytes of one weight block and the values it holds.
    pub fn block(self) -> (usize, usize) {
        match self {
            Self::Q4_0 => (18, 32),
            Self::Q8_0 => (34, 32),
            Self::Q4K => (144, 256),
            Self::Q6K => (210, 256),
        }
    }
}

/// Input rows quantized for the integer kernels (see the module's definition).
#[derive(Debug, Default)]
pub struct QuantRows {
    /// `m × k` values.
    pub qs: Vec<i8>,
    /// One scale per input block, `m × k / QB`.
    pub d: Vec<f32>,
    /// `Σ qx` of every 16 values, `m × k / 16` (at most 16 · 127 in magnitude).
    pub bsum: Vec<i16>,
    pub k: usize,
    pub qb: usize,
}

impl QuantRows {
    /// Quantizes `m` rows of `k` values in blocks of `qb` (rows in parallel when there are many).
    /// `isa` above what the CPU has is lowered to what it has (every path gives the same values).
    pub fn new(x: &[f32], m: usize, k: usize, qb: usize, isa: Isa) -> Self {
        assert!(x.len() == m * k && k.is_multiple_of(qb) && qb.is_multiple_of(32));
        // A public entry point: the SIMD path below relies on the CPU having `isa`.
        let isa = isa.min(super::isa::supported());
        let mut q = Self {
            qs: vec![0; m * k],
            d: vec![0.0; m * k / qb],
            bsum: vec![0; m * k / 16],
            k,
            qb,
        };
        let dst = RowsPtr(q.qs.as_mut_ptr(), q.d.as_mut_ptr(), q.bsum.as_mut_ptr());
        let rows_per_task = (1 << 16) / k + 1;
        let run = |t: usize| {
            let (qs_ptr, d_ptr, bsum_ptr) = dst.get();
            for r in t * rows_per_task..((t + 1) * rows_per_task).min(m) {
                // SAFETY: task `t` alone writes rows `r` of the three arrays, each sized for m rows.
                let (qs, d, bsum) = unsafe {
                    (
                        std::slice::from_raw_parts_mut(qs_ptr.add(r * k), k),
                        std::slice::from_raw_parts_mut(d_ptr.add(r * k / qb), k / qb),
                        std::slice::from_raw_parts_mut(bsum_ptr.add(r * k / 16), k / 16),
                    )
                };
                let xr = &x[r * k..][..k];
                for (b, xs) in xr.chunks_exact(qb).enumerate() {
                    let (qb_, bs) = (&mut qs[b * qb..(b + 1) * qb], &mut bsum[b * qb / 16..(b + 1) * qb / 16]);
                    d[b] = quantize_block(xs, qb_, bs, isa);
                }
            }
        };
        super::pool::run(m.div_ceil(rows_per_task), &run);
        q
    }
}

/// The three arrays of [`QuantRows`], written row by row from several tasks.
#[derive(Clone, Copy)]
struct RowsPtr(*mut i8, *mut f32, *mut i16);
// SAFETY: tasks write disjoint rows, and the arrays outlive the parallel section (they belong to
// the `QuantRows` that `new` returns after `pool::run`).
unsafe impl Send for RowsPtr {}
// SAFETY: sharing only hands out the pointers; every write through them is to a task's own rows.
unsafe impl Sync for RowsPtr {}

impl RowsPtr {
    /// Through a method, so closures capture the whole (Sync) wrapper rather than its fields.
    fn get(self) -> (*mut i8, *mut f32, *mut i16) {
        (self.0, self.1, self.2)
    }
}

/// One input block: returns its scale, writes its 8-bit values and the sums of every 16.
fn quantize_block(x: &[f32], q: &mut [i8], bsum: &mut [i16], isa: Isa) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512 {
        // SAFETY: `QuantRows::new` lowered `isa` to what the CPU has, so it has AVX-512
        // F/BW/DQ/VL; the block is whole 16s (`qb` is a multiple of 32, asserted in `new`), and
        // `q` has as many values as `x`, `bsum` one per 16.
        return unsafe { quantize_block_avx512(x, q, bsum) };
    }
    let _ = isa;
    let amax = x.iter().fold(0f32, |a, v| a.max(v.abs()));
    let (d, id) = if amax > 0.0 {
        (amax / 127.0, 127.0 / amax)
    } else {
        (0.0, 0.0)
    };
    for (q, &v) in q.iter_mut().zip(x) {
        *q = (v * id).round_ties_even().clamp(-127.0, 127.0) as i8;
    }
    for (s, qs) in bsum.iter_mut().zip(q.chunks_exact(16)) {
        *s = qs.iter().map(|&v| v as i16).sum();
    }
    d
}

/// [`quantize_block`] 16 values at a time: the same maximum (exact in any order), the same
/// scalar scales, and `cvtps` rounds to nearest even as `round_ties_even` does (NaN inputs
/// aside, which the portable path maps to 0).
///
/// # Safety
/// The CPU has AVX-512 F/BW/DQ/VL; `x.len()` is a multiple of 16 and `q.len() >= x.len()`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
unsafe fn quantize_block_avx512(x: &[f32], q: &mut [i8], bsum: &mut [i16]) -> f32 {
    use std::arch::x86_64::*;
    // SAFETY: `c < x.len() / 16`: each load reads 16 floats inside `x`, each store writes 16
    // bytes inside `q` (at least as long, the contract); the features are this function's.
    unsafe {
        let n = x.len() / 16;
        let mut mx = _mm512_setzero_ps();
        for c in 0..n {
            mx = _mm512_max_ps(mx, _mm512_abs_ps(_mm512_loadu_ps(x.as_ptr().add(16 * c))));
        }
        let amax = _mm512_reduce_max_ps(mx);
        let (d, id) = if amax > 0.0 {
            (amax / 127.0, 127.0 / amax)
        } else {
            (0.0, 0.0)
        };
        let idv = _mm512_set1_ps(id);
        let lim = _mm512_set1_epi32(127);
        for c in 0..n {
            let v = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x.as_ptr().add(16 * c)), idv));
            let v = _mm512_max_epi32(_mm512_min_epi32(v, lim), _mm512_sub_epi32(_mm512_setzero_si512(), lim));
            _mm_storeu_si128(q.as_mut_ptr().add(16 * c) as *mut __m128i, _mm512_cvtepi32_epi8(v));
            bsum[c] = _mm512_reduce_add_epi32(v) as i16;
        }
        d
    }
}

/// Q4_K's 8 scales and 8 mins as bytes 0–7 and 8–15 (ggml's unpacking of the 12 packed bytes;
/// the same values as [`crate::model::cpu::dequant::scale_min_k4`]).
///
/// # Safety
/// `p` must point at the 12 bytes (readable, any alignment).
#[inline(always)]
pub(super) unsafe fn q4k_scales(p: *const u8) -> [u32; 4] {
    // SAFETY: three unaligned 4-byte reads at offsets 0, 4, 8: the 12 bytes of the contract.
    unsafe {
        let r = |i: usize| (p.add(4 * i) as *const u32).read_unaligned();
        let (u0, u1, u2) = (r(0), r(1), r(2));
        const M1: u32 = 0x3f3f_3f3f;
        const M2: u32 = 0x0f0f_0f0f;
        const M3: u32 = 0x0303_0303;
        [
            u0 & M1,
            (u2 & M2) | (((u0 >> 6) & M3) << 4),
            u1 & M1,
            ((u2 >> 4) & M2) | (((u1 >> 6) & M3) << 4),
        ]
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

/// The f16 at `p` as f32 (F16C), for the SIMD kernels.
///
/// # Safety
/// 2 bytes at `p` are readable (any alignment), and the CPU has F16C.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn f16_ptr(p: *const u8) -> f32 {
    use std::arch::x86_64::*;
    // SAFETY: an unaligned read of the 2 readable bytes, and F16C (the contract).
    unsafe {
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(
            (p as *const u16).read_unaligned() as i32
        )))
    }
}

fn f16_at(b: &[u8], i: usize) -> f32 {
    half::f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// The 64 weight integers of pair `p` of a block (see the module doc), for the portable path.
fn pair_values(f: QFormat, blk: &[u8], p: usize) -> [i32; 64] {
    let mut w = [0i32; 64];
    match f {
        QFormat::Q4_0 => {
            // A pair spans two 18-byte blocks: `blk` starts at the first.
            for h in 0..2 {
                let qs = &blk[18 * h + 2..18 * h + 18];
                for j in 0..16 {
                    w[32 * h + j] = (qs[j] & 0xF) as i32 - 8;
                    w[32 * h + 16 + j] = (qs[j] >> 4) as i32 - 8;
                }
            }
        }
        QFormat::Q8_0 => {
            for h in 0..2 {
                for j in 0..32 {
                    w[32 * h + j] = blk[34 * h + 2 + j] as i8 as i32;
                }
            }
        }
        QFormat::Q4K => {
            let q = &blk[16 + 32 * p..][..32];
            for j in 0..32 {
                w[j] = (q[j] & 0xF) as i32;
                w[32 + j] = (q[j] >> 4) as i32;
            }
        }
        QFormat::Q6K => {
            for h in 0..2 {
                let s = 2 * p + h;
                let (half, t) = (s / 4, s % 4);
                let ql = &blk[64 * half + 32 * (t & 1)..][..32];
                let qh = &blk[128 + 32 * half..][..32];
                for j in 0..32 {
                    let lo = (ql[j] >> (4 * (t / 2))) & 0xF;
                    let hi = (qh[j] >> (2 * t)) & 3;
                    w[32 * h + j] = (lo | hi << 4) as i32;
                }
            }
        }
    }
    w
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
                    let s = f16_at(blk, bytes * (l / 8)) * x.d[r * k / 32 + b];
                    acc[l] = (dl[l] as f32).mul_add(s, acc[l]);
                }
            }
        }
        QFormat::Q4K | QFormat::Q6K => {
            let (bytes, _) = f.block();
            for (b, blk) in w.chunks_exact(bytes).take(k / 256).enumerate() {
                let dx = x.d[r * k / 256 + b];
                let mut isum = [0i32; 16];
                for p in 0..4 {
                    let dl = lanes(&pair_values(f, blk, p), &qs[256 * b + 64 * p..]);
                    for l in 0..16 {
                        let sc = match f {
                            QFormat::Q4K => scale_min_k4(2 * p + l / 8, &blk[4..16]).0 as i32,
                            _ => blk[192 + 4 * p + l / 4] as i8 as i32,
                        };
                        isum[l] += sc * dl[l];
                    }
                }
                let d = f16_at(blk, if f == QFormat::Q4K { 0 } else { 208 });
                let dd = d * dx;
                for l in 0..16 {
                    acc[l] = (isum[l] as f32).mul_add(dd, acc[l]);
                }
                let bs = &x.bsum[(r * k + 256 * b) / 16..][..16];
                let (c, e): (i32, f32) = match f {
                    QFormat::Q4K => (
                        (0..16)
                            .map(|j| scale_min_k4(j / 2, &blk[4..16]).1 as i32 * bs[j] as i32)
                            .sum(),
                        f16_at(blk, 2),
                    ),
                    _ => (
                        (0..16).map(|j| 32 * (blk[192 + j] as i8 as i32) * bs[j] as i32).sum(),
                        d,
                    ),
                };
                off = (c as f32).mul_add(e * dx, off);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::cpu::isa::available;
    use candle_core::quantized::QTensor;
    use candle_core::{Device, Tensor};

    fn weights(n: usize, k: usize, dtype: GgmlDType) -> QTensor {
        let v: Vec<f32> = (0..n * k)
            .map(|i| ((i * 7919 % 1013) as f32 / 1013.0 - 0.5) * 0.2 + if i % 97 == 0 { 0.3 } else { 0.0 })
            .collect();
        QTensor::quantize(&Tensor::from_vec(v, (n, k), &Device::Cpu).unwrap(), dtype).unwrap()
    }

    fn inputs(m: usize, k: usize) -> Vec<f32> {
        (0..m * k)
            .map(|i| (((i * 31) % 97) as f32 / 97.0 - 0.5) * if i % 61 == 0 { 9.0 } else { 1.0 })
            .collect()
    }

    const FORMATS: [(QFormat, GgmlDType); 4] = [
        (QFormat::Q4_0, GgmlDType::Q4_0),
        (QFormat::Q8_0, GgmlDType::Q8_0),
        (QFormat::Q4K, GgmlDType::Q4K),
        (QFormat::Q6K, GgmlDType::Q6K),
    ];

    #[test]
    fn the_definition_is_close_to_the_dequantized_product() {
        for (f, dt) in FORMATS {
            let (n, k, m) = (5, 512, 3);
            let w = weights(n, k, dt);
            let wd = w.dequantize(&Device::Cpu).unwrap().to_vec2::<f32>().unwrap();
            let data = w.data().unwrap();
            let x = inputs(m, k);
            let q = QuantRows::new(&x, m, k, f.input_block(), Isa::Portable);
            let row_bytes = data.len() / n;
            for r in 0..m {
                for i in 0..n {
                    let want: f32 = (0..k).map(|j| x[r * k + j] * wd[i][j]).sum();
                    let scale: f32 = (0..k).map(|j| (x[r * k + j] * wd[i][j]).abs()).sum();
                    let got = dot(f, &data[i * row_bytes..][..row_bytes], &q, r);
                    assert!(
                        (got - want).abs() <= 0.02 * scale,
                        "{f:?} [{r},{i}]: {got} vs {want} (scale {scale})"
                    );
                }
            }
        }
    }

    #[test]
    fn zero_rows_quantize_to_zero_and_extremes_to_127() {
        let mut x = vec![0f32; 64];
        x[40] = -3.0;
        x[41] = 1.5;
        let q = QuantRows::new(&x, 1, 64, 32, Isa::Portable);
        assert_eq!(q.d[0], 0.0);
        assert!(q.qs[..32].iter().all(|&v| v == 0));
        assert_eq!((q.qs[40], q.qs[41]), (-127, 64), "1.5 · 127/3 = 63.5 rounds to even");
        assert_eq!(q.bsum[2], -63);
    }

    #[test]
    fn every_path_quantizes_inputs_alike() {
        for (m, k, qb) in [(3, 256, 32), (70, 512, 256), (1, 64, 32)] {
            let mut x = inputs(m, k);
            x[5] = 0.5 / 127.0 * 3.0; // ties and exact values
            x[k - 1] = -x.iter().fold(0f32, |a, v| a.max(v.abs()));
            let want = QuantRows::new(&x, m, k, qb, Isa::Portable);
            for isa in available() {
                let got = QuantRows::new(&x, m, k, qb, isa);
                assert_eq!(got.qs, want.qs, "{isa:?} values");
                assert_eq!(got.bsum, want.bsum, "{isa:?} sums");
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got.d), bits(&want.d), "{isa:?} scales");
            }
        }
    }

    #[test]
    fn every_path_equals_the_definition_bit_for_bit() {
        for (f, dt) in FORMATS {
            for (n, k, m) in [(13, 256, 9), (7, 2048, 5), (9, 512, 1)] {
                let w = weights(n, k, dt);
                let data = w.data().unwrap();
                let row_bytes = data.len() / n;
                let q = QuantRows::new(&inputs(m, k), m, k, f.input_block(), Isa::Portable);
                for isa in available() {
                    for (r0, mm) in [(0, m), (m - 1, 1)] {
                        let mut out = vec![f32::NAN; mm * n];
                        // SAFETY: out holds mm × n values.
                        unsafe { block(f, isa, &data, row_bytes, n, &q, r0, mm, out.as_mut_ptr(), n) };
                        #[cfg(target_arch = "x86_64")]
                        if isa == Isa::Avx512 {
                            // Without VNNI too (the machine may have it).
                            let mut bw = vec![f32::NAN; mm * n];
                            let call = Call {
                                w: data.as_ptr(),
                                row_bytes,
                                rows: n,
                                x: &q,
                                r0,
                                m: mm,
                                out: bw.as_mut_ptr(),
                                ldo: n,
                            };
                            // SAFETY: as above.
                            unsafe { avx512::block(f, false, call) };
                            assert_eq!(
                                bw.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                                out.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                                "{f:?}: AVX-512 without VNNI must equal the path with it"
                            );
                        }
                        for r in 0..mm {
                            for i in 0..n {
                                let want = dot(f, &data[i * row_bytes..][..row_bytes], &q, r0 + r);
                                assert_eq!(
                                    out[r * n + i].to_bits(),
                                    want.to_bits(),
                                    "{f:?} {isa:?} n={n} k={k} row {} weight {i}",
                                    r0 + r
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}
