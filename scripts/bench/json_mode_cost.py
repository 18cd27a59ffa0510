#!/usr/bin/env python3
"""What JSON mode (`response_format: {"type": "json_object"}`) costs per generated token: the
median time between streamed tokens of the same greedy completion with and without it, on a
running `freeze-attn serve`, alternating, `--repeat` times each.

    freeze-attn serve --port 8799 --model MODEL.gguf &
    python3 scripts/bench/json_mode_cost.py --url http://127.0.0.1:8799/v1 [--tokens 64] [--repeat 3]

Needs the `openai` package (scripts/python-env has it).
"""
import argparse
import statistics
import time

from openai import OpenAI


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://127.0.0.1:8799/v1")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    c = OpenAI(base_url=a.url, api_key="unused")
    model = c.models.list().data[0].id

    def run(fmt, i):
        extra = {"response_format": fmt} if fmt else {}
        stamps = [time.perf_counter() for _ in c.completions.create(
            model=model, prompt=f"Describe a cat ({i}):", max_tokens=a.tokens, temperature=0, stream=True,
            extra_body=extra)]
        gaps = [b - x for x, b in zip(stamps[1:], stamps[2:])]  # after the first token: decoding only
        return statistics.median(gaps) * 1000, len(stamps)

    out = {"free": [], "json_object": []}
    for i in range(a.repeat):
        for name, fmt in [("free", None), ("json_object", {"type": "json_object"})]:
            ms, n = run(fmt, i)
            out[name].append(ms)
            print(f"{name:12} {ms:6.1f} ms/token ({n} chunks)")
    free, js = statistics.median(out["free"]), statistics.median(out["json_object"])
    print(f"median: free {free:.1f} ms/token, json_object {js:.1f} ms/token (+{js - free:.1f} ms, {100 * (js / free - 1):.0f}%)")


if __name__ == "__main__":
    main()
