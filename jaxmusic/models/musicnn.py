"""The musicnn and VGG-style taggers of the ``musicnn`` package (Pons & Serra, 2019), in Flax.

A port of ``musicnn/models.py`` (``build_musicnn`` and ``vgg``) layer for layer, so
the TensorFlow checkpoints shipped in the ``musicnn`` wheel (``MTT_musicnn``,
``MSD_musicnn``, ``MTT_vgg``, ``MSD_vgg``: 50-tag music tagging trained on
MagnaTagATune / the Million Song Dataset) load into it unchanged
(:mod:`jaxmusic.pretrained` reads them). Input: one 3 s patch, ``x [B, 187, 96]``,
the log-compressed 96-band mel spectrogram of :func:`jaxmusic.frontend.musicnn_input`.

musicnn (``MusicnnTagger``)
  BN(input) -> front end: two timbral blocks (conv 7 x 38 and 7 x 67, 204 filters,
  time padded 3 each side, frequency "valid") and three temporal blocks (conv 128 x 1,
  64 x 1, 32 x 1, 51 filters, SAME), each conv -> ReLU -> BN -> max over frequency;
  concatenated (561 channels) -> mid end: three conv 7 x C (64 filters) -> ReLU -> BN,
  the last two residual -> dense connection (561 + 3 x 64 = 753 channels) -> back
  end: max and mean over time, interleaved per channel (TensorFlow's flatten of
  ``[B, 753, 2]``) -> BN -> dropout 0.5 -> dense 200 ReLU -> BN (the *penultimate*
  layer, 200 wide) -> dropout 0.5 -> dense 50 (logits).

VGG (``VGGTagger``)
  BN(input) -> five conv 3 x 3 (128 filters, SAME) -> ReLU -> BN -> max-pool
  (4 x 1 stride 2, then 2 x 2 stride 2 three times, then 4 x 4 stride 4; "valid";
  MSD_vgg's checkpoint pools differently, see ``VGG_POOLS_MSD``),
  dropout 0.25 between blocks -> flatten (2 x 1 x 128 = 256, the penultimate
  features) -> dropout 0.5 -> dense 50.

TensorFlow's ``tf.compat.v1.layers.batch_normalization`` defaults hold: epsilon
1e-3, momentum 0.99 (flax ``momentum=0.99``); its moving variance is the biased one,
as flax's is. The mid-end's ``conv 7 x C`` on a ``[B, T, C, 1]`` map is written as
the equivalent 1-D convolution over ``[B, T, C]`` (kernel ``[7, C, 64]``).

:class:`MusicnnBackbone` wraps either tagger as a jaxmusic backbone
(``backbone(features [B, T, 96], lengths, *, train) -> latent``): the sequence is
cut into consecutive 187-frame patches from frame 0 (as the package's extractor
does), each patch runs through the tagger, and the latent is the mean of the
penultimate layer over the patches that start before ``length``. Frames past
``length`` are zeroed first (zero is silence after ``log10(10000 x + 1)``), so the
latent never depends on how much padding follows a clip.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxmusic.models import masks
from jaxmusic.models.cnn import conv_general_dilated

# The 2-D convolutions' gradients: the input gradient of jaxmusic.models.cnn.input_gradient
# (XLA:CPU's transposed convolution of the one-channel front end ran at 11-13x the forward
# convolution's time), XLA's own weight gradient.
_conv2d = functools.partial(conv_general_dilated, tap_weight_grad=False)

PATCH_FRAMES = 187   # 3 s at 16 kHz, hop 256: librosa.time_to_frames(3, sr=16000, n_fft=512, hop_length=256) + 1
N_BANDS = 96
N_TAGS = 50
BN_EPSILON = 1e-3    # tf.compat.v1.layers.batch_normalization's default
BN_MOMENTUM = 0.99

ARCHITECTURES = ("musicnn", "vgg", "vgg_msd")


def _bn(train: bool, name: str, dtype, momentum: float = BN_MOMENTUM) -> nn.BatchNorm:
    return nn.BatchNorm(use_running_average=not train, momentum=momentum, epsilon=BN_EPSILON,
                        dtype=dtype, name=name)


class MusicnnTagger(nn.Module):
    """``build_musicnn`` of musicnn/models.py: ``x [B, T, 96]`` -> ``{"logits", "penultimate", ...}``."""

    num_classes: int = N_TAGS
    num_filt_frontend: float = 1.6
    num_filt_midend: int = 64
    num_units_backend: int = 200
    n_bands: int = N_BANDS
    bn_momentum: float = BN_MOMENTUM   # running-statistics momentum when training (TF's 0.99)
    dtype: Any = jnp.float32

    @property
    def feature_size(self) -> int:
        return int(self.num_units_backend)

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool, mask: jax.Array | None = None) -> dict[str, jax.Array]:
        """``mask [B]`` (optional): which rows count in BatchNorm's batch statistics (train mode)."""
        bmask4 = None if mask is None else mask[:, None, None, None]
        bmask3 = None if mask is None else mask[:, None, None]
        bmask2 = None if mask is None else mask[:, None]
        x = jnp.asarray(x, self.dtype)
        inp = _bn(train, "bn_input", self.dtype, self.bn_momentum)(x[..., None], mask=bmask4)        # [B, T, 96, 1]
        n_timbral = int(self.num_filt_frontend * 128)
        n_temporal = int(self.num_filt_frontend * 32)

        def block(y, filters, kernel, padding, name):
            y = nn.Conv(filters, kernel, padding=padding, dtype=self.dtype, conv_general_dilated=_conv2d,
                        name=f"conv_{name}")(y)
            y = _bn(train, f"bn_{name}", self.dtype, self.bn_momentum)(nn.relu(y), mask=bmask4)
            return jnp.max(y, axis=2)                                                 # [B, T, filters]

        front = [
            block(inp, n_timbral, (7, int(0.4 * self.n_bands)), ((3, 3), (0, 0)), "timbral74"),
            block(inp, n_timbral, (7, int(0.7 * self.n_bands)), ((3, 3), (0, 0)), "timbral77"),
            block(inp, n_temporal, (128, 1), "SAME", "temporal128"),
            block(inp, n_temporal, (64, 1), "SAME", "temporal64"),
            block(inp, n_temporal, (32, 1), "SAME", "temporal32"),
        ]
        frontend = jnp.concatenate(front, axis=-1)                                    # [B, T, 561]

        mid = [frontend]
        y = frontend
        for i in range(3):
            z = nn.Conv(self.num_filt_midend, (7,), padding=((3, 3),), dtype=self.dtype, name=f"conv_mid{i + 1}")(y)
            z = _bn(train, f"bn_mid{i + 1}", self.dtype, self.bn_momentum)(nn.relu(z), mask=bmask3)
            y = z if i == 0 else z + y
            mid.append(y)
        midend = jnp.concatenate(mid, axis=-1)                                        # [B, T, 753]

        max_pool = jnp.max(midend, axis=1)
        mean_pool = jnp.mean(midend, axis=1)
        flat = jnp.stack([max_pool, mean_pool], axis=-1).reshape(x.shape[0], -1)     # [B, 1506], interleaved
        flat = _bn(train, "bn_pool", self.dtype, self.bn_momentum)(flat, mask=bmask2)
        flat = nn.Dropout(0.5, deterministic=not train)(flat)
        dense = nn.relu(nn.Dense(self.num_units_backend, dtype=self.dtype, name="dense")(flat))
        penultimate = _bn(train, "bn_dense", self.dtype, self.bn_momentum)(dense, mask=bmask2)
        logits = nn.Dense(self.num_classes, dtype=self.dtype, name="logits")(
            nn.Dropout(0.5, deterministic=not train)(penultimate))
        return {"logits": logits, "penultimate": penultimate, "timbral": jnp.concatenate(front[:2], -1),
                "temporal": jnp.concatenate(front[2:], -1), "mean_pool": mean_pool, "max_pool": max_pool}


