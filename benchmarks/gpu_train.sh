#!/usr/bin/env bash
# `jaxmusic train` against its step on one NVIDIA GPU: benchmarks/gpu_train.sh OUTDIR [--quick]
# Writes OUTDIR/results.json and OUTDIR/RESULTS.md within 6 minutes (stopped at 340 s; the
# points it finished are reported). Needs jax (CUDA), flax, optax, orbax-checkpoint, protobuf,
# tqdm and the pure-Python wheels ml_collections, tensorboardX and google-crc32c (carried in
# $JAXMUSIC_WHEELS, a folder, where missing); not tensorflow, librosa or torch.
set -euo pipefail
if [ $# -lt 1 ]; then
  echo "usage: benchmarks/gpu_train.sh OUTDIR [--quick]" >&2
  exit 2
fi
cd "$(dirname "$0")/.."
. benchmarks/device_env.sh
need_wheels ml_collections:ml-collections tensorboardX:tensorboardx google_crc32c:google-crc32c
status=0
timeout 340 "$PY" -m benchmarks.gpu_train "$@" || status=$?
if [ "$status" -ne 0 ] && [ -f "$1/results.json" ]; then
  "$PY" -c "import json, sys; from benchmarks import gpu_train; from pathlib import Path; \
out = Path(sys.argv[1]); (out / 'RESULTS.md').write_text(gpu_train.report(json.loads((out / 'results.json').read_text()), sys.argv[2:]))" "$@" || true
fi
exit "$status"
