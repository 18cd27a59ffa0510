#!/usr/bin/env python3
"""Log-probabilities of `freeze-attn serve` against llama.cpp's, through each one's
`/v1/completions` shape: llama-cpp-python's `create_completion(logprobs=K)` and our server's
`logprobs: K`, greedy, on the same GGUF file and the same prompts.

For each prompt: how many generated tokens are the same before the two part (a near-tie of the
two arithmetics parts them: llama.cpp quantizes activations to 8 bits, our kernels keep f32 for
some formats), the largest difference of the generated tokens' log-probabilities while they are
the same, and both sides' first-step alternatives.

    LLAMA_CPP_LIB_PATH=~/.cache/freeze-attn/llama-bench-0.3.36/build/bin \\
        /opt/refvenv/bin/python scripts/bench/logprobs_llamacpp.py "$(target/release/freeze-attn fetch-model)" \\
        [--bin target/release/freeze-attn] [--tokens 16] [--top 3]

llama-cpp-python installs without compiling when LLAMA_CPP_LIB_PATH points at the libllama of
scripts/bench/build_llama_bench.sh (`CMAKE_ARGS=-DLLAMA_BUILD=OFF pip install llama-cpp-python==0.3.36`).
"""

import argparse
import json
import os
import subprocess
import tempfile
import urllib.request

from llama_cpp import Llama

PROMPTS = [
    "The capital of France is",
    "Once upon a time, in a small village at the edge of a great forest, there lived",
    "1, 2, 3, 4,",
    "def fibonacci(n):",
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--bin", default="target/release/freeze-attn")
    ap.add_argument("--tokens", type=int, default=16)
    ap.add_argument("--top", type=int, default=3)
    a = ap.parse_args()

    llm = Llama(model_path=a.model, n_ctx=512, logits_all=True, verbose=False, seed=0)
    home = tempfile.TemporaryDirectory()
    server = subprocess.Popen([a.bin, "serve", "--port", "0", "--model", a.model], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True, env=dict(os.environ, FREEZE_ATTN_HOME=home.name))
    try:
        url = server.stdout.readline().split()[2]
        same = total = 0
        worst = 0.0
        for p in PROMPTS:
            ask = {"prompt": p, "max_tokens": a.tokens, "temperature": 0, "logprobs": a.top}
            ref = llm.create_completion(**ask)["choices"][0]["logprobs"]
            req = urllib.request.Request(url + "/v1/completions", data=json.dumps(ask).encode(),
                                         headers={"Content-Type": "application/json"})
            ours = json.load(urllib.request.urlopen(req))["choices"][0]["logprobs"]
            n = 0
            for rt, ot, rl, ol in zip(ref["tokens"], ours["tokens"], ref["token_logprobs"], ours["token_logprobs"]):
                if rt != ot:
                    break
                n += 1
                worst = max(worst, abs(float(rl) - ol))
            same += n
            total += len(ref["tokens"])
            print(f"{p[:40]!r}: the same {n} of {len(ref['tokens'])} tokens")
            print("   llama.cpp first step:", {k: round(float(v), 3) for k, v in ref["top_logprobs"][0].items()})
            print("   ours      first step:", {k: round(v, 3) for k, v in ours["top_logprobs"][0].items()})
        print(f"tokens the same until the two part: {same}/{total}; "
              f"largest |log-probability difference| on them: {worst:.4f} nats")
    finally:
        server.terminate()
        server.wait()
        home.cleanup()


if __name__ == "__main__":
    main()
