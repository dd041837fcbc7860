"""The course's 2D CNN: the spectrogram as a one-channel image.

Layout NHWC with H = time and W = frequency: ``features [B, T, F]`` becomes
``[B, T, F, 1]``. Then ``len(channels)`` blocks of

    Conv2D(k x k, SAME) -> BatchNorm -> ReLU -> MaxPool(2 x 2)

and a global pooling that ignores padded time: the mean over frequency and the
masked mean over the valid pooled time frames.

Padding never leaks into valid frames (eval mode: the latent is the same whatever
the padding length):

* at block ``k`` the valid frames are ``masks.pooled_lengths(lengths, k)``
  (``max(1, length // 2**k)``): a pooled frame is valid only if every frame under
  it is;
* the padded frames are set to zero at the input of every block, so the
  convolution sees exactly what SAME zero padding would show it at the end of
  the clip;
* BatchNorm's batch statistics (train mode) are computed over valid frames only,
  so the running statistics describe real audio, not padding.

Time pools in floor mode (the frames left over at the end are dropped, they would
touch padding); frequency pools in ceil mode, so narrow views (12 chroma bins)
survive four blocks (12 -> 6 -> 3 -> 2 -> 1). The clip must have at least
``2**len(channels)`` time frames (T, not length).

BatchNorm follows PyTorch's defaults (momentum 0.1, i.e. flax ``momentum=0.9``,
epsilon 1e-5); flax's running variance is the biased one (PyTorch keeps the
unbiased one), which matters only when porting running statistics.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from jaxmusic.models import masks

Dtype = Any


def max_pool_2x2(x: jax.Array) -> jax.Array:
    """2x2 max-pool, stride 2, of ``x [B, T, F, C]``: floor mode over time, ceil mode over frequency.

    Written as reshape + max rather than ``nn.max_pool``: the windows do not overlap,
    and the gradient of a max over a reshaped axis is an elementwise select, while
    XLA:CPU lowers the gradient of ``reduce_window`` to a scatter with int32 index
    arrays four times the size of the activation (the slowest part of the backward).
    """
    batch, steps, freqs, channels = x.shape
    x = x[:, : steps - steps % 2]
    if freqs % 2:  # ceil mode: the -inf pad never wins (it is never the only element)
        x = jnp.pad(x, ((0, 0), (0, 0), (0, 1), (0, 0)), constant_values=-jnp.inf)
    x = x.reshape(batch, steps // 2, 2, (freqs + 1) // 2, 2, channels)
    return jnp.max(x, axis=(2, 4))


_NHWC = lax.ConvDimensionNumbers(lhs_spec=(0, 3, 1, 2), rhs_spec=(3, 2, 0, 1), out_spec=(0, 3, 1, 2))


def _conv(x, w, pads):
    return lax.conv_general_dilated(x, w, (1, 1), pads, dimension_numbers=_NHWC)


FEW_INPUT_CHANNELS = 8   # below this, the input gradient is products per kernel tap (see input_gradient)
PRODUCT_COLUMNS = 64     # the width of each of those products (taps x input channels)


def input_gradient(g, w, pads, in_shape):
    """The input gradient of ``_conv(x, w, pads)`` (stride 1, NHWC/HWIO) for the output gradient ``g``.

    * Few input channels (the taggers' and the CNN's first layers, ``cin < FEW_INPUT_CHANNELS``):
      one product of ``g`` with the kernel per group of taps (``g [N, T, F, cout]`` against
      ``[cout, taps x cin]``), each tap's columns added at its shift into the padded input
      (col2im). XLA:CPU's transposed convolution, and the flipped-kernel convolution alike,
      then have one output channel and run at matrix-vector speed: the musicnn tagger's
      7 x 38 and 7 x 67 front-end input gradients took 13x and 11x their forward
      convolution, 2-4x this way (16 patches, products of 32-128 columns; AMD EPYC, 2 cores;
      benchmarks/musicnn_transfer_results.md).
    * Otherwise: a forward convolution of ``g`` with the flipped kernel (in/out channels
      swapped): the same values as XLA's transposed convolution, which XLA:CPU runs 18-23x
      slower inside a ``lax.scan`` (``train.steps_per_dispatch``; NOTES.md entries 17-18).
    * Padding under ``kernel - 1`` on a side (no flipped equivalent): XLA's transposed convolution.
    """
    kh, kw, cin, _ = w.shape
    _, steps, freqs, _ = g.shape
    flipped_pads = ((kh - 1 - pads[0][0], kh - 1 - pads[0][1]), (kw - 1 - pads[1][0], kw - 1 - pads[1][1]))
    if cin < FEW_INPUT_CHANNELS and min(min(p) for p in pads) >= 0:
        hp, wp = steps + kh - 1, freqs + kw - 1          # the padded input's size
        taps = [(i, j) for i in range(kh) for j in range(kw)]
        per = max(1, PRODUCT_COLUMNS // cin)
        zero = jnp.zeros((), g.dtype)
        dxp = None
        for start in range(0, len(taps), per):
            group = taps[start:start + per]
            cols = lax.dot_general(g, jnp.stack([w[i, j] for i, j in group]),
                                   (((3,), (2,)), ((), ())))          # [N, T, F, taps, cin]
            for k, (i, j) in enumerate(group):
                term = lax.pad(cols[:, :, :, k], zero,
                               ((0, 0, 0), (i, hp - steps - i, 0), (j, wp - freqs - j, 0), (0, 0, 0)))
                dxp = term if dxp is None else dxp + term
        return dxp[:, pads[0][0]:pads[0][0] + in_shape[1], pads[1][0]:pads[1][0] + in_shape[2]]
    if min(min(p) for p in flipped_pads) >= 0:
        return _conv(g, jnp.swapaxes(w[::-1, ::-1], 2, 3), flipped_pads)
    return jax.vjp(lambda x: _conv(x, w, pads), jnp.zeros(in_shape, g.dtype))[1](g)[0]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv_tap_wgrad(x, w, pads, weight_grad):
    return _conv(x, w, pads)


def _conv_tap_wgrad_fwd(x, w, pads, weight_grad):
    return _conv(x, w, pads), (x, w)


def _conv_tap_wgrad_bwd(pads, weight_grad, res, g):
    x, w = res
    dx = input_gradient(g, w, pads, x.shape)
    if weight_grad == "xla":
        return dx, jax.vjp(lambda w: _conv(x, w, pads), w)[1](g)[0]
    # Weight gradient: one product per kernel tap, the shifted input against the output
    # gradient, contracting every (batch, time, frequency) position.
    kh, kw, cin, cout = w.shape
    _, steps, freqs, _ = g.shape
    xp = jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    gm = g.reshape(-1, cout)

    def tap(index):
        i, j = index // kw, index % kw
        shifted = lax.dynamic_slice(xp, (0, i, j, 0), (xp.shape[0], steps, freqs, cin))
        return lax.dot_general(shifted.reshape(-1, cin), gm, (((0,), (0,)), ((), ())),
                               preferred_element_type=w.dtype)

    if weight_grad == "sequential":
        # one tap at a time (lax.map): one shifted copy of the input alive, not kh * kw of them
        taps = lax.map(tap, jnp.arange(kh * kw))
    else:
        taps = jnp.stack([tap(jnp.int32(n)) for n in range(kh * kw)])
    return dx, taps.reshape(kh, kw, cin, cout)


_conv_tap_wgrad.defvjp(_conv_tap_wgrad_fwd, _conv_tap_wgrad_bwd)


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                         dimension_numbers=None, feature_group_count=1, batch_group_count=1, precision=None,
                         preferred_element_type=None, sequential_taps: bool = True, tap_weight_grad: bool = True):
    """``lax.conv_general_dilated`` whose gradients are computed by :func:`input_gradient` and tap by tap.

    For the stride-1, undilated NHWC/HWIO convolutions of this model, the weight
    gradient is ``kh * kw`` matrix products (shifted input x output gradient) instead
    of XLA:CPU's weight-gradient convolution, which runs at 20-45 GFLOP/s on these
    shapes against 40-60 for the products (benchmarks/NOTES.md, entry 9); the input
    gradient is :func:`input_gradient` (entry 18). The value and every other case are
    ``lax.conv_general_dilated``'s.
    ``sequential_taps``: the taps one after another (``lax.map``), so that one shifted
    copy of the input exists at a time (NOTES.md, entry 12); else all at once.
    ``tap_weight_grad=False``: XLA's weight gradient (the musicnn taggers' one-channel,
    38-67 wide kernels: hundreds of one-column products per tap would be slower).
    """
    plain = (tuple(window_strides) == (1, 1) and tuple(lhs_dilation or (1, 1)) == (1, 1)
             and tuple(rhs_dilation or (1, 1)) == (1, 1) and feature_group_count == 1
             and batch_group_count == 1 and dimension_numbers == _NHWC and precision is None
             and preferred_element_type is None and lhs.dtype == rhs.dtype)
    if not plain:
        return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                                        dimension_numbers, feature_group_count, batch_group_count,
                                        precision=precision, preferred_element_type=preferred_element_type)
    if isinstance(padding, str):
        padding = lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], (1, 1), padding)
    weight_grad = ("sequential" if sequential_taps else "stacked") if tap_weight_grad else "xla"
    return _conv_tap_wgrad(lhs, rhs, tuple(tuple(int(v) for v in p) for p in padding), weight_grad)


class CNNBackbone(nn.Module):
    """Conv blocks over ``features [B, T, F]`` -> ``latent [B, channels[-1]]``."""

    channels: Sequence[int] = (16, 32, 64, 128)
    kernel_size: int = 3
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    momentum: float = 0.9
    epsilon: float = 1e-5
    tap_wgrad: bool = True  # weight gradients as per-tap products (see conv_general_dilated)
    sequential_taps: bool = True  # those products one tap at a time (less memory)

    @property
    def feature_size(self) -> int:
        return int(self.channels[-1])

    @nn.compact
    def __call__(self, features: jax.Array, lengths: jax.Array, *, train: bool) -> jax.Array:
        batch, steps, num_features = features.shape
        num_blocks = len(self.channels)
        if steps < 2**num_blocks:
            raise ValueError(
                f"CNNBackbone with {num_blocks} pooling blocks needs at least {2**num_blocks} time frames, "
                f"got T={steps}"
            )
        lengths = jnp.clip(jnp.asarray(lengths, jnp.int32), 0, steps)

        def zero_padding(x, level):
            valid = masks.padding_mask(masks.pooled_lengths(lengths, level), x.shape[1])
            return jnp.where(valid[:, :, None, None], x, jnp.zeros((), x.dtype)), valid

        x, valid = zero_padding(jnp.asarray(features, self.dtype)[..., None], 0)
        for level, width in enumerate(self.channels):
            x = nn.Conv(
                int(width),
                (self.kernel_size, self.kernel_size),
                padding="SAME",
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                conv_general_dilated=(functools.partial(conv_general_dilated, sequential_taps=self.sequential_taps)
                                      if self.tap_wgrad else None),
                name=f"conv_{level}",
            )(x)
            x = nn.BatchNorm(
                use_running_average=not train,
                momentum=self.momentum,
                epsilon=self.epsilon,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                name=f"batch_norm_{level}",
            )(x, mask=valid[:, :, None, None])
            x = max_pool_2x2(nn.relu(x))
            x, valid = zero_padding(x, level + 1)
        self.sow("intermediates", "feature_map", x)  # [B, T_k, F_k, C], for tests and latent maps
        # Mean over frequency, then the mean over valid pooled time frames.
        return masks.masked_mean(jnp.mean(x, axis=2), valid)
