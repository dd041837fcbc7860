"""`jaxmusic train`'s own samples/s at a benchmark point (``python -m benchmarks.run --train-loop``).

For a JAX variant of a point, the real training loop (:func:`jaxmusic.train.train`) runs
with the very config the variant's step uses (:func:`benchmarks.variants.benchmark_config`:
model and model keywords, ``train.dtype``, batch size, seed, the lab's optimiser recipe;
``train.steps_per_dispatch`` for ``spd=K``) on a small synthetic set of the point's shape:
clips drawn as :meth:`benchmarks.variants.Workload.batch` draws them (lengths in the
input's range, the longest one T frames), written in the lab's layout
(:func:`jaxmusic.data.lab.save_features`) and converted by ``jaxmusic prepare``'s own
writer (:func:`jaxmusic.data.tfrecords.prepare`: shards, manifest; float16, fused view,
no validation split) into a temporary folder. ``steps`` steps per epoch (a multiple of
K), 2 epochs; the figure is the loop's own measurement of the second epoch
(``history.json``'s ``samples_per_s``: the epoch's steps x batch / its time, the input
pipeline, host transfers and the per-epoch metric fetch included; the first epoch compiles).
Without a validation split the loop evaluates nothing; its checkpoint save comes after the
epoch's clock stops (asynchronous: the first epoch's may overlap the second epoch).

The loop builds its mesh from every device of the process (``parallel.make_mesh``), so a
one-device variant (``jit``, ``jit_bf16``) is run when the process has one device and a
data-parallel one (``_dp``) when it has more; a variant with its own XLA options
(``xla_*``, ``xla=none``) cannot be reproduced by the loop (it uses the library's): both
are recorded as skipped, with the reason.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import variants

SET_NAME = "fma_genre_spectrograms"
DEFAULT_STEPS = 4
EPOCHS = 2
MEMORY_FRACTION = 0.25  # never write a set whose float32 features exceed this share of free memory


def steps_per_epoch(steps_per_dispatch: int, steps: int = DEFAULT_STEPS) -> int:
    """``steps`` rounded up to a multiple of K, so that every dispatch of the loop is a K-step one."""
    k = max(1, int(steps_per_dispatch))
    return k * math.ceil(max(1, steps) / k)


def _genre_of_class() -> list[str]:
    """For each of the lab's 10 classes (index order), a genre string that merges into it."""
    from jaxmusic.data import lab

    out = []
    for cls in lab.CLASSES:
        out.append(next(g for g, c in lab.GENRE_MERGE.items() if c == cls))
    return out


def write_set(workload: variants.Workload, clips: int, root: Path) -> Path:
    """A prepared genre set of ``clips`` training clips of the workload's shape under
    ``root/prepared`` (lab-layout source in ``root/source``); returns the prepared root."""
    from jaxmusic.data import lab, tfrecords

    genres = _genre_of_class()
    if workload.num_classes != len(genres):
        raise ValueError(f"the synthetic set has the lab's {len(genres)} classes, the workload "
                         f"{workload.num_classes}")
    drawn = dataclasses.replace(workload, batch_size=clips).batch()
    set_dir = Path(root) / "source" / SET_NAME
    rows = {"train": [], "test": []}
    pad = lab.N_FEATURES - workload.input.features
    if pad < 0:
        raise ValueError(f"F={workload.input.features} > the lab's {lab.N_FEATURES} feature rows")
    for i in range(clips):
        length = int(drawn["lengths"][i])
        feats = drawn["features"][i, :length]
        if pad:  # the mel view (F=128) of a fused file: chroma rows of zeros
            feats = np.concatenate([feats, np.zeros((length, pad), np.float32)], axis=1)
        name = lab.feature_file_name(f"tr{i:05d}")
        lab.save_features(set_dir / "train" / name, feats, compresslevel=1)
        rows["train"].append((name, genres[int(drawn["labels"][i])]))
        if i == 0:  # a set needs a test split: one clip
            lab.save_features(set_dir / "test" / lab.feature_file_name("te00000"), feats, compresslevel=1)
            rows["test"].append((lab.feature_file_name("te00000"), genres[0]))
    for split, r in rows.items():
        lab.write_genre_labels(set_dir / f"{split}_labels.txt", r)
    prepared = Path(root) / "prepared"
    tfrecords.prepare(set_dir.parent, SET_NAME, prepared,
                      tfrecords.PrepareOptions(shards=1, validation_fraction=0.0, progress=False))
    return prepared


