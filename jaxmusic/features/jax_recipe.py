"""The recipe at JAX speed (``jaxmusic features --frontend jax``): batched mel and chroma
with :mod:`jaxmusic.frontend`, beats tracked and pooled on the host.

Per batch of clips (zero-padded to one length, a fixed batch size so it compiles
once): :func:`jaxmusic.frontend.frontend` gives mel dB (``power_to_db(ref=max)``,
the recipe's numbers) and STFT chroma (``chroma_stft(tuning=0)``: the lab's files
use ``chroma_cqt``, which is not reimplemented). Then per clip, on the host:
the onset envelope of the mel dB (``librosa.onset.onset_strength(S=mel_db)``),
``librosa.beat.beat_track(onset_envelope=...)`` and ``librosa.util.sync(...,
aggregate=np.median)``. The librosa recipe tracks beats on the percussive part
of an HPSS, the slowest step of all; here the beats come from the whole
signal's onsets. Files are gzipped at level 1 (the recipe: 6). How close both are
to the recipe, and how much faster: ``benchmarks/frontend_results.md``.

Compiling the frontend takes seconds; ``jaxmusic features --frontend jax`` keeps
XLA's persistent compilation cache (``$JAXMUSIC_XLA_CACHE``, default
``~/.cache/jaxmusic/xla``) so only the first run pays it (:func:`use_compile_cache`).
"""

from __future__ import annotations

import functools
import warnings

import numpy as np

from jaxmusic import frontend, recipe
from jaxmusic.features.audio import FLAG_SILENT, SAMPLE_RATE, SILENCE_PEAK
from jaxmusic.features.librosa_recipe import FLAG_BEAT_FALLBACK, beat_grid

BATCH = 8                       # clips per frontend call
# gzip level of the written files: 1, not the recipe's 6 (at 6, compressing took more
# time than the whole JAX frontend; float spectrograms shrink little more at 6).
GZIP_LEVEL = 1
LENGTH_STEP = recipe.HOP_LENGTH * 128   # padded lengths are multiples of this (few compiles)


def use_compile_cache(path: str | None = None) -> str:
    """Point JAX's persistent compilation cache at ``path`` (default
    ``$JAXMUSIC_XLA_CACHE`` or ``~/.cache/jaxmusic/xla``) unless one is set already."""
    import os

    import jax

    current = jax.config.jax_compilation_cache_dir
    if current and path is None:
        return current
    path = path or os.environ.get("JAXMUSIC_XLA_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "jaxmusic", "xla")
    os.makedirs(path, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    return path


@functools.lru_cache(maxsize=None)
def _compiled(sample_rate: int, fmax: float | None):
    import jax

    config = frontend.FrontendConfig(sample_rate=sample_rate, fmax=fmax)
    return jax.jit(functools.partial(frontend.frontend, config=config))


def frontend_batch(ys: list[np.ndarray], sr: int = SAMPLE_RATE, fmax: float | None = None,
                   batch: int = BATCH) -> list[np.ndarray]:
    """Mono clips -> their ``(T_i, 140)`` full-resolution arrays (mel dB over STFT chroma),
    ``T_i = 1 + len_i // hop`` as librosa counts frames."""
    if not ys:
        return []
    if len(ys) > batch:
        return [x for i in range(0, len(ys), batch)
                for x in frontend_batch(ys[i:i + batch], sr, fmax, batch)]
    n = max(len(y) for y in ys)
    n = -(-n // LENGTH_STEP) * LENGTH_STEP
    audio = np.zeros((batch, n), np.float32)
    lengths = np.zeros((batch,), np.int32)
    for i, y in enumerate(ys):
        audio[i, :len(y)] = y
        lengths[i] = len(y)
    lengths[len(ys):] = recipe.HOP_LENGTH        # padding rows: any valid length
    feats, flen = _compiled(sr, fmax)(audio, lengths)
    feats, flen = np.asarray(feats), np.asarray(flen)
    return [np.ascontiguousarray(feats[i, :int(flen[i])]) for i in range(len(ys))]


def beat_synchronise(full: np.ndarray, y_peak: float, sr: int = SAMPLE_RATE
                     ) -> tuple[np.ndarray, list[str]]:
    """One clip's ``(T, 140)`` array -> its per-beat medians ``(B, 140)`` and flags."""
    import librosa

    flags: list[str] = []
    silent = not y_peak > SILENCE_PEAK
    if silent:
        flags.append(FLAG_SILENT)
    beats = np.zeros(0, dtype=int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        if not silent:
            env = librosa.onset.onset_strength(S=full[:, :recipe.N_MELS].T, sr=sr)
            _, beats = librosa.beat.beat_track(onset_envelope=env, sr=sr,
                                               hop_length=recipe.HOP_LENGTH)
        if len(beats) == 0:
            beats = beat_grid(full.shape[0], sr)
            flags.append(FLAG_BEAT_FALLBACK)
        beat = librosa.util.sync(full.T, beats, aggregate=np.median)
    return np.ascontiguousarray(beat.T, dtype=np.float32), flags
