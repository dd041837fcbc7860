"""Classic baselines on a lab set, written as run directories beside the deep runs.

For every model and every seed ``s`` in ``0 .. seeds-1``: the training split is
cut into train and validation exactly as ``jaxmusic prepare --seed s`` cuts it
(:func:`jaxmusic.data.tfrecords.split_train_validation`: stratified by class,
whole groups where the set has ``train_groups.txt``), the model is fitted on
the train part and scored on validation and on the set's test split. Seed 0's
scores are the run's ``metrics.json`` (the deep runs' format: accuracy,
macro/micro/weighted F1, per-class report, confusion matrix; Spearman per axis
for regression); ``seeds`` there holds every seed's headline numbers and their
mean and sample standard deviation (``ddof=1``).

``search``: per seed, a grid search (:mod:`jaxmusic.baselines.models` grids) with
``folds``-fold cross-validation on that seed's train part, stratified and
group-aware (``StratifiedGroupKFold`` / ``GroupKFold`` when the set has groups),
scored by macro F1 (genre) or mean Spearman (regression); the seed's model is fitted
with its own search's best parameters, so no validation clip takes part in choosing
them. Classifiers are fitted on each fold's labels renumbered (a fold may lack a
class); a grid none of whose points has a CV score is an error naming the model.

``voting``: per seed, soft voting (mean class probabilities; regression: mean
prediction) over the three other models with the best validation score; those
members give its test scores. Its validation score is cross-fitted, since the members
were chosen on validation: the split is cut in two halves (stratified, whole groups)
and each half is scored by the vote of the three best on the other half
(``voting_validation_members``).

Recorded skips (in ``baselines.json`` and printed, never a traceback): an
optional package that is missing (its model), a model its estimator refuses for
this data (e.g. more neighbours than training clips: that model), features
constant over the training clips (dropped), voting on a validation split that cannot be
cut in two. Refused with a one-line :class:`DatasetError`: a class with fewer training
clips (or groups) than ``folds`` under ``search``, a search grid with no CV score, NaN
in an array.
"""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn import model_selection as ms
from sklearn.exceptions import FitFailedWarning
from sklearn.feature_selection import VarianceThreshold
from sklearn.metrics import make_scorer

from jaxmusic import metrics, workers
from jaxmusic.baselines import models as M
from jaxmusic.baselines.table import FeatureTable, load_table
from jaxmusic.data import lab
from jaxmusic.data.lab import DatasetError
from jaxmusic.data.tfrecords import read_groups, split_train_validation
from jaxmusic.evaluate import markdown_report, plot_confusion, write_predictions

SUMMARY_NAME = "baselines.json"
COMPARISON_NAME = "comparison_baselines.json"
GENRE_KEYS = ("accuracy", "macro_f1", "micro_f1", "weighted_f1", "macro_precision",
              "macro_recall")
VIEW = "handcrafted"


@dataclasses.dataclass
class Options:
    models: list[str] | None = None        # None: every model of the set's kind
    seeds: int = 5
    search: bool = False
    folds: int = 3
    validation_fraction: float = 0.2
    jobs: int = 1
    use_audio: bool = True
    progress: bool = True


def mean_std(values) -> dict:
    v = np.asarray([x for x in values if x is not None], np.float64)
    return {"mean": float(v.mean()) if v.size else None,
            "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
            "values": [float(x) for x in v]}


def drop_constant(train: FeatureTable, set_dir: Path) -> tuple[np.ndarray, list[dict]]:
    """Columns to keep (scikit-learn's ``VarianceThreshold``: the constant ones go), and a
    record of each constant one (name, value, why)."""
    X = train.X
    try:
        keep = VarianceThreshold().fit(X).get_support()
    except ValueError:           # every column constant
        raise DatasetError(f"every feature is constant over the {len(X)} training clips",
                           file=set_dir) from None
    dropped = [{"feature": train.names[i], "value": float(X[0, i]),
                "reason": f"constant over the {len(X)} training clips"}
               for i in np.flatnonzero(~keep)]
    return np.flatnonzero(keep), dropped


