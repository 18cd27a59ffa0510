//! JSON that models write and clients send, read three ways (all untrusted text):
//! - a reply read for tool calls (`tools::parse_tool_calls`): any answer is fine, a panic is not;
//! - the JSON-object grammar of JSON mode: whatever it accepts as a whole object must be a JSON
//!   object to serde_json (the property constrained decoding promises);
//! - a tool list rendered by a chat template's `tojson`: the text it writes must read back as the
//!   same JSON value (what Python's `json.dumps` would have written, floats included).
#![no_main]

use freeze_attn_engine::grammar::Matcher;
use freeze_attn_engine::tools::{may_be_tool_calls, parse_tool_calls};
use freeze_attn_engine::ChatTemplate;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The grammar works on bytes, valid UTF-8 or not.
    // (RFC 8259 sets no range on numbers; serde_json refuses those past f64's, as a grammar
    // need not.)
    let mut g = Matcher::any_object();
    if g.advance(data) && g.is_complete() {
        match serde_json::from_slice::<serde_json::Value>(data) {
            Ok(v) => assert!(v.is_object(), "the grammar accepted a JSON value that is not an object"),
            Err(e) if e.to_string().starts_with("number out of range") => {}
            Err(e) => panic!("the grammar accepted what is not JSON ({e}): {:?}", String::from_utf8_lossy(data)),
        }
    }

    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = may_be_tool_calls(text);
    if let Some(calls) = parse_tool_calls(text, &["get_weather", "f"]) {
        for c in calls {
            let args: serde_json::Value = serde_json::from_str(&c.arguments).expect("arguments are JSON");
            assert!(args.is_object(), "arguments are an object");
        }
    }

    // `tojson` of a JSON value, read back.
    let Ok(value) = serde_json::from_str::<serde_json::Value>(text) else { return };
    for src in ["{{ tools | tojson }}", "{{ tools | tojson(indent=2) }}"] {
        let t = ChatTemplate::new(src, "", "").expect("template");
        let Ok(written) = t.render_with_tools(&[], Some(text), false) else { return };
        let back: serde_json::Value = serde_json::from_str(&written)
            .unwrap_or_else(|e| panic!("tojson wrote what is not JSON ({e}): {written}"));
        assert_eq!(back, value, "tojson changed the value: {written}");
    }
});
