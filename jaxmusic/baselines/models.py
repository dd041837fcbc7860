"""The classic models: scikit-learn pipelines (scaling first), plus XGBoost and LightGBM
when the optional ``baselines`` extra is installed.

Classification (genre sets): ``svm`` (RBF SVC, Platt-calibrated probabilities), ``knn``,
``logreg``, ``rf`` (random forest), ``extratrees``, ``xgboost``, ``lightgbm``,
``voting`` (soft voting over the three best by validation macro F1).
Regression (multitask sets, three outputs): ``svr``, ``ridge``, ``knn``, ``rf``,
``extratrees``, ``gbr`` (histogram gradient boosting, one per axis),
``xgboost``, ``lightgbm``, ``voting`` (mean of the three best by validation
Spearman mean). On a multitask set ``svm`` means ``svr`` and ``logreg`` means ``ridge``.

Each model has a small grid for ``--search`` (keys are pipeline parameter names).
"""

from __future__ import annotations

import importlib.util
from typing import Callable

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone

CLASSIFIERS = ("svm", "knn", "logreg", "rf", "extratrees", "xgboost", "lightgbm", "voting")
REGRESSORS = ("svr", "ridge", "knn", "rf", "extratrees", "gbr", "xgboost", "lightgbm", "voting")
ALIASES = {"regression": {"svm": "svr", "logreg": "ridge"}}
OPTIONAL = {"xgboost": "xgboost", "lightgbm": "lightgbm"}   # model -> Python package
VOTING_MEMBERS = 3
SVM_CALIBRATION_FOLDS = 5     # fewer when a class has fewer training clips (at least 2)


class Reindexed(ClassifierMixin, BaseEstimator):
    """``estimator`` fitted on its training labels renumbered ``0..k-1`` (the classes
    present, ``classes_``), predicting the original labels; ``predict_proba``'s columns
    follow ``classes_``. XGBoost refuses labels such as ``{0, 2}``, which a training
    part or a cross-validation fold lacking a class gives."""

    def __init__(self, estimator):
        self.estimator = estimator

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        self.estimator_ = clone(self.estimator).fit(X, np.searchsorted(self.classes_, y))
        return self

    def predict(self, X):
        return self.classes_[self.estimator_.predict(X)]

    def predict_proba(self, X):
        return self.estimator_.predict_proba(X)


class MissingPackage(Exception):
    """An optional model whose package is not installed (recorded as a skip)."""


def missing_package(name: str) -> str | None:
    """Why model ``name`` cannot run here, or None."""
    pkg = OPTIONAL.get(name)
    if pkg is not None and importlib.util.find_spec(pkg) is None:
        return (f"{pkg} is not installed (pip install -e '.[baselines]' installs "
                "xgboost and lightgbm)")
    return None


def _pipe(model):
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    return Pipeline([("scale", StandardScaler()), ("model", model)])


def classifier(name: str, seed: int, jobs: int = 1):
    """(unfitted pipeline, search grid) for a classification model."""
    from sklearn import calibration, ensemble, linear_model, neighbors, svm

    if name == "svm":
        # Probabilities (for soft voting) by Platt scaling over 5 folds, as
        # SVC(probability=True) did before scikit-learn 1.9 deprecated it.
        return _pipe(calibration.CalibratedClassifierCV(svm.SVC(C=10.0, gamma="scale"),
                                                        ensemble=False, cv=SVM_CALIBRATION_FOLDS)), \
            {"model__estimator__C": [1.0, 10.0, 100.0], "model__estimator__gamma": ["scale", 1e-3]}
    if name == "knn":
        return _pipe(neighbors.KNeighborsClassifier(n_neighbors=10, weights="distance")), \
            {"model__n_neighbors": [5, 10, 20], "model__weights": ["uniform", "distance"]}
    if name == "logreg":
        return _pipe(linear_model.LogisticRegression(C=0.1, max_iter=3000)), \
            {"model__C": [0.01, 0.1, 1.0]}
    if name in ("rf", "extratrees"):
        cls = ensemble.RandomForestClassifier if name == "rf" else ensemble.ExtraTreesClassifier
        return _pipe(cls(n_estimators=300, n_jobs=jobs, random_state=seed)), \
            {"model__max_features": ["sqrt", 0.1], "model__min_samples_leaf": [1, 3]}
    if name == "xgboost":
        _need(name)
        import xgboost

        return _pipe(xgboost.XGBClassifier(n_estimators=200, max_depth=4, learning_rate=0.1,
                                           subsample=0.8, colsample_bytree=0.5,
                                           tree_method="hist", n_jobs=jobs, random_state=seed,
                                           verbosity=0)), \
            {"model__max_depth": [3, 4], "model__learning_rate": [0.05, 0.1]}
    if name == "lightgbm":
        _need(name)
        import lightgbm

        return _pipe(lightgbm.LGBMClassifier(n_estimators=200, learning_rate=0.1, num_leaves=15,
                                             subsample=0.8, subsample_freq=1,
                                             colsample_bytree=0.5, n_jobs=jobs,
                                             random_state=seed, verbose=-1)), \
            {"model__num_leaves": [7, 15], "model__learning_rate": [0.05, 0.1]}
    raise ValueError(f"unknown classifier {name!r} (one of {', '.join(CLASSIFIERS)})")


