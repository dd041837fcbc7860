"""Classic baselines: the feature list against numpy/scipy/librosa, the models against
scikit-learn run directly, the bad-input cases, and the report showing a classic run."""

from __future__ import annotations

import dataclasses
import json
import sys
import warnings
from pathlib import Path

import librosa
import numpy as np
import pytest
import scipy.stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
import audio_fixtures as af  # noqa: E402
from conftest import write_genre_set, write_multitask_set  # noqa: E402
from jaxmusic import metrics  # noqa: E402
from jaxmusic.baselines import experiment
from jaxmusic.features import handcrafted  # noqa: E402
from jaxmusic.baselines import models as M  # noqa: E402
from jaxmusic.baselines.table import FeatureTable, load_table  # noqa: E402
from jaxmusic.data import lab  # noqa: E402
from jaxmusic.data.lab import DatasetError  # noqa: E402
from jaxmusic.data.tfrecords import split_train_validation  # noqa: E402

SR = af.SR


def lab_clip(y: np.ndarray, fmax=None) -> np.ndarray:
    """The recipe's (T, 140) array of a clip, with librosa."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        mel = librosa.power_to_db(librosa.feature.melspectrogram(
            y=y, sr=SR, n_fft=2048, hop_length=512, n_mels=128, fmax=fmax), ref=np.max)
        chroma = librosa.feature.chroma_cqt(y=y, sr=SR, hop_length=512)
    return np.vstack([mel, chroma]).T.astype(np.float32)


@pytest.mark.parametrize("fmax", [None, 8000.0])
def test_spectrogram_features_match_numpy_scipy_and_librosa(fmax):
    names = handcrafted.feature_names()
    for seed in (0, 1):
        x = lab_clip(af.song(seed, 2.0), fmax)
        f = dict(zip(names, handcrafted.spectrogram_features(x, SR, fmax)))
        assert len(f) == len(names) == 457
        mel, chroma = x[:, :128].astype(np.float64), x[:, 128:].astype(np.float64)
        np.testing.assert_allclose([f[f"mel_mean_{k:03d}"] for k in range(128)], mel.mean(0))
        np.testing.assert_allclose([f[f"mel_std_{k:03d}"] for k in range(128)], mel.std(0))
        g = mel[:, 40:48].mean(1)                                          # group 5
        np.testing.assert_allclose(f["melg_skew_05"], scipy.stats.skew(g), rtol=1e-9)
        np.testing.assert_allclose([f["melg_p10_05"], f["melg_p50_05"], f["melg_p90_05"]],
                                   np.percentile(g, [10, 50, 90]))
        np.testing.assert_allclose(f["melg_dmean_05"], np.abs(np.diff(g)).mean())
        c = chroma[:, 7]
        np.testing.assert_allclose([f["chroma_mean_07"], f["chroma_std_07"], f["chroma_skew_07"],
                                    f["chroma_dstd_07"]],
                                   [c.mean(), c.std(), scipy.stats.skew(c), np.diff(c).std()],
                                   rtol=1e-9)
        # Spectral descriptors: librosa's own functions on the mel power spectrum.
        S = 10.0 ** (mel.T / 10.0)
        freq = librosa.mel_frequencies(n_mels=130, fmax=fmax or SR / 2)[1:-1]
        want = {"centroid": librosa.feature.spectral_centroid(S=S, freq=freq)[0],
                "bandwidth": librosa.feature.spectral_bandwidth(S=S, freq=freq)[0],
                "rolloff": librosa.feature.spectral_rolloff(S=S, freq=freq, roll_percent=0.85)[0],
                "flatness": librosa.feature.spectral_flatness(S=S, power=1.0)[0]}
        for d, v in want.items():
            np.testing.assert_allclose([f[f"spec_{d}_mean"], f[f"spec_{d}_std"]],
                                       [v.mean(), v.std()], rtol=1e-6, err_msg=d)
        assert f["frames"] == len(x)


def test_flat_series_and_one_frame_clips_give_zeros_not_nan():
    x = np.zeros((1, 140), np.float32) - 80.0
    f = handcrafted.spectrogram_features(x)
    assert np.isfinite(f).all()
    names = handcrafted.feature_names()
    assert f[names.index("melg_skew_00")] == 0.0 and f[names.index("chroma_dmean_03")] == 0.0


def test_audio_features_match_librosa():
    y = af.song(2, 3.0)
    f = dict(zip(handcrafted.audio_feature_names(), handcrafted.audio_features(y, SR)))
    assert len(f) == 45
    mfcc = librosa.feature.mfcc(y=y, sr=SR, n_mfcc=20)
    np.testing.assert_allclose([f[f"mfcc_mean_{k:02d}"] for k in range(1, 21)], mfcc.mean(1),
                               rtol=1e-5, atol=1e-4)
    zcr = librosa.feature.zero_crossing_rate(y)[0]
    rms = librosa.feature.rms(y=y)[0]
    np.testing.assert_allclose([f["zcr_mean"], f["rms_std"]], [zcr.mean(), rms.std()], rtol=1e-5)
    assert f["tempo"] == pytest.approx(float(librosa.feature.tempo(y=y, sr=SR)[0]), rel=1e-6)


def _genre_root(tmp_path, n_train=40, n_test=16):
    write_genre_set(tmp_path, "fma_genre_spectrograms", n_train=n_train, n_test=n_test,
                    lengths=(20, 30), genres=["Rock", "Jazz", "Pop", "Classical"])
    return tmp_path


def test_baselines_give_sklearns_numbers_on_tiny_data(tmp_path):
    root = _genre_root(tmp_path / "data")
    opts = experiment.Options(models=["svm", "knn", "logreg", "rf", "voting"], seeds=2,
                              progress=False)
    summary = experiment.run_baselines(root, "fma_genre_spectrograms", tmp_path / "runs", opts,
                                       log=lambda *a: None)
    assert summary["skipped"] == [] and summary["seeds"] == 2
    # The same numbers from scikit-learn run directly on the same features and split.
    from sklearn.ensemble import RandomForestClassifier, VotingClassifier
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.svm import SVC

    set_dir = root / "fma_genre_spectrograms"
    entries = lab.read_labels(set_dir, "train")
    X = np.stack([handcrafted.spectrogram_features(lab.load_record(e).features) for e in entries])
    y = np.asarray([e.label for e in entries])
    Xt = np.stack([handcrafted.spectrogram_features(lab.load_record(e).features)
                   for e in lab.read_labels(set_dir, "test")])
    yt = np.asarray([e.label for e in lab.read_labels(set_dir, "test")])
    classes = list(lab.CLASSES)
    for seed in (0, 1):
        tr, va = split_train_validation(entries, 0.2, seed)
        itr = [entries.index(e) for e in tr]
        present = np.unique(y[itr])
        direct = {
            "svm": make_pipeline(StandardScaler(),
                                 CalibratedClassifierCV(SVC(C=10.0), ensemble=False, cv=5)),
            "knn": make_pipeline(StandardScaler(), KNeighborsClassifier(10, weights="distance")),
            "rf": make_pipeline(StandardScaler(), RandomForestClassifier(300, random_state=seed)),
        }
        for name, est in direct.items():
            est.fit(X[itr], np.searchsorted(present, y[itr]))
            want = metrics.classification_report(yt, present[est.predict(Xt)], classes)
            got = json.loads((tmp_path / "runs" / name / "metrics.json").read_text())
            vals = got["seeds"]["test"]["macro_f1"]["values"]
            assert vals[seed] == pytest.approx(want["macro_f1"], abs=1e-12), name
            if seed == 0:
                assert got["test"]["fma_genre_spectrograms"]["confusion_matrix"] == \
                    want["confusion_matrix"]
        # Soft voting over the three best by validation macro F1 = sklearn's VotingClassifier.
        members = json.loads((tmp_path / "runs" / "voting" / "metrics.json").read_text())
        top = members["voting_members"][seed]
        ests = [(n, M.classifier(n, seed)[0]) for n in top]
        vote = VotingClassifier(ests, voting="soft").fit(X[itr], np.searchsorted(present, y[itr]))
        want = metrics.classification_report(yt, present[vote.predict(Xt)], classes)
        assert members["seeds"]["test"]["accuracy"]["values"][seed] == \
            pytest.approx(want["accuracy"], abs=1e-12)
    m = json.loads((tmp_path / "runs" / "svm" / "metrics.json").read_text())
    vals = m["seeds"]["test"]["accuracy"]["values"]
    assert m["seeds"]["test"]["accuracy"]["std"] == pytest.approx(np.std(vals, ddof=1))
    assert (tmp_path / "runs" / "svm" / "metrics.md").read_text().count("±") >= 6
    assert (tmp_path / "runs" / "svm" / "confusion_fma_genre_spectrograms.png").exists()


def test_regression_baselines_give_spearman_per_axis(tmp_path):
    root = tmp_path / "data"
    write_multitask_set(root, n_train=30, n_test=6)
    opts = experiment.Options(models=["ridge", "svm"], seeds=2, progress=False)
    summary = experiment.run_baselines(root, "multitask_dataset", tmp_path / "runs", opts,
                                       log=lambda *a: None)
    assert summary["models"] == ["ridge", "svr"]
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    t = load_table(root / "multitask_dataset", "train")
    tr, va = split_train_validation(t.entries, 0.2, 1)
    itr = [t.ids.index(e.id) for e in tr]
    iva = [t.ids.index(e.id) for e in va]
    pred = make_pipeline(StandardScaler(), Ridge(alpha=100.0)).fit(t.X[itr], t.y[itr]).predict(t.X[iva])
    m = json.loads((tmp_path / "runs" / "ridge" / "metrics.json").read_text())
    for i, axis in enumerate(lab.TARGETS):
        want = scipy.stats.spearmanr(t.y[iva, i], pred[:, i]).statistic
        assert m["seeds"]["validation"][f"spearman.{axis}"]["values"][1] == pytest.approx(want)
    lines = (tmp_path / "runs" / "ridge" / "predictions_multitask_dataset.csv").read_text().split()
    assert lines[0] == lab.MULTITASK_HEADER and len(lines) == 7


def test_bad_input_is_one_line_or_a_recorded_skip(tmp_path, monkeypatch):
    root = _genre_root(tmp_path / "data", n_train=12, n_test=4)
    set_dir = root / "fma_genre_spectrograms"
    # A missing optional package: a recorded skip.
    opts = experiment.Options(models=["knn", "xgboost"], seeds=1, progress=False)
    monkeypatch.setattr(M, "missing_package",
                        lambda n: "xgboost is not installed (test)" if n == "xgboost" else None)
    lines = []
    summary = experiment.run_baselines(root, "fma_genre_spectrograms", tmp_path / "r1", opts,
                                       log=lines.append)
    assert summary["skipped"] == [{"model": "xgboost", "reason": "xgboost is not installed (test)"}]
    assert any(l == "baselines: xgboost skipped: xgboost is not installed (test)" for l in lines)
    table = json.loads((tmp_path / "r1" / "comparison_baselines.json").read_text())
    assert table["rows"][-1][:2] == ["xgboost", "skipped: xgboost is not installed (test)"]
    # A class with fewer clips than folds under --search.
    with pytest.raises(DatasetError, match=r"class '\w+' has \d training clip\(s\), fewer than "
                                           r"--folds 5"):
        experiment.run_baselines(root, "fma_genre_spectrograms", tmp_path / "r2",
                                 experiment.Options(models=["knn"], seeds=1, search=True,
                                                    folds=5), log=lambda *a: None)
    # NaN in an array: the file is named.
    bad = sorted((set_dir / "train").iterdir())[3]
    x = lab.load_features(bad)
    x[2, 5] = np.nan
    arr = np.ascontiguousarray(x.T)
    import gzip
    import io
    buf = io.BytesIO()
    np.save(buf, arr)
    bad.write_bytes(gzip.compress(buf.getvalue()))
    with pytest.raises(DatasetError, match=f"{bad.name}.*non-finite"):
        experiment.run_baselines(root, "fma_genre_spectrograms", tmp_path / "r3",
                                 experiment.Options(models=["knn"], seeds=1), log=lambda *a: None)


def test_constant_features_are_dropped_by_name(tmp_path):
    root = tmp_path / "data"
    rng = np.random.default_rng(0)
    set_dir = root / "fma_genre_spectrograms"
    for split, n in (("train", 16), ("test", 4)):
        rows = []
        for i in range(n):
            x = rng.uniform(-80, 0, (12, 140)).astype(np.float32)
            x[:, 128:] = 0.5                                  # flat chroma everywhere
            lab.save_features(set_dir / split / lab.feature_file_name(f"{split}{i}"), x)
            rows.append((lab.feature_file_name(f"{split}{i}"), ["Rock", "Jazz"][i % 2]))
        lab.write_genre_labels(set_dir / f"{split}_labels.txt", rows)
    lines = []
    s = experiment.run_baselines(root, "fma_genre_spectrograms", tmp_path / "runs",
                                 experiment.Options(models=["logreg"], seeds=1), log=lines.append)
    dropped = {d["feature"] for d in s["dropped_features"]}
    assert {"chroma_mean_00", "chroma_std_11", "chroma_skew_04", "frames"} <= dropped
    assert not any(n.startswith("mel_") for n in dropped)
    assert any("feature chroma_mean_00 dropped: constant over the 16 training clips" in l
               for l in lines)
    assert len(s["features"]) == 457 - len(dropped)


def test_cli_and_report_show_a_classic_run_beside_a_deep_one(tmp_path, capsys):
    from jaxmusic.cli import main
    from jaxmusic.viz.report import build_report

    root = _genre_root(tmp_path / "data", n_train=24, n_test=8)
    rc = main(["baselines", "--source", str(root), "--set", "fma_genre_spectrograms",
               "--workdir", str(tmp_path / "runs" / "baselines"), "--models", "knn,logreg",
               "--seeds", "2"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "classic baselines on fma_genre_spectrograms" in out and "knn" in out
    # A deep run's directory beside it (the format jaxmusic evaluate writes).
    deep = tmp_path / "runs" / "cnn"
    deep.mkdir()
    (deep / "config.json").write_text(json.dumps({"name": "cnn", "task": "genre",
                                                  "model": {"name": "cnn"},
                                                  "data": {"set": "fma_genre_spectrograms",
                                                           "view": "mel"}, "train": {}}))
    knn = json.loads((tmp_path / "runs" / "baselines" / "knn" / "metrics.json").read_text())
    (deep / "metrics.json").write_text(json.dumps({**knn, "run": "cnn", "model": "cnn",
                                                   "view": "mel", "kind": None, "seeds": None}))
    page = build_report(tmp_path / "runs", bench=None)
    assert "baselines/knn" in page and "baselines/logreg" in page and "cnn" in page
    assert "classic" in page and "±" in page
    acc = knn["seeds"]["test"]["macro_f1"]
    assert f"test macro F1 {acc['mean']:.3f} ± {acc['std']:.3f} (2 seeds)" in page
    assert "classic and deep runs side by side" in page          # the comparison plot
    assert "classic baselines on fma_genre_spectrograms" in page  # the comparison table


def test_unknown_model_is_one_line(tmp_path):
    from jaxmusic.cli import main

    root = _genre_root(tmp_path / "data", n_train=8, n_test=4)
    with pytest.raises(SystemExit, match="unknown model 'nope' for a genre set"):
        main(["baselines", "--source", str(root), "--set", "fma_genre_spectrograms",
              "--workdir", str(tmp_path / "x"), "--models", "nope"])


def test_boosted_trees_give_their_libraries_numbers(tmp_path):
    xgboost = pytest.importorskip("xgboost", reason="the baselines extra is not installed")
    lightgbm = pytest.importorskip("lightgbm", reason="the baselines extra is not installed")
    root = _genre_root(tmp_path / "data", n_train=24, n_test=8)
    experiment.run_baselines(root, "fma_genre_spectrograms", tmp_path / "runs",
                             experiment.Options(models=["xgboost", "lightgbm"], seeds=1),
                             log=lambda *a: None)
    t = load_table(root / "fma_genre_spectrograms", "train")
    tt = load_table(root / "fma_genre_spectrograms", "test")
    tr, _ = split_train_validation(t.entries, 0.2, 0)
    itr = [t.ids.index(e.id) for e in tr]
    present = np.unique(t.y[itr])
    from sklearn.preprocessing import StandardScaler

    sc = StandardScaler().fit(t.X[itr])
    direct = {
        "xgboost": xgboost.XGBClassifier(n_estimators=200, max_depth=4, learning_rate=0.1,
                                         subsample=0.8, colsample_bytree=0.5, tree_method="hist",
                                         n_jobs=1, random_state=0),
        "lightgbm": lightgbm.LGBMClassifier(n_estimators=200, learning_rate=0.1, num_leaves=15,
                                            subsample=0.8, subsample_freq=1, colsample_bytree=0.5,
                                            n_jobs=1, random_state=0, verbose=-1),
    }
    for name, est in direct.items():
        est.fit(sc.transform(t.X[itr]), np.searchsorted(present, t.y[itr]))
        want = metrics.classification_report(tt.y, present[est.predict(sc.transform(tt.X))],
                                             list(lab.CLASSES))
        got = json.loads((tmp_path / "runs" / name / "metrics.json").read_text())
        assert got["test"]["fma_genre_spectrograms"]["confusion_matrix"] == \
            want["confusion_matrix"], name


def test_search_is_sklearns_grid_search_with_group_folds_per_seed(tmp_path):
    """Each seed's parameters come from a grid search on that seed's own train part (seed 0's
    train part holds most of seed 1's validation clips), and its model is fitted with them."""
    from sklearn.model_selection import GridSearchCV, StratifiedGroupKFold

    root = _genre_root(tmp_path / "data", n_train=32, n_test=8)
    set_dir = root / "fma_genre_spectrograms"
    # Groups of two clips (songs): no song may straddle a fold.
    entries = lab.read_labels(set_dir, "train")
    groups = {e.id: f"song{i // 2}" for i, e in enumerate(entries)}
    (set_dir / "train_groups.txt").write_text(
        "Id\tGroup\n" + "".join(f"{k}\t{v}\n" for k, v in groups.items()))
    s = experiment.run_baselines(root, "fma_genre_spectrograms", tmp_path / "runs",
                                 experiment.Options(models=["knn"], seeds=2, search=True,
                                                    folds=2), log=lambda *a: None)
    got = json.loads((tmp_path / "runs" / "knn" / "metrics.json").read_text())
    t = load_table(set_dir, "train")
    tt = load_table(set_dir, "test")
    for seed in (0, 1):
        tr, _ = split_train_validation(t.entries, 0.2, seed, groups)
        itr = [t.ids.index(e.id) for e in tr]
        est, grid = M.classifier("knn", seed)
        gs = GridSearchCV(est, grid, scoring="f1_macro", refit=False,
                          cv=StratifiedGroupKFold(2, shuffle=True, random_state=seed))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")          # n_neighbors 20 > a fold's clips
            gs.fit(t.X[itr], t.y[itr], groups=[groups[t.ids[i]] for i in itr])
        assert got["search"][seed]["params"] == gs.best_params_ == got["params"][seed]
        assert got["search"][seed]["cv_score"] == pytest.approx(gs.best_score_)
        assert got["search"][seed]["failed_points"] == \
            int(np.isnan(gs.cv_results_["mean_test_score"]).sum())
        # The seed's model is the searched one, fitted on its train part.
        est.set_params(**gs.best_params_).fit(t.X[itr], t.y[itr])
        want = metrics.classification_report(tt.y, est.predict(tt.X), list(lab.CLASSES))
        assert got["seeds"]["test"]["macro_f1"]["values"][seed] == \
            pytest.approx(want["macro_f1"], abs=1e-12)
    assert got["search"][0]["params"] != got["search"][1]["params"]   # the seeds differ here
    assert s["search"] is True


def test_a_model_the_data_cannot_fit_is_a_recorded_skip(tmp_path):
    root = _genre_root(tmp_path / "data", n_train=8, n_test=4)    # 6 clips to fit on
    lines = []
    s = experiment.run_baselines(root, "fma_genre_spectrograms", tmp_path / "runs",
                                 experiment.Options(models=["knn", "logreg", "voting"], seeds=1),
                                 log=lines.append)
    assert [d["model"] for d in s["skipped"]] == ["knn"]
    assert "n_neighbors" in s["skipped"][0]["reason"] and "seed 0" in s["skipped"][0]["reason"]
    assert any(l.startswith("baselines: knn skipped: seed 0:") for l in lines)
    assert not (tmp_path / "runs" / "knn").exists() and (tmp_path / "runs" / "logreg").is_dir()
    vote = json.loads((tmp_path / "runs" / "voting" / "metrics.json").read_text())
    assert vote["voting_members"] == [["logreg"]]


def _three_class_data(seed=0, per_class=12):
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1, 2], per_class)
    X = rng.normal(size=(len(y), 6)) + y[:, None] * 1.5
    return X, y


