//! A chat template from untrusted text (it comes from a model file) rendered with a short
//! conversation: parse errors and template errors are fine, a panic or a hang is not.
#![no_main]

use freeze_attn_engine::{ChatTemplate, Message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else { return };
    let Ok(t) = ChatTemplate::new(src, "<s>", "</s>") else { return };
    let messages = [
        Message::system("You are terse."),
        Message::user("Hi!"),
        Message::assistant("Hello."),
        Message::user("Bye."),
    ];
    let _ = t.render(&messages, true);
    let _ = t.render(&messages[..1], false);
});
