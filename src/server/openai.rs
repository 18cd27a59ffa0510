//! The OpenAI endpoints: `/v1/chat/completions`, `/v1/completions` (streaming or not),
//! `/v1/models`, `/health`. Request fields OpenAI defines and this server has no use for are
//! ignored, as OpenAI-compatible servers do; the extensions are `state` (continue a node) and
//! `freeze` (save the result as a node), plus llama.cpp's `top_k`, `min_p`, `repeat_penalty`.
//! Log-probabilities (`logprobs`, `top_logprobs`) are the model's own distribution at each
//! step, in each endpoint's format, streamed with the text they belong to. Completions take a
//! list of prompts (a batch), each completed in turn.
//!
//! Function calling: `tools` go to the model's chat template (a template that reads them is
//! required: `serve --chat-template`), assistant messages may carry `tool_calls` and `tool`
//! messages answer them; a reply that consists of calls to the offered tools comes back as
//! `tool_calls` with `finish_reason: "tool_calls"` (streamed: one delta with the whole calls).
//! `tool_choice` `"auto"` and `"none"` are honoured, and `"required"` or a named function force
//! one call (generation constrained to the template's call format and the tools' parameter
//! schemas). `response_format` `json_object` and `json_schema` constrain the reply likewise.

use super::{parse_json, read_body, ApiError, AppState};
use crate::engine::Grammar;
use crate::session::complete::{
    Choice, Completion, CompletionInput, CompletionRequest, Echo, Logprob, Streamed, ToolChoice, Tools, MAX_CHOICES,
    MAX_PROMPTS, MAX_TOP_LOGPROBS,
};
use crate::{CancelToken, FinishReason, GenerateParams, Message, ToolCall};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::convert::Infallible;
use std::time::{SystemTime, UNIX_EPOCH};

/// `stop`: one string or a list.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

