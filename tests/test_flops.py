"""benchmarks/flops.py's model FLOP counts against XLA's CPU cost analysis.

XLA's count (``jax.jit(f).lower(...).compile().cost_analysis()["flops"]``) has every product
the compiled program runs plus one FLOP per element of every element-wise operation
(normalisation, masking, softmax, activations; transcendental functions are counted apart),
and it counts a ``while`` loop's body once. So each model is compiled in its loop-free form
(the same products): the LSTM's recurrence fully unrolled in one chunk and differentiated by
autodiff (the library's hand-written backward recomputes the gates, which model FLOPs do not
count), the CNNs with XLA's own convolution gradients (the per-tap weight gradient runs one
tap per loop iteration), AST with the attention in one block. At the shapes below the
products are 92-99% of the work, so XLA's count must lie in ``[1, 1.10] x`` the analytic
one: never below it (every counted product runs), above it by the element-wise work only
(0.7-6.9% measured here). Single products and convolutions, where nothing else runs, must
match exactly.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax import lax

from benchmarks import flops
from jaxmusic.models import ClassifierHead, Model, build_backbone
from jaxmusic.models import lstm as lstm_module

CLASSES = 10
ELEMENTWISE_TOLERANCE = 1.10


def xla_flops(fn, *args) -> float:
    """XLA's FLOPs of ``fn`` compiled for the CPU, whatever the default backend
    (benchmarks/gpu_check.sh runs this file on a GPU machine)."""
    with jax.default_device(jax.devices("cpu")[0]):
        args = jax.device_put(args, jax.devices("cpu")[0])
        cost = jax.jit(fn).lower(*args).compile().cost_analysis()
    if isinstance(cost, (list, tuple)):  # older jax: one dict per computation
        cost = cost[0]
    return float(cost["flops"])


def xla_counts(model_cfg: dict, batch: int, steps: int, features: int) -> tuple[float, float]:
    """XLA's FLOPs of inference (forward, eval mode) and of the gradient of the mean
    cross-entropy with respect to the parameters (forward + backward, train mode)."""
    model = Model(build_backbone(model_cfg, features, steps), ClassifierHead(CLASSES))
    rng = np.random.default_rng(0)
    with jax.default_device(jax.devices("cpu")[0]):
        x = jnp.asarray(rng.normal(size=(batch, steps, features)), jnp.float32)
        lengths = jnp.full((batch,), steps, jnp.int32).at[0].set(steps // 2)
        labels = jnp.arange(batch) % CLASSES
        variables = model.init({"params": jax.random.PRNGKey(0)}, x, lengths, train=False)
    params = variables["params"]
    rest = {k: v for k, v in variables.items() if k != "params"}

    def infer(variables, x):
        return model.apply(variables, x, lengths, train=False)["output"]

    def loss(params, rest, x):
        out, _ = model.apply({"params": params, **rest}, x, lengths, train=True, mutable=["batch_stats"],
                             rngs={"dropout": jax.random.PRNGKey(1)})
        return optax.softmax_cross_entropy_with_integer_labels(out["output"], labels).mean()

    return xla_flops(infer, variables, x), xla_flops(jax.grad(loss), params, rest, x)


def autodiff_recurrence(xs, mask, w_ih, w_hh, bias, unroll):
    """The LSTM recurrence's primal (``lstm._recurrence``) without its hand-written backward."""
    (h_last, _), (hs, _) = lstm_module._forward(xs, mask, w_ih, w_hh, bias, unroll)
    return hs.astype(xs[0].dtype), h_last


CASES = {
    # name: (model config, batch, steps, features)
    "lstm": (dict(name="lstm", hidden_size=256, num_layers=2, bidirectional=True, dropout=0.0, unroll=True,
                  chunk_size=None), 2, 12, 256),
    "cnn": (dict(name="cnn", channels=(32, 64, 128), kernel_size=3, tap_wgrad=False), 2, 32, 32),
    "ast": (dict(name="ast", size="tiny", embed_dim=128, depth=2, num_heads=2, query_chunk=None), 2, 64, 48),
    "minialexnet": (dict(name="minialexnet", dropout=0.0, tap_wgrad=False), 2, 32, 32),
    "musicnn": (dict(name="musicnn"), 1, 187, 96),
    "vgg": (dict(name="musicnn", arch="vgg"), 1, 187, 96),
}


