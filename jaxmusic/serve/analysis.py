"""One uploaded file, checked and classified: what ``POST /api/predict`` computes.

Checks come first and each refusal is a :class:`RequestError` (an HTTP status and
a one-line message naming the file): the extension is one libsndfile cannot
decode (415), the bytes are not audio (415), the header declares more than
``max_seconds`` or more samples per second (rate x channels) than
``max_samples_per_second`` (413, before anything is decoded), the file holds less
than its header promises or its data stops decoding part way (truncated, 422),
there are no samples (400), the samples are not all finite (422), or the audio is
silent (422: nothing to classify). Decoding is in blocks and stops as soon as it
passes ``max_seconds`` (:func:`jaxmusic.features.decode_audio`), so a request's
memory is its mono audio at the recipes' rates plus one block, whatever the header
says. Then the audio goes through :func:`jaxmusic.predict.predict_audio` with batched
runs, decoded at the rates the runs' recipes read, which is the same code
``jaxmusic predict`` runs, so the answer is the command line's.

With ``spectrogram`` the result carries the clip's features as the model saw them,
drawn as the model's recipe says (:data:`jaxmusic.predict.RECIPES`: the lab recipe's
128 mel dB rows over ``[-80, 0]``, the musicnn recipe's 96 bands over ``[0, max]``):
time averaged down to at most :data:`SPECTROGRAM_COLUMNS` columns, quantised to
bytes over the range, base64, with the seconds each column covers.
"""

from __future__ import annotations

import base64
import dataclasses
from pathlib import Path

import numpy as np

from jaxmusic import features, predict
from jaxmusic.data.lab import DatasetError
from jaxmusic.serve.batching import BatchedRun

SPECTROGRAM_COLUMNS = 800
# WAV data sizes that mean "length unknown" (written by streaming writers): 0, and
# from 0x7FFFF000 (SoX writing to a pipe) up to 0xFFFFFFFF. libsndfile reads such
# files to their end.
STREAMED_WAV_SIZES = (0, 0x7FFFF000)


class RequestError(Exception):
    """A request the server refuses: ``status`` (4xx) and a one-line ``message``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = int(status)
        self.message = message


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one request may hold: upload bytes, audio seconds, samples per second of
    audio to decode (sample rate x channels: 2 channels at 192 kHz, 8 at 48 kHz), and
    how many requests may be admitted at once (being read, waiting or analysed)."""

    max_bytes: int = 50 * 1024 * 1024
    max_seconds: float = 20 * 60.0
    max_samples_per_second: int = 384_000
    max_queue: int = 64

    def describe(self) -> dict:
        return {"max_mb": round(self.max_bytes / 2**20, 3), "max_minutes": round(self.max_seconds / 60, 3),
                "max_samples_per_second": self.max_samples_per_second, "max_queue": self.max_queue}


class _FeatureRecorder(BatchedRun):
    """A batched run that also keeps the full-resolution features of every window it is shown."""

    def __init__(self, run: BatchedRun):
        super().__init__(run.batcher)
        self.full: list[np.ndarray] = []

    def features(self, full: np.ndarray, beat: np.ndarray) -> np.ndarray:
        self.full.append(np.asarray(full, np.float32))
        return super().features(full, beat)


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.1f} s"


def wav_declared_seconds(path: str | Path) -> tuple[float, float] | None:
    """``(declared, present)`` seconds of a RIFF/WAVE file's ``data`` chunk when the file
    is shorter than the chunk's declared size (a cut-off download), else ``None``.

    libsndfile quietly reads what is there, so a truncated WAV would otherwise pass. A
    size of :data:`STREAMED_WAV_SIZES` (0, or 0x7FFFF000 and up: a streaming writer's
    placeholder) declares no length: such a file is judged by what libsndfile reads."""
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
                if length == STREAMED_WAV_SIZES[0] or length >= STREAMED_WAV_SIZES[1] or not rate or not block:
                    return None  # streamed WAV (size unknown) or no format yet
                present = size - start
                if present >= length:
                    return None
                return length / block / rate, present // block / rate
            f.seek(start + length + (length & 1))


