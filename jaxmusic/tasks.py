"""What is learned: the head, the loss (inside jit) and the metrics (on the host).

* ``genre``: a classifier head, softmax cross-entropy (optional class weights and
  label smoothing), accuracy; host metrics are the classification report.
* ``classification``: the genre task's head and loss over any classes: a genre-kind
  set's (e.g. five emotions or three energy levels from a clip table), or the
  ``data.bins`` quantile bins of one multitask axis (``data.bin_target``; cut points
  from the training split, so its classes are balanced); selected on macro F1.
* ``regression``: one head with an output per chosen axis (``data.targets``).
* ``multitask``: one model, a head per axis (valence, energy, danceability); the
  loss is the weighted sum of the per-axis losses (fixed weights, or learned
  uncertainty weighting).

Regression losses: ``mse``; ``spearman`` = 1 - soft Spearman correlation of the
batch, with differentiable ranks from pairwise sigmoids at a temperature;
``mse+spearman`` = both, the Spearman term weighted. Host metrics: Spearman per
axis over the whole set (scipy's tie handling), its mean, Pearson and MSE.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import jax.scipy.stats
import numpy as np

from jaxmusic import metrics as host_metrics
from jaxmusic.data import lab
from jaxmusic.models import heads


# --- differentiable ranks -----------------------------------------------------------

def soft_rank(x: jax.Array, mask: jax.Array, temperature: float) -> jax.Array:
    """Ranks from 1 among the masked entries of ``x`` [B]; ties count half.

    rank_i = 1/2 + sum_j m_j * sigmoid((x_i - x_j) / temperature); as the
    temperature goes to 0 this becomes the average rank of ties (scipy).
    """
    m = mask.astype(x.dtype)
    diff = (x[:, None] - x[None, :]) / temperature
    return 0.5 + jnp.sum(jax.nn.sigmoid(diff) * m[None, :], axis=1)


def hard_rank(x: jax.Array, mask: jax.Array) -> jax.Array:
    """Ranks from 1 among the masked entries, ties given their average rank (scipy's
    ``rankdata``, as ``scipy.stats.spearmanr`` ranks); not differentiable. Entries outside
    the mask (any value, NaN included) rank after every masked one and do not shift
    their ranks (a masked entry of +inf would tie with them)."""
    return jax.scipy.stats.rankdata(jnp.where(mask, x, jnp.inf), method="average")


def masked_pearson(a: jax.Array, b: jax.Array, mask: jax.Array) -> jax.Array:
    m = mask.astype(jnp.float32)
    n = jnp.maximum(m.sum(), 1.0)
    a = a - (a * m).sum() / n
    b = b - (b * m).sum() / n
    cov = (a * b * m).sum()
    return cov / jnp.sqrt((a * a * m).sum() * (b * b * m).sum() + 1e-12)


def soft_spearman(pred: jax.Array, target: jax.Array, mask: jax.Array,
                  temperature: float) -> jax.Array:
    """Spearman correlation with soft ranks for the predictions."""
    return masked_pearson(soft_rank(pred, mask, temperature), hard_rank(target, mask), mask)


# --- heads ------------------------------------------------------------------------------

class MultitaskHead(nn.Module):
    """One regression head per axis; optional learned log-variances per task."""

    num_tasks: int = 3
    uncertainty: bool = False

    @nn.compact
    def __call__(self, latent):
        outs = [heads.RegressionHead(num_outputs=1, name=f"task_{i}")(latent)
                for i in range(self.num_tasks)]
        if self.uncertainty:
            self.param("log_vars", nn.initializers.zeros, (self.num_tasks,))
        return jnp.concatenate(outs, axis=-1)


# --- tasks ------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Task:
    name: str
    data_kind: str                 # the prepared set's kind this task reads
    label_names: tuple[str, ...]   # classes, or the regression axes
    select_metric: str
    select_mode: str
    make_head: Callable[[], nn.Module]
    loss: Callable[..., tuple[jax.Array, dict]]  # (params, output, batch) -> (loss, metrics)
    report: Callable[[np.ndarray, np.ndarray], dict]  # (outputs, truth) on the host
    # Classes binned from a continuous axis (task "classification" on a multitask set):
    # the axis index in lab.TARGETS and the inner cut points (len = classes - 1).
    bin_axis: int | None = None
    bin_edges: tuple[float, ...] | None = None

    @property
    def is_classifier(self) -> bool:
        return self.name in ("genre", "classification")

    def truth(self, batch: dict) -> np.ndarray:
        if self.bin_edges is not None:
            return bin_labels(np.asarray(batch["targets"])[:, self.bin_axis], self.bin_edges)
        return batch["label"] if self.data_kind == "genre" else batch["targets"]

    def predictions(self, outputs: np.ndarray) -> np.ndarray:
        return outputs.argmax(-1) if self.is_classifier else outputs


def bin_edges(values: np.ndarray, bins: int) -> tuple[float, ...]:
    """The ``bins - 1`` inner quantile cut points of ``values`` (NaN ignored):
    ``np.quantile(values, [1/bins, ..., (bins-1)/bins])``, so the classes are balanced
    on the values they are computed from (tertiles for ``bins = 3``)."""
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    if bins < 2:
        raise ValueError(f"data.bins must be at least 2, got {bins}")
    if len(v) < bins:
        raise ValueError(f"{len(v)} labelled values cannot make {bins} classes")
    return tuple(float(q) for q in np.quantile(v, np.arange(1, bins) / bins))


def bin_labels(values, edges: Sequence[float]):
    """Class of each value: the number of (sorted) cut points it exceeds (``value > edge``,
    ``searchsorted`` on the left); NaN (unlabelled) -> NaN. numpy in, numpy (float) out;
    jax in, jax (int32, -1 for NaN) out."""
    if isinstance(values, np.ndarray):
        v = np.asarray(values, np.float64)
        return np.where(np.isnan(v), np.nan, np.searchsorted(np.asarray(edges, np.float64), v))
    lab_ = jnp.searchsorted(jnp.asarray(edges, jnp.float32), values).astype(jnp.int32)
    return jnp.where(jnp.isnan(values), -1, lab_)


def bin_names(axis: str, bins: int) -> tuple[str, ...]:
    if bins == 3:
        return tuple(f"{axis}_{level}" for level in ("low", "mid", "high"))
    return tuple(f"{axis}_q{i}" for i in range(bins))


def _genre_task(config, classes: Sequence[str], class_weights: np.ndarray | None) -> Task:
    smoothing = float(config.loss.label_smoothing)
    num_classes = len(classes)
    weights = None if class_weights is None else jnp.asarray(class_weights, jnp.float32)

    def loss(params, logits, batch):
        logits = logits.astype(jnp.float32)
        # Mixup (jaxmusic.augment) gives soft labels; the accuracy stays on the hard ones.
        onehot = batch["label_soft"] if "label_soft" in batch else jax.nn.one_hot(batch["label"], num_classes)
        if smoothing:
            onehot = onehot * (1 - smoothing) + smoothing / num_classes
        per_example = -jnp.sum(onehot * jax.nn.log_softmax(logits), axis=-1)
        w = batch["mask"].astype(jnp.float32)
        if weights is not None:
            w = w * (batch["label_soft"] @ weights if "label_soft" in batch else weights[batch["label"]])
        total = jnp.sum(per_example * w) / jnp.maximum(jnp.sum(w), 1e-6)
        m = batch["mask"].astype(jnp.float32)
        acc = jnp.sum((logits.argmax(-1) == batch["label"]) * m) / jnp.maximum(m.sum(), 1)
        return total, {"accuracy": acc}

    def report(outputs, truth):
        return host_metrics.classification_report(truth, outputs.argmax(-1), classes)

    return Task("genre", "genre", tuple(classes), config.train.select_metric,
                config.train.select_mode,
                lambda: heads.ClassifierHead(num_classes=num_classes), loss, report)


def _classification_task(config, classes: Sequence[str], class_weights: np.ndarray | None,
                         axis: int | None = None, edges: Sequence[float] | None = None) -> Task:
    """Softmax classification over any classes: a genre-kind set's (e.g. emotions from a
    clip table), or ``len(edges) + 1`` bins of the multitask axis ``axis``. Selected on
    macro F1 unless ``train.select_metric`` says otherwise."""
    base = _genre_task(config, classes, class_weights)
    select = config.train.select_metric
    if select == "accuracy":  # the base default; macro F1 is the emotion studies' selection metric
        select = "macro_f1"
    if edges is None:
        return dataclasses.replace(base, name="classification", select_metric=select)

    def loss(params, logits, batch):
        label = bin_labels(batch["targets"][:, axis], edges)
        b = dict(batch, label=jnp.maximum(label, 0), mask=batch["mask"] & (label >= 0))
        return base.loss(params, logits, b)

    def report(outputs, truth):
        truth = np.asarray(truth)
        keep = ~np.isnan(truth)
        return host_metrics.classification_report(truth[keep].astype(int), outputs[keep].argmax(-1), classes)

    return dataclasses.replace(base, name="classification", data_kind="multitask", select_metric=select,
                               loss=loss, report=report, bin_axis=int(axis),
                               bin_edges=tuple(float(e) for e in edges))


def regression_loss_fn(config, axes: Sequence[int], multitask: bool):
    """The per-axis loss, summed with the task weights (multitask) or averaged."""
    name = config.loss.name
    if name not in ("mse", "spearman", "mse+spearman"):
        raise ValueError(f"loss.name must be mse, spearman or mse+spearman, got {name!r}")
    tau = float(config.loss.spearman_temperature)
    sp_w = float(config.loss.spearman_weight)
    k = len(axes)
    task_w = jnp.asarray(config.loss.task_weights, jnp.float32)[jnp.asarray(axes)] if multitask \
        else jnp.full((k,), 1.0 / k)
    uncertainty = multitask and bool(config.loss.uncertainty_weighting)
    axes_idx = jnp.asarray(axes)

    def per_axis(pred, target, mask):
        m = mask.astype(jnp.float32)
        terms = {}
        total = 0.0
        if "mse" in name:
            terms["mse"] = jnp.sum((pred - target) ** 2 * m) / jnp.maximum(m.sum(), 1)
            total = total + terms["mse"]
        if "spearman" in name:
            terms["soft_spearman"] = soft_spearman(pred, target, mask, tau)
            total = total + (sp_w if "mse" in name else 1.0) * (1.0 - terms["soft_spearman"])
        return total, terms

    def loss(params, outputs, batch):
        outputs = outputs.astype(jnp.float32)
        targets = batch["targets"][:, axes_idx]
        mask = batch["mask"]
        losses, terms = jax.vmap(per_axis, in_axes=(1, 1, None))(outputs, targets, mask)
        if uncertainty:
            log_vars = params["head"]["log_vars"]
            total = jnp.sum(task_w * (jnp.exp(-log_vars) * losses + 0.5 * log_vars))
        else:
            total = jnp.sum(task_w * losses)
        out = {f"loss_axis{i}": losses[i] for i in range(k)}
        out.update({f"{t}_mean": v.mean() for t, v in terms.items()})
        return total, out

    return loss


def _regression_task(config, multitask: bool) -> Task:
    names = tuple(config.data.targets)
    unknown = [n for n in names if n not in lab.TARGETS]
    if unknown or not names:
        raise ValueError(f"data.targets must be a non-empty subset of {lab.TARGETS}, got {names}")
    axes = [lab.TARGETS.index(n) for n in names]
    loss = regression_loss_fn(config, axes, multitask)

    def make_head():
        if multitask:
            return MultitaskHead(num_tasks=len(axes),
                                 uncertainty=bool(config.loss.uncertainty_weighting))
        return heads.RegressionHead(num_outputs=len(axes))

    def report(outputs, truth):
        return host_metrics.regression_report(np.asarray(truth)[:, axes], outputs, names)

    select = config.train.select_metric
    if select == "accuracy":  # the base default is a genre metric
        select = "spearman_mean"
    return Task("multitask" if multitask else "regression", "multitask", names, select,
                config.train.select_mode, make_head, loss, report)


def make_task(config, classes: Sequence[str] | None = None,
              class_counts: Sequence[int] | None = None,
              bins: Mapping[str, Any] | None = None) -> Task:
    """The task of ``config.task``. ``classes`` / ``class_counts``: the set's classes and
    training counts (genre, classification); ``bins``: ``{"axis": name, "edges": [...]}``
    for classification over bins of a multitask axis (``data.bins``)."""
    if config.task in ("genre", "classification"):
        if not classes:
            raise ValueError(f"a {config.task} task needs the class names of its prepared set")
        weights = None
        if config.train.class_weights:
            counts = np.maximum(np.asarray(class_counts, np.float64), 1)
            weights = counts.sum() / (len(counts) * counts)  # sklearn's "balanced"
        if config.task == "genre":
            return _genre_task(config, classes, weights)
        if bins:
            return _classification_task(config, classes, weights, lab.TARGETS.index(bins["axis"]),
                                        bins["edges"])
        return _classification_task(config, classes, weights)
    if config.task in ("regression", "multitask"):
        return _regression_task(config, multitask=config.task == "multitask")
    raise ValueError(f"task must be genre, classification, regression or multitask, got {config.task!r}")


def selection_value(task: Task, report: dict) -> float:
    """The named validation metric out of a host report (flat keys, or
    ``spearman.<axis>``-style dotted keys)."""
    value: Any = report
    for part in task.select_metric.split("."):
        if not isinstance(value, dict) or part not in value:
            raise KeyError(f"selection metric {task.select_metric!r} is not in the "
                           f"validation report (has: {sorted(report)})")
        value = value[part]
    return float(value)
