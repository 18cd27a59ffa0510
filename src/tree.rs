//! The state tree as users see it: listing, searching, showing and managing nodes (rename,
//! annotate, tag, pin, move, delete), plus `gc` and `verify`.

use crate::error::{Error, Result};
use crate::paths::data_dir;
use crate::transcript::Transcript;
use freeze_attn_engine::state::{Segment, SegmentId};
use freeze_attn_engine::LoadedModel;
use freeze_attn_library::{
    DeleteMode, Deletion, Library, ModelFingerprint, NodeId, NodeKind, NodeOrder, NodeSummary, Rejection, VerifyReport,
};
use serde::Serialize;
use std::path::PathBuf;

/// The library in the user data folder (`FREEZE_ATTN_HOME` overrides it).
pub fn open_library() -> Result<Library> {
    let dir = library_dir();
    Ok(Library::open(&dir)?)
}

pub fn library_dir() -> PathBuf {
    data_dir().join("library")
}

/// A node as the CLI and the app show it.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct NodeView {
    pub id: i64,
    pub parent: Option<i64>,
    pub name: String,
    pub kind: NodeKind,
    pub notes: String,
    /// What the node holds, in a line: a chat's last message, or the text it added after its
    /// parent's (else its first words).
    pub preview: String,
    pub tags: Vec<String>,
    pub pinned: bool,
    pub token_count: u64,
    pub own_bytes: u64,
    pub model_name: String,
    pub model_fingerprint: ModelFingerprint,
    /// Where its model was loaded from, when this library has seen it loaded (so that a node of
    /// another model can open its model in one click).
    pub model_path: Option<String>,
    /// Whether the loaded model can thaw it.
    pub compatible: bool,
    pub created_at: i64,
    pub updated_at: i64,
    pub depth: usize,
}

/// The model's display name and, if it is still there, its path.
fn model_of(lib: &Library, fingerprint: &ModelFingerprint) -> (String, Option<String>) {
    match lib.model(fingerprint).ok().flatten() {
        Some(m) => (
            m.display_name,
            m.path.exists().then(|| m.path.to_string_lossy().into_owned()),
        ),
        None => (format!("model {}", fingerprint.short(12)), None),
    }
}

pub fn view(lib: &Library, s: &NodeSummary, depth: usize, model: Option<&LoadedModel>) -> NodeView {
    let (model_name, model_path) = model_of(lib, &s.model_fingerprint);
    NodeView {
        id: s.id.0,
        parent: s.parent.map(|p| p.0),
        name: s.name.clone(),
        kind: s.kind,
        notes: s.notes.clone(),
        preview: s.preview.clone(),
        tags: s.tags.clone(),
        pinned: s.pinned,
        token_count: s.token_count,
        own_bytes: s.own_bytes,
        model_name,
        model_fingerprint: s.model_fingerprint.clone(),
        model_path,
        compatible: model.is_none_or(|m| m.fingerprint() == &s.model_fingerprint),
        created_at: s.created_at,
        updated_at: s.updated_at,
        depth,
    }
}

/// Every node, depth first, pinned first (cache nodes left out).
pub fn list_tree(lib: &Library, model: Option<&LoadedModel>) -> Result<Vec<NodeView>> {
    list_tree_of(lib, model, false)
}

/// [`list_tree`], with a server's cache nodes when `with_cache`.
pub fn list_tree_of(lib: &Library, model: Option<&LoadedModel>, with_cache: bool) -> Result<Vec<NodeView>> {
    Ok(lib
        .tree_of(NodeOrder::Name, with_cache)?
        .iter()
        .map(|e| view(lib, &e.node, e.depth, model))
        .collect())
}

/// Nodes whose name, tags, notes or transcript contain `query` (case-insensitive).
pub fn search(lib: &Library, query: &str, model: Option<&LoadedModel>) -> Result<Vec<NodeView>> {
    Ok(lib
        .search(query, NodeOrder::Name)?
        .iter()
        .map(|h| view(lib, &h.node, 0, model))
        .collect())
}

/// One node with its notes and transcript.
#[derive(Debug, Clone, Serialize)]
pub struct NodeDetail {
    #[serde(flatten)]
    pub view: NodeView,
    pub transcript: Option<Transcript>,
    pub segments: usize,
    pub subtree_bytes: u64,
}