def load_checked(path: str | Path, name: str, limits: Limits,
                 rates: tuple[int, ...] = (features.SAMPLE_RATE,)) -> tuple[dict[int, np.ndarray], list[str]]:
    """Decode ``path`` (the upload, saved) at each of ``rates`` as the recipes load audio,
    refusing bad input: ``({rate: mono float32}, flags)``."""
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
    too_long = (f"{name}: {{}} of audio is over the {_minutes(limits.max_seconds)} limit (--max-minutes)")
    flow = int(info.samplerate) * int(info.channels)
    if flow > limits.max_samples_per_second:
        raise RequestError(413, f"{name}: {info.channels} channel(s) at {info.samplerate} Hz is {flow:,} samples "
                                f"per second of audio, over the {limits.max_samples_per_second:,} this server "
                                "decodes (e.g. stereo at 192 kHz)")
    if info.frames > 0 and info.samplerate > 0 and info.frames / info.samplerate > limits.max_seconds:
        raise RequestError(413, too_long.format(_minutes(info.frames / info.samplerate)))
    cut = wav_declared_seconds(path)
    if cut is not None:
        raise RequestError(422, f"{name}: truncated file: it holds {cut[1]:.2f} s of the "
                                f"{cut[0]:.2f} s its header declares")
    try:
        audio, flags = features.decode_audio(path, rates, max_frames=int(limits.max_seconds * info.samplerate))
    except features.AudioTooLong:   # formats whose header gives no length
        raise RequestError(413, too_long.format(f"more than {_minutes(limits.max_seconds)}")) from None
    except features.NonFiniteAudio as e:
        raise RequestError(422, f"{name}: the audio has {e.reason}: nothing to classify") from None
    except DatasetError as e:
        if e.reason.startswith("unreadable") and info.frames > 0:  # the header was fine, the data is not
            raise RequestError(422, f"{name}: truncated or corrupt: the header declares "
                                    f"{info.frames / info.samplerate:.2f} s of {info.format} audio, "
                                    f"but decoding failed ({e.reason})") from None
        status = 415 if e.reason.startswith("unreadable") else 400
        raise RequestError(status, f"{name}: {e.reason}") from None
    if features.FLAG_TRUNCATED in flags:
        seconds = len(audio[rates[0]]) / rates[0]
        declared = info.frames / info.samplerate if info.samplerate else 0.0
        raise RequestError(422, f"{name}: truncated file: it holds {seconds:.2f} s of the "
                                f"{declared:.2f} s its header declares")
    if features.FLAG_SILENT in flags:
        raise RequestError(422, f"{name}: the audio is silent (peak at or below "
                                f"{features.SILENCE_PEAK:g}): nothing to classify")
    return audio, flags


def spectrogram_picture(full: list[np.ndarray], spec: predict.WindowRecipe) -> dict:
    """The clip's features ``full`` (one ``(T, F)`` array per window) drawn as ``spec``
    says, as bytes for the page (see the module docstring)."""
    x = np.concatenate(full, axis=0) if full else np.zeros((0, 1), np.float32)
    x, (lo, hi) = spec.picture(x)
    block = max(1, -(-len(x) // SPECTROGRAM_COLUMNS))
    frames = len(x) // block * block
    if frames == 0 and len(x):
        frames, block = len(x), len(x)
    pooled = x[:frames].reshape(-1, block, x.shape[1]).mean(axis=1) if frames else x
    q = np.round((np.clip(pooled, lo, hi) - lo) / (hi - lo) * 255).astype(np.uint8)
    return {"frames": int(q.shape[0]), "bins": int(q.shape[1]), "seconds_per_frame": block * spec.frame_s,
            "range": [float(lo), float(hi)], "unit": spec.unit,
            "data": base64.b64encode(q.tobytes()).decode("ascii")}


def analyse(path: str | Path, name: str, genre: BatchedRun, emotion: BatchedRun | None,
            limits: Limits, top_k: int = 3, spectrogram: bool = False) -> dict:
    """Check, decode and classify one saved upload (runs in a worker thread).

    Returns the ``jaxmusic predict`` result (``file`` is the upload's name) and,
    with ``spectrogram``, the picture of :func:`spectrogram_picture`."""
    audio, flags = load_checked(path, name, limits, predict.rates_of(genre, emotion))
    run = _FeatureRecorder(genre) if spectrogram else genre
    result = {"file": name, **predict.predict_audio(audio, run, emotion, top_k, flags)}
    if spectrogram:
        result["spectrogram"] = spectrogram_picture(run.full, predict.RECIPES[predict.recipe_of(genre)])
    return result


def warm_up(genre: BatchedRun, emotion: BatchedRun | None) -> None:
    """Run the whole path once on 3 s of synthetic audio (a pulsed tone over noise), so
    librosa's caches and numba's compilations happen at start, not in a request."""
    audio = {}
    for sr in predict.rates_of(genre, emotion):
        t = np.arange(3 * sr) / sr
        pulse = (np.sin(2 * np.pi * 2 * t) > 0).astype(np.float64)
        noise = np.random.default_rng(0).standard_normal(t.size)
        audio[sr] = (0.3 * np.sin(2 * np.pi * 220 * t) * pulse + 0.01 * noise).astype(np.float32)
    predict.predict_audio(audio, genre, emotion, 1)

