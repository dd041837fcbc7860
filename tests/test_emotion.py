"""Emotion regression: soft Spearman, multitask loss, learning, transfer, predictions."""

from __future__ import annotations

import csv
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from jaxmusic import checkpoint, experiments, parallel, runs, steps, tasks
from jaxmusic.config import base_config
from jaxmusic.data import lab
from jaxmusic.data.pipeline import PreparedSet
from jaxmusic.train import train
from tests.test_train import tiny


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_soft_spearman_approaches_scipy_as_temperature_falls(seed):
    rng = np.random.default_rng(seed)
    target = rng.integers(0, 8, 64).astype(np.float32)  # ties in the targets
    pred = (target + rng.normal(0, 2, 64)).astype(np.float32)
    pred[:10] = pred[10]  # ties in the predictions
    mask = jnp.ones(64, bool)
    ref = stats.spearmanr(pred, target).statistic
    errors = [abs(float(tasks.soft_spearman(jnp.asarray(pred), jnp.asarray(target), mask, t)) - ref)
              for t in (1.0, 0.1, 1e-3)]
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 1e-3
    # Masked rows are ignored.
    m = np.ones(64, bool)
    m[40:] = False
    got = tasks.soft_spearman(jnp.asarray(pred), jnp.asarray(target), jnp.asarray(m), 1e-3)
    assert float(got) == pytest.approx(stats.spearmanr(pred[:40], target[:40]).statistic, abs=1e-3)


def test_hard_rank_is_scipys_average_rank_among_the_masked():
    """Ties get their average rank (as spearmanr ranks); rows outside the mask, NaN
    included, neither get a say nor shift the others' ranks."""
    rng = np.random.default_rng(4)
    x = rng.integers(0, 6, 50).astype(np.float32)          # many ties
    x[[3, 17]] = -np.inf                                    # ties at the bottom too
    m = rng.random(50) < 0.7
    x[~m & (np.arange(50) % 2 == 0)] = np.nan              # unlabelled rows, masked out
    got = np.asarray(jax.jit(tasks.hard_rank)(jnp.asarray(x), jnp.asarray(m)))
    np.testing.assert_array_equal(got[m], stats.rankdata(x[m], method="average"))
    y = rng.normal(size=50).astype(np.float32)
    r = float(tasks.masked_pearson(jnp.asarray(got), tasks.hard_rank(jnp.asarray(y), jnp.asarray(m)),
                                   jnp.asarray(m)))
    assert r == pytest.approx(stats.spearmanr(x[m], y[m]).statistic, abs=1e-5)


def test_soft_spearman_gradient_is_finite_and_nonzero():
    rng = np.random.default_rng(0)
    pred, target = jnp.asarray(rng.random(32)), jnp.asarray(rng.random(32))
    g = jax.grad(lambda p: tasks.soft_spearman(p, target, jnp.ones(32, bool), 0.1))(pred)
    assert np.isfinite(g).all() and np.abs(g).max() > 1e-3


def test_multitask_loss_is_the_weighted_sum_of_single_task_losses():
    config = base_config()
    config.task = "multitask"
    config.loss.name = "mse+spearman"
    config.loss.task_weights = (0.5, 2.0, 1.5)
    rng = np.random.default_rng(1)
    batch = {"targets": jnp.asarray(rng.random((16, 3)), jnp.float32),
             "mask": jnp.asarray(rng.random(16) > 0.2)}
    out = jnp.asarray(rng.random((16, 3)), jnp.float32)
    multi = tasks.make_task(config)
    total, _ = multi.loss({}, out, batch)
    singles = []
    for i, axis in enumerate(lab.TARGETS):
        c = base_config()
        c.task = "regression"
        c.loss.name = "mse+spearman"
        c.data.targets = (axis,)
        single, _ = tasks.make_task(c).loss({}, out[:, i:i + 1], batch)
        singles.append(float(single))
    assert float(total) == pytest.approx(float(np.dot([0.5, 2.0, 1.5], singles)), rel=1e-6)


