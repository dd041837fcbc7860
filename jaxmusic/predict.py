"""`jaxmusic predict SONG`: genre (and emotion) of an audio file from trained runs.

Needs only run directories (``config.json``, ``run.json``, ``checkpoints/``,
rebuilt by :class:`jaxmusic.runs.LoadedRun`): the label names, feature view,
length and the training set's feature statistics are in ``run.json``. The audio
is decoded, cut into 30 s windows (the lab's clip length; a last window shorter
than 10 s is dropped unless it is the only one), each window goes through the recipe the run's
features were made with (``jaxmusic.features``: the course's librosa recipe, or for a run
on the ``musicnn`` view the musicnn taggers' recipe on the audio at 16 kHz, as
``features --recipe musicnn`` makes them), the
beat-synchronised or full-resolution view the run was trained on is fed to the
model, and the windows' probabilities (emotion values) are averaged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jaxmusic import features, recipe
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


def recipe_of(run) -> str:
    """``"musicnn"`` for a run on the musicnn view (16 kHz, 96 bands), else ``"lab"``."""
    return "musicnn" if run.info["view"] == "musicnn" else "lab"


def musicnn_audio(y: np.ndarray, sr: int) -> np.ndarray:
    """``y`` at the musicnn recipe's 16 kHz (the resampler ``load_audio`` uses)."""
    import librosa

    if sr == recipe.MUSICNN_SAMPLE_RATE:
        return y
    return librosa.resample(np.asarray(y, np.float32), orig_sr=sr, target_sr=recipe.MUSICNN_SAMPLE_RATE,
                            res_type=features.RES_TYPE).astype(np.float32)


def predict_audio(y: np.ndarray, sr: int, genre_run: LoadedRun | None, emotion_run: LoadedRun | None,
                  top_k: int = 3, flags: list[str] | None = None, y_musicnn: np.ndarray | None = None) -> dict:
    """Genre probabilities (top ``top_k``) and emotion values of decoded mono audio at
    the recipe's rate, averaged over 30 s windows; ``per_window`` holds each window's
    own (``start_s``, full genre probabilities, emotion values). A run on the musicnn view
    reads the musicnn recipe of ``y_musicnn`` (the audio decoded at 16 kHz; by default
    ``y`` resampled to it)."""
    flags = list(flags or [])
    runs = [r for r in (genre_run, emotion_run) if r is not None]
    extracted: dict[str, list] = {}
    for name in dict.fromkeys(recipe_of(r) for r in runs) if runs else ["lab"]:
        if name == "musicnn":
            audio, rate, extract = (musicnn_audio(y, sr) if y_musicnn is None else y_musicnn,
                                    recipe.MUSICNN_SAMPLE_RATE, features.extract_musicnn)
        else:
            audio, rate, extract = y, sr, features.extract
        extracted[name] = []
        for w in audio_windows(audio, rate):
            full, beat, w_flags = extract(w, rate)
            extracted[name].append((full, beat))
            flags += [f for f in w_flags if f not in flags]
    count = min(len(v) for v in extracted.values())   # 22050 and 16 kHz windows: the same cut
    starts = [round(i * WINDOW_S, 3) for i in range(count)]
    result = {"duration_s": round(len(y) / sr, 3), "windows": count, "flags": flags,
              "genres": None, "emotion": None,
              "per_window": [{"start_s": s} for s in starts]}

    def inputs(run):
        return [run.features(f, b) for f, b in extracted[recipe_of(run)][:count]]

    if genre_run is not None:
        probs = softmax(genre_run(inputs(genre_run)))
        mean = probs.mean(0)
        names = genre_run.info["label_names"]
        result["genres"] = [{"label": names[i], "probability": round(float(mean[i]), 4)}
                            for i in np.argsort(-mean)[:top_k]]
        for row, p in zip(result["per_window"], probs):
            row["genres"] = {n: round(float(v), 4) for n, v in zip(names, p)}
    if emotion_run is not None:
        values = emotion_run(inputs(emotion_run))
        names = emotion_run.info["label_names"]
        result["emotion"] = {n: round(float(v), 4) for n, v in zip(names, values.mean(0))}
        for row, v in zip(result["per_window"], values):
            row["emotion"] = {n: round(float(x), 4) for n, x in zip(names, v)}
    return result


def predict_file(path: str | Path, genre_run: LoadedRun | None, emotion_run: LoadedRun | None,
                 top_k: int = 3) -> dict:
    """:func:`predict_audio` of an audio file (decoded as the recipe loads audio)."""
    y, flags = features.load_audio(path)
    y_musicnn = None
    if any(r is not None and recipe_of(r) == "musicnn" for r in (genre_run, emotion_run)):
        y_musicnn, _ = features.load_audio(path, sr=recipe.MUSICNN_SAMPLE_RATE)   # as `features --recipe musicnn`
    return {"file": str(path), **predict_audio(y, features.SAMPLE_RATE, genre_run, emotion_run,
                                               top_k, flags, y_musicnn)}


def json_result(result: dict) -> dict:
    """What ``jaxmusic predict --json`` prints for one file."""
    return {k: result[k] for k in ("file", "genres", "emotion")}