pub fn show(lib: &Library, id: NodeId, model: Option<&LoadedModel>) -> Result<NodeDetail> {
    let n = lib.node(id)?;
    let summary = lib.summary(id)?;
    let mut v = view(lib, &summary, 0, model);
    v.notes = n.notes.clone();
    let segments = match &n.tip {
        Some(t) => lib.chain(t)?.len(),
        None => 0,
    };
    Ok(NodeDetail {
        view: v,
        transcript: Transcript::from_json(&n.transcript),
        segments,
        subtree_bytes: lib.subtree_bytes(id)?,
    })
}

/// A node by id, or by name when exactly one node has it (names compare case-insensitively).
pub fn resolve(lib: &Library, spec: &str) -> Result<NodeId> {
    if let Ok(n) = spec.trim().parse::<i64>() {
        let id = NodeId(n);
        lib.node(id)?;
        return Ok(id);
    }
    let ids: Vec<i64> = lib
        .tree(NodeOrder::Name)?
        .into_iter()
        .filter(|e| e.node.name.eq_ignore_ascii_case(spec))
        .map(|e| e.node.id.0)
        .collect();
    match ids.as_slice() {
        [one] => Ok(NodeId(*one)),
        [] => Err(Error::NoNodeNamed(spec.to_string())),
        _ => Err(Error::AmbiguousName {
            name: spec.to_string(),
            ids,
        }),
    }
}

pub fn parse_kind(s: &str) -> Result<NodeKind> {
    NodeKind::USER
        .into_iter()
        .find(|k| k.as_str() == s)
        .ok_or_else(|| Error::Invalid(format!("unknown kind `{s}` (personality, story, document or chat)")))
}

pub fn rename(lib: &Library, id: NodeId, name: &str) -> Result<()> {
    Ok(lib.rename_node(id, name)?)
}
pub fn annotate(lib: &Library, id: NodeId, notes: &str) -> Result<()> {
    Ok(lib.set_notes(id, notes)?)
}
pub fn tag(lib: &Library, id: NodeId, tag: &str) -> Result<bool> {
    Ok(lib.add_tag(id, tag)?)
}
pub fn untag(lib: &Library, id: NodeId, tag: &str) -> Result<bool> {
    Ok(lib.remove_tag(id, tag)?)
}
pub fn pin(lib: &Library, id: NodeId, pinned: bool) -> Result<()> {
    Ok(lib.set_pinned(id, pinned)?)
}
pub fn move_node(lib: &Library, id: NodeId, parent: Option<NodeId>) -> Result<()> {
    Ok(lib.move_node(id, parent)?)
}

/// Deletes a node (children re-parented or deleted with it) and collects what no node needs.
#[tracing::instrument(level = "info", name = "delete", skip_all, fields(node = %id, mode = ?mode))]
pub fn delete(lib: &Library, id: NodeId, mode: DeleteMode) -> Result<Deletion> {
    let d = lib.delete_node(id, mode)?;
    // The delete is committed; collecting its files is a bonus. A library that fails
    // verification refuses gc (nothing is deleted), and that must not turn into a failed delete.
    if let Err(e) = lib.gc_with(freeze_attn_library::GcOptions {
        grace: std::time::Duration::ZERO,
    }) {
        tracing::warn!("after deleting node {id}: {e}");
    }
    Ok(d)
}

pub fn preview_delete(lib: &Library, id: NodeId, mode: DeleteMode) -> Result<Deletion> {
    Ok(lib.preview_delete(id, mode)?)
}

#[tracing::instrument(level = "info", name = "gc", skip_all, fields(now = now))]
pub fn gc(lib: &Library, now: bool) -> Result<freeze_attn_library::GcReport> {
    Ok(if now {
        lib.gc_with(freeze_attn_library::GcOptions {
            grace: std::time::Duration::ZERO,
        })?
    } else {
        lib.gc()?
    })
}

/// What [`recover`] did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RecoverReport {
    /// Segment files catalogued again.
    pub segments: usize,
    /// Nodes created, one per recovered chain end.
    pub nodes: Vec<i64>,
    /// Files left alone, each with the reason.
    pub skipped: Vec<String>,
}

