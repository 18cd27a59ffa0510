//! What produced a state: a conversation or a text. Stored with every saved state so a thawed
//! state can be shown, continued with the chat template, or forked at a message.

use freeze_attn_engine::{LoadedModel, Message};
use serde::{Deserialize, Serialize};

/// Characters of a transcript a preview is made from (the library keeps a line of 160).
pub const PREVIEW_SOURCE_CHARS: usize = 400;

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

    /// The conversation or text as Markdown, to read or share: `title` as the heading, then each
    /// message under its speaker (the system prompt as a quote), or the text as it is.
    pub fn to_markdown(&self, title: &str) -> String {
        let mut out = format!("# {}\n\n", title.trim());
        match self {
            Transcript::Text { text } => {
                out.push_str(text.trim_end());
                out.push('\n');
            }
            Transcript::Chat { messages } => {
                for m in messages {
                    let body = m.content.trim_end();
                    match m.role.as_str() {
                        "system" => {
                            out.push_str("**System prompt**\n\n");
                            for line in body.lines() {
                                out.push_str(if line.is_empty() { ">" } else { "> " });
                                out.push_str(line);
                                out.push('\n');
                            }
                        }
                        role => {
                            let who = match role {
                                "user" => "You",
                                "assistant" => "Model",
                                "tool" => "Tool result",
                                other => other,
                            };
                            out.push_str(&format!("**{who}**\n\n"));
                            if !body.is_empty() {
                                out.push_str(body);
                                out.push('\n');
                            }
                            for call in &m.tool_calls {
                                if !body.is_empty() {
                                    out.push('\n');
                                }
                                out.push_str(&format!(
                                    "Calls `{}` with:\n\n```json\n{}\n```\n",
                                    call.name,
                                    call.arguments.trim()
                                ));
                            }
                        }
                    }
                    out.push('\n');
                }
            }
        }
        out
    }

    /// A line of what a node with this transcript holds, for listings and the map: a chat's
    /// last message that says something; a text's part after `parent`'s text when it continues
    /// it (a story's alternative reads as its own words), else its beginning. Not cut to one
    /// line here (the library does that); at most [`PREVIEW_SOURCE_CHARS`] characters taken.
    pub fn preview(&self, parent: Option<&Transcript>) -> String {
        let line = match self {
            Transcript::Chat { messages } => {
                // A reply that is only function calls says what it calls.
                let said = messages.iter().rev().find_map(|m| match m.content.trim() {
                    "" => m
                        .tool_calls
                        .first()
                        .map(|c| format!("{}({})", c.name, c.arguments.trim())),
                    text => Some(text.to_string()),
                });
                return said.unwrap_or_default().chars().take(PREVIEW_SOURCE_CHARS).collect();
            }
            Transcript::Text { text } => match parent {
                Some(Transcript::Text { text: before })
                    if text.len() > before.len()
                        && text.starts_with(before.as_str())
                        && !text[before.len()..].trim().is_empty() =>
                {
                    text[before.len()..].trim_start()
                }
                _ => text.trim_start(),
            },
        };
        line.chars().take(PREVIEW_SOURCE_CHARS).collect()
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_json(s: &str) -> Option<Self> {
        serde_json::from_str(s).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_names_each_speaker_and_quotes_the_system_prompt() {
        let t = Transcript::Chat {
            messages: vec![
                Message::system("Be brief.\nAlways."),
                Message::user("Hi"),
                Message::assistant("Hello.\n\nHow can I help?"),
            ],
        };
        assert_eq!(
            t.to_markdown("Ada"),
            "# Ada\n\n**System prompt**\n\n> Be brief.\n> Always.\n\n**You**\n\nHi\n\n**Model**\n\nHello.\n\nHow can I help?\n\n"
        );
        let story = Transcript::Text {
            text: "Once upon a time.  ".into(),
        };
        assert_eq!(story.to_markdown(" The door "), "# The door\n\nOnce upon a time.\n");
    }

    #[test]
    fn a_preview_is_the_last_words_said_or_the_text_a_node_added() {
        let chat = Transcript::Chat {
            messages: vec![Message::user("Hi"), Message::assistant("Ahoy!"), Message::user("  ")],
        };
        assert_eq!(chat.preview(None), "Ahoy!", "the last message that says something");
        let story = |t: &str| Transcript::Text { text: t.into() };
        let parent = story("Once upon a time");
        assert_eq!(story("Once upon a time, a fox").preview(Some(&parent)), ", a fox");
        assert_eq!(story("Once upon a time").preview(Some(&parent)), "Once upon a time");
        assert_eq!(story("Another tale").preview(Some(&parent)), "Another tale");
        assert_eq!(story("  A document").preview(Some(&chat)), "A document");
        let long = story(&"é".repeat(1000)).preview(None);
        assert_eq!(long.chars().count(), PREVIEW_SOURCE_CHARS);
        assert_eq!(Transcript::default().preview(None), "");
    }

    fn calls(content: &str, calls: &[(&str, &str)]) -> Message {
        let mut m = Message::assistant(content);
        m.tool_calls = calls
            .iter()
            .enumerate()
            .map(|(i, (name, arguments))| freeze_attn_engine::ToolCall {
                id: format!("call_{i}"),
                name: name.to_string(),
                arguments: arguments.to_string(),
            })
            .collect();
        m
    }

    #[test]
    fn function_calls_and_their_results_are_shown_in_markdown_and_previews() {
        let mut result = Message::new("tool", "{\"temp\": 21}");
        result.tool_call_id = Some("call_0".into());
        let t = Transcript::Chat {
            messages: vec![
                Message::user("Weather in Tokyo?"),
                calls("", &[("get_weather", "{\"city\": \"Tokyo\"}")]),
                result,
            ],
        };
        assert_eq!(
            t.to_markdown("Tools"),
            "# Tools\n\n**You**\n\nWeather in Tokyo?\n\n**Model**\n\nCalls `get_weather` with:\n\n```json\n\
             {\"city\": \"Tokyo\"}\n```\n\n**Tool result**\n\n{\"temp\": 21}\n\n"
        );
        assert_eq!(t.preview(None), "{\"temp\": 21}");
        let asked = Transcript::Chat {
            messages: vec![
                Message::user("Weather?"),
                calls(" ", &[("get_weather", " {\"city\": \"Oslo\"} "), ("get_time", "{}")]),
            ],
        };
        assert_eq!(
            asked.preview(None),
            "get_weather({\"city\": \"Oslo\"})",
            "a reply that only calls"
        );
        let both = Transcript::Chat {
            messages: vec![calls("Let me look.", &[("get_time", "{}")])],
        };
        assert_eq!(
            both.to_markdown("B"),
            "# B\n\n**Model**\n\nLet me look.\n\nCalls `get_time` with:\n\n```json\n{}\n```\n\n"
        );
        assert_eq!(both.preview(None), "Let me look.");
    }
}