def seed_splits(table: FeatureTable, set_dir: Path, seeds: int, fraction: float):
    """[(train indices, validation indices)] per seed, as ``prepare --seed s`` splits."""
    groups = read_groups(set_dir, "train")
    index = {e.id: i for i, e in enumerate(table.entries)}
    out = []
    for s in range(seeds):
        tr, va = split_train_validation(table.entries, fraction, s, groups)
        if not va:
            raise DatasetError(f"seed {s}: the validation split is empty "
                               f"({len(table.entries)} training clips)", file=set_dir)
        out.append((np.asarray([index[e.id] for e in tr]), np.asarray([index[e.id] for e in va])))
    return out


def check_folds(y: np.ndarray, groups, folds: int, classes, kind: str, set_dir: Path) -> None:
    """Refuse, in one line, a search the data cannot fold ``folds`` ways: a class needs
    ``folds`` training clips, or with groups ``folds`` groups (a class inside fewer groups
    is missing from the training part of a fold)."""
    if folds < 2:
        raise DatasetError(f"--folds must be at least 2, got {folds}")
    if groups is not None and len(set(groups)) < folds:
        raise DatasetError(f"only {len(set(groups))} groups in the training part, fewer than "
                           f"--folds {folds}", file=set_dir / "train_groups.txt")
    if kind == "genre":
        counts = np.bincount(y, minlength=len(classes))
        if groups is None:
            units, what, file = counts, "training clip(s)", set_dir
        else:
            units = [len({g for g, c in zip(groups, y) if c == k}) for k in range(len(classes))]
            what, file = "group(s) of training clips", set_dir / "train_groups.txt"
        short = [(classes[c], int(n)) for c, n in enumerate(units) if counts[c] and n < folds]
        if short:
            name, n = min(short, key=lambda t: t[1])
            raise DatasetError(f"class {name!r} has {n} {what}, fewer than --folds "
                               f"{folds}: lower --folds or leave --search off", file=file)
    elif len(y) < folds:
        raise DatasetError(f"{len(y)} training clips, fewer than --folds {folds}", file=set_dir)


def _spearman_scorer():
    def score(y_true, y_pred):
        return float(np.mean([metrics.spearman(y_true[:, i], y_pred[:, i])
                              for i in range(y_true.shape[1])]))
    return make_scorer(score)


