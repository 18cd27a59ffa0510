//! Turning logits into the next token: greedy, or temperature → top-k → top-p → min-p sampling
//! (transformers' order), after a repetition penalty, from a seeded ChaCha8 generator whose
//! stream is stable across platforms and releases (same seed, same output).

use crate::error::{EngineError, Result};
use candle_core::{Tensor, D};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// How the next token is chosen. The one set of sampling settings: the engine, the CLI's flags,
/// the app's sampling panel and the server's request fields all use this type and its defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct SamplingParams {
    /// 0 means greedy.
    pub temperature: f32,
    /// 0 means off.
    pub top_k: usize,
    /// 1 means off.
    pub top_p: f32,
    /// 0 means off.
    pub min_p: f32,
    /// 1 means off; >1 makes recent tokens less likely (CTRL-style, as llama.cpp and transformers).
    pub repeat_penalty: f32,
    /// How many recent tokens the penalty looks at.
    pub repeat_last_n: usize,
    pub seed: u64,
}

/// The defaults people get when they set nothing: mild randomness with the usual top-k/top-p
/// cut-offs, and no repetition penalty (llama.cpp's default since 2024; a penalty changes what
/// greedy decoding means, so it is something to ask for).
impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 0.7,
            top_k: 40,
            top_p: 0.9,
            min_p: 0.0,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            seed: 42,
        }
    }
}

impl SamplingParams {
    /// Always the most likely token (every cut-off off, no penalty).
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repeat_penalty: 1.0,
            ..Self::default()
        }
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(EngineError::BadSampling(m));
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return bad(format!("temperature {} must be ≥ 0", self.temperature));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad(format!("top-p {} must be in (0, 1]", self.top_p));
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad(format!("min-p {} must be in [0, 1]", self.min_p));
        }
        if !(self.repeat_penalty > 0.0 && self.repeat_penalty.is_finite()) {
            return bad(format!("repeat penalty {} must be > 0", self.repeat_penalty));
        }
        Ok(())
    }
}

pub struct Sampler {
    params: SamplingParams,
    rng: ChaCha8Rng,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Result<Self> {
        params.validate()?;
        let rng = ChaCha8Rng::seed_from_u64(params.seed);
        Ok(Self { params, rng })
    }

    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Picks the next token from `logits` `(1, vocab)` or `(vocab)` f32, wherever they are: on a
    /// GPU, greedy decoding without a repetition penalty takes the argmax there and copies one
    /// id to the host instead of the whole row (128k values for Llama 3); everything else is
    /// [`Sampler::sample`] on the row. (On ties a GPU's argmax may pick another of the equal
    /// logits than the first.)
    pub fn sample_tensor(&mut self, logits: &Tensor, history: &[u32]) -> Result<u32> {
        let row = logits.flatten_all()?;
        let p = &self.params;
        if !row.device().is_cpu() && p.temperature <= 0.0 && p.repeat_penalty == 1.0 {
            return Ok(row.argmax(D::Minus1)?.to_scalar::<u32>()?);
        }
        Ok(self.sample(&mut row.to_vec1::<f32>()?, history))
    }

    /// Picks the next token from `logits` (one row, f32); `history` feeds the repetition penalty.
    pub fn sample(&mut self, logits: &mut [f32], history: &[u32]) -> u32 {
        let p = &self.params;
        if p.repeat_penalty != 1.0 {
            let start = history.len().saturating_sub(p.repeat_last_n);
            let mut seen: Vec<u32> = history[start..].to_vec();
            seen.sort_unstable();
            seen.dedup();
            for t in seen {
                if let Some(l) = logits.get_mut(t as usize) {
                    *l = if *l > 0.0 {
                        *l / p.repeat_penalty
                    } else {
                        *l * p.repeat_penalty
                    };
                }
            }
        }
        if p.temperature <= 0.0 {
            return argmax(logits);
        }
        // Candidates sorted by logit, best first.
        let mut idx: Vec<u32> = (0..logits.len() as u32)
            .filter(|&i| logits[i as usize].is_finite())
            .collect();
        if idx.is_empty() {
            return argmax(logits);
        }
        idx.sort_unstable_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]).then(a.cmp(&b)));
        if p.top_k > 0 && p.top_k < idx.len() {
            idx.truncate(p.top_k);
        }
        let max = logits[idx[0] as usize] / p.temperature;
        let mut probs: Vec<f32> = idx
            .iter()
            .map(|&i| (logits[i as usize] / p.temperature - max).exp())
            .collect();
        let sum: f32 = probs.iter().sum();
        probs.iter_mut().for_each(|x| *x /= sum);
        if p.top_p < 1.0 {
            let mut acc = 0.0;
            let mut keep = probs.len();
            for (n, &x) in probs.iter().enumerate() {
                acc += x;
                if acc >= p.top_p {
                    keep = n + 1;
                    break;
                }
            }
            probs.truncate(keep);
        }
        if p.min_p > 0.0 {
            let floor = probs[0] * p.min_p;
            let keep = probs.iter().take_while(|&&x| x >= floor).count().max(1);
            probs.truncate(keep);
        }
        let total: f32 = probs.iter().sum();
        let mut r = self.rng.random::<f32>() * total;
        for (n, &x) in probs.iter().enumerate() {
            if r < x {
                return idx[n];
            }
            r -= x;
        }
        idx[probs.len() - 1]
    }
}

