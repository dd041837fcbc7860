"""The training loop: learning, compilation, sharding, checkpoints, resume, evaluation."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxmusic import checkpoint, evaluate
from jaxmusic.config import load_config
from jaxmusic.data.pipeline import PreparedSet
from jaxmusic.train import train

REPO = Path(__file__).resolve().parents[1]


def tiny(name: str, prepared: Path, **overrides):
    args = [f"--config.data.prepared={prepared}"]
    args += [f"--config.{k}={v}" for k, v in overrides.items()]
    return load_config(REPO / "configs" / "tiny" / f"{name}.py", args)


def cli(args: list[str], devices: int = 1, **popen) -> subprocess.Popen:
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
               TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.Popen([sys.executable, "-m", "jaxmusic", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


def run_cli(args, devices=1, timeout=300) -> str:
    p = cli(args, devices)
    out, _ = p.communicate(timeout=timeout)
    assert p.returncode == 0, out
    return out


def params_of(workdir, which="latest"):
    return checkpoint.load_variables(workdir, which)[0]


def assert_trees_close(a, b, rtol=1e-5, atol=1e-6):
    la, lb = jax.tree_util.tree_leaves_with_path(a), jax.tree_util.tree_leaves_with_path(b)
    assert [p for p, _ in la] == [p for p, _ in lb]
    for (path, x), (_, y) in zip(la, lb):
        np.testing.assert_allclose(x, y, rtol=rtol, atol=atol, err_msg=jax.tree_util.keystr(path))


def test_overfit_batch_drives_loss_to_zero(tiny_prepared, tmp_path):
    cfg = tiny("lstm", tiny_prepared, **{"train.overfit_batches": 2, "train.epochs": 40,
                                         "model.hidden_size": 32, "train.learning_rate": 0.01})
    result = train(cfg, tmp_path / "run", progress=False)
    history = result["meta"]["history"]
    assert history[0]["train"]["loss"] > 1.0
    assert history[-1]["train"]["loss"] < 0.05


def test_no_recompilation_after_the_first_step(tiny_prepared, tmp_path):
    result = train(tiny("lstm", tiny_prepared, **{"train.epochs": 3, "train.patience": 0}),
                   tmp_path / "run", progress=False)
    assert len(result["meta"]["history"]) == 3
    # 3 epochs of training and validation, one compiled program each.
    assert result["train_step"]._cache_size() == 1
    assert result["eval_step"]._cache_size() == 1


def test_two_devices_equal_one_device(tiny_prepared, tmp_path):
    # SGD: Adam would turn float noise in the conv biases' ~0 gradients (BatchNorm
    # follows them) into full-size steps, hiding what this test compares.
    # Two steps (overfit_batches=2: the first two batches of the epoch's order, through the
    # same pipeline). Over longer runs the differences of the two programs' float32 reduction
    # orders grow fast (measured on an Intel Xeon with AMX, the largest difference beyond rtol 2e-4:
    # ~1e-9 after 2 steps, 4e-6 after 3, 1e-5 after 4, 5e-3 after the full 12-step epoch, in
    # the BatchNorm running variance; the full-epoch figures were the same on an AMD EPYC),
    # so the equivalence is checked where float noise is still ~1e-9, at a tight tolerance.
    common = ["train", "--config", "configs/tiny/cnn.py", "--no-evaluate", "--quiet",
              f"--config.data.prepared={tiny_prepared}", "--config.train.epochs=1",
              "--config.train.overfit_batches=2",
              "--config.train.optimizer=sgd", "--config.train.learning_rate=0.05"]
    run_cli(common + ["--workdir", str(tmp_path / "one")], devices=1)
    # two devices through the CLI's --host-devices (it replaces XLA_FLAGS' device count of 1)
    run_cli(["--host-devices", "2"] + common + ["--workdir", str(tmp_path / "two")], devices=1)
    for name, devices in (("one", 1), ("two", 2)):
        assert json.loads((tmp_path / name / "run.json").read_text())["trained_on"]["devices"] == devices
    one, two = params_of(tmp_path / "one"), params_of(tmp_path / "two")
    assert_trees_close(one, two, rtol=1e-5, atol=1e-7)
    # And training moved the parameters (and the statistics) at all.
    assert not np.allclose(one["params"]["head"]["logits"]["bias"], 0.0)
    assert not np.allclose(one["batch_stats"]["backbone"]["batch_norm_0"]["var"], 1.0)


def test_kill_and_resume_equals_uninterrupted(tiny_prepared, tmp_path):
    common = ["train", "--config", "configs/tiny/lstm.py", "--no-evaluate", "--quiet",
              f"--config.data.prepared={tiny_prepared}", "--config.train.epochs=4",
              "--config.train.patience=0", "--config.model.dropout=0.2",
              "--config.model.num_layers=2"]
    full = tmp_path / "full"
    run_cli(common + ["--workdir", str(full)])
    killed = tmp_path / "killed"
    p = cli(common + ["--workdir", str(killed)])
    ckpts = killed / "checkpoints"
    deadline = time.time() + 240
    while time.time() < deadline:
        done = [d for d in ckpts.glob("*") if d.name.isdigit()] if ckpts.exists() else []
        if len(done) >= 2:
            break
        if p.poll() is not None:
            pytest.fail("training ended before it could be killed:\n" + p.stdout.read())
        time.sleep(0.2)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert len(json.loads((killed / "history.json").read_text())) < 4
    out = run_cli(common + ["--workdir", str(killed), "--resume"])
    assert "resumed from step" in out
    assert_trees_close(params_of(full), params_of(killed), rtol=0, atol=0)
    hist = json.loads((killed / "history.json").read_text())
    assert [h["epoch"] for h in hist] == [1, 2, 3, 4]


def test_checkpoint_restore_and_evaluation_reports(tiny_prepared, tmp_path):
    cfg = tiny("lstm", tiny_prepared, **{"train.epochs": 3, "train.patience": 0})
    result = train(cfg, tmp_path / "run", progress=False)
    state = result["state"]
    latest, meta = checkpoint.load_variables(tmp_path / "run", "latest")
    assert_trees_close(latest["params"], jax.device_get(state.params), rtol=0, atol=0)
    assert meta["restored_step"] == int(state.step)
    best, bmeta = checkpoint.load_variables(tmp_path / "run", "best")
    assert bmeta["restored_step"] == meta["best_step"]

    out = evaluate.evaluate_run(tmp_path / "run", progress=False)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    for name in ("fma_genre_spectrograms_beat", "fma_genre_spectrograms"):
        pset = PreparedSet.open(tiny_prepared / name)
        report = metrics["test"][name]
        assert report["count"] == pset.count("test")  # every clip exactly once
        assert sum(v["support"] for v in report["per_class"].values()) == pset.count("test")
        cm = np.asarray(report["confusion_matrix"])
        assert report["accuracy"] == pytest.approx(np.trace(cm) / cm.sum())
        assert (tmp_path / "run" / f"confusion_{name}.png").stat().st_size > 5000
    # The best checkpoint's validation score is the one recorded during training.
    assert out["validation"]["accuracy"] == pytest.approx(
        result["meta"]["history"][bmeta["best_epoch"] - 1]["validation"]["accuracy"])
    assert "| test: fma_genre_spectrograms_beat |" in (tmp_path / "run" / "metrics.md").read_text()


def test_gradient_accumulation_equals_the_large_batch_step(tiny_prepared, tmp_path):
    # SGD: Adam's normalisation turns the float noise of a ~0 gradient element (summed in
    # another order by the two programs) into a full step (seen: 1 of 2048 weights, 2.6e-4
    # relative, once the epoch order changed).
    common = {"train.epochs": 1, "train.patience": 0, "train.batch_size": 16,
              "data.readers": 1, "train.optimizer": "sgd", "train.learning_rate": 0.05}
    big = train(tiny("lstm", tiny_prepared, **common), tmp_path / "big", progress=False)
    acc = train(tiny("lstm", tiny_prepared, **common, **{"train.grad_accum_steps": 2}),
                tmp_path / "acc", progress=False)
    assert int(acc["state"].step) == 2 * int(big["state"].step)  # micro-steps
    assert_trees_close(jax.device_get(big["state"].params), jax.device_get(acc["state"].params),
                       rtol=1e-4, atol=1e-6)
