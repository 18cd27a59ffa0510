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
