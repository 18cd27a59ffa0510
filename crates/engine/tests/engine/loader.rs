//! Loading, and refusing bad model files with one clear error each.

use crate::support::*;
use freeze_attn_engine::{load_model, Device, EngineError};

fn err(path: &std::path::Path) -> String {
    let e = load_model(path, &Device::Cpu).expect_err("must be refused");
    e.to_string()
}

fn small_vocab() -> (Vec<String>, Vec<i32>, Vec<String>) {
    let mut tokens: Vec<String> = (b'a'..=b'z').map(|c| (c as char).to_string()).collect();
    tokens.push("ab".into());
    tokens.push("<|end|>".into());
    let mut types = vec![1; tokens.len()];
    *types.last_mut().unwrap() = 3;
    (tokens, types, vec!["a b".into()])
}

#[test]
fn default_model_metadata() {
    let m = smollm();
    let c = m.model.config();
    assert_eq!(
        (c.n_layer, c.n_embd, c.n_head, c.n_kv_head, c.head_dim),
        (30, 576, 9, 3, 64)
    );
    assert!(c.tied_embeddings, "SmolLM2 ties the output to the embedding");
    assert_eq!(m.info.weight_type, "Q4_1");
    assert_eq!(m.info.fingerprint.as_str().len(), 32);
    assert!(m.template.is_some());
}

#[test]
fn missing_file() {
    let e = err(std::path::Path::new("/nonexistent/model.gguf"));
    assert!(
        e.contains("/nonexistent/model.gguf") && e.contains("cannot read"),
        "{e}"
    );
}

#[test]
fn not_a_gguf() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("notes.gguf");
    std::fs::write(&p, "just some text, not a model").unwrap();
    let e = err(&p);
    assert!(e.contains("not a GGUF") && e.contains("notes.gguf"), "{e}");
    let empty = dir.path().join("empty.gguf");
    std::fs::write(&empty, "").unwrap();
    assert!(err(&empty).contains("too short"));
}

#[test]
fn truncated_gguf_names_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let full = std::fs::read(default_model_path()).unwrap();
    for (cut, what) in [(1000, "header"), (full.len() / 2, "tensor")] {
        let p = dir.path().join(format!("cut{cut}.gguf"));
        std::fs::write(&p, &full[..cut]).unwrap();
        let e = load_model(&p, &Device::Cpu).unwrap_err();
        assert!(matches!(e, EngineError::Truncated { .. }), "{cut}: {e}");
        let s = e.to_string();
        assert!(s.contains("truncated") && s.contains(&format!("cut{cut}.gguf")), "{s}");
        if what == "tensor" {
            assert!(s.contains("tensor `"), "names the first tensor that does not fit: {s}");
        }
    }
}

#[test]
fn unsupported_architecture() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("gpt2.gguf");
    let (t, ty, m) = small_vocab();
    let n = t.len();
    tiny_llama_gguf(&p, "gpt2", t, ty, m, "default", n);
    let e = err(&p);
    assert!(e.contains("unsupported architecture `gpt2`"), "{e}");
}

#[test]
fn unsupported_quant_type() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("iq2.gguf");
    let meta = vec![("general.architecture", Meta::Str("llama".into()))];
    let t = RawTensor {
        name: "blk.0.attn_q.weight".into(),
        dims: vec![256, 256],
        ggml_type: 16,
        data: vec![0; 256 * 66],
    };
    write_gguf(&p, &meta, &[t]);
    let e = err(&p);
    assert!(
        e.contains("unsupported tensor type IQ2_XXS") && e.contains("iq2.gguf"),
        "{e}"
    );
}

#[test]
fn tokenizer_vocab_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("mismatch.gguf");
    let (t, ty, m) = small_vocab();
    let n = t.len();
    tiny_llama_gguf(&p, "llama", t, ty, m, "default", n + 5);
    let e = err(&p);
    assert!(
        e.contains(&format!("{n} tokens")) && e.contains(&format!("vocabulary has {}", n + 5)),
        "{e}"
    );
}

#[test]
fn unsupported_pre_tokenizer() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("pre.gguf");
    let (t, ty, m) = small_vocab();
    let n = t.len();
    tiny_llama_gguf(&p, "llama", t, ty, m, "klingon-bpe", n);
    let e = err(&p);
    assert!(e.contains("pre-tokenizer `klingon-bpe`"), "{e}");
}

#[test]
fn a_tiny_synthetic_llama_loads_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("tiny.gguf");
    let (t, ty, m) = small_vocab();
    let n = t.len();
    tiny_llama_gguf(&p, "llama", t, ty, m, "default", n);
    let lm = load_model(&p, &Device::Cpu).unwrap();
    assert_eq!(lm.tokenizer.encode("ab").unwrap(), vec![26], "the merge a+b applies");
    assert!(
        lm.tokenizer.is_stop(27),
        "<|end|> is an end-of-generation control token"
    );
    let mut s = lm.model.new_state();
    let logits = lm.model.forward(&[0, 1, 26], &mut s, false).unwrap();
    assert_eq!(logits.dims(), &[1, n]);
}

#[test]
fn load_progress_rises_to_every_tensor_byte() {
    let path = default_model_path();
    let mut seen = Vec::new();
    freeze_attn_engine::load_model_with_progress(&path, &Device::Cpu, &mut |p| seen.push(p)).unwrap();
    assert!(seen.len() >= 30, "one report a layer at least, got {}", seen.len());
    let total = seen[0].total_bytes;
    let file = std::fs::metadata(&path).unwrap().len();
    assert!(
        total > file * 9 / 10 && total <= file,
        "tensor bytes {total} of a {file}-byte file"
    );
    assert!(seen
        .windows(2)
        .all(|w| w[0].done_bytes <= w[1].done_bytes && w[1].total_bytes == total));
    assert_eq!(seen.last().unwrap().done_bytes, total, "every tensor is read once");
}

/// One changed weight byte anywhere gives another fingerprint, so a state of the original
/// model is refused by the changed one (the old digest sampled 16 windows per tensor).
#[test]
fn one_changed_weight_byte_changes_the_fingerprint() {
    let original = default_model_path();
    let dir = tempfile::tempdir().unwrap();
    let changed = dir.path().join("changed.gguf");
    let mut bytes = std::fs::read(&original).unwrap();
    // Deep inside the tensor data (the header is a few hundred kilobytes at most), and off any
    // 4 KiB boundary the old windows started at.
    let at = bytes.len() / 2 + 1_234;
    bytes[at] ^= 0x01;
    std::fs::write(&changed, &bytes).unwrap();
    let a = smollm();
    let b = load_model(&changed, &Device::Cpu).unwrap();
    assert_ne!(
        a.info.fingerprint, b.info.fingerprint,
        "a weight changed at byte {at} must change the fingerprint"
    );
}
