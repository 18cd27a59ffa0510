#!/usr/bin/env python3
"""Agent-like workload against two OpenAI-compatible servers on the same model, same machine,
same run: `freeze-attn serve` and llama-cpp-python's own server (`python -m llama_cpp.server`,
prompt cache on). A long system prompt (about 2,000 tokens), then user turns, each re-sending the
whole conversation as agents do; both servers are restarted after turn `--restart-after`.

Per turn it records the prompt tokens the server processed (ours: `prompt_tokens -
cached_tokens` from `usage`; llama-cpp-python: from its verbose log, "remaining N prompt tokens
to eval", or the whole prompt when it reset) and the time to first token of a streamed answer.

    python scripts/bench/server_agent.py --bin target/release/freeze-attn \
        --model ~/.local/share/freeze-attn/models/SmolLM2-135M-Instruct.Q4_1.gguf \
        --ref-python /opt/refvenv/bin/python

Needs the `openai` package in the running Python and llama-cpp-python[server] in --ref-python.
Run on an idle machine.
"""

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import openai

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WARMUP = [
    "In one sentence: what is the engine crate for?",
    "In one sentence: what is the library crate for?",
    "In one sentence: what does verify check?",
]
QUESTIONS = [
    "In one sentence: what is a node?",
    "In one sentence: what does freeze do?",
    "In one sentence: what does thaw do?",
    "In one sentence: what is a segment?",
    "In one sentence: what does fork do?",
    "In one sentence: what is the live state?",
    "In one sentence: what does gc collect?",
    "In one sentence: what is a bundle?",
    "In one sentence: what is the model fingerprint?",
    "In one sentence: what is a cache node?",
]


