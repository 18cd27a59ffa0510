//! Recently used states kept in memory, least recently used first out, bounded by bytes.
//! Entries are forks: an entry and the live state share K/V until one of them grows.

use crate::live::Live;
use freeze_attn_engine::KvState;
use freeze_attn_library::NodeId;

pub(super) struct Warm {
    entries: Vec<(NodeId, Live)>,
    max_bytes: usize,
}

impl Warm {
    pub fn new(max_bytes: usize) -> Self {
        Self {
            entries: Vec::new(),
            max_bytes,
        }
    }

    /// The state of node `id`, now the most recently used.
    pub fn get(&mut self, id: NodeId) -> Option<&Live> {
        let i = self.entries.iter().position(|(e, _)| *e == id)?;
        let e = self.entries.remove(i);
        self.entries.push(e);
        self.entries.last().map(|(_, l)| l)
    }

    pub fn put(&mut self, id: NodeId, live: Live) {
        self.remove(id);
        self.entries.push((id, live));
        while self.entries.len() > 1 && self.bytes() > self.max_bytes {
            self.entries.remove(0);
        }
    }

    /// The entry sharing the longest token prefix with `tokens` (most recent among equals), and
    /// that length; `None` when none shares a token.
    pub fn longest_prefix(&self, tokens: &[u32]) -> Option<(NodeId, usize)> {
        let lcp = |a: &[u32]| a.iter().zip(tokens).take_while(|(x, y)| x == y).count();
        self.entries
            .iter()
            .map(|(id, l)| (*id, lcp(l.state.tokens())))
            .filter(|&(_, n)| n > 0)
            .max_by_key(|&(_, n)| n)
    }

    pub fn remove(&mut self, id: NodeId) {
        self.entries.retain(|(e, _)| *e != id);
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// Memory the entries hold together: states that share buffers (a conversation frozen
    /// turn after turn continues in place, so its nodes share one cache) count them once.
    fn bytes(&self) -> usize {
        KvState::memory_of(self.entries.iter().map(|(_, l)| &l.state))
    }
}
