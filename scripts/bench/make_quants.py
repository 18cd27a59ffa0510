#!/usr/bin/env python3
"""Makes Q4_0, Q8_0 and Q4_K_M versions of the default model for speed comparisons.

The only copy of SmolLM2-135M-Instruct we fetch is the Q4_1 GGUF, so the other types are
requantized from it with llama.cpp's own quantizer (`llama_model_quantize`, allow_requantize):
the weights go Q4_1 -> f32 -> target type. That is fine for timing (the tensor types and shapes
are what llama.cpp itself would produce) but the files are slightly less accurate than ones
quantized from the f16 original, so they are for benchmarks only, never accuracy references.

The files are cached outside the repository, next to the default model:
    ~/.local/share/freeze-attn/models/SmolLM2-135M-Instruct.<TYPE>.gguf

Run with the reference venv that has llama-cpp-python:
    /opt/refvenv/bin/python scripts/bench/make_quants.py [--types Q4_0 Q8_0 Q4_K_M]
"""

import argparse
import os
import sys

import llama_cpp

MODELS = os.path.expanduser("~/.local/share/freeze-attn/models")
SOURCE = os.path.join(MODELS, "SmolLM2-135M-Instruct.Q4_1.gguf")
FTYPES = {
    "Q4_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0,
    "Q4_1": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_1,
    "Q5_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q5_0,
    "Q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0,
    "Q4_K_M": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M,
}


def path_for(qtype: str) -> str:
    return os.path.join(MODELS, f"SmolLM2-135M-Instruct.{qtype}.gguf")


def make(qtype: str, source: str = SOURCE, force: bool = False) -> str:
    out = path_for(qtype)
    if qtype == "Q4_1" and os.path.abspath(out) == os.path.abspath(source):
        return out
    if os.path.exists(out) and not force:
        return out
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = FTYPES[qtype]
    params.allow_requantize = True
    params.nthread = 2
    tmp = out + ".tmp"
    rc = llama_cpp.llama_model_quantize(source.encode(), tmp.encode(), params)
    if rc != 0:
        raise RuntimeError(f"llama_model_quantize({qtype}) failed with {rc}")
    os.replace(tmp, out)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--types", nargs="+", default=["Q4_0", "Q8_0", "Q4_K_M"], choices=sorted(FTYPES))
    ap.add_argument("--source", default=SOURCE)
    ap.add_argument("--force", action="store_true", help="remake files that already exist")
    args = ap.parse_args()
    llama_cpp.llama_backend_init()
    for t in args.types:
        print(make(t, args.source, args.force))
    return 0


if __name__ == "__main__":
    sys.exit(main())