def test_search_renumbers_a_folds_labels_when_a_class_sits_in_one_group():
    """Class 1's clips all in one group: the fold holding that group trains on labels {0, 2},
    which XGBoost refuses; the search must renumber them as the seeds' fits do, and give what
    a hand-written loop over the same folds gives (not NaN and the grid's first point)."""
    xgboost = pytest.importorskip("xgboost", reason="the baselines extra is not installed")
    from sklearn.metrics import f1_score
    from sklearn.model_selection import ParameterGrid, StratifiedGroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = _three_class_data()
    groups = [f"g{i}" if c != 1 else "one_song" for i, c in enumerate(y)]
    got = experiment.search_params("xgboost", "genre", X, y, groups, 3, 1, seed=0)
    folds = list(StratifiedGroupKFold(3, shuffle=True, random_state=0).split(X, y, groups))
    assert any(1 not in y[tr] for tr, _ in folds)         # a fold trains without class 1
    _, grid = M.classifier("xgboost", 0)
    scores = []
    for point in ParameterGrid({k.removeprefix("model__"): v for k, v in grid.items()}):
        fold_scores = []
        for tr, te in folds:
            present = np.unique(y[tr])
            est = make_pipeline(StandardScaler(), xgboost.XGBClassifier(
                **{**dict(n_estimators=200, max_depth=4, learning_rate=0.1, subsample=0.8,
                          colsample_bytree=0.5, tree_method="hist", n_jobs=1, random_state=0,
                          verbosity=0), **point}))
            est.fit(X[tr], np.searchsorted(present, y[tr]))
            fold_scores.append(f1_score(y[te], present[est.predict(X[te])], average="macro"))
        scores.append((float(np.mean(fold_scores)), point))
    best = max(scores, key=lambda t: t[0])       # the first of equal scores, as sklearn
    assert got["cv_score"] == pytest.approx(best[0], abs=1e-12)
    assert got["params"] == {f"model__{k}": v for k, v in best[1].items()}
    assert got["failed_points"] == 0


