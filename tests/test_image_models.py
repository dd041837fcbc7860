"""Image-style CNNs (lenet, minialexnet, cnn3_dense) and the ``data.resize`` input.

References: PyTorch (bilinear ``F.interpolate`` with and without antialias; the same
layers as ``torch.nn`` modules with the Flax weights), ``jax.image.resize`` on each
clip's valid part, and a hand-written numpy bilinear resize.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmusic.models import (BACKBONES, CNN3Dense, ImageCNN, LeNet, MiniAlexNet, ResizedBackbone,
                             build_backbone, resize_valid)
from jaxmusic.models.resize import linear_weights
from tests.test_train import tiny

B, T, F = 3, 40, 20
LENGTHS = np.array([40, 9, 23], np.int32)
EXTRA = 19


def batch(seed=0, steps=T, features=F, garbage=False):
    """Clips of LENGTHS frames; the padding is zeros, or noise when ``garbage``."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(B, steps, features)).astype(np.float32)
    if not garbage:
        for b, n in enumerate(LENGTHS):
            x[b, n:] = 0.0
    return x


def small(name: str, **kw):
    """The three backbones at reduced widths (same layer structure)."""
    narrow = {"lenet": dict(channels=(3, 4), dense=(12, 10)),
              "minialexnet": dict(channels=(4, 4, 6, 6, 5), dense=(16, 12)),
              "cnn3_dense": dict(channels=(3, 4, 5), dense=(16,))}[name]
    return BACKBONES[name](**{**narrow, **kw})


@functools.partial(jax.jit, static_argnames=("model",))
def init(model, x, lengths):
    return model.init({"params": jax.random.key(0, impl="rbg")}, x, lengths, train=False)


@functools.partial(jax.jit, static_argnames=("model", "train"))
def apply(model, variables, x, lengths, train=False, rng=None):
    rngs = {"dropout": rng} if rng is not None else None
    if train:
        return model.apply(variables, x, lengths, train=True, rngs=rngs, mutable=["batch_stats"])
    return model.apply(variables, x, lengths, train=False, capture_intermediates=False)


# ----------------------------------------------------------------------------- resize


