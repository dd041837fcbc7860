"""Reading audio as ``librosa.load`` does, and checking it (one clip at a time)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from jaxmusic import recipe
from jaxmusic.data.lab import DatasetError

SAMPLE_RATE = recipe.SAMPLE_RATE
SILENCE_PEAK = 1e-6            # peak |sample| at or below this: flagged "silent"
RES_TYPE = "soxr_hq"           # librosa.load's default resampler

# What soundfile/libsndfile decodes (MP3 needs libsndfile >= 1.1).
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff",
                    ".aifc", ".au", ".snd", ".w64", ".caf", ".rf64")
# Audio that libsndfile cannot decode: reported, never silently ignored.
UNDECODABLE_EXTENSIONS = (".m4a", ".mp4", ".aac", ".wma", ".webm", ".mka", ".ape", ".alac")

FLAG_SILENT = "silent"
FLAG_PADDED = "padded"
FLAG_TRUNCATED = "truncated"


def load_audio(path: str | os.PathLike, sr: int = SAMPLE_RATE, offset: float | None = None,
               duration: float | None = None) -> tuple[np.ndarray, list[str]]:
    """Read ``path`` as ``librosa.load(path, sr=sr, offset=offset, duration=duration)``
    would (mono float32 at ``sr``), and check it.

    Any sample rate and channel count (channels are averaged). Refuses with a
    :class:`DatasetError` naming the file: unreadable or corrupt, no samples
    (empty file, or ``offset`` past its end), non-finite samples. Returns
    ``(y, flags)``; flags: ``silent`` (peak at or below 1e-6), ``padded``
    (shorter than ``duration``: zeros appended), ``truncated`` (fewer frames
    than the header promises).
    """
    import soundfile as sf
    import librosa

    path = Path(path)
    flags: list[str] = []
    try:
        with sf.SoundFile(str(path)) as f:
            native_sr = int(f.samplerate)
            declared = int(f.frames)
            start = int(offset * native_sr) if offset else 0
            if start:
                if start >= declared > 0:
                    raise DatasetError(f"offset {offset:g} s is past the end of the audio "
                                       f"({declared / native_sr:.3f} s)", file=path)
                f.seek(start)
            want = int(duration * native_sr) if duration is not None else -1
            y = f.read(frames=want, dtype="float32", always_2d=True)
    except DatasetError:
        raise
    except Exception as e:  # soundfile.LibsndfileError, RuntimeError, TypeError, ...
        raise DatasetError(f"unreadable or corrupt audio ({type(e).__name__}: {e})",
                           file=path) from None
    if y.shape[0] == 0:
        raise DatasetError("no audio samples (zero-length)", file=path)
    expected = max(declared - start, 0) if want < 0 else min(want, max(declared - start, 0))
    if y.shape[0] < expected:
        flags.append(FLAG_TRUNCATED)
    bad = ~np.isfinite(y)
    if bad.any():
        first = int(np.argwhere(bad)[0][0])
        raise DatasetError(f"{int(bad.sum())} non-finite (NaN/inf) samples, first at "
                           f"{(start + first) / native_sr:.3f} s", file=path)
    y = librosa.to_mono(np.ascontiguousarray(y.T)) if y.shape[1] > 1 else y[:, 0]
    y = librosa.resample(y, orig_sr=native_sr, target_sr=sr, res_type=RES_TYPE)
    y = np.ascontiguousarray(y, dtype=np.float32)
    if duration is not None:
        target = int(math.ceil(int(duration * native_sr) * sr / native_sr))
        if y.shape[0] < target:
            y = np.concatenate([y, np.zeros(target - y.shape[0], np.float32)])
            flags.append(FLAG_PADDED)
    if not np.any(np.abs(y) > SILENCE_PEAK):
        flags.append(FLAG_SILENT)
    return y, flags


def audio_seconds(path: str | os.PathLike) -> float:
    """Duration from the file header (refuses unreadable files like :func:`load_audio`)."""
    import soundfile as sf
    try:
        info = sf.info(str(path))
    except Exception as e:
        raise DatasetError(f"unreadable or corrupt audio ({type(e).__name__}: {e})",
                           file=path) from None
    if info.frames <= 0 or info.samplerate <= 0:
        raise DatasetError("no audio samples (zero-length)", file=path)
    return info.frames / info.samplerate

