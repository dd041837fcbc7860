"""Input pipeline throughput: prepared TFRecords through tf.data vs the course helper's way.

    python -m benchmarks.input_pipeline --data data --prepared prepared --out benchmarks/input_pipeline.md

The course helper reads every ``.npy.gz`` (gunzip, ``np.load``, transpose), then pads
each clip to the longest in the set when a batch is drawn; jaxmusic streams shards
(decode raw bytes, standardise, pad) with prefetch, building a new tf.data pipeline
per epoch as training does when it streams, or (``data.cache``, the default "auto" when the split
fits in memory) decodes the split once into memory. Each measurement runs in its own process, so that its
peak memory (``ru_maxrss``) is its own: the table gives the growth over the
process's resident size after its imports. Figures: clips/s over ``--epochs``
passes of the training split (median pass; the course helper loads everything in
its first pass, which is counted), and how many times the fastest JAX model of
``benchmarks/results.json`` on the same input shape (train step) the pipeline feeds.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
INPUT_OF_SET = {"fma_genre_spectrograms": "full_mel", "fma_genre_spectrograms_beat": "beat_mel"}


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def course_style(set_dir: Path, batch: int, view: str, epochs: int) -> list[float]:
    from jaxmusic.data import lab

    rates = []
    t0 = time.perf_counter()
    clips = [r.view(view) for r in lab.iter_records(set_dir, "train")]  # loads everything, once
    max_len = max(len(c) for c in clips)
    for epoch in range(epochs):
        n = 0
        order = np.random.default_rng(epoch).permutation(len(clips))
        for i in range(0, len(order) - batch + 1, batch):
            out = np.zeros((batch, max_len, clips[0].shape[1]), np.float32)
            for j, k in enumerate(order[i:i + batch]):
                out[j, : len(clips[k])] = clips[k]
            n += batch
        rates.append(n / (time.perf_counter() - t0))
        t0 = time.perf_counter()
    return rates


def jaxmusic_style(prepared: Path, batch: int, view: str, epochs: int, cache: bool = False) -> list[float]:
    from jaxmusic.data.pipeline import PipelineConfig, PreparedSet, train_batches

    pset = PreparedSet.open(prepared)
    mean, std = pset.train_statistics(view)
    cfg = PipelineConfig(batch_size=batch, max_length=pset.max_length(), view=view, cache=cache,
                         mean=mean, std=std)
    rates = []
    for epoch in range(epochs):
        t0 = time.perf_counter()
        n = sum(len(b["lengths"]) for b in train_batches(pset, "train", cfg, epoch=epoch))
        rates.append(n / (time.perf_counter() - t0))
    return rates


def _one(args) -> None:
    """Child process: one side, one set, one batch size; prints a JSON line."""
    if args.one.startswith("jaxmusic"):
        import tensorflow  # noqa: F401  (start-up is not the pipeline's cost)

        import jaxmusic.data.pipeline  # noqa: F401
    else:
        import jaxmusic.data.lab  # noqa: F401
    base = _rss_mb()
    if args.one.startswith("jaxmusic"):
        rates = jaxmusic_style(Path(args.prepared) / args.set, args.batch, "mel", args.epochs,
                               cache=args.one == "jaxmusic-cache")
    else:
        rates = course_style(Path(args.data) / args.set, args.batch, "mel", args.epochs)
    print(json.dumps({"rates": rates, "rss_growth_mb": _rss_mb() - base}))


def _measure(args, side: str, set_name: str, batch: int) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.input_pipeline", "--one", side, "--set", set_name,
           "--batch", str(batch), "--epochs", str(args.epochs), "--data", args.data, "--prepared", args.prepared]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=HERE.parent)
    return json.loads(out.stdout.strip().splitlines()[-1])


def fastest_model(results: Path, inp: str) -> tuple[float, str] | None:
    """Highest JAX train samples/s of results.json on input ``inp`` (any model, batch, variant)."""
    if not results.exists():
        return None
    recs = [r for r in json.loads(results.read_text()).get("records", [])
            if r.get("status") == "ok" and r.get("framework") == "jax" and r.get("input") == inp
            and r.get("train_samples_per_s")]
    if not recs:
        return None
    best = max(recs, key=lambda r: r["train_samples_per_s"])
    return best["train_samples_per_s"], f"{best['model']} B={best['batch_size']} {best['variant']}"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="data")
    p.add_argument("--prepared", default="prepared")
    p.add_argument("--sets", default=",".join(INPUT_OF_SET))
    p.add_argument("--batch-sizes", default="32,256")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--results", default=str(HERE / "results.json"), help="model throughput to compare with")
    p.add_argument("--out", default="benchmarks/input_pipeline.md")
    p.add_argument("--one", choices=("jaxmusic", "jaxmusic-cache", "course"), help=argparse.SUPPRESS)
    p.add_argument("--set", help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        _one(args)
        return
    from jaxmusic.data.pipeline import PreparedSet

    rows = []
    for name in args.sets.split(","):
        pset = PreparedSet.open(Path(args.prepared) / name)
        model = fastest_model(Path(args.results), INPUT_OF_SET.get(name, ""))
        for bs in [int(b) for b in args.batch_sizes.split(",")]:
            if pset.count("train") < bs:
                continue
            jx, jc, co = (_measure(args, side, name, bs) for side in ("jaxmusic", "jaxmusic-cache", "course"))
            j_rate, k_rate, c_rate = (statistics.median(m["rates"]) for m in (jx, jc, co))
            feeds = (f"{j_rate / model[0]:.0f}x / {k_rate / model[0]:.0f}x ({model[1]}: {model[0]:.0f}/s)"
                     if model else "-")
            rows.append(f"| {name} | {pset.count('train')} | {bs} | {j_rate:.0f} | {k_rate:.0f} | {c_rate:.0f} | "
                        f"{j_rate / c_rate:.1f}x / {k_rate / c_rate:.1f}x | {feeds} | {jx['rss_growth_mb']:.0f} | "
                        f"{jc['rss_growth_mb']:.0f} | {co['rss_growth_mb']:.0f} |")
            print(rows[-1], flush=True)
    command = "python -m benchmarks.input_pipeline " + " ".join(argv if argv is not None else sys.argv[1:])
    text = ["# Input pipeline: tf.data over TFRecords vs the course helper's loading", "",
            f"Generated {time.strftime('%Y-%m-%d %H:%M')} by `{command}` (mel view; 2 CPU cores).", "",
            "| set | train clips | batch | streaming clips/s | cache clips/s | course-style clips/s | "
            "streaming / cache vs course | streaming / cache feed the fastest JAX model | streaming peak RSS "
            "growth MB | cache | course-style |",
            "|---|---:|---:|---:|---:|---:|---|---|---:|---:|---:|", *rows, "",
            f"clips/s: median over {args.epochs} passes of the training split, each side in its own process "
            "(the course helper's first pass includes loading every file; jaxmusic streaming builds a new "
            "tf.data pipeline every pass, as training does with `data.cache=false` or a split too big for "
            "memory; cache (`data.cache=true`, and \"auto\" when the split fits) decodes the split into "
            "memory in its first pass and then indexes a seeded permutation). Peak RSS growth: `ru_maxrss` after the pass minus "
            "after the imports. 'Feeds the fastest JAX model': jaxmusic clips/s over the highest JAX train "
            "samples/s on the same input shape in benchmarks/results.json (the goal: at least 10x)."]
    Path(args.out).write_text("\n".join(text) + "\n")


if __name__ == "__main__":
    main()
