"""Models against independent references: numpy masks, a numpy PyTorch-equation LSTM,
torch.nn.LSTM on packed sequences, numpy pooling/BatchNorm statistics, the AST patch grid.

Shapes are tiny so the whole file compiles and runs in well under a minute on 2 cores.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmusic.models import (
    AST_SIZES,
    ASTBackbone,
    CNNBackbone,
    ClassifierHead,
    LSTMBackbone,
    Model,
    RegressionHead,
    build_backbone,
    make_ast,
    masks,
    patch_grid,
)

B, T, F = 4, 40, 12
LENGTHS = np.array([40, 1, 17, 33], np.int32)  # full, single frame, odd, mid
EXTRA = 37


def padded_batch(seed: int = 0, steps: int = T, features: int = F) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(B, steps, features)).astype(np.float32)
    for b, n in enumerate(LENGTHS):
        x[b, n:] = 0.0
    return x


def with_extra_padding(x: np.ndarray, extra: int = EXTRA) -> np.ndarray:
    return np.concatenate([x, np.zeros((x.shape[0], extra, x.shape[2]), x.dtype)], axis=1)


def key(seed: int) -> jax.Array:
    """RBG keys: XLA compiles threefry-based initialisers slowly on CPU (9 s vs 1 s for the CNN)."""
    return jax.random.key(seed, impl="rbg")


@functools.partial(jax.jit, static_argnames=("model",))
def init(model, x, lengths, seed=0):
    """Jitted ``model.init`` (eager flax would dispatch and compile op by op)."""
    return model.init(key(seed), x, lengths, train=False)


@functools.partial(jax.jit, static_argnames=("model", "train", "mutable", "capture_intermediates"))
def run(model, variables, x, lengths, *, train=False, rng=None, mutable=False, capture_intermediates=False):
    """Jitted ``model.apply``."""
    rngs = {"dropout": rng} if rng is not None else None
    return model.apply(variables, x, lengths, train=train, rngs=rngs, mutable=mutable,
                       capture_intermediates=capture_intermediates)


@functools.partial(jax.jit, static_argnames=("model",))
def weighted_latent_grad(model, params, x, lengths, weights):
    """Gradients of ``sum(latent * weights)`` with respect to (params, features), eval mode."""

    def loss(p, inputs):
        return jnp.sum(model.apply({"params": p}, inputs, lengths, train=False) * weights)

    return jax.grad(loss, argnums=(0, 1))(params, x)


@functools.cache
def small_backbone(name: str):
    """(module, variables) shared by the tests; initialised once per session."""
    model = small_backbones()[name]
    return model, init(model, with_extra_padding(padded_batch()), LENGTHS)


def small_model(name: str, head) -> tuple[Model, dict]:
    """Model(small backbone, head) with the shared backbone variables (no extra compile)."""
    backbone, backbone_variables = small_backbone(name)
    head_params = head.init(key(0), jnp.zeros((1, backbone.feature_size)))["params"]
    variables = {"params": {"backbone": backbone_variables["params"], "head": head_params}}
    if "batch_stats" in backbone_variables:
        variables["batch_stats"] = {"backbone": backbone_variables["batch_stats"]}
    return Model(backbone=backbone, head=head), variables


def small_backbones() -> dict[str, object]:
    return {
        "lstm": LSTMBackbone(hidden_size=6, num_layers=2, bidirectional=True, dropout=0.2, chunk_size=16),
        "cnn": CNNBackbone(channels=(3, 4, 5, 6)),
        "ast": ASTBackbone(input_fdim=F, input_tdim=T + EXTRA, patch_size=4, fstride=4, tstride=3,
                           embed_dim=8, depth=2, num_heads=2, dropout=0.1),
    }


# ----------------------------------------------------------------------------- masks


def test_padding_mask_matches_numpy():
    lengths = np.array([0, 1, 5, 7, 3], np.int32)
    expected = np.arange(7)[None, :] < lengths[:, None]
    got = np.asarray(masks.padding_mask(jnp.asarray(lengths), 7))
    assert got.dtype == np.bool_
    np.testing.assert_array_equal(got, expected)


def test_mask_helpers_match_numpy():
    rng = np.random.default_rng(1)
    lengths = np.array([1, 5, 7, 16, 33], np.int32)
    for level in range(5):
        np.testing.assert_array_equal(masks.pooled_lengths(lengths, level),
                                      np.maximum(1, lengths // 2**level))
    x = rng.normal(size=(5, 33, 3)).astype(np.float32)
    x[0, 1:] = np.nan  # padding must not leak, even as NaN
    got = np.asarray(masks.masked_mean(jnp.asarray(x), masks.padding_mask(lengths, 33)))
    expected = np.stack([x[b, :n].mean(0) for b, n in enumerate(lengths)])
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    rev = np.asarray(masks.reverse_within_length(jnp.asarray(x), lengths))
    for b, n in enumerate(lengths):
        np.testing.assert_array_equal(rev[b, :n], x[b, :n][::-1])
        np.testing.assert_array_equal(rev[b, n:], x[b, n:])
    # AST rule: patch j valid iff j*stride + patch <= max(length, patch).
    lengths = np.array([3, 16, 25, 26, 1000], np.int32)
    expected = [sum(j * 10 + 16 <= max(n, 16) for j in range(50)) for n in lengths]
    np.testing.assert_array_equal(masks.valid_patches(lengths, 16, 10, 50), expected)


# ----------------------------------------------------------------------------- invariance


@pytest.mark.parametrize("name", ["lstm", "cnn", "ast"])
def test_latent_ignores_padding_length(name):
    model, variables = small_backbone(name)
    x = padded_batch(seed=2)
    x_long = with_extra_padding(x)
    short = run(model, variables, x, LENGTHS)
    long = run(model, variables, x_long, LENGTHS)
    assert short.shape == (B, model.feature_size)
    np.testing.assert_allclose(np.asarray(short), np.asarray(long), atol=2e-6, rtol=1e-5)
    # And it is not trivially constant: a change inside the valid part moves the latent.
    x_changed = x.copy()
    x_changed[2, 0] += 1.0
    moved = run(model, variables, x_changed, LENGTHS)
    assert np.abs(np.asarray(moved[2]) - np.asarray(short[2])).max() > 1e-6


# ----------------------------------------------------------------------------- LSTM


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def numpy_lstm(x, lengths, params, *, num_layers, bidirectional, summary="last"):
    """PyTorch LSTM equations in float64, one example at a time on its valid frames only.

    params follow the documented mapping: w_ih [D, F_in, 4H] (= weight_ih.T), w_hh
    [D, H, 4H], bias [D, 4H] (= bias_ih + bias_hh); gates i, f, g, o.
    """
    directions = 2 if bidirectional else 1
    latents = []
    for b, n in enumerate(lengths):
        seq = np.asarray(x[b, :n], np.float64)
        finals = None
        for layer in range(num_layers):
            w_ih = np.asarray(params[f"layer_{layer}_w_ih"], np.float64)
            w_hh = np.asarray(params[f"layer_{layer}_w_hh"], np.float64)
            bias = np.asarray(params[f"layer_{layer}_bias"], np.float64)
            hidden = w_hh.shape[1]
            outs, finals = [], []
            for d in range(directions):
                order = range(n) if d == 0 else range(n - 1, -1, -1)
                h, c = np.zeros(hidden), np.zeros(hidden)
                out = np.zeros((n, hidden))
                for t in order:
                    z = seq[t] @ w_ih[d] + h @ w_hh[d] + bias[d]
                    i, f, g, o = np.split(z, 4)
                    c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
                    h = _sigmoid(o) * np.tanh(c)
                    out[t] = h
                outs.append(out)
                finals.append(h)  # forward: step n-1; backward: step 0
            seq = np.concatenate(outs, axis=1)
        latents.append(np.concatenate(finals) if summary == "last" else seq.mean(0))
    return np.stack(latents)


@pytest.mark.parametrize("bidirectional,summary,chunk_size", [
    (True, "last", 16),  # the shared model: 40 steps = 3 chunks, the last one partial
    (False, "last", None),  # one chunk: a single input projection for all steps
    (True, "mean", 7),
])
def test_lstm_matches_numpy_pytorch_equations(bidirectional, summary, chunk_size):
    x = padded_batch(seed=3)
    if (bidirectional, summary, chunk_size) == (True, "last", 16):
        model, variables = small_backbone("lstm")
        params = variables["params"]
    else:
        model = LSTMBackbone(hidden_size=6, num_layers=2, bidirectional=bidirectional, dropout=0.3,
                             summary=summary, chunk_size=chunk_size)
        params = init(model, x, LENGTHS, 1)["params"]
    got = run(model, {"params": params}, x, LENGTHS)
    expected = numpy_lstm(x, LENGTHS, params, num_layers=2, bidirectional=bidirectional, summary=summary)
    assert got.shape == (B, model.feature_size) == (B, 6 * (2 if bidirectional else 1))
    np.testing.assert_allclose(np.asarray(got), expected, atol=1e-5)


def test_lstm_gradient_matches_finite_differences_of_numpy_reference():
    """The hand-written backward pass against float64 central differences."""
    x = padded_batch(seed=4)
    model, variables = small_backbone("lstm")  # chunks of 16 steps: gradients cross chunk borders
    params = variables["params"]
    rng = np.random.default_rng(5)
    weights = rng.normal(size=(B, model.feature_size)).astype(np.float32)
    grad_p, grad_x = weighted_latent_grad(model, params, x, LENGTHS, weights)
    direction = {k: rng.normal(size=v.shape) for k, v in params.items()}
    dx = rng.normal(size=x.shape) * (np.arange(T)[None, :, None] < LENGTHS[:, None, None])

    def numpy_loss(eps):
        p = {k: np.asarray(v, np.float64) + eps * direction[k] for k, v in params.items()}
        return np.sum(numpy_lstm(x + eps * dx, LENGTHS, p, num_layers=2, bidirectional=True) * weights)

    eps = 1e-5
    numeric = (numpy_loss(eps) - numpy_loss(-eps)) / (2 * eps)
    analytic = sum(np.sum(np.asarray(grad_p[k]) * direction[k]) for k in params) + np.sum(np.asarray(grad_x) * dx)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-4)


def test_lstm_matches_torch_packed_sequences():
    torch = pytest.importorskip("torch")
    x = padded_batch(seed=6)
    model, variables = small_backbone("lstm")
    params = variables["params"]
    hidden, layers = model.hidden_size, model.num_layers
    lstm = torch.nn.LSTM(F, hidden, layers, batch_first=True, bidirectional=True)
    with torch.no_grad():  # the documented JAX -> PyTorch mapping
        for layer in range(layers):
            for d, suffix in enumerate(["", "_reverse"]):
                ours = {name: np.asarray(params[f"layer_{layer}_{name}"][d]) for name in ("w_ih", "w_hh", "bias")}
                getattr(lstm, f"weight_ih_l{layer}{suffix}").copy_(torch.tensor(ours["w_ih"].T))
                getattr(lstm, f"weight_hh_l{layer}{suffix}").copy_(torch.tensor(ours["w_hh"].T))
                getattr(lstm, f"bias_ih_l{layer}{suffix}").copy_(torch.tensor(ours["bias"]))
                getattr(lstm, f"bias_hh_l{layer}{suffix}").zero_()
    x_torch = torch.tensor(x, requires_grad=True)
    packed = torch.nn.utils.rnn.pack_padded_sequence(x_torch, torch.tensor(LENGTHS), batch_first=True,
                                                     enforce_sorted=False)
    _, (h_n, _) = lstm(packed)
    expected = torch.cat([h_n[-2], h_n[-1]], dim=-1)
    weights = np.random.default_rng(7).normal(size=expected.shape).astype(np.float32)
    (expected * torch.tensor(weights)).sum().backward()

    got = run(model, {"params": params}, x, LENGTHS)
    np.testing.assert_allclose(np.asarray(got), expected.detach().numpy(), atol=1e-5)
    grad_p, grad_x = weighted_latent_grad(model, params, x, LENGTHS, weights)
    np.testing.assert_allclose(np.asarray(grad_x), x_torch.grad.numpy(), atol=1e-5)
    for layer in range(layers):
        for d, suffix in enumerate(["", "_reverse"]):
            np.testing.assert_allclose(np.asarray(grad_p[f"layer_{layer}_w_ih"][d]),
                                       getattr(lstm, f"weight_ih_l{layer}{suffix}").grad.numpy().T, atol=1e-5)
            np.testing.assert_allclose(np.asarray(grad_p[f"layer_{layer}_w_hh"][d]),
                                       getattr(lstm, f"weight_hh_l{layer}{suffix}").grad.numpy().T, atol=1e-5)
            np.testing.assert_allclose(np.asarray(grad_p[f"layer_{layer}_bias"][d]),
                                       getattr(lstm, f"bias_ih_l{layer}{suffix}").grad.numpy(), atol=1e-5)


def test_lstm_cudnn_weight_layout_matches_jax_cudnn_reference():
    """The GPU path's weight packing, checked on CPU with jax.experimental.rnn's reference LSTM."""
    rnn = pytest.importorskip("jax.experimental.rnn")
    from jaxmusic.models import lstm as lstm_module

    model, variables = small_backbone("lstm")
    params = variables["params"]
    x = padded_batch(seed=15)
    flat = lstm_module.cudnn_weights(params["layer_0_w_ih"], params["layer_0_w_hh"], params["layer_0_bias"])
    hidden = model.hidden_size
    assert flat.size == rnn.get_num_params_in_lstm(F, hidden, 1, True)
    w_ih, w_hh, b_ih, b_hh = rnn.unpack_lstm_weights(flat, F, hidden, 1, True)
    zeros = jnp.zeros((2, B, hidden))
    y, h_n, _ = rnn.lstm_ref(jnp.asarray(x), zeros, zeros, w_ih, w_hh, b_ih, b_hh, jnp.asarray(LENGTHS),
                             F, hidden, 1, 0.0, True)
    reference = numpy_lstm(x, LENGTHS, params, num_layers=1, bidirectional=True)  # layer 0 only
    np.testing.assert_allclose(np.concatenate([h_n[0], h_n[1]], axis=-1), reference, atol=1e-5)
    valid = np.arange(T)[None, :] < LENGTHS[:, None]
    np.testing.assert_array_equal(np.asarray(y)[~valid], 0.0)


def test_lstm_auto_takes_the_scan_on_every_measured_backend(monkeypatch):
    """implementation="auto" resolves per backend to the fastest train step measured there: the scan on
    CPU and on GPU (H200, issue 21: 5.8 / 43.5 ms against cuDNN's 21.8 / 164 ms at T=129 / 1293)."""
    from jaxmusic.models import lstm as lstm_module

    h200_ms = {"scan": (5.8, 43.5), "cudnn": (21.8, 164.0)}
    fastest_gpu = min(h200_ms, key=lambda k: sum(h200_ms[k]))
    assert lstm_module.auto_implementation("gpu") == fastest_gpu == "scan"
    assert lstm_module.auto_implementation("cpu") == "scan"
    assert lstm_module.auto_implementation("tpu") == "scan"  # no cuDNN there
    monkeypatch.setattr(lstm_module, "cudnn_available", lambda: True)
    monkeypatch.setattr(lstm_module.jax, "default_backend", lambda: "gpu")
    assert not LSTMBackbone(hidden_size=4)._use_cudnn()  # auto on a GPU with cuDNN: the scan
    assert LSTMBackbone(hidden_size=4, implementation="cudnn")._use_cudnn()
    # the table decides: a backend mapped to cudnn takes it where cuDNN is available
    monkeypatch.setitem(lstm_module.AUTO_IMPLEMENTATION, "gpu", "cudnn")
    assert LSTMBackbone(hidden_size=4)._use_cudnn()
    monkeypatch.setattr(lstm_module, "cudnn_available", lambda: False)
    assert not LSTMBackbone(hidden_size=4)._use_cudnn()


def test_lstm_dropout_between_layers_only_in_train_mode():
    x = padded_batch(seed=8)
    model, params = small_backbone("lstm")  # 2 layers, dropout 0.2
    eval_a = run(model, params, x, LENGTHS)
    train_a = run(model, params, x, LENGTHS, train=True, rng=key(1))
    train_b = run(model, params, x, LENGTHS, train=True, rng=key(2))
    assert not np.allclose(train_a, train_b) and not np.allclose(train_a, eval_a)
    single = LSTMBackbone(hidden_size=5, num_layers=1, dropout=0.5)  # nothing between layers: no dropout
    p1 = init(single, x, LENGTHS)
    np.testing.assert_array_equal(run(single, p1, x, LENGTHS, train=True, rng=key(1)),
                                  run(single, p1, x, LENGTHS))


# ----------------------------------------------------------------------------- CNN


def test_cnn_global_pooling_is_masked_mean_over_valid_pooled_frames():
    steps = 40
    lengths = np.array([40, 5, 17, 35], np.int32)  # pooled valid at level 4: 2, max(1, 0)=1, 1, 2
    x = np.zeros((B, steps, 16), np.float32)
    ramp = np.linspace(-1, 1, 16, dtype=np.float32)
    for b, n in enumerate(lengths):
        x[b, :n] = (b + 1) * ramp[None, :] + np.arange(n, dtype=np.float32)[:, None] / 10
    model = CNNBackbone(channels=(2, 3, 3, 4))
    variables = init(model, x, lengths)
    latent, state = run(model, variables, x, lengths, mutable=("intermediates",))
    feature_map = np.asarray(state["intermediates"]["feature_map"][0])  # [B, 40 // 16, 1, 4]
    assert feature_map.shape == (B, 2, 1, 4)
    valid = np.maximum(1, lengths // 16)
    np.testing.assert_array_equal(valid, [2, 1, 1, 2])
    expected = np.stack([feature_map[b, :n].mean(axis=(0, 1)) for b, n in enumerate(valid)])
    np.testing.assert_allclose(np.asarray(latent), expected, rtol=1e-6, atol=1e-7)
    # Frames past the valid ones are exactly zero (padding zeroed before every block).
    assert np.all(feature_map[1, 1:] == 0) and np.all(feature_map[2, 1:] == 0)


def test_cnn_batchnorm_running_stats_update_in_train_mode():
    x = padded_batch(seed=9) * 3.0 + 1.0
    for b, n in enumerate(LENGTHS):
        x[b, n:] = 0.0
    model = CNNBackbone(channels=(3, 4, 5, 6))
    variables = init(model, x, LENGTHS)
    stats = variables["batch_stats"]["batch_norm_0"]
    np.testing.assert_array_equal(stats["mean"], 0.0)
    np.testing.assert_array_equal(stats["var"], 1.0)
    _, state = run(model, variables, x, LENGTHS, train=True, mutable=("batch_stats", "intermediates"),
                   capture_intermediates=True)
    conv = np.asarray(state["intermediates"]["conv_0"]["__call__"][0], np.float64)  # [B, T, F, 3]
    valid = np.arange(T)[None, :] < LENGTHS[:, None]
    frames = conv[valid]  # valid frames only: [sum(lengths), F, 3]
    mean = frames.mean(axis=(0, 1))
    var = frames.var(axis=(0, 1))
    new = state["batch_stats"]["batch_norm_0"]
    np.testing.assert_allclose(np.asarray(new["mean"]), 0.1 * mean, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(np.asarray(new["var"]), 0.9 + 0.1 * var, rtol=1e-4)
    # Eval mode leaves them alone.
    _, untouched = run(model, variables, x, LENGTHS, mutable=("batch_stats",))
    np.testing.assert_array_equal(untouched["batch_stats"]["batch_norm_0"]["mean"], stats["mean"])


def test_cnn_max_pool_matches_flax_reduce_window():
    import flax.linen as nn

    from jaxmusic.models.cnn import max_pool_2x2

    x = jnp.asarray(np.random.default_rng(16).normal(size=(2, 9, 7, 3)), jnp.float32)  # odd T (floor), odd F (ceil)
    expected = nn.max_pool(x, (2, 2), strides=(2, 2), padding=((0, 0), (0, 1)))
    np.testing.assert_array_equal(max_pool_2x2(x), expected)
    assert max_pool_2x2(x).shape == (2, 4, 4, 3)


@pytest.mark.parametrize("k", [3, 4])
def test_cnn_tap_weight_gradient_matches_numpy(k):
    """The CNN's convolution (weight gradient as one product per kernel tap): value, input and
    weight gradients against numpy sums over the SAME-padded input."""
    from jaxmusic.models.cnn import _NHWC, conv_general_dilated

    rng = np.random.default_rng(k)
    x = rng.normal(size=(2, 11, 7, 3)).astype(np.float32)
    w = rng.normal(size=(k, k, 3, 4)).astype(np.float32)
    g = rng.normal(size=(2, 11, 7, 4)).astype(np.float32)
    lo, hi = (k - 1) // 2, k // 2  # SAME padding
    xp = np.pad(x, ((0, 0), (lo, hi), (lo, hi), (0, 0)))
    windows = np.stack([[xp[:, i:i + 11, j:j + 7] for j in range(k)] for i in range(k)])  # [k, k, B, T, F, C]
    y_ref = np.einsum("ijbtfc,ijco->btfo", windows, w)
    dw_ref = np.einsum("ijbtfc,btfo->ijco", windows, g)
    gp = np.pad(g, ((0, 0), (hi, lo), (hi, lo), (0, 0)))  # dx: the flipped kernel over the padded gradient
    dx_ref = sum(np.einsum("btfo,co->btfc", gp[:, k - 1 - i:k - 1 - i + 11, k - 1 - j:k - 1 - j + 7], w[i, j])
                 for i in range(k) for j in range(k))
    conv = lambda x, w: conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=_NHWC)  # noqa: E731
    y, vjp = jax.vjp(conv, jnp.asarray(x), jnp.asarray(w))
    dx, dw = vjp(jnp.asarray(g))
    np.testing.assert_allclose(y, y_ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dw, dw_ref, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-4, atol=1e-4)


def test_cnn_rejects_clips_shorter_than_the_pooling():
    model = CNNBackbone()
    with pytest.raises(ValueError, match="at least 16 time frames"):
        jax.eval_shape(lambda: model.init(key(0), jnp.zeros((1, 15, 128)), jnp.array([15]), train=False))


# ----------------------------------------------------------------------------- AST


def test_ast_patch_grid_and_sizes():
    assert patch_grid(128, 1024) == (12, 101)
    assert np.prod(patch_grid(128, 1024)) == 1212
    assert patch_grid(128, 1293) == (12, 128)
    assert patch_grid(140, 100, fstride=16, tstride=16) == (8, 6)
    assert AST_SIZES == {"tiny": (192, 12, 3), "small": (384, 12, 6), "base": (768, 12, 12)}
    model = make_ast("small", 128, 1024, depth=2)
    assert (model.embed_dim, model.depth, model.num_heads) == (384, 2, 6)
    assert model.feature_size == 384 and model.num_tokens() == 1214


def test_ast_tokens_and_two_token_average():
    model, variables = small_backbone("ast")
    x = padded_batch(seed=10)
    latent, state = run(model, variables, x, LENGTHS, mutable=("intermediates",), capture_intermediates=True)
    inter = state["intermediates"]
    f_dim, t_dim = patch_grid(F, T, 4, 4, 3)
    assert (f_dim, t_dim) == (3, 13)
    assert inter["block_0"]["__call__"][0].shape == (B, 2 + f_dim * t_dim, 8) == (B, model.num_tokens(T), 8)
    tokens = np.asarray(inter["norm"]["__call__"][0])  # final LayerNorm of the class and distillation tokens
    assert tokens.shape == (B, 2, 8)
    np.testing.assert_allclose(np.asarray(latent), (tokens[:, 0] + tokens[:, 1]) / 2, rtol=1e-6)
    # Positional embeddings are sized for (input_fdim, input_tdim) and sliced for shorter inputs.
    assert variables["params"]["pos_embed_patches"].shape == (*patch_grid(F, T + EXTRA, 4, 4, 3), 8)


# ----------------------------------------------------------------------------- dtypes, gradients, config


@pytest.mark.parametrize("name", ["lstm", "cnn", "ast"])
def test_bfloat16_compute_close_to_float32(name):
    model, variables = small_backbone(name)
    x = padded_batch(seed=11)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(variables["params"]))
    reference = np.asarray(run(model, variables, x, LENGTHS))
    low = run(model.clone(dtype=jnp.bfloat16), variables, x, LENGTHS)
    # the AST keeps float32 activations on CPU, with bfloat16 products (models.precision)
    assert low.dtype == (jnp.float32 if name == "ast" and jax.default_backend() == "cpu" else jnp.bfloat16)
    low = np.asarray(low.astype(jnp.float32))
    assert np.all(np.isfinite(low))
    assert np.linalg.norm(low - reference) <= 0.05 * np.linalg.norm(reference) + 1e-3


def _bf16_round(a):
    return np.asarray(jnp.asarray(a, jnp.bfloat16).astype(jnp.float32))


def _product_dtypes(fn, *args) -> list[str]:
    """``lhs x rhs -> out`` dtypes of every dot_general in ``fn``'s jaxpr."""
    found = []

    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            if eqn.primitive.name == "dot_general":
                found.append(" x ".join(str(v.aval.dtype) for v in eqn.invars) + f" -> {eqn.outvars[0].aval.dtype}")
            for sub in jax.core.jaxprs_in_params(eqn.params):
                walk(sub)

    walk(jax.make_jaxpr(fn)(*args).jaxpr)
    return found


def test_bfloat16_products_and_their_gradients_match_numpy():
    """precision.bf16_matmul / bf16_einsum: bf16 operands, f32 accumulation, in both passes."""
    from jaxmusic.models import precision

    rng = np.random.default_rng(5)
    x, w, g = (rng.normal(size=s).astype(np.float32) for s in ((3, 7, 24), (24, 40), (3, 7, 40)))
    y, vjp = jax.vjp(precision.bf16_matmul, jnp.asarray(x), jnp.asarray(w))
    dx, dw = vjp(jnp.asarray(g))
    xr, wr, gr = _bf16_round(x), _bf16_round(w), _bf16_round(g)
    for got, ref in ((y, xr @ wr), (dx, gr @ wr.T), (dw, xr.reshape(-1, 24).T @ gr.reshape(-1, 40))):
        assert got.dtype == jnp.float32
        np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-2, atol=1e-2 * np.abs(ref).max())
    q, k, p, gq = (rng.normal(size=s).astype(np.float32) for s in ((2, 5, 3, 4), (2, 6, 3, 4), (2, 3, 5, 6),
                                                                   (2, 3, 5, 6)))
    for spec, a, b in (("bqnh,bknh->bnqk", q, k), ("bnqk,bknh->bqnh", p, k)):
        out, vjp = jax.vjp(lambda a, b: precision.bf16_einsum(spec, a, b), jnp.asarray(a), jnp.asarray(b))
        ar, br = _bf16_round(a), _bf16_round(b)
        cot = rng.normal(size=out.shape).astype(np.float32)
        ref_out, ref_vjp = jax.vjp(lambda a, b: jnp.einsum(spec, a, b), jnp.asarray(ar), jnp.asarray(br))
        got, ref = (out, *vjp(jnp.asarray(cot))), (ref_out, *ref_vjp(jnp.asarray(_bf16_round(cot))))
        for u, v in zip(got, ref):
            np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-2, atol=1e-2 * np.abs(v).max())
    # every product, forward and backward, is bf16 x bf16 -> f32 (what reaches the AMX kernels)
    loss = lambda a, b: (precision.bf16_matmul(a, b) ** 2).sum()  # noqa: E731
    products = _product_dtypes(jax.grad(loss, argnums=(0, 1)), jnp.asarray(x), jnp.asarray(w))
    assert products == ["bfloat16 x bfloat16 -> float32"] * 3