@pytest.mark.parametrize("name", list(CASES))
def test_model_flops_match_xla_cost_analysis(name, monkeypatch):
    cfg, batch, steps, features = CASES[name]
    if name == "lstm":
        monkeypatch.setattr(lstm_module, "_recurrence", autodiff_recurrence)
    count = flops.count(cfg, batch, steps, features, CLASSES)
    xla_infer, xla_train = xla_counts(cfg, batch, steps, features)
    assert 1.0 <= xla_infer / count.forward <= ELEMENTWISE_TOLERANCE, (xla_infer, count)
    assert 1.0 <= xla_train / count.train <= ELEMENTWISE_TOLERANCE, (xla_train, count)


def test_lstm_count_by_hand():
    """The lab's 2-layer bidirectional LSTM of 64 at beat resolution, B=32, T=129, F=128: per
    step and direction 2 x (F + H) x 4H in layer 0 and 2 x (2H + H) x 4H in layer 1; backward
    2x except layer 0's input projection (1x); head 2 x 128 x 10 per clip, backward 2x."""
    b, t, f, h = 32, 129, 128, 64
    layer0_in, layer0_rec = 2 * b * t * 2 * f * 4 * h, 2 * b * t * 2 * h * 4 * h
    layer1 = 2 * b * t * 2 * (2 * h + h) * 4 * h
    head = 2 * b * 2 * h * CLASSES
    count = flops.count(dict(name="lstm", hidden_size=h, num_layers=2, bidirectional=True), b, t, f, CLASSES)
    assert count.forward == layer0_in + layer0_rec + layer1 + head
    assert count.backward == layer0_in + 2 * (layer0_rec + layer1 + head)


def test_ast_count_by_hand():
    """ast_tiny (D=192, 12 blocks, MLP 768) on 128 x 129 beat-synchronised mel: 12 x 12 = 144
    patches, 146 tokens; the last block updates 2 of them."""
    b, d, n, p = 4, 192, 146, 144
    embed = 2 * b * p * 256 * d
    block = lambda q: 2 * b * n * d * 3 * d + 2 * 2 * b * q * n * d + 2 * b * q * d * d + 2 * 2 * b * q * d * 4 * d
    head = 2 * b * d * CLASSES
    count = flops.count(dict(name="ast", size="tiny"), b, 129, 128, CLASSES)
    assert count.forward == embed + 11 * block(n) + block(2) + head
    assert count.backward == embed + 2 * (11 * block(n) + block(2) + head)


def test_valid_taps_by_brute_force():
    for size, kernel, stride, lo, hi in [(7, 3, 1, 1, 1), (8, 3, 2, 1, 1), (5, 7, 1, 3, 3), (96, 38, 1, 0, 0),
                                         (187, 128, 1, 63, 64), (10, 4, 3, 2, 0)]:
        out = (size + lo + hi - kernel) // stride + 1
        brute = sum(0 <= o * stride + k - lo < size for o in range(out) for k in range(kernel))
        assert flops.valid_taps(size, kernel, stride, lo, out) == brute


@pytest.mark.parametrize("padding,stride", [("SAME", (1, 1)), ("VALID", (1, 1)), (((3, 3), (0, 0)), (1, 1)),
                                            ("SAME", (2, 3)), ("VALID", (10, 10))])
def test_one_convolution_matches_xla_exactly(padding, stride):
    x = jnp.ones((2, 37, 29, 3))
    w = jnp.ones((7, 5, 3, 4)) if padding != "VALID" or stride == (1, 1) else jnp.ones((16, 16, 3, 4))
    dn = lax.conv_dimension_numbers(x.shape, w.shape, ("NHWC", "HWIO", "NHWC"))
    xla = xla_flops(lambda x, w: lax.conv_general_dilated(x, w, stride, padding, dimension_numbers=dn), x, w)
    count, size = flops.conv(2, (37, 29), w.shape[:2], 3, 4, padding, stride)
    assert count.forward == xla
    out = lax.conv_general_dilated(x, w, stride, padding, dimension_numbers=dn)
    assert size == out.shape[1:3]
