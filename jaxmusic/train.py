"""`jaxmusic train`: the training loop, top to bottom.

setup -> mesh -> input -> model -> shard -> update -> checkpoint -> evaluate -> loop.

What a step is lives in :mod:`jaxmusic.steps`, what a run directory holds in
:mod:`jaxmusic.runs` (``config.json``, ``run.json``) and :mod:`jaxmusic.checkpoint`
(``checkpoints/``: the latest N and the best by the validation metric); this
module only drives them. It also writes ``history.json`` (per-epoch curves),
``curves.png`` and ``tensorboard/`` event files.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Iterator

import jax
import numpy as np

from jaxmusic import checkpoint, parallel, runs, steps, tasks
from jaxmusic.config import read_config, save_config
from jaxmusic.data.pipeline import resolve_cache, train_batches
from jaxmusic.evaluate import evaluate_split
from jaxmusic.viz.curves import plot_history


# --- the loop -----------------------------------------------------------------------------

def train(config, workdir: str | Path, *, resume: bool = False, progress: bool = True) -> dict:
    workdir = Path(workdir)
    main = parallel.is_main_process()
    # setup
    if resume and (workdir / runs.CONFIG_FILE).exists():
        config = read_config(workdir / runs.CONFIG_FILE)
    mesh = parallel.make_mesh()
    run = runs.build_run(config)
    t = config.train
    # input: `readers` logical streams, each over its own shards, make up every
    # global batch; a process runs its share of them. The batches are the same
    # whatever the number of processes, so results do not depend on topology.
    micro_batch = t.batch_size // max(1, t.grad_accum_steps)
    parallel.local_batch_size(micro_batch)  # checks that it splits over the devices
    n_proc, p_idx = jax.process_count(), jax.process_index()
    readers = config.data.readers or n_proc
    if readers % n_proc or micro_batch % readers:
        raise ValueError(f"data.readers={readers} must be a multiple of the process count "
                         f"({n_proc}) and divide the batch ({micro_batch})")
    if config.data.bucket_boundaries and readers > 1:
        raise ValueError("data.bucket_boundaries needs a single input stream (one process, "
                         "data.readers=1): streams would bucket to different lengths")
    per_dispatch = max(1, int(t.steps_per_dispatch))
    if per_dispatch > 1 and config.data.bucket_boundaries:
        raise ValueError("train.steps_per_dispatch > 1 stacks batches of one shape: it does not "
                         "combine with data.bucket_boundaries")
    my_readers = range(p_idx * readers // n_proc, (p_idx + 1) * readers // n_proc)
    cache, cache_why = resolve_cache(config.data.get("cache", "auto"), run.pset, "train", config.data.view,
                                     run.max_length, share=len(my_readers) / readers,
                                     bucketed=bool(config.data.bucket_boundaries))
    pcfg = run.pipeline_config(micro_batch // readers, seed=t.seed, cache=cache,
                               shuffle_buffer=config.data.shuffle_buffer,
                               bucket_boundaries=tuple(config.data.bucket_boundaries))
    steps_per_epoch = run.pset.train_steps("train", pcfg.batch_size, readers)
    if t.overfit_batches:
        steps_per_epoch = min(steps_per_epoch, t.overfit_batches)

    def epoch_batches(epoch: int) -> Iterator[dict]:
        streams = [train_batches(run.pset, "train", pcfg, epoch=epoch, process_index=r,
                                 process_count=readers, steps=steps_per_epoch)
                   for r in my_readers]
        for parts in zip(*streams):
            yield parts[0] if len(parts) == 1 else {
                k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    # model + shard
    updates_per_epoch = steps_per_epoch // max(1, t.grad_accum_steps)
    state = steps.init_state(run, mesh, updates_per_epoch)
    _, schedule = steps.make_optimizer(config, updates_per_epoch)
    train_step, eval_step = steps.compile_steps(run, mesh, freeze_backbone=t.freeze_backbone)
    multi_step = None
    if per_dispatch > 1:
        multi_step, _ = steps.compile_steps(run, mesh, freeze_backbone=t.freeze_backbone,
                                            steps_per_dispatch=per_dispatch)
    # checkpoint
    ckpt = checkpoint.Checkpointer(workdir, keep=t.keep_checkpoints, mode=run.task.select_mode)
    if not resume and ckpt.latest_step() is not None:
        ckpt.close()
        raise FileExistsError(f"{workdir} already holds checkpoints of a run: pass --resume to "
                              "continue it, or choose another --workdir")
    run.record["trained_on"] = {"backend": jax.default_backend(), "devices": jax.device_count(),
                                "processes": jax.process_count(), "data_cache": cache_why}
    if main:
        save_config(config, workdir / runs.CONFIG_FILE)
        runs.write_record(workdir, run.record)
    meta = {"epoch": -1, "best_value": None, "best_epoch": None, "bad_epochs": 0, "history": []}
    if resume and ckpt.latest_step() is not None:
        state, meta = ckpt.restore(state)
        if main:
            print(f"resumed from step {int(state.step)} (epoch {meta['epoch'] + 1} done)")
    logger = Logger(workdir, enabled=main)
    has_val = run.pset.has_split("validation") and not t.overfit_batches
    overfit_cache = list(epoch_batches(0)) if t.overfit_batches else None

    def dispatches(batches) -> Iterator[tuple[int, dict, bool]]:
        """(batches in it, global batch, stacked?): K stacked batches per call where
        K = train.steps_per_dispatch, single ones for the rest of the epoch."""
        group = []
        for batch in batches:
            group.append(batch)
            if len(group) == per_dispatch:
                if per_dispatch == 1:
                    yield 1, parallel.to_global(group[0], mesh), False
                else:
                    stacked = {k: np.stack([b[k] for b in group]) for k in group[0]}
                    yield per_dispatch, parallel.to_global(stacked, mesh, stacked=True), True
                group = []
        for batch in group:
            yield 1, parallel.to_global(batch, mesh), False

    # loop
    for epoch in range(meta["epoch"] + 1, t.epochs):
        batches = iter(overfit_cache) if overfit_cache else epoch_batches(epoch)
        bar = _progress(steps_per_epoch, f"epoch {epoch + 1}/{t.epochs}", progress and main)
        pending, sums, count, done, since_log = [], {}, 0, 0, 0
        t0 = time.perf_counter()
        for n, batch, stacked in dispatches(batches):
            if stacked:
                state, metrics = multi_step(state, batch)
            else:
                state, metrics = train_step(state, batch)
            pending.append((n, metrics))
            done += n
            since_log += n
            if since_log >= t.log_every or done == steps_per_epoch:
                # One host round-trip per `log_every` steps.
                fetched = []
                for k, m in jax.device_get(pending):
                    fetched += [{name: v[i] for name, v in m.items()} for i in range(k)] if k > 1 else [m]
                pending, since_log = [], 0
                for m in fetched:
                    for name, v in m.items():
                        sums[name] = sums.get(name, 0.0) + float(v)
                    count += 1
                loss = float(fetched[-1]["loss"])
                if not math.isfinite(loss):
                    raise FloatingPointError(
                        f"loss is {loss} at step {int(state.step)} (epoch {epoch + 1}): "
                        "lower train.learning_rate, keep train.clip_norm, or check the data")
                step = int(state.step)
                rate = done * micro_batch / (time.perf_counter() - t0)
                logger.scalars(step, {**{f"train/{k}": v for k, v in fetched[-1].items()},
                                      "train/samples_per_s": rate,
                                      "train/learning_rate": steps.learning_rate_at(config, schedule, step - 1)})
                bar.set_postfix(loss=f"{loss:.4f}", samples_s=f"{rate:.0f}")
            bar.update(n)
        bar.close()
        epoch_time = time.perf_counter() - t0
        train_avg = {k: v / max(count, 1) for k, v in sums.items()}
        record = {"epoch": epoch + 1, "step": int(state.step), "time_s": epoch_time,
                  "samples_per_s": steps_per_epoch * micro_batch / epoch_time,
                  "learning_rate": steps.learning_rate_at(config, schedule, int(state.step) - 1),
                  "train": train_avg}
        if has_val:
            val = evaluate_split(run, state, eval_step, mesh, run.pset, "validation",
                                 max(t.batch_size, jax.device_count()))
            value = tasks.selection_value(run.task, val)
            record["validation"] = _scalars(val)
        else:  # overfit mode: select on the training loss
            value = -train_avg["loss"] if run.task.select_mode == "max" else train_avg["loss"]
        # One tie rule (checkpoint.better): an equal later score is no improvement.
        better = checkpoint.better(value, meta["best_value"], run.task.select_mode)
        if better:
            meta.update(best_value=value, best_epoch=epoch + 1, best_step=int(state.step), bad_epochs=0)
        else:
            meta["bad_epochs"] += 1
        meta["epoch"] = epoch
        meta["history"].append(record)
        ckpt.save(state, meta, metric=value)
        logger.scalars(int(state.step), {f"epoch/{k}": v for k, v in _flat(record).items()})
        if main:
            msg = f"epoch {epoch + 1}: train loss {train_avg['loss']:.4f}"
            if has_val:
                msg += (f", validation loss {record['validation']['loss']:.4f}, "
                        f"{run.task.select_metric} {value:.4f}")
            print(msg + (" (best)" if better else ""), flush=True)
            (workdir / "history.json").write_text(json.dumps(meta["history"], indent=2) + "\n")
            run.record["best"] = {"metric": run.task.select_metric if has_val else "train loss",
                                  "mode": run.task.select_mode, "value": meta["best_value"],
                                  "epoch": meta["best_epoch"], "step": meta["best_step"]}
            runs.write_record(workdir, run.record)
        if has_val and t.patience and meta["bad_epochs"] >= t.patience:
            if main:
                print(f"early stopping: no better {run.task.select_metric} for {t.patience} epochs "
                      f"(best {meta['best_value']:.4f} at epoch {meta['best_epoch']})")
            break
    ckpt.close()
    logger.close()
    if main and meta["history"]:
        plot_history(workdir)
    return {"state": state, "meta": meta, "run": run, "train_step": train_step,
            "eval_step": eval_step}


def _scalars(report: dict) -> dict:
    return {k: v for k, v in _flat(report).items() if isinstance(v, (int, float))
            and "confusion" not in k and "per_class" not in k}


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, key + "."))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[key] = v
    return out


def _progress(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="step", disable=not enabled, file=sys.stderr,
                dynamic_ncols=True, leave=False)


class Logger:
    """TensorBoard scalars (process 0 only), written with tensorboardX."""

    def __init__(self, workdir: Path, enabled: bool):
        self.writer = None
        if enabled:
            from tensorboardX import SummaryWriter

            self.writer = SummaryWriter(str(workdir / "tensorboard"))

    def scalars(self, step: int, values: dict) -> None:
        if self.writer is None:
            return
        for k, v in values.items():
            self.writer.add_scalar(k, float(v), step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
