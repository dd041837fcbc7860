"""`jaxmusic features` options: --frontend jax, --fmax, --audio-features, each checked
against librosa's own functions on the same clips."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import librosa
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import audio_fixtures as af  # noqa: E402
from jaxmusic import features as F  # noqa: E402
from jaxmusic.features import handcrafted  # noqa: E402
from jaxmusic.baselines.table import load_table  # noqa: E402
from jaxmusic.data import lab  # noqa: E402
from jaxmusic.data.lab import DatasetError  # noqa: E402

SR = af.SR


def _clips(set_dir: Path) -> dict[str, np.ndarray]:
    return {r.id: r.features for split in lab.SPLITS for r in lab.iter_records(set_dir, split)}


def _audio(root: Path) -> dict[str, np.ndarray]:
    return {p.stem: librosa.load(p, sr=SR)[0]
            for p in sorted((root / "in").rglob("*.wav"))}


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    root = tmp_path_factory.mktemp("opts")
    af.genre_folders(root / "in", ["Rock", "Jazz"], per_genre=3, seconds=3.0)
    return root


def test_jax_frontend_matches_librosa_mel_stft_chroma_and_host_beats(collection):
    root = collection
    res = F.convert(root / "in", "genre-folders", root / "jax", "s", frontend="jax", jobs=2,
                    progress=False)
    assert (res.written, res.failed) == (6, 0)
    settings = json.loads((root / "jax" / "s" / F.REPORT_NAME).read_text())["settings"]
    assert settings["frontend"] == "jax" and "chroma_stft" in settings["chroma"]
    full, beat = _clips(root / "jax" / "s"), _clips(root / "jax" / "s_beat")
    audio = _audio(root)
    assert set(full) == set(audio)
    for clip_id, y in audio.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            mel = librosa.power_to_db(librosa.feature.melspectrogram(
                y=y, sr=SR, n_fft=2048, hop_length=512, n_mels=128), ref=np.max).T
            chroma = librosa.feature.chroma_stft(y=y, sr=SR, n_fft=2048, hop_length=512,
                                                 tuning=0.0).T
        x = full[clip_id]
        assert x.shape == (mel.shape[0], 140)
        loud = mel > -60
        assert np.abs(x[:, :128] - mel)[loud].max() < 0.1       # the stated agreement
        np.testing.assert_allclose(x[:, 128:], chroma, atol=2e-3)
        # Beats: librosa's tracker on the onsets of the mel dB, pooled by librosa.util.sync.
        env = librosa.onset.onset_strength(S=x[:, :128].T, sr=SR)
        _, beats = librosa.beat.beat_track(onset_envelope=env, sr=SR, hop_length=512)
        want = librosa.util.sync(x.T, beats, aggregate=np.median).T
        np.testing.assert_array_equal(beat[clip_id], want.astype(np.float32))


def test_fmax_lowers_the_mel_cut_off_and_is_recorded(collection):
    root = collection
    F.convert(root / "in", "genre-folders", root / "lo", "s", fmax=2000, progress=False)
    report = json.loads((root / "lo" / "s" / F.REPORT_NAME).read_text())
    assert report["settings"]["fmax"] == 2000.0
    y = _audio(root)["rock.00000"]
    mel = librosa.power_to_db(librosa.feature.melspectrogram(
        y=y, sr=SR, n_fft=2048, hop_length=512, n_mels=128, fmax=2000), ref=np.max).T
    np.testing.assert_allclose(_clips(root / "lo" / "s")["rock.00000"][:, :128], mel,
                               atol=1e-3)
    # The default recipe records no fmax (its reports are as before), and the JAX frontend
    # takes the same cut-off.
    F.convert(root / "in", "genre-folders", root / "lojax", "s", fmax=2000, frontend="jax",
              progress=False)
    x = _clips(root / "lojax" / "s")["rock.00000"][:, :128]
    assert np.abs(x - mel)[mel > -60].max() < 0.1
    # The baselines place their spectral descriptors on the same mel scale.
    t = load_table(root / "lo" / "s", "train")
    assert t.X.shape[1] == len(handcrafted.feature_names())
    with pytest.raises(DatasetError, match="--fmax must be in"):
        F.convert(root / "in", "genre-folders", root / "bad", "s", fmax=20000, progress=False)
    with pytest.raises(DatasetError, match=r"other settings \(fmax\)"):
        F.convert(root / "in", "genre-folders", root / "lo", "s", progress=False)


def test_audio_features_are_kept_and_used_by_the_baselines(collection):
    root = collection
    F.convert(root / "in", "genre-folders", root / "af", "s", audio_features=True,
              progress=False)
    adir = root / "af" / "s" / F.AUDIO_DIR
    assert tuple((adir / "names.txt").read_text().split()) == handcrafted.audio_feature_names()
    for clip_id, y in _audio(root).items():
        got = np.load(adir / f"{clip_id}.npy")
        np.testing.assert_allclose(got, handcrafted.audio_features(y, SR), rtol=1e-5, atol=1e-5)
        mfcc = librosa.feature.mfcc(y=y, sr=SR, n_mfcc=20)
        np.testing.assert_allclose(got[:20], mfcc.mean(axis=1), rtol=1e-4, atol=1e-3)
    t = load_table(root / "af" / "s_beat", "train")      # the beat twin finds them too
    assert t.names[-45:] == handcrafted.audio_feature_names()
    assert t.X.shape[1] == 457 + 45
    # A clip whose kept features went missing is named.
    victim = adir / f"{t.ids[0]}.npy"
    victim.unlink()
    with pytest.raises(DatasetError, match=f"{victim.name}: no kept audio features"):
        load_table(root / "af" / "s", "train")
