"""Emotion-style classification from scratch vs a pretrained musicnn backbone, frozen or whole.

    python -m benchmarks.musicnn_transfer [--out runs/musicnn_transfer] [--seeds 0,1,2]
        [--per-class 12] [--epochs 6] [--init-from musicnn:MSD_musicnn]

The audio collection is synthetic, made with the test fixtures (tests/audio_fixtures.py):
three "arousal" classes of 3 s clips at 22050 Hz, each clip a chord (one of five, random
level) over a click track whose tempo and strength rise with the class, with overlapping
ranges, plus noise and a random overall gain (so loudness alone does not give the class):

    calm      chord, clicks  60-100 BPM, strength 0.05-0.3, no added noise
    moderate  chord, clicks  90-130 BPM, strength 0.2-0.6,  noise 0-0.02
    excited   chord, clicks 120-170 BPM, strength 0.4-0.9,  noise 0.01-0.05

It goes through the real pipeline: `features --recipe musicnn --layout clip-table` (one
group per clip; 25% test), `prepare --view musicnn` (25% of train held out for
validation), then `jaxmusic transfer` (scratch / whole fine-tune / frozen head-only) over
the seeds, each variant scored by macro F1 on the test split. The table is written to
<out>/transfer/comparison.md; the machine beside it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from benchmarks import machine
from jaxmusic import experiments, features, pretrained
from jaxmusic.config import load_config
from jaxmusic.data import tfrecords
from tests import audio_fixtures as af

CLASSES = {   # tempo range (BPM), click strength range, noise range
    "calm": ((60, 100), (0.05, 0.3), (0.0, 0.0)),
    "moderate": ((90, 130), (0.2, 0.6), (0.0, 0.02)),
    "excited": ((120, 170), (0.4, 0.9), (0.01, 0.05)),
}
SECONDS = 3.0


def make_collection(root: Path, per_class: int, seed: int = 0) -> Path:
    """Write the clips and their clip table; returns the table."""
    rng = np.random.default_rng(seed)
    chords = sorted(af.CHORDS)
    rows = []
    for label, (tempo, strength, noise) in CLASSES.items():
        for k in range(per_class):
            y = (af.chord(chords[rng.integers(len(chords))], SECONDS, amp=rng.uniform(0.05, 0.2))
                 + af.click_track(rng.uniform(*tempo), SECONDS, start=rng.uniform(0.0, 0.4),
                                  amp=rng.uniform(*strength), seed=int(rng.integers(1 << 30)))
                 + af.noise(SECONDS, amp=rng.uniform(*noise), seed=int(rng.integers(1 << 30))))
            y = (y * rng.uniform(0.3, 1.0) / max(1e-6, np.abs(y).max())).astype(np.float32)
            name = f"{label}_{k:03d}.wav"
            af.write_audio(root / "audio" / name, y)
            rows.append((name, 0.0, SECONDS, label, f"{label}_{k:03d}"))
    return af.write_table(root / "clips.csv", ["file", "start", "end", "label", "group"], rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/musicnn_transfer")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--per-class", type=int, default=12)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--init-from", default="musicnn:MSD_musicnn")
    args = p.parse_args(argv)
    if not pretrained.available():
        raise SystemExit("needs the musicnn package: pip install --no-deps musicnn==0.1.0")
    out = Path(args.out)
    table = make_collection(out, args.per_class)
    features.convert(out / "audio", "clip-table", out / "data", "arousal", labels=table, progress=False,
                     test_fraction=0.25, seed=0, recipe_name="musicnn")
    tfrecords.prepare(out / "data", "arousal", out / "prepared",
                      tfrecords.PrepareOptions(shards=1, view="musicnn", validation_fraction=0.25, progress=False))
    cfg = load_config("configs/musicnn_transfer.py",
                      [f"--config.data.prepared={out / 'prepared'}", "--config.data.set=arousal",
                       f"--config.train.epochs={args.epochs}"])
    seeds = [int(s) for s in args.seeds.split(",")]
    result = experiments.transfer(cfg, args.init_from, out / "transfer", progress=False, seeds=seeds)
    (out / "transfer" / "machine.json").write_text(json.dumps(machine.describe(), indent=2) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
