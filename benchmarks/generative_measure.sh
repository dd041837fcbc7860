#!/bin/sh
# Generative augmentation on the `small` sample data: the demo CNN (configs/demo/cnn_beat_mel.py)
# with and without generated training clips, 3 seeds each. Run from the repository root.
set -e
W=${W:-/tmp/gen}
PY=.venv/bin/python
$PY -m jaxmusic sample-data $W/data --size small --quiet --workers 1
$PY -m jaxmusic prepare --source $W/data --set fma_genre_spectrograms_beat --out $W/prepared --shards 4 --quiet
$PY -m jaxmusic generate train --prepared $W/prepared --set fma_genre_spectrograms_beat --workdir $W/generator \
    --crop 48 --steps 2000 --channels 64,64,64 --learning-rate 1e-3
train() {  # train PREPARED_ROOT WORKDIR SEED
  $PY -m jaxmusic train --config configs/demo/cnn_beat_mel.py --workdir $2 --config.data.prepared=$1 \
      --config.train.seed=$3 "--config.data.eval_sets=('fma_genre_spectrograms_beat',)" --quiet
}
for s in 0 1 2; do
  train $W/prepared $W/runs/base_s$s $s
  for r in ${RATIOS:-0.5 1.0}; do
    $PY -m jaxmusic generate sample --workdir $W/generator --ratio $r --out $W/aug_r${r}_s$s --seed $s
    train $W/aug_r${r}_s$s $W/runs/aug_r${r}_s$s $s
  done
done
