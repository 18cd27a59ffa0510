//! Attention states on disk: exact resumption, chains, rewinds, other processes, and refusals.

use crate::support::{continue_greedy, edit_header, max_abs_diff, model};
use freeze_attn::bench::sample_tokens;
use freeze_attn::engine::state::{load_chain, StoredDType};
use freeze_attn::engine::{CancelToken, GenerateParams, SamplingParams};
use freeze_attn::state::{load_state, resolve_chain, save_state};
use freeze_attn::Transcript;

fn question() -> Vec<u32> {
    model()
        .tokenizer
        .encode("\n\nIn one sentence, what is this about?")
        .unwrap()
}

#[test]
fn a_thawed_state_continues_exactly_like_an_uninterrupted_run() {
    let m = model();
    let dir = tempfile::tempdir().unwrap();
    for n in [1usize, 100, 2000] {
        let prefix = sample_tokens(m, n).unwrap();
        let mut live = m.model.new_state();
        m.model.prefill(&prefix, &mut live, 512, &mut |_| true).unwrap();
        let path = dir.path().join(format!("p{n}.state"));
        let saved = save_state(m, &live, &path, StoredDType::F16, None, None).unwrap();
        assert_eq!(saved.tokens, n);
        // The uninterrupted run continues from the live state.
        let expected = continue_greedy(&mut live.fork(), &question(), 24);
        // Another: the same full token sequence fed in one go from scratch.
        let mut full = prefix.clone();
        full.extend(question());
        let mut scratch = m.model.new_state();
        let l_scratch = m.model.prefill(&full, &mut scratch, 512, &mut |_| true).unwrap();
        let mut thawed = load_state(m, &path).unwrap().state;
        assert_eq!(thawed.tokens(), prefix.as_slice(), "the token ids come back");
        let l_thawed = m
            .model
            .prefill(&question(), &mut thawed.fork(), 512, &mut |_| true)
            .unwrap();
        let diff = max_abs_diff(&l_thawed, &l_scratch);
        assert_eq!(
            diff, 0.0,
            "prefix {n}: logits after thawing must equal a from-scratch run bit for bit"
        );
        let got = continue_greedy(&mut thawed, &question(), 24);
        assert_eq!(got, expected, "prefix {n}: greedy continuation differs after thawing");
    }
}

#[test]
fn sampling_with_a_seed_is_reproduced_from_a_thawed_state() {
    let m = model();
    let dir = tempfile::tempdir().unwrap();
    let prefix = sample_tokens(m, 150).unwrap();
    let mut live = m.model.new_state();
    m.model.prefill(&prefix, &mut live, 512, &mut |_| true).unwrap();
    let path = dir.path().join("s.state");
    save_state(m, &live, &path, StoredDType::F16, None, None).unwrap();
    let params = GenerateParams {
        max_tokens: 32,
        sampling: SamplingParams {
            temperature: 0.9,
            top_p: 0.95,
            top_k: 40,
            seed: 1234,
            ..Default::default()
        },
        ..Default::default()
    };
    let run = |state: &mut freeze_attn::engine::KvState| {
        freeze_attn::engine::generate(
            &m.model,
            &m.tokenizer,
            state,
            &question(),
            &params,
            &CancelToken::new(),
            &mut |_| {},
        )
        .unwrap()
        .text
    };
    let uninterrupted = run(&mut live);
    let thawed = run(&mut load_state(m, &path).unwrap().state);
    assert_eq!(thawed, uninterrupted);
}