def test_bfloat16_policy_keeps_float32_activations_on_cpu():
    from jaxmusic.models import precision

    p = precision.policy(jnp.bfloat16)
    if jax.default_backend() == "cpu":
        assert p.dtype == jnp.float32 and p.dense is precision.bf16_dot_general
    else:
        assert p.dtype == jnp.bfloat16 and p.dense is None
    assert precision.policy(jnp.float32) == precision.Policy(jnp.dtype(jnp.float32))


@pytest.mark.parametrize("name", ["lstm", "cnn", "ast"])
def test_gradients_flow_to_every_parameter(name):
    model, variables = small_model(name, ClassifierHead(3))
    x = padded_batch(seed=12)
    labels = jnp.array([0, 1, 2, 1])

    def loss(params):
        out, _ = model.apply({**variables, "params": params}, x, LENGTHS, train=True,
                             rngs={"dropout": key(1)}, mutable=["batch_stats"])
        logp = jax.nn.log_softmax(out["output"])
        return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=1))

    grads = jax.jit(jax.grad(loss))(variables["params"])
    for path, g in jax.tree_util.tree_leaves_with_path(grads):
        g = np.asarray(g)
        assert np.all(np.isfinite(g)), path
        assert np.abs(g).max() > 0, f"no gradient reaches {jax.tree_util.keystr(path)}"


