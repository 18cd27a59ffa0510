//! `y = x · Wᵀ` with `W` in GGUF block format (or f16/f32) and `x`, `y` in f32.
//!
//! Every output is one dot product computed the same way whatever the number of rows: the
//! weight row is dequantized to f32 exactly as candle/ggml define each format, then
//! `acc[lane] = fma(x[k], w[k], acc[lane])` runs over `k` in order with 8 lanes (`k mod 8`), and
//! the lanes are summed in a fixed tree. Decoding (one row) streams each weight row once; prefill
//! dequantizes a panel of 4 weight rows once and meets it with the inputs 4 rows at a time
//! (16 accumulators). Same arithmetic on the AVX2 path and the portable one, bit for bit.

// Index loops mirror the arithmetic they define; iterator chains would hide the order.
#![allow(clippy::needless_range_loop)]

use super::dequant::{decoder, RowDecoder};
use candle_core::quantized::{GgmlDType, QTensor};
use rayon::prelude::*;
use std::sync::Arc;

/// Weight rows per task.
const NR: usize = 4;
/// Input rows per register tile.
const MR: usize = 4;
const LANES: usize = 8;

/// A weight matrix prepared for the CPU kernel.
#[derive(Debug, Clone)]
pub struct CpuMatrix {
    tensor: Arc<QTensor>,
    n: usize,
    k: usize,
    row_bytes: usize,
    decode: RowDecoder,
}

impl CpuMatrix {
    /// `None` when the tensor is not on the CPU, its type has no decoder, or rows are not a
    /// whole number of blocks and lanes.
    pub fn new(tensor: Arc<QTensor>) -> Option<Self> {
        if !tensor.device().is_cpu() {
            return None;
        }
        let decode = decoder(tensor.dtype())?;
        let (n, k) = tensor.shape().dims2().ok()?;
        let dt: GgmlDType = tensor.dtype();
        if k % dt.block_size() != 0 || k % LANES != 0 {
            return None;
        }
        let row_bytes = k / dt.block_size() * dt.type_size();
        Some(Self {
            tensor,
            n,
            k,
            row_bytes,
            decode,
        })
    }

    /// `x`: `m × k` row-major; returns `m × n`.
    pub fn matmul(&self, x: &[f32], m: usize) -> candle_core::Result<Vec<f32>> {
        let (n, k) = (self.n, self.k);
        if x.len() != m * k {
            candle_core::bail!("matmul: input has {} values, expected {m}×{k}", x.len());
        }
        let data = self.tensor.data()?;
        let data: &[u8] = &data;
        let mut out = vec![0f32; m * n];
        // Transposed result (n × m) so each task writes a contiguous slice; m is small in decode.
        let mut out_t = vec![0f32; n * m];
        let rows_per_task = if m <= 2 { 64 } else { NR };
        out_t.par_chunks_mut(rows_per_task * m).enumerate().for_each_init(
            || vec![0f32; NR * k],
            |buf, (t, dst)| {
                let r0 = t * rows_per_task;
                let rows = dst.len() / m;
                for p0 in (0..rows).step_by(NR) {
                    let pr = NR.min(rows - p0);
                    for i in 0..pr {
                        let bytes = &data[(r0 + p0 + i) * self.row_bytes..][..self.row_bytes];
                        (self.decode)(bytes, &mut buf[i * k..(i + 1) * k]);
                    }
                    panel(x, m, k, &buf[..pr * k], pr, &mut dst[p0 * m..(p0 + pr) * m]);
                }
            },
        );
        for c in 0..n {
            for r in 0..m {
                out[r * n + c] = out_t[c * m + r];
            }
        }
        Ok(out)
    }
}

/// `dst[i * m + r] = dot(x[r], w[i])` for `pr` weight rows and `m` input rows.
fn panel(x: &[f32], m: usize, k: usize, w: &[f32], pr: usize, dst: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the features the function enables are present.
            unsafe { avx2::panel(x, m, k, w, pr, dst) };
            return;
        }
    }
    portable_panel(x, m, k, w, pr, dst)
}

/// The reference arithmetic: 8 lanes over `k`, then a fixed reduction tree.
fn portable_panel(x: &[f32], m: usize, k: usize, w: &[f32], pr: usize, dst: &mut [f32]) {
    for i in 0..pr {
        let wr = &w[i * k..][..k];
        for r in 0..m {
            let xr = &x[r * k..][..k];
            let mut acc = [0f32; LANES];
            for c in (0..k).step_by(LANES) {
                for l in 0..LANES {
                    acc[l] = xr[c + l].mul_add(wr[c + l], acc[l]);
                }
            }
            dst[i * m + r] = reduce(acc);
        }
    }
}

