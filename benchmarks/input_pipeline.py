"""Input pipeline throughput: the prepared TFRecords through jaxmusic's readers vs the course helper's way.

    python -m benchmarks.input_pipeline --data data --prepared prepared --out benchmarks/input_pipeline.md

The course helper reads every ``.npy.gz`` (gunzip, ``np.load``, transpose), then pads
each clip to the longest in the set when a batch is drawn. jaxmusic (no TensorFlow):

* ``decode``: the split read and decoded into padded, standardised arrays on ONE core
  (``jaxmusic.data.pipeline.load_split``, ``workers=1``: framing and CRCs, Example parse,
  float16 -> float32, standardise, pad), what every run does once;
* ``host``: the host placement's epochs after that: numpy gathers each batch of the epoch
  order (``train_batches``);
* ``stream``: the stream placement (sets larger than memory): every clip of the epoch read
  on its own through Grain (``jaxmusic.data.stream``), ``--stream-threads`` threads.

(The device placement gathers inside the jitted step: no host work per batch.) Each
measurement runs in its own process, so that its peak memory (``ru_maxrss``) is its own:
the table gives the growth over the process's resident size after its imports. Figures:
clips/s over ``--epochs`` passes of the training split (median pass; the course helper
loads everything in its first pass, which is counted; ``decode`` is one pass by nature).
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


def jaxmusic_style(prepared: Path, batch: int, view: str, epochs: int, side: str,
                   stream_threads: int = 8) -> list[float]:
    from jaxmusic.data import pipeline, stream

    pset = pipeline.PreparedSet.open(prepared)
    mean, std = pset.train_statistics(view)
    cfg = pipeline.PipelineConfig(batch_size=batch, max_length=pset.max_length(), view=view,
                                  mean=mean, std=std, workers=1)
    t0 = time.perf_counter()
    local = pipeline.load_split(pset, "train", cfg)
    if side == "decode":
        return [pset.count("train") / (time.perf_counter() - t0)]
    source = stream.StreamSource(pset, "train", cfg, (0,), 1, threads=stream_threads) if side == "stream" else None
    steps = pset.train_steps("train", batch)
    rates = []
    for epoch in range(epochs):
        t0 = time.perf_counter()
        rows = list(pipeline.epoch_indices(local, batch, 0, epoch, steps))
        batches = source.batches(rows) if source else (pipeline.gather(local.arrays, r) for r in rows)
        n = sum(len(b["lengths"]) for b in batches)
        rates.append(n / (time.perf_counter() - t0))
    return rates


def _one(args) -> None:
    """Child process: one side, one set, one batch size; prints a JSON line."""
    if args.one == "course":
        import jaxmusic.data.lab  # noqa: F401
    else:
        import jaxmusic.data.stream  # noqa: F401  (start-up is not the pipeline's cost)
    base = _rss_mb()
    if args.one == "course":
        rates = course_style(Path(args.data) / args.set, args.batch, "mel", args.epochs)
    else:
        rates = jaxmusic_style(Path(args.prepared) / args.set, args.batch, "mel", args.epochs, args.one,
                               args.stream_threads)
    print(json.dumps({"rates": rates, "rss_growth_mb": _rss_mb() - base}))


SIDES = ("decode", "host", "stream", "course")


def _measure(args, side: str, set_name: str, batch: int) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.input_pipeline", "--one", side, "--set", set_name,
           "--batch", str(batch), "--epochs", str(args.epochs), "--data", args.data, "--prepared", args.prepared,
           "--stream-threads", str(args.stream_threads)]
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
    p.add_argument("--stream-threads", type=int, default=8)
    p.add_argument("--one", choices=SIDES, help=argparse.SUPPRESS)
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
            got = {side: _measure(args, side, name, bs) for side in SIDES}
            rate = {side: statistics.median(m["rates"]) for side, m in got.items()}
            feeds = (f"{rate['host'] / model[0]:.0f}x / {rate['stream'] / model[0]:.0f}x "
                     f"({model[1]}: {model[0]:.0f}/s)" if model else "-")
            rows.append(f"| {name} | {pset.count('train')} | {bs} | {rate['decode']:.0f} | {rate['host']:.0f} | "
                        f"{rate['stream']:.0f} | {rate['course']:.0f} | {rate['host'] / rate['course']:.1f}x | "
                        f"{feeds} | " + " | ".join(f"{got[s]['rss_growth_mb']:.0f}" for s in SIDES) + " |")
            print(rows[-1], flush=True)
    command = "python -m benchmarks.input_pipeline " + " ".join(argv if argv is not None else sys.argv[1:])
    from benchmarks.machine import cpu_model

    cpu = cpu_model()
    text = ["# Input pipeline: jaxmusic's TFRecord readers vs the course helper's loading", "",
            f"Generated {time.strftime('%Y-%m-%d %H:%M')} by `{command}` (mel view; {cpu}).", "",
            "| set | train clips | batch | decode clips/s (1 core) | host epoch clips/s | stream clips/s "
            f"({args.stream_threads} threads) | course-style clips/s | host vs course | host / stream feed the "
            "fastest JAX model | peak RSS growth MB: decode | host | stream | course |",
            "|---|---:|---:|---:|---:|---:|---:|---|---|---:|---:|---:|---:|", *rows, "",
            f"clips/s: median over {args.epochs} passes of the training split (decode: its one pass), each side in "
            "its own process (the course helper's first pass includes loading every file). decode: the split "
            "read, CRC-checked, parsed, standardised and padded on one core, once per run; host: the gathered "
            "batches of the epoch order once it is decoded; stream: every clip read on its own through Grain, as "
            "for a set larger than memory. Peak RSS growth: `ru_maxrss` after the passes minus after the "
            "imports. 'Feeds the fastest JAX model': clips/s over the highest JAX train samples/s on the same "
            "input shape in benchmarks/results.json."]
    Path(args.out).write_text("\n".join(text) + "\n")


if __name__ == "__main__":
    main()
