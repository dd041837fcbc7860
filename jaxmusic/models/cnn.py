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

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

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


class CNNBackbone(nn.Module):
    """Conv blocks over ``features [B, T, F]`` -> ``latent [B, channels[-1]]``."""

    channels: Sequence[int] = (16, 32, 64, 128)
    kernel_size: int = 3
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    momentum: float = 0.9
    epsilon: float = 1e-5

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
