"""One uploaded file, checked and classified: what ``POST /api/predict`` computes.

Checks come first and each refusal is a :class:`RequestError` (an HTTP status and
a one-line message naming the file): the extension is one libsndfile cannot
decode (415), the bytes are not audio (415), the header declares more than
``max_seconds`` (413, before anything is decoded), the file holds less than its
header promises or its data stops decoding part way (truncated, 422), there are
no samples (400), or the audio is silent (422: nothing to classify). Then the audio goes
through :func:`jaxmusic.predict.predict_audio` with batched runs, which is the
same code ``jaxmusic predict`` runs, so the answer is the command line's.

With ``spectrogram`` the result carries the clip's mel spectrogram as the model
saw it (the recipe's mel dB, ``power_to_db(ref=max)`` per 30 s window) for the
page to draw: time averaged down to at most :data:`SPECTROGRAM_COLUMNS` columns,
quantised to bytes over ``[-80, 0]`` dB, base64.
"""

from __future__ import annotations

import base64
import dataclasses
from pathlib import Path

import numpy as np

from jaxmusic import features, predict, recipe
from jaxmusic.data.lab import DatasetError
from jaxmusic.serve.batching import BatchedRun

SPECTROGRAM_COLUMNS = 800
DB_RANGE = (-80.0, 0.0)  # power_to_db's default top_db below the clip's maximum


