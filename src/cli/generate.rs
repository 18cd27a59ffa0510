//! `freeze-attn generate`.

use super::common::{ms, progress_printer, prompt_text, read_small_file, ModelArgs, SamplingArgs};
use clap::Args;
use freeze_attn::engine::generate::per_second;
use freeze_attn::engine::state::StoredDType;
use freeze_attn::{CancelToken, Continuation, Observer, Prompt};
use serde_json::json;
use std::io::Write;
use std::path::PathBuf;
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
    /// Continue from a saved attention state (made by `prefix` or `--save-state`) instead of
    /// from scratch; the file is not modified.
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Save the grown state (prompt and reply) here; with --state only the new tokens are written.
    #[arg(long)]
    pub save_state: Option<PathBuf>,
    /// Stored dtype for --save-state: f16, bf16, f32 or q8.
    #[arg(long, default_value = "f16")]
    pub dtype: String,
    /// Print one JSON object instead of streaming text.
    #[arg(long)]
    pub json: bool,
    /// Write only a JSON object (constrained decoding, as the server's
    /// `response_format: {"type": "json_object"}`); say in the prompt what it should hold.
    #[arg(long, conflicts_with = "json_schema")]
    pub json_object: bool,
    /// Write only a JSON object this JSON Schema (a file) allows (as the server's
    /// `response_format: {"type": "json_schema"}`).
    #[arg(long, value_name = "FILE")]
    pub json_schema: Option<PathBuf>,
}

pub fn run(a: GenerateArgs) -> anyhow::Result<()> {
    let text = prompt_text(&a.prompt, &a.prompt_file)?;
    let dtype: StoredDType = a.dtype.parse()?;
    // Read before the model loads: a schema that cannot be followed fails at once.
    let schema_grammar = match &a.json_schema {
        None => None,
        Some(path) => {
            let text = read_small_file(path, "JSON schema")?;
            let schema: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| anyhow::anyhow!("the JSON schema {} is not JSON: {e}", path.display()))?;
            let grammar = freeze_attn::json_schema_grammar(&schema)
                .map_err(|e| anyhow::anyhow!("the JSON schema {}: {e}", path.display()))?;
            Some(grammar)
        }
    };
    let t0 = Instant::now();
    let model = freeze_attn::open_model(&a.model.model, a.model.device()?)?;
    let load = t0.elapsed();
    let mut params = a.sampling.params();
    if a.json_object {
        params.grammar = Some(freeze_attn::Grammar::JsonObject);
    }
    if schema_grammar.is_some() {
        params.grammar = schema_grammar;
    }
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
    if let (Some(from), Some(to)) = (&a.state, &a.save_state) {
        if std::fs::canonicalize(from)
            .ok()
            .is_some_and(|f| std::fs::canonicalize(to).ok() == Some(f))
        {
            anyhow::bail!(
                "--save-state {} is the state being continued: the new state would lose its parent; save to another file",
                to.display()
            );
        }
    }
    let (prompt_tokens, g, resume, reused, saved) = match &a.state {
        None => {
            let prompt = if a.chat {
                Prompt::chat(a.system.as_deref(), &text)
            } else {
                Prompt::raw(text)
            };
            let out = freeze_attn::generate(&model, &prompt, &params, &mut obs)?;
            let saved = match &a.save_state {
                Some(path) => {
                    let transcript = freeze_attn::generate::transcript_after(&model, &prompt, &out)?;
                    Some(freeze_attn::save_state(
                        &model,
                        &out.state,
                        path,
                        dtype,
                        None,
                        Some(&transcript),
                    )?)
                }
                None => None,
            };
            (out.prompt_tokens, out.generation, None, 0, saved)
        }
        Some(state_path) => {
            let cont = if a.chat {
                Continuation::ChatTurn {
                    system: a.system.clone(),
                    user: text,
                }
            } else {
                Continuation::Text(text)
            };
            let out = freeze_attn::generate_with_prefix(&model, state_path, &cont, &params, &mut obs)?;
            let saved = match &a.save_state {
                Some(path) => Some(freeze_attn::prefix::save_continuation(&model, &out, path, dtype)?),
                None => None,
            };
            (
                out.prompt_tokens,
                out.generation,
                Some(out.resume),
                out.reused_tokens,
                saved,
            )
        }
    };
    if json_out {
        let mut timings = json!({
            "load_ms": ms(load),
            "prefill_ms": ms(g.prefill),
            "decode_ms": ms(g.decode),
            "prefill_tok_s": per_second(prompt_tokens.len(), g.prefill),
            "decode_tok_s": per_second(g.tokens.len(), g.decode),
        });
        if let Some(r) = resume {
            timings["resume_ms"] = json!(ms(r));
        }
        let mut v = json!({
            "model": model.info.name,
            "device": model.info.device,
            "kernels": model.info.kernels,
            "prompt_tokens": prompt_tokens,
            "tokens": g.tokens,
            "text": g.text,
            "finish": g.finish,
            "timings": timings,
        });
        if a.state.is_some() {
            v["reused_tokens"] = json!(reused);
        }
        if let Some(s) = saved {
            v["saved"] = serde_json::to_value(s)?;
        }
        println!("{}", serde_json::to_string(&v)?);
    } else {
        println!();
        if let Some(s) = saved {
            eprintln!("saved {} tokens ({} bytes) to {}", s.tokens, s.bytes, s.path.display());
        }
    }
    Ok(())
}
