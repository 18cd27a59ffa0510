//! `thaw`: load a node's attention state from the library into memory, ready to continue.

use crate::error::{Error, Result};
use crate::freeze::Base;
use crate::live::Live;
use crate::transcript::Transcript;
use freeze_attn_engine::state::{load_chain, Segment};
use freeze_attn_engine::{EngineError, LoadedModel};
use freeze_attn_library::{Library, Node, NodeId};

/// Refuses a node made with another model, naming both models.
pub fn check_compatible(lib: &Library, model: &LoadedModel, node: &Node) -> Result<()> {
    if &node.model_fingerprint != model.fingerprint() {
        let theirs = lib
            .model(&node.model_fingerprint)?
            .map(|m| format!("{} ({})", m.display_name, node.model_fingerprint.short(12)))
            .unwrap_or_else(|| node.model_fingerprint.to_string());
        return Err(Error::Engine(EngineError::StateModelMismatch {
            expected: format!("{} ({})", model.info.name, model.fingerprint().short(12)),
            found: format!("`{}` made with {theirs}", node.name),
        }));
    }
    Ok(())
}

/// The segments of a node's chain, opened and verified (checksums included), root first.
pub fn open_chain(lib: &Library, node: &Node) -> Result<Vec<Segment>> {
    chain_with(lib, node, Segment::open)
}

/// The segments of a node's chain opened for [`load_chain`], which checks their checksums
/// while it reads their K/V (so a thaw reads each byte once).
fn chain_for_load(lib: &Library, node: &Node) -> Result<Vec<Segment>> {
    chain_with(lib, node, Segment::open_for_load)
}

fn chain_with(
    lib: &Library,
    node: &Node,
    open: fn(&std::path::Path) -> freeze_attn_engine::Result<Segment>,
) -> Result<Vec<Segment>> {
    let Some(tip) = &node.tip else { return Ok(Vec::new()) };
    lib.chain(tip)?
        .iter()
        .map(|m| Ok(open(&lib.segment_path(&m.hash))?))
        .collect()
}

/// Loads node `id` for `model`.
#[tracing::instrument(level = "info", name = "thaw", skip_all, fields(node = %id, tokens))]
pub fn thaw(lib: &Library, model: &LoadedModel, id: NodeId) -> Result<Live> {
    let node = lib.node(id)?;
    check_compatible(lib, model, &node)?;
    let chain = chain_for_load(lib, &node)?;
    let n = node.token_count as usize;
    let state = if n == 0 {
        model.model.new_state()
    } else {
        load_chain(&chain, n, &model.model, model.fingerprint())?
    };
    let transcript = Transcript::from_json(&node.transcript).unwrap_or_default();
    let base = Base {
        node: id,
        tip: node.tip.clone(),
        token_count: n,
    };
    tracing::Span::current().record("tokens", n);
    Ok(Live {
        state,
        transcript,
        kind: node.kind,
        base: Some(base),
        shared: n,
    })
}

/// The token ids of a node's state, without loading its K/V into memory.
pub fn node_tokens(lib: &Library, node: &Node) -> Result<Vec<u32>> {
    let mut tokens = Vec::new();
    for s in open_chain(lib, node)? {
        tokens.extend_from_slice(&s.tokens);
    }
    tokens.truncate(node.token_count as usize);
    Ok(tokens)
}