def skip_reason(variant: str) -> str | None:
    """Why the train loop cannot run a JAX variant as the benchmark does, or None."""
    import jax

    base, _, options, _ = variants.parse_variant(variant.split("@")[0])
    if options:
        return "own XLA options (the train loop compiles with the library's)"
    devices = jax.device_count()
    if base.endswith("_dp") and devices == 1:
        return "data-parallel variant in a one-device process"
    if not base.endswith("_dp") and devices > 1:
        return f"one-device variant, but the train loop uses all {devices} devices"
    return None


def measure(workload: variants.Workload, variant: str, steps: int = DEFAULT_STEPS,
            keep_dir: str | Path | None = None, budget_s: float | None = None,
            step_s: float | None = None, prepared: str | Path | None = None) -> dict:
    """``train_loop_*`` fields for a JAX variant's record: the loop's samples/s of its second
    epoch and what it ran on. ``keep_dir``: keep the set and the run directory there (else a
    temporary folder, removed). ``budget_s`` with the variant's ``step_s``: skip when the loop's
    epochs alone would take longer. ``prepared``: a set :func:`write_set` wrote before, of the
    workload's input shape, to train on instead (its clips // batch steps per epoch)."""
    import jax

    from benchmarks import machine
    from jaxmusic.train import train

    base, model_args, _, spd = variants.parse_variant(variant.split("@")[0])
    why = skip_reason(variant)
    if why:
        return {"train_loop_skipped": why}
    n_steps = steps_per_epoch(spd, steps)
    if prepared is not None:
        from jaxmusic.data.pipeline import PreparedSet

        n_steps = PreparedSet.open(Path(prepared) / SET_NAME).count("train") // workload.batch_size
    clips = n_steps * workload.batch_size
    set_bytes = clips * workload.input.steps * workload.input.features * 4
    avail = machine.meminfo("MemAvailable")  # the set is decoded into host memory
    if avail and set_bytes > MEMORY_FRACTION * avail:
        return {"train_loop_skipped": f"memory: the set would hold {set_bytes / 2**20:,.0f} MB of features, "
                                      f"{avail / 2**20:,.0f} MB free"}
    if budget_s and step_s and EPOCHS * n_steps * step_s > budget_s:
        return {"train_loop_skipped": f"time budget: {EPOCHS} x {n_steps} steps of {step_s:.1f} s "
                                      f"> {budget_s:.0f} s"}
    root = Path(keep_dir) if keep_dir else Path(tempfile.mkdtemp(prefix="jaxmusic-train-loop-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        if prepared is None:
            prepared = write_set(workload, clips, root)
        write_s = time.perf_counter() - t0
        cfg = variants.benchmark_config(workload, "bfloat16" if base.startswith("jit_bf16") else "float32",
                                        model_args)
        cfg.data.prepared = str(prepared)
        cfg.data.set = SET_NAME
        cfg.data.view = "mel" if workload.input.features == 128 else "fused"
        cfg.train.epochs = EPOCHS
        cfg.train.patience = 0
        cfg.train.steps_per_dispatch = spd
        workdir = root / "run"
        if workdir.exists():
            shutil.rmtree(workdir)
        t0 = time.perf_counter()
        out = train(cfg, workdir, progress=False)
        run_s = time.perf_counter() - t0
        history = json.loads((workdir / "history.json").read_text())
        run = out["run"]
        if (run.max_length, run.num_features) != (workload.input.steps, workload.input.features):
            raise RuntimeError(f"the loop's input is {run.max_length}x{run.num_features}, the point's "
                               f"{workload.input.steps}x{workload.input.features}")
        last = history[-1]
        rec = {"train_loop_samples_per_s": float(last["samples_per_s"]),
               "train_loop_first_epoch_samples_per_s": float(history[0]["samples_per_s"]),
               "train_loop_epoch_s": [float(h["time_s"]) for h in history],
               "train_loop_steps": [int(h["step"]) for h in history],
               "train_loop_steps_per_epoch": n_steps, "train_loop_clips": clips,
               "train_loop_devices": jax.device_count(), "train_loop_steps_per_dispatch": spd,
               "train_loop_placement": run.record.get("trained_on", {}).get("placement_why"),
               "train_loop_write_s": write_s, "train_loop_run_s": run_s}
        if keep_dir:
            rec["train_loop_workdir"] = str(workdir)
        return rec
    finally:
        if not keep_dir:
            shutil.rmtree(root, ignore_errors=True)


def add_to(rec: dict, loop: dict) -> None:
    """Merge the loop's fields into a step record, with the loop / step rate ratio."""
    rec.update(loop)
    rate, step_rate = loop.get("train_loop_samples_per_s"), rec.get("train_samples_per_s")
    if rate and step_rate:
        rec["train_loop_over_step"] = rate / step_rate