/// What both endpoints accept besides their input.
#[derive(Debug, Deserialize)]
struct Common {
    model: Option<String>,
    max_tokens: Option<u64>,
    max_completion_tokens: Option<u64>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    top_k: Option<usize>,
    min_p: Option<f32>,
    repeat_penalty: Option<f32>,
    seed: Option<u64>,
    stop: Option<Stop>,
    n: Option<u64>,
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
    /// Extension: continue this node (id or name).
    state: Option<String>,
    /// Extension: save the result as a node with this name.
    freeze: Option<String>,
    /// Chat: `true` for each token's log-probability (with `top_logprobs` alternatives);
    /// completions: the number of alternatives (0 to 20).
    logprobs: Option<Value>,
    top_logprobs: Option<u64>,
    /// `{"type": "text"}`, `{"type": "json_object"}` (generation constrained to a JSON object) or
    /// `{"type": "json_schema", "json_schema": {"schema": …}}` (to an object the schema allows).
    response_format: Option<Value>,
    /// Completions: the prompt returned before the completion, with `logprobs` each of its
    /// tokens scored (what scorers such as lm-evaluation-harness ask for, often with
    /// `max_tokens: 0`).
    echo: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct ChatBody {
    messages: Vec<ChatMessage>,
    /// Kept as sent: the chat template shows the model the tools in the client's key order.
    tools: Option<Box<RawValue>>,
    tool_choice: Option<Value>,
    #[serde(flatten)]
    common: Common,
}

#[derive(Debug, Deserialize)]
struct ChatMessage {
    role: String,
    #[serde(default)]
    content: Option<Content>,
    #[serde(default)]
    tool_calls: Option<Vec<WireToolCall>>,
    #[serde(default)]
    tool_call_id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WireToolCall {
    #[serde(default)]
    id: Option<String>,
    #[serde(rename = "type", default)]
    kind: Option<String>,
    function: WireFunction,
}

#[derive(Debug, Deserialize)]
struct WireFunction {
    name: String,
    /// JSON text in a string, as OpenAI sends it (some clients send the object itself).
    arguments: Box<RawValue>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Debug, Deserialize)]
struct Part {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Debug, Deserialize)]
struct TextBody {
    prompt: Prompt,
    #[serde(flatten)]
    common: Common,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Prompt {
    One(String),
    Many(Vec<String>),
    /// Token ids, used as they are (what lm-evaluation-harness sends).
    Ids(Vec<u32>),
    ManyIds(Vec<Vec<u32>>),
}

pub(super) async fn health(State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    let status = s.host.status().await?;
    Ok(Json(
        json!({ "status": "ok", "model": status.model.name, "busy": status.busy }),
    ))
}

pub(super) async fn models(State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    let status = s.host.status().await?;
    Ok(Json(json!({
        "object": "list",
        "data": [{
            "id": status.model.name,
            "object": "model",
            "created": 0,
            "owned_by": "freeze-attn",
            "context_length": status.model.context_length,
            "fingerprint": status.model.fingerprint,
        }],
    })))
}

pub(super) async fn chat_completions(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(body, &headers, s.options.max_body).await?;
    let body: ChatBody = parse_json(&bytes)?;
    let messages = body.messages.into_iter().map(message).collect::<Result<Vec<_>, _>>()?;
    if messages.is_empty() && body.common.state.is_none() {
        return Err(ApiError::bad_request("invalid_request", "messages must not be empty").param("messages"));
    }
    let tools = tools(body.tools.as_deref(), body.tool_choice.as_ref())?;
    respond(s, vec![CompletionInput::Chat(messages)], tools, body.common, Kind::Chat).await
}

pub(super) async fn completions(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(body, &headers, s.options.max_body).await?;
    let body: TextBody = parse_json(&bytes)?;
    // A list of prompts (as evaluation harnesses batch them): each completed in turn, choice
    // `i` of prompt `k` at index `k * n + i`, as OpenAI numbers them.
    let inputs: Vec<CompletionInput> = match body.prompt {
        Prompt::One(p) => vec![CompletionInput::Text(p)],
        Prompt::Many(v) => v.into_iter().map(CompletionInput::Text).collect(),
        Prompt::Ids(ids) => vec![CompletionInput::Tokens(ids)],
        Prompt::ManyIds(v) => v.into_iter().map(CompletionInput::Tokens).collect(),
    };
    if inputs.is_empty() || inputs.len() > MAX_PROMPTS {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!("prompt lists 1 to {MAX_PROMPTS} prompts, not {}", inputs.len()),
        )
        .param("prompt"));
    }
    if inputs.len() > 1 && body.common.freeze.is_some() {
        return Err(ApiError::bad_request(
            "invalid_request",
            "freeze names one node: send one prompt per request to freeze it",
        )
        .param("freeze"));
    }
    if body.common.echo == Some(true) {
        let refuse = |msg: &str| Err(ApiError::bad_request("invalid_request", msg).param("echo"));
        if body.common.stream {
            return refuse("echo is answered whole: send it without stream");
        }
        if body.common.state.is_some() {
            return refuse("echo scores a prompt sent whole: it does not combine with state");
        }
    }
    respond(s, inputs, None, body.common, Kind::Text).await
}

/// The request's `tools` and `tool_choice`.
fn tools(list: Option<&RawValue>, choice: Option<&Value>) -> Result<Option<Tools>, ApiError> {
    let bad = |what: &'static str, msg: String| ApiError::bad_request("invalid_request", msg).param(what);
    let choice = match choice {
        None | Some(Value::Null) => ToolChoice::Auto,
        Some(Value::String(c)) if c == "auto" => ToolChoice::Auto,
        Some(Value::String(c)) if c == "none" => ToolChoice::None,
        Some(Value::String(c)) if c == "required" => ToolChoice::Required,
        Some(v @ Value::Object(_)) => {
            match (v.get("type").and_then(|t| t.as_str()), v.pointer("/function/name").and_then(|n| n.as_str())) {
                (Some("function"), Some(name)) => ToolChoice::Function(name.to_string()),
                _ => {
                    return Err(bad(
                        "tool_choice",
                        format!("tool_choice naming a function is {{\"type\": \"function\", \"function\": {{\"name\": …}}}}, not {v}"),
                    ))
                }
            }
        }
        Some(other) => {
            return Err(bad(
                "tool_choice",
                format!("tool_choice must be \"auto\", \"none\", \"required\" or a function, not {other}"),
            ))
        }
    };
    let Some(list) = list.filter(|l| l.get() != "null") else {
        return match choice {
            ToolChoice::Required | ToolChoice::Function(_) => Err(bad(
                "tool_choice",
                "tool_choice forces a call, but no tools are offered".into(),
            )),
            _ => Ok(None),
        };
    };
    let tools = Tools::new(list.get()).map_err(|e| bad("tools", e.to_string()))?;
    tools
        .with_choice(choice)
        .map(Some)
        .map_err(|e| bad("tool_choice", e.to_string()))
}