def test_heads_and_model_outputs():
    latent = jnp.asarray(np.random.default_rng(13).normal(size=(B, 6)), jnp.bfloat16)
    head = RegressionHead()
    params = head.init(key(0), latent)
    y = head.apply(params, latent)
    assert y.dtype == jnp.float32 and y.shape == (B, 3)
    kernel, bias = params["params"]["outputs"]["kernel"], params["params"]["outputs"]["bias"]
    expected = 1 / (1 + np.exp(-(np.asarray(latent, np.float32) @ np.asarray(kernel) + np.asarray(bias))))
    np.testing.assert_allclose(np.asarray(y), expected, rtol=1e-5)
    raw = RegressionHead(activation="none").apply(params, latent)
    np.testing.assert_allclose(np.asarray(jax.nn.sigmoid(raw)), np.asarray(y), rtol=1e-6)
    logits = ClassifierHead(10).apply(ClassifierHead(10).init(key(0), latent), latent)
    assert logits.dtype == jnp.float32 and logits.shape == (B, 10)

    model, variables = small_model("cnn", ClassifierHead(10))
    x = padded_batch(seed=14)
    out = run(model, variables, x, LENGTHS)
    latent = run(model.backbone, {k: v["backbone"] for k, v in variables.items()}, x, LENGTHS)
    np.testing.assert_allclose(np.asarray(out["latent"]), np.asarray(latent), rtol=1e-6)
    kernel = np.asarray(variables["params"]["head"]["logits"]["kernel"])
    bias = np.asarray(variables["params"]["head"]["logits"]["bias"])
    np.testing.assert_allclose(np.asarray(out["output"]), np.asarray(latent) @ kernel + bias, rtol=1e-5, atol=1e-6)
    assert out["output"].shape == (B, 10)
    # The real init path names the two parts, so a backbone can move between tasks.
    shapes = jax.eval_shape(lambda: model.init(key(0), x, LENGTHS, train=False))
    assert set(shapes["params"]) == {"backbone", "head"} and set(shapes["batch_stats"]) == {"backbone"}