def search_params(name, kind, X, y, groups, folds, jobs, seed=0) -> dict:
    """Grid search on (X, y); the best parameters and their CV score. Classifiers are
    fitted on each fold's labels renumbered (:class:`models.Reindexed`). A search whose
    every grid point failed in some fold (no CV score) is a :class:`DatasetError`."""
    est, grid = M.factory(kind)(name, seed, jobs)
    if kind == "genre":
        cv = (ms.StratifiedGroupKFold(folds, shuffle=True, random_state=seed) if groups is not None
              else ms.StratifiedKFold(folds, shuffle=True, random_state=seed))
        splits = list(cv.split(X, y, groups))
        if name == "svm":       # Platt scaling's folds within the smallest class of any fold
            est.set_params(model__cv=_calibration_folds(min(
                np.unique(y[tr], return_counts=True)[1].min() for tr, _ in splits)))
        est, grid = M.Reindexed(est), {f"estimator__{k}": v for k, v in grid.items()}
        scoring = "f1_macro"
    else:
        cv = ms.GroupKFold(folds) if groups is not None else ms.KFold(folds, shuffle=True,
                                                                       random_state=seed)
        splits = list(cv.split(X, y, groups))
        scoring = _spearman_scorer()
    gs = ms.GridSearchCV(est, grid, scoring=scoring, cv=splits, refit=False, n_jobs=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            gs.fit(X, y)
        except ValueError as e:          # scikit-learn: every fit failed
            raise DatasetError(f"{name}: every fit of the --search grid failed "
                               f"({_last_line(str(e))})") from None
    failures = [w for w in caught if _failed_fit(w)]
    for w in caught:
        if not _failed_fit(w):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    failed = int(np.isnan(gs.cv_results_["mean_test_score"]).sum())
    if failed == len(gs.cv_results_["mean_test_score"]):
        why = _last_line(str(failures[0].message)) if failures else "NaN scores"
        raise DatasetError(f"{name}: no point of the --search grid has a cross-validation score "
                           f"(each failed or scored NaN in some fold: {why})")
    params = {k.removeprefix("estimator__"): v for k, v in gs.best_params_.items()}
    return {"params": params, "cv_score": float(gs.best_score_),
            "scoring": "macro F1" if kind == "genre" else "Spearman mean", "folds": folds,
            "failed_points": failed}


def _failed_fit(w: warnings.WarningMessage) -> bool:
    """A warning of scikit-learn's grid search saying a fit or its scoring failed, or that
    some scores are NaN (``failed_points`` counts those)."""
    return issubclass(w.category, FitFailedWarning) or str(w.message).startswith(
        ("Scoring failed", "One or more of the test scores are non-finite"))


def _last_line(text: str) -> str:
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    return lines[-1] if lines else "no message"


def _fit_predict(name, kind, seed, jobs, params, Xtr, ytr, Xs):
    """Fit one model; for each X in Xs: (prediction, probabilities or None); and the
    classes present in ``ytr`` (the probabilities' columns; None for regression)."""
    est, _ = M.factory(kind)(name, seed, jobs)
    if params:
        est.set_params(**params)
    if kind == "genre":
        if name == "svm":
            est.set_params(model__cv=_calibration_folds(np.unique(ytr, return_counts=True)[1].min()))
        est = M.Reindexed(est).fit(Xtr, ytr)
        return [(est.predict(X), est.predict_proba(X)) for X in Xs], est.classes_
    est.fit(Xtr, ytr)
    return [(np.asarray(est.predict(X), np.float64).reshape(len(X), -1), None) for X in Xs], None


def _calibration_folds(smallest: int) -> int:
    k = min(M.SVM_CALIBRATION_FOLDS, int(smallest))
    if k < 2:
        raise DatasetError("svm: a class has a single clip in a training part (of a seed, or "
                           "of a --search fold), too few to "
                           "calibrate probabilities; leave svm out (--models) or merge the class")
    return k


def _score(kind, y_true, y_pred, classes):
    if kind == "genre":
        return metrics.classification_report(y_true, y_pred, classes)
    return metrics.regression_report(y_true, y_pred, lab.TARGETS)


def _headline(kind, report) -> float:
    return report["macro_f1"] if kind == "genre" else report["spearman_mean"]


def run_baselines(source: str | Path, set_name: str, workdir: str | Path,
                  opts: Options | None = None, log=print) -> dict:
    """Every model on ``source/set_name``; writes ``workdir/<model>/`` run directories,
    ``baselines.json`` and ``comparison_baselines.json``; returns the summary.

    BLAS runs on one thread throughout (the tree models' ``jobs`` threads are the
    parallelism): on a busy 2-core machine a two-thread BLAS made one logistic
    regression fit 26x slower (113 s against 4.3 s).
    """
    with workers.one_blas_thread():
        return _run(source, set_name, workdir, opts or Options(), log)


def _run(source, set_name, workdir, opts: Options, log) -> dict:
    set_dir = Path(source) / set_name
    if not set_dir.is_dir():
        raise DatasetError("set folder is missing", file=set_dir)
    if opts.seeds < 1:
        raise DatasetError(f"--seeds must be at least 1, got {opts.seeds}")
    info = lab.set_info(set_dir)
    kind = info.kind
    task = "genre" if kind == "genre" else "regression"
    classes = list(lab.class_map(set_dir).classes) if kind == "genre" else None
    names = M.resolve(opts.models or list(M.CLASSIFIERS if kind == "genre" else M.REGRESSORS),
                      kind)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    train = load_table(set_dir, "train", jobs=opts.jobs, cache=workdir / "features",
                       use_audio=opts.use_audio)
    test = load_table(set_dir, "test", jobs=opts.jobs, cache=workdir / "features",
                      use_audio=opts.use_audio)
    features_s = time.perf_counter() - t0
    keep, dropped = drop_constant(train, set_dir)
    for d in dropped:
        log(f"baselines: feature {d['feature']} dropped: {d['reason']} (value {d['value']:g})")
    Xtr_all, Xte = train.X[:, keep], test.X[:, keep]
    test_labelled = kind == "genre" or not np.isnan(test.y).any()
    splits = seed_splits(train, set_dir, opts.seeds, opts.validation_fraction)

    skipped = []
    fit_models = []
    for n in names:
        why = M.missing_package(n) if n != "voting" else None
        if why:
            skipped.append({"model": n, "reason": why})
            log(f"baselines: {n} skipped: {why}")
        elif n != "voting":
            fit_models.append(n)

    # --search: a grid search per seed on that seed's train part (never on its validation).
    searched: dict[str, list[dict]] = {}
    if opts.search:
        parts = [(tr, None if train.groups is None else [train.groups[i] for i in tr])
                 for tr, _ in splits]
        for s, (tr, g) in enumerate(parts):
            try:
                check_folds(train.y[tr], g, opts.folds, classes, kind, set_dir)
            except DatasetError as e:
                raise DatasetError(f"seed {s}: {e.reason}", file=e.file) from None
        for n in fit_models:
            searched[n] = []
            for s, (tr, g) in enumerate(parts):
                t = time.perf_counter()
                r = search_params(n, kind, Xtr_all[tr], train.y[tr], g, opts.folds, opts.jobs,
                                  seed=s)
                searched[n].append({"seed": s, **r, "time_s": time.perf_counter() - t})
                log(f"baselines: {n} search, seed {s}: {r['params']} (CV {r['scoring']} "
                    f"{r['cv_score']:.3f}" + (f"; {r['failed_points']} grid point(s) failed in "
                                              "some fold" if r["failed_points"] else "") + ")")

    # per model, per seed: {"validation": report, "test": report, "val_out", "test_out", ...}
    results: dict[str, list[dict]] = {n: [] for n in fit_models}
    times: dict[str, float] = {}
    for n in list(fit_models):
        t = time.perf_counter()
        for s, (tr, va) in enumerate(splits):
            try:
                outs, present = _fit_predict(n, kind, s, opts.jobs,
                                             searched[n][s]["params"] if searched else None,
                                             Xtr_all[tr], train.y[tr], [Xtr_all[va], Xte])
            except ValueError as e:        # e.g. more neighbours than training clips
                why = f"seed {s}: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
                skipped.append({"model": n, "reason": why})
                log(f"baselines: {n} skipped: {why}")
                fit_models.remove(n)
                del results[n]
                break
            (vp, vprob), (tp, tprob) = outs
            results[n].append({"val": (vp, vprob), "test": (tp, tprob), "present": present,
                               "validation": _score(kind, train.y[va], vp, classes),
                               "test_report": _score(kind, test.y, tp, classes)
                               if test_labelled else None})
        if n not in results:
            continue
        times[n] = time.perf_counter() - t
        log(f"baselines: {n}: validation {'macro F1' if kind == 'genre' else 'Spearman mean'} "
            + ", ".join(f"{_headline(kind, r['validation']):.3f}" for r in results[n])
            + f" ({times[n]:.1f} s)")

    if "voting" in names and not fit_models:
        skipped.append({"model": "voting", "reason": "no other model ran"})
        log("baselines: voting skipped: no other model ran")
    if "voting" in names and fit_models:
        groups = None if train.groups is None else dict(zip(train.ids, train.groups))
        try:
            results["voting"] = [_voting(kind, fit_models, results, s, train, va, groups, test.y,
                                         classes, test_labelled)
                                 for s, (_, va) in enumerate(splits)]
            times["voting"] = 0.0
        except _NoVote as e:
            skipped.append({"model": "voting", "reason": str(e)})
            log(f"baselines: voting skipped: {e}")

    summary_rows = []
    for n, per_seed in results.items():
        run_dir = workdir / n
        run_dir.mkdir(parents=True, exist_ok=True)
        out = _metrics(n, task, set_name, per_seed, kind, classes, test_labelled)
        out["params"] = [r["params"] for r in searched[n]] if n in searched else None
        out["search"] = searched.get(n)
        out["fit_s"] = round(times.get(n, 0.0), 3)
        out["features"] = {"count": int(len(keep)), "dropped_constant": len(dropped)}
        if n == "voting":
            out["voting_members"] = [r["members"] for r in per_seed]
            out["voting_validation_members"] = [r["validation_members"] for r in per_seed]
        if kind != "genre":
            path = run_dir / f"predictions_{set_name}.csv"
            write_predictions(path, test.ids, per_seed[0]["test"][0], lab.TARGETS)
            out["predictions"] = {set_name: str(path)}
        config = {"name": n, "task": task, "kind": "classic",
                  "model": {"name": n, **_seed_params(out["params"])},
                  "data": {"set": set_name, "view": VIEW, "source": str(Path(source))},
                  "baseline": {"seeds": opts.seeds, "search": opts.search, "folds": opts.folds,
                               "validation_fraction": opts.validation_fraction,
                               "features": int(len(keep)), "audio_features":
                               any(x.startswith("mfcc") for x in train.names)}}
        run_info = {"task": task, "model": n, "set": set_name, "view": VIEW, "kind": "classic",
                    "num_features": int(len(keep))}
        (run_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        (run_dir / "run.json").write_text(json.dumps(run_info, indent=2) + "\n")
        (run_dir / "metrics.json").write_text(json.dumps(out, indent=2) + "\n")
        (run_dir / "metrics.md").write_text(markdown_report(out, classes or lab.TARGETS)
                                            + seeds_markdown(out))
        if kind == "genre" and out.get("test"):
            plot_confusion(out["test"][set_name], classes, run_dir / f"confusion_{set_name}.png",
                           f"{n} (handcrafted features) on {set_name}")
        summary_rows.append(_comparison_row(n, out, kind, set_name))

    columns = (["model", "seeds", "test accuracy", "test macro F1", "validation macro F1",
                "fit s"] if kind == "genre"
               else ["model", "seeds", "validation Spearman mean", "valence", "energy",
                     "danceability", "fit s"])
    for s in skipped:
        summary_rows.append([s["model"]] + ["skipped: " + s["reason"]]
                            + [None] * (len(columns) - 2))
    comparison = {"title": f"classic baselines on {set_name} (handcrafted features, "
                  f"mean ± std over {opts.seeds} seed(s))", "columns": columns,
                  "rows": summary_rows,
                  "notes": f"{len(keep)} features ({len(dropped)} constant dropped); seed s "
                  "splits train/validation as `jaxmusic prepare --seed s`."}
    summary = {"set": set_name, "kind": kind, "models": names, "skipped": skipped,
               "dropped_features": dropped, "features": list(np.asarray(train.names)[keep]),
               "seeds": opts.seeds, "search": opts.search, "folds": opts.folds,
               "train_clips": len(train.ids), "test_clips": len(test.ids),
               "features_s": round(features_s, 3),
               "fit_s": {n: round(t, 3) for n, t in times.items()},
               "total_s": round(time.perf_counter() - t0, 3),
               "comparison": comparison}
    (workdir / SUMMARY_NAME).write_text(json.dumps(summary, indent=2) + "\n")
    (workdir / COMPARISON_NAME).write_text(json.dumps(comparison, indent=2) + "\n")
    return summary


class _NoVote(Exception):
    """Voting cannot be scored on held-out validation clips (a recorded skip)."""


def validation_halves(table: FeatureTable, va: np.ndarray, seed: int, groups) -> tuple:
    """Positions in ``va`` of its two halves (as :func:`split_train_validation` cuts at 0.5:
    stratified, whole groups)."""
    entries = [table.entries[i] for i in va]
    a, b = split_train_validation(entries, 0.5, seed, groups)
    pos = {e.id: j for j, e in enumerate(entries)}
    return (np.asarray([pos[e.id] for e in a], np.int64),
            np.asarray([pos[e.id] for e in b], np.int64))


def _top(kind, models, results, s, y_val, rows, classes) -> list[str]:
    """The ``VOTING_MEMBERS`` models with the best validation score on validation ``rows``."""
    def score(n):
        v = _headline(kind, _score(kind, y_val[rows], results[n][s]["val"][0][rows], classes))
        return v if np.isfinite(v) else -np.inf
    return sorted(models, key=lambda n: -score(n))[:M.VOTING_MEMBERS]


def _vote(kind, results, members, s, part):
    """``members``' soft vote on ``part`` ("val" or "test"): (prediction, probabilities)."""
    if kind == "genre":
        prob = np.mean([results[n][s][part][1] for n in members], axis=0)
        return results[members[0]][s]["present"][np.argmax(prob, axis=1)], prob
    return np.mean([results[n][s][part][0] for n in members], axis=0), None


def _voting(kind, models, results, s, train, va, groups, y_test, classes, test_labelled) -> dict:
    """Seed ``s``'s vote. Its members (for the test split) are the best on all of
    validation; its validation score is cross-fitted, never on the clips it chose on:
    each half of validation is scored by the vote of the members best on the other half."""
    y_val = train.y[va]
    members = _top(kind, models, results, s, y_val, slice(None), classes)
    test_pred = _vote(kind, results, members, s, "test")
    halves = validation_halves(train, va, s, groups)
    if not all(len(h) for h in halves):
        raise _NoVote(f"seed {s}: the validation split ({len(va)} clips) cannot be cut in two "
                      "halves (one to choose the members on, one to score them)")
    pred, prob = (None if p is None else p.copy() for p in _vote(kind, results, members, s, "val"))
    chosen = []
    for pick, scored in (halves, halves[::-1]):
        top = _top(kind, models, results, s, y_val, pick, classes)
        p, pr = _vote(kind, results, top, s, "val")
        pred[scored] = p[scored]
        if pr is not None:
            prob[scored] = pr[scored]
        chosen.append(top)
    return {"members": members, "validation_members": chosen, "val": (pred, prob),
            "test": test_pred, "validation": _score(kind, y_val, pred, classes),
            "test_report": _score(kind, y_test, test_pred[0], classes) if test_labelled else None}


def _seed_params(per_seed: list[dict] | None) -> dict:
    """Searched parameters for config.json: a value the seeds agree on, else the per-seed list."""
    if not per_seed:
        return {}
    return {k: per_seed[0][k] if all(p[k] == per_seed[0][k] for p in per_seed)
            else [p[k] for p in per_seed] for k in per_seed[0]}


def _metrics(name, task, set_name, per_seed, kind, classes, test_labelled) -> dict:
    first = per_seed[0]
    out = {"run": name, "task": task, "model": name, "set": set_name, "view": VIEW,
           "kind": "classic", "checkpoint_step": None, "best_epoch": None,
           "validation": first["validation"]}
    seeds: dict = {"count": len(per_seed), "validation": {}, "test": {}}
    if kind == "genre":
        out["test"] = {set_name: first["test_report"]}
        for k in GENRE_KEYS:
            seeds["validation"][k] = mean_std(r["validation"][k] for r in per_seed)
            seeds["test"][k] = mean_std(r["test_report"][k] for r in per_seed)
    else:
        out["spearman"] = first["validation"]["spearman"]
        out["spearman_mean"] = first["validation"]["spearman_mean"]
        for part, key in (("validation", "validation"), ("test", "test_report")):
            if part == "test" and not test_labelled:
                continue
            seeds[part]["spearman_mean"] = mean_std(r[key]["spearman_mean"] for r in per_seed)
            for axis in lab.TARGETS:
                seeds[part][f"spearman.{axis}"] = mean_std(r[key]["spearman"][axis]
                                                           for r in per_seed)
        if test_labelled:
            out["test"] = {set_name: first["test_report"]}
    out["seeds"] = {k: v for k, v in seeds.items() if v}
    return out


def pm(stat: dict | None) -> str | None:
    if not stat or stat.get("mean") is None:
        return None
    return f"{stat['mean']:.3f} ± {stat['std']:.3f}"


def _comparison_row(name, out, kind, set_name) -> list:
    s = out["seeds"]
    if kind == "genre":
        return [name, s["count"], pm(s["test"]["accuracy"]), pm(s["test"]["macro_f1"]),
                pm(s["validation"]["macro_f1"]), out["fit_s"]]
    v = s["validation"]
    return [name, s["count"], pm(v["spearman_mean"])] + \
        [pm(v[f"spearman.{a}"]) for a in lab.TARGETS] + [out["fit_s"]]


def seeds_markdown(out: dict) -> str:
    s = out.get("seeds") or {}
    lines = ["", f"Over {s.get('count', 1)} seed(s) (mean ± sample std):", "",
             "| split | metric | mean ± std | per seed |", "|---|---|---|---|"]
    for part in ("validation", "test"):
        for k, stat in (s.get(part) or {}).items():
            lines.append(f"| {part} | {k} | {pm(stat)} | "
                         + ", ".join(f"{v:.3f}" for v in stat["values"]) + " |")
    return "\n".join(lines) + "\n"
