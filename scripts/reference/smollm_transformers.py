#!/usr/bin/env python3
"""Reference logits for the default model from Hugging Face transformers, which loads the GGUF by
dequantizing it to f32 and runs its own (PyTorch) Llama: an implementation that shares nothing
with ours, and none of llama.cpp's quantized-activation shortcuts.

Uses the token ids of tests/fixtures/smollm2_llamacpp.json (transformers' GGUF tokenizer ignores
the `smollm` digit splitting, so it is not used for tokenization) and writes
tests/fixtures/smollm2_transformers.json: teacher-forced top-1 tokens, their log-probs and
top-1/top-2 gaps, and greedy 32-token continuations with their gaps.

Run:  python3 -m pip install torch transformers gguf numpy
      python3 scripts/reference/smollm_transformers.py PATH/TO/SmolLM2-135M-Instruct.Q4_1.gguf
"""
import json
import sys
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

ROOT = Path(__file__).resolve().parents[2]


def main(gguf_path):
    gguf_path = Path(gguf_path)
    model = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name, torch_dtype=torch.float32)
    model.eval()
    src = json.loads((ROOT / "tests/fixtures/smollm2_llamacpp.json").read_text())
    out = {"transformers": __import__("transformers").__version__, "torch": torch.__version__,
           "teacher_forced": [], "greedy": []}
    eos = {0, 2}
    for case in src["teacher_forced"]:
        ids = case["ids"]
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0].double()
        lp = torch.log_softmax(logits, -1)
        top = torch.topk(logits, 2, dim=-1)
        out["teacher_forced"].append({
            "name": case["name"], "ids": ids,
            "top1": top.indices[:, 0].tolist(),
            "top1_logprob": [round(float(lp[i, t]), 5) for i, t in enumerate(top.indices[:, 0].tolist())],
            "gap": [round(float(top.values[i, 0] - top.values[i, 1]), 5) for i in range(len(ids))],
        })
    for case in src["greedy"]:
        ids = list(case["ids"])
        gen, gaps = [], []
        for _ in range(32):
            with torch.no_grad():
                row = model(torch.tensor([ids + gen])).logits[0, -1].double()
            top = torch.topk(row, 2)
            t = int(top.indices[0])
            gen.append(t)
            gaps.append(round(float(top.values[0] - top.values[1]), 5))
            if t in eos:
                break
        out["greedy"].append({"name": case["name"], "ids": ids, "tokens": gen, "gap": gaps})
    dest = ROOT / "tests/fixtures/smollm2_transformers.json"
    dest.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {dest}")


if __name__ == "__main__":
    main(sys.argv[1])