#[test]
fn a_three_segment_chain_and_a_rewind_inside_a_segment() {
    let m = model();
    let dir = tempfile::tempdir().unwrap();
    let a = sample_tokens(m, 120).unwrap();
    let b = m
        .tokenizer
        .encode(" The second part adds more text to the story.")
        .unwrap();
    let c = m.tokenizer.encode(" And a third part closes it.").unwrap();
    let mut live = m.model.new_state();
    m.model.prefill(&a, &mut live, 512, &mut |_| true).unwrap();
    let pa = dir.path().join("a.state");
    let sa = save_state(m, &live, &pa, StoredDType::F16, None, None).unwrap();
    // Grow from the loaded state and save: only the new tokens are written.
    let la = load_state(m, &pa).unwrap();
    let mut s = la.state.clone();
    m.model.prefill(&b, &mut s, 512, &mut |_| true).unwrap();
    let pb = dir.path().join("b.state");
    let sb = save_state(m, &s, &pb, StoredDType::F16, la.as_parent(la.chain_len).as_ref(), None).unwrap();
    assert_eq!((sb.start, sb.tokens), (a.len(), b.len()));
    assert_eq!(sb.parent.as_ref(), Some(&sa.id));
    let per_token = sa.bytes as f64 / a.len() as f64;
    assert!(
        (sb.bytes as f64) < per_token * (b.len() as f64 + 4.0),
        "the child holds only its own tokens"
    );
    let lb = load_state(m, &pb).unwrap();
    let mut s = lb.state.clone();
    m.model.prefill(&c, &mut s, 512, &mut |_| true).unwrap();
    let pc = dir.path().join("c.state");
    save_state(m, &s, &pc, StoredDType::F16, lb.as_parent(lb.chain_len).as_ref(), None).unwrap();

    let mut all = a.clone();
    all.extend(&b);
    all.extend(&c);
    let chain = resolve_chain(&pc).unwrap();
    assert_eq!(chain.len(), 3);
    let mut thawed = load_state(m, &pc).unwrap().state;
    assert_eq!(thawed.tokens(), all.as_slice());
    let mut scratch = m.model.new_state();
    m.model.prefill(&all, &mut scratch, 512, &mut |_| true).unwrap();
    assert_eq!(
        continue_greedy(&mut thawed, &question(), 16),
        continue_greedy(&mut scratch, &question(), 16)
    );

    // Rewind to the middle of the second segment: a state of the first k tokens, no copy on disk.
    let k = a.len() + b.len() / 2;
    let mut rewound = load_chain(&chain, k, &m.model, m.fingerprint()).unwrap();
    assert_eq!(rewound.tokens(), &all[..k]);
    let mut scratch = m.model.new_state();
    m.model.prefill(&all[..k], &mut scratch, 512, &mut |_| true).unwrap();
    assert_eq!(
        continue_greedy(&mut rewound, &question(), 16),
        continue_greedy(&mut scratch, &question(), 16)
    );
}

#[test]
fn bytes_per_token_and_q8_fidelity() {
    let m = model();
    let dir = tempfile::tempdir().unwrap();
    let prefix = sample_tokens(m, 300).unwrap();
    let mut live = m.model.new_state();
    m.model.prefill(&prefix, &mut live, 512, &mut |_| true).unwrap();
    let mut sizes = Vec::new();
    for dt in [StoredDType::F16, StoredDType::Bf16, StoredDType::F32, StoredDType::Q8] {
        let p = dir.path().join(format!("{dt}.state"));
        let s = save_state(m, &live, &p, dt, None, None).unwrap();
        sizes.push((dt, s.bytes as f64 / prefix.len() as f64));
    }
    eprintln!("bytes per token: {sizes:?}");
    let f16 = sizes[0].1;
    // The live cache is f16 on the CPU, as the stored f16 values.
    let kv = m.model.kv_geometry().bytes_per_position() as f64;
    assert!(
        f16 < kv * 1.01 + 64.0,
        "f16 is the K/V bytes plus little overhead ({f16} vs {kv})"
    );
    assert!(sizes[3].1 <= 0.55 * f16, "q8 must take at most 0.55× the f16 size");
    // f16 is exactly the K/V, 2 bytes per token id (SmolLM2's ids fit in 16 bits) and the header.
    let file = std::fs::read(dir.path().join("f16.state")).unwrap();
    let header = u64::from_le_bytes(file[..8].try_into().unwrap()) as f64;
    let n = prefix.len() as f64;
    assert_eq!(f16 * n, 8.0 + header + n * (kv + 2.0), "f16 file layout");
    // Fidelity: greedy equality over 64 tokens and the largest logit difference.
    let q8 = load_state(m, &dir.path().join("q8.state")).unwrap().state;
    let reference = m
        .model
        .prefill(&question(), &mut live.fork(), 512, &mut |_| true)
        .unwrap();
    let from_q8 = m
        .model
        .prefill(&question(), &mut q8.fork(), 512, &mut |_| true)
        .unwrap();
    let diff = max_abs_diff(&reference, &from_q8);
    let same = continue_greedy(&mut live.fork(), &question(), 64) == continue_greedy(&mut q8.fork(), &question(), 64);
    eprintln!("q8: largest logit difference {diff:.4}, greedy 64 tokens identical: {same}");
    assert!(diff < 1.0, "q8 drifts by {diff} logits");
    for dt in ["bf16", "f32"] {
        let s = load_state(m, &dir.path().join(format!("{dt}.state"))).unwrap().state;
        assert_eq!(s.tokens(), prefix.as_slice());
    }
}

