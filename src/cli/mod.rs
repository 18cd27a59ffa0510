//! CLI argument parsing and dispatch.

mod bench;
mod chat;
mod common;
mod generate;
mod models;
mod prefix;
mod serve;
mod states;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "freeze-attn",
    version,
    about = "Freeze, fork and resume the attention state of a local LLaMA model"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate a continuation of a prompt (raw text, or a chat turn with --chat).
    Generate(generate::GenerateArgs),
    /// Process a text or a priming conversation once and save its attention state.
    Prefix(prefix::PrefixArgs),
    /// Measure load time, prefill and decode speed, peak memory.
    Bench(bench::BenchArgs),
    /// Compare time to first token with the prefix re-processed versus thawed from disk.
    BenchResume(bench::BenchResumeArgs),
    /// The library of saved states: list, tree, show, fork, rename, tag, rm, export, import, gc, verify.
    States(states::StatesArgs),
    /// An interactive chat in the terminal that can /freeze and /fork its state.
    Chat(chat::ChatArgs),
    /// An OpenAI-compatible HTTP server whose prompt cache is the state tree (docs/api.md).
    Serve(serve::ServeArgs),
    /// Models from the Hugging Face Hub: pull, list, info, rm.
    Models(models::ModelsArgs),
    /// Download the default model (SmolLM2-135M-Instruct, Q4_1 GGUF) if missing and print its path.
    FetchModel,
}

pub fn run() -> i32 {
    let cli = Cli::parse();
    freeze_attn::logging::init_from_env();
    let result = match cli.command {
        Command::Generate(a) => generate::run(a),
        Command::Prefix(a) => prefix::run(a),
        Command::States(a) => states::run(a),
        Command::Chat(a) => chat::run(a),
        Command::Serve(a) => serve::run(a),
        Command::Models(a) => models::run(a),
        Command::Bench(a) => bench::run(a),
        Command::BenchResume(a) => bench::run_resume(a),
        Command::FetchModel => freeze_attn::default_model::default_model_path()
            .map(|p| println!("{}", p.display()))
            .map_err(anyhow::Error::from),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("freeze-attn: error: {}", one_line(&e));
            exit_code(&e)
        }
    }
}

/// The error and its causes as one line: a cause whose text an outer message already includes
/// is not repeated (an I/O error's message quotes its OS error, which is also its source), and
/// line breaks inside a message (SQLite quotes whole schema statements) become spaces. At most
/// 600 characters.
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    let mut out = line.split_whitespace().collect::<Vec<_>>().join(" ");
    if out.chars().count() > 600 {
        out = out.chars().take(599).collect::<String>() + "…";
    }
    out
}

/// The exit status of a failure, by the API error's code (README, "Exit codes"): scripts can
/// tell a missing node from a damaged state file or another model's state without parsing text.
fn exit_code(e: &anyhow::Error) -> i32 {
    let code = e.chain().find_map(|c| {
        c.downcast_ref::<freeze_attn::Error>().map(|e| e.code()).or_else(|| {
            c.downcast_ref::<freeze_attn::engine::EngineError>()
                .map(|e| freeze_attn::Error::engine_code(e))
        })
    });
    match code.unwrap_or("") {
        "node_not_found" | "ambiguous_name" => 3,
        "state_model_mismatch" | "state_shape" => 4,
        "not_a_state_file"
        | "state_version"
        | "state_corrupted"
        | "state_dtype"
        | "state_checksum"
        | "state_missing_parent"
        | "state_broken_chain" => 5,
        "not_a_model"
        | "corrupted_file"
        | "unsupported_architecture"
        | "unsupported_tensor_type"
        | "bad_model"
        | "vocab_mismatch"
        | "tokenizer"
        | "chat_template" => 6,
        _ => 1,
    }
}