def test_build_backbone_from_config():
    ml_collections = pytest.importorskip("ml_collections")
    cfg = ml_collections.ConfigDict({"name": "lstm", "hidden_size": 64, "num_layers": 2,
                                     "bidirectional": True, "dropout": 0.4, "dtype": "bfloat16"})
    lstm = build_backbone(cfg, 128, 1293)
    assert isinstance(lstm, LSTMBackbone) and lstm.feature_size == 128 and lstm.dtype == jnp.bfloat16
    cnn = build_backbone({"name": "cnn", "channels": [8, 16, 32, 64]}, 128, 1293)
    assert cnn.channels == (8, 16, 32, 64) and cnn.feature_size == 64
    ast = build_backbone({"name": "ast", "size": "base", "depth": 4}, 128, 1024)
    assert (ast.embed_dim, ast.depth, ast.num_heads, ast.input_fdim, ast.input_tdim) == (768, 4, 12, 128, 1024)
    assert build_backbone({"name": "ast"}, 128, 1024).embed_dim == 192  # tiny by default
    with pytest.raises(ValueError, match="'hiden_size'"):
        build_backbone({"name": "lstm", "hiden_size": 64}, 128, 1293)
    with pytest.raises(ValueError, match="'size'"):
        build_backbone({"name": "cnn", "size": "tiny"}, 128, 1293)
    with pytest.raises(ValueError, match="unknown model name"):
        build_backbone({"name": "gru"}, 128, 1293)
