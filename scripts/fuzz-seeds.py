#!/usr/bin/env python3
"""Makes the binary seeds of the fuzz targets (nothing binary is committed):

  state_file/    one-token f16 and q8 state files of the default model (`freeze-attn prefix`)
  bundle/        a one-token bundle (a `freeze-attn serve` on a scratch library, create + export)
  gguf_metadata/ two 5 KB GGUF files with a byte-level BPE vocabulary, merges and a chat template,
                 and one all-zero 4x8 tensor (written here with the standard library: no weights)

    python3 scripts/fuzz-seeds.py FREEZE_ATTN_BINARY OUT_DIR

Seeds already present are kept.
"""

import json
import os
import struct
import subprocess
import sys
import tempfile
import urllib.request


def gguf(path, pre, template):
    """A GGUF v3 file: llama metadata, a tokenizer and a chat template, one tiny f32 tensor."""
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    tokens = [chr(c) for c in cs] + ["Ġt", "he", "Ġthe", "<|im_start|>", "<|im_end|>"]
    types = [1] * (len(tokens) - 2) + [3, 3]

    def s(x):
        b = x.encode()
        return struct.pack("<Q", len(b)) + b

    def kv(key, typ, value):
        out = s(key) + struct.pack("<I", typ)
        if typ == 8:  # string
            return out + s(value)
        if typ == 4:  # u32
            return out + struct.pack("<I", value)
        if typ == 6:  # f32
            return out + struct.pack("<f", value)
        elem, items = value  # array
        out += struct.pack("<IQ", elem, len(items))
        for it in items:
            out += s(it) if elem == 8 else struct.pack("<i", it)
        return out

    meta = [
        kv("general.architecture", 8, "llama"),
        kv("llama.context_length", 4, 2048),
        kv("llama.embedding_length", 4, 8),
        kv("llama.block_count", 4, 1),
        kv("llama.feed_forward_length", 4, 16),
        kv("llama.attention.head_count", 4, 2),
        kv("llama.attention.head_count_kv", 4, 1),
        kv("llama.rope.freq_base", 6, 10000.0),
        kv("llama.attention.layer_norm_rms_epsilon", 6, 1e-5),
        kv("tokenizer.ggml.model", 8, "gpt2"),
        kv("tokenizer.ggml.pre", 8, pre),
        kv("tokenizer.ggml.tokens", 9, (8, tokens)),
        kv("tokenizer.ggml.token_type", 9, (5, types)),
        kv("tokenizer.ggml.merges", 9, (8, ["Ġ t", "h e", "Ġt he"])),
        kv("tokenizer.ggml.bos_token_id", 4, len(tokens) - 2),
        kv("tokenizer.ggml.eos_token_id", 4, len(tokens) - 1),
        kv("tokenizer.chat_template", 8, template),
    ]
    tensor = s("token_embd.weight") + struct.pack("<IQQIQ", 2, 8, 4, 0, 0)  # f32, 8x4, offset 0
    head = b"GGUF" + struct.pack("<IQQ", 3, 1, len(meta)) + b"".join(meta) + tensor
    head += b"\0" * (-len(head) % 32)
    with open(path, "wb") as f:
        f.write(head + b"\0" * (4 * 8 * 4))


def main():
    binary, out = sys.argv[1], sys.argv[2]
    for d in ["state_file", "bundle", "gguf_metadata"]:
        os.makedirs(os.path.join(out, d), exist_ok=True)
    smol = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
            "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
    llama = ("{{ bos_token }}{% for m in messages %}{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\\n\\n' + "
             "m['content'] | trim + '<|eot_id|>' }}{% endfor %}{% if add_generation_prompt %}"
             "{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}")
    for name, pre, tmpl in [("smol", "smollm", smol), ("llama3", "llama-bpe", llama)]:
        path = os.path.join(out, "gguf_metadata", f"{name}.gguf")
        if not os.path.exists(path):
            gguf(path, pre, tmpl)
    with tempfile.TemporaryDirectory() as home:
        env = dict(os.environ, FREEZE_ATTN_HOME=home)
        if "FREEZE_ATTN_MODELS" not in env:
            model = subprocess.run([binary, "fetch-model"], check=True, capture_output=True, text=True).stdout.strip()
            env["FREEZE_ATTN_MODELS"] = os.path.dirname(model)
        text = os.path.join(home, "hi.txt")
        with open(text, "w") as f:
            f.write("Hi")
        for dtype in ["f16", "q8"]:
            path = os.path.join(out, "state_file", f"one-token-{dtype}.state")
            if not os.path.exists(path):
                subprocess.run([binary, "prefix", "--text-file", text, "--dtype", dtype, "--out", path],
                               check=True, env=env, capture_output=True)
        bundle = os.path.join(out, "bundle", "one-token.bundle")
        if not os.path.exists(bundle):
            server = subprocess.Popen([binary, "serve", "--port", "0"], env=env, stdout=subprocess.PIPE, text=True)
            try:
                url = server.stdout.readline().split()[2]
                req = urllib.request.Request(url + "/v1/states", data=json.dumps({"name": "hi", "text": "Hi"}).encode(),
                                             headers={"Content-Type": "application/json"})
                urllib.request.urlopen(req, timeout=120).read()
                with urllib.request.urlopen(url + "/v1/states/hi/export", timeout=120) as r, open(bundle, "wb") as f:
                    f.write(r.read())
            finally:
                server.terminate()
                server.wait()


if __name__ == "__main__":
    main()
