//! The Hugging Face safetensors path: a tiny random-weight model with the Llama 3.1 config shape
//! (GQA, untied output, rope_scaling llama3, bf16, two shards, the real Llama 3.1 tokenizer),
//! compared with transformers' logits, including positions past 8,192.

use crate::support::{assets_dir, fixture, ids, max_abs_diff, splitmix_values};
use freeze_attn_engine::{load_model, DType, Device, LoadedModel, Tensor};
use std::collections::HashMap;
use std::path::Path;

/// Same order and seeds as `tiny_tensor_specs` in scripts/reference/llama31_transformers.py.
fn specs(c: &serde_json::Value) -> Vec<(String, Vec<usize>, f32, f32)> {
    let u = |k: &str| c[k].as_u64().unwrap() as usize;
    let (d, ff, v) = (u("hidden_size"), u("intermediate_size"), u("vocab_size"));
    let q = u("num_attention_heads") * u("head_dim");
    let kv = u("num_key_value_heads") * u("head_dim");
    let inv = |n: usize| (n as f32).powf(-0.5);
    let mut s = vec![("model.embed_tokens.weight".to_string(), vec![v, d], 1.0, 0.0)];
    for l in 0..u("num_hidden_layers") {
        let p = format!("model.layers.{l}");
        s.extend([
            (format!("{p}.input_layernorm.weight"), vec![d], 0.1, 1.0),
            (format!("{p}.self_attn.q_proj.weight"), vec![q, d], inv(d), 0.0),
            (format!("{p}.self_attn.k_proj.weight"), vec![kv, d], inv(d), 0.0),
            (format!("{p}.self_attn.v_proj.weight"), vec![kv, d], inv(d), 0.0),
            (format!("{p}.self_attn.o_proj.weight"), vec![d, q], inv(q), 0.0),
            (format!("{p}.post_attention_layernorm.weight"), vec![d], 0.1, 1.0),
            (format!("{p}.mlp.gate_proj.weight"), vec![ff, d], inv(d), 0.0),
            (format!("{p}.mlp.up_proj.weight"), vec![ff, d], inv(d), 0.0),
            (format!("{p}.mlp.down_proj.weight"), vec![d, ff], inv(ff), 0.0),
        ]);
    }
    s.push(("model.norm.weight".into(), vec![d], 0.1, 1.0));
    s.push(("lm_head.weight".into(), vec![v, d], inv(d), 0.0));
    s
}

/// Writes the tiny model as an HF folder with two shards and an index.
pub(crate) fn write_tiny(dir: &Path, config: &serde_json::Value) {
    let mut shards: [HashMap<String, Tensor>; 2] = [HashMap::new(), HashMap::new()];
    let mut map = serde_json::Map::new();
    for (k, (name, shape, scale, offset)) in specs(config).into_iter().enumerate() {
        let n: usize = shape.iter().product();
        let vals: Vec<f32> = splitmix_values(((k + 1) as u64) << 32, n, scale)
            .into_iter()
            .map(|x| x + offset)
            .collect();
        let t = Tensor::from_vec(vals, shape, &Device::Cpu)
            .unwrap()
            .to_dtype(DType::BF16)
            .unwrap();
        let shard = usize::from(!name.starts_with("model.layers."));
        map.insert(
            name.clone(),
            format!("model-0000{}-of-00002.safetensors", shard + 1).into(),
        );
        shards[shard].insert(name, t);
    }
    for (i, s) in shards.iter().enumerate() {
        candle_core::safetensors::save(s, dir.join(format!("model-0000{}-of-00002.safetensors", i + 1))).unwrap();
    }
    let index = serde_json::json!({ "metadata": {}, "weight_map": map });
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    for f in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(assets_dir().join("llama3_1").join(f), dir.join(f)).unwrap();
    }
}

/// The tiny model written to `dir` and loaded.
fn load_tiny(dir: &Path, config: &serde_json::Value) -> LoadedModel {
    write_tiny(dir, config);
    load_model(dir, &Device::Cpu).unwrap()
}

