//! The generation loop on the default model.

use crate::support::smollm;
use freeze_attn_engine::{generate, CancelToken, Event, FinishReason, GenerateParams, SamplingParams};

fn prompt() -> Vec<u32> {
    smollm()
        .tokenizer
        .encode("Write a short poem about the sea.\n")
        .unwrap()
}

fn sampled(seed: u64) -> GenerateParams {
    GenerateParams {
        max_tokens: 24,
        sampling: SamplingParams {
            temperature: 0.9,
            top_k: 50,
            top_p: 0.95,
            min_p: 0.02,
            repeat_penalty: 1.1,
            seed,
            ..SamplingParams::greedy()
        },
        ..GenerateParams::greedy(0)
    }
}

fn run(params: &GenerateParams) -> (freeze_attn_engine::Generation, String, Vec<u32>) {
    let m = smollm();
    let mut state = m.model.new_state();
    let mut streamed = String::new();
    let g = generate(
        &m.model,
        &m.tokenizer,
        &mut state,
        &prompt(),
        params,
        &CancelToken::new(),
        &mut |e| {
            if let Event::Text(t) = e {
                streamed.push_str(t)
            }
        },
    )
    .unwrap();
    (g, streamed, state.tokens().to_vec())
}

#[test]
fn same_seed_same_text_and_streaming_adds_up() {
    let (a, streamed, state_tokens) = run(&sampled(7));
    let (b, _, _) = run(&sampled(7));
    assert_eq!(a.tokens, b.tokens, "same seed and parameters must give the same tokens");
    assert_eq!(streamed, a.text, "streamed pieces concatenate to the final text");
    let mut expected = prompt();
    expected.extend(&a.tokens);
    assert_eq!(
        state_tokens, expected,
        "the state holds the prompt and every generated token"
    );
    let (c, _, _) = run(&sampled(8));
    assert_ne!(a.tokens, c.tokens, "another seed gives another sample");
}

#[test]
fn stop_strings_cut_text_and_state() {
    let (free, _, _) = run(&GenerateParams {
        max_tokens: 40,
        ..GenerateParams::greedy(0)
    });
    // Pick a stop string from what greedy decoding actually produces, past its first token.
    let words: Vec<&str> = free.text.split_whitespace().collect();
    assert!(words.len() > 4, "need some text to cut: {:?}", free.text);
    let stop = words[3].to_string();
    let cut = free.text.find(&stop).unwrap();
    let (g, streamed, state_tokens) = run(&GenerateParams {
        max_tokens: 40,
        stop_strings: vec![stop.clone()],
        ..GenerateParams::greedy(0)
    });
    assert_eq!(g.finish, FinishReason::StopString);
    assert_eq!(
        g.text,
        free.text[..cut],
        "text ends right before the stop string {stop:?}"
    );
    assert_eq!(streamed, g.text, "the stop string is never streamed");
    assert_eq!(state_tokens.len(), prompt().len() + g.tokens.len());
    let shown = smollm().tokenizer.decode(&g.tokens).unwrap();
    assert!(shown.len() >= g.text.len() && !shown[..g.text.len()].contains(&stop));
}

#[test]
fn cancellation_from_another_thread() {
    let m = smollm();
    let cancel = CancelToken::new();
    let c2 = cancel.clone();
    let mut state = m.model.new_state();
    let params = GenerateParams {
        max_tokens: 10_000,
        ..GenerateParams::greedy(0)
    };
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    // Another thread cancels once the first text has been streamed.
    let stopper = std::thread::spawn(move || {
        rx.recv().unwrap();
        c2.cancel();
    });
    let mut tx = Some(tx);
    let g = generate(
        &m.model,
        &m.tokenizer,
        &mut state,
        &prompt(),
        &params,
        &cancel,
        &mut |e| {
            if let Event::Text(_) = e {
                if let Some(tx) = tx.take() {
                    tx.send(()).unwrap();
                }
            }
        },
    )
    .unwrap();
    stopper.join().unwrap();
    assert_eq!(g.finish, FinishReason::Cancelled);
    assert!(g.tokens.len() < 10_000);
}

#[test]
fn max_tokens_and_empty_prompt_continuation() {
    let m = smollm();
    let mut state = m.model.new_state();
    let params = GenerateParams {
        max_tokens: 5,
        ..GenerateParams::greedy(0)
    };
    let g = generate(
        &m.model,
        &m.tokenizer,
        &mut state,
        &prompt(),
        &params,
        &CancelToken::new(),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(g.finish, FinishReason::Length);
    assert_eq!(g.tokens.len(), 5);
    // Continue from the state alone: greedy must pick up exactly where an uninterrupted run goes.
    let more = generate(
        &m.model,
        &m.tokenizer,
        &mut state,
        &[],
        &params,
        &CancelToken::new(),
        &mut |_| {},
    )
    .unwrap();
    let mut fresh = m.model.new_state();
    let long = GenerateParams {
        max_tokens: 10,
        ..GenerateParams::greedy(0)
    };
    let all = generate(
        &m.model,
        &m.tokenizer,
        &mut fresh,
        &prompt(),
        &long,
        &CancelToken::new(),
        &mut |_| {},
    )
    .unwrap();
    let mut joined = g.tokens.clone();
    joined.extend(&more.tokens);
    assert_eq!(joined, all.tokens);
    let mut empty = m.model.new_state();
    assert!(generate(
        &m.model,
        &m.tokenizer,
        &mut empty,
        &[],
        &params,
        &CancelToken::new(),
        &mut |_| {}
    )
    .is_err());
}
