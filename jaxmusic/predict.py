"""`jaxmusic predict SONG`: genre (and emotion) of an audio file from trained runs.

Needs only run directories (``config.json``, ``run.json``, ``checkpoints/``): the
label names, feature view, length and the training set's feature statistics are
in ``run.json``. The audio is decoded, cut into 30 s windows (the lab's clip
length; a last window shorter than 10 s is dropped unless it is the only one),
each window goes through the course's librosa recipe (``jaxmusic.features``), the
beat-synchronised or full-resolution view the run was trained on is fed to the
model, and the windows' probabilities (emotion values) are averaged.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxmusic import checkpoint, tasks
from jaxmusic.config import read_config
from jaxmusic.data import lab

WINDOW_S = 30.0
MIN_LAST_WINDOW_S = 10.0


class LoadedRun:
    """A trained model ready for inference, rebuilt from its run directory."""

    def __init__(self, workdir: str | Path):
        from jaxmusic.train import make_model

        workdir = Path(workdir)
        for name in ("config.json", "run.json"):
            if not (workdir / name).exists():
                raise FileNotFoundError(f"{workdir}: no {name} (not a trained jaxmusic run)")
        self.config = read_config(workdir / "config.json")
        self.info = json.loads((workdir / "run.json").read_text())
        self.config.train.class_weights = False  # a training-only setting
        self.task = tasks.make_task(self.config, self.info["label_names"])
        self.model = make_model(self.config, self.task, self.info["num_features"],
                                self.info["max_length"])
        self.variables, _ = checkpoint.load_variables(workdir, "best")
        self._apply = jax.jit(lambda v, x, n: self.model.apply(v, x, n, train=False)["output"])

    def features(self, full: np.ndarray, beat: np.ndarray) -> np.ndarray:
        """The run's view of one window, standardised as in training."""
        lo, hi = lab.VIEWS[self.info["view"]]
        x = (beat if self.info["beat"] else full)[:, lo:hi]
        if self.info["normalize"]:
            std = np.asarray(self.info["feature_std"], np.float32)
            x = (x - np.asarray(self.info["feature_mean"], np.float32)) / np.where(std > 1e-6, std, 1)
        return x[: self.info["max_length"]].astype(np.float32)

    def __call__(self, windows: list[np.ndarray]) -> np.ndarray:
        t = self.info["max_length"]
        batch = np.zeros((len(windows), t, self.info["num_features"]), np.float32)
        lengths = np.zeros(len(windows), np.int32)
        for i, w in enumerate(windows):
            batch[i, : len(w)] = w
            lengths[i] = len(w)
        return np.asarray(self._apply(self.variables, jnp.asarray(batch), jnp.asarray(lengths)))


def audio_windows(y: np.ndarray, sr: int) -> list[np.ndarray]:
    n = int(WINDOW_S * sr)
    windows = [y[i:i + n] for i in range(0, len(y), n)]
    if len(windows) > 1 and len(windows[-1]) < MIN_LAST_WINDOW_S * sr:
        windows.pop()
    return windows


def predict_file(path: str | Path, genre_run: LoadedRun | None, emotion_run: LoadedRun | None,
                 top_k: int = 3) -> dict:
    from jaxmusic import features

    y, flags = features.load_audio(path)
    sr = features.SAMPLE_RATE
    extracted = []
    for w in audio_windows(y, sr):
        full, beat, w_flags = features.extract(w, sr)
        extracted.append((full, beat))
        flags += [f for f in w_flags if f not in flags]
    result = {"file": str(path), "duration_s": round(len(y) / sr, 3), "windows": len(extracted),
              "flags": flags, "genres": None, "emotion": None}
    if genre_run is not None:
        logits = genre_run([genre_run.features(f, b) for f, b in extracted])
        probs = np.asarray(jax.nn.softmax(logits, axis=-1)).mean(0)
        order = np.argsort(-probs)[:top_k]
        result["genres"] = [{"label": genre_run.info["label_names"][i],
                             "probability": round(float(probs[i]), 4)} for i in order]
    if emotion_run is not None:
        values = emotion_run([emotion_run.features(f, b) for f, b in extracted]).mean(0)
        result["emotion"] = {n: round(float(v), 4)
                             for n, v in zip(emotion_run.info["label_names"], values)}
    return result


def add_arguments(parser) -> None:
    parser.add_argument("audio", nargs="+", help="audio files (WAV, FLAC, OGG, MP3 where "
                        "the system's libsndfile decodes it)")
    parser.add_argument("--workdir", help="a genre run directory")
    parser.add_argument("--emotion-workdir", help="an emotion (regression/multitask) run directory")
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="one JSON object per file")


def run(args) -> int:
    if not args.workdir and not args.emotion_workdir:
        raise SystemExit("jaxmusic predict: give --workdir (genre) and/or --emotion-workdir")
    genre = LoadedRun(args.workdir) if args.workdir else None
    if genre is not None and genre.task.data_kind != "genre":
        genre, emotion_dir = None, args.workdir  # an emotion run given as --workdir
    else:
        emotion_dir = args.emotion_workdir
    emotion = LoadedRun(emotion_dir) if emotion_dir else None
    status = 0
    for path in args.audio:
        try:
            result = predict_file(path, genre, emotion, args.top_k)
        except lab.DatasetError as e:
            print(f"jaxmusic predict: error: {e}", flush=True)
            status = 2
            continue
        if args.json:
            print(json.dumps({k: result[k] for k in ("file", "genres", "emotion")}))
            continue
        print(f"{result['file']} ({result['duration_s']:.1f} s, {result['windows']} window(s)"
              + (f"; {', '.join(result['flags'])}" if result["flags"] else "") + ")")
        for g in result["genres"] or []:
            print(f"  {g['label']:<12} {g['probability']:.3f}")
        if result["emotion"]:
            print("  " + ", ".join(f"{k} {v:.3f}" for k, v in result["emotion"].items()))
    return status
