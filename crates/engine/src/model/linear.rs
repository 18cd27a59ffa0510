//! A weight matrix used as `y = x · Wᵀ`: quantized (GGUF blocks) or dense (f32/f16/bf16).
//! Kept behind our own type so faster kernels can replace candle's without touching the model.

use super::cpu::matmul::CpuMatrix;
use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{DType, Module, Tensor};
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct Linear {
    inner: QMatMul,
    /// Our CPU kernel (f32 activations), when the weight is block-quantized on the CPU.
    cpu: Option<CpuMatrix>,
    out_features: usize,
    in_features: usize,
}

impl Linear {
    /// A matrix as stored in a GGUF file; with `ours`, served by our CPU kernels where they
    /// take its format (on the CPU), else by candle's matmuls.
    pub fn from_qtensor(t: Arc<QTensor>, ours: bool) -> candle_core::Result<Self> {
        let (out_features, in_features) = t.shape().dims2()?;
        let cpu = if ours { CpuMatrix::new(t.clone()) } else { None };
        // candle turns f32/f16/bf16 matrices into f32 tensors; with our kernel the matrix stays
        // as stored (one copy, half the memory of f32 for bf16/f16).
        let inner = if cpu.is_some() {
            QMatMul::QTensor(t)
        } else {
            QMatMul::from_arc(t)?
        };
        Ok(Self {
            inner,
            cpu,
            out_features,
            in_features,
        })
    }

    pub fn from_tensor(t: Tensor) -> candle_core::Result<Self> {
        let (out_features, in_features) = t.dims2()?;
        Ok(Self {
            inner: QMatMul::Tensor(t),
            cpu: None,
            out_features,
            in_features,
        })
    }

    pub fn out_features(&self) -> usize {
        self.out_features
    }
    pub fn in_features(&self) -> usize {
        self.in_features
    }

    /// `x`: `(rows, in_features)` → `(rows, out_features)`, in x's dtype.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if let (Some(cpu), DType::F32) = (&self.cpu, x.dtype()) {
            let (m, k) = x.dims2()?;
            let y = cpu.matmul(&x.contiguous()?.flatten_all()?.to_vec1::<f32>()?, m)?;
            debug_assert_eq!(k, self.in_features);
            return Tensor::from_vec(y, (m, self.out_features), x.device());
        }
        match &self.inner {
            QMatMul::QTensor(_) if x.dtype() != DType::F32 => {
                let dt = x.dtype();
                self.inner.forward(&x.to_dtype(DType::F32)?)?.to_dtype(dt)
            }
            QMatMul::Tensor(w) if w.dtype() != x.dtype() => x.matmul(&w.to_dtype(x.dtype())?.t()?),
            _ => self.inner.forward(x),
        }
    }

    /// Rows of the matrix for the given ids (token embeddings), as `(ids, in_features)` f32 or
    /// the dense weight's dtype. Only the selected rows are dequantized.
    pub fn embedding(&self, ids: &Tensor) -> candle_core::Result<Tensor> {
        self.inner.embedding(ids)
    }
}

/// Matrices applied to the same input (a layer's Q, K and V; its gate and up projections), in
/// groups: the matrices of a group are stacked into one where that is one kernel launch instead
/// of several (candle's ops on a GPU, where a decoded token's time is mostly launches); our CPU
/// kernels keep each matrix in its own group. A matrix stacks only with neighbours of its
/// format (Q4_K_M stores V as Q6_K in some layers: Q and K are stacked there, V stays alone).
/// A block-quantized matrix's output rows are each computed from that row alone, so stacking
/// changes no value; a dense matrix goes through a matrix multiply whose blocking depends on its
/// size, which can round the last bit differently (the same for every run of the model).
#[derive(Debug, Clone)]
pub struct Stacked {
    /// Each group's matrix and the output features of the parts it holds, in order.
    groups: Vec<(Linear, Vec<usize>)>,
}

impl Stacked {
    /// Groups of parts: each group's matrix holds its parts' rows in order, `widths` rows each.
    pub fn new(groups: Vec<(Linear, Vec<usize>)>) -> candle_core::Result<Self> {
        for (m, widths) in &groups {
            if widths.is_empty() || m.out_features() != widths.iter().sum::<usize>() {
                candle_core::bail!("a stacked matrix of {} rows for parts of {widths:?}", m.out_features());
            }
        }
        Ok(Self { groups })
    }

    /// Each matrix on its own.
    pub fn each(parts: Vec<Linear>) -> Self {
        Self {
            groups: parts
                .into_iter()
                .map(|p| {
                    let w = p.out_features();
                    (p, vec![w])
                })
                .collect(),
        }
    }

    /// How many launches (matrices) the parts take.
    pub fn matrices(&self) -> usize {
        self.groups.len()
    }

    /// `x`: `(rows, in_features)` → one `(rows, width)` output per part, in order.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Vec<Tensor>> {
        let mut out = Vec::new();
        for (m, widths) in &self.groups {
            let y = m.forward(x)?;
            if let [_] = widths.as_slice() {
                out.push(y);
                continue;
            }
            let mut start = 0;
            for &w in widths {
                out.push(y.narrow(1, start, w)?);
                start += w;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::GgmlDType;
    use candle_core::Device;

    fn matrix(rows: usize, cols: usize, seed: u32) -> candle_core::Result<Tensor> {
        let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(7);
        let v: Vec<f32> = (0..rows * cols)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                ((x % 2001) as f32 / 1000.0 - 1.0) * 0.05
            })
            .collect();
        Tensor::from_vec(v, (rows, cols), &Device::Cpu)
    }

    /// Stacked block-quantized matrices give exactly the values of the matrices on their own, for
    /// one row (decoding) and several (prefill); dense ones agree to rounding.
    #[test]
    fn stacking_changes_no_value() -> candle_core::Result<()> {
        let cols = 512;
        for dtype in [
            GgmlDType::Q4_0,
            GgmlDType::Q2K,
            GgmlDType::Q3K,
            GgmlDType::Q4K,
            GgmlDType::Q5K,
            GgmlDType::Q6K,
            GgmlDType::Q8_0,
            GgmlDType::F16,
        ] {
            let widths = [256, 64, 64];
            let dense: Vec<Tensor> = widths
                .iter()
                .enumerate()
                .map(|(i, &w)| matrix(w, cols, i as u32 + 1))
                .collect::<candle_core::Result<_>>()?;
            let quant = |t: &Tensor| -> candle_core::Result<Linear> {
                Linear::from_qtensor(Arc::new(QTensor::quantize(t, dtype)?), false)
            };
            let each = Stacked::each(dense.iter().map(quant).collect::<candle_core::Result<_>>()?);
            let one = Stacked::new(vec![(quant(&Tensor::cat(&dense, 0)?)?, widths.to_vec())])?;
            assert_eq!((each.matrices(), one.matrices()), (3, 1));
            for rows in [1, 7] {
                let x = matrix(rows, cols, 99)?;
                for (a, b) in each.forward(&x)?.iter().zip(one.forward(&x)?) {
                    let (a, b) = (a.to_vec2::<f32>()?, b.to_vec2::<f32>()?);
                    if dtype == GgmlDType::F16 {
                        let worst = a
                            .iter()
                            .flatten()
                            .zip(b.iter().flatten())
                            .map(|(x, y)| (x - y).abs())
                            .fold(0f32, f32::max);
                        assert!(worst < 1e-6, "{rows} rows: dense stacked differs by {worst}");
                    } else {
                        assert_eq!(a, b, "{dtype:?}, {rows} rows: stacked differs");
                    }
                }
            }
        }
        Ok(())
    }
}
