"""The course recipe with librosa: mel, chroma_cqt and the beat-synchronised twin;
and the musicnn taggers' recipe (``--recipe musicnn``) with the same beat twin."""

from __future__ import annotations

import warnings

import numpy as np

from jaxmusic import recipe
from jaxmusic.data.lab import DatasetError
from jaxmusic.features.audio import FLAG_SILENT, SAMPLE_RATE, SILENCE_PEAK

N_FFT = recipe.N_FFT
HOP_LENGTH = recipe.HOP_LENGTH
N_MELS = recipe.N_MELS
FALLBACK_BPM = 120.0
FLAG_BEAT_FALLBACK = "beat_grid_fallback"
RECIPES = ("lab", "musicnn")


def beat_grid(n_frames: int, sr: int = SAMPLE_RATE, hop_length: int = HOP_LENGTH,
              bpm: float = FALLBACK_BPM) -> np.ndarray:
    """Frames of a fixed-tempo beat grid (the fallback when tracking finds none)."""
    step = 60.0 / bpm * sr / hop_length
    return np.round(np.arange(step, n_frames, step)).astype(int)


def extract(y: np.ndarray, sr: int = SAMPLE_RATE, fmax: float | None = None
            ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The course recipe on mono audio: ``(full (T, 140), beat (B, 140), flags)``.

    ``fmax``: the mel bands' upper edge (None: ``sr / 2``, the recipe's).

    ``full`` is mel dB (128) then chroma_cqt (12) per frame; ``beat`` the
    per-beat medians of ``full``. Flags: ``silent``, ``beat_grid_fallback``.
    """
    import librosa

    y, flags = _checked(y)
    with warnings.catch_warnings():
        # Short or silent clips make librosa warn (n_fft too large, empty
        # tuning set); the result is still the recipe's.
        warnings.simplefilter("ignore", UserWarning)
        mel = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=N_FFT, hop_length=HOP_LENGTH,
                                             n_mels=N_MELS, power=2.0, fmax=fmax)
        mel_db = librosa.power_to_db(mel, ref=np.max)
        chroma = librosa.feature.chroma_cqt(y=y, sr=sr, hop_length=HOP_LENGTH)
        n_frames = min(mel_db.shape[1], chroma.shape[1])
        fused = np.vstack([mel_db[:, :n_frames], chroma[:, :n_frames]]).astype(np.float32)
        return _with_beats(y, sr, HOP_LENGTH, fused, flags)


def extract_musicnn(y: np.ndarray, sr: int = recipe.MUSICNN_SAMPLE_RATE
                    ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The musicnn recipe of one clip at 16 kHz: ``(full (T, 96), beat (B, 96), flags)``.

    ``full`` is ``log10(10000 * melspectrogram(sr=16000, n_fft=512, hop_length=256,
    n_mels=96) + 1)`` per frame, the input of the pretrained musicnn taggers
    (:func:`jaxmusic.frontend.musicnn_input` computes the same in JAX); ``beat`` its
    per-beat medians (beats as in :func:`extract`, at hop 256).
    """
    import librosa

    y, flags = _checked(y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        mel = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=recipe.MUSICNN_N_FFT,
                                             hop_length=recipe.MUSICNN_HOP_LENGTH,
                                             n_mels=recipe.MUSICNN_BANDS)
        full = np.log10(10000.0 * mel + 1.0).astype(np.float32)
        return _with_beats(y, sr, recipe.MUSICNN_HOP_LENGTH, full, flags)


def _checked(y: np.ndarray) -> tuple[np.ndarray, list[str]]:
    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1 or y.size == 0:
        raise DatasetError(f"expected non-empty mono audio, got shape {y.shape}")
    if not np.all(np.isfinite(y)):
        raise DatasetError("audio has non-finite samples")
    return y, ([] if np.any(np.abs(y) > SILENCE_PEAK) else [FLAG_SILENT])


def _with_beats(y: np.ndarray, sr: int, hop: int, feats: np.ndarray, flags: list[str]):
    """``(feats.T, beat-synchronised feats.T, flags)``: HPSS, beats tracked on the
    percussive part, per-beat medians (a fixed 120 BPM grid when none are found)."""
    import librosa

    beats = np.zeros(0, dtype=int)
    if FLAG_SILENT not in flags:
        _, percussive = librosa.effects.hpss(y)
        _, beats = librosa.beat.beat_track(y=percussive, sr=sr, hop_length=hop)
    if len(beats) == 0:
        beats = beat_grid(feats.shape[1], sr, hop)
        flags.append(FLAG_BEAT_FALLBACK)
    beat = librosa.util.sync(feats, beats, aggregate=np.median)
    return (np.ascontiguousarray(feats.T), np.ascontiguousarray(beat.T, dtype=np.float32),
            flags)
