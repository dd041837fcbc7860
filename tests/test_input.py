"""The training input path: one epoch order, three placements, resume inside an epoch,
damaged records, and no TensorFlow anywhere in training, evaluation or prediction."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jaxmusic import checkpoint
from jaxmusic.config import load_config
from jaxmusic.data import pipeline, records, stream, tfrecords
from jaxmusic.train import train
from tests.conftest import write_genre_set

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("input")
    write_genre_set(root / "data", n_train=60, n_test=12, lengths=(30, 70))
    tfrecords.prepare(root / "data", "fma_genre_spectrograms", root / "out",
                      tfrecords.PrepareOptions(shards=3, dtype="float16", progress=False))
    return root / "out" / "fma_genre_spectrograms"


def _every_clip(pset, cfg, stream_index=0, stream_count=1) -> dict:
    """The stream's clips in shard order, through the evaluation path (the reference)."""
    parts = list(pipeline.eval_batches(pset, "train", cfg, process_index=stream_index,
                                       process_count=stream_count))
    out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return {k: v[out["mask"]] for k, v in out.items()}


@pytest.mark.parametrize("stream_index,stream_count", [(0, 1), (1, 2)])
def test_epoch_order_is_numpys_permutation_of_seed_epoch_and_stream(prepared, stream_index, stream_count):
    pset = pipeline.PreparedSet.open(prepared)
    cfg = pipeline.PipelineConfig(batch_size=6, max_length=50, view="fused", seed=7)
    every = _every_clip(pset, cfg, stream_index, stream_count)
    n = len(every["lengths"])
    assert n == pset.count("train", stream_index, stream_count)
    for epoch in (0, 1):
        batches = list(pipeline.train_batches(pset, "train", cfg, epoch=epoch, process_index=stream_index,
                                              process_count=stream_count))
        assert len(batches) == n // 6 == pset.train_steps("train", 6, stream_count)
        # the order, written out with numpy: PCG64 seeded by (seed, epoch, stream)
        order = np.random.default_rng([7, epoch, stream_index]).permutation(n)
        for s, b in enumerate(batches):
            rows = order[s * 6:(s + 1) * 6]
            np.testing.assert_array_equal(b["features"], every["features"][rows])
            np.testing.assert_array_equal(b["label"], every["label"][rows])
            np.testing.assert_array_equal(b["lengths"], np.minimum(every["lengths"][rows], 50))
            assert b["mask"].all()
            for row, length in enumerate(b["lengths"]):   # padding stays zero
                assert not b["features"][row, length:].any()


def test_decoded_clips_equal_the_stored_float16_values_standardised(prepared):
    """The reader's decode against numpy on the stored bytes: float16 -> float32, the view's
    columns, (x - mean) / std with constant features only centred."""
    pset = pipeline.PreparedSet.open(prepared)
    mean, std = pset.train_statistics("mel")
    std = tuple(0.0 if i == 3 else s for i, s in enumerate(std))   # one constant feature
    cfg = pipeline.PipelineConfig(batch_size=8, max_length=40, view="mel", mean=mean, std=std)
    every = _every_clip(pset, cfg)
    payload = next(records.iter_records(pset.shard_paths("train")[0]))
    ex = records.parse_example(payload)
    raw = np.frombuffer(ex["features"], "<f2").reshape(-1, 140)[:40, :128].astype(np.float32)
    s = np.asarray(std, np.float32)
    want = (raw - np.asarray(mean, np.float32)) / np.where(s > 1e-6, s, 1.0)
    np.testing.assert_array_equal(every["features"][0, :len(want)], want)
    assert every["id"][0] == ex["id"]