/// Catalogues again the segment files that have no row (what a lost or replaced catalogue
/// leaves): each file is opened and checked completely (header, layout, checksum, the id its
/// name says) before its row is written, parents first; then every recovered segment that ends
/// a chain gets a top-level node named `recovered <id>`, whose transcript is the one stored in
/// the file if any. Files that fail a check are left alone and listed.
#[tracing::instrument(level = "info", name = "recover", skip_all, fields(segments, nodes))]
pub fn recover(lib: &Library) -> Result<RecoverReport> {
    let mut report = RecoverReport::default();
    let mut pending = Vec::new();
    for (id, path) in lib.uncatalogued_files()? {
        match Segment::open(&path) {
            Ok(s) if s.id == id => pending.push(s),
            Ok(s) => report.skipped.push(format!(
                "{}: its content is segment {}, not the one its name says",
                path.display(),
                s.id.short(12)
            )),
            Err(e) => report.skipped.push(format!("{}: {e}", path.display())),
        }
    }
    // Parents first: adopt whatever has its parent catalogued, until nothing more can be.
    let mut adopted: Vec<Segment> = Vec::new();
    loop {
        let before = pending.len();
        let mut rest = Vec::new();
        for s in pending {
            let parent_known = match &s.header.parent {
                None => true,
                Some(p) => lib.segment(p).is_ok(),
            };
            if !parent_known {
                rest.push(s);
                continue;
            }
            lib.adopt_segment(&freeze_attn_library::NewSegment {
                hash: s.id.clone(),
                parent: s.header.parent.clone(),
                start: s.header.start as u64,
                token_count: s.header.token_count as u64,
                dtype: s.header.stored_dtype.to_string(),
                model_fingerprint: s.header.model_fingerprint.clone(),
            })?;
            adopted.push(s);
        }
        pending = rest;
        if pending.is_empty() || pending.len() == before {
            break;
        }
    }
    for s in &pending {
        report.skipped.push(format!(
            "{}: its parent segment {} is missing",
            s.path.display(),
            s.header.parent.as_ref().map_or("?", |p| p.short(12))
        ));
    }
    report.segments = adopted.len();
    let continued: std::collections::HashSet<&SegmentId> =
        adopted.iter().filter_map(|s| s.header.parent.as_ref()).collect();
    let tips: std::collections::HashSet<SegmentId> = lib
        .tree(NodeOrder::Name)?
        .into_iter()
        .filter_map(|e| e.node.tip)
        .collect();
    for s in adopted
        .iter()
        .filter(|s| !continued.contains(&s.id) && !tips.contains(&s.id))
    {
        let transcript = s.header.transcript.as_deref().and_then(Transcript::from_json);
        let kind = match transcript {
            Some(Transcript::Chat { .. }) => NodeKind::Chat,
            _ => NodeKind::Story,
        };
        let name = crate::freeze::unique_name(lib, None, &format!("recovered {}", s.id.short(8)))?;
        let mut node = freeze_attn_library::NewNode::new(name, kind, s.header.model_fingerprint.clone())
            .with_state(s.id.clone(), s.end() as u64);
        node.transcript = transcript.clone().unwrap_or_default().to_json();
        node.preview = transcript.as_ref().map(|t| t.preview(None)).unwrap_or_default();
        node.notes = if transcript.is_some() {
            "Recovered from its segment files (`states recover`).".into()
        } else {
            "Recovered from its segment files (`states recover`); its transcript was not stored with \
             them, only its tokens and attention state."
                .into()
        };
        report.nodes.push(lib.create_node(&node)?.0);
    }
    tracing::Span::current()
        .record("segments", report.segments)
        .record("nodes", report.nodes.len());
    Ok(report)
}

/// Checks every node: its chain resolves and every segment file opens and passes its checksum.
#[tracing::instrument(level = "info", name = "verify", skip_all)]
pub fn verify(lib: &Library) -> Result<VerifyReport> {
    Ok(lib.verify(|meta, path| {
        let rejected = |e: Error| Rejection {
            code: e.code(),
            message: e.to_string(),
        };
        let s = Segment::open(path).map_err(|e| rejected(e.into()))?;
        if s.id != meta.hash {
            return Err(Rejection {
                code: "segment_id_mismatch",
                message: format!(
                    "content hash {} does not match the catalogue's {}",
                    s.id.short(12),
                    meta.hash.short(12)
                ),
            });
        }
        if s.header.model_fingerprint != meta.model_fingerprint {
            return Err(Rejection {
                code: "state_model_mismatch",
                message: "model fingerprint differs from the catalogue's".into(),
            });
        }
        Ok(())
    })?)
}