fn message(m: ChatMessage) -> Result<Message, ApiError> {
    let bad = |msg: String| ApiError::bad_request("invalid_request", msg).param("messages");
    let role = match m.role.as_str() {
        "system" | "developer" => "system",
        "user" => "user",
        "assistant" => "assistant",
        "tool" => "tool",
        other => {
            return Err(bad(format!(
                "unsupported message role `{other}` (system, developer, user, assistant or tool)"
            )))
        }
    };
    let mut tool_calls = Vec::new();
    for (i, c) in m.tool_calls.into_iter().flatten().enumerate() {
        if role != "assistant" {
            return Err(bad("only assistant messages carry tool_calls".into()));
        }
        if c.kind.as_deref().is_some_and(|k| k != "function") {
            return Err(bad(format!("tool call {i} is not of type \"function\"")));
        }
        let raw = c.function.arguments.get();
        let arguments = if raw.starts_with('"') {
            serde_json::from_str::<String>(raw).map_err(|e| bad(format!("tool call {i}'s arguments: {e}")))?
        } else {
            raw.to_string()
        };
        if !serde_json::from_str::<Value>(&arguments).is_ok_and(|v| v.is_object()) {
            return Err(bad(format!("tool call {i}'s arguments are not a JSON object")));
        }
        tool_calls.push(ToolCall {
            id: c.id.unwrap_or_default(),
            name: c.function.name,
            arguments,
        });
    }
    if role != "tool" && m.tool_call_id.is_some() {
        return Err(bad("only tool messages carry tool_call_id".into()));
    }
    let content = match m.content {
        None => String::new(),
        Some(Content::Text(t)) => t,
        Some(Content::Parts(parts)) => {
            let mut out = String::new();
            for p in parts {
                match (p.kind.as_str(), p.text) {
                    ("text", Some(t)) => out.push_str(&t),
                    (kind, _) => {
                        return Err(ApiError::bad_request(
                            "invalid_request",
                            format!("unsupported content part `{kind}`: this model reads text only"),
                        )
                        .param("messages"))
                    }
                }
            }
            out
        }
    };
    let mut msg = Message::new(role, content);
    msg.tool_calls = tool_calls;
    msg.tool_call_id = m.tool_call_id;
    Ok(msg)
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Chat,
    Text,
}