/// Index of the largest logit; the first one on ties (as `torch.argmax`).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in logits.iter().enumerate() {
        if x > logits[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logits() -> Vec<f32> {
        vec![1.0, 3.0, 2.0, 3.0, -1.0, 0.5]
    }

    #[test]
    fn a_tensor_row_is_sampled_as_its_values_are() -> Result<()> {
        let t = Tensor::from_vec(logits(), (1, 6), &candle_core::Device::Cpu)?;
        let mut greedy = Sampler::new(SamplingParams::greedy())?;
        assert_eq!(greedy.sample_tensor(&t, &[])?, 1, "the first of the tied best");
        let params = SamplingParams {
            temperature: 1.0,
            seed: 3,
            ..SamplingParams::default()
        };
        let (mut a, mut b) = (Sampler::new(params.clone())?, Sampler::new(params)?);
        for _ in 0..20 {
            assert_eq!(a.sample_tensor(&t, &[2])?, b.sample(&mut logits(), &[2]));
        }
        Ok(())
    }

    #[test]
    fn greedy_takes_first_maximum() {
        let mut s = Sampler::new(SamplingParams::greedy()).unwrap();
        assert_eq!(s.sample(&mut logits(), &[]), 1);
    }

    #[test]
    fn same_seed_same_tokens_other_seed_differs() {
        let p = SamplingParams {
            temperature: 1.5,
            seed: 7,
            ..SamplingParams::greedy()
        };
        let run = |p: &SamplingParams| {
            let mut s = Sampler::new(p.clone()).unwrap();
            (0..64).map(|_| s.sample(&mut logits(), &[])).collect::<Vec<_>>()
        };
        assert_eq!(run(&p), run(&p));
        assert_ne!(run(&p), run(&SamplingParams { seed: 8, ..p.clone() }));
    }

    #[test]
    fn top_k_one_is_greedy_and_top_p_limits_choices() {
        let mut s = Sampler::new(SamplingParams {
            temperature: 1.0,
            top_k: 1,
            ..SamplingParams::greedy()
        })
        .unwrap();
        assert!((0..50).all(|_| s.sample(&mut logits(), &[]) == 1));
        let mut s = Sampler::new(SamplingParams {
            temperature: 1.0,
            top_p: 0.5,
            ..SamplingParams::greedy()
        })
        .unwrap();
        assert!((0..200).all(|_| [1, 3].contains(&s.sample(&mut logits(), &[]))));
    }

    #[test]
    fn min_p_drops_unlikely_tokens() {
        let mut s = Sampler::new(SamplingParams {
            temperature: 1.0,
            min_p: 0.5,
            ..SamplingParams::greedy()
        })
        .unwrap();
        // exp(2-3) = 0.37 < 0.5: only the two tokens at logit 3 survive.
        assert!((0..200).all(|_| [1, 3].contains(&s.sample(&mut logits(), &[]))));
    }

    #[test]
    fn repetition_penalty_changes_the_greedy_pick() {
        let mut s = Sampler::new(SamplingParams {
            repeat_penalty: 2.0,
            ..SamplingParams::greedy()
        })
        .unwrap();
        assert_eq!(s.sample(&mut logits(), &[1, 3]), 2);
    }

    #[test]
    fn bad_parameters_are_refused() {
        assert!(Sampler::new(SamplingParams {
            top_p: 0.0,
            ..SamplingParams::greedy()
        })
        .is_err());
        assert!(Sampler::new(SamplingParams {
            temperature: -1.0,
            ..SamplingParams::greedy()
        })
        .is_err());
    }
}
