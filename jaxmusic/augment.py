"""Spectrogram augmentation inside the jitted train step: pure functions of ``(batch, rng)``.

Every augmentation takes the batch the step sees (``features f32[B, T, F]``,
``lengths i32[B]``, ``mask bool[B]``, ``label`` / ``targets``) and a PRNG key and
returns a new batch; the same key gives the same batch, on any device. Frames
``t >= length`` (the zero padding) come out exactly as they went in, and rows with
``mask`` False (batch padding) are never changed. All of them run on device, with
static shapes, so the step compiles once.

Config ``augment.*`` (all off by default; see :func:`jaxmusic.config.base_config`):

``crop_frames``   random crop: a window of ``min(length, crop_frames)`` valid frames,
                  starting uniformly in ``[0, length - window]``, moved to frame 0;
                  ``lengths`` become the window (the rest is zero padding).
``time_shift``    random circular shift of the valid frames by ``s`` in
                  ``[-time_shift, time_shift]`` (modulo the clip's length; the length
                  is kept).
``gain_db``       random gain ``g ~ U[-gain_db, gain_db]`` dB added to every valid
                  frame of the clip (the spectrogram's counterpart of brightness jitter).
``contrast``      random contrast ``c ~ U[1 - contrast, 1 + contrast]``: each clip's
                  valid values spread by ``c`` around the clip's mean.
``time_masks`` x ``time_mask_width``  SpecAugment time masks: each mask has a width
                  ``w ~ U{0..time_mask_width}`` (at most the length) and a start
                  ``U{0..length - w}``; masked frames get the clip's mean.
``freq_masks`` x ``freq_mask_width``  SpecAugment frequency masks: ``f ~ U{0..width}``
                  bands from ``U{0..F - f}``, the clip's mean, on the valid frames.
``mixup_alpha``   mixup (Zhang et al. 2018): ``lam ~ Beta(alpha, alpha)`` per clip,
                  a random partner from the batch (one permutation), features
                  ``lam x + (1 - lam) x_partner`` over the longer of the two lengths;
                  genre labels become soft (``label_soft``, the loss uses it),
                  regression targets are mixed the same way. A partner that is batch
                  padding leaves the clip unmixed.

Units: features reach the step standardised with the training split's per-feature
mean and std when ``data.normalize`` is on, in the stored units (mel dB, 0 dB the
loudest) when it is off. A mask fills with the clip's mean: the mean over its valid
frames and all features, as the mask stage receives the clip, in whichever unit (a
constant such as 0 would be the training mean in one unit and the loudest level in
the other). Contrast acts in the units the step sees: on standardised features it
spreads them by ``c`` around the clip's standardised mean, which in dB is a spread of
each band around a point of its own, not around the clip's dB mean. The gain is given
in dB and converted with ``feature_scale = 1 / std`` (:func:`feature_scale`), so
``gain_db=6`` means 6 dB of the mel spectrogram's dB scale whether the features are
standardised or not. The gain applies to every feature column (on chroma rows it is a
shift of the same size in their units; use it with the mel view).

Order: crop / shift -> gain / contrast -> time masks -> frequency masks -> mixup.
Each stage draws its own key (``jax.random.fold_in(rng, stage)``), so switching one
stage on or off never changes what another draws.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

FIELDS = {
    "crop_frames": 0, "time_shift": 0, "gain_db": 0.0, "contrast": 0.0,
    "time_masks": 0, "time_mask_width": 0, "freq_masks": 0, "freq_mask_width": 0,
    "mixup_alpha": 0.0,
}

_CROP, _SHIFT, _GAIN, _CONTRAST, _TMASK, _FMASK, _MIXUP = range(7)


def settings(cfg: Mapping[str, Any] | None) -> dict[str, Any]:
    """``cfg`` (a ConfigDict, dict or None) as a plain dict with every field; unknown keys raise."""
    out = dict(FIELDS)
    if cfg is None:
        return out
    given = dict(cfg.to_dict() if hasattr(cfg, "to_dict") else cfg)
    for key, value in given.items():
        if key not in FIELDS:
            raise ValueError(f"unknown augment setting {key!r}; known: {sorted(FIELDS)}")
        out[key] = type(FIELDS[key])(value)
        if out[key] < 0:
            raise ValueError(f"augment.{key} must be >= 0, got {value!r}")
    return out


def enabled(cfg: Mapping[str, Any] | None) -> bool:
    s = settings(cfg)
    return bool(s["crop_frames"] or s["time_shift"] or s["gain_db"] or s["contrast"]
                or (s["time_masks"] and s["time_mask_width"]) or (s["freq_masks"] and s["freq_mask_width"])
                or s["mixup_alpha"])


def feature_scale(std) -> np.ndarray | None:
    """``1 / std`` per feature (the dB -> standardised-unit factor), or None without standardisation."""
    if std is None:
        return None
    s = np.asarray(std, np.float32)
    return (1.0 / np.where(s > 1e-6, s, 1.0)).astype(np.float32)


# --- helpers ---------------------------------------------------------------------------------

def _valid_frames(batch) -> jax.Array:
    steps = batch["features"].shape[1]
    return jnp.arange(steps)[None, :] < batch["lengths"][:, None]          # [B, T]


def _keep_padding(batch, new_features, row_change: jax.Array | None = None) -> dict:
    """``new_features`` on the valid frames of real rows; the input elsewhere (padding untouched)."""
    valid = _valid_frames(batch) & batch["mask"][:, None]
    if row_change is not None:
        valid = valid & row_change[:, None]
    return dict(batch, features=jnp.where(valid[..., None], new_features, batch["features"]))


def clip_mean(batch) -> jax.Array:
    """Each clip's mean over its valid frames and all features, ``[B, 1, 1]``."""
    x = batch["features"]
    valid = _valid_frames(batch)
    count = jnp.maximum(valid.sum(axis=1), 1)[:, None, None] * x.shape[2]
    return jnp.sum(jnp.where(valid[..., None], x, 0.0), axis=(1, 2), keepdims=True) / count