def system_prompt(chars):
    """Deterministic reference text (the project's own docs) cut to about `chars` characters."""
    text = ""
    for name in ["docs/ARCHITECTURE.md", "docs/state-format.md", "README.md", "docs/api.md"]:
        with open(os.path.join(ROOT, name), encoding="utf-8") as f:
            text += f.read() + "\n\n"
    text = text[:chars]
    return "You are a precise assistant for the project documented below. Answer briefly.\n\n" + text


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Ours:
    name = "freeze-attn serve"

    def __init__(self, args, home):
        self.args, self.home = args, home

    def start(self):
        env = dict(os.environ, FREEZE_ATTN_HOME=self.home, RUST_LOG="warn")
        self.proc = subprocess.Popen([self.args.bin, "serve", "--model", self.args.model, "--port", "0",
                                      "--temperature", "0"], env=env, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        assert line.startswith("listening on "), line
        self.url = line.split()[2] + "/v1"

    def processed(self, usage):
        return usage.prompt_tokens - usage.prompt_tokens_details.cached_tokens

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


class Theirs:
    name = "llama-cpp-python server"

    def __init__(self, args):
        self.args = args
        self.log = []

    def start(self):
        port = free_port()
        self.proc = subprocess.Popen(
            [self.args.ref_python, "-m", "llama_cpp.server", "--model", self.args.model, "--n_ctx", str(self.args.ctx),
             "--n_threads", str(self.args.threads), "--n_threads_batch", str(self.args.threads), "--cache", "true",
             "--cache_type", "ram", "--port", str(port), "--verbose", "true"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.log = []
        threading.Thread(target=self._read, daemon=True).start()
        self.url = f"http://127.0.0.1:{port}/v1"
        for _ in range(600):
            try:
                urllib.request.urlopen(self.url + "/models", timeout=1).read()
                return
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(0.1)
        raise RuntimeError("llama_cpp.server did not start: " + "".join(self.log[-20:]))

    def _read(self):
        for line in self.proc.stderr:
            self.log.append(line)

    def mark(self):
        return len(self.log)

    def processed_since(self, mark):
        """Prompt tokens evaluated by the last completion, from llama.cpp's own timing line
        ("prompt eval time = … / N tokens"); 0 when it printed none (nothing was evaluated)."""
        for l in self.log[mark:]:
            m = re.search(r"prompt eval time\s*=\s*[\d.]+ ms /\s*(\d+) tokens", l)
            if m:
                return int(m.group(1))
        return 0

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def run(server, args, system):
    server.start()
    turns = []
    try:
        # An earlier session of the same agent (same system prompt, other questions), in the
        # same server process: not measured.
        for q in WARMUP[: args.warmup]:
            client = openai.OpenAI(base_url=server.url, api_key="x", max_retries=0, timeout=600)
            client.chat.completions.create(model=client.models.list().data[0].id, max_tokens=args.max_tokens, temperature=0,
                                           messages=[{"role": "system", "content": system}, {"role": "user", "content": q}])
        messages = [{"role": "system", "content": system}]
        for i, q in enumerate(QUESTIONS[: args.turns]):
            if i == args.restart_after:
                server.stop()
                server.start()
            client = openai.OpenAI(base_url=server.url, api_key="x", max_retries=0, timeout=600)
            messages.append({"role": "user", "content": q})
            mark = server.mark() if isinstance(server, Theirs) else None
            t0 = time.perf_counter()
            first, text, usage = None, "", None
            for ch in client.chat.completions.create(model=client.models.list().data[0].id, messages=messages,
                                                     max_tokens=args.max_tokens, temperature=0, seed=1, stream=True,
                                                     stream_options={"include_usage": True}):
                if ch.choices and ch.choices[0].delta.content:
                    first = first or time.perf_counter()
                    text += ch.choices[0].delta.content
                if getattr(ch, "usage", None):
                    usage = ch.usage
            done = time.perf_counter()
            messages.append({"role": "assistant", "content": text})
            time.sleep(0.3)  # let the log reader catch up
            if isinstance(server, Ours):
                processed, prompt = server.processed(usage), usage.prompt_tokens
            else:
                prompt = usage.prompt_tokens if usage else None
                processed = server.processed_since(mark)
            turns.append({"turn": i + 1, "prompt_tokens": prompt, "processed": processed,
                          "ttft_ms": round(((first or done) - t0) * 1000, 1), "total_ms": round((done - t0) * 1000, 1)})
            print(f"  {server.name} turn {i + 1}: {turns[-1]}", file=sys.stderr)
    finally:
        server.stop()
    return turns


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin", default=os.path.join(ROOT, "target/release/freeze-attn"))
    p.add_argument("--model", required=True)
    p.add_argument("--ref-python", default="/opt/refvenv/bin/python")
    p.add_argument("--turns", type=int, default=10)
    p.add_argument("--warmup", type=int, default=0, help="turns of an earlier session with the same system prompt, unmeasured")
    p.add_argument("--restart-after", type=int, default=5)
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--system-chars", type=int, default=8600)
    p.add_argument("--ctx", type=int, default=8192)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", help="write the results here")
    args = p.parse_args()
    system = system_prompt(args.system_chars)
    with tempfile.TemporaryDirectory() as home:
        ours = run(Ours(args, home), args, system)
    theirs = run(Theirs(args), args, system)
    print("| turn | prompt tokens | processed: ours | processed: llama-cpp-python | TTFT ours (ms) | TTFT llama-cpp-python (ms) |")
    print("|---|---|---|---|---|---|")
    for a, b in zip(ours, theirs):
        print(f"| {a['turn']}{' (after restart)' if a['turn'] == args.restart_after + 1 else ''} | {a['prompt_tokens']} | "
              f"{a['processed']} | {b['processed']} | {a['ttft_ms']:.0f} | {b['ttft_ms']:.0f} |")
    po, pt = sum(t["processed"] for t in ours), sum(t["processed"] for t in theirs)
    r = args.restart_after
    print(f"\nprocessed over {len(ours)} turns: ours {po}, llama-cpp-python {pt} ({po / pt:.3f}x)")
    if len(ours) > r:
        print(f"turn {r + 1} (first after the restart) TTFT: ours {ours[r]['ttft_ms']:.0f} ms, llama-cpp-python "
              f"{theirs[r]['ttft_ms']:.0f} ms ({ours[r]['ttft_ms'] / theirs[r]['ttft_ms']:.3f}x)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"ours": ours, "theirs": theirs}, f, indent=1)


if __name__ == "__main__":
    main()
