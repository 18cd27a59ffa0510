//! A GGUF file's header and metadata from untrusted bytes, then everything built from the
//! metadata alone before any weight is read: the tokenizer (vocabulary, merges, pre-tokenizer)
//! and the chat template, which is rendered once.
#![no_main]

use freeze_attn_engine::gguf::GgufFile;
use freeze_attn_engine::tokenizer::gguf::from_gguf;
use freeze_attn_engine::{ChatTemplate, Message};
use libfuzzer_sys::fuzz_target;

#[path = "scratch.rs"]
mod scratch;
use scratch::scratch;
use std::io::Write;

fuzz_target!(|data: &[u8]| {
    let mut f = tempfile::NamedTempFile::new_in(scratch()).expect("temp file");
    f.write_all(data).expect("write");
    let Ok(g) = GgufFile::open(f.path()) else { return };
    let _ = g.meta_str("general.architecture");
    let _ = g.meta_usize("llama.context_length");
    let _ = g.meta_strings("tokenizer.ggml.tokens");
    if let Ok(tok) = from_gguf(&g) {
        let _ = tok.encode("Hello, world! <|im_start|> 123");
    }
    if let Ok(src) = g.meta_str("tokenizer.chat_template") {
        if let Ok(t) = ChatTemplate::new(src, "<s>", "</s>") {
            let _ = t.render(&[Message::user("hi")], true);
        }
    }
});
