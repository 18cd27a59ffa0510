//! Document mode: a text processed once into a node; questions answered from its state without
//! changing it; "continue from here" makes an answer the live state.

use super::{Live, Reply, Session};
use crate::error::{Error, Result};
use crate::transcript::Transcript;
use crate::tree::NodeView;
use freeze_attn_engine::{generate, Event, GenerateParams, Message, PrefillProgress};
use freeze_attn_library::{NodeId, NodeKind};
use std::path::Path;

impl Session {
    /// Reads a text or Markdown file, processes it (with progress; `stop` cancels) and saves it
    /// as a document node, which becomes the live state.
    #[tracing::instrument(level = "info", name = "session.process_document", skip_all, fields(path = %path.display(), tokens))]
    pub fn process_document(
        &mut self,
        path: &Path,
        name: &str,
        on_progress: &mut dyn FnMut(PrefillProgress),
    ) -> Result<NodeView> {
        let text = crate::input::read_text_file(path)?;
        if text.trim().is_empty() {
            return Err(Error::Invalid(format!("{} is empty", path.display())));
        }
        let tokens = self.model.tokenizer.encode_prompt(&text)?;
        let context = self.model.model.config().context_length;
        if tokens.len() >= context {
            return Err(Error::Engine(freeze_attn_engine::EngineError::ContextOverflow {
                needed: tokens.len(),
                context,
            }));
        }
        tracing::Span::current().record("tokens", tokens.len());
        let mut state = self.model.model.new_state();
        self.cancel.reset();
        let cancel = self.cancel.clone();
        self.model
            .model
            .prefill(&tokens, &mut state, self.params.chunk, &mut |p| {
                on_progress(p);
                !cancel.is_cancelled()
            })?;
        self.live = Live {
            state,
            transcript: Transcript::Text { text },
            kind: NodeKind::Document,
            base: None,
            shared: 0,
        };
        let name = crate::freeze::unique_name(&self.library, None, name)?;
        let id = self.freeze_live(&name, NodeKind::Document, None)?;
        self.rebase(id)?;
        self.node_view(id)
    }

    /// Answers `question` from node `id`'s state (a document), leaving the node untouched.
    #[tracing::instrument(level = "info", name = "session.ask", skip_all, fields(node = %id))]
    pub fn ask(
        &mut self,
        id: NodeId,
        question: &str,
        params: &GenerateParams,
        on_event: &mut dyn FnMut(Event<'_>),
    ) -> Result<Reply> {
        self.thaw(id)?;
        let doc_len = self.live.state.len();
        let turn = self.model.template()?.render(&[Message::user(question)], true)?;
        let bos = self
            .model
            .tokenizer
            .bos()
            .and_then(|b| self.model.tokenizer.token_text(b))
            .unwrap_or_default();
        let turn = match turn.strip_prefix(bos.as_str()) {
            Some(rest) if !bos.is_empty() && doc_len > 0 => rest.to_string(),
            _ => turn,
        };
        let prompt = self.model.tokenizer.encode(&turn)?;
        self.check_tokens_fit(prompt.len() + 1)?;
        // The last answer makes way for this one (it would replace it anyway): while it lives,
        // the positions after the document are its own, and this answer would first copy the
        // whole document's state to write there.
        self.answer = None;
        let mut state = self.live.state.fork();
        self.cancel.reset();
        let g = generate(
            &self.model.model,
            &self.model.tokenizer,
            &mut state,
            &prompt,
            params,
            &self.cancel,
            on_event,
        )?;
        let doc = match &self.live.transcript {
            Transcript::Text { text } => text.clone(),
            Transcript::Chat { .. } => String::new(),
        };
        let answered = Live {
            state,
            transcript: Transcript::Text {
                text: format!("{doc}{turn}{}", g.text),
            },
            kind: NodeKind::Document,
            base: self.live.base.clone(),
            shared: doc_len,
        };
        let live_view = self.live();
        self.answer = Some(answered);
        let finish = serde_json::to_value(g.finish)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let asked = freeze_attn_library::Question {
            asked_at_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
            question: question.to_string(),
            answer: g.text.clone(),
            tokens: g.tokens.len() as u64,
            finish,
        };
        // The answer is the user's either way: a history that cannot be written (a locked or
        // full library) is reported in the log, not by throwing the answer away.
        if let Err(e) = self.library.add_question(id, &asked) {
            tracing::warn!("the question was answered but not kept in the document's history: {e}");
        }
        Ok(Reply::new(&g, prompt.len(), live_view))
    }

    /// The questions asked of node `id` and their answers, oldest first.
    pub fn questions(&self, id: NodeId) -> Result<Vec<super::QuestionView>> {
        Ok(self
            .library
            .questions(id)?
            .into_iter()
            .map(super::QuestionView::of)
            .collect())
    }

    /// Makes the last answer (document + question + answer) the live state.
    pub fn continue_from_answer(&mut self) -> Result<super::LiveState> {
        let a = self
            .answer
            .take()
            .ok_or_else(|| Error::Invalid("there is no answer to continue from: ask a question first".into()))?;
        self.live = a;
        Ok(self.live())
    }

    /// Node `id` as a document, for callers that need its text without thawing it live.
    pub fn document_text(&self, id: NodeId) -> Result<String> {
        let node = self.library.node(id)?;
        crate::thaw::check_compatible(&self.library, &self.model, &node)?;
        match Transcript::from_json(&node.transcript).unwrap_or_default() {
            Transcript::Text { text } => Ok(text),
            Transcript::Chat { .. } => Err(Error::Invalid("this node is a conversation, not a document".into())),
        }
    }
}
