#!/usr/bin/env python3
"""Prefill and decode speed of several freeze-attn builds on one model, same machine, same run.

Runs `BINARY bench --model MODEL --prompt-tokens P --gen-tokens G --json` for every binary,
REPS times, alternating the order each round so that drift in the machine falls on all sides,
and prints the medians. Use it to check that a change did not move the kernels' speed:

    python3 scripts/bench/ab_binaries.py MODEL /tmp/freeze-attn-before /tmp/freeze-attn-after
"""

import argparse
import json
import statistics
import subprocess


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("binaries", nargs="+")
    ap.add_argument("--reps", type=int, default=8)
    ap.add_argument("--prompt-tokens", type=int, default=512)
    ap.add_argument("--gen-tokens", type=int, default=16)
    a = ap.parse_args()
    res = {b: [] for b in a.binaries}
    for rep in range(a.reps):
        order = a.binaries if rep % 2 == 0 else list(reversed(a.binaries))
        for b in order:
            out = subprocess.run(
                [b, "bench", "--model", a.model, "--prompt-tokens", str(a.prompt_tokens),
                 "--gen-tokens", str(a.gen_tokens), "--json"],
                capture_output=True, text=True, check=True,
            )
            v = json.loads(out.stdout.strip().splitlines()[-1])
            res[b].append((v["prefill_tok_s"], v["decode_pos0_tok_s"]))
    for b in a.binaries:
        p = statistics.median(x[0] for x in res[b])
        d = statistics.median(x[1] for x in res[b])
        print(f"{b:40s} prefill {p:7.1f} tok/s  decode {d:6.1f} tok/s")
    with open("/proc/loadavg") as f:
        print("load average after:", f.read().strip())


if __name__ == "__main__":
    main()
