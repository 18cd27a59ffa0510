//! JSON that models write and clients send, read three ways (all untrusted text):
//! - a reply read for tool calls (`tools::parse_tool_calls`): any answer is fine, a panic is not;
//! - the JSON-object grammar of JSON mode: whatever it accepts as a whole object must be a JSON
//!   object to serde_json (the property constrained decoding promises);
//! - a fixed JSON Schema's matcher (enum, bounded integer and number, optional key, bounded
//!   array, tuple, nested object): whatever it accepts whole must be JSON with the schema's keys
//!   in its order and values of its types, within its bounds;
//! - the schema compiler on any JSON value (a client's `response_format`): an answer or an
//!   error, never a panic, and a compiled schema's matcher takes any bytes;
//! - a tool list rendered by a chat template's `tojson`: the text it writes must read back as the
//!   same JSON value (what Python's `json.dumps` would have written, floats included).
#![no_main]

use freeze_attn_engine::grammar::{Matcher, Schema};
use freeze_attn_engine::tools::{may_be_tool_calls, parse_tool_calls};
use freeze_attn_engine::ChatTemplate;
use libfuzzer_sys::fuzz_target;

static FIXED: std::sync::LazyLock<std::sync::Arc<Schema>> = std::sync::LazyLock::new(|| {
    let v = serde_json::json!({
        "$defs": {"Inner": {"type": "object", "properties": {"x": {"type": "boolean"}}, "required": ["x"]}},
        "type": "object",
        "properties": {
            "kind": {"enum": ["a", "ab"]},
            "n": {"type": "integer", "minimum": -5, "maximum": 300},
            "w": {"type": "number", "exclusiveMinimum": 0, "maximum": 2.5},
            "pair": {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}], "items": false},
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 3}, "maxItems": 2},
            "inner": {"anyOf": [{"$ref": "#/$defs/Inner"}, {"type": "null"}]}
        },
        "required": ["kind", "n"]
    });
    std::sync::Arc::new(Schema::compile(&v).expect("the fixed schema"))
});

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

    let mut m = Matcher::new(FIXED.clone());
    if m.advance(data) && m.is_complete() {
        let v: serde_json::Value = serde_json::from_slice(data)
            .unwrap_or_else(|e| panic!("the schema accepted what is not JSON ({e}): {:?}", String::from_utf8_lossy(data)));
        let o = v.as_object().expect("an object");
        let keys: Vec<&str> = o.keys().map(String::as_str).collect();
        let order = ["kind", "n", "w", "pair", "tags", "inner"];
        assert_eq!(keys, order.iter().copied().filter(|k| o.contains_key(*k)).collect::<Vec<_>>(), "{v}");
        assert!(["a", "ab"].contains(&o["kind"].as_str().expect("kind")), "{v}");
        assert!(o["n"].as_i64().is_some_and(|n| (-5..=300).contains(&n)), "{v}");
        if let Some(w) = o.get("w") {
            assert!(w.as_f64().is_some_and(|w| w > 0.0 && w <= 2.5), "{v}");
        }
        if let Some(p) = o.get("pair") {
            let p = p.as_array().expect("pair");
            assert!(p.len() <= 2, "{v}");
            assert!(p.first().is_none_or(|i| i.is_i64() || i.is_u64()), "{v}");
            assert!(p.get(1).is_none_or(|s| s.is_string()), "{v}");
        }
        if let Some(t) = o.get("tags") {
            let t = t.as_array().expect("tags");
            assert!(t.len() <= 2 && t.iter().all(|s| s.as_str().is_some_and(|s| s.chars().count() <= 3)), "{v}");
        }
        if let Some(i) = o.get("inner") {
            assert!(i.is_null() || i.get("x").is_some_and(|x| x.is_boolean()), "{v}");
        }
    }

    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(text) {
        if let Ok(schema) = Schema::compile(&value) {
            let mut m = Matcher::new(std::sync::Arc::new(schema));
            let _ = m.advance(data);
            let _ = m.is_complete();
        }
    }
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
