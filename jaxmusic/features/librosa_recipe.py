"""The course recipe with librosa: mel, chroma_cqt and the beat-synchronised twin."""

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

    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1 or y.size == 0:
        raise DatasetError(f"expected non-empty mono audio, got shape {y.shape}")
    if not np.all(np.isfinite(y)):
        raise DatasetError("audio has non-finite samples")
    flags: list[str] = []
    silent = not np.any(np.abs(y) > SILENCE_PEAK)
    if silent:
        flags.append(FLAG_SILENT)
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
        beats = np.zeros(0, dtype=int)
        if not silent:
            _, percussive = librosa.effects.hpss(y)
            _, beats = librosa.beat.beat_track(y=percussive, sr=sr, hop_length=HOP_LENGTH)
        if len(beats) == 0:
            beats = beat_grid(n_frames, sr)
            flags.append(FLAG_BEAT_FALLBACK)
        beat = librosa.util.sync(fused, beats, aggregate=np.median)
    return (np.ascontiguousarray(fused.T), np.ascontiguousarray(beat.T, dtype=np.float32),
            flags)

