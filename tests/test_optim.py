"""Optimiser options: SGD momentum, reduce-on-plateau (against PyTorch's), the LR range test."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmusic import cli, lrfind, steps
from jaxmusic.config import base_config

REPO = Path(__file__).resolve().parents[1]


def _cfg(**train):
    c = base_config()
    c.train.clip_norm = 0.0
    for k, v in train.items():
        setattr(c.train, k, v)
    return c


@pytest.mark.parametrize("momentum", [0.5, 0.9, 0.0])
def test_sgd_momentum_matches_numpy(momentum):
    tx, _ = steps.make_optimizer(_cfg(optimizer="sgd", momentum=momentum, learning_rate=0.1), 10)
    params = {"w": jnp.zeros(3)}
    state = tx.init(params)
    grads = [np.array([1.0, -2.0, 0.5]), np.array([0.5, 1.0, -1.0]), np.array([2.0, 0.0, 1.0])]
    trace = np.zeros(3)
    for g in grads:
        updates, state = tx.update({"w": jnp.asarray(g, jnp.float32)}, state, params)
        trace = g + momentum * trace          # heavy-ball momentum, as torch.optim.SGD(dampening=0)
        np.testing.assert_allclose(np.asarray(updates["w"]), -0.1 * trace, rtol=1e-6)


def test_reduce_on_plateau_follows_torch_scheduler():
    torch = pytest.importorskip("torch")
    per_epoch, patience, factor = 3, 2, 0.5
    cfg = _cfg(optimizer="sgd", momentum=0.0, learning_rate=1.0, schedule="plateau",
               plateau_patience=patience, plateau_factor=factor, plateau_rtol=1e-4)
    assert steps.uses_plateau(cfg)
    tx, _ = steps.make_optimizer(cfg, per_epoch)
    params = {"w": jnp.zeros(())}
    state = tx.init(params)
    epoch_losses = [5.0, 4.0, 4.0, 4.1, 3.0, 3.0, 3.0, 3.0, 2.0, 2.5, 2.5, 2.5]
    # torch reduces after `patience` bad epochs *exceeded*; optax after `patience` reached.
    w = torch.nn.Parameter(torch.zeros(()))
    opt = torch.optim.SGD([w], lr=1.0)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=factor, patience=patience - 1,
                                                       threshold=1e-4, threshold_mode="rel")
    update = jax.jit(lambda g, s, v: tx.update(g, s, params, value=v))
    for loss in epoch_losses:
        for k in range(per_epoch):   # step losses whose epoch mean is `loss`
            u, state = update({"w": jnp.ones(())}, state, jnp.float32(loss + (k - 1) * 0.1))
        sched.step(loss)
        np.testing.assert_allclose(-float(u["w"]), opt.param_groups[0]["lr"], rtol=1e-6)
    assert opt.param_groups[0]["lr"] < 0.2   # it did reduce, more than once


def test_plateau_in_the_train_step_logs_the_scale(tiny_prepared):
    from jaxmusic import parallel, runs
    from jaxmusic.config import load_config

    cfg = load_config(REPO / "configs" / "tiny" / "cnn.py", [f"--config.data.prepared={tiny_prepared}",
                      "--config.train.schedule=plateau", "--config.train.optimizer=sgd",
                      "--config.train.momentum=0.5"])
    run = runs.build_run(cfg)
    state = steps.init_state(run, parallel.make_mesh(), 2)
    n, t, f = 8, run.max_length, run.num_features
    batch = {"features": jnp.ones((n, t, f)), "lengths": jnp.full((n,), t, jnp.int32), "mask": jnp.ones(n, bool),
             "label": jnp.zeros(n, jnp.int32)}
    step = jax.jit(steps.train_step_fn(run))
    state, m = step(state, batch)
    assert float(m["lr_scale"]) == 1.0 and int(state.step) == 1


def test_lr_find_suggests_a_rate_inside_the_range(tiny_prepared, tmp_path, capsys):
    out = tmp_path / "lr.png"
    rc = cli.main(["lr-find", "--config", str(REPO / "configs" / "tiny" / "cnn.py"), "--steps", "12",
                   "--min-lr", "1e-5", "--max-lr", "10", "--out", str(out), "--json",
                   f"--config.data.prepared={tiny_prepared}"])
    assert rc == 0 and out.stat().st_size > 5000
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    saved = json.loads(out.with_suffix(".json").read_text())
    lrs = np.asarray(saved["lr"])
    np.testing.assert_allclose(lrs, 1e-5 * (10 / 1e-5) ** (np.arange(len(lrs)) / 11), rtol=1e-5)
    assert 1e-5 <= printed["suggestion"]["steepest"] <= 10
    np.testing.assert_allclose(saved["smoothed"], lrfind.smooth(saved["loss"]), rtol=1e-9)


def test_suggestion_on_a_known_curve():
    lrs = np.logspace(-6, 0, 61)
    x = np.log10(lrs)
    loss = 2.0 - 1.5 / (1 + np.exp(-(x + 3) * 3)) + np.where(x > -1, (x + 1) ** 2 * 5, 0)  # steepest at 1e-3
    s = lrfind.suggest(lrs, loss)
    assert s["steepest"] == pytest.approx(1e-3, rel=0.3)
    assert s["min_loss_lr"] == pytest.approx(lrs[np.argmin(loss)])


def test_lr_find_starts_from_init_from(tiny_prepared, tmp_path, capsys):
    """--init-from (and a frozen backbone) apply to the range test as to training: its
    first loss is the transferred model's, not a fresh one's."""
    cfg = str(REPO / "configs" / "tiny" / "cnn.py")
    data = f"--config.data.prepared={tiny_prepared}"
    src = tmp_path / "src"
    assert cli.main(["train", "--config", cfg, "--workdir", str(src), data, "--config.train.epochs=3",
                     "--config.train.learning_rate=0.01"]) == 0

    def first_losses(*extra):
        out = tmp_path / f"lr{len(list(tmp_path.iterdir()))}.png"
        assert cli.main(["lr-find", "--config", cfg, "--steps", "3", "--min-lr", "1e-9", "--max-lr", "1e-8",
                         "--out", str(out), "--json", data, *extra]) == 0
        return json.loads(out.with_suffix(".json").read_text())["loss"]

    scratch = first_losses()
    frozen = first_losses(f"--config.train.init_from={src}", "--config.train.freeze_backbone=True")
    assert len(scratch) == len(frozen) == 3
    assert abs(frozen[0] - scratch[0]) > 1e-3, (frozen, scratch)
    capsys.readouterr()
    assert cli.main(["lr-find", "--config", cfg, "--steps", "3", data,
                     f"--config.train.init_from={tmp_path / 'missing_run'}"]) == 2
    assert "missing_run" in capsys.readouterr().err


def test_frozen_step_differentiates_the_head_only(tiny_prepared):
    """--freeze-backbone: the step's gradient is the head's alone. Its grad_norm is the norm of
    numpy's softmax cross-entropy gradient of the head's dense layer on the backbone's latent
    (the gradients thrown away for the backbone are not counted), the head moves, and the
    backbone's parameters and batch statistics stay as they were."""
    from jaxmusic import parallel, runs
    from jaxmusic.config import load_config

    cfg = load_config(REPO / "configs" / "tiny" / "cnn.py", [f"--config.data.prepared={tiny_prepared}",
                      "--config.train.freeze_backbone=True"])
    run = runs.build_run(cfg)
    state = steps.init_state(run, parallel.make_mesh(), 2)
    before = jax.device_get(state)
    rng = np.random.default_rng(0)
    n, t, f = 8, run.max_length, run.num_features
    classes = len(run.task.label_names)
    batch = {"features": rng.normal(size=(n, t, f)).astype(np.float32), "lengths": np.full(n, t, np.int32),
             "mask": np.ones(n, bool), "label": rng.integers(0, classes, n).astype(np.int32)}
    new, m = jax.jit(steps.train_step_fn(run, freeze_backbone=True))(state, batch)

    out, _ = run.model.apply({"params": before.params, "batch_stats": before.batch_stats}, batch["features"],
                             batch["lengths"], train=True, mutable=["batch_stats"])
    latent = np.asarray(out["latent"], np.float64)
    head = before.params["head"]["logits"]
    logits = latent @ np.asarray(head["kernel"], np.float64) + np.asarray(head["bias"], np.float64)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    d = (p - np.eye(classes)[batch["label"]]) / n        # d(mean cross-entropy) / d logits
    gk, gb = latent.T @ d, d.sum(0)
    np.testing.assert_allclose(float(m["grad_norm"]), np.sqrt((gk ** 2).sum() + (gb ** 2).sum()), rtol=1e-4)
    np.testing.assert_allclose(float(m["loss"]), -np.mean(np.log(p[np.arange(n), batch["label"]])), rtol=1e-5)
    assert not np.array_equal(np.asarray(new.params["head"]["logits"]["kernel"]), head["kernel"])
    for a, b in zip(jax.tree_util.tree_leaves((new.params["backbone"], new.batch_stats)),
                    jax.tree_util.tree_leaves((before.params["backbone"], before.batch_stats))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