def _gather_time(features: jax.Array, index: jax.Array) -> jax.Array:
    """``out[b, t] = features[b, index[b, t]]``."""
    return jnp.take_along_axis(features, index[..., None], axis=1)


# --- draws (positions), then deterministic application -----------------------------------------

def draw_crop(rng, lengths: jax.Array, crop_frames: int) -> tuple[jax.Array, jax.Array]:
    """``(start [B], window [B])`` of a random crop of ``min(length, crop_frames)`` frames."""
    window = jnp.minimum(lengths, crop_frames)
    start = jax.random.randint(rng, lengths.shape, 0, lengths - window + 1)
    return start, window


def apply_crop(batch, start: jax.Array, window: jax.Array) -> dict:
    steps = batch["features"].shape[1]
    t = jnp.arange(steps)[None, :]
    inside = t < window[:, None]
    moved = _gather_time(batch["features"], jnp.clip(t + start[:, None], 0, steps - 1))
    moved = jnp.where(inside[..., None], moved, 0.0).astype(batch["features"].dtype)
    new_len = jnp.where(batch["mask"], window, batch["lengths"])
    # Frames past the new length become zero padding (they were valid frames before).
    features = jnp.where(batch["mask"][:, None, None], moved, batch["features"])
    return dict(batch, features=features, lengths=new_len.astype(batch["lengths"].dtype))


def draw_shift(rng, lengths: jax.Array, max_shift: int) -> jax.Array:
    return jax.random.randint(rng, lengths.shape, -max_shift, max_shift + 1)


def apply_shift(batch, shift: jax.Array) -> dict:
    """``out[b, t] = x[b, (t - shift[b]) mod length[b]]`` on the valid frames."""
    steps = batch["features"].shape[1]
    length = jnp.maximum(batch["lengths"], 1)[:, None]
    index = jnp.mod(jnp.arange(steps)[None, :] - shift[:, None], length)
    return _keep_padding(batch, _gather_time(batch["features"], index))


def draw_gain(rng, batch_size: int, gain_db: float) -> jax.Array:
    return jax.random.uniform(rng, (batch_size,), minval=-gain_db, maxval=gain_db)


def apply_gain(batch, gain_db: jax.Array, scale: jax.Array | None = None) -> dict:
    g = gain_db[:, None, None] * (1.0 if scale is None else jnp.asarray(scale)[None, None, :])
    return _keep_padding(batch, batch["features"] + g.astype(batch["features"].dtype))


def draw_contrast(rng, batch_size: int, contrast: float) -> jax.Array:
    return jax.random.uniform(rng, (batch_size,), minval=1.0 - contrast, maxval=1.0 + contrast)


def apply_contrast(batch, factor: jax.Array) -> dict:
    x = batch["features"]
    mean = clip_mean(batch)
    return _keep_padding(batch, (mean + factor[:, None, None] * (x - mean)).astype(x.dtype))


def draw_masks(rng, limit: jax.Array, count: int, max_width: int) -> tuple[jax.Array, jax.Array]:
    """``(start [B, count], width [B, count])``: widths ``U{0..min(max_width, limit)}``,
    starts ``U{0..limit - width}`` (``limit [B]``: the length, or the band count)."""
    kw, ks = jax.random.split(rng)
    shape = limit.shape + (count,)
    top = jnp.minimum(max_width, limit)[:, None]
    width = jax.random.randint(kw, shape, 0, top + 1)
    start = jax.random.randint(ks, shape, 0, limit[:, None] - width + 1)
    return start, width


