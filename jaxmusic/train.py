"""`jaxmusic train`: the training loop, top to bottom.

setup -> mesh -> input -> model -> shard -> update -> checkpoint -> evaluate -> loop.

A run directory holds ``config.json`` (the resolved config), ``run.json`` (what
is needed to rebuild the model: label names, view, feature count, length),
``checkpoints/`` (Orbax: the latest N and the best by the validation metric),
``history.json`` (per-epoch curves), ``tensorboard/`` event files and, after
``evaluate``, ``metrics.json``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from flax.training import train_state

from jaxmusic import checkpoint, parallel, tasks
from jaxmusic.config import read_config, save_config
from jaxmusic.data.pipeline import PipelineConfig, PreparedSet, eval_batches, resolve_cache, train_batches
from jaxmusic.models import Model, build_backbone

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


class TrainState(train_state.TrainState):
    batch_stats: Any = None
    rng: jax.Array = struct.field(default=None)


# --- setup ------------------------------------------------------------------------------

@dataclasses.dataclass
class Run:
    """Everything a run needs besides its parameters, rebuilt from config + data."""

    config: Any
    pset: PreparedSet
    task: tasks.Task
    model: Model
    max_length: int
    num_features: int

    def info(self) -> dict:
        """What inference needs besides the checkpoint (``run.json``)."""
        lo, hi = self.pset.view_columns(self.config.data.view)
        stats = self.pset.manifest["splits"]["train"]
        return {"task": self.task.name, "data_kind": self.task.data_kind,
                "label_names": list(self.task.label_names), "set": self.pset.name,
                "beat": self.pset.manifest["beat"], "view": self.config.data.view,
                "num_features": self.num_features, "max_length": self.max_length,
                "model": self.config.model.name, "normalize": bool(self.config.data.normalize),
                "feature_mean": stats["feature_mean"][lo:hi],
                "feature_std": stats["feature_std"][lo:hi]}


def build_run(config, pset: PreparedSet | None = None) -> Run:
    if pset is None:
        pset = PreparedSet.open(Path(config.data.prepared) / config.data.set)
    task_kind = "genre" if config.task == "genre" else "multitask"
    if pset.kind != task_kind:
        raise ValueError(f"task {config.task!r} needs a {task_kind} set, but "
                         f"{pset.name} is a {pset.kind} set")
    counts = None
    if config.task == "genre":
        per_class = pset.manifest["splits"]["train"]["per_class"]
        counts = [per_class[c] for c in pset.classes]
    task = tasks.make_task(config, pset.classes, counts)
    max_length = int(config.data.max_length) or pset.max_length()
    num_features = pset.num_features(config.data.view)
    return Run(config, pset, task, make_model(config, task, num_features, max_length),
               max_length, num_features)


def make_model(config, task: tasks.Task, num_features: int, max_length: int) -> Model:
    model_cfg = dict(config.model)
    model_cfg["dtype"] = DTYPES[config.train.dtype]
    return Model(backbone=build_backbone(model_cfg, num_features, max_length),
                 head=task.make_head())


def make_optimizer(config, steps_per_epoch: int, param_labels=None) -> optax.GradientTransformation:
    t = config.train
    total = max(1, steps_per_epoch * t.epochs)
    if t.schedule == "constant":
        lr = optax.constant_schedule(t.learning_rate)
        if t.warmup_steps:
            lr = optax.join_schedules(
                [optax.linear_schedule(0.0, t.learning_rate, t.warmup_steps), lr],
                [t.warmup_steps])
    elif t.schedule == "warmup_cosine":
        lr = optax.warmup_cosine_decay_schedule(0.0, t.learning_rate, t.warmup_steps,
                                                max(total, t.warmup_steps + 1))
    elif t.schedule == "exponential":
        lr = optax.exponential_decay(t.learning_rate, steps_per_epoch * t.decay_epochs,
                                     t.decay_rate, transition_begin=t.warmup_steps)
    else:
        raise ValueError(f"unknown schedule {t.schedule!r}")
    opt = {
        "adamw": lambda: optax.adamw(lr, weight_decay=t.weight_decay),
        "adam": lambda: optax.adam(lr),
        "lamb": lambda: optax.lamb(lr, weight_decay=t.weight_decay),
        "lars": lambda: optax.lars(lr, weight_decay=t.weight_decay),
        "sgd": lambda: optax.sgd(lr, momentum=0.9),
    }
    if t.optimizer not in opt:
        raise ValueError(f"unknown optimizer {t.optimizer!r} (one of {sorted(opt)})")
    chain = [optax.clip_by_global_norm(t.clip_norm)] if t.clip_norm else []
    tx = optax.chain(*chain, opt[t.optimizer]())
    if param_labels is not None:
        tx = optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, param_labels)
    if t.grad_accum_steps > 1:
        tx = optax.MultiSteps(tx, every_k_schedule=t.grad_accum_steps)
    tx.learning_rate = lr  # for logging
    return tx


def init_state(run: Run, mesh, steps_per_epoch: int) -> TrainState:
    config = run.config
    rng = jax.random.PRNGKey(config.train.seed)
    init_rng, state_rng = jax.random.split(rng)
    b = 2
    feats = jnp.zeros((b, run.max_length, run.num_features), jnp.float32)
    lengths = jnp.full((b,), run.max_length, jnp.int32)
    variables = jax.jit(lambda r: run.model.init({"params": r, "dropout": r}, feats, lengths,
                                                 train=False))(init_rng)
    params = variables["params"]
    if config.train.init_from:
        params = transfer_backbone(params, config.train.init_from)
    labels = None
    if config.train.freeze_backbone:
        labels = {k: ("frozen" if k == "backbone" else "train") for k in params}
    tx = make_optimizer(config, steps_per_epoch, labels)
    state = TrainState.create(apply_fn=run.model.apply, params=params, tx=tx,
                              batch_stats=variables.get("batch_stats"), rng=state_rng)
    return jax.device_put(state, parallel.replicated(mesh))


def transfer_backbone(params, source_workdir: str | Path):
    """Fresh params with the backbone copied from another run's best checkpoint."""
    src_params = checkpoint.load_params(source_workdir, which="best")
    if "backbone" not in src_params:
        raise ValueError(f"{source_workdir}: checkpoint has no backbone parameters")
    src_shapes = jax.tree_util.tree_map(np.shape, src_params["backbone"])
    dst_shapes = jax.tree_util.tree_map(np.shape, params["backbone"])
    if src_shapes != dst_shapes:
        raise ValueError(f"{source_workdir}: backbone shapes differ from this config's model "
                         "(same model.* settings and data.view are needed for transfer)")
    params = dict(params)
    params["backbone"] = jax.tree_util.tree_map(jnp.asarray, src_params["backbone"])
    return params


