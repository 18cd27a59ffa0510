//! Function calls in what a model wrote. Chat templates teach models one of two ways to call a
//! tool, and this reads both:
//!
//! - **Llama 3.1 / 3.2 / 3.3** (JSON tool calling): the reply is one or more JSON objects
//!   `{"name": "f", "parameters": {...}}` (some write `"arguments"`, some add
//!   `"type": "function"`), separated by `;` or white space, optionally after `<|python_tag|>`.
//! - **Hermes / Qwen / ChatML** templates: `<tool_call>{"name": "f", "arguments": {...}}</tool_call>`
//!   blocks.
//!
//! A reply is read as calls only when all of it is calls (after leading white space) and every
//! name is one of the tools offered: a model answering with a JSON document, or naming a tool it
//! was not given, has written text, and the text is what the caller gets. The arguments are
//! returned as the model wrote them (a JSON object's text), not re-serialized.

use serde::Deserialize;
use serde_json::value::RawValue;

/// One call read from a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedCall {
    pub name: String,
    /// A JSON object's text.
    pub arguments: String,
}

const PYTHON_TAG: &str = "<|python_tag|>";
const OPEN: &str = "<tool_call>";
const CLOSE: &str = "</tool_call>";

/// How a chat template teaches its model to write a call (what a forced call is made to look
/// like: `tool_choice: "required"` or a named function).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallFormat {
    /// `{"name": "f", "parameters": {…}}` (Llama 3.1 / 3.2 / 3.3).
    LlamaJson,
    /// `<tool_call>\n{"name": "f", "arguments": {…}}\n</tool_call>` (Hermes, Qwen, ChatML).
    ToolCallTags,
}

impl CallFormat {
    /// The format a template's source teaches: tags where it mentions them, else Llama's JSON.
    pub fn of(template_source: &str) -> Self {
        if template_source.contains(OPEN) {
            CallFormat::ToolCallTags
        } else {
            CallFormat::LlamaJson
        }
    }

    /// The key the arguments go under.
    pub fn arguments_key(self) -> &'static str {
        match self {
            CallFormat::LlamaJson => "parameters",
            CallFormat::ToolCallTags => "arguments",
        }
    }

    /// The text before and after the call's JSON object.
    pub fn around(self) -> (&'static str, &'static str) {
        match self {
            CallFormat::LlamaJson => ("", ""),
            CallFormat::ToolCallTags => ("<tool_call>\n", "\n</tool_call>"),
        }
    }
}

/// The calls `text` consists of, or `None` when it is not (only) calls to tools named in
/// `names`.
pub fn parse_tool_calls(text: &str, names: &[&str]) -> Option<Vec<ParsedCall>> {
    let t = text.trim_start();
    let calls = if t.starts_with(OPEN) {
        tagged(t)?
    } else {
        json_calls(t.strip_prefix(PYTHON_TAG).unwrap_or(t))?
    };
    (!calls.is_empty() && calls.iter().all(|c| names.contains(&c.name.as_str()))).then_some(calls)
}

/// Whether `text` may still turn out to be calls as more is written: it is white space, or
/// (after leading white space) it starts one of the forms above or a prefix of their openings.
/// A caller streaming a reply holds text back while this is true.
pub fn may_be_tool_calls(text: &str) -> bool {
    let t = text.trim_start();
    t.is_empty()
        || t.starts_with('{')
        || [OPEN, PYTHON_TAG]
            .iter()
            .any(|marker| t.starts_with(marker) || marker.starts_with(t))
}

#[derive(Deserialize)]
struct Call<'a> {
    name: String,
    #[serde(borrow, default)]
    parameters: Option<&'a RawValue>,
    #[serde(borrow, default)]
    arguments: Option<&'a RawValue>,
    #[serde(rename = "type", default)]
    kind: Option<String>,
}

/// One call object's name and arguments (an object; absent means none).
fn call(json: &str) -> Option<ParsedCall> {
    let c: Call = serde_json::from_str(json).ok()?;
    if c.kind.as_deref().is_some_and(|k| k != "function") || c.name.is_empty() {
        return None;
    }
    let args = match (c.parameters, c.arguments) {
        (Some(_), Some(_)) => return None,
        (Some(a), None) | (None, Some(a)) => a.get(),
        (None, None) => "{}",
    };
    // An object, or a string holding one (some models write the OpenAI wire form).
    let args = match args {
        a if a.starts_with('{') => a.to_string(),
        a => {
            let inner: String = serde_json::from_str(a).ok()?;
            let raw: &RawValue = serde_json::from_str(&inner).ok()?;
            if !raw.get().starts_with('{') {
                return None;
            }
            raw.get().to_string()
        }
    };
    Some(ParsedCall {
        name: c.name,
        arguments: args,
    })
}

