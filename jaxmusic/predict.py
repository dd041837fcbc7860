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

import dataclasses
from pathlib import Path
from typing import Callable

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


def lab_picture(full: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    """The course recipe's features as a picture: the 128 mel dB rows, each window's
    ``power_to_db(ref=max)`` over its ``top_db`` range ``[-80, 0]``."""
    return full[:, :recipe.N_MELS], (-recipe.TOP_DB, 0.0)


def musicnn_picture(full: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    """The musicnn recipe's features as a picture: all 96 bands of ``log10(1 + 10000 x mel
    power)``, over ``[0, the clip's maximum]`` (the values have no fixed top)."""
    return full, (0.0, max(float(full.max(initial=0.0)), 1e-6))


@dataclasses.dataclass(frozen=True)
class WindowRecipe:
    """What a run's recipe needs of the audio and how its features are drawn and timed:
    the sample rate its audio is decoded at, the samples per feature frame, the feature
    function (``(full, beat, flags)`` of a window) and the picture function (``(T, F)``
    full features -> ``(values (T, bands), (low, high))``, ``unit``)."""

    rate: int
    hop: int
    extract: Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray, list[str]]]
    picture: Callable[[np.ndarray], tuple[np.ndarray, tuple[float, float]]]
    unit: str

    @property
    def frame_s(self) -> float:
        return self.hop / self.rate


RECIPES = {
    "lab": WindowRecipe(recipe.SAMPLE_RATE, recipe.HOP_LENGTH, features.extract, lab_picture,
                        "mel dB below the window's peak"),
    "musicnn": WindowRecipe(recipe.MUSICNN_SAMPLE_RATE, recipe.MUSICNN_HOP_LENGTH, features.extract_musicnn,
                            musicnn_picture, "musicnn mel, log10(1 + 10000 x power)"),
}


def recipe_of(run) -> str:
    """``"musicnn"`` for a run on the musicnn view (16 kHz, 96 bands), else ``"lab"``."""
    return "musicnn" if run.info["view"] == "musicnn" else "lab"


def rates_of(*runs) -> tuple[int, ...]:
    """The sample rates the runs' recipes read (the first run's first; ``lab``'s with no run)."""
    names = dict.fromkeys(recipe_of(r) for r in runs if r is not None) or {"lab": None}
    return tuple(RECIPES[n].rate for n in names)


def predict_audio(audio: dict[int, np.ndarray], genre_run: LoadedRun | None, emotion_run: LoadedRun | None,
                  top_k: int = 3, flags: list[str] | None = None) -> dict:
    """Genre probabilities (top ``top_k``) and emotion values of decoded mono audio,
    averaged over 30 s windows; ``per_window`` holds each window's own (``start_s``, full
    genre probabilities, emotion values). ``audio`` maps each rate of :func:`rates_of`
    to the song decoded at it (:func:`jaxmusic.features.decode_audio`): each run reads
    its recipe (:data:`RECIPES`) of the audio at its recipe's rate, as ``jaxmusic
    features`` made its training set."""
    flags = list(flags or [])
    runs = [r for r in (genre_run, emotion_run) if r is not None]
    extracted: dict[str, list] = {}
    for name in dict.fromkeys(recipe_of(r) for r in runs) if runs else ["lab"]:
        spec = RECIPES[name]
        if spec.rate not in audio:
            raise ValueError(f"the {name} recipe reads audio at {spec.rate} Hz; given {sorted(audio)}")
        extracted[name] = []
        for w in audio_windows(audio[spec.rate], spec.rate):
            full, beat, w_flags = spec.extract(w, spec.rate)
            extracted[name].append((full, beat))
            flags += [f for f in w_flags if f not in flags]
    count = min(len(v) for v in extracted.values())   # 22050 and 16 kHz windows: the same cut
    starts = [round(i * WINDOW_S, 3) for i in range(count)]
    first = RECIPES[next(iter(extracted))].rate
    result = {"duration_s": round(len(audio[first]) / first, 3), "windows": count, "flags": flags,
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
    """:func:`predict_audio` of an audio file, decoded once at each rate the runs' recipes
    read (as ``jaxmusic features`` decodes: at 16 kHz for the musicnn recipe)."""
    audio, flags = features.decode_audio(path, rates_of(genre_run, emotion_run))
    return {"file": str(path), **predict_audio(audio, genre_run, emotion_run, top_k, flags)}


def json_result(result: dict) -> dict:
    """What ``jaxmusic predict --json`` prints for one file."""
    return {k: result[k] for k in ("file", "genres", "emotion")}
