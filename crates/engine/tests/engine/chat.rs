//! Chat templates (rendering against transformers' `apply_chat_template`) and appending turns to
//! a state (the result must equal encoding the whole conversation from scratch).

use crate::support::{assets_dir, fixture, ids, smollm};
use freeze_attn_engine::chat::sync;
use freeze_attn_engine::{Message, Tokenizer};

fn messages(v: &serde_json::Value) -> Vec<Message> {
    serde_json::from_value(v.clone()).unwrap()
}

fn llama31() -> (Tokenizer, freeze_attn_engine::ChatTemplate) {
    let dir = assets_dir().join("llama3_1");
    let tok = Tokenizer::from_hf_dir(&dir).unwrap();
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("tokenizer_config.json")).unwrap()).unwrap();
    let tpl = freeze_attn_engine::ChatTemplate::new(
        cfg["chat_template"].as_str().unwrap(),
        "<|begin_of_text|>",
        "<|eot_id|>",
    )
    .unwrap();
    (tok, tpl)
}

/// A template file of the repository (`assets/templates`, `tests/fixtures/templates`).
fn template_file(path: &str, bos: &str, eos: &str) -> freeze_attn_engine::ChatTemplate {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let src = std::fs::read_to_string(root.join(path)).unwrap();
    freeze_attn_engine::ChatTemplate::new(&src, bos, eos).unwrap()
}

/// Every case of the fixture: the default model's template, the Llama 3 template of the
/// tokenizer package, Meta's Llama 3.1 template with function calling, and our ChatML one with
/// function calling; conversations with and without tools, tool calls and tool results.
#[test]
fn renders_like_transformers_and_tokenizes_like_the_reference() {
    let fx = fixture("chat_templates.json");
    let m = smollm();
    let (l_tok, l_tpl) = llama31();
    let l_tools = template_file(
        "tests/fixtures/templates/meta-llama-Llama-3.1-8B-Instruct.jinja",
        "<|begin_of_text|>",
        "<|eot_id|>",
    );
    let chatml = template_file("assets/templates/chatml-tools.jinja", "<|im_start|>", "<|im_end|>");
    assert!(l_tools.supports_tools() && chatml.supports_tools());
    assert!(!l_tpl.supports_tools() && !m.template().unwrap().supports_tools());
    let mut with_tools = 0;
    for case in fx["cases"].as_array().unwrap() {
        let msgs = messages(&case["messages"]);
        let gen = case["add_generation_prompt"].as_bool().unwrap();
        let tools = case["tools"].as_str();
        with_tools += usize::from(tools.is_some());
        let (tpl, tok) = match case["template"].as_str().unwrap() {
            "smollm2" => (m.template().unwrap(), &m.tokenizer),
            "llama3_1" => (&l_tpl, &l_tok),
            "llama3_1_tools" => (&l_tools, &l_tok),
            "chatml_tools" => (&chatml, &m.tokenizer),
            other => panic!("unknown template {other}"),
        };
        let ours = tpl.render_with_tools(&msgs, tools, gen).unwrap();
        let ids_ours = tok.encode(&ours).unwrap();
        assert_eq!(
            ours,
            case["text"].as_str().unwrap(),
            "rendering differs for {}",
            case["name"]
        );
        assert_eq!(ids_ours, ids(&case["ids"]), "token ids differ for {}", case["name"]);
    }
    assert!(with_tools >= 12, "the fixture has {with_tools} cases with tools");
}

/// Plays a conversation turn by turn into a token list standing in for a state: each user turn
/// is synced in; each assistant reply is appended as a model would produce it (`reply_tokens`).
fn play(
    tok: &Tokenizer,
    render: &dyn Fn(&[Message], bool) -> String,
    conv: &[Message],
    reply_tokens: &dyn Fn(&str) -> Vec<u32>,
) {
    let mut state: Vec<u32> = Vec::new();
    for (i, msg) in conv.iter().enumerate() {
        if msg.role == "assistant" {
            state.extend(reply_tokens(&msg.content));
            continue;
        }
        if conv.get(i + 1).is_some_and(|m| m.role != "assistant") {
            continue; // a system prompt directly followed by a user turn goes in with it
        }
        let target = render(&conv[..=i], true);
        let last_special = state.iter().rposition(|&t| {
            tok.token_text(t)
                .is_some_and(|s| tok.inner().get_added_vocabulary().is_special_token(&s))
        });
        let plan = sync(tok, &state, &target).unwrap();
        let scratch = tok.encode(&target).unwrap();
        state.truncate(plan.keep);
        state.extend(&plan.append);
        assert_eq!(
            state, scratch,
            "after turn {i}, the state must equal encoding the conversation from scratch"
        );
        if let Some(s) = last_special {
            // Only the text after the state's last special token (the latest reply and the new
            // turn) was encoded again.
            assert_eq!(
                plan.encoded,
                scratch.len() - (s + 1),
                "turn {i}: re-encoded {} of {} tokens",
                plan.encoded,
                scratch.len()
            );
        }
    }
}

fn conversation() -> Vec<Message> {
    vec![
        Message::system("You are a terse assistant who loves astronomy."),
        Message::user("Name a planet."),
        Message::assistant("Saturn, the ringed one."),
        Message::user("And a moon of it?\nJust one, please."),
        Message::assistant("Titan."),
        Message::user("Thanks! 🌙 What's its diameter in km?"),
    ]
}

#[test]
fn appending_turns_equals_encoding_from_scratch_smollm() {
    let m = smollm();
    let tpl = m.template().unwrap();
    let render = |c: &[Message], g: bool| tpl.render(c, g).unwrap();
    let tok = &m.tokenizer;
    // Replies as canonical encodings, then as a deliberately non-canonical one (char by char).
    play(tok, &render, &conversation(), &|r| tok.encode(r).unwrap());
    play(tok, &render, &conversation(), &|r| {
        r.chars().flat_map(|c| tok.encode(&c.to_string()).unwrap()).collect()
    });
    // Without a system prompt the template inserts its default one.
    play(tok, &render, &conversation()[1..], &|r| tok.encode(r).unwrap());
}

#[test]
fn appending_turns_equals_encoding_from_scratch_llama31() {
    let (tok, tpl) = llama31();
    let render = |c: &[Message], g: bool| tpl.render(c, g).unwrap();
    play(&tok, &render, &conversation(), &|r| tok.encode(r).unwrap());
    play(&tok, &render, &conversation(), &|r| {
        r.chars().flat_map(|c| tok.encode(&c.to_string()).unwrap()).collect()
    });
    play(&tok, &render, &conversation()[1..], &|r| tok.encode(r).unwrap());
}

#[test]
fn llama31_tokenizer_metadata() {
    let (tok, _) = llama31();
    assert_eq!(tok.vocab_size(), 128256);
    assert_eq!(tok.bos(), Some(128000));
    assert!(tok.is_stop(128009), "<|eot_id|> ends a turn");
    assert!(tok.add_bos(), "Llama 3's tokenizer prepends <|begin_of_text|>");
    assert_eq!(tok.encode_prompt("Hi").unwrap()[0], 128000);
}
