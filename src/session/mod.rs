//! A `Session`: the model, the library and the **live** attention state a user is working on
//! (what the app's centre pane and `freeze-attn chat` show). Every user-visible step is a method
//! that the app's commands and the CLI call: thaw a node, chat, continue a story, generate
//! alternatives, freeze, fork, process a document, ask it questions.
//!
//! Recently thawed states stay in memory (bounded, [`warm`]), so switching back is instant.

mod chat;
pub mod complete;
mod document;
pub mod host;
mod story;
mod views;
mod warm;

pub use views::{Alternative, LiveState, QuestionView, Reply, ThawReport};

use crate::error::{Error, Result};
use crate::fork::ForkPoint;
use crate::freeze::{freeze, Base, FreezeRequest};
use crate::live::Live;
use crate::thaw::thaw;
use crate::transcript::Transcript;
use crate::tree::{view, NodeView};
use freeze_attn_engine::state::StoredDType;
use freeze_attn_engine::{CancelToken, GenerateParams, KvState, LoadedModel, Message};
use freeze_attn_library::{Library, NodeId, NodeKind};
use std::time::Instant;
use warm::Warm;

pub struct Session {
    pub model: LoadedModel,
    pub library: Library,
    pub params: GenerateParams,
    pub dtype: StoredDType,
    pub cancel: CancelToken,
    pub(crate) live: Live,
    warm: Warm,
    pub(crate) alternatives: Vec<story::Pending>,
    pub(crate) answer: Option<Live>,
    /// Most bytes of segment files that cache nodes (a server's recent requests) may use alone;
    /// `None`: cache nodes are never evicted.
    pub cache_quota: Option<u64>,
}

/// Memory kept for recently used states.
const WARM_BYTES: usize = 1 << 30;

impl Session {
    pub fn new(model: LoadedModel, library: Library) -> Result<Self> {
        crate::freeze::register_model(&library, &model)?;
        let live = Live::empty(&model, NodeKind::Chat, Transcript::Chat { messages: Vec::new() });
        Ok(Self {
            model,
            library,
            params: GenerateParams::default(),
            dtype: StoredDType::F16,
            cancel: CancelToken::new(),
            live,
            warm: Warm::new(WARM_BYTES),
            alternatives: Vec::new(),
            answer: None,
            cache_quota: None,
        })
    }

    /// A session on a model named as `--model` names it, and the user's library.
    pub fn open(model: &str, device: freeze_attn_engine::DeviceChoice) -> Result<Self> {
        let model = crate::open_model(model, device)?;
        Self::new(model, crate::tree::open_library()?)
    }

    /// Replaces the model (the live state starts empty: states belong to one model).
    pub fn set_model(&mut self, model: LoadedModel) -> Result<()> {
        crate::freeze::register_model(&self.library, &model)?;
        self.live = Live::empty(&model, NodeKind::Chat, Transcript::Chat { messages: Vec::new() });
        self.model = model;
        self.warm.clear();
        self.alternatives.clear();
        self.answer = None;
        Ok(())
    }

    /// Uses `source` (Jinja) as the chat template instead of the model's own, until the model
    /// is replaced: a template with function calling for a model whose own has none.
    pub fn use_chat_template(&mut self, source: &str) -> Result<()> {
        self.model.set_chat_template(source)?;
        Ok(())
    }

    /// The live attention state, for callers that feed it tokens themselves (benchmarks, tests).
    pub fn live_state_mut(&mut self) -> &mut KvState {
        &mut self.live.state
    }

    pub fn live(&self) -> LiveState {
        LiveState::of(&self.live, &self.model)
    }

    /// A new, empty live state: a chat (with an optional system prompt) or a story.
    pub fn start_live(&mut self, kind: NodeKind, system: Option<&str>) -> LiveState {
        let transcript = match kind {
            NodeKind::Chat | NodeKind::Personality | NodeKind::Cache => Transcript::Chat {
                messages: system
                    .filter(|s| !s.is_empty())
                    .map(Message::system)
                    .into_iter()
                    .collect(),
            },
            NodeKind::Story | NodeKind::Document => Transcript::Text { text: String::new() },
        };
        self.live = Live::empty(&self.model, kind, transcript);
        self.alternatives.clear();
        self.live()
    }

