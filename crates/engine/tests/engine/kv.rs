//! KvState invariants on the default model.

use crate::support::{max_abs_diff, smollm};
use freeze_attn_engine::EngineError;

fn prompt() -> Vec<u32> {
    smollm()
        .tokenizer
        .encode("The history of the printing press begins in the fifteenth century, when Johannes Gutenberg")
        .unwrap()
}

#[test]
fn token_by_token_equals_one_prefill() {
    let m = &smollm().model;
    let toks = prompt();
    let mut batched = m.new_state();
    let all = m.forward(&toks, &mut batched, true).unwrap();
    let mut stepped = m.new_state();
    for (i, t) in toks.iter().enumerate() {
        let l = m.forward(&[*t], &mut stepped, false).unwrap();
        let d = max_abs_diff(&l, &all.narrow(0, i, 1).unwrap());
        // Every CPU kernel computes a row independently of the others, so this is exact.
        assert_eq!(
            d, 0.0,
            "position {i}: logits of one-by-one decoding differ from the prefill by {d}"
        );
    }
    assert_eq!(stepped.tokens(), batched.tokens());
    for layer in [0, 29] {
        let (k1, v1) = batched.layer_view(layer, 0, toks.len()).unwrap();
        let (k2, v2) = stepped.layer_view(layer, 0, toks.len()).unwrap();
        let dk = max_abs_diff(
            &k1.to_dtype(freeze_attn_engine::DType::F32).unwrap(),
            &k2.to_dtype(freeze_attn_engine::DType::F32).unwrap(),
        );
        let dv = max_abs_diff(
            &v1.to_dtype(freeze_attn_engine::DType::F32).unwrap(),
            &v2.to_dtype(freeze_attn_engine::DType::F32).unwrap(),
        );
        assert!(
            dk == 0.0 && dv == 0.0,
            "layer {layer}: cached K/V differ (K {dk}, V {dv})"
        );
    }
}

#[test]
fn chunked_prefill_equals_single_forward() {
    let m = &smollm().model;
    let toks = prompt();
    let mut one = m.new_state();
    let a = m.forward(&toks, &mut one, false).unwrap();
    let mut chunked = m.new_state();
    let mut reports = Vec::new();
    let b = m
        .prefill(&toks, &mut chunked, 5, &mut |p| {
            reports.push(p.done);
            true
        })
        .unwrap();
    assert_eq!(max_abs_diff(&a, &b), 0.0, "chunking must not change the result");
    assert_eq!(reports.last(), Some(&toks.len()));
    assert_eq!(reports.len(), toks.len().div_ceil(5), "one progress report per chunk");
}

#[test]
fn truncate_then_regenerate_equals_fresh_run() {
    let m = &smollm().model;
    let toks = prompt();
    let cut = toks.len() / 2;
    let mut s = m.new_state();
    m.forward(&toks, &mut s, false).unwrap();
    m.forward(&[42, 43, 44], &mut s, false).unwrap();
    s.truncate(cut);
    assert_eq!(s.len(), cut);
    let rewound = m.forward(&toks[cut..], &mut s, false).unwrap();
    let mut fresh = m.new_state();
    m.forward(&toks[..cut], &mut fresh, false).unwrap();
    let direct = m.forward(&toks[cut..], &mut fresh, false).unwrap();
    assert_eq!(
        max_abs_diff(&rewound, &direct),
        0.0,
        "rewind-and-refeed must be bit-identical to a fresh run with the same chunks"
    );
    assert_eq!(s.tokens(), fresh.tokens());
}

