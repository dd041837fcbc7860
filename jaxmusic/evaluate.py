"""`jaxmusic evaluate`: score a run's best checkpoint and write its reports.

Genre runs are scored on the test split of their own set and of its twin
(full-resolution <-> beat-synchronised), plus the validation split:
``metrics.json`` holds, per set, accuracy, per-class precision/recall/F1,
macro/micro/weighted averages and the confusion matrix; ``metrics.md`` the
tables; ``confusion_<set>.png`` the matrices.

Regression and multitask runs are scored on the validation split (the lab gives
no test labels): Spearman per axis and its mean, Pearson, MSE. Their test
predictions go to ``predictions_<set>.csv`` in the lab's format
(``Id,valence,energy,danceability``).
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np

from jaxmusic import parallel, runs, steps
from jaxmusic.data import lab
from jaxmusic.data.pipeline import PreparedSet, eval_batches


def twin_set(name: str) -> str:
    return name[: -len("_beat")] if name.endswith("_beat") else name + "_beat"


# --- a whole split through a model ----------------------------------------------------------

def predict_split(run: runs.Run, variables, eval_step, mesh, pset: PreparedSet, split: str,
                  batch_size: int, with_latent: bool = False) -> dict:
    """Outputs for every clip of a split, each exactly once (masked padding dropped).

    ``eval_step(variables, batch)`` is a compiled step (:func:`jaxmusic.steps.compile_steps`);
    the clips are read as the run reads data: its view, length and training statistics."""
    cfg = run.pipeline_config(parallel.local_batch_size(batch_size))
    n_steps = pset.eval_steps(split, cfg.batch_size, jax.process_count())
    outs, latents, truth, ids, masks, losses, weights = [], [], [], [], [], [], []
    for batch in eval_batches(pset, split, cfg, process_index=jax.process_index(),
                              process_count=jax.process_count(), steps=n_steps):
        result = eval_step(variables, parallel.to_global(batch, mesh))
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
        res["latent"] = np.concatenate([parallel.gather(lt) for lt in latents])[mask]
    w = np.asarray(weights, np.float64)
    res["loss"] = float(np.dot(np.asarray(jax.device_get(losses)), w) / max(w.sum(), 1))
    return res


def evaluate_split(run: runs.Run, variables, eval_step, mesh, pset, split, batch_size) -> dict:
    res = predict_split(run, variables, eval_step, mesh, pset, split, batch_size)
    report = run.task.report(res["outputs"], res["truth"])
    report["loss"] = res["loss"]
    return report


class Evaluator:
    """A run's best (or latest) checkpoint on this process's devices, with its
    compiled eval step: scores or predicts any prepared split."""

    def __init__(self, workdir: str | Path, which: str = "best", verify: str | None = None):
        self.workdir = Path(workdir)
        self.mesh = parallel.make_mesh()
        self.run, host_vars, self.meta = runs.load_run(workdir, which,
                                                       sharding=parallel.replicated(self.mesh),
                                                       verify=verify)
        # shard check of every prepared set opened here (default: the run's data.verify)
        self.verify = verify or self.run.config.data.get("verify", "auto")
        self.variables = steps.variables_on(self.mesh, host_vars)
        _, self.eval_step = steps.compile_steps(self.run, self.mesh)

    def batch_size(self, requested: int | None = None) -> int:
        bs = requested or max(self.run.config.train.batch_size, jax.device_count())
        return -(-bs // jax.device_count()) * jax.device_count()

    def prepared(self, name: str) -> PreparedSet:
        return PreparedSet.open(Path(self.run.config.data.prepared) / name, verify=self.verify)

    def predict(self, pset: PreparedSet, split: str, batch_size: int | None = None,
                with_latent: bool = False) -> dict:
        return predict_split(self.run, self.variables, self.eval_step, self.mesh, pset, split,
                             self.batch_size(batch_size), with_latent)

    def score(self, pset: PreparedSet, split: str, batch_size: int | None = None) -> dict:
        res = self.predict(pset, split, batch_size)
        report = self.run.task.report(res["outputs"], res["truth"])
        report["loss"] = res["loss"]
        return report


# --- a run's reports ------------------------------------------------------------------------

def evaluate_run(workdir: str | Path, sets: list[str] | None = None, progress: bool = True,
                 batch_size: int | None = None, verify: str | None = None) -> dict:
    workdir = Path(workdir)
    ev = Evaluator(workdir, verify=verify)
    run, config = ev.run, ev.run.config
    prepared_root = Path(config.data.prepared)
    own = run.record["set"]
    out: dict = {"run": config.name, "task": run.task.name, "model": config.model.name,
                 "set": own, "view": run.record["view"],
                 "checkpoint_step": ev.meta["restored_step"], "best_epoch": ev.meta.get("best_epoch")}
    if run.pset is not None and run.pset.has_split("validation"):
        out["validation"] = ev.score(run.pset, "validation", batch_size)
    if run.task.data_kind == "genre":
        names = sets or [own] + list(config.data.eval_sets or [twin_set(own)])
        out["test"] = {}
        for name in dict.fromkeys(names):
            path = prepared_root / name
            if not (path / "manifest.json").exists():
                if progress:
                    print(f"evaluate: {name} is not prepared under {prepared_root}; skipped")
                continue
            pset = PreparedSet.open(path, verify=ev.verify)
            if pset.classes != list(run.task.label_names):
                raise ValueError(f"{name} has classes {pset.classes}, the run was trained on "
                                 f"{list(run.task.label_names)}")
            out["test"][name] = ev.score(pset, "test", batch_size)
    else:
        # The lab gives no test labels: the validation split is the score.
        if "validation" in out:
            keys = ("accuracy", "macro_f1") if run.task.is_classifier else ("spearman", "spearman_mean")
            out.update({k: out["validation"][k] for k in keys})
        names = sets or [own]
        out["predictions"] = {}
        for name in dict.fromkeys(names):
            pset = PreparedSet.open(prepared_root / name, verify=ev.verify)
            if not pset.has_split("test"):
                continue
            res = ev.predict(pset, "test", batch_size)
            path = workdir / f"predictions_{name}.csv"
            write_predictions(path, res["ids"], res["outputs"], run.task.label_names)
            out["predictions"][name] = str(path)
            if not np.isnan(res["truth"]).all():
                out.setdefault("test", {})[name] = run.task.report(res["outputs"], res["truth"])
    if parallel.is_main_process():
        (workdir / "metrics.json").write_text(json.dumps(out, indent=2) + "\n")
        (workdir / "metrics.md").write_text(markdown_report(out, run.task.label_names))
        if run.task.is_classifier:
            for name, report in out.get("test", {}).items():
                plot_confusion(report, run.task.label_names,
                               workdir / f"confusion_{name}.png", f"{config.name} on {name}")
        if progress:
            print(markdown_report(out, run.task.label_names))
    return out


def write_predictions(path: Path, ids, outputs: np.ndarray, names) -> None:
    """The lab's prediction file: ``Id,valence,energy,danceability`` (axes the
    model does not predict are left empty)."""
    cols = {n: i for i, n in enumerate(names)}
    lines = [lab.MULTITASK_HEADER]
    for clip_id, row in zip(ids, outputs):
        vals = [f"{float(row[cols[n]]):.6f}" if n in cols else "" for n in lab.TARGETS]
        lines.append(",".join([clip_id] + vals))
    path.write_text("\n".join(lines) + "\n")


def markdown_report(out: dict, label_names) -> str:
    lines = [f"## {out['run']} ({out['model']}, {out['task']}, {out['set']}, view {out['view']})", ""]
    if out["task"] in ("genre", "classification"):
        sets = {"validation": out.get("validation"), **{f"test: {k}": v
                                                         for k, v in out.get("test", {}).items()}}
        lines += ["| split | clips | accuracy | macro P | macro R | macro F1 | micro F1 | weighted F1 |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for name, r in sets.items():
            if r:
                lines.append(f"| {name} | {r['count']} | {r['accuracy']:.3f} | "
                             f"{r['macro_precision']:.3f} | {r['macro_recall']:.3f} | "
                             f"{r['macro_f1']:.3f} | {r['micro_f1']:.3f} | {r['weighted_f1']:.3f} |")
        per_class = dict(out.get("test", {}))
        if not per_class and out.get("validation"):   # binned classes: no test labels
            per_class = {"validation": out["validation"]}
        for name, r in per_class.items():
            lines += ["", f"Per class on {name}:", "",
                      "| class | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
            for c, v in r["per_class"].items():
                lines.append(f"| {c} | {v['precision']:.3f} | {v['recall']:.3f} | "
                             f"{v['f1']:.3f} | {v['support']} |")
    else:
        r = out.get("validation")
        if r:
            names = list(r["spearman"])
            lines += ["Validation (held out from train; the lab gives no test labels):", "",
                      "| metric | " + " | ".join(names) + " | mean |",
                      "|---|" + "---:|" * (len(names) + 1)]
            for metric in ("spearman", "pearson", "mse"):
                vals = [r[metric][n] for n in names]
                lines.append(f"| {metric} | " + " | ".join(f"{v:.3f}" for v in vals)
                             + f" | {np.mean(vals):.3f} |")
    return "\n".join(lines) + "\n"


def plot_confusion(report: dict, classes, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(report["confusion_matrix"])
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    im = ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=60, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            if cm[i, j]:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if cm[i, j] > cm.max() / 2 else "black")
    ax.set_title(f"{title}\naccuracy {report['accuracy']:.3f}, macro F1 {report['macro_f1']:.3f}")
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
