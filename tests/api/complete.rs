//! Completions with automatic prefix reuse (what the OpenAI server runs): the same greedy text
//! with and without reuse, reuse across a restart through the library's prefix index, `state`
//! and `freeze`, alternatives, and cache eviction under a quota.

use crate::support::greedy;
use freeze_attn::engine::{CancelToken, Message};
use freeze_attn::session::complete::{Completion, CompletionInput, CompletionRequest, Streamed};
use freeze_attn::session::Session;
use freeze_attn_library::{Library, NodeKind, NodeOrder};

fn session(dir: &std::path::Path) -> Session {
    let model = freeze_attn::open_model("default", freeze_attn::engine::DeviceChoice::Cpu).unwrap();
    Session::new(model, Library::open(dir).unwrap()).unwrap()
}

fn chat(messages: &[Message], cache: bool) -> CompletionRequest {
    CompletionRequest {
        input: CompletionInput::Chat(messages.to_vec()),
        tools: None,
        max_tokens: Some(20),
        params: greedy(20),
        n: 1,
        state: None,
        freeze: None,
        cache,
        echo: false,
    }
}

fn run(s: &mut Session, req: &CompletionRequest) -> Completion {
    s.complete(req, &CancelToken::new(), &mut |_, _| {}).unwrap()
}

fn conversation() -> Vec<Message> {
    vec![
        Message::system("You are a patient teacher of astronomy. Answer in one or two short sentences."),
        Message::user("What is the largest planet in the solar system?"),
    ]
}

#[test]
fn reuse_gives_the_same_greedy_text_as_processing_everything_and_survives_a_restart() {
    let cached = tempfile::tempdir().unwrap();
    let mut a = session(cached.path());
    let first = run(&mut a, &chat(&conversation(), true));
    assert_eq!(first.cached_tokens, 0, "nothing to reuse in an empty library");
    assert!(first.cached_as.is_some(), "the request's state is kept as a cache node");
    let mut turn2 = conversation();
    turn2.push(Message::assistant(first.choices[0].text.clone()));
    turn2.push(Message::user("And the smallest?"));

    let reused = run(&mut a, &chat(&turn2, true));
    let fresh_dir = tempfile::tempdir().unwrap();
    let mut fresh = session(fresh_dir.path());
    let plain = run(&mut fresh, &chat(&turn2, false));
    assert_eq!(plain.cached_tokens, 0);
    assert_eq!(
        reused.prompt_tokens, plain.prompt_tokens,
        "the same prompt tokens either way"
    );
    assert!(
        reused.cached_tokens >= first.prompt_tokens - 1,
        "the whole first prompt is reused: {} of {}",
        reused.cached_tokens,
        first.prompt_tokens
    );
    assert_eq!(
        reused.choices[0].text, plain.choices[0].text,
        "reuse must not change greedy output"
    );
    assert!(!plain.choices[0].text.trim().is_empty());

    // A new process (nothing warm) finds the cache node through the index.
    drop(a);
    let mut b = session(cached.path());
    let after = run(&mut b, &chat(&turn2, false));
    assert!(
        after.cached_tokens >= reused.cached_tokens,
        "{} cached after a restart",
        after.cached_tokens
    );
    assert_eq!(after.choices[0].text, plain.choices[0].text);
    // Cache nodes stay out of the user's tree.
    let lib = Library::open(cached.path()).unwrap();
    assert!(lib.tree(NodeOrder::Name).unwrap().is_empty());
    assert_eq!(lib.cache_entries(b.model.fingerprint()).unwrap().len(), 2);
}

#[test]
fn state_and_freeze_continue_a_named_node_and_save_the_result_under_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = session(dir.path());
    let mut req = chat(&conversation(), true);
    req.freeze = Some("teacher".into());
    let made = run(&mut s, &req);
    let teacher = made.frozen.expect("frozen on request");
    assert!(made.cached_as.is_none(), "a frozen request needs no cache node");

    let mut next = chat(&[Message::user("Why is it so big?")], true);
    next.state = Some("teacher".into());
    next.freeze = Some("why big".into());
    let out = run(&mut s, &next);
    let node = s.library.node(teacher).unwrap();
    assert_eq!(out.resumed_from, Some(teacher));
    assert!(
        out.cached_tokens as u64 >= node.token_count - 1,
        "the named state is resumed, not reprocessed"
    );
    let child = s.library.node(out.frozen.unwrap()).unwrap();
    assert_eq!(child.parent, Some(teacher));
    assert_eq!(child.kind, NodeKind::Chat);
    let text: String = child.transcript.clone();
    assert!(
        text.contains("Why is it so big?") && text.contains("largest planet"),
        "{text}"
    );

    // A name already used under the same parent is refused before anything is generated.
    let err = s.complete(&next, &CancelToken::new(), &mut |_, _| {}).unwrap_err();
    assert_eq!(err.code(), "name_taken");
}

