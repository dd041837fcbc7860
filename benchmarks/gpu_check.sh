#!/usr/bin/env bash
# The model tests that matter on an accelerator, with JAX on the GPU:
#   benchmarks/gpu_check.sh [pytest arguments, e.g. -k lstm]
# tests/test_models.py (LSTM against numpy, PyTorch and finite differences, its auto choice,
# the CNN's tap-wise weight gradient, AST's attention paths, padding invariance, gradients to
# every parameter) and tests/test_flops.py (the model FLOP counts; their XLA reference is
# compiled for the CPU device whatever the default backend). Runs without tensorflow,
# librosa, soundfile or ml_collections: tests/conftest.py (librosa's kernels, the lab's data
# writers) is not loaded (--noconftest), and neither file needs it.
# The references are float32/float64 at tolerances down to 1e-5, so JAX's float32 products
# run in full float32 here (JAX_DEFAULT_MATMUL_PRECISION=highest; the GPU default is TF32);
# set it to another value to see what TF32 does to them.
# Refuses to run without a GPU unless GPU_CHECK_ALLOW_CPU=1 (the CPU smoke test of this script).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export XLA_PYTHON_CLIENT_PREALLOCATE="${XLA_PYTHON_CLIENT_PREALLOCATE:-false}"
export JAX_DEFAULT_MATMUL_PRECISION="${JAX_DEFAULT_MATMUL_PRECISION:-highest}"
export TF_CPP_MIN_LOG_LEVEL=2
backend=$("$PY" -c "import jax; print(jax.default_backend(), *jax.devices())")
echo "JAX backend: $backend; float32 products: $JAX_DEFAULT_MATMUL_PRECISION"
if [ "${backend%% *}" != "gpu" ] && [ "${GPU_CHECK_ALLOW_CPU:-0}" != "1" ]; then
  echo "benchmarks/gpu_check.sh: JAX has no GPU here (backend ${backend%% *}); GPU_CHECK_ALLOW_CPU=1 runs it anyway" >&2
  exit 2
fi
exec "$PY" -m pytest -q -p no:cacheprovider -p no:xdist --noconftest tests/test_models.py tests/test_flops.py "$@"
