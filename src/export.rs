//! `export` / `import`: one file that carries a node, its transcript and the segments of its
//! chain ("a personality pack", "a document pack"). Importing checks everything before anything
//! is written, never overwrites a node, and asks nothing of the network.

use crate::error::{Error, Result};
use crate::freeze::register_model;
use freeze_attn_engine::state::Segment;
use freeze_attn_engine::{EngineError, LoadedModel};
use freeze_attn_library::{read_bundle, Library, NodeId, NodeKind};
use std::path::Path;

/// Writes node `id` and everything it needs to `path`; returns the bytes written.
#[tracing::instrument(level = "info", name = "export", skip_all, fields(node = %id, path = %path.display()))]
pub fn export_node(lib: &Library, id: NodeId, path: &Path) -> Result<u64> {
    Ok(lib.export_node(id, path)?)
}

/// Node `id`'s conversation or text as Markdown (see [`crate::Transcript::to_markdown`]).
pub fn node_markdown(lib: &Library, id: NodeId) -> Result<String> {
    let node = lib.node(id)?;
    let transcript = crate::transcript::Transcript::from_json(&node.transcript).unwrap_or_default();
    Ok(transcript.to_markdown(&node.name))
}

/// Writes node `id` as Markdown to `path` (a temporary file beside it, renamed at the end);
/// returns the bytes written.
pub fn export_markdown(lib: &Library, id: NodeId, path: &Path) -> Result<u64> {
    let text = node_markdown(lib, id)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = path.with_file_name(format!(".{name}.{}.part", std::process::id()));
    let written = std::fs::write(&temp, &text).and_then(|()| std::fs::rename(&temp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(Error::io(path, e));
    }
    Ok(text.len() as u64)
}

/// Imports a bundle as a new node under `parent` (named `name`, or the bundle's name).
#[tracing::instrument(level = "info", name = "import", skip_all, fields(path = %path.display(), node))]
pub fn import_bundle(
    lib: &Library,
    model: &LoadedModel,
    path: &Path,
    parent: Option<NodeId>,
    name: Option<&str>,
) -> Result<NodeId> {
    let scratch = lib.import_scratch_dir();
    std::fs::create_dir_all(&scratch).map_err(|e| Error::io(&scratch, e))?;
    let scratch = scratch.join(format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    let mut bundle = read_bundle(path, &scratch)?;
    // An exported cache node (a server's kept request) becomes a node people see: importing it
    // is a person's choice, and cache nodes are evicted without asking.
    if bundle.node.kind == NodeKind::Cache {
        bundle.node.kind = match crate::transcript::Transcript::from_json(&bundle.node.transcript) {
            Some(crate::transcript::Transcript::Text { .. }) => NodeKind::Story,
            _ => NodeKind::Chat,
        };
    }
    let check = || -> Result<()> {
        if &bundle.node.model_fingerprint != model.fingerprint() {
            let theirs = bundle.node.model_name.clone().unwrap_or_else(|| "another model".into());
            return Err(Error::Engine(EngineError::StateModelMismatch {
                expected: format!("{} ({})", model.info.name, model.fingerprint().short(12)),
                found: format!(
                    "the bundle `{}` made with {theirs} ({})",
                    bundle.node.name, bundle.node.model_fingerprint
                ),
            }));
        }
        for s in &bundle.segments {
            let seg = Segment::open(&s.path)?;
            seg.check_model(model.fingerprint())?;
            // Every field the catalogue will store comes from the segment itself, checked
            // against the manifest: a manifest is believed in nothing.
            let m = &s.meta;
            let differs = [
                ("id", seg.id != m.hash),
                ("start", seg.header.start as u64 != m.start),
                ("token count", seg.header.token_count as u64 != m.token_count),
                ("parent", seg.header.parent != m.parent),
                ("dtype", seg.header.stored_dtype.to_string() != m.dtype),
                ("model", seg.header.model_fingerprint != m.model_fingerprint),
                ("size", seg.file_bytes != m.bytes),
            ]
            .into_iter()
            .find_map(|(field, bad)| bad.then_some(field));
            if let Some(field) = differs {
                return Err(Error::Invalid(format!(
                    "{}: segment {} does not match its description in the bundle (its {field} differs)",
                    path.display(),
                    m.hash.short(12)
                )));
            }
        }
        Ok(())
    };
    let result = check().and_then(|()| {
        register_model(lib, model)?;
        let preview = match crate::transcript::Transcript::from_json(&bundle.node.transcript) {
            Some(t) => crate::freeze::preview(lib, &t, parent)?,
            None => String::new(),
        };
        let id = lib.commit_import(&bundle, parent, name, &preview)?;
        tracing::Span::current().record("node", id.0);
        Ok(id)
    });
    bundle.discard();
    let _ = std::fs::remove_dir_all(&scratch);
    result
}