#[test]
fn alternatives_share_the_prompt_and_differ_by_seed() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = session(dir.path());
    let mut req = chat(&conversation(), false);
    req.n = 3;
    req.params.sampling.temperature = 1.0;
    req.params.sampling.top_k = 0;
    req.params.sampling.top_p = 1.0;
    let mut streamed = [String::new(), String::new(), String::new()];
    let out = s
        .complete(&req, &CancelToken::new(), &mut |i, t| {
            if let Streamed::Text(t) = t {
                streamed[i].push_str(t)
            }
        })
        .unwrap();
    assert_eq!(out.choices.len(), 3);
    for c in &out.choices {
        assert_eq!(streamed[c.index], c.text, "streamed text equals the returned text");
    }
    let distinct: std::collections::HashSet<&str> = out.choices.iter().map(|c| c.text.as_str()).collect();
    assert!(
        distinct.len() > 1,
        "different seeds give different samples: {:?}",
        out.choices
    );
    // Alternative 0 equals a single request with the same seed.
    let mut one = req.clone();
    one.n = 1;
    assert_eq!(run(&mut s, &one).choices[0].text, out.choices[0].text);
}

#[test]
fn cache_nodes_are_evicted_least_recently_used_under_the_quota_and_named_nodes_never() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = session(dir.path());
    let mut named = chat(&[Message::user("Keep me.")], false);
    named.freeze = Some("kept".into());
    run(&mut s, &named);
    s.cache_quota = Some(1); // any cache node is over quota: only the newest survives
    for q in ["One?", "Two?", "Three?"] {
        let out = run(&mut s, &chat(&[Message::user(format!("Count: {q} {q} {q}"))], true));
        assert!(out.cached_as.is_some());
    }
    let fp = s.model.fingerprint().clone();
    let left = s.library.cache_entries(&fp).unwrap();
    assert_eq!(left.len(), 1, "only the newest cache node is kept: {left:?}");
    assert_eq!(
        s.library.tree(NodeOrder::Name).unwrap().len(),
        1,
        "the named node stays"
    );
    assert!(s.library.verify(|_, _| Ok(())).unwrap().is_ok());
}

#[test]
fn a_prompt_past_the_context_is_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = session(dir.path());
    let mut req = chat(&conversation(), true);
    req.max_tokens = Some(10_000_000);
    let err = s.complete(&req, &CancelToken::new(), &mut |_, _| {}).unwrap_err();
    assert_eq!(err.code(), "context_overflow");
    req.max_tokens = Some(4);
    req.n = 17;
    assert_eq!(
        s.complete(&req, &CancelToken::new(), &mut |_, _| {})
            .unwrap_err()
            .code(),
        "invalid"
    );
}

#[test]
fn raw_text_after_a_conversation_is_refused_and_a_bad_freeze_name_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = session(dir.path());
    let mut req = chat(&conversation(), false);
    req.freeze = Some("talk".into());
    run(&mut s, &req);
    let text = CompletionRequest {
        input: CompletionInput::Text("and then".into()),
        state: Some("talk".into()),
        freeze: None,
        ..chat(&[], false)
    };
    let err = s.complete(&text, &CancelToken::new(), &mut |_, _| {}).unwrap_err();
    assert_eq!(err.code(), "invalid", "{err}");
    let mut bad = chat(&conversation(), false);
    bad.freeze = Some("   ".into());
    let mut streamed = false;
    let err = s
        .complete(&bad, &CancelToken::new(), &mut |_, _| streamed = true)
        .unwrap_err();
    assert_eq!(err.code(), "invalid_name", "{err}");
    assert!(!streamed, "nothing is generated for a request that cannot be saved");
}
