#!/usr/bin/env python3
"""Teacher-forced top-1 agreement of freeze-attn with llama.cpp on one GGUF file.

The same token ids (llama.cpp's tokenization of real text: the opening of
assets/documents/printing-press.md, BOS first) go through both implementations in one pass each;
at every position we compare the most likely next token. Random-weight models make near-ties
common, so every disagreement is listed with both sides' top-2 gaps (log-probabilities).

How much of the disagreement the file itself allows is measured beside it: llama.cpp against
itself, the whole text in one batch against one token at a time (`n_batch=1`: other kernels, the
same weights and the same 8-bit activations). Where 8-bit activations round, an ulp of difference
upstream moves some values to the next step, and the layers compound it, so two correct
implementations of a quantized file part at near-ties; the unquantized F16 file shows what
remains without it.

    LLAMA_CPP_LIB_PATH=... /opt/refvenv/bin/python scripts/bench/agreement_llamacpp.py \
        ~/.cache/freeze-attn/models/llama-3.2-1b.Q8_0.gguf [--tokens 128] [--json out.json]

Our side runs `cargo run --release --example teacher_forced` (crates/engine/examples). llama.cpp
runs through llama-cpp-python (with LLAMA_CPP_LIB_PATH pointing at the libllama that
scripts/bench/build_llama_bench.sh built, the package installs without compiling:
`CMAKE_ARGS=-DLLAMA_BUILD=OFF pip install --no-build-isolation llama-cpp-python==0.3.36`).
"""

import argparse
import json
import os
import subprocess
import sys

import numpy as np
from llama_cpp import Llama

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TEXT = os.path.join(ROOT, "assets", "documents", "printing-press.md")


def ours(model: str, ids):
    subprocess.run(["cargo", "build", "-q", "--release", "-p", "freeze-attn-engine", "--example", "teacher_forced"],
                   cwd=ROOT, check=True)
    exe = os.path.join(ROOT, "target", "release", "examples", "teacher_forced")
    dump = "/tmp/freeze-attn-teacher-forced.f32"
    out = subprocess.run([exe, model, "--dump", dump, *map(str, ids)], check=True, capture_output=True,
                         text=True).stdout
    result = json.loads(out)
    result["logp"] = np.fromfile(dump, dtype=np.float32).reshape(len(ids), -1).astype(np.float64)
    os.unlink(dump)
    return result


def theirs(model: str, ids, batch: int = 512):
    llm = Llama(model_path=model, n_ctx=max(512, len(ids) + 8), n_batch=batch, n_ubatch=batch, n_threads=2,
                logits_all=True, verbose=False)
    llm.eval(ids)
    logits = np.array(llm.scores[: len(ids)], dtype=np.float64)
    mx = logits.max(1, keepdims=True)
    logp = logits - mx - np.log(np.exp(logits - mx).sum(1, keepdims=True))
    order = np.argsort(-logp, axis=1)
    top1 = order[:, 0]
    gap = logp[np.arange(len(ids)), top1] - logp[np.arange(len(ids)), order[:, 1]]
    return {"top1": top1.tolist(), "top2_gap": gap.tolist(), "logp": logp}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--json")
    args = ap.parse_args()
    vocab_only = Llama(model_path=args.model, vocab_only=True, verbose=False)
    text = open(TEXT, encoding="utf-8").read()
    ids = vocab_only.tokenize(text.encode(), add_bos=True, special=False)[: args.tokens]
    if len(ids) < args.tokens:
        print(f"the text has only {len(ids)} tokens", file=sys.stderr)
        return 1
    a, b = ours(args.model, ids), theirs(args.model, ids)
    same = sum(int(x == y) for x, y in zip(a["top1"], b["top1"]))
    diffs = [
        {"pos": i, "ours": a["top1"][i], "llama_cpp": b["top1"][i],
         "ours_gap": round(a["top2_gap"][i], 4), "llama_cpp_gap": round(b["top2_gap"][i], 4)}
        for i in range(len(ids)) if a["top1"][i] != b["top1"][i]
    ]
    # How far apart the two distributions are: the log-probability each side gives llama.cpp's
    # top-1 token, and the largest difference over the whole vocabulary.
    rows = np.arange(len(ids))
    d_top1 = np.abs(a["logp"][rows, b["top1"]] - b["logp"][rows, b["top1"]])
    d_all = np.abs(a["logp"] - b["logp"]).max(1)
    # llama.cpp against itself: one token at a time against the whole text in one batch.
    c = theirs(args.model, ids, batch=1)
    self_same = np.array(b["top1"]) == np.array(c["top1"])
    d_self = np.abs(b["logp"] - c["logp"]).max(1)
    ours_same = np.array(a["top1"]) == np.array(b["top1"])
    stable = int(self_same.sum())
    result = {"model": args.model, "tokens": len(ids), "agree": same, "rate": same / len(ids),
              "max_abs_dlogp_llama_top1": float(d_top1.max()), "median_max_abs_dlogp": float(np.median(d_all)),
              "median_llama_top2_gap": float(np.median(b["top2_gap"])),
              "llama_cpp_self_agree": stable, "llama_cpp_self_median_max_abs_dlogp": float(np.median(d_self)),
              "agree_where_llama_cpp_self_agrees": int((ours_same & self_same).sum()), "differ": diffs}
    print(f"top-1 agreement {same}/{len(ids)} = {same / len(ids):.4f}")
    print(f"|Δ log-prob| of llama.cpp's top-1: max {d_top1.max():.4f}; over the vocabulary, per position: "
          f"median {np.median(d_all):.4f}, max {d_all.max():.4f}; llama.cpp's median top-2 gap "
          f"{np.median(b['top2_gap']):.4f}")
    print(f"llama.cpp against itself (one batch / one token at a time): top-1 {stable}/{len(ids)}, "
          f"median |Δ log-prob| {np.median(d_self):.4f}; ours where those two agree: "
          f"{result['agree_where_llama_cpp_self_agrees']}/{stable}")
    for d in diffs:
        print(f"  position {d['pos']}: ours {d['ours']} (gap {d['ours_gap']}), "
              f"llama.cpp {d['llama_cpp']} (gap {d['llama_cpp_gap']})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
