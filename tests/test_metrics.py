"""Host metrics against sklearn and scipy on random predictions."""

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import classification_report as sk_report, confusion_matrix as sk_cm

from jaxmusic import metrics


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_classification_report_equals_sklearn(seed):
    rng = np.random.default_rng(seed)
    classes = [f"c{i}" for i in range(7)]
    y_true = rng.integers(0, 7, 300)
    y_pred = np.where(rng.random(300) < 0.4, y_true, rng.integers(0, 6, 300))  # class 6 rarely predicted
    ours = metrics.classification_report(y_true, y_pred, classes)
    ref = sk_report(y_true, y_pred, labels=range(7), target_names=classes, output_dict=True,
                    zero_division=0)
    assert ours["accuracy"] == pytest.approx(ref["accuracy"])
    for c in classes:
        for k in ("precision", "recall", "f1"):
            assert ours["per_class"][c][k] == pytest.approx(ref[c][k if k != "f1" else "f1-score"])
        assert ours["per_class"][c]["support"] == ref[c]["support"]
    assert ours["macro_f1"] == pytest.approx(ref["macro avg"]["f1-score"])
    assert ours["macro_precision"] == pytest.approx(ref["macro avg"]["precision"])
    assert ours["weighted_f1"] == pytest.approx(ref["weighted avg"]["f1-score"])
    from sklearn.metrics import f1_score
    assert ours["micro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="micro"))
    np.testing.assert_array_equal(ours["confusion_matrix"], sk_cm(y_true, y_pred, labels=range(7)))


def test_class_never_present_or_predicted_scores_zero():
    r = metrics.classification_report([0, 0, 1], [0, 1, 1], ["a", "b", "c"])
    assert r["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}


@pytest.mark.parametrize("seed", [0, 1])
def test_spearman_equals_scipy_with_ties(seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 10, 200).astype(float)  # many ties
    b = a + rng.normal(0, 3, 200)
    b[:50] = np.round(b[:50])
    np.testing.assert_allclose(metrics.rankdata(a), stats.rankdata(a))
    assert metrics.spearman(a, b) == pytest.approx(stats.spearmanr(a, b).statistic, abs=1e-12)
    assert metrics.pearson(a, b) == pytest.approx(stats.pearsonr(a, b).statistic, abs=1e-12)


def test_regression_report_axes():
    rng = np.random.default_rng(3)
    t = rng.random((50, 2))
    p = t + rng.normal(0, 0.1, (50, 2))
    r = metrics.regression_report(t, p, ["valence", "energy"])
    assert r["spearman"]["energy"] == pytest.approx(stats.spearmanr(t[:, 1], p[:, 1]).statistic)
    assert r["mse"]["valence"] == pytest.approx(np.mean((t[:, 0] - p[:, 0]) ** 2))
    assert r["spearman_mean"] == pytest.approx(np.mean(list(r["spearman"].values())))
