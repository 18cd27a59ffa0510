#!/usr/bin/env python3
"""Teacher-forced log-probabilities of one random-weight model through three implementations,
compared pairwise: transformers (f32, from the bf16 folder), llama.cpp (llama-cpp-python) and
freeze-attn (crates/engine/examples/teacher_forced), each on the folder and on its F16 and Q8_0
GGUF files. For each pair: top-1 agreement over the positions, and the largest |Δ log-prob| over
the vocabulary (median over positions, and overall).

It separates what the implementations do from what quantization does: on random weights the
top-2 gaps are small, so 8-bit quantization alone (of weights and, in both engines, of the
activations) flips many top-1 choices, while unquantized paths agree.

    cargo build --release -p freeze-attn-engine --example teacher_forced
    LLAMA_CPP_LIB_PATH=~/.cache/freeze-attn/llama-bench-0.3.36/build/bin \\
        /opt/refvenv/bin/python scripts/bench/crosscheck_models.py [llama-3.2-1b] [--tokens 128]
(the models from scripts/bench/make_llama_models.py --models 1b --types F16 Q8_0)
"""
import argparse
import os
import subprocess

import numpy as np
import torch
from llama_cpp import Llama
from transformers import LlamaForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODELS = os.path.expanduser("~/.cache/freeze-attn/models/")
EXE = os.path.join(ROOT, "target", "release", "examples", "teacher_forced")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name", nargs="?", default="llama-3.2-1b")
    ap.add_argument("--tokens", type=int, default=128)
    args = ap.parse_args()
    base = MODELS + args.name
    text = open(os.path.join(ROOT, "assets", "documents", "printing-press.md"), encoding="utf-8").read()
    ids = Llama(model_path=base + ".Q8_0.gguf", vocab_only=True, verbose=False).tokenize(
        text.encode(), add_bos=True)[: args.tokens]

    def ours(model):
        dump = "/tmp/freeze-attn-crosscheck.f32"
        subprocess.run([EXE, model, "--dump", dump, *map(str, ids)], check=True, capture_output=True)
        out = np.fromfile(dump, dtype=np.float32).reshape(len(ids), -1).astype(np.float64)
        os.unlink(dump)
        return out

    def lcpp(model):
        llm = Llama(model_path=model, n_ctx=max(512, len(ids) + 8), n_batch=512, n_threads=2,
                    logits_all=True, verbose=False)
        llm.eval(ids)
        l = np.array(llm.scores[: len(ids)], dtype=np.float64)
        mx = l.max(1, keepdims=True)
        return l - mx - np.log(np.exp(l - mx).sum(1, keepdims=True))

    def hf():
        m = LlamaForCausalLM.from_pretrained(base, torch_dtype=torch.float32)
        with torch.no_grad():
            l = m(torch.tensor([ids])).logits[0].double()
        return torch.log_softmax(l, -1).numpy()

    r = {"transformers f32": hf(), "ours folder": ours(base), "ours F16": ours(base + ".F16.gguf"),
         "llama.cpp F16": lcpp(base + ".F16.gguf"), "ours Q8_0": ours(base + ".Q8_0.gguf"),
         "llama.cpp Q8_0": lcpp(base + ".Q8_0.gguf")}
    names = list(r)
    print(f"{len(ids)} tokens; | pair | top-1 agreement | max |Δ log-prob| per position, median | overall |")
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            x, y = r[a], r[b]
            d = np.abs(x - y).max(1)
            print(f"| {a} vs {b} | {(x.argmax(1) == y.argmax(1)).mean():.3f} | {np.median(d):.4f} | {d.max():.4f} |")
    s = np.sort(r["transformers f32"], 1)
    print(f"transformers' median top-2 gap: {np.median(s[:, -1] - s[:, -2]):.4f}")


if __name__ == "__main__":
    main()
