//! `freeze-attn chat`: an interactive terminal chat over the live state of a [`Session`].
//! Lines are user turns; `/freeze NAME`, `/fork NAME`, `/thaw NODE`, `/tree`, `/help`, `/quit`.

use super::common::{ModelArgs, SamplingArgs};
use super::states::resolve;
use clap::Args;
use freeze_attn::engine::Event;
use freeze_attn::session::Session;
use freeze_attn_library::NodeKind;
use std::io::{BufRead, Write};

#[derive(Args, Debug)]
pub struct ChatArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Start from this node (id or name) instead of an empty chat.
    #[arg(long)]
    pub state: Option<String>,
    /// System prompt for a new chat.
    #[arg(long)]
    pub system: Option<String>,
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

const HELP: &str = "commands: /freeze NAME (save the current state as a node) · /fork NAME (branch from the current node) · /thaw NODE · /tree · /new · /quit";

pub fn run(a: ChatArgs) -> anyhow::Result<()> {
    let model = freeze_attn::open_model(&a.model.model, a.model.device()?)?;
    let lib = freeze_attn::tree::open_library()?;
    let mut s = Session::new(model, lib)?;
    let params = a.sampling.params();
    match &a.state {
        Some(spec) => {
            let id = resolve(&s.library, spec)?;
            let r = s.thaw(id)?;
            eprintln!(
                "thawed node {} in {:.0} ms: {} tokens reused, none re-processed",
                r.node, r.millis, r.reused_tokens
            );
        }
        None => {
            s.new_session(NodeKind::Chat, a.system.as_deref());
        }
    }
    eprintln!("{HELP}");
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    loop {
        eprint!("> ");
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            break;
        }
        let line = line.trim_end_matches(['\n', '\r']);
        if line.trim().is_empty() {
            continue;
        }
        let result: anyhow::Result<()> = (|| {
            if let Some(cmd) = line.strip_prefix('/') {
                let (verb, arg) = cmd.split_once(' ').map(|(v, a)| (v, a.trim())).unwrap_or((cmd, ""));
                match verb {
                    "quit" | "exit" => return Err(anyhow::anyhow!("quit")),
                    "help" => println!("{HELP}"),
                    "tree" => {
                        for n in freeze_attn::tree::list_tree(&s.library, Some(&s.model))? {
                            println!(
                                "{:>5}  {}{} [{}] {} tokens",
                                n.id,
                                "  ".repeat(n.depth),
                                n.name,
                                n.kind,
                                n.token_count
                            );
                        }
                    }
                    "new" => {
                        s.new_session(NodeKind::Chat, a.system.as_deref());
                        println!("new chat");
                    }
                    "freeze" if !arg.is_empty() => {
                        let n = s.freeze(arg, NodeKind::Chat)?;
                        println!("frozen as node {} `{}` ({} tokens)", n.id, n.name, n.token_count);
                    }
                    "fork" if !arg.is_empty() => {
                        let Some(node) = s.live().node else {
                            anyhow::bail!("nothing to fork: /freeze the chat first");
                        };
                        let r = s.fork(freeze_attn_library::NodeId(node), None, arg)?;
                        println!("forked: now on node {} ({} tokens)", r.node, r.reused_tokens);
                    }
                    "thaw" if !arg.is_empty() => {
                        let id = resolve(&s.library, arg)?;
                        let r = s.thaw(id)?;
                        println!(
                            "thawed node {} in {:.0} ms ({} tokens, {})",
                            r.node,
                            r.millis,
                            r.reused_tokens,
                            if r.from_memory { "from memory" } else { "from disk" }
                        );
                    }
                    _ => println!("{HELP}"),
                }
                return Ok(());
            }
            let mut on_event = |e: Event<'_>| {
                if let Event::Text(t) = e {
                    print!("{t}");
                    let _ = out.flush();
                }
            };
            let r = s.chat_send(line, &params, &mut on_event)?;
            println!();
            eprintln!(
                "[{} tokens in, {} out, {:.0} ms]",
                r.prompt_tokens,
                r.tokens,
                r.prefill_ms + r.decode_ms
            );
            Ok(())
        })();
        match result {
            Ok(()) => {}
            Err(e) if e.to_string() == "quit" => break,
            Err(e) => eprintln!("freeze-attn: error: {e:#}"),
        }
    }
    Ok(())
}
