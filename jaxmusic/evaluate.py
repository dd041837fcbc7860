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
from flax import struct

from jaxmusic import checkpoint, parallel
from jaxmusic.config import read_config
from jaxmusic.data import lab
from jaxmusic.data.pipeline import PreparedSet


@struct.dataclass
class Variables:
    params: dict
    batch_stats: dict | None = None


def twin_set(name: str) -> str:
    return name[: -len("_beat")] if name.endswith("_beat") else name + "_beat"


def load_run(workdir: str | Path, which: str = "best"):
    """(run, variables on devices, eval_step, mesh, meta) rebuilt from a run directory."""
    from jaxmusic.train import build_run, make_steps

    workdir = Path(workdir)
    if not (workdir / "config.json").exists():
        raise FileNotFoundError(f"{workdir}: no config.json (not a jaxmusic run directory)")
    config = read_config(workdir / "config.json")
    run = build_run(config)
    mesh = parallel.make_mesh()
    host_vars, meta = checkpoint.load_variables(workdir, which, parallel.replicated(mesh))
    variables = jax.device_put(Variables(host_vars["params"], host_vars.get("batch_stats")),
                               parallel.replicated(mesh))
    _, eval_step = make_steps(run, mesh)
    return run, variables, eval_step, mesh, meta


def evaluate_run(workdir: str | Path, sets: list[str] | None = None, progress: bool = True,
                 batch_size: int | None = None) -> dict:
    from jaxmusic.train import predict_split

    workdir = Path(workdir)
    run, variables, eval_step, mesh, meta = load_run(workdir)
    config = run.config
    bs = batch_size or max(config.train.batch_size, jax.device_count())
    bs = -(-bs // jax.device_count()) * jax.device_count()
    prepared_root = Path(config.data.prepared)
    out: dict = {"run": config.name, "task": run.task.name, "model": config.model.name,
                 "set": run.pset.name, "view": config.data.view,
                 "checkpoint_step": meta["restored_step"], "best_epoch": meta.get("best_epoch")}

    def score(pset, split):
        res = predict_split(run, variables, eval_step, mesh, pset, split, bs)
        report = run.task.report(res["outputs"], res["truth"])
        report["loss"] = res["loss"]
        return report, res

    if run.pset.has_split("validation"):
        out["validation"], _ = score(run.pset, "validation")
    if run.task.data_kind == "genre":
        names = sets or [run.pset.name] + list(config.data.eval_sets or [twin_set(run.pset.name)])
        out["test"] = {}
        for name in dict.fromkeys(names):
            path = prepared_root / name
            if not (path / "manifest.json").exists():
                if progress:
                    print(f"evaluate: {name} is not prepared under {prepared_root}; skipped")
                continue
            pset = PreparedSet.open(path)
            if pset.classes != list(run.task.label_names):
                raise ValueError(f"{name} has classes {pset.classes}, the run was trained on "
                                 f"{list(run.task.label_names)}")
            out["test"][name], _ = score(pset, "test")
    else:
        # The lab gives no test labels: the validation split is the score.
        if "validation" in out:
            out.update({k: out["validation"][k] for k in ("spearman", "spearman_mean")})
        names = sets or [run.pset.name]
        out["predictions"] = {}
        for name in dict.fromkeys(names):
            pset = PreparedSet.open(prepared_root / name)
            if not pset.has_split("test"):
                continue
            res = predict_split(run, variables, eval_step, mesh, pset, "test", bs)
            path = workdir / f"predictions_{name}.csv"
            write_predictions(path, res["ids"], res["outputs"], run.task.label_names)
            out["predictions"][name] = str(path)
            if not np.isnan(res["truth"]).all():
                out.setdefault("test", {})[name] = run.task.report(res["outputs"], res["truth"])
    if parallel.is_main_process():
        (workdir / "metrics.json").write_text(json.dumps(out, indent=2) + "\n")
        (workdir / "metrics.md").write_text(markdown_report(out, run.task.label_names))
        if run.task.data_kind == "genre":
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
    if out["task"] == "genre":
        sets = {"validation": out.get("validation"), **{f"test: {k}": v
                                                         for k, v in out.get("test", {}).items()}}
        lines += ["| split | clips | accuracy | macro P | macro R | macro F1 | micro F1 | weighted F1 |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for name, r in sets.items():
            if r:
                lines.append(f"| {name} | {r['count']} | {r['accuracy']:.3f} | "
                             f"{r['macro_precision']:.3f} | {r['macro_recall']:.3f} | "
                             f"{r['macro_f1']:.3f} | {r['micro_f1']:.3f} | {r['weighted_f1']:.3f} |")
        for name, r in out.get("test", {}).items():
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


def add_arguments(parser) -> None:
    parser.add_argument("--workdir", required=True, help="a run directory")
    parser.add_argument("--set", dest="sets", action="append",
                        help="prepared set to test on (repeat; default: the run's set and its twin)")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--quiet", action="store_true")


def run(args) -> int:
    evaluate_run(args.workdir, args.sets, progress=not args.quiet, batch_size=args.batch_size)
    return 0
