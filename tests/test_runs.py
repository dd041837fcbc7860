"""The run directory as the one record of a model, and the core's correctness fixes:
transfer keeps batch statistics, one "best" tie rule, the learning rate under
accumulation, statistics from run.json, many steps per dispatch, config errors."""

from __future__ import annotations

import json

import jax
import numpy as np
import optax
import pytest

from jaxmusic import checkpoint, cli, parallel, runs, steps
from jaxmusic.data import lab
from jaxmusic.evaluate import Evaluator
from jaxmusic.runs import LoadedRun
from jaxmusic.train import train
from tests.test_train import REPO, assert_trees_close, tiny


@pytest.fixture(scope="module")
def cnn_run(tiny_prepared, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("cnn") / "run"
    train(tiny("cnn", tiny_prepared, **{"train.epochs": 2, "train.patience": 0}), workdir,
          progress=False)
    return workdir


def _multitask_from(source, prepared, **overrides):
    cfg = runs.match_source_run(tiny("multitask", prepared, **{"train.patience": 0, **overrides}),
                                source)
    cfg.data.view = json.loads((source / "run.json").read_text())["view"]
    cfg.train.init_from = str(source)
    return cfg


def test_cnn_transfer_carries_batch_statistics_and_a_frozen_backbone_keeps_them(
        cnn_run, tiny_prepared, tmp_path):
    src, _ = checkpoint.load_variables(cnn_run, "best")
    assert src["batch_stats"]["backbone"]  # the CNN has BatchNorm statistics
    cfg = _multitask_from(cnn_run, tiny_prepared, **{"train.epochs": 1})
    state = steps.init_state(runs.build_run(cfg), parallel.make_mesh(), steps_per_epoch=1)
    got = jax.device_get(state.batch_stats["backbone"])
    jax.tree_util.tree_map(np.testing.assert_array_equal, src["batch_stats"]["backbone"], got)
    # they are trained statistics, not BatchNorm's fresh mean 0 / variance 1
    means = [np.abs(x).max() for x in jax.tree_util.tree_leaves(got)]
    assert max(means) > 1e-3
    cfg.train.freeze_backbone = True
    train(cfg, tmp_path / "frozen", progress=False)
    after, _ = checkpoint.load_variables(tmp_path / "frozen", "latest")
    for collection in ("params", "batch_stats"):
        jax.tree_util.tree_map(np.testing.assert_array_equal, src[collection]["backbone"],
                               after[collection]["backbone"])


class _State:
    """Just enough of a train state for the checkpointer."""

    def __init__(self, step: int):
        self.step = step
        self.tree = {"step": np.int32(step), "params": {"w": np.full((2,), float(step), np.float32)}}


def _save_all(workdir, values, mode, keep=1):
    ckpt = checkpoint.Checkpointer(workdir, keep=keep, mode=mode)
    meta = {"best_value": None, "best_step": None, "best_epoch": None}
    for i, value in enumerate(values):
        step = i + 1
        if checkpoint.better(value, meta["best_value"], mode):
            meta.update(best_value=value, best_step=step, best_epoch=step)
        s = _State(step)
        ckpt.manager.save(step, args=checkpoint.ocp.args.Composite(
            state=checkpoint.ocp.args.StandardSave(s.tree),
            meta=checkpoint.ocp.args.JsonSave(dict(meta, epoch=i))),
            metrics={"value": float(value), "step": step})
    ckpt.close()
    return meta


@pytest.mark.parametrize("mode, values, best", [
    ("max", [0.5, 0.7, 0.7, 0.6], 2),       # a later tie is no improvement
    ("min", [0.9, 0.4, 0.4, 0.8], 2),
    ("max", [0.3, 0.3, 0.3], 1),
])
def test_best_checkpoint_is_the_loops_best_on_ties(tmp_path, mode, values, best):
    meta = _save_all(tmp_path, values, mode)
    assert meta["best_step"] == best
    variables, loaded = checkpoint.load_variables(tmp_path, "best")
    assert loaded["restored_step"] == best
    np.testing.assert_array_equal(variables["params"]["w"], [best, best])


def test_a_pruned_best_or_an_unknown_choice_is_an_error_not_the_latest(tmp_path):
    meta = _save_all(tmp_path, [0.1, 0.2, 0.3], "max")
    assert meta["best_step"] == 3
    with pytest.raises(ValueError, match="which checkpoint"):
        checkpoint.load_variables(tmp_path, "newest")
    # meta names a best step the manager no longer keeps (e.g. an edited or foreign run)
    ckpt = checkpoint.Checkpointer(tmp_path / "other", keep=1, mode="max")
    for step in (1, 2, 3):
        ckpt.manager.save(step, args=checkpoint.ocp.args.Composite(
            state=checkpoint.ocp.args.StandardSave(_State(step).tree),
            meta=checkpoint.ocp.args.JsonSave({"best_step": 1, "best_epoch": 1})),
            metrics={"value": float(step), "step": step})
    ckpt.close()
    with pytest.raises(checkpoint.CheckpointError, match=r"best checkpoint \(step 1"):
        checkpoint.load_variables(tmp_path / "other", "best")


def test_logged_learning_rate_is_the_schedules_under_accumulation(tiny_prepared, tmp_path):
    k = 2
    cfg = tiny("lstm", tiny_prepared, **{"train.epochs": 1, "train.patience": 0,
                                         "train.batch_size": 8, "train.grad_accum_steps": k,
                                         "train.schedule": "warmup_cosine",
                                         "train.warmup_steps": 50, "data.readers": 1})
    result = train(cfg, tmp_path / "run", progress=False)
    state, record = result["state"], result["meta"]["history"][-1]
    updates = int(state.opt_state.gradient_step)      # optax's own count of real updates
    assert int(state.step) == k * updates
    reference = optax.warmup_cosine_decay_schedule(0.0, cfg.train.learning_rate, 50,
                                                   max(updates, 51))
    # the last micro-batch contributed to update number `updates - 1` (0-based)
    assert record["learning_rate"] == pytest.approx(float(reference(updates - 1)), rel=1e-6)
    assert record["learning_rate"] != pytest.approx(float(reference(int(state.step))), rel=1e-3)


def test_evaluation_and_prediction_use_the_runs_statistics_on_the_twin_set(
        cnn_run, tiny_prepared, tiny_data):
    ev = Evaluator(cnn_run)
    twin = ev.prepared("fma_genre_spectrograms")          # full resolution: other statistics
    own_mean, _ = twin.train_statistics("mel")
    assert not np.allclose(own_mean, ev.run.record["feature_mean"], atol=1e-3)
    res = ev.predict(twin, "test")
    # reference: the raw clips, stored as the shards store them (float16), cropped and
    # standardised with run.json's statistics by hand
    record = json.loads((cnn_run / "run.json").read_text())
    mean, std = np.asarray(record["feature_mean"]), np.asarray(record["feature_std"])
    loaded = LoadedRun(cnn_run)
    by_id = {r.id: r for r in lab.iter_records(tiny_data / "fma_genre_spectrograms", "test")}
    stored = np.dtype(twin.manifest["dtype"])
    windows = []
    for clip_id in res["ids"][:6]:
        x = by_id[clip_id].view("mel")[: record["max_length"]].astype(stored).astype(np.float64)
        windows.append(((x - mean) / np.where(std > 1e-6, std, 1.0)).astype(np.float32))
    np.testing.assert_allclose(res["outputs"][:6], loaded(windows), rtol=1e-4, atol=1e-4)


def test_steps_per_dispatch_equals_single_steps(tiny_prepared, tmp_path):
    # SGD, not Adam: the CNN's conv bias sits before BatchNorm, so its true gradient is 0
    # and Adam scales the rounding noise of that zero to full-size steps, which differ
    # between the scanned and the single-step programs on some processors (AVX2 Zen 3)
    common = {"train.epochs": 2, "train.patience": 0, "data.readers": 1,
              "train.optimizer": "sgd", "train.momentum": 0.9, "train.learning_rate": 0.05}
    single = train(tiny("cnn", tiny_prepared, **common), tmp_path / "one", progress=False)
    # K=5 does not divide the epoch's batches: the remainder runs as single steps
    multi = train(tiny("cnn", tiny_prepared, **common, **{"train.steps_per_dispatch": 5}),
                  tmp_path / "five", progress=False)
    assert int(single["state"].step) == int(multi["state"].step)
    assert multi["run"].record["trained_on"]["placement"] == "device"  # K index vectors per call
    assert int(multi["state"].step) % 5  # the epoch's remainder ran as single steps
    assert_trees_close(jax.device_get(single["state"].params), jax.device_get(multi["state"].params),
                       rtol=1e-5, atol=1e-6)
    assert_trees_close(jax.device_get(single["state"].batch_stats),
                       jax.device_get(multi["state"].batch_stats), rtol=1e-5, atol=1e-6)
    h1, h5 = single["meta"]["history"], multi["meta"]["history"]
    assert [h["train"]["loss"] for h in h1] == pytest.approx([h["train"]["loss"] for h in h5], rel=1e-5)


@pytest.mark.parametrize("override, message", [
    ("--config.train.batchsize=3", "unknown config field 'train.batchsize' (did you mean batch_size?)"),
    ("--config.train.batch_size=abc", "cannot parse 'abc' as int"),
    ("--config.train.batch_size=2.5", "expected int, got float"),
    ("--config.trian.epochs=3", "unknown config field 'trian' (did you mean train?)"),
    ("--config.train.epochs", "needs a value"),
])
def test_config_override_mistakes_are_one_line_errors(override, message, capsys, tmp_path):
    code = cli.main(["train", "--config", str(REPO / "configs" / "tiny" / "cnn.py"),
                     "--workdir", str(tmp_path / "x"), override])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("jaxmusic train: error: ")
    assert override in err and message in err
    assert not (tmp_path / "x").exists()
