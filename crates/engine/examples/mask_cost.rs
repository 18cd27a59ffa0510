//! What constrained decoding costs per generated token outside the model: the time of one mask
//! (every token of the vocabulary checked against the grammar) at each token of a JSON reply,
//! for JSON mode and for a JSON Schema, on a model's tokenizer:
//!
//! ```text
//! cargo run -p freeze-attn-engine --release --example mask_cost -- MODEL [REPEAT]
//! ```
//!
//! CPU work only (no forward pass), so it is steadier than timing a generation; prints one JSON
//! object with the median over REPEAT walks (default 5) of the mean microseconds per mask.

use freeze_attn_engine::grammar::{Constrained, Schema};
use freeze_attn_engine::{load_model, Device, Grammar};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

const REPLY: &str = r#"{
  "name": "Whiskers",
  "age": 3,
  "color": "ginger",
  "nickname": null,
  "born": "2021-04-05",
  "toys": [{"name": "Mouse on a string", "squeaks": true}, {"name": "Ball", "squeaks": false}]
}"#;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(model) = args.first() else {
        return Err("usage: mask_cost MODEL [REPEAT]".into());
    };
    let repeat: usize = args.get(1).map(|r| r.parse()).transpose()?.unwrap_or(5);
    let m = load_model(Path::new(model), &Device::Cpu)?;
    let table = m.tokenizer.byte_table();
    let ids = m.tokenizer.encode(REPLY)?;
    let ids: Vec<u32> = ids.into_iter().skip_while(|&t| Some(t) == m.tokenizer.bos()).collect();
    let schema = serde_json::json!({
        "$defs": {"Toy": {"type": "object", "properties": {"name": {"type": "string"}, "squeaks": {"type": "boolean"}},
                          "required": ["name", "squeaks"]}},
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "age": {"type": "integer"},
            "color": {"enum": ["black", "white", "ginger", "grey"]},
            "nickname": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "born": {"type": "string", "format": "date"},
            "toys": {"type": "array", "items": {"$ref": "#/$defs/Toy"}, "maxItems": 3}
        },
        "required": ["name", "age", "color", "nickname", "born", "toys"]
    });
    let grammars = [
        ("json_object", Grammar::JsonObject),
        ("json_schema", Grammar::JsonSchema(Arc::new(Schema::compile(&schema)?))),
    ];
    let mut out = serde_json::Map::new();
    for (name, grammar) in &grammars {
        let mut means = Vec::new();
        for _ in 0..repeat {
            let mut c = Constrained::new(grammar, table);
            let mut logits = vec![0f32; table.len()];
            let started = Instant::now();
            for &id in &ids {
                logits.fill(0.0);
                c.mask(&mut logits);
                if logits[id as usize] != 0.0 {
                    return Err(format!("{name} refused token {id} of the reply").into());
                }
                c.advance(id);
            }
            if !c.is_complete() {
                return Err(format!("{name} did not end with the reply").into());
            }
            means.push(started.elapsed().as_secs_f64() * 1e6 / ids.len() as f64);
        }
        means.sort_by(f64::total_cmp);
        out.insert(
            format!("{name}_us_per_token"),
            serde_json::json!(means[means.len() / 2].round()),
        );
    }
    out.insert("vocabulary".into(), table.len().into());
    out.insert("reply_tokens".into(), ids.len().into());
    println!("{}", serde_json::Value::Object(out));
    Ok(())
}
