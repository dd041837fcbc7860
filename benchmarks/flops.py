"""Model FLOPs counted from the model: every product of a backbone and its classifier head.

``count(model_cfg, batch, steps, features)`` reads the backbone's hyper-parameters from the
module that ``jaxmusic.models.build_backbone`` builds for the config (so presets, AST sizes
and every default are the library's own) and counts, forward and backward:

* dense layers and the LSTM's input and recurrent projections: ``2 m k n`` for an
  ``[m, k] x [k, n]`` product;
* convolutions: ``2 x cin x cout`` per (output position, kernel tap) pair whose input
  position lies inside the input; taps that fall on the zero padding of a SAME or padded
  convolution are not counted (they multiply zeros; XLA's cost analysis counts the same way);
* attention: the score product ``Q K^T`` and the value product ``P V``, each
  ``2 x B x queries x keys x embed_dim``, over every key of the padded sequence (the mask
  is applied to the scores, the products still run); AST's last block has 2 queries.

Backward convention: every product has a weight gradient and an input gradient, each as
many FLOPs as its forward (attention: ``dV, dP`` from the value product, ``dQ, dK`` from the
scores): backward = 2x forward; except a layer whose input is the data (the CNN's and image
CNNs' first convolution, AST's patch embedding, the LSTM's first input projection), whose
input gradient is not needed: 1x. musicnn's first convolutions see a trainable BatchNorm of
the input, so their input gradient is needed (2x).

Not counted: element-wise work (normalisation, activations, softmax, pooling, masking), the
optimiser, and recomputation an implementation chooses (the LSTM's backward recomputes its
gates, the chunked attention its scores): model FLOPs as MFU defines them (PaLM, appendix
B), the same for every implementation and framework. tests/test_flops.py checks each
backbone against XLA's CPU cost analysis.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from jaxmusic.models import (ASTBackbone, CNNBackbone, ImageCNN, LSTMBackbone, MusicnnBackbone,
                             build_backbone, patch_grid)
from jaxmusic.models.musicnn import VGG_POOLS_MSD, VGG_POOLS_MTT


@dataclasses.dataclass(frozen=True)
class Count:
    """FLOPs of one pass over a batch: ``forward`` (inference), ``backward``; ``train`` = both."""

    forward: float
    backward: float

    @property
    def train(self) -> float:
        return self.forward + self.backward

    def __add__(self, other: "Count") -> "Count":
        return Count(self.forward + other.forward, self.backward + other.backward)


ZERO = Count(0.0, 0.0)


def product(flops: float, input_grad: bool = True) -> Count:
    """A product of ``flops`` forward FLOPs: backward 2x (weight and input gradient) or 1x."""
    return Count(flops, (2.0 if input_grad else 1.0) * flops)


def valid_taps(size: int, kernel: int, stride: int, pad_lo: int, out: int) -> int:
    """(output position, kernel tap) pairs along one axis whose input lies in ``[0, size)``."""
    total = 0
    for tap in range(kernel):  # input = o * stride + tap - pad_lo, for o in [0, out)
        lo = max(0, -(-(pad_lo - tap) // stride))
        hi = min(out - 1, (size - 1 + pad_lo - tap) // stride)
        total += max(0, hi - lo + 1)
    return total


def conv(batch: int, size: tuple[int, int], kernel: tuple[int, int], cin: int, cout: int,
         padding: str | tuple = "SAME", stride: tuple[int, int] = (1, 1), input_grad: bool = True
         ) -> tuple[Count, tuple[int, int]]:
    """A 2-D convolution over ``[batch, *size, cin]``: its count and its output size.
    ``padding``: ``"SAME"``, ``"VALID"`` or ``((lo, hi), (lo, hi))``."""
    taps, out_size = 1, []
    for axis in range(2):
        n, k, s = size[axis], kernel[axis], stride[axis]
        if padding == "SAME":
            out = -(-n // s)
            lo = max((out - 1) * s + k - n, 0) // 2
        elif padding == "VALID":
            out, lo = (n - k) // s + 1, 0
        else:
            lo, hi = padding[axis]
            out = (n + lo + hi - k) // s + 1
        taps *= valid_taps(n, k, s, lo, out)
        out_size.append(out)
    return product(2.0 * batch * taps * cin * cout, input_grad), (out_size[0], out_size[1])


def dense(rows: float, fan_in: int, fan_out: int, input_grad: bool = True) -> Count:
    return product(2.0 * rows * fan_in * fan_out, input_grad)


# --- backbones -----------------------------------------------------------------------------------

def lstm(m: LSTMBackbone, batch: int, steps: int, features: int) -> Count:
    """Per layer and direction: the input projection and the recurrent product at every step
    (padded steps run too, masked)."""
    total, size_in = ZERO, features
    hidden, directions = m.hidden_size, m.num_directions
    for layer in range(m.num_layers):
        rows = directions * batch * steps
        total = total + dense(rows, size_in, 4 * hidden, input_grad=layer > 0) + dense(rows, hidden, 4 * hidden)
        size_in = directions * hidden
    return total


def _pool_2x2(size: tuple[int, int]) -> tuple[int, int]:
    """``jaxmusic.models.cnn.max_pool_2x2``: floor over time, ceil over frequency."""
    return size[0] // 2, -(-size[1] // 2)


def cnn(m: CNNBackbone, batch: int, steps: int, features: int) -> Count:
    total, size, cin = ZERO, (steps, features), 1
    for level, width in enumerate(m.channels):
        c, size = conv(batch, size, (m.kernel_size,) * 2, cin, int(width), input_grad=level > 0)
        total, size, cin = total + c, _pool_2x2(size), int(width)
    return total


def image_cnn(m: ImageCNN, batch: int, steps: int, features: int) -> Count:
    total, size, cin = ZERO, (steps, features), 1
    for i, (width, k, pool) in enumerate(zip(m.channels, m.kernels, m.pools)):
        c, size = conv(batch, size, (int(k),) * 2, cin, int(width), input_grad=i > 0)
        total, cin = total + c, int(width)
        if pool:
            size = _pool_2x2(size)
    fan_in = size[0] * size[1] * cin
    for width in m.dense:
        total, fan_in = total + dense(batch, fan_in, int(width)), int(width)
    return total


def ast(m: ASTBackbone, batch: int, steps: int, features: int) -> Count:
    """Patch embedding, then per block: qkv over every token, scores and values for the block's
    queries (2 in the last block) against every token, projection and MLP for those queries."""
    f_dim, t_dim = patch_grid(features, steps, m.patch_size, m.fstride, m.tstride)
    tokens, d = 2 + f_dim * t_dim, m.embed_dim
    total = dense(batch * f_dim * t_dim, m.patch_size**2, d, input_grad=False)  # a VALID convolution
    for i in range(m.depth):
        queries = 2 if i == m.depth - 1 else tokens
        total = (total + dense(batch * tokens, d, 3 * d)
                 + product(2.0 * 2 * batch * queries * tokens * d)        # scores and values
                 + dense(batch * queries, d, d)
                 + dense(batch * queries, d, int(d * m.mlp_ratio)) + dense(batch * queries, int(d * m.mlp_ratio), d))
    return total


def musicnn(m: MusicnnBackbone, batch: int, steps: int, features: int) -> Count:
    """The tagger on every 187-frame patch (``ceil(T / 187)`` per clip); the 50-tag output
    layer does not reach the latent and is not counted."""
    n = batch * -(-steps // m.patch_frames)
    t = m.patch_frames
    if m.arch == "musicnn":
        timbral, temporal, mid, units = int(1.6 * 128), int(1.6 * 32), 64, 200
        total = ZERO
        for width in (0.4, 0.7):
            total = total + conv(n, (t, features), (7, int(width * features)), 1, timbral, ((3, 3), (0, 0)))[0]
        for length in (128, 64, 32):
            total = total + conv(n, (t, features), (length, 1), 1, temporal)[0]
        cin = 2 * timbral + 3 * temporal
        for i in range(3):
            total = total + conv(n, (t, 1), (7, 1), cin if i == 0 else mid, mid, ((3, 3), (0, 0)))[0]
        return total + dense(n, 2 * (cin + 3 * mid), units)
    total, size, cin = ZERO, (t, features), 1
    for window, strides in VGG_POOLS_MSD if m.arch == "vgg_msd" else VGG_POOLS_MTT:
        c, size = conv(n, size, (3, 3), cin, 128)
        total, cin = total + c, 128
        size = tuple((size[a] - window[a]) // strides[a] + 1 for a in range(2))
    return total


COUNTERS = {LSTMBackbone: lstm, CNNBackbone: cnn, ImageCNN: image_cnn, ASTBackbone: ast, MusicnnBackbone: musicnn}


def backbone(module: Any, batch: int, steps: int, features: int) -> Count:
    for cls, counter in COUNTERS.items():
        if isinstance(module, cls):
            return counter(module, batch, steps, features)
    raise ValueError(f"no FLOP count for {type(module).__name__}")


def count(model_cfg: Mapping[str, Any], batch: int, steps: int, features: int, num_classes: int) -> Count:
    """FLOPs of the backbone of ``model_cfg`` (``config.model``) and a ``num_classes`` classifier
    head on ``features [batch, steps, features]``."""
    module = build_backbone(model_cfg, features, steps)
    return backbone(module, batch, steps, features) + dense(batch, module.feature_size, num_classes)