#[test]
fn a_fork_evolves_independently_and_copies_only_when_both_write() {
    let m = &smollm().model;
    let toks = prompt();
    let mut base = m.new_state();
    m.forward(&toks, &mut base, false).unwrap();
    let mut fork = base.fork();
    assert!(fork.shares_storage_with(&base), "a fresh fork shares the buffers");
    let after_fork = m.forward(&[1234], &mut fork, false).unwrap();
    assert!(
        fork.shares_storage_with(&base),
        "the first to write past the common prefix writes in place"
    );
    assert_eq!(base.len(), toks.len(), "the original did not grow");
    // The original continues as if the fork never happened, with another token at the
    // position the fork wrote: it copies first.
    let orig = m.forward(&[777], &mut base, false).unwrap();
    assert!(!fork.shares_storage_with(&base), "the second writer copies");
    let fresh_run = |extra: &[u32]| {
        let mut s = m.new_state();
        m.forward(&toks, &mut s, false).unwrap();
        let mut last = None;
        for t in extra {
            last = Some(m.forward(&[*t], &mut s, false).unwrap());
        }
        (s, last.unwrap())
    };
    let (fresh_base, l) = fresh_run(&[777]);
    assert_eq!(max_abs_diff(&orig, &l), 0.0);
    // The fork's position still holds its own token's K/V: its next step is a fresh run's.
    let next = m.forward(&[99], &mut fork, false).unwrap();
    let (_, l) = fresh_run(&[1234]);
    assert_eq!(max_abs_diff(&after_fork, &l), 0.0);
    let (_, l) = fresh_run(&[1234, 99]);
    assert_eq!(
        max_abs_diff(&next, &l),
        0.0,
        "writes to the original must not reach the fork"
    );
    let f32 = |t: freeze_attn_engine::Tensor| t.to_dtype(freeze_attn_engine::DType::F32).unwrap();
    let (k_base, _) = base.layer_view(3, 0, base.len()).unwrap();
    let (k_fresh, _) = fresh_base.layer_view(3, 0, fresh_base.len()).unwrap();
    assert_eq!(
        max_abs_diff(&f32(k_base), &f32(k_fresh)),
        0.0,
        "writes to the fork must not reach the original"
    );
}

#[test]
fn a_prompt_that_fits_the_room_does_not_copy_the_cache() {
    let m = &smollm().model;
    let toks: Vec<u32> = prompt().into_iter().cycle().take(300).collect();
    let mut s = m.new_state();
    m.prefill(&toks, &mut s, 64, &mut |_| true).unwrap();
    let cap = s.capacity();
    // A conversation's next turns: a reply, then a prompt, while they fit.
    let keep = s.fork();
    for turn in 0..3 {
        for t in 0..20 {
            m.forward(&[200 + t], &mut s, false).unwrap();
        }
        m.prefill(&toks[..50 + turn], &mut s, 64, &mut |_| true).unwrap();
    }
    assert_eq!(s.capacity(), cap, "turns that fit the room do not grow the cache");
    assert!(s.shares_storage_with(&keep), "nor copy it");
    // A prompt that does not fit grows it once, by half at least.
    let long: Vec<u32> = toks.iter().copied().cycle().take(cap).collect();
    m.prefill(&long, &mut s, 256, &mut |_| true).unwrap();
    assert!(s.capacity() >= s.len() + freeze_attn_engine::PREFILL_HEADROOM);
    assert!(!s.shares_storage_with(&keep));
}

#[test]
fn growth_is_chunked_not_per_token() {
    let m = &smollm().model;
    let mut s = m.new_state();
    m.forward(&[1, 2, 3], &mut s, false).unwrap();
    let cap = s.capacity();
    assert!(cap >= 256, "first allocation reserves a chunk, got {cap}");
    for t in 0..50 {
        m.forward(&[100 + t], &mut s, false).unwrap();
    }
    assert_eq!(s.capacity(), cap, "decoding within capacity must not reallocate");
}

#[test]
fn context_overflow_is_an_error_and_leaves_the_state_alone() {
    let m = &smollm().model;
    let ctx = m.config().context_length;
    let mut s = m.new_state();
    m.forward(&[1, 2], &mut s, false).unwrap();
    let too_many = vec![5u32; ctx];
    let e = m.prefill(&too_many, &mut s, 512, &mut |_| true).unwrap_err();
    assert!(
        matches!(e, EngineError::ContextOverflow { needed, context } if needed == ctx + 2 && context == ctx),
        "{e}"
    );
    assert_eq!(s.len(), 2);
    let e = m.forward(&[60_000], &mut s, false).unwrap_err();
    assert!(e.to_string().contains("outside the vocabulary"), "{e}");
}

#[test]
fn cancelled_prefill_rewinds() {
    let m = &smollm().model;
    let toks = prompt();
    let mut s = m.new_state();
    m.forward(&toks[..3], &mut s, false).unwrap();
    let e = m.prefill(&toks[3..], &mut s, 4, &mut |p| p.done < 4).unwrap_err();
    assert!(matches!(e, EngineError::Cancelled));
    assert_eq!(s.tokens(), &toks[..3]);
}

