"""The musicnn recipe end to end (features -> prepare -> train) and transfer from a pretrained tagger."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import pytest

from jaxmusic import checkpoint, frontend, predict, pretrained, runs, steps
from jaxmusic import features as F
from jaxmusic.config import load_config
from jaxmusic.data import lab, tfrecords
from jaxmusic.metrics import softmax
from jaxmusic.runs import LoadedRun
from jaxmusic.train import train
from tests import audio_fixtures as af

REPO = Path(__file__).resolve().parents[1]
needs_musicnn = pytest.mark.skipif(not pretrained.available(), reason="musicnn package not installed (.[pretrained])")


@pytest.fixture(scope="module")
def musicnn_set(tmp_path_factory):
    """Three 'emotions' of synthesised music, 4 clips of 3 s each, in the musicnn recipe."""
    return af.prepared_musicnn_set(tmp_path_factory.mktemp("mnset"), "emo")


def test_musicnn_recipe_files_match_the_jax_frontend(musicnn_set):
    import librosa
    records = list(lab.iter_records(musicnn_set / "data" / "emo", "train"))
    assert records and all(r.features.shape[1] == 96 for r in records)
    r = records[0]
    y, _ = F.load_audio(musicnn_set / "audio" / f"{r.id.split('_')[0]}.wav", sr=16000, duration=3.0)
    ref = np.log10(10000 * librosa.feature.melspectrogram(y=y, sr=16000, n_fft=512, hop_length=256, n_mels=96) + 1).T
    np.testing.assert_allclose(r.features, ref, rtol=1e-5, atol=1e-5)
    jx, _ = frontend.musicnn_input(y[None])
    np.testing.assert_allclose(np.asarray(jx[0]), ref, atol=2e-4, rtol=1e-4)
    m = tfrecords.read_manifest(musicnn_set / "prep" / "emo")
    assert m["num_features"] == 96 and m["views"] == {"musicnn": [0, 96]}
    with pytest.raises(lab.DatasetError, match="96 feature rows.*--view musicnn"):
        tfrecords.prepare(musicnn_set / "data", "emo", musicnn_set / "prep_bad",
                          tfrecords.PrepareOptions(shards=1, view="mel", progress=False))


@needs_musicnn
@pytest.mark.slow   # one compiled musicnn train step (about a minute on 2 loaded cores)
def test_frozen_transfer_keeps_backbone_and_statistics_bit_identical(musicnn_set, tmp_path):
    cfg = load_config(REPO / "configs" / "musicnn_transfer.py",
                      [f"--config.data.prepared={musicnn_set / 'prep'}", "--config.data.set=emo",
                       "--config.train.epochs=1", "--config.train.batch_size=4"])
    cfg = runs.match_source_run(cfg, "musicnn:MSD_musicnn")
    cfg.train.init_from = "musicnn:MSD_musicnn"
    cfg.train.freeze_backbone = True
    train(cfg, tmp_path / "frozen", progress=False)
    got, _ = checkpoint.load_variables(tmp_path / "frozen", which="latest")
    want = pretrained.load_variables("MSD_musicnn")
    for collection in ("params", "batch_stats"):
        a = jax.tree_util.tree_leaves(got[collection]["backbone"]["tagger"])
        b = jax.tree_util.tree_leaves(want[collection])
        assert len(a) == len(b)
        for x, y in zip(a, b):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    # ... while the head trained (it started from a fresh initialisation, and moved).
    fresh = runs.build_run(cfg)
    init = steps.init_variables(fresh, cfg.train.seed)
    assert not np.array_equal(np.asarray(got["params"]["head"]["logits"]["kernel"]),
                              np.asarray(init["params"]["head"]["logits"]["kernel"]))


@needs_musicnn
def test_transfer_latent_is_the_pretrained_penultimate(musicnn_set):
    """--init-from musicnn:NAME puts the tagger's weights in the backbone: its latent on a
    3 s clip is the pretrained penultimate layer."""
    cfg = load_config(REPO / "configs" / "musicnn_transfer.py",
                      [f"--config.data.prepared={musicnn_set / 'prep'}", "--config.data.set=emo"])
    cfg = runs.match_source_run(cfg, "musicnn:MTT_vgg")
    assert cfg.model.arch == "vgg" and cfg.data.view == "musicnn"
    run = runs.build_run(cfg)
    variables = steps.transfer_backbone(steps.init_variables(run, 0), "musicnn:MTT_vgg")
    x = np.stack([r.features[:187] for r in lab.iter_records(musicnn_set / "data" / "emo", "test")])
    latent = run.model.apply(variables, x, np.full(len(x), 187), train=False)["latent"]
    module, tv = pretrained.tagger("MTT_vgg")
    np.testing.assert_allclose(np.asarray(latent), np.asarray(module.apply(tv, x, train=False)["penultimate"]),
                               rtol=1e-5, atol=1e-5)


def test_predict_reads_a_musicnn_run_through_the_musicnn_recipe(musicnn_set, tmp_path):
    """`jaxmusic predict` with a run trained on the musicnn view: the song goes through the
    musicnn recipe at 16 kHz, and the model sees what `features --recipe musicnn` wrote."""
    cfg = load_config(REPO / "configs" / "tiny" / "cnn.py",
                      [f"--config.data.prepared={musicnn_set / 'prep'}", "--config.data.set=emo",
                       "--config.data.view=musicnn", "--config.train.epochs=1",
                       "--config.train.batch_size=4"])
    train(cfg, tmp_path / "run", progress=False)
    run = LoadedRun(tmp_path / "run")
    names = run.info["label_names"]
    for rec in lab.iter_records(musicnn_set / "data" / "emo", "test"):
        got = predict.predict_file(musicnn_set / "audio" / f"{rec.id.split('_')[0]}.wav", run, None,
                                   top_k=len(names))
        want = softmax(run([run.features(rec.features, rec.features)]))[0]
        assert got["windows"] == 1
        np.testing.assert_allclose([got["per_window"][0]["genres"][n] for n in names], want, atol=1e-4)
