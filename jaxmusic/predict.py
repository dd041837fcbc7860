"""`jaxmusic predict SONG`: genre (and emotion) of an audio file from trained runs.

Needs only run directories (``config.json``, ``run.json``, ``checkpoints/``,
rebuilt by :class:`jaxmusic.runs.LoadedRun`): the label names, feature view,
length and the training set's feature statistics are in ``run.json``. The audio
is decoded, cut into 30 s windows (the lab's clip length; a last window shorter
than 10 s is dropped unless it is the only one), each window goes through the course's librosa recipe (``jaxmusic.features``), the
beat-synchronised or full-resolution view the run was trained on is fed to the
model, and the windows' probabilities (emotion values) are averaged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jaxmusic import features
from jaxmusic.metrics import softmax
from jaxmusic.runs import LoadedRun

WINDOW_S = 30.0
MIN_LAST_WINDOW_S = 10.0


def audio_windows(y: np.ndarray, sr: int) -> list[np.ndarray]:
    n = int(WINDOW_S * sr)
    windows = [y[i:i + n] for i in range(0, len(y), n)]
    if len(windows) > 1 and len(windows[-1]) < MIN_LAST_WINDOW_S * sr:
        windows.pop()
    return windows


def predict_audio(y: np.ndarray, sr: int, genre_run: LoadedRun | None, emotion_run: LoadedRun | None,
                  top_k: int = 3, flags: list[str] | None = None) -> dict:
    """Genre probabilities (top ``top_k``) and emotion values of decoded mono audio at
    the recipe's rate, averaged over 30 s windows; ``per_window`` holds each window's
    own (``start_s``, full genre probabilities, emotion values)."""
    flags = list(flags or [])
    extracted = []
    for w in audio_windows(y, sr):
        full, beat, w_flags = features.extract(w, sr)
        extracted.append((full, beat))
        flags += [f for f in w_flags if f not in flags]
    starts = [round(i * WINDOW_S, 3) for i in range(len(extracted))]
    result = {"duration_s": round(len(y) / sr, 3), "windows": len(extracted), "flags": flags,
              "genres": None, "emotion": None,
              "per_window": [{"start_s": s} for s in starts]}
    if genre_run is not None:
        probs = softmax(genre_run([genre_run.features(f, b) for f, b in extracted]))
        mean = probs.mean(0)
        names = genre_run.info["label_names"]
        result["genres"] = [{"label": names[i], "probability": round(float(mean[i]), 4)}
                            for i in np.argsort(-mean)[:top_k]]
        for row, p in zip(result["per_window"], probs):
            row["genres"] = {n: round(float(v), 4) for n, v in zip(names, p)}
    if emotion_run is not None:
        values = emotion_run([emotion_run.features(f, b) for f, b in extracted])
        names = emotion_run.info["label_names"]
        result["emotion"] = {n: round(float(v), 4) for n, v in zip(names, values.mean(0))}
        for row, v in zip(result["per_window"], values):
            row["emotion"] = {n: round(float(x), 4) for n, x in zip(names, v)}
    return result


def predict_file(path: str | Path, genre_run: LoadedRun | None, emotion_run: LoadedRun | None,
                 top_k: int = 3) -> dict:
    """:func:`predict_audio` of an audio file (decoded as the recipe loads audio)."""
    y, flags = features.load_audio(path)
    return {"file": str(path), **predict_audio(y, features.SAMPLE_RATE, genre_run, emotion_run,
                                               top_k, flags)}


def json_result(result: dict) -> dict:
    """What ``jaxmusic predict --json`` prints for one file."""
    return {k: result[k] for k in ("file", "genres", "emotion")}
