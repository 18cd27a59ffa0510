#!/usr/bin/env python3
"""A GGUF file of a given layout with random weights, written in seconds, without torch.

make_llama_models.py builds real-shaped models the slow, faithful way (a bf16 safetensors folder
through llama.cpp's converter and quantizer: minutes and tens of gigabytes for an 8B model). A
GPU machine lent for a few minutes has no time for that and no network, so this script splits
the job in two:

    random_gguf.py layout SRC.gguf OUT.layout    # here: SRC's header (metadata, tokenizer, tensor
                                                 # table) and its small f32 tensors (norms,
                                                 # rope_freqs), a few megabytes, no weights
    random_gguf.py fill OUT.layout DEST.gguf     # there: the same file with random weights

The weights are random blocks of the stored format with fixed scales chosen so that every
weight has mean 0 and standard deviation about 0.02 (as make_llama_models.py's normal weights
and trained Llama weights roughly have), so activations stay finite. Same layout, same types,
same sizes: real speed and memory, meaningless text. Needs numpy only.
"""

import argparse
import hashlib
import json
import struct
import sys
from pathlib import Path

import numpy as np

MAGIC = b"FALAYOUT"
# ggml type id -> (name, block bytes, values per block)
TYPES = {
    0: ("F32", 4, 1), 1: ("F16", 2, 1), 2: ("Q4_0", 18, 32), 3: ("Q4_1", 20, 32),
    6: ("Q5_0", 22, 32), 7: ("Q5_1", 24, 32), 8: ("Q8_0", 34, 32), 10: ("Q2_K", 84, 256),
    11: ("Q3_K", 110, 256), 12: ("Q4_K", 144, 256), 13: ("Q5_K", 176, 256),
    14: ("Q6_K", 210, 256), 30: ("BF16", 2, 1),
}
# Tensors up to this size are kept as they are (norms, rope_freqs): small, and they matter.
SMALL = 1 << 20
STD = 0.02


