//! `freeze-attn states …`: the library of saved states from the terminal.

use super::common::{human_bytes, ModelArgs};
use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use freeze_attn::fork::ForkPoint;
use freeze_attn::tree::{self, NodeView};
use freeze_attn::DeleteMode;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct StatesArgs {
    #[command(subcommand)]
    pub command: StatesCommand,
}

#[derive(Subcommand, Debug)]
pub enum StatesCommand {
    /// Every node, one line each.
    List {
        #[arg(long)]
        kind: Option<String>,
        #[arg(long)]
        tag: Option<String>,
        /// Only nodes whose name, tags, notes or transcript contain this.
        #[arg(long)]
        search: Option<String>,
        /// Include the cache nodes `serve` keeps of recent requests (hidden otherwise).
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// The tree, indented.
    Tree {
        #[arg(long)]
        json: bool,
    },
    /// One node with its notes and transcript.
    Show {
        node: String,
        #[arg(long)]
        json: bool,
    },
    /// A new child of a node (nothing is copied); optionally cut inside its transcript.
    Fork {
        node: String,
        #[arg(long)]
        name: String,
        /// Keep messages up to this index (0-based); for a text, use 0 with --at-char.
        #[arg(long)]
        at_message: Option<usize>,
        /// Cut inside that message at this byte offset.
        #[arg(long, requires = "at_message")]
        at_char: Option<usize>,
        #[command(flatten)]
        model: ModelArgs,
        #[arg(long)]
        json: bool,
    },
    Rename {
        node: String,
        name: String,
    },
    /// Set a node's notes.
    Annotate {
        node: String,
        notes: String,
    },
    /// Add a tag (or remove it with --remove).
    Tag {
        node: String,
        tag: String,
        #[arg(long)]
        remove: bool,
    },
    Pin {
        node: String,
        #[arg(long)]
        off: bool,
    },
    /// Move a node under another (or to the top with --top).
    Move {
        node: String,
        #[arg(long, conflicts_with = "top")]
        parent: Option<String>,
        #[arg(long)]
        top: bool,
    },
    /// Delete a node; its children move up to its parent unless --subtree deletes them too.
    Rm {
        node: String,
        #[arg(long)]
        subtree: bool,
    },
    /// Write a node, its transcript and its segments to one bundle file.
    Export {
        node: String,
        out: PathBuf,
    },
    /// A node's conversation or text as Markdown, to read or share (to stdout, or --out FILE).
    Markdown {
        node: String,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Import a bundle as a new node (checked completely before anything is written).
    Import {
        file: PathBuf,
        #[arg(long)]
        parent: Option<String>,
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        model: ModelArgs,
        #[arg(long)]
        json: bool,
    },
    /// Delete segment files no node needs.
    Gc {
        /// Also collect segments written in the last minutes (when nothing else is writing).
        #[arg(long)]
        now: bool,
    },
    /// Catalogue again the segment files a lost catalogue left (each checked completely first).
    Recover {
        #[arg(long)]
        json: bool,
    },
    /// Check that every node loads and every checksum holds.
    Verify {
        #[arg(long)]
        json: bool,
    },
}

fn line(v: &NodeView, indent: bool) -> String {
    format!(
        "{:>5}  {}{}{} [{}] {} tokens, {}{}{}",
        v.id,
        if indent { "  ".repeat(v.depth) } else { String::new() },
        if v.pinned { "★ " } else { "" },
        v.name,
        v.kind,
        v.token_count,
        human_bytes(v.own_bytes),
        if v.tags.is_empty() {
            String::new()
        } else {
            format!(" #{}", v.tags.join(" #"))
        },
        if v.compatible {
            String::new()
        } else {
            format!("  (made with {})", v.model_name)
        }
    )
}

pub fn run(a: StatesArgs) -> anyhow::Result<()> {
    let lib = tree::open_library()?;
    match a.command {
        StatesCommand::List {
            kind,
            tag,
            search,
            all,
            json,
        } => {
            let mut nodes = match &search {
                Some(q) => tree::search(&lib, q, None)?,
                None => tree::list_tree_of(&lib, None, all)?,
            };
            nodes.retain(|n| {
                kind.as_ref().is_none_or(|k| n.kind.as_str() == k)
                    && tag.as_ref().is_none_or(|t| n.tags.contains(&t.to_lowercase()))
            });
            if json {
                println!("{}", serde_json::to_string(&nodes)?);
            } else {
                nodes.iter().for_each(|n| println!("{}", line(n, false)));
            }
        }
        StatesCommand::Tree { json } => {
            let nodes = tree::list_tree(&lib, None)?;
            if json {
                println!("{}", serde_json::to_string(&nodes)?);
            } else {
                nodes.iter().for_each(|n| println!("{}", line(n, true)));
            }
        }
        StatesCommand::Show { node, json } => {
            let d = tree::show(&lib, tree::resolve(&lib, &node)?, None)?;
            if json {
                println!("{}", serde_json::to_string(&d)?);
            } else {
                println!("{}", line(&d.view, false));
                if !d.view.notes.is_empty() {
                    println!("notes: {}", d.view.notes);
                }
                println!("{} segment(s), subtree {}", d.segments, human_bytes(d.subtree_bytes));
                match d.transcript {
                    Some(freeze_attn::Transcript::Chat { messages }) => {
                        for (i, m) in messages.iter().enumerate() {
                            if !m.content.is_empty() || m.tool_calls.is_empty() {
                                println!("[{i}] {}: {}", m.role, m.content);
                            }
                            for call in &m.tool_calls {
                                println!("[{i}] {}: calls {}({})", m.role, call.name, call.arguments.trim());
                            }
                        }
                    }
                    Some(freeze_attn::Transcript::Text { text }) => println!("{text}"),
                    None => {}
                }
            }
        }
        StatesCommand::Fork {
            node,
            name,
            at_message,
            at_char,
            model,
            json,
        } => {
            let m = freeze_attn::open_model(&model.model, model.device()?)?;
            let id = tree::resolve(&lib, &node)?;
            let at = at_message.map(|message| ForkPoint {
                message,
                char_offset: at_char,
            });
            let child = freeze_attn::fork::fork(&lib, &m, id, at, &name)?;
            let d = tree::show(&lib, child, Some(&m))?;
            if json {
                println!("{}", serde_json::to_string(&d.view)?);
            } else {
                println!("{}", line(&d.view, false));
            }
        }
        StatesCommand::Rename { node, name } => tree::rename(&lib, tree::resolve(&lib, &node)?, &name)?,
        StatesCommand::Annotate { node, notes } => tree::annotate(&lib, tree::resolve(&lib, &node)?, &notes)?,
        StatesCommand::Tag { node, tag, remove } => {
            let id = tree::resolve(&lib, &node)?;
            if remove {
                tree::untag(&lib, id, &tag)?;
            } else {
                tree::tag(&lib, id, &tag)?;
            }
        }
        StatesCommand::Pin { node, off } => tree::pin(&lib, tree::resolve(&lib, &node)?, !off)?,
        StatesCommand::Move { node, parent, top } => {
            let id = tree::resolve(&lib, &node)?;
            let parent = match (parent, top) {
                (Some(p), false) => Some(tree::resolve(&lib, &p)?),
                (None, true) => None,
                _ => bail!("give --parent NODE or --top"),
            };
            tree::move_node(&lib, id, parent)?;
        }
        StatesCommand::Rm { node, subtree } => {
            let id = tree::resolve(&lib, &node)?;
            let d = tree::delete(
                &lib,
                id,
                if subtree {
                    DeleteMode::Subtree
                } else {
                    DeleteMode::Reparent
                },
            )?;
            println!(
                "deleted {} node(s), moved {} up, freed {}",
                d.deleted.len(),
                d.reparented.len(),
                human_bytes(d.freed_bytes)
            );
        }
        StatesCommand::Export { node, out } => {
            let n = freeze_attn::export::export_node(&lib, tree::resolve(&lib, &node)?, &out)?;
            println!("wrote {} to {}", human_bytes(n), out.display());
        }
        StatesCommand::Markdown { node, out } => {
            let id = tree::resolve(&lib, &node)?;
            match out {
                Some(path) => {
                    let n = freeze_attn::export::export_markdown(&lib, id, &path)?;
                    println!("wrote {} to {}", human_bytes(n), path.display());
                }
                None => print!("{}", freeze_attn::export::node_markdown(&lib, id)?),
            }
        }
        StatesCommand::Import {
            file,
            parent,
            name,
            model,
            json,
        } => {
            let m = freeze_attn::open_model(&model.model, model.device()?)?;
            let parent = parent.map(|p| tree::resolve(&lib, &p)).transpose()?;
            let id = freeze_attn::export::import_bundle(&lib, &m, &file, parent, name.as_deref())
                .with_context(|| format!("cannot import {}", file.display()))?;
            let d = tree::show(&lib, id, Some(&m))?;
            if json {
                println!("{}", serde_json::to_string(&d.view)?);
            } else {
                println!("{}", line(&d.view, false));
            }
        }
        StatesCommand::Gc { now } => {
            let r = tree::gc(&lib, now)?;
            println!(
                "removed {} segment(s), {} orphan file(s), {} temporary file(s), {} unpacked import(s): {} freed",
                r.segments_deleted,
                r.orphan_files_deleted,
                r.temp_files_deleted,
                r.scratch_deleted,
                human_bytes(r.bytes_freed)
            );
        }
        StatesCommand::Recover { json } => {
            let r = tree::recover(&lib)?;
            if json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!(
                    "catalogued {} segment file(s) again; {} node(s) created{}",
                    r.segments,
                    r.nodes.len(),
                    if r.nodes.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " ({})",
                            r.nodes.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", ")
                        )
                    }
                );
                for s in &r.skipped {
                    println!("skipped {s}");
                }
            }
        }
        StatesCommand::Verify { json } => {
            let r = tree::verify(&lib)?;
            if json {
                let problems: Vec<_> = r
                    .problems
                    .iter()
                    .map(|p| {
                        serde_json::json!({
                            "node": p.node.map(|n| n.0),
                            "segment": p.segment.as_ref().map(|s| s.as_str().to_string()),
                            "code": p.kind.code(),
                            "problem": p.kind.to_string(),
                        })
                    })
                    .collect();
                println!("{}", serde_json::json!({ "ok": r.is_ok(), "problems": problems }));
            } else if r.is_ok() {
                println!("ok: every node loads and every checksum holds");
            } else {
                for p in &r.problems {
                    println!("{p}");
                }
            }
            if !r.is_ok() {
                bail!("{} problem(s) found", r.problems.len());
            }
        }
    }
    Ok(())
}
