"""Throughput options are exact: query-chunked attention and per-block remat give the
plain model's values and gradients; the library's compiler options are valid XLA options.

Speed is never asserted here (benchmarks/ measures it); tiny shapes, a few seconds.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmusic import xla
from jaxmusic.models import ASTBackbone
from jaxmusic.models.ast import attention, gelu, query_chunks


def numpy_attention(q, k, v, kv_lengths):
    """Masked softmax attention in float64 numpy: ``[B, Q, N, H] x [B, S, N, H]``."""
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    logits = np.einsum("bqnh,bknh->bnqk", q, k) / np.sqrt(q.shape[-1])
    valid = np.arange(k.shape[1])[None, :] < np.asarray(kv_lengths)[:, None]
    logits = np.where(valid[:, None, None, :], logits, -np.inf)
    w = np.exp(logits - logits.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    return np.einsum("bnqk,bknh->bqnh", w, v)


def test_gelu_equals_pytorch_and_the_float64_formula_with_its_gradient():
    """The AST's GELU (erf form, custom VJP keeping only x) against scipy's erf in float64
    and PyTorch's exact F.gelu, values and gradients, over the range that matters."""
    import torch
    from scipy.special import erf

    x = np.concatenate([np.linspace(-9, 9, 2001), np.random.default_rng(0).normal(0, 3, 4000)]).astype(np.float32)
    x64 = x.astype(np.float64)
    want = 0.5 * x64 * (1 + erf(x64 / np.sqrt(2)))
    want_grad = 0.5 * (1 + erf(x64 / np.sqrt(2))) + x64 * np.exp(-0.5 * x64**2) / np.sqrt(2 * np.pi)
    got = np.asarray(jax.jit(gelu)(x))
    got_grad = np.asarray(jax.jit(jax.grad(lambda v: jnp.sum(gelu(v))))(x))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_grad, want_grad, rtol=1e-5, atol=1e-6)
    xt = torch.from_numpy(x).requires_grad_(True)
    yt = torch.nn.functional.gelu(xt)
    yt.sum().backward()
    np.testing.assert_allclose(got, yt.detach().numpy(), rtol=1e-5, atol=2e-6)
    np.testing.assert_allclose(got_grad, xt.grad.numpy(), rtol=1e-5, atol=2e-6)


def test_query_chunks_are_even_and_cover_the_queries():
    assert query_chunks(1538, 256) == (7, 220)
    assert query_chunks(146, 256) == (2, 73)   # two blocks from half a block up
    assert query_chunks(128, 256) == (1, 128)
    assert query_chunks(148, None) == (1, 148)
    for queries in range(1, 60):
        for chunk in (1, 4, 7, 16):
            number, size = query_chunks(queries, chunk)
            assert size <= chunk and number * size >= queries > (number - 1) * size


@pytest.mark.parametrize("chunk", [None, 4, 5, 64])
def test_chunked_attention_matches_numpy_values_and_gradients(chunk):
    rng = np.random.default_rng(0)
    b, s, n, h = 3, 23, 2, 4
    q, k, v = (jnp.asarray(rng.normal(size=(b, s, n, h)), jnp.float32) for _ in range(3))
    kv_lengths = jnp.array([23, 1, 9], jnp.int32)  # full, one key, a prefix
    out = jax.jit(lambda q, k, v: attention(q, k, v, kv_lengths, "xla", query_chunk=chunk))(q, k, v)
    np.testing.assert_allclose(np.asarray(out), numpy_attention(q, k, v, kv_lengths), rtol=1e-5, atol=1e-5)

    # gradients: against the unchunked formulation and against numpy's central differences
    cot = jnp.asarray(rng.normal(size=out.shape), jnp.float32)

    def loss(q, k, v, c):
        return jnp.sum(attention(q, k, v, kv_lengths, "xla", query_chunk=c) * cot)

    grads = jax.jit(jax.grad(lambda *a: loss(*a, chunk), argnums=(0, 1, 2)))(q, k, v)
    plain = jax.jit(jax.grad(lambda *a: loss(*a, None), argnums=(0, 1, 2)))(q, k, v)
    for g, p in zip(grads, plain):
        np.testing.assert_allclose(np.asarray(g), np.asarray(p), rtol=1e-5, atol=1e-6)
    # padded keys get no gradient; one entry of each input checked by finite differences in numpy
    assert np.all(np.asarray(grads[1])[1, 1:] == 0) and np.all(np.asarray(grads[2])[2, 9:] == 0)
    ref = lambda q, k, v: np.sum(numpy_attention(q, k, v, kv_lengths) * np.asarray(cot))  # noqa: E731
    eps = 1e-4
    for i, g in enumerate(grads):
        arrays = [np.asarray(a, np.float64) for a in (q, k, v)]
        plus, minus = [a.copy() for a in arrays], [a.copy() for a in arrays]
        plus[i][2, 3, 1, 2] += eps
        minus[i][2, 3, 1, 2] -= eps
        fd = (ref(*plus) - ref(*minus)) / (2 * eps)
        np.testing.assert_allclose(float(g[2, 3, 1, 2]), fd, rtol=1e-3, atol=1e-4)


