//! `fork`: a new node from a node's state, whole or cut at a point inside its transcript. Nothing
//! is written to disk: the fork references the node's segments (the first k tokens of them).

use crate::error::{Error, Result};
use crate::thaw::{check_compatible, node_tokens};
use crate::transcript::Transcript;
use freeze_attn_engine::chat::sync;
use freeze_attn_engine::{LoadedModel, Message};
use freeze_attn_library::{Library, NewNode, Node, NodeId, SegmentId};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// A branch point inside a transcript: after message `message` (chat), or at `char_offset`
/// inside it (inside the text, for text transcripts, whose single "message" is 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct ForkPoint {
    pub message: usize,
    pub char_offset: Option<usize>,
}

/// The transcript kept by a fork point, and the text its state must encode.
pub fn cut_transcript(model: &LoadedModel, t: &Transcript, at: ForkPoint) -> Result<(Transcript, String)> {
    Ok(match t {
        Transcript::Chat { messages } => {
            if at.message >= messages.len() {
                return Err(Error::Invalid(format!(
                    "message {} does not exist (the transcript has {})",
                    at.message,
                    messages.len()
                )));
            }
            let mut kept: Vec<Message> = messages[..=at.message].to_vec();
            let text = match at.char_offset {
                None => model.template()?.render(&kept, false)?,
                Some(c) => {
                    let last = kept.last_mut().unwrap();
                    last.content.truncate(floor_boundary(&last.content, c));
                    let (role, partial) = (last.role.clone(), last.content.clone());
                    // The state holds the conversation up to the cut, inside the open message:
                    // the earlier messages, then this message's header and its partial content.
                    let earlier = &kept[..kept.len() - 1];
                    let open = model.template()?.render(earlier, false)?;
                    let mut with_empty = earlier.to_vec();
                    with_empty.push(Message::new(role, ""));
                    let empty = model.template()?.render(&with_empty, false)?;
                    format!(
                        "{open}{}",
                        content_prefix(&empty[open.len().min(empty.len())..], &partial)
                    )
                }
            };
            (Transcript::Chat { messages: kept }, text)
        }
        Transcript::Text { text } => {
            let cut = floor_boundary(text, at.char_offset.unwrap_or(text.len()));
            let kept = text[..cut].to_string();
            (Transcript::Text { text: kept.clone() }, kept)
        }
    })
}

/// The rendering of an empty message is `<header><footer>`: the open message is
/// `<header><content>` (everything before the footer).
fn content_prefix(rendered_empty: &str, content: &str) -> String {
    // Templates render an empty message as header + footer; the footer starts at the first
    // special-looking marker after the header's last newline. We keep the header up to and
    // including its last newline, which is where content goes for ChatML and Llama 3.
    match rendered_empty.rfind('\n') {
        Some(i) if i + 1 < rendered_empty.len() => format!("{}{content}", &rendered_empty[..=i]),
        _ => format!("{rendered_empty}{content}"),
    }
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Where a fork cut at `tokens` goes in the tree: under the nearest node on `node`'s path from
/// the root (itself included) whose whole state is a prefix of the cut. A fork at an early
/// message then reads as a branch from that point (a sibling of the longer conversation), not
/// as a continuation of it. `None`: a new top-level node.
fn branch_parent(lib: &Library, node: &Node, tokens: u64) -> Result<Option<NodeId>> {
    if tokens >= node.token_count {
        return Ok(Some(node.id));
    }
    // A node whose tip segment lies on this node's chain holds a prefix of its state.
    let chain: HashSet<SegmentId> = match &node.tip {
        Some(t) => lib.chain(t)?.into_iter().map(|m| m.hash).collect(),
        None => HashSet::new(),
    };
    let mut seen = HashSet::from([node.id]);
    let mut cur = node.parent;
    while let Some(id) = cur {
        if !seen.insert(id) {
            break; // a damaged tree with a cycle: `verify` reports it
        }
        let p = lib.node(id)?;
        let prefix = p.token_count == 0 || p.tip.as_ref().is_some_and(|t| chain.contains(t));
        if prefix && p.token_count <= tokens {
            return Ok(Some(id));
        }
        cur = p.parent;
    }
    Ok(None)
}

/// Creates a node named `name` (made unique among its siblings) holding `id`'s state, whole
/// (a child of `id`) or cut at `at` (placed at the branch point, see [`branch_parent`]).
#[tracing::instrument(level = "info", name = "fork", skip_all, fields(node = %id, at = ?at, child))]
pub fn fork(lib: &Library, model: &LoadedModel, id: NodeId, at: Option<ForkPoint>, name: &str) -> Result<NodeId> {
    let node = lib.node(id)?;
    check_compatible(lib, model, &node)?;
    let transcript = Transcript::from_json(&node.transcript).unwrap_or_default();
    let (transcript, token_count) = match at {
        None => (transcript, node.token_count),
        Some(at) => {
            let (kept, text) = cut_transcript(model, &transcript, at)?;
            let tokens = node_tokens(lib, &node)?;
            let target = match &kept {
                Transcript::Text { .. } if model.tokenizer.add_bos() => {
                    let bos = model
                        .tokenizer
                        .bos()
                        .and_then(|b| model.tokenizer.token_text(b))
                        .unwrap_or_default();
                    format!("{bos}{text}")
                }
                _ => text,
            };
            let plan = sync(&model.tokenizer, &tokens, &target)?;
            (kept, plan.keep as u64)
        }
    };
    let parent = match at {
        None => Some(id),
        Some(_) => branch_parent(lib, &node, token_count)?,
    };
    let name = crate::freeze::unique_name(lib, parent, name)?;
    let mut new = NewNode::new(name, node.kind, node.model_fingerprint.clone());
    new.parent = parent;
    new.tip = if token_count > 0 { node.tip.clone() } else { None };
    new.token_count = token_count;
    new.transcript = transcript.to_json();
    new.preview = if parent == Some(id) {
        // A whole fork is the node's child: its row is loaded already.
        crate::freeze::preview_after(&transcript, Some(&node.transcript))
    } else {
        crate::freeze::preview(lib, &transcript, parent)?
    };
    let child = lib.create_node(&new)?;
    tracing::Span::current().record("child", child.0);
    Ok(child)
}