def test_placement_auto_decides_by_memory():
    mb = 2**20
    assert pipeline.resolve_placement("auto", 100 * mb, 400 * mb, 10_000 * mb)[0] == "device"
    assert pipeline.resolve_placement("auto", 100 * mb, 400 * mb - 1, 10_000 * mb)[0] == "host"
    assert pipeline.resolve_placement("auto", 100 * mb, None, 400 * mb)[0] == "device"   # CPU: host memory
    assert pipeline.resolve_placement("auto", 100 * mb, None, 400 * mb - 1)[0] == "stream"
    assert pipeline.resolve_placement("auto", 100 * mb, 10_000 * mb, 10_000 * mb, bucketed=True)[0] == "host"
    placement, why = pipeline.resolve_placement("Host", 100 * mb, 10_000 * mb, 10_000 * mb)
    assert placement == "host" and "asked for" in why
    with pytest.raises(ValueError, match="data.placement must be one of"):
        pipeline.resolve_placement("gpu", 1, 1, 1)
    with pytest.raises(ValueError, match="bucket_boundaries"):
        pipeline.resolve_placement("device", 1, 1, 1, bucketed=True)


def test_streamed_batches_are_the_in_memory_batches(prepared):
    pset = pipeline.PreparedSet.open(prepared)
    cfg = pipeline.PipelineConfig(batch_size=5, max_length=60, view="mel", seed=3)
    local = pipeline.load_split(pset, "train", cfg, (0, 1), 2)
    src = stream.StreamSource(pset, "train", cfg, (0, 1), 2, threads=2, prefetch=8)
    assert src.counts == local.counts and src.offsets == local.offsets
    rows = list(pipeline.epoch_indices(local, 5, 3, 1, pset.train_steps("train", 5, 2)))
    got = list(src.batches(rows))
    assert len(got) == len(rows)
    for b, r in zip(got, rows):
        want = pipeline.gather(local.arrays, r)
        assert set(b) == set(want)
        for k in want:
            np.testing.assert_array_equal(b[k], want[k], err_msg=k)


