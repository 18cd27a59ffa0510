//! `y = x · Wᵀ` with `W` in GGUF block format (or f16/f32) and `x`, `y` in f32.
//!
//! Every output is one dot product computed the same way whatever the number of rows: the
//! weight row is dequantized to f32 exactly as candle/ggml define each format, then met with the
//! input row by [`gemm::dot`] (16 lanes over `k`, a fixed reduction tree). The work is split by
//! weight rows: each task dequantizes a panel of rows once into a buffer that stays in cache and
//! runs every input row against it in register tiles. So a row's value never depends on how many
//! rows share the call, which is what makes prefill, chunked prefill and decoding agree bit for
//! bit.

use super::dequant::decoder;
use super::formats::RowDecoder;
use super::gemm::{self, LANES};
use super::gemv::{self, Gemv};
use super::isa::{isa, Isa};
use super::pool;
use super::qdot::{self, QFormat, QuantRows};
use candle_core::quantized::{GgmlDType, QTensor};
use std::cell::RefCell;
use std::sync::Arc;

/// Weight rows a prefill task dequantizes at once (the panel stays in L2 while every input row
/// passes over it). A multiple of the kernels' weight groups (6 rows with AVX-512, 4 with AVX2),
/// so that only a matrix's last panel has a partial group.
const PANEL_ROWS: usize = 48;
/// Weight rows dequantized at a time when decoding (about an L1 of f32).
const DECODE_ROWS: usize = 8;
/// Input rows up to which a call counts as decoding: the weights are streamed once, a few rows
/// at a time, instead of in panels.
const DECODE_MAX_M: usize = 3;

/// A weight matrix prepared for the CPU kernel.
#[derive(Debug, Clone)]
pub struct CpuMatrix {
    tensor: Arc<QTensor>,
    n: usize,
    k: usize,
    row_bytes: usize,
    decode: RowDecoder,
    /// The fused decoding kernel, for the formats that have one.
    gemv: Option<Gemv>,
    /// The integer path ([`qdot`]), for Q4_0, Q8_0 and the K-quants: used for every call, so
    /// prefill and decoding compute the same arithmetic.
    int8: Option<QFormat>,
    isa: Isa,
}

thread_local! {
    /// Each worker's dequantized panel, reused across calls.
    static PANEL: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// `out` shared by tasks that write disjoint elements of it.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: tasks write disjoint elements (each owns a range of output columns), and the buffer
// outlives the parallel section that uses the pointer.
unsafe impl Send for OutPtr {}
// SAFETY: sharing only hands out the pointer; every write through it is to a task's own columns.
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// Through a method, so closures capture the whole (Sync) wrapper rather than the raw field.
    fn ptr(self) -> *mut f32 {
        self.0
    }
}

impl CpuMatrix {
    /// `None` when the tensor is not on the CPU, its type has no decoder, or rows are not a
    /// whole number of blocks and lanes.
    pub fn new(tensor: Arc<QTensor>) -> Option<Self> {
        Self::with_isa(tensor, isa())
    }

    fn with_isa(tensor: Arc<QTensor>, isa: Isa) -> Option<Self> {
        if !tensor.device().is_cpu() {
            return None;
        }
        let (n, k) = tensor.shape().dims2().ok()?;
        let dt: GgmlDType = tensor.dtype();
        if !k.is_multiple_of(dt.block_size()) || !k.is_multiple_of(LANES) {
            return None;
        }
        // The SIMD block decoders take 32 values at a time: f16/bf16 rows of 16·odd values
        // (block size 1) use the row decoders of AVX2 (any length), and no fused kernel.
        let whole = k.is_multiple_of(32);
        let block_isa = if whole { isa } else { isa.min(Isa::Avx2) };
        let row_bytes = k / dt.block_size() * dt.type_size();
        Some(Self {
            tensor,
            n,
            k,
            row_bytes,
            decode: decoder(dt, block_isa)?,
            // The integer path, where there is one, serves decoding too.
            gemv: match QFormat::of(dt, k) {
                None if whole => gemv::gemv(dt, isa),
                _ => None,
            },
            int8: QFormat::of(dt, k),
            isa,
        })
    }

    pub fn rows(&self) -> usize {
        self.n
    }
    pub fn cols(&self) -> usize {
        self.k
    }

    /// `x`: `m × k` row-major; returns `m × n`.
    pub fn matmul(&self, x: &[f32], m: usize) -> candle_core::Result<Vec<f32>> {
        let mut out = vec![0f32; m * self.n];
        self.matmul_into(x, m, &mut out)?;
        Ok(out)
    }

