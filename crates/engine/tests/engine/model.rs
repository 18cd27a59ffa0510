//! Logits and greedy continuations of the default model against llama.cpp.

use crate::support::{fixture, ids, smollm};
use freeze_attn_engine::sampling::argmax;
use freeze_attn_engine::{CancelToken, GenerateParams};

/// transformers runs the dequantized weights in f32. Our CPU kernels do too, except for Q4_0,
/// Q8_0 and K-quant matrices, whose inputs they quantize to 8 bits as llama.cpp does (in
/// the default model: the tied Q8_0 output matrix). That moves two near-ties (top-2 gaps 0.04
/// and 0.08): the criterion is ≥ 98% top-1 agreement, every disagreement a near-tie.
#[test]
fn teacher_forced_top1_matches_transformers() {
    teacher_forced("smollm2_transformers.json", 0.98);
}

/// llama.cpp quantizes activations to 8 bits inside its matrix products, so on this 135M model
/// it disagrees with transformers at 8 of the 170 positions (all near-ties); we hold it to the
/// same: ≥ 95%, and every disagreement a near-tie for llama.cpp (top-2 gap < 0.5).
#[test]
fn teacher_forced_top1_matches_llama_cpp() {
    teacher_forced("smollm2_llamacpp.json", 0.95);
}

fn teacher_forced(reference: &str, min_rate: f64) {
    teacher_forced_with(smollm(), reference, min_rate);
}

/// Top-1 agreement of `m` with a reference over its teacher-forced sequences: at least
/// `min_rate`, every disagreement a near-tie for the reference, log-probs within 0.5 nats.
pub(crate) fn teacher_forced_with(m: &freeze_attn_engine::LoadedModel, reference: &str, min_rate: f64) {
    let fx = fixture(reference);
    let (mut same, mut total, mut worst) = (0usize, 0usize, 0f32);
    for case in fx["teacher_forced"].as_array().unwrap() {
        let tokens = ids(&case["ids"]);
        let top1 = ids(&case["top1"]);
        let ref_lp: Vec<f32> = case["top1_logprob"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        let mut state = m.model.new_state();
        let lp = m.model.log_probs(&tokens, &mut state).unwrap();
        let rows = lp.to_vec2::<f32>().unwrap();
        for (i, row) in rows.iter().enumerate() {
            total += 1;
            if argmax(row) == top1[i] {
                same += 1;
            } else {
                let gap = case["gap"][i].as_f64().unwrap();
                assert!(
                    gap < 0.5,
                    "{reference}: {} position {i}: top-1 differs where the reference is sure (gap {gap})",
                    case["name"]
                );
                eprintln!(
                    "{reference}: mismatch {} pos {i}: ours {} ref {} (ref top-2 gap {})",
                    case["name"],
                    argmax(row),
                    top1[i],
                    case["gap"][i]
                );
            }
            worst = worst.max((row[top1[i] as usize] - ref_lp[i]).abs());
        }
    }
    let rate = same as f64 / total as f64;
    eprintln!("{reference}: teacher-forced: top-1 agreement {same}/{total} = {:.4}; largest |Δ log-prob| of the reference's top-1 = {worst:.4}", rate);
    assert!(rate >= min_rate, "{reference}: top-1 agreement {rate:.4} < {min_rate}");
    assert!(worst < 0.5, "{reference}: log-probs drift by {worst} nats");
}

#[test]
fn greedy_continuations_match_llama_cpp() {
    greedy("smollm2_llamacpp.json");
}

#[test]
fn greedy_continuations_match_transformers() {
    greedy("smollm2_transformers.json");
}

fn greedy(reference: &str) {
    let fx = fixture(reference);
    let m = smollm();
    for case in fx["greedy"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let prompt = ids(&case["ids"]);
        let want = ids(&case["tokens"]);
        let gaps: Vec<f64> = case["gap"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        let mut state = m.model.new_state();
        let params = GenerateParams {
            max_tokens: 32,
            ..GenerateParams::greedy(0)
        };
        let g = freeze_attn_engine::generate(
            &m.model,
            &m.tokenizer,
            &mut state,
            &prompt,
            &params,
            &CancelToken::new(),
            &mut |_| {},
        )
        .unwrap();
        // The references include the end-of-generation token; ours stops before it.
        let want_visible: Vec<u32> = want.iter().copied().take_while(|t| !m.tokenizer.is_stop(*t)).collect();
        match g.tokens.iter().zip(&want_visible).position(|(a, b)| a != b) {
            None => assert_eq!(g.tokens.len(), want_visible.len(), "{reference} {name}: lengths differ: ours {:?} ref {:?}", g.tokens, want_visible),
            Some(i) => assert!(
                gaps[i] < 0.5,
                "{reference} {name}: first difference at step {i} where the reference's top-2 gap is {:.3} nats (not a near-tie)\n ours {:?}\n ref  {:?}",
                gaps[i],
                g.tokens,
                want_visible
            ),
        }
    }
}

#[test]
fn the_model_answers_sensibly() {
    // A human-readable check that the forward pass is not producing gibberish.
    let m = smollm();
    let text = m
        .template()
        .unwrap()
        .render(
            &[
                freeze_attn_engine::Message::system("You are a helpful assistant."),
                freeze_attn_engine::Message::user("What is the capital of France?"),
            ],
            true,
        )
        .unwrap();
    let prompt = m.tokenizer.encode(&text).unwrap();
    let mut state = m.model.new_state();
    let params = GenerateParams {
        max_tokens: 24,
        ..GenerateParams::greedy(0)
    };
    let g = freeze_attn_engine::generate(
        &m.model,
        &m.tokenizer,
        &mut state,
        &prompt,
        &params,
        &CancelToken::new(),
        &mut |_| {},
    )
    .unwrap();
    assert!(
        g.text.contains("Paris"),
        "expected the answer to mention Paris, got {:?}",
        g.text
    );
}
