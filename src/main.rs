//! `freeze-attn`: the command-line interface. Each subcommand parses its flags, calls the
//! `freeze_attn` API and prints the result.

fn main() {
    std::process::exit(freeze_attn_cli::run());
}

#[path = "cli/mod.rs"]
mod freeze_attn_cli;