def read_header(f):
    """The tensor table of a GGUF file: (data_start, [(name, type, offset, nbytes)])."""
    def rd(fmt):
        n = struct.calcsize(fmt)
        return struct.unpack("<" + fmt, f.read(n))

    def string():
        (n,) = rd("Q")
        if n > 1 << 24:
            raise SystemExit("a string in the header is implausibly long: not a GGUF file?")
        return f.read(n).decode("utf-8", "replace")

    scalar = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}

    def value(t):
        if t in scalar:
            return rd(scalar[t])[0]
        if t == 8:
            return string()
        if t == 9:
            (it,) = rd("I")
            (n,) = rd("Q")
            if n > 1 << 24:
                raise SystemExit(f"an array of {n} items in the header: not a model's metadata")
            if it in scalar:
                size = struct.calcsize(scalar[it])
                f.seek(n * size, 1)
                return None
            return [value(it) for _ in range(n)] if it != 8 else [string() for _ in range(n)]
        raise SystemExit(f"unknown metadata type {t}")

    if f.read(4) != b"GGUF":
        raise SystemExit("not a GGUF file (no magic)")
    (version,) = rd("I")
    if version < 2:
        raise SystemExit(f"GGUF version {version} is too old")
    n_tensors, n_kv = rd("QQ")
    if n_tensors > 1 << 16 or n_kv > 1 << 16:
        raise SystemExit(f"{n_tensors} tensors and {n_kv} metadata entries: not a model's header")
    alignment = 32
    for _ in range(n_kv):
        key = string()
        (t,) = rd("I")
        v = value(t)
        if key == "general.alignment":
            alignment = int(v)
    tensors = []
    for _ in range(n_tensors):
        name = string()
        (nd,) = rd("I")
        dims = rd("Q" * nd)
        (t,) = rd("I")
        (off,) = rd("Q")
        if t not in TYPES:
            raise SystemExit(f"{name}: tensor type {t} is not one this script writes")
        _, bb, bs = TYPES[t]
        count = int(np.prod(dims))
        tensors.append(dict(name=name, type=t, offset=off, nbytes=count // bs * bb))
    end = f.tell()
    data_start = (end + alignment - 1) // alignment * alignment
    return data_start, tensors


def layout(src: Path, out: Path):
    with open(src, "rb") as f:
        data_start, tensors = read_header(f)
        f.seek(0)
        header = f.read(data_start)
        small = bytearray()
        for t in tensors:
            t["small_at"] = None
            if t["nbytes"] <= SMALL and TYPES[t["type"]][0] == "F32":
                f.seek(data_start + t["offset"])
                t["small_at"] = len(small)
                small += f.read(t["nbytes"])
    total = data_start + max(t["offset"] + t["nbytes"] for t in tensors)
    meta = json.dumps(dict(source=src.name, data_start=data_start, total=total, tensors=tensors)).encode()
    with open(out, "wb") as o:
        o.write(MAGIC + struct.pack("<QQ", len(meta), len(header)))
        o.write(meta)
        o.write(header)
        o.write(small)
    print(f"{out}: layout of {src.name} ({len(tensors)} tensors, {total / 1e9:.2f} GB), "
          f"{out.stat().st_size / 1e6:.1f} MB")


def f16(x):
    return np.array([x], dtype=np.float16).view(np.uint8)


def random_blocks(kind, n_blocks, rng):
    """`n_blocks` blocks of format `kind`, random values, mean 0, standard deviation ~STD."""
    name, bb, _ = TYPES[kind]
    if name in ("F16", "BF16", "F32"):
        v = rng.standard_normal(n_blocks, dtype=np.float32) * STD
        if name == "F16":
            return v.astype(np.float16).view(np.uint8)
        if name == "BF16":
            return (v.view(np.uint32) >> 16).astype(np.uint16).view(np.uint8)
        return v.view(np.uint8)
    b = np.frombuffer(rng.bytes(n_blocks * bb), dtype=np.uint8).reshape(n_blocks, bb).copy()
    if name == "Q4_K":
        # w = d*sc*q - dmin*m, q uniform in 0..15 (sd 4.61); sc = m = 8 in every sub-block
        # (6-bit fields packed as ggml's get_scale_min_k4 reads them); dmin = 7.5 d centres it.
        d = STD / (8 * 4.61)
        b[:, 0:2] = f16(d)
        b[:, 2:4] = f16(7.5 * d)
        b[:, 4:12] = 8
        b[:, 12:16] = 0x88
    elif name == "Q6_K":
        # w = d*sc*(q - 32), q uniform in 0..63 (sd 18.5), sc = 16: ql, qh random; scales; d.
        b[:, 192:208] = 16
        b[:, 208:210] = f16(STD / (16 * 18.5))
    elif name == "Q8_0":
        q = b[:, 2:].view(np.int8)
        q[q == -128] = 0
        b[:, 0:2] = f16(STD / 73.3)
    elif name == "Q4_0":
        b[:, 0:2] = f16(STD / 4.61)
    else:
        raise SystemExit(f"random {name} blocks are not written by this script")
    return b.reshape(-1)


def fill(src: Path, dest: Path, seed: int):
    with open(src, "rb") as f:
        if f.read(8) != MAGIC:
            raise SystemExit(f"{src}: not a layout written by `random_gguf.py layout`")
        meta_len, header_len = struct.unpack("<QQ", f.read(16))
        meta = json.loads(f.read(meta_len))
        header = f.read(header_len)
        small = f.read()
    data_start = meta["data_start"]
    tmp = dest.with_name(dest.name + ".partial")
    with open(tmp, "wb") as o:
        o.write(header)
        o.truncate(meta["total"])
        for t in meta["tensors"]:
            o.seek(data_start + t["offset"])
            if t["small_at"] is not None:
                o.write(small[t["small_at"]:t["small_at"] + t["nbytes"]])
                continue
            _, bb, _ = TYPES[t["type"]]
            n_blocks = t["nbytes"] // bb
            name_seed = int.from_bytes(hashlib.sha256(t["name"].encode()).digest()[:8], "little")
            rng = np.random.default_rng([seed, name_seed])
            step = max(1, (64 << 20) // bb)
            for at in range(0, n_blocks, step):
                o.write(random_blocks(t["type"], min(step, n_blocks - at), rng).tobytes())
    tmp.replace(dest)
    print(f"{dest}: {meta['total'] / 1e9:.2f} GB of random weights in the layout of {meta['source']}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("layout", help="header and small tensors of a GGUF file")
    a.add_argument("src", type=Path)
    a.add_argument("out", type=Path)
    b = sub.add_parser("fill", help="a GGUF file of that layout with random weights")
    b.add_argument("layout", type=Path)
    b.add_argument("dest", type=Path)
    b.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    if args.cmd == "layout":
        layout(args.src, args.out)
    else:
        fill(args.layout, args.dest, args.seed)


if __name__ == "__main__":
    sys.exit(main())
