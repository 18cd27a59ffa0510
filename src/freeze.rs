//! `freeze`: save a live attention state as a named node of the tree. Only tokens that the
//! state's base node does not already hold on disk are written: a chat frozen after one more
//! turn costs one small segment, a fork costs nothing until it grows.

use crate::error::Result;
use crate::transcript::Transcript;
use freeze_attn_engine::state::{write_segment, StoredDType};
use freeze_attn_engine::{KvState, LoadedModel};
use freeze_attn_library::{BranchFill, Library, ModelRecord, NewNode, NewSegment, NodeId, NodeKind, SegmentId};

/// Where a live state came from: the node it was thawed from.
#[derive(Debug, Clone)]
pub struct Base {
    pub node: NodeId,
    pub tip: Option<SegmentId>,
    pub token_count: usize,
}

/// Records the model in the library so nodes can name it.
pub fn register_model(lib: &Library, model: &LoadedModel) -> Result<()> {
    lib.put_model(&ModelRecord {
        fingerprint: model.fingerprint().clone(),
        display_name: model.info.name.clone(),
        path: model.info.path.clone(),
    })?;
    Ok(())
}

/// What a freeze needs to know.
pub struct FreezeRequest<'a> {
    pub name: &'a str,
    pub kind: NodeKind,
    pub parent: Option<NodeId>,
    pub transcript: &'a Transcript,
    /// The node the state was thawed from, and how many leading tokens still equal it.
    pub base: Option<(&'a Base, usize)>,
    pub dtype: StoredDType,
}

/// Saves `state` as a new node; returns its id.
#[tracing::instrument(level = "info", name = "freeze", skip_all, fields(name = req.name, tokens = state.len(), node))]
pub fn freeze(lib: &Library, model: &LoadedModel, state: &KvState, req: &FreezeRequest<'_>) -> Result<NodeId> {
    let tip = store(lib, model, state, req)?;
    let mut node = NewNode::new(req.name, req.kind, model.fingerprint().clone());
    node.parent = req.parent;
    node.tip = tip;
    node.token_count = state.len() as u64;
    node.transcript = req.transcript.to_json();
    node.preview = preview(lib, req.transcript, req.parent)?;
    let id = lib.create_node(&node)?;
    tracing::Span::current().record("node", id.0);
    Ok(id)
}

/// Saves `state` into `branch`, an empty branch (a whole-node fork nothing was added to) that
/// the state was thawed from, instead of as a child of it: the fork then holds what was said
/// after forking, under the name given now. `req.parent` is ignored (the branch keeps its place).
#[tracing::instrument(level = "info", name = "freeze_into_branch", skip_all, fields(name = req.name, tokens = state.len(), node = %branch))]
pub fn freeze_into_branch(
    lib: &Library,
    model: &LoadedModel,
    state: &KvState,
    req: &FreezeRequest<'_>,
    branch: NodeId,
) -> Result<()> {
    let tip = store(lib, model, state, req)?;
    let parent = lib.node(branch)?.parent;
    lib.fill_branch(
        branch,
        &BranchFill {
            name: req.name.to_string(),
            kind: req.kind,
            tip,
            token_count: state.len() as u64,
            transcript: req.transcript.to_json(),
            preview: preview(lib, req.transcript, parent)?,
        },
    )?;
    Ok(())
}

/// The node's line for listings, next to its parent's transcript (freeze, fork and import all
/// make it here). A chat's line never depends on its parent, so the parent is read only for a
/// text, whose line is what it adds to its parent's.
pub(crate) fn preview(lib: &Library, transcript: &Transcript, parent: Option<NodeId>) -> Result<String> {
    let parent_json = match (transcript, parent) {
        (Transcript::Text { .. }, Some(p)) => Some(lib.node(p)?.transcript),
        _ => None,
    };
    Ok(preview_after(transcript, parent_json.as_deref()))
}

/// [`preview`] for a caller that has the parent's row at hand (`parent_json`: its stored
/// transcript): only a text's preview depends on its parent.
pub(crate) fn preview_after(transcript: &Transcript, parent_json: Option<&str>) -> String {
    let parent = match (transcript, parent_json) {
        (Transcript::Text { .. }, Some(json)) => Transcript::from_json(json),
        _ => None,
    };
    transcript.preview(parent.as_ref())
}

/// Registers the model and writes what `state` adds to its base; returns the state's tip.
fn store(lib: &Library, model: &LoadedModel, state: &KvState, req: &FreezeRequest<'_>) -> Result<Option<SegmentId>> {
    register_model(lib, model)?;
    match store_tokens(lib, model, state, req, req.base) {
        Ok(tip) => Ok(tip),
        // The base's segments can be gone: another process (the app, a server, the CLI) may
        // have deleted the node this state was thawed from and collected its files. The state
        // is whole in memory, so it is written without them.
        Err(e) if req.base.is_some() && !matches!(e.code(), "disk_full" | "io") => {
            tracing::info!(error = %e, "freezing without the base's segments");
            store_tokens(lib, model, state, req, None)
        }
        Err(e) => Err(e),
    }
}

/// Writes the tokens of `state` that `base` does not hold on disk as one new segment; returns
/// the tip of the state's chain.
fn store_tokens(
    lib: &Library,
    model: &LoadedModel,
    state: &KvState,
    req: &FreezeRequest<'_>,
    base: Option<(&Base, usize)>,
) -> Result<Option<SegmentId>> {
    let (tip, start) = reusable_prefix(lib, base)?;
    if state.len() <= start {
        return Ok(tip);
    }
    let temp = lib.temp_segment()?;
    let info = write_segment(
        state,
        start,
        state.len(),
        tip.clone(),
        model.fingerprint(),
        req.dtype,
        None,
        temp.path(),
    )?;
    let new = NewSegment {
        hash: info.id.clone(),
        parent: tip,
        start: start as u64,
        token_count: (state.len() - start) as u64,
        dtype: req.dtype.to_string(),
        model_fingerprint: model.fingerprint().clone(),
    };
    Ok(Some(lib.put_temp_segment(&new, temp)?.hash))
}

/// The deepest segment of the base chain that lies wholly inside the shared prefix, and its end.
fn reusable_prefix(lib: &Library, base: Option<(&Base, usize)>) -> Result<(Option<SegmentId>, usize)> {
    let Some((base, shared)) = base else {
        return Ok((None, 0));
    };
    let Some(tip) = &base.tip else { return Ok((None, 0)) };
    let shared = shared.min(base.token_count) as u64;
    let mut best = (None, 0usize);
    for s in lib.chain(tip)? {
        if s.start + s.token_count <= shared {
            best = (Some(s.hash.clone()), (s.start + s.token_count) as usize);
        } else {
            break;
        }
    }
    Ok(best)
}

/// `name` if no sibling under `parent` has it, else `name (2)`, `name (3)`, …
pub fn unique_name(lib: &Library, parent: Option<NodeId>, name: &str) -> Result<String> {
    let taken: Vec<String> = lib
        .children(parent, freeze_attn_library::NodeOrder::Name)?
        .into_iter()
        .map(|s| s.name.to_lowercase())
        .collect();
    if !taken.contains(&name.to_lowercase()) {
        return Ok(name.to_string());
    }
    for i in 2.. {
        let candidate = format!("{name} ({i})");
        if !taken.contains(&candidate.to_lowercase()) {
            return Ok(candidate);
        }
    }
    unreachable!()
}