def test_check_folds_counts_groups_per_class(tmp_path):
    X, y = _three_class_data()
    classes = ["Rock", "Jazz", "Pop"]
    groups = [f"g{i // 2}" for i in range(len(y))]
    experiment.check_folds(y, groups, 3, classes, "genre", tmp_path)      # 6 groups per class
    jazz_in_two = [g if c != 1 else f"jazz{i % 2}" for i, (g, c) in enumerate(zip(groups, y))]
    with pytest.raises(DatasetError, match=r"train_groups.txt: class 'Jazz' has 2 group\(s\) of "
                                           r"training clips, fewer than --folds 3"):
        experiment.check_folds(y, jazz_in_two, 3, classes, "genre", tmp_path)
    experiment.check_folds(y, jazz_in_two, 2, classes, "genre", tmp_path)


def test_a_search_with_no_cv_score_is_an_error_naming_the_model(monkeypatch):
    """One big group: the fold holding it trains on 16 clips, where 18 or 20 neighbours
    cannot be found, so every grid point scores NaN there (sklearn picks the first, warning)."""
    from sklearn.model_selection import GridSearchCV, StratifiedGroupKFold
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    y = np.tile([0, 1], 20)
    X = rng.normal(size=(40, 4)) + y[:, None]
    groups = ["big" if i < 24 else f"g{i}" for i in range(40)]

    def knn(name, seed, jobs=1):
        return (Pipeline([("scale", StandardScaler()), ("model", KNeighborsClassifier())]),
                {"model__n_neighbors": [18, 20]})
    est, grid = knn("knn", 0)
    gs = GridSearchCV(est, grid, scoring="f1_macro", refit=False,
                      cv=StratifiedGroupKFold(2, shuffle=True, random_state=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gs.fit(X, y, groups=groups)
    split_scores = np.array([gs.cv_results_[f"split{i}_test_score"] for i in range(2)])
    assert np.isnan(gs.cv_results_["mean_test_score"]).all() and not np.isnan(split_scores).all()
    monkeypatch.setattr(M, "classifier", knn)
    with pytest.raises(DatasetError, match=r"^knn: no point of the --search grid has a "
                                           r"cross-validation score .*n_neighbors"):
        experiment.search_params("knn", "genre", X, y, groups, 2, 1)


def test_voting_validation_is_scored_on_clips_it_did_not_choose_on(tmp_path):
    """Members chosen on one half of validation vote on the other half (and the reverse);
    the test figure keeps the members chosen on all of validation."""
    from sklearn.ensemble import VotingClassifier

    root = _genre_root(tmp_path / "data", n_train=60, n_test=8)
    models = ["knn", "logreg", "rf", "extratrees"]
    experiment.run_baselines(root, "fma_genre_spectrograms", tmp_path / "runs",
                             experiment.Options(models=models + ["voting"], seeds=2),
                             log=lambda *a: None)
    vote = json.loads((tmp_path / "runs" / "voting" / "metrics.json").read_text())
    t = load_table(root / "fma_genre_spectrograms", "train")
    tt = load_table(root / "fma_genre_spectrograms", "test")
    classes = list(lab.CLASSES)
    differs = False
    for seed in range(2):
        tr, va = split_train_validation(t.entries, 0.2, seed)
        itr = [t.ids.index(e.id) for e in tr]
        iva = np.asarray([t.ids.index(e.id) for e in va])
        present = np.unique(t.y[itr])
        prob = {}
        for n in models:
            est = M.classifier(n, seed)[0].fit(t.X[itr], np.searchsorted(present, t.y[itr]))
            prob[n] = est.predict_proba(t.X[iva])

        def best3(rows):
            f1 = {n: metrics.classification_report(
                t.y[iva][rows], present[prob[n][rows].argmax(1)], classes)["macro_f1"]
                for n in models}
            return sorted(models, key=lambda n: -f1[n])[:3]

        half_a, half_b = split_train_validation(list(va), 0.5, seed)
        a = np.asarray([list(va).index(e) for e in half_a])
        b = np.asarray([list(va).index(e) for e in half_b])
        pred = np.empty(len(iva), np.int64)
        for pick, scored in ((a, b), (b, a)):
            pred[scored] = present[np.mean([prob[n] for n in best3(pick)], 0).argmax(1)][scored]
        want = metrics.classification_report(t.y[iva], pred, classes)["macro_f1"]
        assert vote["seeds"]["validation"]["macro_f1"]["values"][seed] == \
            pytest.approx(want, abs=1e-12)
        assert vote["voting_validation_members"][seed] == [best3(a), best3(b)]
        # Test: the three best on all of validation, as sklearn's VotingClassifier.
        top = best3(np.arange(len(iva)))
        assert vote["voting_members"][seed] == top
        ests = [(n, M.classifier(n, seed)[0]) for n in top]
        soft = VotingClassifier(ests, voting="soft").fit(t.X[itr],
                                                         np.searchsorted(present, t.y[itr]))
        assert vote["seeds"]["test"]["macro_f1"]["values"][seed] == pytest.approx(
            metrics.classification_report(tt.y, present[soft.predict(tt.X)], classes)["macro_f1"],
            abs=1e-12)
        chosen_on_all = present[np.mean([prob[n] for n in top], 0).argmax(1)]
        differs |= want != metrics.classification_report(t.y[iva], chosen_on_all,
                                                          classes)["macro_f1"]
    assert differs      # the figure chosen and scored on the same clips is another number


def test_drop_constant_is_variance_threshold_and_keeps_what_varies(tmp_path):
    """scikit-learn's VarianceThreshold drops exactly the columns whose max equals their min,
    also a large constant whose float variance is not exactly 0, and keeps a tiny variation."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(7, 6))
    X[:, 1] = 0.1                          # np.var of this is 1.9e-34, not 0, in float64
    X[:, 3] = 2.5
    X[:, 5] = X[0, 5]
    X[4, 5] += 1e-9                        # varies, a little
    assert np.var(X[:, 1]) > 0
    table = FeatureTable([f"c{i}" for i in range(7)], X,
                                    tuple(f"f{j}" for j in range(6)), None, None, [])
    keep, dropped = experiment.drop_constant(table, tmp_path)
    np.testing.assert_array_equal(keep, np.flatnonzero(X.max(0) != X.min(0)))
    assert keep.tolist() == [0, 2, 4, 5]
    assert [(d["feature"], d["value"]) for d in dropped] == [("f1", X[0, 1]), ("f3", 2.5)]
    with pytest.raises(DatasetError, match="every feature is constant over the 7 training clips"):
        experiment.drop_constant(dataclasses.replace(table, X=np.ones((7, 6))), tmp_path)
