//! [`Live`]: an attention state in memory with what it came from. The one type for a state that
//! is being worked on, a thawed node, and a recently used node kept warm.

use crate::freeze::Base;
use crate::transcript::Transcript;
use freeze_attn_engine::{KvState, LoadedModel};
use freeze_attn_library::NodeKind;

/// A state in memory: its K/V and tokens, the transcript that produced it, its kind, and the
/// node it came from (if any) with how much of that node it still equals.
pub struct Live {
    pub state: KvState,
    pub transcript: Transcript,
    pub kind: NodeKind,
    /// The node it was thawed from or last frozen as.
    pub base: Option<Base>,
    /// Leading tokens that still equal the base node's state.
    pub shared: usize,
}

impl Live {
    /// A new, empty state for `model`.
    pub fn empty(model: &LoadedModel, kind: NodeKind, transcript: Transcript) -> Self {
        Self {
            state: model.model.new_state(),
            transcript,
            kind,
            base: None,
            shared: 0,
        }
    }

    /// A copy that shares K/V storage with this one until either grows.
    pub fn fork(&self) -> Self {
        Self {
            state: self.state.fork(),
            transcript: self.transcript.clone(),
            kind: self.kind,
            base: self.base.clone(),
            shared: self.shared,
        }
    }

    /// Rewinds the state to `len` tokens, keeping track of what is still shared with the base.
    pub fn truncate(&mut self, len: usize) {
        self.state.truncate(len);
        self.shared = self.shared.min(len);
    }

    /// Whether it holds tokens that its base node does not (or any tokens, without a base).
    pub fn dirty(&self) -> bool {
        match &self.base {
            Some(b) => self.shared != b.token_count || self.state.len() != b.token_count,
            None => !self.state.is_empty(),
        }
    }
}
