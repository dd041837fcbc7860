#!/usr/bin/env bash
# The headline sweep on one NVIDIA GPU: benchmarks/gpu.sh OUTDIR [--quick]
# Writes OUTDIR/results.json and OUTDIR/RESULTS.md within 8 minutes (sections that would
# start after 6 are skipped and listed; the sweep is stopped at 7.5). Needs jax (CUDA), flax, optax, orbax-checkpoint,
# torch and ml_collections (the library's configs); not tensorflow or librosa (synthetic
# inputs). Missing pure-Python wheels can be carried in $JAXMUSIC_WHEELS (a folder).
set -euo pipefail
if [ $# -lt 1 ]; then
  echo "usage: benchmarks/gpu.sh OUTDIR [--quick]" >&2
  exit 2
fi
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
if ! "$PY" -c "import ml_collections" 2>/dev/null && [ -n "${JAXMUSIC_WHEELS:-}" ]; then
  "$PY" -m pip install --quiet --no-index --find-links "$JAXMUSIC_WHEELS" ml_collections
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
# XLA on GPU: take memory as needed (PyTorch shares the device in the same process)
export XLA_PYTHON_CLIENT_PREALLOCATE="${XLA_PYTHON_CLIENT_PREALLOCATE:-false}"
export TF_CPP_MIN_LOG_LEVEL=2
status=0
# 450 s for the sweep; if it is cut short, the points it saved are still reported
timeout 450 "$PY" -m benchmarks.gpu "$@" || status=$?
if [ "$status" -ne 0 ] && [ -f "$1/results.json" ]; then
  "$PY" -m benchmarks.run --report-only --out "$1" || true
fi
exit "$status"
