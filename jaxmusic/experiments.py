"""The lab's comparisons, each as one command over ordinary runs.

* ``jaxmusic transfer``: a model trained from scratch, fine-tuned from a genre
  run's best checkpoint or a pretrained tagger (``musicnn:MSD_musicnn``), and with
  that backbone frozen (head only), on the same split, over one or more seeds
  (lab step 8; the emotion studies' frozen / whole fine-tuning).
* ``jaxmusic compare-multitask``: one multitask model (three heads) against one
  single-axis model per axis, same backbone, split and seed (lab step 9).
* ``jaxmusic cv``: k-fold cross-validation of a config (mean +/- std).
* ``jaxmusic predict-set``: predictions for a whole prepared split in the lab's
  file format (``Id,valence,energy,danceability``).

Each comparison writes ``comparison.json`` (``{"title", "columns", "rows"}``, read by
the report) and ``comparison.md`` into its work directory.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np

from jaxmusic import runs
from jaxmusic.data import lab, tfrecords
from jaxmusic.evaluate import Evaluator, evaluate_run, write_predictions
from jaxmusic.metrics import softmax
from jaxmusic.train import train



def _train_and_score(config, workdir: Path, progress: bool) -> dict:
    train(config, workdir, progress=progress)
    return evaluate_run(workdir, progress=False)


def _axis_row(name: str, metrics: dict, axes=lab.TARGETS) -> list:
    sp = metrics["validation"]["spearman"]
    vals = [sp.get(a) for a in axes]
    return [name] + [None if v is None else round(v, 4) for v in vals] + [
        round(float(np.mean([v for v in vals if v is not None])), 4)]


def write_comparison(workdir: Path, title: str, columns: list, rows: list, notes: str = "") -> dict:
    table = {"title": title, "columns": columns, "rows": rows, "notes": notes}
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "comparison.json").write_text(json.dumps(table, indent=2) + "\n")
    fmt = lambda v: "" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v))
    md = [f"## {title}", "", "| " + " | ".join(columns) + " |",
          "|---|" + "---:|" * (len(columns) - 1)]
    md += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    if notes:
        md += ["", notes]
    (workdir / "comparison.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return table


def _class_scores(metrics: dict) -> dict:
    """Macro F1 and accuracy of a classifier run: on its first labelled test set, else validation."""
    tests = metrics.get("test") or {}
    where, r = (next(iter(tests.items())) if tests else ("validation", metrics["validation"]))
    return {"on": where, "macro_f1": float(r["macro_f1"]), "accuracy": float(r["accuracy"])}


def _mean_std(values) -> str:
    v = np.asarray(values, np.float64)
    return f"{v.mean():.4f} +/- {v.std(ddof=1) if len(v) > 1 else 0.0:.4f}"


def transfer(config, source_run: str | Path, workdir: str | Path, progress: bool = True,
             seeds=(None,)) -> dict:
    """Scratch vs fine-tuned (whole network) vs frozen backbone (head only), each from
    ``source_run``: a genre run directory or a pretrained tagger ``musicnn:<name>``.
    Regression tasks: validation Spearman per axis; classification (genre,
    classification): macro F1 and accuracy on the test split (validation when the
    set's test split has no labels). With several ``seeds`` (``train.seed``), every
    variant is trained once per seed and the table gives mean +/- std (ddof 1)."""
    workdir = Path(workdir)
    base = runs.match_source_run(config, source_run)
    variants = {
        "scratch": {},
        "fine-tune (whole network)": {"init_from": str(source_run)},
        "frozen backbone (head only)": {"init_from": str(source_run), "freeze_backbone": True},
    }
    classifier = runs.build_run(base).task.is_classifier
    seeds = [s for s in seeds if s is not None] or [int(base.train.seed)]
    tags = dict(zip(variants, ["scratch", "finetune", "frozen"]))
    results: dict[str, list] = {name: [] for name in variants}
    # Seed-major: every variant of a seed before the next seed, so a partial run compares like with like.
    for seed in seeds:
        for name, changes in variants.items():
            cfg = copy.deepcopy(base)
            cfg.name = f"{base.name}_{tags[name]}"
            cfg.train.seed = int(seed)
            for k, v in changes.items():
                cfg.train[k] = v
            run_dir = workdir / tags[name] if len(seeds) == 1 else workdir / f"{tags[name]}_seed{seed}"
            metrics = _train_and_score(cfg, run_dir, progress)
            results[name].append(_class_scores(metrics) if classifier
                                 else _axis_row(name, metrics, config.data.targets))
            workdir.mkdir(parents=True, exist_ok=True)
            (workdir / "transfer_seeds.json").write_text(json.dumps({"seeds": seeds, "runs": results}, indent=2) + "\n")
    rows = []
    for name, res in results.items():
        if classifier:
            f1 = [sc["macro_f1"] for sc in res]
            acc = [sc["accuracy"] for sc in res]
            rows.append([name, _mean_std(f1) if len(seeds) > 1 else round(f1[0], 4),
                         _mean_std(acc) if len(seeds) > 1 else round(acc[0], 4), res[0]["on"]])
        elif len(seeds) == 1:
            rows.append(res[0])
        else:
            cols = list(zip(*[r[1:] for r in res]))
            rows.append([name] + [_mean_std([v for v in c if v is not None]) for c in cols])
    src_name = str(source_run) if str(source_run).startswith("musicnn:") else Path(source_run).name
    title = (f"Transfer from {src_name} to {config.data.set} ({base.model.name}, view {base.data.view}"
             + (f", seeds {', '.join(map(str, seeds))})" if len(seeds) > 1 else ")"))
    if classifier:
        columns = ["variant", "macro F1", "accuracy", "scored on"]
        notes = "Same split for every row" + (f"; mean +/- std over {len(seeds)} seeds." if len(seeds) > 1 else ".")
    else:
        columns = ["variant", *config.data.targets, "mean"]
        notes = ("Validation Spearman (held out from train, same split for every row"
                 + (f"; mean +/- std over {len(seeds)} seeds)." if len(seeds) > 1 else ", same seed)."))
    return write_comparison(workdir, title, columns, rows, notes)


def compare_multitask(config, workdir: str | Path, progress: bool = True) -> dict:
    workdir = Path(workdir)
    rows = []
    mt = copy.deepcopy(config)
    mt.task = "multitask"
    mt.data.targets = lab.TARGETS
    mt.name = f"{config.name}_multitask"
    rows.append(_axis_row("multitask (3 heads)", _train_and_score(mt, workdir / "multitask",
                                                                  progress)))
    single = []
    for axis in lab.TARGETS:
        cfg = copy.deepcopy(config)
        cfg.task = "regression"
        cfg.data.targets = (axis,)
        cfg.name = f"{config.name}_{axis}"
        single.append(_train_and_score(cfg, workdir / axis, progress)["validation"]["spearman"][axis])
    rows.append(["single-task (one model per axis)"] + [round(v, 4) for v in single]
                + [round(float(np.mean(single)), 4)])
    return write_comparison(
        workdir, f"Multitask vs single-task on {config.data.set} ({config.model.name})",
        ["model", *lab.TARGETS, "mean"], rows,
        "Validation Spearman (held out from train, same split and seed for every row).")


def cross_validate(config, folds: int, workdir: str | Path, shards: int = 2,
                   progress: bool = True) -> dict:
    workdir = Path(workdir)
    select = runs.build_run(config).task.select_metric  # also checks the prepared set exists
    values, rows = [], []
    for fold in range(folds):
        prepared = workdir / "prepared" / f"fold{fold}"
        src = Path(config.data.prepared) / config.data.set / "manifest.json"
        split = json.loads(src.read_text())["split"]
        tfrecords.prepare(config.data.root, config.data.set, prepared, tfrecords.PrepareOptions(
            shards=shards, seed=split["seed"], folds=folds, fold=fold, progress=progress))
        cfg = copy.deepcopy(config)
        cfg.data.prepared = str(prepared)
        cfg.name = f"{config.name}_fold{fold}"
        metrics = _train_and_score(cfg, workdir / f"fold{fold}", progress)
        value = metrics["validation"]
        for part in select.split("."):
            value = value[part]
        values.append(float(value))
        rows.append([f"fold {fold}", round(float(value), 4)])
    mean, std = float(np.mean(values)), float(np.std(values, ddof=1)) if folds > 1 else 0.0
    rows.append(["mean +/- std", f"{mean:.4f} +/- {std:.4f}"])
    (workdir / "cv.json").write_text(json.dumps(
        {"metric": select, "folds": folds, "values": values, "mean": mean, "std": std}, indent=2))
    return write_comparison(workdir, f"{folds}-fold cross-validation of {config.name}",
                            ["fold", f"validation {select}"], rows)


def predict_set(workdir: str | Path, set_split: str, out: str | Path | None = None) -> Path:
    """Predictions of a run's best checkpoint for ``<set>/<split>`` of its prepared root."""
    workdir = Path(workdir)
    set_name, _, split = set_split.partition("/")
    split = split or "test"
    ev = Evaluator(workdir)
    run = ev.run
    res = ev.predict(ev.prepared(set_name), split)
    out = Path(out) if out else workdir / f"predictions_{set_name}_{split}.csv"
    if run.task.data_kind == "genre":
        names = run.task.label_names
        probs = softmax(res["outputs"])
        lines = ["Id,Genre," + ",".join(names)]
        lines += [f"{i},{names[int(p.argmax())]}," + ",".join(f"{v:.6f}" for v in p)
                  for i, p in zip(res["ids"], probs)]
        out.write_text("\n".join(lines) + "\n")
    else:
        write_predictions(out, res["ids"], res["outputs"], run.task.label_names)
    print(f"{len(res['ids'])} predictions -> {out}")
    return out
