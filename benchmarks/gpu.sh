#!/usr/bin/env bash
# N1 on MNIST on one GPU, one command: jaxcnn device road (bf16/f32, batch 128 and 1024), time to
# 99.0% test accuracy, a plain per-step Flax loop and PyTorch (data on the GPU), with the measured
# bandwidth ceiling. Needs jax (GPU build), flax, optax; PyTorch optional; no TensorFlow.
# MNIST: $JAXCNN_DATA_DIR/mnist if set, else the IDX files bundled in jaxcnn/_datasets/mnist.
#
#   bash benchmarks/gpu.sh [--epochs 5] [--skip pytorch_compile]    # JSON on stdout, also gpu_results.json
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export XLA_PYTHON_CLIENT_PREALLOCATE=false   # PyTorch runs in the same process
OUT="${OUT:-.}/gpu_results.json"
"$PY" -c "import jax; print('devices:', jax.devices())" >&2
"$PY" benchmarks/gpu_bench.py --out "$OUT" "$@"
echo "results written to $OUT" >&2