def numpy_bilinear(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Plain bilinear, half-pixel centres, edge clamp (OpenCV/PyTorch align_corners=False)."""
    def axis_weights(n_in, n_out):
        w = np.zeros((n_out, n_in))
        for i in range(n_out):
            c = min(max((i + 0.5) * n_in / n_out - 0.5, 0.0), n_in - 1)
            lo = int(np.floor(c))
            hi = min(lo + 1, n_in - 1)
            w[i, lo] += 1 - (c - lo)
            w[i, hi] += c - lo
        return w
    return axis_weights(img.shape[0], out_h) @ img @ axis_weights(img.shape[1], out_w).T


@pytest.mark.parametrize("size", [(16, 8), (64, 30)])  # down, up (per axis)
def test_resize_of_the_valid_part_matches_references(size):
    x = batch(1, garbage=True)  # noise in the padding: it must not reach the picture
    for antialias in (True, False):
        got = np.asarray(jax.jit(resize_valid, static_argnums=(2, 3))(x, LENGTHS, size, antialias))
        assert got.shape == (B, *size)
        for b, n in enumerate(LENGTHS):
            ref = jax.image.resize(x[b, :n], size, "linear", antialias=antialias)
            np.testing.assert_allclose(got[b], np.asarray(ref), atol=2e-5)
            if not antialias:
                np.testing.assert_allclose(got[b], numpy_bilinear(x[b, :n], *size), atol=2e-5)
    torch = pytest.importorskip("torch")
    for antialias in (True, False):
        got = np.asarray(resize_valid(x, LENGTHS, size, antialias))
        for b, n in enumerate(LENGTHS):
            ref = torch.nn.functional.interpolate(torch.from_numpy(x[b, :n])[None, None], size=size,
                                                  mode="bilinear", align_corners=False,
                                                  antialias=antialias)[0, 0].numpy()
            np.testing.assert_allclose(got[b], ref, atol=2e-5)


def test_resize_weights_are_a_partition_of_unity_on_valid_frames():
    w = np.asarray(linear_weights(jnp.int32(13), 40, 7))
    np.testing.assert_allclose(w.sum(1), 1.0, rtol=1e-6)
    assert np.all(w[:, 13:] == 0)
    # Upscaling a constant image keeps it constant; a ramp stays a ramp inside.
    ramp = np.tile(np.arange(10, dtype=np.float32)[:, None], (1, 4))[None]
    up = np.asarray(resize_valid(ramp, np.array([10]), (20, 4)))[0, :, 0]
    np.testing.assert_allclose(np.diff(up[1:-1]), 0.5, atol=1e-5)


def test_resized_backbone_ignores_padding_length_and_content():
    model = ResizedBackbone(small("cnn3_dense"), (16, 12))
    x = batch(2)
    v = init(model, x, LENGTHS)
    short = np.asarray(apply(model, v, x, LENGTHS))
    longer = np.concatenate([x, np.random.default_rng(5).normal(size=(B, EXTRA, F)).astype(np.float32)], 1)
    np.testing.assert_allclose(np.asarray(apply(model, v, longer, LENGTHS)), short, atol=1e-5)
    moved = x.copy()
    moved[1, 0] += 1.0
    assert np.abs(np.asarray(apply(model, v, moved, LENGTHS))[1] - short[1]).max() > 1e-6


def test_build_backbone_resize_wraps_and_sizes_the_inner_network():
    m = build_backbone({"name": "lenet"}, 128, 1293, resize=(128, 64))
    assert isinstance(m, ResizedBackbone) and isinstance(m.backbone, LeNet) and m.feature_size == 84
    ast = build_backbone({"name": "ast", "depth": 1}, 128, 1293, resize=[96, 64])
    assert (ast.backbone.input_tdim, ast.backbone.input_fdim) == (96, 64)
    assert isinstance(build_backbone({"name": "cnn3_dense"}, 128, 100), CNN3Dense)
    with pytest.raises(ValueError, match="resize"):
        build_backbone({"name": "lenet"}, 128, 100, resize=(128,))
    with pytest.raises(ValueError, match="'dropuot'"):
        build_backbone({"name": "minialexnet", "dropuot": 0.1}, 128, 100)


# ----------------------------------------------------------------------------- the networks


@pytest.mark.parametrize("name", ["lenet", "minialexnet", "cnn3_dense"])
def test_shapes_and_padding_invariance(name):
    model = small(name)
    x = batch(3)
    v = init(model, x, LENGTHS)
    latent, state = model.apply(v, x, LENGTHS, train=False, mutable=["intermediates"])
    assert latent.shape == (B, model.feature_size) and model.feature_size == model.dense[-1]
    pools = sum(model.pools)
    fmap = state["intermediates"]["feature_map"][0]
    assert fmap.shape == (B, T // 2**pools, -(-F // 2**pools), model.channels[-1])
    first = v["params"]["dense_0"]["kernel"]
    assert first.shape == (np.prod(fmap.shape[1:]), model.dense[0])
    # Padding content never reaches the latent (eval), nor the batch statistics (train).
    noisy = batch(3, garbage=True)
    np.testing.assert_allclose(np.asarray(apply(model, v, noisy, LENGTHS)), np.asarray(latent), atol=1e-5)
    if model.batch_norm:
        _, s1 = apply(model, v, x, LENGTHS, train=True, rng=jax.random.key(1))
        _, s2 = apply(model, v, noisy, LENGTHS, train=True, rng=jax.random.key(1))
        for a, b in zip(jax.tree.leaves(s1), jax.tree.leaves(s2)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)
    moved = x.copy()
    moved[2, 3] += 1.0
    assert np.abs(np.asarray(apply(model, v, moved, LENGTHS))[2] - np.asarray(latent)[2]).max() > 1e-6


def test_defaults_are_the_documented_shapes():
    assert (LeNet().channels, LeNet().dense, LeNet().batch_norm, LeNet().dropout) == ((6, 16), (120, 84), False, 0.0)
    a = MiniAlexNet()
    assert a.channels == (32, 64, 128, 128, 64) and a.kernels == (5, 5, 3, 3, 3) and sum(a.pools) == 3
    assert a.dense == (256, 256) and a.batch_norm and a.dropout == 0.5
    c = CNN3Dense()
    assert len(c.channels) == 3 and c.dense == (256,) and c.dropout == 0.5 and c.feature_size == 256


@pytest.mark.parametrize("name", ["lenet", "cnn3_dense"])
def test_batch_norm_switch(name):
    x = batch(4)
    on = init(small(name, batch_norm=True), x, LENGTHS)
    off = init(small(name, batch_norm=False), x, LENGTHS)
    assert "batch_stats" in on and "batch_norm_0" in on["params"]
    assert "batch_stats" not in off and not any(k.startswith("batch_norm") for k in off["params"])


def test_dropout_switch_acts_in_train_mode_only():
    x = batch(5)
    model = small("cnn3_dense", dropout=0.5, batch_norm=False)
    v = init(model, x, LENGTHS)
    eval_a, eval_b = apply(model, v, x, LENGTHS), apply(model, v, x, LENGTHS)
    np.testing.assert_array_equal(np.asarray(eval_a), np.asarray(eval_b))
    (train_a, _), (train_b, _) = (apply(model, v, x, LENGTHS, train=True, rng=jax.random.key(k)) for k in (1, 2))
    dropped = np.asarray(train_a) == 0
    assert dropped.mean() > 0.3 and not np.array_equal(np.asarray(train_a), np.asarray(train_b))
    kept = ~dropped & (np.asarray(eval_a) != 0)
    np.testing.assert_allclose(np.asarray(train_a)[kept], 2 * np.asarray(eval_a)[kept], rtol=1e-5)
    off = small("cnn3_dense", dropout=0.0, batch_norm=False)
    (t, _) = apply(off, v, x, LENGTHS, train=True, rng=jax.random.key(1))
    np.testing.assert_allclose(np.asarray(t), np.asarray(eval_a), rtol=1e-6)


def test_forward_matches_torch_layers():
    """The same network in torch.nn (eval mode, BatchNorm with running statistics)."""
    torch = pytest.importorskip("torch")
    model = small("minialexnet")
    x = batch(6)
    full = np.full(B, T, np.int32)
    v = init(model, x, full)
    rng = np.random.default_rng(7)
    stats = jax.tree.map(lambda a: np.asarray(rng.uniform(0.5, 1.5, a.shape), np.float32), v["batch_stats"])
    v = {"params": v["params"], "batch_stats": stats}
    got = np.asarray(apply(model, v, x, full))
    p = jax.tree.map(lambda a: torch.from_numpy(np.asarray(a).copy()), v["params"])
    h = torch.from_numpy(x)[:, None]  # NCHW, H = time
    with torch.no_grad():
        for i, pool in enumerate(model.pools):
            w = p[f"conv_{i}"]["kernel"].permute(3, 2, 0, 1)
            h = torch.nn.functional.conv2d(h, w, p[f"conv_{i}"]["bias"], padding="same")
            bn, st = p[f"batch_norm_{i}"], stats[f"batch_norm_{i}"]
            h = torch.nn.functional.batch_norm(h, torch.from_numpy(st["mean"]), torch.from_numpy(st["var"]),
                                               bn["scale"], bn["bias"], training=False, eps=1e-5)
            h = torch.relu(h)
            if pool:
                h = torch.nn.functional.max_pool2d(h, 2, ceil_mode=True)  # F even, T even: no partial window
        h = h.permute(0, 2, 3, 1).reshape(B, -1)  # NHWC order, as Flax flattens
        for j in range(len(model.dense)):
            h = torch.relu(h @ p[f"dense_{j}"]["kernel"] + p[f"dense_{j}"]["bias"])
    np.testing.assert_allclose(got, h.numpy(), rtol=1e-4, atol=1e-5)


def test_image_cnn_rejects_mismatched_layer_lists_and_short_clips():
    x = batch(0)
    with pytest.raises(ValueError, match="one entry per"):
        ImageCNN(channels=(4, 4), kernels=(3,), pools=(True, True)).init(jax.random.key(0), x, LENGTHS, train=False)
    with pytest.raises(ValueError, match="at least 64 time frames"):
        ImageCNN(channels=(2,) * 6, kernels=(3,) * 6, pools=(True,) * 6).init(
            jax.random.key(0), x, LENGTHS, train=False)


# ----------------------------------------------------------------------------- training


@pytest.mark.parametrize("name", ["lenet", "minialexnet", "cnn3"])
def test_tiny_configs_overfit_a_batch(tiny_prepared, tmp_path, name):
    from jaxmusic.train import train

    cfg = tiny(name, tiny_prepared, **{"train.overfit_batches": 1, "train.epochs": 12,
                                       "train.patience": 0, "train.learning_rate": 1e-2})
    result = train(cfg, tmp_path / "run", progress=False)
    losses = [h["train"]["loss"] for h in result["meta"]["history"]]
    assert losses[0] > 1.5 and losses[-1] < 0.25 * losses[0], losses


def test_jaxmusic_train_cli_with_resize_and_twin_test_set(tiny_prepared, tmp_path):
    """`jaxmusic train` end to end: resize in the saved config, evaluation on both test
    sets (the twin full-resolution set has longer clips: same pictures size)."""
    import json

    from tests.test_train import run_cli

    out = run_cli(["train", "--config", "configs/tiny/minialexnet.py", "--workdir", str(tmp_path / "run"),
                   "--quiet", f"--config.data.prepared={tiny_prepared}", "--config.train.epochs=1",
                   "--config.data.resize=(24, 16)"])
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["data"]["resize"] == [24, 16] and config["model"]["name"] == "minialexnet"
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    tests = metrics["test"]
    assert set(tests) == {"fma_genre_spectrograms_beat", "fma_genre_spectrograms"}, out
    for report in tests.values():
        assert 0.0 <= report["accuracy"] <= 1.0 and report["count"] > 0
        assert np.asarray(report["confusion_matrix"]).sum() == report["count"]