/// Checks what can be checked before queueing, builds the request, runs it.
async fn respond(
    s: AppState,
    inputs: Vec<CompletionInput>,
    tools: Option<Tools>,
    c: Common,
    kind: Kind,
) -> Result<Response, ApiError> {
    let status = s.host.status().await?;
    let model_id = status.model.name.clone();
    if let Some(m) = c.model.as_deref().filter(|m| !m.is_empty()) {
        let known =
            m == model_id || s.options.model_alias.as_deref() == Some(m) || m == status.model.fingerprint.as_str();
        if !known {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "model_not_found",
                format!("the model `{m}` is not served here; this server runs `{model_id}` (GET /v1/models)"),
            )
            .param("model"));
        }
    }
    let mut params: GenerateParams = status.params.clone();
    let out_of = |what: &'static str, msg: String| ApiError::bad_request("invalid_request", msg).param(what);
    if let Some(t) = c.temperature {
        if !(0.0..=2.0).contains(&t) {
            return Err(out_of("temperature", format!("temperature must be 0 to 2, not {t}")));
        }
        params.sampling.temperature = t;
    }
    if let Some(p) = c.top_p {
        if !(p > 0.0 && p <= 1.0) {
            return Err(out_of("top_p", format!("top_p must be above 0 and at most 1, not {p}")));
        }
        params.sampling.top_p = p;
    }
    if let Some(k) = c.top_k {
        params.sampling.top_k = k;
    }
    if let Some(p) = c.min_p {
        params.sampling.min_p = p;
    }
    if let Some(r) = c.repeat_penalty {
        params.sampling.repeat_penalty = r;
    }
    if let Some(seed) = c.seed {
        params.sampling.seed = seed;
    }
    params.logprobs = logprobs(&c, kind)?;
    params.grammar = response_format(c.response_format.as_ref())?;
    params.stop_strings = match c.stop {
        None => Vec::new(),
        Some(Stop::One(s)) => vec![s],
        Some(Stop::Many(v)) => v,
    };
    if params.stop_strings.len() > 16 || params.stop_strings.iter().any(|s| s.is_empty() || s.len() > 1024) {
        return Err(out_of(
            "stop",
            "stop takes at most 16 non-empty strings of up to 1,024 bytes".into(),
        ));
    }
    params.validate().map_err(|e| ApiError::from(crate::Error::Engine(e)))?;
    let max_tokens = match c.max_completion_tokens.or(c.max_tokens) {
        Some(0) if !(kind == Kind::Text && c.echo == Some(true)) => {
            return Err(out_of(
                "max_tokens",
                "max_tokens must be at least 1 (0 only with echo, to score a prompt)".into(),
            ))
        }
        Some(m) => Some(usize::try_from(m).unwrap_or(usize::MAX)),
        None => None,
    };
    let n = c.n.unwrap_or(1);
    if n == 0 || n > MAX_CHOICES as u64 {
        return Err(out_of("n", format!("n must be 1 to {MAX_CHOICES}, not {n}")));
    }
    for (what, name) in [("state", &c.state), ("freeze", &c.freeze)] {
        if let Some(name) = name {
            check_name(what, name)?;
        }
    }
    let req = CompletionRequest {
        // Each of `inputs` in turn (`Session::complete_each`).
        input: CompletionInput::Text(String::new()),
        tools,
        max_tokens,
        params,
        n: n as usize,
        state: c.state,
        freeze: c.freeze,
        cache: true,
        echo: c.echo == Some(true),
    };
    let meta = Meta {
        id: format!(
            "{}-{}",
            if kind == Kind::Chat { "chatcmpl" } else { "cmpl" },
            request_id()
        ),
        created: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        model: model_id,
        kind,
        logprobs: req.params.logprobs.is_some(),
    };
    if c.stream {
        let usage = c.stream_options.is_some_and(|o| o.include_usage);
        stream(s, req, inputs, meta, usage).await
    } else {
        // The token is this request's own: cancelling it after the job ended changes nothing,
        // so the guard may simply drop at the end.
        let cancel = CancelToken::new();
        let _guard = CancelOnDrop(cancel.clone());
        let out = s
            .host
            .run(move |session| session.complete_each(req, inputs, &cancel, &mut |_, _| {}))
            .await;
        Ok(Json(meta.whole(&out?)).into_response())
    }
}

/// The alternatives per token asked for: chat's `logprobs: true` with `top_logprobs`, or
/// completions' `logprobs: N`; `None` when none are.
fn logprobs(c: &Common, kind: Kind) -> Result<Option<usize>, ApiError> {
    let bad = |what: &'static str, msg: String| ApiError::bad_request("invalid_request", msg).param(what);
    let top = MAX_TOP_LOGPROBS as u64;
    match kind {
        Kind::Chat => {
            let on = match &c.logprobs {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(v) => return Err(bad("logprobs", format!("logprobs must be true or false, not {v}"))),
            };
            match c.top_logprobs {
                Some(k) if k > top => Err(bad("top_logprobs", format!("top_logprobs must be 0 to {top}, not {k}"))),
                Some(k) if k > 0 && !on => Err(bad("top_logprobs", "top_logprobs needs logprobs set to true".into())),
                k => Ok(on.then_some(k.unwrap_or(0) as usize)),
            }
        }
        Kind::Text => match &c.logprobs {
            None | Some(Value::Null) => Ok(None),
            Some(v) => match v.as_u64() {
                Some(k) if k <= top => Ok(Some(k as usize)),
                _ => Err(bad(
                    "logprobs",
                    format!("logprobs must be an integer 0 to {top}, not {v}"),
                )),
            },
        },
    }
}

