"""Training curves of a run: ``curves.png`` beside its ``history.json``.

Left: train and validation loss per epoch. Right: the validation metric that
selects the best checkpoint (``train.select_metric`` of the run's config; for
regression runs whose config left the genre default ``accuracy``, the mean
Spearman, as :mod:`jaxmusic.tasks` does), with the training accuracy of genre
runs and the per-axis Spearman of regression runs as thin lines. The best epoch
is marked on both panels.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from jaxmusic.viz import use_agg

FIGSIZE = (12.0, 4.5)
# Per-axis Spearman lines: none of them the train (blue) or validation (orange) colour.
AXIS_COLOURS = ("tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive")
DPI = 100


def read_json(path: Path, default=None):
    path = Path(path)
    if not path.exists():
        return default
    return json.loads(path.read_text(encoding="utf-8"))


def selection(config: dict, task: str | None) -> tuple[str, str]:
    """(validation metric, "max" | "min") that picks the best checkpoint."""
    train = config.get("train", {})
    metric = train.get("select_metric", "accuracy")
    mode = train.get("select_mode", "max")
    task = task or config.get("task", "genre")
    if task != "genre" and metric == "accuracy":
        metric = "spearman_mean"
    return metric, mode


def best_epoch(history: list[dict], metric: str, mode: str) -> int | None:
    """The epoch with the best validation metric (the first one on ties)."""
    vals = [(h["epoch"], h.get("validation", {}).get(metric)) for h in history]
    vals = [(e, v) for e, v in vals if v is not None and np.isfinite(v)]
    if not vals:
        return None
    pick = max if mode == "max" else min
    best = pick(v for _, v in vals)
    return next(e for e, v in vals if v == best)


def plot_history(workdir: str | Path, path: str | Path | None = None) -> Path:
    """Draw the curves of ``workdir/history.json``; returns the PNG's path
    (default ``workdir/curves.png``)."""
    workdir = Path(workdir)
    history = read_json(workdir / "history.json")
    if not history:
        raise FileNotFoundError(f"{workdir}: no history.json (or no epoch in it)")
    config = read_json(workdir / "config.json", {})
    info = read_json(workdir / "run.json", {})
    metric, mode = selection(config, info.get("task"))
    path = Path(path) if path else workdir / "curves.png"

    plt = use_agg()
    epochs = np.array([h["epoch"] for h in history])
    has_val = any("validation" in h for h in history)

    def series(part: str, key: str) -> np.ndarray:
        return np.array([h.get(part, {}).get(key, np.nan) for h in history], dtype=float)

    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=FIGSIZE, layout="constrained")
    ax_loss.plot(epochs, series("train", "loss"), "o-", color="tab:blue", label="train")
    if has_val:
        ax_loss.plot(epochs, series("validation", "loss"), "o-", color="tab:orange",
                     label="validation")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    ax_loss.set_title("loss")

    best = best_epoch(history, metric, mode) if has_val else None
    if has_val:
        values = series("validation", metric)
        ax_metric.plot(epochs, values, "o-", color="tab:orange", label=f"validation {metric}")
        if metric == "accuracy" and any("accuracy" in h.get("train", {}) for h in history):
            ax_metric.plot(epochs, series("train", "accuracy"), "o-", color="tab:blue",
                           label="train accuracy")
        if metric.startswith("spearman"):
            axes = list(dict.fromkeys(k.split(".", 1)[1] for h in history
                                      for k in h.get("validation", {})
                                      if k.startswith("spearman.")))
            for axis, colour in zip(axes, AXIS_COLOURS):
                ax_metric.plot(epochs, series("validation", f"spearman.{axis}"), "--",
                               color=colour, linewidth=1.2, label=f"validation spearman {axis}")
        ax_metric.set_ylabel(metric)
        ax_metric.set_title(f"validation {metric} (selects the best checkpoint, {mode})")
    else:
        ax_metric.text(0.5, 0.5, "no validation split in this run\n(overfit mode: "
                       "the training loss selects)", ha="center", va="center",
                       transform=ax_metric.transAxes)
        ax_metric.set_title(f"validation {metric}")
    ax_metric.set_xlabel("epoch")
    if best is not None:
        i = int(np.flatnonzero(epochs == best)[0])
        for ax in (ax_loss, ax_metric):
            ax.axvline(best, color="gray", linestyle="--", linewidth=1,
                       label=f"best epoch {best}")
        ax_metric.plot([best], [series("validation", metric)[i]], "*", color="black",
                       markersize=12)
    for ax in (ax_loss, ax_metric):
        ax.grid(alpha=0.3)
        if len(epochs) <= 20:
            ax.set_xticks(epochs)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    name = workdir.resolve().name
    if config.get("name") and config["name"] != name:
        name += f" (config {config['name']})"
    model = info.get("model") or config.get("model", {}).get("name", "?")
    where = info.get("set") or config.get("data", {}).get("set", "?")
    view = info.get("view") or config.get("data", {}).get("view", "?")
    fig.suptitle(f"{name}: {model} on {where} ({view}), {len(history)} epochs")
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path
