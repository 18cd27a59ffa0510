//! Measurements: model speed ([`bench`]) and cached-versus-uncached resumption
//! ([`run_generation_test`], the seed's function of that name).

use crate::error::{Error, Result};
use crate::state::{load_state, save_state};
use freeze_attn_engine::sampling::{Sampler, SamplingParams};
use freeze_attn_engine::state::StoredDType;
use freeze_attn_engine::{KvState, LoadedModel, Tensor, DEFAULT_CHUNK};
use serde::Serialize;
use std::path::Path;
use std::time::{Duration, Instant};

const SAMPLE: &str = include_str!("../assets/documents/printing-press.md");

/// Exactly `n` tokens of real English text (the sample document, repeated as needed), with BOS
/// first if the model wants one.
pub fn sample_tokens(model: &LoadedModel, n: usize) -> Result<Vec<u32>> {
    let one = model.tokenizer.encode(SAMPLE)?;
    let mut tokens = model.tokenizer.encode_prompt("")?;
    while tokens.len() < n {
        tokens.extend_from_slice(&one);
    }
    tokens.truncate(n);
    Ok(tokens)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn rate(n: usize, d: Duration) -> f64 {
    if d.is_zero() {
        0.0
    } else {
        n as f64 / d.as_secs_f64()
    }
}

/// Peak resident memory of this process in bytes (Linux `VmHWM`), if known.
pub fn peak_memory() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Waits for the device to finish the work queued so far: a GPU runs it asynchronously, so a
/// timer read without it would stop before the work did. A no-op on the CPU.
fn sync(model: &LoadedModel) -> Result<()> {
    model
        .model
        .device()
        .synchronize()
        .map_err(freeze_attn_engine::EngineError::from)?;
    Ok(())
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> freeze_attn_engine::Result<f32> {
    Ok((a - b)?
        .abs()?
        .flatten_all()?
        .max(0)?
        .to_dtype(freeze_attn_engine::DType::F32)?
        .to_scalar::<f32>()?)
}

/// Greedy decoding of `n` tokens after `logits` (picked as generation picks them: on the
/// logits' device); returns the tokens and the time.
fn decode(model: &LoadedModel, state: &mut KvState, mut logits: Tensor, n: usize) -> Result<(Vec<u32>, Duration)> {
    let mut greedy = Sampler::new(SamplingParams::greedy())?;
    let t0 = Instant::now();
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let next = greedy.sample_tensor(&logits, state.tokens())?;
        out.push(next);
        logits = model.model.forward(&[next], state, false)?;
    }
    Ok((out, t0.elapsed()))
}

#[derive(Debug, Clone, Serialize)]
pub struct SpeedReport {
    pub model: String,
    pub weight_type: String,
    pub device: String,
    /// The kernels that ran (`avx512`, `avx2`, `portable`, `generic`, `cuda`, `metal`).
    pub kernels: String,
    pub threads: usize,
    pub prompt_tokens: usize,
    pub gen_tokens: usize,
    pub prefill_ms: f64,
    pub prefill_tok_s: f64,
    pub decode_pos0_tok_s: f64,
    pub decode_after_prompt_tok_s: f64,
    pub peak_memory_bytes: Option<u64>,
}

/// Prefill speed on `prompt_tokens` tokens and decode speed at position 0 and after the prompt.
pub fn bench(model: &LoadedModel, prompt_tokens: usize, gen_tokens: usize) -> Result<SpeedReport> {
    let prompt = sample_tokens(model, prompt_tokens.max(1))?;
    // Decode from position 0: one token in, then `gen_tokens` out.
    let mut s0 = model.model.new_state();
    let l0 = model.model.forward(&prompt[..1], &mut s0, false)?;
    let (_, d0) = decode(model, &mut s0, l0, gen_tokens)?;
    drop(s0);
    let mut state = model.model.new_state();
    let t0 = Instant::now();
    let logits = model.model.prefill(&prompt, &mut state, DEFAULT_CHUNK, &mut |_| true)?;
    sync(model)?;
    let prefill = t0.elapsed();
    let (_, d1) = decode(model, &mut state, logits, gen_tokens)?;
    Ok(SpeedReport {
        model: model.info.name.clone(),
        weight_type: model.info.weight_type.clone(),
        device: model.info.device.clone(),
        kernels: model.info.kernels.name().into(),
        threads: rayon_threads(),
        prompt_tokens: prompt.len(),
        gen_tokens,
        prefill_ms: ms(prefill),
        prefill_tok_s: rate(prompt.len(), prefill),
        decode_pos0_tok_s: rate(gen_tokens, d0),
        decode_after_prompt_tok_s: rate(gen_tokens, d1),
        peak_memory_bytes: peak_memory(),
    })
}

fn rayon_threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(
        std::env::var("RAYON_NUM_THREADS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(usize::MAX),
    )
}

#[derive(Debug, Clone, Serialize)]
pub struct ResumeReport {
    pub model: String,
    pub prefix_tokens: usize,
    pub prompt_tokens: usize,
    pub gen_tokens: usize,
    pub dtype: StoredDType,
    pub state_bytes: u64,
    pub bytes_per_token: f64,
    pub prefix_prefill_ms: f64,
    pub save_ms: f64,
    pub load_ms: f64,
    pub load_gb_s: f64,
    /// A plain sequential read of the same file into a scratch buffer (what `cat FILE >
    /// /dev/null` does), timed right after the load: the ceiling for the load throughput.
    pub plain_read_ms: f64,
    pub plain_read_gb_s: f64,
    pub uncached_first_token_ms: f64,
    pub cached_first_token_ms: f64,
    pub uncached_total_ms: f64,
    pub cached_total_ms: f64,
    pub first_token_speedup: f64,
    pub total_speedup: f64,
    /// Whether the cached and uncached runs produced the same greedy tokens.
    pub identical: bool,
    /// Largest difference between the first token's logits, uncached and cached (0 for an exact
    /// resume; what a lossy stored dtype such as q8 costs otherwise).
    pub largest_logit_diff: f32,
}

/// Reads `path` start to end in 128 KiB pieces and discards them, as `cat FILE > /dev/null` does.
fn plain_read(path: &Path) -> Result<Duration> {
    use std::io::Read;
    let t = Instant::now();
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut buf = vec![0u8; 128 << 10];
    while f.read(&mut buf).map_err(|e| Error::io(path, e))? > 0 {}
    Ok(t.elapsed())
}

/// The seed's `run_generation_test`: time to first token and total time with the prefix
/// re-processed versus thawed from disk, and whether both produce the same tokens.
pub fn run_generation_test(
    model: &LoadedModel,
    prefix_tokens: usize,
    gen_tokens: usize,
    dtype: StoredDType,
    scratch: &Path,
) -> Result<ResumeReport> {
    if prefix_tokens == 0 {
        return Err(Error::Invalid("--prefix-tokens must be at least 1".into()));
    }
    let prefix = sample_tokens(model, prefix_tokens)?;
    let prompt = model
        .tokenizer
        .encode("\n\nQuestion: What is this text about?\nAnswer:")?;
    let mut full = prefix.clone();
    full.extend(&prompt);

    // Uncached: everything from scratch.
    let t0 = Instant::now();
    let mut state = model.model.new_state();
    let logits = model.model.prefill(&full, &mut state, DEFAULT_CHUNK, &mut |_| true)?;
    sync(model)?;
    let first_uncached = t0.elapsed();
    let uncached_logits = logits.clone();
    let (uncached, _) = decode(model, &mut state, logits, gen_tokens)?;
    let total_uncached = t0.elapsed();
    drop(state);

    // The prefix, processed once and saved.
    let mut state = model.model.new_state();
    let t1 = Instant::now();
    model.model.prefill(&prefix, &mut state, DEFAULT_CHUNK, &mut |_| true)?;
    sync(model)?;
    let prefill = t1.elapsed();
    std::fs::create_dir_all(scratch).map_err(|e| Error::io(scratch, e))?;
    let path = scratch.join(format!("bench-{}-{prefix_tokens}.state", std::process::id()));
    let t2 = Instant::now();
    let saved = save_state(model, &state, &path, dtype, None, None)?;
    let save = t2.elapsed();
    drop(state);

    // Cached: thaw, then only the prompt.
    let t3 = Instant::now();
    let loaded = load_state(model, &path)?;
    let load = loaded.load_time;
    let mut state = loaded.state;
    let logits = model.model.prefill(&prompt, &mut state, DEFAULT_CHUNK, &mut |_| true)?;
    sync(model)?;
    let first_cached = t3.elapsed();
    let largest_logit_diff = max_abs_diff(&uncached_logits, &logits)?;
    let (cached, _) = decode(model, &mut state, logits, gen_tokens)?;
    let total_cached = t3.elapsed();
    let plain_read = plain_read(&path)?;
    let _ = std::fs::remove_file(&path);

    Ok(ResumeReport {
        model: model.info.name.clone(),
        prefix_tokens,
        prompt_tokens: prompt.len(),
        gen_tokens,
        dtype,
        state_bytes: saved.bytes,
        bytes_per_token: saved.bytes as f64 / prefix_tokens as f64,
        prefix_prefill_ms: ms(prefill),
        save_ms: ms(save),
        load_ms: ms(load),
        load_gb_s: saved.bytes as f64 / load.as_secs_f64().max(1e-9) / 1e9,
        plain_read_ms: ms(plain_read),
        plain_read_gb_s: saved.bytes as f64 / plain_read.as_secs_f64().max(1e-9) / 1e9,
        uncached_first_token_ms: ms(first_uncached),
        cached_first_token_ms: ms(first_cached),
        uncached_total_ms: ms(total_uncached),
        cached_total_ms: ms(total_cached),
        first_token_speedup: first_uncached.as_secs_f64() / first_cached.as_secs_f64().max(1e-9),
        total_speedup: total_uncached.as_secs_f64() / total_cached.as_secs_f64().max(1e-9),
        identical: uncached == cached,
        largest_logit_diff,
    })
}