/// The grammar `response_format` asks for: `text`, `json_object`, or `json_schema` with the
/// schema under `json_schema.schema` (OpenAI's shape; `name` and `strict` are not needed: the
/// schema is always followed strictly).
fn response_format(v: Option<&Value>) -> Result<Option<Grammar>, ApiError> {
    let bad = |msg: String| Err(ApiError::bad_request("invalid_request", msg).param("response_format"));
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    match v.get("type").and_then(|t| t.as_str()) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(Grammar::JsonObject)),
        Some("json_schema") => {
            let Some(spec) = v.get("json_schema").filter(|s| s.is_object()) else {
                return bad(
                    "response_format json_schema needs a json_schema object with the schema under \"schema\"".into(),
                );
            };
            match spec.get("schema") {
                None | Some(Value::Null) => Ok(Some(Grammar::JsonObject)),
                Some(schema) => match crate::json_schema_grammar(schema) {
                    Ok(g) => Ok(Some(g)),
                    Err(e) => bad(format!("response_format json_schema: {e}")),
                },
            }
        }
        _ => bad(format!(
            "response_format must be {{\"type\": \"text\"}}, {{\"type\": \"json_object\"}} or \
             {{\"type\": \"json_schema\", \"json_schema\": {{\"schema\": ...}}}}, not {v}"
        )),
    }
}

/// A name given to `state` or `freeze`: text, not a path.
fn check_name(what: &'static str, name: &str) -> Result<(), ApiError> {
    let bad = name.trim().is_empty()
        || name.len() > 800
        || name.chars().any(|c| c.is_control() || c == '\\')
        || name.starts_with('/')
        || name.split('/').any(|p| p == ".." || p == ".")
        || (what == "freeze" && name.contains('/'));
    if bad {
        return Err(ApiError::bad_request(
            "invalid_name",
            format!("`{what}` must be a node id or name (no path parts, control characters or backslashes): {name:?}"),
        )
        .param(what));
    }
    Ok(())
}

/// Cancels the generation if the request's future is dropped (the client went away).
struct CancelOnDrop(CancelToken);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

struct Meta {
    id: String,
    created: u64,
    model: String,
    kind: Kind,
    /// Log-probabilities were asked for.
    logprobs: bool,
}

fn finish_reason(c: &Choice) -> &'static str {
    match c.finish {
        _ if !c.tool_calls.is_empty() => "tool_calls",
        FinishReason::Length | FinishReason::ContextFull => "length",
        _ => "stop",
    }
}

/// A choice's calls in OpenAI's shape; `index` numbers them, as stream deltas do.
fn tool_calls_json(calls: &[ToolCall], with_index: bool) -> Value {
    Value::Array(
        calls
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut v = json!({
                    "id": c.id,
                    "type": "function",
                    "function": { "name": c.name, "arguments": c.arguments },
                });
                if with_index {
                    v["index"] = json!(i);
                }
                v
            })
            .collect(),
    )
}