def _ast(**kw):
    return ASTBackbone(input_fdim=12, input_tdim=40, patch_size=4, fstride=4, tstride=3, embed_dim=8, depth=3,
                       num_heads=2, **kw)


@pytest.mark.parametrize("options", [dict(query_chunk=7), dict(remat=True), dict(query_chunk=7, remat=True)])
def test_ast_options_give_the_plain_models_latent_and_gradients(options):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 40, 12)).astype(np.float32)
    lengths = np.array([40, 9, 25], np.int32)
    for b, n in enumerate(lengths):
        x[b, n:] = 0
    plain, fast = _ast(), _ast(**options)
    variables = jax.jit(lambda r: plain.init(r, x, lengths, train=False))(jax.random.key(0, impl="rbg"))
    # the options change no parameter
    fast_variables = jax.jit(lambda r: fast.init(r, x, lengths, train=False))(jax.random.key(0, impl="rbg"))
    assert jax.tree.structure(fast_variables) == jax.tree.structure(variables)
    weights = jnp.asarray(rng.normal(size=(3, 8)), jnp.float32)

    def grad(model):
        def loss(p, inputs):
            return jnp.sum(model.apply({"params": p}, inputs, lengths, train=True) * weights)
        return jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(variables["params"], x)

    (v_plain, g_plain), (v_fast, g_fast) = grad(plain), grad(fast)
    np.testing.assert_allclose(float(v_fast), float(v_plain), rtol=1e-5)
    for a, b in zip(jax.tree.leaves(g_fast), jax.tree.leaves(g_plain)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)


def test_step_compiler_options_are_accepted_by_xla_and_keep_results():
    options = xla.step_compiler_options(jax.default_backend())
    assert isinstance(options, dict)
    assert xla.step_compiler_options("gpu") == {} and xla.step_compiler_options("tpu") == {}
    f = jax.grad(lambda x: jnp.sum(jax.nn.gelu(x, approximate=False) @ x))
    x = jnp.asarray(np.random.default_rng(2).normal(size=(64, 64)), jnp.float32)
    got = jax.jit(f, compiler_options=options)(x)  # an unknown option would raise here
    np.testing.assert_allclose(np.asarray(got), np.asarray(jax.jit(f)(x)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("k", [3, 4])
def test_cnn_sequential_and_stacked_tap_gradients_agree_with_xla(k):
    """The per-tap weight gradient, taps one at a time (lax.map) or all at once, equals XLA's own
    convolution gradient (value, input and weight gradients)."""
    from jax import lax

    from jaxmusic.models.cnn import _NHWC, conv_general_dilated

    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=(2, 9, 7, 3)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(k, k, 3, 5)), jnp.float32)
    cot = jnp.asarray(rng.normal(size=(2, 9, 7, 5)), jnp.float32)

    def grads(conv):
        return jax.jit(jax.grad(lambda x, w: jnp.sum(conv(x, w) * cot), argnums=(0, 1)))(x, w)

    ref = grads(lambda x, w: lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=_NHWC))
    for sequential in (True, False):
        got = grads(lambda x, w: conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=_NHWC,
                                                      sequential_taps=sequential))
        for a, b in zip(got, ref):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-4)
