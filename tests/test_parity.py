"""jaxmusic's Flax models and the PyTorch baselines compute the same function.

Weights are made in Flax, ported to PyTorch (benchmarks.porting), and both
frameworks are run on the same batch with varied lengths: the logits agree, and
after one cross-entropy backward pass every parameter's gradient, ported back to
the Flax layout, agrees with ``jax.grad``. Float32, relative error < 1e-4.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

from benchmarks import porting, torch_models  # noqa: E402
from jaxmusic.models import ClassifierHead, Model, build_backbone  # noqa: E402

pytestmark = pytest.mark.torch

NUM_CLASSES = 5
TOL = 1e-4

# name -> (jaxmusic model config, (B, T, F), lengths): small sizes, lengths varied
# down to shorter than one pooling window / one patch.
CASES = {
    "lstm": (dict(name="lstm", hidden_size=8, num_layers=2, bidirectional=True, dropout=0.0),
             (4, 23, 12), [23, 17, 5, 1]),
    "cnn": (dict(name="cnn", channels=(4, 6, 8, 8), kernel_size=3), (4, 37, 12), [37, 30, 9, 3]),
    "ast": (dict(name="ast", size="tiny", embed_dim=16, depth=2, num_heads=2),
            (3, 58, 36), [58, 41, 12]),
}


def torch_model(name: str, model_cfg: dict, input_fdim: int, input_tdim: int, packed: bool = True):
    cfg = {k: v for k, v in model_cfg.items() if k != "name"}
    if name == "lstm":
        backbone = torch_models.LSTMBackbone(input_fdim, packed=packed, **cfg)
    elif name == "cnn":
        backbone = torch_models.CNNBackbone(masked_batch_norm=True, **cfg)
    else:
        cfg.pop("size")
        backbone = torch_models.ASTBackbone(input_fdim, input_tdim, **cfg)
    return torch_models.Classifier(backbone, NUM_CLASSES)


@functools.lru_cache(maxsize=None)
def flax_setup(name: str, seed: int = 0):
    """The Flax model, its variables and a batch (built once per model: compiling dominates)."""
    model_cfg, (batch, steps, feats), lengths = CASES[name]
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((batch, steps, feats)).astype(np.float32)
    lengths = np.asarray(lengths, np.int32)
    features[np.arange(steps)[None, :] >= lengths[:, None]] = 0.0  # the pipeline's zero padding
    labels = rng.integers(0, NUM_CLASSES, batch).astype(np.int32)
    model = Model(build_backbone(model_cfg, feats, steps), ClassifierHead(NUM_CLASSES))
    # RBG keys: XLA compiles threefry-based initialisers slowly on CPU.
    variables = jax.jit(lambda r: model.init(r, jnp.asarray(features), jnp.asarray(lengths), train=False))(
        jax.random.key(seed, impl="rbg"))
    if "batch_stats" in variables:  # non-trivial running statistics for the eval-mode check
        variables = dict(variables)
        variables["batch_stats"] = jax.tree_util.tree_map(
            lambda v: v + jnp.asarray(rng.uniform(0.1, 0.5, v.shape), v.dtype), variables["batch_stats"])
    return model, variables, features, lengths, labels


def setup(name: str):
    """Flax model and variables, and a fresh PyTorch model holding the same weights."""
    model, variables, features, lengths, labels = flax_setup(name)
    model_cfg, (_, steps, feats), _ = CASES[name]
    tmodel = torch_model(name, model_cfg, feats, steps)
    porting.to_torch(name, variables, tmodel)
    return model, variables, tmodel, features, lengths, labels


def rel_err(a, b, floor: float = 1e-12) -> float:
    """``max|a - b| / max|b|`` (the denominator at least ``floor``)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), floor))


def torch_inputs(features, lengths, labels):
    return torch.from_numpy(features), torch.from_numpy(lengths).long(), torch.from_numpy(labels).long()


@pytest.mark.parametrize("name", sorted(CASES))
def test_logits_match(name):
    """Same logits (eval mode, running statistics for the CNN); to_jax inverts to_torch."""
    model, variables, tmodel, features, lengths, labels = setup(name)
    apply = jax.jit(lambda v, x, l: model.apply(v, x, l, train=False)["output"])
    logits = apply(variables, jnp.asarray(features), jnp.asarray(lengths))
    tmodel.eval()
    x, l, _ = torch_inputs(features, lengths, labels)
    with torch.no_grad():
        t_logits = tmodel(x, l).numpy()
    assert np.isfinite(t_logits).all()
    assert rel_err(t_logits, logits) < TOL, (name, rel_err(t_logits, logits))

    back = porting.to_jax(name, tmodel, variables)
    for (path, a), (_, b) in zip(jax.tree_util.tree_leaves_with_path(variables),
                                 jax.tree_util.tree_leaves_with_path(back)):
        np.testing.assert_array_equal(np.asarray(a), b, err_msg=jax.tree_util.keystr(path))

    if name == "lstm":
        # The padded (unpacked) baseline has the same semantics when no clip is padded.
        full = np.full_like(lengths, features.shape[1])
        model_cfg, (_, steps, feats), _ = CASES[name]
        padded = torch_model(name, model_cfg, feats, steps, packed=False)
        porting.to_torch(name, variables, padded)
        padded.eval()
        x, l, _ = torch_inputs(features, full, labels)
        with torch.no_grad():
            assert rel_err(padded(x, l).numpy(), apply(variables, jnp.asarray(features), jnp.asarray(full))) < TOL


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradients_match(name):
    """One cross-entropy backward pass (train mode: batch statistics for the CNN)."""
    model, variables, tmodel, features, lengths, labels = setup(name)
    params = variables["params"]
    others = {k: v for k, v in variables.items() if k != "params"}

    def loss_fn(p, x, l, y):
        out = model.apply({"params": p, **others}, x, l, train=True,
                          mutable=list(others) if others else False)
        out = out[0] if others else out
        return optax.softmax_cross_entropy_with_integer_labels(out["output"], y).mean()

    loss, grads = jax.jit(jax.value_and_grad(loss_fn))(
        params, jnp.asarray(features), jnp.asarray(lengths), jnp.asarray(labels))
    tmodel.train()
    x, l, y = torch_inputs(features, lengths, labels)
    t_loss = torch.nn.functional.cross_entropy(tmodel(x, l), y)
    t_loss.backward()
    assert abs(t_loss.item() - float(loss)) < TOL * max(1.0, abs(float(loss)))
    t_grads = porting.grads_to_jax(name, tmodel, variables)["params"]
    flat = jax.tree_util.tree_leaves_with_path(grads)
    t_flat = dict((jax.tree_util.keystr(p), g) for p, g in jax.tree_util.tree_leaves_with_path(t_grads))
    assert len(flat) == len(t_flat)
    # A gradient that is zero in exact arithmetic (a conv bias followed by train-mode
    # BatchNorm) is rounding noise in both frameworks: errors are measured against
    # at least 1% of the largest gradient of the model.
    floor = 1e-2 * max(float(np.abs(np.asarray(g)).max()) for _, g in flat)
    bad = {}
    for path, g in flat:
        key = jax.tree_util.keystr(path)
        err = rel_err(t_flat[key], g, floor)
        if err >= TOL:
            bad[key] = err
    assert not bad, bad
