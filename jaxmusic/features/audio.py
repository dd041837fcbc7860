"""Reading audio as ``librosa.load`` does, and checking it (one clip at a time).

The file is decoded in blocks of at most :data:`BLOCK_SAMPLES` samples (frames x
channels), each block mixed down to mono and fed to a streaming soxr resampler, so
the memory a read takes is the mono output at the target rate(s) plus one block,
whatever the file's sample rate and channel count (a whole-file read of a 655 kHz
8-channel FLAC took 1.9 GB for 30 s). The output equals ``librosa.load``'s sample for
sample: the streaming resampler gives the one-shot one's samples, and the mix-down
is librosa's ``to_mono`` on each block.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from jaxmusic import recipe
from jaxmusic.data.lab import DatasetError

SAMPLE_RATE = recipe.SAMPLE_RATE
SILENCE_PEAK = 1e-6            # peak |sample| at or below this: flagged "silent"
RES_TYPE = "soxr_hq"           # librosa.load's default resampler
BLOCK_SAMPLES = 1 << 20        # samples (frames x channels) decoded at a time: 4 MiB of float32

# What soundfile/libsndfile decodes (MP3 needs libsndfile >= 1.1).
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff",
                    ".aifc", ".au", ".snd", ".w64", ".caf", ".rf64")
# Audio that libsndfile cannot decode: reported, never silently ignored.
UNDECODABLE_EXTENSIONS = (".m4a", ".mp4", ".aac", ".wma", ".webm", ".mka", ".ape", ".alac")

FLAG_SILENT = "silent"
FLAG_PADDED = "padded"
FLAG_TRUNCATED = "truncated"


class NonFiniteAudio(DatasetError):
    """The file decodes, but some of its samples are NaN or infinite."""


class AudioTooLong(DatasetError):
    """The file holds more frames than the reader was allowed to decode (``max_frames``)."""


class _Resampler:
    """One target rate: soxr's stream at librosa's quality, and the output so far."""

    def __init__(self, native_sr: int, sr: int):
        import soxr

        self.sr = sr
        self.stream = None if sr == native_sr else soxr.ResampleStream(native_sr, sr, 1, dtype="float32",
                                                                       quality="HQ")
        self.parts: list[np.ndarray] = []

    def feed(self, y: np.ndarray, last: bool = False) -> None:
        out = y if self.stream is None else self.stream.resample_chunk(y, last=last)
        if len(out):
            self.parts.append(np.ascontiguousarray(out, np.float32))

    def result(self, native_frames: int, native_sr: int) -> np.ndarray:
        """The output, cut or padded to ``librosa.resample``'s length (``ceil(n * ratio)``)."""
        y = np.concatenate(self.parts) if self.parts else np.zeros(0, np.float32)
        self.parts = []
        n = native_frames if self.stream is None else int(np.ceil(native_frames * float(self.sr) / native_sr))
        if len(y) < n:
            y = np.concatenate([y, np.zeros(n - len(y), np.float32)])
        return y[:n]


def decode_audio(path: str | os.PathLike, rates: Sequence[int] = (SAMPLE_RATE,), offset: float | None = None,
                 duration: float | None = None, *, max_frames: int | None = None
                 ) -> tuple[dict[int, np.ndarray], list[str]]:
    """``path`` decoded once and resampled to each of ``rates`` as :func:`load_audio`
    does for one: ``({rate: mono float32}, flags)`` (flags checked on the first rate's).

    ``max_frames``: the most native frames to decode; a file holding more is refused
    with :class:`AudioTooLong` as soon as decoding passes it (formats whose header gives
    no length are never read whole first)."""
    import librosa
    import soundfile as sf

    path = Path(path)
    flags: list[str] = []
    bad, first_bad, frames = 0, -1, 0
    try:
        with sf.SoundFile(str(path)) as f:
            native_sr, channels, declared = int(f.samplerate), int(f.channels), int(f.frames)
            start = int(offset * native_sr) if offset else 0
            if start:
                if start >= declared > 0:
                    raise DatasetError(f"offset {offset:g} s is past the end of the audio "
                                       f"({declared / native_sr:.3f} s)", file=path)
                f.seek(start)
            want = int(duration * native_sr) if duration is not None else -1
            resamplers = [_Resampler(native_sr, int(sr)) for sr in rates]
            block_frames = max(1, BLOCK_SAMPLES // channels)
            for block in f.blocks(blocksize=block_frames, frames=want, dtype="float32", always_2d=True):
                if max_frames is not None and frames + len(block) > max_frames:
                    raise AudioTooLong(f"more than {max_frames} frames ({max_frames / native_sr:.1f} s) of "
                                       "audio", file=path)
                finite = np.isfinite(block)
                if not finite.all():
                    if first_bad < 0:
                        first_bad = frames + int(np.argwhere(~finite)[0][0])
                    bad += int(block.size - finite.sum())
                frames += len(block)
                if not bad:   # after a bad sample, blocks are only counted
                    mono = librosa.to_mono(block.T) if channels > 1 else block[:, 0]
                    for r in resamplers:
                        r.feed(mono)
            for r in resamplers:
                r.feed(np.zeros(0, np.float32), last=True)
    except DatasetError:
        raise
    except Exception as e:  # soundfile.LibsndfileError, RuntimeError, TypeError, ...
        raise DatasetError(f"unreadable or corrupt audio ({type(e).__name__}: {e})",
                           file=path) from None
    if frames == 0:
        raise DatasetError("no audio samples (zero-length)", file=path)
    if bad:
        raise NonFiniteAudio(f"{bad} non-finite (NaN/inf) samples, first at "
                             f"{(start + first_bad) / native_sr:.3f} s", file=path)
    expected = max(declared - start, 0) if want < 0 else min(want, max(declared - start, 0))
    if frames < expected:
        flags.append(FLAG_TRUNCATED)
    out = {}
    for r in resamplers:
        y = r.result(frames, native_sr)
        if duration is not None:
            target = int(math.ceil(int(duration * native_sr) * r.sr / native_sr))
            if len(y) < target:
                y = np.concatenate([y, np.zeros(target - len(y), np.float32)])
                if r is resamplers[0]:
                    flags.append(FLAG_PADDED)
        out[r.sr] = y
    if not np.any(np.abs(out[resamplers[0].sr]) > SILENCE_PEAK):
        flags.append(FLAG_SILENT)
    return out, flags


def load_audio(path: str | os.PathLike, sr: int = SAMPLE_RATE, offset: float | None = None,
               duration: float | None = None, *, max_frames: int | None = None) -> tuple[np.ndarray, list[str]]:
    """Read ``path`` as ``librosa.load(path, sr=sr, offset=offset, duration=duration)``
    would (mono float32 at ``sr``), and check it.

    Any sample rate and channel count (channels are averaged), decoded in blocks
    (:func:`decode_audio`). Refuses with a :class:`DatasetError` naming the file:
    unreadable or corrupt, no samples (empty file, or ``offset`` past its end),
    non-finite samples (:class:`NonFiniteAudio`), more than ``max_frames`` native
    frames (:class:`AudioTooLong`). Returns ``(y, flags)``; flags: ``silent`` (peak at
    or below 1e-6), ``padded`` (shorter than ``duration``: zeros appended),
    ``truncated`` (fewer frames than the header promises).
    """
    audio, flags = decode_audio(path, (sr,), offset, duration, max_frames=max_frames)
    return audio[sr], flags


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
