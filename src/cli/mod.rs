//! CLI argument parsing and dispatch.

mod bench;
mod chat;
mod common;
mod generate;
mod prefix;
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
    /// Download the default model (SmolLM2-135M-Instruct, Q4_1 GGUF) if missing and print its path.
    FetchModel,
}

pub fn run() -> i32 {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Generate(a) => generate::run(a),
        Command::Prefix(a) => prefix::run(a),
        Command::States(a) => states::run(a),
        Command::Chat(a) => chat::run(a),
        Command::Bench(a) => bench::run(a),
        Command::BenchResume(a) => bench::run_resume(a),
        Command::FetchModel => freeze_attn::default_model::default_model_path()
            .map(|p| println!("{}", p.display()))
            .map_err(anyhow::Error::from),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            let msg: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            eprintln!("freeze-attn: error: {}", msg.join(": "));
            1
        }
    }
}
