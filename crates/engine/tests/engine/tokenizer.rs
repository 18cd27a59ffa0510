use crate::support::{fixture, ids, smollm};

#[test]
fn smollm_tokenization_matches_llama_cpp() {
    let fx = fixture("smollm2_llamacpp.json");
    let tok = &smollm().tokenizer;
    let mut failures = Vec::new();
    for case in fx["tokenize"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let want = ids(&case["ids"]);
        let got = tok.encode(text).unwrap();
        if got != want {
            failures.push(format!("{text:?}\n  llama.cpp {want:?}\n  ours      {got:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "tokenization differs from llama.cpp:\n{}",
        failures.join("\n")
    );
}

#[test]
fn smollm_decode_inverts_encode() {
    let fx = fixture("smollm2_llamacpp.json");
    let tok = &smollm().tokenizer;
    for case in fx["tokenize"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let back = tok.decode_with_special(&tok.encode(text).unwrap()).unwrap();
        assert_eq!(back, text, "byte-level BPE must round-trip text exactly");
    }
}

#[test]
fn smollm_special_ids_and_bos_policy() {
    let tok = &smollm().tokenizer;
    assert_eq!(tok.token_id("<|im_end|>"), Some(2));
    assert!(tok.is_stop(2), "<|im_end|> (the GGUF's EOS) ends generation");
    assert!(tok.is_stop(0), "<|endoftext|> ends generation");
    assert!(!tok.add_bos(), "the GGUF says add_bos_token = false");
    assert_eq!(tok.encode_prompt("Hi").unwrap(), tok.encode("Hi").unwrap());
}

#[test]
fn streaming_never_splits_a_character() {
    use freeze_attn_engine::tokenizer::TokenStream;
    let tok = &smollm().tokenizer;
    let text = "Emoji 👨‍👩‍👧‍👦 and 日本語 and café";
    let ids = tok.encode(text).unwrap();
    let mut stream = TokenStream::new();
    let mut out = String::new();
    for id in ids {
        if let Some(piece) = stream.push(tok, id).unwrap() {
            assert!(
                !piece.contains('\u{FFFD}'),
                "a piece carried a broken character: {piece:?}"
            );
            out.push_str(&piece);
        }
    }
    if let Some(rest) = stream.flush(tok).unwrap() {
        out.push_str(&rest);
    }
    assert_eq!(out, text);
}
