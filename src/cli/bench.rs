//! `freeze-attn bench` (model speed) and `freeze-attn bench-resume` (the seed's
//! `run_generation_test`: cached versus uncached).

use super::common::{ms, ModelArgs};
use clap::Args;
use freeze_attn::engine::state::StoredDType;
use serde_json::json;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[arg(long, default_value_t = 512)]
    pub prompt_tokens: usize,
    #[arg(long, default_value_t = 64)]
    pub gen_tokens: usize,
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: BenchArgs) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let model = freeze_attn::open_model(&a.model.model, a.model.device()?)?;
    let load = t0.elapsed();
    let r = freeze_attn::bench(&model, a.prompt_tokens, a.gen_tokens)?;
    if a.json {
        let mut v = serde_json::to_value(&r)?;
        v["load_ms"] = json!(ms(load));
        println!("{}", serde_json::to_string(&v)?);
    } else {
        println!(
            "model            {} ({}, {}, {} kernels)",
            r.model, r.weight_type, r.device, r.kernels
        );
        println!("load             {:.0} ms", ms(load));
        println!(
            "prefill          {} tokens in {:.0} ms = {:.1} tok/s",
            r.prompt_tokens, r.prefill_ms, r.prefill_tok_s
        );
        println!("decode @ pos 0   {:.1} tok/s", r.decode_pos0_tok_s);
        println!(
            "decode @ pos {:<4}{:.1} tok/s",
            r.prompt_tokens, r.decode_after_prompt_tok_s
        );
        if let Some(m) = r.peak_memory_bytes {
            println!("peak memory      {:.1} MiB", m as f64 / 1048576.0);
        }
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct BenchResumeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[arg(long, default_value_t = 2048)]
    pub prefix_tokens: usize,
    #[arg(long, default_value_t = 16)]
    pub gen_tokens: usize,
    /// Stored dtype of the state: f16, bf16, f32 or q8.
    #[arg(long, default_value = "f16")]
    pub dtype: String,
    #[arg(long)]
    pub json: bool,
}

pub fn run_resume(a: BenchResumeArgs) -> anyhow::Result<()> {
    let model = freeze_attn::open_model(&a.model.model, a.model.device()?)?;
    let dtype: StoredDType = a.dtype.parse()?;
    let scratch = std::env::temp_dir().join("freeze-attn-bench");
    let r = freeze_attn::run_generation_test(&model, a.prefix_tokens, a.gen_tokens, dtype, &scratch)?;
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!(
            "{} — prefix {} tokens, prompt {} tokens, {} generated, state {} ({} bytes, {:.0} B/token)",
            r.model, r.prefix_tokens, r.prompt_tokens, r.gen_tokens, r.dtype, r.state_bytes, r.bytes_per_token
        );
        println!("{:<22}{:>14}{:>14}{:>10}", "", "uncached", "cached", "speed-up");
        println!(
            "{:<22}{:>11.1} ms{:>11.1} ms{:>9.1}×",
            "time to first token", r.uncached_first_token_ms, r.cached_first_token_ms, r.first_token_speedup
        );
        println!(
            "{:<22}{:>11.1} ms{:>11.1} ms{:>9.1}×",
            "total", r.uncached_total_ms, r.cached_total_ms, r.total_speedup
        );
        println!(
            "prefix prefill {:.1} ms · save {:.1} ms · load {:.1} ms ({:.2} GB/s; plain read of the file {:.1} ms, {:.2} GB/s) · same tokens: {} · largest logit difference {}",
            r.prefix_prefill_ms,
            r.save_ms,
            r.load_ms,
            r.load_gb_s,
            r.plain_read_ms,
            r.plain_read_gb_s,
            if r.identical { "yes" } else { "NO" },
            r.largest_logit_diff
        );
    }
    Ok(())
}
