//! Rotary position tables for a run of positions, computed from the model's inverse
//! frequencies the way Hugging Face does (`f32` angle = position × inv_freq).

use crate::config::RopeStyle;
use candle_core::{DType, Device, Tensor};

#[derive(Debug, Clone)]
pub struct Rope {
    inv_freq: Vec<f32>,
    style: RopeStyle,
}

impl Rope {
    pub fn new(inv_freq: Vec<f32>, style: RopeStyle) -> Self {
        Self { inv_freq, style }
    }

    /// `(cos, sin)`, each `(len, head_dim/2)`, for positions `start..start+len`.
    pub fn tables(
        &self,
        start: usize,
        len: usize,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let half = self.inv_freq.len();
        let mut cos = Vec::with_capacity(len * half);
        let mut sin = Vec::with_capacity(len * half);
        for p in start..start + len {
            let p = p as f32;
            for &f in &self.inv_freq {
                let a = p * f;
                cos.push(a.cos());
                sin.push(a.sin());
            }
        }
        let cos = Tensor::from_vec(cos, (len, half), device)?.to_dtype(dtype)?;
        let sin = Tensor::from_vec(sin, (len, half), device)?.to_dtype(dtype)?;
        Ok((cos, sin))
    }

    /// Rotates `x`: `(1, heads, len, head_dim)` contiguous.
    pub fn apply(&self, x: &Tensor, cos: &Tensor, sin: &Tensor) -> candle_core::Result<Tensor> {
        match self.style {
            RopeStyle::Interleaved => candle_nn::rotary_emb::rope_i(x, cos, sin),
            RopeStyle::HalfSplit => candle_nn::rotary_emb::rope(x, cos, sin),
        }
    }
}