def test_spearman_loss_beats_a_constant_predictor(tiny_prepared, tiny_data, tmp_path):
    cfg = tiny("multitask", tiny_prepared, **{
        "task": "regression", "data.targets": "('energy',)", "loss.name": "spearman",
        "train.epochs": 10, "train.patience": 0, "model.hidden_size": 32,
        "model.summary": "mean"})
    train(cfg, tmp_path / "run", progress=False)
    out = experiments.predict_set(tmp_path / "run", "multitask_dataset_beat/test")
    pred = {r[0]: float(r[2]) for r in list(csv.reader(out.open()))[1:]}
    truth = {e.id: e.targets[1] for e in lab.read_labels(_answers_set(tiny_data, tmp_path), "train")}
    ids = sorted(truth)
    rho = stats.spearmanr([pred[i] for i in ids], [truth[i] for i in ids]).statistic
    # On the 40 unseen test clips; a constant predictor has no rank correlation.
    assert rho > 0.3, rho


def _answers_set(data, tmp_path):
    """The hidden multitask test labels as a readable lab set."""
    check = tmp_path / "answers" / "multitask_dataset"
    shutil.copytree(data / "multitask_dataset_beat" / "test", check / "train")
    shutil.copy(data / "answers" / "multitask_test_labels.txt", check / "train_labels.txt")
    return check


@pytest.fixture(scope="module")
def genre_run(tiny_prepared, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("genre") / "lstm"
    train(tiny("lstm", tiny_prepared, **{"train.epochs": 2}), workdir, progress=False)
    return workdir


def _mt_config(prepared):
    return tiny("multitask", prepared, **{"train.epochs": 2, "train.patience": 0})


def test_transfer_copies_backbone_and_initialises_a_fresh_head(genre_run, tiny_prepared, tmp_path):
    cfg = runs.match_source_run(_mt_config(tiny_prepared), genre_run)
    cfg.train.init_from = str(genre_run)
    cfg.train.epochs = 0  # initialise only
    run = runs.build_run(cfg)
    state = steps.init_state(run, parallel.make_mesh(), steps_per_epoch=1)
    src = checkpoint.load_params(genre_run, "best")
    for (p, a), (_, b) in zip(jax.tree_util.tree_leaves_with_path(src["backbone"]),
                              jax.tree_util.tree_leaves_with_path(jax.device_get(state.params["backbone"]))):
        np.testing.assert_array_equal(a, b, err_msg=jax.tree_util.keystr(p))
    cfg.train.init_from = ""
    fresh = steps.init_state(runs.build_run(cfg), parallel.make_mesh(), steps_per_epoch=1)
    jax.tree_util.tree_map(np.testing.assert_array_equal, jax.device_get(fresh.params["head"]),
                           jax.device_get(state.params["head"]))  # the head is as from scratch
    assert set(state.params["head"]) == {f"task_{i}" for i in range(3)}


def test_frozen_backbone_is_bit_identical_after_fine_tuning(genre_run, tiny_prepared, tmp_path):
    cfg = runs.match_source_run(_mt_config(tiny_prepared), genre_run)
    cfg.train.init_from = str(genre_run)
    cfg.train.freeze_backbone = True
    train(cfg, tmp_path / "frozen", progress=False)
    before = checkpoint.load_params(genre_run, "best")["backbone"]
    after, _ = checkpoint.load_variables(tmp_path / "frozen", "latest")
    jax.tree_util.tree_map(np.testing.assert_array_equal, before, after["params"]["backbone"])
    assert not np.allclose(after["params"]["head"]["task_0"]["outputs"]["kernel"], 0)


def test_predictions_file_has_one_row_per_test_clip(tiny_prepared, tiny_data, tmp_path):
    train(_mt_config(tiny_prepared), tmp_path / "mt", progress=False)
    out = experiments.predict_set(tmp_path / "mt", "multitask_dataset_beat/test")
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["Id", "valence", "energy", "danceability"]
    test_ids = {p.name.split(".")[0] for p in (tiny_data / "multitask_dataset_beat" / "test").iterdir()}
    assert {r[0] for r in rows[1:]} == test_ids and len(rows) - 1 == len(test_ids)
    values = np.asarray([[float(v) for v in r[1:]] for r in rows[1:]])
    assert ((values > 0) & (values < 1)).all()
    assert len(values) == PreparedSet.open(tiny_prepared / "multitask_dataset_beat").count("test")
    # The file parses back with the lab's multitask label reader.
    check = tmp_path / "multitask_dataset"
    shutil.copytree(tiny_data / "multitask_dataset_beat" / "test", check / "train")
    shutil.copy(out, check / "train_labels.txt")
    entries = lab.read_labels(check, "train")
    np.testing.assert_allclose([e.targets for e in entries], values)