    /// `x`: `m × k` row-major; writes `m × n` into `out`.
    pub fn matmul_into(&self, x: &[f32], m: usize, out: &mut [f32]) -> candle_core::Result<()> {
        let (n, k) = (self.n, self.k);
        if x.len() != m * k || out.len() != m * n {
            candle_core::bail!(
                "matmul: {} inputs and {} outputs for {m}×{k} · ({n}×{k})ᵀ",
                x.len(),
                out.len()
            );
        }
        let data = self.tensor.data()?;
        let data: &[u8] = &data;
        if let Some(f) = self.int8 {
            self.matmul_int8(f, data, x, m, out);
            return Ok(());
        }
        let task_rows = task_rows(n, m);
        // Decoding: sub-panels of a few rows stay in L1. Prefill: the task's whole panel.
        let sub_rows = match (m <= DECODE_MAX_M, k > 1024) {
            (true, true) => DECODE_ROWS / 2,
            (true, false) => DECODE_ROWS,
            (false, _) => task_rows,
        };
        let dst = OutPtr(out.as_mut_ptr());
        let tasks = n.div_ceil(task_rows);
        if let (Some(gemv), true) = (self.gemv, m <= gemv::MAX_M) {
            let run = |t: usize| {
                let r0 = t * task_rows;
                let rows = task_rows.min(n - r0);
                let w = &data[r0 * self.row_bytes..(r0 + rows) * self.row_bytes];
                // SAFETY: the kernel came from `gemv` for `self.isa`, an instruction set the CPU
                // runs (`isa()`, or `available()` in tests); `w` holds `rows` whole
                // rows, `x` holds m × k values with `m <= MAX_M` (checked above), and this task
                // alone writes columns `r0..r0+rows` of the m × n output.
                unsafe { gemv(w.as_ptr(), self.row_bytes, rows, x.as_ptr(), m, k, dst.ptr().add(r0), n) };
            };
            pool::run(tasks, &run);
            return Ok(());
        }
        let run = |t: usize| {
            let r0 = t * task_rows;
            let rows = task_rows.min(n - r0);
            PANEL.with(|buf| {
                let mut buf = buf.borrow_mut();
                if buf.len() < sub_rows * k {
                    buf.resize(sub_rows * k, 0.0);
                }
                for p0 in (0..rows).step_by(sub_rows) {
                    let pr = sub_rows.min(rows - p0);
                    let first = r0 + p0;
                    for i in 0..pr {
                        let bytes = &data[(first + i) * self.row_bytes..][..self.row_bytes];
                        (self.decode)(bytes, &mut buf[i * k..(i + 1) * k]);
                    }
                    // SAFETY: this task alone writes columns `first..first+pr` of every output row,
                    // all within `out` (m × n); `self.isa` is one the CPU runs (from `isa()`, or
                    // `available()` in tests).
                    unsafe { gemm::block(self.isa, x, m, &buf[..pr * k], pr, k, dst.ptr().add(first), n) };
                }
            });
        };
        pool::run(tasks, &run);
        Ok(())
    }

    /// The integer path: the inputs quantized once, then tasks over ranges of weight rows; in
    /// prefill each range meets the inputs in blocks of [`INT8_ROW_BLOCK`] rows (in L2).
    fn matmul_int8(&self, f: QFormat, data: &[u8], x: &[f32], m: usize, out: &mut [f32]) {
        let (n, k) = (self.n, self.k);
        let xq = QuantRows::new(x, m, k, f.input_block(), self.isa);
        // Repacked weights (see `qdot::repacks`) meet all the input rows in one call, the tasks'
        // rows whole groups of 32 of them.
        let repacks = qdot::repacks(self.isa, m);
        let (task_rows, row_block) = if repacks {
            (n.div_ceil(pool::threads() * 2).next_multiple_of(32).min(64), m)
        } else {
            (task_rows(n, m), INT8_ROW_BLOCK)
        };
        let dst = OutPtr(out.as_mut_ptr());
        let run = |t: usize| {
            let r0 = t * task_rows;
            let rows = task_rows.min(n - r0);
            let w = &data[r0 * self.row_bytes..(r0 + rows) * self.row_bytes];
            for b0 in (0..m).step_by(row_block) {
                let mb = row_block.min(m - b0);
                // SAFETY: this task alone writes columns `r0..r0+rows` of rows `b0..b0+mb` of the
                // m × n output; `self.isa` is one the CPU runs (from `isa()`, or `available()`
                // in tests).
                unsafe {
                    qdot::block(
                        f,
                        self.isa,
                        w,
                        self.row_bytes,
                        rows,
                        &xq,
                        b0,
                        mb,
                        dst.ptr().add(b0 * n + r0),
                        n,
                    )
                };
            }
        };
        pool::run(n.div_ceil(task_rows), &run);
    }
}

/// Weight rows per task: when decoding, enough tasks to balance the threads (a multiple of
/// [`DECODE_ROWS`]); in prefill, panels of at most [`PANEL_ROWS`] (a multiple of the tiles).
fn task_rows(n: usize, m: usize) -> usize {
    if m <= DECODE_MAX_M {
        n.div_ceil(pool::threads() * 4)
            .next_multiple_of(DECODE_ROWS)
            .clamp(DECODE_ROWS, 256)
    } else {
        n.div_ceil(pool::threads() * 2).next_multiple_of(12).min(PANEL_ROWS)
    }
}

