"""A small class-conditional diffusion model of spectrogram crops: DDPM training, DDIM sampling.

The generator of ``jaxmusic generate`` (:mod:`jaxmusic.generative`). Clips are
``(T, F)`` crops of a prepared set's stored view, standardised with the training
split's per-feature statistics, so that the data are roughly unit-variance like the
noise.

* Forward process (Ho et al. 2020, eq. 4): ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps``
  with the linear schedule ``beta_t`` from 1e-4 to 0.02 over 1000 steps and
  ``abar_t = prod_{s<=t} (1 - beta_s)``. The network predicts the velocity
  ``v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0`` (Salimans & Ho 2022) and the loss is the
  plain mean squared error. (Predicting ``eps``, DDPM's choice, made sampling diverge here:
  at low signal-to-noise ``x_0 = (x_t - sqrt(1 - abar) eps) / sqrt(abar)`` multiplies the
  network's error by up to 150, and the trajectories left the data's range.)
* Sampling: DDIM (Song et al. 2021, eq. 12) on a sub-sequence of the training steps,
  deterministic for ``eta = 0``: the same seed gives the same clips.
* The denoiser is a 1-D U-Net over time with the feature bands as channels (as
  DiffSinger's denoiser treats the mel bins), conditioned on the timestep
  (sinusoidal embedding + MLP) and the class (a learned embedding) through each
  residual block, plus a linear map of the input frames to the output (full rank in
  the bands, whatever the channel widths). A 1-D network costs a fraction of a 2-D
  one on a CPU.

Why diffusion and not a GAN: on a few hundred clips a GAN's two-player training tends
to collapse or oscillate and has no loss that says whether it works; the diffusion
loss is a regression that falls steadily and can be checked (tests/test_generative.py).
The price is sampling time (one network call per DDIM step), which is small here.
"""

from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


# --- the noise schedule and the two updates ----------------------------------------

def linear_betas(steps: int = 1000, start: float = 1e-4, end: float = 0.02) -> np.ndarray:
    """DDPM's linear variance schedule ``beta_1..beta_T`` (float64)."""
    if steps < 2:
        raise ValueError(f"diffusion steps must be at least 2, got {steps}")
    return np.linspace(start, end, steps, dtype=np.float64)


def alpha_bars(betas: np.ndarray) -> np.ndarray:
    """``abar_t = prod_{s <= t} (1 - beta_s)``."""
    return np.cumprod(1.0 - np.asarray(betas, np.float64))


def q_sample(x0: jax.Array, t: jax.Array, noise: jax.Array, abar: jax.Array) -> jax.Array:
    """A draw of ``q(x_t | x_0)``: ``sqrt(abar_t) x_0 + sqrt(1 - abar_t) noise``, per row of ``t``."""
    a = abar[t].reshape((-1,) + (1,) * (x0.ndim - 1)).astype(x0.dtype)
    return jnp.sqrt(a) * x0 + jnp.sqrt(1.0 - a) * noise


def v_target(x0: jax.Array, t: jax.Array, noise: jax.Array, abar: jax.Array) -> jax.Array:
    """The velocity ``v = sqrt(abar_t) noise - sqrt(1 - abar_t) x_0`` (Salimans & Ho 2022), per row of ``t``."""
    a = abar[t].reshape((-1,) + (1,) * (x0.ndim - 1)).astype(x0.dtype)
    return jnp.sqrt(a) * noise - jnp.sqrt(1.0 - a) * x0


def eps_from_v(x_t: jax.Array, v: jax.Array, abar_t) -> jax.Array:
    """The noise a velocity prediction implies: ``eps = sqrt(1 - abar_t) x_t + sqrt(abar_t) v``."""
    return jnp.sqrt(1.0 - abar_t) * x_t + jnp.sqrt(abar_t) * v


def ddim_step(x_t: jax.Array, eps: jax.Array, abar_t, abar_prev, *, eta: float = 0.0,
              noise: jax.Array | None = None, clip: float | None = None) -> tuple[jax.Array, jax.Array]:
    """One DDIM update ``x_t -> x_prev`` from the predicted noise; returns ``(x_prev, x0_hat)``.

    ``x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)`` (clipped to ``[-clip, clip]``
    when asked, ``eps`` then recomputed from it), ``sigma = eta sqrt((1 - abar_prev) /
    (1 - abar_t)) sqrt(1 - abar_t / abar_prev)``, and
    ``x_prev = sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev - sigma^2) eps + sigma noise``.
    """
    x0 = (x_t - jnp.sqrt(1.0 - abar_t) * eps) / jnp.sqrt(abar_t)
    if clip is not None:
        x0 = jnp.clip(x0, -clip, clip)
        eps = (x_t - jnp.sqrt(abar_t) * x0) / jnp.sqrt(1.0 - abar_t)
    sigma = eta * jnp.sqrt((1.0 - abar_prev) / (1.0 - abar_t)) * jnp.sqrt(1.0 - abar_t / abar_prev)
    x_prev = jnp.sqrt(abar_prev) * x0 + jnp.sqrt(jnp.maximum(1.0 - abar_prev - sigma ** 2, 0.0)) * eps
    if noise is not None:
        x_prev = x_prev + sigma * noise
    return x_prev, x0


