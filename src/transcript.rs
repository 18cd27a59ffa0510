//! What produced a state: a conversation or a text. Stored with every saved state so a thawed
//! state can be shown, continued with the chat template, or forked at a message.

use freeze_attn_engine::{LoadedModel, Message};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub enum Transcript {
    Chat { messages: Vec<Message> },
    Text { text: String },
}

impl Default for Transcript {
    fn default() -> Self {
        Transcript::Text { text: String::new() }
    }
}

impl Transcript {
    /// The text whose encoding the state holds (chat: the rendered conversation, without a
    /// generation prompt unless the last message is the user's and one is wanted).
    pub fn render(&self, model: &LoadedModel, add_generation_prompt: bool) -> crate::Result<String> {
        Ok(match self {
            Transcript::Chat { messages } => model.template()?.render(messages, add_generation_prompt)?,
            Transcript::Text { text } => text.clone(),
        })
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_json(s: &str) -> Option<Self> {
        serde_json::from_str(s).ok()
    }
}