#[test]
fn tiny_llama31_matches_transformers() {
    let fx = fixture("tiny_llama31.json");
    let dir = tempfile::tempdir().unwrap();
    let m = load_tiny(dir.path(), &fx["config"]);
    assert!(!m.model.config().tied_embeddings);
    assert!(matches!(
        m.model.config().rope.scaling,
        freeze_attn_engine::config::RopeScaling::Llama3 { .. }
    ));
    let probes = ids(&fx["probe_ids"]);
    let mut worst = 0f32;
    for seq in fx["sequences"].as_array().unwrap() {
        let tokens = ids(&seq["ids"]);
        let mut state = m.model.new_state();
        let mut rows: HashMap<usize, Vec<f32>> = HashMap::new();
        let wanted: Vec<usize> = seq["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["pos"].as_u64().unwrap() as usize)
            .collect();
        for (c, chunk) in tokens.chunks(512).enumerate() {
            let logits = m
                .model
                .forward(chunk, &mut state, true)
                .unwrap()
                .to_vec2::<f32>()
                .unwrap();
            for (i, row) in logits.into_iter().enumerate() {
                let pos = c * 512 + i;
                if wanted.contains(&pos) {
                    rows.insert(pos, row);
                }
            }
        }
        for r in seq["rows"].as_array().unwrap() {
            let pos = r["pos"].as_u64().unwrap() as usize;
            let ours = &rows[&pos];
            let top = ids(&r["top_ids"]);
            let refs: Vec<f32> = r["top_logits"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect();
            let probe: Vec<f32> = r["probe_logits"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect();
            for (t, want) in top.iter().zip(&refs).chain(probes.iter().zip(&probe)) {
                let d = (ours[*t as usize] - want).abs();
                worst = worst.max(d);
                assert!(
                    d < 2e-2,
                    "{} pos {pos} token {t}: ours {} transformers {want}",
                    seq["name"],
                    ours[*t as usize]
                );
            }
            let our_top = freeze_attn_engine::sampling::argmax(ours);
            let gap = refs[0] - refs[1];
            assert!(
                our_top == top[0] || gap < 2e-2,
                "{} pos {pos}: top-1 {our_top} vs transformers {}",
                seq["name"],
                top[0]
            );
        }
    }
    eprintln!("tiny Llama 3.1 vs transformers: largest |Δ logit| = {worst:.5}");
}

#[test]
fn hf_folder_refusals() {
    let fx = fixture("tiny_llama31.json");
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = fx["config"].clone();
    cfg["model_type"] = "mistral".into();
    cfg["architectures"] = serde_json::json!(["MistralForCausalLM"]);
    std::fs::write(dir.path().join("config.json"), cfg.to_string()).unwrap();
    let e = load_model(dir.path(), &Device::Cpu).unwrap_err().to_string();
    assert!(e.contains("unsupported architecture `MistralForCausalLM`"), "{e}");

    let mut cfg = fx["config"].clone();
    cfg["rope_scaling"]["rope_type"] = "yarn".into();
    std::fs::write(dir.path().join("config.json"), cfg.to_string()).unwrap();
    let e = load_model(dir.path(), &Device::Cpu).unwrap_err().to_string();
    assert!(e.contains("yarn"), "{e}");

    let empty = tempfile::tempdir().unwrap();
    let e = load_model(empty.path(), &Device::Cpu).unwrap_err().to_string();
    assert!(e.contains("no config.json"), "{e}");
}

#[test]
fn truncated_shard_is_refused() {
    let fx = fixture("tiny_llama31.json");
    let dir = tempfile::tempdir().unwrap();
    write_tiny(dir.path(), &fx["config"]);
    let shard = dir.path().join("model-00001-of-00002.safetensors");
    let bytes = std::fs::read(&shard).unwrap();
    std::fs::write(&shard, &bytes[..bytes.len() - 100]).unwrap();
    let e = load_model(dir.path(), &Device::Cpu).unwrap_err().to_string();
    assert!(e.contains("truncated or corrupted"), "{e}");
}

/// Token ids above 65,535 (Llama 3's vocabulary has 128,256) are stored as U32; a segment whose
/// ids all fit in 16 bits stores U16. Both load back to the same tokens and the same K/V.
#[test]
fn state_token_ids_are_stored_in_16_or_32_bits_as_they_need() {
    use freeze_attn_engine::state::{load_chain, write_segment, Segment, StoredDType};
    let fx = fixture("tiny_llama31.json");
    let dir = tempfile::tempdir().unwrap();
    let m = load_tiny(dir.path(), &fx["config"]);
    for (name, tokens, dtype) in [
        ("wide", vec![128_000u32, 9906, 65_536, 1917, 128_009], "U32"),
        ("narrow", vec![0u32, 9906, 65_535, 1917], "U16"),
    ] {
        let mut live = m.model.new_state();
        m.model.forward(&tokens, &mut live, false).unwrap();
        let path = dir.path().join(format!("{name}.state"));
        let info = write_segment(
            &live,
            0,
            tokens.len(),
            None,
            m.fingerprint(),
            StoredDType::F32,
            None,
            &path,
        )
        .unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
        assert_eq!(header["tokens"]["dtype"], dtype, "{name}");
        let seg = Segment::open(&path).unwrap();
        assert_eq!(seg.id, info.id);
        assert_eq!(seg.tokens, tokens, "{name}: the token ids come back");
        let back = load_chain(&[seg], tokens.len(), &m.model, m.fingerprint()).unwrap();
        assert_eq!(back.tokens(), tokens.as_slice());
        for l in 0..m.model.config().n_layer {
            let (k0, v0) = live.layer_view(l, 0, tokens.len()).unwrap();
            let (k1, v1) = back.layer_view(l, 0, tokens.len()).unwrap();
            for (a, b) in [(k0, k1), (v0, v1)] {
                let d = max_abs_diff(&a.to_dtype(DType::F32).unwrap(), &b.to_dtype(DType::F32).unwrap());
                assert_eq!(d, 0.0, "{name}: layer {l} K/V differ after a round trip");
            }
        }
    }
}

#[test]
fn a_folder_reports_load_progress_to_every_tensor_byte() {
    let fx = fixture("tiny_llama31.json");
    let dir = tempfile::tempdir().unwrap();
    write_tiny(dir.path(), &fx["config"]);
    let mut seen = Vec::new();
    let m = freeze_attn_engine::load_model_with_progress(dir.path(), &Device::Cpu, &mut |p| seen.push(p)).unwrap();
    assert_eq!(m.info.weight_type, "bfloat16");
    let last = seen.last().expect("progress reported");
    assert_eq!(last.done_bytes, last.total_bytes, "every tensor byte is taken");
    let files: u64 = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "safetensors"))
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert!(last.total_bytes <= files && last.total_bytes > files * 9 / 10);
}

/// Constrained decoding on the real Llama 3 vocabulary (128k tokens, many of them several
/// bytes of JSON at once) driven by a random-weight model, which wanders where a trained one
/// would not: forced tool calls in Meta's Llama 3.1 format and a schema with an enum, nested
/// arrays and optional keys. Whatever ends is read back as a call to an offered tool, with
/// arguments the schema allows; whatever is cut off is still a prefix the matcher allows.
#[test]
fn constrained_generation_on_the_llama3_vocabulary_with_a_random_model() {
    use freeze_attn_engine::grammar::{Matcher, Schema};
    use freeze_attn_engine::tools::{parse_tool_calls, CallFormat};
    use freeze_attn_engine::{generate, CancelToken, FinishReason, GenerateParams, Grammar, SamplingParams};
    use std::sync::Arc;
    let fx = fixture("tiny_llama31.json");
    let dir = tempfile::tempdir().unwrap();
    let m = load_tiny(dir.path(), &fx["config"]);
    let alarm = serde_json::json!({"type": "object", "properties": {
        "hour": {"type": "integer"}, "label": {"type": "string", "maxLength": 8},
        "days": {"type": "array", "items": {"enum": ["mon", "tue", "sun"]}, "maxItems": 3}},
        "required": ["hour"]});
    let template = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/templates/meta-llama-Llama-3.1-8B-Instruct.jinja"),
    )
    .unwrap();
    let format = CallFormat::of(&template);
    assert_eq!(format, CallFormat::LlamaJson);
    let (before, after) = format.around();
    let forced = Arc::new(
        Schema::tool_call(
            &[("set_alarm", Some(&alarm)), ("ping", None)],
            format.arguments_key(),
            before,
            after,
        )
        .unwrap(),
    );
    let prompt = m.tokenizer.encode("<|begin_of_text|>Call a tool.").unwrap();
    let mut ended = 0;
    for seed in 0..6 {
        let params = GenerateParams {
            max_tokens: 200,
            grammar: Some(Grammar::JsonSchema(forced.clone())),
            sampling: SamplingParams {
                temperature: 1.0,
                seed,
                ..SamplingParams::greedy()
            },
            ..GenerateParams::greedy(0)
        };
        let mut state = m.model.new_state();
        let g = generate(
            &m.model,
            &m.tokenizer,
            &mut state,
            &prompt,
            &params,
            &CancelToken::new(),
            &mut |_| {},
        )
        .unwrap();
        eprintln!("seed {seed}: {:?} {:?}", g.finish, g.text);
        assert!(Matcher::new(forced.clone()).advance(g.text.as_bytes()), "{:?}", g.text);
        if g.finish == FinishReason::StopToken {
            let calls = parse_tool_calls(&g.text, &["set_alarm", "ping"]).unwrap_or_else(|| panic!("{:?}", g.text));
            assert_eq!(calls.len(), 1);
            let args: serde_json::Value = serde_json::from_str(&calls[0].arguments).unwrap();
            match calls[0].name.as_str() {
                "ping" => assert_eq!(args, serde_json::json!({})),
                _ => {
                    assert!(args["hour"].is_i64() || args["hour"].is_u64(), "{args}");
                    assert!(args
                        .get("label")
                        .is_none_or(|l| l.as_str().is_some_and(|l| l.chars().count() <= 8)));
                }
            }
            ended += 1;
        } else {
            assert_eq!(g.finish, FinishReason::Length);
        }
    }
    eprintln!("{ended} of 6 calls ended within 200 tokens");
    assert!(ended >= 3, "{ended} of 6 forced calls ended within 200 tokens");
}

