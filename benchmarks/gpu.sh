#!/usr/bin/env bash
# The accelerator sweep on one NVIDIA GPU: benchmarks/gpu.sh OUTDIR [--quick]
# Writes OUTDIR/results.json, OUTDIR/RESULTS.md (goals table) and the samples/s-against-batch
# plots (OUTDIR/train_throughput.png, infer_throughput.png) within 8 minutes: each section has
# a time slice, the budget arithmetic is in benchmarks/gpu.py's docstring; the sweep is
# stopped at 470 s whatever happens and the report written from the points saved.
# Needs jax (CUDA), flax, optax, orbax-checkpoint, torch, numpy, matplotlib and ml_collections
# (the library's configs); not tensorflow, librosa or soundfile (synthetic inputs).
# ml_collections is not on the device machine: carry its wheel (/work/.library/device/README.md).
# Once, here, in the repository root:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_17_x86_64 -d .whl ml_collections==1.1.0
# then the device run names .whl in carry and runs:
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
#     --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit; benchmarks/gpu.sh "$OUT/gpu"
# (or JAXMUSIC_WHEELS=.whl benchmarks/gpu.sh "$OUT/gpu": the script installs from that folder)
set -euo pipefail
if [ $# -lt 1 ]; then
  echo "usage: benchmarks/gpu.sh OUTDIR [--quick]" >&2
  exit 2
fi
cd "$(dirname "$0")/.."
. benchmarks/device_env.sh
need_wheels ml_collections:ml-collections
# XLA on GPU: take memory as needed (PyTorch shares the device in the same process)
export XLA_PYTHON_CLIENT_PREALLOCATE="${XLA_PYTHON_CLIENT_PREALLOCATE:-false}"
status=0
# 470 s for the sweep; if it is cut short, the points it saved are still reported
timeout 470 "$PY" -m benchmarks.gpu "$@" || status=$?
if [ "$status" -ne 0 ] && [ -f "$1/results.json" ]; then
  "$PY" -m benchmarks.run --report-only --out "$1" || true
fi
exit "$status"
