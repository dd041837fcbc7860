"""`jaxmusic train`: the training loop, top to bottom.

setup -> mesh -> input -> model -> shard -> update -> checkpoint -> evaluate -> loop.

What a step is lives in :mod:`jaxmusic.steps`, what a run directory holds in
:mod:`jaxmusic.runs` (``config.json``, ``run.json``) and :mod:`jaxmusic.checkpoint`
(``checkpoints/``: the latest N and the best by the validation metric); this
module only drives them. It also writes ``history.json`` (per-epoch curves),
``curves.png`` and ``tensorboard/`` event files.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Iterator

import jax
import numpy as np

from jaxmusic import checkpoint, parallel, runs, steps, tasks
from jaxmusic.config import read_config, save_config
from jaxmusic.data import lab, stream
from jaxmusic.data.pipeline import (bucket_indices, epoch_indices, gather, load_split, meminfo,
                                     resolve_placement, split_bytes)
from jaxmusic.evaluate import evaluate_split
from jaxmusic.viz.curves import plot_history


# --- input -------------------------------------------------------------------------------

class TrainInput:
    """The training split as the loop feeds it: placed (``data.placement``), ordered (one
    epoch order, :func:`jaxmusic.data.pipeline.epoch_indices`) and cut into dispatches,
    with the compiled train steps that take them (:meth:`step`).

    ``data.readers`` logical streams, each over its own shards, make up every global
    batch; a process runs its share of them. The batches are the same whatever the
    number of processes and wherever the split lives, so results do not depend on
    topology or placement."""

    def __init__(self, config, run: runs.Run, mesh):
        t = config.train
        self.mesh = mesh
        self.micro_batch = t.batch_size // max(1, t.grad_accum_steps)
        parallel.local_batch_size(self.micro_batch)  # checks that it splits over the devices
        n_proc, p_idx = jax.process_count(), jax.process_index()
        readers = config.data.readers or n_proc
        if readers % n_proc or self.micro_batch % readers:
            raise ValueError(f"data.readers={readers} must be a multiple of the process count "
                             f"({n_proc}) and divide the batch ({self.micro_batch})")
        self.bucketed = bool(config.data.bucket_boundaries)
        if self.bucketed and readers > 1:
            raise ValueError("data.bucket_boundaries needs a single input stream (one process, "
                             "data.readers=1): streams would bucket to different lengths")
        self.per_dispatch = max(1, int(t.steps_per_dispatch))
        if self.per_dispatch > 1 and self.bucketed:
            raise ValueError("train.steps_per_dispatch > 1 stacks batches of one shape: it does not "
                             "combine with data.bucket_boundaries")
        streams_of = lambda p: range(p * readers // n_proc, (p + 1) * readers // n_proc)  # noqa: E731
        mine = tuple(streams_of(p_idx))
        self.pcfg = run.pipeline_config(self.micro_batch // readers, seed=t.seed,
                                        bucket_boundaries=tuple(config.data.bucket_boundaries))
        self.steps_per_epoch = run.pset.train_steps("train", self.pcfg.batch_size, readers)
        if self.steps_per_epoch == 0:
            raise lab.DatasetError(f"the training split has fewer clips per input stream than one batch "
                                   f"of {self.pcfg.batch_size}", file=run.pset.dir / "manifest.json")
        self.overfit = bool(t.overfit_batches)
        if self.overfit:
            self.steps_per_epoch = min(self.steps_per_epoch, t.overfit_batches)
        need = split_bytes(run.pset, "train", config.data.view, run.max_length, share=len(mine) / readers)
        self.placement, self.why = resolve_placement(
            config.data.get("placement", "auto"), need, parallel.device_free_memory(),
            meminfo("MemAvailable"), bucketed=self.bucketed)
        if self.placement == "stream":
            self.source = stream.StreamSource(run.pset, "train", self.pcfg, mine, readers)
        else:
            self.source = load_split(run.pset, "train", self.pcfg, mine, readers)
        self.resident = None
        if self.placement == "device":
            most = max(sum(run.pset.count("train", r, readers) for r in streams_of(p)) for p in range(n_proc))
            arrays = dict(self.source.arrays, mask=np.ones(len(self.source.arrays["lengths"]), bool))
            self.resident = parallel.put_resident(arrays, mesh, rows=most)
        # the steps that take these dispatches (K stacked batches in one call with K > 1)
        resident = self.resident is not None
        self.train_step, self.eval_step = steps.compile_steps(
            run, mesh, freeze_backbone=t.freeze_backbone, resident=resident)
        self.multi_step = None
        if self.per_dispatch > 1:
            self.multi_step, _ = steps.compile_steps(run, mesh, freeze_backbone=t.freeze_backbone,
                                                     steps_per_dispatch=self.per_dispatch, resident=resident)

    def epoch_rows(self, epoch: int) -> list:
        """This process's batches of an epoch: rows of its streams' clips (with their width
        when bucketed). Overfit mode repeats the first epoch's."""
        epoch = 0 if self.overfit else epoch
        if self.bucketed:
            return bucket_indices(self.source, self.pcfg, epoch, self.steps_per_epoch)
        return list(epoch_indices(self.source, self.pcfg.batch_size, self.pcfg.seed, epoch,
                                  self.steps_per_epoch))

    def _host_batches(self, rows: list) -> Iterator[dict]:
        """What each step takes from the host: its rows (device placement) or its batch."""
        if self.resident is not None:
            return ({"rows": r.astype(np.int32)} for r in rows)
        if self.placement == "stream":
            return self.source.batches(rows)
        if self.bucketed:
            return (gather(self.source.arrays, r, width) for r, width in rows)
        return (gather(self.source.arrays, r) for r in rows)

    def dispatches(self, epoch: int, start: int = 0) -> Iterator[tuple[int, dict, bool]]:
        """(batches, global arrays, stacked?) from batch ``start`` of the epoch on, two
        dispatches ahead on the devices: K stacked batches per call where
        K = train.steps_per_dispatch, single ones for the rest of the epoch."""
        return parallel.prefetch_to_devices(self._host_dispatches(epoch, start), self.mesh)

    def _host_dispatches(self, epoch: int, start: int) -> Iterator[tuple[int, dict, bool]]:
        rows = self.epoch_rows(epoch)[start:]
        k = self.per_dispatch
        stacked = len(rows) - len(rows) % k if k > 1 else 0
        group = []
        for i, batch in enumerate(self._host_batches(rows)):
            if i >= stacked:
                yield 1, batch, False
                continue
            group.append(batch)
            if len(group) == k:
                yield k, {name: np.stack([b[name] for b in group]) for name in group[0]}, True
                group = []

    def step(self, state, batch: dict, stacked: bool):
        """One dispatch of :meth:`dispatches`: ``(state, metrics)``, metrics stacked ``[K]``
        for K stacked batches."""
        fn = self.multi_step if stacked else self.train_step
        return fn(state, self.resident, batch["rows"]) if self.resident is not None else fn(state, batch)


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
    # input (and the compiled steps that take it)
    inp = TrainInput(config, run, mesh)
    steps_per_epoch, micro_batch = inp.steps_per_epoch, inp.micro_batch
    # model + shard
    updates_per_epoch = steps_per_epoch // max(1, t.grad_accum_steps)
    state = steps.init_state(run, mesh, updates_per_epoch)
    _, schedule = steps.make_optimizer(config, updates_per_epoch)
    train_step, eval_step = inp.train_step, inp.eval_step

    # checkpoint
    ckpt = checkpoint.Checkpointer(workdir, keep=t.keep_checkpoints, mode=run.task.select_mode)
    if not resume and ckpt.latest_step() is not None:
        ckpt.close()
        raise FileExistsError(f"{workdir} already holds checkpoints of a run: pass --resume to "
                              "continue it, or choose another --workdir")
    run.record["trained_on"] = {"backend": jax.default_backend(), "devices": jax.device_count(),
                                "processes": jax.process_count(), "placement": inp.placement,
                                "placement_why": inp.why}
    if main:
        save_config(config, workdir / runs.CONFIG_FILE)
        runs.write_record(workdir, run.record)
    meta = {"epoch": -1, "best_value": None, "best_epoch": None, "bad_epochs": 0, "history": []}
    if resume and ckpt.latest_step() is not None:
        state, meta = ckpt.restore(state)
        if main:
            print(f"resumed from step {int(state.step)} (epoch {meta['epoch'] + 1} done"
                  + (f", {meta['epoch_step']} steps into the next)" if meta.get("epoch_step") else ")"))
    logger = Logger(workdir, enabled=main)
    has_val = run.pset.has_split("validation") and not t.overfit_batches
    checkpoint_every = int(t.get("checkpoint_every", 0))

    # loop
    for epoch in range(meta["epoch"] + 1, t.epochs):
        # A run resumed from a checkpoint inside this epoch goes on from its step, with its sums.
        start = meta.pop("epoch_step", 0) or 0
        partial = meta.pop("partial", None) or {"sums": {}, "count": 0, "time_s": 0.0}
        bar = _progress(steps_per_epoch, f"epoch {epoch + 1}/{t.epochs}", progress and main)
        bar.update(start)
        sums, count = dict(partial["sums"]), int(partial["count"])
        pending, done, since_log, saved = [], start, 0, start
        first_step = int(state.step) - start   # the state's step before this epoch's first batch
        t0 = time.perf_counter() - partial["time_s"]

        def fetch(keep_last: bool) -> list[dict]:
            """Metrics of the dispatches that finished, as per-step dicts; with ``keep_last``
            the latest dispatch stays pending, so the device never waits for the host."""
            nonlocal pending, count
            ready, pending = (pending[:-1], pending[-1:]) if keep_last else (pending, [])
            fetched = []
            for k, m in jax.device_get(ready):
                fetched += [{name: v[i] for name, v in m.items()} for i in range(k)] if k > 1 else [m]
            for m in fetched:
                for name, v in m.items():
                    sums[name] = sums.get(name, 0.0) + float(v)
                count += 1
            bar.update(len(fetched))
            return fetched

        for n, batch, stacked in inp.dispatches(epoch, start):
            state, metrics = inp.step(state, batch, stacked)
            pending.append((n, metrics))
            done += n
            since_log += n
            last = done == steps_per_epoch
            if since_log >= t.log_every or last:
                # One host round-trip per `log_every` steps, one dispatch behind the device.
                fetched = fetch(keep_last=not last)
                since_log = sum(k for k, _ in pending)
                if fetched:
                    loss = float(fetched[-1]["loss"])
                    step_no = first_step + done - since_log   # the last fetched step's
                    if not math.isfinite(loss):
                        raise FloatingPointError(
                            f"loss is {loss} at step {step_no} (epoch {epoch + 1}): "
                            "lower train.learning_rate, keep train.clip_norm, or check the data")
                    rate = (done - start) * micro_batch / (time.perf_counter() - t0 - partial["time_s"])
                    logger.scalars(step_no, {**{f"train/{k}": v for k, v in fetched[-1].items()},
                                             "train/samples_per_s": rate,
                                             "train/learning_rate": steps.learning_rate_at(config, schedule, step_no - 1)})
                    bar.set_postfix(loss=f"{loss:.4f}", samples_s=f"{rate:.0f}")
            if checkpoint_every and not last and done - saved >= checkpoint_every:
                fetch(keep_last=False)
                since_log, saved = 0, done
                ckpt.save(state, {**meta, "epoch_step": done, "partial": {
                    "sums": sums, "count": count, "time_s": time.perf_counter() - t0}}, metric=None)
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
            runs.write_json(workdir / "history.json", meta["history"])
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