    /// Makes node `id` the live state: from memory when it was used recently, else from disk.
    #[tracing::instrument(level = "info", name = "session.thaw", skip(self), fields(from_memory, tokens))]
    pub fn thaw(&mut self, id: NodeId) -> Result<ThawReport> {
        let t0 = Instant::now();
        let (live, from_memory) = match self.warm.get(id) {
            Some(w) => (w.fork(), true),
            None => {
                let t = thaw(&self.library, &self.model, id)?;
                self.warm.put(id, t.fork());
                (t, false)
            }
        };
        let n = live.state.len();
        tracing::Span::current()
            .record("from_memory", from_memory)
            .record("tokens", n);
        self.live = live;
        self.alternatives.clear();
        Ok(ThawReport {
            node: id.0,
            millis: t0.elapsed().as_secs_f64() * 1000.0,
            reused_tokens: n,
            reprocessed_tokens: 0,
            from_memory,
            live: self.live(),
        })
    }

    /// Saves the live state as a node (a child of the node it came from); the live state then
    /// continues from the new node. A state thawed from an empty branch (a whole-node fork with
    /// nothing added yet) that has grown is saved into that branch instead, under `name`: a fork
    /// and what was said after it are one node, not a 0-byte copy with a child.
    #[tracing::instrument(level = "info", name = "session.freeze", skip(self))]
    pub fn freeze(&mut self, name: &str, kind: NodeKind) -> Result<NodeView> {
        let id = match self.empty_branch_base()? {
            Some(branch) => {
                let req = self.freeze_request(name, kind, None);
                crate::freeze::freeze_into_branch(&self.library, &self.model, &self.live.state, &req, branch)?;
                self.warm.remove(branch);
                branch
            }
            None => {
                let parent = self.live.base.as_ref().map(|b| b.node);
                self.freeze_live(name, kind, parent)?
            }
        };
        self.rebase(id)?;
        self.node_view(id)
    }

    /// The node the live state was thawed from, when it is an empty branch that the live state
    /// continues (nothing of it rewound) and has grown past.
    pub fn empty_branch_base(&self) -> Result<Option<NodeId>> {
        let Some(base) = &self.live.base else { return Ok(None) };
        let grown = self.live.shared == base.token_count && self.live.state.len() > base.token_count;
        Ok((grown && self.library.is_empty_branch(base.node)?).then_some(base.node))
    }

    pub(crate) fn freeze_live(&mut self, name: &str, kind: NodeKind, parent: Option<NodeId>) -> Result<NodeId> {
        let req = self.freeze_request(name, kind, parent);
        freeze(&self.library, &self.model, &self.live.state, &req)
    }

    fn freeze_request<'a>(&'a self, name: &'a str, kind: NodeKind, parent: Option<NodeId>) -> FreezeRequest<'a> {
        FreezeRequest {
            name,
            kind,
            parent,
            transcript: &self.live.transcript,
            base: self.live.base.as_ref().map(|b| (b, self.live.shared)),
            dtype: self.dtype,
        }
    }

    /// After a freeze, the live state is node `id`'s state.
    pub(crate) fn rebase(&mut self, id: NodeId) -> Result<()> {
        let node = self.library.node(id)?;
        let base = Base {
            node: id,
            tip: node.tip.clone(),
            token_count: node.token_count as usize,
        };
        self.live.kind = node.kind;
        self.live.shared = base.token_count;
        self.live.base = Some(base);
        self.warm.put(id, self.live.fork());
        Ok(())
    }

    /// A new child of `id` (cut at `at`), thawed and ready to continue.
    #[tracing::instrument(level = "info", name = "session.fork", skip(self))]
    pub fn fork(&mut self, id: NodeId, at: Option<ForkPoint>, name: &str) -> Result<ThawReport> {
        let child = crate::fork::fork(&self.library, &self.model, id, at, name)?;
        self.thaw(child)
    }

    pub fn node_view(&self, id: NodeId) -> Result<NodeView> {
        let node = self.library.node(id)?;
        let s = self.library.summary(id)?;
        let mut v = view(&self.library, &s, 0, Some(&self.model));
        v.notes = node.notes;
        Ok(v)
    }

    /// Forgets a node's warm copy (after it was deleted or changed).
    pub fn forget(&mut self, id: NodeId) {
        self.warm.remove(id);
        if self.live.base.as_ref().is_some_and(|b| b.node == id) {
            self.live.base = None;
            self.live.shared = 0;
        }
    }

    pub(crate) fn check_tokens_fit(&self, extra: usize) -> Result<()> {
        let needed = self.live.state.len() + extra;
        let context = self.model.model.config().context_length;
        if needed > context {
            return Err(Error::Engine(freeze_attn_engine::EngineError::ContextOverflow {
                needed,
                context,
            }));
        }
        Ok(())
    }
}