/// A state written by a build of format version 1 (`tests/fixtures/state-v1-f16.state`, see
/// `tests/fixtures/README.md`) still loads and continues exactly like a from-scratch run.
#[test]
fn a_version_1_state_file_still_loads_and_resumes_exactly() {
    let m = model();
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/state-v1-f16.state");
    // The fixture names the fingerprint of its day (version 1, which sampled the weights); the
    // file format is what this test is about, so a copy names today's fingerprint. The header's
    // fingerprint is outside the checksum, and the version-1 layout is untouched.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state-v1-f16.state");
    std::fs::copy(&fixture, &path).unwrap();
    edit_header(&path, |h| {
        h.insert("model_fingerprint".into(), m.fingerprint().as_str().into());
    });
    let loaded = load_state(m, &path).unwrap();
    let tokens = loaded.state.tokens().to_vec();
    let text = "The lighthouse keeper wrote in his log:";
    assert_eq!(tokens, m.tokenizer.encode_prompt(text).unwrap());
    assert_eq!(loaded.transcript, Some(Transcript::Text { text: text.into() }));
    let mut full = tokens.clone();
    full.extend(question());
    let mut scratch = m.model.new_state();
    let l_scratch = m.model.prefill(&full, &mut scratch, 512, &mut |_| true).unwrap();
    let l_thawed = m
        .model
        .prefill(&question(), &mut loaded.state.fork(), 512, &mut |_| true)
        .unwrap();
    let diff = max_abs_diff(&l_thawed, &l_scratch);
    assert_eq!(diff, 0.0, "a version-1 state resumes bit for bit");
    let mut scratch = m.model.new_state();
    m.model.prefill(&tokens, &mut scratch, 512, &mut |_| true).unwrap();
    assert_eq!(
        continue_greedy(&mut loaded.state.fork(), &question(), 16),
        continue_greedy(&mut scratch, &question(), 16)
    );
}

#[test]
fn the_transcript_travels_with_the_state() {
    let m = model();
    let dir = tempfile::tempdir().unwrap();
    let t = Transcript::Text {
        text: "Once upon a time".into(),
    };
    let mut live = m.model.new_state();
    m.model
        .prefill(
            &m.tokenizer.encode_prompt("Once upon a time").unwrap(),
            &mut live,
            512,
            &mut |_| true,
        )
        .unwrap();
    let p = dir.path().join("t.state");
    save_state(m, &live, &p, StoredDType::F16, None, Some(&t)).unwrap();
    assert_eq!(load_state(m, &p).unwrap().transcript, Some(t));
    // The transcript decides what the model is told next: a changed letter in it is refused
    // like changed K/V ("BANANA" becoming "CANANA").
    edit_header(&p, |h| {
        let t = h["transcript"].as_str().unwrap().replace("Once", "Ponce");
        h.insert("transcript".into(), t.into());
    });
    let e = load_state(m, &p).unwrap_err();
    assert_eq!(e.code(), "state_checksum", "{e}");
}