# --- steps ------------------------------------------------------------------------------

def make_steps(run: Run, mesh, freeze_backbone: bool = False):
    model, task = run.model, run.task
    repl, data = parallel.replicated(mesh), parallel.batch_sharding(mesh)

    def apply(state, params, batch, train, rng=None):
        variables = {"params": params}
        if state.batch_stats is not None:
            variables["batch_stats"] = state.batch_stats
        mutable = ["batch_stats"] if (train and state.batch_stats is not None) else False
        out = model.apply(variables, batch["features"], batch["lengths"], train=train,
                          rngs={"dropout": rng} if rng is not None else None, mutable=mutable)
        return out if mutable else (out, {})

    def train_step(state: TrainState, batch):
        rng = jax.random.fold_in(state.rng, state.step)

        def loss_fn(params):
            out, mutated = apply(state, params, batch, True, rng)
            loss, metrics = task.loss(params, out["output"], batch)
            return loss, (metrics, mutated)

        (loss, (metrics, mutated)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        new_state = state.apply_gradients(grads=grads)
        if mutated and not freeze_backbone:
            new_state = new_state.replace(batch_stats=mutated["batch_stats"])
        metrics = dict(metrics, loss=loss, grad_norm=optax.global_norm(grads),
                       param_norm=optax.global_norm(new_state.params))
        return new_state, metrics

    def eval_step(state: TrainState, batch):
        out, _ = apply(state, state.params, batch, False)
        loss, _ = task.loss(state.params, out["output"], batch)
        return {"output": out["output"].astype(jnp.float32),
                "latent": out["latent"].astype(jnp.float32), "loss": loss}

    train_jit = jax.jit(train_step, in_shardings=(repl, data), out_shardings=(repl, repl),
                        donate_argnums=0)
    eval_jit = jax.jit(eval_step, in_shardings=(repl, data),
                       out_shardings={"output": data, "latent": data, "loss": repl})
    return train_jit, eval_jit


# --- evaluation over a whole split --------------------------------------------------------

def predict_split(run: Run, state, eval_step, mesh, pset: PreparedSet, split: str,
                  batch_size: int, with_latent: bool = False) -> dict:
    """Outputs for every clip of a split, each exactly once (masked padding dropped)."""
    cfg = PipelineConfig(batch_size=parallel.local_batch_size(batch_size),
                         max_length=run.max_length, view=run.config.data.view,
                         normalize=run.config.data.normalize)
    steps = pset.eval_steps(split, cfg.batch_size, jax.process_count())
    outs, latents, truth, ids, masks, losses, weights = [], [], [], [], [], [], []
    for batch in eval_batches(pset, split, cfg, process_index=jax.process_index(),
                              process_count=jax.process_count(), steps=steps):
        result = eval_step(state, parallel.to_global(batch, mesh))
        outs.append(result["output"])
        if with_latent:
            latents.append(result["latent"])
        losses.append(result["loss"])
        weights.append(int(batch["mask"].sum()))
        masks.append(batch["mask"])
        truth.append(run.task.truth(batch))
        ids.append(batch["id"])
    mask = np.concatenate(masks)
    local_ids = np.concatenate(ids)
    local_truth = np.concatenate(truth)
    if jax.process_count() > 1:
        mask = parallel.gather_host(mask)
        local_truth = parallel.gather_host(local_truth)
        local_ids = parallel.gather_host_strings(local_ids)
    outputs = np.concatenate([parallel.gather(o) for o in outs])
    res = {"ids": [i.decode() for i in local_ids[mask]], "outputs": outputs[mask],
           "truth": local_truth[mask]}
    if with_latent:
        res["latent"] = np.concatenate([parallel.gather(l) for l in latents])[mask]
    w = np.asarray(weights, np.float64)
    res["loss"] = float(np.dot(np.asarray(jax.device_get(losses)), w) / max(w.sum(), 1))
    return res


def evaluate_split(run: Run, state, eval_step, mesh, pset, split, batch_size) -> dict:
    res = predict_split(run, state, eval_step, mesh, pset, split, batch_size)
    report = run.task.report(res["outputs"], res["truth"])
    report["loss"] = res["loss"]
    return report


# --- the loop -----------------------------------------------------------------------------

def train(config, workdir: str | Path, *, resume: bool = False, progress: bool = True) -> dict:
    workdir = Path(workdir)
    main = parallel.is_main_process()
    # setup
    if resume and (workdir / "config.json").exists():
        config = read_config(workdir / "config.json")
    mesh = parallel.make_mesh()
    run = build_run(config)
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
    my_readers = range(p_idx * readers // n_proc, (p_idx + 1) * readers // n_proc)
    cache, cache_why = resolve_cache(config.data.get("cache", "auto"), run.pset, "train", config.data.view,
                                     run.max_length, share=len(my_readers) / readers,
                                     bucketed=bool(config.data.bucket_boundaries))
    pcfg = PipelineConfig(batch_size=micro_batch // readers, max_length=run.max_length,
                          view=config.data.view, seed=t.seed, normalize=config.data.normalize,
                          cache=cache,
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
    state = init_state(run, mesh, steps_per_epoch // max(1, t.grad_accum_steps))
    train_step, eval_step = make_steps(run, mesh, freeze_backbone=t.freeze_backbone)
    # checkpoint
    ckpt = checkpoint.Checkpointer(workdir, keep=t.keep_checkpoints,
                                   mode=run.task.select_mode)
    if not resume and ckpt.latest_step() is not None:
        ckpt.close()
        raise FileExistsError(f"{workdir} already holds checkpoints of a run: pass --resume to "
                              "continue it, or choose another --workdir")
    if main:
        save_config(config, workdir / "config.json")
        trained_on = {"backend": jax.default_backend(), "devices": jax.device_count(),
                      "processes": jax.process_count(), "data_cache": cache_why}
        (workdir / "run.json").write_text(json.dumps({**run.info(), "trained_on": trained_on}, indent=2) + "\n")
    meta = {"epoch": -1, "best_value": None, "best_epoch": None, "bad_epochs": 0, "history": []}
    if resume and ckpt.latest_step() is not None:
        state, meta = ckpt.restore(state)
        if main:
            print(f"resumed from step {int(state.step)} (epoch {meta['epoch'] + 1} done)")
    logger = Logger(workdir, enabled=main)
    lr_fn = state.tx.learning_rate if hasattr(state.tx, "learning_rate") else None
    has_val = run.pset.has_split("validation") and not t.overfit_batches
    overfit_cache = None
    if t.overfit_batches:
        overfit_cache = list(epoch_batches(0))

    # loop
    for epoch in range(meta["epoch"] + 1, t.epochs):
        batches = iter(overfit_cache) if overfit_cache else epoch_batches(epoch)
        bar = _progress(steps_per_epoch, f"epoch {epoch + 1}/{t.epochs}", progress and main)
        pending, sums, count = [], {}, 0
        t0 = time.perf_counter()
        for i, batch in enumerate(batches):
            state, metrics = train_step(state, parallel.to_global(batch, mesh))
            pending.append(metrics)
            if len(pending) >= t.log_every or i == steps_per_epoch - 1:
                # One host round-trip per `log_every` steps.
                fetched = jax.device_get(pending)
                pending = []
                for m in fetched:
                    for k, v in m.items():
                        sums[k] = sums.get(k, 0.0) + float(v)
                    count += 1
                loss = fetched[-1]["loss"]
                if not math.isfinite(loss):
                    raise FloatingPointError(
                        f"loss is {loss} at step {int(state.step)} (epoch {epoch + 1}): "
                        "lower train.learning_rate, keep train.clip_norm, or check the data")
                step = int(state.step)
                rate = (i + 1) * micro_batch / (time.perf_counter() - t0)
                logger.scalars(step, {**{f"train/{k}": v for k, v in fetched[-1].items()},
                                      "train/samples_per_s": rate,
                                      "train/learning_rate": float(lr_fn(step)) if lr_fn else 0.0})
                bar.set_postfix(loss=f"{loss:.4f}", samples_s=f"{rate:.0f}")
            bar.update(1)
        bar.close()
        epoch_time = time.perf_counter() - t0
        train_avg = {k: v / max(count, 1) for k, v in sums.items()}
        record = {"epoch": epoch + 1, "step": int(state.step), "time_s": epoch_time,
                  "samples_per_s": steps_per_epoch * micro_batch / epoch_time,
                  "train": train_avg}
        if has_val:
            val = evaluate_split(run, state, eval_step, mesh, run.pset, "validation",
                                 max(t.batch_size, jax.device_count()))
            value = tasks.selection_value(run.task, val)
            record["validation"] = _scalars(val)
        else:  # overfit mode: select on the training loss
            value = -train_avg["loss"] if run.task.select_mode == "max" else train_avg["loss"]
        better = meta["best_value"] is None or (
            value > meta["best_value"] if run.task.select_mode == "max" else value < meta["best_value"])
        if better:
            meta.update(best_value=value, best_epoch=epoch + 1, bad_epochs=0)
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
        if has_val and t.patience and meta["bad_epochs"] >= t.patience:
            if main:
                print(f"early stopping: no better {run.task.select_metric} for {t.patience} epochs "
                      f"(best {meta['best_value']:.4f} at epoch {meta['best_epoch']})")
            break
    ckpt.close()
    logger.close()
    if main and meta["history"]:
        from jaxmusic.viz.curves import plot_history

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


# --- CLI ------------------------------------------------------------------------------------

ACCEPTS_EXTRA = True  # --config.x=y overrides


def add_arguments(parser) -> None:
    parser.add_argument("--config", required=True, help="configs/<experiment>.py")
    parser.add_argument("--workdir", required=True, help="run directory (runs/<name>)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the latest checkpoint in --workdir")
    parser.add_argument("--init-from", help="transfer: start the backbone from this run's best "
                        "checkpoint (its model and view settings are taken over)")
    parser.add_argument("--freeze-backbone", action="store_true",
                        help="with --init-from: train the head only")
    parser.add_argument("--no-evaluate", action="store_true",
                        help="skip the test-set evaluation after training")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--distributed", action="store_true",
                        help="multi-host: join JAX's runtime; without --coordinator the cluster "
                             "is auto-detected (SLURM, Open MPI, TPU pod slices)")
    parser.add_argument("--coordinator", help="multi-host: coordinator host:port")
    parser.add_argument("--num-processes", type=int)
    parser.add_argument("--process-id", type=int)


def run(args) -> int:
    from jaxmusic.config import load_config

    if args.distributed or args.coordinator or args.num_processes:
        parallel.init_distributed(args.coordinator, args.num_processes, args.process_id)
    config = load_config(args.config, args.extra)
    if args.init_from:
        from jaxmusic.experiments import match_source_run

        config = match_source_run(config, args.init_from)
        config.train.init_from = args.init_from
        config.train.freeze_backbone = args.freeze_backbone
    train(config, args.workdir, resume=args.resume, progress=not args.quiet)
    if not args.no_evaluate:
        from jaxmusic import evaluate

        evaluate.evaluate_run(args.workdir, progress=not args.quiet)
    return 0
