#!/usr/bin/env python3
"""Prefill and decode speed of freeze-attn next to llama.cpp on the same GGUF file, same machine,
same run, same number of threads.

For each model file and prompt length it runs, one after the other:
  * `freeze-attn bench --model FILE --prompt-tokens N --gen-tokens G --json` (our side), and
  * llama.cpp through llama-cpp-python in a child process (so its peak memory is its own):
      - decode at position 0: one token evaluated, then G tokens generated greedily, one
        `llama_decode` of one token each (low-level API, batch from `llama_batch_get_one`), timed;
      - prefill: `Llama.eval(tokens)` of the same N tokens (n_batch = 512, our chunk size), timed;
      - decode after the prompt: G more greedy tokens, one `llama_decode` each, timed.
    Greedy choice is a numpy argmax over the logits, as our bench does an argmax per token.
  * with --llama-bench PATH, also llama.cpp's own `llama-bench` on the same file:
    `-p N -n G -d 0` (prefill N tokens; decode G tokens from position 0) and `-p 0 -n G -d N`
    (decode G tokens after N tokens of context), `-r 1` per repeat, its peak memory from wait4.
Both sides use the same text (assets/documents/printing-press.md repeated, BOS first) and the
same measurement order. Prints a table of both sides and the ratios (ours / llama.cpp; above
1.0 means we are faster, or for memory, that we use more), and writes the same as JSON.

Usage (the venv must have llama-cpp-python):
    /opt/refvenv/bin/python scripts/bench/compare_llamacpp.py \
        [--models Q4_1 Q4_0 Q8_0 Q4_K_M | --models path/to/file.gguf] \
        [--prompt-tokens 512 2048] [--gen-tokens 64] [--repeat 3] [--json out.json] \
        [--llama-bench path/to/llama-bench]
`llama-bench` is not on PyPI: build it from the llama.cpp source vendored in the llama-cpp-python
sdist (see docs/benchmarks.md for the exact cmake line).
Quant types other than Q4_1 come from scripts/bench/make_quants.py (made on first use).
With --repeat R every measurement is taken R times, alternating the two sides, and the median
is reported (the individual runs are in the JSON).
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SAMPLE = os.path.join(ROOT, "assets", "documents", "printing-press.md")
BIN = os.path.join(ROOT, "target", "release", "freeze-attn")
METRICS = [
    ("prefill_tok_s", "prefill tok/s", False),
    ("decode_pos0_tok_s", "decode@0 tok/s", False),
    ("decode_after_prompt_tok_s", "decode@N tok/s", False),
    ("peak_memory_mib", "peak memory MiB", True),
]


def read_status(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def llama_child(model: str, prompt_tokens: int, gen_tokens: int, threads: int, flash_attn: bool) -> dict:
    """Runs in the child process: times llama.cpp and returns its report."""
    import ctypes

    import numpy as np

    import llama_cpp

    baseline = read_status("VmRSS")
    llm = llama_cpp.Llama(
        model,
        n_ctx=prompt_tokens + gen_tokens + 16,
        n_threads=threads,
        n_threads_batch=threads,
        n_batch=512,
        n_ubatch=512,
        flash_attn=flash_attn,
        verbose=False,
    )
    ctx = llm._ctx.ctx
    n_vocab = llm.n_vocab()
    text = open(SAMPLE, encoding="utf-8").read()
    one = llm.tokenize(text.encode(), add_bos=False, special=False)
    tokens = llm.tokenize(b"", add_bos=True, special=False)
    while len(tokens) < prompt_tokens:
        tokens += one
    tokens = tokens[:prompt_tokens]
    tok_buf = (llama_cpp.llama_token * 1)()

    def argmax_last() -> int:
        ptr = llama_cpp.llama_get_logits_ith(ctx, -1)
        return int(np.ctypeslib.as_array(ptr, shape=(n_vocab,)).argmax())

    def decode_one(tok: int) -> None:
        tok_buf[0] = tok
        if llama_cpp.llama_decode(ctx, llama_cpp.llama_batch_get_one(tok_buf, 1)) != 0:
            raise RuntimeError("llama_decode failed")

    def generate(n: int) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            decode_one(argmax_last())
        return time.perf_counter() - t0

    # Decode from position 0: one token in, then `gen_tokens` out (as `freeze-attn bench`).
    llm.reset()
    llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)
    decode_one(tokens[0])
    d0 = generate(gen_tokens)
    # Prefill, then decode after the prompt.
    llm.reset()
    llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)
    t0 = time.perf_counter()
    llm.eval(tokens)
    prefill = time.perf_counter() - t0
    d1 = generate(gen_tokens)
    del ctypes
    return {
        "llama_cpp_version": getattr(llama_cpp, "__version__", "?"),
        "system_info": llama_cpp.llama_print_system_info().decode(errors="replace").strip(),
        "prompt_tokens": len(tokens),
        "gen_tokens": gen_tokens,
        "threads": threads,
        "flash_attn": flash_attn,
        "prefill_ms": prefill * 1000,
        "prefill_tok_s": len(tokens) / prefill,
        "decode_pos0_tok_s": gen_tokens / d0,
        "decode_after_prompt_tok_s": gen_tokens / d1,
        "peak_memory_bytes": read_status("VmHWM"),
        "python_baseline_bytes": baseline,
    }


def run_llama(model: str, n: int, g: int, threads: int, flash_attn: bool) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", model, str(n), str(g), str(threads)]
    if flash_attn:
        cmd.append("--flash-attn")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    r = json.loads(out.strip().splitlines()[-1])
    r["peak_memory_mib"] = r["peak_memory_bytes"] / 2**20
    return r


def run_llama_bench(binary: str, model: str, n: int, g: int, threads: int, flash_attn: bool) -> dict:
    """One `llama-bench` repetition of each test; prefill and decode@0 in one process, decode
    after N tokens in another. Peak memory is the larger of the two processes' (wait4)."""
    fa = "on" if flash_attn else "off"

    def bench(args: list) -> tuple:
        cmd = [binary, "-m", model, "-t", str(threads), "-r", "1", "-fa", fa, "-o", "json", *args]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}")
        return json.loads(out), usage.ru_maxrss * 1024

    first, mem1 = bench(["-p", str(n), "-n", str(g), "-d", "0"])
    after, mem2 = bench(["-p", "0", "-n", str(g), "-d", str(n)])
    pick = lambda rows, **kw: next(r for r in rows if all(r[k] == v for k, v in kw.items()))
    pp = pick(first, n_prompt=n, n_gen=0)
    return {
        "build": f"{pp.get('build_commit', '?')} ({pp.get('build_number', '?')})",
        "cpu_info": pp.get("cpu_info"),
        "prefill_tok_s": pp["avg_ts"],
        "decode_pos0_tok_s": pick(first, n_prompt=0, n_gen=g)["avg_ts"],
        "decode_after_prompt_tok_s": pick(after, n_prompt=0, n_gen=g, n_depth=n)["avg_ts"],
        "peak_memory_mib": max(mem1, mem2) / 2**20,
    }