/// Every refusal: each bad file is built and the error checked; nothing loads into garbage.
#[test]
fn bad_state_files_are_refused_with_clear_errors() {
    let m = model();
    let dir = tempfile::tempdir().unwrap();
    let prefix = sample_tokens(m, 40).unwrap();
    let mut live = m.model.new_state();
    m.model.prefill(&prefix, &mut live, 512, &mut |_| true).unwrap();
    let good = dir.path().join("good.state");
    save_state(m, &live, &good, StoredDType::F16, None, None).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let case = |name: &str, f: &dyn Fn(&std::path::Path)| -> String {
        let p = dir.path().join(name);
        std::fs::write(&p, &bytes).unwrap();
        f(&p);
        match load_state(m, &p) {
            Ok(_) => panic!("{name}: a bad state file was loaded"),
            // The code first: each kind of refusal has its own, for the app and for scripts.
            Err(e) => format!("[{}] {e}", e.code()),
        }
    };
    // A copy of the good file with header fields set to other values.
    let with_fields = |name: &str, fields: &[(&str, &str)]| {
        case(name, &|p| {
            edit_header(p, |h| {
                for (k, v) in fields {
                    h.insert((*k).into(), (*v).into());
                }
            })
        })
    };
    let e = with_fields(
        "other-model.state",
        &[("model_fingerprint", "0123456789abcdef0123456789abcdef")],
    );
    assert!(
        e.starts_with("[state_model_mismatch]")
            && e.contains("belongs to another model")
            && e.contains("0123456789abcdef")
            && e.contains(m.fingerprint().as_str()),
        "{e}"
    );
    let e = with_fields("version.state", &[("format_version", "4")]);
    assert!(
        e.starts_with("[state_version]") && e.contains("version 4 is not supported"),
        "{e}"
    );
    let e = with_fields("v1-with-u16-tokens.state", &[("format_version", "1")]);
    assert!(
        e.starts_with("[state_corrupted]") && e.contains("tensor `tokens` is U16 [40], expected U32 [40]"),
        "version 1 stored U32 token ids only: {e}"
    );
    let e = case("checksum.state", &|p| {
        let mut b = std::fs::read(p).unwrap();
        let n = b.len();
        b[n - 100] ^= 0x40;
        std::fs::write(p, b).unwrap();
    });
    assert!(
        e.starts_with("[state_checksum]") && e.contains("checksum mismatch"),
        "{e}"
    );
    let e = case("truncated.state", &|p| {
        let b = std::fs::read(p).unwrap();
        std::fs::write(p, &b[..b.len() / 2]).unwrap();
    });
    assert!(e.starts_with("[state_corrupted]") && e.contains("truncated"), "{e}");
    let e = with_fields("shape.state", &[("kv_shape", "30,3,32")]);
    assert!(
        e.starts_with("[state_corrupted]") && e.contains("expected F16 [3, 40, 32]"),
        "{e}"
    );
    let e = with_fields("count.state", &[("token_count", "4000000000")]);
    assert!(
        e.contains("tensor `tokens` is U16 [40], expected U16 [4000000000]"),
        "{e}"
    );
    // A header may claim any number of layers; nothing is allocated from that claim before it
    // is checked against the tensors the file holds (2^40 layers made a list of 2^41 names).
    for (name, layers) in [("huge.state", "10000000"), ("overflow.state", "1099511627776")] {
        let e = with_fields(name, &[("kv_shape", &format!("{layers},3,64"))]);
        assert!(
            e.starts_with("[state_corrupted]") && e.contains("it holds 61 tensors"),
            "{name}: {e}"
        );
    }
    let e = with_fields("q8-odd-head.state", &[("stored_dtype", "q8"), ("kv_shape", "30,3,48")]);
    assert!(
        e.starts_with("[state_corrupted]") && e.contains("divisible by 32, this one says 48"),
        "{e}"
    );
    let e = case("missing-field.state", &|p| {
        edit_header(p, |h| {
            h.remove("stored_dtype");
        })
    });
    assert!(
        e.starts_with("[state_corrupted]") && e.contains("`stored_dtype` is missing"),
        "{e}"
    );
    let e = with_fields("dtype.state", &[("stored_dtype", "f8")]);
    assert!(
        e.starts_with("[state_dtype]") && e.contains("unknown stored dtype `f8`"),
        "{e}"
    );
    let e = case("not-a-state.state", &|p| {
        std::fs::write(p, b"hello, this is text").unwrap()
    });
    assert!(
        e.starts_with("[not_a_state_file]") && e.contains("not a state file"),
        "{e}"
    );

    // A child whose parent file is gone.
    let la = load_state(m, &good).unwrap();
    let mut s = la.state.clone();
    m.model.prefill(&question(), &mut s, 512, &mut |_| true).unwrap();
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    let child = sub.join("child.state");
    save_state(
        m,
        &s,
        &child,
        StoredDType::F16,
        la.as_parent(la.chain_len).as_ref(),
        None,
    )
    .unwrap();
    let e = load_state(m, &child).unwrap_err();
    assert_eq!(e.code(), "state_missing_parent");
    assert!(e.to_string().contains("missing parent segment"), "{e}");
}

