"""Padding masks: the one place that knows which frames of a batch are real.

Every batch is ``features [B, T, F]`` plus ``lengths [B]``: frames ``t >= length``
are zero padding. All models build their masks here, so the rule is written once:

* :func:`padding_mask`: ``mask[b, t] = t < lengths[b]``.
* :func:`pooled_lengths`: how many frames stay valid after ``k`` 2x max-pools
  (a pooled frame is valid only if no frame under it is padding).
* :func:`masked_mean`: the mean over the valid time steps.
* :func:`reverse_within_length`: each sequence reversed inside its valid part
  (the backward direction of an LSTM), padding left in place.
* :func:`valid_patches`: how many time patches of a patch embedding lie inside
  the valid frames (AST).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def padding_mask(lengths: jax.Array, max_length: int) -> jax.Array:
    """``bool[B, max_length]``, True on the valid frames ``t < lengths[b]``."""
    steps = jnp.arange(max_length, dtype=jnp.int32)

    def one(length):
        return steps < length

    return jax.vmap(one)(jnp.asarray(lengths, jnp.int32))


def pooled_lengths(lengths: jax.Array, levels: int) -> jax.Array:
    """Valid frames after ``levels`` max-pools of size/stride 2 (floor mode).

    ``max(1, length // 2**levels)``: pooled frame ``j`` covers input frames
    ``[j * 2**levels, (j + 1) * 2**levels)``, which are all valid iff
    ``j < length // 2**levels``. At least one frame is kept so that a clip shorter
    than the pooling window still has a summary (that frame is computed from its
    valid frames and zeros, identically whatever the padding, when padded frames
    are zeroed before every layer as the CNN does).
    """
    lengths = jnp.asarray(lengths, jnp.int32)
    return jnp.maximum(1, lengths // (2**levels))


def masked_mean(x: jax.Array, mask: jax.Array, axis: int = 1) -> jax.Array:
    """Mean of ``x`` over ``axis`` counting only the positions where ``mask`` is True.

    ``mask`` has the shape of ``x`` up to and including ``axis`` (e.g. ``x [B, T, C]``
    with ``mask [B, T]``); it is broadcast over the trailing axes. Padded values
    are selected away with ``where`` (not multiplied), so NaN or inf in the padding
    cannot leak. The sum is accumulated in float32; the result has ``x.dtype``.
    """
    extra = x.ndim - mask.ndim
    m = mask.reshape(mask.shape + (1,) * extra)
    total = jnp.sum(jnp.where(m, x, 0).astype(jnp.float32), axis=axis)
    count = jnp.sum(m.astype(jnp.float32), axis=axis)
    return (total / jnp.maximum(count, 1.0)).astype(x.dtype)


def reverse_index(lengths: jax.Array, max_length: int) -> jax.Array:
    """``int[B, T]`` gather indices ``where(t < len, len - 1 - t, t)``.

    The permutation is its own inverse: applying it twice gives the identity.
    """
    steps = jnp.arange(max_length, dtype=jnp.int32)

    def one(length):
        return jnp.where(steps < length, length - 1 - steps, steps)

    return jax.vmap(one)(jnp.asarray(lengths, jnp.int32))


def reverse_within_length(x: jax.Array, lengths: jax.Array) -> jax.Array:
    """Reverse each example's valid part along time (``x [B, T, ...]``).

    ``y[b, t] = x[b, len_b - 1 - t]`` for ``t < len_b`` and ``y[b, t] = x[b, t]``
    for the padding. Used for the backward direction of a recurrent layer; applying
    it twice gives ``x`` back.
    """
    index = reverse_index(lengths, x.shape[1])
    return jax.vmap(lambda example, order: example[order])(x, index)


def valid_patches(lengths: jax.Array, patch: int, stride: int, num_patches: int) -> jax.Array:
    """Number of valid patches along time for each example: ``int[B]``.

    Patch ``j`` covers frames ``[j * stride, j * stride + patch)``; it is valid iff
    ``j * stride + patch <= max(length, patch)`` (a clip shorter than one patch
    keeps its first patch, zero padded). The valid patches are a prefix.
    """
    lengths = jnp.asarray(lengths, jnp.int32)
    effective = jnp.maximum(lengths, patch)
    count = (effective - patch) // stride + 1
    return jnp.clip(count, 1, num_patches).astype(jnp.int32)