/// Input rows a prefill task of the integer path meets at a time (64 × k bytes stay in L2).
const INT8_ROW_BLOCK: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::cpu::isa::available;
    use candle_core::{Device, Tensor};

    fn weights(n: usize, k: usize, dtype: GgmlDType) -> Arc<QTensor> {
        let v: Vec<f32> = (0..n * k)
            .map(|i| ((i * 7919 % 1013) as f32 / 1013.0 - 0.5) * 0.2)
            .collect();
        let t = Tensor::from_vec(v, (n, k), &Device::Cpu).unwrap();
        Arc::new(QTensor::quantize(&t, dtype).unwrap())
    }

    #[test]
    fn matches_dequantized_reference_and_is_row_independent() {
        for dtype in [
            GgmlDType::Q4_0,
            GgmlDType::Q4_1,
            GgmlDType::Q5_0,
            GgmlDType::Q5_1,
            GgmlDType::Q8_0,
            GgmlDType::Q2K,
            GgmlDType::Q3K,
            GgmlDType::Q4K,
            GgmlDType::Q5K,
            GgmlDType::Q6K,
            GgmlDType::F16,
            GgmlDType::BF16,
        ] {
            for (n, k, m) in [(37, 256, 7), (21, 768, 5)] {
                let w = weights(n, k, dtype);
                let x: Vec<f32> = (0..m * k).map(|i| ((i * 31 % 97) as f32 / 97.0) - 0.5).collect();
                let wd = w.dequantize(&Device::Cpu).unwrap().to_vec2::<f32>().unwrap();
                let int8 = QFormat::of(dtype, k);
                // The integer path quantizes the inputs to 8 bits: further from the f32 product.
                let tol = if int8.is_some() { 1e-2 } else { 1e-3 };
                let bytes = w.data().unwrap().to_vec();
                let row_bytes = bytes.len() / n;
                let mut first: Option<Vec<f32>> = None;
                for isa in available() {
                    let mat = CpuMatrix::with_isa(w.clone(), isa).unwrap();
                    let y = mat.matmul(&x, m).unwrap();
                    for r in 0..m {
                        for c in 0..n {
                            let want: f32 = (0..k).map(|kk| x[r * k + kk] * wd[c][kk]).sum();
                            assert!(
                                (y[r * n + c] - want).abs() < tol,
                                "{dtype:?} {isa:?} [{r},{c}] {} vs {want}",
                                y[r * n + c]
                            );
                            let exact = match int8 {
                                Some(f) => {
                                    let xq = QuantRows::new(&x[r * k..][..k], 1, k, f.input_block(), Isa::Portable);
                                    qdot::dot(f, &bytes[c * row_bytes..][..row_bytes], &xq, 0)
                                }
                                None => gemm::dot(&x[r * k..][..k], &wd[c]),
                            };
                            assert_eq!(
                                y[r * n + c].to_bits(),
                                exact.to_bits(),
                                "{dtype:?} {isa:?} [{r},{c}]: must equal the reference dot product"
                            );
                        }
                        for rows in 1..=DECODE_MAX_M.min(m - r) {
                            let part = mat.matmul(&x[r * k..(r + rows) * k], rows).unwrap();
                            assert_eq!(
                                &part[..n],
                                &y[r * n..(r + 1) * n],
                                "{dtype:?} {isa:?}: row {r} in a call of {rows} must equal its batched value"
                            );
                        }
                    }
                    match &first {
                        None => first = Some(y),
                        Some(f) => assert_eq!(f, &y, "{dtype:?}: {isa:?} must equal the portable path"),
                    }
                }
            }
        }
    }

    #[test]
    fn dense_rows_of_an_odd_number_of_16_lanes_are_whole() {
        for dtype in [GgmlDType::F16, GgmlDType::BF16] {
            let (n, k, m) = (11, 48, 5);
            let w = weights(n, k, dtype);
            let x: Vec<f32> = (0..m * k).map(|i| ((i * 17 % 89) as f32 / 89.0) - 0.5).collect();
            let wd = w.dequantize(&Device::Cpu).unwrap().to_vec2::<f32>().unwrap();
            for isa in available() {
                let mat = CpuMatrix::with_isa(w.clone(), isa).unwrap();
                for rows in [1, m] {
                    let y = mat.matmul(&x[..rows * k], rows).unwrap();
                    for r in 0..rows {
                        for c in 0..n {
                            let exact = gemm::dot(&x[r * k..][..k], &wd[c]);
                            assert_eq!(y[r * n + c].to_bits(), exact.to_bits(), "{dtype:?} {isa:?} [{r},{c}]");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn large_panels_and_many_tasks_agree_with_single_rows() {
        let (n, k, m) = (300, 576, 33);
        let w = weights(n, k, GgmlDType::Q4_1);
        let x: Vec<f32> = (0..m * k).map(|i| ((i * 13 % 101) as f32 / 101.0) - 0.5).collect();
        let mat = CpuMatrix::new(w).unwrap();
        let y = mat.matmul(&x, m).unwrap();
        for r in [0, 16, 32] {
            let one = mat.matmul(&x[r * k..(r + 1) * k], 1).unwrap();
            assert_eq!(
                &one[..],
                &y[r * n..(r + 1) * n],
                "row {r} alone must equal its batched value"
            );
        }
    }
}