def apply_time_masks(batch, start: jax.Array, width: jax.Array) -> dict:
    """Frames inside a mask take the clip's mean (:func:`clip_mean`)."""
    x = batch["features"]
    t = jnp.arange(x.shape[1])[None, :, None]
    hit = jnp.any((t >= start[:, None, :]) & (t < (start + width)[:, None, :]), axis=-1)   # [B, T]
    return _keep_padding(batch, jnp.where(hit[..., None], clip_mean(batch).astype(x.dtype), x))


def apply_freq_masks(batch, start: jax.Array, width: jax.Array) -> dict:
    """Bands inside a mask take the clip's mean (:func:`clip_mean`) on the valid frames."""
    x = batch["features"]
    f = jnp.arange(x.shape[2])[None, :, None]
    hit = jnp.any((f >= start[:, None, :]) & (f < (start + width)[:, None, :]), axis=-1)   # [B, F]
    return _keep_padding(batch, jnp.where(hit[:, None, :], clip_mean(batch).astype(x.dtype), x))


def draw_mixup(rng, batch_size: int, alpha: float) -> tuple[jax.Array, jax.Array]:
    """``(lam [B], partner [B])``: ``Beta(alpha, alpha)`` weights and one permutation."""
    kl, kp = jax.random.split(rng)
    lam = jax.random.beta(kl, alpha, alpha, (batch_size,))
    return lam, jax.random.permutation(kp, batch_size)


def apply_mixup(batch, lam: jax.Array, partner: jax.Array, num_classes: int | None = None) -> dict:
    mask = batch["mask"]
    lam = jnp.where(mask & mask[partner], lam, 1.0)           # never mix with (or into) batch padding
    x = batch["features"]
    l3 = lam[:, None, None].astype(x.dtype)
    features = l3 * x + (1 - l3) * x[partner]
    lengths = jnp.where(lam < 1.0, jnp.maximum(batch["lengths"], batch["lengths"][partner]), batch["lengths"])
    out = dict(batch, features=features, lengths=lengths)
    if "label" in batch and num_classes:
        onehot = jax.nn.one_hot(batch["label"], num_classes)
        out["label_soft"] = lam[:, None] * onehot + (1 - lam[:, None]) * onehot[partner]
    if "targets" in batch:
        t = batch["targets"]
        out["targets"] = jnp.where((lam < 1.0)[:, None], lam[:, None] * t + (1 - lam[:, None]) * t[partner], t)
    return out


# --- the whole chain ---------------------------------------------------------------------------

def apply(batch: Mapping[str, jax.Array], rng: jax.Array, cfg: Mapping[str, Any] | None, *,
          num_classes: int | None = None, scale=None) -> dict:
    """All enabled augmentations of ``cfg`` on ``batch`` with key ``rng`` (see the module doc).

    ``num_classes``: genre batches, for mixup's soft labels. ``scale``: per-feature
    dB -> feature-unit factor for the gain (:func:`feature_scale`; None: 1).
    """
    s = settings(cfg)
    out = dict(batch)
    out["lengths"] = jnp.asarray(out["lengths"], jnp.int32)
    batch_size = out["features"].shape[0]
    n_bands = out["features"].shape[2]
    if s["crop_frames"]:
        out = apply_crop(out, *draw_crop(jax.random.fold_in(rng, _CROP), out["lengths"], s["crop_frames"]))
    if s["time_shift"]:
        out = apply_shift(out, draw_shift(jax.random.fold_in(rng, _SHIFT), out["lengths"], s["time_shift"]))
    if s["gain_db"]:
        out = apply_gain(out, draw_gain(jax.random.fold_in(rng, _GAIN), batch_size, s["gain_db"]), scale)
    if s["contrast"]:
        out = apply_contrast(out, draw_contrast(jax.random.fold_in(rng, _CONTRAST), batch_size, s["contrast"]))
    if s["time_masks"] and s["time_mask_width"]:
        out = apply_time_masks(out, *draw_masks(jax.random.fold_in(rng, _TMASK), out["lengths"],
                                                s["time_masks"], s["time_mask_width"]))
    if s["freq_masks"] and s["freq_mask_width"]:
        out = apply_freq_masks(out, *draw_masks(jax.random.fold_in(rng, _FMASK),
                                                jnp.full((batch_size,), n_bands, jnp.int32),
                                                s["freq_masks"], s["freq_mask_width"]))
    if s["mixup_alpha"]:
        out = apply_mixup(out, *draw_mixup(jax.random.fold_in(rng, _MIXUP), batch_size, s["mixup_alpha"]),
                          num_classes=num_classes)
    return out
