#!/usr/bin/env bash
# Builds llama.cpp's own `llama-bench` and `llama-quantize` (not on PyPI) from the llama.cpp source vendored in the
# llama-cpp-python sdist, the same llama.cpp version as the reference venv's, for
# scripts/bench/compare_llamacpp.py --llama-bench. About 6 minutes on 2 cores, once.
#
#   bash scripts/bench/build_llama_bench.sh            # prints the path of llama-bench
#   LLAMA_BENCH_ISA=avx2 bash scripts/bench/build_llama_bench.sh   # AVX2/FMA/F16C only (laptops
#                                                      # without AVX-512), in build-avx2/
#   LLAMA_BENCH_ISA=avx2-vnni ...                      # the same with AVX-VNNI, in build-avx2vnni/
#
# llama-quantize lands beside it (scripts/bench/make_llama_models.py uses it), and so do the
# shared libraries libllama/libggml.
#
# Kernels are chosen explicitly instead of GGML_NATIVE: on these VMs the CPU reports AMX but the
# hypervisor does not enable it, and a native build dies with "Illegal instruction" (tilezero).
# The flags match what llama-cpp-python's build reports here (AVX512, VNNI, BF16, OpenMP).
set -euo pipefail
VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/freeze-attn/llama-bench-$VERSION"
ISA="${LLAMA_BENCH_ISA:-avx512}"
case "$ISA" in
    avx512) BUILD=build
        KERNELS=(-DGGML_AVX_VNNI=ON -DGGML_AVX512=ON -DGGML_AVX512_VBMI=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON) ;;
    avx2) BUILD=build-avx2
        KERNELS=(-DGGML_AVX_VNNI=OFF -DGGML_AVX512=OFF) ;;
    avx2-vnni) BUILD=build-avx2vnni
        KERNELS=(-DGGML_AVX_VNNI=ON -DGGML_AVX512=OFF) ;;
    *) echo "LLAMA_BENCH_ISA must be avx512, avx2 or avx2-vnni, not $ISA" >&2; exit 2 ;;
esac
BIN="$CACHE/$BUILD/bin/llama-bench"
if [[ -x "$BIN" && -x "$CACHE/$BUILD/bin/llama-quantize" ]]; then
    echo "$BIN"
    exit 0
fi
PY="${PYTHON:-/opt/refvenv/bin/python}"
mkdir -p "$CACHE"
cd "$CACHE"
# cmake first: pip prepares the sdist's metadata below with scikit-build-core, which needs it.
"$PY" -m pip install --quiet cmake ninja >&2
PATH="$(dirname "$PY"):$PATH"
if [[ ! -d src ]]; then
    # pip prepares an sdist's metadata before saving it: with the build backend installed
    # here and no build isolation that is quick and needs nothing else from the network.
    "$PY" -m pip install --quiet scikit-build-core >&2
    "$PY" -m pip download --quiet --no-deps --no-binary :all: --no-build-isolation \
        "llama-cpp-python==$VERSION" -d sdist >&2
    mv sdist/llama_cpp_python-"$VERSION".tar.gz sdist.tar.gz && rmdir sdist
    tar -xzf sdist.tar.gz
    mv llama_cpp_python-"$VERSION"/vendor/llama.cpp src
    rm -rf llama_cpp_python-"$VERSION" sdist.tar.gz
fi
cmake -S src -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
    -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON "${KERNELS[@]}" >&2
ninja -C "$BUILD" llama-bench llama-quantize >&2
echo "$BIN"
