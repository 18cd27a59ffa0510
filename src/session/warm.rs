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
        // Least recently used first, but an entry whose buffers another entry holds too (a
        // node frozen earlier in the same conversation) costs nothing alone: the oldest entry
        // whose going frees memory goes first, and only when none does (the memory is shared
        // by several) the oldest of all, toward freeing the group. The newest always stays.
        loop {
            let total = self.bytes();
            if total <= self.max_bytes || self.entries.len() < 2 {
                break;
            }
            let frees = |i: usize| {
                let others = self.entries.iter().enumerate().filter(|&(j, _)| j != i);
                KvState::memory_of(others.map(|(_, (_, l))| &l.state)) < total
            };
            let i = (0..self.entries.len() - 1).find(|&i| frees(i)).unwrap_or(0);
            self.entries.remove(i);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transcript::Transcript;
    use freeze_attn_engine::{DType, Device, KvGeometry, Tensor};
    use freeze_attn_library::NodeKind;

    const GEO: KvGeometry = KvGeometry {
        n_layer: 1,
        n_kv_head: 1,
        head_dim: 4,
        dtype: DType::F32,
        max_len: 64,
    };

    /// A state of `n` tokens in buffers of its own.
    fn live(n: usize) -> Live {
        let buf = || Tensor::zeros((1, n, 4), DType::F32, &Device::Cpu).unwrap();
        let state = KvState::from_buffers(GEO, &Device::Cpu, (0..n as u32).collect(), vec![(buf(), buf())]).unwrap();
        Live {
            state,
            transcript: Transcript::default(),
            kind: NodeKind::Chat,
            base: None,
            shared: 0,
        }
    }

    fn ids(w: &Warm) -> Vec<i64> {
        w.entries.iter().map(|(id, _)| id.0).collect()
    }

    #[test]
    fn entries_that_share_a_newer_ones_buffers_are_free_and_stay() {
        let per = GEO.bytes_per_position();
        // Room for 10 positions. A node of 4 tokens and one of 4 more that shares its buffers
        // (forks of one state, as a conversation's nodes are) count once.
        let mut w = Warm::new(10 * per);
        let a = live(4);
        w.put(NodeId(1), a.fork());
        w.put(NodeId(2), a.fork());
        assert_eq!((ids(&w), w.bytes()), (vec![1, 2], 4 * per));
        // A state of 8 positions of its own: over the bound. Neither 1 nor 2 frees anything
        // alone, so the oldest goes, then 2, which now frees the group's buffers.
        w.put(NodeId(3), live(8));
        assert_eq!((ids(&w), w.bytes()), (vec![3], 8 * per));
        // An older entry that costs nothing stays: 4 and 5 share buffers, 6 has its own.
        let mut w = Warm::new(10 * per);
        let b = live(3);
        w.put(NodeId(4), b.fork());
        w.put(NodeId(6), live(5));
        w.put(NodeId(5), b.fork());
        w.put(NodeId(7), live(4));
        // 3 + 5 + 4 = 12 > 10: 4 is the oldest, but 5 holds its buffers; 6 goes.
        assert_eq!((ids(&w), w.bytes()), (vec![4, 5, 7], 7 * per));
    }
}
