//! Chatting with the live state, and continuing a text (story) state.

use super::{Reply, Session};
use crate::error::{Error, Result};
use crate::transcript::Transcript;
use freeze_attn_engine::chat::sync;
use freeze_attn_engine::{generate, Event, GenerateParams, Message};

impl Session {
    /// Adds a user turn and generates the assistant's reply. Only the new turn's tokens (and any
    /// generated tokens whose text re-encodes differently) are processed.
    #[tracing::instrument(level = "info", name = "session.chat_send", skip_all, fields(prompt_tokens, tokens))]
    pub fn chat_send(
        &mut self,
        message: &str,
        params: &GenerateParams,
        on_event: &mut dyn FnMut(Event<'_>),
    ) -> Result<Reply> {
        let Transcript::Chat { messages } = &self.live.transcript else {
            return Err(Error::Invalid(
                "the live state is a text (story or document); continue it as text, or ask a question".into(),
            ));
        };
        let mut messages = messages.clone();
        messages.push(Message::user(message));
        let target = self.model.template()?.render(&messages, true)?;
        self.reply_to(target, messages, params, on_event)
    }

    /// Generates a reply (again) to the conversation as it stands: after a fork at a user message,
    /// or to continue an assistant message cut by a fork.
    #[tracing::instrument(level = "info", name = "session.continue_reply", skip_all)]
    pub fn continue_reply(&mut self, params: &GenerateParams, on_event: &mut dyn FnMut(Event<'_>)) -> Result<Reply> {
        let Transcript::Chat { messages } = &self.live.transcript else {
            return Err(Error::Invalid("the live state is not a conversation".into()));
        };
        let mut messages = messages.clone();
        let (target, partial) = match messages.last() {
            Some(m) if m.role == "assistant" => {
                let partial = messages.pop().unwrap().content;
                let open = self.model.template()?.render(&messages, true)?;
                (format!("{open}{partial}"), partial)
            }
            Some(_) => (self.model.template()?.render(&messages, true)?, String::new()),
            None => return Err(Error::Invalid("the conversation is empty: send a message".into())),
        };
        let mut reply = self.reply_to(target, messages, params, on_event)?;
        if !partial.is_empty() {
            if let Transcript::Chat { messages } = &mut self.live.transcript {
                if let Some(last) = messages.last_mut() {
                    last.content = format!("{partial}{}", last.content);
                }
            }
            reply.text = format!("{partial}{}", reply.text);
            reply.live = self.live();
        }
        Ok(reply)
    }

    fn reply_to(
        &mut self,
        target: String,
        messages: Vec<Message>,
        params: &GenerateParams,
        on_event: &mut dyn FnMut(Event<'_>),
    ) -> Result<Reply> {
        let plan = sync(&self.model.tokenizer, self.live.state.tokens(), &target)?;
        let before = (self.live.state.len(), self.live.shared);
        self.live.truncate(plan.keep);
        if let Err(e) = self.check_tokens_fit(plan.append.len() + 1) {
            self.live.shared = before.1;
            return Err(e);
        }
        self.cancel.reset();
        let g = generate(
            &self.model.model,
            &self.model.tokenizer,
            &mut self.live.state,
            &plan.append,
            params,
            &self.cancel,
            on_event,
        )?;
        let mut messages = messages;
        messages.push(Message::assistant(g.text.clone()));
        self.live.transcript = Transcript::Chat { messages };
        tracing::Span::current()
            .record("prompt_tokens", plan.append.len())
            .record("tokens", g.tokens.len());
        Ok(Reply::new(&g, plan.append.len(), self.live()))
    }

    /// Appends `text` (possibly empty) to a text state and generates a continuation.
    #[tracing::instrument(level = "info", name = "session.continue_text", skip_all)]
    pub fn continue_text(
        &mut self,
        text: &str,
        params: &GenerateParams,
        on_event: &mut dyn FnMut(Event<'_>),
    ) -> Result<Reply> {
        let Transcript::Text { text: current } = &self.live.transcript else {
            return Err(Error::Invalid(
                "the live state is a conversation; send a message instead".into(),
            ));
        };
        let full = format!("{current}{text}");
        if full.is_empty() {
            return Err(Error::Invalid("write a beginning first".into()));
        }
        let prompt = self.text_tokens_after(&full)?;
        self.check_tokens_fit(prompt.len() + 1)?;
        self.cancel.reset();
        let g = generate(
            &self.model.model,
            &self.model.tokenizer,
            &mut self.live.state,
            &prompt,
            params,
            &self.cancel,
            on_event,
        )?;
        self.live.transcript = Transcript::Text {
            text: format!("{full}{}", g.text),
        };
        Ok(Reply::new(&g, prompt.len(), self.live()))
    }

    /// Rewinds the live text state to where it agrees with `full` and returns the tokens to
    /// feed (the model's BOS first if the state is empty and the model wants one).
    pub(crate) fn text_tokens_after(&mut self, full: &str) -> Result<Vec<u32>> {
        let tok = &self.model.tokenizer;
        let bos = if tok.add_bos() {
            tok.bos().and_then(|b| tok.token_text(b)).unwrap_or_default()
        } else {
            String::new()
        };
        let plan = sync(tok, self.live.state.tokens(), &format!("{bos}{full}"))?;
        self.live.truncate(plan.keep);
        Ok(plan.append)
    }
}
