#!/usr/bin/env python3
"""What constrained decoding costs per generated token: the median time between streamed tokens
of the same greedy completion without a grammar, with JSON mode (`response_format: {"type":
"json_object"}`) and with a JSON Schema (`json_schema`: nested object, enum, integer, optional
key, bounded array), on a running `freeze-attn serve`, alternating, `--repeat` times each.

    freeze-attn serve --port 8799 --model MODEL.gguf &
    python3 scripts/bench/json_mode_cost.py --url http://127.0.0.1:8799/v1 [--tokens 64] [--repeat 3]

Needs the `openai` package (scripts/python-env has it).
"""
import argparse
import statistics
import time

from openai import OpenAI


CAT = {
    "$defs": {"Toy": {"type": "object", "properties": {"name": {"type": "string"}, "squeaks": {"type": "boolean"}},
                      "required": ["name", "squeaks"]}},
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer"},
        "color": {"enum": ["black", "white", "ginger", "grey"]},
        "nickname": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "toys": {"type": "array", "items": {"$ref": "#/$defs/Toy"}, "maxItems": 3},
    },
    "required": ["name", "age", "color", "nickname", "toys"],
}


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

    formats = [("free", None), ("json_object", {"type": "json_object"}),
               ("json_schema", {"type": "json_schema", "json_schema": {"name": "Cat", "schema": CAT}})]
    out = {name: [] for name, _ in formats}
    for i in range(a.repeat):
        for name, fmt in formats:
            ms, n = run(fmt, i)
            out[name].append(ms)
            print(f"{name:12} {ms:6.1f} ms/token ({n} chunks)")
    free = statistics.median(out["free"])
    line = [f"free {free:.1f} ms/token"]
    for name, _ in formats[1:]:
        m = statistics.median(out[name])
        line.append(f"{name} {m:.1f} ms/token (+{m - free:.1f} ms, {100 * (m / free - 1):.0f}%)")
    print("median: " + ", ".join(line))


if __name__ == "__main__":
    main()
