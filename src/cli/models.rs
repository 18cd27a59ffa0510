//! `freeze-attn models`: pull, list, info and rm models from the Hugging Face Hub.

use super::common::human_bytes;
use clap::{Args, Subcommand};
use freeze_attn::models::{self, InstalledModel, PullCancel, PullOptions, PullProgress};
use std::io::{IsTerminal, Write};
use std::time::Instant;

#[derive(Args, Debug)]
pub struct ModelsArgs {
    #[command(subcommand)]
    command: ModelsCommand,
}

#[derive(Subcommand, Debug)]
enum ModelsCommand {
    /// Download a model: OWNER/NAME:QUANT (e.g. bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M),
    /// OWNER/NAME:FILE, or OWNER/NAME (its only GGUF, or its safetensors model). An interrupted
    /// download resumes. HF_TOKEN for gated models, HF_ENDPOINT for another hub. A file the
    /// catalogue lists must also be the catalogue's (size and SHA-256).
    Pull {
        name: String,
        /// Check a catalogue file against the Hub's SHA-256 only (its publisher replaced it
        /// after this version's catalogue was written).
        #[arg(long)]
        trust_hub: bool,
        #[arg(long)]
        json: bool,
    },
    /// The installed models: name, size, weight type, architecture, context, states.
    List {
        #[arg(long)]
        json: bool,
    },
    /// One installed model in detail (files, SHA-256, revision, path).
    Info {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Remove an installed model's files (its saved states stay in the library).
    Rm { name: String },
    /// Recommended models (Llama 3.2 1B/3B, Llama 3.1 8B), with whether each fits this
    /// machine's memory at a context length.
    Catalogue {
        /// The context length to plan for (tokens of K/V kept in memory).
        #[arg(long, default_value_t = 8192)]
        context: u64,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(a: ModelsArgs) -> anyhow::Result<()> {
    match a.command {
        ModelsCommand::Pull { name, trust_hub, json } => {
            let m = pull_with_progress(&name, PullOptions { trust_hub })?;
            if json {
                println!("{}", serde_json::to_string(&m)?);
            } else {
                println!("{}  {}  {}", m.name, human_bytes(m.bytes), m.path.display());
            }
        }
        ModelsCommand::List { json } => {
            let all = models::list()?;
            if json {
                println!("{}", serde_json::to_string(&all)?);
            } else if all.is_empty() {
                println!("no models installed: `freeze-attn models pull OWNER/NAME:QUANT`");
            } else {
                for m in &all {
                    println!("{}", line(m));
                }
            }
        }
        ModelsCommand::Info { name, json } => {
            let m = models::info(&name)?;
            if json {
                println!("{}", serde_json::to_string(&m)?);
            } else {
                println!("{}", line(&m));
                println!("  path      {}", m.path.display());
                println!("  revision  {}", m.revision);
                for f in &m.sha256 {
                    println!(
                        "  file      {}  sha256 {}",
                        f.file,
                        f.sha256.as_deref().unwrap_or("(none from the hub)")
                    );
                }
            }
        }
        ModelsCommand::Catalogue { context, json } => {
            let all = models::catalogue(context)?;
            if json {
                println!("{}", serde_json::to_string(&all)?);
            } else {
                for e in &all {
                    let fit = match e.fits {
                        Some(true) => format!(
                            "fits: needs {} of {}",
                            human_bytes(e.needs_bytes),
                            human_bytes(e.memory_bytes.unwrap_or(0))
                        ),
                        Some(false) => format!(
                            "too large: needs {} of {}",
                            human_bytes(e.needs_bytes),
                            human_bytes(e.memory_bytes.unwrap_or(0))
                        ),
                        None => format!("needs {}", human_bytes(e.needs_bytes)),
                    };
                    let gpu = match (e.fits_gpu, e.gpu_memory_bytes) {
                        (Some(true), Some(g)) => format!("; the GPU's {} too", human_bytes(g)),
                        (Some(false), Some(g)) => format!("; too large for the GPU's {}", human_bytes(g)),
                        _ => String::new(),
                    };
                    println!(
                        "{:<52} {:>8}  {}{}{}{}",
                        e.name,
                        human_bytes(e.bytes),
                        fit,
                        gpu,
                        if e.recommended { "  recommended" } else { "" },
                        if e.installed { "  installed" } else { "" }
                    );
                }
                println!("(at {context} tokens of context; `freeze-attn models pull NAME` downloads one)");
            }
        }
        ModelsCommand::Rm { name } => {
            let m = models::remove(&name)?;
            let states = match m.states {
                0 => String::new(),
                n => format!("; its {n} saved state(s) stay in the library and thaw again once it is pulled again"),
            };
            println!("removed {} ({}){states}", m.name, human_bytes(m.bytes));
        }
    }
    Ok(())
}

fn line(m: &InstalledModel) -> String {
    format!(
        "{:<56} {:>9}  {:<8} {:<8} ctx {:<7} {} states",
        m.name,
        human_bytes(m.bytes),
        m.weight_type.as_deref().unwrap_or("?"),
        m.architecture.as_deref().unwrap_or("?"),
        m.context_length.map_or("?".into(), |c| c.to_string()),
        m.states
    )
}

/// Pulls with a progress line on a terminal: bytes, rate and time left. Ctrl-C stops it; the
/// same command resumes.
fn pull_with_progress(name: &str, options: PullOptions) -> anyhow::Result<InstalledModel> {
    let cancel = PullCancel::default();
    let tty = std::io::stderr().is_terminal();
    let start = Instant::now();
    let mut shown = false;
    let mut report = |p: PullProgress| {
        if !tty || p.total_bytes == 0 {
            return;
        }
        let new = p.done_bytes.saturating_sub(p.resumed_bytes) as f64;
        let secs = start.elapsed().as_secs_f64().max(0.001);
        let rate = new / secs;
        let left = if rate > 0.0 {
            let s = (p.total_bytes.saturating_sub(p.done_bytes)) as f64 / rate;
            format!("{}m{:02}s left", (s / 60.0) as u64, (s % 60.0) as u64)
        } else {
            "…".into()
        };
        shown = true;
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\rdownloading {name}: {} / {} ({}%), {}/s, {left}   ",
            human_bytes(p.done_bytes),
            human_bytes(p.total_bytes),
            p.done_bytes * 100 / p.total_bytes.max(1),
            human_bytes(rate as u64)
        );
        let _ = err.flush();
    };
    let r = models::pull(name, options, &mut report, &cancel);
    if shown {
        eprintln!();
    }
    match r {
        Err(e) if e.code() == "catalogue_mismatch" => Err(anyhow::anyhow!(
            "{e}. To install the Hub's file anyway: freeze-attn models pull {name} --trust-hub"
        )),
        r => Ok(r?),
    }
}
