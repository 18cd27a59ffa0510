//! `fork`: a new child of a node, optionally cut at a point inside its transcript. Nothing is
//! written to disk: the fork references its parent's segments (the first k tokens of them).

use crate::error::{Error, Result};
use crate::thaw::{check_compatible, node_tokens};
use crate::transcript::Transcript;
use freeze_attn_engine::chat::sync;
use freeze_attn_engine::{LoadedModel, Message};
use freeze_attn_library::{Library, NewNode, NodeId};
use serde::{Deserialize, Serialize};

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

/// Creates a child of `id` named `name`: the whole state, or cut at `at`.
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
    let mut new = NewNode::new(name, node.kind, node.model_fingerprint.clone());
    new.parent = Some(id);
    new.tip = if token_count > 0 { node.tip.clone() } else { None };
    new.token_count = token_count;
    new.transcript = transcript.to_json();
    let child = lib.create_node(&new)?;
    tracing::Span::current().record("child", child.0);
    Ok(child)
}
