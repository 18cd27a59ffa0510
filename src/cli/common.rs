//! Flags shared by several subcommands.

use clap::Args;
use freeze_attn::engine::{DeviceChoice, GenerateParams, PrefillProgress, SamplingParams, DEFAULT_CHUNK};
use std::io::Write;

#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// A GGUF file, a Hugging Face model folder, an installed model (OWNER/NAME:QUANT, see
    /// `models list`), or `default`.
    #[arg(long, default_value = "default")]
    pub model: String,
    /// auto, cpu, cuda[:N] or metal[:N].
    #[arg(long, default_value = "auto")]
    pub device: String,
}

impl ModelArgs {
    pub fn device(&self) -> anyhow::Result<DeviceChoice> {
        Ok(self.device.parse::<DeviceChoice>()?)
    }
}

/// The sampling flags. Their defaults are [`GenerateParams::default`]'s, the one set the app and
/// the server use too.
#[derive(Args, Debug, Clone)]
pub struct SamplingArgs {
    /// Tokens to generate at most.
    #[arg(long, default_value_t = GenerateParams::default().max_tokens)]
    pub max_tokens: usize,
    /// 0 is greedy.
    #[arg(long, default_value_t = SamplingParams::default().temperature)]
    pub temperature: f32,
    #[arg(long, default_value_t = SamplingParams::default().top_p)]
    pub top_p: f32,
    /// 0 is off.
    #[arg(long, default_value_t = SamplingParams::default().top_k)]
    pub top_k: usize,
    /// 0 is off.
    #[arg(long, default_value_t = SamplingParams::default().min_p)]
    pub min_p: f32,
    /// 1 is off.
    #[arg(long, default_value_t = SamplingParams::default().repeat_penalty)]
    pub repeat_penalty: f32,
    /// How many recent tokens the repeat penalty looks at.
    #[arg(long, default_value_t = SamplingParams::default().repeat_last_n)]
    pub repeat_last_n: usize,
    #[arg(long, default_value_t = SamplingParams::default().seed)]
    pub seed: u64,
    /// Stop when this text appears (repeatable).
    #[arg(long = "stop")]
    pub stop: Vec<String>,
    /// Tokens per prefill chunk.
    #[arg(long, default_value_t = DEFAULT_CHUNK)]
    pub chunk: usize,
}

impl SamplingArgs {
    pub fn params(&self) -> GenerateParams {
        GenerateParams {
            max_tokens: self.max_tokens,
            sampling: SamplingParams {
                temperature: self.temperature,
                top_k: self.top_k,
                top_p: self.top_p,
                min_p: self.min_p,
                repeat_penalty: self.repeat_penalty,
                repeat_last_n: self.repeat_last_n,
                seed: self.seed,
            },
            stop_strings: self.stop.clone(),
            chunk: self.chunk,
            grammar: None,
            logprobs: None,
        }
    }
}

/// Reads `--prompt` or `--prompt-file`.
pub fn prompt_text(prompt: &Option<String>, file: &Option<std::path::PathBuf>) -> anyhow::Result<String> {
    match (prompt, file) {
        (Some(p), None) => Ok(p.clone()),
        (None, Some(f)) => Ok(freeze_attn::input::read_text_file(f)?),
        (Some(_), Some(_)) => anyhow::bail!("give --prompt or --prompt-file, not both"),
        (None, None) => anyhow::bail!("give --prompt TEXT or --prompt-file FILE"),
    }
}

/// Prints prefill progress to stderr for inputs longer than one chunk.
/// A small text file named on the command line (a chat template, a JSON schema), read up to
/// 1 MiB: real ones are a few kilobytes, and a wrong path to a large file is an error, not a
/// long read.
pub fn read_small_file(path: &std::path::Path, what: &str) -> anyhow::Result<String> {
    use std::io::Read;
    const MAX_BYTES: u64 = 1 << 20;
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_BYTES + 1).read_to_string(&mut text))
        .map_err(|e| anyhow::anyhow!("cannot read the {what} {}: {e}", path.display()))?;
    if text.len() as u64 > MAX_BYTES {
        anyhow::bail!("the {what} {} is over 1 MiB", path.display());
    }
    Ok(text)
}

pub fn progress_printer(chunk: usize) -> impl FnMut(PrefillProgress) {
    let start = std::time::Instant::now();
    move |p: PrefillProgress| {
        if p.total > chunk {
            let secs = start.elapsed().as_secs_f64();
            let eta = if p.done > 0 {
                secs / p.done as f64 * (p.total - p.done) as f64
            } else {
                0.0
            };
            eprint!(
                "\rprefill {}/{} tokens ({:.1}s, {:.1}s left)   ",
                p.done, p.total, secs, eta
            );
            if p.done == p.total {
                eprintln!();
            }
            let _ = std::io::stderr().flush();
        }
    }
}

/// Milliseconds, rounded to 0.01.
pub fn ms(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 100_000.0).round() / 100.0
}

/// A byte count for people: `98.4 MB`, `4.9 GB` (the engine's, which its errors use too).
pub use freeze_attn::engine::memory::human as human_bytes;
