"""Host-side metrics over a whole evaluation set (numpy; never averaged over batches).

``classification_report`` follows sklearn's semantics (zero_division=0), and
``spearman`` follows ``scipy.stats.spearmanr`` (average ranks for ties); the
tests check both against those libraries.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    cm = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(cm, (np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)), 1)
    return cm


def _prf(tp, fp, fn):
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 0.0)
        r = np.where(tp + fn > 0, tp / np.maximum(tp + fn, 1), 0.0)
        f = np.where(p + r > 0, 2 * p * r / np.where(p + r > 0, p + r, 1), 0.0)
    return p, r, f


def classification_report(y_true: Sequence[int], y_pred: Sequence[int],
                          classes: Sequence[str]) -> dict:
    """Accuracy, per-class precision/recall/F1/support, macro, micro and weighted
    averages and the confusion matrix (rows: true class, columns: predicted)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    k = len(classes)
    cm = confusion_matrix(y_true, y_pred, k)
    tp = np.diag(cm).astype(np.float64)
    fp = cm.sum(0) - tp
    fn = cm.sum(1) - tp
    support = cm.sum(1)
    p, r, f = _prf(tp, fp, fn)
    mp, mr, mf = _prf(tp.sum(), fp.sum(), fn.sum())
    w = support / max(support.sum(), 1)
    return {
        "accuracy": float(tp.sum() / max(len(y_true), 1)),
        "macro_precision": float(p.mean()), "macro_recall": float(r.mean()),
        "macro_f1": float(f.mean()),
        "micro_precision": float(mp), "micro_recall": float(mr), "micro_f1": float(mf),
        "weighted_f1": float((f * w).sum()),
        "per_class": {c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                          "support": int(support[i])} for i, c in enumerate(classes)},
        "confusion_matrix": cm.tolist(),
        "count": int(len(y_true)),
    }


def rankdata(x: np.ndarray) -> np.ndarray:
    """Ranks from 1 with ties given their average rank (scipy's 'average')."""
    x = np.asarray(x)
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    # Start index of each run of equal values.
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])
    ends = np.r_[starts[1:], len(xs)]
    avg = (starts + ends - 1) / 2.0 + 1.0
    ranks = np.empty(len(x), np.float64)
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, np.float64) - np.mean(a)
    b = np.asarray(b, np.float64) - np.mean(b)
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else float("nan")


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    return pearson(rankdata(a), rankdata(b))


def regression_report(targets: np.ndarray, preds: np.ndarray, names: Sequence[str]) -> dict:
    """Spearman, Pearson and MSE per axis, and the mean Spearman."""
    targets, preds = np.asarray(targets), np.asarray(preds)
    out: dict = {"spearman": {}, "pearson": {}, "mse": {}}
    for i, n in enumerate(names):
        out["spearman"][n] = spearman(targets[:, i], preds[:, i])
        out["pearson"][n] = pearson(targets[:, i], preds[:, i])
        out["mse"][n] = float(np.mean((targets[:, i] - preds[:, i]) ** 2))
    out["spearman_mean"] = float(np.mean(list(out["spearman"].values())))
    out["count"] = int(len(targets))
    return out


def softmax(logits: np.ndarray) -> np.ndarray:
    """Class probabilities of ``[..., C]`` logits on the host (numerically stable)."""
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)
