"""Image-style input: the valid part of each clip resized to a fixed picture.

``data.resize = (H, W)`` turns ``features [B, T, F]`` (H = time, W = frequency)
into ``[B, H, W]`` pictures before the backbone sees them, as image-style CNN
projects resize their spectrogram pictures. It runs on device, inside the model's
input path (:class:`ResizedBackbone` wraps any backbone), and respects lengths:
example ``b`` resizes its frames ``[0, lengths[b])`` only, so the padding never
reaches the picture and every picture is fully valid (the wrapped backbone is
called with ``lengths = H``).

The interpolation is bilinear with half-pixel centres (``align_corners=False``),
the rule of ``jax.image.resize(..., "linear")``, PyTorch's
``F.interpolate(mode="bilinear")`` and PIL. With ``antialias`` (the default, as
PIL and torchvision resize pictures) a downscale widens the triangle kernel by
the scale factor, so a 1293-frame clip shrunk to 128 rows averages every frame
instead of sampling two of ten. Each axis is one matrix product with a weight
matrix built from the example's length (:func:`linear_weights`).
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


def linear_weights(length: jax.Array, in_size: int, out_size: int, antialias: bool = True) -> jax.Array:
    """``float32[out_size, in_size]``: bilinear resampling of the first ``length`` of
    ``in_size`` positions to ``out_size`` positions (zero weight on positions ``>= length``).

    Output sample ``i`` sits at input coordinate ``(i + 0.5) * length / out_size - 0.5``;
    its weights are the triangle kernel at the distances to the valid input positions
    (widened by ``length / out_size`` when downscaling with ``antialias``), normalised
    to sum to one, as ``jax.image.scale_and_translate`` computes them for an input of
    exactly ``length`` positions.
    """
    n = jnp.maximum(jnp.asarray(length, jnp.float32), 1.0)
    inv_scale = n / out_size
    kernel_scale = jnp.maximum(inv_scale, 1.0) if antialias else 1.0
    centre = (jnp.arange(out_size, dtype=jnp.float32) + 0.5) * inv_scale - 0.5
    position = jnp.arange(in_size, dtype=jnp.float32)
    w = jnp.maximum(0.0, 1.0 - jnp.abs(centre[:, None] - position[None, :]) / kernel_scale)
    w = jnp.where(position[None, :] < n, w, 0.0)
    total = jnp.sum(w, axis=1, keepdims=True)
    return w / jnp.where(total > 0, total, 1.0)


def resize_valid(features: jax.Array, lengths: jax.Array, size: Sequence[int],
                 antialias: bool = True) -> jax.Array:
    """``features [B, T, F]`` -> ``[B, H, W]``: each example's frames ``t < lengths[b]``
    resized bilinearly to ``size = (H, W)`` (float32 arithmetic, result in the input dtype)."""
    height, width = (int(s) for s in size)
    _, steps, freqs = features.shape
    lengths = jnp.clip(jnp.asarray(lengths, jnp.int32), 1, steps)
    w_time = jax.vmap(lambda n: linear_weights(n, steps, height, antialias))(lengths)  # [B, H, T]
    w_freq = linear_weights(freqs, freqs, width, antialias)                            # [W, F]
    x = jnp.asarray(features, jnp.float32)
    out = jnp.einsum("bht,btf,wf->bhw", w_time, x, w_freq)
    return out.astype(features.dtype)


class ResizedBackbone(nn.Module):
    """``backbone`` applied to the clips' valid parts resized to ``size = (H, W)``."""

    backbone: nn.Module
    size: tuple[int, int]
    antialias: bool = True

    @property
    def feature_size(self) -> int:
        return int(self.backbone.feature_size)

    def __call__(self, features: jax.Array, lengths: jax.Array, *, train: bool) -> Any:
        pictures = resize_valid(features, lengths, self.size, self.antialias)
        full = jnp.full((features.shape[0],), int(self.size[0]), jnp.int32)
        return self.backbone(pictures, full, train=train)
