"""Input pipeline throughput: prepared TFRecords through tf.data vs the course helper's way.

    python -m benchmarks.input_pipeline --data data --prepared prepared --out benchmarks/input_pipeline.md

The course helper reads every ``.npy.gz`` (gunzip, ``np.load``, transpose), then pads
each clip to the longest in the set when a batch is drawn; jaxmusic streams shards
(decode raw bytes, standardise, pad) with prefetch. Each figure: clips/s over one
pass of the training split at the given batch size, and the peak RSS growth.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np

from jaxmusic.data import lab
from jaxmusic.data.pipeline import PipelineConfig, PreparedSet, train_batches


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def course_style(set_dir: Path, batch: int, view: str) -> tuple[float, int]:
    t0 = time.perf_counter()
    clips = [r.view(view) for r in lab.iter_records(set_dir, "train")]  # loads everything
    max_len = max(len(c) for c in clips)
    n = 0
    order = np.random.default_rng(0).permutation(len(clips))
    for i in range(0, len(order) - batch + 1, batch):
        out = np.zeros((batch, max_len, clips[0].shape[1]), np.float32)
        for j, k in enumerate(order[i:i + batch]):
            out[j, : len(clips[k])] = clips[k]
        n += batch
    return n / (time.perf_counter() - t0), n


def jaxmusic_style(pset: PreparedSet, batch: int, view: str) -> tuple[float, int]:
    cfg = PipelineConfig(batch_size=batch, max_length=pset.max_length(), view=view)
    t0 = time.perf_counter()
    n = sum(len(b["lengths"]) for b in train_batches(pset, "train", cfg))
    return n / (time.perf_counter() - t0), n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="data")
    p.add_argument("--prepared", default="prepared")
    p.add_argument("--batch-sizes", default="32,256")
    p.add_argument("--out", default="benchmarks/input_pipeline.md")
    args = p.parse_args()
    rows = []
    # Warm-up: TensorFlow start-up and the page cache, for both sides, untimed.
    for name in ("fma_genre_spectrograms", "fma_genre_spectrograms_beat"):
        jaxmusic_style(PreparedSet.open(Path(args.prepared) / name), 32, "mel")
        course_style(Path(args.data) / name, 32, "mel")
    for name in ("fma_genre_spectrograms", "fma_genre_spectrograms_beat"):
        pset = PreparedSet.open(Path(args.prepared) / name)
        for bs in [int(b) for b in args.batch_sizes.split(",")]:
            if pset.count("train") < bs:
                continue
            before = _rss_mb()
            jx, _ = jaxmusic_style(pset, bs, "mel")
            mid = _rss_mb()
            co, _ = course_style(Path(args.data) / name, bs, "mel")
            after = _rss_mb()
            rows.append(f"| {name} | {bs} | {jx:.0f} | {co:.0f} | {jx / co:.1f}x | "
                        f"{mid - before:.0f} | {after - mid:.0f} |")
            print(rows[-1], flush=True)
    text = ["# Input pipeline: tf.data over TFRecords vs the course helper's loading", "",
            "Command: `python -m benchmarks.input_pipeline --data data --prepared prepared`",
            "(the `small` sample data; mel view; 2 CPU cores, shared with other jobs).", "",
            "| set | batch | jaxmusic clips/s | course-style clips/s | ratio | jaxmusic peak RSS "
            "growth MB | course-style peak RSS growth MB |",
            "|---|---:|---:|---:|---:|---:|---:|", *rows, "",
            "Both sides were warmed up once (TensorFlow start-up, page cache). Peak RSS "
            "(`ru_maxrss`) only grows, so the memory columns are not a fair comparison after "
            "the warm-up; a per-process measurement is still to do."]
    Path(args.out).write_text("\n".join(text) + "\n")


if __name__ == "__main__":
    main()
