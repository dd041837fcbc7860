"""`jaxmusic predict` on synthesised audio, from run directories alone."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from jaxmusic import predict
from jaxmusic.runs import LoadedRun
from jaxmusic.data import lab
from jaxmusic.train import train
from tests import audio_fixtures as af
from tests.test_train import REPO, tiny


@pytest.fixture(scope="module")
def runs(tiny_prepared, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    train(tiny("lstm", tiny_prepared, **{"train.epochs": 1}), root / "genre", progress=False)
    train(tiny("multitask", tiny_prepared, **{"train.epochs": 1}), root / "emotion", progress=False)
    return root


def test_long_song_is_the_mean_of_its_30s_windows(runs, tmp_path):
    sr = af.SR
    y = np.concatenate([af.song(1, 30.0, sr), af.song(2, 12.0, sr)])
    song = af.write_audio(tmp_path / "song.wav", y, sr)
    parts = [af.write_audio(tmp_path / "a.wav", y[: 30 * sr], sr),
             af.write_audio(tmp_path / "b.wav", y[30 * sr:], sr)]
    genre, emotion = LoadedRun(runs / "genre"), LoadedRun(runs / "emotion")
    whole = predict.predict_file(song, genre, emotion, top_k=10)
    assert whole["windows"] == 2
    each = [predict.predict_file(p, genre, emotion, top_k=10) for p in parts]
    probs = lambda r: {g["label"]: g["probability"] for g in r["genres"]}
    for label, p in probs(whole).items():
        assert p == pytest.approx(np.mean([probs(r)[label] for r in each]), abs=2e-4)
    for axis in lab.TARGETS:
        assert whole["emotion"][axis] == pytest.approx(
            np.mean([r["emotion"][axis] for r in each]), abs=2e-4)
    assert sum(probs(whole).values()) == pytest.approx(1.0, abs=1e-3)


def test_cli_json_is_well_formed_and_bad_audio_is_named(runs, tmp_path):
    wav = af.write_audio(tmp_path / "clip.flac", af.song(3, 8.0), af.SR)
    bad = af.write_corrupt(tmp_path / "broken.wav")
    p = subprocess.run([sys.executable, "-m", "jaxmusic", "predict", str(wav), str(bad),
                        "--workdir", str(runs / "genre"), "--emotion-workdir",
                        str(runs / "emotion"), "--json"], cwd=REPO, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 2  # one file was refused
    lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
    out = json.loads(lines[0])
    assert out["file"] == str(wav)
    assert len(out["genres"]) == 3
    assert [g["probability"] for g in out["genres"]] == sorted(
        (g["probability"] for g in out["genres"]), reverse=True)
    assert {g["label"] for g in out["genres"]} <= set(lab.CLASSES)
    assert set(out["emotion"]) == set(lab.TARGETS)
    assert all(0 < v < 1 for v in out["emotion"].values())
    assert f"{bad}: unreadable or corrupt audio" in p.stdout