def regressor(name: str, seed: int, jobs: int = 1):
    """(unfitted pipeline, search grid) for a three-output regression model."""
    from sklearn import ensemble, linear_model, neighbors, svm
    from sklearn.multioutput import MultiOutputRegressor

    if name == "svr":
        return _pipe(MultiOutputRegressor(svm.SVR(C=1.0, epsilon=0.05))), \
            {"model__estimator__C": [0.3, 1.0, 3.0]}
    if name == "ridge":
        return _pipe(linear_model.Ridge(alpha=100.0)), {"model__alpha": [10.0, 100.0, 1000.0]}
    if name == "knn":
        return _pipe(neighbors.KNeighborsRegressor(n_neighbors=10, weights="distance")), \
            {"model__n_neighbors": [5, 10, 20]}
    if name in ("rf", "extratrees"):
        cls = ensemble.RandomForestRegressor if name == "rf" else ensemble.ExtraTreesRegressor
        return _pipe(cls(n_estimators=300, max_features=0.3, n_jobs=jobs, random_state=seed)), \
            {"model__max_features": [0.1, 0.3], "model__min_samples_leaf": [1, 3]}
    if name == "gbr":
        return _pipe(MultiOutputRegressor(ensemble.HistGradientBoostingRegressor(
            max_iter=200, learning_rate=0.05, random_state=seed))), \
            {"model__estimator__learning_rate": [0.05, 0.1]}
    if name == "xgboost":
        _need(name)
        import xgboost

        return _pipe(xgboost.XGBRegressor(n_estimators=300, max_depth=4, learning_rate=0.05,
                                          subsample=0.8, colsample_bytree=0.5,
                                          tree_method="hist", n_jobs=jobs, random_state=seed,
                                          verbosity=0)), \
            {"model__max_depth": [3, 5]}
    if name == "lightgbm":
        _need(name)
        import lightgbm

        return _pipe(MultiOutputRegressor(lightgbm.LGBMRegressor(
            n_estimators=300, learning_rate=0.05, num_leaves=15, subsample=0.8,
            subsample_freq=1, colsample_bytree=0.5, n_jobs=jobs, random_state=seed,
            verbose=-1))), \
            {"model__estimator__num_leaves": [7, 15]}
    raise ValueError(f"unknown regressor {name!r} (one of {', '.join(REGRESSORS)})")


def _need(name: str) -> None:
    why = missing_package(name)
    if why:
        raise MissingPackage(why)


def factory(kind: str) -> Callable:
    return classifier if kind == "genre" else regressor


def resolve(names: list[str], kind: str) -> list[str]:
    """Model names for a set kind (aliases applied, order kept, unknown names refused)."""
    known = CLASSIFIERS if kind == "genre" else REGRESSORS
    aliases = ALIASES.get("regression" if kind != "genre" else "", {})
    out = []
    for n in names:
        n = aliases.get(n.strip().lower(), n.strip().lower())
        if n not in known:
            raise ValueError(f"unknown model {n!r} for a {kind} set (one of {', '.join(known)})")
        if n not in out:
            out.append(n)
    return out