#[test]
fn a_state_file_truncated_while_it_loads_is_refused_and_never_kills_the_process() {
    // Another process shrinking the file under a reader: with a memory mapping, touching the
    // lost pages raises SIGBUS and kills the whole process; read whole, the load comes back
    // short and is refused with an error.
    let m = model();
    let dir = tempfile::tempdir().unwrap();
    let prefix = sample_tokens(m, 1500).unwrap();
    let mut live = m.model.new_state();
    m.model.prefill(&prefix, &mut live, 512, &mut |_| true).unwrap();
    let path = dir.path().join("big.state");
    save_state(m, &live, &path, StoredDType::F16, None, None).unwrap();
    let whole = std::fs::read(&path).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let truncator = {
        let (path, stop) = (path.clone(), stop.clone());
        std::thread::spawn(move || {
            use std::io::{Seek, Write};
            let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // Shrink the same inode in place, then restore it.
                f.set_len(4096).unwrap();
                std::thread::yield_now();
                f.set_len(0).unwrap();
                f.seek(std::io::SeekFrom::Start(0)).unwrap();
                f.write_all(&whole).unwrap();
            }
        })
    };
    let (mut loaded, mut refused) = (0, 0);
    let t0 = std::time::Instant::now();
    while t0.elapsed() < std::time::Duration::from_secs(3) {
        match load_state(m, &path) {
            Ok(s) => {
                assert_eq!(
                    s.state.tokens(),
                    prefix.as_slice(),
                    "a load that succeeds is the whole state"
                );
                loaded += 1;
            }
            Err(e) => {
                let line = e.to_string();
                assert!(!line.contains('\n'), "one line: {line}");
                refused += 1;
            }
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    truncator.join().unwrap();
    assert!(loaded + refused > 10, "{loaded} loads, {refused} refusals");
    assert!(refused > 0, "some loads met a truncated file");
}

#[test]
fn saving_a_state_removes_what_a_killed_save_of_the_same_file_left() {
    let m = model();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("x.state");
    let dead = dir.path().join(format!(".x.state.{}.partial", u32::MAX - 7));
    let unrelated = dir.path().join(format!(".y.state.{}.partial", u32::MAX - 7));
    std::fs::write(&dead, b"half a segment").unwrap();
    std::fs::write(&unrelated, b"half a segment").unwrap();
    let mut live = m.model.new_state();
    m.model
        .prefill(&sample_tokens(m, 4).unwrap(), &mut live, 512, &mut |_| true)
        .unwrap();
    save_state(m, &live, &target, StoredDType::F16, None, None).unwrap();
    assert!(target.is_file());
    assert!(!dead.exists(), "the leftover of a killed save of x.state is removed");
    assert!(unrelated.exists(), "another file's leftover is left alone");
}
