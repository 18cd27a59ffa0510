//! The generation loop on the default model.

use crate::support::{fixture, ids, smollm};
use freeze_attn_engine::{generate, CancelToken, Event, FinishReason, GenerateParams, SamplingParams, TokenLogprob};

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
    let (g, events, state_tokens) = run_events(params);
    let streamed = events
        .iter()
        .filter_map(|e| match e {
            Streamed::Text(t) => Some(t.as_str()),
            Streamed::Logprobs(_) => None,
        })
        .collect();
    (g, streamed, state_tokens)
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

/// What a generation streamed, in order.
#[derive(Debug)]
enum Streamed {
    Logprobs(Vec<TokenLogprob>),
    Text(String),
}

/// Runs `params`, keeping the `Logprobs` and `Text` events in order; also the state's tokens.
fn run_events(params: &GenerateParams) -> (freeze_attn_engine::Generation, Vec<Streamed>, Vec<u32>) {
    let m = smollm();
    let mut state = m.model.new_state();
    let mut events = Vec::new();
    let g = generate(
        &m.model,
        &m.tokenizer,
        &mut state,
        &prompt(),
        params,
        &CancelToken::new(),
        &mut |e| match e {
            Event::Logprobs(l) => events.push(Streamed::Logprobs(l.to_vec())),
            Event::Text(t) => events.push(Streamed::Text(t.to_string())),
            Event::Prefill(_) => {}
        },
    )
    .unwrap();
    (g, events, state.tokens().to_vec())
}

fn run_with_logprobs(params: &GenerateParams) -> (freeze_attn_engine::Generation, Vec<Streamed>) {
    let (g, events, _) = run_events(params);
    (g, events)
}

/// Each generated token's log-probability is the model's (the log-softmax of its logits at that
/// step, checked against the whole sequence fed at once), sampling is unchanged by asking for
/// them, and the stream hands each out exactly once, with the text it completes.
#[test]
fn logprobs_are_the_models_and_stream_once_each() {
    let m = smollm();
    for stop in [None, Some(3usize)] {
        let mut params = sampled(7);
        params.max_tokens = 24;
        let (plain, _, _) = run(&params);
        if let Some(w) = stop {
            let word = plain.text.split_whitespace().nth(w).unwrap().to_string();
            params.stop_strings = vec![word];
        }
        params.logprobs = Some(5);
        let (g, events) = run_with_logprobs(&params);
        if stop.is_some() {
            assert_eq!(g.finish, FinishReason::StopString);
        } else {
            assert_eq!(g.tokens, plain.tokens, "asking for log-probabilities changes no sample");
        }
        assert_eq!(g.logprobs.len(), g.tokens.len());
        let streamed: Vec<TokenLogprob> = events
            .iter()
            .filter_map(|e| match e {
                Streamed::Logprobs(l) => Some(l.clone()),
                Streamed::Text(_) => None,
            })
            .flatten()
            .collect();
        assert_eq!(streamed, g.logprobs, "streamed once each, in order");
        // Each batch comes right before the text it completes: with no stop string (no text
        // held back), the tokens handed out so far decode to the text streamed so far.
        let (mut ids, mut text, mut batches) = (Vec::new(), String::new(), 0);
        for e in &events {
            match e {
                Streamed::Logprobs(l) => {
                    ids.extend(l.iter().map(|t| t.token));
                    batches += 1;
                }
                Streamed::Text(t) => {
                    text.push_str(t);
                    if stop.is_none() {
                        assert_eq!(m.tokenizer.decode(&ids).unwrap(), text, "{events:?}");
                    }
                }
            }
        }
        assert!(
            batches > g.tokens.len() / 3,
            "streamed along, not at the end: {batches} batches"
        );
        // Against the model's log-probabilities of the whole sequence, fed at once.
        let mut seq = prompt();
        seq.extend(&g.tokens);
        let mut state = m.model.new_state();
        let rows = m.model.log_probs(&seq, &mut state).unwrap().to_vec2::<f32>().unwrap();
        for (i, lp) in g.logprobs.iter().enumerate() {
            let row = &rows[prompt().len() + i - 1];
            assert_eq!(lp.token, g.tokens[i]);
            assert!((lp.logprob - row[lp.token as usize]).abs() < 0.02, "step {i}: {lp:?}");
            assert_eq!(lp.top.len(), 5);
            assert!(lp.top.windows(2).all(|w| w[0].1 >= w[1].1), "most likely first: {lp:?}");
            let best = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            assert!(
                (lp.top[0].1 - best).abs() < 0.02,
                "step {i}: top {:?} vs {best}",
                lp.top[0]
            );
            assert!(lp.top.iter().all(|&(id, p)| (p - row[id as usize]).abs() < 0.02));
            assert!(lp.logprob <= lp.top[0].1 && lp.top.iter().map(|t| t.1.exp()).sum::<f32>() <= 1.0 + 1e-4);
        }
    }
    // Greedy: the chosen token is the most likely one.
    let (g, _) = run_with_logprobs(&GenerateParams {
        max_tokens: 8,
        logprobs: Some(0),
        ..GenerateParams::greedy(0)
    });
    assert!(g.logprobs.iter().all(|l| l.top.is_empty()));
    let (g2, _) = run_with_logprobs(&GenerateParams {
        max_tokens: 8,
        logprobs: Some(1),
        ..GenerateParams::greedy(0)
    });
    assert_eq!(g.tokens, g2.tokens);
    assert!(g2.logprobs.iter().all(|l| l.top[0] == (l.token, l.logprob)));
    assert!(GenerateParams {
        logprobs: Some(21),
        ..GenerateParams::greedy(1)
    }
    .validate()
    .is_err());
}

