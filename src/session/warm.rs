//! Recently used states kept in memory, least recently used first out, bounded by bytes.
//! States are forks: an entry and the live state share K/V until one of them grows.

use crate::freeze::Base;
use crate::transcript::Transcript;
use freeze_attn_engine::KvState;
use freeze_attn_library::{NodeId, NodeKind};

pub(super) struct Entry {
    pub id: NodeId,
    pub state: KvState,
    pub transcript: Transcript,
    pub base: Base,
    pub kind: NodeKind,
}

pub(super) struct Warm {
    entries: Vec<Entry>,
    max_bytes: usize,
}

impl Warm {
    pub fn new(max_bytes: usize) -> Self {
        Self {
            entries: Vec::new(),
            max_bytes,
        }
    }

    /// The entry for `id`, now the most recently used.
    pub fn get(&mut self, id: NodeId) -> Option<&Entry> {
        let i = self.entries.iter().position(|e| e.id == id)?;
        let e = self.entries.remove(i);
        self.entries.push(e);
        self.entries.last()
    }

    pub fn put(&mut self, id: NodeId, state: KvState, transcript: Transcript, base: Base, kind: NodeKind) {
        self.remove(id);
        self.entries.push(Entry {
            id,
            state,
            transcript,
            base,
            kind,
        });
        while self.entries.len() > 1 && self.bytes() > self.max_bytes {
            self.entries.remove(0);
        }
    }

    pub fn remove(&mut self, id: NodeId) {
        self.entries.retain(|e| e.id != id);
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }

    fn bytes(&self) -> usize {
        self.entries.iter().map(|e| e.state.allocated_bytes()).sum()
    }
}
