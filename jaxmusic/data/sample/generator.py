"""``generate()``: a whole generation, plan -> clips (over a process pool) -> label
files and ``answers/``."""

from __future__ import annotations

import concurrent.futures as cf
import os
import sys
import time
from pathlib import Path

from jaxmusic import workers as pools
from jaxmusic.data.sample import files
from jaxmusic.data.sample.planning import plan

# Imported once by the pool's forkserver: the workers it forks start with the tables
# built and librosa loaded.
PRELOAD = ("jaxmusic.data.sample.preload",)


def generate(out_dir: str | os.PathLike, size: str = "small", seed: int = 0,
             progress: bool = True, workers: int | None = None,
             overwrite: bool = False) -> dict:
    """Write the four lab sets under ``out_dir``; returns a summary.

    ``answers/`` (outside the sets) holds the hidden multitask test labels
    (``multitask_test_labels.txt``), every clip's generative parameters
    (``clips.csv``) and ``summary.json``. Same size and seed: byte-identical files,
    whatever the number of ``workers`` (default: up to 2 processes).
    """
    t0 = time.perf_counter()
    out = Path(out_dir)
    specs = plan(size, seed)
    files.prepare_out(out, overwrite)
    if workers is None:
        workers = max(1, min(2, os.cpu_count() or 1))
    jobs = [(int(seed), str(out), s, files.GZ_LEVEL[size]) for s in specs]
    targets, rows = _run_jobs(jobs, workers, progress, f"sample-data {size}")
    sets = files.write_labels(out, specs, targets)
    files.write_clips_csv(out, specs, rows)
    summary = files.write_summary(out, specs, size, seed, sets)
    return dict(summary, out=str(out), seconds=round(time.perf_counter() - t0, 2),
                workers=workers)


def _run_jobs(jobs: list, n_workers: int, progress: bool, desc: str) -> tuple[dict, dict]:
    """Every clip job, in-process or over ``n_workers`` processes (any order: each clip is
    seeded alone); returns ``(targets, clips.csv rows)`` keyed by ``(group, index)``."""
    targets: dict = {}
    rows: dict = {}
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(jobs), unit="clip", desc=desc, file=sys.stderr, dynamic_ncols=True)
    try:
        if n_workers <= 1:
            for result in map(files.make_clip, jobs):
                _keep(result, targets, rows, bar)
        else:
            with pools.process_pool(n_workers, PRELOAD) as pool:
                futures = [pool.submit(files.make_clip, j) for j in jobs]
                try:
                    for fut in cf.as_completed(futures):
                        _keep(fut.result(), targets, rows, bar)
                except cf.BrokenExecutor as e:
                    raise pools.worker_died("rendering sample clips") from e
                except BaseException:
                    for f in futures:     # do not finish the queue after an error / Ctrl-C
                        f.cancel()
                    raise
    finally:
        if bar is not None:
            bar.close()
    return targets, rows


def _keep(result: tuple, targets: dict, rows: dict, bar) -> None:
    group, index, clip_targets, row = result
    targets[(group, index)] = clip_targets
    rows[(group, index)] = row
    if bar is not None:
        bar.update(1)
