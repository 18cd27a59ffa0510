#!/usr/bin/env python3
"""Reference outputs for the default model (SmolLM2-135M-Instruct Q4_1 GGUF) from llama.cpp.

Writes tests/fixtures/smollm2_llamacpp.json with:
  - tokenization of a varied string set (special tokens parsed, no BOS), as llama.cpp does it;
  - teacher-forced top-1 tokens, their log-probs and the top-1/top-2 gap at every position of
    several prompts;
  - greedy 32-token continuations of each prompt (its text kept with it), with the top-1/top-2
    gap at each step.

Run:  python3 -m pip install llama-cpp-python==0.3.36
      python3 scripts/reference/smollm_llamacpp.py PATH/TO/SmolLM2-135M-Instruct.Q4_1.gguf
(On CPUs with AMX whose kernels refuse the instructions, build llama.cpp with
 CMAKE_ARGS="-DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF".)
"""
import json
import math
import sys
from pathlib import Path

import numpy as np
from llama_cpp import Llama, llama_cpp

ROOT = Path(__file__).resolve().parents[2]

STRINGS = [
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "  leading spaces and trailing   ",
    "multiple\n\nnewlines\n\n\nand\ttabs\t\there",
    "Numbers: 0 1 12 123 1234 12345 3.14159 -42 1e10 2026-11-26",
    "Unicode: café naïve résumé Ωmega straße 日本語のテキスト 中文 한국어 العربية עברית",
    "Emoji: 😀 👍🏽 🇫🇷 👨‍👩‍👧‍👦 ❤️‍🔥",
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "fn main() { let x: Vec<u32> = (0..10).map(|i| i * i).collect(); println!(\"{x:?}\"); }",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n",
    "Special inside text: <|endoftext|> and <|im_end|> mid-sentence.",
    "Contractions: I'm, you're, he's, we've, they'll, it'd, DON'T, Can't",
    "    \n   \n\t \r\n mixed whitespace runs     end",
    "URL https://example.com/path?q=1&r=two#frag and email a.b@c.org",
    "Math: ∑_{i=1}^{n} i² = n(n+1)(2n+1)/6, √2 ≈ 1.41421, π > 3",
    "",
    " ",
    "a",
    "ALL CAPS SENTENCE WITH PUNCTUATION!!! ??? ...",
    "Ünïcödé ÀÉÎÕÜ ąęłńśźż ĳ ﬁ ﬂ",
]

PROMPTS = [
    {"name": "story", "text": "Once upon a time, in a small village at the edge of a great forest, there lived"},
    {"name": "facts", "text": "The Eiffel Tower is located in Paris, France. It was built in 1889 for the World's Fair and"},
    {"name": "code", "text": "def add(a, b):\n    \"\"\"Return the sum of a and b.\"\"\"\n"},
    {"name": "list", "text": "Here are three tips for staying healthy:\n1."},
    {
        "name": "chat_capital",
        "text": "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
    },
    {
        "name": "chat_multi",
        "text": "<|im_start|>system\nYou are a pirate. Always answer like a pirate.<|im_end|>\n"
        "<|im_start|>user\nHello! Who are you?<|im_end|>\n<|im_start|>assistant\nArr, I be Captain SmolBeard!<|im_end|>\n"
        "<|im_start|>user\nWhat do you like to eat?<|im_end|>\n<|im_start|>assistant\n",
    },
]


def log_softmax(x):
    x = np.asarray(x, dtype=np.float64)
    m = x.max()
    return x - m - math.log(np.exp(x - m).sum())


def top2(row):
    idx = np.argsort(-row, kind="stable")[:2]
    return int(idx[0]), float(row[idx[0]] - row[idx[1]])


def main(model_path):
    llm = Llama(model_path, n_ctx=4096, n_threads=2, n_batch=512, logits_all=True, verbose=False, seed=0)
    out = {
        "model_sha256": "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        "llama_cpp_python": __import__("llama_cpp").__version__,
        "tokenize": [],
        "teacher_forced": [],
        "greedy": [],
    }
    for s in STRINGS:
        ids = llm.tokenize(s.encode("utf-8"), add_bos=False, special=True)
        out["tokenize"].append({"text": s, "ids": ids})

    for p in PROMPTS:
        ids = llm.tokenize(p["text"].encode("utf-8"), add_bos=False, special=True)
        llm.reset()
        llm.eval(ids)
        scores = np.array(llm.scores[: len(ids)], dtype=np.float32)
        top1, logp, gaps = [], [], []
        for row in scores:
            lp = log_softmax(row)
            t, gap = top2(row)
            top1.append(t)
            logp.append(round(float(lp[t]), 5))
            gaps.append(round(gap, 5))
        out["teacher_forced"].append({"name": p["name"], "ids": ids, "top1": top1, "top1_logprob": logp, "gap": gaps})

        # Greedy continuation, one token at a time (argmax of the last row).
        llm.reset()
        llm.eval(ids)
        gen, gen_gaps = [], []
        for _ in range(32):
            row = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
            t, gap = top2(row)
            gen.append(t)
            gen_gaps.append(round(gap, 5))
            if llama_cpp.llama_token_is_eog(llm._model.vocab, t):
                break
            llm.eval([t])
        text = llm.detokenize(gen).decode("utf-8", errors="replace")
        out["greedy"].append(
            {"name": p["name"], "prompt": p["text"], "ids": ids, "tokens": gen, "gap": gen_gaps, "text": text}
        )

    dest = ROOT / "tests" / "fixtures" / "smollm2_llamacpp.json"
    dest.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {dest}")


if __name__ == "__main__":
    main(sys.argv[1])