/// The mask's shortcuts (first byte, first two bytes, plain text inside strings) change nothing:
/// along a reply, on the 128k Llama 3 vocabulary, it allows exactly the tokens the matcher
/// accepts when each is tried whole, for JSON mode and for a schema.
#[test]
fn the_mask_equals_trying_every_token_on_the_llama3_vocabulary() {
    use freeze_attn_engine::grammar::{Constrained, Matcher, Schema};
    use freeze_attn_engine::Grammar;
    use std::sync::Arc;
    let fx = fixture("tiny_llama31.json");
    let dir = tempfile::tempdir().unwrap();
    let m = load_tiny(dir.path(), &fx["config"]);
    let table = m.tokenizer.byte_table();
    let reply = "{\"name\": \"Zoë \\\"Z\\\" 東京\", \"born\": \"2021-04-05\", \"tags\": [\"a\", \"b\"], \"n\": -1.5e3}";
    let schema = Arc::new(
        Schema::compile(&serde_json::json!({"type": "object", "properties": {
            "name": {"type": "string"}, "born": {"type": "string", "format": "date"},
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 2}}, "n": {"type": "number"}},
            "required": ["name", "born", "tags", "n"]}))
        .unwrap(),
    );
    let ids = m.tokenizer.encode(reply).unwrap();
    let ids: Vec<u32> = ids.into_iter().skip_while(|&t| Some(t) == m.tokenizer.bos()).collect();
    for (grammar, mut matcher) in [
        (Grammar::JsonObject, Matcher::any_object()),
        (Grammar::JsonSchema(schema.clone()), Matcher::new(schema.clone())),
    ] {
        let mut c = Constrained::new(&grammar, table);
        for (step, &id) in ids.iter().enumerate() {
            let mut logits = vec![0f32; table.len()];
            c.mask(&mut logits);
            for (t, bytes) in table.iter().enumerate() {
                let want = bytes.as_ref().is_some_and(|b| matcher.allows(b));
                assert_eq!(logits[t] == 0.0, want, "step {step}, token {t} {bytes:?}");
            }
            assert!(logits[id as usize] == 0.0, "the reply's token {id} at step {step}");
            c.advance(id);
            assert!(matcher.advance(table[id as usize].as_ref().unwrap()));
        }
        assert!(c.is_complete());
    }
}
