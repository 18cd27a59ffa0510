//! The shape of a Llama-architecture model, read from GGUF metadata or an HF `config.json`.

use serde::{Deserialize, Serialize};

/// How rotary embeddings pair up the dimensions of a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RopeStyle {
    /// Pairs `(2i, 2i+1)`: what llama.cpp uses for GGUF llama weights (their Q/K rows are permuted).
    Interleaved,
    /// Pairs `(i, i + d/2)`: what Hugging Face uses for safetensors weights.
    HalfSplit,
}

/// Frequency scaling on top of the base rope frequencies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RopeScaling {
    None,
    /// Positions divided by `factor` (GGUF `llama.rope.scaling.type = linear`, HF `linear`).
    Linear {
        factor: f32,
    },
    /// Llama 3.1's piecewise scaling (HF `rope_scaling.rope_type = llama3`).
    Llama3 {
        factor: f32,
        low_freq_factor: f32,
        high_freq_factor: f32,
        original_max_position_embeddings: usize,
    },
    /// Per-frequency divisors, as stored in GGUF `rope_freqs.weight` (llama.cpp's form of Llama 3.1 scaling).
    FreqFactors(Vec<f32>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RopeConfig {
    pub theta: f32,
    /// Rotated dimensions per head (llama: the whole head).
    pub dim: usize,
    pub style: RopeStyle,
    pub scaling: RopeScaling,
}

impl RopeConfig {
    /// Inverse frequencies, one per rotated pair, with scaling applied; computed in f32 as
    /// Hugging Face and llama.cpp do, so positions far out land on the same angles.
    pub fn inv_freq(&self) -> Vec<f32> {
        let half = self.dim / 2;
        let base: Vec<f32> = (0..half)
            .map(|i| 1.0f32 / self.theta.powf((2 * i) as f32 / self.dim as f32))
            .collect();
        match &self.scaling {
            RopeScaling::None => base,
            RopeScaling::Linear { factor } => base.iter().map(|f| f / factor).collect(),
            RopeScaling::FreqFactors(ff) => base.iter().zip(ff).map(|(f, d)| f / d).collect(),
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            } => {
                let old = *original_max_position_embeddings as f32;
                let low_wavelen = old / low_freq_factor;
                let high_wavelen = old / high_freq_factor;
                base.iter()
                    .map(|&f| {
                        let wavelen = 2.0 * std::f32::consts::PI / f;
                        if wavelen < high_wavelen {
                            f
                        } else if wavelen > low_wavelen {
                            f / factor
                        } else {
                            let smooth = (old / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
                            (1.0 - smooth) * f / factor + smooth * f
                        }
                    })
                    .collect()
            }
        }
    }
}

/// Everything about a model's shape that the forward pass and the attention state depend on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub architecture: String,
    pub name: String,
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    pub n_ff: usize,
    pub vocab_size: usize,
    pub context_length: usize,
    pub rms_eps: f32,
    pub rope: RopeConfig,
    pub tied_embeddings: bool,
}

impl ModelConfig {
    /// Checks the invariants the forward pass relies on; `what` names the source in errors.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.n_layer == 0 || self.n_head == 0 || self.n_kv_head == 0 || self.head_dim == 0 {
            return Err(format!("degenerate shape: {self:?}"));
        }
        if !self.n_head.is_multiple_of(self.n_kv_head) {
            return Err(format!(
                "{} attention heads are not a multiple of {} key/value heads",
                self.n_head, self.n_kv_head
            ));
        }
        if self.rope.dim != self.head_dim || !self.head_dim.is_multiple_of(2) {
            return Err(format!(
                "rope dimension {} must equal the (even) head dimension {}",
                self.rope.dim, self.head_dim
            ));
        }
        if let RopeScaling::FreqFactors(f) = &self.rope.scaling {
            if f.len() != self.head_dim / 2 {
                return Err(format!(
                    "rope_freqs has {} entries, expected {}",
                    f.len(),
                    self.head_dim / 2
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rope(scaling: RopeScaling) -> RopeConfig {
        RopeConfig {
            theta: 500000.0,
            dim: 128,
            style: RopeStyle::HalfSplit,
            scaling,
        }
    }

    #[test]
    fn llama3_scaling_keeps_high_frequencies_and_divides_low_ones() {
        let plain = rope(RopeScaling::None).inv_freq();
        let scaled = rope(RopeScaling::Llama3 {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 8192,
        })
        .inv_freq();
        assert_eq!(plain[0], scaled[0], "the fastest frequency is untouched");
        let last = plain.len() - 1;
        assert!(
            (scaled[last] - plain[last] / 8.0).abs() < 1e-12,
            "the slowest is divided by the factor"
        );
        assert!(
            scaled.iter().zip(&plain).all(|(s, p)| s <= p),
            "scaling never speeds a frequency up"
        );
    }
}