def ddim_timesteps(train_steps: int, sample_steps: int) -> np.ndarray:
    """``sample_steps`` training timesteps, evenly spaced, from the last (``T - 1``, pure
    noise) down to 0; a single step is ``[T - 1]`` (one jump from noise to the data)."""
    if not 1 <= sample_steps <= train_steps:
        raise ValueError(f"DDIM steps must be in [1, {train_steps}], got {sample_steps}")
    if sample_steps == 1:
        return np.array([train_steps - 1], np.int64)
    return np.linspace(0, train_steps - 1, sample_steps).round().astype(np.int64)[::-1]


# --- the denoiser -------------------------------------------------------------------

def timestep_embedding(t: jax.Array, dim: int) -> jax.Array:
    """Transformer-style sinusoidal embedding of integer timesteps, ``[B, dim]``."""
    half = dim // 2
    freqs = jnp.exp(-math.log(10000.0) * jnp.arange(half, dtype=jnp.float32) / half)
    args = t.astype(jnp.float32)[:, None] * freqs[None]
    return jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)


class ResBlock(nn.Module):
    """GroupNorm -> SiLU -> conv, plus the (timestep, class) embedding, twice; residual."""

    channels: int

    @nn.compact
    def __call__(self, x, emb):
        groups = math.gcd(8, self.channels)
        h = nn.Conv(self.channels, (3,))(nn.silu(nn.GroupNorm(num_groups=math.gcd(8, x.shape[-1]))(x)))
        h = h + nn.Dense(self.channels)(nn.silu(emb))[:, None, :]
        h = nn.Conv(self.channels, (3,))(nn.silu(nn.GroupNorm(num_groups=groups)(h)))
        skip = x if x.shape[-1] == self.channels else nn.Dense(self.channels)(x)
        return skip + h


class SpectrogramDenoiser(nn.Module):
    """``v_hat = f(x_t [B, T, F], t [B], label [B])``: a 1-D U-Net over time.

    ``channels`` per level; each level after the first halves the time axis, so the
    crop length must be a multiple of ``2 ** (len(channels) - 1)``.
    """

    num_features: int
    num_classes: int
    channels: Sequence[int] = (64, 128, 128)
    embed_dim: int = 128

    @nn.compact
    def __call__(self, x, t, label):
        emb = timestep_embedding(t, self.embed_dim)
        emb = nn.Dense(self.embed_dim)(nn.silu(nn.Dense(self.embed_dim)(emb)))
        emb = emb + nn.Embed(self.num_classes, self.embed_dim)(label)
        h = nn.Conv(self.channels[0], (3,))(x)
        skips = []
        for level, c in enumerate(self.channels):
            h = ResBlock(c)(h, emb)
            skips.append(h)
            if level < len(self.channels) - 1:
                h = nn.Conv(c, (3,), strides=(2,))(h)
        h = ResBlock(self.channels[-1])(h, emb)
        for level in reversed(range(len(self.channels))):
            h = ResBlock(self.channels[level])(jnp.concatenate([h, skips.pop()], axis=-1), emb)
            if level > 0:
                h = jnp.repeat(h, 2, axis=1)
                h = nn.Conv(self.channels[level - 1], (3,))(h)
        h = nn.silu(nn.GroupNorm(num_groups=math.gcd(8, h.shape[-1]))(h))
        # Plus a per-frame linear map of the input: at high noise v is nearly x_t itself, and
        # channels narrower than the bands could not pass all of them through the U-Net.
        return (nn.Conv(self.num_features, (3,), kernel_init=nn.initializers.zeros)(h)
                + nn.Dense(self.num_features, kernel_init=nn.initializers.zeros, name="input_skip")(x))


def time_multiple(channels: Sequence[int]) -> int:
    """What the crop length must be a multiple of for :class:`SpectrogramDenoiser`."""
    return 2 ** (len(channels) - 1)
