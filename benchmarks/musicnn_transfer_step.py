"""Seconds per train step of `jaxmusic transfer`'s three variants on the musicnn tagger.

    python -m benchmarks.musicnn_transfer_step [--batch-size 8] [--frames 1876] [--steps 2]
        [--variants scratch,finetune,frozen] [--init-from musicnn:MSD_musicnn] [--json out.json]

The step is `jaxmusic train`'s (``steps.compile_steps`` over ``configs/musicnn_transfer.py``:
musicnn architecture, AdamW, batch 8, class weights; ``--init-from`` and
``train.freeze_backbone`` as the transfer command sets them), on random log-mel inputs
of ``--frames`` frames (1876: a 30 s clip of `features --recipe musicnn`, 11 patches of
187 frames). Per variant: compile, one warm-up step, then the mean of ``--steps`` timed
steps; beside it the eval step (the forward pass of the same batch, what validation
runs) and their ratio. To compare two versions of the library in one session, run the
script twice with ``PYTHONPATH`` pointing at each checkout (it uses only what both have).
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import machine
from jaxmusic import parallel, runs, steps, tasks
from jaxmusic.config import load_config

CLASSES = ("calm", "moderate", "excited")
VARIANTS = {"scratch": {}, "finetune": {"init_from": True}, "frozen": {"init_from": True, "freeze_backbone": True}}


def variant_run(name: str, frames: int, batch_size: int, init_from: str) -> runs.Run:
    cfg = load_config("configs/musicnn_transfer.py", [])
    cfg = runs.match_source_run(cfg, init_from)
    cfg.train.batch_size = batch_size
    for key, value in VARIANTS[name].items():
        cfg.train[key] = init_from if key == "init_from" else value
    task = tasks.make_task(cfg, CLASSES, [4, 3, 2])
    record = {"task": cfg.task, "data_kind": "genre", "label_names": list(CLASSES), "class_counts": [4, 3, 2],
              "max_length": frames, "num_features": 96, "view": "musicnn", "normalize": False,
              "model": cfg.model.name}
    return runs.Run(cfg, record, task, runs.make_model(cfg, task, 96, frames))


def batch(batch_size: int, frames: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"features": jnp.asarray(rng.uniform(0, 3, (batch_size, frames, 96)), jnp.float32),
            "lengths": jnp.full((batch_size,), frames, jnp.int32), "mask": jnp.ones(batch_size, bool),
            "label": jnp.asarray(rng.integers(0, len(CLASSES), batch_size), jnp.int32)}


def _timed(fn, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        jax.block_until_ready(fn())
    return (time.perf_counter() - t0) / n


def measure(name: str, frames: int, batch_size: int, n_steps: int, init_from: str) -> dict:
    run = variant_run(name, frames, batch_size, init_from)
    mesh = parallel.make_mesh()
    state = steps.init_state(run, mesh, 10)
    train_step, eval_step = steps.compile_steps(run, mesh, freeze_backbone=bool(run.config.train.freeze_backbone))
    b = parallel.to_global({k: np.asarray(v) for k, v in batch(batch_size, frames).items()}, mesh)
    t0 = time.perf_counter()
    holder = {"state": train_step(state, b)[0]}   # compile + warm-up
    jax.block_until_ready(holder["state"])
    compile_s = time.perf_counter() - t0

    def one_step():
        holder["state"], metrics = train_step(holder["state"], b)
        return metrics

    step_s = _timed(one_step, n_steps)
    jax.block_until_ready(eval_step(holder["state"], b))
    forward_s = _timed(lambda: eval_step(holder["state"], b), n_steps)
    out = {"variant": name, "batch_size": batch_size, "frames": frames, "steps": n_steps,
           "compile_and_first_step_s": compile_s, "step_s": step_s, "forward_s": forward_s,
           "samples_per_s": batch_size / step_s, "step_over_forward": step_s / forward_s}
    print(json.dumps(out), flush=True)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--frames", type=int, default=1876)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--variants", default="scratch,finetune,frozen")
    p.add_argument("--init-from", default="musicnn:MSD_musicnn")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    rows = [measure(v, args.frames, args.batch_size, args.steps, args.init_from)
            for v in args.variants.split(",")]
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine.describe(), "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