class RequestError(Exception):
    """A request the server refuses: ``status`` (4xx) and a one-line ``message``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = int(status)
        self.message = message


@dataclasses.dataclass(frozen=True)
class Limits:
    max_bytes: int = 50 * 1024 * 1024
    max_seconds: float = 20 * 60.0

    def describe(self) -> dict:
        return {"max_mb": round(self.max_bytes / 2**20, 3), "max_minutes": round(self.max_seconds / 60, 3)}


class _MelRecorder(BatchedRun):
    """A batched run that also keeps the full-resolution mel of every window it is shown."""

    def __init__(self, run: BatchedRun):
        super().__init__(run.batcher)
        self.mel: list[np.ndarray] = []

    def features(self, full: np.ndarray, beat: np.ndarray) -> np.ndarray:
        self.mel.append(np.asarray(full[:, : recipe.N_MELS], np.float32))
        return super().features(full, beat)


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.1f} s"


def wav_declared_seconds(path: str | Path) -> tuple[float, float] | None:
    """``(declared, present)`` seconds of a RIFF/WAVE file's ``data`` chunk when the file
    is shorter than the chunk's declared size (a cut-off download), else ``None``.

    libsndfile quietly reads what is there, so a truncated WAV would otherwise pass."""
    import struct

    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        rate = block = 0
        while True:
            chunk = f.read(8)
            if len(chunk) < 8:
                return None
            kind, length = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            start = f.tell()
            if kind == b"fmt " and length >= 16:
                fmt = f.read(16)
                rate, block = struct.unpack("<I", fmt[4:8])[0], struct.unpack("<H", fmt[12:14])[0]
            elif kind == b"data":
                if length in (0, 0xFFFFFFFF) or not rate or not block:
                    return None  # streamed WAV (size unknown) or no format yet
                present = size - start
                if present >= length:
                    return None
                return length / block / rate, present // block / rate
            f.seek(start + length + (length & 1))


def load_checked(path: str | Path, name: str, limits: Limits) -> tuple[np.ndarray, list[str]]:
    """Decode ``path`` (the upload, saved) as the recipe loads audio, refusing bad input."""
    import soundfile as sf

    suffix = Path(name).suffix.lower()
    if suffix in features.UNDECODABLE_EXTENSIONS:
        raise RequestError(415, f"{name}: {suffix} files cannot be decoded here; "
                                "send WAV, FLAC, OGG or MP3")
    try:
        info = sf.info(str(path))
    except Exception:
        raise RequestError(415, f"{name}: not an audio file this server can decode "
                                "(WAV, FLAC, OGG, MP3)") from None
    if info.frames > 0 and info.samplerate > 0 and info.frames / info.samplerate > limits.max_seconds:
        raise RequestError(413, f"{name}: {_minutes(info.frames / info.samplerate)} of audio is over the "
                                f"{_minutes(limits.max_seconds)} limit (--max-minutes)")
    cut = wav_declared_seconds(path)
    if cut is not None:
        raise RequestError(422, f"{name}: truncated file: it holds {cut[1]:.2f} s of the "
                                f"{cut[0]:.2f} s its header declares")
    try:
        y, flags = features.load_audio(path)
    except DatasetError as e:
        if e.reason.startswith("unreadable") and info.frames > 0:  # the header was fine, the data is not
            raise RequestError(422, f"{name}: truncated or corrupt: the header declares "
                                    f"{info.frames / info.samplerate:.2f} s of {info.format} audio, "
                                    f"but decoding failed ({e.reason})") from None
        status = 415 if e.reason.startswith("unreadable") else 400
        raise RequestError(status, f"{name}: {e.reason}") from None
    seconds = len(y) / features.SAMPLE_RATE
    if seconds > limits.max_seconds:  # formats whose header gives no length
        raise RequestError(413, f"{name}: {_minutes(seconds)} of audio is over the "
                                f"{_minutes(limits.max_seconds)} limit (--max-minutes)")
    if features.FLAG_TRUNCATED in flags:
        declared = info.frames / info.samplerate if info.samplerate else 0.0
        raise RequestError(422, f"{name}: truncated file: it holds {seconds:.2f} s of the "
                                f"{declared:.2f} s its header declares")
    if features.FLAG_SILENT in flags:
        raise RequestError(422, f"{name}: the audio is silent (peak at or below "
                                f"{features.SILENCE_PEAK:g}): nothing to classify")
    return y, flags


def spectrogram_picture(mel: list[np.ndarray]) -> dict:
    """The clip's mel dB ``(T, 128)`` as bytes for the page (see the module docstring)."""
    x = np.concatenate(mel, axis=0) if mel else np.zeros((0, recipe.N_MELS), np.float32)
    block = max(1, -(-len(x) // SPECTROGRAM_COLUMNS))
    frames = len(x) // block * block
    if frames == 0 and len(x):
        frames, block = len(x), len(x)
    pooled = x[:frames].reshape(-1, block, x.shape[1]).mean(axis=1) if frames else x
    lo, hi = DB_RANGE
    q = np.round((np.clip(pooled, lo, hi) - lo) / (hi - lo) * 255).astype(np.uint8)
    return {"frames": int(q.shape[0]), "bins": int(q.shape[1]),
            "seconds_per_frame": block * recipe.HOP_LENGTH / recipe.SAMPLE_RATE,
            "db_range": list(DB_RANGE), "data": base64.b64encode(q.tobytes()).decode("ascii")}


def analyse(path: str | Path, name: str, genre: BatchedRun, emotion: BatchedRun | None,
            limits: Limits, top_k: int = 3, spectrogram: bool = False) -> dict:
    """Check, decode and classify one saved upload (runs in a worker thread).

    Returns the ``jaxmusic predict`` result (``file`` is the upload's name) and,
    with ``spectrogram``, the picture of :func:`spectrogram_picture`."""
    y, flags = load_checked(path, name, limits)
    recorder = _MelRecorder(genre)
    result = {"file": name, **predict.predict_audio(y, features.SAMPLE_RATE, recorder, emotion, top_k, flags)}
    if spectrogram:
        result["spectrogram"] = spectrogram_picture(recorder.mel)
    return result


def warm_up(genre: BatchedRun, emotion: BatchedRun | None) -> None:
    """Run the whole path once on 3 s of synthetic audio (a pulsed tone over noise), so
    librosa's caches and numba's compilations happen at start, not in a request."""
    sr = features.SAMPLE_RATE
    t = np.arange(3 * sr) / sr
    pulse = (np.sin(2 * np.pi * 2 * t) > 0).astype(np.float64)
    noise = np.random.default_rng(0).standard_normal(t.size)
    y = (0.3 * np.sin(2 * np.pi * 220 * t) * pulse + 0.01 * noise).astype(np.float32)
    predict.predict_audio(y, sr, genre, emotion, 1)

