//! Story mode: N alternative continuations from the same frozen state, side by side; the one
//! the user picks extends the branch, the others can be kept as sibling nodes.

use super::{Alternative, Session};
use crate::error::{Error, Result};
use crate::transcript::Transcript;
use crate::tree::NodeView;
use freeze_attn_engine::{generate, Event, GenerateParams, KvState};
use freeze_attn_library::{NodeId, NodeKind};

pub(crate) struct Pending {
    pub state: KvState,
    pub text: String,
}

/// The first `n` words of `text` (an ellipsis when there are more), or "(empty)".
fn first_words(text: &str, n: usize) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    match words.len() {
        0 => "(empty)".into(),
        k if k <= n => words.join(" "),
        _ => format!("{}…", words[..n].join(" ")),
    }
}

impl Session {
    /// Generates `n` continuations of the live text (seeds `seed`, `seed+1`, …), streaming each
    /// as `(index, text)`. The live state itself is not changed.
    #[tracing::instrument(level = "info", name = "session.story_alternatives", skip_all, fields(n = n))]
    pub fn story_alternatives(
        &mut self,
        n: usize,
        params: &GenerateParams,
        on_text: &mut dyn FnMut(usize, &str),
    ) -> Result<Vec<Alternative>> {
        let Transcript::Text { text } = &self.live.transcript else {
            return Err(Error::Invalid(
                "alternatives continue a text: start a story first".into(),
            ));
        };
        if n == 0 || n > 16 {
            return Err(Error::Invalid(format!("ask for 1 to 16 alternatives, not {n}")));
        }
        let text = text.clone();
        let prompt = self.text_tokens_after(&text)?;
        if self.live.state.is_empty() && prompt.is_empty() {
            return Err(Error::Invalid("write a beginning first".into()));
        }
        // Feed what the state lacks once; every alternative forks from there.
        let mut base = self.live.state.fork();
        if prompt.len() > 1 {
            self.model
                .model
                .prefill(&prompt[..prompt.len() - 1], &mut base, params.chunk, &mut |_| true)?;
        }
        let last = prompt.last().copied();
        self.live.state = base.fork();
        self.cancel.reset();
        self.alternatives.clear();
        let mut out = Vec::new();
        for i in 0..n {
            let mut p = params.clone();
            p.sampling.seed = params.sampling.seed.wrapping_add(i as u64);
            let mut state = base.fork();
            let feed: Vec<u32> = last.into_iter().collect();
            let g = generate(
                &self.model.model,
                &self.model.tokenizer,
                &mut state,
                &feed,
                &p,
                &self.cancel,
                &mut |e| {
                    if let Event::Text(t) = e {
                        on_text(i, t)
                    }
                },
            )?;
            out.push(Alternative {
                index: i,
                text: g.text.clone(),
                tokens: g.tokens.len(),
            });
            self.alternatives.push(Pending { state, text: g.text });
            if self.cancel.is_cancelled() {
                break;
            }
        }
        Ok(out)
    }

    /// Keeps alternative `index`: it extends the branch as a new node named `name` (a child of
    /// the beginning, which is frozen first if it was not). With `keep_others`, the other
    /// alternatives become sibling nodes. Returns the chosen node first.
    pub fn keep_alternative(&mut self, index: usize, name: &str, keep_others: bool) -> Result<Vec<NodeView>> {
        if index >= self.alternatives.len() {
            return Err(Error::Invalid(format!(
                "there is no alternative {index}: generate alternatives first"
            )));
        }
        let Transcript::Text { text: beginning } = self.live.transcript.clone() else {
            return Err(Error::Invalid("the live state is not a story".into()));
        };
        // The branch point must be a node.
        let parent = match (&self.live.base, self.live.dirty()) {
            (Some(b), false) => b.node,
            (base, _) => {
                let parent_of = base.as_ref().map(|b| b.node);
                let bname = crate::freeze::unique_name(&self.library, parent_of, &format!("{name} · beginning"))?;
                let id = self.freeze_live(&bname, NodeKind::Story, parent_of)?;
                self.rebase(id)?;
                id
            }
        };
        let pending = std::mem::take(&mut self.alternatives);
        let base = self.live.base.clone();
        let shared = self.live.shared;
        let mut nodes = Vec::new();
        let order: Vec<usize> = std::iter::once(index)
            .chain((0..pending.len()).filter(|&i| i != index && keep_others))
            .collect();
        let mut chosen_live = None;
        for i in order {
            let p = &pending[i];
            // The others are named by how they begin, so the kept siblings can be told apart.
            let n = if i == index {
                name.to_string()
            } else {
                format!("{name} · {}", first_words(&p.text, 5))
            };
            let n = crate::freeze::unique_name(&self.library, Some(parent), &n)?;
            self.live.state = p.state.fork();
            self.live.transcript = Transcript::Text {
                text: format!("{beginning}{}", p.text),
            };
            self.live.base = base.clone();
            self.live.shared = shared;
            let id = self.freeze_live(&n, NodeKind::Story, Some(parent))?;
            nodes.push(id);
            if i == index {
                chosen_live = Some((self.live.state.fork(), self.live.transcript.clone(), id));
            }
        }
        let (state, transcript, id) = chosen_live.expect("the chosen alternative was frozen");
        self.live.state = state;
        self.live.transcript = transcript;
        self.rebase(id)?;
        nodes.iter().map(|id: &NodeId| self.node_view(*id)).collect()
    }
}
