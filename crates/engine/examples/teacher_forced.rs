//! Teacher-forced top-1 tokens of a model over given token ids, for comparisons with other
//! implementations (scripts/bench/agreement_llamacpp.py):
//!
//! ```text
//! cargo run -p freeze-attn-engine --release --example teacher_forced -- MODEL [--dump FILE] ID ID ...
//! ```
//!
//! Feeds the ids in one forward pass and prints one JSON object: `top1` (the most likely next
//! token after each position), `top2_gap` (its log-probability minus the runner-up's) and
//! `logprob_of` (the log-probability of each id at the position before it, from the second on).
//! `--dump FILE` also writes every log-probability (positions × vocabulary, f32 little-endian).

use freeze_attn_engine::{load_model, Device};
use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((model, mut ids)) = args.split_first() else {
        return Err("usage: teacher_forced MODEL [--dump FILE] ID...".into());
    };
    let mut dump = None;
    if ids.first().map(String::as_str) == Some("--dump") {
        dump = ids.get(1).cloned();
        ids = ids.get(2..).unwrap_or_default();
    }
    let ids: Vec<u32> = ids.iter().map(|s| s.parse()).collect::<Result<_, _>>()?;
    if ids.is_empty() {
        return Err("no token ids".into());
    }
    let m = load_model(Path::new(model), &Device::Cpu)?;
    let mut state = m.model.new_state();
    let rows = m.model.log_probs(&ids, &mut state)?.to_vec2::<f32>()?;
    if let Some(path) = dump {
        let bytes: Vec<u8> = rows.iter().flatten().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(path, bytes)?;
    }
    let mut top1 = Vec::new();
    let mut gaps = Vec::new();
    for row in &rows {
        let mut best = (0usize, f32::NEG_INFINITY);
        let mut second = f32::NEG_INFINITY;
        for (i, &v) in row.iter().enumerate() {
            if v > best.1 {
                second = best.1;
                best = (i, v);
            } else if v > second {
                second = v;
            }
        }
        top1.push(best.0);
        gaps.push(best.1 - second);
    }
    let logprob_of: Vec<f32> = (1..ids.len()).map(|i| rows[i - 1][ids[i] as usize]).collect();
    println!(
        "{}",
        serde_json::json!({ "top1": top1, "top2_gap": gaps, "logprob_of": logprob_of })
    );
    Ok(())
}