#[test]
fn a_prefill_reserves_its_whole_prompt_and_a_reply_once() {
    let m = &smollm().model;
    let toks: Vec<u32> = prompt().into_iter().cycle().take(700).collect();
    let mut s = m.new_state();
    m.prefill(&toks, &mut s, 64, &mut |_| true).unwrap();
    let cap = s.capacity();
    assert!(
        cap >= 700 + freeze_attn_engine::PREFILL_HEADROOM,
        "capacity {cap} after 700 tokens"
    );
    assert!(
        cap < 700 + freeze_attn_engine::PREFILL_HEADROOM + 256,
        "reserved exactly, got {cap}"
    );
    for t in 0..20 {
        m.forward(&[100 + t], &mut s, false).unwrap();
    }
    assert_eq!(s.capacity(), cap, "a reply within the headroom must not grow the cache");
    // The same values as growing chunk by chunk.
    let mut grown = m.new_state();
    for c in toks.chunks(64) {
        m.forward(c, &mut grown, false).unwrap();
    }
    let f32 = |t: freeze_attn_engine::Tensor| t.to_dtype(freeze_attn_engine::DType::F32).unwrap();
    let (a, _) = s.layer_view(0, 0, 700).unwrap();
    let (b, _) = grown.layer_view(0, 0, 700).unwrap();
    assert_eq!(max_abs_diff(&f32(a), &f32(b)), 0.0);
}

#[test]
fn reserving_keeps_the_tokens_and_a_fork_shares_until_written() {
    let m = &smollm().model;
    let mut s = m.new_state();
    m.forward(&prompt(), &mut s, false).unwrap();
    let f32 = |t: freeze_attn_engine::Tensor| t.to_dtype(freeze_attn_engine::DType::F32).unwrap();
    let before = f32(s.layer_view(3, 0, s.len()).unwrap().0);
    let f = s.fork();
    s.reserve(5000).unwrap();
    assert!(s.capacity() >= 5000);
    assert!(!s.shares_storage_with(&f), "growing gives the state its own buffers");
    assert_eq!(s.tokens(), f.tokens());
    assert_eq!(max_abs_diff(&before, &f32(s.layer_view(3, 0, s.len()).unwrap().0)), 0.0);
    assert_eq!(max_abs_diff(&before, &f32(f.layer_view(3, 0, f.len()).unwrap().0)), 0.0);
}

/// What the app does on a thaw: the thawed state goes to the cache of recent states, a fork of
/// it becomes the live state, and a question and its reply follow. Nothing of the thawed
/// prefix may be copied for that (at 13,600 tokens of a 1B model the copies took 1.8 s on a VM,
/// twelve times the thaw), and the continuation is the uninterrupted run's.
#[test]
fn a_thawed_state_has_room_for_a_question_and_its_reply_without_a_copy() {
    use freeze_attn_engine::state::{load_chain, write_segment, Segment, StoredDType};
    let lm = smollm();
    let m = &lm.model;
    let toks: Vec<u32> = prompt().into_iter().cycle().take(600).collect();
    let question = &toks[..40];
    let mut state = m.new_state();
    m.prefill(&toks, &mut state, 256, &mut |_| true).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("thaw.state");
    write_segment(
        &state,
        0,
        state.len(),
        None,
        lm.fingerprint(),
        StoredDType::F16,
        None,
        &path,
    )
    .unwrap();
    let thawed = load_chain(
        &[Segment::open_for_load(&path).unwrap()],
        toks.len(),
        m,
        lm.fingerprint(),
    )
    .unwrap();
    assert!(
        thawed.capacity() >= toks.len() + freeze_attn_engine::PREFILL_HEADROOM,
        "room for a reply: capacity {}",
        thawed.capacity()
    );
    let cached = thawed.fork();
    let mut live = thawed;
    let mut steps = vec![m.prefill(question, &mut live, 256, &mut |_| true).unwrap()];
    let mut uninterrupted = vec![m.prefill(question, &mut state, 256, &mut |_| true).unwrap()];
    for t in 0..30 {
        steps.push(m.forward(&[300 + t], &mut live, false).unwrap());
        uninterrupted.push(m.forward(&[300 + t], &mut state, false).unwrap());
    }
    assert!(live.shares_storage_with(&cached), "the prefix was copied");
    assert_eq!(cached.len(), toks.len());
    for (i, (a, b)) in steps.iter().zip(&uninterrupted).enumerate() {
        assert_eq!(max_abs_diff(a, b), 0.0, "step {i} differs from the uninterrupted run");
    }
}
