//! `freeze-attn generate`.

use super::common::{ms, progress_printer, prompt_text, ModelArgs, SamplingArgs};
use clap::Args;
use freeze_attn::engine::generate::per_second;
use freeze_attn::{CancelToken, Observer, Prompt};
use serde_json::json;
use std::io::Write;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Render the prompt as a user turn with the model's chat template.
    #[arg(long)]
    pub chat: bool,
    /// System prompt (with --chat).
    #[arg(long, requires = "chat")]
    pub system: Option<String>,
    #[arg(long)]
    pub prompt: Option<String>,
    #[arg(long)]
    pub prompt_file: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Print one JSON object instead of streaming text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: GenerateArgs) -> anyhow::Result<()> {
    let text = prompt_text(&a.prompt, &a.prompt_file)?;
    let t0 = Instant::now();
    let model = freeze_attn::open_model(&a.model.model, a.model.device()?)?;
    let load = t0.elapsed();
    let prompt = if a.chat {
        Prompt::chat(a.system.as_deref(), &text)
    } else {
        Prompt::raw(text)
    };
    let params = a.sampling.params();
    let json_out = a.json;
    let mut on_text = |t: &str| {
        if !json_out {
            print!("{t}");
            let _ = std::io::stdout().flush();
        }
    };
    let mut on_progress = progress_printer(params.chunk);
    let mut obs = Observer {
        on_text: &mut on_text,
        on_progress: &mut on_progress,
        cancel: CancelToken::new(),
    };
    let out = freeze_attn::generate(&model, &prompt, &params, &mut obs)?;
    let g = &out.generation;
    if json_out {
        let v = json!({
            "model": model.info.name,
            "prompt_tokens": out.prompt_tokens,
            "tokens": g.tokens,
            "text": g.text,
            "finish": g.finish,
            "timings": {
                "load_ms": ms(load),
                "prefill_ms": ms(g.prefill),
                "decode_ms": ms(g.decode),
                "prefill_tok_s": per_second(out.prompt_tokens.len(), g.prefill),
                "decode_tok_s": per_second(g.tokens.len(), g.decode),
            }
        });
        println!("{}", serde_json::to_string(&v)?);
    } else {
        println!();
    }
    Ok(())
}