def run_ours(binary: str, model: str, n: int, g: int, threads: int) -> dict:
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    cmd = [binary, "bench", "--model", model, "--prompt-tokens", str(n), "--gen-tokens", str(g), "--json"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    r = json.loads(out.strip().splitlines()[-1])
    r["peak_memory_mib"] = (r.get("peak_memory_bytes") or 0) / 2**20
    return r


def model_path(spec: str) -> str:
    if os.path.exists(spec):
        return os.path.abspath(spec)
    sys.path.insert(0, HERE)
    import make_quants

    if spec == "Q4_1":
        return make_quants.SOURCE
    return make_quants.make(spec)


def median_of(runs: list, key: str) -> float:
    return statistics.median(r[key] for r in runs)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        model, n, g, threads = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
        print(json.dumps(llama_child(model, n, g, threads, "--flash-attn" in sys.argv)))
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["Q4_1"], help="quant types (Q4_1 Q4_0 Q8_0 Q4_K_M) or GGUF paths")
    ap.add_argument("--prompt-tokens", nargs="+", type=int, default=[512, 2048])
    ap.add_argument("--gen-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--flash-attn", action="store_true", help="llama.cpp with flash attention (default off)")
    ap.add_argument("--binary", default=BIN)
    ap.add_argument("--llama-bench", help="path to llama.cpp's llama-bench, measured as a second reference")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()

    results = []
    for spec in args.models:
        path = model_path(spec)
        for n in args.prompt_tokens:
            ours, theirs, bench = [], [], []
            for _ in range(args.repeat):
                ours.append(run_ours(args.binary, path, n, args.gen_tokens, args.threads))
                theirs.append(run_llama(path, n, args.gen_tokens, args.threads, args.flash_attn))
                if args.llama_bench:
                    bench.append(
                        run_llama_bench(args.llama_bench, path, n, args.gen_tokens, args.threads, args.flash_attn)
                    )
            row = {"model": os.path.basename(path), "prompt_tokens": n, "gen_tokens": args.gen_tokens}
            for key, _, _ in METRICS:
                a, b = median_of(ours, key), median_of(theirs, key)
                row[key] = {"ours": a, "llama_cpp": b, "ratio": a / b if b else None}
                if bench:
                    c = median_of(bench, key)
                    row[key].update({"llama_bench": c, "ratio_llama_bench": a / c if c else None})
            row["runs"] = {"ours": ours, "llama_cpp": theirs, "llama_bench": bench}
            results.append(row)
            print_row(row, args.repeat)

    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    meta = {
        "cpu": cpu_model(),
        "threads": args.threads,
        "repeat": args.repeat,
        "loadavg_after": load,
        "llama_cpp_flash_attn": args.flash_attn,
        "python": platform.python_version(),
    }
    print(f"\n{meta['cpu']}, {args.threads} threads, median of {args.repeat}; load average after: {' '.join(load)}")
    doc = {"meta": meta, "results": results}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
    print(json.dumps({"meta": meta, "results": [{k: v for k, v in r.items() if k != "runs"} for r in results]}))
    return 0


def print_row(row: dict, repeat: int) -> None:
    print(f"\n{row['model']}  prompt {row['prompt_tokens']}  gen {row['gen_tokens']}  (median of {repeat})")
    fmt_ratio = lambda r: f"{r:.2f}" if r is not None else "-"
    with_bench = "llama_bench" in row[METRICS[0][0]]
    extra = f" {'llama-bench':>12} {'ratio':>7}" if with_bench else ""
    print(f"  {'':18} {'freeze-attn':>12} {'llama.cpp':>12} {'ratio':>7}{extra}")
    for key, label, _ in METRICS:
        m = row[key]
        extra = f" {m['llama_bench']:12.1f} {fmt_ratio(m['ratio_llama_bench']):>7}" if with_bench else ""
        print(f"  {label:18} {m['ours']:12.1f} {m['llama_cpp']:12.1f} {fmt_ratio(m['ratio']):>7}{extra}")
    sys.stdout.flush()


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    sys.exit(main())
