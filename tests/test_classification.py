"""Task "classification": quantile bins of a multitask axis, and any label table's classes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import classification_report as sk_report

from jaxmusic import evaluate, runs, tasks
from jaxmusic import features as F
from jaxmusic.config import load_config
from jaxmusic.data import lab, tfrecords
from jaxmusic.data.pipeline import PipelineConfig, PreparedSet, eval_batches
from jaxmusic.train import train
from tests import audio_fixtures as af

REPO = Path(__file__).resolve().parents[1]


def test_bin_edges_and_labels_match_numpy():
    rng = np.random.default_rng(0)
    v = rng.random(301)
    v[::50] = np.nan
    edges = tasks.bin_edges(v, 3)
    np.testing.assert_allclose(edges, np.nanquantile(v, [1 / 3, 2 / 3]))
    lab_ = tasks.bin_labels(v, edges)
    assert np.isnan(lab_[::50]).all()
    counts = np.bincount(lab_[~np.isnan(lab_)].astype(int))
    assert counts.max() - counts.min() <= 1
    np.testing.assert_array_equal(lab_[~np.isnan(v)], np.digitize(v[~np.isnan(v)], edges, right=True))
    import jax.numpy as jnp
    np.testing.assert_array_equal(np.asarray(tasks.bin_labels(jnp.asarray(v, jnp.float32), edges)),
                                  np.where(np.isnan(v), -1, np.nan_to_num(lab_)).astype(int))
    # On a cut point (not above it), and with equal cut points (tied quantiles).
    for edges in ((0.25, 0.5), (0.5, 0.5, 0.75)):
        w = np.array([0.0, 0.25, 0.3, 0.5, 0.50001, 0.75, 1.0, np.nan])
        want = np.array([sum(x > e for e in edges) if not np.isnan(x) else np.nan for x in w])
        np.testing.assert_array_equal(tasks.bin_labels(w, edges), want)
        np.testing.assert_array_equal(np.asarray(tasks.bin_labels(jnp.asarray(w, jnp.float32), edges)),
                                      np.where(np.isnan(want), -1, np.nan_to_num(want)).astype(int))


def test_tertile_classes_of_the_training_split_are_balanced(tiny_prepared, tiny_data):
    cfg = load_config(REPO / "configs" / "tiny" / "emotion_classes.py", [f"--config.data.prepared={tiny_prepared}"])
    run = runs.build_run(cfg)
    assert run.record["label_names"] == ["energy_low", "energy_mid", "energy_high"]
    assert run.record["bins"]["axis"] == "energy" and run.task.select_metric == "macro_f1"
    # Reference: the training split's ids (full decode) and their energy in the lab's label file.
    pset = PreparedSet.open(tiny_prepared / cfg.data.set)
    ids = [i.decode() for b in eval_batches(pset, "train", PipelineConfig(batch_size=16, max_length=8, view="mel"))
           for i, m in zip(b["id"], b["mask"]) if m]
    table = {e.id: e.targets for e in lab.read_labels(tiny_data / cfg.data.set, "train")}
    energy = np.array([table[i][lab.TARGETS.index("energy")] for i in ids])
    np.testing.assert_allclose(run.record["bins"]["edges"], np.quantile(energy, [1 / 3, 2 / 3]), rtol=1e-6)
    counts = np.histogram(energy, bins=[-np.inf, *run.record["bins"]["edges"], np.inf])[0]
    assert run.record["class_counts"] == counts.tolist()
    assert counts.max() - counts.min() <= 1


def test_binned_classification_trains_and_reports_macro_f1(tiny_prepared, tmp_path):
    cfg = load_config(REPO / "configs" / "tiny" / "emotion_classes.py",
                      [f"--config.data.prepared={tiny_prepared}", "--config.augment.time_masks=1",
                       "--config.augment.time_mask_width=3", "--config.augment.mixup_alpha=0.2"])
    train(cfg, tmp_path / "run", progress=False)
    out = evaluate.evaluate_run(tmp_path / "run", progress=False)
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["bins"]["axis"] == "energy" and record["label_names"][0] == "energy_low"
    ev = evaluate.Evaluator(tmp_path / "run")
    res = ev.predict(ev.run.pset, "validation", 8)
    truth = res["truth"][~np.isnan(res["truth"])].astype(int)
    pred = res["outputs"][~np.isnan(res["truth"])].argmax(-1)
    ref = sk_report(truth, pred, labels=[0, 1, 2], output_dict=True, zero_division=0)
    assert out["validation"]["macro_f1"] == pytest.approx(ref["macro avg"]["f1-score"], abs=1e-6)
    assert out["macro_f1"] == out["validation"]["macro_f1"]
    assert "energy_mid" in (tmp_path / "run" / "metrics.md").read_text()


def test_classes_from_a_clip_table_label_column(tmp_path):
    emotions = ["anger", "fear", "happy", "sad", "tender"]
    rows = []
    for k, emo in enumerate(emotions):
        af.write_audio(tmp_path / "audio" / f"s{k}.wav", af.song(40 + k, 2.0))
        rows += [(f"s{k}.wav", 0.0, 1.0, emo, f"g{k}a"), (f"s{k}.wav", 1.0, 2.0, emo, f"g{k}b")]
    table = af.write_table(tmp_path / "emotions.csv", ["file", "start", "end", "label", "group"], rows)
    F.convert(tmp_path / "audio", "clip-table", tmp_path / "data", "emo", labels=table, progress=False,
              test_fraction=0.5, seed=0)
    tfrecords.prepare(tmp_path / "data", "emo", tmp_path / "prep", tfrecords.PrepareOptions(shards=1, progress=False))
    cfg = load_config(REPO / "configs" / "emotion_classes.py:table,cnn",
                      [f"--config.data.prepared={tmp_path / 'prep'}", "--config.data.set=emo"])
    run = runs.build_run(cfg)
    assert run.task.name == "classification" and run.task.is_classifier
    assert list(run.task.label_names) == emotions and run.record["bins"] is None
    assert run.task.select_metric == "macro_f1"