impl Meta {
    fn object(&self, chunk: bool) -> &'static str {
        match (self.kind, chunk) {
            (Kind::Chat, false) => "chat.completion",
            (Kind::Chat, true) => "chat.completion.chunk",
            (Kind::Text, _) => "text_completion",
        }
    }

    /// Tokens of all the prompts and all their choices.
    fn usage(&self, cs: &[Completion]) -> Value {
        let completion: usize = cs.iter().flat_map(|c| &c.choices).map(|c| c.tokens).sum();
        let prompt: usize = cs.iter().map(|c| c.prompt_tokens).sum();
        let cached: usize = cs.iter().map(|c| c.cached_tokens).sum();
        json!({
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": { "cached_tokens": cached },
        })
    }

    fn whole(&self, cs: &[Completion]) -> Value {
        let choices: Vec<Value> = cs
            .iter()
            .flat_map(|c| c.choices.iter().map(move |ch| (c, ch)))
            .map(|(c, ch)| match self.kind {
                Kind::Chat => {
                    let mut message = json!({ "role": "assistant", "content": ch.text });
                    if !ch.tool_calls.is_empty() {
                        message["content"] = Value::Null;
                        message["tool_calls"] = tool_calls_json(&ch.tool_calls, false);
                    }
                    json!({
                        "index": ch.index,
                        "message": message,
                        "finish_reason": finish_reason(ch),
                        "logprobs": self.logprobs_json(&ch.logprobs, 0),
                    })
                }
                Kind::Text => match &c.echo {
                    None => json!({
                        "index": ch.index,
                        "text": ch.text,
                        "finish_reason": finish_reason(ch),
                        "logprobs": self.logprobs_json(&ch.logprobs, 0),
                    }),
                    Some(echo) => json!({
                        "index": ch.index,
                        "text": format!("{}{}", echo.text, ch.text),
                        "finish_reason": finish_reason(ch),
                        "logprobs": self.echoed_logprobs_json(echo, &ch.logprobs),
                    }),
                },
            })
            .collect();
        let mut v = json!({
            "id": self.id,
            "object": self.object(false),
            "created": self.created,
            "model": self.model,
            "choices": choices,
            "usage": self.usage(cs),
        });
        extensions(&mut v, cs);
        v
    }

    /// A choice's `logprobs` in this endpoint's format: chat's `{"content": [{token, logprob,
    /// bytes, top_logprobs}]}`, or completions' `{tokens, token_logprobs, top_logprobs,
    /// text_offset}` (offsets in characters of the generated text, from `offset`). `null` when
    /// none were asked for.
    fn logprobs_json(&self, lps: &[Logprob], offset: usize) -> Value {
        if !self.logprobs {
            return Value::Null;
        }
        match self.kind {
            Kind::Chat => {
                let entry = |l: &Logprob| json!({ "token": l.token, "logprob": l.logprob, "bytes": l.bytes });
                let content: Vec<Value> = lps
                    .iter()
                    .map(|l| {
                        let mut e = entry(l);
                        e["top_logprobs"] = Value::Array(l.top.iter().map(entry).collect());
                        e
                    })
                    .collect();
                json!({ "content": content })
            }
            Kind::Text => {
                let mut at = offset;
                let text_offset: Vec<usize> = lps
                    .iter()
                    .map(|l| {
                        let here = at;
                        at += l.token.chars().count();
                        here
                    })
                    .collect();
                json!({
                    "tokens": lps.iter().map(|l| &l.token).collect::<Vec<_>>(),
                    "token_logprobs": lps.iter().map(|l| l.logprob).collect::<Vec<_>>(),
                    "top_logprobs": lps
                        .iter()
                        .map(|l| l.top.iter().map(|t| (t.token.clone(), json!(t.logprob))).collect::<serde_json::Map<_, _>>())
                        .collect::<Vec<_>>(),
                    "text_offset": text_offset,
                })
            }
        }
    }

    /// Completions' legacy `logprobs` of an echoed prompt and its completion: the prompt's tokens
    /// first (the first with `null`: nothing comes before it), then the generated ones, offsets
    /// running on from the prompt's text.
    fn echoed_logprobs_json(&self, echo: &Echo, generated: &[Logprob]) -> Value {
        let Some(prompt) = &echo.logprobs else {
            return Value::Null;
        };
        let mut v = self.logprobs_json(generated, echo.text.chars().count());
        let top = |t: &[Logprob]| {
            t.iter()
                .map(|t| (t.token.clone(), json!(t.logprob)))
                .collect::<serde_json::Map<_, _>>()
        };
        let prepend = |v: &mut Value, key: &str, items: Vec<Value>| {
            let rest = v[key].as_array().cloned().unwrap_or_default();
            v[key] = Value::Array(items.into_iter().chain(rest).collect());
        };
        prepend(&mut v, "tokens", prompt.iter().map(|p| json!(p.token)).collect());
        prepend(
            &mut v,
            "token_logprobs",
            prompt.iter().map(|p| json!(p.logprob)).collect(),
        );
        prepend(
            &mut v,
            "top_logprobs",
            prompt
                .iter()
                .map(|p| {
                    if p.logprob.is_some() {
                        Value::Object(top(&p.top))
                    } else {
                        Value::Null
                    }
                })
                .collect(),
        );
        prepend(
            &mut v,
            "text_offset",
            prompt.iter().map(|p| json!(p.text_offset)).collect(),
        );
        v
    }

    fn chunk(&self, index: usize, text: Option<&str>, finish: Option<&str>, first: bool, logprobs: Value) -> Value {
        let choice = match self.kind {
            Kind::Chat => {
                let mut delta = json!({});
                if first {
                    delta["role"] = json!("assistant");
                }
                if let Some(t) = text {
                    delta["content"] = json!(t);
                }
                json!({ "index": index, "delta": delta, "finish_reason": finish, "logprobs": logprobs })
            }
            Kind::Text => {
                json!({ "index": index, "text": text.unwrap_or(""), "finish_reason": finish, "logprobs": logprobs })
            }
        };
        json!({
            "id": self.id,
            "object": self.object(true),
            "created": self.created,
            "model": self.model,
            "choices": [choice],
        })
    }
}

