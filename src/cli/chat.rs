//! `freeze-attn chat`: an interactive terminal chat over the live state of the API's
//! [`SessionHost`] (the same engine thread the app drives).
//! Lines are user turns; `/freeze NAME`, `/fork NAME`, `/thaw NODE`, `/tree`, `/help`, `/quit`.

use super::common::{ModelArgs, SamplingArgs};
use clap::Args;
use freeze_attn::engine::Event;
use freeze_attn::{tree, NodeId, NodeKind, SessionHost};
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
    let host = SessionHost::open(a.model.model.clone(), a.model.device()?);
    let params = a.sampling.params();
    params.validate()?;
    host.run_blocking(move |s| {
        s.params = params;
        Ok(())
    })?;
    let system = a.system.clone();
    match a.state.clone() {
        Some(spec) => {
            let r = host.run_blocking(move |s| {
                let id = tree::resolve(&s.library, &spec)?;
                s.thaw(id)
            })?;
            eprintln!(
                "thawed node {} in {:.0} ms: {} tokens reused, none re-processed",
                r.node, r.millis, r.reused_tokens
            );
        }
        None => {
            host.run_blocking(move |s| Ok(s.start_live(NodeKind::Chat, system.as_deref())))?;
        }
    }
    eprintln!("{HELP}");
    let stdin = std::io::stdin();
    loop {
        eprint!("> ");
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            break;
        }
        let line = line.trim_end_matches(['\n', '\r']).to_string();
        if line.trim().is_empty() {
            continue;
        }
        if let Some(cmd) = line.strip_prefix('/') {
            let (verb, arg) = cmd
                .split_once(' ')
                .map(|(v, a)| (v, a.trim().to_string()))
                .unwrap_or((cmd, String::new()));
            if matches!(verb, "quit" | "exit") {
                break;
            }
            if let Err(e) = command(&host, verb, arg, a.system.clone()) {
                eprintln!("freeze-attn: error: {e:#}");
            }
            continue;
        }
        let sent = host.run_blocking(move |s| {
            let mut out = std::io::stdout();
            let mut on_event = |e: Event<'_>| {
                if let Event::Text(t) = e {
                    print!("{t}");
                    let _ = out.flush();
                }
            };
            let params = s.params.clone();
            s.chat_send(&line, &params, &mut on_event)
        });
        match sent {
            Ok(r) => {
                println!();
                eprintln!(
                    "[{} tokens in, {} out, {:.0} ms]",
                    r.prompt_tokens,
                    r.tokens,
                    r.prefill_ms + r.decode_ms
                );
            }
            Err(e) => eprintln!("freeze-attn: error: {e}"),
        }
    }
    Ok(())
}

/// One `/command` line.
fn command(host: &SessionHost, verb: &str, arg: String, system: Option<String>) -> anyhow::Result<()> {
    match verb {
        "tree" => {
            let nodes = host.run_blocking(|s| tree::list_tree(&s.library, Some(&s.model)))?;
            for n in nodes {
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
            host.run_blocking(move |s| Ok(s.start_live(NodeKind::Chat, system.as_deref())))?;
            println!("new chat");
        }
        "freeze" if !arg.is_empty() => {
            let n = host.run_blocking(move |s| s.freeze(&arg, NodeKind::Chat))?;
            println!("frozen as node {} `{}` ({} tokens)", n.id, n.name, n.token_count);
        }
        "fork" if !arg.is_empty() => {
            let r = host.run_blocking(move |s| {
                let Some(node) = s.live().node else {
                    return Err(freeze_attn::Error::Invalid(
                        "nothing to fork: /freeze the chat first".into(),
                    ));
                };
                s.fork(NodeId(node), None, &arg)
            })?;
            println!("forked: now on node {} ({} tokens)", r.node, r.reused_tokens);
        }
        "thaw" if !arg.is_empty() => {
            let r = host.run_blocking(move |s| {
                let id = tree::resolve(&s.library, &arg)?;
                s.thaw(id)
            })?;
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
    Ok(())
}
