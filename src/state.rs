//! Saving and loading attention states as files (the seed's `save_cache_to_disk` /
//! `load_cache_from_disk`). A state file is one segment; a state that grew from a loaded one is
//! saved as a new segment holding only the new tokens, pointing at its parent, which is looked
//! up by hash among the state files of the same folder.

use crate::error::{Error, Result};
use crate::transcript::Transcript;
use freeze_attn_engine::state::{
    load_chain, read_header, write_segment, Segment, SegmentId, SegmentInfo, StateError, StoredDType,
};
use freeze_attn_engine::{EngineError, KvState, LoadedModel};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A state loaded from disk, with what it knows about itself.
#[derive(Debug)]
pub struct LoadedState {
    pub state: KvState,
    /// The segments it came from, root first (the last one is the file that was named).
    pub chain: Vec<SegmentId>,
    pub transcript: Option<Transcript>,
    pub file_bytes: u64,
    pub load_time: Duration,
    /// Tokens in the file's chain (the state's length when it was loaded).
    pub chain_len: usize,
}

/// What a save wrote.
#[derive(Debug, Clone, Serialize)]
pub struct SavedState {
    pub path: PathBuf,
    pub id: SegmentId,
    pub parent: Option<SegmentId>,
    pub start: usize,
    pub tokens: usize,
    pub dtype: StoredDType,
    pub bytes: u64,
}

impl From<SegmentInfo> for SavedState {
    fn from(i: SegmentInfo) -> Self {
        Self {
            path: i.path,
            id: i.id,
            parent: i.header.parent,
            start: i.header.start,
            tokens: i.header.token_count,
            dtype: i.header.stored_dtype,
            bytes: i.bytes,
        }
    }
}

/// The origin of a state that was loaded from a file: saving it again writes only what is new.
#[derive(Debug, Clone)]
pub struct Parent {
    pub id: SegmentId,
    pub len: usize,
    /// The parent's chain, root first (`id` last): none of these files may be written over.
    pub chain: Vec<SegmentId>,
}

/// Saves `state` to `path`. With `parent` (the segment the state was loaded from, still a
/// prefix of it), only the tokens after it are written.
#[tracing::instrument(level = "info", name = "save_state", skip_all, fields(path = %path.display(), tokens = state.len(), dtype = %dtype))]
pub fn save_state(
    model: &LoadedModel,
    state: &KvState,
    path: &Path,
    dtype: StoredDType,
    parent: Option<&Parent>,
    transcript: Option<&Transcript>,
) -> Result<SavedState> {
    let (start, parent_id) = match parent {
        Some(p) if p.len < state.len() => (p.len, Some(p.id.clone())),
        Some(p) if p.len == state.len() => {
            return Err(Error::Invalid(format!(
                "nothing new to save: the state still equals its parent {}",
                p.id.short(12)
            )))
        }
        _ => (0, None),
    };
    if let (Some(p), Some(_)) = (parent, &parent_id) {
        refuse_overwriting_chain(path, &p.chain)?;
    }
    let info = write_segment(
        state,
        start,
        state.len(),
        parent_id,
        model.fingerprint(),
        dtype,
        transcript.map(|t| t.to_json()).as_deref(),
        path,
    )?;
    Ok(info.into())
}

/// Refuses to write over a file that holds one of `chain`'s segments: the new state would lose
/// the parent it continues from.
fn refuse_overwriting_chain(path: &Path, chain: &[SegmentId]) -> Result<()> {
    if let Ok(h) = read_header(path) {
        let id = h.id();
        if chain.contains(&id) {
            return Err(Error::Invalid(format!(
                "refusing to write {}: it holds segment {} that the new state continues from; save to another file",
                path.display(),
                id.short(12)
            )));
        }
    }
    Ok(())
}

/// Opens the segment at `path` and, by hash, its ancestors from the same folder, for
/// [`load_chain`] (which checks each segment's checksum as it reads its K/V).
pub fn resolve_chain(path: &Path) -> Result<Vec<Segment>> {
    let tip = Segment::open_for_load(path)?;
    let mut chain = vec![tip];
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    while let Some(parent) = chain.last().and_then(|s| s.header.parent.clone()) {
        let found = find_segment(dir, &parent)?;
        match found {
            Some(p) => chain.push(Segment::open_for_load(&p)?),
            None => {
                return Err(EngineError::from(StateError::MissingParent {
                    file: chain.last().map(|s| s.path.display().to_string()).unwrap_or_default(),
                    parent: parent.to_string(),
                    detail: format!("no state file in {} has it", dir.display()),
                })
                .into())
            }
        }
    }
    chain.reverse();
    Ok(chain)
}

fn find_segment(dir: &Path, id: &SegmentId) -> Result<Option<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for e in entries.flatten() {
        let p = e.path();
        if !p.is_file() {
            continue;
        }
        // Other files in the folder are not state files, or damaged ones: skipped, not fatal.
        if let Ok(h) = read_header(&p) {
            if &h.id() == id {
                return Ok(Some(p));
            }
        }
    }
    Ok(None)
}

/// Loads the state saved at `path` (and its ancestors) for `model`, refusing files made for
/// another model, corrupted, truncated or from an unknown format version.
#[tracing::instrument(level = "info", name = "load_state", skip_all, fields(path = %path.display(), tokens))]
pub fn load_state(model: &LoadedModel, path: &Path) -> Result<LoadedState> {
    let t0 = Instant::now();
    let chain = resolve_chain(path)?;
    let total = chain.last().map(|s| s.end()).unwrap_or(0);
    let state = load_chain(&chain, total, &model.model, model.fingerprint())?;
    let transcript = chain
        .last()
        .and_then(|s| s.header.transcript.as_deref())
        .and_then(Transcript::from_json);
    tracing::Span::current().record("tokens", total);
    Ok(LoadedState {
        state,
        chain: chain.iter().map(|s| s.id.clone()).collect(),
        transcript,
        file_bytes: chain.iter().map(|s| s.file_bytes).sum(),
        load_time: t0.elapsed(),
        chain_len: total,
    })
}

impl LoadedState {
    /// The parent to give [`save_state`] when saving this state after it grew.
    pub fn as_parent(&self, len: usize) -> Option<Parent> {
        self.chain.last().map(|id| Parent {
            id: id.clone(),
            len,
            chain: self.chain.clone(),
        })
    }
}

/// The seed's name for [`save_state`]: saves the attention state with its token ids and positions.
pub fn save_cache_to_disk(model: &LoadedModel, state: &KvState, path: &Path, dtype: StoredDType) -> Result<SavedState> {
    save_state(model, state, path, dtype, None, None)
}

/// The seed's name for [`load_state`]: the attention state and its context (tokens, transcript).
pub fn load_cache_from_disk(model: &LoadedModel, path: &Path) -> Result<LoadedState> {
    load_state(model, path)
}
