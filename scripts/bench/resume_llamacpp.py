#!/usr/bin/env python3
"""Attention-state save/restore: llama.cpp (llama-cpp-python) next to Freeze-Attn, same GGUF,
same prefix length, same run.

For each prefix length N: llama.cpp evaluates N tokens of the sample document, saves its state
(`save_state`, which includes the KV cache and the last logits) and restores it into a fresh
context, reporting state bytes and restore time; then `freeze-attn bench-resume --json` does the
same on our side for each stored dtype. Prints a table and writes JSON.

Run:  python3 scripts/bench/resume_llamacpp.py [--model PATH] [--sizes 512 2048 8000] [--json OUT]
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = Path.home() / ".local/share/freeze-attn/models/SmolLM2-135M-Instruct.Q4_1.gguf"


def llama_side(model, n, threads):
    from llama_cpp import Llama

    text = (ROOT / "assets/documents/printing-press.md").read_text()
    llm = Llama(str(model), n_ctx=max(n + 64, 512), n_threads=threads, n_batch=512, verbose=False)
    one = llm.tokenize(text.encode(), add_bos=False, special=True)
    tokens = (one * (n // len(one) + 1))[:n]
    t0 = time.perf_counter()
    llm.eval(tokens)
    prefill = time.perf_counter() - t0
    t0 = time.perf_counter()
    state = llm.save_state()
    save = time.perf_counter() - t0
    size = state.llama_state_size
    fresh = Llama(str(model), n_ctx=max(n + 64, 512), n_threads=threads, n_batch=512, verbose=False)
    t0 = time.perf_counter()
    fresh.load_state(state)
    restore = time.perf_counter() - t0
    return {"prefix_tokens": n, "prefill_ms": prefill * 1e3, "save_ms": save * 1e3, "restore_ms": restore * 1e3,
            "state_bytes": size, "bytes_per_token": size / n}


def ours(model, n, dtype, exe):
    out = subprocess.run([exe, "bench-resume", "--model", str(model), "--prefix-tokens", str(n), "--gen-tokens", "8",
                          "--dtype", dtype, "--json"], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(DEFAULT_MODEL))
    ap.add_argument("--sizes", type=int, nargs="+", default=[512, 2048, 8000])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--exe", default=str(ROOT / "target/release/freeze-attn"))
    ap.add_argument("--json")
    a = ap.parse_args()
    rows = []
    for n in a.sizes:
        ll = llama_side(a.model, n, a.threads)
        row = {"prefix_tokens": n, "llama_cpp": ll, "freeze_attn": {}}
        for dt in ["f16", "q8"]:
            row["freeze_attn"][dt] = ours(a.model, n, dt, a.exe)
        rows.append(row)
        f16, q8 = row["freeze_attn"]["f16"], row["freeze_attn"]["q8"]
        print(f"N={n}: llama.cpp state {ll['state_bytes']/1e6:.1f} MB ({ll['bytes_per_token']:.0f} B/tok), "
              f"restore {ll['restore_ms']:.1f} ms, prefill {ll['prefill_ms']:.0f} ms")
        for dt, r in [("f16", f16), ("q8", q8)]:
            print(f"        freeze-attn {dt}: {r['state_bytes']/1e6:.1f} MB ({r['bytes_per_token']:.0f} B/tok, "
                  f"{r['state_bytes']/ll['state_bytes']:.2f}x llama.cpp), load {r['load_ms']:.1f} ms ({r['load_gb_s']:.2f} GB/s; plain read {r['plain_read_gb_s']:.2f} GB/s), "
                  f"TTFT {r['uncached_first_token_ms']:.0f} -> {r['cached_first_token_ms']:.0f} ms ({r['first_token_speedup']:.0f}x), "
                  f"identical={r['identical']}, largest logit diff {r['largest_logit_diff']:.4f}")
        sys.stdout.flush()
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
