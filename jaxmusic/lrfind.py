"""``jaxmusic lr-find``: the learning-rate range test (Smith 2017; fastai's ``lr_find``).

Training starts from the config's fresh model and optimiser, with the learning rate
raised exponentially from ``min_lr`` to ``max_lr`` over ``steps`` updates (one
batch each, cycling through the training split's epochs). The loss of every step
is recorded and smoothed (exponential moving average, ``beta`` 0.98, bias
corrected); the test stops early once the smoothed loss exceeds ``diverge`` times
its minimum. Suggested rate: where the smoothed loss falls fastest (the most
negative slope of smoothed loss over log learning rate, on the part before the
minimum), which is the usual pick; the rate at the minimum divided by 10 is reported
beside it. The same jitted train step as ``jaxmusic train`` (augmentation included).
"""

from __future__ import annotations

import math
from pathlib import Path

import jax
import numpy as np
import optax

from jaxmusic import parallel, runs, steps
from jaxmusic.data.pipeline import train_batches


def lr_schedule(min_lr: float, max_lr: float, num_steps: int) -> optax.Schedule:
    """``min_lr * (max_lr / min_lr) ** (step / (num_steps - 1))``."""
    ratio = max_lr / min_lr
    denom = max(1, num_steps - 1)
    return lambda step: min_lr * ratio ** (jax.numpy.asarray(step, jax.numpy.float32) / denom)


def smooth(losses, beta: float = 0.98) -> np.ndarray:
    """Bias-corrected exponential moving average (fastai's smoothing)."""
    out, avg = [], 0.0
    for i, v in enumerate(losses, 1):
        avg = beta * avg + (1 - beta) * float(v)
        out.append(avg / (1 - beta ** i))
    return np.asarray(out)


def suggest(lrs, smoothed) -> dict:
    """``{"steepest": lr, "min_over_10": lr, "min_loss_lr": lr}`` from a finished test."""
    lrs, smoothed = np.asarray(lrs, np.float64), np.asarray(smoothed, np.float64)
    best = int(np.argmin(smoothed))
    out = {"min_loss_lr": float(lrs[best]), "min_over_10": float(lrs[best] / 10)}
    if best >= 2:
        slope = np.gradient(smoothed[: best + 1], np.log(lrs[: best + 1]))
        out["steepest"] = float(lrs[int(np.argmin(slope))])
    else:   # the loss never fell: the lowest rate tried, and a hint
        out["steepest"] = float(lrs[best])
        out["note"] = "the smoothed loss did not fall: try a lower --min-lr"
    return out


def range_test(config, *, min_lr: float = 1e-7, max_lr: float = 1.0, num_steps: int = 100,
               diverge: float = 4.0, beta: float = 0.98) -> dict:
    """Run the test for ``config``; returns ``{"lr", "loss", "smoothed", "suggestion", "stopped_early"}``."""
    if not (0 < min_lr < max_lr):
        raise ValueError(f"need 0 < min_lr < max_lr, got {min_lr} and {max_lr}")
    if num_steps < 3:
        raise ValueError(f"the range test needs at least 3 steps, got {num_steps}")
    config = config.copy_and_resolve_references()
    config.train.schedule = "constant"   # the rate comes from the range schedule, not reduce_on_plateau
    run = runs.build_run(config)
    mesh = parallel.make_mesh()
    batch_size = parallel.local_batch_size(int(config.train.batch_size))
    pcfg = run.pipeline_config(batch_size, seed=int(config.train.seed))
    per_epoch = run.pset.train_steps("train", batch_size)
    if per_epoch < 1:
        raise ValueError(f"{run.pset.name}: the training split has fewer clips than one batch ({batch_size})")
    schedule = lr_schedule(min_lr, max_lr, num_steps)
    # the state and step of `jaxmusic train` (so --init-from and a frozen backbone apply)
    state = steps.init_state(run, mesh, per_epoch, schedule=schedule)
    step_fn, _ = steps.compile_steps(run, mesh, freeze_backbone=bool(config.train.freeze_backbone))
    lrs, losses, smoothed_all, stopped = [], [], [], False
    best = math.inf
    epoch = 0
    while len(losses) < num_steps and not stopped:
        for batch in train_batches(run.pset, "train", pcfg, epoch=epoch, steps=per_epoch):
            lr = float(schedule(len(losses)))
            state, metrics = step_fn(state, parallel.to_global(batch, mesh))
            loss = float(metrics["loss"])
            lrs.append(lr)
            losses.append(loss)
            s = smooth(losses, beta)[-1]
            smoothed_all.append(s)
            best = min(best, s)
            if not math.isfinite(loss) or (len(losses) > 5 and s > diverge * best):
                stopped = True
                break
            if len(losses) >= num_steps:
                break
        epoch += 1
    finite = np.isfinite(smoothed_all)
    lrs_f, sm_f = np.asarray(lrs)[finite], np.asarray(smoothed_all)[finite]
    return {"lr": lrs, "loss": losses, "smoothed": smoothed_all, "stopped_early": stopped,
            "suggestion": suggest(lrs_f, sm_f), "config": config.name, "optimizer": config.train.optimizer}


def plot(result: dict, path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot(result["lr"], result["loss"], color="0.75", lw=1, label="loss")
    ax.plot(result["lr"], result["smoothed"], color="C0", lw=2, label="smoothed loss")
    s = result["suggestion"]
    ax.axvline(s["steepest"], color="C3", ls="--", label=f"suggested {s['steepest']:.2e} (steepest)")
    ax.axvline(s["min_over_10"], color="C2", ls=":", label=f"min / 10 = {s['min_over_10']:.2e}")
    ax.set_xscale("log")
    finite = [v for v in result["smoothed"] if math.isfinite(v)]
    if finite:
        lo, hi = min(finite), max(finite[: max(1, len(finite) // 3)] + [min(finite)])
        ax.set_ylim(lo - 0.1 * abs(lo), hi + 0.5 * abs(hi - lo) + 1e-6)
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.set_title(f"LR range test: {result['config']} ({result['optimizer']})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