/// The first generated token's log-probability after each reference prompt, against llama.cpp's
/// (its logits' log-softmax at the prompt's last position): the same token where llama.cpp is
/// not at a near-tie, and within 0.5 nats, the bound of the teacher-forced comparison.
#[test]
fn first_token_logprobs_agree_with_llama_cpp() {
    let m = smollm();
    let fx = fixture("smollm2_llamacpp.json");
    let mut worst = 0f32;
    for case in fx["teacher_forced"].as_array().unwrap() {
        let prompt = ids(&case["ids"]);
        let last = prompt.len() - 1;
        let ref_top = ids(&case["top1"])[last];
        let ref_lp = case["top1_logprob"][last].as_f64().unwrap() as f32;
        let gap = case["gap"][last].as_f64().unwrap();
        let mut state = m.model.new_state();
        let g = generate(
            &m.model,
            &m.tokenizer,
            &mut state,
            &prompt,
            &GenerateParams {
                max_tokens: 1,
                logprobs: Some(3),
                ..GenerateParams::greedy(1)
            },
            &CancelToken::new(),
            &mut |_| {},
        )
        .unwrap();
        let lp = &g.logprobs[0];
        let ours = lp.top.iter().find(|t| t.0 == ref_top).map(|t| t.1);
        if gap >= 0.5 {
            assert_eq!(lp.top[0].0, ref_top, "{}: top token", case["name"]);
        }
        let ours = ours.unwrap_or_else(|| panic!("{}: llama.cpp's top token is not in our top 3", case["name"]));
        worst = worst.max((ours - ref_lp).abs());
    }
    eprintln!("first-token log-prob of llama.cpp's top token: largest difference {worst:.4} nats");
    assert!(worst < 0.5, "{worst}");
}