/// `{…}` objects separated by `;` or white space, and nothing else.
fn json_calls(mut t: &str) -> Option<Vec<ParsedCall>> {
    let mut calls = Vec::new();
    loop {
        t = t.trim_start_matches(|c: char| c.is_whitespace() || c == ';');
        if t.is_empty() {
            return Some(calls);
        }
        if !t.starts_with('{') {
            return None;
        }
        let mut values = serde_json::Deserializer::from_str(t).into_iter::<&RawValue>();
        let raw = values.next()?.ok()?;
        calls.push(call(raw.get())?);
        t = &t[values.byte_offset()..];
    }
}

/// `<tool_call>…</tool_call>` blocks separated by white space, and nothing else (a reply cut
/// off inside a block has no call).
fn tagged(mut t: &str) -> Option<Vec<ParsedCall>> {
    let mut calls = Vec::new();
    loop {
        t = t.trim_start();
        if t.is_empty() {
            return Some(calls);
        }
        let rest = t.strip_prefix(OPEN)?;
        let end = rest.find(CLOSE)?;
        calls.push(call(rest[..end].trim())?);
        t = &rest[end + CLOSE.len()..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(name: &str, args: &str) -> Vec<ParsedCall> {
        vec![ParsedCall {
            name: name.into(),
            arguments: args.into(),
        }]
    }

    #[test]
    fn llama_json_calls() {
        let names = ["get_weather", "get_time"];
        assert_eq!(
            parse_tool_calls(r#" {"name": "get_weather", "parameters": {"city": "Paris"}}"#, &names),
            Some(one("get_weather", r#"{"city": "Paris"}"#))
        );
        assert_eq!(
            parse_tool_calls(
                r#"<|python_tag|>{"type": "function", "name": "get_time", "arguments": {}}"#,
                &names
            ),
            Some(one("get_time", "{}"))
        );
        let two = parse_tool_calls(
            r#"{"name": "get_weather", "parameters": {"city": "Oslo"}}; {"name": "get_time", "parameters": {"zone": "CET"}}"#,
            &names,
        )
        .unwrap();
        assert_eq!(two.len(), 2);
        assert_eq!(two[1].arguments, r#"{"zone": "CET"}"#);
        // Arguments sent as a JSON string holding an object.
        assert_eq!(
            parse_tool_calls(
                r#"{"name": "get_weather", "arguments": "{\"city\": \"Rome\"}"}"#,
                &names
            ),
            Some(one("get_weather", r#"{"city": "Rome"}"#))
        );
    }

    #[test]
    fn hermes_tagged_calls() {
        let names = ["get_weather"];
        let text = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Lima\"}}\n</tool_call>\n<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Quito\"}}</tool_call>";
        let calls = parse_tool_calls(text, &names).unwrap();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0], one("get_weather", r#"{"city": "Lima"}"#)[0]);
        // Cut off inside a block: text.
        assert_eq!(
            parse_tool_calls("<tool_call>\n{\"name\": \"get_weather\", \"argu", &names),
            None
        );
    }

    #[test]
    fn text_that_is_not_only_calls_to_offered_tools_stays_text() {
        let names = ["get_weather"];
        for text in [
            "The weather is fine.",
            r#"{"name": "delete_everything", "parameters": {}}"#,
            r#"{"name": "get_weather", "parameters": {"city": "Paris"}} and then some"#,
            r#"{"title": "a JSON answer"}"#,
            r#"{"name": "get_weather", "parameters": [1, 2]}"#,
            r#"{"name": "get_weather", "parameters": {}, "arguments": {}}"#,
            r#"{"type": "object", "name": "get_weather", "parameters": {}}"#,
            "",
            "   ",
            r#"{"name": "get_weather", "parameters": {"city": "Par"#,
        ] {
            assert_eq!(parse_tool_calls(text, &names), None, "{text:?}");
        }
    }

    #[test]
    fn what_may_still_become_calls() {
        for t in [
            "",
            "  \n",
            "{",
            " {\"na",
            "<",
            "<tool_",
            "<tool_call>{",
            "<|python",
            "<|python_tag|>{",
        ] {
            assert!(may_be_tool_calls(t), "{t:?}");
        }
        for t in ["Sure", " The", "<b>", "<|eot", "[1, 2]"] {
            assert!(!may_be_tool_calls(t), "{t:?}");
        }
    }
}