/// The extension fields: `resumed_from`, the node the request resumed from (with a list of
/// prompts, the node every prompt resumed; `null` if none or not the same for all), and
/// `frozen`, the node frozen.
fn extensions(v: &mut Value, cs: &[Completion]) {
    let resumed = cs
        .first()
        .and_then(|c| c.resumed_from)
        .filter(|&n| cs.iter().all(|c| c.resumed_from == Some(n)));
    v["resumed_from"] = json!(resumed.map(|n| n.0));
    if let Some(f) = cs.iter().find_map(|c| c.frozen) {
        v["frozen"] = json!(f.0);
    }
}

enum Msg {
    Text(usize, String),
    /// The log-probabilities of the tokens the next text of that alternative completes.
    Logprobs(usize, Vec<Logprob>),
    Done(Result<Vec<Completion>, ApiError>),
}

/// Streams the completion as server-sent events. The response starts when the first text (or
/// the outcome) is known, so an error found before any text (an unknown state, a prompt past
/// the context) is still a plain 4xx. A client that goes away cancels the generation.
async fn stream(
    s: AppState,
    req: CompletionRequest,
    inputs: Vec<CompletionInput>,
    meta: Meta,
    include_usage: bool,
) -> Result<Response, ApiError> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Msg>();
    let cancel = CancelToken::new();
    let host = s.host.clone();
    let job_tx = tx.clone();
    let job_cancel = cancel.clone();
    tokio::spawn(async move {
        let out = host
            .run(move |session| {
                if job_tx.is_closed() {
                    job_cancel.cancel(); // gone while queued
                }
                let c = job_cancel.clone();
                session.complete_each(req, inputs, &job_cancel, &mut |i, piece| {
                    let msg = match piece {
                        Streamed::Text(t) => Msg::Text(i, t.to_string()),
                        Streamed::Logprobs(l) => Msg::Logprobs(i, l),
                    };
                    if job_tx.send(msg).is_err() {
                        c.cancel();
                    }
                })
            })
            .await;
        let _ = tx.send(Msg::Done(out.map_err(ApiError::from)));
    });
    let guard = CancelOnDrop(cancel);
    let first = rx.recv().await;
    let first = match first {
        Some(Msg::Done(Err(e))) => return Err(e),
        Some(m) => m,
        None => {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "engine_stopped",
                "the engine stopped",
            ))
        }
    };
    let state = StreamState {
        rx,
        meta,
        include_usage,
        started: Vec::new(),
        pending: vec![first],
        logprobs: HashMap::new(),
        finished: false,
        _guard: guard,
    };
    let events = futures_util::stream::unfold(state, |mut st| async move {
        let out = st.next_events().await?;
        Some((futures_util::stream::iter(out.into_iter().map(Ok::<_, Infallible>)), st))
    });
    use futures_util::StreamExt;
    Ok(Sse::new(events.flatten())
        .keep_alive(KeepAlive::default())
        .into_response())
}