/// `score` (a prompt's tokens, each given those before it) against llama.cpp's teacher-forced
/// top tokens at every position of the fixture's prompts, and against one whole forward pass
/// over a prompt longer than a scoring chunk.
#[test]
fn prompt_scores_agree_with_llama_cpp_and_with_one_pass() {
    use freeze_attn_engine::{score, SCORE_CHUNK};
    let m = smollm();
    let fx = fixture("smollm2_llamacpp.json");
    let mut worst = 0f32;
    let mut compared = 0;
    for case in fx["teacher_forced"].as_array().unwrap() {
        let prompt = ids(&case["ids"]);
        let mut state = m.model.new_state();
        let scored = score(&m.model, &mut state, &prompt, 3, &CancelToken::new()).unwrap();
        assert_eq!(scored.len(), prompt.len() - 1);
        assert_eq!(
            state.tokens(),
            &prompt[..prompt.len() - 1],
            "the last token is left to feed"
        );
        for (i, lp) in scored.iter().enumerate() {
            assert_eq!(lp.token, prompt[i + 1]);
            // llama.cpp's top token after position i.
            let ref_top = ids(&case["top1"])[i];
            let ref_lp = case["top1_logprob"][i].as_f64().unwrap() as f32;
            if case["gap"][i].as_f64().unwrap() >= 0.5 {
                assert_eq!(lp.top[0].0, ref_top, "{} position {i}: top token", case["name"]);
            }
            if let Some(ours) = lp.top.iter().find(|t| t.0 == ref_top) {
                worst = worst.max((ours.1 - ref_lp).abs());
                compared += 1;
            }
        }
    }
    eprintln!("prompt scores: llama.cpp's top token at {compared} positions, largest difference {worst:.4} nats");
    assert!(compared > 30 && worst < 0.5, "{compared} {worst}");

    // Past a chunk: the same as one forward pass over the whole prompt.
    let text = "The lighthouse keeper wrote in his log every night, by the light of the lamp. ".repeat(12);
    let prompt = m.tokenizer.encode_prompt(&text).unwrap();
    assert!(prompt.len() > 2 * SCORE_CHUNK);
    let mut state = m.model.new_state();
    let scored = score(&m.model, &mut state, &prompt, 1, &CancelToken::new()).unwrap();
    let mut whole = m.model.new_state();
    let all = m
        .model
        .log_probs(&prompt[..prompt.len() - 1], &mut whole)
        .unwrap()
        .reshape((prompt.len() - 1, ()))
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    let mut diff = 0f32;
    for (i, lp) in scored.iter().enumerate() {
        diff = diff.max((lp.logprob - all[i][prompt[i + 1] as usize]).abs());
    }
    eprintln!("prompt scores in chunks of {SCORE_CHUNK} against one pass: largest difference {diff:.2e} nats");
    assert!(diff < 1e-2, "{diff}");
}

/// One greedy and four sampled generations (200 tokens at most) under `grammar` for a chat
/// of one user message (each checked to leave its tokens in the state).
fn under_grammar(
    m: &freeze_attn_engine::LoadedModel,
    ask: &str,
    grammar: freeze_attn_engine::Grammar,
) -> Vec<(GenerateParams, freeze_attn_engine::generate::Generation)> {
    let chat = m
        .template()
        .unwrap()
        .render(&[freeze_attn_engine::Message::user(ask)], true)
        .unwrap();
    let prompt = m.tokenizer.encode(&chat).unwrap();
    let mut params = vec![GenerateParams {
        grammar: Some(grammar.clone()),
        ..GenerateParams::greedy(200)
    }];
    for seed in 0..4 {
        params.push(GenerateParams {
            grammar: Some(grammar.clone()),
            max_tokens: 200,
            ..sampled(seed)
        });
    }
    params
        .into_iter()
        .map(|p| {
            let mut state = m.model.new_state();
            let g = generate(
                &m.model,
                &m.tokenizer,
                &mut state,
                &prompt,
                &p,
                &CancelToken::new(),
                &mut |_| {},
            )
            .unwrap();
            assert_eq!(
                state.len(),
                prompt.len() + g.tokens.len(),
                "the state holds every generated token"
            );
            (p, g)
        })
        .collect()
}