#[inline(always)]
fn reduce(a: [f32; LANES]) -> f32 {
    ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]))
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{reduce, LANES, MR, NR};
    use std::arch::x86_64::*;

    #[inline(always)]
    unsafe fn hsum(v: __m256) -> f32 {
        let mut a = [0f32; LANES];
        _mm256_storeu_ps(a.as_mut_ptr(), v);
        reduce(a)
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn panel(x: &[f32], m: usize, k: usize, w: &[f32], pr: usize, dst: &mut [f32]) {
        let xp = x.as_ptr();
        let wp = w.as_ptr();
        if pr == NR {
            let mut r = 0;
            while r + MR <= m {
                let mut acc = [_mm256_setzero_ps(); MR * NR];
                for c in (0..k).step_by(LANES) {
                    let wv = [
                        _mm256_loadu_ps(wp.add(c)),
                        _mm256_loadu_ps(wp.add(k + c)),
                        _mm256_loadu_ps(wp.add(2 * k + c)),
                        _mm256_loadu_ps(wp.add(3 * k + c)),
                    ];
                    for rr in 0..MR {
                        let xv = _mm256_loadu_ps(xp.add((r + rr) * k + c));
                        for i in 0..NR {
                            acc[rr * NR + i] = _mm256_fmadd_ps(xv, wv[i], acc[rr * NR + i]);
                        }
                    }
                }
                for rr in 0..MR {
                    for i in 0..NR {
                        dst[i * m + r + rr] = hsum(acc[rr * NR + i]);
                    }
                }
                r += MR;
            }
            while r < m {
                let mut acc = [_mm256_setzero_ps(); NR];
                for c in (0..k).step_by(LANES) {
                    let xv = _mm256_loadu_ps(xp.add(r * k + c));
                    for i in 0..NR {
                        acc[i] = _mm256_fmadd_ps(xv, _mm256_loadu_ps(wp.add(i * k + c)), acc[i]);
                    }
                }
                for i in 0..NR {
                    dst[i * m + r] = hsum(acc[i]);
                }
                r += 1;
            }
        } else {
            for i in 0..pr {
                for r in 0..m {
                    let mut acc = _mm256_setzero_ps();
                    for c in (0..k).step_by(LANES) {
                        acc = _mm256_fmadd_ps(
                            _mm256_loadu_ps(xp.add(r * k + c)),
                            _mm256_loadu_ps(wp.add(i * k + c)),
                            acc,
                        );
                    }
                    dst[i * m + r] = hsum(acc);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
            GgmlDType::Q8_0,
            GgmlDType::Q4K,
            GgmlDType::Q6K,
            GgmlDType::F16,
        ] {
            let (n, k, m) = (37, 256, 7);
            let w = weights(n, k, dtype);
            let mat = CpuMatrix::new(w.clone()).unwrap();
            let x: Vec<f32> = (0..m * k).map(|i| ((i * 31 % 97) as f32 / 97.0) - 0.5).collect();
            let y = mat.matmul(&x, m).unwrap();
            let wd = w.dequantize(&Device::Cpu).unwrap().to_vec2::<f32>().unwrap();
            for r in 0..m {
                for c in 0..n {
                    let want: f32 = (0..k).map(|kk| x[r * k + kk] * wd[c][kk]).sum();
                    assert!(
                        (y[r * n + c] - want).abs() < 1e-3,
                        "{dtype:?} [{r},{c}] {} vs {want}",
                        y[r * n + c]
                    );
                }
                let single = mat.matmul(&x[r * k..(r + 1) * k], 1).unwrap();
                assert_eq!(
                    &single[..],
                    &y[r * n..(r + 1) * n],
                    "{dtype:?}: row {r} alone must equal its batched value"
                );
            }
        }
    }

    #[test]
    fn simd_and_portable_kernels_agree_bit_for_bit() {
        let (m, k) = (6, 96);
        let x: Vec<f32> = (0..m * k).map(|i| ((i * 31 % 97) as f32 / 97.0) - 0.5).collect();
        for pr in [NR, 3] {
            let w: Vec<f32> = (0..pr * k).map(|i| ((i * 17 % 89) as f32 / 89.0) - 0.4).collect();
            let mut a = vec![0f32; pr * m];
            let mut b = vec![0f32; pr * m];
            panel(&x, m, k, &w, pr, &mut a);
            portable_panel(&x, m, k, &w, pr, &mut b);
            assert_eq!(a, b);
        }
    }
}
