#!/usr/bin/env bash
# jaxcnn vs PyTorch on one GPU, one command, under 8 minutes: N1 (f32/bf16, batch 32/128/1024),
# time to 99.0%, the bandwidth/matmul ceiling, mnist_fast, cifar10_fast, VGG16 at batch 64, and
# PyTorch on the same nets. Each part runs in its own process with its own time limit; the JSON
# is rewritten after every part, so a run that is cut off keeps what it measured.
# Needs jax (GPU build), flax, optax; PyTorch optional (its parts are then recorded as skipped);
# no TensorFlow. Data: $JAXCNN_DATA_DIR (mnist/, cifar10-jpeg/), MNIST falls back to the bundled copy.
#
#   bash benchmarks/gpu.sh [--only n1_jaxcnn,ceiling] [--budget 450]  # JSON: $OUT/gpu_results.json
#   JAXCNN_GPU_BENCH_ALLOW_CPU=1 bash benchmarks/gpu.sh --smoke       # rehearse on a CPU, tiny sizes
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export XLA_PYTHON_CLIENT_PREALLOCATE=false   # PyTorch parts share the GPU
OUT_FILE="${GPU_BENCH_OUT:-${OUT:-.}/gpu_results.json}"
# Fail fast when the CUDA plugin did not load: JAX would fall back to the CPU silently and overrun.
if [[ "${JAXCNN_GPU_BENCH_ALLOW_CPU:-0}" != 1 ]]; then
  "$PY" - <<'PY' || exit 3
import sys, jax
backend = jax.default_backend()
print("jax", jax.__version__, "devices:", jax.devices(), file=sys.stderr)
if backend == "cpu":
    sys.exit("gpu.sh: JAX sees no GPU (backend 'cpu'): the CUDA plugin failed to load or no GPU is "
             "visible. Fix jax[cuda] first, or set JAXCNN_GPU_BENCH_ALLOW_CPU=1 to run on the CPU.")
PY
fi
# 450 s for the parts plus start-up; the outer limit is a last resort (the JSON is already written).
timeout 470 "$PY" benchmarks/gpu_bench.py --out "$OUT_FILE" "$@"
echo "results written to $OUT_FILE" >&2