/// JSON mode: greedy and sampled generations under the JSON-object grammar are JSON objects
/// that end where the object closes, on the default model asked (in a chat) for JSON.
#[test]
fn a_json_object_grammar_gives_json_objects() {
    use freeze_attn_engine::Grammar;
    let m = smollm();
    let runs = under_grammar(
        m,
        "Describe a cat as JSON with the keys name, age and colors (a list).",
        Grammar::JsonObject,
    );
    let mut complete = 0;
    for (p, g) in &runs {
        eprintln!("json (t={}): {:?} {}", p.sampling.temperature, g.finish, g.text);
        match g.finish {
            FinishReason::StopToken => {
                let v: serde_json::Value = serde_json::from_str(&g.text).unwrap_or_else(|e| panic!("{e}: {}", g.text));
                assert!(v.is_object(), "{}", g.text);
                assert!(g.text.trim_end().ends_with('}'));
                complete += 1;
            }
            // Cut off: what there is must still be the start of an object.
            FinishReason::Length => {
                assert!(g.text.trim_start().starts_with('{'), "{}", g.text);
                let mut j = freeze_attn_engine::grammar::Matcher::any_object();
                assert!(j.advance(g.text.as_bytes()), "{}", g.text);
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(
        complete >= 3,
        "{complete} of {} objects closed within 200 tokens",
        runs.len()
    );
}

/// Structured outputs: under a JSON Schema (nested object through `$ref`, enum, integer,
/// optional key, bounded list) every generation that ends is an object with the schema's keys
/// in its order and values of its types; one cut off is still a prefix the schema allows.
#[test]
fn a_json_schema_grammar_gives_what_the_schema_describes() {
    use freeze_attn_engine::grammar::{Matcher, Schema};
    use freeze_attn_engine::Grammar;
    use std::sync::Arc;
    let schema = serde_json::json!({
        "$defs": {"Owner": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 16}}, "required": ["name"]}},
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 20},
            "age": {"type": "integer"},
            "color": {"enum": ["black", "white", "ginger"]},
            "nickname": {"type": "string", "maxLength": 12},
            "owner": {"$ref": "#/$defs/Owner"},
            "toys": {"type": "array", "items": {"type": "string", "maxLength": 12}, "maxItems": 3}
        },
        "required": ["name", "age", "color", "owner", "toys"]
    });
    let schema = Arc::new(Schema::compile(&schema).unwrap());
    let m = smollm();
    let runs = under_grammar(m, "Describe a cat as JSON.", Grammar::JsonSchema(schema.clone()));
    let mut complete = 0;
    for (p, g) in &runs {
        eprintln!("schema (t={}): {:?} {}", p.sampling.temperature, g.finish, g.text);
        let mut matcher = Matcher::new(schema.clone());
        assert!(matcher.advance(g.text.as_bytes()), "{}", g.text);
        match g.finish {
            FinishReason::StopToken => {
                assert!(matcher.is_complete());
                let v: serde_json::Value = serde_json::from_str(&g.text).unwrap_or_else(|e| panic!("{e}: {}", g.text));
                let o = v.as_object().unwrap();
                let keys: Vec<&str> = o.keys().map(|k| k.as_str()).collect();
                let order = ["name", "age", "color", "nickname", "owner", "toys"];
                let expected: Vec<&str> = order.iter().copied().filter(|k| o.contains_key(*k)).collect();
                assert_eq!(keys, expected, "only the schema's keys, in its order");
                assert!(o["name"].as_str().is_some_and(|s| s.chars().count() <= 20));
                assert!(o["age"].is_i64() || o["age"].is_u64());
                assert!(["black", "white", "ginger"].contains(&o["color"].as_str().unwrap()));
                assert!(o["owner"]["name"].is_string());
                assert!(o["toys"]
                    .as_array()
                    .is_some_and(|t| t.len() <= 3 && t.iter().all(|t| t.is_string())));
                complete += 1;
            }
            FinishReason::Length => {}
            other => panic!("{other:?}"),
        }
    }
    assert!(
        complete >= 3,
        "{complete} of {} objects closed within 200 tokens",
        runs.len()
    );
}