struct StreamState {
    rx: tokio::sync::mpsc::UnboundedReceiver<Msg>,
    meta: Meta,
    include_usage: bool,
    started: Vec<usize>,
    pending: Vec<Msg>,
    /// Per alternative: log-probabilities waiting for their text, and the characters of the
    /// tokens sent so far (completions' `text_offset`, as a whole response counts them).
    logprobs: HashMap<usize, (Vec<Logprob>, usize)>,
    finished: bool,
    _guard: CancelOnDrop,
}

impl StreamState {
    /// Alternative `i`'s waiting log-probabilities in the endpoint's format (emptied).
    fn take_logprobs(&mut self, i: usize) -> Value {
        let (lps, offset) = self.logprobs.entry(i).or_default();
        let lps = std::mem::take(lps);
        let at = *offset;
        *offset += lps.iter().map(|l| l.token.chars().count()).sum::<usize>();
        self.meta.logprobs_json(&lps, at)
    }

    /// The events for the next message; `None` after `[DONE]`.
    async fn next_events(&mut self) -> Option<Vec<SseEvent>> {
        if self.finished {
            return None;
        }
        let msg = match self.pending.pop() {
            Some(m) => m,
            None => self.rx.recv().await.unwrap_or(Msg::Done(Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "engine_stopped",
                "the engine stopped",
            )))),
        };
        let data = |v: Value| SseEvent::default().data(v.to_string());
        Some(match msg {
            Msg::Logprobs(i, l) => {
                self.logprobs.entry(i).or_default().0.extend(l);
                Vec::new()
            }
            Msg::Text(i, t) => {
                let first = !self.started.contains(&i);
                if first {
                    self.started.push(i);
                }
                let lp = self.take_logprobs(i);
                vec![data(self.meta.chunk(i, Some(&t), None, first, lp))]
            }
            Msg::Done(Ok(cs)) => {
                self.finished = true;
                let mut out: Vec<SseEvent> = Vec::new();
                for ch in cs.iter().flat_map(|c| &c.choices) {
                    let mut first = !self.started.contains(&ch.index);
                    if !ch.tool_calls.is_empty() {
                        let mut v = self.meta.chunk(ch.index, None, None, first, Value::Null);
                        v["choices"][0]["delta"]["tool_calls"] = tool_calls_json(&ch.tool_calls, true);
                        out.push(data(v));
                        first = false;
                    }
                    let lp = self.take_logprobs(ch.index);
                    let mut v = self.meta.chunk(ch.index, None, Some(finish_reason(ch)), first, lp);
                    extensions(&mut v, &cs);
                    out.push(data(v));
                }
                if self.include_usage {
                    out.push(data(json!({
                        "id": self.meta.id,
                        "object": self.meta.object(true),
                        "created": self.meta.created,
                        "model": self.meta.model,
                        "choices": [],
                        "usage": self.meta.usage(&cs),
                    })));
                }
                out.push(SseEvent::default().data("[DONE]"));
                out
            }
            Msg::Done(Err(e)) => {
                self.finished = true;
                let body = json!({ "error": { "message": e.message, "type": "server_error", "code": e.code } });
                vec![data(body), SseEvent::default().data("[DONE]")]
            }
        })
    }
}

/// A request id unique within this process and unlikely to repeat across restarts.
pub(super) fn unique() -> String {
    request_id()
}

fn request_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:x}{:04x}", t, NEXT.fetch_add(1, Ordering::Relaxed) & 0xffff)
}