# The five max-pools ((window, strides), "valid"). MTT_vgg's are those of musicnn/models.py;
# the MSD_vgg checkpoint's own graph (its .meta) pools differently, and the package's code
# does not build it (its extractor says the model "is still training"): 4 x 1 / 4 x 1 then
# 1 x 4 / 1 x 4 where MTT_vgg has 4 x 1 / 2 x 2 then 2 x 2 / 2 x 2. Both end at 2 x 1 x 128.
VGG_POOLS_MTT = (((4, 1), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((4, 4), (4, 4)))
VGG_POOLS_MSD = (((4, 1), (4, 1)), ((1, 4), (1, 4)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((4, 4), (4, 4)))


def _max_pool_valid(x: jax.Array, window: tuple[int, int], strides: tuple[int, int]) -> jax.Array:
    return nn.max_pool(x, window, strides=strides, padding="VALID")


class VGGTagger(nn.Module):
    """``vgg`` of musicnn/models.py: ``x [B, 187, 96]`` -> ``{"logits", "penultimate"}``."""

    num_classes: int = N_TAGS
    num_filters: int = 128
    pools: tuple = VGG_POOLS_MTT    # ((window, strides), ...) of the five max-pools
    bn_momentum: float = BN_MOMENTUM
    dtype: Any = jnp.float32

    @property
    def feature_size(self) -> int:
        return 2 * int(self.num_filters)   # pool5 is [2, 1, filters] for a 187 x 96 patch

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool, mask: jax.Array | None = None) -> dict[str, jax.Array]:
        bmask = None if mask is None else mask[:, None, None, None]
        y = _bn(train, "bn_input", self.dtype, self.bn_momentum)(jnp.asarray(x, self.dtype)[..., None], mask=bmask)
        out = {}
        for i, (window, strides) in enumerate(self.pools):
            if i:
                y = nn.Dropout(0.25, deterministic=not train)(y)
            y = nn.Conv(self.num_filters, (3, 3), padding="SAME", dtype=self.dtype, conv_general_dilated=_conv2d,
                        name=f"conv{i + 1}")(y)
            y = _bn(train, f"bn{i + 1}", self.dtype, self.bn_momentum)(nn.relu(y), mask=bmask)
            y = _max_pool_valid(y, window, strides)
            out[f"pool{i + 1}"] = y
        flat = y.reshape(y.shape[0], -1)
        logits = nn.Dense(self.num_classes, dtype=self.dtype, name="logits")(
            nn.Dropout(0.5, deterministic=not train)(flat))
        out.update(logits=logits, penultimate=flat)
        return out


def make_tagger(arch: str, num_classes: int = N_TAGS, dtype: Any = jnp.float32, **kwargs) -> nn.Module:
    """``"musicnn"``, ``"vgg"`` (MTT_vgg's pools) or ``"vgg_msd"`` (MSD_vgg's pools)."""
    if arch == "musicnn":
        return MusicnnTagger(num_classes=num_classes, dtype=dtype, **kwargs)
    if arch in ("vgg", "vgg_msd"):
        return VGGTagger(num_classes=num_classes, dtype=dtype,
                         pools=VGG_POOLS_MSD if arch == "vgg_msd" else VGG_POOLS_MTT, **kwargs)
    raise ValueError(f"unknown musicnn architecture {arch!r}; expected one of {ARCHITECTURES}")


def split_patches(features: jax.Array, lengths: jax.Array, patch_frames: int = PATCH_FRAMES
                  ) -> tuple[jax.Array, jax.Array]:
    """``features [B, T, F]`` -> patches ``[B, P, patch_frames, F]`` and ``valid [B, P]``.

    Frames ``t >= length`` are zeroed; the time axis is zero-padded up to a multiple of
    ``patch_frames``; patch ``p`` is valid when it starts before ``length`` (patch 0
    always is, so an empty clip still has one, silent, patch).
    """
    batch, steps, nfeat = features.shape
    lengths = jnp.clip(jnp.asarray(lengths, jnp.int32), 0, steps)
    x = jnp.where(masks.padding_mask(lengths, steps)[:, :, None], features, jnp.zeros((), features.dtype))
    n_patches = -(-steps // patch_frames)
    x = jnp.pad(x, ((0, 0), (0, n_patches * patch_frames - steps), (0, 0)))
    patches = x.reshape(batch, n_patches, patch_frames, nfeat)
    valid = (jnp.arange(n_patches)[None, :] * patch_frames < jnp.maximum(lengths, 1)[:, None])
    return patches, valid


class MusicnnBackbone(nn.Module):
    """A musicnn / VGG tagger as a backbone: the mean penultimate layer over 3 s patches.

    Parameters live under ``tagger`` (the pretrained weights import there); the
    tagger's own 50-tag output layer is kept (so the pretrained tree loads whole)
    but not used by the latent. ``frozen`` (set from ``train.freeze_backbone``) runs
    the tagger in inference mode in training too (running BatchNorm statistics, no
    dropout), as a frozen pretrained feature extractor; the optimiser leaves its
    parameters alone and the step keeps its statistics.
    """

    arch: str = "musicnn"
    patch_frames: int = PATCH_FRAMES
    frozen: bool = False     # transfer with a frozen backbone: BatchNorm on its running statistics
    bn_momentum: float = BN_MOMENTUM   # 0.99 (TF's) needs hundreds of steps; small runs want ~0.9
    dtype: Any = jnp.float32

    @property
    def feature_size(self) -> int:
        return 200 if self.arch == "musicnn" else 256

    @nn.compact
    def __call__(self, features: jax.Array, lengths: jax.Array, *, train: bool) -> jax.Array:
        batch, _, nfeat = features.shape
        if nfeat != N_BANDS:
            raise ValueError(f"the musicnn backbones take {N_BANDS} mel bands (the musicnn recipe), "
                             f"got {nfeat} features per frame")
        patches, valid = split_patches(features, lengths, self.patch_frames)
        n_patches = patches.shape[1]
        flat_valid = valid.reshape(-1)
        out = make_tagger(self.arch, dtype=self.dtype, bn_momentum=self.bn_momentum, name="tagger")(
            patches.reshape(batch * n_patches, self.patch_frames, nfeat), train=train and not self.frozen,
            mask=flat_valid)
        pen = out["penultimate"].reshape(batch, n_patches, -1).astype(jnp.float32)
        return masks.masked_mean(pen, valid)
