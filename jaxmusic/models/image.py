"""Image-style CNNs: the spectrogram as a picture, convolutions, flatten, dense layers.

The GTZAN project classifies mel-spectrogram pictures with a LeNet-like network and
an AlexNet-like one with batch norm; the hard-techno sub-genre study uses three
convolutions and a 256-unit dense layer with dropout. All three are
:class:`ImageCNN` with different layer lists (NHWC, H = time, W = frequency):

* ``lenet`` (:class:`LeNet`): LeNet-5's shapes, 2 x (Conv 5x5 -> ReLU -> MaxPool 2)
  with 6 and 16 channels, then dense 120 -> 84. Latent: 84.
* ``minialexnet`` (:class:`MiniAlexNet`): AlexNet's five convolutions at a fifth of
  its widths, Conv 5x5/32 -> pool, Conv 5x5/64 -> pool, Conv 3x3/128, Conv 3x3/128,
  Conv 3x3/64 -> pool, each followed by BatchNorm and ReLU, then dense 256 -> 256
  with dropout 0.5. Latent: 256.
* ``cnn3_dense`` (:class:`CNN3Dense`): 3 x (Conv 3x3 -> BatchNorm -> ReLU -> MaxPool 2)
  with 32, 64, 128 channels, then dense 256 with dropout 0.5. Latent: 256.

Switches for the ablations: ``batch_norm`` (off: no BatchNorm layers and no
``batch_stats`` collection) and ``dropout`` (the rate after every dense layer;
0 turns it off). Convolutions are SAME-padded, pools are the course CNN's 2x2
(:func:`jaxmusic.models.cnn.max_pool_2x2`: floor over time, ceil over frequency).

The flatten makes the dense layers depend on the picture size: these networks
expect fixed pictures, which ``data.resize = (H, W)``
(:mod:`jaxmusic.models.resize`) makes from clips of any length. Without a resize
they run on the padded ``[max_length, F]`` input, and padding still never changes
the latent: padded frames are zeroed before every convolution and before the
flatten (their weights in the first dense layer multiply zeros), pooled frames
touching padding are padding (:func:`jaxmusic.models.masks.pooled_lengths`), and
BatchNorm's batch statistics are taken over valid frames only.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxmusic.models import masks
from jaxmusic.models.cnn import conv_general_dilated, max_pool_2x2

Dtype = Any


class ImageCNN(nn.Module):
    """Convolution blocks, flatten, dense layers: ``[B, T, F]`` -> ``latent [B, dense[-1]]``.

    Block ``i``: Conv(``kernels[i]`` x ``kernels[i]``, ``channels[i]``, SAME) ->
    BatchNorm (when ``batch_norm``) -> ReLU -> MaxPool 2x2 (when ``pools[i]``).
    Dense layer ``j``: Dense(``dense[j]``) -> ReLU -> Dropout(``dropout``).
    """

    channels: Sequence[int] = (32, 64, 128)
    kernels: Sequence[int] = (3, 3, 3)
    pools: Sequence[bool] = (True, True, True)
    dense: Sequence[int] = (256,)
    dropout: float = 0.5
    batch_norm: bool = True
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    momentum: float = 0.9
    epsilon: float = 1e-5
    tap_wgrad: bool = True  # weight gradients as per-tap products (jaxmusic.models.cnn)

    @property
    def feature_size(self) -> int:
        return int(self.dense[-1])

    @nn.compact
    def __call__(self, features: jax.Array, lengths: jax.Array, *, train: bool) -> jax.Array:
        if not (len(self.channels) == len(self.kernels) == len(self.pools)):
            raise ValueError(f"{type(self).__name__}: channels, kernels and pools need one entry per "
                             f"convolution, got {len(self.channels)}, {len(self.kernels)}, {len(self.pools)}")
        if not self.dense:
            raise ValueError(f"{type(self).__name__}: needs at least one dense layer")
        batch, steps, _ = features.shape
        num_pools = sum(bool(p) for p in self.pools)
        if steps < 2**num_pools:
            raise ValueError(f"{type(self).__name__} with {num_pools} pooling layers needs at least "
                             f"{2**num_pools} time frames, got T={steps}")
        lengths = jnp.clip(jnp.asarray(lengths, jnp.int32), 0, steps)

        def zero_padding(x, level):
            valid = masks.padding_mask(masks.pooled_lengths(lengths, level), x.shape[1])
            return jnp.where(valid[:, :, None, None], x, jnp.zeros((), x.dtype)), valid

        level = 0
        x, valid = zero_padding(jnp.asarray(features, self.dtype)[..., None], level)
        for i, (width, k, pool) in enumerate(zip(self.channels, self.kernels, self.pools)):
            x = nn.Conv(int(width), (int(k), int(k)), padding="SAME", dtype=self.dtype,
                        param_dtype=self.param_dtype,
                        conv_general_dilated=conv_general_dilated if self.tap_wgrad else None,
                        name=f"conv_{i}")(x)
            if self.batch_norm:
                x = nn.BatchNorm(use_running_average=not train, momentum=self.momentum,
                                 epsilon=self.epsilon, dtype=self.dtype, param_dtype=self.param_dtype,
                                 name=f"batch_norm_{i}")(x, mask=valid[:, :, None, None])
            x = nn.relu(x)
            if pool:
                x = max_pool_2x2(x)
                level += 1
            x, valid = zero_padding(x, level)
        self.sow("intermediates", "feature_map", x)  # [B, T_k, F_k, C]
        x = x.reshape(batch, -1)
        for j, width in enumerate(self.dense):
            x = nn.relu(nn.Dense(int(width), dtype=self.dtype, param_dtype=self.param_dtype,
                                 name=f"dense_{j}")(x))
            if self.dropout:
                x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return x


class LeNet(ImageCNN):
    """LeNet-5's shapes on a spectrogram picture (``lenet``)."""

    channels: Sequence[int] = (6, 16)
    kernels: Sequence[int] = (5, 5)
    pools: Sequence[bool] = (True, True)
    dense: Sequence[int] = (120, 84)
    dropout: float = 0.0
    batch_norm: bool = False


class MiniAlexNet(ImageCNN):
    """AlexNet's five convolutions at a fifth of the width, with BatchNorm (``minialexnet``)."""

    channels: Sequence[int] = (32, 64, 128, 128, 64)
    kernels: Sequence[int] = (5, 5, 3, 3, 3)
    pools: Sequence[bool] = (True, True, False, False, True)
    dense: Sequence[int] = (256, 256)
    dropout: float = 0.5
    batch_norm: bool = True


class CNN3Dense(ImageCNN):
    """The sub-genre study's network: 3 convolutions, dense 256, dropout (``cnn3_dense``)."""

    channels: Sequence[int] = (32, 64, 128)
    kernels: Sequence[int] = (3, 3, 3)
    pools: Sequence[bool] = (True, True, True)
    dense: Sequence[int] = (256,)
    dropout: float = 0.5
    batch_norm: bool = True
