#!/usr/bin/env bash
# The CPU sweep behind benchmarks/RESULTS.md, on one machine in one session:
#   benchmarks/cpu_sweep.sh OUTDIR DATA PREPARED
# DATA / PREPARED: `jaxmusic sample-data DATA --size small` and
# `jaxmusic prepare --source DATA --set fma_genre_spectrograms --set fma_genre_spectrograms_beat
#  --out PREPARED --shards 4` (the end-to-end epochs read them). About 45 minutes on 2 cores.
# Every point of the goals table (benchmarks/report.py) is measured; each line appends to
# OUTDIR/results.json and rewrites OUTDIR/RESULTS.md, so a sweep cut short keeps what it did.
set -euo pipefail
if [ $# -lt 3 ]; then
  echo "usage: benchmarks/cpu_sweep.sh OUTDIR DATA PREPARED" >&2
  exit 2
fi
out=$1 data=$2 prepared=$3
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
bench() { "$PY" -m benchmarks.run --append --out "$out" "$@"; }

# Beat-synchronised, one device: the train loop's own rate next to each JAX point (--train-loop),
# steps per dispatch for the small models, the AST at B=8 on both numeric paths.
bench --models lstm,cnn --inputs beat_mel --batch-sizes 32 --jax-variants 'jit,jit[spd=8]' \
  --torch-variants eager --steps 5 --budget-s 120 --train-loop
bench --models ast_tiny,ast_small --inputs beat_mel --batch-sizes 8 --jax-variants jit,jit_bf16 \
  --torch-variants eager,eager_bf16 --steps 5 --budget-s 240 --train-loop
# One XLA device per core (the data-parallel variants) where batches are larger.
bench --host-devices 2 --models ast_tiny,ast_small --inputs beat_mel --batch-sizes 32 \
  --jax-variants jit,jit_bf16,jit_dp,jit_bf16_dp --torch-variants eager,eager_bf16 --steps 5 --budget-s 300
bench --host-devices 2 --models cnn --inputs full_mel --batch-sizes 32 --jax-variants jit,jit_dp,jit_bf16_dp \
  --torch-variants eager --steps 5 --budget-s 300
bench --host-devices 2 --models ast_tiny,ast_small --inputs full_mel --batch-sizes 8 \
  --jax-variants jit,jit_bf16,jit_dp,jit_bf16_dp --torch-variants eager --steps 3 --budget-s 900
# The LSTM at full resolution, against the padded and the course's packed PyTorch LSTM.
bench --models lstm --inputs full_mel --batch-sizes 32 --jax-variants jit --torch-variants eager,packed \
  --steps 3 --budget-s 900
# End to end: the train loop's input + step against the course helper's DataLoader + PyTorch eager,
# epochs interleaved (full resolution on both cores; beat-synchronised with 8 steps per dispatch).
bench --host-devices 2 --models cnn --inputs full_mel --batch-sizes '' --epoch --epoch-source "$data" \
  --epoch-prepared "$prepared" --epochs 3
bench --models cnn --inputs beat_mel --batch-sizes '' --epoch --epoch-source "$data" --epoch-prepared "$prepared" \
  --epoch-set fma_genre_spectrograms_beat --epochs 4 --epoch-steps-per-dispatch 8