def _damaged_copy(prepared: Path, tmp_path: Path, record: int) -> tuple[pipeline.PreparedSet, Path]:
    """A copy of the set whose first training shard has one flipped byte in record ``record``."""
    copy = tmp_path / "set"
    shutil.copytree(prepared, copy)
    pset = pipeline.PreparedSet.open(copy)             # opened (and checked) before the damage
    path = pset.shard_paths("train")[0]
    offset, length = records.record_index(path)[record]
    data = bytearray(path.read_bytes())
    data[offset + length // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    return pset, path


def test_a_damaged_record_is_one_error_naming_the_file_and_the_record(prepared, tmp_path):
    pset, path = _damaged_copy(prepared, tmp_path, record=3)
    cfg = pipeline.PipelineConfig(batch_size=4, max_length=50, view="mel")
    pipeline._CACHE.clear()
    with pytest.raises(records.RecordError) as err:
        pipeline.load_split(pset, "train", cfg)
    assert str(path) in str(err.value) and "record 3" in str(err.value)
    src = stream.StreamSource(pset, "train", cfg, (0,), 1, threads=1, prefetch=1)
    with pytest.raises(records.RecordError) as err:
        list(src.batches([np.asarray([3])]))
    assert str(path) in str(err.value) and "record 3" in str(err.value)
    # and the size check of today still stops a command that opens the set
    with pytest.raises(Exception, match="sha256"):
        pipeline.PreparedSet.open(path.parent, verify="sha256")


def _tiny(prepared_root, **overrides):
    args = [f"--config.data.prepared={prepared_root}"] + [f"--config.{k}={v}" for k, v in overrides.items()]
    return load_config(REPO / "configs" / "tiny" / "cnn.py", args)


def _leaves(workdir, which="latest"):
    import jax

    return jax.tree_util.tree_leaves(checkpoint.load_variables(workdir, which)[0])


def test_every_placement_trains_the_same_model(tiny_prepared, tmp_path):
    """device (gathered inside the step), host (numpy + prefetch) and stream (Grain) give
    bit-identical parameters and the same losses (K steps per dispatch on the device:
    tests/test_runs.py's steps_per_dispatch test, which trains with the default, device)."""
    results = {}
    for placement, spd in (("device", 1), ("host", 1), ("stream", 1)):
        cfg = _tiny(tiny_prepared, **{"data.placement": placement, "train.epochs": 1, "train.patience": 0,
                                      "train.steps_per_dispatch": spd, "train.optimizer": "sgd",
                                      "train.learning_rate": 0.05})
        out = train(cfg, tmp_path / f"{placement}{spd}", progress=False)
        assert out["run"].record["trained_on"]["placement"] == placement
        results[placement, spd] = (_leaves(tmp_path / f"{placement}{spd}"),
                                   [h["train"]["loss"] for h in out["meta"]["history"]])
    ref_leaves, ref_loss = results["host", 1]
    for key in (("device", 1), ("stream", 1)):
        leaves, loss = results[key]
        assert loss == ref_loss, key
        for a, b in zip(ref_leaves, leaves):
            np.testing.assert_array_equal(a, b, err_msg=str(key))


def test_resume_inside_an_epoch_equals_the_uninterrupted_run(tiny_prepared, tmp_path):
    """Checkpoints every 5 steps (12 per epoch): a run stopped after step 17 (epoch 2, 5 steps
    in) and resumed ends with the uninterrupted run's parameters and history, exactly."""
    overrides = {"train.epochs": 2, "train.patience": 0, "train.checkpoint_every": 5,
                 "train.keep_checkpoints": 20, "augment.time_masks": 1, "augment.time_mask_width": 4}
    full = tmp_path / "full"
    out = train(_tiny(tiny_prepared, **overrides), full, progress=False)
    steps = sorted(int(d.name) for d in (full / "checkpoints").iterdir() if d.name.isdigit())
    assert steps == [5, 10, 12, 17, 22, 24]
    # what a kill right after the save of step 17 leaves on disk
    killed = tmp_path / "killed"
    shutil.copytree(full, killed)
    for d in (killed / "checkpoints").iterdir():
        if d.name.isdigit() and int(d.name) > 17:
            shutil.rmtree(d)
    history = json.loads((full / "history.json").read_text())
    (killed / "history.json").write_text(json.dumps(history[:1]))
    meta = checkpoint.load_variables(killed, "latest")[1]
    assert meta["restored_step"] == 17 and meta["epoch"] == 0 and meta["epoch_step"] == 5
    resumed = train(_tiny(tiny_prepared, **overrides), killed, resume=True, progress=False)
    for a, b in zip(_leaves(full), _leaves(killed)):
        np.testing.assert_array_equal(a, b)
    strip = lambda hs: [{k: v for k, v in h.items() if k not in ("time_s", "samples_per_s")} for h in hs]  # noqa: E731
    assert strip(resumed["meta"]["history"]) == strip(out["meta"]["history"])
    assert resumed["meta"]["best_step"] == out["meta"]["best_step"]


_NO_TF = """
import sys
from jaxmusic.cli import main
code = main(sys.argv[1:])
assert not [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tensorflow_datasets')]
sys.exit(code)
"""


def test_train_evaluate_and_predict_set_import_no_tensorflow(tiny_prepared, tmp_path):
    """On a machine where importing tensorflow (or tensorflow_datasets) raises: packages of
    those names that fail on import shadow the installed ones."""
    blocked = tmp_path / "blocked"
    for name in ("tensorflow", "tensorflow_datasets"):
        (blocked / name).mkdir(parents=True)
        (blocked / name / "__init__.py").write_text(f"raise ImportError('{name} is blocked in this test')\n")
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1",
               PYTHONPATH=os.pathsep.join([str(blocked), str(REPO)]))
    work = tmp_path / "run"

    def run(*args):
        p = subprocess.run([sys.executable, "-c", _NO_TF, *args], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, p.stdout + p.stderr
        return p.stdout

    run("train", "--config", "configs/tiny/cnn.py", "--workdir", str(work), "--quiet", "--no-evaluate",
        f"--config.data.prepared={tiny_prepared}", "--config.train.epochs=1")
    count = pipeline.PreparedSet.open(Path(tiny_prepared) / "fma_genre_spectrograms_beat").count("test")
    run("evaluate", "--workdir", str(work))
    report = json.loads((work / "metrics.json").read_text())["test"]["fma_genre_spectrograms_beat"]
    cm = np.asarray(report["confusion_matrix"])
    assert cm.sum() == report["count"] == count
    assert report["accuracy"] == pytest.approx(np.trace(cm) / count)
    run("predict-set", "--workdir", str(work), "--set", "fma_genre_spectrograms_beat/test",
        "--out", str(tmp_path / "pred.csv"))
    rows = (tmp_path / "pred.csv").read_text().splitlines()
    assert len(rows) - 1 == count
