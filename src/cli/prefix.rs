//! `freeze-attn prefix`: process a text or a priming conversation once and save its attention
//! state (the seed's `process_prefix`).

use super::common::{ms, progress_printer, ModelArgs};
use anyhow::Context;
use clap::Args;
use freeze_attn::engine::state::StoredDType;
use freeze_attn::engine::{Message, DEFAULT_CHUNK};
use freeze_attn::{CancelToken, Observer, PrefixInput};
use serde_json::json;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct PrefixArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// A text file (a document, the start of a story).
    #[arg(long, conflicts_with = "chat_file")]
    pub text_file: Option<PathBuf>,
    /// A JSON file with a conversation: [{"role": "system"|"user"|"assistant", "content": "…"}, …].
    #[arg(long)]
    pub chat_file: Option<PathBuf>,
    /// Keep only the first N tokens.
    #[arg(long)]
    pub max_prefix_tokens: Option<usize>,
    /// Where to save the state.
    #[arg(long)]
    pub out: PathBuf,
    /// Stored dtype: f16, bf16, f32 or q8.
    #[arg(long, default_value = "f16")]
    pub dtype: String,
    #[arg(long, default_value_t = DEFAULT_CHUNK)]
    pub chunk: usize,
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: PrefixArgs) -> anyhow::Result<()> {
    let input = match (&a.text_file, &a.chat_file) {
        (Some(f), None) => PrefixInput::Text(freeze_attn::input::read_text_file(f)?),
        (None, Some(f)) => {
            let text = freeze_attn::input::read_text_file(f)?;
            let messages: Vec<Message> = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a JSON list of {{role, content}} messages", f.display()))?;
            PrefixInput::Chat(messages)
        }
        _ => anyhow::bail!("give --text-file FILE or --chat-file FILE"),
    };
    let dtype: StoredDType = a.dtype.parse()?;
    let t0 = Instant::now();
    let model = freeze_attn::open_model(&a.model.model, a.model.device()?)?;
    let load = t0.elapsed();
    let mut on_text = |_: &str| {};
    let mut on_progress = progress_printer(a.chunk);
    let mut obs = Observer {
        on_text: &mut on_text,
        on_progress: &mut on_progress,
        cancel: CancelToken::new(),
    };
    let r = freeze_attn::process_prefix(&model, &input, a.max_prefix_tokens, &a.out, dtype, a.chunk, &mut obs)?;
    if a.json {
        let v = json!({
            "out": r.saved.path,
            "id": r.saved.id,
            "tokens": r.tokens,
            "truncated_tokens": r.truncated,
            "dtype": r.saved.dtype,
            "bytes": r.saved.bytes,
            "timings": { "load_ms": ms(load), "prefill_ms": ms(r.prefill),
                         "prefill_tok_s": freeze_attn::engine::generate::per_second(r.tokens, r.prefill) },
        });
        println!("{}", serde_json::to_string(&v)?);
    } else {
        println!(
            "saved the state of {} tokens ({} bytes, {}) to {} in {:.0} ms{}",
            r.tokens,
            r.saved.bytes,
            r.saved.dtype,
            r.saved.path.display(),
            ms(r.prefill),
            if r.truncated > 0 {
                format!(" ({} tokens cut by --max-prefix-tokens)", r.truncated)
            } else {
                String::new()
            }
        );
    }
    Ok(())
}
